//! The auth thread: one mio `Poll` over a pool of at most
//! `--auth-connections` keep-alive HTTP/1.1 connections to the `--auth-url`
//! back end, the loop's asks (a channel and a waker) and their deadlines.
//! The only code that touches the back end's sockets; the protocol is
//! `backend_http.rs`'s.
//!
//! A connection carries one request at a time (no pipelining). Its token is
//! its slot plus a generation, so an event for a closed connection never
//! reaches the one that took its slot.

use super::backend_http::{
    parse_response, verdict_of, write_request, AuthUrl, Parsed, ResponseLimits, LIMITS,
};
use super::cache::CacheKey;
use super::{Refusal, Unavailable, Verdict};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---- the thread's interface: its settings, what it is asked, what it answers

/// What the auth thread needs, parsed from the flags once.
#[derive(Clone, Debug)]
pub struct BackendSettings {
    pub url: AuthUrl,
    /// `--auth-timeout`.
    pub timeout: Duration,
    /// `--auth-cache-ttl`; zero: no cache.
    pub cache_ttl: Duration,
    /// `--auth-connections`: the pool's size.
    pub connections: usize,
    /// Bounds on each response.
    pub limits: ResponseLimits,
}

/// Counters shared with the auth thread, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Requests sent to the back end (a retry counts again).
    pub requests: AtomicU64,
    /// Joins answered from the cache.
    pub cache_hits: AtomicU64,
    /// TCP connections opened to the back end.
    pub connections_opened: AtomicU64,
    /// Joins refused because the back end did not answer in time.
    pub timeouts: AtomicU64,
}

/// One join to decide, as handed to the thread.
#[derive(Debug)]
pub(super) struct Ask {
    pub id: u64,
    pub room: Box<str>,
    pub cookie: Option<Box<str>>,
    pub origin: Option<Box<str>>,
    /// The cache key, when the cache is on.
    pub key: Option<CacheKey>,
    pub deadline: Instant,
}

/// One decided join, as handed back.
#[derive(Debug)]
pub(super) struct Answer {
    pub id: u64,
    pub verdict: Verdict,
    pub key: Option<CacheKey>,
}

impl BackendSettings {
    /// Settings for `url` (an `http://` URL) with the other flags' defaults.
    pub fn new(url: &str) -> Result<BackendSettings, String> {
        Ok(BackendSettings {
            url: AuthUrl::parse(url)?,
            timeout: Duration::from_secs(2),
            cache_ttl: Duration::ZERO,
            connections: 8,
            limits: LIMITS,
        })
    }
}

// ---- the thread

const WAKER: Token = Token(usize::MAX);
/// Bits of a token that hold the slot (`--auth-connections` is at most
/// 1,024).
const SLOT_BITS: u32 = 11;
const READ_CHUNK: usize = 4_096;
/// A pooled connection idle this long is closed (back ends drop idle
/// connections too: gunicorn after 2 s, nginx after 75 s).
const IDLE_KEEP: Duration = Duration::from_secs(30);
/// How long the thread sleeps with nothing due.
const QUIET: Duration = Duration::from_secs(1);

/// A request waiting for, or on, a connection.
struct Job {
    id: u64,
    key: Option<CacheKey>,
    deadline: Instant,
    request: Vec<u8>,
    /// Already sent once on a keep-alive connection that closed unanswered.
    retried: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// TCP connect in progress (with a job).
    Connecting,
    /// Writing the job's request.
    Sending,
    /// Reading the job's answer.
    Receiving,
    /// In the pool, no job.
    Idle,
}

struct Conn {
    stream: TcpStream,
    generation: usize,
    stage: Stage,
    job: Option<Job>,
    written: usize,
    inbuf: Vec<u8>,
    /// Has answered a request before: a close before any byte of the next
    /// answer may be the back end dropping an idle connection.
    reused: bool,
    idle_since: Instant,
}

struct AuthThread {
    poll: Poll,
    settings: BackendSettings,
    /// The back end's address, resolved at start.
    addr: SocketAddr,
    slots: Vec<Option<Conn>>,
    generation: usize,
    queue: VecDeque<Job>,
    asks: Receiver<Vec<Ask>>,
    answers: Sender<Vec<Answer>>,
    loop_waker: Arc<Waker>,
    stats: Arc<AuthStats>,
    out: Vec<Answer>,
    scratch: Vec<u8>,
}

pub(super) fn spawn(
    settings: BackendSettings,
    addr: SocketAddr,
    asks: Receiver<Vec<Ask>>,
    answers: Sender<Vec<Answer>>,
    loop_waker: Arc<Waker>,
    stats: Arc<AuthStats>,
) -> io::Result<(JoinHandle<()>, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let connections = settings.connections.clamp(1, 1 << (SLOT_BITS - 1));
    let mut t = AuthThread {
        poll,
        settings,
        addr,
        slots: (0..connections).map(|_| None).collect(),
        generation: 0,
        queue: VecDeque::new(),
        asks,
        answers,
        loop_waker,
        stats,
        out: Vec::new(),
        scratch: vec![0; READ_CHUNK],
    };
    let handle = std::thread::Builder::new()
        .name("roomcast-auth".into())
        .spawn(move || t.run())?;
    Ok((handle, waker))
}

impl AuthThread {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = self.next_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!("auth thread poll failed: {e}; joins that need the back end are refused from now on");
                    return self.stop();
                }
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                let slot = event.token().0 & ((1 << SLOT_BITS) - 1);
                let generation = event.token().0 >> SLOT_BITS;
                let live = self
                    .slots
                    .get(slot)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| c.generation == generation);
                if live {
                    self.advance(slot);
                }
            }
            // Asks are read every iteration, not only on the waker's event:
            // a batch may arrive while this thread is busy.
            if !self.take_asks() {
                return;
            }
            let now = Instant::now();
            self.expire(now);
            self.dispatch(now);
            self.hand_over();
        }
    }

    /// Queues the loop's asks; false once the loop has gone away.
    fn take_asks(&mut self) -> bool {
        loop {
            match self.asks.try_recv() {
                Ok(batch) => {
                    for ask in batch {
                        let mut request = Vec::with_capacity(256);
                        match write_request(
                            &mut request,
                            &self.settings.url,
                            &ask.room,
                            ask.cookie.as_deref(),
                            ask.origin.as_deref(),
                        ) {
                            Ok(()) => self.queue.push_back(Job {
                                id: ask.id,
                                key: ask.key,
                                deadline: ask.deadline,
                                request,
                                retried: false,
                            }),
                            Err(why) => self.out.push(Answer {
                                id: ask.id,
                                verdict: Err(Refusal::BackendUnavailable(why)),
                                key: None,
                            }),
                        }
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Answers what is overdue, closes connections kept idle too long.
    fn expire(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.queue.len() {
            if self.queue[i].deadline <= now {
                if let Some(job) = self.queue.remove(i) {
                    self.timed_out(job);
                }
            } else {
                i += 1;
            }
        }
        for slot in 0..self.slots.len() {
            let Some(c) = self.slots[slot].as_mut() else {
                continue;
            };
            if c.job.as_ref().is_some_and(|j| j.deadline <= now) {
                if let Some(job) = c.job.take() {
                    self.timed_out(job);
                }
                self.close(slot, "no answer in time");
            } else if c.stage == Stage::Idle && now.duration_since(c.idle_since) >= IDLE_KEEP {
                self.close(slot, "idle");
            }
        }
    }

    fn timed_out(&mut self, job: Job) {
        self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        self.answer(job, Err(Refusal::BackendUnavailable(Unavailable::Timeout)));
    }

    /// Puts queued jobs on idle connections, opening new ones while the pool
    /// has room.
    fn dispatch(&mut self, now: Instant) {
        while !self.queue.is_empty() {
            let idle = self
                .slots
                .iter()
                .position(|c| c.as_ref().is_some_and(|c| c.stage == Stage::Idle));
            let free = self.slots.iter().position(Option::is_none);
            let Some(job) = (if idle.is_some() || free.is_some() {
                self.queue.pop_front()
            } else {
                None
            }) else {
                return;
            };
            if let Some(slot) = idle {
                if let Some(c) = self.slots[slot].as_mut() {
                    c.job = Some(job);
                    c.stage = Stage::Sending;
                    c.written = 0;
                    c.inbuf.clear();
                }
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.advance(slot);
            } else if let Some(slot) = free {
                self.connect(slot, job, now);
            }
        }
    }

    fn connect(&mut self, slot: usize, job: Job, now: Instant) {
        self.generation = self.generation.wrapping_add(1) & (usize::MAX >> SLOT_BITS);
        let generation = self.generation;
        let token = Token(generation << SLOT_BITS | slot);
        let opened = TcpStream::connect(self.addr).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                self.stats
                    .connections_opened
                    .fetch_add(1, Ordering::Relaxed);
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.slots[slot] = Some(Conn {
                    stream,
                    generation,
                    stage: Stage::Connecting,
                    job: Some(job),
                    written: 0,
                    inbuf: Vec::new(),
                    reused: false,
                    idle_since: now,
                });
            }
            Err(e) => {
                debug!(
                    "cannot connect to the auth back end {}: {e}",
                    self.settings.url
                );
                self.answer(
                    job,
                    Err(Refusal::BackendUnavailable(Unavailable::Connection)),
                );
            }
        }
    }

    /// Moves a connection on as far as its socket allows.
    fn advance(&mut self, slot: usize) {
        let Some(c) = self.slots[slot].as_mut() else {
            return;
        };
        if c.stage == Stage::Connecting {
            match c.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.failed(slot, &e.to_string()),
            }
            match c.stream.peer_addr() {
                Ok(_) => {
                    let _ = c.stream.set_nodelay(true);
                    c.stage = Stage::Sending;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.failed(slot, &e.to_string()),
            }
        }
        if c.stage == Stage::Sending {
            let Some(job) = c.job.as_ref() else {
                return self.close(slot, "no job");
            };
            while c.written < job.request.len() {
                match c.stream.write(&job.request[c.written..]) {
                    Ok(0) => return self.failed(slot, "the back end stopped reading"),
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return self.failed(slot, &e.to_string()),
                }
            }
            c.stage = Stage::Receiving;
        }
        self.read(slot);
    }

    /// Reads until the socket would block, then acts on a complete answer.
    fn read(&mut self, slot: usize) {
        let max_buffered = {
            let l = &self.settings.limits;
            l.head + 2 * l.body + READ_CHUNK
        };
        let Some(c) = self.slots[slot].as_mut() else {
            return;
        };
        let mut eof = false;
        loop {
            match c.stream.read(&mut self.scratch) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    c.inbuf.extend_from_slice(&self.scratch[..n]);
                    if c.inbuf.len() > max_buffered {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.failed(slot, &e.to_string()),
            }
        }
        if c.stage == Stage::Idle {
            // Nothing is owed on an idle connection: bytes or a close mean
            // it is done.
            if eof || !c.inbuf.is_empty() {
                self.close(slot, "closed by the back end while idle");
            }
            return;
        }
        if c.stage != Stage::Receiving {
            if eof {
                self.failed(slot, "closed by the back end");
            }
            return;
        }
        if eof && c.inbuf.is_empty() {
            return self.failed(slot, "closed by the back end before answering");
        }
        match parse_response(&c.inbuf, eof, &self.settings.limits) {
            Ok(Parsed::Partial) if c.inbuf.len() > max_buffered => {
                self.refuse_and_close(slot, Unavailable::Oversized, "answer too large")
            }
            Ok(Parsed::Partial) => {}
            Ok(Parsed::Complete(response)) => {
                let verdict = verdict_of(&response);
                let reusable = response.keep_alive && !eof && response.len == c.inbuf.len();
                if let Some(job) = c.job.take() {
                    self.answer(job, verdict);
                }
                if reusable {
                    if let Some(c) = self.slots[slot].as_mut() {
                        c.stage = Stage::Idle;
                        c.inbuf.clear();
                        c.written = 0;
                        c.reused = true;
                        c.idle_since = Instant::now();
                    }
                } else {
                    self.close(slot, "not reusable");
                }
            }
            Err(e) => self.refuse_and_close(slot, e.unavailable(), "unusable answer"),
        }
    }

    /// The connection broke: retry its job once if it may never have
    /// reached the back end, else answer 503.
    fn failed(&mut self, slot: usize, why: &str) {
        let Some(c) = self.slots[slot].as_mut() else {
            return;
        };
        let job = c.job.take();
        let stale = c.reused && c.inbuf.is_empty();
        self.close(slot, why);
        if let Some(mut job) = job {
            if stale && !job.retried {
                job.retried = true;
                self.queue.push_front(job);
            } else {
                self.answer(
                    job,
                    Err(Refusal::BackendUnavailable(Unavailable::Connection)),
                );
            }
        }
    }

    fn refuse_and_close(&mut self, slot: usize, why: Unavailable, log: &str) {
        if let Some(job) = self.slots[slot].as_mut().and_then(|c| c.job.take()) {
            self.answer(job, Err(Refusal::BackendUnavailable(why)));
        }
        self.close(slot, log);
    }

    fn close(&mut self, slot: usize, why: &str) {
        if let Some(mut c) = self.slots[slot].take() {
            debug!("auth back end connection {slot} closed: {why}");
            let _ = self.poll.registry().deregister(&mut c.stream);
            debug_assert!(c.job.is_none(), "a job must be answered or requeued first");
        }
    }

    fn answer(&mut self, job: Job, verdict: Verdict) {
        self.out.push(Answer {
            id: job.id,
            verdict,
            key: job.key,
        });
    }

    fn hand_over(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.out);
        if self.answers.send(batch).is_ok() {
            let _ = self.loop_waker.wake();
        }
    }

    /// Answers every job still held with a 503, as the thread ends (the
    /// loop's handle answers later asks itself once the channel is closed).
    fn stop(&mut self) {
        let _ = self.take_asks();
        let held: Vec<Job> = self
            .queue
            .drain(..)
            .chain(self.slots.iter_mut().flatten().filter_map(|c| c.job.take()))
            .collect();
        for job in held {
            self.answer(job, Err(Refusal::BackendUnavailable(Unavailable::Stopped)));
        }
        self.hand_over();
    }

    /// Until the next deadline or idle expiry, at most [`QUIET`].
    fn next_timeout(&self, now: Instant) -> Duration {
        let queued = self.queue.iter().map(|j| j.deadline);
        let busy = self.slots.iter().flatten().map(|c| match &c.job {
            Some(j) => j.deadline,
            None => c.idle_since + IDLE_KEEP,
        });
        queued
            .chain(busy)
            .min()
            .map_or(QUIET, |t| t.saturating_duration_since(now).min(QUIET))
            .max(Duration::from_millis(1))
    }
}
