//! Socket reads and writes, and nothing else: what one `read` or one
//! `write`/`writev` call did. What the bytes mean, and what a connection
//! does next, is its session's.

use crate::relay::sendq::{SendQueue, MAX_IOV};
use crate::session::Session;
use mio::net::TcpStream;
use std::io::{self, IoSlice, Read as _, Write as _};

/// The shared read buffer: every connection reads into this one, so idle
/// connections pay nothing for reading.
pub const SCRATCH_SIZE: usize = 64 * 1024;

/// Bytes read from one connection per iteration before others get a turn,
/// so one flooder cannot starve the rest.
pub const READ_BUDGET: usize = 1 << 20;

/// What one read did.
pub enum Read {
    /// `n` bytes are at the front of the buffer.
    Data(usize),
    /// The client shut its side.
    Eof,
    /// Nothing more to read until the next readiness event.
    WouldBlock,
    Failed(io::Error),
}

/// Reads what `socket` has into `buf`.
pub fn read(socket: &TcpStream, buf: &mut [u8]) -> Read {
    loop {
        return match (&*socket).read(buf) {
            Ok(0) => Read::Eof,
            Ok(n) => Read::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Read::Failed(e),
        };
    }
}

/// Writes as much of `session`'s queue as one call takes: one `write` for
/// one frame, one `writev` of up to [`MAX_IOV`] frames otherwise. `Ok(0)`
/// never means "took nothing": that is `WouldBlock`.
pub fn write(socket: &TcpStream, session: &Session) -> io::Result<usize> {
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    let n = session.transmit(&mut iov);
    write_iov(socket, &iov[..n])
}

/// The same for a queue of ciphertext (a TLS connection's).
pub fn write_queue(socket: &TcpStream, queue: &SendQueue) -> io::Result<usize> {
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    let n = queue.fill_iov(&mut iov);
    write_iov(socket, &iov[..n])
}

fn write_iov(socket: &TcpStream, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    let n = iov.len();
    loop {
        let result = match n {
            0 => return Ok(0),
            1 => (&*socket).write(&iov[0]),
            _ => (&*socket).write_vectored(&iov[..n]),
        };
        return match result {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other,
        };
    }
}
