//! `[server.tls]`: certificates for the HTTP and gRPC listeners.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[server.tls]`: empty paths leave TLS off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first) served on both listeners.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    pub key: PathBuf,
    /// PEM CA certificate(s): when set, every client must present a
    /// certificate signed by one of them (mutual TLS).
    pub client_ca: PathBuf,
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }

    /// Adds every problem with the settings (not yet the files) to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        let (cert, key, ca) = (
            !self.cert.as_os_str().is_empty(),
            !self.key.as_os_str().is_empty(),
            !self.client_ca.as_os_str().is_empty(),
        );
        if cert != key {
            errors.push("server.tls: set both cert and key (or neither, for plain TCP)".into());
        }
        if ca && !cert {
            errors.push("server.tls.client_ca: needs server.tls.cert and server.tls.key".into());
        }
    }
}
