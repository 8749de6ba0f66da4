//! Command-line interface (clap derive): the run mode, `idle`, `soak` and `compare`.
//!
//! The dependency runs one way: this module turns flags into the plans' inputs
//! ([`LoadInputs`], [`ConnectOptions`]); the scenario table and the plans know nothing
//! of clap.

use crate::attack::plan::FloodMode;
use crate::connect_options::ConnectOptions;
use crate::deflate::DeflateOffer;
use crate::scenario::{LoadInputs, Plan, ScenarioName};
use crate::tls::TlsTrust;
use crate::token::{TokenFormat, TokenMinter};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    version,
    about = "Load harness for WebSocket chat relays speaking the Django Channels ChatConsumer protocol",
    long_about = "Load harness for WebSocket chat relays speaking the Django Channels ChatConsumer protocol.\n\n\
        Connects every client first, then sends timestamped messages and measures each delivery's \
        latency. Exits 1 if anything was lost, failed to connect or came back wrong; 2 on bad usage.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open N connections in R rooms, send nothing, hold them (answering pings) and report
    /// the server's memory per connection (needs --server-pid)
    Idle(RunArgs),
    /// Run one scenario against several servers (loadtest/baselines/<name>/run.sh PORT) in
    /// turn, pinned to the same cores, and print/chart them side by side
    Compare(CompareArgs),
    /// Soak under churn: N stable clients stay and send for the whole run while churners
    /// join and leave all the time; checks that nothing reached the stable clients lost and
    /// that the server's RSS and open descriptors come back to their level at the start
    Soak(SoakArgs),
    /// Print one join token as the clients mint them (for checking the minting against
    /// Django and PyJWT: loadtest/check-tokens.sh)
    MintToken(MintTokenArgs),
}

#[derive(Args, Debug, Clone)]
pub struct MintTokenArgs {
    /// The room the token admits to, as in the URL path (clients use r<N>)
    #[arg(long, default_value = "r0")]
    pub room: String,
    /// The key (the relay's --auth-secret)
    #[arg(long, value_name = "KEY")]
    pub token_secret: String,
    #[arg(long, value_parser = token_format_parser(), default_value = "django")]
    pub token_format: TokenFormat,
    #[arg(long, default_value = "roomcast")]
    pub token_salt: String,
    /// Minting time, Unix seconds [default: now]
    #[arg(long)]
    pub at: Option<u64>,
}

impl MintTokenArgs {
    /// The token, not percent-encoded.
    pub fn mint(&self) -> Result<String, String> {
        let m = TokenMinter::new(&self.token_secret, &self.token_salt, self.token_format)?;
        let now = self.at.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        Ok(m.mint(&self.room, now))
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Chat URL prefix, e.g. ws://127.0.0.1:8000/ws/chat/ (client i joins room
    /// r<i % rooms>/). Several nodes sharing rooms (a Redis backplane): give several URLs,
    /// as more arguments or comma-separated; member m of each room (client i is member
    /// i / rooms) connects to URL m % N, and the accounting spans every node
    #[arg(required = true, value_name = "URL", num_args = 1..)]
    pub url: Vec<String>,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// PID of the server under test, for its CPU time and RSS; repeat (or comma-separate)
    /// for several nodes, or servers made of several processes: CPU and RSS are summed, and
    /// also reported per PID
    #[arg(long = "server-pid", value_name = "PID", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Idle mode, as the `idle` subcommand
    #[arg(long)]
    pub idle: bool,
    /// Pin the harness to this CPU core
    #[arg(long, value_name = "CORE")]
    pub cpu: Option<usize>,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl RunArgs {
    /// The plan these flags ask for; `idle` forces idle mode (the `idle` subcommand).
    pub fn plan(&self, idle: bool, progress: bool) -> Result<Plan, String> {
        Plan::resolve(
            &self.url,
            &self.load.inputs(),
            &self.connect.options()?,
            idle || self.idle,
            &self.server_pid,
            progress,
        )
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Print exactly one JSON line on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Named scenario supplying the defaults of the flags below
    #[arg(long, value_parser = scenario_parser())]
    pub scenario: Option<ScenarioName>,
    /// Client connections [default: the scenario's, else 100]
    #[arg(long)]
    pub clients: Option<usize>,
    /// Rooms; client i joins room i % rooms [default: the scenario's, else 10]
    #[arg(long)]
    pub rooms: Option<usize>,
    /// Senders in each room (the first members to join) [default: every member]
    #[arg(long)]
    pub senders_per_room: Option<usize>,
    /// Messages per second per sender, fractions allowed; saturate: the starting rate
    /// [default: the scenario's, else 1]
    #[arg(long)]
    pub rate: Option<f64>,
    /// Bytes of each sent text frame (the JSON text), at least the stamp's ~45 bytes [default: 64]
    #[arg(long)]
    pub payload: Option<usize>,
    /// Measured window, seconds [default: 10; saturate: 5 per step]
    #[arg(long)]
    pub duration: Option<f64>,
    /// Sending before the window opens, not counted, seconds [default: 2; saturate: 1]
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Longest wait for outstanding deliveries after the window, seconds (ends early once
    /// everything arrived) [default: 3; saturate: 2]
    #[arg(long)]
    pub drain: Option<f64>,
    /// Idle mode: how long to hold the connections, seconds [default: 10]
    #[arg(long)]
    pub hold: Option<f64>,
    /// Idle mode: pause after connecting before reading the server's RSS, seconds
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Saturate: a step fails when its p99 latency exceeds this, milliseconds
    #[arg(long, default_value_t = 100.0)]
    pub p99_limit_ms: f64,
    /// Saturate: stop doubling at this rate per sender
    #[arg(long, default_value_t = 1024.0)]
    pub max_rate: f64,
    /// Saturate: bisection steps between the last good and the first bad rate
    #[arg(long, default_value_t = 4)]
    pub refine_steps: u32,
    /// Burst: chat messages each burst sender (the first --senders-per-room members)
    /// writes, as fast as its socket takes them
    #[arg(long, default_value_t = 2000)]
    pub burst_messages: u32,
    /// Flood and flooder: what the flooder writes as fast as it can [default: flood ping,
    /// flooder chat]
    #[arg(long, value_parser = flood_mode_parser())]
    pub flood_mode: Option<FloodMode>,
    /// Flood in echo mode: the path the flooder connects to
    #[arg(long, default_value = "/ws/echo/")]
    pub echo_path: String,
}

impl LoadArgs {
    /// The run's inputs as the scenario resolution takes them.
    pub fn inputs(&self) -> LoadInputs {
        LoadInputs {
            scenario: self.scenario,
            clients: self.clients,
            rooms: self.rooms,
            senders_per_room: self.senders_per_room,
            rate: self.rate,
            payload: self.payload,
            duration: self.duration,
            warmup: self.warmup,
            drain: self.drain,
            hold: self.hold,
            settle: self.settle,
            p99_limit_ms: self.p99_limit_ms,
            max_rate: self.max_rate,
            refine_steps: self.refine_steps,
            burst_messages: self.burst_messages,
            flood_mode: self.flood_mode,
            echo_path: self.echo_path.clone(),
        }
    }
}

/// `--scenario`'s choices, from the scenario table (with each one's summary in `--help`).
fn scenario_parser() -> impl TypedValueParser<Value = ScenarioName> {
    let names = ScenarioName::ALL.map(|s| PossibleValue::new(s.name()).help(s.summary()));
    PossibleValuesParser::new(names).map(|name| {
        name.parse::<ScenarioName>()
            .expect("the parser only passes the table's names")
    })
}

/// `--flood-mode`'s choices, from the attack plan's table.
fn flood_mode_parser() -> impl TypedValueParser<Value = FloodMode> {
    let names = FloodMode::ALL.map(|m| PossibleValue::new(m.name()).help(m.summary()));
    PossibleValuesParser::new(names).map(|name| {
        name.parse::<FloodMode>()
            .expect("the parser only passes the table's names")
    })
}

/// `--token-format`'s choices.
fn token_format_parser() -> impl TypedValueParser<Value = TokenFormat> {
    PossibleValuesParser::new(TokenFormat::ALL.map(TokenFormat::name)).map(|name| {
        name.parse::<TokenFormat>()
            .expect("the parser only passes the table's names")
    })
}

/// How clients connect, for every mode that connects any (load, idle, compare, soak).
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Connection attempts in flight at once (soak: while the stable clients connect)
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Time allowed for TCP connect plus handshake, seconds
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Source addresses 127.0.0.1..127.0.0.N to spread client sockets over (loopback targets only)
    #[arg(long, default_value_t = 8)]
    pub source_addrs: usize,
    /// Origin header [default: http://<host:port of the URL>; "" for none]
    #[arg(long)]
    pub origin: Option<String>,
    /// Offer permessage-deflate (as a browser: "permessage-deflate;
    /// client_max_window_bits"), inflate compressed deliveries, and report wire bytes per
    /// delivery and the compression ratio
    #[arg(long)]
    pub deflate: bool,
    /// Send chat messages compressed where deflate was negotiated (implies --deflate; a
    /// fresh compressor per message: no context takeover)
    #[arg(long)]
    pub deflate_send: bool,
    /// wss://: accept any server certificate (its handshake signatures are still checked)
    #[arg(long)]
    pub insecure: bool,
    /// wss://: trust the CA certificates in this PEM file (e.g. from loadtest/gen-cert.sh)
    #[arg(long, value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// Join tokens: every client appends ?token=... minted for its room with this key
    /// (the relay's --auth-secret)
    #[arg(long, value_name = "KEY")]
    pub token_secret: Option<String>,
    /// Token format: django (django.core.signing.dumps) or jwt (HS256 with exp)
    #[arg(long, value_parser = token_format_parser(), default_value = "django")]
    pub token_format: TokenFormat,
    /// Django tokens: the signing salt (the relay's --auth-salt)
    #[arg(long, default_value = "roomcast")]
    pub token_salt: String,
}

impl ConnectArgs {
    pub fn options(&self) -> Result<ConnectOptions, String> {
        let token = match &self.token_secret {
            Some(key) => Some(TokenMinter::new(key, &self.token_salt, self.token_format)?),
            None => None,
        };
        Ok(ConnectOptions {
            concurrency: self.connect_concurrency,
            timeout_s: self.connect_timeout,
            source_addrs: self.source_addrs,
            origin: self.origin.clone(),
            deflate: DeflateOffer {
                offer: self.deflate || self.deflate_send,
                send_compressed: self.deflate_send,
            },
            tls: TlsTrust {
                insecure: self.insecure,
                ca: self.ca.clone(),
            },
            token,
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Chat URL prefix, e.g. ws://127.0.0.1:8000/ws/chat/ (stable client i joins room
    /// r<i % rooms>/, churners a random room each time). Several nodes sharing rooms: give
    /// several URLs, as more arguments or comma-separated; stable member m of each room
    /// connects to URL m % N, each churn connection to a random one
    #[arg(required = true, value_name = "URL", num_args = 1..)]
    pub url: Vec<String>,
    /// Stable clients: connected first, they stay for the whole run, send at --rate and are
    /// the measured receivers
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Rooms; stable client i joins room i % rooms
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Messages per second per stable client, fractions allowed
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Bytes of each sent text frame (the JSON text), at least the stamp's ~45 bytes
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Churner slots: each cycles connect to a random room, send a few messages, stay a
    /// random short time, leave (clean close, FIN, RST or half a frame then FIN, in turn)
    #[arg(long, default_value_t = 50)]
    pub churners: usize,
    /// Churn connections started per second, over all churners (one every 1/C s, skipped
    /// and counted as `starved` when every churner is busy)
    #[arg(long, default_value_t = 20.0)]
    pub churn_rate: f64,
    /// Shortest stay of a churn connection, seconds
    #[arg(long, default_value_t = 0.2)]
    pub churn_stay_min: f64,
    /// Longest stay of a churn connection, seconds
    #[arg(long, default_value_t = 3.0)]
    pub churn_stay_max: f64,
    /// Most messages per churn connection: 1 to N (uniformly), at random times of its stay
    /// (0: churners only join and leave)
    #[arg(long, default_value_t = 3)]
    pub churn_messages: u32,
    /// Length of the run (stable sending and churn), seconds
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Longest wait for outstanding deliveries once the churners are gone; also how long a
    /// churn connection's messages may still arrive after it ended, seconds
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Quiet time after the drain before the end readings (RSS, descriptors, /metrics),
    /// seconds
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// RSS growth allowed from start to end, percent of the start; the larger of this
    /// and --rss-tolerance-mib applies
    #[arg(long, default_value_t = 25.0)]
    pub rss_tolerance_pct: f64,
    /// RSS growth allowed from start to end, MiB (roomcast retains ~0.2 MiB under churn:
    /// timer-wheel slot capacity and allocator fragmentation; see loadtest/README.md)
    #[arg(long, default_value_t = 1.0)]
    pub rss_tolerance_mib: f64,
    /// Open descriptors the server may hold at the end above the start
    #[arg(long, default_value_t = 0)]
    pub fd_tolerance: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// PID of the server under test, for its RSS, open descriptors and CPU time; repeat
    /// (or comma-separate) for several nodes or servers made of several processes
    /// (figures are summed)
    #[arg(long = "server-pid", value_name = "PID", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Pin the harness to this CPU core
    #[arg(long, value_name = "CORE")]
    pub cpu: Option<usize>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Servers to compare, in order: NAME (loadtest/baselines/<NAME>/run.sh), LABEL=NAME
    /// (that baseline, shown as LABEL) or LABEL=PATH (a prebuilt roomcast binary, run by
    /// the roomcast-bin baseline), e.g. before=/work/bin/roomcast-before,after=target/release/roomcast,bun
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "roomcast,channels,channels-redis,bun,uws,ws"
    )]
    pub servers: Vec<String>,
    /// Port the servers listen on (one at a time), on 127.0.0.1
    #[arg(long, default_value_t = 18080)]
    pub port: u16,
    /// Folder holding <name>/run.sh [default: loadtest/baselines, found from the working
    /// directory or the source tree]
    #[arg(long)]
    pub baselines: Option<PathBuf>,
    /// Longest wait for a server to accept connections (the first start may install
    /// dependencies), seconds
    #[arg(long, default_value_t = 300.0)]
    pub ready_timeout: f64,
    /// Grace after SIGTERM before SIGKILL, seconds
    #[arg(long, default_value_t = 15.0)]
    pub stop_timeout: f64,
    /// CPU list the servers are pinned to (taskset -c)
    #[arg(long, default_value = "0")]
    pub server_cpus: String,
    /// CPU core the harness pins itself to
    #[arg(long, default_value_t = 1)]
    pub harness_cpu: usize,
    /// Where to write the comparison as JSON [default: reports/compare-<scenario>.json]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to draw the SVG bar chart [default: the --out path with .svg]
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Serve wss:// with this certificate chain and key (PEM; loadtest/gen-cert.sh makes
    /// them): every server gets TLS_CERT and TLS_KEY and is driven at
    /// wss://127.0.0.1:PORT/ws/chat/ (trust it with --ca or --insecure)
    #[arg(long, value_name = "CERT,KEY", value_delimiter = ',')]
    pub tls: Option<Vec<PathBuf>>,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}
