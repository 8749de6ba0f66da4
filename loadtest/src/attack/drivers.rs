//! The attackers' traffic, as [`StepDriver`]s the measured step gives a turn on every
//! pass of its loop: the burst senders, and the flooder.
//!
//! Both write "as fast as the socket takes it": they keep at most [`LOW_WATER`] bytes
//! queued in the harness and top the queue up whenever the socket took it, so what
//! limits them is the relay's reading, not a schedule; and the bounded top-up leaves the
//! loop free to read the members' deliveries between turns.

use super::plan::FloodMode;
use crate::client::Phase;
use crate::clock::now_us;
use crate::engine::{Engine, StepDriver};
use crate::wsframe::{OP_PING, OP_TEXT};

/// Bytes an attacker keeps queued in the harness at most.
pub const LOW_WATER: usize = 64 << 10;

/// Burst senders: each writes its messages as fast as its socket takes them. The
/// messages are counted like any chat message (expected by every member open at the
/// time), so the readers' loss is the verdict.
pub struct BurstDriver {
    senders: Vec<usize>,
    /// Messages each sender has still to write.
    left: Vec<u32>,
    payload: usize,
    pub sent: u64,
    pub first_at: Option<u64>,
    /// When the last message was handed to its socket.
    pub done_at: Option<u64>,
}

impl BurstDriver {
    pub fn new(senders: Vec<usize>, messages: u32, payload: usize) -> BurstDriver {
        let left = vec![messages; senders.len()];
        BurstDriver {
            senders,
            left,
            payload,
            sent: 0,
            first_at: None,
            done_at: None,
        }
    }

    pub fn senders(&self) -> usize {
        self.senders.len()
    }
}

impl StepDriver for BurstDriver {
    fn drive(&mut self, engine: &mut Engine, now: u64) -> Option<u64> {
        self.first_at.get_or_insert(now);
        for (k, &id) in self.senders.iter().enumerate() {
            while self.left[k] > 0 && engine.client(id).queued() < LOW_WATER {
                if !engine.send_chat(id, now_us(), self.payload) {
                    // Closed: the rest of its burst is never written (and the report
                    // says so).
                    self.left[k] = 0;
                    break;
                }
                self.left[k] -= 1;
                self.sent += 1;
            }
        }
        if self.done_at.is_none() && self.finished() {
            self.done_at = Some(now_us());
        }
        // A queue above the low-water mark drains on the socket's writable events,
        // which wake the loop: no timer needed.
        None
    }

    fn finished(&self) -> bool {
        self.left.iter().all(|&n| n == 0)
    }
}

/// The flooder: one guest client writing `mode`'s frames as fast as its socket takes
/// them, until the window ends or the server closes it.
pub struct FloodDriver {
    id: usize,
    mode: FloodMode,
    payload: usize,
    pub frames: u64,
    pub bytes: u64,
    pub started_at: Option<u64>,
    /// When it was found closed.
    pub ended_at: Option<u64>,
}

impl FloodDriver {
    pub fn new(id: usize, mode: FloodMode, payload: usize) -> FloodDriver {
        FloodDriver {
            id,
            mode,
            payload,
            frames: 0,
            bytes: 0,
            started_at: None,
            ended_at: None,
        }
    }

    /// Queues one flood frame; its wire bytes.
    fn queue_one(&mut self, engine: &mut Engine) -> usize {
        let before = engine.client(self.id).queued();
        match self.mode {
            FloodMode::Ping => engine.client_mut(self.id).queue_frame(OP_PING, &[]),
            FloodMode::Echo => engine.client_mut(self.id).queue_frame(OP_TEXT, &[]),
            FloodMode::Chat => {
                // Stamped with the flooder's own sender id: its echoes and the members'
                // copies are told apart from the members' traffic.
                let _ = engine.queue_message(self.id, self.payload);
            }
        }
        engine.client(self.id).queued().saturating_sub(before)
    }
}

impl StepDriver for FloodDriver {
    fn drive(&mut self, engine: &mut Engine, now: u64) -> Option<u64> {
        if engine.client(self.id).phase != Phase::Open {
            if self.started_at.is_some() && self.ended_at.is_none() {
                self.ended_at = Some(now);
            }
            return None;
        }
        self.started_at.get_or_insert(now);
        while engine.client(self.id).queued() < LOW_WATER {
            let n = self.queue_one(engine);
            if n == 0 {
                break;
            }
            self.frames += 1;
            self.bytes += n as u64;
        }
        if !engine.flush_client(self.id) {
            self.ended_at = Some(now);
            return None;
        }
        // The socket took everything: it can take more at once.
        (engine.client(self.id).queued() == 0).then_some(now)
    }
}
