//! A scripted stand-in for Redis on `127.0.0.1:0`, for the faults a real
//! `redis-server` cannot be made to commit: a reply that never ends, bytes
//! trickled one at a time. Each connection the relay opens runs the test's
//! script on its own thread; the script reads the relay's commands and
//! writes whatever it likes. Every read has a deadline, and a script ends
//! when the relay closes its connection.

use super::TIMEOUT;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What Redis 7 answers to `HELLO 3`, cut down to one field (the relay
/// reads none of them).
pub const HELLO_REPLY: &[u8] = b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n";

pub struct FakeRedis {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeRedis {
    /// Listens, and runs `script` on every connection accepted.
    pub fn start(script: impl Fn(FakeConn) + Send + Sync + 'static) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let (count, stopping) = (connections.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        stream.set_nonblocking(false).unwrap();
                        stream.set_nodelay(true).unwrap();
                        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
                        let script = script.clone();
                        std::thread::spawn(move || script(FakeConn::new(stream)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("fake Redis accept: {e}"),
                }
            }
        });
        FakeRedis {
            port,
            connections,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits (with a deadline) until at least `n` connections were accepted.
    pub fn wait_connections(&self, n: usize) {
        let deadline = Instant::now() + TIMEOUT;
        while self.connections() < n {
            assert!(
                Instant::now() < deadline,
                "the relay opened {} connections to the fake Redis, expected {n}",
                self.connections()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// One connection from the relay, as a script sees it.
pub struct FakeConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl FakeConn {
    fn new(stream: TcpStream) -> FakeConn {
        FakeConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// The relay's next command, as its arguments; `None` once the relay
    /// has closed the connection (or said nothing for [`TIMEOUT`]).
    pub fn command(&mut self) -> Option<Vec<Vec<u8>>> {
        loop {
            if let Some((args, used)) = parse_command(&self.buf) {
                self.buf.drain(..used);
                return Some(args);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Writes `bytes`; an error means the relay has closed the connection.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads `HELLO` and answers it as Redis does.
    pub fn hello(&mut self) -> Option<()> {
        let cmd = self.command()?;
        assert_eq!(cmd[0], b"HELLO", "the relay starts with HELLO");
        self.write(HELLO_REPLY).ok()
    }

    /// Answers a `SUBSCRIBE` or `UNSUBSCRIBE` with one confirmation per channel.
    pub fn confirm(&mut self, cmd: &[Vec<u8>]) -> Option<()> {
        let kind = String::from_utf8_lossy(&cmd[0]).to_lowercase();
        for (n, channel) in cmd[1..].iter().enumerate() {
            let mut push =
                format!(">3\r\n${}\r\n{kind}\r\n${}\r\n", kind.len(), channel.len()).into_bytes();
            push.extend_from_slice(channel);
            push.extend_from_slice(format!("\r\n:{}\r\n", n + 1).as_bytes());
            self.write(&push).ok()?;
        }
        Some(())
    }
}

/// One RESP array of bulk strings (how clients send commands) from the start
/// of `buf`: its arguments and length, or `None` while incomplete.
fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    let line = |at: usize| -> Option<(usize, usize)> {
        let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    };
    assert_eq!(buf.first().copied().unwrap_or(b'*'), b'*', "a command");
    let (count, mut at) = line(0)?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, start) = line(at)?;
        let arg = buf.get(start..start + len)?;
        buf.get(start + len..start + len + 2)?;
        args.push(arg.to_vec());
        at = start + len + 2;
    }
    Some((args, at))
}
