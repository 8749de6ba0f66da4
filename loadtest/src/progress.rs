//! Live progress on stderr, one line a second, so a long run shows it is alive and how
//! fast deliveries are coming in.

use crate::sys;

pub struct Progress {
    enabled: bool,
    next_us: u64,
    last_us: u64,
    last_received: u64,
    last_cpu_s: f64,
}

/// Rates over the last interval, handed to the line formatter.
pub struct Rates {
    /// Deliveries per second.
    pub received: f64,
    /// The harness's CPU use, fraction of one core.
    pub cpu: f64,
}

impl Progress {
    pub fn new(enabled: bool, now_us: u64) -> Progress {
        Progress {
            enabled,
            next_us: now_us + 1_000_000,
            last_us: now_us,
            last_received: 0,
            last_cpu_s: sys::cpu_seconds(),
        }
    }

    /// When the next line is due, if lines are wanted at all.
    pub fn deadline(&self) -> Option<u64> {
        self.enabled.then_some(self.next_us)
    }

    /// Starts the rate interval afresh (e.g. at a phase change).
    pub fn restart(&mut self, now_us: u64, received: u64) {
        self.last_us = now_us;
        self.next_us = now_us + 1_000_000;
        self.last_received = received;
        self.last_cpu_s = sys::cpu_seconds();
    }

    /// Prints a line if one is due; `received` is a running total of deliveries.
    pub fn tick(&mut self, now_us: u64, received: u64, line: impl FnOnce(&Rates) -> String) {
        if !self.enabled || now_us < self.next_us {
            return;
        }
        let dt = (now_us.saturating_sub(self.last_us)).max(1) as f64 / 1e6;
        let cpu = sys::cpu_seconds();
        let rates = Rates {
            received: received.saturating_sub(self.last_received) as f64 / dt,
            cpu: (cpu - self.last_cpu_s) / dt,
        };
        eprintln!("{}", line(&rates));
        self.last_us = now_us;
        self.last_received = received;
        self.last_cpu_s = cpu;
        self.next_us = now_us + 1_000_000;
    }
}
