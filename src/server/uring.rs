//! Batched sends through io_uring: one `io_uring_enter` for a whole
//! iteration's worth of single-frame writes.
//!
//! At low load nearly every delivery is one small frame to one socket, and
//! the kernel entry and exit around each `send` (with this CPU's
//! mitigations) is a large share of its cost. When the loop flushes, every
//! connection whose queue holds exactly one frame gets an `IORING_OP_SEND`,
//! submitted together, [`RING_ENTRIES`] at a time. Queues of several frames
//! keep the vectored `writev`, which already carries many messages per call.
//!
//! The ring knows only descriptors, bytes and the caller's tags; which
//! connection a tag is, and what a result means for it, is the loop's.
//! Invariants:
//! - Every submission holds a reference to its frame (see
//!   [`sys::push_send`]) until *all* of its batch's completions are
//!   collected in [`SendRing::submit`], so no frame is freed while the
//!   kernel may still read it, whatever the loop does with the results.
//! - Sends carry `MSG_DONTWAIT`: a full socket buffer completes at once with
//!   `EAGAIN` or a short count, and never parks a send inside the kernel.
//! - If `io_uring_enter` itself fails, the entries it did not take were
//!   never sent: [`SendRing::submit`] says which, and the loop gives the
//!   ring up for the rest of the run.

use crate::config::IoUringMode;
use crate::server::sys;
use crate::wire::frame::Frame;
use io_uring::{opcode, IoUring, Probe};
use log::info;
use std::io;
use std::os::fd::RawFd;

/// Sends per submission. 512 keeps the rings small (about 50 KiB, mapped
/// once) while a 5,000-member room still needs only ten `io_uring_enter`s.
pub const RING_ENTRIES: u32 = 512;

pub struct SendRing {
    ring: IoUring,
    /// The frames of the batch being submitted, alive until it completes.
    held: Vec<Frame>,
    /// Tags of the batch, in submission order.
    tags: Vec<u64>,
    /// `(tag, result)` of the batch's completions.
    done: Vec<(u64, i32)>,
}

/// What [`SendRing::submit`] reports.
pub struct Submitted<'a> {
    /// `(tag, result)`: bytes sent, or a negative errno.
    pub done: &'a [(u64, i32)],
    /// Set when `io_uring_enter` failed: then the tags in `not_sent` were
    /// never taken by the kernel.
    pub failed: Option<io::Error>,
    pub not_sent: Vec<u64>,
}

impl SendRing {
    /// A ring for `mode`, or `None` when it is off or (in `auto`) the kernel
    /// refuses one; `on` turns the refusal into an error. Call it on the
    /// thread that will submit: the ring is single-issuer.
    pub fn for_mode(mode: IoUringMode) -> io::Result<Option<SendRing>> {
        if mode == IoUringMode::Off {
            return Ok(None);
        }
        match SendRing::new() {
            Ok(ring) => {
                info!("writes to clients go through io_uring, up to {RING_ENTRIES} per submission");
                Ok(Some(ring))
            }
            Err(e) if mode == IoUringMode::Auto => {
                info!("io_uring is not available ({e}); writing to clients with send/writev");
                Ok(None)
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("--io-uring on: the kernel refused an io_uring ({e})"),
            )),
        }
    }

    fn new() -> io::Result<SendRing> {
        // Single issuer and cooperative task running (Linux 6.0) spare the
        // kernel locking and interrupts; older kernels get a plain ring.
        let ring = match IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_submit_all()
            .build(RING_ENTRIES)
        {
            Ok(ring) => ring,
            Err(_) => IoUring::builder().build(RING_ENTRIES)?,
        };
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::Send::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "IORING_OP_SEND is not supported",
            ));
        }
        Ok(SendRing {
            ring,
            held: Vec::with_capacity(RING_ENTRIES as usize),
            tags: Vec::with_capacity(RING_ENTRIES as usize),
            done: Vec::with_capacity(RING_ENTRIES as usize),
        })
    }

    /// Queues a send of `frame[offset..]` on `fd`, tagged `tag`; false when
    /// the batch is full (submit it first).
    pub fn push(&mut self, fd: RawFd, frame: &Frame, offset: usize, tag: u64) -> bool {
        if !sys::push_send(&mut self.ring, fd, frame, offset, tag, &mut self.held) {
            return false;
        }
        self.tags.push(tag);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Submits the batch and waits for every completion (each is immediate:
    /// `MSG_DONTWAIT`).
    pub fn submit(&mut self) -> Submitted<'_> {
        let want = self.tags.len();
        self.done.clear();
        let mut failed = None;
        while self.done.len() < want {
            let result = self.ring.submit_and_wait(want - self.done.len());
            self.done
                .extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            match result {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let not_sent = match failed {
            Some(_) => self
                .tags
                .iter()
                .copied()
                .filter(|t| !self.done.iter().any(|&(d, _)| d == *t))
                .collect(),
            None => Vec::new(),
        };
        // Every completion is in: the kernel reads none of these any more
        // (on failure the ring is dropped with its unsubmitted entries).
        self.held.clear();
        self.tags.clear();
        Submitted {
            done: &self.done,
            failed,
            not_sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// The loop waits for every completion of a batch, so a send to a full
    /// socket must complete during the submission (MSG_DONTWAIT), not wait
    /// inside the kernel for the peer to read.
    #[test]
    fn a_send_to_a_full_socket_completes_at_once_with_eagain() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (full, _) = listener.accept().unwrap();
        full.set_nonblocking(true).unwrap();
        let chunk = [0u8; 65536];
        loop {
            match (&full).write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let mut ring = SendRing::new().expect("io_uring on this kernel");
        let frame = Frame::from(&[0x81u8, 2, b'h', b'i'][..]);
        assert!(ring.push(full.as_raw_fd(), &frame, 0, 7));
        let submitted = ring.submit();
        assert!(submitted.failed.is_none());
        assert_eq!(
            submitted.done,
            &[(7, -libc::EAGAIN)],
            "no waiting in the kernel"
        );
    }

    #[test]
    fn a_batch_reports_each_send_by_tag() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peers = Vec::new();
        let mut sockets = Vec::new();
        for _ in 0..3 {
            peers.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
            sockets.push(listener.accept().unwrap().0);
        }
        let mut ring = SendRing::new().unwrap();
        let frames: [Frame; 3] = [
            Frame::from(&b"xa"[..]),
            Frame::from(&b"bb"[..]),
            Frame::from(&b"ccc"[..]),
        ];
        // The first frame is half written already: only "a" goes.
        let offsets = [1, 0, 0];
        for (i, s) in sockets.iter().enumerate() {
            assert!(ring.push(s.as_raw_fd(), &frames[i], offsets[i], 10 + i as u64));
        }
        let mut done = ring.submit().done.to_vec();
        done.sort();
        assert_eq!(done, vec![(10, 1), (11, 2), (12, 3)]);
        for ((p, f), at) in peers.iter_mut().zip(&frames).zip(offsets) {
            let mut got = vec![0u8; f.len() - at];
            std::io::Read::read_exact(p, &mut got).unwrap();
            assert_eq!(got, &f[at..]);
        }
    }
}
