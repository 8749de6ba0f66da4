//! HTTP/1.1 request heads: parsing, routing and WebSocket upgrade validation
//! (RFC 6455 section 4.2, SPEC section 1), and the responses the relay writes.
//!
//! Sans-IO. [`parse_head`] never consumes on "need more" and enforces
//! `--max-header-size` before the head is complete, so a client cannot make
//! the relay buffer more than that. [`decide`] maps a parsed head to exactly
//! one outcome: an upgrade, a page the relay serves, or a rejection with one
//! status and a plain-words reason.

use std::fmt::Write as _;

/// Headers beyond this count are refused with 431 like an oversized head.
const MAX_HEADERS: usize = 48;
/// Room names: Channels' group-name alphabet, and `chat_` + room under 100.
pub const MAX_ROOM_LEN: usize = 95;

/// What the relay needs from a request head; owned so the read buffer can go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The query string (after `?`, before any `#`), which may carry a join
    /// token.
    pub query: Option<String>,
    /// HTTP/1.1 (or later); false for HTTP/1.0.
    pub http11: bool,
    pub upgrade: Option<String>,
    /// `Connection` contains the `upgrade` token.
    pub connection_upgrade: bool,
    /// `Connection` contains the `close` token.
    pub connection_close: bool,
    pub ws_version: Option<String>,
    pub ws_key: Option<String>,
    pub origin: Option<String>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// `Authorization`, for the publish API.
    pub authorization: Option<String>,
    /// Every `Cookie` header, joined with `"; "`, for the auth back end.
    pub cookie: Option<String>,
    /// Every `Sec-WebSocket-Extensions` header, joined with `", "` (one
    /// list, as RFC 7230 section 3.2.2 reads repeated headers).
    pub extensions: Option<String>,
}

/// A refusal: one status, one reason in plain words, maybe extra headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: String,
    /// Extra header lines, each ending in `\r\n`.
    pub headers: &'static str,
}

impl Rejection {
    pub fn new(status: u16, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
            headers: "",
        }
    }
}

/// The WebSocket endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsRoute {
    Chat(String),
    Echo,
}

/// Plain HTTP resources (served by the event loop, which owns the state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Page {
    Index,
    Room(String),
    Static(String),
    Healthz,
    Metrics,
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Switch protocols; `accept` is the `Sec-WebSocket-Accept` value.
    Upgrade {
        route: WsRoute,
        accept: String,
    },
    /// Serve a page; `head_only` for `HEAD`.
    Serve {
        page: Page,
        head_only: bool,
    },
    /// The publish API (`/publish/<room>/`); the event loop checks the rest
    /// (it holds the token), see [`crate::chat::publish::check_head`].
    Publish {
        room: Result<String, Rejection>,
    },
    Reject(Rejection),
}

/// Origin policy (`--allowed-origins`).
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    /// `None` allows any origin.
    allowed: Option<Vec<String>>,
}

impl OriginPolicy {
    /// Patterns: a full origin (`https://app.example.com`), a bare host
    /// (`app.example.com`, any scheme and port), or a wildcard host
    /// (`*.example.com`, any subdomain). `*` alone allows any origin.
    pub fn new(patterns: &[String]) -> OriginPolicy {
        let list: Vec<String> = patterns
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        if list.is_empty() || list.iter().any(|p| p == "*") {
            OriginPolicy { allowed: None }
        } else {
            OriginPolicy {
                allowed: Some(list),
            }
        }
    }

    pub fn allows_any(&self) -> bool {
        self.allowed.is_none()
    }

    /// A request without `Origin` is not from a browser page and is allowed:
    /// origin checks protect browsers' users, other clients can send any value.
    ///
    /// With a list, an origin is parsed strictly as RFC 6454 serialises one,
    /// `scheme://host[:port]` and nothing else; anything else (a path, user
    /// info, an empty host, `null`) matches no pattern.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let (Some(list), Some(origin)) = (&self.allowed, origin) else {
            return true;
        };
        let origin = origin.to_ascii_lowercase();
        let Some(host) = origin_host(&origin) else {
            return false;
        };
        list.iter().any(|p| {
            if let Some(suffix) = p.strip_prefix("*.") {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            } else if p.contains("://") {
                *p == origin
            } else {
                *p == host
            }
        })
    }
}

/// The host of a serialised origin, `scheme://host[:port]`, or `None` if
/// `origin` is not one.
fn origin_host(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let (host, port) = match rest.rsplit_once(':') {
        // A bracketed IPv6 host holds colons of its own.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    (scheme_ok && port_ok && host_ok).then_some(host)
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: incomplete and still within `max_header_size`; nothing is
/// consumed. `Ok(Some((request, n)))`: the head is the first `n` bytes.
pub fn parse_head(
    buf: &[u8],
    max_header_size: usize,
) -> Result<Option<(Request, usize)>, Rejection> {
    let too_large = || Rejection::new(431, "request header fields too large");
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Never parse past the limit, so the answer depends only on the first
    // max_header_size bytes, however the head was split into reads.
    let n = match req.parse(&buf[..buf.len().min(max_header_size)]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_header_size {
                Err(too_large())
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(e) => return Err(Rejection::new(400, format!("malformed request head: {e}"))),
    };
    if n > max_header_size {
        return Err(too_large());
    }
    let target = req.path.unwrap_or("/");
    let target = target.split('#').next().unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (target, None),
    };
    let mut out = Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query,
        http11: req.version == Some(1),
        ..Request::default()
    };
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            out.upgrade = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                out.connection_upgrade |= token.eq_ignore_ascii_case("upgrade");
                out.connection_close |= token.eq_ignore_ascii_case("close");
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            out.ws_version = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            out.ws_key = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("origin") {
            if out.origin.is_some() {
                return Err(Rejection::new(400, "more than one Origin header"));
            }
            out.origin = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 section 6.3: a repeated or malformed length is a
            // framing error, answered 400 and closed, so that no proxy in
            // front can frame the request differently (request smuggling).
            if out.content_length.is_some() {
                return Err(Rejection::new(400, "more than one Content-Length header"));
            }
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            out.content_length = Some(
                value
                    .parse()
                    .ok()
                    .filter(|_| digits)
                    .ok_or_else(|| Rejection::new(400, "invalid Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            out.chunked = true;
        } else if name.eq_ignore_ascii_case("authorization") {
            out.authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            match out.extensions.as_mut() {
                Some(e) => {
                    e.push_str(", ");
                    e.push_str(value);
                }
                None => out.extensions = Some(value.to_string()),
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            match out.cookie.as_mut() {
                Some(c) => {
                    c.push_str("; ");
                    c.push_str(value);
                }
                None => out.cookie = Some(value.to_string()),
            }
        }
    }
    if out.chunked && out.content_length.is_some() {
        return Err(Rejection::new(
            400,
            "both Transfer-Encoding and Content-Length: the body's length is ambiguous",
        ));
    }
    Ok(Some((out, n)))
}

/// Whether `name` is a valid room name (1 to 95 of `A-Z a-z 0-9 _ - .`).
pub fn is_valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

enum Target {
    Ws(Result<WsRoute, Rejection>),
    Page(Result<Page, Rejection>),
    Publish(Result<String, Rejection>),
    NotFound,
    WsNotFound,
}

fn room_from(rest: &str) -> Result<String, Rejection> {
    let room = rest.strip_suffix('/').unwrap_or(rest);
    if is_valid_room(room) {
        Ok(room.to_string())
    } else {
        Err(Rejection::new(
            400,
            "invalid room name: use 1 to 95 characters of A-Z a-z 0-9 _ - .",
        ))
    }
}

fn target(path: &str) -> Target {
    match path {
        "/ws/echo" | "/ws/echo/" => Target::Ws(Ok(WsRoute::Echo)),
        "/" | "/index.html" => Target::Page(Ok(Page::Index)),
        "/healthz" => Target::Page(Ok(Page::Healthz)),
        "/metrics" => Target::Page(Ok(Page::Metrics)),
        _ => {
            if let Some(rest) = path.strip_prefix("/ws/chat/") {
                Target::Ws(room_from(rest).map(WsRoute::Chat))
            } else if let Some(rest) = path.strip_prefix("/chat/") {
                Target::Page(room_from(rest).map(Page::Room))
            } else if let Some(rest) = path.strip_prefix("/publish/") {
                Target::Publish(room_from(rest))
            } else if let Some(file) = path.strip_prefix("/static/") {
                Target::Page(Ok(Page::Static(file.to_string())))
            } else if path.starts_with("/ws/") || path == "/ws" {
                Target::WsNotFound
            } else {
                Target::NotFound
            }
        }
    }
}

/// Decides what to answer to a complete request head.
pub fn decide(req: &Request, origins: &OriginPolicy) -> Decision {
    match target(&req.path) {
        Target::Ws(route) => match route
            .and_then(|route| validate_upgrade(req, origins).map(|accept| (route, accept)))
        {
            Ok((route, accept)) => Decision::Upgrade { route, accept },
            Err(rej) => Decision::Reject(rej),
        },
        Target::Page(page) => match page {
            Err(rej) => Decision::Reject(rej),
            Ok(page) => match req.method.as_str() {
                "GET" => Decision::Serve {
                    page,
                    head_only: false,
                },
                "HEAD" => Decision::Serve {
                    page,
                    head_only: true,
                },
                _ => Decision::Reject(Rejection {
                    status: 405,
                    reason: format!("method {} not allowed; use GET or HEAD", req.method),
                    headers: "Allow: GET, HEAD\r\n",
                }),
            },
        },
        Target::Publish(room) => Decision::Publish { room },
        Target::WsNotFound => Decision::Reject(Rejection::new(
            404,
            "no such WebSocket endpoint; use /ws/chat/<room>/ or /ws/echo/",
        )),
        Target::NotFound => Decision::Reject(Rejection::new(404, "not found")),
    }
}

/// RFC 6455 section 4.2.1 checks, in the order a client most needs to hear.
fn validate_upgrade(req: &Request, origins: &OriginPolicy) -> Result<String, Rejection> {
    let is_websocket = req.upgrade.as_deref().is_some_and(|u| {
        u.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    });
    if req.method != "GET" {
        return Err(Rejection {
            status: 405,
            reason: format!(
                "method {} not allowed; a WebSocket upgrade uses GET",
                req.method
            ),
            headers: "Allow: GET\r\n",
        });
    }
    if !is_websocket {
        return Err(Rejection {
            status: 426,
            reason: "this is a WebSocket endpoint: send Upgrade: websocket".into(),
            headers: "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        });
    }
    if !req.http11 {
        return Err(Rejection::new(400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    if !req.connection_upgrade {
        return Err(Rejection::new(
            400,
            "the Connection header must include the upgrade token",
        ));
    }
    if req.ws_version.as_deref() != Some("13") {
        return Err(Rejection {
            status: 426,
            reason: "unsupported Sec-WebSocket-Version; this relay speaks version 13".into(),
            headers: "Sec-WebSocket-Version: 13\r\n",
        });
    }
    let key = req.ws_key.as_deref().unwrap_or("");
    if !is_valid_key(key) {
        return Err(Rejection::new(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    if !origins.allows(req.origin.as_deref()) {
        return Err(Rejection::new(403, "origin not allowed"));
    }
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// A 16-byte value in base64 is 22 alphabet characters and `==`.
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// The `101 Switching Protocols` answer.
pub fn upgrade_response(accept: &str) -> Vec<u8> {
    upgrade_response_with(accept, None)
}

/// The `101` answer, with the extension agreed on if any.
pub fn upgrade_response_with(accept: &str, extensions: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(e) = extensions {
        let _ = write!(head, "Sec-WebSocket-Extensions: {e}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A complete response with a body. `close` adds `Connection: close`.
pub fn response(
    status: u16,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    head_only: bool,
    close: bool,
) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\nServer: roomcast\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}",
        reason_phrase(status),
        body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The plain-text answer to a rejection; the connection is closed after it.
pub fn rejection_response(rej: &Rejection) -> Vec<u8> {
    let body = format!(
        "{} {}: {}\n",
        rej.status,
        reason_phrase(rej.status),
        rej.reason
    );
    response(
        rej.status,
        "text/plain; charset=utf-8",
        rej.headers,
        body.as_bytes(),
        false,
        true,
    )
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(lines: &[&str]) -> Vec<u8> {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    fn upgrade(path: &str, extra: &[&str]) -> Vec<u8> {
        let mut lines = vec![
            format!("GET {path} HTTP/1.1"),
            "Host: 127.0.0.1:8000".into(),
            "Upgrade: websocket".into(),
            "Connection: keep-alive, Upgrade".into(),
            format!("Sec-WebSocket-Key: {KEY}"),
            "Sec-WebSocket-Version: 13".into(),
        ];
        for e in extra {
            let name = e.split(':').next().unwrap();
            lines.retain(|l| !l.starts_with(&format!("{name}:")));
            if !e.ends_with(": <drop>") {
                lines.push(e.to_string());
            }
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        head(&refs)
    }

    fn decide_bytes(bytes: &[u8]) -> Decision {
        let (req, _) = parse_head(bytes, 8192).unwrap().unwrap();
        decide(&req, &OriginPolicy::default())
    }

    fn status(bytes: &[u8]) -> u16 {
        match decide_bytes(bytes) {
            Decision::Reject(r) => r.status,
            Decision::Upgrade { .. } => 101,
            Decision::Serve { .. } => 200,
            Decision::Publish { room: Ok(_) } => 202,
            Decision::Publish { room: Err(r) } => r.status,
        }
    }

    #[test]
    fn rfc6455_section_1_3_accept_key() {
        match decide_bytes(&upgrade("/ws/chat/lobby/", &[])) {
            Decision::Upgrade { route, accept } => {
                assert_eq!(route, WsRoute::Chat("lobby".into()));
                assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
            }
            other => panic!("{other:?}"),
        }
    }

    /// SPEC section 1: one row per request and the status it gets.
    #[test]
    fn status_table() {
        let long_room = format!("/ws/chat/{}/", "a".repeat(96));
        let max_room = format!("/ws/chat/{}/", "a".repeat(95));
        let rows: Vec<(Vec<u8>, u16)> = vec![
            (upgrade("/ws/chat/lobby/", &[]), 101),
            (upgrade("/ws/chat/lobby", &[]), 101),
            (upgrade("/ws/chat/a.b-c_D9/?x=1", &[]), 101),
            (upgrade(&max_room, &[]), 101),
            (upgrade("/ws/echo/", &[]), 101),
            (upgrade(&long_room, &[]), 400),
            (upgrade("/ws/chat/bad%20room/", &[]), 400),
            (upgrade("/ws/chat//", &[]), 400),
            (upgrade("/ws/chat/a/b/", &[]), 400),
            (upgrade("/ws/nope/", &[]), 404),
            (upgrade("/elsewhere", &[]), 404),
            (head(&["GET /ws/chat/lobby/ HTTP/1.1", "Host: x"]), 426),
            (upgrade("/ws/chat/lobby/", &["Upgrade: h2c"]), 426),
            (
                upgrade("/ws/chat/lobby/", &["Sec-WebSocket-Version: 8"]),
                426,
            ),
            (
                upgrade("/ws/chat/lobby/", &["Sec-WebSocket-Version: <drop>"]),
                426,
            ),
            (
                upgrade("/ws/chat/lobby/", &["Sec-WebSocket-Key: c2hvcnQ="]),
                400,
            ),
            (
                upgrade("/ws/chat/lobby/", &["Sec-WebSocket-Key: <drop>"]),
                400,
            ),
            (upgrade("/ws/chat/lobby/", &["Connection: keep-alive"]), 400),
            (
                upgrade(
                    "/ws/chat/lobby/",
                    &["Upgrade: WebSocket", "Connection: UPGRADE"],
                ),
                101,
            ),
            (
                head(&["POST /ws/chat/lobby/ HTTP/1.1", "Upgrade: websocket"]),
                405,
            ),
            (
                head(&[
                    "GET /ws/chat/lobby/ HTTP/1.0",
                    "Upgrade: websocket",
                    "Connection: upgrade",
                ]),
                400,
            ),
            (head(&["GET / HTTP/1.1"]), 200),
            (head(&["GET /nothing-here HTTP/1.1"]), 404),
            // The publish route: the loop checks method and token.
            (head(&["POST /publish/lobby/ HTTP/1.1"]), 202),
            (head(&["POST /publish/lobby HTTP/1.1"]), 202),
            (head(&["POST /publish/bad%20room/ HTTP/1.1"]), 400),
        ];
        for (bytes, want) in rows {
            assert_eq!(status(&bytes), want, "{}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn head_size_limit_and_partial_heads() {
        let full = upgrade("/ws/chat/lobby/", &[]);
        for cut in 0..full.len() - 1 {
            assert_eq!(parse_head(&full[..cut], 8192), Ok(None), "cut {cut}");
        }
        assert_eq!(parse_head(&full, 20).unwrap_err().status, 431);
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(300));
        assert_eq!(parse_head(endless.as_bytes(), 256).unwrap_err().status, 431);
        assert_eq!(
            parse_head(b"\x00\x01garbage\r\n\r\n", 8192)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn origins() {
        let p = OriginPolicy::new(&[
            "https://app.example.com".into(),
            "*.chat.example.org".into(),
            "localhost".into(),
        ]);
        assert!(p.allows(Some("https://app.example.com")));
        assert!(!p.allows(Some("http://app.example.com")));
        assert!(p.allows(Some("https://eu.chat.example.org")));
        assert!(p.allows(Some("https://eu.chat.example.org:8443")));
        assert!(!p.allows(Some("https://chat.example.org")));
        assert!(!p.allows(Some("https://evilchat.example.org")));
        assert!(p.allows(Some("http://localhost:8000")));
        assert!(!p.allows(Some("https://evil.com")));
        assert!(p.allows(None));
        for malformed in [
            "app.example.com",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "https://",
            "null",
            "https://app.example.com:",
            "1https://app.example.com",
        ] {
            assert!(!p.allows(Some(malformed)), "{malformed}");
        }
        assert!(
            OriginPolicy::default().allows(Some("null")),
            "any origin means any"
        );
        assert!(OriginPolicy::new(&[]).allows_any());
        let (req, _) = parse_head(&upgrade("/ws/echo/", &["Origin: https://evil.com"]), 8192)
            .unwrap()
            .unwrap();
        assert!(matches!(decide(&req, &p), Decision::Reject(r) if r.status == 403));
    }

    /// RFC 9112 section 6.3: no request whose length a proxy could read
    /// differently (request smuggling).
    #[test]
    fn ambiguous_lengths_and_repeated_origins() {
        let rows: &[(&str, Option<u64>)] = &[
            ("Content-Length: 5\r\n", Some(5)),
            ("Content-Length: 5\r\nContent-Length: 6\r\n", None),
            ("Content-Length: 5\r\nContent-Length: 5\r\n", None),
            ("Content-Length: +0\r\n", None),
            ("Content-Length: -1\r\n", None),
            ("Content-Length: 0x10\r\n", None),
            ("Content-Length: 1 2\r\n", None),
            ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", None),
            (
                "Origin: https://a.example\r\nOrigin: https://b.example\r\n",
                None,
            ),
        ];
        for (headers, length) in rows {
            let head = format!("POST /publish/x/ HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
            match (parse_head(head.as_bytes(), 8192), length) {
                (Ok(Some((req, _))), Some(n)) => assert_eq!(req.content_length, Some(*n)),
                (Err(rej), None) => assert_eq!(rej.status, 400, "{headers}"),
                (other, _) => panic!("{headers:?}: {other:?}"),
            }
        }
    }
}
