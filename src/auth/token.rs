//! Signed join tokens (SPEC section 9), sans-IO: the caller passes the
//! token (the `?token=` value, percent-decoded by [`query_param`]), the room
//! and the time in Unix seconds; nothing here reads a clock.
//!
//! Two formats, told apart by their separators (Django's has `:`, a JWT
//! exactly two `.` and no `:`), each checked against `--auth-secret` and
//! then every `--auth-secret-fallbacks` key in turn:
//! - **Django's `django.core.signing.dumps(payload, key=KEY, salt=SALT)`**
//!   (Django 5.2 `TimestampSigner.sign_object`): `B64:TS:SIG`. `B64` is the
//!   unpadded URL-safe base64 of the compact JSON, or, after a leading `.`,
//!   of its zlib compression (`compress=True`); `TS` the signing time in
//!   Unix seconds, base 62; `SIG` the unpadded URL-safe base64 of
//!   HMAC-SHA256 keyed with SHA256(SALT + "signer" + KEY) over `B64:TS`
//!   (Django's `salted_hmac`). As Django does, the signature is compared as
//!   text, in constant time. The token expires `--auth-max-age` after `TS`
//!   (Django: `age > max_age` fails).
//! - **A JWT signed HS256** (RFC 7519, JWS compact form) with the same key
//!   bytes: the header's `alg` must be `HS256` (`none` and every other
//!   algorithm are refused, as is a `crit` header), and `exp` is required
//!   (checked as PyJWT does: expired once `exp <= now`).
//!
//! The payload (claims), a JSON object: `room` (one room) and/or `rooms` (a
//! list; an entry ending in `*` is a prefix, `"*"` is every room); `user`,
//! else `sub`: the identity, a JSON scalar kept as raw text; `write` (a
//! boolean, default true); optionally `exp`, `nbf`, `iat` (numbers, Unix
//! seconds, honoured in both formats). A payload naming no room is malformed.
//!
//! Invariants:
//! - Bounded: a token over [`MAX_TOKEN`] bytes is refused before anything is
//!   decoded; a compressed payload inflates into a fixed [`MAX_JSON`]-byte
//!   buffer and the inflater stops at its end (a zlib bomb costs at most
//!   that). The inflater and its buffer (about 23 KiB) are kept by each
//!   thread that has inflated a token, so a check allocates nothing for them.
//! - Before a signature is checked, only a JWT's header (at most
//!   [`MAX_JWT_HEADER`] bytes) is decoded; a Django payload is decoded and
//!   inflated only once its signature matched, as in Django.
//! - Clock skew: a token minted up to [`CLOCK_SKEW`] in the future (or with
//!   `nbf`/`iat` that far ahead) is accepted, as PyJWT's `leeway` would; past
//!   that it is refused as not yet valid. Django itself accepts any future
//!   timestamp, which would let a token outlive `--auth-max-age`.
//! - Checks run in a fixed order: format, signature, time, payload shape,
//!   room; the first failure is the verdict.

use super::{identity, Grant, Refusal, Verdict};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::RefCell;
use std::time::Duration;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Checks join tokens against the secret and its fallbacks.
#[derive(Clone)]
pub struct TokenVerifier {
    /// The secret first, then each fallback, as Django's `Signer` tries them.
    keys: Vec<Keys>,
    /// `--auth-max-age` in seconds.
    max_age: u64,
}

/// One key, prepared once: each check clones a keyed HMAC (two SHA-256
/// states) instead of redoing the key schedule.
#[derive(Clone)]
struct Keys {
    /// Keyed with Django's derived key, SHA256(salt + "signer" + secret).
    django: HmacSha256,
    /// Keyed with the secret's bytes (RFC 7518 section 3.2).
    jwt: HmacSha256,
}

/// The longest token accepted, in bytes.
pub const MAX_TOKEN: usize = 4_096;

/// The most a payload's JSON may take, inflated or not.
pub const MAX_JSON: usize = 16_384;

/// How far in the future a token's time may lie, in seconds.
pub const CLOCK_SKEW: u64 = 60;

/// The longest JWT header segment read before the signature is checked.
pub const MAX_JWT_HEADER: usize = 512;

/// `{"alg":"HS256","typ":"JWT"}`, the header PyJWT, jose and jsonwebtoken
/// write: recognised without decoding it.
const COMMON_JWT_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Characters of an HMAC-SHA256 tag in unpadded base64.
const TAG_TEXT: usize = 43;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl TokenVerifier {
    /// `secret` and `fallbacks` as Django's `SECRET_KEY` and
    /// `SECRET_KEY_FALLBACKS` (their UTF-8 bytes), `salt` as passed to
    /// `signing.dumps`, `max_age` as `--auth-max-age` (whole seconds count).
    pub fn new<S: AsRef<[u8]>>(
        secret: &[u8],
        fallbacks: &[S],
        salt: &str,
        max_age: Duration,
    ) -> TokenVerifier {
        let keys = std::iter::once(secret)
            .chain(fallbacks.iter().map(AsRef::as_ref))
            .map(|key| Keys {
                django: keyed(&django_key(salt, key)),
                jwt: keyed(key),
            })
            .collect();
        TokenVerifier {
            keys,
            max_age: max_age.as_secs(),
        }
    }

    /// Decides a join to `room` with `token` (`None`: no `?token=`) at
    /// `now`, Unix seconds.
    pub fn verify(&self, token: Option<&str>, room: &str, now: u64) -> Verdict {
        let token = match token {
            None | Some("") => return Err(Refusal::NoToken),
            Some(t) => t,
        };
        if token.len() > MAX_TOKEN {
            return Err(Refusal::Malformed("it is over 4,096 bytes"));
        }
        if let Some((value, signature)) = token.rsplit_once(':') {
            return self.verify_django(value, signature, room, now);
        }
        let mut parts = token.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(header), Some(payload), Some(signature), None) => {
                self.verify_jwt(token, header, payload, signature, room, now)
            }
            _ => Err(Refusal::Malformed(
                "it is neither a Django signed value (a:b:c) nor a JWT (a.b.c)",
            )),
        }
    }

    fn verify_django(&self, value: &str, signature: &str, room: &str, now: u64) -> Verdict {
        if !self.keys.iter().any(|k| django_match(k, value, signature)) {
            return Err(Refusal::BadSignature);
        }
        let (data, timestamp) = value
            .rsplit_once(':')
            .ok_or(Refusal::Malformed("it has no timestamp"))?;
        let signed_at =
            base62(timestamp).ok_or(Refusal::Malformed("its timestamp is not base 62"))?;
        let age = i128::from(now) - i128::from(signed_at);
        if age > i128::from(self.max_age) {
            return Err(Refusal::Expired);
        }
        if -age > i128::from(CLOCK_SKEW) {
            return Err(Refusal::NotYetValid);
        }
        let (compressed, data) = match data.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, data),
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| Refusal::Malformed("its payload is not URL-safe base64"))?;
        if compressed {
            return INFLATER.with(|cell| {
                let mut inflater = cell.borrow_mut();
                let json = inflater.inflate(&bytes).ok_or(Refusal::Malformed(
                    "its compressed payload does not inflate within 16 KiB",
                ))?;
                grant(json, room, now, false)
            });
        }
        grant(&bytes, room, now, false)
    }

    fn verify_jwt(
        &self,
        token: &str,
        header: &str,
        payload: &str,
        signature: &str,
        room: &str,
        now: u64,
    ) -> Verdict {
        check_jwt_header(header)?;
        let mut tag = [0u8; 48];
        let tag = match URL_SAFE_NO_PAD.decode_slice(signature, &mut tag) {
            Ok(32) => &tag[..32],
            _ => return Err(Refusal::BadSignature),
        };
        let signed = &token.as_bytes()[..header.len() + 1 + payload.len()];
        let matched = self.keys.iter().any(|k| {
            let mut mac = k.jwt.clone();
            mac.update(signed);
            mac.verify_slice(tag).is_ok()
        });
        if !matched {
            return Err(Refusal::BadSignature);
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| Refusal::Malformed("its claims are not URL-safe base64"))?;
        grant(&json, room, now, true)
    }
}

impl std::fmt::Debug for TokenVerifier {
    /// Never shows a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.keys.len())
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// A zlib inflater and its output buffer, kept per thread: setting one up
/// (about 7 KiB of zlib-rs state, a 16 KiB buffer) costs more than
/// inflating a token. zlib-rs, the relay's permessage-deflate engine, is
/// also the fastest inflater here for a few hundred bytes
/// (`src/wire/deflate/mod.rs`): a compressed token with 30 rooms took
/// 3.5 µs against 5.5 µs with miniz_oxide (`cargo bench --bench auth`).
struct Inflater {
    state: zlib_rs::Inflate,
    out: Box<[u8; MAX_JSON]>,
}

thread_local! {
    static INFLATER: RefCell<Inflater> = RefCell::new(Inflater {
        state: zlib_rs::Inflate::new(true, 15),
        out: Box::new([0; MAX_JSON]),
    });
}

impl Inflater {
    /// The zlib stream `z` inflated, if it ends within [`MAX_JSON`] bytes:
    /// the output buffer is the bound, so nothing past it is produced. The
    /// Adler-32 checksum is checked, as Python's `zlib.decompress` does.
    fn inflate(&mut self, z: &[u8]) -> Option<&[u8]> {
        self.state.reset(true);
        match self
            .state
            .decompress(z, &mut self.out[..], zlib_rs::InflateFlush::Finish)
        {
            Ok(zlib_rs::Status::StreamEnd) => {
                let n = usize::try_from(self.state.total_out()).ok()?;
                self.out.get(..n)
            }
            _ => None,
        }
    }
}

/// Whether `signature` is Django's signature of `value` under `keys`.
fn django_match(keys: &Keys, value: &str, signature: &str) -> bool {
    let mut mac = keys.django.clone();
    mac.update(value.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut text = [0u8; TAG_TEXT + 1];
    match URL_SAFE_NO_PAD.encode_slice(tag, &mut text) {
        Ok(TAG_TEXT) => text[..TAG_TEXT].ct_eq(signature.as_bytes()).into(),
        _ => false,
    }
}

/// Only HS256, and no critical extension this verifier cannot honour
/// (RFC 7515 section 4.1.11).
fn check_jwt_header(header: &str) -> Result<(), Refusal> {
    if header == COMMON_JWT_HEADER {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct Header<'a> {
        #[serde(borrow)]
        alg: Cow<'a, str>,
        crit: Option<IgnoredAny>,
    }
    if header.len() > MAX_JWT_HEADER {
        return Err(Refusal::Malformed("its JWT header is over 512 bytes"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Refusal::Malformed("its JWT header is not URL-safe base64"))?;
    if bytes.first() != Some(&b'{') {
        return Err(Refusal::Malformed("its JWT header is not a JSON object"));
    }
    let h: Header<'_> = serde_json::from_slice(&bytes)
        .map_err(|_| Refusal::Malformed("its JWT header is not a JSON object with \"alg\""))?;
    if h.alg != "HS256" {
        return Err(Refusal::Malformed(
            "its JWT alg is not HS256 (the only one accepted)",
        ));
    }
    if h.crit.is_some() {
        return Err(Refusal::Malformed("its JWT header has crit extensions"));
    }
    Ok(())
}

/// What roomcast reads of a payload; other fields are ignored.
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    rooms: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sub: Option<&'a RawValue>,
    #[serde(default)]
    write: Option<bool>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
}

/// Reads a verified payload into the grant for `room`.
fn grant(json: &[u8], room: &str, now: u64, exp_required: bool) -> Verdict {
    // A struct also deserializes from a JSON array: insist on an object.
    let start = json.iter().position(|b| !b.is_ascii_whitespace());
    if start.map(|i| json[i]) != Some(b'{') {
        return Err(Refusal::Malformed("its payload is not a JSON object"));
    }
    let claims: Claims<'_> = serde_json::from_slice(json).map_err(|_| {
        Refusal::Malformed(
            "its payload's fields have the wrong types (room: string, rooms: list of strings, write: boolean, exp/nbf/iat: numbers)",
        )
    })?;
    // PyJWT truncates times to integers; so does this.
    let now = now as f64;
    match claims.exp.map(f64::trunc) {
        Some(exp) if exp <= now => return Err(Refusal::Expired),
        None if exp_required => return Err(Refusal::Malformed("a JWT must carry \"exp\"")),
        _ => {}
    }
    let ahead = now + CLOCK_SKEW as f64;
    if [claims.nbf, claims.iat]
        .iter()
        .flatten()
        .any(|t| t.trunc() > ahead)
    {
        return Err(Refusal::NotYetValid);
    }
    if claims.room.is_none() && claims.rooms.is_none() {
        return Err(Refusal::Malformed(
            "its payload names no room (give \"room\" or \"rooms\")",
        ));
    }
    let user = match claims.user.or(claims.sub) {
        Some(raw) => identity(raw.get()).map_err(Refusal::Malformed)?,
        None => None,
    };
    let allowed = claims.room.iter().any(|r| r == room)
        || claims.rooms.iter().flatten().any(|p| room_matches(p, room));
    if !allowed {
        return Err(Refusal::OtherRoom);
    }
    Ok(Grant {
        user,
        write: claims.write.unwrap_or(true),
    })
}

/// `pattern` names `room` exactly, or is a prefix of it ending in `*`.
fn room_matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

/// Django's `b62_decode`: base-62 digits, optionally after a `-`.
fn base62(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for c in digits.bytes() {
        let d = BASE62.iter().position(|&x| x == c)? as i64;
        n = n.checked_mul(62)?.checked_add(d)?;
    }
    Some(if negative { -n } else { n })
}

/// Django's derived key: SHA256(salt + "signer" + secret).
fn django_key(salt: &str, secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b"signer");
    h.update(secret);
    h.finalize().into()
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length (RFC 2104 section 2): this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// The first `name` parameter of a query string (the part after `?`, without
/// any `#fragment`), percent-decoded: `Ok(None)` when absent, a
/// [`Refusal::Malformed`] when its value is not percent-encoded UTF-8.
pub fn query_param<'q>(query: &'q str, name: &str) -> Result<Option<Cow<'q, str>>, Refusal> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key).as_deref() == Some(name) {
            return percent_decode(value).map(Some).ok_or(Refusal::Malformed(
                "it is not valid percent-encoding of UTF-8",
            ));
        }
    }
    Ok(None)
}

/// Decodes `%XX` escapes, and `+` as a space (HTML forms and
/// `URLSearchParams` write spaces so). `None` when an escape is not two hex
/// digits or the bytes are not UTF-8. Never longer than its input.
pub fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 0xA),
        b'A'..=b'F' => Some(c - b'A' + 0xA),
        _ => None,
    }
}

/// Mints a token as `django.core.signing.dumps(payload, key=secret,
/// salt=salt, compress=compress)` would at `timestamp` (Unix seconds), from
/// the payload's compact JSON. Like Django, compresses only when that saves
/// more than one byte. For tests, benchmarks and Rust back ends.
pub fn mint_django(
    json: &[u8],
    secret: &[u8],
    salt: &str,
    timestamp: i64,
    compress: bool,
) -> String {
    let mut value = String::new();
    let packed = compress.then(|| miniz_oxide::deflate::compress_to_vec_zlib(json, 6));
    match packed {
        Some(z) if z.len() + 1 < json.len() => {
            value.push('.');
            URL_SAFE_NO_PAD.encode_string(z, &mut value);
        }
        _ => URL_SAFE_NO_PAD.encode_string(json, &mut value),
    }
    value.push(':');
    value.push_str(&to_base62(timestamp));
    let mut mac = keyed(&django_key(salt, secret));
    mac.update(value.as_bytes());
    value.push(':');
    URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut value);
    value
}

/// Mints an HS256 JWT with PyJWT's header over the claims' JSON. For tests,
/// benchmarks and Rust back ends.
pub fn mint_jwt(claims: &[u8], secret: &[u8]) -> String {
    let mut token = String::from(COMMON_JWT_HEADER);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let mut mac = keyed(secret);
    mac.update(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
    token
}

/// Django's `b62_encode`.
fn to_base62(n: i64) -> String {
    if n == 0 {
        return "0".into();
    }
    let mut digits = Vec::new();
    let mut m = n.unsigned_abs();
    while m > 0 {
        digits.push(BASE62[(m % 62) as usize]);
        m /= 62;
    }
    if n < 0 {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"django-insecure-roomcast-test-key-0123456789";
    const NOW: u64 = 1_750_000_000;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(
            KEY,
            &["old-key-0123456789"],
            "roomcast",
            Duration::from_secs(3600),
        )
    }

    fn django(json: &str, at: u64) -> String {
        mint_django(json.as_bytes(), KEY, "roomcast", at as i64, false)
    }

    fn ok(user: Option<&str>, write: bool) -> Verdict {
        Ok(Grant {
            user: user.map(Into::into),
            write,
        })
    }

    /// Minted by Django 5.2 itself:
    /// `signing.dumps({"room": "lobby", "user": "ann"}, key=KEY, salt="roomcast")`
    /// with `time.time()` patched to 1,750,000,000; the second is
    /// `{"rooms": ["lobby-0", ..., "lobby-19", "lobby"], "user": "ann"}` with
    /// `compress=True`.
    const DJANGO_PLAIN: &str =
        "eyJyb29tIjoibG9iYnkiLCJ1c2VyIjoiYW5uIn0:1uQowS:4ll4VlrIrh3YybVi4PVCPnV2mLk402fAwn45NAHsLMs";
    const DJANGO_COMPRESSED: &str = ".eJxNzTsOQFAARNG9TE1i_NmKKLxEh5cQhYi9a2RGd6t7buwxrgf6AUsM4UozJF9RlasKVamqVLWqUbWqzucfYoVmaIeGaImmaIvGKA1jgvOYd_SYtg3PC-DTRs0:1uQowS:GCmk7JN466loRnG-DCWFc3tpoJVqa4O7g0VY5NalqPY";

    #[test]
    fn django_tokens_minted_by_django_verify() {
        let v = verifier();
        assert_eq!(
            v.verify(Some(DJANGO_PLAIN), "lobby", NOW + 10),
            ok(Some("\"ann\""), true)
        );
        assert_eq!(
            v.verify(Some(DJANGO_PLAIN), "other", NOW + 10),
            Err(Refusal::OtherRoom)
        );
        assert_eq!(
            v.verify(Some(DJANGO_COMPRESSED), "lobby", NOW),
            ok(Some("\"ann\""), true)
        );
        assert_eq!(
            v.verify(Some(DJANGO_COMPRESSED), "lobby-19", NOW),
            ok(Some("\"ann\""), true)
        );
    }

    #[test]
    fn the_mint_matches_django() {
        assert_eq!(
            django(r#"{"room":"lobby","user":"ann"}"#, NOW),
            DJANGO_PLAIN
        );
        assert_eq!(to_base62(NOW as i64), "1uQowS");
        assert_eq!(base62("1uQowS"), Some(NOW as i64));
        assert_eq!(base62("-A"), Some(-10));
        assert_eq!(base62(""), None);
        assert_eq!(base62("zzzzzzzzzzzzzzzzzzzzzzzzz"), None);
        assert_eq!(base62("1+"), None);
    }

    #[test]
    fn django_table() {
        let v = verifier();
        let lobby = r#"{"room":"lobby"}"#;
        let cases: Vec<(&str, String, &str, u64, Verdict)> = vec![
            ("fresh", django(lobby, NOW), "lobby", NOW, ok(None, true)),
            (
                "at max age",
                django(lobby, NOW - 3600),
                "lobby",
                NOW,
                ok(None, true),
            ),
            (
                "past max age",
                django(lobby, NOW - 3601),
                "lobby",
                NOW,
                Err(Refusal::Expired),
            ),
            (
                "skew",
                django(lobby, NOW + 60),
                "lobby",
                NOW,
                ok(None, true),
            ),
            (
                "future",
                django(lobby, NOW + 61),
                "lobby",
                NOW,
                Err(Refusal::NotYetValid),
            ),
            (
                "other room",
                django(lobby, NOW),
                "hall",
                NOW,
                Err(Refusal::OtherRoom),
            ),
            (
                "read-only, numeric user",
                django(r#"{"room":"lobby","user":7,"write":false}"#, NOW),
                "lobby",
                NOW,
                ok(Some("7"), false),
            ),
            (
                "sub when no user",
                django(r#"{"rooms":["a","lob*"],"sub":"u-1"}"#, NOW),
                "lobby",
                NOW,
                ok(Some("\"u-1\""), true),
            ),
            (
                "user wins over sub",
                django(r#"{"room":"lobby","user":"ann","sub":"u-1"}"#, NOW),
                "lobby",
                NOW,
                ok(Some("\"ann\""), true),
            ),
            (
                "null user is anonymous",
                django(r#"{"room":"lobby","user":null}"#, NOW),
                "lobby",
                NOW,
                ok(None, true),
            ),
            (
                "every room",
                django(r#"{"rooms":["*"]}"#, NOW),
                "anything",
                NOW,
                ok(None, true),
            ),
            (
                "prefix does not match",
                django(r#"{"rooms":["lob*"]}"#, NOW),
                "hall",
                NOW,
                Err(Refusal::OtherRoom),
            ),
            (
                "star only at the end",
                django(r#"{"rooms":["l*y"]}"#, NOW),
                "lobby",
                NOW,
                Err(Refusal::OtherRoom),
            ),
            (
                "empty list",
                django(r#"{"rooms":[]}"#, NOW),
                "lobby",
                NOW,
                Err(Refusal::OtherRoom),
            ),
            (
                "exp honoured",
                django(r#"{"room":"lobby","exp":1749999999}"#, NOW),
                "lobby",
                NOW,
                Err(Refusal::Expired),
            ),
        ];
        for (name, token, room, now, want) in cases {
            assert_eq!(v.verify(Some(&token), room, now), want, "{name}");
        }
    }

    #[test]
    fn malformed_payloads_are_refused_with_words() {
        let v = verifier();
        for json in [
            r#"{"user":"ann"}"#,
            r#"["lobby"]"#,
            r#""lobby""#,
            r#"{"room":5}"#,
            r#"{"room":"lobby","write":"yes"}"#,
            r#"{"room":"lobby","user":{"id":1}}"#,
            r#"{"room":"lobby","exp":"soon"}"#,
            "not json",
        ] {
            let got = v.verify(Some(&django(json, NOW)), "lobby", NOW);
            assert!(matches!(got, Err(Refusal::Malformed(_))), "{json}: {got:?}");
        }
    }

    #[test]
    fn signatures_keys_and_tampering() {
        let lobby = br#"{"room":"lobby"}"#;
        let v = verifier();
        let other = mint_django(
            lobby,
            b"another-key-entirely",
            "roomcast",
            NOW as i64,
            false,
        );
        assert_eq!(
            v.verify(Some(&other), "lobby", NOW),
            Err(Refusal::BadSignature)
        );
        let old = mint_django(lobby, b"old-key-0123456789", "roomcast", NOW as i64, false);
        assert_eq!(v.verify(Some(&old), "lobby", NOW), ok(None, true));
        let salted = mint_django(lobby, KEY, "other-salt", NOW as i64, false);
        assert_eq!(
            v.verify(Some(&salted), "lobby", NOW),
            Err(Refusal::BadSignature)
        );
        // Swap the payload for another room, keep the signature.
        let good = django(r#"{"room":"lobby"}"#, NOW);
        let forged = good.replacen(
            &URL_SAFE_NO_PAD.encode(br#"{"room":"lobby"}"#),
            &URL_SAFE_NO_PAD.encode(br#"{"room":"vault"}"#),
            1,
        );
        assert_eq!(
            v.verify(Some(&forged), "vault", NOW),
            Err(Refusal::BadSignature)
        );
        // A truncated or extended signature.
        assert_eq!(
            v.verify(Some(&good[..good.len() - 1]), "lobby", NOW),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            v.verify(Some(&format!("{good}A")), "lobby", NOW),
            Err(Refusal::BadSignature)
        );
        // A fallback also verifies JWTs.
        let jwt = mint_jwt(
            br#"{"room":"lobby","exp":1750000100}"#,
            b"old-key-0123456789",
        );
        assert_eq!(v.verify(Some(&jwt), "lobby", NOW), ok(None, true));
    }

    #[test]
    fn compressed_payloads_inflate_within_bounds() {
        let v = verifier();
        let rooms: Vec<String> = (0..200).map(|i| format!("\"room-{i}\"")).collect();
        let json = format!(r#"{{"rooms":[{}],"user":"ann"}}"#, rooms.join(","));
        let token = mint_django(json.as_bytes(), KEY, "roomcast", NOW as i64, true);
        assert!(token.starts_with('.'));
        assert!(token.len() < json.len());
        assert_eq!(
            v.verify(Some(&token), "room-150", NOW),
            ok(Some("\"ann\""), true)
        );
        // A zlib bomb: 1 MiB of spaces in a few hundred bytes, properly signed.
        let mut bomb = b"{\"room\":\"lobby\"".to_vec();
        bomb.resize(1 << 20, b' ');
        bomb.push(b'}');
        let token = mint_django(&bomb, KEY, "roomcast", NOW as i64, true);
        assert!(token.len() < MAX_TOKEN);
        assert_eq!(
            v.verify(Some(&token), "lobby", NOW),
            Err(Refusal::Malformed(
                "its compressed payload does not inflate within 16 KiB"
            ))
        );
        // Signed garbage after the dot.
        let mut value = String::from(".AAAA:1uQowS");
        let mut mac = keyed(&django_key("roomcast", KEY));
        mac.update(value.as_bytes());
        value.push(':');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut value);
        assert!(matches!(
            v.verify(Some(&value), "lobby", NOW),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn jwt_table() {
        let v = verifier();
        let jwt = |claims: &str| mint_jwt(claims.as_bytes(), KEY);
        let cases: Vec<(&str, String, Verdict)> = vec![
            (
                "accepted",
                jwt(r#"{"room":"lobby","sub":"42","exp":1750000100}"#),
                ok(Some("\"42\""), true),
            ),
            (
                "float exp",
                jwt(r#"{"room":"lobby","exp":1750000000.9}"#),
                Err(Refusal::Expired),
            ),
            (
                "exp now",
                jwt(r#"{"room":"lobby","exp":1750000000}"#),
                Err(Refusal::Expired),
            ),
            (
                "exp missing",
                jwt(r#"{"room":"lobby"}"#),
                Err(Refusal::Malformed("a JWT must carry \"exp\"")),
            ),
            (
                "nbf ahead",
                jwt(r#"{"room":"lobby","exp":1750009999,"nbf":1750000061}"#),
                Err(Refusal::NotYetValid),
            ),
            (
                "iat within skew",
                jwt(r#"{"room":"lobby","exp":1750009999,"iat":1750000060}"#),
                ok(None, true),
            ),
            (
                "read-only",
                jwt(r#"{"rooms":["lob*"],"user":"ann","write":false,"exp":1750009999}"#),
                ok(Some("\"ann\""), false),
            ),
            (
                "other room",
                jwt(r#"{"room":"hall","exp":1750009999}"#),
                Err(Refusal::OtherRoom),
            ),
        ];
        for (name, token, want) in cases {
            assert_eq!(v.verify(Some(&token), "lobby", NOW), want, "{name}");
        }
    }

    #[test]
    fn jwt_algorithms_other_than_hs256_are_refused() {
        let v = verifier();
        let claims = URL_SAFE_NO_PAD.encode(br#"{"room":"lobby","exp":1750009999}"#);
        let header = |h: &str| URL_SAFE_NO_PAD.encode(h.as_bytes());
        // alg none, with and without a signature.
        for token in [
            format!("{}.{claims}.", header(r#"{"alg":"none","typ":"JWT"}"#)),
            format!("{}.{claims}.AAAA", header(r#"{"alg":"none"}"#)),
        ] {
            assert!(matches!(
                v.verify(Some(&token), "lobby", NOW),
                Err(Refusal::Malformed(_))
            ));
        }
        // HS512 or RS256 claimed over an HS256 signature.
        for alg in ["HS512", "RS256", "hs256"] {
            let h = header(&format!(r#"{{"alg":"{alg}"}}"#));
            let mut mac = keyed(KEY);
            mac.update(format!("{h}.{claims}").as_bytes());
            let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            let token = format!("{h}.{claims}.{sig}");
            assert!(matches!(
                v.verify(Some(&token), "lobby", NOW),
                Err(Refusal::Malformed(_))
            ));
        }
        // A reordered HS256 header is fine; a crit one is not.
        for (h, good) in [
            (r#"{"typ":"JWT","alg":"HS256"}"#, true),
            (r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, false),
        ] {
            let h = header(h);
            let mut mac = keyed(KEY);
            mac.update(format!("{h}.{claims}").as_bytes());
            let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            let got = v.verify(Some(&format!("{h}.{claims}.{sig}")), "lobby", NOW);
            assert_eq!(got.is_ok(), good, "{got:?}");
        }
        // A signature by another key, or with padding.
        let foreign = mint_jwt(
            br#"{"room":"lobby","exp":1750009999}"#,
            b"not-the-key-at-all",
        );
        assert_eq!(
            v.verify(Some(&foreign), "lobby", NOW),
            Err(Refusal::BadSignature)
        );
        let good = mint_jwt(br#"{"room":"lobby","exp":1750009999}"#, KEY);
        assert_eq!(
            v.verify(Some(&format!("{good}=")), "lobby", NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn hostile_shapes_are_refused_not_panics() {
        let v = verifier();
        let long = "a".repeat(MAX_TOKEN + 1);
        for token in [
            "", ":", "::", ":::", "a:b", ".", "..", "...", "a.b", "a.b.c.d", "é:é:é", "é.é.é",
            &long,
        ] {
            let got = v.verify(Some(token), "lobby", NOW);
            assert!(got.is_err(), "{token:?}");
        }
        assert_eq!(v.verify(None, "lobby", NOW), Err(Refusal::NoToken));
        assert_eq!(v.verify(Some(""), "lobby", NOW), Err(Refusal::NoToken));
    }

    #[test]
    fn query_strings() {
        let q = "a=1&token=ab%3Acd%3Aef&token=second";
        assert_eq!(query_param(q, "token"), Ok(Some("ab:cd:ef".into())));
        assert_eq!(query_param("to%6Ben=x+y", "token"), Ok(Some("x y".into())));
        assert_eq!(query_param("token", "token"), Ok(Some("".into())));
        assert_eq!(query_param("tokens=1", "token"), Ok(None));
        assert_eq!(query_param("", "token"), Ok(None));
        assert!(query_param("token=%zz", "token").is_err());
        assert!(query_param("token=%e9", "token").is_err());
        assert!(query_param("token=%4", "token").is_err());
        assert_eq!(percent_decode("%C3%A9"), Some("é".into()));
        assert!(matches!(
            percent_decode("plain"),
            Some(Cow::Borrowed("plain"))
        ));
    }
}
