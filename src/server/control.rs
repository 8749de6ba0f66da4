//! What an operator can ask of a running loop: shut down gracefully, on
//! SIGINT or SIGTERM, or through a [`ShutdownHandle`] (tests, embedders);
//! and reload the TLS certificate, on SIGHUP (`systemctl reload`), which
//! without TLS is harmless.
//!
//! Signal handlers only write to a pipe the loop polls (signal-hook), so a
//! signal never interrupts the loop in the middle of anything: it is read as
//! one more event. The handlers are installed before the port opens, so a
//! signal sent as soon as the relay accepts connections is never fatal.

use mio::{Interest, Registry, Token, Waker};
use signal_hook_mio::v1_0::Signals;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Asks a running server to shut down gracefully (as SIGTERM does).
#[derive(Clone)]
pub struct ShutdownHandle {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// What a signal asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// Shut down gracefully; the signal's name, for the log.
    Stop(&'static str),
    /// Re-read the TLS certificate and key.
    Reload,
}

pub struct Control {
    requested: Arc<AtomicBool>,
    /// Only the binary listens to signals: they are process-wide.
    signals: Option<Signals>,
}

impl Control {
    /// With `signals`, SIGINT, SIGTERM and SIGHUP are registered under
    /// `token`.
    pub fn new(signals: bool, registry: &Registry, token: Token) -> io::Result<Control> {
        let signals = match signals {
            true => {
                let mut s = Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])?;
                registry.register(&mut s, token, Interest::READABLE)?;
                Some(s)
            }
            false => None,
        };
        Ok(Control {
            requested: Arc::new(AtomicBool::new(false)),
            signals,
        })
    }

    pub fn handle(&self, waker: Arc<Waker>) -> ShutdownHandle {
        ShutdownHandle {
            requested: self.requested.clone(),
            waker,
        }
    }

    /// After a wake-up: whether a [`ShutdownHandle`] asked to stop.
    pub fn handle_requested(&self) -> Option<&'static str> {
        self.requested
            .load(Ordering::SeqCst)
            .then_some("shutdown requested")
    }

    /// After a signal event: what the signals that came ask for, in order.
    pub fn signalled(&mut self) -> Vec<Asked> {
        let Some(signals) = self.signals.as_mut() else {
            return Vec::new();
        };
        signals
            .pending()
            .map(|sig| match sig {
                libc::SIGHUP => Asked::Reload,
                libc::SIGINT => Asked::Stop("SIGINT"),
                _ => Asked::Stop("SIGTERM"),
            })
            .collect()
    }
}
