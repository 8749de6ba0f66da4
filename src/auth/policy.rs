//! Which check decides a chat join, sans-IO: the one place that combines
//! `--auth-secret` and `--auth-url` (SPEC section 9).
//!
//! - Neither flag: rooms are open ([`JoinCheck::Open`]).
//! - A `?token=` and `--auth-secret`: the token alone decides, at once.
//! - No token and `--auth-url`: the back end decides
//!   ([`JoinCheck::AskBackend`]); a token without `--auth-secret` is ignored.
//! - No token and no `--auth-url`: refused with 401.

use super::{Grant, Refusal, TokenVerifier, Verdict};

/// How joins are checked, built once from the flags.
#[derive(Clone, Debug)]
pub struct JoinPolicy {
    tokens: Option<TokenVerifier>,
    backend: bool,
}

/// What the upgrade path does next.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinCheck {
    /// No authorization configured: join with [`Grant::open`].
    Open,
    /// Decided now.
    Decided(Verdict),
    /// Ask the back end (`AuthClient::ask`) and hold the upgrade until its
    /// verdict.
    AskBackend,
}

impl Grant {
    /// The grant of an open room: anonymous, may write.
    pub fn open() -> Grant {
        Grant {
            user: None,
            write: true,
        }
    }
}

impl JoinPolicy {
    /// `tokens`: the verifier when `--auth-secret` is set; `backend`: whether
    /// `--auth-url` is.
    pub fn new(tokens: Option<TokenVerifier>, backend: bool) -> JoinPolicy {
        JoinPolicy { tokens, backend }
    }

    /// Whether joins are checked at all.
    pub fn enabled(&self) -> bool {
        self.tokens.is_some() || self.backend
    }

    /// Decides, or says who decides, a join to `room` whose upgrade URL had
    /// `query` (the part after `?`, without `#...`), at `now` in Unix seconds.
    pub fn check(&self, query: Option<&str>, room: &str, now: u64) -> JoinCheck {
        if !self.enabled() {
            return JoinCheck::Open;
        }
        if let Some(verifier) = &self.tokens {
            match super::query_param(query.unwrap_or(""), "token") {
                Err(malformed) => return JoinCheck::Decided(Err(malformed)),
                Ok(Some(token)) if !token.is_empty() => {
                    return JoinCheck::Decided(verifier.verify(Some(&token), room, now))
                }
                Ok(_) => {}
            }
        }
        if self.backend {
            JoinCheck::AskBackend
        } else {
            JoinCheck::Decided(Err(Refusal::NoToken))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::mint_django;
    use std::time::Duration;

    const KEY: &[u8] = b"policy-key-0123456789";
    const NOW: u64 = 1_750_000_000;

    fn tokens() -> Option<TokenVerifier> {
        Some(TokenVerifier::new(
            KEY,
            &[] as &[&str],
            "roomcast",
            Duration::from_secs(60),
        ))
    }

    #[test]
    fn who_decides() {
        let token = mint_django(
            br#"{"room":"lobby","user":"ann"}"#,
            KEY,
            "roomcast",
            NOW as i64,
            false,
        );
        let query = format!("v=1&token={}", token.replace(':', "%3A"));
        let ann = JoinCheck::Decided(Ok(Grant {
            user: Some("\"ann\"".into()),
            write: true,
        }));
        let open = JoinPolicy::new(None, false);
        assert_eq!(open.check(Some(&query), "lobby", NOW), JoinCheck::Open);
        let signed = JoinPolicy::new(tokens(), false);
        assert_eq!(signed.check(Some(&query), "lobby", NOW), ann);
        assert_eq!(
            signed.check(None, "lobby", NOW),
            JoinCheck::Decided(Err(Refusal::NoToken))
        );
        assert_eq!(
            signed.check(Some("token="), "lobby", NOW),
            JoinCheck::Decided(Err(Refusal::NoToken))
        );
        assert!(matches!(
            signed.check(Some("token=%zz"), "lobby", NOW),
            JoinCheck::Decided(Err(Refusal::Malformed(_)))
        ));
        let both = JoinPolicy::new(tokens(), true);
        assert_eq!(both.check(Some(&query), "lobby", NOW), ann);
        assert_eq!(
            both.check(Some(&query), "hall", NOW),
            JoinCheck::Decided(Err(Refusal::OtherRoom))
        );
        assert_eq!(both.check(Some("v=1"), "lobby", NOW), JoinCheck::AskBackend);
        let asked = JoinPolicy::new(None, true);
        assert_eq!(
            asked.check(Some(&query), "lobby", NOW),
            JoinCheck::AskBackend
        );
    }
}
