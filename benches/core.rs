//! Micro-benchmarks of the relay's hot paths (criterion, no plots).
//!
//! Run: `cargo bench --bench core`. Every group sets a throughput, so the
//! figures come out as bytes/s or elements/s next to the time per iteration.
//! Groups:
//! - `frame_parse`: `frame::parse_header` per length form, and a read buffer
//!   of 1,000 masked ~80-byte chat frames decoded the way the event loop does;
//! - `frame_encode`: `frame::encode_frame` and `chat::broadcast_frame`;
//! - `unmask`: `mask::unmask` against a byte-at-a-time reference loop;
//! - `utf8`: whole-buffer `utf8::validate` and the incremental validator fed
//!   in 4 KiB pieces, on ASCII and on mixed multibyte text;
//! - `chat`: `chat::decode` and `chat::process` on typical, nested and
//!   invalid messages;
//! - `fanout`: one shared frame pushed to N send queues, with and without
//!   draining them into a sink, and `worker::decode_batch` on 100 messages;
//! - `backplane`: the Redis backplane's sans-IO pieces per chat message:
//!   `msgpack::encode_chat_event` and `decode_chat_event` on the typical and
//!   nested messages, `resp::parse` of a read buffer of 1,000 pub/sub
//!   messages, `resp::write_command` of a PUBLISH, and `shard::shard_for`.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use roomcast::chat;
use roomcast::relay::room::RoomId;
use roomcast::relay::sendq::{Frame, SendQueue};
use roomcast::relay::worker::{self, Batch};
use roomcast::wire::frame::{self, Opcode};
use roomcast::wire::mask::unmask;
use roomcast::wire::message::{Decoded, Decoder, Event, Limits};
use roomcast::wire::utf8::{self, Utf8Validator};
use std::hint::black_box;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const LIMITS: Limits = Limits {
    max_frame_size: 1 << 24,
    max_message_size: 1 << 24,
};

/// Short runs: the whole suite should take a few minutes on two cores.
fn configure() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(25)
}

/// A masked, final client frame, as a browser would send it.
fn client_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    frame::encode_client_frame(true, opcode.to_wire(), payload, MASK)
}

/// The load harness's message (`loadtest/src/payload.rs`), padded to `size`
/// bytes: `{"message":"LT:<epoch>:<ts_us>:<sender>:<seq>:xxxx"}`.
fn harness_message(seq: u32, size: usize) -> String {
    let mut s = format!(
        "{{\"message\":\"LT:3:{}:{}:{}:",
        1_732_400_000_000_000u64 + u64::from(seq) * 37,
        seq % 1000,
        seq
    );
    let pad = size.saturating_sub(s.len() + 2);
    s.push_str(&"x".repeat(pad));
    s.push_str("\"}");
    s
}

/// A chat message whose value is a nested object.
const NESTED: &str = r#"{"message": {"user": {"id": 4211, "name": "zoë", "roles": ["mod", "op"]}, "text": "see you at 10:30 \u2014 room B", "attachments": [{"kind": "link", "url": "https://example.org/a?b=1"}], "edited": false, "score": 2.50}, "client": "web/1.4"}"#;

/// Invalid JSON: a message whose string is never closed.
const INVALID: &str = r#"{"message": "LT:3:1732400000000037:17:4242:xxxxxxxxxxxxxxxxx}"#;

/// Mixed 1-, 2-, 3- and 4-byte UTF-8, cut on a char boundary and padded
/// with ASCII to exactly `len` bytes.
fn mixed_text(len: usize) -> Vec<u8> {
    const PIECE: &str = "Hello, κόσμε! Grüße aus Zürich — 日本語のテキスト 🎉🚀 done. ";
    let mut s = String::with_capacity(len + PIECE.len());
    while s.len() < len {
        s.push_str(PIECE);
    }
    let mut cut = len;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    while s.len() < len {
        s.push('.');
    }
    s.into_bytes()
}

fn ascii_text(len: usize) -> Vec<u8> {
    (0..len).map(|i| b' ' + (i % 95) as u8).collect()
}

fn size_label(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

fn bench_frame_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_parse");
    // One masked client header per length form (payload bytes omitted).
    for (name, payload_len) in [("len7", 80usize), ("len16", 1_000), ("len64", 100_000)] {
        let frame = client_frame(Opcode::Text, &vec![b'a'; payload_len]);
        let header_len = frame::header_len(payload_len) + 4;
        let header = frame[..header_len].to_vec();
        g.throughput(Throughput::Bytes(header_len as u64));
        g.bench_with_input(
            BenchmarkId::new("parse_header", name),
            &header,
            |b, header| b.iter(|| frame::parse_header(black_box(header), true)),
        );
    }

    // A read buffer of 1,000 masked chat frames of ~80 bytes, back to back.
    let mut stream = Vec::new();
    for seq in 0..1_000u32 {
        let msg = harness_message(seq, 76 + (seq as usize % 9));
        stream.extend(client_frame(Opcode::Text, msg.as_bytes()));
    }
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function(BenchmarkId::new("decode_stream", "1000x80B"), |b| {
        let mut decoder = Decoder::default();
        b.iter_batched_ref(
            || stream.clone(),
            |input| {
                // The event loop's shape: decode, advance, until "need more".
                let mut pos = 0;
                let mut messages = 0usize;
                loop {
                    let Decoded { consumed, event } = decoder
                        .decode(&mut input[pos..], &LIMITS)
                        .expect("valid stream");
                    pos += consumed;
                    match event {
                        Some(Event::Message(_, payload)) => {
                            black_box(payload);
                            messages += 1;
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                assert_eq!(messages, 1_000);
                pos
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_frame_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_encode");
    for size in [64usize, 1 << 10, 64 << 10] {
        let payload = vec![b'x'; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("encode_frame", size_label(size)),
            &payload,
            |b, p| b.iter(|| frame::encode_frame(Opcode::Text, black_box(p))),
        );
        // `{"message": ` + raw + `}` is 13 bytes around the raw value.
        let raw = format!("\"{}\"", "y".repeat(size - 13 - 2));
        g.bench_with_input(
            BenchmarkId::new("broadcast_frame", size_label(size)),
            &raw,
            |b, raw| b.iter(|| chat::broadcast_frame(black_box(raw))),
        );
    }
    g.finish();
}

/// The reference: one byte at a time, the mask index recomputed per byte.
#[inline(never)]
fn unmask_naive(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(offset + i) % 4];
    }
}

fn bench_unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [64usize, 1 << 10, 64 << 10, 1 << 20] {
        let mut buf = ascii_text(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("unmask", size_label(size)), |b| {
            b.iter(|| unmask(black_box(&mut buf), black_box(MASK), 0))
        });
        g.bench_function(BenchmarkId::new("naive_bytewise", size_label(size)), |b| {
            b.iter(|| unmask_naive(black_box(&mut buf), black_box(MASK), 0))
        });
    }
    g.finish();
}

fn bench_utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for (kind, make) in [
        ("ascii", ascii_text as fn(usize) -> Vec<u8>),
        ("mixed", mixed_text),
    ] {
        for size in [1usize << 10, 1 << 20] {
            let text = make(size);
            assert!(std::str::from_utf8(&text).is_ok());
            let label = format!("{kind}/{}", size_label(size));
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new("validate", &label), &text, |b, t| {
                b.iter(|| utf8::validate(black_box(t)))
            });
            // The message buffer grows by 4 KiB reads; each call sees it all.
            g.bench_with_input(
                BenchmarkId::new("incremental_4KiB", &label),
                &text,
                |b, t| {
                    b.iter(|| {
                        let mut v = Utf8Validator::default();
                        let mut end = 0;
                        while end < t.len() {
                            end = (end + 4096).min(t.len());
                            v.advance(black_box(&t[..end])).expect("valid");
                        }
                        v.finish(t)
                    })
                },
            );
        }
    }
    g.finish();
}

fn bench_chat(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat");
    let typical = harness_message(4242, 64);
    assert_eq!(typical.len(), 64);
    let cases = [
        ("typical_64B", typical.as_str()),
        ("nested_object", NESTED),
        ("invalid_json", INVALID),
    ];
    assert!(chat::decode(cases[0].1).is_ok());
    assert!(chat::decode(cases[1].1).is_ok());
    assert!(chat::decode(cases[2].1).is_err());
    g.throughput(Throughput::Elements(1));
    for (name, text) in cases {
        g.bench_with_input(BenchmarkId::new("decode", name), text, |b, t| {
            b.iter(|| chat::decode(black_box(t)).is_ok())
        });
        g.bench_with_input(BenchmarkId::new("process", name), text, |b, t| {
            b.iter(|| chat::process(black_box(t)))
        });
    }
    g.finish();
}

/// Accepts every byte, like `std::io::sink()`, with a real vectored write.
struct AcceptAll;

impl Write for AcceptAll {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(black_box(buf).len())
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(black_box(bufs).iter().map(|b| b.len()).sum())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn bench_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    let text = harness_message(4242, 64);
    let frame: Frame = Frame::from(chat::process(&text).expect("valid"));
    for n in [1_000usize, 10_000] {
        let mut queues: Vec<SendQueue> = (0..n).map(|_| SendQueue::default()).collect();
        g.throughput(Throughput::Elements(n as u64));

        // Push only, queues keeping their capacity between rounds (reset by
        // an untimed discard): the cheapest case, one Arc clone + push_back.
        g.bench_function(BenchmarkId::new("push_warm", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    for q in queues.iter_mut() {
                        q.push(black_box(&frame).clone());
                    }
                    total += t.elapsed();
                    for q in queues.iter_mut() {
                        q.discard_unstarted(0);
                    }
                }
                total
            })
        });

        // Push only, onto queues that were drained by write_to (which frees
        // the VecDeque), as in the server after every flush.
        g.bench_function(BenchmarkId::new("push_after_drain", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    for q in queues.iter_mut() {
                        q.push(black_box(&frame).clone());
                    }
                    total += t.elapsed();
                    for q in queues.iter_mut() {
                        q.write_to(AcceptAll).expect("sink");
                    }
                }
                total
            })
        });

        // Push and drain each queue into the sink: the whole per-recipient
        // cost of the queue bookkeeping for one broadcast.
        g.bench_function(BenchmarkId::new("push_and_drain", n), |b| {
            b.iter(|| {
                for q in queues.iter_mut() {
                    q.push(black_box(&frame).clone());
                }
                let mut bytes = 0;
                for q in queues.iter_mut() {
                    bytes += q.write_to(AcceptAll).expect("sink").bytes;
                }
                bytes
            })
        });
    }

    // One loop iteration's worth of chat messages decoded into frames.
    let mut batch = Batch::default();
    let room = RoomId {
        slot: 0,
        generation: std::num::NonZeroU32::MIN,
    };
    for seq in 0..100u32 {
        let sender = roomcast::relay::ConnId {
            key: seq,
            generation: 1,
        };
        batch.push(
            room,
            None,
            sender,
            None,
            harness_message(seq, 64).as_bytes(),
        );
    }
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function(BenchmarkId::new("decode_batch", "100x64B"), |b| {
        let mut out = Vec::with_capacity(batch.len());
        b.iter(|| {
            out.clear();
            worker::decode_batch(black_box(&batch), worker::Encoding::Frame, &mut out);
            out.len()
        })
    });
    g.finish();
}

fn bench_backplane(c: &mut Criterion) {
    use roomcast::backplane::{msgpack, resp, shard};
    let mut g = c.benchmark_group("backplane");
    g.throughput(Throughput::Elements(1));
    let typical = harness_message(4242, 64);
    let mut payloads = Vec::new();
    for (name, text) in [("typical_64B", typical.as_str()), ("nested_object", NESTED)] {
        let message = chat::decode(text).unwrap();
        let mut payload = Vec::new();
        msgpack::encode_chat_event(message, &mut payload).unwrap();
        let mut out = Vec::with_capacity(256);
        g.bench_with_input(BenchmarkId::new("encode", name), message, |b, m| {
            b.iter(|| {
                out.clear();
                msgpack::encode_chat_event(black_box(m), &mut out)
            })
        });
        g.bench_with_input(BenchmarkId::new("decode", name), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                msgpack::decode_chat_event(black_box(p), &mut out)
            })
        });
        payloads.push(payload);
    }
    let channel = shard::group_channel("asgi", "lobby");
    let mut command = Vec::new();
    g.bench_function("write_command_publish", |b| {
        b.iter(|| {
            command.clear();
            resp::write_command(
                &mut command,
                &[b"PUBLISH", channel.as_bytes(), &payloads[0]],
            );
        })
    });
    g.bench_function("shard_for", |b| {
        b.iter(|| shard::shard_for(black_box(channel.as_bytes()), 4))
    });
    // What a subscriber reads: RESP2 pub/sub messages back to back.
    let mut stream = Vec::new();
    for _ in 0..1000 {
        resp::write_command(&mut stream, &[b"message", channel.as_bytes(), &payloads[0]]);
    }
    let limits = resp::Limits {
        max_bulk: 1 << 20,
        max_elements: 1 << 10,
        max_depth: 4,
    };
    g.throughput(Throughput::Elements(1000));
    g.bench_function("resp_parse_1000_messages", |b| {
        b.iter(|| {
            let mut pos = 0;
            while let Ok(Some((value, n))) = resp::parse(&stream[pos..], &limits) {
                black_box(value);
                pos += n;
            }
            pos
        })
    });
    g.finish();
}

criterion_group! {
    name = core;
    config = configure();
    targets = bench_frame_parse, bench_frame_encode, bench_unmask, bench_utf8, bench_chat,
        bench_fanout, bench_backplane
}
criterion_main!(core);
