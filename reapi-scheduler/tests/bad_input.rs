//! What Execute refuses, and how: missing blobs as FAILED_PRECONDITION with
//! a PreconditionFailure, malformed requests and trees as INVALID_ARGUMENT,
//! unsatisfiable platforms as FAILED_PRECONDITION.

use prost::Message;
use reapi_core::proto::remote_execution as re;
use reapi_scheduler::SchedulerConfig;
use reapi_test_support::action_cache::get_result;
use reapi_test_support::actions::{sh, ActionSpec};
use reapi_test_support::bytestream::read_blob;
use reapi_test_support::cas::upload;
use reapi_test_support::digests::{dig, dig_msg, PDigest};
use reapi_test_support::operations::{execute, execute_request, missing_subjects, subject};
use reapi_test_support::server::full::{Config, Server};
use reapi_test_support::status::assert_code;
use reapi_test_support::trees::{dir_node, file_node};
use tonic::{Code, Status};

/// Executes an action that must be refused; the status.
async fn refused(server: &Server, request: re::ExecuteRequest, code: Code, what: &str) -> Status {
    assert_code(execute(&mut server.exec(), request).await, code, what)
}

/// Uploads `blobs`, executes the action; the refusal with `code`.
async fn refused_action(
    server: &Server,
    blobs: &[Vec<u8>],
    action: &PDigest,
    code: Code,
    what: &str,
) -> Status {
    upload(&mut server.cas(), "", blobs).await;
    refused(server, execute_request(action), code, what).await
}

/// A refusal that is not about missing blobs: a client reading MISSING
/// violations would upload and retry forever.
#[track_caller]
fn assert_no_missing(status: &Status) {
    if status.details().is_empty() {
        return;
    }
    if let Ok(rpc) = reapi_core::proto::rpc::Status::decode(status.details()) {
        for detail in rpc.details {
            if let Ok(failure) = reapi_core::proto::error_details::PreconditionFailure::decode(
                detail.value.as_slice(),
            ) {
                assert!(
                    failure.violations.iter().all(|v| v.r#type != "MISSING"),
                    "{failure:?}"
                );
            }
        }
    }
}

/// An action over the given input root, with the root's blobs.
fn action_over(root: &re::Directory, extra_blobs: &[Vec<u8>]) -> (PDigest, Vec<Vec<u8>>) {
    let spec = sh("true");
    let command = spec.command();
    let root_digest = dig_msg(root);
    let action = spec.action(&dig_msg(&command), &root_digest);
    let mut blobs = extra_blobs.to_vec();
    blobs.push(root.encode_to_vec());
    blobs.push(command.encode_to_vec());
    blobs.push(action.encode_to_vec());
    (dig_msg(&action), blobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_action_is_a_precondition_failure() {
    let server = Server::start().await;
    let built = sh("echo never uploaded").build();
    let status = refused(
        &server,
        execute_request(&built.action_digest),
        Code::FailedPrecondition,
        "action not in the CAS",
    )
    .await;
    assert_eq!(missing_subjects(&status), [subject(&built.action_digest)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_command_is_a_precondition_failure() {
    let server = Server::start().await;
    let built = sh("echo no command").input("f", b"data").build();
    let without_command: Vec<Vec<u8>> = built
        .blobs
        .iter()
        .filter(|b| dig(b) != built.command_digest)
        .cloned()
        .collect();
    let status = refused_action(
        &server,
        &without_command,
        &built.action_digest,
        Code::FailedPrecondition,
        "Command not in the CAS",
    )
    .await;
    assert_eq!(missing_subjects(&status), [subject(&built.command_digest)]);
    // Once uploaded, the same action runs.
    upload(&mut server.cas(), "", &built.blobs).await;
    server
        .run_request(execute_request(&built.action_digest))
        .await
        .assert_ran_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_inputs_are_listed_together() {
    let server = Server::start().await;
    let missing_file = b"file nobody uploaded".to_vec();
    let missing_nested = b"nested file nobody uploaded".to_vec();
    let missing_dir = re::Directory {
        files: vec![file_node("x", b"under a missing directory")],
        ..Default::default()
    };
    let present_dir = re::Directory {
        files: vec![file_node("b.txt", &missing_nested)],
        ..Default::default()
    };
    let root = re::Directory {
        files: vec![file_node("a.txt", &missing_file)],
        directories: vec![
            dir_node("missing", &missing_dir),
            dir_node("present", &present_dir),
        ],
        ..Default::default()
    };
    let (action, blobs) = action_over(&root, &[present_dir.encode_to_vec()]);
    let status = refused_action(
        &server,
        &blobs,
        &action,
        Code::FailedPrecondition,
        "missing inputs",
    )
    .await;
    let mut expected = vec![
        subject(&dig(&missing_file)),
        subject(&dig(&missing_nested)),
        subject(&dig_msg(&missing_dir)),
    ];
    expected.sort();
    assert_eq!(missing_subjects(&status), expected);

    // A missing input root is reported the same way.
    let empty_root = re::Directory {
        files: vec![file_node("only", b"x")],
        ..Default::default()
    };
    let (action, mut blobs) = action_over(&empty_root, &[]);
    blobs.retain(|b| dig(b) != dig_msg(&empty_root));
    let status = refused_action(
        &server,
        &blobs,
        &action,
        Code::FailedPrecondition,
        "missing input root",
    )
    .await;
    assert_eq!(missing_subjects(&status), [subject(&dig_msg(&empty_root))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_commands_are_invalid() {
    let server = Server::start().await;
    let cases: Vec<(&str, ActionSpec)> = vec![
        ("no arguments", ActionSpec::default()),
        (
            "empty arguments[0]",
            ActionSpec {
                arguments: vec![String::new(), "x".into()],
                ..Default::default()
            },
        ),
        ("output file escaping", sh("true").output_file("../../x")),
        ("output path escaping", sh("true").output_path("../../x")),
        (
            "absolute output path",
            sh("true").output_path("/etc/passwd"),
        ),
        (
            "working directory escaping",
            ActionSpec {
                working_directory: "..".into(),
                ..sh("true")
            },
        ),
        (
            "environment name with '='",
            ActionSpec {
                environment: vec![("A=B".into(), "c".into())],
                ..sh("true")
            },
        ),
    ];
    for (what, spec) in cases {
        let built = spec.build();
        refused_action(
            &server,
            &built.blobs,
            &built.action_digest,
            Code::InvalidArgument,
            what,
        )
        .await;
        assert_code(
            server.cached_result(&built.action_digest).await,
            Code::NotFound,
            what,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_input_trees_are_invalid() {
    let server = Server::start().await;
    let a = b"a".to_vec();
    let b = b"b".to_vec();
    let empty = re::Directory::default();
    let sub_unsorted = re::Directory {
        files: vec![file_node("z", &a), file_node("y", &b)],
        ..Default::default()
    };
    let symlink = |name: &str, target: &str| re::SymlinkNode {
        name: name.into(),
        target: target.into(),
        node_properties: None,
    };
    let cases: Vec<(&str, re::Directory)> = vec![
        (
            "a directory named ..",
            re::Directory {
                directories: vec![dir_node("..", &empty)],
                ..Default::default()
            },
        ),
        (
            "a file named ..",
            re::Directory {
                files: vec![file_node("..", &a)],
                ..Default::default()
            },
        ),
        (
            "a name with /",
            re::Directory {
                files: vec![file_node("x/y", &a)],
                ..Default::default()
            },
        ),
        (
            "duplicate file names",
            re::Directory {
                files: vec![file_node("x", &a), file_node("x", &b)],
                ..Default::default()
            },
        ),
        (
            "a file and a directory with one name",
            re::Directory {
                files: vec![file_node("x", &a)],
                directories: vec![dir_node("x", &empty)],
                ..Default::default()
            },
        ),
        (
            "unsorted files",
            re::Directory {
                files: vec![file_node("b", &b), file_node("a", &a)],
                ..Default::default()
            },
        ),
        (
            "unsorted entries in a subdirectory",
            re::Directory {
                directories: vec![dir_node("sub", &sub_unsorted)],
                ..Default::default()
            },
        ),
        (
            "a symlink escaping the input root",
            re::Directory {
                symlinks: vec![symlink("link", "../outside")],
                ..Default::default()
            },
        ),
        (
            "a symlink escaping through a subdirectory",
            re::Directory {
                symlinks: vec![symlink("link", "sub/../../outside")],
                ..Default::default()
            },
        ),
        (
            "an empty file name",
            re::Directory {
                files: vec![file_node("", &a)],
                ..Default::default()
            },
        ),
    ];
    let extra = vec![
        a.clone(),
        b.clone(),
        empty.encode_to_vec(),
        sub_unsorted.encode_to_vec(),
    ];
    for (what, root) in cases {
        let (action, blobs) = action_over(&root, &extra);
        let status = refused_action(&server, &blobs, &action, Code::InvalidArgument, what).await;
        assert_no_missing(&status);
    }
    // A symlink that stays inside the root is fine.
    let fine = re::Directory {
        files: vec![file_node("a", &a)],
        symlinks: vec![symlink("link", "a")],
        ..Default::default()
    };
    let (action, blobs) = action_over(&fine, &extra);
    upload(&mut server.cas(), "", &blobs).await;
    server
        .run_request(execute_request(&action))
        .await
        .assert_ran_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn absolute_symlinks_follow_the_configuration() {
    let server = Server::start_with(Config {
        scheduler: SchedulerConfig {
            allow_absolute_symlinks: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let root = re::Directory {
        symlinks: vec![re::SymlinkNode {
            name: "abs".into(),
            target: "/etc/hostname".into(),
            node_properties: None,
        }],
        ..Default::default()
    };
    let (action, blobs) = action_over(&root, &[]);
    refused_action(
        &server,
        &blobs,
        &action,
        Code::InvalidArgument,
        "absolute symlink when not allowed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_messages_are_invalid() {
    let server = Server::start().await;
    // Field 1, length-delimited, with a truncated length.
    let garbage = vec![0x0a, 0xff];
    refused_action(
        &server,
        std::slice::from_ref(&garbage),
        &dig(&garbage),
        Code::InvalidArgument,
        "an Action that does not decode",
    )
    .await;

    let empty_root = dig_msg(&re::Directory::default());
    let garbage_command = vec![0x12, 0x05, 0x01];
    let action = re::Action {
        command_digest: Some(dig(&garbage_command)),
        input_root_digest: Some(empty_root),
        ..Default::default()
    };
    refused_action(
        &server,
        &[garbage_command, action.encode_to_vec()],
        &dig_msg(&action),
        Code::InvalidArgument,
        "a Command that does not decode",
    )
    .await;

    let garbage_dir = vec![0x0a, 0x7f, 0x00];
    let spec = sh("true");
    let command = spec.command();
    let action = spec.action(&dig_msg(&command), &dig(&garbage_dir));
    refused_action(
        &server,
        &[garbage_dir, command.encode_to_vec(), action.encode_to_vec()],
        &dig_msg(&action),
        Code::InvalidArgument,
        "an input Directory that does not decode",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_are_invalid() {
    let server = Server::start().await;
    let good = server.upload_action(&sh("true")).await;
    let malformed = [
        ("non-hex hash", "z".repeat(64), 1),
        ("short hash", "ab".repeat(31), 1),
        ("negative size", good.hash.clone(), -1),
        ("empty hash", String::new(), 0),
    ];
    for (what, hash, size_bytes) in malformed {
        let request = execute_request(&PDigest { hash, size_bytes });
        refused(&server, request, Code::InvalidArgument, what).await;
    }
    let mut request = execute_request(&good);
    request.action_digest = None;
    refused(&server, request, Code::InvalidArgument, "no action digest").await;

    let mut request = execute_request(&good);
    request.digest_function = re::digest_function::Value::Md5 as i32;
    refused(
        &server,
        request,
        Code::InvalidArgument,
        "MD5 digest function",
    )
    .await;

    let mut request = execute_request(&good);
    request.instance_name = "a//b".into();
    refused(
        &server,
        request,
        Code::InvalidArgument,
        "malformed instance",
    )
    .await;

    let spec = sh("true");
    let command = spec.command();
    let mut action = spec.action(&dig_msg(&command), &dig_msg(&re::Directory::default()));
    action.timeout = Some(reapi_core::proto::protobuf::Duration {
        seconds: -1,
        nanos: 0,
    });
    refused_action(
        &server,
        &[command.encode_to_vec(), action.encode_to_vec()],
        &dig_msg(&action),
        Code::InvalidArgument,
        "negative Action.timeout",
    )
    .await;

    // The well-formed request still works.
    server
        .run_request(execute_request(&good))
        .await
        .assert_ran_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_are_restricted() {
    let server = Server::start_with(Config {
        instances: Some(vec!["main".into()]),
        ..Default::default()
    })
    .await;
    let spec = sh("echo in main");
    let digest = server.upload_action_to("main", &spec).await;
    let mut request = execute_request(&digest);
    request.instance_name = "other".into();
    let status = refused(&server, request, Code::InvalidArgument, "unknown instance").await;
    assert!(status.message().contains("other"), "{}", status.message());
    let mut request = execute_request(&digest);
    request.instance_name = String::new();
    refused(
        &server,
        request,
        Code::InvalidArgument,
        "the empty instance",
    )
    .await;
    assert_code(
        server
            .exec()
            .wait_execution(re::WaitExecutionRequest {
                name: "operations/none".into(),
            })
            .await,
        Code::NotFound,
        "WaitExecution",
    );

    let mut request = execute_request(&digest);
    request.instance_name = "main".into();
    let run = server.run_request(request).await;
    run.assert_ran_ok();
    let stdout = read_blob(
        &mut server.bs(),
        "main",
        run.result().stdout_digest.as_ref().unwrap(),
    )
    .await
    .expect("stdout in instance main");
    assert_eq!(stdout, b"in main\n");
    assert!(get_result(&mut server.ac(), "main", &digest).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_are_separate_namespaces() {
    let server = Server::start().await;
    let spec = sh("echo only in a");
    let digest = server.upload_action_to("a", &spec).await;
    let mut request = execute_request(&digest);
    request.instance_name = "b".into();
    let status = refused(
        &server,
        request,
        Code::FailedPrecondition,
        "action uploaded to another instance",
    )
    .await;
    assert_eq!(missing_subjects(&status), [subject(&digest)]);
    let mut request = execute_request(&digest);
    request.instance_name = "a".into();
    server.run_request(request).await.assert_ran_ok();
    assert!(get_result(&mut server.ac(), "a", &digest).await.is_ok());
    assert_code(
        get_result(&mut server.ac(), "b", &digest).await,
        Code::NotFound,
        "result under another instance",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsatisfiable_platforms_are_refused() {
    let server = Server::start_with(Config {
        platform: vec!["cpus=2".into(), "pool=default".into()],
        ..Default::default()
    })
    .await;

    let built = sh("true").platform("OSFamily", "windows").build();
    let status = refused_action(
        &server,
        &built.blobs,
        &built.action_digest,
        Code::FailedPrecondition,
        "OSFamily=windows",
    )
    .await;
    assert!(
        status.message().contains("OSFamily"),
        "{}",
        status.message()
    );
    // Clients would upload and retry forever.
    assert_no_missing(&status);

    // The deprecated Command.platform is read when Action.platform is unset.
    let mut legacy = sh("true");
    legacy.command_platform = vec![("OSFamily".into(), "windows".into())];
    let built = legacy.build();
    let status = refused_action(
        &server,
        &built.blobs,
        &built.action_digest,
        Code::FailedPrecondition,
        "OSFamily=windows in Command.platform",
    )
    .await;
    assert!(
        status.message().contains("OSFamily"),
        "{}",
        status.message()
    );

    let built = sh("true").platform("cpus", "64").build();
    let status = refused_action(
        &server,
        &built.blobs,
        &built.action_digest,
        Code::FailedPrecondition,
        "cpus=64 on 2-cpu executors",
    )
    .await;
    assert!(status.message().contains("cpus"), "{}", status.message());

    let built = sh("true").platform("pool", "gpu").build();
    refused_action(
        &server,
        &built.blobs,
        &built.action_digest,
        Code::FailedPrecondition,
        "pool=gpu",
    )
    .await;

    let built = sh("true").platform("cpus", "lots").build();
    refused_action(
        &server,
        &built.blobs,
        &built.action_digest,
        Code::InvalidArgument,
        "cpus=lots",
    )
    .await;

    // What the executors do offer runs.
    let os = std::env::consts::OS;
    let run = server
        .run(
            &sh("echo fits")
                .platform("OSFamily", os)
                .platform("cpus", "2")
                .platform("pool", "default"),
        )
        .await;
    run.assert_ran_ok();
    assert_eq!(run.result().exit_code, 0);
}
