//! A contained action (isolation `process` or `linux`) holds no capability
//! and cannot gain one: not by running as root, not through a
//! set-user-id program.
//!
//! These run as root, as CI does: only root can make the set-user-id
//! program and switch actions to another user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use reapi_executor::sandbox::isolation::Isolation;
use reapi_test_support::actions::shell;
use reapi_test_support::executor::Harness;
use reapi_test_support::trees::TreeSpec;

const NOBODY: (u32, u32) = (65534, 65534);

/// Under `/var/tmp`, which `linux` actions see (their `/tmp` is their own).
async fn harness(isolation: Isolation, run_as: Option<(u32, u32)>) -> Harness {
    Harness::memory_running_as(isolation, Path::new("/var/tmp"), run_as).await
}

async fn run(h: &Harness, script: &str) -> String {
    let root = h.upload_tree(&TreeSpec::new()).await;
    let outcome = h.run(shell(script), root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    let stderr = h.stderr(&outcome).await;
    assert_eq!(outcome.result.exit_code, 0, "{stdout}{stderr}");
    stdout
}

/// The capability lines and `NoNewPrivs` of the action's own status.
async fn privileges_of_an_action(isolation: Isolation, run_as: Option<(u32, u32)>) -> String {
    let h = harness(isolation, run_as).await;
    run(&h, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status").await
}

fn assert_unprivileged(status: &str) {
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let line = status
            .lines()
            .find(|l| l.starts_with(set))
            .unwrap_or_else(|| panic!("no {set} in\n{status}"));
        assert!(
            line.ends_with("0000000000000000"),
            "{set} is not empty:\n{status}"
        );
    }
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
}

#[tokio::test]
async fn an_action_left_running_as_root_holds_no_capability() {
    for isolation in [Isolation::Process, Isolation::Linux] {
        let status = privileges_of_an_action(isolation, None).await;
        eprintln!("{isolation}, as root:\n{status}");
        assert_unprivileged(&status);
    }
}

#[tokio::test]
async fn an_action_running_as_nobody_holds_no_capability() {
    for isolation in [Isolation::Process, Isolation::Linux] {
        let status = privileges_of_an_action(isolation, Some(NOBODY)).await;
        assert_unprivileged(&status);
    }
}

/// A set-user-id-root copy of `id`, in a directory every action sees.
fn setuid_root_id() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = dir.path().join("id");
    std::fs::copy("/usr/bin/id", &id).unwrap();
    std::os::unix::fs::chown(&id, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).unwrap();
    (dir, id)
}

#[tokio::test]
async fn a_set_user_id_program_does_not_make_an_action_root() {
    let (_dir, id) = setuid_root_id();
    // Outside any sandbox the copy does raise nobody to root: the test
    // would prove nothing otherwise.
    let unconfined = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&id)
        .arg("-u")
        .output()
        .expect("running setpriv");
    assert_eq!(
        String::from_utf8_lossy(&unconfined.stdout).trim(),
        "0",
        "{unconfined:?}"
    );
    for isolation in [Isolation::Process, Isolation::Linux] {
        let h = harness(isolation, Some(NOBODY)).await;
        let euid = run(&h, &format!("{} -u", id.display())).await;
        assert_eq!(euid.trim(), "65534", "{isolation}");
    }
}
