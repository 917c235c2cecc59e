//! TLS for the Prometheus endpoint, from a certificate chain and a private
//! key in PEM files (`export.prometheus_tls_cert`, `export.prometheus_tls_key`),
//! read once at start: a bad file fails before the probes load. rustls with
//! ring, as the OTLP and Kubernetes clients; TLS 1.2 and 1.3.

use std::{path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsFiles, describe_key};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing of its kind.
    #[error("{key}: cannot read {what} from {path}: {source}")]
    Pem {
        key: String,
        what: &'static str,
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{key}: {path} holds no PEM certificate")]
    NoCertificate { key: String, path: String },
    /// rustls refused the pair (a key that does not match the certificate, an unsupported key type).
    #[error("the certificate {cert} and key {key} cannot serve TLS: {source}")]
    Refused {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
}

/// An acceptor serving the certificate chain and key of `files`.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Pem {
        key: describe_key("export.prometheus_tls_key"),
        what: "a private key",
        path: files.key.display().to_string(),
        source,
    })?;
    let refused = |source| TlsError::Refused {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        source,
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(refused)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(refused)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let key = || describe_key("export.prometheus_tls_cert");
    let pem = |source| TlsError::Pem { key: key(), what: "certificates", path: path.display().to_string(), source };
    let chain = CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<Vec<_>, _>>().map_err(pem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { key: key(), path: path.display().to_string() });
    }
    Ok(chain)
}
