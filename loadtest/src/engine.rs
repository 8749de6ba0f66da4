//! The event loop: one mio `Poll` holding every client, and the three things a run does
//! with it -- connect everyone with bounded concurrency, run one measured step of
//! scheduled sends, and hold idle connections open.
//!
//! Everything runs on the calling thread (the harness shares a small machine with the
//! server under test, so it must not take more than one core). Sends are driven by a
//! min-heap of due times; the poll timeout is the earliest of the next due send, the next
//! phase boundary and the next progress line, so the loop sleeps exactly as long as it may.

use crate::accounting::{Accounting, Counts, RxState, Sink, Window, WireCounts};
use crate::client::{io_reason, Client, Phase};
use crate::clock::now_us;
use crate::layout::Layout;
use crate::payload::{self, Stamp};
use crate::proc::ServerProcs;
use crate::progress::Progress;
use crate::report_common::Latency;
use crate::sys;
use crate::target::Target;
use crate::wsframe::OP_TEXT;
use hdrhistogram::Histogram;
use mio::{Events, Poll, Token};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io::{self, Read};
use std::net::IpAddr;
use std::time::Duration;

/// A client stops being sent to while this much is queued unsent (the server is not
/// reading); the skipped sends are counted, not silently dropped.
pub const MAX_QUEUED: usize = 1 << 20;
/// The shared read buffer.
const READ_BUF: usize = 256 << 10;

/// What happened to a client, for the phase that is running.
#[derive(Debug)]
pub enum Outcome {
    Opened {
        id: usize,
        latency_us: u64,
    },
    /// A connect or handshake failed.
    Failed {
        id: usize,
        reason: String,
    },
    /// An open connection ended.
    Closed {
        id: usize,
        reason: String,
    },
}

/// Result of one connect phase.
pub struct ConnectStats {
    pub attempted: u64,
    pub opened: u64,
    pub failed: u64,
    /// `opened` and `failed` by node.
    pub opened_per_node: Vec<u64>,
    pub failed_per_node: Vec<u64>,
    pub reasons: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    /// TCP connect + handshake time of each successful client, microseconds.
    pub latency: Histogram<u64>,
    /// Opened connections on which permessage-deflate was negotiated.
    pub deflate: u64,
}

impl ConnectStats {
    fn new(nodes: usize) -> ConnectStats {
        ConnectStats {
            attempted: 0,
            opened: 0,
            failed: 0,
            opened_per_node: vec![0; nodes],
            failed_per_node: vec![0; nodes],
            reasons: BTreeMap::new(),
            elapsed_s: 0.0,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            deflate: 0,
        }
    }

    fn fail(&mut self, node: usize, reason: String) {
        self.failed += 1;
        if let Some(n) = self.failed_per_node.get_mut(node) {
            *n += 1;
        }
        *self.reasons.entry(reason).or_default() += 1;
    }
}

/// One connect phase while it runs.
struct ConnectRun {
    /// Clients to connect, in order; `next` is the first not yet started.
    todo: Vec<usize>,
    next: usize,
    inflight: usize,
    concurrency: usize,
    timeout_us: u64,
    /// Start order is deadline order, as every attempt gets the same timeout.
    deadlines: VecDeque<(u64, usize)>,
    stats: ConnectStats,
}

/// One measured step: rate and timing.
#[derive(Clone, Debug)]
pub struct StepSpec {
    /// Messages per second per sender.
    pub rate: f64,
    pub payload: usize,
    pub warmup_us: u64,
    pub duration_us: u64,
    /// Longest wait after the window for outstanding deliveries.
    pub drain_us: u64,
}

/// What one step measured.
#[derive(Clone, Debug, Default)]
pub struct StepResult {
    pub rate: f64,
    pub counts: Counts,
    pub latency: Latency,
    pub send_lag: Latency,
    pub window_s: f64,
    pub drain_s: f64,
    pub server_cpu_s: Option<f64>,
    pub server_rss_kb: Option<u64>,
    pub server_rss_peak_kb: Option<u64>,
    /// The window's CPU seconds and the RSS at its end of each `--server-pid`, in order.
    pub server_cpu_s_per_pid: Vec<Option<f64>>,
    pub server_rss_kb_per_pid: Vec<Option<u64>>,
    pub harness_cpu_s: f64,
    /// Harness CPU over the window as a fraction of one core.
    pub harness_util: f64,
    /// Time in the window the harness / the server spent runnable but without a CPU.
    pub harness_wait_s: Option<f64>,
    pub server_wait_s: Option<f64>,
    pub disconnects: u64,
    pub senders: u64,
    pub interrupted: bool,
    /// What the window's deliveries cost on the wire.
    pub wire: WireFigures,
}

/// Bytes on the wire in a window: with `--deflate`, what compression saved.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WireFigures {
    /// Bytes read from the sockets per chat delivery (frame headers, pings and all).
    pub bytes_per_delivery: Option<f64>,
    /// Data message payload bytes once inflated over as received (1.0: nothing
    /// compressed).
    pub compression_ratio: Option<f64>,
}

impl WireFigures {
    /// The figures between two readings of (counts, deliveries).
    fn between(a: &WireCounts, da: u64, b: &WireCounts, db: u64) -> WireFigures {
        let deliveries = db.saturating_sub(da);
        let read = b.read_bytes.saturating_sub(a.read_bytes);
        let wire = b.payload_wire.saturating_sub(a.payload_wire);
        let plain = b.payload_plain.saturating_sub(a.payload_plain);
        WireFigures {
            bytes_per_delivery: (deliveries > 0).then(|| read as f64 / deliveries as f64),
            compression_ratio: (wire > 0).then(|| plain as f64 / wire as f64),
        }
    }
}

impl StepResult {
    pub fn delivered_per_sec(&self) -> f64 {
        if self.window_s > 0.0 {
            self.counts.delivered as f64 / self.window_s
        } else {
            0.0
        }
    }
}

/// The event loop and every client. `S` receives what the clients read: the load modes'
/// [`Accounting`], or the soak mode's own accounting (`soak_acct`).
pub struct Engine<S: Sink = Accounting> {
    poll: Poll,
    events: Events,
    ready: Vec<(usize, bool, bool)>,
    outcomes: Vec<Outcome>,
    clients: Vec<Client>,
    /// Open members per room.
    room_open: Vec<u64>,
    /// Open members per room and node: `room * nodes + node`.
    room_node_open: Vec<u64>,
    layout: Layout,
    /// One per node; a client connects to `targets[client.node]`.
    targets: Vec<Target>,
    sources: Vec<IpAddr>,
    pub acct: S,
    scratch: Vec<u8>,
    /// Decrypted bytes of `wss://` connections pass through here.
    plain: Vec<u8>,
    msg: Vec<u8>,
    /// Connections open right now.
    pub open: u64,
    /// Open connections of the layout's clients that ended, ever, and why.
    pub disconnects: u64,
    pub end_reasons: BTreeMap<String, u64>,
    /// Guests (clients added after the layout's: soak churners, attackers) are no room's
    /// counted members: how each one's last open connection ended, by client id.
    pub guest_ends: BTreeMap<usize, String>,
    /// Request paths of guests that do not join a chat room by number (`/ws/echo/`).
    guest_paths: BTreeMap<usize, String>,
    epoch: u32,
    progress: Progress,
}

/// Readings taken at a window boundary.
struct Snapshot {
    at_us: u64,
    /// Bytes received and deliveries so far; filled in by the engine right after the
    /// snapshot is taken (the step's bookkeeping has no access to the accounting).
    wire: Option<(WireCounts, u64)>,
    server: Option<crate::proc::Sample>,
    each: Vec<Option<crate::proc::Sample>>,
    cpu_s: f64,
    wait_s: Option<f64>,
}

impl Snapshot {
    fn take(server: &ServerProcs, at_us: u64) -> Snapshot {
        let each = server.sample_each();
        Snapshot {
            at_us,
            wire: None,
            server: ServerProcs::sum(&each),
            each,
            cpu_s: sys::cpu_seconds(),
            wait_s: crate::proc::runqueue_wait_seconds(std::process::id()),
        }
    }
}

/// One measured step while it runs: its boundaries, the senders' schedule and the
/// readings taken at the window's edges.
struct StepRun {
    t0: u64,
    win_start: u64,
    win_end: u64,
    drain_end: u64,
    /// Between two sends of one sender.
    interval_us: u64,
    /// Scheduled sends: (due, client), earliest first.
    sends: BinaryHeap<Reverse<(u64, u32)>>,
    senders: u64,
    at_start: Option<Snapshot>,
    at_end: Option<Snapshot>,
    rss_peak: Option<u64>,
    next_sample: u64,
    interrupted: bool,
    /// The window was closed early and ends when everything sent has arrived.
    until_delivered: bool,
}

impl StepRun {
    fn new(spec: &StepSpec, t0: u64) -> StepRun {
        let win_start = t0 + spec.warmup_us;
        let win_end = win_start + spec.duration_us;
        StepRun {
            t0,
            win_start,
            win_end,
            drain_end: win_end + spec.drain_us,
            interval_us: if spec.rate > 0.0 {
                (1e6 / spec.rate).max(1.0) as u64
            } else {
                u64::MAX / 4
            },
            sends: BinaryHeap::new(),
            senders: 0,
            at_start: None,
            at_end: None,
            rss_peak: None,
            next_sample: t0,
            interrupted: false,
            until_delivered: false,
        }
    }

    /// The window's start reading, once it is due (before that instant's sends).
    fn read_start(&mut self, server: &ServerProcs, now: u64) {
        if self.at_start.is_none() && now >= self.win_start {
            self.at_start = Some(Snapshot::take(server, now));
        }
    }

    /// The window's end reading once due (after that instant's sends), and the RSS peak
    /// sample once a second.
    fn read_end_and_sample(&mut self, server: &ServerProcs, now: u64) {
        if self.at_end.is_none() && now >= self.win_end && !self.until_delivered {
            self.at_end = Some(Snapshot::take(server, now));
        }
        if now >= self.next_sample {
            if let Some(s) = server.sample() {
                self.rss_peak = Some(self.rss_peak.unwrap_or(0).max(s.rss_kb));
            }
            self.next_sample = now + 1_000_000;
        }
    }

    /// Stops the sending at `now` (a driver sent everything): the window then lasts
    /// until everything sent was delivered (at most the drain time), so its rate and
    /// the server's CPU cover the whole delivery of the burst.
    fn close_early(&mut self, server: &ServerProcs, now: u64, drain_us: u64) {
        if now < self.win_end {
            self.win_end = now.max(self.win_start);
            self.drain_end = self.win_end + drain_us;
            self.at_start
                .get_or_insert_with(|| Snapshot::take(server, now));
            self.until_delivered = true;
        }
    }

    /// Gives the snapshots taken since the last call the engine's byte counts.
    fn note_wire(&mut self, wire: (WireCounts, u64)) {
        for s in [self.at_start.as_mut(), self.at_end.as_mut()]
            .into_iter()
            .flatten()
        {
            s.wire.get_or_insert(wire);
        }
    }

    /// A window closed early ends once everything arrived, or at the drain's end.
    fn read_end_when_delivered(&mut self, server: &ServerProcs, now: u64, all_in: bool) {
        if self.until_delivered && self.at_end.is_none() && (all_in || now >= self.drain_end) {
            self.at_end = Some(Snapshot::take(server, now));
        }
    }

    /// Closes the window now (interrupted): whichever edge is missing is read now.
    fn end_readings(&mut self, server: &ServerProcs, now: u64) {
        if self.at_start.is_none() {
            self.at_start = Some(Snapshot::take(server, now));
        }
        if self.at_end.is_none() {
            self.at_end = Some(Snapshot::take(server, now));
        }
    }

    fn phase(&self, now: u64) -> &'static str {
        if now < self.win_start {
            "warmup "
        } else if now < self.win_end {
            "measure"
        } else {
            "drain  "
        }
    }

    /// The earliest of the next send and the next boundary still ahead.
    fn next_wake(&self, now: u64) -> u64 {
        let mut wake = self.sends.peek().map_or(self.drain_end, |r| r.0 .0);
        for boundary in [
            self.win_start,
            self.win_end,
            self.drain_end,
            self.next_sample,
        ] {
            if boundary > now {
                wake = wake.min(boundary);
            }
        }
        wake
    }

    /// The step's timing and the server's and harness's figures between the window's
    /// edges (the counts are the caller's).
    fn finish(self, server: &ServerProcs, rate: f64) -> StepResult {
        let end = now_us();
        let a = self.at_start.unwrap_or_else(|| Snapshot::take(server, end));
        let b = self.at_end.unwrap_or_else(|| Snapshot::take(server, end));
        let window_s = b.at_us.saturating_sub(a.at_us) as f64 / 1e6;
        let harness_cpu_s = (b.cpu_s - a.cpu_s).max(0.0);
        let mut result = StepResult {
            rate,
            senders: self.senders,
            interrupted: self.interrupted,
            window_s,
            drain_s: end.saturating_sub(b.at_us) as f64 / 1e6,
            harness_cpu_s,
            harness_util: if window_s > 0.0 {
                harness_cpu_s / window_s
            } else {
                0.0
            },
            harness_wait_s: b.wait_s.zip(a.wait_s).map(|(x, y)| (x - y).max(0.0)),
            server_cpu_s_per_pid: a
                .each
                .iter()
                .zip(&b.each)
                .map(|(x, y)| x.zip(*y).map(|(x, y)| (y.cpu_s - x.cpu_s).max(0.0)))
                .collect(),
            server_rss_kb_per_pid: b.each.iter().map(|y| y.map(|y| y.rss_kb)).collect(),
            ..StepResult::default()
        };
        if let (Some((w0, d0)), Some((w1, d1))) = (a.wire, b.wire) {
            result.wire = WireFigures::between(&w0, d0, &w1, d1);
        }
        if let (Some(x), Some(y)) = (a.server, b.server) {
            result.server_cpu_s = Some((y.cpu_s - x.cpu_s).max(0.0));
            result.server_rss_kb = Some(y.rss_kb);
            result.server_rss_peak_kb = Some(self.rss_peak.unwrap_or(0).max(y.rss_kb));
            result.server_wait_s = y.wait_s.zip(x.wait_s).map(|(p, q)| (p - q).max(0.0));
        }
        result
    }
}

fn timeout_until(wake_us: u64) -> Duration {
    // Wake at least once a second so interruption and progress stay responsive.
    Duration::from_micros(wake_us.saturating_sub(now_us()).min(1_000_000))
}

impl Engine<Accounting> {
    /// `targets`: one per node (at least one); client `i` connects to
    /// `targets[layout.node_of(i, targets.len())]`. `sources`: local addresses to bind
    /// client sockets to, used round-robin (empty: let the kernel choose).
    pub fn new(
        layout: Layout,
        targets: Vec<Target>,
        sources: Vec<IpAddr>,
        progress: bool,
    ) -> io::Result<Engine> {
        let acct = Accounting::with_nodes(&layout, targets.len());
        Engine::with_sink(layout, targets, sources, progress, acct)
    }
}

impl<S: Sink> Engine<S> {
    /// As [`Engine::new`], with received messages going to `acct`.
    pub fn with_sink(
        layout: Layout,
        targets: Vec<Target>,
        sources: Vec<IpAddr>,
        progress: bool,
        acct: S,
    ) -> io::Result<Engine<S>> {
        if targets.is_empty() || targets.len() > u16::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the engine needs 1 to 65535 targets",
            ));
        }
        let nodes = targets.len();
        let clients = (0..layout.clients)
            .map(|c| {
                let room = layout.room_of(c);
                let mut rx = RxState::new(room, layout.senders_in_room(room));
                rx.id = c as u32;
                let mut client = Client::new(rx);
                client.node = layout.node_of(c, nodes) as u16;
                client
            })
            .collect();
        Ok(Engine {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            ready: Vec::with_capacity(4096),
            outcomes: Vec::new(),
            clients,
            room_open: vec![0; layout.rooms],
            room_node_open: vec![0; layout.rooms * nodes],
            acct,
            layout,
            targets,
            sources,
            scratch: vec![0; READ_BUF],
            plain: vec![0; READ_BUF],
            msg: Vec::with_capacity(256),
            open: 0,
            disconnects: 0,
            end_reasons: BTreeMap::new(),
            guest_ends: BTreeMap::new(),
            guest_paths: BTreeMap::new(),
            epoch: 0,
            progress: Progress::new(progress, now_us()),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Connects every client that is not open, at most `concurrency` at a time, each
    /// given `timeout_us` for TCP connect plus handshake.
    pub fn connect(&mut self, concurrency: usize, timeout_us: u64) -> ConnectStats {
        let todo: Vec<usize> = (0..self.clients.len())
            .filter(|&i| matches!(self.clients[i].phase, Phase::Idle | Phase::Closed))
            .collect();
        let t0 = now_us();
        let mut run = ConnectRun {
            todo,
            next: 0,
            inflight: 0,
            concurrency: concurrency.max(1),
            timeout_us,
            deadlines: VecDeque::new(),
            stats: ConnectStats::new(self.targets.len()),
        };
        self.progress.restart(t0, self.acct.lifetime_received());
        loop {
            let now = now_us();
            self.start_attempts(&mut run, now);
            let interrupted = sys::interrupted();
            self.expire_attempts(&mut run, now, interrupted);
            self.count_attempts(&mut run);
            if (run.inflight == 0 && run.next >= run.todo.len()) || interrupted {
                break;
            }
            let (open, failed, total) = (self.open, run.stats.failed, self.clients.len());
            let inflight = run.inflight;
            self.progress.tick(now, self.acct.lifetime_received(), |_| {
                format!(
                    "[connect {:6.1}s] open {open}/{total}  in flight {inflight}  failed {failed}",
                    (now - t0) as f64 / 1e6
                )
            });
            let mut wake = run.deadlines.front().map_or(now + 1_000_000, |d| d.0);
            if let Some(p) = self.progress.deadline() {
                wake = wake.min(p);
            }
            self.pump(timeout_until(wake));
        }
        run.stats.elapsed_s = (now_us() - t0) as f64 / 1e6;
        run.stats
    }

    /// Starts attempts while fewer than the allowed number are in flight.
    fn start_attempts(&mut self, run: &mut ConnectRun, now: u64) {
        while run.inflight < run.concurrency && run.next < run.todo.len() {
            let id = run.todo[run.next];
            run.next += 1;
            run.stats.attempted += 1;
            let node = self.clients[id].node as usize;
            match self.start_client(id, now) {
                Ok(()) => {
                    run.inflight += 1;
                    run.deadlines.push_back((now + run.timeout_us, id));
                }
                Err(reason) => run.stats.fail(node, reason),
            }
        }
    }

    /// Drops the attempts past their deadline (all of them when interrupted); their
    /// `Failed` outcomes follow.
    fn expire_attempts(&mut self, run: &mut ConnectRun, now: u64, interrupted: bool) {
        while let Some(&(deadline, id)) = run.deadlines.front() {
            if deadline > now && !interrupted {
                break;
            }
            run.deadlines.pop_front();
            if matches!(
                self.clients[id].phase,
                Phase::Connecting | Phase::Handshaking
            ) {
                let why = if interrupted {
                    "interrupted"
                } else {
                    "timed out"
                };
                self.drop_client(id, why.into());
            }
        }
    }

    /// Counts the attempts that ended since the last call.
    fn count_attempts(&mut self, run: &mut ConnectRun) {
        for o in self.outcomes.drain(..) {
            match o {
                Outcome::Opened { id, latency_us } => {
                    run.inflight = run.inflight.saturating_sub(1);
                    run.stats.opened += 1;
                    run.stats.opened_per_node[self.clients[id].node as usize] += 1;
                    run.stats.deflate += u64::from(self.clients[id].deflate());
                    run.stats.latency.saturating_record(latency_us.max(1));
                }
                Outcome::Failed { id, reason } => {
                    run.inflight = run.inflight.saturating_sub(1);
                    run.stats.fail(self.clients[id].node as usize, reason);
                }
                Outcome::Closed { .. } => {}
            }
        }
    }

    /// Waits until no delivery has arrived for `quiet_us` (at most `max_us`): lets a server
    /// that fell behind in an overloaded step catch up before the next one.
    pub fn settle(&mut self, quiet_us: u64, max_us: u64) {
        let t0 = now_us();
        let mut last_seen = self.acct.lifetime_received();
        let mut last_change = t0;
        loop {
            let now = now_us();
            if self.acct.lifetime_received() != last_seen {
                last_seen = self.acct.lifetime_received();
                last_change = now;
            }
            if now - last_change >= quiet_us || now - t0 >= max_us || sys::interrupted() {
                break;
            }
            self.pump(timeout_until((last_change + quiet_us).min(t0 + max_us)));
            self.outcomes.clear();
        }
    }

    /// Keeps the connections open for `hold_us`, answering pings, with progress lines
    /// tagged `label`.
    pub fn hold(&mut self, label: &str, hold_us: u64, server: &ServerProcs) {
        let t0 = now_us();
        let end = t0 + hold_us;
        self.progress.restart(t0, self.acct.lifetime_received());
        loop {
            let now = now_us();
            if now >= end || sys::interrupted() {
                break;
            }
            let (open, disconnects) = (self.open, self.disconnects);
            let rss = server
                .sample()
                .map(|s| format!("  server rss {} MiB", s.rss_kb / 1024))
                .unwrap_or_default();
            self.progress.tick(now, self.acct.lifetime_received(), |r| {
                format!(
                    "[{label:<7} {:6.1}s] open {open}  disconnects {disconnects}{rss}  harness cpu {:.0}%",
                    (now - t0) as f64 / 1e6,
                    r.cpu * 100.0
                )
            });
            let wake = self.progress.deadline().map_or(end, |p| p.min(end));
            self.pump(timeout_until(wake));
            self.outcomes.clear();
        }
    }

    /// Sends a normal closure to every open client and releases all sockets.
    pub fn close_all(&mut self) {
        for c in &mut self.clients {
            c.close_gracefully();
        }
        self.room_open.iter_mut().for_each(|r| *r = 0);
        self.room_node_open.iter_mut().for_each(|r| *r = 0);
        self.open = 0;
    }

    /// Adds `n` clients (ids after the existing ones), idle and in no room yet; the soak
    /// mode's churners, which the caller places in a room before each `start_client`.
    pub fn add_clients(&mut self, n: usize) {
        self.clients
            .extend((0..n).map(|_| Client::new(RxState::default())));
    }

    /// Adds one guest client in `room` sending as `sender_id`, connecting to `path`
    /// instead of its room's chat path when given; returns its id. It is not started.
    pub fn add_guest(&mut self, room: u32, sender_id: u32, path: Option<String>) -> usize {
        let mut rx = RxState::new(room as usize, 0);
        rx.id = sender_id;
        self.clients.push(Client::new(rx));
        let id = self.clients.len() - 1;
        if let Some(p) = path {
            self.guest_paths.insert(id, p);
        }
        id
    }

    /// Guests are clients past the layout's: counted in no room.
    fn is_guest(&self, id: usize) -> bool {
        id >= self.layout.clients
    }

    pub fn client(&self, id: usize) -> &Client {
        &self.clients[id]
    }

    pub fn client_mut(&mut self, id: usize) -> &mut Client {
        &mut self.clients[id]
    }

    /// Starts one client's connect (to its node, `client.node`); its `Opened` or `Failed`
    /// outcome follows from `pump`. `Err` is an immediate failure (no outcome follows).
    pub fn start_client(&mut self, id: usize, now: u64) -> Result<(), String> {
        let source = (!self.sources.is_empty()).then(|| self.sources[id % self.sources.len()]);
        let registry = self.poll.registry();
        let addr = self.targets[self.clients[id].node as usize].addr;
        self.clients[id]
            .start(addr, source, registry, Token(id), now)
            .map_err(|e| {
                self.clients[id].reset();
                io_reason(&e)
            })
    }

    /// What happened to clients since the last call (opened, failed, closed).
    pub fn take_outcomes(&mut self) -> Vec<Outcome> {
        std::mem::take(&mut self.outcomes)
    }

    /// A new stamp epoch (the step number carried in every message).
    pub fn next_epoch(&mut self) -> u32 {
        self.epoch += 1;
        self.epoch
    }

    /// Stamps and queues (does not write) one chat message from open client `id`;
    /// `None` when it is not open.
    pub fn queue_message(&mut self, id: usize, payload_size: usize) -> Option<Stamp> {
        let c = &mut self.clients[id];
        if c.phase != Phase::Open {
            return None;
        }
        c.next_seq = c.next_seq.wrapping_add(1);
        let stamp = Stamp {
            epoch: self.epoch,
            ts_us: now_us(),
            sender: c.rx.id,
            seq: c.next_seq,
        };
        payload::encode(&mut self.msg, &stamp, payload_size);
        c.queue_frame(OP_TEXT, &self.msg);
        Some(stamp)
    }

    /// Writes what client `id` has queued; on failure the client is dropped (a `Closed`
    /// outcome follows) and `false` returned.
    pub fn flush_client(&mut self, id: usize) -> bool {
        match self.clients[id].flush() {
            Ok(()) => true,
            Err(reason) => {
                self.drop_client(id, reason);
                false
            }
        }
    }

    /// Queues, writes and then abandons half of a stamped message from open client `id`,
    /// leaving the server a frame cut off in the middle; `false` if it was not open.
    pub fn queue_half_message(&mut self, id: usize, payload_size: usize) -> bool {
        let c = &mut self.clients[id];
        if c.phase != Phase::Open {
            return false;
        }
        let stamp = Stamp {
            epoch: self.epoch,
            ts_us: now_us(),
            sender: c.rx.id,
            seq: c.next_seq.wrapping_add(1),
        };
        payload::encode(&mut self.msg, &stamp, payload_size);
        c.queue_frame_prefix(OP_TEXT, &self.msg);
        let _ = c.flush();
        true
    }

    /// Ends client `id` on purpose, without a close frame: the socket is closed (with a
    /// TCP RST when `rst`, else a FIN after whatever is queued). No outcome is recorded
    /// and it does not count as a disconnect; the caller keeps its own books.
    pub fn hang_up(&mut self, id: usize, rst: bool) {
        let c = &mut self.clients[id];
        let was_open = c.phase == Phase::Open;
        if rst {
            c.set_abortive_close();
        } else {
            let _ = c.flush();
        }
        c.reset();
        if was_open {
            self.left_room(id);
        }
    }

    /// Open client `id` is no longer open: out of its room's counts.
    fn left_room(&mut self, id: usize) {
        self.open = self.open.saturating_sub(1);
        if self.is_guest(id) {
            return;
        }
        let c = &self.clients[id];
        let (room, node) = (c.rx.room as usize, c.node as usize);
        let r = &mut self.room_open[room];
        *r = r.saturating_sub(1);
        let n = self.targets.len();
        let r = &mut self.room_node_open[room * n + node];
        *r = r.saturating_sub(1);
    }

    /// Waits for readiness (at most `timeout`) and handles what is ready; outcomes pile up
    /// for `take_outcomes`.
    pub fn poll_once(&mut self, timeout: Duration) {
        self.pump(timeout);
    }

    /// Ends a client's connection, whatever its phase, recording why (an outcome follows).
    pub fn abort_client(&mut self, id: usize, reason: String) {
        self.drop_client(id, reason);
    }

    /// Waits for readiness (at most `timeout`) and handles what is ready.
    fn pump(&mut self, timeout: Duration) {
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("loadtest: poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter().map(|e| {
            (
                e.token().0,
                e.is_readable() || e.is_read_closed() || e.is_error(),
                e.is_writable() || e.is_write_closed() || e.is_error(),
            )
        }));
        for &(id, readable, writable) in &ready {
            self.on_event(id, readable, writable);
        }
        self.ready = ready;
    }

    fn on_event(&mut self, id: usize, readable: bool, writable: bool) {
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        match c.phase {
            Phase::Connecting => {
                match c.finish_connect() {
                    Ok(true) => {
                        let target = &self.targets[c.node as usize];
                        let path = match self.guest_paths.get(&id) {
                            Some(p) => p.clone(),
                            None => target.request_path(c.rx.room as usize),
                        };
                        if let Err(reason) = c.send_handshake(target, &path) {
                            self.drop_client(id, reason);
                        }
                    }
                    Ok(false) => {}
                    Err(reason) => self.drop_client(id, reason),
                }
                return;
            }
            Phase::Handshaking | Phase::Open => {}
            Phase::Idle | Phase::Closed => return,
        }
        if writable {
            if let Err(reason) = c.flush() {
                self.drop_client(id, reason);
                return;
            }
        }
        if readable {
            self.read_ready(id);
        }
    }

    /// Reads until the socket is drained (the poll is edge-triggered).
    fn read_ready(&mut self, id: usize) {
        loop {
            let c = &mut self.clients[id];
            let Some(sock) = c.sock.as_mut() else {
                return;
            };
            let n = match sock.read(&mut self.scratch) {
                Ok(0) => {
                    let why = if c.phase == Phase::Handshaking {
                        "closed during handshake"
                    } else {
                        "closed without a close frame"
                    };
                    self.drop_client(id, why.into());
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.drop_client(id, io_reason(&e));
                    return;
                }
            };
            let now = now_us();
            self.acct.on_read(n);
            let was_handshaking = c.phase == Phase::Handshaking;
            let offer = self.targets[c.node as usize].deflate;
            let handled = c.receive(
                &self.scratch[..n],
                &mut self.plain,
                offer,
                &mut self.acct,
                now,
            );
            // Pongs and close replies queued while reading go out now.
            let handled = handled.and_then(|()| c.flush());
            if was_handshaking && c.phase == Phase::Open {
                self.mark_open(id, now);
            }
            if let Err(reason) = handled {
                self.drop_client(id, reason);
                return;
            }
            // A short read means the receive queue was empty at that moment; on Linux any
            // later arrival raises a new edge, so the usual extra read that only returns
            // EAGAIN (one wasted syscall per delivery at low rates) can be skipped.
            if n < self.scratch.len() {
                return;
            }
        }
    }

    fn mark_open(&mut self, id: usize, now: u64) {
        let c = &self.clients[id];
        if !self.is_guest(id) {
            self.room_open[c.rx.room as usize] += 1;
            self.room_node_open[c.rx.room as usize * self.targets.len() + c.node as usize] += 1;
        }
        self.open += 1;
        self.outcomes.push(Outcome::Opened {
            id,
            latency_us: now.saturating_sub(c.started_us),
        });
    }

    /// Ends a client's connection, whatever its phase, and records why.
    fn drop_client(&mut self, id: usize, reason: String) {
        let c = &mut self.clients[id];
        let was = c.phase;
        // A close reply queued by the frame parser still gets its chance to leave.
        let _ = c.flush();
        c.reset();
        match was {
            Phase::Open => {
                self.left_room(id);
                if self.is_guest(id) {
                    self.guest_ends.insert(id, reason.clone());
                } else {
                    self.disconnects += 1;
                    *self.end_reasons.entry(reason.clone()).or_default() += 1;
                }
                self.outcomes.push(Outcome::Closed { id, reason });
            }
            Phase::Connecting | Phase::Handshaking => {
                self.outcomes.push(Outcome::Failed { id, reason })
            }
            Phase::Idle | Phase::Closed => {}
        }
    }
}

/// Traffic a measured step drives beside its scheduled senders: the attack scenarios'
/// burst senders and flooders. It gets a turn on every pass of the step's loop until the
/// window ends.
pub trait StepDriver {
    /// Sends what it wants to now; returns when it wants its next turn at the latest
    /// (`None`: whenever the loop next wakes).
    fn drive(&mut self, engine: &mut Engine, now: u64) -> Option<u64>;
    /// Everything it had to send is sent: the window closes now rather than at its end.
    fn finished(&self) -> bool {
        false
    }
}

/// No traffic besides the schedule.
struct NoDriver;

impl StepDriver for NoDriver {
    fn drive(&mut self, _engine: &mut Engine, _now: u64) -> Option<u64> {
        None
    }
}

impl Engine<Accounting> {
    /// Runs one step: warm-up, measured window, drain. Senders start at random offsets
    /// within their first interval so a room's sends are spread, not synchronised.
    pub fn run_step(&mut self, spec: &StepSpec, server: &ServerProcs) -> StepResult {
        self.run_step_with(spec, server, &mut NoDriver)
    }

    /// As [`Engine::run_step`], with `driver` sending its own traffic until the window
    /// ends (or it is finished, which ends the window early).
    pub fn run_step_with(
        &mut self,
        spec: &StepSpec,
        server: &ServerProcs,
        driver: &mut dyn StepDriver,
    ) -> StepResult {
        let mut run = self.begin_step(spec);
        let disconnects0 = self.disconnects;
        self.progress.restart(run.t0, self.acct.lifetime_received());
        loop {
            let now = now_us();
            run.read_start(server, now);
            self.send_due(&mut run, now, spec.payload);
            let mut driver_wake = None;
            if now < run.win_end {
                driver_wake = driver.drive(self, now);
                if driver.finished() {
                    run.close_early(server, now_us(), spec.drain_us);
                }
            }
            run.read_end_and_sample(server, now);
            run.interrupted |= sys::interrupted();
            if run.interrupted {
                run.end_readings(server, now);
            }
            let all_in = self.acct.counts.delivered >= self.acct.counts.expected;
            run.read_end_when_delivered(server, now, all_in);
            run.note_wire((self.acct.wire, self.acct.lifetime_received));
            if run.at_end.is_some() && (now >= run.drain_end || all_in || run.interrupted) {
                break;
            }
            self.show_step_progress(&run, now);
            let mut wake = run.next_wake(now).min(driver_wake.unwrap_or(u64::MAX));
            if let Some(p) = self.progress.deadline() {
                wake = wake.min(p);
            }
            self.pump(timeout_until(wake));
            self.outcomes.clear();
        }
        let mut result = run.finish(server, spec.rate);
        result.counts = self.acct.counts.clone();
        result.latency = Latency::from_histogram(&self.acct.latency);
        result.send_lag = Latency::from_histogram(&self.acct.send_lag);
        result.disconnects = self.disconnects - disconnects0;
        result
    }

    /// A new epoch and window, and every open sender's first send due at a random point
    /// of its first interval.
    fn begin_step(&mut self, spec: &StepSpec) -> StepRun {
        self.epoch += 1;
        let run = StepRun::new(spec, now_us());
        self.acct.begin(Window {
            epoch: self.epoch,
            start_us: run.win_start,
            end_us: run.win_end,
        });
        let mut run = run;
        if spec.rate > 0.0 {
            for id in 0..self.clients.len() {
                if self.layout.sender_slot(id).is_some() && self.clients[id].phase == Phase::Open {
                    let first = run.t0 + fastrand::u64(0..run.interval_us);
                    run.sends.push(Reverse((first, id as u32)));
                }
            }
        }
        run.senders = run.sends.len() as u64;
        run
    }

    /// Sends every message that is due by `now`, each rescheduling its sender while the
    /// window lasts.
    fn send_due(&mut self, run: &mut StepRun, now: u64, payload: usize) {
        while let Some(&Reverse((due, id))) = run.sends.peek() {
            if due > now {
                break;
            }
            run.sends.pop();
            if due >= run.win_end {
                continue;
            }
            if self.send_chat(id as usize, due, payload) {
                let next_due = due + run.interval_us;
                if next_due < run.win_end {
                    run.sends.push(Reverse((next_due, id)));
                }
            }
        }
    }

    /// The step's progress line, once a second.
    fn show_step_progress(&mut self, run: &StepRun, now: u64) {
        let phase = run.phase(now);
        let t0 = run.t0;
        let (open, sent, c) = (self.open, self.acct.lifetime_sent, &self.acct.counts);
        let (expected, delivered) = (c.expected, c.delivered);
        self.progress.tick(now, self.acct.lifetime_received(), |r| {
            format!(
                "[{phase} {:6.1}s] open {open}  sent {sent}  window {delivered}/{expected}  {:.0} deliveries/s  harness cpu {:.0}%",
                (now - t0) as f64 / 1e6,
                r.received,
                r.cpu * 100.0
            )
        });
    }

    /// Encodes, queues and writes one counted chat message from layout client `id`,
    /// due at `due` (its lag is measured against it); `false` takes the sender off the
    /// schedule (it is no longer open).
    pub fn send_chat(&mut self, id: usize, due: u64, payload_size: usize) -> bool {
        let c = &self.clients[id];
        if c.phase != Phase::Open {
            return false;
        }
        if c.queued() > MAX_QUEUED {
            self.acct.counts.skipped_backpressure += 1;
            return true;
        }
        let room = c.rx.room as usize;
        let Some(stamp) = self.queue_message(id, payload_size) else {
            return false;
        };
        let n = self.targets.len();
        let members = &self.room_node_open[room * n..(room + 1) * n];
        self.acct
            .on_sent_per_node(stamp.ts_us, members, stamp.ts_us.saturating_sub(due));
        self.flush_client(id)
    }
}
