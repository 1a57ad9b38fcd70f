//! A server killed (SIGKILL) while it runs an action takes the action's
//! processes with it: the command, its background child, and a grandchild
//! that left the process group (`setsid`) are all gone before anything is
//! restarted, since each action runs in a pid namespace of its own whose
//! first process dies with the server. The restarted server then gives the
//! next action a clean directory.

use std::time::Duration;

use reapi_test_support::actions::sh;
use reapi_test_support::bytestream::read_blob;
use reapi_test_support::cas::upload;
use reapi_test_support::clients::{bs, cas, connect, exec};
use reapi_test_support::launch::server::Server;
use reapi_test_support::operations::{execute, execute_request, start_execute, Run};
use reapi_test_support::process::{process_alive, processes_with_cwd_under};
use reapi_test_support::wait::eventually;

/// The processes the action starts: itself, a background child, and a
/// detached grandchild (its own session and process group).
const PROCESSES: usize = 3;

/// The action: starts its children, leaves a file in its input root, then
/// waits. The test finds its processes by their working directory (the
/// action's `/proc` is its own, so it cannot name its outer pids).
const LONG_ACTION: &str = "sh -c 'exec sleep 300' & setsid sh -c 'exec sleep 301' & \
     echo stale > leftover.txt; sleep 302";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_action_dies_with_it() {
    let mut server = Server::start();
    let actions = server.data_dir().join("work/actions");

    let channel = connect(server.addr()).await;
    let built = sh(LONG_ACTION).build();
    upload(&mut cas(&channel), "", &built.blobs).await;
    let mut stream = start_execute(&mut exec(&channel), execute_request(&built.action_digest))
        .await
        .expect("Execute");
    // Keep the stream open while the action runs.
    let stream_task =
        tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} });

    let sleeping = || {
        processes_with_cwd_under(&actions)
            .into_iter()
            .filter(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmd| cmd.starts_with("sleep\0"))
            })
            .count()
    };
    assert!(
        eventually(Duration::from_secs(30), || sleeping() == PROCESSES).await,
        "the action did not start its processes; running in the action directory: {:?}\n{}",
        processes_with_cwd_under(&actions),
        server.log()
    );
    let pids = processes_with_cwd_under(&actions);
    assert!(pids.len() >= PROCESSES, "{pids:?}");

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
