//! The Channels event codec on the Redis backplane: the bytes as a payload
//! from Redis (`decode_chat_event`) and as chat message JSON text
//! (`encode_chat_event`, and `encode_chat_event_with_user` with a fixed
//! identity; lossy UTF-8). Neither panics or touches `out` on error; a
//! delivered event is ASCII JSON `{"message": ...}` or `{"message": ...,
//! "user": ...}`; encoding what was delivered (its message and user) and
//! decoding it again gives the same text; JSON serde_json reads is carried
//! (unless an integer is out of range) and comes back as the same value; an
//! identity changes nothing but the `"user"` it adds. Under a length limit
//! (`decode_chat_event_within`, the limit from the payload's first byte) a
//! text is never longer than the limit and is the same text, and a refusal
//! is the unlimited refusal or `TooLarge`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::backplane::msgpack::{self, DecodeError, EncodeError};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

const FRAME: &str = "{\"message\": ";

/// The identity the text path is encoded with, besides none.
const USER: &str = "\"fuzz\\u00e9\"";
/// What it becomes in a frame.
const USER_FIELD: &str = ", \"user\": \"fuzz\\u00e9\"}";

/// Decodes, checking the frame; `None` if not delivered.
fn decode(payload: &[u8]) -> Option<String> {
    let mut out = b"kept".to_vec();
    if msgpack::decode_chat_event(payload, &mut out).is_err() {
        assert_eq!(out, b"kept");
        return None;
    }
    let text = String::from_utf8(out[4..].to_vec()).expect("ASCII");
    assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text}");
    assert!(text.starts_with(FRAME) && text.ends_with('}'), "{text}");
    // Valid JSON at any depth (a raw value is skipped without a depth limit).
    serde_json::from_str::<&RawValue>(&text).expect("JSON");
    Some(text)
}

/// A delivered frame's message and, if any, user, as raw JSON texts: no
/// other key, the message first.
fn parts(text: &str) -> (String, Option<String>) {
    let mut map: BTreeMap<String, &RawValue> = serde_json::from_str(text).expect("an object");
    let message = map.remove("message").expect("a message").get().to_string();
    let user = map.remove("user").map(|u| u.get().to_string());
    assert!(map.is_empty(), "{text}");
    let user_field = user.as_ref().map_or(0, |u| ", \"user\": ".len() + u.len());
    assert_eq!(FRAME.len() + message.len() + user_field + 1, text.len());
    assert!(text[FRAME.len()..].starts_with(&message), "{text}");
    (message, user)
}

/// Encodes, then decodes what was delivered, which must be stable.
fn encode(text: &str) -> Result<String, EncodeError> {
    let mut payload = b"kept".to_vec();
    if let Err(e) = msgpack::encode_chat_event(text, &mut payload) {
        assert_eq!(payload, b"kept");
        return Err(e);
    }
    let out = decode(&payload[4..]).expect("what encode writes, decode delivers");
    let inner = &out[FRAME.len()..out.len() - 1];
    let mut again = Vec::new();
    msgpack::encode_chat_event(inner, &mut again).expect("delivered JSON encodes");
    assert_eq!(decode(&again).as_deref(), Some(&*out));
    Ok(out)
}

/// Equal up to serde_json's float parsing (it may be one step off).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || x.to_bits().abs_diff(y.to_bits()) <= 2
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

/// The limited decode agrees with the unlimited one, `full`.
fn check_within(payload: &[u8], max_len: usize, full: &Result<String, DecodeError>) {
    let mut out = b"kept".to_vec();
    match (
        msgpack::decode_chat_event_within(payload, max_len, &mut out),
        full,
    ) {
        (Ok(()), Ok(text)) => {
            assert!(out.len() - 4 <= max_len);
            assert_eq!(&out[4..], text.as_bytes());
        }
        (Ok(()), Err(e)) => panic!("within {max_len}: delivered what is refused as {e:?}"),
        (Err(e), full) => {
            assert_eq!(out, b"kept");
            assert!(
                e == DecodeError::TooLarge || full.as_ref().err() == Some(&e),
                "within {max_len}: {e:?}, unlimited: {full:?}"
            );
            if let Ok(text) = full {
                // Only pairs a repeated key drops may make it refuse a fit.
                assert!(e == DecodeError::TooLarge && (text.len() > max_len || text.contains(':')));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut full = Vec::new();
    let full = msgpack::decode_chat_event(data, &mut full)
        .map(|()| String::from_utf8(full).expect("ASCII"));
    let limit = usize::from(data.first().copied().unwrap_or(0)) * 8;
    check_within(data, limit, &full);
    if let Ok(text) = &full {
        check_within(data, text.len(), &full);
    }
    if let Some(out) = decode(data) {
        let (message, user) = parts(&out);
        match user {
            None => assert_eq!(encode(&message).as_deref(), Ok(&*out)),
            Some(user) => {
                let mut again = Vec::new();
                msgpack::encode_chat_event_with_user(&message, &user, &mut again)
                    .expect("delivered JSON encodes");
                assert_eq!(decode(&again).as_deref(), Some(&*out));
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let encoded = encode(&text);
    // With an identity: refused alike, else the same frame plus the user.
    let mut payload = b"kept".to_vec();
    match (
        msgpack::encode_chat_event_with_user(&text, USER, &mut payload),
        &encoded,
    ) {
        (Ok(()), Ok(out)) => {
            let want = format!("{}{USER_FIELD}", &out[..out.len() - 1]);
            assert_eq!(decode(&payload[4..]), Some(want));
        }
        (Err(e), Err(plain)) => {
            assert_eq!(&e, plain);
            assert_eq!(payload, b"kept");
        }
        (with, without) => panic!("with a user {with:?}, without {without:?}"),
    }
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        match &encoded {
            // One level deeper than the text: may pass serde_json's limit.
            Ok(out) => match serde_json::from_str::<Value>(out) {
                Ok(back) => {
                    let want = serde_json::json!({ "message": value });
                    assert!(same(&back, &want), "{back} != {want}");
                }
                Err(e) => assert!(e.to_string().contains("recursion limit"), "{e}"),
            },
            // serde_json reads integers past 64 bits as floats.
            Err(e) => assert_eq!(e, &EncodeError::IntegerOutOfRange),
        }
    }
});
