//! Property tests for section 9's sans-IO pieces (`roomcast::auth`): the
//! join-token verifier, the back end's response parser and the rate bucket.
//! The same properties as the `token` and `auth_response` fuzz targets, on
//! generated inputs, so they run in the normal suite.
//!
//! `PROPTEST_CASES=20000 cargo test --release --test proptest_auth` digs
//! deeper.

mod prop_support;

use prop_support::{config, cuts};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use roomcast::auth::bucket::{Admission, Bucket, RateLimit};
use roomcast::auth::{
    parse_response, token, Parsed, Refusal, Response, ResponseError, ResponseLimits, TokenVerifier,
};
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &[u8] = b"proptest-key-0123456789abcdef";
const NOW: u64 = 1_750_000_000;

fn verifier() -> TokenVerifier {
    TokenVerifier::new(KEY, &[] as &[&str], "roomcast", Duration::from_secs(3600))
}

/// Claims of every shape: right and wrong types for each field.
fn claims() -> impl Strategy<Value = Value> {
    let name = "[a-c]{1,3}\\*?";
    let room = prop_oneof![
        Just(Value::Null),
        name.prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
    ];
    let rooms = prop_oneof![
        Just(Value::Null),
        vec(name.prop_map(Value::from), 0..4).prop_map(Value::from),
        Just(json!("abc")),
    ];
    let user = prop_oneof![
        Just(Value::Null),
        "[ -~é]{0,8}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!({"id": 1})),
    ];
    let write = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        Just(json!(1))
    ];
    let exp = prop_oneof![
        Just(Value::Null),
        (-100i64..100).prop_map(|d| Value::from(NOW as i64 + d)),
        Just(json!("soon")),
    ];
    (room, rooms, user, write, exp).prop_map(|(room, rooms, user, write, exp)| {
        let mut o = serde_json::Map::new();
        for (k, v) in [
            ("room", room),
            ("rooms", rooms),
            ("user", user),
            ("write", write),
            ("exp", exp),
        ] {
            if !v.is_null() {
                o.insert(k.into(), v);
            }
        }
        Value::Object(o)
    })
}

/// The verdict the claims call for, worked out from the JSON value (not by
/// the verifier's own reader).
fn model(claims: &Value, room: &str, jwt: bool) -> Result<(Option<String>, bool), &'static str> {
    let one = claims.get("room");
    let list = claims.get("rooms");
    let exp = claims.get("exp");
    // Field types first, then time, then shape, then the room.
    if one.is_some_and(|r| !r.is_string())
        || list.is_some_and(|l| !l.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        || claims.get("write").is_some_and(|w| !w.is_boolean())
        || exp.is_some_and(|e| !e.is_number())
    {
        return Err("malformed");
    }
    match exp.and_then(Value::as_f64) {
        Some(e) if e.trunc() <= NOW as f64 => return Err("expired"),
        None if jwt => return Err("malformed"),
        _ => {}
    }
    if one.is_none() && list.is_none() {
        return Err("malformed");
    }
    let user = match claims.get("user") {
        Some(Value::Object(_) | Value::Array(_)) => return Err("malformed"),
        Some(v) => Some(v.to_string()),
        None => None,
    };
    let matches = |p: &str| match p.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => p == room,
    };
    // `room` names one room exactly; only `rooms` entries may be prefixes.
    let allowed = one.and_then(Value::as_str) == Some(room)
        || list
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().filter_map(Value::as_str).any(matches));
    if !allowed {
        return Err("other_room");
    }
    Ok((
        user,
        claims.get("write").and_then(Value::as_bool).unwrap_or(true),
    ))
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn signed_claims_get_the_verdict_they_call_for(
        claims in claims(),
        room in "[a-c]{1,3}",
        format in 0u8..3,
    ) {
        let json = serde_json::to_vec(&claims).unwrap();
        let token = match format {
            0 => token::mint_django(&json, KEY, "roomcast", NOW as i64 - 1, false),
            1 => token::mint_django(&json, KEY, "roomcast", NOW as i64 - 1, true),
            _ => token::mint_jwt(&json, KEY),
        };
        let got = verifier().verify(Some(&token), &room, NOW);
        let want = model(&claims, &room, format == 2);
        match (&got, &want) {
            (Ok(grant), Ok((user, write))) => {
                // serde_json writes the same scalar text back, so the raw
                // identity must equal it.
                prop_assert_eq!(grant.user.as_deref(), user.as_deref());
                prop_assert_eq!(grant.write, *write);
            }
            (Err(r), Err(label)) => prop_assert_eq!(r.label(), *label),
            _ => prop_assert!(false, "{claims} in {room}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn any_changed_byte_is_refused(
        user in "[a-z]{1,6}",
        jwt in any::<bool>(),
        at in any::<Index>(),
        to in 0x21u8..0x7F,
    ) {
        let json = serde_json::to_vec(&json!({"rooms": ["*"], "user": user, "exp": NOW + 60})).unwrap();
        let token = if jwt {
            token::mint_jwt(&json, KEY)
        } else {
            token::mint_django(&json, KEY, "roomcast", NOW as i64, false)
        };
        prop_assert!(verifier().verify(Some(&token), "lobby", NOW).is_ok());
        let mut bytes = token.into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        let changed = String::from_utf8(bytes).unwrap();
        let got = verifier().verify(Some(&changed), "lobby", NOW);
        prop_assert!(got.is_err(), "{changed} was accepted: {got:?}");
    }

    #[test]
    fn arbitrary_tokens_are_refused(text in "[ -~]{0,200}", bytes in vec(any::<u8>(), 0..300)) {
        let v = verifier();
        for t in [text, String::from_utf8_lossy(&bytes).into_owned()] {
            match v.verify(Some(&t), "lobby", NOW) {
                Err(r) => prop_assert!(matches!(r.status(), 401 | 403)),
                Ok(g) => prop_assert!(false, "{t:?} was accepted: {g:?}"),
            }
            let _ = token::query_param(&t, "token");
        }
    }

    #[test]
    fn a_response_split_anywhere_parses_the_same(
        status in prop_oneof![Just(200u16), Just(401), Just(403), Just(500), Just(204)],
        body in "[ -~]{0,300}",
        chunk in 1usize..50,
        framing in 0u8..3,
        tail in vec(any::<u8>(), 0..20),
        cut_at in vec(any::<Index>(), 0..6),
    ) {
        let limits = ResponseLimits { head: 512, body: 256 };
        let max_raw = limits.head + 2 * limits.body;
        // 204 has no body; give it a Content-Length: 0.
        let (body, framing) = if status == 204 { (String::new(), 0) } else { (body, framing) };
        let mut raw = format!("HTTP/1.1 {status} X\r\n").into_bytes();
        match framing {
            0 => raw.extend(format!("Content-Length: {}\r\n\r\n", body.len()).bytes()),
            1 => raw.extend(b"Transfer-Encoding: chunked\r\n\r\n"),
            _ => raw.extend(b"Connection: close\r\n\r\n"),
        }
        let head_len = raw.len();
        if framing == 1 {
            for piece in body.as_bytes().chunks(chunk) {
                raw.extend(format!("{:x}\r\n", piece.len()).bytes());
                raw.extend(piece);
                raw.extend(b"\r\n");
            }
            raw.extend(b"0\r\n\r\n");
        } else {
            raw.extend(body.as_bytes());
        }
        let whole_len = raw.len();
        let until_close = framing == 2;
        if !until_close {
            raw.extend(&tail);
        }
        let whole = parse_response(&raw, until_close, &limits);
        // Every prefix says "need more" or reaches the whole's verdict.
        for cut in cuts(&cut_at, whole_len.saturating_sub(1)) {
            match parse_response(&raw[..cut], false, &limits) {
                Ok(Parsed::Partial) => prop_assert!(cut <= max_raw),
                other => prop_assert_eq!(other, whole.clone(), "cut at {}", cut),
            }
        }
        let too_big = body.len() > limits.body || (framing == 1 && whole_len > max_raw);
        let skipped = Ok(Parsed::Complete(Response {
            status,
            body: Vec::new(),
            keep_alive: false,
            len: head_len,
        }));
        if status != 200 && (until_close || too_big) {
            prop_assert_eq!(whole, skipped);
        } else if too_big {
            prop_assert_eq!(whole, Err(ResponseError::BodyTooLarge));
        } else {
            prop_assert_eq!(
                whole,
                Ok(Parsed::Complete(Response {
                    status,
                    body: body.into_bytes(),
                    keep_alive: !until_close,
                    len: whole_len,
                }))
            );
        }
    }

    #[test]
    fn arbitrary_responses_never_panic(bytes in vec(any::<u8>(), 0..2000), eof in any::<bool>()) {
        let limits = ResponseLimits { head: 512, body: 256 };
        match parse_response(&bytes, eof, &limits) {
            Ok(Parsed::Partial) => prop_assert!(!eof && bytes.len() <= limits.head + 2 * limits.body),
            Ok(Parsed::Complete(r)) => prop_assert!(r.len <= bytes.len() && r.body.len() <= limits.body),
            Err(_) => {}
        }
    }

    #[test]
    fn the_bucket_never_allows_more_than_burst_plus_rate(
        per_second in 1u32..200,
        burst in 1u32..20,
        gaps in vec(0u64..300, 1..400),
        start in any::<u64>(),
    ) {
        let limit = RateLimit::new(f64::from(per_second), burst).unwrap();
        let interval = u64::from(limit.interval_ms());
        let start = start >> 8;
        let mut b = Bucket::new(start);
        let mut now = start;
        let mut allowed = Vec::new();
        for gap in gaps {
            now += gap;
            match b.check(&limit, now) {
                Admission::Allow => allowed.push(now),
                Admission::Refuse => {}
                Admission::Close => break,
            }
        }
        // In any window [t0, t1] at most burst + (t1 - t0) / interval.
        for (i, &t0) in allowed.iter().enumerate() {
            for (j, &t1) in allowed.iter().enumerate().skip(i) {
                let n = (j - i + 1) as u64;
                prop_assert!(n <= u64::from(burst) + (t1 - t0) / interval, "{n} in {} ms", t1 - t0);
            }
        }
    }

    #[test]
    fn a_client_at_the_rate_is_never_refused(
        per_second in 1u32..100,
        burst in 1u32..10,
        start in any::<u64>(),
        n in 1usize..300,
    ) {
        let limit = RateLimit::new(f64::from(per_second), burst).unwrap();
        let start = start >> 8;
        let mut b = Bucket::new(start);
        for i in 0..n as u64 {
            let at = start + i * u64::from(limit.interval_ms());
            prop_assert_eq!(b.check(&limit, at), Admission::Allow);
        }
    }
}

#[test]
fn refusal_labels_are_the_documented_set() {
    assert_eq!(
        roomcast::auth::REFUSAL_REASONS,
        [
            "no_token",
            "malformed",
            "bad_signature",
            "expired",
            "not_yet_valid",
            "other_room",
            "backend_unauthorized",
            "backend_forbidden",
            "backend_unavailable",
        ]
    );
    assert_eq!(Refusal::NoToken.status(), 401);
}
