//! The Remote Asset API over real gRPC (`asset::AssetServices`) in front of
//! a real HTTP origin on loopback: FetchBlob downloads from allowed hosts,
//! checks the client's checksum, stores and remembers; every fetch failure
//! is reported in the response with its code and leaves nothing stored;
//! Push records associations that Fetch answers from; bad requests are
//! INVALID_ARGUMENT naming what is wrong.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reapi_cas::asset::qualifiers::{sha256_sri, CANONICAL_ID, CHECKSUM_SRI};
use reapi_cas::asset::{AssetServices, FetchPolicy, Fetcher};
use reapi_cas::service::listener;
use reapi_core::proto::remote_asset as ra;
use reapi_core::proto::remote_asset::fetch_client::FetchClient;
use reapi_core::proto::remote_asset::push_client::PushClient;
use reapi_core::proto::remote_execution as re;
use reapi_core::InstancePolicy;
use reapi_test_support::cas::{find_missing, upload, upload_msg};
use reapi_test_support::clients::{cas, connect};
use reapi_test_support::digests::{blake3, dig, dig_blake3, sha256};
use reapi_test_support::http_origin::{Origin, Route};
use reapi_test_support::server::storage::memory_services;
use tonic::transport::Channel;
use tonic::Code;

struct Server {
    channel: Channel,
    _scratch: tempfile::TempDir,
}

/// Storage and asset services over memory; fetching from 127.0.0.1 only
/// when `fetching`, up to 1 MiB and 3 s (room for a loaded machine).
async fn serve(fetching: bool) -> Server {
    let scratch = tempfile::tempdir().unwrap();
    let storage = memory_services(64 << 20, InstancePolicy::Any);
    let fetcher = fetching.then(|| {
        let policy = FetchPolicy {
            allowed_hosts: vec!["127.0.0.1".into()],
            max_size: 1 << 20,
            timeout: Duration::from_secs(3),
            scratch_dir: scratch.path().join("downloads"),
        };
        Arc::new(Fetcher::new(policy, storage.store.clone()).unwrap())
    });
    let assets = AssetServices::new(
        storage.store.clone(),
        storage.action_cache.clone(),
        InstancePolicy::Any,
        fetcher,
    );
    let listener = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut routes = tonic::service::RoutesBuilder::default();
    storage.add_to(&mut routes);
    assets.add_to(&mut routes);
    tokio::spawn(async move {
        listener::serve(listener, routes.routes(), std::future::pending())
            .await
            .unwrap()
    });
    Server {
        channel: connect(addr).await,
        _scratch: scratch,
    }
}

fn qualifier(name: &str, value: &str) -> ra::Qualifier {
    ra::Qualifier {
        name: name.into(),
        value: value.into(),
    }
}

fn fetch_request(uris: &[String], qualifiers: Vec<ra::Qualifier>) -> ra::FetchBlobRequest {
    ra::FetchBlobRequest {
        uris: uris.to_vec(),
        qualifiers,
        ..Default::default()
    }
}

async fn fetch(channel: &Channel, request: ra::FetchBlobRequest) -> ra::FetchBlobResponse {
    FetchClient::new(channel.clone())
        .fetch_blob(request)
        .await
        .expect("FetchBlob")
        .into_inner()
}

fn code_of(response: &ra::FetchBlobResponse) -> Code {
    Code::from(response.status.clone().unwrap_or_default().code)
}

#[tokio::test]
async fn fetched_blobs_are_checked_stored_and_remembered() {
    let body = b"an archive's bytes".to_vec();
    let origin = Origin::start(&[("/a.tar", Route::Body(body.clone()))]);
    let server = serve(true).await;
    let uris = vec![origin.url("/a.tar")];
    let sri = qualifier(CHECKSUM_SRI, &sha256_sri(&body));

    let first = fetch(&server.channel, fetch_request(&uris, vec![sri.clone()])).await;
    assert_eq!(code_of(&first), Code::Ok, "{first:?}");
    assert_eq!(first.blob_digest, Some(dig(&body)));
    assert_eq!(first.uri, uris[0]);
    assert!(find_missing(&mut cas(&server.channel), "", &[dig(&body)])
        .await
        .is_empty());
    assert_eq!(origin.hits(), 1);

    // Remembered: no second download.
    let again = fetch(&server.channel, fetch_request(&uris, vec![sri.clone()])).await;
    assert_eq!(again.blob_digest, Some(dig(&body)));
    assert_eq!(origin.hits(), 1);

    // Other qualifiers make another asset, fetched anew.
    let canonical = vec![sri, qualifier(CANONICAL_ID, "v2")];
    let other = fetch(&server.channel, fetch_request(&uris, canonical)).await;
    assert_eq!(code_of(&other), Code::Ok, "{other:?}");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn blake3_fetches_are_hashed_stored_and_remembered_as_blake3() {
    let body = b"an archive fetched for a BLAKE3 client".to_vec();
    let origin = Origin::start(&[("/b.tar", Route::Body(body.clone()))]);
    let server = serve(true).await;
    let uris = vec![origin.url("/b.tar")];
    let sri = qualifier(CHECKSUM_SRI, &sha256_sri(&body));
    let blake3_fetch = ra::FetchBlobRequest {
        digest_function: blake3(),
        ..fetch_request(&uris, vec![sri.clone()])
    };

    let fetched = fetch(&server.channel, blake3_fetch.clone()).await;
    assert_eq!(code_of(&fetched), Code::Ok, "{fetched:?}");
    assert_eq!(fetched.blob_digest, Some(dig_blake3(&body)));
    assert_eq!(fetched.digest_function, blake3());
    let missing = cas(&server.channel)
        .find_missing_blobs(re::FindMissingBlobsRequest {
            blob_digests: vec![dig_blake3(&body)],
            digest_function: blake3(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .missing_blob_digests;
    assert!(missing.is_empty(), "stored as a BLAKE3 blob");
    let again = fetch(&server.channel, blake3_fetch).await;
    assert_eq!(again.blob_digest, Some(dig_blake3(&body)));
    assert_eq!(origin.hits(), 1, "remembered");

    // A SHA-256 client's fetch of the same URI is its own asset.
    let sha = fetch(&server.channel, fetch_request(&uris, vec![sri])).await;
    assert_eq!(sha.blob_digest, Some(dig(&body)));
    assert_eq!(sha.digest_function, sha256());
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn a_wrong_checksum_is_aborted_and_stores_nothing() {
    let body = b"tampered bytes".to_vec();
    let origin = Origin::start(&[("/x", Route::Body(body.clone()))]);
    let server = serve(true).await;
    let uris = vec![origin.url("/x")];
    let wrong = qualifier(CHECKSUM_SRI, &sha256_sri(b"what the client expects"));
    let response = fetch(&server.channel, fetch_request(&uris, vec![wrong.clone()])).await;
    assert_eq!(code_of(&response), Code::Aborted, "{response:?}");
    assert!(response
        .status
        .unwrap()
        .message
        .contains("checksum mismatch"));
    assert_eq!(response.blob_digest, None);
    assert_eq!(
        find_missing(&mut cas(&server.channel), "", &[dig(&body)]).await,
        vec![dig(&body)],
        "a download that failed its checksum was stored"
    );
    // Not remembered either: the next try downloads again.
    fetch(&server.channel, fetch_request(&uris, vec![wrong])).await;
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn each_fetch_failure_is_reported_with_its_code() {
    let origin = Origin::start(&[
        ("/big", Route::Body(vec![7; 2 << 20])),
        (
            "/slow",
            Route::Slow(Duration::from_secs(4), b"late".to_vec()),
        ),
        ("/secret", Route::Status(403)),
        ("/moved", Route::Redirect("/here".into())),
        ("/here", Route::Body(b"moved here".to_vec())),
    ]);
    let server = serve(true).await;
    let not_allowed = format!("http://localhost:{}/here", origin.addr().port());
    for (uri, code, says) in [
        (origin.url("/missing"), Code::NotFound, "404"),
        (
            origin.url("/big"),
            Code::ResourceExhausted,
            "fetch limit of 1048576 bytes",
        ),
        (origin.url("/slow"), Code::DeadlineExceeded, "took longer"),
        (origin.url("/secret"), Code::PermissionDenied, "403"),
        (
            not_allowed,
            Code::PermissionDenied,
            "does not fetch from localhost",
        ),
        (
            "ftp://127.0.0.1/x".into(),
            Code::InvalidArgument,
            "only http and https",
        ),
    ] {
        let response = fetch(
            &server.channel,
            fetch_request(std::slice::from_ref(&uri), vec![]),
        )
        .await;
        assert_eq!(code_of(&response), code, "{uri}: {response:?}");
        let message = response.status.unwrap().message;
        assert!(message.contains(says), "{uri}: {message}");
        assert_eq!(response.uri, uri);
    }
    // A redirect is followed; a failing URI falls through to the next.
    let uris = vec![origin.url("/missing"), origin.url("/moved")];
    let response = fetch(&server.channel, fetch_request(&uris, vec![])).await;
    assert_eq!(code_of(&response), Code::Ok, "{response:?}");
    assert_eq!(response.uri, uris[1]);
    assert_eq!(response.blob_digest, Some(dig(b"moved here")));
}

const TOKEN: &str = "Bearer t0ken";

fn authorized(body: &[u8]) -> Route {
    Route::Authorized {
        name: "Authorization".into(),
        value: TOKEN.into(),
        body: body.to_vec(),
    }
}

#[tokio::test]
async fn header_qualifiers_go_to_the_uris_origin_only() {
    let body = b"behind a login".to_vec();
    let mut origin = Origin::start(&[
        ("/private", authorized(&body)),
        ("/hop", Route::Redirect("/private".into())),
    ]);
    let private = origin.url("/private");
    let elsewhere = Origin::start(&[("/away", Route::Redirect(private.clone()))]);
    let server = serve(true).await;
    let sri = qualifier(CHECKSUM_SRI, &sha256_sri(&body));
    let global = qualifier("http_header:Authorization", TOKEN);
    let per_uri = qualifier("http_header_url:0:Authorization", TOKEN);
    let wrong_global = qualifier("http_header:Authorization", "Bearer wrong");
    let canonical = |id: &str| qualifier(CANONICAL_ID, id);

    let cases = [
        // Without the header the origin refuses.
        (
            vec![private.clone()],
            vec![canonical("1")],
            Code::PermissionDenied,
        ),
        (
            vec![private.clone()],
            vec![canonical("2"), global.clone()],
            Code::Ok,
        ),
        // A redirect on the same origin keeps the headers...
        (
            vec![origin.url("/hop")],
            vec![canonical("3"), per_uri.clone()],
            Code::Ok,
        ),
        // ... one from another origin does not get them.
        (
            vec![elsewhere.url("/away")],
            vec![canonical("4"), global.clone()],
            Code::PermissionDenied,
        ),
        // A URI's own header wins over the global one.
        (
            vec![private.clone()],
            vec![canonical("5"), wrong_global, per_uri.clone()],
            Code::Ok,
        ),
        // The second URI's header is not sent to the first.
        (
            vec![private.clone(), origin.url("/hop")],
            vec![
                canonical("6"),
                qualifier("http_header_url:1:Authorization", TOKEN),
            ],
            Code::Ok,
        ),
    ];
    for (uris, qualifiers, code) in cases {
        let what = format!(
            "{uris:?} {:?}",
            qualifiers.iter().map(|q| &q.name).collect::<Vec<_>>()
        );
        let response = fetch(&server.channel, fetch_request(&uris, qualifiers)).await;
        assert_eq!(code_of(&response), code, "{what}: {response:?}");
        if code == Code::Ok {
            assert_eq!(response.blob_digest, Some(dig(&body)), "{what}");
            // The last URI answered (in case 6, after the first refused).
            assert_eq!(Some(&response.uri), uris.last(), "{what}");
        }
    }
    // With a checksum, a fetch made with headers is remembered, and
    // answers later requests without them.
    let with_sri = fetch(
        &server.channel,
        fetch_request(
            std::slice::from_ref(&private),
            vec![sri.clone(), global.clone()],
        ),
    )
    .await;
    assert_eq!(code_of(&with_sri), Code::Ok, "{with_sri:?}");
    origin.stop();
    let later = fetch(&server.channel, fetch_request(&[private], vec![sri])).await;
    assert_eq!(later.blob_digest, Some(dig(&body)));
}

#[tokio::test]
async fn fetches_with_headers_and_no_checksum_are_not_remembered() {
    let body = b"private and unchecked".to_vec();
    let origin = Origin::start(&[("/p", authorized(&body))]);
    let server = serve(true).await;
    let uris = vec![origin.url("/p")];
    let with_token = vec![qualifier("http_header:Authorization", TOKEN)];
    for hits in [1, 2] {
        let response = fetch(&server.channel, fetch_request(&uris, with_token.clone())).await;
        assert_eq!(code_of(&response), Code::Ok, "{response:?}");
        assert_eq!(origin.hits(), hits, "downloaded every time");
    }
    // And a client without the token is not answered from it.
    let without = fetch(&server.channel, fetch_request(&uris, vec![])).await;
    assert_eq!(code_of(&without), Code::PermissionDenied, "{without:?}");
}

#[tokio::test]
async fn malformed_requests_are_invalid_arguments() {
    let server = serve(true).await;
    let uri = vec!["http://127.0.0.1:1/x".to_string()];
    let mut md5 = fetch_request(&uri, vec![]);
    md5.digest_function = re::digest_function::Value::Md5 as i32;
    for (request, says) in [
        (fetch_request(&[], vec![]), "at least one URI"),
        (
            fetch_request(&uri, vec![qualifier("vcs.commit", "abc")]),
            "unsupported qualifiers: vcs.commit",
        ),
        (
            fetch_request(&uri, vec![qualifier(CHECKSUM_SRI, "sha256-nope")]),
            "checksum.sri",
        ),
        (md5, "MD5"),
        (
            fetch_request(&uri, vec![qualifier("http_header:Range", "bytes=0-9")]),
            "http_header:Range",
        ),
        (
            fetch_request(
                &uri,
                vec![qualifier("http_header_url:1:Authorization", "t")],
            ),
            "the request has 1 URIs",
        ),
        (
            fetch_request(&uri, vec![qualifier("bazel.auth_headers", "{}")]),
            "unsupported qualifiers: bazel.auth_headers",
        ),
    ] {
        let status = FetchClient::new(server.channel.clone())
            .fetch_blob(request)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().contains(says), "{}", status.message());
    }
}

#[tokio::test]
async fn pushed_blobs_and_directories_are_fetched_by_uri() {
    // No fetching: what Fetch answers comes from Push alone.
    let server = serve(false).await;
    let uris = vec!["https://mirror.test/pkg-1.0.tar.gz".to_string()];
    let blob = upload(&mut cas(&server.channel), "", &[b"pushed".as_slice()]).await[0].clone();
    let mut push = PushClient::new(server.channel.clone());
    push.push_blob(ra::PushBlobRequest {
        uris: uris.clone(),
        blob_digest: Some(blob.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let fetched = fetch(&server.channel, fetch_request(&uris, vec![])).await;
    assert_eq!(fetched.blob_digest, Some(blob));

    // Unknown and never fetched: NOT_FOUND in the response.
    let unknown = vec!["https://mirror.test/other".to_string()];
    let response = fetch(&server.channel, fetch_request(&unknown, vec![])).await;
    assert_eq!(code_of(&response), Code::NotFound, "{response:?}");

    // A blob the CAS does not hold cannot be pushed.
    let status = push
        .push_blob(ra::PushBlobRequest {
            uris: unknown.clone(),
            blob_digest: Some(dig(b"never uploaded")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );

    // Directories, with an expiry in the past: not answered.
    let file = upload(&mut cas(&server.channel), "", &[b"in a tree".as_slice()]).await[0].clone();
    let directory = re::Directory {
        files: vec![re::FileNode {
            name: "f".into(),
            digest: Some(file),
            ..Default::default()
        }],
        ..Default::default()
    };
    let root = upload_msg(&mut cas(&server.channel), "", &directory).await;
    let dir_uris = vec!["git://repo.test/project@abc".to_string()];
    push.push_directory(ra::PushDirectoryRequest {
        uris: dir_uris.clone(),
        root_directory_digest: Some(root.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut fetch_client = FetchClient::new(server.channel.clone());
    let fetched = fetch_client
        .fetch_directory(ra::FetchDirectoryRequest {
            uris: dir_uris.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.root_directory_digest, Some(root.clone()));
    let expired_uris = vec!["git://repo.test/project@old".to_string()];
    push.push_directory(ra::PushDirectoryRequest {
        uris: expired_uris.clone(),
        root_directory_digest: Some(root),
        expire_at: Some(reapi_core::proto::protobuf::Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let expired = fetch_client
        .fetch_directory(ra::FetchDirectoryRequest {
            uris: expired_uris,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        Code::from(expired.status.unwrap_or_default().code),
        Code::NotFound
    );
}
