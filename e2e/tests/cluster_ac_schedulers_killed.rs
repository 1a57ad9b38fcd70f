//! The action cache, replicated over three peered `reapi-scheduler`s,
//! survives losing two of them, and the two get their shares back when
//! they return. Three schedulers (each given all three addresses, no
//! bucket: the cluster CAS is on the workers' disks, the action cache on
//! the schedulers') and three `reapi-worker`s behind HAProxy (TCP,
//! `balance first`).
//!
//! 1. The salted cluster workspace builds, every action remotely; each
//!    result is on all three schedulers' disks (`--metadata_replica_count`
//!    is 3 by default).
//! 2. Schedulers 0 and 1 are killed (SIGKILL). Once the survivor no longer
//!    counts them (`--heartbeat_timeout 3s`), the same build after `bazel
//!    clean` through HAProxy (now the survivor) is all remote cache hits.
//! 3. A few targets are built with a new salt: their results are written
//!    while the two are dead, to the survivor alone.
//! 4. The two are restarted on their addresses and data directories. The
//!    survivor copies its entries to them (they rank again as holders), so
//!    each one's own share, its `data/ac/` directory, comes to hold every
//!    entry the survivor holds, those written while it was dead included.
//! 5. After `bazel clean`, the targets of step 3 built again through
//!    HAProxy are all cache hits.
//!
//! A second test restarts one scheduler (SIGKILL, then started again)
//! before its peers count it out (`--heartbeat_timeout 20s`), while
//! results are written: the placement, by address, never changes, yet the
//! restarted scheduler lacks those results. Its peers see it restart (a new
//! id at its address) and copy it its share.
//!
//! Skipped when Bazel or haproxy is not installed, except on CI
//! (`CI=true`), where that is a failure.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::checks::{args, assert_all_cache_hits};
use reapi_e2e::cluster_log;
use reapi_e2e::cluster_workspace::{
    self, assert_all_remote, assert_no_errors, remote_execution_flags, ACTIONS,
};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions};
use reapi_test_support::launch::haproxy::{haproxy_or_skip, HaProxy};

/// The schedulers killed, and the one left.
const KILLED: [usize; 2] = [0, 1];
const SURVIVOR: usize = 2;

/// The schedulers' `--heartbeat_timeout`: how long the survivor takes to
/// count the dead out.
const HEARTBEAT_TIMEOUT: &str = "3s";

/// Scheduler, info: the schedulers holding action cache entries changed
/// (`action cache holders: ADDR, ADDR members=N`).
const HOLDERS: &str = "action cache holders";

/// Scheduler, info: after a change of schedulers, entries were copied to
/// the holders that newly rank for them (`copied=N members=N`).
const REBALANCED: &str = "action cache entries copied to their new holders";

/// Targets built while the two are dead: a few compiles, archives and
/// links, each a new action cache entry.
const LATE_TARGETS: [&str; 2] = ["//:unit0", "//:unit1"];

/// How long the survivor may take to count the dead out, or the restarted
/// to get their shares.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The workers of the cluster.
const WORKERS: usize = 3;

const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The action cache entries (of instance `""`) on a scheduler's disk: the
/// file names `{hash}-{size}` of `{data_dir}/ac/@default/`.
fn ac_entries(data_dir: &Path) -> BTreeSet<String> {
    let dir: PathBuf = data_dir.join("ac").join("@default");
    let files = match fs::read_dir(&dir) {
        Ok(files) => files,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return BTreeSet::new(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    files
        .filter_map(Result::ok)
        .map(|file| file.file_name().to_string_lossy().into_owned())
        .filter(|name| is_entry_name(name))
        .collect()
}

/// `{64 hex}-{decimal size}`.
fn is_entry_name(name: &str) -> bool {
    name.split_once('-').is_some_and(|(hash, size)| {
        hash.len() == 64
            && hash.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            && !size.is_empty()
            && size.bytes().all(|c| c.is_ascii_digit())
    })
}

/// The part of a restarted process's log written since its last restart.
fn since_restart(log: &str) -> &str {
    log.rfind("restarted by the test ----")
        .map_or(log, |at| &log[at..])
}

/// How many members the last `HOLDERS` line of `log` after byte `from`
/// names.
fn last_holder_count(log: &str, from: usize) -> Option<usize> {
    let tail = log.get(from..).unwrap_or("");
    cluster_log::lines_with(tail, HOLDERS)
        .last()
        .and_then(|line| cluster_log::field(line, "members"))
        .and_then(|n| n.parse().ok())
}

/// Waits until `condition` gives a value, checking every 100 ms; panics
/// with `what` and `explain()` after `timeout`.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> Option<T>,
    explain: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}\n{}",
            explain()
        );
        thread::sleep(POLL_INTERVAL);
    }
}

/// The tests of this file run one at a time: each runs a cluster and a
/// Bazel on two shared cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn the_action_cache_survives_two_of_three_schedulers_killed() {
    let test = "the_action_cache_survives_two_of_three_schedulers_killed";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let Some(bazel_path) = bazel_or_skip(test) else {
        return;
    };
    if haproxy_or_skip(test).is_none() {
        return;
    }
    let bazel = cluster_workspace::bazel(bazel_path);
    let options = ClusterOptions {
        heartbeat_timeout: Some(HEARTBEAT_TIMEOUT.to_string()),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(3, WORKERS, options);
    let proxy = HaProxy::start(&cluster.scheduler_addrs());
    let flags = remote_execution_flags(&proxy.grpc_url());

    // 1. Every result on every scheduler.
    let first = cluster_workspace::build(&bazel, &flags);
    let summary = assert_all_remote(&bazel, &first);
    eprintln!("built in {:.1?}: {summary}", first.elapsed);
    let shares: Vec<BTreeSet<String>> = cluster
        .schedulers()
        .iter()
        .map(|s| ac_entries(&s.data_dir()))
        .collect();
    assert!(
        shares[0].len() as u64 >= ACTIONS && shares.iter().all(|share| *share == shares[0]),
        "each of the {ACTIONS} results should be on every scheduler's disk, but they hold {:?} \
         entries",
        shares.iter().map(BTreeSet::len).collect::<Vec<_>>()
    );

    // 2. Two killed; the survivor counts them out and serves every result.
    let before_kill = cluster.scheduler(SURVIVOR).log().len();
    for i in KILLED {
        cluster.scheduler_mut(i).kill();
    }
    let killed_at = Instant::now();
    wait_for(
        "the survivor holding the action cache alone",
        SETTLE_TIMEOUT,
        || {
            (last_holder_count(&cluster.scheduler(SURVIVOR).log(), before_kill) == Some(1))
                .then_some(())
        },
        || cluster.scheduler(SURVIVOR).log_tail(40),
    );
    eprintln!(
        "the survivor counted the two dead out {:.1?} after the kill",
        killed_at.elapsed()
    );
    bazel.run_ok(&["clean"]);
    let rebuild = cluster_workspace::build_ok(&bazel, &flags);
    assert_all_cache_hits(&summary, &rebuild);
    assert_no_errors(&rebuild);
    eprintln!(
        "rebuilt after bazel clean through the survivor in {:.1?}: {}",
        rebuild.elapsed,
        rebuild.summary()
    );

    // 3. New results while they are dead.
    let late_flags = remote_execution_flags(&proxy.grpc_url());
    let late = bazel.run_ok(&args("build", &late_flags, &LATE_TARGETS));
    let late_summary = late.summary();
    assert!(
        late_summary.non_internal() > 0 && late_summary.executed().keys().all(|k| *k == "remote"),
        "the late targets should have run remotely: {late_summary}\n{}",
        late.dump()
    );
    let survivor_share = ac_entries(&cluster.scheduler(SURVIVOR).data_dir());
    let written_while_dead: BTreeSet<String> =
        survivor_share.difference(&shares[0]).cloned().collect();
    assert!(
        written_while_dead.len() as u64 >= late_summary.non_internal(),
        "the {} late actions should have left as many new entries on the survivor, but it has \
         {} new",
        late_summary.non_internal(),
        written_while_dead.len()
    );
    for i in KILLED {
        let share = ac_entries(&cluster.scheduler(i).data_dir());
        assert!(share.is_disjoint(&written_while_dead));
    }

    // 4. Back on their addresses; the survivor hands them their shares.
    let before_restart = cluster.scheduler(SURVIVOR).log().len();
    let restarted_at = Instant::now();
    for i in KILLED {
        cluster.restart_scheduler(i);
    }
    let lacking = |i: usize| -> BTreeSet<String> {
        let share = ac_entries(&cluster.scheduler(i).data_dir());
        survivor_share.difference(&share).cloned().collect()
    };
    let copied_since_restart = || -> u64 {
        let log = cluster.scheduler(SURVIVOR).log();
        cluster_log::lines_with(&log[before_restart..], REBALANCED)
            .into_iter()
            .filter_map(|line| cluster_log::field(line, "copied")?.parse::<u64>().ok())
            .sum()
    };
    // The survivor logs its copies once they are all made, after they are
    // on the disks.
    let copied = wait_for(
        "each restarted scheduler's share holding every entry, copied by the survivor",
        SETTLE_TIMEOUT,
        || {
            let copied = copied_since_restart();
            (KILLED.iter().all(|&i| lacking(i).is_empty())
                && copied >= 2 * written_while_dead.len() as u64)
                .then_some(copied)
        },
        || {
            let lacking: Vec<String> = KILLED
                .iter()
                .map(|&i| {
                    let lacking = lacking(i);
                    format!(
                        "scheduler {i} lacks {} of {} entries, {} of them written while it was \
                         dead",
                        lacking.len(),
                        survivor_share.len(),
                        lacking.intersection(&written_while_dead).count()
                    )
                })
                .collect();
            let log = cluster.scheduler(SURVIVOR).log();
            let changes: Vec<&str> = cluster_log::lines_with(&log[before_restart..], HOLDERS)
                .into_iter()
                .chain(cluster_log::lines_with(&log[before_restart..], REBALANCED))
                .collect();
            format!(
                "{}\nthe survivor logged since the restart (copies of the {} entries written \
                 while they were dead are due to both):\n{}",
                lacking.join("\n"),
                written_while_dead.len(),
                changes.join("\n")
            )
        },
    );
    eprintln!(
        "the restarted schedulers held every one of the {} entries ({} written while they were \
         dead) {:.1?} after the restart; the survivor copied {copied}",
        survivor_share.len(),
        written_while_dead.len(),
        restarted_at.elapsed()
    );

    // Live again: every worker linked to each, and each counting all three
    // schedulers as holders.
    wait_for(
        "the restarted schedulers linked to every worker and seeing all three schedulers",
        SETTLE_TIMEOUT,
        || {
            KILLED
                .iter()
                .all(|&i| {
                    let log = cluster.scheduler(i).log();
                    let since = since_restart(&log);
                    cluster_log::count(since, cluster_log::WORKER_JOINED) >= WORKERS
                        && last_holder_count(since, 0) == Some(3)
                })
                .then_some(())
        },
        || {
            KILLED
                .iter()
                .map(|&i| cluster.scheduler(i).log_tail(40))
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    eprintln!(
        "the restarted schedulers were live again {:.1?} after the restart",
        restarted_at.elapsed()
    );

    // 5. The cluster of three serves the late results.
    bazel.run_ok(&["clean"]);
    let late_again = bazel.run_ok(&args("build", &late_flags, &LATE_TARGETS));
    assert_all_cache_hits(&late_summary, &late_again);
    assert_no_errors(&late_again);
    eprintln!(
        "late targets rebuilt after bazel clean in {:.1?}: {}; test took {:.1?}",
        late_again.elapsed,
        late_again.summary(),
        started.elapsed()
    );
    drop(proxy);
}

/// The quick-restart test's heartbeat timeout: far longer than it takes
/// to build the late targets and restart the scheduler.
const LONG_HEARTBEAT_TIMEOUT: &str = "20s";
const LONG_HEARTBEAT_TIMEOUT_SECS: u64 = 20;

/// The scheduler restarted quickly, and the one Bazel talks to.
const RESTARTED: usize = 1;
const FRONT: usize = 0;
const OTHER: usize = 2;

/// Scheduler, info: a peer answered with a new id at a known address
/// (`peer=ID address=ADDR restarted=true`).
const PEER_LIVE: &str = "scheduler peer is live";

#[test]
fn a_scheduler_restarted_before_its_peers_notice_gets_its_share_again() {
    let test = "a_scheduler_restarted_before_its_peers_notice_gets_its_share_again";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let Some(bazel_path) = bazel_or_skip(test) else {
        return;
    };
    let bazel = cluster_workspace::bazel(bazel_path);
    let options = ClusterOptions {
        heartbeat_timeout: Some(LONG_HEARTBEAT_TIMEOUT.to_string()),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(3, 1, options);
    // Bazel talks to a scheduler that stays up.
    let url = cluster.scheduler(FRONT).grpc_url();

    // A first build, which also starts Bazel's server.
    let warm_flags = remote_execution_flags(&url);
    let warm = bazel.run_ok(&args("build", &warm_flags, &["//:unit2"]));
    eprintln!("warm-up built in {:.1?}: {}", warm.elapsed, warm.summary());

    // Down while results are written, back before its peers count it out.
    let other_log_at_kill = cluster.scheduler(OTHER).log().len();
    cluster.scheduler_mut(RESTARTED).kill();
    let killed_at = Instant::now();
    let late_flags = remote_execution_flags(&url);
    let late = bazel.run_ok(&args("build", &late_flags, &LATE_TARGETS));
    let late_summary = late.summary();
    let shares: Vec<BTreeSet<String>> = cluster
        .schedulers()
        .iter()
        .map(|s| ac_entries(&s.data_dir()))
        .collect();
    let written_while_down: BTreeSet<String> = shares[FRONT]
        .difference(&shares[RESTARTED])
        .cloned()
        .collect();
    assert!(
        written_while_down.len() as u64 >= late_summary.non_internal(),
        "the {} late actions should have left as many entries the restarted scheduler lacks, \
         but it lacks {}: {late_summary}",
        late_summary.non_internal(),
        written_while_down.len()
    );
    cluster.restart_scheduler(RESTARTED);
    let down_for = killed_at.elapsed();
    eprintln!(
        "late targets built in {:.1?} ({late_summary}) while scheduler {RESTARTED} was down; \
         back {down_for:.1?} after the kill",
        late.elapsed
    );
    assert!(
        down_for < Duration::from_secs(LONG_HEARTBEAT_TIMEOUT_SECS / 2),
        "scheduler {RESTARTED} was down for {down_for:.1?}, too close to the heartbeat timeout \
         of {LONG_HEARTBEAT_TIMEOUT} for this test"
    );

    // Its peers see it restart and copy it what it lacks.
    let restarted_addr = cluster.scheduler(RESTARTED).addr().to_string();
    let lacking = |cluster: &Cluster| -> BTreeSet<String> {
        let share = ac_entries(&cluster.scheduler(RESTARTED).data_dir());
        shares[FRONT].difference(&share).cloned().collect()
    };
    // What the other peer, which never counted it out (checked below),
    // copied since the kill: it can only have copied for seeing the restart.
    let copied_by_other = |cluster: &Cluster| -> u64 {
        let log = cluster.scheduler(OTHER).log();
        cluster_log::lines_with(&log[other_log_at_kill..], REBALANCED)
            .into_iter()
            .filter_map(|line| cluster_log::field(line, "copied")?.parse::<u64>().ok())
            .sum()
    };
    let restarted_at = Instant::now();
    let copied = wait_for(
        "the restarted scheduler holding every entry, and the other peer copying it its share",
        SETTLE_TIMEOUT,
        || {
            let copied = copied_by_other(&cluster);
            (lacking(&cluster).is_empty() && copied >= written_while_down.len() as u64)
                .then_some(copied)
        },
        || {
            let mut report = format!(
                "scheduler {RESTARTED} lacks {} of {} entries ({} written while it was down)",
                lacking(&cluster).len(),
                shares[FRONT].len(),
                written_while_down.len()
            );
            for (i, scheduler) in cluster.schedulers().iter().enumerate() {
                let log = scheduler.log();
                let lines: Vec<&str> = cluster_log::lines_with(&log, PEER_LIVE)
                    .into_iter()
                    .chain(cluster_log::lines_with(&log, HOLDERS))
                    .chain(cluster_log::lines_with(&log, REBALANCED))
                    .collect();
                report.push_str(&format!("\nscheduler {i}:\n{}", lines.join("\n")));
            }
            report
        },
    );
    eprintln!(
        "scheduler {RESTARTED} held every one of the {} entries {:.1?} after its restart; \
         scheduler {OTHER} copied it {copied}",
        shares[FRONT].len(),
        restarted_at.elapsed()
    );
    // Both peers saw it restart.
    for i in [FRONT, OTHER] {
        let log = cluster.scheduler(i).log();
        let saw_restart = cluster_log::lines_with(&log, PEER_LIVE)
            .into_iter()
            .any(|line| {
                cluster_log::field(line, "address") == Some(restarted_addr.as_str())
                    && cluster_log::field(line, "restarted") == Some("true")
            });
        assert!(
            saw_restart,
            "scheduler {i} did not log seeing scheduler {RESTARTED} restart"
        );
    }
    // The other peer never counted it out (the front one may have, for a
    // moment, after an Execute it forwarded there failed): only seeing the
    // restart can have brought it the entries that peer holds.
    let log = cluster.scheduler(OTHER).log();
    let counted_out: Vec<&str> = cluster_log::lines_with(&log[other_log_at_kill..], HOLDERS)
        .into_iter()
        .filter(|line| !line.contains(&restarted_addr))
        .collect();
    assert!(
        counted_out.is_empty(),
        "scheduler {OTHER} counted scheduler {RESTARTED} out, so this test did not test a \
         restart within the membership: {counted_out:?}"
    );
    eprintln!("test took {:.1?}", started.elapsed());
}
