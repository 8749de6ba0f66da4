//! Compressing one message for a server frame (RFC 7692 section 7.2.1).
//!
//! Sans-IO. Each message is one raw DEFLATE stream from an empty window (no
//! context takeover), ended by a sync flush, whose empty stored block's
//! `00 00 ff ff` is then removed, exactly as section 7.2.1 describes. The
//! stream never has BFINAL set, the form every browser inflater expects.
//!
//! Invariants:
//! - The output only refers back as far as the agreed window allows. zlib
//!   makes windows of 9 to 15 bits (and keeps every distance under
//!   2^bits - 262); it refuses 8. For `server_max_window_bits=8` the
//!   compressor uses `Strategy::Rle`, whose matches all have distance 1, so
//!   a 256-byte window always suffices (Autobahn 13.3.x, 13.5.x). The tests
//!   check this with an independent inflater limited to each window.
//! - One zlib state per window size in use, made on first use and reset per
//!   message (no allocation per message); one [`Compressor`] per event loop.

use super::WindowBits;
use crate::wire::frame::{self, MAX_SERVER_HEADER_LEN};
use crate::wire::message::DataKind;
use std::fmt;
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Method, Status, Strategy};

/// The event loop's compressor: a zlib state per window size, reused.
pub struct Compressor {
    /// Indexed by window bits minus 8; `None` until that window is used.
    states: [Option<Deflate>; 8],
    /// zlib level, 1 to 9.
    level: u8,
}

/// What one compression did, for `roomcast_deflate_compressions_total`
/// (one per call), `roomcast_deflate_bytes_in_total` and
/// `roomcast_deflate_bytes_out_total` (SPEC section 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressStats {
    /// Message bytes before compression.
    pub bytes_in: u64,
    /// Payload bytes after it (without any frame header).
    pub bytes_out: u64,
}

impl CompressStats {
    /// Whether the compressed frame is smaller than the plain one would be
    /// (headers included). When it is not, sending the message plain (RSV1
    /// clear) costs the recipients nothing and saves them an inflate.
    pub fn shrinks(&self) -> bool {
        let plain = self.bytes_in as usize;
        let packed = self.bytes_out as usize;
        packed + frame::header_len(packed) < plain + frame::header_len(plain)
    }
}

/// A whole server frame with RSV1 set, to be shared by every recipient
/// that negotiated deflate (as one `Arc<[u8]>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressedFrame {
    pub frame: Vec<u8>,
    pub stats: CompressStats,
}

/// zlib reported an error for a state and input the relay controls. Never
/// expected; the caller sends the message uncompressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressError;

impl Compressor {
    pub fn new() -> Compressor {
        Compressor::with_level(LEVEL)
    }

    /// A compressor at another zlib level (clamped to 1..=9), for
    /// measurements; the relay uses [`Compressor::new`]'s.
    pub fn with_level(level: u8) -> Compressor {
        Compressor {
            states: Default::default(),
            level: level.clamp(1, 9),
        }
    }

    /// Appends `message` compressed for a window of `window` to `out`
    /// (RFC 7692 section 7.2.1: the trailing `00 00 ff ff` removed).
    pub fn compress(
        &mut self,
        message: &[u8],
        window: WindowBits,
        out: &mut Vec<u8>,
    ) -> Result<CompressStats, CompressError> {
        let deflate = self.state(window);
        deflate.reset();
        let start = out.len();
        let mut filled = start;
        let mut input = message;
        let mut room = bound(message.len());
        loop {
            out.resize(filled + room, 0);
            let (in_before, out_before) = (deflate.total_in(), deflate.total_out());
            let status = deflate
                .compress(input, &mut out[filled..], DeflateFlush::SyncFlush)
                .map_err(|_| CompressError)?;
            let consumed = (deflate.total_in() - in_before) as usize;
            let produced = (deflate.total_out() - out_before) as usize;
            input = &input[consumed..];
            filled += produced;
            // Done when all input is in and the flush fitted with room to
            // spare; `BufError` means there was nothing left to do.
            if input.is_empty() && (produced < room || status == Status::BufError) {
                break;
            }
            if consumed == 0 && produced == 0 {
                return Err(CompressError);
            }
            room = room.max(4_096);
        }
        out.truncate(filled);
        // The sync flush ends with an empty stored block: `00 00 ff ff`.
        if !out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(start);
            return Err(CompressError);
        }
        out.truncate(filled - SYNC_TAIL.len());
        Ok(CompressStats {
            bytes_in: message.len() as u64,
            bytes_out: (out.len() - start) as u64,
        })
    }

    /// Compresses `message` into a complete final server frame with RSV1
    /// set (`0xC1` text, `0xC2` binary), as one buffer.
    pub fn frame(
        &mut self,
        kind: DataKind,
        message: &[u8],
        window: WindowBits,
    ) -> Result<CompressedFrame, CompressError> {
        // Compress after room for the longest header, then slide the payload
        // down behind the real one: one buffer, no second copy of the data.
        let mut buf = Vec::with_capacity(MAX_SERVER_HEADER_LEN + bound(message.len()));
        buf.resize(MAX_SERVER_HEADER_LEN, 0);
        let stats = self.compress(message, window, &mut buf)?;
        let len = stats.bytes_out as usize;
        let header_len = frame::header_len(len);
        let gap = MAX_SERVER_HEADER_LEN - header_len;
        let mut header = [0u8; MAX_SERVER_HEADER_LEN];
        let opcode = match kind {
            DataKind::Text => frame::Opcode::Text,
            DataKind::Binary => frame::Opcode::Binary,
        };
        frame::encode_header(opcode, len, &mut header);
        header[0] |= RSV1;
        buf[gap..MAX_SERVER_HEADER_LEN].copy_from_slice(&header[..header_len]);
        buf.drain(..gap);
        Ok(CompressedFrame { frame: buf, stats })
    }

    fn state(&mut self, window: WindowBits) -> &mut Deflate {
        let slot = &mut self.states[usize::from(window.get() - WindowBits::MIN.get())];
        let level = self.level;
        slot.get_or_insert_with(|| Deflate::new_with_config(config(window, level)))
    }
}

impl Default for Compressor {
    fn default() -> Compressor {
        Compressor::new()
    }
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_use: Vec<u8> = WindowBits::all()
            .zip(&self.states)
            .filter(|(_, s)| s.is_some())
            .map(|(w, _)| w.get())
            .collect();
        f.debug_struct("Compressor")
            .field("level", &self.level)
            .field("windows_in_use", &in_use)
            .finish()
    }
}

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deflate failed on a message (sent uncompressed)")
    }
}

impl std::error::Error for CompressError {}

/// The zlib settings for one window size.
fn config(window: WindowBits, level: u8) -> DeflateConfig {
    let (window_bits, strategy) = if window == WindowBits::MIN {
        // zlib has no 256-byte window; run-length matches only reach back
        // one byte, so zlib's smallest window (512) never shows.
        (9, Strategy::Rle)
    } else {
        (i32::from(window.get()), Strategy::Default)
    };
    DeflateConfig {
        level: i32::from(level),
        method: Method::Deflated,
        // Negative: a raw DEFLATE stream, no zlib header or checksum.
        window_bits: -window_bits,
        mem_level: MEM_LEVEL,
        strategy,
    }
}

/// Room for one message's compressed form: zlib's bound for the whole
/// input plus the flush's empty stored block. `compress` grows the buffer
/// should it ever not do.
fn bound(message_len: usize) -> usize {
    zlib_rs::compress_bound(message_len) + 8
}

/// The frame header bit that marks a compressed message (RFC 7692 section 6).
pub(crate) const RSV1: u8 = 0x40;

/// The end of a sync flush (an empty stored block), removed from every
/// message (section 7.2.1) and put back before inflating (7.2.2).
pub(crate) const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// zlib level: see this module's parent doc for the measurements.
pub const LEVEL: u8 = 2;
/// zlib's default memory level.
const MEM_LEVEL: i32 = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::deflate::inflate::Inflater;
    use crate::wire::deflate::test_support::{chat_json, zlib_inflate_raw};
    use proptest::prelude::*;
    use proptest::strategy::Strategy as _;

    fn compress(message: &[u8], window: WindowBits) -> Vec<u8> {
        let mut out = Vec::new();
        Compressor::new()
            .compress(message, window, &mut out)
            .unwrap();
        out
    }

    /// RFC 7692 section 7.2.3.1: "Hello" compressed with no context
    /// takeover is `f2 48 cd c9 c9 07 00`.
    #[test]
    fn rfc7692_hello() {
        let out = compress(b"Hello", WindowBits::MAX);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let frame = Compressor::new()
            .frame(DataKind::Text, b"Hello", WindowBits::MAX)
            .unwrap();
        // Section 7.2.3.1's frame, unmasked: `c1 07 f2 48 cd c9 c9 07 00`.
        assert_eq!(
            frame.frame,
            [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        assert_eq!(
            frame.stats,
            CompressStats {
                bytes_in: 5,
                bytes_out: 7
            }
        );
        assert!(!frame.stats.shrinks());
    }

    #[test]
    fn frames_carry_rsv1_and_every_length_form() {
        let mut c = Compressor::new();
        for (kind, first) in [(DataKind::Text, 0xC1), (DataKind::Binary, 0xC2)] {
            // Incompressible bytes so the payload length crosses each form.
            for len in [0usize, 100, 200, 70_000] {
                let message: Vec<u8> = (0..len as u64)
                    .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
                    .collect();
                let f = c.frame(kind, &message, WindowBits::MAX).unwrap();
                assert_eq!(f.frame[0], first);
                let (h, n) = frame::parse_header_with(&f.frame, false, true)
                    .unwrap()
                    .unwrap();
                assert!(h.compressed && h.fin);
                assert_eq!(h.payload_len, f.stats.bytes_out);
                assert_eq!(n + f.stats.bytes_out as usize, f.frame.len());
                let mut back = Vec::new();
                Inflater::new()
                    .inflate(&f.frame[n..], usize::MAX, &mut back)
                    .unwrap();
                assert_eq!(back, message);
            }
        }
    }

    #[test]
    fn chat_json_shrinks() {
        let msg = chat_json(1024);
        let mut c = Compressor::new();
        let f = c.frame(DataKind::Text, &msg, WindowBits::MAX).unwrap();
        assert!(f.stats.shrinks());
        assert!(
            f.stats.bytes_out < f.stats.bytes_in * 3 / 4,
            "{:?}",
            f.stats
        );
    }

    /// The compressor is reused: each message is independent of the last.
    #[test]
    fn no_context_takeover() {
        let mut c = Compressor::new();
        let msg = chat_json(600);
        let mut first = Vec::new();
        c.compress(&msg, WindowBits::MAX, &mut first).unwrap();
        let mut second = Vec::new();
        c.compress(&msg, WindowBits::MAX, &mut second).unwrap();
        assert_eq!(first, second, "the second message saw no history");
        // And a fresh inflater (no window) decodes each alone.
        assert_eq!(zlib_inflate_raw(15, &second).unwrap(), msg);
    }

    /// The 256-byte window: every message compressed for
    /// `server_max_window_bits=8` inflates with the system's C zlib limited
    /// to a 256-byte window, fed one output byte at a time so that any
    /// distance beyond 256 fails with "invalid distance too far back".
    #[test]
    fn window_8_decodes_with_a_256_byte_window() {
        let mut c = Compressor::new();
        let mut inputs = vec![
            chat_json(64),
            chat_json(1024),
            chat_json(64 * 1024),
            b"ab".repeat(5_000),
            vec![b'x'; 100_000],
        ];
        // Text that repeats at distances between 256 and 32 KiB, which a
        // larger window would use.
        let block: Vec<u8> = (0..300u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        inputs.push(block.repeat(50));
        for msg in &inputs {
            let mut out = Vec::new();
            c.compress(msg, WindowBits::MIN, &mut out).unwrap();
            assert_eq!(&zlib_inflate_raw(8, &out).unwrap(), msg);
        }
        // The check itself bites: the default window reaches back 300 bytes.
        let mut far = Vec::new();
        c.compress(&block.repeat(50), WindowBits::MAX, &mut far)
            .unwrap();
        assert!(zlib_inflate_raw(8, &far).is_err());
        assert!(zlib_inflate_raw(15, &far).is_ok());
    }

    /// Random bytes, text with long repeats, and chat JSON of any size.
    fn messages() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3_000),
            proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..20_000),
            (0usize..5_000).prop_map(chat_json),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// `inflate(compress(m)) == m` for every window size, and each output
        /// decodes with an independent inflater limited to that window.
        #[test]
        fn round_trips_within_the_window(message in messages()) {
            let mut c = Compressor::new();
            let mut inflater = Inflater::new();
            for window in WindowBits::all() {
                let mut packed = Vec::new();
                let stats = c.compress(&message, window, &mut packed).unwrap();
                prop_assert_eq!(stats.bytes_out as usize, packed.len());
                let mut back = Vec::new();
                inflater.inflate(&packed, message.len(), &mut back).unwrap();
                prop_assert_eq!(&back, &message);
                let independent = zlib_inflate_raw(window.get(), &packed);
                prop_assert_eq!(independent.as_ref(), Ok(&message), "window {}", window.get());
            }
        }
    }
}
