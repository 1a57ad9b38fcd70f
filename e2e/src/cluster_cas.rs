//! The cluster CAS as it lies on the workers' disks, read back for the
//! cluster CAS tests: which blobs each worker holds, and waiting until the
//! live ones hold what the cluster held.
//!
//! A worker's disk store keeps one content file per blob,
//! `{data_dir}/cas/cas/{instance-dir}/{hh}/{hash}-{size}` (instance `""`
//! is the directory `@default`); writes in progress are temp files under
//! `{data_dir}/cas/tmp/`, never counted here. A blob is named
//! `{instance-dir}/{hash}-{size}`.
//!
//! A worker's disk holds its share of the cluster CAS (when it has replica
//! space) and the inputs and outputs of the actions it ran, which came from
//! or went to the cluster CAS (an output is kept on the disk only once its
//! holders committed it): so the union of the blobs on every worker's
//! disk, the dead ones' included, is what the cluster held.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use reapi_test_support::launch::cluster::Cluster;

use crate::cluster_log;

/// Worker, info or debug: one repair pass ended (`report=RepairReport {
/// checked: N, copied: N, copied_bytes: N, failed: N }`).
pub const REPAIR_PASS: &str = "cluster CAS repair pass";

/// Worker, info: a draining worker copied its share to the holders it has
/// without it (`report=RepairReport { .. } pass=N`).
pub const HANDED_OFF: &str = "handed off this worker's share of the cluster CAS";

/// Worker, error: a draining worker gave up handing off some blobs.
pub const HAND_OFF_INCOMPLETE: &str = "some blobs could not be handed off";

/// How often [`wait_until_held_by`] looks at the disks.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Blobs listed in messages, at most.
const LISTED: usize = 10;

/// The directory of a worker's content files, one subdirectory per
/// instance.
pub fn content_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cas").join("cas")
}

/// The blobs whose content files are in the disk store under `data_dir`
/// (a worker's `--data-dir`), as `{instance-dir}/{file name}`: `{hash}-{size}`
/// for SHA-256, `blake3-{hash}-{size}` for BLAKE3. Empty when the store was
/// never created.
pub fn blobs_on_disk(data_dir: &Path) -> BTreeSet<String> {
    let root = content_dir(data_dir);
    let mut blobs = BTreeSet::new();
    let read = |dir: &Path| -> Vec<fs::DirEntry> {
        match fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(Result::ok).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        }
    };
    for instance in read(&root) {
        let instance_name = instance.file_name().to_string_lossy().into_owned();
        for shard in read(&instance.path()) {
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            if !is_shard_name(&shard_name) {
                continue;
            }
            for file in read(&shard.path()) {
                let name = file.file_name().to_string_lossy().into_owned();
                if is_blob_file_name(&name, &shard_name) {
                    blobs.insert(format!("{instance_name}/{name}"));
                }
            }
        }
    }
    blobs
}

/// `hh`: two lower-case hex digits.
fn is_shard_name(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// A content file's name, in the shard directory its hash belongs in.
fn is_blob_file_name(name: &str, shard: &str) -> bool {
    reapi_core::Digest::parse_storage_name(name)
        .is_some_and(|digest| digest.hash_hex().starts_with(shard))
}

/// The blobs on each worker's disk, in the cluster's order (running or
/// not).
pub fn blobs_per_worker(cluster: &Cluster) -> Vec<BTreeSet<String>> {
    cluster
        .workers()
        .iter()
        .map(|worker| blobs_on_disk(&worker.data_dir()))
        .collect()
}

/// What the cluster holds and where it lacks it.
#[derive(Clone, Debug)]
pub struct Replication {
    /// Every blob on any worker's disk.
    pub all: BTreeSet<String>,
    /// For each of the workers asked about (by index): the blobs of `all`
    /// it does not hold.
    pub lacking: Vec<(usize, BTreeSet<String>)>,
}

impl Replication {
    /// Whether every worker asked about holds every blob.
    pub fn complete(&self) -> bool {
        self.lacking.iter().all(|(_, lacking)| lacking.is_empty())
    }

    /// E.g. `worker 2 lacks 3 of 412 blobs (@default/ab..-12, ...)`, one
    /// line per worker lacking some.
    pub fn describe(&self) -> String {
        let lines: Vec<String> = self
            .lacking
            .iter()
            .filter(|(_, lacking)| !lacking.is_empty())
            .map(|(i, lacking)| {
                let listed: Vec<&str> = lacking.iter().take(LISTED).map(String::as_str).collect();
                format!(
                    "worker {i} lacks {} of {} blobs ({}{})",
                    lacking.len(),
                    self.all.len(),
                    listed.join(", "),
                    if lacking.len() > LISTED { ", ..." } else { "" }
                )
            })
            .collect();
        if lines.is_empty() {
            format!("every worker holds all {} blobs", self.all.len())
        } else {
            lines.join("\n")
        }
    }
}

/// Which of the blobs on any worker's disk each of `holders` (worker
/// indexes) lacks.
pub fn replication(cluster: &Cluster, holders: &[usize]) -> Replication {
    let per_worker = blobs_per_worker(cluster);
    let all: BTreeSet<String> = per_worker.iter().flatten().cloned().collect();
    let lacking = holders
        .iter()
        .map(|&i| (i, all.difference(&per_worker[i]).cloned().collect()))
        .collect();
    Replication { all, lacking }
}

/// Waits until each worker of `holders` has on its disk every blob found
/// on any worker's disk (the dead ones' included), looking every 250 ms
/// for up to `timeout`. Returns the final state and how long it took, or
/// says what was still lacking when `timeout` ran out.
pub fn wait_until_held_by(
    cluster: &Cluster,
    holders: &[usize],
    timeout: Duration,
) -> Result<(Replication, Duration), String> {
    let start = Instant::now();
    loop {
        let state = replication(cluster, holders);
        if state.all.is_empty() {
            return Err("no worker holds any blob: the cluster CAS is empty".to_string());
        }
        if state.complete() {
            return Ok((state, start.elapsed()));
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "after {timeout:?}, workers {holders:?} do not each hold every one of the {} \
                 blobs on the workers' disks:\n{}",
                state.all.len(),
                state.describe()
            ));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The count `name` (`checked`, `copied`, `failed`, ...) of the
/// `RepairReport { .. }` a line logged, panicking if there is none.
pub fn report_count(line: &str, name: &str) -> u64 {
    let key = format!("{name}: ");
    line.find(&key)
        .and_then(|start| {
            let rest = &line[start + key.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .unwrap_or_else(|| panic!("no `{name}` count in: {line}"))
}

/// The repair passes that copied something or failed, as `workers` (by
/// index) logged them, one a line, for messages.
pub fn repair_passes(cluster: &Cluster, workers: &[usize]) -> String {
    let lines: Vec<String> = workers
        .iter()
        .flat_map(|&i| {
            let log = cluster.workers()[i].log();
            cluster_log::lines_with(&log, REPAIR_PASS)
                .into_iter()
                .map(|line| format!("worker {i}: {line}"))
                .collect::<Vec<_>>()
        })
        .collect();
    if lines.is_empty() {
        "(none)".to_string()
    } else {
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn lists_content_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let shard = content_dir(dir.path()).join("@default").join("2c");
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join(format!("{HASH}-5")), b"hello").unwrap();
        // Not content files: a malformed name, one in the wrong shard, a
        // temp file.
        fs::write(shard.join("junk"), b"").unwrap();
        let wrong = content_dir(dir.path()).join("@default").join("3d");
        fs::create_dir_all(&wrong).unwrap();
        fs::write(wrong.join(format!("{HASH}-5")), b"hello").unwrap();
        let tmp = dir.path().join("cas").join("tmp").join("2c");
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("0123"), b"").unwrap();
        assert_eq!(
            blobs_on_disk(dir.path()),
            BTreeSet::from([format!("@default/{HASH}-5")])
        );
        assert!(blobs_on_disk(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn reads_a_repair_report() {
        let line = "2025-01-01T00:00:00.000001Z  INFO reapi_worker: handed off this worker's \
            share of the cluster CAS report=RepairReport { checked: 412, copied: 17, \
            copied_bytes: 9000, failed: 0 } pass=1";
        assert_eq!(report_count(line, "checked"), 412);
        assert_eq!(report_count(line, "copied"), 17);
        assert_eq!(report_count(line, "failed"), 0);
    }

    #[test]
    fn describes_what_is_lacking() {
        let state = Replication {
            all: BTreeSet::from(["a".to_string(), "b".to_string()]),
            lacking: vec![(0, BTreeSet::new()), (2, BTreeSet::from(["b".to_string()]))],
        };
        assert!(!state.complete());
        assert_eq!(state.describe(), "worker 2 lacks 1 of 2 blobs (b)");
    }
}
