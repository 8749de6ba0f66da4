//! A TCP proxy on `127.0.0.1:0` that forwards every byte between its
//! clients and an upstream port (a `redis-server`) after a fixed delay each
//! way, as a Redis 50 ms away would: a command reaches Redis `delay` after
//! it was written, and its reply comes back `delay` after Redis wrote it.
//! Order and content are kept; only time is added (bandwidth is not
//! limited). Each connection is pumped by two threads per direction, one
//! reading (stamping each chunk with when it may go out) and one writing it
//! then, so a slow write never delays the reading. Nothing is held past a
//! connection's end: the EOF (or error) of one side goes on to the other
//! after the bytes before it. Dropping the proxy closes every connection
//! and joins its threads. Only 127.0.0.1 is ever touched.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct DelayProxy {
    /// The port clients connect to.
    pub port: u16,
    delay: Duration,
    stop: Arc<AtomicBool>,
    /// Every socket of every connection, to shut down on drop.
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    acceptor: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl DelayProxy {
    /// Forwards to `127.0.0.1:upstream_port`, `delay` each way.
    pub fn start(upstream_port: u16, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the delay proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = {
            let (stop, sockets, accepted) = (stop.clone(), sockets.clone(), accepted.clone());
            std::thread::Builder::new()
                .name("delay-proxy".into())
                .spawn(move || accept_loop(listener, upstream_port, delay, stop, sockets, accepted))
                .unwrap()
        };
        DelayProxy {
            port,
            delay,
            stop,
            sockets,
            accepted,
            acceptor: Some(acceptor),
        }
    }

    /// `redis://127.0.0.1:PORT/0`, as given to `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The delay added each way.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }

    /// Closes every connection now open (both ways, bytes in flight
    /// dropped), as a network failure would; the proxy keeps accepting.
    pub fn cut(&self) {
        for s in self.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut();
        if let Some(acceptor) = self.acceptor.take() {
            if let Ok(pumps) = acceptor.join() {
                // The acceptor has stopped: no socket comes after the cut.
                self.cut();
                for p in pumps {
                    let _ = p.join();
                }
            }
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    upstream_port: u16,
    delay: Duration,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
) -> Vec<JoinHandle<()>> {
    let mut pumps = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
            // Nothing upstream: the client sees its connection closed.
            drop(client);
            continue;
        };
        accepted.fetch_add(1, Ordering::AcqRel);
        client.set_nonblocking(false).unwrap();
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        {
            let mut all = sockets.lock().unwrap();
            all.push(client.try_clone().unwrap());
            all.push(upstream.try_clone().unwrap());
        }
        let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        pumps.extend(pump(client, upstream, delay));
        pumps.extend(pump(u2, c2, delay));
    }
    pumps
}

/// Moves bytes from `from` to `to`, each chunk `delay` after it was read.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> [JoinHandle<()>; 2] {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return, // the sender's drop is the EOF
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let writer = std::thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    [reader, writer]
}
