//! Per-connection state, kept small: an idle open connection holds its
//! socket, a few integers and empty (unallocated) buffers. The size of
//! [`Conn`] is a design number, checked in a test.

use crate::message::Decoder;
use crate::room::Membership;
use crate::sendq::SendQueue;
use mio::net::TcpStream;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the HTTP request head (bounded by the handshake timeout).
    Handshake,
    /// A WebSocket connection exchanging messages.
    Open,
    /// The relay sent a close frame and waits for the client's, reading and
    /// discarding until it comes or the close timeout passes.
    Closing,
    /// Both close frames are exchanged (or the peer's was answered): flush,
    /// then close the socket.
    Closed,
    /// A final answer is queued (an HTTP response, or the close frame that
    /// fails a connection after a wire fault): flush, then half-close and
    /// linger. Input is discarded.
    Responding,
    /// Half-closed after an HTTP response; waiting for the client's EOF so
    /// that closing does not reset the connection under its unread reply.
    Lingering,
}

/// The WebSocket endpoint of an open connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Echo,
    Chat,
}

/// Flag bits in [`Conn::flags`].
pub mod flag {
    /// In the loop's dirty list: flush at the end of this iteration.
    pub const DIRTY: u8 = 1;
    /// Registered for WRITABLE (only while the kernel buffer is full).
    pub const WRITE_INTEREST: u8 = 2;
    /// A ping was sent since the last byte received.
    pub const PINGED: u8 = 4;
    /// Keep the connection for another request after this HTTP response.
    pub const KEEP_ALIVE: u8 = 8;
    /// Accepted over --max-connections: answered 503 and closed.
    pub const OVER_LIMIT: u8 = 16;
    /// The peer sent EOF while its answer was still being flushed.
    pub const PEER_EOF: u8 = 32;
}

/// Tick value meaning "no timer armed".
pub const NO_TIMER: u32 = u32::MAX;

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub generation: u32,
    pub phase: Phase,
    pub endpoint: Endpoint,
    pub flags: u8,
    /// Tick when the current phase began.
    pub since: u32,
    /// Tick of the last byte received.
    pub last_rx: u32,
    /// Due tick of this connection's one live timer entry.
    pub timer_due: u32,
    pub membership: Option<Membership>,
    /// Unconsumed input: the request head, or a partial frame header or
    /// control frame. Empty and unallocated most of the time.
    pub rx: Vec<u8>,
    pub decoder: Decoder,
    pub tx: SendQueue,
}

impl Conn {
    pub fn new(stream: TcpStream, generation: u32, now: u32) -> Conn {
        Conn {
            stream,
            generation,
            phase: Phase::Handshake,
            endpoint: Endpoint::Echo,
            flags: 0,
            since: now,
            last_rx: now,
            timer_due: NO_TIMER,
            membership: None,
            rx: Vec::new(),
            decoder: Decoder::default(),
            tx: SendQueue::default(),
        }
    }

    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub fn set(&mut self, f: u8) {
        self.flags |= f;
    }

    pub fn clear(&mut self, f: u8) {
        self.flags &= !f;
    }

    /// Gives back input buffer memory once nothing is pending in it.
    pub fn release_buffers(&mut self) {
        if self.rx.is_empty() && self.rx.capacity() > 0 {
            self.rx = Vec::new();
        }
        self.decoder.release_buffer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-connection design number: 19,500 idle connections must fit
    /// in well under 512 bytes each, allocator overhead and the slab entry
    /// included.
    #[test]
    fn conn_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 192, "Conn grew to {size} bytes");
        assert!(std::mem::size_of::<slab::Slab<Conn>>() < 64);
    }
}
