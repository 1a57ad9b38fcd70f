//! Bazel 4.2.3 building the cluster workspace (99 C actions) with
//! `--remote_executor` on a cluster: one `reapi-scheduler` and three
//! `reapi-worker`s of four executors each. Every action runs remotely, on
//! the workers, once.
//!
//! Skipped when Bazel is not installed, except on CI (`CI=true`), where
//! that is a failure.

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::cluster_log::{self, lease_counts, worker_leases};
use reapi_e2e::cluster_workspace::{self, assert_all_remote, remote_execution_flags, ACTIONS};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions};

#[test]
fn one_scheduler_three_workers() {
    let Some(bazel_path) = bazel_or_skip("one_scheduler_three_workers") else {
        return;
    };
    let bazel = cluster_workspace::bazel(bazel_path);
    let cluster = Cluster::start(1, 3, ClusterOptions::default());
    let flags = remote_execution_flags(&cluster.scheduler(0).grpc_url());

    let output = cluster_workspace::build(&bazel, &flags);
    let summary = assert_all_remote(&bazel, &output);
    eprintln!("built in {:.1?}: {summary}", output.elapsed);

    // Every action was leased once, its command finished with status 0 on
    // the worker that took it, and every worker took some.
    let leases = worker_leases(&cluster);
    let counts = lease_counts(&leases);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        counts.len() as u64 == ACTIONS && twice.is_empty(),
        "the workers should have taken each of the {ACTIONS} actions once, but took {} \
         actions, these more than once: {twice:?}",
        counts.len()
    );
    for worker in &leases {
        assert!(
            !worker.accepted.is_empty(),
            "worker {} ({}) took no lease: the scheduler did not spread the work",
            worker.index,
            worker.id
        );
        worker.assert_every_lease_succeeded();
    }
    eprintln!(
        "leases per worker: {:?}",
        leases
            .iter()
            .map(|worker| worker.accepted.len())
            .collect::<Vec<_>>()
    );

    // Nothing was lost on the way.
    let scheduler_log = cluster.scheduler(0).log();
    for message in [
        cluster_log::ACTION_REQUEUED,
        cluster_log::WORKER_LOST,
        cluster_log::ACTION_LOST_TOO_OFTEN,
    ] {
        let lines = cluster_log::lines_with(&scheduler_log, message);
        assert!(
            lines.is_empty(),
            "the scheduler logged `{message}` in a build where no process failed:\n{}",
            lines.join("\n")
        );
    }
}
