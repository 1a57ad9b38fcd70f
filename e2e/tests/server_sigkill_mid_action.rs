//! A server killed (SIGKILL) while it runs an action takes the action's
//! processes with it: the command, its background child, and a grandchild
//! that left the process group (`setsid`) are all gone before anything is
//! restarted, since each action runs in a pid namespace of its own whose
//! first process dies with the server. The restarted server then gives the
//! next action a clean directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use reapi_test_support::actions::sh;
use reapi_test_support::bytestream::read_blob;
use reapi_test_support::cas::upload;
use reapi_test_support::clients::{bs, cas, connect, exec};
use reapi_test_support::launch::server::Server;
use reapi_test_support::operations::{execute, execute_request, start_execute, Run};
use reapi_test_support::process::{
    background_recording_pid, process_alive, read_pids, SHELL_OUTER_PID,
};
use reapi_test_support::wait::eventually;

/// The processes the action starts and records.
const PROCESSES: usize = 3;

/// The action: records its own pid, a background child's and a detached
/// grandchild's (outer pids), leaves a file in its input root, then waits.
fn long_action(pids: &Path) -> String {
    format!(
        "{SHELL_OUTER_PID}; echo $me >> {p}; {child} setsid {detached} \
         echo stale > leftover.txt; sleep 300",
        p = pids.display(),
        child = background_recording_pid("sleep 300", pids),
        detached = background_recording_pid("sleep 301", pids),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_action_dies_with_it() {
    let mut server = Server::start();
    // Actions may run as another user (nobody, under a root server): let
    // them write their pids here.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let pid_file = scratch.path().join("pids");

    let channel = connect(server.addr()).await;
    let built = sh(&long_action(&pid_file)).build();
    upload(&mut cas(&channel), "", &built.blobs).await;
    let mut stream = start_execute(&mut exec(&channel), execute_request(&built.action_digest))
        .await
        .expect("Execute");
    // Keep the stream open while the action runs.
    let stream_task =
        tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} });

    assert!(
        eventually(Duration::from_secs(30), || read_pids(&pid_file).len()
            == PROCESSES)
        .await,
        "the action did not start its processes; pids: {:?}\n{}",
        read_pids(&pid_file),
        server.log()
    );
    let pids = read_pids(&pid_file);
    assert!(
        pids.iter().all(|&p| process_alive(p)),
        "not all running: {pids:?}"
    );

    server.kill();
    let survivors = || {
        pids.iter()
            .copied()
            .filter(|&p| process_alive(p))
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(10), || survivors().is_empty()).await,
        "still running after the server was killed: {:?} of {pids:?}",
        survivors()
    );
    stream_task.abort();

    // The next action, on the restarted server, finds only its own inputs.
    server.restart();
    let channel = connect(server.addr()).await;
    let next = sh("ls -A").input("input.txt", b"x").build();
    upload(&mut cas(&channel), "", &next.blobs).await;
    let run = Run::new(
        execute(&mut exec(&channel), execute_request(&next.action_digest))
            .await
            .expect("Execute after the restart"),
    );
    run.assert_ran_ok();
    let listing = read_blob(
        &mut bs(&channel),
        "",
        run.result().stdout_digest.as_ref().expect("stdout"),
    )
    .await
    .expect("reading stdout");
    assert_eq!(String::from_utf8_lossy(&listing), "input.txt\n");
}
