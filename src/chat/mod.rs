//! The chat contract of Django Channels' `ChatConsumer` (SPEC section 2),
//! and the two other things a chat relay serves: the back-end publish API
//! ([`publish`]) and the embedded chat page ([`pages`]).
//!
//! Sans-IO; may import [`crate::wire`] only. A text message must be a JSON
//! object with a `"message"` field (any JSON value; other fields are
//! ignored). It becomes the broadcast payload `{"message": <value>}` with the
//! value's raw JSON text copied through, not re-serialised: the bytes a
//! client sent are the bytes every member gets (the seed's `json.dumps`
//! would re-escape non-ASCII text as `\uXXXX`; both spell the same JSON
//! value). Anything else is answered with one `{"error": "<plain words>"}`
//! frame to the sender alone.
//!
//! The rules are the seed consumer's (`json.loads`): a repeated key keeps its
//! last value. And one rule holds on a single node and across Redis alike: a
//! value Channels could not carry (an integer outside 64 bits, a string with
//! an unpaired surrogate escape, nesting past [`MAX_DEPTH`] levels) is
//! refused on both, not only where msgpack would refuse it.

pub mod pages;
pub mod publish;

use crate::wire::frame::{self, Opcode};
use serde::de::{self, Deserialize, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// Containers a message value may nest (the Redis backplane's msgpack limit).
pub const MAX_DEPTH: usize = 128;

/// Why a chat message was refused. Never closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatError {
    /// Not JSON; carries serde_json's position ("... at line 1 column 7").
    InvalidJson(String),
    /// Valid JSON, but not an object.
    NotAnObject(&'static str),
    /// An object without a `"message"` field.
    MissingMessage,
    /// A binary message on a chat connection.
    Binary,
    /// Valid JSON that Channels could not carry.
    Uncarriable(&'static str),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::InvalidJson(why) => write!(f, "invalid JSON: {why}"),
            ChatError::NotAnObject(kind) => {
                write!(
                    f,
                    "expected a JSON object with a \"message\" field, got {kind}"
                )
            }
            ChatError::MissingMessage => f.write_str("the JSON object has no \"message\" field"),
            ChatError::Binary => {
                f.write_str("binary messages are not accepted on chat connections; send JSON text")
            }
            ChatError::Uncarriable(why) => write!(f, "the message {why}"),
        }
    }
}

/// The one field the contract reads.
struct Incoming<'a> {
    /// `None` only when the field is absent: `"message": null` is a value.
    /// A repeated `"message"` keeps its last value, as `json.loads` does.
    message: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for Incoming<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(IncomingVisitor)
    }
}

struct IncomingVisitor;

impl<'de> Visitor<'de> for IncomingVisitor {
    type Value = Incoming<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Incoming<'de>, A::Error> {
        let mut message = None;
        while let Some(is_message) = map.next_key_seed(IsMessage)? {
            if is_message {
                message = Some(map.next_value::<&RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Incoming { message })
    }
}

/// Reads a key and says whether it is `"message"` (escapes decoded, as
/// Python does), without allocating.
struct IsMessage;

impl<'de> DeserializeSeed<'de> for IsMessage {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for IsMessage {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == "message")
    }
}

/// Decodes one chat text message into the raw JSON text of its value.
pub fn decode(text: &str) -> Result<&str, ChatError> {
    let first = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first()
        .copied();
    if first != Some(b'{') {
        // Tell "not JSON" from "JSON, but not an object", with the position.
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| ChatError::InvalidJson(e.to_string()))?;
        return Err(ChatError::NotAnObject(match first {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        }));
    }
    match serde_json::from_str::<Incoming>(text) {
        Ok(Incoming { message: Some(raw) }) => {
            let raw = raw.get();
            check_carriable(raw)?;
            Ok(raw)
        }
        Ok(Incoming { message: None }) => Err(ChatError::MissingMessage),
        Err(e) => Err(ChatError::InvalidJson(e.to_string())),
    }
}

/// Refuses what Channels could not carry, in one pass over the value's
/// text (which is valid JSON): an integer outside the 64-bit range, a string
/// with an unpaired surrogate escape, nesting deeper than [`MAX_DEPTH`].
fn check_carriable(raw: &str) -> Result<(), ChatError> {
    let b = raw.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ChatError::Uncarriable(
                        "is nested more than 128 levels deep",
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' => i = check_string(b, i + 1)?,
            b'-' | b'0'..=b'9' => {
                let end = b[i..]
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(b.len(), |n| i + n);
                check_number(&raw[i..end])?;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Scans a string from just after its opening quote; returns the index of
/// its closing quote.
fn check_string(b: &[u8], mut i: usize) -> Result<usize, ChatError> {
    let unpaired = || {
        ChatError::Uncarriable("holds a string with an unpaired surrogate escape such as \\ud800")
    };
    let hex = |at: usize| {
        b.get(at..at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    while i < b.len() {
        match b[i] {
            b'"' => return Ok(i),
            b'\\' if b.get(i + 1) == Some(&b'u') => {
                let unit = hex(i + 2).unwrap_or(0);
                i += 6;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = (b.get(i..i + 2) == Some(b"\\u"))
                            .then(|| hex(i + 2))
                            .flatten();
                        if !matches!(low, Some(0xDC00..=0xDFFF)) {
                            return Err(unpaired());
                        }
                        i += 6;
                    }
                    0xDC00..=0xDFFF => return Err(unpaired()),
                    _ => {}
                }
                continue;
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(i)
}

/// An integer (no fraction, no exponent) must fit 64 bits, signed or not.
fn check_number(n: &str) -> Result<(), ChatError> {
    let integer = !n.contains(['.', 'e', 'E']);
    let digits = n.trim_start_matches('-').len();
    if integer && digits > 18 && n.parse::<i64>().is_err() && n.parse::<u64>().is_err() {
        return Err(ChatError::Uncarriable(
            "holds an integer outside the 64-bit range",
        ));
    }
    Ok(())
}

const PREFIX: &[u8] = b"{\"message\": ";

/// Encodes the broadcast text frame `{"message": <raw>}` in one allocation.
pub fn broadcast_frame(raw: &str) -> Vec<u8> {
    broadcast_frame_from(raw, None)
}

const USER: &[u8] = b", \"user\": ";

/// Encodes `{"message": <raw>, "user": <user>}` when the sender has an
/// identity (raw JSON set by the relay, never taken from the client), else
/// `{"message": <raw>}`; in one allocation.
pub fn broadcast_frame_from(raw: &str, user: Option<&str>) -> Vec<u8> {
    let extra = user.map_or(0, |u| USER.len() + u.len());
    let len = PREFIX.len() + raw.len() + extra + 1;
    let mut out = Vec::with_capacity(frame::header_len(len) + len);
    frame::push_header(&mut out, Opcode::Text, len);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(raw.as_bytes());
    if let Some(user) = user {
        out.extend_from_slice(USER);
        out.extend_from_slice(user.as_bytes());
    }
    out.push(b'}');
    out
}

/// Encodes the `{"error": ...}` text frame for the sender.
pub fn error_frame(err: &ChatError) -> Vec<u8> {
    error_text_frame(&err.to_string())
}

/// An `{"error": ...}` text frame with any text.
pub fn error_text_frame(text: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": text }).to_string();
    frame::encode_frame(Opcode::Text, body.as_bytes())
}

/// Decodes a chat message straight to the frame to send: the broadcast on
/// success, the sender's error frame otherwise.
pub fn process(text: &str) -> Result<Vec<u8>, Vec<u8>> {
    process_from(text, None)
}

/// [`process`] for a sender with an identity (see [`broadcast_frame_from`]).
pub fn process_from(text: &str, user: Option<&str>) -> Result<Vec<u8>, Vec<u8>> {
    match decode(text) {
        Ok(raw) => Ok(broadcast_frame_from(raw, user)),
        Err(e) => Err(error_frame(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: &[u8]) -> &str {
        let (_, n) = frame::parse_header(frame, false).unwrap().unwrap();
        std::str::from_utf8(&frame[n..]).unwrap()
    }

    #[test]
    fn the_seed_snippet_message() {
        let f = broadcast_frame(decode(r#"{"message":"Hello, server!"}"#).unwrap());
        assert_eq!(payload(&f), r#"{"message": "Hello, server!"}"#);
    }

    #[test]
    fn any_json_value_is_copied_through_raw() {
        let rows = [
            (r#"{"message": 42}"#, "42"),
            (
                r#"{"message": {"a": [1, 2.50, "é"]}, "extra": true}"#,
                r#"{"a": [1, 2.50, "é"]}"#,
            ),
            (r#" {"x": 1, "message": null}"#, "null"),
            (r#"{"message":"\u00e9<b>"}"#, r#""\u00e9<b>""#),
        ];
        for (input, raw) in rows {
            assert_eq!(decode(input), Ok(raw), "{input}");
            let out: serde_json::Value =
                serde_json::from_str(payload(&broadcast_frame(raw))).unwrap();
            let expect: serde_json::Value = serde_json::from_str(input).unwrap();
            assert_eq!(out["message"], expect["message"]);
        }
    }

    /// SPEC section 2's bad-input rows.
    #[test]
    fn bad_input_table() {
        assert!(
            matches!(decode("not json"), Err(ChatError::InvalidJson(w)) if w.contains("line 1 column 2"))
        );
        assert!(
            matches!(decode(r#"{"message": "x""#), Err(ChatError::InvalidJson(w)) if w.contains("column"))
        );
        assert!(matches!(decode(""), Err(ChatError::InvalidJson(_))));
        assert_eq!(decode("[1]"), Err(ChatError::NotAnObject("an array")));
        assert_eq!(decode(r#""hi""#), Err(ChatError::NotAnObject("a string")));
        assert_eq!(decode("12"), Err(ChatError::NotAnObject("a number")));
        assert_eq!(decode("true"), Err(ChatError::NotAnObject("a boolean")));
        assert_eq!(decode("null"), Err(ChatError::NotAnObject("null")));
        assert_eq!(decode(r#"{"msg": 1}"#), Err(ChatError::MissingMessage));
        let e: serde_json::Value =
            serde_json::from_str(payload(&error_frame(&ChatError::Binary))).unwrap();
        assert!(e["error"].as_str().unwrap().contains("binary"));
    }

    /// Python's `json.loads` keeps a repeated key's last value, and so does
    /// the relay.
    #[test]
    fn a_repeated_message_key_keeps_its_last_value() {
        assert_eq!(decode(r#"{"message": 1, "message": 2}"#), Ok("2"));
        assert_eq!(
            decode(r#"{"message": 1, "x": 0, "mess\u0061ge": [3]}"#),
            Ok("[3]")
        );
    }

    /// What the Redis backplane cannot carry is refused on a single node
    /// too, at exactly the same boundaries as the msgpack encoder.
    #[test]
    fn one_rule_for_both_modes() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for (value, ok) in [
            (deep(MAX_DEPTH), true),
            (deep(MAX_DEPTH + 1), false),
            ("9223372036854775807".into(), true),
            ("-9223372036854775808".into(), true),
            ("18446744073709551615".into(), true),
            ("18446744073709551616".into(), false),
            ("-9223372036854775809".into(), false),
            ("1e400".into(), true),
            ("123456789012345678901234567890.5".into(), true),
            (r#""\ud83d\ude00""#.into(), true),
            (r#""\ud800""#.into(), false),
            (r#""\udc00x""#.into(), false),
            (r#""\ud800\u0041""#.into(), false),
            (r#"{"k": "\\ud800"}"#.into(), true),
        ] {
            let text = format!(r#"{{"message": {value}}}"#);
            let local = decode(&text);
            let mut payload = Vec::new();
            let redis = crate::backplane::msgpack::encode_chat_event(&value, &mut payload);
            assert_eq!(local.is_ok(), ok, "{value}: {local:?}");
            assert_eq!(redis.is_ok(), ok, "the encoder agrees on {value}");
        }
    }

    /// The relay sets "user"; what the client sent under that name is not
    /// carried (only the message's value is read).
    #[test]
    fn the_identity_is_the_relays_not_the_clients() {
        let f = process_from(
            r#"{"message": "hi", "user": "mallory"}"#,
            Some(r#""alice""#),
        )
        .unwrap();
        assert_eq!(payload(&f), r#"{"message": "hi", "user": "alice"}"#);
        let f = process(r#"{"message": "hi", "user": "mallory"}"#).unwrap();
        assert_eq!(payload(&f), r#"{"message": "hi"}"#);
    }
}
