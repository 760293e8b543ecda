//! The rustls client configuration of a target with its own `tls:`
//! (SPEC §14): the system's roots plus the target's `ca`, and its client
//! certificate for mTLS.
//!
//! Built the way reqwest builds its own (rustls with `ring`, the platform
//! verifier, ALPN `h2` then `http/1.1`), so a target with `tls:` behaves
//! like any other apart from what it adds. The same configuration serves
//! reqwest (handed over preconfigured) and the CONNECT tunnel in
//! `send/tunnel.rs`, which does its own TLS after the tunnel is open.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::BuildError;
use crate::config::Tls;

/// The rustls configuration for `tls` (the system's roots alone when
/// `None`). Fails when the certificate and key do not belong together, or
/// a PEM block is unusable: the config loader checked that they parse.
pub fn client_config(tls: Option<&Tls>) -> Result<ClientConfig, BuildError> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let fail = |what: &str, e: &dyn std::fmt::Display| BuildError(format!("{what}: {e}"));
    let extra_roots = match tls.and_then(|t| t.ca.as_ref()) {
        Some(ca) => {
            certificates(ca.expose()).map_err(|e| fail(&format!("the CA in `{}`", ca.name), &e))?
        }
        None => Vec::new(),
    };
    let verifier = if extra_roots.is_empty() {
        rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, Arc::clone(&provider))
    }
    .map_err(|e| fail("the certificate verifier", &e))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("TLS versions", &e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match tls.and_then(|t| t.client.as_ref()) {
        Some((cert, key)) => {
            let chain = certificates(cert.expose())
                .map_err(|e| fail(&format!("the client certificate in `{}`", cert.name), &e))?;
            let key_der = PrivateKeyDer::from_pem_slice(key.expose()).map_err(|_| {
                BuildError(format!(
                    "the client key in `{}` is not a readable PEM private key",
                    key.name
                ))
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                BuildError(format!(
                    "the client certificate in `{}` and the key in `{}` do not go \
                     together: {e}",
                    cert.name, key.name
                ))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, rustls_pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(pem).collect()
}
