//! Section 9's flags, parsed once into what the loop uses, with every rule
//! that involves them checked here, at start (`Settings::from_config` calls
//! [`AuthSettings::from_config`]). Nothing downstream re-checks a flag.

use super::{BackendSettings, JoinPolicy, RateLimit, TokenVerifier};
use crate::config::Config;
use std::time::Duration;

/// Who may join and write, and how much.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Which check decides a join (`--auth-secret`, `--auth-url`).
    pub policy: JoinPolicy,
    /// `--auth-url` and its companions, when set: start an `AuthClient`.
    pub backend: Option<BackendSettings>,
    /// `--max-messages-per-second` with `--rate-burst`, when set.
    pub rate: Option<RateLimit>,
    /// `--max-connections-per-ip`, when set: a `PerIpLimit` of this many.
    pub per_ip: Option<u32>,
}

/// The shortest `--auth-secret` (and fallback) accepted, in bytes.
pub const MIN_AUTH_SECRET: usize = 16;

impl AuthSettings {
    /// Parses the flags, or says which rule they break.
    pub fn from_config(c: &Config) -> Result<AuthSettings, String> {
        let tokens = match &c.auth_secret {
            Some(secret) => {
                if secret.len() < MIN_AUTH_SECRET {
                    return Err(format!(
                        "--auth-secret must be at least {MIN_AUTH_SECRET} bytes (Django's SECRET_KEY will do, or python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
                    ));
                }
                if c.auth_secret_fallbacks
                    .iter()
                    .any(|k| k.len() < MIN_AUTH_SECRET)
                {
                    return Err(format!(
                        "every --auth-secret-fallbacks key must be at least {MIN_AUTH_SECRET} bytes (no empty entries between commas)"
                    ));
                }
                if c.auth_max_age < Duration::from_secs(1) {
                    return Err("--auth-max-age must be at least 1s".into());
                }
                Some(TokenVerifier::new(
                    secret.as_bytes(),
                    &c.auth_secret_fallbacks,
                    &c.auth_salt,
                    c.auth_max_age,
                ))
            }
            None if !c.auth_secret_fallbacks.is_empty() => {
                return Err("--auth-secret-fallbacks needs --auth-secret".into())
            }
            None => None,
        };
        let backend = match &c.auth_url {
            Some(url) => {
                if c.auth_timeout < Duration::from_millis(10)
                    || c.auth_timeout > Duration::from_secs(60)
                {
                    return Err("--auth-timeout must be between 10ms and 60s".into());
                }
                if c.auth_timeout >= c.handshake_timeout {
                    return Err(format!(
                        "--auth-timeout ({:?}) must be shorter than --handshake-timeout ({:?}): the join waits for the back end within the handshake",
                        c.auth_timeout, c.handshake_timeout
                    ));
                }
                if c.auth_cache_ttl > Duration::from_secs(3600) {
                    return Err("--auth-cache-ttl must be at most 1h".into());
                }
                if !(1..=1024).contains(&c.auth_connections) {
                    return Err("--auth-connections must be between 1 and 1024".into());
                }
                let mut backend = BackendSettings::new(url)?;
                backend.timeout = c.auth_timeout;
                backend.cache_ttl = c.auth_cache_ttl;
                backend.connections = c.auth_connections;
                Some(backend)
            }
            None => None,
        };
        Ok(AuthSettings {
            policy: JoinPolicy::new(tokens, backend.is_some()),
            backend,
            rate: rate_limit(c)?,
            per_ip: (c.max_connections_per_ip > 0).then_some(c.max_connections_per_ip),
        })
    }
}

fn rate_limit(c: &Config) -> Result<Option<RateLimit>, String> {
    let rate = c.max_messages_per_second;
    if !(0.0..=1_000.0).contains(&rate) {
        return Err(
            "--max-messages-per-second must be a number from 0 (no limit) to 1,000 (the bucket counts whole milliseconds)".into(),
        );
    }
    if rate == 0.0 {
        return match c.rate_burst {
            Some(_) => Err("--rate-burst needs --max-messages-per-second".into()),
            None => Ok(None),
        };
    }
    let burst = c.rate_burst();
    if burst == 0 || burst > 1_000_000 {
        return Err("--rate-burst must be between 1 and 1,000,000 messages".into());
    }
    RateLimit::new(rate, burst).map(Some).ok_or_else(|| {
        format!(
            "--rate-burst ({burst}) at --max-messages-per-second ({rate}) takes too long to refill: keep burst / rate under 24 days"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<AuthSettings, String> {
        let mut argv = vec!["roomcast"];
        argv.extend_from_slice(args);
        AuthSettings::from_config(&Config::parse_from(argv))
    }

    #[test]
    fn defaults_are_open() {
        let c = Config::parse_from(["roomcast"]);
        assert_eq!(c.auth_salt, "roomcast");
        assert_eq!(c.auth_max_age, Duration::from_secs(3600));
        assert_eq!(c.auth_timeout, Duration::from_secs(2));
        assert!(c.auth_cache_ttl.is_zero());
        assert_eq!(c.auth_connections, 8);
        let s = parse(&[]).unwrap();
        assert!(!s.policy.enabled() && s.backend.is_none() && s.rate.is_none());
        assert_eq!(s.per_ip, None);
    }

    #[test]
    fn flags_and_their_rules() {
        let s = parse(&[
            "--auth-secret",
            "0123456789abcdef",
            "--auth-secret-fallbacks",
            "old-key-0123456789,older-key-0123456789",
            "--auth-url",
            "http://127.0.0.1:8001/roomcast/auth/",
            "--auth-connections",
            "3",
            "--max-messages-per-second",
            "2.5",
            "--max-connections-per-ip",
            "20",
        ])
        .unwrap();
        assert!(s.policy.enabled());
        let backend = s.backend.unwrap();
        assert_eq!(backend.connections, 3);
        assert_eq!(
            backend.url.to_string(),
            "http://127.0.0.1:8001/roomcast/auth/"
        );
        let rate = s.rate.unwrap();
        assert_eq!((rate.interval_ms(), rate.burst()), (400, 3));
        assert_eq!(s.per_ip, Some(20));
        let bad: &[(&[&str], &str)] = &[
            (&["--auth-secret", "short"], "at least 16"),
            (
                &["--auth-secret-fallbacks", "0123456789abcdef"],
                "needs --auth-secret",
            ),
            (
                &[
                    "--auth-secret",
                    "0123456789abcdef",
                    "--auth-secret-fallbacks",
                    "0123456789abcdef,",
                ],
                "no empty entries",
            ),
            (&["--auth-url", "https://example.com/auth"], "http://"),
            (&["--auth-url", "http://"], "no valid host"),
            (
                &["--auth-url", "http://h/", "--auth-timeout", "0s"],
                "--auth-timeout",
            ),
            (
                &["--auth-url", "http://h/", "--auth-connections", "0"],
                "--auth-connections",
            ),
            (
                &["--auth-url", "http://h/", "--auth-timeout", "10s"],
                "shorter than --handshake-timeout",
            ),
            (&["--rate-burst", "5"], "needs --max-messages-per-second"),
            (&["--max-messages-per-second", "5000"], "1,000"),
            (&["--max-messages-per-second", "nan"], "1,000"),
            (
                &[
                    "--max-messages-per-second",
                    "0.0001",
                    "--rate-burst",
                    "100000",
                ],
                "24 days",
            ),
        ];
        for (args, want) in bad {
            let err = parse(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
        assert!(Config::try_parse_from(["roomcast", "--max-messages-per-second", "fast"]).is_err());
    }
}
