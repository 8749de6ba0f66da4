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
//!   connection that got any is flushed once at its end: lone frames in
//!   io_uring batches (`uring.rs`), several frames with one vectored write.
//!   WRITABLE interest is registered only while a connection's kernel buffer
//!   is full.
//! - A connection is in a room exactly while it is `Open`; every other phase
//!   has left it, so fan-out only ever meets open members.
//! - Every connection that is not open has a timer armed that ends it.

use crate::backplane::{self, Backplane};
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
use crate::worker::{decode_batch, Batch, ConnRef, Encoding, Outcome, WorkerPool};
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod accept;
mod decoding;
mod frames;
mod handshake;
mod output;
mod publishing;
mod teardown;
mod timers;
mod uring;

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
    /// Every TCP connection held when shutdown began, HTTP ones included.
    pub connections_at_shutdown: usize,
    /// The open WebSocket connections among them: each is sent 1001.
    pub websockets_at_shutdown: usize,
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
    /// The Redis backplane, with `--redis`.
    backplane: Option<Backplane>,
    backplane_scratch: Vec<backplane::Event>,
    publish_token: Option<String>,
    metrics: Metrics,
    started: Instant,
    now: u32,
    waker: Arc<Waker>,
    shutdown_requested: Arc<AtomicBool>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    shutdown_deadline: Option<u32>,
    summary: RunSummary,
    /// Batched sends, made when the loop starts, unless `--io-uring off`
    /// or the kernel has none.
    ring: Option<uring::SendRing>,
    io_uring: crate::config::IoUringMode,
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
        // Small frames go out now; batching is the loop's job, not Nagle's.
        // Linux copies TCP_NODELAY from a listening socket to the sockets it
        // accepts, so it is set once here rather than per connection
        // (a test at the end of this file checks that the kernel does).
        set_nodelay(&listener)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let backplane = Backplane::start(config, waker.clone())?;
        let encoding = if backplane.is_some() {
            Encoding::Msgpack {
                max_message: config.max_message_size,
            }
        } else {
            Encoding::Frame
        };
        let workers = config.worker_threads();
        let pool = if workers == 0 {
            None
        } else {
            Some(WorkerPool::new(workers, encoding, waker.clone())?)
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
            backplane,
            backplane_scratch: Vec::new(),
            publish_token: config.publish_token.clone(),
            metrics: Metrics::default(),
            started: Instant::now(),
            now: 0,
            waker,
            shutdown_requested: Arc::new(AtomicBool::new(false)),
            signals,
            shutdown_deadline: None,
            summary: RunSummary::default(),
            ring: None,
            io_uring: config.io_uring,
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

    /// Runs until a graceful shutdown completes. With io_uring in use, the
    /// kernel's teardown of the ring after `run` returns can interrupt one
    /// blocking call of the calling thread (EINTR); give the loop a thread
    /// that ends with it, or retry such calls.
    pub fn run(mut self) -> io::Result<RunSummary> {
        // Made here, on the loop's thread, not in bind(): the kernel ties a
        // ring to the thread that creates it and, when the ring is freed,
        // interrupts that thread's blocking calls (a socket read with a
        // timeout fails with EINTR). That must be the loop, which exits with
        // it, never whoever called bind().
        self.ring = uring::SendRing::for_mode(self.io_uring)?;
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
        self.backplane_events();
        if let Some(bp) = self.backplane.as_mut() {
            bp.flush();
        }
        self.run_timers();
        self.flush_dirty();
    }

    /// Fans out what came back from Redis.
    fn backplane_events(&mut self) {
        let Some(bp) = self.backplane.as_mut() else {
            return;
        };
        // Taken out first: fan-out may close slow consumers, which must reach
        // the backplane (an emptied room unsubscribes).
        let mut events = std::mem::take(&mut self.backplane_scratch);
        bp.drain(|e| events.push(e));
        for event in events.drain(..) {
            match event {
                backplane::Event::Deliver { room, frame } => {
                    if let Some(id) = self.rooms.find(&room) {
                        self.fanout(id, &frame);
                    }
                }
                backplane::Event::Up(n) => info!("Redis shard {n} is up: rooms span every node"),
                // The backplane thread already logged why, at warn.
                backplane::Event::Down(n) => debug!("Redis shard {n} is down"),
            }
        }
        self.backplane_scratch = events;
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

    /// Decodes the frames buffered in connection `key`'s `rx`, keeping the
    /// unconsumed tail while the connection still reads frames.
    fn decode_buffered(&mut self, key: u32) {
        let mut input = std::mem::take(&mut self.conns[key as usize].rx);
        let used = self.decode_frames(key, &mut input);
        if let Some(conn) = self.conns.get_mut(key as usize) {
            input.drain(..used);
            if matches!(conn.phase, Phase::Open | Phase::Closing) {
                conn.rx = input;
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
                    self.decode_buffered(key);
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
}

fn set_nodelay(listener: &TcpListener) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a descriptor the listener owns, with a c_int
    // option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(listener),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop relies on accepted sockets inheriting TCP_NODELAY.
    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        set_nodelay(&listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let accepted = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }
}
