//! Batched sends through io_uring: one `io_uring_enter` for a whole
//! iteration's worth of single-frame writes.
//!
//! At low load nearly every delivery is one small frame to one socket, and
//! the kernel entry and exit around each `send` (with this CPU's
//! mitigations) is a large share of its cost. When the loop flushes, every
//! connection whose queue holds exactly one frame gets an `IORING_OP_SEND`;
//! they are submitted together, [`RING_ENTRIES`] at a time. Queues of several
//! frames (a busy loop) keep the vectored `writev`, which already carries
//! many messages per syscall.
//!
//! Invariants:
//! - Every submission points into a frame owned by its connection's send
//!   queue. A batch is submitted and *all* its completions are collected
//!   before any is acted on, and before `flush_ring` returns; so no frame is
//!   freed, and no connection closed, while the kernel may still read it.
//! - Sends carry `MSG_DONTWAIT`: a full socket buffer completes at once with
//!   `EAGAIN` or a short count, never parks a send inside the kernel. The
//!   connection then waits for WRITABLE exactly as after a short `writev`.
//! - A connection is in a batch at most once (the dirty list holds each key
//!   once), so completions map one-to-one to connections.
//! - If `io_uring_enter` itself fails, the entries it did not take were
//!   never sent: their connections go through the ordinary path, and the
//!   ring is given up for the rest of the run.

use super::*;
use crate::config::IoUringMode;
use io_uring::{opcode, types, IoUring, Probe};
use std::os::fd::AsRawFd;

/// Sends per submission. 512 keeps the rings small (about 50 KiB, mapped
/// once) while a 5,000-member room still needs only ten `io_uring_enter`s.
pub const RING_ENTRIES: u32 = 512;

pub(super) struct SendRing {
    ring: IoUring,
    /// Keys of the batch being submitted, in submission order.
    keys: Vec<u32>,
    /// (key, result) of the batch's completions.
    done: Vec<(u32, i32)>,
}

impl SendRing {
    /// A ring for `mode`, or `None` when it is off or (in `auto`) the kernel
    /// refuses one; `on` turns the refusal into an error. Call it on the
    /// thread that will submit: the ring is single-issuer.
    pub(super) fn for_mode(mode: IoUringMode) -> io::Result<Option<SendRing>> {
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
            keys: Vec::with_capacity(RING_ENTRIES as usize),
            done: Vec::with_capacity(RING_ENTRIES as usize),
        })
    }

    /// Submits the queued entries and waits for every one's completion,
    /// filling `done`. On `Err`, entries without a completion were not sent.
    fn submit_all(&mut self) -> io::Result<()> {
        let want = self.keys.len();
        self.done.clear();
        while self.done.len() < want {
            let result = self.ring.submit_and_wait(want - self.done.len());
            self.done.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data() as u32, c.result())),
            );
            match result {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Server {
    /// Sends the lone frame of every connection in `dirty` that has one
    /// through the ring, and leaves in `dirty` only the connections that need
    /// the ordinary path (several frames queued, or the ring failed).
    pub(super) fn flush_ring(&mut self, dirty: &mut Vec<u32>) {
        let Some(mut ring) = self.ring.take() else {
            return;
        };
        let mut rest = 0;
        let mut next = 0;
        let mut failed = None;
        while next < dirty.len() && failed.is_none() {
            ring.keys.clear();
            {
                let mut sq = ring.ring.submission();
                while next < dirty.len() && !sq.is_full() {
                    let key = dirty[next];
                    next += 1;
                    let Some(conn) = self.conns.get(key as usize) else {
                        continue;
                    };
                    let Some(buf) = conn.tx.sole_frame() else {
                        dirty[rest] = key;
                        rest += 1;
                        continue;
                    };
                    let entry = opcode::Send::new(
                        types::Fd(conn.stream.as_raw_fd()),
                        buf.as_ptr(),
                        // A frame is at most --max-message-size plus a header,
                        // far under 4 GiB; a longer one would be sent in parts.
                        buf.len().min(u32::MAX as usize) as u32,
                    )
                    .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(u64::from(key));
                    // SAFETY: the buffer is the queue's front frame, which
                    // stays alive and in place until this batch's completions
                    // are all collected (see the module's invariants).
                    unsafe { sq.push(&entry).expect("the queue was checked not full") };
                    ring.keys.push(key);
                }
            }
            if ring.keys.is_empty() {
                continue;
            }
            self.metrics.io_uring_submits += 1;
            if let Err(e) = ring.submit_all() {
                failed = Some(e);
            }
            for i in 0..ring.done.len() {
                let (key, res) = ring.done[i];
                self.on_ring_send(key, res);
            }
            if failed.is_some() {
                // Entries with no completion were never taken by the kernel.
                for i in 0..ring.keys.len() {
                    let key = ring.keys[i];
                    if !ring.done.iter().any(|&(k, _)| k == key) {
                        dirty[rest] = key;
                        rest += 1;
                    }
                }
            }
        }
        if let Some(e) = failed {
            warn!("io_uring failed ({e}); writing to clients with send/writev from now on");
            // Whatever the kernel did not take is dropped with the ring.
            while next < dirty.len() {
                dirty[rest] = dirty[next];
                rest += 1;
                next += 1;
            }
        } else {
            self.ring = Some(ring);
        }
        dirty.truncate(rest);
    }

    /// Acts on one send's completion as `flush` acts on a `write`'s result.
    fn on_ring_send(&mut self, key: u32, res: i32) {
        self.metrics.io_uring_sends += 1;
        if !self.conns.contains(key as usize) {
            return;
        }
        if res > 0 {
            let bytes = res as usize;
            self.count_sent(bytes);
            if self.conns[key as usize].tx.consumed(bytes) {
                self.after_drained(key);
            } else {
                // A short send means the socket buffer is full.
                self.want_writable(key);
            }
        } else if res == -libc::EAGAIN {
            self.want_writable(key);
        } else {
            let e = if res == 0 {
                io::Error::from(io::ErrorKind::WriteZero)
            } else {
                io::Error::from_raw_os_error(-res)
            };
            debug!("write error on connection {key}: {e}");
            self.abort(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

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
        let frame = [0x81u8, 2, b'h', b'i'];
        let entry = opcode::Send::new(types::Fd(full.as_raw_fd()), frame.as_ptr(), 4)
            .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            .build()
            .user_data(7);
        // SAFETY: `frame` outlives the submission, which completes below.
        unsafe { ring.ring.submission().push(&entry).unwrap() };
        assert_eq!(ring.ring.submit().unwrap(), 1);
        let done: Vec<(u64, i32)> = ring
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        assert_eq!(done, vec![(7, -libc::EAGAIN)], "no waiting in the kernel");
    }

    #[test]
    fn a_batch_reports_each_send_by_key() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peers = Vec::new();
        let mut sockets = Vec::new();
        for _ in 0..3 {
            peers.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
            sockets.push(listener.accept().unwrap().0);
        }
        let mut ring = SendRing::new().unwrap();
        let frames: [&[u8]; 3] = [b"a", b"bb", b"ccc"];
        for (i, (s, f)) in sockets.iter().zip(frames).enumerate() {
            let entry = opcode::Send::new(types::Fd(s.as_raw_fd()), f.as_ptr(), f.len() as u32)
                .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                .build()
                .user_data(10 + i as u64);
            // SAFETY: `frames` outlives the batch, which completes in submit_all.
            unsafe { ring.ring.submission().push(&entry).unwrap() };
            ring.keys.push(10 + i as u32);
        }
        ring.submit_all().unwrap();
        let mut done = ring.done.clone();
        done.sort();
        assert_eq!(done, vec![(10, 1), (11, 2), (12, 3)]);
        for (p, f) in peers.iter_mut().zip(frames) {
            let mut got = vec![0u8; f.len()];
            std::io::Read::read_exact(p, &mut got).unwrap();
            assert_eq!(got, f);
        }
    }
}
