//! The Channels event payload on the Redis backplane, sans-IO.
//!
//! channels_redis's `RedisPubSubChannelLayer` publishes each `group_send` as
//! `msgpack.packb(event)`, and the `ChatConsumer` turns a received event into
//! the frame `json.dumps({"message": event["message"]})`. Relays and Python
//! workers share the same Redis channels, so both directions here are byte
//! for byte what Python (msgpack 1.x, `json` with default arguments) does:
//!
//! - [`encode_chat_event`] takes the raw JSON text of a chat message's value
//!   and writes `packb({"type": "chat_message", "message": json.loads(text)})`
//!   ([`encode_chat_event_with_user`] adds `"user"`, the sender's identity,
//!   also raw JSON text, as a third key):
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
//!   delivered too. The frame is `json.dumps({"message": event["message"]})`,
//!   or, when the event has a `"user"` key (SPEC section 9: the sender's
//!   identity crosses nodes), `json.dumps({"message": event["message"],
//!   "user": event["user"]})`, whatever the keys' order in the event; other
//!   keys are checked and dropped. Values are written as `json.dumps` does:
//!   `", "` and `": "` separators, `ensure_ascii` escapes (`\uXXXX` in lower
//!   case, surrogate pairs above U+FFFF), every int in full, floats as
//!   `float.__repr__` (float32 widened first); a `"user"` JSON cannot carry
//!   (bin, ext) is [`DecodeError::Unsupported`], as for the message.
//! - [`decode_chat_event_within`] is the same with a limit on the text's
//!   length, which the backplane sets to `--max-message-size`: the frame
//!   (message and user together) is refused ([`DecodeError::TooLarge`]) as
//!   soon as it is certain to come out longer, not after it was decoded, so
//!   what decoding holds is bounded by the limit, not by the payload.
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
//! - Under a limit, pairs that a repeated key drops still count while they
//!   are read, so such a message may be refused as too large though its
//!   last values alone would fit.
//!
//! Both directions are linear in the input's size and never recurse beyond
//! the depth limit: the input is read once into a flat tape of nodes (16
//! bytes each, growing only with bytes actually read, never by a claimed
//! length), repeated keys are resolved once per map with a hash set sized by
//! the keys actually present, and the tape is then written out once. When
//! decoding, only the event's `"message"` and `"user"` go on tapes (one
//! each); its other keys are checked and dropped as they are read. On error
//! `out` is left as it was.
//!
//! The parts, each named after the Python call it mirrors:
//!
//! - `tape`: the flat value tree both directions go through, and the dict
//!   semantics of repeated keys;
//! - `loads`: JSON text to tape, as `json.loads` reads it;
//! - `packb`: tape to msgpack, as `msgpack.packb` writes it;
//! - `unpackb`: msgpack to tape, as `msgpack.unpackb` reads it;
//! - `dumps`: tape to JSON text, as `json.dumps` writes it;
//! - `float_repr`: `float.__repr__`, the one part of `dumps` with its own
//!   arithmetic.

mod dumps;
mod float_repr;
mod loads;
mod packb;
mod tape;
mod unpackb;

use dumps::write_json;
use loads::JsonReader;
use packb::write_msgpack;
use std::fmt;
use unpackb::{Event, MsgpackReader, USER_SEPARATOR};

/// The most containers nested inside a chat message, both ways.
pub const MAX_DEPTH: usize = 128;

/// What [`encode_chat_event`] writes before the message value:
/// `{"type": "chat_message", "message": ` as msgpack.
pub const EVENT_PREFIX: &[u8] = b"\x82\xa4type\xacchat_message\xa7message";

/// What [`encode_chat_event_with_user`] writes before the message value:
/// `{"type": "chat_message", "message": ` as msgpack, in a map of three.
pub const USER_EVENT_PREFIX: &[u8] = b"\x83\xa4type\xacchat_message\xa7message";

/// The key [`encode_chat_event_with_user`] writes after the message value,
/// before the identity: `"user"` as msgpack.
pub const USER_KEY: &[u8] = b"\xa4user";

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
    /// Longer than the caller's limit once written as JSON
    /// ([`decode_chat_event_within`]).
    TooLarge,
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
            DecodeError::TooLarge => "too_large",
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
            DecodeError::TooLarge => "over the size limit once written as JSON",
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

/// Encodes `{"type": "chat_message", "message": <message_json>, "user":
/// <user_json>}` (in that key order) as Python's `msgpack.packb` would
/// encode what `json.loads` made of each text. The identity is held to the
/// same rules as the message; the message's errors come first.
pub fn encode_chat_event_with_user(
    message_json: &str,
    user_json: &str,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let message = JsonReader::read(message_json)?;
    let user = JsonReader::read(user_json)?;
    let start = out.len();
    out.reserve(USER_EVENT_PREFIX.len() + message_json.len() + user_json.len() + 16);
    out.extend_from_slice(USER_EVENT_PREFIX);
    let written = write_msgpack(&message, 0, out).and_then(|_| {
        out.extend_from_slice(USER_KEY);
        write_msgpack(&user, 0, out)
    });
    match written {
        Ok(_) => Ok(()),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Decodes a Channels event and appends the JSON text of `{"message": value}`
/// byte for byte as Python's `json.dumps({"message": value})` writes it, or
/// of `{"message": value, "user": user}` when the event has a `"user"`.
pub fn decode_chat_event(payload: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    decode_chat_event_within(payload, usize::MAX, out)
}

/// [`decode_chat_event`], refusing as [`DecodeError::TooLarge`] a text
/// longer than `max_len` bytes, and finding out early: the reader stops as
/// soon as the message must come out longer (its least `json.dumps` size is
/// counted as it is read), so the decoder holds at most about `8 × max_len`
/// bytes of tape and `max_len` of text, whatever the payload. (A message
/// whose repeated map keys carry more than `max_len` is refused too, though
/// the last values alone might fit.)
pub fn decode_chat_event_within(
    payload: &[u8],
    max_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    const WRAPPER: &[u8] = b"{\"message\": }";
    let event = MsgpackReader::read_event(payload, max_len.saturating_sub(WRAPPER.len()))?;
    check_chat_event(&event)?;
    let start = out.len();
    out.reserve(payload.len().min(max_len).saturating_add(16));
    out.extend_from_slice(&WRAPPER[..WRAPPER.len() - 1]);
    let limit = start.saturating_add(max_len);
    match write_frame_values(&event, out, limit) {
        Ok(()) if out.len() < limit => {
            out.push(b'}');
            Ok(())
        }
        Ok(()) => {
            out.truncate(start);
            Err(DecodeError::TooLarge)
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// The frame's values after `{"message": `: the message, then `, "user": `
/// and the identity if the event has one.
fn write_frame_values(
    event: &Event<'_>,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), DecodeError> {
    write_json(&event.tape, 0, out, limit)?;
    if let Some(user) = &event.user {
        if out.len().saturating_add(USER_SEPARATOR.len()) > limit {
            return Err(DecodeError::TooLarge);
        }
        out.extend_from_slice(USER_SEPARATOR);
        write_json(user, 0, out, limit)?;
    }
    Ok(())
}

/// The checks the consumer makes before it writes the event's "message".
fn check_chat_event(event: &Event<'_>) -> Result<(), DecodeError> {
    if !event.is_map {
        return Err(DecodeError::NotAnEvent);
    }
    let kind = event.kind.flatten().ok_or(DecodeError::NotAnEvent)?;
    // Channels' get_handler_name: `type.replace(".", "_")` names the method.
    let handler = kind.iter().map(|&b| if b == b'.' { b'_' } else { b });
    if !handler.eq(b"chat_message".iter().copied()) {
        return Err(DecodeError::OtherType);
    }
    match event.has_message {
        true => Ok(()),
        false => Err(DecodeError::NoMessage),
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn prefix_is_python_packb() {
        // msgpack.packb({"type": "chat_message", "message": None})[:-1]
        assert_eq!(
            EVENT_PREFIX,
            hex("82a474797065ac636861745f6d657373616765a76d657373616765")
        );
        // packb({"type": "chat_message", "message": None, "user": None]}),
        // cut before the message's nil, and between the two nils.
        assert_eq!(
            USER_EVENT_PREFIX,
            hex("83a474797065ac636861745f6d657373616765a76d657373616765")
        );
        assert_eq!(USER_KEY, hex("a475736572"));
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

    /// The bound is exact: every event decodes within its own length and
    /// is too large one byte under it, floats (whose length the reader can
    /// only guess) included.
    #[test]
    fn decode_within_is_exact_at_the_limit() {
        // The last event's message repeats map keys: see below.
        let (repeats, _) = WHOLE_EVENTS[WHOLE_EVENTS.len() - 1];
        let payloads = WHOLE_EVENTS[..WHOLE_EVENTS.len() - 1]
            .iter()
            .map(|(p, _)| hex(p))
            .chain(
                [
                    "cb3fb999999999999a",
                    "93cb3fb999999999999a01a3c3a978",
                    "9f000000000000000000000000000000",
                ]
                .map(event),
            )
            .chain([event(&format!(
                "dc0100{}",
                "cb7fefffffffffffff".repeat(256)
            ))]);
        for payload in payloads {
            let want = decode(&payload).unwrap();
            let mut out = b"kept".to_vec();
            assert_eq!(
                decode_chat_event_within(&payload, want.len(), &mut out),
                Ok(()),
                "{want}"
            );
            assert_eq!(&out[4..], want.as_bytes());
            let mut out = b"kept".to_vec();
            assert_eq!(
                decode_chat_event_within(&payload, want.len() - 1, &mut out),
                Err(DecodeError::TooLarge),
                "{want}"
            );
            assert_eq!(out, b"kept");
        }
        // Pairs a repeated key drops still count while they are read: 12
        // pairs on the wire, 7 written.
        let payload = hex(repeats);
        let want = decode(&payload).unwrap();
        let mut out = Vec::new();
        let within = |max| decode_chat_event_within(&payload, max, &mut Vec::new());
        assert_eq!(within(want.len()), Err(DecodeError::TooLarge));
        assert_eq!(within(want.len() + 50), Ok(()));
        assert_eq!(decode_chat_event_within(&payload, 200, &mut out), Ok(()));
        assert_eq!(out, want.as_bytes());
    }

    /// Events with a `"user"` (SPEC section 9), from Python's
    /// `msgpack.packb`, and `json.dumps({"message": event["message"],
    /// "user": event["user"]})` of each.
    const USER_EVENTS: &[(&str, &str)] = &[
        ("83a474797065ac636861745f6d657373616765a76d657373616765a26869a475736572a5616c696365", "{\"message\": \"hi\", \"user\": \"alice\"}"),
        ("83a4757365722aa474797065ac636861745f6d657373616765a76d65737361676501", "{\"message\": 1, \"user\": 42}"),
        ("83a474797065ac636861745f6d657373616765a76d657373616765920102a475736572c0", "{\"message\": [1, 2], \"user\": null}"),
        ("83a474797065ac636861745f6d657373616765a76d657373616765a5636166c3a9a475736572a97a6fc3ab20f09f9880", "{\"message\": \"caf\\u00e9\", \"user\": \"zo\\u00eb \\ud83d\\ude00\"}"),
        ("83a474797065ac636861745f6d657373616765a76d65737361676581a16bc3a47573657283a2696407a46e616d65a3626f62a5726f6c657392a161cb3ff8000000000000", "{\"message\": {\"k\": true}, \"user\": {\"id\": 7, \"name\": \"bob\", \"roles\": [\"a\", 1.5]}}"),
        ("83a474797065ac636861745f6d657373616765a76d657373616765ca3fc00000a475736572ca3dcccccd", "{\"message\": 1.5, \"user\": 0.10000000149011612}"),
    ];

    /// The identity crosses nodes: decoded as Channels' consumer would
    /// write it (message first, whatever the event's key order), within
    /// the same exact bound as the message alone.
    #[test]
    fn decode_events_with_a_user() {
        for &(payload, want) in USER_EVENTS {
            let payload = hex(payload);
            assert_eq!(decode(&payload).as_deref(), Ok(want), "{want}");
            let mut out = Vec::new();
            assert_eq!(
                decode_chat_event_within(&payload, want.len(), &mut out),
                Ok(())
            );
            assert_eq!(
                decode_chat_event_within(&payload, want.len() - 1, &mut out),
                Err(DecodeError::TooLarge),
                "{want}"
            );
        }
        let prefix = "84a474797065ac636861745f6d657373616765a76d65737361676501";
        for (rest, want) in [
            // A repeated "user" keeps its last value, as a dict does.
            (
                "a47573657201a47573657202",
                Ok("{\"message\": 1, \"user\": 2}"),
            ),
            // A bytes key b"user" is another key: dropped.
            ("c4047573657201a17801", Ok("{\"message\": 1}")),
            // What json.dumps cannot write, in the user too.
            ("a475736572c40161a17801", Err(DecodeError::Unsupported)),
            ("a475736572d40100a17801", Err(DecodeError::Unsupported)),
        ] {
            let payload = hex(&format!("{prefix}{rest}"));
            assert_eq!(decode(&payload), want.map(String::from), "{rest}");
        }
        // A "user" inside the message is the message's.
        let nested = hex("82a474797065ac636861745f6d657373616765a76d65737361676581a475736572a178");
        assert_eq!(
            decode(&nested).as_deref(),
            Ok("{\"message\": {\"user\": \"x\"}}")
        );
        // The bound counts the user: a big one is refused as it is read.
        let mut big =
            hex("83a474797065ac636861745f6d657373616765a76d65737361676501a475736572dd00010000");
        big.resize(big.len() + 65_536, 0x00);
        assert_eq!(
            decode_chat_event_within(&big, 1000, &mut Vec::new()),
            Err(DecodeError::TooLarge)
        );
        assert!(decode(&big).is_ok());
    }

    /// `packb({"type": "chat_message", "message": m, "user": u})`, byte for
    /// byte, from the two JSON texts.
    #[test]
    fn encode_events_with_a_user() {
        for (message, user, want) in [
            ("\"hi\"", "\"alice\"", USER_EVENTS[0].0),
            ("[1,2]", "null", USER_EVENTS[2].0),
            ("\"caf\\u00e9\"", "\"zoë \\ud83d\\ude00\"", USER_EVENTS[3].0),
            (
                "{\"k\": true}",
                "{\"id\": 7, \"name\": \"bob\", \"roles\": [\"a\", 1.5]}",
                USER_EVENTS[4].0,
            ),
        ] {
            let mut out = b"kept".to_vec();
            encode_chat_event_with_user(message, user, &mut out).unwrap();
            assert_eq!(&out[4..], hex(want), "{message} {user}");
        }
        for (message, user, want) in [
            ("1", "18446744073709551616", EncodeError::IntegerOutOfRange),
            ("1", "\"\\ud800\"", EncodeError::InvalidJson),
            ("1", "nope", EncodeError::InvalidJson),
            (
                "18446744073709551616",
                "\"\\ud800\"",
                EncodeError::IntegerOutOfRange,
            ),
        ] {
            let mut out = b"kept".to_vec();
            assert_eq!(
                encode_chat_event_with_user(message, user, &mut out),
                Err(want)
            );
            assert_eq!(out, b"kept");
        }
    }

    #[test]
    fn decode_events_as_channels_does() {
        for &(payload, want) in WHOLE_EVENTS {
            assert_eq!(decode(&hex(payload)).as_deref(), Ok(want), "{payload}");
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
        assert_eq!(DecodeError::TooLarge.label(), "too_large");
        assert!(super::super::DROP_REASONS.contains(&DecodeError::TooLarge.label()));
    }
}

/// Helpers the parts' tests share.
#[cfg(test)]
mod test_support {
    use super::*;

    pub(super) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub(super) fn encode(json: &str) -> Result<Vec<u8>, EncodeError> {
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

    pub(super) fn decode(payload: &[u8]) -> Result<String, DecodeError> {
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
    pub(super) fn event(message_hex: &str) -> Vec<u8> {
        let mut payload = EVENT_PREFIX.to_vec();
        payload.extend(hex(message_hex));
        payload
    }

    pub(super) fn big_array(n: usize) -> String {
        format!("[{}]", vec!["null"; n].join(","))
    }

    pub(super) fn big_object(n: usize) -> String {
        let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
        format!("{{{}}}", members.join(","))
    }

    pub(super) fn decode_err(payload: &[u8]) -> DecodeError {
        decode(payload).expect_err(&format!("{payload:02x?}"))
    }
}
