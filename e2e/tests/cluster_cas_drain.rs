//! Draining workers hand their share of the cluster CAS off before they
//! exit. One `reapi-scheduler` and five `reapi-worker`s (the cluster CAS on
//! their disks, three copies of every blob) build the cluster workspace
//! (99 C actions); then two workers get SIGTERM at once. Each hands its
//! blobs to the holders the cluster has without it and exits 0; the three
//! left then hold every blob the cluster held (three members, three
//! copies: each of them holds all). Two of them are then killed (SIGKILL),
//! and after `bazel clean` the same build, with
//! `--remote_download_minimal`, is all remote cache hits, served by the
//! last worker: nothing was lost.
//!
//! Skipped when Bazel is not installed, except on CI (`CI=true`), where
//! that is a failure.

use std::time::Duration;

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::checks::{args, assert_all_cache_hits};
use reapi_e2e::cluster_cas::{self, wait_until_held_by};
use reapi_e2e::cluster_log;
use reapi_e2e::cluster_workspace::{
    self, assert_all_remote, assert_no_errors, remote_execution_flags, TARGETS,
};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions};

/// Workers in the cluster.
const WORKERS: usize = 5;

/// The workers drained, at once.
const DRAINED: [usize; 2] = [0, 1];

/// The workers left after the drain.
const SURVIVORS: [usize; 3] = [2, 3, 4];

/// Survivors killed after the check: the last one alone serves the
/// rebuild.
const KILLED: [usize; 2] = [2, 3];

/// How long a drained worker may take to exit: no action runs, so this is
/// the hand-off of its share.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the survivors may take to hold every blob once the drained
/// workers exited (their own repair passes wait 2 s for the membership to
/// settle).
const REPAIR_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn draining_two_of_five_workers_hands_their_blobs_off() {
    let Some(bazel_path) = bazel_or_skip("draining_two_of_five_workers_hands_their_blobs_off")
    else {
        return;
    };
    let bazel = cluster_workspace::bazel(bazel_path);
    let mut cluster = Cluster::start(1, WORKERS, ClusterOptions::default());
    let flags = remote_execution_flags(&cluster.scheduler(0).grpc_url());

    let output = cluster_workspace::build(&bazel, &flags);
    let summary = assert_all_remote(&bazel, &output);
    eprintln!("built in {:.1?}: {summary}", output.elapsed);
    let before = cluster_cas::replication(&cluster, &SURVIVORS);
    eprintln!(
        "blobs on the workers' disks: {}; per worker: {:?}",
        before.all.len(),
        cluster_cas::blobs_per_worker(&cluster)
            .iter()
            .map(|blobs| blobs.len())
            .collect::<Vec<_>>()
    );

    // Two workers drain at once; each hands its share off and exits 0.
    for &i in &DRAINED {
        cluster.worker_mut(i).terminate();
    }
    for &i in &DRAINED {
        let status = cluster.worker_mut(i).wait_exit(DRAIN_TIMEOUT);
        assert!(
            status.success(),
            "drained worker {i} exited with {status}, not 0\n{}",
            cluster.worker_mut(i).report(Some(80))
        );
    }
    eprintln!("workers {DRAINED:?} drained and exited");
    for &i in &DRAINED {
        let log = cluster.worker(i).log();
        let handed = cluster_log::lines_with(&log, cluster_cas::HANDED_OFF);
        let last = handed.last().unwrap_or_else(|| {
            panic!(
                "drained worker {i} did not log `{}`:\n{log}",
                cluster_cas::HANDED_OFF
            )
        });
        let checked = cluster_cas::report_count(last, "checked");
        assert!(
            checked > 0 && cluster_cas::report_count(last, "failed") == 0,
            "drained worker {i} should have handed off the blobs it holds (checked > 0, none \
             failed), but logged: {last}\n{log}"
        );
        let incomplete = cluster_log::lines_with(&log, cluster_cas::HAND_OFF_INCOMPLETE);
        assert!(incomplete.is_empty(), "{}", incomplete.join("\n"));
        eprintln!("worker {i}: {}", handed.join(" | "));
    }

    // Three members, three copies: each survivor holds every blob the
    // cluster held, the drained workers' included.
    let (state, took) =
        wait_until_held_by(&cluster, &SURVIVORS, REPAIR_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "{e}\nrepair passes:\n{}",
                cluster_cas::repair_passes(&cluster, &SURVIVORS)
            )
        });
    eprintln!(
        "{} blobs on each of workers {SURVIVORS:?} {took:.1?} after the drained workers exited",
        state.all.len()
    );

    // The last worker alone holds everything.
    for &i in &KILLED {
        cluster.worker_mut(i).kill();
    }
    bazel.run_ok(&["clean"]);
    let mut rebuild_flags = flags.clone();
    rebuild_flags.push("--remote_download_minimal".to_string());
    let rebuild = bazel.run_ok(&args("build", &rebuild_flags, &[TARGETS]));
    assert_all_cache_hits(&summary, &rebuild);
    assert_no_errors(&rebuild);
    eprintln!(
        "rebuilt after bazel clean with workers {KILLED:?} killed, in {:.1?}: {}",
        rebuild.elapsed,
        rebuild.summary()
    );
}
