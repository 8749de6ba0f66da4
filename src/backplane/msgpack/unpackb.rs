//! msgpack bytes to tape, as `msgpack.unpackb` (msgpack 1.x defaults:
//! `raw=False`, `strict_map_key=True`) reads them: the first half of
//! [`decode_chat_event`](super::decode_chat_event).
//!
//! Every byte is checked, whatever part of the event it is in: truncation,
//! trailing bytes, the reserved 0xc1, a str that is not UTF-8, a timestamp
//! extension that Python would refuse, a map key that is not str or bin,
//! nesting past [`MAX_DEPTH`]. Claimed lengths are checked against the bytes
//! that are there before anything is read, and containers grow only with
//! values actually read.

use super::tape::{Node, Open, Span, Tape};
use super::{DecodeError, MAX_DEPTH};

/// A container being read, with the values (keys and values for a map) to go.
struct Pending {
    open: Open,
    left: u64,
}

pub(super) struct MsgpackReader<'s> {
    src: &'s [u8],
    pos: usize,
    tape: Tape<'s>,
    stack: Vec<Pending>,
}

impl<'s> MsgpackReader<'s> {
    pub(super) fn read(src: &'s [u8]) -> Result<Tape<'s>, DecodeError> {
        if u32::try_from(src.len()).is_err() {
            return Err(DecodeError::Malformed);
        }
        let mut reader = MsgpackReader {
            src,
            pos: 0,
            tape: Tape::new(src),
            stack: Vec::with_capacity(8),
        };
        reader.values()?;
        if reader.pos != src.len() {
            return Err(DecodeError::Malformed);
        }
        Ok(reader.tape)
    }

    fn values(&mut self) -> Result<(), DecodeError> {
        loop {
            if !self.value()? {
                continue;
            }
            loop {
                let Some(top) = self.stack.last_mut() else {
                    return Ok(());
                };
                top.left -= 1;
                if top.left > 0 {
                    break;
                }
                let open = top.open;
                self.stack.pop();
                self.tape.close(open.at, open.map, open.count);
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'s [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Malformed)?;
        let bytes = self.src.get(self.pos..end).ok_or(DecodeError::Malformed)?;
        self.pos = end;
        Ok(bytes)
    }

    fn uint(&mut self, width: usize) -> Result<u64, DecodeError> {
        let bytes = self.take(width)?;
        Ok(bytes.iter().fold(0u64, |n, &b| n << 8 | u64::from(b)))
    }

    fn span(&self, len: usize) -> Span {
        Span {
            start: (self.pos - len) as u32,
            len: len as u32,
            unescaped: false,
        }
    }

    /// Reads one value, or opens a container (false) whose values come next.
    fn value(&mut self) -> Result<bool, DecodeError> {
        let marker = self.take(1)?[0];
        let at_key = matches!(self.stack.last(), Some(p) if p.open.map && p.left % 2 == 0);
        let is_str_or_bin = matches!(marker, 0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6);
        if at_key && !is_str_or_bin {
            // unpackb(strict_map_key=True) accepts only str and bytes keys.
            return Err(DecodeError::Unsupported);
        }
        let node = match marker {
            0x00..=0x7f => Node::UInt(u64::from(marker)),
            0x80..=0x8f => return self.open(true, u64::from(marker & 0x0f)),
            0x90..=0x9f => return self.open(false, u64::from(marker & 0x0f)),
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xc0 => Node::Null,
            0xc2 => Node::Bool(false),
            0xc3 => Node::Bool(true),
            0xc4..=0xc6 => {
                let n = self.uint(1 << (marker - 0xc4))? as usize;
                self.take(n)?;
                Node::Bin(self.span(n))
            }
            0xc7..=0xc9 => {
                let n = self.uint(1 << (marker - 0xc7))? as usize;
                self.ext(n)?
            }
            0xca => Node::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Node::Float(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Node::UInt(self.uint(1 << (marker - 0xcc))?),
            0xd0..=0xd3 => self.int(1 << (marker - 0xd0))?,
            0xd4..=0xd8 => self.ext(1 << (marker - 0xd4))?,
            0xd9..=0xdb => {
                let n = self.uint(1 << (marker - 0xd9))? as usize;
                self.str(n)?
            }
            0xdc | 0xdd => {
                let n = self.uint(2 << (marker - 0xdc))?;
                return self.open(false, n);
            }
            0xde | 0xdf => {
                let n = self.uint(2 << (marker - 0xde))?;
                return self.open(true, n);
            }
            0xe0..=0xff => Node::Int(i64::from(marker as i8)),
            0xc1 => return Err(DecodeError::Malformed),
        };
        self.tape.push(node);
        Ok(true)
    }

    fn int(&mut self, width: usize) -> Result<Node, DecodeError> {
        let raw = self.uint(width)?;
        // Sign-extend from `width` bytes.
        let shift = 64 - 8 * width as u32;
        let value = ((raw << shift) as i64) >> shift;
        Ok(match u64::try_from(value) {
            Ok(n) => Node::UInt(n),
            Err(_) => Node::Int(value),
        })
    }

    fn str(&mut self, n: usize) -> Result<Node, DecodeError> {
        let bytes = self.take(n)?;
        simdutf8::basic::from_utf8(bytes).map_err(|_| DecodeError::Malformed)?;
        Ok(Node::Str(self.span(n)))
    }

    fn ext(&mut self, n: usize) -> Result<Node, DecodeError> {
        let kind = self.take(1)?[0] as i8;
        let data = self.take(n)?;
        if kind == -1 && !is_timestamp(data) {
            // msgpack-python builds a Timestamp from type -1, or raises.
            return Err(DecodeError::Malformed);
        }
        Ok(Node::Ext(kind, self.span(n)))
    }

    fn open(&mut self, map: bool, count: u64) -> Result<bool, DecodeError> {
        // The event map, then the message's MAX_DEPTH levels.
        if self.stack.len() > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let at = self.tape.open();
        // A count over u32 cannot be in a msgpack header.
        let open = Open {
            at,
            count: count as u32,
            map,
        };
        if count == 0 {
            self.tape.close(at, map, 0);
            return Ok(true);
        }
        let left = if map { 2 * count } else { count };
        self.stack.push(Pending { open, left });
        Ok(false)
    }
}

/// msgpack's timestamp extension: 32, 64 or 96 bits, nanoseconds below 10^9.
fn is_timestamp(data: &[u8]) -> bool {
    let be = |b: &[u8]| b.iter().fold(0u64, |n, &x| n << 8 | u64::from(x));
    match data.len() {
        4 => true,
        8 => be(data) >> 34 < 1_000_000_000,
        12 => be(&data[..4]) < 1_000_000_000,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn decode_refusals() {
        use DecodeError::*;
        let prefix = "82a474797065ac636861745f6d657373616765a76d657373616765";
        let cases: &[(&str, DecodeError)] = &[
            ("", Malformed),
            ("c1", Malformed),
            ("82a474797065", Malformed),
            (prefix, Malformed),
            (&format!("{prefix}01ff"), Malformed),
            (&format!("{prefix}01c0"), Malformed),
            (&format!("{prefix}a2c328"), Malformed),
            (&format!("{prefix}a3eda080"), Malformed),
            (&format!("{prefix}db00000005"), Malformed),
            (&format!("{prefix}ddffffffff"), Malformed),
            (&format!("{prefix}d4ff00"), Malformed),
            (&format!("{prefix}c703ff000000"), Malformed),
            (&format!("{prefix}d7ffeeeeeeee00000000"), Malformed),
            (
                &format!("{prefix}c70cff3b9aca000000000000000000"),
                Malformed,
            ),
            (&format!("{prefix}cb00"), Malformed),
            // The type byte of a fixext is missing.
            (&format!("{prefix}d4"), Malformed),
            ("c0", NotAnEvent),
            (
                "93a474797065ac636861745f6d657373616765a76d657373616765",
                NotAnEvent,
            ),
            ("81a76d65737361676501", NotAnEvent),
            ("82a47479706501a76d65737361676501", NotAnEvent),
            (
                "82c40474797065ac636861745f6d657373616765a76d65737361676501",
                NotAnEvent,
            ),
            ("82a474797065a5686f757273a76d65737361676501", OtherType),
            (
                "82a474797065ad636861745f6d65737361676573a76d65737361676501",
                OtherType,
            ),
            (
                "82a474797065ac636861745f4d657373616765a76d65737361676501",
                OtherType,
            ),
            ("81a474797065ac636861745f6d657373616765", NoMessage),
            (
                "82a474797065ac636861745f6d657373616765c4076d65737361676501",
                NoMessage,
            ),
            (&format!("{prefix}c40101"), Unsupported),
            (&format!("{prefix}d6ff00000001"), Unsupported),
            (&format!("{prefix}d40100"), Unsupported),
            (&format!("{prefix}91c7010000"), Unsupported),
            (&format!("{prefix}81c4016101"), Unsupported),
            // Keys that unpackb(strict_map_key=True) refuses, anywhere.
            (&format!("{prefix}810101"), Unsupported),
            (&format!("{prefix}81c001"), Unsupported),
            (&format!("{prefix}819001"), Unsupported),
            (
                "8301c0a474797065ac636861745f6d657373616765a76d65737361676501",
                Unsupported,
            ),
            (
                "83a474797065ac636861745f6d657373616765a17881c30ba76d65737361676501",
                Unsupported,
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(&decode_err(&hex(payload)), want, "{payload}");
        }
    }

    #[test]
    fn decode_depth_limit() {
        let deep = |n: usize| {
            let mut payload = EVENT_PREFIX.to_vec();
            payload.resize(payload.len() + n - 1, 0x91);
            payload.push(0x90);
            payload
        };
        let want = format!(
            "{{\"message\": {}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(decode(&deep(MAX_DEPTH)), Ok(want));
        assert_eq!(decode_err(&deep(MAX_DEPTH + 1)), DecodeError::TooDeep);
        assert_eq!(decode_err(&vec![0x91; 10_000_000]), DecodeError::TooDeep);
        // Everything encode accepts, decode accepts.
        let json = format!(
            "{}1{}",
            "[{\"a\":".repeat(MAX_DEPTH / 2),
            "}]".repeat(MAX_DEPTH / 2)
        );
        let mut payload = Vec::new();
        encode_chat_event(&json, &mut payload).unwrap();
        assert!(decode(&payload).is_ok());
    }

    #[test]
    fn decode_never_allocates_by_claimed_counts() {
        let prefix = EVENT_PREFIX.to_vec();
        for claim in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff][..],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0xdb, 0xff, 0xff, 0xff, 0xff],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
            &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],
        ] {
            let mut payload = prefix.clone();
            payload.extend_from_slice(claim);
            assert_eq!(decode_err(&payload), DecodeError::Malformed);
        }
    }
}
