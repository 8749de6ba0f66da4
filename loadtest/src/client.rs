//! One client connection: its socket, where it is in its life, and the byte-level work
//! on it -- the non-blocking connect from a chosen source address, the handshake, reading
//! server frames (reassembling fragmented messages, answering pings, the closing
//! handshake) and queued writes.
//!
//! Kept small (about 100 bytes plus buffers that are empty most of the time) because one
//! process holds up to ~20,000 of them: the event loop reads into one shared buffer and
//! only a partial frame left over at the end of a read is copied into the client.

use crate::accounting::{RxState, Sink};
use crate::deflate::{self, DeflateConn, DeflateOffer};
use crate::handshake;
use crate::target::Target;
use crate::wsframe::{self, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, RSV1};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

/// Largest message (after reassembly) accepted from a server.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Buffers above this capacity are released once empty, so one burst does not pin memory.
const KEEP_CAPACITY: usize = 64 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Idle,
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for the `101`.
    Handshaking,
    Open,
    Closed,
}

/// A fragmented message being reassembled.
struct Fragment {
    opcode: u8,
    /// RSV1 on its first frame: inflate once whole.
    compressed: bool,
    data: Vec<u8>,
}

pub struct Client {
    pub sock: Option<TcpStream>,
    pub phase: Phase,
    pub rx: RxState,
    /// Which of the run's servers (nodes) this client connects to: an index into the
    /// engine's targets.
    pub node: u16,
    /// When the current connect attempt started (clock microseconds).
    pub started_us: u64,
    /// Sequence number of the last message this client sent (messages start at 1).
    pub next_seq: u32,
    key: [u8; 16],
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    frag: Option<Box<Fragment>>,
    /// permessage-deflate, when the server accepted our offer (boxed: most runs have
    /// none, and an idle connection then pays one pointer).
    deflate: Option<Box<DeflateConn>>,
    /// `wss://`: the TLS session; frames and the upgrade go through it.
    tls: Option<Box<rustls::ClientConnection>>,
    /// We sent a close frame: the server's close is the answer, not to be echoed.
    close_sent: bool,
}

thread_local! {
    /// Inflated and compressed messages pass through these: one pair for the event
    /// loop's thread instead of a buffer per connection.
    static INFLATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static COMPRESSED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A short reason for an I/O error, used as a counter key.
pub fn io_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::ECONNRESET) => "connection reset".into(),
        Some(libc::EPIPE) => "broken pipe".into(),
        Some(libc::ETIMEDOUT) => "TCP timeout".into(),
        Some(libc::EADDRNOTAVAIL) => "no free local port (EADDRNOTAVAIL)".into(),
        Some(libc::EADDRINUSE) => "local address in use".into(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too many open files".into(),
        _ => e.to_string(),
    }
}

impl Client {
    pub fn new(rx: RxState) -> Client {
        Client {
            sock: None,
            phase: Phase::Idle,
            rx,
            node: 0,
            started_us: 0,
            next_seq: 0,
            key: [0; 16],
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            frag: None,
            deflate: None,
            tls: None,
            close_sent: false,
        }
    }

    /// Whether permessage-deflate was negotiated on the current connection.
    pub fn deflate(&self) -> bool {
        self.deflate.is_some()
    }

    /// Opens a non-blocking socket (bound to `source` if given), starts the connect and
    /// registers it. Errors here are immediate connect failures.
    pub fn start(
        &mut self,
        addr: SocketAddr,
        source: Option<IpAddr>,
        registry: &Registry,
        token: Token,
        now_us: u64,
    ) -> io::Result<()> {
        self.reset();
        let sock = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )?;
        sock.set_tcp_nodelay(true)?;
        if let Some(src) = source {
            // Let connect() pick the port per 4-tuple instead of bind() reserving one per
            // source address, so each source address offers the whole ephemeral range.
            bind_no_port(&sock);
            sock.bind(&SocketAddr::new(src, 0).into())?;
        }
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(std::net::TcpStream::from(sock));
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        self.sock = Some(stream);
        self.phase = Phase::Connecting;
        self.started_us = now_us;
        Ok(())
    }

    /// After a writable (or error) event while connecting: `Ok(true)` once connected,
    /// `Ok(false)` for a spurious wake-up.
    pub fn finish_connect(&mut self) -> Result<bool, String> {
        let Some(sock) = self.sock.as_ref() else {
            return Err("no socket".into());
        };
        match sock.take_error() {
            Ok(Some(e)) | Err(e) => return Err(io_reason(&e)),
            Ok(None) => {}
        }
        match sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(io_reason(&e)),
        }
    }

    /// Starts TLS for a `wss://` target, then queues and sends the upgrade request (which
    /// rustls holds until its handshake is done).
    pub fn send_handshake(&mut self, target: &Target, path: &str) -> Result<(), String> {
        if let Some(t) = &target.tls {
            let conn = rustls::ClientConnection::new(t.config.clone(), t.server_name.clone())
                .map_err(|e| format!("TLS: {e}"))?;
            self.tls = Some(Box::new(conn));
        }
        self.key = handshake::new_key();
        handshake::write_request(
            &mut self.wbuf,
            &target.host,
            path,
            target.origin.as_deref(),
            target.deflate.offer.then_some(deflate::OFFER),
            &self.key,
        );
        self.phase = Phase::Handshaking;
        self.flush()
    }

    /// Bytes read from the socket, in `Handshaking` or `Open`: decrypted first on a TLS
    /// connection (through `plain`, a buffer the event loop shares), then handed on.
    pub fn receive<S: Sink>(
        &mut self,
        raw: &[u8],
        plain: &mut [u8],
        offer: DeflateOffer,
        acct: &mut S,
        now_us: u64,
    ) -> Result<(), String> {
        if self.tls.is_none() {
            return self.on_plain(raw, offer, acct, now_us);
        }
        let mut raw = raw;
        loop {
            let Some(tls) = self.tls.as_deref_mut() else {
                return Ok(());
            };
            if !raw.is_empty() {
                // rustls takes at most a buffer's worth per call: loop until all is in.
                tls.read_tls(&mut raw)
                    .map_err(|e| format!("TLS: {}", io_reason(&e)))?;
                tls.process_new_packets().map_err(|e| format!("TLS: {e}"))?;
            }
            let n = match tls.reader().read(plain) {
                Ok(0) => return Err("TLS session closed without a close frame".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if raw.is_empty() {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(format!("TLS: {e}")),
            };
            self.on_plain(&plain[..n], offer, acct, now_us)?;
        }
    }

    /// Plaintext received: the `101` while handshaking (frames that came with it are
    /// handed on at once), frames once open.
    fn on_plain<S: Sink>(
        &mut self,
        data: &[u8],
        offer: DeflateOffer,
        acct: &mut S,
        now_us: u64,
    ) -> Result<(), String> {
        match self.phase {
            Phase::Handshaking => {
                if self.on_handshake_bytes(data, offer)? {
                    self.on_bytes(&[], acct, now_us)?;
                }
                Ok(())
            }
            Phase::Open => self.on_bytes(data, acct, now_us),
            _ => Ok(()),
        }
    }

    /// Bytes received while handshaking; `Ok(true)` once the connection is open. Frames
    /// that came in the same read as the `101` stay buffered: the caller marks the client
    /// open first, then hands them on with `on_bytes(&[], ..)`.
    pub fn on_handshake_bytes(&mut self, data: &[u8], offer: DeflateOffer) -> Result<bool, String> {
        self.rbuf.extend_from_slice(data);
        let Some(up) = handshake::parse_response(&self.rbuf, &self.key)? else {
            return Ok(false);
        };
        let head_len = up.head_len;
        self.deflate = deflate::parse_answer(up.extensions.as_deref(), offer.offer)
            .map_err(|e| format!("handshake: {e}"))?
            .map(|n| Box::new(DeflateConn::new(n, offer.send_compressed)));
        self.phase = Phase::Open;
        self.rbuf.drain(..head_len);
        // Release the handshake's buffers: an idle connection then holds no heap at all.
        if self.rbuf.is_empty() {
            self.rbuf = Vec::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = Vec::new();
        }
        Ok(true)
    }

    /// Bytes received on an open connection.
    pub fn on_bytes<S: Sink>(
        &mut self,
        fresh: &[u8],
        acct: &mut S,
        now_us: u64,
    ) -> Result<(), String> {
        if self.rbuf.is_empty() {
            let used = self.on_frames(fresh, acct, now_us)?;
            if used < fresh.len() {
                self.rbuf.extend_from_slice(&fresh[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.rbuf);
            buf.extend_from_slice(fresh);
            let used = self.on_frames(&buf, acct, now_us)?;
            buf.drain(..used);
            if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
                buf = Vec::new();
            }
            self.rbuf = buf;
        }
        Ok(())
    }

    /// Handles every whole frame at the start of `data`; returns the bytes consumed.
    /// An `Err` ends the connection with that reason.
    fn on_frames<S: Sink>(
        &mut self,
        data: &[u8],
        acct: &mut S,
        now_us: u64,
    ) -> Result<usize, String> {
        let mut pos = 0;
        while pos < data.len() {
            let head = match wsframe::parse_head(&data[pos..], self.deflate.is_some()) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(format!("protocol error: {e}")),
            };
            if head.payload_len > MAX_MESSAGE as u64 {
                return Err("protocol error: frame over 64 MiB".into());
            }
            let total = head.header_len + head.payload_len as usize;
            if data.len() - pos < total {
                break;
            }
            let payload = &data[pos + head.header_len..pos + total];
            pos += total;
            match head.opcode {
                OP_PING => self.queue_frame(OP_PONG, payload),
                OP_PONG => {}
                OP_CLOSE => {
                    // Echo the status code, as RFC 6455 section 5.5.1 suggests -- unless this
                    // close answers ours, which ends the handshake.
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    if !self.close_sent {
                        let reply = code.map(u16::to_be_bytes);
                        self.queue_frame(OP_CLOSE, reply.as_ref().map_or(&[][..], |r| &r[..]));
                    }
                    return Err(close_reason(code, payload.get(2..).unwrap_or(&[])));
                }
                OP_TEXT | OP_BINARY => {
                    if self.frag.is_some() {
                        return Err("protocol error: new message inside a fragmented one".into());
                    }
                    if head.fin {
                        let msg = Message {
                            opcode: head.opcode,
                            compressed: head.rsv1,
                            payload,
                        };
                        deliver(&mut self.rx, self.deflate.as_deref_mut(), acct, msg, now_us)?;
                    } else {
                        self.frag = Some(Box::new(Fragment {
                            opcode: head.opcode,
                            compressed: head.rsv1,
                            data: payload.to_vec(),
                        }));
                    }
                }
                OP_CONTINUATION => {
                    let Some(frag) = self.frag.as_mut() else {
                        return Err("protocol error: continuation without a first frame".into());
                    };
                    if frag.data.len() + payload.len() > MAX_MESSAGE {
                        return Err("protocol error: message over 64 MiB".into());
                    }
                    frag.data.extend_from_slice(payload);
                    if head.fin {
                        if let Some(f) = self.frag.take() {
                            let msg = Message {
                                opcode: f.opcode,
                                compressed: f.compressed,
                                payload: &f.data,
                            };
                            deliver(&mut self.rx, self.deflate.as_deref_mut(), acct, msg, now_us)?;
                        }
                    }
                }
                _ => return Err("protocol error: unknown opcode".into()),
            }
        }
        Ok(pos)
    }

    /// Appends a masked frame to the write queue (call `flush` to send it); a data frame
    /// goes out compressed when deflate was negotiated and sending compressed was asked.
    pub fn queue_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = fastrand::u32(..).to_ne_bytes();
        let compress = matches!(opcode, OP_TEXT | OP_BINARY)
            && self.deflate.as_ref().is_some_and(|d| d.send_compressed);
        if compress {
            COMPRESSED.with(|z| {
                let mut z = z.borrow_mut();
                deflate::compress(payload, &mut z);
                wsframe::encode_masked_flags(&mut self.wbuf, opcode, RSV1, &z, mask);
            });
        } else {
            wsframe::encode_masked(&mut self.wbuf, opcode, payload, mask);
        }
    }

    /// Appends only the first half (at least one byte, never all) of a masked frame: a
    /// message cut off mid-frame, as a client that dies while writing leaves it.
    pub fn queue_frame_prefix(&mut self, opcode: u8, payload: &[u8]) {
        let start = self.wbuf.len();
        self.queue_frame(opcode, payload);
        let len = self.wbuf.len() - start;
        self.wbuf.truncate(start + (len / 2).max(1));
    }

    /// Starts the closing handshake from our side: queues and writes a close frame with
    /// `code`; the server's close frame then ends the connection without a reply.
    pub fn start_close(&mut self, code: u16) -> Result<(), String> {
        self.queue_frame(OP_CLOSE, &code.to_be_bytes());
        self.close_sent = true;
        self.flush()
    }

    /// Makes the coming `reset` send a TCP RST instead of a FIN (SO_LINGER with 0 s).
    pub fn set_abortive_close(&self) {
        if let Some(sock) = self.sock.as_ref() {
            let _ = socket2::SockRef::from(sock).set_linger(Some(std::time::Duration::ZERO));
        }
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes as much of the queue as the socket takes (through TLS on `wss://`).
    pub fn flush(&mut self) -> Result<(), String> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        match self.tls.as_deref_mut() {
            None => write_plain(sock, &mut self.wbuf)?,
            Some(tls) => write_tls(sock, tls, &mut self.wbuf)?,
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > KEEP_CAPACITY {
            self.wbuf = Vec::new();
        }
        Ok(())
    }

    /// Best-effort normal closure (1000) and release of the socket.
    pub fn close_gracefully(&mut self) {
        if self.phase == Phase::Open {
            self.queue_frame(OP_CLOSE, &1000u16.to_be_bytes());
            let _ = self.flush();
        }
        self.reset();
        self.phase = Phase::Closed;
    }

    /// Drops the socket and buffers; keeps the room, sequence numbers and receive state.
    pub fn reset(&mut self) {
        self.sock = None;
        self.rbuf = Vec::new();
        self.wbuf = Vec::new();
        self.frag = None;
        self.deflate = None;
        self.tls = None;
        self.close_sent = false;
        self.phase = Phase::Closed;
    }
}

/// The disconnect reason for a server's close frame: its code and, when it gave one,
/// its reason text (`server closed with 1008: slow consumer`), so a report tells a
/// deliberate close from a crash.
fn close_reason(code: Option<u16>, text: &[u8]) -> String {
    let Some(code) = code else {
        return "server closed".into();
    };
    let text = String::from_utf8_lossy(text);
    let text = text.trim();
    if text.is_empty() {
        format!("server closed with {code}")
    } else {
        // Reasons are at most 123 bytes (RFC 6455 section 5.5); a report key stays short.
        let shown: String = text.chars().take(80).collect();
        format!("server closed with {code}: {shown}")
    }
}

/// Writes `wbuf` to a plain socket until done or it would block; what was written
/// leaves the queue.
fn write_plain(sock: &mut TcpStream, wbuf: &mut Vec<u8>) -> Result<(), String> {
    let mut done = 0;
    let result = loop {
        if done >= wbuf.len() {
            break Ok(());
        }
        match sock.write(&wbuf[done..]) {
            Ok(0) => break Err("socket closed while writing".into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(io_reason(&e)),
        }
    };
    wbuf.drain(..done);
    result
}

/// Moves `wbuf` into the TLS session as far as its buffer takes it (64 KiB), and the
/// session's records to the socket until done or it would block.
fn write_tls(
    sock: &mut TcpStream,
    tls: &mut rustls::ClientConnection,
    wbuf: &mut Vec<u8>,
) -> Result<(), String> {
    loop {
        let taken = if wbuf.is_empty() {
            0
        } else {
            let n = tls.writer().write(wbuf).map_err(|e| format!("TLS: {e}"))?;
            wbuf.drain(..n);
            n
        };
        while tls.wants_write() {
            match tls.write_tls(sock) {
                Ok(0) => return Err("socket closed while writing".into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_reason(&e)),
            }
        }
        // Done, or rustls holds all it takes until its handshake ends.
        if wbuf.is_empty() || taken == 0 {
            return Ok(());
        }
    }
}

/// One whole message as it came off the wire.
struct Message<'a> {
    opcode: u8,
    /// RSV1: permessage-deflate compressed.
    compressed: bool,
    payload: &'a [u8],
}

/// Hands a whole message to the sink, inflated first when it came compressed.
fn deliver<S: Sink>(
    rx: &mut RxState,
    deflate: Option<&mut DeflateConn>,
    acct: &mut S,
    msg: Message<'_>,
    now_us: u64,
) -> Result<(), String> {
    if !msg.compressed {
        acct.on_wire(msg.payload.len(), msg.payload.len());
        hand_on(rx, acct, msg.opcode, msg.payload, now_us);
        return Ok(());
    }
    let Some(d) = deflate else {
        return Err("protocol error: compressed message without permessage-deflate".into());
    };
    INFLATED.with(|out| {
        let mut out = out.borrow_mut();
        d.inflate(msg.payload, &mut out, MAX_MESSAGE)?;
        acct.on_wire(msg.payload.len(), out.len());
        hand_on(rx, acct, msg.opcode, &out, now_us);
        if out.capacity() > KEEP_CAPACITY {
            *out = Vec::new();
        }
        Ok(())
    })
}

fn hand_on<S: Sink>(rx: &mut RxState, acct: &mut S, opcode: u8, payload: &[u8], now_us: u64) {
    if opcode == OP_TEXT {
        acct.on_text(rx, payload, now_us);
    } else {
        acct.on_binary(rx);
    }
}

/// IP_BIND_ADDRESS_NO_PORT (Linux 4.2+); harmless to lack, so errors are ignored.
fn bind_no_port(sock: &Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::{Accounting, Window};
    use crate::layout::Layout;
    use crate::payload::{self, Stamp};

    /// A client past its handshake with a server that answered `extensions`, the frames in
    /// `frames` arriving with the 101; returns it and what its accounting counted.
    fn open_with(extensions: &str, frames: &[u8], offer: DeflateOffer) -> (Client, Accounting) {
        let layout = Layout::new(1, 1, None).unwrap();
        let mut acct = Accounting::new(&layout);
        acct.begin(Window {
            epoch: 1,
            start_us: 0,
            end_us: u64::MAX,
        });
        let mut c = Client::new(RxState::new(0, 1));
        c.key = *b"the sample nonce";
        c.phase = Phase::Handshaking;
        let mut data = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{extensions}\r\n",
            handshake::accept_for(&c.key)
        )
        .into_bytes();
        data.extend_from_slice(frames);
        assert_eq!(c.on_handshake_bytes(&data, offer), Ok(true));
        c.on_bytes(&[], &mut acct, 10).unwrap();
        (c, acct)
    }

    fn chat(seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        let stamp = Stamp {
            epoch: 1,
            ts_us: 5,
            sender: 0,
            seq,
        };
        payload::encode(&mut v, &stamp, 3000);
        v
    }

    const OFFERED: DeflateOffer = DeflateOffer {
        offer: true,
        send_compressed: true,
    };
    const ACCEPTED: &str = "Sec-WebSocket-Extensions: permessage-deflate; \
        server_no_context_takeover; client_no_context_takeover\r\n";

    #[test]
    fn compressed_deliveries_are_inflated_and_counted_with_their_wire_size() {
        let (mut whole, mut first, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        let mut z = Vec::new();
        deflate::compress(&chat(1), &mut z);
        wsframe::encode_unmasked(&mut whole, OP_TEXT, true, &z);
        whole[0] |= RSV1;
        // The second message fragmented: RSV1 on its first frame only.
        deflate::compress(&chat(2), &mut z);
        let (a, b) = z.split_at(z.len() / 2);
        wsframe::encode_unmasked(&mut first, OP_TEXT, false, a);
        first[0] |= RSV1;
        wsframe::encode_unmasked(&mut rest, OP_CONTINUATION, true, b);
        let frames = [whole, first, rest].concat();
        let (c, acct) = open_with(ACCEPTED, &frames, OFFERED);
        assert!(c.deflate());
        assert_eq!(acct.counts.delivered, 2);
        assert_eq!(acct.wire.messages, 2);
        assert_eq!(acct.wire.payload_plain, 6000);
        // The padding is chat-like text, which compresses to well under half.
        assert!(acct.wire.payload_wire < 3000, "{:?}", acct.wire);
    }

    #[test]
    fn sends_compressed_only_when_negotiated_and_asked() {
        let (mut c, _) = open_with(ACCEPTED, &[], OFFERED);
        c.queue_frame(OP_TEXT, &chat(1));
        assert_eq!(c.wbuf[0], 0x80 | RSV1 | OP_TEXT);
        assert!(c.wbuf.len() < 1500, "{}", c.wbuf.len());
        let (mut c, _) = open_with("", &[], OFFERED);
        assert!(!c.deflate());
        c.queue_frame(OP_TEXT, &chat(1));
        assert_eq!(c.wbuf[0], 0x80 | OP_TEXT);
    }

    #[test]
    fn a_compressed_frame_without_the_extension_is_a_protocol_error() {
        let layout = Layout::new(1, 1, None).unwrap();
        let mut acct = Accounting::new(&layout);
        let mut c = Client::new(RxState::new(0, 1));
        c.phase = Phase::Open;
        let mut frame = Vec::new();
        wsframe::encode_unmasked(&mut frame, OP_TEXT, true, b"x");
        frame[0] |= RSV1;
        assert!(c.on_bytes(&frame, &mut acct, 1).is_err());
    }
}
