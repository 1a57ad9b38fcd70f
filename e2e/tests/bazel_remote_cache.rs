//! Bazel 4.2.3 using `reapi-server` as a remote cache.
//!
//! Each test starts its own server and builds a private copy of
//! `bazel-workspace/` (C++ compile and link, genrules, a tool run by a
//! genrule, a directory output, a 5 MiB output, an empty output and an
//! sh_test checking them). A first build fills the cache; after
//! `bazel clean` a second build must get every action from the cache, and the
//! sh_test must still pass when run on the outputs the cache gave back.
//!
//! The tests are skipped when Bazel is not installed, except on CI
//! (`CI=true`), where that is a failure.

use reapi_e2e::bazel::{bazel_or_skip, Bazel};
use reapi_e2e::checks::{
    args, assert_all_cache_hits, assert_cold_build, assert_no_remote_warnings, remote_flags,
};
use reapi_e2e::outputs::{assert_same, snapshot};
use reapi_test_support::launch::server::Server;

/// Runs the sh_test again, not from the cache, so it checks the outputs the
/// cache gave back; it must be the only action that runs.
fn rerun_check(bazel: &Bazel, flags: &[String]) {
    let output = bazel.run_ok(&args(
        "test",
        flags,
        &["--nocache_test_results", "//tests:check"],
    ));
    let summary = output.summary();
    let executed: u64 = summary.executed().values().sum();
    assert_eq!(
        executed,
        1,
        "only the test itself should run when re-run, but: {summary}\n{}",
        output.dump()
    );
    assert_no_remote_warnings(&output);
}

/// Build, clean, rebuild with full downloads: the rebuild must be all cache
/// hits and give back byte-identical outputs.
#[test]
fn clean_rebuild_is_served_from_the_remote_cache() {
    let Some(bazel_path) = bazel_or_skip("clean_rebuild_is_served_from_the_remote_cache") else {
        return;
    };
    let mut server = Server::start();
    let bazel = Bazel::new(bazel_path);
    let flags = remote_flags("--remote_cache", &server, 60);

    // `bazel test //...` builds every target and runs the sh_test.
    let first = bazel.run_ok(&args("test", &flags, &["//..."]));
    let first_summary = assert_cold_build(&first);
    let built = snapshot(&bazel.bin_dir());

    bazel.run_ok(&["clean"]);
    let rebuild = bazel.run_ok(&args("test", &flags, &["//..."]));
    assert_all_cache_hits(&first_summary, &rebuild);
    assert_no_remote_warnings(&rebuild);
    let restored = snapshot(&bazel.bin_dir());
    assert_same(
        "the first build",
        &built,
        "the build from the cache",
        &restored,
    );

    rerun_check(&bazel, &flags);
    server.assert_running();
}

/// Build without the Bytes (`--remote_download_minimal`): outputs stay in the
/// cache, and Bazel fetches only what a local action needs.
#[test]
fn remote_download_minimal_rebuild_is_served_from_the_remote_cache() {
    let Some(bazel_path) =
        bazel_or_skip("remote_download_minimal_rebuild_is_served_from_the_remote_cache")
    else {
        return;
    };
    let mut server = Server::start();
    let bazel = Bazel::new(bazel_path);
    let mut flags = remote_flags("--remote_cache", &server, 60);
    flags.push("--remote_download_minimal".to_string());

    let first = bazel.run_ok(&args("test", &flags, &["//..."]));
    let first_summary = assert_cold_build(&first);

    bazel.run_ok(&["clean"]);
    let rebuild = bazel.run_ok(&args("test", &flags, &["//..."]));
    assert_all_cache_hits(&first_summary, &rebuild);
    assert_no_remote_warnings(&rebuild);
    // Nothing needed the big output locally, so it must not have come down.
    let big = bazel.bin_dir().join("big.txt");
    assert!(
        !big.exists(),
        "{} was downloaded despite --remote_download_minimal",
        big.display()
    );

    // Running the test for real needs its inputs: Bazel must fetch the tool,
    // the big file and the tree from the cache.
    rerun_check(&bazel, &flags);
    server.assert_running();
}
