//! Property tests for the sans-IO protocol core: random and mutated byte
//! streams, split at random points, fed the way the event loop feeds them.
//!
//! The properties are the ones a hostile network makes matter: no input
//! panics, the bytes a caller must keep between reads stay bounded, and a
//! stream split anywhere gives the same result as the whole stream. The
//! expected values are computed by the test's own encoders (a naive masking
//! loop, hand-built request heads), never by the code under test.
//!
//! Cases per property default to a few hundred so the file runs in seconds;
//! `PROPTEST_CASES=20000 cargo test --release --test proptest_core` digs
//! deeper.

mod prop_support;

use prop_support::{config, cuts};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use roomcast::chat;
use roomcast::wire::error::ProtocolError;
use roomcast::wire::frame::{self, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use roomcast::wire::http::{self, Decision, OriginPolicy, Rejection, Request, WsRoute};
use roomcast::wire::mask::unmask;
use roomcast::wire::message::{DataKind, Decoded, Decoder, Event, Limits};
use serde_json::Value;

/// The chunks a reader would see: `cuts` resolved, or fixed-size reads.
fn chunking(mode: &Chunking, len: usize) -> Vec<usize> {
    match mode {
        Chunking::Cuts(indices) => cuts(indices, len),
        // Fixed-size reads, at most a few thousand of them per stream.
        Chunking::Every(size) => {
            let size = (*size).max(len / 2048).max(1);
            (1..).map(|i| i * size).take_while(|&c| c < len).collect()
        }
    }
}

#[derive(Clone, Debug)]
enum Chunking {
    Cuts(Vec<Index>),
    Every(usize),
}

fn chunking_strategy() -> impl Strategy<Value = Chunking> {
    prop_oneof![
        3 => vec(any::<Index>(), 0..16).prop_map(Chunking::Cuts),
        1 => (1usize..18).prop_map(Chunking::Every),
    ]
}

// ---- frames and message assembly ----------------------------------------

/// An event with its borrowed bytes copied out.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owned {
    Message(DataKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// Everything a decoder said about a stream: its events, then the error it
/// stopped at or the bytes left over when the input ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Owned>,
    end: Result<Vec<u8>, ProtocolError>,
}

/// What the caller may have to keep between reads: a partial header or a
/// partial control frame (module doc of `message`).
const MAX_LEFTOVER: usize = MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD;

const BIG: Limits = Limits {
    max_frame_size: 1 << 20,
    max_message_size: 1 << 20,
};

/// Feeds `stream` in the chunks given by `cuts` the way the event loop does:
/// append the read to the pending bytes, decode until no event, drop what was
/// consumed, give the assembly buffer back while idle. Checks per call that
/// the decoder consumed no more than it was given, that an event always
/// consumes (or the loop would spin), that events are well-formed and that
/// the kept rest stays small.
fn feed(stream: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
    let mut decoder = Decoder::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([stream.len()]) {
        pending.extend_from_slice(&stream[start..end]);
        start = end;
        let mut pos = 0;
        loop {
            let available = pending.len() - pos;
            let Decoded { consumed, event } = match decoder.decode(&mut pending[pos..], limits) {
                Ok(d) => d,
                Err(e) => {
                    return Outcome {
                        events,
                        end: Err(e),
                    }
                }
            };
            assert!(
                consumed <= available,
                "consumed {consumed} of {available} bytes"
            );
            pos += consumed;
            let Some(event) = event else { break };
            assert!(consumed > 0, "an event that consumes nothing: {event:?}");
            events.push(owned(event));
        }
        pending.drain(..pos);
        assert!(
            pending.len() < MAX_LEFTOVER,
            "the caller must keep {} bytes",
            pending.len()
        );
        decoder.release_buffer();
    }
    Outcome {
        events,
        end: Ok(pending),
    }
}

fn owned(event: Event<'_>) -> Owned {
    match event {
        Event::Message(kind, payload) => {
            if kind == DataKind::Text {
                assert!(
                    std::str::from_utf8(payload).is_ok(),
                    "a text message that is not UTF-8: {payload:02x?}"
                );
            }
            Owned::Message(kind, payload.to_vec())
        }
        Event::Ping(p) => {
            assert!(p.len() <= MAX_CONTROL_PAYLOAD);
            Owned::Ping(p.to_vec())
        }
        Event::Pong(p) => {
            assert!(p.len() <= MAX_CONTROL_PAYLOAD);
            Owned::Pong(p.to_vec())
        }
        Event::Close(c) => {
            if let Some((code, reason)) = c {
                assert!(code.is_valid_on_wire(), "close code {code}");
                assert!(reason.len() <= MAX_CONTROL_PAYLOAD - 2);
            }
            Owned::Close(c.map(|(code, reason)| (code.0, reason.to_string())))
        }
    }
}

/// Appends a masked client frame, masked by a plain byte loop (not the code
/// under test), with the shortest length encoding.
fn push_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65_535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

#[derive(Clone, Debug)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

#[derive(Clone, Debug)]
enum Item {
    Control(Control),
    /// A data message cut into fragments at `cuts`, with control frames
    /// after each fragment but the last.
    Message {
        kind: DataKind,
        payload: Vec<u8>,
        cuts: Vec<Index>,
        between: Vec<Vec<Control>>,
    },
}

/// A valid client stream and the events it must produce.
#[derive(Clone, Debug)]
struct Stream {
    bytes: Vec<u8>,
    events: Vec<Owned>,
    /// Per data frame, in order: the events before it, its payload length
    /// and the length of its message before it.
    data_frames: Vec<(usize, u64, u64)>,
}

impl Stream {
    /// What the stream gives under `limits`: every event up to the first
    /// data frame over a limit, then that limit's error.
    fn expected(&self, limits: &Limits) -> Outcome {
        for &(before, len, so_far) in &self.data_frames {
            let error = if len > limits.max_frame_size {
                ProtocolError::FrameTooBig
            } else if so_far + len > limits.max_message_size {
                ProtocolError::MessageTooBig
            } else {
                continue;
            };
            return Outcome {
                events: self.events[..before].to_vec(),
                end: Err(error),
            };
        }
        Outcome {
            events: self.events.clone(),
            end: Ok(vec![]),
        }
    }
}

fn control() -> impl Strategy<Value = Control> {
    let code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    prop_oneof![
        vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD).prop_map(Control::Ping),
        vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD).prop_map(Control::Pong),
        Just(Control::Close(None)),
        (code, vec(any::<char>(), 0..40)).prop_map(|(code, chars)| {
            let mut reason: String = chars.into_iter().collect();
            let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            Control::Close(Some((code, reason)))
        }),
    ]
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => vec(any::<char>(), 0..40).prop_map(|c| String::from_iter(c).into_bytes()),
        3 => vec(any::<char>(), 40..150).prop_map(|c| String::from_iter(c).into_bytes()),
        // Around the 16-bit and 64-bit length forms.
        1 => (65_530usize..65_545, any::<char>()).prop_map(|(n, c)| {
            let mut s = c.to_string().repeat(n / c.len_utf8());
            while s.len() < n {
                s.push('a');
            }
            s.into_bytes()
        }),
    ]
}

fn binary() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => vec(any::<u8>(), 0..60),
        3 => vec(any::<u8>(), 100..300),
        1 => (65_530usize..65_545, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    let message = prop_oneof![
        text().prop_map(|p| (DataKind::Text, p)),
        binary().prop_map(|p| (DataKind::Binary, p)),
    ];
    prop_oneof![
        1 => control().prop_map(Item::Control),
        3 => (
            message,
            vec(any::<Index>(), 0..4),
            vec(vec(control(), 0..3), 4),
        )
            .prop_map(|((kind, payload), cuts, between)| Item::Message {
                kind,
                payload,
                cuts,
                between,
            }),
    ]
}

fn encode_control(out: &mut Vec<u8>, events: &mut Vec<Owned>, c: &Control, mask: [u8; 4]) {
    match c {
        Control::Ping(p) => {
            push_frame(out, true, 0x9, p, mask);
            events.push(Owned::Ping(p.clone()));
        }
        Control::Pong(p) => {
            push_frame(out, true, 0xA, p, mask);
            events.push(Owned::Pong(p.clone()));
        }
        Control::Close(None) => {
            push_frame(out, true, 0x8, &[], mask);
            events.push(Owned::Close(None));
        }
        Control::Close(Some((code, reason))) => {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            push_frame(out, true, 0x8, &payload, mask);
            events.push(Owned::Close(Some((*code, reason.clone()))));
        }
    }
}

fn stream() -> impl Strategy<Value = Stream> {
    (vec(item(), 1..6), vec(any::<[u8; 4]>(), 1..8)).prop_map(|(items, masks)| {
        let mut masks = masks.into_iter().cycle();
        let mut bytes = Vec::new();
        let mut events = Vec::new();
        let mut data_frames = Vec::new();
        for item in &items {
            match item {
                Item::Control(c) => {
                    encode_control(&mut bytes, &mut events, c, masks.next().unwrap())
                }
                Item::Message {
                    kind,
                    payload,
                    cuts: at,
                    between,
                } => {
                    let mut bounds = cuts(at, payload.len());
                    bounds.push(payload.len());
                    let mut start = 0;
                    for (i, &end) in bounds.iter().enumerate() {
                        let last = i + 1 == bounds.len();
                        let opcode = match (i, kind) {
                            (0, DataKind::Text) => 0x1,
                            (0, DataKind::Binary) => 0x2,
                            _ => 0x0,
                        };
                        let mask = masks.next().unwrap();
                        data_frames.push((events.len(), (end - start) as u64, start as u64));
                        push_frame(&mut bytes, last, opcode, &payload[start..end], mask);
                        start = end;
                        if !last {
                            for c in &between[i] {
                                encode_control(&mut bytes, &mut events, c, masks.next().unwrap());
                            }
                        }
                    }
                    events.push(Owned::Message(*kind, payload.clone()));
                }
            }
        }
        Stream {
            bytes,
            events,
            data_frames,
        }
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        match *m {
            Mutation::Flip(ref i, x) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] ^= x;
            }
            Mutation::Insert(ref i, b) => {
                let i = i.index(bytes.len() + 1);
                bytes.insert(i, b);
            }
            Mutation::Delete(ref i) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes.remove(i);
            }
            Mutation::Truncate(ref i) => {
                let i = i.index(bytes.len() + 1);
                bytes.truncate(i);
            }
            _ => {}
        }
    }
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(BIG),
        (0u64..300, 0u64..600).prop_map(|(frame, message)| Limits {
            max_frame_size: frame,
            max_message_size: message,
        }),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Valid streams give exactly the framed events, whole or split.
    #[test]
    fn decoder_valid_stream_split_anywhere(s in stream(), chunks in chunking_strategy()) {
        let whole = feed(&s.bytes, &[], &BIG);
        prop_assert_eq!(&whole, &s.expected(&BIG));
        prop_assert_eq!(&whole, &Outcome { events: s.events.clone(), end: Ok(vec![]) });
        let split = feed(&s.bytes, &chunking(&chunks, s.bytes.len()), &BIG);
        prop_assert_eq!(split, whole);
    }

    /// Limits bite at exactly the first data frame over one, from its
    /// header: limits are picked at, just under and just over real sizes.
    #[test]
    fn decoder_limits_bite_exactly(
        s in stream(),
        frame_pick in (any::<Index>(), -1i64..=1),
        message_pick in (any::<Index>(), -1i64..=1),
        chunks in chunking_strategy(),
    ) {
        let near = |(i, delta): (Index, i64), total: bool| match s.data_frames.len() {
            0 => 0,
            n => {
                let (_, len, so_far) = s.data_frames[i.index(n)];
                let size = if total { so_far + len } else { len };
                size.saturating_add_signed(delta)
            }
        };
        let limits = Limits {
            max_frame_size: near(frame_pick, false),
            max_message_size: near(message_pick, true),
        };
        let want = s.expected(&limits);
        prop_assert_eq!(&feed(&s.bytes, &[], &limits), &want);
        prop_assert_eq!(feed(&s.bytes, &chunking(&chunks, s.bytes.len()), &limits), want);
    }

    /// A valid stream cut short gives a prefix of its events and no error.
    #[test]
    fn decoder_truncated_stream_gives_a_prefix(
        s in stream(),
        at in any::<Index>(),
        chunks in chunking_strategy(),
    ) {
        let cut = at.index(s.bytes.len() + 1);
        let part = &s.bytes[..cut];
        let whole = feed(part, &[], &BIG);
        prop_assert!(whole.end.is_ok(), "{:?}", whole.end);
        prop_assert!(s.events.starts_with(&whole.events));
        prop_assert_eq!(feed(part, &chunking(&chunks, cut), &BIG), whole);
    }

    /// Mutated streams never panic, and whole or split they give the same
    /// events, then the same error or the same leftover.
    #[test]
    fn decoder_mutated_stream_split_anywhere(
        s in stream(),
        mutations in vec(mutation(), 1..6),
        limits in limits(),
        chunks in chunking_strategy(),
    ) {
        let mut bytes = s.bytes;
        mutate(&mut bytes, &mutations);
        let whole = feed(&bytes, &[], &limits);
        let split = feed(&bytes, &chunking(&chunks, bytes.len()), &limits);
        prop_assert_eq!(split, whole);
    }

    /// A close frame's payload is judged by RFC 6455 section 5.5.1 and
    /// the codes of section 7.4 (plus IANA's 1012-1014).
    #[test]
    fn decoder_close_payload_rules(
        code in prop_oneof![any::<u16>(), 995u16..1020, 2995u16..3005, 4995u16..5005],
        reason in prop_oneof![
            vec(any::<char>(), 0..30).prop_map(|c| String::from_iter(c).into_bytes()),
            vec(any::<u8>(), 0..30),
        ],
        short in 0usize..3,
        mask in any::<[u8; 4]>(),
        chunks in chunking_strategy(),
    ) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&reason);
        payload.truncate(if short < 2 { short } else { MAX_CONTROL_PAYLOAD });
        let want = match payload.len() {
            0 => Ok(Owned::Close(None)),
            1 => Err(ProtocolError::CloseLength),
            _ if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) => {
                Err(ProtocolError::CloseCodeInvalid(code))
            }
            _ => match std::str::from_utf8(&payload[2..]) {
                Ok(r) => Ok(Owned::Close(Some((code, r.to_string())))),
                Err(_) => Err(ProtocolError::CloseReasonUtf8),
            },
        };
        let want = match want {
            Ok(event) => Outcome { events: vec![event], end: Ok(vec![]) },
            Err(e) => Outcome { events: vec![], end: Err(e) },
        };
        let mut bytes = Vec::new();
        push_frame(&mut bytes, true, 0x8, &payload, mask);
        prop_assert_eq!(&feed(&bytes, &[], &BIG), &want);
        prop_assert_eq!(&feed(&bytes, &chunking(&chunks, bytes.len()), &BIG), &want);
    }

    /// Random bytes, with a masked-frame-looking start half the time.
    #[test]
    fn decoder_random_bytes_split_anywhere(
        mut bytes in vec(any::<u8>(), 0..400),
        masked in any::<bool>(),
        limits in limits(),
        chunks in chunking_strategy(),
    ) {
        if masked && bytes.len() >= 2 {
            bytes[0] &= 0x8F;
            bytes[1] |= 0x80;
        }
        let whole = feed(&bytes, &[], &limits);
        prop_assert_eq!(feed(&bytes, &chunking(&chunks, bytes.len()), &limits), whole);
    }
}

// ---- request heads ------------------------------------------------------

/// Feeds `buf` to `parse_head` the way the loop does: after each read,
/// parse everything received so far; the first answer that is not "need
/// more" is final.
type Parsed = Result<Option<(Request, usize)>, Rejection>;

fn parse_split(buf: &[u8], cuts: &[usize], max: usize) -> Parsed {
    for end in cuts.iter().copied().chain([buf.len()]) {
        let r = http::parse_head(&buf[..end], max);
        if !matches!(r, Ok(None)) {
            return r;
        }
    }
    Ok(None)
}

fn check_parsed(r: &Parsed, len: usize, max: usize) {
    match r {
        Ok(None) => assert!(len <= max, "{len} bytes buffered with a limit of {max}"),
        Ok(Some((_, n))) => assert!(*n <= len && *n <= max && *n > 0),
        Err(rej) => assert!(
            matches!(rej.status, 400 | 431),
            "status {} for a head",
            rej.status
        ),
    }
}

/// A header name in one of the spellings clients use.
fn spell(name: &str, style: u8) -> String {
    match style % 3 {
        0 => name.to_ascii_lowercase(),
        1 => name.to_ascii_uppercase(),
        _ => name.to_string(),
    }
}

/// A valid upgrade request, written differently each time.
#[derive(Clone, Debug)]
struct UpgradeHead {
    head: Vec<u8>,
    route: WsRoute,
    path: String,
    key: String,
    origin: Option<String>,
}

fn upgrade_head() -> impl Strategy<Value = UpgradeHead> {
    let route = prop_oneof![
        "[A-Za-z0-9_.-]{1,95}".prop_map(WsRoute::Chat),
        Just(WsRoute::Echo),
    ];
    let origin = prop_oneof![
        Just(None),
        "https?://[a-z]{1,8}\\.example\\.com(:[0-9]{1,5})?".prop_map(Some),
        // Not under the wildcard: another domain, a name that only ends
        // like it, the bare domain.
        "https?://(([a-z]{1,8}\\.)?example\\.org|[a-z]{1,8}example\\.com|example\\.com)(:[0-9]{1,5})?"
            .prop_map(Some),
    ];
    let ows = || prop_oneof![Just(""), Just(" "), Just("  "), Just("\t")];
    (
        (route, any::<bool>(), "(\\?[a-z0-9=&]{0,12})?"),
        "[A-Za-z0-9+/]{22}==",
        prop_oneof![Just("websocket"), Just("WebSocket"), Just("WEBSOCKET")],
        (
            vec(prop_oneof![Just("keep-alive"), Just("x-thing")], 0..3),
            prop_oneof![Just("Upgrade"), Just("upgrade"), Just("UPGRADE")],
            any::<Index>(),
        ),
        origin,
        vec(
            ("[A-Za-z][A-Za-z0-9-]{0,12}", "[!-~]([ -~]{0,30}[!-~])?"),
            0..4,
        ),
        (any::<[u8; 8]>(), ows(), ows()),
    )
        .prop_flat_map(
            |(
                (route, slash, query),
                key,
                upgrade,
                (mut tokens, token, at),
                origin,
                extra,
                (styles, o1, o2),
            )| {
                let path = match &route {
                    WsRoute::Chat(room) => {
                        format!("/ws/chat/{room}{}", if slash { "/" } else { "" })
                    }
                    WsRoute::Echo => format!("/ws/echo{}", if slash { "/" } else { "" }),
                };
                tokens.insert(at.index(tokens.len() + 1), token);
                let mut lines = vec![
                    format!("{}: 127.0.0.1:8000", spell("Host", styles[0])),
                    format!("{}:{o1}{upgrade}{o2}", spell("Upgrade", styles[1])),
                    format!(
                        "{}:{o2}{}",
                        spell("Connection", styles[2]),
                        tokens.join(", ")
                    ),
                    format!("{}:{o1}{key}", spell("Sec-WebSocket-Key", styles[3])),
                    format!("{}: 13{o2}", spell("Sec-WebSocket-Version", styles[4])),
                ];
                if let Some(o) = &origin {
                    lines.push(format!("{}: {o}", spell("Origin", styles[5])));
                }
                for (name, value) in extra {
                    lines.push(format!("X-{name}: {value}"));
                }
                let first = format!("GET {path}{query} HTTP/1.1");
                (
                    Just((first, route, path, key, origin)),
                    Just(lines).prop_shuffle(),
                )
            },
        )
        .prop_map(|((first, route, path, key, origin), lines)| {
            let head = format!("{first}\r\n{}\r\n\r\n", lines.join("\r\n")).into_bytes();
            UpgradeHead {
                head,
                route,
                path,
                key,
                origin,
            }
        })
}

/// Bytes that look enough like a head to get past the request line.
fn head_like() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => b'a'..=b'z',
        2 => Just(b':'),
        2 => Just(b' '),
        2 => Just(b'\r'),
        2 => Just(b'\n'),
        1 => Just(b'\t'),
        1 => Just(b'/'),
        1 => any::<u8>(),
    ];
    (
        prop_oneof![
            Just(&b""[..]),
            Just(&b"GET / HTTP/1.1\r\n"[..]),
            Just(&b"GET /ws/chat/lobby/ HTTP/1.1\r\nUpgrade: websocket\r\n"[..]),
        ],
        vec(byte, 0..300),
    )
        .prop_map(|(start, rest)| [start, &rest[..]].concat())
}

fn wildcard_policy() -> OriginPolicy {
    OriginPolicy::new(&["*.example.com".to_string()])
}

proptest! {
    #![proptest_config(config(256))]

    /// Every prefix of a valid head is "need more" (or 431 once over the
    /// limit), the whole is the request, and reads split anywhere reach the
    /// same answer and the same decision.
    #[test]
    fn head_split_anywhere(
        u in upgrade_head(),
        trailing in vec(any::<u8>(), 0..20),
        max in prop_oneof![Just(8192usize), 16usize..600],
        chunks in vec(any::<Index>(), 0..12),
    ) {
        let n = u.head.len();
        for k in 0..n {
            let want = if k > max { Err(431) } else { Ok(None) };
            let got = http::parse_head(&u.head[..k], max).map_err(|r| r.status);
            prop_assert_eq!(got, want, "prefix of {} bytes", k);
        }
        let buf = [&u.head[..], &trailing].concat();
        let whole = http::parse_head(&buf, max);
        if n > max {
            prop_assert_eq!(whole.clone().map_err(|r| r.status), Err(431));
        } else {
            let (req, len) = whole.clone().unwrap().unwrap();
            prop_assert_eq!(len, n);
            prop_assert_eq!(&req.method, "GET");
            prop_assert_eq!(&req.path, &u.path);
            prop_assert!(req.http11 && req.connection_upgrade && !req.connection_close);
            prop_assert_eq!(req.ws_version.as_deref(), Some("13"));
            prop_assert_eq!(req.ws_key.as_deref(), Some(u.key.as_str()));
            prop_assert_eq!(&req.origin, &u.origin);
            let decision = http::decide(&req, &wildcard_policy());
            // The policy allows "*.example.com" only.
            let allowed = !matches!(&u.origin, Some(o) if !o.contains(".example.com"));
            if allowed {
                let accept = tungstenite::handshake::derive_accept_key(u.key.as_bytes());
                prop_assert_eq!(decision, Decision::Upgrade { route: u.route.clone(), accept });
            } else {
                prop_assert!(matches!(decision, Decision::Reject(r) if r.status == 403));
            }
        }
        let split = parse_split(&buf, &cuts(&chunks, buf.len()), max);
        prop_assert_eq!(&split, &whole);
    }

    /// Arbitrary bytes never panic and every answer is in range.
    #[test]
    fn head_arbitrary_bytes(
        buf in prop_oneof![vec(any::<u8>(), 0..300), head_like()],
        max in prop_oneof![Just(8192usize), 0usize..300],
    ) {
        let r = http::parse_head(&buf, max);
        check_parsed(&r, buf.len(), max);
        if let Ok(Some((req, _))) = &r {
            let _ = http::decide(req, &wildcard_policy());
            let _ = http::decide(req, &OriginPolicy::default());
        }
    }

    /// Split reads of arbitrary heads reach the same answer as one read.
    #[test]
    fn head_like_split_anywhere(
        buf in head_like(),
        max in prop_oneof![Just(8192usize), 0usize..300],
        chunks in vec(any::<Index>(), 0..12),
    ) {
        let whole = http::parse_head(&buf, max);
        let split = parse_split(&buf, &cuts(&chunks, buf.len()), max);
        check_parsed(&split, buf.len(), max);
        // The answer never depends on how the head was split into reads.
        prop_assert_eq!(split, whole);
    }
}

// ---- chat messages ------------------------------------------------------

fn json_value() -> impl Strategy<Value = Value> {
    let float = any::<f64>().prop_filter("finite, exact through JSON text", |f| {
        f.is_finite() && serde_json::from_str::<f64>(&Value::from(*f).to_string()).ok() == Some(*f)
    });
    let string = vec(any::<char>(), 0..12).prop_map(String::from_iter);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float.prop_map(Value::from),
        string.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(string.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The JSON payload of an unmasked server frame.
fn frame_json(f: &[u8]) -> Value {
    let (h, n) = frame::parse_header(f, false).unwrap().unwrap();
    assert_eq!(h.payload_len as usize, f.len() - n);
    assert!(h.fin && h.opcode == frame::Opcode::Text);
    serde_json::from_slice(&f[n..]).expect("the relay's frames hold JSON")
}

/// Checks `decode`/`process` on `text` against serde_json's own reading.
fn check_chat(text: &str) {
    let parsed = serde_json::from_str::<Value>(text);
    match chat::decode(text) {
        Ok(raw) => {
            let broadcast = chat::process(text).unwrap();
            match parsed {
                Ok(input) => {
                    let v: Value = serde_json::from_str(raw).expect("raw text is JSON");
                    assert_eq!(Some(&v), input.get("message"), "{text:?}");
                    let out = frame_json(&broadcast);
                    assert_eq!(out.as_object().map(|o| o.len()), Some(1));
                    assert_eq!(out["message"], v);
                }
                Err(e) => {
                    // Valid JSON (RFC 8259's grammar) that serde_json's
                    // `Value` cannot hold: 1e400, a lone surrogate escape
                    // ("\ud800"), nesting past its recursion limit (skipping
                    // a raw value has none). Passed through as it came.
                    let why = e.to_string();
                    assert!(
                        [
                            "out of range",
                            "surrogate",
                            "end of hex escape",
                            "recursion limit"
                        ]
                        .iter()
                        .any(|w| why.contains(w)),
                        "{text:?} accepted, but serde_json says: {why}"
                    );
                    let (_, n) = frame::parse_header(&broadcast, false).unwrap().unwrap();
                    let payload = std::str::from_utf8(&broadcast[n..]).unwrap();
                    assert_eq!(payload, format!("{{\"message\": {raw}}}"));
                    serde_json::from_str::<serde::de::IgnoredAny>(payload).unwrap();
                }
            }
        }
        Err(e) => {
            // serde_json's map keeps the last of duplicate keys; the relay
            // refuses a duplicate "message" as invalid JSON.
            let duplicate =
                matches!(&e, chat::ChatError::InvalidJson(w) if w.contains("duplicate field"));
            let message = parsed.ok().and_then(|v| v.get("message").cloned());
            assert!(message.is_none() || duplicate, "{text:?} refused: {e}");
            let out = frame_json(&chat::process(text).unwrap_err());
            assert!(out["error"].is_string(), "{out}");
            assert_eq!(out.as_object().map(|o| o.len()), Some(1));
        }
    }
}

/// The edges `check_chat` knows about, so they stay known.
#[test]
fn chat_edge_cases() {
    let deep = format!("{{\"message\": {}{}}}", "[".repeat(200), "]".repeat(200));
    for text in [
        r#"{"message": 1e400}"#,
        r#"{"message": 1, "message": 2}"#,
        r#"{"mess\u0061ge": "escaped key"}"#,
        r#"{"message": "\ud800"}"#,
        r#"{"x": "\udc00", "message": "\ud83d\ude00"}"#,
        deep.as_str(),
        "",
        "\u{feff}{\"message\": 1}",
    ] {
        check_chat(text);
    }
    assert_eq!(chat::decode(&deep).map(str::len), Ok(400));
    assert_eq!(chat::decode(r#"{"mess\u0061ge": 7}"#), Ok("7"));
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary text never panics, and Ok/Err agree with serde_json.
    #[test]
    fn chat_arbitrary_text(text in prop_oneof![
        any::<String>(),
        "[ {}\\[\\]\":,a-z0-9.\\\\-]{0,40}",
    ]) {
        check_chat(&text);
    }

    /// Any JSON value as "message" comes back byte-for-byte, among other
    /// fields, compact or pretty.
    #[test]
    fn chat_message_value_round_trips(
        v in json_value(),
        pretty in any::<bool>(),
        first in any::<bool>(),
        lead in "[ \t\r\n]{0,3}",
    ) {
        let (text, raw_want) = if pretty {
            (
                serde_json::to_string_pretty(&serde_json::json!({"message": v, "x": 1})).unwrap(),
                None,
            )
        } else if first {
            (serde_json::json!({"message": v, "x": 1}).to_string(), Some(v.to_string()))
        } else {
            (format!("{{\"x\": [1, {{}}], \"message\":{v} }}"), Some(v.to_string()))
        };
        let text = format!("{lead}{text}");
        let raw = chat::decode(&text).unwrap();
        let back: Value = serde_json::from_str(raw).unwrap();
        prop_assert_eq!(&back, &v);
        if let Some(want) = raw_want {
            prop_assert_eq!(raw, want.as_str());
        }
        check_chat(&text);
    }

    /// Valid chat JSON with bytes inserted, deleted or changed.
    #[test]
    fn chat_mutated_json(
        v in json_value(),
        mutations in vec(mutation(), 1..4),
    ) {
        let mut bytes = serde_json::json!({"message": v}).to_string().into_bytes();
        mutate(&mut bytes, &mutations);
        check_chat(&String::from_utf8_lossy(&bytes));
    }
}

// ---- unmasking ----------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Unmasking in pieces, at any payload offset, equals one pass, and
    /// both equal the byte loop of RFC 6455 section 5.3.
    #[test]
    fn unmask_piecewise_equals_whole(
        data in vec(any::<u8>(), 0..200),
        mask in any::<[u8; 4]>(),
        offset in 0usize..64,
        at in vec(any::<Index>(), 0..6),
    ) {
        let naive: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[(offset + i) % 4])
            .collect();
        let mut whole = data.clone();
        unmask(&mut whole, mask, offset);
        prop_assert_eq!(&whole, &naive);
        let mut pieces = data.clone();
        let mut start = 0;
        for end in cuts(&at, data.len()).into_iter().chain([data.len()]) {
            unmask(&mut pieces[start..end], mask, offset + start);
            start = end;
        }
        prop_assert_eq!(&pieces, &naive);
        unmask(&mut pieces, mask, offset);
        prop_assert_eq!(pieces, data);
    }
}
