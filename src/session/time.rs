//! Time as sessions see it: ticks of the loop's clock, passed in.
//!
//! A session never reads a clock. The loop counts [`TICK`]s since it
//! started and passes the current one to every input, so a test can drive a
//! session through hours of pings and timeouts on a virtual clock in
//! microseconds. Deadlines are whole ticks: a timeout fires at the first tick
//! at or after it, never early.

use std::time::Duration;

/// The clock's resolution: timeouts are accurate to this.
pub const TICK: Duration = Duration::from_millis(100);

/// A point in time: ticks since the loop started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tick(pub u32);

/// A length of time in ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticks(pub u32);

impl Tick {
    /// Later than any deadline: "no timer".
    pub const NEVER: Tick = Tick(u32::MAX);

    /// `self + d`, saturating at [`Tick::NEVER`].
    pub fn after(self, d: Ticks) -> Tick {
        Tick(self.0.saturating_add(d.0))
    }

    /// Ticks from `earlier` to `self` (0 if `earlier` is later).
    pub fn since(self, earlier: Tick) -> Ticks {
        Ticks(self.0.saturating_sub(earlier.0))
    }

    /// This tick in milliseconds since the start (for rate limits).
    pub fn millis(self) -> u64 {
        u64::from(self.0) * TICK.as_millis() as u64
    }

    /// The tick an instant `elapsed` after the start falls in.
    pub fn at(elapsed: Duration) -> Tick {
        Tick((elapsed.as_millis() / TICK.as_millis()).min(u32::MAX as u128 - 1) as u32)
    }

    /// How long from `elapsed` after the start until this tick begins.
    pub fn wait_from(self, elapsed: Duration) -> Duration {
        let at = u128::from(self.0) * TICK.as_millis();
        Duration::from_millis(at.saturating_sub(elapsed.as_millis()) as u64)
    }
}

impl Ticks {
    /// A duration in whole ticks, rounded up so a timeout never fires early;
    /// capped far below overflow when added to any tick of a long run.
    pub fn from_duration(d: Duration) -> Ticks {
        let t = d.as_millis().div_ceil(TICK.as_millis());
        Ticks(t.min(u32::MAX as u128 / 4) as u32)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_and_ticks_saturate() {
        assert_eq!(Ticks::from_duration(Duration::from_millis(1)), Ticks(1));
        assert_eq!(Ticks::from_duration(Duration::from_millis(100)), Ticks(1));
        assert_eq!(Ticks::from_duration(Duration::from_millis(101)), Ticks(2));
        assert_eq!(Ticks::from_duration(Duration::ZERO), Ticks(0));
        assert_eq!(Tick(u32::MAX - 3).after(Ticks(10)), Tick::NEVER);
        assert_eq!(Tick(5).since(Tick(9)), Ticks(0));
        assert_eq!(Tick::at(Duration::from_millis(1_250)), Tick(12));
        assert_eq!(
            Tick(13).wait_from(Duration::from_millis(1_250)),
            Duration::from_millis(50)
        );
    }
}
