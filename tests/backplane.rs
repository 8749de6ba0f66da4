//! The Redis backplane over real sockets: several in-process relays (and the
//! binary) on private `redis-server`s, interoperating with channels_redis
//! 4.3.0's RedisPubSubChannelLayer byte for byte. A room `R` is the Channels
//! group `chat_R`, Redis channel `asgi__group__chat_R`; events are msgpack of
//! `{"type": "chat_message", "message": value}`; members get Python's
//! `json.dumps({"message": value})`.
//!
//! The msgpack and frame tables below were computed by Python's msgpack and
//! json modules (tests/interop/vectors.py prints them), so they say what
//! Django does, not what roomcast does. Waits poll with deadlines; Redis
//! faults are SIGKILL, restart on the same port, and SIGSTOP/SIGCONT.

mod common;
use common::fake_redis::FakeRedis;
use common::redis::{free_port, RedisServer};
use common::*;
use roomcast::Config;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

// ---- vectors (loadtest/baselines/channels/.venv/bin/python tests/interop/vectors.py)

/// msgpack of `{"type": "chat_message", "message": ` up to the value.
const EVENT_PREFIX: &str = "82a474797065ac636861745f6d657373616765a76d657373616765";

/// (message JSON sent, msgpack of the value (hex), frame every member gets)
const ENCODE: &[(&str, &str, &str)] = &[
    ("\"hello\"", "a568656c6c6f", "{\"message\": \"hello\"}"),
    ("\"\"", "a0", "{\"message\": \"\"}"),
    (
        "\"café 😀 naïve\"",
        "b1636166c3a920f09f9880206e61c3af7665",
        "{\"message\": \"caf\\u00e9 \\ud83d\\ude00 na\\u00efve\"}",
    ),
    (
        "\"esc \\\"q\\\" back\\\\slash \\/ tab\\t nl\\n \\u0001 \\u007f \\u00e9 \\ud83d\\ude00\"",
        "d92965736320227122206261636b5c736c617368202f2074616209206e6c0a2001207f20c3a920f09f9880",
        "{\"message\": \"esc \\\"q\\\" back\\\\slash / tab\\t nl\\n \\u0001 \\u007f \\u00e9 \\ud83d\\ude00\"}",
    ),
    (
        "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
        "bf78787878787878787878787878787878787878787878787878787878787878",
        "{\"message\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
    ),
    (
        "\"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\"",
        "d9207979797979797979797979797979797979797979797979797979797979797979",
        "{\"message\": \"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\"}",
    ),
    ("0", "00", "{\"message\": 0}"),
    (
        "[0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 18446744073709551615]",
        "9a007fcc80ccffcd0100cdffffce00010000ceffffffffcf0000000100000000cfffffffffffffffff",
        "{\"message\": [0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 18446744073709551615]}",
    ),
    (
        "[-1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -9223372036854775808]",
        "9affe0d0dfd080d1ff7fd18000d2ffff7fffd280000000d3ffffffff7fffffffd38000000000000000",
        "{\"message\": [-1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -9223372036854775808]}",
    ),
    (
        "[1.0, -0.0, 3.5, 0.1, 1e20, 1E-7, 1.5e300, 100000.0, 1e16, 1e15, 2.5E+3]",
        "9bcb3ff0000000000000cb8000000000000000cb400c000000000000cb3fb999999999999acb4415af1d78b58c40cb3e7ad7f29abcaf48cb7e41eb2d66005835cb40f86a0000000000cb4341c37937e08000cb430c6bf526340000cb40a3880000000000",
        "{\"message\": [1.0, -0.0, 3.5, 0.1, 1e+20, 1e-07, 1.5e+300, 100000.0, 1e+16, 1000000000000000.0, 2500.0]}",
    ),
    (
        "[null, true, false, [], {}]",
        "95c0c3c29080",
        "{\"message\": [null, true, false, [], {}]}",
    ),
    (
        "{\"z\": 1, \"a\": [true, null, {\"k\": \"v\"}], \"m\": {}, \"é\": \"key escaped too\"}",
        "84a17a01a16193c3c081a16ba176a16d80a2c3a9af6b6579206573636170656420746f6f",
        "{\"message\": {\"z\": 1, \"a\": [true, null, {\"k\": \"v\"}], \"m\": {}, \"\\u00e9\": \"key escaped too\"}}",
    ),
    (
        "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]",
        "dc0010000102030405060708090a0b0c0d0e0f",
        "{\"message\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]}",
    ),
    (
        "{\"k00\": 0, \"k01\": 1, \"k02\": 2, \"k03\": 3, \"k04\": 4, \"k05\": 5, \"k06\": 6, \"k07\": 7, \"k08\": 8, \"k09\": 9, \"k10\": 10, \"k11\": 11, \"k12\": 12, \"k13\": 13, \"k14\": 14, \"k15\": 15}",
        "de0010a36b303000a36b303101a36b303202a36b303303a36b303404a36b303505a36b303606a36b303707a36b303808a36b303909a36b31300aa36b31310ba36b31320ca36b31330da36b31340ea36b31350f",
        "{\"message\": {\"k00\": 0, \"k01\": 1, \"k02\": 2, \"k03\": 3, \"k04\": 4, \"k05\": 5, \"k06\": 6, \"k07\": 7, \"k08\": 8, \"k09\": 9, \"k10\": 10, \"k11\": 11, \"k12\": 12, \"k13\": 13, \"k14\": 14, \"k15\": 15}}",
    ),
    ("  [ 1 ,\t2 ]  ", "920102", "{\"message\": [1, 2]}"),
];

/// (what, payload PUBLISHed (hex), frame every member gets): encodings
/// another publisher may legitimately use, which Python consumers accept.
const DECODE: &[(&str, &str, &str)] = &[
    ("float32 1.5", "82a474797065ac636861745f6d657373616765a76d657373616765ca3fc00000", "{\"message\": 1.5}"),
    ("float32 0.1", "82a474797065ac636861745f6d657373616765a76d657373616765ca3dcccccd", "{\"message\": 0.10000000149011612}"),
    ("message key first", "82a76d657373616765a56669727374a474797065ac636861745f6d657373616765", "{\"message\": \"first\"}"),
    ("extra keys ignored", "83a474797065ac636861745f6d657373616765a76d657373616765a178a2696407", "{\"message\": \"x\"}"),
    ("a user", "83a474797065ac636861745f6d657373616765a76d657373616765a178a47573657207", "{\"message\": \"x\", \"user\": 7}"),
    ("user key first, escaped", "83a475736572a47a6fc3aba474797065ac636861745f6d657373616765a76d657373616765a2c3a9", "{\"message\": \"\\u00e9\", \"user\": \"zo\\u00eb\"}"),
    ("a null user, extra keys", "84a474797065ac636861745f6d657373616765a2696401a76d6573736167659101a475736572c0", "{\"message\": [1], \"user\": null}"),
    ("a structured user", "83a474797065ac636861745f6d657373616765a76d65737361676500a47573657282a269642aa46e616d65a5616c696365", "{\"message\": 0, \"user\": {\"id\": 42, \"name\": \"alice\"}}"),
    ("non-minimal ints and str8", "82d90474797065d90c636861745f6d657373616765a76d65737361676593cc05cd0006d0f9", "{\"message\": [5, 6, -7]}"),
    ("nested non-ASCII", "82a474797065ac636861745f6d657373616765a76d65737361676581a2c3a992a4f09f9880c0", "{\"message\": {\"\\u00e9\": [\"\\ud83d\\ude00\", null]}}"),
    ("big uint64", "82a474797065ac636861745f6d657373616765a76d657373616765cfffffffffffffffff", "{\"message\": 18446744073709551615}"),
];

/// (message JSON, identity JSON, msgpack PUBLISHed (hex), frame every member
/// gets): a member with an identity (SPEC section 9) publishes it as "user".
const USER_ENCODE: &[(&str, &str, &str, &str)] = &[
    ("\"hi\"", "\"alice\"", "83a474797065ac636861745f6d657373616765a76d657373616765a26869a475736572a5616c696365", "{\"message\": \"hi\", \"user\": \"alice\"}"),
    ("42", "42", "83a474797065ac636861745f6d657373616765a76d6573736167652aa4757365722a", "{\"message\": 42, \"user\": 42}"),
    ("{\"a\": [1.5, null]}", "\"zo\\u00eb\"", "83a474797065ac636861745f6d657373616765a76d65737361676581a16192cb3ff8000000000000c0a475736572a47a6fc3ab", "{\"message\": {\"a\": [1.5, null]}, \"user\": \"zo\\u00eb\"}"),
    ("\"café\"", "true", "83a474797065ac636861745f6d657373616765a76d657373616765a5636166c3a9a475736572c3", "{\"message\": \"caf\\u00e9\", \"user\": true}"),
    ("\"x\"", "-9223372036854775808", "83a474797065ac636861745f6d657373616765a76d657373616765a178a475736572d38000000000000000", "{\"message\": \"x\", \"user\": -9223372036854775808}"),
    ("[]", "1e16", "83a474797065ac636861745f6d657373616765a76d65737361676590a475736572cb4341c37937e08000", "{\"message\": [], \"user\": 1e+16}"),
];

/// (reason label, what, payload PUBLISHed (hex)): events a Channels
/// ChatConsumer could not turn into a frame.
const DROP: &[(&str, &str, &str)] = &[
    ("malformed", "garbage", "c16e6f74206d73677061636b"),
    (
        "malformed",
        "truncated",
        "82a474797065ac636861745f6d657373616765a76d657373616765a363",
    ),
    (
        "malformed",
        "trailing bytes",
        "82a474797065ac636861745f6d657373616765a76d657373616765a17800",
    ),
    (
        "not_an_event",
        "an array",
        "92ac636861745f6d657373616765a178",
    ),
    (
        "not_an_event",
        "a map without type",
        "81a76d657373616765a178",
    ),
    (
        "not_an_event",
        "type not a string",
        "82a47479706505a76d657373616765a178",
    ),
    (
        "other_type",
        "another type",
        "82a474797065ab757365725f6a6f696e6564a76d657373616765a178",
    ),
    (
        "no_message",
        "chat_message without message",
        "81a474797065ac636861745f6d657373616765",
    ),
    (
        "unsupported",
        "bin value",
        "82a474797065ac636861745f6d657373616765a76d657373616765c4020001",
    ),
    (
        "unsupported",
        "ext value",
        "82a474797065ac636861745f6d657373616765a76d657373616765d5056162",
    ),
];

// ---- helpers -----------------------------------------------------------

fn hex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            assert_eq!(pair.len(), 2, "odd hex {s}");
            u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).expect("hex digits")
        })
        .collect()
}

/// The msgpack event channels_redis writes for `value_msgpack`.
fn event(value_msgpack: &[u8]) -> Vec<u8> {
    let mut e = hex(EVENT_PREFIX);
    e.extend_from_slice(value_msgpack);
    e
}

/// msgpack of a str (fixstr, str8, str16 or str32 by length).
fn msgpack_str(s: &str) -> Vec<u8> {
    let n = s.len();
    let mut out = match n {
        0..=31 => vec![0xa0 | n as u8],
        32..=0xFF => vec![0xd9, n as u8],
        0x100..=0xFFFF => vec![0xda, (n >> 8) as u8, n as u8],
        _ => {
            let mut v = vec![0xdb];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v
        }
    };
    out.extend_from_slice(s.as_bytes());
    out
}

fn group(room: &str) -> String {
    format!("asgi__group__chat_{room}")
}

/// An in-process relay on these Redis shards, quick to reconnect.
fn node(shards: &[&RedisServer]) -> Relay {
    node_with(shards, |_| {})
}

fn node_with(shards: &[&RedisServer], tweak: impl FnOnce(&mut Config)) -> Relay {
    let urls: Vec<String> = shards.iter().map(|r| r.url()).collect();
    Relay::start_with(|c| {
        c.redis = urls;
        c.redis_retry_max = Duration::from_millis(400);
        tweak(c);
    })
}

fn health(relay: &Relay) -> Value {
    let (status, head, body) = relay.get("/healthz");
    assert_eq!(
        status, 200,
        "/healthz stays 200 whatever the backplane does: {head}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"))
}

/// Waits until `/healthz` says `status` ("ok" or "degraded"); returns it.
fn wait_health(relay: &Relay, status: &str) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let h = health(relay);
        if h["status"] == status {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed {h}, expected status {status:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the metric is at least `min`; returns its value.
fn wait_metric_at_least(relay: &Relay, name: &str, min: u64) -> u64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = relay.metric(name);
        if now >= min {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed at {now}, expected at least {min}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The next text frame, failing with `why` if none comes within [`TIMEOUT`].
fn expect_text(ws: &mut Client, why: &str) -> String {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => return t.to_string(),
            Ok(tungstenite::Message::Close(c)) => panic!("closed ({c:?}): {why}"),
            Ok(_) => {}
            Err(e) => panic!("nothing within {TIMEOUT:?} ({e}): {why}"),
        }
    }
}

// ---- one order across nodes --------------------------------------------

/// Three nodes on one Redis, a room spread over them, six concurrent
/// senders: every member sees every message once, all in one order, each
/// sender's in its send order; frames are json.dumps text; another room
/// sees none of it.
#[test]
fn three_nodes_one_order_per_room() {
    let redis = RedisServer::start();
    let nodes: Vec<Relay> = (0..3).map(|_| node(&[&redis])).collect();
    let senders_per_node = 2;
    let per_sender = 100;
    let senders = 3 * senders_per_node;
    let total = senders * per_sender;

    let listeners: Vec<Client> = nodes.iter().map(|n| n.chat("order")).collect();
    let mut sending: Vec<Client> = Vec::new();
    for n in &nodes {
        for _ in 0..senders_per_node {
            sending.push(n.chat("order"));
        }
    }
    let mut elsewhere_0 = nodes[0].chat("elsewhere");
    let mut elsewhere_2 = nodes[2].chat("elsewhere");
    // Each node subscribes once per room, and only after that can a message
    // from another node reach its members.
    redis.wait_numsub(&group("order"), 3);
    redis.wait_numsub(&group("elsewhere"), 2);

    let mut threads = Vec::new();
    for (s, mut ws) in sending.into_iter().enumerate() {
        threads.push(std::thread::spawn(move || {
            for i in 0..per_sender {
                say(&mut ws, json!([s, i]));
            }
            (0..total).map(|_| recv_text(&mut ws)).collect::<Vec<_>>()
        }));
    }
    let mut seen: Vec<Vec<String>> = Vec::new();
    let listener_threads: Vec<_> = listeners
        .into_iter()
        .map(|mut l| {
            std::thread::spawn(move || {
                let got = (0..total).map(|_| recv_text(&mut l)).collect::<Vec<_>>();
                (got, l)
            })
        })
        .collect();
    let mut listeners = Vec::new();
    for t in listener_threads {
        let (got, l) = t.join().expect("a listener failed");
        seen.push(got);
        listeners.push(l);
    }
    for t in threads {
        seen.push(t.join().expect("a sender failed"));
    }

    for (k, order) in seen.iter().enumerate() {
        assert_eq!(
            order, &seen[0],
            "member {k} saw another order than member 0 (members 0-2 are on nodes 0-2)"
        );
    }
    let mut per: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for text in &seen[0] {
        let v: Value = serde_json::from_str(text).unwrap();
        let (s, i) = (
            v["message"][0].as_u64().unwrap(),
            v["message"][1].as_u64().unwrap(),
        );
        assert_eq!(
            text,
            &format!("{{\"message\": [{s}, {i}]}}"),
            "frames are json.dumps text"
        );
        per.entry(s).or_default().push(i);
    }
    assert_eq!(per.len(), senders);
    for (s, got) in &per {
        assert_eq!(
            got,
            &(0..per_sender as u64).collect::<Vec<_>>(),
            "sender {s}'s messages lost, repeated or reordered"
        );
    }

    // Nothing more in "order" (no duplicates), nothing leaked to "elsewhere".
    say(&mut elsewhere_2, json!("only elsewhere"));
    assert_eq!(
        recv_text(&mut elsewhere_0),
        r#"{"message": "only elsewhere"}"#
    );
    assert_eq!(
        recv_text(&mut elsewhere_2),
        r#"{"message": "only elsewhere"}"#
    );
    say(&mut listeners[1], json!("the end"));
    for l in &mut listeners {
        assert_eq!(recv_text(l), r#"{"message": "the end"}"#);
    }
    for (k, n) in nodes.iter().enumerate() {
        assert_eq!(
            n.metric("roomcast_backplane_published_total"),
            (senders_per_node * per_sender + usize::from(k != 0)) as u64,
            "node {k} published its own members' messages"
        );
        assert!(n.metric("roomcast_backplane_received_total") >= total as u64);
        assert_eq!(n.metric("roomcast_backplane_up{shard=\"0\"}"), 1);
        assert_eq!(n.metric("roomcast_backplane_fallback_total"), 0);
    }
}

/// A member that speaks the moment its socket opens (the seed's snippet does)
/// gets its own message back through Redis: the node has subscribed the
/// room's channel before the first message can be published.
#[test]
fn a_message_sent_right_after_joining_comes_back() {
    let redis = RedisServer::start();
    let relay = node(&[&redis]);
    for k in 0..20 {
        let room = format!("fresh-{k}");
        let mut ws = relay.chat(&room);
        send_text(&mut ws, r#"{"message":"Hello, server!"}"#);
        assert_eq!(
            recv_text(&mut ws),
            r#"{"message": "Hello, server!"}"#,
            "room {room}"
        );
    }
}

/// A node subscribes a room's channel once while it has local members and
/// unsubscribes when the last one leaves.
#[test]
fn a_room_is_subscribed_while_it_has_members() {
    let redis = RedisServer::start();
    let relay = node(&[&redis]);
    let channel = group("sub");
    assert_eq!(redis.numsub(&channel), 0);
    let a = relay.chat("sub");
    redis.wait_numsub(&channel, 1);
    let b = relay.chat("sub");
    relay.wait_metric("roomcast_connections", 2);
    assert_eq!(
        redis.numsub(&channel),
        1,
        "one subscription per node, not per member"
    );
    drop(a);
    relay.wait_metric("roomcast_connections", 1);
    assert_eq!(redis.numsub(&channel), 1, "a member is still there");
    drop(b);
    redis.wait_numsub(&channel, 0);
    let mut c = relay.chat("sub");
    redis.wait_numsub(&channel, 1);
    say(&mut c, json!("back"));
    assert_eq!(recv_text(&mut c), r#"{"message": "back"}"#);
}

/// The last member leaving and a new one joining at once (UNSUBSCRIBE then
/// SUBSCRIBE in flight together) leaves the room subscribed.
#[test]
fn leaving_and_rejoining_at_once_keeps_the_room_subscribed() {
    let redis = RedisServer::start();
    let relay = node(&[&redis]);
    let other = node(&[&redis]);
    let mut far = other.chat("churn");
    for k in 0..25 {
        let ws = relay.chat("churn");
        if k % 5 == 0 {
            redis.wait_numsub(&group("churn"), 2);
        }
        drop(ws);
    }
    let mut near = relay.chat("churn");
    redis.wait_numsub(&group("churn"), 2);
    say(&mut far, json!("still subscribed?"));
    assert_eq!(recv_text(&mut near), r#"{"message": "still subscribed?"}"#);
    assert_eq!(recv_text(&mut far), r#"{"message": "still subscribed?"}"#);
    drop(near);
    redis.wait_numsub(&group("churn"), 1);
}

/// A message near --max-message-size crosses nodes. One within the limit
/// that json.dumps' escaping makes longer than it (é: 2 bytes in, 6 out) is
/// delivered as Channels would, or refused to its sender with an error; it
/// is never published and then dropped with nobody told.
#[test]
fn large_messages_cross_nodes_or_are_refused_never_lost() {
    let redis = RedisServer::start();
    let a = node(&[&redis]);
    let b = node(&[&redis]);
    let mut sender = a.chat("large");
    let mut far = b.chat("large");
    redis.wait_numsub(&group("large"), 2);

    let ascii = "a".repeat(1_000_000);
    let frame = format!("{{\"message\": \"{ascii}\"}}");
    send_text(&mut sender, &frame);
    assert!(recv_text(&mut far) == frame, "a 1 MB message crosses");
    assert!(recv_text(&mut sender) == frame);

    let raw = "é".repeat(300_000);
    let frame = format!("{{\"message\": \"{}\"}}", r"\u00e9".repeat(300_000));
    send_text(&mut sender, &format!("{{\"message\": \"{raw}\"}}"));
    let got = expect_text(
        &mut sender,
        "the sender heard nothing back: its message was accepted and then lost \
         (counted only in roomcast_backplane_dropped_total)",
    );
    if got == frame {
        assert!(recv_text(&mut far) == frame, "delivered to the sender only");
    } else {
        let v: Value = serde_json::from_str(&got).unwrap_or_else(|_| {
            panic!(
                "the sender got neither the {} byte frame nor an error: {}",
                frame.len(),
                &got[..got.len().min(80)]
            )
        });
        assert!(v["error"].is_string(), "{v}");
        say(&mut sender, json!("marker"));
        assert_eq!(recv_text(&mut far), r#"{"message": "marker"}"#);
    }
}

// ---- the bytes on the wire ---------------------------------------------

/// What roomcast PUBLISHes is exactly what channels_redis would for the
/// same message, and members get exactly what the Channels consumer sends.
#[test]
fn the_payload_on_redis_is_channels_msgpack() {
    let redis = RedisServer::start();
    let relay = node(&[&redis]);
    let mut spy = redis.client();
    spy.subscribe(&group("wire"));
    let mut member = relay.chat("wire");
    let mut other = relay.chat("wire");
    redis.wait_numsub(&group("wire"), 2);

    let long16 = "z".repeat(300);
    let long32 = "w".repeat(70_000);
    let mut rows: Vec<(String, Vec<u8>, String)> = ENCODE
        .iter()
        .map(|(text, packed, frame)| (text.to_string(), hex(packed), frame.to_string()))
        .collect();
    for s in [&long16, &long32] {
        rows.push((
            format!("\"{s}\""),
            msgpack_str(s),
            format!("{{\"message\": \"{s}\"}}"),
        ));
    }
    for (text, packed, frame) in &rows {
        let shown = &text[..text.len().min(60)];
        send_text(&mut member, &format!("{{\"message\": {text}}}"));
        let (channel, payload) = spy.next_message();
        assert_eq!(channel, group("wire"));
        assert_eq!(
            payload,
            event(packed),
            "msgpack for {shown}: got {:02x?}",
            &payload[..payload.len().min(80)]
        );
        assert_eq!(&recv_text(&mut member), frame, "frame for {shown}");
        assert_eq!(&recv_text(&mut other), frame, "frame for {shown}");
    }

    // Extra fields are not carried; the event is the consumer's dict.
    send_text(
        &mut member,
        r#"{"user": "ignored", "message": "hi", "n": 1}"#,
    );
    assert_eq!(spy.next_message().1, event(&hex("a26869")));
    assert_eq!(recv_text(&mut member), r#"{"message": "hi"}"#);
    assert_eq!(recv_text(&mut other), r#"{"message": "hi"}"#);

    // An integer msgpack cannot carry (Python's packb raises on it too) is
    // refused to its sender and never published.
    for big in ["18446744073709551616", "-9223372036854775809"] {
        send_text(&mut member, &format!("{{\"message\": {big}}}"));
        let reply: Value = serde_json::from_str(&recv_text(&mut member)).unwrap();
        assert!(reply["error"].is_string(), "{big}: {reply}");
    }
    say(&mut member, json!("after the refusals"));
    let (_, payload) = spy.next_message();
    assert_eq!(payload, event(&msgpack_str("after the refusals")));
    assert_eq!(
        recv_text(&mut other),
        r#"{"message": "after the refusals"}"#
    );
    assert_eq!(
        recv_text(&mut member),
        r#"{"message": "after the refusals"}"#
    );
}

/// A Django back end's `group_send` (a raw msgpack PUBLISH) reaches every
/// member on every node as the exact text the Channels consumer would send.
#[test]
fn a_django_publish_reaches_members_on_every_node_as_json_dumps() {
    let redis = RedisServer::start();
    let a = node(&[&redis]);
    let b = node(&[&redis]);
    let mut members = [a.chat("django"), a.chat("django"), b.chat("django")];
    redis.wait_numsub(&group("django"), 2);
    let mut pubc = redis.client();

    let mut rows: Vec<(String, Vec<u8>, String)> = DECODE
        .iter()
        .map(|(what, payload, frame)| (what.to_string(), hex(payload), frame.to_string()))
        .collect();
    for (text, packed, frame) in ENCODE {
        rows.push((text.to_string(), event(&hex(packed)), frame.to_string()));
    }
    // 100 nested arrays: deeper than any chat needs, well within Python's limits.
    let mut deep = vec![0x91; 99];
    deep.push(0x90);
    rows.push((
        "100 nested arrays".into(),
        event(&deep),
        format!("{{\"message\": {}{}}}", "[".repeat(100), "]".repeat(100)),
    ));
    for (what, payload, frame) in &rows {
        assert_eq!(pubc.publish(&group("django"), payload), 2, "{what}");
        for (k, m) in members.iter_mut().enumerate() {
            assert_eq!(&recv_text(m), frame, "{what}: member {k}");
        }
    }
    assert!(b.metric("roomcast_backplane_received_total") >= rows.len() as u64);
}

/// SPEC section 9: a member's identity crosses nodes. What roomcast
/// publishes for a member with an identity is byte for byte channels_redis's
/// `group_send` of `{"type", "message", "user"}`, and such an event (from
/// any node, or Django) reaches members on every node as the Channels
/// consumer would write it, the user after the message.
#[test]
fn an_identity_crosses_nodes_as_channels_writes_it() {
    for (text, user, packed, frame) in USER_ENCODE {
        let payload = roomcast::backplane::encode_publish(text, Some(user), 1 << 20).unwrap();
        assert_eq!(payload, hex(packed), "{text} by {user}");
        let mut decoded = Vec::new();
        roomcast::backplane::msgpack::decode_chat_event(&payload, &mut decoded).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), *frame);
    }
    let redis = RedisServer::start();
    let a = node(&[&redis]);
    let b = node(&[&redis]);
    let mut members = [a.chat("who"), b.chat("who")];
    redis.wait_numsub(&group("who"), 2);
    let mut pubc = redis.client();
    for (_, user, packed, frame) in USER_ENCODE {
        assert_eq!(pubc.publish(&group("who"), &hex(packed)), 2);
        for (k, m) in members.iter_mut().enumerate() {
            assert_eq!(&recv_text(m), frame, "{user}: member {k}");
        }
    }
}

/// The Channels tutorial names the event type "chat.message"; a consumer's
/// dispatch maps it to the same chat_message handler ("." becomes "_"), so
/// a Django back end that follows the tutorial reaches roomcast's members too.
#[test]
fn a_dotted_chat_message_type_is_handled_like_channels_does() {
    let redis = RedisServer::start();
    let relay = node(&[&redis]);
    let mut member = relay.chat("dotted");
    redis.wait_numsub(&group("dotted"), 1);
    // msgpack.packb({"type": "chat.message", "message": "dotted"})
    let payload = hex("82a474797065ac636861742e6d657373616765a76d657373616765a6646f74746564");
    redis.publish(&group("dotted"), &payload);
    assert_eq!(recv_text(&mut member), r#"{"message": "dotted"}"#);
}

/// Events no Channels consumer could turn into a frame are dropped and
/// counted by reason; nothing reaches the members.
#[test]
fn undeliverable_events_are_counted_and_dropped() {
    let redis = RedisServer::start();
    let relay = node(&[&redis]);
    let mut member = relay.chat("drops");
    redis.wait_numsub(&group("drops"), 1);

    let mut deep = vec![0x91; 10_000];
    deep.push(0xc0);
    let mut rows: Vec<(&str, String, Vec<u8>)> = DROP
        .iter()
        .map(|(reason, what, payload)| (*reason, what.to_string(), hex(payload)))
        .collect();
    rows.push(("too_deep", "10,000 nested arrays".into(), event(&deep)));
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for (reason, what, payload) in &rows {
        assert_eq!(redis.publish(&group("drops"), payload), 1, "{what}");
        *expected.entry(reason).or_default() += 1;
    }
    redis.publish(&group("drops"), &event(&msgpack_str("marker")));
    assert_eq!(
        recv_text(&mut member),
        r#"{"message": "marker"}"#,
        "the marker is the first thing delivered"
    );
    for (reason, n) in &expected {
        assert_eq!(
            relay.metric(&format!(
                "roomcast_backplane_dropped_total{{reason=\"{reason}\"}}"
            )),
            *n,
            "dropped_total{{reason={reason}}}"
        );
    }
    // The node is still subscribed and healthy.
    assert_eq!(health(&relay)["status"], "ok");
    say(&mut member, json!("still fine"));
    assert_eq!(recv_text(&mut member), r#"{"message": "still fine"}"#);
}

// ---- shards ------------------------------------------------------------

/// Two shards: each room lives on the Redis channels_redis's consistent hash
/// picks (asgi__group__chat_lobby -> shard 0, asgi__group__chat_a -> shard
/// 1 of 2). Losing one shard degrades only the rooms on it.
#[test]
fn rooms_go_to_the_shard_channels_redis_picks() {
    let r0 = RedisServer::start();
    let mut r1 = RedisServer::start();
    let n0 = node(&[&r0, &r1]);
    let n1 = node(&[&r0, &r1]);
    let mut lobby0 = n0.chat("lobby");
    let mut lobby1 = n1.chat("lobby");
    let mut a0 = n0.chat("a");
    let mut a1 = n1.chat("a");
    r0.wait_numsub(&group("lobby"), 2);
    r1.wait_numsub(&group("a"), 2);
    assert_eq!(r1.numsub(&group("lobby")), 0, "lobby is on shard 0 only");
    assert_eq!(r0.numsub(&group("a")), 0, "a is on shard 1 only");

    let h = wait_health(&n0, "ok");
    wait_health(&n1, "ok");
    assert_eq!(
        h["backplane"]["shards"],
        json!([{"shard": 0, "up": true}, {"shard": 1, "up": true}])
    );
    say(&mut a0, json!("on shard 1"));
    assert_eq!(recv_text(&mut a1), r#"{"message": "on shard 1"}"#);
    assert_eq!(recv_text(&mut a0), r#"{"message": "on shard 1"}"#);

    r1.kill();
    for n in [&n0, &n1] {
        let h = wait_health(n, "degraded");
        assert_eq!(h["backplane"]["shards"][0]["up"], true, "{h}");
        assert_eq!(h["backplane"]["shards"][1]["up"], false, "{h}");
        assert_eq!(n.metric("roomcast_backplane_up{shard=\"0\"}"), 1);
        assert_eq!(n.metric("roomcast_backplane_up{shard=\"1\"}"), 0);
    }
    // Shard 0 still carries its rooms across nodes...
    say(&mut lobby1, json!("shard 0 is fine"));
    assert_eq!(recv_text(&mut lobby0), r#"{"message": "shard 0 is fine"}"#);
    assert_eq!(recv_text(&mut lobby1), r#"{"message": "shard 0 is fine"}"#);
    // ...and shard 1's rooms work locally.
    say(&mut a0, json!("local only"));
    assert_eq!(recv_text(&mut a0), r#"{"message": "local only"}"#);
    say(&mut a1, json!("local too"));
    assert_eq!(recv_text(&mut a1), r#"{"message": "local too"}"#);
    assert!(n0.metric("roomcast_backplane_fallback_total") >= 1);

    r1.restart();
    for n in [&n0, &n1] {
        wait_health(n, "ok");
    }
    r1.wait_numsub(&group("a"), 2);
    say(&mut a1, json!("across again"));
    assert_eq!(recv_text(&mut a0), r#"{"message": "across again"}"#);
    assert_eq!(recv_text(&mut a1), r#"{"message": "across again"}"#);
}

// ---- faults --------------------------------------------------------------

/// Redis dies: every node says degraded, rooms keep working on each node
/// (locally), then Redis comes back on the same port: the nodes reconnect,
/// resubscribe every live room, and chat crosses nodes again.
#[test]
fn redis_lost_and_back() {
    let mut redis = RedisServer::start();
    let n0 = node(&[&redis]);
    let n1 = node(&[&redis]);
    let mut c0 = n0.chat("fault");
    let mut c0b = n0.chat("fault");
    let mut c1 = n1.chat("fault");
    // Many live rooms, so resubscribing is more than one command.
    let crowd: Vec<Client> = (0..40).map(|k| n1.chat(&format!("crowd-{k}"))).collect();
    redis.wait_numsub(&group("fault"), 2);
    for k in 0..40 {
        redis.wait_numsub(&group(&format!("crowd-{k}")), 1);
    }
    for n in [&n0, &n1] {
        let h = wait_health(n, "ok");
        assert_eq!(
            h["backplane"],
            json!({"shards": [{"shard": 0, "up": true}]})
        );
        assert_eq!(n.metric("roomcast_backplane_up{shard=\"0\"}"), 1);
    }
    say(&mut c1, json!("before"));
    for c in [&mut c0, &mut c0b, &mut c1] {
        assert_eq!(recv_text(c), r#"{"message": "before"}"#);
    }

    redis.kill();
    for n in [&n0, &n1] {
        let h = wait_health(n, "degraded");
        assert_eq!(h["backplane"]["shards"][0]["up"], false, "{h}");
        n.wait_metric("roomcast_backplane_up{shard=\"0\"}", 0);
    }
    say(&mut c0, json!("local on node 0"));
    assert_eq!(recv_text(&mut c0), r#"{"message": "local on node 0"}"#);
    assert_eq!(recv_text(&mut c0b), r#"{"message": "local on node 0"}"#);
    say(&mut c1, json!("local on node 1"));
    assert_eq!(
        recv_text(&mut c1),
        r#"{"message": "local on node 1"}"#,
        "node 1 cannot have seen node 0's message"
    );
    assert!(n0.metric("roomcast_backplane_fallback_total") >= 1);
    assert!(n1.metric("roomcast_backplane_fallback_total") >= 1);
    // A room created during the outage is subscribed once Redis is back.
    let mut late0 = n0.chat("born-during-outage");
    let mut late1 = n1.chat("born-during-outage");

    redis.restart();
    for n in [&n0, &n1] {
        let h = wait_health(n, "ok");
        assert_eq!(h["backplane"]["shards"][0]["up"], true, "{h}");
        assert_eq!(n.metric("roomcast_backplane_up{shard=\"0\"}"), 1);
        assert!(n.metric("roomcast_backplane_reconnects_total") >= 1);
    }
    redis.wait_numsub(&group("fault"), 2);
    redis.wait_numsub(&group("born-during-outage"), 2);
    for k in 0..40 {
        redis.wait_numsub(&group(&format!("crowd-{k}")), 1);
    }
    drop(crowd);
    say(&mut c0, json!("crosses again"));
    for c in [&mut c0, &mut c0b, &mut c1] {
        assert_eq!(recv_text(c), r#"{"message": "crosses again"}"#);
    }
    say(&mut late1, json!("new room crosses"));
    assert_eq!(recv_text(&mut late0), r#"{"message": "new room crosses"}"#);
    assert_eq!(recv_text(&mut late1), r#"{"message": "new room crosses"}"#);
}

/// No Redis when the relay starts: it serves anyway (degraded, rooms local),
/// keeps trying, and joins the backplane when Redis appears.
#[test]
fn redis_down_at_start_then_appears() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let relay = Relay::start_with(|c| {
        c.redis = vec![url.clone()];
        c.redis_retry_max = Duration::from_millis(400);
    });
    let h = wait_health(&relay, "degraded");
    assert_eq!(
        h["backplane"],
        json!({"shards": [{"shard": 0, "up": false}]})
    );
    assert_eq!(relay.metric("roomcast_backplane_up{shard=\"0\"}"), 0);
    let mut member = relay.chat("early");
    say(&mut member, json!("alone for now"));
    assert_eq!(recv_text(&mut member), r#"{"message": "alone for now"}"#);
    assert!(relay.metric("roomcast_backplane_fallback_total") >= 1);

    let redis = RedisServer::start_on(port);
    wait_health(&relay, "ok");
    assert_eq!(relay.metric("roomcast_backplane_up{shard=\"0\"}"), 1);
    redis.wait_numsub(&group("early"), 1);
    redis.publish(&group("early"), &event(&msgpack_str("from django")));
    assert_eq!(recv_text(&mut member), r#"{"message": "from django"}"#);
    let mut spy = redis.client();
    spy.subscribe(&group("early"));
    say(&mut member, json!("via redis now"));
    assert_eq!(spy.next_message().1, event(&msgpack_str("via redis now")));
    assert_eq!(recv_text(&mut member), r#"{"message": "via redis now"}"#);
}

/// A Redis that stops answering (SIGSTOP) for longer than --redis-timeout is
/// treated as lost: degraded, rooms local; after SIGCONT the nodes reconnect.
/// The message in flight when it stalled is never silently lost: its sender
/// gets it back or gets an error (and may, at least once semantics, see a
/// late copy once Redis runs the PUBLISH it had buffered).
#[test]
fn a_redis_stalled_past_the_timeout_degrades_and_recovers() {
    let mut redis = RedisServer::start();
    let tweak = |c: &mut Config| c.redis_timeout = Duration::from_secs(1);
    let n0 = node_with(&[&redis], tweak);
    let n1 = node_with(&[&redis], tweak);
    let mut c0 = n0.chat("stalled");
    let mut c1 = n1.chat("stalled");
    redis.wait_numsub(&group("stalled"), 2);
    // Redis has the subscriptions; make sure the nodes have seen the replies.
    wait_health(&n0, "ok");
    wait_health(&n1, "ok");

    redis.pause();
    say(&mut c0, json!("in flight"));
    wait_health(&n0, "degraded");
    assert_eq!(n0.metric("roomcast_backplane_up{shard=\"0\"}"), 0);
    let first: Value = serde_json::from_str(&recv_text(&mut c0)).unwrap();
    assert!(
        first == json!({"message": "in flight"}) || first["error"].is_string(),
        "the stalled message comes back or is refused, got {first}"
    );
    say(&mut c0, json!("local while stalled"));
    assert_eq!(recv_text(&mut c0), r#"{"message": "local while stalled"}"#);

    redis.resume();
    for n in [&n0, &n1] {
        wait_health(n, "ok");
    }
    redis.wait_numsub(&group("stalled"), 2);
    say(&mut c0, json!("crosses after the stall"));
    for (k, c) in [&mut c0, &mut c1].into_iter().enumerate() {
        loop {
            let text = recv_text(c);
            if text == r#"{"message": "crosses after the stall"}"# {
                break;
            }
            assert_eq!(
                text, r#"{"message": "in flight"}"#,
                "member {k}: only a late copy of the stalled message may come first"
            );
        }
    }
    assert!(n0.metric("roomcast_backplane_reconnects_total") >= 1);
}

/// A stalled Redis (SIGSTOP): publishes queue up to --redis-queue bytes, then
/// senders get an error frame naming the backplane and rejected_total grows.
/// After SIGCONT every message that was not refused is delivered, in order.
#[test]
fn a_stalled_redis_fills_the_queue_then_everything_accepted_arrives() {
    let mut redis = RedisServer::start();
    let relay = node_with(&[&redis], |c| {
        c.max_message_size = 64 * 1024;
        c.max_frame_size = 64 * 1024;
        c.redis_queue = 128 * 1024;
        c.max_send_queue = 256 * 1024 * 1024;
        // Stay clear of the stall detector: this test is about the queue.
        c.redis_timeout = Duration::from_secs(120);
    });
    let mut listener = relay.chat("stall");
    let mut sender = raw_ws(relay.addr, "/ws/chat/stall/");
    sender.set_write_timeout(Some(TIMEOUT)).unwrap();
    redis.wait_numsub(&group("stall"), 1);
    wait_health(&relay, "ok");

    // The sender's frames, read on their own thread so writing never waits.
    let errors = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut reading = sender.try_clone().unwrap();
    reading
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let seen_errors = errors.clone();
    let reader = std::thread::spawn(move || {
        while let Ok((_, op, payload)) = read_frame(&mut reading) {
            if op == 0x8 {
                break;
            }
            if payload.starts_with(b"{\"error\"") {
                seen_errors.fetch_add(1, Ordering::SeqCst);
            }
            if tx.send(payload).is_err() {
                break;
            }
        }
    });

    redis.pause();
    let pad = "p".repeat(16_000);
    let mut sent = 0usize;
    while errors.load(Ordering::SeqCst) < 3 {
        assert!(
            sent < 4000,
            "4000 messages of 16 KB into a stalled Redis with a 128 KiB queue, and no refusal"
        );
        let text = format!("{{\"message\": \"{sent}:{pad}\"}}");
        sender
            .write_all(&frame(true, 0x1, text.as_bytes()))
            .expect("write to the relay");
        sent += 1;
    }
    relay.wait_metric("roomcast_messages_received_total", sent as u64);
    wait_metric_at_least(&relay, "roomcast_backplane_rejected_total", 3);
    let queued = relay.metric("roomcast_backplane_queue_bytes");
    assert!(queued > 0, "the accepted messages wait in the queue");
    assert!(
        queued <= 128 * 1024,
        "the queue holds at most --redis-queue bytes, not {queued}"
    );
    // Nothing is delivered while Redis is stalled: the sender gets refusals only.
    let is_refusal = |payload: &[u8]| -> bool {
        let v: Value = serde_json::from_slice(payload).expect("a JSON frame");
        match v["error"].as_str() {
            Some(text) => {
                assert!(
                    text.to_lowercase().contains("backplane"),
                    "the error says the backplane is the problem: {text}"
                );
                true
            }
            None => false,
        }
    };
    let mut refusals = 0;
    while let Ok(payload) = rx.try_recv() {
        assert!(
            is_refusal(&payload),
            "before SIGCONT the sender got {}",
            String::from_utf8_lossy(&payload[..payload.len().min(80)])
        );
        refusals += 1;
    }
    assert!(refusals >= 3);

    redis.resume();
    // The queue drains into Redis, then a last message marks the end.
    relay.wait_metric("roomcast_backplane_queue_bytes", 0);
    let end = r#"{"message": "after the stall"}"#;
    sender.write_all(&frame(true, 0x1, end.as_bytes())).unwrap();
    let mut delivered: Vec<u64> = Vec::new();
    loop {
        let text = recv_text(&mut listener);
        if text == end {
            break;
        }
        let v: Value = serde_json::from_str(&text).unwrap();
        let body = v["message"].as_str().expect("a chat frame");
        let (n, rest) = body.split_once(':').unwrap();
        let n: u64 = n.parse().unwrap();
        assert_eq!(rest.len(), pad.len());
        assert!(
            !matches!(delivered.last(), Some(&l) if l >= n),
            "message {n} after {:?}: out of order or repeated",
            delivered.last()
        );
        delivered.push(n);
    }
    // The sender's own stream: its refusals, then the same deliveries.
    let mut own = 0;
    loop {
        let payload = rx.recv_timeout(TIMEOUT).expect("the sender's frames");
        if payload == end.as_bytes() {
            break;
        }
        if is_refusal(&payload) {
            refusals += 1;
        } else {
            own += 1;
        }
    }
    assert_eq!(own, delivered.len(), "the sender saw what the listener saw");
    assert_eq!(
        delivered.len() + refusals,
        sent,
        "{sent} sent = {} delivered + {refusals} refused: none silently lost",
        delivered.len()
    );
    assert_eq!(
        relay.metric("roomcast_backplane_rejected_total"),
        refusals as u64
    );
    assert_eq!(
        relay.metric("roomcast_backplane_published_total"),
        delivered.len() as u64 + 1
    );
    // The reader holds a clone of the socket: shut the connection itself.
    let _ = sender.shutdown(Shutdown::Both);
    let _ = reader.join();
}

// ---- the binary ----------------------------------------------------------

/// The flags as an operator passes them: --redis, --redis-prefix (only nodes
/// with the same prefix share rooms), --redis-retry-max; bad values fail at
/// start with a message.
#[test]
fn the_binary_takes_the_redis_flags() {
    let redis = RedisServer::start();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--bind", &addr, "--redis", &redis.url()])
        .args(["--redis-prefix", "tenant1", "--redis-retry-max", "300ms"])
        .args(["--redis-queue", "2MiB", "--redis-timeout", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn roomcast");
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(&addr).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("roomcast exited with {status}");
        }
        assert!(Instant::now() < deadline, "roomcast did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let child = Reap(child);
    let same_prefix = node_with(&[&redis], |c| c.redis_prefix = "tenant1".into());
    let default_prefix = node(&[&redis]);

    let mut bin_member = connect(&format!("ws://{addr}/ws/chat/flags/"));
    let mut same = same_prefix.chat("flags");
    let mut other = default_prefix.chat("flags");
    redis.wait_numsub("tenant1__group__chat_flags", 2);
    redis.wait_numsub(&group("flags"), 1);

    say(&mut bin_member, json!("from the binary"));
    assert_eq!(recv_text(&mut same), r#"{"message": "from the binary"}"#);
    assert_eq!(
        recv_text(&mut bin_member),
        r#"{"message": "from the binary"}"#
    );
    say(&mut other, json!("another prefix"));
    assert_eq!(
        recv_text(&mut other),
        r#"{"message": "another prefix"}"#,
        "prefixes are separate namespaces"
    );
    say(&mut same, json!("back to the binary"));
    assert_eq!(
        recv_text(&mut bin_member),
        r#"{"message": "back to the binary"}"#
    );
    drop(child);

    for (args, needle) in [
        (vec!["--redis", "http://127.0.0.1:6379"], "--redis"),
        (
            vec!["--redis", &redis.url(), "--redis-queue", "1KiB"],
            "--redis-queue",
        ),
        (
            vec!["--redis", &redis.url(), "--redis-prefix", ""],
            "--redis-prefix",
        ),
        (vec!["--publish-token", ""], "--publish-token"),
        (
            vec![
                "--redis",
                "rediss://127.0.0.1:1",
                "--redis-tls-ca",
                "/nonexistent/ca.pem",
            ],
            "--redis-tls-ca /nonexistent/ca.pem",
        ),
        (
            vec!["--redis", &redis.url(), "--redis-tls-ca", "/etc/hostname"],
            "no --redis URL is rediss://",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["--bind", "127.0.0.1:0"])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run roomcast");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail at start");
        assert!(
            err.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {err}"
        );
    }
}

/// Without --redis, roomcast is a single node as before.
#[test]
fn without_redis_health_has_no_backplane() {
    let relay = Relay::start();
    let h = health(&relay);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["backplane"], Value::Null);
    assert!(h.as_object().unwrap().contains_key("backplane"), "{h}");
    let mut member = relay.chat("solo");
    send_text(&mut member, r#"{"message": "caf\u00e9"}"#);
    assert_eq!(
        recv_text(&mut member),
        r#"{"message": "caf\u00e9"}"#,
        "raw JSON copied through"
    );
}

// ---- a hostile or broken Redis (issue 13) --------------------------------

/// One PUBLISH larger than anything the relay delivers (1 MB, with
/// --redis-queue 256 KiB and --max-message-size 64 KiB) is still a
/// well-framed RESP string: it is skipped as it streams by, counted as
/// too_large, and the link stays up. It used to be taken for a framing
/// error, so the link dropped and reconnected, and what was published
/// meanwhile was lost (any Redis client, e.g. a Django group_send, could do
/// that to every node).
#[test]
fn a_publish_larger_than_the_redis_queue_is_skipped_not_a_disconnect() {
    let redis = RedisServer::start();
    let relay = node_with(&[&redis], |c| {
        c.max_message_size = 64 * 1024;
        c.max_frame_size = 64 * 1024;
        c.redis_queue = 256 * 1024;
    });
    let mut member = relay.chat("huge");
    redis.wait_numsub(&group("huge"), 1);
    wait_health(&relay, "ok");
    let huge = event(&msgpack_str(&"h".repeat(1_000_000)));
    let mut publisher = redis.client();
    for k in 0..4 {
        assert_eq!(publisher.publish(&group("huge"), &huge), 1);
        let after = event(&msgpack_str(&format!("after {k}")));
        assert_eq!(publisher.publish(&group("huge"), &after), 1);
    }
    for k in 0..4 {
        assert_eq!(
            recv_text(&mut member),
            format!(r#"{{"message": "after {k}"}}"#),
            "a message published right after a huge one arrives"
        );
    }
    assert_eq!(
        relay.metric("roomcast_backplane_dropped_total{reason=\"too_large\"}"),
        4
    );
    assert_eq!(
        relay.metric("roomcast_backplane_reconnects_total"),
        0,
        "the link never dropped"
    );
    assert_eq!(health(&relay)["status"], "ok");
}

/// A reply that never ends (an array of 65,536 strings of 60 KB from a
/// hostile or broken Redis) is cut off once the relay has buffered about
/// 2 × --max-message-size of it: that connection is dropped and the relay
/// reconnects. It used to buffer all of it (and parse the buffer again from
/// the start on every read).
#[test]
fn a_reply_that_never_ends_is_cut_off_at_the_link_bound() {
    let (tx, rx) = mpsc::channel::<(usize, bool)>();
    let fake = FakeRedis::start(move |mut conn| {
        if conn.hello().is_none() {
            return;
        }
        let element = format!("$60000\r\n{}\r\n", "x".repeat(60_000)).into_bytes();
        let (mut written, mut cut) = (0, false);
        if conn.write(b">65536\r\n").is_ok() {
            while written < 32 << 20 {
                if conn.write(&element).is_err() {
                    cut = true;
                    break;
                }
                written += element.len();
            }
        }
        let _ = tx.send((written, cut));
    });
    let _relay = Relay::start_with(|c| {
        c.redis = vec![fake.url()];
        c.max_message_size = 64 * 1024;
        c.max_frame_size = 64 * 1024;
        c.redis_retry_max = Duration::from_millis(400);
    });
    let (written, cut) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the fake Redis's first connection ended");
    assert!(
        cut && written < 16 << 20,
        "the relay took {written} bytes of one endless reply without cutting it off"
    );
    fake.wait_connections(2);
}

/// A Redis that trickles one byte every 0.3 s (never a whole reply) while a
/// PUBLISH waits for its answer is as good as dead: the relay gives up on it
/// once its oldest unanswered command is --redis-timeout old, and delivers
/// the message to the local members. It used to count any byte as life, so
/// the shard stayed "up" and the sender never got its message back.
#[test]
fn a_redis_that_trickles_bytes_times_out_by_its_oldest_command() {
    let fake = FakeRedis::start(|mut conn| {
        if conn.hello().is_none() {
            return;
        }
        while let Some(cmd) = conn.command() {
            let answered = match cmd[0].as_slice() {
                b"SUBSCRIBE" | b"UNSUBSCRIBE" => conn.confirm(&cmd),
                b"PING" => conn.write(b"+PONG\r\n").ok(),
                // A PUBLISH: an answer that never ends.
                _ => {
                    let _ = conn.write(b"+");
                    while conn.write(b"z").is_ok() {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    None
                }
            };
            if answered.is_none() {
                return;
            }
        }
    });
    let relay = Relay::start_with(|c| {
        c.redis = vec![fake.url()];
        c.redis_timeout = Duration::from_secs(1);
        c.redis_retry_max = Duration::from_millis(400);
    });
    wait_health(&relay, "ok");
    let mut member = relay.chat("trickle");
    say(&mut member, json!("anyone there?"));
    assert_eq!(
        recv_text(&mut member),
        r#"{"message": "anyone there?"}"#,
        "the message comes back (locally) once the trickling Redis is given up"
    );
    assert!(relay.metric("roomcast_backplane_reconnects_total") >= 1);
}

/// The same with nothing to answer: a Redis that, once the room is
/// subscribed, trickles a reply nobody asked for. A node that only listens
/// still pings it (every half --redis-timeout of its own silence, whatever
/// Redis sends), the ping goes unanswered, and the shard is given up.
#[test]
fn a_listening_node_pings_a_redis_that_trickles_unasked() {
    let fake = FakeRedis::start(|mut conn| {
        if conn.hello().is_none() {
            return;
        }
        while let Some(cmd) = conn.command() {
            if cmd[0] == b"SUBSCRIBE" {
                if conn.confirm(&cmd).is_none() {
                    return;
                }
                let _ = conn.write(b"+");
                while conn.write(b"z").is_ok() {
                    std::thread::sleep(Duration::from_millis(300));
                }
                return;
            }
            if conn.write(b"+PONG\r\n").is_err() {
                return;
            }
        }
    });
    let relay = Relay::start_with(|c| {
        c.redis = vec![fake.url()];
        c.redis_timeout = Duration::from_secs(1);
        c.redis_retry_max = Duration::from_millis(400);
    });
    wait_health(&relay, "ok");
    let _member = relay.chat("listening");
    wait_metric_at_least(&relay, "roomcast_backplane_reconnects_total", 1);
    fake.wait_connections(2);
}

/// /healthz is on the public port: it shows each shard's index and state,
/// never where Redis is or who the relay logs in as (the log says that at
/// start, and /metrics has roomcast_backplane_up{shard="N"}).
#[test]
fn healthz_shows_shard_states_not_redis_addresses() {
    let port = free_port();
    let relay = Relay::start_with(|c| {
        c.redis = vec![format!("redis://opsuser:hunter2@127.0.0.1:{port}/0")];
        c.redis_retry_max = Duration::from_millis(400);
    });
    let (status, _, body) = relay.get("/healthz");
    assert_eq!(status, 200);
    for secret in ["opsuser", "hunter2", "127.0.0.1", &format!(":{port}")] {
        assert!(!body.contains(secret), "/healthz shows {secret:?}: {body}");
    }
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        h["backplane"],
        json!({"shards": [{"shard": 0, "up": false}]})
    );
    assert_eq!(relay.metric("roomcast_backplane_up{shard=\"0\"}"), 0);
}

// ---- rediss:// (TLS) ---------------------------------------------------------

/// Two nodes on a Redis that speaks TLS only (Debian's redis-server with
/// --tls-port, a certificate for 127.0.0.1 made at test time): they connect
/// with rustls, checking the certificate against --redis-tls-ca and the
/// URL's host, and a room spans them both ways.
#[test]
fn two_nodes_share_a_room_through_redis_over_tls() {
    let redis = RedisServer::start_tls();
    assert!(redis.url().starts_with("rediss://"));
    let nodes: Vec<Relay> = (0..2)
        .map(|_| {
            node_with(&[&redis], |c| {
                c.redis_tls_ca = Some(redis.ca_file());
            })
        })
        .collect();
    for n in &nodes {
        let h = wait_health(n, "ok");
        assert_eq!(
            h["backplane"],
            json!({"shards": [{"shard": 0, "up": true}]})
        );
    }
    // A join completes once Redis has confirmed the room's SUBSCRIBE.
    let mut a = nodes[0].chat("tls");
    let mut b = nodes[1].chat("tls");
    say(&mut a, json!("over TLS"));
    assert_eq!(recv_text(&mut b), r#"{"message": "over TLS"}"#);
    assert_eq!(recv_text(&mut a), r#"{"message": "over TLS"}"#);
    let big = "é".repeat(100_000);
    say(&mut b, json!(big));
    let want = format!("{{\"message\": \"{}\"}}", r"\u00e9".repeat(100_000));
    assert!(recv_text(&mut a) == want, "a 200 KB message crosses");
    assert!(recv_text(&mut b) == want);
    for n in &nodes {
        assert_eq!(n.metric("roomcast_backplane_fallback_total"), 0);
        assert_eq!(n.metric("roomcast_backplane_reconnects_total"), 0);
    }
}

/// A certificate the node cannot trust (signed by another CA than
/// --redis-tls-ca's) is refused: the shard stays down (degraded, rooms
/// local), and no message goes to that Redis.
#[test]
fn a_redis_certificate_from_another_ca_is_refused() {
    let redis = RedisServer::start_tls();
    let other = std::env::temp_dir().join(format!(
        "roomcast-other-ca-{}-{}",
        std::process::id(),
        redis.port
    ));
    let pki = common::redis::TestPki::make(&other);
    let relay = node_with(&[&redis], |c| c.redis_tls_ca = Some(pki.ca.clone()));
    let trusting = node_with(&[&redis], |c| c.redis_tls_ca = Some(redis.ca_file()));
    wait_health(&trusting, "ok");
    // Long enough for several attempts (the back-off starts at 100 ms).
    std::thread::sleep(Duration::from_millis(800));
    let h = health(&relay);
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(relay.metric("roomcast_backplane_up{shard=\"0\"}"), 0);
    let mut member = relay.chat("untrusted");
    let mut far = trusting.chat("untrusted");
    say(&mut member, json!("stays here"));
    assert_eq!(recv_text(&mut member), r#"{"message": "stays here"}"#);
    say(&mut far, json!("from the trusting node"));
    assert_eq!(
        recv_text(&mut far),
        r#"{"message": "from the trusting node"}"#
    );
    let _ = std::fs::remove_dir_all(&other);
}
