//! The Redis protocol: the input after three control bytes is a server's
//! byte stream, read whole and in reads whose sizes come from byte 0, with
//! limits from bytes 1 and 2. Both must give the same values, then the same
//! error (or none); every value must be within the limits, and written back
//! with `write_value` it must parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::backplane::resp::{self, Limits, RespError, Value};

/// Whether every string, line and aggregate in `value` is within `limits`.
fn within(value: &Value<'_>, limits: &Limits, depth: usize) -> bool {
    match value {
        Value::Simple(s) | Value::Error(s) | Value::Bulk(s) | Value::BigNumber(s) => {
            s.len() <= limits.max_bulk
        }
        Value::Array(items) | Value::Push(items) => {
            depth < limits.max_depth
                && items.len() <= limits.max_elements
                && items.iter().all(|v| within(v, limits, depth + 1))
        }
        Value::Map(pairs) => {
            depth < limits.max_depth
                && pairs.len() <= limits.max_elements
                && pairs
                    .iter()
                    .all(|(k, v)| within(k, limits, depth + 1) && within(v, limits, depth + 1))
        }
        _ => true,
    }
}

/// Values as `Debug` text (they borrow from different buffers; NaN equals
/// itself as text), then the error the stream stopped at.
fn feed(
    stream: &[u8],
    mut sizes: impl FnMut() -> usize,
    limits: &Limits,
) -> (Vec<String>, Option<RespError>) {
    let mut pending = Vec::new();
    let mut values = Vec::new();
    let mut start = 0;
    while start < stream.len() {
        let end = (start + sizes()).min(stream.len());
        pending.extend_from_slice(&stream[start..end]);
        start = end;
        let mut pos = 0;
        loop {
            let available = pending.len() - pos;
            match resp::parse(&pending[pos..], limits) {
                Err(e) => return (values, Some(e)),
                Ok(None) => break,
                Ok(Some((value, consumed))) => {
                    assert!(consumed > 0 && consumed <= available);
                    assert!(within(&value, limits, 0), "{value:?}");
                    check_rewrite(&value, limits);
                    values.push(format!("{value:?}"));
                    pos += consumed;
                }
            }
        }
        pending.drain(..pos);
    }
    (values, None)
}

/// `write_value` gives bytes that parse back to the value (a double may be
/// written longer than it came, so lines get room).
fn check_rewrite(value: &Value<'_>, limits: &Limits) {
    let mut out = Vec::new();
    resp::write_value(&mut out, value);
    let roomy = Limits {
        max_bulk: usize::MAX,
        ..*limits
    };
    match resp::parse(&out, &roomy) {
        Ok(Some((again, n))) => {
            assert_eq!(n, out.len());
            assert_eq!(format!("{again:?}"), format!("{value:?}"));
        }
        other => panic!("{value:?} written as {out:?}: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, stream @ ..] = data else { return };
    let limits = Limits {
        max_bulk: 1 << (b & 0x0F),
        max_elements: usize::from(b >> 4),
        max_depth: usize::from(c % 8),
    };
    let whole = feed(stream, || usize::MAX, &limits);
    let mut state = u32::from(*a) | 1;
    let split = feed(
        stream,
        || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((state >> 16) % 64) as usize + 1
        },
        &limits,
    );
    assert_eq!(whole, split);
});
