//! Per-connection deadlines on the timing wheel: handshake timeout, pings,
//! the idle timeout and the close timeout, and retrying accept().

use super::*;

impl Server {
    /// Makes sure connection `key` is checked at tick `due` or earlier.
    pub(super) fn arm(&mut self, key: u32, due: u32) {
        let conn = &mut self.conns[key as usize];
        if due < conn.timer_due {
            conn.timer_due = due;
            self.timers.schedule(key, conn.generation, due);
        }
    }

    pub(super) fn run_timers(&mut self) {
        if let Some(at) = self.accept_retry_at {
            if self.now >= at {
                self.accept_retry_at = None;
                self.accept_all();
            }
        }
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.expire(self.now, &mut expired);
        for e in expired.drain(..) {
            let Some(conn) = self.conns.get_mut(e.key as usize) else {
                continue;
            };
            if conn.generation != e.generation || conn.timer_due != e.due {
                continue; // superseded by an earlier entry
            }
            conn.timer_due = NO_TIMER;
            self.on_timer(e.key);
        }
        self.expired = expired;
    }

    pub(super) fn on_timer(&mut self, key: u32) {
        let s = &self.settings;
        let now = self.now;
        let conn = &mut self.conns[key as usize];
        match conn.phase {
            Phase::Handshake => {
                let due = conn.since + s.handshake_ticks;
                if now >= due {
                    info!(
                        "connection {key}: no complete request head within the handshake timeout"
                    );
                    self.respond(
                        key,
                        http::rejection_response(&http::Rejection::new(
                            408,
                            "no complete request within the handshake timeout",
                        )),
                        408,
                    );
                } else {
                    self.arm(key, due);
                }
            }
            Phase::Open => {
                if s.ping_ticks == 0 {
                    return;
                }
                let silent = now.saturating_sub(conn.last_rx);
                if silent >= s.idle_ticks {
                    debug!("connection {key}: idle timeout");
                    self.start_close(key, CloseCode::GOING_AWAY, "idle timeout");
                } else if silent >= s.ping_ticks && !conn.has(flag::PINGED) {
                    conn.set(flag::PINGED);
                    let due = conn.last_rx + s.idle_ticks;
                    self.send(key, Frame::from(frame::encode_frame(Opcode::Ping, b"")));
                    self.arm(key, due);
                } else {
                    let due = if conn.has(flag::PINGED) {
                        conn.last_rx + s.idle_ticks
                    } else {
                        conn.last_rx + s.ping_ticks
                    };
                    self.arm(key, due);
                }
            }
            Phase::Closing | Phase::Closed | Phase::Responding | Phase::Lingering => {
                let due = conn.since + s.close_ticks;
                if now >= due {
                    debug!("connection {key}: close timeout in phase {:?}", conn.phase);
                    self.abort(key);
                } else {
                    self.arm(key, due);
                }
            }
        }
    }
}
