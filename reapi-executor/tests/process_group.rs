//! Timeouts and cancellation kill the whole process group; nothing is left
//! running or on disk afterwards.

use std::time::{Duration, Instant};

use reapi_test_support::actions::shell;
use reapi_test_support::executor::Harness;
use reapi_test_support::process::{process_alive, read_pids};
use reapi_test_support::trees::TreeSpec;
use reapi_test_support::wait::eventually;

/// A script that records its own pid and a background child's, then waits.
fn spawner(pid_file: &std::path::Path) -> String {
    format!(
        "echo $$ > {p}.tmp; sleep 100 & echo $! >> {p}.tmp; mv {p}.tmp {p}; echo started; sleep 100",
        p = pid_file.display()
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
    let script = format!("sleep 100 & echo $! > {}", pids.display());
    let outcome = h.run(shell(&script), root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0);
    assert!(!outcome.timed_out);
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 1);
    assert!(eventually(Duration::from_secs(5), || !process_alive(pids[0])).await);
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
