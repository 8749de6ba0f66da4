//! Where a decoded chat message goes: the one switch between a single node
//! and the Redis backplane.
//!
//! With [`Delivery::Local`], a message is fanned out to its room's members
//! on this node as soon as it is decoded. With [`Delivery::Redis`], it is
//! published, and reaches the local members only when it comes back, so
//! every node (and every Django consumer) sees one order per room: Redis's.
//! Nothing outside this file asks which of the two is in use; the loop and
//! the relay call the same methods either way.
//!
//! **A join completes when the member can receive** (SPEC section 4). With
//! Redis, a room new on this node receives other nodes' messages only once
//! Redis has confirmed its `SUBSCRIBE`, so the loop asks [`Delivery::prepare`]
//! before it completes a chat upgrade: `true`, the room's members can receive
//! now (always on a single node); `false`, hold the `101` until
//! [`Arrival::Ready`] names the room. Invariants of the bookkeeping
//! (`Listening`, one entry per room the delivery has business with):
//! - a room is *wanted* (subscribed or being subscribed, as the loop last
//!   asked) from the first [`Delivery::prepare`] or [`Delivery::room_opened`]
//!   until [`Delivery::room_closed`] or [`Delivery::abandon`]; one
//!   `SUBSCRIBE` is sent when it becomes wanted, one `UNSUBSCRIBE` when it
//!   stops, never two in a row;
//! - the backplane answers each `SUBSCRIBE` with exactly one
//!   `Event::Subscribed` (`backplane/link.rs`), so `unconfirmed` counts
//!   exactly the subscriptions not yet answered, older ones (a room
//!   abandoned and wanted again) included, and a room is ready when it is
//!   wanted and nothing is unconfirmed: a stale confirmation of an earlier
//!   `SUBSCRIBE` never makes a later one look confirmed;
//! - [`Arrival::Ready`] is handed out once each time a wanted room's last
//!   unconfirmed subscription is answered, in order with the frames around
//!   it; a resubscription after a Redis reconnect hands out none;
//! - an entry is dropped once it is neither wanted nor awaiting an answer,
//!   so the map holds at most the wanted rooms plus subscriptions in flight.

use crate::backplane::{self, Backplane};
use crate::chat;
use crate::config::Config;
use crate::relay::worker::Encoding;
use crate::wire::frame::Frame;
use crate::wire::http::Rejection;
use log::{debug, info};
use mio::Waker;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;

pub enum Delivery {
    /// A single node: rooms are this process's alone.
    Local,
    /// Rooms shared with other nodes and Django through Redis pub/sub.
    Redis(Redis),
}

/// The Redis delivery: the backplane, and what this node knows of each
/// room's subscription.
pub struct Redis {
    backplane: Backplane,
    rooms: HashMap<Arc<str>, Listening>,
}

/// Where a room's subscription stands (see the module's invariants).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Listening {
    /// The loop wants the room listened to: the last command sent for it
    /// was `SUBSCRIBE`.
    wanted: bool,
    /// The room has local members (between `room_opened` and `room_closed`).
    members: bool,
    /// `SUBSCRIBE`s sent whose `Event::Subscribed` has not come back.
    unconfirmed: u32,
}

/// What came back for the loop, in the order it happened.
#[derive(Debug)]
pub enum Arrival {
    /// Fan `frame` out to the room's local members (if it still has any).
    Frame { room: Arc<str>, frame: Frame },
    /// Members of the room can receive now: complete the joins that
    /// [`Delivery::prepare`] answered `false` for. May name a room nobody
    /// waits on any more (ignore it then).
    Ready(Arc<str>),
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
            Some(backplane) => Delivery::Redis(Redis {
                backplane,
                rooms: HashMap::new(),
            }),
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

    /// Before a chat upgrade to `room` completes: `true` when members of the
    /// room can receive now (a single node; or Redis has confirmed the
    /// room's subscription, or its shard is down and the room is local);
    /// `false` to hold the `101` until [`Arrival::Ready`] names the room.
    /// The first call for a room subscribes it; later ones, while it is
    /// being subscribed, wait for the same confirmation.
    pub fn prepare(&mut self, room: &str) -> bool {
        let Delivery::Redis(redis) = self else {
            return true;
        };
        if let Some(l) = redis.rooms.get(room) {
            if l.wanted {
                return l.unconfirmed == 0;
            }
        }
        redis.want(room);
        false
    }

    /// Every upgrade that waited on `room` (after `prepare` answered
    /// `false`) went away before it joined: stop subscribing the room,
    /// unless it has local members. Safe to call for any room.
    pub fn abandon(&mut self, room: &str) {
        let Delivery::Redis(redis) = self else {
            return;
        };
        if let Some(l) = redis.rooms.get(room) {
            if l.wanted && !l.members {
                redis.unwant(room);
            }
        }
    }

    /// A room got its first local member (`Relay::join`). After `prepare`
    /// this only takes note; a join that skipped `prepare` subscribes the
    /// room here, as before readiness existed (its member may then miss
    /// what other nodes publish until the confirmation).
    pub fn room_opened(&mut self, name: &Arc<str>) {
        let Delivery::Redis(redis) = self else {
            return;
        };
        match redis.rooms.get_mut(&**name) {
            Some(l) if l.wanted => l.members = true,
            _ => {
                redis.want(name);
                if let Some(l) = redis.rooms.get_mut(&**name) {
                    l.members = true;
                }
            }
        }
    }

    /// A room lost its last local member: stop listening.
    pub fn room_closed(&mut self, name: Arc<str>) {
        let Delivery::Redis(redis) = self else {
            return;
        };
        if let Some(l) = redis.rooms.get_mut(&*name) {
            l.members = false;
            if l.wanted {
                redis.unwant(&name);
            }
        }
    }

    /// Publishes one decoded chat event; false when the backplane's queue is
    /// full (the sender is told). A single node never produces one.
    pub fn publish(&mut self, room: &Arc<str>, payload: Vec<u8>) -> bool {
        match self {
            Delivery::Local => true,
            Delivery::Redis(redis) => redis.backplane.try_publish_one(room, payload),
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
        let Delivery::Redis(Redis { backplane: bp, .. }) = self else {
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
        if let Delivery::Redis(redis) = self {
            redis.backplane.flush();
        }
    }

    /// Takes what came back from Redis, in order: frames to fan out to a
    /// room's local members (in Redis's order), and rooms whose members
    /// can receive now ([`Arrival::Ready`]). A single node has none.
    pub fn drain_arrivals(&mut self, out: &mut Vec<Arrival>) {
        if let Delivery::Redis(redis) = self {
            redis.drain(|arrival| out.push(arrival));
        }
    }

    pub fn health(&self) -> Health {
        match self {
            Delivery::Local => Health {
                status: "ok",
                json: "null".into(),
            },
            Delivery::Redis(redis) => Health {
                status: if redis.backplane.healthy() {
                    "ok"
                } else {
                    "degraded"
                },
                json: redis.backplane.health_json(),
            },
        }
    }

    /// The delivery's lines of `/metrics` (none for a single node).
    pub fn render_metrics(&self, out: &mut String) {
        if let Delivery::Redis(redis) = self {
            redis.backplane.render_metrics(out);
        }
    }
}

impl Redis {
    /// The room becomes wanted: one `SUBSCRIBE`, one more answer to await.
    fn want(&mut self, room: &str) {
        let name = match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        };
        let l = self.rooms.entry(name.clone()).or_default();
        debug_assert!(!l.wanted);
        l.wanted = true;
        l.unconfirmed += 1;
        self.backplane.subscribe(name);
    }

    /// The room stops being wanted: one `UNSUBSCRIBE`; the entry stays
    /// while an answer is still due.
    fn unwant(&mut self, room: &str) {
        let Some((name, l)) = self.rooms.get_key_value(room) else {
            return;
        };
        debug_assert!(l.wanted);
        let name = name.clone();
        if l.unconfirmed == 0 {
            self.rooms.remove(room);
        } else if let Some(l) = self.rooms.get_mut(room) {
            l.wanted = false;
            l.members = false;
        }
        self.backplane.unsubscribe(name);
    }

    /// Takes the backplane's events, keeping the books, and hands on what
    /// the loop acts on.
    fn drain(&mut self, mut f: impl FnMut(Arrival)) {
        let rooms = &mut self.rooms;
        self.backplane.drain(|event| match event {
            backplane::Event::Deliver { room, frame } => f(Arrival::Frame { room, frame }),
            backplane::Event::Subscribed(room) => {
                let Some(l) = rooms.get_mut(&room) else {
                    // Not one of ours (cannot happen: every SUBSCRIBE is).
                    return;
                };
                l.unconfirmed = l.unconfirmed.saturating_sub(1);
                match (l.wanted, l.unconfirmed) {
                    (true, 0) => f(Arrival::Ready(room)),
                    (false, 0) => {
                        rooms.remove(&room);
                    }
                    _ => {}
                }
            }
            backplane::Event::Up(n) => info!("Redis shard {n} is up: rooms span every node"),
            // The backplane thread already logged why, at warn.
            backplane::Event::Down(n) => debug!("Redis shard {n} is down"),
        });
    }
}

/// The `{"error"}` frame a sender gets when Redis is not keeping up.
pub fn backlog_error_frame() -> Frame {
    Frame::from(chat::error_text_frame(
        "the Redis backplane is not keeping up, so this message was not sent; try again shortly",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::{Command, Detached, Event};

    fn redis() -> (Delivery, Detached) {
        let (backplane, thread) = Backplane::detached(1);
        let delivery = Delivery::Redis(Redis {
            backplane,
            rooms: HashMap::new(),
        });
        (delivery, thread)
    }

    /// What the delivery asked of Redis since the last call, as text.
    fn sent(d: &mut Delivery, thread: &Detached) -> Vec<String> {
        d.flush();
        thread
            .commands
            .try_iter()
            .flatten()
            .map(|c| match c {
                Command::Subscribe(r) => format!("SUBSCRIBE {r}"),
                Command::Unsubscribe(r) => format!("UNSUBSCRIBE {r}"),
                Command::Publish { room, .. } => format!("PUBLISH {room}"),
            })
            .collect()
    }

    /// Hands the delivery these events; returns what the loop gets.
    fn arrive(d: &mut Delivery, thread: &Detached, events: Vec<Event>) -> Vec<String> {
        thread.events.send(events).unwrap();
        let mut out = Vec::new();
        d.drain_arrivals(&mut out);
        out.iter()
            .map(|a| match a {
                Arrival::Ready(r) => format!("ready {r}"),
                Arrival::Frame { room, .. } => format!("frame {room}"),
            })
            .collect()
    }

    fn subscribed(room: &str) -> Event {
        Event::Subscribed(room.into())
    }

    #[test]
    fn a_single_node_is_always_ready() {
        let mut d = Delivery::Local;
        assert!(d.prepare("r"));
        d.abandon("r");
        let mut out = Vec::new();
        d.drain_arrivals(&mut out);
        assert!(out.is_empty());
    }

    /// The first upgrade to a new room subscribes it and waits; a second
    /// one waits for the same confirmation; once confirmed, upgrades
    /// complete at once, and the last member leaving unsubscribes.
    #[test]
    fn a_new_room_is_ready_once_redis_confirms_it() {
        let (mut d, t) = redis();
        assert!(!d.prepare("r"));
        assert!(!d.prepare("r"));
        assert_eq!(sent(&mut d, &t), ["SUBSCRIBE r"]);
        assert_eq!(arrive(&mut d, &t, vec![]), Vec::<String>::new());
        assert!(!d.prepare("r"));
        assert_eq!(arrive(&mut d, &t, vec![subscribed("r")]), ["ready r"]);
        assert!(d.prepare("r"));
        d.room_opened(&"r".into());
        assert!(d.prepare("r"));
        assert_eq!(sent(&mut d, &t), Vec::<String>::new());
        d.room_closed("r".into());
        assert_eq!(sent(&mut d, &t), ["UNSUBSCRIBE r"]);
        assert!(!d.prepare("r"));
        assert_eq!(sent(&mut d, &t), ["SUBSCRIBE r"]);
    }

    /// Every waiting upgrade went away: the subscription is dropped, and
    /// its late confirmation hands nothing to the loop.
    #[test]
    fn an_abandoned_room_is_unsubscribed_and_never_ready() {
        let (mut d, t) = redis();
        assert!(!d.prepare("r"));
        d.abandon("r");
        assert_eq!(sent(&mut d, &t), ["SUBSCRIBE r", "UNSUBSCRIBE r"]);
        assert_eq!(
            arrive(&mut d, &t, vec![subscribed("r")]),
            Vec::<String>::new()
        );
        d.abandon("r");
        assert_eq!(sent(&mut d, &t), Vec::<String>::new());
        let Delivery::Redis(redis) = &d else {
            unreachable!()
        };
        assert!(redis.rooms.is_empty(), "{:?}", redis.rooms);
    }

    /// Abandoned and wanted again before Redis answered the first
    /// SUBSCRIBE: that answer is not the new one's, so the room is ready
    /// only after the second.
    #[test]
    fn a_stale_confirmation_does_not_make_a_new_subscription_ready() {
        let (mut d, t) = redis();
        assert!(!d.prepare("r"));
        d.abandon("r");
        assert!(!d.prepare("r"));
        assert_eq!(
            sent(&mut d, &t),
            ["SUBSCRIBE r", "UNSUBSCRIBE r", "SUBSCRIBE r"]
        );
        assert_eq!(
            arrive(&mut d, &t, vec![subscribed("r")]),
            Vec::<String>::new()
        );
        assert!(!d.prepare("r"));
        assert_eq!(arrive(&mut d, &t, vec![subscribed("r")]), ["ready r"]);
        assert!(d.prepare("r"));
    }

    /// A room with local members is not abandoned by an upgrade that went
    /// away; a join that skipped `prepare` still subscribes the room.
    #[test]
    fn members_keep_a_room_and_a_join_without_prepare_subscribes() {
        let (mut d, t) = redis();
        d.room_opened(&"r".into());
        assert_eq!(sent(&mut d, &t), ["SUBSCRIBE r"]);
        assert!(!d.prepare("r"));
        d.abandon("r");
        assert_eq!(sent(&mut d, &t), Vec::<String>::new());
        assert_eq!(arrive(&mut d, &t, vec![subscribed("r")]), ["ready r"]);
        assert!(d.prepare("r"));
        d.abandon("r");
        assert!(d.prepare("r"));
        assert_eq!(sent(&mut d, &t), Vec::<String>::new());
    }

    /// Ready comes in order with the frames: a frame published after the
    /// confirmation comes after the Ready, so the joins it completes get it.
    #[test]
    fn ready_is_in_order_with_frames() {
        let (mut d, t) = redis();
        assert!(!d.prepare("r"));
        let frame = || Frame::from(&b"\x81\x00"[..]);
        let events = vec![
            Event::Deliver {
                room: "q".into(),
                frame: frame(),
            },
            subscribed("r"),
            Event::Deliver {
                room: "r".into(),
                frame: frame(),
            },
        ];
        assert_eq!(
            arrive(&mut d, &t, events),
            ["frame q", "ready r", "frame r"]
        );
    }
}
