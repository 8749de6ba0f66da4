//! The `--auth-url` client (`roomcast::auth::AuthClient`) over real sockets,
//! against a tiny in-test HTTP/1.1 back end whose answer is chosen by the
//! room name: admits, refusals, errors, a hang, keep-alive reuse, the cache.
//! Every wait has a deadline; nothing sleeps to wait for a result.

use mio::{Events, Poll, Token, Waker};
use roomcast::auth::{AuthClient, BackendSettings, Grant, Refusal, Unavailable, Verdict};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(10);

/// The back end: one thread per connection, keep-alive.
struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, s) = (accepted.clone(), requests.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                a.fetch_add(1, Ordering::AcqRel);
                let (r, s) = (r.clone(), s.clone());
                thread::spawn(move || serve(stream, &r, &s));
            }
        });
        Backend {
            addr,
            accepted,
            requests,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/auth/", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut s: TcpStream, log: &Mutex<Vec<String>>, stop: &AtomicBool) {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            match s.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) if stop.load(Ordering::Acquire) => return,
                Err(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        log.lock().unwrap().push(head.clone());
        let room = head
            .split_once("room=")
            .and_then(|(_, r)| r.split([' ', '&']).next())
            .unwrap_or("")
            .to_string();
        let reply = match room.as_str() {
            "admit" => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 31\r\n\r\n{\"user\": \"ann\", \"write\": true }".to_string(),
            "readonly" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1c\r\n{\"user\": 7, \"write\": false }\r\n0\r\n\r\n".to_string(),
            "deny401" => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_string(),
            "deny403" => "HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden".to_string(),
            "oops" => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops".to_string(),
            "garbage" => "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>".to_string(),
            "nonsense" => "this is not HTTP\r\n\r\n".to_string(),
            "huge" => format!("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{}", "x".repeat(100_000)),
            "hang" => {
                // Never answer; go when the client closes or the test ends.
                let mut b = [0u8; 64];
                loop {
                    match s.read(&mut b) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(_) if stop.load(Ordering::Acquire) => return,
                        Err(_) => {}
                    }
                }
            }
            "once" => {
                // Answers, then drops the connection without saying so.
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                return;
            }
            _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
        };
        if s.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The event loop's side: its waker and a poll to sleep on.
struct Loop {
    poll: Poll,
    waker: Arc<Waker>,
}

impl Loop {
    fn new() -> Loop {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        Loop { poll, waker }
    }

    fn client(&self, url: &str, tweak: impl FnOnce(&mut BackendSettings)) -> AuthClient {
        let mut settings = BackendSettings::new(url).unwrap();
        tweak(&mut settings);
        AuthClient::start(settings, self.waker.clone()).unwrap()
    }

    /// Waits for `n` verdicts, as the loop would: sleep until woken, drain.
    fn wait(&mut self, client: &mut AuthClient, n: usize) -> Vec<(u64, Verdict, Instant)> {
        let deadline = Instant::now() + LIMIT;
        let mut got = Vec::new();
        let mut events = Events::with_capacity(8);
        while got.len() < n {
            client.drain(|id, v| got.push((id, v, Instant::now())));
            if got.len() >= n {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} verdicts: {got:?}",
                got.len()
            );
            self.poll.poll(&mut events, Some(left)).unwrap();
        }
        got
    }

    fn one(
        &mut self,
        client: &mut AuthClient,
        id: u64,
        room: &str,
        cookie: Option<&str>,
    ) -> Verdict {
        assert!(client.ask(id, room, cookie, None).is_none());
        client.flush();
        let got = self.wait(client, 1);
        assert_eq!(got[0].0, id);
        got[0].1.clone()
    }
}

fn admitted(user: &str, write: bool) -> Verdict {
    Ok(Grant {
        user: Some(user.into()),
        write,
    })
}

fn unavailable(why: Unavailable) -> Verdict {
    Err(Refusal::BackendUnavailable(why))
}

#[test]
fn each_answer_gives_its_verdict() {
    let backend = Backend::start();
    let mut lp = Loop::new();
    let mut client = lp.client(&backend.url(), |_| {});
    let rooms = [
        ("admit", admitted("\"ann\"", true)),
        ("readonly", admitted("7", false)),
        ("deny401", Err(Refusal::BackendUnauthorized)),
        ("deny403", Err(Refusal::BackendForbidden)),
        ("oops", unavailable(Unavailable::Status(500))),
        ("garbage", unavailable(Unavailable::BadBody)),
        ("nonsense", unavailable(Unavailable::Malformed)),
        ("huge", unavailable(Unavailable::Oversized)),
    ];
    for (i, (room, _)) in rooms.iter().enumerate() {
        let asked = client.ask(
            i as u64,
            room,
            Some("sessionid=abc; csrftoken=x"),
            Some("http://site.example"),
        );
        assert!(asked.is_none());
    }
    client.flush();
    let mut got = lp.wait(&mut client, rooms.len());
    got.sort_by_key(|g| g.0);
    for ((room, want), (_, verdict, _)) in rooms.iter().zip(&got) {
        assert_eq!(verdict, want, "{room}");
    }
    let requests = backend.requests();
    let admit = requests
        .iter()
        .find(|r| r.starts_with("GET /auth/?room=admit "))
        .unwrap();
    assert!(
        admit.contains("\r\nCookie: sessionid=abc; csrftoken=x\r\n"),
        "{admit}"
    );
    assert!(
        admit.contains("\r\nOrigin: http://site.example\r\n"),
        "{admit}"
    );
    assert!(
        admit.contains(&format!("\r\nHost: {}\r\n", backend.addr)),
        "{admit}"
    );
}

#[test]
fn keep_alive_connections_are_reused() {
    let backend = Backend::start();
    let mut lp = Loop::new();
    let mut client = lp.client(&backend.url(), |_| {});
    for id in 0..6 {
        let room = ["admit", "deny401", "deny403", "readonly"][id as usize % 4];
        assert!(lp.one(&mut client, id, room, None) != unavailable(Unavailable::Connection));
    }
    assert_eq!(backend.accepted(), 1);
    assert_eq!(client.stats().connections_opened.load(Ordering::Relaxed), 1);
    assert_eq!(client.stats().requests.load(Ordering::Relaxed), 6);
}

#[test]
fn a_hung_back_end_holds_one_connection_and_times_out() {
    let backend = Backend::start();
    let mut lp = Loop::new();
    let timeout = Duration::from_millis(1_500);
    let mut client = lp.client(&backend.url(), |s| {
        s.connections = 2;
        s.timeout = timeout;
    });
    let start = Instant::now();
    assert!(client.ask(1, "hang", None, None).is_none());
    assert!(client.ask(2, "admit", None, None).is_none());
    client.flush();
    let got = lp.wait(&mut client, 2);
    assert_eq!((got[0].0, &got[0].1), (2, &admitted("\"ann\"", true)));
    let prompt = got[0].2 - start;
    assert!(prompt < timeout / 2, "the second join waited {prompt:?}");
    assert_eq!(
        (got[1].0, &got[1].1),
        (1, &unavailable(Unavailable::Timeout))
    );
    let waited = got[1].2 - start;
    assert!(
        waited >= timeout && waited < timeout * 3,
        "timed out after {waited:?}"
    );
    assert_eq!(client.stats().timeouts.load(Ordering::Relaxed), 1);
    // The hung connection was dropped; the pool still serves.
    assert_eq!(
        lp.one(&mut client, 3, "admit", None),
        admitted("\"ann\"", true)
    );
}

#[test]
fn joins_beyond_the_pool_wait_within_the_timeout() {
    let backend = Backend::start();
    let mut lp = Loop::new();
    let mut client = lp.client(&backend.url(), |s| {
        s.connections = 1;
        s.timeout = Duration::from_millis(500);
    });
    client.ask(1, "hang", None, None);
    client.ask(2, "admit", None, None);
    client.flush();
    let got = lp.wait(&mut client, 2);
    for (_, verdict, _) in &got {
        assert_eq!(verdict, &unavailable(Unavailable::Timeout));
    }
    assert_eq!(backend.accepted(), 1);
}

#[test]
fn the_cache_answers_repeated_joins() {
    let backend = Backend::start();
    let mut lp = Loop::new();
    let mut client = lp.client(&backend.url(), |s| s.cache_ttl = Duration::from_secs(30));
    let cookie = Some("sessionid=abc");
    assert_eq!(
        lp.one(&mut client, 1, "admit", cookie),
        admitted("\"ann\"", true)
    );
    assert_eq!(
        client.ask(2, "admit", cookie, None),
        Some(admitted("\"ann\"", true))
    );
    assert_eq!(
        lp.one(&mut client, 3, "deny403", cookie),
        Err(Refusal::BackendForbidden)
    );
    assert_eq!(
        client.ask(4, "deny403", cookie, None),
        Some(Err(Refusal::BackendForbidden))
    );
    // Another cookie, another origin, or a 503 are not answered from it.
    assert_eq!(
        lp.one(&mut client, 5, "admit", Some("sessionid=xyz")),
        admitted("\"ann\"", true)
    );
    assert!(client
        .ask(6, "admit", cookie, Some("http://elsewhere"))
        .is_none());
    client.flush();
    lp.wait(&mut client, 1);
    assert_eq!(
        lp.one(&mut client, 7, "oops", cookie),
        unavailable(Unavailable::Status(500))
    );
    assert!(client.ask(8, "oops", cookie, None).is_none());
    client.flush();
    lp.wait(&mut client, 1);
    assert_eq!(backend.requests().len(), 6);
    assert_eq!(client.stats().cache_hits.load(Ordering::Relaxed), 2);
}

#[test]
fn a_connection_the_back_end_drops_is_replaced() {
    let backend = Backend::start();
    let mut lp = Loop::new();
    let mut client = lp.client(&backend.url(), |_| {});
    // "once" answers and closes without a Connection: close header.
    assert_eq!(
        lp.one(&mut client, 1, "once", None),
        Ok(Grant {
            user: None,
            write: true
        })
    );
    for id in 2..5 {
        assert_eq!(
            lp.one(&mut client, id, "admit", None),
            admitted("\"ann\"", true)
        );
    }
    assert_eq!(backend.accepted(), 2);
}

#[test]
fn an_unreachable_back_end_is_a_prompt_503() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut lp = Loop::new();
    let mut client = lp.client(&format!("http://127.0.0.1:{port}/auth/"), |_| {});
    let start = Instant::now();
    assert_eq!(
        lp.one(&mut client, 1, "admit", None),
        unavailable(Unavailable::Connection)
    );
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn headers_that_would_split_are_not_forwarded() {
    let backend = Backend::start();
    let mut lp = Loop::new();
    let mut client = lp.client(&backend.url(), |_| {});
    let v = lp.one(&mut client, 1, "admit", Some("a=1\r\nX-Admin: yes"));
    assert_eq!(v, unavailable(Unavailable::BadHeader));
    assert_eq!(backend.accepted(), 0);
}

#[test]
fn dropping_the_client_stops_its_thread_with_requests_in_flight() {
    let backend = Backend::start();
    let lp = Loop::new();
    let mut client = lp.client(&backend.url(), |s| s.timeout = Duration::from_secs(30));
    client.ask(1, "hang", None, None);
    client.flush();
    let deadline = Instant::now() + LIMIT;
    while backend.requests().is_empty() {
        assert!(Instant::now() < deadline, "the request never arrived");
        thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    drop(client);
    assert!(start.elapsed() < Duration::from_secs(2));
}
