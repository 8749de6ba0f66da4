//! Per-connection send queues of shared, already-encoded frames.
//!
//! A broadcast is encoded once into a [`Frame`]; every recipient's queue
//! holds a reference to the same bytes (no per-recipient copy or encode).
//! [`SendQueue::fill_iov`] hands the loop everything queued for one vectored
//! write, up to [`MAX_IOV`] frames per syscall. Invariants: `queued` is the
//! exact number of unsent bytes; `offset` is how much of the front frame was
//! already written, and a frame once partly written is never dropped (the
//! byte stream must stay a valid frame sequence even when the rest of the
//! queue is discarded for a slow consumer). A queue that never held a frame
//! holds no memory; a drained one keeps at most [`KEEP_SLOTS`] slots.
//!
//! A queue is charged what it really costs: [`SendQueue::cost`] adds
//! [`FRAME_OVERHEAD`] per frame to its bytes, so a flood of tiny frames
//! (empty pongs, empty echoes) is bounded as tightly as one big one. And it
//! can hold a client's unanswered pongs to one ([`SendQueue::push_pong`]):
//! RFC 6455 section 5.5.3 lets an endpoint answer only the latest ping.
//!
//! A transport may take bytes from the front without writing them yet (TLS
//! seals them into a record the kernel has not taken): those `committed`
//! bytes, which the caller passes in, count as started. They are never
//! discarded or replaced, or the bytes later reported written would not be
//! the bytes queued.

pub use crate::wire::frame::Frame;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Frames per `writev`: enough to empty a busy queue in one call, far under
/// the kernel's IOV_MAX (1024).
pub const MAX_IOV: usize = 64;

/// Queue slots a drained queue keeps allocated.
const KEEP_SLOTS: usize = 8;

/// What one queued frame costs besides its bytes: its slot in the queue (a
/// fat pointer, 16 bytes) and, for a frame of its own such as a pong, its
/// `Arc` allocation (two counters plus the allocator's rounding).
pub const FRAME_OVERHEAD: usize = 64;

/// The first byte of a pong (FIN set, opcode 0xA).
const PONG: u8 = 0x8A;

#[derive(Debug, Default)]
pub struct SendQueue {
    frames: VecDeque<Frame>,
    /// Bytes of the front frame already written. A frame is at most
    /// `--max-message-size` plus a header, so it fits 32 bits.
    offset: u32,
    /// Unsent bytes. Bounded by `--max-send-queue` (at most 1 GiB) plus what
    /// one fan-out adds before the slow-consumer check, so 32 bits suffice;
    /// the narrow fields keep an idle connection small.
    queued: u32,
}

/// What a [`SendQueue::write_to`] call achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub bytes: usize,
    /// Everything queued is now in the kernel.
    pub drained: bool,
}

impl SendQueue {
    pub fn push(&mut self, frame: Frame) {
        self.queued = self.queued.saturating_add(len32(&frame));
        self.frames.push_back(frame);
    }

    /// Queues a pong; with `replace`, it takes the place of an unanswered
    /// pong the socket has not started, if one is at the tail: only the
    /// latest ping needs an answer. The first `committed` unsent bytes are
    /// started too (see the module doc).
    pub fn push_pong(&mut self, pong: Frame, replace: bool, committed: usize) {
        let last_starts_at = self.queued
            - self.frames.back().map_or(0, |f| {
                len32(f)
                    - if self.frames.len() == 1 {
                        self.offset
                    } else {
                        0
                    }
            });
        let started =
            (self.frames.len() == 1 && self.offset > 0) || (last_starts_at as usize) < committed;
        if let Some(last) = self.frames.back_mut() {
            if replace && !started && last.first() == Some(&PONG) {
                self.queued = self.queued - len32(last) + len32(&pong);
                *last = pong;
                return;
            }
        }
        self.push(pong);
    }

    /// Unsent bytes.
    pub fn queued(&self) -> usize {
        self.queued as usize
    }

    /// What the queue costs in memory: its bytes plus [`FRAME_OVERHEAD`]
    /// per frame. This is what `--max-send-queue` bounds.
    pub fn cost(&self) -> usize {
        self.queued as usize + self.frames.len() * FRAME_OVERHEAD
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops every frame not yet started, keeping a partly written front
    /// frame so the stream stays well-formed, and every frame that overlaps
    /// the first `committed` unsent bytes (see the module doc). Returns the
    /// frames dropped.
    pub fn discard_unstarted(&mut self, committed: usize) -> usize {
        let committed = committed.min(self.queued as usize);
        let mut keep = 0;
        let mut kept_bytes = 0usize;
        for (i, f) in self.frames.iter().enumerate() {
            let unsent = f.len() - if i == 0 { self.offset as usize } else { 0 };
            let started = (i == 0 && self.offset > 0) || kept_bytes < committed;
            if !started {
                break;
            }
            keep += 1;
            kept_bytes += unsent;
        }
        let dropped = self.frames.len() - keep;
        self.frames.truncate(keep);
        self.queued = kept_bytes as u32;
        dropped
    }

    /// Fills `iov` with the unsent bytes, oldest frame first, as many
    /// frames as fit; returns how many slices it filled.
    pub fn fill_iov<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, f) in self.frames.iter().take(iov.len()).enumerate() {
            iov[i] = IoSlice::new(if i == 0 {
                &f[self.offset as usize..]
            } else {
                f
            });
            n += 1;
        }
        n
    }

    /// Writes as much as the socket takes. `Ok` with `drained: false` means
    /// the socket would block; `Err` is a broken connection.
    pub fn write_to<W: Write>(&mut self, mut sink: W) -> io::Result<Written> {
        let mut total = 0;
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = self.fill_iov(&mut slices);
            let result = if n == 1 {
                sink.write(&slices[0])
            } else {
                sink.write_vectored(&slices[..n])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Written {
                        bytes: total,
                        drained: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.release();
        Ok(Written {
            bytes: total,
            drained: true,
        })
    }

    /// The only queued frame and how much of it was already written, when
    /// exactly one is queued (what a batched single-buffer send can take).
    pub fn sole_frame(&self) -> Option<(&Frame, usize)> {
        match self.frames.len() {
            1 => Some((&self.frames[0], self.offset as usize)),
            _ => None,
        }
    }

    /// Records that the first `n` unsent bytes were written elsewhere (by a
    /// batched send); returns whether the queue is now empty.
    pub fn consumed(&mut self, n: usize) -> bool {
        debug_assert!(n <= self.queued());
        self.advance(n.min(self.queued()));
        if self.frames.is_empty() {
            self.release();
            true
        } else {
            false
        }
    }

    fn advance(&mut self, n: usize) {
        let mut n = n as u32;
        self.queued -= n;
        while n > 0 {
            let front_left = len32(&self.frames[0]) - self.offset;
            if n >= front_left {
                n -= front_left;
                self.frames.pop_front();
                self.offset = 0;
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }

    /// A drained queue keeps a small allocation (one per connection that
    /// ever received something, 128 bytes) because freeing it would cost a
    /// malloc and a free per recipient of the next broadcast; what a burst
    /// grew beyond that is given back.
    fn release(&mut self) {
        if self.frames.capacity() > KEEP_SLOTS {
            self.frames = VecDeque::new();
        }
    }
}

/// A frame's length in the queue's 32-bit counts.
fn len32(frame: &Frame) -> u32 {
    debug_assert!(frame.len() <= u32::MAX as usize);
    frame.len() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `budget` bytes per call, then blocks.
    struct Trickle {
        out: Vec<u8>,
        per_call: usize,
        calls_left: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            self.calls += 1;
            let mut room = self.per_call;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room);
                self.out.extend_from_slice(&b[..take]);
                room -= take;
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frame(bytes: &[u8]) -> Frame {
        use std::sync::Arc;
        Arc::from(bytes)
    }

    #[test]
    fn a_lone_frame_is_offered_whole_then_from_where_it_stopped() {
        let mut q = SendQueue::default();
        let unsent = |q: &SendQueue| q.sole_frame().map(|(f, at)| f[at..].to_vec());
        assert_eq!(unsent(&q), None);
        q.push(frame(b"abcdef"));
        assert_eq!(unsent(&q), Some(b"abcdef".to_vec()));
        assert!(!q.consumed(2), "a short send leaves the rest queued");
        assert_eq!((unsent(&q), q.queued()), (Some(b"cdef".to_vec()), 4));
        q.push(frame(b"gh"));
        assert_eq!(unsent(&q), None, "two frames take the vectored path");
        let mut sink = Trickle {
            out: vec![],
            per_call: 1 << 20,
            calls_left: 1,
            calls: 0,
        };
        assert!(q.write_to(&mut sink).unwrap().drained);
        assert_eq!(sink.out, b"cdefgh", "the vectored write resumes mid-frame");
        q.push(frame(b"ij"));
        assert!(q.consumed(2));
        assert!(q.is_empty() && q.queued() == 0);
    }

    #[test]
    fn many_frames_go_out_in_one_call() {
        let mut q = SendQueue::default();
        for i in 0..10u8 {
            q.push(frame(&[i; 3]));
        }
        let mut sink = Trickle {
            out: vec![],
            per_call: 1 << 20,
            calls_left: 10,
            calls: 0,
        };
        let w = q.write_to(&mut sink).unwrap();
        assert_eq!(
            w,
            Written {
                bytes: 30,
                drained: true
            }
        );
        assert_eq!(sink.calls, 1);
        assert_eq!(q.queued(), 0);
    }

    #[test]
    fn partial_writes_resume_mid_frame() {
        let mut q = SendQueue::default();
        let data: Vec<u8> = (0..100).collect();
        for chunk in data.chunks(7) {
            q.push(frame(chunk));
        }
        let mut sink = Trickle {
            out: vec![],
            per_call: 5,
            calls_left: 3,
            calls: 0,
        };
        let w = q.write_to(&mut sink).unwrap();
        assert_eq!(
            w,
            Written {
                bytes: 15,
                drained: false
            }
        );
        assert_eq!(q.queued(), 85);
        sink.calls_left = usize::MAX;
        assert!(q.write_to(&mut sink).unwrap().drained);
        assert_eq!(sink.out, data);
    }

    #[test]
    fn discarding_keeps_the_frame_in_flight() {
        let mut q = SendQueue::default();
        q.push(frame(&[1; 10]));
        q.push(frame(&[2; 10]));
        q.push(frame(&[3; 10]));
        let mut sink = Trickle {
            out: vec![],
            per_call: 4,
            calls_left: 1,
            calls: 0,
        };
        q.write_to(&mut sink).unwrap();
        assert_eq!(q.discard_unstarted(0), 2);
        assert_eq!(q.queued(), 6);
        q.push(frame(&[9; 2]));
        sink.calls_left = usize::MAX;
        sink.per_call = 100;
        q.write_to(&mut sink).unwrap();
        assert_eq!(sink.out, [&[1u8; 10][..], &[9; 2]].concat());
        // Nothing started: everything goes.
        let mut q = SendQueue::default();
        q.push(frame(&[1; 10]));
        assert_eq!(q.discard_unstarted(0), 1);
        assert_eq!(q.queued(), 0);
    }

    /// Bytes a transport has committed (TLS sealed them, the kernel has
    /// not taken the record yet) are as good as started: a slow consumer's
    /// discard keeps their frames, a pong among them is not replaced, and
    /// reporting them written afterwards leaves exactly the rest.
    #[test]
    fn committed_bytes_are_never_discarded_or_replaced() {
        let mut q = SendQueue::default();
        q.push(frame(&[1; 10]));
        q.push(frame(&[2; 10]));
        q.push(frame(&[3; 10]));
        // 15 bytes sealed: the first two frames are committed.
        assert_eq!(q.discard_unstarted(15), 1);
        assert_eq!(q.queued(), 20);
        q.push(frame(&[9; 2]));
        assert!(!q.consumed(15));
        assert_eq!(q.queued(), 7);
        let mut sink = Trickle {
            out: vec![],
            per_call: 100,
            calls_left: usize::MAX,
            calls: 0,
        };
        assert!(q.write_to(&mut sink).unwrap().drained);
        assert_eq!(sink.out, [&[2u8; 5][..], &[9; 2]].concat());
        // A sealed pong stays; the next one queues behind it.
        let mut q = SendQueue::default();
        q.push_pong(frame(&[PONG, 1, 1]), true, 0);
        q.push_pong(frame(&[PONG, 2, 2, 2]), true, 3);
        assert_eq!(q.len(), 2, "the sealed pong was not replaced");
        assert!(!q.consumed(3));
        assert_eq!(q.queued(), 4);
        // Once written, the pending one may be replaced again.
        q.push_pong(frame(&[PONG, 0]), true, 0);
        assert_eq!((q.len(), q.queued()), (1, 2));
    }

    #[test]
    fn one_pending_pong_and_the_real_cost() {
        let mut q = SendQueue::default();
        for i in 0..=250u8 {
            q.push_pong(frame(&[PONG, 1, i]), true, 0);
        }
        assert_eq!(q.len(), 1, "only the latest ping is answered");
        assert_eq!(q.fill_iov(&mut [IoSlice::new(&[]); 4]), 1);
        assert_eq!(q.sole_frame().unwrap().0[2], 250);
        assert_eq!(q.cost(), 3 + FRAME_OVERHEAD);
        // Behind another frame, a pong is queued after it.
        q.push(frame(b"\x81\x01x"));
        q.push_pong(frame(&[PONG, 0]), true, 0);
        q.push_pong(frame(&[PONG, 0]), true, 0);
        assert_eq!(q.len(), 3);
        assert_eq!(q.cost(), 3 + 3 + 2 + 3 * FRAME_OVERHEAD);
        q.push_pong(frame(&[PONG, 0]), false, 0);
        assert_eq!(q.len(), 4, "every ping answered while the client reads");
        // A pong the socket has started is never replaced.
        let mut q = SendQueue::default();
        q.push_pong(frame(&[PONG, 1, 7]), true, 0);
        assert!(!q.consumed(1));
        q.push_pong(frame(&[PONG, 1, 8]), true, 0);
        assert_eq!(q.len(), 2);
    }
}
