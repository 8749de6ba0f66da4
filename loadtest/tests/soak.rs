//! The soak mode end to end against the in-process chat server: churners come and go
//! (every way of leaving), their messages are counted by the echo-or-seen rule, and a
//! delivery the server drops -- of a stable member's message or of a churner's -- fails
//! the run.

mod common;

use clap::Parser;
use common::{assert_fails_with, Faults, TargetedDrop};
use loadtest::cli::{Cli, Command};
use loadtest::soak::report::SoakReport;
use loadtest::soak::{self, SoakPlan};
use std::sync::atomic::Ordering;

/// Six stable clients in two rooms (three each) sending 10 msg/s, six churners starting
/// 20 connections a second for 2 s.
const SMALL: &[&str] = &[
    "--clients",
    "6",
    "--rooms",
    "2",
    "--rate",
    "10",
    "--churners",
    "6",
    "--churn-rate",
    "20",
    "--churn-stay-min",
    "0.05",
    "--churn-stay-max",
    "0.4",
    "--churn-messages",
    "3",
    "--duration",
    "2",
    "--drain",
    "1",
    "--settle",
    "0.2",
];

fn run(url: &str, extra: &[&str]) -> SoakReport {
    let mut argv = vec!["loadtest", "soak", url, "--quiet"];
    argv.extend_from_slice(SMALL);
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(&argv).expect("valid arguments");
    let Some(Command::Soak(args)) = cli.command else {
        panic!("not the soak subcommand");
    };
    let plan = SoakPlan::resolve(&args, false).expect("valid plan");
    soak::execute(&plan).expect("run starts")
}

#[test]
fn honest_server_under_churn_loses_nothing_and_churner_messages_count() {
    let server = common::start(Faults::default());
    let r = run(&server.url, &[]);
    assert!(r.ok, "{}", r.to_table());
    let ch = &r.churn;
    let k = &ch.counts;
    // About 40 churn connections, every way of leaving used, every clean close answered.
    assert!(ch.connects >= 25, "{}", r.to_table());
    assert_eq!(ch.connects, ch.connects_attempted);
    assert!(
        ch.leaves_clean > 0 && ch.leaves_fin > 0 && ch.leaves_rst > 0 && ch.leaves_half_frame > 0
    );
    assert_eq!(ch.clean_closes_answered, ch.leaves_clean);
    assert_eq!(
        ch.leaves_clean + ch.leaves_fin + ch.leaves_rst + ch.leaves_half_frame,
        ch.connects
    );
    // Churner messages: each accepted one is expected by the three stable members of its
    // room and reached all of them; this server echoes everything it reads, so nearly all
    // are accepted (only a message written just before a hang-up can miss its echo).
    assert!(k.sent >= ch.connects, "at least one message per connection");
    assert_eq!(k.accepted + k.unaccepted, k.sent);
    assert!(k.accepted > 0 && k.echoed <= k.accepted);
    assert_eq!(k.expected, 3 * k.accepted);
    assert_eq!(
        (k.delivered, k.lost, k.late, k.phantom),
        (k.expected, 0, 0, 0)
    );
    assert!(k.received_by_churners > 0);
    // Stable members' messages: to the three stable members of the room, churners aside.
    assert_eq!(r.expected_deliveries, 3 * r.sent);
    assert_eq!(
        (r.delivered, r.lost, r.lost_total),
        (r.expected_deliveries, 0, 0)
    );
    assert!(r.sent >= 100, "6 senders x 10/s x 2 s, got {}", r.sent);
    assert!(r.latency_us.p50 > 0);
    assert_eq!(r.stable_disconnects + ch.unexpected_closes, 0);
    // The test server has no /metrics: a warning, not a failure.
    assert!(r.metrics_end.is_none());
    assert!(r.warnings.iter().any(|w| w.contains("/metrics")));
}

#[test]
fn a_delivery_dropped_to_a_stable_member_fails_the_run() {
    // The 40th delivery of a stable member's message to a stable member (connections
    // 0..6 are the stable ones) goes missing.
    let server = common::start(Faults {
        drop_targeted: Some(TargetedDrop {
            nth: 40,
            senders: 0..6,
            receivers: 0..6,
        }),
        ..Faults::default()
    });
    let r = run(&server.url, &[]);
    assert_eq!(r.lost, 1, "{}", r.to_table());
    assert_eq!(r.delivered + 1, r.expected_deliveries);
    assert_eq!(r.churn.counts.lost, 0);
    assert_eq!(r.lost_total, 1);
    assert!(!r.ok);
    assert_eq!(r.exit_code(), 1);
    assert_fails_with(&r.failures, "stable members' messages were lost");
}

#[test]
fn a_churner_message_dropped_to_a_stable_member_is_lost() {
    // The 5th delivery of a churner's message to a stable member goes missing; the
    // message itself was accepted (its other receivers and its echo show it).
    let server = common::start(Faults {
        drop_targeted: Some(TargetedDrop {
            nth: 5,
            senders: 6..u64::MAX,
            receivers: 0..6,
        }),
        ..Faults::default()
    });
    let r = run(&server.url, &[]);
    let k = &r.churn.counts;
    assert_eq!(k.lost, 1, "{}", r.to_table());
    assert_eq!(k.delivered + 1, k.expected);
    assert_eq!(r.lost, 0);
    assert!(!r.ok);
    assert_fails_with(&r.failures, "churner messages");
}

#[test]
fn soak_over_two_nodes_sharing_rooms_loses_nothing() {
    let cluster = common::start_cluster(vec![Faults::default(), Faults::default()]);
    let r = run(&cluster.nodes[0].url, &[cluster.nodes[1].url.as_str()]);
    assert!(r.ok, "{}", r.to_table());
    assert_eq!(r.nodes, 2);
    // Stable members 0 and 2 of each room on node 0, member 1 on node 1; churners on
    // either at random.
    let accepted: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.accepted.load(Ordering::SeqCst))
        .collect();
    assert!(accepted[0] > 4 && accepted[1] > 2, "{accepted:?}");
    // Plus the /metrics reads at the start and the end (this server has none: the first
    // one fails, and the others are not tried).
    let conns = 6 + r.churn.connects_attempted;
    assert!(
        (conns..=conns + 4).contains(&(accepted[0] + accepted[1])),
        "{accepted:?} for {conns}"
    );
    assert_eq!(r.expected_deliveries, 3 * r.sent);
    assert_eq!((r.delivered, r.lost_total), (r.expected_deliveries, 0));
    let k = &r.churn.counts;
    assert_eq!((k.expected, k.delivered), (3 * k.accepted, 3 * k.accepted));
}

#[test]
fn soak_catches_a_node_that_misses_the_other_nodes_messages() {
    let cluster = common::start_cluster(vec![Faults::default(), Faults::drop_from_other_nodes()]);
    let r = run(&cluster.nodes[0].url, &[cluster.nodes[1].url.as_str()]);
    assert!(!r.ok);
    // Node 1's stable member of each room misses the two node-0 members' messages.
    assert!(r.lost > 0, "{}", r.to_table());
    assert_fails_with(&r.failures, "stable members' messages were lost");
}

/// The binary: one JSON line, exit status 0, and the /proc readings of a server PID
/// (here a `sleep`, whose RSS and descriptors stay put).
#[test]
fn binary_prints_one_json_line_with_the_server_readings() {
    let server = common::start(Faults::default());
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep");
    let pid = sleeper.id().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["soak", &server.url, "--json", "-q", "--server-pid", &pid])
        .args(SMALL)
        .output()
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(j["mode"], "soak");
    assert_eq!(j["lost"], 0);
    assert_eq!(j["churn"]["lost"], 0);
    assert!(j["churn"]["connects"].as_u64().unwrap() > 5);
    let fds = j["server_fds_start"].as_u64().unwrap();
    assert!(fds >= 3);
    assert_eq!(j["server_fds_end"].as_u64(), Some(fds));
    assert!(j["server_rss_start_kb"].as_u64().unwrap() > 0);
    assert!(j["server_rss_end_kb"].as_u64().unwrap() > 0);
    for q in ["p50", "p90", "p99", "p999", "max"] {
        assert!(j["latency_us"][q].is_u64());
    }
}
