//! permessage-deflate over real sockets (SPEC section 10, RFC 7692):
//! negotiation, one compressed frame per broadcast shared by every member
//! that negotiated it, compressed input (whole, fragmented, a bomb), and
//! RSV1 where it does not belong.

mod common;
use common::*;
use roomcast::wire::deflate::{Compressor, Inflater, WindowBits};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Upgrades with `extensions` as the Sec-WebSocket-Extensions header(s);
/// returns the socket and the extension the relay answered with.
fn upgrade(addr: SocketAddr, path: &str, extensions: &[&str]) -> (TcpStream, Option<String>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for e in extensions {
        head.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        answer.push(byte[0]);
    }
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let agreed = answer.lines().find_map(|l| {
        l.strip_prefix("Sec-WebSocket-Extensions: ")
            .map(str::to_string)
    });
    (s, agreed)
}

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A frame as the client reads it: (rsv1, opcode, payload).
fn read_any(s: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    let mut len = u64::from(h[1] & 0x7F);
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).unwrap();
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).unwrap();
        len = u64::from_be_bytes(b);
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).unwrap();
    (h[0] & 0x40 != 0, h[0] & 0x0F, payload)
}

/// The next data message's text, inflated if it came compressed.
fn read_text(s: &mut TcpStream) -> (bool, String) {
    loop {
        let (rsv1, op, payload) = read_any(s);
        if op != 0x1 {
            continue;
        }
        if !rsv1 {
            return (false, String::from_utf8(payload).unwrap());
        }
        let mut out = Vec::new();
        Inflater::new()
            .inflate(&payload, 1 << 24, &mut out)
            .unwrap();
        return (true, String::from_utf8(out).unwrap());
    }
}

/// A masked client frame with RSV1 set (`rsv1`) and any opcode.
fn client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(fin, opcode, payload);
    if rsv1 {
        f[0] |= 0x40;
    }
    f
}

/// What a client compresses: raw deflate with the 0x00 0x00 0xFF 0xFF tail
/// removed (RFC 7692 section 7.2.1).
fn compress(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Compressor::new()
        .compress(text, WindowBits::MAX, &mut out)
        .unwrap();
    out
}

#[test]
fn every_negotiation_case() {
    let relay = Relay::start();
    let rows: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&["permessage-deflate"], Some(AGREED)),
        (&[OFFER], Some(AGREED)),
        (
            &["permessage-deflate; server_max_window_bits=10"],
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"),
        ),
        (&["permessage-deflate; bogus=1"], None),
        (&["permessage-deflate; server_max_window_bits=20"], None),
        (&["x-webkit-deflate-frame"], None),
        // Two offers: the first the relay can honour wins.
        (
            &["permessage-deflate; bogus, permessage-deflate; client_max_window_bits=12"],
            Some(AGREED),
        ),
        (&["foo", "permessage-deflate"], Some(AGREED)),
    ];
    for (offers, want) in rows {
        let (_, agreed) = upgrade(relay.addr, "/ws/echo/", offers);
        assert_eq!(agreed.as_deref(), *want, "{offers:?}");
    }
    // Off: every offer declined, the upgrade still succeeds.
    let off = Relay::start_with(|c| c.deflate = roomcast::config::Switch::Off);
    assert_eq!(upgrade(off.addr, "/ws/echo/", &[OFFER]).1, None);
}

/// A deflate member and a plain member in one room get the same messages;
/// the broadcast is compressed once however many deflate members there
/// are, and short messages go out plain.
#[test]
fn one_compressed_frame_per_broadcast_shared_by_the_room() {
    let relay = Relay::start();
    let mut squeezed: Vec<TcpStream> = (0..5)
        .map(|_| upgrade(relay.addr, "/ws/chat/mixed/", &[OFFER]).0)
        .collect();
    let mut plain = upgrade(relay.addr, "/ws/chat/mixed/", &[]).0;
    relay.wait_metric("roomcast_connections", 6);
    let long = json!({ "message": {"text": "hello ".repeat(100), "mentions": ["ann", "bo"]} });
    let short = json!({ "message": "hi" });
    for (i, msg) in [&long, &short, &long].into_iter().enumerate() {
        // Sent compressed by a deflate member, or plain: both are read.
        let text = msg.to_string();
        let bytes = match i {
            0 => client_frame(true, true, 0x1, &compress(text.as_bytes())),
            _ => frame(true, 0x1, text.as_bytes()),
        };
        squeezed[0].write_all(&bytes).unwrap();
        let (was_compressed, got) = read_text(&mut plain);
        assert!(!was_compressed, "the plain member never gets RSV1");
        for s in &mut squeezed {
            let (c, text) = read_text(s);
            assert_eq!(
                text, got,
                "what a deflate member inflates is what a plain one gets"
            );
            assert_eq!(c, msg == &long, "compressed only above --deflate-min-size");
        }
    }
    assert_eq!(
        relay.metric("roomcast_deflate_compressions_total"),
        2,
        "once per broadcast"
    );
    assert!(
        relay.metric("roomcast_deflate_bytes_out_total")
            < relay.metric("roomcast_deflate_bytes_in_total") / 2
    );
}

#[test]
fn compressed_input_whole_fragmented_and_a_bomb() {
    let relay = Relay::start_with(|c| {
        c.max_message_size = 64 << 10;
        c.max_frame_size = 64 << 10;
    });
    let (mut s, agreed) = upgrade(relay.addr, "/ws/echo/", &[OFFER]);
    assert!(agreed.is_some());
    // Fragmented: RSV1 on the first frame only, a ping between fragments.
    let text = "fragmented and compressed ".repeat(40);
    let packed = compress(text.as_bytes());
    let (a, b) = packed.split_at(packed.len() / 2);
    let mut bytes = client_frame(false, true, 0x1, a);
    bytes.extend(client_frame(true, false, 0x9, b"mid"));
    bytes.extend(client_frame(true, false, 0x0, b));
    s.write_all(&bytes).unwrap();
    assert_eq!(read_any(&mut s).1, 0xA);
    assert_eq!(read_text(&mut s), (true, text));
    // A bomb: a few KiB that would inflate to 1 GiB, against a 64 KiB limit.
    let mut bomb = Vec::new();
    Compressor::new()
        .compress(&vec![0u8; 4 << 20], WindowBits::MAX, &mut bomb)
        .unwrap();
    assert!(bomb.len() < 8 << 10, "{}", bomb.len());
    s.write_all(&client_frame(true, true, 0x2, &bomb)).unwrap();
    assert_eq!(expect_close(&mut s).0, 1009);
    // Not deflate: UTF-8 is checked on the inflated text.
    let (mut s, _) = upgrade(relay.addr, "/ws/echo/", &[OFFER]);
    s.write_all(&client_frame(true, true, 0x1, &compress(b"bad \xC3\x28")))
        .unwrap();
    assert_eq!(expect_close(&mut s).0, 1007);
    assert_eq!(relay.metric("roomcast_closes_total{code=\"1009\"}"), 1);
}

#[test]
fn rsv1_where_it_does_not_belong_is_a_protocol_error() {
    let relay = Relay::start();
    let rows: Vec<(&str, Vec<u8>, bool)> = vec![
        ("RSV1 on a ping", client_frame(true, true, 0x9, b""), true),
        (
            "RSV1 on a continuation",
            [
                client_frame(false, true, 0x1, &compress(b"ab")),
                client_frame(true, true, 0x0, b"x"),
            ]
            .concat(),
            true,
        ),
        (
            "RSV1 without the extension",
            client_frame(true, true, 0x1, b"x"),
            false,
        ),
    ];
    for (what, bytes, negotiate) in rows {
        let offers: &[&str] = if negotiate { &[OFFER] } else { &[] };
        let (mut s, _) = upgrade(relay.addr, "/ws/echo/", offers);
        s.write_all(&bytes).unwrap();
        assert_eq!(expect_close(&mut s).0, 1002, "{what}");
    }
}

/// For many messages of every size around the threshold: a deflate member
/// inflates exactly what a plain member receives.
#[test]
fn what_a_deflate_member_inflates_equals_what_a_plain_member_receives() {
    let relay = Relay::start();
    let (mut squeezed, _) = upgrade(relay.addr, "/ws/chat/same/", &[OFFER]);
    let (mut plain, _) = upgrade(relay.addr, "/ws/chat/same/", &[]);
    relay.wait_metric("roomcast_connections", 2);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for n in (0..600).step_by(7).chain([255, 256, 257, 4096, 60_000]) {
        let body: String = (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ["a", "é", "🎉", " ", "json", "\""][(seed % 6) as usize]
            })
            .collect();
        let text = json!({ "message": body, "n": n }).to_string();
        plain.write_all(&frame(true, 0x1, text.as_bytes())).unwrap();
        let (_, a) = read_text(&mut plain);
        let (_, b) = read_text(&mut squeezed);
        assert_eq!(a, b, "message of {n} pieces");
    }
}
