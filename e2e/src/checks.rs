//! Building Bazel command lines and checking what Bazel reported, shared by
//! the e2e test files.

use reapi_test_support::launch::server::Server;

use crate::bazel::Output;
use crate::summary::{ProcessSummary, REMOTE_CACHE_HIT};

/// Flags that point Bazel at `server`: `mode` is `--remote_cache` or
/// `--remote_executor`. A generous timeout keeps a slow CI machine from
/// turning into a confusing cache miss; plain output stays parseable.
pub fn remote_flags(mode: &str, server: &Server, timeout_secs: u64) -> Vec<String> {
    remote_flags_for_url(mode, &server.grpc_url(), timeout_secs)
}

/// Like [`remote_flags`], for any gRPC URL (a cluster's scheduler, a load
/// balancer in front of several).
pub fn remote_flags_for_url(mode: &str, url: &str, timeout_secs: u64) -> Vec<String> {
    vec![
        format!("{mode}={url}"),
        format!("--remote_timeout={timeout_secs}"),
        "--color=no".to_string(),
        "--curses=no".to_string(),
    ]
}

/// `command` with `flags` and then `extra` arguments.
pub fn args<'a>(command: &'a str, flags: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![command];
    args.extend(flags.iter().map(String::as_str));
    args.extend_from_slice(extra);
    args
}

/// Panics if Bazel warned about the remote side: it treats failed uploads
/// and downloads as warnings and carries on, which would hide server bugs.
pub fn assert_no_remote_warnings(output: &Output) {
    let warnings = output.remote_warnings();
    assert!(
        warnings.is_empty(),
        "{} warned about the remote cache or executor:\n{}\n{}",
        output.command,
        warnings.join("\n"),
        output.dump()
    );
}

/// The first build against an empty cache ran its actions, without warnings.
pub fn assert_cold_build(output: &Output) -> ProcessSummary {
    let summary = output.summary();
    assert_eq!(
        summary.count(REMOTE_CACHE_HIT),
        0,
        "the first build against an empty cache had cache hits: {summary}"
    );
    assert!(
        summary.non_internal() > 0,
        "the first build ran no actions: {summary}"
    );
    assert_no_remote_warnings(output);
    summary
}

/// A build after `bazel clean` got every action of `first` from the cache:
/// as many hits as the first build had non-internal actions, nothing run,
/// no warnings.
pub fn assert_all_cache_hits(first: &ProcessSummary, rebuild: &Output) {
    let summary = rebuild.summary();
    assert!(
        summary.executed().is_empty() && summary.count(REMOTE_CACHE_HIT) == first.non_internal(),
        "after bazel clean, every one of the {} actions of the first build ({first}) \
         should be a remote cache hit, but the rebuild had: {summary}\n{}",
        first.non_internal(),
        rebuild.dump()
    );
    assert_no_remote_warnings(rebuild);
}
