//! Writes to clients through io_uring (`--io-uring`), over real sockets:
//! lone frames batched into one submission, short sends that wait for
//! WRITABLE, and the same bytes with the ring off. The fallback when the
//! kernel refuses io_uring is in tests/binary.rs (it needs a child process).

mod common;
use common::*;
use roomcast::IoUringMode;
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

const SENDS: &str = "roomcast_io_uring_sends_total";
const SUBMITS: &str = "roomcast_io_uring_submits_total";

/// `members` clients in one room; one of them says 0..messages, each only
/// after every member got the previous one (so each flush finds one frame
/// per queue). Returns what every member received.
/// Also returns the ring's (sends, submissions) during the messages alone.
fn lockstep_room(relay: &Relay, members: usize, messages: usize) -> (Vec<Vec<String>>, u64, u64) {
    let mut clients: Vec<Client> = (0..members).map(|_| relay.chat("ring")).collect();
    relay.wait_metric("roomcast_connections", members as u64);
    let before = ring_counts(relay);
    let mut got = vec![Vec::new(); members];
    for i in 0..messages {
        say(&mut clients[i % members], serde_json::json!(i));
        for (c, seen) in clients.iter_mut().zip(got.iter_mut()) {
            seen.push(recv_text(c));
        }
    }
    let after = ring_counts(relay);
    // The first /metrics answer went out after it was counted: one more
    // send, in a submission of its own (none with the ring off).
    let one = u64::from(before.0 > 0);
    (got, after.0 - before.0 - one, after.1 - before.1 - one)
}

/// (sends, submissions) from one read of `/metrics`.
fn ring_counts(relay: &Relay) -> (u64, u64) {
    let (_, _, body) = relay.get("/metrics");
    (metric_in(&body, SENDS), metric_in(&body, SUBMITS))
}

fn expected(messages: usize) -> Vec<String> {
    (0..messages)
        .map(|i| format!("{{\"message\": {i}}}"))
        .collect()
}

#[test]
fn lone_frames_go_out_in_batches_in_order() {
    let relay = Relay::start_with(|c| c.io_uring = IoUringMode::On);
    let (members, messages) = (300, 12);
    let (got, sends, submits) = lockstep_room(&relay, members, messages);
    for seen in &got {
        assert_eq!(seen, &expected(messages));
    }
    // Every delivery was a lone frame, and each message's 300 copies went
    // to the kernel in one submission.
    assert_eq!(
        (sends, submits),
        ((members * messages) as u64, messages as u64)
    );
}

#[test]
fn with_the_ring_off_the_same_bytes_go_out_by_writev() {
    let relay = Relay::start_with(|c| c.io_uring = IoUringMode::Off);
    let (got, _, _) = lockstep_room(&relay, 50, 12);
    for seen in &got {
        assert_eq!(seen, &expected(12));
    }
    assert_eq!(relay.metric(SENDS), 0);
    assert_eq!(relay.metric(SUBMITS), 0);
}

/// A member that stops reading: its kernel buffers fill, the ring's send
/// comes back short or with EAGAIN, and the rest must follow once it reads
/// again, byte for byte, while the sender is not held up.
#[test]
fn short_sends_wait_for_writable_and_lose_nothing() {
    let (relay, mut stalled, mut sender) = sender_and_stalled_member("big");
    shrink_receive_buffer(&stalled);
    // 8 MB: more than the relay's socket send buffer (tcp_wmem's 4 MiB at
    // most) and the stalled client's small receive buffer can hold.
    let texts: Vec<String> = (0..8)
        .map(|i| format!("{i}{}", "x".repeat(1_000_000)))
        .collect();
    for text in &texts {
        say(&mut sender, serde_json::json!(text));
        // The sender reads its own copy, so each flush finds one frame in
        // its queue and in the stalled one's until that one backs up.
        let back: serde_json::Value = serde_json::from_str(&recv_text(&mut sender)).unwrap();
        assert_eq!(back["message"], serde_json::json!(text));
    }
    let per_copy: u64 = texts.iter().map(|t| t.len() as u64 + 20).sum();
    let sent = relay.metric("roomcast_bytes_sent_total");
    assert!(
        sent < 2 * per_copy - 2_000_000,
        "the stalled client's copy should be backed up in the relay: {sent} of {} bytes sent",
        2 * per_copy
    );
    assert!(relay.metric(SENDS) > 0);
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for text in &texts {
        let (fin, opcode, payload) = read_frame(&mut stalled).expect("a whole frame");
        assert!(fin && opcode == 1);
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["message"], serde_json::json!(text));
    }
    assert_eq!(relay.metric("roomcast_slow_consumer_closes_total"), 0);
    // Nothing more is owed: the stream ended on a frame boundary.
    stalled
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut extra = [0u8; 1];
    match (&stalled as &TcpStream).read(&mut extra) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected silence after the last frame, got {other:?}"),
    }
}

/// A relay with the ring on and room for megabytes of backlog, and in
/// `room` a member that will not read (a raw socket) and a sender.
fn sender_and_stalled_member(room: &str) -> (Relay, TcpStream, Client) {
    let relay = Relay::start_with(|c| {
        c.io_uring = IoUringMode::On;
        c.max_send_queue = 32 << 20;
    });
    let stalled = raw_ws(relay.addr, &format!("/ws/chat/{room}/"));
    let sender = relay.chat(room);
    relay.wait_metric("roomcast_connections", 2);
    (relay, stalled, sender)
}

fn shrink_receive_buffer(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 16 * 1024;
    // SAFETY: setsockopt on a socket this test owns, with a c_int option.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// Many small messages, one per loop iteration, to a member that does not
/// read: the ring's sends and the vectored writes take turns on its socket
/// as it fills (a lone frame goes to the ring, a backlog to writev), and
/// the loop must keep serving the sender while megabytes back up, then deliver
/// every frame in order. (That a ring send to a full socket completes at
/// once with EAGAIN is checked directly in `server::uring`'s unit tests.)
#[test]
fn a_full_socket_does_not_stall_the_loop() {
    // The receive buffer is left to autotune: a tiny one makes the final
    // read crawl on TCP's zero-window probes, which is not what is tested.
    let (relay, mut stalled, mut sender) = sender_and_stalled_member("full");
    // 16 MB: more than the kernel buffers on both ends can hold.
    let pad = "y".repeat(4000);
    let count = 4000;
    for i in 0..count {
        say(&mut sender, serde_json::json!(format!("{i} {pad}")));
        // The sender's own copy arrives only if the loop is not stuck.
        let back: serde_json::Value = serde_json::from_str(&recv_text(&mut sender)).unwrap();
        assert_eq!(back["message"], serde_json::json!(format!("{i} {pad}")));
    }
    let per_copy = count as u64 * (pad.len() as u64 + 20);
    assert!(
        relay.metric("roomcast_bytes_sent_total") < 2 * per_copy - 1_000_000,
        "the stalled member's copy should be backed up in the relay"
    );
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for i in 0..count {
        let (_, _, payload) = read_frame(&mut stalled).expect("a whole frame");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["message"], serde_json::json!(format!("{i} {pad}")));
    }
}
