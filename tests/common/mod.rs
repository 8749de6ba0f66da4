//! Shared test harness: an in-process relay on 127.0.0.1:0, tungstenite
//! clients, and raw sockets for hand-made frames. Every socket has a read
//! timeout, so a stuck loop fails the test instead of hanging it, and the
//! relay thread is joined with a deadline when the test ends.
#![allow(dead_code)]

pub mod delay_proxy;
pub mod fake_redis;
pub mod redis;

use roomcast::{Config, Server, ShutdownHandle};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Relay {
    pub addr: SocketAddr,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<roomcast::RunSummary>>,
}

impl Relay {
    pub fn start() -> Relay {
        Relay::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Relay {
        let mut config = Config::for_address("127.0.0.1:0".parse().unwrap());
        tweak(&mut config);
        let server = Server::bind(&config).expect("relay binds");
        let addr = server.local_addr();
        let handle = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run().expect("relay runs"));
        Relay {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn chat(&self, room: &str) -> Client {
        connect(&self.url(&format!("/ws/chat/{room}/")))
    }

    pub fn echo(&self) -> Client {
        connect(&self.url("/ws/echo/"))
    }

    /// Starts a graceful shutdown and waits (with a deadline) for the loop.
    pub fn stop(&mut self) -> roomcast::RunSummary {
        self.handle.shutdown();
        let thread = self.thread.take().expect("running");
        join_within(thread, Duration::from_secs(30))
    }

    /// `GET path` over a fresh connection; returns (status, head, body).
    pub fn get(&self, path: &str) -> (u16, String, String) {
        http_exchange(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    }

    /// A metric's value from `/metrics` (0 if absent).
    pub fn metric(&self, name: &str) -> u64 {
        metric_at(self.addr, name)
    }

    /// Waits until `/metrics` shows `name` at `value`.
    pub fn wait_metric(&self, name: &str, value: u64) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let now = self.metric(name);
            if now == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed at {now}, expected {value}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.thread.is_some() && !std::thread::panicking() {
            self.stop();
        } else if self.thread.is_some() {
            self.handle.shutdown();
        }
    }
}

/// A metric's value from the `/metrics` of the relay at `addr` (0 if absent).
pub fn metric_at(addr: SocketAddr, name: &str) -> u64 {
    let (_, _, body) = http_exchange(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    metric_in(&body, name)
}

/// A metric's value in a `/metrics` body (0 if absent).
pub fn metric_in(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

pub fn join_within<T: Send + 'static>(thread: JoinHandle<T>, limit: Duration) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(thread.join());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => panic!("relay thread panicked"),
        Err(_) => panic!("relay did not stop within {limit:?}"),
    }
}

pub type Client = WebSocket<TcpStream>;

pub fn connect(url: &str) -> Client {
    let host = url.trim_start_matches("ws://").split('/').next().unwrap();
    let stream = TcpStream::connect(host).expect("tcp connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client::client(url, stream).expect("websocket handshake");
    ws
}

pub fn send_text(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).expect("send");
}

/// The next data message as text (pings are answered by tungstenite).
pub fn recv_text(ws: &mut Client) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return t.to_string(),
            Message::Binary(b) => return format!("<binary {} bytes>", b.len()),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(c) => panic!("unexpected close: {c:?}"),
        }
    }
}

pub fn recv_json(ws: &mut Client) -> serde_json::Value {
    let text = recv_text(ws);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Sends `{"message": value}`.
pub fn say(ws: &mut Client, value: serde_json::Value) {
    send_text(ws, &serde_json::json!({ "message": value }).to_string());
}

/// Reads until the relay closes; returns the close code it sent.
pub fn recv_close(ws: &mut Client) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return u16::from(frame.code),
            Ok(Message::Close(None)) => return 1005,
            Ok(_) => {}
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

// ---- raw sockets and hand-made frames ----------------------------------

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Opens a raw socket and completes the upgrade on `path`.
pub fn raw_ws(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Sends a raw request and reads the whole response until EOF.
pub fn http_exchange(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("response until EOF");
    let text = String::from_utf8_lossy(&all).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// A masked client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    roomcast::wire::frame::encode_client_frame(fin, opcode, payload, [0x12, 0x34, 0x56, 0x78])
}

/// A server frame read from a raw socket: (fin, opcode, payload).
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let mut len = (h[1] & 0x7F) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b)?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b)?;
        len = u64::from_be_bytes(b);
    }
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    Ok((h[0] & 0x80 != 0, h[0] & 0x0F, payload))
}

/// Reads frames until a close frame; returns its code and reason, after
/// answering it and checking the relay then closes the TCP connection.
pub fn expect_close(s: &mut TcpStream) -> (u16, String) {
    loop {
        let (_, op, payload) = read_frame(s).expect("a close frame before EOF");
        if op == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = String::from_utf8(payload[2..].to_vec()).unwrap();
            let _ = s.write_all(&frame(true, 0x8, &payload[..2]));
            let mut rest = Vec::new();
            s.read_to_end(&mut rest)
                .expect("the relay closes the TCP connection");
            return (code, reason);
        }
    }
}
