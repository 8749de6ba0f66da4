//! The HTTP endpoints that report the loop's own state: `/healthz` and
//! `/metrics`, and the publish API's answer. (Request heads, routing and the
//! embedded pages are the session's; these need what only the loop holds.)

use crate::chat::publish;
use crate::metrics::{Gauges, Metrics};
use crate::relay::delivery::Delivery;
use crate::wire::http::{self, Page};

/// The answer to `/healthz` or `/metrics`.
pub fn status_page(
    page: &Page,
    head_only: bool,
    keep_alive: bool,
    gauges: Gauges,
    metrics: &Metrics,
    delivery: &Delivery,
) -> Vec<u8> {
    let (content_type, body) = match page {
        Page::Metrics => {
            let mut body = metrics.render(gauges);
            delivery.render_metrics(&mut body);
            ("text/plain; version=0.0.4; charset=utf-8", body)
        }
        _ => {
            // Degraded still answers 200: local rooms work, and a load
            // balancer draining every node when Redis blips would be worse.
            let health = delivery.health();
            let body = format!(
                "{{\"status\": \"{}\", \"connections\": {}, \"rooms\": {}, \"uptime_seconds\": {:.3}, \"backplane\": {}}}\n",
                health.status, gauges.connections, gauges.rooms, gauges.uptime_secs, health.json
            );
            ("application/json", body)
        }
    };
    http::response(
        200,
        content_type,
        "Cache-Control: no-store\r\n",
        body.as_bytes(),
        head_only,
        !keep_alive,
    )
}

/// `202 {"published": N}`.
pub fn published(count: usize, keep_alive: bool) -> Vec<u8> {
    publish::accepted_response(count, !keep_alive)
}
