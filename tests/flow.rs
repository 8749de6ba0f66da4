//! Flow control over real sockets (issue 13, ARCHITECTURE.md "Flow
//! control"): members that read as fast as the kernel allows receive every
//! message of a burst however large; the senders are slowed by TCP instead;
//! a member that truly stops reading is closed with 1008 and nobody else
//! loses anything.

mod common;
use common::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What a fast reader saw: chat messages, and the close code if any.
#[derive(Debug, Default)]
struct Seen {
    messages: usize,
    close: Option<u16>,
}

/// Reads frames as fast as they come until `want` messages or a close.
fn drain(stream: TcpStream, want: usize) -> Seen {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut r = BufReader::with_capacity(1 << 20, stream);
    let mut seen = Seen::default();
    while seen.messages < want {
        let mut h = [0u8; 2];
        if r.read_exact(&mut h).is_err() {
            break;
        }
        let mut len = u64::from(h[1] & 0x7F);
        if len == 126 {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).unwrap();
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).unwrap();
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).unwrap();
        match h[0] & 0x0F {
            0x1 => seen.messages += 1,
            0x8 => {
                seen.close = Some(u16::from_be_bytes([payload[0], payload[1]]));
                break;
            }
            _ => {}
        }
    }
    seen
}

/// Three senders each write 2,000 chat messages of 4 KB at once into a
/// room whose members are all drained by fast reader threads: every member
/// gets all 6,000 (24 MB each, six times --max-send-queue), and nobody is
/// closed as a slow consumer.
#[test]
fn a_burst_from_several_senders_reaches_every_fast_reader() {
    const SENDERS: usize = 3;
    const READERS: usize = 3;
    const EACH: usize = 2_000;
    let relay = Relay::start();
    let mut sockets: Vec<TcpStream> = (0..SENDERS + READERS)
        .map(|_| raw_ws(relay.addr, "/ws/chat/burst/"))
        .collect();
    relay.wait_metric("roomcast_connections", (SENDERS + READERS) as u64);
    let want = SENDERS * EACH;
    let readers: Vec<_> = sockets
        .iter()
        .map(|s| {
            let s = s.try_clone().unwrap();
            std::thread::spawn(move || drain(s, want))
        })
        .collect();
    let text = format!(r#"{{"message": "{}"}}"#, "x".repeat(4_000));
    let burst: Vec<u8> = (0..EACH)
        .flat_map(|_| frame(true, 0x1, text.as_bytes()))
        .collect();
    let writers: Vec<_> = sockets
        .drain(..SENDERS)
        .map(|mut s| {
            let burst = burst.clone();
            std::thread::spawn(move || {
                s.write_all(&burst).unwrap();
                s
            })
        })
        .collect();
    let started = Instant::now();
    let _senders: Vec<TcpStream> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    for (i, reader) in readers.into_iter().enumerate() {
        let seen = reader.join().unwrap();
        assert_eq!(seen.close, None, "member {i} was closed: {seen:?}");
        assert_eq!(seen.messages, want, "member {i} lost messages");
    }
    assert_eq!(relay.metric("roomcast_slow_consumer_closes_total"), 0);
    eprintln!("burst delivered in {:?}", started.elapsed());
}

/// A member that stops reading in a busy room is closed with 1008, and the
/// members that read get everything, during and after.
#[test]
fn a_member_that_stops_reading_is_closed_and_the_room_goes_on() {
    let relay = Relay::start_with(|c| {
        c.max_send_queue = 2 << 20;
        c.slow_consumer_grace = Duration::from_secs(1);
    });
    let stalled = raw_ws(relay.addr, "/ws/chat/stall/");
    let mut sender = raw_ws(relay.addr, "/ws/chat/stall/");
    let reader = raw_ws(relay.addr, "/ws/chat/stall/");
    relay.wait_metric("roomcast_connections", 3);
    let count = 4_000;
    let drained = {
        let r = reader.try_clone().unwrap();
        std::thread::spawn(move || drain(r, count))
    };
    // The sender reads its own copies too.
    let echoed = {
        let r = sender.try_clone().unwrap();
        std::thread::spawn(move || drain(r, count))
    };
    let text = format!(r#"{{"message": "{}"}}"#, "y".repeat(2_000));
    for _ in 0..count {
        sender
            .write_all(&frame(true, 0x1, text.as_bytes()))
            .unwrap();
    }
    let seen = drained.join().unwrap();
    assert_eq!(
        (seen.messages, seen.close),
        (count, None),
        "the reader lost nothing"
    );
    let seen = echoed.join().unwrap();
    assert_eq!(
        (seen.messages, seen.close),
        (count, None),
        "nor did the sender"
    );
    relay.wait_metric("roomcast_slow_consumer_closes_total", 1);
    let (code, reason) = expect_close_after_backlog(stalled);
    assert_eq!((code, reason.as_str()), (1008, "slow consumer"));
}

/// Reads whatever was queued before the close frame, then the close.
fn expect_close_after_backlog(s: TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut r = BufReader::new(s);
    loop {
        let mut h = [0u8; 2];
        r.read_exact(&mut h).expect("a close frame");
        let mut len = u64::from(h[1] & 0x7F);
        if len == 126 {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).unwrap();
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).unwrap();
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).unwrap();
        if h[0] & 0x0F == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
        }
    }
}

/// `--max-pings-per-second` (default 50 a second, in bursts of 50): a
/// client within it gets every pong; one that floods pings is closed at
/// once with 1008 and a reason, counted in /metrics, and its room chats on.
/// (Without the cap a flood of 5.6 million empty pings a second took the
/// relay's core and raised its rooms' p99 tenfold: README, "Hostile
/// clients".)
#[test]
fn a_ping_flood_is_closed_with_1008_and_the_room_goes_on() {
    let relay = Relay::start();
    let mut chat = connect(&format!("ws://{}/ws/chat/pings/", relay.addr));
    let mut calm = raw_ws(relay.addr, "/ws/chat/pings/");
    calm.set_read_timeout(Some(TIMEOUT)).unwrap();
    let twenty: Vec<u8> = (0..20).flat_map(|_| frame(true, 0x9, b"hi")).collect();
    calm.write_all(&twenty).unwrap();
    for i in 0..20 {
        let (_, opcode, payload) = read_frame(&mut calm).expect("a pong");
        assert_eq!((opcode, payload.as_slice()), (0xA, &b"hi"[..]), "pong {i}");
    }

    let mut flooder = raw_ws(relay.addr, "/ws/chat/pings/");
    let flood: Vec<u8> = (0..1_000).flat_map(|_| frame(true, 0x9, b"")).collect();
    // The relay may close before it has read everything: a failed write is
    // part of the outcome, not the test's.
    let _ = flooder.write_all(&flood);
    let (code, reason) = expect_close_after_backlog(flooder);
    assert_eq!(
        (code, reason.as_str()),
        (
            1008,
            "ping flood: more pings and pongs than --max-pings-per-second"
        )
    );
    relay.wait_metric("roomcast_ping_flood_closes_total", 1);

    // The calm client was not touched, and the room chats on.
    say(&mut chat, serde_json::json!("still here"));
    assert_eq!(recv_json(&mut chat)["message"], "still here");
    calm.write_all(&frame(true, 0x9, b"again")).unwrap();
    loop {
        let (_, opcode, payload) = read_frame(&mut calm).expect("a frame");
        if opcode == 0xA {
            assert_eq!(payload, b"again");
            break;
        }
    }
}

/// With `--max-pings-per-second 0` nothing limits pings: a thousand at once
/// get their pongs (only the latest is owed, and a client that reads gets
/// every one).
#[test]
fn without_a_ping_limit_a_thousand_pings_are_answered() {
    let relay = Relay::start_with(|c| c.max_pings_per_second = 0);
    let mut s = raw_ws(relay.addr, "/ws/echo/");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let flood: Vec<u8> = (0..1_000).flat_map(|_| frame(true, 0x9, b"p")).collect();
    s.write_all(&flood).unwrap();
    s.write_all(&frame(true, 0x9, b"last")).unwrap();
    loop {
        let (_, opcode, payload) = read_frame(&mut s).expect("pongs, then the last");
        assert_eq!(opcode, 0xA, "only pongs");
        if payload == b"last" {
            break;
        }
    }
    assert_eq!(relay.metric("roomcast_ping_flood_closes_total"), 0);
}
