//! The harness's one time base: microseconds since the process started.
//!
//! Send timestamps travel inside the messages and come back in deliveries, so sender
//! and receiver must read the same monotonic clock; all clients live in this process,
//! which makes a plain `Instant` offset enough (no wall clock, no skew).

use std::sync::OnceLock;
use std::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Microseconds elapsed since the first call in this process.
pub fn now_us() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    base.elapsed().as_micros() as u64
}

/// Seconds (fractional) to whole microseconds, saturating on silly input.
pub fn secs_to_us(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (secs * 1e6).min(u64::MAX as f64 / 2.0) as u64
    } else {
        0
    }
}
