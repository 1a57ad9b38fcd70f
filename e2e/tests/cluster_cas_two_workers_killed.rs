//! The cluster CAS survives losing two of its five workers at once in the
//! middle of a build. Three peered `reapi-scheduler`s behind HAProxy and
//! five `reapi-worker`s (the cluster CAS on their disks, three copies of
//! every blob) build the cluster workspace (99 C actions); once some
//! actions have run, two workers running some are killed (SIGKILL) at the
//! same moment. The build succeeds without a warning or an error. Repair
//! then brings every blob the cluster held (the union of the five disks,
//! the dead workers' included) back to three copies: with three workers
//! left, onto each of them. After `bazel clean` the same build, with
//! `--remote_download_minimal`, is all remote cache hits: nothing was lost.
//!
//! Skipped when Bazel or haproxy is not installed, except on CI
//! (`CI=true`), where that is a failure.

use std::time::Duration;

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::checks::{args, assert_all_cache_hits};
use reapi_e2e::cluster_cas::{self, wait_until_held_by};
use reapi_e2e::cluster_log::worker_leases;
use reapi_e2e::cluster_workspace::{
    self, assert_all_remote, assert_no_errors, build_during, remote_execution_flags, TARGETS,
};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions};
use reapi_test_support::launch::haproxy::{haproxy_or_skip, HaProxy};

/// Schedulers, all behind HAProxy.
const SCHEDULERS: usize = 3;

/// Workers in the cluster.
const WORKERS: usize = 5;

/// The workers killed, at the same moment.
const VICTIMS: [usize; 2] = [0, 1];

/// The workers left.
const SURVIVORS: [usize; 3] = [2, 3, 4];

/// Commands finished, over every worker, before the kill: the cluster CAS
/// holds the outputs of many actions by then.
const KILL_AFTER: usize = 20;

/// How long the build may take to get there.
const MID_BUILD_TIMEOUT: Duration = Duration::from_secs(240);

/// How long repair may take, after the build, to bring every blob onto
/// the survivors (each pass waits 2 s for the membership to settle).
const REPAIR_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn two_workers_killed_at_once_lose_no_blob() {
    let test = "two_workers_killed_at_once_lose_no_blob";
    let Some(bazel_path) = bazel_or_skip(test) else {
        return;
    };
    if haproxy_or_skip(test).is_none() {
        return;
    }
    let bazel = cluster_workspace::bazel(bazel_path);
    let mut cluster = Cluster::start(SCHEDULERS, WORKERS, ClusterOptions::default());
    let proxy = HaProxy::start(&cluster.scheduler_addrs());
    let flags = remote_execution_flags(&proxy.grpc_url());

    let (output, killed) = build_during(&bazel, &flags, |build| {
        let what = format!(
            "{KILL_AFTER} commands finished with workers {VICTIMS:?} each running an action"
        );
        build.wait_for(&what, MID_BUILD_TIMEOUT, || {
            let leases = worker_leases(&cluster);
            let finished: usize = leases.iter().map(|w| w.finished.len()).sum();
            (finished >= KILL_AFTER && VICTIMS.iter().all(|&i| leases[i].unfinished() > 0))
                .then_some(())
        })?;
        let held = cluster_cas::blobs_per_worker(&cluster);
        // Both signals first, then the reaping: the same moment.
        for &i in &VICTIMS {
            cluster.worker_mut(i).signal("KILL");
        }
        for &i in &VICTIMS {
            cluster.worker_mut(i).kill();
        }
        eprintln!(
            "killed workers {VICTIMS:?} {:.1?} into the build; blobs per worker then: {:?}",
            build.elapsed(),
            held.iter().map(|blobs| blobs.len()).collect::<Vec<_>>()
        );
        Ok::<_, String>(())
    });
    killed.unwrap_or_else(|e| panic!("could not kill workers mid-build: {e}\n{}", output.dump()));

    // Bazel did not notice: every action ran remotely, no warning, no
    // error.
    let summary = assert_all_remote(&bazel, &output);
    eprintln!("built in {:.1?}: {summary}", output.elapsed);

    // Every blob any worker held, the dead ones included, is on each of the
    // three left.
    let (state, took) =
        wait_until_held_by(&cluster, &SURVIVORS, REPAIR_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "{e}\nrepair passes:\n{}",
                cluster_cas::repair_passes(&cluster, &SURVIVORS)
            )
        });
    eprintln!(
        "{} blobs on each of workers {SURVIVORS:?} {took:.1?} after the build; repair \
         passes:\n{}",
        state.all.len(),
        cluster_cas::repair_passes(&cluster, &SURVIVORS)
    );

    // Nothing was lost: after a clean, the same build is all cache hits,
    // every output found in the cluster CAS.
    bazel.run_ok(&["clean"]);
    let mut rebuild_flags = flags.clone();
    rebuild_flags.push("--remote_download_minimal".to_string());
    let rebuild = bazel.run_ok(&args("build", &rebuild_flags, &[TARGETS]));
    assert_all_cache_hits(&summary, &rebuild);
    assert_no_errors(&rebuild);
    eprintln!(
        "rebuilt after bazel clean in {:.1?}: {}",
        rebuild.elapsed,
        rebuild.summary()
    );
}
