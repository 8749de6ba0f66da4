//! HTTP request heads: `parse_head` with a small and a large size limit,
//! then `decide` on every request it returns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::wire::http::{self, Decision, OriginPolicy};

fuzz_target!(|data: &[u8]| {
    let wildcard = OriginPolicy::new(&[
        "*.example.com".to_string(),
        "https://app.example.org".to_string(),
        "localhost".to_string(),
    ]);
    for max in [64, 8192] {
        match http::parse_head(data, max) {
            Ok(None) => assert!(data.len() <= max, "buffered past the limit"),
            Ok(Some((req, n))) => {
                assert!(n > 0 && n <= data.len() && n <= max);
                // The head alone parses to the same request.
                assert_eq!(
                    http::parse_head(&data[..n], max),
                    Ok(Some((req.clone(), n)))
                );
                for policy in [&wildcard, &OriginPolicy::default()] {
                    match http::decide(&req, policy) {
                        Decision::Upgrade { accept, .. } => {
                            assert!(req.method == "GET" && req.http11 && req.connection_upgrade);
                            assert_eq!(accept.len(), 28);
                            http::upgrade_response(&accept);
                        }
                        Decision::Reject(rej) => {
                            assert!((400..=499).contains(&rej.status), "{rej:?}");
                            http::rejection_response(&rej);
                        }
                        Decision::Serve { .. } => {}
                        Decision::Publish { room } => {
                            assert!(req.path.starts_with("/publish/"));
                            if let Err(rej) = room {
                                assert_eq!(rej.status, 400);
                            }
                        }
                    }
                }
            }
            Err(rej) => assert!(matches!(rej.status, 400 | 431), "{rej:?}"),
        }
    }
});
