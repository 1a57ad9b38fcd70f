//! How this process reaches the cluster's other processes: workers their
//! schedulers, schedulers their peers, everyone the workers' CAS ports.
//! Plaintext by default; with the cluster's CA, TLS that verifies every
//! peer's certificate against it (the certificate must name the address the
//! peer advertises, as an IP or DNS subjectAltName), and, with this
//! process's own certificate, mutual TLS, so that a scheduler can tell its
//! workers from strangers.
//!
//! Process-wide: a binary installs it once from its flags, before anything
//! connects; every cluster connection ([`endpoint`]) uses it (ADR 0013).

use std::path::Path;
use std::sync::OnceLock;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{Error, Result};

static INSTALLED: OnceLock<ClusterTransport> = OnceLock::new();

/// Plaintext, or TLS with a CA and optionally a client identity.
#[derive(Clone, Debug, Default)]
pub struct ClusterTransport {
    tls: Option<ClientTlsConfig>,
}

impl ClusterTransport {
    /// TLS trusting the CA certificates in `ca` (PEM), presenting the
    /// certificate chain and key in `identity` (PEM) when given. An error
    /// names the file that cannot be used.
    pub fn tls(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClusterTransport> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_pem(ca, "CERTIFICATE")?));
        if let Some((certificate, key)) = identity {
            tls = tls.identity(Identity::from_pem(
                read_pem(certificate, "CERTIFICATE")?,
                read_pem(key, "PRIVATE KEY")?,
            ));
        }
        Ok(ClusterTransport { tls: Some(tls) })
    }

    /// Makes `self` the transport of every cluster connection this process
    /// opens from now on. Once only: a second call is refused, since
    /// connections already open would keep the first.
    pub fn install(self) -> Result<()> {
        INSTALLED
            .set(self)
            .map_err(|_| Error::failed_precondition("the cluster transport is already installed"))
    }

    /// The installed transport; plaintext when none was.
    pub fn current() -> &'static ClusterTransport {
        INSTALLED.get_or_init(ClusterTransport::default)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// An endpoint for the cluster process at `address` (`host:port`).
    pub fn endpoint(&self, address: &str) -> Result<Endpoint> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| Error::invalid_argument(format!("cluster address {address:?}: {e}")))?;
        match &self.tls {
            None => Ok(endpoint),
            Some(tls) => endpoint
                .tls_config(tls.clone())
                .map_err(|e| Error::invalid_argument(format!("TLS to {address}: {e}"))),
        }
    }
}

/// An endpoint for the cluster process at `address`, with the installed
/// transport.
pub fn endpoint(address: &str) -> Result<Endpoint> {
    ClusterTransport::current().endpoint(address)
}

/// The file at `path`, which must hold a PEM block of `kind` (a suffix of
/// the BEGIN line's label, e.g. "PRIVATE KEY" also matches "EC PRIVATE
/// KEY"); checked here so that a wrong file stops the start rather than
/// failing every connection later.
fn read_pem(path: &Path, kind: &str) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let text = String::from_utf8_lossy(&bytes);
    let has_block = text.lines().any(|line| {
        line.strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|label| label.ends_with(kind))
    });
    if !has_block {
        return Err(Error::invalid_argument(format!(
            "{}: no PEM {kind} in it",
            path.display()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_unless_tls_is_configured() {
        let plain = ClusterTransport::default();
        assert!(!plain.is_tls());
        assert_eq!(
            plain.endpoint("10.0.0.7:8980").unwrap().uri().to_string(),
            "http://10.0.0.7:8980/"
        );
        assert!(plain.endpoint("not an address").is_err());
    }

    #[test]
    fn tls_uses_https_and_checks_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let tls = ClusterTransport::tls(&ca, None).unwrap();
        assert!(tls.is_tls());
        assert_eq!(
            tls.endpoint("worker-3.build:8981")
                .unwrap()
                .uri()
                .to_string(),
            "https://worker-3.build:8981/"
        );
        let err = ClusterTransport::tls(&ca, Some((&ca, &ca))).unwrap_err();
        assert!(err.message().contains("no PEM PRIVATE KEY"), "{err}");
        let err = ClusterTransport::tls(&dir.path().join("missing.pem"), None).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
