//! `--cluster_ca`, `--cluster_certificate`, `--cluster_key` (or
//! `[cluster_tls]` in the file; each flag wins over its key): how this
//! process connects to the cluster's others (schedulers, their peers,
//! workers' CAS ports). With a CA, over TLS verified against it; with a
//! certificate and key too, presenting them (mTLS), which a scheduler
//! serving `--tls_client_ca` requires of its workers.

use std::path::PathBuf;

use clap::Args;
use reapi_core::cluster::transport::ClusterTransport;
use serde::Deserialize;

use super::file::FileConfig;

#[derive(Args, Debug, Default)]
pub struct ClusterTlsFlags {
    /// Connect to the cluster's other processes over TLS, trusting this
    /// CA (PEM); their certificates must name the addresses they advertise.
    #[arg(long = "cluster_ca", value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,
    /// Present this certificate chain (PEM) to them; needs --cluster_key.
    #[arg(long = "cluster_certificate", value_name = "FILE")]
    pub cluster_certificate: Option<PathBuf>,
    /// The private key (PEM) of --cluster_certificate.
    #[arg(long = "cluster_key", value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
}

/// `[cluster_tls]` in the configuration file.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsSection {
    pub ca: Option<PathBuf>,
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClusterTlsFlags {
    /// The transport to install; plaintext without a CA. Its files are
    /// read now, so a wrong one stops the start.
    pub fn resolve(self, file: &FileConfig) -> Result<ClusterTransport, String> {
        let section = file.cluster_tls.clone().unwrap_or_default();
        let ca = self.cluster_ca.or(section.ca);
        let certificate = self.cluster_certificate.or(section.certificate);
        let key = self.cluster_key.or(section.key);
        let identity = match (&certificate, &key) {
            (Some(certificate), Some(key)) => Some((certificate.as_path(), key.as_path())),
            (None, None) => None,
            (Some(_), None) => return Err("--cluster_certificate needs --cluster_key".into()),
            (None, Some(_)) => return Err("--cluster_key needs --cluster_certificate".into()),
        };
        match ca {
            None if identity.is_some() => {
                Err("--cluster_certificate and --cluster_key need --cluster_ca".into())
            }
            None => Ok(ClusterTransport::default()),
            Some(ca) => {
                ClusterTransport::tls(&ca, identity).map_err(|e| format!("cluster TLS: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> ClusterTlsFlags {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            cluster: ClusterTlsFlags,
        }
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        <Wrapper as clap::Parser>::parse_from(all).cluster
    }

    #[test]
    fn plaintext_without_a_ca_and_identity_needs_both_halves_and_a_ca() {
        let none = flags(&[]).resolve(&FileConfig::default()).unwrap();
        assert!(!none.is_tls());
        for (args, expected) in [
            (
                &["--cluster_certificate", "c.pem"][..],
                "needs --cluster_key",
            ),
            (
                &["--cluster_key", "k.pem"][..],
                "needs --cluster_certificate",
            ),
            (
                &["--cluster_certificate", "c.pem", "--cluster_key", "k.pem"][..],
                "need --cluster_ca",
            ),
            (&["--cluster_ca", "/no/such/ca.pem"][..], "/no/such/ca.pem"),
        ] {
            let err = flags(args).resolve(&FileConfig::default()).unwrap_err();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_file_section_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let file: FileConfig = toml::from_str(&format!(
            "[cluster_tls]\nca = {:?}\n",
            ca.display().to_string()
        ))
        .unwrap();
        assert!(flags(&[]).resolve(&file).unwrap().is_tls());
    }
}
