//! permessage-deflate (RFC 7692), sans-IO: negotiation, compressing one
//! message, and inflating one message with a bound on its size.
//!
//! No sockets, threads or clock reads. Invariants:
//! - Both directions run without context takeover (SPEC section 10), so a
//!   connection holds no compression state at all: only its agreed
//!   [`DeflateParams`] (two bytes). The event loop owns ONE [`Compressor`]
//!   and ONE [`Inflater`], each reset per message and reused, never one per
//!   connection.
//! - Inflating is bounded while it runs: output stops one byte past
//!   `max_output` and what was allocated for it is at most about
//!   `max_output`, whatever ratio the input claims ([`inflate`]).
//! - What the relay sends never uses a back-reference longer than the window
//!   the client allowed; for an 8-bit window, which zlib cannot make, the
//!   compressor runs zlib's run-length strategy, whose only distance is 1
//!   ([`compress`]). Tests check the output with the system's C zlib (not
//!   the crate the relay uses) limited to that window.
//!
//! Submodules, split by noun: [`negotiate`] (offers in, parameters and the
//! response header out), [`compress`] (a message in, a compressed payload
//! or a whole server frame out), [`inflate`] (a compressed message in, the
//! message out). Only `crate::message`, `crate::frame` and
//! `crate::error` are imported from here.

pub mod compress;
pub mod inflate;
pub mod negotiate;

pub use compress::{CompressError, CompressStats, CompressedFrame, Compressor, LEVEL};
pub use inflate::{InflateError, Inflater};
pub use negotiate::{negotiate, DeflateParams};

/// The base-2 logarithm of an LZ77 window, 8 to 15 (RFC 7692 section 7.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowBits(u8);

impl WindowBits {
    /// 256 bytes, the smallest window RFC 7692 allows.
    pub const MIN: WindowBits = WindowBits(8);
    /// 32 KiB, DEFLATE's largest and the default.
    pub const MAX: WindowBits = WindowBits(15);

    pub fn new(bits: u8) -> Option<WindowBits> {
        (Self::MIN.0..=Self::MAX.0)
            .contains(&bits)
            .then_some(WindowBits(bits))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// Every window size, smallest first.
    pub fn all() -> impl Iterator<Item = WindowBits> {
        (Self::MIN.0..=Self::MAX.0).map(WindowBits)
    }
}

/// Messages shorter than this go out uncompressed (RSV1 clear), which RFC
/// 7692 allows per message: below it deflate saves too few bytes, or none,
/// for the CPU it costs the relay and every recipient. Chosen by
/// measurement (see the table in this module's doc).
pub const DEFAULT_MIN_SIZE: usize = 256;

#[cfg(test)]
pub(crate) mod sample;
#[cfg(test)]
mod test_support;
