//! One shard's Redis connection as a state machine, without the socket or
//! the clock: the thread feeds it the bytes it read (plain bytes: TLS, if
//! any, is below) and the time, and writes out what it queued.
//!
//! Invariants:
//! - `pending` lists, in order, what Redis still owes an answer for, each
//!   with the time it was asked: the `HELLO`, each `PUBLISH` (one reply),
//!   each `PING`, and each `SUBSCRIBE`/`UNSUBSCRIBE` (one confirmation push
//!   per channel, or one error reply). Pushes of kind `message` never
//!   consume an entry, so a Redis that sends anything but answers cannot
//!   make the oldest entry younger ([`Link::oldest_unanswered`]).
//! - What Redis sends is framed incrementally and within a bound
//!   ([`resp::Framer`]): a `message` whose payload is over `max_payload`
//!   (about 2 × `--max-message-size`, more than any deliverable event takes)
//!   is skipped as it streams in and counted `too_large`; the input buffer
//!   holds at most `max_payload` plus 64 KiB of one reply plus one read.
//!   Only a framing error drops the connection.
//! - A publish leaves `pending` exactly once: acknowledged by its reply, or
//!   delivered locally when the connection is lost before the reply (unless
//!   its own message was the last thing Redis sent, which means it was
//!   delivered already). Either way its cost leaves `Shared::queue_bytes`.
//! - `rooms` is the set of rooms with local members (desired subscriptions),
//!   kept across reconnects so every live room is subscribed again.
//! - Every [`Link::subscribe`] is reported exactly once as
//!   [`Event::Subscribed`], when members of the room can receive: when
//!   Redis confirms that `SUBSCRIBE` (its `subscribe` push), or at once while
//!   the shard is down (degraded: the thread delivers locally, there is no
//!   Redis to wait for), or when the connection is lost before the
//!   confirmation (degraded from then on). It is reported even if the room
//!   was unsubscribed meanwhile, so the loop can count what it asked for
//!   (`relay/delivery.rs` does). Resubscribing the live rooms after a
//!   reconnect reports nothing.

use super::msgpack;
use super::redis_url::RedisUrl;
use super::resp::{self, Framed, Framer, Value};
use super::{Event, Shared};
use crate::wire::frame::{self, Frame, Opcode};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Channels per `SUBSCRIBE` when resubscribing after a reconnect.
const SUBSCRIBE_CHUNK: usize = 512;

/// What one reply may hold in the input buffer beyond its largest string:
/// the push's framing and channel name, or a `HELLO` reply.
const REPLY_OVERHEAD: usize = 64 * 1024;

/// What one event's msgpack may take beyond twice `--max-message-size`: the
/// event map and an extra key or two.
const EVENT_OVERHEAD: usize = 1024;

/// Most elements in one reply, all its aggregates together: a `HELLO`
/// reply has about twenty, a push three or four.
const MAX_REPLY_ELEMENTS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No connection (the thread is waiting to retry).
    Down,
    /// Connected, `HELLO` sent, not yet answered.
    Hello,
    /// `HELLO` answered: messages go through Redis.
    Ready,
}

/// One command Redis has not fully answered yet.
#[derive(Debug)]
struct Owed {
    /// When it was queued for Redis.
    since: Instant,
    what: Pending,
}

#[derive(Debug)]
enum Pending {
    Hello,
    Publish {
        room: Arc<str>,
        payload: Vec<u8>,
        cost: usize,
    },
    /// Confirmation pushes still expected, and the room to report as
    /// [`Event::Subscribed`] once they came: a `SUBSCRIBE` the loop asked
    /// for (one channel), not a resubscription after a reconnect (`None`).
    Subscribe {
        left: usize,
        report: Option<Arc<str>>,
    },
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
    pending: VecDeque<Owed>,
    /// The last thing received was a `message` push equal to the oldest
    /// pending publish: if the connection dies now, that one was delivered.
    head_echoed: bool,
    /// Bytes queued for the socket.
    pub out: Vec<u8>,
    /// Bytes from Redis, cut into whole replies.
    framer: Framer,
    max_message: usize,
    /// The largest event payload worth decoding: a bigger one could not
    /// come out under `max_message` (msgpack is at most 1.8 times the size
    /// of the `json.dumps` text, a float64's 9 bytes against `0.0, `).
    max_payload: usize,
    json: Vec<u8>,
    frame: Vec<u8>,
    name: Vec<u8>,
}

impl Link {
    /// `max_message`: the largest chat message delivered to clients.
    pub fn new(shard: usize, url: RedisUrl, prefix: &str, max_message: usize) -> Link {
        let max_payload = max_message.saturating_mul(2).saturating_add(EVENT_OVERHEAD);
        Link {
            shard,
            state: State::Down,
            url,
            channel_prefix: super::shard::group_channel(prefix, "").into_bytes(),
            rooms: HashMap::new(),
            pending: VecDeque::new(),
            head_echoed: false,
            out: Vec::new(),
            framer: new_framer(max_payload),
            max_message,
            max_payload,
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

    /// When the oldest command Redis has not answered was asked: the
    /// connection's liveness. Bytes that answer nothing do not count.
    pub fn oldest_unanswered(&self) -> Option<Instant> {
        self.pending.front().map(|owed| owed.since)
    }

    /// Bytes held of a reply not yet whole.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    fn owe(&mut self, since: Instant, what: Pending) {
        self.pending.push_back(Owed { since, what });
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

    /// A fresh connection: say hello (RESP3, credentials, a name) and
    /// subscribe every live room, all pipelined. (Nothing is owed here: the
    /// last connection's debts were settled by [`Link::disconnected`].)
    pub fn connected(&mut self, now: Instant) {
        debug_assert!(self.pending.is_empty());
        self.out.clear();
        self.framer = new_framer(self.max_payload);
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
        self.owe(now, Pending::Hello);
        self.state = State::Hello;
        let channels: Vec<&[u8]> = self.rooms.keys().map(|c| &c[..]).collect();
        for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(chunk.len() + 1);
            args.push(b"SUBSCRIBE");
            args.extend_from_slice(chunk);
            resp::write_command(&mut self.out, &args);
            self.pending.push_back(Owed {
                since: now,
                what: Pending::Subscribe {
                    left: chunk.len(),
                    report: None,
                },
            });
        }
    }

    /// Listens to `room`; [`Event::Subscribed`] says when its members can
    /// receive (see the module's invariants).
    pub fn subscribe(&mut self, room: Arc<str>, now: Instant, events: &mut Vec<Event>) {
        let channel = self.channel(&room).into_boxed_slice();
        if self.state == State::Down {
            // Degraded: its messages are delivered locally from now on.
            events.push(Event::Subscribed(room.clone()));
        } else {
            resp::write_command(&mut self.out, &[b"SUBSCRIBE", &channel]);
            self.owe(
                now,
                Pending::Subscribe {
                    left: 1,
                    report: Some(room.clone()),
                },
            );
        }
        self.rooms.insert(channel, room);
    }

    pub fn unsubscribe(&mut self, room: &str, now: Instant) {
        let channel = self.channel(room);
        if self.rooms.remove(&channel[..]).is_some() && self.state != State::Down {
            resp::write_command(&mut self.out, &[b"UNSUBSCRIBE", &channel]);
            self.owe(now, Pending::Unsubscribe(1));
        }
    }

    /// Sends a message through Redis, or straight to the local members while
    /// the shard is not ready.
    pub fn publish(
        &mut self,
        room: Arc<str>,
        payload: Vec<u8>,
        cost: usize,
        now: Instant,
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
        self.owe(
            now,
            Pending::Publish {
                room,
                payload,
                cost,
            },
        );
    }

    /// A liveness probe for a quiet connection.
    pub fn ping(&mut self, now: Instant) {
        if self.state == State::Ready {
            resp::write_command(&mut self.out, &[b"PING"]);
            self.owe(now, Pending::Ping);
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
        if payload.len() > self.max_payload {
            // Too large to come out under the limit: not worth decoding.
            shared.drop_reason("too_large");
            return None;
        }
        self.json.clear();
        // A member's queue must be able to hold it (--max-send-queue is at
        // least --max-message-size plus a header), and the decoder stops as
        // soon as it cannot fit, before building the rest.
        if let Err(e) = msgpack::decode_chat_event_within(payload, self.max_message, &mut self.json)
        {
            shared.drop_reason(e.label());
            return None;
        }
        debug_assert!(self.json.len() <= self.max_message);
        self.frame.clear();
        frame::push_header(&mut self.frame, Opcode::Text, self.json.len());
        self.frame.extend_from_slice(&self.json);
        Some(Frame::from(&self.frame[..]))
    }

    /// The connection is gone: undelivered publishes go to local members,
    /// in order, and subscriptions still unconfirmed are reported (the
    /// shard is degraded: local delivery needs nothing from Redis).
    pub fn disconnected(&mut self, shared: &Shared, events: &mut Vec<Event>) {
        let was_ready = self.state == State::Ready;
        self.state = State::Down;
        let mut skip_first = self.head_echoed;
        for owed in std::mem::take(&mut self.pending) {
            match owed.what {
                Pending::Publish {
                    room,
                    payload,
                    cost,
                } => {
                    if std::mem::take(&mut skip_first) {
                        shared.queue_bytes.fetch_sub(cost, Ordering::AcqRel);
                        continue;
                    }
                    self.fallback(room, &payload, cost, shared, events);
                }
                Pending::Subscribe {
                    report: Some(room), ..
                } => events.push(Event::Subscribed(room)),
                _ => {}
            }
            skip_first = false;
        }
        self.head_echoed = false;
        self.out = Vec::new();
        self.framer = new_framer(self.max_payload);
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
        // Replies borrow from the framer while they update the rest of the
        // link: take it out meanwhile (an empty one allocates nothing).
        let mut framer = std::mem::replace(&mut self.framer, new_framer(0));
        framer.push(bytes);
        let result = loop {
            match framer.next_value() {
                Ok(None) => break Ok(()),
                Ok(Some(framed)) => {
                    if let Err(e) = self.on_value(framed, shared, events) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(LinkError(format!("bad reply from Redis: {e}"))),
            }
        };
        self.framer = framer;
        result
    }

    fn on_value(
        &mut self,
        framed: Framed<'_>,
        shared: &Shared,
        events: &mut Vec<Event>,
    ) -> Result<(), LinkError> {
        match framed.value {
            Value::Push(items) => self.on_push(&items, framed.skipped, shared, events),
            other => self.on_reply(other, shared, events),
        }
    }

    /// `skipped`: strings in the push that were over `max_payload` (each
    /// is a null in `items`).
    fn on_push(
        &mut self,
        items: &[Value<'_>],
        skipped: usize,
        shared: &Shared,
        events: &mut Vec<Event>,
    ) -> Result<(), LinkError> {
        let kind = match items.first() {
            Some(Value::Bulk(k) | Value::Simple(k)) => *k,
            _ => return Ok(()),
        };
        match kind {
            b"message" => {
                let payload = match items.get(2) {
                    Some(Value::Bulk(payload)) => Some(*payload),
                    // Over `max_payload`: skipped on the way in.
                    Some(Value::Null) if skipped > 0 => None,
                    _ => return Ok(()),
                };
                let Some(Value::Bulk(channel)) = items.get(1) else {
                    return Ok(());
                };
                // Our own publishes are never over `max_payload`.
                self.head_echoed = payload.is_some_and(|payload| {
                    matches!(
                        self.pending.front().map(|owed| &owed.what),
                        Some(Pending::Publish { room, payload: p, .. })
                            if p[..] == payload[..] && self.is_channel_of(channel, room)
                    )
                });
                let Some(room) = self.rooms.get(*channel).cloned() else {
                    // Unsubscribed meanwhile: no local members to deliver to.
                    return Ok(());
                };
                shared.received.fetch_add(1, Ordering::Relaxed);
                let Some(payload) = payload else {
                    shared.drop_reason("too_large");
                    return Ok(());
                };
                if let Some(frame) = self.frame_for(payload, shared) {
                    shared.event_bytes.fetch_add(frame.len(), Ordering::AcqRel);
                    events.push(Event::Deliver { room, frame });
                }
                Ok(())
            }
            b"subscribe" | b"unsubscribe" => {
                let confirms = |p: &mut Pending| match (p, kind) {
                    (Pending::Subscribe { left: n, .. }, b"subscribe")
                    | (Pending::Unsubscribe(n), b"unsubscribe") => {
                        *n -= 1;
                        Some(*n == 0)
                    }
                    _ => None,
                };
                match self
                    .pending
                    .front_mut()
                    .and_then(|owed| confirms(&mut owed.what))
                {
                    Some(true) => {
                        if let Some(Owed {
                            what:
                                Pending::Subscribe {
                                    report: Some(room), ..
                                },
                            ..
                        }) = self.pending.pop_front()
                        {
                            // Redis runs what it reads in order: from now
                            // on, every PUBLISH to the channel reaches us.
                            events.push(Event::Subscribed(room));
                        }
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
        let Some(Owed { what: head, since }) = self.pending.pop_front() else {
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
            Pending::Subscribe { .. } | Pending::Unsubscribe(_) => {
                // A success is confirmed by pushes; a reply here is an error
                // (e.g. an ACL without pub/sub rights). It stays owed: the
                // connection is dropped, and `disconnected` settles it.
                let why = error.unwrap_or_else(|| format!("{value:?}"));
                self.pending.push_front(Owed { since, what: head });
                return Err(LinkError(format!("Redis refused a subscription: {why}")));
            }
            Pending::Ping => {}
        }
        Ok(())
    }
}

/// A framer for replies whose strings are at most `max_payload` bytes.
fn new_framer(max_payload: usize) -> Framer {
    let limits = resp::Limits {
        max_bulk: max_payload,
        max_elements: MAX_REPLY_ELEMENTS,
        max_depth: 16,
    };
    Framer::new(limits, max_payload.saturating_add(REPLY_OVERHEAD))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        Instant::now()
    }

    fn link() -> Link {
        let url = RedisUrl::parse("redis://127.0.0.1:6379/0").unwrap();
        Link::new(0, url, "asgi", 1 << 20)
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
        l.connected(now());
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

    /// The events as short text, for comparing sequences.
    fn kinds(ev: &[Event]) -> Vec<String> {
        ev.iter()
            .map(|e| match e {
                Event::Deliver { room, .. } => format!("deliver {room}"),
                Event::Subscribed(room) => format!("subscribed {room}"),
                Event::Up(n) => format!("up {n}"),
                Event::Down(n) => format!("down {n}"),
            })
            .collect()
    }

    /// A ready link in room "r", its subscription confirmed by Redis, and
    /// no event left over from getting there.
    fn subscribed_to_r(shared: &Shared) -> (Link, Vec<Event>) {
        let mut ev = Vec::new();
        let mut l = link();
        l.subscribe("r".into(), now(), &mut ev);
        ready(&mut l, shared, &mut ev);
        l.received(
            &confirm("subscribe", "asgi__group__chat_r"),
            shared,
            &mut ev,
        )
        .unwrap();
        ev.clear();
        (l, ev)
    }

    fn confirm(kind: &str, channel: &str) -> Vec<u8> {
        format!(
            ">3\r\n${}\r\n{kind}\r\n${}\r\n{channel}\r\n:1\r\n",
            kind.len(),
            channel.len()
        )
        .into_bytes()
    }

    /// SPEC section 4: a room's subscription is reported when Redis
    /// confirms it, not when it is asked, and nothing else reports it: not
    /// the HELLO reply, not another channel's message, not a publish reply.
    #[test]
    fn a_subscribe_is_reported_when_redis_confirms_it() {
        let shared = Shared::default();
        let mut ev = Vec::new();
        let mut l = link();
        l.connected(now());
        // Asked before HELLO is answered: pipelined behind it.
        l.subscribe("a".into(), now(), &mut ev);
        assert!(String::from_utf8_lossy(&l.out).contains("asgi__group__chat_a"));
        assert_eq!(kinds(&ev), Vec::<String>::new());
        l.received(b"%0\r\n", &shared, &mut ev).unwrap();
        assert_eq!(kinds(&ev), ["up 0"]);
        l.subscribe("b".into(), now(), &mut ev);
        l.received(&push(b"asgi__group__chat_x", &event("1")), &shared, &mut ev)
            .unwrap();
        assert_eq!(kinds(&ev), ["up 0"]);
        l.received(
            &confirm("subscribe", "asgi__group__chat_a"),
            &shared,
            &mut ev,
        )
        .unwrap();
        assert_eq!(kinds(&ev), ["up 0", "subscribed a"]);
        l.received(
            &confirm("subscribe", "asgi__group__chat_b"),
            &shared,
            &mut ev,
        )
        .unwrap();
        assert_eq!(kinds(&ev), ["up 0", "subscribed a", "subscribed b"]);
        assert!(!l.awaiting());
    }

    /// Each subscribe is reported exactly once: confirmed; at once while
    /// down; when the connection is lost before the confirmation (the room
    /// is local-only then, so its members can receive); when Redis refuses
    /// it (the link drops); and even when the room was unsubscribed before
    /// Redis confirmed it. A reconnect's resubscription reports nothing.
    #[test]
    fn every_subscribe_is_reported_exactly_once() {
        let shared = Shared::default();
        let mut ev = Vec::new();
        let mut l = link();
        ready(&mut l, &shared, &mut ev);
        ev.clear();
        l.subscribe("a".into(), now(), &mut ev);
        l.subscribe("b".into(), now(), &mut ev);
        l.unsubscribe("b", now());
        l.received(
            &confirm("subscribe", "asgi__group__chat_a"),
            &shared,
            &mut ev,
        )
        .unwrap();
        l.received(
            &confirm("subscribe", "asgi__group__chat_b"),
            &shared,
            &mut ev,
        )
        .unwrap();
        l.received(
            &confirm("unsubscribe", "asgi__group__chat_b"),
            &shared,
            &mut ev,
        )
        .unwrap();
        assert_eq!(kinds(&ev), ["subscribed a", "subscribed b"]);
        ev.clear();
        l.subscribe("c".into(), now(), &mut ev);
        l.disconnected(&shared, &mut ev);
        assert_eq!(kinds(&ev), ["subscribed c", "down 0"]);
        ev.clear();
        l.subscribe("d".into(), now(), &mut ev);
        assert_eq!(kinds(&ev), ["subscribed d"]);
        ev.clear();
        // Back: a, c and d are subscribed again, silently.
        l.connected(now());
        l.received(b"%0\r\n", &shared, &mut ev).unwrap();
        let out = String::from_utf8_lossy(&l.out).into_owned();
        for room in ["a", "c", "d"] {
            assert!(out.contains(&format!("asgi__group__chat_{room}")), "{out}");
        }
        for room in ["a", "c", "d"] {
            let channel = format!("asgi__group__chat_{room}");
            l.received(&confirm("subscribe", &channel), &shared, &mut ev)
                .unwrap();
        }
        assert_eq!(kinds(&ev), ["up 0"]);
        assert!(!l.awaiting());
        // Refused (an ACL without pub/sub rights): the link drops, the room
        // is local-only, and says so.
        ev.clear();
        l.subscribe("e".into(), now(), &mut ev);
        let e = l
            .received(b"-NOPERM no channels\r\n", &shared, &mut ev)
            .unwrap_err();
        assert!(e.0.contains("NOPERM"), "{}", e.0);
        l.disconnected(&shared, &mut ev);
        assert_eq!(kinds(&ev), ["subscribed e", "down 0"]);
    }

    #[test]
    fn hello_then_subscribe_then_publish_in_one_pipeline() {
        let shared = Shared::default();
        let mut ev = Vec::new();
        let mut l = link();
        l.subscribe("lobby".into(), now(), &mut ev);
        l.connected(now());
        let out = String::from_utf8_lossy(&l.out).into_owned();
        let hello = out.find("HELLO").unwrap();
        let sub = out.find("asgi__group__chat_lobby").unwrap();
        assert!(hello < sub, "{out}");
        l.received(b"%0\r\n", &shared, &mut ev).unwrap();
        // Subscribed while down (reported at once), then up.
        assert_eq!(kinds(&ev), ["subscribed lobby", "up 0"]);
        l.received(
            b">3\r\n$9\r\nsubscribe\r\n$23\r\nasgi__group__chat_lobby\r\n:1\r\n",
            &shared,
            &mut ev,
        )
        .unwrap();
        assert!(!l.awaiting());
        let p = event("\"hi\"");
        shared.queue_bytes.fetch_add(100, Ordering::AcqRel);
        l.publish("lobby".into(), p.clone(), 100, now(), &shared, &mut ev);
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
        let (mut l, mut ev) = subscribed_to_r(&shared);
        let (a, b, c) = (event("1"), event("2"), event("3"));
        for p in [&a, &b, &c] {
            shared.queue_bytes.fetch_add(10, Ordering::AcqRel);
            l.publish("r".into(), p.clone(), 10, now(), &shared, &mut ev);
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
        l.publish("r".into(), event("4"), 10, now(), &shared, &mut ev);
        assert_eq!(delivered(&ev), vec![r#"{"message": 4}"#]);
        // Reconnecting subscribes the live room again.
        l.connected(now());
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
        l.connected(now());
        let e = l
            .received(b"-ERR unknown command 'HELLO'\r\n", &shared, &mut ev)
            .unwrap_err();
        assert!(e.0.contains("Redis 6"), "{}", e.0);
        let mut l = link();
        ready(&mut l, &shared, &mut ev);
        assert!(l.received(b"?what\r\n", &shared, &mut ev).is_err());
        // Foreign and undecodable messages are dropped and counted.
        let mut l = link();
        l.subscribe("r".into(), now(), &mut ev);
        ready(&mut l, &shared, &mut ev);
        ev.clear();
        l.received(&push(b"asgi__group__chat_r", b"\xc1junk"), &shared, &mut ev)
            .unwrap();
        l.received(&push(b"other", &event("1")), &shared, &mut ev)
            .unwrap();
        assert!(delivered(&ev).is_empty());
        assert_eq!(shared.dropped[1].load(Ordering::Acquire), 1);
    }

    fn dropped(shared: &Shared, reason: &str) -> u64 {
        let i = super::super::DROP_REASONS.iter().position(|r| *r == reason);
        shared.dropped[i.unwrap()].load(Ordering::Acquire)
    }

    /// Issue 13, D4: a `message` over `max_payload` is skipped as it
    /// streams in (never buffered), counted `too_large`, and what follows it
    /// is delivered: the link stays up.
    #[test]
    fn an_oversized_message_is_skipped_and_the_link_stays_up() {
        let shared = Shared::default();
        let mut ev = Vec::new();
        let url = RedisUrl::parse("redis://127.0.0.1:6379/0").unwrap();
        let mut l = Link::new(0, url, "asgi", 1000);
        l.subscribe("r".into(), now(), &mut ev);
        ready(&mut l, &shared, &mut ev);
        ev.clear();
        let mut stream = push(b"asgi__group__chat_r", &vec![0xa5; 1_000_000]);
        stream.extend(push(b"asgi__group__chat_r", &event("\"after\"")));
        let mut most = 0;
        for piece in stream.chunks(64 * 1024) {
            l.received(piece, &shared, &mut ev).unwrap();
            most = most.max(l.buffered());
        }
        assert_eq!(delivered(&ev), vec![r#"{"message": "after"}"#]);
        assert_eq!(dropped(&shared, "too_large"), 1);
        assert_eq!(shared.received.load(Ordering::Acquire), 2);
        assert!(most <= 2 * 1000 + EVENT_OVERHEAD + REPLY_OVERHEAD, "{most}");
        assert_eq!(l.state(), State::Ready);
    }

    /// Issue 13, D6: a reply that never ends is a framing error once it
    /// passes the link's bound, and the link never held more than that.
    #[test]
    fn a_reply_that_never_ends_is_an_error_at_the_bound() {
        let shared = Shared::default();
        let mut ev = Vec::new();
        let url = RedisUrl::parse("redis://127.0.0.1:6379/0").unwrap();
        let mut l = Link::new(0, url, "asgi", 1000);
        ready(&mut l, &shared, &mut ev);
        let bound = 2 * 1000 + EVENT_OVERHEAD + REPLY_OVERHEAD;
        l.received(b">1000\r\n", &shared, &mut ev).unwrap();
        let element = format!("${}\r\n{}\r\n", 2000, "x".repeat(2000));
        let mut fed = 0;
        let err = loop {
            match l.received(element.as_bytes(), &shared, &mut ev) {
                Ok(()) => assert!(l.buffered() <= bound + element.len()),
                Err(e) => break e,
            }
            fed += element.len();
            assert!(fed < 10 * bound, "never refused");
        };
        assert!(err.0.contains("bytes"), "{}", err.0);
    }

    /// Issue 13, D7: bytes that answer nothing (a reply trickled in, pushes)
    /// leave the oldest unanswered command as old as it was; an answer
    /// moves it on to the next.
    #[test]
    fn only_answers_make_the_link_younger() {
        let shared = Shared::default();
        let (mut l, mut ev) = subscribed_to_r(&shared);
        assert_eq!(l.oldest_unanswered(), None);
        let t0 = now();
        let t1 = t0 + std::time::Duration::from_secs(1);
        l.publish("r".into(), event("1"), 10, t0, &shared, &mut ev);
        l.publish("r".into(), event("2"), 10, t1, &shared, &mut ev);
        assert_eq!(l.oldest_unanswered(), Some(t0));
        l.received(
            &push(b"asgi__group__chat_r", &event("\"x\"")),
            &shared,
            &mut ev,
        )
        .unwrap();
        for b in b"+trickled, never ending" {
            l.received(&[*b], &shared, &mut ev).unwrap();
        }
        assert_eq!(l.oldest_unanswered(), Some(t0));
        let mut l = link();
        ready(&mut l, &shared, &mut ev);
        l.publish("r".into(), event("1"), 10, t0, &shared, &mut ev);
        l.publish("r".into(), event("2"), 10, t1, &shared, &mut ev);
        l.received(b":1\r\n", &shared, &mut ev).unwrap();
        assert_eq!(l.oldest_unanswered(), Some(t1));
        l.received(b":1\r\n", &shared, &mut ev).unwrap();
        assert_eq!(l.oldest_unanswered(), None);
    }
}
