//! The one TLS crypto provider of paybridge's outgoing connections: ring, through rustls.
//!
//! The AWS SDK client ([`crate::aws::sdk_defaults`]) and lettre (the `ring` feature) name ring
//! themselves; reqwest (`rustls-no-provider`) takes the process default, which
//! [`http_client_builder`] installs first. One provider keeps a second crypto library (aws-lc)
//! out of the Lambda binaries.

/// Installs ring as the process's default rustls crypto provider, once. If the process already
/// has a default provider, that one stays.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only when a default is already installed: reqwest then uses that one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `reqwest::Client::builder()` after [`install_crypto_provider`]: every reqwest client of
/// paybridge-core is built from this.
pub(crate) fn http_client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}
