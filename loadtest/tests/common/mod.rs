//! A small in-process chat server for the harness's own tests: thread per connection
//! (tungstenite), Channels semantics (`{"message": v}` to every member of the room, the
//! sender included; `{"error": ...}` to the sender for bad input), and switches that make
//! it misbehave on purpose so the tests can prove the harness notices.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// Deliberate faults, each counted over all fan-out deliveries (1-based).
#[derive(Clone, Default)]
pub struct Faults {
    /// Skip this delivery.
    pub drop_nth_delivery: Option<u64>,
    /// Send this delivery twice.
    pub duplicate_nth_delivery: Option<u64>,
    /// Answer this incoming chat message with an error instead of broadcasting it.
    pub error_nth_message: Option<u64>,
    /// Ping every client right after its handshake.
    pub ping_on_open: bool,
    /// Skip one delivery picked by sender and receiver (see [`TargetedDrop`]).
    pub drop_targeted: Option<TargetedDrop>,
}

/// Skips the `nth` (1-based) of the deliveries whose sender's and receiver's connection
/// numbers (in handshake order, from 0) fall in the given ranges. The soak mode connects
/// its stable clients first, so `0..N` are they and `N..` the churn connections.
#[derive(Clone, Debug, Default)]
pub struct TargetedDrop {
    pub nth: u64,
    pub senders: std::ops::Range<u64>,
    pub receivers: std::ops::Range<u64>,
}

type Rooms = Mutex<HashMap<String, Vec<(u64, Sender<Message>)>>>;

pub struct TestServer {
    pub url: String,
    pub pongs: Arc<AtomicU64>,
    pub accepted: Arc<AtomicU64>,
}

struct Shared {
    rooms: Rooms,
    faults: Faults,
    deliveries: AtomicU64,
    targeted: AtomicU64,
    messages: AtomicU64,
    next_id: AtomicU64,
    pongs: Arc<AtomicU64>,
}

/// Starts a server on an ephemeral 127.0.0.1 port; it lives until the test process ends.
pub fn start(faults: Faults) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let pongs = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared {
        rooms: Mutex::new(HashMap::new()),
        faults,
        deliveries: AtomicU64::new(0),
        targeted: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        next_id: AtomicU64::new(0),
        pongs: pongs.clone(),
    });
    let acc = accepted.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            acc.fetch_add(1, Ordering::SeqCst);
            let shared = shared.clone();
            thread::spawn(move || serve(stream, &shared));
        }
    });
    TestServer {
        url: format!("ws://127.0.0.1:{port}/ws/chat/"),
        pongs,
        accepted,
    }
}

// tungstenite's handshake callback type fixes the large error variant.
#[allow(clippy::result_large_err)]
fn serve(stream: TcpStream, shared: &Shared) {
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_string();
        Ok(resp)
    };
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
        return;
    };
    let room = path
        .trim_start_matches("/ws/chat/")
        .trim_end_matches('/')
        .to_string();
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = channel::<Message>();
    // Writer: the only thread writing data frames on this connection.
    let mut writer = WebSocket::from_raw_socket(write_half, Role::Server, None);
    if shared.faults.ping_on_open {
        let _ = writer.send(Message::Ping(b"are you there".to_vec().into()));
    }
    thread::spawn(move || {
        while let Ok(m) = rx.recv() {
            if writer.send(m).is_err() {
                break;
            }
        }
    });
    shared
        .rooms
        .lock()
        .unwrap()
        .entry(room.clone())
        .or_default()
        .push((id, tx.clone()));
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => on_text(shared, &room, id, &tx, t.as_str()),
            Ok(Message::Pong(_)) => {
                shared.pongs.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Message::Binary(_)) => {
                let _ = tx.send(Message::text(
                    r#"{"error": "binary frames are not chat messages"}"#,
                ));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let mut rooms = shared.rooms.lock().unwrap();
    if let Some(members) = rooms.get_mut(&room) {
        members.retain(|(m, _)| *m != id);
    }
}

fn on_text(shared: &Shared, room: &str, me_id: u64, me: &Sender<Message>, text: &str) {
    let value = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(mut o)) if o.contains_key("message") => {
            o.remove("message").unwrap()
        }
        _ => {
            let _ = me.send(Message::text(
                r#"{"error": "expected an object with a message field"}"#,
            ));
            return;
        }
    };
    let n = shared.messages.fetch_add(1, Ordering::SeqCst) + 1;
    if shared.faults.error_nth_message == Some(n) {
        let _ = me.send(Message::text(r#"{"error": "deliberate test error"}"#));
        return;
    }
    // Python's json.dumps spacing, as the Channels seed would send it.
    let out = format!("{{\"message\": {value}}}");
    // Fan out under the lock so every member sees the room's messages in one order.
    let rooms = shared.rooms.lock().unwrap();
    for (member_id, member) in rooms.get(room).into_iter().flatten() {
        let k = shared.deliveries.fetch_add(1, Ordering::SeqCst) + 1;
        if shared.faults.drop_nth_delivery == Some(k) {
            continue;
        }
        if let Some(t) = &shared.faults.drop_targeted {
            if t.senders.contains(&me_id)
                && t.receivers.contains(member_id)
                && shared.targeted.fetch_add(1, Ordering::SeqCst) + 1 == t.nth
            {
                continue;
            }
        }
        let _ = member.send(Message::text(out.clone()));
        if shared.faults.duplicate_nth_delivery == Some(k) {
            let _ = member.send(Message::text(out.clone()));
        }
    }
}
