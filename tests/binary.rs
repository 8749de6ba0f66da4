//! The `roomcast` binary as an operator runs it: SIGTERM with messages in
//! flight, and running out of file descriptors.

mod common;
mod tls_support;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Binary {
    child: Child,
    addr: SocketAddr,
}

impl Binary {
    /// Starts the binary on a free port, optionally under an open-file limit.
    fn start(args: &[&str], nofile: Option<u64>) -> Binary {
        let mut binary = Binary::spawn(args, nofile, false);
        binary.wait_listening();
        binary
    }

    /// Starts the binary serving TLS, and waits for its handshakes.
    fn start_tls(args: &[&str], _pki: &tls_support::Pki) -> Binary {
        let mut binary = Binary::spawn(args, None, false);
        // A TCP connect is enough to know it listens.
        binary.wait_listening();
        binary
    }

    /// Starts the binary where io_uring_setup fails with ENOSYS, as under
    /// Docker's default seccomp profile; does not wait for it to listen.
    fn spawn_without_io_uring(args: &[&str]) -> Binary {
        Binary::spawn(args, None, true)
    }

    fn spawn(args: &[&str], nofile: Option<u64>, deny_io_uring: bool) -> Binary {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomcast"));
        cmd.arg("--bind")
            .arg(addr.to_string())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe and touches only this struct.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if deny_io_uring {
            // SAFETY: prctl is async-signal-safe; the filter outlives the call.
            unsafe { cmd.pre_exec(deny_io_uring_setup) };
        }
        let child = cmd.spawn().expect("spawn roomcast");
        Binary { child, addr }
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect(self.addr).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("roomcast exited before listening: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "roomcast did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /healthz`: (status, head, body).
    fn get_health(&self) -> (u16, String, String) {
        http_exchange(
            self.addr,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill on the PID of a child this test started.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) },
            0
        );
    }

    /// Waits for exit with a deadline; returns (success, stderr).
    fn wait(mut self) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status.success(), err);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("roomcast did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_delivers_what_was_accepted_then_1001_and_exits_zero() {
    let relay = Binary::start(&["--workers", "1", "--inline-decode-below", "0"], None);
    let url = format!("ws://{}/ws/chat/shutdown/", relay.addr);
    let mut members: Vec<Client> = (0..10).map(|_| connect(&url)).collect();
    for i in 0..300 {
        say(&mut members[i % 10], json!(i));
    }
    // Every message is in the relay once its sender's copy of the last one
    // could be produced; make sure the relay has read them all.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (_, _, body) = http_exchange(
            relay.addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if body.contains("roomcast_messages_received_total 300") {
            break;
        }
        assert!(Instant::now() < deadline, "relay did not read all messages");
    }
    relay.signal(libc::SIGTERM);
    for m in &mut members {
        let mut got = 0;
        let code = loop {
            match m.read() {
                Ok(tungstenite::Message::Text(_)) => got += 1,
                Ok(tungstenite::Message::Close(Some(f))) => break u16::from(f.code),
                Ok(_) => {}
                Err(e) => panic!("ended without a close frame after {got}: {e}"),
            }
        };
        assert_eq!(
            (got, code),
            (300, 1001),
            "every accepted message, then 1001"
        );
    }
    let (ok, stderr) = relay.wait();
    assert!(ok, "exit status 0; stderr:\n{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(stderr.contains("stopped:"), "{stderr}");
}

#[test]
fn sigint_on_an_idle_relay_exits_zero() {
    let relay = Binary::start(&[], None);
    relay.signal(libc::SIGINT);
    let (ok, stderr) = relay.wait();
    assert!(ok, "{stderr}");
}

/// Out of descriptors: waiting clients get 503 through the spare descriptor,
/// the failure is logged once for the burst, and the relay recovers by
/// itself once descriptors free up.
#[test]
fn running_out_of_descriptors_sheds_with_503_and_recovers() {
    let relay = Binary::start(
        &[
            "--max-connections",
            "1000",
            "--workers",
            "0",
            "--handshake-timeout",
            "60s",
        ],
        Some(64),
    );
    // Hold connections (each an open socket on the relay) until accept fails.
    let mut held = Vec::new();
    for _ in 0..70 {
        let s = TcpStream::connect(relay.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        held.push(s);
    }
    // Some of them were never accepted: they are answered 503 one by one.
    let deadline = Instant::now() + TIMEOUT;
    let mut shed = 0;
    while shed < 3 {
        for s in &mut held {
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf) {
                if buf[..n].starts_with(b"HTTP/1.1 503") {
                    shed += 1;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no 503 while out of descriptors (got {shed})"
        );
    }
    // Free descriptors; the relay accepts again without help.
    held.truncate(10);
    let deadline = Instant::now() + TIMEOUT;
    let mut ws = loop {
        let s = TcpStream::connect(relay.addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        match tungstenite::client::client(format!("ws://{}/ws/chat/back/", relay.addr), s) {
            Ok((ws, _)) => break ws,
            Err(_) => assert!(Instant::now() < deadline, "the relay did not recover"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    say(&mut ws, json!("recovered"));
    assert_eq!(recv_json(&mut ws)["message"], "recovered");
    drop(ws);
    drop(held);
    relay.signal(libc::SIGTERM);
    let (ok, stderr) = relay.wait();
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.matches("accept failed").count(),
        1,
        "logged once per burst:\n{stderr}"
    );
    assert!(stderr.contains("accepting again after"), "{stderr}");
    let _ = std::io::stdout().flush();
}

/// A seccomp filter on this process (the child, before exec) that fails
/// io_uring_setup with ENOSYS and allows everything else.
fn deny_io_uring_setup() -> std::io::Result<()> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        // A = seccomp_data.nr (offset 0)
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain prctl calls; `prog` points at `filter`, alive here.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Chats in a fresh room of two; returns the ring's sends afterwards.
fn chat_and_count_ring_sends(addr: SocketAddr) -> u64 {
    let url = format!("ws://{addr}/ws/chat/ring/");
    let mut a = connect(&url);
    let mut b = connect(&url);
    for i in 0..5 {
        say(&mut a, json!(i));
        assert_eq!(recv_json(&mut a), json!({"message": i}));
        assert_eq!(recv_json(&mut b), json!({"message": i}));
    }
    metric_at(addr, "roomcast_io_uring_sends_total")
}

#[test]
fn io_uring_is_used_by_default_where_the_kernel_allows_it() {
    let relay = Binary::start(&[], None);
    assert!(chat_and_count_ring_sends(relay.addr) >= 10);
}

#[test]
fn without_io_uring_auto_falls_back_to_writev_and_on_refuses_to_start() {
    let mut relay = Binary::spawn_without_io_uring(&["--log-level", "info"]);
    relay.wait_listening();
    assert_eq!(chat_and_count_ring_sends(relay.addr), 0);
    relay.signal(libc::SIGTERM);
    let (ok, stderr) = relay.wait();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("io_uring is not available") && stderr.contains("send/writev"),
        "{stderr}"
    );

    let relay = Binary::spawn_without_io_uring(&["--io-uring", "on"]);
    let (ok, stderr) = relay.wait();
    assert!(!ok, "--io-uring on must not start without io_uring");
    assert!(stderr.contains("--io-uring on"), "{stderr}");
    assert!(stderr.contains("io_uring"), "{stderr}");
}

#[test]
fn a_bad_io_uring_mode_fails_at_start() {
    let relay = Binary::spawn(&["--io-uring", "sometimes"], None, false);
    let (ok, stderr) = relay.wait();
    assert!(!ok);
    assert!(
        stderr.contains("sometimes") && stderr.contains("auto"),
        "{stderr}"
    );
}

/// The relay's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Writes `frame` back to back, as much as the relay takes within a few
/// seconds (or `limit` bytes); returns the bytes written.
fn flood(s: &mut TcpStream, frame: &[u8], limit: usize) -> usize {
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let chunk: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 10_000)
        .collect();
    let mut sent = 0;
    while sent < limit {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break, // the relay stopped reading: its window is full
        }
    }
    sent
}

/// A client that never reads and floods 21 MB of empty pings, or of empty
/// echo messages: what is queued for it is charged its real cost (bytes
/// plus a fixed overhead per frame), it keeps one pong at most, and the
/// relay stops reading it once its queue is over --max-send-queue. The
/// relay's memory stays bounded by that limit, not by the flood (before:
/// about 93 MiB pinned).
#[test]
fn a_flood_of_tiny_frames_from_a_client_that_never_reads_is_bounded() {
    // No ping cap, so that the pings test the queue's accounting (with the
    // default cap the flooder is closed after 50: tests/flow.rs).
    let relay = Binary::start(&["--workers", "0", "--max-pings-per-second", "0"], None);
    let pid = relay.child.id();
    let empty_ping = frame(true, 0x9, b"");
    let empty_echo = frame(true, 0x1, b"");
    for (what, unit) in [("pings", &empty_ping), ("echo messages", &empty_echo)] {
        let mut s = raw_ws(relay.addr, "/ws/echo/");
        let before = rss_kib(pid);
        let sent = flood(&mut s, unit, 21 << 20);
        // Let the relay read and queue whatever it is going to.
        std::thread::sleep(Duration::from_millis(500));
        let grown = rss_kib(pid).saturating_sub(before);
        assert!(
            grown < 16 << 10,
            "{what}: the relay grew {grown} KiB for {sent} bytes sent"
        );
        drop(s);
    }
    // It still serves everyone else.
    let mut ws = connect(&format!("ws://{}/ws/chat/after/", relay.addr));
    say(&mut ws, json!("still here"));
    assert_eq!(recv_json(&mut ws)["message"], "still here");
}

/// stderr is a pipe nobody reads (a stalled log shipper): thousands of
/// rejected requests must not freeze the loop. Lines are handed to a writer
/// thread and dropped when it cannot keep up, and rejections are summed up
/// once a second.
#[test]
fn a_stalled_log_reader_does_not_freeze_the_relay() {
    let relay = Binary::start(&[], None);
    for i in 0..5_000 {
        let (status, _, _) = http_exchange(
            relay.addr,
            &format!("GET /nope/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 404, "request {i}");
    }
    let (status, _, body) = relay.get_health();
    assert_eq!(status, 200, "{body}");
    relay.signal(libc::SIGTERM);
    let (ok, stderr) = relay.wait();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("rejected") && stderr.contains("404"),
        "no summary in:\n{stderr}"
    );
    assert!(
        stderr.lines().count() < 1_000,
        "rejections are summed up, not logged one by one"
    );
}

/// With a small open-file limit, the default cap leaves descriptors for
/// the 503s to the crowd over it, and each 503 waits a second at most for
/// its client: the relay never runs out of descriptors, and every client
/// over the cap hears 503 (or is closed) at once.
#[test]
fn the_crowd_over_the_cap_never_exhausts_descriptors() {
    let relay = Binary::start(&["--workers", "0"], Some(256));
    let pid = relay.child.id();
    let upgrade = format!(
        "GET /ws/chat/crowd/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let mut held = Vec::new();
    let (mut opened, mut refused, mut most_fds) = (0, 0, 0);
    for _ in 0..300 {
        let mut s = TcpStream::connect(relay.addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(upgrade.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        match s.read_exact(&mut head) {
            Ok(()) if head.starts_with(b"HTTP/1.1 101") => opened += 1,
            Ok(()) if head.starts_with(b"HTTP/1.1 503") => refused += 1,
            // Past the in-flight 503s, a client is closed at once.
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => refused += 1,
            other => panic!("no prompt answer: {other:?}"),
        }
        held.push(s);
        most_fds = most_fds.max(fds());
    }
    assert_eq!(opened + refused, 300);
    assert!(
        opened >= 150,
        "the cap is most of the descriptors: {opened}"
    );
    assert!(
        most_fds < 240,
        "{most_fds} descriptors open at once: the 503s must not hold them"
    );
}

/// SIGHUP re-reads the certificate and key: new handshakes see the new
/// certificate, open connections go on, a file that fails to load keeps the
/// old pair (and says why). Without TLS, SIGHUP is harmless.
#[test]
fn sighup_rotates_the_certificate_without_dropping_anyone() {
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, StreamOwned};
    use tls_support::{default_client, KeyKind, Pki, HOST};

    let plain = Binary::start(&[], None);
    plain.signal(libc::SIGHUP);
    let (status, _, _) = plain.get_health();
    assert_eq!(status, 200, "SIGHUP did not end a relay without TLS");

    let pki = Pki::new();
    let first = pki.issue(KeyKind::EcdsaP256, 1001);
    let dir = std::env::temp_dir().join(format!("roomcast-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &first.chain_pem).unwrap();
    std::fs::write(&key_path, &first.key_pem).unwrap();
    let relay = Binary::start_tls(
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        &pki,
    );
    // A fresh client each time: a resumed session shows no certificate.
    let connect = |path: &str| {
        let tcp = TcpStream::connect(relay.addr).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let conn = ClientConnection::new(default_client(&pki), ServerName::try_from(HOST).unwrap())
            .unwrap();
        let url = format!("wss://{HOST}:{}{path}", relay.addr.port());
        tungstenite::client::client(url, StreamOwned::new(conn, tcp))
            .unwrap()
            .0
    };
    let seen = |ws: &tungstenite::WebSocket<StreamOwned<ClientConnection, TcpStream>>| {
        ws.get_ref().conn.peer_certificates().unwrap()[0].clone()
    };
    let mut old = connect("/ws/chat/rotate/");
    assert_eq!(seen(&old), first.der);

    let second = pki.issue(KeyKind::EcdsaP256, 2002);
    std::fs::write(&cert_path, &second.chain_pem).unwrap();
    std::fs::write(&key_path, &second.key_pem).unwrap();
    relay.signal(libc::SIGHUP);
    let deadline = Instant::now() + TIMEOUT;
    let mut new = loop {
        let ws = connect("/ws/chat/rotate/");
        if seen(&ws) == second.der {
            break ws;
        }
        assert!(Instant::now() < deadline, "still the old certificate");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The old connection still delivers, both ways.
    old.send(tungstenite::Message::text(
        json!({"message": "before and after"}).to_string(),
    ))
    .unwrap();
    for ws in [&mut old, &mut new] {
        loop {
            match ws.read().unwrap() {
                tungstenite::Message::Text(t) => {
                    assert_eq!(t.as_str(), r#"{"message": "before and after"}"#);
                    break;
                }
                _ => continue,
            }
        }
    }
    // A broken file keeps the pair in use.
    std::fs::write(&key_path, "not a key").unwrap();
    relay.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(seen(&connect("/ws/echo/")), second.der);
    drop((old, new));
    relay.signal(libc::SIGTERM);
    let (ok, stderr) = relay.wait();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("keeping the current TLS certificate"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
