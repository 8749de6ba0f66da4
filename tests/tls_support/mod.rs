//! Shared TLS test and bench harness: a CA and server certificates made at
//! run time (rcgen; no key is ever committed), a rustls client with that CA,
//! and [`Pair`], which drives a client against a [`TlsConn`] in memory the
//! way the event loop will: ciphertext through one shared read buffer,
//! plaintext into one shared plaintext buffer.
#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SerialNumber};
use roomcast::tls::{self, ReadOutcome, TlsConn, TlsError};
use rustls::client::ClientConnection;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use std::io::{Read, Write};
use std::sync::Arc;

/// The size of the event loop's shared read buffer.
pub const READ_BUFFER: usize = 65_536;

/// The host name every test certificate is issued for.
pub const HOST: &str = "localhost";

/// A throwaway certificate authority.
pub struct Pki {
    pub ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// The server key algorithms the tests and the bench use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Rsa2048,
}

/// A server certificate signed by a [`Pki`], with its key.
pub struct ServerCert {
    pub der: CertificateDer<'static>,
    /// The chain as PEM: the server certificate, then the CA.
    pub chain_pem: String,
    /// The key as PKCS#8 PEM.
    pub key_pem: String,
    pub key_pkcs8: Vec<u8>,
    pub serial: u64,
}

impl Pki {
    pub fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own, so that a client trusting another test CA
        // finds no issuer (unknown_ca) rather than a bad signature.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("roomcast test CA {n}"));
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_der: ca.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for [`HOST`] with this serial number.
    pub fn issue(&self, kind: KeyKind, serial: u64) -> ServerCert {
        let key = match kind {
            KeyKind::EcdsaP256 => KeyPair::generate().unwrap(),
            KeyKind::Rsa2048 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
        };
        let mut params = CertificateParams::new(vec![HOST.to_string()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let ca_pem = pem_encode("CERTIFICATE", &self.ca_der);
        ServerCert {
            der: cert.der().clone(),
            chain_pem: format!("{}{}", cert.pem(), ca_pem),
            key_pem: key.serialize_pem(),
            key_pkcs8: key.serialized_der().to_vec(),
            serial,
        }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        roots
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// A server config for `cert`, built the way `CertFiles::load` builds it.
pub fn server_config(
    cert: &ServerCert,
    provider: impl Into<Arc<CryptoProvider>>,
) -> Arc<ServerConfig> {
    let identity =
        tls::Identity::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
    let provider = provider.into();
    let ticketer = tls::ticketer().unwrap();
    Arc::new(tls::config::server_config(identity, provider, ticketer).unwrap())
}

/// A client that trusts `pki`, speaks `versions`, and offers `alpn`.
pub fn client_config(
    pki: &Pki,
    provider: CryptoProvider,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(pki.roots())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The default client: TLS 1.3 and 1.2, ALPN `http/1.1`, aws-lc-rs (so
/// it offers X25519MLKEM768 first, as browsers do).
pub fn default_client(pki: &Pki) -> Arc<ClientConfig> {
    client_config(pki, aws_lc_provider(), rustls::ALL_VERSIONS, &[b"http/1.1"])
}

/// Makes a crypto provider.
pub type MakeProvider = fn() -> CryptoProvider;

/// The two providers compared.
pub const PROVIDERS: [(&str, MakeProvider); 2] =
    [("ring", ring_provider), ("aws-lc-rs", aws_lc_provider)];

/// rustls's aws-lc-rs provider (the relay's).
pub fn aws_lc_provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// rustls's *ring* provider, for comparisons (a dev-dependency feature:
/// the relay's binary does not contain it).
#[allow(deprecated)] // rustls 0.23.48 deprecates it for lacking post-quantum key exchange
pub fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A provider restricted to one cipher suite (and optionally one key
/// exchange group).
pub fn only_suite(
    mut provider: CryptoProvider,
    suite: rustls::CipherSuite,
    group: Option<rustls::NamedGroup>,
) -> CryptoProvider {
    provider.cipher_suites.retain(|s| s.suite() == suite);
    assert!(!provider.cipher_suites.is_empty(), "{suite:?} not offered");
    if let Some(group) = group {
        provider.kx_groups.retain(|g| g.name() == group);
        assert!(!provider.kx_groups.is_empty(), "{group:?} not offered");
    }
    provider
}

/// A rustls client and a [`TlsConn`], connected in memory.
pub struct Pair {
    pub server: TlsConn,
    pub client: ClientConnection,
    /// The loop's shared read buffer.
    pub read_buf: Vec<u8>,
    /// The loop's shared plaintext buffer: what the server decrypted.
    pub plaintext: Vec<u8>,
    /// Bytes the server produced and the client has not read yet.
    pub to_client: Vec<u8>,
    /// The loop's shared gather buffer for `encrypt`.
    pub gather: Vec<u8>,
    /// What the client decrypted and the test has not taken yet.
    pub client_got: Vec<u8>,
}

impl Pair {
    pub fn new(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Pair {
        Pair {
            server: TlsConn::new(server).unwrap(),
            client: ClientConnection::new(client, ServerName::try_from(HOST).unwrap()).unwrap(),
            read_buf: vec![0; READ_BUFFER],
            plaintext: Vec::new(),
            to_client: Vec::new(),
            gather: Vec::new(),
            client_got: Vec::new(),
        }
    }

    /// Everything the client wants to send.
    pub fn client_output(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut bytes).unwrap();
        }
        bytes
    }

    /// Feeds `bytes` to the server as the loop would: after the pending
    /// partial record, in pieces of at most `chunk` bytes per read.
    pub fn server_reads(&mut self, bytes: &[u8], chunk: usize) -> Result<ReadOutcome, TlsError> {
        let mut total = ReadOutcome::default();
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.server.restore_pending(&mut self.read_buf);
            let take = rest.len().min(chunk.max(1)).min(READ_BUFFER - n);
            let (piece, later) = rest.split_at(take);
            rest = later;
            self.read_buf[n..n + piece.len()].copy_from_slice(piece);
            let outcome = self.server.read(
                &mut self.read_buf[..n + piece.len()],
                &mut self.plaintext,
                &mut self.to_client,
            )?;
            total.handshake_done |= outcome.handshake_done;
            total.peer_closed |= outcome.peer_closed;
        }
        Ok(total)
    }

    /// Moves the client's output to the server.
    pub fn client_to_server(&mut self) -> Result<ReadOutcome, TlsError> {
        let bytes = self.client_output();
        self.server_reads(&bytes, 16_384)
    }

    /// Moves the server's output to the client and lets it process it.
    pub fn server_to_client(&mut self) -> Result<(), rustls::Error> {
        let bytes = std::mem::take(&mut self.to_client);
        let mut rd = &bytes[..];
        while !rd.is_empty() {
            self.client.read_tls(&mut rd).unwrap();
            self.client.process_new_packets()?;
            // Drain as we go: the client buffers at most 16 KiB.
            let mut buf = [0u8; 4096];
            loop {
                match self.client.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.client_got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("client read: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Runs the handshake to completion (a bounded number of flights).
    pub fn handshake(&mut self) -> Result<(), TlsError> {
        for _ in 0..10 {
            self.client_to_server()?;
            self.server_to_client().expect("client refused the server");
            if !self.client.is_handshaking() && !self.server.is_handshaking() {
                // The TLS 1.3 ticket, if any, reaches the client too.
                self.server_to_client().unwrap();
                return Ok(());
            }
        }
        panic!("handshake did not finish in 10 flights");
    }

    /// The client sends `data` (one record per 16 KiB).
    pub fn client_sends(&mut self, data: &[u8]) -> Result<ReadOutcome, TlsError> {
        self.client.writer().write_all(data).unwrap();
        self.client_to_server()
    }

    /// The server encrypts `frames`; returns the ciphertext produced.
    pub fn server_sends(&mut self, frames: &[&[u8]]) -> Vec<u8> {
        let start = self.to_client.len();
        self.server
            .encrypt(
                frames.iter().copied(),
                &mut self.gather,
                &mut self.to_client,
            )
            .unwrap();
        self.to_client[start..].to_vec()
    }

    /// Everything the client has decrypted so far.
    pub fn client_plaintext(&mut self) -> Vec<u8> {
        self.server_to_client().unwrap();
        std::mem::take(&mut self.client_got)
    }
}

/// Splits a byte stream into TLS records: (content type, record length).
pub fn records(stream: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.push((rest[0], len));
        rest = &rest[(5 + len).min(rest.len())..];
    }
    assert!(rest.is_empty(), "a partial record at the end");
    out
}

/// The private key of `cert` as a rustls key.
pub fn private_key(cert: &ServerCert) -> PrivateKeyDer<'static> {
    PrivateKeyDer::try_from(cert.key_pkcs8.clone()).unwrap()
}

/// PEM-encodes `der` under `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The key inside a PKCS#8 `PrivateKeyInfo` (RFC 5208): for RSA that is
/// the PKCS#1 `RSAPrivateKey`, for EC the SEC1 `ECPrivateKey`.
pub fn pkcs8_inner_key(pkcs8: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key, ... }
    let (_, body) = der_element(pkcs8, 0x30);
    let (rest, _) = der_element(body, 0x02);
    let (rest, _) = der_element(rest, 0x30);
    let (_, key) = der_element(rest, 0x04);
    key.to_vec()
}

/// Splits one DER element with tag `tag` off `input`: (rest, contents).
fn der_element(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input[0], tag, "unexpected DER tag");
    let (len, header) = match input[1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(input[2]), 3),
        0x82 => (usize::from(u16::from_be_bytes([input[2], input[3]])), 4),
        other => panic!("DER length form {other:#x}"),
    };
    (&input[header + len..], &input[header..header + len])
}
