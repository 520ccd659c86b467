//! Shared test helpers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

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

/// Ends a test that needs an outside program which is missing: prints why and lets the test
/// pass, except under `CI=true`, where the program must be there.
pub fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason}; CI must run {test}: run scripts/setup-test-deps.sh");
    }
    eprintln!("skipping {test}: {reason} (scripts/setup-test-deps.sh installs it)");
}

/// A private CA and a server certificate for `localhost` signed by it: writes `ca.pem`,
/// `server.pem` and `server.key` into `dir` and returns the CA's path.
pub fn write_certificates(dir: &Path) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test syslog CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    dir.join("ca.pem")
}
