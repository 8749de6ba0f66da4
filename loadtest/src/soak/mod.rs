//! Soak mode: a long run under constant churn.
//!
//! N **stable** clients connect first (as in the load modes: client `i` in room
//! `i % rooms`), stay for the whole run, send at `--rate` and are the measured receivers.
//! M **churner** slots cycle meanwhile: a new churn connection starts every `1/C` s on a
//! free slot, joins a random room, sends 1 to `--churn-messages` stamped messages at random
//! points of a random stay (`--churn-stay-min` .. `--churn-stay-max`), and leaves, in turn
//! by a clean closing handshake, by closing the socket (FIN), by resetting it (RST), or by
//! writing half a frame and then closing. Churners are checked (room, order, frames) but
//! never counted as receivers; what is counted is in [`acct`].
//!
//! Readings: the server's RSS and open descriptors (`/proc/PID/fd`) after the stable
//! clients connected, every second during the run (peaks), and at the end -- after every
//! churner is gone, the drain and a settle period -- with roomcast's `/metrics` gauges
//! (`roomcast_connections`, `roomcast_rooms`), which must be back to the stable count.
//! The verdict is in [`report`].

pub mod acct;
pub mod report;

use crate::accounting::{RxState, Window};
use crate::cli::SoakArgs;
use crate::client::Phase;
use crate::clock::{now_us, secs_to_us};
use crate::connect_options::ConnectOptions;
use crate::engine::{Engine, Outcome, MAX_QUEUED};
use crate::flag_check::positive;
use crate::layout::Layout;
use crate::proc::{self, ServerProcs};
use crate::progress::Progress;
use crate::report_common::Latency;
use crate::runner::{check_server_nofile, sources_for, FD_RESERVE};
use crate::scrape;
use crate::sys;
use crate::target::{split_urls, Target};
use acct::SoakAcct;
use report::{ChurnReport, Gauges, SoakReport};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

/// How long a churner waits for the server's answer to its close frame.
const CLOSE_TIMEOUT_US: u64 = 5_000_000;
/// Pause after the stable clients connected, before the start readings.
const START_SETTLE_US: u64 = 1_000_000;

/// Everything a soak run needs, flags checked.
#[derive(Clone, Debug)]
pub struct SoakPlan {
    /// The node URLs, comma-separated.
    pub url: String,
    /// One per node: stable client `i` on `targets[layout.node_of(i, n)]`, each churn
    /// connection on a random one.
    pub targets: Vec<Target>,
    /// The stable clients' layout (every one of them sends).
    pub layout: Layout,
    pub rate: f64,
    pub payload: usize,
    pub churners: usize,
    pub churn_rate: f64,
    pub stay_min_s: f64,
    pub stay_max_s: f64,
    pub churn_messages: u32,
    pub duration_s: f64,
    pub drain_s: f64,
    pub settle_s: f64,
    pub rss_tolerance_pct: f64,
    pub rss_tolerance_mib: f64,
    pub fd_tolerance: u64,
    /// How every client connects (shared with the load modes).
    pub connect: ConnectOptions,
    pub server_pids: Vec<u32>,
    pub progress: bool,
}

impl SoakPlan {
    pub fn resolve(a: &SoakArgs, progress: bool) -> Result<SoakPlan, String> {
        let layout = Layout::new(a.clients, a.rooms, None)?;
        if a.payload > 16 << 20 {
            return Err("--payload is limited to 16 MiB".into());
        }
        let stay_min_s = positive("churn-stay-min", a.churn_stay_min, true)?;
        let stay_max_s = positive("churn-stay-max", a.churn_stay_max, true)?;
        if stay_max_s < stay_min_s {
            return Err(format!(
                "--churn-stay-max ({stay_max_s}) is below --churn-stay-min ({stay_min_s})"
            ));
        }
        let urls = split_urls(&a.url);
        let connect = a.connect.options()?.checked()?;
        Ok(SoakPlan {
            url: urls.join(","),
            targets: Target::parse_all(&urls, &connect)?,
            layout,
            rate: positive("rate", a.rate, false)?,
            payload: a.payload,
            churners: a.churners,
            churn_rate: positive("churn-rate", a.churn_rate, a.churners == 0)?,
            stay_min_s,
            stay_max_s,
            churn_messages: a.churn_messages,
            duration_s: positive("duration", a.duration, false)?,
            drain_s: positive("drain", a.drain, true)?,
            settle_s: positive("settle", a.settle, true)?,
            rss_tolerance_pct: positive("rss-tolerance-pct", a.rss_tolerance_pct, true)?,
            rss_tolerance_mib: positive("rss-tolerance-mib", a.rss_tolerance_mib, true)?,
            fd_tolerance: a.fd_tolerance,
            connect,
            server_pids: a.server_pid.clone(),
            progress,
        })
    }
}

impl SoakPlan {
    /// The distinct servers (by address; a URL given twice is one server), each with the
    /// nodes that name it.
    pub fn servers(&self) -> Vec<(usize, Vec<usize>)> {
        let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
        for (k, t) in self.targets.iter().enumerate() {
            match out
                .iter_mut()
                .find(|(first, _)| self.targets[*first].addr == t.addr)
            {
                Some((_, nodes)) => nodes.push(k),
                None => out.push((k, vec![k])),
            }
        }
        out
    }

    /// Per distinct server (as [`SoakPlan::servers`]), the rooms that have a stable member
    /// on it: what its `roomcast_rooms` gauge shows once the churners are gone.
    pub fn rooms_per_server(&self) -> Vec<u64> {
        let n = self.targets.len();
        self.servers()
            .iter()
            .map(|(_, nodes)| {
                (0..self.layout.rooms)
                    .filter(|&room| {
                        (room..self.layout.clients)
                            .step_by(self.layout.rooms)
                            .any(|c| nodes.contains(&self.layout.node_of(c, n)))
                    })
                    .count() as u64
            })
            .collect()
    }
}

/// The binary's `soak` subcommand: runs, prints, returns the exit status.
pub fn run(args: &SoakArgs) -> Result<i32, String> {
    if let Some(core) = args.cpu {
        sys::pin_to_cpu(core)?;
    }
    let plan = SoakPlan::resolve(args, !args.output.quiet)?;
    let report = execute(&plan)?;
    if args.output.json {
        println!("{}", report.to_json_line());
    } else {
        print!("{}", report.to_table());
    }
    Ok(report.exit_code())
}

/// How a churn connection leaves, taken in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// Close frame 1000, then wait for the server's close frame.
    Clean,
    /// Socket closed without a close frame (FIN).
    Fin,
    /// Socket reset (SO_LINGER 0: RST).
    Rst,
    /// Half of a message frame written, then the socket closed.
    HalfFrame,
}

const LEAVES: [Leave; 4] = [Leave::Clean, Leave::Fin, Leave::Rst, Leave::HalfFrame];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Open {
        leave_at: u64,
    },
    /// Close frame sent, waiting for the server's.
    Closing,
}

struct Churner {
    state: State,
    /// Bumped at every state change: timers of an older state are ignored.
    gen: u32,
    /// Sender id of the current connection.
    sid: u32,
    room: u32,
    /// Due times of the messages still to send, latest first.
    sends: Vec<u64>,
    leave: Leave,
    /// The run is over: leave as soon as the connection opens.
    leave_now: bool,
}

struct Soak<'a> {
    plan: &'a SoakPlan,
    engine: Engine<SoakAcct>,
    server: ServerProcs,
    n: usize,
    churners: Vec<Churner>,
    free: VecDeque<usize>,
    /// (due, churner, generation).
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Stable sends: (due, client).
    sends: BinaryHeap<Reverse<(u64, u32)>>,
    stable_open: Vec<u64>,
    churn: ChurnReport,
    churn_open: u64,
    stable_disconnects: u64,
    stable_disconnect_reasons: std::collections::BTreeMap<String, u64>,
    rss_peak: Option<u64>,
    fds_peak: Option<u64>,
    progress: Progress,
    /// Window end: no sends or churn connects from then on.
    end_us: u64,
}

/// Runs `plan` and returns its report (`Err` only when it could not start at all).
pub fn execute(plan: &SoakPlan) -> Result<SoakReport, String> {
    let n = plan.layout.clients;
    let sources = sources_for(&plan.targets, plan.connect.source_addrs);
    let (soft, hard) = sys::raise_nofile();
    let need = (n + plan.churners) as u64 + FD_RESERVE;
    if need > soft {
        return Err(format!(
            "{n} stable clients + {} churners need {need} open files, but this process may \
             open at most {soft} (hard limit {hard}, see `ulimit -Hn`)",
            plan.churners
        ));
    }
    let server = ServerProcs::new(&plan.server_pids)?;
    let mut warnings = Vec::new();
    let per_node = n.div_ceil(plan.targets.len()) + plan.churners;
    check_server_nofile(per_node as u64, &server, &mut warnings);
    if plan.progress {
        for w in &warnings {
            eprintln!("loadtest: warning: {w}");
        }
    }
    let grace_us = secs_to_us(plan.drain_s).max(1_000_000);
    let acct = SoakAcct::new(&plan.layout, grace_us);
    let engine = Engine::with_sink(
        plan.layout.clone(),
        plan.targets.clone(),
        sources,
        plan.progress,
        acct,
    )
    .map_err(|e| format!("cannot create the event loop: {e}"))?;
    let mut s = Soak {
        plan,
        engine,
        server,
        n,
        churners: Vec::new(),
        free: VecDeque::new(),
        timers: BinaryHeap::new(),
        sends: BinaryHeap::new(),
        stable_open: vec![0; plan.layout.rooms],
        churn: ChurnReport::default(),
        churn_open: 0,
        stable_disconnects: 0,
        stable_disconnect_reasons: Default::default(),
        rss_peak: None,
        fds_peak: None,
        progress: Progress::new(plan.progress, now_us()),
        end_us: u64::MAX,
    };
    let conn = s
        .engine
        .connect(plan.connect.concurrency, plan.connect.timeout_us());
    let mut r = SoakReport::new(plan, &conn);
    r.warnings = warnings;
    if conn.opened == 0 {
        r.failures.push("no stable client could connect".into());
        r.finish();
        return Ok(r);
    }
    s.run(&mut r);
    s.engine.close_all();
    r.finish();
    Ok(r)
}

/// The server's and the harness's readings at one edge of the run.
struct Readings {
    fds: Option<u64>,
    server: Option<proc::Sample>,
    rss_anon_kb: Option<u64>,
    gauges: Option<Gauges>,
    cpu_s: f64,
    wait_s: Option<f64>,
}

impl Soak<'_> {
    fn run(&mut self, r: &mut SoakReport) {
        self.prepare_churners();
        // Let the server finish what it allocates lazily after the handshakes.
        let t = now_us();
        self.wait("ready", t + START_SETTLE_US, |_| false);
        let start = self.start_readings(&mut r.warnings);
        let t0 = now_us();
        let window_end_reached = self.churn_window(t0);
        let t_end = now_us();
        let server_end = self.server.sample();
        let (cpu1, wait1) = (
            sys::cpu_seconds(),
            proc::runqueue_wait_seconds(std::process::id()),
        );
        self.sends.clear();
        self.send_churners_home(t_end);
        self.drain_and_settle();
        let end = self.end_readings(&mut r.warnings);
        self.fill_report(r, t0, t_end);
        self.fill_readings(r, &start, &end, server_end);
        r.harness_cpu_s = (cpu1 - start.cpu_s).max(0.0);
        r.harness_cpu_util = if r.window_s > 0.0 {
            r.harness_cpu_s / r.window_s
        } else {
            0.0
        };
        r.harness_cpu_wait_s = wait1.zip(start.wait_s).map(|(x, y)| (x - y).max(0.0));
        r.interrupted = !window_end_reached || sys::interrupted();
    }

    /// The stable members open per room, and the churner slots (idle, all free).
    fn prepare_churners(&mut self) {
        let plan = self.plan;
        for id in 0..self.n {
            let c = self.engine.client(id);
            if c.phase == Phase::Open {
                self.stable_open[c.rx.room as usize] += 1;
            }
        }
        self.engine.add_clients(plan.churners);
        self.churners = (0..plan.churners)
            .map(|_| Churner {
                state: State::Idle,
                gen: 0,
                sid: 0,
                room: 0,
                sends: Vec::new(),
                leave: Leave::Clean,
                leave_now: false,
            })
            .collect();
        self.free = (0..plan.churners).collect();
    }

    /// The start readings, which also start the peaks.
    fn start_readings(&mut self, warnings: &mut Vec<String>) -> Readings {
        let start = Readings {
            fds: self.server.fds(),
            server: self.server.sample(),
            rss_anon_kb: self.server.rss_anon_kb(),
            gauges: self.gauges(warnings),
            cpu_s: sys::cpu_seconds(),
            wait_s: proc::runqueue_wait_seconds(std::process::id()),
        };
        self.rss_peak = start.server.map(|x| x.rss_kb);
        self.fds_peak = start.fds;
        start
    }

    /// The end readings: descriptors first, before the /metrics request opens one.
    fn end_readings(&mut self, warnings: &mut Vec<String>) -> Readings {
        let fds = self.server.fds();
        let server = self.server.sample();
        let rss_anon_kb = self.server.rss_anon_kb();
        self.sample();
        Readings {
            fds,
            server,
            rss_anon_kb,
            gauges: self.gauges(warnings),
            cpu_s: sys::cpu_seconds(),
            wait_s: None,
        }
    }

    /// The run proper from `t0`: stable sends, churn connects and timers, peak samples.
    /// `true` when it lasted the whole duration (not interrupted).
    fn churn_window(&mut self, t0: u64) -> bool {
        let plan = self.plan;
        let end = t0 + secs_to_us(plan.duration_s);
        self.end_us = end;
        let epoch = self.engine.next_epoch();
        self.engine.acct.begin(Window {
            epoch,
            start_us: t0,
            end_us: end,
        });
        let interval_us = (1e6 / plan.rate).max(1.0) as u64;
        for id in 0..self.n {
            if self.engine.client(id).phase == Phase::Open {
                self.sends
                    .push(Reverse((t0 + fastrand::u64(0..interval_us), id as u32)));
            }
        }
        let connect_every_us = (1e6 / plan.churn_rate.max(1e-6)).max(1.0) as u64;
        // Without churners no connect is ever due.
        let mut next_connect = if plan.churners > 0 { t0 } else { u64::MAX };
        // The first peak sample a second in: the server may still be closing the /metrics
        // connection of the start readings.
        let mut next_sample = t0 + 1_000_000;
        self.progress.restart(t0, 0);
        loop {
            let now = now_us();
            if now >= end || sys::interrupted() {
                return now >= end;
            }
            self.send_due_stable(now, interval_us, end);
            while next_connect <= now {
                next_connect += connect_every_us;
                self.launch(now);
            }
            self.fire_timers(now);
            if now >= next_sample {
                self.sample();
                self.engine.acct.settle_due(now);
                next_sample = now + 1_000_000;
            }
            self.show("soak", now, t0);
            let mut wake = end.min(next_connect).min(next_sample);
            if let Some(Reverse((due, _))) = self.sends.peek() {
                wake = wake.min(*due);
            }
            self.poll_until(wake);
        }
    }

    /// Sends every stable message due by `now`, each rescheduling its sender until `end`.
    fn send_due_stable(&mut self, now: u64, interval_us: u64, end: u64) {
        while let Some(&Reverse((due, id))) = self.sends.peek() {
            if due > now {
                break;
            }
            self.sends.pop();
            if self.send_stable(id as usize, due) {
                let next = due + interval_us;
                if next < end {
                    self.sends.push(Reverse((next, id)));
                }
            }
        }
    }

    /// Every churner leaves (one still connecting as soon as it opens), and the loop runs
    /// until they are all gone.
    fn send_churners_home(&mut self, t_end: u64) {
        self.end_us = t_end;
        for k in 0..self.churners.len() {
            match self.churners[k].state {
                State::Open { .. } => self.leave(k, t_end),
                State::Connecting => self.churners[k].leave_now = true,
                State::Idle | State::Closing => {}
            }
        }
        let gone_by = t_end + self.plan.connect.timeout_us() + CLOSE_TIMEOUT_US + 1_000_000;
        self.wait("leave", gone_by, |s| s.busy_churners() == 0);
        let now = now_us();
        for k in 0..self.churners.len() {
            if self.churners[k].state != State::Idle {
                // Past every timeout: only a harness bug gets here.
                self.engine.hang_up(self.n + k, false);
                self.finish(k, now);
            }
        }
    }

    /// The stragglers drain, the server settles, every churn connection's books close.
    fn drain_and_settle(&mut self) {
        let drain_by = now_us() + secs_to_us(self.plan.drain_s);
        self.wait("drain", drain_by, |s| {
            let c = &s.engine.acct.stable.counts;
            c.delivered >= c.expected
        });
        let settle_by = now_us() + secs_to_us(self.plan.settle_s);
        self.wait("settle", settle_by, |_| false);
        self.engine.acct.settle_all();
    }

    /// The accounting and the churn figures of the run from `t0` to `t_end`.
    fn fill_report(&mut self, r: &mut SoakReport, t0: u64, t_end: u64) {
        let a = &self.engine.acct;
        r.fill_stable(&a.stable.counts, &a.stable.latency, &a.stable.send_lag);
        r.window_s = t_end.saturating_sub(t0) as f64 / 1e6;
        r.delivered_per_sec = if r.window_s > 0.0 {
            r.delivered as f64 / r.window_s
        } else {
            0.0
        };
        r.latency_us = Latency::from_histogram(&a.stable.latency);
        let mut churn = std::mem::take(&mut self.churn);
        churn.counts = a.churn.clone();
        churn.connects_per_sec = if r.window_s > 0.0 {
            churn.connects as f64 / r.window_s
        } else {
            0.0
        };
        r.churn = churn;
        r.stable_disconnects = self.stable_disconnects;
        r.stable_disconnect_reasons = std::mem::take(&mut self.stable_disconnect_reasons);
    }

    /// The server's figures: start, peak and end readings, CPU over the run.
    fn fill_readings(
        &self,
        r: &mut SoakReport,
        start: &Readings,
        end: &Readings,
        server_end: Option<proc::Sample>,
    ) {
        r.server_rss_start_kb = start.server.map(|x| x.rss_kb);
        r.server_rss_peak_kb = self.rss_peak;
        r.server_rss_end_kb = end.server.map(|x| x.rss_kb);
        r.server_rss_anon_start_kb = start.rss_anon_kb;
        r.server_rss_anon_end_kb = end.rss_anon_kb;
        r.server_fds_start = start.fds;
        r.server_fds_peak = self.fds_peak;
        r.server_fds_end = end.fds;
        r.server_cpu_s = start
            .server
            .zip(server_end)
            .map(|(x, y)| (y.cpu_s - x.cpu_s).max(0.0));
        r.server_cpu_wait_s = start
            .server
            .zip(server_end)
            .and_then(|(x, y)| y.wait_s.zip(x.wait_s))
            .map(|(p, q)| (p - q).max(0.0));
        r.metrics_start = start.gauges;
        r.metrics_end = end.gauges;
        r.harness_rss_kb = proc::rss_kb(std::process::id());
    }

    /// Pumps the loop (timers, outcomes, progress) until `done` or `deadline`.
    fn wait(&mut self, label: &str, deadline: u64, done: impl Fn(&Self) -> bool) {
        let t0 = now_us();
        self.progress.restart(
            t0,
            crate::accounting::Sink::lifetime_received(&self.engine.acct),
        );
        let mut next_sample = t0 + 1_000_000;
        loop {
            let now = now_us();
            self.fire_timers(now);
            if now >= deadline || done(self) || sys::interrupted() {
                break;
            }
            if now >= next_sample {
                self.sample();
                next_sample = now + 1_000_000;
            }
            self.show(label, now, t0);
            self.poll_until(deadline.min(next_sample));
        }
    }

    /// Reads the server's RSS and descriptors for the peaks.
    fn sample(&mut self) {
        if let Some(x) = self.server.sample() {
            self.rss_peak = Some(self.rss_peak.unwrap_or(0).max(x.rss_kb));
        }
        if let Some(f) = self.server.fds() {
            self.fds_peak = Some(self.fds_peak.unwrap_or(0).max(f));
        }
    }

    /// roomcast's gauges from /metrics, summed over the distinct servers; a warning when
    /// one cannot be read (and then no figures: a partial sum would mislead).
    fn gauges(&self, warnings: &mut Vec<String>) -> Option<Gauges> {
        let mut sum = Gauges {
            connections: Some(0),
            rooms: Some(0),
            tcp_connections: Some(0),
        };
        let add = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a + b);
        for (first, _) in self.plan.servers() {
            let t = &self.plan.targets[first];
            match scrape::http_get(t.addr, &t.host, "/metrics", Duration::from_secs(5)) {
                Ok(body) => {
                    let m = scrape::parse_metrics(&body);
                    let get = |k: &str| m.get(k).map(|&v| v as u64);
                    sum.connections = add(sum.connections, get("roomcast_connections"));
                    sum.rooms = add(sum.rooms, get("roomcast_rooms"));
                    sum.tcp_connections = add(sum.tcp_connections, get("roomcast_tcp_connections"));
                }
                Err(e) => {
                    let w = format!("cannot read the server's /metrics ({}): {e}", t.host);
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                    return None;
                }
            }
        }
        Some(sum)
    }

    fn show(&mut self, label: &str, now: u64, t0: u64) {
        if self.progress.deadline().is_none_or(|d| now < d) {
            return;
        }
        let a = &self.engine.acct;
        let c = &a.stable.counts;
        let (n, open) = (self.n, self.stable_open.iter().sum::<u64>());
        let (churn_open, connects, failed) = (
            self.churn_open,
            self.churn.connects,
            self.churn.connect_failures,
        );
        let (sent, csent, delivered, expected) = (c.sent, a.churn.sent, c.delivered, c.expected);
        let server = match (self.server.sample(), self.server.fds()) {
            (Some(x), Some(f)) => {
                format!("  server rss {:.1} MiB fds {f}", x.rss_kb as f64 / 1024.0)
            }
            _ => String::new(),
        };
        let received = crate::accounting::Sink::lifetime_received(a);
        self.progress.tick(now, received, |r| {
            format!(
                "[{label:<7} {:6.1}s] stable {open}/{n}  churners open {churn_open}, connects {connects} (failed {failed})  \
                 sent {sent}+{csent} churn  stable deliveries {delivered}/{expected}{server}  harness cpu {:.0}%",
                (now - t0) as f64 / 1e6,
                r.cpu * 100.0
            )
        });
    }

    fn busy_churners(&self) -> usize {
        self.churners
            .iter()
            .filter(|c| c.state != State::Idle)
            .count()
    }

    fn send_stable(&mut self, id: usize, due: u64) -> bool {
        let c = self.engine.client(id);
        if c.phase != Phase::Open {
            return false;
        }
        if c.queued() > MAX_QUEUED {
            self.engine.acct.stable.counts.skipped_backpressure += 1;
            return true;
        }
        let room = c.rx.room as usize;
        let Some(stamp) = self.engine.queue_message(id, self.plan.payload) else {
            return false;
        };
        let members = self.stable_open[room];
        self.engine
            .acct
            .stable
            .on_sent(stamp.ts_us, members, stamp.ts_us.saturating_sub(due));
        self.engine.flush_client(id)
    }

    /// Starts a churn connection on a free churner, into a random room.
    fn launch(&mut self, now: u64) {
        let Some(k) = self.free.pop_front() else {
            self.churn.starved += 1;
            return;
        };
        let rooms = self.plan.layout.rooms;
        let room = fastrand::usize(0..rooms);
        let sid = self.engine.acct.new_churn_id();
        let leave = LEAVES[(self.churn.connects_attempted % LEAVES.len() as u64) as usize];
        self.churn.connects_attempted += 1;
        let id = self.n + k;
        let node = fastrand::usize(0..self.plan.targets.len());
        let c = self.engine.client_mut(id);
        c.node = node as u16;
        c.rx = RxState::new(room, self.plan.layout.senders_in_room(room));
        c.rx.id = sid;
        c.next_seq = 0;
        let ch = &mut self.churners[k];
        ch.sid = sid;
        ch.room = room as u32;
        ch.leave = leave;
        ch.leave_now = false;
        ch.sends.clear();
        match self.engine.start_client(id, now) {
            Ok(()) => {
                let ch = &mut self.churners[k];
                ch.state = State::Connecting;
                ch.gen = ch.gen.wrapping_add(1);
                let due = now + self.plan.connect.timeout_us();
                self.timers.push(Reverse((due, k as u32, ch.gen)));
            }
            Err(reason) => {
                self.connect_failed(reason);
                self.free.push_back(k);
            }
        }
    }

    fn connect_failed(&mut self, reason: String) {
        self.churn.connect_failures += 1;
        *self.churn.connect_errors.entry(reason).or_default() += 1;
    }

    /// Waits for events until `wake` at the latest, or the next churn timer or
    /// progress line if earlier, then takes in what arrived.
    fn poll_until(&mut self, mut wake: u64) {
        if let Some(Reverse((due, _, _))) = self.timers.peek() {
            wake = wake.min(*due);
        }
        if let Some(p) = self.progress.deadline() {
            wake = wake.min(p);
        }
        self.engine.poll_once(timeout_until(wake));
        self.absorb(now_us());
    }

    fn absorb(&mut self, now: u64) {
        for o in self.engine.take_outcomes() {
            match o {
                Outcome::Opened { id, .. } if id >= self.n => self.opened(id - self.n, now),
                Outcome::Failed { id, reason } if id >= self.n => {
                    let k = id - self.n;
                    self.connect_failed(reason);
                    let ch = &mut self.churners[k];
                    ch.state = State::Idle;
                    ch.gen = ch.gen.wrapping_add(1);
                    self.free.push_back(k);
                }
                Outcome::Closed { id, reason } if id >= self.n => {
                    let k = id - self.n;
                    match self.churners[k].state {
                        State::Closing if reason.starts_with("server closed") => {
                            self.churn.clean_closes_answered += 1;
                        }
                        State::Closing => {
                            self.churn.clean_close_unanswered += 1;
                            *self.churn.close_problems.entry(reason).or_default() += 1;
                        }
                        _ => {
                            self.churn.unexpected_closes += 1;
                            *self.churn.close_problems.entry(reason).or_default() += 1;
                        }
                    }
                    self.finish(k, now);
                }
                Outcome::Closed { id, reason } => {
                    let room = self.engine.client(id).rx.room as usize;
                    self.stable_open[room] = self.stable_open[room].saturating_sub(1);
                    self.stable_disconnects += 1;
                    *self.stable_disconnect_reasons.entry(reason).or_default() += 1;
                }
                // Stable clients only open or fail in the connect phase.
                Outcome::Opened { .. } | Outcome::Failed { .. } => {}
            }
        }
    }

    /// A churn connection opened: plan its stay and messages.
    fn opened(&mut self, k: usize, now: u64) {
        let plan = self.plan;
        self.churn.connects += 1;
        self.churn_open += 1;
        self.churn.max_open = self.churn.max_open.max(self.churn_open);
        let (sid, room) = (self.churners[k].sid, self.churners[k].room);
        self.engine.acct.churn_opened(sid, room);
        if self.churners[k].leave_now || now >= self.end_us {
            self.churners[k].state = State::Open { leave_at: now };
            self.leave(k, now);
            return;
        }
        let (lo, hi) = (secs_to_us(plan.stay_min_s), secs_to_us(plan.stay_max_s));
        let stay = if hi > lo { fastrand::u64(lo..=hi) } else { lo };
        let leave_at = now + stay;
        let ch = &mut self.churners[k];
        if plan.churn_messages > 0 {
            let count = fastrand::u32(1..=plan.churn_messages);
            ch.sends = (0..count)
                .map(|_| now + fastrand::u64(0..stay.max(1)))
                .collect();
            ch.sends.sort_unstable_by(|a, b| b.cmp(a));
        }
        ch.state = State::Open { leave_at };
        ch.gen = ch.gen.wrapping_add(1);
        let due = ch.sends.last().copied().unwrap_or(leave_at);
        self.timers.push(Reverse((due, k as u32, ch.gen)));
    }

    fn fire_timers(&mut self, now: u64) {
        while let Some(&Reverse((due, k, gen))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let k = k as usize;
            if self.churners[k].gen != gen {
                continue;
            }
            match self.churners[k].state {
                State::Idle => {}
                // Its Failed outcome frees the churner.
                State::Connecting => self.engine.abort_client(self.n + k, "timed out".into()),
                State::Closing => {
                    self.churn.clean_close_unanswered += 1;
                    *self
                        .churn
                        .close_problems
                        .entry("no close frame from the server within 5 s".into())
                        .or_default() += 1;
                    self.engine.hang_up(self.n + k, false);
                    self.finish(k, now);
                }
                State::Open { leave_at } => self.on_open_timer(k, leave_at, now),
            }
        }
    }

    fn on_open_timer(&mut self, k: usize, leave_at: u64, now: u64) {
        let id = self.n + k;
        while self.churners[k].sends.last().is_some_and(|&d| d <= now) {
            self.churners[k].sends.pop();
            if now >= self.end_us || self.engine.client(id).phase != Phase::Open {
                continue;
            }
            let Some(stamp) = self.engine.queue_message(id, self.plan.payload) else {
                continue;
            };
            let (sid, room) = (self.churners[k].sid, self.churners[k].room as usize);
            let members = self.stable_open[room];
            self.engine.acct.churn_sent(sid, stamp.seq, members);
            // A failed write drops the client: its Closed outcome follows.
            self.engine.flush_client(id);
        }
        if self.engine.client(id).phase != Phase::Open {
            return;
        }
        let ch = &self.churners[k];
        match ch.sends.last() {
            Some(&due) => self.timers.push(Reverse((due, k as u32, ch.gen))),
            None if leave_at <= now => self.leave(k, now),
            None => self.timers.push(Reverse((leave_at, k as u32, ch.gen))),
        }
    }

    /// Ends churner `k`'s open connection its way.
    fn leave(&mut self, k: usize, now: u64) {
        let id = self.n + k;
        let how = self.churners[k].leave;
        match how {
            Leave::Clean => self.churn.leaves_clean += 1,
            Leave::Fin => self.churn.leaves_fin += 1,
            Leave::Rst => self.churn.leaves_rst += 1,
            Leave::HalfFrame => self.churn.leaves_half_frame += 1,
        }
        match how {
            Leave::Clean => {
                let ch = &mut self.churners[k];
                ch.state = State::Closing;
                ch.gen = ch.gen.wrapping_add(1);
                let gen = ch.gen;
                if let Err(reason) = self.engine.client_mut(id).start_close(1000) {
                    // Its Closed outcome counts it as unanswered.
                    self.engine.abort_client(id, reason);
                    return;
                }
                self.timers
                    .push(Reverse((now + CLOSE_TIMEOUT_US, k as u32, gen)));
            }
            Leave::Fin | Leave::Rst => {
                self.engine.hang_up(id, how == Leave::Rst);
                self.finish(k, now);
            }
            Leave::HalfFrame => {
                self.engine.queue_half_message(id, self.plan.payload);
                self.engine.hang_up(id, false);
                self.finish(k, now);
            }
        }
    }

    /// Churner `k`'s connection is over: books noted, the churner free again.
    fn finish(&mut self, k: usize, now: u64) {
        let ch = &mut self.churners[k];
        if matches!(ch.state, State::Open { .. } | State::Closing) {
            self.churn_open = self.churn_open.saturating_sub(1);
        }
        ch.state = State::Idle;
        ch.gen = ch.gen.wrapping_add(1);
        self.engine.acct.churn_closed(ch.sid, now);
        self.free.push_back(k);
    }
}

fn timeout_until(wake_us: u64) -> Duration {
    Duration::from_micros(wake_us.saturating_sub(now_us()).min(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<SoakPlan, String> {
        let mut argv = vec!["loadtest", "soak", "ws://127.0.0.1:9/ws/chat/"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Some(Command::Soak(a)) = cli.command else {
            panic!("not the soak subcommand");
        };
        SoakPlan::resolve(&a, false)
    }

    #[test]
    fn flags_resolve_and_bad_values_are_refused() {
        let p = plan(&[
            "--clients",
            "500",
            "--rooms",
            "20",
            "--rate",
            "2",
            "--churners",
            "300",
            "--churn-rate",
            "100",
            "--duration",
            "600",
            "--server-pid",
            "1",
        ])
        .unwrap();
        assert_eq!((p.layout.clients, p.layout.rooms), (500, 20));
        assert_eq!(p.layout.total_senders(), 500);
        assert_eq!(
            (p.churners, p.churn_rate, p.duration_s),
            (300, 100.0, 600.0)
        );
        assert_eq!(p.server_pids, vec![1]);
        assert!(plan(&["--churn-rate", "0"]).is_err());
        assert!(plan(&["--churn-rate", "0", "--churners", "0"]).is_ok());
        assert!(plan(&["--churn-stay-min", "2", "--churn-stay-max", "1"]).is_err());
        assert!(plan(&["--clients", "5", "--rooms", "6"]).is_err());
        assert!(plan(&["--duration", "0"]).is_err());
    }

    #[test]
    fn several_nodes_and_the_rooms_each_server_holds() {
        // 5 stable clients in 3 rooms over 2 nodes: room 0 has members 0 (node 0) and 3
        // (node 1), room 1 members 1 (node 0) and 4 (node 1), room 2 only member 2 (node 0).
        let p = plan(&[
            "--clients",
            "5",
            "--rooms",
            "3",
            "ws://127.0.0.1:10/ws/chat/",
        ])
        .unwrap();
        assert_eq!(p.targets.len(), 2);
        assert_eq!(p.servers(), vec![(0, vec![0]), (1, vec![1])]);
        assert_eq!(p.rooms_per_server(), vec![3, 2]);
        // One server named twice holds every room once.
        let p = plan(&[
            "--clients",
            "5",
            "--rooms",
            "3",
            "ws://127.0.0.1:9/ws/chat/",
        ])
        .unwrap();
        assert_eq!(p.servers(), vec![(0, vec![0, 1])]);
        assert_eq!(p.rooms_per_server(), vec![3]);
    }
}
