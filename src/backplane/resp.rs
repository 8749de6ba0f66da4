//! RESP2/RESP3 (the Redis protocol), sans-IO.
//!
//! [`parse`] reads one value from the start of a buffer and borrows its
//! strings from it. It is incremental in the simplest way: until a whole
//! value is there it answers `Ok(None)`, and the caller calls again with more
//! bytes (the same prefix and the new ones). A connection reads through a
//! [`Framer`] instead, which remembers where it stopped, bounds what one
//! value may buffer, skips strings too long to keep, and calls [`parse`]
//! once per whole value. What [`parse`] guarantees, whatever the bytes:
//!
//! - no panic, and `consumed` is never more than the buffer's length;
//! - nothing is allocated by a claimed length: a bulk string's length is
//!   checked against [`Limits::max_bulk`] as soon as its header line is
//!   complete and its bytes are only ever borrowed; an aggregate's count is
//!   checked against [`Limits::max_elements`] and its `Vec` reserves at most
//!   [`MAX_RESERVE`] elements up front, growing only with elements that have
//!   actually arrived;
//! - nesting deeper than [`Limits::max_depth`] is refused (the recursion is
//!   bounded by it), a top-level array being depth 1; scalars inside the
//!   deepest aggregate are fine;
//! - a line (simple string, error, double, big number) longer than
//!   `max_bulk` is refused even before its CRLF arrives;
//! - an error is final: the stream cannot be resynchronised, so the
//!   connection must be dropped.
//!
//! Accepted: every RESP2 and RESP3 type (`+ - : $ * _ # , ( = ! % ~ > |`).
//! A map's (and an attribute's) count is its number of pairs. Attributes
//! (`|`) are parsed within the same limits and dropped; the value after them
//! is returned. Verbatim strings (`=`) become [`Value::Bulk`] of the text
//! after the 4-byte `txt:` format prefix. `-1` lengths are accepted only where
//! RESP2 defines them (`$-1`, `*-1`, both [`Value::Null`]). Refused as
//! malformed: any other negative length, `+` signs or empty digits in
//! lengths, non-digits, overflow, a missing CRLF, bare LF in a line, RESP3
//! streamed strings and aggregates (`$?`, `*?`: Redis never sends them), and
//! unknown type bytes.

mod framer;

pub use framer::{Framed, Framer};

use std::fmt;

/// Limits that keep a hostile or broken server from making us allocate.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest bulk string accepted (bytes).
    pub max_bulk: usize,
    /// Most elements in one aggregate (array, map, set, push).
    pub max_elements: usize,
    /// Deepest nesting of aggregates.
    pub max_depth: usize,
}

/// The most elements an aggregate's `Vec` reserves before they arrive.
pub const MAX_RESERVE: usize = 16;

/// One parsed RESP value, borrowing strings from the input buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// `+...`
    Simple(&'a [u8]),
    /// `-...` and RESP3 `!` bulk errors.
    Error(&'a [u8]),
    /// `:`
    Integer(i64),
    /// `$` and RESP3 `=` verbatim strings (the `txt:` prefix stripped).
    Bulk(&'a [u8]),
    /// `$-1`, `*-1` and RESP3 `_`.
    Null,
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `,`.
    Double(f64),
    /// RESP3 `(` big number, as its digits.
    BigNumber(&'a [u8]),
    /// `*` and RESP3 `~` sets.
    Array(Vec<Value<'a>>),
    /// RESP3 `%`, pairs in wire order.
    Map(Vec<(Value<'a>, Value<'a>)>),
    /// RESP3 `>` out-of-band pushes (pub/sub messages arrive as these).
    Push(Vec<Value<'a>>),
}

/// Why a byte stream is not RESP (or breaks a limit): the connection must be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespError {
    /// Malformed input; the text says what and where.
    Malformed(String),
    /// A length, element count or depth over [`Limits`].
    TooLarge(String),
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Malformed(why) => write!(f, "malformed RESP: {why}"),
            RespError::TooLarge(why) => write!(f, "RESP over the limits: {why}"),
        }
    }
}

impl std::error::Error for RespError {}

/// Parses one value from the start of `buf`: `Ok(None)` while incomplete,
/// `Ok(Some((value, consumed)))` when whole. RESP3 attributes (`|`) are skipped.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(Value<'a>, usize)>, RespError> {
    let mut parser = Parser {
        buf,
        pos: 0,
        limits,
    };
    match parser.value(0) {
        Ok(value) => Ok(Some((value, parser.pos))),
        Err(Stop::Incomplete) => Ok(None),
        Err(Stop::Fail(e)) => Err(e),
    }
}

/// Appends one command as a RESP array of bulk strings.
pub fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.reserve(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    write_header(out, b'*', args.len());
    for arg in args {
        write_blob(out, b'$', arg);
    }
}

/// Appends `value` in RESP3 (RESP2 where the type exists there), the way a
/// server would send it: for tests and fakes of a Redis server.
///
/// `Simple` must hold no CR or LF (as [`parse`] gives it); an `Error`
/// holding one is written as a `!` bulk error. Doubles use the shortest
/// digits that read back exactly, and `inf`, `-inf`, `nan`.
pub fn write_value(out: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::Simple(s) => write_line(out, b'+', s),
        Value::Error(e) if e.contains(&b'\r') || e.contains(&b'\n') => write_blob(out, b'!', e),
        Value::Error(e) => write_line(out, b'-', e),
        Value::Integer(i) => write_line(out, b':', i.to_string().as_bytes()),
        Value::Bulk(b) => write_blob(out, b'$', b),
        Value::Null => out.extend_from_slice(b"_\r\n"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Value::Double(d) => write_line(out, b',', double_text(*d).as_bytes()),
        Value::BigNumber(n) => write_line(out, b'(', n),
        Value::Array(items) => write_items(out, b'*', items),
        Value::Push(items) => write_items(out, b'>', items),
        Value::Map(pairs) => {
            write_header(out, b'%', pairs.len());
            for (k, v) in pairs {
                write_value(out, k);
                write_value(out, v);
            }
        }
    }
}

fn double_text(d: f64) -> String {
    if d.is_nan() {
        "nan".to_string()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        // `{:?}` is the shortest round-trip form, with an exponent when long.
        format!("{d:?}")
    }
}

fn write_items(out: &mut Vec<u8>, kind: u8, items: &[Value<'_>]) {
    write_header(out, kind, items.len());
    for item in items {
        write_value(out, item);
    }
}

fn write_line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn write_blob(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    write_header(out, kind, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn write_header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    push_decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal (RESP lengths here, JSON integers in `msgpack`).
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Why parsing stopped short of a value.
enum Stop {
    Incomplete,
    Fail(RespError),
}

type Step<T> = Result<T, Stop>;

struct Parser<'a, 'l> {
    buf: &'a [u8],
    pos: usize,
    limits: &'l Limits,
}

impl<'a> Parser<'a, '_> {
    fn malformed<T>(&self, what: &str) -> Step<T> {
        Err(Stop::Fail(RespError::Malformed(format!(
            "{what} at byte {}",
            self.pos
        ))))
    }

    fn too_large<T>(&self, what: String) -> Step<T> {
        Err(Stop::Fail(RespError::TooLarge(format!(
            "{what} at byte {}",
            self.pos
        ))))
    }

    fn value(&mut self, depth: usize) -> Step<Value<'a>> {
        loop {
            let kind = *self.buf.get(self.pos).ok_or(Stop::Incomplete)?;
            if kind != b'|' {
                return self.typed(kind, depth);
            }
            // Attributes describe the value that follows; nothing here uses them.
            self.pos += 1;
            self.map(depth, "attribute")?;
        }
    }

    fn typed(&mut self, kind: u8, depth: usize) -> Step<Value<'a>> {
        match kind {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
                self.pos += 1;
                self.line_value(kind)
            }
            b'$' | b'!' | b'=' => {
                self.pos += 1;
                self.blob_value(kind)
            }
            b'*' | b'~' | b'>' => {
                self.pos += 1;
                self.sequence(kind, depth)
            }
            b'%' => {
                self.pos += 1;
                Ok(Value::Map(self.map(depth, "map")?))
            }
            _ => self.malformed(&format!("unknown RESP type byte 0x{kind:02x}")),
        }
    }

    fn line_value(&mut self, kind: u8) -> Step<Value<'a>> {
        if kind == b':' {
            return self.integer().map(Value::Integer);
        }
        let start = self.pos;
        let line = self.line()?;
        let parsed = match kind {
            b'+' => Some(Value::Simple(line)),
            b'-' => Some(Value::Error(line)),
            b'_' => line.is_empty().then_some(Value::Null),
            b'#' => match line {
                b"t" => Some(Value::Boolean(true)),
                b"f" => Some(Value::Boolean(false)),
                _ => None,
            },
            b',' => parse_double(line).map(Value::Double),
            _ => is_big_number(line).then_some(Value::BigNumber(line)),
        };
        parsed.map_or_else(
            || {
                self.pos = start;
                self.malformed(&format!("bad {} line", type_name(kind)))
            },
            Ok,
        )
    }

    /// The rest of a line, CRLF consumed: no longer than `max_bulk`, no
    /// bare CR or LF.
    fn line(&mut self) -> Step<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        let max = self.limits.max_bulk;
        let window = &rest[..rest.len().min(max.saturating_add(1))];
        let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
            if rest.len() > max {
                return self.too_large(format!("a line longer than {max} bytes"));
            }
            return Err(Stop::Incomplete);
        };
        if window[end] == b'\n' {
            return self.malformed("LF without CR");
        }
        match rest.get(end + 1) {
            None => Err(Stop::Incomplete),
            Some(b'\n') => {
                self.pos += end + 2;
                Ok(&rest[..end])
            }
            Some(_) => {
                self.pos += end;
                self.malformed("CR not followed by LF")
            }
        }
    }

    /// `[+-]digits CRLF`, without a line limit: at most 20 digits fit.
    fn signed(&mut self, what: &str) -> Step<(bool, u64)> {
        let negative = match self.buf.get(self.pos) {
            None => return Err(Stop::Incomplete),
            Some(b'-') => true,
            Some(b'+') if what == "integer" => false,
            Some(_) => return self.unsigned(what).map(|n| (false, n)),
        };
        self.pos += 1;
        self.unsigned(what).map(|n| (negative, n))
    }

    fn unsigned(&mut self, what: &str) -> Step<u64> {
        let mut n: u64 = 0;
        let mut digits = 0usize;
        loop {
            let b = *self.buf.get(self.pos).ok_or(Stop::Incomplete)?;
            match b {
                b'0'..=b'9' => {
                    n = match n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(b - b'0')))
                    {
                        Some(n) => n,
                        None => return self.malformed(&format!("{what} overflows 64 bits")),
                    };
                    digits += 1;
                    self.pos += 1;
                }
                b'\r' if digits > 0 => {
                    match self.buf.get(self.pos + 1) {
                        None => return Err(Stop::Incomplete),
                        Some(b'\n') => {}
                        Some(_) => return self.malformed(&format!("{what} without CRLF")),
                    }
                    self.pos += 2;
                    return Ok(n);
                }
                b'?' if digits == 0 && what != "integer" => {
                    return self.malformed("streamed RESP3 types (?) are not supported")
                }
                _ if digits == 0 => return self.malformed(&format!("{what} without digits")),
                _ => return self.malformed(&format!("non-digit in {what}")),
            }
        }
    }

    fn integer(&mut self) -> Step<i64> {
        let start = self.pos;
        let (negative, magnitude) = self.signed("integer")?;
        let value = if negative {
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(magnitude).ok()
        };
        value.map_or_else(
            || {
                self.pos = start;
                self.malformed("integer outside the 64-bit range")
            },
            Ok,
        )
    }

    /// A length or count: `Some(n)`, or `None` for `-1` where `nullable`.
    fn length(&mut self, what: &str, nullable: bool) -> Step<Option<usize>> {
        let start = self.pos;
        match self.signed(what)? {
            (false, n) => usize::try_from(n).map(Some).or_else(|_| {
                self.pos = start;
                self.malformed(&format!("{what} overflows"))
            }),
            (true, 1) if nullable => Ok(None),
            (true, _) => {
                self.pos = start;
                self.malformed(&format!("negative {what}"))
            }
        }
    }

    fn blob_value(&mut self, kind: u8) -> Step<Value<'a>> {
        let Some(len) = self.length("bulk length", kind == b'$')? else {
            return Ok(Value::Null);
        };
        if len > self.limits.max_bulk {
            let max = self.limits.max_bulk;
            return self.too_large(format!("a {len}-byte string (limit {max})"));
        }
        let data_start = self.pos;
        let end = data_start.checked_add(len).ok_or(Stop::Incomplete)?;
        match self.buf.get(end..end.saturating_add(2)) {
            None => return Err(Stop::Incomplete),
            Some(b"\r\n") => {}
            Some(_) => {
                self.pos = end;
                return self.malformed("bulk string not followed by CRLF");
            }
        }
        let data = &self.buf[data_start..end];
        self.pos = end + 2;
        match kind {
            b'$' => Ok(Value::Bulk(data)),
            b'!' => Ok(Value::Error(data)),
            _ => match data {
                [_, _, _, b':', text @ ..] => Ok(Value::Bulk(text)),
                _ => {
                    self.pos = data_start;
                    self.malformed("verbatim string without a 3-letter format and ':'")
                }
            },
        }
    }

    /// An aggregate's count, checked against the limits before anything is read.
    fn count(&mut self, what: &str, nullable: bool, depth: usize) -> Step<Option<usize>> {
        let Some(n) = self.length(&format!("{what} count"), nullable)? else {
            return Ok(None);
        };
        if n > self.limits.max_elements {
            let max = self.limits.max_elements;
            return self.too_large(format!("a {what} of {n} elements (limit {max})"));
        }
        if depth >= self.limits.max_depth {
            let max = self.limits.max_depth;
            return self.too_large(format!("aggregates nested deeper than {max}"));
        }
        Ok(Some(n))
    }

    fn sequence(&mut self, kind: u8, depth: usize) -> Step<Value<'a>> {
        let Some(n) = self.count(type_name(kind), kind == b'*', depth)? else {
            return Ok(Value::Null);
        };
        let mut items = Vec::with_capacity(n.min(MAX_RESERVE));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(match kind {
            b'>' => Value::Push(items),
            _ => Value::Array(items),
        })
    }

    fn map(&mut self, depth: usize, what: &str) -> Step<Vec<(Value<'a>, Value<'a>)>> {
        let n = self.count(what, false, depth)?.unwrap_or(0);
        let mut pairs = Vec::with_capacity(n.min(MAX_RESERVE));
        for _ in 0..n {
            let key = self.value(depth + 1)?;
            pairs.push((key, self.value(depth + 1)?));
        }
        Ok(pairs)
    }
}

fn type_name(kind: u8) -> &'static str {
    match kind {
        b'+' => "simple string",
        b'-' => "error",
        b':' => "integer",
        b'_' => "null",
        b'#' => "boolean",
        b',' => "double",
        b'(' => "big number",
        b'*' => "array",
        b'~' => "set",
        b'>' => "push",
        _ => "value",
    }
}

/// `[+-]digits[.digits][(e|E)[+-]digits]`, `inf`, `-inf` or `nan`.
fn parse_double(line: &[u8]) -> Option<f64> {
    match line {
        b"inf" | b"+inf" => return Some(f64::INFINITY),
        b"-inf" => return Some(f64::NEG_INFINITY),
        b"nan" | b"-nan" | b"+nan" => return Some(f64::NAN),
        _ => {}
    }
    let unsigned = line
        .strip_prefix(b"-")
        .or(line.strip_prefix(b"+"))
        .unwrap_or(line);
    let (mantissa, exponent) = match unsigned.iter().position(|&b| b == b'e' || b == b'E') {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (integral, fraction) = match mantissa.iter().position(|&b| b == b'.') {
        Some(i) => (&mantissa[..i], Some(&mantissa[i + 1..])),
        None => (mantissa, None),
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let exponent_ok =
        exponent.is_none_or(|e| digits(e.strip_prefix(b"-").or(e.strip_prefix(b"+")).unwrap_or(e)));
    if !digits(integral) || !fraction.is_none_or(digits) || !exponent_ok {
        return None;
    }
    // Only ASCII digits, signs, '.' and 'e' remain, all of which Rust's
    // float grammar accepts; it rounds correctly.
    std::str::from_utf8(line).ok()?.parse().ok()
}

fn is_big_number(line: &[u8]) -> bool {
    let digits = line
        .strip_prefix(b"-")
        .or(line.strip_prefix(b"+"))
        .unwrap_or(line);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bulk: 1 << 20,
        max_elements: 1 << 16,
        max_depth: 8,
    };

    fn whole(input: &[u8]) -> Value<'_> {
        match parse(input, &LIMITS) {
            Ok(Some((v, n))) => {
                assert_eq!(n, input.len(), "{:?}", String::from_utf8_lossy(input));
                v
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn malformed(input: &[u8]) -> String {
        malformed_with(input, &LIMITS)
    }

    fn malformed_with(input: &[u8], limits: &Limits) -> String {
        match parse(input, limits) {
            Err(RespError::Malformed(why)) => why,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn too_large(input: &[u8], limits: &Limits) -> String {
        match parse(input, limits) {
            Err(RespError::TooLarge(why)) => why,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    /// Every proper prefix is incomplete.
    fn assert_prefixes_incomplete(input: &[u8]) {
        for cut in 0..input.len() {
            assert_eq!(
                parse(&input[..cut], &LIMITS),
                Ok(None),
                "{:?}",
                &input[..cut]
            );
        }
    }

    #[test]
    fn resp2_scalars() {
        assert_eq!(whole(b"+OK\r\n"), Value::Simple(b"OK"));
        assert_eq!(whole(b"+\r\n"), Value::Simple(b""));
        assert_eq!(whole(b"-ERR unknown\r\n"), Value::Error(b"ERR unknown"));
        assert_eq!(whole(b":0\r\n"), Value::Integer(0));
        assert_eq!(whole(b":-12\r\n"), Value::Integer(-12));
        assert_eq!(whole(b":+7\r\n"), Value::Integer(7));
        assert_eq!(whole(b":9223372036854775807\r\n"), Value::Integer(i64::MAX));
        assert_eq!(
            whole(b":-9223372036854775808\r\n"),
            Value::Integer(i64::MIN)
        );
        assert_eq!(whole(b"$5\r\nhello\r\n"), Value::Bulk(b"hello"));
        assert_eq!(whole(b"$0\r\n\r\n"), Value::Bulk(b""));
        assert_eq!(whole(b"$4\r\na\r\nb\r\n"), Value::Bulk(b"a\r\nb"));
        assert_eq!(whole(b"$-1\r\n"), Value::Null);
        assert_eq!(whole(b"*-1\r\n"), Value::Null);
        assert_eq!(whole(b"$007\r\nleading\r\n"), Value::Bulk(b"leading"));
    }

    #[test]
    fn resp3_scalars() {
        assert_eq!(whole(b"_\r\n"), Value::Null);
        assert_eq!(whole(b"#t\r\n"), Value::Boolean(true));
        assert_eq!(whole(b"#f\r\n"), Value::Boolean(false));
        assert_eq!(whole(b",1.5\r\n"), Value::Double(1.5));
        assert_eq!(whole(b",-0\r\n"), Value::Double(-0.0));
        assert_eq!(whole(b",10\r\n"), Value::Double(10.0));
        assert_eq!(whole(b",1e+16\r\n"), Value::Double(1e16));
        assert_eq!(whole(b",1.25E-3\r\n"), Value::Double(1.25e-3));
        assert_eq!(whole(b",inf\r\n"), Value::Double(f64::INFINITY));
        assert_eq!(whole(b",-inf\r\n"), Value::Double(f64::NEG_INFINITY));
        assert!(matches!(whole(b",nan\r\n"), Value::Double(d) if d.is_nan()));
        assert_eq!(
            whole(b"(3492890328409238509324850943850943825024385\r\n"),
            Value::BigNumber(b"3492890328409238509324850943850943825024385")
        );
        assert_eq!(whole(b"(-1\r\n"), Value::BigNumber(b"-1"));
        assert_eq!(
            whole(b"!21\r\nSYNTAX invalid syntax\r\n"),
            Value::Error(b"SYNTAX invalid syntax")
        );
        assert_eq!(
            whole(b"=15\r\ntxt:Some string\r\n"),
            Value::Bulk(b"Some string")
        );
        assert_eq!(whole(b"=4\r\nmkd:\r\n"), Value::Bulk(b""));
    }

    #[test]
    fn aggregates() {
        assert_eq!(whole(b"*0\r\n"), Value::Array(vec![]));
        assert_eq!(
            whole(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nroom\r\n:1\r\n"),
            Value::Array(vec![
                Value::Bulk(b"subscribe"),
                Value::Bulk(b"room"),
                Value::Integer(1)
            ])
        );
        assert_eq!(
            whole(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\n\x81\x00\xff\r\n"),
            Value::Push(vec![
                Value::Bulk(b"message"),
                Value::Bulk(b"ch"),
                Value::Bulk(b"\x81\x00\xff")
            ])
        );
        assert_eq!(
            whole(b"~2\r\n+a\r\n_\r\n"),
            Value::Array(vec![Value::Simple(b"a"), Value::Null])
        );
        assert_eq!(
            whole(b"%2\r\n+first\r\n:1\r\n+second\r\n*1\r\n#t\r\n"),
            Value::Map(vec![
                (Value::Simple(b"first"), Value::Integer(1)),
                (
                    Value::Simple(b"second"),
                    Value::Array(vec![Value::Boolean(true)])
                )
            ])
        );
        assert_eq!(
            whole(b"*2\r\n*-1\r\n$-1\r\n"),
            Value::Array(vec![Value::Null, Value::Null])
        );
    }

    #[test]
    fn attributes_are_skipped() {
        let input = b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n";
        assert_eq!(
            whole(input),
            Value::Array(vec![Value::Integer(2_039_123), Value::Integer(9_543_892)])
        );
        assert_eq!(
            whole(b"*2\r\n|1\r\n+ttl\r\n:3600\r\n+a\r\n|0\r\n|0\r\n+b\r\n"),
            Value::Array(vec![Value::Simple(b"a"), Value::Simple(b"b")])
        );
        assert_prefixes_incomplete(input);
    }

    #[test]
    fn incomplete_at_every_cut() {
        for input in [
            &b"+OK\r\n"[..],
            b":-123\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"=15\r\ntxt:Some string\r\n",
            b"*2\r\n%1\r\n+k\r\n,1.5\r\n~1\r\n(12\r\n",
            b">2\r\n#t\r\n_\r\n",
        ] {
            assert_prefixes_incomplete(input);
            whole(input);
        }
    }

    #[test]
    fn consumes_one_value_only() {
        let (v, n) = parse(b"+a\r\n+b\r\n", &LIMITS).unwrap().unwrap();
        assert_eq!((v, n), (Value::Simple(b"a"), 4));
    }

    #[test]
    fn malformed_lengths_say_what() {
        assert!(malformed(b"$-2\r\n").contains("negative"));
        assert!(malformed(b"$-0\r\n").contains("negative"));
        assert!(malformed(b"*-5\r\n").contains("negative"));
        assert!(malformed(b"%-1\r\n").contains("negative"));
        assert!(malformed(b"!-1\r\n").contains("negative"));
        assert!(malformed(b"$+1\r\n").contains("without digits"));
        assert!(malformed(b"$\r\n").contains("without digits"));
        assert!(malformed(b"$1x\r\n").contains("non-digit"));
        assert!(malformed(b"*1 \r\n").contains("non-digit"));
        assert!(malformed(b"$99999999999999999999\r\n").contains("overflows"));
        assert!(malformed(b"$5\rx").contains("CRLF"));
        assert!(malformed(b"$1\r\nab\r\n").contains("not followed by CRLF"));
        assert!(malformed(b"$1\r\nabc").contains("not followed by CRLF"));
        assert!(malformed(b"$?\r\n").contains("streamed"));
        assert!(malformed(b"*?\r\n").contains("streamed"));
    }

    #[test]
    fn malformed_lines_say_what() {
        assert!(malformed(b"+a\nb\r\n").contains("LF without CR"));
        assert!(malformed(b"+a\rb\r\n").contains("CR not followed by LF"));
        assert!(malformed(b":\r\n").contains("without digits"));
        assert!(malformed(b":1.5\r\n").contains("non-digit"));
        assert!(malformed(b":9223372036854775808\r\n").contains("64-bit"));
        assert!(malformed(b":-9223372036854775809\r\n").contains("64-bit"));
        assert!(malformed(b":99999999999999999999999\r\n").contains("overflows"));
        assert!(malformed(b"#x\r\n").contains("boolean"));
        assert!(malformed(b"#\r\n").contains("boolean"));
        assert!(malformed(b"_x\r\n").contains("null"));
        for bad in [
            ",\r\n",
            ",1.\r\n",
            ",.5\r\n",
            ",1e\r\n",
            ",infinity\r\n",
            ",NaN\r\n",
            ",0x10\r\n",
            ",1_0\r\n",
        ] {
            assert!(malformed(bad.as_bytes()).contains("double"), "{bad}");
        }
        assert!(malformed(b"(\r\n").contains("big number"));
        assert!(malformed(b"(12a\r\n").contains("big number"));
        assert!(malformed(b"=3\r\ntxt\r\n").contains("verbatim"));
        assert!(malformed(b"=5\r\ntxt;a\r\n").contains("verbatim"));
        assert!(malformed(b"x\r\n").contains("0x78"));
        assert!(malformed(b"*1\r\n?\r\n").contains("0x3f"));
        assert!(malformed(b"*2\r\n:1\r\n\x00").contains("at byte 8"));
    }

    #[test]
    fn limits_are_checked_from_the_header() {
        let small = Limits {
            max_bulk: 4,
            max_elements: 2,
            max_depth: 2,
        };
        // Only the header has arrived: refused without waiting for the body.
        assert!(too_large(b"$5\r\n", &small).contains("5-byte"));
        assert!(too_large(b"!18446744073709551615\r\n", &small).contains("limit 4"));
        assert_eq!(parse(b"$4\r\n", &small), Ok(None));
        assert!(too_large(b"*3\r\n", &small).contains("3 elements"));
        assert!(too_large(b"%3\r\n", &small).contains("3 elements"));
        assert!(too_large(b">3\r\n", &small).contains("3 elements"));
        assert!(too_large(b"|3\r\n", &small).contains("3 elements"));
        assert!(too_large(b"*1\r\n*1\r\n*1\r\n", &small).contains("deeper than 2"));
        assert!(too_large(b"*1\r\n*1\r\n|1\r\n", &small).contains("deeper than 2"));
        assert_eq!(
            parse(b"*1\r\n*1\r\n:1\r\n", &small),
            Ok(Some((
                Value::Array(vec![Value::Array(vec![Value::Integer(1)])]),
                12
            )))
        );
        // A line over the limit, before and after its CRLF.
        assert!(too_large(b"+abcde", &small).contains("longer than 4"));
        assert!(too_large(b"+abcde\r\n", &small).contains("longer than 4"));
        assert_eq!(parse(b"+abcd", &small), Ok(None));
        assert_eq!(parse(b"+abcd\r\n", &small).unwrap().unwrap().1, 7);
        let none = Limits {
            max_bulk: 0,
            max_elements: 0,
            max_depth: 0,
        };
        assert!(too_large(b"*0\r\n", &none).contains("deeper than 0"));
        assert_eq!(parse(b"$0\r\n\r\n", &none), Ok(Some((Value::Bulk(b""), 6))));
    }

    #[test]
    fn huge_claims_do_not_allocate() {
        let limits = Limits {
            max_bulk: usize::MAX,
            max_elements: usize::MAX,
            max_depth: 4,
        };
        assert_eq!(parse(b"$18446744073709551615\r\n", &limits), Ok(None));
        assert_eq!(parse(b"*18446744073709551615\r\n:1\r\n", &limits), Ok(None));
        assert_eq!(parse(b"%18446744073709551615\r\n", &limits), Ok(None));
        assert!(matches!(
            parse(b"$18446744073709551616\r\n", &limits),
            Err(RespError::Malformed(_))
        ));
    }

    #[test]
    fn write_command_is_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        write_command(
            &mut out,
            &[b"PUBLISH", b"asgi__group__chat_lobby", b"\x82\xa4type"],
        );
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$23\r\nasgi__group__chat_lobby\r\n$6\r\n\x82\xa4type\r\n"
        );
        out.clear();
        write_command(&mut out, &[]);
        assert_eq!(out, b"*0\r\n");
        out.clear();
        write_command(&mut out, &[b"PING", b""]);
        assert_eq!(out, b"*2\r\n$4\r\nPING\r\n$0\r\n\r\n");
    }

    #[test]
    fn write_value_round_trips() {
        let value = Value::Push(vec![
            Value::Simple(b"OK"),
            Value::Error(b"ERR x"),
            Value::Error(b"multi\r\nline"),
            Value::Integer(i64::MIN),
            Value::Bulk(b"\r\n"),
            Value::Null,
            Value::Boolean(false),
            Value::Double(1e300),
            Value::Double(-0.1),
            Value::Double(f64::NEG_INFINITY),
            Value::BigNumber(b"-123456789012345678901234567890"),
            Value::Map(vec![(Value::Bulk(b"k"), Value::Array(vec![]))]),
        ]);
        let mut out = Vec::new();
        write_value(&mut out, &value);
        assert_eq!(whole(&out), value);
        out.clear();
        write_value(&mut out, &Value::Double(f64::NAN));
        assert_eq!(out, b",nan\r\n");
    }

    #[test]
    fn errors_display_plainly() {
        let e = parse(b"$-2\r\n", &LIMITS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed RESP: negative bulk length at byte 1"
        );
    }
}
