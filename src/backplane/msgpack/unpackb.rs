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

use super::dumps::json_str_len;
use super::tape::{Node, Open, Span, Tape};
use super::{DecodeError, MAX_DEPTH};

/// What [`MsgpackReader::read_event`] keeps of a Channels event: its
/// `"message"` on a tape (node 0), its `"user"` (if any) on another, and
/// what the consumer checks before it.
pub(super) struct Event<'s> {
    pub(super) tape: Tape<'s>,
    /// The sender's identity, when the event has a `"user"` key.
    pub(super) user: Option<Tape<'s>>,
    /// The payload is a map (the event dict).
    pub(super) is_map: bool,
    /// The last `"type"`'s str, `Some(None)` when that value is not a str.
    pub(super) kind: Option<Option<&'s [u8]>>,
    /// There is a `"message"` key.
    pub(super) has_message: bool,
}

/// A container being read, with the values (keys and values for a map) to
/// go, and whether it is on the tape.
struct Pending {
    open: Open,
    left: u64,
    kept: bool,
}

/// What the event map's value being read is to the consumer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Message,
    /// The sender's identity (SPEC section 9), written after the message.
    User,
    Type,
    Other,
}

/// `, "user": `: what an identity adds to the frame besides its value.
pub(super) const USER_SEPARATOR: &[u8] = b", \"user\": ";

pub(super) struct MsgpackReader<'s> {
    src: &'s [u8],
    pos: usize,
    tape: Tape<'s>,
    /// The event's `"user"` value, read like the message onto a tape of its
    /// own (a repeated key restarts only its own tape).
    user: Tape<'s>,
    stack: Vec<Pending>,
    /// Reading a Channels event: only the `"message"` and `"user"` values
    /// go on the tapes, everything else is checked and dropped. Otherwise
    /// every value goes on the (message) tape.
    event: bool,
    /// What the event map's next value is, from the key just read.
    slot: Slot,
    /// Which tape the kept value being read goes to: set when a kept value
    /// starts in the event map, so it stays put for all its descendants.
    kept: Slot,
    is_map: bool,
    kind: Option<Option<&'s [u8]>>,
    has_message: bool,
    has_user: bool,
    /// The least the message and the user on the tapes take as
    /// `json.dumps` text, so far (the separators within included), and the
    /// most they may take together (with [`USER_SEPARATOR`] when there is
    /// a user).
    cost: usize,
    user_cost: usize,
    budget: usize,
}

impl<'s> MsgpackReader<'s> {
    /// The whole value on a tape (tests compare it with what packb writes).
    #[cfg(test)]
    pub(super) fn read(src: &'s [u8]) -> Result<Tape<'s>, DecodeError> {
        let mut reader = MsgpackReader::new(src, false, usize::MAX)?;
        reader.values()?;
        Ok(reader.tape)
    }

    /// A Channels event: every byte checked as `unpackb` would, its
    /// `"message"` on one tape and its `"user"` on another. Once the
    /// `json.dumps` text of the two (with [`USER_SEPARATOR`] between) must
    /// be longer than `budget` bytes, reading stops with
    /// [`DecodeError::TooLarge`]: the tapes never hold more than about
    /// `budget / 2` nodes together (each node writes at least 2 bytes, its
    /// separator included, bar the first of a container).
    pub(super) fn read_event(src: &'s [u8], budget: usize) -> Result<Event<'s>, DecodeError> {
        let mut reader = MsgpackReader::new(src, true, budget)?;
        reader.values()?;
        Ok(Event {
            tape: reader.tape,
            user: reader.has_user.then_some(reader.user),
            is_map: reader.is_map,
            kind: reader.kind,
            has_message: reader.has_message,
        })
    }

    fn new(src: &'s [u8], event: bool, budget: usize) -> Result<Self, DecodeError> {
        if u32::try_from(src.len()).is_err() {
            return Err(DecodeError::Malformed);
        }
        Ok(MsgpackReader {
            src,
            pos: 0,
            tape: Tape::new(src),
            user: Tape::empty(src),
            stack: Vec::with_capacity(8),
            event,
            slot: Slot::Other,
            kept: Slot::Message,
            is_map: false,
            kind: None,
            has_message: false,
            has_user: false,
            cost: 0,
            user_cost: 0,
            budget,
        })
    }

    /// Reads the one value `src` holds, and checks nothing follows it.
    fn values(&mut self) -> Result<(), DecodeError> {
        loop {
            if !self.value()? {
                continue;
            }
            loop {
                let Some(top) = self.stack.last_mut() else {
                    return match self.pos == self.src.len() {
                        true => Ok(()),
                        false => Err(DecodeError::Malformed),
                    };
                };
                top.left -= 1;
                if top.left > 0 {
                    break;
                }
                let Pending { open, kept, .. } = *top;
                self.stack.pop();
                if kept {
                    self.kept_tape().close(open.at, open.map, open.count);
                }
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

    /// A str's bytes, borrowed from the payload rather than the tape.
    fn source(&self, span: Span) -> &'s [u8] {
        &self.src[span.start as usize..][..span.len as usize]
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
        let keep = self.keep(at_key);
        let node = match marker {
            0x00..=0x7f => Node::UInt(u64::from(marker)),
            0x80..=0x8f => return self.open(true, u64::from(marker & 0x0f), keep),
            0x90..=0x9f => return self.open(false, u64::from(marker & 0x0f), keep),
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
                return self.open(false, n, keep);
            }
            0xde | 0xdf => {
                let n = self.uint(2 << (marker - 0xde))?;
                return self.open(true, n, keep);
            }
            0xe0..=0xff => Node::Int(i64::from(marker as i8)),
            0xc1 => return Err(DecodeError::Malformed),
        };
        if keep {
            let len = min_json_len(&node, self.kept_tape());
            self.charge(len)?;
            self.kept_tape().push(node);
        } else if self.in_event_map() {
            let text = match node {
                Node::Str(span) => Some(self.source(span)),
                _ => None,
            };
            if at_key {
                self.slot = match text {
                    Some(b"message") => Slot::Message,
                    Some(b"user") => Slot::User,
                    Some(b"type") => Slot::Type,
                    _ => Slot::Other,
                };
            } else if self.slot == Slot::Type {
                self.kind = Some(text);
            }
        }
        Ok(true)
    }

    /// The event map is the innermost container.
    fn in_event_map(&self) -> bool {
        self.event && self.stack.len() == 1 && self.is_map
    }

    /// Whether the value starting now goes on a tape; when it is the
    /// event's `"message"` or `"user"`, that key's tape restarts with it (a
    /// later repeated key's value is the one `unpackb` keeps).
    fn keep(&mut self, at_key: bool) -> bool {
        if !self.event {
            return true;
        }
        match self.stack.last() {
            None => false,
            Some(_) if self.in_event_map() => {
                if at_key || !matches!(self.slot, Slot::Message | Slot::User) {
                    return false;
                }
                self.kept = self.slot;
                match self.slot {
                    Slot::User => {
                        self.user_cost = 0;
                        self.has_user = true;
                    }
                    _ => {
                        self.cost = 0;
                        self.has_message = true;
                    }
                }
                let tape = self.kept_tape();
                tape.nodes.clear();
                tape.order.clear();
                true
            }
            Some(top) => top.kept,
        }
    }

    /// The tape the kept value being read goes to.
    fn kept_tape(&mut self) -> &mut Tape<'s> {
        match self.kept {
            Slot::User => &mut self.user,
            _ => &mut self.tape,
        }
    }

    /// Adds a kept node's least `json.dumps` length, with the separator
    /// before it, to its value's cost, and checks the frame's total.
    fn charge(&mut self, len: usize) -> Result<(), DecodeError> {
        let separator = match self.stack.last() {
            Some(p) if p.kept => {
                let declared = if p.open.map { 2 } else { 1 } * u64::from(p.open.count);
                let index = declared - p.left;
                match (p.open.map, index) {
                    (false, 0) => 0,
                    // ", " before it.
                    (false, _) => 2,
                    // ": " after a key, and ", " before it but the first.
                    (true, 0) => 2,
                    (true, i) if i % 2 == 0 => 4,
                    (true, _) => 0,
                }
            }
            _ => 0,
        };
        let cost = match self.kept {
            Slot::User => &mut self.user_cost,
            _ => &mut self.cost,
        };
        *cost = cost.saturating_add(len + separator);
        let user = match self.has_user {
            true => USER_SEPARATOR.len().saturating_add(self.user_cost),
            false => 0,
        };
        if self.cost.saturating_add(user) > self.budget {
            return Err(DecodeError::TooLarge);
        }
        Ok(())
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

    fn open(&mut self, map: bool, count: u64, keep: bool) -> Result<bool, DecodeError> {
        // The event map, then the message's MAX_DEPTH levels.
        if self.stack.len() > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        if self.event && self.stack.is_empty() {
            self.is_map = map;
        } else if self.in_event_map() && self.slot == Slot::Type {
            self.kind = Some(None);
        }
        let at = if keep {
            // "[]" or "{}".
            self.charge(2)?;
            self.kept_tape().open()
        } else {
            0
        };
        // A count over u32 cannot be in a msgpack header.
        let open = Open {
            at,
            count: count as u32,
            map,
        };
        if count == 0 {
            if keep {
                self.kept_tape().close(at, map, 0);
            }
            return Ok(true);
        }
        let left = if map { 2 * count } else { count };
        self.stack.push(Pending {
            open,
            left,
            kept: keep,
        });
        Ok(false)
    }
}

/// The fewest bytes `json.dumps` can write for `node` (containers: their
/// brackets), exactly for ints and strings. Bin and ext are never written
/// (they are refused), but they cost their size so they are not free.
fn min_json_len(node: &Node, tape: &Tape<'_>) -> usize {
    match *node {
        Node::Null | Node::Bool(true) => 4,
        Node::Bool(false) => 5,
        Node::UInt(n) => decimal_len(n),
        Node::Int(n) => 1 + decimal_len(n.unsigned_abs()),
        // "0.0"; repr may be longer, which the writer checks as it goes.
        Node::Float(_) => 3,
        Node::Str(span) => json_str_len(tape.bytes(span)),
        Node::Bin(span) | Node::Ext(_, span) => 2 + span.len as usize,
        Node::Array { .. } | Node::Map { .. } => 2,
        Node::BigInt | Node::LoneSurrogate => 1,
    }
}

fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
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

    /// Issue 13, D8: an event whose message cannot come out under the
    /// budget stops being read as soon as that is certain, with no more
    /// than about `budget / 2` nodes on the tape, whatever the payload says.
    #[test]
    fn read_event_stops_at_the_budget() {
        let n: u32 = 100_000;
        let mut payload = EVENT_PREFIX.to_vec();
        payload.push(0xdd);
        payload.extend_from_slice(&n.to_be_bytes());
        payload.resize(payload.len() + n as usize, 0x00);
        for budget in [0, 1, 2, 3, 1000, 65_536] {
            let mut reader = MsgpackReader::new(&payload, true, budget).unwrap();
            assert_eq!(reader.values(), Err(DecodeError::TooLarge), "{budget}");
            assert!(
                reader.tape.nodes.len() <= budget / 2 + 2,
                "{budget}: {}",
                reader.tape.nodes.len()
            );
        }
        // "[0, 0, ..., 0]" is 3n - 2 + 2 bytes: the budget that fits it.
        let fits = 3 * n as usize;
        let event = MsgpackReader::read_event(&payload, fits).unwrap();
        assert_eq!(event.tape.nodes.len(), n as usize + 1);
        assert!(matches!(
            MsgpackReader::read_event(&payload, fits - 1),
            Err(DecodeError::TooLarge)
        ));
    }

    /// Only the message is kept and counted: other keys of the event, however
    /// big, are checked and dropped, and a repeated "message" starts over.
    #[test]
    fn read_event_keeps_only_the_message() {
        let mut payload = hex("83a474797065ac636861745f6d657373616765a5657874726add00010000");
        payload.resize(payload.len() + 65_536, 0xc0);
        payload.extend(hex("a76d657373616765a26869"));
        let event = MsgpackReader::read_event(&payload, 4).unwrap();
        assert_eq!(event.tape.nodes.len(), 1);
        assert_eq!(event.kind, Some(Some(&b"chat_message"[..])));
        assert!(event.is_map && event.has_message);
        // The checks still reach the dropped parts.
        let mut bad = payload.clone();
        bad[40] = 0xc1;
        assert!(matches!(
            MsgpackReader::read_event(&bad, 4),
            Err(DecodeError::Malformed)
        ));
        // Two "message" keys: the tape holds the last one only.
        let twice = hex(
            "83a474797065ac636861745f6d657373616765a76d65737361676593010203a76d657373616765a178",
        );
        let event = MsgpackReader::read_event(&twice, 100).unwrap();
        assert_eq!(event.tape.nodes.len(), 1);
    }
}
