//! The event loop: the only code that touches client sockets.
//!
//! One mio `Poll` owns the listener ([`accept`]), every client socket
//! ([`conn`]), the waker that the JSON workers, the backplane and shutdown
//! handles use, and the signal pipe ([`control`]). The loop only dispatches:
//! what a connection's bytes mean, and what it does next, is its
//! [`Session`]'s; who is in which room, and where a message goes, is the
//! [`Relay`]'s. Each iteration:
//! 1. readiness events: accept, read (into one shared buffer, handed to the
//!    session), mark writable connections dirty;
//! 2. connections over their read budget are read again;
//! 3. the chat batch goes to the decoders, finished outcomes are fanned out
//!    (or published), and arrivals from Redis are fanned out;
//! 4. timers fire;
//! 5. every dirty connection is flushed once: lone frames in io_uring
//!    batches ([`uring`]), several frames with one vectored write ([`io`]).
//!
//! Invariants:
//! - Tokens below [`conn::FIRST_CONN_TOKEN`] are reserved; a connection's
//!   token carries its [`ConnId`], so an event for a connection that ended
//!   never reaches the slot's next owner.
//! - Every session input goes through [`Server::call`], which then carries
//!   out the session's effects in order, marks it dirty if it has bytes to
//!   send, and makes sure its timer fires by its deadline. Effects that
//!   cause more effects queue behind them (a loop, never recursion).
//! - A connection is in a room exactly while its session is open: rooms
//!   change only on [`Effect::Upgrade`] and [`Effect::Left`], and a fan-out
//!   never changes the room it iterates (slow consumers are closed after).
//! - Reads are drained until a short read or `WouldBlock` (edge-triggered),
//!   within [`io::READ_BUDGET`] per connection per iteration.
//! - WRITABLE interest is registered only while a kernel buffer is full.
//!
//! Every libc call and `unsafe` block is in [`sys`].

mod accept;
mod conn;
mod control;
mod endpoints;
mod io;
pub mod sys;
mod transport;
mod uring;
pub mod wheel;

pub use control::ShutdownHandle;

use crate::auth::{self, AuthClient, Grant, JoinCheck, PerIpLimit, Refusal, Verdict};
use crate::config::Config;
use crate::metrics::{Gauges, Metrics};
use crate::relay::delivery::{Arrival, Delivery};
use crate::relay::room::RoomId;
use crate::relay::worker::Outcome;
use crate::relay::{ConnId, Published, Relay};
use crate::session::{Compression, Cx, Effect, Member, Route, Session, Sink, Tick, Ticks, Upgrade};
use crate::settings::Settings;
use crate::tls;
use crate::wire::deflate::WindowBits;
use crate::wire::frame::Frame;
use crate::wire::http::{Rejection, WsRoute};
use crate::wire::message::DataKind;
use accept::Acceptor;
use conn::Connections;
use control::Control;
use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport::{TlsLink, SEAL_BATCH};
use uring::SendRing;
use wheel::TimerWheel;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);

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

pub struct Server {
    poll: Poll,
    acceptor: Acceptor,
    conns: Connections,
    relay: Relay,
    settings: Settings,
    /// `--max-connections`, resolved against the open-file limit.
    max_connections: usize,
    /// Connections over the cap still get a 503 while fewer than this many
    /// such answers are in flight; past it they are closed at once.
    over_limit_slots: usize,
    metrics: Metrics,
    /// Per-connection deadlines.
    wheel: TimerWheel,
    /// Session effects not yet carried out, oldest first, each with the
    /// connection that emitted it.
    effects: VecDeque<(ConnId, Effect)>,
    /// True while [`Server::run_effects`] drains `effects`: what carrying
    /// one out causes waits its turn instead of recursing.
    running_effects: bool,
    /// Connections with bytes to write, flushed at the end of the iteration.
    dirty: Vec<ConnId>,
    /// Connections over their read budget, read again next iteration, and
    /// whether their peer had shut its side.
    read_again: Vec<(ConnId, bool)>,
    /// Fan-out recipients over the high-water mark, whose flow is judged
    /// after the fan-out.
    behind: Vec<ConnId>,
    /// Decoded chat messages waiting to be fanned out or published.
    outcomes: Vec<Outcome>,
    /// What came back from Redis, waiting to be carried out.
    arrivals: Vec<Arrival>,
    expired: Vec<wheel::Entry>,
    /// The one read buffer every connection reads into.
    scratch: Vec<u8>,
    /// Batched sends, made when the loop starts, unless `--io-uring off` or
    /// the kernel has none.
    ring: Option<SendRing>,
    started: Instant,
    now: Tick,
    waker: Arc<Waker>,
    control: Control,
    shutdown_deadline: Option<Tick>,
    summary: RunSummary,
    /// Rejections by status as last logged, and when to log the next
    /// summary: one line a second at info, however many requests a flood
    /// of bad ones makes (each is logged at debug).
    rejections_logged: BTreeMap<u16, u64>,
    next_rejection_report: Tick,
    /// The auth back end (`--auth-url`), on its own thread.
    auth: Option<AuthClient>,
    /// Upgrades waiting for the back end's answer, with their room.
    awaiting_auth: HashMap<ConnId, String>,
    /// Joins waiting for Redis to confirm their room's subscription, by
    /// room, and the room each waits for.
    awaiting_room: HashMap<String, Vec<(ConnId, Grant)>>,
    parked: HashMap<ConnId, String>,
    auth_scratch: Vec<(ConnId, Verdict)>,
    /// `--max-connections-per-ip`, with each counted connection's address
    /// (kept only when the limit is on).
    per_ip: Option<PerIpLimit>,
    addresses: HashMap<ConnId, IpAddr>,
    /// The TLS configuration new connections handshake with (`--tls-cert`;
    /// replaced on SIGHUP, while open connections keep theirs).
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Buffers every TLS connection shares: decrypted input, records to
    /// send, and frames gathered into one record.
    tls_plain: Vec<u8>,
    tls_out: Vec<u8>,
    tls_gather: Vec<u8>,
    /// The one compressor and inflater (permessage-deflate): lent to
    /// sessions, and used by fan-out to compress a broadcast once.
    compression: Box<Compression>,
}

/// The loop's side of a session's [`Sink`]: chat messages into the decode
/// batch, effects into the queue, tagged with the connection.
struct Outbox<'a> {
    id: ConnId,
    relay: &'a mut Relay,
    effects: &'a mut VecDeque<(ConnId, Effect)>,
    metrics: &'a mut Metrics,
}

impl Sink for Outbox<'_> {
    fn chat(&mut self, room: RoomId, text: &[u8], user: Option<&Arc<str>>) {
        self.relay.chat(room, self.id, user, text);
    }

    fn effect(&mut self, effect: Effect) {
        self.effects.push_back((self.id, effect));
    }

    fn metrics(&mut self) -> &mut Metrics {
        self.metrics
    }

    fn label(&self) -> u64 {
        u64::from(self.id.key)
    }
}

impl Server {
    /// Binds the listener and starts the worker threads.
    pub fn bind(config: &Config) -> std::io::Result<Server> {
        Server::new(parse(config)?, false)
    }

    /// Like [`Server::bind`], and shuts down gracefully on SIGINT and SIGTERM.
    /// Signals are process-wide, so only the binary does this; tests use a
    /// [`ShutdownHandle`].
    pub fn bind_with_signals(config: &Config) -> std::io::Result<Server> {
        Server::new(parse(config)?, true)
    }

    /// Binds with settings already parsed (the binary parses them first, to
    /// report a bad flag before anything starts).
    pub fn new(settings: Settings, signals: bool) -> std::io::Result<Server> {
        let poll = Poll::new()?;
        // Before the port opens: a signal sent as soon as the relay accepts
        // connections is never fatal.
        let control = Control::new(signals, poll.registry(), SIGNALS)?;
        let acceptor = Acceptor::bind(
            settings.bind,
            settings.listen_backlog,
            poll.registry(),
            LISTENER,
        )?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let delivery = Delivery::start(&settings.flags, waker.clone())?;
        let relay = Relay::new(
            delivery,
            settings.workers,
            settings.inline_decode_below,
            settings.policy.limits.max_message_size as usize,
            waker.clone(),
        )?;
        let auth = match &settings.auth.backend {
            Some(backend) => Some(AuthClient::start(backend.clone(), waker.clone())?),
            None => None,
        };
        let per_ip = settings.auth.per_ip.map(PerIpLimit::new);
        let settings_tls = settings.tls.as_ref().map(|t| t.config.clone());
        let capacity = sys::connection_capacity();
        let (max_connections, over_limit_slots) = settings.connection_limits(capacity);
        if max_connections > capacity {
            warn!(
                "--max-connections {max_connections} is over what the open-file limit allows (about {capacity}); past that, accepts fail with EMFILE and clients get 503"
            );
        }
        Ok(Server {
            poll,
            acceptor,
            conns: Connections::default(),
            relay,
            settings,
            max_connections,
            over_limit_slots,
            metrics: Metrics::default(),
            wheel: TimerWheel::default(),
            effects: VecDeque::new(),
            running_effects: false,
            dirty: Vec::new(),
            read_again: Vec::new(),
            behind: Vec::new(),
            outcomes: Vec::new(),
            arrivals: Vec::new(),
            expired: Vec::new(),
            scratch: vec![0; io::SCRATCH_SIZE],
            ring: None,
            started: Instant::now(),
            now: Tick(0),
            waker,
            control,
            shutdown_deadline: None,
            summary: RunSummary::default(),
            rejections_logged: BTreeMap::new(),
            next_rejection_report: Tick(0),
            auth,
            awaiting_auth: HashMap::new(),
            awaiting_room: HashMap::new(),
            parked: HashMap::new(),
            auth_scratch: Vec::new(),
            per_ip,
            addresses: HashMap::new(),
            tls: settings_tls,
            tls_plain: Vec::new(),
            tls_out: Vec::new(),
            tls_gather: Vec::new(),
            compression: Box::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor.local_addr()
    }

    pub fn origins_allow_any(&self) -> bool {
        self.settings.policy.origins.allows_any()
    }

    /// JSON decoding threads.
    pub fn workers(&self) -> usize {
        self.settings.workers
    }

    /// The connection cap in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.control.handle(self.waker.clone())
    }

    /// Runs until a graceful shutdown completes. With io_uring in use, the
    /// kernel's teardown of the ring after `run` returns can interrupt one
    /// blocking call of the calling thread (EINTR); give the loop a thread
    /// that ends with it, or retry such calls.
    pub fn run(mut self) -> std::io::Result<RunSummary> {
        // Made here, on the loop's thread, not in bind(): the kernel ties a
        // ring to the thread that creates it and, when the ring is freed,
        // interrupts that thread's blocking calls (a socket read with a
        // timeout fails with EINTR). That must be the loop, which exits with
        // it, never whoever called bind().
        self.ring = SendRing::for_mode(self.settings.io_uring)?;
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = Tick::at(self.started.elapsed());
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {
                        if let Some(why) = self.control.handle_requested() {
                            self.begin_shutdown(why);
                        }
                    }
                    SIGNALS => {
                        for asked in self.control.signalled() {
                            match asked {
                                control::Asked::Stop(why) => self.begin_shutdown(why),
                                control::Asked::Reload => self.reload_tls(),
                            }
                        }
                    }
                    token => {
                        let Some(id) = conn::id_of(token) else {
                            continue;
                        };
                        if self.conns.get(id).is_none() {
                            continue; // ended earlier in this batch
                        }
                        if event.is_writable() {
                            self.mark_dirty(id);
                        }
                        if event.is_read_closed() || event.is_error() {
                            self.on_readable(id, true);
                        } else if event.is_readable() {
                            self.on_readable(id, false);
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
        for id in self.conns.ids() {
            self.call(id, |s, cx| s.abort(cx));
        }
        Ok(self.summary)
    }

    /// Everything that is done once per iteration, after the events.
    fn end_of_iteration(&mut self) {
        let mut again = std::mem::take(&mut self.read_again);
        for &(id, hup) in &again {
            if self.conns.get(id).is_some() {
                self.on_readable(id, hup);
            }
        }
        again.clear();
        // Reads above may have queued more for the next iteration.
        again.append(&mut self.read_again);
        self.read_again = again;
        self.dispatch();
        self.relay.collect(&mut self.outcomes);
        self.apply_outcomes();
        self.fan_out_arrivals();
        self.auth_answers();
        self.relay.delivery.flush();
        self.run_timers();
        self.flush_dirty();
        if self.now >= self.next_rejection_report {
            self.report_rejections();
        }
    }

    /// One info line a second (and one at shutdown) for the requests
    /// refused since the last.
    fn report_rejections(&mut self) {
        self.next_rejection_report = self.now.after(Ticks(10));
        let now = &self.metrics.handshake_rejections;
        if *now == self.rejections_logged {
            return;
        }
        let mut total = 0;
        let mut parts = Vec::new();
        for (status, n) in now {
            let new = n - self.rejections_logged.get(status).copied().unwrap_or(0);
            if new > 0 {
                total += new;
                parts.push(format!("{new} × {status}"));
            }
        }
        info!(
            "rejected {total} requests in the last second: {}",
            parts.join(", ")
        );
        self.rejections_logged = now.clone();
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.read_again.is_empty() || !self.dirty.is_empty() {
            return Some(Duration::ZERO);
        }
        if self.wheel.is_empty()
            && !self.acceptor.is_backing_off()
            && self.shutdown_deadline.is_none()
        {
            return None;
        }
        // Wake at the next tick; the wheel is cheap to advance.
        let next = Tick(self.now.0 + 1);
        Some(
            next.wait_from(self.started.elapsed())
                .max(Duration::from_millis(1)),
        )
    }

    // ---- driving sessions ------------------------------------------------

    /// Gives connection `id`'s session one input, then carries out what
    /// follows: its effects, its place in the dirty list, its timer.
    fn call(&mut self, id: ConnId, input: impl FnOnce(&mut Session, &mut Cx<'_, Outbox<'_>>)) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let mut out = Outbox {
            id,
            relay: &mut self.relay,
            effects: &mut self.effects,
            metrics: &mut self.metrics,
        };
        let mut cx = Cx {
            now: self.now,
            policy: &self.settings.policy,
            out: &mut out,
            compression: &mut self.compression,
            // Sealed into a TLS record the kernel has not taken: the
            // session must not drop or replace those frames meanwhile.
            committed: conn.tls.as_deref().map_or(0, |link| link.sealed),
        };
        input(&mut conn.session, &mut cx);
        if conn.session.wants_write() && !conn.dirty {
            conn.dirty = true;
            self.dirty.push(id);
        }
        if let Some(due) = conn.session.deadline(&self.settings.policy) {
            if due < conn.timer_due {
                conn.timer_due = due;
                self.wheel.schedule(id, due);
            }
        }
        self.run_effects();
    }

    /// Carries out queued effects in order, until none are left.
    fn run_effects(&mut self) {
        if self.running_effects {
            return;
        }
        self.running_effects = true;
        while let Some((id, effect)) = self.effects.pop_front() {
            self.carry_out(id, effect);
        }
        self.running_effects = false;
    }

    fn carry_out(&mut self, id: ConnId, effect: Effect) {
        match effect {
            Effect::Upgrade(upgrade) => self.upgrade(id, upgrade),
            Effect::Status {
                page,
                head_only,
                keep_alive,
            } => {
                let response = endpoints::status_page(
                    &page,
                    head_only,
                    keep_alive,
                    self.gauges(),
                    &self.metrics,
                    &self.relay.delivery,
                );
                self.call(id, |s, cx| s.answer(response, cx));
            }
            Effect::Publish {
                room,
                body,
                keep_alive,
            } => match self.relay.publish(&room, &body) {
                Ok(published) => {
                    let count = published.count();
                    self.metrics.api_published += count as u64;
                    if let Published::Local {
                        room: Some(room),
                        frames,
                    } = published
                    {
                        for frame in &frames {
                            self.fanout(room, frame);
                        }
                    }
                    let response = endpoints::published(count, keep_alive);
                    self.call(id, |s, cx| s.answer(response, cx));
                }
                Err(refusal) => self.call(id, |s, cx| s.refuse_publish(&refusal, cx)),
            },
            Effect::Left(membership) => {
                self.conns.open -= 1;
                if let Some(m) = membership {
                    if let Some(moved) = self.relay.leave(m) {
                        if let Some(conn) = self.conns.get_mut(moved) {
                            conn.session.set_member_index(m.index);
                        }
                    }
                }
            }
            Effect::Throttle { room, on } => {
                // The room is free again: its members' reads resume.
                let waiting = self.relay.rooms.throttle(room, on);
                self.read_again.extend(waiting);
            }
            Effect::HalfClose => {
                self.tls_close_notify(id);
                if let Some(conn) = self.conns.get(id) {
                    let _ = conn.socket.shutdown(Shutdown::Write);
                }
            }
            Effect::Ended { clean } => {
                self.unpark(id);
                self.awaiting_auth.remove(&id);
                if clean && self.shutdown_deadline.is_some() {
                    self.summary.closed_cleanly += 1;
                }
                if clean {
                    self.tls_close_notify(id);
                }
                if let Some(mut conn) = self.conns.remove(id) {
                    if conn.over_limit {
                        self.conns.over_limit -= 1;
                    }
                    if let (Some(limit), Some(ip)) =
                        (self.per_ip.as_mut(), self.addresses.remove(&id))
                    {
                        limit.close(ip);
                    }
                    let _ = self.poll.registry().deregister(&mut conn.socket);
                }
            }
        }
    }

    // ---- joining -----------------------------------------------------------

    /// Decides an upgrade: echo opens at once; a chat join asks
    /// authorization (open rooms, the join token, or the auth back end,
    /// which answers on a later iteration while the session waits).
    fn upgrade(&mut self, id: ConnId, upgrade: Upgrade) {
        if self.conns.get(id).is_none() {
            return;
        }
        let room = match upgrade.route {
            WsRoute::Echo => return self.open(id, Route::Echo, None),
            WsRoute::Chat(room) => room,
        };
        let policy = &self.settings.auth.policy;
        match policy.check(upgrade.query.as_deref(), &room, unix_now()) {
            JoinCheck::Open => self.join(id, room, Grant::open()),
            JoinCheck::Decided(verdict) => self.decided(id, room, verdict),
            JoinCheck::AskBackend => {
                let asked = self.auth.as_mut().map(|client| {
                    client.ask(
                        tag(id),
                        &room,
                        upgrade.cookie.as_deref(),
                        upgrade.origin.as_deref(),
                    )
                });
                match asked {
                    Some(Some(cached)) => self.decided(id, room, cached),
                    Some(None) => {
                        self.awaiting_auth.insert(id, room);
                    }
                    // A policy that asks the back end always has a client.
                    None => self.decided(
                        id,
                        room,
                        Err(Refusal::BackendUnavailable(auth::Unavailable::Stopped)),
                    ),
                }
            }
        }
    }

    /// The auth back end's answers that came in.
    fn auth_answers(&mut self) {
        let Some(client) = self.auth.as_mut() else {
            return;
        };
        client.flush();
        let mut answers = std::mem::take(&mut self.auth_scratch);
        client.drain(|t, verdict| answers.push((untag(t), verdict)));
        for (id, verdict) in answers.drain(..) {
            let Some(room) = self.awaiting_auth.remove(&id) else {
                continue;
            };
            // The client may have gone, or timed out, meanwhile.
            if self.conns.get(id).is_some_and(|c| c.session.is_upgrading()) {
                self.decided(id, room, verdict);
            }
        }
        self.auth_scratch = answers;
    }

    fn decided(&mut self, id: ConnId, room: String, verdict: Verdict) {
        match verdict {
            Ok(grant) => self.join(id, room, grant),
            Err(refusal) => {
                self.metrics.auth_rejections[refusal.index()] += 1;
                debug!("connection {id}: join to {room} refused: {refusal}");
                let rejection = Rejection::new(refusal.status(), refusal.to_string());
                self.call(id, |s, cx| s.refuse_upgrade(&rejection, cx));
            }
        }
    }

    fn join(&mut self, id: ConnId, room: String, grant: Grant) {
        // With Redis, a room new on this node joins once Redis confirmed its
        // subscription: a message published the instant the client's `open`
        // fires must reach it (SPEC section 4). The handshake timeout still
        // bounds the wait.
        if !self.relay.delivery.prepare(&room) {
            self.parked.insert(id, room.clone());
            self.awaiting_room
                .entry(room)
                .or_default()
                .push((id, grant));
            return;
        }
        let member = Member::new(grant, &self.settings.policy, self.now);
        debug!("connection {id} joined room {room}");
        let m = self.relay.join(&room, id);
        self.open(id, Route::Chat(m), member);
    }

    fn open(&mut self, id: ConnId, route: Route, member: Option<Box<Member>>) {
        self.conns.open += 1;
        self.call(id, |s, cx| s.accept_upgrade(route, member, cx));
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            connections: self.conns.open,
            tcp_connections: self.conns.len(),
            rooms: self.relay.rooms.len(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            decode_batches_in_flight: self.relay.decode_batches_in_flight(),
            log_lines_dropped: crate::logger::dropped(),
        }
    }

    // ---- accepting -------------------------------------------------------

    fn accept_all(&mut self) {
        while let Some((stream, peer)) = self.acceptor.next(&mut self.metrics, self.now) {
            self.add_conn(stream, peer.ip());
        }
    }

    fn add_conn(&mut self, mut socket: TcpStream, ip: IpAddr) {
        let open = self.conns.len() - self.conns.over_limit;
        let over = open >= self.max_connections;
        if over && self.conns.over_limit >= self.over_limit_slots {
            self.metrics.rejection(503);
            return; // dropped: closed at once
        }
        // TCP_NODELAY comes from the listener: one setsockopt fewer per
        // connection in a connection storm.
        let id = self.conns.next_id();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut socket, conn::token(id), Interest::READABLE)
        {
            warn!("could not register a connection: {e}");
            return;
        }
        let link = match &self.tls {
            Some(config) => match tls::TlsConn::new(config.clone()) {
                Ok(conn) => Some(Box::new(TlsLink::new(conn))),
                Err(e) => {
                    warn!("could not start TLS on a connection: {e}");
                    let _ = self.poll.registry().deregister(&mut socket);
                    return;
                }
            },
            None => None,
        };
        let tls = link.is_some();
        let stored = self.conns.insert(socket, Session::new(self.now), link);
        debug_assert_eq!(stored, id);
        let per_ip_ok = match self.per_ip.as_mut() {
            Some(limit) if !over => limit.try_open(ip),
            _ => true,
        };
        if (over || !per_ip_ok) && tls {
            // A refusal would need a whole TLS handshake to be heard: the
            // connection is closed at once instead.
            self.metrics.rejection(if over { 503 } else { 429 });
            if let Some(mut conn) = self.conns.remove(id) {
                let _ = self.poll.registry().deregister(&mut conn.socket);
            }
        } else if over {
            self.conns[id].over_limit = true;
            self.conns.over_limit += 1;
            debug!(
                "rejected a connection: over max-connections ({})",
                self.max_connections
            );
            let rejection = Rejection::new(503, "too many connections; retry later");
            self.call(id, |s, cx| s.refuse(&rejection, cx));
        } else if !per_ip_ok {
            debug!("rejected a connection from {ip}: over --max-connections-per-ip");
            let rejection = Rejection::new(
                429,
                "too many connections from your address (--max-connections-per-ip); retry later",
            );
            self.call(id, |s, cx| s.refuse(&rejection, cx));
        } else {
            if self.per_ip.is_some() {
                self.addresses.insert(id, ip);
            }
            // Arms the handshake timeout.
            self.call(id, |_, _| {});
        }
    }

    // ---- reading ---------------------------------------------------------

    /// Reads what connection `id` has. `hup`: the event said the peer shut
    /// its side, so the EOF may already be queued behind the data and the
    /// socket must be read until it returns 0 (no later edge will report it).
    fn on_readable(&mut self, id: ConnId, hup: bool) {
        let mut budget = io::READ_BUDGET;
        loop {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            // Flow control: a connection is not read while its own queue is
            // full, nor while a member of its room is behind and draining;
            // what it sends waits in the kernel, and TCP slows it down.
            if conn.session.read_blocked(&self.settings.policy) {
                conn.read_paused = Some(hup);
                return;
            }
            if let Some(m) = conn.session.membership() {
                if self.relay.rooms.is_throttled(m.room) {
                    self.relay.rooms.wait(m.room, id, hup);
                    return;
                }
            }
            // Ciphertext of a record that arrived in part goes first.
            let kept = match conn.tls.as_deref_mut() {
                Some(link) => link.conn.restore_pending(&mut self.scratch),
                None => 0,
            };
            let n = match io::read(&conn.socket, &mut self.scratch[kept..]) {
                io::Read::Data(n) => n,
                io::Read::Eof => return self.on_eof(id),
                io::Read::WouldBlock => return,
                io::Read::Failed(e) => {
                    debug!("read error on connection {id}: {e}");
                    return self.call(id, |s, cx| s.abort(cx));
                }
            };
            self.metrics.bytes_received += n as u64;
            let mut scratch = std::mem::take(&mut self.scratch);
            if conn.tls.is_some() {
                self.tls_read(id, &mut scratch[..kept + n]);
            } else {
                self.call(id, |s, cx| s.handle_read(&mut scratch[..n], cx));
            }
            self.scratch = scratch;
            if self.relay.batch_is_full() {
                self.dispatch();
            }
            if kept + n < self.scratch.len() && !hup {
                // A short read emptied the socket; the next byte, or the
                // peer's FIN, brings a new edge. The read was offered
                // only the room after the `kept` bytes of a TLS record
                // that arrived in part: filling that room is not short
                // (`n < len` alone stalled a TLS connection whose socket
                // still held data, with no edge left to report it).
                return;
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                self.read_again.push((id, hup));
                return;
            }
        }
    }

    fn on_eof(&mut self, id: ConnId) {
        if let Some(link) = self.conns.get(id).and_then(|c| c.tls.as_deref()) {
            if link.conn.is_handshaking() {
                self.metrics.tls_failure(tls::Failure::Eof);
            }
        }
        self.call(id, |s, cx| s.handle_eof(cx));
    }

    /// Ciphertext just read from a TLS connection: the handshake advances,
    /// what it must send is queued, and the plaintext goes to the session.
    fn tls_read(&mut self, id: ConnId, input: &mut [u8]) {
        let Some(link) = self.conns.get_mut(id).and_then(|c| c.tls.as_deref_mut()) else {
            return;
        };
        let mut plain = std::mem::take(&mut self.tls_plain);
        plain.clear();
        self.tls_out.clear();
        let result = link.conn.read(input, &mut plain, &mut self.tls_out);
        if !self.tls_out.is_empty() {
            link.tx.push(Frame::from(&self.tls_out[..]));
            self.mark_dirty(id);
        }
        match result {
            Ok(outcome) => {
                if outcome.handshake_done {
                    self.metrics.tls_handshakes += 1;
                }
                if !plain.is_empty() {
                    self.call(id, |s, cx| s.handle_read(&mut plain, cx));
                }
                if outcome.peer_closed {
                    self.call(id, |s, cx| s.handle_eof(cx));
                }
            }
            Err(e) => {
                if e.during_handshake {
                    self.metrics.tls_failure(e.failure);
                }
                debug!("TLS on connection {id}: {e}");
                // The alert, if any, is worth one try; then the end.
                if let Some(conn) = self.conns.get(id) {
                    let _ = std::io::Write::write(&mut &conn.socket, &self.tls_out);
                }
                self.call(id, |s, cx| s.abort(cx));
            }
        }
        self.tls_plain = plain;
    }

    /// Seals the next batch of connection `id`'s plaintext queue into its
    /// TLS link, once the previous batch is in the kernel; returns whether
    /// there is ciphertext to write.
    fn seal(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        let Some(link) = conn.tls.as_deref_mut() else {
            return false;
        };
        if !link.tx.is_empty() {
            return true;
        }
        if link.sealed > 0 {
            // The last batch is all in the kernel: now the session knows.
            let n = std::mem::take(&mut link.sealed);
            self.call(id, |s, cx| s.handle_written(n, cx));
            return self.seal(id);
        }
        if !conn.session.wants_write() || !link.conn.can_send() {
            return false;
        }
        let mut iov = [std::io::IoSlice::new(&[]); crate::relay::sendq::MAX_IOV];
        let n = conn.session.transmit(&mut iov);
        let mut take = 0;
        let mut plain = 0;
        for slice in &iov[..n] {
            if take > 0 && plain + slice.len() > SEAL_BATCH {
                break;
            }
            plain += slice.len();
            take += 1;
        }
        self.tls_out.clear();
        let sealed = link.conn.encrypt(
            iov[..take].iter().map(|s| &s[..]),
            &mut self.tls_gather,
            &mut self.tls_out,
        );
        match sealed {
            Ok(_) => {
                link.tx.push(Frame::from(&self.tls_out[..]));
                link.sealed = plain;
                true
            }
            Err(e) => {
                debug!("TLS on connection {id}: {e}");
                self.call(id, |s, cx| s.abort(cx));
                false
            }
        }
    }

    /// A close_notify, best effort, before a TLS connection's socket is
    /// half-closed or closed.
    fn tls_close_notify(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Some(link) = conn.tls.as_deref_mut() else {
            return;
        };
        self.tls_out.clear();
        if link.conn.close(&mut self.tls_out).is_ok() && !self.tls_out.is_empty() {
            let _ = std::io::Write::write(&mut &conn.socket, &self.tls_out);
        }
    }

    // ---- chat messages ---------------------------------------------------

    /// Sends the batch to the decoders and applies what is ready.
    fn dispatch(&mut self) {
        self.relay.dispatch(&mut self.outcomes);
        self.apply_outcomes();
    }

    /// Applies decoded messages in batch order.
    fn apply_outcomes(&mut self) {
        let mut outcomes = std::mem::take(&mut self.outcomes);
        for outcome in outcomes.drain(..) {
            match outcome {
                Outcome::Broadcast { room, frame } => self.fanout(room, &frame),
                Outcome::Publish {
                    room,
                    sender,
                    payload,
                } => {
                    if !self.relay.delivery.publish(&room, payload) {
                        self.metrics.chat_errors += 1;
                        self.send_to(sender, crate::relay::delivery::backlog_error_frame());
                    }
                }
                Outcome::Error { sender, frame } => {
                    self.metrics.chat_errors += 1;
                    self.send_to(sender, frame);
                }
            }
        }
        self.outcomes = outcomes;
    }

    /// Sends `frame` to `id` if it is still the same open connection.
    fn send_to(&mut self, id: ConnId, frame: Frame) {
        if self.conns.get(id).is_some_and(|c| c.session.is_open()) {
            self.call(id, |s, cx| s.send(frame, cx));
        }
    }

    /// What came back from Redis, in order: frames to fan out, and rooms
    /// whose subscription is confirmed, whose waiting joins complete before
    /// the next frame is fanned out.
    fn fan_out_arrivals(&mut self) {
        let mut arrivals = std::mem::take(&mut self.arrivals);
        self.relay.delivery.drain_arrivals(&mut arrivals);
        for arrival in arrivals.drain(..) {
            match arrival {
                Arrival::Frame { room, frame } => {
                    if let Some(id) = self.relay.rooms.find(&room) {
                        self.fanout(id, &frame);
                    }
                }
                Arrival::Ready(room) => self.room_ready(&room),
            }
        }
        self.arrivals = arrivals;
    }

    /// Redis confirmed `room`: the joins waiting for it complete.
    fn room_ready(&mut self, room: &str) {
        let Some(waiting) = self.awaiting_room.remove(room) else {
            return;
        };
        let mut joined = false;
        for (id, grant) in waiting {
            self.parked.remove(&id);
            if self.conns.get(id).is_some_and(|c| c.session.is_upgrading()) {
                joined = true;
                self.join(id, room.to_string(), grant);
            }
        }
        if !joined {
            self.relay.delivery.abandon(room);
        }
    }

    /// A connection that waited for a room went away.
    fn unpark(&mut self, id: ConnId) {
        let Some(room) = self.parked.remove(&id) else {
            return;
        };
        if let Some(waiting) = self.awaiting_room.get_mut(&room) {
            waiting.retain(|(w, _)| *w != id);
            if waiting.is_empty() {
                self.awaiting_room.remove(&room);
                self.relay.delivery.abandon(&room);
            }
        }
    }

    /// Queues one shared frame for every member of `room`: the plain
    /// frame, or, for members that negotiated permessage-deflate, one
    /// compressed frame made at most once per window size (once in
    /// practice: browsers leave the server's window at its default).
    fn fanout(&mut self, room: RoomId, frame: &Frame) {
        let Some(room) = self.relay.rooms.get(room) else {
            return;
        };
        self.metrics.messages_delivered += room.members.len() as u64;
        // Per window bits 8..=15: not made yet, or the frame to send (the
        // plain one when compressing would not shrink it).
        let mut compressed: [Option<Frame>; 8] = Default::default();
        for &member in &room.members {
            let conn = &mut self.conns[member];
            debug_assert!(conn.session.is_open());
            let frame = match (conn.session.deflate(), &self.settings.policy.deflate) {
                (Some(params), Some(policy)) => {
                    let window = params.server_window();
                    let slot = &mut compressed[usize::from(window.get() - WindowBits::MIN.get())];
                    &*slot.get_or_insert_with(|| {
                        compress_frame(
                            frame,
                            window,
                            policy,
                            &mut self.compression.compressor,
                            &mut self.metrics,
                        )
                    })
                }
                _ => frame,
            };
            if conn
                .session
                .queue(frame.clone(), &self.settings.policy, self.now)
            {
                self.behind.push(member);
            }
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(member);
            }
        }
        // After the loop over the room: judging may close a member, and
        // closing takes it out of the room.
        while let Some(id) = self.behind.pop() {
            self.call(id, |s, cx| s.check_flow(cx));
        }
    }

    // ---- timers ----------------------------------------------------------

    fn run_timers(&mut self) {
        if self.acceptor.retry_due(self.now) {
            self.accept_all();
        }
        let mut expired = std::mem::take(&mut self.expired);
        self.wheel.expire(self.now, &mut expired);
        for entry in expired.drain(..) {
            let Some(conn) = self.conns.get_mut(entry.conn) else {
                continue;
            };
            if conn.timer_due != entry.due {
                continue; // superseded by an earlier entry
            }
            conn.timer_due = Tick::NEVER;
            // A TLS handshake not done by the handshake deadline: not even
            // the session's 408 could be sent.
            let handshaking = conn.tls.as_deref().is_some_and(|l| l.conn.is_handshaking());
            let due = conn.session.deadline(&self.settings.policy);
            if handshaking && due.is_some_and(|d| d <= self.now) {
                debug!("connection {}: TLS handshake timeout", entry.conn);
                self.metrics.tls_failure(tls::Failure::Timeout);
                self.call(entry.conn, |s, cx| s.abort(cx));
            } else {
                self.call(entry.conn, |s, cx| s.handle_timeout(cx));
            }
        }
        self.expired = expired;
    }

    // ---- writing ---------------------------------------------------------

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Flushes every connection marked dirty this iteration.
    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.dirty = false;
            }
        }
        // Lone frames go out in io_uring batches; what is left takes writev.
        self.flush_ring(&mut dirty);
        for &id in &dirty {
            self.flush(id);
        }
        dirty.clear();
        // Anything marked dirty while flushing still gets its turn.
        dirty.append(&mut self.dirty);
        // Keep the list's memory unless a crowd made it large.
        if dirty.is_empty() && dirty.capacity() > 65_536 {
            dirty = Vec::new();
        }
        self.dirty = dirty;
    }

    /// Writes connection `id`'s queue until it is empty or the kernel's
    /// buffer is full.
    fn flush(&mut self, id: ConnId) {
        loop {
            let Some(conn) = self.conns.get(id) else {
                return;
            };
            if conn.tls.is_some() {
                if !self.seal(id) {
                    return self.writable_done(id);
                }
                let Some(conn) = self.conns.get_mut(id) else {
                    return;
                };
                let Some(link) = conn.tls.as_deref_mut() else {
                    return;
                };
                match io::write_queue(&conn.socket, &link.tx) {
                    Ok(n) => {
                        link.tx.consumed(n);
                        self.count_sent(n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        return self.want_writable(id);
                    }
                    Err(e) => {
                        debug!("write error on connection {id}: {e}");
                        return self.call(id, |s, cx| s.abort(cx));
                    }
                }
                continue;
            }
            if !conn.session.wants_write() {
                return self.writable_done(id);
            }
            match io::write(&conn.socket, &conn.session) {
                Ok(n) => self.written(id, n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return self.want_writable(id);
                }
                Err(e) => {
                    debug!("write error on connection {id}: {e}");
                    return self.call(id, |s, cx| s.abort(cx));
                }
            }
        }
    }

    /// Sends the lone frame of every connection in `dirty` that has one
    /// through the ring, and leaves in `dirty` only the connections that need
    /// the ordinary path (several frames queued, or the ring failed).
    fn flush_ring(&mut self, dirty: &mut Vec<ConnId>) {
        let Some(mut ring) = self.ring.take() else {
            return;
        };
        let mut rest = 0;
        let mut next = 0;
        let mut failed = None;
        while next < dirty.len() && failed.is_none() {
            while next < dirty.len() {
                let id = dirty[next];
                if self.conns.get(id).is_some_and(|c| c.tls.is_some()) && !self.seal(id) {
                    next += 1;
                    continue;
                }
                let Some(conn) = self.conns.get(id) else {
                    next += 1;
                    continue;
                };
                let sole = match conn.tls.as_deref() {
                    Some(link) => link.tx.sole_frame(),
                    None => conn.session.sole_frame(),
                };
                let Some((frame, offset)) = sole else {
                    dirty[rest] = id;
                    rest += 1;
                    next += 1;
                    continue;
                };
                if !ring.push(conn.socket.as_raw_fd(), frame, offset, tag(id)) {
                    break; // the batch is full: submit it, then go on
                }
                next += 1;
            }
            if ring.is_empty() {
                continue;
            }
            self.metrics.io_uring_submits += 1;
            let submitted = ring.submit();
            for &(t, result) in submitted.done {
                self.on_ring_send(untag(t), result);
            }
            if let Some(e) = submitted.failed {
                // Entries with no completion were never taken by the kernel.
                for t in submitted.not_sent {
                    dirty[rest] = untag(t);
                    rest += 1;
                }
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            warn!("io_uring failed ({e}); writing to clients with send/writev from now on");
            while next < dirty.len() {
                dirty[rest] = dirty[next];
                rest += 1;
                next += 1;
            }
        } else {
            self.ring = Some(ring);
        }
        dirty.truncate(rest);
    }

    /// Acts on one ring send's result as [`Server::flush`] acts on a write's.
    fn on_ring_send(&mut self, id: ConnId, result: i32) {
        self.metrics.io_uring_sends += 1;
        if self.conns.get(id).is_none() {
            return;
        }
        if result > 0 {
            self.written(id, result as usize);
            let more = self.conns.get(id).map(|c| match c.tls.as_deref() {
                Some(link) => !link.tx.is_empty(),
                None => c.session.wants_write(),
            });
            match more {
                // A short send means the socket buffer is full.
                Some(true) => self.want_writable(id),
                Some(false) => self.writable_done(id),
                None => {}
            }
        } else if result == -libc::EAGAIN {
            self.want_writable(id);
        } else {
            let e = match result {
                0 => std::io::Error::from(std::io::ErrorKind::WriteZero),
                _ => std::io::Error::from_raw_os_error(-result),
            };
            debug!("write error on connection {id}: {e}");
            self.call(id, |s, cx| s.abort(cx));
        }
    }

    /// The kernel took `n` bytes of connection `id`'s queue (either path).
    fn written(&mut self, id: ConnId, n: usize) {
        self.count_sent(n);
        if let Some(link) = self.conns.get_mut(id).and_then(|c| c.tls.as_deref_mut()) {
            // Ciphertext: the session learns when its whole batch is out.
            link.tx.consumed(n);
            if link.tx.is_empty() && self.seal(id) {
                self.mark_dirty(id);
            }
            return;
        }
        self.call(id, |s, cx| s.handle_written(n, cx));
        // Its own queue drained enough: read it again, starting with what
        // it sent while its answers piled up.
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if let Some(hup) = conn.read_paused {
            if !conn.session.read_blocked(&self.settings.policy) {
                conn.read_paused = None;
                self.call(id, |s, cx| s.handle_read(&mut [], cx));
                self.read_again.push((id, hup));
            }
        }
    }

    /// Bytes handed to the kernel, by either path.
    fn count_sent(&mut self, bytes: usize) {
        self.metrics.bytes_sent += bytes as u64;
        if self.shutdown_deadline.is_some() {
            self.summary.bytes_flushed_during_grace += bytes as u64;
        }
    }

    /// The kernel buffer is full: wait for WRITABLE (edge-triggered; a
    /// re-registration reports the socket at once if it is writable again).
    fn want_writable(&mut self, id: ConnId) {
        self.set_write_interest(id, true);
    }

    /// The queue is empty: stop listening for WRITABLE.
    fn writable_done(&mut self, id: ConnId) {
        self.set_write_interest(id, false);
    }

    fn set_write_interest(&mut self, id: ConnId, on: bool) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.write_interest == on {
            return;
        }
        conn.write_interest = on;
        let interest = match on {
            true => Interest::READABLE | Interest::WRITABLE,
            false => Interest::READABLE,
        };
        if self
            .poll
            .registry()
            .reregister(&mut conn.socket, conn::token(id), interest)
            .is_err()
        {
            self.call(id, |s, cx| s.abort(cx));
        }
    }

    // ---- shutdown --------------------------------------------------------

    /// SIGHUP: new handshakes use the certificate now in the files; open
    /// connections keep theirs. A file that fails to load keeps the old one.
    fn reload_tls(&mut self) {
        let Some(files) = self.settings.tls.as_ref().map(|t| &t.files) else {
            info!("SIGHUP: nothing to reload (no --tls-cert)");
            return;
        };
        match files.load() {
            Ok(config) => {
                info!(
                    "SIGHUP: reloaded the TLS certificate from {}",
                    files.cert_path().display()
                );
                self.tls = Some(config);
            }
            Err(e) => warn!("SIGHUP: keeping the current TLS certificate: {e}"),
        }
    }

    fn begin_shutdown(&mut self, why: &str) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.acceptor.close(self.poll.registry());
        self.report_rejections();
        // Messages already accepted are delivered before anyone's 1001.
        self.relay.finish(&mut self.outcomes);
        self.apply_outcomes();
        self.summary.connections_at_shutdown = self.conns.len();
        self.summary.websockets_at_shutdown = self.conns.open;
        // An HTTP connection that already has its answer is only waiting for
        // the client's EOF: it is counted, but it is not sent a 1001.
        info!(
            "{why}: stopping accepts, closing {} WebSocket connections with 1001 ({} TCP connections in all)",
            self.conns.open,
            self.conns.len()
        );
        for id in self.conns.ids() {
            self.call(id, |s, cx| s.shut_down(cx));
        }
        self.shutdown_deadline = Some(self.now.after(self.settings.grace));
    }
}

/// Parses the flags, for the constructors that take a [`Config`].
fn parse(config: &Config) -> std::io::Result<Settings> {
    Settings::from_config(config.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// A server text frame compressed for members with `window`, or the frame
/// itself when it is short or would not shrink.
fn compress_frame(
    frame: &Frame,
    window: WindowBits,
    policy: &crate::session::DeflatePolicy,
    compressor: &mut crate::wire::deflate::Compressor,
    metrics: &mut Metrics,
) -> Frame {
    let Ok(Some((_, header))) = crate::wire::frame::parse_header(frame, false) else {
        return frame.clone();
    };
    let payload = &frame[header..];
    match Compression::frame_for(compressor, DataKind::Text, payload, window, policy, metrics) {
        Some(bytes) => Frame::from(bytes),
        None => frame.clone(),
    }
}

/// Seconds since the Unix epoch, for token timestamps.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A ring tag names its connection.
fn tag(id: ConnId) -> u64 {
    (u64::from(id.generation) << 32) | u64::from(id.key)
}

fn untag(t: u64) -> ConnId {
    ConnId {
        key: t as u32,
        generation: (t >> 32) as u32,
    }
}
