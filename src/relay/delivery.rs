//! Where a decoded chat message goes: the one switch between a single node
//! and the Redis backplane.
//!
//! With [`Delivery::Local`], a message is fanned out to its room's members
//! on this node as soon as it is decoded. With [`Delivery::Redis`], it is
//! published, and reaches the local members only when it comes back, so
//! every node (and every Django consumer) sees one order per room: Redis's.
//! Nothing outside this file asks which of the two is in use; the loop and
//! the relay call the same methods either way.

use crate::backplane::{self, Backplane};
use crate::chat;
use crate::config::Config;
use crate::relay::worker::Encoding;
use crate::wire::frame::Frame;
use crate::wire::http::Rejection;
use log::{debug, info};
use mio::Waker;
use std::io;
use std::sync::Arc;

pub enum Delivery {
    /// A single node: rooms are this process's alone.
    Local,
    /// Rooms shared with other nodes and Django through Redis pub/sub.
    Redis(Backplane),
}

/// `/healthz`'s view of the delivery.
pub struct Health {
    /// `"ok"`, or `"degraded"` while a Redis shard is down (local rooms
    /// still work, so the answer stays 200).
    pub status: &'static str,
    /// The `"backplane"` value: `null` for a single node.
    pub json: String,
}

impl Delivery {
    /// The backplane's thread is started when `--redis` is given.
    pub fn start(config: &Config, loop_waker: Arc<Waker>) -> io::Result<Delivery> {
        Ok(match Backplane::start(config, loop_waker)? {
            Some(bp) => Delivery::Redis(bp),
            None => Delivery::Local,
        })
    }

    /// What decoding a chat message must produce: the broadcast frame, or
    /// the Channels event Redis carries.
    pub fn encoding(&self, max_message: usize) -> Encoding {
        match self {
            Delivery::Local => Encoding::Frame,
            Delivery::Redis(_) => Encoding::Msgpack { max_message },
        }
    }

    /// Whether a queued message must carry its room's name: Redis publishes
    /// by name, and the room may be gone locally by then.
    pub fn publishes_by_name(&self) -> bool {
        matches!(self, Delivery::Redis(_))
    }

    /// A room got its first local member: listen to it on Redis.
    pub fn room_opened(&mut self, name: &Arc<str>) {
        if let Delivery::Redis(bp) = self {
            bp.subscribe(name.clone());
        }
    }

    /// A room lost its last local member: stop listening.
    pub fn room_closed(&mut self, name: Arc<str>) {
        if let Delivery::Redis(bp) = self {
            bp.unsubscribe(name);
        }
    }

    /// Publishes one decoded chat event; false when the backplane's queue is
    /// full (the sender is told). A single node never produces one.
    pub fn publish(&mut self, room: &Arc<str>, payload: Vec<u8>) -> bool {
        match self {
            Delivery::Local => true,
            Delivery::Redis(bp) => bp.try_publish_one(room, payload),
        }
    }

    /// A publish-API batch for `room` (named `known` when it has local
    /// members): through Redis, all or none, returning `Ok(true)`; or
    /// `Ok(false)` on a single node, where the caller fans it out.
    pub fn publish_batch(
        &mut self,
        room: &str,
        known: Option<&Arc<str>>,
        messages: &[&str],
        max_message: usize,
    ) -> Result<bool, Rejection> {
        let Delivery::Redis(bp) = self else {
            return Ok(false);
        };
        let n = messages.len();
        let mut payloads = Vec::with_capacity(n);
        for (i, raw) in messages.iter().enumerate() {
            let payload = backplane::encode_publish(raw, None, max_message).map_err(|refusal| {
                let reason = match n {
                    1 => refusal.reason,
                    _ => format!("batch element {i}: {}", refusal.reason),
                };
                Rejection::new(refusal.status, reason)
            })?;
            payloads.push(payload);
        }
        let name: Arc<str> = known.cloned().unwrap_or_else(|| room.into());
        if !bp.try_publish(&name, payloads) {
            return Err(Rejection::new(
                503,
                "the Redis backplane is not keeping up (--redis-queue is full); retry shortly",
            ));
        }
        Ok(true)
    }

    /// Hands this iteration's commands to the backplane: one send, one wake.
    pub fn flush(&mut self) {
        if let Delivery::Redis(bp) = self {
            bp.flush();
        }
    }

    /// Takes what came back from Redis: `(room name, frame)` to fan out to
    /// the room's local members, in Redis's order.
    pub fn take_arrivals(&mut self, out: &mut Vec<(Arc<str>, Frame)>) {
        let Delivery::Redis(bp) = self else {
            return;
        };
        bp.drain(|event| match event {
            backplane::Event::Deliver { room, frame } => out.push((room, frame)),
            backplane::Event::Up(n) => info!("Redis shard {n} is up: rooms span every node"),
            // The backplane thread already logged why, at warn.
            backplane::Event::Down(n) => debug!("Redis shard {n} is down"),
        });
    }

    pub fn health(&self) -> Health {
        match self {
            Delivery::Local => Health {
                status: "ok",
                json: "null".into(),
            },
            Delivery::Redis(bp) => Health {
                status: if bp.healthy() { "ok" } else { "degraded" },
                json: bp.health_json(),
            },
        }
    }

    /// The delivery's lines of `/metrics` (none for a single node).
    pub fn render_metrics(&self, out: &mut String) {
        if let Delivery::Redis(bp) = self {
            bp.render_metrics(out);
        }
    }
}

/// The `{"error"}` frame a sender gets when Redis is not keeping up.
pub fn backlog_error_frame() -> Frame {
    Frame::from(chat::error_text_frame(
        "the Redis backplane is not keeping up, so this message was not sent; try again shortly",
    ))
}
