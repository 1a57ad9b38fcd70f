//! `--tls_certificate`, `--tls_key`, `--tls_client_ca`, `--tls_client_auth`
//! (or `[tls]` in the file; each flag wins over its key): TLS on the client
//! port, and mTLS when a client CA is given (clients must present a
//! certificate it issued unless `--tls_client_auth optional`). The files
//! are reloaded when they change and on SIGHUP.

use std::path::PathBuf;

use clap::Args;
use reapi_cas::service::tls::TlsFiles;
use serde::Deserialize;

use super::file::FileConfig;

#[derive(Args, Debug, Default)]
pub struct TlsFlags {
    /// Serve TLS with this certificate chain (PEM, leaf first); needs
    /// --tls_key.
    #[arg(long = "tls_certificate", value_name = "FILE")]
    pub certificate: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long = "tls_key", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Ask clients for a certificate issued by one of these CAs (PEM).
    #[arg(long = "tls_client_ca", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// With --tls_client_ca: `required` (the default) refuses clients
    /// without a certificate; `optional` lets them in.
    #[arg(long = "tls_client_auth", value_name = "required|optional")]
    pub client_auth: Option<String>,
}

/// `[tls]` in the configuration file.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub client_auth: Option<String>,
}

impl TlsFlags {
    /// The TLS files to serve with; `None`: plaintext.
    pub fn resolve(self, file: &FileConfig) -> Result<Option<TlsFiles>, String> {
        let section = file.tls.clone().unwrap_or_default();
        let certificate = self.certificate.or(section.certificate);
        let key = self.key.or(section.key);
        let client_ca = self.client_ca.or(section.client_ca);
        let client_auth = self.client_auth.or(section.client_auth);
        let (certificate, key) = match (certificate, key) {
            (Some(certificate), Some(key)) => (certificate, key),
            (None, None) => {
                if client_ca.is_some() || client_auth.is_some() {
                    return Err(
                        "--tls_client_ca and --tls_client_auth need --tls_certificate and --tls_key"
                            .into(),
                    );
                }
                return Ok(None);
            }
            (Some(_), None) => return Err("--tls_certificate needs --tls_key".into()),
            (None, Some(_)) => return Err("--tls_key needs --tls_certificate".into()),
        };
        let client_certificate_required = match client_auth.as_deref() {
            None | Some("required") => true,
            Some("optional") => false,
            Some(other) => {
                return Err(format!(
                    "--tls_client_auth {other:?}: expected \"required\" or \"optional\""
                ))
            }
        };
        if client_ca.is_none() && client_auth.is_some() {
            return Err("--tls_client_auth needs --tls_client_ca".into());
        }
        Ok(Some(TlsFiles {
            certificate,
            key,
            client_ca,
            client_certificate_required,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> TlsFlags {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            tls: TlsFlags,
        }
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        <Wrapper as clap::Parser>::parse_from(all).tls
    }

    #[test]
    fn plaintext_unless_a_certificate_and_key_are_given() {
        let none = flags(&[]).resolve(&FileConfig::default()).unwrap();
        assert_eq!(none, None);
        let tls = flags(&["--tls_certificate", "c.pem", "--tls_key", "k.pem"])
            .resolve(&FileConfig::default())
            .unwrap()
            .unwrap();
        assert_eq!(tls.certificate, PathBuf::from("c.pem"));
        assert_eq!(tls.client_ca, None);
    }

    #[test]
    fn client_certificates_are_required_unless_optional() {
        let base = ["--tls_certificate", "c.pem", "--tls_key", "k.pem"];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            flags(&args).resolve(&FileConfig::default())
        };
        let required = with(&["--tls_client_ca", "ca.pem"]).unwrap().unwrap();
        assert!(required.client_certificate_required);
        let optional = with(&["--tls_client_ca", "ca.pem", "--tls_client_auth", "optional"])
            .unwrap()
            .unwrap();
        assert!(!optional.client_certificate_required);
        let err = with(&["--tls_client_ca", "ca.pem", "--tls_client_auth", "maybe"]).unwrap_err();
        assert!(err.contains("maybe"), "{err}");
        let err = with(&["--tls_client_auth", "optional"]).unwrap_err();
        assert!(err.contains("--tls_client_ca"), "{err}");
    }

    #[test]
    fn half_configurations_are_refused() {
        let err = flags(&["--tls_certificate", "c.pem"])
            .resolve(&FileConfig::default())
            .unwrap_err();
        assert!(err.contains("--tls_key"), "{err}");
        let err = flags(&["--tls_client_ca", "ca.pem"])
            .resolve(&FileConfig::default())
            .unwrap_err();
        assert!(err.contains("--tls_certificate"), "{err}");
    }

    #[test]
    fn the_file_section_is_read() {
        let file: FileConfig = toml::from_str(
            "[tls]\ncertificate = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap();
        let tls = flags(&[]).resolve(&file).unwrap().unwrap();
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        assert!(tls.client_certificate_required);
    }
}
