//! The soak run's result (the JSON line and the human table) and its verdict.

use super::acct::ChurnCounts;
use super::SoakPlan;
use crate::accounting::Counts;
use crate::engine::ConnectStats;
use crate::report_common::{
    exit_code, json_line, kb, trim, Anomalies, Latency, Span, Strain, Table,
};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// roomcast's `/metrics` gauges (`None`: the page lacks that sample).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Gauges {
    pub connections: Option<u64>,
    pub rooms: Option<u64>,
    pub tcp_connections: Option<u64>,
}

/// Churn figures: connections, how they ended, and the churner-message accounting.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChurnReport {
    /// Churn connections started.
    pub connects_attempted: u64,
    /// Churn connections that opened (completed the handshake).
    pub connects: u64,
    pub connects_per_sec: f64,
    pub connect_failures: u64,
    pub connect_errors: BTreeMap<String, u64>,
    /// Connect times (every 1/C s) when every churner was busy: skipped.
    pub starved: u64,
    /// Most churn connections open at once.
    pub max_open: u64,
    pub leaves_clean: u64,
    pub leaves_fin: u64,
    pub leaves_rst: u64,
    pub leaves_half_frame: u64,
    /// Clean leaves the server answered with its close frame.
    pub clean_closes_answered: u64,
    /// Clean leaves without the server's close frame (within 5 s).
    pub clean_close_unanswered: u64,
    /// Churn connections the server (or the network) ended while they were open.
    pub unexpected_closes: u64,
    /// Why, for unanswered clean closes and unexpected closes.
    pub close_problems: BTreeMap<String, u64>,
    #[serde(flatten)]
    pub counts: ChurnCounts,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakReport {
    pub mode: String,
    /// The node URLs, comma-separated.
    pub url: String,
    /// Servers the clients were spread over (stable member m of a room on node m % nodes,
    /// each churn connection on a random one).
    pub nodes: u64,
    /// Asked length of the run, and the actual one.
    pub duration_s: f64,
    pub window_s: f64,
    pub stable_clients: u64,
    pub rooms: u64,
    pub rate_per_sender: f64,
    pub payload_bytes: u64,
    pub churners: u64,
    /// Asked churn connections per second (`churn.connects_per_sec` is what happened).
    pub churn_rate: f64,
    pub connected: u64,
    pub connect_failures: u64,
    pub connect_errors: BTreeMap<String, u64>,
    pub connect_time_s: f64,
    /// Stable accounting: stable senders' messages to stable receivers.
    pub sent: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Every counted delivery to a stable member (stable and churner senders).
    pub latency_us: Latency,
    pub delivered_per_sec: f64,
    pub send_lag_us: Latency,
    /// Stable `lost` plus churner messages' `churn.lost`.
    pub lost_total: u64,
    pub churn: ChurnReport,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Stable accounting's (the churners' own are in `churn`).
    #[serde(flatten)]
    pub anomalies: Anomalies,
    pub stable_disconnects: u64,
    pub stable_disconnect_reasons: BTreeMap<String, u64>,
    pub server_pids: Vec<u32>,
    pub server_rss_start_kb: Option<u64>,
    pub server_rss_peak_kb: Option<u64>,
    pub server_rss_end_kb: Option<u64>,
    /// Growth from start to end allowed: max(--rss-tolerance-pct of start, --rss-tolerance-mib).
    pub server_rss_tolerance_kb: Option<u64>,
    /// `RssAnon` (heap and stacks, without the binary's code pages) at start and end: shown
    /// to tell a heap leak from code paged in late, not judged.
    pub server_rss_anon_start_kb: Option<u64>,
    pub server_rss_anon_end_kb: Option<u64>,
    pub server_fds_start: Option<u64>,
    pub server_fds_peak: Option<u64>,
    pub server_fds_end: Option<u64>,
    pub fd_tolerance: u64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_wait_s: Option<f64>,
    /// roomcast's gauges, summed over the distinct servers (a URL given twice is read
    /// once).
    pub metrics_start: Option<Gauges>,
    pub metrics_end: Option<Gauges>,
    /// What `metrics_end.rooms` must show: the rooms with a stable member, counted once
    /// per distinct server that holds one (`rooms` for a single server).
    pub metrics_rooms_expected: u64,
    pub harness_cpu_s: f64,
    pub harness_cpu_util: f64,
    pub harness_cpu_wait_s: Option<f64>,
    pub harness_rss_kb: Option<u64>,
    pub interrupted: bool,
    #[serde(skip)]
    rss_tolerance_pct: f64,
    #[serde(skip)]
    rss_tolerance_mib: f64,
    pub warnings: Vec<String>,
    pub failures: Vec<String>,
    pub ok: bool,
}

impl SoakReport {
    pub fn new(plan: &SoakPlan, conn: &ConnectStats) -> SoakReport {
        SoakReport {
            mode: "soak".into(),
            url: plan.url.clone(),
            nodes: plan.targets.len() as u64,
            metrics_rooms_expected: plan.rooms_per_server().iter().sum(),
            duration_s: plan.duration_s,
            stable_clients: plan.layout.clients as u64,
            rooms: plan.layout.rooms as u64,
            rate_per_sender: plan.rate,
            payload_bytes: plan.payload as u64,
            churners: plan.churners as u64,
            churn_rate: if plan.churners > 0 {
                plan.churn_rate
            } else {
                0.0
            },
            connected: conn.opened,
            connect_failures: conn.failed,
            connect_errors: conn.reasons.clone(),
            connect_time_s: conn.elapsed_s,
            server_pids: plan.server_pids.clone(),
            fd_tolerance: plan.fd_tolerance,
            rss_tolerance_pct: plan.rss_tolerance_pct,
            rss_tolerance_mib: plan.rss_tolerance_mib,
            ..SoakReport::default()
        }
    }

    /// Takes the stable accounting's counters.
    pub fn fill_stable(&mut self, c: &Counts, latency: &Histogram<u64>, send_lag: &Histogram<u64>) {
        self.sent = c.sent;
        self.expected_deliveries = c.expected;
        self.delivered = c.delivered;
        self.lost = c.lost();
        self.latency_us = Latency::from_histogram(latency);
        self.send_lag_us = Latency::from_histogram(send_lag);
        self.errors = c.errors;
        self.first_error = c.first_error.clone();
        self.anomalies = Anomalies::from(c);
    }

    /// The stable anomalies with the churners' duplicates and crossed rooms added: a
    /// wrong delivery fails the run whoever sent it.
    fn all_anomalies(&self) -> Anomalies {
        let k = &self.churn.counts;
        Anomalies {
            out_of_order: self.anomalies.out_of_order + k.out_of_order,
            misrouted: self.anomalies.misrouted + k.misrouted,
            ..self.anomalies.clone()
        }
    }

    /// The RSS growth allowed for a start reading of `start_kb`.
    pub fn rss_tolerance_kb(start_kb: u64, pct: f64, mib: f64) -> u64 {
        let by_pct = (start_kb as f64 * pct / 100.0) as u64;
        let by_mib = (mib * 1024.0) as u64;
        by_pct.max(by_mib)
    }

    /// Decides `ok`. Call once, last.
    pub fn finish(&mut self) {
        self.lost_total = self.lost + self.churn.counts.lost;
        let mut f = Vec::new();
        self.delivery_failures(&mut f);
        self.churn_failures(&mut f);
        self.server_failures(&mut f);
        if self.interrupted {
            f.push("interrupted".into());
        }
        let mut w = self.warnings_of_run();
        self.warnings.append(&mut w);
        self.failures.append(&mut f);
        self.ok = self.failures.is_empty();
    }

    /// Stable clients that failed or were closed, and anything lost or delivered wrong.
    fn delivery_failures(&self, f: &mut Vec<String>) {
        let all = self.all_anomalies();
        let k = &self.churn.counts;
        let mut fail = |cond: bool, text: String| {
            if cond {
                f.push(text);
            }
        };
        fail(
            self.connect_failures > 0,
            format!(
                "{} of {} stable clients failed to connect",
                self.connect_failures, self.stable_clients
            ),
        );
        fail(
            self.sent == 0 && !self.interrupted,
            "no stable message was sent".into(),
        );
        fail(
            self.lost > 0,
            format!(
                "{} of {} expected deliveries of stable members' messages were lost",
                self.lost, self.expected_deliveries
            ),
        );
        fail(
            k.lost > 0,
            format!(
                "{} of {} expected deliveries of accepted churner messages to stable members were lost",
                k.lost, k.expected
            ),
        );
        fail(
            k.late > 0,
            format!(
                "{} churner messages reached a stable member more than the drain time after their sender left",
                k.late
            ),
        );
        fail(
            k.phantom > 0,
            format!(
                "{} deliveries of messages never sent whole (a half frame broadcast?)",
                k.phantom
            ),
        );
        for text in all.failures(self.errors) {
            fail(true, text);
        }
        fail(
            self.anomalies.binary > 0,
            format!("{} binary frames from a chat server", self.anomalies.binary),
        );
        fail(
            self.stable_disconnects > 0,
            format!(
                "{} stable connections were closed during the run",
                self.stable_disconnects
            ),
        );
    }

    /// Churn connections the server mishandled.
    fn churn_failures(&self, f: &mut Vec<String>) {
        let ch = &self.churn;
        let mut fail = |cond: bool, text: String| {
            if cond {
                f.push(text);
            }
        };
        fail(
            ch.unexpected_closes > 0,
            format!(
                "the server ended {} churn connections that were open (broken frame? see close_problems)",
                ch.unexpected_closes
            ),
        );
        fail(
            ch.clean_close_unanswered > 0,
            format!(
                "{} clean closes were not answered with a close frame",
                ch.clean_close_unanswered
            ),
        );
        fail(
            ch.connect_failures > 0,
            format!("{} churn connections failed to open", ch.connect_failures),
        );
        fail(
            self.churners > 0 && ch.connects == 0 && !self.interrupted,
            "no churn connection opened".into(),
        );
    }

    /// What the server did not give back: descriptors, memory, /metrics gauges. Sets the
    /// RSS tolerance it judged by.
    fn server_failures(&mut self, f: &mut Vec<String>) {
        if let (Some(a), Some(b)) = (self.server_fds_start, self.server_fds_end) {
            if b > a + self.fd_tolerance {
                f.push(format!(
                    "the server holds {b} descriptors at the end, {} more than the {a} at the start",
                    b - a
                ));
            }
        }
        if let (Some(a), Some(b)) = (self.server_rss_start_kb, self.server_rss_end_kb) {
            let tol = Self::rss_tolerance_kb(a, self.rss_tolerance_pct, self.rss_tolerance_mib);
            self.server_rss_tolerance_kb = Some(tol);
            if b > a + tol {
                f.push(format!(
                    "server RSS grew from {:.1} MiB to {:.1} MiB, more than the {:.1} MiB allowed",
                    a as f64 / 1024.0,
                    b as f64 / 1024.0,
                    tol as f64 / 1024.0
                ));
            }
        }
        if let Some(g) = self.metrics_end {
            if let Some(c) = g.connections.filter(|&c| c != self.connected) {
                f.push(format!(
                    "/metrics shows {c} connections at the end, not the {} stable ones",
                    self.connected
                ));
            }
            if let Some(r) = g.rooms.filter(|&r| r != self.metrics_rooms_expected) {
                f.push(format!(
                    "/metrics shows {r} rooms at the end, not {}",
                    self.metrics_rooms_expected
                ));
            }
        }
    }

    /// Checks skipped, churn below the asked rate, and the strain on the machine.
    fn warnings_of_run(&self) -> Vec<String> {
        let ch = &self.churn;
        let mut w = Vec::new();
        if self.server_pids.is_empty() {
            w.push("no --server-pid: the RSS and descriptor checks were skipped".to_string());
        } else if self.server_fds_start.is_none() {
            w.push("cannot read the server's /proc/PID/fd (another user?)".into());
        }
        if self.churners > 0 && ch.starved > 0 {
            w.push(format!(
                "{} churn connects skipped with every churner busy: {:.1}/s instead of {}/s \
                 (more --churners, or shorter stays)",
                ch.starved, ch.connects_per_sec, self.churn_rate
            ));
        }
        let strain = Strain {
            span: Span::Run,
            span_s: self.window_s,
            harness_cpu_util: self.harness_cpu_util,
            harness_cpu_wait_s: self.harness_cpu_wait_s,
            server_cpu_wait_s: self.server_cpu_wait_s,
            send_lag_us: self.send_lag_us,
        };
        w.extend(strain.warnings(&self.anomalies));
        w
    }

    pub fn exit_code(&self) -> i32 {
        exit_code(self.ok)
    }

    pub fn to_json_line(&self) -> String {
        json_line(self)
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut t = Table::new(30);
        self.run_rows(&mut t);
        self.churn_rows(&mut t);
        self.message_rows(&mut t);
        self.server_rows(&mut t);
        self.problem_rows(&mut t);
        t.finish(&self.warnings, &self.failures, self.ok)
    }

    /// What ran against what, and the stable clients.
    fn run_rows(&self, t: &mut Table) {
        t.row("run", format!("soak against {}", self.url));
        if self.nodes > 1 {
            t.row(
                "nodes",
                format!(
                    "{} (stable member m of each room on node m % {}, churners at random; \
                     /metrics summed, {} rooms expected)",
                    self.nodes, self.nodes, self.metrics_rooms_expected
                ),
            );
        }
        t.row(
            "duration",
            format!("{:.1} s (asked {} s)", self.window_s, trim(self.duration_s)),
        );
        t.row(
            "stable clients / rooms",
            format!(
                "{} / {}, {} msg/s each, {} bytes",
                self.stable_clients,
                self.rooms,
                trim(self.rate_per_sender),
                self.payload_bytes
            ),
        );
        t.row(
            "stable connected",
            format!(
                "{} ({} failed) in {:.2} s",
                self.connected, self.connect_failures, self.connect_time_s
            ),
        );
        t.tally("  connect error", &self.connect_errors);
    }

    /// The churn connections: how many, and how they left.
    fn churn_rows(&self, t: &mut Table) {
        let ch = &self.churn;
        t.row(
            "churners",
            format!(
                "{} slots, asked {}/s: {} connections opened ({:.1}/s), {} failed, max {} open at once",
                self.churners,
                trim(self.churn_rate),
                ch.connects,
                ch.connects_per_sec,
                ch.connect_failures,
                ch.max_open
            ),
        );
        t.row(
            "churn leaves",
            format!(
                "clean {} ({} answered), FIN {}, RST {}, half frame {}",
                ch.leaves_clean,
                ch.clean_closes_answered,
                ch.leaves_fin,
                ch.leaves_rst,
                ch.leaves_half_frame
            ),
        );
        t.tally("  churn connect error", &ch.connect_errors);
        t.tally("  churn close problem", &ch.close_problems);
    }

    /// Stable and churner messages: sent, expected, delivered, lost; latency.
    fn message_rows(&self, t: &mut Table) {
        let k = &self.churn.counts;
        t.row(
            "stable messages",
            format!(
                "sent {}, expected {}, delivered {}, lost {}",
                self.sent, self.expected_deliveries, self.delivered, self.lost
            ),
        );
        t.row(
            "churner messages",
            format!(
                "sent {}, accepted {} (echoed {}, seen only {}), unaccepted {}",
                k.sent, k.accepted, k.echoed, k.accepted_unechoed, k.unaccepted
            ),
        );
        t.row(
            "  to stable members",
            format!(
                "expected {}, delivered {}, lost {}, late {}",
                k.expected, k.delivered, k.lost, k.late
            ),
        );
        t.row(
            "delivered to churners",
            format!("{} (checked, not counted)", k.received_by_churners),
        );
        t.row(
            "delivered per second",
            format!(
                "{:.0} (stable messages to stable members)",
                self.delivered_per_sec
            ),
        );
        t.row("latency", self.latency_us.percentiles());
    }

    /// The server at the start, peak and end, and both sides' CPU.
    fn server_rows(&self, t: &mut Table) {
        let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => format!(" ({:+} kB)", b as i64 - a as i64),
            _ => String::new(),
        };
        t.row(
            "server rss",
            format!(
                "start {}, peak {}, end {}{} (allowed +{})",
                kib(self.server_rss_start_kb),
                kib(self.server_rss_peak_kb),
                kib(self.server_rss_end_kb),
                delta(self.server_rss_start_kb, self.server_rss_end_kb),
                kib(self.server_rss_tolerance_kb)
            ),
        );
        t.row(
            "server rss anon (heap)",
            format!(
                "start {}, end {}{}",
                kib(self.server_rss_anon_start_kb),
                kib(self.server_rss_anon_end_kb),
                delta(self.server_rss_anon_start_kb, self.server_rss_anon_end_kb)
            ),
        );
        let n = |v: Option<u64>| v.map_or("-".into(), |x| x.to_string());
        t.row(
            "server open descriptors",
            format!(
                "start {}, peak {}, end {}",
                n(self.server_fds_start),
                n(self.server_fds_peak),
                n(self.server_fds_end)
            ),
        );
        let g = |v: Option<Gauges>| {
            v.map_or("-".into(), |g| {
                format!(
                    "connections {}, rooms {}, tcp {}",
                    n(g.connections),
                    n(g.rooms),
                    n(g.tcp_connections)
                )
            })
        };
        t.row("/metrics at start", g(self.metrics_start));
        t.row("/metrics at end", g(self.metrics_end));
        t.row(
            "server cpu",
            self.server_cpu_s
                .map_or("-".into(), |s| format!("{s:.2} s")),
        );
        t.row(
            "harness cpu",
            format!(
                "{:.2} s = {:.0}% of a core, rss {}",
                self.harness_cpu_s,
                self.harness_cpu_util * 100.0,
                kb(self.harness_rss_kb)
            ),
        );
    }

    /// Errors, wrong deliveries and closes, the ones that happened.
    fn problem_rows(&self, t: &mut Table) {
        let all = self.all_anomalies();
        let ch = &self.churn;
        let k = &ch.counts;
        t.nonzero(&[
            ("server errors", self.errors),
            ("out of order / duplicate", all.out_of_order),
            ("misrouted", all.misrouted),
            ("phantom", k.phantom),
            ("unexpected", all.unexpected),
            ("stable disconnects", self.stable_disconnects),
            ("churn closed by the server", ch.unexpected_closes),
        ]);
        t.tally("  stable closed", &self.stable_disconnect_reasons);
        if let Some(e) = &self.first_error {
            t.row("first error", e.clone());
        }
    }
}

/// Exact kB: soak deltas are often a fraction of a MiB.
fn kib(v: Option<u64>) -> String {
    v.map_or("-".into(), |k| format!("{k} kB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> SoakReport {
        SoakReport {
            stable_clients: 4,
            rooms: 2,
            metrics_rooms_expected: 2,
            connected: 4,
            churners: 2,
            sent: 10,
            expected_deliveries: 20,
            delivered: 20,
            churn: ChurnReport {
                connects: 5,
                ..ChurnReport::default()
            },
            server_pids: vec![1],
            server_fds_start: Some(20),
            server_fds_end: Some(20),
            server_rss_start_kb: Some(10_000),
            server_rss_end_kb: Some(10_000),
            metrics_end: Some(Gauges {
                connections: Some(4),
                rooms: Some(2),
                tcp_connections: Some(5),
            }),
            rss_tolerance_pct: 25.0,
            rss_tolerance_mib: 1.0,
            ..SoakReport::default()
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let mut r = clean();
        r.finish();
        assert!(r.ok, "{:?}", r.failures);
        assert_eq!(
            r.server_rss_tolerance_kb,
            Some(2500),
            "25% of 10,000 kB beats 1 MiB"
        );
    }

    #[test]
    fn rss_tolerance_is_the_larger_of_percent_and_mib() {
        assert_eq!(SoakReport::rss_tolerance_kb(10_000, 25.0, 4.0), 4096);
        assert_eq!(SoakReport::rss_tolerance_kb(100_000, 25.0, 4.0), 25_000);
        let mut r = clean();
        r.server_rss_end_kb = Some(10_000 + 2500);
        r.finish();
        assert!(r.ok);
        let mut r = clean();
        r.server_rss_end_kb = Some(10_000 + 2501);
        r.finish();
        assert!(
            r.failures.iter().any(|f| f.contains("RSS grew")),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn leaks_and_losses_fail_the_run() {
        type Spoil = fn(&mut SoakReport);
        let cases: Vec<(Spoil, &str)> = vec![
            (|r| r.server_fds_end = Some(21), "descriptors"),
            (|r| r.lost = 1, "stable members' messages were lost"),
            (|r| r.churn.counts.lost = 1, "churner messages"),
            (|r| r.churn.counts.late = 1, "after their sender left"),
            (|r| r.churn.counts.phantom = 1, "never sent whole"),
            (|r| r.churn.counts.misrouted = 1, "another room"),
            (|r| r.churn.unexpected_closes = 1, "churn connections"),
            (|r| r.churn.clean_close_unanswered = 1, "not answered"),
            (|r| r.stable_disconnects = 1, "stable connections"),
            (
                |r| r.metrics_end.as_mut().unwrap().connections = Some(5),
                "connections at the end",
            ),
            (
                |r| r.metrics_end.as_mut().unwrap().rooms = Some(3),
                "rooms at the end",
            ),
            (|r| r.churn.connects = 0, "no churn connection"),
        ];
        for (spoil, expect) in cases {
            let mut r = clean();
            spoil(&mut r);
            r.finish();
            assert!(!r.ok && r.exit_code() == 1, "{expect}");
            assert!(
                r.failures.iter().any(|f| f.contains(expect)),
                "{expect}: {:?}",
                r.failures
            );
        }
        let mut r = clean();
        r.fd_tolerance = 1;
        r.server_fds_end = Some(21);
        r.finish();
        assert!(r.ok);
    }

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new(3).unwrap();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    /// Two nodes, churn figures, readings that grew, and every failure and warning
    /// `finish` knows; the stable counters go through `fill_stable`.
    fn everything_wrong() -> SoakReport {
        let mut r = clean();
        r.url = "ws://a/,ws://b/".into();
        r.nodes = 2;
        r.duration_s = 10.0;
        r.window_s = 10.25;
        r.rate_per_sender = 2.5;
        r.payload_bytes = 64;
        r.churn_rate = 3.125;
        r.connect_failures = 1;
        r.connect_errors = BTreeMap::from([("connection refused".to_string(), 1)]);
        r.connect_time_s = 0.5;
        r.delivered_per_sec = 12.75;
        r.fill_stable(
            &Counts {
                sent: 10,
                expected: 30,
                delivered: 28,
                out_of_order: 1,
                misrouted: 2,
                foreign: 3,
                stale: 4,
                errors: 5,
                first_error: Some(r#"{"error": "nope"}"#.into()),
                unrecognized: 6,
                binary: 7,
                skipped_backpressure: 8,
                ..Counts::default()
            },
            &hist(&[1000, 2000, 3000, 40_000]),
            &hist(&[20_000, 30_000]),
        );
        r.churn = ChurnReport {
            connects_attempted: 9,
            connects: 0,
            connects_per_sec: 0.75,
            connect_failures: 2,
            connect_errors: BTreeMap::from([("timed out".to_string(), 2)]),
            starved: 3,
            max_open: 2,
            leaves_clean: 1,
            leaves_fin: 2,
            leaves_rst: 3,
            leaves_half_frame: 4,
            clean_closes_answered: 5,
            clean_close_unanswered: 6,
            unexpected_closes: 7,
            close_problems: BTreeMap::from([("reset".to_string(), 7)]),
            counts: ChurnCounts {
                sent: 11,
                echoed: 12,
                accepted: 13,
                accepted_unechoed: 14,
                unaccepted: 15,
                expected: 16,
                delivered: 17,
                lost: 18,
                late: 19,
                phantom: 20,
                received_by_churners: 21,
                misrouted: 22,
                out_of_order: 23,
            },
        };
        r.stable_disconnects = 2;
        r.stable_disconnect_reasons = BTreeMap::from([("eof".to_string(), 2)]);
        r.server_fds_start = None;
        r.server_fds_peak = Some(30);
        r.server_fds_end = Some(25);
        r.server_rss_peak_kb = Some(15_000);
        r.server_rss_end_kb = Some(13_000);
        r.server_rss_anon_start_kb = Some(4000);
        r.server_rss_anon_end_kb = Some(3500);
        r.server_cpu_s = Some(1.234);
        r.server_cpu_wait_s = Some(0.6);
        r.metrics_start = Some(Gauges::default());
        r.metrics_end = Some(Gauges {
            connections: Some(3),
            rooms: Some(5),
            tcp_connections: None,
        });
        r.harness_cpu_s = 9.5;
        r.harness_cpu_util = 0.925;
        r.harness_cpu_wait_s = Some(0.25);
        r.harness_rss_kb = Some(5000);
        r.interrupted = true;
        r.warnings = vec!["an earlier warning".into()];
        r.finish();
        r
    }

    /// Descriptors growing (from a known start), more deliveries than expected and no
    /// churn connection fail the run too.
    fn descriptors_grew() -> SoakReport {
        let mut r = clean();
        r.server_fds_end = Some(22);
        r.churn.connects = 0;
        r.fill_stable(
            &Counts {
                sent: 10,
                expected: 20,
                delivered: 23,
                ..Counts::default()
            },
            &hist(&[]),
            &hist(&[]),
        );
        r.finish();
        r
    }

    fn passed() -> SoakReport {
        let mut r = clean();
        r.finish();
        r
    }

    fn unwatched() -> SoakReport {
        let mut r = SoakReport::default();
        r.finish();
        r
    }

    /// Each case's exit status, table and (where given) JSON line, byte for byte.
    #[test]
    fn tables_and_json_lines_are_pinned() {
        let cases = [
            (everything_wrong(), 1, "soak_everything_wrong", true),
            (descriptors_grew(), 1, "soak_descriptors_grew", false),
            (passed(), 0, "soak_passed", true),
            (unwatched(), 1, "soak_unwatched", false),
        ];
        for (r, exit, name, json) in cases {
            assert_eq!(r.exit_code(), exit, "{name}");
            crate::report_common::golden(&format!("{name}.txt"), &r.to_table());
            if json {
                crate::report_common::golden(&format!("{name}.json"), &r.to_json_line());
            }
        }
    }
}
