//! The settings the loop uses: the command line parsed once more, into
//! typed values in the units the loop works in (ticks, bytes, a parsed
//! origin policy), with every rule that involves several flags checked here,
//! once, at start. Nothing downstream re-checks a flag.

use crate::auth::AuthSettings;
use crate::config::{Config, IoUringMode, Switch};
use crate::session::{DeflatePolicy, Policy, Ticks};
use crate::tls::CertFiles;
use crate::wire::http::OriginPolicy;
use crate::wire::message::Limits;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The certificate files and the configuration loaded from them (again on
/// SIGHUP).
#[derive(Clone)]
pub struct Tls {
    pub files: CertFiles,
    pub config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls({})", self.files.cert_path().display())
    }
}

/// Connections allowed by default when the open-file limit allows more.
const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

#[derive(Clone, Debug)]
pub struct Settings {
    pub bind: SocketAddr,
    pub listen_backlog: u32,
    /// JSON decoding threads; 0 decodes on the loop.
    pub workers: usize,
    /// With workers, batches smaller than this are decoded on the loop.
    pub inline_decode_below: usize,
    pub io_uring: IoUringMode,
    /// `--max-connections` as given; `None` is "what the open-file limit
    /// allows, up to 100,000", resolved by [`Settings::connection_limit`].
    pub max_connections: Option<usize>,
    /// What each connection is allowed.
    pub policy: Policy,
    /// `--shutdown-grace`.
    pub grace: Ticks,
    /// `--tls-cert` and `--tls-key`, loaded: with them the listener speaks
    /// TLS only.
    pub tls: Option<Tls>,
    /// Who may join and write, and how much (SPEC section 9).
    pub auth: AuthSettings,
    /// The flags, for the Redis backplane, which reads its own from them.
    pub flags: Config,
}

impl Settings {
    /// Parses the flags into settings, or says which rule they break.
    pub fn from_config(c: Config) -> Result<Settings, String> {
        if c.max_frame_size == 0 || c.max_message_size == 0 {
            return Err("--max-frame-size and --max-message-size must be at least 1 byte".into());
        }
        if c.max_send_queue < c.max_message_size + 64 {
            return Err(format!(
                "--max-send-queue ({}) must be at least --max-message-size ({}) plus 64 bytes, or no message that size could be delivered",
                c.max_send_queue, c.max_message_size
            ));
        }
        if c.max_send_queue > 1 << 30 || c.max_message_size > 256 << 20 {
            return Err(
                "--max-send-queue must be at most 1GiB and --max-message-size at most 256MiB"
                    .into(),
            );
        }
        if c.max_header_size < 256 {
            return Err("--max-header-size must be at least 256 bytes".into());
        }
        if c.max_connections == Some(0) {
            return Err("--max-connections must be at least 1".into());
        }
        if !c.ping_interval.is_zero() && c.idle_timeout <= c.ping_interval {
            return Err(format!(
                "--idle-timeout ({:?}) must be longer than --ping-interval ({:?}) so a client has time to answer the ping",
                c.idle_timeout, c.ping_interval
            ));
        }
        let mut tls = false;
        for url in &c.redis {
            let url = crate::backplane::redis_url::RedisUrl::parse(url)
                .map_err(|e| format!("--redis: {e}"))?;
            tls |= url.tls;
        }
        if let Some(ca) = &c.redis_tls_ca {
            if !tls {
                return Err(format!(
                    "--redis-tls-ca {} is given but no --redis URL is rediss:// (TLS)",
                    ca.display()
                ));
            }
            crate::backplane::tls_client_config(Some(ca))?;
        }
        if !c.redis.is_empty() && c.redis_queue < c.max_message_size + 256 {
            return Err(format!(
                "--redis-queue ({}) must be at least --max-message-size ({}) plus 256 bytes, or no message that size could cross the backplane",
                c.redis_queue, c.max_message_size
            ));
        }
        if c.redis_prefix.is_empty() {
            return Err("--redis-prefix must not be empty".into());
        }
        if c.redis_timeout.is_zero() || c.redis_retry_max < Duration::from_millis(100) {
            return Err(
                "--redis-timeout must be above zero and --redis-retry-max at least 100ms".into(),
            );
        }
        if c.publish_token.as_deref() == Some("") {
            return Err(
                "--publish-token must not be empty (leave it unset to disable the publish API)"
                    .into(),
            );
        }
        if c.handshake_timeout.is_zero() || c.close_timeout.is_zero() {
            return Err("--handshake-timeout and --close-timeout must be above zero".into());
        }
        let auth = AuthSettings::from_config(&c)?;
        // Loaded now, so a bad certificate fails at start in plain words
        // rather than at the first handshake.
        let tls =
            match (&c.tls_cert, &c.tls_key) {
                (None, None) => None,
                (Some(cert), Some(key)) => {
                    let files = CertFiles::new(cert, key).map_err(|e| e.to_string())?;
                    let config = files.load().map_err(|e| e.to_string())?;
                    Some(Tls { files, config })
                }
                _ => return Err(
                    "--tls-cert and --tls-key go together: give both, or neither for plain HTTP"
                        .into(),
                ),
            };
        Ok(Settings {
            bind: c.bind,
            listen_backlog: c.listen_backlog,
            workers: worker_threads(c.workers),
            inline_decode_below: c.inline_decode_below,
            io_uring: c.io_uring,
            max_connections: c.max_connections,
            policy: Policy {
                limits: Limits {
                    max_frame_size: c.max_frame_size as u64,
                    max_message_size: c.max_message_size as u64,
                },
                max_send_queue: c.max_send_queue,
                slow_grace: Ticks::from_duration(c.slow_consumer_grace),
                max_header_size: c.max_header_size,
                handshake: Ticks::from_duration(c.handshake_timeout),
                ping: Ticks::from_duration(c.ping_interval),
                idle: Ticks::from_duration(c.idle_timeout),
                close: Ticks::from_duration(c.close_timeout),
                origins: OriginPolicy::new(&c.allowed_origins),
                publish_token: c.publish_token.clone(),
                rate: auth.rate,
                pings: ping_limit(c.max_pings_per_second),
                deflate: (c.deflate == Switch::On).then_some(DeflatePolicy {
                    min_size: c.deflate_min_size,
                }),
            },
            grace: Ticks::from_duration(c.shutdown_grace),
            auth,
            tls,
            flags: c,
        })
    }

    /// The connection cap, and how many over-cap connections may wait for
    /// their 503 at once, given `capacity`, the descriptors the open-file
    /// limit leaves for clients. The 503s get a share of the descriptors
    /// (a 64th, up to 1,024) and the default cap the rest, so answering the
    /// crowd over the cap can never use the descriptors the cap promised.
    /// An explicit cap is honoured even past the limit (accepts then fail
    /// with EMFILE, which the loop survives).
    pub fn connection_limits(&self, capacity: usize) -> (usize, usize) {
        let slots = (capacity / 64).clamp(1, 1024);
        let cap = self
            .max_connections
            .unwrap_or_else(|| DEFAULT_MAX_CONNECTIONS.min(capacity.saturating_sub(slots).max(1)));
        (cap, slots)
    }
}

/// The JSON decoding thread count after applying the default.
///
/// SPEC section 5 asks for "cores minus one, at least one". Measured here
/// (README, "Workers"), a worker sharing the loop's only core made the loop
/// slower: `saturate` fell from 400k to 97k deliveries/s, as every batch
/// handed off waited for the scheduler to run the worker. So "at least one"
/// applies only when there is a core to spare; the core count is the
/// affinity mask's (`taskset` is honoured).
fn worker_threads(flag: Option<usize>) -> usize {
    flag.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(0, |n| n.get().saturating_sub(1))
    })
}

/// `--max-pings-per-second` as a bucket: `n` a second, in bursts of `n` but
/// at least 20 (Autobahn's case 2.10 sends 10 at once); `None` for 0.
fn ping_limit(n: u32) -> Option<crate::auth::RateLimit> {
    (n > 0)
        .then(|| crate::auth::RateLimit::new(f64::from(n), n.max(20)))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["roomcast"];
        argv.extend_from_slice(args);
        Settings::from_config(Config::parse_from(argv))
    }

    #[test]
    fn defaults_are_valid_and_bad_combinations_are_not() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.policy.handshake, Ticks(100));
        assert_eq!(s.connection_limits(5_000), (4_922, 78));
        assert_eq!(s.connection_limits(19_936), (19_625, 311));
        assert_eq!(s.connection_limits(10_000_000), (100_000, 1024));
        assert!(parse(&["--max-message-size", "8MiB"])
            .unwrap_err()
            .contains("--max-send-queue"));
        assert!(parse(&["--ping-interval", "60s", "--idle-timeout", "30s"]).is_err());
        assert!(parse(&["--max-connections", "0"]).is_err());
        assert!(parse(&["--auth-secret", "short"])
            .unwrap_err()
            .contains("--auth-secret"));
        assert_eq!(
            parse(&["--max-connections", "7"])
                .unwrap()
                .connection_limits(5),
            (7, 1)
        );
    }
}
