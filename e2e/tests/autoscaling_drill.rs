//! An autoscaling drill: while Bazel 4.2.3 builds, the test plays the
//! autoscaler of the execution pool, reading only the scheduler's
//! `/metrics` as a Kubernetes HorizontalPodAutoscaler would, grows the pool
//! from 1 to 4 workers and shrinks it back to 1 by draining (SIGTERM). The
//! build succeeds and nothing is lost.
//!
//! The cluster: one `reapi-scheduler` with `--metrics_listen 127.0.0.1:0`;
//! the cluster CAS on one storage-only `reapi-worker` (`--executors 0`);
//! the execution pool starting at one execution-only worker
//! (`--replica_space 0`) of two executors. Every process gets
//! `--replica_count 1`: the default (3) would take three storage workers
//! to mean anything, and storage is not what this drill scales. The
//! execution workers hold no replicas (checked by
//! `cluster_cas_execution_pool.rs`), so whatever a drained one produced
//! lives on the storage worker, never touched; what a drain could lose is
//! the actions it was running, which is what the checks look at.
//!
//! The build (the cluster workspace's WORKSPACE, this test's own BUILD): a
//! wide phase of [`WIDE`] independent genrules sleeping
//! [`WIDE_SLEEP_SECS`] s, sent at once (`--jobs=16`), then a narrow tail:
//! a chain of [`CHAIN`] genrules sleeping [`CHAIN_SLEEP_SECS`] s, the first
//! one depending on every wide output, each next one on the previous, each
//! copying its inputs into its output, so the last output holds every
//! line the build wrote. The wide phase makes the pool grow; the tail keeps
//! one action running at a time while the pool shrinks, so workers are
//! drained mid-action. Salted (`remote_execution_flags`) so that every
//! action really runs.
//!
//! The autoscaler (a loop in the test, every [`SCRAPE_INTERVAL`]): for the
//! execution pool (the one pool of `reapi_executors{pool}`), utilisation =
//! (`reapi_used_executors` + `reapi_queued_actions`) / `reapi_executors`,
//! and desired = ceil(workers × utilisation / [`TARGET_UTILISATION_PERCENT`]),
//! clamped to [[`MIN_WORKERS`], [`MAX_WORKERS`]]: HPA's formula on used
//! executors. The queue is added because used executors saturate at 100 %,
//! which would only ever ask for one worker more; with it the first scrape
//! of the build asks for all four at once. Then, like HPA:
//!
//! - up at once: the missing workers start in parallel;
//! - down only after [`STABILISATION_WINDOW`] in which every
//!   recommendation was below the current size, and one worker at a time:
//!   SIGTERM, then no decision until it has exited (drained) and the
//!   window starts again;
//! - no decision while the scheduler's `reapi_workers{pool}` differs from
//!   the workers the autoscaler runs, or one of them drains (HPA ignores
//!   pods not ready).
//!
//! Which worker to remove: one running an action (its log shows an
//! accepted lease whose command has not finished), else the newest. A
//! Kubernetes ReplicaSet knows nothing of actions; choosing a busy worker
//! is the worst case for a drain, and the case this drill exists for.
//!
//! Every decision (when, what the metrics said, workers before and after)
//! and every change in what the autoscaler read is printed (`eprintln!`),
//! so the CI log shows the drill. If the build ends before the pool is back
//! to one worker, the loop goes on, on post-build metrics, for at most
//! [`POST_BUILD_TIMEOUT`].
//!
//! Checked:
//!
//! - the build succeeds, every one of its [`ACTIONS`] run remotely, no
//!   cache hit, and the last output has every line;
//! - the scheduler showed 4 workers (8 executors) in the pool, and the pool
//!   was back to 1 worker by the end;
//! - every worker sent SIGTERM exited 0, having logged that it drained with
//!   every lease finished and reported; the scheduler logged that each one
//!   was leaving and then left cleanly;
//! - at least one worker was drained while running an action, and that
//!   action's command finished with status 0 on that same worker;
//! - the scheduler requeued nothing and leased every action once: a drain
//!   cost no rerun;
//! - afterwards no executor is used, nothing is queued or active, the pool
//!   is one worker of two executors;
//! - after `bazel clean`, a rebuild is all remote cache hits with the same
//!   outputs: nothing was lost.
//!
//! The drill found that a drained worker could lose its last result and
//! its goodbye (it ended its link without waiting for the scheduler to
//! read what was queued on it), costing a rerun; the worker now waits for
//! the scheduler to close the link, and the checks above allow no rerun.
//!
//! Skipped when Bazel is not installed, except on CI (`CI=true`), where
//! that is a failure.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use reapi_e2e::bazel::{bazel_or_skip, Bazel};
use reapi_e2e::checks::{args, assert_all_cache_hits};
use reapi_e2e::cluster_log::{self, lease_counts, worker_leases};
use reapi_e2e::cluster_workspace::{
    self, assert_no_errors, assert_ran_remotely, build_during, remote_execution_flags, TARGETS,
};
use reapi_e2e::metrics::{http_get, HttpResponse, Metrics, MetricsPort};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions, SCHEDULER};

/// The execution pool's bounds.
const MIN_WORKERS: usize = 1;
const MAX_WORKERS: usize = 4;

/// Executors of each execution worker.
const EXECUTORS: usize = 2;

/// The utilisation the autoscaler aims at, in percent.
const TARGET_UTILISATION_PERCENT: u64 = 75;

/// How long every recommendation must stay below the current size before
/// the pool shrinks by one.
const STABILISATION_WINDOW: Duration = Duration::from_secs(3);

/// How often the autoscaler reads the scheduler's metrics.
const SCRAPE_INTERVAL: Duration = Duration::from_millis(500);

/// The wide phase: independent genrules, and how long each sleeps.
const WIDE: u64 = 16;
const WIDE_SLEEP_SECS: u64 = 2;

/// The narrow tail: a chain of genrules, and how long each sleeps (longer
/// than the stabilisation window, so a scale-down lands mid-action).
const CHAIN: u64 = 4;
const CHAIN_SLEEP_SECS: u64 = 4;

/// Genrules in the build, each one action.
const ACTIONS: u64 = WIDE + CHAIN;

/// Copies of every blob: one storage worker.
const REPLICA_COUNT: &str = "1";

/// The workers' `--drain_grace`: far longer than any action here, so a
/// drain never abandons one.
const DRAIN_GRACE: &str = "60s";

/// How long the drill may go on after the build, to bring the pool back
/// to [`MIN_WORKERS`].
const POST_BUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the scheduler's figures may take to settle (workers report
/// their executors every 2 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

const EXECUTORS_METRIC: &str = "reapi_executors";
const USED: &str = "reapi_used_executors";
const WORKERS: &str = "reapi_workers";
const DRAINING: &str = "reapi_draining_workers";
const QUEUED: &str = "reapi_queued_actions";
const ACTIVE: &str = "reapi_active_operations";
const LINKED: &str = "reapi_linked_workers";

/// The workspace's BUILD: the wide phase, then the chain.
fn build_file() -> String {
    format!(
        "# Written by e2e/tests/autoscaling_drill.rs.\n\
         [\n    genrule(\n        name = \"wide%d\" % i,\n        outs = [\"wide%d.txt\" % i],\n        \
         cmd = \"sleep {WIDE_SLEEP_SECS} && echo wide %d > $@\" % i,\n    )\n    \
         for i in range({WIDE})\n]\n\n\
         [\n    genrule(\n        name = \"chain%d\" % i,\n        \
         srcs = [\":wide%d\" % w for w in range({WIDE})] if i == 0 else [\":chain%d\" % (i - 1)],\n        \
         outs = [\"chain%d.txt\" % i],\n        \
         cmd = \"sleep {CHAIN_SLEEP_SECS} && cat $(SRCS) > $@ && echo chain %d >> $@\" % i,\n    )\n    \
         for i in range({CHAIN})\n]\n"
    )
}

/// What the last link of the chain must hold.
fn last_output() -> String {
    let wide = (0..WIDE).map(|i| format!("wide {i}\n"));
    let chain = (0..CHAIN).map(|i| format!("chain {i}\n"));
    wide.chain(chain).collect()
}

/// Panics unless every output of the build is in `bazel-bin` with what it
/// should hold.
fn assert_outputs(bazel: &Bazel) {
    let read = |name: String| {
        let path = bazel.bin_dir().join(name);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    };
    for i in 0..WIDE {
        assert_eq!(read(format!("wide{i}.txt")), format!("wide {i}\n"));
    }
    assert_eq!(read(format!("chain{}.txt", CHAIN - 1)), last_output());
}

/// What the autoscaler reads of the execution pool in one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reading {
    executors: u64,
    used: u64,
    workers: u64,
    draining: u64,
    queued: u64,
}

impl Reading {
    fn of(metrics: &Metrics, pool: &str) -> Reading {
        let labels = [("pool", pool)];
        // Gauges of whole numbers.
        let get = |name: &str, labels: &[(&str, &str)]| metrics.sum(name, labels) as u64;
        Reading {
            executors: get(EXECUTORS_METRIC, &labels),
            used: get(USED, &labels),
            workers: get(WORKERS, &labels),
            draining: get(DRAINING, &labels),
            queued: get(QUEUED, &[]),
        }
    }
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "workers={} draining={} executors={} used={} queued={}",
            self.workers, self.draining, self.executors, self.used, self.queued
        )
    }
}

/// HPA's recommendation: ceil(workers × utilisation / target), with
/// utilisation = (used + queued) / executors, clamped to
/// [[`MIN_WORKERS`], [`MAX_WORKERS`]]. In integers, so that a utilisation
/// right on the target does not round up.
fn desired_workers(workers: usize, reading: &Reading) -> usize {
    if reading.executors == 0 {
        return workers.clamp(MIN_WORKERS, MAX_WORKERS);
    }
    let demand = (reading.used + reading.queued) * workers as u64 * 100;
    let capacity = reading.executors * TARGET_UTILISATION_PERCENT;
    (demand.div_ceil(capacity) as usize).clamp(MIN_WORKERS, MAX_WORKERS)
}

/// One scaling decision.
#[derive(Clone, Debug)]
struct Decision {
    /// How long after the build started.
    at: Duration,
    during_build: bool,
    reading: Reading,
    desired: usize,
    before: usize,
    after: usize,
    what: String,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>6.1?} {} read {}, desired {}: {} -> {} workers: {}",
            self.at,
            if self.during_build {
                "(build)"
            } else {
                "(after)"
            },
            self.reading,
            self.desired,
            self.before,
            self.after,
            self.what
        )
    }
}

/// One worker taken out of the pool.
#[derive(Clone, Debug)]
struct Drain {
    /// Its index in the cluster.
    index: usize,
    id: String,
    /// How long after the build started it got SIGTERM.
    at: Duration,
    during_build: bool,
    /// The actions it was running then (leases accepted, commands not
    /// finished), from its log.
    running: Vec<String>,
    sigterm: Instant,
    /// How it exited, and how long after SIGTERM.
    exit: Option<(ExitStatus, Duration)>,
}

/// What the drill did and saw.
#[derive(Debug, Default)]
struct Drill {
    decisions: Vec<Decision>,
    drains: Vec<Drain>,
    /// The execution workers serving at the end (cluster indices).
    serving: Vec<usize>,
    /// Every reading, with how long after the build started.
    readings: Vec<(Duration, Reading)>,
    failed_scrapes: Vec<String>,
}

/// The autoscaler of the execution pool.
struct Autoscaler<'a> {
    cluster: &'a mut Cluster,
    scheduler: &'a MetricsPort,
    pool: &'a str,
    /// How to start an execution worker.
    options: &'a ClusterOptions,
    /// The execution workers in service (cluster indices), oldest first.
    serving: Vec<usize>,
    /// The worker draining now, an index in `drill.drains`.
    draining: Option<usize>,
    /// Recommendations since `window_start` (the last change).
    recommendations: VecDeque<(Instant, usize)>,
    window_start: Instant,
    /// The last (reading, desired) printed.
    last_printed: Option<(Reading, Option<usize>)>,
    drill: Drill,
}

impl<'a> Autoscaler<'a> {
    fn new(
        cluster: &'a mut Cluster,
        scheduler: &'a MetricsPort,
        pool: &'a str,
        options: &'a ClusterOptions,
        serving: Vec<usize>,
    ) -> Autoscaler<'a> {
        Autoscaler {
            cluster,
            scheduler,
            pool,
            options,
            serving,
            draining: None,
            recommendations: VecDeque::new(),
            window_start: Instant::now(),
            last_printed: None,
            drill: Drill::default(),
        }
    }

    /// Whether the pool is back to its minimum, as the scheduler sees it.
    fn at_minimum(&self) -> bool {
        self.draining.is_none()
            && self.serving.len() == MIN_WORKERS
            && self
                .drill
                .readings
                .last()
                .is_some_and(|(_, r)| r.workers == MIN_WORKERS as u64 && r.draining == 0)
    }

    /// One scrape, and the decision it leads to. `at`: how long after the
    /// build started.
    fn step(&mut self, at: Duration, during_build: bool) {
        let metrics = match http_get(self.scheduler.addr(), "/metrics") {
            Ok(HttpResponse { status: 200, body }) => Metrics::parse(&body),
            Ok(response) => {
                self.drill
                    .failed_scrapes
                    .push(format!("{at:.1?}: {response:?}"));
                return;
            }
            Err(e) => {
                self.drill.failed_scrapes.push(format!("{at:.1?}: {e}"));
                return;
            }
        };
        let reading = Reading::of(&metrics, self.pool);
        self.drill.readings.push((at, reading));

        if let Some(d) = self.draining {
            let index = self.drill.drains[d].index;
            let Some(status) = self.cluster.worker_mut(index).exit_status() else {
                self.print_reading(at, reading, None);
                return;
            };
            let drain = &mut self.drill.drains[d];
            let took = drain.sigterm.elapsed();
            drain.exit = Some((status, took));
            eprintln!(
                "autoscaler {at:>6.1?}: worker {index} ({}) exited ({status}) {took:.1?} after \
                 SIGTERM",
                drain.id
            );
            self.draining = None;
            self.restart_window();
            // This scrape may predate the exit: decide on the next.
            return;
        }
        let current = self.serving.len();
        if reading.workers != current as u64 || reading.draining > 0 {
            // The scheduler does not see the pool the autoscaler runs (yet).
            self.print_reading(at, reading, None);
            return;
        }
        let desired = desired_workers(current, &reading);
        self.print_reading(at, reading, Some(desired));
        let now = Instant::now();
        if desired > current {
            let first = self.cluster.workers().len();
            self.cluster
                .add_workers_with(desired - current, self.options);
            let added: Vec<usize> = (first..self.cluster.workers().len()).collect();
            let ids: Vec<String> = added
                .iter()
                .map(|&i| format!("{i} ({})", self.cluster.worker(i).id()))
                .collect();
            self.serving.extend(&added);
            self.decide(Decision {
                at,
                during_build,
                reading,
                desired,
                before: current,
                after: self.serving.len(),
                what: format!(
                    "scale up: started workers {} in {:.1?}",
                    ids.join(", "),
                    now.elapsed()
                ),
            });
            self.restart_window();
            return;
        }
        self.recommendations.push_back((now, desired));
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > STABILISATION_WINDOW)
        {
            self.recommendations.pop_front();
        }
        let lower_for_a_window = now.duration_since(self.window_start) >= STABILISATION_WINDOW
            && self.recommendations.iter().all(|&(_, d)| d < current);
        if lower_for_a_window {
            self.scale_down(at, during_build, reading, desired);
        }
    }

    /// SIGTERMs one worker: one running an action if any, else the newest.
    fn scale_down(&mut self, at: Duration, during_build: bool, reading: Reading, desired: usize) {
        let leases = worker_leases(&*self.cluster);
        let running = |i: usize| unfinished(&leases[i].accepted, &leases[i].finished);
        let busy = self
            .serving
            .iter()
            .rev()
            .copied()
            .find(|&i| !running(i).is_empty());
        let index = busy.unwrap_or(*self.serving.last().expect("a worker serves"));
        let running = running(index);
        let before = self.serving.len();
        self.serving.retain(|&i| i != index);
        let worker = self.cluster.worker_mut(index);
        worker.terminate();
        let sigterm = Instant::now();
        let id = worker.id().to_string();
        self.decide(Decision {
            at,
            during_build,
            reading,
            desired,
            before,
            after: self.serving.len(),
            what: format!(
                "scale down: SIGTERM to worker {index} ({id}), {}",
                if running.is_empty() {
                    "idle".to_string()
                } else {
                    format!("running {}", running.join(", "))
                }
            ),
        });
        self.drill.drains.push(Drain {
            index,
            id,
            at,
            during_build,
            running,
            sigterm,
            exit: None,
        });
        self.draining = Some(self.drill.drains.len() - 1);
    }

    fn decide(&mut self, decision: Decision) {
        eprintln!("autoscaler {decision}");
        self.drill.decisions.push(decision);
    }

    fn restart_window(&mut self) {
        self.recommendations.clear();
        self.window_start = Instant::now();
    }

    /// Prints what the autoscaler read when it changed.
    fn print_reading(&mut self, at: Duration, reading: Reading, desired: Option<usize>) {
        if self.last_printed == Some((reading, desired)) {
            return;
        }
        self.last_printed = Some((reading, desired));
        let desired = desired.map_or_else(
            || "no decision (not settled)".to_string(),
            |d| format!("desired {d}"),
        );
        eprintln!(
            "autoscaler {at:>6.1?}: read {reading}; serving {:?}; {desired}",
            self.serving
        );
    }

    fn finish(mut self) -> Drill {
        self.drill.serving = self.serving;
        self.drill
    }
}

/// The leases of `accepted` whose command is not among `finished` (an
/// action leased twice counts twice).
fn unfinished(accepted: &[String], finished: &[(String, Option<i64>)]) -> Vec<String> {
    let mut left: Vec<&str> = finished.iter().map(|(d, _)| d.as_str()).collect();
    accepted
        .iter()
        .filter(|digest| match left.iter().position(|d| d == digest) {
            Some(i) => {
                left.swap_remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

/// Scrapes the scheduler until `done` holds, panicking with the last scrape
/// after [`SETTLE_TIMEOUT`].
fn wait_for_scheduler(
    scheduler: &MetricsPort,
    what: &str,
    done: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let metrics = scheduler.scrape();
        if done(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler's metrics did not show {what} within {SETTLE_TIMEOUT:?}: {:#?}",
            metrics
                .samples
                .iter()
                .filter(|s| [
                    EXECUTORS_METRIC,
                    USED,
                    WORKERS,
                    DRAINING,
                    QUEUED,
                    ACTIVE,
                    LINKED
                ]
                .contains(&s.name.as_str()))
                .collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The pools of `reapi_executors{pool}`.
fn pools(metrics: &Metrics) -> Vec<String> {
    metrics
        .matching(EXECUTORS_METRIC, &[])
        .filter_map(|s| s.label("pool").map(str::to_string))
        .collect()
}

#[test]
fn autoscaling_drill_grows_and_drains_the_pool_during_a_build() {
    let Some(bazel_path) =
        bazel_or_skip("autoscaling_drill_grows_and_drains_the_pool_during_a_build")
    else {
        return;
    };
    let bazel = Bazel::with_workspace(bazel_path, &cluster_workspace::source());
    fs::write(bazel.workspace().join("BUILD"), build_file()).expect("cannot write BUILD");

    let replica_count = ["--replica_count".to_string(), REPLICA_COUNT.to_string()];
    let options = ClusterOptions {
        executors: EXECUTORS,
        drain_grace: Some(DRAIN_GRACE.to_string()),
        scheduler_args: [
            &["--metrics_listen".to_string(), "127.0.0.1:0".to_string()][..],
            &replica_count,
        ]
        .concat(),
        worker_args: replica_count.to_vec(),
        ..ClusterOptions::default()
    };
    let storage_only = ClusterOptions {
        executors: 0,
        ..options.clone()
    };
    let execution_only = ClusterOptions {
        worker_args: [
            &replica_count[..],
            &["--replica_space".to_string(), "0".to_string()],
        ]
        .concat(),
        ..options.clone()
    };
    let mut cluster = Cluster::start(1, 0, options);
    let storage = cluster.workers().len();
    cluster.add_worker_with(&storage_only);
    let first = cluster.workers().len();
    cluster.add_worker_with(&execution_only);
    let scheduler = MetricsPort::of(cluster.scheduler_mut(0), SCHEDULER);
    let started = Instant::now();

    // The execution pool: the one pool, with the first worker's executors.
    let before = wait_for_scheduler(&scheduler, "one pool of one idle worker", |m| {
        let pools = pools(m);
        pools.len() == 1 && {
            let r = Reading::of(m, &pools[0]);
            r.workers == 1 && r.executors == EXECUTORS as u64 && r.used == 0 && r.queued == 0
        }
    });
    let pool = pools(&before).remove(0);
    eprintln!("the execution pool: {pool:?}");

    let flags = remote_execution_flags(&cluster.scheduler(0).grpc_url());
    let (output, drill) = build_during(&bazel, &flags, |build| {
        let mut autoscaler = Autoscaler::new(
            &mut cluster,
            &scheduler,
            &pool,
            &execution_only,
            vec![first],
        );
        let mut post_build_deadline = None;
        loop {
            let during_build = build.is_running();
            autoscaler.step(build.elapsed(), during_build);
            if !during_build {
                let deadline =
                    *post_build_deadline.get_or_insert_with(|| Instant::now() + POST_BUILD_TIMEOUT);
                if autoscaler.at_minimum() || Instant::now() > deadline {
                    break;
                }
            }
            thread::sleep(SCRAPE_INTERVAL);
        }
        autoscaler.finish()
    });
    eprintln!("the drill's decisions:");
    for decision in &drill.decisions {
        eprintln!("  {decision}");
    }

    // The build: every action ran remotely, every output is right.
    let summary = assert_ran_remotely(&output, ACTIONS);
    assert_outputs(&bazel);
    eprintln!("built in {:.1?}: {summary}", output.elapsed);

    // The pool grew to its maximum and came back to its minimum.
    assert!(
        drill.failed_scrapes.is_empty(),
        "the scheduler's /metrics failed during the drill: {:?}",
        drill.failed_scrapes
    );
    let peak = drill
        .readings
        .iter()
        .map(|(_, r)| (r.workers, r.executors))
        .max()
        .unwrap_or_default();
    assert_eq!(
        peak,
        (MAX_WORKERS as u64, (MAX_WORKERS * EXECUTORS) as u64),
        "the scheduler should have shown {MAX_WORKERS} workers of {EXECUTORS} executors in the \
         pool at its peak (workers, executors)"
    );
    let ups = drill.decisions.iter().filter(|d| d.after > d.before);
    assert!(
        ups.clone().all(|d| d.during_build) && ups.count() > 0,
        "the pool should have grown during the build, and only then"
    );
    assert_eq!(
        drill.serving.len(),
        MIN_WORKERS,
        "the pool should be back to {MIN_WORKERS} worker within {POST_BUILD_TIMEOUT:?} of the \
         build's end, but serves {:?}",
        drill.serving
    );
    assert!(
        drill.drains.len() >= MAX_WORKERS - MIN_WORKERS,
        "{} scale-downs to go from {MAX_WORKERS} to {MIN_WORKERS} one at a time",
        drill.drains.len()
    );

    // Every drained worker exited 0, having finished and reported its
    // leases, and the scheduler saw it leave cleanly.
    let scheduler_log = cluster.scheduler(0).log();
    let leases = worker_leases(&cluster);
    for drain in &drill.drains {
        let i = drain.index;
        let Some((status, took)) = drain.exit else {
            panic!(
                "worker {i} ({}) did not exit after SIGTERM\n{}",
                drain.id,
                cluster.worker_mut(i).report(Some(50))
            )
        };
        assert!(
            status.success(),
            "worker {i} exited with {status} {took:.1?} after SIGTERM\n{}",
            cluster.worker_mut(i).report(Some(50))
        );
        cluster_log::assert_drained_cleanly(&cluster.worker(i).log(), i);
        leases[i].assert_every_lease_succeeded();
        let of_worker = |message: &str| -> Vec<&str> {
            cluster_log::lines_with(&scheduler_log, message)
                .into_iter()
                .filter(|line| cluster_log::field(line, "worker") == Some(drain.id.as_str()))
                .collect()
        };
        let left_cleanly = of_worker(cluster_log::WORKER_LEFT_CLEANLY);
        let leaving = of_worker(cluster_log::WORKER_LEAVING);
        let ended: Vec<&str> = [
            of_worker(cluster_log::WORKER_LOST),
            of_worker(cluster_log::WORKER_DISCONNECTED),
        ]
        .concat();
        assert!(
            left_cleanly.len() == 1 && leaving.len() == 1 && ended.is_empty(),
            "the scheduler should have logged `{}` and `{}` once each for drained worker {i} \
             ({}), and no loss; it logged {leaving:?}, {left_cleanly:?} and {ended:?}",
            cluster_log::WORKER_LEAVING,
            cluster_log::WORKER_LEFT_CLEANLY,
            drain.id
        );
    }

    // At least one was drained mid-action, and that action succeeded there.
    let mid_action: Vec<&Drain> = drill
        .drains
        .iter()
        .filter(|d| d.during_build && !d.running.is_empty())
        .collect();
    assert!(
        !mid_action.is_empty(),
        "no worker was running an action when the autoscaler drained it: {:#?}",
        drill.drains
    );
    for drain in &mid_action {
        let log = cluster.worker(drain.index).log();
        let draining = cluster_log::lines_with(&log, cluster_log::DRAINING);
        let running: usize = draining
            .first()
            .and_then(|line| cluster_log::field(line, "running"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            draining.len() == 1 && running > 0,
            "worker {} was sent SIGTERM running {:?} but logged: {draining:?}",
            drain.index,
            drain.running
        );
        for action in &drain.running {
            assert!(
                leases[drain.index]
                    .finished
                    .contains(&(action.clone(), Some(0))),
                "worker {} was drained running {action}, whose command did not finish with \
                 status 0 there",
                drain.index
            );
        }
        eprintln!(
            "worker {} ({}) was drained {:.1?} into the build running {:?}, and exited {:.1?} \
             later having finished and reported it",
            drain.index,
            drain.id,
            drain.at,
            drain.running,
            drain.exit.map(|(_, took)| took).unwrap_or_default(),
        );
    }

    // Nothing requeued; every action leased once.
    let requeued = cluster_log::requeued_actions(&scheduler_log);
    assert!(
        requeued.is_empty(),
        "the scheduler requeued actions during the drill: {requeued:?}"
    );
    let counts = lease_counts(&leases);
    let wrong: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        counts.len() as u64 == ACTIONS && wrong.is_empty(),
        "every one of the {ACTIONS} actions should have been leased once, but {} were, these \
         not once: {wrong:?}",
        counts.len()
    );
    assert!(
        leases[storage].accepted.is_empty(),
        "the storage-only worker took leases"
    );

    // Afterwards: idle, one worker of two executors in the pool.
    wait_for_scheduler(
        &scheduler,
        "the pool idle with one worker, nothing queued or active",
        |m| {
            let r = Reading::of(m, &pool);
            r == Reading {
                executors: EXECUTORS as u64,
                used: 0,
                workers: MIN_WORKERS as u64,
                draining: 0,
                queued: 0,
            } && m.sum(ACTIVE, &[]) == 0.0
                && m.sum(LINKED, &[]) == (1 + MIN_WORKERS) as f64
        },
    );

    // Nothing lost: a clean rebuild is all remote cache hits, with the same
    // outputs, downloaded from the cluster CAS.
    bazel.run_ok(&["clean"]);
    let rebuild = bazel.run(&args("build", &flags, &[TARGETS]));
    assert_all_cache_hits(&summary, &rebuild);
    assert_no_errors(&rebuild);
    assert_outputs(&bazel);
    eprintln!(
        "rebuilt after bazel clean in {:.1?}: {}; {:.1?} since the cluster started",
        rebuild.elapsed,
        rebuild.summary(),
        started.elapsed()
    );
}

#[test]
fn the_autoscaler_follows_hpa_arithmetic() {
    let reading = |executors, used, queued| Reading {
        executors,
        used,
        queued,
        ..Reading::default()
    };
    // The build's start: two executors busy, fourteen queued.
    assert_eq!(desired_workers(1, &reading(2, 2, 14)), MAX_WORKERS);
    // Exactly at the target: no change.
    assert_eq!(desired_workers(4, &reading(8, 6, 0)), 4);
    // Just above: one more (clamped).
    assert_eq!(desired_workers(3, &reading(6, 5, 0)), 4);
    // The tail: one action on any number of workers.
    for workers in 1..=MAX_WORKERS {
        let executors = (workers * EXECUTORS) as u64;
        assert_eq!(desired_workers(workers, &reading(executors, 1, 0)), 1);
    }
    // Idle: the minimum.
    assert_eq!(desired_workers(4, &reading(8, 0, 0)), MIN_WORKERS);
    assert_eq!(desired_workers(2, &reading(0, 0, 0)), 2);
    let finished = [("a".to_string(), Some(0))];
    assert_eq!(
        unfinished(&["a".into(), "b".into(), "a".into()], &finished),
        ["b", "a"]
    );
}
