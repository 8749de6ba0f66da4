//! The harness's own accounting, end to end against in-process chat servers: expected
//! versus delivered, the measured window, lost and duplicated deliveries, server errors,
//! connect failures, pings, idle mode, the saturate search and the binary's exit status;
//! and several nodes at once: clients spread over nodes that share rooms (as roomcast
//! nodes on a Redis backplane do), counted as one, with a node that drops messages caught.

mod common;

use clap::Parser;
use common::{assert_fails_with, Cluster, Faults};
use loadtest::cli::Cli;
use loadtest::report::Report;
use loadtest::runner;
use std::process::Command;
use std::sync::atomic::Ordering;

/// Parses `args` exactly as the binary would and runs the plan in-process.
fn run(url: &str, args: &[&str]) -> Report {
    run_nodes(&[url.to_string()], args)
}

/// As [`run`], with one URL argument per node.
fn run_nodes(urls: &[String], args: &[&str]) -> Report {
    let mut argv = vec!["loadtest"];
    argv.extend(urls.iter().map(String::as_str));
    argv.push("--quiet");
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(&argv).expect("valid arguments");
    let r = &cli.run;
    let plan = r.plan(false, false).expect("valid plan");
    runner::execute(&plan).expect("run starts")
}

/// Starts a server with `faults` and runs against it.
fn run_faulty(faults: Faults, args: &[&str]) -> Report {
    let server = common::start(faults);
    run(&server.url, args)
}

/// `clients` clients in `rooms` rooms, everyone sending 20 msg/s for a second, no
/// warm-up; then `extra`.
fn steady<'a>(clients: &'a str, rooms: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--clients",
        clients,
        "--rooms",
        rooms,
        "--rate",
        "20",
        "--warmup",
        "0",
        "--duration",
        "1",
    ];
    args.extend_from_slice(extra);
    args
}

/// 16 clients in 4 rooms of 4, everyone sending 20 msg/s for a second, no warm-up.
fn four_rooms() -> Vec<&'static str> {
    steady("16", "4", &["--drain", "2"])
}

/// Starts one node per entry of `faults` and runs [`four_rooms`] over them.
fn run_cluster(faults: Vec<Faults>) -> (Cluster, Report) {
    let cluster = common::start_cluster(faults);
    let r = run_nodes(&cluster.urls(), &four_rooms());
    (cluster, r)
}

/// The saturate search over 6 clients in 2 rooms, from 10 msg/s per sender up to at
/// most 40, in half-second steps after `warmup` s; then `extra`.
fn saturate<'a>(warmup: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--scenario",
        "saturate",
        "--clients",
        "6",
        "--rooms",
        "2",
        "--rate",
        "10",
        "--max-rate",
        "40",
        "--warmup",
        warmup,
        "--duration",
        "0.5",
        "--drain",
        "1",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn honest_server_delivers_everything_expected() {
    let r = run_faulty(
        Faults::default(),
        &[
            "--clients",
            "12",
            "--rooms",
            "3",
            "--rate",
            "20",
            "--warmup",
            "0.3",
            "--duration",
            "1",
            "--drain",
            "3",
        ],
    );
    assert!(r.ok, "{}", r.to_table());
    assert_eq!((r.connected, r.connect_failures), (12, 0));
    assert_eq!(r.senders, 12);
    // Every message goes to its whole room of four, the sender included.
    assert_eq!(r.expected_deliveries, r.sent * 4);
    assert_eq!(r.delivered, r.expected_deliveries);
    assert_eq!(r.lost, 0);
    // 12 senders x 20/s x 1 s, give or take the jittered starts.
    assert!((180..=270).contains(&r.sent), "sent {}", r.sent);
    // Warm-up traffic happened but stayed out of the window.
    assert!(r.warmup_sent > 30, "warmup_sent {}", r.warmup_sent);
    assert!(r.latency_us.p50 > 0 && r.latency_us.max >= r.latency_us.p99);
    assert!(
        r.delivered_per_sec > 800.0 && r.delivered_per_sec < 1100.0,
        "{}",
        r.delivered_per_sec
    );
    let a = &r.anomalies;
    assert_eq!(a.out_of_order + a.misrouted + r.errors + a.unexpected, 0);
}

#[test]
fn every_client_carries_a_token_when_given_a_secret() {
    let faults = Faults {
        require_token: true,
        ..Faults::default()
    };
    let server = common::start(faults);
    let r = run(&server.url, &steady("8", "2", &[]));
    assert_eq!(r.connected, 0, "refused without a token");
    for format in ["django", "jwt"] {
        let extra = ["--token-secret", "k", "--token-format", format];
        let r = run(&server.url, &steady("8", "2", &extra));
        assert!(r.ok, "{format}: {}", r.to_table());
        assert_eq!(r.token.as_deref(), Some(format));
    }
}

#[test]
fn senders_per_room_and_uneven_rooms_are_accounted() {
    // Rooms of 3, 2 and 2 members; one sender each.
    let r = run_faulty(
        Faults::default(),
        &steady("7", "3", &["--senders-per-room", "1"]),
    );
    assert!(r.ok, "{}", r.to_table());
    assert_eq!(r.senders, 3);
    assert!(r.expected_deliveries > 2 * r.sent && r.expected_deliveries < 3 * r.sent);
    assert_eq!(r.delivered, r.expected_deliveries);
}

#[test]
fn a_dropped_delivery_is_lost_and_fails_the_run() {
    // No warm-up: every delivery, the 50th included, is inside the window.
    let r = run_faulty(
        Faults::drop_nth_delivery(50),
        &steady("8", "2", &["--drain", "1"]),
    );
    assert_eq!(r.lost, 1, "{}", r.to_table());
    assert_eq!(r.delivered + 1, r.expected_deliveries);
    assert!(!r.ok);
    assert_eq!(r.exit_code(), 1);
    assert_fails_with(&r.failures, "lost");
}

#[test]
fn a_duplicated_delivery_is_caught() {
    let r = run_faulty(Faults::duplicate_nth_delivery(30), &steady("8", "2", &[]));
    assert_eq!(r.anomalies.out_of_order, 1, "{}", r.to_table());
    assert_eq!(r.lost, 0);
    assert!(!r.ok);
}

#[test]
fn server_errors_are_counted_and_the_message_is_lost() {
    let r = run_faulty(
        Faults::error_nth_message(5),
        &steady("4", "1", &["--drain", "1"]),
    );
    assert_eq!(r.errors, 1, "{}", r.to_table());
    assert_eq!(
        r.lost, 4,
        "the rejected message was expected by all four members"
    );
    assert_eq!(
        r.first_error.as_deref(),
        Some(r#"{"error": "deliberate test error"}"#)
    );
    assert!(!r.ok);
}

#[test]
fn connect_failures_are_counted() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/ws/chat/");
    let r = run(
        &url,
        &["--clients", "5", "--rooms", "1", "--duration", "0.2"],
    );
    assert_eq!((r.connected, r.connect_failures), (0, 5));
    assert_eq!(r.connect_errors.get("connection refused"), Some(&5));
    assert!(!r.ok);
}

#[test]
fn idle_mode_answers_pings_and_measures_memory() {
    let server = common::start(Faults {
        ping_on_open: true,
        ..Faults::default()
    });
    let me = std::process::id().to_string();
    // The test process is the server here, so its own PID gives the memory figures.
    let r = run(
        &server.url,
        &[
            "--idle",
            "--clients",
            "20",
            "--rooms",
            "4",
            "--hold",
            "0.5",
            "--settle",
            "0.2",
            "--server-pid",
            &me,
        ],
    );
    assert!(r.ok, "{}", r.to_table());
    let idle = r.idle.as_ref().expect("idle section");
    assert!(idle.rss_before_kb.is_some() && idle.rss_after_kb.is_some());
    assert!(idle.bytes_per_connection.is_some());
    assert_eq!(idle.disconnects_during_hold, 0);
    assert_eq!(r.sent, 0);
    assert_eq!(server.pongs.load(Ordering::SeqCst), 20);
}

#[test]
fn saturate_steps_up_to_the_rate_cap() {
    let r = run_faulty(Faults::default(), &saturate("0.1", &[]));
    let s = r.saturate.as_ref().expect("saturate section");
    assert!(r.ok, "{}", r.to_table());
    assert_eq!(
        s.steps
            .iter()
            .map(|s| s.rate_per_sender)
            .collect::<Vec<_>>(),
        vec![10.0, 20.0, 40.0]
    );
    assert!(s.steps.iter().all(|s| s.passed));
    assert_eq!(s.limited_by, "max-rate");
    assert_eq!(s.best_rate_per_sender, Some(40.0));
    assert!(s.max_sustained_delivered_per_sec > 300.0);
}

#[test]
fn saturate_steps_down_from_a_failing_start_then_bisects() {
    // The 30th delivery goes missing: the first step (60 deliveries) fails, later ones pass.
    let r = run_faulty(
        Faults::drop_nth_delivery(30),
        &saturate("0", &["--refine-steps", "1"]),
    );
    let s = r.saturate.as_ref().expect("saturate section");
    let rates: Vec<(f64, bool)> = s
        .steps
        .iter()
        .map(|s| (s.rate_per_sender, s.passed))
        .collect();
    assert_eq!(
        rates,
        vec![(10.0, false), (5.0, true), (7.5, true)],
        "{}",
        r.to_table()
    );
    assert_eq!(s.best_rate_per_sender, Some(7.5));
    assert_eq!(r.lost, 0, "the report shows the best step");
    assert!(r.ok);
}

#[test]
fn two_nodes_sharing_rooms_are_driven_and_counted_as_one() {
    let (cluster, r) = run_cluster(vec![Faults::default(), Faults::default()]);
    assert!(r.ok, "{}", r.to_table());
    assert_eq!(r.nodes, 2);
    assert_eq!(r.url, cluster.urls().join(","));
    // Members 0 and 2 of every room on node 0, members 1 and 3 on node 1.
    for (k, node) in cluster.nodes.iter().enumerate() {
        assert_eq!(node.accepted.load(Ordering::SeqCst), 8, "node {k}");
        let n = &r.per_node[k];
        assert_eq!(
            (n.url.as_str(), n.clients, n.connected),
            (node.url.as_str(), 8, 8)
        );
        // Each message, sent through either node, is due to its room's two members here.
        assert_eq!(n.expected_deliveries, 2 * r.sent, "node {k}");
        assert_eq!(
            (n.delivered, n.lost),
            (n.expected_deliveries, 0),
            "node {k}"
        );
    }
    assert_eq!(r.expected_deliveries, 4 * r.sent);
    assert_eq!(r.delivered, r.expected_deliveries);
    let a = &r.anomalies;
    assert_eq!(a.out_of_order + a.misrouted + a.foreign + a.unexpected, 0);
}

#[test]
fn one_node_named_twice_is_two_nodes_sharing_rooms() {
    let server = common::start(Faults::default());
    let both = format!("{},{}", server.url, server.url);
    let r = run_nodes(&[both], &four_rooms());
    assert!(r.ok, "{}", r.to_table());
    assert_eq!((r.nodes, r.per_node.len()), (2, 2));
    assert_eq!(server.accepted.load(Ordering::SeqCst), 16);
    assert_eq!(r.delivered, 4 * r.sent);
}

#[test]
fn a_node_that_misses_the_other_nodes_messages_is_loss() {
    // Node 1 delivers only what was sent through itself: its members miss every message
    // sent through node 0, i.e. half of what they were due (two of each room's four
    // senders are on node 0).
    let (_cluster, r) = run_cluster(vec![Faults::default(), Faults::drop_from_other_nodes()]);
    assert!(!r.ok);
    assert_eq!(r.exit_code(), 1);
    let (n0, n1) = (&r.per_node[0], &r.per_node[1]);
    assert_eq!(n0.lost, 0, "{}", r.to_table());
    assert_eq!(r.lost, n1.lost);
    let share = n1.lost as f64 / n1.expected_deliveries as f64;
    assert!(
        (0.4..0.6).contains(&share),
        "node 1 lost {share:.2} of its deliveries"
    );
    // Nothing else looks wrong: the misses are plain loss, in order, in the right room.
    let a = &r.anomalies;
    assert_eq!(a.out_of_order + a.misrouted + a.unexpected, 0);
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("lost") && f.contains(&format!("to node 1 ({})", n1.url))),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_node_dropping_one_delivery_is_one_lost_on_that_node() {
    let (_cluster, r) = run_cluster(vec![Faults::default(), Faults::drop_nth_delivery(40)]);
    assert_eq!(r.lost, 1, "{}", r.to_table());
    assert_eq!((r.per_node[0].lost, r.per_node[1].lost), (0, 1));
    assert!(!r.ok);
}

#[test]
fn a_node_duplicating_a_delivery_is_caught() {
    let (_cluster, r) = run_cluster(vec![Faults::duplicate_nth_delivery(25), Faults::default()]);
    assert_eq!(
        (r.anomalies.out_of_order, r.lost),
        (1, 0),
        "{}",
        r.to_table()
    );
    assert!(!r.ok);
}

#[test]
fn separate_servers_do_not_share_rooms_and_that_is_loss() {
    // Two unconnected servers: each room is split in two halves that never hear each
    // other, so every member misses the other half's messages.
    let (a, b) = (
        common::start(Faults::default()),
        common::start(Faults::default()),
    );
    let r = run_nodes(&[a.url.clone(), b.url.clone()], &four_rooms());
    assert!(!r.ok);
    assert!(r.sent > 0);
    assert_eq!(r.expected_deliveries, 4 * r.sent);
    let share = r.lost as f64 / r.expected_deliveries as f64;
    assert!((0.4..0.6).contains(&share), "lost {share:.2}");
    assert!(r.per_node.iter().all(|n| n.lost > 0));
}

/// The binary itself: one JSON line on stdout, and the exit status follows the verdict.
#[test]
fn binary_prints_one_json_line_and_exits_nonzero_on_loss() {
    let exe = env!("CARGO_BIN_EXE_loadtest");
    let args = [
        "--clients",
        "6",
        "--rooms",
        "2",
        "--rate",
        "20",
        "--warmup",
        "0",
        "--duration",
        "0.6",
        "--drain",
        "1",
        "--json",
        "-q",
    ];
    let good = common::start(Faults::default());
    let out = Command::new(exe)
        .arg(&good.url)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "clients",
        "connected",
        "connect_failures",
        "sent",
        "expected_deliveries",
        "delivered",
        "lost",
        "latency_us",
        "delivered_per_sec",
        "server_cpu_s",
        "server_cpu_us_per_delivery",
        "server_rss_kb",
        "harness_cpu_s",
        "harness_cpu_util",
    ] {
        assert!(j.get(key).is_some(), "missing {key}");
    }
    for q in ["p50", "p90", "p99", "p999", "max"] {
        assert!(j["latency_us"][q].is_u64());
    }
    assert_eq!(out.status.code(), Some(0), "{stdout}");

    let bad = common::start(Faults::drop_nth_delivery(10));
    let out = Command::new(exe).arg(&bad.url).args(args).output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["lost"], 1);
    assert_eq!(out.status.code(), Some(1));

    // Two nodes (the URLs as two arguments or comma-separated) and a PID per node: the
    // JSON line says how many nodes, and has per-node and per-PID figures.
    let cluster = common::start_cluster(vec![Faults::default(), Faults::default()]);
    let me = std::process::id().to_string();
    let urls = cluster.urls();
    for url_args in [urls.clone(), vec![urls.join(",")]] {
        let out = Command::new(exe)
            .args(&url_args)
            .args(args)
            .args(["--server-pid", &me, "--server-pid", &me])
            .output()
            .unwrap();
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["nodes"], 2);
        assert_eq!(j["per_node"].as_array().unwrap().len(), 2);
        assert_eq!(j["per_node"][1]["url"], urls[1].as_str());
        assert_eq!(j["server_cpu_s_per_pid"].as_array().unwrap().len(), 2);
        assert_eq!(j["server_rss_kb_per_pid"].as_array().unwrap().len(), 2);
        assert_eq!(j["lost"], 0);
        assert_eq!(out.status.code(), Some(0), "{j}");
    }

    // Asking for more connections than the open-file limit allows is refused plainly.
    let out = Command::new(exe)
        .arg(&good.url)
        .args(["--clients", "10000000", "--rooms", "1", "-q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most"));
}
