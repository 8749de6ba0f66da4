//! A hashed timing wheel for per-connection deadlines.
//!
//! Sans-IO: time is a [`Tick`] passed in. Each connection has at most one
//! live entry; an expired entry is handed back and the caller decides (from
//! the connection's own timestamps) whether the deadline really passed or
//! moved later, re-arming if so. A connection that stays busy therefore costs
//! one wheel visit per timeout period, and an idle one nothing between its
//! deadlines: advancing the wheel touches only the slots of the elapsed
//! ticks, never every connection.

use crate::relay::ConnId;
use crate::session::Tick;

/// One scheduled check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub conn: ConnId,
    pub due: Tick,
}

#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    /// Every tick up to and including `now` has been expired.
    now: u32,
    len: usize,
}

const SLOTS: usize = 512;

impl Default for TimerWheel {
    fn default() -> Self {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            now: 0,
            len: 0,
        }
    }
}

impl TimerWheel {
    /// Schedules a check of `conn` at `due` (clamped to the next tick).
    pub fn schedule(&mut self, conn: ConnId, due: Tick) {
        let due = due.0.max(self.now + 1);
        self.slots[due as usize % SLOTS].push(Entry {
            conn,
            due: Tick(due),
        });
        self.len += 1;
    }

    /// Moves every entry due at or before `now` into `out`.
    pub fn expire(&mut self, now: Tick, out: &mut Vec<Entry>) {
        let now = now.0;
        if now <= self.now {
            return;
        }
        // Past one full turn every slot is visited once.
        let ticks = (now - self.now).min(SLOTS as u32);
        for t in 1..=ticks {
            let slot = &mut self.slots[(self.now + t) as usize % SLOTS];
            if slot.is_empty() {
                continue;
            }
            let before = out.len();
            slot.retain(|e| {
                if e.due.0 <= now {
                    out.push(*e);
                    false
                } else {
                    true
                }
            });
            if slot.is_empty() && slot.capacity() > 1024 {
                *slot = Vec::new();
            }
            self.len -= out.len() - before;
        }
        self.now = now;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expire(w: &mut TimerWheel, now: u32) -> Vec<u32> {
        let mut out = Vec::new();
        w.expire(Tick(now), &mut out);
        out.iter().map(|e| e.conn.key).collect()
    }

    fn at(w: &mut TimerWheel, key: u32, due: u32) {
        let conn = ConnId { key, generation: 0 };
        w.schedule(conn, Tick(due));
    }

    #[test]
    fn fires_at_the_due_tick_and_not_before() {
        let mut w = TimerWheel::default();
        at(&mut w, 1, 5);
        at(&mut w, 2, 5 + SLOTS as u32); // same slot, one turn later
        at(&mut w, 3, 3);
        assert_eq!(expire(&mut w, 2), Vec::<u32>::new());
        assert_eq!(expire(&mut w, 5), vec![3, 1]);
        assert_eq!(w.len(), 1);
        assert_eq!(expire(&mut w, 4 + SLOTS as u32), Vec::<u32>::new());
        assert_eq!(expire(&mut w, 5 + SLOTS as u32), vec![2]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_long_jump_visits_everything_once() {
        let mut w = TimerWheel::default();
        for k in 0..2000 {
            at(&mut w, k, 1 + k % 1500);
        }
        let mut fired = expire(&mut w, 10_000);
        fired.sort();
        assert_eq!(fired, (0..2000).collect::<Vec<_>>());
    }

    #[test]
    fn past_deadlines_fire_on_the_next_tick() {
        let mut w = TimerWheel::default();
        expire(&mut w, 100);
        at(&mut w, 7, 50);
        assert_eq!(expire(&mut w, 101), vec![7]);
    }
}
