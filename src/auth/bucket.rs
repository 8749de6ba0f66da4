//! The per-connection message rate limit, `--max-messages-per-second` with
//! `--rate-burst` (SPEC section 9), sans-IO: the loop passes its time in
//! milliseconds (from any fixed epoch; the loop's 100 ms ticks times 100
//! will do) and acts on the [`Admission`].
//!
//! A token bucket of `burst` messages refilled at `rate` per second, kept
//! as GCRA (RFC 2697's bucket, as one "theoretical arrival time"): a message
//! is allowed while the bucket's time is at most `(burst - 1)` intervals
//! ahead of now, and then moves it one interval on. A refused message is a
//! strike in a second bucket of [`FLOOD_STRIKES`] strikes refilled at one
//! per second: **a client keeps flooding** when a refusal finds that bucket
//! empty, i.e. once it has been refused more than [`FLOOD_STRIKES`] messages
//! plus one for every second since its first refusal. It is then closed
//! with 1008. A client whose refusals stay under one a second is never
//! closed; one refused `r` times a second (`r > 1`) is closed within about
//! `10 / (r - 1)` seconds, and a tight loop on its 11th refusal. (A burst of
//! 1 refuses every message closer than one interval to the last allowed
//! one: a client sending just over the rate then loses about half its
//! messages, so keep the burst at 2 or more.)
//!
//! Invariants:
//! - [`Bucket`] is 8 bytes (two wrapping `u32` millisecond times); the
//!   shared [`RateLimit`] holds the settings.
//! - A bucket's time is never more than its horizon (`burst` intervals, or
//!   [`FLOOD_STRIKES`] seconds) ahead of now, and config validation keeps
//!   every horizon under 2^31 ms, so the wrapping difference tells "ahead"
//!   from "behind" exactly, except after a silence within one horizon of a
//!   multiple of 2^32 ms (49.7 days), when the bucket may look partly used.
//! - Intervals are whole milliseconds: rates are rounded to the nearest
//!   (3/s becomes 333 ms, 3.003/s).

/// The verdict on one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Broadcast it.
    Allow,
    /// Answer `{"error": RATE_LIMITED}` and drop it.
    Refuse,
    /// The client keeps flooding: close with 1008 [`FLOODING`].
    Close,
}

/// Shared settings: one per relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Milliseconds one message costs.
    interval: u32,
    /// How far ahead of now the bucket's time may be and still allow a
    /// message: `(burst - 1) * interval`.
    tolerance: u32,
}

/// One connection's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// When the bucket will be full again if nothing more is sent (GCRA's
    /// theoretical arrival time), in wrapping milliseconds.
    full_at: u32,
    /// The same for the strike bucket.
    forgiven_at: u32,
}

/// Refusals a client may collect beyond one a second before it is closed.
pub const FLOOD_STRIKES: u32 = 10;

/// Milliseconds after which one strike is forgiven.
const STRIKE_INTERVAL: u32 = 1_000;

/// The error text for a refused message (the loop wraps it as
/// `{"error": ...}`).
pub const RATE_LIMITED: &str =
    "rate limited: this connection sent more than --max-messages-per-second allows; the message was not sent";

/// The 1008 close reason for a client that keeps flooding.
pub const FLOODING: &str = "rate limit exceeded repeatedly";

/// The largest a bucket's horizon may be (config validation keeps rate and
/// burst within it), so wrapping differences stay unambiguous.
pub const MAX_HORIZON_MS: u64 = (1 << 31) - 1;

impl RateLimit {
    /// `per_second` messages a second (above zero), in bursts of `burst`
    /// (at least 1). `None` when the pair's horizon (`burst` intervals)
    /// would pass [`MAX_HORIZON_MS`] or the rate is not positive.
    pub fn new(per_second: f64, burst: u32) -> Option<RateLimit> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        let interval = (1_000.0 / per_second).round().max(1.0);
        let horizon = interval * f64::from(burst.max(1));
        if horizon > MAX_HORIZON_MS as f64 {
            return None;
        }
        let interval = interval as u32;
        Some(RateLimit {
            interval,
            tolerance: interval * (burst.max(1) - 1),
        })
    }

    /// Milliseconds one message costs.
    pub fn interval_ms(&self) -> u32 {
        self.interval
    }

    /// Messages allowed back to back from a full bucket.
    pub fn burst(&self) -> u32 {
        self.tolerance / self.interval + 1
    }
}

impl Bucket {
    /// A full bucket at `now_ms`.
    pub fn new(now_ms: u64) -> Bucket {
        let now = now_ms as u32;
        Bucket {
            full_at: now,
            forgiven_at: now,
        }
    }

    /// Charges one message at `now_ms` (never decreasing between calls).
    pub fn check(&mut self, limit: &RateLimit, now_ms: u64) -> Admission {
        let now = now_ms as u32;
        let ahead = ahead_of(self.full_at, now, limit.tolerance + limit.interval);
        if ahead <= limit.tolerance {
            self.full_at = now.wrapping_add(ahead + limit.interval);
            return Admission::Allow;
        }
        let strikes_ahead = ahead_of(self.forgiven_at, now, FLOOD_STRIKES * STRIKE_INTERVAL);
        if strikes_ahead + STRIKE_INTERVAL > FLOOD_STRIKES * STRIKE_INTERVAL {
            return Admission::Close;
        }
        self.forgiven_at = now.wrapping_add(strikes_ahead + STRIKE_INTERVAL);
        Admission::Refuse
    }
}

/// The bucket alone, without strikes (4 bytes): for limits where the
/// first message over the rate ends the connection, as
/// `--max-pings-per-second` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pace {
    /// As [`Bucket`]'s `full_at`.
    full_at: u32,
}

impl Pace {
    /// A full bucket at `now_ms`.
    pub fn new(now_ms: u64) -> Pace {
        Pace {
            full_at: now_ms as u32,
        }
    }

    /// Charges one message at `now_ms` (never decreasing between calls):
    /// whether the bucket had room for it. A refused message charges
    /// nothing.
    pub fn allows(&mut self, limit: &RateLimit, now_ms: u64) -> bool {
        let now = now_ms as u32;
        let ahead = ahead_of(self.full_at, now, limit.tolerance + limit.interval);
        if ahead <= limit.tolerance {
            self.full_at = now.wrapping_add(ahead + limit.interval);
            return true;
        }
        false
    }
}

/// How far `t` is ahead of `now`, given that it is never more than
/// `horizon` ahead; 0 when it is not ahead.
fn ahead_of(t: u32, now: u32, horizon: u32) -> u32 {
    let d = t.wrapping_sub(now);
    if d <= horizon {
        d
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Admission::{Allow as A, Close as C, Refuse as R};

    #[test]
    fn a_bucket_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Bucket>(), 8);
        assert_eq!(std::mem::size_of::<Pace>(), 4);
    }

    /// A pace allows its burst back to back, then one per interval, and
    /// agrees with a bucket's allowances at every step.
    #[test]
    fn a_pace_allows_what_a_bucket_allows() {
        let limit = RateLimit::new(50.0, 20).unwrap();
        let mut pace = Pace::new(1_000);
        let at_once = (0..25).filter(|_| pace.allows(&limit, 1_000)).count();
        assert_eq!(at_once, 20);
        // 20 ms an interval: one more each 20 ms, none in between.
        assert!(!pace.allows(&limit, 1_019));
        assert!(pace.allows(&limit, 1_020));
        assert!(!pace.allows(&limit, 1_021));
        // After a quiet second the burst is whole again.
        let later = (0..25).filter(|_| pace.allows(&limit, 3_000)).count();
        assert_eq!(later, 20);
        let mut bucket = Bucket::new(0);
        let mut pace = Pace::new(0);
        for t in (0..2_000).step_by(7) {
            let b = bucket.check(&limit, t) == Admission::Allow;
            // The bucket's refusals do not charge it either.
            assert_eq!(pace.allows(&limit, t), b, "at {t} ms");
        }
    }

    /// Drives a bucket on a virtual clock: `(at_ms, expected)` per message.
    fn run(limit: RateLimit, start: u64, script: &[(u64, Admission)]) {
        let mut b = Bucket::new(start);
        for (i, &(at, want)) in script.iter().enumerate() {
            assert_eq!(b.check(&limit, start + at), want, "message {i} at {at} ms");
        }
    }

    #[test]
    fn settings() {
        let l = RateLimit::new(10.0, 5).unwrap();
        assert_eq!((l.interval_ms(), l.burst()), (100, 5));
        assert_eq!(RateLimit::new(3.0, 1).unwrap().interval_ms(), 333);
        assert_eq!(RateLimit::new(5000.0, 0).unwrap().interval_ms(), 1);
        assert_eq!(RateLimit::new(0.5, 2).unwrap().interval_ms(), 2_000);
        assert!(RateLimit::new(0.0, 5).is_none());
        assert!(RateLimit::new(f64::NAN, 5).is_none());
        assert!(RateLimit::new(0.001, 100_000).is_none());
    }

    #[test]
    fn burst_then_rate() {
        // 10/s, burst 3: three at once, then one per 100 ms.
        let l = RateLimit::new(10.0, 3).unwrap();
        run(
            l,
            5_000,
            &[
                (0, A),
                (0, A),
                (0, A),
                (0, R),
                (99, R),
                (100, A),
                (150, R),
                (200, A),
                // Quiet for a second: the burst is back, and no more.
                (1_200, A),
                (1_200, A),
                (1_200, A),
                (1_200, R),
            ],
        );
    }

    #[test]
    fn burst_of_one_is_a_steady_rate() {
        let l = RateLimit::new(2.0, 1).unwrap();
        run(
            l,
            0,
            &[(0, A), (1, R), (499, R), (500, A), (1_000, A), (1_400, R)],
        );
    }

    #[test]
    fn a_tight_loop_is_closed_on_its_eleventh_refusal() {
        let l = RateLimit::new(10.0, 3).unwrap();
        let mut script = vec![(0, A); 3];
        script.extend([(0, R); 10]);
        script.push((0, C));
        run(l, 77, &script);
    }

    #[test]
    fn strikes_are_forgiven_at_one_a_second() {
        let l = RateLimit::new(1.0, 1).unwrap();
        let mut b = Bucket::new(0);
        assert_eq!(b.check(&l, 0), A);
        for _ in 0..10 {
            assert_eq!(b.check(&l, 10), R);
        }
        // Two seconds later two strikes are forgiven, and a message allowed.
        assert_eq!(b.check(&l, 2_010), A);
        assert_eq!(b.check(&l, 2_010), R);
        assert_eq!(b.check(&l, 2_010), R);
        assert_eq!(b.check(&l, 2_010), C);
    }

    #[test]
    fn sending_at_the_rate_plus_less_than_one_a_second_is_never_closed() {
        // 10/s, burst 10; the client sends 10.5/s for ten minutes: about
        // one refusal every two seconds.
        let l = RateLimit::new(10.0, 10).unwrap();
        let mut b = Bucket::new(0);
        let mut refused = 0;
        for i in 0..6_300u64 {
            match b.check(&l, i * 10_000 / 105) {
                A => {}
                R => refused += 1,
                C => panic!("closed after {i} messages"),
            }
        }
        assert!((250..=350).contains(&refused), "{refused}");
    }

    #[test]
    fn sustained_excess_is_closed_in_seconds() {
        // 10/s, burst 10; the client sends 20/s: ~10 refusals a second.
        let l = RateLimit::new(10.0, 10).unwrap();
        let mut b = Bucket::new(0);
        let closed_at = (0..1_000u64)
            .map(|i| i * 50)
            .find(|&t| b.check(&l, t) == C)
            .unwrap();
        assert!((1_500..=3_000).contains(&closed_at), "{closed_at}");
    }

    #[test]
    fn the_clock_may_wrap() {
        let l = RateLimit::new(10.0, 2).unwrap();
        let start = (1u64 << 32) - 50;
        run(
            l,
            start,
            &[(0, A), (0, A), (0, R), (100, A), (150, R), (200, A)],
        );
        // A long silence (a day) leaves a full bucket.
        let mut b = Bucket::new(start);
        assert_eq!(b.check(&l, start), A);
        assert_eq!(b.check(&l, start), A);
        assert_eq!(b.check(&l, start + 86_400_000), A);
        assert_eq!(b.check(&l, start + 86_400_000), A);
        assert_eq!(b.check(&l, start + 86_400_000), R);
    }
}
