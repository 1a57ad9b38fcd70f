//! The budget with unfinished writes: bytes in temp files count, a write
//! in progress evicts as it goes, and suspended uploads are given up,
//! oldest first, when evicting blobs cannot make room or when they hold
//! over a quarter of the budget.

use std::time::Duration;

use bytes::Bytes;
use reapi_core::blob_store::{BlobStore, BlobWriter};
use reapi_core::Digest;

use super::tests::{blob, on_disk, open, open_with_retention, tmp_entries, MIB};

const HOUR: Duration = Duration::from_secs(3600);

/// Starts a write of `data`, sends its first `sent` bytes and suspends it,
/// as the ByteStream service parks an upload whose stream broke.
async fn suspended_upload(
    store: &super::DiskStore,
    (digest, data): &(Digest, Bytes),
    sent: usize,
) -> Box<dyn BlobWriter> {
    let mut writer = store.begin_write("", digest).await.unwrap();
    writer.write(data.slice(..sent)).await.unwrap();
    writer.suspend().await.unwrap();
    assert_eq!(writer.committed_size(), sent as u64);
    writer
}

/// Resumes a suspended upload where it says, sends the rest and commits.
async fn finish(mut writer: Box<dyn BlobWriter>, data: &Bytes) -> u64 {
    writer.resume();
    let from = writer.committed_size();
    writer.write(data.slice(from as usize..)).await.unwrap();
    writer.commit().await.unwrap();
    from
}

#[tokio::test]
async fn a_write_in_progress_evicts_as_it_goes_and_spares_suspended_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = open(root, 16 * MIB as u64).await;
    let parked_blob = blob(900, 2 * MIB);
    let parked = suspended_upload(&store, &parked_blob, MIB).await;
    let blobs: Vec<(Digest, Bytes)> = (0..13).map(|i| blob(910 + i, MIB)).collect();
    for (digest, data) in &blobs {
        store.put("", digest, data.clone()).await.unwrap();
    }
    // 13 MiB stored, 1 MiB parked: 2 MiB left.
    assert_eq!(store.used_bytes(), 13 * MIB as u64);
    assert_eq!(store.temp_bytes(), MIB as u64);

    // 3 MiB of a new blob, before its commit, push out the oldest blobs
    // (down to 95 % of the budget).
    let big = blob(920, 4 * MIB);
    let mut writer = store.begin_write("", &big.0).await.unwrap();
    writer.write(big.1.slice(..3 * MIB)).await.unwrap();
    writer.suspend().await.unwrap();
    assert_eq!(store.temp_bytes(), 4 * MIB as u64);
    assert_eq!(store.used_bytes(), 11 * MIB as u64);
    assert!(!on_disk(root, &blobs[0].0) && !on_disk(root, &blobs[1].0));
    assert!(blobs[2..].iter().all(|(digest, _)| on_disk(root, digest)));

    // Blobs could make the room, so the parked upload kept its data.
    assert_eq!(finish(parked, &parked_blob.1).await, MIB as u64);
    assert_eq!(finish(writer, &big.1).await, 3 * MIB as u64);
    assert_eq!(store.get("", &parked_blob.0).await.unwrap(), parked_blob.1);
    assert_eq!(store.get("", &big.0).await.unwrap(), big.1);
    assert_eq!(store.temp_bytes(), 0);
    assert!(store.used_bytes() <= 16 * MIB as u64);
    assert!(tmp_entries(root).is_empty());
}

#[tokio::test]
async fn protected_blobs_leaving_no_room_cost_the_oldest_suspended_upload() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = open_with_retention(root, 16 * MIB as u64, HOUR).await;
    let (older_blob, newer_blob) = (blob(930, 3 * MIB), blob(931, 3 * MIB));
    let older = suspended_upload(&store, &older_blob, 2 * MIB).await;
    let newer = suspended_upload(&store, &newer_blob, 2 * MIB).await;
    // 4 MiB suspended, a quarter of the budget: both kept.
    assert_eq!(store.temp_bytes(), 4 * MIB as u64);

    // Protected blobs fill the rest, then one more needs room: nothing
    // stored may go, so the older upload's data do.
    let blobs: Vec<(Digest, Bytes)> = (0..13).map(|i| blob(940 + i, MIB)).collect();
    for (digest, data) in &blobs {
        store.put("", digest, data.clone()).await.unwrap();
    }
    assert_eq!(store.used_bytes(), 13 * MIB as u64);
    assert_eq!(store.temp_bytes(), 2 * MIB as u64);
    assert!(blobs.iter().all(|(digest, _)| on_disk(root, digest)));
    assert_eq!(tmp_entries(root).len(), 1);

    // The given-up upload says 0 and takes the whole blob again; the
    // other resumes where it was.
    assert_eq!(older.committed_size(), 0);
    assert_eq!(newer.committed_size(), 2 * MIB as u64);
    assert_eq!(finish(newer, &newer_blob.1).await, 2 * MIB as u64);
    assert_eq!(store.get("", &newer_blob.0).await.unwrap(), newer_blob.1);
    // The store has no room left for the older blob: refused as any new
    // blob would be, and nothing is left of it.
    let mut older = older;
    older.resume();
    assert_eq!(older.committed_size(), 0);
    let refused = older.write(older_blob.1.clone()).await;
    let refused = match refused {
        Err(err) => err,
        Ok(()) => older.commit().await.unwrap_err(),
    };
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert_eq!(store.temp_bytes(), 0);
    assert!(tmp_entries(root).is_empty());
}

#[tokio::test]
async fn a_given_up_upload_starts_again_and_stores_the_right_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = open(root, 16 * MIB as u64).await;
    let uploads: Vec<(Digest, Bytes)> = (0..3).map(|i| blob(960 + i, 2 * MIB)).collect();
    let first = suspended_upload(&store, &uploads[0], MIB + 5).await;
    let second = suspended_upload(&store, &uploads[1], 2 * MIB - 1).await;
    // Over a quarter (4 MiB) with the third: the first goes.
    let third = suspended_upload(&store, &uploads[2], 2 * MIB - 1).await;
    assert_eq!(first.committed_size(), 0);
    assert_eq!(store.temp_bytes(), 2 * (2 * MIB as u64 - 1));

    assert_eq!(finish(first, &uploads[0].1).await, 0);
    assert_eq!(finish(second, &uploads[1].1).await, 2 * MIB as u64 - 1);
    assert_eq!(finish(third, &uploads[2].1).await, 2 * MIB as u64 - 1);
    for (digest, data) in &uploads {
        assert_eq!(&store.get("", digest).await.unwrap(), data);
    }
    assert_eq!(store.temp_bytes(), 0);
    assert!(tmp_entries(root).is_empty());
}

#[tokio::test]
async fn dropping_a_suspended_upload_frees_its_bytes_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = open(root, 16 * MIB as u64).await;
    let upload = suspended_upload(&store, &blob(970, 3 * MIB), 2 * MIB).await;
    assert_eq!(store.temp_bytes(), 2 * MIB as u64);
    assert_eq!(tmp_entries(root).len(), 1);
    drop(upload);
    assert_eq!(store.temp_bytes(), 0);
    assert!(tmp_entries(root).is_empty());
}
