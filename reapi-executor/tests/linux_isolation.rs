//! Isolation level `linux`: an action sees its own input root, the host's
//! tools, a private `/tmp` and `/proc`, and nothing of the server's data or
//! other actions; its network is its own loopback.
//!
//! The level needs root (namespaces) and cgroups: where the host lacks
//! them these tests fail with the reason rather than skip.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;

use reapi_executor::sandbox::isolation::Isolation;
use reapi_test_support::actions::{shell, with_command_platform};
use reapi_test_support::executor::Harness;
use reapi_test_support::trees::TreeSpec;

/// Under `/var/tmp`, not `/tmp`: the server's data must be hidden by its own
/// covering, not only by the private `/tmp`.
async fn harness() -> Harness {
    Harness::memory_at_in(Isolation::Linux, Path::new("/var/tmp")).await
}

#[tokio::test]
async fn an_action_sees_its_inputs_and_nothing_else_of_the_server() {
    let h = harness().await;
    let secret = h.dir.path().join("secret.txt");
    std::fs::write(&secret, "server data").unwrap();
    let root = h
        .upload_tree(&TreeSpec::new().file("input.txt", b"mine"))
        .await;
    let script = format!(
        "cat input.txt; echo; \
         cat {secret} 2>/dev/null && echo SECRET-VISIBLE; \
         ls -A {data}; ls -A $(dirname $PWD)/..; \
         echo scratch > /tmp/note; ls -A /tmp",
        secret = secret.display(),
        data = h.dir.path().display(),
    );
    let outcome = h.run(shell(&script), root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    let stderr = h.stderr(&outcome).await;
    assert_eq!(outcome.result.exit_code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "mine");
    assert!(!stdout.contains("SECRET-VISIBLE"), "{stdout}");
    // The data directory holds only the way to this action's directory,
    // and the actions directory only this action.
    assert_eq!(lines[1], "work", "{stdout}");
    assert_eq!(lines[2].split_whitespace().count(), 1, "{stdout}");
    assert_eq!(lines[3], "note", "{stdout}");
    // Its /tmp was its own, and is gone with it.
    let host_note = std::fs::read_to_string("/tmp/note").unwrap_or_default();
    assert_ne!(
        host_note, "scratch\n",
        "the action wrote in the host's /tmp"
    );
    assert!(h.leftover_action_dirs().is_empty());
}

#[tokio::test]
async fn an_action_has_no_network_but_its_own_loopback() {
    let h = harness().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let root = h.upload_tree(&TreeSpec::new()).await;
    let script = format!(
        "if bash -c 'echo hello > /dev/tcp/127.0.0.1/{port}' 2>/dev/null; \
         then echo REACHED-THE-HOST; fi; \
         grep -c ':' /proc/net/dev; grep -o '^ *lo:' /proc/net/dev | tr -d ' '"
    );
    let outcome = h.run(shell(&script), root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    assert!(!stdout.contains("REACHED-THE-HOST"), "{stdout}");
    let mut accepted = String::new();
    if let Ok((mut conn, _)) = listener.accept() {
        conn.read_to_string(&mut accepted).ok();
    }
    assert_eq!(accepted, "", "the host's listener got a connection");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["1", "lo:"], "interfaces seen: {stdout}");
}

#[tokio::test]
async fn an_action_asking_for_the_network_gets_the_hosts() {
    let h = harness().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let root = h.upload_tree(&TreeSpec::new()).await;
    let command = with_command_platform(
        shell(&format!(
            "bash -c 'echo hello > /dev/tcp/127.0.0.1/{port}' && echo REACHED-THE-HOST"
        )),
        &[("network", "on")],
    );
    let accepting = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        got
    });
    let outcome = h.run(command, root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    let stderr = h.stderr(&outcome).await;
    assert!(stdout.contains("REACHED-THE-HOST"), "{stdout}{stderr}");
    assert_eq!(accepting.join().unwrap(), "hello\n");
}

#[tokio::test]
async fn an_action_sees_only_its_own_processes() {
    let h = harness().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let script = "sleep 5 & ls /proc | grep -c '^[0-9]'; echo $$";
    let outcome = h.run(shell(script), root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    // The shell, sleep, ls and grep at most.
    let lines: Vec<&str> = stdout.lines().collect();
    let count: u32 = lines[0].parse().unwrap();
    assert!(count <= 4, "{count} processes visible: {stdout}");
    assert_eq!(lines[1], "1");
}
