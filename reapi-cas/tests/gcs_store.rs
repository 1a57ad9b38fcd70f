//! `GcsStore` against a real fake-gcs-server (never a mock): round trips,
//! streaming of a 100 MiB blob through a resumable session, ranged reads,
//! FindMissing at scale, verification failures that leave nothing behind,
//! instance isolation, the `ObjectBucket` side, and an outage.
//!
//! One server serves the whole binary (each test under its own prefix);
//! the outage test starts its own.
#![cfg(feature = "gcs")]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use reapi_cas::store::{GcsConfig, GcsStore, ObjectBucket};
use reapi_core::blob_store::collect_stream;
use reapi_core::{BlobStore, Digest, DigestHasher, Error};
use reapi_test_support::launch::fake_gcs::FakeGcs;
use tonic::Code;

const BUCKET: &str = "reapi-test";
const MIB: usize = 1024 * 1024;

static SERVER: OnceLock<Option<FakeGcs>> = OnceLock::new();

/// The binary's server with the test bucket, or `None` (skip).
fn server() -> Option<&'static FakeGcs> {
    SERVER
        .get_or_init(|| {
            let server = FakeGcs::start()?;
            server.create_bucket(BUCKET);
            Some(server)
        })
        .as_ref()
}

fn config(server: &FakeGcs, prefix: &str) -> GcsConfig {
    GcsConfig {
        bucket: BUCKET.into(),
        prefix: prefix.into(),
        endpoint: Some(server.endpoint()),
        no_auth: true,
        ..GcsConfig::default()
    }
}

/// A store under a prefix of its own, so that tests sharing the server
/// cannot see each other's objects.
async fn store(server: &FakeGcs, test: &str) -> (GcsStore, String) {
    store_with(server, test, |_| {}).await
}

async fn store_with(
    server: &FakeGcs,
    test: &str,
    tweak: impl FnOnce(&mut GcsConfig),
) -> (GcsStore, String) {
    let prefix = format!("{test}-{}", uuid::Uuid::new_v4().simple());
    let mut config = config(server, &prefix);
    tweak(&mut config);
    let store = GcsStore::new(config).await.unwrap();
    (store, prefix)
}

/// Small chunks so that a blob of a few MiB takes the resumable path.
fn small_chunks(config: &mut GcsConfig) {
    config.resumable_threshold = 256 * 1024;
    config.chunk_size = 256 * 1024;
}

/// Deterministic incompressible bytes.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn blob(data: &[u8]) -> (Digest, Bytes) {
    (Digest::of_bytes(data), Bytes::copy_from_slice(data))
}

async fn write_in_pieces(
    store: &GcsStore,
    instance: &str,
    digest: &Digest,
    data: &Bytes,
    piece: usize,
) -> Result<(), Error> {
    let mut writer = store.begin_write(instance, digest).await?;
    for start in (0..data.len()).step_by(piece) {
        writer
            .write(data.slice(start..(start + piece).min(data.len())))
            .await?;
    }
    assert_eq!(writer.committed_size(), data.len() as u64);
    writer.commit().await
}

async fn read_all(
    store: &GcsStore,
    instance: &str,
    digest: &Digest,
    offset: u64,
    limit: Option<u64>,
) -> Result<Bytes, Error> {
    collect_stream(store.read(instance, digest, offset, limit).await?, 0).await
}

#[tokio::test]
async fn small_blobs_round_trip() {
    let Some(server) = server() else { return };
    let (store, prefix) = store(server, "small").await;
    store.check().await.unwrap();
    let (a, data_a) = blob(b"hello gcs");
    let (b, data_b) = blob(&pseudo_random(300_000, 1));
    assert_eq!(store.find_missing("", &[a, b]).await.unwrap(), vec![a, b]);
    assert_eq!(store.get("", &a).await.unwrap_err().code(), Code::NotFound);

    store.put("", &a, data_a.clone()).await.unwrap();
    write_in_pieces(&store, "", &b, &data_b, 64 * 1024)
        .await
        .unwrap();

    assert!(store.find_missing("", &[a, b]).await.unwrap().is_empty());
    assert_eq!(store.get("", &a).await.unwrap(), data_a);
    assert_eq!(store.get("", &b).await.unwrap(), data_b);
    assert_eq!(read_all(&store, "", &b, 0, None).await.unwrap(), data_b);
    assert_eq!(
        server.list(BUCKET, &prefix),
        vec![
            format!("{prefix}/cas/{}-{}", a.hash_hex(), a.size()),
            format!("{prefix}/cas/{}-{}", b.hash_hex(), b.size()),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn empty_blob_is_always_present_and_never_stored() {
    let Some(server) = server() else { return };
    let (store, prefix) = store(server, "empty").await;
    let empty = Digest::EMPTY;
    assert!(store.find_missing("x", &[empty]).await.unwrap().is_empty());
    assert!(store.get("x", &empty).await.unwrap().is_empty());
    assert!(read_all(&store, "x", &empty, 0, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.read("x", &empty, 1, None).await.err().unwrap().code(),
        Code::OutOfRange
    );
    store.put("x", &empty, Bytes::new()).await.unwrap();
    store
        .begin_write("x", &empty)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    assert!(server.list(BUCKET, &prefix).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blob_streams_through_a_resumable_session() {
    let Some(server) = server() else { return };
    // The default configuration: 8 MiB threshold, 16 MiB chunks.
    let (store, prefix) = store(server, "large").await;
    let data = Bytes::from(pseudo_random(100 * MIB, 2));
    let digest = Digest::of_bytes(&data);

    let started = Instant::now();
    write_in_pieces(&store, "", &digest, &data, MIB)
        .await
        .unwrap();
    let upload = started.elapsed();
    assert!(store.find_missing("", &[digest]).await.unwrap().is_empty());

    let started = Instant::now();
    let mut stream = store.read("", &digest, 0, None).await.unwrap();
    let mut hasher = DigestHasher::new();
    let mut offset = 0usize;
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 2 * MIB, "chunk of {} bytes", chunk.len());
        assert!(
            chunk[..] == data[offset..offset + chunk.len()],
            "at {offset}"
        );
        hasher.update(&chunk);
        offset += chunk.len();
        chunks += 1;
    }
    let download = started.elapsed();
    hasher.verify(&digest).unwrap();
    assert!(chunks >= 50, "{chunks} chunks: the read was not streamed");
    eprintln!("100 MiB through fake-gcs-server: upload {upload:?}, streamed download {download:?} in {chunks} chunks");
    assert_eq!(server.list(BUCKET, &prefix).len(), 1);
}

#[tokio::test]
async fn ranged_reads() {
    let Some(server) = server() else { return };
    let (store, _) = store(server, "ranges").await;
    let data = Bytes::from(pseudo_random(3 * MIB + 123, 3));
    let (digest, _) = blob(&data);
    store.put("", &digest, data.clone()).await.unwrap();
    let size = digest.size();

    let from = |start: usize| data.slice(start..);
    assert_eq!(
        read_all(&store, "", &digest, 5, None).await.unwrap(),
        from(5)
    );
    assert_eq!(
        read_all(&store, "", &digest, MIB as u64, Some(1000))
            .await
            .unwrap(),
        data.slice(MIB..MIB + 1000)
    );
    // A limit past the end is clamped.
    assert_eq!(
        read_all(&store, "", &digest, size - 10, Some(100))
            .await
            .unwrap(),
        from(size as usize - 10)
    );
    assert!(read_all(&store, "", &digest, size, None)
        .await
        .unwrap()
        .is_empty());
    assert!(read_all(&store, "", &digest, 7, Some(0))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .read("", &digest, size + 1, None)
            .await
            .err()
            .unwrap()
            .code(),
        Code::OutOfRange
    );

    let (missing, _) = blob(b"not stored");
    for offset in [0, 3, missing.size()] {
        let err = store.read("", &missing, offset, None).await.err().unwrap();
        assert_eq!(err.code(), Code::NotFound, "offset {offset}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_missing_ten_thousand_digests_in_order() {
    let Some(server) = server() else { return };
    let (store, _) = store(server, "findmissing").await;
    let digests: Vec<Digest> = (0..10_000u32)
        .map(|i| Digest::of_bytes(format!("blob {i}").as_bytes()))
        .collect();
    // Every 20th is stored.
    let stored: Vec<usize> = (0..digests.len()).step_by(20).collect();
    futures::stream::iter(stored.iter().map(|&i| {
        let data = Bytes::from(format!("blob {i}"));
        let store = &store;
        let digest = digests[i];
        async move { store.put("", &digest, data).await }
    }))
    .buffer_unordered(32)
    .for_each(|r| async move { r.unwrap() })
    .await;

    let mut asked = digests.clone();
    asked.push(Digest::EMPTY);
    let started = Instant::now();
    let missing = store.find_missing("", &asked).await.unwrap();
    let elapsed = started.elapsed();
    let expected: Vec<Digest> = digests
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 20 != 0)
        .map(|(_, d)| *d)
        .collect();
    assert_eq!(missing.len(), 9_500);
    assert!(missing == expected, "order not preserved");
    eprintln!("FindMissing of 10,001 digests (500 present): {elapsed:?}");
}

#[tokio::test]
async fn mismatches_are_invalid_and_store_nothing() {
    let Some(server) = server() else { return };
    let (store, prefix) = store_with(server, "mismatch", small_chunks).await;
    let (small, _) = blob(b"hello");

    // put: wrong content, wrong size.
    let err = store
        .put("", &small, Bytes::from_static(b"jello"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = store
        .put("", &small, Bytes::from_static(b"hell"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Buffered write: short, wrong, too long.
    let mut w = store.begin_write("", &small).await.unwrap();
    w.write(Bytes::from_static(b"hel")).await.unwrap();
    assert_eq!(w.commit().await.unwrap_err().code(), Code::InvalidArgument);
    let mut w = store.begin_write("", &small).await.unwrap();
    w.write(Bytes::from_static(b"jello")).await.unwrap();
    assert_eq!(w.commit().await.unwrap_err().code(), Code::InvalidArgument);
    let mut w = store.begin_write("", &small).await.unwrap();
    let err = w.write(Bytes::from_static(b"hello!")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    drop(w);

    // Resumable write (chunks of 256 KiB already sent): right size, wrong
    // content; then too short.
    let good = Bytes::from(pseudo_random(1_300_000, 4));
    let large = Digest::of_bytes(&good);
    let mut bad = good.to_vec();
    bad[1_000_000] ^= 1;
    let err = write_in_pieces(&store, "", &large, &Bytes::from(bad), 100_000)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("hashes to"), "{err}");
    let mut w = store.begin_write("", &large).await.unwrap();
    w.write(good.slice(..1_000_000)).await.unwrap();
    let err = w.commit().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("1000000 bytes"), "{err}");

    assert_eq!(
        store.find_missing("", &[small, large]).await.unwrap(),
        vec![small, large]
    );
    assert!(server.list(BUCKET, &prefix).is_empty());

    // The same store still writes the right content.
    write_in_pieces(&store, "", &large, &good, 100_000)
        .await
        .unwrap();
    assert_eq!(store.get("", &large).await.unwrap(), good);
}

#[tokio::test]
async fn dropped_writers_leave_nothing() {
    let Some(server) = server() else { return };
    let (store, prefix) = store_with(server, "dropped", small_chunks).await;
    let data = Bytes::from(pseudo_random(2 * MIB, 5));
    let digest = Digest::of_bytes(&data);
    let mut w = store.begin_write("", &digest).await.unwrap();
    // Several chunks reach the session.
    w.write(data.slice(..MIB + 1000)).await.unwrap();
    drop(w);
    let (small, _) = blob(b"small and dropped");
    let mut w = store.begin_write("", &small).await.unwrap();
    w.write(Bytes::from_static(b"small and dropped"))
        .await
        .unwrap();
    drop(w);
    // Let the background cancellation run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.list(BUCKET, &prefix).is_empty());
    assert_eq!(
        store.find_missing("", &[digest, small]).await.unwrap(),
        vec![digest, small]
    );
}

#[tokio::test]
async fn instances_are_isolated() {
    let Some(server) = server() else { return };
    let (store, prefix) = store(server, "instances").await;
    let (d, data) = blob(b"tenant data");
    store.put("team/a", &d, data.clone()).await.unwrap();
    assert!(store.find_missing("team/a", &[d]).await.unwrap().is_empty());
    assert_eq!(store.find_missing("team/b", &[d]).await.unwrap(), vec![d]);
    assert_eq!(store.find_missing("", &[d]).await.unwrap(), vec![d]);
    assert_eq!(
        store.get("team/b", &d).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(store.get("team/a", &d).await.unwrap(), data);
    assert_eq!(
        server.list(BUCKET, &prefix),
        vec![format!(
            "{prefix}/instances/team%2Fa/cas/{}-{}",
            d.hash_hex(),
            d.size()
        )]
    );
}

#[tokio::test]
async fn object_bucket_round_trip() {
    let Some(server) = server() else { return };
    let (store, prefix) = store(server, "bucket").await;
    let bucket: &dyn ObjectBucket = &store;
    assert_eq!(bucket.get_object("ac/result-1").await.unwrap(), None);
    bucket
        .put_object("ac/result-1", Bytes::from_static(b"first"))
        .await
        .unwrap();
    bucket
        .put_object("ac/result-1", Bytes::from_static(b"second"))
        .await
        .unwrap();
    assert_eq!(
        bucket.get_object("ac/result-1").await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(
        server.list(BUCKET, &prefix),
        vec![format!("{prefix}/ac/result-1")]
    );
}

#[tokio::test]
async fn check_reports_missing_bucket_and_dead_endpoint() {
    let Some(server) = server() else { return };
    let mut config = config(server, "check");
    config.bucket = "no-such-bucket".into();
    let store = GcsStore::new(config).await.unwrap();
    let err = store.check().await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
    eprintln!("check of a missing bucket: {err}");

    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = GcsConfig {
        endpoint: Some(format!("http://{dead}")),
        ..self::config(server, "check")
    };
    let store = GcsStore::new(config).await.unwrap();
    let started = Instant::now();
    let err = store.check().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("GCS backend unavailable"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_unavailable_and_recovery_works() {
    // A server of its own: this test stops it.
    let Some(mut server) = FakeGcs::start() else {
        return;
    };
    server.create_bucket(BUCKET);
    let (store, _) = store_with(&server, "outage", small_chunks).await;
    let (before, before_data) = blob(b"stored before the outage");
    store.put("", &before, before_data.clone()).await.unwrap();
    let large = Bytes::from(pseudo_random(2 * MIB, 6));
    let large_digest = Digest::of_bytes(&large);
    let mut writer = store.begin_write("", &large_digest).await.unwrap();
    writer.write(large.slice(..MIB)).await.unwrap();

    server.stop();

    let (after, after_data) = blob(b"written after the restart");
    let started = Instant::now();
    let err = store.find_missing("", &[before]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("GCS backend unavailable"), "{err}");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    eprintln!("find_missing during the outage: {err}");
    for err in [
        store.get("", &before).await.unwrap_err(),
        store.put("", &after, after_data.clone()).await.unwrap_err(),
        store.read("", &before, 0, None).await.err().unwrap(),
    ] {
        assert_eq!(err.code(), Code::Unavailable, "{err}");
    }
    // The write in progress fails too: its chunks cannot reach the session.
    let err = match writer.write(large.slice(MIB..)).await {
        Err(err) => err,
        Ok(()) => writer.commit().await.unwrap_err(),
    };
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    eprintln!("write in progress during the outage: {err}");

    // A new, empty server on the same port: the same store works again.
    server.restart();
    server.create_bucket(BUCKET);
    store.put("", &after, after_data.clone()).await.unwrap();
    assert_eq!(store.get("", &after).await.unwrap(), after_data);
    write_in_pieces(&store, "", &large_digest, &large, 300_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .find_missing("", &[before, after, large_digest])
            .await
            .unwrap(),
        vec![before]
    );
}
