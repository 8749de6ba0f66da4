//! One test per bug fixed, named after what went wrong. (The SIGINT-before-
//! handlers race is caught by `tests/binary.rs::sigint_on_an_idle_relay_exits_zero`.)

mod common;
use common::*;
use std::io::{Read, Write};

/// After a protocol error the relay re-parsed the rest of the stream (the
/// bad frame included) and dropped the connection as soon as more bytes
/// came. Now it sends its close, half-closes and discards input: the client
/// reads the close frame and then a clean EOF, never a reset.
#[test]
fn bytes_after_a_protocol_error_do_not_reset_the_connection() {
    let relay = Relay::start();
    let mut s = raw_ws(relay.addr, "/ws/echo/");
    let mut bytes = vec![0x81, 0x02, b'h', b'i']; // unmasked
    bytes.extend(frame(true, 0x1, b"more after the fault"));
    s.write_all(&bytes).unwrap();
    let (_, op, payload) = read_frame(&mut s).unwrap();
    assert_eq!(
        (op, u16::from_be_bytes([payload[0], payload[1]])),
        (0x8, 1002)
    );
    // The client answers, and keeps talking; the relay must not reset.
    s.write_all(&frame(true, 0x8, &1002u16.to_be_bytes()))
        .unwrap();
    s.write_all(&frame(true, 0x1, b"still talking")).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("a clean EOF, not a reset");
    assert!(rest.is_empty());
}

/// A keep-alive client that pipelined page requests without reading the
/// answers made the relay queue responses without bound. Now the queue is
/// held to --max-send-queue and the connection is dropped past it.
#[test]
fn pipelined_requests_without_reading_are_bounded() {
    let relay = Relay::start_with(|c| {
        c.max_message_size = 1024;
        c.max_send_queue = 64 * 1024;
    });
    let mut s = std::net::TcpStream::connect(relay.addr).unwrap();
    let request = "GET /static/room.js HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    // The relay may cut us off while we are still writing.
    let _ = s.write_all(request.as_bytes());
    relay.wait_metric("roomcast_tcp_connections", 1); // only the /metrics request
}

/// Data and the client's FIN arriving together: the relay read the data,
/// took the short read as "socket empty" and never saw the queued EOF
/// (edge-triggered epoll reports it only once), so the connection lingered
/// until a timeout. Now a read-closed event is read until EOF.
#[test]
fn a_fin_queued_behind_data_is_noticed_at_once() {
    let relay = Relay::start_with(|c| c.handshake_timeout = std::time::Duration::from_secs(60));
    for _ in 0..20 {
        let mut s = raw_ws(relay.addr, "/ws/chat/fin/");
        s.write_all(&frame(true, 0x1, br#"{"message": "and goodbye"}"#))
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Same for an HTTP request whose client half-closes at once.
        let mut h = std::net::TcpStream::connect(relay.addr).unwrap();
        h.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        h.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        h.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Without the fix these wait for the idle or handshake timeout.
    relay.wait_metric("roomcast_connections", 0);
    relay.wait_metric("roomcast_tcp_connections", 1);
}

/// Found by the property tests: a malformed head was answered 431 when it
/// arrived in one read over the limit, but 400 when a read within the limit
/// already showed the fault. Now only the first --max-header-size bytes are
/// parsed, and the answer is the same however the head is split.
#[test]
fn a_malformed_head_gets_the_same_status_however_it_is_split() {
    let head = b"GET / HTTP/1.1\r\nH\x01st: x\r\n\r\n";
    let whole = roomcast::wire::http::parse_head(head, 20)
        .unwrap_err()
        .status;
    let first_read = roomcast::wire::http::parse_head(&head[..20], 20)
        .unwrap_err()
        .status;
    assert_eq!((whole, first_read), (400, 400));
}

/// Each pipelined keep-alive request was served by a recursive call, so a
/// client sending tens of thousands of small requests in one burst could
/// overflow the relay's stack. Now they are handled in a loop (and the
/// answers are still bounded by --max-send-queue).
#[test]
fn a_deep_pipeline_of_small_requests_does_not_crash_the_relay() {
    let relay = Relay::start_with(|c| c.max_send_queue = 64 << 20);
    let mut s = std::net::TcpStream::connect(relay.addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let burst = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(30_000);
    let reader = {
        let mut r = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut total = Vec::new();
            let _ = r.read_to_end(&mut total);
            total
        })
    };
    s.write_all(burst.as_bytes()).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answers = reader.join().unwrap();
    let count = answers
        .windows(15)
        .filter(|w| w == b"HTTP/1.1 200 OK")
        .count();
    assert_eq!(
        count, 30_001,
        "every pipelined request answered, in one connection"
    );
    // The relay is still serving.
    assert_eq!(relay.get("/healthz").0, 200);
}

/// The io_uring ring used to be made in `Server::bind`, on the caller's
/// thread. The kernel ties a ring to the thread that creates it, and when
/// the ring is freed it interrupts that thread's blocking calls: a test
/// client's read with a timeout, on the thread that had started the relay,
/// failed with EINTR after the relay stopped. The ring is now made by the
/// loop's own thread.
#[test]
fn stopping_a_relay_does_not_interrupt_the_thread_that_started_it() {
    let mut relay = Relay::start_with(|c| c.io_uring = roomcast::IoUringMode::Auto);
    let mut a = relay.chat("eintr");
    say(&mut a, serde_json::json!("hi"));
    recv_text(&mut a);
    drop(a);
    relay.stop();
    // A socket with no data and a read timeout: every read must time out.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut quiet = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _other_end = listener.accept().unwrap();
    quiet
        .set_read_timeout(Some(std::time::Duration::from_millis(150)))
        .unwrap();
    for _ in 0..4 {
        let err = quiet.read(&mut [0u8; 1]).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the read was interrupted: {err}"
        );
    }
}
