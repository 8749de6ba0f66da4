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
//! fan out to a room, and shard state changes. Invariants:
//! - **One ordered pipeline per node.** Commands reach a shard's connection
//!   in the order the loop queued them, and a shard's subscribe, publish and
//!   message traffic share that one connection (RESP3 allows commands while
//!   subscribed), so a room's `SUBSCRIBE` is always processed by Redis before
//!   the room's first `PUBLISH` from this node, and the node sees its own
//!   messages come back in Redis's order, the order every node sees.
//! - **Degraded, not down.** While a shard is unreachable, messages for its
//!   rooms are delivered to local members by the backplane thread itself
//!   (still in queue order), so local rooms keep working; on reconnect every
//!   live room is subscribed again. Across a reconnect delivery between nodes
//!   is at-most-once, as with channels_redis.
//! - **Bounded.** Bytes of messages not yet confirmed by Redis are counted in
//!   [`Shared::queue_bytes`]; the loop refuses a message that would pass
//!   `--redis-queue` (the sender hears why). Frames handed back to the loop
//!   are counted too, and the thread stops reading Redis while they pass the
//!   same bound.

mod link;
mod thread;

use crate::config::Config;
use crate::redis_url::RedisUrl;
use crate::wire::frame::Frame;
use crossbeam_channel::{Receiver, Sender};
use mio::Waker;
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

/// Most a chat message's JSON text can grow when written back as Python's
/// `json.dumps` does: a raw DEL byte becomes `\u007f`.
const DUMPS_GROWTH: usize = 6;

/// A message whose delivered form is over `--max-message-size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub size: usize,
    pub max: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the message is {} bytes once written as Django Channels writes it (json.dumps escapes non-ASCII as \\uXXXX), over --max-message-size ({}); it was not sent",
            self.size, self.max
        )
    }
}

/// Refuses, before it is published, a message whose `json.dumps` form (what
/// every node delivers) would pass `max_message`: no node could deliver it
/// (`\u00e9` for each `é` triples non-ASCII text). Only messages that could
/// grow past the limit are measured, so small ones cost nothing here.
pub fn check_delivered_size(
    raw_len: usize,
    payload: &[u8],
    max_message: usize,
) -> Result<(), TooLarge> {
    if raw_len.saturating_mul(DUMPS_GROWTH).saturating_add(16) <= max_message {
        return Ok(());
    }
    let mut json = Vec::new();
    // An event this relay just encoded always decodes.
    if crate::msgpack::decode_chat_event(payload, &mut json).is_ok() && json.len() > max_message {
        return Err(TooLarge {
            size: json.len(),
            max: max_message,
        });
    }
    Ok(())
}

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

/// Settings the backplane thread needs.
#[derive(Clone, Debug)]
struct Settings {
    urls: Vec<RedisUrl>,
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
    urls: Vec<String>,
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
        let shared = Arc::new(Shared::default());
        let settings = Settings {
            urls: urls.clone(),
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
            urls: urls.iter().map(ToString::to_string).collect(),
            up: vec![false; urls.len()],
            thread: Some(thread),
        }))
    }

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

    /// `(url without password, up)` per shard, for `/healthz`.
    pub fn shards(&self) -> impl Iterator<Item = (&str, bool)> {
        self.urls
            .iter()
            .map(String::as_str)
            .zip(self.up.iter().copied())
    }

    /// The `"backplane"` value of `/healthz`.
    pub fn health_json(&self) -> String {
        let shards: Vec<String> = self
            .shards()
            .map(|(url, up)| {
                format!(
                    "{{\"redis\": {}, \"up\": {up}}}",
                    serde_json::Value::from(url)
                )
            })
            .collect();
        format!("{{\"shards\": [{}]}}", shards.join(", "))
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
        for (i, (_, up)) in self.shards().enumerate() {
            let _ = writeln!(s, "roomcast_backplane_up{{shard=\"{i}\"}} {}", u8::from(up));
        }
    }
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

    fn event(json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        crate::msgpack::encode_chat_event(json, &mut out).unwrap();
        out
    }

    #[test]
    fn the_delivered_size_counts_python_escapes() {
        // 1,000 'é' are 2,002 bytes of JSON text but 6,000 once escaped.
        let text = format!("\"{}\"", "é".repeat(1000));
        let e = check_delivered_size(text.len(), &event(&text), 4096).unwrap_err();
        assert_eq!(e.size, r#"{"message": ""}"#.len() + 6000);
        assert!(e.to_string().contains("--max-message-size (4096)"));
        assert_eq!(
            check_delivered_size(text.len(), &event(&text), 8192),
            Ok(())
        );
        // ASCII does not grow; and small messages are not even measured.
        let ascii = format!("\"{}\"", "a".repeat(4000));
        assert_eq!(
            check_delivered_size(ascii.len(), &event(&ascii), 4096),
            Ok(())
        );
        assert_eq!(check_delivered_size(3, b"not even msgpack", 4096), Ok(()));
    }
}
