//! TLS on a gRPC port (`service::tls`, `listener::serve_tls`): only clients
//! that trust the server's CA get in; with a client CA, only clients with
//! a certificate it issued (or, when optional, also those without one);
//! certificates rotate without a restart, and a broken rotation keeps the
//! previous ones. Real TLS over loopback, certificates from `openssl`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reapi_cas::service::listener;
use reapi_cas::service::reload::Reloadable;
use reapi_cas::service::tls::{TlsFiles, TlsSettings};
use reapi_core::proto::remote_execution::FindMissingBlobsRequest;
use reapi_core::InstancePolicy;
use reapi_test_support::clients::cas;
use reapi_test_support::pki::Pki;
use reapi_test_support::server::storage::memory_services;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

fn files(pki: &Pki, client_ca: Option<&str>, required: bool) -> TlsFiles {
    TlsFiles {
        certificate: pki.cert("server"),
        key: pki.key("server"),
        client_ca: client_ca.map(|ca| pki.cert(ca)),
        client_certificate_required: required,
    }
}

/// Storage services over memory, served with `files` on a fresh port.
async fn serve(files: TlsFiles) -> (SocketAddr, Arc<TlsSettings>) {
    let settings = TlsSettings::load(files).expect("loading the TLS files");
    let listener = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut routes = tonic::service::RoutesBuilder::default();
    memory_services(1 << 20, InstancePolicy::Any).add_to(&mut routes);
    let serving = Arc::clone(&settings);
    tokio::spawn(async move {
        listener::serve_tls(listener, routes.routes(), std::future::pending(), serving)
            .await
            .expect("serving");
    });
    (addr, settings)
}

async fn connect(
    pki: &Pki,
    addr: SocketAddr,
    ca: &str,
    identity: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    pki.connect(addr, ca, identity).await
}

/// Whether a FindMissingBlobs call through a new connection succeeds.
async fn gets_in(pki: &Pki, addr: SocketAddr, ca: &str, identity: Option<&str>) -> bool {
    let Ok(channel) = connect(pki, addr, ca, identity).await else {
        return false;
    };
    answers(&channel).await
}

async fn answers(channel: &Channel) -> bool {
    cas(channel)
        .find_missing_blobs(FindMissingBlobsRequest::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn only_clients_trusting_the_servers_ca_get_in() {
    let pki = Pki::new();
    let (addr, _settings) = serve(files(&pki, None, false)).await;
    assert!(gets_in(&pki, addr, "ca", None).await);
    assert!(!gets_in(&pki, addr, "other-ca", None).await);
    let plaintext = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(channel) => {
            let err = cas(&channel)
                .find_missing_blobs(FindMissingBlobsRequest::default())
                .await
                .unwrap_err();
            err.code() != Code::Ok
        }
    };
    assert!(refused, "a plaintext client got an answer");
}

#[tokio::test]
async fn required_client_certificates_keep_out_everyone_else() {
    let pki = Pki::new();
    let (addr, _settings) = serve(files(&pki, Some("ca"), true)).await;
    assert!(gets_in(&pki, addr, "ca", Some("client")).await);
    assert!(!gets_in(&pki, addr, "ca", None).await, "no certificate");
    assert!(
        !gets_in(&pki, addr, "ca", Some("stranger")).await,
        "a certificate from another CA"
    );
}

#[tokio::test]
async fn optional_client_certificates_still_refuse_a_strangers() {
    let pki = Pki::new();
    let (addr, _settings) = serve(files(&pki, Some("ca"), false)).await;
    assert!(gets_in(&pki, addr, "ca", Some("client")).await);
    assert!(gets_in(&pki, addr, "ca", None).await);
    assert!(!gets_in(&pki, addr, "ca", Some("stranger")).await);
}

#[tokio::test]
async fn a_rotated_certificate_is_used_without_a_restart_and_a_broken_one_is_not() {
    let pki = Pki::new();
    let (addr, settings) = serve(files(&pki, None, false)).await;
    settings.watch(Duration::from_millis(50), false).unwrap();
    let before = connect(&pki, addr, "ca", None).await.unwrap();
    assert!(answers(&before).await);

    // A broken rotation: the old certificate goes on serving.
    std::fs::write(pki.cert("server"), "not a certificate").unwrap();
    let err = settings.reload().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("server.pem"), "{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(gets_in(&pki, addr, "ca", None).await);

    // The files now hold a certificate from another CA: new connections
    // get it, the open one keeps working.
    pki.server("rotated", "other-ca");
    std::fs::copy(pki.key("rotated"), pki.key("server")).unwrap();
    std::fs::copy(pki.cert("rotated"), pki.cert("server")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !gets_in(&pki, addr, "other-ca", None).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!gets_in(&pki, addr, "ca", None).await);
    assert!(answers(&before).await, "an open connection was dropped");
}

#[tokio::test]
async fn unusable_files_are_refused_at_start_naming_them() {
    let pki = Pki::new();
    let mut missing = files(&pki, None, false);
    missing.key = pki.dir().join("absent.key");
    let err = TlsSettings::load(missing).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("absent.key"), "{err}");

    let mut mismatched = files(&pki, None, false);
    mismatched.key = pki.key("client");
    let err = TlsSettings::load(mismatched).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    let mut not_a_ca = files(&pki, None, false);
    std::fs::write(pki.dir().join("empty.pem"), "").unwrap();
    not_a_ca.client_ca = Some(pki.dir().join("empty.pem"));
    let err = TlsSettings::load(not_a_ca).unwrap_err();
    assert!(err.to_string().contains("empty.pem"), "{err}");
}
