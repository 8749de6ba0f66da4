//! Limits and faults over real sockets (SPEC sections 3 to 5): slow
//! consumers, the connection cap, slowloris heads, idle peers and graceful
//! shutdown.

mod common;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// One member stops reading among 100 that read: it is closed with 1008
/// "slow consumer"; the others lose nothing.
#[test]
fn a_stalled_reader_is_closed_and_nobody_else_loses_anything() {
    let relay = Relay::start_with(|c| {
        c.max_message_size = 128 * 1024;
        c.max_send_queue = 512 * 1024;
    });
    // Never reads; its kernel buffers stay small because receive-buffer
    // autotuning follows what the application reads.
    let mut stalled = raw_ws(relay.addr, "/ws/chat/crowd/");
    let readers: Vec<Client> = (0..100).map(|_| relay.chat("crowd")).collect();
    let mut sender = relay.chat("crowd");
    // 100 messages of 64 KB: 6.4 MB per member, past what loopback's socket
    // buffers (up to 4 MiB on the relay's side) and the stalled one's queue
    // can hold.
    let body = "x".repeat(64_000);
    let messages = 100;
    let reader_threads: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                for i in 0..messages {
                    let text = recv_text(&mut r);
                    let prefix = format!("{{\"message\": [{i},");
                    assert!(
                        text.starts_with(&prefix),
                        "a reader lost or reordered message {i}"
                    );
                }
            })
        })
        .collect();
    let sender_thread = std::thread::spawn(move || {
        // Paced by its own copies, so the readers, 100 threads on a small
        // machine, are never the slow ones.
        for round in 0..messages / 5 {
            for i in round * 5..(round + 1) * 5 {
                say(&mut sender, json!([i, body]));
            }
            for _ in 0..5 {
                recv_text(&mut sender);
            }
        }
    });
    relay.wait_metric("roomcast_slow_consumer_closes_total", 1);
    // The stalled client resumes reading (within the close timeout): after
    // what it was sent before the cut, a 1008.
    let (code, reason) = loop {
        let (_, op, payload) = read_frame(&mut stalled).unwrap();
        if op == 0x8 {
            break (
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..]).to_string(),
            );
        }
        assert_eq!(op, 0x1);
    };
    assert_eq!((code, reason.as_str()), (1008, "slow consumer"));
    for t in reader_threads {
        t.join().expect("every reader got every message in order");
    }
    sender_thread.join().unwrap();
    assert_eq!(relay.metric("roomcast_slow_consumer_closes_total"), 1);
}

#[test]
fn over_max_connections_gets_503_and_the_listener_keeps_working() {
    let relay = Relay::start_with(|c| c.max_connections = Some(5));
    let clients: Vec<Client> = (0..5).map(|_| relay.chat("full")).collect();
    for _ in 0..20 {
        let (status, _, body) = http_exchange(
            relay.addr,
            &format!("GET /ws/chat/full/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        );
        assert_eq!(status, 503, "{body}");
    }
    drop(clients);
    relay.wait_metric("roomcast_connections", 0);
    let mut again = relay.chat("full");
    say(&mut again, json!("room for me now"));
    assert_eq!(recv_json(&mut again)["message"], "room for me now");
    assert!(relay.metric("roomcast_handshake_rejections_total{status=\"503\"}") >= 20);
}

#[test]
fn a_slowloris_head_is_cut_off_at_the_handshake_timeout() {
    let relay = Relay::start_with(|c| c.handshake_timeout = Duration::from_millis(800));
    let mut s = std::net::TcpStream::connect(relay.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let head = b"GET /ws/chat/slow/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n";
    let started = Instant::now();
    let mut answer = Vec::new();
    for byte in head.iter().cycle() {
        if s.write_all(&[*byte]).is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the relay never cut the slow client off"
        );
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    drop(s);
    // Only the /metrics request itself remains.
    relay.wait_metric("roomcast_tcp_connections", 1);
}

#[test]
fn a_silent_peer_is_pinged_then_dropped() {
    let relay = Relay::start_with(|c| {
        c.ping_interval = Duration::from_millis(300);
        c.idle_timeout = Duration::from_millis(900);
        c.close_timeout = Duration::from_millis(500);
    });
    // A peer that answers pings stays (tungstenite answers while it reads).
    let mut alive = relay.chat("idle");
    alive
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_reading = stop.clone();
    let alive_thread = std::thread::spawn(move || {
        let until = Instant::now() + TIMEOUT;
        while Instant::now() < until && !stop_reading.load(std::sync::atomic::Ordering::SeqCst) {
            match alive.read() {
                Ok(tungstenite::Message::Ping(_)) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => panic!("a live peer got {other:?}"),
            }
        }
        alive
    });
    // A peer that never answers (half-open, as far as the relay can tell).
    let mut silent = raw_ws(relay.addr, "/ws/chat/idle/");
    let (_, op, _) = read_frame(&mut silent).unwrap();
    assert_eq!(op, 0x9, "first a ping");
    let (_, op, payload) = read_frame(&mut silent).unwrap();
    assert_eq!(
        (op, u16::from_be_bytes([payload[0], payload[1]])),
        (0x8, 1001),
        "then a close attempt"
    );
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    // Past two idle timeouts, the peer that answers pings is still there.
    std::thread::sleep(Duration::from_millis(1000));
    relay.wait_metric("roomcast_connections", 1);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _alive = alive_thread.join().expect("the live peer stayed open");
}

/// SIGTERM-equivalent with messages in flight: every client gets every
/// queued message, then 1001.
#[test]
fn graceful_shutdown_flushes_then_sends_1001() {
    let mut relay = Relay::start_with(|c| c.workers = Some(2));
    let mut members: Vec<Client> = (0..20).map(|_| relay.chat("bye")).collect();
    for i in 0..200 {
        say(&mut members[i % 20], json!(i));
    }
    // Wait until the relay has taken all 200 in (they may still be queued).
    relay.wait_metric("roomcast_messages_received_total", 200);
    let summary = relay.stop();
    // Only the WebSockets: the last /metrics connection may still be waiting
    // for its client's EOF when shutdown begins (this raced before).
    assert_eq!(summary.websockets_at_shutdown, 20);
    assert!((20..=21).contains(&summary.connections_at_shutdown));
    for m in &mut members {
        let mut got = 0;
        let code = loop {
            match m.read() {
                Ok(tungstenite::Message::Text(_)) => got += 1,
                Ok(tungstenite::Message::Close(Some(f))) => break u16::from(f.code),
                Ok(_) => {}
                Err(e) => panic!("ended without close after {got}: {e}"),
            }
        };
        assert_eq!((got, code), (200, 1001));
    }
    // After shutdown, nobody is listening.
    assert!(std::net::TcpStream::connect(relay.addr).is_err());
}
