//! Bazel 4.2.3 using `reapi-server` for remote execution
//! (`--remote_executor`), served by the server's local executors.
//!
//! Each test starts its own server and builds a private copy of
//! `bazel-workspace/` (C++ compile and link, genrules, a tool run by a
//! genrule, a directory output, a 5 MiB output, an empty output and an
//! sh_test checking them). Every action Bazel does not run in-process must
//! run on the server: Bazel's process summary must count them all as
//! `remote`, and its execution log (`--execution_log_json_file`) must show
//! each spawn, the sh_test's included, run by the `remote` runner. The sh_test
//! thus checks the outputs on the server, and [`outputs::check`] checks the
//! copies Bazel downloaded.
//!
//! The tests are skipped when Bazel is not installed, except on CI
//! (`CI=true`), where that is a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use reapi_e2e::bazel::{bazel_or_skip, Bazel, Output};
use reapi_e2e::checks::{args, assert_no_remote_warnings, remote_flags};
use reapi_e2e::exec_log::{self, Spawn};
use reapi_e2e::outputs;
use reapi_e2e::summary::{self, ProcessSummary, REMOTE_CACHE_HIT};
use reapi_test_support::launch::server::Server;

/// The workspace's only test.
const TEST: &str = "//tests:check";

/// The kind Bazel's summary, and the runner its execution log, give to an
/// action executed remotely.
const REMOTE: &str = "remote";

/// What `tests/check.sh` prints when every check passed.
const TEST_PASSED_LINE: &str = "all outputs are as expected";

/// Flags that salt every action key that depends on the environment, so that
/// Bazel runs those actions again instead of taking them from a cache.
const SALT_FLAGS: &[&str] = &[
    "--action_env=SALT=x",
    "--host_action_env=SALT=x",
    "--test_env=SALT=x",
];

/// Runs `bazel test FLAGS EXTRA //...`, which must succeed, with an execution
/// log named `name` in the test's temporary directory; returns what Bazel
/// printed and the spawns it logged.
fn test_all(bazel: &Bazel, flags: &[String], extra: &[&str], name: &str) -> (Output, Vec<Spawn>) {
    let log = bazel.temp_dir().join(format!("{name}.exec.json"));
    let log_flag = format!("--execution_log_json_file={}", log.display());
    let mut extra = extra.to_vec();
    extra.push(&log_flag);
    extra.push("//...");
    let output = bazel.run_ok(&args("test", flags, &extra));
    let spawns = exec_log::read(&log);
    (output, spawns)
}

/// The spawns, one a line, for failure messages.
fn list(spawns: &[Spawn]) -> String {
    spawns.iter().map(|spawn| format!("  {spawn}\n")).collect()
}

/// Asserts that every action of a build that Bazel did not run in-process
/// was executed remotely, none taken from a cache and none run locally, and
/// that Bazel did not warn about remote execution. Returns the summary.
fn assert_all_executed_remotely(output: &Output, spawns: &[Spawn]) -> ProcessSummary {
    let summary = output.summary();
    assert!(
        summary.count(REMOTE) > 0
            && summary.count(REMOTE) == summary.non_internal()
            && summary.executed() == BTreeMap::from([(REMOTE, summary.count(REMOTE))]),
        "{}: every non-internal action should have run remotely (`N remote`, nothing \
         local, no cache hits), but the summary is: {summary}\n{}",
        output.command,
        output.dump()
    );
    let not_remote: Vec<&Spawn> = spawns
        .iter()
        .filter(|spawn| spawn.runner != REMOTE || spawn.remote_cache_hit)
        .collect();
    assert!(
        !spawns.is_empty() && not_remote.is_empty(),
        "{}: the execution log should show every spawn run by the `{REMOTE}` runner; \
         these were not:\n{}all spawns:\n{}",
        output.command,
        not_remote
            .iter()
            .map(|spawn| format!("  {spawn}\n"))
            .collect::<String>(),
        list(spawns)
    );
    assert_eq!(
        spawns.len() as u64,
        summary.count(REMOTE),
        "{}: the execution log has another number of spawns than the summary's \
         remote actions ({summary}):\n{}",
        output.command,
        list(spawns)
    );
    assert_no_remote_warnings(output);
    summary
}

/// Asserts that the sh_test ran (was not taken from a cache), on the server,
/// and passed, and that its log, fetched from the server, says so.
fn assert_test_ran_remotely(bazel: &Bazel, output: &Output, spawns: &[Spawn]) {
    let result = output.test_result(TEST);
    assert!(
        result.passed() && !result.cached,
        "{TEST} should have run and PASSED (not cached), but Bazel reported: {}\n{}",
        result.line,
        output.dump()
    );
    assert!(
        spawns
            .iter()
            .any(|spawn| spawn.mnemonic == "TestRunner" && spawn.runner == REMOTE),
        "the execution log has no TestRunner spawn run remotely:\n{}",
        list(spawns)
    );
    let log_path = bazel.testlogs_dir().join("tests/check/test.log");
    let log = fs::read_to_string(&log_path)
        .unwrap_or_else(|e| panic!("cannot read the test log {}: {e}", log_path.display()));
    assert!(
        log.lines().any(|line| line == TEST_PASSED_LINE),
        "the test log {} lacks `{TEST_PASSED_LINE}`:\n{log}",
        log_path.display()
    );
}

/// The mnemonics of the spawns.
fn mnemonics(spawns: &[Spawn]) -> BTreeSet<&str> {
    spawns.iter().map(|spawn| spawn.mnemonic.as_str()).collect()
}

/// A fresh server executes the whole build, the test included; the outputs it
/// sends back are right; after `bazel clean` every action is a remote cache
/// hit and the outputs are byte-identical.
#[test]
fn build_executes_remotely_and_clean_rebuild_hits_the_cache() {
    let Some(bazel_path) =
        bazel_or_skip("build_executes_remotely_and_clean_rebuild_hits_the_cache")
    else {
        return;
    };
    let mut server = Server::start();
    let bazel = Bazel::new(bazel_path);
    let flags = remote_flags("--remote_executor", &server, 60);

    let (first, spawns) = test_all(&bazel, &flags, &[], "first");
    let first_summary = assert_all_executed_remotely(&first, &spawns);
    assert_test_ran_remotely(&bazel, &first, &spawns);
    // Compiles, links, genrules, the tree rule and the test all ran remotely.
    let kinds = mnemonics(&spawns);
    for mnemonic in ["CppCompile", "CppLink", "Genrule", "MakeTree", "TestRunner"] {
        assert!(
            kinds.contains(mnemonic),
            "no {mnemonic} spawn in the execution log:\n{}",
            list(&spawns)
        );
    }
    outputs::check(&bazel.bin_dir());
    let executed = outputs::snapshot(&bazel.bin_dir());

    bazel.run_ok(&["clean"]);
    let (rebuild, rebuild_spawns) = test_all(&bazel, &flags, &[], "rebuild");
    let summary = rebuild.summary();
    assert!(
        summary.executed().is_empty()
            && summary.count(REMOTE_CACHE_HIT) == first_summary.non_internal(),
        "after bazel clean, every one of the {} actions the first build executed \
         remotely ({first_summary}) should be a remote cache hit, but the rebuild had: \
         {summary}\n{}",
        first_summary.non_internal(),
        rebuild.dump()
    );
    assert!(
        rebuild_spawns.iter().all(|spawn| spawn.remote_cache_hit),
        "the execution log of the rebuild has spawns that were not remote cache hits:\n{}",
        list(&rebuild_spawns)
    );
    assert_no_remote_warnings(&rebuild);
    let result = rebuild.test_result(TEST);
    assert!(
        result.passed(),
        "{TEST} should pass from the cache: {}\n{}",
        result.line,
        rebuild.dump()
    );
    outputs::assert_same(
        "the remotely executed build",
        &executed,
        "the build from the cache",
        &outputs::snapshot(&bazel.bin_dir()),
    );
    server.assert_running();
}

/// Against a warm cache, salted action keys make Bazel execute the actions
/// again, all remotely; with `--remote_download_minimal` the outputs stay on
/// the server, and the test still passes there.
#[test]
fn salted_rebuild_executes_remotely_again_without_the_bytes() {
    let Some(bazel_path) =
        bazel_or_skip("salted_rebuild_executes_remotely_again_without_the_bytes")
    else {
        return;
    };
    let mut server = Server::start();
    let bazel = Bazel::new(bazel_path);
    let flags = remote_flags("--remote_executor", &server, 60);

    let (warm, warm_spawns) = test_all(&bazel, &flags, &[], "warm");
    assert_all_executed_remotely(&warm, &warm_spawns);

    let mut extra = SALT_FLAGS.to_vec();
    extra.push("--remote_download_minimal");
    let (salted, spawns) = test_all(&bazel, &flags, &extra, "salted");
    // Actions whose key the salt does not change (links, the tree rule) are
    // up to date for Bazel and do not run at all; every other one must run
    // remotely again, not come from the cache.
    assert_all_executed_remotely(&salted, &spawns);
    assert_test_ran_remotely(&bazel, &salted, &spawns);
    let kinds = mnemonics(&spawns);
    for mnemonic in ["CppCompile", "Genrule", "TestRunner"] {
        assert!(
            kinds.contains(mnemonic),
            "salted, the {mnemonic} actions should have run again:\n{}",
            list(&spawns)
        );
    }
    // Nothing needed the big output locally, so it must not have come down.
    let big = bazel.bin_dir().join("big.txt");
    assert!(
        !big.exists(),
        "{} was downloaded despite --remote_download_minimal",
        big.display()
    );
    server.assert_running();
}

/// One executor and eight parallel jobs: the server must queue the actions
/// and still run every one of them.
#[test]
fn one_executor_queues_parallel_jobs() {
    let Some(bazel_path) = bazel_or_skip("one_executor_queues_parallel_jobs") else {
        return;
    };
    let mut server = Server::start_with_args(&["--executors", "1"]);
    let bazel = Bazel::new(bazel_path);
    let flags = remote_flags("--remote_executor", &server, 60);
    let log = server.log();
    assert!(
        log.contains("executors=1"),
        "the server's log does not say it runs one executor:\n{log}"
    );

    let (output, spawns) = test_all(&bazel, &flags, &["--jobs=8"], "jobs8");
    assert_all_executed_remotely(&output, &spawns);
    assert_test_ran_remotely(&bazel, &output, &spawns);
    outputs::check(&bazel.bin_dir());

    // And again with every action re-executed at once.
    let mut extra = SALT_FLAGS.to_vec();
    extra.push("--jobs=8");
    let (salted, salted_spawns) = test_all(&bazel, &flags, &extra, "jobs8-salted");
    assert_all_executed_remotely(&salted, &salted_spawns);
    assert_test_ran_remotely(&bazel, &salted, &salted_spawns);
    outputs::check(&bazel.bin_dir());
    server.assert_running();
}

/// An action requiring a platform property no executor offers fails the
/// build, with an error naming the property, and runs nowhere.
#[test]
fn unmatched_exec_property_fails_the_build() {
    let Some(bazel_path) = bazel_or_skip("unmatched_exec_property_fails_the_build") else {
        return;
    };
    let mut server = Server::start();
    let bazel = Bazel::new(bazel_path);
    let flags = remote_flags("--remote_executor", &server, 60);

    let output = bazel.run(&args(
        "build",
        &flags,
        &["--remote_default_exec_properties=OSFamily=windows", "//..."],
    ));
    assert!(
        !output.status.success(),
        "{} should fail: no executor offers OSFamily=windows\n{}",
        output.command,
        output.dump()
    );
    let errors: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| line.starts_with("ERROR:"))
        .collect();
    assert!(
        errors
            .iter()
            .any(|line| line.contains("OSFamily") && line.contains("FAILED_PRECONDITION")),
        "{} failed, but no error names FAILED_PRECONDITION and the unmatched OSFamily \
         property; errors:\n{}\n{}",
        output.command,
        errors.join("\n"),
        output.dump()
    );
    // Bazel must not have fallen back to running anything itself.
    if let Some(summary) = summary::parse_last(&output.stderr) {
        assert!(
            summary.executed().is_empty(),
            "{}: actions ran although no executor matches: {summary}\n{}",
            output.command,
            output.dump()
        );
    }
    server.assert_running();
}

/// An action requiring a property the executors offer (`OSFamily=linux`)
/// runs remotely as any other.
#[test]
fn matched_exec_property_builds() {
    let Some(bazel_path) = bazel_or_skip("matched_exec_property_builds") else {
        return;
    };
    let mut server = Server::start();
    let bazel = Bazel::new(bazel_path);
    let flags = remote_flags("--remote_executor", &server, 60);

    let (output, spawns) = test_all(
        &bazel,
        &flags,
        &["--remote_default_exec_properties=OSFamily=linux"],
        "linux",
    );
    assert_all_executed_remotely(&output, &spawns);
    assert_test_ran_remotely(&bazel, &output, &spawns);
    outputs::check(&bazel.bin_dir());
    server.assert_running();
}
