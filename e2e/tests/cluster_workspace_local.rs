//! The cluster workspace builds with a plain local Bazel (no remote): it is
//! the workload of the cluster tests, so it must be right on its own, with
//! the number of actions they count on and a check that passes.
//!
//! Skipped when Bazel is not installed, except on CI (`CI=true`), where that
//! is a failure.

use reapi_e2e::bazel::bazel_or_skip;
use reapi_e2e::cluster_workspace::{self, ACTIONS};

#[test]
fn cluster_workspace_builds_locally() {
    let Some(bazel_path) = bazel_or_skip("cluster_workspace_builds_locally") else {
        return;
    };
    let bazel = cluster_workspace::bazel(bazel_path);
    let flags = ["--color=no".to_string(), "--curses=no".to_string()];
    let output = cluster_workspace::build_ok(&bazel, &flags);
    let summary = output.summary();
    assert_eq!(
        summary.non_internal(),
        ACTIONS,
        "the cluster workspace should run {ACTIONS} actions (one compile per unit, the \
         app's compile and link, the check), but Bazel reported: {summary}\n{}",
        output.dump()
    );
    eprintln!(
        "local build of the cluster workspace: {summary} in {:.1?}",
        output.elapsed
    );
}
