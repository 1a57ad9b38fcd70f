//! ActionCache over gRPC: updates, hits only while the outputs are in the
//! CAS, inlining, validation and persistence across a restart.

use reapi_core::proto::remote_execution as re;
use reapi_test_support::action_cache::{get_result, get_result_with, simple_result, update_result};
use reapi_test_support::bytestream::{bs_upload, read_blob};
use reapi_test_support::cas::{is_present, upload_msg, upload_one};
use reapi_test_support::clients::Cas;
use reapi_test_support::digests::{action_key, data, dig, dig_msg, md5, sha256, PDigest};
use reapi_test_support::server::storage::{Server, Setup, LARGE_BUDGET};
use reapi_test_support::status::assert_code;
use tonic::Code;

/// Uploads an output file, stdout and stderr; the result naming them.
async fn stored_result(cas: &mut Cas, instance: &str, tag: &str) -> re::ActionResult {
    let output = upload_one(cas, instance, format!("output of {tag}").as_bytes()).await;
    let stdout = upload_one(cas, instance, format!("stdout of {tag}").as_bytes()).await;
    let stderr = upload_one(cas, instance, format!("stderr of {tag}").as_bytes()).await;
    simple_result(&output, &stdout, &stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_then_get() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut ac, mut cas) = (server.ac(), server.cas());
        let result = re::ActionResult {
            exit_code: 3,
            ..stored_result(&mut cas, "", "one").await
        };
        let action = action_key("one");
        assert_code(
            get_result(&mut ac, "", &action).await,
            Code::NotFound,
            &format!("{setup:?} before update"),
        );
        let echoed = update_result(&mut ac, "", &action, &result).await.unwrap();
        assert_eq!(echoed, result, "{setup:?}");
        assert_eq!(
            get_result(&mut ac, "", &action).await.unwrap(),
            result,
            "{setup:?}"
        );

        // Replacing the result.
        let newer = re::ActionResult {
            exit_code: 0,
            ..result.clone()
        };
        update_result(&mut ac, "", &action, &newer).await.unwrap();
        assert_eq!(get_result(&mut ac, "", &action).await.unwrap(), newer);

        // A result with no outputs at all, under a key that is no Action.
        let bare = re::ActionResult {
            exit_code: 1,
            ..Default::default()
        };
        let key = dig(b"not an Action message");
        update_result(&mut ac, "", &key, &bare).await.unwrap();
        assert_eq!(
            get_result(&mut ac, "", &key).await.unwrap(),
            bare,
            "{setup:?}"
        );

        assert_code(
            get_result(&mut ac, "", &action_key("unknown")).await,
            Code::NotFound,
            &format!("{setup:?} unknown action"),
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_while_an_output_blob_is_missing() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut ac, mut cas) = (server.ac(), server.cas());
        let what = |s: &str| format!("{setup:?}: {s}");
        let stdout = upload_one(&mut cas, "", b"out").await;
        let stderr = upload_one(&mut cas, "", b"err").await;
        let output_data = b"not uploaded yet".to_vec();
        let result = simple_result(&dig(&output_data), &stdout, &stderr);
        let action = action_key("incomplete");
        update_result(&mut ac, "", &action, &result).await.unwrap();
        assert_code(
            get_result(&mut ac, "", &action).await,
            Code::NotFound,
            &what("file"),
        );
        upload_one(&mut cas, "", &output_data).await;
        assert_eq!(get_result(&mut ac, "", &action).await.unwrap(), result);

        // Missing stdout and stderr count too.
        for field in ["stdout", "stderr"] {
            let gone = dig(format!("{field} never uploaded").as_bytes());
            let mut result = result.clone();
            match field {
                "stdout" => result.stdout_digest = Some(gone),
                _ => result.stderr_digest = Some(gone),
            }
            let action = action_key(field);
            update_result(&mut ac, "", &action, &result).await.unwrap();
            assert_code(
                get_result(&mut ac, "", &action).await,
                Code::NotFound,
                &what(field),
            );
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_while_an_output_directory_is_incomplete() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut ac, mut cas) = (server.ac(), server.cas());
        let what = |s: &str| format!("{setup:?}: {s}");
        let top = b"top file".to_vec();
        let deep = b"file in a subdirectory, uploaded late".to_vec();
        let child = re::Directory {
            files: vec![re::FileNode {
                name: "deep".into(),
                digest: Some(dig(&deep)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let tree = re::Tree {
            root: Some(re::Directory {
                files: vec![re::FileNode {
                    name: "top".into(),
                    digest: Some(dig(&top)),
                    ..Default::default()
                }],
                directories: vec![re::DirectoryNode {
                    name: "sub".into(),
                    digest: Some(dig_msg(&child)),
                }],
                ..Default::default()
            }),
            children: vec![child],
        };
        let tree_digest = dig_msg(&tree);
        let result = re::ActionResult {
            output_directories: vec![re::OutputDirectory {
                path: "out".into(),
                tree_digest: Some(tree_digest.clone()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let action = action_key("tree");
        update_result(&mut ac, "", &action, &result).await.unwrap();
        // The Tree itself is missing.
        assert_code(
            get_result(&mut ac, "", &action).await,
            Code::NotFound,
            &what("tree"),
        );
        upload_msg(&mut cas, "", &tree).await;
        upload_one(&mut cas, "", &top).await;
        // The Tree names a file that is missing.
        assert_code(
            get_result(&mut ac, "", &action).await,
            Code::NotFound,
            &what("deep"),
        );
        upload_one(&mut cas, "", &deep).await;
        assert_eq!(
            get_result(&mut ac, "", &action).await.unwrap(),
            result,
            "{setup:?}"
        );

        // A tree digest that names something that is not a Tree.
        let bogus = upload_one(&mut cas, "", b"\xff\xff\xff\xff").await;
        let result = re::ActionResult {
            output_directories: vec![re::OutputDirectory {
                path: "out".into(),
                tree_digest: Some(bogus),
                ..Default::default()
            }],
            ..Default::default()
        };
        let action = action_key("bogus tree");
        update_result(&mut ac, "", &action, &result).await.unwrap();
        assert_code(
            get_result(&mut ac, "", &action).await,
            Code::NotFound,
            &what("bogus"),
        );
        server.stop().await;
    }
}

/// DIRECTORY_ONLY results (REAPI 2.8; BuildStream and buildbox ask for
/// them): an output directory named by its root `Directory` alone is
/// accepted, and is a hit once every directory and file under it is in
/// the CAS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_directory_only_results_are_walked_for_completeness() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut ac, mut cas) = (server.ac(), server.cas());
        let what = |s: &str| format!("{setup:?}: {s}");
        let deep = b"file two directories down".to_vec();
        let leaf = re::Directory {
            files: vec![re::FileNode {
                name: "deep".into(),
                digest: Some(dig(&deep)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let middle = re::Directory {
            directories: vec![re::DirectoryNode {
                name: "leaf".into(),
                digest: Some(dig_msg(&leaf)),
            }],
            ..Default::default()
        };
        let root = re::Directory {
            directories: vec![re::DirectoryNode {
                name: "middle".into(),
                digest: Some(dig_msg(&middle)),
            }],
            ..Default::default()
        };
        let result = re::ActionResult {
            output_directories: vec![re::OutputDirectory {
                path: "out".into(),
                root_directory_digest: Some(dig_msg(&root)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let action = action_key("directory only");
        update_result(&mut ac, "", &action, &result).await.unwrap();
        upload_msg(&mut cas, "", &root).await;
        upload_msg(&mut cas, "", &middle).await;
        // The leaf directory is missing, then its file.
        assert_code(
            get_result(&mut ac, "", &action).await,
            Code::NotFound,
            &what("leaf"),
        );
        upload_msg(&mut cas, "", &leaf).await;
        assert_code(
            get_result(&mut ac, "", &action).await,
            Code::NotFound,
            &what("deep"),
        );
        upload_one(&mut cas, "", &deep).await;
        assert_eq!(
            get_result(&mut ac, "", &action).await.unwrap(),
            result,
            "{setup:?}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inlines_what_the_client_asks_for() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut ac, mut cas) = (server.ac(), server.cas());
        let a = upload_one(&mut cas, "", b"contents of a").await;
        let b = upload_one(&mut cas, "", b"contents of b").await;
        let stdout = upload_one(&mut cas, "", b"the stdout").await;
        let stderr = upload_one(&mut cas, "", b"the stderr").await;
        let file = |path: &str, digest: &PDigest| re::OutputFile {
            path: path.into(),
            digest: Some(digest.clone()),
            ..Default::default()
        };
        let result = re::ActionResult {
            output_files: vec![file("out/a", &a), file("out/b", &b)],
            stdout_digest: Some(stdout),
            stderr_digest: Some(stderr),
            ..Default::default()
        };
        let action = action_key("inline");
        update_result(&mut ac, "", &action, &result).await.unwrap();

        let request = |stdout, stderr, files: &[&str]| re::GetActionResultRequest {
            instance_name: String::new(),
            action_digest: Some(action.clone()),
            inline_stdout: stdout,
            inline_stderr: stderr,
            inline_output_files: files.iter().map(|f| f.to_string()).collect(),
            digest_function: sha256(),
        };
        // Nothing asked, nothing inlined.
        let plain = get_result_with(&mut ac, request(false, false, &[]))
            .await
            .unwrap();
        assert_eq!(plain, result, "{setup:?}");

        let full = get_result_with(&mut ac, request(true, true, &["out/a"]))
            .await
            .unwrap();
        assert_eq!(full.stdout_raw, b"the stdout", "{setup:?}");
        assert_eq!(full.stderr_raw, b"the stderr", "{setup:?}");
        assert_eq!(full.output_files[0].contents, b"contents of a", "{setup:?}");
        assert!(
            full.output_files[1].contents.is_empty(),
            "out/b was not asked for"
        );
        // Digests stay alongside the inlined bytes.
        assert_eq!(full.stdout_digest, result.stdout_digest);
        assert_eq!(full.output_files[0].digest, result.output_files[0].digest);

        let only_err = get_result_with(&mut ac, request(false, true, &["out/b"]))
            .await
            .unwrap();
        assert!(only_err.stdout_raw.is_empty());
        assert_eq!(only_err.stderr_raw, b"the stderr");
        assert!(only_err.output_files[0].contents.is_empty());
        assert_eq!(only_err.output_files[1].contents, b"contents of b");
        server.stop().await;
    }
}

/// Inlining is bounded; what does not fit stays a digest, and the result is
/// still a hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outputs_are_not_inlined() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut ac, mut bs) = (server.ac(), server.bs());
        let big_stdout = bs_upload(&mut bs, "", &data(3 << 20, 1), 1 << 20).await;
        let big_file = bs_upload(&mut bs, "", &data(3 << 20, 2), 1 << 20).await;
        let stderr = bs_upload(&mut bs, "", b"small stderr", 1024).await;
        let result = simple_result(&big_file, &big_stdout, &stderr);
        let action = action_key("big");
        update_result(&mut ac, "", &action, &result).await.unwrap();
        let got = get_result_with(
            &mut ac,
            re::GetActionResultRequest {
                action_digest: Some(action.clone()),
                inline_stdout: true,
                inline_stderr: true,
                inline_output_files: vec!["out/a".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(got.stdout_raw.is_empty(), "{setup:?}");
        assert!(got.output_files[0].contents.is_empty(), "{setup:?}");
        assert_eq!(got.stderr_raw, b"small stderr", "{setup:?}");
        assert_eq!(got.stdout_digest, result.stdout_digest);
        assert_eq!(got.output_files[0].digest, result.output_files[0].digest);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_validates_the_request() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut ac, mut cas) = (server.ac(), server.cas());
        let what = |s: &str| format!("{setup:?}: {s}");
        let good = stored_result(&mut cas, "", "valid").await;
        let action = action_key("validation");

        let upper = PDigest {
            hash: dig(b"x").hash.to_uppercase(),
            size_bytes: 1,
        };
        let short = PDigest {
            hash: dig(b"x").hash[..10].into(),
            size_bytes: 1,
        };
        let negative = PDigest {
            hash: dig(b"x").hash,
            size_bytes: -1,
        };
        let mut bad_results = Vec::new();
        let mut r = good.clone();
        r.output_files[0].digest = Some(upper.clone());
        bad_results.push(("uppercase output file digest", r));
        let mut r = good.clone();
        r.output_files[0].digest = None;
        bad_results.push(("output file without digest", r));
        let mut r = good.clone();
        r.stdout_digest = Some(negative.clone());
        bad_results.push(("negative stdout size", r));
        let mut r = good.clone();
        r.stderr_digest = Some(short.clone());
        bad_results.push(("short stderr hash", r));
        let mut r = good.clone();
        r.output_directories.push(re::OutputDirectory {
            path: "d".into(),
            tree_digest: Some(short.clone()),
            ..Default::default()
        });
        bad_results.push(("short tree digest", r));
        let mut r = good.clone();
        r.output_directories.push(re::OutputDirectory {
            path: "d".into(),
            root_directory_digest: Some(upper.clone()),
            ..Default::default()
        });
        bad_results.push(("uppercase root directory digest", r));
        let mut r = good.clone();
        r.output_directories.push(re::OutputDirectory {
            path: "d".into(),
            ..Default::default()
        });
        bad_results.push(("output directory with neither digest", r));
        for (name, bad) in bad_results {
            assert_code(
                update_result(&mut ac, "", &action, &bad).await,
                Code::InvalidArgument,
                &what(name),
            );
        }
        // Nothing was stored by the refused updates.
        assert_code(
            get_result(&mut ac, "", &action).await,
            Code::NotFound,
            &what("stored?"),
        );

        let update =
            |action_digest, action_result, digest_function| re::UpdateActionResultRequest {
                instance_name: String::new(),
                action_digest,
                action_result,
                results_cache_policy: None,
                digest_function,
            };
        let cases = [
            (
                "no action_result",
                update(Some(action.clone()), None, sha256()),
            ),
            (
                "no action_digest",
                update(None, Some(good.clone()), sha256()),
            ),
            (
                "bad action_digest",
                update(Some(upper.clone()), Some(good.clone()), sha256()),
            ),
            (
                "negative action_digest",
                update(Some(negative.clone()), Some(good.clone()), sha256()),
            ),
            (
                "MD5",
                update(Some(action.clone()), Some(good.clone()), md5()),
            ),
        ];
        for (name, request) in cases {
            assert_code(
                ac.update_action_result(request).await,
                Code::InvalidArgument,
                &what(name),
            );
        }
        assert_code(
            get_result(&mut ac, "", &action).await,
            Code::NotFound,
            &what("stored?"),
        );
        // The valid one goes through.
        update_result(&mut ac, "", &action, &good).await.unwrap();
        assert_eq!(get_result(&mut ac, "", &action).await.unwrap(), good);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_validates_the_request() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut ac = server.ac();
        let what = |s: &str| format!("{setup:?}: {s}");
        let get = |action_digest, digest_function| re::GetActionResultRequest {
            action_digest,
            digest_function,
            ..Default::default()
        };
        let upper = PDigest {
            hash: action_key("x").hash.to_uppercase(),
            size_bytes: 3,
        };
        let cases = [
            ("no action_digest", get(None, sha256())),
            ("uppercase", get(Some(upper), sha256())),
            ("MD5", get(Some(action_key("x")), md5())),
        ];
        for (name, request) in cases {
            assert_code(
                get_result_with(&mut ac, request).await,
                Code::InvalidArgument,
                &what(name),
            );
        }
        // UNKNOWN (0) means SHA256.
        assert_code(
            get_result_with(&mut ac, get(Some(action_key("x")), 0)).await,
            Code::NotFound,
            &what("digest_function 0"),
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_results_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let action = action_key("persistent");
    let mut results = Vec::new();
    {
        let server = Server::disk_at(dir.path(), LARGE_BUDGET, None).await;
        let (mut ac, mut cas) = (server.ac(), server.cas());
        for instance in ["", "team/x"] {
            let result = stored_result(&mut cas, instance, instance).await;
            update_result(&mut ac, instance, &action, &result)
                .await
                .unwrap();
            assert_eq!(
                get_result(&mut ac, instance, &action).await.unwrap(),
                result
            );
            results.push(result);
        }
        // A result whose blobs are under another instance.
        update_result(&mut ac, "other", &action, &results[0])
            .await
            .unwrap();
        drop((ac, cas));
        server.stop().await;
    }
    let server = Server::disk_at(dir.path(), LARGE_BUDGET, None).await;
    let (mut ac, mut cas, mut bs) = (server.ac(), server.cas(), server.bs());
    for (instance, result) in ["", "team/x"].into_iter().zip(&results) {
        assert_eq!(
            get_result(&mut ac, instance, &action).await.unwrap(),
            *result,
            "instance {instance:?} after the restart"
        );
        let output = result.output_files[0].digest.clone().unwrap();
        assert_eq!(
            read_blob(&mut bs, instance, &output).await.unwrap(),
            format!("output of {instance}").as_bytes()
        );
    }
    // Blobs stay in their instance after the restart.
    let team_output = results[1].output_files[0].digest.clone().unwrap();
    assert!(!is_present(&mut cas, "", &team_output).await);
    assert_code(
        get_result(&mut ac, "other", &action).await,
        Code::NotFound,
        "result whose blobs are in another instance",
    );
    // New writes work after the restart.
    let fresh = stored_result(&mut cas, "", "after restart").await;
    update_result(&mut ac, "", &action_key("fresh"), &fresh)
        .await
        .unwrap();
    assert_eq!(
        get_result(&mut ac, "", &action_key("fresh")).await.unwrap(),
        fresh
    );
    drop((ac, cas, bs));
    server.stop().await;
}
