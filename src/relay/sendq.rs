//! Per-connection send queues of shared, already-encoded frames.
//!
//! A broadcast is encoded once into a [`Frame`]; every recipient's queue
//! holds a reference to the same bytes (no per-recipient copy or encode).
//! [`SendQueue::write_to`] sends everything queued with vectored writes, up
//! to [`MAX_IOV`] frames per syscall. Invariants: `queued` is the exact
//! number of unsent bytes; `offset` is how much of the front frame was
//! already written, and a frame once partly written is never dropped (the
//! byte stream must stay a valid frame sequence even when the rest of the
//! queue is discarded for a slow consumer). A queue that never held a frame
//! holds no memory; a drained one keeps at most [`KEEP_SLOTS`] slots.

pub use crate::wire::frame::Frame;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Frames per `writev`: enough to empty a busy queue in one call, far under
/// the kernel's IOV_MAX (1024).
pub const MAX_IOV: usize = 64;

/// Queue slots a drained queue keeps allocated.
const KEEP_SLOTS: usize = 8;

#[derive(Debug, Default)]
pub struct SendQueue {
    frames: VecDeque<Frame>,
    offset: usize,
    queued: usize,
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
        self.queued += frame.len();
        self.frames.push_back(frame);
    }

    /// Unsent bytes.
    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops every frame not yet started, keeping a partly written front
    /// frame so the stream stays well-formed. Returns the frames dropped.
    pub fn discard_unstarted(&mut self) -> usize {
        let keep = usize::from(self.offset > 0);
        let dropped = self.frames.len().saturating_sub(keep);
        self.frames.truncate(keep);
        self.queued = self.frames.front().map_or(0, |f| f.len() - self.offset);
        dropped
    }

    /// Fills `iov` with the unsent bytes, oldest frame first, as many
    /// frames as fit; returns how many slices it filled.
    pub fn fill_iov<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, f) in self.frames.iter().take(iov.len()).enumerate() {
            iov[i] = IoSlice::new(if i == 0 { &f[self.offset..] } else { f });
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
            1 => Some((&self.frames[0], self.offset)),
            _ => None,
        }
    }

    /// Records that the first `n` unsent bytes were written elsewhere (by a
    /// batched send); returns whether the queue is now empty.
    pub fn consumed(&mut self, n: usize) -> bool {
        debug_assert!(n <= self.queued);
        self.advance(n.min(self.queued));
        if self.frames.is_empty() {
            self.release();
            true
        } else {
            false
        }
    }

    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let front_left = self.frames[0].len() - self.offset;
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
        assert_eq!(q.discard_unstarted(), 2);
        assert_eq!(q.queued(), 6);
        q.push(frame(&[9; 2]));
        sink.calls_left = usize::MAX;
        sink.per_call = 100;
        q.write_to(&mut sink).unwrap();
        assert_eq!(sink.out, [&[1u8; 10][..], &[9; 2]].concat());
        // Nothing started: everything goes.
        let mut q = SendQueue::default();
        q.push(frame(&[1; 10]));
        assert_eq!(q.discard_unstarted(), 1);
        assert_eq!(q.queued(), 0);
    }
}
