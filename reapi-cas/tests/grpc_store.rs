//! `GrpcStore` against a real storage server over loopback: the store a
//! worker reaches the cluster's CAS with when no bucket is shared.

use bytes::Bytes;
use futures::StreamExt;
use reapi_cas::store::GrpcStore;
use reapi_core::blob_store::{collect_stream, BlobStore};
use reapi_core::Digest;
use reapi_test_support::digests::data;
use reapi_test_support::server::storage::{Server, Setup};
use tonic::Code;

async fn store(server: &Server) -> GrpcStore {
    GrpcStore::new(&server.addr.to_string()).unwrap()
}

#[tokio::test]
async fn small_blobs_round_trip_and_are_found() {
    let server = Server::start(Setup::Memory).await;
    let store = store(&server).await;
    let blob = Bytes::from_static(b"a small blob");
    let digest = Digest::of_bytes(&blob);
    let absent = Digest::of_bytes(b"never stored");
    assert_eq!(
        store.find_missing("", &[digest, absent]).await.unwrap(),
        [digest, absent]
    );
    store.put("", &digest, blob.clone()).await.unwrap();
    assert_eq!(
        store.find_missing("", &[digest, absent]).await.unwrap(),
        [absent]
    );
    assert_eq!(store.get("", &digest).await.unwrap(), blob);
    let err = store.get("", &absent).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    // Instances stay apart.
    assert_eq!(
        store.find_missing("other", &[digest]).await.unwrap(),
        [digest]
    );
    // The empty blob is always there.
    assert!(store.get("", &Digest::EMPTY).await.unwrap().is_empty());
}

#[tokio::test]
async fn large_blobs_stream_both_ways_with_ranges() {
    let server = Server::start(Setup::Disk).await;
    let store = store(&server).await;
    let blob = Bytes::from(data(9 << 20, 7));
    let digest = Digest::of_bytes(&blob);
    let mut writer = store.begin_write("", &digest).await.unwrap();
    for chunk in blob.chunks(700 * 1024) {
        writer.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(writer.committed_size(), blob.len() as u64);
    writer.commit().await.unwrap();

    let whole = collect_stream(store.read("", &digest, 0, None).await.unwrap(), 0)
        .await
        .unwrap();
    assert_eq!(whole, blob);
    let mut chunks = 0;
    let mut stream = store.read("", &digest, 1000, Some(3 << 20)).await.unwrap();
    let mut part = Vec::new();
    while let Some(chunk) = stream.next().await {
        part.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert!(chunks > 1, "a large read comes in several chunks");
    assert_eq!(part, blob[1000..1000 + (3 << 20)]);
    // put() of a large blob streams too.
    let other = Bytes::from(data(3 << 20, 8));
    let other_digest = Digest::of_bytes(&other);
    store.put("", &other_digest, other.clone()).await.unwrap();
    assert_eq!(store.get("", &other_digest).await.unwrap(), other);
}

#[tokio::test]
async fn bad_content_is_refused_and_nothing_is_stored() {
    let server = Server::start(Setup::Memory).await;
    let store = store(&server).await;
    let claimed = Digest::of_bytes(b"what the digest says");
    let err = store
        .put("", &claimed, Bytes::from_static(b"something else!!!!!!"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    let blob = data(2 << 20, 9);
    let digest = Digest::of_bytes(&blob);
    let mut writer = store.begin_write("", &digest).await.unwrap();
    writer
        .write(Bytes::copy_from_slice(&blob[..1 << 20]))
        .await
        .unwrap();
    let mut wrong = blob[1 << 20..].to_vec();
    wrong[10] ^= 1;
    writer.write(Bytes::from(wrong)).await.unwrap();
    let err = writer.commit().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // A write dropped half-way leaves nothing either.
    let mut writer = store.begin_write("", &digest).await.unwrap();
    writer
        .write(Bytes::copy_from_slice(&blob[..1 << 20]))
        .await
        .unwrap();
    drop(writer);
    // Too much data is refused before it is sent.
    let mut writer = store.begin_write("", &claimed).await.unwrap();
    let err = writer
        .write(Bytes::from(vec![0u8; 1000]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    assert_eq!(
        store.find_missing("", &[claimed, digest]).await.unwrap(),
        [claimed, digest]
    );
}

#[tokio::test]
async fn an_unreachable_cas_is_unavailable() {
    let server = Server::start(Setup::Memory).await;
    let addr = server.addr;
    server.stop().await;
    let store = GrpcStore::new(&addr.to_string()).unwrap();
    let err = store
        .find_missing("", &[Digest::of_bytes(b"x")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert_eq!(
        GrpcStore::new("not an address")
            .map(|_| ())
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
}
