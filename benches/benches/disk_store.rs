//! The disk store in a temporary directory: put (a durable, synced write),
//! get, has, and find_missing of 10 000 present digests.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reapi_benches::content::BlobFactory;
use reapi_cas::store::{DiskStore, DiskStoreConfig};
use reapi_core::{BlobStore, Digest};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn store(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(DiskStore::open(DiskStoreConfig {
            root: dir.path().join("cas"),
            max_bytes: 64 << 30,
            retention: std::time::Duration::ZERO,
        }))
        .expect("open disk store");
    const I: &str = "";

    let mut group = c.benchmark_group("disk_store");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for (name, size) in [("4KiB", 4usize << 10), ("1MiB", 1 << 20)] {
        let factory = BlobFactory::new(size, 0xd15c ^ size as u64);
        let next = AtomicU64::new(0);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("put new {name}"), |b| {
            b.iter_batched(
                || {
                    let blob = factory.blob(next.fetch_add(1, Ordering::Relaxed));
                    (blob.digest, Bytes::from(blob.to_vec()))
                },
                |(digest, data)| rt.block_on(store.put(I, &digest, data)).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
        let present = factory.blob(u64::MAX);
        let data = Bytes::from(present.to_vec());
        rt.block_on(store.put(I, &present.digest, data.clone()))
            .unwrap();
        group.bench_function(format!("put existing {name}"), |b| {
            b.iter(|| {
                rt.block_on(store.put(I, &present.digest, data.clone()))
                    .unwrap()
            })
        });
        group.bench_function(format!("get {name}"), |b| {
            b.iter(|| {
                rt.block_on(store.get(I, black_box(&present.digest)))
                    .unwrap()
            })
        });
    }
    group.finish();

    // has / find_missing over 10 000 small present blobs.
    let factory = BlobFactory::new(32, 0xf1d);
    let digests: Vec<Digest> = (0..10_000u64).map(|n| factory.blob(n).digest).collect();
    rt.block_on(async {
        for n in 0..10_000u64 {
            let blob = factory.blob(n);
            store
                .put(I, &blob.digest, Bytes::from(blob.to_vec()))
                .await
                .unwrap();
        }
    });
    let mut group = c.benchmark_group("disk_store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("has (find_missing of 1 present)", |b| {
        b.iter(|| {
            let missing = rt
                .block_on(store.find_missing(I, black_box(&digests[..1])))
                .unwrap();
            assert!(missing.is_empty());
        })
    });
    group.throughput(Throughput::Elements(digests.len() as u64));
    group.bench_function("find_missing of 10000 present", |b| {
        b.iter(|| {
            let missing = rt
                .block_on(store.find_missing(I, black_box(&digests)))
                .unwrap();
            assert!(missing.is_empty());
        })
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
