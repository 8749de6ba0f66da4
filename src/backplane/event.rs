//! A chat message on its way onto Redis, sans-IO: the Channels event every
//! node (and every Django consumer) will receive, or the reason it cannot be
//! sent.
//!
//! [`encode_publish`] is the one place that turns a chat message's raw JSON
//! value into the msgpack event and checks it can be delivered; the chat path
//! (a client's message, on a worker or the loop) and the publish API both
//! call it, so both refuse the same messages with the same words. Invariants:
//! - an `Ok` payload decodes here (`decode_chat_event`) to a frame of at most
//!   `max_message` bytes, so no node drops it as `too_large`;
//! - a refusal says why in plain words and carries the HTTP status the
//!   publish API answers with: 400 for a value msgpack cannot carry
//!   (`EncodeError`), 413 for a message too large once written as Django
//!   Channels writes it.

use super::msgpack::{self, EncodeError};
use std::fmt;

/// Encodes a chat message's value (its raw JSON text) as the Channels event
/// published on Redis, refusing what no node could deliver.
pub fn encode_publish(raw_json: &str, max_message: usize) -> Result<Vec<u8>, PublishRefusal> {
    let mut payload = Vec::with_capacity(raw_json.len() + 32);
    msgpack::encode_chat_event(raw_json, &mut payload).map_err(PublishRefusal::from)?;
    check_delivered_size(raw_json.len(), &payload, max_message).map_err(PublishRefusal::from)?;
    Ok(payload)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        msgpack::encode_chat_event(json, &mut out).unwrap();
        out
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
        assert_eq!(encode_publish("\"hi\"", 4096), Ok(event("\"hi\"")));
        let too_big = encode_publish("18446744073709551616", 4096).unwrap_err();
        assert_eq!(too_big.status, 400);
        assert_eq!(too_big.reason, EncodeError::IntegerOutOfRange.to_string());
        let escaped = format!("\"{}\"", "é".repeat(1000));
        let over = encode_publish(&escaped, 4096).unwrap_err();
        assert_eq!(over.status, 413);
        assert!(
            over.reason.contains("6015 bytes") && over.reason.contains("(4096)"),
            "{over}"
        );
        assert_eq!(over.to_string(), over.reason);
        assert!(encode_publish(&escaped, 8192).is_ok());
    }
}
