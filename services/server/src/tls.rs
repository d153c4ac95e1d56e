//! TLS for the HTTP and gRPC listeners (`[server.tls]`), with rustls and the
//! `ring` provider: a server certificate chain and key (PEM), and optionally a
//! client CA, which makes a client certificate signed by it mandatory (mTLS).
//!
//! Both listeners share one acceptor design: a task accepts TCP connections
//! and runs each handshake in its own task (with a deadline), so a slow or
//! failed handshake never holds up the others; finished streams go to the
//! server through a channel ([`TlsListener`] for axum, [`TlsListener::into_incoming`]
//! for tonic).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

use crate::linger::Lingering;

pub use cairn_config::tls::TlsConfig;

/// Building rustls settings from `[server.tls]`.
pub trait TlsConfigExt {
    /// The rustls configuration for one listener, offering `alpn` (`h2`,
    /// `http/1.1`). Every problem with the files is reported together, naming
    /// the key and the path.
    fn server_config(&self, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ServerConfig>>;
}

impl TlsConfigExt for TlsConfig {
    fn server_config(&self, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut errors = Vec::new();
        let certs = read_certs("server.tls.cert", &self.cert)
            .map_err(|e| errors.push(e))
            .ok();
        let key = read_key(&self.key).map_err(|e| errors.push(e)).ok();
        let client_roots = if self.client_ca.as_os_str().is_empty() {
            None
        } else {
            read_certs("server.tls.client_ca", &self.client_ca)
                .and_then(|cas| {
                    let mut roots = rustls::RootCertStore::empty();
                    for ca in cas {
                        roots.add(ca).map_err(|e| {
                            format!(
                                "server.tls.client_ca: {} holds an unusable CA certificate: {e}",
                                self.client_ca.display()
                            )
                        })?;
                    }
                    Ok(roots)
                })
                .map_err(|e| errors.push(e))
                .ok()
        };
        if !errors.is_empty() {
            anyhow::bail!("invalid TLS configuration:\n  {}", errors.join("\n  "));
        }
        let (certs, key) = (certs.unwrap_or_default(), key.context("no key")?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match client_roots {
            Some(roots) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .context("server.tls.client_ca: cannot verify clients with these CAs")?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key).with_context(|| {
            format!(
                "server.tls: the key {} does not fit the certificate {}",
                self.key.display(),
                self.cert.display()
            )
        })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate in {}", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("server.tls.key: cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("server.tls.key: no usable PEM private key in {} ({e})", path.display()))
}

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS connections accepted on a TCP listener, handshakes done.
pub struct TlsListener {
    local: SocketAddr,
    rx: tokio::sync::mpsc::Receiver<(TlsStream<Lingering>, SocketAddr)>,
    /// Stops the accept task when the listener (or its stream) goes away.
    task: Option<AbortOnDrop>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = crate::linger::accept(&listener).await;
                let (acceptor, sender) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(Self {
            local,
            rx,
            task: Some(AbortOnDrop(task.abort_handle())),
        })
    }

    /// The connections as the stream tonic serves.
    pub fn into_incoming(
        mut self,
    ) -> impl futures::Stream<Item = Result<TlsStream<Lingering>, std::io::Error>> + Send + 'static {
        let rx = std::mem::replace(&mut self.rx, tokio::sync::mpsc::channel(1).1);
        let guard = self.task.take();
        futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            let (tls, _) = rx.recv().await?;
            Some((Ok(tls), (rx, guard)))
        })
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for crate::linger::Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        crate::linger::Peer(*stream.remote_addr())
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<Lingering>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // the accept task ended: nothing more will come
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_files_are_checked_with_clear_errors() {
        let mut errors = Vec::new();
        TlsConfig::default().validate(&mut errors);
        assert!(errors.is_empty());
        TlsConfig {
            cert: "c.pem".into(),
            ..Default::default()
        }
        .validate(&mut errors);
        TlsConfig {
            client_ca: "ca.pem".into(),
            ..Default::default()
        }
        .validate(&mut errors);
        // cert without key; client_ca without cert
        assert_eq!(errors.len(), 2, "{errors:?}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let e = TlsConfig {
            cert: dir.path().join("missing.pem"),
            key: junk.clone(),
            client_ca: junk.clone(),
        }
        .server_config(&[b"h2"])
        .unwrap_err()
        .to_string();
        assert!(e.contains("server.tls.cert: cannot read"), "{e}");
        assert!(e.contains("missing.pem"), "{e}");
        assert!(e.contains("server.tls.key: no usable PEM private key"), "{e}");
        assert!(e.contains("server.tls.client_ca: no PEM certificate"), "{e}");
    }
}
