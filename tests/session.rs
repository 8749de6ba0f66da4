//! The connection machine itself, with no sockets and no sleeping: a client
//! against a real `Session` on a virtual clock (`roomcast::session::pair`).
//! These are the protocol tests that need no kernel: SPEC section 3's close
//! codes, the closing handshake, pings and timeouts over simulated minutes,
//! HTTP pipelining, slow consumers. The same behaviour is tested over real
//! sockets in `protocol.rs`, `limits.rs` and `http.rs`.

use roomcast::session::pair::{client_frame, upgrade_request, Pair};
use roomcast::session::{Effect, Policy, Ticks};
use roomcast::wire::http::OriginPolicy;
use roomcast::wire::message::Limits;

fn policy() -> Policy {
    Policy {
        limits: Limits {
            max_frame_size: 600,
            max_message_size: 1000,
        },
        max_send_queue: 64 * 1024,
        ..Policy::default()
    }
}

fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, opcode, payload)
}

/// SPEC section 3's table: one row per fault, the code and a word of the
/// reason it gets, on both endpoints.
#[test]
fn every_close_code_from_a_bad_frame() {
    let mut rsv1 = frame(true, 0x1, b"x");
    rsv1[0] |= 0x40;
    let mut too_long_ping = vec![0x89, 0xFE, 0x00, 0x7E, 0, 0, 0, 0];
    too_long_ping.extend_from_slice(&[0; 126]);
    let two_messages = [frame(false, 0x1, b"a"), frame(true, 0x1, b"b")].concat();
    let over_message = [frame(false, 0x2, &[0; 600]), frame(true, 0x0, &[0; 401])].concat();
    let bad_utf8_across = [
        frame(false, 0x1, "κό".as_bytes()),
        frame(true, 0x0, b"\xED\xA0\x80"),
    ]
    .concat();
    let rows: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("unmasked", vec![0x81, 0x02, b'h', b'i'], 1002, "masked"),
        ("RSV1", rsv1, 1002, "reserved"),
        ("opcode 0x3", frame(true, 0x3, b""), 1002, "opcode"),
        (
            "fragmented ping",
            frame(false, 0x9, b""),
            1002,
            "fragmented",
        ),
        ("ping over 125 bytes", too_long_ping, 1002, "125"),
        (
            "continuation first",
            frame(true, 0x0, b"x"),
            1002,
            "continuation",
        ),
        ("new message mid-message", two_messages, 1002, "fragmented"),
        (
            "close with 1 byte",
            frame(true, 0x8, &[0x03]),
            1002,
            "one byte",
        ),
        (
            "close 1005",
            frame(true, 0x8, &1005u16.to_be_bytes()),
            1002,
            "status code",
        ),
        (
            "close reason not UTF-8",
            frame(true, 0x8, &[0x03, 0xE8, 0xFF]),
            1002,
            "UTF-8",
        ),
        (
            "invalid UTF-8",
            frame(true, 0x1, b"bad \xC3\x28"),
            1007,
            "UTF-8",
        ),
        (
            "invalid UTF-8 across fragments",
            bad_utf8_across,
            1007,
            "UTF-8",
        ),
        ("frame over max", frame(true, 0x2, &[0; 601]), 1009, "frame"),
        ("message over max", over_message, 1009, "message"),
    ];
    for (what, bytes, code, needle) in rows {
        for path in ["/ws/echo/", "/ws/chat/codes/"] {
            let mut pair = Pair::open(policy(), path);
            pair.client_sends(&bytes);
            let close = pair.frames().last().and_then(|f| f.close());
            let (got, reason) = close.unwrap_or_else(|| panic!("{what} on {path}: no close"));
            assert_eq!(got, code, "{what} on {path}: {reason}");
            assert!(
                reason.contains(needle),
                "{what}: {reason:?} lacks {needle:?}"
            );
            assert!(
                pair.half_closed,
                "{what}: the relay half-closes after its close"
            );
            assert!(pair.rooms.is_empty(), "{what}: left the room");
            assert_eq!(pair.log.metrics.closes.get(&code), Some(&1), "{what}");
        }
    }
}

/// After a wire fault the bytes that follow cannot be trusted to frame
/// anything: they are discarded, even a well-formed close frame, and the
/// connection ends at the client's EOF.
#[test]
fn input_after_a_wire_fault_is_discarded() {
    let mut pair = Pair::open(policy(), "/ws/echo/");
    let mut bytes = vec![0x81, 0x02, b'h', b'i']; // unmasked
    bytes.extend(frame(true, 0x1, b"echo me"));
    bytes.extend(frame(true, 0x8, &1000u16.to_be_bytes()));
    pair.client_sends(&bytes);
    let frames = pair.frames();
    assert_eq!(frames.len(), 1, "only the relay's close: {frames:?}");
    assert_eq!(frames[0].close().unwrap().0, 1002);
    pair.client_sends(&frame(true, 0x1, b"still there?"));
    assert!(pair.frames().is_empty());
    assert_eq!(pair.ended, None, "lingers for the client's EOF");
    pair.client_eof();
    assert_eq!(pair.ended, Some(false));
}

#[test]
fn echo_fragments_control_frames_and_the_closing_handshake() {
    let mut pair = Pair::open(policy(), "/ws/echo/");
    let mut bytes = frame(false, 0x1, b"Hel");
    bytes.extend(frame(true, 0x9, b"ping!"));
    bytes.extend(frame(true, 0x0, b"lo"));
    bytes.extend(frame(true, 0x2, &[0, 1, 2]));
    pair.client_sends(&bytes);
    let got: Vec<(u8, Vec<u8>)> = pair
        .frames()
        .into_iter()
        .map(|f| (f.opcode, f.payload))
        .collect();
    assert_eq!(
        got,
        vec![
            (0xA, b"ping!".to_vec()),
            (0x1, b"Hello".to_vec()),
            (0x2, vec![0, 1, 2]),
        ]
    );
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    pair.client_frame(true, 0x8, &close);
    let reply = pair.next_frame().unwrap();
    assert_eq!(
        reply.close(),
        Some((4000, String::new())),
        "the code is echoed"
    );
    assert_eq!(
        pair.ended,
        Some(true),
        "closed cleanly once the close is out"
    );
    assert_eq!(
        pair.log.effects.last(),
        Some(&Effect::Ended { clean: true })
    );
}

#[test]
fn frames_behind_the_request_head_are_read_once_open() {
    let mut pair = Pair::new(policy());
    let mut bytes = upgrade_request("/ws/chat/lobby/");
    bytes.extend(frame(true, 0x1, br#"{"message": "first"}"#));
    bytes.extend(frame(true, 0x1, br#"{"message": 2}"#));
    pair.client_sends(&bytes);
    assert_eq!(pair.next_http().unwrap().0, 101);
    let payloads: Vec<Vec<u8>> = pair.frames().into_iter().map(|f| f.payload).collect();
    assert_eq!(
        payloads,
        vec![
            br#"{"message": "first"}"#.to_vec(),
            br#"{"message": 2}"#.to_vec()
        ]
    );
}

#[test]
fn bad_chat_input_gets_one_error_and_keeps_the_connection() {
    let mut pair = Pair::open(policy(), "/ws/chat/lobby/");
    pair.client_frame(true, 0x1, b"not json");
    pair.client_frame(true, 0x2, b"\x00binary");
    pair.client_frame(true, 0x1, br#"{"message": "ok"}"#);
    let frames = pair.frames();
    let texts: Vec<String> = frames
        .iter()
        .map(|f| String::from_utf8(f.payload.clone()).unwrap())
        .collect();
    assert!(
        texts[0].contains("\"error\"") && texts[0].contains("column"),
        "{texts:?}"
    );
    assert!(texts[1].contains("binary"), "{texts:?}");
    assert_eq!(texts[2], r#"{"message": "ok"}"#);
    assert!(pair.session.is_open());
    assert_eq!(
        pair.log.metrics.chat_errors, 1,
        "the binary one, counted here"
    );
}

/// Minutes of silence on the virtual clock: a ping at --ping-interval, then
/// 1001 at --idle-timeout, then dropped at --close-timeout.
#[test]
fn a_silent_client_is_pinged_then_closed_then_dropped() {
    let mut pair = Pair::open(policy(), "/ws/chat/quiet/");
    pair.advance(299);
    assert!(pair.frames().is_empty(), "no ping before 30 s");
    pair.advance(1);
    assert_eq!(pair.next_frame().unwrap().opcode, 0x9, "a ping at 30 s");
    // A pong (any byte) resets the clock.
    pair.client_frame(true, 0xA, b"");
    pair.advance(299);
    assert!(pair.frames().is_empty());
    pair.advance(1);
    assert_eq!(pair.next_frame().unwrap().opcode, 0x9);
    pair.advance(450);
    let close = pair.next_frame().unwrap().close().unwrap();
    assert_eq!(close, (1001, "idle timeout".into()));
    assert!(pair.rooms.is_empty(), "left the room at once");
    pair.advance(49);
    assert_eq!(pair.ended, None);
    pair.advance(1);
    assert_eq!(
        pair.ended,
        Some(false),
        "no answer within the close timeout"
    );
    assert_eq!(pair.log.metrics.closes.get(&1006), Some(&1));
}

#[test]
fn pings_off_means_no_idle_timeout() {
    let mut pair = Pair::open(
        Policy {
            ping: Ticks(0),
            ..policy()
        },
        "/ws/echo/",
    );
    pair.advance(1_000_000);
    assert!(pair.frames().is_empty());
    assert!(pair.session.is_open());
}

#[test]
fn an_incomplete_head_gets_408_at_the_handshake_timeout() {
    let mut pair = Pair::new(policy());
    pair.client_sends(b"GET /ws/echo/ HTTP/1.1\r\nHost: x\r\n");
    pair.advance(99);
    assert!(pair.inbox.is_empty());
    pair.advance(1);
    assert_eq!(pair.next_http().unwrap().0, 408);
    assert!(pair.half_closed);
    pair.client_eof();
    assert_eq!(pair.ended, Some(false));
}

#[test]
fn keep_alive_answers_pipelined_requests_in_order() {
    let mut pair = Pair::new(policy());
    let mut bytes = Vec::new();
    for path in ["/healthz", "/", "/metrics"] {
        bytes.extend(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes());
    }
    bytes.extend(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    pair.client_sends(&bytes);
    let statuses: Vec<u16> = std::iter::from_fn(|| pair.next_http())
        .map(|r| r.0)
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 404]);
    assert!(pair.half_closed, "the 404 ends the connection");
}

#[test]
fn origins_are_checked_before_the_upgrade() {
    let mut pair = Pair::new(Policy {
        origins: OriginPolicy::new(&["https://app.example.com".into()]),
        ..policy()
    });
    let request = String::from_utf8(upgrade_request("/ws/echo/"))
        .unwrap()
        .replace("\r\n\r\n", "\r\nOrigin: https://evil.example\r\n\r\n");
    pair.client_sends(request.as_bytes());
    assert_eq!(pair.next_http().unwrap().0, 403);
    assert!(!pair.session.is_open());
}

/// A client that asks for echoes and stops reading: once its queue costs
/// more than --max-send-queue it is not read any more (what it sends waits
/// in its TCP window), and once it has been behind for
/// --slow-consumer-grace it gets 1008 "slow consumer", what it had not
/// started receiving dropped.
#[test]
fn a_client_that_stops_reading_is_paused_then_closed_as_slow() {
    let mut pair = Pair::open(
        Policy {
            max_send_queue: 4096,
            ..policy()
        },
        "/ws/echo/",
    );
    pair.window = Some(0);
    for _ in 0..10 {
        pair.client_frame(true, 0x2, &[7; 500]);
    }
    assert!(pair.session.is_open(), "one burst never closes");
    assert!(pair.session.read_blocked(&pair.policy), "it is not read");
    pair.advance(19);
    assert!(pair.session.is_open());
    pair.advance(1);
    assert!(!pair.session.is_open(), "behind for the grace: closed");
    assert_eq!(pair.log.metrics.slow_consumer_closes, 1);
    pair.window = None;
    pair.drive();
    let frames = pair.frames();
    assert_eq!(
        frames.last().unwrap().close(),
        Some((1008, "slow consumer".into()))
    );
    assert!(frames.len() < 10, "unstarted frames were dropped");
}

/// A frame the socket took half of is finished before the close frame, so
/// the client's byte stream stays a valid frame sequence.
#[test]
fn a_half_written_frame_is_finished_before_the_close() {
    let mut pair = Pair::open(
        Policy {
            max_send_queue: 2048,
            ..policy()
        },
        "/ws/echo/",
    );
    pair.window = Some(100);
    for _ in 0..6 {
        pair.client_frame(true, 0x2, &[9; 500]);
    }
    pair.advance(20);
    pair.window = None;
    pair.drive();
    let frames = pair.frames();
    assert!(pair.inbox.is_empty(), "every byte parsed as whole frames");
    assert_eq!(frames[0].payload, vec![9; 500]);
    assert_eq!(frames.last().unwrap().close().unwrap().0, 1008);
}

/// A member that reads as fast as the kernel allows gets a burst far
/// larger than --max-send-queue, all of it, however it arrives.
#[test]
fn a_member_that_keeps_up_is_never_closed() {
    let mut pair = Pair::open(
        Policy {
            max_send_queue: 4096,
            ..policy()
        },
        "/ws/chat/burst/",
    );
    pair.window = Some(0);
    // Eight times its limit queued in one iteration, as one fan-out of a
    // burst would; then it drains.
    for _ in 0..64 {
        pair.broadcast(&[b'x'; 500]);
    }
    assert!(
        pair.session.is_open(),
        "judged by what the kernel refused, not by one burst"
    );
    pair.window = None;
    pair.drive();
    assert_eq!(pair.frames().len(), 64);
    pair.advance(100);
    assert!(pair.session.is_open());
}

/// Behind but draining, a member holds its room's senders back; once the
/// kernel takes nothing from it for a while it stops holding them (and is
/// closed when over the limit), so a stalled reader never holds a room.
#[test]
fn a_behind_member_throttles_its_room_only_while_it_drains() {
    let mut pair = Pair::open(
        Policy {
            max_send_queue: 4096,
            ..policy()
        },
        "/ws/chat/busy/",
    );
    let room = pair.session.membership().unwrap().room;
    pair.window = Some(0);
    for _ in 0..5 {
        pair.broadcast(&[b'y'; 500]);
    }
    assert!(
        pair.rooms.is_throttled(room),
        "behind and fresh: its room waits"
    );
    pair.advance(10);
    assert!(
        pair.rooms.is_throttled(room),
        "a second without reading may be a busy machine"
    );
    pair.advance(1);
    assert!(
        !pair.rooms.is_throttled(room),
        "stalled: it no longer holds the room"
    );
    assert!(pair.session.is_open(), "not over the limit yet");
    for _ in 0..5 {
        pair.broadcast(&[b'y'; 500]);
    }
    assert!(
        !pair.session.is_open(),
        "over the limit and stalled: closed at once"
    );
    let ons = pair
        .log
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::Throttle { on: true, .. }))
        .count();
    let offs = pair
        .log
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::Throttle { on: false, .. }))
        .count();
    assert_eq!((ons, offs), (1, 1));
}

/// A client that floods pings and never reads: only the latest ping waits
/// for its pong, so its queue stays at one pong however long it floods.
#[test]
fn a_ping_flood_keeps_one_pong() {
    let mut pair = Pair::open(policy(), "/ws/echo/");
    pair.window = Some(0);
    for i in 0..10_000u32 {
        pair.client_frame(true, 0x9, &i.to_be_bytes());
        if i % 100 == 0 {
            pair.advance(1);
        }
    }
    assert!(
        pair.session.queued() < 2_000,
        "queued {}",
        pair.session.queued()
    );
    // A reading client gets every pong (Autobahn 2.10).
    let mut reader = Pair::open(policy(), "/ws/echo/");
    let pings: Vec<u8> = (0..10u8).flat_map(|i| frame(true, 0x9, &[i])).collect();
    reader.client_sends(&pings);
    assert_eq!(reader.frames().len(), 10);
}

#[test]
fn eof_mid_message_leaves_no_membership() {
    let mut pair = Pair::open(policy(), "/ws/chat/gone/");
    pair.client_sends(&frame(true, 0x1, br#"{"message": "half"#)[..10]);
    pair.client_eof();
    assert_eq!(pair.ended, Some(false));
    assert!(pair.rooms.is_empty());
    assert!(pair.log.chats.is_empty(), "half a frame is never a message");
    assert_eq!(
        pair.log
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::Left(_)))
            .count(),
        1,
        "left exactly once"
    );
}

#[test]
fn shutdown_sends_1001_and_waits_for_the_answer() {
    let mut pair = Pair::open(policy(), "/ws/chat/bye/");
    pair.input(|s, cx| s.shut_down(cx));
    assert_eq!(
        pair.next_frame().unwrap().close(),
        Some((1001, "server shutting down".into()))
    );
    pair.client_frame(true, 0x8, &1001u16.to_be_bytes());
    assert_eq!(pair.ended, Some(true));
    let mut waiting = Pair::new(policy());
    waiting.client_sends(b"GET / HTTP/1.1\r\n");
    waiting.input(|s, cx| s.shut_down(cx));
    assert_eq!(waiting.next_http().unwrap().0, 503);
}

/// `--max-pings-per-second` on the virtual clock: a client pinging at the
/// limit for a simulated minute gets every pong; after a quiet second it
/// may send a whole burst at once, and one ping more closes it with 1008.
#[test]
fn pings_at_the_limit_are_answered_and_one_past_the_burst_closes() {
    let limited = Policy {
        pings: roomcast::auth::RateLimit::new(10.0, 20),
        ..policy()
    };
    let mut pair = Pair::open(limited, "/ws/chat/lobby/");
    for i in 0..600 {
        pair.client_frame(true, 0x9, b"tick");
        let frames = pair.frames();
        assert_eq!(frames.len(), 1, "ping {i}: {frames:?}");
        assert_eq!(frames[0].opcode, 0xA, "ping {i}");
        pair.advance(1); // 100 ms: exactly the limit
    }
    pair.advance(10);
    let burst: Vec<u8> = (0..20).flat_map(|_| frame(true, 0x9, b"b")).collect();
    pair.client_sends(&burst);
    let pongs = pair.frames();
    assert_eq!(pongs.len(), 20, "the whole burst: {pongs:?}");
    pair.client_frame(true, 0xA, b"one unsolicited pong more");
    let close = pair.next_frame().and_then(|f| f.close());
    assert_eq!(
        close,
        Some((
            1008,
            "ping flood: more pings and pongs than --max-pings-per-second".into()
        ))
    );
    assert_eq!(pair.log.metrics.ping_floods, 1);
}
