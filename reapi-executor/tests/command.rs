//! Running commands: stdout/stderr, exit codes, the environment, the
//! working directory, `arguments[0]` resolution, metadata and clean-up.

use reapi_core::execution::ExecutorPool;
use reapi_test_support::actions::{command, shell};
use reapi_test_support::executor::{job, Harness};
use reapi_test_support::trees::TreeSpec;
use tonic::Code;

#[tokio::test]
async fn runs_a_command_and_reports_its_output() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let outcome = h
        .run(shell("echo hello; echo oops >&2; exit 3"), root)
        .await
        .unwrap();
    assert_eq!(outcome.result.exit_code, 3);
    assert!(!outcome.timed_out);
    assert_eq!(h.stdout(&outcome).await, "hello\n");
    assert_eq!(h.stderr(&outcome).await, "oops\n");

    let meta = outcome.result.execution_metadata.as_ref().unwrap();
    assert_eq!(meta.worker, "local/0");
    for ts in [
        &meta.queued_timestamp,
        &meta.worker_start_timestamp,
        &meta.input_fetch_start_timestamp,
        &meta.input_fetch_completed_timestamp,
        &meta.execution_start_timestamp,
        &meta.execution_completed_timestamp,
        &meta.output_upload_start_timestamp,
        &meta.output_upload_completed_timestamp,
        &meta.worker_completed_timestamp,
    ] {
        assert!(ts.as_ref().unwrap().seconds > 1_600_000_000);
    }
    let secs = |t: &Option<reapi_core::proto::protobuf::Timestamp>| {
        let t = t.as_ref().unwrap();
        t.seconds as f64 + t.nanos as f64 * 1e-9
    };
    assert!(secs(&meta.worker_start_timestamp) <= secs(&meta.execution_start_timestamp));
    assert!(secs(&meta.execution_completed_timestamp) <= secs(&meta.worker_completed_timestamp));

    // The action directory is gone.
    assert!(h.leftover_action_dirs().is_empty());
}

#[tokio::test]
async fn empty_output_streams_get_the_empty_digest() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let outcome = h.run(command(&["/bin/true"], &[]), root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0);
    let empty = reapi_core::Digest::EMPTY.to_proto();
    assert_eq!(outcome.result.stdout_digest.as_ref(), Some(&empty));
    assert_eq!(outcome.result.stderr_digest.as_ref(), Some(&empty));
}

#[tokio::test]
async fn environment_is_exactly_what_was_given() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    // No PATH: `env` is found through the default search path, and PATH is
    // not added to the environment.
    let outcome = h
        .run(command(&["env"], &[("A", "1"), ("B", "two words")]), root)
        .await
        .unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    assert_eq!(h.stdout(&outcome).await, "A=1\nB=two words\n");

    let outcome = h.run(command(&["env"], &[]), root).await.unwrap();
    assert_eq!(h.stdout(&outcome).await, "");
}

#[tokio::test]
async fn runs_in_the_working_directory() {
    let h = Harness::memory().await;
    let root = h
        .upload_tree(&TreeSpec::new().file("src/lib/data.txt", b"payload"))
        .await;
    let mut cmd = shell("pwd; cat data.txt");
    cmd.working_directory = "src/./lib/".into();
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    let stdout = h.stdout(&outcome).await;
    assert!(stdout.ends_with("/root/src/lib\npayload"), "{stdout}");

    let mut cmd = shell("true");
    cmd.working_directory = "nowhere".into();
    let err = h.run(cmd, root).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("nowhere"), "{err}");

    let mut cmd = shell("true");
    cmd.working_directory = "src/lib/data.txt".into();
    assert_eq!(
        h.run(cmd, root).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert!(h.leftover_action_dirs().is_empty());
}

#[tokio::test]
async fn arguments0_is_resolved_relative_to_the_working_directory() {
    let h = Harness::memory().await;
    let root = h
        .upload_tree(
            &TreeSpec::new()
                .executable("pkg/script.sh", b"#!/bin/sh\necho \"script $1 $0\"\n")
                .executable("tools/mytool", b"#!/bin/sh\necho mytool\n")
                .file("pkg/plain.sh", b"echo never\n"),
        )
        .await;
    let mut cmd = command(&["./script.sh", "arg"], &[]);
    cmd.working_directory = "pkg".into();
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    assert_eq!(h.stdout(&outcome).await, "script arg ./script.sh\n");

    // Without `./` but with a `/`: relative to the working directory too.
    let outcome = h
        .run(command(&["pkg/script.sh", "x"], &[]), root)
        .await
        .unwrap();
    assert_eq!(h.stdout(&outcome).await, "script x pkg/script.sh\n");

    // A bare name is looked up in the action's PATH (relative entries are
    // relative to the working directory).
    let outcome = h
        .run(
            command(&["mytool"], &[("PATH", "/nonexistent:tools")]),
            root,
        )
        .await
        .unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    assert_eq!(h.stdout(&outcome).await, "mytool\n");

    // Not executable: 126.
    let mut cmd = command(&["./plain.sh"], &[]);
    cmd.working_directory = "pkg".into();
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 126);
    assert!(h.stderr(&outcome).await.contains("plain.sh"));
}

#[tokio::test]
async fn a_missing_command_is_exit_127_with_a_message() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    for args in [
        &["no-such-command-xyz", "a"][..],
        &["./no-such-file"],
        &["/no/such/path"],
    ] {
        let outcome = h.run(command(args, &[]), root).await.unwrap();
        assert_eq!(outcome.result.exit_code, 127, "{args:?}");
        let stderr = h.stderr(&outcome).await;
        assert!(stderr.contains(args[0]), "{stderr}");
        assert_eq!(h.stdout(&outcome).await, "");
    }
    // A bare name the default path has, but the action's PATH does not.
    let outcome = h
        .run(
            command(&["sh", "-c", "true"], &[("PATH", "/nonexistent")]),
            root,
        )
        .await
        .unwrap();
    assert_eq!(outcome.result.exit_code, 127);
    assert!(h.leftover_action_dirs().is_empty());
}

#[tokio::test]
async fn a_command_without_arguments_is_invalid() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let err = h.run(command(&[], &[]), root).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("no arguments"), "{err}");
    assert!(err.to_string().contains("running action"), "{err}");
}

#[tokio::test]
async fn a_missing_input_root_digest_is_invalid() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let mut job = job(shell("true"), root, std::time::Duration::from_secs(5));
    job.action.input_root_digest = None;
    let claim = h.pool.claim().unwrap();
    let err = h.pool.run(&claim, job).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn executors_are_claimed_one_lease_at_a_time() {
    let h = Harness::memory().await;
    assert_eq!(h.pool.capacity(), 2);
    assert_eq!(h.pool.free(), 2);
    let props = h.pool.properties();
    assert_eq!(props.values("OSFamily").collect::<Vec<_>>(), ["linux"]);
    assert!(props.resources().cpus >= 1);

    let first = h.pool.claim().expect("a first executor");
    let second = h.pool.claim().expect("a second executor");
    assert_ne!(first.executor(), second.executor());
    assert_eq!(h.pool.free(), 0);
    assert!(h.pool.claim().is_none(), "a third claim on two executors");

    // A claimed executor runs its job; dropping the claim frees it.
    let root = h.upload_tree(&TreeSpec::new()).await;
    let job = job(shell("true"), root, std::time::Duration::from_secs(5));
    assert_eq!(h.pool.run(&first, job).await.unwrap().result.exit_code, 0);
    assert_eq!(h.pool.free(), 0, "the claim still holds the executor");
    drop(first);
    assert_eq!(h.pool.free(), 1);
    let again = h.pool.claim().expect("the freed executor");
    drop((again, second));
    assert_eq!(h.pool.free(), 2);
}
