//! What an attack scenario reports beside the usual figures: each phase's loss and
//! latency (without and with the flooder), the flooder's own traffic and how it ended,
//! and the burst's size and pace.

use crate::accounting::GuestCounts;
use crate::engine::StepResult;
use crate::report_common::{ms, Latency, Table};
use serde::Serialize;

/// One measured phase of an attack run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseReport {
    /// "burst", "without attacker" or "with attacker".
    pub name: String,
    pub sent: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    pub latency_us: Latency,
    pub delivered_per_sec: f64,
    /// `{"error": ...}` frames to members.
    pub errors: u64,
    /// Members' connections closed in this phase.
    pub disconnects: u64,
}

impl PhaseReport {
    pub fn from_step(name: &str, r: &StepResult) -> PhaseReport {
        PhaseReport {
            name: name.into(),
            sent: r.counts.sent,
            expected_deliveries: r.counts.expected,
            delivered: r.counts.delivered,
            lost: r.counts.lost(),
            latency_us: r.latency,
            delivered_per_sec: r.delivered_per_sec(),
            errors: r.counts.errors,
            disconnects: r.disconnects,
        }
    }
}

/// The flooding client.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttackerReport {
    /// "ping", "chat" or "echo".
    pub mode: String,
    /// The path it connected to.
    pub path: String,
    /// In the measured room (flooder) or outside it (flood).
    pub in_room: bool,
    pub connected: bool,
    /// Why it could not connect.
    pub connect_error: Option<String>,
    pub frames_sent: u64,
    /// Wire bytes written (headers and masks included).
    pub bytes_sent: u64,
    /// How long it flooded (until the phase ended or the server closed it), seconds.
    pub flood_s: f64,
    pub frames_per_sec: f64,
    /// The server ended its connection during the phase.
    pub closed: bool,
    /// How: `server closed with 1008: ...`, a reset, ...
    pub close_reason: Option<String>,
    /// Seconds from the first flood frame to the close.
    pub closed_after_s: Option<f64>,
    /// What it received: echoes, errors (a rate limiter's), deliveries of its messages
    /// to the members.
    #[serde(flatten)]
    pub received: GuestCounts,
}

/// The burst's size and pace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BurstReport {
    pub senders: u64,
    pub messages_per_sender: u32,
    /// Messages written in all (all of them unless a sender was closed or time ran out).
    pub sent: u64,
    /// From the first write until every message was handed to the socket, seconds.
    pub write_s: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AttackReport {
    /// "burst", "flood" or "flooder".
    pub kind: String,
    pub phases: Vec<PhaseReport>,
    pub attacker: Option<AttackerReport>,
    pub burst: Option<BurstReport>,
}

impl AttackReport {
    /// What failed beyond the figures of the last phase (which the report shows as its
    /// own): an earlier phase's loss or errors, a burst not written whole, a flooder that
    /// never connected. The flooder's errors and close are expected and fail nothing.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if let Some((_, earlier)) = self.phases.split_last() {
            for p in earlier {
                if p.lost > 0 || p.errors > 0 || p.disconnects > 0 {
                    f.push(format!(
                        "{}: {} of {} deliveries lost, {} errors, {} members closed",
                        p.name, p.lost, p.expected_deliveries, p.errors, p.disconnects
                    ));
                }
            }
        }
        if let Some(b) = &self.burst {
            let asked = b.senders * u64::from(b.messages_per_sender);
            if b.sent < asked {
                f.push(format!(
                    "the burst was not written whole: {} of {asked} messages (a sender closed, \
                     or the relay stopped reading until --duration ran out)",
                    b.sent
                ));
            }
        }
        if let Some(a) = &self.attacker {
            if !a.connected {
                f.push(format!(
                    "the attacker could not connect ({}): nothing was attacked",
                    a.connect_error.as_deref().unwrap_or("no reason")
                ));
            }
        }
        f
    }

    /// The table rows: phases side by side, then the flooder or the burst.
    pub fn rows(&self, t: &mut Table) {
        t.row("attack", self.kind.clone());
        for p in &self.phases {
            t.row(
                &format!("  {}", p.name),
                format!(
                    "delivered {}/{} lost {}, p50 {} p99 {} max {}, {} errors, {} closed",
                    p.delivered,
                    p.expected_deliveries,
                    p.lost,
                    ms(p.latency_us.p50),
                    ms(p.latency_us.p99),
                    ms(p.latency_us.max),
                    p.errors,
                    p.disconnects
                ),
            );
        }
        if let Some(b) = &self.burst {
            t.row(
                "burst",
                format!(
                    "{} senders x {} messages: {} written in {}",
                    b.senders,
                    b.messages_per_sender,
                    b.sent,
                    b.write_s.map_or("-".into(), |s| format!("{s:.2} s"))
                ),
            );
        }
        if let Some(a) = &self.attacker {
            attacker_rows(t, a);
        }
    }
}

fn attacker_rows(t: &mut Table, a: &AttackerReport) {
    let place = if a.in_room {
        "in the room"
    } else {
        "outside the room"
    };
    t.row(
        "attacker",
        format!(
            "{} flood on {} ({place}): {} frames, {:.1} MB in {:.2} s = {:.0}/s",
            a.mode,
            a.path,
            a.frames_sent,
            a.bytes_sent as f64 / 1e6,
            a.flood_s,
            a.frames_per_sec
        ),
    );
    let end = match (&a.close_reason, a.closed_after_s) {
        (Some(r), Some(s)) => format!("closed after {s:.2} s: {r}"),
        (Some(r), None) => format!("closed: {r}"),
        _ if a.connected => "not closed".into(),
        _ => format!(
            "never connected: {}",
            a.connect_error.as_deref().unwrap_or("-")
        ),
    };
    t.row("  attacker end", end);
    let g = &a.received;
    t.row(
        "  attacker received",
        format!(
            "{} deliveries ({} own echoes), {} errors; members got {} of its messages",
            g.received, g.echoed, g.errors, g.to_members
        ),
    );
    if let Some(e) = &g.first_error {
        t.row("  attacker first error", e.clone());
    }
}
