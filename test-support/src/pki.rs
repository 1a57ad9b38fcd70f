//! Certificates for TLS tests, made with the `openssl` command: a CA, a
//! server certificate for 127.0.0.1 and `localhost`, and client
//! certificates; plus a second, unrelated CA for strangers. Keys are EC
//! P-256 in PKCS#8 PEM, which rustls and Bazel's Netty both read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use tempfile::TempDir;

/// A directory of certificates and keys, `NAME.pem` and `NAME.key`.
pub struct Pki {
    dir: TempDir,
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Pki {
    /// CAs `ca` and `other-ca`; `server` (for 127.0.0.1 and localhost) and
    /// `client` issued by `ca`; `stranger`, a client issued by `other-ca`.
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("a directory for certificates"),
        };
        pki.ca("ca");
        pki.ca("other-ca");
        pki.server("server", "ca");
        pki.client("client", "ca");
        pki.client("stranger", "other-ca");
        pki
    }

    /// `NAME.pem`.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pem"))
    }

    /// `NAME.key`.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.key"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A TLS channel to `addr` trusting the CA `ca`, presenting the
    /// certificate and key `identity` when given.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        ca: &str,
        identity: Option<&str>,
    ) -> Result<Channel, tonic::transport::Error> {
        let read = |path: PathBuf| std::fs::read(path).expect("a test certificate or key");
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(self.cert(ca))));
        if let Some(name) = identity {
            tls = tls.identity(Identity::from_pem(
                read(self.cert(name)),
                read(self.key(name)),
            ));
        }
        Endpoint::from_shared(format!("https://{addr}"))
            .expect("an https endpoint")
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
    }

    /// A self-signed CA `name`.
    pub fn ca(&self, name: &str) {
        openssl(
            self.dir(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "3",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }

    /// A server certificate `name` for 127.0.0.1 and localhost, issued by
    /// `ca`.
    pub fn server(&self, name: &str, ca: &str) {
        self.leaf(
            name,
            ca,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
    }

    /// A client certificate `name`, issued by `ca`.
    pub fn client(&self, name: &str, ca: &str) {
        self.leaf(
            name,
            ca,
            &format!("subjectAltName=DNS:{name}.test\nextendedKeyUsage=clientAuth\n"),
        );
    }

    fn leaf(&self, name: &str, ca: &str, extensions: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir().join(&ext),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"),
        )
        .unwrap();
        openssl(
            self.dir(),
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            self.dir(),
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "3",
                "-extfile",
                &ext,
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running openssl (install it: apt-get install openssl): {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
