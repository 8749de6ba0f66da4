//! The back-end publish API over raw sockets: `POST /publish/<room>/` with
//! `Authorization: Bearer <token>` and `{"message": v}` (or an array of them),
//! every answer it gives, delivery to the room's members (and no other
//! room's), batches in order, keep-alive, and with Redis, delivery to members
//! on another node.

mod common;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TOKEN: &str = "s3cret-token";

/// A response: the status line, the whole head, the body.
struct Response {
    status_line: String,
    head: String,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}\n{}", self.head, self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A POST with a body and a Content-Length, plus `extra` header lines.
fn post(path: &str, extra: &[&str], body: &str) -> String {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: x\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req
}

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

/// Sends `request` with `Connection: close` added and reads the answer until
/// EOF. A reset after the answer (the relay closing with our body unread)
/// still counts as the end.
fn exchange(addr: SocketAddr, request: &str) -> Response {
    let request = request.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut all = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !all.is_empty() => break,
            Err(e) => panic!("reading the answer to {request:?}: {e}"),
        }
    }
    split(&all)
}

fn split(all: &[u8]) -> Response {
    let text = String::from_utf8_lossy(all).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head: {text:?}"));
    Response {
        status_line: head.lines().next().unwrap_or("").to_string(),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Reads one response delimited by its Content-Length (keep-alive).
fn read_response(s: &mut TcpStream) -> Response {
    let mut all = Vec::new();
    let mut byte = [0u8; 1];
    while !all.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("a response head");
        all.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&all).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("the response body");
    all.extend_from_slice(&body);
    split(&all)
}

/// Checks an error answer: the exact status line and a `{"error": "..."}` body.
fn assert_error(r: &Response, status_line: &str, what: &str) {
    assert_eq!(r.status_line, status_line, "{what}\n{}\n{}", r.head, r.body);
    let v = r.json();
    let text = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no \"error\" string in {v}"));
    assert!(!text.is_empty(), "{what}: the error says what was wrong");
    assert_eq!(v.as_object().unwrap().len(), 1, "{what}: {v}");
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: {}",
        r.head
    );
}

fn assert_published(r: &Response, n: u64, what: &str) {
    assert_eq!(
        r.status_line, "HTTP/1.1 202 Accepted",
        "{what}\n{}\n{}",
        r.head, r.body
    );
    assert_eq!(r.json(), json!({ "published": n }), "{what}");
}

// ---- every answer ------------------------------------------------------

#[test]
fn every_answer_of_the_publish_api() {
    let relay = Relay::start_with(|c| {
        c.publish_token = Some(TOKEN.into());
        c.max_message_size = 1024;
        c.max_frame_size = 1024;
    });
    let mut member = relay.chat("lobby");
    let a = auth();
    let ok = r#"{"message": "one"}"#;

    let r = exchange(relay.addr, &post("/publish/lobby/", &[&a], ok));
    assert_published(&r, 1, "a valid request");
    let r = exchange(
        relay.addr,
        &post("/publish/lobby", &[&a], r#"{"message": "two"}"#),
    );
    assert_published(&r, 1, "without the trailing slash");

    let long_room = format!("/publish/{}/", "r".repeat(96));
    let big = format!("{{\"message\": \"{}\"}}", "x".repeat(2000));
    let rows: Vec<(String, &str, &str)> = vec![
        (
            post("/publish/lobby/", &[], ok),
            "HTTP/1.1 401 Unauthorized",
            "no Authorization",
        ),
        (
            post("/publish/lobby/", &["Authorization: Basic dXNlcjpwYXNz"], ok),
            "HTTP/1.1 401 Unauthorized",
            "Basic, not Bearer",
        ),
        (
            post("/publish/lobby/", &["Authorization: Bearer wrong"], ok),
            "HTTP/1.1 403 Forbidden",
            "a wrong token",
        ),
        (
            post("/publish/lobby/", &["Authorization: Bearer s3cret"], ok),
            "HTTP/1.1 403 Forbidden",
            "a prefix of the token",
        ),
        (
            format!("GET /publish/lobby/ HTTP/1.1\r\nHost: x\r\n{a}\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed",
            "GET",
        ),
        (
            post("/publish/lobby/", &[&a], ok).replacen("POST", "PUT", 1),
            "HTTP/1.1 405 Method Not Allowed",
            "PUT",
        ),
        (
            post("/publish/bad%20room/", &[&a], ok),
            "HTTP/1.1 400 Bad Request",
            "a bad room name",
        ),
        (
            post(&long_room, &[&a], ok),
            "HTTP/1.1 400 Bad Request",
            "a 96-character room name",
        ),
        (
            post("/publish/lobby/", &[&a], "not json"),
            "HTTP/1.1 400 Bad Request",
            "invalid JSON",
        ),
        (
            post("/publish/lobby/", &[&a], r#"{"message": "unterminated"#),
            "HTTP/1.1 400 Bad Request",
            "truncated JSON",
        ),
        (
            post("/publish/lobby/", &[&a], "[1, 2]"),
            "HTTP/1.1 400 Bad Request",
            "an array of non-objects",
        ),
        (
            post("/publish/lobby/", &[&a], "\"text\""),
            "HTTP/1.1 400 Bad Request",
            "a string",
        ),
        (
            post("/publish/lobby/", &[&a], r#"{"text": "hi"}"#),
            "HTTP/1.1 400 Bad Request",
            "no \"message\"",
        ),
        (
            post(
                "/publish/lobby/",
                &[&a],
                r#"[{"message": "fine"}, {"text": "not fine"}]"#,
            ),
            "HTTP/1.1 400 Bad Request",
            "a batch with one bad element (none of it is published)",
        ),
        (
            format!(
                "POST /publish/lobby/ HTTP/1.1\r\nHost: x\r\n{a}\r\nTransfer-Encoding: chunked\r\n\r\n12\r\n{{\"message\": \"c\"}}\r\n0\r\n\r\n"
            ),
            "HTTP/1.1 411 Length Required",
            "chunked",
        ),
        (
            format!("POST /publish/lobby/ HTTP/1.1\r\nHost: x\r\n{a}\r\n\r\n"),
            "HTTP/1.1 411 Length Required",
            "no Content-Length",
        ),
        (
            post("/publish/lobby/", &[&a], &big),
            "HTTP/1.1 413 Content Too Large",
            "a body over --max-message-size",
        ),
    ];
    for (request, status_line, what) in &rows {
        let r = exchange(relay.addr, request);
        assert_error(&r, status_line, what);
        if status_line.contains(" 401 ") {
            // RFC 6750 section 3: the Bearer scheme, maybe with a realm.
            let challenge = r.header("WWW-Authenticate").unwrap_or_default();
            assert!(
                challenge == "Bearer" || challenge.starts_with("Bearer "),
                "{what}: WWW-Authenticate {challenge:?}"
            );
        }
        if status_line.contains(" 405 ") {
            assert_eq!(r.header("Allow").as_deref(), Some("POST"), "{what}");
        }
    }

    // The member got the two accepted messages and nothing else.
    assert_eq!(recv_json(&mut member), json!({"message": "one"}));
    assert_eq!(recv_json(&mut member), json!({"message": "two"}));
    say(&mut member, json!("marker"));
    assert_eq!(recv_json(&mut member), json!({"message": "marker"}));
}

/// Without --publish-token the API does not exist.
#[test]
fn no_token_configured_means_404() {
    let relay = Relay::start();
    let mut member = relay.chat("lobby");
    let r = exchange(
        relay.addr,
        &post("/publish/lobby/", &[&auth()], r#"{"message": "x"}"#),
    );
    assert_error(&r, "HTTP/1.1 404 Not Found", "the API is off");
    say(&mut member, json!("marker"));
    assert_eq!(recv_json(&mut member), json!({"message": "marker"}));
}

// ---- delivery ------------------------------------------------------------

#[test]
fn a_publish_reaches_its_room_and_no_other() {
    let relay = Relay::start_with(|c| c.publish_token = Some(TOKEN.into()));
    let mut news = relay.chat("news");
    let mut news2 = relay.chat("news");
    let mut sports = relay.chat("sports");
    let r = exchange(
        relay.addr,
        &post(
            "/publish/news/",
            &[&auth()],
            r#"{"message": {"headline": "Rust 2.0", "n": 1}, "ignored": true}"#,
        ),
    );
    assert_published(&r, 1, "one message");
    let want = json!({"message": {"headline": "Rust 2.0", "n": 1}});
    assert_eq!(recv_json(&mut news), want);
    assert_eq!(recv_json(&mut news2), want);
    say(&mut sports, json!("sports only"));
    assert_eq!(
        recv_json(&mut sports),
        json!({"message": "sports only"}),
        "the other room got nothing before its own message"
    );
    // Publishing to a room nobody is in is accepted and goes nowhere.
    let r = exchange(
        relay.addr,
        &post("/publish/empty/", &[&auth()], r#"{"message": 1}"#),
    );
    assert_published(&r, 1, "an empty room");
}

#[test]
fn a_batch_arrives_in_order() {
    let relay = Relay::start_with(|c| c.publish_token = Some(TOKEN.into()));
    let mut member = relay.chat("batch");
    let r = exchange(
        relay.addr,
        &post(
            "/publish/batch/",
            &[&auth()],
            r#"[{"message": "one"}, {"message": 2}, {"message": ["three"]}]"#,
        ),
    );
    assert_published(&r, 3, "a batch of three");
    assert_eq!(recv_json(&mut member), json!({"message": "one"}));
    assert_eq!(recv_json(&mut member), json!({"message": 2}));
    assert_eq!(recv_json(&mut member), json!({"message": ["three"]}));
}

/// Two requests on one connection, one after the other, then two pipelined.
#[test]
fn keep_alive_serves_several_publishes_on_one_connection() {
    let relay = Relay::start_with(|c| c.publish_token = Some(TOKEN.into()));
    let mut member = relay.chat("alive");
    let mut s = TcpStream::connect(relay.addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    for text in ["first", "second"] {
        let body = json!({ "message": text }).to_string();
        s.write_all(post("/publish/alive/", &[&auth()], &body).as_bytes())
            .unwrap();
        assert_published(&read_response(&mut s), 1, text);
        assert_eq!(recv_json(&mut member), json!({ "message": text }));
    }
    let two = format!(
        "{}{}",
        post("/publish/alive/", &[&auth()], r#"{"message": "third"}"#),
        post("/publish/alive/", &[&auth()], r#"{"message": "fourth"}"#)
    );
    s.write_all(two.as_bytes()).unwrap();
    assert_published(&read_response(&mut s), 1, "pipelined third");
    assert_published(&read_response(&mut s), 1, "pipelined fourth");
    assert_eq!(recv_json(&mut member), json!({"message": "third"}));
    assert_eq!(recv_json(&mut member), json!({"message": "fourth"}));
}

// ---- with Redis ----------------------------------------------------------

/// With --redis, a publish on a node that has no member in the room goes
/// through Redis (as channels_redis's msgpack) to the members on another node,
/// who get the Channels consumer's exact text.
#[test]
fn with_redis_a_publish_crosses_to_another_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let front = Relay::start_with(|c| {
        c.redis = vec![url.clone()];
        c.publish_token = Some(TOKEN.into());
    });
    let back = Relay::start_with(|c| c.redis = vec![url.clone()]);
    let mut member = back.chat("crossing");
    let mut spy = redis.client();
    spy.subscribe("asgi__group__chat_crossing");
    redis.wait_numsub("asgi__group__chat_crossing", 2);

    let r = exchange(
        front.addr,
        &post("/publish/crossing/", &[&auth()], r#"{"message": "café"}"#),
    );
    assert_published(&r, 1, "through Redis");
    // msgpack.packb({"type": "chat_message", "message": "café"})
    let mut want = b"\x82\xa4type\xacchat_message\xa7message".to_vec();
    want.extend_from_slice(b"\xa5caf\xc3\xa9");
    assert_eq!(spy.next_message().1, want);
    assert_eq!(recv_text(&mut member), r#"{"message": "caf\u00e9"}"#);

    let r = exchange(
        front.addr,
        &post(
            "/publish/crossing/",
            &[&auth()],
            r#"[{"message": 1}, {"message": [2.0]}, {"message": {"n": 3}}]"#,
        ),
    );
    assert_published(&r, 3, "a batch through Redis");
    for frame in [
        r#"{"message": 1}"#,
        r#"{"message": [2.0]}"#,
        r#"{"message": {"n": 3}}"#,
    ] {
        assert_eq!(recv_text(&mut member), frame);
    }
    assert_eq!(front.metric("roomcast_backplane_published_total"), 4);
}

/// A stalled Redis (SIGSTOP) and a small --redis-queue: publishes are
/// accepted until the queue is full, then answered 503 with Retry-After: 1.
/// After SIGCONT every accepted message is delivered, in order.
#[test]
fn a_full_backplane_queue_answers_503() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let relay = Relay::start_with(|c| {
        c.redis = vec![url.clone()];
        c.publish_token = Some(TOKEN.into());
        c.max_message_size = 64 * 1024;
        c.max_frame_size = 64 * 1024;
        c.redis_queue = 128 * 1024;
        c.max_send_queue = 256 * 1024 * 1024;
        c.redis_timeout = Duration::from_secs(120);
    });
    let mut member = relay.chat("full");
    redis.wait_numsub("asgi__group__chat_full", 1);
    // The node has read Redis's replies too (its shard is up).
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !relay.get("/healthz").2.contains(r#""status": "ok""#) {
        assert!(
            std::time::Instant::now() < deadline,
            "the shard never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    redis.pause();

    let pad = "p".repeat(16_000);
    let mut s = TcpStream::connect(relay.addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut accepted = 0u64;
    let refusal = loop {
        assert!(
            accepted < 4000,
            "4000 publishes of 16 KB into a stalled Redis with a 128 KiB queue, and no 503"
        );
        let body = format!("{{\"message\": \"{accepted}:{pad}\"}}");
        s.write_all(post("/publish/full/", &[&auth()], &body).as_bytes())
            .unwrap();
        let r = read_response(&mut s);
        if r.status_line.contains(" 503 ") {
            break r;
        }
        assert_published(&r, 1, &format!("publish {accepted}"));
        accepted += 1;
    };
    assert!(
        accepted >= 1,
        "a --redis-queue of 128 KiB holds at least one 16 KB message"
    );
    assert_error(&refusal, "HTTP/1.1 503 Service Unavailable", "a full queue");
    assert_eq!(refusal.header("Retry-After").as_deref(), Some("1"));
    assert!(relay.metric("roomcast_backplane_rejected_total") >= 1);

    redis.resume();
    for k in 0..accepted {
        let v = recv_json(&mut member);
        let text = v["message"].as_str().expect("a chat frame");
        assert_eq!(
            text.split_once(':').map(|(n, _)| n),
            Some(k.to_string().as_str()),
            "accepted publish {k} of {accepted}"
        );
    }
    let r = exchange(
        relay.addr,
        &post("/publish/full/", &[&auth()], r#"{"message": "after"}"#),
    );
    assert_published(&r, 1, "after the stall");
    assert_eq!(recv_json(&mut member), json!({"message": "after"}));
}
