//! Realistic chat JSON of any length, for deflate's tests and benches
//! (`benches/deflate.rs` includes this file by path). Deterministic.

/// A chat message as a web client would send it to the relay, exactly
/// `len` bytes of JSON: a user, a timestamp, mentions, reactions and text
/// from 400 bytes; `{"message":"<text>"}` below that.
pub fn chat_json(len: usize) -> Vec<u8> {
    chat_json_seeded(len, 0)
}

/// [`chat_json`] with other words, names and numbers for each `seed`.
pub fn chat_json_seeded(len: usize, seed: u64) -> Vec<u8> {
    let mut rng =
        Lcg(0x2545_F491_4F6C_DD1D ^ len as u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut s = String::with_capacity(len + 64);
    if len < LONG_FORM {
        s.push_str("{\"message\":\"");
        let closing = 2;
        fill_text(&mut s, len.saturating_sub(closing), &mut rng);
        s.push_str("\"}");
    } else {
        let mentions = (len / 400).clamp(1, 6);
        let reactions = (len / 300).clamp(1, 8);
        s.push_str("{\"message\":{\"id\":\"msg_");
        s.push_str(&format!("{:016x}", rng.next()));
        s.push_str("\",\"user\":{\"id\":");
        s.push_str(&(4_000 + rng.below(900)).to_string());
        s.push_str(",\"name\":\"");
        s.push_str(NAMES[rng.below(NAMES.len() as u64) as usize]);
        s.push_str("\",\"avatar\":\"https://cdn.example.org/u/");
        s.push_str(&format!("{:08x}", rng.next() as u32));
        s.push_str(".png\"},\"ts\":\"2026-11-23T21:");
        s.push_str(&format!(
            "{:02}:{:02}.{:03}Z",
            rng.below(60),
            rng.below(60),
            rng.below(1000)
        ));
        s.push_str("\",\"room\":\"lobby\",\"mentions\":[");
        for i in 0..mentions {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "{{\"id\":{},\"name\":\"{}\"}}",
                4_000 + rng.below(900),
                NAMES[rng.below(NAMES.len() as u64) as usize]
            ));
        }
        s.push_str("],\"reactions\":[");
        for i in 0..reactions {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "{{\"emoji\":\"{}\",\"count\":{},\"me\":{}}}",
                EMOJI[rng.below(EMOJI.len() as u64) as usize],
                1 + rng.below(12),
                rng.below(2) == 0
            ));
        }
        s.push_str("],\"reply_to\":null,\"edited\":false,\"text\":\"");
        let closing = 3;
        let want = len.saturating_sub(s.len() + closing);
        let until = s.len() + want;
        fill_text(&mut s, until, &mut rng);
        s.push_str("\"}}");
    }
    // Pad or cut to the exact length on a char boundary, keeping it JSON:
    // the text is last, so trim or extend it before the closing bytes.
    let tail = if len < LONG_FORM { 2 } else { 3 };
    while s.len() > len.max(tail + 13) {
        let cut = s.len() - tail - 1;
        let mut at = cut;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.replace_range(at..cut + 1, "");
    }
    while s.len() < len {
        let at = s.len() - tail;
        s.insert(at, '.');
    }
    s.into_bytes()
}

/// From this length on, the message is a whole chat object.
const LONG_FORM: usize = 400;

/// Appends words of chat text until `s` is `until` bytes long (or just past).
fn fill_text(s: &mut String, until: usize, rng: &mut Lcg) {
    let mut first = true;
    while s.len() < until {
        if !first {
            s.push(if rng.below(9) == 0 { ',' } else { ' ' });
            if s.ends_with(',') {
                s.push(' ');
            }
        }
        first = false;
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const NAMES: &[&str] = &[
    "zoë", "amir", "li.wei", "sofia_r", "jonas", "priya", "mateo", "hana", "olu", "kasia",
];

const EMOJI: &[&str] = &["👍", "🎉", "😂", "❤️", "👀", "🚀", "✅", "🙏"];

const WORDS: &[&str] = &[
    "the",
    "a",
    "to",
    "and",
    "of",
    "is",
    "in",
    "it",
    "you",
    "that",
    "for",
    "on",
    "we",
    "this",
    "with",
    "be",
    "have",
    "are",
    "not",
    "at",
    "but",
    "can",
    "so",
    "just",
    "if",
    "do",
    "what",
    "from",
    "about",
    "will",
    "there",
    "was",
    "all",
    "they",
    "get",
    "out",
    "up",
    "like",
    "one",
    "think",
    "when",
    "yes",
    "no",
    "ok",
    "thanks",
    "meeting",
    "tomorrow",
    "today",
    "deploy",
    "build",
    "release",
    "branch",
    "merge",
    "review",
    "PR",
    "ticket",
    "bug",
    "fix",
    "test",
    "tests",
    "failing",
    "green",
    "staging",
    "prod",
    "server",
    "client",
    "latency",
    "p99",
    "dashboard",
    "alert",
    "oncall",
    "rollback",
    "config",
    "flag",
    "room",
    "chat",
    "message",
    "websocket",
    "reconnect",
    "timeout",
    "lunch",
    "coffee",
    "standup",
    "sprint",
    "demo",
    "slides",
    "doc",
    "link",
    "sounds",
    "good",
    "great",
    "sure",
    "maybe",
    "later",
    "now",
    "soon",
    "please",
    "check",
    "looks",
    "works",
    "broken",
    "again",
    "still",
    "already",
    "know",
    "see",
    "need",
    "want",
    "should",
    "could",
    "would",
    "let's",
    "I'll",
    "I'm",
    "it's",
    "don't",
    "can't",
    "10:30",
    "3pm",
    "#42",
    "@here",
    "v1.4.2",
    "https://example.org/t/1234",
    "😅",
    "🙂",
    "👍",
    "haha",
    "lol",
    "nice",
    "weird",
    "interesting",
    "agreed",
    "exactly",
    "anyway",
    "btw",
    "fyi",
    "quick",
    "question",
    "answer",
    "because",
    "since",
    "after",
    "before",
    "until",
    "while",
    "into",
    "over",
    "under",
    "between",
    "through",
    "during",
    "without",
    "again",
    "more",
    "less",
    "most",
    "some",
    "any",
    "each",
    "every",
    "other",
    "another",
    "same",
    "different",
    "new",
    "old",
    "first",
    "last",
    "next",
    "long",
    "short",
    "big",
    "small",
    "fast",
    "slow",
];
