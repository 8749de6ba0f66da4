//! permessage-deflate (RFC 7692) on the client side: the offer, the server's answer, and
//! inflating and compressing whole messages.
//!
//! The harness offers what a browser offers, `permessage-deflate; client_max_window_bits`,
//! and accepts `server_no_context_takeover`, `client_no_context_takeover` and both window
//! bits in the answer. Memory per connection stays a design number (the harness holds
//! up to 19,500 connections): when the server takes no context over between messages,
//! every message inflates with one decompressor shared by the whole thread, reset per
//! message, and a connection holds only its [`Negotiated`] parameters (a few bytes). Only
//! a server that keeps its context makes a connection own a decompressor (~43 KiB).
//! The harness never keeps context when it compresses (any client may always reset).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// The offer, as a browser makes it.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";
/// The empty stored block a message's compressed data ends with, removed by the sender
/// and put back by the receiver (RFC 7692 section 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// What the harness does with permessage-deflate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateOffer {
    /// Offer the extension in every upgrade request.
    pub offer: bool,
    /// Send chat messages compressed (RSV1) when it was negotiated.
    pub send_compressed: bool,
}

/// The parameters a server answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The server resets its compressor after every message: messages inflate alone.
    pub server_no_context_takeover: bool,
    /// The server expects us to reset ours (we always do).
    pub client_no_context_takeover: bool,
    /// The largest window the server will use (8..=15).
    pub server_max_window_bits: u8,
    /// The largest window we may use (8..=15).
    pub client_max_window_bits: u8,
}

/// Parses the `Sec-WebSocket-Extensions` answer to our offer; `Ok(None)` when the server
/// declined (no header). What we did not offer, or cannot honour, is an error: RFC 6455
/// section 9.1 and RFC 7692 section 5 say the client then fails the connection.
pub fn parse_answer(header: Option<&str>, offered: bool) -> Result<Option<Negotiated>, String> {
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    if !offered {
        return Err(format!("extension {header:?} that was not offered"));
    }
    if header.contains(',') {
        return Err(format!("more than the one extension offered: {header:?}"));
    }
    let mut parts = header.split(';').map(str::trim);
    if parts.next() != Some("permessage-deflate") {
        return Err(format!("extension {header:?} that was not offered"));
    }
    let mut n = Negotiated {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        match (name, value) {
            ("server_no_context_takeover", None) => n.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => n.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => n.server_max_window_bits = window_bits(v)?,
            ("client_max_window_bits", Some(v)) => n.client_max_window_bits = window_bits(v)?,
            _ => return Err(format!("permessage-deflate parameter {p:?} not understood")),
        }
    }
    Ok(Some(n))
}

fn window_bits(v: &str) -> Result<u8, String> {
    match v.parse::<u8>() {
        Ok(b @ 8..=15) => Ok(b),
        _ => Err(format!("window bits {v:?} out of 8..15")),
    }
}

/// One connection's deflate state: the parameters, and a decompressor of its own only
/// when the server keeps its context between messages.
pub struct DeflateConn {
    pub params: Negotiated,
    pub send_compressed: bool,
    own_inflater: Option<Box<Decompress>>,
}

impl DeflateConn {
    pub fn new(params: Negotiated, send_compressed: bool) -> DeflateConn {
        DeflateConn {
            params,
            // miniz_oxide compresses with a 32 KiB window only: a server that asked for a
            // smaller one gets our messages uncompressed (allowed per message).
            send_compressed: send_compressed && params.client_max_window_bits == 15,
            own_inflater: (!params.server_no_context_takeover)
                .then(|| Box::new(Decompress::new(false))),
        }
    }

    /// Inflates one compressed message into `out` (cleared first), at most `limit` bytes.
    pub fn inflate(&mut self, data: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
        out.clear();
        match self.own_inflater.as_deref_mut() {
            Some(d) => inflate_with(d, data, out, limit),
            None => SHARED_INFLATER.with(|d| {
                let mut d = d.borrow_mut();
                d.reset(false);
                inflate_with(&mut d, data, out, limit)
            }),
        }
    }
}

thread_local! {
    /// The decompressor every connection without server context takeover shares: the
    /// event loop is one thread, and each message inflates from a reset state.
    static SHARED_INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    /// The compressor for sending, reset per message (no client context takeover).
    static SHARED_COMPRESSOR: RefCell<Compress> =
        RefCell::new(Compress::new(Compression::fast(), false));
}

fn inflate_with(
    d: &mut Decompress,
    data: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), String> {
    for input in [data, &TAIL[..]] {
        let mut pos = 0;
        loop {
            if out.len() >= limit {
                return Err("protocol error: message inflates past 64 MiB".into());
            }
            out.reserve((input.len() * 4).clamp(256, 64 << 10));
            let before = (d.total_in(), out.len());
            let status = d
                .decompress_vec(&input[pos..], out, FlushDecompress::Sync)
                .map_err(|e| format!("protocol error: bad deflate data: {e}"))?;
            pos += (d.total_in() - before.0) as usize;
            let progressed = d.total_in() != before.0 || out.len() != before.1;
            if pos >= input.len() && out.len() < out.capacity() {
                break;
            }
            if status == Status::StreamEnd || !progressed {
                break;
            }
        }
    }
    Ok(())
}

/// Compresses one message into `out` (cleared first) as a permessage-deflate payload:
/// a fresh compressor, a sync flush, the trailing empty block removed.
pub fn compress(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    SHARED_COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        let mut pos = 0;
        loop {
            out.reserve((data.len() / 2).max(64));
            let before = c.total_in();
            // Writing into a Vec with spare room cannot fail for a valid stream.
            let _ = c.compress_vec(&data[pos..], out, FlushCompress::Sync);
            pos += (c.total_in() - before) as usize;
            if pos >= data.len() && out.len() < out.capacity() {
                break;
            }
        }
    });
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_takeover() -> Negotiated {
        Negotiated {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }

    #[test]
    fn answers_are_parsed_and_the_unoffered_refused() {
        let a = |h: &str| parse_answer(Some(h), true);
        assert_eq!(parse_answer(None, true), Ok(None));
        assert_eq!(
            a("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            Ok(Some(no_takeover()))
        );
        let n = a("permessage-deflate; client_max_window_bits=10; server_max_window_bits=\"12\"")
            .unwrap()
            .unwrap();
        assert_eq!(
            (n.client_max_window_bits, n.server_max_window_bits),
            (10, 12)
        );
        assert!(!n.server_no_context_takeover);
        assert!(a("permessage-deflate; client_max_window_bits=16").is_err());
        assert!(a("permessage-deflate; x_unknown").is_err());
        assert!(a("x-webkit-deflate-frame").is_err());
        assert!(a("permessage-deflate, permessage-deflate").is_err());
        assert!(parse_answer(Some("permessage-deflate"), false).is_err());
    }

    #[test]
    fn messages_round_trip_through_compress_and_inflate() {
        let text = br#"{"message":"LT:1:2:3:4:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
        let big: Vec<u8> = text.iter().copied().cycle().take(300_000).collect();
        for msg in [&text[..], &big[..], b""] {
            let mut z = Vec::new();
            compress(msg, &mut z);
            assert!(!z.ends_with(&TAIL));
            for params in [
                no_takeover(),
                Negotiated {
                    server_no_context_takeover: false,
                    ..no_takeover()
                },
            ] {
                let mut conn = DeflateConn::new(params, true);
                let mut out = Vec::new();
                conn.inflate(&z, &mut out, 64 << 20).unwrap();
                assert_eq!(out, msg);
            }
        }
        let mut z = Vec::new();
        compress(&big, &mut z);
        assert!(z.len() * 50 < big.len(), "repetitive text compresses");
        let mut out = Vec::new();
        let mut conn = DeflateConn::new(no_takeover(), false);
        assert!(conn.inflate(&z, &mut out, 1000).is_err(), "the limit holds");
        assert!(conn.inflate(b"\xff\xff\xff", &mut out, 1000).is_err());
    }

    #[test]
    fn a_server_keeping_context_is_followed_across_messages() {
        // A server with context takeover compresses the second message against the first.
        let mut c = Compress::new(Compression::default(), false);
        let mut conn = DeflateConn::new(
            Negotiated {
                server_no_context_takeover: false,
                ..no_takeover()
            },
            false,
        );
        for msg in [&b"hello hello hello"[..], b"hello hello hello again"] {
            let mut z = Vec::with_capacity(256);
            c.compress_vec(msg, &mut z, FlushCompress::Sync).unwrap();
            assert!(z.ends_with(&TAIL));
            z.truncate(z.len() - 4);
            let mut out = Vec::new();
            conn.inflate(&z, &mut out, 1 << 20).unwrap();
            assert_eq!(out, msg);
        }
    }
}
