//! Action-cache hits: the memory cache, the disk cache (with its memory
//! layer in front), and the layer the server runs, which also checks that
//! the outputs are still in the CAS.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reapi_benches::content::BlobFactory;
use reapi_cas::action_cache::{
    CompletenessCheckingActionCache, DiskActionCache, MemoryActionCache,
};
use reapi_cas::store::{DiskStore, DiskStoreConfig};
use reapi_core::proto::remote_execution::{ActionResult, ExecutedActionMetadata, OutputFile};
use reapi_core::{ActionCache, BlobStore, Digest};

const I: &str = "main";

fn result(outputs: &[Digest]) -> ActionResult {
    ActionResult {
        output_files: outputs[1..]
            .iter()
            .enumerate()
            .map(|(i, d)| OutputFile {
                path: format!("out/file{i}"),
                digest: Some(d.to_proto()),
                ..Default::default()
            })
            .collect(),
        stdout_digest: Some(outputs[0].to_proto()),
        execution_metadata: Some(ExecutedActionMetadata {
            worker: "bench".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn caches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        rt.block_on(DiskStore::open(DiskStoreConfig {
            root: dir.path().join("cas"),
            max_bytes: 1 << 30,
            retention: std::time::Duration::ZERO,
        }))
        .expect("open disk store"),
    );
    let factory = BlobFactory::new(1024, 0xac);
    let outputs: Vec<Digest> = (0..3u64)
        .map(|n| {
            let blob = factory.blob(n);
            rt.block_on(store.put(I, &blob.digest, Bytes::from(blob.to_vec())))
                .unwrap();
            blob.digest
        })
        .collect();
    let result = result(&outputs);
    let key = Digest::of_bytes(b"an action");
    let absent = Digest::of_bytes(b"another action");

    let memory = MemoryActionCache::new(64 << 20);
    rt.block_on(memory.put(I, &key, &result)).unwrap();
    let disk = Arc::new(DiskActionCache::open(dir.path().join("ac")).expect("open ac"));
    rt.block_on(disk.put(I, &key, &result)).unwrap();
    let checked =
        CompletenessCheckingActionCache::new(disk.clone(), store.clone() as Arc<dyn BlobStore>);

    let mut group = c.benchmark_group("action_cache");
    group.throughput(Throughput::Elements(1));
    group.bench_function("memory lookup hit (Arc)", |b| {
        b.iter(|| memory.lookup(I, black_box(&key)).unwrap())
    });
    group.bench_function("memory get hit", |b| {
        b.iter(|| {
            rt.block_on(memory.get(I, black_box(&key)))
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("disk get hit", |b| {
        b.iter(|| rt.block_on(disk.get(I, black_box(&key))).unwrap().unwrap())
    });
    group.bench_function("disk get miss", |b| {
        b.iter(|| {
            assert!(rt
                .block_on(disk.get(I, black_box(&absent)))
                .unwrap()
                .is_none())
        })
    });
    group.bench_function("completeness+disk get hit (server path)", |b| {
        b.iter(|| {
            rt.block_on(checked.get(I, black_box(&key)))
                .unwrap()
                .unwrap()
        })
    });
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    let mut n = 0u64;
    group.bench_function("disk put (synced)", |b| {
        b.iter(|| {
            n += 1;
            let key = Digest::of_bytes(&n.to_le_bytes());
            rt.block_on(disk.put(I, &key, &result)).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, caches);
criterion_main!(benches);
