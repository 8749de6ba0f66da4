//! `--auth-url`: the loop's handle on the auth thread, which asks the back
//! end about each chat join (SPEC section 9).
//!
//! The event loop never waits on the back end. During an iteration it calls
//! [`AuthClient::ask`] for each upgrade to decide (answered at once from the
//! decision cache when `--auth-cache-ttl` allows), then
//! [`AuthClient::flush`] hands the asks over in one channel send and one
//! wake-up. The auth thread (`backend_thread.rs`, its own mio `Poll`) sends
//! `GET URL?room=<room>` with the client's `Cookie` and `Origin` over a pool
//! of at most `--auth-connections` keep-alive connections, and hands the
//! verdicts back in batches, waking the loop once per batch; the loop takes
//! them with [`AuthClient::drain`]. Invariants:
//! - **Every ask is answered exactly once**, with the back end's verdict or
//!   a 503: `--auth-timeout` runs from the `ask` call, and covers waiting
//!   for a free connection, connecting, sending and the answer. When the
//!   thread is gone, asks are answered with [`Unavailable::Stopped`].
//! - **A hung back end holds at most the pool.** An ask waits only for a
//!   free connection; a connection whose request times out, breaks, or
//!   answers something unusable is closed, never reused.
//! - A request sent on a reused keep-alive connection that closes before any
//!   byte of the answer (the back end dropped an idle connection just then)
//!   is sent once more on a fresh connection: a `GET` may be repeated.

use super::backend_thread::{self, Answer, Ask, AuthStats, BackendSettings};
use super::cache::{DecisionCache, CACHE_CAPACITY};
use super::{Refusal, Unavailable, Verdict};
use crossbeam_channel::{Receiver, Sender};
use mio::Waker;
use std::io;
use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The loop's handle on the auth thread.
pub struct AuthClient {
    pending: Vec<Ask>,
    asks: Option<Sender<Vec<Ask>>>,
    answers: Receiver<Vec<Answer>>,
    /// Answers made on this side (the thread was gone).
    local: Vec<Answer>,
    /// Wakes the auth thread.
    waker: Arc<Waker>,
    cache: Option<DecisionCache>,
    timeout: Duration,
    stats: Arc<AuthStats>,
    thread: Option<JoinHandle<()>>,
}

impl AuthClient {
    /// Resolves the back end's host (once: a name that does not resolve
    /// fails the start) and starts the auth thread; `loop_waker` is woken
    /// once per batch of answers.
    pub fn start(settings: BackendSettings, loop_waker: Arc<Waker>) -> io::Result<AuthClient> {
        let addr = (settings.url.host(), settings.url.port())
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("--auth-url: {} has no address", settings.url.host()),
                )
            })?;
        let (ask_tx, ask_rx) = crossbeam_channel::unbounded();
        let (answer_tx, answer_rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(AuthStats::default());
        let cache = (!settings.cache_ttl.is_zero())
            .then(|| DecisionCache::new(settings.cache_ttl, CACHE_CAPACITY));
        let timeout = settings.timeout;
        let (thread, waker) =
            backend_thread::spawn(settings, addr, ask_rx, answer_tx, loop_waker, stats.clone())?;
        Ok(AuthClient {
            pending: Vec::new(),
            asks: Some(ask_tx),
            answers: answer_rx,
            local: Vec::new(),
            waker,
            cache,
            timeout,
            stats,
            thread: Some(thread),
        })
    }

    /// Asks whether the join `id` (the loop's handle on the connection; an
    /// answer for a connection gone meanwhile is the loop's to ignore) may
    /// enter `room`. `Some` when the cache answers at once; otherwise the
    /// verdict comes through [`AuthClient::drain`] after a
    /// [`AuthClient::flush`].
    pub fn ask(
        &mut self,
        id: u64,
        room: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
    ) -> Option<Verdict> {
        let now = Instant::now();
        let key = match &mut self.cache {
            Some(cache) => {
                let key = DecisionCache::key(room, cookie, origin);
                if let Some(verdict) = cache.get(&key, now) {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Some(verdict);
                }
                Some(key)
            }
            None => None,
        };
        self.pending.push(Ask {
            id,
            room: room.into(),
            cookie: cookie.map(Into::into),
            origin: origin.map(Into::into),
            key,
            deadline: now + self.timeout,
        });
        None
    }

    /// Hands this iteration's asks to the thread: one send, one wake.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let sent = match &self.asks {
            Some(tx) => match tx.send(batch) {
                Ok(()) => {
                    let _ = self.waker.wake();
                    return;
                }
                Err(returned) => returned.0,
            },
            None => batch,
        };
        self.local.extend(sent.into_iter().map(|ask| Answer {
            id: ask.id,
            verdict: Err(Refusal::BackendUnavailable(Unavailable::Stopped)),
            key: None,
        }));
    }

    /// Takes every verdict waiting, in the order the thread reached them,
    /// and keeps the back end's decisions in the cache.
    pub fn drain(&mut self, mut f: impl FnMut(u64, Verdict)) {
        let now = Instant::now();
        for answer in std::mem::take(&mut self.local) {
            f(answer.id, answer.verdict);
        }
        while let Ok(batch) = self.answers.try_recv() {
            for answer in batch {
                if let (Some(cache), Some(key)) = (&mut self.cache, answer.key) {
                    cache.insert(key, &answer.verdict, now);
                }
                f(answer.id, answer.verdict);
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }
}

impl Drop for AuthClient {
    fn drop(&mut self) {
        // Closing the channel is the thread's signal to stop.
        self.asks = None;
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
