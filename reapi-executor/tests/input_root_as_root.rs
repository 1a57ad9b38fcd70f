//! `rootfs=input-root`: an action whose input root is a whole system image
//! (as BuildStream sends) sees it as `/`, with a minimal `/dev` and its own
//! `/proc`, and nothing of the host.
//!
//! Needs isolation `linux` (root, cgroups); where the host lacks it these
//! tests fail with the reason rather than skip.

use std::path::Path;

use reapi_executor::sandbox::isolation::Isolation;
use reapi_test_support::actions::{command, with_command_platform};
use reapi_test_support::executor::Harness;
use reapi_test_support::system_image::programs_with_libraries;
use reapi_test_support::trees::TreeSpec;

const NOBODY: (u32, u32) = (65534, 65534);

async fn harness(isolation: Isolation) -> Harness {
    Harness::memory_running_as(isolation, Path::new("/var/tmp"), Some(NOBODY)).await
}

/// A system image of the host's `sh` and `cat` with the libraries they
/// load, at the paths the host has them.
fn tiny_system() -> TreeSpec {
    let mut tree = TreeSpec::new().dir("tmp").dir("work");
    for path in programs_with_libraries(&["/bin/sh", "/bin/cat"]) {
        let inside = path.to_str().unwrap().trim_start_matches('/').to_string();
        tree = tree.executable(&inside, &std::fs::read(&path).unwrap());
    }
    tree
}

#[tokio::test]
async fn an_action_asking_for_its_input_root_as_root_sees_only_it() {
    let h = harness(Isolation::Linux).await;
    let root = h
        .upload_tree(&tiny_system().file("work/input.txt", b"mine"))
        .await;
    let script = "echo /*; cat input.txt; echo; pwd; \
                  echo discarded > /dev/null && echo dev-null-works; \
                  [ -e /etc/passwd ] || echo no-host-etc; \
                  [ -e /usr/bin/env ] || echo no-host-usr; \
                  read -r pid _ < /proc/self/stat; echo pid=$pid; \
                  echo made > /tmp/made && cat /tmp/made";
    let mut sh = command(&["sh", "-c", script], &[("PATH", "/usr/bin:/bin")]);
    sh.working_directory = "work".into();
    let outcome = h
        .run(with_command_platform(sh, &[("rootfs", "input-root")]), root)
        .await
        .unwrap();
    let stdout = h.stdout(&outcome).await;
    let stderr = h.stderr(&outcome).await;
    assert_eq!(outcome.result.exit_code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let mut top: Vec<&str> = lines[0].split_whitespace().collect();
    top.sort();
    let mut expected = vec!["/bin", "/dev", "/proc", "/tmp", "/work"];
    expected.extend(["/lib", "/lib64"].iter().filter(|d| top.contains(d)));
    expected.sort();
    assert_eq!(top, expected, "{stdout}");
    assert_eq!(
        &lines[1..],
        [
            "mine",
            "/work",
            "dev-null-works",
            "no-host-etc",
            "no-host-usr",
            "pid=1",
            "made"
        ]
    );
}

#[tokio::test]
async fn a_missing_program_in_the_input_root_is_exit_127_naming_where_it_looked() {
    let h = harness(Isolation::Linux).await;
    let root = h.upload_tree(&tiny_system()).await;
    let missing = command(&["make", "all"], &[("PATH", "/usr/bin:/bin")]);
    let outcome = h
        .run(
            with_command_platform(missing, &[("rootfs", "input-root")]),
            root,
        )
        .await
        .unwrap();
    let stderr = h.stderr(&outcome).await;
    assert_eq!(outcome.result.exit_code, 127, "{stderr}");
    assert!(
        stderr.contains("/usr/bin/make, /bin/make") && stderr.contains("input root"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_input_root_whose_dev_is_a_file_is_refused() {
    let h = harness(Isolation::Linux).await;
    let root = h
        .upload_tree(&tiny_system().file("dev", b"not a directory"))
        .await;
    let sh = command(&["/bin/sh", "-c", "true"], &[]);
    let err = h
        .run(with_command_platform(sh, &[("rootfs", "input-root")]), root)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("/dev is not a directory"), "{err}");
}

#[tokio::test]
async fn below_linux_the_input_root_cannot_be_root() {
    let h = harness(Isolation::Process).await;
    let root = h.upload_tree(&tiny_system()).await;
    let sh = command(&["/bin/sh", "-c", "true"], &[]);
    let err = h
        .run(with_command_platform(sh, &[("rootfs", "input-root")]), root)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
}
