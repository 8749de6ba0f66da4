//! Who may join a room, who may write in it, and how much (SPEC section 9).
//!
//! Every piece here is either sans-IO (no sockets, threads or clock reads:
//! time is passed in) or runs off the event loop:
//! - [`policy`]: which check decides a join (open rooms, the token, or the
//!   back end);
//! - [`token`]: signed join tokens, Django's `signing.dumps` format and
//!   HS256 JWTs, checked against `--auth-secret` and its fallbacks;
//! - [`bucket`]: the per-connection message rate limit (8 bytes a
//!   connection);
//! - [`per_ip`]: connections per client address;
//! - [`backend`]: `--auth-url`, the back end asked on the auth thread
//!   (`backend_thread.rs`) over a keep-alive pool, with the loop-side
//!   decision cache (`cache.rs`) and the sans-IO HTTP exchange
//!   (`backend_http.rs`).
//!
//! Invariants:
//! - A join is decided by one [`Verdict`]: a [`Grant`] (identity, may
//!   write) or a [`Refusal`]. Each refusal maps, here and nowhere else, to
//!   one HTTP status ([`Refusal::status`]), one metric label out of the fixed
//!   set [`REFUSAL_REASONS`] ([`Refusal::label`]) and plain words (its
//!   `Display`), for `roomcast_auth_rejections_total{reason}`.
//! - No input (a token, a back end's answer) panics, allocates past a
//!   fixed bound, or makes the event loop wait.
//!
//! This folder imports only `crate::config` (flag values, in
//! `settings.rs`, which parses them once into [`AuthSettings`]) and external
//! crates; nothing in it knows the event loop. Only `backend_thread.rs`
//! touches sockets, and only `backend.rs` (the loop's handle) reads the
//! clock, to stamp each ask's deadline.

pub mod backend;
mod backend_http;
mod backend_thread;
pub mod bucket;
mod cache;
pub mod per_ip;
pub mod policy;
mod settings;
pub mod token;

pub use backend::AuthClient;
pub use backend_http::{
    parse_response, verdict_of, write_request, AuthUrl, Parsed, Response, ResponseError,
    ResponseLimits,
};
pub use backend_thread::{AuthStats, BackendSettings};
pub use bucket::{Admission, Bucket, Pace, RateLimit};
pub use cache::DecisionCache;
pub use per_ip::PerIpLimit;
pub use policy::{JoinCheck, JoinPolicy};
pub use settings::{AuthSettings, MIN_AUTH_SECRET};
pub use token::{percent_decode, query_param, TokenVerifier};

use std::fmt;

/// A member admitted to a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The identity as raw JSON text (a string, number or boolean, at most
    /// [`MAX_IDENTITY`] bytes), exactly as the token or the back end wrote
    /// it, for the relay to copy into `{"message": ..., "user": <this>}`.
    /// `None`: anonymous (absent or `null`).
    pub user: Option<Box<str>>,
    /// False: read-only; the member's messages get an error frame and are
    /// not broadcast.
    pub write: bool,
}

/// What the join check decided.
pub type Verdict = Result<Grant, Refusal>;

/// Why a join was refused. One variant per reason label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Authorization is on and the upgrade URL has no `?token=`.
    NoToken,
    /// Not a token of either format, or its payload is not what roomcast
    /// reads (the words say which part).
    Malformed(&'static str),
    /// No key (the secret or a fallback) made this signature.
    BadSignature,
    /// Older than `--auth-max-age` (Django format) or past its `exp`.
    Expired,
    /// Minted in the future (beyond [`token::CLOCK_SKEW`]), or before its
    /// `nbf`/`iat`.
    NotYetValid,
    /// A valid token for other rooms.
    OtherRoom,
    /// The back end answered 401.
    BackendUnauthorized,
    /// The back end answered 403.
    BackendForbidden,
    /// The back end could not be asked, did not answer in time, or answered
    /// something else.
    BackendUnavailable(Unavailable),
}

/// Why the back end's answer could not be used (all refuse with 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// No answer within `--auth-timeout` (queueing for a pooled connection
    /// included).
    Timeout,
    /// The TCP connection failed or broke before the answer was complete.
    Connection,
    /// A status other than 200, 401 or 403.
    Status(u16),
    /// Not HTTP/1.x, or a response head or chunk that does not parse.
    Malformed,
    /// A head or a 200's body over the bounds.
    Oversized,
    /// A 200 whose body is not `{"user": ..., "write": ...}`.
    BadBody,
    /// The client's `Cookie` or `Origin` cannot be forwarded as one header
    /// line (a control character in it).
    BadHeader,
    /// The auth thread is gone (the relay is shutting down).
    Stopped,
}

/// The metric labels of `roomcast_auth_rejections_total{reason}`, indexed by
/// [`Refusal::index`].
pub const REFUSAL_REASONS: [&str; 9] = [
    "no_token",
    "malformed",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "other_room",
    "backend_unauthorized",
    "backend_forbidden",
    "backend_unavailable",
];

/// The error text for a message from a read-only member (the loop wraps it
/// as `{"error": ...}`; the member still receives the room).
pub const READ_ONLY: &str =
    "read-only: your join does not allow writing in this room; the message was not sent";

/// The longest identity (raw JSON text) a grant may carry: it is copied
/// into every frame the member's messages produce.
pub const MAX_IDENTITY: usize = 1_024;

impl Refusal {
    /// The HTTP status the upgrade is answered with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::NoToken | Refusal::BackendUnauthorized => 401,
            Refusal::Malformed(_)
            | Refusal::BadSignature
            | Refusal::Expired
            | Refusal::NotYetValid
            | Refusal::OtherRoom
            | Refusal::BackendForbidden => 403,
            Refusal::BackendUnavailable(_) => 503,
        }
    }

    /// The position of [`Refusal::label`] in [`REFUSAL_REASONS`], for an
    /// array of counters.
    pub fn index(self) -> usize {
        match self {
            Refusal::NoToken => 0,
            Refusal::Malformed(_) => 1,
            Refusal::BadSignature => 2,
            Refusal::Expired => 3,
            Refusal::NotYetValid => 4,
            Refusal::OtherRoom => 5,
            Refusal::BackendUnauthorized => 6,
            Refusal::BackendForbidden => 7,
            Refusal::BackendUnavailable(_) => 8,
        }
    }

    /// The `reason` label of `roomcast_auth_rejections_total`.
    pub fn label(self) -> &'static str {
        REFUSAL_REASONS[self.index()]
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoToken => {
                f.write_str("this room needs a join token: connect with ?token=<token> on the URL")
            }
            Refusal::Malformed(what) => write!(f, "the join token is malformed: {what}"),
            Refusal::BadSignature => f.write_str(
                "the join token's signature does not match (wrong key, or the token was altered)",
            ),
            Refusal::Expired => f.write_str("the join token has expired"),
            Refusal::NotYetValid => f.write_str(
                "the join token is not valid yet (minted in the future, or before its nbf/iat)",
            ),
            Refusal::OtherRoom => f.write_str("the join token is for another room"),
            Refusal::BackendUnauthorized => {
                f.write_str("not logged in (the back end answered 401)")
            }
            Refusal::BackendForbidden => {
                f.write_str("not allowed in this room (the back end answered 403)")
            }
            Refusal::BackendUnavailable(why) => write!(f, "cannot check access now: {why}"),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Timeout => f.write_str("the back end did not answer in time"),
            Unavailable::Connection => f.write_str("the connection to the back end failed"),
            Unavailable::Status(s) => write!(f, "the back end answered {s}"),
            Unavailable::Malformed => f.write_str("the back end's answer is not valid HTTP/1.1"),
            Unavailable::Oversized => f.write_str("the back end's answer is too large"),
            Unavailable::BadBody => f.write_str(
                "the back end's 200 is not the JSON object {\"user\": ..., \"write\": ...}",
            ),
            Unavailable::BadHeader => {
                f.write_str("the request's Cookie or Origin cannot be forwarded")
            }
            Unavailable::Stopped => f.write_str("the relay is shutting down"),
        }
    }
}

/// Checks that `raw` (a JSON value's text, as serde_json's `RawValue` gives
/// it) is an identity a grant may carry: `Ok(None)` for `null`, the text for
/// a string, number or boolean.
fn identity(raw: &str) -> Result<Option<Box<str>>, &'static str> {
    match raw.as_bytes().first() {
        Some(b'n') => Ok(None),
        Some(b'{' | b'[') | None => Err("\"user\" must be a string, number or boolean"),
        Some(_) if raw.len() > MAX_IDENTITY => Err("\"user\" is over 1,024 bytes of JSON"),
        Some(_) => Ok(Some(raw.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_one_label_and_status() {
        let all = [
            Refusal::NoToken,
            Refusal::Malformed("x"),
            Refusal::BadSignature,
            Refusal::Expired,
            Refusal::NotYetValid,
            Refusal::OtherRoom,
            Refusal::BackendUnauthorized,
            Refusal::BackendForbidden,
            Refusal::BackendUnavailable(Unavailable::Timeout),
        ];
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(r.label(), REFUSAL_REASONS[i]);
            assert!(!r.to_string().is_empty());
        }
        let statuses: Vec<u16> = all.iter().map(|r| r.status()).collect();
        assert_eq!(statuses, [401, 403, 403, 403, 403, 403, 401, 403, 503]);
    }

    #[test]
    fn per_connection_state_is_small() {
        // What a session keeps: its grant and its rate bucket.
        assert_eq!(std::mem::size_of::<Grant>(), 24);
        assert_eq!(std::mem::size_of::<Bucket>(), 8);
    }

    #[test]
    fn identities_are_scalars() {
        assert_eq!(identity("null"), Ok(None));
        assert_eq!(identity("\"ann\""), Ok(Some("\"ann\"".into())));
        assert_eq!(identity("42"), Ok(Some("42".into())));
        assert_eq!(identity("true"), Ok(Some("true".into())));
        assert!(identity("{\"a\":1}").is_err());
        assert!(identity("[1]").is_err());
        assert!(identity(&format!("\"{}\"", "a".repeat(1100))).is_err());
    }
}
