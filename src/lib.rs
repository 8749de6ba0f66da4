//! roomcast: a single-binary WebSocket chat-room relay, compatible with the
//! Django Channels `ChatConsumer` (`ws/chat/<room>/`, `{"message": ...}`).
//!
//! The crate is split into a sans-IO protocol core, with no sockets,
//! threads or clock reads, and the event loop that drives it:
//!
//! - [`http`]: request heads, routing and upgrade validation;
//! - [`frame`], [`mask`]: frame headers and fast unmasking;
//! - [`utf8`], [`message`]: incremental UTF-8 checks and message assembly;
//! - [`close`], [`error`]: close codes and the fault-to-code table;
//! - [`deflate`]: permessage-deflate negotiation, compression and bounded
//!   inflation (RFC 7692);
//! - [`chat`]: the `{"message": ...}` contract and its error frames;
//! - [`room`], [`sendq`], [`timer`]: rooms, shared-frame send queues and the
//!   timing wheel (pure data structures);
//! - [`worker`]: ordered batches of JSON decoding on worker threads;
//! - [`server`], [`conn`]: the mio event loop, the only code with sockets.

pub mod backplane;
pub mod chat;
pub mod close;
pub mod config;
pub mod conn;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod http;
pub mod limits;
pub mod logger;
pub mod mask;
pub mod message;
pub mod metrics;
pub mod msgpack;
pub mod pages;
pub mod publish;
pub mod redis_url;
pub mod resp;
pub mod room;
pub mod sendq;
pub mod server;
pub mod shard;
pub mod timer;
pub mod utf8;
pub mod worker;

pub use config::{Config, IoUringMode};
pub use server::{RunSummary, Server, ShutdownHandle};
