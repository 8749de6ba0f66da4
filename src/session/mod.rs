//! One connection's protocol life as a machine of its own, sans-IO: bytes,
//! timeouts and write completions in; effects and bytes to send out.
//!
//! Shaped like quinn-proto's `Connection`. A [`Session`] owns no socket,
//! reads no clock and starts no thread; the event loop drives it, and so can
//! a test (`tests/session.rs`) or a fuzzer, on a virtual clock. The loop
//! calls, in this order:
//! 1. **one input**: [`Session::handle_read`], [`Session::handle_eof`],
//!    [`Session::handle_timeout`], [`Session::handle_written`]; or an answer
//!    it owes the session ([`Session::accept_upgrade`], [`Session::answer`],
//!    [`Session::refuse_publish`]); or a mutator ([`Session::send`],
//!    [`Session::queue`] then [`Session::close_slow_consumer`],
//!    [`Session::shut_down`], [`Session::abort`]). Each takes a [`Cx`]: the
//!    current [`Tick`], the [`Policy`], and the [`Sink`] that receives
//!    what the session asks of the loop;
//! 2. **the effects**, in the order they were emitted. Some ask for an
//!    answer ([`Effect::Upgrade`] and [`Effect::Status`] and
//!    [`Effect::Publish`]: the loop owns rooms and counters), which is
//!    another input. Chat messages go to [`Sink::chat`] directly, so the hot
//!    path builds no effect;
//! 3. **the getters**: [`Session::wants_write`] (flush it at the end of the
//!    iteration, writing [`Session::transmit`] or [`Session::sole_frame`] and
//!    reporting [`Session::handle_written`]) and [`Session::deadline`] (make
//!    sure a timer fires by then).
//!
//! The life of a connection is the [`Stage`]. Each stage owns its state, a
//! transition consumes the old stage, and the only ways out of `Open` emit
//! [`Effect::Left`] with the room membership the open stage owned. Hence:
//! - a session is in a room exactly while it is open, and it leaves once;
//! - every stage but `Open` has a deadline that ends it (handshake timeout,
//!   close timeout), so nothing lingers;
//! - bytes leave in the order they were queued, and a frame once partly
//!   written is never dropped (see [`SendQueue`]);
//! - after a wire fault, input is discarded (RFC 6455 section 7.1.7): the
//!   bytes after it cannot be trusted to frame anything.
//!
//! May import [`crate::wire`], [`crate::chat`], [`crate::relay`]'s data
//! types and [`crate::metrics`].

pub mod pair;
mod request;
pub mod time;

pub use time::{Tick, Ticks, TICK};

use crate::auth::{self, Admission, Bucket, Pace, RateLimit};
use crate::chat::{self, publish};
use crate::metrics::Metrics;
use crate::relay::room::{Membership, RoomId};
use crate::relay::sendq::SendQueue;
use crate::wire::close::CloseCode;
use crate::wire::deflate::{Compressor, DeflateParams, Inflater, WindowBits};
use crate::wire::error::ProtocolError;
use crate::wire::frame::{self, Frame, Opcode};
use crate::wire::http::{self, OriginPolicy, Page, Rejection, WsRoute};
use crate::wire::message::{DataKind, Decoded, Decoder, Event, Limits};
use log::{debug, info};
use request::Asked;
use std::io::IoSlice;
use std::sync::Arc;

/// What the relay allows a connection: limits and timeouts, parsed once
/// from the flags.
#[derive(Clone, Debug)]
pub struct Policy {
    /// `--max-frame-size` and `--max-message-size`.
    pub limits: Limits,
    /// `--max-send-queue`: what a client's queue may cost (bytes plus a
    /// fixed overhead per frame) before it counts as not reading.
    pub max_send_queue: usize,
    /// `--slow-consumer-grace`: how long a client's queue may stay over
    /// `--max-send-queue`, while it still reads, before it is closed as
    /// slow.
    pub slow_grace: Ticks,
    /// `--max-header-size`.
    pub max_header_size: usize,
    /// Time to send a complete request head.
    pub handshake: Ticks,
    /// Silence before a ping; zero disables pings and the idle timeout.
    pub ping: Ticks,
    /// Silence before the relay closes with 1001.
    pub idle: Ticks,
    /// Time a closing connection gets to finish.
    pub close: Ticks,
    /// `--allowed-origins`.
    pub origins: OriginPolicy,
    /// `--publish-token`; `None` disables the publish API.
    pub publish_token: Option<String>,
    /// `--max-messages-per-second` and `--rate-burst`, per chat connection.
    pub rate: Option<RateLimit>,
    /// `--max-pings-per-second`: pings and pongs one open connection may
    /// send, on any route; `None` when 0.
    pub pings: Option<RateLimit>,
    /// `--deflate on`: permessage-deflate is offered back; `None` when off.
    pub deflate: Option<DeflatePolicy>,
}

/// How the relay uses permessage-deflate once a client negotiated it.
#[derive(Clone, Copy, Debug)]
pub struct DeflatePolicy {
    /// `--deflate-min-size`: smaller messages go out uncompressed (RSV1
    /// clear), which RFC 7692 allows message by message.
    pub min_size: usize,
}

/// The compression state the loop owns and lends to every input: one
/// inflater (and its output) and one compressor, reset per message. No
/// connection holds any, which is what `server_no_context_takeover` and
/// `client_no_context_takeover` buy.
#[derive(Default)]
pub struct Compression {
    pub inflater: Inflater,
    /// The last inflated message (capacity kept, up to
    /// `--max-message-size`).
    pub inflated: Vec<u8>,
    pub compressor: Compressor,
}

impl std::fmt::Debug for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compression")
    }
}

impl Compression {
    /// `payload` as a compressed frame of `kind` for a client whose window
    /// is `window`, or `None` when it is under the minimum or would not
    /// shrink (with a minimum above 0); counts the work in `metrics`.
    pub fn frame_for(
        compressor: &mut Compressor,
        kind: DataKind,
        payload: &[u8],
        window: WindowBits,
        policy: &DeflatePolicy,
        metrics: &mut Metrics,
    ) -> Option<Vec<u8>> {
        if payload.len() < policy.min_size {
            return None;
        }
        let compressed = compressor.frame(kind, payload, window).ok()?;
        metrics.deflate_compressions += 1;
        metrics.deflate_bytes_in += compressed.stats.bytes_in;
        metrics.deflate_bytes_out += compressed.stats.bytes_out;
        // A minimum of 0 compresses every message, even one deflate would
        // not shrink (conformance runs check compressed frames of every size).
        (compressed.stats.shrinks() || policy.min_size == 0).then_some(compressed.frame)
    }
}

impl Policy {
    /// Past this, a client is behind: its room's senders wait for it while
    /// it drains.
    pub fn high_water(&self) -> usize {
        self.max_send_queue / 2
    }
}

/// A client the kernel took nothing from for this long has stopped
/// draining: it no longer holds its room back, and over `--max-send-queue`
/// it is closed at once. A second, not less: on a loaded machine a reader
/// that is only starved of CPU can go a few hundred milliseconds without
/// reading, and must not pass for one that stopped.
const PROGRESS_WINDOW: Ticks = Ticks(10);

impl Default for Policy {
    /// The flags' defaults, for tests.
    fn default() -> Policy {
        Policy {
            limits: Limits {
                max_frame_size: 1 << 20,
                max_message_size: 1 << 20,
            },
            max_send_queue: 4 << 20,
            slow_grace: Ticks(20),
            max_header_size: 8 << 10,
            handshake: Ticks(100),
            ping: Ticks(300),
            idle: Ticks(750),
            close: Ticks(50),
            origins: OriginPolicy::default(),
            publish_token: None,
            rate: None,
            pings: None,
            deflate: Some(DeflatePolicy {
                min_size: crate::wire::deflate::DEFAULT_MIN_SIZE,
            }),
        }
    }
}

/// What a session asks of the loop, other than chat messages.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// A valid upgrade: decide who may join (authorization), join the room,
    /// then [`Session::accept_upgrade`]; or [`Session::refuse_upgrade`].
    /// The decision may take the loop a while (the auth back end, a Redis
    /// subscription): the handshake timeout still bounds it.
    Upgrade(Upgrade),
    /// `/healthz` or `/metrics`: render it (`Connection: close` unless
    /// `keep_alive`), then [`Session::answer`].
    Status {
        page: Page,
        head_only: bool,
        keep_alive: bool,
    },
    /// `POST /publish/<room>/` with its body: publish it, then
    /// [`Session::answer`] or [`Session::refuse_publish`].
    Publish {
        room: String,
        body: Vec<u8>,
        keep_alive: bool,
    },
    /// The open stage is over: one WebSocket fewer, and the membership (for
    /// a chat connection) leaves its room.
    Left(Option<Membership>),
    /// A member of `room` fell behind while still draining (`on`), or
    /// caught up, stalled or left (`!on`): while any member holds its room
    /// back, the loop reads none of the room's members, so their senders
    /// wait in TCP's window instead of the relay's memory.
    Throttle { room: RoomId, on: bool },
    /// The final answer is written: half-close the socket so the client
    /// reads the end of it, and wait for its EOF.
    HalfClose,
    /// Over: remove the connection. `clean`: the closing handshake
    /// completed and the last frame went out.
    Ended { clean: bool },
}

/// A valid WebSocket upgrade, with what authorization needs of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    pub route: WsRoute,
    /// The request's query string, which may carry `token=`.
    pub query: Option<String>,
    /// Every `Cookie` header, for the auth back end.
    pub cookie: Option<String>,
    pub origin: Option<String>,
}

/// What authorization decided about an open chat member: kept (boxed, so a
/// connection without it pays 8 bytes) only when it has an identity, is
/// read-only, or a rate limit is configured.
#[derive(Debug)]
pub struct Member {
    /// The identity as raw JSON text: every frame its messages produce is
    /// `{"message": ..., "user": <this>}`, the field set by the relay.
    pub user: Option<Arc<str>>,
    /// False: read-only, its messages get `{"error"}` and are not sent.
    pub write: bool,
    /// Its share of `--max-messages-per-second`.
    pub bucket: Option<Bucket>,
}

impl Member {
    /// The per-connection record for a grant, or `None` when it would say
    /// nothing (anonymous, may write, no rate limit).
    pub fn new(grant: auth::Grant, policy: &Policy, now: Tick) -> Option<Box<Member>> {
        if grant.user.is_none() && grant.write && policy.rate.is_none() {
            return None;
        }
        Some(Box::new(Member {
            user: grant.user.map(Arc::from),
            write: grant.write,
            bucket: policy.rate.map(|_| Bucket::new(now.millis())),
        }))
    }
}

/// Where a session's output goes. The loop's implementation appends chat
/// messages to the decode batch and effects to its queue.
pub trait Sink {
    /// A chat text message (valid UTF-8) from a member of `room`, with the
    /// member's identity (raw JSON) if it has one.
    fn chat(&mut self, room: RoomId, text: &[u8], user: Option<&Arc<str>>);
    /// Anything else the loop must do, in order.
    fn effect(&mut self, effect: Effect);
    /// Counters the session keeps up to date.
    fn metrics(&mut self) -> &mut Metrics;
    /// A name for this connection in log lines.
    fn label(&self) -> u64;
}

/// What every input needs besides its own argument.
pub struct Cx<'a, S: Sink> {
    pub now: Tick,
    pub policy: &'a Policy,
    pub out: &'a mut S,
    /// The loop's compressor and inflater, lent for this input.
    pub compression: &'a mut Compression,
    /// Queued bytes the transport has taken but not yet written (TLS
    /// sealed them into a record the kernel has not taken): the queue must
    /// keep them until [`Session::handle_written`] reports them. 0 for a
    /// plain socket, whose writes report at once.
    pub committed: usize,
}

impl<'a, S: Sink> Cx<'a, S> {
    /// A context for a transport that writes at once (nothing committed).
    pub fn new(
        now: Tick,
        policy: &'a Policy,
        out: &'a mut S,
        compression: &'a mut Compression,
    ) -> Cx<'a, S> {
        Cx {
            now,
            policy,
            out,
            compression,
            committed: 0,
        }
    }
}

/// An open WebSocket's endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/ws/echo/`: every message comes back to its sender.
    Echo,
    /// `/ws/chat/<room>/`, in that room.
    Chat(Membership),
}

/// One connection.
#[derive(Debug)]
pub struct Session {
    stage: Stage,
    /// Frames and responses waiting for the socket, oldest first.
    tx: SendQueue,
    /// When the current stage began: the base of the handshake and close
    /// timeouts.
    since: Tick,
}

/// Where a connection is in its life.
#[derive(Debug)]
enum Stage {
    /// Reading HTTP request heads; a keep-alive client may send several.
    Request(Request),
    /// A valid upgrade waits for the loop's decision.
    Upgrading(Upgrading),
    /// A WebSocket exchanging messages.
    Open(Open),
    /// The relay sent a close frame and reads until the client's, discarding
    /// messages.
    Closing(Framed),
    /// Both close frames are exchanged: flush, then end.
    Closed,
    /// A final answer is queued (an HTTP response, or the close frame that
    /// fails a connection after a wire fault): flush, half-close, linger.
    /// Input is discarded.
    Responding { then: AfterAnswer },
    /// Half-closed after a final answer; waiting for the client's EOF so
    /// that closing does not reset the connection under its unread answer
    /// (`brief`: for a second at most).
    Lingering { brief: bool },
    /// Over; the loop removes the connection.
    Ended,
}

/// What follows a final answer once it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterAnswer {
    /// Half-close and wait for the client's EOF, up to `--close-timeout`.
    Linger,
    /// The same for a second at most: a connection over the cap, whose
    /// descriptor is wanted back (and which a crowd may have thousands of).
    LingerBriefly,
    /// The client already sent its EOF: end at once.
    End,
}

/// How long a connection over the cap waits for its client's EOF.
const BRIEF_LINGER: Ticks = Ticks(10);

#[derive(Debug, Default)]
struct Request {
    /// Unconsumed request bytes: a partial head, pipelined requests, or a
    /// publish body still arriving.
    rx: Vec<u8>,
    /// The loop owes an answer to the request just read (a status page or
    /// a publish), with its keep-alive; nothing more is read until it comes,
    /// so answers go out in request order.
    awaiting: Option<bool>,
}

#[derive(Debug)]
struct Upgrading {
    /// Bytes the client sent right behind its head: its first frames.
    rx: Vec<u8>,
    /// The `Sec-WebSocket-Accept` value for the 101.
    accept: String,
    /// permessage-deflate, if the offer was accepted.
    deflate: Option<DeflateParams>,
}

#[derive(Debug)]
struct Open {
    framed: Framed,
    route: Route,
    /// permessage-deflate, as negotiated (2 bytes; the state that makes it
    /// work is the loop's).
    deflate: Option<DeflateParams>,
    /// Identity, rights and rate of a chat member, when any applies.
    member: Option<Box<Member>>,
    /// When the client last sent anything: the base of pings and the idle
    /// timeout.
    last_rx: Tick,
    /// A ping went out since `last_rx`.
    pinged: bool,
    /// The client's pings and pongs against `--max-pings-per-second`
    /// (4 bytes, in what was padding; untouched when there is no limit).
    pings: Pace,
    flow: Flow,
}

/// Where an open connection's queue stands (ARCHITECTURE.md, "Flow
/// control"): judged by what the kernel refused over time, not by what one
/// loop iteration queued.
#[derive(Debug)]
struct Flow {
    /// The last time the kernel took bytes from the queue, or it was empty.
    last_progress: Tick,
    /// Since when the queue has cost more than `--max-send-queue`;
    /// [`Tick::NEVER`] while it does not.
    over_since: Tick,
    /// Behind and still draining: counted in its room's throttle.
    throttling: bool,
    /// When the last pong was queued. A pong still unsent a tick later
    /// means the client is not reading: the next one replaces it.
    pong_at: Tick,
}

/// The frame reader of an open or closing connection.
#[derive(Debug, Default)]
struct Framed {
    decoder: Decoder,
    /// Input kept between reads: a partial frame header or control frame
    /// (under 140 bytes), or the rest of a read that stopped because the
    /// connection's own queue is full.
    rx: Leftover,
}

impl Framed {
    /// Gives input memory back once nothing is pending in it, so idle
    /// connections hold no buffer at all.
    fn release_buffers(&mut self) {
        self.decoder.release_buffer();
    }
}

/// Input kept between reads: empty nearly always, and then 8 bytes with
/// no allocation (a `Vec` would be 24 in every idle connection; the rare
/// extra allocation is worth the 16 bytes).
#[derive(Debug, Default)]
#[allow(clippy::box_collection)]
struct Leftover(Option<Box<Vec<u8>>>);

impl Leftover {
    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The bytes, leaving it empty.
    fn take(&mut self) -> Vec<u8> {
        self.0.take().map_or_else(Vec::new, |b| *b)
    }

    /// Keeps `bytes` (nothing if they are empty).
    fn put(&mut self, bytes: Vec<u8>) {
        self.0 = (!bytes.is_empty()).then(|| Box::new(bytes));
    }
}

/// What to do after an event, once the decoder's borrow of it has ended.
enum Next {
    Nothing,
    Send(Vec<u8>),
    /// A client that keeps flooding past its rate: close with 1008.
    Flooding,
    /// A client past `--max-pings-per-second`: close with 1008.
    PingFlood,
    /// Replaces an unanswered pong (only the latest ping needs one).
    Pong(Vec<u8>),
    PeerClosed(Option<CloseCode>),
}

impl Session {
    /// A new connection, about to send its request.
    pub fn new(now: Tick) -> Session {
        Session {
            stage: Stage::Request(Request::default()),
            tx: SendQueue::default(),
            since: now,
        }
    }

    // ---- getters ---------------------------------------------------------

    /// An open WebSocket (counted in `/healthz`; in its room, for chat).
    pub fn is_open(&self) -> bool {
        matches!(self.stage, Stage::Open(_))
    }

    /// Waiting for the loop to decide an upgrade.
    pub fn is_upgrading(&self) -> bool {
        matches!(self.stage, Stage::Upgrading(_))
    }

    /// Over: nothing more will happen.
    pub fn is_ended(&self) -> bool {
        matches!(self.stage, Stage::Ended)
    }

    /// What permessage-deflate agreed for an open connection, if it did.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        match &self.stage {
            Stage::Open(open) => open.deflate.as_ref(),
            _ => None,
        }
    }

    /// The room membership of an open chat connection.
    pub fn membership(&self) -> Option<Membership> {
        match &self.stage {
            Stage::Open(Open {
                route: Route::Chat(m),
                ..
            }) => Some(*m),
            _ => None,
        }
    }

    /// Bytes are queued for the socket.
    pub fn wants_write(&self) -> bool {
        !self.tx.is_empty()
    }

    /// Unsent bytes queued.
    pub fn queued(&self) -> usize {
        self.tx.queued()
    }

    /// The connection's own queue is over `--max-send-queue` (it asked for
    /// echoes or pongs faster than it reads them): stop reading it until it
    /// drains, so its kernel's TCP window slows it down.
    pub fn read_blocked(&self, policy: &Policy) -> bool {
        self.tx.cost() > policy.max_send_queue
    }

    /// When [`Session::handle_timeout`] must next be called; `None` for an
    /// open connection without pings, or an ended one.
    pub fn deadline(&self, policy: &Policy) -> Option<Tick> {
        match &self.stage {
            Stage::Request(_) | Stage::Upgrading(_) => Some(self.since.after(policy.handshake)),
            Stage::Open(o) => {
                let idle = match (policy.ping.is_zero(), o.pinged) {
                    (true, _) => Tick::NEVER,
                    (false, true) => o.last_rx.after(policy.idle),
                    (false, false) => o.last_rx.after(policy.ping),
                };
                let slow = o.flow.over_since.after(policy.slow_grace);
                let stalls = match o.flow.throttling {
                    true => o.flow.last_progress.after(Ticks(PROGRESS_WINDOW.0 + 1)),
                    false => Tick::NEVER,
                };
                Some(idle.min(slow).min(stalls)).filter(|&t| t != Tick::NEVER)
            }
            Stage::Responding {
                then: AfterAnswer::LingerBriefly,
            }
            | Stage::Lingering { brief: true } => {
                Some(self.since.after(policy.close.min(BRIEF_LINGER)))
            }
            Stage::Closing(_)
            | Stage::Closed
            | Stage::Responding { .. }
            | Stage::Lingering { .. } => Some(self.since.after(policy.close)),
            Stage::Ended => None,
        }
    }

    /// Fills `iov` with the queued bytes, oldest first; returns how many
    /// slices. Report what the socket took with [`Session::handle_written`].
    pub fn transmit<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        self.tx.fill_iov(iov)
    }

    /// The only queued frame and how much of it is already written, when
    /// exactly one is queued: what a batched single-buffer send can take.
    pub fn sole_frame(&self) -> Option<(&Frame, usize)> {
        self.tx.sole_frame()
    }

    // ---- inputs ----------------------------------------------------------

    /// Bytes from the client. `input` may be unmasked in place.
    pub fn handle_read<S: Sink>(&mut self, input: &mut [u8], cx: &mut Cx<'_, S>) {
        match &mut self.stage {
            Stage::Request(req) => {
                req.rx.extend_from_slice(input);
                self.read_requests(cx);
            }
            // Frames the client sent before its 101 wait for it, as much as
            // a request head may hold: a pending upgrade (the auth back end,
            // a Redis subscription) costs no more than a handshake.
            Stage::Upgrading(up) => {
                if up.rx.len() + input.len() > cx.policy.max_header_size {
                    let rejection =
                        Rejection::new(400, "too many bytes sent before the upgrade was answered");
                    return self.reject(&rejection, cx);
                }
                up.rx.extend_from_slice(input);
            }
            Stage::Open(open) => {
                open.last_rx = cx.now;
                open.pinged = false;
                self.read_frames(input, cx);
            }
            Stage::Closing(_) => self.read_frames(input, cx),
            // Whatever a client sends after its answer is read and ignored.
            Stage::Closed | Stage::Responding { .. } | Stage::Lingering { .. } | Stage::Ended => {}
        }
    }

    /// The client shut its side of the connection.
    pub fn handle_eof<S: Sink>(&mut self, cx: &mut Cx<'_, S>) {
        match &mut self.stage {
            Stage::Open(_) => {
                debug!(
                    "connection {} ended without a closing handshake",
                    cx.out.label()
                );
                self.abort(cx);
            }
            // A half-closed client may still read its answer: finish it.
            Stage::Request(_) if !self.tx.is_empty() => self.enter(
                Stage::Responding {
                    then: AfterAnswer::End,
                },
                cx,
            ),
            Stage::Responding { then } if !self.tx.is_empty() => *then = AfterAnswer::End,
            Stage::Request(_)
            | Stage::Upgrading(_)
            | Stage::Responding { .. }
            | Stage::Lingering { .. }
            | Stage::Closing(_)
            | Stage::Closed => self.end(false, cx),
            Stage::Ended => {}
        }
    }

    /// A deadline from [`Session::deadline`] may have passed.
    pub fn handle_timeout<S: Sink>(&mut self, cx: &mut Cx<'_, S>) {
        let policy = cx.policy;
        let now = cx.now;
        match &mut self.stage {
            Stage::Request(_) if now >= self.since.after(policy.handshake) => {
                debug!(
                    "connection {}: no complete request head within the handshake timeout",
                    cx.out.label()
                );
                let rejection =
                    Rejection::new(408, "no complete request within the handshake timeout");
                self.respond(http::rejection_response(&rejection), 408, cx);
            }
            Stage::Upgrading(_) if now >= self.since.after(policy.handshake) => {
                debug!(
                    "connection {}: the upgrade was not decided within the handshake timeout",
                    cx.out.label()
                );
                let rejection = Rejection::new(
                    503,
                    "the upgrade could not be completed within the handshake timeout; retry",
                );
                self.respond(http::rejection_response(&rejection), 503, cx);
            }
            Stage::Open(open) if now >= open.flow.over_since.after(policy.slow_grace) => {
                info!(
                    "connection {}: behind for longer than --slow-consumer-grace",
                    cx.out.label()
                );
                self.close_slow_consumer(cx);
            }
            Stage::Open(open)
                if open.flow.throttling && now.since(open.flow.last_progress) > PROGRESS_WINDOW =>
            {
                // Stalled: it no longer holds its room back.
                self.check_flow(cx);
                self.handle_timeout(cx);
            }
            Stage::Open(open) if !policy.ping.is_zero() => {
                let silent = now.since(open.last_rx);
                if silent >= policy.idle {
                    debug!("connection {}: idle timeout", cx.out.label());
                    self.start_close(CloseCode::GOING_AWAY, "idle timeout", cx);
                } else if silent >= policy.ping && !open.pinged {
                    open.pinged = true;
                    self.send(Frame::from(frame::encode_frame(Opcode::Ping, b"")), cx);
                }
            }
            Stage::Closing(_)
            | Stage::Closed
            | Stage::Responding { .. }
            | Stage::Lingering { .. }
                if now >= self.since.after(policy.close) =>
            {
                debug!(
                    "connection {}: close timeout in stage {}",
                    cx.out.label(),
                    self.stage.name()
                );
                self.abort(cx);
            }
            _ => {}
        }
    }

    /// The socket took the first `n` queued bytes.
    pub fn handle_written<S: Sink>(&mut self, n: usize, cx: &mut Cx<'_, S>) {
        let drained = self.tx.consumed(n);
        if let Stage::Open(open) = &mut self.stage {
            if n > 0 {
                open.flow.last_progress = cx.now;
            }
            if open.flow.throttling || open.flow.over_since != Tick::NEVER {
                self.check_flow(cx);
            }
        }
        if drained {
            self.after_drained(cx);
        }
    }

    // ---- answers the loop owes -------------------------------------------

    /// Completes an [`Effect::Upgrade`]: the 101 goes out and the session
    /// opens, in `route`'s room if it is a chat.
    pub fn accept_upgrade<S: Sink>(
        &mut self,
        route: Route,
        member: Option<Box<Member>>,
        cx: &mut Cx<'_, S>,
    ) {
        let Stage::Upgrading(up) = std::mem::replace(&mut self.stage, Stage::Ended) else {
            debug_assert!(false, "accept_upgrade outside the upgrading stage");
            return;
        };
        let extension = up.deflate.as_ref().map(DeflateParams::response);
        self.tx.push(Frame::from(http::upgrade_response_with(
            &up.accept, extension,
        )));
        self.stage = Stage::Open(Open {
            framed: Framed::default(),
            route,
            deflate: up.deflate,
            member,
            last_rx: cx.now,
            pinged: false,
            pings: Pace::new(cx.now.millis()),
            flow: Flow {
                last_progress: cx.now,
                over_since: Tick::NEVER,
                throttling: false,
                pong_at: Tick::NEVER,
            },
        });
        self.since = cx.now;
        // Frames the client sent right behind its request head.
        if !up.rx.is_empty() {
            let mut buffered = up.rx;
            self.read_frames(&mut buffered, cx);
        }
    }

    /// Refuses an [`Effect::Upgrade`] (authorization said no, or the room
    /// could not be joined): the client gets `rejection` instead of a 101,
    /// then the connection ends.
    pub fn refuse_upgrade<S: Sink>(&mut self, rejection: &Rejection, cx: &mut Cx<'_, S>) {
        if matches!(self.stage, Stage::Upgrading(_)) {
            self.reject(rejection, cx);
        }
    }

    /// Completes an [`Effect::Status`] or an accepted [`Effect::Publish`]
    /// with its response; a keep-alive connection reads its next request.
    pub fn answer<S: Sink>(&mut self, response: Vec<u8>, cx: &mut Cx<'_, S>) {
        let Stage::Request(req) = &mut self.stage else {
            return;
        };
        let keep_alive = req.awaiting.take().unwrap_or(false);
        self.reply(response, keep_alive, cx);
        self.read_requests(cx);
    }

    /// Refuses the connection before it says anything (over
    /// `--max-connections`): it gets `rejection`, and lingers for its
    /// client's EOF a second at most: its descriptor is wanted back.
    pub fn refuse<S: Sink>(&mut self, rejection: &Rejection, cx: &mut Cx<'_, S>) {
        cx.out.metrics().rejection(rejection.status);
        self.tx
            .push(Frame::from(http::rejection_response(rejection)));
        self.enter(
            Stage::Responding {
                then: AfterAnswer::LingerBriefly,
            },
            cx,
        );
    }

    /// Completes a refused [`Effect::Publish`]: its JSON answer, then the
    /// connection ends.
    pub fn refuse_publish<S: Sink>(&mut self, refusal: &Rejection, cx: &mut Cx<'_, S>) {
        debug!(
            "refused a publish request: {} {}",
            refusal.status, refusal.reason
        );
        self.respond(publish::refusal_response(refusal, true), refusal.status, cx);
    }

    // ---- mutators --------------------------------------------------------

    /// Queues `frame` (an answer to this client, such as an error frame),
    /// then judges the queue ([`Session::check_flow`]).
    pub fn send<S: Sink>(&mut self, frame: Frame, cx: &mut Cx<'_, S>) {
        if self.queue(frame, cx.policy, cx.now) {
            self.check_flow(cx);
        }
    }

    /// Queues `frame` during a fan-out, which must not change rooms while
    /// it iterates one. Returns whether the queue is over the high-water
    /// mark: then the caller calls [`Session::check_flow`] after the
    /// fan-out.
    pub fn queue(&mut self, frame: Frame, policy: &Policy, now: Tick) -> bool {
        self.queue_with(|tx| tx.push(frame), now);
        self.tx.cost() > policy.high_water()
    }

    /// Where the queue stands, judged by what the kernel refused over time
    /// rather than by what one loop iteration queued:
    /// - over the high-water mark (half of `--max-send-queue`) and still
    ///   draining, a client holds its room's senders back
    ///   ([`Effect::Throttle`]), so TCP slows them instead of the relay
    ///   buffering for them;
    /// - over `--max-send-queue` after the kernel took nothing from it for
    ///   [`PROGRESS_WINDOW`], or for longer than `--slow-consumer-grace`
    ///   while it reads, it is closed as a slow consumer.
    ///
    /// So a burst never closes a client that reads as fast as the kernel
    /// allows, and a client that stopped reading costs only its own queue.
    pub fn check_flow<S: Sink>(&mut self, cx: &mut Cx<'_, S>) {
        let policy = cx.policy;
        let cost = self.tx.cost();
        let Stage::Open(open) = &mut self.stage else {
            return;
        };
        let flow = &mut open.flow;
        let stalled = cx.now.since(flow.last_progress) > PROGRESS_WINDOW;
        let over = cost > policy.max_send_queue;
        if over && flow.over_since == Tick::NEVER {
            flow.over_since = cx.now;
        } else if !over {
            flow.over_since = Tick::NEVER;
        }
        if over && stalled {
            return self.close_slow_consumer(cx);
        }
        let throttle = cost > policy.high_water() && !stalled;
        if let Route::Chat(m) = open.route {
            if throttle != flow.throttling {
                flow.throttling = throttle;
                cx.out.effect(Effect::Throttle {
                    room: m.room,
                    on: throttle,
                });
            }
        }
    }

    /// Pushes with `push`, noting that an empty queue is making progress:
    /// it only starts to lag from now.
    fn queue_with(&mut self, push: impl FnOnce(&mut SendQueue), now: Tick) {
        if self.tx.is_empty() {
            if let Stage::Open(open) = &mut self.stage {
                open.flow.last_progress = now;
            }
        }
        push(&mut self.tx);
    }

    /// A client whose queue passed `--max-send-queue`: the frames it has not
    /// started to receive are dropped, and the close frame says why (SPEC
    /// section 4).
    pub fn close_slow_consumer<S: Sink>(&mut self, cx: &mut Cx<'_, S>) {
        if !self.is_open() {
            return;
        }
        let dropped = self.tx.discard_unstarted(cx.committed);
        info!(
            "closing connection {} as a slow consumer ({dropped} queued frames dropped)",
            cx.out.label()
        );
        cx.out.metrics().slow_consumer_closes += 1;
        self.start_close(CloseCode::POLICY_VIOLATION, "slow consumer", cx);
    }

    /// The relay is shutting down: an open WebSocket gets 1001, a request
    /// not yet answered gets 503.
    pub fn shut_down<S: Sink>(&mut self, cx: &mut Cx<'_, S>) {
        match self.stage {
            Stage::Open(_) => self.start_close(CloseCode::GOING_AWAY, "server shutting down", cx),
            Stage::Request(_) | Stage::Upgrading(_) => {
                let rejection = Rejection::new(503, "the relay is shutting down");
                self.respond(http::rejection_response(&rejection), 503, cx);
            }
            _ => {}
        }
    }

    /// Ends the connection now, without a closing handshake (a socket error,
    /// a close timeout, or the loop stopping).
    pub fn abort<S: Sink>(&mut self, cx: &mut Cx<'_, S>) {
        if matches!(self.stage, Stage::Open(_) | Stage::Closing(_)) {
            cx.out.metrics().close(1006);
        }
        self.end(false, cx);
    }

    /// The member that moved into another's place in the room's list.
    pub fn set_member_index(&mut self, index: u32) {
        if let Stage::Open(Open {
            route: Route::Chat(m),
            ..
        }) = &mut self.stage
        {
            m.index = index;
        }
    }

    // ---- requests --------------------------------------------------------

    /// Handles every complete request buffered: a loop, not recursion, so
    /// thousands of pipelined requests in one read cannot exhaust the stack.
    fn read_requests<S: Sink>(&mut self, cx: &mut Cx<'_, S>) {
        loop {
            let Stage::Request(req) = &mut self.stage else {
                return;
            };
            if req.awaiting.is_some() || req.rx.is_empty() {
                return;
            }
            match request::next(&mut req.rx, cx.policy) {
                Asked::Incomplete => return,
                Asked::Reject(rejection) => return self.reject(&rejection, cx),
                Asked::RefusePublish(refusal) => return self.refuse_publish(&refusal, cx),
                Asked::Page {
                    response,
                    keep_alive,
                } => self.reply(response, keep_alive, cx),
                Asked::Status {
                    page,
                    head_only,
                    keep_alive,
                } => {
                    req.awaiting = Some(keep_alive);
                    cx.out.effect(Effect::Status {
                        page,
                        head_only,
                        keep_alive,
                    });
                }
                Asked::Publish {
                    room,
                    body,
                    keep_alive,
                } => {
                    req.awaiting = Some(keep_alive);
                    cx.out.effect(Effect::Publish {
                        room,
                        body,
                        keep_alive,
                    });
                }
                Asked::Upgrade {
                    asked,
                    accept,
                    deflate,
                } => {
                    let rx = std::mem::take(&mut req.rx);
                    self.stage = Stage::Upgrading(Upgrading {
                        rx,
                        accept,
                        deflate,
                    });
                    cx.out.effect(Effect::Upgrade(asked));
                    return;
                }
            }
        }
    }

    /// Queues a successful answer; without keep-alive it is the last one.
    fn reply<S: Sink>(&mut self, response: Vec<u8>, keep_alive: bool, cx: &mut Cx<'_, S>) {
        if !keep_alive {
            return self.respond(response, 200, cx);
        }
        self.tx.push(Frame::from(response));
        self.since = cx.now;
        if self.tx.cost() > cx.policy.max_send_queue {
            // Pipelining requests without reading the answers.
            debug!(
                "connection {}: HTTP responses piled past --max-send-queue",
                cx.out.label()
            );
            self.abort(cx);
        }
    }

    fn reject<S: Sink>(&mut self, rejection: &Rejection, cx: &mut Cx<'_, S>) {
        debug!(
            "rejected a request: {} {}",
            rejection.status, rejection.reason
        );
        self.respond(http::rejection_response(rejection), rejection.status, cx);
    }

    /// Queues a final HTTP answer; the connection ends after it.
    fn respond<S: Sink>(&mut self, bytes: Vec<u8>, status: u16, cx: &mut Cx<'_, S>) {
        if status >= 400 {
            cx.out.metrics().rejection(status);
        }
        self.tx.push(Frame::from(bytes));
        self.enter(
            Stage::Responding {
                then: AfterAnswer::Linger,
            },
            cx,
        );
    }

    // ---- frames ----------------------------------------------------------

    fn framed_mut(&mut self) -> Option<&mut Framed> {
        match &mut self.stage {
            Stage::Open(open) => Some(&mut open.framed),
            Stage::Closing(framed) => Some(framed),
            _ => None,
        }
    }

    /// Decodes `input`, keeping a partial frame (or, when the connection's
    /// own queue filled up, the rest of the read) for later. The common case
    /// decodes straight from the loop's read buffer, no copy.
    fn read_frames<S: Sink>(&mut self, input: &mut [u8], cx: &mut Cx<'_, S>) {
        let Some(framed) = self.framed_mut() else {
            return;
        };
        if framed.rx.is_empty() {
            let used = self.decode(input, cx);
            if let Some(framed) = self.framed_mut() {
                framed.rx.put(input[used..].to_vec());
            }
        } else {
            let mut buffered = framed.rx.take();
            buffered.extend_from_slice(input);
            let used = self.decode(&mut buffered, cx);
            if let Some(framed) = self.framed_mut() {
                buffered.drain(..used);
                framed.rx.put(buffered);
            }
        }
        if let Some(framed) = self.framed_mut() {
            framed.release_buffers();
        }
    }

    /// Decodes frames from `input` while the session reads frames; returns
    /// the bytes consumed (the rest is an incomplete header or control
    /// frame).
    fn decode<S: Sink>(&mut self, input: &mut [u8], cx: &mut Cx<'_, S>) -> usize {
        let mut pos = 0;
        loop {
            let (framed, route, mut member, deflate, pings) = match &mut self.stage {
                Stage::Open(open) => (
                    &mut open.framed,
                    Some(open.route),
                    open.member.as_deref_mut(),
                    open.deflate,
                    Some(&mut open.pings),
                ),
                Stage::Closing(framed) => (framed, None, None, None, None),
                _ => return pos,
            };
            let decoded = match deflate {
                Some(_) => framed.decoder.decode_deflate(
                    &mut input[pos..],
                    &cx.policy.limits,
                    &mut cx.compression.inflater,
                    &mut cx.compression.inflated,
                ),
                None => framed.decoder.decode(&mut input[pos..], &cx.policy.limits),
            };
            let Decoded { consumed, event } = match decoded {
                Ok(decoded) => decoded,
                Err(e) => {
                    self.on_wire_fault(e, cx);
                    return pos;
                }
            };
            pos += consumed;
            let Some(event) = event else {
                return pos;
            };
            let next = match (event, route) {
                // Closing: only the client's close frame matters now.
                (Event::Message(..) | Event::Ping(_), None) => Next::Nothing,
                (Event::Message(kind, payload), Some(route)) => {
                    cx.out.metrics().messages_received += 1;
                    // A chat member's rate and rights come before its content.
                    let refused = match (route, member.as_deref_mut()) {
                        (Route::Chat(_), Some(member)) => {
                            admit(member, cx.policy, cx.now, &mut *cx.out)
                        }
                        _ => None,
                    };
                    let user = match (route, member.as_deref()) {
                        (Route::Chat(_), Some(m)) => m.user.as_ref(),
                        _ => None,
                    };
                    if let Some(next) = refused {
                        next
                    } else {
                        match (route, kind) {
                            (Route::Echo, kind) => {
                                // Compressed by the same rules as a broadcast.
                                let compressed = match (deflate, cx.policy.deflate.as_ref()) {
                                    (Some(params), Some(policy)) => Compression::frame_for(
                                        &mut cx.compression.compressor,
                                        kind,
                                        payload,
                                        params.server_window(),
                                        policy,
                                        cx.out.metrics(),
                                    ),
                                    _ => None,
                                };
                                Next::Send(compressed.unwrap_or_else(|| {
                                    let opcode = match kind {
                                        DataKind::Text => Opcode::Text,
                                        DataKind::Binary => Opcode::Binary,
                                    };
                                    frame::encode_frame(opcode, payload)
                                }))
                            }
                            (Route::Chat(m), DataKind::Text) => {
                                cx.out.chat(m.room, payload, user);
                                Next::Nothing
                            }
                            (Route::Chat(_), DataKind::Binary) => {
                                cx.out.metrics().chat_errors += 1;
                                Next::Send(chat::error_frame(&chat::ChatError::Binary))
                            }
                        }
                    }
                }
                (Event::Ping(payload), Some(_)) => {
                    if pinging_too_fast(pings, cx.policy, cx.now) {
                        Next::PingFlood
                    } else {
                        Next::Pong(frame::encode_frame(Opcode::Pong, payload))
                    }
                }
                (Event::Pong(_), _) => {
                    if pinging_too_fast(pings, cx.policy, cx.now) {
                        Next::PingFlood
                    } else {
                        Next::Nothing
                    }
                }
                (Event::Close(status), _) => Next::PeerClosed(status.map(|(code, _)| code)),
            };
            match next {
                Next::Nothing => {}
                Next::Send(bytes) => self.send(Frame::from(bytes), cx),
                Next::Pong(bytes) => {
                    // A client that reads gets every pong (Autobahn 2.10
                    // checks); one that does not has one waiting at most.
                    let replace = match &mut self.stage {
                        Stage::Open(open) => {
                            let stale = open.flow.pong_at < cx.now;
                            open.flow.pong_at = cx.now;
                            stale
                        }
                        _ => false,
                    };
                    let committed = cx.committed;
                    self.queue_with(
                        |tx| tx.push_pong(Frame::from(bytes), replace, committed),
                        cx.now,
                    );
                    self.check_flow(cx);
                }
                Next::PeerClosed(code) => self.on_peer_close(code, cx),
                Next::PingFlood => {
                    cx.out.metrics().ping_floods += 1;
                    info!(
                        "closing connection {}: more pings and pongs than --max-pings-per-second",
                        cx.out.label()
                    );
                    self.start_close(CloseCode::POLICY_VIOLATION, PING_FLOOD, cx);
                    return pos;
                }
                Next::Flooding => {
                    info!(
                        "closing connection {}: it keeps sending past --max-messages-per-second",
                        cx.out.label()
                    );
                    self.start_close(CloseCode::POLICY_VIOLATION, auth::bucket::FLOODING, cx);
                }
            }
            if self.read_blocked(cx.policy) {
                // Answers it does not read: keep the rest of this read for
                // when its queue drains (the loop stops reading it).
                return pos;
            }
        }
    }

    /// Fails the connection (RFC 6455 section 7.1.7): the relay sends its
    /// close and discards input until the client's EOF or the close timeout.
    /// Already closing, a broken peer just goes.
    fn on_wire_fault<S: Sink>(&mut self, e: ProtocolError, cx: &mut Cx<'_, S>) {
        if !self.is_open() {
            return self.end(false, cx);
        }
        debug!("connection {}: {e}", cx.out.label());
        let code = e.close_code();
        cx.out.metrics().close(code.0);
        self.tx
            .push(Frame::from(frame::encode_close(code.0, e.reason())));
        self.enter(
            Stage::Responding {
                then: AfterAnswer::Linger,
            },
            cx,
        );
    }

    fn on_peer_close<S: Sink>(&mut self, code: Option<CloseCode>, cx: &mut Cx<'_, S>) {
        if self.is_open() {
            // Echo the client's code (section 5.5.1); an empty close gets 1000.
            let code = code.unwrap_or(CloseCode::NORMAL);
            cx.out.metrics().close(code.0);
            self.tx.push(Frame::from(frame::encode_close(code.0, "")));
        }
        // Closing: our close was answered, and the handshake is complete.
        self.enter(Stage::Closed, cx);
    }

    /// Sends a close frame and waits for the client's answer.
    fn start_close<S: Sink>(&mut self, code: CloseCode, reason: &str, cx: &mut Cx<'_, S>) {
        let Some(framed) = self.leave_open(cx) else {
            return;
        };
        cx.out.metrics().close(code.0);
        self.tx
            .push(Frame::from(frame::encode_close(code.0, reason)));
        self.enter(Stage::Closing(framed), cx);
    }

    // ---- transitions -----------------------------------------------------

    /// Takes the open stage apart, emitting [`Effect::Left`]: the one way
    /// out of `Open`. Returns its frame reader, for the closing stage.
    fn leave_open<S: Sink>(&mut self, cx: &mut Cx<'_, S>) -> Option<Framed> {
        if !self.is_open() {
            return None;
        }
        let Stage::Open(open) = std::mem::replace(&mut self.stage, Stage::Ended) else {
            return None;
        };
        let membership = match open.route {
            Route::Chat(m) => Some(m),
            Route::Echo => None,
        };
        if let (true, Some(m)) = (open.flow.throttling, membership) {
            cx.out.effect(Effect::Throttle {
                room: m.room,
                on: false,
            });
        }
        cx.out.effect(Effect::Left(membership));
        Some(open.framed)
    }

    /// Moves to a stage other than `Open`.
    fn enter<S: Sink>(&mut self, next: Stage, cx: &mut Cx<'_, S>) {
        debug_assert!(!matches!(next, Stage::Open(_)));
        self.leave_open(cx);
        self.stage = next;
        self.since = cx.now;
        if self.tx.is_empty() {
            self.after_drained(cx);
        }
    }

    /// Everything queued is written: a final stage moves on.
    fn after_drained<S: Sink>(&mut self, cx: &mut Cx<'_, S>) {
        match self.stage {
            Stage::Closed => self.end(true, cx),
            Stage::Responding {
                then: AfterAnswer::End,
            } => self.end(false, cx),
            Stage::Responding { then } => {
                cx.out.effect(Effect::HalfClose);
                self.stage = Stage::Lingering {
                    brief: then == AfterAnswer::LingerBriefly,
                };
            }
            _ => {}
        }
    }

    fn end<S: Sink>(&mut self, clean: bool, cx: &mut Cx<'_, S>) {
        if matches!(self.stage, Stage::Ended) {
            return;
        }
        self.leave_open(cx);
        self.stage = Stage::Ended;
        cx.out.effect(Effect::Ended { clean });
    }
}

/// The 1008 close reason for a client past `--max-pings-per-second`.
pub const PING_FLOOD: &str = "ping flood: more pings and pongs than --max-pings-per-second";

/// Whether a ping or pong from an open connection goes past
/// `--max-pings-per-second` (a bucket of as many per second, in bursts of
/// at least 20). Past it the connection is closed at once: answering a
/// flood of pings would spend the loop's core on one client, and nothing
/// it sent is lost by closing (control frames carry no chat).
fn pinging_too_fast(pace: Option<&mut Pace>, policy: &Policy, now: Tick) -> bool {
    match (pace, policy.pings.as_ref()) {
        (Some(pace), Some(limit)) => !pace.allows(limit, now.millis()),
        _ => false,
    }
}

/// A chat member's message against its rate and rights: `None` lets it
/// through; otherwise what to do instead.
fn admit<S: Sink>(member: &mut Member, policy: &Policy, now: Tick, out: &mut S) -> Option<Next> {
    if let (Some(bucket), Some(rate)) = (member.bucket.as_mut(), policy.rate.as_ref()) {
        match bucket.check(rate, now.millis()) {
            Admission::Allow => {}
            Admission::Refuse => {
                out.metrics().rate_limited += 1;
                return Some(Next::Send(chat::error_text_frame(
                    auth::bucket::RATE_LIMITED,
                )));
            }
            Admission::Close => {
                out.metrics().rate_limited += 1;
                return Some(Next::Flooding);
            }
        }
    }
    if !member.write {
        out.metrics().chat_errors += 1;
        return Some(Next::Send(chat::error_text_frame(auth::READ_ONLY)));
    }
    None
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Request(_) => "request",
            Stage::Upgrading(_) => "upgrading",
            Stage::Open(_) => "open",
            Stage::Closing(_) => "closing",
            Stage::Closed => "closed",
            Stage::Responding { .. } => "responding",
            Stage::Lingering { .. } => "lingering",
            Stage::Ended => "ended",
        }
    }
}
