//! The chat message the harness sends, and how a received frame is recognised.
//!
//! Sent text (exactly `payload` bytes when that is at least the stamp's own size):
//!
//! ```text
//! {"message":"LT:<epoch>:<send_ts_us>:<sender>:<seq>:{'id':'msg_3f2a…','user':{…"}
//! ```
//!
//! The value is a plain ASCII string so that any server's re-serialisation leaves it
//! byte-for-byte intact (an object would come back with other spacing or key order,
//! a float timestamp could lose digits). `epoch` names the measurement step, so late
//! deliveries from an earlier step of `saturate` are never counted in a later one.
//!
//! The padding is text shaped like a real chat message's JSON (ids, a user, a
//! timestamp, mentions, reactions, words), with `'` for `"` so the value stays one
//! plain string, cut from a fixed pool at an offset that moves with every message. A
//! padding of one repeated byte would compress about 40:1 and make permessage-deflate
//! look far better than it is on real traffic; this text compresses like chat JSON
//! (zlib at level 2, no context: a 256-byte message to 73% of its size, 1 KiB to 50%,
//! 4 KiB to 35%; the relay's own realistic sample, `src/wire/deflate/sample.rs`, gives
//! 72%, 60% and 44%). Without compression only its length matters, as before.

use std::io::Write;
use std::sync::OnceLock;

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
    out.extend_from_slice(filler(stamp, pad));
    out.extend_from_slice(b"\"}");
}

/// `len` bytes of chat-like text for `stamp`'s padding: a slice of [`pool`] at an
/// offset that differs from one message to the next (repeating the pool for a padding
/// longer than it).
fn filler(stamp: &Stamp, len: usize) -> &'static [u8] {
    let pool = pool();
    if len >= pool.len() / 2 {
        // Longer than half the pool: the static buffer for that length is built once.
        return long_filler(len);
    }
    let span = pool.len() - len;
    let mix = u64::from(stamp.seq)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(u64::from(stamp.sender).wrapping_mul(7_919));
    let at = (mix % span as u64) as usize;
    &pool[at..at + len]
}

/// Paddings of half the pool or more (messages of tens of KiB): the pool repeated, one
/// buffer per length, kept for the run (a run sends one size).
fn long_filler(len: usize) -> &'static [u8] {
    static LONG: OnceLock<std::sync::Mutex<Vec<&'static [u8]>>> = OnceLock::new();
    let mut kept = LONG
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(found) = kept.iter().find(|b| b.len() == len) {
        return found;
    }
    let made: &'static [u8] = pool()
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect::<Vec<u8>>()
        .leak();
    kept.push(made);
    made
}

/// 64 KiB of text shaped like chat messages' JSON, the same every run.
fn pool() -> &'static [u8] {
    static POOL: OnceLock<Vec<u8>> = OnceLock::new();
    POOL.get_or_init(|| {
        const NAMES: [&str; 12] = [
            "amelia", "noah", "olivia", "liam", "sofia", "mateo", "chloe", "yusuf", "hana",
            "lucas", "ines", "arjun",
        ];
        const WORDS: [&str; 134] = ["the","deploy","is","done","can","you","check","staging","before","we","ship","it","looks","good","to","me","thanks","for","quick","review","meeting","moved","at","three","please","update","ticket","with","logs","and","screenshots","tomorrow","lunch","anyone","coffee","build","failed","again","fixed","now","customer","reported","slow","page","load","on","mobile","after","release","yesterday","evening","rollback","plan","ready","if","needed","database","migration","took","longer","than","expected","because","index","rebuild","locked","table","friday","afternoon","demo","went","well","sales","team","happy","about","new","dashboard","export","feature","pricing","copy","needs","another","pass","legal","approved","terms","change","invoices","sent","out","monday","morning","standup","skipped","holiday","schedule","shared","calendar","link","design","mockups","uploaded","figma","comments","welcome","accessibility","audit","found","contrast","issues","buttons","header","footer","navigation","search","results","cache","invalidation","bug","reproduced","locally","patch","incoming","tests","green","merge","queue","blocked","flaky","integration","job","retry"];
        const EMOJI: [&str; 6] = [":+1:", ":tada:", ":eyes:", ":heart:", ":rocket:", ":joy:"];
        let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: usize| {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((rng >> 33) % n as u64) as usize
        };
        let mut s = Vec::with_capacity(66 * 1024);
        while s.len() < 64 * 1024 {
            let _ = write!(
                s,
                "{{'id':'msg_{:08x}{:08x}','user':{{'id':{},'name':'{}','avatar':'https://cdn.example.org/u/{:08x}.png'}},'ts':'2026-11-23T21:{:02}:{:02}.{:03}Z','room':'lobby','mentions':[",
                next(1 << 30),
                next(1 << 30),
                4_000 + next(900),
                NAMES[next(NAMES.len())],
                next(1 << 30),
                next(60),
                next(60),
                next(1000)
            );
            for i in 0..1 + next(3) {
                if i > 0 {
                    s.push(b',');
                }
                let _ = write!(s, "{{'id':{},'name':'{}'}}", 4_000 + next(900), NAMES[next(NAMES.len())]);
            }
            s.extend_from_slice(b"],'reactions':[");
            for i in 0..1 + next(4) {
                if i > 0 {
                    s.push(b',');
                }
                let _ = write!(
                    s,
                    "{{'emoji':'{}','count':{},'me':{}}}",
                    EMOJI[next(EMOJI.len())],
                    1 + next(12),
                    next(2) == 0
                );
            }
            s.extend_from_slice(b"],'text':'");
            for i in 0..8 + next(40) {
                if i > 0 {
                    s.push(b' ');
                }
                s.extend_from_slice(WORDS[next(WORDS.len())].as_bytes());
            }
            s.extend_from_slice(b"'} ");
        }
        s
    })
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
            .starts_with("LT:3:123456789:42:7:"));
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

    #[test]
    fn the_padding_is_chat_like_text_that_changes_per_message() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode(&mut a, &S, 1024);
        encode(&mut b, &Stamp { seq: 8, ..S }, 1024);
        assert_eq!((a.len(), b.len()), (1024, 1024));
        let prefix = b"{\"message\":\"LT:3:123456789:42:7:".len();
        assert_ne!(a[prefix..], b[prefix..], "the padding moves with seq");
        let text = std::str::from_utf8(&a).unwrap();
        assert!(
            text.contains("'name':'") || text.contains("'emoji':'"),
            "{text}"
        );
        // One plain JSON string: no quote or backslash inside the value.
        assert!(!text[prefix..text.len() - 2].contains(['"', '\\']));
        // Longer than the pool: still exact, still valid.
        encode(&mut a, &S, 100_000);
        assert_eq!(a.len(), 100_000);
        let j: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert!(j["message"].is_string());
    }

    /// The point of the text: it compresses like chat JSON (raw DEFLATE, no context, a
    /// fresh compressor per message, as permessage-deflate without context takeover).
    #[test]
    fn the_padding_compresses_like_chat_json() {
        use std::io::Write as _;
        for (size, low, high) in [(256, 0.55, 0.9), (1024, 0.45, 0.75), (4096, 0.3, 0.6)] {
            let mut total = (0, 0);
            for seq in 0..32 {
                let mut v = Vec::new();
                encode(&mut v, &Stamp { seq, ..S }, size);
                let mut z =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(2));
                z.write_all(&v).unwrap();
                total.0 += v.len();
                total.1 += z.finish().unwrap().len();
            }
            let ratio = total.1 as f64 / total.0 as f64;
            assert!(
                (low..high).contains(&ratio),
                "{size} B messages compress to {ratio:.2} of their size"
            );
        }
    }
}
