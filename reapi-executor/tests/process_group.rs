//! Timeouts and cancellation kill the whole process group; nothing is left
//! running or on disk afterwards.

use std::time::{Duration, Instant};

use reapi_test_support::actions::shell;
use reapi_test_support::executor::Harness;
use reapi_test_support::process::{
    background_recording_pid, process_alive, read_pids, SHELL_OUTER_PID,
};
use reapi_test_support::trees::TreeSpec;
use reapi_test_support::wait::eventually;

/// A script that records its own pid and a background child's, then waits.
fn spawner(pid_file: &std::path::Path) -> String {
    let tmp = pid_file.with_extension("tmp");
    format!(
        "{SHELL_OUTER_PID}; echo $me > {p}.tmp; {child} {wait}; \
         mv {p}.tmp {p}; echo started; sleep 100",
        p = pid_file.display(),
        child = background_recording_pid("sleep 100", &tmp),
        wait = wait_for_lines(&tmp, 2),
    )
}

/// Shell code that waits until `file` has `lines` lines.
fn wait_for_lines(file: &std::path::Path, lines: usize) -> String {
    format!(
        "while [ $(cat {f} 2>/dev/null | wc -l) -lt {lines} ]; do sleep 0.01; done",
        f = file.display()
    )
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let pids = h.scratch().join("pids");
    let start = Instant::now();
    let outcome = h
        .run_timed(shell(&spawner(&pids)), root, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(outcome.timed_out);
    assert!(start.elapsed() < Duration::from_secs(10));
    // Killed by SIGKILL: 128 + 9.
    assert_eq!(outcome.result.exit_code, 137);
    // What it wrote until then is kept.
    assert_eq!(h.stdout(&outcome).await, "started\n");
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 2);
    assert!(
        eventually(Duration::from_secs(5), || pids
            .iter()
            .all(|p| !process_alive(*p)))
        .await,
        "still running: {pids:?}"
    );
    // The shell (our child) is reaped, not a zombie.
    assert!(!std::path::Path::new(&format!("/proc/{}", pids[0])).exists());
    assert!(h.leftover_action_dirs().is_empty());
}

#[tokio::test]
async fn background_processes_die_when_the_command_exits() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let pids = h.scratch().join("bg");
    let script = format!(
        "{} {}",
        background_recording_pid("sleep 100", &pids),
        wait_for_lines(&pids, 1)
    );
    let outcome = h.run(shell(&script), root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0);
    assert!(!outcome.timed_out);
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 1);
    assert!(eventually(Duration::from_secs(5), || !process_alive(pids[0])).await);
}

/// A process that left the command's process group (`setsid`) is out of
/// reach of a group kill; the command's pid namespace still takes it down
/// when the command exits.
#[tokio::test]
async fn a_detached_process_dies_when_the_command_exits() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let pids = h.scratch().join("detached");
    let script = format!(
        "setsid {} {}",
        background_recording_pid("sleep 100", &pids),
        wait_for_lines(&pids, 1)
    );
    let outcome = h.run(shell(&script), root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0);
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 1);
    assert!(
        eventually(Duration::from_secs(5), || !process_alive(pids[0])).await,
        "the detached process {} survived its command",
        pids[0]
    );
}

#[tokio::test]
async fn cancelling_kills_the_group_and_removes_the_action_directory() {
    let h = Harness::memory().await;
    let root = h
        .upload_tree(&TreeSpec::new().file("input.txt", b"data"))
        .await;
    let pid_file = h.scratch().join("pids");
    // Boxed, so that dropping it below really drops the future.
    let mut run = Box::pin(h.run_timed(shell(&spawner(&pid_file)), root, Duration::from_secs(100)));
    let started = Instant::now();
    loop {
        tokio::select! {
            result = &mut run => panic!("the run ended by itself: {result:?}"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {
                if pid_file.exists() {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(10), "the command never started");
            }
        }
    }
    assert_eq!(h.leftover_action_dirs().len(), 1);
    let pids = read_pids(&pid_file);
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| process_alive(*p)));

    // Cancel: drop the future.
    drop(run);

    assert!(
        eventually(Duration::from_secs(5), || pids
            .iter()
            .all(|p| !process_alive(*p)))
        .await,
        "still running after cancel: {pids:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || h
            .leftover_action_dirs()
            .is_empty())
        .await,
        "left behind: {:?}",
        h.leftover_action_dirs()
    );
    assert!(
        eventually(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{}",
            pids[0]
        ))
        .exists())
        .await,
        "the shell was not reaped"
    );
    // The executor is free again.
    let outcome = h
        .run_timed(shell("cat input.txt"), root, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(h.stdout(&outcome).await, "data");
}

/// A server or worker killed mid-action leaves its commands running,
/// reparented to init, in their action directory. The next pool over the
/// same work directory kills them before it clears the directory, so the
/// next action starts clean and nothing stale writes into it.
#[tokio::test]
async fn a_new_pool_kills_what_a_killed_predecessor_left_running() {
    use std::os::unix::process::CommandExt;

    use reapi_cas::store::MemoryStore;
    use reapi_executor::pool::{LocalExecutorConfig, LocalExecutorPool};

    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let root = work.join("actions/0.1/root");
    std::fs::create_dir_all(&root).unwrap();
    // What a killed run leaves: a command and its background child, both
    // orphans (the shell that started them exits), in the input root.
    let pids = dir.path().join("pids");
    let script = format!(
        "sh -c 'sleep 300 & echo $! >> {p}; sleep 300' & echo $! >> {p}",
        p = pids.display()
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(&root)
        .process_group(0)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        eventually(Duration::from_secs(5), || read_pids(&pids).len() == 2).await,
        "the leftovers did not start"
    );
    let leftovers = read_pids(&pids);
    assert!(leftovers.iter().all(|p| process_alive(*p)));

    let cas: std::sync::Arc<dyn reapi_core::BlobStore> =
        std::sync::Arc::new(MemoryStore::new(1 << 20));
    let config = LocalExecutorConfig::new(&work).unwrap();
    let sandbox = std::sync::Arc::new(config.process_sandbox().unwrap());
    let _pool = LocalExecutorPool::new(cas, None, sandbox, config)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || leftovers
            .iter()
            .all(|p| !process_alive(*p)))
        .await,
        "still running after the pool started: {leftovers:?}"
    );
    assert!(!root.exists(), "the old action directory was not cleared");
    assert_eq!(
        std::fs::read_dir(work.join("actions")).unwrap().count(),
        0,
        "the actions directory is not empty"
    );
}
