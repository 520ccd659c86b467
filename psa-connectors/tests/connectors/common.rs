//! Shared test helpers.

#![allow(dead_code)]

use psa_connectors::RetryPolicy;

/// A retry policy with millisecond delays, so tests stay fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay_ms: 1,
        max_delay_ms: 5,
        max_retry_after_secs: 5,
    }
}

/// Text an attacker could place in a file name, user name or command line.
pub const HOSTILE: &str = "evil\" or 1=1 ]|\\\r\n<script>alert('x')</script> *_[link](http://x) <!channel> =%&+'[[]{{DATE(x)}} ü😀";

/// A self-signed `localhost` certificate: a TLS acceptor serving it, and its PEM written to a
/// unique temporary file for the client to trust (the test removes the file).
pub struct TestCa {
    /// Accepts TLS with the certificate.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The certificate as a PEM file.
    pub ca_path: std::path::PathBuf,
}

/// Generates a [`TestCa`].
pub fn test_ca() -> TestCa {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let ca_path = std::env::temp_dir().join(format!(
        "psa-connectors-test-ca-{}-{}.pem",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&ca_path, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    TestCa {
        acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        ca_path,
    }
}
