//! The Redis backplane: rooms shared by several relays (and by Django
//! Channels) through Redis pub/sub, speaking channels_redis's
//! `RedisPubSubChannelLayer` wire format.
//!
//! The event loop never touches Redis. It owns a [`Backplane`] handle and
//! queues [`Command`]s on it during an iteration (subscribe when a room gets
//! its first local member, unsubscribe when it loses its last, publish a
//! chat message); [`Backplane::flush`] hands them over in one channel send
//! and one wake-up. The backplane thread (`thread.rs`) owns one RESP3
//! connection per shard (`link.rs`) and sends back [`Event`]s: the frames to
//! fan out to a room, each subscription once its members can receive, and
//! shard state changes. Invariants:
//! - **One ordered pipeline per node.** Commands reach a shard's connection
//!   in the order the loop queued them, and a shard's subscribe, publish and
//!   message traffic share that one connection (RESP3 allows commands while
//!   subscribed), so a room's `SUBSCRIBE` is always processed by Redis before
//!   the room's first `PUBLISH` from this node, and the node sees its own
//!   messages come back in Redis's order, the order every node sees.
//! - **A join completes when the member can receive** (SPEC section 4).
//!   Each subscribe is answered by exactly one [`Event::Subscribed`]: once
//!   Redis confirmed it, so a message any node publishes after that reaches
//!   this node; at once while its shard is down (local delivery needs no
//!   Redis). The loop holds a new member's `101` until then
//!   (`relay/delivery.rs` keeps the count).
//! - **Degraded, not down.** While a shard is unreachable, messages for its
//!   rooms are delivered to local members by the backplane thread itself
//!   (still in queue order), so local rooms keep working; on reconnect every
//!   live room is subscribed again. Across a reconnect delivery between nodes
//!   is at-most-once, as with channels_redis. A shard is unreachable when it
//!   leaves its oldest command unanswered for `--redis-timeout`, whatever
//!   else it sends.
//! - **Bounded.** Bytes of messages not yet confirmed by Redis are counted in
//!   [`Shared::queue_bytes`]; the loop refuses a message that would pass
//!   `--redis-queue` (the sender hears why). Frames handed back to the loop
//!   are counted too, and the thread stops reading Redis while they pass the
//!   same bound. What Redis sends is held to one reply of about
//!   2 × `--max-message-size` + 64 KiB per shard; a larger event is skipped
//!   as it streams in, never buffered or decoded.
//! - **Redis is hostile input.** No byte sequence from Redis panics, stalls
//!   the thread or allocates past those bounds; only a framing error drops a
//!   connection.
//! - **The public port shows no Redis address.** `/healthz` and `/metrics`
//!   name shards by index; hosts and users appear only in the log.
//!
//! The parts: `event.rs` (a chat message onto Redis: [`encode_publish`]),
//! `link.rs` (one shard's connection as a state machine, sans-IO),
//! `thread.rs` (the sockets, timers and reconnects), `transport.rs` (TCP, or
//! TLS over it, for `rediss://`), and the sans-IO codecs [`resp`] (RESP2/3,
//! and its incremental [`resp::Framer`]), [`msgpack`] (Channels events),
//! [`shard`] (channels_redis names and consistent hash) and [`redis_url`].
//! This folder imports only `crate::config`, `crate::frame` and
//! `crate::sendq` from the rest of the crate; the server and the workers
//! call it, never the other way round.

mod event;
mod link;
pub mod msgpack;
pub mod redis_url;
pub mod resp;
pub mod shard;
mod thread;
mod transport;

pub use event::{check_identity, encode_publish, PublishRefusal};
pub(crate) use transport::client_config as tls_client_config;

use crate::config::Config;
use crate::wire::frame::Frame;
use crossbeam_channel::{Receiver, Sender};
use mio::Waker;
use redis_url::RedisUrl;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Fixed cost charged per queued publish on top of its payload (the command
/// framing and the bookkeeping), so many tiny messages are bounded too.
const PUBLISH_OVERHEAD: usize = 64;

/// What the loop asks of the backplane, in order.
#[derive(Debug)]
pub enum Command {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
    /// A msgpack Channels event for the room's group. `cost` was added to
    /// [`Shared::queue_bytes`] by the loop and is released by the thread.
    Publish {
        room: Arc<str>,
        payload: Vec<u8>,
        cost: usize,
    },
}

/// What the backplane hands back to the loop.
#[derive(Debug)]
pub enum Event {
    /// Fan `frame` out to the local members of `room` (if it still has any).
    Deliver { room: Arc<str>, frame: Frame },
    /// Members of `room` can receive: Redis confirmed the room's
    /// `SUBSCRIBE` (so every message published from now on reaches this
    /// node), or its shard is down and the room is local-only (degraded
    /// delivery needs no Redis). Exactly one for each
    /// [`Backplane::subscribe`], in the order of the events around it, even
    /// when the room was unsubscribed meanwhile; a reconnect's
    /// resubscription of live rooms reports none.
    Subscribed(Arc<str>),
    /// Shard `n` is connected and subscribed: messages cross nodes again.
    Up(usize),
    /// Shard `n` was lost: its rooms are local-only until it is back.
    Down(usize),
}

/// Reasons an event from Redis was not delivered: over --max-message-size,
/// or a `DecodeError::label`.
pub const DROP_REASONS: [&str; 7] = [
    "too_large",
    "malformed",
    "not_an_event",
    "other_type",
    "no_message",
    "unsupported",
    "too_deep",
];

/// Counters and state shared by the loop and the backplane thread.
#[derive(Debug, Default)]
pub struct Shared {
    /// Bytes of publishes queued and not yet confirmed by Redis.
    pub queue_bytes: AtomicUsize,
    /// Bytes of frames handed to the loop and not yet fanned out.
    pub event_bytes: AtomicUsize,
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub rejected: AtomicU64,
    pub fallback: AtomicU64,
    pub reconnects: AtomicU64,
    pub dropped: [AtomicU64; DROP_REASONS.len()],
}

impl Shared {
    fn drop_reason(&self, label: &str) {
        if let Some(i) = DROP_REASONS.iter().position(|r| *r == label) {
            self.dropped[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the backplane thread needs from the flags.
#[derive(Clone, Debug)]
struct ThreadSettings {
    urls: Vec<RedisUrl>,
    /// For the `rediss://` shards, if any.
    tls: Option<Arc<rustls::ClientConfig>>,
    prefix: String,
    queue_limit: usize,
    max_message: usize,
    timeout: Duration,
    retry_max: Duration,
}

/// The loop's handle on the backplane.
pub struct Backplane {
    pending: Vec<Command>,
    commands: Option<Sender<Vec<Command>>>,
    events: Receiver<Vec<Event>>,
    /// Wakes the backplane thread.
    waker: Arc<Waker>,
    shared: Arc<Shared>,
    queue_limit: usize,
    /// The loop's view of each shard, updated in event order.
    up: Vec<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Backplane {
    /// Starts the backplane thread when `--redis` is given. Redis being
    /// unreachable is not an error: the shards start degraded and retry.
    pub fn start(config: &Config, loop_waker: Arc<Waker>) -> io::Result<Option<Backplane>> {
        if config.redis.is_empty() {
            return Ok(None);
        }
        let urls = config
            .redis
            .iter()
            .map(|u| RedisUrl::parse(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        for (i, url) in urls.iter().enumerate() {
            // Here and not on /healthz, which is on the public port.
            log::info!("Redis shard {i} is {url}");
        }
        let tls = match urls.iter().any(|u| u.tls) {
            true => Some(
                transport::client_config(config.redis_tls_ca.as_deref())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            ),
            false => None,
        };
        let shared = Arc::new(Shared::default());
        let settings = ThreadSettings {
            urls: urls.clone(),
            tls,
            prefix: config.redis_prefix.clone(),
            queue_limit: config.redis_queue,
            max_message: config.max_message_size,
            timeout: config.redis_timeout,
            retry_max: config.redis_retry_max,
        };
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let (thread, waker) = thread::spawn(settings, cmd_rx, ev_tx, loop_waker, shared.clone())?;
        Ok(Some(Backplane {
            pending: Vec::new(),
            commands: Some(cmd_tx),
            events: ev_rx,
            waker,
            shared,
            queue_limit: config.redis_queue,
            up: vec![false; urls.len()],
            thread: Some(thread),
        }))
    }

    /// Listens to `room` on its shard; [`Event::Subscribed`] follows once
    /// (see there) when its members can receive.
    pub fn subscribe(&mut self, room: Arc<str>) {
        self.pending.push(Command::Subscribe(room));
    }

    pub fn unsubscribe(&mut self, room: Arc<str>) {
        self.pending.push(Command::Unsubscribe(room));
    }

    /// Queues msgpack events for `room`, all or none: false when they would
    /// pass `--redis-queue` (counted as rejected).
    pub fn try_publish(&mut self, room: &Arc<str>, payloads: Vec<Vec<u8>>) -> bool {
        let total = payloads.iter().map(|p| p.len() + PUBLISH_OVERHEAD).sum();
        if !self.admit(total, payloads.len()) {
            return false;
        }
        for payload in payloads {
            self.push_publish(room, payload);
        }
        true
    }

    /// [`Backplane::try_publish`] for one chat message, without a `Vec`
    /// around it: this is the per-message path.
    pub fn try_publish_one(&mut self, room: &Arc<str>, payload: Vec<u8>) -> bool {
        if !self.admit(payload.len() + PUBLISH_OVERHEAD, 1) {
            return false;
        }
        self.push_publish(room, payload);
        true
    }

    /// Charges `bytes` for `count` messages to the queue bound, or refuses.
    fn admit(&mut self, bytes: usize, count: usize) -> bool {
        let queued = self.shared.queue_bytes.load(Ordering::Acquire);
        if queued.saturating_add(bytes) > self.queue_limit {
            self.shared
                .rejected
                .fetch_add(count as u64, Ordering::Relaxed);
            return false;
        }
        self.shared.queue_bytes.fetch_add(bytes, Ordering::AcqRel);
        true
    }

    fn push_publish(&mut self, room: &Arc<str>, payload: Vec<u8>) {
        let cost = payload.len() + PUBLISH_OVERHEAD;
        self.pending.push(Command::Publish {
            room: room.clone(),
            payload,
            cost,
        });
    }

    /// Hands this iteration's commands to the thread: one send, one wake.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        if let Some(tx) = &self.commands {
            if tx.send(batch).is_ok() {
                let _ = self.waker.wake();
            }
        }
    }

    /// Takes every event batch waiting, in order. The bytes are released
    /// from the hand-over bound here, as the loop takes them on.
    pub fn drain(&mut self, mut f: impl FnMut(Event)) {
        while let Ok(batch) = self.events.try_recv() {
            let mut bytes = 0;
            for event in batch {
                match &event {
                    Event::Deliver { frame, .. } => bytes += frame.len(),
                    Event::Subscribed(_) => {}
                    Event::Up(n) => self.up[*n] = true,
                    Event::Down(n) => self.up[*n] = false,
                }
                f(event);
            }
            self.shared.event_bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// Every shard connected.
    pub fn healthy(&self) -> bool {
        self.up.iter().all(|&u| u)
    }

    /// Whether each shard is connected, by shard index.
    pub fn shards(&self) -> impl Iterator<Item = (usize, bool)> + '_ {
        self.up.iter().copied().enumerate()
    }

    /// The `"backplane"` value of `/healthz`: each shard's index and state.
    /// `/healthz` is on the public port, so where Redis is and who the relay
    /// logs in as stay off it (the log says so at start).
    pub fn health_json(&self) -> String {
        health_json(&self.up)
    }

    /// The backplane's lines of `/metrics`.
    pub fn render_metrics(&self, s: &mut String) {
        use std::fmt::Write as _;
        let sh = &self.shared;
        let counters: [(&str, &str, &AtomicU64); 5] = [
            (
                "roomcast_backplane_published_total",
                "Chat messages Redis confirmed publishing.",
                &sh.published,
            ),
            (
                "roomcast_backplane_received_total",
                "Messages received from Redis for rooms with local members.",
                &sh.received,
            ),
            (
                "roomcast_backplane_rejected_total",
                "Messages refused because --redis-queue was full (the sender was told).",
                &sh.rejected,
            ),
            (
                "roomcast_backplane_fallback_total",
                "Messages delivered to local members only, because their shard was down.",
                &sh.fallback,
            ),
            (
                "roomcast_backplane_reconnects_total",
                "Redis connections lost after being established.",
                &sh.reconnects,
            ),
        ];
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, value) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(value)
            );
        }
        let _ = writeln!(
            s,
            "# HELP roomcast_backplane_dropped_total Events from Redis not delivered, by reason.\n# TYPE roomcast_backplane_dropped_total counter"
        );
        for (reason, n) in DROP_REASONS.iter().zip(&sh.dropped) {
            let _ = writeln!(
                s,
                "roomcast_backplane_dropped_total{{reason=\"{reason}\"}} {}",
                get(n)
            );
        }
        let _ = writeln!(
            s,
            "# HELP roomcast_backplane_queue_bytes Bytes of messages waiting for Redis to confirm them.\n# TYPE roomcast_backplane_queue_bytes gauge\nroomcast_backplane_queue_bytes {}",
            sh.queue_bytes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP roomcast_backplane_up Whether each Redis shard is connected.\n# TYPE roomcast_backplane_up gauge"
        );
        for (i, up) in self.shards() {
            let _ = writeln!(s, "roomcast_backplane_up{{shard=\"{i}\"}} {}", u8::from(up));
        }
    }
}

/// The other ends of a [`Backplane`] with no thread, for tests of what
/// drives it: the commands it flushes, and events to hand it.
#[cfg(test)]
pub(crate) struct Detached {
    pub commands: Receiver<Vec<Command>>,
    pub events: Sender<Vec<Event>>,
    _poll: mio::Poll,
}

#[cfg(test)]
impl Backplane {
    pub(crate) fn detached(shards: usize) -> (Backplane, Detached) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let bp = Backplane {
            pending: Vec::new(),
            commands: Some(cmd_tx),
            events: ev_rx,
            waker,
            shared: Arc::new(Shared::default()),
            queue_limit: 1 << 20,
            up: vec![false; shards],
            thread: None,
        };
        let other = Detached {
            commands: cmd_rx,
            events: ev_tx,
            _poll: poll,
        };
        (bp, other)
    }
}

/// `{"shards": [{"shard": 0, "up": true}, ...]}`.
fn health_json(up: &[bool]) -> String {
    let shards: Vec<String> = up
        .iter()
        .enumerate()
        .map(|(i, up)| format!("{{\"shard\": {i}, \"up\": {up}}}"))
        .collect();
    format!("{{\"shards\": [{}]}}", shards.join(", "))
}

impl Drop for Backplane {
    fn drop(&mut self) {
        // Closing the channel is the thread's signal to stop.
        self.commands = None;
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_shows_shard_states_only() {
        assert_eq!(health_json(&[]), r#"{"shards": []}"#);
        assert_eq!(
            health_json(&[true, false]),
            r#"{"shards": [{"shard": 0, "up": true}, {"shard": 1, "up": false}]}"#
        );
    }
}
