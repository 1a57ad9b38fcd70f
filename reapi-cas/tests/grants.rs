//! Grants on a gRPC port (`service::auth`, `listener::serve_behind`): bearer
//! tokens and client certificates get exactly the permissions their grants
//! give, on the instances named; everything else is UNAUTHENTICATED or
//! PERMISSION_DENIED, tells nothing about the instance, and changes nothing.
//! The grants file reloads without a restart. Real gRPC over loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reapi_cas::service::auth::Authorizer;
use reapi_cas::service::listener::{self, Front};
use reapi_cas::service::tls::{TlsFiles, TlsSettings};
use reapi_core::proto::bytestream as bsp;
use reapi_core::proto::remote_execution as re;
use reapi_core::InstancePolicy;
use reapi_test_support::bytestream::{read_name, write_msgs, write_name};
use reapi_test_support::cas::update_request;
use reapi_test_support::clients::{ac, bs, caps, cas, connect};
use reapi_test_support::digests::dig as digest_of;
use reapi_test_support::pki::Pki;
use reapi_test_support::server::storage::memory_services;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const GRANTS: &str = r#"
[[grant]]
name = "writer"
token = "writer-token"
instances = ["a"]
permissions = ["read", "write"]

[[grant]]
name = "reader"
token = "reader-token"
instances = ["a"]
permissions = ["read"]

[[grant]]
name = "certified"
client_certificate = "client.test"
instances = ["*"]
permissions = ["read"]
"#;

/// Memory storage services behind `front` on a fresh port.
async fn serve(front: Front) -> SocketAddr {
    let listener = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut routes = tonic::service::RoutesBuilder::default();
    memory_services(8 << 20, InstancePolicy::Any).add_to(&mut routes);
    tokio::spawn(async move {
        listener::serve_behind(listener, routes.routes(), std::future::pending(), front)
            .await
            .expect("serving");
    });
    addr
}

fn grants_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("grants.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn serve_with_grants(path: &Path) -> (SocketAddr, Arc<Authorizer>) {
    let authorizer = Authorizer::load(path).expect("loading the grants");
    let front = Front {
        tls: None,
        grants: Some(Arc::clone(&authorizer)),
    };
    (serve(front).await, authorizer)
}

/// `message` with `authorization: Bearer TOKEN` when a token is given.
fn as_holder<T>(token: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn find_missing(instance: &str, digests: &[re::Digest]) -> re::FindMissingBlobsRequest {
    re::FindMissingBlobsRequest {
        instance_name: instance.into(),
        blob_digests: digests.to_vec(),
        ..Default::default()
    }
}

async fn missing(
    channel: &Channel,
    token: Option<&str>,
    instance: &str,
    digests: &[re::Digest],
) -> Result<Vec<re::Digest>, Status> {
    cas(channel)
        .find_missing_blobs(as_holder(token, find_missing(instance, digests)))
        .await
        .map(|r| r.into_inner().missing_blob_digests)
}

async fn batch_upload(
    channel: &Channel,
    token: Option<&str>,
    instance: &str,
    blob: &[u8],
) -> Result<(), Status> {
    let response = cas(channel)
        .batch_update_blobs(as_holder(token, update_request(instance, &[blob])))
        .await?
        .into_inner();
    for entry in response.responses {
        let status = entry.status.unwrap_or_default();
        assert_eq!(status.code, 0, "{}", status.message);
    }
    Ok(())
}

async fn stream_upload(
    channel: &Channel,
    token: Option<&str>,
    instance: &str,
    blob: &[u8],
) -> Result<i64, Status> {
    let name = write_name(instance, &digest_of(blob));
    let messages = write_msgs(&name, blob, 0, 1024, true);
    bs(channel)
        .write(as_holder(token, futures::stream::iter(messages)))
        .await
        .map(|r| r.into_inner().committed_size)
}

async fn stream_read(
    channel: &Channel,
    token: Option<&str>,
    instance: &str,
    digest: &re::Digest,
) -> Result<Vec<u8>, Status> {
    let request = bsp::ReadRequest {
        resource_name: read_name(instance, digest),
        ..Default::default()
    };
    let mut stream = bs(channel)
        .read(as_holder(token, request))
        .await?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.message().await? {
        data.extend_from_slice(&chunk.data);
    }
    Ok(data)
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, what: &str) -> Status {
    let status = result.expect_err(what);
    assert_eq!(status.code(), code, "{what}: {}", status.message());
    status
}

#[tokio::test]
async fn tokens_get_their_permissions_on_their_instances_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _authorizer) = serve_with_grants(&grants_file(dir.path(), GRANTS)).await;
    let channel = connect(addr).await;
    let writer = Some("writer-token");
    let reader = Some("reader-token");
    let blob = b"granted bytes".as_slice();
    let digest = digest_of(blob);
    let streamed = b"streamed bytes, a few of them".repeat(100);
    let streamed_digest = digest_of(&streamed);

    // The writer writes, by batch and by stream, and reads back.
    batch_upload(&channel, writer, "a", blob).await.unwrap();
    assert_eq!(
        stream_upload(&channel, writer, "a", &streamed)
            .await
            .unwrap(),
        streamed.len() as i64
    );
    assert_eq!(
        stream_read(&channel, writer, "a", &streamed_digest)
            .await
            .unwrap(),
        streamed
    );

    // The reader reads, but may not write; what it tried left nothing.
    assert!(
        missing(&channel, reader, "a", std::slice::from_ref(&digest))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        stream_read(&channel, reader, "a", &digest).await.unwrap(),
        blob
    );
    let other = b"a reader's attempt".as_slice();
    let status = assert_code(
        batch_upload(&channel, reader, "a", other).await,
        Code::PermissionDenied,
        "a reader's batch upload",
    );
    assert!(status.message().contains("write"), "{}", status.message());
    assert_code(
        stream_upload(&channel, reader, "a", other).await,
        Code::PermissionDenied,
        "a reader's streamed upload",
    );
    assert_eq!(
        missing(&channel, writer, "a", &[digest_of(other)])
            .await
            .unwrap(),
        vec![digest_of(other)],
        "a refused upload stored its blob"
    );
    let result_request = re::UpdateActionResultRequest {
        instance_name: "a".into(),
        action_digest: Some(digest.clone()),
        action_result: Some(re::ActionResult::default()),
        ..Default::default()
    };
    assert_code(
        ac(&channel)
            .update_action_result(as_holder(reader, result_request))
            .await,
        Code::PermissionDenied,
        "a reader's UpdateActionResult",
    );

    // Another instance: refused alike whether it holds the blob or not.
    batch_upload(&channel, None, "b", blob)
        .await
        .expect_err("anonymous upload");
    for instance in ["b", "never-used"] {
        let find = assert_code(
            missing(&channel, writer, instance, std::slice::from_ref(&digest)).await,
            Code::PermissionDenied,
            "FindMissingBlobs on another instance",
        );
        let read = assert_code(
            stream_read(&channel, writer, instance, &digest).await,
            Code::PermissionDenied,
            "Read on another instance",
        );
        assert_eq!(
            find.message(),
            format!("these credentials may not read instance \"{instance}\"")
        );
        assert_eq!(read.message(), find.message());
    }
    let capabilities = |instance: &str, token| {
        let channel = channel.clone();
        let request = re::GetCapabilitiesRequest {
            instance_name: instance.to_owned(),
        };
        async move {
            caps(&channel)
                .get_capabilities(as_holder(token, request))
                .await
        }
    };
    capabilities("a", reader).await.unwrap();
    assert_code(
        capabilities("b", reader).await,
        Code::PermissionDenied,
        "capabilities of another instance",
    );
}

#[tokio::test]
async fn missing_unknown_and_malformed_credentials_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _authorizer) = serve_with_grants(&grants_file(dir.path(), GRANTS)).await;
    let channel = connect(addr).await;
    let digest = digest_of(b"x");
    let status = assert_code(
        missing(&channel, None, "a", std::slice::from_ref(&digest)).await,
        Code::Unauthenticated,
        "no credentials",
    );
    assert!(
        status.message().contains("bearer token"),
        "{}",
        status.message()
    );
    assert_code(
        missing(
            &channel,
            Some("guessed-token"),
            "a",
            std::slice::from_ref(&digest),
        )
        .await,
        Code::Unauthenticated,
        "an unknown token",
    );
    let mut basic = Request::new(find_missing("a", &[]));
    basic
        .metadata_mut()
        .insert("authorization", "Basic d3JpdGVyOnRva2Vu".parse().unwrap());
    assert_code(
        cas(&channel).find_missing_blobs(basic).await,
        Code::Unauthenticated,
        "a Basic authorization header",
    );
}

#[tokio::test]
async fn cluster_services_and_unknown_methods_need_their_own_grant() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{GRANTS}\n[[grant]]\nname = \"worker\"\ntoken = \"worker-token\"\n\
         instances = [\"*\"]\npermissions = [\"cluster\"]\n"
    );
    let (addr, _authorizer) = serve_with_grants(&grants_file(dir.path(), &text)).await;
    let channel = connect(addr).await;
    let worker_link = "/reapi.cluster.v1.WorkerLink/Connect";
    assert_code(
        call(&channel, worker_link, Some("writer-token")).await,
        Code::PermissionDenied,
        "a client registering as a worker",
    );
    // Let through: these storage routes have no worker link to answer.
    assert_code(
        call(&channel, worker_link, Some("worker-token")).await,
        Code::Unimplemented,
        "a worker's link",
    );
    // A method no grant can allow (here, one this server does not serve).
    assert_code(
        call(
            &channel,
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            Some("writer-token"),
        )
        .await,
        Code::PermissionDenied,
        "an unknown method",
    );
}

/// A unary call of `path` with an empty message.
async fn call(channel: &Channel, path: &'static str, token: Option<&str>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        as_holder(token, ()),
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::<(), ()>::default(),
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn grants_reload_when_the_file_changes_and_a_broken_file_keeps_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let path = grants_file(dir.path(), GRANTS);
    let (addr, authorizer) = serve_with_grants(&path).await;
    authorizer.watch(Duration::from_millis(50), false).unwrap();
    let channel = connect(addr).await;
    let reader = Some("reader-token");
    missing(&channel, reader, "a", &[]).await.unwrap();

    // Broken: the previous grants stay.
    std::fs::write(&path, "[[grant]]\ntoken = 3\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    missing(&channel, reader, "a", &[]).await.unwrap();

    // The reader's grant is gone, and the reader with it.
    let without_reader = GRANTS.replace("token = \"reader-token\"", "token = \"rotated\"");
    std::fs::write(&path, without_reader).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match missing(&channel, reader, "a", &[]).await {
            Err(status) if status.code() == Code::Unauthenticated => break,
            _ if tokio::time::Instant::now() > deadline => {
                panic!("the old token still works 10 s after the file changed")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    missing(&channel, Some("rotated"), "a", &[]).await.unwrap();
}

/// A channel trusting the test CA, presenting `identity` (a cert/key name).
async fn connect_tls(pki: &Pki, addr: SocketAddr, identity: Option<&str>) -> Channel {
    pki.connect(addr, "ca", identity)
        .await
        .expect("TLS connection")
}

#[tokio::test]
async fn client_certificates_are_identified_by_their_subject_alt_names() {
    let pki = Pki::new();
    // Issued by the trusted CA, but granted nothing.
    pki.client("ungranted", "ca");
    let dir = tempfile::tempdir().unwrap();
    let authorizer = Authorizer::load(&grants_file(dir.path(), GRANTS)).unwrap();
    let tls = TlsSettings::load(TlsFiles {
        certificate: pki.cert("server"),
        key: pki.key("server"),
        client_ca: Some(pki.cert("ca")),
        client_certificate_required: false,
    })
    .unwrap();
    let addr = serve(Front {
        tls: Some(tls),
        grants: Some(authorizer),
    })
    .await;
    let digest = digest_of(b"certified");

    let certified = connect_tls(&pki, addr, Some("client")).await;
    missing(&certified, None, "any", std::slice::from_ref(&digest))
        .await
        .unwrap();
    assert_code(
        batch_upload(&certified, None, "any", b"certified").await,
        Code::PermissionDenied,
        "a read-only certificate writing",
    );
    // The certificate's grants add to the token's.
    batch_upload(&certified, Some("writer-token"), "a", b"certified")
        .await
        .unwrap();

    let ungranted = connect_tls(&pki, addr, Some("ungranted")).await;
    assert_code(
        missing(&ungranted, None, "any", &[]).await,
        Code::PermissionDenied,
        "a certificate without a grant",
    );
    let anonymous = connect_tls(&pki, addr, None).await;
    assert_code(
        missing(&anonymous, None, "any", &[]).await,
        Code::Unauthenticated,
        "no certificate and no token",
    );
}
