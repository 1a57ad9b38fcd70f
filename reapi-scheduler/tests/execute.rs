//! Execute end to end over gRPC: real commands on local executors, results
//! in the CAS and the action cache, cache hits, inlining, deduplication,
//! cancellation, timeouts and priorities.

use std::time::{Duration, Instant};

use reapi_core::proto::longrunning as lro;
use reapi_core::proto::remote_execution as re;
use reapi_scheduler::SchedulerConfig;
use reapi_test_support::actions::{sh, sh_args, ActionSpec, PATH};
use reapi_test_support::bytestream::{read_blob, read_name};
use reapi_test_support::cas::find_missing;
use reapi_test_support::digests::{dig, dig_msg, sha256};
use reapi_test_support::operations::{
    drain, execute, execute_request, metadata, next_op, read_until, response_of, stage_of,
    start_execute, with_priority, Run, Stage,
};
use reapi_test_support::process::{process_alive, process_exists, read_pid};
use reapi_test_support::server::full::{Config, Server};
use reapi_test_support::status::{assert_code, rpc_code};
use reapi_test_support::timestamps::nanos;
use reapi_test_support::wait::eventually;
use tonic::Code;

const SCRIPT: &str = "echo hi; echo err >&2; cat input.txt > out/result.txt";
const INPUT: &[u8] = b"the input file\n";

fn io_action() -> ActionSpec {
    sh(SCRIPT).input("input.txt", INPUT)
}

/// Checks the result of [`SCRIPT`]: exit code, stdout and stderr in the
/// CAS, the output file.
async fn check_io_result(server: &Server, result: &re::ActionResult) {
    assert_eq!(result.exit_code, 0);
    let stdout = result.stdout_digest.as_ref().expect("stdout digest");
    let stderr = result.stderr_digest.as_ref().expect("stderr digest");
    assert_eq!(server.read_blob(stdout).await, b"hi\n");
    assert_eq!(server.read_blob(stderr).await, b"err\n");
    assert_eq!(result.output_files.len(), 1, "{:?}", result.output_files);
    let file = &result.output_files[0];
    assert_eq!(file.path, "out/result.txt");
    assert_eq!(file.digest.as_ref(), Some(&dig(INPUT)));
    assert!(!file.is_executable);
    assert_eq!(server.read_blob(file.digest.as_ref().unwrap()).await, INPUT);
    let meta = result.execution_metadata.as_ref().expect("metadata");
    assert!(!meta.worker.is_empty());
    assert!(nanos(&meta.execution_start_timestamp) <= nanos(&meta.execution_completed_timestamp));
}

async fn end_to_end(spec: ActionSpec) {
    let server = Server::start().await;
    let digest = server.upload_action(&spec).await;
    assert_code(
        server.cached_result(&digest).await,
        Code::NotFound,
        "action cache before the run",
    );

    // First run: queued or executing, then completed.
    let run = server.run_request(execute_request(&digest)).await;
    run.assert_ran_ok();
    assert_eq!(metadata(&run.ops[0]).action_digest.as_ref(), Some(&digest));
    assert!(run.name().starts_with("operations/"), "{}", run.name());
    check_io_result(&server, run.result()).await;

    // The result is in the action cache.
    let cached = server.cached_result(&digest).await.expect("cached result");
    assert_eq!(cached.output_files, run.result().output_files);
    assert_eq!(cached.stdout_digest, run.result().stdout_digest);
    assert_eq!(cached.exit_code, 0);

    // Second run: a cache hit, CACHE_CHECK then COMPLETED.
    let hit = server.run_request(execute_request(&digest)).await;
    assert!(hit.response.cached_result);
    assert_eq!(hit.stages(), [Stage::CacheCheck, Stage::Completed]);
    assert_eq!(hit.code(), Code::Ok);
    assert_ne!(hit.name(), run.name());
    check_io_result(&server, hit.result()).await;
    assert_eq!(
        hit.result().execution_metadata,
        run.result().execution_metadata,
        "a cache hit returns the recorded result"
    );

    // skip_cache_lookup runs it again.
    let mut request = execute_request(&digest);
    request.skip_cache_lookup = true;
    let again = server.run_request(request).await;
    again.assert_ran_ok();
    check_io_result(&server, again.result()).await;
    assert_eq!(server.action_dirs(), Vec::<std::path::PathBuf>::new());
    assert_ne!(
        again.result().execution_metadata,
        run.result().execution_metadata,
        "skip_cache_lookup must run the action again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_an_action_with_legacy_output_files() {
    end_to_end(io_action().output_file("out/result.txt")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_an_action_with_output_paths() {
    end_to_end(io_action().output_path("out/result.txt")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inline_stdout_and_stderr_on_execute() {
    let server = Server::start().await;
    let digest = server
        .upload_action(&io_action().output_file("out/result.txt"))
        .await;

    let plain = server.run_request(execute_request(&digest)).await;
    assert!(plain.result().stdout_raw.is_empty());
    assert!(plain.result().stderr_raw.is_empty());

    // Inlined on a cache hit...
    let mut request = execute_request(&digest);
    request.inline_stdout = true;
    request.inline_output_files = vec!["out/result.txt".into()];
    let hit = server.run_request(request).await;
    assert!(hit.response.cached_result);
    assert_eq!(hit.result().stdout_raw, b"hi\n");
    assert!(hit.result().stderr_raw.is_empty(), "stderr was not asked");
    assert_eq!(hit.result().output_files[0].contents, INPUT);

    // ... and on a real run.
    let mut request = execute_request(&digest);
    request.skip_cache_lookup = true;
    request.inline_stdout = true;
    request.inline_stderr = true;
    let run = server.run_request(request).await;
    run.assert_ran_ok();
    assert_eq!(run.result().stdout_raw, b"hi\n");
    assert_eq!(run.result().stderr_raw, b"err\n");
    assert!(run.result().output_files[0].contents.is_empty());
    // The digests stay set beside the inlined bytes.
    assert_eq!(run.result().stdout_digest, Some(dig(b"hi\n")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_commands_are_not_cached() {
    let server = Server::start().await;
    let spec = sh("echo failing; exit 3");
    let digest = server.upload_action(&spec).await;
    for _ in 0..2 {
        let run = server.run_request(execute_request(&digest)).await;
        run.assert_ran_ok();
        assert_eq!(run.result().exit_code, 3);
        assert_eq!(
            server
                .read_blob(run.result().stdout_digest.as_ref().unwrap())
                .await,
            b"failing\n"
        );
        assert_code(
            server.cached_result(&digest).await,
            Code::NotFound,
            "a failed action's result",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn do_not_cache_actions_are_not_cached() {
    let server = Server::start().await;
    let digest = server
        .upload_action(&sh("echo private").do_not_cache())
        .await;
    let first = server.run_request(execute_request(&digest)).await;
    first.assert_ran_ok();
    assert_eq!(first.result().exit_code, 0);
    assert_code(
        server.cached_result(&digest).await,
        Code::NotFound,
        "a do_not_cache action's result",
    );
    let second = server.run_request(execute_request(&digest)).await;
    second.assert_ran_ok();
    assert_ne!(first.name(), second.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capabilities_advertise_execution() {
    let config = Config {
        scheduler: SchedulerConfig {
            priority_range: (-50, 70),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = Server::start_with(config).await;
    let caps = server
        .caps()
        .get_capabilities(re::GetCapabilitiesRequest {
            instance_name: String::new(),
        })
        .await
        .expect("GetCapabilities")
        .into_inner();
    let exec = caps.execution_capabilities.expect("execution capabilities");
    assert!(exec.exec_enabled);
    assert_eq!(exec.digest_function, sha256(), "legacy singular field");
    assert!(exec.digest_functions.contains(&sha256()));
    let ranges = exec
        .execution_priority_capabilities
        .expect("priority capabilities")
        .priorities;
    assert_eq!(ranges.len(), 1);
    assert_eq!((ranges[0].min_priority, ranges[0].max_priority), (-50, 70));
    let cache = caps.cache_capabilities.expect("cache capabilities");
    assert!(cache.digest_functions.contains(&sha256()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_concurrent_actions_run_once() {
    // Two executors: without merging, both requests would run.
    let server = Server::start().await;
    let digest = server.upload_action(&sh("sleep 1; date +%s%N")).await;
    let mut exec = server.exec();
    let mut first = start_execute(&mut exec, execute_request(&digest))
        .await
        .expect("first Execute");
    let first_op = next_op(&mut first).await;
    let mut second = start_execute(&mut exec, execute_request(&digest))
        .await
        .expect("second Execute");
    let second_op = next_op(&mut second).await;
    assert_eq!(
        first_op.name, second_op.name,
        "merged requests share one operation"
    );
    assert!(!second_op.done);

    let mut first_ops = vec![first_op];
    first_ops.extend(drain(&mut first).await.expect("first stream"));
    let mut second_ops = vec![second_op];
    second_ops.extend(drain(&mut second).await.expect("second stream"));
    let first = Run::new(first_ops);
    let second = Run::new(second_ops);
    first.assert_ran_ok();
    second.assert_ran_ok();
    assert_eq!(
        first.result().stdout_digest,
        second.result().stdout_digest,
        "both callers must see the one run's output"
    );
    assert_eq!(
        first.result().execution_metadata,
        second.result().execution_metadata
    );
    let stdout = server
        .read_blob(first.result().stdout_digest.as_ref().unwrap())
        .await;
    assert_eq!(stdout.len(), 20, "{:?}", String::from_utf8_lossy(&stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_kills_the_running_action() {
    let server = Server::start().await;
    let scratch = server.scratch();
    let pid_file = scratch.join("pid");
    let child_file = scratch.join("child");
    let spec = sh_args(
        // Pids as seen from outside the action's pid namespace.
        r#"read -r me _ < /proc/self/stat; echo $me > "$1.tmp" && mv "$1.tmp" "$1";
           sh -c 'read -r me _ < /proc/self/stat; echo $me > "$1.tmp" && mv "$1.tmp" "$1"; exec sleep 30' - "$2" &
           wait"#,
        &[pid_file.to_str().unwrap(), child_file.to_str().unwrap()],
    );
    let digest = server.upload_action(&spec).await;
    let mut stream = start_execute(&mut server.exec(), execute_request(&digest))
        .await
        .expect("Execute");
    let mut ops = read_until(&mut stream, Stage::Executing).await;
    let name = ops[0].name.clone();
    let pid = read_pid(&pid_file).await;
    let child = read_pid(&child_file).await;
    assert!(process_alive(pid) && process_alive(child));

    let started = Instant::now();
    server
        .ops()
        .cancel_operation(lro::CancelOperationRequest { name: name.clone() })
        .await
        .expect("CancelOperation");
    ops.extend(drain(&mut stream).await.expect("stream after cancel"));
    let run = Run::new(ops);
    assert_eq!(run.code(), Code::Cancelled, "{:?}", run.response.status);
    assert!(started.elapsed() < Duration::from_secs(10));

    assert!(
        eventually(Duration::from_secs(5), || !process_exists(pid)).await,
        "the command (pid {pid}) is still there after cancel"
    );
    // The background child was reparented; whoever reaps it, it must be dead.
    assert!(
        eventually(Duration::from_secs(5), || !process_alive(child)).await,
        "the command's child (pid {child}) survived the cancel"
    );

    assert!(
        eventually(Duration::from_secs(5), || server.action_dirs().is_empty()).await,
        "the cancelled run's directory is left behind: {:?}",
        server.action_dirs()
    );

    // The operation is done for everyone, and not cached.
    let op = server
        .ops()
        .get_operation(lro::GetOperationRequest { name })
        .await
        .expect("GetOperation")
        .into_inner();
    assert!(op.done);
    assert_eq!(rpc_code(&response_of(&op).status), Code::Cancelled);
    assert_code(
        server.cached_result(&digest).await,
        Code::NotFound,
        "a cancelled action's result",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_frees_the_executor_for_the_next_action() {
    // One executor: the queued action can only run once the cancelled one
    // has released it. The hand-over races with the cancelled run's
    // teardown, so it is tried several times.
    const ROUNDS: usize = 12;
    let server = Server::start_with(Config {
        executors: 1,
        ..Default::default()
    })
    .await;
    let mut exec = server.exec();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let blocker = server
            .upload_action(&sh(&format!("sleep 30; echo {round}")))
            .await;
        let next = server
            .upload_action(&sh(&format!("echo next {round}")))
            .await;
        let mut blocking = start_execute(&mut exec, execute_request(&blocker))
            .await
            .expect("Execute blocker");
        let name = read_until(&mut blocking, Stage::Executing).await[0]
            .name
            .clone();
        let mut queued = start_execute(&mut exec, execute_request(&next))
            .await
            .expect("Execute next");
        let first = next_op(&mut queued).await;
        assert_eq!(stage_of(&first), Stage::Queued);
        server
            .ops()
            .cancel_operation(lro::CancelOperationRequest { name })
            .await
            .expect("CancelOperation");
        let cancelled = drain(&mut blocking).await.expect("blocker stream");
        assert_eq!(
            rpc_code(&response_of(cancelled.last().unwrap()).status),
            Code::Cancelled
        );
        let mut ops = vec![first];
        ops.extend(drain(&mut queued).await.expect("queued stream"));
        let run = Run::new(ops);
        if run.code() != Code::Ok {
            failures.push(format!("round {round}: {:?}", run.response.status));
            continue;
        }
        assert_eq!(run.result().exit_code, 0);
        assert_eq!(
            server
                .read_blob(run.result().stdout_digest.as_ref().unwrap())
                .await,
            format!("next {round}\n").as_bytes()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} actions queued behind a cancelled one failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeout_kills_and_reports_deadline_exceeded() {
    let server = Server::start().await;
    let digest = server
        .upload_action(&sh("echo started; sleep 30").timeout(Duration::from_secs(1)))
        .await;
    let started = Instant::now();
    let run = server.run_request(execute_request(&digest)).await;
    let elapsed = started.elapsed();
    assert_eq!(
        run.code(),
        Code::DeadlineExceeded,
        "{:?}",
        run.response.status
    );
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let result = run.result();
    assert_ne!(result.exit_code, 0);
    assert_eq!(
        server
            .read_blob(result.stdout_digest.as_ref().unwrap())
            .await,
        b"started\n"
    );
    assert_code(
        server.cached_result(&digest).await,
        Code::NotFound,
        "a timed-out action's result",
    );
    assert_eq!(server.action_dirs(), Vec::<std::path::PathBuf>::new());
    // Not cached: a second Execute runs again.
    let again = server.run_request(execute_request(&digest)).await;
    assert!(!again.response.cached_result);
    assert_eq!(again.code(), Code::DeadlineExceeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeout_above_the_maximum_is_capped() {
    let server = Server::start_with(Config {
        scheduler: SchedulerConfig {
            max_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let digest = server
        .upload_action(&sh("sleep 30").timeout(Duration::from_secs(60)))
        .await;
    let started = Instant::now();
    let run = server.run_request(execute_request(&digest)).await;
    let elapsed = started.elapsed();
    assert_eq!(
        run.code(),
        Code::DeadlineExceeded,
        "{:?}",
        run.response.status
    );
    assert!(elapsed >= Duration::from_millis(1800), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_timeout_applies_without_one() {
    let server = Server::start_with(Config {
        scheduler: SchedulerConfig {
            default_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let run = server.run(&sh("sleep 30")).await;
    assert_eq!(
        run.code(),
        Code::DeadlineExceeded,
        "{:?}",
        run.response.status
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_actions_run_by_priority() {
    let server = Server::start_with(Config {
        executors: 1,
        ..Default::default()
    })
    .await;
    let blocker = server.upload_action(&sh("sleep 1")).await;
    let mut tagged = Vec::new();
    for priority in [10, 0, -5] {
        let spec = sh(&format!("echo {priority} $(date +%s%N)"));
        tagged.push((priority, server.upload_action(&spec).await));
    }

    let mut exec = server.exec();
    let mut blocking = start_execute(&mut exec, execute_request(&blocker))
        .await
        .expect("Execute blocker");
    read_until(&mut blocking, Stage::Executing).await;
    let mut streams = Vec::new();
    for (priority, digest) in &tagged {
        let mut stream =
            start_execute(&mut exec, with_priority(execute_request(digest), *priority))
                .await
                .expect("Execute");
        let first = next_op(&mut stream).await;
        assert_eq!(stage_of(&first), Stage::Queued, "priority {priority}");
        streams.push((*priority, first, stream));
    }
    assert_eq!(server.scheduler.queue_len(), 3);

    let mut starts = Vec::new();
    for (priority, first, mut stream) in streams {
        let mut ops = vec![first];
        ops.extend(drain(&mut stream).await.expect("stream"));
        let run = Run::new(ops);
        run.assert_ran_ok();
        let stdout = server
            .read_blob(run.result().stdout_digest.as_ref().unwrap())
            .await;
        let stdout = String::from_utf8(stdout).unwrap();
        let (tag, stamp) = stdout.trim().split_once(' ').expect("tag and time");
        assert_eq!(tag, priority.to_string());
        let stamp: u128 = stamp.parse().expect("date +%s%N");
        let meta = run.result().execution_metadata.as_ref().unwrap();
        starts.push((nanos(&meta.execution_start_timestamp), stamp, priority));
    }
    drain(&mut blocking).await.expect("blocker stream");
    starts.sort();
    let by_start: Vec<i32> = starts.iter().map(|s| s.2).collect();
    assert_eq!(by_start, [-5, 0, 10], "order of execution_start_timestamp");
    let mut by_stamp = starts.clone();
    by_stamp.sort_by_key(|s| s.1);
    let by_stamp: Vec<i32> = by_stamp.iter().map(|s| s.2).collect();
    assert_eq!(by_stamp, [-5, 0, 10], "order of the commands' own clocks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_stdout_lands_in_the_cas() {
    const SIZE: usize = 50 << 20;
    let server = Server::start().await;
    let run = server.run(&sh(&format!("head -c {SIZE} /dev/zero"))).await;
    run.assert_ran_ok();
    let result = run.result();
    assert_eq!(result.exit_code, 0);
    let stdout = result.stdout_digest.clone().expect("stdout digest");
    assert_eq!(stdout.size_bytes, SIZE as i64);
    assert_eq!(stdout, dig(&vec![0u8; SIZE]));
    assert!(result.stdout_raw.is_empty());
    assert!(
        find_missing(&mut server.cas(), "", std::slice::from_ref(&stdout))
            .await
            .is_empty()
    );
    // The tail reads back.
    let mut stream = server
        .bs()
        .read(reapi_core::proto::bytestream::ReadRequest {
            resource_name: read_name("", &stdout),
            read_offset: SIZE as i64 - 10,
            read_limit: 0,
        })
        .await
        .expect("Read")
        .into_inner();
    let mut tail = Vec::new();
    while let Some(chunk) = stream.message().await.expect("Read stream") {
        tail.extend(chunk.data);
    }
    assert_eq!(tail, [0u8; 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_program_completes_with_exit_127() {
    let server = Server::start().await;
    let spec = ActionSpec {
        arguments: vec!["no-such-tool-xyz".into(), "arg".into()],
        environment: vec![("PATH".into(), PATH.into())],
        ..Default::default()
    };
    let digest = server.upload_action(&spec).await;
    let run = server.run_request(execute_request(&digest)).await;
    run.assert_ran_ok();
    assert_eq!(run.result().exit_code, 127);
    let stderr = server
        .read_blob(run.result().stderr_digest.as_ref().expect("stderr"))
        .await;
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(stderr.contains("no-such-tool-xyz"), "stderr: {stderr:?}");
    assert_code(
        server.cached_result(&digest).await,
        Code::NotFound,
        "exit 127 is not cached",
    );
    // The server is fine afterwards.
    let ok = server.run(&sh("echo still here")).await;
    ok.assert_ran_ok();
    assert_eq!(ok.result().exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn output_directories_come_back_as_trees() {
    let server = Server::start().await;
    let spec = ActionSpec {
        output_directories: vec!["gen".into()],
        ..sh("mkdir -p gen/sub; echo a > gen/a; echo b > gen/sub/b")
    };
    let run = server.run(&spec).await;
    run.assert_ran_ok();
    let result = run.result();
    assert_eq!(result.output_directories.len(), 1, "{result:?}");
    let dir = &result.output_directories[0];
    assert_eq!(dir.path, "gen");
    let tree = server
        .read_blob(dir.tree_digest.as_ref().expect("tree digest"))
        .await;
    let tree = <re::Tree as prost::Message>::decode(tree.as_slice()).expect("Tree decodes");
    let root = tree.root.expect("tree root");
    assert_eq!(root.files.len(), 1);
    assert_eq!(root.files[0].name, "a");
    assert_eq!(root.files[0].digest, Some(dig(b"a\n")));
    assert_eq!(root.directories.len(), 1);
    assert_eq!(root.directories[0].name, "sub");
    let sub = tree
        .children
        .iter()
        .find(|c| Some(dig_msg(*c)) == root.directories[0].digest)
        .expect("sub in children");
    assert_eq!(sub.files[0].name, "b");
    assert_eq!(
        server
            .read_blob(sub.files[0].digest.as_ref().unwrap())
            .await,
        b"b\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn working_directory_and_relative_outputs() {
    let server = Server::start().await;
    let spec = ActionSpec {
        working_directory: "pkg".into(),
        ..sh("pwd > ../where.txt; cat in.txt > out.txt")
            .input("pkg/in.txt", b"in pkg\n")
            .output_file("out.txt")
            .output_file("../where.txt")
    };
    let run = server.run(&spec).await;
    run.assert_ran_ok();
    let result = run.result();
    let mut paths: Vec<&str> = result
        .output_files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    paths.sort();
    assert_eq!(paths, ["../where.txt", "out.txt"]);
    let out = result
        .output_files
        .iter()
        .find(|f| f.path == "out.txt")
        .unwrap();
    assert_eq!(out.digest, Some(dig(b"in pkg\n")));
    let pwd = result
        .output_files
        .iter()
        .find(|f| f.path == "../where.txt")
        .unwrap();
    let pwd = server.read_blob(pwd.digest.as_ref().unwrap()).await;
    assert!(
        String::from_utf8_lossy(&pwd).trim_end().ends_with("/pkg"),
        "{pwd:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_get_exactly_the_given_environment() {
    let server = Server::start().await;
    let spec = ActionSpec {
        arguments: vec!["/usr/bin/env".into()],
        // Sorted by name, as the spec requires.
        environment: vec![
            ("EMPTY".into(), String::new()),
            ("FOO".into(), "bar baz".into()),
        ],
        ..Default::default()
    };
    let run = server.run(&spec).await;
    run.assert_ran_ok();
    let stdout = server
        .read_blob(run.result().stdout_digest.as_ref().unwrap())
        .await;
    let mut lines: Vec<String> = String::from_utf8_lossy(&stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        ["EMPTY=", "FOO=bar baz"],
        "no variable added or lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn executable_inputs_run_by_relative_path() {
    let server = Server::start().await;
    let spec = ActionSpec {
        arguments: vec!["./tools/hello.sh".into(), "world".into()],
        environment: vec![("PATH".into(), PATH.into())],
        ..Default::default()
    }
    .executable_input("tools/hello.sh", b"#!/bin/sh\necho \"hello $1\"\n")
    .input("data.txt", b"not executable");
    let run = server.run(&spec).await;
    run.assert_ran_ok();
    assert_eq!(run.result().exit_code, 0);
    assert_eq!(
        server
            .read_blob(run.result().stdout_digest.as_ref().unwrap())
            .await,
        b"hello world\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_actions_on_few_executors() {
    let server = Server::start().await;
    let mut digests = Vec::new();
    for i in 0..16 {
        let spec =
            sh(&format!("echo {i}; cat in.txt")).input("in.txt", format!("input {i}\n").as_bytes());
        digests.push(server.upload_action(&spec).await);
    }
    let runs = futures::future::join_all(digests.iter().map(|d| {
        let mut exec = server.exec();
        let request = execute_request(d);
        async move { execute(&mut exec, request).await.expect("Execute") }
    }))
    .await;
    for (i, ops) in runs.into_iter().enumerate() {
        let run = Run::new(ops);
        run.assert_ran_ok();
        assert_eq!(
            server
                .read_blob(run.result().stdout_digest.as_ref().unwrap())
                .await,
            format!("{i}\ninput {i}\n").as_bytes()
        );
    }
    assert_eq!(server.scheduler.queue_len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn actions_cannot_corrupt_the_cas_through_their_inputs() {
    // Inputs come from the disk store (hardlinked only when actions run as
    // a user that cannot write to the store's files, copied otherwise, as
    // here: this harness runs them as the test's own user). An action that
    // writes to an input file in place (here deliberately, after making it writable,
    // so the test does not depend on running as root; as root no chmod is
    // needed) must not change the blob that clients and later actions read
    // under that digest. The overwrite keeps the size, which is all the
    // disk store checks.
    const ORIGINAL: &[u8] = b"original contents\n";
    let server = Server::start().await;
    let vandal = server
        .run(
            &sh("chmod u+w input.txt; printf CORRUPTED 1<>input.txt; cat input.txt")
                .input("input.txt", ORIGINAL),
        )
        .await;
    vandal.assert_ran_ok();
    let seen = server
        .read_blob(vandal.result().stdout_digest.as_ref().unwrap())
        .await;
    assert_eq!(seen, b"CORRUPTEDcontents\n", "the action's own view");

    match read_blob(&mut server.bs(), "", &dig(ORIGINAL)).await {
        Ok(blob) => assert_eq!(
            String::from_utf8_lossy(&blob),
            String::from_utf8_lossy(ORIGINAL),
            "ByteStream serves other bytes under the input's digest after an action wrote to it"
        ),
        Err(e) => panic!("the input blob was lost after an action wrote to it: {e:?}"),
    }
    let reader = server
        .run(&sh("cat input.txt").input("input.txt", ORIGINAL))
        .await;
    reader.assert_ran_ok();
    let stdout = server
        .read_blob(reader.result().stdout_digest.as_ref().unwrap())
        .await;
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(ORIGINAL),
        "a later action saw the previous action's changes to a shared input"
    );
}
