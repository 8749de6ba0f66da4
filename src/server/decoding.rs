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
                decode_batch(&self.batch, &mut outcomes);
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

    pub(super) fn apply(&mut self, outcomes: &mut Vec<Outcome>) {
        for outcome in outcomes.drain(..) {
            match outcome {
                Outcome::Broadcast { room, frame } => self.fanout(room, &frame),
                Outcome::Error { sender, frame } => {
                    self.metrics.chat_errors += 1;
                    let alive = self.conns.get(sender.key as usize).is_some_and(|c| {
                        c.generation == sender.generation && c.phase == Phase::Open
                    });
                    if alive {
                        self.send(sender.key, frame);
                    }
                }
            }
        }
    }
}
