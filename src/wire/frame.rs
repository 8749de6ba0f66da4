//! WebSocket frame headers (RFC 6455 section 5.2): parsing and encoding.
//!
//! Sans-IO. [`parse_header`] never consumes on "need more": it returns
//! `Ok(None)` until the whole header is present, and it rejects what the first
//! two bytes already prove wrong (reserved bits, unknown opcode, an unmasked
//! client frame, a fragmented or oversized control frame) before waiting for
//! the rest. Payload length limits are the caller's (see `message`), checked
//! from the header before any payload is buffered.
//!
//! Reserved bits: RSV2 and RSV3 are always an error, since no extension the
//! relay speaks defines them. RSV1 is an error too unless permessage-deflate
//! was negotiated ([`parse_header_with`]); then it may be set on a data
//! frame, where it marks the message compressed (RFC 7692 section 6), and
//! is still an error on a control or continuation frame. Which data frame
//! of a message may carry it (the first) is `message`'s to check. The
//! plain frame's path costs one test of the three bits, as before.

use crate::wire::error::ProtocolError;
use std::sync::Arc;

/// An encoded frame (or any bytes for the socket, such as an HTTP response),
/// shared by every send queue it is in: a broadcast is encoded once and each
/// recipient holds a reference, never a copy.
pub type Frame = Arc<[u8]>;

/// Frame opcodes (RFC 6455 section 5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_wire(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn to_wire(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Control frames have the high opcode bit set (section 5.5).
    pub fn is_control(self) -> bool {
        self.to_wire() & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1 on a data frame of a deflate connection: the message is
    /// compressed (RFC 7692 section 6). Always false otherwise.
    pub compressed: bool,
    pub opcode: Opcode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// Longest possible header: 2 fixed + 8 length + 4 mask bytes.
pub const MAX_HEADER_LEN: usize = 14;
/// Longest server header (no mask).
pub const MAX_SERVER_HEADER_LEN: usize = 10;
/// Control frame payloads are at most 125 bytes (section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Parses a frame header from the start of `buf`, on a connection with no
/// extension: any reserved bit is an error.
///
/// Returns `Ok(None)` when more bytes are needed (nothing is consumed), or
/// the header and its length in bytes. `require_mask` is true on the server
/// side: every client frame must be masked (section 5.1).
pub fn parse_header(
    buf: &[u8],
    require_mask: bool,
) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    parse_header_with(buf, require_mask, false)
}

/// [`parse_header`] on a connection that may have negotiated
/// permessage-deflate: with `rsv1_allowed`, RSV1 on a data frame is
/// reported in [`FrameHeader::compressed`] instead of failing.
pub fn parse_header_with(
    buf: &[u8],
    require_mask: bool,
    rsv1_allowed: bool,
) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let Some(&[b0, b1]) = buf
        .get(..2)
        .map(|s| <&[u8; 2]>::try_from(s).expect("two bytes"))
    else {
        return Ok(None);
    };
    if b0 & RESERVED_BITS != 0 {
        if !rsv1_allowed {
            // No extension is negotiated: RSV1-3 must be zero (section 5.2).
            return Err(ProtocolError::ReservedBits);
        }
        check_deflate_reserved_bits(b0)?;
    }
    let opcode = Opcode::from_wire(b0 & 0x0F).ok_or(ProtocolError::UnknownOpcode(b0 & 0x0F))?;
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    if require_mask && !masked {
        return Err(ProtocolError::Unmasked);
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        if len7 as usize > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlTooLong);
        }
    }
    let (payload_len, mut pos) = match len7 {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u16::from_be_bytes([b[0], b[1]]) as u64, 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(b.try_into().expect("eight bytes"));
            if len >> 63 != 0 {
                // The most significant bit must be 0 (section 5.2).
                return Err(ProtocolError::LengthOverflow);
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    let mask = if masked {
        let Some(m) = buf.get(pos..pos + 4) else {
            return Ok(None);
        };
        pos += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    Ok(Some((
        FrameHeader {
            fin,
            // Constant false on the plain path, where RSV1 already failed.
            compressed: rsv1_allowed && b0 & RSV1 != 0,
            opcode,
            mask,
            payload_len,
        },
        pos,
    )))
}

/// RSV1, RSV2 and RSV3 (section 5.2).
const RESERVED_BITS: u8 = 0x70;
/// RSV1: "Per-Message Compressed" under permessage-deflate.
const RSV1: u8 = 0x40;

/// A reserved bit on a deflate connection: only RSV1, and only on a data
/// frame (RFC 7692 section 6: never on control frames or continuations).
#[inline]
fn check_deflate_reserved_bits(b0: u8) -> Result<(), ProtocolError> {
    if b0 & RESERVED_BITS != RSV1 {
        return Err(ProtocolError::ReservedBits);
    }
    match b0 & 0x0F {
        0x0 | 0x8..=0xF => Err(ProtocolError::CompressedBitMisplaced),
        _ => Ok(()),
    }
}

/// Writes an unmasked (server) header for a final frame into `out` and
/// returns its length.
pub fn encode_header(
    opcode: Opcode,
    payload_len: usize,
    out: &mut [u8; MAX_SERVER_HEADER_LEN],
) -> usize {
    out[0] = 0x80 | opcode.to_wire();
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if payload_len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// Length of the server header for a payload of `payload_len` bytes.
pub fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    }
}

/// Encodes a complete unmasked final frame.
pub fn encode_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len()) + payload.len());
    push_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// Appends an unmasked final-frame header to `out`.
pub fn push_header(out: &mut Vec<u8>, opcode: Opcode, payload_len: usize) {
    let mut header = [0u8; MAX_SERVER_HEADER_LEN];
    let n = encode_header(opcode, payload_len, &mut header);
    out.extend_from_slice(&header[..n]);
}

/// Encodes a masked frame as a client sends it (section 5.3). `opcode` is
/// the raw 4-bit value, so tests can also build frames with reserved ones.
pub fn encode_client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER_LEN + payload.len());
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65_535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    crate::wire::mask::unmask(&mut out[start..], mask, 0);
    out
}

/// Encodes a Close frame with a status code and a reason. The reason is
/// truncated on a character boundary so the payload fits a control frame.
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode_frame(Opcode::Close, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        parse_header(bytes, false)
    }

    /// (bytes, fin, opcode, masked, payload length, header length).
    type Example = (&'static [u8], bool, Opcode, bool, u64, usize);

    /// RFC 6455 section 5.7 examples.
    #[test]
    fn rfc6455_section_5_7_examples() {
        let cases: &[Example] = &[
            // A single-frame unmasked text message "Hello".
            (
                &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                true,
                Opcode::Text,
                false,
                5,
                2,
            ),
            // A single-frame masked text message "Hello".
            (
                &[
                    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
                true,
                Opcode::Text,
                true,
                5,
                6,
            ),
            // A fragmented unmasked text message: "Hel" then "lo".
            (
                &[0x01, 0x03, 0x48, 0x65, 0x6c],
                false,
                Opcode::Text,
                false,
                3,
                2,
            ),
            (
                &[0x80, 0x02, 0x6c, 0x6f],
                true,
                Opcode::Continuation,
                false,
                2,
                2,
            ),
            // Unmasked ping "Hello" and masked pong "Hello".
            (
                &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                true,
                Opcode::Ping,
                false,
                5,
                2,
            ),
            (
                &[
                    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
                true,
                Opcode::Pong,
                true,
                5,
                6,
            ),
            // 256 bytes binary in a single unmasked frame.
            (
                &[0x82, 0x7E, 0x01, 0x00],
                true,
                Opcode::Binary,
                false,
                256,
                4,
            ),
            // 64 KiB binary in a single unmasked frame.
            (
                &[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00],
                true,
                Opcode::Binary,
                false,
                65_536,
                10,
            ),
        ];
        for &(bytes, fin, opcode, masked, len, hlen) in cases {
            let (h, n) = parse(bytes).unwrap().unwrap();
            assert_eq!(
                (h.fin, h.opcode, h.mask.is_some(), h.payload_len, n),
                (fin, opcode, masked, len, hlen),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn encodes_the_rfc_examples() {
        assert_eq!(
            encode_frame(Opcode::Text, b"Hello"),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            &encode_frame(Opcode::Binary, &[0; 256])[..4],
            &[0x82, 0x7E, 0x01, 0x00]
        );
        assert_eq!(
            &encode_frame(Opcode::Binary, &[0; 65_536])[..10],
            &[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]
        );
    }

    #[test]
    fn every_length_form_round_trips() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let frame = encode_frame(Opcode::Binary, &vec![7; len]);
            let (h, n) = parse(&frame).unwrap().unwrap();
            assert_eq!(h.payload_len as usize, len);
            assert_eq!(n, header_len(len));
            assert_eq!(frame.len(), n + len);
        }
    }

    #[test]
    fn needs_more_never_consumes() {
        let frame = [0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4];
        for cut in 0..frame.len() {
            assert_eq!(parse_header(&frame[..cut], true), Ok(None), "cut {cut}");
        }
        assert!(parse_header(&frame, true).unwrap().is_some());
    }

    /// SPEC section 3, 1002 row: one line per protocol violation.
    #[test]
    fn protocol_violations() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[0x81, 0x05], ProtocolError::Unmasked),
            (&[0xC1, 0x80], ProtocolError::ReservedBits),
            (&[0xA1, 0x80], ProtocolError::ReservedBits),
            (&[0x91, 0x80], ProtocolError::ReservedBits),
            (&[0x83, 0x80], ProtocolError::UnknownOpcode(3)),
            (&[0x8B, 0x80], ProtocolError::UnknownOpcode(0xB)),
            (&[0x09, 0x80], ProtocolError::FragmentedControl),
            (&[0x89, 0xFE], ProtocolError::ControlTooLong),
            (&[0x88, 0xFF], ProtocolError::ControlTooLong),
            (
                &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                ProtocolError::LengthOverflow,
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(parse_header(bytes, true), Err(*err), "{bytes:02x?}");
        }
    }

    /// RFC 7692 section 6 and RFC 6455 section 5.2: which reserved bits
    /// each kind of connection accepts. (first byte, deflate negotiated,
    /// result: `Ok(compressed)` or the error.)
    #[test]
    fn reserved_bits_with_and_without_deflate() {
        use ProtocolError::{CompressedBitMisplaced as Misplaced, ReservedBits as Reserved};
        let rows: &[(u8, bool, Result<bool, ProtocolError>)] = &[
            // Without deflate: every reserved bit is an error, as before.
            (0x81, false, Ok(false)),
            (0xC1, false, Err(Reserved)),
            (0xC2, false, Err(Reserved)),
            (0x41, false, Err(Reserved)),
            (0xA1, false, Err(Reserved)),
            (0x91, false, Err(Reserved)),
            // With deflate: RSV1 on a text or binary frame, final or not.
            (0x81, true, Ok(false)),
            (0xC1, true, Ok(true)),
            (0xC2, true, Ok(true)),
            (0x41, true, Ok(true)),
            (0x42, true, Ok(true)),
            // ...never on a continuation or a control frame...
            (0xC0, true, Err(Misplaced)),
            (0x40, true, Err(Misplaced)),
            (0xC8, true, Err(Misplaced)),
            (0xC9, true, Err(Misplaced)),
            (0xCA, true, Err(Misplaced)),
            // ...and RSV2, RSV3 stay errors, alone or with RSV1.
            (0xA1, true, Err(Reserved)),
            (0x91, true, Err(Reserved)),
            (0xE1, true, Err(Reserved)),
            (0xF1, true, Err(Reserved)),
            (0xB0, true, Err(Reserved)),
            // Unknown opcodes are still reported as such.
            (0xC3, true, Err(ProtocolError::UnknownOpcode(3))),
        ];
        for &(b0, deflate, want) in rows {
            let got = parse_header_with(&[b0, 0x80, 1, 2, 3, 4], true, deflate)
                .map(|h| h.expect("whole header").0.compressed);
            assert_eq!(got, want, "{b0:#04x}, deflate {deflate}");
        }
    }

    #[test]
    fn client_frames_round_trip_through_the_parser() {
        for len in [0usize, 5, 126, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut frame = encode_client_frame(true, 0x2, &payload, [0x37, 0xfa, 0x21, 0x3d]);
            let (h, n) = parse_header(&frame, true).unwrap().unwrap();
            assert_eq!(
                (h.payload_len as usize, h.mask),
                (len, Some([0x37, 0xfa, 0x21, 0x3d]))
            );
            crate::wire::mask::unmask(&mut frame[n..], h.mask.unwrap(), 0);
            assert_eq!(&frame[n..], &payload[..]);
        }
        // RFC 6455 section 5.7: a masked "Hello".
        assert_eq!(
            encode_client_frame(true, 0x1, b"Hello", [0x37, 0xfa, 0x21, 0x3d]),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let frame = encode_close(1000, &long);
        let (h, n) = parse(&frame).unwrap().unwrap();
        assert!(h.payload_len as usize <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&frame[n + 2..]).is_ok());
    }
}
