//! Chat semantics over real sockets (SPEC section 2).

mod common;
use common::*;
use serde_json::json;

#[test]
fn broadcast_reaches_every_member_and_the_sender() {
    let relay = Relay::start();
    let mut members: Vec<Client> = (0..5).map(|_| relay.chat("lobby")).collect();
    say(&mut members[2], json!("hello"));
    for m in &mut members {
        assert_eq!(recv_text(m), r#"{"message": "hello"}"#);
    }
}

#[test]
fn the_seed_snippet_gets_its_message_back() {
    let relay = Relay::start();
    let mut ws = relay.chat("room-name");
    send_text(&mut ws, r#"{"message":"Hello, server!"}"#);
    assert_eq!(recv_json(&mut ws), json!({"message": "Hello, server!"}));
}

#[test]
fn any_json_value_is_relayed_and_extra_fields_ignored() {
    let relay = Relay::start();
    let mut a = relay.chat("values");
    for value in [
        json!(42),
        json!(null),
        json!({"nested": [1, "é", true]}),
        json!("<img src=x>"),
    ] {
        send_text(
            &mut a,
            &json!({"message": value, "user": "ignored"}).to_string(),
        );
        assert_eq!(recv_json(&mut a), json!({ "message": value }));
    }
}

#[test]
fn rooms_are_isolated() {
    let relay = Relay::start();
    let mut a = relay.chat("alpha");
    let mut b = relay.chat("beta");
    say(&mut a, json!("only alpha"));
    assert_eq!(recv_json(&mut a)["message"], "only alpha");
    say(&mut b, json!("only beta"));
    // b's first message is its own: nothing from alpha arrived before it.
    assert_eq!(recv_json(&mut b)["message"], "only beta");
}

/// SPEC section 2's bad-input rows: one error frame to the sender only, the
/// connection stays open, nothing is broadcast.
#[test]
fn bad_input_gets_one_error_frame_and_is_not_broadcast() {
    let relay = Relay::start();
    let mut sender = relay.chat("errors");
    let mut other = relay.chat("errors");
    let rows: &[(&str, &str)] = &[
        ("not json", "invalid JSON"),
        (r#"{"message": "unterminated"#, "line 1 column"),
        ("[1, 2]", "an array"),
        ("\"text\"", "a string"),
        ("7", "a number"),
        (r#"{"text": "hi"}"#, "no \"message\" field"),
    ];
    for (input, needle) in rows {
        send_text(&mut sender, input);
        let err = recv_json(&mut sender);
        let text = err["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error for {input}: {err}"));
        assert!(text.contains(needle), "{input} -> {text}");
        assert_eq!(err.as_object().unwrap().len(), 1);
    }
    sender
        .send(tungstenite::Message::binary(vec![1, 2, 3]))
        .unwrap();
    assert!(recv_json(&mut sender)["error"]
        .as_str()
        .unwrap()
        .contains("binary"));
    // Still open, and the other member saw none of it: its next message is this.
    say(&mut sender, json!("after errors"));
    assert_eq!(recv_json(&mut sender)["message"], "after errors");
    assert_eq!(recv_json(&mut other)["message"], "after errors");
    assert_eq!(relay.metric("roomcast_chat_errors_total"), 7);
}

/// All members see one order; each sender's messages keep their order, with
/// several concurrent senders and any number of decode workers.
#[test]
fn one_order_per_room_with_concurrent_senders() {
    // (workers, inline threshold): 0 forces every batch through the workers.
    for (workers, inline) in [(0, 32), (1, 0), (3, 0), (2, 32)] {
        let relay = Relay::start_with(|c| {
            c.workers = Some(workers);
            c.inline_decode_below = inline;
        });
        let senders = 6;
        let per_sender = 150;
        let listeners: Vec<Client> = (0..3).map(|_| relay.chat("order")).collect();
        // Everyone joins before anyone speaks, so every member sees every message.
        let clients: Vec<Client> = (0..senders).map(|_| relay.chat("order")).collect();
        let mut threads = Vec::new();
        for (s, mut ws) in clients.into_iter().enumerate() {
            threads.push(std::thread::spawn(move || {
                for i in 0..per_sender {
                    say(&mut ws, json!([s, i]));
                }
                // Drain our own copies so the relay never sees us as slow.
                let mut seen = 0;
                while seen < senders * per_sender {
                    recv_text(&mut ws);
                    seen += 1;
                }
            }));
        }
        let mut orders = Vec::new();
        for mut l in listeners {
            let mut got = Vec::new();
            for _ in 0..senders * per_sender {
                let v = recv_json(&mut l);
                got.push((
                    v["message"][0].as_u64().unwrap(),
                    v["message"][1].as_u64().unwrap(),
                ));
            }
            orders.push(got);
        }
        for t in threads {
            t.join().unwrap();
        }
        for o in &orders {
            assert_eq!(
                o, &orders[0],
                "members disagree on the order (workers {workers})"
            );
        }
        for s in 0..senders as u64 {
            let mine: Vec<u64> = orders[0]
                .iter()
                .filter(|(who, _)| *who == s)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(
                mine,
                (0..per_sender as u64).collect::<Vec<_>>(),
                "sender {s} reordered (workers {workers})"
            );
        }
    }
}

#[test]
fn a_client_that_vanishes_mid_frame_leaves_no_trace() {
    let relay = Relay::start();
    let mut stay = relay.chat("trace");
    {
        let mut raw = raw_ws(relay.addr, "/ws/chat/trace/");
        let f = frame(true, 0x1, br#"{"message": "never finished"}"#);
        std::io::Write::write_all(&mut raw, &f[..f.len() / 2]).unwrap();
        let mut other_room = raw_ws(relay.addr, "/ws/chat/gone/");
        std::io::Write::write_all(&mut other_room, &frame(false, 0x1, b"{\"mess")).unwrap();
        relay.wait_metric("roomcast_rooms", 2);
    } // both dropped without a close frame
    relay.wait_metric("roomcast_connections", 1);
    relay.wait_metric("roomcast_rooms", 1);
    say(&mut stay, json!("still here"));
    assert_eq!(recv_json(&mut stay)["message"], "still here");
    drop(stay);
    relay.wait_metric("roomcast_connections", 0);
    relay.wait_metric("roomcast_rooms", 0);
}
