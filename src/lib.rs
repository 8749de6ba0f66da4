//! roomcast: a single-binary WebSocket chat-room relay, compatible with the
//! Django Channels `ChatConsumer` (`ws/chat/<room>/`, `{"message": ...}`).
//!
//! The crate is layered; each folder's `mod.rs` says what it may import, and
//! nothing imports upward (ARCHITECTURE.md has the picture):
//!
//! - [`wire`]: the WebSocket and HTTP/1.1 codecs: frames, masking, UTF-8,
//!   message assembly, close codes, permessage-deflate, request heads and
//!   responses;
//! - [`chat`]: the `{"message": ...}` contract, the publish API's contract
//!   and the embedded chat page;
//! - [`relay`]: rooms, send queues of shared frames, ordered JSON decoding
//!   on worker threads, and [`relay::delivery`], the one switch between a
//!   single node and the Redis backplane;
//! - [`session`]: one connection's life as a sans-IO machine: bytes,
//!   timeouts and write completions in; effects and bytes to send out;
//! - [`backplane`]: the Redis pub/sub backplane: its codecs and link state
//!   machine (sans-IO) and its thread, which owns the Redis sockets;
//! - [`auth`]: who may join and write, and how much: join tokens, the join
//!   policy, the rate bucket, the per-IP count (sans-IO), and the
//!   `--auth-url` client, whose thread owns the back end's sockets;
//! - [`tls`]: `wss://` and `https://` with rustls: loading (and reloading)
//!   the certificate, and a per-connection TLS state driven from the loop's
//!   shared buffers (sans-IO);
//! - [`server`]: the mio event loop, which owns every client socket and
//!   drives the sessions; [`server::sys`] holds every libc call and
//!   `unsafe` block.
//!
//! Everything but `server/`, `backplane/thread.rs` and
//! `auth/backend_thread.rs` is sans-IO: no
//! sockets, no threads (the JSON workers aside, which take and return plain
//! data), no clock reads. [`config`] parses the flags and [`settings`] turns
//! them, once, into what the loop uses.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod auth;
pub mod backplane;
pub mod chat;
pub mod config;
pub mod logger;
pub mod metrics;
pub mod relay;
pub mod server;
pub mod session;
pub mod settings;
pub mod tls;
pub mod wire;

pub use config::{Config, IoUringMode};
pub use server::{RunSummary, Server, ShutdownHandle};
pub use settings::Settings;
