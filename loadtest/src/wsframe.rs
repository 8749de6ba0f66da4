//! Client-side WebSocket framing (RFC 6455 section 5): masked frames out, unmasked in.
//!
//! Only what a chat client needs: whole frames with FIN set on the way out, and a header
//! parser for the server's frames that rejects what a server must never send (reserved
//! bits without an extension, unknown opcodes, oversized or fragmented control frames,
//! masked frames). RSV1 is the permessage-deflate bit (RFC 7692): allowed on the first
//! frame of a data message once that extension was negotiated. Reassembly of fragmented
//! messages lives in `client.rs`, inflating in `deflate.rs`.

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// RSV1: the message is compressed (permessage-deflate).
pub const RSV1: u8 = 0x40;

/// Appends one masked frame with FIN set, the payload masked with `mask`.
pub fn encode_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    encode_masked_flags(out, opcode, 0, payload, mask);
}

/// As [`encode_masked`], with reserved bits `rsv` (e.g. [`RSV1`]) set in the first byte.
pub fn encode_masked_flags(out: &mut Vec<u8>, opcode: u8, rsv: u8, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    out.reserve(len + 14);
    out.push(0x80 | rsv | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `buf` with the repeating 4-byte `mask`, eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = [
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ];
    let wide = u64::from_ne_bytes(m);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, hence of 4: the mask phase restarts at 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub fin: bool,
    /// RSV1: a compressed message (only when the caller allowed it).
    pub rsv1: bool,
    pub opcode: u8,
    /// Bytes of header before the payload.
    pub header_len: usize,
    pub payload_len: u64,
}

impl Head {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a server frame's header from the start of `buf`; `Ok(None)` until the whole
/// header is there. `deflate`: permessage-deflate was negotiated, so RSV1 may be set on
/// a data frame. The error names the protocol violation.
pub fn parse_head(buf: &[u8], deflate: bool) -> Result<Option<Head>, &'static str> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let allowed = if deflate { RSV1 } else { 0 };
    if b0 & 0x70 & !allowed != 0 {
        return Err("reserved bits set without a negotiated extension");
    }
    let rsv1 = b0 & RSV1 != 0;
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err("unknown opcode");
    }
    if b1 & 0x80 != 0 {
        return Err("masked frame from the server");
    }
    let (payload_len, header_len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err("64-bit length with the top bit set");
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let head = Head {
        fin,
        rsv1,
        opcode,
        header_len,
        payload_len,
    };
    if head.is_control() && (payload_len > 125 || !fin) {
        return Err("fragmented or oversized control frame");
    }
    // RFC 7692 section 6: RSV1 marks a message's first frame, never a control frame or
    // a continuation.
    if rsv1 && (head.is_control() || opcode == OP_CONTINUATION) {
        return Err("RSV1 on a control or continuation frame");
    }
    Ok(Some(head))
}

/// Server frame bytes (unmasked, FIN set) for tests and the in-process test servers.
pub fn encode_unmasked(out: &mut Vec<u8>, opcode: u8, fin: bool, payload: &[u8]) {
    let len = payload.len();
    out.push(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xFFFF {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_round_trips_at_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut buf = data.clone();
            apply_mask(&mut buf, [1, 2, 3, 4]);
            for (i, (a, b)) in buf.iter().zip(&data).enumerate() {
                assert_eq!(*a, b ^ [1, 2, 3, 4][i % 4]);
            }
            apply_mask(&mut buf, [1, 2, 3, 4]);
            assert_eq!(buf, data);
        }
    }

    #[test]
    fn masked_frame_has_the_right_header_for_each_length_class() {
        for (len, hl) in [(5usize, 6usize), (126, 8), (70_000, 14)] {
            let payload = vec![b'a'; len];
            let mut out = Vec::new();
            encode_masked(&mut out, OP_TEXT, &payload, [9, 8, 7, 6]);
            assert_eq!(out.len(), hl + len);
            assert_eq!(out[0], 0x81);
            assert_ne!(out[1] & 0x80, 0);
            let mut body = out[hl..].to_vec();
            apply_mask(&mut body, [9, 8, 7, 6]);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn parses_server_headers_and_rejects_violations() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let mut out = Vec::new();
            encode_unmasked(&mut out, OP_TEXT, true, &vec![b'x'; len]);
            let head = parse_head(&out, false).unwrap().unwrap();
            assert_eq!(head.payload_len, len as u64);
            assert_eq!(head.header_len + len, out.len());
            // Every strict prefix of the header is "need more".
            for cut in 0..head.header_len {
                assert_eq!(parse_head(&out[..cut], false).unwrap(), None);
            }
        }
        assert!(parse_head(&[0xC1, 0], false).is_err(), "RSV1");
        assert!(parse_head(&[0x83, 0], false).is_err(), "opcode 3");
        assert!(
            parse_head(&[0x81, 0x80, 0, 0, 0, 0], false).is_err(),
            "masked"
        );
        assert!(parse_head(&[0x09, 0], false).is_err(), "fragmented ping");
        assert!(
            parse_head(&[0x89, 126, 0, 200], false).is_err(),
            "long ping"
        );
        // With permessage-deflate: RSV1 on a message's first frame only.
        assert!(parse_head(&[0xC1, 0], true).unwrap().unwrap().rsv1);
        assert!(parse_head(&[0x41, 0], true).unwrap().unwrap().rsv1);
        assert!(
            parse_head(&[0xC0, 0], true).is_err(),
            "RSV1 on a continuation"
        );
        assert!(parse_head(&[0xC9, 0], true).is_err(), "RSV1 on a ping");
        assert!(parse_head(&[0xA1, 0], true).is_err(), "RSV2");
    }
}
