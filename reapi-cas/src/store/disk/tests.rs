//! Behaviour of the whole store, on real directories.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use reapi_core::blob_store::{BlobStore, ChunkStream};
use reapi_core::Digest;
use tonic::Code;

use super::layout;
use super::{DiskStore, DiskStoreConfig};

pub(super) const MIB: usize = 1 << 20;

pub(super) async fn open(root: &Path, max_bytes: u64) -> DiskStore {
    open_with_retention(root, max_bytes, Duration::ZERO).await
}

pub(super) async fn open_with_retention(
    root: &Path,
    max_bytes: u64,
    retention: Duration,
) -> DiskStore {
    DiskStore::open(DiskStoreConfig {
        root: root.to_owned(),
        max_bytes,
        retention,
    })
    .await
    .unwrap()
}

/// Deterministic, incompressible-looking content.
fn content(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

pub(super) fn blob(seed: u64, len: usize) -> (Digest, Bytes) {
    let data = content(seed, len);
    (Digest::of_bytes(&data), data)
}

async fn collect(stream: ChunkStream) -> Vec<u8> {
    let chunks: Vec<Bytes> = stream.map(|c| c.unwrap()).collect().await;
    chunks.concat()
}

/// Files under `tmp/` (which holds shard directories of temp files).
pub(super) fn tmp_entries(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join("tmp")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push(path);
        }
    }
    files
}

/// Writes through `begin_write` in the given chunk sizes (cycled).
async fn write_chunked(
    store: &DiskStore,
    instance: &str,
    digest: &Digest,
    data: &Bytes,
    sizes: &[usize],
) -> reapi_core::Result<()> {
    let mut writer = store.begin_write(instance, digest).await?;
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + size).min(data.len());
        writer.write(data.slice(at..end)).await?;
        at = end;
        assert_eq!(writer.committed_size(), at as u64);
    }
    writer.commit().await
}

#[tokio::test]
async fn put_get_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (d, data) = blob(1, 1000);
    assert_eq!(store.find_missing("", &[d]).await.unwrap(), vec![d]);
    assert_eq!(store.get("", &d).await.unwrap_err().code(), Code::NotFound);
    store.put("", &d, data.clone()).await.unwrap();
    assert_eq!(store.get("", &d).await.unwrap(), data);
    assert!(store.find_missing("", &[d]).await.unwrap().is_empty());
    assert_eq!(store.blob_count(), 1);
    assert_eq!(store.used_bytes(), 1000);
    // Putting it again changes nothing.
    store.put("", &d, data.clone()).await.unwrap();
    assert_eq!(store.blob_count(), 1);
    assert_eq!(store.used_bytes(), 1000);
    assert!(tmp_entries(dir.path()).is_empty());
}

#[tokio::test]
async fn put_rejects_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (d, data) = blob(2, 100);
    let err = store.put("", &d, data.slice(1..)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let (other, _) = blob(3, 100);
    let err = store.put("", &other, data.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("hashes to"), "{err}");
    assert_eq!(store.blob_count(), 0);
    assert!(tmp_entries(dir.path()).is_empty());
}

#[tokio::test]
async fn streamed_write_in_odd_chunks_then_ranged_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let len = 3 * MIB + 12345;
    let (d, data) = blob(4, len);
    write_chunked(
        &store,
        "",
        &d,
        &data,
        &[1, 7, 4093, 65537, 1 << 20, 3 << 19, 0],
    )
    .await
    .unwrap();
    assert_eq!(store.get("", &d).await.unwrap(), data);
    let cases: [(usize, Option<usize>); 8] = [
        (0, None),
        (1, None),
        (MIB - 1, Some(2)),
        (MIB, Some(MIB)),
        (12345, Some(2 * MIB + 17)),
        (len - 1, None),
        (len - 10, Some(100)),
        (7, Some(0)),
    ];
    for (offset, limit) in cases {
        let stream = store
            .read("", &d, offset as u64, limit.map(|l| l as u64))
            .await
            .unwrap();
        let end = limit.map_or(len, |l| (offset + l).min(len));
        assert_eq!(
            collect(stream).await,
            &data[offset..end],
            "{offset} {limit:?}"
        );
    }
}

#[tokio::test]
async fn read_bounds_and_absence() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (d, data) = blob(5, 100);
    let err = store.read("", &d, 0, None).await.err().unwrap();
    assert_eq!(err.code(), Code::NotFound);
    store.put("", &d, data).await.unwrap();
    let err = store.read("", &d, 101, None).await.err().unwrap();
    assert_eq!(err.code(), Code::OutOfRange);
    let at_end = store.read("", &d, 100, None).await.unwrap();
    assert!(collect(at_end).await.is_empty());
}

#[tokio::test]
async fn commit_rejects_short_and_wrong_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (d, data) = blob(6, 2 * MIB + 5);

    // Short: more than a flush written, so the temp file exists.
    let mut w = store.begin_write("", &d).await.unwrap();
    w.write(data.slice(..data.len() - 1)).await.unwrap();
    let err = w.commit().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("received"), "{err}");

    // Right size, wrong content.
    let mut wrong = data.to_vec();
    wrong[MIB + 3] ^= 1;
    let mut w = store.begin_write("", &d).await.unwrap();
    w.write(Bytes::from(wrong)).await.unwrap();
    let err = w.commit().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("hashes to"), "{err}");

    assert_eq!(store.blob_count(), 0);
    assert_eq!(store.find_missing("", &[d]).await.unwrap(), vec![d]);
    assert!(tmp_entries(dir.path()).is_empty());
}

#[tokio::test]
async fn writing_past_the_size_fails_at_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (d, data) = blob(7, 10);
    let mut w = store.begin_write("", &d).await.unwrap();
    w.write(data.slice(..6)).await.unwrap();
    let err = w.write(data.slice(..6)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(w.committed_size(), 6);
    // The rejected chunk was not taken: the rest still completes the blob.
    w.write(data.slice(6..)).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(store.get("", &d).await.unwrap(), data);
}

#[tokio::test]
async fn dropped_writer_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (d, data) = blob(8, 3 * MIB);
    let mut w = store.begin_write("", &d).await.unwrap();
    w.write(data.slice(..MIB)).await.unwrap();
    w.write(data.slice(MIB..2 * MIB + 1)).await.unwrap();
    drop(w);
    // A batch may still be finishing on the blocking pool.
    for _ in 0..100 {
        if tmp_entries(dir.path()).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(tmp_entries(dir.path()).is_empty());
    assert_eq!(store.blob_count(), 0);
    assert_eq!(store.find_missing("", &[d]).await.unwrap(), vec![d]);
}

#[tokio::test]
async fn empty_blob_is_always_present_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let e = Digest::EMPTY;
    assert!(store.find_missing("", &[e]).await.unwrap().is_empty());
    assert!(store
        .find_missing("never-seen", &[e])
        .await
        .unwrap()
        .is_empty());
    assert!(store.get("x", &e).await.unwrap().is_empty());
    assert!(collect(store.read("x", &e, 0, None).await.unwrap())
        .await
        .is_empty());
    let err = store.read("x", &e, 1, None).await.err().unwrap();
    assert_eq!(err.code(), Code::OutOfRange);
    store.put("", &e, Bytes::new()).await.unwrap();
    let err = store
        .put("", &e, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let w = store.begin_write("", &e).await.unwrap();
    w.commit().await.unwrap();
    let mut w = store.begin_write("", &e).await.unwrap();
    assert_eq!(
        w.write(Bytes::from_static(b"x")).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(store.blob_count(), 0);
    assert_eq!(store.used_bytes(), 0);
    assert_eq!(store.blob_path("", &e), None);
    assert!(tmp_entries(dir.path()).is_empty());
}

#[tokio::test]
async fn instances_are_separate_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "a",
        "b",
        "",
        "team/linux x86",
        ".",
        "..",
        "_",
        "Ünï/cödé/..",
        "%2f",
    ];
    let (d, data) = blob(9, 300);
    {
        let store = open(dir.path(), 1 << 30).await;
        store.put("a", &d, data.clone()).await.unwrap();
        assert!(store.find_missing("a", &[d]).await.unwrap().is_empty());
        assert_eq!(store.find_missing("b", &[d]).await.unwrap(), vec![d]);
        assert_eq!(store.get("b", &d).await.unwrap_err().code(), Code::NotFound);
        assert!(store.blob_path("b", &d).is_none());
        for (i, name) in names.iter().enumerate().skip(1) {
            let (d, data) = blob(100 + i as u64, 10 + i);
            store.put(name, &d, data).await.unwrap();
        }
        store.put("b", &d, data.clone()).await.unwrap();
        assert_eq!(store.blob_count(), names.len() + 1);
        let a = store.blob_path("a", &d).unwrap();
        let b = store.blob_path("b", &d).unwrap();
        assert_ne!(a, b);
    }
    let store = open(dir.path(), 1 << 30).await;
    assert_eq!(store.blob_count(), names.len() + 1);
    assert_eq!(store.get("a", &d).await.unwrap(), data);
    assert_eq!(store.get("b", &d).await.unwrap(), data);
    for (i, name) in names.iter().enumerate().skip(1) {
        let (d, data) = blob(100 + i as u64, 10 + i);
        assert_eq!(store.get(name, &d).await.unwrap(), data, "{name:?}");
        // Not visible under any other name.
        for other in names.iter().filter(|o| *o != name) {
            if *other != "a" && *other != "b" {
                assert_eq!(store.find_missing(other, &[d]).await.unwrap(), vec![d]);
            }
        }
    }
}

#[tokio::test]
async fn overlong_instance_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (d, data) = blob(10, 10);
    let name = "x/".repeat(100);
    let err = store.put(&name, &d, data).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = store.begin_write(&name, &d).await.err().unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(store.find_missing(&name, &[d]).await.unwrap(), vec![d]);
}

#[tokio::test]
async fn evicts_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1000).await;
    let blobs: Vec<(Digest, Bytes)> = (0..12).map(|i| blob(200 + i, 100)).collect();
    for (d, data) in &blobs[..10] {
        store.put("", d, data.clone()).await.unwrap();
    }
    assert_eq!(store.used_bytes(), 1000);
    // Use the two oldest: 0 through find_missing, 1 through get; 2 through read.
    assert!(store
        .find_missing("", &[blobs[0].0])
        .await
        .unwrap()
        .is_empty());
    store.get("", &blobs[1].0).await.unwrap();
    collect(store.read("", &blobs[2].0, 0, None).await.unwrap()).await;
    // Not through blob_path, which would refresh it.
    let evicted_path = dir
        .path()
        .join("cas/@default")
        .join(layout::shard_dir_name(&blobs[3].0))
        .join(layout::blob_file_name(&blobs[3].0));
    assert!(evicted_path.exists());
    // 1100 bytes: over budget; evict to at most 950.
    store
        .put("", &blobs[10].0, blobs[10].1.clone())
        .await
        .unwrap();
    assert_eq!(store.used_bytes(), 900);
    assert_eq!(store.blob_count(), 9);
    let all: Vec<Digest> = blobs[..11].iter().map(|(d, _)| *d).collect();
    assert_eq!(
        store.find_missing("", &all).await.unwrap(),
        vec![blobs[3].0, blobs[4].0]
    );
    assert!(!evicted_path.exists());
    // Through a streamed write too.
    write_chunked(&store, "", &blobs[11].0, &blobs[11].1, &[33])
        .await
        .unwrap();
    assert_eq!(store.used_bytes(), 1000);
}

#[tokio::test]
async fn the_blob_just_written_is_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 100).await;
    let (small, small_data) = blob(300, 60);
    let (big, big_data) = blob(301, 97);
    store.put("", &small, small_data).await.unwrap();
    store.put("", &big, big_data.clone()).await.unwrap();
    // 97 is over the low-water mark (95) but is the blob just written.
    assert_eq!(
        store.find_missing("", &[small, big]).await.unwrap(),
        vec![small]
    );
    assert_eq!(store.used_bytes(), 97);
    assert_eq!(store.get("", &big).await.unwrap(), big_data);
}

#[tokio::test]
async fn a_blob_larger_than_the_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 100).await;
    let (d, data) = blob(11, 101);
    let err = store.begin_write("", &d).await.err().unwrap();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let err = store.put("", &d, data).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(store.blob_count(), 0);
    assert!(tmp_entries(dir.path()).is_empty());
    let (fits, data) = blob(12, 100);
    store.put("", &fits, data).await.unwrap();
}

#[tokio::test]
async fn restart_rebuilds_index_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut stored = Vec::new();
    {
        let store = open(root, 1 << 30).await;
        for i in 0..50u64 {
            let instance = if i % 2 == 0 { "" } else { "ci/linux" };
            let (d, data) = blob(400 + i, 10 + i as usize * 7);
            store.put(instance, &d, data.clone()).await.unwrap();
            stored.push((instance, d, data));
        }
    }
    let cas = root.join("cas");
    // Crash leftovers and junk.
    std::fs::write(root.join("tmp/0123abcd"), b"half a blob").unwrap();
    std::fs::create_dir_all(root.join("tmp/ab")).unwrap();
    std::fs::write(root.join("tmp/ab/0123abcd"), b"half a blob").unwrap();
    std::fs::create_dir(root.join("tmp/somedir")).unwrap();
    let (d, _) = blob(999, 10);
    let shard = cas.join("@default").join(layout::shard_dir_name(&d));
    std::fs::create_dir_all(&shard).unwrap();
    let junk = [
        shard.join("not-a-blob"),
        shard.join(format!("{}-10.tmp", d.hash_hex())),
        shard.join(format!("{}-11", d.hash_hex())), // wrong length
        cas.join("@default")
            .join("zz")
            .join(format!("{}-10", d.hash_hex())), // wrong shard
        cas.join("@default").join("stray-file"),
        cas.join("Bad Instance").join("00").join("x"),
        cas.join("%61").join("00").join("x"), // not canonical: "a"
        cas.join("stray"),
    ];
    for path in &junk {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"0123456789").unwrap();
    }

    let store = open(root, 1 << 30).await;
    assert_eq!(store.blob_count(), 50);
    let total: u64 = stored.iter().map(|(_, d, _)| d.size()).sum();
    assert_eq!(store.used_bytes(), total);
    for (instance, d, data) in &stored {
        assert_eq!(&store.get(instance, d).await.unwrap(), data);
    }
    assert!(tmp_entries(root).is_empty());
    for path in &junk {
        assert!(!path.exists(), "{}", path.display());
    }
    assert!(!cas.join("Bad Instance").exists());
    assert!(!cas.join("%61").exists());
    assert!(!cas.join("@default").join("zz").exists());
}

#[tokio::test]
async fn restart_orders_blobs_by_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<(Digest, Bytes)> = (0..4).map(|i| blob(500 + i, 100)).collect();
    {
        let store = open(dir.path(), 1 << 30).await;
        for (d, data) in &blobs {
            store.put("", d, data.clone()).await.unwrap();
        }
        // Blob 3 is the oldest, then 0, 1, 2.
        let base =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for (i, order) in [(3, 0u64), (0, 1), (1, 2), (2, 3)] {
            let path = store.blob_path("", &blobs[i].0).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            file.set_modified(base + std::time::Duration::from_secs(order))
                .unwrap();
        }
    }
    // 500 bytes against 450: evicts one blob.
    let store = open(dir.path(), 450).await;
    let (d, data) = blob(510, 100);
    store.put("", &d, data).await.unwrap();
    let all: Vec<Digest> = blobs.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        store.find_missing("", &all).await.unwrap(),
        vec![blobs[3].0]
    );
}

#[tokio::test]
async fn content_files_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (small, data) = blob(13, 10);
    store.put("", &small, data).await.unwrap();
    let (large, data) = blob(14, MIB + 1);
    write_chunked(&store, "i", &large, &data, &[4096])
        .await
        .unwrap();
    for (instance, d) in [("", small), ("i", large)] {
        let path = store.blob_path(instance, &d).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444, "{}", path.display());
        assert!(path.starts_with(dir.path().join("cas")));
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            layout::blob_file_name(&d)
        );
    }
}

#[tokio::test]
async fn a_file_deleted_behind_the_stores_back_reads_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (d, data) = blob(15, 100);
    store.put("", &d, data.clone()).await.unwrap();
    std::fs::remove_file(store.blob_path("", &d).unwrap()).unwrap();
    assert_eq!(store.get("", &d).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(store.blob_count(), 0);
    assert_eq!(store.used_bytes(), 0);
    assert_eq!(store.find_missing("", &[d]).await.unwrap(), vec![d]);
    store.put("", &d, data.clone()).await.unwrap();
    assert_eq!(store.get("", &d).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_of_the_same_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30).await;
    let (d, data) = blob(16, 2 * MIB + 3);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store.put("", &d, data).await
            } else {
                write_chunked(&store, "", &d, &data, &[65536 + i]).await
            }
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.blob_count(), 1);
    assert_eq!(store.used_bytes(), d.size());
    assert_eq!(store.get("", &d).await.unwrap(), data);
    assert!(tmp_entries(dir.path()).is_empty());
}

/// Unmounts a tmpfs when dropped, so a failing test leaves no mount behind.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs(dir.to_owned())),
            _ => None,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[tokio::test]
async fn disk_full_is_resource_exhausted_and_leaves_the_store_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(dir.path(), "1m") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("cannot mount a tmpfs (not root?); the disk-full test must run in CI");
        }
        eprintln!("skipping the disk-full test: cannot mount a tmpfs (not root?)");
        return;
    };
    let root = dir.path().join("store");
    let store = open(&root, 1 << 30).await;
    let (kept, kept_data) = blob(17, 1000);
    store.put("", &kept, kept_data.clone()).await.unwrap();

    // Streamed: the error comes at a write or at commit.
    let (big, big_data) = blob(18, 2 * MIB);
    let result = write_chunked(&store, "", &big, &big_data, &[65536]).await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    // Whole buffer.
    let err = store.put("", &big, big_data.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    assert!(tmp_entries(&root).is_empty());
    assert_eq!(store.blob_count(), 1);
    assert_eq!(store.used_bytes(), 1000);
    assert_eq!(
        store.find_missing("", &[big, kept]).await.unwrap(),
        vec![big]
    );
    assert_eq!(store.get("", &kept).await.unwrap(), kept_data);
    // The space of the failed writes was freed: a blob of most of the disk fits.
    let (fits, fits_data) = blob(19, 700 * 1024);
    write_chunked(&store, "", &fits, &fits_data, &[65536])
        .await
        .unwrap();
    assert_eq!(store.get("", &fits).await.unwrap(), fits_data);
    drop(store);
}

/// Content files under `cas/`, with their total size.
fn content_files(root: &Path) -> (usize, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut dirs = vec![root.join("cas")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            } else {
                files += 1;
                bytes += entry.metadata().unwrap().len();
            }
        }
    }
    (files, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_use_under_eviction_keeps_index_and_files_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 20_000).await;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..60u64 {
                // Overlapping blobs between tasks, so writes race with
                // evictions and reads of the same blob.
                let (d, data) = blob(1000 + (t * 60 + i) % 150, 200 + (i as usize % 7) * 100);
                let instance = if i % 3 == 0 { "x" } else { "" };
                if i % 2 == 0 {
                    store.put(instance, &d, data.clone()).await.unwrap();
                } else {
                    write_chunked(&store, instance, &d, &data, &[97])
                        .await
                        .unwrap();
                }
                // The blob may already be evicted by another task's commit,
                // but when it is read, it is whole.
                match store.get(instance, &d).await {
                    Ok(got) => assert_eq!(got, data),
                    Err(e) => assert_eq!(e.code(), Code::NotFound),
                }
                store.find_missing(instance, &[d]).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(store.used_bytes() <= 20_000);
    let (files, bytes) = content_files(dir.path());
    assert_eq!(files, store.blob_count());
    assert_eq!(bytes, store.used_bytes());
    assert!(tmp_entries(dir.path()).is_empty());
    let (count, used) = (store.blob_count(), store.used_bytes());
    drop(store);
    let store = open(dir.path(), 20_000).await;
    assert_eq!((store.blob_count(), store.used_bytes()), (count, used));
}

const HOUR: Duration = Duration::from_secs(3600);

/// Whether a blob of the default instance has its content file, without
/// touching it (unlike `find_missing` or `blob_path`).
pub(super) fn on_disk(root: &Path, digest: &Digest) -> bool {
    root.join("cas/@default")
        .join(layout::shard_dir_name(digest))
        .join(layout::blob_file_name(digest))
        .exists()
}

#[tokio::test]
async fn retention_evicts_only_blobs_unused_for_the_retention_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let blobs: Vec<(Digest, Bytes)> = (0..16).map(|i| blob(600 + i, 100)).collect();
    {
        let store = open(root, 1 << 30).await;
        for (d, data) in &blobs[..10] {
            store.put("", d, data.clone()).await.unwrap();
        }
        // Blobs 0..6 were written two hours ago (0 first), 6..10 just now.
        let two_hours_ago = SystemTime::now() - 2 * HOUR;
        for (i, (d, _)) in blobs[..6].iter().enumerate() {
            let file = std::fs::File::open(store.blob_path("", d).unwrap()).unwrap();
            file.set_modified(two_hours_ago + Duration::from_secs(i as u64))
                .unwrap();
        }
    }
    // After the restart, 6..10 are protected by their mtimes.
    let store = open_with_retention(root, 1000, HOUR).await;
    assert_eq!(store.retention(), HOUR);
    assert_eq!(store.used_bytes(), 1000);
    // FindMissingBlobs protects blob 0 again.
    assert!(store
        .find_missing("", &[blobs[0].0])
        .await
        .unwrap()
        .is_empty());
    let present = |range: std::ops::Range<usize>| -> Vec<usize> {
        range.filter(|&i| on_disk(root, &blobs[i].0)).collect()
    };

    // 1100 bytes: room is made down to 850 before the write, from the
    // least recently used unprotected blobs.
    store
        .put("", &blobs[10].0, blobs[10].1.clone())
        .await
        .unwrap();
    assert_eq!(present(0..11), [0, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(store.used_bytes(), 900);
    store
        .put("", &blobs[11].0, blobs[11].1.clone())
        .await
        .unwrap();
    // Streamed: room is made at begin_write.
    write_chunked(&store, "", &blobs[12].0, &blobs[12].1, &[33])
        .await
        .unwrap();
    assert_eq!(present(0..13), [0, 5, 6, 7, 8, 9, 10, 11, 12]);
    store
        .put("", &blobs[13].0, blobs[13].1.clone())
        .await
        .unwrap();
    // Only blob 5 is left to evict; 6, next in LRU order, is protected.
    store
        .put("", &blobs[14].0, blobs[14].1.clone())
        .await
        .unwrap();
    assert_eq!(present(0..15), [0, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    assert_eq!((store.blob_count(), store.used_bytes()), (10, 1000));

    // Everything left is protected: a new blob is refused.
    let err = store
        .put("", &blobs[15].0, blobs[15].1.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert_eq!(present(0..16), [0, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    assert!(tmp_entries(root).is_empty());
}

#[tokio::test]
async fn a_store_full_of_protected_blobs_refuses_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = open_with_retention(root, 4 * MIB as u64, HOUR).await;
    let blobs: Vec<(Digest, Bytes)> = (0..4).map(|i| blob(700 + i, MIB)).collect();
    store
        .put("", &blobs[0].0, blobs[0].1.clone())
        .await
        .unwrap();
    store
        .put("", &blobs[1].0, blobs[1].1.clone())
        .await
        .unwrap();
    // A streamed write that fits when it starts, past its first flush (so
    // its temp file exists) ...
    let (late, late_data) = blob(710, MIB + 10);
    let mut writer = store.begin_write("", &late).await.unwrap();
    writer.write(late_data.slice(..MIB)).await.unwrap();
    writer.suspend().await.unwrap();
    writer.resume();
    // ... while another write fills the store exactly, counting the temp
    // file's megabyte; its last 10 bytes do not fit.
    store
        .put("", &blobs[2].0, blobs[2].1.clone())
        .await
        .unwrap();
    assert_eq!(store.used_bytes() + store.temp_bytes(), 4 * MIB as u64);
    writer.write(late_data.slice(MIB..)).await.unwrap();
    let err = writer.commit().await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(
        err.to_string()
            .contains("disk store is full of blobs protected for the retention time of 1h"),
        "{err}"
    );
    assert!(tmp_entries(root).is_empty());
    assert_eq!(store.temp_bytes(), 0);
    store
        .put("", &blobs[3].0, blobs[3].1.clone())
        .await
        .unwrap();
    assert_eq!(store.used_bytes(), 4 * MIB as u64);

    // New blobs are refused up front, whole or streamed, before any byte
    // is written.
    let (new, new_data) = blob(711, 100);
    let err = store.put("", &new, new_data.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let err = store.begin_write("", &new).await.err().unwrap();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(tmp_entries(root).is_empty());

    // Blobs already stored are written again without trouble.
    store
        .put("", &blobs[0].0, blobs[0].1.clone())
        .await
        .unwrap();
    write_chunked(&store, "", &blobs[1].0, &blobs[1].1, &[65536])
        .await
        .unwrap();
    assert_eq!(store.blob_count(), 4);
    assert_eq!(store.used_bytes(), 4 * MIB as u64);
    assert!(tmp_entries(root).is_empty());
    assert_eq!(
        store
            .find_missing("", &[new, late, blobs[3].0])
            .await
            .unwrap(),
        vec![new, late]
    );
    assert_eq!(store.get("", &blobs[3].0).await.unwrap(), blobs[3].1);
}

#[tokio::test]
async fn without_retention_a_full_store_evicts_instead() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = open(root, 1000).await;
    assert_eq!(store.retention(), Duration::ZERO);
    let blobs: Vec<(Digest, Bytes)> = (0..11).map(|i| blob(750 + i, 100)).collect();
    for (d, data) in &blobs {
        store.put("", d, data.clone()).await.unwrap();
    }
    // Written a moment ago, yet evicted: 1100 bytes down to 900.
    assert!(!on_disk(root, &blobs[0].0));
    assert!(!on_disk(root, &blobs[1].0));
    assert!(blobs[2..].iter().all(|(d, _)| on_disk(root, d)));
    assert_eq!(store.used_bytes(), 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_expires_after_the_retention_time() {
    const RETENTION: Duration = Duration::from_millis(200);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = open_with_retention(root, 1000, RETENTION).await;
    let started = Instant::now();
    let blobs: Vec<(Digest, Bytes)> = (0..10).map(|i| blob(800 + i, 100)).collect();
    for (d, data) in &blobs {
        store.put("", d, data.clone()).await.unwrap();
    }
    let (new, new_data) = blob(810, 100);
    match store.put("", &new, new_data.clone()).await {
        Err(err) => assert_eq!(err.code(), Code::ResourceExhausted, "{err}"),
        // Only a machine too slow to write ten blobs within the retention
        // time may get here.
        Ok(()) => assert!(
            started.elapsed() >= RETENTION,
            "a protected blob was evicted"
        ),
    }
    tokio::time::sleep(RETENTION + Duration::from_millis(100)).await;
    // Unprotected now: the least recently used make room as without retention.
    store.put("", &new, new_data).await.unwrap();
    assert!(!on_disk(root, &blobs[0].0));
    assert!(!on_disk(root, &blobs[1].0));
    assert!(blobs[2..].iter().all(|(d, _)| on_disk(root, d)));
    assert!(on_disk(root, &new));
    assert_eq!(store.used_bytes(), 900);
}
