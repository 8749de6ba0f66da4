//! Join tokens minted by the real minters (Django 5.2's `signing.dumps` and
//! `TimestampSigner.sign_object`, PyJWT), checked with roomcast's verifier.
//!
//! `tests/auth/run.sh` mints them (`tests/auth/mint.py`) into a JSON file
//! and runs this test with `ROOMCAST_AUTH_VECTORS` naming it; without the
//! variable the test says so and passes. Every vector carries the verdict
//! roomcast must reach at the file's fixed "now": `ok` with the identity's
//! raw JSON and write permission, or a reason label.

use roomcast::auth::{Grant, TokenVerifier};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
struct File {
    minted_by: serde_json::Value,
    secret: String,
    fallbacks: Vec<String>,
    salt: String,
    max_age: u64,
    now: u64,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    token: String,
    room: String,
    expect: String,
    user: Option<String>,
    write: bool,
}

#[test]
fn tokens_from_django_and_pyjwt() {
    let Ok(path) = std::env::var("ROOMCAST_AUTH_VECTORS") else {
        eprintln!(
            "skipped: ROOMCAST_AUTH_VECTORS is not set (tests/auth/run.sh mints the vectors with Django and PyJWT and sets it)"
        );
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file: File = serde_json::from_str(&text).unwrap();
    let verifier = TokenVerifier::new(
        file.secret.as_bytes(),
        &file.fallbacks,
        &file.salt,
        Duration::from_secs(file.max_age),
    );
    let mut wrong = Vec::new();
    for v in &file.vectors {
        let got = verifier.verify(Some(&v.token), &v.room, file.now);
        let ok = match (&got, v.expect.as_str()) {
            (Ok(Grant { user, write }), "ok") => {
                user.as_deref() == v.user.as_deref() && *write == v.write
            }
            (Err(refusal), label) => refusal.label() == label,
            _ => false,
        };
        let line = format!("{:<45} {:<14} {got:?}", v.name, v.expect);
        println!("{} {line}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            wrong.push(line);
        }
    }
    println!(
        "{} vectors minted by {}: {} passed, {} failed",
        file.vectors.len(),
        file.minted_by,
        file.vectors.len() - wrong.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "verdicts that differ:\n{}",
        wrong.join("\n")
    );
    assert!(
        file.vectors.len() >= 30,
        "too few vectors: {}",
        file.vectors.len()
    );
}
