//! Frames and message assembly: the input after two control bytes is a
//! client byte stream, fed to a `Decoder` whole and in reads whose sizes
//! come from the control bytes, with small limits. Both must give the same
//! events, then the same error or leftover, and every event must be sane.
//! The first control byte's top bit decodes as a connection that negotiated
//! permessage-deflate (`decode_deflate`, RSV1 allowed on first frames,
//! compressed messages inflated with one reused inflater).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::wire::deflate::Inflater;
use roomcast::wire::error::ProtocolError;
use roomcast::wire::frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use roomcast::wire::message::{DataKind, Decoded, Decoder, Event, Limits};

#[derive(Debug, PartialEq)]
enum Owned {
    Message(DataKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn owned(event: Event<'_>, limits: &Limits) -> Owned {
    match event {
        Event::Message(kind, p) => {
            assert!(kind == DataKind::Binary || std::str::from_utf8(p).is_ok());
            // Inflated or not, a message never exceeds the limit.
            assert!(p.len() as u64 <= limits.max_message_size);
            Owned::Message(kind, p.to_vec())
        }
        Event::Ping(p) => {
            assert!(p.len() <= MAX_CONTROL_PAYLOAD);
            Owned::Ping(p.to_vec())
        }
        Event::Pong(p) => {
            assert!(p.len() <= MAX_CONTROL_PAYLOAD);
            Owned::Pong(p.to_vec())
        }
        Event::Close(c) => {
            if let Some((code, reason)) = c {
                assert!(code.is_valid_on_wire() && reason.len() <= MAX_CONTROL_PAYLOAD - 2);
            }
            Owned::Close(c.map(|(code, reason)| (code.0, reason.to_string())))
        }
    }
}

/// Feeds `stream` in reads of the sizes `sizes` yields, as the event loop
/// does: keep the unconsumed rest, decode until no event.
fn feed(
    stream: &[u8],
    mut sizes: impl FnMut() -> usize,
    limits: &Limits,
    mut inflater: Option<&mut Inflater>,
) -> (Vec<Owned>, Result<Vec<u8>, ProtocolError>) {
    let mut decoder = Decoder::default();
    let mut inflated = Vec::new();
    let mut pending = Vec::new();
    let mut events = Vec::new();
    let mut start = 0;
    while start < stream.len() {
        let end = (start + sizes()).min(stream.len());
        pending.extend_from_slice(&stream[start..end]);
        start = end;
        let mut pos = 0;
        loop {
            let available = pending.len() - pos;
            let result = match inflater.as_deref_mut() {
                Some(inflater) => {
                    decoder.decode_deflate(&mut pending[pos..], limits, inflater, &mut inflated)
                }
                None => decoder.decode(&mut pending[pos..], limits),
            };
            match result {
                Err(e) => return (events, Err(e)),
                Ok(Decoded { consumed, event }) => {
                    assert!(consumed <= available);
                    pos += consumed;
                    let Some(event) = event else { break };
                    assert!(consumed > 0, "an event that consumes nothing");
                    events.push(owned(event, limits));
                }
            }
        }
        pending.drain(..pos);
        assert!(pending.len() < MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD);
        decoder.release_buffer();
    }
    (events, Ok(pending))
}

fuzz_target!(|data: &[u8]| {
    let [a, b, stream @ ..] = data else { return };
    let limits = Limits {
        max_frame_size: 1 << (b & 0x0F),
        max_message_size: 1 << ((b >> 4) + 1),
    };
    // One inflater for both runs, as the event loop shares one.
    let mut inflater = (a & 0x80 != 0).then(Inflater::new);
    let whole = feed(stream, || usize::MAX, &limits, inflater.as_mut());
    // Read sizes 1 to 64 from a small generator seeded by the first byte.
    let mut state = u32::from(*a) | 1;
    let split = feed(
        stream,
        || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((state >> 16) % 64) as usize + 1
        },
        &limits,
        inflater.as_mut(),
    );
    assert_eq!(whole, split);
});
