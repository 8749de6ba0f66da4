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

pub mod pages;
pub mod publish;

use crate::wire::frame::{self, Opcode};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

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
        }
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    /// `None` only when the field is absent: `"message": null` is a value.
    #[serde(borrow, default, deserialize_with = "present")]
    message: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
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
        Ok(Incoming { message: Some(raw) }) => Ok(raw.get()),
        Ok(Incoming { message: None }) => Err(ChatError::MissingMessage),
        Err(e) => Err(ChatError::InvalidJson(e.to_string())),
    }
}

const PREFIX: &[u8] = b"{\"message\": ";

/// Encodes the broadcast text frame `{"message": <raw>}` in one allocation.
pub fn broadcast_frame(raw: &str) -> Vec<u8> {
    let len = PREFIX.len() + raw.len() + 1;
    let mut out = Vec::with_capacity(frame::header_len(len) + len);
    frame::push_header(&mut out, Opcode::Text, len);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(raw.as_bytes());
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
    match decode(text) {
        Ok(raw) => Ok(broadcast_frame(raw)),
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
}
