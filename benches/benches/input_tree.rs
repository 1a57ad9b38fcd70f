//! Validating one `Directory` message of an input tree with 1000 entries:
//! what Execute pays per directory before queueing an action.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reapi_core::input_tree::validate_directory;
use reapi_core::proto::remote_execution::{Directory, DirectoryNode, FileNode, SymlinkNode};
use reapi_core::Digest;

fn files_only(n: usize) -> Directory {
    Directory {
        files: (0..n)
            .map(|i| FileNode {
                name: format!("file{i:05}.o"),
                digest: Some(Digest::of_bytes(&i.to_le_bytes()).to_proto()),
                is_executable: i % 7 == 0,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// 800 files, 150 directories and 50 relative symlinks, names unique
/// across the three lists.
fn mixed() -> Directory {
    let digest = |i: usize| Some(Digest::of_bytes(&i.to_le_bytes()).to_proto());
    Directory {
        files: (0..800)
            .map(|i| FileNode {
                name: format!("f{i:05}"),
                digest: digest(i),
                ..Default::default()
            })
            .collect(),
        directories: (0..150)
            .map(|i| DirectoryNode {
                name: format!("d{i:05}"),
                digest: digest(10_000 + i),
            })
            .collect(),
        symlinks: (0..50)
            .map(|i| SymlinkNode {
                name: format!("s{i:05}"),
                target: format!("../sibling/f{i:05}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("input_tree/validate_directory");
    group.throughput(Throughput::Elements(1000));
    let files = files_only(1000);
    group.bench_function("1000 files", |b| {
        b.iter(|| validate_directory(black_box(&files), "a/b", true).unwrap())
    });
    let mixed = mixed();
    group.bench_function("800 files, 150 dirs, 50 symlinks", |b| {
        b.iter(|| validate_directory(black_box(&mixed), "a/b", true).unwrap())
    });
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
