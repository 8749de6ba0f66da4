//! What the backplane allocates for what Redis sends, measured by a counting
//! global allocator over the whole test process (the in-process relay's
//! threads included). Each test holds a lock from start to end, so no other
//! test of this file allocates inside its measurement; the test's own
//! allocations in the window are named where they happen.

mod common;
use common::redis::RedisServer;
use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static MEASURING: Mutex<()> = Mutex::new(());

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are only arithmetic on the sizes it was asked for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc`, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Keeps the other tests of this file out until the guard is dropped.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    MEASURING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` and returns the most bytes allocated at once during it, above
/// what was allocated when it started.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst).saturating_sub(base)
}

/// msgpack of `{"type": "chat_message", "message": ` up to the value.
const EVENT_PREFIX: &[u8] = b"\x82\xa4type\xacchat_message\xa7message";

/// A Channels event far over --max-message-size (1.5 MB of msgpack: an array
/// of 1.5 million zeros, which json.dumps would make 4.5 MB) is dropped as
/// too_large without being decoded. It used to be decoded whole first, a
/// 16-byte tape node per zero: over 24 MB at peak for this one event
/// (~290 MB for a 15 MB one).
#[test]
fn an_event_far_over_the_limit_is_dropped_without_decoding_it() {
    let _alone = alone();
    let redis = RedisServer::start();
    let relay = Relay::start_with(|c| {
        c.redis = vec![redis.url()];
        c.max_message_size = 64 * 1024;
        c.max_frame_size = 64 * 1024;
    });
    let channel = "asgi__group__chat_zeros";
    let mut member = relay.chat("zeros");
    redis.wait_numsub(channel, 1);
    let n: u32 = 1_500_000;
    let mut zeros = EVENT_PREFIX.to_vec();
    zeros.push(0xdd);
    zeros.extend_from_slice(&n.to_be_bytes());
    zeros.resize(zeros.len() + n as usize, 0x00);
    let mut marker = EVENT_PREFIX.to_vec();
    marker.extend_from_slice(b"\xa6marker");
    let mut publisher = redis.client();
    // In the window, the test itself builds one PUBLISH command (1.5 MB).
    let peak = peak_during(|| {
        assert_eq!(publisher.publish(channel, &zeros), 1);
        assert_eq!(publisher.publish(channel, &marker), 1);
        assert_eq!(recv_text(&mut member), r#"{"message": "marker"}"#);
    });
    assert_eq!(
        relay.metric("roomcast_backplane_dropped_total{reason=\"too_large\"}"),
        1
    );
    assert!(
        peak < 8 << 20,
        "{peak} bytes allocated at once for one 1.5 MB event from Redis"
    );
}

/// An event under the skip bound (2 × --max-message-size) whose message
/// still cannot fit: decoding stops as soon as that is certain, so it costs
/// a fraction of a full decode (here 120,000 zeros: about 2 MB of tape and
/// 360 KB of text decoded whole, which is what it used to cost).
#[test]
fn an_event_just_over_the_limit_stops_decoding_early() {
    let _alone = alone();
    let redis = RedisServer::start();
    let relay = Relay::start_with(|c| {
        c.redis = vec![redis.url()];
        c.max_message_size = 64 * 1024;
        c.max_frame_size = 64 * 1024;
    });
    let channel = "asgi__group__chat_zeros";
    let mut member = relay.chat("zeros");
    redis.wait_numsub(channel, 1);
    let n: u32 = 120_000;
    let mut zeros = EVENT_PREFIX.to_vec();
    zeros.push(0xdd);
    zeros.extend_from_slice(&n.to_be_bytes());
    zeros.resize(zeros.len() + n as usize, 0x00);
    let mut marker = EVENT_PREFIX.to_vec();
    marker.extend_from_slice(b"\xa6marker");
    let mut publisher = redis.client();
    // In the window: the test's PUBLISH command (120 KB) and the relay's
    // read buffer for the reply (120 KB).
    let peak = peak_during(|| {
        assert_eq!(publisher.publish(channel, &zeros), 1);
        assert_eq!(publisher.publish(channel, &marker), 1);
        assert_eq!(recv_text(&mut member), r#"{"message": "marker"}"#);
    });
    assert_eq!(
        relay.metric("roomcast_backplane_dropped_total{reason=\"too_large\"}"),
        1
    );
    assert!(
        peak < 1536 * 1024,
        "{peak} bytes allocated at once for one 120 KB event from Redis"
    );
}
