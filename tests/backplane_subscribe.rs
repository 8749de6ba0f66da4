//! SPEC section 4: with `--redis`, a join is complete only when the member
//! can receive. These tests drive the loop's side of the backplane
//! ([`Delivery`]: `prepare`, `abandon`, `drain_arrivals`) against a real
//! `redis-server`, mostly through a [`DelayProxy`] that makes Redis 50 ms
//! away each way, where a join completed before Redis confirmed the
//! `SUBSCRIBE` misses what is published at once (it did every time).
//! Every wait has a deadline; nothing sleeps to let time pass except where
//! a test checks that something does *not* happen.

mod common;

use common::delay_proxy::DelayProxy;
use common::redis::{free_port, RedisServer};
use common::TIMEOUT;
use mio::{Events, Poll, Token, Waker};
use roomcast::backplane::msgpack;
use roomcast::relay::delivery::{Arrival, Delivery};
use roomcast::Config;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DELAY: Duration = Duration::from_millis(50);

/// The loop's side of one relay's backplane, with the loop's waker.
struct Node {
    delivery: Delivery,
    poll: Poll,
    events: Events,
    /// Arrivals taken but not yet looked at, with when they came.
    seen: Vec<(Instant, Arrival)>,
}

impl Node {
    fn start(url: &str) -> Node {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let mut config = Config::for_address("127.0.0.1:0".parse().unwrap());
        config.redis = vec![url.to_string()];
        config.redis_retry_max = Duration::from_millis(200);
        let delivery = Delivery::start(&config, waker).unwrap();
        Node {
            delivery,
            poll,
            events: Events::with_capacity(8),
            seen: Vec::new(),
        }
    }

    /// Takes what the backplane sent, waiting up to `wait` for the waker.
    fn turn(&mut self, wait: Duration) {
        self.delivery.flush();
        let _ = self.poll.poll(&mut self.events, Some(wait));
        let mut out = Vec::new();
        self.delivery.drain_arrivals(&mut out);
        let now = Instant::now();
        self.seen.extend(out.into_iter().map(|a| (now, a)));
    }

    /// Turns until `f` picks an arrival (removed from `seen`), or `within`
    /// passes.
    fn wait_for(
        &mut self,
        within: Duration,
        mut f: impl FnMut(&Arrival) -> bool,
    ) -> Option<(Instant, Arrival)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.seen.iter().position(|(_, a)| f(a)) {
                return Some(self.seen.remove(i));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.turn(left.min(Duration::from_millis(20)));
        }
    }

    /// When `room` became ready, failing the test after [`TIMEOUT`].
    fn ready(&mut self, room: &str) -> Instant {
        match self.wait_for(TIMEOUT, |a| is_ready(a, room)) {
            Some((at, _)) => at,
            None => panic!("room {room} never became ready"),
        }
    }

    /// The text of the next frame for `room`, failing after [`TIMEOUT`].
    fn frame(&mut self, room: &str) -> String {
        let got = self.wait_for(
            TIMEOUT,
            |a| matches!(a, Arrival::Frame { room: r, .. } if &**r == room),
        );
        match got {
            Some((_, Arrival::Frame { frame, .. })) => text(&frame),
            _ => panic!("no frame for room {room} within {TIMEOUT:?}"),
        }
    }

    fn wait_health(&mut self, status: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while self.delivery.health().status != status {
            assert!(Instant::now() < deadline, "health never became {status}");
            self.turn(Duration::from_millis(20));
        }
    }
}

fn is_ready(a: &Arrival, room: &str) -> bool {
    matches!(a, Arrival::Ready(r) if &**r == room)
}

/// A server-to-client text frame's payload (short: a 2-byte header).
fn text(frame: &[u8]) -> String {
    assert_eq!(frame[0], 0x81);
    let n = usize::from(frame[1]);
    assert!(n < 126, "a short frame");
    String::from_utf8(frame[2..2 + n].to_vec()).unwrap()
}

fn channel(room: &str) -> String {
    format!("asgi__group__chat_{room}")
}

fn chat_event(message_json: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    msgpack::encode_chat_event(message_json, &mut payload).unwrap();
    payload
}

/// Through a Redis 50 ms away, a new room is ready only after Redis has
/// confirmed its SUBSCRIBE (a round trip: at least 100 ms), Redis counts
/// the subscriber by then, and a message another publisher sends the
/// instant the room is ready reaches it: every time, over several rooms.
/// A room being subscribed is not ready to a second upgrade either; a
/// subscribed one is ready at once.
#[test]
fn a_new_room_is_ready_only_once_redis_confirmed_it() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port, DELAY);
    let mut node = Node::start(&proxy.url());
    node.wait_health("ok");
    let mut publisher = redis.client();
    for i in 0..5 {
        let room = format!("new{i}");
        let asked = Instant::now();
        assert!(!node.delivery.prepare(&room), "{room} is new here");
        assert!(!node.delivery.prepare(&room), "{room} is still waiting");
        let at = node.ready(&room);
        let took = at - asked;
        assert!(took >= 2 * proxy.delay(), "{room} ready after {took:?}");
        assert_eq!(redis.numsub(&channel(&room)), 1);
        // Published straight to Redis, not through the slow link.
        let message = format!("\"first in {room}\"");
        assert_eq!(publisher.publish(&channel(&room), &chat_event(&message)), 1);
        assert_eq!(node.frame(&room), format!("{{\"message\": {message}}}"));
        assert!(node.delivery.prepare(&room), "{room} is subscribed now");
    }
}

/// Every upgrade that waited on a room went away before Redis confirmed
/// it: `abandon` unsubscribes it, no Ready ever comes for it, and the next
/// upgrade to the room subscribes it anew.
#[test]
fn an_abandoned_room_is_unsubscribed_and_never_ready() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port, DELAY);
    let mut node = Node::start(&proxy.url());
    node.wait_health("ok");
    assert!(!node.delivery.prepare("gone"));
    node.turn(Duration::ZERO);
    node.delivery.abandon("gone");
    let ready = node.wait_for(6 * proxy.delay(), |a| is_ready(a, "gone"));
    assert!(ready.is_none(), "an abandoned room was reported ready");
    redis.wait_numsub(&channel("gone"), 0);
    // Abandoned and wanted again at once: ready after its own SUBSCRIBE.
    assert!(!node.delivery.prepare("back"));
    node.turn(Duration::ZERO);
    node.delivery.abandon("back");
    assert!(!node.delivery.prepare("back"));
    node.ready("back");
    assert_eq!(redis.numsub(&channel("back")), 1);
}

/// No Redis at all (degraded from the start): messages for a room are
/// delivered locally, so it is ready at once, with no Redis to wait for.
#[test]
fn a_room_is_ready_at_once_while_redis_is_down() {
    let port = free_port();
    let mut node = Node::start(&format!("redis://127.0.0.1:{port}/0"));
    node.turn(Duration::ZERO);
    assert_eq!(node.delivery.health().status, "degraded");
    let asked = Instant::now();
    assert!(!node.delivery.prepare("local"));
    let took = node.ready("local") - asked;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(node.delivery.prepare("local"));
    // And it works: a publish is delivered locally.
    let sent = node
        .delivery
        .publish_batch("local", None, &["\"here\""], 1 << 20)
        .unwrap();
    assert!(sent);
    assert_eq!(node.frame("local"), "{\"message\": \"here\"}");
}

/// The link drops while a SUBSCRIBE is unconfirmed: the room is
/// local-only from then on, so it is ready (no upgrade waits for the
/// handshake timeout). When the link is back, the live rooms are
/// subscribed again without another Ready, and messages cross again.
#[test]
fn a_link_lost_before_the_confirmation_makes_the_room_ready() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port, Duration::from_millis(300));
    let mut node = Node::start(&proxy.url());
    node.wait_health("ok");
    assert!(!node.delivery.prepare("cut"));
    node.turn(Duration::from_millis(50));
    proxy.cut();
    node.ready("cut");
    assert_eq!(node.delivery.health().status, "degraded");
    node.wait_health("ok");
    redis.wait_numsub(&channel("cut"), 1);
    let again = node.wait_for(Duration::from_millis(700), |a| is_ready(a, "cut"));
    assert!(again.is_none(), "a resubscription was reported as Ready");
    assert_eq!(redis.publish(&channel("cut"), &chat_event("2")), 1);
    assert_eq!(node.frame("cut"), "{\"message\": 2}");
}

/// The proxy itself: a PING's answer comes back after the delay both
/// ways, intact, and in order with what follows.
#[test]
fn the_delay_proxy_delays_each_way() {
    use common::redis::{Reply, RespClient};
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port, DELAY);
    let mut client = RespClient::connect(proxy.port);
    let asked = Instant::now();
    assert_eq!(client.command(&[b"PING"]), Reply::Simple("PONG".into()));
    let took = asked.elapsed();
    assert!(took >= 2 * DELAY, "{took:?}");
    client.send(&[b"ECHO", b"one"]);
    client.send(&[b"ECHO", b"two"]);
    assert_eq!(
        client.read_reply(TIMEOUT),
        Some(Reply::Bulk(b"one".to_vec()))
    );
    assert_eq!(
        client.read_reply(TIMEOUT),
        Some(Reply::Bulk(b"two".to_vec()))
    );
    assert_eq!(proxy.accepted(), 1);
}

/// The over-socket form (issue 14's first interop defect), for the loop:
/// a relay whose Redis is 50 ms away; a client joins a room new on the
/// relay, and the instant its handshake completes (the browser's `open`)
/// a message is published to the room straight on Redis. It must arrive,
/// every time: the loop holds the `101` on `Delivery::prepare` and sends
/// it on `Arrival::Ready`, once Redis has the SUBSCRIBE.
#[test]
fn a_message_published_the_instant_open_fires_arrives() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port, DELAY);
    let relay = common::Relay::start_with(|c| {
        c.redis = vec![proxy.url()];
        c.redis_retry_max = Duration::from_millis(200);
    });
    let deadline = Instant::now() + TIMEOUT;
    while !relay.get("/healthz").2.contains("\"status\": \"ok\"") {
        assert!(
            Instant::now() < deadline,
            "the relay's backplane never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut publisher = redis.client();
    for i in 0..10 {
        let room = format!("instant{i}");
        let mut ws = relay.chat(&room);
        publisher.publish(&channel(&room), &chat_event(&format!("{i}")));
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        match ws.read() {
            Ok(m) => assert_eq!(
                m.into_text().unwrap().as_str(),
                format!("{{\"message\": {i}}}")
            ),
            Err(e) => panic!("room {room}: the message published at open was lost ({e})"),
        }
    }
}

/// The wait for Redis's confirmation is bounded by `--handshake-timeout`:
/// with Redis frozen (SIGSTOP, so the link stays up but answers nothing), a
/// join to a room new on the relay gets `503` with a reason when the
/// timeout passes, while a join to a room the relay already subscribed
/// completes at once.
#[test]
fn a_join_waiting_on_a_frozen_redis_gets_503_at_the_handshake_timeout() {
    let mut redis = RedisServer::start();
    let relay = common::Relay::start_with(|c| {
        c.redis = vec![redis.url()];
        c.handshake_timeout = Duration::from_secs(1);
        c.redis_timeout = Duration::from_secs(30);
    });
    let deadline = Instant::now() + TIMEOUT;
    while !relay.get("/healthz").2.contains("\"status\": \"ok\"") {
        assert!(Instant::now() < deadline, "the backplane never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _member = relay.chat("warm");
    redis.pause();

    let asked = Instant::now();
    let err = tungstenite::connect(relay.url("/ws/chat/cold/"))
        .expect_err("a join to a room Redis never confirmed must not open");
    let took = asked.elapsed();
    match err {
        tungstenite::Error::Http(response) => {
            assert_eq!(response.status().as_u16(), 503);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
            assert!(body.contains("handshake timeout"), "{body:?}");
        }
        other => panic!("expected a 503 answer, got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}"
    );

    // Would be a 503 too if it waited on Redis (`chat` panics on any
    // answer but 101).
    let _second = relay.chat("warm");
    redis.resume();
}
