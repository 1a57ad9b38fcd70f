//! The scheduler's status page as an operator sees it, in headless
//! Chromium, while a cluster runs a real build: one `reapi-scheduler` with
//! `--metrics_listen 127.0.0.1:0` (the page is `/status` on that port) and
//! one `reapi-worker` of two executors; Bazel 4.2.3 builds, with
//! `--remote_executor` and `--keep_going`, three salted genrules that sleep
//! four seconds and one that fails with exit code 3.
//!
//! Checked, on the DOM Chromium made of the page (`--dump-dom`):
//!
//! - before the build: the worker is linked and live, its pool shows two
//!   executors, nothing runs, no action failed, and the page reloads itself
//!   (`<meta http-equiv="refresh">`);
//! - during the build: a running action is listed with the mnemonic
//!   (`Genrule`) and target (`//:slowN`) Bazel sent in its
//!   RequestMetadata, on that worker, and executors are in use;
//! - after it: nothing runs, and the failure is listed with its target
//!   (`//:fails`) and `exit code 3`;
//! - after `bazel clean` and a rebuild (the sleeps come from the action
//!   cache): the hit rate shown is the one the scheduler's
//!   `reapi_action_cache_lookups_total` gives.
//!
//! A screenshot of the page during the build is left in the temporary
//! directory for people reading a failure.
//!
//! Skipped when Bazel or Chromium is not installed, except on CI
//! (`CI=true`), where that is a failure.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use reapi_e2e::bazel::{bazel_or_skip, Bazel};
use reapi_e2e::checks::{args, remote_flags_for_url};
use reapi_e2e::chromium::{chromium_or_skip, Chromium};
use reapi_e2e::cluster_workspace::{self, build_during, fresh_salt, salt_flags};
use reapi_e2e::metrics::MetricsPort;
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions, SCHEDULER};

/// Genrules that sleep, and for how long (seconds): long enough for a few
/// page loads while they run.
const SLEEPERS: usize = 3;
const SLEEP_SECS: u64 = 4;

/// The failing genrule's exit code.
const EXIT_CODE: i32 = 3;

/// How long the page may take to show what it should.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

const LOOKUPS: &str = "reapi_action_cache_lookups_total";

fn build_file() -> String {
    format!(
        "# Written by e2e/tests/status_page_in_chromium.rs.\n\
         [\n    genrule(\n        name = \"slow%d\" % i,\n        outs = [\"slow%d.txt\" % i],\n        \
         cmd = \"sleep {SLEEP_SECS} && echo %d > $@\" % i,\n    )\n    for i in range({SLEEPERS})\n]\n\n\
         genrule(\n    name = \"fails\",\n    outs = [\"fails.txt\"],\n    \
         cmd = \"echo failing on purpose >&2; exit {EXIT_CODE}\",\n)\n"
    )
}

/// The rows of the page's `section` (by id) that have `class`, as text
/// with the tags left in.
fn rows<'a>(dom: &'a str, section: &str, class: &str) -> Vec<&'a str> {
    let start = format!("<section id=\"{section}\">");
    let Some(at) = dom.find(&start) else {
        return Vec::new();
    };
    let body = &dom[at..];
    let body = &body[..body.find("</section>").unwrap_or(body.len())];
    body.split("<tr")
        .filter(|row| row.starts_with(&format!(" class=\"{class}\"")))
        .collect()
}

/// The text of the cell with `id` in `dom`.
fn cell<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let start = format!("id=\"{id}\">");
    let at = dom.find(&start)? + start.len();
    let rest = &dom[at..];
    Some(&rest[..rest.find('<')?])
}

/// Loads the page until `done` holds of its DOM; panics with the last one
/// after [`PAGE_TIMEOUT`].
fn page_until(chromium: &Chromium, url: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let dom = chromium.dump_dom(url);
        if done(&dom) {
            return dom;
        }
        assert!(
            Instant::now() < deadline,
            "the status page did not show {what} within {PAGE_TIMEOUT:?}:\n{dom}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_status_page_shows_a_running_build_in_chromium() {
    let test = "the_status_page_shows_a_running_build_in_chromium";
    let (Some(bazel_path), Some(chromium_path)) = (bazel_or_skip(test), chromium_or_skip(test))
    else {
        return;
    };
    let chromium = Chromium::new(chromium_path);
    let bazel = Bazel::with_workspace(bazel_path, &cluster_workspace::source());
    fs::write(bazel.workspace().join("BUILD"), build_file()).expect("cannot write BUILD");
    let options = ClusterOptions {
        executors: 2,
        scheduler_args: vec!["--metrics_listen".into(), "127.0.0.1:0".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(1, 1, options);
    let port = MetricsPort::of(cluster.scheduler_mut(0), SCHEDULER);
    let url = format!("http://{}/status", port.addr());
    let worker_id = cluster.worker(0).id().to_string();

    // Before the build: the worker, its pool, nothing running.
    let idle = page_until(&chromium, &url, "the worker's two executors", |dom| {
        cell(dom, "executors") == Some("0 of 2")
    });
    for expected in [
        "<meta http-equiv=\"refresh\" content=\"5\">",
        "Nothing runs.",
        "No action failed.",
        "<td class=\"state live\">live</td>",
        worker_id.as_str(),
    ] {
        assert!(
            idle.contains(expected),
            "{expected:?} missing from the idle page:\n{idle}"
        );
    }

    let mut flags = remote_flags_for_url("--remote_executor", &cluster.scheduler(0).grpc_url(), 60);
    flags.extend(["--jobs=8".to_string(), "--keep_going".to_string()]);
    flags.extend(salt_flags(&fresh_salt()));
    let screenshot = std::env::temp_dir().join("reapi-status-page-during-build.png");

    let (output, during) = build_during(&bazel, &flags, |build| {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        while build.is_running() && Instant::now() < deadline {
            let dom = chromium.dump_dom(&url);
            let running = rows(&dom, "running", "action");
            let labelled = running.iter().any(|row| {
                row.contains("<td class=\"mnemonic\">Genrule</td><td class=\"target\">//:slow")
                    && row.contains(&worker_id)
            });
            if labelled {
                chromium.screenshot(&url, &screenshot);
                return Some(dom);
            }
            thread::sleep(Duration::from_millis(200));
        }
        None
    });

    // The build ran the sleepers and failed on //:fails alone.
    assert!(
        !output.status.success(),
        "the build should fail on //:fails\n{}",
        output.dump()
    );
    assert!(
        output.stderr.contains("//:fails"),
        "the build should report //:fails\n{}",
        output.dump()
    );
    for i in 0..SLEEPERS {
        let path = bazel.bin_dir().join(format!("slow{i}.txt"));
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}\n{}", path.display(), output.dump()));
        assert_eq!(text, format!("{i}\n"), "{}", path.display());
    }

    let during = during.unwrap_or_else(|| {
        panic!(
            "no page loaded during the build listed a running Genrule of //:slowN on {worker_id}; \
             last page:\n{}",
            chromium.dump_dom(&url)
        )
    });
    eprintln!(
        "page during the build, screenshot at {}",
        screenshot.display()
    );
    let used = cell(&during, "executors").unwrap_or_default();
    assert!(
        used == "1 of 2" || used == "2 of 2",
        "executors used during the build: {used:?}\n{during}"
    );

    // After it: nothing runs; the failure is listed.
    let after = page_until(&chromium, &url, "no running action", |dom| {
        cell(dom, "running-count") == Some("0")
    });
    let failures = rows(&after, "failures", "failure");
    let expected_failure = format!("<td class=\"failed\">exit code {EXIT_CODE}</td>");
    assert!(
        failures.iter().any(|row| {
            row.contains("<td class=\"mnemonic\">Genrule</td><td class=\"target\">//:fails</td>")
                && row.contains(&expected_failure)
        }),
        "the failure of //:fails with exit code {EXIT_CODE} is not listed:\n{after}"
    );
    assert!(
        after.contains("Nothing runs."),
        "the page still lists running actions:\n{after}"
    );

    // A clean rebuild: the sleepers are action cache hits, and the page's
    // hit rate is the scheduler's.
    bazel.run_ok(&["clean"]);
    let rebuild = bazel.run(&args("build", &flags, &[cluster_workspace::TARGETS]));
    assert!(
        !rebuild.status.success(),
        "the rebuild should fail on //:fails again\n{}",
        rebuild.dump()
    );
    let metrics = port.scrape();
    let hits = metrics.sum(LOOKUPS, &[("result", "hit")]);
    let misses = metrics.sum(LOOKUPS, &[("result", "miss")]);
    assert!(
        hits >= SLEEPERS as f64,
        "the rebuild should have found the {SLEEPERS} sleepers in the action cache: {hits} hits"
    );
    let expected_rate = format!("{:.1} %", 100.0 * hits / (hits + misses));
    let rebuilt = page_until(&chromium, &url, "the hit rate of /metrics", |dom| {
        cell(dom, "hit-rate") == Some(expected_rate.as_str())
    });
    eprintln!(
        "hit rate {expected_rate} ({hits} hits, {misses} misses); {} failures listed",
        rows(&rebuilt, "failures", "failure").len()
    );
}
