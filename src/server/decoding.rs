//! The hand-off of chat batches to the JSON workers (or the loop itself)
//! and applying their outcomes in batch order.

use super::*;

impl Server {
    pub(super) fn dispatch_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        match self.pool.as_mut() {
            Some(pool)
                if pool.in_flight() > 0
                    || self.batch.len() >= self.settings.inline_decode_below =>
            {
                if pool.is_saturated() {
                    self.collect_results(true);
                }
                if let Some(pool) = self.pool.as_mut() {
                    pool.submit(&mut self.batch);
                }
            }
            _ => {
                let mut outcomes = std::mem::take(&mut self.outcomes);
                decode_batch(&self.batch, self.encoding(), &mut outcomes);
                self.batch = Batch::default();
                self.apply(&mut outcomes);
                self.outcomes = outcomes;
            }
        }
    }

    pub(super) fn collect_results(&mut self, wait: bool) {
        let Some(mut pool) = self.pool.take() else {
            return;
        };
        pool.collect(wait, |mut outcomes| self.apply(&mut outcomes));
        self.pool = Some(pool);
    }

    pub(super) fn encoding(&self) -> Encoding {
        if self.backplane.is_some() {
            Encoding::Msgpack {
                max_message: self.settings.limits.max_message_size as usize,
            }
        } else {
            Encoding::Frame
        }
    }

    pub(super) fn apply(&mut self, outcomes: &mut Vec<Outcome>) {
        for outcome in outcomes.drain(..) {
            match outcome {
                Outcome::Broadcast { room, frame } => self.fanout(room, &frame),
                Outcome::Publish {
                    room,
                    sender,
                    payload,
                } => {
                    let Some(bp) = self.backplane.as_mut() else {
                        continue;
                    };
                    if !bp.try_publish_one(&room, payload) {
                        self.metrics.chat_errors += 1;
                        self.send_error(
                            sender,
                            "the Redis backplane is not keeping up, so this message was not sent; try again shortly",
                        );
                    }
                }
                Outcome::Error { sender, frame } => {
                    self.metrics.chat_errors += 1;
                    self.send_to(sender, frame);
                }
            }
        }
    }

    fn send_error(&mut self, sender: ConnRef, text: &str) {
        self.send_to(sender, Frame::from(chat::error_text_frame(text)));
    }

    /// Sends `frame` to `conn` if it is still the same open connection.
    fn send_to(&mut self, conn: ConnRef, frame: Frame) {
        let alive = self
            .conns
            .get(conn.key as usize)
            .is_some_and(|c| c.generation == conn.generation && c.phase == Phase::Open);
        if alive {
            self.send(conn.key, frame);
        }
    }
}
