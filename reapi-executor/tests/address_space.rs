//! At `process` isolation an action has no cgroup: the `memory` it asks
//! for caps its address space instead (RLIMIT_AS), so it cannot take more
//! than it asked for; an action that asks for nothing is not capped.

use std::path::Path;
use std::time::Duration;

use reapi_core::execution::{Sandbox, SandboxOutcome};
use reapi_core::platform::Resources;
use reapi_executor::sandbox::isolation::Isolation;
use reapi_executor::ProcessSandbox;
use reapi_test_support::executor::shell_in;

async fn run(dir: &Path, script: &str, memory: u64) -> (SandboxOutcome, String, String) {
    let sandbox = ProcessSandbox::new().with_isolation(Isolation::Process, None);
    let command = shell_in(
        dir,
        script,
        Resources { cpus: 0, memory },
        Duration::from_secs(60),
    );
    let outcome = sandbox.run(command).await.expect("the sandbox failed");
    let stdout = std::fs::read_to_string(dir.join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    (outcome, stdout, stderr)
}

/// 128 MiB held at once: `tail` keeps the last line whole.
const HOG: &str = "head -c 134217728 /dev/zero | tail -n 1 > /dev/null";

#[tokio::test]
async fn memory_asked_for_caps_the_address_space_at_process_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let (_, limit, _) = run(dir.path(), "ulimit -v", 64 << 20).await;
    assert_eq!(limit.trim(), "65536", "KiB of address space");
    let (outcome, _, stderr) = run(dir.path(), HOG, 64 << 20).await;
    assert_ne!(outcome.exit_code, 0, "128 MiB fit in 64 MiB: {stderr}");

    let (outcome, _, stderr) = run(dir.path(), HOG, 1 << 30).await;
    assert_eq!(
        outcome.exit_code, 0,
        "128 MiB did not fit in 1 GiB: {stderr}"
    );

    let (_, limit, _) = run(dir.path(), "ulimit -v", 0).await;
    assert_eq!(limit.trim(), "unlimited", "nothing asked, nothing capped");
}
