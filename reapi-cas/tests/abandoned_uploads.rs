//! A client that opens many ByteStream Writes, sends part of each and goes
//! away leaves each upload parked for resumption (ADR 0002). A parked
//! upload must hold no buffer memory: its data waits in its temporary
//! file. Alone in its test binary, so the process's resident memory is
//! this test's.
//!
//! Before parked writers were suspended, each held what it had staged
//! for its `O_DIRECT` temp file: 1,000 uploads of 512 KiB grew the
//! process by 130 MiB (133 KiB per upload, measured here with glibc told
//! to give freed buffers back); suspended, by 1 MiB in all.

use reapi_cas::service::MAX_PARKED_PER_INSTANCE;
use reapi_test_support::bytestream::{query_write_status, write, write_msgs, write_name_uuid};
use reapi_test_support::digests::{data, dig};
use reapi_test_support::server::storage::{Server, Setup};
use tonic::Code;

const UPLOADS: usize = 1_000;
const BLOB: usize = 1 << 20;
const SENT: usize = 512 << 10;

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("reading /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("statm's second field");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

fn blob(i: usize) -> Vec<u8> {
    data(BLOB, 1000 + i as u64)
}

fn name(i: usize) -> String {
    write_name_uuid("", &format!("abandoned-{i}"), &dig(&blob(i)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_hold_no_buffer_memory_and_resume_intact() {
    // Freed large buffers go back to the system at once, so resident
    // memory follows what is live rather than what malloc keeps for later
    // (glibc otherwise raises its mmap threshold after the first free).
    // SAFETY: mallopt only tunes the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
    let server = Server::start(Setup::Disk).await;
    let (mut bs, mut cas) = (server.bs(), server.cas());

    // Warm up: one abandoned upload, so lazily made buffers and tasks are
    // there before the baseline.
    let warm = data(BLOB, 1);
    let warm_name = write_name_uuid("", "warm", &dig(&warm));
    let _ = write(
        &mut bs,
        write_msgs(&warm_name, &warm[..SENT], 0, 64 << 10, false),
    )
    .await;
    let before = rss_bytes();

    for i in 0..UPLOADS {
        // Half the blob, no finish_write, then the stream ends.
        let msgs = write_msgs(&name(i), &blob(i)[..SENT], 0, 64 << 10, false);
        let status = write(&mut bs, msgs).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    let after = rss_bytes();
    let grown = after.saturating_sub(before);
    eprintln!(
        "{UPLOADS} abandoned uploads of {SENT} bytes: resident memory {} MiB -> {} MiB \
         (+{} KiB per upload)",
        before >> 20,
        after >> 20,
        (grown / UPLOADS as u64) >> 10
    );
    // Their data alone is 500 MiB; a parked upload may cost a record and
    // its open file, not its chunks.
    assert!(
        grown < 64 << 20,
        "resident memory grew by {} MiB for {UPLOADS} parked uploads",
        grown >> 20
    );

    // The per-instance cap kept the newest: the oldest are gone, with
    // their files.
    let kept = UPLOADS - MAX_PARKED_PER_INSTANCE;
    let status = query_write_status(&mut bs, &name(0)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Parked, not lost: each resumes where it stopped, and completes.
    for i in (kept..UPLOADS).step_by(37) {
        let (blob, name) = (&blob(i), &name(i));
        let status = query_write_status(&mut bs, name).await.unwrap();
        assert_eq!(status.committed_size, SENT as i64, "{name}");
        assert!(!status.complete);
        let rest = write_msgs(name, blob, SENT, 64 << 10, true);
        assert_eq!(write(&mut bs, rest).await.unwrap(), BLOB as i64);
        let stored = reapi_test_support::bytestream::read_blob(&mut bs, "", &dig(blob))
            .await
            .unwrap();
        assert!(stored == *blob, "{name}: the resumed blob differs");
    }
    assert!(reapi_test_support::cas::is_present(&mut cas, "", &dig(&blob(kept))).await);
    assert!(!reapi_test_support::cas::is_present(&mut cas, "", &dig(&blob(0))).await);
    server.stop().await;
}
