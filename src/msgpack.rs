//! The Channels event payload on the Redis backplane, sans-IO. SKELETON.

use std::fmt;

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
        let _ = f;
        todo!()
    }
}

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
}

impl DecodeError {
    /// A short label for metrics (`reason="..."`).
    pub fn label(&self) -> &'static str {
        todo!()
    }
}

/// Encodes `{"type": "chat_message", "message": <message_json>}` as Python's
/// `msgpack.packb` would encode what `json.loads` made of it.
pub fn encode_chat_event(message_json: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let _ = (message_json, out);
    todo!()
}

/// Decodes a Channels event and appends the JSON text of `{"message": value}`
/// byte for byte as Python's `json.dumps({"message": value})` writes it.
pub fn decode_chat_event(payload: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let _ = (payload, out);
    todo!()
}
