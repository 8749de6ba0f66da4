//! What lies between a connection's socket and its session: nothing, or
//! TLS. A [`TlsLink`] holds rustls's per-connection state ([`TlsConn`]) and
//! the ciphertext on its way to the socket.
//!
//! Invariants:
//! - The session's queue holds plaintext frames (shared `Arc`s, encoded
//!   once per broadcast); each recipient's copy is sealed on its own, in as
//!   few records as its queue allows ([`SEAL_BATCH`] at a time).
//! - A batch is sealed only when the previous one is entirely in the
//!   kernel, and the session learns its plaintext was written only then
//!   ([`TlsLink::sealed`]): so the session's queue (and its flow control)
//!   still counts what waits as ciphertext, and a session that ends with
//!   its last frame does so after that frame is on the wire.
//! - Meanwhile those frames are committed: every session call is told how
//!   many bytes (`Cx::committed`), and the queue never discards (a slow
//!   consumer's close) or replaces (a pong) them, so the count reported
//!   written later is exactly what was sealed. (Dropping them tripped the
//!   queue's `n <= queued` check in `tests/wss.rs`, and in a release build
//!   would have counted the close frame queued behind as written.)
//! - The handshake's flights, tickets and alerts go out through the same
//!   queue, in the order rustls made them, ahead of any later record.
//! - An idle link holds no buffer: `tx` is empty and unallocated, and the
//!   loop shares one plaintext, one gather and one output buffer among all.

use crate::relay::sendq::SendQueue;
use crate::tls::TlsConn;

/// Plaintext sealed per batch: big enough that a busy queue fills whole
/// 16 KiB records, small enough that one connection's ciphertext stays
/// modest while the kernel takes it.
pub const SEAL_BATCH: usize = 64 * 1024;

pub struct TlsLink {
    pub conn: TlsConn,
    /// Ciphertext not yet taken by the socket.
    pub tx: SendQueue,
    /// Plaintext bytes of the session's queue sealed into `tx`; the
    /// session is told they were written once `tx` drains.
    pub sealed: usize,
}

impl TlsLink {
    pub fn new(conn: TlsConn) -> TlsLink {
        TlsLink {
            conn,
            tx: SendQueue::default(),
            sealed: 0,
        }
    }
}

impl std::fmt::Debug for TlsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TlsLink({:?}, {} bytes to send)",
            self.conn.stage(),
            self.tx.queued()
        )
    }
}
