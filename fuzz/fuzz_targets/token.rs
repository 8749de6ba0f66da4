//! Join tokens: `TokenVerifier::verify` on arbitrary tokens, and on
//! arbitrary payloads signed properly (Django plain and compressed, HS256
//! JWT), so the fuzzer reaches the payload reader past the signature; and
//! the query-string decoding in front of it. A verdict is always reached,
//! a signed token is never refused for its signature, and a grant's
//! identity is a bounded JSON scalar.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::auth::{token, Refusal, TokenVerifier, MAX_IDENTITY};
use std::time::Duration;

const KEY: &[u8] = b"fuzzing-key-0123456789abcdef";
const NOW: u64 = 1_750_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let verifier = TokenVerifier::new(
        KEY,
        &["fallback-key-0123456789"],
        "roomcast",
        Duration::from_secs(3600),
    );
    let text = String::from_utf8_lossy(rest);
    let (token, signed) = match mode % 5 {
        0 => (text.to_string(), false),
        1 => (
            token::mint_django(rest, KEY, "roomcast", NOW as i64 - 5, false),
            true,
        ),
        2 => (
            token::mint_django(rest, KEY, "roomcast", NOW as i64 - 5, true),
            true,
        ),
        3 => (token::mint_jwt(rest, KEY), true),
        _ => {
            if let Some(decoded) = token::percent_decode(&text) {
                assert!(decoded.len() <= text.len());
            }
            let _ = token::query_param(&text, "token");
            return;
        }
    };
    for room in ["lobby", "team-7"] {
        match verifier.verify(Some(&token), room, NOW) {
            Ok(grant) => {
                if let Some(user) = grant.user {
                    assert!(user.len() <= MAX_IDENTITY);
                    let v: serde_json::Value = serde_json::from_str(&user).expect("raw JSON");
                    assert!(!v.is_object() && !v.is_array() && !v.is_null());
                }
            }
            Err(Refusal::BadSignature) => {
                assert!(
                    !signed || token.len() > token::MAX_TOKEN,
                    "a signed token was refused for its signature"
                )
            }
            Err(r) => assert!(matches!(r.status(), 401 | 403), "{r:?}"),
        }
    }
});
