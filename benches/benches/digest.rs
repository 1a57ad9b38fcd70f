//! SHA-256 and BLAKE3 digests of blobs held in memory (what every verified
//! write pays), and digest parsing and printing (what every request pays per
//! digest it names).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reapi_benches::content::fill_random;
use reapi_core::{Digest, DigestFunction};

fn hashing(c: &mut Criterion) {
    for function in DigestFunction::ALL {
        let mut group = c.benchmark_group(format!("digest/{function}"));
        for (name, size) in [
            ("1KiB", 1usize << 10),
            ("1MiB", 1 << 20),
            ("64MiB", 64 << 20),
        ] {
            let mut data = vec![0u8; size];
            fill_random(&mut data, 1);
            group.throughput(Throughput::Bytes(size as u64));
            if size >= 64 << 20 {
                group.sample_size(10);
            }
            group.bench_with_input(BenchmarkId::from_parameter(name), &data, |b, data| {
                b.iter(|| function.digest_of(black_box(data)))
            });
        }
        group.finish();
    }
}

fn parsing(c: &mut Criterion) {
    let digest = Digest::of_bytes(b"hello");
    let proto = digest.to_proto();
    let mut group = c.benchmark_group("digest");
    group.throughput(Throughput::Elements(1));
    group.bench_function("from_proto", |b| {
        b.iter(|| Digest::from_proto(DigestFunction::Sha256, black_box(&proto)).unwrap())
    });
    group.bench_function("to_proto", |b| b.iter(|| black_box(&digest).to_proto()));
    group.finish();
}

criterion_group!(benches, hashing, parsing);
criterion_main!(benches);
