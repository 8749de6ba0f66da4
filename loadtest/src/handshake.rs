//! The client's opening handshake (RFC 6455 section 4.1): the upgrade request with a
//! random `Sec-WebSocket-Key`, and the check of the server's `101` answer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::io::Write;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// A response head longer than this is not a WebSocket server talking.
pub const MAX_HEAD: usize = 16 * 1024;

pub fn new_key() -> [u8; 16] {
    fastrand::u128(..).to_ne_bytes()
}

/// Writes the upgrade request into `out`, offering `extensions` when given.
pub fn write_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    origin: Option<&str>,
    extensions: Option<&str>,
    key: &[u8; 16],
) {
    let _ = write!(
        out,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
        STANDARD.encode(key)
    );
    if let Some(o) = origin {
        let _ = write!(out, "Origin: {o}\r\n");
    }
    if let Some(e) = extensions {
        let _ = write!(out, "Sec-WebSocket-Extensions: {e}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The `Sec-WebSocket-Accept` value a server must answer to `key`.
pub fn accept_for(key: &[u8; 16]) -> String {
    let mut h = Sha1::new();
    h.update(STANDARD.encode(key).as_bytes());
    h.update(GUID);
    STANDARD.encode(h.finalize())
}

/// A valid `101` answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgraded {
    /// Bytes of the response head (frames may follow).
    pub head_len: usize,
    /// The `Sec-WebSocket-Extensions` answer, if any.
    pub extensions: Option<String>,
}

/// Checks the response head at the start of `buf`. `Ok(None)`: not complete yet.
pub fn parse_response(buf: &[u8], key: &[u8; 16]) -> Result<Option<Upgraded>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err("response head too long".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad HTTP response: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(format!("HTTP {code} instead of 101"));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("101 without Upgrade: websocket".into());
    }
    if !header("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return Err("101 without Connection: upgrade".into());
    }
    if header("sec-websocket-accept").as_deref() != Some(accept_for(key).as_str()) {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    // Several extension headers are one comma-separated list (RFC 7230 section 3.2.2).
    let extensions: Vec<String> = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        .collect();
    Ok(Some(Upgraded {
        head_len: n,
        extensions: (!extensions.is_empty()).then(|| extensions.join(", ")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_the_rfc_example() {
        // RFC 6455 section 1.3: key "dGhlIHNhbXBsZSBub25jZQ==" is the 16 bytes "the sample nonce".
        let key: [u8; 16] = *b"the sample nonce";
        assert_eq!(accept_for(&key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn validates_the_101() {
        let key: [u8; 16] = *b"the sample nonce";
        let ok =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        assert_eq!(
            parse_response(ok, &key),
            Ok(Some(Upgraded {
                head_len: ok.len() - 2,
                extensions: None
            }))
        );
        assert_eq!(parse_response(&ok[..20], &key), Ok(None));
        let bad = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_response(bad, &key).unwrap_err().contains("403"));
        let wrong = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(parse_response(wrong, &key).is_err());
    }

    #[test]
    fn request_carries_key_and_origin() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "127.0.0.1:1",
            "/ws/chat/r0/",
            Some("http://127.0.0.1:1"),
            Some(crate::deflate::OFFER),
            b"the sample nonce",
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("GET /ws/chat/r0/ HTTP/1.1\r\n"));
        assert!(s.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert!(s.contains("Origin: http://127.0.0.1:1\r\n"));
        assert!(
            s.contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
        );
        assert!(s.ends_with("\r\n\r\n"));
    }
}
