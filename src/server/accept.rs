//! Accepting connections: the accept loop, the connection cap's 503, and
//! shedding with the spare descriptor when the process runs out of them.

use super::*;

impl Server {
    pub(super) fn accept_all(&mut self) {
        if !self.accepting || self.accept_retry_at.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_conn(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The backlog is drained: a starvation burst is over.
                    if self.accept_starved > 0 {
                        info!(
                            "accepting again after {} accept failures for lack of file descriptors",
                            self.accept_starved
                        );
                        self.accept_starved = 0;
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    self.metrics.accept_errors += 1;
                    if self.accept_starved == 0 {
                        warn!("accept failed: {e}; answering waiting clients 503 and retrying every {ACCEPT_BACKOFF:?} until descriptors free up");
                    }
                    self.accept_starved += 1;
                    self.shed_with_spare_fd();
                    // Edge-triggered: the backlog is retried from the timer,
                    // not by spinning on a listener that stays readable.
                    self.accept_retry_at = Some(self.now + ticks(ACCEPT_BACKOFF));
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and the like concern one client only.
                    self.metrics.accept_errors += 1;
                    debug!("accept failed: {e}");
                }
            }
        }
    }

    /// Frees the spare descriptor to accept one pending client, tells it
    /// 503, and takes the spare back.
    pub(super) fn shed_with_spare_fd(&mut self) {
        if self.spare_fd.take().is_none() {
            return;
        }
        if let Ok((stream, _)) = self.listener.accept() {
            let busy = http::rejection_response(&http::Rejection::new(
                503,
                "the relay is out of file descriptors; retry later",
            ));
            // One best-effort write: this socket is closed right after.
            let _ = std::io::Write::write(&mut &stream, &busy);
            self.metrics.rejection(503);
        }
        self.spare_fd = std::fs::File::open("/dev/null").ok();
    }

    pub(super) fn add_conn(&mut self, mut stream: TcpStream) {
        self.metrics.connections_accepted += 1;
        let open = self.conns.len() - self.over_limit;
        let over = open >= self.settings.max_connections;
        if over && self.over_limit >= OVER_LIMIT_SLOTS {
            self.metrics.rejection(503);
            return; // dropped: closed at once
        }
        // TCP_NODELAY comes from the listener (see bind_inner): one
        // setsockopt fewer per connection in a connection storm.
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Self::token_for(key, generation),
            Interest::READABLE,
        ) {
            warn!("could not register a connection: {e}");
            return;
        }
        entry.insert(Conn::new(stream, generation, self.now));
        let key = key as u32;
        if over {
            self.over_limit += 1;
            self.conns[key as usize].set(flag::OVER_LIMIT);
            info!(
                "rejected a connection: over max-connections ({})",
                self.settings.max_connections
            );
            self.respond(
                key,
                http::rejection_response(&http::Rejection::new(
                    503,
                    "too many connections; retry later",
                )),
                503,
            );
        } else {
            self.arm(key, self.now + self.settings.handshake_ticks);
        }
    }
}
