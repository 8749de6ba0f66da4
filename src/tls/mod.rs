//! TLS at the edge (SPEC section 8): `wss://` and `https://` on the relay's
//! one port, with rustls.
//!
//! Sans-IO, like the rest of the protocol core: no sockets, no threads, no
//! clock reads here (rustls reads the clock itself, for ticket lifetimes).
//! - [`config`]: `--tls-cert`/`--tls-key` into an `Arc<ServerConfig>`, at
//!   start and on SIGHUP ([`CertFiles::load`]);
//! - [`conn`]: [`TlsConn`], one connection's TLS state, fed ciphertext from
//!   the loop's shared read buffer and asked to seal batches of frames.
//!
//! Invariants (pinned by `tests/tls.rs` and `tests/tls_memory.rs`):
//! - An idle open TLS connection holds no buffer: rustls's unbuffered
//!   connection and its keys, 3,665 bytes of heap with its box (below).
//! - Bytes that are not a TLS handshake fail the connection on the first
//!   byte, as `not_tls`, with nothing sent back.
//! - Work and output per call are linear in the input; a half-received
//!   flight or record kept between reads is at most [`conn::MAX_PENDING`].
//! - A reload never disturbs a connection: each holds the `Arc` of the
//!   config it started with. Tickets survive reloads (one key ring).
//!
//! # Why rustls's unbuffered API
//!
//! Heap held per idle connection after a handshake and one message each
//! way (`tests/tls_memory.rs`, glibc `mallinfo2`, so aws-lc's C allocations
//! count too; TLS 1.3 AES-128-GCM; box included):
//!
//! | provider  | `TlsConn` (unbuffered) | `ServerConnection` (buffered) |
//! |-----------|-----------------------:|------------------------------:|
//! | ring      |                3,472 B |                       7,638 B |
//! | aws-lc-rs |                3,665 B |                       7,829 B |
//!
//! The buffered connection keeps a 4 KiB deframer buffer from its first
//! read on (rustls shrinks it to 4 KiB, never to nothing, and
//! `set_buffer_limit` only caps the send side), plus its plaintext queues.
//! The unbuffered one decrypts in the caller's buffer and keeps nothing but
//! state: 1,120 bytes inline (`size_of::<TlsConn>()`), two expanded AEAD
//! keys (560 bytes each), the TLS 1.3 key schedule (about 860 bytes in two
//! allocations) and two empty queues that keep 96 bytes each. That is over
//! SPEC's goal of 2 KiB above a plaintext connection: meeting it would need
//! rustls to shed its handshake state, or a record layer of our own around
//! rustls's `dangerous_into_kernel_connection` secrets (as kTLS does),
//! which this module does not attempt (never hand-written crypto).
//! ChaCha20 costs about the same (both providers size an AEAD key for
//! its largest algorithm). A stateful session cache would add 249 bytes per cached
//! session; tickets add nothing per client.
//!
//! # Why aws-lc-rs
//!
//! `benches/tls.rs` (criterion, fat LTO) on the shared 2-core box (load
//! average 4 to 11 during the runs, so rows vary up to 2x between runs:
//! ranges are two or three runs). Handshake rows time only the server.
//!
//! | per operation                               | ring          | aws-lc-rs     |
//! |---------------------------------------------|--------------:|--------------:|
//! | full TLS 1.3 handshake, ECDSA P-256, X25519 | 196-290 us    | 126-315 us    |
//! | full TLS 1.3 handshake, RSA 2048, X25519    | 1.03-1.80 ms  | 0.49-0.88 ms  |
//! | same with X25519MLKEM768, ECDSA / RSA       | not offered   | 180-318 us / 0.60-1.33 ms |
//! | seal one 100 B frame, AES-128-GCM           | 288-661 ns    | 286-494 ns    |
//! | seal one 16 KiB frame, AES-128-GCM          | 4.3-8.8 us    | 4.7-5.8 us    |
//! | seal one 100 B frame, ChaCha20-Poly1305     | 416-834 ns    | 467-692 ns    |
//! | seal one 16 KiB frame, ChaCha20-Poly1305    | 12.1-18.4 us  | 11.3-21.4 us  |
//! | 10 frames of 100 B: one call / ten calls    | 0.64 / 3.99 us | 0.75 / 3.90 us |
//! | open one 100 B record / one 16 KiB record   | 423 ns / 3.6 us | 428 ns / 3.0 us |
//! | heap per idle connection                    | 3,472 B       | 3,665 B       |
//! | clean release build of rustls + provider    | 26 s          | 73 s          |
//! | size of a minimal binary using it           | 1.3 MB        | 3.5 MB        |
//!
//! Symmetric crypto is a tie; aws-lc-rs signs RSA twice as fast; ring
//! saves 193 bytes per connection and 47 s of clean build. What decides:
//! aws-lc-rs offers the X25519MLKEM768 hybrid post-quantum key exchange
//! that Chrome, Firefox and Safari offer first (about 50-100 us more per
//! full handshake), rustls makes it its default and deprecates *ring*'s
//! provider in 0.23.48 for lacking it, and it builds with gcc alone
//! (aws-lc-sys 0.47 needs no cmake, nasm, clang or Go on x86-64 Linux:
//! built here on a machine with none of them). *ring* stays a
//! dev-dependency feature so the comparison can be rerun; the relay's
//! binary does not contain it. Switching back is [`provider`] and
//! [`ticketer`] plus one Cargo feature.
//!
//! Cost per delivery: each recipient's copy of a frame is sealed on its
//! own, about 0.3 us for a 100-byte chat frame on a quiet core (the
//! plaintext relay spends about 0.6 us per delivery in all), and 75 ns
//! per frame when a flush seals ten queued frames in one call, which is
//! why [`TlsConn::encrypt`] takes every frame queued for a connection.

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
