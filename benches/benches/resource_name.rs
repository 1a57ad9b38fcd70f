//! Parsing ByteStream resource names: once per Read and per Write.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reapi_core::resource_name::{ReadResource, WriteResource};
use reapi_core::Digest;

fn parse(c: &mut Criterion) {
    let digest = Digest::of_bytes(b"hello");
    let hash = digest.hash_hex();
    let cases = [
        ("read", format!("blobs/{hash}/5"), true),
        ("read/instance", format!("main/linux/blobs/{hash}/5"), true),
        (
            "write",
            format!("uploads/5a4b1a2e-0c1f-4f5e-9d4c-2f8c1e0b7a61/blobs/{hash}/5"),
            false,
        ),
        (
            "write/instance+metadata",
            format!(
                "main/linux/uploads/5a4b1a2e-0c1f-4f5e-9d4c-2f8c1e0b7a61/blobs/sha256/{hash}/5/bazel/meta"
            ),
            false,
        ),
    ];
    let mut group = c.benchmark_group("resource_name");
    group.throughput(Throughput::Elements(1));
    for (name, text, read) in &cases {
        if *read {
            group.bench_function(*name, |b| {
                b.iter(|| ReadResource::parse(black_box(text)).unwrap())
            });
        } else {
            group.bench_function(*name, |b| {
                b.iter(|| WriteResource::parse(black_box(text)).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
