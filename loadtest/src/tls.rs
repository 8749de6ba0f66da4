//! `wss://`: the rustls client configuration the harness's connections share.
//!
//! One [`ClientConfig`] for the whole run (ring provider, TLS 1.2 and 1.3, ALPN
//! `http/1.1`), trusting either the CA certificates of `--ca PATH` (PEM) or, with
//! `--insecure`, any certificate: the chain is then not checked, but the handshake's
//! signatures still are (with the provider's own algorithms), so the TLS work the server
//! does is the real one. Session resumption is off: every connection of a connect storm
//! makes a full handshake, as thousands of distinct browsers would.
//!
//! The client offers what a browser offers, in a browser's order ([`browser_provider`]):
//! X25519 before the NIST curves and AES-128-GCM first. rustls servers follow the
//! client's order, and ring's own default puts P-384 first, which made every handshake
//! of a storm a P-384 exchange on both ends: about 1 ms of the harness's core each, so
//! the harness, not the server, set the rate, and it set a different rate for servers
//! that pick by their own preference (BoringSSL in Bun and uWebSockets.js picks X25519).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How `wss://` servers are trusted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsTrust {
    /// Accept any certificate (test servers with throwaway certificates).
    pub insecure: bool,
    /// PEM file of the CA certificates to trust.
    pub ca: Option<PathBuf>,
}

/// What a client needs to open TLS to one node.
#[derive(Clone, Debug)]
pub struct TlsTarget {
    pub config: Arc<ClientConfig>,
    /// SNI and the name the certificate is checked against: the URL's host.
    pub server_name: ServerName<'static>,
}

/// The run's client configuration for `trust`.
pub fn client_config(trust: &TlsTrust) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(browser_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?;
    let mut config = match (&trust.ca, trust.insecure) {
        (Some(path), _) => builder
            .with_root_certificates(roots(path)?)
            .with_no_client_auth(),
        (None, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        (None, false) => {
            return Err(
                "wss:// needs --ca PATH (the test CA's certificate, PEM) or --insecure \
                 (accept any certificate)"
                    .into(),
            )
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// ring (no C toolchain needed; rustls deprecates it for lacking post-quantum key
/// exchange, which a load test on loopback does not need) with a browser's preferences:
/// Chrome and Firefox list X25519 first among the classical groups and AES-128-GCM
/// first among the TLS 1.3 suites (the ML-KEM hybrid they list before X25519 is not in
/// ring).
#[allow(deprecated)]
fn browser_provider() -> CryptoProvider {
    use rustls::crypto::ring::{cipher_suite as cs, kx_group};
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..ring::default_provider()
    }
}

/// The certificates of a PEM file as trust anchors.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("--ca {}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("--ca {}: {e}", path.display()))?;
        store
            .add(cert)
            .map_err(|e| format!("--ca {}: {e}", path.display()))?;
    }
    if store.is_empty() {
        return Err(format!("--ca {}: no certificate in it", path.display()));
    }
    Ok(store)
}

/// The name for SNI and certificate checks: the URL's host without port or brackets
/// (an IP address is checked against the certificate's IP SANs, and sent as no SNI).
pub fn server_name(authority: &str) -> Result<ServerName<'static>, String> {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    ServerName::try_from(host.to_string()).map_err(|e| format!("bad TLS server name {host:?}: {e}"))
}

/// `--insecure`: any certificate chain passes; the handshake signatures are still
/// verified with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn the_client_prefers_what_a_browser_prefers() {
        let p = browser_provider();
        let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            groups,
            [
                rustls::NamedGroup::X25519,
                rustls::NamedGroup::secp256r1,
                rustls::NamedGroup::secp384r1
            ]
        );
        assert_eq!(
            p.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // Every suite ring offers by default is still offered.
        assert_eq!(
            p.cipher_suites.len(),
            ring::default_provider().cipher_suites.len()
        );
    }

    #[test]
    fn server_names_come_from_the_url_host() {
        assert_eq!(
            server_name("localhost:8443").unwrap(),
            ServerName::try_from("localhost").unwrap()
        );
        assert!(matches!(
            server_name("127.0.0.1:8443").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:8443").unwrap(),
            ServerName::IpAddress(_)
        ));
    }

    #[test]
    fn trust_must_be_named() {
        assert!(client_config(&TlsTrust::default()).is_err());
        let c = client_config(&TlsTrust {
            insecure: true,
            ca: None,
        })
        .unwrap();
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(client_config(&TlsTrust {
            insecure: false,
            ca: Some("/nonexistent.pem".into()),
        })
        .is_err());
    }
}
