//! `S3Store` against a real S3 server: SeaweedFS started per test on free
//! loopback ports (see `reapi_test_support::launch::seaweedfs`). Skipped
//! with a message when `weed` is not installed, failed when `CI=true`.
//!
//! The throughput measurement is `#[ignore]`d; run it in release mode:
//!
//! ```text
//! cargo test -p reapi-cas --release --test s3_store -- --ignored --nocapture throughput
//! ```
#![cfg(feature = "s3")]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reapi_cas::store::{ObjectBucket, S3Config, S3Store};
use reapi_core::blob_store::{collect_stream, BlobStore};
use reapi_core::{Digest, DigestHasher};
// One SeaweedFS launcher serves the storage tests and the end-to-end tests.
use reapi_test_support::launch::seaweedfs::{self, SeaweedFs};
use tonic::Code;

const MIB: usize = 1024 * 1024;
const BUCKET: &str = "reapi-test";
const PREFIX: &str = "reapi";

struct Fixture {
    server: SeaweedFs,
    store: S3Store,
}

fn config(server: &SeaweedFs) -> S3Config {
    S3Config {
        endpoint: Some(server.endpoint()),
        region: seaweedfs::REGION.into(),
        bucket: BUCKET.into(),
        prefix: PREFIX.into(),
        path_style: true,
        access_key_id: Some(seaweedfs::ACCESS_KEY.into()),
        secret_access_key: Some(seaweedfs::SECRET_KEY.into()),
        ..S3Config::default()
    }
}

/// A server with the test bucket and a store on it; `None` to skip.
async fn fixture_with(tweak: impl FnOnce(&mut S3Config)) -> Option<Fixture> {
    let server = SeaweedFs::start("s3_store")?;
    let mut config = config(&server);
    tweak(&mut config);
    let store = S3Store::new(config).await.unwrap();
    store
        .client()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateBucket: {e:?}\n{}", server.log_tail()));
    store.check().await.unwrap();
    Some(Fixture { server, store })
}

async fn fixture() -> Option<Fixture> {
    fixture_with(|_| {}).await
}

/// Small parts, so that multipart paths run on a few MiB.
fn small_parts(config: &mut S3Config) {
    config.multipart_threshold = 5 * MIB as u64;
    config.part_size = 5 * MIB as u64;
}

/// Deterministic pseudo-random bytes, `len` of them, from `seed`.
fn pseudo_random(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn blob(data: &[u8]) -> (Digest, Bytes) {
    (Digest::of_bytes(data), Bytes::copy_from_slice(data))
}

/// The raw key of a blob, as the store lays it out.
fn blob_key(instance: &str, digest: &Digest) -> String {
    let name = format!("cas/{}-{}", digest.hash_hex(), digest.size());
    match instance {
        "" => format!("{PREFIX}/{name}"),
        _ => format!(
            "{PREFIX}/instances/{}/{name}",
            reapi_cas::instance_dir::encode(instance)
        ),
    }
}

/// Whether an object exists, asked of S3 directly.
async fn object_exists(store: &S3Store, key: &str) -> bool {
    match store
        .client()
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => false,
        Err(e) => panic!("HeadObject {key}: {e:?}"),
    }
}

/// Multipart uploads still open under `key`.
async fn open_uploads(store: &S3Store, key: &str) -> usize {
    let listed = store
        .client()
        .list_multipart_uploads()
        .bucket(BUCKET)
        .prefix(key)
        .send()
        .await
        .unwrap();
    listed.uploads().len()
}

/// Reads a blob as a stream and returns its digest and the largest chunk.
async fn stream_digest(store: &S3Store, instance: &str, digest: &Digest) -> (Digest, usize) {
    let mut stream = store.read(instance, digest, 0, None).await.unwrap();
    let mut hasher = DigestHasher::new();
    let mut largest = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        largest = largest.max(chunk.len());
        hasher.update(&chunk);
    }
    (hasher.finish(), largest)
}

#[tokio::test]
async fn round_trip_small_and_empty() {
    let Some(f) = fixture().await else { return };
    let store = &f.store;
    let (d, data) = blob(b"hello s3");
    assert_eq!(store.find_missing("", &[d]).await.unwrap(), vec![d]);
    assert_eq!(store.get("", &d).await.unwrap_err().code(), Code::NotFound);
    store.put("", &d, data.clone()).await.unwrap();
    assert_eq!(store.get("", &d).await.unwrap(), data);
    assert!(store.find_missing("", &[d]).await.unwrap().is_empty());
    assert!(object_exists(store, &blob_key("", &d)).await);

    // A streamed write in pieces.
    let (d2, data2) = blob(&pseudo_random(2, 100_000));
    let mut w = store.begin_write("", &d2).await.unwrap();
    for piece in data2.chunks(30_000) {
        w.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    assert_eq!(w.committed_size(), 100_000);
    w.commit().await.unwrap();
    assert_eq!(store.get("", &d2).await.unwrap(), data2);

    // The empty blob is always there, and never stored.
    let empty = Digest::EMPTY;
    assert!(store.find_missing("x", &[empty]).await.unwrap().is_empty());
    assert!(store.get("x", &empty).await.unwrap().is_empty());
    let read = collect_stream(store.read("x", &empty, 0, None).await.unwrap(), 0);
    assert!(read.await.unwrap().is_empty());
    store.put("x", &empty, Bytes::new()).await.unwrap();
    store
        .begin_write("x", &empty)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    assert!(!object_exists(store, &blob_key("x", &empty)).await);
}

#[tokio::test]
async fn round_trip_100_mib_multipart() {
    let Some(f) = fixture().await else { return };
    let store = &f.store;
    const SIZE: usize = 100 * MIB;
    // The digest first, from the same generator, so that no 100 MiB copy
    // is ever held.
    let chunk = |i: usize| pseudo_random(1000 + i as u64, MIB);
    let mut hasher = DigestHasher::new();
    for i in 0..SIZE / MIB {
        hasher.update(&chunk(i));
    }
    let digest = hasher.finish();
    let key = blob_key("", &digest);

    let started = Instant::now();
    let mut w = store.begin_write("", &digest).await.unwrap();
    for i in 0..SIZE / MIB {
        w.write(chunk(i)).await.unwrap();
    }
    // Parts are up, but nothing is visible before the commit.
    assert!(!object_exists(store, &key).await);
    w.commit().await.unwrap();
    let written = started.elapsed();
    assert!(object_exists(store, &key).await);
    assert_eq!(open_uploads(store, &key).await, 0);

    let started = Instant::now();
    let (read_back, largest_chunk) = stream_digest(store, "", &digest).await;
    assert_eq!(read_back, digest);
    assert!(largest_chunk <= 4 * MIB, "chunk of {largest_chunk} bytes");
    eprintln!(
        "100 MiB: write {written:?}, read {:?} (dev build)",
        started.elapsed()
    );
    assert!(store.find_missing("", &[digest]).await.unwrap().is_empty());
}

#[tokio::test]
async fn ranged_reads() {
    let Some(f) = fixture().await else { return };
    let store = &f.store;
    let (d, data) = blob(&pseudo_random(3, 3 * MIB + 17));
    store.put("", &d, data.clone()).await.unwrap();
    let size = d.size();
    let read = |offset: u64, limit: Option<u64>| async move {
        collect_stream(store.read("", &d, offset, limit).await?, 0).await
    };
    assert_eq!(read(0, None).await.unwrap(), data);
    assert_eq!(read(1000, None).await.unwrap(), data.slice(1000..));
    assert_eq!(
        read(MIB as u64, Some(10)).await.unwrap(),
        data.slice(MIB..MIB + 10)
    );
    assert_eq!(
        read(size - 5, Some(100)).await.unwrap(),
        data.slice(size as usize - 5..)
    );
    assert_eq!(read(0, Some(size)).await.unwrap(), data);
    assert!(read(size, None).await.unwrap().is_empty());
    assert!(read(7, Some(0)).await.unwrap().is_empty());
    assert_eq!(
        read(size + 1, None).await.unwrap_err().code(),
        Code::OutOfRange
    );
    let (absent, _) = blob(b"never stored");
    assert_eq!(
        store.read("", &absent, 2, None).await.err().unwrap().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn find_missing_10000_digests_in_order() {
    let Some(f) = fixture().await else { return };
    let store = &f.store;
    let digests: Vec<Digest> = (0..10_000u32)
        .map(|i| Digest::of_bytes(format!("blob {i}").as_bytes()))
        .collect();
    // Every tenth is present.
    let present: Vec<usize> = (0..digests.len()).step_by(10).collect();
    futures::stream::iter(present.iter().copied())
        .map(|i| {
            let data = Bytes::from(format!("blob {i}"));
            let digest = digests[i];
            async move { store.put("", &digest, data).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    let mut query = digests.clone();
    query.push(Digest::EMPTY);
    query.push(digests[1]); // a duplicate of an absent one
    query.push(digests[0]); // and of a present one

    let started = Instant::now();
    let missing = store.find_missing("", &query).await.unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "FindMissing of {} digests ({} present): {elapsed:?}",
        query.len(),
        present.len()
    );
    let present: HashSet<Digest> = present.iter().map(|&i| digests[i]).collect();
    let expected: Vec<Digest> = query
        .iter()
        .filter(|d| !d.is_empty_blob() && !present.contains(d))
        .copied()
        .collect();
    assert_eq!(missing.len(), 9_001);
    assert_eq!(missing, expected);
}

#[tokio::test]
async fn hash_mismatches_store_nothing() {
    let Some(f) = fixture_with(small_parts).await else {
        return;
    };
    let store = &f.store;

    // Whole put.
    let (d, _) = blob(b"hello");
    let err = store
        .put("", &d, Bytes::from_static(b"jello"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(!object_exists(store, &blob_key("", &d)).await);

    // A small streamed write: wrong content, short, too long.
    let mut w = store.begin_write("", &d).await.unwrap();
    w.write(Bytes::from_static(b"jello")).await.unwrap();
    assert_eq!(w.commit().await.unwrap_err().code(), Code::InvalidArgument);
    let mut w = store.begin_write("", &d).await.unwrap();
    w.write(Bytes::from_static(b"hell")).await.unwrap();
    assert_eq!(w.commit().await.unwrap_err().code(), Code::InvalidArgument);
    let mut w = store.begin_write("", &d).await.unwrap();
    let err = w.write(Bytes::from_static(b"hello!")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    drop(w);
    assert!(!object_exists(store, &blob_key("", &d)).await);

    // A multipart write (12 MiB in 5 MiB parts) with one byte changed: all
    // parts go up, the commit refuses and aborts the upload.
    let good = pseudo_random(4, 12 * MIB);
    let digest = Digest::of_bytes(&good);
    let key = blob_key("", &digest);
    let mut bad = good.to_vec();
    bad[7 * MIB] ^= 1;
    let mut w = store.begin_write("", &digest).await.unwrap();
    for piece in bad.chunks(MIB) {
        w.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    let err = w.commit().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(!object_exists(store, &key).await);
    assert_eq!(open_uploads(store, &key).await, 0);

    // A multipart write cut short.
    let mut w = store.begin_write("", &digest).await.unwrap();
    w.write(good.slice(..11 * MIB)).await.unwrap();
    assert_eq!(w.commit().await.unwrap_err().code(), Code::InvalidArgument);
    assert!(!object_exists(store, &key).await);
    assert_eq!(open_uploads(store, &key).await, 0);

    // A large whole put is verified before anything is sent.
    let err = store.put("", &digest, Bytes::from(bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(!object_exists(store, &key).await);

    // And the right data goes through, multipart, also as a whole put.
    store.put("", &digest, good.clone()).await.unwrap();
    assert_eq!(store.get("", &digest).await.unwrap(), good);
}

#[tokio::test]
async fn dropped_writers_leave_nothing() {
    let Some(f) = fixture_with(small_parts).await else {
        return;
    };
    let store = &f.store;
    let data = pseudo_random(5, 13 * MIB);
    let digest = Digest::of_bytes(&data);
    let key = blob_key("", &digest);
    let mut w = store.begin_write("", &digest).await.unwrap();
    w.write(data.slice(..11 * MIB)).await.unwrap();
    assert_eq!(open_uploads(store, &key).await, 1);
    drop(w);
    // The abort runs in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_uploads(store, &key).await > 0 {
        assert!(Instant::now() < deadline, "upload not aborted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!object_exists(store, &key).await);

    let (small, bytes) = blob(b"small");
    let mut w = store.begin_write("", &small).await.unwrap();
    w.write(bytes).await.unwrap();
    drop(w);
    assert!(!object_exists(store, &blob_key("", &small)).await);
    assert_eq!(
        store
            .find_missing("", &[digest, small])
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn instances_are_isolated() {
    let Some(f) = fixture().await else { return };
    let store = &f.store;
    let (d, data) = blob(b"tenant data");
    store.put("a", &d, data.clone()).await.unwrap();
    assert!(store.find_missing("a", &[d]).await.unwrap().is_empty());
    assert_eq!(store.find_missing("", &[d]).await.unwrap(), vec![d]);
    assert_eq!(store.find_missing("a/b", &[d]).await.unwrap(), vec![d]);
    assert_eq!(store.get("", &d).await.unwrap_err().code(), Code::NotFound);
    assert!(object_exists(store, &blob_key("a", &d)).await);
    assert!(!object_exists(store, &blob_key("", &d)).await);
    assert_eq!(
        blob_key("a", &d),
        format!("reapi/instances/a/cas/{}-{}", d.hash_hex(), d.size())
    );

    store.put("", &d, data.clone()).await.unwrap();
    store.put("a/b", &d, data.clone()).await.unwrap();
    assert!(object_exists(store, &blob_key("", &d)).await);
    let nested = format!("reapi/instances/a%2Fb/cas/{}-{}", d.hash_hex(), d.size());
    assert_eq!(blob_key("a/b", &d), nested);
    assert!(object_exists(store, &nested).await);
    assert_eq!(store.get("a/b", &d).await.unwrap(), data);
}

#[tokio::test]
async fn object_bucket_round_trip() {
    let Some(f) = fixture().await else { return };
    let store = &f.store;
    assert_eq!(store.get_object("ac/missing").await.unwrap(), None);
    let value = Bytes::from_static(b"an action result");
    store.put_object("ac/abc", value.clone()).await.unwrap();
    assert_eq!(store.get_object("ac/abc").await.unwrap(), Some(value));
    assert!(object_exists(store, "reapi/ac/abc").await);
    let replaced = Bytes::from_static(b"another");
    store.put_object("ac/abc", replaced.clone()).await.unwrap();
    assert_eq!(store.get_object("ac/abc").await.unwrap(), Some(replaced));
}

#[tokio::test]
async fn bad_credentials_bucket_or_endpoint_are_clear_errors() {
    let Some(f) = fixture().await else { return };
    let (d, data) = blob(b"secret stuff");

    let wrong = S3Store::new(S3Config {
        secret_access_key: Some("not-the-secret".into()),
        ..config(&f.server)
    })
    .await
    .unwrap();
    let started = Instant::now();
    let err = wrong.check().await.unwrap_err();
    eprintln!("check(): {err}");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.to_string().contains("secret_access_key"), "{err}");
    let err = wrong.put("", &d, data.clone()).await.unwrap_err();
    eprintln!("put: {err}");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    let err = wrong.get("", &d).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let err = wrong.find_missing("", &[d]).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let missing = S3Store::new(S3Config {
        bucket: "no-such-bucket".into(),
        ..config(&f.server)
    })
    .await
    .unwrap();
    let err = missing.check().await.unwrap_err();
    eprintln!("check(): {err}");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
    let err = missing.put("", &d, data.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = S3Store::new(S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..config(&f.server)
    })
    .await
    .unwrap();
    let started = Instant::now();
    let err = unreachable.check().await.unwrap_err();
    eprintln!("check(): {err}");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("S3 backend unavailable"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // HTTPS is wired (rustls on ring): against a plain-HTTP port the TLS
    // handshake fails, and says so.
    let tls = S3Store::new(S3Config {
        endpoint: Some(f.server.endpoint().replace("http://", "https://")),
        ..config(&f.server)
    })
    .await
    .unwrap();
    let err = tls.check().await.unwrap_err();
    eprintln!("check(): {err}");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[tokio::test]
async fn stopped_server_is_unavailable_then_recovers() {
    let Some(mut f) = fixture_with(small_parts).await else {
        return;
    };
    let (before, before_data) = blob(b"written before the crash");
    f.store.put("", &before, before_data.clone()).await.unwrap();
    let large = pseudo_random(6, 12 * MIB);
    let large_digest = Digest::of_bytes(&large);
    let mut writer = f.store.begin_write("", &large_digest).await.unwrap();
    writer.write(large.slice(..6 * MIB)).await.unwrap();

    f.server.kill();
    let store = &f.store;
    let (d, data) = blob(b"written during the outage");
    let started = Instant::now();
    let checks = [
        ("get", store.get("", &before).await.map(drop)),
        ("read", store.read("", &before, 1, None).await.map(drop)),
        ("put", store.put("", &d, data.clone()).await),
        (
            "find_missing",
            store.find_missing("", &[before, d]).await.map(drop),
        ),
        ("check", store.check().await),
        (
            "multipart write",
            async {
                writer.write(large.slice(6 * MIB..)).await?;
                writer.commit().await
            }
            .await,
        ),
    ];
    let elapsed = started.elapsed();
    for (what, result) in checks {
        let err = result.unwrap_err();
        eprintln!("{what}: {err}");
        assert_eq!(err.code(), Code::Unavailable, "{what}: {err}");
        assert!(
            err.to_string().contains("S3 backend unavailable"),
            "{what}: {err}"
        );
    }
    eprintln!("six calls against a stopped server failed in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");

    f.server.restart();
    store.put("", &d, data.clone()).await.unwrap();
    assert_eq!(store.get("", &d).await.unwrap(), data);
    assert_eq!(store.get("", &before).await.unwrap(), before_data);
    store.put("", &large_digest, large.clone()).await.unwrap();
    assert_eq!(store.get("", &large_digest).await.unwrap(), large);
}

/// Without credentials in the config, the standard AWS chain finds them in
/// the environment. Runs the test below in a child process (this binary
/// again), so the environment is set without racing other tests; instance
/// metadata is disabled there, so the chain asks nothing off this machine.
#[tokio::test]
async fn credentials_from_the_environment() {
    let Some(f) = fixture().await else { return };
    let home = tempfile::tempdir().unwrap();
    let child = |secret: &str, expect: &str| {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "credentials_chain_child",
                "--ignored",
                "--nocapture",
            ])
            .env_clear()
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("REAPI_S3_CHILD_ENDPOINT", f.server.endpoint())
            .env("REAPI_S3_CHILD_EXPECT", expect);
        if !secret.is_empty() {
            command
                .env("AWS_ACCESS_KEY_ID", seaweedfs::ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child ({expect}) failed:\n{stdout}\n{stderr}"
        );
        eprintln!("{}", stderr.trim());
    };
    child(seaweedfs::SECRET_KEY, "ok");
    child("wrong", "denied");
    child("", "no-credentials");
}

#[tokio::test]
#[ignore = "run by credentials_from_the_environment in a child process"]
async fn credentials_chain_child() {
    let (Ok(endpoint), Ok(expect)) = (
        std::env::var("REAPI_S3_CHILD_ENDPOINT"),
        std::env::var("REAPI_S3_CHILD_EXPECT"),
    ) else {
        return;
    };
    let store = S3Store::new(S3Config {
        endpoint: Some(endpoint),
        region: seaweedfs::REGION.into(),
        bucket: BUCKET.into(),
        prefix: PREFIX.into(),
        path_style: true,
        max_attempts: 1,
        ..S3Config::default()
    })
    .await
    .unwrap();
    let (d, data) = blob(b"via the environment");
    match expect.as_str() {
        "ok" => {
            store.check().await.unwrap();
            store.put("", &d, data.clone()).await.unwrap();
            assert_eq!(store.get("", &d).await.unwrap(), data);
        }
        "denied" => {
            let err = store.check().await.unwrap_err();
            eprintln!("wrong secret in the environment: {err}");
            assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        }
        _ => {
            let started = Instant::now();
            let err = store.check().await.unwrap_err();
            eprintln!("no credentials anywhere: {err}");
            assert!(started.elapsed() < Duration::from_secs(10));
            assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        }
    }
}

#[tokio::test]
async fn frozen_server_times_out() {
    let Some(mut f) = fixture().await else { return };
    let (d, data) = blob(b"before the freeze");
    f.store.put("", &d, data.clone()).await.unwrap();
    // One attempt, so the test waits for one attempt timeout only.
    let store = S3Store::new(S3Config {
        max_attempts: 1,
        ..config(&f.server)
    })
    .await
    .unwrap();
    f.server.freeze();
    let started = Instant::now();
    let err = store.get("", &d).await.unwrap_err();
    let elapsed = started.elapsed();
    f.server.thaw();
    eprintln!("get from a frozen server: {err} after {elapsed:?}");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert_eq!(store.get("", &d).await.unwrap(), data);
}

/// Write and read 256 MiB through `S3Store`; prints MB/s. Release build:
/// `cargo test -p reapi-cas --release --test s3_store -- --ignored --nocapture throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_256_mib() {
    let Some(f) = fixture().await else { return };
    let store = &f.store;
    const SIZE: usize = 256 * MIB;
    let chunks: Vec<Bytes> = (0..SIZE / MIB)
        .map(|i| pseudo_random(7000 + i as u64, MIB))
        .collect();
    let mut hasher = DigestHasher::new();
    for c in &chunks {
        hasher.update(c);
    }
    let digest = hasher.finish();
    let mb = SIZE as f64 / 1e6;

    let started = Instant::now();
    let mut w = store.begin_write("", &digest).await.unwrap();
    for c in &chunks {
        w.write(c.clone()).await.unwrap();
    }
    w.commit().await.unwrap();
    let write = started.elapsed();

    // The store hashes a whole-blob read itself and fails the stream on a
    // mismatch; here the bytes are only counted.
    let started = Instant::now();
    let mut stream = store.read("", &digest, 0, None).await.unwrap();
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len();
    }
    let read = started.elapsed();
    assert_eq!(bytes, SIZE);

    let started = Instant::now();
    let mut stream = store.read("", &digest, 1, None).await.unwrap();
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len();
    }
    let ranged = started.elapsed();
    assert_eq!(bytes, SIZE - 1);
    eprintln!(
        "256 MiB through S3Store to SeaweedFS: write {:.0} MB/s ({write:?}), \
         read with verification {:.0} MB/s ({read:?}), ranged read without {:.0} MB/s ({ranged:?})",
        mb / write.as_secs_f64(),
        mb / read.as_secs_f64(),
        mb / ranged.as_secs_f64(),
    );
}
