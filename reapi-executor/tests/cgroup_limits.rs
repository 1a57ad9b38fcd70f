//! Each command in a cgroup of its own: the CPUs and memory an action asks
//! for are limits, not hints, and a fork bomb stops at the process cap.
//!
//! These need cgroups this process may create (root, or a delegated
//! group). Where the host has none, they fail with the reason instead of
//! skipping: the limits are a promise of the product.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reapi_core::execution::{Sandbox, SandboxOutcome};
use reapi_core::platform::Resources;
use reapi_executor::sandbox::cgroup::ActionCgroups;
use reapi_executor::ProcessSandbox;
use reapi_test_support::executor::shell_in;

fn sandbox(dir: &Path, max_processes: u64) -> ProcessSandbox {
    let cgroups = ActionCgroups::for_work_dir(dir, max_processes)
        .unwrap_or_else(|e| panic!("this host gives the executor no cgroups: {e}"));
    ProcessSandbox::new().with_cgroups(Arc::new(cgroups))
}

async fn run(
    sandbox: &ProcessSandbox,
    dir: &Path,
    script: &str,
    resources: Resources,
    timeout: Duration,
) -> (SandboxOutcome, String) {
    let command = shell_in(dir, script, resources, timeout);
    let outcome = sandbox.run(command).await.expect("the sandbox failed");
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    (outcome, stderr)
}

#[tokio::test]
async fn one_cpu_holds_four_spinning_processes_to_one_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox(dir.path(), 64);
    let spin = "for i in 1 2 3 4; do (while :; do :; done) & done; wait";
    let one_cpu = Resources { cpus: 1, memory: 0 };
    let (outcome, _) = run(&sandbox, dir.path(), spin, one_cpu, Duration::from_secs(2)).await;
    assert!(outcome.timed_out, "{outcome:?}");
    let wall = outcome.finished.duration_since(outcome.started).unwrap();
    let cpu = outcome.cpu_time.expect("the cgroup's CPU time");
    let cpus_used = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!("{cpu:?} of CPU in {wall:?}: {cpus_used:.2} CPUs");
    assert!(
        cpus_used <= 1.1,
        "used {cpus_used:.2} CPUs with a limit of 1"
    );
    assert!(
        cpus_used > 0.3,
        "the spinners barely ran: {cpus_used:.2} CPUs"
    );
}

#[tokio::test]
async fn going_over_the_memory_asked_for_is_an_oom_kill_the_result_reports() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox(dir.path(), 64);
    // `tail` keeps the last line whole: 256 MiB without a newline.
    let hog = "head -c 268435456 /dev/zero | tail -n 1 > /dev/null";
    let small = Resources {
        cpus: 0,
        memory: 64 << 20,
    };
    let (outcome, stderr) = run(&sandbox, dir.path(), hog, small, Duration::from_secs(60)).await;
    assert!(!outcome.timed_out);
    assert_eq!(outcome.exit_code, 128 + libc::SIGKILL, "{stderr}");
    assert!(
        stderr.contains("killed for using more than its memory limit (67108864 bytes"),
        "stderr: {stderr:?}"
    );

    // The same with room to spare runs to the end.
    let roomy = Resources {
        cpus: 0,
        memory: 512 << 20,
    };
    let (outcome, stderr) = run(&sandbox, dir.path(), hog, roomy, Duration::from_secs(60)).await;
    assert_eq!(outcome.exit_code, 0, "{stderr}");
    assert!(!stderr.contains("memory limit"), "{stderr}");
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_process_cap_and_dies_on_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 32;
    let sandbox = sandbox(dir.path(), cap);
    // Counts the processes it managed to start, then tries for many more.
    let bomb = "n=0; while [ $n -lt 500 ]; do sleep 30 & n=$((n+1)); echo $n > started; done";
    let (outcome, stderr) = run(
        &sandbox,
        dir.path(),
        bomb,
        Resources::default(),
        Duration::from_secs(20),
    )
    .await;
    let started: u64 = std::fs::read_to_string(dir.path().join("started"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        started < cap,
        "started {started} processes under a cap of {cap}"
    );
    assert!(stderr.contains("fork"), "stderr: {stderr:?}");
    assert_ne!(outcome.exit_code, 0);

    let classic = "b() { b | b & }; b; sleep 5";
    let (outcome, _) = run(
        &sandbox,
        dir.path(),
        classic,
        Resources::default(),
        Duration::from_secs(2),
    )
    .await;
    assert!(outcome.timed_out, "{outcome:?}");
}
