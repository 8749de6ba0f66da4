//! The event loop: the only module that touches sockets.
//!
//! One mio `Poll` owns the listener, every client socket, the waker that the
//! JSON workers (and shutdown handles) use, and the signal pipe. Invariants:
//! - Tokens below [`FIRST_CONN_TOKEN`] are reserved; a connection's token
//!   is its slab key plus a generation, so an event for a connection that
//!   closed earlier in the same batch never reaches the slot's new owner.
//! - Reads are drained until a short read or `WouldBlock` (edge-triggered),
//!   with a per-connection budget per iteration so one flooder cannot starve
//!   the rest; a connection over budget is revisited next iteration.
//! - Output is corked: frames are queued during the iteration and every
//!   connection that got any is flushed once at its end, with one vectored
//!   write for all its frames. WRITABLE interest is registered only while a
//!   connection's kernel buffer is full.
//! - A connection is in a room exactly while it is `Open`; every other phase
//!   has left it, so fan-out only ever meets open members.
//! - Every connection that is not open has a timer armed that ends it.

use crate::chat;
use crate::close::CloseCode;
use crate::config::Config;
use crate::conn::{flag, Conn, Endpoint, Phase, NO_TIMER};
use crate::error::ProtocolError;
use crate::frame::{self, Opcode};
use crate::http::{self, Decision, OriginPolicy, Page, WsRoute};
use crate::message::{DataKind, Decoded, Event, Limits};
use crate::metrics::{Gauges, Metrics};
use crate::pages;
use crate::room::Rooms;
use crate::sendq::Frame;
use crate::timer::{self, TimerWheel};
use crate::worker::{decode_batch, Batch, ConnRef, Outcome, WorkerPool};
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);
const FIRST_CONN_TOKEN: usize = 16;

/// Timer resolution.
const TICK: Duration = Duration::from_millis(100);
/// Bytes read from one connection per iteration before others get a turn.
const READ_BUDGET: usize = 1 << 20;
/// The shared read buffer: every connection reads into this, so idle ones
/// pay nothing for reading.
const SCRATCH_SIZE: usize = 64 * 1024;
/// A batch is handed to the workers early once it holds this many bytes.
const BATCH_BYTES: usize = 1 << 20;
/// Connections over --max-connections still get a 503 while fewer than this
/// many such answers are in flight; past it they are closed at once.
const OVER_LIMIT_SLOTS: usize = 1024;
/// After accept() fails for lack of descriptors, retry after this long.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Asks a running server to shut down gracefully (as SIGTERM does).
#[derive(Clone)]
pub struct ShutdownHandle {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// What a finished run did, for the exit log.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunSummary {
    pub connections_at_shutdown: usize,
    pub closed_cleanly: usize,
    pub cut_at_deadline: usize,
    pub bytes_flushed_during_grace: u64,
}

/// Loop-wide settings derived from the configuration, in ticks and bytes.
struct Settings {
    limits: Limits,
    max_connections: usize,
    max_send_queue: usize,
    /// Below this many messages, with no batch in flight, the loop decodes a
    /// batch itself: the hand-off (a channel send, a thread wake-up and the
    /// waker's eventfd) costs more than decoding a few small messages. Order
    /// is kept because nothing earlier is still at the workers.
    inline_decode_below: usize,
    max_header_size: usize,
    handshake_ticks: u32,
    ping_ticks: u32,
    idle_ticks: u32,
    close_ticks: u32,
    grace_ticks: u32,
}

fn ticks(d: Duration) -> u32 {
    let t = d.as_millis().div_ceil(TICK.as_millis());
    t.min(u32::MAX as u128 / 4) as u32
}

pub struct Server {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    accepting: bool,
    /// Tick at which to retry accept() after descriptor exhaustion.
    accept_retry_at: Option<u32>,
    /// accept() failures for lack of descriptors in the current burst; the
    /// first is logged, the total when accepting works again.
    accept_starved: u64,
    /// Held open so that, out of descriptors, one can be freed to answer a
    /// pending client with 503 rather than leave it hanging in the backlog.
    spare_fd: Option<std::fs::File>,
    conns: Slab<Conn>,
    over_limit: usize,
    /// Connections in the `Open` phase (what `/healthz` and `/metrics` report).
    open_websockets: usize,
    next_generation: u32,
    rooms: Rooms,
    timers: TimerWheel,
    expired: Vec<timer::Entry>,
    settings: Settings,
    origins: OriginPolicy,
    scratch: Vec<u8>,
    dirty: Vec<u32>,
    /// Connections over their read budget: (key, generation, hup).
    read_again: Vec<(u32, u32, bool)>,
    slow: Vec<u32>,
    batch: Batch,
    outcomes: Vec<Outcome>,
    pool: Option<WorkerPool>,
    metrics: Metrics,
    started: Instant,
    now: u32,
    waker: Arc<Waker>,
    shutdown_requested: Arc<AtomicBool>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    shutdown_deadline: Option<u32>,
    summary: RunSummary,
}

impl Server {
    /// Binds the listener and starts the worker threads.
    pub fn bind(config: &Config) -> io::Result<Server> {
        Server::bind_inner(config, None)
    }

    /// Like [`Server::bind`], and shuts down gracefully on SIGINT and SIGTERM.
    /// The handlers are installed before the port opens, so a signal sent as
    /// soon as the relay accepts connections is never fatal. Signals are
    /// process-wide, so only the binary does this; tests use a
    /// [`ShutdownHandle`].
    pub fn bind_with_signals(config: &Config) -> io::Result<Server> {
        let signals = signal_hook_mio::v1_0::Signals::new([libc::SIGINT, libc::SIGTERM])?;
        Server::bind_inner(config, Some(signals))
    }

    fn bind_inner(
        config: &Config,
        mut signals: Option<signal_hook_mio::v1_0::Signals>,
    ) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let poll = Poll::new()?;
        if let Some(signals) = signals.as_mut() {
            poll.registry()
                .register(signals, SIGNALS, Interest::READABLE)?;
        }
        let mut listener = TcpListener::bind(config.bind)?;
        // mio listens with the standard library's backlog of 128; listen()
        // again to raise it (Linux updates the backlog of a listening socket).
        let backlog = config.listen_backlog.min(i32::MAX as u32) as libc::c_int;
        // SAFETY: listen() on a descriptor this function owns.
        if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), backlog) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let workers = config.worker_threads();
        let pool = if workers == 0 {
            None
        } else {
            Some(WorkerPool::new(workers, waker.clone())?)
        };
        let max_connections = config.connection_limit();
        let capacity = crate::limits::connection_capacity();
        if max_connections > capacity {
            warn!(
                "--max-connections {max_connections} is over what the open-file limit allows (about {capacity}); past that, accepts fail with EMFILE and clients get 503"
            );
        }
        Ok(Server {
            poll,
            listener,
            local_addr,
            accepting: true,
            accept_retry_at: None,
            accept_starved: 0,
            spare_fd: std::fs::File::open("/dev/null").ok(),
            conns: Slab::new(),
            over_limit: 0,
            open_websockets: 0,
            next_generation: 0,
            rooms: Rooms::default(),
            timers: TimerWheel::default(),
            expired: Vec::new(),
            settings: Settings {
                limits: Limits {
                    max_frame_size: config.max_frame_size as u64,
                    max_message_size: config.max_message_size as u64,
                },
                max_connections,
                max_send_queue: config.max_send_queue,
                inline_decode_below: config.inline_decode_below,
                max_header_size: config.max_header_size,
                handshake_ticks: ticks(config.handshake_timeout),
                ping_ticks: ticks(config.ping_interval),
                idle_ticks: ticks(config.idle_timeout),
                close_ticks: ticks(config.close_timeout),
                grace_ticks: ticks(config.shutdown_grace),
            },
            origins: OriginPolicy::new(&config.allowed_origins),
            scratch: vec![0; SCRATCH_SIZE],
            dirty: Vec::new(),
            read_again: Vec::new(),
            slow: Vec::new(),
            batch: Batch::default(),
            outcomes: Vec::new(),
            pool,
            metrics: Metrics::default(),
            started: Instant::now(),
            now: 0,
            waker,
            shutdown_requested: Arc::new(AtomicBool::new(false)),
            signals,
            shutdown_deadline: None,
            summary: RunSummary::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn origins_allow_any(&self) -> bool {
        self.origins.allows_any()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            requested: self.shutdown_requested.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Runs until a graceful shutdown completes.
    pub fn run(mut self) -> io::Result<RunSummary> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = self.tick_now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {
                        if self.shutdown_requested.load(Ordering::SeqCst) {
                            self.begin_shutdown("shutdown requested");
                        }
                    }
                    SIGNALS => {
                        let got = self
                            .signals
                            .as_mut()
                            .map(|s| s.pending().next())
                            .unwrap_or(None);
                        if let Some(sig) = got {
                            let name = if sig == libc::SIGINT {
                                "SIGINT"
                            } else {
                                "SIGTERM"
                            };
                            self.begin_shutdown(name);
                        }
                    }
                    token => {
                        let Some(key) = self.key_for(token) else {
                            continue;
                        };
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                        if event.is_read_closed() || event.is_error() {
                            self.on_readable(key, true);
                        } else if event.is_readable() {
                            self.on_readable(key, false);
                        }
                    }
                }
            }
            self.end_of_iteration();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || self.now >= deadline {
                    self.summary.cut_at_deadline = self.conns.len();
                    break;
                }
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.drop_conn(key as u32);
        }
        Ok(self.summary)
    }

    /// Everything that is done once per iteration, after the events.
    fn end_of_iteration(&mut self) {
        let again = std::mem::take(&mut self.read_again);
        for (key, generation, hup) in again.iter().copied() {
            if self
                .conns
                .get(key as usize)
                .is_some_and(|c| c.generation == generation)
            {
                self.on_readable(key, hup);
            }
        }
        self.read_again = again;
        self.read_again.clear();
        self.dispatch_batch();
        self.collect_results(false);
        self.run_timers();
        self.flush_dirty();
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.read_again.is_empty() || !self.dirty.is_empty() {
            return Some(Duration::ZERO);
        }
        if self.timers.is_empty()
            && self.accept_retry_at.is_none()
            && self.shutdown_deadline.is_none()
        {
            return None;
        }
        // Wake at the next tick boundary; the wheel is cheap to advance.
        let elapsed = self.started.elapsed();
        let next = (self.now as u128 + 1) * TICK.as_millis();
        let wait = next.saturating_sub(elapsed.as_millis()) as u64;
        Some(Duration::from_millis(wait.max(1)))
    }

    fn tick_now(&self) -> u32 {
        (self.started.elapsed().as_millis() / TICK.as_millis()) as u32
    }

    fn key_for(&self, token: Token) -> Option<u32> {
        let raw = token.0;
        let key = (raw & 0xFFFF_FFFF).checked_sub(FIRST_CONN_TOKEN)?;
        let generation = (raw >> 32) as u32;
        let conn = self.conns.get(key)?;
        (conn.generation == generation).then_some(key as u32)
    }

    fn token_for(key: usize, generation: u32) -> Token {
        Token(((generation as usize) << 32) | (key + FIRST_CONN_TOKEN))
    }

    // ---- accepting -------------------------------------------------------

    fn accept_all(&mut self) {
        if !self.accepting || self.accept_retry_at.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_conn(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The backlog is drained: a starvation burst is over.
                    if self.accept_starved > 0 {
                        info!(
                            "accepting again after {} accept failures for lack of file descriptors",
                            self.accept_starved
                        );
                        self.accept_starved = 0;
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    self.metrics.accept_errors += 1;
                    if self.accept_starved == 0 {
                        warn!("accept failed: {e}; answering waiting clients 503 and retrying every {ACCEPT_BACKOFF:?} until descriptors free up");
                    }
                    self.accept_starved += 1;
                    self.shed_with_spare_fd();
                    // Edge-triggered: the backlog is retried from the timer,
                    // not by spinning on a listener that stays readable.
                    self.accept_retry_at = Some(self.now + ticks(ACCEPT_BACKOFF));
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and the like concern one client only.
                    self.metrics.accept_errors += 1;
                    debug!("accept failed: {e}");
                }
            }
        }
    }

    /// Frees the spare descriptor to accept one pending client, tells it
    /// 503, and takes the spare back.
    fn shed_with_spare_fd(&mut self) {
        if self.spare_fd.take().is_none() {
            return;
        }
        if let Ok((stream, _)) = self.listener.accept() {
            let busy = http::rejection_response(&http::Rejection::new(
                503,
                "the relay is out of file descriptors; retry later",
            ));
            // One best-effort write: this socket is closed right after.
            let _ = std::io::Write::write(&mut &stream, &busy);
            self.metrics.rejection(503);
        }
        self.spare_fd = std::fs::File::open("/dev/null").ok();
    }

    fn add_conn(&mut self, mut stream: TcpStream) {
        self.metrics.connections_accepted += 1;
        let open = self.conns.len() - self.over_limit;
        let over = open >= self.settings.max_connections;
        if over && self.over_limit >= OVER_LIMIT_SLOTS {
            self.metrics.rejection(503);
            return; // dropped: closed at once
        }
        // Small frames go out now; batching is done by the loop, not Nagle.
        let _ = stream.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Self::token_for(key, generation),
            Interest::READABLE,
        ) {
            warn!("could not register a connection: {e}");
            return;
        }
        entry.insert(Conn::new(stream, generation, self.now));
        let key = key as u32;
        if over {
            self.over_limit += 1;
            self.conns[key as usize].set(flag::OVER_LIMIT);
            info!(
                "rejected a connection: over max-connections ({})",
                self.settings.max_connections
            );
            self.respond(
                key,
                http::rejection_response(&http::Rejection::new(
                    503,
                    "too many connections; retry later",
                )),
                503,
            );
        } else {
            self.arm(key, self.now + self.settings.handshake_ticks);
        }
    }

    // ---- reading ---------------------------------------------------------

    /// Reads what connection `key` has. `hup`: the event said the peer shut
    /// its side, so the EOF may already be queued behind the data and the
    /// socket must be read until it returns 0 (no later edge will report it).
    fn on_readable(&mut self, key: u32, hup: bool) {
        let mut budget = READ_BUDGET;
        loop {
            let Some(conn) = self.conns.get_mut(key as usize) else {
                return;
            };
            let n = match (&conn.stream).read(&mut self.scratch) {
                Ok(0) => {
                    self.on_eof(key);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("read error on connection {key}: {e}");
                    self.abort(key);
                    return;
                }
            };
            conn.last_rx = self.now;
            conn.clear(flag::PINGED);
            self.metrics.bytes_received += n as u64;
            self.consume(key, n);
            if n < self.scratch.len() && !hup {
                // A short read emptied the socket; the next byte, or the
                // peer's FIN, brings a new edge.
                return;
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                if let Some(c) = self.conns.get(key as usize) {
                    self.read_again.push((key, c.generation, hup));
                }
                return;
            }
        }
    }

    /// Handles `scratch[..n]`, just read from connection `key`.
    fn consume(&mut self, key: u32, n: usize) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        match conn.phase {
            Phase::Handshake => {
                conn.rx.extend_from_slice(&self.scratch[..n]);
                self.on_request_bytes(key);
            }
            Phase::Open | Phase::Closing => {
                if conn.rx.is_empty() {
                    let mut input = std::mem::take(&mut self.scratch);
                    let used = self.decode_frames(key, &mut input[..n]);
                    if let Some(conn) = self.conns.get_mut(key as usize) {
                        if used < n && matches!(conn.phase, Phase::Open | Phase::Closing) {
                            conn.rx.extend_from_slice(&input[used..n]);
                        }
                    }
                    self.scratch = input;
                } else {
                    conn.rx.extend_from_slice(&self.scratch[..n]);
                    let mut input = std::mem::take(&mut conn.rx);
                    let used = self.decode_frames(key, &mut input);
                    if let Some(conn) = self.conns.get_mut(key as usize) {
                        input.drain(..used);
                        if matches!(conn.phase, Phase::Open | Phase::Closing) {
                            conn.rx = input;
                        }
                    }
                }
                if let Some(conn) = self.conns.get_mut(key as usize) {
                    conn.release_buffers();
                }
            }
            // Whatever a client sends after its answer is read and ignored.
            Phase::Closed | Phase::Responding | Phase::Lingering => {}
        }
    }

    fn on_eof(&mut self, key: u32) {
        let Some(conn) = self.conns.get(key as usize) else {
            return;
        };
        match conn.phase {
            Phase::Lingering => self.drop_conn(key),
            Phase::Open => {
                debug!("connection {key} ended without a closing handshake");
                self.abort(key);
            }
            // A half-closed client may still read its answer: finish it.
            Phase::Handshake | Phase::Responding if !conn.tx.is_empty() => {
                let phase = conn.phase;
                self.conns[key as usize].set(flag::PEER_EOF);
                if phase == Phase::Handshake {
                    self.enter(key, Phase::Responding);
                }
            }
            Phase::Handshake | Phase::Responding => self.drop_conn(key),
            Phase::Closing | Phase::Closed => self.drop_conn(key),
        }
    }

    // ---- the HTTP handshake ---------------------------------------------

    /// Handles every complete request head buffered for connection `key`:
    /// keep-alive clients may pipeline several. A loop, not recursion, so
    /// thousands of pipelined requests in one read cannot exhaust the stack.
    fn on_request_bytes(&mut self, key: u32) {
        while self
            .conns
            .get(key as usize)
            .is_some_and(|c| c.phase == Phase::Handshake && !c.rx.is_empty())
        {
            if !self.handle_one_request(key) {
                return;
            }
        }
    }

    /// Handles the request head at the front of `rx`; returns false when no
    /// complete head is buffered yet.
    fn handle_one_request(&mut self, key: u32) -> bool {
        let conn = &mut self.conns[key as usize];
        let (request, head_len) = match http::parse_head(&conn.rx, self.settings.max_header_size) {
            Ok(None) => return false,
            Ok(Some(parsed)) => parsed,
            Err(rej) => {
                self.reject(key, rej);
                return true;
            }
        };
        if request.content_length.is_some_and(|n| n > 0) || request.chunked {
            self.reject(
                key,
                http::Rejection::new(400, "request bodies are not accepted here"),
            );
            return true;
        }
        conn.rx.drain(..head_len);
        match http::decide(&request, &self.origins) {
            Decision::Reject(rej) => self.reject(key, rej),
            Decision::Serve { page, head_only } => {
                let keep_alive = request.http11 && !request.connection_close;
                self.serve(key, &page, head_only, keep_alive);
            }
            Decision::Upgrade { route, accept } => self.open(key, route, &accept),
        }
        true
    }

    fn reject(&mut self, key: u32, rej: http::Rejection) {
        info!("rejected a request: {} {}", rej.status, rej.reason);
        self.respond(key, http::rejection_response(&rej), rej.status);
    }

    /// Queues a final HTTP response; the connection ends after it.
    fn respond(&mut self, key: u32, bytes: Vec<u8>, status: u16) {
        if status >= 400 {
            self.metrics.rejection(status);
        }
        let conn = &mut self.conns[key as usize];
        conn.rx = Vec::new();
        conn.clear(flag::KEEP_ALIVE);
        conn.tx.push(Frame::from(bytes));
        self.enter(key, Phase::Responding);
    }

    fn serve(&mut self, key: u32, page: &Page, head_only: bool, keep_alive: bool) {
        let response = match page {
            Page::Healthz => {
                let body = format!(
                    "{{\"status\": \"ok\", \"connections\": {}, \"rooms\": {}, \"uptime_seconds\": {:.3}}}\n",
                    self.open_websockets,
                    self.rooms.len(),
                    self.started.elapsed().as_secs_f64()
                );
                http::response(
                    200,
                    "application/json",
                    "Cache-Control: no-store\r\n",
                    body.as_bytes(),
                    head_only,
                    !keep_alive,
                )
            }
            Page::Metrics => {
                let body = self.metrics.render(self.gauges());
                http::response(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    "Cache-Control: no-store\r\n",
                    body.as_bytes(),
                    head_only,
                    !keep_alive,
                )
            }
            other => match pages::lookup(other) {
                Some(asset) => http::response(
                    200,
                    asset.content_type,
                    asset.cache_control,
                    asset.body,
                    head_only,
                    !keep_alive,
                ),
                None => return self.reject(key, http::Rejection::new(404, "not found")),
            },
        };
        if !keep_alive {
            return self.respond(key, response, 200);
        }
        let conn = &mut self.conns[key as usize];
        conn.tx.push(Frame::from(response));
        conn.since = self.now;
        if conn.tx.queued() > self.settings.max_send_queue {
            // Pipelining requests without reading the answers.
            debug!("connection {key}: HTTP responses piled past --max-send-queue");
            return self.abort(key);
        }
        self.mark_dirty(key);
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            connections: self.open_websockets,
            tcp_connections: self.conns.len(),
            rooms: self.rooms.len(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            decode_batches_in_flight: self.pool.as_ref().map_or(0, WorkerPool::in_flight),
        }
    }

    fn open(&mut self, key: u32, route: WsRoute, accept: &str) {
        let conn = &mut self.conns[key as usize];
        conn.tx.push(Frame::from(http::upgrade_response(accept)));
        conn.phase = Phase::Open;
        conn.since = self.now;
        self.open_websockets += 1;
        match route {
            WsRoute::Echo => conn.endpoint = Endpoint::Echo,
            WsRoute::Chat(room) => {
                conn.endpoint = Endpoint::Chat;
                conn.membership = Some(self.rooms.join(&room, key));
                debug!("connection {key} joined room {room}");
            }
        }
        self.mark_dirty(key);
        if self.settings.ping_ticks > 0 {
            self.arm(key, self.now + self.settings.ping_ticks);
        }
        // Frames the client sent right behind its request head.
        let conn = &mut self.conns[key as usize];
        if !conn.rx.is_empty() {
            let mut input = std::mem::take(&mut conn.rx);
            let used = self.decode_frames(key, &mut input);
            if let Some(conn) = self.conns.get_mut(key as usize) {
                input.drain(..used);
                if matches!(conn.phase, Phase::Open | Phase::Closing) {
                    conn.rx = input;
                }
            }
        }
        if let Some(conn) = self.conns.get_mut(key as usize) {
            conn.release_buffers();
        }
    }

    // ---- WebSocket frames ------------------------------------------------

    /// Decodes frames from `input` for connection `key`; returns the bytes
    /// consumed (the rest is an incomplete header or control frame).
    fn decode_frames(&mut self, key: u32, input: &mut [u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key as usize) else {
                return pos;
            };
            if !matches!(conn.phase, Phase::Open | Phase::Closing) {
                return pos;
            }
            let closing = conn.phase == Phase::Closing;
            let Decoded { consumed, event } = match conn
                .decoder
                .decode(&mut input[pos..], &self.settings.limits)
            {
                Ok(d) => d,
                Err(e) => {
                    if closing {
                        // Already closing: a broken peer just goes.
                        self.drop_conn(key);
                    } else {
                        debug!("connection {key}: {e}");
                        self.fail(key, e);
                    }
                    return pos;
                }
            };
            pos += consumed;
            let Some(event) = event else { return pos };
            let reply: Option<Vec<u8>> = match event {
                Event::Message(..) | Event::Ping(_) if closing => None,
                Event::Message(kind, payload) => {
                    self.metrics.messages_received += 1;
                    match (conn.endpoint, kind) {
                        (Endpoint::Echo, DataKind::Text) => {
                            Some(frame::encode_frame(Opcode::Text, payload))
                        }
                        (Endpoint::Echo, DataKind::Binary) => {
                            Some(frame::encode_frame(Opcode::Binary, payload))
                        }
                        (Endpoint::Chat, DataKind::Text) => {
                            let room = conn
                                .membership
                                .expect("an open chat connection is in a room")
                                .room;
                            let sender = ConnRef {
                                key,
                                generation: conn.generation,
                            };
                            self.batch.push(room, sender, payload);
                            None
                        }
                        (Endpoint::Chat, DataKind::Binary) => {
                            self.metrics.chat_errors += 1;
                            Some(chat::error_frame(&chat::ChatError::Binary))
                        }
                    }
                }
                Event::Ping(payload) => Some(frame::encode_frame(Opcode::Pong, payload)),
                Event::Pong(_) => None,
                Event::Close(status) => {
                    let code = status.map(|(code, _)| code);
                    self.on_peer_close(key, code);
                    continue;
                }
            };
            if let Some(bytes) = reply {
                self.send(key, Frame::from(bytes));
            }
            if self.batch.bytes() >= BATCH_BYTES {
                self.dispatch_batch();
            }
        }
    }

    fn on_peer_close(&mut self, key: u32, code: Option<CloseCode>) {
        let conn = &mut self.conns[key as usize];
        if conn.phase == Phase::Closing {
            // Our close was answered: the handshake is complete.
            self.enter(key, Phase::Closed);
            return;
        }
        // Echo the peer's code (section 5.5.1); an empty close gets 1000.
        let code = code.unwrap_or(CloseCode::NORMAL);
        self.metrics.close(code.0);
        conn.tx.push(Frame::from(frame::encode_close(code.0, "")));
        self.enter(key, Phase::Closed);
    }

    /// Fails the connection (RFC 6455 section 7.1.7). The bytes after a
    /// wire fault cannot be trusted to frame anything, so instead of looking
    /// for the client's close frame in them the relay sends its close,
    /// half-closes and discards input until the client's EOF (or the close
    /// timeout).
    fn fail(&mut self, key: u32, e: ProtocolError) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        let code = e.close_code();
        self.metrics.close(code.0);
        conn.rx = Vec::new();
        conn.tx
            .push(Frame::from(frame::encode_close(code.0, e.reason())));
        self.enter(key, Phase::Responding);
    }

    /// Sends a close frame and waits for the client's answer.
    fn start_close(&mut self, key: u32, code: CloseCode, reason: &str) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        self.metrics.close(code.0);
        conn.tx
            .push(Frame::from(frame::encode_close(code.0, reason)));
        self.enter(key, Phase::Closing);
    }

    /// A client whose queue passed --max-send-queue: what it has not started
    /// receiving is dropped, and the close frame says why (SPEC section 4).
    fn close_slow_consumer(&mut self, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        let dropped = conn.tx.discard_unstarted();
        info!("closing connection {key} as a slow consumer ({dropped} queued frames dropped)");
        self.metrics.slow_consumer_closes += 1;
        self.start_close(key, CloseCode::POLICY_VIOLATION, "slow consumer");
    }

    /// Moves a connection to a phase that is not `Open`: it leaves its room
    /// and gets the timer that ends it.
    fn enter(&mut self, key: u32, phase: Phase) {
        self.leave_room(key);
        let conn = &mut self.conns[key as usize];
        if conn.phase == Phase::Open {
            self.open_websockets -= 1;
        }
        conn.phase = phase;
        conn.since = self.now;
        self.mark_dirty(key);
        let due = self.now + self.settings.close_ticks;
        self.arm(key, due);
    }

    fn leave_room(&mut self, key: u32) {
        let Some(m) = self.conns[key as usize].membership.take() else {
            return;
        };
        if let Some(moved) = self.rooms.leave(m) {
            if let Some(other) = self.conns[moved as usize].membership.as_mut() {
                other.index = m.index;
            }
        }
    }

    // ---- sending ---------------------------------------------------------

    fn send(&mut self, key: u32, frame: Frame) {
        let conn = &mut self.conns[key as usize];
        conn.tx.push(frame);
        let over = conn.tx.queued() > self.settings.max_send_queue;
        self.mark_dirty(key);
        if over {
            self.close_slow_consumer(key);
        }
    }

    fn mark_dirty(&mut self, key: u32) {
        let conn = &mut self.conns[key as usize];
        if !conn.has(flag::DIRTY) {
            conn.set(flag::DIRTY);
            self.dirty.push(key);
        }
    }

    fn fanout(&mut self, room: crate::room::RoomId, frame: &Frame) {
        let Some(room) = self.rooms.get(room) else {
            return;
        };
        self.metrics.messages_delivered += room.members.len() as u64;
        for &member in &room.members {
            let conn = &mut self.conns[member as usize];
            debug_assert_eq!(conn.phase, Phase::Open);
            conn.tx.push(frame.clone());
            if conn.tx.queued() > self.settings.max_send_queue {
                self.slow.push(member);
            }
            if !conn.has(flag::DIRTY) {
                conn.set(flag::DIRTY);
                self.dirty.push(member);
            }
        }
        while let Some(key) = self.slow.pop() {
            self.close_slow_consumer(key);
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            if let Some(conn) = self.conns.get_mut(key as usize) {
                conn.clear(flag::DIRTY);
                self.flush(key);
            }
        }
        dirty.clear();
        // Keep the list's memory unless a crowd made it large.
        if dirty.capacity() > 65_536 {
            dirty = Vec::new();
        }
        self.dirty = dirty;
    }

    fn flush(&mut self, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.tx.is_empty() {
            return self.after_drained(key);
        }
        match conn.tx.write_to(&conn.stream) {
            Ok(w) => {
                self.metrics.bytes_sent += w.bytes as u64;
                if self.shutdown_deadline.is_some() {
                    self.summary.bytes_flushed_during_grace += w.bytes as u64;
                }
                if w.drained {
                    self.after_drained(key);
                } else if !conn.has(flag::WRITE_INTEREST) {
                    conn.set(flag::WRITE_INTEREST);
                    let token = Self::token_for(key as usize, conn.generation);
                    if self
                        .poll
                        .registry()
                        .reregister(
                            &mut conn.stream,
                            token,
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        self.abort(key);
                    }
                }
            }
            Err(e) => {
                debug!("write error on connection {key}: {e}");
                self.abort(key);
            }
        }
    }

    fn after_drained(&mut self, key: u32) {
        let conn = &mut self.conns[key as usize];
        if conn.has(flag::WRITE_INTEREST) {
            conn.clear(flag::WRITE_INTEREST);
            let token = Self::token_for(key as usize, conn.generation);
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, Interest::READABLE)
                .is_err()
            {
                return self.abort(key);
            }
        }
        match conn.phase {
            Phase::Closed => {
                self.summary.closed_cleanly += usize::from(self.shutdown_deadline.is_some());
                self.drop_conn(key)
            }
            Phase::Responding if conn.has(flag::PEER_EOF) => self.drop_conn(key),
            Phase::Responding => {
                // Half-close so the client sees the end of the answer, then
                // wait for its EOF (bounded by the close timeout).
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.phase = Phase::Lingering;
            }
            _ => {}
        }
    }

    // ---- chat decoding hand-off -----------------------------------------

    fn dispatch_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        match self.pool.as_mut() {
            Some(pool)
                if pool.in_flight() > 0
                    || self.batch.len() >= self.settings.inline_decode_below =>
            {
                if pool.is_saturated() {
                    self.collect_results(true);
                }
                if let Some(pool) = self.pool.as_mut() {
                    pool.submit(&mut self.batch);
                }
            }
            _ => {
                let mut outcomes = std::mem::take(&mut self.outcomes);
                decode_batch(&self.batch, &mut outcomes);
                self.batch = Batch::default();
                self.apply(&mut outcomes);
                self.outcomes = outcomes;
            }
        }
    }

    fn collect_results(&mut self, wait: bool) {
        let Some(mut pool) = self.pool.take() else {
            return;
        };
        pool.collect(wait, |mut outcomes| self.apply(&mut outcomes));
        self.pool = Some(pool);
    }

    fn apply(&mut self, outcomes: &mut Vec<Outcome>) {
        for outcome in outcomes.drain(..) {
            match outcome {
                Outcome::Broadcast { room, frame } => self.fanout(room, &frame),
                Outcome::Error { sender, frame } => {
                    self.metrics.chat_errors += 1;
                    let alive = self.conns.get(sender.key as usize).is_some_and(|c| {
                        c.generation == sender.generation && c.phase == Phase::Open
                    });
                    if alive {
                        self.send(sender.key, frame);
                    }
                }
            }
        }
    }

    // ---- timers ----------------------------------------------------------

    /// Makes sure connection `key` is checked at tick `due` or earlier.
    fn arm(&mut self, key: u32, due: u32) {
        let conn = &mut self.conns[key as usize];
        if due < conn.timer_due {
            conn.timer_due = due;
            self.timers.schedule(key, conn.generation, due);
        }
    }

    fn run_timers(&mut self) {
        if let Some(at) = self.accept_retry_at {
            if self.now >= at {
                self.accept_retry_at = None;
                self.accept_all();
            }
        }
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.expire(self.now, &mut expired);
        for e in expired.drain(..) {
            let Some(conn) = self.conns.get_mut(e.key as usize) else {
                continue;
            };
            if conn.generation != e.generation || conn.timer_due != e.due {
                continue; // superseded by an earlier entry
            }
            conn.timer_due = NO_TIMER;
            self.on_timer(e.key);
        }
        self.expired = expired;
    }

    fn on_timer(&mut self, key: u32) {
        let s = &self.settings;
        let now = self.now;
        let conn = &mut self.conns[key as usize];
        match conn.phase {
            Phase::Handshake => {
                let due = conn.since + s.handshake_ticks;
                if now >= due {
                    info!(
                        "connection {key}: no complete request head within the handshake timeout"
                    );
                    self.respond(
                        key,
                        http::rejection_response(&http::Rejection::new(
                            408,
                            "no complete request within the handshake timeout",
                        )),
                        408,
                    );
                } else {
                    self.arm(key, due);
                }
            }
            Phase::Open => {
                if s.ping_ticks == 0 {
                    return;
                }
                let silent = now.saturating_sub(conn.last_rx);
                if silent >= s.idle_ticks {
                    debug!("connection {key}: idle timeout");
                    self.start_close(key, CloseCode::GOING_AWAY, "idle timeout");
                } else if silent >= s.ping_ticks && !conn.has(flag::PINGED) {
                    conn.set(flag::PINGED);
                    let due = conn.last_rx + s.idle_ticks;
                    self.send(key, Frame::from(frame::encode_frame(Opcode::Ping, b"")));
                    self.arm(key, due);
                } else {
                    let due = if conn.has(flag::PINGED) {
                        conn.last_rx + s.idle_ticks
                    } else {
                        conn.last_rx + s.ping_ticks
                    };
                    self.arm(key, due);
                }
            }
            Phase::Closing | Phase::Closed | Phase::Responding | Phase::Lingering => {
                let due = conn.since + s.close_ticks;
                if now >= due {
                    debug!("connection {key}: close timeout in phase {:?}", conn.phase);
                    self.abort(key);
                } else {
                    self.arm(key, due);
                }
            }
        }
    }

    // ---- shutdown and teardown -------------------------------------------

    fn begin_shutdown(&mut self, why: &str) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        info!(
            "{why}: stopping accepts, closing {} connections with 1001",
            self.conns.len()
        );
        self.accepting = false;
        let _ = self.poll.registry().deregister(&mut self.listener);
        // Messages already accepted are delivered before anyone's 1001.
        self.dispatch_batch();
        if let Some(mut pool) = self.pool.take() {
            pool.drain(|mut outcomes| self.apply(&mut outcomes));
            self.pool = Some(pool);
        }
        self.summary.connections_at_shutdown = self.conns.len();
        let keys: Vec<u32> = self.conns.iter().map(|(k, _)| k as u32).collect();
        for key in keys {
            match self.conns[key as usize].phase {
                Phase::Open => self.start_close(key, CloseCode::GOING_AWAY, "server shutting down"),
                Phase::Handshake => self.respond(
                    key,
                    http::rejection_response(&http::Rejection::new(
                        503,
                        "the relay is shutting down",
                    )),
                    503,
                ),
                _ => {}
            }
        }
        self.shutdown_deadline = Some(self.now + self.settings.grace_ticks);
    }

    /// Ends a connection that did not finish a closing handshake.
    fn abort(&mut self, key: u32) {
        if let Some(conn) = self.conns.get(key as usize) {
            if matches!(conn.phase, Phase::Open | Phase::Closing) {
                self.metrics.close(1006);
            }
            self.drop_conn(key);
        }
    }

    fn drop_conn(&mut self, key: u32) {
        if !self.conns.contains(key as usize) {
            return;
        }
        self.leave_room(key);
        let mut conn = self.conns.remove(key as usize);
        if conn.phase == Phase::Open {
            self.open_websockets -= 1;
        }
        if conn.has(flag::OVER_LIMIT) {
            self.over_limit -= 1;
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
