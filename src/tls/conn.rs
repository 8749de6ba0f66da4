//! One connection's TLS state, driven from the loop's shared buffers.
//!
//! Sans-IO: [`TlsConn::read`] takes ciphertext the loop read into its
//! shared read buffer and appends the plaintext to a shared plaintext
//! buffer and any handshake or alert bytes to an output buffer;
//! [`TlsConn::encrypt`] seals a batch of plaintext frames into an output
//! buffer; [`TlsConn::close`] appends a close_notify. Nothing here reads a
//! socket or a clock.
//!
//! Invariants:
//! - An idle connection holds no buffer of its own: only rustls's
//!   per-connection state (keys, sequence numbers, the handshake state
//!   machine's small boxes). The one buffer a `TlsConn` may own, `pending`,
//!   holds the ciphertext of a record that arrived in part, exists only
//!   until the rest arrives, and is never more than [`MAX_PENDING`] bytes
//!   (a longer unfinished flight fails the handshake as `bad_handshake`).
//! - The first byte of a connection must start a TLS handshake record
//!   (`0x16`) and the second must be `0x03`; anything else fails at once as
//!   `not_tls`, without waiting for more bytes, and nothing is sent back.
//! - Work per call is linear in the bytes given: every pass through rustls
//!   consumes a record or emits one of a bounded number of outputs, and a
//!   call gives up as `other` past a budget of passes proportional to its
//!   input. rustls itself bounds the protocol's loops: one TLS 1.2
//!   renegotiation attempt is refused with a warning (the second is
//!   fatal), at most 4 warning alerts, 32 consecutive empty records and 32
//!   KeyUpdates without application data in between.
//! - Output grows only by the handshake flight, alerts, and the records of
//!   what the caller asked to encrypt.
//! - [`TlsConn::encrypt`] puts consecutive frames into the same record up
//!   to the 16 KiB record limit, so a batch of `n` frames totalling `b`
//!   bytes costs `ceil(b / 16 KiB)` records, not `n`.
//! - After a failure the connection is dead: every later call returns the
//!   same failure and produces nothing.

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{AlertDescription, ProtocolVersion, ServerConfig};
use std::fmt;
use std::sync::Arc;

/// A server-side TLS connection without buffers of its own.
pub struct TlsConn {
    conn: UnbufferedServerConnection,
    /// Ciphertext of an incomplete record (or of a handshake message
    /// spread over records), kept between reads. Empty and unallocated
    /// whenever the peer's last record arrived whole.
    pending: Vec<u8>,
    stage: Stage,
    /// The peer's close_notify has arrived (in [`Stage::PeerClosed`], or in
    /// [`Stage::Closed`] when the relay closed first).
    peer_closed: bool,
    /// `pending` was copied to the front of the loop's read buffer, so the
    /// next `read` input already starts with it.
    restored: bool,
}

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// No byte received yet.
    Fresh,
    /// The handshake is under way (bounded by the loop's
    /// `--handshake-timeout`).
    Handshaking,
    /// Application data flows both ways.
    Open,
    /// The peer sent close_notify: it sends nothing more. The relay may
    /// still send, then its own close_notify.
    PeerClosed,
    /// The relay sent its close_notify: nothing more is sent; input is
    /// still decrypted until the peer's close_notify.
    Closed,
    /// The connection failed; the value says why.
    Failed(Failure),
}

/// Why a connection failed: one label of
/// `roomcast_tls_handshake_failures_total{reason}` for a failed handshake,
/// or the kind of fault on an open connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The first bytes are not a TLS handshake record (plaintext HTTP to
    /// the TLS port, a scanner, garbage).
    NotTls,
    /// Malformed or out-of-order handshake messages, a bad Finished, a
    /// record that fails to decrypt, an oversized handshake flight.
    BadHandshake,
    /// No cipher suite, key exchange group or signature scheme in common.
    NoSharedCipher,
    /// The client offers neither TLS 1.2 nor 1.3.
    ProtocolVersion,
    /// The client offers ALPN protocols, none of them `http/1.1`.
    NoAlpn,
    /// The client rejected the relay's certificate (a fatal alert such as
    /// `bad_certificate` or `unknown_ca`): the certificate is not trusted.
    CertRejected,
    /// The handshake did not finish within `--handshake-timeout` (counted
    /// by the loop, which owns the clock).
    Timeout,
    /// The client closed the TCP connection mid-handshake (counted by the
    /// loop, which sees the EOF).
    Eof,
    /// Anything else (another fatal alert from the peer, an internal error).
    Other,
}

/// What one [`TlsConn::read`] call did, besides appending plaintext and
/// output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The handshake finished during this call: the connection is open.
    pub handshake_done: bool,
    /// The peer sent close_notify during this call: no more plaintext will
    /// come; reply with [`TlsConn::close`] and finish.
    pub peer_closed: bool,
}

/// A failure with the rustls error behind it (for the debug log).
#[derive(Clone, Debug)]
pub struct TlsError {
    pub failure: Failure,
    /// Whether the handshake had finished when it happened: only failures
    /// with `during_handshake` count in the handshake failure metric.
    pub during_handshake: bool,
    pub detail: Option<rustls::Error>,
}

/// The longest unfinished ciphertext kept between reads: two records at
/// their largest (16,384 + 2,048 bytes of payload plus a 5-byte header).
/// The loop's read buffer must be larger, so that new bytes fit after it.
pub const MAX_PENDING: usize = 2 * MAX_RECORD;

/// The largest TLS record on the wire (RFC 8446 section 5.2 allows 2^14 +
/// 256 bytes of ciphertext; TLS 1.2 allows 2^14 + 2048).
const MAX_RECORD: usize = 5 + 16_384 + 2_048;

/// The most plaintext in one record (RFC 8446 section 5.1).
pub const MAX_RECORD_PLAINTEXT: usize = 16_384;

/// Bytes a record adds to its plaintext at most: the 5-byte header, and
/// for TLS 1.2 AES-GCM an 8-byte explicit nonce and a 16-byte tag (TLS
/// 1.3: a content-type byte and the tag).
const RECORD_OVERHEAD: usize = 5 + 8 + 16;

/// Room for one encrypted alert record (5 + 2 + 1 + 8 + 16 bytes at most).
const CLOSE_NOTIFY_ROOM: usize = 64;

/// The TLS record content type of a handshake message.
const CONTENT_TYPE_HANDSHAKE: u8 = 0x16;

/// The major version byte of every TLS (and SSL 3.0) record header.
const RECORD_VERSION_MAJOR: u8 = 0x03;

/// Passes through rustls allowed per call: a few per record of input,
/// plus the handshake flight's outputs.
fn pass_budget(input: usize) -> usize {
    64 + 4 * (input / 5)
}

impl TlsConn {
    /// A connection that will handshake with `config` (the current one; a
    /// later reload does not affect this connection).
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsConn, TlsError> {
        let conn = UnbufferedServerConnection::new(config).map_err(|e| TlsError {
            failure: Failure::Other,
            during_handshake: true,
            detail: Some(e),
        })?;
        Ok(TlsConn {
            conn,
            pending: Vec::new(),
            stage: Stage::Fresh,
            peer_closed: false,
            restored: false,
        })
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Whether the handshake has not finished (nor failed) yet.
    pub fn is_handshaking(&self) -> bool {
        matches!(self.stage, Stage::Fresh | Stage::Handshaking)
    }

    /// Whether application data can be sent ([`TlsConn::encrypt`]).
    pub fn can_send(&self) -> bool {
        matches!(self.stage, Stage::Open | Stage::PeerClosed)
    }

    /// The negotiated protocol version, once the handshake is done.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The negotiated ALPN protocol (`http/1.1`), if the client offered ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Whether this connection resumed a session (a ticket).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// Bytes of incomplete ciphertext kept since the last read.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Copies the incomplete record kept since the last [`TlsConn::read`]
    /// to the front of `buf` and returns its length: read the socket into
    /// `buf[n..]`, then pass `buf[..n + read]` to [`TlsConn::read`]. If the
    /// socket has nothing, skip the `read`: the bytes stay kept here. `buf`
    /// must hold more than [`MAX_PENDING`] bytes.
    pub fn restore_pending(&mut self, buf: &mut [u8]) -> usize {
        let n = self.pending.len();
        if n == 0 || n > buf.len() {
            debug_assert!(n <= buf.len(), "read buffer smaller than MAX_PENDING");
            return 0;
        }
        buf[..n].copy_from_slice(&self.pending);
        self.restored = true;
        n
    }

    /// Processes ciphertext: decrypts application data (appended to
    /// `plaintext`), advances the handshake (its flight, session ticket and
    /// alerts appended to `out`, to be sent before anything encrypted
    /// later), and keeps an incomplete trailing record for the next call.
    ///
    /// `input` begins with what [`TlsConn::restore_pending`] put there, if
    /// it was called since the last `read`; otherwise bytes still pending
    /// are prepended here (correct, at the cost of a copy). `input` may be
    /// modified (rustls decrypts in place). On error, `out` may hold a
    /// final alert to send before closing.
    pub fn read(
        &mut self,
        input: &mut [u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, TlsError> {
        if let Stage::Failed(failure) = self.stage {
            return Err(self.error(failure, None));
        }
        if self.peer_closed {
            // Bytes after close_notify are ignored (RFC 8446 section 6.1).
            return Ok(ReadOutcome::default());
        }
        if input.is_empty() {
            return Ok(ReadOutcome::default());
        }
        if self.stage == Stage::Fresh {
            if !looks_like_tls(input) {
                return Err(self.fail(Failure::NotTls, None));
            }
            self.stage = Stage::Handshaking;
        }
        if self.pending.is_empty() || std::mem::take(&mut self.restored) {
            debug_assert!(
                input.starts_with(&self.pending),
                "restored bytes were replaced"
            );
            self.process(input, plaintext, out)
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(input);
            self.process(&mut joined, plaintext, out)
        }
    }

    /// Encrypts `frames`, in order, into as few records as possible,
    /// appended to `out`; returns the ciphertext bytes appended. Frames are
    /// gathered in `gather` (a buffer the loop shares between connections)
    /// so that several fit one record; a lone frame is sealed without a
    /// copy. Anything `read` left in `out` must be sent first, which
    /// appending preserves.
    pub fn encrypt<'a, I>(
        &mut self,
        frames: I,
        gather: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<usize, TlsError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        if !self.can_send() {
            return Err(self.error(self.failure_or_other(), None));
        }
        let start = out.len();
        gather.clear();
        // A first frame is held unbuffered in case it is alone.
        let mut first: Option<&[u8]> = None;
        for frame in frames {
            if frame.is_empty() {
                continue;
            }
            if gather.is_empty() && first.is_none() {
                first = Some(frame);
                continue;
            }
            if let Some(f) = first.take() {
                self.gather_into(f, gather, out)?;
            }
            self.gather_into(frame, gather, out)?;
        }
        if let Some(f) = first {
            self.seal(f, out)?;
        } else if !gather.is_empty() {
            self.seal_gathered(gather, out)?;
        }
        Ok(out.len() - start)
    }

    /// Appends a close_notify alert to `out` (graceful shutdown, or the
    /// answer to the peer's). Before the handshake has finished there is
    /// nothing to say: the loop just closes the socket.
    pub fn close(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        if !self.can_send() {
            return Ok(());
        }
        let result = self.with_write_traffic(out, |w, buf| {
            if buf.len() < CLOSE_NOTIFY_ROOM {
                return Err(EncryptError::InsufficientSize(InsufficientSizeError {
                    required_size: CLOSE_NOTIFY_ROOM,
                }));
            }
            w.queue_close_notify(buf)
        });
        if !matches!(self.stage, Stage::Failed(_)) {
            self.stage = Stage::Closed;
        }
        result.map(|_| ())
    }

    fn process(
        &mut self,
        input: &mut [u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, TlsError> {
        let mut outcome = ReadOutcome::default();
        let mut pos = 0;
        let mut passes = pass_budget(input.len());
        loop {
            passes -= 1;
            if passes == 0 {
                return Err(self.fail(Failure::Other, None));
            }
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut input[pos..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    let failure = classify(&e, self.is_handshaking());
                    pos = (pos + discard).min(input.len());
                    self.flush_alerts(&mut input[pos..], out);
                    return Err(self.fail(failure, Some(e)));
                }
            };
            let mut extra_discard = 0;
            let mut stop = false;
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => {
                                extra_discard += record.discard;
                                plaintext.extend_from_slice(record.payload);
                            }
                            Err(e) => {
                                drop(traffic);
                                pos = (pos + discard + extra_discard).min(input.len());
                                self.flush_alerts(&mut input[pos..], out);
                                return Err(self.fail(Failure::Other, Some(e)));
                            }
                        }
                    }
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    append_encoded(out, |buf| data.encode(buf))?;
                }
                ConnectionState::TransmitTlsData(data) => {
                    // Appended to `out` is as good as sent: the loop writes
                    // `out` in order before anything produced later.
                    data.done();
                }
                ConnectionState::BlockedHandshake => stop = true,
                ConnectionState::WriteTraffic(_) => {
                    if self.stage == Stage::Handshaking {
                        self.stage = Stage::Open;
                        outcome.handshake_done = true;
                    }
                    stop = true;
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.peer_closed();
                    outcome.peer_closed = true;
                    stop = true;
                }
                // Early data is never accepted (max_early_data_size is 0);
                // drain and drop anything rustls offers.
                ConnectionState::ReadEarlyData(mut early) => {
                    while let Some(Ok(record)) = early.next_record() {
                        extra_discard += record.discard;
                    }
                }
                _ => return Err(self.fail(Failure::Other, None)),
            }
            pos += discard + extra_discard;
            if stop {
                break;
            }
        }
        let rest = &input[pos.min(input.len())..];
        if self.peer_closed || rest.is_empty() {
            self.pending = Vec::new();
        } else if rest.len() > MAX_PENDING {
            return Err(self.fail(Failure::BadHandshake, None));
        } else {
            self.pending.clear();
            self.pending.extend_from_slice(rest);
        }
        Ok(outcome)
    }

    /// Copies `frame` into `gather`, sealing a full record's worth each
    /// time `gather` reaches the record limit.
    fn gather_into(
        &mut self,
        mut frame: &[u8],
        gather: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        while !frame.is_empty() {
            let room = MAX_RECORD_PLAINTEXT - gather.len();
            let (now, later) = frame.split_at(room.min(frame.len()));
            gather.extend_from_slice(now);
            frame = later;
            if gather.len() == MAX_RECORD_PLAINTEXT {
                self.seal_gathered(gather, out)?;
            }
        }
        Ok(())
    }

    fn seal_gathered(&mut self, gather: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<(), TlsError> {
        let result = self.seal(gather, out);
        gather.clear();
        result
    }

    /// Encrypts one stretch of plaintext (rustls splits it into records of
    /// at most 16 KiB).
    fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        let records = plaintext.len().div_ceil(MAX_RECORD_PLAINTEXT).max(1);
        let estimate = plaintext.len() + records * RECORD_OVERHEAD;
        self.with_write_traffic(out, |w, buf| {
            if buf.len() < estimate {
                return Err(EncryptError::InsufficientSize(InsufficientSizeError {
                    required_size: estimate,
                }));
            }
            w.encrypt(plaintext, buf)
        })
        .map(|_| ())
    }

    /// Runs `write` with rustls's write state and room at the end of
    /// `out`, emitting first whatever rustls has queued (a KeyUpdate
    /// answer) so that the byte order stays right.
    fn with_write_traffic<F>(&mut self, out: &mut Vec<u8>, mut write: F) -> Result<usize, TlsError>
    where
        F: FnMut(
            &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut [u8],
        ) -> Result<usize, EncryptError>,
    {
        for _ in 0..8 {
            // rustls must see the unconsumed input again (a handshake
            // message may be half-received in it); it consumes none of it
            // here, since `read` processed every complete record.
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.pending);
            debug_assert_eq!(discard, 0);
            match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let at = out.len();
                    let mut room = 0;
                    loop {
                        out.resize(at + room, 0);
                        match write(&mut traffic, &mut out[at..]) {
                            Ok(n) => {
                                out.truncate(at + n);
                                return Ok(n);
                            }
                            Err(EncryptError::InsufficientSize(s)) if s.required_size > room => {
                                room = s.required_size;
                            }
                            Err(_) => {
                                out.truncate(at);
                                return Err(self.fail(Failure::Other, None));
                            }
                        }
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    append_encoded(out, |buf| data.encode(buf))?;
                }
                Ok(ConnectionState::TransmitTlsData(data)) => data.done(),
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => self.peer_closed(),
                Ok(_) => return Err(self.fail(Failure::Other, None)),
                Err(e) => return Err(self.fail(Failure::Other, Some(e))),
            }
        }
        Err(self.fail(Failure::Other, None))
    }

    /// Emits the alert rustls queued when it failed (one record). `rest`
    /// is the input not yet discarded: rustls requires every call to see
    /// the same unconsumed bytes. It is called only while rustls holds
    /// output, which it hands out before looking at input again (looking
    /// at the input again would fail a second time).
    fn flush_alerts(&mut self, rest: &mut [u8], out: &mut Vec<u8>) {
        for _ in 0..4 {
            if !self.conn.wants_write() {
                return;
            }
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(rest);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    if append_encoded(out, |buf| data.encode(buf)).is_err() {
                        return;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(data)) => data.done(),
                _ => return,
            }
        }
    }

    fn peer_closed(&mut self) {
        self.peer_closed = true;
        if self.stage == Stage::Open {
            self.stage = Stage::PeerClosed;
        }
    }

    fn fail(&mut self, failure: Failure, detail: Option<rustls::Error>) -> TlsError {
        let error = self.error(failure, detail);
        self.stage = Stage::Failed(failure);
        self.pending = Vec::new();
        error
    }

    fn error(&self, failure: Failure, detail: Option<rustls::Error>) -> TlsError {
        TlsError {
            failure,
            during_handshake: self.is_handshaking(),
            detail,
        }
    }

    fn failure_or_other(&self) -> Failure {
        match self.stage {
            Stage::Failed(f) => f,
            _ => Failure::Other,
        }
    }
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("stage", &self.stage)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Failure {
    /// Every label, for registering the metric's series at zero.
    pub const ALL: [Failure; 9] = [
        Failure::NotTls,
        Failure::BadHandshake,
        Failure::NoSharedCipher,
        Failure::ProtocolVersion,
        Failure::NoAlpn,
        Failure::CertRejected,
        Failure::Timeout,
        Failure::Eof,
        Failure::Other,
    ];

    /// The `reason` label of `roomcast_tls_handshake_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            Failure::NotTls => "not_tls",
            Failure::BadHandshake => "bad_handshake",
            Failure::NoSharedCipher => "no_shared_cipher",
            Failure::ProtocolVersion => "protocol_version",
            Failure::NoAlpn => "no_alpn",
            Failure::CertRejected => "cert_rejected",
            Failure::Timeout => "timeout",
            Failure::Eof => "eof",
            Failure::Other => "other",
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = if self.during_handshake {
            "TLS handshake failed"
        } else {
            "TLS connection failed"
        };
        write!(f, "{when} ({})", self.failure.label())?;
        match &self.detail {
            Some(e) => write!(f, ": {e}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for TlsError {}

/// Whether `input` (the first bytes of a connection) can start a TLS
/// handshake record: content type 0x16, then major version 0x03.
fn looks_like_tls(input: &[u8]) -> bool {
    input[0] == CONTENT_TYPE_HANDSHAKE && (input.len() < 2 || input[1] == RECORD_VERSION_MAJOR)
}

/// The label for a rustls error. Errors after the handshake are classified
/// the same way, but the loop counts only handshake failures.
fn classify(e: &rustls::Error, handshaking: bool) -> Failure {
    use rustls::{Error, PeerIncompatible as P};
    match e {
        Error::PeerIncompatible(
            P::NoCipherSuitesInCommon
            | P::NoKxGroupsInCommon
            | P::NoSignatureSchemesInCommon
            | P::NoEcPointFormatsInCommon
            | P::UncompressedEcPointsRequired
            | P::NullCompressionRequired,
        ) => Failure::NoSharedCipher,
        Error::PeerIncompatible(
            P::Tls12NotOffered
            | P::Tls12NotOfferedOrEnabled
            | P::SupportedVersionsExtensionRequired
            | P::ServerDoesNotSupportTls12Or13,
        ) => Failure::ProtocolVersion,
        Error::NoApplicationProtocol => Failure::NoAlpn,
        Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA,
        ) => Failure::CertRejected,
        Error::AlertReceived(AlertDescription::ProtocolVersion) => Failure::ProtocolVersion,
        Error::AlertReceived(
            AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity,
        ) if handshaking => Failure::NoSharedCipher,
        Error::InvalidMessage(_)
        | Error::PeerMisbehaved(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::DecryptError
        | Error::PeerSentOversizedRecord
        | Error::PeerIncompatible(_) => Failure::BadHandshake,
        _ => Failure::Other,
    }
}

/// Appends what an `encode` call produces, growing `out` to the size
/// rustls asks for.
fn append_encoded<F>(out: &mut Vec<u8>, mut encode: F) -> Result<(), TlsError>
where
    F: FnMut(&mut [u8]) -> Result<usize, EncodeError>,
{
    let at = out.len();
    let mut room = 0;
    loop {
        out.resize(at + room, 0);
        match encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) if s.required_size > room => {
                room = s.required_size;
            }
            Err(_) => {
                out.truncate(at);
                return Err(TlsError {
                    failure: Failure::Other,
                    during_handshake: true,
                    detail: None,
                });
            }
        }
    }
}
