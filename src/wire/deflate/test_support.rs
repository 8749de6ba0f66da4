//! Test-only helpers: the system's C zlib (through `libz-sys`) as a
//! reference independent of zlib-rs, and a decompression bomb.
//!
//! The only `unsafe` in the deflate module lives here, in tests: zlib's C
//! API takes a `z_stream` by pointer.

pub use super::sample::chat_json;
use libz_sys as z;
use std::mem::MaybeUninit;
use std::os::raw::c_int;
use std::sync::OnceLock;

/// Inflates a permessage-deflate payload (tail added back) with C zlib
/// limited to a `window_bits` window. Output goes out one byte per call, so
/// zlib's only history is its window: any back-reference farther than
/// 2^window_bits fails ("invalid distance too far back") instead of being
/// served from a large output buffer.
pub fn zlib_inflate_raw(window_bits: u8, payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0x00, 0x00, 0xFF, 0xFF]);
    let mut strm = ZStream::new();
    let s = strm.as_mut_ptr();
    // SAFETY: `s` points at a zeroed z_stream (zalloc/zfree null = zlib's
    // defaults) that lives until `inflateEnd` below; the version string and
    // struct size are zlib's own.
    let rc = unsafe {
        z::inflateInit2_(
            s,
            -c_int::from(window_bits),
            z::zlibVersion(),
            std::mem::size_of::<z::z_stream>() as c_int,
        )
    };
    assert_eq!(rc, z::Z_OK, "inflateInit2 with window {window_bits}");
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    let mut next = 0usize;
    let result = loop {
        // SAFETY: the stream was initialised above; `next_in`/`next_out`
        // point into `input` and `byte`, which outlive the call, with their
        // true remaining lengths.
        let rc = unsafe {
            (*s).next_in = input.as_mut_ptr().add(next);
            (*s).avail_in = (input.len() - next) as u32;
            (*s).next_out = byte.as_mut_ptr();
            (*s).avail_out = 1;
            let rc = z::inflate(s, z::Z_SYNC_FLUSH);
            next = input.len() - (*s).avail_in as usize;
            rc
        };
        // SAFETY: as above; only reads fields of the live stream.
        let wrote = unsafe { (*s).avail_out } == 0;
        if wrote {
            out.push(byte[0]);
        }
        match rc {
            z::Z_OK => {}
            z::Z_STREAM_END => break Ok(out),
            z::Z_BUF_ERROR if !wrote => break Ok(out),
            z::Z_BUF_ERROR => {}
            err => {
                // SAFETY: `msg` is null or a static C string set by zlib.
                let msg = unsafe {
                    let m = (*s).msg;
                    if m.is_null() {
                        String::new()
                    } else {
                        std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned()
                    }
                };
                break Err(format!("zlib error {err}: {msg}"));
            }
        }
        if !wrote && next == input.len() {
            break Ok(out);
        }
    };
    // SAFETY: ends the stream initialised above, once.
    unsafe { z::inflateEnd(s) };
    result
}

/// `message` compressed by C zlib (level 6, 32 KiB window), sync-flushed
/// and with the tail removed: permessage-deflate from another encoder.
pub fn deflate_reference(message: &[u8]) -> Vec<u8> {
    zlib_deflate(
        message.len(),
        |feed| feed(message),
        6,
        z::Z_DEFAULT_STRATEGY,
    )
}

/// A decompression bomb: `total` zero bytes as one permessage-deflate
/// payload (zlib's run-length strategy; DEFLATE's best ratio is about
/// 1032:1, so 1 GiB takes about 1 MiB). Made once per size and shared.
pub fn bomb(total: usize) -> &'static [u8] {
    static GIB: OnceLock<Vec<u8>> = OnceLock::new();
    assert_eq!(total, 1 << 30, "one bomb size is cached");
    GIB.get_or_init(|| {
        let zeros = vec![0u8; 1 << 20];
        zlib_deflate(
            total,
            |feed| {
                for _ in 0..total / zeros.len() {
                    feed(&zeros);
                }
            },
            9,
            z::Z_RLE,
        )
    })
}

/// Runs C zlib's raw deflate over what `produce` feeds it, then a sync
/// flush, and strips the `00 00 ff ff`.
fn zlib_deflate(
    size_hint: usize,
    produce: impl FnOnce(&mut dyn FnMut(&[u8])),
    level: c_int,
    strategy: c_int,
) -> Vec<u8> {
    let mut strm = ZStream::new();
    let s = strm.as_mut_ptr();
    // SAFETY: as in `zlib_inflate_raw`, for deflate.
    let rc = unsafe {
        z::deflateInit2_(
            s,
            level,
            z::Z_DEFLATED,
            -15,
            8,
            strategy,
            z::zlibVersion(),
            std::mem::size_of::<z::z_stream>() as c_int,
        )
    };
    assert_eq!(rc, z::Z_OK);
    let mut out: Vec<u8> = Vec::with_capacity(size_hint / 500 + 1_024);
    let mut run = |chunk: &[u8], flush: c_int| {
        let mut next = 0usize;
        loop {
            if out.capacity() - out.len() < 1_024 {
                out.reserve(out.capacity().max(4_096));
            }
            let spare = out.capacity() - out.len();
            // SAFETY: the stream is live; `next_in` points into `chunk` and
            // `next_out` into `out`'s spare capacity, each with its true
            // length; zlib writes only within `avail_out`, and `set_len`
            // covers exactly what it wrote.
            let (rc, done_in) = unsafe {
                (*s).next_in = chunk.as_ptr().add(next) as *mut u8;
                (*s).avail_in = (chunk.len() - next) as u32;
                (*s).next_out = out.as_mut_ptr().add(out.len());
                (*s).avail_out = spare as u32;
                let rc = z::deflate(s, flush);
                next = chunk.len() - (*s).avail_in as usize;
                let wrote = spare - (*s).avail_out as usize;
                out.set_len(out.len() + wrote);
                (rc, (*s).avail_out != 0)
            };
            assert!(rc == z::Z_OK || rc == z::Z_BUF_ERROR, "deflate {rc}");
            if next == chunk.len() && done_in {
                break;
            }
        }
    };
    produce(&mut |chunk| run(chunk, z::Z_NO_FLUSH));
    run(&[], z::Z_SYNC_FLUSH);
    // SAFETY: ends the stream initialised above, once.
    unsafe { z::deflateEnd(s) };
    assert!(out.ends_with(&[0x00, 0x00, 0xFF, 0xFF]));
    out.truncate(out.len() - 4);
    out
}

/// A zeroed `z_stream` (zlib reads null `zalloc`/`zfree` as its defaults;
/// the Rust type forbids null function pointers, hence `MaybeUninit`).
struct ZStream(Box<MaybeUninit<z::z_stream>>);

impl ZStream {
    fn new() -> ZStream {
        ZStream(Box::new(MaybeUninit::zeroed()))
    }

    fn as_mut_ptr(&mut self) -> *mut z::z_stream {
        self.0.as_mut_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::deflate::sample::chat_json_seeded;

    #[test]
    fn exact_lengths_of_valid_json() {
        for len in (20..3_000)
            .step_by(7)
            .chain([32, 64, 256, 1_024, 4_096, 65_536])
        {
            for seed in [0, 7, 31] {
                let m = chat_json_seeded(len, seed);
                assert_eq!(m.len(), len);
                let v: serde_json::Value = serde_json::from_slice(&m).expect("JSON");
                assert!(v.get("message").is_some());
            }
            assert_eq!(chat_json(len), chat_json_seeded(len, 0));
        }
    }
}
