//! An action writing hundreds of MiB to stdout and to an output file runs
//! in bounded memory: stdout goes to a file, uploads stream in chunks.
//!
//! In its own test binary so the process's peak RSS belongs to this test.

use reapi_core::{Digest, DigestFunction, DigestHasher};
use reapi_test_support::actions::shell;
use reapi_test_support::executor::{Harness, INSTANCE};
use reapi_test_support::trees::TreeSpec;

const MIB: u64 = 1 << 20;

/// A figure of /proc/self/status, in bytes.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

fn zeros_digest(len: u64) -> Digest {
    let chunk = vec![0u8; MIB as usize];
    let mut hasher = DigestHasher::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB);
        hasher.update(&chunk[..n as usize]);
        left -= n;
    }
    hasher.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stdout_and_outputs_use_bounded_memory() {
    let h = Harness::disk().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    // Warm up: thread pools, buffers and the like are part of the baseline.
    let mut warm = shell("head -c 3M /dev/zero; head -c 3M /dev/zero > big.bin");
    warm.output_paths = vec!["big.bin".into()];
    h.run(warm, root).await.unwrap();

    // Reset the peak (Linux 4.0+); where that is not allowed, the peak so
    // far is the baseline, which only makes the check stricter.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = proc_status("VmHWM:");

    let mut cmd = shell("head -c 200M /dev/zero; head -c 100M /dev/zero > big.bin");
    cmd.output_paths = vec!["big.bin".into()];
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0);

    let peak = proc_status("VmHWM:");
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 64 * MIB,
        "peak RSS grew by {} MiB for 300 MiB of output",
        grown / MIB
    );

    // The stdout blob and the output file are whole in the CAS.
    let disk = h.disk.as_ref().unwrap();
    let stdout = Digest::from_proto(
        DigestFunction::Sha256,
        outcome.result.stdout_digest.as_ref().unwrap(),
    )
    .unwrap();
    assert_eq!(stdout, zeros_digest(200 * MIB));
    let stored = disk.blob_path(INSTANCE, &stdout).unwrap();
    assert_eq!(std::fs::metadata(stored).unwrap().len(), 200 * MIB);
    let big = &outcome.result.output_files[0];
    let big = Digest::from_proto(DigestFunction::Sha256, big.digest.as_ref().unwrap()).unwrap();
    assert_eq!(big, zeros_digest(100 * MIB));
    assert!(disk.blob_path(INSTANCE, &big).is_some());
    assert!(h.leftover_action_dirs().is_empty());
}
