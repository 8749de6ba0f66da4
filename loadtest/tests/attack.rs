//! The attack scenarios against the in-process chat server: a burst into a room of
//! readers, a flood from outside the room, and a flooding member the server rate-limits
//! and closes (expected, passing) while a fault that reaches a normal member fails.

mod common;

use clap::Parser;
use common::{assert_fails_with, Faults};
use loadtest::cli::Cli;
use loadtest::report::Report;
use loadtest::runner;

fn run(url: &str, args: &[&str]) -> Report {
    let mut argv = vec!["loadtest", url, "--quiet"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(&argv).expect("valid arguments");
    runner::execute(&cli.run.plan(false, false).expect("valid plan")).expect("run starts")
}

const BURST: &[&str] = &[
    "--scenario",
    "burst",
    "--clients",
    "8",
    "--senders-per-room",
    "2",
    "--burst-messages",
    "200",
    "--payload",
    "1024",
    "--duration",
    "10",
];

#[test]
fn a_burst_reaches_every_reader() {
    let server = common::start(Faults::default());
    let r = run(&server.url, BURST);
    assert!(r.ok, "{}", r.to_table());
    let a = r.attack.as_ref().unwrap();
    let b = a.burst.as_ref().unwrap();
    assert_eq!((b.senders, b.sent), (2, 400));
    assert_eq!(
        (r.expected_deliveries, r.delivered, r.lost),
        (3200, 3200, 0)
    );
    assert!(r.latency_us.p99 > 0);
}

#[test]
fn a_burst_that_loses_one_delivery_fails() {
    let server = common::start(Faults::drop_nth_delivery(1000));
    let mut args = BURST.to_vec();
    args.extend_from_slice(&["--drain", "1"]);
    let r = run(&server.url, &args);
    assert!(!r.ok);
    assert_eq!(r.lost, 1);
    assert_fails_with(&r.failures, "lost");
}

const FLOOD: &[&str] = &[
    "--clients",
    "10",
    "--rate",
    "5",
    "--warmup",
    "0.2",
    "--duration",
    "0.6",
    "--drain",
    "1",
];

#[test]
fn a_ping_flood_from_outside_is_measured_in_two_phases() {
    let server = common::start(Faults::default());
    let mut args = vec!["--scenario", "flood"];
    args.extend_from_slice(FLOOD);
    let r = run(&server.url, &args);
    assert!(r.ok, "{}", r.to_table());
    let a = r.attack.as_ref().unwrap();
    let names: Vec<&str> = a.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["without attacker", "with attacker"]);
    assert!(a.phases.iter().all(|p| p.sent > 0 && p.lost == 0));
    let at = a.attacker.as_ref().unwrap();
    assert!(
        at.connected && !at.in_room && at.frames_sent > 100,
        "{at:?}"
    );
    assert_eq!(at.path, "/ws/chat/r1/");
}

#[test]
fn a_rate_limited_flooder_is_expected_to_be_closed() {
    let server = common::start(Faults::rate_limit(20));
    let mut args = vec!["--scenario", "flooder"];
    args.extend_from_slice(FLOOD);
    let r = run(&server.url, &args);
    assert!(r.ok, "{}", r.to_table());
    let at = r.attack.as_ref().unwrap().attacker.as_ref().unwrap();
    assert!(at.in_room && at.closed, "{at:?}");
    assert_eq!(
        at.close_reason.as_deref(),
        Some("server closed with 1008: rate limited")
    );
    assert!(
        at.received.errors >= 20 && at.received.to_members > 0,
        "{at:?}"
    );
    assert!(r.table_mentions("closed after"), "{}", r.to_table());
}

#[test]
fn an_error_to_a_normal_member_fails_a_flooder_run() {
    // The first chat message the node sees is a member's (the flooder starts in phase 2).
    let server = common::start(Faults {
        rate_limit: Some(20),
        error_nth_message: Some(1),
        ..Faults::default()
    });
    let mut args = vec!["--scenario", "flooder"];
    args.extend_from_slice(FLOOD);
    let r = run(&server.url, &args);
    assert!(!r.ok);
    assert_fails_with(&r.failures, "without attacker");
}

trait TableMentions {
    fn table_mentions(&self, text: &str) -> bool;
}

impl TableMentions for Report {
    fn table_mentions(&self, text: &str) -> bool {
        self.to_table().contains(text)
    }
}
