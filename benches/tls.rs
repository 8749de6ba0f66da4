//! TLS costs (src/tls/), for the provider choice and the per-delivery
//! budget. Criterion, short runs, no plots.
//!
//! Run: `cargo bench --bench tls`. Groups:
//! - `handshake`: the server's CPU for one full handshake (only the
//!   `TlsConn` calls are timed; the client's work is not), TLS 1.3, per
//!   provider and certificate key: ECDSA P-256 and RSA 2048 with X25519,
//!   aws-lc-rs also with X25519MLKEM768 (what current browsers offer
//!   first), and a resumption with a ticket;
//! - `encrypt`: `TlsConn::encrypt` of one chat frame (100 B) and of one
//!   16 KiB frame, AES-128-GCM and ChaCha20-Poly1305, per provider: what
//!   the loop pays per recipient of a broadcast;
//! - `encrypt_batch`: 10 frames of 100 B in one call (one record) against
//!   10 calls (10 records);
//! - `decrypt`: `TlsConn::read` of one 100 B record and one 16 KiB record.

#[path = "../tests/tls_support/mod.rs"]
mod tls_support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use roomcast::tls;
use rustls::{CipherSuite, NamedGroup};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::*;

fn configure() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

/// Runs a handshake, timing only the server's calls.
fn server_handshake_time(pair: &mut Pair) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..10 {
        let bytes = pair.client_output();
        let t = Instant::now();
        pair.server_reads(&bytes, READ_BUFFER).unwrap();
        spent += t.elapsed();
        pair.server_to_client().unwrap();
        if !pair.client.is_handshaking() && !pair.server.is_handshaking() {
            pair.server_to_client().unwrap();
            return spent;
        }
    }
    panic!("no handshake");
}

fn handshake(c: &mut Criterion) {
    let pki = Pki::new();
    let ecdsa = pki.issue(KeyKind::EcdsaP256, 1);
    let rsa = pki.issue(KeyKind::Rsa2048, 2);
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    for (pname, provider) in PROVIDERS {
        let mut kx = vec![NamedGroup::X25519];
        if pname == "aws-lc-rs" {
            kx.push(NamedGroup::X25519MLKEM768);
        }
        for group_name in kx {
            for (kname, cert) in [("ecdsa-p256", &ecdsa), ("rsa-2048", &rsa)] {
                let server = server_config(cert, provider());
                let mut client_provider = aws_lc_provider();
                client_provider.kx_groups.retain(|g| g.name() == group_name);
                let mut client = (*client_config(
                    &pki,
                    client_provider,
                    &[&rustls::version::TLS13],
                    &[b"http/1.1"],
                ))
                .clone();
                client.resumption = rustls::client::Resumption::disabled();
                let client = Arc::new(client);
                let id = format!("{pname}/{kname}/{group_name:?}");
                group.bench_function(BenchmarkId::new("full_tls13", id), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let mut pair = Pair::new(server.clone(), client.clone());
                            let t = Instant::now();
                            pair.server = tls::TlsConn::new(server.clone()).unwrap();
                            total += t.elapsed();
                            total += server_handshake_time(&mut pair);
                        }
                        total
                    })
                });
            }
        }
        // Resumption with a ticket (ECDSA certificate, X25519).
        let server = server_config(&ecdsa, provider());
        let client = client_config(
            &pki,
            aws_lc_provider(),
            &[&rustls::version::TLS13],
            &[b"http/1.1"],
        );
        let mut resumed = 0u64;
        group.bench_function(BenchmarkId::new("resumed_tls13", pname), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut pair = Pair::new(server.clone(), client.clone());
                    total += server_handshake_time(&mut pair);
                    resumed += u64::from(pair.server.resumed());
                }
                total
            })
        });
        assert!(resumed > 0, "no handshake resumed");
    }
    group.finish();
}

/// An open pair on `provider` with `suite` negotiated.
fn open(provider: MakeProvider, suite: CipherSuite) -> Pair {
    let pki = Pki::new();
    let cert = pki.issue(KeyKind::EcdsaP256, 1);
    let client = client_config(
        &pki,
        only_suite(provider(), suite, None),
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    );
    let mut pair = Pair::new(server_config(&cert, provider()), client);
    pair.handshake().unwrap();
    pair
}

const SUITES: [(&str, CipherSuite); 2] = [
    ("aes128gcm", CipherSuite::TLS13_AES_128_GCM_SHA256),
    ("chacha20", CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
];

fn encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("encrypt");
    for (pname, provider) in PROVIDERS {
        for (sname, suite) in SUITES {
            for size in [100usize, 16_384] {
                let mut pair = open(provider, suite);
                let frame = vec![b'x'; size];
                let mut out = Vec::with_capacity(2 * size + 64);
                let mut gather = Vec::new();
                group.throughput(Throughput::Bytes(size as u64));
                group.bench_function(BenchmarkId::new(format!("{pname}/{sname}"), size), |b| {
                    b.iter(|| {
                        out.clear();
                        pair.server
                            .encrypt([black_box(&frame[..])], &mut gather, &mut out)
                            .unwrap();
                        black_box(out.len())
                    })
                });
            }
        }
    }
    group.finish();
}

fn encrypt_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("encrypt_batch");
    group.throughput(Throughput::Elements(10));
    let frames: Vec<Vec<u8>> = (0..10).map(|i| vec![b'a' + i; 100]).collect();
    for (pname, provider) in PROVIDERS {
        let mut pair = open(provider, CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut out = Vec::with_capacity(4096);
        let mut gather = Vec::new();
        group.bench_function(BenchmarkId::new("one_call_10x100B", pname), |b| {
            b.iter(|| {
                out.clear();
                pair.server
                    .encrypt(frames.iter().map(Vec::as_slice), &mut gather, &mut out)
                    .unwrap();
                black_box(out.len())
            })
        });
        group.bench_function(BenchmarkId::new("ten_calls_10x100B", pname), |b| {
            b.iter(|| {
                out.clear();
                for f in &frames {
                    pair.server
                        .encrypt([&f[..]], &mut gather, &mut out)
                        .unwrap();
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn decrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("decrypt");
    for (pname, provider) in PROVIDERS {
        for size in [100usize, 16_384] {
            let mut pair = open(provider, CipherSuite::TLS13_AES_128_GCM_SHA256);
            // Records sealed by the client, decrypted in a fresh copy each time.
            let mut records = Vec::new();
            let count = 2_000;
            for _ in 0..count {
                std::io::Write::write_all(&mut pair.client.writer(), &vec![b'y'; size]).unwrap();
                records.push(pair.client_output());
            }
            let mut buf = vec![0u8; READ_BUFFER];
            let mut plain = Vec::with_capacity(2 * size);
            let mut out = Vec::new();
            let mut next = 0;
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(format!("{pname}/aes128gcm"), size), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if next == count {
                            // Out of records: a new connection and a new stock.
                            pair = open(provider, CipherSuite::TLS13_AES_128_GCM_SHA256);
                            records.clear();
                            for _ in 0..count {
                                std::io::Write::write_all(
                                    &mut pair.client.writer(),
                                    &vec![b'y'; size],
                                )
                                .unwrap();
                                records.push(pair.client_output());
                            }
                            next = 0;
                        }
                        let r = &records[next];
                        next += 1;
                        buf[..r.len()].copy_from_slice(r);
                        plain.clear();
                        let t = Instant::now();
                        pair.server
                            .read(&mut buf[..r.len()], &mut plain, &mut out)
                            .unwrap();
                        total += t.elapsed();
                        black_box(plain.len());
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = configure();
    targets = handshake, encrypt, encrypt_batch, decrypt
}
criterion_main!(benches);
