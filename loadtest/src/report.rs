//! The run's result: one struct that is both the JSON line (`--json`) and the human table,
//! and the verdict (`ok`, exit status).

use crate::engine::{ConnectStats, StepResult};
use crate::scenario::{Mode, Plan, ScenarioName};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Harness CPU above this fraction of one core makes the figures suspect.
pub const HARNESS_BUSY: f64 = 0.9;

/// Latency percentiles, microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Idle mode's memory figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IdleReport {
    pub hold_s: f64,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    /// At the end of the hold.
    pub rss_end_kb: Option<u64>,
    /// (rss_after - rss_before) / connected.
    pub bytes_per_connection: Option<f64>,
    /// Server CPU spent holding idle connections (timers, pings).
    pub server_cpu_s_hold: Option<f64>,
    pub disconnects_during_hold: u64,
}

/// One rate step of `saturate`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepSummary {
    pub rate_per_sender: f64,
    pub passed: bool,
    pub delivered_per_sec: f64,
    pub sent: u64,
    pub lost: u64,
    pub latency_us: Latency,
    pub server_cpu_us_per_delivery: Option<f64>,
    pub harness_cpu_util: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SaturateReport {
    pub p99_limit_ms: f64,
    /// Delivered per second of the best passing step.
    pub max_sustained_delivered_per_sec: f64,
    pub best_rate_per_sender: Option<f64>,
    /// "server" (it failed the limits), "harness" (the harness ran out of CPU first),
    /// "max-rate" (reached --max-rate) or "interrupted".
    pub limited_by: String,
    pub steps: Vec<StepSummary>,
}

/// One node's part of a multi-node run: the clients placed on it and the deliveries
/// its members were due and got (every sender's messages, whichever node they were sent
/// through).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeReport {
    pub url: String,
    pub clients: u64,
    pub connected: u64,
    pub connect_failures: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub mode: String,
    pub scenario: Option<ScenarioName>,
    /// The node URLs, comma-separated.
    pub url: String,
    /// Servers the clients were spread over (member m of a room on node m % nodes).
    pub nodes: u64,
    pub clients: u64,
    pub rooms: u64,
    pub senders: u64,
    pub rate_per_sender: f64,
    pub payload_bytes: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connected: u64,
    pub connect_failures: u64,
    pub connect_errors: BTreeMap<String, u64>,
    pub connect_time_s: f64,
    /// TCP connect + handshake per client, microseconds.
    pub connect_latency_us: Latency,
    pub sent: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    pub latency_us: Latency,
    pub delivered_per_sec: f64,
    /// Actual length of the measured window.
    pub window_s: f64,
    pub server_pids: Vec<u32>,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    pub server_rss_kb: Option<u64>,
    pub server_rss_peak_kb: Option<u64>,
    /// Per `--server-pid`, in the order given: CPU seconds in the window and RSS at its
    /// end (the fields above are their sums).
    pub server_cpu_s_per_pid: Vec<Option<f64>>,
    pub server_rss_kb_per_pid: Vec<Option<u64>>,
    pub harness_cpu_s: f64,
    /// Harness CPU in the window as a fraction of one core.
    pub harness_cpu_util: f64,
    pub harness_rss_kb: Option<u64>,
    /// Time in the window the harness / the server were runnable but had no CPU (a busy
    /// machine): latencies then include waiting for a CPU.
    pub harness_cpu_wait_s: Option<f64>,
    pub server_cpu_wait_s: Option<f64>,
    /// How late sends left against their schedule: the harness's own lag.
    pub send_lag_us: Latency,
    pub warmup_sent: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub disconnects: u64,
    pub disconnect_reasons: BTreeMap<String, u64>,
    pub out_of_order: u64,
    pub misrouted: u64,
    pub foreign: u64,
    pub unexpected: u64,
    pub unrecognized: u64,
    pub binary: u64,
    pub stale: u64,
    pub skipped_backpressure: u64,
    /// Per node, in the order of the URLs (one entry for a single server).
    pub per_node: Vec<NodeReport>,
    pub idle: Option<IdleReport>,
    pub saturate: Option<SaturateReport>,
    pub interrupted: bool,
    pub warnings: Vec<String>,
    /// Why `ok` is false, in plain words.
    pub failures: Vec<String>,
    pub ok: bool,
}

impl Report {
    pub fn new(plan: &Plan, conn: &ConnectStats) -> Report {
        Report {
            mode: match plan.mode {
                Mode::Load => "load",
                Mode::Saturate => "saturate",
                Mode::Idle => "idle",
            }
            .into(),
            scenario: plan.scenario,
            url: plan.url.clone(),
            nodes: plan.targets.len() as u64,
            per_node: node_reports(plan, conn),
            clients: plan.layout.clients as u64,
            rooms: plan.layout.rooms as u64,
            senders: if plan.mode == Mode::Idle {
                0
            } else {
                plan.layout.total_senders() as u64
            },
            rate_per_sender: if plan.mode == Mode::Idle {
                0.0
            } else {
                plan.rate
            },
            payload_bytes: plan.payload as u64,
            duration_s: if plan.mode == Mode::Idle {
                0.0
            } else {
                plan.duration_s
            },
            warmup_s: if plan.mode == Mode::Idle {
                0.0
            } else {
                plan.warmup_s
            },
            connected: conn.opened,
            connect_failures: conn.failed,
            connect_errors: conn.reasons.clone(),
            connect_time_s: conn.elapsed_s,
            connect_latency_us: Latency::from_histogram(&conn.latency),
            server_pids: plan.server_pids.clone(),
            ..Report::default()
        }
    }

    /// Takes the figures of one measured step.
    pub fn fill_step(&mut self, r: &StepResult) {
        let c = &r.counts;
        self.rate_per_sender = r.rate;
        self.senders = r.senders;
        self.sent = c.sent;
        self.expected_deliveries = c.expected;
        self.delivered = c.delivered;
        self.lost = c.lost();
        self.latency_us = r.latency;
        self.delivered_per_sec = r.delivered_per_sec();
        self.window_s = r.window_s;
        self.server_cpu_s = r.server_cpu_s;
        self.server_cpu_us_per_delivery = r
            .server_cpu_s
            .filter(|_| c.delivered > 0)
            .map(|s| s * 1e6 / c.delivered as f64);
        self.server_rss_kb = r.server_rss_kb;
        self.server_rss_peak_kb = r.server_rss_peak_kb;
        self.harness_cpu_s = r.harness_cpu_s;
        self.harness_cpu_util = r.harness_util;
        self.harness_cpu_wait_s = r.harness_wait_s;
        self.server_cpu_wait_s = r.server_wait_s;
        self.send_lag_us = r.send_lag;
        self.warmup_sent = c.warmup_sent;
        self.errors = c.errors;
        self.first_error = c.first_error.clone();
        self.out_of_order = c.out_of_order;
        self.misrouted = c.misrouted;
        self.foreign = c.foreign;
        self.unexpected = c.unexpected();
        self.unrecognized = c.unrecognized;
        self.binary = c.binary;
        self.stale = c.stale;
        self.skipped_backpressure = c.skipped_backpressure;
        self.server_cpu_s_per_pid = r.server_cpu_s_per_pid.clone();
        self.server_rss_kb_per_pid = r.server_rss_kb_per_pid.clone();
        for (n, k) in self.per_node.iter_mut().zip(&c.per_node) {
            n.expected_deliveries = k.expected;
            n.delivered = k.delivered;
            n.lost = k.lost();
        }
        self.interrupted |= r.interrupted;
    }

    /// Decides `ok` and adds the warnings every mode shares. Call once, last.
    pub fn finish(&mut self) {
        let mut f = Vec::new();
        if self.connect_failures > 0 {
            f.push(format!(
                "{} of {} clients failed to connect",
                self.connect_failures, self.clients
            ));
        }
        if self.lost > 0 {
            let by_node = if self.per_node.len() > 1 {
                let parts: Vec<String> = self
                    .per_node
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.lost > 0)
                    .map(|(k, n)| format!("{} to node {k} ({})", n.lost, n.url))
                    .collect();
                format!(": {}", parts.join(", "))
            } else {
                String::new()
            };
            f.push(format!(
                "{} of {} expected deliveries were lost{by_node}",
                self.lost, self.expected_deliveries
            ));
        }
        if self.errors > 0 {
            f.push(format!(
                "the server answered {} messages with an error",
                self.errors
            ));
        }
        if self.out_of_order > 0 {
            f.push(format!(
                "{} deliveries were duplicated or out of order",
                self.out_of_order
            ));
        }
        if self.misrouted > 0 {
            f.push(format!(
                "{} deliveries reached a client of another room",
                self.misrouted
            ));
        }
        if self.foreign > 0 {
            f.push(format!(
                "{} deliveries named a sender that does not exist",
                self.foreign
            ));
        }
        if self.unexpected > 0 {
            f.push(format!("{} more deliveries than expected", self.unexpected));
        }
        if self.disconnects > 0 {
            f.push(format!(
                "{} connections were closed during the run",
                self.disconnects
            ));
        }
        if let Some(s) = &self.saturate {
            if s.best_rate_per_sender.is_none() {
                f.push("no rate step passed (lost nothing, p99 within the limit)".into());
            }
        }
        if self.interrupted {
            f.push("interrupted".into());
        }
        if self.harness_cpu_util > HARNESS_BUSY {
            self.warnings.push(format!(
                "the harness used {:.0}% of a core in the window: it may have been the bottleneck",
                self.harness_cpu_util * 100.0
            ));
        }
        for (who, wait) in [
            ("harness", self.harness_cpu_wait_s),
            ("server", self.server_cpu_wait_s),
        ] {
            if let Some(w) = wait.filter(|&w| self.window_s > 0.0 && w > 0.05 * self.window_s) {
                self.warnings.push(format!(
                    "the {who} waited {w:.2} s of the {:.1} s window for a CPU: the machine is busy, \
                     latencies include that wait",
                    self.window_s
                ));
            }
        }
        if self.send_lag_us.p99 > 10_000 {
            self.warnings.push(format!(
                "sends left up to {:.1} ms late (p99): the harness could not keep its schedule",
                self.send_lag_us.p99 as f64 / 1000.0
            ));
        }
        if self.skipped_backpressure > 0 {
            self.warnings.push(format!(
                "{} sends skipped: the server stopped reading from some clients",
                self.skipped_backpressure
            ));
        }
        if self.unrecognized > 0 {
            self.warnings.push(format!(
                "{} text frames were not chat messages of this run",
                self.unrecognized
            ));
        }
        self.failures.append(&mut f);
        self.ok = self.failures.is_empty();
    }

    pub fn exit_code(&self) -> i32 {
        if self.ok {
            0
        } else {
            1
        }
    }

    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise report: {e}\"}}"))
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<28} {v}");
        };
        let title = match self.scenario {
            Some(s) if s.name() == self.mode => self.mode.clone(),
            Some(s) => format!("{} ({})", s.name(), self.mode),
            None => self.mode.clone(),
        };
        row("run", format!("{title} against {}", self.url));
        if self.nodes > 1 {
            row(
                "nodes",
                format!(
                    "{} (member m of each room on node m % {})",
                    self.nodes, self.nodes
                ),
            );
        }
        row(
            "clients / rooms / senders",
            format!("{} / {} / {}", self.clients, self.rooms, self.senders),
        );
        row(
            "connected",
            format!("{} ({} failed)", self.connected, self.connect_failures),
        );
        for (why, n) in &self.connect_errors {
            row("  connect error", format!("{n} x {why}"));
        }
        row(
            "connect time",
            format!(
                "{:.2} s total; per client p50 {} p99 {} max {}",
                self.connect_time_s,
                ms(self.connect_latency_us.p50),
                ms(self.connect_latency_us.p99),
                ms(self.connect_latency_us.max)
            ),
        );
        if let Some(i) = &self.idle {
            row(
                "held",
                format!(
                    "{:.1} s, {} disconnects",
                    i.hold_s, i.disconnects_during_hold
                ),
            );
            row("server rss before", kb(i.rss_before_kb));
            row("server rss after", kb(i.rss_after_kb));
            row("server rss at end", kb(i.rss_end_kb));
            row(
                "bytes per connection",
                i.bytes_per_connection
                    .map_or("-".into(), |b| format!("{b:.0}")),
            );
            row(
                "server cpu while holding",
                i.server_cpu_s_hold
                    .map_or("-".into(), |s| format!("{s:.3} s")),
            );
        } else {
            row(
                "rate / payload",
                format!(
                    "{} msg/s per sender, {} bytes",
                    trim(self.rate_per_sender),
                    self.payload_bytes
                ),
            );
            row(
                "window",
                format!(
                    "{:.2} s after {:.1} s warm-up",
                    self.window_s, self.warmup_s
                ),
            );
            row("sent", self.sent.to_string());
            row("expected deliveries", self.expected_deliveries.to_string());
            row("delivered", self.delivered.to_string());
            row("lost", self.lost.to_string());
            row(
                "delivered per second",
                format!("{:.0}", self.delivered_per_sec),
            );
            let l = &self.latency_us;
            row(
                "latency",
                format!(
                    "p50 {} p90 {} p99 {} p99.9 {} max {}",
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.p999),
                    ms(l.max)
                ),
            );
            row(
                "server cpu in window",
                self.server_cpu_s
                    .map_or("-".into(), |s| format!("{s:.3} s")),
            );
            row(
                "server cpu per delivery",
                self.server_cpu_us_per_delivery
                    .map_or("-".into(), |u| format!("{u:.2} us")),
            );
            row(
                "server rss",
                format!(
                    "{} (peak {})",
                    kb(self.server_rss_kb),
                    kb(self.server_rss_peak_kb)
                ),
            );
            if self.server_cpu_s_per_pid.len() > 1 {
                for (i, pid) in self.server_pids.iter().enumerate() {
                    let cpu = self.server_cpu_s_per_pid.get(i).copied().flatten();
                    let rss = self.server_rss_kb_per_pid.get(i).copied().flatten();
                    row(
                        &format!("  pid {pid}"),
                        format!(
                            "cpu {}, rss {}",
                            cpu.map_or("-".into(), |s| format!("{s:.3} s")),
                            kb(rss)
                        ),
                    );
                }
            }
            if self.per_node.len() > 1 {
                for (k, n) in self.per_node.iter().enumerate() {
                    row(
                        &format!("  node {k}"),
                        format!(
                            "{}: {}/{} connected, delivered {}/{} lost {}",
                            n.url,
                            n.connected,
                            n.clients,
                            n.delivered,
                            n.expected_deliveries,
                            n.lost
                        ),
                    );
                }
            }
            row(
                "harness cpu in window",
                format!(
                    "{:.3} s = {:.0}% of a core",
                    self.harness_cpu_s,
                    self.harness_cpu_util * 100.0
                ),
            );
            row(
                "send lag",
                format!(
                    "p99 {} max {}",
                    ms(self.send_lag_us.p99),
                    ms(self.send_lag_us.max)
                ),
            );
            for (k, v) in [
                ("server errors", self.errors),
                ("out of order / duplicate", self.out_of_order),
                ("misrouted", self.misrouted),
                ("unexpected", self.unexpected),
                ("late from earlier step", self.stale),
            ] {
                if v > 0 {
                    row(k, v.to_string());
                }
            }
            if let Some(e) = &self.first_error {
                row("first error", e.clone());
            }
        }
        if self.disconnects > 0 {
            row("disconnects", self.disconnects.to_string());
            for (why, n) in &self.disconnect_reasons {
                row("  closed", format!("{n} x {why}"));
            }
        }
        if let Some(s) = &self.saturate {
            row("saturate: limited by", s.limited_by.clone());
            row(
                "max sustained",
                format!(
                    "{:.0} deliveries/s at {} msg/s per sender",
                    s.max_sustained_delivered_per_sec,
                    s.best_rate_per_sender.map_or("-".into(), trim)
                ),
            );
            for st in &s.steps {
                row(
                    &format!("  step {} msg/s", trim(st.rate_per_sender)),
                    format!(
                        "{} {:.0}/s lost {} p99 {} harness {:.0}%",
                        if st.passed { "pass" } else { "FAIL" },
                        st.delivered_per_sec,
                        st.lost,
                        ms(st.latency_us.p99),
                        st.harness_cpu_util * 100.0
                    ),
                );
            }
        }
        row("harness rss", kb(self.harness_rss_kb));
        for w in &self.warnings {
            let _ = writeln!(t, "WARNING: {w}");
        }
        for f in &self.failures {
            let _ = writeln!(t, "FAILED: {f}");
        }
        let _ = writeln!(
            t,
            "{}",
            if self.ok {
                "RESULT: ok"
            } else {
                "RESULT: FAILED"
            }
        );
        t
    }
}

/// The per-node part of a report before any step: clients placed and connected.
fn node_reports(plan: &Plan, conn: &ConnectStats) -> Vec<NodeReport> {
    let n = plan.targets.len();
    let mut clients = vec![0u64; n];
    for c in 0..plan.layout.clients {
        clients[plan.layout.node_of(c, n)] += 1;
    }
    (0..n)
        .map(|k| NodeReport {
            url: plan.targets[k].url.clone(),
            clients: clients[k],
            connected: conn.opened_per_node.get(k).copied().unwrap_or(0),
            connect_failures: conn.failed_per_node.get(k).copied().unwrap_or(0),
            ..NodeReport::default()
        })
        .collect()
}

/// Microseconds shown as milliseconds.
pub fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn kb(v: Option<u64>) -> String {
    v.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
