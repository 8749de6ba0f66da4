//! The HTTP side over real sockets (SPEC section 1): rejected handshakes
//! with their statuses, the embedded page, `/healthz` and `/metrics`.

mod common;
use common::*;

fn upgrade_request(path: &str, replace: &[(&str, &str)]) -> String {
    let mut headers = vec![
        ("Host", "x".to_string()),
        ("Upgrade", "websocket".to_string()),
        ("Connection", "Upgrade".to_string()),
        ("Sec-WebSocket-Key", KEY.to_string()),
        ("Sec-WebSocket-Version", "13".to_string()),
    ];
    for (name, value) in replace {
        headers.retain(|(n, _)| n != name);
        if !value.is_empty() {
            headers.push((name, value.to_string()));
        }
    }
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Every rejected handshake: status, reason in the body, no upgrade.
#[test]
fn rejected_handshakes() {
    let relay = Relay::start_with(|c| {
        c.max_header_size = 1024;
        c.allowed_origins = vec!["https://chat.example.com".into()];
    });
    let big = "a".repeat(2000);
    let rows: Vec<(String, u16, &str)> = vec![
        (
            upgrade_request("/ws/chat/bad%20name/", &[]),
            400,
            "room name",
        ),
        (
            upgrade_request(&format!("/ws/chat/{}/", "r".repeat(96)), &[]),
            400,
            "room name",
        ),
        (
            upgrade_request("/ws/chat/lobby/", &[("Sec-WebSocket-Key", "short")]),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            upgrade_request("/ws/chat/lobby/", &[("Sec-WebSocket-Key", "")]),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            upgrade_request("/ws/chat/lobby/", &[("Connection", "keep-alive")]),
            400,
            "Connection",
        ),
        (
            upgrade_request("/ws/chat/lobby/", &[("Sec-WebSocket-Version", "8")]),
            426,
            "version 13",
        ),
        (
            upgrade_request("/ws/chat/lobby/", &[("Upgrade", "")]),
            426,
            "WebSocket endpoint",
        ),
        (
            "GET /ws/echo/ HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            426,
            "WebSocket endpoint",
        ),
        (
            upgrade_request("/ws/chat/lobby/", &[("Origin", "https://evil.example.net")]),
            403,
            "origin",
        ),
        (
            upgrade_request("/ws/elsewhere/", &[]),
            404,
            "no such WebSocket endpoint",
        ),
        (
            "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            404,
            "not found",
        ),
        (
            "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            405,
            "not allowed",
        ),
        (
            upgrade_request("/ws/chat/lobby/", &[("X-Padding", &big)]),
            431,
            "too large",
        ),
        (
            "\x16\x03\x01 binary garbage\r\n\r\n".into(),
            400,
            "malformed",
        ),
    ];
    for (request, status, needle) in rows {
        let (got, head, body) = http_exchange(relay.addr, &request);
        assert_eq!(got, status, "{request:?} -> {head}\n{body}");
        assert!(
            body.contains(needle),
            "{status}: body {body:?} lacks {needle:?}"
        );
        assert!(head.contains("Content-Length:"));
        if status == 426 {
            assert!(head.contains("Sec-WebSocket-Version: 13"));
        }
    }
    // The allowed origin is upgraded.
    let (got, _, _) = {
        let mut s = std::net::TcpStream::connect(relay.addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        std::io::Write::write_all(
            &mut s,
            upgrade_request("/ws/echo/", &[("Origin", "https://chat.example.com")]).as_bytes(),
        )
        .unwrap();
        let mut buf = [0u8; 12];
        std::io::Read::read_exact(&mut s, &mut buf).unwrap();
        (String::from_utf8_lossy(&buf).to_string(), (), ())
    };
    assert_eq!(got, "HTTP/1.1 101");
    assert_eq!(
        relay.metric("roomcast_handshake_rejections_total{status=\"400\"}"),
        6
    );
    assert_eq!(
        relay.metric("roomcast_handshake_rejections_total{status=\"431\"}"),
        1
    );
}

#[test]
fn the_page_is_served_from_the_binary() {
    let relay = Relay::start();
    for (path, kind, needle) in [
        ("/", "text/html", "<html"),
        ("/chat/lobby/", "text/html", "<html"),
        ("/chat/lobby", "text/html", "<html"),
        ("/static/app.css", "text/css", "{"),
        ("/static/room.js", "text/javascript", "WebSocket"),
    ] {
        let (status, head, body) = relay.get(path);
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("Content-Type: {kind}")),
            "{path}: {head}"
        );
        assert!(head.contains("Cache-Control:"), "{path}");
        assert!(body.contains(needle), "{path}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len(), "{path}");
    }
    assert_eq!(relay.get("/chat/bad room/").0, 400);
    assert_eq!(relay.get("/static/missing.js").0, 404);
    // HEAD: the same head, no body.
    let (status, head, body) = http_exchange(
        relay.addr,
        "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(head.contains("Content-Length: ") && !head.contains("Content-Length: 0"));
    assert!(body.is_empty());
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let relay = Relay::start();
    let (status, _, body) = http_exchange(
        relay.addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(body.matches("\"status\"").count(), 2, "{body}");
}

#[test]
fn health_and_metrics_follow_joins_sends_and_leaves() {
    let relay = Relay::start();
    let (status, head, body) = relay.get("/healthz");
    assert_eq!(status, 200);
    assert!(head.contains("application/json"));
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["connections"], 0);
    assert_eq!(health["rooms"], 0);
    assert!(health["uptime_seconds"].as_f64().unwrap() >= 0.0);

    let mut a = relay.chat("m1");
    let mut b = relay.chat("m1");
    let mut c = relay.chat("m2");
    relay.wait_metric("roomcast_connections", 3);
    assert_eq!(relay.metric("roomcast_rooms"), 2);
    say(&mut a, serde_json::json!("x"));
    recv_text(&mut a);
    recv_text(&mut b);
    send_text(&mut c, "oops");
    recv_text(&mut c);
    assert_eq!(relay.metric("roomcast_messages_received_total"), 2);
    assert_eq!(relay.metric("roomcast_messages_delivered_total"), 2);
    assert_eq!(relay.metric("roomcast_chat_errors_total"), 1);
    assert!(relay.metric("roomcast_bytes_sent_total") > 0);
    let (_, _, text) = relay.get("/metrics");
    for name in [
        "roomcast_slow_consumer_closes_total",
        "# TYPE roomcast_closes_total counter",
        "roomcast_handshake_rejections_total",
    ] {
        assert!(text.contains(name), "{name}");
    }
    drop(c);
    relay.wait_metric("roomcast_rooms", 1);
    a.close(None).unwrap();
    let _ = a.read();
    relay.wait_metric("roomcast_connections", 1);
    assert_eq!(relay.metric("roomcast_closes_total{code=\"1000\"}"), 1);
    assert_eq!(relay.metric("roomcast_closes_total{code=\"1006\"}"), 1);
}
