//! One TLS configuration for all of the worker's HTTP clients. Building a reqwest client reads
//! and parses the platform's root certificates (the CA bundle and every file of the certificate
//! directory); a run builds up to four clients as it starts (events, messages, the model, the
//! phase context), so it read them up to four times, on the way to its first event and its first
//! model call. Here they are read once per process, by the first client: in standby mode that is
//! the standby's own, before any assignment comes.
//!
//! The configuration is what reqwest builds itself for its `rustls` feature: the aws-lc-rs
//! provider, TLS 1.2 and 1.3, the platform verifier, SNI, ALPN `h2` then `http/1.1`.

use std::sync::{Arc, OnceLock};

/// The shared configuration; `None` when it could not be built (each client then builds its
/// own, and reports what failed when it does).
static CONFIG: OnceLock<Option<rustls::ClientConfig>> = OnceLock::new();

/// A client builder that uses the shared TLS configuration.
pub fn client_builder() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    match CONFIG.get_or_init(build) {
        Some(config) => builder.tls_backend_preconfigured(config.clone()),
        None => builder,
    }
}

fn build() -> Option<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = match rustls_platform_verifier::Verifier::new(provider.clone()) {
        Ok(verifier) => verifier,
        Err(err) => {
            tracing::warn!(%err, "the platform's root certificates cannot be read");
            return None;
        }
    };
    let versions = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS);
    let mut config = match versions {
        Ok(builder) => builder,
        Err(err) => {
            tracing::warn!(%err, "the TLS provider refuses TLS 1.2 and 1.3");
            return None;
        }
    }
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(verifier))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_built_once_and_every_client_takes_it() {
        let first = client_builder().build();
        assert!(first.is_ok(), "{first:?}");
        let config = CONFIG.get().expect("built by the first client");
        let config = config
            .as_ref()
            .expect("the platform's roots are readable here");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(config.enable_sni);
        let again = client_builder()
            .connect_timeout(std::time::Duration::from_secs(1))
            .build();
        assert!(again.is_ok(), "{again:?}");
        assert!(std::ptr::eq(
            CONFIG.get().unwrap().as_ref().unwrap(),
            config
        ));
    }
}
