//! The back-end publish API, `POST /publish/<room>/`, sans-IO: checking a
//! request head, parsing its body, and the JSON answers.
//!
//! The body is the chat contract (`{"message": ...}`) or a JSON array of
//! such objects, published in array order. A request is all or nothing:
//! any bad element refuses the whole batch with 400 before anything is
//! sent. Answers are JSON: `202 {"published": N}` or `{"error": "..."}`
//! with the status saying which check failed (see [`check_head`]).

use crate::chat;
use crate::wire::http::{self, Rejection, Request};
use serde_json::value::RawValue;

/// Checks everything the head decides, in this order: the API is enabled
/// (404), the method (405), credentials (401 without a bearer token, 403
/// with a wrong one), the room (400), the length (411 without one, 413 over
/// `max_body`). Returns the room and the body length to wait for.
pub fn check_head(
    req: &Request,
    room: Result<String, Rejection>,
    token: Option<&str>,
    max_body: usize,
) -> Result<(String, usize), Rejection> {
    let Some(token) = token else {
        return Err(Rejection::new(
            404,
            "the publish API is disabled: start roomcast with --publish-token",
        ));
    };
    if req.method != "POST" {
        return Err(Rejection {
            status: 405,
            reason: format!("method {} not allowed; publish with POST", req.method),
            headers: "Allow: POST\r\n",
        });
    }
    let presented = req
        .authorization
        .as_deref()
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(presented) = presented else {
        return Err(Rejection {
            status: 401,
            reason: "send the publish token as Authorization: Bearer <token>".into(),
            headers: "WWW-Authenticate: Bearer realm=\"roomcast\"\r\n",
        });
    };
    if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        return Err(Rejection::new(403, "wrong publish token"));
    }
    let room = room?;
    if req.chunked {
        return Err(Rejection::new(
            411,
            "chunked bodies are not accepted; send Content-Length",
        ));
    }
    let Some(length) = req.content_length else {
        return Err(Rejection::new(
            411,
            "a publish request needs Content-Length",
        ));
    };
    if length > max_body as u64 {
        return Err(Rejection::new(
            413,
            format!("the body is {length} bytes; the limit (--max-message-size) is {max_body}"),
        ));
    }
    Ok((room, length as usize))
}

/// Compares without an early exit, so timing does not reveal how much of
/// a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// The raw JSON text of each message in a body, in order.
pub fn parse_body(body: &[u8]) -> Result<Vec<&str>, Rejection> {
    let text = std::str::from_utf8(body)
        .map_err(|e| Rejection::new(400, format!("the body is not UTF-8: {e}")))?;
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if !trimmed.starts_with('[') {
        return chat::decode(text)
            .map(|raw| vec![raw])
            .map_err(|e| Rejection::new(400, e.to_string()));
    }
    let items: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|e| Rejection::new(400, format!("invalid JSON: {e}")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            chat::decode(item.get())
                .map_err(|e| Rejection::new(400, format!("batch element {i}: {e}")))
        })
        .collect()
}

/// The full HTTP response for a refusal.
pub fn refusal_response(r: &Rejection, close: bool) -> Vec<u8> {
    let body = serde_json::json!({ "error": r.reason }).to_string();
    let mut headers = String::from("Cache-Control: no-store\r\n");
    headers.push_str(r.headers);
    if r.status == 503 {
        headers.push_str("Retry-After: 1\r\n");
    }
    http::response(
        r.status,
        "application/json",
        &headers,
        body.as_bytes(),
        false,
        close,
    )
}

/// `202 {"published": n}`.
pub fn accepted_response(n: usize, close: bool) -> Vec<u8> {
    let body = format!("{{\"published\": {n}}}");
    http::response(
        202,
        "application/json",
        "Cache-Control: no-store\r\n",
        body.as_bytes(),
        false,
        close,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, auth: Option<&str>, len: Option<u64>) -> Request {
        Request {
            method: method.into(),
            path: "/publish/lobby/".into(),
            http11: true,
            authorization: auth.map(Into::into),
            content_length: len,
            ..Request::default()
        }
    }

    fn status(r: Result<(String, usize), Rejection>) -> u16 {
        r.map(|_| 202).unwrap_or_else(|e| e.status)
    }

    #[test]
    fn head_checks_in_order() {
        let room = || Ok("lobby".to_string());
        let ok = req("POST", Some("Bearer s3cret"), Some(10));
        assert_eq!(status(check_head(&ok, room(), None, 100)), 404);
        assert_eq!(
            check_head(&ok, room(), Some("s3cret"), 100),
            Ok(("lobby".into(), 10))
        );
        let get = req("GET", Some("Bearer s3cret"), None);
        assert_eq!(status(check_head(&get, room(), Some("s3cret"), 100)), 405);
        for auth in [None, Some("Basic czNjcmV0"), Some("s3cret")] {
            let r = req("POST", auth, Some(10));
            let e = check_head(&r, room(), Some("s3cret"), 100).unwrap_err();
            assert_eq!(e.status, 401);
            assert!(e.headers.contains("WWW-Authenticate"));
        }
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "bearer S3CRET"] {
            let r = req("POST", Some(wrong), Some(10));
            assert_eq!(status(check_head(&r, room(), Some("s3cret"), 100)), 403);
        }
        let bad_room = Err(Rejection::new(400, "invalid room name"));
        assert_eq!(status(check_head(&ok, bad_room, Some("s3cret"), 100)), 400);
        let no_len = req("POST", Some("Bearer s3cret"), None);
        assert_eq!(
            status(check_head(&no_len, room(), Some("s3cret"), 100)),
            411
        );
        let big = req("POST", Some("Bearer s3cret"), Some(101));
        assert_eq!(status(check_head(&big, room(), Some("s3cret"), 100)), 413);
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body(br#"{"message": "hi"}"#), Ok(vec![r#""hi""#]));
        assert_eq!(
            parse_body(br#" [{"message": 1}, {"message": [2]}]"#),
            Ok(vec!["1", "[2]"])
        );
        assert_eq!(parse_body(b"[]"), Ok(vec![]));
        for bad in [
            &b"nope"[..],
            b"\xff",
            b"[1]",
            br#"[{"message": 1}, {"msg": 2}]"#,
            br#"{"msg": 1}"#,
            b"42",
            b"[",
        ] {
            let e = parse_body(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad:?}");
        }
        let e = parse_body(br#"[{"message": 1}, {"msg": 2}]"#).unwrap_err();
        assert!(e.reason.contains("element 1"), "{}", e.reason);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
