//! JSON text to tape, as Python's `json.loads` reads it: the first half of
//! [`encode_chat_event`](super::encode_chat_event).
//!
//! Numbers without `.`, `e` or `E` are ints (past 64 bits they become
//! [`Node::BigInt`], an error only if it survives dict semantics); others
//! are correctly rounded floats. Strings are unescaped into [`Tape::text`]
//! (an unpaired surrogate escape becomes [`Node::LoneSurrogate`]). Nesting
//! is held to [`MAX_DEPTH`] with an explicit stack, so no input recurses.

use super::tape::{Node, Open, Span, Tape};
use super::{EncodeError, MAX_DEPTH};

pub(super) struct JsonReader<'s> {
    src: &'s str,
    pos: usize,
    tape: Tape<'s>,
    stack: Vec<Open>,
    /// The string being read holds an unpaired surrogate escape.
    lone_surrogate: bool,
}

impl<'s> JsonReader<'s> {
    pub(super) fn read(src: &'s str) -> Result<Tape<'s>, EncodeError> {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

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
}
