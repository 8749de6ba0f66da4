//! The backplane link's RESP framer: the input after three control bytes is
//! a server's byte stream, pushed in reads whose sizes come from byte 0.
//! With limits from bytes 1 and 2 (strings over `max_bulk` skipped, a value
//! held to `max_value`), it never holds more than `max_value` plus one read,
//! and every value it frames is within the limits. With no limit in reach,
//! it frames exactly the values `parse` reads from the whole stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::backplane::resp::{self, Framer, Limits, RespError};

/// Values as `Debug` text, the error if any, and the bytes still held.
fn frame(
    stream: &[u8],
    mut sizes: impl FnMut() -> usize,
    limits: Limits,
    max_value: usize,
) -> (Vec<String>, Option<RespError>, usize) {
    let mut framer = Framer::new(limits, max_value);
    let mut values = Vec::new();
    let mut start = 0;
    while start < stream.len() {
        let end = (start + sizes()).min(stream.len());
        framer.push(&stream[start..end]);
        assert!(framer.buffered() <= max_value.saturating_add(end - start + 3));
        start = end;
        loop {
            match framer.next_value() {
                Err(e) => return (values, Some(e), framer.buffered()),
                Ok(None) => break,
                Ok(Some(f)) => values.push(format!("{:?}", f.value)),
            }
        }
        assert!(framer.buffered() <= max_value);
    }
    let held = framer.buffered();
    (values, None, held)
}

/// What `parse` reads from the whole stream.
fn parse_all(stream: &[u8], limits: &Limits) -> (Vec<String>, Option<RespError>) {
    let mut values = Vec::new();
    let mut pos = 0;
    loop {
        match resp::parse(&stream[pos..], limits) {
            Err(e) => return (values, Some(e)),
            Ok(None) => return (values, None),
            Ok(Some((value, used))) => {
                values.push(format!("{value:?}"));
                pos += used;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, stream @ ..] = data else { return };
    let mut state = u32::from(*a) | 1;
    let mut sizes = || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        ((state >> 16) % 64) as usize + 1
    };
    let tight = Limits {
        max_bulk: 1 << (b & 0x0F),
        max_elements: usize::from(b >> 4),
        max_depth: usize::from(c % 8),
    };
    frame(stream, &mut sizes, tight, 64 << (c >> 5));
    let roomy = Limits {
        max_bulk: usize::MAX,
        max_elements: usize::MAX,
        max_depth: usize::from(c % 8),
    };
    let (framed, frame_error, held) = frame(stream, &mut sizes, roomy, usize::MAX);
    let (parsed, parse_error) = parse_all(stream, &roomy);
    assert_eq!(framed, parsed);
    assert!(frame_error.is_none() || parse_error.is_some());
    assert!(parse_error.is_none() || frame_error.is_some() || held > 0);
});
