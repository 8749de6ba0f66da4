//! Who may join and write, and how much, over real sockets (SPEC section 9):
//! join tokens in both formats, the `--auth-url` back end, read-only
//! members, identities in frames, the rate limit, connections per address.
//! Tokens minted by Django and PyJWT themselves are checked by the Python
//! step (`tests/auth/run.sh`); these mint with the same algorithm.

mod common;
use common::*;
use roomcast::auth::token::{mint_django, mint_jwt};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "django-insecure-0123456789abcdef0123456789";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn django(payload: serde_json::Value) -> String {
    mint_django(
        payload.to_string().as_bytes(),
        SECRET.as_bytes(),
        "roomcast",
        now(),
        false,
    )
}

fn jwt(claims: serde_json::Value) -> String {
    mint_jwt(claims.to_string().as_bytes(), SECRET.as_bytes())
}

fn with_tokens(relay_config: &mut roomcast::Config) {
    relay_config.auth_secret = Some(SECRET.into());
}

/// The status line of an upgrade to `path` (a 101 keeps the socket open).
fn upgrade_status(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while !all.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before an answer");
        all.extend_from_slice(&buf[..n]);
    }
    if !all.starts_with(b"HTTP/1.1 101") {
        // The body says why; the relay closes after it.
        let _ = s.read_to_end(&mut all);
    }
    let text = String::from_utf8_lossy(&all).into_owned();
    (text[9..12].parse().unwrap(), text)
}

fn token_url(room: &str, token: &str) -> String {
    format!("/ws/chat/{room}/?token={}", token.replace(':', "%3A"))
}

#[test]
fn join_tokens_decide_who_joins_which_room() {
    let relay = Relay::start_with(|c| {
        with_tokens(c);
        c.auth_secret_fallbacks = vec!["the-old-key-0123456789".into()];
    });
    let old_key = mint_django(
        br#"{"room":"lobby"}"#,
        b"the-old-key-0123456789",
        "roomcast",
        now(),
        false,
    );
    let wrong_key = mint_django(
        br#"{"room":"lobby"}"#,
        b"nope-nope-nope-nope-!",
        "roomcast",
        now(),
        false,
    );
    let expired = mint_django(
        br#"{"room":"lobby"}"#,
        SECRET.as_bytes(),
        "roomcast",
        now() - 7200,
        false,
    );
    let compressed = mint_django(
        json!({"rooms": ["team-*", "lobby"], "user": "carol", "pad": "x".repeat(200)})
            .to_string()
            .as_bytes(),
        SECRET.as_bytes(),
        "roomcast",
        now(),
        true,
    );
    let rows: Vec<(&str, String, u16, &str)> = vec![
        (
            "django",
            token_url("lobby", &django(json!({"room": "lobby"}))),
            101,
            "",
        ),
        (
            "jwt",
            token_url("lobby", &jwt(json!({"room": "lobby", "exp": now() + 60}))),
            101,
            "",
        ),
        ("fallback key", token_url("lobby", &old_key), 101, ""),
        (
            "compressed, prefix room",
            token_url("team-a", &compressed),
            101,
            "",
        ),
        ("no token", "/ws/chat/lobby/".into(), 401, "token"),
        (
            "wrong key",
            token_url("lobby", &wrong_key),
            403,
            "signature",
        ),
        (
            "expired (max age)",
            token_url("lobby", &expired),
            403,
            "expired",
        ),
        (
            "expired (exp)",
            token_url("lobby", &jwt(json!({"room": "lobby", "exp": now() - 1}))),
            403,
            "expired",
        ),
        (
            "another room",
            token_url("elsewhere", &django(json!({"room": "lobby"}))),
            403,
            "room",
        ),
        ("garbage", token_url("lobby", "not-a-token"), 403, ""),
    ];
    for (what, path, status, needle) in rows {
        let (got, text) = upgrade_status(relay.addr, &path, "");
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    // The echo endpoint is for conformance runs and probes: never gated.
    assert_eq!(upgrade_status(relay.addr, "/ws/echo/", "").0, 101);
    assert_eq!(
        relay.metric("roomcast_auth_rejections_total{reason=\"no_token\"}"),
        1
    );
    assert_eq!(
        relay.metric("roomcast_auth_rejections_total{reason=\"expired\"}"),
        2
    );
}

#[test]
fn identities_are_the_relays_and_read_only_members_only_listen() {
    let relay = Relay::start_with(with_tokens);
    let url = |t: &str| relay.url(&token_url("team", t));
    let mut alice = connect(&url(&django(json!({"room": "team", "user": "alice"}))));
    let mut reader = connect(&url(&jwt(
        json!({"room": "team", "sub": 42, "write": false, "exp": now() + 60}),
    )));
    relay.wait_metric("roomcast_connections", 2);
    send_text(&mut alice, r#"{"message": "hi", "user": "mallory"}"#);
    for ws in [&mut alice, &mut reader] {
        assert_eq!(recv_text(ws), r#"{"message": "hi", "user": "alice"}"#);
    }
    say(&mut reader, json!("may I?"));
    let refused = recv_json(&mut reader);
    assert!(
        refused["error"].as_str().unwrap().contains("read-only"),
        "{refused}"
    );
    // Nothing reached alice; her next message is the next thing she gets.
    say(&mut alice, json!("second"));
    assert_eq!(
        recv_json(&mut alice),
        json!({"message": "second", "user": "alice"})
    );
}

/// A tiny auth back end: keep-alive HTTP/1.1, answering by room.
fn back_end() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || serve(stream));
        }
    });
    (addr, accepted)
}

fn serve(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut cookie = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("cookie:") {
                cookie = v.trim().to_string();
            }
        }
        let room = line
            .split("room=")
            .nth(1)
            .unwrap_or("")
            .split([' ', '&'])
            .next()
            .unwrap_or("");
        let (status, body) = match room {
            "slow" => {
                std::thread::sleep(Duration::from_secs(5));
                (200, r#"{"user": "late"}"#.to_string())
            }
            "staff" => (403, r#"{"error": "staff only"}"#.into()),
            "broken" => (500, "oops".into()),
            _ if !cookie.contains("sessionid=ok") => (401, r#"{"error": "log in"}"#.into()),
            _ => (200, r#"{"user": "dora", "write": true}"#.into()),
        };
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            403 => "Forbidden",
            _ => "Internal Server Error",
        };
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn the_back_end_decides_with_the_clients_cookie_and_never_stalls_the_loop() {
    let (addr, accepted) = back_end();
    let relay = Relay::start_with(|c| {
        c.auth_url = Some(format!("http://{addr}/roomcast/auth/"));
        c.auth_timeout = Duration::from_secs(2);
        c.handshake_timeout = Duration::from_secs(10);
    });
    let logged_in = "Cookie: sessionid=ok\r\n";
    assert_eq!(upgrade_status(relay.addr, "/ws/chat/lobby/", "").0, 401);
    assert_eq!(
        upgrade_status(relay.addr, "/ws/chat/staff/", logged_in).0,
        403
    );
    assert_eq!(
        upgrade_status(relay.addr, "/ws/chat/broken/", logged_in).0,
        503
    );
    // A back end that hangs: the join waits (and gets 503 at --auth-timeout)
    // while a room's members chat on, undisturbed.
    let waiting = std::thread::spawn({
        let addr = relay.addr;
        move || upgrade_status(addr, "/ws/chat/slow/", "Cookie: sessionid=ok\r\n").0
    });
    let mut ws = {
        let s = TcpStream::connect(relay.addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let request = tungstenite::handshake::client::Request::builder()
            .uri(relay.url("/ws/chat/lobby/"))
            .header("Host", "x")
            .header("Cookie", "sessionid=ok")
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", KEY)
            .body(())
            .unwrap();
        tungstenite::client::client(request, s).unwrap().0
    };
    let started = Instant::now();
    for i in 0..20 {
        say(&mut ws, json!(i));
        assert_eq!(recv_json(&mut ws), json!({"message": i, "user": "dora"}));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "chat was held up by a hanging back end: {:?}",
        started.elapsed()
    );
    assert_eq!(waiting.join().unwrap(), 503, "the auth timeout answers");
    // Joins reuse the pool's kept-alive connections.
    for _ in 0..10 {
        assert_eq!(
            upgrade_status(relay.addr, "/ws/chat/lobby/", logged_in).0,
            101
        );
    }
    let opened = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(opened < 10, "{opened} back-end connections for 16 asks");
}

#[test]
fn a_flooding_client_is_rate_limited_then_closed() {
    let relay = Relay::start_with(|c| {
        c.max_messages_per_second = 5.0;
        c.rate_burst = Some(5);
    });
    let mut flooder = relay.chat("flood");
    let mut bystander = relay.chat("flood");
    relay.wait_metric("roomcast_connections", 2);
    for i in 0..200 {
        if flooder
            .send(tungstenite::Message::text(
                json!({"message": i}).to_string(),
            ))
            .is_err()
        {
            break;
        }
    }
    let mut broadcast = 0;
    let mut limited = 0;
    let code = loop {
        match flooder.read() {
            Ok(tungstenite::Message::Text(t)) if t.contains("rate limited") => limited += 1,
            Ok(tungstenite::Message::Text(_)) => broadcast += 1,
            Ok(tungstenite::Message::Close(Some(f))) => break u16::from(f.code),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, 1008);
    assert!(
        (1..=10).contains(&broadcast),
        "the burst went out: {broadcast}"
    );
    assert!(limited >= 5, "refusals before the close: {limited}");
    // The bystander got exactly what was broadcast, and is still there.
    for _ in 0..broadcast {
        assert!(recv_json(&mut bystander)["message"].is_number());
    }
    say(&mut bystander, json!("calm"));
    assert_eq!(recv_json(&mut bystander)["message"], "calm");
    assert!(relay.metric("roomcast_rate_limited_total") >= 5);
}

#[test]
fn one_address_may_hold_only_so_many_connections() {
    let relay = Relay::start_with(|c| c.max_connections_per_ip = 2);
    let a = relay.chat("ip");
    let b = relay.chat("ip");
    let (status, text) = upgrade_status(relay.addr, "/ws/chat/ip/", "");
    assert_eq!(status, 429, "{text}");
    drop(a);
    relay.wait_metric("roomcast_connections", 1);
    assert_eq!(upgrade_status(relay.addr, "/ws/echo/", "").0, 101);
    drop(b);
}
