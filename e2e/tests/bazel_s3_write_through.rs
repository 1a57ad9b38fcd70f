//! Bazel 4.2.3 using `reapi-server` as a remote cache while the server writes
//! every blob and action result through to S3 (a real SeaweedFS).
//!
//! - The bucket holds everything: a server started on a new, empty data
//!   directory serves a clean rebuild entirely from it.
//! - An S3 outage makes the cache fail fast with errors Bazel reports (and
//!   builds around by running actions locally), never a hang; once S3 is
//!   back, writes succeed again.
//!
//! The tests are skipped when Bazel or SeaweedFS (`weed`) is not installed,
//! except on CI (`CI=true`), where that is a failure.

use std::time::{Duration, Instant};

use reapi_e2e::bazel::{bazel_or_skip, Bazel};
use reapi_e2e::checks::{args, assert_all_cache_hits, assert_cold_build, remote_flags};
use reapi_e2e::outputs;
use reapi_e2e::summary::REMOTE_CACHE_HIT;
use reapi_test_support::launch::seaweedfs::{SeaweedFs, ACCESS_KEY, REGION, SECRET_KEY};
use reapi_test_support::launch::server::Server;

/// The bucket the server writes through to.
const BUCKET: &str = "cache";

/// Bazel's `--remote_timeout` in the outage test, in seconds.
const OUTAGE_REMOTE_TIMEOUT_SECS: u64 = 30;

/// How long the build during the outage may take: failing requests must not
/// make it crawl or hang. Generous for slow CI machines, far below the
/// harness's own kill timeout.
const OUTAGE_BUILD_LIMIT: Duration = Duration::from_secs(300);

/// Starts `reapi-server` writing through to `bucket` in `s3`, on a new data
/// directory.
fn start_server(s3: &SeaweedFs) -> Server {
    let endpoint = s3.endpoint();
    Server::start_with_args_and_env(
        &[
            "--executors",
            "0",
            "--s3-bucket",
            BUCKET,
            "--s3-endpoint",
            &endpoint,
            "--s3-path-style",
            "--s3-region",
            REGION,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    )
}

/// SeaweedFS with the bucket created, or `None` when the test should skip.
fn start_s3(test: &str) -> Option<SeaweedFs> {
    let s3 = SeaweedFs::start(test)?;
    s3.create_bucket(BUCKET);
    Some(s3)
}

/// Salt flags: action keys no earlier build has used.
fn salt(value: &str) -> Vec<String> {
    vec![
        format!("--action_env=SALT={value}"),
        format!("--host_action_env=SALT={value}"),
    ]
}

/// Build, stop the server, delete its data directory, start a new server on
/// an empty one: after `bazel clean` the rebuild is all cache hits, so every
/// blob and action result came back from the bucket.
#[test]
fn wiping_the_data_directory_loses_nothing() {
    let test = "wiping_the_data_directory_loses_nothing";
    let Some(bazel_path) = bazel_or_skip(test) else {
        return;
    };
    let Some(s3) = start_s3(test) else {
        return;
    };
    let bazel = Bazel::new(bazel_path);

    let mut server = start_server(&s3);
    let flags = remote_flags("--remote_cache", &server, 60);
    let first = bazel.run_ok(&args("build", &flags, &["//..."]));
    let first_summary = assert_cold_build(&first);
    outputs::check(&bazel.bin_dir());
    server.assert_running();

    // Stopping the server removes its temporary directory, data and all.
    let old_data_dir = server.data_dir().to_path_buf();
    drop(server);
    assert!(
        !old_data_dir.exists(),
        "{} survived the server",
        old_data_dir.display()
    );

    let mut server = start_server(&s3);
    assert_ne!(server.data_dir(), old_data_dir);
    let flags = remote_flags("--remote_cache", &server, 60);
    bazel.run_ok(&["clean"]);
    let rebuild = bazel.run_ok(&args("build", &flags, &["//..."]));
    assert_all_cache_hits(&first_summary, &rebuild);
    outputs::check(&bazel.bin_dir());
    server.assert_running();
}

/// With S3 down, the cache fails fast: Bazel warns (UNAVAILABLE), runs the
/// actions itself and finishes. With S3 back, writes succeed again: a build
/// fills the cache (no hit from the outage: nothing was written then), and
/// after `bazel clean` the same build is all cache hits.
#[test]
fn s3_outage_gives_errors_not_hangs() {
    let test = "s3_outage_gives_errors_not_hangs";
    let Some(bazel_path) = bazel_or_skip(test) else {
        return;
    };
    let Some(mut s3) = start_s3(test) else {
        return;
    };
    let bazel = Bazel::new(bazel_path);
    let mut server = start_server(&s3);
    let flags = remote_flags("--remote_cache", &server, OUTAGE_REMOTE_TIMEOUT_SECS);

    s3.kill();
    let mut outage_flags = flags.clone();
    outage_flags.extend(salt("outage"));
    let started = Instant::now();
    // `run` kills Bazel after the harness's timeout and fails the test.
    let outage = bazel.run(&args("build", &outage_flags, &["//..."]));
    let took = started.elapsed();
    assert!(
        outage.status.success(),
        "the build during the S3 outage failed ({}) instead of running the actions locally\n{}",
        outage.status,
        outage.dump()
    );
    assert!(
        took < OUTAGE_BUILD_LIMIT,
        "the build during the S3 outage took {took:.1?} (limit {OUTAGE_BUILD_LIMIT:?})\n{}",
        outage.dump()
    );
    let summary = outage.summary();
    assert!(
        summary.count(REMOTE_CACHE_HIT) == 0 && !summary.executed().is_empty(),
        "during the S3 outage the actions should run locally, but: {summary}\n{}",
        outage.dump()
    );
    assert!(
        !outage.remote_warnings().is_empty()
            && (outage.stderr.contains("UNAVAILABLE")
                || outage.stderr.contains("DEADLINE_EXCEEDED")),
        "Bazel did not report the cache failing during the S3 outage\n{}",
        outage.dump()
    );
    let mut errors: Vec<&str> = outage
        .stderr
        .lines()
        .filter(|line| line.contains("UNAVAILABLE") || line.contains("DEADLINE_EXCEEDED"))
        .collect();
    errors.sort_unstable();
    errors.dedup();
    eprintln!(
        "during the S3 outage: {took:.1?}, {} remote warnings, {} distinct errors, e.g.:\n{}",
        outage.remote_warnings().len(),
        errors.len(),
        errors[..errors.len().min(2)].join("\n")
    );
    outputs::check(&bazel.bin_dir());
    server.assert_running();

    s3.restart();
    let mut after_flags = flags.clone();
    after_flags.extend(salt("after"));
    // After a clean, the actions the salt does not change run again too:
    // their uploads failed during the outage, so they must miss (nothing was
    // half-written) and be written now.
    bazel.run_ok(&["clean"]);
    let after = bazel.run_ok(&args("build", &after_flags, &["//..."]));
    let after_summary = assert_cold_build(&after);
    bazel.run_ok(&["clean"]);
    let rebuild = bazel.run_ok(&args("build", &after_flags, &["//..."]));
    assert_all_cache_hits(&after_summary, &rebuild);
    outputs::check(&bazel.bin_dir());
    server.assert_running();
}
