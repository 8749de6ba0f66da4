//! permessage-deflate micro-benchmarks: which crate, which level, and which
//! `--deflate-min-size` (criterion, no plots).
//!
//! Run: `cargo bench --bench deflate` measures roomcast's own path (zlib-rs
//! through `deflate::Compressor` and `deflate::Inflater`) at several levels;
//! `cargo bench --bench deflate --features deflate-candidates` adds the
//! other candidates, libdeflater and miniz_oxide. Every message is
//! realistic chat JSON (`src/wire/deflate/sample.rs`: a user, a timestamp,
//! mentions, reactions and text; `{"message":"..."}` under 400 B). Each
//! codec's state is made once and reset per message, as the event loop
//! will. Throughput is the uncompressed size. Groups:
//! - `deflate_compress/<codec>/<size>`: one message into a permessage-deflate
//!   payload (64 B, 256 B, the ~1 KiB chat message, 4 KiB, 64 KiB);
//! - `deflate_inflate/<codec>/<size>`: that payload (as roomcast makes it,
//!   sync-flushed like a browser's) back into the message;
//! - `deflate_min_size/{compress,inflate}/<size>`: roomcast's path from
//!   32 B to 2 KiB. Before the groups run, the compressed sizes of every
//!   codec and of the 32 B-2 KiB range (mean of 32 messages per size) are
//!   printed to stderr as markdown tables.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use roomcast::wire::deflate::{Compressor, Inflater, WindowBits, LEVEL};
use std::hint::black_box;
use std::time::Duration;

#[allow(dead_code)]
#[path = "../src/wire/deflate/sample.rs"]
mod sample;

/// Short runs, like `benches/core.rs`.
fn configure() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(25)
}

/// The sizes of the crate comparison; 1 KiB is the typical chat message.
const SIZES: [usize; 5] = [64, 256, 1_024, 4_096, 65_536];
/// The range `--deflate-min-size` is chosen from.
const MIN_SIZE_SIZES: [usize; 13] = [
    32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1_024, 1_536, 2_048,
];
const MIN_SIZE_TIMED: [usize; 7] = [32, 64, 128, 256, 512, 1_024, 2_048];

/// One candidate: compresses a message into a permessage-deflate payload
/// and inflates one back.
trait Codec {
    fn name(&self) -> String;
    fn compress(&mut self, message: &[u8], out: &mut Vec<u8>);
    /// Inflates into the codec's own output; returns the message length.
    fn inflate(&mut self, payload: &[u8], max: usize) -> usize;
}

/// roomcast's path: zlib-rs through `deflate::Compressor`/`Inflater`.
struct Roomcast {
    level: u8,
    compressor: Compressor,
    inflater: Inflater,
    out: Vec<u8>,
}

impl Roomcast {
    fn new(level: u8) -> Roomcast {
        Roomcast {
            level,
            compressor: Compressor::with_level(level),
            inflater: Inflater::new(),
            out: Vec::new(),
        }
    }
}

impl Codec for Roomcast {
    fn name(&self) -> String {
        format!("zlib-rs-L{}", self.level)
    }

    fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        out.clear();
        self.compressor
            .compress(message, WindowBits::MAX, out)
            .expect("compress");
    }

    fn inflate(&mut self, payload: &[u8], max: usize) -> usize {
        self.out.clear();
        self.inflater
            .inflate(payload, max, &mut self.out)
            .expect("inflate");
        self.out.len()
    }
}

#[cfg(feature = "deflate-candidates")]
mod candidates {
    use super::Codec;

    /// The sync-flush tail, then an empty final fixed block (`03 00`), so a
    /// one-shot inflater that needs BFINAL sees the stream end.
    const TAIL_AND_FINAL: [u8; 6] = [0x00, 0x00, 0xFF, 0xFF, 0x03, 0x00];

    /// libdeflate: one-shot only. It compresses to a final block (RFC 7692
    /// section 7.2.3.6's form: one `00` byte follows once the empty stored
    /// block's `00 00 ff ff` is removed) and needs the whole output buffer
    /// up front to inflate; here it gets a reused, presized one (its best
    /// case: the relay would have to hold `--max-message-size` bytes).
    pub struct Libdeflate {
        level: i32,
        compressor: libdeflater::Compressor,
        decompressor: libdeflater::Decompressor,
        input: Vec<u8>,
        out: Vec<u8>,
    }

    impl Libdeflate {
        pub fn new(level: i32) -> Libdeflate {
            Libdeflate {
                level,
                compressor: libdeflater::Compressor::new(
                    libdeflater::CompressionLvl::new(level).expect("level"),
                ),
                decompressor: libdeflater::Decompressor::new(),
                input: Vec::new(),
                out: Vec::new(),
            }
        }
    }

    impl Codec for Libdeflate {
        fn name(&self) -> String {
            format!("libdeflate-L{}", self.level)
        }

        fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
            out.clear();
            out.resize(self.compressor.deflate_compress_bound(message.len()) + 1, 0);
            let n = self
                .compressor
                .deflate_compress(message, out)
                .expect("compress");
            out.truncate(n);
            out.push(0x00);
        }

        fn inflate(&mut self, payload: &[u8], max: usize) -> usize {
            self.input.clear();
            self.input.extend_from_slice(payload);
            self.input.extend_from_slice(&TAIL_AND_FINAL);
            if self.out.len() < max {
                self.out.resize(max, 0);
            }
            self.decompressor
                .deflate_decompress(&self.input, &mut self.out[..max])
                .expect("inflate")
        }
    }

    /// miniz_oxide: streaming, a 32 KiB window only (no window bits).
    pub struct Miniz {
        level: u8,
        compressor: Box<miniz_oxide::deflate::core::CompressorOxide>,
        inflater: Box<miniz_oxide::inflate::stream::InflateState>,
        out: Vec<u8>,
    }

    impl Miniz {
        pub fn new(level: u8) -> Miniz {
            use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
            let flags = create_comp_flags_from_zip_params(i32::from(level), -15, 0);
            Miniz {
                level,
                compressor: Box::new(CompressorOxide::new(flags)),
                inflater: miniz_oxide::inflate::stream::InflateState::new_boxed(
                    miniz_oxide::DataFormat::Raw,
                ),
                out: Vec::new(),
            }
        }
    }

    impl Codec for Miniz {
        fn name(&self) -> String {
            format!("miniz_oxide-L{}", self.level)
        }

        fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
            use miniz_oxide::deflate::core::{compress, TDEFLFlush, TDEFLStatus};
            self.compressor.reset();
            out.clear();
            out.resize(message.len() + message.len() / 8 + 64, 0);
            let (status, consumed, n) =
                compress(&mut self.compressor, message, out, TDEFLFlush::Sync);
            assert!(status == TDEFLStatus::Okay && consumed == message.len());
            out.truncate(n);
            assert!(out.ends_with(&[0x00, 0x00, 0xFF, 0xFF]));
            out.truncate(n - 4);
        }

        fn inflate(&mut self, payload: &[u8], max: usize) -> usize {
            use miniz_oxide::inflate::stream::inflate;
            use miniz_oxide::MZFlush;
            self.inflater.reset(miniz_oxide::DataFormat::Raw);
            if self.out.len() < max {
                self.out.resize(max, 0);
            }
            let mut filled = 0;
            for input in [payload, &TAIL_AND_FINAL[..4]] {
                let r = inflate(
                    &mut self.inflater,
                    input,
                    &mut self.out[filled..max],
                    MZFlush::None,
                );
                assert!(r.status.is_ok());
                filled += r.bytes_written;
            }
            filled
        }
    }
}

fn codecs() -> Vec<Box<dyn Codec>> {
    #[allow(unused_mut)]
    let mut all: Vec<Box<dyn Codec>> = vec![
        Box::new(Roomcast::new(1)),
        Box::new(Roomcast::new(2)),
        Box::new(Roomcast::new(4)),
        Box::new(Roomcast::new(6)),
    ];
    #[cfg(feature = "deflate-candidates")]
    {
        all.push(Box::new(candidates::Libdeflate::new(1)));
        all.push(Box::new(candidates::Libdeflate::new(6)));
        all.push(Box::new(candidates::Miniz::new(1)));
        all.push(Box::new(candidates::Miniz::new(6)));
    }
    all
}

fn size_label(n: usize) -> String {
    match n {
        1_024 => "chat_1KiB".to_string(),
        n if n >= 1 << 10 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

/// A payload as roomcast sends it (sync-flushed, as a browser's).
fn reference_payload(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Compressor::new()
        .compress(message, WindowBits::MAX, &mut out)
        .expect("compress");
    out
}

/// The compressed sizes behind both choices, as markdown on stderr.
fn print_sizes() {
    eprintln!("\n| codec | {} |", SIZES.map(size_label).join(" | "));
    eprintln!("|---|{}", "---:|".repeat(SIZES.len()));
    for mut codec in codecs() {
        let cells: Vec<String> = SIZES
            .iter()
            .map(|&n| {
                let message = sample::chat_json(n);
                let mut out = Vec::new();
                codec.compress(&message, &mut out);
                // Every candidate's payload must inflate with roomcast's.
                let mut back = Vec::new();
                Inflater::new()
                    .inflate(&out, n, &mut back)
                    .expect("roomcast inflates it");
                assert_eq!(back, message, "{}", codec.name());
                format!(
                    "{} ({:.0}%)",
                    out.len(),
                    100.0 * out.len() as f64 / n as f64
                )
            })
            .collect();
        eprintln!("| {} | {} |", codec.name(), cells.join(" | "));
    }

    eprintln!("\n| message | plain frame | compressed frame (mean of 32) | saved | shrank |");
    eprintln!("|---:|---:|---:|---:|---:|");
    let mut compressor = Compressor::new();
    for n in MIN_SIZE_SIZES {
        let (mut total, mut shrank) = (0usize, 0usize);
        const SEEDS: u64 = 32;
        for seed in 0..SEEDS {
            let message = sample::chat_json_seeded(n, seed);
            let mut out = Vec::new();
            let stats = compressor
                .compress(&message, WindowBits::MAX, &mut out)
                .expect("compress");
            total += out.len() + roomcast::wire::frame::header_len(out.len());
            shrank += usize::from(stats.shrinks());
        }
        let plain = n + roomcast::wire::frame::header_len(n);
        let mean = total as f64 / SEEDS as f64;
        eprintln!(
            "| {n} B | {plain} B | {mean:.1} B | {:.0}% | {shrank}/{SEEDS} |",
            100.0 * (1.0 - mean / plain as f64)
        );
    }
    eprintln!();
}

fn bench_codecs(c: &mut Criterion) {
    print_sizes();
    let mut g = c.benchmark_group("deflate_compress");
    for mut codec in codecs() {
        for n in SIZES {
            let message = sample::chat_json(n);
            let mut out = Vec::with_capacity(2 * n + 64);
            g.throughput(Throughput::Bytes(n as u64));
            g.bench_function(BenchmarkId::new(codec.name(), size_label(n)), |b| {
                b.iter(|| {
                    codec.compress(black_box(&message), &mut out);
                    black_box(out.len())
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("deflate_inflate");
    // One inflater per crate: the level only changes the compressor.
    let inflaters: Vec<Box<dyn Codec>> = codecs()
        .into_iter()
        .filter(|c| c.name().ends_with("L6"))
        .collect();
    for mut codec in inflaters {
        let name = codec.name().trim_end_matches("-L6").to_string();
        for n in SIZES {
            let message = sample::chat_json(n);
            let payload = reference_payload(&message);
            assert_eq!(codec.inflate(&payload, n), n, "{name}");
            g.throughput(Throughput::Bytes(n as u64));
            g.bench_function(BenchmarkId::new(&name, size_label(n)), |b| {
                b.iter(|| codec.inflate(black_box(&payload), n))
            });
        }
    }
    g.finish();
}

fn bench_min_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate_min_size");
    let mut roomcast = Roomcast::new(LEVEL);
    for n in MIN_SIZE_TIMED {
        let message = sample::chat_json(n);
        let payload = reference_payload(&message);
        let mut out = Vec::with_capacity(2 * n + 64);
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(BenchmarkId::new("compress", format!("{n}B")), |b| {
            b.iter(|| {
                roomcast.compress(black_box(&message), &mut out);
                black_box(out.len())
            })
        });
        g.bench_function(BenchmarkId::new("inflate", format!("{n}B")), |b| {
            b.iter(|| roomcast.inflate(black_box(&payload), n))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = configure();
    targets = bench_codecs, bench_min_size
}
criterion_main!(benches);
