//! The byte stream from Redis cut into whole values, incrementally and
//! within a fixed bound, sans-IO.
//!
//! [`parse`] answers "is a whole value there?" by reading from the value's
//! first byte, so a caller that calls it again on every read re-reads a
//! value arriving in pieces from the start, and must buffer all of it. A
//! [`Framer`] remembers where it stopped instead: which aggregates are open
//! and how many elements each still owes. Once a value is whole it is
//! parsed once, by [`parse`], so the values and the errors are [`parse`]'s.
//! Invariants, whatever the bytes:
//!
//! - **Linear.** Every byte is framed once (a length line split across
//!   reads is read again from its start, and it is at most a few bytes
//!   long unless the server is hostile, then bounded as below), and parsed
//!   once when its value is whole.
//! - **Bounded.** The value being framed never holds more than
//!   `max_value` bytes in the buffer, nor more than `max_elements`
//!   elements in all its aggregates together (a map's pair counting one,
//!   as [`parse`] counts them per aggregate): past either,
//!   [`Framer::next_value`] fails. With the caller taking every whole value
//!   after each [`Framer::push`] (calling `next_value` until `None`), the
//!   buffer is at most `max_value` plus one push.
//! - **Oversized strings are skipped, not errors.** A bulk string (`$`, `!`,
//!   `=`) longer than `max_bulk` has a known length, so its bytes are
//!   discarded as they stream in, never buffered, and the stream stays in
//!   sync; the value holds a null (`_`) in its place and says how many
//!   strings it lost ([`Framed::skipped`]). Every other limit breach is a
//!   framing error.
//! - **An error is final**, as with [`parse`]: the connection must go.
//!
//! The framer agrees with [`parse`]: it frames exactly the values [`parse`]
//! reads whole, and a value it frames that [`parse`] refuses is an error.

use super::{parse, Limits, RespError, Value};

/// Cuts a byte stream into whole RESP values.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    max_value: usize,
    buf: Vec<u8>,
    /// Where the value being framed starts; bytes before it were handed out.
    start: usize,
    /// How far the value being framed has been framed.
    scanned: usize,
    /// Where the search for a line's end resumes (a line split across reads).
    line_searched: usize,
    /// The aggregates open around `scanned`, innermost last.
    open: Vec<Open>,
    /// Elements framed in the value so far, across all its aggregates.
    elements: usize,
    /// Bytes of an oversized string (its CRLF included) still to discard.
    skip: u64,
    /// Oversized strings skipped in the value being framed.
    skipped: usize,
    /// The top-level value is whole (an attribute alone is not a value).
    whole: bool,
    failed: Option<RespError>,
}

/// One whole value, parsed.
#[derive(Debug, PartialEq)]
pub struct Framed<'a> {
    pub value: Value<'a>,
    /// Bulk strings over `max_bulk` that were skipped: each is a
    /// [`Value::Null`] in `value`.
    pub skipped: usize,
}

/// An open aggregate: how many elements (a map's keys and values each
/// count) it still owes.
#[derive(Clone, Copy, Debug)]
struct Open {
    left: u64,
    /// An attribute describes the value after it, so when it closes that
    /// value is still to come.
    attribute: bool,
}

/// What framing one item (a line, a string, an aggregate's header) found.
enum Step {
    /// More bytes are needed.
    Incomplete,
    /// The item filled one element (or the top-level value).
    Filled,
    /// An aggregate opened (or an empty attribute closed): nothing filled yet.
    Opened,
}

impl Framer {
    /// `limits.max_bulk` is where strings start being skipped;
    /// `max_value` is the most bytes one value may hold in the buffer.
    pub fn new(limits: Limits, max_value: usize) -> Framer {
        Framer {
            limits,
            max_value,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            line_searched: 0,
            open: Vec::new(),
            elements: 0,
            skip: 0,
            skipped: 0,
            whole: false,
            failed: None,
        }
    }

    /// Takes bytes read from Redis. Bytes of an oversized string are
    /// dropped here; the rest wait for [`Framer::next_value`].
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.start > 0 {
            // Handed out already: drop them once per push, not per value.
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.line_searched = self.line_searched.saturating_sub(self.start);
            self.start = 0;
        }
        if self.skip > 0 {
            let used = self.discard(bytes);
            bytes = &bytes[used..];
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole value, `None` until more bytes come, or the framing
    /// error that ends the connection.
    pub fn next_value(&mut self) -> Result<Option<Framed<'_>>, RespError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.frame() {
            Ok(true) => {}
            Ok(false) => {
                let held = self.buf.len() - self.start;
                if held > self.max_value {
                    return Err(self.fail(RespError::TooLarge(format!(
                        "a reply of more than {} bytes",
                        self.max_value
                    ))));
                }
                return Ok(None);
            }
            Err(e) => return Err(self.fail(e)),
        }
        let (start, end, skipped) = (self.start, self.scanned, self.skipped);
        self.start = end;
        self.line_searched = end;
        self.elements = 0;
        self.skipped = 0;
        self.whole = false;
        match parse(&self.buf[start..end], &self.limits) {
            Ok(Some((value, used))) if used == end - start => Ok(Some(Framed { value, skipped })),
            Ok(_) => Err(RespError::Malformed(
                "a reply the framer and the parser cut differently".into(),
            )),
            Err(e) => Err(e),
        }
        .inspect_err(|e| self.failed = Some(e.clone()))
    }

    /// Bytes held for the value being framed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn fail(&mut self, e: RespError) -> RespError {
        self.failed = Some(e.clone());
        e
    }

    /// Frames from `scanned` until the value is whole (true) or the bytes
    /// run out (false).
    fn frame(&mut self) -> Result<bool, RespError> {
        while !self.whole {
            if self.skip > 0 {
                return Ok(false);
            }
            match self.item()? {
                Step::Incomplete => return Ok(false),
                Step::Opened => {}
                Step::Filled => self.filled(),
            }
        }
        Ok(true)
    }

    /// Frames the item at `scanned`.
    fn item(&mut self) -> Result<Step, RespError> {
        let at = self.scanned;
        let Some(&kind) = self.buf.get(at) else {
            return Ok(Step::Incomplete);
        };
        match kind {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
                // As in `parse`, an integer's line has no length limit of its
                // own (it fails at 20 digits); the value's bound still holds.
                let max = if kind == b':' {
                    usize::MAX
                } else {
                    self.limits.max_bulk
                };
                match self.line_end(at + 1, max)? {
                    Some(end) => {
                        self.scanned = end;
                        Ok(Step::Filled)
                    }
                    None => Ok(Step::Incomplete),
                }
            }
            b'$' | b'!' | b'=' => {
                let Some((len, body)) = self.length(at + 1, kind == b'$', "bulk length")? else {
                    return Ok(Step::Incomplete);
                };
                let Some(len) = len else {
                    self.scanned = body;
                    return Ok(Step::Filled);
                };
                if len > self.limits.max_bulk as u64 {
                    self.skip_string(at, body, len)?;
                    return Ok(Step::Filled);
                }
                let end = body.saturating_add(len as usize);
                match self.buf.get(end..end.saturating_add(2)) {
                    None => Ok(Step::Incomplete),
                    Some(b"\r\n") => {
                        self.scanned = end + 2;
                        Ok(Step::Filled)
                    }
                    Some(_) => Err(malformed("bulk string not followed by CRLF", end)),
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let Some((count, after)) = self.length(at + 1, kind == b'*', "count")? else {
                    return Ok(Step::Incomplete);
                };
                self.scanned = after;
                let Some(count) = count else {
                    return Ok(Step::Filled);
                };
                self.open_aggregate(kind, count, at)
            }
            _ => Err(malformed(
                &format!("unknown RESP type byte 0x{kind:02x}"),
                at,
            )),
        }
    }

    fn open_aggregate(&mut self, kind: u8, count: u64, at: usize) -> Result<Step, RespError> {
        let limits = &self.limits;
        if count > limits.max_elements as u64 {
            return Err(too_large(
                &format!(
                    "an aggregate of {count} elements (limit {})",
                    limits.max_elements
                ),
                at,
            ));
        }
        if self.open.len() >= limits.max_depth {
            return Err(too_large(
                &format!("aggregates nested deeper than {}", limits.max_depth),
                at,
            ));
        }
        let pairs = matches!(kind, b'%' | b'|');
        // Saturating: a count near 2^64 never completes, as with `parse`.
        let left = if pairs {
            count.saturating_mul(2)
        } else {
            count
        };
        // Counted as `parse` counts them (a map's pairs), but over the whole
        // value: each element becomes a `Value` of its own once parsed.
        self.elements = self.elements.saturating_add(count as usize);
        if self.elements > limits.max_elements {
            return Err(too_large(
                &format!("a reply of more than {} elements", limits.max_elements),
                at,
            ));
        }
        let attribute = kind == b'|';
        match (left, attribute) {
            (0, true) => Ok(Step::Opened),
            (0, false) => Ok(Step::Filled),
            _ => {
                self.open.push(Open { left, attribute });
                Ok(Step::Opened)
            }
        }
    }

    /// One element (or the top-level value) is complete: close every
    /// aggregate it completes.
    fn filled(&mut self) {
        loop {
            let Some(top) = self.open.last_mut() else {
                self.whole = true;
                return;
            };
            top.left -= 1;
            if top.left > 0 {
                return;
            }
            let attribute = top.attribute;
            self.open.pop();
            if attribute {
                return;
            }
        }
    }

    /// The index just past the CRLF ending the line that starts at `from`,
    /// as [`parse`] reads lines: no bare CR or LF, at most `max` bytes.
    fn line_end(&mut self, from: usize, max: usize) -> Result<Option<usize>, RespError> {
        let search = self.line_searched.max(from);
        let limit = from
            .saturating_add(max)
            .saturating_add(1)
            .min(self.buf.len());
        let found = self.buf[search.min(limit)..limit]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map(|i| search + i);
        let Some(end) = found else {
            if self.buf.len() - from > max {
                return Err(too_large(&format!("a line longer than {max} bytes"), from));
            }
            self.line_searched = self.buf.len();
            return Ok(None);
        };
        if self.buf[end] == b'\n' {
            return Err(malformed("LF without CR", end));
        }
        match self.buf.get(end + 1) {
            None => {
                self.line_searched = end;
                Ok(None)
            }
            Some(b'\n') => {
                self.line_searched = 0;
                Ok(Some(end + 2))
            }
            Some(_) => Err(malformed("CR not followed by LF", end)),
        }
    }

    /// A length line from `from`: `Some(n)`, or `None` for `-1` where
    /// `nullable`, and where its CRLF ends; `None` while incomplete.
    #[allow(clippy::type_complexity)]
    fn length(
        &self,
        from: usize,
        nullable: bool,
        what: &str,
    ) -> Result<Option<(Option<u64>, usize)>, RespError> {
        let mut at = from;
        let negative = match self.buf.get(at) {
            None => return Ok(None),
            Some(b'-') => {
                at += 1;
                true
            }
            Some(_) => false,
        };
        let mut n: u64 = 0;
        let mut digits = 0;
        loop {
            let Some(&b) = self.buf.get(at) else {
                return Ok(None);
            };
            match b {
                b'0'..=b'9' => {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(b - b'0')))
                        .filter(|&n| usize::try_from(n).is_ok())
                        .ok_or_else(|| malformed(&format!("{what} overflows"), at))?;
                    digits += 1;
                    at += 1;
                }
                b'\r' if digits > 0 => {
                    match self.buf.get(at + 1) {
                        None => return Ok(None),
                        Some(b'\n') => {}
                        Some(_) => return Err(malformed(&format!("{what} without CRLF"), at)),
                    }
                    return match (negative, n) {
                        (false, n) => Ok(Some((Some(n), at + 2))),
                        (true, 1) if nullable => Ok(Some((None, at + 2))),
                        (true, _) => Err(malformed(&format!("negative {what}"), from)),
                    };
                }
                b'?' if digits == 0 => {
                    return Err(malformed("streamed RESP3 types (?) are not supported", at))
                }
                _ if digits == 0 => return Err(malformed(&format!("{what} without digits"), at)),
                _ => return Err(malformed(&format!("non-digit in {what}"), at)),
            }
        }
    }

    /// Replaces the string whose header spans `header..body` by `_\r\n`
    /// and discards its `len` bytes and CRLF, those already here and those
    /// to come.
    fn skip_string(&mut self, header: usize, body: usize, len: u64) -> Result<(), RespError> {
        self.skipped += 1;
        self.skip = len.saturating_add(2);
        let tail = self.buf.split_off(body);
        self.buf.truncate(header);
        self.buf.extend_from_slice(b"_\r\n");
        self.scanned = self.buf.len();
        let used = self.discard(&tail);
        self.buf.extend_from_slice(&tail[used..]);
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Drops what `bytes` holds of the string being skipped, checking that it
    /// ends in CRLF; returns how many bytes that was.
    fn discard(&mut self, bytes: &[u8]) -> usize {
        let body = (self.skip.saturating_sub(2)).min(bytes.len() as u64) as usize;
        self.skip -= body as u64;
        let mut used = body;
        while self.skip > 0 && used < bytes.len() {
            let want = if self.skip == 2 { b'\r' } else { b'\n' };
            if bytes[used] != want {
                self.failed = Some(RespError::Malformed(
                    "a skipped bulk string not followed by CRLF".into(),
                ));
                self.skip = 0;
                return bytes.len();
            }
            self.skip -= 1;
            used += 1;
        }
        used
    }
}

fn malformed(what: &str, at: usize) -> RespError {
    RespError::Malformed(format!("{what} at byte {at}"))
}

fn too_large(what: &str, at: usize) -> RespError {
    RespError::TooLarge(format!("{what} at byte {at}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bulk: 64,
        max_elements: 1 << 16,
        max_depth: 8,
    };

    /// Feeds `bytes` in pieces of `step`, taking every value as it is whole:
    /// (each value's `Debug` text and skip count, the error if any).
    fn read(
        framer: &mut Framer,
        bytes: &[u8],
        step: usize,
    ) -> (Vec<(String, usize)>, Option<RespError>) {
        let mut got = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            framer.push(piece);
            loop {
                match framer.next_value() {
                    Ok(Some(f)) => got.push((format!("{:?}", f.value), f.skipped)),
                    Ok(None) => break,
                    Err(e) => return (got, Some(e)),
                }
            }
        }
        (got, None)
    }

    fn values(bytes: &[u8]) -> Vec<(String, usize)> {
        let mut all = Vec::new();
        let mut at = 0;
        while let Some((v, n)) = parse(&bytes[at..], &LIMITS).unwrap() {
            all.push((format!("{v:?}"), 0));
            at += n;
        }
        assert_eq!(at, bytes.len());
        all
    }

    /// Every kind of value, back to back: the same values as `parse` reads,
    /// whatever the pieces they arrive in.
    #[test]
    fn frames_what_parse_reads_in_any_pieces() {
        let stream: &[u8] = b"+OK\r\n-ERR no\r\n:-12\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n_\r\n#t\r\n,1.5\r\n(123\r\n!3\r\nbad\r\n=8\r\ntxt:text\r\n*2\r\n:1\r\n*0\r\n%1\r\n+k\r\n~1\r\n$0\r\n\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\n\x81\x00\xff\r\n|1\r\n+ttl\r\n:3\r\n+after\r\n*2\r\n|0\r\n+a\r\n|1\r\n+k\r\n+v\r\n+b\r\n";
        let want = values(stream);
        assert_eq!(want.len(), 17);
        for step in [1, 2, 3, 7, 64, stream.len()] {
            let mut framer = Framer::new(LIMITS, 4096);
            assert_eq!(
                read(&mut framer, stream, step),
                (want.clone(), None),
                "step {step}"
            );
            assert_eq!(framer.buffered(), 0);
        }
    }

    fn push_message(payload: &[u8]) -> Vec<u8> {
        let mut b =
            format!(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n${}\r\n", payload.len()).into_bytes();
        b.extend_from_slice(payload);
        b.extend_from_slice(b"\r\n");
        b
    }

    /// A string over `max_bulk` is a null in its value, never buffered, and
    /// the stream stays in sync after it, however it is cut.
    #[test]
    fn oversized_strings_are_skipped_in_sync() {
        let mut stream = push_message(&[b'x'; 10_000]);
        stream.extend(push_message(b"small"));
        stream.extend(b"*2\r\n$65\r\n");
        stream.extend([b'y'; 65]);
        stream.extend(b"\r\n:7\r\n");
        let want = vec![
            (
                format!(
                    "{:?}",
                    Value::Push(vec![
                        Value::Bulk(b"message"),
                        Value::Bulk(b"ch"),
                        Value::Null
                    ])
                ),
                1,
            ),
            (
                format!(
                    "{:?}",
                    Value::Push(vec![
                        Value::Bulk(b"message"),
                        Value::Bulk(b"ch"),
                        Value::Bulk(b"small")
                    ])
                ),
                0,
            ),
            (
                format!("{:?}", Value::Array(vec![Value::Null, Value::Integer(7)])),
                1,
            ),
        ];
        for step in [1, 5, 100, 4096, stream.len()] {
            let mut framer = Framer::new(LIMITS, 256);
            let mut most = 0;
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                framer.push(piece);
                most = most.max(framer.buffered());
                while let Some(f) = framer.next_value().unwrap() {
                    got.push((format!("{:?}", f.value), f.skipped));
                }
            }
            assert_eq!(got, want, "step {step}");
            assert!(most <= 256 + step, "step {step}: held {most} bytes");
        }
    }

    #[test]
    fn a_skipped_string_must_end_in_crlf() {
        for step in [1, 3, 1000] {
            let mut stream = b"$100\r\n".to_vec();
            stream.extend([b'z'; 100]);
            stream.extend(b"\rX+OK\r\n");
            let mut framer = Framer::new(LIMITS, 256);
            let (got, err) = read(&mut framer, &stream, step);
            assert!(got.len() <= 1, "step {step}: {got:?}");
            assert!(
                matches!(err, Some(RespError::Malformed(ref m)) if m.contains("CRLF")),
                "step {step}: {err:?}"
            );
            // An error is final.
            framer.push(b"+OK\r\n");
            assert!(framer.next_value().is_err());
        }
    }

    /// A value that never ends is refused once it holds `max_value` bytes,
    /// whatever the pieces: the buffer never holds much more.
    #[test]
    fn a_value_that_never_ends_is_refused_at_the_bound() {
        let mut framer = Framer::new(LIMITS, 1000);
        framer.push(b"*65536\r\n");
        assert_eq!(framer.next_value(), Ok(None));
        let element = b"$10\r\n0123456789\r\n";
        let mut fed = 0;
        let err = loop {
            framer.push(element);
            fed += element.len();
            assert!(framer.buffered() <= 1000 + element.len());
            match framer.next_value() {
                Ok(None) => {}
                Ok(Some(f)) => panic!("a value from an endless array: {f:?}"),
                Err(e) => break e,
            }
            assert!(fed < 10_000, "never refused");
        };
        assert!(
            matches!(err, RespError::TooLarge(ref m) if m.contains("1000 bytes")),
            "{err:?}"
        );
        // So is a line that never ends, and an element count past the limit
        // across aggregates.
        let mut framer = Framer::new(LIMITS, 1000);
        framer.push(&[b'+'; 2000]);
        assert!(matches!(framer.next_value(), Err(RespError::TooLarge(_))));
        let small = Limits {
            max_elements: 4,
            ..LIMITS
        };
        let mut framer = Framer::new(small, 1000);
        framer.push(b"*2\r\n*3\r\n");
        assert!(
            matches!(framer.next_value(), Err(RespError::TooLarge(ref m)) if m.contains("more than 4 elements"))
        );
    }

    /// Found by the `resp_framer` fuzz target: a map's count past 2^63 made
    /// its element count overflow. Like `parse`, it waits for elements.
    #[test]
    fn huge_claimed_counts_wait_without_overflow() {
        let roomy = Limits {
            max_bulk: usize::MAX,
            max_elements: usize::MAX,
            max_depth: 4,
        };
        for claim in [
            &b"%9614231845755718038\r\n"[..],
            b"|18446744073709551615\r\n:1\r\n",
        ] {
            let mut framer = Framer::new(roomy, usize::MAX);
            framer.push(claim);
            assert_eq!(framer.next_value(), Ok(None));
            assert_eq!(parse(claim, &roomy), Ok(None));
        }
    }

    #[test]
    fn framing_errors_are_parse_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"$-2\r\n",
            b"$+1\r\n",
            b"$1x\r\n",
            b"$?\r\n",
            b"*?\r\n",
            b"%-1\r\n",
            b"$1\r\nab\r\n",
            b"+a\nb\r\n",
            b"+a\rb\r\n",
            b":1.5\r\n",
            b"#x\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n",
        ] {
            let mut framer = Framer::new(LIMITS, 4096);
            framer.push(bad);
            assert!(
                framer.next_value().is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(parse(bad, &LIMITS).is_err());
        }
    }
}
