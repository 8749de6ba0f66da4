//! The `--auth-url` back end's answers: `parse_response` on arbitrary bytes,
//! open and at EOF. A complete response takes no more than the buffer and
//! parses the same from exactly its own bytes; "need more" never holds more
//! than the bounds allow; every complete response gets a verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::auth::{parse_response, verdict_of, Parsed, ResponseLimits};

const LIMITS: ResponseLimits = ResponseLimits {
    head: 512,
    body: 256,
};

fuzz_target!(|data: &[u8]| {
    for eof in [false, true] {
        match parse_response(data, eof, &LIMITS) {
            Ok(Parsed::Partial) => {
                assert!(!eof, "EOF must decide");
                assert!(
                    data.len() <= LIMITS.head + 2 * LIMITS.body,
                    "buffered past the bounds"
                );
            }
            Ok(Parsed::Complete(r)) => {
                assert!(r.len <= data.len());
                assert!(r.body.len() <= LIMITS.body);
                if r.keep_alive {
                    // A reusable response ends where it says it does: its
                    // own bytes parse the same.
                    let again = parse_response(&data[..r.len], eof, &LIMITS);
                    assert_eq!(again, Ok(Parsed::Complete(r.clone())));
                }
                let _ = verdict_of(&r);
            }
            Err(e) => {
                let _ = e.unavailable();
            }
        }
    }
});
