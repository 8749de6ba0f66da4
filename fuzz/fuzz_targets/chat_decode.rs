//! The chat contract: `chat::decode`/`process` on arbitrary text. A
//! broadcast must hold the input's "message" value; an error frame must be
//! JSON with an "error" string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::chat;
use roomcast::wire::frame;
use serde_json::Value;

fn payload(f: &[u8]) -> Value {
    let (h, n) = frame::parse_header(f, false).unwrap().unwrap();
    assert!(h.fin && h.opcode == frame::Opcode::Text);
    assert_eq!(h.payload_len as usize, f.len() - n);
    serde_json::from_slice(&f[n..]).expect("the relay's frames hold JSON")
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match chat::process(&text) {
        Ok(broadcast) => match serde_json::from_str::<Value>(&text) {
            Ok(input) => {
                let out = payload(&broadcast);
                assert_eq!(out.as_object().map(|o| o.len()), Some(1));
                assert!(out.get("message").is_some());
                assert_eq!(out.get("message"), input.get("message"));
            }
            Err(e) => {
                // Valid JSON (RFC 8259's grammar) that serde_json's `Value`
                // cannot hold: 1e400, a lone surrogate escape ("\ud800"),
                // nesting past its recursion limit (skipping a raw value has
                // none). The raw text is passed through as it came.
                let why = e.to_string();
                assert!(
                    [
                        "out of range",
                        "surrogate",
                        "end of hex escape",
                        "recursion limit"
                    ]
                    .iter()
                    .any(|w| why.contains(w)),
                    "{why}: {text:?}"
                );
                let (_, n) = frame::parse_header(&broadcast, false).unwrap().unwrap();
                serde_json::from_slice::<serde::de::IgnoredAny>(&broadcast[n..]).unwrap();
            }
        },
        Err(error) => {
            let out = payload(&error);
            assert_eq!(out.as_object().map(|o| o.len()), Some(1));
            assert!(out["error"].is_string());
        }
    }
});
