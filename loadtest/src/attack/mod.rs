//! The attack scenarios (issues 13 and 14): a relay under a burst, a flood and a flooding
//! member must keep delivering to everyone else.
//!
//! * **burst**: the first `--senders-per-room` members of one room each write
//!   `--burst-messages` chat messages (4 KB by default) as fast as their sockets take
//!   them; every member reads as fast as it can. The verdict is the readers' loss (0 on a
//!   correct relay), with p99 and every close a reader got listed by code and reason.
//! * **flood**: a normal room is measured twice: without, then with an outsider flooding
//!   (`--flood-mode ping`: empty pings, `chat`: chat messages in a room of its own,
//!   `echo`: empty messages on `--echo-path`). The members' loss must be 0 both times;
//!   whether and how the flooder was closed is reported.
//! * **flooder**: as flood, but the flooder is a member of the measured room sending chat
//!   messages. The relay may answer it with `{"error": "rate limited ..."}` and close it
//!   with 1008: expected for the flooder, and failing nothing; any error or close for a
//!   normal member fails the run.
//!
//! The flooder is a *guest* of the engine (a client past the layout's): it is no room's
//! counted member, and the accounting keeps its traffic apart ([`GuestCounts`]).
//!
//! May import: `engine`, `accounting`, `report`, `scenario`, `proc`, `clock`, `client`,
//! `wsframe`; nothing imports this folder but `runner`, `scenario` (the plan) and
//! `report` (the report).
//!
//! [`GuestCounts`]: crate::accounting::GuestCounts

pub mod drivers;
pub mod plan;
pub mod report;

use crate::client::Phase;
use crate::clock::{now_us, secs_to_us};
use crate::engine::{Engine, StepSpec};
use crate::proc::ServerProcs;
use crate::report::Report;
use crate::scenario::Plan;
use drivers::{BurstDriver, FloodDriver};
use plan::{AttackKind, AttackPlan, FloodMode};
use report::{AttackReport, AttackerReport, BurstReport, PhaseReport};

/// Runs `attack` on the connected `engine`, filling `report`.
pub fn run(
    engine: &mut Engine,
    plan: &Plan,
    attack: &AttackPlan,
    server: &ServerProcs,
    report: &mut Report,
) {
    report.attack = Some(match attack.kind {
        AttackKind::Burst => burst(engine, plan, attack, server, report),
        AttackKind::Flood | AttackKind::Flooder => flood(engine, plan, attack, server, report),
    });
}

fn spec(plan: &Plan, rate: f64) -> StepSpec {
    StepSpec {
        rate,
        payload: plan.payload,
        warmup_us: secs_to_us(plan.warmup_s),
        duration_us: secs_to_us(plan.duration_s),
        drain_us: secs_to_us(plan.drain_s),
    }
}

/// One step with no schedule: the burst senders write everything, the window closes
/// when they are done (at the latest after `--duration`), then the readers drain.
fn burst(
    engine: &mut Engine,
    plan: &Plan,
    attack: &AttackPlan,
    server: &ServerProcs,
    report: &mut Report,
) -> AttackReport {
    let senders: Vec<usize> = (0..plan.layout.clients)
        .filter(|&c| plan.layout.sender_slot(c).is_some())
        .filter(|&c| engine.client(c).phase == Phase::Open)
        .collect();
    let mut d = BurstDriver::new(senders, attack.burst_messages, plan.payload);
    if plan.progress {
        eprintln!(
            "loadtest: burst: {} senders x {} messages of {} bytes",
            d.senders(),
            attack.burst_messages,
            plan.payload
        );
    }
    let mut r = engine.run_step_with(&spec(plan, 0.0), server, &mut d);
    r.senders = d.senders() as u64;
    report.fill_step(&r);
    AttackReport {
        kind: "burst".into(),
        phases: vec![PhaseReport::from_step("burst", &r)],
        attacker: None,
        burst: Some(BurstReport {
            senders: d.senders() as u64,
            messages_per_sender: attack.burst_messages,
            sent: d.sent,
            write_s: d
                .first_at
                .zip(d.done_at)
                .map(|(a, b)| b.saturating_sub(a) as f64 / 1e6),
        }),
    }
}

/// The measured room without the flooder, then with it; the second phase is the
/// report's main figures.
fn flood(
    engine: &mut Engine,
    plan: &Plan,
    attack: &AttackPlan,
    server: &ServerProcs,
    report: &mut Report,
) -> AttackReport {
    let step = spec(plan, plan.rate);
    if plan.progress {
        eprintln!("loadtest: phase 1: without the attacker");
    }
    let quiet = engine.run_step(&step, server);
    engine.settle(300_000, 5_000_000);
    let (id, mut attacker) = connect_attacker(engine, plan, attack);
    if plan.progress {
        eprintln!(
            "loadtest: phase 2: with the attacker ({} flood)",
            attack.flood_mode.name()
        );
    }
    let mut d = FloodDriver::new(id, attack.flood_mode, plan.payload);
    let loud = engine.run_step_with(&step, server, &mut d);
    report.fill_step(&loud);
    let end = now_us();
    let flood_until = d.ended_at.unwrap_or(end);
    attacker.frames_sent = d.frames;
    attacker.bytes_sent = d.bytes;
    attacker.flood_s = d
        .started_at
        .map_or(0.0, |s| flood_until.saturating_sub(s) as f64 / 1e6);
    attacker.frames_per_sec = if attacker.flood_s > 0.0 {
        d.frames as f64 / attacker.flood_s
    } else {
        0.0
    };
    attacker.close_reason = engine.guest_ends.get(&id).cloned();
    attacker.closed = attacker.connected && attacker.close_reason.is_some();
    attacker.closed_after_s = d
        .started_at
        .zip(d.ended_at)
        .map(|(s, e)| e.saturating_sub(s) as f64 / 1e6);
    attacker.received = loud.counts.guest.clone();
    if engine.client(id).phase == Phase::Open {
        engine.hang_up(id, false);
    }
    AttackReport {
        kind: if attack.kind == AttackKind::Flooder {
            "flooder"
        } else {
            "flood"
        }
        .into(),
        phases: vec![
            PhaseReport::from_step("without attacker", &quiet),
            PhaseReport::from_step("with attacker", &loud),
        ],
        attacker: Some(attacker),
        burst: None,
    }
}

/// Adds the flooder as a guest (in the measured room 0 for the flooder, a room of its
/// own or the echo path for the flood) and connects it; its id and what is known so far.
fn connect_attacker(
    engine: &mut Engine,
    plan: &Plan,
    attack: &AttackPlan,
) -> (usize, AttackerReport) {
    let sender = plan.layout.clients as u32;
    engine.acct.set_guests(sender..sender + 1);
    let in_room = attack.kind == AttackKind::Flooder;
    let room = if in_room { 0 } else { plan.layout.rooms as u32 };
    let path = (attack.flood_mode == FloodMode::Echo).then(|| attack.echo_path.clone());
    let shown_path = path
        .clone()
        .unwrap_or_else(|| plan.targets[0].path_for_room(room as usize));
    let id = engine.add_guest(room, sender, path);
    // Only the guest is not open (and any member an earlier phase lost, which comes back).
    let conn = engine.connect(plan.connect.concurrency, plan.connect.timeout_us());
    let connected = engine.client(id).phase == Phase::Open;
    let report = AttackerReport {
        mode: attack.flood_mode.name().into(),
        path: shown_path,
        in_room,
        connected,
        connect_error: (!connected)
            .then(|| conn.reasons.keys().next().cloned())
            .flatten(),
        ..AttackerReport::default()
    };
    (id, report)
}
