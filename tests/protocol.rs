//! RFC 6455 behaviour over real sockets, with hand-made frames (SPEC
//! section 3): every close code the relay sends, fragmentation, control
//! frames and the closing handshake.

mod common;
use common::*;
use std::io::Write;
use tungstenite::Message;

fn close_code_for(relay: &Relay, path: &str, bytes: &[u8]) -> (u16, String) {
    let mut s = raw_ws(relay.addr, path);
    s.write_all(bytes).unwrap();
    expect_close(&mut s)
}

/// SPEC section 3's table: one row per fault and the code it gets.
#[test]
fn every_close_code_from_a_bad_frame() {
    let relay = Relay::start_with(|c| {
        c.max_message_size = 1000;
        c.max_frame_size = 600;
        c.max_send_queue = 64 * 1024;
    });
    let unmasked = [0x81, 0x02, b'h', b'i'];
    let mut too_long_ping = vec![0x89, 0xFE, 0x00, 0x7E, 0, 0, 0, 0];
    too_long_ping.extend_from_slice(&[0; 126]);
    let mut two_messages = frame(false, 0x1, b"a");
    two_messages.extend(frame(true, 0x1, b"b"));
    let mut over_message = frame(false, 0x2, &[0; 600]);
    over_message.extend(frame(true, 0x0, &[0; 401]));
    let mut bad_utf8_across = frame(false, 0x1, "κό".as_bytes());
    bad_utf8_across.extend(frame(true, 0x0, b"\xED\xA0\x80"));
    let rows: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("unmasked frame", unmasked.to_vec(), 1002, "masked"),
        (
            "RSV1 set",
            {
                let mut f = frame(true, 0x1, b"x");
                f[0] |= 0x40;
                f
            },
            1002,
            "reserved",
        ),
        (
            "RSV3 set",
            {
                let mut f = frame(true, 0x1, b"x");
                f[0] |= 0x10;
                f
            },
            1002,
            "reserved",
        ),
        ("opcode 0x3", frame(true, 0x3, b""), 1002, "opcode"),
        ("opcode 0xB", frame(true, 0xB, b""), 1002, "opcode"),
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
            "close code 1005",
            frame(true, 0x8, &1005u16.to_be_bytes()),
            1002,
            "status code",
        ),
        (
            "close code 999",
            frame(true, 0x8, &999u16.to_be_bytes()),
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
        (
            "frame over max-frame-size",
            frame(true, 0x2, &[0; 601]),
            1009,
            "frame",
        ),
        (
            "message over max-message-size",
            over_message,
            1009,
            "message",
        ),
    ];
    for (what, bytes, code, needle) in rows {
        for path in ["/ws/echo/", "/ws/chat/codes/"] {
            let (got, reason) = close_code_for(&relay, path, &bytes);
            assert_eq!(got, code, "{what} on {path}: reason {reason:?}");
            assert!(
                reason.contains(needle),
                "{what}: reason {reason:?} lacks {needle:?}"
            );
        }
    }
    relay.wait_metric("roomcast_connections", 0);
    assert_eq!(relay.metric("roomcast_closes_total{code=\"1007\"}"), 4);
    assert_eq!(relay.metric("roomcast_closes_total{code=\"1009\"}"), 4);
}

#[test]
fn utf8_fails_fast_before_the_frame_ends() {
    let relay = Relay::start();
    let mut s = raw_ws(relay.addr, "/ws/echo/");
    // A 1000-byte text frame whose invalid byte is in the first chunk; the
    // rest is never sent, so only a fail-fast relay answers.
    let mut payload = b"ok \xF8".to_vec();
    payload.resize(1000, b'a');
    let f = frame(true, 0x1, &payload);
    s.write_all(&f[..20]).unwrap();
    let (_, op, body) = read_frame(&mut s).unwrap();
    assert_eq!((op, u16::from_be_bytes([body[0], body[1]])), (0x8, 1007));
}

#[test]
fn echo_returns_the_same_opcode() {
    let relay = Relay::start();
    let mut ws = relay.echo();
    ws.send(Message::text("héllo")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("héllo"));
    ws.send(Message::binary(vec![0u8, 255, 7])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 255, 7]));
}

#[test]
fn a_ten_mib_message_in_many_fragments() {
    let relay = Relay::start_with(|c| {
        c.max_message_size = 16 << 20;
        c.max_frame_size = 16 << 20;
        c.max_send_queue = 20 << 20;
    });
    let mut s = raw_ws(relay.addr, "/ws/echo/");
    let payload: Vec<u8> = (0..10 << 20).map(|i: u32| (i % 251) as u8).collect();
    let parts: Vec<&[u8]> = payload.chunks(65_531).collect();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let frames: Vec<Vec<u8>> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut f = frame(i + 1 == parts.len(), if i == 0 { 0x2 } else { 0x0 }, p);
                if i % 10 == 0 && i + 1 < parts.len() {
                    // Control frames between the fragments.
                    f.extend(frame(true, 0x9, b"mid"));
                }
                f
            })
            .collect();
        std::thread::spawn(move || {
            for f in frames {
                s.write_all(&f).unwrap();
            }
        })
    };
    let mut pongs = 0;
    loop {
        let (fin, op, body) = read_frame(&mut s).unwrap();
        match op {
            0xA => {
                assert_eq!(body, b"mid");
                pongs += 1;
            }
            0x2 => {
                assert!(fin);
                assert!(body == payload, "echoed message differs");
                break;
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(pongs, (0..parts.len() - 1).filter(|i| i % 10 == 0).count());
}

#[test]
fn ping_is_answered_with_pong_carrying_its_payload() {
    let relay = Relay::start();
    for path in ["/ws/echo/", "/ws/chat/pings/"] {
        let mut s = raw_ws(relay.addr, path);
        s.write_all(&frame(true, 0x9, b"are you there")).unwrap();
        assert_eq!(
            read_frame(&mut s).unwrap(),
            (true, 0xA, b"are you there".to_vec())
        );
    }
}

#[test]
fn the_closing_handshake_echoes_the_code_and_ends_the_connection() {
    let relay = Relay::start();
    let mut s = raw_ws(relay.addr, "/ws/chat/bye/");
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"done");
    s.write_all(&frame(true, 0x8, &payload)).unwrap();
    let (_, op, body) = read_frame(&mut s).unwrap();
    assert_eq!((op, &body[..2]), (0x8, &4000u16.to_be_bytes()[..]));
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut rest).unwrap();
    assert!(rest.is_empty());
    // An empty close frame is answered with 1000.
    let mut ws = relay.chat("bye");
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                assert!(frame.is_none_or(|f| u16::from(f.code) == 1000));
            }
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    relay.wait_metric("roomcast_connections", 0);
}

#[test]
fn frames_pipelined_behind_the_request_head_are_processed() {
    let relay = Relay::start();
    let mut s = std::net::TcpStream::connect(relay.addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut bytes = format!(
        "GET /ws/chat/eager/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    bytes.extend(frame(true, 0x1, br#"{"message": "early"}"#));
    s.write_all(&bytes).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut s, &mut b).unwrap();
        head.push(b[0]);
    }
    let (_, op, body) = read_frame(&mut s).unwrap();
    assert_eq!(
        (op, body.as_slice()),
        (0x1, &br#"{"message": "early"}"#[..])
    );
}
