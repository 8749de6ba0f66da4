//! The relay: who is in which room, the chat messages of one loop
//! iteration on their way to being decoded, the JSON workers, and where a
//! decoded message goes ([`delivery`]: to the room's local members, or
//! through Redis so every node sees one order).
//!
//! May import [`crate::wire`], [`crate::chat`] and [`crate::backplane`]
//! (through [`delivery`] only). Nothing here touches a socket or reads the
//! clock: fan-out itself belongs to the event loop, which owns the
//! connections; the relay tells it who the members are and hands it decoded
//! [`worker::Outcome`]s in arrival order.
//!
//! - [`room`]: room name to member list, O(1) join and leave;
//! - [`sendq`]: a connection's queue of shared, once-encoded frames;
//! - [`worker`]: ordered batches of JSON decoding, on worker threads or the
//!   loop;
//! - [`delivery`]: the one switch between a single node and the Redis
//!   backplane.
//!
//! Invariants: a message enters the batch in the order the loop read it,
//! and outcomes come back in that order whatever thread decoded them (SPEC
//! section 2's room order); [`Relay::join`] and [`Relay::leave`] are the only
//! way rooms change, so the backplane subscribes a room exactly while it has
//! local members.

pub mod delivery;
pub mod room;
pub mod sendq;
pub mod worker;

use crate::chat::{self, publish};
use crate::relay::delivery::Delivery;
use crate::relay::room::{Membership, RoomId, Rooms};
use crate::relay::worker::{decode_batch, Batch, Encoding, Outcome, WorkerPool};
use crate::wire::frame::Frame;
use crate::wire::http::Rejection;
use mio::Waker;
use std::fmt;
use std::io;
use std::sync::Arc;

/// A connection, named by its slot in the loop's slab plus a generation, so
/// a name kept across iterations (in a decode batch, a timer, a room) never
/// reaches a newer connection that reused the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub key: u32,
    pub generation: u32,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)
    }
}

/// A batch is handed to the workers early once it holds this many bytes,
/// so one busy iteration does not build an unbounded batch.
const BATCH_BYTES: usize = 1 << 20;

/// What a publish-API request became.
#[derive(Debug)]
pub enum Published {
    /// The messages went to Redis, which brings them back to every node.
    Sent { count: usize },
    /// A single node: the loop fans these out to the room (if it exists).
    Local {
        room: Option<RoomId>,
        frames: Vec<Frame>,
    },
}

impl Published {
    pub fn count(&self) -> usize {
        match self {
            Published::Sent { count } => *count,
            Published::Local { frames, .. } => frames.len(),
        }
    }
}

pub struct Relay {
    /// Room name to member list.
    pub rooms: Rooms,
    /// Local, or through Redis.
    pub delivery: Delivery,
    /// This iteration's chat messages, in arrival order.
    batch: Batch,
    /// What decoding a message produces, chosen once by the delivery.
    encoding: Encoding,
    /// Decoding threads; `None` decodes every batch on the loop.
    pool: Option<WorkerPool>,
    /// Below this many messages, with no batch at the workers, the loop
    /// decodes a batch itself: the hand-off (a channel send, a thread
    /// wake-up and the waker's eventfd) costs more than decoding a few small
    /// messages. Order is kept because nothing earlier is still out.
    inline_decode_below: usize,
    /// `--max-message-size`, for publish-API batches.
    max_message: usize,
}

impl Relay {
    pub fn new(
        delivery: Delivery,
        workers: usize,
        inline_decode_below: usize,
        max_message: usize,
        waker: Arc<Waker>,
    ) -> io::Result<Relay> {
        let encoding = delivery.encoding(max_message);
        let pool = match workers {
            0 => None,
            n => Some(WorkerPool::new(n, encoding, waker)?),
        };
        Ok(Relay {
            rooms: Rooms::default(),
            delivery,
            batch: Batch::default(),
            encoding,
            pool,
            inline_decode_below,
            max_message,
        })
    }

    /// Adds `id` to `room`; the first local member makes the delivery
    /// listen to the room.
    pub fn join(&mut self, room: &str, id: ConnId) -> Membership {
        let rooms_before = self.rooms.len();
        let m = self.rooms.join(room, id);
        if self.rooms.len() > rooms_before {
            if let Some(r) = self.rooms.get(m.room) {
                self.delivery.room_opened(&r.name);
            }
        }
        m
    }

    /// Takes `m` out of its room; returns the member that moved into its
    /// index (whose membership must be told). The last local member leaving
    /// makes the delivery stop listening.
    pub fn leave(&mut self, m: Membership) -> Option<ConnId> {
        let name = self.rooms.get(m.room).map(|r| r.name.clone());
        let moved = self.rooms.leave(m);
        if let Some(name) = name {
            if self.rooms.get(m.room).is_none() {
                self.delivery.room_closed(name);
            }
        }
        moved
    }

    /// Queues a chat text message (already valid UTF-8) from `sender`, a
    /// member of `room` with identity `user` (raw JSON), for decoding.
    pub fn chat(&mut self, room: RoomId, sender: ConnId, user: Option<&Arc<str>>, text: &[u8]) {
        // Redis publishes by name, and the room may be gone by the time the
        // message is published (its last member sent it and left).
        let name = match self.delivery.publishes_by_name() {
            true => self.rooms.get(room).map(|r| r.name.clone()),
            false => None,
        };
        self.batch.push(room, name, sender, user.cloned(), text);
    }

    /// Whether the batch should go to the decoders before the iteration ends.
    pub fn batch_is_full(&self) -> bool {
        self.batch.bytes() >= BATCH_BYTES
    }

    /// Hands the batch to the workers, or decodes it here; outcomes that are
    /// ready are appended to `outcomes`, in order.
    pub fn dispatch(&mut self, outcomes: &mut Vec<Outcome>) {
        if self.batch.is_empty() {
            return;
        }
        match self.pool.as_mut() {
            Some(pool) if pool.in_flight() > 0 || self.batch.len() >= self.inline_decode_below => {
                if pool.is_saturated() {
                    // Memory stays bounded when clients outpace the decoders.
                    pool.collect(true, |o| outcomes.extend(o));
                }
                pool.submit(&mut self.batch);
            }
            _ => {
                decode_batch(&self.batch, self.encoding, outcomes);
                self.batch = Batch::default();
            }
        }
    }

    /// Appends the outcomes the workers have finished, in order.
    pub fn collect(&mut self, outcomes: &mut Vec<Outcome>) {
        if let Some(pool) = self.pool.as_mut() {
            pool.collect(false, |o| outcomes.extend(o));
        }
    }

    /// Dispatches the batch and waits for everything at the workers: what
    /// was accepted before a shutdown is delivered before anyone's 1001.
    pub fn finish(&mut self, outcomes: &mut Vec<Outcome>) {
        self.dispatch(outcomes);
        if let Some(pool) = self.pool.as_mut() {
            pool.drain(|o| outcomes.extend(o));
        }
    }

    pub fn decode_batches_in_flight(&self) -> usize {
        self.pool.as_ref().map_or(0, WorkerPool::in_flight)
    }

    /// `POST /publish/<room>/` with its body: every message, all or none.
    pub fn publish(&mut self, room: &str, body: &[u8]) -> Result<Published, Rejection> {
        let messages = publish::parse_body(body)?;
        let local = self.rooms.find(room);
        let name = local.and_then(|id| self.rooms.get(id)).map(|r| &r.name);
        if self
            .delivery
            .publish_batch(room, name, &messages, self.max_message)?
        {
            return Ok(Published::Sent {
                count: messages.len(),
            });
        }
        let frames = messages
            .iter()
            .map(|raw| Frame::from(chat::broadcast_frame(raw)))
            .collect();
        Ok(Published::Local {
            room: local,
            frames,
        })
    }
}
