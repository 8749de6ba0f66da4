//! A client and a relay [`Session`] wired together with no sockets, on a
//! virtual clock: quinn-proto's `Pair`, for roomcast. Tests (`tests/session.rs`)
//! and the connection fuzzer (`fuzz/fuzz_targets/conn_ops.rs`) drive the real
//! machine through it.
//!
//! [`Pair::drive`] plays the event loop until nothing moves: it carries out
//! the session's effects as the loop would (joining the room, answering
//! status pages, leaving, ending), decodes chat messages as the relay would
//! and fans each back into the session (a room of one), and "writes" what the
//! session queued into [`Pair::inbox`], as far as [`Pair::window`] allows, as
//! a socket whose reader is slow would. [`Pair::advance`] moves the
//! clock, firing every deadline on the way. Nothing sleeps, so an hour of
//! pings takes microseconds.

use crate::auth::{Grant, Verdict};
use crate::chat;
use crate::metrics::Metrics;
use crate::relay::room::{RoomId, Rooms};
use crate::session::{Compression, Cx, Effect, Member, Policy, Route, Session, Sink, Tick, Ticks};
use crate::wire::frame::{self, Frame};
use crate::wire::http::{Rejection, WsRoute};
use std::io::IoSlice;
use std::sync::Arc;

/// What the fake loop saw.
#[derive(Debug, Default)]
pub struct Log {
    /// Chat messages the session passed on, in order.
    pub chats: Vec<(RoomId, Vec<u8>)>,
    /// Every effect, in order.
    pub effects: Vec<Effect>,
    pub metrics: Metrics,
    /// Effects not yet carried out.
    pending: Vec<Effect>,
    /// Chat messages not yet decoded, with the sender's identity.
    pending_chats: Vec<(RoomId, Vec<u8>, Option<String>)>,
}

impl Sink for Log {
    fn chat(&mut self, room: RoomId, text: &[u8], user: Option<&Arc<str>>) {
        self.pending_chats
            .push((room, text.to_vec(), user.map(|u| u.to_string())));
    }

    fn effect(&mut self, effect: Effect) {
        self.pending.push(effect);
    }

    fn metrics(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    fn label(&self) -> u64 {
        0
    }
}

/// A frame the relay sent, as the client parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    /// RSV1-3, as the top bits of the first byte.
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// A close frame's code and reason.
    pub fn close(&self) -> Option<(u16, String)> {
        (self.opcode == 0x8 && self.payload.len() >= 2).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                String::from_utf8_lossy(&self.payload[2..]).into_owned(),
            )
        })
    }
}

pub struct Pair {
    pub session: Session,
    pub policy: Policy,
    pub now: Tick,
    /// Bytes the relay sent that the client has not parsed yet.
    pub inbox: Vec<u8>,
    /// Bytes the client's socket buffer will still take: each write
    /// uses some up, and `Some(0)` is a client that stopped reading. `None`
    /// is a client that reads everything at once.
    pub window: Option<usize>,
    /// The room chat connections join (member name 0: the pair's client).
    pub rooms: Rooms<u32>,
    pub log: Log,
    /// Set by [`Effect::HalfClose`].
    pub half_closed: bool,
    /// Set by [`Effect::Ended`]: whether it was clean.
    pub ended: Option<bool>,
    /// What authorization decides for a chat upgrade (open by default).
    pub grant: Verdict,
    /// The compressor and inflater a loop would lend.
    pub compression: Compression,
}

impl Pair {
    pub fn new(policy: Policy) -> Pair {
        Pair {
            session: Session::new(Tick(0)),
            policy,
            now: Tick(0),
            inbox: Vec::new(),
            window: None,
            rooms: Rooms::default(),
            log: Log::default(),
            half_closed: false,
            ended: None,
            grant: Ok(Grant::open()),
            compression: Compression::default(),
        }
    }

    /// A pair whose client upgraded to `path` and read its 101.
    pub fn open(policy: Policy, path: &str) -> Pair {
        let mut pair = Pair::new(policy);
        pair.client_sends(&upgrade_request(path));
        let (status, _, _) = pair.next_http().expect("an answer to the upgrade");
        assert_eq!(status, 101, "the upgrade to {path} is accepted");
        pair
    }

    /// The client writes `bytes`; the pair drives the session until idle.
    pub fn client_sends(&mut self, bytes: &[u8]) {
        let mut input = bytes.to_vec();
        self.input(|s, cx| s.handle_read(&mut input, cx));
    }

    /// The client sends one masked frame.
    pub fn client_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.client_sends(&client_frame(fin, opcode, payload));
    }

    /// A broadcast from the room reaches this client, as the loop's fan-out
    /// queues it (then judges the queue).
    pub fn broadcast(&mut self, payload: &[u8]) {
        let frame = Frame::from(frame::encode_frame(frame::Opcode::Text, payload));
        if self.session.queue(frame, &self.policy, self.now) {
            self.input(|s, cx| s.check_flow(cx));
        } else {
            self.drive();
        }
    }

    /// The client shuts its side.
    pub fn client_eof(&mut self) {
        self.input(|s, cx| s.handle_eof(cx));
    }

    /// One input to the session with the pair's clock and policy, then
    /// [`Pair::drive`].
    pub fn input(&mut self, f: impl FnOnce(&mut Session, &mut Cx<'_, Log>)) {
        let mut cx = Cx::new(self.now, &self.policy, &mut self.log, &mut self.compression);
        f(&mut self.session, &mut cx);
        self.drive();
    }

    /// Moves the clock `ticks` forward, firing each deadline at its tick.
    pub fn advance(&mut self, ticks: u32) {
        let target = self.now.after(Ticks(ticks));
        // Each firing moves the deadline on or ends the session; the cap
        // only guards a test against a machine that would not.
        for _ in 0..10_000 {
            match self.session.deadline(&self.policy) {
                Some(due) if due <= target => {
                    self.now = self.now.max(due);
                    self.input(|s, cx| s.handle_timeout(cx));
                }
                _ => break,
            }
        }
        self.now = target;
    }

    /// Plays the loop until nothing moves: effects, chat messages, writes.
    pub fn drive(&mut self) {
        loop {
            let mut moved = false;
            for effect in std::mem::take(&mut self.log.pending) {
                moved = true;
                self.carry_out(&effect);
                self.log.effects.push(effect);
            }
            for (room, text, user) in std::mem::take(&mut self.log.pending_chats) {
                moved = true;
                self.relay_chat(room, &text, user.as_deref());
            }
            moved |= self.write();
            if !moved {
                return;
            }
        }
    }

    fn carry_out(&mut self, effect: &Effect) {
        let mut cx = Cx::new(self.now, &self.policy, &mut self.log, &mut self.compression);
        match effect {
            Effect::Upgrade(upgrade) => match (&upgrade.route, self.grant.clone()) {
                (WsRoute::Echo, _) => self.session.accept_upgrade(Route::Echo, None, &mut cx),
                (WsRoute::Chat(room), Ok(grant)) => {
                    let route = Route::Chat(self.rooms.join(room, 0));
                    let member = Member::new(grant, &self.policy, self.now);
                    self.session.accept_upgrade(route, member, &mut cx);
                }
                (WsRoute::Chat(_), Err(refusal)) => {
                    let rejection = Rejection::new(refusal.status(), refusal.to_string());
                    self.session.refuse_upgrade(&rejection, &mut cx);
                }
            },
            Effect::Status { .. } => {
                let body = b"{\"status\": \"ok\"}";
                let response =
                    crate::wire::http::response(200, "application/json", "", body, false, false);
                self.session.answer(response, &mut cx);
            }
            Effect::Publish { keep_alive, .. } => {
                let response = crate::chat::publish::accepted_response(1, !keep_alive);
                self.session.answer(response, &mut cx);
            }
            Effect::Left(Some(m)) => {
                self.rooms.leave(*m);
            }
            Effect::Left(None) => {}
            Effect::Throttle { room, on } => {
                self.rooms.throttle(*room, *on);
            }
            Effect::HalfClose => self.half_closed = true,
            Effect::Ended { clean } => self.ended = Some(*clean),
        }
    }

    /// Decodes a chat message as the relay does, and fans the broadcast out
    /// to the room (this pair's client, if it is still a member).
    fn relay_chat(&mut self, room: RoomId, text: &[u8], user: Option<&str>) {
        self.log.chats.push((room, text.to_vec()));
        let mut cx = Cx::new(self.now, &self.policy, &mut self.log, &mut self.compression);
        let text = std::str::from_utf8(text).expect("the session passes UTF-8 only");
        match chat::process_from(text, user) {
            Ok(broadcast) => {
                let member = self.rooms.get(room).is_some_and(|r| r.members.contains(&0));
                if member
                    && self
                        .session
                        .queue(Frame::from(broadcast), &self.policy, self.now)
                {
                    self.session.check_flow(&mut cx);
                }
            }
            Err(error) => {
                if self.session.is_open() {
                    self.session.send(Frame::from(error), &mut cx);
                }
            }
        }
    }

    /// Writes what the session queued, as far as the window allows.
    fn write(&mut self) -> bool {
        let mut moved = false;
        while self.session.wants_write() && self.window != Some(0) {
            let mut iov = [IoSlice::new(&[]); 64];
            let n = self.session.transmit(&mut iov);
            let mut room = self.window.unwrap_or(usize::MAX);
            let mut took = 0;
            for slice in &iov[..n] {
                let take = slice.len().min(room);
                self.inbox.extend_from_slice(&slice[..take]);
                took += take;
                room -= take;
            }
            if took == 0 {
                break;
            }
            if let Some(w) = self.window.as_mut() {
                *w -= took;
            }
            moved = true;
            let mut cx = Cx::new(self.now, &self.policy, &mut self.log, &mut self.compression);
            self.session.handle_written(took, &mut cx);
        }
        moved
    }

    /// The next HTTP response in the inbox: status, head, body (by
    /// `Content-Length`; none for a 101).
    pub fn next_http(&mut self) -> Option<(u16, String, Vec<u8>)> {
        let end = self.inbox.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.inbox[..end]).into_owned();
        let status = head.get(9..12)?.parse().ok()?;
        let len = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if self.inbox.len() < end + len {
            return None;
        }
        let body = self.inbox[end..end + len].to_vec();
        self.inbox.drain(..end + len);
        Some((status, head, body))
    }

    /// The next whole frame in the inbox.
    pub fn next_frame(&mut self) -> Option<ServerFrame> {
        let b = &self.inbox;
        if b.len() < 2 {
            return None;
        }
        let (len, start) = match b[1] & 0x7F {
            126 => (
                u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
                10,
            ),
            n => (usize::from(n), 2),
        };
        let payload = b.get(start..start + len)?.to_vec();
        let frame = ServerFrame {
            fin: b[0] & 0x80 != 0,
            rsv: b[0] & 0x70,
            opcode: b[0] & 0x0F,
            payload,
        };
        self.inbox.drain(..start + len);
        Some(frame)
    }

    /// Every whole frame in the inbox.
    pub fn frames(&mut self) -> Vec<ServerFrame> {
        std::iter::from_fn(|| self.next_frame()).collect()
    }
}

/// A valid WebSocket upgrade request for `path`.
pub fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client frame with any opcode (raw 4 bits).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame::encode_client_frame(fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d])
}
