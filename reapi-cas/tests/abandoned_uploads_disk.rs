//! Abandoned uploads against the disk budget: their temp files count in it,
//! may hold at most a quarter of it (the oldest give up their data first),
//! and so cannot push stored blobs out or the data directory past its
//! `--disk_size`.
//!
//! Before temp files were counted, 500 abandoned uploads of 1 MiB took a
//! server's data directory to 8 times its budget until they expired.

use std::path::Path;

use reapi_test_support::bytestream::{
    query_write_status, read_blob, write, write_msgs, write_name_uuid,
};
use reapi_test_support::cas::{is_present, upload_one};
use reapi_test_support::digests::{data, dig};
use reapi_test_support::server::storage::Server;
use tonic::Code;

const BUDGET: u64 = 32 << 20;
const UPLOADS: usize = 1_000;
const BLOB: usize = 1 << 20;
const SENT: usize = 512 << 10;

/// Bytes of all regular files under `dir`: what the server holds on disk.
fn bytes_on_disk(dir: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

fn blob(i: usize) -> Vec<u8> {
    data(BLOB, 5000 + i as u64)
}

fn name(i: usize) -> String {
    write_name_uuid("", &format!("abandoned-{i}"), &dig(&blob(i)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_stay_within_a_quarter_of_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::disk_at(dir.path(), BUDGET, None).await;
    let (mut bs, mut cas) = (server.bs(), server.cas());

    // 20 MiB of stored blobs: with a quarter of the budget for abandoned
    // uploads, they all stay.
    let stored: Vec<Vec<u8>> = (0..20).map(|i| data(BLOB, 9000 + i)).collect();
    for blob in &stored {
        upload_one(&mut cas, "", blob).await;
    }

    let mut most = 0;
    for i in 0..UPLOADS {
        let msgs = write_msgs(&name(i), &blob(i)[..SENT], 0, 64 << 10, false);
        let status = write(&mut bs, msgs).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        if i % 50 == 49 {
            let on_disk = bytes_on_disk(dir.path());
            most = most.max(on_disk);
            assert!(
                on_disk <= BUDGET,
                "after {} abandoned uploads the data directory holds {} MiB, over its {} MiB budget",
                i + 1,
                on_disk >> 20,
                BUDGET >> 20
            );
        }
    }
    eprintln!(
        "{UPLOADS} abandoned uploads of {} KiB with a {} MiB budget: at most {} MiB on disk",
        SENT >> 10,
        BUDGET >> 20,
        most >> 20
    );
    for blob in &stored {
        assert!(
            is_present(&mut cas, "", &dig(blob)).await,
            "a stored blob was pushed out"
        );
    }

    // The newest kept their data and resume where they stopped.
    let newest = UPLOADS - 1;
    let status = query_write_status(&mut bs, &name(newest)).await.unwrap();
    assert_eq!(status.committed_size, SENT as i64);
    let rest = write_msgs(&name(newest), &blob(newest), SENT, 64 << 10, true);
    assert_eq!(write(&mut bs, rest).await.unwrap(), BLOB as i64);
    assert_eq!(
        read_blob(&mut bs, "", &dig(&blob(newest))).await.unwrap(),
        blob(newest)
    );

    // An older one still parked gave its data up: it says 0, and its
    // client sends the whole blob again, which is stored intact.
    let older = UPLOADS - 200;
    let status = query_write_status(&mut bs, &name(older)).await.unwrap();
    assert_eq!(status.committed_size, 0);
    assert!(!status.complete);
    let resumed_at_old_offset = write(
        &mut bs,
        write_msgs(&name(older), &blob(older), SENT, 64 << 10, true),
    )
    .await
    .unwrap_err();
    assert_eq!(resumed_at_old_offset.code(), Code::InvalidArgument);
    let again = write_msgs(&name(older), &blob(older), 0, 64 << 10, true);
    assert_eq!(write(&mut bs, again).await.unwrap(), BLOB as i64);
    assert_eq!(
        read_blob(&mut bs, "", &dig(&blob(older))).await.unwrap(),
        blob(older)
    );

    assert!(bytes_on_disk(dir.path()) <= BUDGET);
    drop((bs, cas));
    server.stop().await;
}
