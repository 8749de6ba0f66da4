//! Micro-benchmarks of section 9's per-join and per-message checks
//! (criterion, no plots).
//!
//! Run: `nice -n 10 cargo bench --bench auth`. Groups:
//! - `token`: `TokenVerifier::verify` on a typical Django `signing.dumps`
//!   token (plain and `compress=True`), an HS256 JWT, each with a bad
//!   signature, and a token signed by the last of two fallback keys (the
//!   most HMACs a check does); plus `query_param` on an upgrade's query;
//! - `limits`: `Bucket::check` (per chat message) and `PerIpLimit`'s
//!   open/close (per connection);
//! - `backend`: `parse_response` and `verdict_of` on a back end's 200, and
//!   the decision cache's key (a SHA-256 of room, cookie and origin).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomcast::auth::bucket::{Bucket, RateLimit};
use roomcast::auth::{
    parse_response, query_param, token, verdict_of, DecisionCache, Parsed, PerIpLimit,
    ResponseLimits, TokenVerifier,
};
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

const KEY: &[u8] = b"django-insecure-9x!roomcast-bench-key-3k2j1h0g";
const NOW: u64 = 1_750_000_000;

/// Short runs: the whole file should take well under a minute.
fn configure() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(25)
}

fn bench_token(c: &mut Criterion) {
    let fallbacks = ["old-key-0123456789abcdef", "older-key-0123456789abcdef"];
    let v = TokenVerifier::new(KEY, &fallbacks, "roomcast", Duration::from_secs(3600));
    let payload = br#"{"room":"lobby","user":"ann","write":true}"#;
    let rooms: Vec<String> = (0..30).map(|i| format!("\"team-{i}\"")).collect();
    let many = format!(r#"{{"rooms":[{},"lobby"],"user":"ann"}}"#, rooms.join(","));
    let claims = format!(r#"{{"room":"lobby","sub":"42","exp":{}}}"#, NOW + 300);
    let cases = [
        (
            "django_plain",
            token::mint_django(payload, KEY, "roomcast", NOW as i64 - 5, false),
        ),
        (
            "django_compressed",
            token::mint_django(many.as_bytes(), KEY, "roomcast", NOW as i64 - 5, true),
        ),
        // The same 30 rooms uncompressed: what of the compressed form's cost
        // is the inflate and what is the longer payload.
        (
            "django_30_rooms",
            token::mint_django(many.as_bytes(), KEY, "roomcast", NOW as i64 - 5, false),
        ),
        ("jwt", token::mint_jwt(claims.as_bytes(), KEY)),
        (
            "django_bad_signature",
            token::mint_django(
                payload,
                b"wrong-key-0123456789abcdef",
                "roomcast",
                NOW as i64,
                false,
            ),
        ),
        (
            "jwt_bad_signature",
            token::mint_jwt(claims.as_bytes(), b"wrong-key-0123456789abcdef"),
        ),
        (
            "django_last_fallback",
            token::mint_django(
                payload,
                fallbacks[1].as_bytes(),
                "roomcast",
                NOW as i64,
                false,
            ),
        ),
    ];
    let mut g = c.benchmark_group("token");
    g.throughput(Throughput::Elements(1));
    for (name, t) in &cases {
        assert_eq!(
            v.verify(Some(t), "lobby", NOW).is_ok(),
            !name.contains("bad"),
            "{name}"
        );
        g.bench_function(*name, |b| {
            b.iter(|| v.verify(black_box(Some(t)), "lobby", NOW))
        });
    }
    let query = format!("token={}&v=2", cases[0].1.replace(':', "%3A"));
    g.bench_function("query_param", |b| {
        b.iter(|| query_param(black_box(&query), "token").map(|t| t.map(|t| t.len())))
    });
    g.finish();
}

fn bench_limits(c: &mut Criterion) {
    let mut g = c.benchmark_group("limits");
    g.throughput(Throughput::Elements(1));
    let limit = RateLimit::new(20.0, 20).unwrap();
    let mut bucket = Bucket::new(0);
    let mut now = 0u64;
    g.bench_function("bucket_check", |b| {
        b.iter(|| {
            now += 50;
            bucket.check(black_box(&limit), now)
        })
    });
    let mut per_ip = PerIpLimit::new(100);
    let ip: IpAddr = "192.0.2.33".parse().unwrap();
    g.bench_function("per_ip_open_close", |b| {
        b.iter(|| {
            let ok = per_ip.try_open(black_box(ip));
            per_ip.close(ip);
            ok
        })
    });
    g.finish();
}

fn bench_backend(c: &mut Criterion) {
    let mut g = c.benchmark_group("backend");
    g.throughput(Throughput::Elements(1));
    let raw = b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Dec 2026 02:00:00 GMT\r\nServer: WSGIServer/0.2 CPython/3.11.7\r\nContent-Type: application/json\r\nX-Frame-Options: DENY\r\nContent-Length: 32\r\nVary: Cookie\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: same-origin\r\nCross-Origin-Opener-Policy: same-origin\r\n\r\n{\"user\": \"ann\", \"write\": true}\n ";
    let limits = ResponseLimits {
        head: 8_192,
        body: 16_384,
    };
    assert!(matches!(
        parse_response(raw, false, &limits),
        Ok(Parsed::Complete(_))
    ));
    g.bench_function("parse_and_decide_200", |b| {
        b.iter(|| match parse_response(black_box(raw), false, &limits) {
            Ok(Parsed::Complete(r)) => verdict_of(&r).is_ok(),
            _ => false,
        })
    });
    let cookie =
        "csrftoken=Yk3Ja9sL0fP2qR7tU1vW4xZ6bC8dE5gH; sessionid=u4n7kq2x0r9s8t1v6w3y5z7a2b4c6d8e";
    g.bench_function("cache_key", |b| {
        b.iter(|| {
            DecisionCache::key(
                black_box("lobby"),
                Some(cookie),
                Some("https://app.example.com"),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = auth;
    config = configure();
    targets = bench_token, bench_limits, bench_backend
}
criterion_main!(auth);
