//! Inflating one compressed message (RFC 7692 section 7.2.2), bounded.
//!
//! Sans-IO. The event loop owns ONE [`Inflater`]; it is reset per message
//! (no context takeover) and keeps its 32 KiB window allocation, so a
//! message costs no allocation beyond its output. A 32 KiB window decodes
//! every window size a client may use (8 to 15 bits).
//!
//! Invariants:
//! - Output is bounded while inflating, not after: the output buffer grows
//!   in steps capped at `max_output + 1` bytes past where it started, and
//!   inflating stops with [`InflateError::TooBig`] as soon as that extra
//!   byte is produced. A 1 KiB bomb that would make 1 GiB allocates about
//!   `max_output`, and costs CPU for about `max_output` bytes of output.
//! - Any input ends in `Ok` or an error: no panic, no loop without progress.

use super::compress::SYNC_TAIL;
use crate::wire::close::CloseCode;
use crate::wire::error::ProtocolError;
use std::fmt;
use zlib_rs::{Inflate, InflateFlush, Status};

/// The event loop's inflater, reused for every compressed message.
pub struct Inflater {
    raw: Inflate,
}

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than `max_output` bytes.
    TooBig,
    /// It is not a valid DEFLATE stream.
    Corrupt,
}

impl InflateError {
    /// The close code for this fault, from the one fault-to-code table
    /// (`error::ProtocolError`): `1009` for `TooBig` (SPEC section 10:
    /// inflating stops at `--max-message-size`) and `1007` for `Corrupt`.
    /// Why 1007 and not 1002: the frames were well-formed and the extension
    /// in force, but the payload is not consistent with the form its message
    /// declared, the fault RFC 6455 section 7.4.1 gives 1007 (as for invalid
    /// UTF-8 in a text message). Node's `ws`, the most deployed
    /// permessage-deflate, answers the same.
    pub fn close_code(self) -> CloseCode {
        ProtocolError::from(self).close_code()
    }
}

impl Inflater {
    pub fn new() -> Inflater {
        Inflater {
            // Raw DEFLATE (no zlib header), the largest window.
            raw: Inflate::new(false, 15),
        }
    }

    /// Inflates one message, appending it to `out`: the compressed payload
    /// followed by the `00 00 ff ff` the sender removed (section 7.2.2).
    /// At most `max_output` bytes are appended; a message that would make
    /// more fails with [`InflateError::TooBig`] right after passing it. On
    /// an error `out` holds a meaningless partial message after its
    /// original length; the caller drops it with the connection.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        max_output: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        // Reset to raw DEFLATE with a 32 KiB window; the window's memory is
        // kept.
        self.raw.reset(false);
        let start = out.len();
        // One byte past the limit is how a message proves too big.
        let cap = start.saturating_add(max_output).saturating_add(1);
        let mut filled = start;
        for mut input in [compressed, &SYNC_TAIL[..]] {
            loop {
                let room = grow(out, start, filled, compressed.len(), cap);
                let (in_before, out_before) = (self.raw.total_in(), self.raw.total_out());
                let result = self.raw.decompress(
                    input,
                    &mut out[filled..filled + room],
                    InflateFlush::NoFlush,
                );
                let consumed = (self.raw.total_in() - in_before) as usize;
                let produced = (self.raw.total_out() - out_before) as usize;
                input = &input[consumed..];
                filled += produced;
                // Checked before the status: a final block may end the
                // stream on the byte that proves the message too big.
                if filled - start > max_output {
                    out.truncate(filled);
                    return Err(InflateError::TooBig);
                }
                match result {
                    // A final block ends the message (section 7.2.3.3 allows
                    // a sender to use one); anything after it is ignored.
                    Ok(Status::StreamEnd) => {
                        out.truncate(filled);
                        return Ok(());
                    }
                    Ok(Status::Ok | Status::BufError) => {}
                    Err(_) => {
                        out.truncate(filled);
                        return Err(InflateError::Corrupt);
                    }
                }
                // Output left unfilled means the inflater wants more input.
                if input.is_empty() && produced < room {
                    break;
                }
                if consumed == 0 && produced == 0 {
                    // Cannot happen with input and room; never spin.
                    out.truncate(filled);
                    return Err(InflateError::Corrupt);
                }
            }
        }
        out.truncate(filled);
        Ok(())
    }
}

impl Default for Inflater {
    fn default() -> Inflater {
        Inflater::new()
    }
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Inflater")
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InflateError::TooBig => "compressed message inflates past the max message size",
            InflateError::Corrupt => "compressed message is not valid DEFLATE data",
        })
    }
}

impl std::error::Error for InflateError {}

/// Makes room after `filled` (zeroed, so no unsafe is needed) and returns
/// how much. Steps start from a guess based on the compressed size and
/// double with the output so far, never past `cap`, and the buffer never
/// reserves more than the step asks, so a bomb cannot make it allocate
/// beyond the limit.
fn grow(
    out: &mut Vec<u8>,
    start: usize,
    filled: usize,
    compressed_len: usize,
    cap: usize,
) -> usize {
    if out.len() > filled {
        return out.len() - filled;
    }
    let step = compressed_len
        .saturating_mul(4)
        .max(FIRST_STEP)
        .max(filled - start);
    let target = filled.saturating_add(step).min(cap);
    out.reserve_exact(target - out.len());
    out.resize(target, 0);
    target - filled
}

/// The first output step for a small message.
const FIRST_STEP: usize = 1_024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::deflate::test_support::{chat_json, deflate_reference};
    use crate::wire::deflate::{Compressor, WindowBits};

    fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        Inflater::new()
            .inflate(compressed, max, &mut out)
            .map(|()| out)
    }

    /// RFC 7692 section 7.2.3: the example payloads of "Hello".
    #[test]
    fn rfc7692_examples() {
        let rows: &[&[u8]] = &[
            // 7.2.3.1: one compressed block.
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            // 7.2.3.2: the sender's message split across two frames is
            // assembled before inflating: same bytes.
            // 7.2.3.3: no compression (a stored block).
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            // 7.2.3.5: two DEFLATE blocks in one message.
            &[
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ],
            // 7.2.3.6 style: BFINAL set on the last block (then `00`).
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        ];
        for &payload in rows {
            assert_eq!(inflate(payload, 100).unwrap(), b"Hello", "{payload:02x?}");
        }
    }

    #[test]
    fn empty_message() {
        // An empty message compresses to an empty fixed block: `02 00`.
        assert_eq!(inflate(&[0x02, 0x00], 10).unwrap(), b"");
        assert_eq!(inflate(&[], 10).unwrap(), b"");
    }

    /// Exactly `max_output` bytes is fine; one more is too big.
    #[test]
    fn the_limit_is_exact() {
        let msg = chat_json(5_000);
        let packed = deflate_reference(&msg);
        assert_eq!(inflate(&packed, msg.len()).unwrap(), msg);
        assert_eq!(inflate(&packed, msg.len() - 1), Err(InflateError::TooBig));
        assert_eq!(inflate(&packed, 0), Err(InflateError::TooBig));
        // A final block (BFINAL) that ends the stream on the byte past the
        // limit (found by the frame_stream fuzzer).
        let hello_final = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&hello_final, 5).unwrap(), b"Hello");
        assert_eq!(inflate(&hello_final, 4), Err(InflateError::TooBig));
    }

    /// A bomb: ~1 KiB that would inflate to 1 GiB stops right after the
    /// limit, having allocated about the limit.
    #[test]
    fn a_bomb_stops_at_the_limit() {
        // DEFLATE's best ratio is about 1032:1, so 1 GiB is about 1 MiB
        // compressed; its first KiB alone inflates to about 1 MiB.
        let bomb = super::super::test_support::bomb(1 << 30);
        assert!(bomb.len() < 1_100_000, "{} bytes", bomb.len());
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new().inflate(&bomb[..1_024], 65_536, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= 65_537, "capacity {}", out.capacity());
        for max in [0, 1, 1_000, 65_536, 1 << 20] {
            let mut out = Vec::new();
            let mut inflater = Inflater::new();
            assert_eq!(
                inflater.inflate(bomb, max, &mut out),
                Err(InflateError::TooBig)
            );
            assert_eq!(out.len(), max + 1, "stopped one byte past the limit");
            // Never more room than the limit plus the byte that proves it.
            assert!(
                out.capacity() <= max + 1,
                "capacity {} for a limit of {max}",
                out.capacity()
            );
        }
    }

    #[test]
    fn corrupt_streams() {
        let rows: &[&[u8]] = &[
            // BTYPE 11 is reserved.
            &[0x06],
            &[0xff, 0xff, 0xff],
            // A stored block whose NLEN is not the complement of LEN.
            &[0x00, 0x05, 0x00, 0x00, 0x00, b'H', b'e', b'l', b'l', b'o'],
            // A fixed block whose first symbol copies from distance 1,
            // before the start of the message (no context takeover).
            &[0x02, 0x02, 0x00, 0x00],
        ];
        for &payload in rows {
            assert_eq!(
                inflate(payload, 1 << 20),
                Err(InflateError::Corrupt),
                "{payload:02x?}"
            );
        }
    }

    /// Reused across messages, good and bad, with no state carried over.
    #[test]
    fn reuse_after_errors() {
        let mut inflater = Inflater::new();
        let mut c = Compressor::new();
        let msg = chat_json(2_000);
        let mut packed = Vec::new();
        c.compress(&msg, WindowBits::MAX, &mut packed).unwrap();
        let mut out = Vec::new();
        for round in 0..3 {
            out.clear();
            inflater.inflate(&packed, msg.len(), &mut out).unwrap();
            assert_eq!(out, msg, "round {round}");
            out.clear();
            assert_eq!(
                inflater.inflate(&[0x06], 10, &mut out),
                Err(InflateError::Corrupt)
            );
            out.clear();
            assert_eq!(
                inflater.inflate(&packed, 10, &mut out),
                Err(InflateError::TooBig)
            );
        }
    }

    #[test]
    fn appends_after_what_out_holds() {
        let mut out = b"prefix:".to_vec();
        Inflater::new()
            .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 5, &mut out)
            .unwrap();
        assert_eq!(out, b"prefix:Hello");
    }

    /// Truncated or garbage input never panics or hangs; it ends in a
    /// result, bounded by the limit.
    #[test]
    fn every_prefix_of_a_message_ends() {
        let packed = deflate_reference(&chat_json(3_000));
        let mut inflater = Inflater::new();
        for cut in 0..packed.len() {
            let mut out = Vec::new();
            let _ = inflater.inflate(&packed[..cut], 3_000, &mut out);
            assert!(out.len() <= 3_001);
        }
    }

    #[test]
    fn close_codes() {
        assert_eq!(InflateError::TooBig.close_code().0, 1009);
        assert_eq!(InflateError::Corrupt.close_code().0, 1007);
    }
}
