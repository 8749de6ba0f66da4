//! The deflate tables of `src/wire/deflate/mod.rs`: each codec's time per
//! message as the minimum over 40 rounds, which holds steady on a shared,
//! loaded box where criterion's means do not. Run:
//! `cargo run --profile bench --features deflate-candidates --example deflate_rounds`
use std::time::Instant;
#[allow(dead_code)]
#[path = "../src/wire/deflate/sample.rs"]
mod sample;
use roomcast::wire::deflate::{Compressor, Inflater, WindowBits};

fn min_time(mut f: impl FnMut(), iters: u32) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..40 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / iters as f64);
    }
    best * 1e6
}

fn main() {
    let sizes = [64usize, 256, 1024, 4096, 65536];
    print!("| codec |");
    for n in sizes {
        print!(" {n} B |");
    }
    println!();
    for level in [1u8, 2, 4, 6] {
        let mut c = Compressor::with_level(level);
        print!("| zlib-rs L{level} compress |");
        for n in sizes {
            let m = sample::chat_json(n);
            let mut out = Vec::new();
            let it = if n > 10000 { 10 } else { 100 };
            print!(
                " {:.2} |",
                min_time(
                    || {
                        out.clear();
                        c.compress(&m, WindowBits::MAX, &mut out).unwrap();
                    },
                    it
                )
            );
        }
        println!();
    }
    for level in [1i32, 6] {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).unwrap());
        print!("| libdeflate L{level} compress |");
        for n in sizes {
            let m = sample::chat_json(n);
            let mut out = vec![0u8; n * 2 + 64];
            let it = if n > 10000 { 10 } else { 100 };
            print!(
                " {:.2} |",
                min_time(
                    || {
                        std::hint::black_box(c.deflate_compress(&m, &mut out).unwrap());
                    },
                    it
                )
            );
        }
        println!();
    }
    for level in [1u8, 6] {
        use miniz_oxide::deflate::core::{
            compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
        };
        let mut c = Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
            level as i32,
            -15,
            0,
        )));
        print!("| miniz_oxide L{level} compress |");
        for n in sizes {
            let m = sample::chat_json(n);
            let mut out = vec![0u8; n * 2 + 64];
            let it = if n > 10000 { 10 } else { 100 };
            print!(
                " {:.2} |",
                min_time(
                    || {
                        c.reset();
                        std::hint::black_box(compress(&mut c, &m, &mut out, TDEFLFlush::Sync));
                    },
                    it
                )
            );
        }
        println!();
    }
    let mut inf = Inflater::new();
    print!("| zlib-rs inflate |");
    for n in sizes {
        let m = sample::chat_json(n);
        let mut p = Vec::new();
        Compressor::new()
            .compress(&m, WindowBits::MAX, &mut p)
            .unwrap();
        let mut out = Vec::new();
        let it = if n > 10000 { 10 } else { 100 };
        print!(
            " {:.2} |",
            min_time(
                || {
                    out.clear();
                    inf.inflate(&p, n, &mut out).unwrap();
                },
                it
            )
        );
    }
    println!();
    let mut d = libdeflater::Decompressor::new();
    print!("| libdeflate inflate |");
    for n in sizes {
        let m = sample::chat_json(n);
        let mut p = Vec::new();
        Compressor::new()
            .compress(&m, WindowBits::MAX, &mut p)
            .unwrap();
        let mut out = vec![0u8; n];
        let mut input = Vec::new();
        let it = if n > 10000 { 10 } else { 100 };
        print!(
            " {:.2} |",
            min_time(
                || {
                    input.clear();
                    input.extend_from_slice(&p);
                    input.extend_from_slice(&[0, 0, 0xff, 0xff, 3, 0]);
                    std::hint::black_box(d.deflate_decompress(&input, &mut out).unwrap());
                },
                it
            )
        );
    }
    println!();
    {
        use miniz_oxide::inflate::stream::{inflate, InflateState};
        let mut st = InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
        print!("| miniz_oxide inflate |");
        for n in sizes {
            let m = sample::chat_json(n);
            let mut p = Vec::new();
            Compressor::new()
                .compress(&m, WindowBits::MAX, &mut p)
                .unwrap();
            let mut out = vec![0u8; n + 16];
            let it = if n > 10000 { 10 } else { 100 };
            print!(
                " {:.2} |",
                min_time(
                    || {
                        st.reset(miniz_oxide::DataFormat::Raw);
                        let r = inflate(&mut st, &p, &mut out, miniz_oxide::MZFlush::None);
                        let r2 = inflate(
                            &mut st,
                            &[0, 0, 0xff, 0xff],
                            &mut out[r.bytes_written..],
                            miniz_oxide::MZFlush::None,
                        );
                        std::hint::black_box(r2.bytes_written);
                    },
                    it
                )
            );
        }
        println!();
    }
    println!();
    println!("| size | compress (default level) | inflate |");
    let mut c = Compressor::new();
    for n in [32usize, 64, 128, 256, 512, 1024, 2048] {
        let m = sample::chat_json(n);
        let mut p = Vec::new();
        c.compress(&m, WindowBits::MAX, &mut p).unwrap();
        let mut out = Vec::new();
        let tc = min_time(
            || {
                out.clear();
                c.compress(&m, WindowBits::MAX, &mut out).unwrap();
            },
            100,
        );
        let ti = min_time(
            || {
                out.clear();
                inf.inflate(&p, n, &mut out).unwrap();
            },
            100,
        );
        println!("| {n} B | {tc:.2} | {ti:.2} |");
    }
}
