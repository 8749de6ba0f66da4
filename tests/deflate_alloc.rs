//! permessage-deflate's memory bounds, measured with a counting allocator
//! (its own test binary, so the allocator sees nothing else). No sockets.
//!
//! - Inflating a bomb (1 GiB of zeros, about 1 MiB compressed) with a limit
//!   of 1 MiB stops with `TooBig`, having allocated about the limit.
//! - A reused `Inflater` allocates nothing per message but its output.
//! - The same through `Decoder::decode_deflate`: the decoder holds no
//!   inflated bytes; the loop's buffer does, bounded by the message limit.

use roomcast::wire::deflate::{Compressor, InflateError, Inflater, WindowBits};
use roomcast::wire::error::ProtocolError;
use roomcast::wire::frame::encode_client_frame;
use roomcast::wire::message::{Decoder, Limits};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts live bytes and their peak, per thread, so parallel tests in this
/// binary do not see each other's allocations.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: the thread's slots may be gone while it exits.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // The old and new blocks may coexist for a moment: count both.
            track(new_size as isize);
            track(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns what it allocated at its peak, beyond what was
/// live when it started.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    (PEAK.with(Cell::get) - base) as usize
}

/// `n` zero bytes as one compressed message, using the relay's 8-bit-window
/// path (run-length matches, about 1032:1, DEFLATE's best ratio).
fn zeros_compressed(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    Compressor::new()
        .compress(&vec![0u8; n], WindowBits::MIN, &mut out)
        .unwrap();
    out
}

#[test]
fn a_bomb_allocates_about_the_limit() {
    let max = 64 * 1024;
    // 1 MiB of zeros in about 1 KiB: 16 times the limit.
    let payload = zeros_compressed(1 << 20);
    assert!(payload.len() < 4_096, "{} bytes", payload.len());
    let mut inflater = Inflater::new();
    // Warm up: the inflater's window is allocated on first use.
    let mut out = Vec::new();
    inflater.inflate(&[0x02, 0x00], 10, &mut out).unwrap();
    let mut out = Vec::new();
    let peak = peak_during(|| {
        assert_eq!(
            inflater.inflate(&payload, max, &mut out),
            Err(InflateError::TooBig)
        );
    });
    assert_eq!(out.len(), max + 1);
    assert_eq!(out.capacity(), max + 1);
    // The output (limit + 1) plus, for the moment of a reallocation, the
    // step before it: never the 1 MiB the payload claims.
    eprintln!("peak {peak} bytes for a limit of {max}");
    assert!(peak <= 2 * (max + 1), "peak {peak} for a limit of {max}");
}

#[test]
fn a_reused_inflater_allocates_only_its_output() {
    let message = br#"{"message":{"user":"zo\u00eb","text":"see you at 10:30, room B","mentions":[4211,4212],"reactions":[{"emoji":"+1","count":3}]}}"#.repeat(8);
    let mut packed = Vec::new();
    Compressor::new()
        .compress(&message, WindowBits::MAX, &mut packed)
        .unwrap();
    let mut inflater = Inflater::new();
    let mut out = Vec::new();
    inflater.inflate(&packed, 1 << 20, &mut out).unwrap();
    assert_eq!(out, message);
    // Steady state: the window and the output buffer are reused.
    let peak = peak_during(|| {
        for _ in 0..100 {
            out.clear();
            inflater.inflate(&packed, 1 << 20, &mut out).unwrap();
        }
    });
    assert_eq!(peak, 0, "no allocation per message once warm");
}

#[test]
fn the_decoder_holds_no_inflated_bytes() {
    let limits = Limits {
        max_frame_size: 1 << 20,
        max_message_size: 64 * 1024,
    };
    let mut frame = encode_client_frame(true, 0x2, &zeros_compressed(1 << 20), [1, 2, 3, 4]);
    frame[0] |= 0x40;
    let mut inflater = Inflater::new();
    let mut out = Vec::new();
    let mut decoder = Decoder::default();
    let peak = peak_during(|| {
        let err = decoder
            .decode_deflate(&mut frame, &limits, &mut inflater, &mut out)
            .unwrap_err();
        assert_eq!(err, ProtocolError::InflatedTooBig);
    });
    assert!(peak <= 2 * (64 * 1024 + 1), "peak {peak}");
    // The decoder kept nothing: the whole frame was inflated in place.
    decoder.release_buffer();
    assert!(decoder.is_idle());
}

/// The loop-owned state is a design number: one inflater (its window comes
/// with the first message) and one zlib state per window size in use.
#[test]
fn loop_state_sizes() {
    let mut inflater = None;
    let inflater_bytes = peak_during(|| {
        let i = inflater.insert(Inflater::new());
        let mut out = Vec::with_capacity(16);
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 16, &mut out)
            .unwrap();
    });
    let mut compressor = Compressor::new();
    let mut out = Vec::with_capacity(64);
    let per_window = peak_during(|| {
        compressor
            .compress(b"Hello", WindowBits::MAX, &mut out)
            .unwrap();
    });
    eprintln!("inflater {inflater_bytes} B, compressor {per_window} B per window size");
    assert!(inflater_bytes <= 64 * 1024, "inflater {inflater_bytes}");
    assert!(per_window <= 512 * 1024, "compressor {per_window}");
}
