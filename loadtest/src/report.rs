//! The run's result: one struct that is both the JSON line (`--json`) and the human table,
//! and the verdict (`ok`, exit status).

use crate::attack::report::AttackReport;
use crate::engine::{ConnectStats, StepResult};
use crate::report_common::{
    exit_code, json_line, kb, ms, trim, Anomalies, Latency, Span, Strain, Table,
};
use crate::scenario::{Mode, Plan, ScenarioName};
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// Server CPU per connection opened, in µs: its CPU time from before the first
    /// connect to the end of the settle, over `connected`. The accept, the upgrade and,
    /// over `wss://`, the TLS handshake: what a connect storm costs the server, whatever
    /// the harness's own speed.
    pub server_cpu_us_per_connect: Option<f64>,
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
    /// `--token-secret`: the format of the join token every client carried.
    pub token: Option<String>,
    /// `wss://`: TLS handshakes completed per second of the connect phase (each one full:
    /// no resumption), part of every connect latency.
    pub tls: bool,
    pub tls_handshakes_per_sec: Option<f64>,
    /// `--deflate`: permessage-deflate offered; on how many connections the server
    /// accepted it; whether chat messages went out compressed.
    pub deflate_offered: bool,
    pub deflate_connections: u64,
    pub deflate_send: bool,
    /// Bytes read from the sockets in the window per chat delivery (frame headers,
    /// pings and all), and the data payload bytes once inflated over as received (1.0
    /// when nothing came compressed).
    pub wire_bytes_per_delivery: Option<f64>,
    pub compression_ratio: Option<f64>,
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
    #[serde(flatten)]
    pub anomalies: Anomalies,
    /// Per node, in the order of the URLs (one entry for a single server).
    pub per_node: Vec<NodeReport>,
    pub idle: Option<IdleReport>,
    pub saturate: Option<SaturateReport>,
    /// The attack scenarios' phases, flooder and burst.
    pub attack: Option<AttackReport>,
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
                Mode::Attack => "attack",
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
            token: plan.connect.token.as_ref().map(|t| t.format.name().into()),
            tls: plan.targets.iter().any(|t| t.secure),
            tls_handshakes_per_sec: plan
                .targets
                .iter()
                .any(|t| t.secure)
                .then(|| conn.opened as f64 / conn.elapsed_s.max(1e-6)),
            deflate_offered: plan.connect.deflate.offer,
            deflate_connections: conn.deflate,
            deflate_send: plan.connect.deflate.send_compressed,
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
        self.wire_bytes_per_delivery = r.wire.bytes_per_delivery;
        self.compression_ratio = r.wire.compression_ratio;
        self.warmup_sent = c.warmup_sent;
        self.errors = c.errors;
        self.first_error = c.first_error.clone();
        self.anomalies = Anomalies::from(c);
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
        f.extend(self.anomalies.failures(self.errors));
        if self.disconnects > 0 {
            f.push(format!(
                "{} connections were closed during the run",
                self.disconnects
            ));
        }
        if let Some(a) = &self.attack {
            f.extend(a.failures());
        }
        if let Some(s) = &self.saturate {
            if s.best_rate_per_sender.is_none() {
                f.push("no rate step passed (lost nothing, p99 within the limit)".into());
            }
        }
        if self.interrupted {
            f.push("interrupted".into());
        }
        let strain = Strain {
            span: Span::Window,
            span_s: self.window_s,
            harness_cpu_util: self.harness_cpu_util,
            harness_cpu_wait_s: self.harness_cpu_wait_s,
            server_cpu_wait_s: self.server_cpu_wait_s,
            send_lag_us: self.send_lag_us,
        };
        self.warnings.extend(strain.warnings(&self.anomalies));
        self.failures.append(&mut f);
        self.ok = self.failures.is_empty();
    }

    pub fn exit_code(&self) -> i32 {
        exit_code(self.ok)
    }

    pub fn to_json_line(&self) -> String {
        json_line(self)
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut t = Table::new(28);
        self.run_rows(&mut t);
        if let Some(i) = &self.idle {
            idle_rows(&mut t, i);
        } else {
            self.delivery_rows(&mut t);
            self.deflate_rows(&mut t);
            self.server_rows(&mut t);
            self.harness_rows(&mut t);
            self.anomaly_rows(&mut t);
        }
        if self.disconnects > 0 {
            t.row("disconnects", self.disconnects.to_string());
            t.tally("  closed", &self.disconnect_reasons);
        }
        if let Some(s) = &self.saturate {
            saturate_rows(&mut t, s);
        }
        if let Some(a) = &self.attack {
            a.rows(&mut t);
        }
        t.row("harness rss", kb(self.harness_rss_kb));
        t.finish(&self.warnings, &self.failures, self.ok)
    }

    /// What ran against what, and how the clients connected.
    fn run_rows(&self, t: &mut Table) {
        let title = match self.scenario {
            Some(s) if s.name() == self.mode => self.mode.clone(),
            Some(s) => format!("{} ({})", s.name(), self.mode),
            None => self.mode.clone(),
        };
        t.row("run", format!("{title} against {}", self.url));
        if self.nodes > 1 {
            t.row(
                "nodes",
                format!(
                    "{} (member m of each room on node m % {})",
                    self.nodes, self.nodes
                ),
            );
        }
        t.row(
            "clients / rooms / senders",
            format!("{} / {} / {}", self.clients, self.rooms, self.senders),
        );
        t.row(
            "connected",
            format!("{} ({} failed)", self.connected, self.connect_failures),
        );
        t.tally("  connect error", &self.connect_errors);
        if let Some(f) = &self.token {
            t.row(
                "join tokens",
                format!("{f}, minted per connection for its room"),
            );
        }
        if let Some(h) = self.tls_handshakes_per_sec {
            t.row(
                "tls",
                format!("{h:.0} full handshakes/s in the connect phase (ALPN http/1.1)"),
            );
        }
        t.row(
            "connect time",
            format!(
                "{:.2} s total; per client p50 {} p99 {} max {}",
                self.connect_time_s,
                ms(self.connect_latency_us.p50),
                ms(self.connect_latency_us.p99),
                ms(self.connect_latency_us.max)
            ),
        );
    }

    /// With `--deflate`: what was negotiated and what the deliveries cost on the wire.
    fn deflate_rows(&self, t: &mut Table) {
        if !self.deflate_offered {
            return;
        }
        t.row(
            "permessage-deflate",
            format!(
                "accepted on {} of {} connections; sending {}",
                self.deflate_connections,
                self.connected,
                if self.deflate_send {
                    "compressed"
                } else {
                    "uncompressed"
                }
            ),
        );
        t.row(
            "wire",
            format!(
                "{} bytes per delivery, compression ratio {}",
                self.wire_bytes_per_delivery
                    .map_or("-".into(), |b| format!("{b:.1}")),
                self.compression_ratio
                    .map_or("-".into(), |r| format!("{r:.2}"))
            ),
        );
    }

    /// The traffic of the window: what was sent, what arrived, how fast.
    fn delivery_rows(&self, t: &mut Table) {
        t.row(
            "rate / payload",
            format!(
                "{} msg/s per sender, {} bytes",
                trim(self.rate_per_sender),
                self.payload_bytes
            ),
        );
        t.row(
            "window",
            format!(
                "{:.2} s after {:.1} s warm-up",
                self.window_s, self.warmup_s
            ),
        );
        t.row("sent", self.sent.to_string());
        t.row("expected deliveries", self.expected_deliveries.to_string());
        t.row("delivered", self.delivered.to_string());
        t.row("lost", self.lost.to_string());
        t.row(
            "delivered per second",
            format!("{:.0}", self.delivered_per_sec),
        );
        t.row("latency", self.latency_us.percentiles());
    }

    /// The server's CPU and memory over the window, per PID and per node when several.
    fn server_rows(&self, t: &mut Table) {
        t.row(
            "server cpu in window",
            self.server_cpu_s
                .map_or("-".into(), |s| format!("{s:.3} s")),
        );
        t.row(
            "server cpu per delivery",
            self.server_cpu_us_per_delivery
                .map_or("-".into(), |u| format!("{u:.2} us")),
        );
        t.row(
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
                t.row(
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
                t.row(
                    &format!("  node {k}"),
                    format!(
                        "{}: {}/{} connected, delivered {}/{} lost {}",
                        n.url, n.connected, n.clients, n.delivered, n.expected_deliveries, n.lost
                    ),
                );
            }
        }
    }

    /// The harness's own CPU and schedule: was it the limit?
    fn harness_rows(&self, t: &mut Table) {
        t.row(
            "harness cpu in window",
            format!(
                "{:.3} s = {:.0}% of a core",
                self.harness_cpu_s,
                self.harness_cpu_util * 100.0
            ),
        );
        t.row(
            "send lag",
            format!(
                "p99 {} max {}",
                ms(self.send_lag_us.p99),
                ms(self.send_lag_us.max)
            ),
        );
    }

    /// Server errors and wrong deliveries, the ones that happened.
    fn anomaly_rows(&self, t: &mut Table) {
        let a = &self.anomalies;
        t.nonzero(&[
            ("server errors", self.errors),
            ("out of order / duplicate", a.out_of_order),
            ("misrouted", a.misrouted),
            ("unexpected", a.unexpected),
            ("late from earlier step", a.stale),
        ]);
        if let Some(e) = &self.first_error {
            t.row("first error", e.clone());
        }
    }
}

/// Idle mode's memory figures.
fn idle_rows(t: &mut Table, i: &IdleReport) {
    t.row(
        "held",
        format!(
            "{:.1} s, {} disconnects",
            i.hold_s, i.disconnects_during_hold
        ),
    );
    t.row("server rss before", kb(i.rss_before_kb));
    t.row("server rss after", kb(i.rss_after_kb));
    t.row("server rss at end", kb(i.rss_end_kb));
    t.row(
        "bytes per connection",
        i.bytes_per_connection
            .map_or("-".into(), |b| format!("{b:.0}")),
    );
    t.row(
        "server cpu per connect",
        i.server_cpu_us_per_connect
            .map_or("-".into(), |c| format!("{c:.1} us")),
    );
    t.row(
        "server cpu while holding",
        i.server_cpu_s_hold
            .map_or("-".into(), |s| format!("{s:.3} s")),
    );
}

/// The saturate search: its outcome and every step.
fn saturate_rows(t: &mut Table, s: &SaturateReport) {
    t.row("saturate: limited by", s.limited_by.clone());
    t.row(
        "max sustained",
        format!(
            "{:.0} deliveries/s at {} msg/s per sender",
            s.max_sustained_delivered_per_sec,
            s.best_rate_per_sender.map_or("-".into(), trim)
        ),
    );
    for st in &s.steps {
        t.row(
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

#[cfg(test)]
mod tests {
    //! Pins the table and the JSON line byte for byte: scripts and `compare` read them.

    use super::*;
    use crate::accounting::{Counts, NodeCounts};
    use crate::engine::WireFigures;
    use crate::report_common::golden;

    fn lat(p50: u64, p90: u64, p99: u64, p999: u64, max: u64) -> Latency {
        Latency {
            p50,
            p90,
            p99,
            p999,
            max,
        }
    }

    /// A step with every counter set, so `fill_step` is pinned field by field.
    fn step() -> StepResult {
        StepResult {
            rate: 12.5,
            counts: Counts {
                sent: 100,
                expected: 400,
                delivered: 390,
                warmup_sent: 7,
                out_of_order: 2,
                misrouted: 3,
                foreign: 4,
                stale: 5,
                errors: 6,
                first_error: Some(r#"{"error": "nope"}"#.into()),
                unrecognized: 8,
                binary: 9,
                skipped_backpressure: 10,
                per_node: vec![
                    NodeCounts {
                        expected: 200,
                        delivered: 200,
                    },
                    NodeCounts {
                        expected: 200,
                        delivered: 190,
                    },
                ],
                ..Counts::default()
            },
            latency: lat(1500, 2500, 12_345, 20_000, 30_001),
            send_lag: lat(100, 200, 15_000, 15_500, 16_000),
            window_s: 2.0,
            drain_s: 1.0,
            server_cpu_s: Some(0.1234),
            server_rss_kb: Some(20_480),
            server_rss_peak_kb: Some(30_000),
            server_cpu_s_per_pid: vec![Some(0.05), None],
            server_rss_kb_per_pid: vec![Some(10_240), None],
            harness_cpu_s: 1.9,
            harness_util: 0.95,
            harness_wait_s: Some(0.5),
            server_wait_s: Some(0.01),
            disconnects: 3,
            senders: 8,
            interrupted: true,
            wire: WireFigures {
                bytes_per_delivery: Some(70.25),
                compression_ratio: Some(1.0),
            },
        }
    }

    /// Two nodes, two PIDs, and every failure and warning `finish` knows.
    fn everything_wrong() -> Report {
        let mut r = Report {
            mode: "load".into(),
            scenario: Some(ScenarioName::Fanout),
            url: "ws://a/,ws://b/".into(),
            nodes: 2,
            clients: 16,
            rooms: 4,
            payload_bytes: 64,
            duration_s: 2.0,
            warmup_s: 0.5,
            connected: 15,
            connect_failures: 1,
            connect_errors: BTreeMap::from([("connection refused".to_string(), 1)]),
            connect_time_s: 0.25,
            connect_latency_us: lat(800, 900, 1200, 1300, 1400),
            token: Some("django".into()),
            tls: true,
            tls_handshakes_per_sec: Some(60.0),
            deflate_offered: true,
            deflate_connections: 7,
            server_pids: vec![11, 22],
            harness_rss_kb: Some(5000),
            disconnects: 2,
            disconnect_reasons: BTreeMap::from([("reset".to_string(), 2)]),
            per_node: vec![
                NodeReport {
                    url: "ws://a/".into(),
                    clients: 8,
                    connected: 8,
                    ..NodeReport::default()
                },
                NodeReport {
                    url: "ws://b/".into(),
                    clients: 8,
                    connected: 7,
                    connect_failures: 1,
                    ..NodeReport::default()
                },
            ],
            saturate: Some(SaturateReport {
                p99_limit_ms: 100.0,
                max_sustained_delivered_per_sec: 1234.4,
                best_rate_per_sender: Some(20.0),
                limited_by: "server".into(),
                steps: vec![
                    StepSummary {
                        rate_per_sender: 20.0,
                        passed: true,
                        delivered_per_sec: 1234.4,
                        sent: 50,
                        lost: 0,
                        latency_us: lat(1, 2, 3000, 4, 5),
                        server_cpu_us_per_delivery: Some(1.5),
                        harness_cpu_util: 0.25,
                    },
                    StepSummary {
                        rate_per_sender: 40.125,
                        passed: false,
                        delivered_per_sec: 2000.0,
                        sent: 100,
                        lost: 3,
                        latency_us: lat(1, 2, 250_000, 4, 5),
                        server_cpu_us_per_delivery: None,
                        harness_cpu_util: 0.5,
                    },
                ],
            }),
            warnings: vec!["an earlier warning".into()],
            ..Report::default()
        };
        r.fill_step(&step());
        r.finish();
        r
    }

    /// One node, more deliveries than expected, a saturate search with no passing step.
    fn too_many() -> Report {
        let mut s = step();
        s.counts.expected = 100;
        s.counts.delivered = 104;
        s.counts.per_node.truncate(1);
        s.counts.out_of_order = 0;
        s.counts.misrouted = 0;
        s.counts.foreign = 0;
        s.counts.errors = 0;
        s.counts.first_error = None;
        s.harness_util = 0.5;
        s.harness_wait_s = None;
        s.server_wait_s = Some(0.2);
        s.send_lag = Latency::default();
        s.interrupted = false;
        s.server_cpu_s_per_pid = vec![Some(0.05)];
        let mut r = Report {
            mode: "saturate".into(),
            url: "ws://a/".into(),
            nodes: 1,
            per_node: vec![NodeReport {
                url: "ws://a/".into(),
                ..NodeReport::default()
            }],
            saturate: Some(SaturateReport {
                limited_by: "server".into(),
                ..SaturateReport::default()
            }),
            ..Report::default()
        };
        r.fill_step(&s);
        r.finish();
        r
    }

    /// One node losing deliveries: the failure names no node.
    fn one_node_lost() -> Report {
        let mut s = step();
        s.counts.per_node.truncate(1);
        let mut r = Report {
            mode: "load".into(),
            scenario: Some(ScenarioName::Pairs),
            nodes: 1,
            per_node: vec![NodeReport::default()],
            ..Report::default()
        };
        r.fill_step(&s);
        r.finish();
        r
    }

    fn idle() -> Report {
        let mut r = Report {
            mode: "idle".into(),
            scenario: Some(ScenarioName::Idle),
            url: "ws://a/".into(),
            nodes: 1,
            clients: 20,
            rooms: 4,
            connected: 20,
            connect_time_s: 0.125,
            connect_latency_us: lat(100, 200, 300, 400, 500),
            idle: Some(IdleReport {
                hold_s: 0.5,
                rss_before_kb: Some(1024),
                rss_after_kb: Some(2048),
                rss_end_kb: None,
                bytes_per_connection: Some(52_428.8),
                server_cpu_us_per_connect: Some(41.5),
                server_cpu_s_hold: Some(0.0125),
                disconnects_during_hold: 0,
            }),
            harness_rss_kb: Some(3000),
            ..Report::default()
        };
        r.finish();
        r
    }

    /// A flooder run: the flooder rate-limited and closed (expected), the members clean
    /// in the second phase but one delivery lost in the first.
    fn flooder() -> Report {
        use crate::accounting::GuestCounts;
        use crate::attack::report::{AttackReport, AttackerReport, PhaseReport};
        let phase = |name: &str, lost: u64, p99: u64| PhaseReport {
            name: name.into(),
            sent: 200,
            expected_deliveries: 20_000,
            delivered: 20_000 - lost,
            lost,
            latency_us: lat(500, 900, p99, p99 + 1000, p99 + 2000),
            delivered_per_sec: 10_000.0,
            errors: 0,
            disconnects: 0,
        };
        let mut s = step();
        s.counts = Counts {
            sent: 200,
            expected: 20_000,
            delivered: 20_000,
            per_node: vec![NodeCounts {
                expected: 20_000,
                delivered: 20_000,
            }],
            ..Counts::default()
        };
        s.interrupted = false;
        s.harness_util = 0.5;
        s.harness_wait_s = None;
        s.server_wait_s = None;
        s.send_lag = Latency::default();
        s.disconnects = 0;
        let mut r = Report {
            mode: "attack".into(),
            scenario: Some(ScenarioName::Flooder),
            url: "ws://a/".into(),
            nodes: 1,
            clients: 100,
            rooms: 1,
            connected: 100,
            per_node: vec![NodeReport::default()],
            attack: Some(AttackReport {
                kind: "flooder".into(),
                phases: vec![
                    phase("without attacker", 1, 3000),
                    phase("with attacker", 0, 25_000),
                ],
                attacker: Some(AttackerReport {
                    mode: "chat".into(),
                    path: "/ws/chat/r0/".into(),
                    in_room: true,
                    connected: true,
                    connect_error: None,
                    frames_sent: 5000,
                    bytes_sent: 350_000,
                    flood_s: 0.5,
                    frames_per_sec: 10_000.0,
                    closed: true,
                    close_reason: Some("server closed with 1008: rate limited".into()),
                    closed_after_s: Some(0.5),
                    received: GuestCounts {
                        received: 120,
                        echoed: 100,
                        errors: 4900,
                        first_error: Some(r#"{"error": "rate limited"}"#.into()),
                        to_members: 10_000,
                    },
                }),
                burst: None,
            }),
            ..Report::default()
        };
        r.fill_step(&s);
        r.finish();
        r
    }

    /// Each case's exit status, table and (where given) JSON line, byte for byte.
    #[test]
    fn tables_and_json_lines_are_pinned() {
        let cases = [
            (everything_wrong(), 1, "load_everything_wrong", true),
            (too_many(), 1, "load_too_many", true),
            (one_node_lost(), 1, "load_one_node_lost", false),
            (flooder(), 1, "load_flooder", true),
            (idle(), 0, "load_idle", true),
        ];
        for (r, exit, name, json) in cases {
            assert_eq!(r.exit_code(), exit, "{name}");
            golden(&format!("{name}.txt"), &r.to_table());
            if json {
                golden(&format!("{name}.json"), &r.to_json_line());
            }
        }
    }
}
