//! A worker killed (SIGKILL) in the middle of a Bazel build loses nothing:
//! one `reapi-scheduler` and three `reapi-worker`s of four executors each
//! build the cluster workspace (99 C actions); once some actions have run
//! and while the victim runs some, it is killed. The scheduler sees its link
//! break, requeues the actions it held, and the other workers run them:
//! Bazel never notices (every action `remote`, no warning, no error).
//!
//! Skipped when Bazel is not installed, except on CI (`CI=true`), where
//! that is a failure.

use std::collections::BTreeSet;
use std::time::Duration;

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::cluster_log::{self, lease_counts, worker_leases};
use reapi_e2e::cluster_workspace::{
    self, assert_all_remote, build_during, remote_execution_flags, ACTIONS,
};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions};

/// The worker killed.
const VICTIM: usize = 0;

/// Commands finished, over every worker, before the kill: the build is
/// well under way.
const KILL_AFTER: usize = 20;

/// Leases the victim must be running (accepted, command not finished) when
/// it is killed, so that it surely still holds one when the signal lands.
const VICTIM_RUNNING: usize = 2;

/// How long the build may take to get there.
const MID_BUILD_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn sigkill_a_worker_mid_build() {
    let Some(bazel_path) = bazel_or_skip("sigkill_a_worker_mid_build") else {
        return;
    };
    let bazel = cluster_workspace::bazel(bazel_path);
    let mut cluster = Cluster::start(1, 3, ClusterOptions::default());
    let flags = remote_execution_flags(&cluster.scheduler(0).grpc_url());
    let victim_id = cluster.worker(VICTIM).id().to_string();

    let (output, killed) = build_during(&bazel, &flags, |build| {
        let what =
            format!("{KILL_AFTER} commands finished with worker {VICTIM} running {VICTIM_RUNNING}");
        let at_kill = build.wait_for(&what, MID_BUILD_TIMEOUT, || {
            let leases = worker_leases(&cluster);
            let finished: usize = leases.iter().map(|w| w.finished.len()).sum();
            (finished >= KILL_AFTER && leases[VICTIM].unfinished() >= VICTIM_RUNNING)
                .then_some(leases)
        })?;
        cluster.worker_mut(VICTIM).kill();
        eprintln!(
            "killed worker {VICTIM} ({victim_id}) {:.1?} into the build, running {} of its {} \
             leases; leases per worker then: {:?}",
            build.elapsed(),
            at_kill[VICTIM].unfinished(),
            at_kill[VICTIM].accepted.len(),
            at_kill.iter().map(|w| w.accepted.len()).collect::<Vec<_>>()
        );
        Ok::<_, String>(at_kill)
    });
    let at_kill = killed
        .unwrap_or_else(|e| panic!("could not kill a worker mid-build: {e}\n{}", output.dump()));
    assert!(
        !cluster.worker_mut(VICTIM).is_running(),
        "worker {VICTIM} survived SIGKILL"
    );

    // Bazel did not notice: every action ran remotely, the check passed,
    // no warning, no error.
    let summary = assert_all_remote(&bazel, &output);
    eprintln!("built in {:.1?}: {summary}", output.elapsed);

    // The scheduler saw the worker go, holding leases, and requeued them.
    let scheduler_log = cluster.scheduler(0).log();
    let lost: Vec<&str> = cluster_log::lines_with(&scheduler_log, cluster_log::WORKER_LOST)
        .into_iter()
        .filter(|line| cluster_log::field(line, "worker") == Some(victim_id.as_str()))
        .collect();
    assert_eq!(
        lost.len(),
        1,
        "the scheduler should have logged `{}` once for worker {victim_id}:\n{scheduler_log}",
        cluster_log::WORKER_LOST
    );
    let lost_leases: usize = cluster_log::field(lost[0], "leases")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lease count in: {}", lost[0]));
    let requeued = cluster_log::requeued_actions(&scheduler_log);
    assert!(
        lost_leases >= 1 && requeued.len() == lost_leases,
        "the scheduler lost {lost_leases} leases with worker {victim_id} and should have \
         requeued each of their actions (`{}`), but requeued {}:\n{scheduler_log}",
        cluster_log::ACTION_REQUEUED,
        requeued.len()
    );
    let expected_reason = format!("worker {victim_id} was lost");
    for (action, reason) in &requeued {
        assert!(
            reason.starts_with(&expected_reason),
            "action {action} was requeued for another reason than the killed worker: {reason}"
        );
    }
    let failed = cluster_log::lines_with(&scheduler_log, cluster_log::ACTION_LOST_TOO_OFTEN);
    assert!(failed.is_empty(), "actions failed:\n{}", failed.join("\n"));

    // The requeued actions are those the victim was running, and the other
    // workers ran them; every other action was leased once.
    let leases = worker_leases(&cluster);
    let victim = &leases[VICTIM];
    assert_eq!(
        victim.accepted.len(),
        at_kill[VICTIM].accepted.len(),
        "the killed worker's log grew after SIGKILL"
    );
    let victim_unfinished: BTreeSet<&str> = {
        let mut unfinished: Vec<&str> = victim.accepted.iter().map(String::as_str).collect();
        for (digest, _) in &victim.finished {
            if let Some(i) = unfinished.iter().position(|a| a == digest) {
                unfinished.remove(i);
            }
        }
        unfinished.into_iter().collect()
    };
    let requeued_set: BTreeSet<&str> = requeued.iter().map(|(a, _)| a.as_str()).collect();
    assert!(
        requeued_set.is_subset(&victim.accepted.iter().map(String::as_str).collect())
            && victim_unfinished.is_subset(&requeued_set),
        "the requeued actions {requeued_set:?} should be the killed worker's leases, every \
         one whose command had not finished ({victim_unfinished:?}) among them"
    );
    for action in &requeued_set {
        let rerun_on: Vec<&str> = leases
            .iter()
            .filter(|w| w.index != VICTIM)
            .filter(|w| {
                w.accepted.iter().any(|a| a == action)
                    && w.finished
                        .iter()
                        .any(|(d, code)| d == action && *code == Some(0))
            })
            .map(|w| w.id.as_str())
            .collect();
        assert_eq!(
            rerun_on.len(),
            1,
            "requeued action {action} should have run to the end on exactly one other worker, \
             but ran on {rerun_on:?}"
        );
    }
    let counts = lease_counts(&leases);
    let twice: BTreeSet<&str> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(a, _)| *a)
        .collect();
    assert!(
        counts.len() as u64 == ACTIONS && twice.is_subset(&requeued_set),
        "every one of the {ACTIONS} actions should have been leased, only the requeued ones \
         twice, but {} were, these twice: {twice:?} (requeued: {requeued_set:?})",
        counts.len()
    );
    for (after, before) in leases
        .iter()
        .zip(&at_kill)
        .filter(|(w, _)| w.index != VICTIM)
    {
        assert!(
            after.accepted.len() > before.accepted.len(),
            "worker {} took no lease after the kill",
            after.index
        );
    }
    eprintln!(
        "worker {victim_id} lost with {lost_leases} leases, requeued and run elsewhere; \
         leases per worker: {:?}",
        leases.iter().map(|w| w.accepted.len()).collect::<Vec<_>>()
    );
}
