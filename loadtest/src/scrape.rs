//! A plain HTTP/1.1 `GET` of a Prometheus `/metrics` page over one blocking TCP socket
//! (the soak mode reads roomcast's gauges with it), and the text format's parser.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest response read.
const MAX_RESPONSE: usize = 1 << 20;

/// GETs `path` from `addr` (`host` for the Host header) and returns the body of a `200`.
pub fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            return Err("response over 1 MiB".into());
        }
        // A server that keeps the connection open despite `Connection: close` is done
        // once Content-Length bytes of body are in.
        if let Some((head, body)) = split_head(&buf) {
            if content_length(head).is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    let (head, body) = split_head(&buf).ok_or("no complete HTTP response")?;
    let status = head
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered {status:?}"));
    }
    let body = match content_length(head) {
        Some(len) => &body[..len.min(body.len())],
        None => body,
    };
    Ok(String::from_utf8_lossy(body).into_owned())
}

fn split_head(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = crate::payload::find(buf, b"\r\n\r\n")?;
    Some((&buf[..at], &buf[at + 4..]))
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// The samples without labels of a Prometheus text page: `name value` lines.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let value = it.next()?.parse().ok()?;
            (!name.contains('{')).then(|| (name.to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_unlabelled_samples() {
        let m = parse_metrics(
            "# HELP roomcast_connections Open.\n# TYPE roomcast_connections gauge\n\
             roomcast_connections 3\nroomcast_rooms 1\nroomcast_closes_total{code=\"1000\"} 7\n\
             roomcast_uptime_seconds 1.500\n",
        );
        assert_eq!(m.get("roomcast_connections"), Some(&3.0));
        assert_eq!(m.get("roomcast_rooms"), Some(&1.0));
        assert_eq!(m.get("roomcast_uptime_seconds"), Some(&1.5));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn gets_a_body_even_from_a_server_that_keeps_the_connection_open() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            read_head(&mut s);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nroomcast_rooms 2")
                .unwrap();
            // Hold the connection open until the client has its answer: a
            // client that waited for EOF would time out instead.
            let _ = done_rx.recv_timeout(Duration::from_secs(30));
        });
        let body = http_get(addr, "x", "/metrics", Duration::from_secs(5));
        let _ = done_tx.send(());
        assert_eq!(body.unwrap(), "roomcast_rooms 2");
        t.join().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            read_head(&mut s);
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            // Close only after the client has: closing with its bytes unread
            // would reset the connection before it reads the answer.
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.read_to_end(&mut Vec::new());
        });
        let err = http_get(addr, "x", "/metrics", Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("404"), "{err}");
        t.join().unwrap();
    }

    /// Reads a whole request head, however the client split it.
    fn read_head(s: &mut std::net::TcpStream) {
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
    }
}
