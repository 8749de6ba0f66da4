//! Memory per idle TLS connection: the design number of SPEC section 8.
//!
//! glibc's `mallinfo2().uordblks` (bytes in use, chunk headers included)
//! is read around N server connections that finished their handshake and
//! exchanged one message each way, then went idle. It counts C allocations
//! too (aws-lc-rs keeps its AEAD contexts in C), which a counting Rust
//! global allocator would miss. This file holds one test, so no other test
//! thread allocates meanwhile. Run with `--nocapture` to see the table:
//! `cargo test --release --test tls_memory -- --nocapture`.

mod tls_support;

use roomcast::tls::TlsConn;
use rustls::server::{ServerConnection, ServerSessionMemoryCache};
use rustls::{CipherSuite, ServerConfig};
use std::io::{Read, Write};
use std::sync::Arc;
use tls_support::*;

const N: usize = 400;

/// The most heap an idle `TlsConn` may hold, its box included (measured:
/// 3,666 bytes with aws-lc-rs, TLS 1.3, AES-128-GCM).
const IDLE_CEILING: usize = 3_840;

/// Bytes of heap in use in this process (glibc).
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2() }.uordblks
}

/// One row of the table.
struct Row {
    what: String,
    heap_per_conn: usize,
    inline: usize,
}

/// Heap held per connection by `make`'s objects, N at a time.
fn measure<T>(mut make: impl FnMut() -> T) -> usize {
    // Warm up allocator pools and lazy statics.
    drop((0..8).map(|_| make()).collect::<Vec<_>>());
    let mut held = Vec::with_capacity(N);
    for _ in 0..N {
        held.push(make());
    }
    let with = heap_in_use();
    drop(held);
    let without = heap_in_use();
    with.saturating_sub(without) / N
}

/// An unbuffered `TlsConn`, boxed as the loop will hold it, after a
/// handshake and one message each way.
fn idle_unbuffered(server: &Arc<ServerConfig>, client: &Arc<rustls::ClientConfig>) -> Box<TlsConn> {
    let mut pair = Pair::new(server.clone(), client.clone());
    pair.handshake().unwrap();
    pair.client_sends(br#"{"message": "hello, room"}"#).unwrap();
    pair.server_sends(&[br#"{"message": "hello, room"}"#]);
    assert_eq!(pair.client_plaintext(), br#"{"message": "hello, room"}"#);
    Box::new(pair.server)
}

/// rustls's buffered `ServerConnection`, boxed, in the same state.
fn idle_buffered(
    server: &Arc<ServerConfig>,
    client: &Arc<rustls::ClientConfig>,
) -> Box<ServerConnection> {
    let mut s = Box::new(ServerConnection::new(server.clone()).unwrap());
    let mut c = rustls::ClientConnection::new(client.clone(), HOST.try_into().unwrap()).unwrap();
    let mut pipe = Vec::new();
    for _ in 0..10 {
        while c.wants_write() {
            c.write_tls(&mut pipe).unwrap();
        }
        s.read_tls(&mut &pipe[..]).unwrap();
        pipe.clear();
        s.process_new_packets().unwrap();
        while s.wants_write() {
            s.write_tls(&mut pipe).unwrap();
        }
        c.read_tls(&mut &pipe[..]).unwrap();
        pipe.clear();
        c.process_new_packets().unwrap();
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
    }
    c.writer()
        .write_all(br#"{"message": "hello, room"}"#)
        .unwrap();
    c.write_tls(&mut pipe).unwrap();
    s.read_tls(&mut &pipe[..]).unwrap();
    pipe.clear();
    s.process_new_packets().unwrap();
    let mut got = [0u8; 64];
    let n = s.reader().read(&mut got).unwrap();
    assert_eq!(&got[..n], br#"{"message": "hello, room"}"#);
    s.writer().write_all(&got[..n]).unwrap();
    while s.wants_write() {
        s.write_tls(&mut pipe).unwrap();
    }
    s
}

#[test]
fn memory_per_idle_tls_connection() {
    let pki = Pki::new();
    let cert = pki.issue(KeyKind::EcdsaP256, 1);
    let mut rows = Vec::new();

    let suites = [
        (
            "TLS1.3 AES-128-GCM",
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            &rustls::version::TLS13,
        ),
        (
            "TLS1.3 ChaCha20",
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            &rustls::version::TLS13,
        ),
        (
            "TLS1.2 AES-128-GCM",
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            &rustls::version::TLS12,
        ),
    ];
    let mut chosen = usize::MAX;
    let mut buffered_min = usize::MAX;
    for (pname, provider) in PROVIDERS {
        let server = server_config(&cert, provider());
        for (sname, suite, version) in suites {
            let client = client_config(
                &pki,
                only_suite(provider(), suite, None),
                &[version],
                &[b"http/1.1"],
            );
            let unbuffered = measure(|| idle_unbuffered(&server, &client));
            if pname == "aws-lc-rs" && suite == CipherSuite::TLS13_AES_128_GCM_SHA256 {
                chosen = unbuffered;
            }
            rows.push(Row {
                what: format!("{pname:9} {sname:18} TlsConn (unbuffered)"),
                heap_per_conn: unbuffered,
                inline: std::mem::size_of::<TlsConn>(),
            });
            let buffered = measure(|| idle_buffered(&server, &client));
            buffered_min = buffered_min.min(buffered);
            rows.push(Row {
                what: format!("{pname:9} {sname:18} ServerConnection (buffered)"),
                heap_per_conn: buffered,
                inline: std::mem::size_of::<ServerConnection>(),
            });
        }
    }

    // A stateful session cache instead of tickets: what each cached
    // session costs (TLS 1.3, aws-lc-rs, tickets off): the heap the cache frees
    // when dropped, less an empty cache of the same capacity.
    let empty = {
        let before = heap_in_use();
        let cache = ServerSessionMemoryCache::new(4 * N);
        let with = heap_in_use();
        drop(cache);
        with.saturating_sub(before)
    };
    let mut cached = (*server_config(&cert, aws_lc_provider())).clone();
    cached.ticketer = Arc::new(NoTickets);
    cached.session_storage = ServerSessionMemoryCache::new(4 * N);
    let cached = Arc::new(cached);
    // A client that never resumes, so each handshake leaves one session in
    // the cache (a resumption takes its single-use session out).
    let mut fresh = (*default_client(&pki)).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(fresh);
    for _ in 0..N {
        drop(idle_unbuffered(&cached, &client));
    }
    let before = heap_in_use();
    drop(cached);
    let cache_per_session = (before.saturating_sub(heap_in_use())).saturating_sub(empty) / N;

    eprintln!("\nheap held per idle TLS connection (N = {N}, handshake + one message each way)");
    eprintln!("{:66} {:>10} {:>12}", "", "heap (B)", "size_of (B)");
    for row in &rows {
        eprintln!(
            "{:66} {:>10} {:>12}",
            row.what, row.heap_per_conn, row.inline
        );
    }
    eprintln!(
        "stateful session cache instead of tickets: {cache_per_session} B per cached session"
    );

    // SPEC's goal is 2 KiB above a plaintext connection; rustls 0.23's
    // connection object alone (1,088 bytes inline, two expanded AEAD keys
    // of 560 bytes, its handshake state's key schedule) is past it. This
    // pins what the unbuffered design achieves, so that it does not grow.
    assert!(
        chosen <= IDLE_CEILING,
        "an idle TLS connection holds {chosen} bytes"
    );
    assert!(
        buffered_min > chosen + 3_072,
        "the buffered API keeps its 4 KiB read buffer: {buffered_min} against {chosen}"
    );
}

/// A ticketer that issues nothing, to force the session cache.
#[derive(Debug)]
struct NoTickets;

impl rustls::server::ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }
    fn lifetime(&self) -> u32 {
        0
    }
    fn encrypt(&self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn decrypt(&self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
}
