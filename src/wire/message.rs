//! Message assembly: frames in, whole messages and control events out
//! (RFC 6455 sections 5.4 to 5.6 and 8.1).
//!
//! Sans-IO. [`Decoder::decode`] takes the bytes the caller has (it unmasks
//! them in place) and returns how many it consumed plus at most one event.
//! Invariants:
//! - Data frame payloads are consumed as they arrive: they are unmasked into
//!   the message buffer and UTF-8-checked piecewise, so a client that sends
//!   a frame slowly costs no more than its bytes so far, and bad UTF-8 is
//!   caught at the first chunk that proves it.
//! - A frame's length is checked against `max_frame_size` and the message
//!   total against `max_message_size` from the header alone, before any of
//!   its payload is buffered.
//! - Control frames (at most 125 bytes) are only consumed whole; they may
//!   arrive between the fragments of a message.
//! - The common case, a whole unfragmented data frame already in the input,
//!   is returned as a slice of the input with no copy.
//! - The leftover the caller must keep between calls is therefore at most a
//!   partial header or a partial control frame (under 140 bytes).
//!
//! permessage-deflate (RFC 7692), through [`Decoder::decode_deflate`] on a
//! connection that negotiated it:
//! - RSV1 on the first frame of a data message marks the message
//!   compressed; on a control or continuation frame it is a protocol error
//!   (`frame::parse_header_with`). [`Decoder::decode`] keeps refusing RSV1.
//! - A compressed message's fragments are assembled like any message, and
//!   bounded the same way: `max_frame_size` and `max_message_size` apply to
//!   the compressed bytes from the header alone. A whole single-frame
//!   compressed message is inflated straight from the input.
//! - When it ends, the message is inflated with the caller's inflater into
//!   the caller's buffer, bounded while inflating by `max_message_size`, and
//!   text is UTF-8-checked after inflating. The decoder owns no inflater:
//!   the event loop lends its one inflater and output buffer per call, so a
//!   connection costs no more than before.

use crate::wire::close::CloseCode;
use crate::wire::deflate::Inflater;
use crate::wire::error::ProtocolError;
use crate::wire::frame::{self, FrameHeader, Opcode};
use crate::wire::mask::unmask;
use crate::wire::utf8::{self, Utf8Validator};

/// Size limits for incoming frames and messages.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_frame_size: u64,
    pub max_message_size: u64,
}

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    Text,
    Binary,
}

/// One thing the peer said.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete message; text is already validated as UTF-8.
    Message(DataKind, &'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A close frame: `None` when it carried no status code.
    Close(Option<(CloseCode, &'a str)>),
}

/// The result of one [`Decoder::decode`] call.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// Bytes of the input consumed; the caller keeps the rest.
    pub consumed: usize,
    /// At most one event; `None` means more input is needed.
    pub event: Option<Event<'a>>,
}

/// Per-connection decoding state.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The data frame whose payload is being streamed into `buf`.
    frame: Option<StreamingFrame>,
    /// The kind of the message in progress, if any.
    message: Option<DataKind>,
    /// The message in progress is compressed (RSV1 on its first frame):
    /// `buf` holds DEFLATE data, inflated and UTF-8-checked when it ends.
    compressed: bool,
    /// The message being assembled (empty, with no capacity, when idle).
    buf: Vec<u8>,
    utf8: Utf8Validator,
}

#[derive(Clone, Copy, Debug)]
struct StreamingFrame {
    mask: [u8; 4],
    /// Payload bytes already unmasked, modulo 4: where the mask resumes.
    /// (A byte, not a count, so an idle connection's decoder stays small.)
    phase: u8,
    remaining: u64,
    fin: bool,
}

impl Decoder {
    /// Decodes from `input` (unmasking it in place). Call again with the
    /// unconsumed rest after handling the event; stop when `event` is `None`.
    /// For a connection without permessage-deflate: RSV1 is an error.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a mut [u8],
        limits: &Limits,
    ) -> Result<Decoded<'a>, ProtocolError> {
        self.decode_inner(input, limits, None)
    }

    /// [`decode`](Self::decode) for a connection that negotiated
    /// permessage-deflate. A compressed message is inflated into `out`
    /// (cleared first) with `inflater`, both the event loop's, and its
    /// `Event::Message` payload is then a slice of `out`; a plain message
    /// comes out exactly as from `decode`. Inflating faults map to
    /// `InflatedTooBig` (1009) and `CorruptCompression` (1007).
    pub fn decode_deflate<'a>(
        &'a mut self,
        input: &'a mut [u8],
        limits: &Limits,
        inflater: &mut Inflater,
        out: &'a mut Vec<u8>,
    ) -> Result<Decoded<'a>, ProtocolError> {
        self.decode_inner(input, limits, Some((inflater, out)))
    }

    /// Both entry points; `inflate` is `Some` exactly when RSV1 is allowed.
    /// Always inlined so `decode`'s copy has the deflate branches folded
    /// away and its fast path is unchanged.
    #[inline(always)]
    fn decode_inner<'a>(
        &'a mut self,
        input: &'a mut [u8],
        limits: &Limits,
        mut inflate: Option<(&mut Inflater, &'a mut Vec<u8>)>,
    ) -> Result<Decoded<'a>, ProtocolError> {
        let rsv1_allowed = inflate.is_some();
        let mut pos = 0;
        loop {
            if let Some(mut f) = self.frame {
                let take = (input.len() - pos).min(f.remaining.min(usize::MAX as u64) as usize);
                if take > 0 {
                    let chunk = &mut input[pos..pos + take];
                    unmask(chunk, f.mask, usize::from(f.phase));
                    self.buf.extend_from_slice(chunk);
                    pos += take;
                    f.phase = ((usize::from(f.phase) + take) % 4) as u8;
                    f.remaining -= take as u64;
                    if self.message == Some(DataKind::Text) && !self.compressed {
                        self.utf8
                            .advance(&self.buf)
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                }
                if f.remaining > 0 {
                    self.frame = Some(f);
                    return Ok(Decoded {
                        consumed: pos,
                        event: None,
                    });
                }
                self.frame = None;
                if f.fin {
                    return self.finish_buffered(pos, limits, inflate.take());
                }
                continue;
            }

            let Some((header, header_len)) =
                frame::parse_header_with(&input[pos..], true, rsv1_allowed)?
            else {
                return Ok(Decoded {
                    consumed: pos,
                    event: None,
                });
            };
            let mask = header.mask.unwrap_or_default();
            if header.opcode.is_control() {
                let len = header.payload_len as usize;
                let start = pos + header_len;
                if input.len() < start + len {
                    // Control frames are consumed whole; the caller keeps the part.
                    return Ok(Decoded {
                        consumed: pos,
                        event: None,
                    });
                }
                let payload = &mut input[start..start + len];
                unmask(payload, mask, 0);
                let consumed = start + len;
                let payload = &input[start..start + len];
                let event = match header.opcode {
                    Opcode::Ping => Event::Ping(payload),
                    Opcode::Pong => Event::Pong(payload),
                    _ => Event::Close(parse_close_payload(payload)?),
                };
                return Ok(Decoded {
                    consumed,
                    event: Some(event),
                });
            }

            self.check_limits(&header, limits)?;
            let kind = match (header.opcode, self.message) {
                (Opcode::Continuation, Some(kind)) => kind,
                (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
                (Opcode::Text, None) => DataKind::Text,
                (_, None) => DataKind::Binary,
            };
            let start = pos + header_len;
            let len = header.payload_len as usize;
            if header.fin && self.message.is_none() && input.len() - start >= len {
                // Fast path: a whole single-frame message, returned in place.
                let payload = &mut input[start..start + len];
                unmask(payload, mask, 0);
                if header.compressed {
                    let message = inflate_message(payload, kind, limits, inflate.take())?;
                    return Ok(Decoded {
                        consumed: start + len,
                        event: Some(Event::Message(kind, message)),
                    });
                }
                if kind == DataKind::Text {
                    utf8::validate(payload).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                return Ok(Decoded {
                    consumed: start + len,
                    event: Some(Event::Message(kind, &input[start..start + len])),
                });
            }
            if self.message.is_none() {
                self.message = Some(kind);
                self.compressed = header.compressed;
                self.buf.clear();
                self.utf8.reset();
            }
            // Reserve for what is already here, not for the announced length:
            // a client must not make the relay allocate bytes it never sends.
            self.buf.reserve(len.min(input.len() - start));
            self.frame = Some(StreamingFrame {
                mask,
                phase: 0,
                remaining: header.payload_len,
                fin: header.fin,
            });
            pos = start;
        }
    }

    /// Whether no frame or message is partly received.
    pub fn is_idle(&self) -> bool {
        self.frame.is_none() && self.message.is_none()
    }

    /// Gives the assembly buffer's memory back while idle, so idle
    /// connections hold no buffer at all.
    pub fn release_buffer(&mut self) {
        if self.is_idle() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
        }
    }

    fn check_limits(&self, header: &FrameHeader, limits: &Limits) -> Result<(), ProtocolError> {
        if header.payload_len > limits.max_frame_size {
            return Err(ProtocolError::FrameTooBig);
        }
        let so_far = if self.message.is_some() {
            self.buf.len() as u64
        } else {
            0
        };
        if so_far + header.payload_len > limits.max_message_size {
            return Err(ProtocolError::MessageTooBig);
        }
        Ok(())
    }

    fn finish_buffered<'a>(
        &'a mut self,
        consumed: usize,
        limits: &Limits,
        inflate: Option<(&mut Inflater, &'a mut Vec<u8>)>,
    ) -> Result<Decoded<'a>, ProtocolError> {
        let kind = self
            .message
            .take()
            .expect("a message is in progress when its last frame ends");
        if std::mem::take(&mut self.compressed) {
            let message = inflate_message(&self.buf, kind, limits, inflate)?;
            return Ok(Decoded {
                consumed,
                event: Some(Event::Message(kind, message)),
            });
        }
        if kind == DataKind::Text {
            self.utf8
                .finish(&self.buf)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(Decoded {
            consumed,
            event: Some(Event::Message(kind, &self.buf)),
        })
    }
}

/// Inflates a whole compressed message into the loop's buffer, bounded by
/// `max_message_size`, and checks text as UTF-8 once inflated.
fn inflate_message<'a>(
    compressed: &[u8],
    kind: DataKind,
    limits: &Limits,
    inflate: Option<(&mut Inflater, &'a mut Vec<u8>)>,
) -> Result<&'a [u8], ProtocolError> {
    // RSV1 is only accepted when the caller lent an inflater.
    let (inflater, out) = inflate.ok_or(ProtocolError::ReservedBits)?;
    out.clear();
    let max_output = usize::try_from(limits.max_message_size).unwrap_or(usize::MAX);
    inflater.inflate(compressed, max_output, out)?;
    if kind == DataKind::Text {
        utf8::validate(out).map_err(|_| ProtocolError::InvalidUtf8)?;
    }
    Ok(out)
}

/// Parses a close frame payload (section 5.5.1): empty, or a valid status
/// code followed by a UTF-8 reason.
fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseLength),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::CloseCodeInvalid(code.0));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::CloseReasonUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_frame_size: 1 << 20,
        max_message_size: 1 << 20,
    };

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        frame::encode_client_frame(fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d])
    }

    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Owned {
        Message(DataKind, Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
        Error(ProtocolError),
    }

    /// Feeds `stream` in pieces of `chunk` bytes, like reads from a socket,
    /// keeping the unconsumed rest as the event loop does.
    fn run(stream: &[u8], chunk: usize, limits: &Limits) -> Vec<Owned> {
        run_with(stream, chunk, limits, None)
    }

    /// `run` through `decode_deflate` when given the loop's inflater.
    fn run_with(
        stream: &[u8],
        chunk: usize,
        limits: &Limits,
        mut inflater: Option<&mut Inflater>,
    ) -> Vec<Owned> {
        let mut decoder = Decoder::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut inflated = Vec::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            pending.extend_from_slice(piece);
            loop {
                let result = match inflater.as_deref_mut() {
                    Some(inflater) => {
                        decoder.decode_deflate(&mut pending, limits, inflater, &mut inflated)
                    }
                    None => decoder.decode(&mut pending, limits),
                };
                match result {
                    Err(e) => {
                        out.push(Owned::Error(e));
                        return out;
                    }
                    Ok(Decoded { consumed, event }) => {
                        let ev = event.map(|e| match e {
                            Event::Message(k, p) => Owned::Message(k, p.to_vec()),
                            Event::Ping(p) => Owned::Ping(p.to_vec()),
                            Event::Pong(p) => Owned::Pong(p.to_vec()),
                            Event::Close(c) => Owned::Close(c.map(|(c, r)| (c.0, r.to_string()))),
                        });
                        pending.drain(..consumed);
                        match ev {
                            Some(ev) => out.push(ev),
                            None => break,
                        }
                    }
                }
            }
        }
        out
    }

    fn all_splits(stream: &[u8], limits: &Limits) -> Vec<Owned> {
        let whole = run(stream, stream.len(), limits);
        for chunk in 1..stream.len().min(40) {
            assert_eq!(run(stream, chunk, limits), whole, "chunk size {chunk}");
        }
        whole
    }

    #[test]
    fn single_frame_messages() {
        let mut s = client_frame(true, 0x1, b"Hello");
        s.extend(client_frame(true, 0x2, &[0, 1, 2]));
        s.extend(client_frame(true, 0x1, b""));
        assert_eq!(
            all_splits(&s, &LIMITS),
            vec![
                Owned::Message(DataKind::Text, b"Hello".to_vec()),
                Owned::Message(DataKind::Binary, vec![0, 1, 2]),
                Owned::Message(DataKind::Text, vec![]),
            ]
        );
    }

    #[test]
    fn fragments_with_interleaved_control_frames() {
        let mut s = client_frame(false, 0x1, b"Hel");
        s.extend(client_frame(true, 0x9, b"ping!"));
        s.extend(client_frame(false, 0x0, b""));
        s.extend(client_frame(true, 0xA, b""));
        s.extend(client_frame(true, 0x0, b"lo"));
        assert_eq!(
            all_splits(&s, &LIMITS),
            vec![
                Owned::Ping(b"ping!".to_vec()),
                Owned::Pong(vec![]),
                Owned::Message(DataKind::Text, b"Hello".to_vec()),
            ]
        );
    }

    #[test]
    fn a_code_point_split_across_fragments() {
        let text = "κόσμε".as_bytes();
        let mut s = client_frame(false, 0x1, &text[..1]);
        s.extend(client_frame(true, 0x0, &text[1..]));
        assert_eq!(
            all_splits(&s, &LIMITS),
            vec![Owned::Message(DataKind::Text, text.to_vec())]
        );
    }

    #[test]
    fn invalid_utf8_fails_in_the_first_fragment() {
        // The second fragment never arrives: the first proves the message bad.
        let s = client_frame(false, 0x1, b"ok\xC0\xAF");
        assert_eq!(
            run(&s, s.len(), &LIMITS),
            vec![Owned::Error(ProtocolError::InvalidUtf8)]
        );
        // Mid-frame: the frame announces 100 bytes, the bad byte is in the first 10.
        let mut big = b"abc\xF5".to_vec();
        big.resize(100, b'a');
        let s = client_frame(true, 0x1, &big);
        assert_eq!(
            run(&s[..14], 14, &LIMITS),
            vec![Owned::Error(ProtocolError::InvalidUtf8)]
        );
    }

    #[test]
    fn close_frames() {
        let mut normal = 1000u16.to_be_bytes().to_vec();
        normal.extend_from_slice(b"bye");
        assert_eq!(
            all_splits(&client_frame(true, 0x8, &normal), &LIMITS),
            vec![Owned::Close(Some((1000, "bye".into())))]
        );
        assert_eq!(
            all_splits(&client_frame(true, 0x8, b""), &LIMITS),
            vec![Owned::Close(None)]
        );
        let rows: &[(&[u8], ProtocolError)] = &[
            (&[0x03], ProtocolError::CloseLength),
            (&[0x03, 0xED], ProtocolError::CloseCodeInvalid(1005)),
            (&[0x03, 0xE8, 0xC0], ProtocolError::CloseReasonUtf8),
        ];
        for (payload, err) in rows {
            assert_eq!(
                run(&client_frame(true, 0x8, payload), 200, &LIMITS),
                vec![Owned::Error(*err)]
            );
        }
    }

    #[test]
    fn continuation_errors() {
        let s = client_frame(true, 0x0, b"x");
        assert_eq!(
            run(&s, 100, &LIMITS),
            vec![Owned::Error(ProtocolError::UnexpectedContinuation)]
        );
        let mut s = client_frame(false, 0x1, b"x");
        s.extend(client_frame(true, 0x1, b"y"));
        assert_eq!(
            run(&s, 100, &LIMITS),
            vec![Owned::Error(ProtocolError::ExpectedContinuation)]
        );
    }

    #[test]
    fn limits_bite_from_the_header() {
        let limits = Limits {
            max_frame_size: 100,
            max_message_size: 150,
        };
        // Only the header of a 1 MiB frame is needed to reject it.
        let s = client_frame(true, 0x2, &vec![0; 1 << 20]);
        assert_eq!(
            run(&s[..14], 14, &limits),
            vec![Owned::Error(ProtocolError::FrameTooBig)]
        );
        let mut s = client_frame(false, 0x2, &[0; 100]);
        s.extend(client_frame(true, 0x0, &[0; 51]));
        assert_eq!(
            run(&s, 7, &limits),
            vec![Owned::Error(ProtocolError::MessageTooBig)]
        );
    }

    #[test]
    fn a_large_fragmented_message() {
        let payload: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut s = Vec::new();
        let parts: Vec<&[u8]> = payload.chunks(7_001).collect();
        for (i, part) in parts.iter().enumerate() {
            s.extend(client_frame(
                i + 1 == parts.len(),
                if i == 0 { 0x1 } else { 0x0 },
                part,
            ));
        }
        for chunk in [1_000, 65_536, s.len()] {
            assert_eq!(
                run(&s, chunk, &LIMITS),
                vec![Owned::Message(DataKind::Text, payload.clone())]
            );
        }
    }

    /// A client frame with RSV1 set (a compressed message's first frame).
    fn compressed_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = client_frame(fin, opcode, payload);
        f[0] |= 0x40;
        f
    }

    fn deflate(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::wire::deflate::Compressor::new()
            .compress(message, crate::wire::deflate::WindowBits::MAX, &mut out)
            .unwrap();
        out
    }

    fn deflate_splits(stream: &[u8], limits: &Limits) -> Vec<Owned> {
        let mut inflater = Inflater::new();
        let whole = run_with(stream, stream.len(), limits, Some(&mut inflater));
        for chunk in 1..stream.len().min(40) {
            assert_eq!(
                run_with(stream, chunk, limits, Some(&mut inflater)),
                whole,
                "chunk size {chunk}"
            );
        }
        whole
    }

    /// RFC 7692 section 6 with section 7.2.3's examples: compressed single
    /// frames, plain messages on the same connection, and the rules for
    /// RSV1 on continuations and control frames.
    #[test]
    fn compressed_messages() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut s = compressed_frame(true, 0x1, &hello);
        s.extend(client_frame(true, 0x1, b"plain"));
        s.extend(compressed_frame(true, 0x2, &deflate(&[0, 1, 2, 0, 1, 2])));
        // An empty compressed message, and an empty payload.
        s.extend(compressed_frame(true, 0x1, &[0x02, 0x00]));
        s.extend(compressed_frame(true, 0x1, &[]));
        assert_eq!(
            deflate_splits(&s, &LIMITS),
            vec![
                Owned::Message(DataKind::Text, b"Hello".to_vec()),
                Owned::Message(DataKind::Text, b"plain".to_vec()),
                Owned::Message(DataKind::Binary, vec![0, 1, 2, 0, 1, 2]),
                Owned::Message(DataKind::Text, vec![]),
                Owned::Message(DataKind::Text, vec![]),
            ]
        );
        // Without deflate negotiated, RSV1 stays a protocol error.
        assert_eq!(
            run(&compressed_frame(true, 0x1, &hello), 100, &LIMITS),
            vec![Owned::Error(ProtocolError::ReservedBits)]
        );
    }

    /// RFC 7692 section 7.2.3.2: a compressed message in fragments, RSV1 on
    /// the first only, control frames between them.
    #[test]
    fn fragmented_compressed_messages() {
        let text = String::from_utf8(crate::wire::deflate::sample::chat_json(3_000)).unwrap();
        let packed = deflate(text.as_bytes());
        let parts: Vec<&[u8]> = packed.chunks(packed.len() / 3 + 1).collect();
        let mut s = compressed_frame(false, 0x1, parts[0]);
        s.extend(client_frame(true, 0x9, b"ping"));
        s.extend(client_frame(false, 0x0, parts[1]));
        s.extend(client_frame(false, 0x0, b""));
        s.extend(client_frame(true, 0x0, parts[2]));
        s.extend(client_frame(true, 0x1, b"after"));
        assert_eq!(
            deflate_splits(&s, &LIMITS),
            vec![
                Owned::Ping(b"ping".to_vec()),
                Owned::Message(DataKind::Text, text.into_bytes()),
                Owned::Message(DataKind::Text, b"after".to_vec()),
            ]
        );
        // "Hello" as RFC 7692 section 7.2.3.2 splits it.
        let mut s = compressed_frame(false, 0x1, &[0xf2, 0x48, 0xcd]);
        s.extend(client_frame(true, 0x0, &[0xc9, 0xc9, 0x07, 0x00]));
        assert_eq!(
            deflate_splits(&s, &LIMITS),
            vec![Owned::Message(DataKind::Text, b"Hello".to_vec())]
        );
    }

    /// SPEC section 3 and 10: one row per deflate fault on a deflate
    /// connection, each with the error (and so the close code) it gets.
    #[test]
    fn compressed_faults() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let small = Limits {
            max_frame_size: 1 << 20,
            max_message_size: 1_000,
        };
        let bomb = deflate(&vec![b'a'; 100_000]);
        assert!(bomb.len() < 200);
        let mut rsv1_continuation = compressed_frame(false, 0x1, &hello[..3]);
        rsv1_continuation.extend(compressed_frame(true, 0x0, &hello[3..]));
        let mut two_compressed_starts = compressed_frame(false, 0x1, &hello[..3]);
        two_compressed_starts.extend(compressed_frame(true, 0x1, &hello[3..]));
        let mut fragmented_bomb = compressed_frame(false, 0x2, &bomb[..50]);
        fragmented_bomb.extend(client_frame(true, 0x0, &bomb[50..]));
        // Compressed size over the limit: refused from the header.
        let incompressible: Vec<u8> = (0..2_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let rows: Vec<(&str, Vec<u8>, ProtocolError, u16)> = vec![
            (
                "RSV1 on a continuation",
                rsv1_continuation,
                ProtocolError::CompressedBitMisplaced,
                1002,
            ),
            (
                "RSV1 on a ping",
                compressed_frame(true, 0x9, b""),
                ProtocolError::CompressedBitMisplaced,
                1002,
            ),
            (
                "RSV1 on a close",
                compressed_frame(true, 0x8, &[0x03, 0xE8]),
                ProtocolError::CompressedBitMisplaced,
                1002,
            ),
            (
                "RSV2",
                {
                    let mut f = client_frame(true, 0x1, b"x");
                    f[0] |= 0x20;
                    f
                },
                ProtocolError::ReservedBits,
                1002,
            ),
            (
                "RSV1 and RSV3",
                {
                    let mut f = compressed_frame(true, 0x1, &hello);
                    f[0] |= 0x10;
                    f
                },
                ProtocolError::ReservedBits,
                1002,
            ),
            (
                "a new compressed message inside one",
                two_compressed_starts,
                ProtocolError::ExpectedContinuation,
                1002,
            ),
            (
                "a bomb in one frame",
                compressed_frame(true, 0x2, &bomb),
                ProtocolError::InflatedTooBig,
                1009,
            ),
            (
                "a bomb in fragments",
                fragmented_bomb,
                ProtocolError::InflatedTooBig,
                1009,
            ),
            (
                "compressed bytes over the message limit",
                compressed_frame(true, 0x2, &deflate(&incompressible)),
                ProtocolError::MessageTooBig,
                1009,
            ),
            (
                "a corrupt stream",
                compressed_frame(true, 0x1, &[0xff, 0xff, 0xff]),
                ProtocolError::CorruptCompression,
                1007,
            ),
            (
                "invalid UTF-8 once inflated",
                compressed_frame(true, 0x1, &deflate(b"ok \xC0\xAF then")),
                ProtocolError::InvalidUtf8,
                1007,
            ),
            (
                "UTF-8 cut short by the end of the message",
                compressed_frame(true, 0x1, &deflate(&"caf\u{e9}".as_bytes()[..4])),
                ProtocolError::InvalidUtf8,
                1007,
            ),
        ];
        for (what, stream, err, code) in rows {
            let mut inflater = Inflater::new();
            for chunk in [1, 7, stream.len()] {
                assert_eq!(
                    run_with(&stream, chunk, &small, Some(&mut inflater)),
                    vec![Owned::Error(err)],
                    "{what}, reads of {chunk}"
                );
            }
            assert_eq!(err.close_code().0, code, "{what}");
        }
        // Invalid UTF-8 in a binary message is just bytes.
        let s = compressed_frame(true, 0x2, &deflate(b"\xC0\xAF"));
        assert_eq!(
            deflate_splits(&s, &small),
            vec![Owned::Message(DataKind::Binary, b"\xC0\xAF".to_vec())]
        );
    }

    /// The decoder owns no inflater and no inflated bytes: its size is
    /// what it was, and the inflated message lives in the loop's buffer.
    #[test]
    fn the_decoder_stays_small() {
        assert!(
            std::mem::size_of::<Decoder>() <= 72,
            "{}",
            std::mem::size_of::<Decoder>()
        );
    }

    #[test]
    fn buffer_is_released_when_idle() {
        let mut d = Decoder::default();
        let mut s = client_frame(false, 0x2, &[1; 1000]);
        let r = d.decode(&mut s, &LIMITS).unwrap();
        assert_eq!(r.event, None);
        d.release_buffer();
        assert!(
            d.buf.capacity() >= 1000,
            "kept while a message is in progress"
        );
        let mut s = client_frame(true, 0x0, &[2; 10]);
        let r = d.decode(&mut s, &LIMITS).unwrap();
        assert!(matches!(r.event, Some(Event::Message(DataKind::Binary, p)) if p.len() == 1010));
        d.release_buffer();
        assert_eq!(d.buf.capacity(), 0);
    }
}
