//! What an autoscaler sees of a cluster during a real build: one
//! `reapi-scheduler` and two `reapi-worker`s of two executors each, every
//! one with `--metrics_listen 127.0.0.1:0`, and Bazel 4.2.3 building six
//! salted genrules that sleep two seconds each with `--remote_executor` on
//! the scheduler.
//!
//! While Bazel runs, a thread scrapes the scheduler's `/metrics` every
//! 100 ms and keeps the highest `reapi_used_executors` (summed over pools)
//! and `reapi_queued_actions`; this thread checks `/readyz` of every
//! process, and once a worker runs an action sends it SIGTERM, as an
//! autoscaler scaling down would, then watches its `/readyz` until it has
//! drained and exited. Checked:
//!
//! - the build succeeds, every action run remotely;
//! - the executors in use peaked between 1 and the executors there are;
//! - `/readyz` answered 200 throughout on the scheduler and the worker
//!   left running; the drained worker's answered 503 `not ready: draining`
//!   from its first non-200 answer until it exited (0);
//! - afterwards no executor is in use, nothing is queued, one worker is
//!   linked; the queue and execution time histograms counted at least one
//!   observation per action; `Execute` calls ended OK;
//! - after `bazel clean`, a rebuild is all remote cache hits and
//!   `reapi_action_cache_lookups_total{result="hit"}` grew by as much.
//!
//! The processes are started by the cluster harness with
//! `--metrics_listen 127.0.0.1:0`; each one's port is read from the line it
//! prints after its announcement ([`MetricsPort::of`]).
//!
//! Skipped when Bazel is not installed, except on CI (`CI=true`), where
//! that is a failure.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use reapi_e2e::bazel::{bazel_or_skip, Bazel};
use reapi_e2e::checks::{args, assert_all_cache_hits, remote_flags_for_url};
use reapi_e2e::cluster_log;
use reapi_e2e::cluster_workspace::{
    self, assert_ran_remotely, build_during, fresh_salt, salt_flags, RunningBuild,
};
use reapi_e2e::metrics::{http_get, HttpResponse, Metrics, MetricsPort};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions, SCHEDULER, WORKER};

/// Workers, and executors each.
const WORKERS: usize = 2;
const EXECUTORS: usize = 2;

/// Genrules in the build, each one action.
const ACTIONS: u64 = 6;

/// How long each action sleeps, in seconds: long enough to be seen busy
/// and to drain a worker in the middle of one.
const SLEEP_SECS: u64 = 2;

/// How often the scheduler's metrics are scraped during the build.
const SCRAPE_INTERVAL: Duration = Duration::from_millis(100);

/// How often `/readyz` is asked during the build, and while a worker
/// drains.
const READY_INTERVAL: Duration = Duration::from_millis(100);
const DRAIN_READY_INTERVAL: Duration = Duration::from_millis(20);

/// How long the scheduler's figures may take to settle (workers report
/// their executors every 2 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a drained worker may take to exit after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

const USED: &str = "reapi_used_executors";
const EXECUTORS_METRIC: &str = "reapi_executors";
const QUEUED: &str = "reapi_queued_actions";
const LINKED: &str = "reapi_linked_workers";
const QUEUE_COUNT: &str = "reapi_queue_seconds_count";
const EXECUTION_COUNT: &str = "reapi_execution_seconds_count";
const HANDLED: &str = "reapi_grpc_server_handled_total";
const LOOKUPS: &str = "reapi_action_cache_lookups_total";
const DISK_BLOBS: &str = "reapi_disk_blobs";

/// `Execute` calls that ended OK.
const EXECUTE_OK: [(&str, &str); 3] = [
    ("service", "build.bazel.remote.execution.v2.Execution"),
    ("method", "Execute"),
    ("code", "OK"),
];

const HIT: [(&str, &str); 1] = [("result", "hit")];

/// The workspace's BUILD: [`ACTIONS`] independent genrules.
fn build_file() -> String {
    format!(
        "# Written by e2e/tests/metrics_during_build.rs.\n\
         [\n    genrule(\n        name = \"sleep%d\" % i,\n        outs = [\"sleep%d.txt\" % i],\n        \
         cmd = \"sleep {SLEEP_SECS} && echo %d > $@\" % i,\n    )\n    for i in range({ACTIONS})\n]\n"
    )
}

/// The highest figures the scheduler reported during the build.
#[derive(Debug, Default)]
struct Peaks {
    used_executors: f64,
    queued_actions: f64,
    executors: f64,
    scrapes: usize,
    failed_scrapes: Vec<String>,
}

/// Scrapes `metrics` every [`SCRAPE_INTERVAL`] until the build ends.
fn watch_metrics(metrics: SocketAddr, build: &RunningBuild) -> Peaks {
    let mut peaks = Peaks::default();
    loop {
        let running = build.is_running();
        match http_get(metrics, "/metrics") {
            Ok(HttpResponse { status: 200, body }) => {
                let scrape = Metrics::parse(&body);
                peaks.used_executors = peaks.used_executors.max(scrape.sum(USED, &[]));
                peaks.queued_actions = peaks.queued_actions.max(scrape.sum(QUEUED, &[]));
                peaks.executors = peaks.executors.max(scrape.sum(EXECUTORS_METRIC, &[]));
                peaks.scrapes += 1;
            }
            Ok(response) => peaks.failed_scrapes.push(format!("{response:?}")),
            Err(e) => peaks.failed_scrapes.push(e.to_string()),
        }
        if !running {
            return peaks;
        }
        thread::sleep(SCRAPE_INTERVAL);
    }
}

/// One answer of `/readyz`: when (after SIGTERM), and the status and body
/// or the error.
type ReadyAnswer = (Duration, Result<(u16, String), String>);

fn ask_ready(addr: SocketAddr) -> Result<(u16, String), String> {
    http_get(addr, "/readyz")
        .map(|r| (r.status, r.body))
        .map_err(|e: io::Error| e.to_string())
}

/// What happened to the readiness of the processes during the build.
#[derive(Debug, Default)]
struct Readiness {
    /// Answers other than 200 from a process that should be ready.
    not_ready: Vec<String>,
    /// The worker sent SIGTERM, and how long into the build.
    drained: Option<(usize, Duration)>,
    /// Its `/readyz` answers from SIGTERM until it exited.
    drain_answers: Vec<ReadyAnswer>,
    exit: Option<ExitStatus>,
}

/// Asks `/readyz` of every process until the build ends; SIGTERMs the
/// first worker seen running an action and follows its answers until it
/// exits.
fn watch_readiness(cluster: &mut Cluster, ports: &Ports, build: &RunningBuild) -> Readiness {
    let scheduler = ports.scheduler.addr();
    let mut readiness = Readiness::default();
    let mut sigterm_at = None;
    loop {
        let running = build.is_running();
        let drained = readiness.drained.map(|(i, _)| i);
        let ready: Vec<(String, SocketAddr)> =
            std::iter::once(("reapi-scheduler".into(), scheduler))
                .chain(
                    (0..cluster.workers().len())
                        .filter(|&i| Some(i) != drained)
                        .map(|i| (format!("reapi-worker {i}"), ports.workers[i].addr())),
                )
                .collect();
        for (name, addr) in ready {
            match ask_ready(addr) {
                Ok((200, _)) => {}
                other => readiness.not_ready.push(format!(
                    "{name} {:.1?} into the build: {other:?}",
                    build.elapsed()
                )),
            }
        }
        match (readiness.drained, readiness.exit) {
            (None, _) => {
                // A worker that accepted a lease whose command has not
                // finished is running an action: drain it mid-action.
                let busy = (0..cluster.workers().len()).find(|&i| {
                    let log = cluster.worker(i).log();
                    cluster_log::accepted_actions(&log).len()
                        > cluster_log::finished_commands(&log).len()
                });
                if let Some(i) = busy {
                    cluster.worker_mut(i).terminate();
                    sigterm_at = Some(Instant::now());
                    readiness.drained = Some((i, build.elapsed()));
                    eprintln!(
                        "sent SIGTERM to reapi-worker {i} ({}) {:.1?} into the build",
                        cluster.worker(i).id(),
                        build.elapsed()
                    );
                }
            }
            (Some((i, _)), None) => {
                let since = sigterm_at.expect("set with drained").elapsed();
                let worker = cluster.worker_mut(i);
                if let Some(status) = worker.exit_status() {
                    readiness.exit = Some(status);
                    eprintln!("reapi-worker {i} exited ({status}) {since:.1?} after SIGTERM");
                } else if since > DRAIN_TIMEOUT {
                    // Reported by the checks: no exit status.
                    return readiness;
                } else {
                    let answer = ask_ready(ports.workers[i].addr());
                    readiness.drain_answers.push((since, answer));
                }
            }
            (Some(_), Some(_)) => {}
        }
        let draining = readiness.drained.is_some() && readiness.exit.is_none();
        if !running && !draining {
            return readiness;
        }
        thread::sleep(if draining {
            DRAIN_READY_INTERVAL
        } else {
            READY_INTERVAL
        });
    }
}

/// The operators' port of every process of the cluster.
struct Ports {
    scheduler: MetricsPort,
    /// By worker index.
    workers: Vec<MetricsPort>,
}

impl Ports {
    fn of(cluster: &mut Cluster) -> Ports {
        let scheduler = MetricsPort::of(cluster.scheduler_mut(0), SCHEDULER);
        let workers = (0..cluster.workers().len())
            .map(|i| MetricsPort::of(cluster.worker_mut(i), WORKER))
            .collect();
        Ports { scheduler, workers }
    }

    /// Every process's port, named.
    fn named(&self) -> impl Iterator<Item = (String, &MetricsPort)> {
        std::iter::once(("reapi-scheduler".to_string(), &self.scheduler)).chain(
            self.workers
                .iter()
                .enumerate()
                .map(|(i, w)| (format!("reapi-worker {i}"), w)),
        )
    }
}

/// Scrapes the scheduler until `done` holds, panicking with the last scrape
/// after [`SETTLE_TIMEOUT`].
fn wait_for_scheduler(ports: &Ports, what: &str, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let metrics = ports.scheduler.scrape();
        if done(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler's metrics did not show {what} within {SETTLE_TIMEOUT:?}: {:#?}",
            metrics
                .samples
                .iter()
                .filter(|s| [USED, EXECUTORS_METRIC, QUEUED, LINKED].contains(&s.name.as_str()))
                .collect::<Vec<_>>()
        );
        thread::sleep(SCRAPE_INTERVAL);
    }
}

fn assert_ok(what: &str, answer: io::Result<HttpResponse>) {
    match answer {
        Ok(HttpResponse { status: 200, .. }) => {}
        other => panic!("{what} should answer 200: {other:?}"),
    }
}

#[test]
fn metrics_follow_a_remote_build() {
    let Some(bazel_path) = bazel_or_skip("metrics_follow_a_remote_build") else {
        return;
    };
    // The cluster workspace's WORKSPACE (offline stand-ins), with genrules
    // only.
    let bazel = Bazel::with_workspace(bazel_path, &cluster_workspace::source());
    fs::write(bazel.workspace().join("BUILD"), build_file()).expect("cannot write BUILD");
    let metrics_listen = ["--metrics_listen".to_string(), "127.0.0.1:0".to_string()];
    let options = ClusterOptions {
        executors: EXECUTORS,
        scheduler_args: metrics_listen.to_vec(),
        worker_args: metrics_listen.to_vec(),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(1, WORKERS, options);
    let ports = Ports::of(&mut cluster);
    let started = Instant::now();
    let total_executors = (WORKERS * EXECUTORS) as f64;

    for (name, port) in ports.named() {
        assert_ok(&format!("/healthz of {name}"), port.get("/healthz"));
        assert_ok(&format!("/readyz of {name}"), port.get("/readyz"));
    }
    let before = wait_for_scheduler(&ports, "every executor linked and idle", |m| {
        m.sum(EXECUTORS_METRIC, &[]) == total_executors
            && m.sum(LINKED, &[]) == WORKERS as f64
            && m.sum(USED, &[]) == 0.0
            && m.sum(QUEUED, &[]) == 0.0
    });

    let mut flags = remote_flags_for_url("--remote_executor", &cluster.scheduler(0).grpc_url(), 60);
    flags.push("--jobs=16".to_string());
    flags.extend(salt_flags(&fresh_salt()));

    let scheduler_metrics = ports.scheduler.addr();
    let (output, (peaks, readiness)) = build_during(&bazel, &flags, |build| {
        thread::scope(|scope| {
            let scraper = scope.spawn(|| watch_metrics(scheduler_metrics, build));
            let readiness = watch_readiness(&mut cluster, &ports, build);
            let peaks = scraper.join().expect("the metrics thread panicked");
            (peaks, readiness)
        })
    });
    eprintln!("during the build: {peaks:?}");

    // The build: every action ran remotely.
    let summary = assert_ran_remotely(&output, ACTIONS);
    for i in 0..ACTIONS {
        let path = bazel.bin_dir().join(format!("sleep{i}.txt"));
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert_eq!(text, format!("{i}\n"), "{}", path.display());
    }
    eprintln!("built in {:.1?}: {summary}", output.elapsed);

    // What the scheduler showed during the build.
    assert!(
        peaks.failed_scrapes.is_empty() && peaks.scrapes > 0,
        "the scheduler's /metrics failed {} of {} times during the build: {:?}",
        peaks.failed_scrapes.len(),
        peaks.scrapes + peaks.failed_scrapes.len(),
        peaks.failed_scrapes
    );
    assert!(
        peaks.used_executors >= 1.0 && peaks.used_executors <= total_executors,
        "sum({USED}) should have peaked between 1 and the {total_executors} executors during \
         a build of {ACTIONS} actions of {SLEEP_SECS} s, but peaked at {} ({peaks:?})",
        peaks.used_executors
    );
    // Bazel sends every action at once (`--jobs=16`): the ones beyond the
    // executors wait a whole action's time in the queue.
    assert!(
        peaks.queued_actions >= 1.0 && peaks.queued_actions <= ACTIONS as f64,
        "{QUEUED} should have peaked between 1 and {ACTIONS} while {ACTIONS} actions of \
         {SLEEP_SECS} s shared {total_executors} executors, but peaked at {} ({peaks:?})",
        peaks.queued_actions
    );
    assert!(
        peaks.executors <= total_executors,
        "sum({EXECUTORS_METRIC}) exceeded the {total_executors} executors: {peaks:?}"
    );

    // Readiness: 200 throughout but for the drained worker, whose answers
    // turned 503 and stayed so until it exited.
    eprintln!(
        "drained worker: {:?}, exit {:?}, /readyz answered {} times after SIGTERM, \
         first {:?}, last {:?}",
        readiness.drained,
        readiness.exit,
        readiness.drain_answers.len(),
        readiness.drain_answers.first(),
        readiness.drain_answers.last()
    );
    assert!(
        readiness.not_ready.is_empty(),
        "/readyz of a process that should be ready answered otherwise during the build:\n{}",
        readiness.not_ready.join("\n")
    );
    let Some((drained, _)) = readiness.drained else {
        panic!("no worker was seen running an action during the build, so none was drained")
    };
    let exit = readiness.exit.unwrap_or_else(|| {
        panic!(
            "reapi-worker {drained} did not exit within {DRAIN_TIMEOUT:?} of SIGTERM\n{}",
            cluster.worker_mut(drained).report(Some(50))
        )
    });
    assert!(
        exit.success(),
        "the drained worker exited with {exit}\n{}",
        cluster.worker_mut(drained).report(Some(50))
    );
    let answers = &readiness.drain_answers;
    let first_not_ready = answers
        .iter()
        .position(|(_, answer)| !matches!(answer, Ok((200, _))));
    let Some(first_not_ready) = first_not_ready else {
        panic!("the drained worker's /readyz never stopped answering 200: {answers:?}")
    };
    // After SIGTERM: maybe 200 until the signal is handled, then 503
    // (at least once: it drains a running action), then nothing once the
    // port closes with the process.
    let after: Vec<&Result<(u16, String), String>> =
        answers[first_not_ready..].iter().map(|(_, a)| a).collect();
    let draining = after
        .iter()
        .take_while(|answer| matches!(answer, Ok((503, _))))
        .count();
    assert!(
        draining > 0
            && after[draining..].iter().all(|answer| answer.is_err())
            && after[..draining].iter().all(|answer| {
                matches!(answer, Ok((_, body)) if body.starts_with("not ready: draining"))
            }),
        "after SIGTERM the drained worker's /readyz should answer 503 `not ready: draining` \
         until it exits, then not at all; it answered: {answers:?}"
    );

    // Afterwards: idle, one worker left, every action counted.
    let after_build = wait_for_scheduler(
        &ports,
        "no executor used, nothing queued, the drained worker gone",
        |m| {
            m.sum(USED, &[]) == 0.0
                && m.sum(QUEUED, &[]) == 0.0
                && m.sum(LINKED, &[]) == (WORKERS - 1) as f64
                && m.sum(EXECUTORS_METRIC, &[]) == ((WORKERS - 1) * EXECUTORS) as f64
        },
    );
    let grew = |name: &str, labels: &[(&str, &str)], from: &Metrics, to: &Metrics| {
        to.sum(name, labels) - from.sum(name, labels)
    };
    for name in [QUEUE_COUNT, EXECUTION_COUNT] {
        let delta = grew(name, &[], &before, &after_build);
        assert!(
            delta >= ACTIONS as f64,
            "sum({name}) should have grown by at least the {ACTIONS} actions run remotely, \
             but grew by {delta}"
        );
    }
    let executes = grew(HANDLED, &EXECUTE_OK, &before, &after_build);
    assert!(
        executes >= 1.0,
        "{HANDLED}{{method=\"Execute\",code=\"OK\"}} did not grow during the build"
    );
    eprintln!("Execute calls that ended OK during the build: {executes}");
    let survivor = (0..WORKERS).find(|&i| i != drained).expect("a worker left");
    let blobs = ports.workers[survivor]
        .scrape()
        .sum(DISK_BLOBS, &[("role", "replicas")]);
    assert!(
        blobs >= 1.0,
        "the remaining worker's {DISK_BLOBS}{{role=\"replicas\"}} is {blobs} after a build \
         that wrote outputs to the cluster CAS"
    );

    // A clean rebuild comes from the action cache, and the hits show.
    bazel.run_ok(&["clean"]);
    let rebuild = bazel.run(&args("build", &flags, &[cluster_workspace::TARGETS]));
    assert_all_cache_hits(&summary, &rebuild);
    let after_rebuild = ports.scheduler.scrape();
    let hits = grew(LOOKUPS, &HIT, &after_build, &after_rebuild);
    assert!(
        hits >= ACTIONS as f64,
        "{LOOKUPS}{{result=\"hit\"}} should have grown by at least the {ACTIONS} remote cache \
         hits of the rebuild, but grew by {hits}"
    );
    eprintln!(
        "rebuilt in {:.1?}: {}; action cache hits +{hits}; {:.1?} since the cluster started",
        rebuild.elapsed,
        rebuild.summary(),
        started.elapsed()
    );
}
