//! Command-line flags (clap), each also readable from `ROOMCAST_<FLAG>`.
//!
//! Sizes accept `KiB`/`MiB`/`GiB` suffixes (`K`, `M`, `G` mean the same),
//! durations `ms`/`s`/`m`/`h` (a bare number is seconds). The flags are
//! parsed once more, into the [`crate::settings::Settings`] the loop uses,
//! where the rules that involve several flags are checked, so a bad
//! combination fails at start.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A feature flag: `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// `--io-uring`: how writes to clients reach the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IoUringMode {
    Auto,
    On,
    Off,
}

/// roomcast: a single-binary WebSocket chat-room relay, compatible with
/// Django Channels' ChatConsumer (`ws/chat/<room>/`, `{"message": ...}`).
#[derive(Parser, Debug, Clone)]
#[command(name = "roomcast", version, about, long_about = None)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "ROOMCAST_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    /// JSON decoding threads beside the event loop. Default: the cores this
    /// process may run on, minus one (so 0 when pinned to one core, where a
    /// worker could only take turns with the loop). 0 decodes on the loop.
    #[arg(long, env = "ROOMCAST_WORKERS")]
    pub workers: Option<usize>,

    /// Pending connections the kernel queues before the relay accepts them
    /// (the kernel caps it at net.core.somaxconn). Too small a queue drops
    /// SYNs during a connection storm, and those clients wait a second for
    /// their retransmit.
    #[arg(long, env = "ROOMCAST_LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,

    /// With workers, a batch of fewer chat messages than this (and none at the
    /// workers) is decoded on the loop: handing it off would cost more than
    /// decoding it. 0 always hands off.
    #[arg(long, env = "ROOMCAST_INLINE_DECODE_BELOW", default_value_t = 32)]
    pub inline_decode_below: usize,

    /// How writes to clients are issued. `auto`: each loop iteration's
    /// single-frame writes go to the kernel together through one io_uring
    /// submission when the kernel allows it (Linux 5.6+, not blocked by
    /// seccomp or kernel.io_uring_disabled), else send/writev. `on`: the same,
    /// but fail at start without io_uring. `off`: always send/writev.
    #[arg(long, env = "ROOMCAST_IO_URING", value_enum, default_value_t = IoUringMode::Auto)]
    pub io_uring: IoUringMode,

    /// Most simultaneous client connections; one more gets 503 and is closed.
    /// Default: 100,000, or what the open-file limit allows if that is less.
    #[arg(long, env = "ROOMCAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Largest WebSocket message (bytes, after reassembly); larger ones close
    /// the connection with 1009.
    #[arg(long, env = "ROOMCAST_MAX_MESSAGE_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_message_size: usize,

    /// Largest single WebSocket frame (bytes); larger ones close with 1009.
    #[arg(long, env = "ROOMCAST_MAX_FRAME_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_frame_size: usize,

    /// What the frames queued for one client may cost (their bytes plus 64
    /// per frame). Past half of it the client is behind: its room's senders
    /// wait while it drains, and it is closed with 1008 "slow consumer" if
    /// it stays behind past --slow-consumer-grace, or passes this limit while
    /// not reading. A client whose own echoes or pongs pass it is not read
    /// until they drain. At least max-message-size plus 64; at most 1GiB.
    #[arg(long, env = "ROOMCAST_MAX_SEND_QUEUE", default_value = "4MiB", value_parser = parse_size)]
    pub max_send_queue: usize,

    /// How long a client may stay behind (its queue over half of
    /// --max-send-queue) before it is closed with 1008 "slow consumer".
    /// While behind and still reading, it holds its room's senders back.
    #[arg(long, env = "ROOMCAST_SLOW_CONSUMER_GRACE", default_value = "2s", value_parser = parse_duration)]
    pub slow_consumer_grace: Duration,

    /// Largest HTTP request head (bytes); larger ones get 431.
    #[arg(long, env = "ROOMCAST_MAX_HEADER_SIZE", default_value = "8KiB", value_parser = parse_size)]
    pub max_header_size: usize,

    /// Time a client has to send its complete HTTP request head (with TLS,
    /// the TLS handshake included).
    #[arg(long, env = "ROOMCAST_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// A connection silent this long is sent a ping. 0 disables pings and
    /// the idle timeout.
    #[arg(long, env = "ROOMCAST_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A connection silent this long (no pong, no data) is sent a close frame
    /// and dropped. Must exceed ping-interval.
    #[arg(long, env = "ROOMCAST_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long the relay waits for a client to answer its close frame
    /// before dropping the connection.
    #[arg(long, env = "ROOMCAST_CLOSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// Allowed browser origins, comma-separated: full origins
    /// (https://app.example.com), hosts (app.example.com) or wildcards
    /// (*.example.com). Others get 403. Default: any origin.
    #[arg(long, env = "ROOMCAST_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// On SIGINT/SIGTERM, how long to keep flushing queued messages after
    /// sending every client 1001 before exiting.
    #[arg(long, env = "ROOMCAST_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// A Redis server for the multi-node backplane, as
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://...` for
    /// Redis over TLS (the certificate must name the URL's host).
    /// Repeat it (or comma-separate in the environment) for several shards;
    /// rooms are spread over them by channels_redis's consistent hash, so the
    /// list must be the same, in the same order, on every node and in Django's
    /// `CHANNEL_LAYERS` hosts. Without it roomcast is a single node.
    #[arg(
        long = "redis",
        env = "ROOMCAST_REDIS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub redis: Vec<String>,

    /// PEM file of the certificate authorities trusted for `rediss://`
    /// shards (a managed Redis's CA bundle, or your own CA). Default: the
    /// Mozilla root list built into roomcast (no system store is read).
    /// Given, it replaces that list.
    #[arg(long, env = "ROOMCAST_REDIS_TLS_CA", value_name = "PATH")]
    pub redis_tls_ca: Option<std::path::PathBuf>,

    /// The channels_redis prefix (`RedisPubSubChannelLayer(prefix=...)`); a room's
    /// Redis channel is `<prefix>__group__chat_<room>`.
    #[arg(long, env = "ROOMCAST_REDIS_PREFIX", default_value = "asgi")]
    pub redis_prefix: String,

    /// Most bytes of chat messages waiting to be written to Redis. When a slow
    /// Redis lets it fill, a new message is refused: its sender gets an error
    /// frame (a publish request gets 503), counted in
    /// roomcast_backplane_rejected_total.
    #[arg(long, env = "ROOMCAST_REDIS_QUEUE", default_value = "16MiB", value_parser = parse_size)]
    pub redis_queue: usize,

    /// A Redis connection whose oldest unanswered command is this old is
    /// dropped and reconnected (the shard is degraded meanwhile). Bytes that
    /// answer nothing do not count; a quiet connection is pinged at half
    /// this, so a silent Redis is found too.
    #[arg(long, env = "ROOMCAST_REDIS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Longest wait between reconnect attempts to a lost Redis (the back-off
    /// starts at 100ms and doubles, with jitter).
    #[arg(long, env = "ROOMCAST_REDIS_RETRY_MAX", default_value = "5s", value_parser = parse_duration)]
    pub redis_retry_max: Duration,

    /// Bearer token for the back-end publish API, `POST /publish/<room>/`.
    /// Without it the API is disabled (404).
    #[arg(long, env = "ROOMCAST_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,

    /// Turns on signed join tokens: the key that signs the
    /// `?token=` every chat join must then carry, made by Django's
    /// `signing.dumps(payload, key=KEY, salt=--auth-salt)` or as an HS256 JWT
    /// with `exp`. Django's SECRET_KEY will do; at least 16 bytes. Without it
    /// (and without --auth-url) rooms are open.
    #[arg(long, env = "ROOMCAST_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Older keys that still verify join tokens of both formats,
    /// comma-separated, like Django's SECRET_KEY_FALLBACKS (for rotating
    /// --auth-secret). Needs --auth-secret.
    #[arg(
        long,
        env = "ROOMCAST_AUTH_SECRET_FALLBACKS",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "KEYS"
    )]
    pub auth_secret_fallbacks: Vec<String>,

    /// The salt Django-format join tokens are signed with
    /// (`signing.dumps(..., salt=THIS)`).
    #[arg(long, env = "ROOMCAST_AUTH_SALT", default_value = "roomcast")]
    pub auth_salt: String,

    /// How long a Django-format join token stays valid after it was signed
    /// (JWTs carry their own `exp`).
    #[arg(long, env = "ROOMCAST_AUTH_MAX_AGE", default_value = "1h", value_parser = parse_duration)]
    pub auth_max_age: Duration,

    /// Ask this back end about every chat join: `GET URL?room=<room>` with the
    /// client's Cookie and Origin headers. 200 with `{"user": ..., "write":
    /// ...}` admits; 401 or 403 refuses with that status; anything else, or
    /// no answer within --auth-timeout, refuses with 503. http:// only (keep
    /// the back end on a private address). With --auth-secret as well, a join
    /// carrying `?token=` is decided by the token alone, others by the back
    /// end. The host name is resolved once, at start.
    #[arg(long, env = "ROOMCAST_AUTH_URL", value_name = "URL")]
    pub auth_url: Option<String>,

    /// How long a join waits for the --auth-url back end's answer (waiting
    /// for a free connection included) before it is refused with 503.
    /// Shorter than --handshake-timeout.
    #[arg(long, env = "ROOMCAST_AUTH_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub auth_timeout: Duration,

    /// How long the back end's 200, 401 or 403 is reused for joins with the
    /// same room, Cookie and Origin (at most 16,384 decisions are kept). 0,
    /// the default, asks for every join, so a logout takes effect at once.
    #[arg(long, env = "ROOMCAST_AUTH_CACHE_TTL", default_value = "0s", value_parser = parse_duration)]
    pub auth_cache_ttl: Duration,

    /// Most keep-alive connections to the --auth-url back end; joins beyond
    /// them wait for one (within --auth-timeout), so a back end that hangs
    /// holds at most this many.
    #[arg(long, env = "ROOMCAST_AUTH_CONNECTIONS", default_value_t = 8)]
    pub auth_connections: usize,

    /// Chat messages one connection may send per second, on average (a token
    /// bucket of --rate-burst messages; fractions allowed, 0.5 is one every
    /// 2 s; at most 1,000). A message over it gets {"error": "rate limited ..."} and is not
    /// broadcast; a client refused more than 10 messages plus one per second
    /// is closed with 1008. 0, the default: no limit.
    #[arg(long, env = "ROOMCAST_MAX_MESSAGES_PER_SECOND", default_value_t = 0.0)]
    pub max_messages_per_second: f64,

    /// Messages a connection may send back to back before
    /// --max-messages-per-second applies (the bucket's size). Default: one
    /// second's worth, the rate rounded up (at least 1).
    #[arg(long, env = "ROOMCAST_RATE_BURST")]
    pub rate_burst: Option<u32>,

    /// Pings and pongs one connection may send per second, in bursts of as
    /// many (at least 20); one more closes it with 1008 ("ping flood"). A
    /// browser sends none and client libraries one every few seconds; a
    /// client sending millions would take the relay's core from everyone
    /// else. 0: no limit.
    #[arg(long, env = "ROOMCAST_MAX_PINGS_PER_SECOND", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_pings_per_second: u32,

    /// Most open connections from one client IP address (IPv6: one /64); one
    /// more gets 429. Counted by the TCP peer, so behind a reverse proxy this
    /// counts the proxy. 0, the default: no limit.
    #[arg(long, env = "ROOMCAST_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u32,
    /// TLS certificate chain (PEM: the server's certificate first, then any
    /// intermediates). With --tls-key, the listener speaks TLS only (TLS 1.2
    /// and 1.3, ALPN http/1.1): every route is served as https:// and wss://.
    /// SIGHUP re-reads both files; if they fail to load, the old certificate
    /// stays in use and the error is logged. Default: no TLS.
    #[arg(
        long,
        env = "ROOMCAST_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key for --tls-cert (PEM: PKCS#8 "PRIVATE KEY", PKCS#1
    /// "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY"; not encrypted). ECDSA
    /// P-256/P-384, Ed25519 or RSA of 2048 bits or more.
    #[arg(
        long,
        env = "ROOMCAST_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// permessage-deflate (RFC 7692), which every browser offers: `on`
    /// accepts an offer with server_no_context_takeover and
    /// client_no_context_takeover, so no connection holds compression state;
    /// `off` declines every offer.
    #[arg(long, env = "ROOMCAST_DEFLATE", value_enum, default_value_t = Switch::On)]
    pub deflate: Switch,

    /// With permessage-deflate, messages shorter than this go out
    /// uncompressed (bytes); a broadcast at least this long is compressed
    /// once for every member that negotiated it (and sent plain if deflate
    /// would not shrink it). 0 compresses every message, shrinking or not.
    #[arg(long, env = "ROOMCAST_DEFLATE_MIN_SIZE", default_value = "256", value_parser = parse_size)]
    pub deflate_min_size: usize,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "ROOMCAST_LOG_LEVEL", default_value = "info", value_parser = parse_level)]
    pub log_level: log::LevelFilter,
}

impl Config {
    /// `--rate-burst` after applying the default: one second's worth of
    /// `--max-messages-per-second`, at least 1.
    pub fn rate_burst(&self) -> u32 {
        self.rate_burst
            .unwrap_or_else(|| self.max_messages_per_second.ceil().clamp(1.0, 1_000_000.0) as u32)
    }

    /// A configuration for tests and embedding: defaults, bound to `bind`.
    pub fn for_address(bind: SocketAddr) -> Config {
        let mut c = Config::parse_from(["roomcast"]);
        c.bind = bind;
        c
    }
}

/// Parses a log level name.
pub fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse().map_err(|_| {
        format!("unknown log level '{s}' (use off, error, warn, info, debug or trace)")
    })
}

/// Parses `1048576`, `64KiB`, `1MiB`, `16M`, `2G`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 65536, 64KiB, 16MiB)"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

/// Parses `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (examples: 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration '{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("65536"), Ok(65_536));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("16MiB"), Ok(16_777_216));
        assert_eq!(parse_size("1_000"), Ok(1_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn bad_values_fail_to_parse() {
        assert_eq!(
            Config::parse_from(["roomcast"]).bind.to_string(),
            "127.0.0.1:8000"
        );
        assert!(Config::try_parse_from(["roomcast", "--max-frame-size", "lots"]).is_err());
    }

    #[test]
    fn tls_flags_come_in_pairs() {
        let c = Config::parse_from(["roomcast"]);
        assert_eq!((c.tls_cert.as_ref(), c.tls_key.as_ref()), (None, None));
        let c = Config::parse_from(["roomcast", "--tls-cert", "c.pem", "--tls-key", "k.pem"]);
        assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
        let e = Config::try_parse_from(["roomcast", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(e.to_string().contains("--tls-key"), "{e}");
        let e = Config::try_parse_from(["roomcast", "--tls-key", "k.pem"]).unwrap_err();
        assert!(e.to_string().contains("--tls-cert"), "{e}");
    }
}
