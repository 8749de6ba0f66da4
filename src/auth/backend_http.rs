//! The HTTP/1.1 exchange with the `--auth-url` back end, sans-IO: the
//! request bytes for one join ([`write_request`]), the parser of the answer
//! ([`parse_response`]) and what the answer decides ([`verdict_of`]).
//!
//! Invariants:
//! - The parser never consumes on "need more": it is called again with the
//!   whole buffer, and returns [`Parsed::Partial`] until one response is
//!   complete. It holds no state, so a response split anywhere parses the
//!   same.
//! - Bounded: a head (interim `1xx` heads included) over
//!   [`ResponseLimits::head`] and a 200's body over [`ResponseLimits::body`]
//!   are errors, and no response may take more than `head + 2 * body` bytes
//!   of the buffer (chunk framing included). A 401, 403 or other status
//!   decides on its head: a body past the bound is not read, and the
//!   connection is then not reused.
//! - A response is reusable (`keep_alive`) only when it is HTTP/1.1 without
//!   `Connection: close` and its end is known from `Content-Length` or the
//!   chunked framing; a body delimited by the close of the connection is read
//!   to EOF. `Transfer-Encoding` other than `chunked`, or together with
//!   `Content-Length`, or conflicting lengths, are errors (the classic
//!   request-smuggling ambiguities).
//! - Only `http://` URLs: the back end is expected on a private address.

use super::{identity, Grant, Refusal, Unavailable, Verdict};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// `--auth-url`, parsed once at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUrl {
    /// As written: a name, an IPv4 address or a bracketed IPv6 address.
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
}

/// Bounds on one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Bytes of response head.
    pub head: usize,
    /// Bytes of a 200's body, and of any body read to reuse the connection.
    pub body: usize,
}

/// What [`parse_response`] found in the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole response yet: read more and call again with all of it.
    Partial,
    Complete(Response),
}

/// One complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The body, de-chunked; empty when it was skipped (a non-200 whose
    /// body passed the bound).
    pub body: Vec<u8>,
    /// The connection may carry the next request.
    pub keep_alive: bool,
    /// Bytes of the buffer this response took.
    pub len: usize,
}

/// Why a response cannot be used (each maps to a 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// Not an HTTP/1.x response head.
    Head,
    /// The head passed [`ResponseLimits::head`].
    HeadTooLarge,
    /// `Content-Length`/`Transfer-Encoding` missing the rules above.
    Framing,
    /// A chunk size line or chunk end that does not parse.
    Chunk,
    /// A 200's body over [`ResponseLimits::body`].
    BodyTooLarge,
    /// The connection closed before the response was complete.
    Truncated,
}

/// The bounds the auth thread uses.
pub const LIMITS: ResponseLimits = ResponseLimits {
    head: 8_192,
    body: 16_384,
};

/// Headers read per response head.
const MAX_HEADERS: usize = 32;

/// The longest chunk-size line or trailer line.
const MAX_CHUNK_LINE: usize = 1_024;

impl AuthUrl {
    /// Parses `http://host[:port][/path][?query]`.
    pub fn parse(url: &str) -> Result<AuthUrl, String> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(
                    "https:// is not supported: roomcast asks its back end over plain HTTP, so give a private http:// address (e.g. http://127.0.0.1:8001/roomcast/auth/)".into(),
                )
            }
            _ => return Err(format!("'{url}' is not an http:// URL")),
        };
        if let Some(bad) = rest.chars().find(|c| !c.is_ascii_graphic() || *c == '#') {
            return Err(format!(
                "'{url}' has a character that cannot go in a request line ({bad:?}); percent-encode it"
            ));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err("user:password@ in the URL is not supported".into());
        }
        let (host, port) = split_port(authority)?;
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        };
        if !host_ok {
            return Err(format!("'{url}' has no valid host"));
        }
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(AuthUrl {
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The host to connect to (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for AuthUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.target)
    }
}

fn split_port(authority: &str) -> Result<(&str, u16), String> {
    let colon = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => i,
        _ => return Ok((authority, 80)),
    };
    let port = authority[colon + 1..]
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("'{authority}' has no valid port"))?;
    Ok((&authority[..colon], port))
}

/// Appends the request for a join to `room`: `GET <url>?room=<room>` with the
/// client's `Cookie` and `Origin`. Refuses header values that could not be
/// one header line (control characters), so a client cannot add headers.
pub fn write_request(
    out: &mut Vec<u8>,
    url: &AuthUrl,
    room: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<(), Unavailable> {
    let forwardable = |v: &str| v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7F));
    if !cookie.into_iter().chain(origin).all(forwardable) {
        return Err(Unavailable::BadHeader);
    }
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(url.target.as_bytes());
    let separator: &[u8] = if !url.target.contains('?') {
        b"?"
    } else if url.target.ends_with(['?', '&']) {
        b""
    } else {
        b"&"
    };
    out.extend_from_slice(separator);
    out.extend_from_slice(b"room=");
    for &b in room.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(url.host.as_bytes());
    if url.port != 80 {
        out.extend_from_slice(format!(":{}", url.port).as_bytes());
    }
    out.extend_from_slice(b"\r\nAccept: application/json\r\nUser-Agent: roomcast/");
    out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in [("Cookie", cookie), ("Origin", origin)] {
        if let Some(v) = value {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Parses one response from the start of `buf`; `eof`: the connection has
/// closed after these bytes.
pub fn parse_response(
    buf: &[u8],
    eof: bool,
    limits: &ResponseLimits,
) -> Result<Parsed, ResponseError> {
    let max_raw = limits.head + 2 * limits.body;
    let mut start = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let head_len = match head.parse(&buf[start..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > limits.head => {
                return Err(ResponseError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) if eof => return Err(ResponseError::Truncated),
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::HeadTooLarge),
            Err(_) => return Err(ResponseError::Head),
        };
        let body_start = start + head_len;
        if body_start > limits.head {
            return Err(ResponseError::HeadTooLarge);
        }
        let status = head.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            // An interim response (100 Continue, 103 Early Hints): the real
            // one follows.
            start = body_start;
            continue;
        }
        let framing = Framing::of(&head)?;
        let reusable = head.version == Some(1) && !framing.close;
        let rest = &buf[body_start..];
        let complete = |body: Vec<u8>, body_len: usize, keep_alive: bool| {
            Ok(Parsed::Complete(Response {
                status,
                body,
                keep_alive,
                len: body_start + body_len,
            }))
        };
        // A refusal is decided by its status: a long body is not read.
        let skipped = || complete(Vec::new(), 0, false);
        let over = |status: u16| {
            if status == 200 {
                Err(ResponseError::BodyTooLarge)
            } else {
                skipped()
            }
        };
        if status == 204 || status == 304 {
            return complete(Vec::new(), 0, reusable);
        }
        match framing.length {
            Length::Fixed(n) if n > limits.body as u64 => return over(status),
            Length::Fixed(n) => {
                let n = n as usize;
                if rest.len() < n {
                    return if eof {
                        Err(ResponseError::Truncated)
                    } else {
                        Ok(Parsed::Partial)
                    };
                }
                return complete(rest[..n].to_vec(), n, reusable);
            }
            Length::Chunked => match dechunk(rest, limits.body)? {
                // The raw bound applies whole or in pieces, so a response
                // is judged the same however it arrives.
                Dechunked::Done { len, .. } if body_start + len > max_raw => return over(status),
                Dechunked::Done { body, len } => return complete(body, len, reusable),
                Dechunked::TooLarge => return over(status),
                Dechunked::Partial if buf.len() > max_raw => return over(status),
                Dechunked::Partial if eof => return Err(ResponseError::Truncated),
                Dechunked::Partial => return Ok(Parsed::Partial),
            },
            Length::UntilClose if status != 200 => return skipped(),
            Length::UntilClose if rest.len() > limits.body => return over(status),
            Length::UntilClose if eof => return complete(rest.to_vec(), rest.len(), false),
            Length::UntilClose => return Ok(Parsed::Partial),
        }
    }
}

/// How a response's body ends.
enum Length {
    Fixed(u64),
    Chunked,
    UntilClose,
}

struct Framing {
    length: Length,
    /// `Connection: close`.
    close: bool,
}

impl Framing {
    fn of(head: &httparse::Response<'_, '_>) -> Result<Framing, ResponseError> {
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        for h in head.headers.iter() {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| ResponseError::Framing)?
                .trim_matches([' ', '\t']);
            if h.name.eq_ignore_ascii_case("content-length") {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ResponseError::Framing);
                }
                let n: u64 = value.parse().map_err(|_| ResponseError::Framing)?;
                if length.is_some_and(|m| m != n) {
                    return Err(ResponseError::Framing);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if chunked || !value.eq_ignore_ascii_case("chunked") {
                    return Err(ResponseError::Framing);
                }
                chunked = true;
            } else if h.name.eq_ignore_ascii_case("connection") {
                close |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"));
            }
        }
        let length = match (length, chunked) {
            (Some(_), true) => return Err(ResponseError::Framing),
            (Some(n), false) => Length::Fixed(n),
            (None, true) => Length::Chunked,
            (None, false) => Length::UntilClose,
        };
        Ok(Framing { length, close })
    }
}

enum Dechunked {
    Partial,
    TooLarge,
    Done { body: Vec<u8>, len: usize },
}

/// Decodes a chunked body (RFC 9112 section 7.1) from the start of `b`.
fn dechunk(b: &[u8], max_body: usize) -> Result<Dechunked, ResponseError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line) = line_at(b, pos)? else {
            return Ok(Dechunked::Partial);
        };
        let size_text = line.split(|&c| c == b';').next().unwrap_or(&[]);
        let size = chunk_size(size_text)?;
        pos += line.len() + 2;
        if size == 0 {
            // Trailer fields, ignored, up to the empty line.
            loop {
                let Some(trailer) = line_at(b, pos)? else {
                    return Ok(Dechunked::Partial);
                };
                pos += trailer.len() + 2;
                if trailer.is_empty() {
                    return Ok(Dechunked::Done { body, len: pos });
                }
            }
        }
        if size > (max_body - body.len()) as u64 {
            return Ok(Dechunked::TooLarge);
        }
        let size = size as usize;
        if b.len() < pos + size + 2 {
            return Ok(Dechunked::Partial);
        }
        body.extend_from_slice(&b[pos..pos + size]);
        if &b[pos + size..pos + size + 2] != b"\r\n" {
            return Err(ResponseError::Chunk);
        }
        pos += size + 2;
    }
}

/// The line starting at `pos`, without its CRLF; `None` when incomplete.
fn line_at(b: &[u8], pos: usize) -> Result<Option<&[u8]>, ResponseError> {
    let rest = &b[pos.min(b.len())..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(n) if n > MAX_CHUNK_LINE => Err(ResponseError::Chunk),
        Some(n) => Ok(Some(&rest[..n])),
        None if rest.len() > MAX_CHUNK_LINE => Err(ResponseError::Chunk),
        None => Ok(None),
    }
}

fn chunk_size(text: &[u8]) -> Result<u64, ResponseError> {
    let text = text.trim_ascii();
    if text.is_empty() || text.len() > 15 {
        return Err(ResponseError::Chunk);
    }
    let mut n: u64 = 0;
    for &c in text {
        let d = (c as char).to_digit(16).ok_or(ResponseError::Chunk)?;
        n = n * 16 + u64::from(d);
    }
    Ok(n)
}

/// What the back end's answer decides: 200 with `{"user": ..., "write":
/// ...}` admits (`user` a JSON scalar or null, default anonymous; `write` a
/// boolean, default true; other fields ignored), 401 and 403 refuse with
/// that status, anything else is a 503.
pub fn verdict_of(response: &Response) -> Verdict {
    match response.status {
        200 => grant_of(&response.body).ok_or(Refusal::BackendUnavailable(Unavailable::BadBody)),
        401 => Err(Refusal::BackendUnauthorized),
        403 => Err(Refusal::BackendForbidden),
        s => Err(Refusal::BackendUnavailable(Unavailable::Status(s))),
    }
}

fn grant_of(body: &[u8]) -> Option<Grant> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow, default)]
        user: Option<&'a RawValue>,
        #[serde(default)]
        write: Option<bool>,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return None;
    }
    let answer: Answer<'_> = serde_json::from_slice(body).ok()?;
    let user = match answer.user {
        Some(raw) => identity(raw.get()).ok()?,
        None => None,
    };
    Some(Grant {
        user,
        write: answer.write.unwrap_or(true),
    })
}

impl ResponseError {
    /// The 503's reason.
    pub fn unavailable(self) -> Unavailable {
        match self {
            ResponseError::Head | ResponseError::Framing | ResponseError::Chunk => {
                Unavailable::Malformed
            }
            ResponseError::HeadTooLarge | ResponseError::BodyTooLarge => Unavailable::Oversized,
            ResponseError::Truncated => Unavailable::Connection,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: ResponseLimits = ResponseLimits {
        head: 512,
        body: 64,
    };

    fn parse(raw: &str) -> Result<Parsed, ResponseError> {
        parse_response(raw.as_bytes(), false, &L)
    }

    fn done(
        status: u16,
        body: &str,
        keep_alive: bool,
        len: usize,
    ) -> Result<Parsed, ResponseError> {
        Ok(Parsed::Complete(Response {
            status,
            body: body.as_bytes().to_vec(),
            keep_alive,
            len,
        }))
    }

    #[test]
    fn urls() {
        let u = AuthUrl::parse("http://127.0.0.1:8001/roomcast/auth/").unwrap();
        assert_eq!((u.host(), u.port()), ("127.0.0.1", 8001));
        assert_eq!(u.to_string(), "http://127.0.0.1:8001/roomcast/auth/");
        let u = AuthUrl::parse("HTTP://backend.internal").unwrap();
        assert_eq!(u.to_string(), "http://backend.internal:80/");
        let u = AuthUrl::parse("http://[::1]:9000?x=1").unwrap();
        assert_eq!(
            (u.host(), u.to_string()),
            ("::1", "http://[::1]:9000/?x=1".into())
        );
        for bad in [
            "https://example.com/",
            "ftp://example.com/",
            "example.com/auth",
            "http://",
            "http://:80/",
            "http://host:0/",
            "http://host:99999/",
            "http://user:pw@host/",
            "http://host/a b",
            "http://host/a#frag",
            "http://[zz]/",
            "http://ho st/",
        ] {
            assert!(AuthUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_carry_room_cookie_and_origin() {
        let u = AuthUrl::parse("http://127.0.0.1:8001/auth/").unwrap();
        let mut out = Vec::new();
        write_request(
            &mut out,
            &u,
            "lobby",
            Some("sessionid=abc"),
            Some("http://x"),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!(
                "GET /auth/?room=lobby HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nAccept: application/json\r\nUser-Agent: roomcast/{}\r\nCookie: sessionid=abc\r\nOrigin: http://x\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        for (url, want) in [
            (
                "http://h/auth?a=1",
                "GET /auth?a=1&room=r%2Fx HTTP/1.1\r\nHost: h\r\n",
            ),
            ("http://h/auth?", "GET /auth?room=r%2Fx HTTP/1.1\r\n"),
            (
                "http://h/auth?a=1&",
                "GET /auth?a=1&room=r%2Fx HTTP/1.1\r\n",
            ),
        ] {
            let mut out = Vec::new();
            write_request(&mut out, &AuthUrl::parse(url).unwrap(), "r/x", None, None).unwrap();
            assert!(String::from_utf8(out).unwrap().starts_with(want), "{url}");
        }
        let mut out = Vec::new();
        assert_eq!(
            write_request(&mut out, &u, "lobby", Some("a=1\r\nX-Admin: 1"), None),
            Err(Unavailable::BadHeader)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn responses() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"user\": \"a\"}";
        // Content-Length counts 13 bytes here; one more makes it whole.
        assert_eq!(parse(ok), Ok(Parsed::Partial));
        let ok = format!("{ok} ");
        assert_eq!(parse(&ok), done(200, "{\"user\": \"a\"} ", true, ok.len()));
        // Any split parses the same, and nothing past the response is taken.
        for i in 0..ok.len() {
            assert_eq!(parse(&ok[..i]), Ok(Parsed::Partial), "split at {i}");
        }
        assert_eq!(
            parse(&format!("{ok}HTTP/1.1")),
            done(200, "{\"user\": \"a\"} ", true, ok.len())
        );
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(parse(chunked), done(200, "{\"a\":1}", true, chunked.len()));
        for i in 0..chunked.len() {
            assert_eq!(parse(&chunked[..i]), Ok(Parsed::Partial), "split at {i}");
        }
        let close = "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(close), done(401, "", false, close.len()));
        let old = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse(old), done(200, "{}", false, old.len()));
        let eof = "HTTP/1.1 200 OK\r\n\r\n{}";
        assert_eq!(parse(eof), Ok(Parsed::Partial));
        assert_eq!(
            parse_response(eof.as_bytes(), true, &L),
            done(200, "{}", false, eof.len())
        );
        let interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse(interim), done(204, "", true, interim.len()));
    }

    #[test]
    fn refusals_decide_on_their_head() {
        let big = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 100000\r\n\r\n{}",
            "x".repeat(10)
        );
        let head_len = big.len() - 10;
        assert_eq!(parse(&big), done(403, "", false, head_len));
        let until_close = "HTTP/1.1 500 Oops\r\n\r\n<html>";
        assert_eq!(
            parse(until_close),
            done(500, "", false, until_close.len() - 6)
        );
        let chunked = format!(
            "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{}\r\n40\r\n",
            "y".repeat(64)
        );
        assert!(
            matches!(parse(&chunked), Ok(Parsed::Complete(r)) if r.status == 403 && !r.keep_alive)
        );
    }

    #[test]
    fn hostile_responses_are_errors() {
        let cases: &[(&str, ResponseError)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n",
                ResponseError::BodyTooLarge,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                ResponseError::Framing,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                ResponseError::Framing,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
                ResponseError::Framing,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                ResponseError::Framing,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                ResponseError::Framing,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                ResponseError::Chunk,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
                ResponseError::Chunk,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX",
                ResponseError::Chunk,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n",
                ResponseError::BodyTooLarge,
            ),
            ("SSH-2.0-OpenSSH\r\n\r\n", ResponseError::Head),
            ("HTTP/2 200\r\n\r\n", ResponseError::Head),
            ("HTTP/1.1 200 OK\r\nbad header\r\n\r\n", ResponseError::Head),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw), Err(*want), "{raw:?}");
        }
        // Head bounds, with and without the end of the head in sight.
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(600));
        assert_eq!(parse(&long), Err(ResponseError::HeadTooLarge));
        assert_eq!(parse(&long[..550]), Err(ResponseError::HeadTooLarge));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "A: 1\r\n".repeat(40));
        assert_eq!(parse(&many), Err(ResponseError::HeadTooLarge));
        // Endless interim heads still count against the head bound.
        assert_eq!(
            parse(&"HTTP/1.1 100 Continue\r\n\r\n".repeat(30)),
            Err(ResponseError::HeadTooLarge)
        );
        // One-byte chunks cannot make the buffer grow past head + 2 * body.
        let tiny = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            "1;aaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n".repeat(40)
        );
        assert_eq!(parse(&tiny), Err(ResponseError::BodyTooLarge));
        // Truncated by the peer.
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", true, &L),
            Err(ResponseError::Truncated)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 20", true, &L),
            Err(ResponseError::Truncated)
        );
    }

    #[test]
    fn verdicts() {
        let r = |status: u16, body: &str| Response {
            status,
            body: body.as_bytes().to_vec(),
            keep_alive: true,
            len: 0,
        };
        let grant = |user: Option<&str>, write| {
            Ok(Grant {
                user: user.map(Into::into),
                write,
            })
        };
        assert_eq!(
            verdict_of(&r(200, r#"{"user": "ann", "write": false}"#)),
            grant(Some("\"ann\""), false)
        );
        assert_eq!(
            verdict_of(&r(200, r#" {"user": 7, "extra": [1]}"#)),
            grant(Some("7"), true)
        );
        assert_eq!(verdict_of(&r(200, r#"{"user": null}"#)), grant(None, true));
        assert_eq!(verdict_of(&r(200, "{}")), grant(None, true));
        assert_eq!(
            verdict_of(&r(401, "whatever")),
            Err(Refusal::BackendUnauthorized)
        );
        assert_eq!(verdict_of(&r(403, "")), Err(Refusal::BackendForbidden));
        assert_eq!(
            verdict_of(&r(500, "{}")),
            Err(Refusal::BackendUnavailable(Unavailable::Status(500)))
        );
        assert_eq!(
            verdict_of(&r(302, "")),
            Err(Refusal::BackendUnavailable(Unavailable::Status(302)))
        );
        for bad in [
            "",
            "<html>login</html>",
            "[1]",
            r#"{"user": {"id": 1}}"#,
            r#"{"write": "yes"}"#,
            r#"{"user": "a""#,
            r#"{"user": "a", "user": "b"}"#,
        ] {
            assert_eq!(
                verdict_of(&r(200, bad)),
                Err(Refusal::BackendUnavailable(Unavailable::BadBody)),
                "{bad}"
            );
        }
    }
}
