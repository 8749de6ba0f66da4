//! The backplane thread: one mio `Poll` for every shard's connection, the
//! loop's commands (through a channel and a waker), reconnects with back-off
//! and liveness pings. The only code that touches Redis sockets.
//!
//! Liveness is the age of the oldest command Redis has not answered
//! ([`Link::oldest_unanswered`]), not the time since the last byte: a Redis
//! that sends a byte now and then but answers nothing is lost after
//! `--redis-timeout` like a silent one. A link that owes nothing is pinged
//! when this node has sent nothing for half the timeout (whatever Redis
//! sent meanwhile), and the ping is then owed. Time the thread spends not reading
//! (the loop is behind) does not count against Redis.

use super::link::{Link, State};
use super::shard;
use super::transport::Transport;
use super::{Command, Event, Shared, ThreadSettings};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The token of the waker the loop rings when it hands over commands;
/// shard `i`'s socket is `Token(i)`.
const THREAD_WAKER: Token = Token(usize::MAX);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How often timers (reconnects, pings, timeouts) are looked at.
const THREAD_TICK: Duration = Duration::from_millis(50);
const READ_CHUNK: usize = 64 * 1024;

/// One shard: its protocol state ([`Link`]), its socket, and the timers
/// around them (reconnect back-off, liveness).
struct ShardConn {
    link: Link,
    stream: Option<Transport>,
    /// The TCP connect is still in progress.
    connecting: bool,
    /// Bytes of `link.out` already written.
    written: usize,
    /// Reading stopped because the loop is behind.
    read_paused: bool,
    retry_at: Instant,
    backoff: Duration,
    failures: u32,
    /// When the TCP connect started (it has `--redis-timeout` to finish).
    connect_started: Instant,
    /// Since when this thread has been reading the connection: an answer
    /// is overdue only if it was owed that long while we were reading.
    reading_since: Instant,
    last_tx: Instant,
}

/// Everything the backplane thread owns: its `Poll`, every shard, and both
/// ends of its channels to the loop.
struct BackplaneThread {
    poll: Poll,
    conns: Vec<ShardConn>,
    settings: ThreadSettings,
    commands: Receiver<Vec<Command>>,
    events: Sender<Vec<Event>>,
    loop_waker: Arc<Waker>,
    shared: Arc<Shared>,
    out: Vec<Event>,
    scratch: Vec<u8>,
    /// A room's channel is this plus its name.
    channel_prefix: String,
    name: Vec<u8>,
    rng: u64,
}

pub(super) fn spawn(
    settings: ThreadSettings,
    commands: Receiver<Vec<Command>>,
    events: Sender<Vec<Event>>,
    loop_waker: Arc<Waker>,
    shared: Arc<Shared>,
) -> io::Result<(JoinHandle<()>, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), THREAD_WAKER)?);
    let now = Instant::now();
    let conns = settings
        .urls
        .iter()
        .enumerate()
        .map(|(i, url)| ShardConn {
            link: Link::new(i, url.clone(), &settings.prefix, settings.max_message),
            stream: None,
            connecting: false,
            written: 0,
            read_paused: false,
            retry_at: now,
            backoff: FIRST_BACKOFF,
            failures: 0,
            connect_started: now,
            reading_since: now,
            last_tx: now,
        })
        .collect();
    let seed = std::process::id() as u64 ^ now.elapsed().as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15;
    let channel_prefix = shard::group_channel(&settings.prefix, "");
    let mut bp = BackplaneThread {
        poll,
        conns,
        settings,
        commands,
        events,
        loop_waker,
        shared,
        out: Vec::new(),
        scratch: vec![0; READ_CHUNK],
        channel_prefix,
        name: Vec::new(),
        rng: seed | 1,
    };
    let handle = std::thread::Builder::new()
        .name("roomcast-redis".into())
        .spawn(move || bp.run())?;
    Ok((handle, waker))
}

impl BackplaneThread {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            self.timers();
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!("backplane poll failed: {e}");
                    return;
                }
            }
            for event in events.iter() {
                if event.token() == THREAD_WAKER {
                    continue;
                }
                let i = event.token().0;
                if i >= self.conns.len() {
                    continue;
                }
                if self.conns[i].connecting && (event.is_writable() || event.is_error()) {
                    self.finish_connect(i);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(i);
                }
            }
            // Commands are read every iteration, not only on the waker's
            // event: a batch may arrive while this thread is busy.
            if !self.take_commands() {
                return;
            }
            // Reading stops while the loop is behind; pick it up again here
            // (no new edge would come for bytes already waiting).
            for i in 0..self.conns.len() {
                if self.conns[i].read_paused && !self.loop_is_behind() {
                    self.conns[i].read_paused = false;
                    self.conns[i].reading_since = Instant::now();
                    self.read(i);
                }
            }
            for i in 0..self.conns.len() {
                self.write(i);
            }
            self.hand_over();
        }
    }

    /// Applies the loop's commands; false once the loop has gone away.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(batch) => {
                    let now = Instant::now();
                    for cmd in batch {
                        self.command(cmd, now);
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn shard_of(&mut self, room: &str) -> usize {
        let n = self.conns.len();
        if n == 1 {
            return 0;
        }
        // Hashed per message: the channel name goes in a reused buffer.
        self.name.clear();
        self.name.extend_from_slice(self.channel_prefix.as_bytes());
        self.name.extend_from_slice(room.as_bytes());
        shard::shard_for(&self.name, n)
    }

    fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Subscribe(room) => {
                let i = self.shard_of(&room);
                self.conns[i].link.subscribe(room, now, &mut self.out);
            }
            Command::Unsubscribe(room) => {
                let i = self.shard_of(&room);
                self.conns[i].link.unsubscribe(&room, now);
            }
            Command::Publish {
                room,
                payload,
                cost,
            } => {
                let i = self.shard_of(&room);
                self.conns[i]
                    .link
                    .publish(room, payload, cost, now, &self.shared, &mut self.out);
            }
        }
    }

    fn loop_is_behind(&self) -> bool {
        self.shared.event_bytes.load(Ordering::Acquire) > self.settings.queue_limit
    }

    fn hand_over(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.out);
        if self.events.send(batch).is_ok() {
            let _ = self.loop_waker.wake();
        }
    }

    /// How long to sleep: short while a reconnect is due or replies are
    /// owed, otherwise just often enough to ping a quiet connection in time.
    fn next_timeout(&self) -> Duration {
        let now = Instant::now();
        let mut wait = self.settings.timeout / 4;
        for c in &self.conns {
            if c.read_paused {
                wait = wait.min(Duration::from_millis(1));
            }
            if c.stream.is_none() {
                wait = wait.min(c.retry_at.saturating_duration_since(now));
            } else if c.connecting || c.link.awaiting() {
                wait = wait.min(THREAD_TICK);
            }
        }
        wait.max(Duration::from_millis(1))
    }

    /// Reconnects due, liveness pings, and replies overdue.
    fn timers(&mut self) {
        let now = Instant::now();
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            if c.stream.is_none() {
                if now >= c.retry_at {
                    self.connect(i);
                }
                continue;
            }
            let timeout = self.settings.timeout;
            if c.connecting {
                if now.duration_since(c.connect_started) > timeout {
                    self.lost(i, &format!("no connection within {timeout:?}"));
                }
            } else if c.read_paused {
                // Not reading is our doing, not Redis's.
            } else if let Some(asked) = c.link.oldest_unanswered() {
                if now.saturating_duration_since(asked.max(c.reading_since)) > timeout {
                    self.lost(i, &format!("a command unanswered for {timeout:?}"));
                }
            } else if now.duration_since(c.last_tx) > timeout / 2 {
                // Owing nothing, Redis proves nothing by what it sends (a
                // trickle, pushes): ask it something every half timeout.
                c.link.ping(now);
            }
        }
    }

    fn resolve(&self, i: usize) -> io::Result<SocketAddr> {
        let url = self.conns[i].link.url();
        (url.host.as_str(), url.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
    }

    fn connect(&mut self, i: usize) {
        let result = self.resolve(i).and_then(|addr| {
            let tcp = TcpStream::connect(addr)?;
            let url = self.conns[i].link.url();
            let mut stream = match &self.settings.tls {
                Some(config) if url.tls => Transport::tls(tcp, config, &url.host)?,
                _ => Transport::Plain(tcp),
            };
            self.poll.registry().register(
                stream.tcp(),
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        let c = &mut self.conns[i];
        match result {
            Ok(stream) => {
                c.stream = Some(stream);
                c.connecting = true;
                c.connect_started = Instant::now();
            }
            Err(e) => self.failed(i, &e.to_string()),
        }
    }

    fn finish_connect(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let Some(stream) = c.stream.as_mut().map(Transport::tcp) else {
            return;
        };
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.lost(i, &e.to_string()),
        }
        if let Err(e) = stream.peer_addr() {
            if e.kind() == io::ErrorKind::NotConnected {
                return; // still connecting
            }
            return self.lost(i, &e.to_string());
        }
        let _ = stream.set_nodelay(true);
        let now = Instant::now();
        c.connecting = false;
        c.written = 0;
        c.reading_since = now;
        c.link.connected(now);
    }

    fn read(&mut self, i: usize) {
        loop {
            if self.loop_is_behind() {
                self.conns[i].read_paused = true;
                return;
            }
            let c = &mut self.conns[i];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            if c.connecting {
                return;
            }
            match stream.read(&mut self.scratch) {
                Ok(0) => return self.lost(i, "Redis closed the connection"),
                Ok(n) => {
                    if let Err(e) = c
                        .link
                        .received(&self.scratch[..n], &self.shared, &mut self.out)
                    {
                        return self.lost(i, &e.0);
                    }
                    if c.link.state() == State::Ready && c.failures > 0 {
                        info!(
                            "Redis shard {i} ({}) is back after {} failed attempts; rooms resubscribed",
                            c.link.url(),
                            c.failures
                        );
                        c.failures = 0;
                        c.backoff = FIRST_BACKOFF;
                    }
                    let drained = c.stream.as_ref().is_some_and(Transport::short_read_drains);
                    if drained && n < self.scratch.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.lost(i, &e.to_string()),
            }
        }
    }

    fn write(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        if c.connecting {
            return;
        }
        while c.written < c.link.out.len() {
            match stream.write(&c.link.out[c.written..]) {
                Ok(0) => return self.lost(i, "Redis stopped accepting data"),
                Ok(n) => {
                    c.written += n;
                    c.last_tx = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.lost(i, &e.to_string()),
            }
        }
        // TLS: the handshake and records still queued go out now.
        match stream.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => return self.lost(i, &e.to_string()),
        }
        c.link.out.clear();
        c.written = 0;
        // Keep the buffer unless a burst made it large.
        if c.link.out.capacity() > 1 << 20 {
            c.link.out = Vec::new();
        }
    }

    /// An established (or establishing) connection failed.
    fn lost(&mut self, i: usize, why: &str) {
        let c = &mut self.conns[i];
        if let Some(mut stream) = c.stream.take() {
            let _ = self.poll.registry().deregister(stream.tcp());
        }
        let was_up = c.link.state() == State::Ready;
        c.connecting = false;
        c.written = 0;
        c.link.disconnected(&self.shared, &mut self.out);
        if was_up {
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
            warn!(
                "lost Redis shard {i} ({}): {why}; its rooms are local-only until it is back",
                c.link.url()
            );
        }
        if was_up {
            // Already reported: the retries that follow are logged quietly.
            c.failures = 1;
            c.retry_at = Instant::now() + FIRST_BACKOFF;
            c.backoff = FIRST_BACKOFF * 2;
        } else {
            self.failed(i, why);
        }
    }

    /// Schedules the next attempt with doubling back-off and jitter.
    fn failed(&mut self, i: usize, why: &str) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let c = &mut self.conns[i];
        if c.failures == 0 {
            warn!(
                "cannot reach Redis shard {i} ({}): {why}; retrying with back-off",
                c.link.url()
            );
        } else {
            debug!("Redis shard {i}: attempt {} failed: {why}", c.failures + 1);
        }
        c.failures += 1;
        // 75% to 125% of the current back-off.
        let jitter = 0.75 + (self.rng % 1000) as f64 / 2000.0;
        c.retry_at = Instant::now() + c.backoff.mul_f64(jitter);
        c.backoff = (c.backoff * 2).min(self.settings.retry_max);
    }
}
