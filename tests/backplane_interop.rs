//! roomcast's half of an interop check that `tests/interop/run.sh` drives:
//! a chat message from a member with an identity (SPEC section 9), published
//! the way the relay publishes one (`backplane::encode_publish` with the
//! user, then `Delivery::publish` on roomcast's backplane thread), so a
//! Django consumer of the same group (`tests/interop/group_listen.py`) can
//! check that its event carries `"user"`. It runs only when asked
//! (`--ignored`) with the Redis and the room in the environment; `cargo
//! test` alone skips it. The publisher waits, with deadlines, until its
//! room is subscribed and its own message has come back through Redis, and
//! prints the frame it got.

use mio::{Events, Poll, Token, Waker};
use roomcast::backplane;
use roomcast::relay::delivery::{Arrival, Delivery};
use roomcast::Config;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set (tests/interop/run.sh sets it)"))
}

#[test]
#[ignore = "run by tests/interop/run.sh against Django Channels"]
fn publish_with_a_user_for_interop() {
    let url = var("ROOMCAST_INTEROP_REDIS");
    let room = var("ROOMCAST_INTEROP_ROOM");
    let message = var("ROOMCAST_INTEROP_MESSAGE");
    let user = var("ROOMCAST_INTEROP_USER");
    let mut poll = Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
    let mut config = Config::for_address("127.0.0.1:0".parse().unwrap());
    config.redis = vec![url];
    let mut delivery = Delivery::start(&config, waker).unwrap();
    let mut events = Events::with_capacity(8);
    let deadline = Instant::now() + TIMEOUT;
    let mut turn = |delivery: &mut Delivery, out: &mut Vec<Arrival>| {
        assert!(
            Instant::now() < deadline,
            "no answer from Redis within {TIMEOUT:?}"
        );
        delivery.flush();
        let _ = poll.poll(&mut events, Some(Duration::from_millis(20)));
        delivery.drain_arrivals(out);
    };
    let mut out = Vec::new();
    // Members must be able to receive before the message goes out, so
    // this node hears its own message come back.
    if !delivery.prepare(&room) {
        while !out
            .iter()
            .any(|a| matches!(a, Arrival::Ready(r) if **r == *room))
        {
            turn(&mut delivery, &mut out);
        }
    }
    let payload =
        backplane::encode_publish(&message, Some(&user), config.max_message_size).unwrap();
    assert!(delivery.publish(&Arc::from(room.as_str()), payload));
    out.clear();
    let frame = loop {
        turn(&mut delivery, &mut out);
        if let Some(Arrival::Frame { frame, .. }) =
            out.iter().find(|a| matches!(a, Arrival::Frame { .. }))
        {
            break frame.clone();
        }
    };
    // A server frame: FIN + text, then a 7-, 16- or 64-bit length.
    let start = match frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    println!(
        "roomcast published and got back: {}",
        String::from_utf8_lossy(&frame[start..])
    );
}
