//! TLS on a gRPC port: a certificate and key (PEM), optionally a CA whose
//! client certificates are asked for (mTLS, optional or required), all
//! reloaded without a restart when the files change or on SIGHUP, so a
//! certificate rotation (cert-manager, a cron'd ACME client) needs no
//! downtime. New connections get the new certificate; open ones keep
//! theirs.
//!
//! A reload that fails (a half-written file, a key that does not match)
//! keeps the previous configuration and logs why: a bad rotation must not
//! take the port down. At start, the same failure is an error.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reapi_core::{Error, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::reload::Reloadable;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the gRPC server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// The files a TLS port is configured from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM, leaf first.
    pub certificate: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) whose client certificates are accepted;
    /// `None`: clients are not asked for one.
    pub client_ca: Option<PathBuf>,
    /// With a `client_ca`: refuse clients without a certificate (else they
    /// may connect without one).
    pub client_certificate_required: bool,
}

/// A TLS configuration that can be reloaded while the port serves.
pub struct TlsSettings {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Loads `files`; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<TlsSettings>> {
        let config = server_config(&files)?;
        Ok(Arc::new(TlsSettings {
            files,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// Reloads on SIGHUP (when `on_sighup`) and whenever the files change
    /// (checked every `poll`), until the settings are dropped.
    pub fn watch(self: &Arc<Self>, poll: Duration, on_sighup: bool) -> Result<()> {
        super::reload::watch(self, poll, on_sighup)
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl Reloadable for TlsSettings {
    const WHAT: &'static str = "TLS";

    fn files(&self) -> Vec<PathBuf> {
        [
            Some(&self.files.certificate),
            Some(&self.files.key),
            self.files.client_ca.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// Loads the files again. On failure the previous configuration stays
    /// in use and the error is returned.
    fn reload(&self) -> Result<()> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }
}

fn bad_file(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid_argument(format!("{}: {what}: {e}", path.display()))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad_file(path, "reading certificates", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad_file(path, "reading certificates", e))?;
    if certs.is_empty() {
        return Err(bad_file(
            path,
            "reading certificates",
            "no PEM certificate in it",
        ));
    }
    Ok(certs)
}

/// The rustls configuration for `files`: TLS 1.2 and 1.3 with ring's safe
/// defaults, ALPN `h2` (gRPC clients such as Bazel's require it).
fn server_config(files: &TlsFiles) -> Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad_file(&files.key, "reading the private key", e))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS protocol versions: {e}")))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| bad_file(ca, "adding a client CA", e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.client_certificate_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| bad_file(ca, "using it as client CA", e))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad_file(&files.key, "pairing it with the certificate", e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Connections accepted on `listener` once their handshake succeeded, for
/// `serve_with_incoming`. Handshakes run concurrently, so a slow or silent
/// client holds up no one; the accept loop ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    settings: Arc<TlsSettings>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(ACCEPTED_BACKLOG);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = sender.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // See listener.rs: small responses must not wait for ACKs.
            let _ = tcp.set_nodelay(true);
            let acceptor = settings.acceptor();
            let sender = sender.clone();
            tokio::spawn(async move {
                if let Some(stream) = handshake(acceptor, tcp, peer).await {
                    let _ = sender.send(Ok(stream)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::info!(%peer, "TLS handshake refused: {e}");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake not finished in {HANDSHAKE_TIMEOUT:?}");
            None
        }
    }
}
