//! No byte sequence makes the TLS layer panic, loop, or keep more than
//! `MAX_PENDING` bytes: arbitrary bytes, and real handshake flights with
//! bytes flipped, cut into arbitrary reads.

mod prop_support;
mod tls_support;

use prop_support::{config, cuts};
use proptest::prelude::*;
use proptest::sample::Index;
use roomcast::tls::conn::MAX_PENDING;
use roomcast::tls::{self, Stage, TlsConn};
use rustls::ServerConfig;
use std::sync::{Arc, OnceLock};
use tls_support::*;

/// One server config and one real client first flight for all cases.
fn fixture() -> &'static (Arc<ServerConfig>, Vec<u8>) {
    static FIXTURE: OnceLock<(Arc<ServerConfig>, Vec<u8>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pki = Pki::new();
        let cert = pki.issue(KeyKind::EcdsaP256, 1);
        let config = server_config(&cert, tls::provider());
        let hello = Pair::new(config.clone(), default_client(&pki)).client_output();
        (config, hello)
    })
}

/// Feeds `bytes` to a fresh `TlsConn` in reads cut at `cut_at`, as the
/// loop would; checks the invariants after every read.
fn feed(bytes: &[u8], cut_at: &[usize]) {
    let (config, _) = fixture();
    let mut conn = TlsConn::new(config.clone()).unwrap();
    let mut buf = vec![0u8; READ_BUFFER];
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    let mut start = 0;
    for &end in cut_at.iter().chain([&bytes.len()]) {
        let piece = &bytes[start..end.max(start)];
        start = end.max(start);
        let n = conn.restore_pending(&mut buf);
        buf[n..n + piece.len()].copy_from_slice(piece);
        out.clear();
        let result = conn.read(&mut buf[..n + piece.len()], &mut plain, &mut out);
        assert!(conn.pending_len() <= MAX_PENDING);
        assert!(out.len() <= 16_384, "output bounded by one flight");
        assert!(plain.is_empty(), "no application data before a handshake");
        if result.is_err() {
            assert!(matches!(conn.stage(), Stage::Failed(_)));
            assert_eq!(conn.pending_len(), 0, "a failed connection keeps nothing");
            return;
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096),
                       cut in proptest::collection::vec(any::<Index>(), 0..8)) {
        feed(&bytes, &cuts(&cut, bytes.len()));
    }

    #[test]
    fn a_client_hello_with_bytes_flipped(flips in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..6),
                                         cut in proptest::collection::vec(any::<Index>(), 0..8),
                                         truncate in any::<Index>()) {
        let (_, hello) = fixture();
        let mut bytes = hello.clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value | 1;
        }
        let keep = bytes.len() - truncate.index(bytes.len() / 4 + 1);
        bytes.truncate(keep);
        feed(&bytes, &cuts(&cut, bytes.len()));
    }
}
