//! One shard's Redis connection as a state machine, without the socket:
//! the thread feeds it the bytes it read and writes out what it queued.
//!
//! Invariants:
//! - `pending` lists, in order, what Redis still owes an answer for: the
//!   `HELLO`, each `PUBLISH` (one reply) and each `SUBSCRIBE`/`UNSUBSCRIBE`
//!   (one confirmation push per channel, or one error reply). Pushes of kind
//!   `message` never consume an entry.
//! - A publish leaves `pending` exactly once: acknowledged by its reply, or
//!   delivered locally when the connection is lost before the reply (unless
//!   its own message was the last thing Redis sent, which means it was
//!   delivered already). Either way its cost leaves `Shared::queue_bytes`.
//! - `rooms` is the set of rooms with local members (desired subscriptions),
//!   kept across reconnects so every live room is subscribed again.

use super::{Event, Shared};
use crate::msgpack;
use crate::redis_url::RedisUrl;
use crate::resp::{self, Value};
use crate::wire::frame::Frame;
use crate::wire::frame::{self, Opcode};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Channels per `SUBSCRIBE` when resubscribing after a reconnect.
const SUBSCRIBE_CHUNK: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No connection (the thread is waiting to retry).
    Down,
    /// Connected, `HELLO` sent, not yet answered.
    Hello,
    /// `HELLO` answered: messages go through Redis.
    Ready,
}

#[derive(Debug)]
enum Pending {
    Hello,
    Publish {
        room: Arc<str>,
        payload: Vec<u8>,
        cost: usize,
    },
    /// Confirmation pushes still expected.
    Subscribe(usize),
    Unsubscribe(usize),
    Ping,
}

/// A protocol failure: the connection must be dropped and retried.
#[derive(Debug)]
pub struct LinkError(pub String);

pub struct Link {
    pub shard: usize,
    state: State,
    url: RedisUrl,
    /// `<prefix>__group__chat_`: a room's channel is this plus its name.
    channel_prefix: Vec<u8>,
    /// Desired subscriptions: channel name to room.
    rooms: HashMap<Box<[u8]>, Arc<str>>,
    pending: VecDeque<Pending>,
    /// The last thing received was a `message` push equal to the oldest
    /// pending publish: if the connection dies now, that one was delivered.
    head_echoed: bool,
    /// Bytes queued for the socket.
    pub out: Vec<u8>,
    inbuf: Vec<u8>,
    max_message: usize,
    limits: resp::Limits,
    json: Vec<u8>,
    frame: Vec<u8>,
    name: Vec<u8>,
}

impl Link {
    /// `max_message`: the largest chat message delivered to clients;
    /// `max_reply`: the largest single reply read from Redis.
    pub fn new(
        shard: usize,
        url: RedisUrl,
        prefix: &str,
        max_message: usize,
        max_reply: usize,
    ) -> Link {
        Link {
            shard,
            state: State::Down,
            url,
            channel_prefix: crate::shard::group_channel(prefix, "").into_bytes(),
            rooms: HashMap::new(),
            pending: VecDeque::new(),
            head_echoed: false,
            out: Vec::new(),
            inbuf: Vec::new(),
            max_message,
            limits: resp::Limits {
                max_bulk: max_reply,
                max_elements: 1 << 16,
                max_depth: 16,
            },
            json: Vec::new(),
            frame: Vec::new(),
            name: Vec::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Redis owes us something.
    pub fn awaiting(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn channel(&self, room: &str) -> Vec<u8> {
        let mut c = Vec::with_capacity(self.channel_prefix.len() + room.len());
        c.extend_from_slice(&self.channel_prefix);
        c.extend_from_slice(room.as_bytes());
        c
    }

    /// Whether `channel` is `room`'s, without building the name.
    fn is_channel_of(&self, channel: &[u8], room: &str) -> bool {
        channel.strip_prefix(&self.channel_prefix[..]) == Some(room.as_bytes())
    }

    /// A fresh TCP connection: say hello (RESP3, credentials, a name) and
    /// subscribe every live room, all pipelined.
    pub fn connected(&mut self) {
        self.out.clear();
        self.inbuf.clear();
        self.pending.clear();
        self.head_echoed = false;
        let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
        let user = self.url.username.clone();
        let pass = self.url.password.clone();
        if let Some(pass) = pass.as_deref() {
            args.push(b"AUTH");
            args.push(user.as_deref().unwrap_or("default").as_bytes());
            args.push(pass.as_bytes());
        }
        args.extend_from_slice(&[b"SETNAME", b"roomcast"]);
        resp::write_command(&mut self.out, &args);
        self.pending.push_back(Pending::Hello);
        self.state = State::Hello;
        let channels: Vec<&[u8]> = self.rooms.keys().map(|c| &c[..]).collect();
        for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(chunk.len() + 1);
            args.push(b"SUBSCRIBE");
            args.extend_from_slice(chunk);
            resp::write_command(&mut self.out, &args);
            self.pending.push_back(Pending::Subscribe(chunk.len()));
        }
    }

    pub fn subscribe(&mut self, room: Arc<str>) {
        let channel = self.channel(&room).into_boxed_slice();
        if self.state != State::Down {
            resp::write_command(&mut self.out, &[b"SUBSCRIBE", &channel]);
            self.pending.push_back(Pending::Subscribe(1));
        }
        self.rooms.insert(channel, room);
    }

    pub fn unsubscribe(&mut self, room: &str) {
        let channel = self.channel(room);
        if self.rooms.remove(&channel[..]).is_some() && self.state != State::Down {
            resp::write_command(&mut self.out, &[b"UNSUBSCRIBE", &channel]);
            self.pending.push_back(Pending::Unsubscribe(1));
        }
    }

    /// Sends a message through Redis, or straight to the local members while
    /// the shard is not ready.
    pub fn publish(
        &mut self,
        room: Arc<str>,
        payload: Vec<u8>,
        cost: usize,
        shared: &Shared,
        events: &mut Vec<Event>,
    ) {
        if self.state != State::Ready {
            self.fallback(room, &payload, cost, shared, events);
            return;
        }
        // The channel name is built in a reused buffer: this runs per message.
        let mut channel = std::mem::take(&mut self.name);
        channel.clear();
        channel.extend_from_slice(&self.channel_prefix);
        channel.extend_from_slice(room.as_bytes());
        resp::write_command(&mut self.out, &[b"PUBLISH", &channel, &payload]);
        self.name = channel;
        self.pending.push_back(Pending::Publish {
            room,
            payload,
            cost,
        });
    }

    /// A liveness probe for a quiet connection.
    pub fn ping(&mut self) {
        if self.state == State::Ready {
            resp::write_command(&mut self.out, &[b"PING"]);
            self.pending.push_back(Pending::Ping);
        }
    }

    /// Delivers a message to local members without Redis.
    fn fallback(
        &mut self,
        room: Arc<str>,
        payload: &[u8],
        cost: usize,
        shared: &Shared,
        events: &mut Vec<Event>,
    ) {
        shared.queue_bytes.fetch_sub(cost, Ordering::AcqRel);
        shared.fallback.fetch_add(1, Ordering::Relaxed);
        if let Some(frame) = self.frame_for(payload, shared) {
            shared.event_bytes.fetch_add(frame.len(), Ordering::AcqRel);
            events.push(Event::Deliver { room, frame });
        }
    }

    /// The WebSocket text frame for a Channels event, or `None` (counted)
    /// when it is not a chat message a consumer could send.
    fn frame_for(&mut self, payload: &[u8], shared: &Shared) -> Option<Frame> {
        self.json.clear();
        if let Err(e) = msgpack::decode_chat_event(payload, &mut self.json) {
            shared.drop_reason(e.label());
            return None;
        }
        // A member's queue must be able to hold it (--max-send-queue is at
        // least --max-message-size plus a header).
        if self.json.len() > self.max_message {
            shared.drop_reason("too_large");
            return None;
        }
        self.frame.clear();
        frame::push_header(&mut self.frame, Opcode::Text, self.json.len());
        self.frame.extend_from_slice(&self.json);
        Some(Frame::from(&self.frame[..]))
    }

    /// The connection is gone: undelivered publishes go to local members,
    /// in order.
    pub fn disconnected(&mut self, shared: &Shared, events: &mut Vec<Event>) {
        let was_ready = self.state == State::Ready;
        self.state = State::Down;
        let mut skip_first = self.head_echoed;
        for p in std::mem::take(&mut self.pending) {
            if let Pending::Publish {
                room,
                payload,
                cost,
            } = p
            {
                if std::mem::take(&mut skip_first) {
                    shared.queue_bytes.fetch_sub(cost, Ordering::AcqRel);
                    continue;
                }
                self.fallback(room, &payload, cost, shared, events);
            }
            skip_first = false;
        }
        self.head_echoed = false;
        self.out = Vec::new();
        self.inbuf = Vec::new();
        if was_ready {
            events.push(Event::Down(self.shard));
        }
    }

    /// Handles bytes read from Redis.
    pub fn received(
        &mut self,
        bytes: &[u8],
        shared: &Shared,
        events: &mut Vec<Event>,
    ) -> Result<(), LinkError> {
        self.inbuf.extend_from_slice(bytes);
        let mut buf = std::mem::take(&mut self.inbuf);
        let mut at = 0;
        let result = loop {
            match resp::parse(&buf[at..], &self.limits) {
                Ok(None) => break Ok(()),
                Ok(Some((value, used))) => {
                    at += used;
                    if let Err(e) = self.on_value(value, shared, events) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(LinkError(format!("bad reply from Redis: {e:?}"))),
            }
        };
        buf.drain(..at);
        self.inbuf = buf;
        result
    }

    fn on_value(
        &mut self,
        value: Value<'_>,
        shared: &Shared,
        events: &mut Vec<Event>,
    ) -> Result<(), LinkError> {
        match value {
            Value::Push(items) => self.on_push(&items, shared, events),
            other => self.on_reply(other, shared, events),
        }
    }

    fn on_push(
        &mut self,
        items: &[Value<'_>],
        shared: &Shared,
        events: &mut Vec<Event>,
    ) -> Result<(), LinkError> {
        let kind = match items.first() {
            Some(Value::Bulk(k) | Value::Simple(k)) => *k,
            _ => return Ok(()),
        };
        match kind {
            b"message" => {
                let (Some(Value::Bulk(channel)), Some(Value::Bulk(payload))) =
                    (items.get(1), items.get(2))
                else {
                    return Ok(());
                };
                self.head_echoed = matches!(
                    self.pending.front(),
                    Some(Pending::Publish { room, payload: p, .. })
                        if p[..] == payload[..] && self.is_channel_of(channel, room)
                );
                let Some(room) = self.rooms.get(*channel).cloned() else {
                    // Unsubscribed meanwhile: no local members to deliver to.
                    return Ok(());
                };
                shared.received.fetch_add(1, Ordering::Relaxed);
                if let Some(frame) = self.frame_for(payload, shared) {
                    shared.event_bytes.fetch_add(frame.len(), Ordering::AcqRel);
                    events.push(Event::Deliver { room, frame });
                }
                Ok(())
            }
            b"subscribe" | b"unsubscribe" => {
                let confirms = |p: &mut Pending| match (p, kind) {
                    (Pending::Subscribe(n), b"subscribe")
                    | (Pending::Unsubscribe(n), b"unsubscribe") => {
                        *n -= 1;
                        Some(*n == 0)
                    }
                    _ => None,
                };
                match self.pending.front_mut().and_then(confirms) {
                    Some(true) => {
                        self.pending.pop_front();
                    }
                    Some(false) => {}
                    None => {
                        return Err(LinkError(format!(
                            "unexpected {} confirmation from Redis",
                            String::from_utf8_lossy(kind)
                        )))
                    }
                }
                Ok(())
            }
            // Other pushes (e.g. client tracking) are not ours to act on.
            _ => Ok(()),
        }
    }

    fn on_reply(
        &mut self,
        value: Value<'_>,
        shared: &Shared,
        events: &mut Vec<Event>,
    ) -> Result<(), LinkError> {
        self.head_echoed = false;
        let Some(head) = self.pending.pop_front() else {
            return Err(LinkError(
                "a reply from Redis that nothing asked for".into(),
            ));
        };
        let error = match &value {
            Value::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
            _ => None,
        };
        match head {
            Pending::Hello => {
                if let Some(e) = error {
                    return Err(LinkError(if e.contains("unknown command") {
                        format!(
                            "Redis rejected HELLO 3 ({e}): roomcast needs Redis 6 or newer (RESP3)"
                        )
                    } else {
                        format!("Redis rejected the connection: {e}")
                    }));
                }
                self.state = State::Ready;
                events.push(Event::Up(self.shard));
            }
            Pending::Publish {
                room,
                payload,
                cost,
            } => {
                if let Some(e) = error {
                    log::warn!(
                        "Redis refused a PUBLISH to room {room}: {e}; delivering it locally"
                    );
                    self.fallback(room, &payload, cost, shared, events);
                } else {
                    shared.queue_bytes.fetch_sub(cost, Ordering::AcqRel);
                    shared.published.fetch_add(1, Ordering::Relaxed);
                }
            }
            Pending::Subscribe(_) | Pending::Unsubscribe(_) => {
                // A success is confirmed by pushes; a reply here is an error
                // (e.g. an ACL without pub/sub rights).
                return Err(LinkError(format!(
                    "Redis refused a subscription: {}",
                    error.unwrap_or_else(|| format!("{value:?}"))
                )));
            }
            Pending::Ping => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        let url = RedisUrl::parse("redis://127.0.0.1:6379/0").unwrap();
        Link::new(0, url, "asgi", 1 << 20, 16 << 20)
    }

    fn event(message: &str) -> Vec<u8> {
        let mut out = Vec::new();
        msgpack::encode_chat_event(message, &mut out).unwrap();
        out
    }

    fn push(channel: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut b = format!(">3\r\n$7\r\nmessage\r\n${}\r\n", channel.len()).into_bytes();
        b.extend_from_slice(channel);
        b.extend_from_slice(format!("\r\n${}\r\n", payload.len()).as_bytes());
        b.extend_from_slice(payload);
        b.extend_from_slice(b"\r\n");
        b
    }

    fn ready(l: &mut Link, shared: &Shared, ev: &mut Vec<Event>) {
        l.connected();
        l.received(b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n", shared, ev)
            .unwrap();
        assert_eq!(l.state(), State::Ready);
    }

    fn delivered(ev: &[Event]) -> Vec<String> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Deliver { frame, .. } => {
                    let (_, n) = frame::parse_header(frame, false).unwrap().unwrap();
                    Some(String::from_utf8(frame[n..].to_vec()).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hello_then_subscribe_then_publish_in_one_pipeline() {
        let shared = Shared::default();
        let mut ev = Vec::new();
        let mut l = link();
        l.subscribe("lobby".into());
        l.connected();
        let out = String::from_utf8_lossy(&l.out).into_owned();
        let hello = out.find("HELLO").unwrap();
        let sub = out.find("asgi__group__chat_lobby").unwrap();
        assert!(hello < sub, "{out}");
        l.received(b"%0\r\n", &shared, &mut ev).unwrap();
        assert!(matches!(ev[..], [Event::Up(0)]));
        l.received(
            b">3\r\n$9\r\nsubscribe\r\n$23\r\nasgi__group__chat_lobby\r\n:1\r\n",
            &shared,
            &mut ev,
        )
        .unwrap();
        assert!(!l.awaiting());
        let p = event("\"hi\"");
        shared.queue_bytes.fetch_add(100, Ordering::AcqRel);
        l.publish("lobby".into(), p.clone(), 100, &shared, &mut ev);
        assert!(l.awaiting());
        l.received(&push(b"asgi__group__chat_lobby", &p), &shared, &mut ev)
            .unwrap();
        l.received(b":1\r\n", &shared, &mut ev).unwrap();
        assert_eq!(delivered(&ev), vec![r#"{"message": "hi"}"#]);
        assert_eq!(shared.queue_bytes.load(Ordering::Acquire), 0);
        assert_eq!(shared.published.load(Ordering::Acquire), 1);
    }

    #[test]
    fn a_lost_connection_delivers_unconfirmed_publishes_locally_once() {
        let shared = Shared::default();
        let mut ev = Vec::new();
        let mut l = link();
        l.subscribe("r".into());
        ready(&mut l, &shared, &mut ev);
        l.received(
            b">3\r\n$9\r\nsubscribe\r\n$19\r\nasgi__group__chat_r\r\n:1\r\n",
            &shared,
            &mut ev,
        )
        .unwrap();
        ev.clear();
        let (a, b, c) = (event("1"), event("2"), event("3"));
        for p in [&a, &b, &c] {
            shared.queue_bytes.fetch_add(10, Ordering::AcqRel);
            l.publish("r".into(), p.clone(), 10, &shared, &mut ev);
        }
        // Redis ran the first (its echo arrived) but the reply was lost.
        l.received(&push(b"asgi__group__chat_r", &a), &shared, &mut ev)
            .unwrap();
        l.disconnected(&shared, &mut ev);
        assert_eq!(
            delivered(&ev),
            vec![
                r#"{"message": 1}"#,
                r#"{"message": 2}"#,
                r#"{"message": 3}"#
            ]
        );
        assert!(matches!(ev.last(), Some(Event::Down(0))));
        assert_eq!(shared.queue_bytes.load(Ordering::Acquire), 0);
        assert_eq!(shared.fallback.load(Ordering::Acquire), 2);
        // While down, publishes are delivered at once.
        ev.clear();
        shared.queue_bytes.fetch_add(10, Ordering::AcqRel);
        l.publish("r".into(), event("4"), 10, &shared, &mut ev);
        assert_eq!(delivered(&ev), vec![r#"{"message": 4}"#]);
        // Reconnecting subscribes the live room again.
        l.connected();
        assert!(String::from_utf8_lossy(&l.out).contains("asgi__group__chat_r"));
    }

    #[test]
    fn protocol_surprises_are_errors_not_panics() {
        let shared = Shared::default();
        let mut ev = Vec::new();
        let mut l = link();
        ready(&mut l, &shared, &mut ev);
        assert!(l.received(b":1\r\n", &shared, &mut ev).is_err());
        let mut l = link();
        l.connected();
        let e = l
            .received(b"-ERR unknown command 'HELLO'\r\n", &shared, &mut ev)
            .unwrap_err();
        assert!(e.0.contains("Redis 6"), "{}", e.0);
        let mut l = link();
        ready(&mut l, &shared, &mut ev);
        assert!(l.received(b"?what\r\n", &shared, &mut ev).is_err());
        // Foreign and undecodable messages are dropped and counted.
        let mut l = link();
        l.subscribe("r".into());
        ready(&mut l, &shared, &mut ev);
        ev.clear();
        l.received(&push(b"asgi__group__chat_r", b"\xc1junk"), &shared, &mut ev)
            .unwrap();
        l.received(&push(b"other", &event("1")), &shared, &mut ev)
            .unwrap();
        assert!(delivered(&ev).is_empty());
        assert_eq!(shared.dropped[1].load(Ordering::Acquire), 1);
    }
}
