//! Three peered `reapi-scheduler`s behind HAProxy survive losing the one
//! Bazel talks to. Three schedulers (each given all three addresses) and
//! three `reapi-worker`s (each linked to all three) share one SeaweedFS
//! bucket; HAProxy (TCP, `balance first`) sends Bazel's connection to the
//! first scheduler, which forwards each Execute to the action's home.
//! Mid-build that scheduler is killed (SIGKILL): Bazel's streams break, it
//! retries through HAProxy, now on the second scheduler; operations homed
//! on the dead one answer NOT_FOUND and run again, the others carry on.
//! The build succeeds, and after `bazel clean` the same build through
//! HAProxy is all remote cache hits, served from the bucket.
//!
//! Skipped when Bazel, haproxy or SeaweedFS is not installed, except on CI
//! (`CI=true`), where that is a failure.

use std::collections::BTreeMap;
use std::time::Duration;

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::checks::{assert_all_cache_hits, assert_no_remote_warnings};
use reapi_e2e::cluster_log::{self, lease_counts, worker_leases};
use reapi_e2e::cluster_workspace::{
    self, assert_check_output, assert_no_errors, build_during, remote_execution_flags, ACTIONS,
    REMOTE,
};
use reapi_e2e::summary::REMOTE_CACHE_HIT;
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions, S3Bucket};
use reapi_test_support::launch::haproxy::{haproxy_or_skip, HaProxy};
use reapi_test_support::launch::seaweedfs::SeaweedFs;

/// The bucket the whole cluster shares.
const BUCKET: &str = "cluster";

/// The scheduler killed: the first backend, which `balance first` sends
/// every connection to while it lives.
const VICTIM: usize = 0;

/// Commands finished, over every worker, before the kill.
const KILL_AFTER: usize = 20;

/// How long the build may take to get there.
const MID_BUILD_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn three_schedulers_behind_haproxy_survive_losing_one() {
    let test = "three_schedulers_behind_haproxy_survive_losing_one";
    let Some(bazel_path) = bazel_or_skip(test) else {
        return;
    };
    if haproxy_or_skip(test).is_none() {
        return;
    }
    let Some(s3) = SeaweedFs::start(test) else {
        return;
    };
    s3.create_bucket(BUCKET);
    let bazel = cluster_workspace::bazel(bazel_path);
    let options = ClusterOptions {
        s3: Some(S3Bucket::seaweedfs(&s3, BUCKET)),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(3, 3, options);
    let proxy = HaProxy::start(&cluster.scheduler_addrs());
    let victim_addr = cluster.scheduler(VICTIM).addr().to_string();
    let flags = remote_execution_flags(&proxy.grpc_url());

    let (output, killed) = build_during(&bazel, &flags, |build| {
        let what = format!(
            "{KILL_AFTER} commands finished with Bazel's Executes reaching scheduler {VICTIM}"
        );
        build.wait_for(&what, MID_BUILD_TIMEOUT, || {
            let finished = cluster_log::commands_finished(&cluster);
            let forwarded = cluster_log::count(
                &cluster.scheduler(VICTIM).log(),
                cluster_log::EXECUTE_FORWARDED,
            );
            (finished >= KILL_AFTER && forwarded > 0).then_some(())
        })?;
        // Which schedulers Bazel's requests reached until now.
        let forwarded_before: Vec<usize> = cluster
            .schedulers()
            .iter()
            .map(|s| cluster_log::count(&s.log(), cluster_log::EXECUTE_FORWARDED))
            .collect();
        cluster.scheduler_mut(VICTIM).kill();
        eprintln!(
            "killed scheduler {VICTIM} ({victim_addr}) {:.1?} into the build; Executes it had \
             forwarded, per scheduler: {forwarded_before:?}",
            build.elapsed()
        );
        Ok::<_, String>(forwarded_before)
    });
    let forwarded_before = killed.unwrap_or_else(|e| {
        panic!(
            "could not kill a scheduler mid-build: {e}\n{}",
            output.dump()
        )
    });
    assert!(
        forwarded_before[VICTIM] > 0
            && forwarded_before.iter().sum::<usize>() == forwarded_before[VICTIM],
        "before the kill, Bazel's requests should all have gone to scheduler {VICTIM} (balance \
         first), but the schedulers forwarded Executes: {forwarded_before:?}\n{}",
        proxy.log()
    );

    // The build succeeded: every action ran remotely, or came from the
    // cache when Bazel's retry found the result of a run the dead
    // scheduler's stream had not delivered.
    assert!(
        output.status.success(),
        "the build failed after scheduler {VICTIM} was killed ({})\n{}",
        output.status,
        output.dump()
    );
    let summary = output.summary();
    let executed = summary.executed();
    assert!(
        summary.non_internal() == ACTIONS
            && executed.keys().all(|kind| *kind == REMOTE)
            && summary.count(REMOTE) + summary.count(REMOTE_CACHE_HIT) == ACTIONS,
        "every one of the {ACTIONS} actions should have run remotely (or, retried, hit the \
         remote cache), but the summary is: {summary}\n{}",
        output.dump()
    );
    assert_no_remote_warnings(&output);
    assert_no_errors(&output);
    assert_check_output(&bazel);
    eprintln!("built in {:.1?}: {summary}", output.elapsed);

    // Bazel went on through HAProxy's next backend, the second scheduler,
    // which forwarded the Executes of actions homed on the third.
    let forwarded_after: Vec<usize> = cluster
        .schedulers()
        .iter()
        .map(|s| cluster_log::count(&s.log(), cluster_log::EXECUTE_FORWARDED))
        .collect();
    assert!(
        forwarded_after[1] > 0,
        "after the kill, Bazel's requests should have gone to scheduler 1 (the next backend), \
         but the schedulers forwarded Executes: {forwarded_after:?}\n{}",
        proxy.log()
    );

    // Every worker lost its link to the dead scheduler; the runs it had
    // leased were stopped and ran again (through another scheduler).
    let mut stopped = 0;
    for (i, worker) in cluster.workers().iter().enumerate() {
        let log = worker.log();
        let lost = cluster_log::lines_with(&log, cluster_log::LINK_LOST)
            .into_iter()
            .filter(|line| cluster_log::field(line, "scheduler") == Some(victim_addr.as_str()))
            .count();
        assert!(
            lost > 0,
            "worker {i} did not log losing its link to scheduler {VICTIM} ({victim_addr})"
        );
        stopped += cluster_log::lines_with(&log, cluster_log::LINK_RUNS_STOPPED)
            .into_iter()
            .filter(|line| cluster_log::field(line, "scheduler") == Some(victim_addr.as_str()))
            .filter_map(|line| cluster_log::field(line, "stopped")?.parse::<usize>().ok())
            .sum::<usize>();
    }
    let leases = worker_leases(&cluster);
    let counts = lease_counts(&leases);
    let rerun: BTreeMap<&str, usize> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(a, n)| (*a, *n))
        .collect();
    assert!(
        rerun.len() >= stopped,
        "the workers stopped {stopped} runs leased by the dead scheduler, each of which had to \
         run again, but only {} actions were leased more than once: {rerun:?}",
        rerun.len()
    );
    eprintln!(
        "runs stopped with the scheduler: {stopped}; actions leased more than once: {}; \
         leases per worker: {:?}",
        rerun.len(),
        leases.iter().map(|w| w.accepted.len()).collect::<Vec<_>>()
    );

    // Every result is in the bucket: after a clean, the same build through
    // HAProxy (now the second scheduler) is all remote cache hits.
    bazel.run_ok(&["clean"]);
    let rebuild = cluster_workspace::build_ok(&bazel, &flags);
    assert_all_cache_hits(&summary, &rebuild);
    assert_no_errors(&rebuild);
    eprintln!(
        "rebuilt after bazel clean in {:.1?}: {}",
        rebuild.elapsed,
        rebuild.summary()
    );
}
