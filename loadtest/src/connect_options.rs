//! How every client of a run connects, whatever the mode: how many attempts at once, how
//! long each may take, which local addresses the sockets use, the `Origin` header, the
//! permessage-deflate offer, TLS trust and join tokens.
//! The load modes and the soak mode take the same options (one clap struct flattened
//! into both), so they are resolved once, here.

use crate::deflate::DeflateOffer;
use crate::flag_check::positive;
use crate::tls::TlsTrust;
use crate::token::TokenMinter;

/// The connect options, as given and then [`checked`](ConnectOptions::checked).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectOptions {
    /// Connection attempts in flight at once.
    pub concurrency: usize,
    /// TCP connect plus handshake allowance per client, seconds.
    pub timeout_s: f64,
    /// Client sockets are bound round-robin to 127.0.0.1 .. 127.0.0.N (loopback targets).
    pub source_addrs: usize,
    /// `Origin` header: `None` for `http://<host:port>` of each URL, `Some("")` for none.
    pub origin: Option<String>,
    /// permessage-deflate: offered, and whether messages go out compressed.
    pub deflate: DeflateOffer,
    /// How `wss://` servers are trusted.
    pub tls: TlsTrust,
    /// Join tokens: each upgrade URL gets `?token=...` for its room.
    pub token: Option<TokenMinter>,
}

impl Default for ConnectOptions {
    /// The command line's defaults.
    fn default() -> ConnectOptions {
        ConnectOptions {
            concurrency: 256,
            timeout_s: 10.0,
            source_addrs: 8,
            origin: None,
            deflate: DeflateOffer::default(),
            tls: TlsTrust::default(),
            token: None,
        }
    }
}

impl ConnectOptions {
    /// The options with every value in range: a refusal names its flag.
    pub fn checked(&self) -> Result<ConnectOptions, String> {
        Ok(ConnectOptions {
            concurrency: self.concurrency.max(1),
            timeout_s: positive("connect-timeout", self.timeout_s, false)?,
            // 127.0.0.1 .. 127.0.0.250: each is a local address on Linux.
            source_addrs: self.source_addrs.clamp(1, 250),
            origin: self.origin.clone(),
            deflate: self.deflate,
            tls: self.tls.clone(),
            token: self.token.clone(),
        })
    }

    /// The per-client allowance in microseconds.
    pub fn timeout_us(&self) -> u64 {
        crate::clock::secs_to_us(self.timeout_s)
    }
}
