//! permessage-deflate's receive path: arbitrary bytes as a compressed
//! message's payload, inflated directly with a small bound, and the same
//! payload sent as client frames with RSV1 (split into fragments whose
//! sizes come from the control byte) through `Decoder::decode_deflate`.
//! Both must agree: the same message, or the same fault. Whatever inflates
//! must come back through the relay's own compressor at every window size,
//! and no output may pass the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::wire::deflate::{Compressor, InflateError, Inflater, WindowBits};
use roomcast::wire::error::ProtocolError;
use roomcast::wire::frame::encode_client_frame;
use roomcast::wire::message::{DataKind, Decoded, Decoder, Event, Limits};

/// Small enough that bombs hit it quickly.
const MAX_MESSAGE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let [control, payload @ ..] = data else {
        return;
    };
    let mut inflater = Inflater::new();

    // Direct: bounded, and reusable after any outcome.
    let mut direct = Vec::new();
    let result = inflater.inflate(payload, MAX_MESSAGE, &mut direct);
    // At most one byte past the bound, and only to prove it too big.
    assert!(direct.capacity() <= MAX_MESSAGE + 1);
    match result {
        Ok(()) => assert!(direct.len() <= MAX_MESSAGE),
        Err(InflateError::TooBig) => assert_eq!(direct.len(), MAX_MESSAGE + 1),
        Err(InflateError::Corrupt) => assert!(direct.len() <= MAX_MESSAGE),
    }
    if result.is_ok() {
        let mut compressor = Compressor::new();
        for window in WindowBits::all() {
            let mut packed = Vec::new();
            compressor.compress(&direct, window, &mut packed).unwrap();
            let mut back = Vec::new();
            inflater.inflate(&packed, direct.len(), &mut back).unwrap();
            assert_eq!(back, direct);
        }
    }

    // Through the frame decoder, as binary (no UTF-8 check) in fragments.
    let kind = if control & 1 == 0 { 0x2 } else { 0x1 };
    let parts = usize::from(control >> 1 & 0x7) + 1;
    let chunk = (payload.len() / parts).max(1);
    let mut stream = Vec::new();
    let pieces: Vec<&[u8]> = if payload.is_empty() {
        vec![payload]
    } else {
        payload.chunks(chunk).collect()
    };
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { kind } else { 0x0 };
        let mut frame = encode_client_frame(i + 1 == pieces.len(), opcode, piece, [1, 2, 3, 4]);
        if i == 0 {
            frame[0] |= 0x40;
        }
        stream.extend(frame);
    }
    let limits = Limits {
        max_frame_size: u64::MAX >> 1,
        max_message_size: MAX_MESSAGE as u64,
    };
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    let decoded = match decoder.decode_deflate(&mut stream, &limits, &mut inflater, &mut out) {
        Ok(Decoded {
            event: Some(Event::Message(k, message)),
            ..
        }) => {
            assert_eq!(
                k,
                if kind == 0x1 {
                    DataKind::Text
                } else {
                    DataKind::Binary
                }
            );
            Ok(message.to_vec())
        }
        Ok(other) => panic!("a whole message gave {other:?}"),
        Err(e) => Err(e),
    };
    let expected = match result {
        Ok(()) if kind == 0x1 && std::str::from_utf8(&direct).is_err() => {
            Err(ProtocolError::InvalidUtf8)
        }
        Ok(()) => Ok(direct),
        Err(InflateError::TooBig) => Err(ProtocolError::InflatedTooBig),
        Err(InflateError::Corrupt) => Err(ProtocolError::CorruptCompression),
    };
    assert_eq!(decoded, expected);
});
