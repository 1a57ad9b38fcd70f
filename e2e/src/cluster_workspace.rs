//! The cluster workspace (`cluster-workspace/`): about a hundred C compile
//! actions of half a second each, a link and a check, built by the cluster
//! tests against schedulers and workers.
//!
//! Every unit compiles the same `unit.c` with its own `-DUNIT=N`; the app
//! registers each unit from a constructor and the `//:check` genrule runs it,
//! so `bazel build //...` alone proves that every object came back right.
//! The build is long enough (tens of seconds on two cores) to kill a process
//! in the middle of it.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bazel::{Bazel, Output};
use crate::checks::{args, remote_flags_for_url};

/// The number of units, `UNITS` in the workspace's BUILD.
pub const UNITS: u64 = 96;

/// Actions a full build runs that a remote executor could run: one compile
/// per unit, the app's own compile, its link, and the check.
pub const ACTIONS: u64 = UNITS + 3;

/// What the app prints, and `//:check` requires, when every unit is there.
pub const CHECK_LINE: &str = "96 units linked";

/// What a build builds: the app and the check (the units are `manual`, so
/// only their objects get built).
pub const TARGETS: &str = "//...";

/// Bazel's `--jobs` against a cluster: more actions in flight than a few
/// workers have executors, so every worker stays busy.
pub const REMOTE_JOBS: u32 = 16;

/// Bazel's `--remote_timeout` against a cluster, in seconds.
pub const REMOTE_TIMEOUT_SECS: u64 = 60;

/// The checked-in workspace.
pub fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster-workspace")
}

/// A [`Bazel`] on a private copy of the cluster workspace.
pub fn bazel(bazel_path: PathBuf) -> Bazel {
    Bazel::with_workspace(bazel_path, &source())
}

/// Runs `bazel build FLAGS //...`, whether it succeeds or not.
pub fn build(bazel: &Bazel, flags: &[String]) -> Output {
    bazel.run(&args("build", flags, &[TARGETS]))
}

/// Runs `bazel build FLAGS //...`, panicking with Bazel's output if it
/// fails, then checks what the app printed.
pub fn build_ok(bazel: &Bazel, flags: &[String]) -> Output {
    let output = bazel.run_ok(&args("build", flags, &[TARGETS]));
    assert_check_output(bazel);
    output
}

/// Panics unless `bazel-bin/check.txt` (downloaded by a build without
/// `--remote_download_minimal`) says every unit was linked.
pub fn assert_check_output(bazel: &Bazel) {
    let path = bazel.bin_dir().join("check.txt");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        text.lines().any(|line| line == CHECK_LINE),
        "{} lacks `{CHECK_LINE}`:\n{text}",
        path.display()
    );
}

/// Flags for a remote build on `url` (e.g. `grpc://127.0.0.1:PORT`):
/// `--remote_executor`, [`REMOTE_JOBS`], and a fresh salt so that every
/// action really runs instead of coming from an earlier build's cache.
pub fn remote_execution_flags(url: &str) -> Vec<String> {
    let mut flags = remote_flags_for_url("--remote_executor", url, REMOTE_TIMEOUT_SECS);
    flags.push(format!("--jobs={REMOTE_JOBS}"));
    flags.extend(salt_flags(&fresh_salt()));
    flags
}

/// Flags that put `salt` into every action key (actions, host tools and
/// tests alike).
pub fn salt_flags(salt: &str) -> Vec<String> {
    vec![
        format!("--action_env=SALT={salt}"),
        format!("--host_action_env=SALT={salt}"),
        format!("--test_env=SALT={salt}"),
    ]
}

/// A salt no other call, in this process or another, returns.
pub fn fresh_salt() -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process; the time, pid and counter
    // make collisions between calls impossible in practice even so.
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_flags_point_at_the_url_with_jobs_and_a_fresh_salt() {
        let flags = remote_execution_flags("grpc://127.0.0.1:1234");
        assert!(flags.contains(&"--remote_executor=grpc://127.0.0.1:1234".to_string()));
        assert!(flags.contains(&format!("--jobs={REMOTE_JOBS}")));
        let salt = |flags: &[String]| {
            flags
                .iter()
                .find_map(|flag| flag.strip_prefix("--action_env=SALT="))
                .map(str::to_string)
                .unwrap()
        };
        let first = salt(&flags);
        assert!(flags.contains(&format!("--host_action_env=SALT={first}")));
        assert!(flags.contains(&format!("--test_env=SALT={first}")));
        assert_ne!(
            first,
            salt(&remote_execution_flags("grpc://127.0.0.1:1234"))
        );
    }

    #[test]
    fn the_workspace_declares_as_many_units() {
        let build = fs::read_to_string(source().join("BUILD")).unwrap();
        assert!(
            build.lines().any(|line| line == format!("UNITS = {UNITS}")),
            "cluster-workspace/BUILD does not say `UNITS = {UNITS}`"
        );
        assert_eq!(CHECK_LINE, format!("{UNITS} units linked"));
    }
}
