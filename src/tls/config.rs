//! The relay's TLS identity: `--tls-cert` and `--tls-key` read into one
//! shared `Arc<rustls::ServerConfig>`, at start and again on SIGHUP.
//!
//! Invariants:
//! - A [`ServerConfig`] from [`CertFiles::load`] always holds a chain whose
//!   first certificate matches the private key (checked by comparing the
//!   key's public half with the certificate's), offers TLS 1.2 and 1.3 and
//!   ALPN `http/1.1` only, and resumes sessions with stateless tickets.
//! - A failed load returns a [`LoadError`] naming the file and what was
//!   wrong with it; it never touches a config already handed out. On SIGHUP
//!   the loop keeps the old `Arc` on error, so open connections (which hold
//!   their own `Arc`) and new handshakes carry on with the old certificate.
//! - Every config from one [`CertFiles`] shares one ticket key ring, so
//!   tickets issued before a reload still resume after it.
//! - Files are read whole, and a file over [`MAX_PEM_FILE`] is refused
//!   before it is parsed.
//!
//! Why tickets and no session cache: a stateful cache costs memory per
//! cached session on the relay (measured in `tests/tls_memory.rs`), and a
//! cache big enough to help 20,000 reconnecting clients costs more than the
//! connections themselves; a ticket costs the relay nothing after it is
//! sent (the client stores it), one AEAD seal per ticket per handshake, and
//! the key ring (a few hundred bytes, once). TLS 1.2 clients without ticket
//! support do full handshakes.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ProducesTickets};
use rustls::ServerConfig;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The PEM files of the relay's certificate chain and private key, and what
/// every config built from them shares.
#[derive(Clone)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    /// Kept across reloads so that tickets issued under the old
    /// certificate still resume (a ticket does not depend on it).
    ticketer: Arc<dyn ProducesTickets>,
}

/// A certificate chain and its private key, parsed from PEM but not yet
/// checked against each other.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Why the certificate or key could not be used, in words for the log.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is larger than any certificate chain or key.
    TooLarge { path: PathBuf },
    /// The file is not well-formed PEM.
    Pem { path: PathBuf, detail: String },
    /// `--tls-cert` holds no `CERTIFICATE` block.
    NoCertificate { path: PathBuf, holds_key: bool },
    /// `--tls-key` holds no usable private key block.
    NoKey {
        path: PathBuf,
        encrypted: bool,
        holds_certificate: bool,
    },
    /// The key parsed but the crypto provider cannot sign with it (an
    /// unsupported algorithm, or an RSA key under 2048 bits).
    UnsupportedKey { path: PathBuf, detail: String },
    /// The first certificate of the chain does not parse as X.509.
    BadCertificate { path: PathBuf, detail: String },
    /// The key's public half is not the first certificate's.
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// rustls refused the configuration for another reason.
    Rustls(rustls::Error),
}

/// The largest certificate chain or key file read: chains are a few KiB.
pub const MAX_PEM_FILE: u64 = 1_048_576;

/// The only application protocol: WebSocket upgrades and the pages ride on
/// HTTP/1.1 (RFC 6455 has no HTTP/2 bootstrap here).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

impl CertFiles {
    /// The files given by `--tls-cert` and `--tls-key`, with the relay's
    /// crypto provider. Nothing is read yet.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<CertFiles, LoadError> {
        CertFiles::with_provider(cert, key, super::provider())
    }

    /// Like [`CertFiles::new`] with another crypto provider (benchmarks).
    pub fn with_provider(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        provider: Arc<CryptoProvider>,
    ) -> Result<CertFiles, LoadError> {
        let ticketer = super::ticketer().map_err(LoadError::Rustls)?;
        Ok(CertFiles {
            cert: cert.into(),
            key: key.into(),
            provider,
            ticketer,
        })
    }

    /// Reads both files and builds a config: at start, and on each SIGHUP.
    /// On error the caller keeps the config it has.
    pub fn load(&self) -> Result<Arc<ServerConfig>, LoadError> {
        let identity = Identity::read(&self.cert, &self.key)?;
        let config = server_config(identity, self.provider.clone(), self.ticketer.clone())
            .map_err(|e| e.locate(&self.cert, &self.key))?;
        Ok(Arc::new(config))
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    pub fn key_path(&self) -> &Path {
        &self.key
    }
}

impl fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads and parses both PEM files.
    pub fn read(cert: &Path, key: &Path) -> Result<Identity, LoadError> {
        let cert_pem = read_pem_file(cert)?;
        let key_pem = read_pem_file(key)?;
        Ok(Identity {
            chain: parse_chain(cert, &cert_pem)?,
            key: parse_key(key, &key_pem)?,
        })
    }

    /// Parses PEM text already in memory (errors name the files
    /// `certificate` and `key`).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Identity, LoadError> {
        Ok(Identity {
            chain: parse_chain(Path::new("certificate"), cert_pem)?,
            key: parse_key(Path::new("key"), key_pem)?,
        })
    }
}

/// Builds the relay's server config from an identity: TLS 1.2 and 1.3,
/// ALPN `http/1.1`, stateless tickets from `ticketer` and no session cache.
/// Errors name no file: [`CertFiles::load`] adds them.
pub fn server_config(
    identity: Identity,
    provider: Arc<CryptoProvider>,
    ticketer: Arc<dyn ProducesTickets>,
) -> Result<ServerConfig, LoadError> {
    let unlocated = Path::new("");
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(LoadError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| key_error(unlocated, unlocated, e))?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.ticketer = ticketer;
    // One ticket per full handshake: a browser resumes one connection per
    // reconnect, and each ticket costs a seal and about 200 bytes sent.
    config.send_tls13_tickets = 1;
    Ok(config)
}

impl LoadError {
    /// Fills in the file names of an error from [`server_config`].
    fn locate(self, cert: &Path, key: &Path) -> LoadError {
        match self {
            LoadError::UnsupportedKey { detail, .. } => LoadError::UnsupportedKey {
                path: key.into(),
                detail,
            },
            LoadError::BadCertificate { detail, .. } => LoadError::BadCertificate {
                path: cert.into(),
                detail,
            },
            LoadError::KeyMismatch { .. } => LoadError::KeyMismatch {
                cert: cert.into(),
                key: key.into(),
            },
            other => other,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            LoadError::TooLarge { path } => write!(
                f,
                "{} is larger than {MAX_PEM_FILE} bytes, so it is not a PEM certificate chain or key",
                path.display()
            ),
            LoadError::Pem { path, detail } => {
                write!(f, "{} is not valid PEM: {detail}", path.display())
            }
            LoadError::NoCertificate { path, holds_key } => {
                write!(
                    f,
                    "{} holds no certificate (no -----BEGIN CERTIFICATE----- block)",
                    path.display()
                )?;
                if *holds_key {
                    f.write_str("; it holds a private key: are --tls-cert and --tls-key swapped?")?;
                }
                Ok(())
            }
            LoadError::NoKey {
                path,
                encrypted,
                holds_certificate,
            } => {
                write!(f, "{} holds no private key", path.display())?;
                if *encrypted {
                    f.write_str(
                        "; it holds an encrypted key, which roomcast cannot use: decrypt it with `openssl pkey -in KEY -out KEY.plain`",
                    )
                } else if *holds_certificate {
                    f.write_str("; it holds a certificate: are --tls-cert and --tls-key swapped?")
                } else {
                    f.write_str(
                        " (expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)",
                    )
                }
            }
            LoadError::UnsupportedKey { path, detail } => write!(
                f,
                "the key in {} cannot be used ({detail}): use an ECDSA P-256/P-384, Ed25519 or RSA (2048 bits or more) key",
                path.display()
            ),
            LoadError::BadCertificate { path, detail } => write!(
                f,
                "the first certificate in {} is not a valid X.509 certificate ({detail})",
                path.display()
            ),
            LoadError::KeyMismatch { cert, key } => write!(
                f,
                "the key in {} does not match the first certificate in {} (the chain must start with the server's own certificate)",
                key.display(),
                cert.display()
            ),
            LoadError::Rustls(e) => write!(f, "TLS configuration refused: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    let read_error = |error| LoadError::Read {
        path: path.into(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_PEM_FILE {
        return Err(LoadError::TooLarge { path: path.into() });
    }
    Ok(text)
}

fn parse_chain(path: &Path, text: &[u8]) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let mut chain = Vec::new();
    let mut holds_key = false;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(text) {
        match section.map_err(|e| pem_error(path, e))? {
            (SectionKind::Certificate, der) => chain.push(CertificateDer::from(der)),
            (
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey,
                _,
            ) => holds_key = true,
            _ => {}
        }
    }
    if chain.is_empty() {
        return Err(LoadError::NoCertificate {
            path: path.into(),
            holds_key: holds_key || contains(text, b"PRIVATE KEY-----"),
        });
    }
    Ok(chain)
}

fn parse_key(path: &Path, text: &[u8]) -> Result<PrivateKeyDer<'static>, LoadError> {
    match PrivateKeyDer::from_pem_slice(text) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(LoadError::NoKey {
            path: path.into(),
            encrypted: contains(text, b"ENCRYPTED PRIVATE KEY")
                || contains(text, b"Proc-Type: 4,ENCRYPTED"),
            holds_certificate: contains(text, b"BEGIN CERTIFICATE"),
        }),
        Err(e) => Err(pem_error(path, e)),
    }
}

/// Maps rustls's verdict on a chain and key to the file at fault.
fn key_error(cert: &Path, key: &Path, e: rustls::Error) -> LoadError {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            LoadError::KeyMismatch {
                cert: cert.into(),
                key: key.into(),
            }
        }
        rustls::Error::InvalidCertificate(c) => LoadError::BadCertificate {
            path: cert.into(),
            detail: format!("{c:?}"),
        },
        rustls::Error::General(detail) => LoadError::UnsupportedKey {
            path: key.into(),
            detail,
        },
        other => LoadError::Rustls(other),
    }
}

fn pem_error(path: &Path, e: pem::Error) -> LoadError {
    let detail = match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("no {} line", String::from_utf8_lossy(&end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("bad BEGIN line '{}'", String::from_utf8_lossy(&line))
        }
        pem::Error::Base64Decode(d) => format!("bad base64 ({d})"),
        other => other.to_string(),
    };
    LoadError::Pem {
        path: path.into(),
        detail,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
