//! Join tokens (SPEC section 9): each client appends `?token=...` to its upgrade URL,
//! minted for its room with the relay's secret, in either format the relay accepts.
//!
//! * **Django**: what `django.core.signing.dumps({"room": ROOM}, key=KEY, salt=SALT)`
//!   returns: `b64url(JSON) ":" base62(unix time) ":" b64url(HMAC-SHA256)`, the HMAC
//!   keyed with `SHA256(SALT + "signer" + KEY)` over everything before the last colon
//!   (Django's `TimestampSigner` with its default SHA-256 and `:` separator; the JSON
//!   compact, as Django's `JSONSerializer` writes it; no `=` padding).
//! * **JWT**: HS256 over `b64url(header) "." b64url(claims)`, claims `room` and `exp`.
//!
//! `loadtest/check-tokens.sh` verifies both against Django 5.2 and PyJWT.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::str::FromStr;

/// A JWT's lifetime from minting; Django tokens carry their minting time instead (the
/// relay checks them against `--auth-max-age`).
pub const JWT_LIFETIME_S: u64 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    Django,
    Jwt,
}

impl TokenFormat {
    pub const ALL: [TokenFormat; 2] = [TokenFormat::Django, TokenFormat::Jwt];

    pub fn name(self) -> &'static str {
        match self {
            TokenFormat::Django => "django",
            TokenFormat::Jwt => "jwt",
        }
    }
}

impl FromStr for TokenFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<TokenFormat, String> {
        TokenFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("no token format named {s:?}"))
    }
}

/// Mints tokens for rooms.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenMinter {
    secret: String,
    salt: String,
    pub format: TokenFormat,
}

impl std::fmt::Debug for TokenMinter {
    // The secret stays out of debug output and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMinter")
            .field("salt", &self.salt)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct RoomClaim<'a> {
    room: &'a str,
}

#[derive(Serialize)]
struct JwtClaims<'a> {
    room: &'a str,
    exp: u64,
}

impl TokenMinter {
    pub fn new(secret: &str, salt: &str, format: TokenFormat) -> Result<TokenMinter, String> {
        if secret.is_empty() {
            return Err("--token-secret is empty".into());
        }
        Ok(TokenMinter {
            secret: secret.into(),
            salt: salt.into(),
            format,
        })
    }

    /// A token for `room` minted at `now` (Unix seconds).
    pub fn mint(&self, room: &str, now: u64) -> String {
        match self.format {
            TokenFormat::Django => self.django(room, now),
            TokenFormat::Jwt => self.jwt(room, now),
        }
    }

    /// A token for `room` minted now, percent-encoded for a query string.
    pub fn query_value(&self, room: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Django's separator is the only character outside the URL-safe alphabet.
        self.mint(room, now).replace(':', "%3A")
    }

    fn django(&self, room: &str, now: u64) -> String {
        let json = serde_json::to_vec(&RoomClaim { room }).expect("a string serialises");
        let value = format!("{}:{}", URL_SAFE_NO_PAD.encode(json), base62(now));
        // Django's salted_hmac: the HMAC key is SHA256(key_salt + secret), where the
        // Signer's key_salt is its salt + "signer".
        let key = Sha256::new()
            .chain_update(self.salt.as_bytes())
            .chain_update(b"signer")
            .chain_update(self.secret.as_bytes())
            .finalize();
        let sig = hmac_sha256(&key, value.as_bytes());
        format!("{value}:{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn jwt(&self, room: &str, now: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = serde_json::to_vec(&JwtClaims {
            room,
            exp: now + JWT_LIFETIME_S,
        })
        .expect("claims serialise");
        let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
        let sig = hmac_sha256(self.secret.as_bytes(), signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Django's `b62_encode`: digits, then upper case, then lower case.
fn base62(mut n: u64) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 62) as usize]);
        n /= 62;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_is_djangos() {
        assert_eq!(base62(0), "0");
        assert_eq!(base62(61), "z");
        assert_eq!(base62(62), "10");
        assert_eq!(base62(1_700_000_000), "1r31eq");
    }

    /// Vectors from Django 5.2 (`signing.dumps({"room": "r3"}, key="k", salt="roomcast")`
    /// at time 1700000000) and PyJWT 2 (`jwt.encode({"room": "r3", "exp": 1700003600},
    /// "k", algorithm="HS256")`); check-tokens.sh checks fresh ones.
    #[test]
    fn tokens_match_django_and_pyjwt() {
        let django = TokenMinter::new("k", "roomcast", TokenFormat::Django).unwrap();
        assert_eq!(
            django.mint("r3", 1_700_000_000),
            "eyJyb29tIjoicjMifQ:1r31eq:0XuokqBbf8m9avM58sVCYmF-yufr06lHPWnKPHRRNdQ"
        );
        let jwt = TokenMinter::new("k", "roomcast", TokenFormat::Jwt).unwrap();
        assert_eq!(
            jwt.mint("r3", 1_700_000_000),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb29tIjoicjMiLCJleHAiOjE3MDAwMDM2MDB9.\
             NJY7CR5E78ym_NNBDRQoe7JWhmuRkxDnPUMvNLrHx90"
        );
        assert!(django.query_value("r3").contains("%3A"));
        let secret = TokenMinter::new("s3cret-value", "roomcast", TokenFormat::Jwt).unwrap();
        assert!(
            !format!("{secret:?}").contains("s3cret"),
            "the secret stays out of Debug"
        );
        assert!(TokenMinter::new("", "roomcast", TokenFormat::Django).is_err());
    }
}
