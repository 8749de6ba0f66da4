//! The request stage's reader: what the HTTP request at the front of a
//! connection's buffer asks for.
//!
//! Pure: bytes and the policy in, one [`Asked`] out. It consumes the
//! request's bytes from the buffer only once the request is complete (its
//! head, and for the publish API its body), so a keep-alive client's
//! pipelined requests are read one at a time, and "need more" never loses a
//! byte. A head is never buffered past `--max-header-size` (the parser
//! refuses first), and a body never past `--max-message-size` (its length is
//! checked from the head before any of it is waited for).

use crate::chat::{pages, publish};
use crate::session::{Policy, Upgrade};
use crate::wire::deflate::{negotiate, DeflateParams};
use crate::wire::http::{self, Decision, Page, Rejection};

/// What the request at the front of the buffer asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Asked {
    /// No complete request yet: wait for more bytes.
    Incomplete,
    /// Refuse with a plain-text answer; the connection ends after it.
    Reject(Rejection),
    /// Refuse a publish request with its JSON answer; the connection ends.
    RefusePublish(Rejection),
    /// An embedded page, answered here: `response` is the whole answer.
    Page { response: Vec<u8>, keep_alive: bool },
    /// `/healthz` or `/metrics`: the loop holds what they report.
    Status {
        page: Page,
        head_only: bool,
        keep_alive: bool,
    },
    /// `POST /publish/<room>/` with its complete body.
    Publish {
        room: String,
        body: Vec<u8>,
        keep_alive: bool,
    },
    /// A valid WebSocket upgrade; `accept` is `Sec-WebSocket-Accept`, and
    /// `deflate` what permessage-deflate negotiation agreed (if it is on).
    Upgrade {
        asked: Upgrade,
        accept: String,
        deflate: Option<DeflateParams>,
    },
}

/// Reads the request at the front of `rx`, consuming it when complete.
pub(super) fn next(rx: &mut Vec<u8>, policy: &Policy) -> Asked {
    let (request, head_len) = match http::parse_head(rx, policy.max_header_size) {
        Ok(None) => return Asked::Incomplete,
        Ok(Some(parsed)) => parsed,
        Err(rejection) => return Asked::Reject(rejection),
    };
    // A request that asked for an upgrade and gets anything but a 101 is
    // answered and closed: its client expects no other exchange.
    let keep_alive = request.http11 && !request.connection_close && request.upgrade.is_none();
    let decision = http::decide(&request, &policy.origins);
    if let Decision::Publish { room } = decision {
        let max_body = policy.limits.max_message_size as usize;
        let token = policy.publish_token.as_deref();
        return match publish::check_head(&request, room, token, max_body) {
            Err(refusal) => Asked::RefusePublish(refusal),
            Ok((_, len)) if rx.len() < head_len + len => Asked::Incomplete,
            Ok((room, len)) => {
                let rest = rx.split_off(head_len + len);
                let mut body = std::mem::replace(rx, rest);
                body.drain(..head_len);
                Asked::Publish {
                    room,
                    body,
                    keep_alive,
                }
            }
        };
    }
    if request.content_length.is_some_and(|n| n > 0) || request.chunked {
        return Asked::Reject(Rejection::new(400, "request bodies are not accepted here"));
    }
    rx.drain(..head_len);
    match decision {
        Decision::Reject(rejection) => Asked::Reject(rejection),
        Decision::Upgrade { route, accept } => Asked::Upgrade {
            // An offer it cannot honour is declined, and the upgrade goes
            // on without the extension (RFC 7692 section 7.1).
            deflate: match (&policy.deflate, &request.extensions) {
                (Some(_), Some(offers)) => negotiate([offers.as_bytes()]),
                _ => None,
            },
            asked: Upgrade {
                route,
                query: request.query,
                cookie: request.cookie,
                origin: request.origin,
            },
            accept,
        },
        Decision::Serve { page, head_only } if matches!(page, Page::Healthz | Page::Metrics) => {
            Asked::Status {
                page,
                head_only,
                keep_alive,
            }
        }
        Decision::Serve { page, head_only } => match pages::lookup(&page) {
            Some(asset) => Asked::Page {
                response: http::response(
                    200,
                    asset.content_type,
                    asset.cache_control,
                    asset.body,
                    head_only,
                    !keep_alive,
                ),
                keep_alive,
            },
            None => Asked::Reject(Rejection::new(404, "not found")),
        },
        // Answered above, before the body check: a publish has a body.
        Decision::Publish { .. } => Asked::Reject(Rejection::new(404, "not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            publish_token: Some("t0ken".into()),
            ..Policy::default()
        }
    }

    #[test]
    fn a_partial_head_waits_and_consumes_nothing() {
        let mut rx = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
        assert_eq!(next(&mut rx, &policy()), Asked::Incomplete);
        assert_eq!(rx.len(), 32);
    }

    #[test]
    fn pipelined_requests_are_read_one_at_a_time() {
        let one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut rx = [&one[..], &one[..], b"GET /nope HTTP/1.1\r\n\r\n"].concat();
        for _ in 0..2 {
            assert!(matches!(
                next(&mut rx, &policy()),
                Asked::Status {
                    page: Page::Healthz,
                    keep_alive: true,
                    ..
                }
            ));
        }
        assert!(matches!(next(&mut rx, &policy()), Asked::Reject(r) if r.status == 404));
        assert!(rx.is_empty());
    }

    #[test]
    fn a_publish_waits_for_its_whole_body() {
        let head = b"POST /publish/lobby/ HTTP/1.1\r\nAuthorization: Bearer t0ken\r\nContent-Length: 14\r\n\r\n";
        let mut rx = [&head[..], br#"{"message""#].concat();
        assert_eq!(next(&mut rx, &policy()), Asked::Incomplete);
        rx.extend_from_slice(br#": 1}GET"#);
        assert_eq!(
            next(&mut rx, &policy()),
            Asked::Publish {
                room: "lobby".into(),
                body: br#"{"message": 1}"#.to_vec(),
                keep_alive: true
            }
        );
        assert_eq!(rx, b"GET", "the next request's bytes stay");
        let mut wrong = b"POST /publish/lobby/ HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}".to_vec();
        assert!(matches!(next(&mut wrong, &policy()), Asked::RefusePublish(r) if r.status == 401));
    }

    #[test]
    fn bodies_elsewhere_and_pages() {
        let mut rx = b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        assert!(matches!(next(&mut rx, &policy()), Asked::Reject(r) if r.status == 400));
        let mut rx = b"HEAD / HTTP/1.0\r\n\r\n".to_vec();
        let Asked::Page {
            response,
            keep_alive,
        } = next(&mut rx, &policy())
        else {
            panic!("the index page");
        };
        assert!(!keep_alive, "HTTP/1.0 closes");
        assert!(response.ends_with(b"\r\n\r\n"), "HEAD has no body");
    }

    #[test]
    fn an_upgrade_request_to_a_page_is_answered_and_closed() {
        let mut rx =
            b"GET /healthz HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec();
        assert!(matches!(
            next(&mut rx, &policy()),
            Asked::Status {
                keep_alive: false,
                ..
            }
        ));
    }
}
