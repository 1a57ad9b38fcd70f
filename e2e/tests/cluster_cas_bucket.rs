//! With a bucket as the extra copy, the cluster survives losing more
//! workers than it keeps copies. One `reapi-scheduler` and five
//! `reapi-worker`s, every process writing through to a SeaweedFS bucket,
//! build the cluster workspace (99 C actions); mid-build three workers are
//! killed (SIGKILL) at the same moment, so blobs whose three copies were all
//! on them are gone from the cluster. The build succeeds without a warning
//! or an error (what it needs again is read back from the bucket), the two
//! workers left end up holding the same blobs (repair and read-back refill
//! the cluster), and after `bazel clean` the same build with
//! `--remote_download_minimal` is all remote cache hits.
//!
//! Skipped when Bazel or SeaweedFS is not installed, except on CI
//! (`CI=true`), where that is a failure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::checks::{args, assert_all_cache_hits};
use reapi_e2e::cluster_cas;
use reapi_e2e::cluster_log::worker_leases;
use reapi_e2e::cluster_workspace::{
    self, assert_all_remote, assert_no_errors, build_during, remote_execution_flags, TARGETS,
};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions, S3Bucket};
use reapi_test_support::launch::seaweedfs::SeaweedFs;

const BUCKET: &str = "cluster-cas";

/// The workers killed at once, and those left.
const VICTIMS: [usize; 3] = [0, 1, 2];
const SURVIVORS: [usize; 2] = [3, 4];

/// Commands finished before the kill.
const KILL_AFTER: usize = 20;

const MID_BUILD_TIMEOUT: Duration = Duration::from_secs(240);

/// How long repair may take, after the build, to give both survivors the
/// same blobs.
const REPAIR_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn three_of_five_workers_killed_with_a_bucket_lose_nothing() {
    let test = "three_of_five_workers_killed_with_a_bucket_lose_nothing";
    let Some(bazel_path) = bazel_or_skip(test) else {
        return;
    };
    let Some(s3) = SeaweedFs::start(test) else {
        return;
    };
    s3.create_bucket(BUCKET);
    let bazel = cluster_workspace::bazel(bazel_path);
    let options = ClusterOptions {
        s3: Some(S3Bucket::seaweedfs(&s3, BUCKET)),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(1, 5, options);
    let flags = remote_execution_flags(&cluster.scheduler(0).grpc_url());

    let (output, killed) = build_during(&bazel, &flags, |build| {
        let what = format!("{KILL_AFTER} commands finished");
        build.wait_for(&what, MID_BUILD_TIMEOUT, || {
            let leases = worker_leases(&cluster);
            let finished: usize = leases.iter().map(|w| w.finished.len()).sum();
            (finished >= KILL_AFTER).then_some(())
        })?;
        let held = cluster_cas::blobs_per_worker(&cluster);
        for &i in &VICTIMS {
            cluster.worker_mut(i).signal("KILL");
        }
        for &i in &VICTIMS {
            cluster.worker_mut(i).kill();
        }
        Ok::<_, String>(held)
    });
    let held = killed
        .unwrap_or_else(|e| panic!("could not kill workers mid-build: {e}\n{}", output.dump()));
    let on_victims_only: BTreeSet<&String> = VICTIMS
        .iter()
        .flat_map(|&i| &held[i])
        .filter(|blob| SURVIVORS.iter().all(|&s| !held[s].contains(*blob)))
        .collect();
    eprintln!(
        "killed workers {VICTIMS:?}; blobs per worker then: {:?}; {} held by the killed \
         workers alone",
        held.iter().map(BTreeSet::len).collect::<Vec<_>>(),
        on_victims_only.len()
    );

    let summary = assert_all_remote(&bazel, &output);
    eprintln!("built in {:.1?}: {summary}", output.elapsed);

    // The cluster re-replicates: with two workers left, each holds every
    // blob either holds.
    let start = Instant::now();
    loop {
        let per_worker = cluster_cas::blobs_per_worker(&cluster);
        let union: BTreeSet<&String> = SURVIVORS.iter().flat_map(|&i| &per_worker[i]).collect();
        let lacking: Vec<(usize, usize)> = SURVIVORS
            .iter()
            .map(|&i| {
                (
                    i,
                    union
                        .iter()
                        .filter(|b| !per_worker[i].contains(**b))
                        .count(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        if lacking.is_empty() {
            eprintln!(
                "both survivors hold the same {} blobs {:.1?} after the build",
                union.len(),
                start.elapsed()
            );
            break;
        }
        assert!(
            start.elapsed() < REPAIR_TIMEOUT,
            "after {REPAIR_TIMEOUT:?} the survivors still lack blobs the other holds \
             (worker, count): {lacking:?}\nrepair passes:\n{}",
            cluster_cas::repair_passes(&cluster, &SURVIVORS)
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Nothing was lost: every output is in the cluster or the bucket.
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
