//! The connection state machine under arbitrary operation sequences. The
//! event loop owns sockets, so this drives its sans-IO pieces the way the
//! loop does: request bytes -> `parse_head` -> `decide` -> a `Decoder` over
//! reads, with the replies in a `SendQueue` that a sink drains by arbitrary
//! amounts (checked against a model: the bytes out are the queued frames,
//! whole and in order, minus only frames a discard dropped unstarted), and a
//! `TimerWheel` checked against a list (no entry lost, none duplicated).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use roomcast::chat::{self, ChatError};
use roomcast::wire::close::CloseCode;
use roomcast::wire::frame::{self, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use roomcast::wire::http::{self, Decision, OriginPolicy, WsRoute};
use roomcast::wire::message::{DataKind, Decoded, Decoder, Event, Limits};
use roomcast::relay::sendq::{Frame, SendQueue, Written};
use roomcast::server::wheel::{Entry, TimerWheel};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// One thing that happens to a connection. The input is a plain byte
/// format so seeds can be written by hand (see README.md): a tag byte, then
/// the operation's fields, integers little-endian; missing bytes read as 0.
#[derive(Debug)]
enum Op<'a> {
    /// 0: bytes from the client (u16 length, bytes).
    Read(&'a [u8]),
    /// 1: a valid upgrade request, so the open phase is easy to reach
    /// (u8: odd for /ws/echo/, even for /ws/chat/lobby/).
    Upgrade { echo: bool },
    /// 2: a masked client frame, any opcode (u8 flags: 0x80 FIN, low
    /// nibble opcode; 4 mask bytes; u16 length; payload).
    ClientFrame {
        fin: bool,
        opcode: u8,
        mask: [u8; 4],
        payload: &'a [u8],
    },
    /// 3: a broadcast from the room lands in this connection's queue
    /// (u16 payload length, u8 fill).
    Broadcast { len: u16, fill: u8 },
    /// 4: the queue passed --max-send-queue.
    SlowConsumer,
    /// 5: the socket is writable: one write call per amount (u8 count,
    /// u16 amounts).
    Writable(Vec<u16>),
    /// 6: a timer (u8 key, u8 generation, u16 delay in ticks).
    Schedule { key: u8, generation: u8, delay: u16 },
    /// 7: time passes (u16 ticks).
    Tick(u16),
}

fn int<'a, T: Arbitrary<'a> + Default>(u: &mut Unstructured<'a>) -> T {
    u.arbitrary().unwrap_or_default()
}

fn next_op<'a>(u: &mut Unstructured<'a>) -> Option<Op<'a>> {
    if u.is_empty() {
        return None;
    }
    let bytes = |u: &mut Unstructured<'a>, n: u16| {
        let n = usize::from(n).min(u.len());
        u.bytes(n).unwrap_or_default()
    };
    Some(match int::<u8>(u) % 8 {
        0 => {
            let n = int(u);
            Op::Read(bytes(u, n))
        }
        1 => Op::Upgrade {
            echo: int::<u8>(u) % 2 == 1,
        },
        2 => {
            let flags: u8 = int(u);
            let mask = int(u);
            let n = int(u);
            Op::ClientFrame {
                fin: flags & 0x80 != 0,
                opcode: flags & 0x0F,
                mask,
                payload: bytes(u, n),
            }
        }
        3 => Op::Broadcast {
            len: int(u),
            fill: int(u),
        },
        4 => Op::SlowConsumer,
        5 => {
            let count: u8 = int(u);
            Op::Writable((0..count).map(|_| int(u)).collect())
        }
        6 => Op::Schedule {
            key: int(u),
            generation: int(u),
            delay: int(u),
        },
        _ => Op::Tick(int(u)),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
    Closing,
    Closed,
    Done,
}

/// Takes what each call's amount allows: 0 is WouldBlock, 1 is EINTR,
/// n is up to n - 1 bytes; out of amounts, it blocks.
struct Sink {
    out: Vec<u8>,
    amounts: VecDeque<u16>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let room = match self.amounts.pop_front() {
            None | Some(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Some(1) => return Err(io::ErrorKind::Interrupted.into()),
            Some(n) => usize::from(n - 1),
        };
        let mut taken = 0;
        for b in bufs {
            let take = b.len().min(room - taken);
            self.out.extend_from_slice(&b[..take]);
            taken += take;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Conn {
    phase: Phase,
    echo: bool,
    rx: Vec<u8>,
    decoder: Decoder,
    limits: Limits,
    max_header: usize,
    tx: SendQueue,
    sink: Sink,
    /// Every frame queued, in order, and whether a discard dropped it.
    pushed: Vec<(Frame, bool)>,
    /// Model of the queue: indices into `pushed` and the front's offset.
    model: VecDeque<usize>,
    model_offset: usize,
}

impl Conn {
    fn push(&mut self, bytes: Vec<u8>) {
        let frame = Frame::from(bytes);
        self.model.push_back(self.pushed.len());
        self.pushed.push((frame.clone(), false));
        self.tx.push(frame);
    }

    fn model_queued(&self) -> usize {
        self.model
            .iter()
            .map(|&i| self.pushed[i].0.len())
            .sum::<usize>()
            - self.model_offset
    }

    fn discard(&mut self) {
        let keep = usize::from(self.model_offset > 0);
        let dropped: Vec<usize> = self.model.drain(keep..).collect();
        for &i in &dropped {
            self.pushed[i].1 = true;
        }
        assert_eq!(self.tx.discard_unstarted(), dropped.len());
    }

    fn writable(&mut self, amounts: Vec<u16>) {
        let before = self.sink.out.len();
        self.sink.amounts = amounts.into();
        let Written { bytes, drained } = self.tx.write_to(&mut self.sink).expect("no error");
        assert_eq!(bytes, self.sink.out.len() - before);
        // What the model says went out, byte for byte.
        let mut left = bytes;
        let mut at = before;
        while left > 0 {
            let front = &self.pushed[*self.model.front().expect("wrote more than queued")].0;
            let take = (front.len() - self.model_offset).min(left);
            assert_eq!(
                &self.sink.out[at..at + take],
                &front[self.model_offset..self.model_offset + take]
            );
            at += take;
            left -= take;
            self.model_offset += take;
            if self.model_offset == front.len() {
                self.model.pop_front();
                self.model_offset = 0;
            }
        }
        assert_eq!(drained, self.model.is_empty());
    }

    fn read(&mut self, bytes: &[u8]) {
        match self.phase {
            Phase::Handshake | Phase::Open | Phase::Closing => self.rx.extend_from_slice(bytes),
            Phase::Closed | Phase::Done => return,
        }
        if self.phase == Phase::Handshake {
            self.handshake();
        }
        if matches!(self.phase, Phase::Open | Phase::Closing) {
            self.decode();
        }
    }

    /// As `on_request_bytes`: one head at a time, pipelined pages served.
    fn handshake(&mut self) {
        while self.phase == Phase::Handshake {
            let (req, n) = match http::parse_head(&self.rx, self.max_header) {
                Ok(None) => {
                    assert!(self.rx.len() <= self.max_header);
                    return;
                }
                Ok(Some(parsed)) => parsed,
                Err(rej) => return self.respond(http::rejection_response(&rej)),
            };
            assert!(n <= self.max_header && n <= self.rx.len());
            if req.content_length.is_some_and(|n| n > 0) || req.chunked {
                let rej = http::Rejection::new(400, "request bodies are not accepted here");
                return self.respond(http::rejection_response(&rej));
            }
            self.rx.drain(..n);
            let policy = OriginPolicy::new(&["*.example.com".to_string()]);
            match http::decide(&req, &policy) {
                Decision::Reject(rej) => self.respond(http::rejection_response(&rej)),
                Decision::Serve { head_only, .. } => {
                    let keep_alive = req.http11 && !req.connection_close;
                    let page =
                        http::response(200, "text/plain", "", b"ok\n", head_only, !keep_alive);
                    if keep_alive {
                        self.push(page);
                    } else {
                        self.respond(page);
                    }
                }
                Decision::Upgrade { route, accept } => {
                    self.push(http::upgrade_response(&accept));
                    self.echo = route == WsRoute::Echo;
                    self.phase = Phase::Open;
                }
            }
        }
    }

    fn respond(&mut self, bytes: Vec<u8>) {
        self.rx = Vec::new();
        self.push(bytes);
        self.phase = Phase::Done;
    }

    /// As `decode_frames`: decode until no event, keep the rest.
    fn decode(&mut self) {
        let mut input = std::mem::take(&mut self.rx);
        let mut pos = 0;
        let mut replies = Vec::new();
        while matches!(self.phase, Phase::Open | Phase::Closing) {
            let closing = self.phase == Phase::Closing;
            let available = input.len() - pos;
            let Decoded { consumed, event } =
                match self.decoder.decode(&mut input[pos..], &self.limits) {
                    Ok(d) => d,
                    Err(e) => {
                        if closing {
                            self.phase = Phase::Done;
                        } else {
                            replies.push(frame::encode_close(e.close_code().0, e.reason()));
                            self.phase = Phase::Closing;
                        }
                        break;
                    }
                };
            assert!(consumed <= available);
            pos += consumed;
            let Some(event) = event else { break };
            assert!(consumed > 0, "an event that consumes nothing");
            match event {
                Event::Message(..) | Event::Ping(_) if closing => {}
                Event::Message(kind, payload) => match (self.echo, kind) {
                    (true, DataKind::Text) => {
                        let text = std::str::from_utf8(payload).expect("text is UTF-8");
                        replies.push(frame::encode_frame(Opcode::Text, text.as_bytes()));
                    }
                    (true, DataKind::Binary) => {
                        replies.push(frame::encode_frame(Opcode::Binary, payload))
                    }
                    (false, DataKind::Text) => {
                        let text = std::str::from_utf8(payload).expect("text is UTF-8");
                        replies.push(chat::process(text).unwrap_or_else(|e| e));
                    }
                    (false, DataKind::Binary) => {
                        replies.push(chat::error_frame(&ChatError::Binary))
                    }
                },
                Event::Ping(p) => {
                    assert!(p.len() <= MAX_CONTROL_PAYLOAD);
                    replies.push(frame::encode_frame(Opcode::Pong, p));
                }
                Event::Pong(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
                Event::Close(status) => {
                    if !closing {
                        let code = status.map_or(CloseCode::NORMAL, |(code, _)| code);
                        assert!(code.is_valid_on_wire());
                        replies.push(frame::encode_close(code.0, ""));
                    }
                    self.phase = Phase::Closed;
                }
            }
        }
        input.drain(..pos);
        if self.phase == Phase::Open {
            assert!(input.len() < MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD);
        }
        if matches!(self.phase, Phase::Open | Phase::Closing) {
            self.rx = input;
        }
        self.decoder.release_buffer();
        for r in replies {
            self.push(r);
        }
    }

    /// As `close_slow_consumer`.
    fn slow_consumer(&mut self) {
        if self.phase == Phase::Open {
            self.discard();
            self.push(frame::encode_close(
                CloseCode::POLICY_VIOLATION.0,
                "slow consumer",
            ));
            self.phase = Phase::Closing;
        }
    }

    /// The bytes out are the frames not discarded, whole and in order; only
    /// a frame still being written may be cut.
    fn check_output(&self) {
        let mut at = 0;
        for (frame, discarded) in &self.pushed {
            if *discarded {
                continue;
            }
            let rest = &self.sink.out[at..];
            if rest.len() < frame.len() {
                assert_eq!(rest, &frame[..rest.len()]);
                assert_eq!(rest.len(), self.model_offset);
                return;
            }
            assert_eq!(&rest[..frame.len()], &frame[..]);
            at += frame.len();
        }
        assert_eq!(at, self.sink.out.len());
    }
}

struct Timers {
    wheel: TimerWheel,
    now: u32,
    live: Vec<Entry>,
    out: Vec<Entry>,
}

impl Timers {
    fn schedule(&mut self, key: u8, generation: u8, delay: u16) {
        // Up to 8 ticks in the past: the wheel fires those on the next tick.
        let due = (self.now + u32::from(delay)).saturating_sub(8);
        self.wheel
            .schedule(u32::from(key), u32::from(generation), due);
        self.live.push(Entry {
            key: u32::from(key),
            generation: u32::from(generation),
            due: due.max(self.now + 1),
        });
        assert_eq!(self.wheel.len(), self.live.len());
    }

    fn tick(&mut self, by: u16) {
        if self.now > u32::MAX / 2 {
            return;
        }
        let now = self.now + u32::from(by);
        self.wheel.expire(now, &mut self.out);
        if now > self.now {
            self.now = now;
        }
        let key = |e: &Entry| (e.due, e.key, e.generation);
        let mut want: Vec<Entry> = self.live.iter().filter(|e| e.due <= now).copied().collect();
        self.live.retain(|e| e.due > now);
        want.sort_by_key(key);
        self.out.sort_by_key(key);
        assert_eq!(self.out, want);
        self.out.clear();
        assert_eq!(self.wheel.len(), self.live.len());
        assert_eq!(self.wheel.is_empty(), self.live.is_empty());
    }
}

/// Broadcast frames queued at most, so a run stays small.
const MAX_PUSHED_BYTES: usize = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let max_header: u16 = int(&mut u);
    let bits: u8 = int(&mut u);
    let mut conn = Conn {
        phase: Phase::Handshake,
        echo: false,
        rx: Vec::new(),
        decoder: Decoder::default(),
        limits: Limits {
            max_frame_size: 1 << (bits & 0x0F),
            max_message_size: 1 << ((bits >> 4) + 1),
        },
        max_header: usize::from(max_header % 4096) + 16,
        tx: SendQueue::default(),
        sink: Sink {
            out: Vec::new(),
            amounts: VecDeque::new(),
        },
        pushed: Vec::new(),
        model: VecDeque::new(),
        model_offset: 0,
    };
    let mut timers = Timers {
        wheel: TimerWheel::default(),
        now: 0,
        live: Vec::new(),
        out: Vec::new(),
    };
    let mut pushed_bytes = 0;
    while let Some(op) = next_op(&mut u) {
        match op {
            Op::Read(bytes) => conn.read(bytes),
            Op::Upgrade { echo } => {
                let path = if echo { "/ws/echo/" } else { "/ws/chat/lobby/" };
                let head = format!(
                    "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                );
                conn.read(head.as_bytes());
            }
            Op::ClientFrame {
                fin,
                opcode,
                mask,
                payload,
            } => conn.read(&roomcast::wire::frame::encode_client_frame(
                fin, opcode, payload, mask,
            )),
            Op::Broadcast { len, fill } => {
                pushed_bytes += usize::from(len);
                if conn.phase == Phase::Open && pushed_bytes <= MAX_PUSHED_BYTES {
                    conn.push(frame::encode_frame(
                        Opcode::Text,
                        &vec![fill; usize::from(len)],
                    ));
                }
            }
            Op::SlowConsumer => conn.slow_consumer(),
            Op::Writable(amounts) => conn.writable(amounts),
            Op::Schedule {
                key,
                generation,
                delay,
            } => timers.schedule(key, generation, delay),
            Op::Tick(by) => timers.tick(by),
        }
        assert_eq!(conn.tx.queued(), conn.model_queued());
        assert_eq!(conn.tx.is_empty(), conn.model.is_empty());
    }
    // Drain what is left, then check the whole byte stream.
    let calls = 2 + conn.model.len() / 64 + conn.tx.queued() / 65_534;
    conn.writable(vec![u16::MAX; calls]);
    assert!(conn.tx.is_empty() && conn.tx.queued() == 0);
    conn.check_output();
});
