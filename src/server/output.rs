//! Queuing and writing: fan-out of shared frames, the dirty list that corks
//! output until the end of an iteration, flushes (io_uring batches for lone
//! frames, vectored writes otherwise) and WRITABLE interest only while a
//! kernel buffer is full.

use super::*;

impl Server {
    pub(super) fn send(&mut self, key: u32, frame: Frame) {
        let conn = &mut self.conns[key as usize];
        conn.tx.push(frame);
        let over = conn.tx.queued() > self.settings.max_send_queue;
        self.mark_dirty(key);
        if over {
            self.close_slow_consumer(key);
        }
    }

    pub(super) fn mark_dirty(&mut self, key: u32) {
        let conn = &mut self.conns[key as usize];
        if !conn.has(flag::DIRTY) {
            conn.set(flag::DIRTY);
            self.dirty.push(key);
        }
    }

    pub(super) fn fanout(&mut self, room: crate::room::RoomId, frame: &Frame) {
        let Some(room) = self.rooms.get(room) else {
            return;
        };
        self.metrics.messages_delivered += room.members.len() as u64;
        for &member in &room.members {
            let conn = &mut self.conns[member as usize];
            debug_assert_eq!(conn.phase, Phase::Open);
            conn.tx.push(frame.clone());
            if conn.tx.queued() > self.settings.max_send_queue {
                self.slow.push(member);
            }
            if !conn.has(flag::DIRTY) {
                conn.set(flag::DIRTY);
                self.dirty.push(member);
            }
        }
        while let Some(key) = self.slow.pop() {
            self.close_slow_consumer(key);
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            if let Some(conn) = self.conns.get_mut(key as usize) {
                conn.clear(flag::DIRTY);
            }
        }
        // Lone frames go out in io_uring batches; what is left takes writev.
        self.flush_ring(&mut dirty);
        for &key in &dirty {
            if self.conns.contains(key as usize) {
                self.flush(key);
            }
        }
        dirty.clear();
        // Anything marked dirty while flushing still gets its turn.
        dirty.append(&mut self.dirty);
        // Keep the list's memory unless a crowd made it large.
        if dirty.capacity() > 65_536 {
            dirty = Vec::new();
        }
        self.dirty = dirty;
    }

    pub(super) fn flush(&mut self, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.tx.is_empty() {
            return self.after_drained(key);
        }
        match conn.tx.write_to(&conn.stream) {
            Ok(w) => {
                self.count_sent(w.bytes);
                if w.drained {
                    self.after_drained(key);
                } else {
                    self.want_writable(key);
                }
            }
            Err(e) => {
                debug!("write error on connection {key}: {e}");
                self.abort(key);
            }
        }
    }

    /// Bytes handed to the kernel, by either path.
    pub(super) fn count_sent(&mut self, bytes: usize) {
        self.metrics.bytes_sent += bytes as u64;
        if self.shutdown_deadline.is_some() {
            self.summary.bytes_flushed_during_grace += bytes as u64;
        }
    }

    /// The kernel buffer is full: wait for WRITABLE (edge-triggered; a
    /// re-registration reports the socket at once if it is writable again).
    pub(super) fn want_writable(&mut self, key: u32) {
        let conn = &mut self.conns[key as usize];
        if conn.has(flag::WRITE_INTEREST) {
            return;
        }
        conn.set(flag::WRITE_INTEREST);
        let token = Self::token_for(key as usize, conn.generation);
        if self
            .poll
            .registry()
            .reregister(
                &mut conn.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.abort(key);
        }
    }

    pub(super) fn after_drained(&mut self, key: u32) {
        let conn = &mut self.conns[key as usize];
        if conn.has(flag::WRITE_INTEREST) {
            conn.clear(flag::WRITE_INTEREST);
            let token = Self::token_for(key as usize, conn.generation);
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, Interest::READABLE)
                .is_err()
            {
                return self.abort(key);
            }
        }
        match conn.phase {
            Phase::Closed => {
                self.summary.closed_cleanly += usize::from(self.shutdown_deadline.is_some());
                self.drop_conn(key)
            }
            Phase::Responding if conn.has(flag::PEER_EOF) => self.drop_conn(key),
            Phase::Responding => {
                // Half-close so the client sees the end of the answer, then
                // wait for its EOF (bounded by the close timeout).
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.phase = Phase::Lingering;
            }
            _ => {}
        }
    }
}
