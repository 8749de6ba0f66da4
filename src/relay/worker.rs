//! JSON decoding off the event loop, in ordered batches.
//!
//! The loop gathers every chat text message of one iteration into a
//! [`Batch`] (one arena of bytes plus a small record per message), so the
//! hand-off costs one channel send and one wake-up per iteration, not per
//! message. Workers return [`Outcome`]s tagged with the batch's sequence
//! number; [`WorkerPool`] hands them back strictly in sequence order, so the
//! room order is the arrival order whatever thread finished first (SPEC
//! section 2). With no workers the loop calls [`decode_batch`] itself.

use crate::chat;
use crate::relay::room::RoomId;
use crate::relay::sendq::Frame;
use crate::relay::ConnId;
use crossbeam_channel::{Receiver, Sender};
use mio::Waker;
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Clone, Debug)]
struct Job {
    room: RoomId,
    /// The room's name, when the message goes to the Redis backplane: the
    /// room may be gone by the time the message is published (its last
    /// member sent it and left), yet other nodes' members must get it.
    name: Option<Arc<str>>,
    sender: ConnId,
    /// The sender's identity (raw JSON), added to what its message becomes.
    user: Option<Arc<str>>,
    start: u32,
    end: u32,
}

/// What decoding produces for a valid chat message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// The broadcast WebSocket frame, for a single node.
    #[default]
    Frame,
    /// The msgpack Channels event, for the Redis backplane; refused when its
    /// delivered form would pass `max_message` bytes.
    Msgpack { max_message: usize },
}

/// The chat messages of one loop iteration, in arrival order.
#[derive(Debug, Default)]
pub struct Batch {
    seq: u64,
    text: Vec<u8>,
    jobs: Vec<Job>,
}

impl Batch {
    /// Appends one message; `text` is already validated UTF-8. `name` is
    /// needed with [`Encoding::Msgpack`].
    pub fn push(
        &mut self,
        room: RoomId,
        name: Option<Arc<str>>,
        sender: ConnId,
        user: Option<Arc<str>>,
        text: &[u8],
    ) {
        let start = self.text.len() as u32;
        self.text.extend_from_slice(text);
        self.jobs.push(Job {
            room,
            name,
            sender,
            user,
            start,
            end: self.text.len() as u32,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// The arena's bytes; the loop checks this against a cap so one batch
    /// never outgrows the u32 offsets.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }
}

/// The result of decoding one message.
#[derive(Debug)]
pub enum Outcome {
    Broadcast {
        room: RoomId,
        frame: Frame,
    },
    /// A msgpack Channels event for the backplane.
    Publish {
        room: Arc<str>,
        sender: ConnId,
        payload: Vec<u8>,
    },
    Error {
        sender: ConnId,
        frame: Frame,
    },
}

/// Decodes every message of a batch, in order.
pub fn decode_batch(batch: &Batch, encoding: Encoding, out: &mut Vec<Outcome>) {
    for job in &batch.jobs {
        let bytes = &batch.text[job.start as usize..job.end as usize];
        // The loop only batches text that passed UTF-8 validation.
        let text = std::str::from_utf8(bytes).unwrap_or("");
        out.push(match (encoding, &job.name) {
            (Encoding::Msgpack { max_message }, Some(name)) => {
                publish_outcome(text, job.user.as_deref(), name, job.sender, max_message)
            }
            _ => match chat::process_from(text, job.user.as_deref()) {
                Ok(frame) => Outcome::Broadcast {
                    room: job.room,
                    frame: Frame::from(frame),
                },
                Err(frame) => Outcome::Error {
                    sender: job.sender,
                    frame: Frame::from(frame),
                },
            },
        });
    }
}

fn publish_outcome(
    text: &str,
    user: Option<&str>,
    room: &Arc<str>,
    sender: ConnId,
    max_message: usize,
) -> Outcome {
    let raw = match chat::decode(text) {
        Ok(raw) => raw,
        Err(e) => {
            return Outcome::Error {
                sender,
                frame: Frame::from(chat::error_frame(&e)),
            }
        }
    };
    match crate::backplane::encode_publish(raw, user, max_message) {
        Ok(payload) => Outcome::Publish {
            room: room.clone(),
            sender,
            payload,
        },
        Err(refusal) => Outcome::Error {
            sender,
            frame: Frame::from(chat::error_text_frame(&refusal.reason)),
        },
    }
}

struct Done {
    seq: u64,
    outcomes: Vec<Outcome>,
}

/// Decoding threads plus the reorder buffer that restores batch order.
pub struct WorkerPool {
    jobs: Option<Sender<Batch>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
    next_seq: u64,
    /// Results for `next_apply`, `next_apply + 1`, ... as they arrive.
    reorder: VecDeque<Option<Vec<Outcome>>>,
    next_apply: u64,
    in_flight: usize,
    max_in_flight: usize,
}

impl WorkerPool {
    pub fn new(
        threads: usize,
        encoding: Encoding,
        waker: Arc<Waker>,
    ) -> std::io::Result<WorkerPool> {
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<Batch>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            let waker = waker.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("roomcast-json-{i}"))
                    .spawn(move || {
                        for batch in job_rx.iter() {
                            let mut outcomes = Vec::with_capacity(batch.len());
                            decode_batch(&batch, encoding, &mut outcomes);
                            if done_tx
                                .send(Done {
                                    seq: batch.seq,
                                    outcomes,
                                })
                                .is_err()
                            {
                                return;
                            }
                            // A failed wake means the loop is gone; nothing to do.
                            let _ = waker.wake();
                        }
                    })?,
            );
        }
        Ok(WorkerPool {
            jobs: Some(job_tx),
            done: done_rx,
            threads: handles,
            next_seq: 0,
            reorder: VecDeque::new(),
            next_apply: 0,
            in_flight: 0,
            max_in_flight: threads * 4 + 4,
        })
    }

    /// Sends a batch to the workers; `batch` is left empty for reuse.
    pub fn submit(&mut self, batch: &mut Batch) {
        let mut full = std::mem::take(batch);
        full.seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight += 1;
        if let Some(jobs) = &self.jobs {
            // Workers only exit when this sender is dropped.
            let _ = jobs.send(full);
        }
    }

    /// Whether the loop should wait for results before submitting more, so
    /// memory stays bounded when clients outpace the decoders.
    pub fn is_saturated(&self) -> bool {
        self.in_flight >= self.max_in_flight
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Collects finished batches and calls `apply` for each in sequence
    /// order. With `wait`, blocks until at least one more batch is applied
    /// (when any is in flight).
    pub fn collect(&mut self, wait: bool, mut apply: impl FnMut(Vec<Outcome>)) {
        let target = if wait && self.in_flight > 0 {
            self.next_apply + 1
        } else {
            self.next_apply
        };
        loop {
            let done = if self.next_apply < target {
                match self.done.recv() {
                    Ok(d) => d,
                    Err(_) => return,
                }
            } else {
                match self.done.try_recv() {
                    Ok(d) => d,
                    Err(_) => return,
                }
            };
            let slot = (done.seq - self.next_apply) as usize;
            if self.reorder.len() <= slot {
                self.reorder.resize_with(slot + 1, || None);
            }
            self.reorder[slot] = Some(done.outcomes);
            while let Some(Some(_)) = self.reorder.front() {
                let outcomes = self.reorder.pop_front().flatten().expect("checked above");
                self.next_apply += 1;
                self.in_flight -= 1;
                apply(outcomes);
            }
        }
    }

    /// Waits for every batch in flight and applies them in order.
    pub fn drain(&mut self, mut apply: impl FnMut(Vec<Outcome>)) {
        while self.in_flight > 0 {
            self.collect(true, &mut apply);
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId {
            slot: 0,
            generation: std::num::NonZeroU32::MIN,
        }
    }

    #[test]
    fn results_come_back_in_submission_order() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let mut pool = WorkerPool::new(3, Encoding::Frame, waker).unwrap();
        let sender = ConnId {
            key: 1,
            generation: 1,
        };
        for b in 0..200 {
            let mut batch = Batch::default();
            for m in 0..(b % 7 + 1) {
                batch.push(
                    room(),
                    None,
                    sender,
                    None,
                    format!(r#"{{"message": [{b}, {m}]}}"#).as_bytes(),
                );
            }
            pool.submit(&mut batch);
        }
        let mut seen = Vec::new();
        pool.drain(|outcomes| {
            for o in outcomes {
                if let Outcome::Broadcast { frame, .. } = o {
                    let v: serde_json::Value = serde_json::from_slice(&frame[2..]).unwrap();
                    seen.push((
                        v["message"][0].as_u64().unwrap(),
                        v["message"][1].as_u64().unwrap(),
                    ));
                }
            }
        });
        let expected: Vec<(u64, u64)> = (0..200u64)
            .flat_map(|b| (0..(b % 7 + 1)).map(move |m| (b, m)))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn errors_go_to_the_sender() {
        let mut batch = Batch::default();
        let sender = ConnId {
            key: 9,
            generation: 3,
        };
        batch.push(room(), None, sender, None, b"nope");
        let mut out = Vec::new();
        decode_batch(&batch, Encoding::Frame, &mut out);
        assert!(matches!(&out[0], Outcome::Error { sender: s, .. } if *s == sender));
    }
}
