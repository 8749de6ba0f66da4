//! A chat message on its way onto Redis, sans-IO: the Channels event every
//! node (and every Django consumer) will receive, or the reason it cannot be
//! sent.
//!
//! [`encode_publish`] is the one place that turns a chat message's raw JSON
//! value into the msgpack event and checks it can be delivered; the chat path
//! (a client's message, on a worker or the loop) and the publish API both
//! call it, so both refuse the same messages with the same words. A member
//! with an identity (SPEC section 9) publishes it as the event's `"user"`,
//! which every node (and a Django consumer) receives with the message; the
//! frame becomes `{"message": ..., "user": ...}`. Invariants:
//! - an `Ok` payload decodes here (`decode_chat_event`) to a frame of at most
//!   `max_message` bytes, the identity included, so no node drops it as
//!   `too_large`;
//! - without an identity the payload is byte for byte what it was before
//!   identities existed (`{"type", "message"}`), so older nodes and Django
//!   see no change;
//! - a refusal says why in plain words and carries the HTTP status the
//!   publish API answers with: 400 for a value msgpack cannot carry
//!   (`EncodeError`), 413 for a message too large once written as Django
//!   Channels writes it.

use super::msgpack::{self, EncodeError};
use std::fmt;

/// Encodes a chat message's value (its raw JSON text) as the Channels event
/// published on Redis, refusing what no node could deliver. `user` is the
/// sender's identity as raw JSON text (`"alice"`, `42`), set by the relay
/// (never by the client); with it the event is `{"type": "chat_message",
/// "message": ..., "user": ...}`, as `msgpack.packb` writes that dict.
pub fn encode_publish(
    raw_json: &str,
    user: Option<&str>,
    max_message: usize,
) -> Result<Vec<u8>, PublishRefusal> {
    let Some(user) = user else {
        let mut payload = Vec::with_capacity(raw_json.len() + 32);
        msgpack::encode_chat_event(raw_json, &mut payload).map_err(PublishRefusal::from)?;
        check_delivered_size(raw_json.len(), &payload, max_message)
            .map_err(PublishRefusal::from)?;
        return Ok(payload);
    };
    let mut payload = Vec::with_capacity(raw_json.len() + user.len() + 40);
    if let Err(e) = msgpack::encode_chat_event_with_user(raw_json, user, &mut payload) {
        // Say whose fault it is: the message's, or the identity's.
        return Err(
            match msgpack::encode_chat_event(raw_json, &mut Vec::new()) {
                Err(e) => PublishRefusal::from(e),
                Ok(()) => check_identity(user)
                    .err()
                    .unwrap_or_else(|| PublishRefusal::from(e)),
            },
        );
    }
    // `, "user": ` and the identity come on top of the message's text.
    let raw_len = raw_json.len() + user.len() + USER_FIELD_OVERHEAD;
    check_delivered_size(raw_len, &payload, max_message).map_err(PublishRefusal::from)?;
    Ok(payload)
}

/// Whether an identity (raw JSON text) can cross the Redis backplane: one
/// that cannot makes every message of its member refused. The join (a
/// token, the auth back end) may check it once with this, instead.
pub fn check_identity(user: &str) -> Result<(), PublishRefusal> {
    let Err(e) = msgpack::encode_chat_event(user, &mut Vec::new()) else {
        return Ok(());
    };
    let what = match e {
        EncodeError::IntegerOutOfRange => "holds an integer outside the 64-bit range",
        EncodeError::InvalidJson => "is not JSON msgpack can carry",
        EncodeError::TooDeep => "is nested more than 128 levels deep",
    };
    Err(PublishRefusal {
        status: 400,
        reason: format!(
            "this connection's identity {what}, which the Redis backplane (msgpack) \
             cannot carry; the message was not sent"
        ),
    })
}

/// Why a chat message was not published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishRefusal {
    /// What the publish API answers: 400 or 413.
    pub status: u16,
    /// What the sender is told, in plain words.
    pub reason: String,
}

impl From<EncodeError> for PublishRefusal {
    fn from(e: EncodeError) -> PublishRefusal {
        PublishRefusal {
            status: 400,
            reason: e.to_string(),
        }
    }
}

impl From<TooLarge> for PublishRefusal {
    fn from(e: TooLarge) -> PublishRefusal {
        PublishRefusal {
            status: 413,
            reason: e.to_string(),
        }
    }
}

impl fmt::Display for PublishRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for PublishRefusal {}

/// A message whose delivered form is over `--max-message-size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TooLarge {
    size: usize,
    max: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the message is {} bytes once written as Django Channels writes it (json.dumps escapes non-ASCII as \\uXXXX), over --max-message-size ({}); it was not sent",
            self.size, self.max
        )
    }
}

/// Refuses, before it is published, a message whose `json.dumps` form (what
/// every node delivers) would pass `max_message`: no node could deliver it
/// (`\u00e9` for each `é` triples non-ASCII text). Only messages that could
/// grow past the limit are measured, so small ones cost nothing here.
fn check_delivered_size(
    raw_len: usize,
    payload: &[u8],
    max_message: usize,
) -> Result<(), TooLarge> {
    if raw_len.saturating_mul(DUMPS_GROWTH).saturating_add(16) <= max_message {
        return Ok(());
    }
    let mut json = Vec::new();
    // An event this relay just encoded always decodes.
    if msgpack::decode_chat_event(payload, &mut json).is_ok() && json.len() > max_message {
        return Err(TooLarge {
            size: json.len(),
            max: max_message,
        });
    }
    Ok(())
}

/// Most a chat message's JSON text can grow when written back as Python's
/// `json.dumps` does: a raw DEL byte becomes `\u007f`.
const DUMPS_GROWTH: usize = 6;

/// `, "user": `: what an identity adds to the frame besides its own text.
const USER_FIELD_OVERHEAD: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        msgpack::encode_chat_event(json, &mut out).unwrap();
        out
    }

    fn frame(payload: &[u8]) -> String {
        let mut out = Vec::new();
        msgpack::decode_chat_event(payload, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_delivered_size_counts_python_escapes() {
        // 1,000 'é' are 2,002 bytes of JSON text but 6,000 once escaped.
        let text = format!("\"{}\"", "é".repeat(1000));
        let e = check_delivered_size(text.len(), &event(&text), 4096).unwrap_err();
        assert_eq!(e.size, r#"{"message": ""}"#.len() + 6000);
        assert!(e.to_string().contains("--max-message-size (4096)"));
        assert_eq!(
            check_delivered_size(text.len(), &event(&text), 8192),
            Ok(())
        );
        // ASCII does not grow; and small messages are not even measured.
        let ascii = format!("\"{}\"", "a".repeat(4000));
        assert_eq!(
            check_delivered_size(ascii.len(), &event(&ascii), 4096),
            Ok(())
        );
        assert_eq!(check_delivered_size(3, b"not even msgpack", 4096), Ok(()));
    }

    /// One line per outcome: the payload, or the status and the words the
    /// sender (or the publish API's caller) gets.
    #[test]
    fn encode_publish_refuses_with_a_status_and_a_reason() {
        assert_eq!(encode_publish("\"hi\"", None, 4096), Ok(event("\"hi\"")));
        let too_big = encode_publish("18446744073709551616", None, 4096).unwrap_err();
        assert_eq!(too_big.status, 400);
        assert_eq!(too_big.reason, EncodeError::IntegerOutOfRange.to_string());
        let escaped = format!("\"{}\"", "é".repeat(1000));
        let over = encode_publish(&escaped, None, 4096).unwrap_err();
        assert_eq!(over.status, 413);
        assert!(
            over.reason.contains("6015 bytes") && over.reason.contains("(4096)"),
            "{over}"
        );
        assert_eq!(over.to_string(), over.reason);
        assert!(encode_publish(&escaped, None, 8192).is_ok());
    }

    /// SPEC section 9: the identity rides in the event as `"user"`, byte
    /// for byte `msgpack.packb({"type": "chat_message", "message": "hi",
    /// "user": "alice"})`, and every node's frame carries it.
    #[test]
    fn an_identity_is_published_as_the_user_key() {
        let payload = encode_publish("\"hi\"", Some("\"alice\""), 4096).unwrap();
        assert_eq!(
            payload,
            b"\x83\xa4type\xacchat_message\xa7message\xa2hi\xa4user\xa5alice"
        );
        assert_eq!(frame(&payload), r#"{"message": "hi", "user": "alice"}"#);
        let payload = encode_publish("[1]", Some("42"), 4096).unwrap();
        assert_eq!(frame(&payload), r#"{"message": [1], "user": 42}"#);
        let payload = encode_publish("1", Some(r#""zo\u00eb""#), 4096).unwrap();
        assert_eq!(frame(&payload), r#"{"message": 1, "user": "zo\u00eb"}"#);
    }

    /// The identity counts toward --max-message-size, and an identity the
    /// backplane cannot carry is named as the reason, not the message.
    #[test]
    fn an_identity_counts_and_is_named_when_it_fails() {
        let message = format!("\"{}\"", "a".repeat(4000));
        let frame_len = r#"{"message": , "user": }"#.len() + message.len();
        let user = format!("\"{}\"", "u".repeat(4096 - frame_len - 2));
        let payload = encode_publish(&message, Some(&user), 4096).unwrap();
        assert_eq!(frame(&payload).len(), 4096);
        let user = format!("\"{}\"", "u".repeat(4096 - frame_len - 1));
        assert_eq!(
            encode_publish(&message, Some(&user), 4096)
                .unwrap_err()
                .status,
            413
        );
        let user = format!("\"{}\"", "é".repeat(16));
        let over = encode_publish(&message, Some(&user), 4096).unwrap_err();
        assert_eq!(over.status, 413, "{over}");
        let bad = encode_publish("1", Some("18446744073709551616"), 4096).unwrap_err();
        assert_eq!(bad.status, 400);
        assert!(bad.reason.contains("identity"), "{bad}");
        assert_eq!(check_identity("\"alice\""), Ok(()));
        assert_eq!(check_identity(r#""\ud800""#).unwrap_err().status, 400);
        // The message's own fault is still the message's.
        let bad = encode_publish("18446744073709551616", Some("1"), 4096).unwrap_err();
        assert_eq!(bad.reason, EncodeError::IntegerOutOfRange.to_string());
    }
}
