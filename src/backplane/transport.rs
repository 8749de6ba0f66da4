//! The bytes between a shard's [`Link`](super::link::Link) and its Redis:
//! plain TCP for `redis://`, TLS over TCP for `rediss://` (rustls as a
//! client, on the backplane thread's nonblocking sockets).
//!
//! The link above sees plain bytes either way, so RESP is framed the same
//! over both. Invariants:
//! - [`Transport::read`] and [`Transport::write`] behave as a nonblocking
//!   socket's: `WouldBlock` when nothing can move now, `Ok(0)` from `read`
//!   at the end of the stream;
//! - TLS records rustls has queued (the handshake, alerts, data) leave only
//!   through [`Transport::flush`], which the thread calls after every write
//!   pass, and which the read path calls after each record it takes in (the
//!   handshake answers what it reads);
//! - rustls buffers at most its default limit (64 KiB) of data not yet
//!   sent; past it `write` accepts nothing (`WouldBlock`), so the link's
//!   queue, which `--redis-queue` bounds, holds the rest;
//! - the certificate is checked against the URL's host (SNI and name
//!   check), with the roots of `--redis-tls-ca` if given, else the Mozilla
//!   roots compiled in (`webpki-roots`): no platform store is read, so a
//!   node behaves the same on any machine and offline.

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// A shard's connection: its TCP socket, with TLS over it or not.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

pub struct TlsStream {
    tcp: TcpStream,
    tls: ClientConnection,
}

impl Transport {
    /// Wraps a TCP connection (still connecting is fine) in TLS for `host`.
    pub fn tls(tcp: TcpStream, config: &Arc<ClientConfig>, host: &str) -> io::Result<Transport> {
        let name = ServerName::try_from(host.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} cannot be checked against a TLS certificate"),
            )
        })?;
        let tls = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        Ok(Transport::Tls(Box::new(TlsStream { tcp, tls })))
    }

    /// The TCP socket, to register it and ask after the connect.
    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(s) => &mut s.tcp,
        }
    }

    /// Reads plain bytes.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }

    /// Writes plain bytes (TLS: encrypts them; [`Transport::flush`] sends).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    /// Sends what TLS has queued, until it is sent or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(s) => s.flush(),
        }
    }

    /// A read shorter than the buffer means the socket is drained. Not so
    /// with TLS, which hands out one record's data at a time.
    pub fn short_read_drains(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                // Ok(0): Redis closed the TLS session cleanly.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.tls.read_tls(&mut self.tcp)? == 0 {
                // TCP ended without a TLS close: what rustls says of it.
                return self.tls.reader().read(buf);
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Tell Redis why (the alert rustls queued), if the socket takes it.
                let _ = self.flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            match self.flush() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut n = self.tls.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            // rustls holds its limit already: send some, then try again.
            self.flush()?;
            n = self.tls.writer().write(buf)?;
        }
        // What was taken is encrypted and queued: sent now or on the next
        // flush, so a full socket is not an error here.
        match self.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.tcp)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}

/// The TLS settings every `rediss://` shard shares: the roots in the PEM
/// file `ca` (`--redis-tls-ca`), or else the Mozilla roots compiled in.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--redis-tls-ca {shown}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--redis-tls-ca {shown}: {e}"))?;
                roots.add(cert).map_err(|e| {
                    format!("--redis-tls-ca {shown}: a certificate is unusable: {e}")
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "--redis-tls-ca {shown}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The same provider as the edge's TLS (aws-lc-rs, src/tls/mod.rs says
    // why), so one crypto library is in the binary.
    let provider = crate::tls::provider();
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS for Redis: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("roomcast-tls-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = client_config(Some(&missing)).unwrap_err();
        assert!(
            e.starts_with("--redis-tls-ca ") && e.contains("missing.pem"),
            "{e}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(client_config(Some(&junk)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        // The built-in roots need no file.
        assert!(client_config(None).is_ok());
    }
}
