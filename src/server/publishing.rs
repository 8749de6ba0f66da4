//! The back-end publish API on the loop: `POST /publish/<room>/`. The
//! checks and parsing are sans-IO in [`crate::publish`]; this waits for the
//! body, then hands the messages to the backplane (or, on a single node,
//! fans them out at once).

use super::*;
use crate::publish::{self, Refusal};

impl Server {
    /// Returns false while the body is still arriving (the head is parsed
    /// again when more bytes come; it is at most --max-header-size).
    pub(super) fn on_publish(
        &mut self,
        key: u32,
        request: &http::Request,
        head_len: usize,
        room: Result<String, http::Rejection>,
    ) -> bool {
        let max_body = self.settings.limits.max_message_size as usize;
        let (room, len) =
            match publish::check_head(request, room, self.publish_token.as_deref(), max_body) {
                Ok(ok) => ok,
                Err(refusal) => {
                    self.refuse_publish(key, &refusal);
                    return true;
                }
            };
        let conn = &mut self.conns[key as usize];
        if conn.rx.len() < head_len + len {
            return false;
        }
        let mut request_bytes = std::mem::take(&mut conn.rx);
        conn.rx = request_bytes.split_off(head_len + len);
        let body = &request_bytes[head_len..];
        let keep_alive = request.http11 && !request.connection_close;
        match self.publish(&room, body) {
            Ok(n) => {
                self.metrics.api_published += n as u64;
                self.answer(key, publish::accepted_response(n, !keep_alive), keep_alive);
            }
            Err(refusal) => self.refuse_publish(key, &refusal),
        }
        true
    }

    /// Publishes every message of `body` to `room`, all or none.
    fn publish(&mut self, room: &str, body: &[u8]) -> Result<usize, Refusal> {
        let messages = publish::parse_body(body)?;
        let n = messages.len();
        let local = self.rooms.find(room);
        let Some(bp) = self.backplane.as_mut() else {
            if let Some(id) = local {
                for raw in messages {
                    self.fanout(id, &Frame::from(chat::broadcast_frame(raw)));
                }
            }
            return Ok(n);
        };
        let mut payloads = Vec::with_capacity(n);
        let max_message = self.settings.limits.max_message_size as usize;
        for (i, raw) in messages.iter().enumerate() {
            let payload = backplane::encode_publish(raw, max_message).map_err(|e| Refusal {
                status: e.status,
                reason: if n == 1 {
                    e.reason
                } else {
                    format!("batch element {i}: {}", e.reason)
                },
                headers: "",
            })?;
            payloads.push(payload);
        }
        let name: Arc<str> = local
            .and_then(|id| self.rooms.get(id))
            .map_or_else(|| room.into(), |r| r.name.clone());
        if !bp.try_publish(&name, payloads) {
            return Err(Refusal {
                status: 503,
                reason:
                    "the Redis backplane is not keeping up (--redis-queue is full); retry shortly"
                        .into(),
                headers: "",
            });
        }
        Ok(n)
    }

    fn refuse_publish(&mut self, key: u32, refusal: &Refusal) {
        info!(
            "refused a publish request: {} {}",
            refusal.status, refusal.reason
        );
        self.respond(
            key,
            publish::refusal_response(refusal, true),
            refusal.status,
        );
    }
}
