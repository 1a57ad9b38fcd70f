//! Measurements of the disk store through its public API. All `#[ignore]`d:
//! run them in release mode, one at a time, e.g.
//!
//! ```text
//! cargo test -p reapi-cas --release --test disk_store -- --ignored --nocapture --test-threads 1
//! ```
//!
//! The functional tests live next to the code (`src/store/disk/tests.rs`);
//! the 1 M-blob index and rebuild measurements are `index_bytes_per_blob`
//! and `rebuild_1m_small_blobs` there.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use reapi_cas::store::{DiskStore, DiskStoreConfig};
use reapi_core::blob_store::BlobStore;
use reapi_core::Digest;

const MIB: usize = 1 << 20;

fn content(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

async fn open(root: &std::path::Path, max_bytes: u64) -> DiskStore {
    DiskStore::open(DiskStoreConfig {
        root: root.to_owned(),
        max_bytes,
        retention: std::time::Duration::ZERO,
    })
    .await
    .unwrap()
}

fn gbps(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e9
}

/// One 64 MiB blob read as a stream, from the page cache. Target ≥ 1.5 GB/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn stream_read_64mib_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 40).await;
    let mut writes = Vec::new();
    let mut data = Bytes::new();
    for seed in 1..=5 {
        data = content(seed, 64 * MIB);
        let digest = Digest::of_bytes(&data);
        let mut writer = store.begin_write("", &digest).await.unwrap();
        let started = Instant::now();
        for chunk in data.chunks(64 * 1024) {
            writer.write(data.slice_ref(chunk)).await.unwrap();
        }
        writer.commit().await.unwrap();
        writes.push(gbps(data.len(), started.elapsed()));
    }
    let digest = Digest::of_bytes(&data);
    writes.sort_by(f64::total_cmp);
    println!(
        "streamed write of 64 MiB (64 KiB chunks, verify + fsync), 5 blobs: median {:.2} GB/s, \
         best {:.2}, worst {:.2}",
        writes[2], writes[4], writes[0]
    );

    let mut results = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let mut stream = store.read("", &digest, 0, None).await.unwrap();
        let mut total = 0;
        while let Some(chunk) = stream.next().await {
            total += chunk.unwrap().len();
        }
        assert_eq!(total, data.len());
        results.push(gbps(total, started.elapsed()));
    }
    results.sort_by(f64::total_cmp);
    println!(
        "stream read of 64 MiB: median {:.2} GB/s, best {:.2} GB/s, worst {:.2} GB/s",
        results[results.len() / 2],
        results[results.len() - 1],
        results[0]
    );
    let started = Instant::now();
    let whole = store.get("", &digest).await.unwrap();
    println!(
        "get of 64 MiB: {:.2} GB/s",
        gbps(whole.len(), started.elapsed())
    );
}

/// Small blobs written with `put` from several tasks: the cost of the two
/// syncs per blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn small_put_rate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 40).await;
    const TASKS: u64 = 16;
    const PER_TASK: u64 = 200;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let data = content(t * 1_000_000 + i, 1000);
                let digest = Digest::of_bytes(&data);
                store.put("", &digest, data).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let n = TASKS * PER_TASK;
    println!(
        "put of {n} 1000-byte blobs from {TASKS} tasks: {:.0} blobs/s",
        n as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(store.blob_count() as u64, n);
}

/// `find_missing` over a batch of 1000 digests, half present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn find_missing_rate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 40).await;
    let mut digests = Vec::new();
    for i in 0..1000u64 {
        let data = content(i, 100);
        let digest = Digest::of_bytes(&data);
        if i % 2 == 0 {
            store.put("", &digest, data).await.unwrap();
        }
        digests.push(digest);
    }
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        let missing = store.find_missing("", &digests).await.unwrap();
        assert_eq!(missing.len(), 500);
    }
    let elapsed = started.elapsed();
    println!(
        "find_missing: {:.0} ns per digest",
        elapsed.as_nanos() as f64 / (rounds as f64 * digests.len() as f64)
    );
}
