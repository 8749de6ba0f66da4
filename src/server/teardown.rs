//! Graceful shutdown and ending connections.

use super::*;

impl Server {
    pub(super) fn begin_shutdown(&mut self, why: &str) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.accepting = false;
        let _ = self.poll.registry().deregister(&mut self.listener);
        // Messages already accepted are delivered before anyone's 1001.
        self.dispatch_batch();
        if let Some(mut pool) = self.pool.take() {
            pool.drain(|mut outcomes| self.apply(&mut outcomes));
            self.pool = Some(pool);
        }
        self.summary.connections_at_shutdown = self.conns.len();
        self.summary.websockets_at_shutdown = self.open_websockets;
        // An HTTP connection that already has its answer is only waiting for
        // the client's EOF: it is counted, but it is not sent a 1001.
        info!(
            "{why}: stopping accepts, closing {} WebSocket connections with 1001 ({} TCP connections in all)",
            self.open_websockets,
            self.conns.len()
        );
        let keys: Vec<u32> = self.conns.iter().map(|(k, _)| k as u32).collect();
        for key in keys {
            match self.conns[key as usize].phase {
                Phase::Open => self.start_close(key, CloseCode::GOING_AWAY, "server shutting down"),
                Phase::Handshake => self.respond(
                    key,
                    http::rejection_response(&http::Rejection::new(
                        503,
                        "the relay is shutting down",
                    )),
                    503,
                ),
                _ => {}
            }
        }
        self.shutdown_deadline = Some(self.now + self.settings.grace_ticks);
    }

    /// Ends a connection that did not finish a closing handshake.
    pub(super) fn abort(&mut self, key: u32) {
        if let Some(conn) = self.conns.get(key as usize) {
            if matches!(conn.phase, Phase::Open | Phase::Closing) {
                self.metrics.close(1006);
            }
            self.drop_conn(key);
        }
    }

    pub(super) fn drop_conn(&mut self, key: u32) {
        if !self.conns.contains(key as usize) {
            return;
        }
        self.leave_room(key);
        let mut conn = self.conns.remove(key as usize);
        if conn.phase == Phase::Open {
            self.open_websockets -= 1;
        }
        if conn.has(flag::OVER_LIMIT) {
            self.over_limit -= 1;
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
    }
}
