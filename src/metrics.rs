//! Counters for `/metrics` (Prometheus text format) and `/healthz`.
//!
//! Plain integers owned by the event loop: no atomics, no locks. Fan-out
//! adds a room's member count once per message, never per recipient.

use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: u64,
    pub messages_received: u64,
    pub messages_delivered: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub chat_errors: u64,
    /// Messages accepted by the publish API.
    pub api_published: u64,
    pub slow_consumer_closes: u64,
    /// Chat messages refused by `--max-messages-per-second` (closes of
    /// clients that kept flooding included).
    pub rate_limited: u64,
    /// Connections closed with 1008 by `--max-pings-per-second`.
    pub ping_floods: u64,
    /// Joins refused by authorization, by reason
    /// ([`crate::auth::REFUSAL_REASONS`]).
    pub auth_rejections: [u64; crate::auth::REFUSAL_REASONS.len()],
    /// TLS handshakes completed, and failed by reason
    /// ([`crate::tls::Failure::ALL`]).
    pub tls_handshakes: u64,
    /// Compression calls (one per compressed broadcast, at most), and the
    /// bytes they took and gave.
    pub deflate_compressions: u64,
    pub deflate_bytes_in: u64,
    pub deflate_bytes_out: u64,
    pub tls_handshake_failures: [u64; crate::tls::Failure::ALL.len()],
    pub accept_errors: u64,
    /// Sends completed through io_uring, and the submissions that carried them.
    pub io_uring_sends: u64,
    pub io_uring_submits: u64,
    /// Close codes the relay sent, plus 1006 for connections that ended
    /// without a closing handshake. A code a client chose (echoed in the
    /// closing handshake) from the library and private ranges is counted
    /// under its range, `3xxx` or `4xxx`, so clients cannot mint a series
    /// per code.
    pub closes: BTreeMap<u16, u64>,
    pub handshake_rejections: BTreeMap<u16, u64>,
}

/// Gauges read from the loop's state when rendering.
#[derive(Clone, Copy, Debug)]
pub struct Gauges {
    /// Open WebSocket connections.
    pub connections: usize,
    /// Every TCP connection the loop holds, handshakes and closings included.
    pub tcp_connections: usize,
    pub rooms: usize,
    pub uptime_secs: f64,
    pub decode_batches_in_flight: usize,
    /// Log lines dropped because stderr did not keep up.
    pub log_lines_dropped: u64,
}

impl Metrics {
    pub fn close(&mut self, code: u16) {
        let key = match code {
            3000..=3999 => 3000,
            4000..=4999 => 4000,
            other => other,
        };
        *self.closes.entry(key).or_default() += 1;
    }

    pub fn tls_failure(&mut self, failure: crate::tls::Failure) {
        if let Some(i) = crate::tls::Failure::ALL.iter().position(|f| *f == failure) {
            self.tls_handshake_failures[i] += 1;
        }
    }

    pub fn rejection(&mut self, status: u16) {
        *self.handshake_rejections.entry(status).or_default() += 1;
    }

    pub fn render(&self, g: Gauges) -> String {
        let mut s = String::with_capacity(2048);
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        line(
            "roomcast_connections",
            "gauge",
            "Open WebSocket connections.",
            g.connections.to_string(),
        );
        line(
            "roomcast_tcp_connections",
            "gauge",
            "TCP connections held, handshakes and closings included.",
            g.tcp_connections.to_string(),
        );
        line(
            "roomcast_rooms",
            "gauge",
            "Rooms with at least one member.",
            g.rooms.to_string(),
        );
        line(
            "roomcast_uptime_seconds",
            "gauge",
            "Seconds since start.",
            format!("{:.3}", g.uptime_secs),
        );
        line(
            "roomcast_decode_batches_in_flight",
            "gauge",
            "Chat batches at the JSON workers.",
            g.decode_batches_in_flight.to_string(),
        );
        line(
            "roomcast_log_lines_dropped_total",
            "counter",
            "Log lines dropped because stderr did not keep up (the loop never waits for it).",
            g.log_lines_dropped.to_string(),
        );
        line(
            "roomcast_connections_accepted_total",
            "counter",
            "TCP connections accepted.",
            self.connections_accepted.to_string(),
        );
        line(
            "roomcast_messages_received_total",
            "counter",
            "WebSocket data messages received.",
            self.messages_received.to_string(),
        );
        line(
            "roomcast_messages_delivered_total",
            "counter",
            "Messages queued to recipients (one per recipient).",
            self.messages_delivered.to_string(),
        );
        line(
            "roomcast_bytes_received_total",
            "counter",
            "Bytes read from clients.",
            self.bytes_received.to_string(),
        );
        line(
            "roomcast_bytes_sent_total",
            "counter",
            "Bytes written to clients.",
            self.bytes_sent.to_string(),
        );
        line(
            "roomcast_chat_errors_total",
            "counter",
            "Chat messages refused with an {\"error\"} frame.",
            self.chat_errors.to_string(),
        );
        line(
            "roomcast_publish_messages_total",
            "counter",
            "Messages accepted by the publish API (POST /publish/<room>/).",
            self.api_published.to_string(),
        );
        line(
            "roomcast_slow_consumer_closes_total",
            "counter",
            "Connections closed with 1008 for not reading.",
            self.slow_consumer_closes.to_string(),
        );
        line(
            "roomcast_rate_limited_total",
            "counter",
            "Chat messages refused by --max-messages-per-second.",
            self.rate_limited.to_string(),
        );
        line(
            "roomcast_ping_flood_closes_total",
            "counter",
            "Connections closed with 1008 for sending more pings and pongs than --max-pings-per-second.",
            self.ping_floods.to_string(),
        );
        line(
            "roomcast_deflate_compressions_total",
            "counter",
            "permessage-deflate compressions: one per compressed broadcast, never one per recipient.",
            self.deflate_compressions.to_string(),
        );
        line(
            "roomcast_deflate_bytes_in_total",
            "counter",
            "Bytes given to the compressor.",
            self.deflate_bytes_in.to_string(),
        );
        line(
            "roomcast_deflate_bytes_out_total",
            "counter",
            "Bytes the compressor made of them.",
            self.deflate_bytes_out.to_string(),
        );
        line(
            "roomcast_tls_handshakes_total",
            "counter",
            "TLS handshakes completed.",
            self.tls_handshakes.to_string(),
        );
        line(
            "roomcast_accept_errors_total",
            "counter",
            "accept() failures such as EMFILE.",
            self.accept_errors.to_string(),
        );
        line(
            "roomcast_io_uring_sends_total",
            "counter",
            "Writes to clients batched through io_uring (the rest use send/writev).",
            self.io_uring_sends.to_string(),
        );
        line(
            "roomcast_io_uring_submits_total",
            "counter",
            "io_uring submissions (each carries up to 512 writes).",
            self.io_uring_submits.to_string(),
        );
        let _ = writeln!(s, "# HELP roomcast_closes_total Connections closed, by close code sent (1006: no closing handshake).\n# TYPE roomcast_closes_total counter");
        for (code, n) in &self.closes {
            let label = match code {
                3000 => "3xxx".to_string(),
                4000 => "4xxx".to_string(),
                other => other.to_string(),
            };
            let _ = writeln!(s, "roomcast_closes_total{{code=\"{label}\"}} {n}");
        }
        let _ = writeln!(s, "# HELP roomcast_auth_rejections_total Joins refused by authorization, by reason.\n# TYPE roomcast_auth_rejections_total counter");
        for (reason, n) in crate::auth::REFUSAL_REASONS
            .iter()
            .zip(&self.auth_rejections)
        {
            let _ = writeln!(
                s,
                "roomcast_auth_rejections_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(s, "# HELP roomcast_tls_handshake_failures_total TLS handshakes that failed, by reason.\n# TYPE roomcast_tls_handshake_failures_total counter");
        for (failure, n) in crate::tls::Failure::ALL
            .iter()
            .zip(&self.tls_handshake_failures)
        {
            let _ = writeln!(
                s,
                "roomcast_tls_handshake_failures_total{{reason=\"{}\"}} {n}",
                failure.label()
            );
        }
        let _ = writeln!(s, "# HELP roomcast_handshake_rejections_total HTTP requests refused, by status.\n# TYPE roomcast_handshake_rejections_total counter");
        for (status, n) in &self.handshake_rejections {
            let _ = writeln!(
                s,
                "roomcast_handshake_rejections_total{{status=\"{status}\"}} {n}"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_spec_metric() {
        let mut m = Metrics::default();
        m.close(1008);
        for code in 4000..4100 {
            m.close(code);
        }
        m.close(3001);
        m.rejection(404);
        let text = m.render(Gauges {
            connections: 3,
            tcp_connections: 4,
            rooms: 1,
            uptime_secs: 1.0,
            decode_batches_in_flight: 0,
            log_lines_dropped: 0,
        });
        for name in [
            "roomcast_connections 3",
            "roomcast_rooms 1",
            "roomcast_messages_received_total 0",
            "roomcast_messages_delivered_total 0",
            "roomcast_bytes_sent_total 0",
            "roomcast_chat_errors_total 0",
            "roomcast_closes_total{code=\"1008\"} 1",
            "roomcast_closes_total{code=\"4xxx\"} 100",
            "roomcast_closes_total{code=\"3xxx\"} 1",
            "roomcast_handshake_rejections_total{status=\"404\"} 1",
            "roomcast_slow_consumer_closes_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
