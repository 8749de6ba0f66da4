//! A small in-process chat server for the harness's own tests: thread per connection
//! (tungstenite), Channels semantics (`{"message": v}` to every member of the room, the
//! sender included; `{"error": ...}` to the sender for bad input), and switches that make
//! it misbehave on purpose so the tests can prove the harness notices.
//!
//! [`start_cluster`] starts several such servers ("nodes", each on its own port) that
//! share their rooms, as roomcast nodes on one Redis backplane do: a message sent through
//! any node reaches the room's members on every node, each member's own node delivering
//! it (so that node's faults apply), in one order per room.

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

/// Deliberate faults, each counted over all fan-out deliveries (1-based) that the node
/// makes (to its own members).
#[derive(Clone, Default)]
pub struct Faults {
    /// Skip this delivery.
    pub drop_nth_delivery: Option<u64>,
    /// Send this delivery twice.
    pub duplicate_nth_delivery: Option<u64>,
    /// Answer this incoming chat message (received by this node) with an error instead of
    /// broadcasting it.
    pub error_nth_message: Option<u64>,
    /// Ping every client right after its handshake.
    pub ping_on_open: bool,
    /// Skip one delivery picked by sender and receiver (see [`TargetedDrop`]).
    pub drop_targeted: Option<TargetedDrop>,
    /// Never deliver messages sent through another node (a node that lost its backplane
    /// subscription): its members only see what was sent through it.
    pub drop_from_other_nodes: bool,
    /// A rate limiter per connection, as roomcast's: past this many chat messages a
    /// connection's messages get `{"error": "rate limited ..."}` and are not broadcast;
    /// past twice as many it is closed with 1008.
    pub rate_limit: Option<u64>,
    /// Refuse (403) an upgrade whose URL has no `token=` query parameter.
    pub require_token: bool,
}

impl Faults {
    pub fn drop_nth_delivery(n: u64) -> Faults {
        Faults {
            drop_nth_delivery: Some(n),
            ..Faults::default()
        }
    }

    pub fn duplicate_nth_delivery(n: u64) -> Faults {
        Faults {
            duplicate_nth_delivery: Some(n),
            ..Faults::default()
        }
    }

    pub fn error_nth_message(n: u64) -> Faults {
        Faults {
            error_nth_message: Some(n),
            ..Faults::default()
        }
    }

    pub fn rate_limit(n: u64) -> Faults {
        Faults {
            rate_limit: Some(n),
            ..Faults::default()
        }
    }

    pub fn drop_from_other_nodes() -> Faults {
        Faults {
            drop_from_other_nodes: true,
            ..Faults::default()
        }
    }
}

/// Asserts that one of a run's failures mentions `text`, showing them all when none does.
pub fn assert_fails_with(failures: &[String], text: &str) {
    assert!(
        failures.iter().any(|f| f.contains(text)),
        "no failure mentions {text:?}: {failures:?}"
    );
}

/// Skips the `nth` (1-based) of the deliveries whose sender's and receiver's connection
/// numbers (in handshake order over the whole cluster, from 0) fall in the given ranges.
/// The soak mode connects its stable clients first, so `0..N` are they and `N..` the churn
/// connections.
#[derive(Clone, Debug, Default)]
pub struct TargetedDrop {
    pub nth: u64,
    pub senders: std::ops::Range<u64>,
    pub receivers: std::ops::Range<u64>,
}

struct Member {
    id: u64,
    node: usize,
    tx: Sender<Message>,
}

type Rooms = Mutex<HashMap<String, Vec<Member>>>;

pub struct TestServer {
    pub url: String,
    /// Pongs received by the whole cluster.
    pub pongs: Arc<AtomicU64>,
    /// Connections this node accepted.
    pub accepted: Arc<AtomicU64>,
}

/// Nodes sharing rooms.
pub struct Cluster {
    pub nodes: Vec<TestServer>,
}

impl Cluster {
    /// Every node's URL, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }
}

/// One node's faults and counters.
struct Node {
    faults: Faults,
    deliveries: AtomicU64,
    messages: AtomicU64,
}

/// What the nodes share: the rooms (the backplane) and connection numbering.
struct Hub {
    rooms: Rooms,
    nodes: Vec<Node>,
    targeted: AtomicU64,
    next_id: AtomicU64,
    pongs: Arc<AtomicU64>,
}

/// Starts a server on an ephemeral 127.0.0.1 port; it lives until the test process ends.
pub fn start(faults: Faults) -> TestServer {
    start_cluster(vec![faults]).nodes.remove(0)
}

/// Starts one node per entry of `faults`, each on its own ephemeral 127.0.0.1 port,
/// sharing rooms; they live until the test process ends.
pub fn start_cluster(faults: Vec<Faults>) -> Cluster {
    let pongs = Arc::new(AtomicU64::new(0));
    let hub = Arc::new(Hub {
        rooms: Mutex::new(HashMap::new()),
        nodes: faults
            .into_iter()
            .map(|faults| Node {
                faults,
                deliveries: AtomicU64::new(0),
                messages: AtomicU64::new(0),
            })
            .collect(),
        targeted: AtomicU64::new(0),
        next_id: AtomicU64::new(0),
        pongs: pongs.clone(),
    });
    let nodes = (0..hub.nodes.len())
        .map(|node| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().unwrap().port();
            let accepted = Arc::new(AtomicU64::new(0));
            let acc = accepted.clone();
            let hub = hub.clone();
            thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    acc.fetch_add(1, Ordering::SeqCst);
                    let hub = hub.clone();
                    thread::spawn(move || serve(stream, &hub, node));
                }
            });
            TestServer {
                url: format!("ws://127.0.0.1:{port}/ws/chat/"),
                pongs: pongs.clone(),
                accepted,
            }
        })
        .collect();
    Cluster { nodes }
}

// tungstenite's handshake callback type fixes the large error variant.
#[allow(clippy::result_large_err)]
fn serve(stream: TcpStream, hub: &Hub, node: usize) {
    let id = hub.next_id.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = channel::<Message>();
    let mut room = String::new();
    // The member joins its room before the 101 goes out, as in roomcast: a
    // client that has its answer is in the room, so a message sent at once
    // by anyone (the harness starts sending as soon as everyone is
    // connected) reaches it. What arrives before the writer starts waits in
    // the channel.
    let require_token = hub.nodes[node].faults.require_token;
    let callback = |req: &Request, resp: Response| {
        let has_token = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("token=") && p.len() > 6));
        if require_token && !has_token {
            let refusal = tungstenite::http::Response::builder()
                .status(403)
                .body(Some("no token".to_string()))
                .expect("a valid response");
            return Err(refusal);
        }
        room = req
            .uri()
            .path()
            .trim_start_matches("/ws/chat/")
            .trim_end_matches('/')
            .to_string();
        hub.rooms
            .lock()
            .unwrap()
            .entry(room.clone())
            .or_default()
            .push(Member {
                id,
                node,
                tx: tx.clone(),
            });
        Ok(resp)
    };
    let leave = |room: &str| {
        let mut rooms = hub.rooms.lock().unwrap();
        if let Some(members) = rooms.get_mut(room) {
            members.retain(|m| m.id != id);
        }
    };
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut ws = match tungstenite::accept_hdr(stream, callback) {
        Ok(ws) => ws,
        Err(_) => return leave(&room),
    };
    // Writer: the only thread writing data frames on this connection.
    let mut writer = WebSocket::from_raw_socket(write_half, Role::Server, None);
    if hub.nodes[node].faults.ping_on_open {
        let _ = writer.send(Message::Ping(b"are you there".to_vec().into()));
    }
    thread::spawn(move || {
        while let Ok(m) = rx.recv() {
            if writer.send(m).is_err() {
                break;
            }
        }
    });
    let mut mine = 0u64;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                mine += 1;
                match hub.nodes[node].faults.rate_limit {
                    // Closed: what it still sends is read and dropped until its close
                    // frame answers ours (leaving it unread would make the close a reset).
                    Some(n) if mine > 2 * n + 1 => {}
                    Some(n) if mine == 2 * n + 1 => {
                        leave(&room);
                        let _ = tx.send(Message::Close(Some(tungstenite::protocol::CloseFrame {
                            code: tungstenite::protocol::frame::coding::CloseCode::Policy,
                            reason: "rate limited".into(),
                        })));
                    }
                    Some(n) if mine > n => {
                        let _ = tx.send(Message::text(r#"{"error": "rate limited (test)"}"#));
                    }
                    _ => on_text(hub, node, &room, id, &tx, t.as_str()),
                }
            }
            Ok(Message::Pong(_)) => {
                hub.pongs.fetch_add(1, Ordering::SeqCst);
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
    leave(&room);
}

fn on_text(hub: &Hub, node: usize, room: &str, me_id: u64, me: &Sender<Message>, text: &str) {
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
    let here = &hub.nodes[node];
    let n = here.messages.fetch_add(1, Ordering::SeqCst) + 1;
    if here.faults.error_nth_message == Some(n) {
        let _ = me.send(Message::text(r#"{"error": "deliberate test error"}"#));
        return;
    }
    // Python's json.dumps spacing, as the Channels seed would send it.
    let out = format!("{{\"message\": {value}}}");
    // Fan out under the lock so every member sees the room's messages in one order.
    let rooms = hub.rooms.lock().unwrap();
    for member in rooms.get(room).into_iter().flatten() {
        // The member's own node delivers: its faults apply.
        let via = &hub.nodes[member.node];
        if via.faults.drop_from_other_nodes && member.node != node {
            continue;
        }
        let k = via.deliveries.fetch_add(1, Ordering::SeqCst) + 1;
        if via.faults.drop_nth_delivery == Some(k) {
            continue;
        }
        if let Some(t) = &via.faults.drop_targeted {
            if t.senders.contains(&me_id)
                && t.receivers.contains(&member.id)
                && hub.targeted.fetch_add(1, Ordering::SeqCst) + 1 == t.nth
            {
                continue;
            }
        }
        let _ = member.tx.send(Message::text(out.clone()));
        if via.faults.duplicate_nth_delivery == Some(k) {
            let _ = member.tx.send(Message::text(out.clone()));
        }
    }
}
