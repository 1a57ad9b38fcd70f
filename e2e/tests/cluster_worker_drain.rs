//! Workers stopped with SIGTERM in the middle of a Bazel build drain: they
//! take no new lease, finish the ones they run, report them, say goodbye
//! and exit 0. One `reapi-scheduler` and three `reapi-worker`s of four
//! executors each build the cluster workspace (99 C actions); two workers
//! are drained while running actions and a new one joins. The build
//! succeeds with every action run remotely, and the drain cost nothing: the
//! scheduler requeued nothing, and no action ran twice.
//!
//! Skipped when Bazel is not installed, except on CI (`CI=true`), where
//! that is a failure.

use std::time::Duration;

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::cluster_log::{self, lease_counts, worker_leases};
use reapi_e2e::cluster_workspace::{
    self, assert_all_remote, build_during, remote_execution_flags, ACTIONS,
};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions};

/// The workers drained.
const DRAINED: [usize; 2] = [0, 1];

/// Commands finished, over every worker, before the drain.
const DRAIN_AFTER: usize = 20;

/// How long the build may take to get there.
const MID_BUILD_TIMEOUT: Duration = Duration::from_secs(240);

/// The workers' `--drain_grace`: far longer than any action here, so a
/// drain never abandons one.
const DRAIN_GRACE: &str = "120s";

/// How long a draining worker may take to exit: its running actions (a few
/// seconds each, on a loaded machine) and their reports.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(150);

#[test]
fn draining_two_workers_loses_nothing() {
    let Some(bazel_path) = bazel_or_skip("draining_two_workers_loses_nothing") else {
        return;
    };
    let bazel = cluster_workspace::bazel(bazel_path);
    let options = ClusterOptions {
        drain_grace: Some(DRAIN_GRACE.to_string()),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(1, 3, options);
    let flags = remote_execution_flags(&cluster.scheduler(0).grpc_url());
    let drained_ids: Vec<String> = DRAINED
        .iter()
        .map(|&i| cluster.worker(i).id().to_string())
        .collect();

    let (output, drain) = build_during(&bazel, &flags, |build| {
        let what = format!(
            "{DRAIN_AFTER} commands finished with workers {DRAINED:?} each running an action"
        );
        build.wait_for(&what, MID_BUILD_TIMEOUT, || {
            let leases = worker_leases(&cluster);
            let finished: usize = leases.iter().map(|w| w.finished.len()).sum();
            (finished >= DRAIN_AFTER && DRAINED.iter().all(|&i| leases[i].unfinished() > 0))
                .then_some(())
        })?;
        for &i in &DRAINED {
            cluster.worker_mut(i).terminate();
        }
        eprintln!(
            "sent SIGTERM to workers {DRAINED:?} {:.1?} into the build",
            build.elapsed()
        );
        let added = cluster.add_worker().id().to_string();
        eprintln!(
            "worker {added} joined {:.1?} into the build",
            build.elapsed()
        );
        let statuses: Vec<_> = DRAINED
            .iter()
            .map(|&i| cluster.worker_mut(i).wait_exit(DRAIN_TIMEOUT))
            .collect();
        eprintln!(
            "workers {DRAINED:?} exited ({statuses:?}) {:.1?} into the build",
            build.elapsed()
        );
        Ok::<_, String>(statuses)
    });
    let statuses = drain
        .unwrap_or_else(|e| panic!("could not drain workers mid-build: {e}\n{}", output.dump()));
    for (&i, status) in DRAINED.iter().zip(&statuses) {
        assert!(
            status.success(),
            "drained worker {i} exited with {status}, not 0\n{}",
            cluster.worker_mut(i).report(Some(50))
        );
    }

    let summary = assert_all_remote(&bazel, &output);
    eprintln!("built in {:.1?}: {summary}", output.elapsed);

    // The scheduler requeued nothing: each drained worker said goodbye and
    // left holding no lease.
    let scheduler_log = cluster.scheduler(0).log();
    let requeued: Vec<&str> = scheduler_log
        .lines()
        .filter(|line| line.contains("requeued"))
        .collect();
    assert!(
        requeued.is_empty(),
        "the scheduler requeued actions during a drain:\n{}",
        requeued.join("\n")
    );
    for id in &drained_ids {
        for message in [
            cluster_log::WORKER_LEAVING,
            cluster_log::WORKER_LEFT_CLEANLY,
        ] {
            let lines: Vec<&str> = cluster_log::lines_with(&scheduler_log, message)
                .into_iter()
                .filter(|line| cluster_log::field(line, "worker") == Some(id.as_str()))
                .collect();
            assert_eq!(
                lines.len(),
                1,
                "the scheduler should have logged `{message}` once for worker {id}:\n\
                 {scheduler_log}"
            );
        }
    }

    // Each drained worker finished what it ran and reported it.
    let leases = worker_leases(&cluster);
    for &i in &DRAINED {
        let log = cluster.worker(i).log();
        let draining = cluster_log::lines_with(&log, cluster_log::DRAINING);
        assert_eq!(
            draining.len(),
            1,
            "worker {i} did not log `{}` once",
            cluster_log::DRAINING
        );
        let running: usize = cluster_log::field(draining[0], "running")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no running count in: {}", draining[0]));
        assert!(
            running > 0,
            "worker {i} ran nothing when it started draining, so its drain proves nothing: {}",
            draining[0]
        );
        cluster_log::assert_drained_cleanly(&log, i);
        leases[i].assert_every_lease_succeeded();
    }

    // No action ran twice; the new worker took over some.
    let counts = lease_counts(&leases);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        counts.len() as u64 == ACTIONS && twice.is_empty(),
        "every one of the {ACTIONS} actions should have been leased once, but {} were, \
         these more than once: {twice:?}",
        counts.len()
    );
    let added = leases.last().expect("the added worker");
    assert!(
        !added.accepted.is_empty(),
        "the worker added mid-build ({}) took no lease",
        added.id
    );
    eprintln!(
        "leases per worker: {:?}",
        leases.iter().map(|w| w.accepted.len()).collect::<Vec<_>>()
    );
}
