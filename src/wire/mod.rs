//! The wire: WebSocket and HTTP/1.1 codecs, sans-IO.
//!
//! Everything here takes bytes and returns parsed values, events and bytes
//! to send. Nothing here owns a socket, starts a thread or reads the clock,
//! and nothing here imports another folder of the crate: the wire is the
//! bottom layer, and everything above it may use it.
//!
//! - [`http`]: request heads, routing, upgrade validation (RFC 6455
//!   section 4.2) and the responses the relay writes;
//! - [`frame`], [`mask`]: frame headers (parse, never consuming on "need
//!   more"; encode) and fast unmasking;
//! - [`utf8`], [`message`]: incremental UTF-8 checks and message assembly
//!   from fragments and interleaved control frames, with the size limits
//!   checked from headers before payload is buffered;
//! - [`close`], [`error`]: close codes, and one error enum whose every
//!   variant maps to exactly one close code (SPEC section 3);
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation, compressing a
//!   message once for every recipient, and inflating with the output
//!   bounded while it is produced. The loop owns one compressor and one
//!   inflater; no connection holds either.

pub mod close;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod http;
pub mod mask;
pub mod message;
pub mod utf8;
