//! The chat message the harness sends, and how a received frame is recognised.
//!
//! Sent text (exactly `payload` bytes when that is at least the stamp's own size):
//!
//! ```text
//! {"message":"LT:<epoch>:<send_ts_us>:<sender>:<seq>:xxxxxxxx"}
//! ```
//!
//! The value is a plain ASCII string so that any server's re-serialisation leaves it
//! byte-for-byte intact (an object would come back with other spacing or key order,
//! a float timestamp could lose digits). `epoch` names the measurement step, so late
//! deliveries from an earlier step of `saturate` are never counted in a later one.

use std::io::Write;

/// What the harness embeds in each message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub epoch: u32,
    pub ts_us: u64,
    pub sender: u32,
    pub seq: u32,
}

/// A server frame, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// One of our messages, delivered back.
    Chat(Stamp),
    /// `{"error": ...}`: the server rejected something we sent.
    Error(&'a [u8]),
    /// Anything else (another client's traffic, a welcome banner, ...).
    Other,
}

/// Smallest frame `encode` can produce for this stamp; smaller `--payload` values
/// are rounded up to it.
pub fn min_size(stamp: &Stamp) -> usize {
    let mut v = Vec::with_capacity(64);
    encode(&mut v, stamp, 0);
    v.len()
}

/// Writes the message for `stamp` into `out` (cleared first), padded to `size` bytes.
pub fn encode(out: &mut Vec<u8>, stamp: &Stamp, size: usize) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"message\":\"LT:{}:{}:{}:{}:",
        stamp.epoch, stamp.ts_us, stamp.sender, stamp.seq
    );
    let pad = size.saturating_sub(out.len() + 2);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
}

/// Classifies a text frame from the server without allocating.
pub fn classify(text: &[u8]) -> Incoming<'_> {
    if let Some(at) = find(text, b"\"message\"") {
        // An error that quotes our input would carry the key escaped (\"message\"),
        // which this search does not match; an error key ahead of it wins anyway.
        if find(&text[..at], b"\"error\"").is_none() {
            if let Some(stamp) = parse_value(&text[at + 9..]) {
                return Incoming::Chat(stamp);
            }
        }
    }
    if find(text, b"\"error\"").is_some() {
        return Incoming::Error(text);
    }
    Incoming::Other
}

/// Parses `  :  "LT:e:t:s:q:` at the start of `rest`.
fn parse_value(rest: &[u8]) -> Option<Stamp> {
    let mut i = skip_ws(rest, 0);
    if rest.get(i) != Some(&b':') {
        return None;
    }
    i = skip_ws(rest, i + 1);
    if !rest[i..].starts_with(b"\"LT:") {
        return None;
    }
    i += 4;
    let (epoch, i) = number(rest, i)?;
    let (ts_us, i) = number(rest, i)?;
    let (sender, i) = number(rest, i)?;
    let (seq, _) = number(rest, i)?;
    Some(Stamp {
        epoch: u32::try_from(epoch).ok()?,
        ts_us,
        sender: u32::try_from(sender).ok()?,
        seq: u32::try_from(seq).ok()?,
    })
}

/// Decimal digits up to a `:`; returns the value and the index after the colon.
fn number(b: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let start = i;
    let mut v: u64 = 0;
    while let Some(&c) = b.get(i) {
        if c == b':' {
            return (i > start).then_some((v, i + 1));
        }
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        i += 1;
    }
    None
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// First index of `needle` in `hay`. Needles here are short and found near the start.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    (0..=last_start).find(|&i| hay[i] == first && &hay[i..i + needle.len()] == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Stamp = Stamp {
        epoch: 3,
        ts_us: 123_456_789,
        sender: 42,
        seq: 7,
    };

    #[test]
    fn encodes_to_the_requested_size_and_is_valid_json() {
        let mut v = Vec::new();
        encode(&mut v, &S, 64);
        assert_eq!(v.len(), 64);
        let j: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert!(j["message"]
            .as_str()
            .unwrap()
            .starts_with("LT:3:123456789:42:7:x"));
        encode(&mut v, &S, 1);
        assert_eq!(v.len(), min_size(&S));
        encode(&mut v, &S, 10_000);
        assert_eq!(v.len(), 10_000);
    }

    #[test]
    fn recognises_deliveries_however_the_server_spaces_them() {
        let mut v = Vec::new();
        encode(&mut v, &S, 80);
        assert_eq!(classify(&v), Incoming::Chat(S));
        // Python's json.dumps style and an extra field first.
        let j: serde_json::Value = serde_json::from_slice(&v).unwrap();
        let spaced = format!("{{\"type\": \"chat\", \"message\": {}}}", j["message"]);
        assert_eq!(classify(spaced.as_bytes()), Incoming::Chat(S));
    }

    #[test]
    fn tells_errors_and_noise_apart() {
        assert!(matches!(
            classify(br#"{"error": "bad json"}"#),
            Incoming::Error(_)
        ));
        let quoted = br#"{"error": "no message in {\"message\":\"LT:1:2:3:4:\"}"}"#;
        assert!(matches!(classify(quoted), Incoming::Error(_)));
        assert_eq!(classify(br#"{"message": "hello"}"#), Incoming::Other);
        assert_eq!(classify(br#"{"message": "LT:1:2:x:4:"}"#), Incoming::Other);
        assert_eq!(
            classify(br#"{"message": "LT:1:99999999999999999999999:3:4:"}"#),
            Incoming::Other
        );
        assert_eq!(classify(b""), Incoming::Other);
        assert_eq!(classify(b"\"message\""), Incoming::Other);
    }
}
