//! Command-line flags (clap), each also readable from `ROOMCAST_<FLAG>`.
//!
//! Sizes accept `KiB`/`MiB`/`GiB` suffixes (`K`, `M`, `G` mean the same),
//! durations `ms`/`s`/`m`/`h` (a bare number is seconds). Cross-flag rules
//! are checked in [`Config::validate`] so a bad combination fails at start.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

    /// Most bytes queued for one client that is not reading; past this the
    /// client is closed with 1008 "slow consumer". At least max-message-size
    /// plus a frame header.
    #[arg(long, env = "ROOMCAST_MAX_SEND_QUEUE", default_value = "4MiB", value_parser = parse_size)]
    pub max_send_queue: usize,

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

    /// A Redis server for the multi-node backplane, as `redis://[user:password@]host[:port][/db]`.
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

    /// A Redis connection that owes replies and has sent nothing for this long
    /// is dropped and reconnected (the shard is degraded meanwhile).
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

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "ROOMCAST_LOG_LEVEL", default_value = "info", value_parser = parse_level)]
    pub log_level: log::LevelFilter,
}

impl Config {
    /// Checks the rules that involve several flags.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_frame_size == 0 || self.max_message_size == 0 {
            return Err("--max-frame-size and --max-message-size must be at least 1 byte".into());
        }
        if self.max_send_queue < self.max_message_size + 64 {
            return Err(format!(
                "--max-send-queue ({}) must be at least --max-message-size ({}) plus 64 bytes, or no message that size could be delivered",
                self.max_send_queue, self.max_message_size
            ));
        }
        if self.max_header_size < 256 {
            return Err("--max-header-size must be at least 256 bytes".into());
        }
        if self.max_connections == Some(0) {
            return Err("--max-connections must be at least 1".into());
        }
        if !self.ping_interval.is_zero() && self.idle_timeout <= self.ping_interval {
            return Err(format!(
                "--idle-timeout ({:?}) must be longer than --ping-interval ({:?}) so a client has time to answer the ping",
                self.idle_timeout, self.ping_interval
            ));
        }
        for url in &self.redis {
            crate::redis_url::RedisUrl::parse(url).map_err(|e| format!("--redis: {e}"))?;
        }
        if !self.redis.is_empty() && self.redis_queue < self.max_message_size + 256 {
            return Err(format!(
                "--redis-queue ({}) must be at least --max-message-size ({}) plus 256 bytes, or no message that size could cross the backplane",
                self.redis_queue, self.max_message_size
            ));
        }
        if self.redis_prefix.is_empty() {
            return Err("--redis-prefix must not be empty".into());
        }
        if self.redis_timeout.is_zero() || self.redis_retry_max < Duration::from_millis(100) {
            return Err(
                "--redis-timeout must be above zero and --redis-retry-max at least 100ms".into(),
            );
        }
        if self.publish_token.as_deref() == Some("") {
            return Err(
                "--publish-token must not be empty (leave it unset to disable the publish API)"
                    .into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(
                "--tls-cert and --tls-key go together: give both, or neither for plain HTTP".into(),
            );
        }
        if self.handshake_timeout.is_zero() || self.close_timeout.is_zero() {
            return Err("--handshake-timeout and --close-timeout must be above zero".into());
        }
        Ok(())
    }

    /// The connection cap after applying the default. An explicit value is
    /// honoured even past the open-file limit (accepts then fail with EMFILE,
    /// which the loop survives); the default stays within it.
    pub fn connection_limit(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| 100_000.min(crate::limits::connection_capacity()))
    }

    /// The JSON decoding thread count after applying the default.
    ///
    /// SPEC section 5 asks for "cores minus one, at least one". Measured
    /// here (README, "Workers"), a worker sharing the loop's only core made
    /// the loop slower: `saturate` fell from 400k to 97k deliveries/s, as
    /// every batch handed off waited for the scheduler to run the worker.
    /// So "at least one" applies only when there is a core to spare; the
    /// core count is the affinity mask's (`taskset` is honoured).
    pub fn worker_threads(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(0, |n| n.get().saturating_sub(1))
        })
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
    fn defaults_are_valid_and_bad_combinations_are_not() {
        let c = Config::parse_from(["roomcast"]);
        c.validate().unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8000");
        let c = Config::parse_from(["roomcast", "--max-message-size", "8MiB"]);
        assert!(c.validate().unwrap_err().contains("--max-send-queue"));
        let c = Config::parse_from([
            "roomcast",
            "--ping-interval",
            "60s",
            "--idle-timeout",
            "30s",
        ]);
        assert!(c.validate().is_err());
        assert!(Config::try_parse_from(["roomcast", "--max-frame-size", "lots"]).is_err());
    }

    #[test]
    fn tls_flags_come_in_pairs() {
        let c = Config::parse_from(["roomcast"]);
        assert_eq!((c.tls_cert.as_ref(), c.tls_key.as_ref()), (None, None));
        let c = Config::parse_from(["roomcast", "--tls-cert", "c.pem", "--tls-key", "k.pem"]);
        c.validate().unwrap();
        assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
        let e = Config::try_parse_from(["roomcast", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(e.to_string().contains("--tls-key"), "{e}");
        let e = Config::try_parse_from(["roomcast", "--tls-key", "k.pem"]).unwrap_err();
        assert!(e.to_string().contains("--tls-cert"), "{e}");
        // Built in code (or half from the environment): validate catches it.
        let mut c = Config::parse_from(["roomcast"]);
        c.tls_cert = Some("c.pem".into());
        assert!(c.validate().unwrap_err().contains("--tls-key"));
    }
}
