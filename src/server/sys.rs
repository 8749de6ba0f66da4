//! Every libc call and every `unsafe` block of the relay, in one small room.
//!
//! The rest of the crate is safe Rust. What needs the C library directly is
//! here: the listen backlog and `TCP_NODELAY` on the listener, the open-file
//! limit, and putting a send on the io_uring submission queue. Each `unsafe`
//! block says why it is sound (`clippy::undocumented_unsafe_blocks` is
//! denied at the crate root).

use crate::wire::frame::Frame;
use io_uring::{opcode, types, IoUring};
use mio::net::TcpListener;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Descriptors kept back for the listener, epoll, the waker, the signal
/// pipe, the spare descriptor, worker threads and logging.
const RESERVED_FDS: u64 = 64;

/// Raises the listen backlog of a listening socket (mio listens with the
/// standard library's 128; Linux updates the backlog of a listening socket
/// when listen() is called again).
pub fn set_listen_backlog(listener: &TcpListener, backlog: u32) -> io::Result<()> {
    let backlog = backlog.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: listen() on a descriptor the listener owns and keeps open.
    if unsafe { libc::listen(listener.as_raw_fd(), backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `TCP_NODELAY` on a listening socket; Linux copies it to the sockets
/// it accepts, so it is one setsockopt in all rather than one per connection
/// (a test below checks that the kernel does).
pub fn set_nodelay(listener: &TcpListener) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a descriptor the listener owns, with a c_int
    // option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The soft and hard open-file limits.
fn open_file_limit() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed in.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// Raises the soft open-file limit to the hard limit; returns the new soft
/// limit (or the old one if raising was refused).
pub fn raise_open_file_limit() -> u64 {
    let Some(lim) = open_file_limit() else {
        return 1024;
    };
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed in.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

/// How many client connections the current soft open-file limit allows.
pub fn connection_capacity() -> usize {
    let soft = open_file_limit().map_or(1024, |l| l.rlim_cur);
    soft.saturating_sub(RESERVED_FDS).max(1) as usize
}

/// Queues a send of `frame[offset..]` on `fd` (`MSG_DONTWAIT`, so a full
/// socket completes at once instead of parking in the kernel). The frame is
/// cloned into `held`, which keeps the bytes alive and in place: the ring
/// (`uring.rs`) empties `held` only after every completion of the batch is
/// collected. Returns false when the submission queue is full.
pub fn push_send(
    ring: &mut IoUring,
    fd: RawFd,
    frame: &Frame,
    offset: usize,
    user_data: u64,
    held: &mut Vec<Frame>,
) -> bool {
    let mut sq = ring.submission();
    if sq.is_full() {
        return false;
    }
    let bytes = &frame[offset.min(frame.len())..];
    let entry = opcode::Send::new(
        types::Fd(fd),
        bytes.as_ptr(),
        // A frame is at most --max-message-size plus a header, far under
        // 4 GiB; a longer one would be sent in parts.
        bytes.len().min(u32::MAX as usize) as u32,
    )
    .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    .build()
    .user_data(user_data);
    held.push(frame.clone());
    // SAFETY: the entry points into `frame`'s heap allocation, which a clone
    // in `held` keeps alive and unmoved until the batch's completions are
    // all collected (see above); the queue was checked not full.
    unsafe { sq.push(&entry).is_ok() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The loop relies on accepted sockets inheriting TCP_NODELAY.
    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        set_nodelay(&listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let accepted = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }
}
