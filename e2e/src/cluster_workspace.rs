//! The cluster workspace (`cluster-workspace/`): about a hundred C compile
//! actions of half a second each, a link and a check, built by the cluster
//! tests against schedulers and workers.
//!
//! Every unit compiles the same `unit.c` with its own `-DUNIT=N`; the app
//! registers each unit from a constructor and the `//:check` genrule runs it,
//! so `bazel build //...` alone proves that every object came back right.
//! The build is long enough (tens of seconds on two cores) to kill a process
//! in the middle of it: [`build_during`] builds on another thread while the
//! test watches the cluster's logs and strikes, and [`assert_all_remote`]
//! checks the result.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bazel::{Bazel, Output};
use crate::checks::{args, assert_no_remote_warnings, remote_flags_for_url};
use crate::summary::ProcessSummary;

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

/// The kind Bazel's summary gives to actions executed remotely.
pub const REMOTE: &str = "remote";

/// How often [`RunningBuild::wait_for`] checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

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

/// A build running on another thread (see [`build_during`]).
pub struct RunningBuild {
    done: AtomicBool,
    started: Instant,
}

impl RunningBuild {
    /// Whether Bazel still runs.
    pub fn is_running(&self) -> bool {
        !self.done.load(Ordering::SeqCst)
    }

    /// How long ago the build started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Checks `condition` every 100 ms until it gives a value, and returns
    /// that; or says why not: the build ended first, or `timeout` passed.
    /// `what` names the condition for that message.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut() -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            // Checked before the build's end, so a condition met by the
            // build's last moments still counts.
            let running = self.is_running();
            if let Some(value) = condition() {
                return Ok(value);
            }
            if !running {
                return Err(format!(
                    "the build ended ({:.1?} after it started) before {what}",
                    self.elapsed()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("{what} did not happen within {timeout:?}"));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Runs `bazel build FLAGS //...` on another thread while `during` runs on
/// this one (to kill or stop processes mid-build); returns what Bazel
/// printed, whether the build succeeded or not, and what `during` returned.
/// Should `during` panic, the panic goes on once Bazel has ended.
pub fn build_during<T>(
    bazel: &Bazel,
    flags: &[String],
    during: impl FnOnce(&RunningBuild) -> T,
) -> (Output, T) {
    let running = RunningBuild {
        done: AtomicBool::new(false),
        started: Instant::now(),
    };
    thread::scope(|scope| {
        let builder = scope.spawn(|| {
            // Marked done even if the build panics (it timed out).
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let _done = Done(&running.done);
            build(bazel, flags)
        });
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| during(&running)));
        let output = match builder.join() {
            Ok(output) => output,
            Err(payload) => panic::resume_unwind(payload),
        };
        match outcome {
            Ok(value) => (output, value),
            Err(payload) => panic::resume_unwind(payload),
        }
    })
}

/// Panics unless the build succeeded with every one of the [`ACTIONS`]
/// executed remotely (`99 remote`: nothing local, no cache hit), the check
/// passed, and Bazel did not warn about remote execution. Returns the
/// summary.
pub fn assert_all_remote(bazel: &Bazel, output: &Output) -> ProcessSummary {
    let summary = assert_ran_remotely(output, ACTIONS);
    assert_eq!(
        summary.non_internal(),
        ACTIONS,
        "{}: {summary}",
        output.command
    );
    assert_check_output(bazel);
    summary
}

/// Panics unless the build succeeded with exactly `actions` actions
/// executed, all remotely (nothing local, no cache hit), with no error and
/// no warning about remote execution. Returns the summary.
pub fn assert_ran_remotely(output: &Output, actions: u64) -> ProcessSummary {
    assert!(
        output.status.success(),
        "{} failed ({})\n{}",
        output.command,
        output.status,
        output.dump()
    );
    let summary = output.summary();
    assert!(
        summary.executed() == BTreeMap::from([(REMOTE, actions)])
            && summary.count(crate::summary::REMOTE_CACHE_HIT) == 0,
        "{}: every one of the {actions} actions should have run remotely (`{actions} remote`, \
         nothing local, no cache hit), but the summary is: {summary}\n{}",
        output.command,
        output.dump()
    );
    assert_no_remote_warnings(output);
    assert_no_errors(output);
    summary
}

/// Panics if Bazel printed an `ERROR:` line, as it does for a failed
/// action or a remote call it gave up on.
pub fn assert_no_errors(output: &Output) {
    let errors: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| line.starts_with("ERROR:"))
        .collect();
    assert!(
        errors.is_empty(),
        "{} printed errors:\n{}\n{}",
        output.command,
        errors.join("\n"),
        output.dump()
    );
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
