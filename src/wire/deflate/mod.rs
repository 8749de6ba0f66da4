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
//! message out). From the rest of the crate only `message::DataKind`,
//! `frame` (header encoding), `close` and `error` are imported here.
//!
//! # The crate, by measurement
//!
//! `benches/deflate.rs` (`--features deflate-candidates` adds the other
//! crates) on realistic chat JSON (`sample.rs`), each codec's state made
//! once and reset per message. The box is shared (2 cores, load 2 to 9
//! while measuring), so criterion's means moved by up to 2x between runs;
//! the table is the minimum per message over 40 rounds
//! (`examples/deflate_rounds.rs`), which held within
//! 5% across runs (2026-12-06, rustc 1.95, zlib-rs 0.6.9, libdeflater
//! 1.26.1, miniz_oxide 0.8.9). Microseconds per message; the compressed
//! size in percent of the message.
//!
//! | codec | 64 B | 256 B | 1 KiB chat | 4 KiB | 64 KiB |
//! |---|---:|---:|---:|---:|---:|
//! | zlib-rs L1 compress | 2.1 (103%) | 3.3 (92%) | 5.3 (78%) | 12.2 (57%) | 157 (47%) |
//! | **zlib-rs L2 compress** | 5.0 (94%) | 7.4 (72%) | 12.1 (60%) | 23.2 (44%) | 236 (35%) |
//! | zlib-rs L4 compress | 5.1 (94%) | 7.7 (72%) | 13.0 (59%) | 27.1 (43%) | 903 (34%) |
//! | zlib-rs L6 compress | 5.1 (94%) | 7.7 (72%) | 13.4 (59%) | 28.5 (43%) | 1242 (33%) |
//! | libdeflate L1 compress | 4.3 (95%) | 5.1 (73%) | 6.7 (59%) | 12.8 (43%) | 144 (34%) |
//! | libdeflate L6 compress | 5.5 (95%) | 6.7 (74%) | 9.9 (59%) | 21.4 (43%) | 1225 (33%) |
//! | miniz_oxide L1 compress | 12.6 (91%) | 13.5 (73%) | 16.4 (61%) | 27.7 (49%) | 192 (43%) |
//! | miniz_oxide L6 compress | 13.0 (91%) | 15.2 (73%) | 21.7 (59%) | 41.2 (43%) | 3001 (33%) |
//! | **zlib-rs inflate** | 0.8 | 1.8 | 3.4 | 7.4 | 65 |
//! | libdeflate inflate | 2.4 | 3.1 | 4.3 | 7.1 | 51 |
//! | miniz_oxide inflate | 2.3 | 2.8 | 4.5 | 9.1 | 91 |
//!
//! zlib-rs (its safe Rust API: the engine of flate2's `zlib-rs` backend,
//! which adds a wrapper but hides the strategy the 8-bit window needs) at
//! level 2, because:
//! - only zlib(-rs) honours `server_max_window_bits` 9 to 14 and has a
//!   run-length strategy for 8; libdeflate and miniz_oxide always use a
//!   32 KiB window, so they could only serve clients that offer none;
//! - it inflates as a stream into a buffer it grows, so the bound holds
//!   while inflating; libdeflate is one-shot and needs the whole
//!   `--max-message-size` buffer up front, plus a copy of the input to add
//!   a final block;
//! - it ends messages with a sync flush, RFC 7692's primary form that
//!   every browser inflates; libdeflate can only end with a final block
//!   (allowed by section 7.2.3, untested here against browsers);
//! - its inflate is the fastest for messages up to 4 KiB, where clients'
//!   messages are, and pure Rust: no C toolchain in the build;
//! - level 2 compresses chat-sized messages as well as level 6 (60% vs 59%
//!   of 1 KiB, 44% vs 43% of 4 KiB) for less CPU, and 5x less on a 64 KiB
//!   message (0.24 ms, not 1.2 ms of the event loop); level 1 uses fixed
//!   Huffman codes only and barely compresses short text (78% of 1 KiB).
//!
//! The price: libdeflate level 1 compresses a 1 KiB chat message in 6.7 µs
//! against 12.1 µs, at the same size. Compression is once per broadcast,
//! not per recipient; if it ever shows in profiles, libdeflate could take
//! the 32 KiB-window case alone (keeping zlib-rs for smaller windows and
//! for inflating), after checking browsers accept final blocks.
//!
//! # `--deflate-min-size`: 256 bytes, by measurement
//!
//! Frames of chat JSON from 32 B to 2 KiB (mean of 32 messages per size),
//! compressed at the default level with the frame header counted; the time
//! is the relay's per broadcast (compress) and per received compressed
//! message (inflate), minimum of 40 rounds:
//!
//! | message | plain frame | compressed frame | saved | smaller | compress | inflate |
//! |---:|---:|---:|---:|---:|---:|---:|
//! | 32 B | 34 B | 35.5 B | -5% | 3 of 32 | 4.1 µs | 0.2 µs |
//! | 48 B | 50 B | 51.4 B | -3% | 4 of 32 | | |
//! | 64 B | 66 B | 65.2 B | 1% | 15 of 32 | 5.0 µs | 0.8 µs |
//! | 96 B | 98 B | 87.4 B | 11% | 32 of 32 | | |
//! | 128 B | 132 B | 106.3 B | 19% | 32 of 32 | 5.7 µs | 1.1 µs |
//! | 192 B | 196 B | 149.2 B | 24% | 32 of 32 | | |
//! | 256 B | 260 B | 181.5 B | 30% | 32 of 32 | 7.4 µs | 1.8 µs |
//! | 384 B | 388 B | 250.6 B | 35% | 32 of 32 | | |
//! | 512 B | 516 B | 359.9 B | 30% | 32 of 32 | 9.5 µs | 2.5 µs |
//! | 1 KiB | 1028 B | 607.5 B | 41% | 32 of 32 | 12.1 µs | 3.4 µs |
//! | 2 KiB | 2052 B | 1019.6 B | 50% | 32 of 32 | 16.1 µs | 5.0 µs |
//!
//! Below 96 B deflate saves nothing (its block header and Huffman tables
//! cost what the text saves); from 96 to 192 B it saves 11 to 24%, 10 to 45
//! bytes, for 5 to 6 µs of the event loop per broadcast, most of it the
//! fixed cost of a message (resetting zlib's hash table, building Huffman
//! trees). At 256 B every message shrinks by about 30% (some 80 bytes per
//! recipient) and the fixed cost is amortised over three times the bytes it
//! saves at 128 B; beyond it the saving keeps growing to 40-50%. So 256 B:
//! the smallest size at which compression pays reliably, well under the
//! 1 KiB the SPEC allows, and typical one-line chat messages (the load
//! harness's 64 B, `{"message":"ok"}`) go out plain at no CPU cost.

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

/// The default `--deflate-min-size`: messages shorter than this go out
/// uncompressed (RSV1 clear), which RFC 7692 allows per message. Below it
/// deflate saves too few bytes, or none, for the CPU it costs the relay per
/// broadcast. Chosen by measurement (the table in this module's doc).
pub const DEFAULT_MIN_SIZE: usize = 256;

#[cfg(test)]
pub(crate) mod sample;
#[cfg(test)]
mod test_support;
