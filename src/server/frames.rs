//! WebSocket frames of open connections: decoding, control frames, the
//! closing handshake and failing a connection, and leaving rooms.

use super::*;

impl Server {
    /// Decodes frames from `input` for connection `key`; returns the bytes
    /// consumed (the rest is an incomplete header or control frame).
    pub(super) fn decode_frames(&mut self, key: u32, input: &mut [u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key as usize) else {
                return pos;
            };
            if !matches!(conn.phase, Phase::Open | Phase::Closing) {
                return pos;
            }
            let closing = conn.phase == Phase::Closing;
            let Decoded { consumed, event } = match conn
                .decoder
                .decode(&mut input[pos..], &self.settings.limits)
            {
                Ok(d) => d,
                Err(e) => {
                    if closing {
                        // Already closing: a broken peer just goes.
                        self.drop_conn(key);
                    } else {
                        debug!("connection {key}: {e}");
                        self.fail(key, e);
                    }
                    return pos;
                }
            };
            pos += consumed;
            let Some(event) = event else { return pos };
            let reply: Option<Vec<u8>> = match event {
                Event::Message(..) | Event::Ping(_) if closing => None,
                Event::Message(kind, payload) => {
                    self.metrics.messages_received += 1;
                    match (conn.endpoint, kind) {
                        (Endpoint::Echo, DataKind::Text) => {
                            Some(frame::encode_frame(Opcode::Text, payload))
                        }
                        (Endpoint::Echo, DataKind::Binary) => {
                            Some(frame::encode_frame(Opcode::Binary, payload))
                        }
                        (Endpoint::Chat, DataKind::Text) => {
                            let room = conn
                                .membership
                                .expect("an open chat connection is in a room")
                                .room;
                            let sender = ConnRef {
                                key,
                                generation: conn.generation,
                            };
                            // The backplane publishes by name (see worker::Job).
                            let name = match self.backplane {
                                Some(_) => self.rooms.get(room).map(|r| r.name.clone()),
                                None => None,
                            };
                            self.batch.push(room, name, sender, payload);
                            None
                        }
                        (Endpoint::Chat, DataKind::Binary) => {
                            self.metrics.chat_errors += 1;
                            Some(chat::error_frame(&chat::ChatError::Binary))
                        }
                    }
                }
                Event::Ping(payload) => Some(frame::encode_frame(Opcode::Pong, payload)),
                Event::Pong(_) => None,
                Event::Close(status) => {
                    let code = status.map(|(code, _)| code);
                    self.on_peer_close(key, code);
                    continue;
                }
            };
            if let Some(bytes) = reply {
                self.send(key, Frame::from(bytes));
            }
            if self.batch.bytes() >= BATCH_BYTES {
                self.dispatch_batch();
            }
        }
    }

    pub(super) fn on_peer_close(&mut self, key: u32, code: Option<CloseCode>) {
        let conn = &mut self.conns[key as usize];
        if conn.phase == Phase::Closing {
            // Our close was answered: the handshake is complete.
            self.enter(key, Phase::Closed);
            return;
        }
        // Echo the peer's code (section 5.5.1); an empty close gets 1000.
        let code = code.unwrap_or(CloseCode::NORMAL);
        self.metrics.close(code.0);
        conn.tx.push(Frame::from(frame::encode_close(code.0, "")));
        self.enter(key, Phase::Closed);
    }

    /// Fails the connection (RFC 6455 section 7.1.7). The bytes after a
    /// wire fault cannot be trusted to frame anything, so instead of looking
    /// for the client's close frame in them the relay sends its close,
    /// half-closes and discards input until the client's EOF (or the close
    /// timeout).
    pub(super) fn fail(&mut self, key: u32, e: ProtocolError) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        let code = e.close_code();
        self.metrics.close(code.0);
        conn.rx = Vec::new();
        conn.tx
            .push(Frame::from(frame::encode_close(code.0, e.reason())));
        self.enter(key, Phase::Responding);
    }

    /// Sends a close frame and waits for the client's answer.
    pub(super) fn start_close(&mut self, key: u32, code: CloseCode, reason: &str) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        self.metrics.close(code.0);
        conn.tx
            .push(Frame::from(frame::encode_close(code.0, reason)));
        self.enter(key, Phase::Closing);
    }

    /// A client whose queue passed --max-send-queue: what it has not started
    /// receiving is dropped, and the close frame says why (SPEC section 4).
    pub(super) fn close_slow_consumer(&mut self, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        let dropped = conn.tx.discard_unstarted();
        info!("closing connection {key} as a slow consumer ({dropped} queued frames dropped)");
        self.metrics.slow_consumer_closes += 1;
        self.start_close(key, CloseCode::POLICY_VIOLATION, "slow consumer");
    }

    /// Moves a connection to a phase that is not `Open`: it leaves its room
    /// and gets the timer that ends it.
    pub(super) fn enter(&mut self, key: u32, phase: Phase) {
        self.leave_room(key);
        let conn = &mut self.conns[key as usize];
        if conn.phase == Phase::Open {
            self.open_websockets -= 1;
        }
        conn.phase = phase;
        conn.since = self.now;
        self.mark_dirty(key);
        let due = self.now + self.settings.close_ticks;
        self.arm(key, due);
    }

    pub(super) fn leave_room(&mut self, key: u32) {
        let Some(m) = self.conns[key as usize].membership.take() else {
            return;
        };
        let name = self
            .backplane
            .as_ref()
            .and_then(|_| self.rooms.get(m.room))
            .map(|r| r.name.clone());
        if let Some(moved) = self.rooms.leave(m) {
            if let Some(other) = self.conns[moved as usize].membership.as_mut() {
                other.index = m.index;
            }
        }
        // The last local member left: stop listening to the room on Redis.
        if let (Some(bp), Some(name)) = (self.backplane.as_mut(), name) {
            if self.rooms.get(m.room).is_none() {
                bp.unsubscribe(name);
            }
        }
    }
}
