//! The loop's handle on each connection, and the slab that holds them.
//!
//! A [`Connection`] pairs a socket with its [`Session`] and the little the
//! loop itself must remember about it (is it in the dirty list, is it
//! registered for WRITABLE, when does its timer fire). It is addressed by a
//! [`ConnId`]: its slab key plus a generation, which is also in its mio
//! token, so an event or a timer for a connection that ended never reaches
//! the slot's next owner. Its size is a design number, checked in a test:
//! an idle connection costs this struct, its slab slot and nothing else.

use crate::relay::ConnId;
use crate::server::transport::TlsLink;
use crate::session::{Session, Tick};
use mio::net::TcpStream;
use mio::Token;
use slab::Slab;
use std::ops::{Index, IndexMut};

/// Tokens below this are the loop's own (listener, waker, signals).
pub const FIRST_CONN_TOKEN: usize = 16;

#[derive(Debug)]
pub struct Connection {
    pub socket: TcpStream,
    pub session: Session,
    /// Half of the [`ConnId`]; the slab key is the other.
    pub generation: u32,
    /// Due tick of this connection's one live timer entry, so a later,
    /// earlier deadline adds an entry and a later one does not.
    pub timer_due: Tick,
    /// In the loop's dirty list: flushed at the end of this iteration.
    pub dirty: bool,
    /// Registered for WRITABLE: only while the kernel's buffer is full.
    pub write_interest: bool,
    /// Accepted over `--max-connections`, only to be answered 503.
    pub over_limit: bool,
    /// Not read while its own queue is over `--max-send-queue`; holds
    /// whether its peer had shut its side, for when reading resumes.
    pub read_paused: Option<bool>,
    /// TLS between the socket and the session (`--tls-cert`); boxed, as it
    /// is large (rustls's state) and absent without TLS.
    pub tls: Option<Box<TlsLink>>,
}

/// Every connection the loop holds.
#[derive(Debug, Default)]
pub struct Connections {
    slab: Slab<Connection>,
    next_generation: u32,
    /// Connections held only to be answered 503.
    pub over_limit: usize,
    /// Connections whose session is open: what `/healthz` calls connections.
    pub open: usize,
}

impl Connections {
    /// Stores a new connection; its id's token is what it registers with.
    pub fn insert(
        &mut self,
        socket: TcpStream,
        session: Session,
        tls: Option<Box<TlsLink>>,
    ) -> ConnId {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let key = self.slab.insert(Connection {
            socket,
            session,
            generation,
            timer_due: Tick::NEVER,
            dirty: false,
            write_interest: false,
            over_limit: false,
            read_paused: None,
            tls,
        });
        ConnId {
            key: key as u32,
            generation,
        }
    }

    /// The id the next [`Connections::insert`] will return, for registering
    /// the socket before it is stored.
    pub fn next_id(&self) -> ConnId {
        ConnId {
            key: self.slab.vacant_key() as u32,
            generation: self.next_generation.wrapping_add(1),
        }
    }

    pub fn get(&self, id: ConnId) -> Option<&Connection> {
        self.slab
            .get(id.key as usize)
            .filter(|c| c.generation == id.generation)
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.slab
            .get_mut(id.key as usize)
            .filter(|c| c.generation == id.generation)
    }

    pub fn remove(&mut self, id: ConnId) -> Option<Connection> {
        self.get(id)?;
        Some(self.slab.remove(id.key as usize))
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every id, for shutdown.
    pub fn ids(&self) -> Vec<ConnId> {
        self.slab
            .iter()
            .map(|(key, c)| ConnId {
                key: key as u32,
                generation: c.generation,
            })
            .collect()
    }
}

impl Index<ConnId> for Connections {
    type Output = Connection;

    /// For ids the loop knows are live (room members, the connection an
    /// event is being handled for); a stale id is a bug, not input.
    fn index(&self, id: ConnId) -> &Connection {
        let c = &self.slab[id.key as usize];
        debug_assert_eq!(c.generation, id.generation, "stale connection id");
        c
    }
}

impl IndexMut<ConnId> for Connections {
    fn index_mut(&mut self, id: ConnId) -> &mut Connection {
        let c = &mut self.slab[id.key as usize];
        debug_assert_eq!(c.generation, id.generation, "stale connection id");
        c
    }
}

/// A connection's mio token: key and generation, above the loop's own.
pub fn token(id: ConnId) -> Token {
    Token(((id.generation as usize) << 32) | (id.key as usize + FIRST_CONN_TOKEN))
}

/// The connection a token names, if it is one (it may have ended since).
pub fn id_of(token: Token) -> Option<ConnId> {
    let key = (token.0 & 0xFFFF_FFFF).checked_sub(FIRST_CONN_TOKEN)?;
    Some(ConnId {
        key: key as u32,
        generation: (token.0 >> 32) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-connection design number: 19,500 idle connections must fit
    /// in about 300 bytes each, allocator overhead and the slab entry
    /// included.
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 192, "Connection grew to {size} bytes");
        assert!(std::mem::size_of::<Slab<Connection>>() < 64);
    }

    #[test]
    fn tokens_round_trip_and_skip_the_loops_own() {
        let id = ConnId {
            key: 7,
            generation: 0xDEAD_BEEF,
        };
        assert_eq!(id_of(token(id)), Some(id));
        assert_eq!(id_of(Token(3)), None);
    }
}
