//! The Channels event payload on the Redis backplane, sans-IO.
//!
//! channels_redis's `RedisPubSubChannelLayer` publishes each `group_send` as
//! `msgpack.packb(event)`, and the `ChatConsumer` turns a received event into
//! the frame `json.dumps({"message": event["message"]})`. Relays and Python
//! workers share the same Redis channels, so both directions here are byte
//! for byte what Python (msgpack 1.x, `json` with default arguments) does:
//!
//! - [`encode_chat_event`] takes the raw JSON text of a chat message's value
//!   and writes `packb({"type": "chat_message", "message": json.loads(text)})`:
//!   smallest int forms, float64 for every float, str8/16/32 for strings,
//!   fix/16/32 arrays and maps. JSON numbers without `.`, `e` or `E` are
//!   Python ints (`-0` is `0`) and must fit in `i64` or `u64`; the others are
//!   correctly rounded floats (`1e400` is infinity, as in Python). Strings are
//!   unescaped, surrogate pairs joined. An object with a repeated key is a
//!   Python dict: the key keeps its first position and takes its last value.
//!   Values `json.loads` reads but `packb` refuses (an integer past 64 bits:
//!   [`EncodeError::IntegerOutOfRange`]; a string with an unpaired surrogate,
//!   which cannot be UTF-8: [`EncodeError::InvalidJson`]) are errors only if
//!   they survive, as in Python: a later repeated key may drop them. Syntax
//!   errors anywhere come first, as `json.loads` runs before `packb`.
//! - [`decode_chat_event`] checks the whole payload as `msgpack.unpackb`
//!   (defaults: `raw=False`, `strict_map_key=True`) would: any truncation,
//!   trailing byte, reserved byte (0xc1), non-UTF-8 str, or timestamp
//!   extension (type -1) with a bad length or nanoseconds is
//!   [`DecodeError::Malformed`]; a map key that is not str or bin (anywhere)
//!   is [`DecodeError::Unsupported`]. Then, as the consumer dispatches, the
//!   event must be a map whose `"type"` is a str naming the `chat_message`
//!   handler: Channels replaces `.` with `_`, so `"chat.message"` is
//!   delivered too. Its `"message"` is written as `json.dumps` does:
//!   `", "` and `": "` separators, `ensure_ascii` escapes (`\uXXXX` in lower
//!   case, surrogate pairs above U+FFFF), every int in full, floats as
//!   `float.__repr__` (float32 widened first).
//!
//! Deliberate differences from Python, all on inputs a chat client or a
//! Channels worker does not produce:
//!
//! - NaN and ±infinity become `null`: Python writes `NaN`/`Infinity`, which
//!   is not JSON and which browsers' `JSON.parse` rejects.
//! - Nesting is limited to [`MAX_DEPTH`] containers inside the message
//!   (Python allows 511 in `packb` and about 1000 in `json`); deeper is
//!   [`EncodeError::TooDeep`] / [`DecodeError::TooDeep`], also where a
//!   repeated key would drop the deep value. The limit is the same both ways
//!   (the event map is not counted), so every event encoded here decodes
//!   here.
//! - Inputs of 4 GiB or more are refused (as invalid JSON or malformed).
//!
//! Both directions are linear in the input's size and never recurse beyond
//! the depth limit: the input is read once into a flat tape of nodes (16
//! bytes each, growing only with bytes actually read, never by a claimed
//! length), repeated keys are resolved once per map with a hash set sized by
//! the keys actually present, and the tape is then written out once. On
//! error `out` is left as it was.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};

/// The most containers nested inside a chat message, both ways.
pub const MAX_DEPTH: usize = 128;

/// What [`encode_chat_event`] writes before the message value:
/// `{"type": "chat_message", "message": ` as msgpack.
pub const EVENT_PREFIX: &[u8] = b"\x82\xa4type\xacchat_message\xa7message";

/// Why a chat message cannot be carried as msgpack (the sender gets this as an error frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// An integer outside the 64-bit range msgpack (and Python's msgpack.packb) can carry.
    IntegerOutOfRange,
    /// Not valid JSON (should not happen: the input already passed chat::decode).
    InvalidJson,
    /// Nested deeper than the limit.
    TooDeep,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::IntegerOutOfRange => {
                "the message holds an integer outside the 64-bit range, \
                 which the Redis backplane (msgpack) cannot carry"
            }
            EncodeError::InvalidJson => {
                "the message is not JSON the Redis backplane (msgpack) can carry \
                 (for example, a string with an unpaired surrogate escape such as \\ud800)"
            }
            EncodeError::TooDeep => {
                "the message is nested more than 128 levels deep, \
                 more than the Redis backplane (msgpack) carries"
            }
        })
    }
}

impl std::error::Error for EncodeError {}

/// Why an event from Redis is not delivered (counted by reason, never panics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not msgpack, truncated, trailing bytes, or a string that is not UTF-8.
    Malformed,
    /// Valid msgpack that is not a map with a string "type".
    NotAnEvent,
    /// An event whose "type" is not "chat_message".
    OtherType,
    /// A chat_message without a "message" key.
    NoMessage,
    /// A value JSON cannot carry the way Channels' consumer would (bin, ext, non-string map keys).
    Unsupported,
    /// Nested deeper than the limit.
    TooDeep,
}

impl DecodeError {
    /// A short label for metrics (`reason="..."`).
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::Malformed => "malformed",
            DecodeError::NotAnEvent => "not_an_event",
            DecodeError::OtherType => "other_type",
            DecodeError::NoMessage => "no_message",
            DecodeError::Unsupported => "unsupported",
            DecodeError::TooDeep => "too_deep",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::Malformed => "not a valid msgpack payload",
            DecodeError::NotAnEvent => "not a Channels event (a map with a str \"type\")",
            DecodeError::OtherType => "an event for another handler than chat_message",
            DecodeError::NoMessage => "a chat_message event without \"message\"",
            DecodeError::Unsupported => "a value JSON cannot carry (bin, ext or a non-str key)",
            DecodeError::TooDeep => "nested more than 128 levels deep",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Encodes `{"type": "chat_message", "message": <message_json>}` as Python's
/// `msgpack.packb` would encode what `json.loads` made of it.
pub fn encode_chat_event(message_json: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let tape = JsonReader::read(message_json)?;
    let start = out.len();
    out.reserve(EVENT_PREFIX.len() + message_json.len() + 8);
    out.extend_from_slice(EVENT_PREFIX);
    match write_msgpack(&tape, 0, out) {
        Ok(_) => Ok(()),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Decodes a Channels event and appends the JSON text of `{"message": value}`
/// byte for byte as Python's `json.dumps({"message": value})` writes it.
pub fn decode_chat_event(payload: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let tape = MsgpackReader::read(payload)?;
    let message = chat_message(&tape)?;
    let start = out.len();
    out.reserve(payload.len() + 16);
    out.extend_from_slice(b"{\"message\": ");
    match write_json(&tape, message, out) {
        Ok(_) => {
            out.push(b'}');
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// The node of the event's "message", after the checks the consumer makes.
fn chat_message(tape: &Tape<'_>) -> Result<usize, DecodeError> {
    if !matches!(tape.nodes[0], Node::Map { .. }) {
        return Err(DecodeError::NotAnEvent);
    }
    let (mut kind, mut message) = (None, None);
    for (k, v) in tape.entries(0) {
        match tape.str_at(k) {
            Some(b"type") => kind = Some(v),
            Some(b"message") => message = Some(v),
            _ => {}
        }
    }
    let kind = kind
        .and_then(|v| tape.str_at(v))
        .ok_or(DecodeError::NotAnEvent)?;
    // Channels' get_handler_name: `type.replace(".", "_")` names the method.
    let handler = kind.iter().map(|&b| if b == b'.' { b'_' } else { b });
    if !handler.eq(b"chat_message".iter().copied()) {
        return Err(DecodeError::OtherType);
    }
    message.ok_or(DecodeError::NoMessage)
}

// ---------------------------------------------------------------------------
// The tape: a value tree flattened in document order.

/// Bytes of a string, in the input or (for JSON strings with escapes) in
/// [`Tape::text`].
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    start: u32,
    len: u32,
    unescaped: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    /// Below zero; `UInt` holds the rest, the split msgpack makes.
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Span),
    Bin(Span),
    Ext(i8, Span),
    /// `end`: the index just past the last descendant.
    Array {
        len: u32,
        end: u32,
    },
    /// `len` counts distinct keys. `order` is [`WIRE_ORDER`] when the keys
    /// are distinct, else where its (key, value) pairs start in [`Tape::order`].
    Map {
        len: u32,
        end: u32,
        order: u32,
    },
    /// JSON only: values `json.loads` reads but `packb` refuses, an error
    /// only if no later repeated key drops them.
    BigInt,
    LoneSurrogate,
}

const WIRE_ORDER: u32 = u32::MAX;

/// Maps with more keys than this find repeats by hashing rather than pairwise.
const PAIRWISE_KEYS: usize = 8;

struct Tape<'s> {
    source: &'s [u8],
    text: Vec<u8>,
    nodes: Vec<Node>,
    /// For each map with repeated keys: its (key, value) node indices in
    /// Python dict order (first position, last value).
    order: Vec<u32>,
}

/// A map key as a Python dict sees it: `"a"` and `b"a"` differ.
type Key<'t> = (bool, &'t [u8]);

impl<'s> Tape<'s> {
    fn new(source: &'s [u8]) -> Self {
        Tape {
            source,
            text: Vec::new(),
            nodes: Vec::with_capacity(16),
            order: Vec::new(),
        }
    }

    fn bytes(&self, span: Span) -> &[u8] {
        let range = span.start as usize..span.start as usize + span.len as usize;
        if span.unescaped {
            &self.text[range]
        } else {
            &self.source[range]
        }
    }

    fn str_at(&self, at: usize) -> Option<&[u8]> {
        match self.nodes[at] {
            Node::Str(span) => Some(self.bytes(span)),
            _ => None,
        }
    }

    fn key(&self, at: usize) -> Key<'_> {
        match self.nodes[at] {
            Node::Str(span) => (false, self.bytes(span)),
            Node::Bin(span) => (true, self.bytes(span)),
            // The msgpack reader lets only str and bin through as keys. JSON
            // keys with unpaired surrogates all land here: whichever
            // survives fails packb anyway.
            _ => (true, &[]),
        }
    }

    /// The index just past node `at` and its descendants.
    fn after(&self, at: usize) -> usize {
        match self.nodes[at] {
            Node::Array { end, .. } | Node::Map { end, .. } => end as usize,
            _ => at + 1,
        }
    }

    fn push(&mut self, node: Node) {
        self.nodes.push(node);
    }

    /// Pushes a container whose size is filled in by `close`.
    fn open(&mut self) -> usize {
        self.nodes.push(Node::Null);
        self.nodes.len() - 1
    }

    fn close(&mut self, at: usize, map: bool, count: u32) {
        let end = self.nodes.len() as u32;
        self.nodes[at] = if !map {
            Node::Array { len: count, end }
        } else if count > 1 && self.has_repeated_keys(at, count) {
            let (len, order) = self.dict_order(at, count);
            Node::Map { len, end, order }
        } else {
            Node::Map {
                len: count,
                end,
                order: WIRE_ORDER,
            }
        };
    }

    fn wire_entries(&self, at: usize, pairs: u32) -> WireEntries<'_, 's> {
        WireEntries {
            tape: self,
            next: at + 1,
            left: pairs,
        }
    }

    fn has_repeated_keys(&self, at: usize, pairs: u32) -> bool {
        let pairs = pairs as usize;
        if pairs <= PAIRWISE_KEYS {
            let mut keys = [(false, &[][..]); PAIRWISE_KEYS];
            for (i, (k, _)) in self.wire_entries(at, pairs as u32).enumerate() {
                keys[i] = self.key(k);
                if keys[..i].contains(&keys[i]) {
                    return true;
                }
            }
            return false;
        }
        let mut seen = HashSet::with_capacity(pairs);
        !self
            .wire_entries(at, pairs as u32)
            .all(|(k, _)| seen.insert(self.key(k)))
    }

    /// Records the map's pairs in dict order; returns (distinct keys, start in `order`).
    fn dict_order(&mut self, at: usize, pairs: u32) -> (u32, u32) {
        let mut slots: HashMap<Key<'_>, usize> = HashMap::with_capacity(pairs as usize);
        let mut entries: Vec<[u32; 2]> = Vec::with_capacity(pairs as usize);
        for (k, v) in self.wire_entries(at, pairs) {
            match slots.entry(self.key(k)) {
                Entry::Occupied(slot) => entries[*slot.get()][1] = v as u32,
                Entry::Vacant(slot) => {
                    slot.insert(entries.len());
                    entries.push([k as u32, v as u32]);
                }
            }
        }
        drop(slots);
        let start = self.order.len() as u32;
        self.order.extend(entries.iter().flatten());
        (entries.len() as u32, start)
    }

    /// A map's (key, value) node indices in dict order.
    fn entries(&self, at: usize) -> Entries<'_, 's> {
        match self.nodes[at] {
            Node::Map { len, order, .. } if order != WIRE_ORDER => {
                let start = order as usize;
                Entries::Ordered(self.order[start..start + 2 * len as usize].chunks_exact(2))
            }
            Node::Map { len, .. } => Entries::Wire(self.wire_entries(at, len)),
            _ => Entries::Wire(self.wire_entries(at, 0)),
        }
    }
}

struct WireEntries<'t, 's> {
    tape: &'t Tape<'s>,
    next: usize,
    left: u32,
}

impl Iterator for WireEntries<'_, '_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.next;
        self.next = self.tape.after(key + 1);
        Some((key, key + 1))
    }
}

enum Entries<'t, 's> {
    Wire(WireEntries<'t, 's>),
    Ordered(std::slice::ChunksExact<'t, u32>),
}

impl Iterator for Entries<'_, '_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        match self {
            Entries::Wire(wire) => wire.next(),
            Entries::Ordered(pairs) => pairs.next().map(|p| (p[0] as usize, p[1] as usize)),
        }
    }
}

/// A container being read: its node, and values (or pairs) so far.
#[derive(Clone, Copy)]
struct Open {
    at: usize,
    count: u32,
    map: bool,
}

// ---------------------------------------------------------------------------
// JSON text to tape, as `json.loads` reads it.

struct JsonReader<'s> {
    src: &'s str,
    pos: usize,
    tape: Tape<'s>,
    stack: Vec<Open>,
    /// The string being read holds an unpaired surrogate escape.
    lone_surrogate: bool,
}

impl<'s> JsonReader<'s> {
    fn read(src: &'s str) -> Result<Tape<'s>, EncodeError> {
        if u32::try_from(src.len()).is_err() {
            return Err(EncodeError::InvalidJson);
        }
        let mut reader = JsonReader {
            src,
            pos: 0,
            tape: Tape::new(src.as_bytes()),
            stack: Vec::with_capacity(8),
            lone_surrogate: false,
        };
        reader.document()?;
        Ok(reader.tape)
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Result<(), EncodeError> {
        match self.bump() {
            Some(got) if got == b => Ok(()),
            _ => Err(EncodeError::InvalidJson),
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Values one after another, with an explicit stack of open containers.
    fn document(&mut self) -> Result<(), EncodeError> {
        loop {
            self.skip_ws();
            if !self.begin_value()? {
                continue;
            }
            // A value is complete: what follows it in its container?
            loop {
                let Some(top) = self.stack.last_mut() else {
                    self.skip_ws();
                    return match self.peek() {
                        None => Ok(()),
                        Some(_) => Err(EncodeError::InvalidJson),
                    };
                };
                top.count += 1;
                let map = top.map;
                self.skip_ws();
                match (self.bump(), map) {
                    (Some(b','), false) => break,
                    (Some(b','), true) => {
                        self.member_key()?;
                        break;
                    }
                    (Some(b']'), false) | (Some(b'}'), true) => self.close(),
                    _ => return Err(EncodeError::InvalidJson),
                }
            }
        }
    }

    /// Reads a scalar or an empty container (true), or opens a container
    /// whose first value comes next (false).
    fn begin_value(&mut self) -> Result<bool, EncodeError> {
        match self.peek() {
            Some(b'[') => return self.begin_container(false, b']'),
            Some(b'{') => return self.begin_container(true, b'}'),
            Some(b'"') => self.string()?,
            Some(b't') => self.literal("true", Node::Bool(true))?,
            Some(b'f') => self.literal("false", Node::Bool(false))?,
            Some(b'n') => self.literal("null", Node::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(EncodeError::InvalidJson),
        }
        Ok(true)
    }

    /// Opens a container; true if it is empty (and so closed already).
    fn begin_container(&mut self, map: bool, closer: u8) -> Result<bool, EncodeError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(EncodeError::TooDeep);
        }
        self.pos += 1;
        let at = self.tape.open();
        self.stack.push(Open { at, count: 0, map });
        self.skip_ws();
        if self.peek() == Some(closer) {
            self.pos += 1;
            self.close();
            return Ok(true);
        }
        if map {
            self.member_key()?;
        }
        Ok(false)
    }

    fn close(&mut self) {
        if let Some(open) = self.stack.pop() {
            self.tape.close(open.at, open.map, open.count);
        }
    }

    fn member_key(&mut self) -> Result<(), EncodeError> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(EncodeError::InvalidJson);
        }
        self.string()?;
        self.skip_ws();
        self.expect(b':')
    }

    fn literal(&mut self, word: &str, node: Node) -> Result<(), EncodeError> {
        if !self.src[self.pos..].starts_with(word) {
            return Err(EncodeError::InvalidJson);
        }
        self.pos += word.len();
        self.tape.push(node);
        Ok(())
    }

    fn string(&mut self) -> Result<(), EncodeError> {
        self.pos += 1;
        let start = self.pos;
        let (stop, b) = self.scan_string()?;
        if b == b'"' {
            self.pos = stop + 1;
            self.tape.push(Node::Str(Span {
                start: start as u32,
                len: (stop - start) as u32,
                unescaped: false,
            }));
            return Ok(());
        }
        let text_start = self.tape.text.len();
        self.tape
            .text
            .extend_from_slice(&self.src.as_bytes()[start..stop]);
        self.pos = stop;
        self.lone_surrogate = false;
        self.unescape_rest()?;
        if self.lone_surrogate {
            self.tape.text.truncate(text_start);
            self.tape.push(Node::LoneSurrogate);
            return Ok(());
        }
        self.tape.push(Node::Str(Span {
            start: text_start as u32,
            len: (self.tape.text.len() - text_start) as u32,
            unescaped: true,
        }));
        Ok(())
    }

    /// The next `"` or `\` from `pos`, and which; control characters are not JSON.
    fn scan_string(&self) -> Result<(usize, u8), EncodeError> {
        let rest = &self.src.as_bytes()[self.pos..];
        match rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        {
            Some(i) if rest[i] >= 0x20 => Ok((self.pos + i, rest[i])),
            _ => Err(EncodeError::InvalidJson),
        }
    }

    /// From a `\` to the closing quote, appending the string to `tape.text`.
    fn unescape_rest(&mut self) -> Result<(), EncodeError> {
        loop {
            let (stop, b) = self.scan_string()?;
            let run = &self.src.as_bytes()[self.pos..stop];
            self.tape.text.extend_from_slice(run);
            self.pos = stop + 1;
            if b == b'"' {
                return Ok(());
            }
            self.escape()?;
        }
    }

    fn escape(&mut self) -> Result<(), EncodeError> {
        let c = match self.bump() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\x08',
            Some(b'f') => '\x0c',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => match self.unicode_escape()? {
                Some(c) => c,
                None => {
                    self.lone_surrogate = true;
                    return Ok(());
                }
            },
            _ => return Err(EncodeError::InvalidJson),
        };
        let mut utf8 = [0; 4];
        self.tape
            .text
            .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        Ok(())
    }

    /// After `\u`: a code point, joining a surrogate pair, or `None` for
    /// an unpaired surrogate (which Python's json keeps, and packb refuses).
    fn unicode_escape(&mut self) -> Result<Option<char>, EncodeError> {
        let unit = self.hex4()?;
        if !(0xD800..=0xDBFF).contains(&unit) {
            return Ok(char::from_u32(unit));
        }
        if !self.src[self.pos..].starts_with("\\u") {
            return Ok(None);
        }
        self.pos += 2;
        let low = self.hex4()?;
        if !(0xDC00..=0xDFFF).contains(&low) {
            // As Python's scanner: the second escape is read again on its own.
            self.pos -= 6;
            return Ok(None);
        }
        Ok(char::from_u32(
            0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00),
        ))
    }

    fn hex4(&mut self) -> Result<u32, EncodeError> {
        let digits = self.src.as_bytes().get(self.pos..self.pos + 4);
        let digits = digits.ok_or(EncodeError::InvalidJson)?;
        let mut value = 0;
        for &d in digits {
            let nibble = (d as char).to_digit(16).ok_or(EncodeError::InvalidJson)?;
            value = value << 4 | nibble;
        }
        self.pos += 4;
        Ok(value)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as Python's NUMBER_RE.
    fn number(&mut self) -> Result<(), EncodeError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        self.pos += usize::from(negative);
        let int_start = self.pos;
        match self.bump() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(EncodeError::InvalidJson),
        }
        let int_end = self.pos;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            float = true;
            if self.digits() == 0 {
                return Err(EncodeError::InvalidJson);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            float = true;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(EncodeError::InvalidJson);
            }
        }
        let node = if float {
            // Correctly rounded, overflowing to infinity, as Python's float().
            let value = self.src[start..self.pos].parse::<f64>();
            Node::Float(value.map_err(|_| EncodeError::InvalidJson)?)
        } else {
            self.integer(negative, &self.src.as_bytes()[int_start..int_end])
        };
        self.tape.push(node);
        Ok(())
    }

    fn integer(&self, negative: bool, digits: &[u8]) -> Node {
        let magnitude = digits.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        let node = match magnitude {
            Some(m) if !negative => Some(Node::UInt(m)),
            Some(0) => Some(Node::UInt(0)),
            Some(m) => 0i64.checked_sub_unsigned(m).map(Node::Int),
            None => None,
        };
        node.unwrap_or(Node::BigInt)
    }
}

// ---------------------------------------------------------------------------
// msgpack bytes to tape, as `msgpack.unpackb` reads them.

/// A container being read, with the values (keys and values for a map) to go.
struct Pending {
    open: Open,
    left: u64,
}

struct MsgpackReader<'s> {
    src: &'s [u8],
    pos: usize,
    tape: Tape<'s>,
    stack: Vec<Pending>,
}

impl<'s> MsgpackReader<'s> {
    fn read(src: &'s [u8]) -> Result<Tape<'s>, DecodeError> {
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

// ---------------------------------------------------------------------------
// Tape to msgpack, as `msgpack.packb` writes it.

/// Writes node `at` and its descendants; returns the index after them.
fn write_msgpack(tape: &Tape<'_>, at: usize, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    match tape.nodes[at] {
        Node::Null => out.push(0xc0),
        Node::Bool(b) => out.push(0xc2 | u8::from(b)),
        Node::UInt(n) => write_uint(out, n),
        Node::Int(n) => write_int(out, n),
        Node::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Node::Str(span) => {
            write_header(
                out,
                span.len,
                Some((0xa0, 32)),
                [Some(0xd9), Some(0xda), Some(0xdb)],
            );
            out.extend_from_slice(tape.bytes(span));
        }
        Node::Bin(span) => {
            write_header(out, span.len, None, [Some(0xc4), Some(0xc5), Some(0xc6)]);
            out.extend_from_slice(tape.bytes(span));
        }
        Node::Ext(kind, span) => write_ext(out, kind, tape.bytes(span)),
        Node::BigInt => return Err(EncodeError::IntegerOutOfRange),
        // Python's packb: UnicodeEncodeError, surrogates not allowed.
        Node::LoneSurrogate => return Err(EncodeError::InvalidJson),
        Node::Array { len, end } => {
            write_header(out, len, Some((0x90, 16)), [None, Some(0xdc), Some(0xdd)]);
            let mut next = at + 1;
            for _ in 0..len {
                next = write_msgpack(tape, next, out)?;
            }
            return Ok(end as usize);
        }
        Node::Map { len, end, .. } => {
            write_header(out, len, Some((0x80, 16)), [None, Some(0xde), Some(0xdf)]);
            for (k, v) in tape.entries(at) {
                write_msgpack(tape, k, out)?;
                write_msgpack(tape, v, out)?;
            }
            return Ok(end as usize);
        }
    }
    Ok(at + 1)
}

/// The smallest header for `len`: a fix form below `fix.1`, else the first
/// of the 8/16/32-bit forms that the type has and `len` fits.
fn write_header(out: &mut Vec<u8>, len: u32, fix: Option<(u8, u32)>, sized: [Option<u8>; 3]) {
    if let Some((base, _)) = fix.filter(|&(_, limit)| len < limit) {
        out.push(base | len as u8);
    } else if let (Some(code), Ok(n)) = (sized[0], u8::try_from(len)) {
        out.extend_from_slice(&[code, n]);
    } else if let (Some(code), Ok(n)) = (sized[1], u16::try_from(len)) {
        out.push(code);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Some(code) = sized[2] {
        out.push(code);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

fn write_ext(out: &mut Vec<u8>, kind: i8, data: &[u8]) {
    let fixed = match data.len() {
        1 => Some(0xd4),
        2 => Some(0xd5),
        4 => Some(0xd6),
        8 => Some(0xd7),
        16 => Some(0xd8),
        _ => None,
    };
    match fixed {
        Some(code) => out.push(code),
        None => write_header(
            out,
            data.len() as u32,
            None,
            [Some(0xc7), Some(0xc8), Some(0xc9)],
        ),
    }
    out.push(kind as u8);
    out.extend_from_slice(data);
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        out.push(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xcc, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xcd);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0xce);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    if let Ok(n) = u64::try_from(n) {
        write_uint(out, n);
    } else if n >= -32 {
        out.push(n as u8);
    } else if let Ok(n) = i8::try_from(n) {
        out.extend_from_slice(&[0xd0, n as u8]);
    } else if let Ok(n) = i16::try_from(n) {
        out.push(0xd1);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = i32::try_from(n) {
        out.push(0xd2);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

// ---------------------------------------------------------------------------
// Tape to JSON text, as `json.dumps` writes it.

/// Writes node `at` and its descendants; returns the index after them.
fn write_json(tape: &Tape<'_>, at: usize, out: &mut Vec<u8>) -> Result<usize, DecodeError> {
    match tape.nodes[at] {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::UInt(n) => crate::resp::push_decimal(out, n),
        Node::Int(n) => {
            out.push(b'-');
            crate::resp::push_decimal(out, n.unsigned_abs());
        }
        Node::Float(f) => write_py_float(out, f),
        Node::Str(span) => write_json_str(out, tape.bytes(span)),
        Node::Bin(_) | Node::Ext(..) | Node::BigInt | Node::LoneSurrogate => {
            return Err(DecodeError::Unsupported)
        }
        Node::Array { len, end } => {
            out.push(b'[');
            let mut next = at + 1;
            for i in 0..len {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                next = write_json(tape, next, out)?;
            }
            out.push(b']');
            return Ok(end as usize);
        }
        Node::Map { end, .. } => {
            out.push(b'{');
            for (i, (k, v)) in tape.entries(at).enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                // bytes keys survive unpackb but not json.dumps.
                let key = tape.str_at(k).ok_or(DecodeError::Unsupported)?;
                write_json_str(out, key);
                out.extend_from_slice(b": ");
                write_json(tape, v, out)?;
            }
            out.push(b'}');
            return Ok(end as usize);
        }
    }
    Ok(at + 1)
}

/// `json.dumps` with `ensure_ascii=True`: only ' ' to '~' go out as they are.
/// `s` is UTF-8 (checked when read).
fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        out.extend_from_slice(&s[run..i]);
        if let Some(short) = short_escape(b) {
            out.extend_from_slice(short);
            i += 1;
        } else {
            let (code, width) = decode_char(&s[i..]);
            write_utf16_escapes(out, code);
            i = (i + width).min(s.len());
        }
        run = i;
    }
    out.extend_from_slice(&s[run..]);
    out.push(b'"');
}

fn short_escape(b: u8) -> Option<&'static [u8]> {
    Some(match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => return None,
    })
}

/// The code point at the start of valid UTF-8 `s`, and its length.
fn decode_char(s: &[u8]) -> (u32, usize) {
    let lead = u32::from(s[0]);
    let cont = |k: usize| u32::from(s.get(k).copied().unwrap_or(0x80) & 0x3f);
    match s[0] {
        0x00..=0x7f => (lead, 1),
        0xc0..=0xdf => ((lead & 0x1f) << 6 | cont(1), 2),
        0xe0..=0xef => ((lead & 0x0f) << 12 | cont(1) << 6 | cont(2), 3),
        _ => (
            (lead & 0x07) << 18 | cont(1) << 12 | cont(2) << 6 | cont(3),
            4,
        ),
    }
}

fn write_utf16_escapes(out: &mut Vec<u8>, code: u32) {
    if code >= 0x10000 {
        let v = code - 0x10000;
        write_u_escape(out, 0xd800 | (v >> 10));
        write_u_escape(out, 0xdc00 | (v & 0x3ff));
    } else {
        write_u_escape(out, code);
    }
}

fn write_u_escape(out: &mut Vec<u8>, unit: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[(unit >> shift & 0xf) as usize]);
    }
}

/// Python's `float.__repr__`, or `null` for NaN and infinities.
fn write_py_float(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    // `{:e}` has the shortest digits that read back as `f` (ties to the
    // closest), the same digits as repr; only the layout differs.
    let mut buf = StackText::default();
    if write!(buf, "{f:e}").is_err() {
        out.extend_from_slice(b"null");
        return;
    }
    let text = buf.as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (&text[..e], &text[e + 1..]),
        None => (text, &b"0"[..]),
    };
    let exponent = std::str::from_utf8(exponent)
        .ok()
        .and_then(|x| x.parse().ok());
    let mut digits = StackText::default();
    for &d in mantissa.iter().filter(|&&d| d != b'.') {
        let _ = digits.write_char(char::from(d));
    }
    if negative {
        out.push(b'-');
    }
    layout_py_float(out, digits.as_bytes(), exponent.unwrap_or(0));
}

/// repr's layout of `0.DIGITS x 10^(exponent + 1)`: positional when
/// `-4 <= exponent < 16`, else `d.ddde+XX` with at least two exponent digits.
fn layout_py_float(out: &mut Vec<u8>, digits: &[u8], exponent: i32) {
    let point = exponent + 1;
    let n = digits.len() as i32;
    if (-4..16).contains(&exponent) {
        if point <= 0 {
            out.extend_from_slice(b"0.");
            out.resize(out.len() + (-point) as usize, b'0');
            out.extend_from_slice(digits);
        } else if point < n {
            out.extend_from_slice(&digits[..point as usize]);
            out.push(b'.');
            out.extend_from_slice(&digits[point as usize..]);
        } else {
            out.extend_from_slice(digits);
            out.resize(out.len() + (point - n) as usize, b'0');
            out.extend_from_slice(b".0");
        }
        return;
    }
    out.extend_from_slice(&digits[..1]);
    if digits.len() > 1 {
        out.push(b'.');
        out.extend_from_slice(&digits[1..]);
    }
    out.push(b'e');
    out.push(if exponent < 0 { b'-' } else { b'+' });
    let magnitude = exponent.unsigned_abs();
    if magnitude < 10 {
        out.push(b'0');
    }
    crate::resp::push_decimal(out, u64::from(magnitude));
}

/// Room for any `{:e}` of an f64 (at most 24 bytes) without allocating.
#[derive(Default)]
struct StackText {
    buf: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn encode(json: &str) -> Result<Vec<u8>, EncodeError> {
        let mut out = b"kept".to_vec();
        let result = encode_chat_event(json, &mut out);
        assert_eq!(&out[..4], b"kept", "appends, never clears");
        match result {
            Ok(()) => {
                assert_eq!(&out[4..4 + EVENT_PREFIX.len()], EVENT_PREFIX);
                Ok(out[4 + EVENT_PREFIX.len()..].to_vec())
            }
            Err(e) => {
                assert_eq!(out, b"kept", "left as it was on error");
                Err(e)
            }
        }
    }

    fn decode(payload: &[u8]) -> Result<String, DecodeError> {
        let mut out = b"kept".to_vec();
        let result = decode_chat_event(payload, &mut out);
        assert_eq!(&out[..4], b"kept", "appends, never clears");
        match result {
            Ok(()) => Ok(String::from_utf8(out[4..].to_vec()).unwrap()),
            Err(e) => {
                assert_eq!(out, b"kept", "left as it was on error");
                Err(e)
            }
        }
    }

    /// `{"type": "chat_message", "message": <hex>}` as msgpack.
    fn event(message_hex: &str) -> Vec<u8> {
        let mut payload = EVENT_PREFIX.to_vec();
        payload.extend(hex(message_hex));
        payload
    }

    #[test]
    fn nodes_stay_small() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    #[test]
    fn prefix_is_python_packb() {
        // msgpack.packb({"type": "chat_message", "message": None})[:-1]
        assert_eq!(
            EVENT_PREFIX,
            hex("82a474797065ac636861745f6d657373616765a76d657373616765")
        );
    }

    /// JSON text, and the hex of `msgpack.packb({"type": "chat_message",
    /// "message": json.loads(text)})` after the common prefix, from Python.
    const ENCODED: &[(&str, &str)] = &[
        (r#"null"#, "c0"),
        (r#"true"#, "c3"),
        (r#"false"#, "c2"),
        (r#"0"#, "00"),
        (r#"-0"#, "00"),
        (r#"1"#, "01"),
        (r#"-1"#, "ff"),
        (r#"31"#, "1f"),
        (r#"32"#, "20"),
        (r#"-31"#, "e1"),
        (r#"-32"#, "e0"),
        (r#"-33"#, "d0df"),
        (r#"127"#, "7f"),
        (r#"128"#, "cc80"),
        (r#"-128"#, "d080"),
        (r#"-129"#, "d1ff7f"),
        (r#"255"#, "ccff"),
        (r#"256"#, "cd0100"),
        (r#"-32768"#, "d18000"),
        (r#"-32769"#, "d2ffff7fff"),
        (r#"65535"#, "cdffff"),
        (r#"65536"#, "ce00010000"),
        (r#"2147483647"#, "ce7fffffff"),
        (r#"2147483648"#, "ce80000000"),
        (r#"-2147483648"#, "d280000000"),
        (r#"-2147483649"#, "d3ffffffff7fffffff"),
        (r#"4294967295"#, "ceffffffff"),
        (r#"4294967296"#, "cf0000000100000000"),
        (r#"9223372036854775807"#, "cf7fffffffffffffff"),
        (r#"9223372036854775808"#, "cf8000000000000000"),
        (r#"-9223372036854775808"#, "d38000000000000000"),
        (r#"18446744073709551615"#, "cfffffffffffffffff"),
        (r#"0.1"#, "cb3fb999999999999a"),
        (r#"1e16"#, "cb4341c37937e08000"),
        (r#"1e-5"#, "cb3ee4f8b588e368f1"),
        (r#"1e22"#, "cb4480f0cf064dd592"),
        (r#"5e-324"#, "cb0000000000000001"),
        (r#"1.7976931348623157e308"#, "cb7fefffffffffffff"),
        (r#"-0.0"#, "cb8000000000000000"),
        (r#"100.0"#, "cb4059000000000000"),
        (r#"123456789.123"#, "cb419d6f34547df3b6"),
        (r#"1E2"#, "cb4059000000000000"),
        (r#"1e400"#, "cb7ff0000000000000"),
        (r#"-1e400"#, "cbfff0000000000000"),
        (r#"1e-400"#, "cb0000000000000000"),
        (r#"2.5e-3"#, "cb3f647ae147ae147b"),
        (r#"0.30000000000000004"#, "cb3fd3333333333334"),
        (r#""""#, "a0"),
        (r#""a""#, "a161"),
        (r#""\u00e9""#, "a2c3a9"),
        (r#""\ud83d\ude00""#, "a4f09f9880"),
        (r#""\"\\\/\b\f\n\r\t""#, "a8225c2f080c0a0d09"),
        (r#""\u0000""#, "a100"),
        (r#""héllo wörld 日本 😀""#, "b968c3a96c6c6f2077c3b6726c6420e697a5e69cac20f09f9880"),
        (r#"[]"#, "90"),
        (r#"[1,2,3]"#, "93010203"),
        (r#"{}"#, "80"),
        (r#"{"a":1}"#, "81a16101"),
        (r#" { "a" : [ 1 , { } ] , "b" : null } "#, "82a161920180a162c0"),
        (r#"{"a":1,"b":2,"a":3}"#, "82a16103a16202"),
        (r#"{"x":{"k":1,"k":{"z":[1]}},"y":0,"x":false}"#, "82a178c2a17900"),
        (r#"{"\u0061":1,"a":2}"#, "81a16102"),
        (r#"[[[[]]]]"#, "91919190"),
        (r#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k3":"x","k0":null}"#, "8aa26b30c0a26b3101a26b3202a26b33a178a26b3404a26b3505a26b3606a26b3707a26b3808a26b3909"),
        (r#"[{"a":1,"a":2},{"b":[{"c":1,"c":{"d":1,"d":2}}]}]"#, "9281a1610281a1629181a16381a16402"),
        (r#""\u00E9\uD83D\uDE00\u20ac""#, "a9c3a9f09f9880e282ac"),
        (r#"[1e400,-0,-0.0,0e0,1E+2,1e-2]"#, "96cb7ff000000000000000cb8000000000000000cb0000000000000000cb4059000000000000cb3f847ae147ae147b"),
        (r#"{"message":"hi","type":"x"}"#, "82a76d657373616765a26869a474797065a178"),
    ];

    #[test]
    fn encode_matches_python() {
        for &(json, want) in ENCODED {
            assert_eq!(encode(json), Ok(hex(want)), "{json}");
        }
    }

    #[test]
    fn encode_refuses_integers_outside_64_bits() {
        for json in [
            "18446744073709551616",
            "-9223372036854775809",
            "[1,18446744073709551616]",
            "99999999999999999999999999",
            r#"{"a":{"b":-100000000000000000000}}"#,
        ] {
            assert_eq!(encode(json), Err(EncodeError::IntegerOutOfRange), "{json}");
        }
        // json.loads fails first on bad syntax after the big integer.
        assert_eq!(
            encode("[18446744073709551616,]"),
            Err(EncodeError::InvalidJson)
        );
        // A repeated key drops the value before packb sees it (Python: a161 01).
        assert_eq!(
            encode(r#"{"a":18446744073709551616,"a":1}"#),
            Ok(hex("81a16101"))
        );
        assert_eq!(
            encode(r#"{"a":1,"a":18446744073709551616}"#),
            Err(EncodeError::IntegerOutOfRange)
        );
    }

    #[test]
    fn encode_refuses_what_python_cannot_pack_or_parse() {
        for json in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800\ud800""#,
            r#""\ud83d""#,
            r#""\u12""#,
            r#""\u12g4""#,
            r#""\x""#,
            "\"\t\"",
            "\"unterminated",
            "\"\\",
            "",
            " ",
            "[1,]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{1:2}",
            "{,}",
            "[",
            "]",
            "01",
            "-",
            "-a",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "NaN",
            "Infinity",
            "-Infinity",
            "'a'",
            "tru",
            "nul",
            "True",
            "1 2",
            "[]]",
            "{}}",
        ] {
            assert_eq!(encode(json), Err(EncodeError::InvalidJson), "{json:?}");
        }
    }

    #[test]
    fn encode_drops_unpackable_values_python_drops() {
        // From Python: packb of json.loads(text), or the error it raises.
        assert_eq!(
            encode(r#"{"a":"\ud800","a":"\u00e9"}"#),
            Ok(hex("81a161a2c3a9"))
        );
        assert_eq!(
            encode(r#"[{"x":"\udfff\ud800\u0041","x":[]}]"#),
            Ok(hex("9181a17890"))
        );
        assert_eq!(
            encode(r#"{"a":1,"a":"\ud800"}"#),
            Err(EncodeError::InvalidJson)
        );
        assert_eq!(encode(r#"{"\ud800":1}"#), Err(EncodeError::InvalidJson));
        // A high surrogate and then an escape that is not a low one: both are
        // read (the second on its own), so bad hex there is still bad JSON.
        assert_eq!(
            encode(r#"{"a":"\ud800\u00zz","a":1}"#),
            Err(EncodeError::InvalidJson)
        );
        assert_eq!(
            encode(r#"{"a":"\ud800\ud800\udc00","a":1}"#),
            Ok(hex("81a16101"))
        );
    }

    #[test]
    fn encode_depth_limit() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let mut want = vec![0x91; MAX_DEPTH - 1];
        want.push(0x90);
        assert_eq!(encode(&deep(MAX_DEPTH)), Ok(want));
        assert_eq!(encode(&deep(MAX_DEPTH + 1)), Err(EncodeError::TooDeep));
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(encode(&objects), Err(EncodeError::TooDeep));
        // Far past the limit: refused at the limit, no stack to overflow.
        assert_eq!(encode(&"[".repeat(1_000_000)), Err(EncodeError::TooDeep));
    }

    #[test]
    fn encode_errors_read_plainly() {
        assert_eq!(
            EncodeError::IntegerOutOfRange.to_string(),
            "the message holds an integer outside the 64-bit range, \
             which the Redis backplane (msgpack) cannot carry"
        );
        for e in [EncodeError::InvalidJson, EncodeError::TooDeep] {
            assert!(e.to_string().contains("Redis backplane"));
        }
    }

    fn big_array(n: usize) -> String {
        format!("[{}]", vec!["null"; n].join(","))
    }

    fn big_object(n: usize) -> String {
        let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
        format!("{{{}}}", members.join(","))
    }

    /// Header bytes and total length of each size class, from Python:
    /// strings of n bytes ("é" * (n // 2) + "x" * (n % 2)), n Nones, and
    /// {"k0": 0, ...}.
    #[test]
    fn encode_size_classes_match_python() {
        let string = |n: usize| format!("\"{}{}\"", "é".repeat(n / 2), "x".repeat(n % 2));
        let cases: Vec<(String, &str, usize)> = vec![
            (string(31), "bfc3a9c3a9", 32),
            (string(32), "d920c3a9c3", 34),
            (string(255), "d9ffc3a9c3", 257),
            (string(256), "da0100c3a9", 259),
            (string(65535), "daffffc3a9", 65538),
            (string(65536), "db00010000", 65541),
            (big_array(15), "9fc0c0c0c0", 16),
            (big_array(16), "dc0010c0c0", 19),
            (big_array(65535), "dcffffc0c0", 65538),
            (big_array(65536), "dd00010000", 65541),
            (big_object(15), "8fa26b3000a26b31", 66),
            (big_object(16), "de0010a26b3000a2", 73),
            (big_object(65535), "deffffa26b3000a2", 643859),
            (big_object(65536), "df00010000a26b30", 643871),
        ];
        for (json, head, len) in cases {
            let got = encode(&json).unwrap();
            assert_eq!((&got[..head.len() / 2], got.len()), (&hex(head)[..], len));
        }
    }

    #[test]
    fn encode_big_objects_with_repeats_keep_dict_order() {
        // 70,000 keys, each written twice: the first positions, the last values.
        let n = 70_000;
        let mut members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":0")).collect();
        members.extend((0..n).map(|i| format!("\"k{i}\":{}", i % 100)));
        let got = encode(&format!("{{{}}}", members.join(","))).unwrap();
        let mut want = vec![0xdf, 0, 1, 0x11, 0x70];
        for i in 0..n {
            let key = format!("k{i}");
            want.push(0xa0 | key.len() as u8);
            want.extend(key.as_bytes());
            want.push((i % 100) as u8);
        }
        assert_eq!(got, want);
    }

    /// The message part of a payload, and `json.dumps({"message":
    /// msgpack.unpackb(payload)["message"]})` from Python (NaN and
    /// infinities, which Python writes as NaN/Infinity, become null here).
    const DECODED: &[(&str, &str)] = &[
        ("c0", "{\"message\": null}"),
        ("c3", "{\"message\": true}"),
        ("c2", "{\"message\": false}"),
        ("00", "{\"message\": 0}"),
        ("01", "{\"message\": 1}"),
        ("ff", "{\"message\": -1}"),
        ("7f", "{\"message\": 127}"),
        ("cc80", "{\"message\": 128}"),
        ("e0", "{\"message\": -32}"),
        ("d0df", "{\"message\": -33}"),
        ("ccff", "{\"message\": 255}"),
        ("cd0100", "{\"message\": 256}"),
        ("cdffff", "{\"message\": 65535}"),
        ("ce00010000", "{\"message\": 65536}"),
        ("cf0000000100000000", "{\"message\": 4294967296}"),
        ("cf7fffffffffffffff", "{\"message\": 9223372036854775807}"),
        ("cf8000000000000000", "{\"message\": 9223372036854775808}"),
        ("cfffffffffffffffff", "{\"message\": 18446744073709551615}"),
        ("d38000000000000000", "{\"message\": -9223372036854775808}"),
        ("d280000000", "{\"message\": -2147483648}"),
        ("cb3fb999999999999a", "{\"message\": 0.1}"),
        ("cb4341c37937e08000", "{\"message\": 1e+16}"),
        ("cb430c6bf526340000", "{\"message\": 1000000000000000.0}"),
        ("cb3ee4f8b588e368f1", "{\"message\": 1e-05}"),
        ("cb3f1a36e2eb1c432d", "{\"message\": 0.0001}"),
        ("cb3f202c9dedbc309d", "{\"message\": 0.0001234}"),
        ("cb4480f0cf064dd592", "{\"message\": 1e+22}"),
        ("cb0000000000000001", "{\"message\": 5e-324}"),
        (
            "cb7fefffffffffffff",
            "{\"message\": 1.7976931348623157e+308}",
        ),
        ("cb8000000000000000", "{\"message\": -0.0}"),
        ("cb0000000000000000", "{\"message\": 0.0}"),
        ("cb4059000000000000", "{\"message\": 100.0}"),
        ("cb419d6f34547df3b6", "{\"message\": 123456789.123}"),
        ("cb3e8421f5f40d8376", "{\"message\": 1.5e-07}"),
        ("cb54b249ad2594c37d", "{\"message\": 1e+100}"),
        ("cb81bac9a7b3b7302f", "{\"message\": -2.5e-300}"),
        (
            "cb4345ee2a2eb5a5c4",
            "{\"message\": 1.2345678901234568e+16}",
        ),
        ("cb3fe0000000000000", "{\"message\": 0.5}"),
        ("a0", "{\"message\": \"\"}"),
        ("a5706c61696e", "{\"message\": \"plain\"}"),
        ("a67122625c732f", "{\"message\": \"q\\\"b\\\\s/\"}"),
        (
            "ab0a0d09080c00011f7fc280",
            "{\"message\": \"\\n\\r\\t\\b\\f\\u0000\\u0001\\u001f\\u007f\\u0080\"}",
        ),
        (
            "acc3a9e697a5e69cacf09f9880",
            "{\"message\": \"\\u00e9\\u65e5\\u672c\\ud83d\\ude00\"}",
        ),
        (
            "aae280a8efbbbff48fbfbf",
            "{\"message\": \"\\u2028\\ufeff\\udbff\\udfff\"}",
        ),
        ("a27e20", "{\"message\": \"~ \"}"),
        ("90", "{\"message\": []}"),
        ("9301a161c0", "{\"message\": [1, \"a\", null]}"),
        ("80", "{\"message\": {}}"),
        (
            "82a16101a16292c381a163a164",
            "{\"message\": {\"a\": 1, \"b\": [true, {\"c\": \"d\"}]}}",
        ),
        (
            "81a2c3a9a2c3bc",
            "{\"message\": {\"\\u00e9\": \"\\u00fc\"}}",
        ),
        ("919190", "{\"message\": [[[]]]}"),
        ("81a0a0", "{\"message\": {\"\": \"\"}}"),
        ("d005", "{\"message\": 5}"),
        ("cf0000000000000005", "{\"message\": 5}"),
        ("d1fffe", "{\"message\": -2}"),
        ("d9016b", "{\"message\": \"k\"}"),
        ("ca3dcccccd", "{\"message\": 0.10000000149011612}"),
        ("ca7f800000", "{\"message\": Infinity}"),
        ("caff800000", "{\"message\": -Infinity}"),
        ("ca7fc00000", "{\"message\": NaN}"),
        ("cb7ff8000000000000", "{\"message\": NaN}"),
        ("cb7ff0000000000000", "{\"message\": Infinity}"),
        ("cbfff0000000000000", "{\"message\": -Infinity}"),
        ("ca00000001", "{\"message\": 1.401298464324817e-45}"),
        (
            "83a16101a16202a16103",
            "{\"message\": {\"a\": 3, \"b\": 2}}",
        ),
        ("82a16101a16101", "{\"message\": {\"a\": 1}}"),
        (
            "83a178c0a17901a17882a17a01a17a02",
            "{\"message\": {\"x\": {\"z\": 2}, \"y\": 1}}",
        ),
        ("dc0002c0c2", "{\"message\": [null, false]}"),
        ("dd00000001c3", "{\"message\": [true]}"),
        ("de0001a16101", "{\"message\": {\"a\": 1}}"),
        ("df00000000", "{\"message\": {}}"),
        ("da000161", "{\"message\": \"a\"}"),
        ("db0000000162", "{\"message\": \"b\"}"),
    ];

    #[test]
    fn decode_matches_python() {
        for &(message, python) in DECODED {
            let want = python
                .replace("-Infinity", "null")
                .replace("Infinity", "null")
                .replace("NaN", "null");
            assert_eq!(decode(&event(message)).as_deref(), Ok(&*want), "{message}");
        }
    }

    /// Whole payloads (repeated event keys, bin keys, "chat.message", extra
    /// keys holding bin) and Python's json.dumps of their "message".
    const WHOLE_EVENTS: &[(&str, &str)] = &[
        ("82a474797065ac636861745f6d657373616765a76d65737361676501", "{\"message\": 1}"),
        ("83a474797065a56f74686572a474797065ac636861745f6d657373616765a76d65737361676501", "{\"message\": 1}"),
        ("83a76d65737361676501a474797065ac636861745f6d657373616765a76d65737361676502", "{\"message\": 2}"),
        ("84c40474797065a178a474797065ac636861745f6d657373616765a76d65737361676501c4076d65737361676505", "{\"message\": 1}"),
        ("82a474797065ac636861742e6d657373616765a76d657373616765a4646f7473", "{\"message\": \"dots\"}"),
        ("84a474797065ac636861745f6d657373616765a5657874726192c40362696e81c4016b01a76d65737361676581a16101a17acb3ff8000000000000", "{\"message\": {\"a\": 1}}"),
        ("83a474797065ac636861745f6d657373616765a76d6573736167658ca26b3000a26b3101a26b3202a26b3303a26b3404a26b3505a26b3606a26b3007a26b3108a26b3209a26b330aa26b340ba17ac0", "{\"message\": {\"k0\": 7, \"k1\": 8, \"k2\": 9, \"k3\": 10, \"k4\": 11, \"k5\": 5, \"k6\": 6}}"),
    ];

    #[test]
    fn decode_events_as_channels_does() {
        for &(payload, want) in WHOLE_EVENTS {
            assert_eq!(decode(&hex(payload)).as_deref(), Ok(want), "{payload}");
        }
    }

    fn decode_err(payload: &[u8]) -> DecodeError {
        decode(payload).expect_err(&format!("{payload:02x?}"))
    }

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

    #[test]
    fn decode_labels() {
        use DecodeError::*;
        let labels: Vec<&str> = [
            Malformed,
            NotAnEvent,
            OtherType,
            NoMessage,
            Unsupported,
            TooDeep,
        ]
        .iter()
        .map(DecodeError::label)
        .collect();
        assert_eq!(
            labels,
            [
                "malformed",
                "not_an_event",
                "other_type",
                "no_message",
                "unsupported",
                "too_deep"
            ]
        );
    }

    #[test]
    fn decode_big_containers() {
        for n in [15, 16, 65535, 65536] {
            let mut payload = Vec::new();
            encode_chat_event(&big_array(n), &mut payload).unwrap();
            let want = format!("{{\"message\": [{}]}}", vec!["null"; n].join(", "));
            assert_eq!(decode(&payload), Ok(want));
            payload.clear();
            encode_chat_event(&big_object(n), &mut payload).unwrap();
            let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\": {i}")).collect();
            assert_eq!(
                decode(&payload),
                Ok(format!("{{\"message\": {{{}}}}}", members.join(", ")))
            );
        }
    }

    #[test]
    fn decode_escapes_every_code_point_as_python() {
        // Python: json.dumps(chr(c)) for every c is '"' + escape + '"'.
        for c in (0..0xd800)
            .chain(0xe000..0x11_0000)
            .step_by(7)
            .chain([0x22, 0x5c, 0x7f, 0xffff, 0x10000, 0x10ffff])
        {
            let ch = char::from_u32(c).unwrap();
            let mut s = String::new();
            write_json_str_for_test(&mut s, ch);
            let want = match ch {
                '"' => "\"\\\"\"".to_string(),
                '\\' => "\"\\\\\"".to_string(),
                '\n' => "\"\\n\"".to_string(),
                '\r' => "\"\\r\"".to_string(),
                '\t' => "\"\\t\"".to_string(),
                '\u{8}' => "\"\\b\"".to_string(),
                '\u{c}' => "\"\\f\"".to_string(),
                ' '..='~' => format!("\"{ch}\""),
                _ => {
                    let mut units = [0u16; 2];
                    let units: Vec<String> = ch
                        .encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect();
                    format!("\"{}\"", units.concat())
                }
            };
            assert_eq!(s, want, "U+{c:04X}");
        }
    }

    fn write_json_str_for_test(s: &mut String, ch: char) {
        let mut out = Vec::new();
        let mut buf = [0; 4];
        write_json_str(&mut out, ch.encode_utf8(&mut buf).as_bytes());
        s.push_str(std::str::from_utf8(&out).unwrap());
    }

    /// f64 bits and Python's repr: random bit patterns, short decimals, and
    /// powers of ten and their neighbours around repr's layout switches.
    const FLOAT_REPR: &str = "\
d1a6e55e9b9b1325 -2.2239649050108196e+85
566bf9d7c55a45f8 2.0532095845172635e+108
cf0c26ef4243ed52 -6.217554322597633e+72
5d96cf7f265beda9 6.953979603744903e+142
c1d77cffb7decc0c -1576271583.481204
5e6a0a2edd70e34d 6.503171038669016e+146
0463513755ac0ecd 1.5857673189191353e-287
b37523a53b4a3ee2 -8.221863336486e-61
4de45321ad915a36 1.7123553371149197e+67
9823beb1e6ba3ad7 -2.1638530463091063e-192
dd4eabbd1fcfb980 -2.9219572677923937e+141
683447c10cc8af11 9.252761636154696e+193
bfb637dd5bae2d26 -0.08678992737093391
aed09b824ca87fc2 -3.419513645011445e-83
158d003d9a0b2361 7.226450560613817e-205
1ff135342e825ce1 8.021365036472743e-155
33f5f28807f0cbd4 2.1852629101185172e-58
00d9f4ad53a2f2b6 1.4784897218736648e-304
4cc346363c234038 6.194509959718476e+61
d330a5494d14cf1a -5.425245977872505e+92
668dc8f46a423cf9 1.0124757898277046e+186
d178403035c9a8c4 -2.944446857366267e+84
765890e0f94855d0 1.2086749044087354e+262
af5d8bb09f2e9ea4 -1.5573811799210805e-80
a9dfdec6baecde5b -5.42808465396562e-107
699f071a5fd8e665 5.937551093150185e+200
f82d5644ef7d9967 -7.749285522714588e+270
fdfb462fd6fad8db -7.134888966143026e+298
db18bd763f20134c -6.859608543352666e+130
0e46c215b5fa5b0c 6.826063143799301e-240
bf416c30f1f0742a -0.0005316962232232482
422acab59248b974 57535023396.36221
476354b65ed08d6b 8.02974492705291e+35
3a7cfb366088155f 5.852726618138463e-27
37c990fad57dcafd 5.869740909421409e-40
26ad41ef88c279d9 2.2129413115836295e-122
6dbb8cb8ef65ed78 3.8900364282728575e+220
0e0bc896afbec9a6 5.2083625442892846e-241
dd63d2a5d1764460 -7.553946583906249e+141
da0aea0eaa72870b -5.693391869688787e+125
07bda21c604af42a 2.1911047409340847e-271
d17737815438a5b5 -2.818911778819916e+84
eee45145f585675f -1.5040991579148302e+226
84d0c3f0b2e73ae0 -1.761642662237934e-285
5c80f9be67fd4c1e 3.948318576242007e+137
aa5bf36518677db7 -1.2186953655621338e-104
ea394aba6a42ed19 -4.956084037695639e+203
70faf36fb78eda4f 1.7138399726928506e+236
ca1ab21554c6c4b3 -9.753929657132168e+48
0f4bf777e1030fe1 5.49736026339521e-235
908a3e291dd257d5 -5.409083994422672e-229
2e0126319a72180d 4.310374302572617e-87
fed5ce26af1ac6da -9.345817125499125e+302
cc31d7b90ff191f0 -1.1200023960706483e+59
f768f221a91b4e9d -1.608733339066941e+267
4a66b263ab8474cc 2.6537167274827663e+50
c689c846b6b81ec6 -6.53659696798518e+31
535f2002b9f7f89e 4.0577810885461344e+93
355cca5db3c7b88e 1.2023470587576948e-51
857ce06bf9a21be1 -3.107068645161848e-282
02c89680e98c5884 3.0077087603228884e-295
d6442260559d7e79 -3.6942359140577326e+107
0473b8248ac03649 3.2375449474128926e-287
3cc89b41f339a684 6.8296687940174e-16
d68c20053f91ed95 -8.256618527360458e+108
5f4e45815c00d3d2 1.2386307567357675e+151
86f4f14cc599fac7 -3.7805423472813974e-275
d2e06b36b9ea43d4 -1.6722847020612747e+91
b2a57e606d09cf94 -1.0204724682369557e-64
8d1eac030bab1534 -1.7547066843945634e-245
4080a80000000000 533.0
407e61d35daad602 486.114103
40844b120afa2f06 649.38381
c07da83333333333 -474.5125
407d270a3d70a3d7 466.44
406e7c00d1b71759 243.8751
c086cf3333333333 -729.9
40866cb851eb851f 717.59
c072fa2d0e560419 -303.636
c06f000000000000 -248.0
c07a966666666666 -425.4
c02b9cb923a29c78 -13.8061
4077f4cccccccccd 383.3
c083bc2e48e8a71e -631.5226
c08ba35f0d413123 -884.421412
405b800000000000 110.0
4079b212b90a7829 411.129571
408016d672b88440 514.854711
c0748b22d0e56042 -328.696
408365b020c49ba6 620.711
c0701195810624dd -257.099
c08922d1782d3847 -804.35228
c07a891eb851eb85 -424.57
407a2e6666666666 418.9
c081b26666666666 -566.3
408a152f1a9fbe77 834.648
4080ef2a7ef9db23 541.89575
4068400000000000 194.0
c07329eb851eb852 -306.62
c0629eb851eb851f -148.96
c08a480000000000 -841.0
c0659b3b645a1cac -172.851
4053f053b8e4b87c 79.75511
c0792b11f1cfbb95 -402.691881
c07fd5f4299d883c -509.37211
4055455f6ba0620b 85.083949
408a5fc28f5c28f6 843.97
408713295e9e1b09 738.3952
c08162e9003eea21 -556.36377
c0601d70a3d70a3d -128.92
3e45798ee2308c3a 1e-08
be501b2b29a4692c -1.5000000000000002e-08
3e3d6edffdde7e28 6.852928861449288e-09
3e7ad7f29abcaf48 1e-07
be8421f5f40d8376 -1.5e-07
3e74cfc24a91bb94 7.752909660247297e-08
3eb0c6f7a0b5ed8d 1e-06
beb92a737110e454 -1.5e-06
3e9c6e098758efc9 4.2363752270394247e-07
3ee4f8b588e368f1 1e-05
beef75104d551d6a -1.5000000000000002e-05
3edbeb61806f5869 6.656517149891425e-06
3f1a36e2eb1c432d 0.0001
bf23a92a30553262 -0.00015000000000000001
3f083d42a157a28b 4.62327917992211e-05
3f50624dd2f1a9fc 0.001
bf589374bc6a7efa -0.0015
3efb5bf24d58576d 2.6091733920173056e-05
3f847ae147ae147b 0.01
bf8eb851eb851eb8 -0.015
3f1422068921e571 7.680096521935576e-05
3fb999999999999a 0.1
bfc3333333333334 -0.15000000000000002
3fb57dfeecbaebe4 0.08395379333062142
3ff0000000000000 1.0
bff8000000000000 -1.5
3fd7428a964b0e10 0.36343636204785046
4024000000000000 10.0
c02e000000000000 -15.0
4016dc0715ab8c66 5.714870775790677
4059000000000000 100.0
c062c00000000000 -150.0
403f989f877f4e43 31.596184223728653
408f400000000000 1000.0
c097700000000000 -1500.0
407580123bf7a591 344.0044517205907
40c3880000000000 10000.0
c0cd4c0000000000 -15000.0
40bc13125ec0a8c4 7187.0717583095575
40f86a0000000000 100000.0
c1024f8000000000 -150000.0
40e9baf3b5ae738b 52695.61592791144
412e848000000000 1000000.0
c136e36000000000 -1500000.0
412c9d547fd3d2e4 937642.2496629623
416312d000000000 10000000.0
c16c9c3800000000 -15000000.0
4154169a0fe6bafc 5266024.2484576665
4197d78400000000 100000000.0
c1a1e1a300000000 -150000000.0
418dbd7510414988 62369442.03187853
41cdcd6500000000 1000000000.0
c1d65a0bc0000000 -1500000000.0
41c82a6076627bc8 810860780.7694025
4202a05f20000000 10000000000.0
c20bf08eb0000000 -15000000000.0
41fe5f747597af5b 8153155417.480311
42374876e8000000 100000000000.0
c24176592e000000 -150000000000.0
42323c41d3d4c321 78320358356.76222
426d1a94a2000000 1000000000000.0
c275d3ef79800000 -1500000000000.0
4268e827653ebd83 855792888309.9222
42a2309ce5400000 10000000000000.0
c2ab48eb57e00000 -15000000000000.0
428ff4eec9859403 4392104833202.5015
42d6bcc41e900000 100000000000000.0
c2e10d9316ec0000 -150000000000000.0
42cbcee99ed5a68e 61150993427277.11
430c6bf526340000 1000000000000000.0
c31550f7dca70000 -1500000000000000.0
42bc79234e88574c 31306608969815.297
4341c37937e08000 1e+16
c34aa535d3d0c000 -1.5e+16
433278fb86b1293e 5199571272673598.0
4376345785d8a000 1e+17
c380a741a4627800 -1.5e+17
433335dd7371138d 5407249798337421.0
43abc16d674ec800 1e+18
c3b4d1120d7b1600 -1.5e+18
43974cf5e06c2f03 4.19746776334713e+17
43e158e460913d00 1e+19
c3ea055690d9db80 -1.5e+19
43c3ba686396ddd5 2.8431268186619684e+18
4415af1d78b58c40 1e+20
c42043561a882930 -1.5e+20
44110eab979f703e 7.86629386254124e+19
444b1ae4d6e2ef50 1e+21
c454542ba12a337c -1.5e+21
4443a298a3472e2e 7.244088627143972e+20
4480f0cf064dd592 1e+22
c48969368974c05b -1.5e+22
4476f5534925526d 6.776094768137839e+21
44b52d02c7e14af7 1.0000000000000001e+23
c4bfc3842bd1f072 -1.5e+23
44981e3625635598 2.8473524886238558e+22
4340000000000000 9007199254740992.0
4340000000000000 9007199254740992.0
4340000000000001 9007199254740994.0
4341c37937e07fff 9999999999999998.0
4341c37937e07fff 9999999999999998.0
3f1a36e2eb1c432c 9.999999999999999e-05
3f1a36e2eb1c432d 0.0001
3f19f3c70c996b76 9.9e-05
0010000000000000 2.2250738585072014e-308
000fffffffffffff 2.225073858507201e-308
0000000000000001 5e-324
44b52d02c7e14af6 1e+23
447c7e83209e90b2 8.41e+21
00005c0ab9347ed7 5e-310
3fd5555555555555 0.3333333333333333
3fe5555555555555 0.6666666666666666
3fd3333333333334 0.30000000000000004
3ff199999999999a 1.1
4005666666666666 2.675
3e7ad7f29abcaf48 1e-07
3c36b082c2148b8e 1.23e-18
421bf08eb0000000 30000000000.0
";

    #[test]
    fn floats_match_python_repr() {
        let mut checked = 0;
        for line in FLOAT_REPR.lines() {
            let (bits, repr) = line.split_once(' ').unwrap();
            let f = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
            let mut out = Vec::new();
            write_py_float(&mut out, f);
            assert_eq!(std::str::from_utf8(&out).unwrap(), repr, "{bits}");
            checked += 1;
        }
        assert!(checked > 200);
        for (f, want) in [
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
            (f64::NEG_INFINITY, "null"),
        ] {
            let mut out = Vec::new();
            write_py_float(&mut out, f);
            assert_eq!(out, want.as_bytes());
        }
    }

    /// Canonical msgpack (as packb writes it) read into a tape and written
    /// back is the same bytes: the reader and writer agree on every form.
    #[test]
    fn msgpack_tape_round_trip() {
        for payload in [
            "c0",
            "c2",
            "c3",
            "00",
            "7f",
            "cc80",
            "cdffff",
            "ce00010000",
            "cf0000000100000000",
            "e0",
            "d0df",
            "d1ff7f",
            "d2ffff7fff",
            "d38000000000000000",
            "cb3fb999999999999a",
            "a0",
            "bf",
            "d920",
            "da0100",
            "db00010000",
            "c400",
            "c5ffff",
            "c600010000",
            "d40102",
            "d5010203",
            "d6ff00000001",
            "d70100",
            "d801",
            "c70001",
            "c70301616263",
            "c8010001",
            "c90001000001",
            "90",
            "9f",
            "dc0010",
            "80",
            "8f",
            "de0010",
        ] {
            let mut bytes = hex(payload);
            // Pad the declared contents so that the value is whole.
            let filler = |n: usize| vec![0xc0; n];
            let need = match bytes[0] {
                0xbf => 31,
                0xd9 => 32,
                0xda => 256,
                0xdb => 65536,
                0xc5 => 65535,
                0xc6 => 65536,
                0xd4 => 0,
                0xd5 => 0,
                0xd7 => 7,
                0xd8 => 16,
                0xc7 => 0,
                0xc8 => 256,
                0xc9 => 65536,
                0x9f => 15,
                0xdc => 16,
                0x8f => 30,
                0xde => 32,
                _ => 0,
            };
            if matches!(bytes[0], 0x8f | 0xde) {
                for i in 0..need / 2 {
                    bytes.extend([0xa2, b'k', b'a' + (i as u8)]);
                    bytes.push(0xc0);
                }
            } else if matches!(bytes[0], 0xbf | 0xd9 | 0xda | 0xdb) {
                bytes.extend(vec![b'x'; need]);
            } else {
                bytes.extend(filler(need));
            }
            let tape = MsgpackReader::read(&bytes).expect(payload);
            let mut out = Vec::new();
            assert_eq!(write_msgpack(&tape, 0, &mut out), Ok(tape.nodes.len()));
            assert_eq!(out, bytes, "{payload}");
        }
    }
}
