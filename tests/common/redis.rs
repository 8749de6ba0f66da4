//! A private `redis-server` per test (Debian's package, found on PATH) and a
//! tiny blocking RESP2 client written over `std::net::TcpStream`, so the
//! backplane tests talk to Redis the way channels_redis does without a Redis
//! crate. Every read has a deadline; the server is SIGKILLed when dropped.
//! Only PIDs this file started are ever signalled. A server may serve TLS
//! only ([`RedisServer::start_tls`]), with a CA and a certificate made at
//! test time in its own directory (never committed, removed with it).

use super::TIMEOUT;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child on `127.0.0.1:port`, without persistence.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    paused: bool,
    /// TLS only, with these files.
    tls: Option<TestPki>,
}

/// A certificate authority and a server certificate it signed, for
/// `127.0.0.1` and `localhost`, as PEM files.
pub struct TestPki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    /// Makes a new CA, and a server certificate signed by it, in `dir`.
    pub fn make(dir: &std::path::Path) -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "roomcast test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        leaf.distinguished_name.push(DnType::CommonName, "redis");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let pki = TestPki {
            ca: dir.join("ca.pem"),
            cert: dir.join("redis.pem"),
            key: dir.join("redis.key"),
        };
        std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
        std::fs::write(&pki.cert, cert.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        pki
    }
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match RedisServer::try_start_on(port) {
                Ok(server) => return server,
                // Another process took the port between our probe and the bind.
                Err(why) => last = why,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// Starts a server on `port` (e.g. one a relay was told about while no
    /// Redis was there yet).
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::try_start_on(port).unwrap_or_else(|why| panic!("{why}"))
    }

    fn try_start_on(port: u16) -> Result<RedisServer, String> {
        let dir = std::env::temp_dir().join(format!(
            "roomcast-redis-{}-{port}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            paused: false,
            tls: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// A server that speaks TLS only, with a certificate for 127.0.0.1
    /// signed by a CA of its own ([`RedisServer::ca_file`]).
    pub fn start_tls() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "roomcast-redis-{}-{port}-{}",
            std::process::id(),
            unique()
        ));
        let mut server = RedisServer {
            port,
            child: None,
            tls: Some(TestPki::make(&dir.join("pki"))),
            dir,
            paused: false,
        };
        server
            .spawn()
            .unwrap_or_else(|why| panic!("redis-server with TLS did not start: {why}"));
        server
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` with TLS), as given to `--redis`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("a TLS server").ca.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// SIGKILL, and wait until the process is gone (the port is then free).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Kills the server if it runs, then starts a new one on the same port
    /// and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old listener can linger for a moment after SIGKILL.
                Err(why) if Instant::now() < deadline => {
                    eprintln!("redis-server restart on {}: {why}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(why) => panic!("redis-server did not restart: {why}"),
            }
        }
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing (a stalled Redis).
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// A new client connection.
    pub fn client(&self) -> RespClient {
        RespClient::connect(self.port)
    }

    /// Subscribers of `channel` as Redis counts them (`PUBSUB NUMSUB`).
    pub fn numsub(&self, channel: &str) -> i64 {
        match self
            .client()
            .command(&[b"PUBSUB", b"NUMSUB", channel.as_bytes()])
        {
            Reply::Array(items) if items.len() == 2 => match items[1] {
                Reply::Integer(n) => n,
                ref other => panic!("PUBSUB NUMSUB: {other:?}"),
            },
            other => panic!("PUBSUB NUMSUB: {other:?}"),
        }
    }

    /// Waits (with a deadline) until `channel` has exactly `n` subscribers.
    pub fn wait_numsub(&self, channel: &str, n: i64) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let now = self.numsub(channel);
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{channel} has {now} subscribers on Redis port {}, expected {n}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// PUBLISH from a fresh connection; returns how many subscribers got it.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> i64 {
        self.client().publish(channel, payload)
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.pid();
        // SAFETY: kill(2) on the PID of the child this struct spawned and has
        // not yet reaped (kill() takes `child`, so it cannot be a reused PID).
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("redis.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new("redis-server");
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        // PR_SET_PDEATHSIG: if the test process dies (killed, aborted) the
        // server goes too, instead of holding its port forever. It fires when
        // the spawning thread ends, so a RedisServer stays on its test's thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(pki) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&pki.cert)
                .arg("--tls-key-file")
                .arg(&pki.key)
                .arg("--tls-ca-cert-file")
                .arg(&pki.ca)
                .args(["--tls-auth-clients", "no"]),
        };
        let mut child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--logfile", ""])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    panic!(
                        "redis-server is not on PATH: the backplane tests need a real Redis. \
                         Install the Debian package (apt-get install -y redis-server); \
                         tests/run-all.sh does that before `cargo test`"
                    )
                }
                format!("spawn redis-server: {e}")
            })?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "redis-server on port {} exited with {status}:\n{text}",
                    self.port
                ));
            }
            // A TLS server cannot be PINGed in clear: listening is enough.
            let up = match self.tls {
                None => ping(self.port),
                Some(_) => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
            };
            if up {
                self.child = Some(child);
                self.paused = false;
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn ping(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut client = RespClient::from_stream(stream);
    client.send(&[b"PING"]);
    matches!(client.read_reply(Duration::from_millis(500)), Some(Reply::Simple(s)) if s == "PONG")
}

// ---- a tiny RESP2 client ---------------------------------------------------

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

/// A blocking client: commands, PUBLISH, SUBSCRIBE and reading messages.
pub struct RespClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RespClient {
    pub fn connect(port: u16) -> RespClient {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to Redis on port {port}: {e}"));
        RespClient::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> RespClient {
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        RespClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a command and waits for its reply.
    pub fn command(&mut self, args: &[&[u8]]) -> Reply {
        self.send(args);
        self.read_reply(TIMEOUT)
            .unwrap_or_else(|| panic!("no reply from Redis to {:?}", show(args)))
    }

    /// PUBLISH `payload` (raw bytes) to `channel`; returns the receiver count.
    pub fn publish(&mut self, channel: &str, payload: &[u8]) -> i64 {
        match self.command(&[b"PUBLISH", channel.as_bytes(), payload]) {
            Reply::Integer(n) => n,
            other => panic!("PUBLISH {channel}: {other:?}"),
        }
    }

    /// SUBSCRIBE to `channel` and wait for the confirmation. The connection
    /// is then in subscriber mode: use [`RespClient::next_message`].
    pub fn subscribe(&mut self, channel: &str) {
        match self.command(&[b"SUBSCRIBE", channel.as_bytes()]) {
            Reply::Array(items) if items.first() == Some(&Reply::Bulk(b"subscribe".to_vec())) => {}
            other => panic!("SUBSCRIBE {channel}: {other:?}"),
        }
    }

    /// The next pub/sub message: (channel, payload), or None after `wait`.
    pub fn next_message_within(&mut self, wait: Duration) -> Option<(String, Vec<u8>)> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_reply(left)? {
                Reply::Array(items)
                    if items.len() == 3 && items[0] == Reply::Bulk(b"message".to_vec()) =>
                {
                    let mut items = items.into_iter().skip(1);
                    let (Some(Reply::Bulk(channel)), Some(Reply::Bulk(payload))) =
                        (items.next(), items.next())
                    else {
                        panic!("odd pub/sub message from Redis");
                    };
                    return Some((String::from_utf8_lossy(&channel).into_owned(), payload));
                }
                // Subscribe confirmations and the like.
                _ => continue,
            }
        }
    }

    /// The next pub/sub message, failing the test after [`TIMEOUT`].
    pub fn next_message(&mut self) -> (String, Vec<u8>) {
        self.next_message_within(TIMEOUT)
            .expect("no pub/sub message from Redis within the timeout")
    }

    pub fn send(&mut self, args: &[&[u8]]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out).expect("write to Redis");
    }

    /// Reads one whole reply, or None when `wait` passes first. A partial
    /// reply stays buffered, so a timeout never loses bytes.
    pub fn read_reply(&mut self, wait: Duration) -> Option<Reply> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf) {
                self.buf.drain(..used);
                return Some(reply);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("Redis closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read from Redis: {e}"),
            }
        }
    }
}

/// Parses one RESP2 reply from the start of `buf`: None while incomplete.
fn parse_reply(buf: &[u8]) -> Option<(Reply, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[1..end]).expect("RESP line is UTF-8");
    let after = end + 2;
    match buf[0] {
        b'+' => Some((Reply::Simple(line.to_string()), after)),
        b'-' => Some((Reply::Error(line.to_string()), after)),
        b':' => Some((Reply::Integer(line.parse().expect("RESP integer")), after)),
        b'$' => {
            let len: i64 = line.parse().expect("RESP bulk length");
            if len < 0 {
                return Some((Reply::Nil, after));
            }
            let len = len as usize;
            if buf.len() < after + len + 2 {
                return None;
            }
            Some((
                Reply::Bulk(buf[after..after + len].to_vec()),
                after + len + 2,
            ))
        }
        b'*' => {
            let n: i64 = line.parse().expect("RESP array length");
            if n < 0 {
                return Some((Reply::Nil, after));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut at = after;
            for _ in 0..n {
                let (item, used) = parse_reply(&buf[at..])?;
                items.push(item);
                at += used;
            }
            Some((Reply::Array(items), at))
        }
        other => panic!("unexpected RESP type byte {other:#04x}"),
    }
}

fn show(args: &[&[u8]]) -> Vec<String> {
    args.iter()
        .map(|a| String::from_utf8_lossy(&a[..a.len().min(64)]).into_owned())
        .collect()
}
