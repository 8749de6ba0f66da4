//! One run from start to report: limits checked, clients connected, then the mode's work
//! (a measured step, the saturate search, or idle holding), and the report filled in.

use crate::attack;
use crate::clock::secs_to_us;
use crate::engine::{Engine, StepResult, StepSpec};
use crate::proc::{self, ServerProcs};
use crate::report::{IdleReport, Report, SaturateReport, StepSummary};
use crate::report_common::HARNESS_BUSY;
use crate::scenario::{Mode, Plan};
use crate::sys;
use crate::target::Target;
use std::net::{IpAddr, Ipv4Addr};

/// File descriptors the harness needs besides its client sockets (stdio, epoll, /proc reads).
pub const FD_RESERVE: u64 = 32;

/// Local addresses for client sockets: 127.0.0.1 .. 127.0.0.N when every target is a
/// loopback IPv4 address (every 127.x address is local on Linux), none otherwise.
pub fn source_addresses(plan: &Plan) -> Vec<IpAddr> {
    sources_for(&plan.targets, plan.connect.source_addrs)
}

/// As [`source_addresses`], for targets and a count.
pub fn sources_for(targets: &[Target], count: usize) -> Vec<IpAddr> {
    let loopback = targets
        .iter()
        .all(|t| matches!(t.addr.ip(), IpAddr::V4(v4) if v4.is_loopback()));
    if targets.is_empty() || !loopback {
        return Vec::new();
    }
    (1..=count.clamp(1, 250) as u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect()
}

/// Refuses runs the machine's limits make impossible, in plain words.
fn check_limits(plan: &Plan, sources: usize) -> Result<(), String> {
    let (soft, hard) = sys::raise_nofile();
    let clients = plan.layout.clients as u64;
    if clients + FD_RESERVE > soft {
        return Err(format!(
            "asked for {clients} connections, but this process may open at most {soft} files \
             (hard limit {hard}, see `ulimit -Hn`), so it can hold at most {} client connections. \
             A server on this machine has the same kind of limit, so it too holds at most about \
             {} connections. Use --clients {} or fewer.",
            soft.saturating_sub(FD_RESERVE),
            hard.saturating_sub(100),
            soft.saturating_sub(FD_RESERVE)
        ));
    }
    if let Some((lo, hi)) = sys::local_port_range() {
        let ports = u64::from(hi.saturating_sub(lo) + 1) * sources.max(1) as u64;
        if clients > ports {
            return Err(format!(
                "asked for {clients} connections but only {ports} local ports are available \
                 ({} source addresses x ports {lo}-{hi}); raise --source-addrs",
                sources.max(1)
            ));
        }
    }
    Ok(())
}

/// Warns when the server's own open-file limit is below what the run asks of it (of
/// each node: its share of the clients).
fn check_server_limits(plan: &Plan, server: &ServerProcs, warnings: &mut Vec<String>) {
    let per_node = plan.layout.clients.div_ceil(plan.targets.len().max(1));
    check_server_nofile(per_node as u64, server, warnings);
}

/// Warns when the server's own open-file limit cannot hold `clients` connections.
pub fn check_server_nofile(clients: u64, server: &ServerProcs, warnings: &mut Vec<String>) {
    if let Some(limit) = server.min_nofile() {
        if clients + 10 > limit {
            warnings.push(format!(
                "the server's open-file limit is {limit}: it cannot hold {clients} connections \
                 (raise its `ulimit -n`; this machine's hard limit is 20,000 per process)"
            ));
        }
    }
}

fn step_spec(plan: &Plan, rate: f64) -> StepSpec {
    StepSpec {
        rate,
        payload: plan.payload,
        warmup_us: secs_to_us(plan.warmup_s),
        duration_us: secs_to_us(plan.duration_s),
        drain_us: secs_to_us(plan.drain_s),
    }
}

/// Runs `plan` and returns its report (`Err` only when it could not start at all).
pub fn execute(plan: &Plan) -> Result<Report, String> {
    let sources = source_addresses(plan);
    let mut warnings = Vec::new();
    check_limits(plan, sources.len())?;
    let server = ServerProcs::new(&plan.server_pids)?;
    check_server_limits(plan, &server, &mut warnings);
    for w in &warnings {
        if plan.progress {
            eprintln!("loadtest: warning: {w}");
        }
    }
    let before = server.sample();
    let mut engine = Engine::new(
        plan.layout.clone(),
        plan.targets.clone(),
        sources,
        plan.progress,
    )
    .map_err(|e| format!("cannot create the event loop: {e}"))?;
    let conn = engine.connect(plan.connect.concurrency, plan.connect.timeout_us());
    let mut report = Report::new(plan, &conn);
    report.warnings = warnings;
    if conn.opened == 0 {
        report.failures.push("no client could connect".into());
    } else {
        match plan.mode {
            Mode::Load => {
                let r = engine.run_step(&step_spec(plan, plan.rate), &server);
                report.fill_step(&r);
            }
            Mode::Saturate => saturate(&mut engine, plan, &server, &mut report),
            Mode::Idle => idle(&mut engine, plan, &server, &mut report, before),
            Mode::Attack => {
                if let Some(a) = &plan.attack {
                    attack::run(&mut engine, plan, a, &server, &mut report);
                }
            }
        }
    }
    // Saturate expects overloaded steps to cost connections; its verdict is the best step's.
    if plan.mode != Mode::Saturate {
        report.disconnects = engine.disconnects;
    }
    report.disconnect_reasons = engine.end_reasons.clone();
    report.interrupted |= sys::interrupted();
    report.harness_rss_kb = proc::rss_kb(std::process::id());
    engine.close_all();
    report.finish();
    Ok(report)
}

fn idle(
    engine: &mut Engine,
    plan: &Plan,
    server: &ServerProcs,
    report: &mut Report,
    before: Option<proc::Sample>,
) {
    if server.is_empty() {
        report
            .warnings
            .push("idle mode measures the server's memory only with --server-pid".into());
    }
    // Let the server finish whatever it allocates lazily after the handshakes.
    engine.hold("settle", secs_to_us(plan.settle_s), server);
    let after = server.sample();
    let disconnects0 = engine.disconnects;
    engine.hold("hold", secs_to_us(plan.hold_s), server);
    let end = server.sample();
    let connected = report.connected;
    report.server_rss_kb = end.map(|s| s.rss_kb);
    report.idle = Some(IdleReport {
        hold_s: plan.hold_s,
        rss_before_kb: before.map(|s| s.rss_kb),
        rss_after_kb: after.map(|s| s.rss_kb),
        rss_end_kb: end.map(|s| s.rss_kb),
        bytes_per_connection: match (before, after) {
            (Some(b), Some(a)) if connected > 0 => {
                Some((a.rss_kb as f64 - b.rss_kb as f64) * 1024.0 / connected as f64)
            }
            _ => None,
        },
        server_cpu_us_per_connect: match (before, after) {
            (Some(b), Some(a)) if connected > 0 => {
                Some((a.cpu_s - b.cpu_s).max(0.0) * 1e6 / connected as f64)
            }
            _ => None,
        },
        server_cpu_s_hold: match (after, end) {
            (Some(a), Some(e)) => Some((e.cpu_s - a.cpu_s).max(0.0)),
            _ => None,
        },
        disconnects_during_hold: engine.disconnects - disconnects0,
    });
}

/// A step passes when nothing went wrong and p99 stayed within the limit.
fn passes(r: &StepResult, p99_limit_ms: f64) -> bool {
    let c = &r.counts;
    c.sent > 0
        && c.lost() == 0
        && c.errors == 0
        && c.out_of_order == 0
        && c.misrouted == 0
        && c.skipped_backpressure == 0
        && r.disconnects == 0
        && !r.interrupted
        && (r.latency.p99 as f64) <= p99_limit_ms * 1000.0
}

fn summary(r: &StepResult, passed: bool) -> StepSummary {
    StepSummary {
        rate_per_sender: r.rate,
        passed,
        delivered_per_sec: r.delivered_per_sec(),
        sent: r.counts.sent,
        lost: r.counts.lost(),
        latency_us: r.latency,
        server_cpu_us_per_delivery: r
            .server_cpu_s
            .filter(|_| r.counts.delivered > 0)
            .map(|s| s * 1e6 / r.counts.delivered as f64),
        harness_cpu_util: r.harness_util,
    }
}

/// Doubles the rate until a step fails (or, if the starting rate already fails, halves
/// it until one passes, down to 1/64 of it), then bisects between the last good and the
/// first bad rate. The connections stay up between steps; a step's stragglers are told
/// apart by the epoch in each message, and the loop waits for quiet before the next step.
fn saturate(engine: &mut Engine, plan: &Plan, server: &ServerProcs, report: &mut Report) {
    let mut search = Search {
        engine,
        plan,
        server,
        steps: Vec::new(),
        best: None,
        last: None,
        bad: None,
    };
    let limited_by = search.climb();
    if limited_by == "server" {
        search.refine();
    }
    let Search {
        steps, best, last, ..
    } = search;
    if let Some(r) = best.as_ref().or(last.as_ref()) {
        report.fill_step(r);
    }
    report.saturate = Some(SaturateReport {
        p99_limit_ms: plan.p99_limit_ms,
        max_sustained_delivered_per_sec: best.as_ref().map_or(0.0, StepResult::delivered_per_sec),
        best_rate_per_sender: best.as_ref().map(|r| r.rate),
        limited_by: limited_by.into(),
        steps,
    });
}

/// The saturate search in progress: the steps so far, the best passing one, the last
/// failing one and the lowest failing rate.
struct Search<'a> {
    engine: &'a mut Engine,
    plan: &'a Plan,
    server: &'a ServerProcs,
    steps: Vec<StepSummary>,
    best: Option<StepResult>,
    last: Option<StepResult>,
    bad: Option<f64>,
}

impl Search<'_> {
    /// One step at `rate`, with anyone dropped in an earlier step reconnected first and
    /// the stragglers waited out after; `true` when it passed.
    fn step(&mut self, rate: f64) -> (StepResult, bool) {
        let plan = self.plan;
        if (self.engine.open as usize) < plan.layout.clients {
            // Anyone dropped in an overloaded step comes back before the next one.
            self.engine
                .connect(plan.connect.concurrency, plan.connect.timeout_us());
        }
        if plan.progress {
            eprintln!("loadtest: saturate step at {rate} msg/s per sender");
        }
        let r = self.engine.run_step(&step_spec(plan, rate), self.server);
        let ok = passes(&r, plan.p99_limit_ms);
        self.steps.push(summary(&r, ok));
        self.engine.settle(500_000, 60_000_000);
        (r, ok)
    }

    /// Doubles (or, from a failing start, halves) until the boundary is bracketed;
    /// returns what ended the climb.
    fn climb(&mut self) -> &'static str {
        let start = self.plan.rate.max(0.001);
        let mut rate = start;
        loop {
            let (r, ok) = self.step(rate);
            let harness_bound = r.harness_util > HARNESS_BUSY;
            let interrupted = r.interrupted;
            if ok {
                self.best = Some(r);
            } else {
                self.bad = Some(self.bad.map_or(rate, |b: f64| b.min(rate)));
                self.last = Some(r);
            }
            if interrupted {
                return "interrupted";
            }
            // A busy harness only ends the climb when the step failed: a step
            // that passed proves it kept up, and higher rates batch more per
            // write and can cost it less per delivery.
            if harness_bound && !ok {
                return "harness";
            }
            match (ok, self.best.is_some(), self.bad.is_some()) {
                // Going up: keep doubling while it passes.
                (true, _, false) if rate * 2.0 <= self.plan.max_rate => rate *= 2.0,
                (true, _, false) => return "max-rate",
                // Going down from a failing start: keep halving until one passes.
                (false, false, _) if rate / 2.0 >= start / 64.0 => rate /= 2.0,
                // The boundary is bracketed (or nothing passes at all).
                _ => return "server",
            }
        }
    }

    /// Bisects between the best passing and the lowest failing rate.
    fn refine(&mut self) {
        for _ in 0..self.plan.refine_steps {
            let (Some(good), Some(b)) = (self.best.as_ref().map(|r| r.rate), self.bad) else {
                break;
            };
            if (b - good) / good < 0.05 {
                break;
            }
            let mid = (good + b) / 2.0;
            let (r, ok) = self.step(mid);
            if r.interrupted {
                break;
            }
            if ok {
                self.best = Some(r);
            } else {
                self.bad = Some(mid);
            }
        }
    }
}
