//! Storage and execution on separate pools of workers: three storage-only
//! `reapi-worker`s (`--executors 0`) hold the cluster CAS, three
//! execution-only ones (`--replica_space 0`) run the actions, with their
//! inputs and outputs going through it; one `reapi-scheduler`. Mid-build,
//! the whole execution pool is killed (SIGKILL) and three fresh
//! execution-only workers take over. The build succeeds with every action
//! run remotely; the execution workers were never members of the cluster
//! CAS, every blob on any disk is on each storage worker, and after
//! `bazel clean` the same build, with `--remote_download_minimal`, is all
//! remote cache hits: losing every execution worker lost nothing.
//!
//! Skipped when Bazel is not installed, except on CI (`CI=true`), where
//! that is a failure.

use std::collections::BTreeSet;
use std::time::Duration;

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::checks::{args, assert_all_cache_hits};
use reapi_e2e::cluster_cas::{self, wait_until_held_by};
use reapi_e2e::cluster_log::{self, worker_leases};
use reapi_e2e::cluster_workspace::{
    self, assert_all_remote, assert_no_errors, build_during, remote_execution_flags, TARGETS,
};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions};

/// Workers in each pool.
const POOL: usize = 3;

/// The storage workers: the first three.
const STORAGE: [usize; POOL] = [0, 1, 2];

/// The first execution workers, all killed mid-build.
const EXECUTION: [usize; POOL] = [3, 4, 5];

/// Commands finished before the kill.
const KILL_AFTER: usize = 20;

/// How long the build may take to get there.
const MID_BUILD_TIMEOUT: Duration = Duration::from_secs(240);

/// How long the storage workers may take to hold every blob after the
/// build: read repairs, and the copies of writes the kill cut off, which
/// the storage workers' repair passes (every [`REPAIR_PERIOD`]) make.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The storage workers' `--repair_period`.
const REPAIR_PERIOD: &str = "2s";

/// The scheduler's message when the cluster CAS's members change, followed
/// by their ids.
const MEMBERS_CHANGED: &str = "cluster CAS members changed: ";

#[test]
fn killing_the_whole_execution_pool_loses_no_blob() {
    let Some(bazel_path) = bazel_or_skip("killing_the_whole_execution_pool_loses_no_blob") else {
        return;
    };
    let bazel = cluster_workspace::bazel(bazel_path);
    let mut cluster = Cluster::start(1, 0, ClusterOptions::default());
    // A write cut off by the kill may have reached some storage workers
    // and not others; their periodic repair pass completes it, here often
    // enough to finish within the settle time.
    let storage_only = ClusterOptions {
        executors: 0,
        worker_args: vec!["--repair_period".to_string(), REPAIR_PERIOD.to_string()],
        ..cluster.options().clone()
    };
    let execution_only = ClusterOptions {
        worker_args: vec!["--replica_space".to_string(), "0".to_string()],
        ..cluster.options().clone()
    };
    cluster.add_workers_with(POOL, &storage_only);
    cluster.add_workers_with(POOL, &execution_only);
    let flags = remote_execution_flags(&cluster.scheduler(0).grpc_url());

    let (output, replaced) = build_during(&bazel, &flags, |build| {
        let what = format!(
            "{KILL_AFTER} commands finished with workers {EXECUTION:?} each running an action"
        );
        build.wait_for(&what, MID_BUILD_TIMEOUT, || {
            let leases = worker_leases(&cluster);
            let finished: usize = leases.iter().map(|w| w.finished.len()).sum();
            (finished >= KILL_AFTER && EXECUTION.iter().all(|&i| leases[i].unfinished() > 0))
                .then_some(())
        })?;
        for &i in &EXECUTION {
            cluster.worker_mut(i).signal("KILL");
        }
        for &i in &EXECUTION {
            cluster.worker_mut(i).kill();
        }
        eprintln!(
            "killed workers {EXECUTION:?} {:.1?} into the build",
            build.elapsed()
        );
        let added: Vec<String> = cluster
            .add_workers_with(POOL, &execution_only)
            .iter()
            .map(|w| w.id().to_string())
            .collect();
        eprintln!(
            "execution-only workers {added:?} joined {:.1?} into the build",
            build.elapsed()
        );
        Ok::<_, String>(())
    });
    replaced.unwrap_or_else(|e| {
        panic!(
            "could not replace the execution pool mid-build: {e}\n{}",
            output.dump()
        )
    });

    let summary = assert_all_remote(&bazel, &output);
    eprintln!("built in {:.1?}: {summary}", output.elapsed);

    // The storage workers ran nothing; both execution pools ran actions.
    let leases = worker_leases(&cluster);
    for worker in &leases {
        let storage = STORAGE.contains(&worker.index);
        assert_eq!(
            worker.accepted.is_empty(),
            storage,
            "worker {} ({}, {}) took {} leases",
            worker.index,
            worker.id,
            if storage {
                "storage only"
            } else {
                "execution only"
            },
            worker.accepted.len()
        );
    }

    // Only the storage workers were ever members of the cluster CAS.
    let storage_ids: BTreeSet<String> = STORAGE
        .iter()
        .map(|&i| cluster.worker(i).id().to_string())
        .collect();
    let scheduler_log = cluster.scheduler(0).log();
    let lists: Vec<BTreeSet<String>> = cluster_log::lines_with(&scheduler_log, MEMBERS_CHANGED)
        .into_iter()
        .map(member_ids)
        .collect();
    assert!(
        lists.last() == Some(&storage_ids) && lists.iter().all(|ids| ids.is_subset(&storage_ids)),
        "the cluster CAS's members should only ever have been the storage workers \
         {storage_ids:?}, but were, in turn: {lists:?}"
    );

    // Whatever any worker holds (the execution workers' caches included)
    // is on each storage worker: three members, three copies.
    let (state, took) =
        wait_until_held_by(&cluster, &STORAGE, SETTLE_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "{e}\nrepair passes:\n{}",
                cluster_cas::repair_passes(&cluster, &STORAGE)
            )
        });
    eprintln!(
        "{} blobs on each of the storage workers {took:.1?} after the build",
        state.all.len()
    );

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

/// The worker ids a `cluster CAS members changed: ID, ID members=N` line
/// lists.
fn member_ids(line: &str) -> BTreeSet<String> {
    let list = &line[line.find(MEMBERS_CHANGED).expect("a members line") + MEMBERS_CHANGED.len()..];
    let list = list.split(" members=").next().unwrap_or(list);
    list.split(", ")
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}
