//! The HTTP side of a connection: request heads (pipelined ones in a loop),
//! rejections, the embedded pages, `/healthz`, `/metrics`, and the upgrade.

use super::*;

impl Server {
    /// Handles every complete request head buffered for connection `key`:
    /// keep-alive clients may pipeline several. A loop, not recursion, so
    /// thousands of pipelined requests in one read cannot exhaust the stack.
    pub(super) fn on_request_bytes(&mut self, key: u32) {
        while self
            .conns
            .get(key as usize)
            .is_some_and(|c| c.phase == Phase::Handshake && !c.rx.is_empty())
        {
            if !self.handle_one_request(key) {
                return;
            }
        }
    }

    /// Handles the request head at the front of `rx`; returns false when no
    /// complete head is buffered yet.
    pub(super) fn handle_one_request(&mut self, key: u32) -> bool {
        let conn = &mut self.conns[key as usize];
        let (request, head_len) = match http::parse_head(&conn.rx, self.settings.max_header_size) {
            Ok(None) => return false,
            Ok(Some(parsed)) => parsed,
            Err(rej) => {
                self.reject(key, rej);
                return true;
            }
        };
        let decision = http::decide(&request, &self.origins);
        if let Decision::Publish { room } = decision {
            return self.on_publish(key, &request, head_len, room);
        }
        if request.content_length.is_some_and(|n| n > 0) || request.chunked {
            self.reject(
                key,
                http::Rejection::new(400, "request bodies are not accepted here"),
            );
            return true;
        }
        self.conns[key as usize].rx.drain(..head_len);
        match decision {
            Decision::Reject(rej) => self.reject(key, rej),
            Decision::Serve { page, head_only } => {
                let keep_alive = request.http11 && !request.connection_close;
                self.serve(key, &page, head_only, keep_alive);
            }
            Decision::Publish { .. } => unreachable!("handled above"),
            Decision::Upgrade { route, accept } => self.open(key, route, &accept),
        }
        true
    }

    pub(super) fn reject(&mut self, key: u32, rej: http::Rejection) {
        info!("rejected a request: {} {}", rej.status, rej.reason);
        self.respond(key, http::rejection_response(&rej), rej.status);
    }

    /// Queues a final HTTP response; the connection ends after it.
    pub(super) fn respond(&mut self, key: u32, bytes: Vec<u8>, status: u16) {
        if status >= 400 {
            self.metrics.rejection(status);
        }
        let conn = &mut self.conns[key as usize];
        conn.rx = Vec::new();
        conn.clear(flag::KEEP_ALIVE);
        conn.tx.push(Frame::from(bytes));
        self.enter(key, Phase::Responding);
    }

    pub(super) fn serve(&mut self, key: u32, page: &Page, head_only: bool, keep_alive: bool) {
        let response = match page {
            Page::Healthz => {
                // Degraded still answers 200: local rooms work, and a load
                // balancer draining every node when Redis blips would be worse.
                let (status, backplane) = match &self.backplane {
                    None => ("ok", "null".to_string()),
                    Some(bp) if bp.healthy() => ("ok", bp.health_json()),
                    Some(bp) => ("degraded", bp.health_json()),
                };
                let body = format!(
                    "{{\"status\": \"{status}\", \"connections\": {}, \"rooms\": {}, \"uptime_seconds\": {:.3}, \"backplane\": {backplane}}}\n",
                    self.open_websockets,
                    self.rooms.len(),
                    self.started.elapsed().as_secs_f64()
                );
                http::response(
                    200,
                    "application/json",
                    "Cache-Control: no-store\r\n",
                    body.as_bytes(),
                    head_only,
                    !keep_alive,
                )
            }
            Page::Metrics => {
                let mut body = self.metrics.render(self.gauges());
                if let Some(bp) = &self.backplane {
                    bp.render_metrics(&mut body);
                }
                http::response(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    "Cache-Control: no-store\r\n",
                    body.as_bytes(),
                    head_only,
                    !keep_alive,
                )
            }
            other => match pages::lookup(other) {
                Some(asset) => http::response(
                    200,
                    asset.content_type,
                    asset.cache_control,
                    asset.body,
                    head_only,
                    !keep_alive,
                ),
                None => return self.reject(key, http::Rejection::new(404, "not found")),
            },
        };
        self.answer(key, response, keep_alive);
    }

    /// Queues a successful answer; with keep-alive the connection waits for
    /// its next request.
    pub(super) fn answer(&mut self, key: u32, response: Vec<u8>, keep_alive: bool) {
        if !keep_alive {
            return self.respond(key, response, 200);
        }
        let conn = &mut self.conns[key as usize];
        conn.tx.push(Frame::from(response));
        conn.since = self.now;
        if conn.tx.queued() > self.settings.max_send_queue {
            // Pipelining requests without reading the answers.
            debug!("connection {key}: HTTP responses piled past --max-send-queue");
            return self.abort(key);
        }
        self.mark_dirty(key);
    }

    pub(super) fn gauges(&self) -> Gauges {
        Gauges {
            connections: self.open_websockets,
            tcp_connections: self.conns.len(),
            rooms: self.rooms.len(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            decode_batches_in_flight: self.pool.as_ref().map_or(0, WorkerPool::in_flight),
        }
    }

    pub(super) fn open(&mut self, key: u32, route: WsRoute, accept: &str) {
        let conn = &mut self.conns[key as usize];
        conn.tx.push(Frame::from(http::upgrade_response(accept)));
        conn.phase = Phase::Open;
        conn.since = self.now;
        self.open_websockets += 1;
        match route {
            WsRoute::Echo => conn.endpoint = Endpoint::Echo,
            WsRoute::Chat(room) => {
                conn.endpoint = Endpoint::Chat;
                let rooms_before = self.rooms.len();
                let m = self.rooms.join(&room, key);
                conn.membership = Some(m);
                // The first local member: listen to the room on Redis.
                if let Some(bp) = self.backplane.as_mut() {
                    if self.rooms.len() > rooms_before {
                        if let Some(r) = self.rooms.get(m.room) {
                            bp.subscribe(r.name.clone());
                        }
                    }
                }
                debug!("connection {key} joined room {room}");
            }
        }
        self.mark_dirty(key);
        if self.settings.ping_ticks > 0 {
            self.arm(key, self.now + self.settings.ping_ticks);
        }
        // Frames the client sent right behind its request head.
        if !self.conns[key as usize].rx.is_empty() {
            self.decode_buffered(key);
        }
        if let Some(conn) = self.conns.get_mut(key as usize) {
            conn.release_buffers();
        }
    }
}
