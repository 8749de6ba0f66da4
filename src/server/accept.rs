//! The listening socket: accepting until the backlog is empty, and what to
//! do when the process runs out of file descriptors.
//!
//! Out of descriptors, `accept()` fails with EMFILE and the client stays in
//! the backlog; since the listener is edge-triggered, spinning on it would
//! burn the loop. So the [`Acceptor`] frees a spare descriptor to take one
//! waiting client and tell it 503, pauses accepting for [`BACKOFF`], and
//! logs once per burst.

use crate::metrics::Metrics;
use crate::server::sys;
use crate::session::{Tick, Ticks};
use crate::wire::http::{self, Rejection};
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// After accept() fails for lack of descriptors, retry after this long.
const BACKOFF: Duration = Duration::from_millis(100);

pub struct Acceptor {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// False once shutdown began: the listener is deregistered.
    accepting: bool,
    /// When to retry accept() after descriptor exhaustion.
    retry_at: Option<Tick>,
    /// accept() failures for lack of descriptors in the current burst; the
    /// first is logged, the total when accepting works again.
    starved: u64,
    /// Held open so that, out of descriptors, one can be freed to answer a
    /// waiting client with 503 rather than leave it hanging in the backlog.
    spare_fd: Option<std::fs::File>,
}

impl Acceptor {
    /// Binds `addr` with a `backlog`-deep accept queue and `TCP_NODELAY`
    /// for every accepted socket, and registers it under `token`.
    pub fn bind(
        addr: SocketAddr,
        backlog: u32,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Acceptor> {
        let mut listener = TcpListener::bind(addr)?;
        sys::set_listen_backlog(&listener, backlog)?;
        // Small frames go out now; batching is the loop's job, not Nagle's.
        sys::set_nodelay(&listener)?;
        let local_addr = listener.local_addr()?;
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Acceptor {
            listener,
            local_addr,
            accepting: true,
            retry_at: None,
            starved: 0,
            spare_fd: std::fs::File::open("/dev/null").ok(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting for good (shutdown).
    pub fn close(&mut self, registry: &Registry) {
        self.accepting = false;
        let _ = registry.deregister(&mut self.listener);
    }

    /// A retry after descriptor exhaustion is pending.
    pub fn is_backing_off(&self) -> bool {
        self.retry_at.is_some()
    }

    /// Whether a pending retry is due at `now` (then accept again).
    pub fn retry_due(&mut self, now: Tick) -> bool {
        match self.retry_at {
            Some(at) if now >= at => {
                self.retry_at = None;
                true
            }
            _ => false,
        }
    }

    /// The next waiting client, until the backlog is empty (or accepting is
    /// paused or over).
    pub fn next(&mut self, metrics: &mut Metrics, now: Tick) -> Option<(TcpStream, SocketAddr)> {
        if !self.accepting || self.retry_at.is_some() {
            return None;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    metrics.connections_accepted += 1;
                    return Some((stream, peer));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The backlog is drained: a starvation burst is over.
                    if self.starved > 0 {
                        info!(
                            "accepting again after {} accept failures for lack of file descriptors",
                            self.starved
                        );
                        self.starved = 0;
                    }
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    metrics.accept_errors += 1;
                    if self.starved == 0 {
                        warn!("accept failed: {e}; answering waiting clients 503 and retrying every {BACKOFF:?} until descriptors free up");
                    }
                    self.starved += 1;
                    self.shed_with_spare_fd(metrics);
                    // Edge-triggered: the backlog is retried from the timer,
                    // not by spinning on a listener that stays readable.
                    self.retry_at = Some(now.after(Ticks::from_duration(BACKOFF)));
                    return None;
                }
                Err(e) => {
                    // ECONNABORTED and the like concern one client only.
                    metrics.accept_errors += 1;
                    debug!("accept failed: {e}");
                }
            }
        }
    }

    /// Frees the spare descriptor to accept one waiting client, tells it
    /// 503, and takes the spare back.
    fn shed_with_spare_fd(&mut self, metrics: &mut Metrics) {
        if self.spare_fd.take().is_none() {
            return;
        }
        if let Ok((stream, _)) = self.listener.accept() {
            let busy = http::rejection_response(&Rejection::new(
                503,
                "the relay is out of file descriptors; retry later",
            ));
            // One best-effort write: this socket is closed right after.
            let _ = std::io::Write::write(&mut &stream, &busy);
            metrics.rejection(503);
        }
        self.spare_fd = std::fs::File::open("/dev/null").ok();
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
