//! What the load report ([`crate::report`]) and the soak report ([`crate::soak::report`])
//! share: latency percentiles, the anomaly counters, the failures and warnings both word
//! alike, the human table's layout and value formats, the JSON line and the exit status.
//!
//! Scripts and `compare` read both outputs, so the two reports must keep saying the same
//! thing the same way; one copy here keeps them from drifting apart.

use crate::accounting::Counts;
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

    /// Every percentile, in milliseconds, as the tables' `latency` row shows them.
    pub fn percentiles(&self) -> String {
        format!(
            "p50 {} p90 {} p99 {} p99.9 {} max {}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.p999),
            ms(self.max)
        )
    }
}

/// Deliveries and frames that should not happen. Both reports flatten these into their
/// JSON line, so the field names and their order are part of the output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Anomalies {
    pub out_of_order: u64,
    pub misrouted: u64,
    pub foreign: u64,
    pub unexpected: u64,
    pub unrecognized: u64,
    pub binary: u64,
    pub stale: u64,
    pub skipped_backpressure: u64,
}

impl From<&Counts> for Anomalies {
    fn from(c: &Counts) -> Anomalies {
        Anomalies {
            out_of_order: c.out_of_order,
            misrouted: c.misrouted,
            foreign: c.foreign,
            unexpected: c.unexpected(),
            unrecognized: c.unrecognized,
            binary: c.binary,
            stale: c.stale,
            skipped_backpressure: c.skipped_backpressure,
        }
    }
}

impl Anomalies {
    /// The failures for server errors and wrong deliveries, in the order both reports
    /// list them.
    pub fn failures(&self, errors: u64) -> Vec<String> {
        [
            any(errors, |n| {
                format!("the server answered {n} messages with an error")
            }),
            any(self.out_of_order, |n| {
                format!("{n} deliveries were duplicated or out of order")
            }),
            any(self.misrouted, |n| {
                format!("{n} deliveries reached a client of another room")
            }),
            any(self.foreign, |n| {
                format!("{n} deliveries named a sender that does not exist")
            }),
            any(self.unexpected, |n| {
                format!("{n} more deliveries than expected")
            }),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// `text(n)` unless `n` is zero: a count of nothing is no news.
fn any(n: u64, text: impl FnOnce(u64) -> String) -> Option<String> {
    (n > 0).then(|| text(n))
}

/// What a report calls the time its figures cover. The load modes measure a window
/// inside the run; soak measures the whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Window,
    Run,
}

/// The figures that say whether the machine, rather than the server, set the results.
pub struct Strain {
    pub span: Span,
    pub span_s: f64,
    /// Fraction of one core.
    pub harness_cpu_util: f64,
    pub harness_cpu_wait_s: Option<f64>,
    pub server_cpu_wait_s: Option<f64>,
    pub send_lag_us: Latency,
}

impl Strain {
    /// The warnings both reports give, in the order both list them: a busy harness or
    /// machine, a harness behind its schedule, then the anomalies that warn rather than
    /// fail.
    pub fn warnings(&self, a: &Anomalies) -> Vec<String> {
        let mut w = Vec::new();
        if self.harness_cpu_util > HARNESS_BUSY {
            let within = match self.span {
                Span::Window => " in the window",
                Span::Run => "",
            };
            w.push(format!(
                "the harness used {:.0}% of a core{within}: it may have been the bottleneck",
                self.harness_cpu_util * 100.0
            ));
        }
        let span = match self.span {
            Span::Window => "window",
            Span::Run => "run",
        };
        for (who, wait) in [
            ("harness", self.harness_cpu_wait_s),
            ("server", self.server_cpu_wait_s),
        ] {
            if let Some(x) = wait.filter(|&x| self.span_s > 0.0 && x > 0.05 * self.span_s) {
                w.push(format!(
                    "the {who} waited {x:.2} s of the {:.1} s {span} for a CPU: the machine is \
                     busy, latencies include that wait",
                    self.span_s
                ));
            }
        }
        if self.send_lag_us.p99 > 10_000 {
            w.push(format!(
                "sends left up to {:.1} ms late (p99): the harness could not keep its schedule",
                self.send_lag_us.p99 as f64 / 1000.0
            ));
        }
        w.extend(any(a.skipped_backpressure, |n| {
            format!("{n} sends skipped: the server stopped reading from some clients")
        }));
        w.extend(any(a.unrecognized, |n| {
            format!("{n} text frames were not chat messages of this run")
        }));
        w
    }
}

/// The human table: a key column `key_width` wide, then the value.
pub struct Table {
    text: String,
    key_width: usize,
}

impl Table {
    pub fn new(key_width: usize) -> Table {
        Table {
            text: String::new(),
            key_width,
        }
    }

    pub fn row(&mut self, key: &str, value: String) {
        let _ = writeln!(self.text, "  {key:<w$} {value}", w = self.key_width);
    }

    /// One row per reason: `N x why`.
    pub fn tally(&mut self, key: &str, reasons: &BTreeMap<String, u64>) {
        for (why, n) in reasons {
            self.row(key, format!("{n} x {why}"));
        }
    }

    /// The counters that are not zero, one row each; zeros would only be noise.
    pub fn nonzero(&mut self, counters: &[(&str, u64)]) {
        for &(key, v) in counters {
            if v > 0 {
                self.row(key, v.to_string());
            }
        }
    }

    /// Ends the table with the warnings, the failures and the verdict.
    pub fn finish(mut self, warnings: &[String], failures: &[String], ok: bool) -> String {
        for w in warnings {
            let _ = writeln!(self.text, "WARNING: {w}");
        }
        for f in failures {
            let _ = writeln!(self.text, "FAILED: {f}");
        }
        let verdict = if ok { "RESULT: ok" } else { "RESULT: FAILED" };
        let _ = writeln!(self.text, "{verdict}");
        self.text
    }
}

/// The process exit status for a verdict.
pub fn exit_code(ok: bool) -> i32 {
    if ok {
        0
    } else {
        1
    }
}

/// `report` as one JSON line; a report that cannot be serialised still gives one.
pub fn json_line<T: Serialize>(report: &T) -> String {
    serde_json::to_string(report)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise report: {e}\"}}"))
}

/// Microseconds shown as milliseconds.
pub fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// kB shown as MiB.
pub fn kb(v: Option<u64>) -> String {
    v.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// A rate or a length without trailing zeros: `12.5`, `20`.
pub fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Compares `actual` with the golden file `tests/golden/NAME` byte for byte; with
/// `UPDATE_GOLDEN=1` in the environment, writes it instead (for a deliberate report
/// change: review the diff and say so in the commit).
#[cfg(test)]
pub fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("golden file written");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        want,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}
