//! Input trees: layout, modes, copies of or hardlinks to the disk store's
//! files (by who the action runs as), executable copies, symlinks, missing
//! blobs and malformed trees.

use bytes::Bytes;
use prost::Message;
use reapi_core::proto::error_details::PreconditionFailure;
use reapi_core::proto::remote_execution::{Directory, DirectoryNode, FileNode, SymlinkNode};
use reapi_core::Digest;
use reapi_test_support::actions::shell;
use reapi_test_support::executor::{job, Harness, INSTANCE};
use reapi_test_support::trees::TreeSpec;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tonic::Code;

const SCRIPT: &str = r#"
set -e
cat a.txt; echo
cat dir/nested/b.txt; echo
test -x bin/tool && echo tool-x
test -w a.txt || echo a-ro
stat -c '%a' a.txt bin/tool empty.txt
test -d emptydir && echo emptydir
test -f empty.txt && test ! -s empty.txt && echo empty-file
readlink link
readlink abs
bin/tool
"#;

fn tree() -> TreeSpec {
    TreeSpec::new()
        .file("a.txt", b"alpha")
        .file("dir/nested/b.txt", b"beta")
        .executable("bin/tool", b"#!/bin/sh\necho tool ran\n")
        .file("empty.txt", b"")
        .dir("emptydir")
        .symlink("link", "dir/nested/b.txt")
        .symlink("abs", "/nonexistent/target")
}

const EXPECTED: &str = "alpha\nbeta\ntool-x\na-ro\n444\n555\n444\nemptydir\nempty-file\n\
dir/nested/b.txt\n/nonexistent/target\ntool ran\n";

#[tokio::test]
async fn lays_out_a_tree_from_a_memory_store() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&tree()).await;
    let outcome = h.run(shell(SCRIPT), root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    // As root, `test -w` passes on read-only files; the mode line says it.
    assert_eq!(stdout.replace("a-ro\n", ""), EXPECTED.replace("a-ro\n", ""));
    assert!(h.leftover_action_dirs().is_empty());
}

/// The disk store's content file for `content`, and the digest of what
/// it holds now.
fn store_file(h: &Harness, content: &[u8]) -> (PathBuf, Digest) {
    let path = h
        .disk
        .as_ref()
        .unwrap()
        .blob_path(INSTANCE, &Digest::of_bytes(content))
        .expect("the blob is in the disk store");
    let now = Digest::of_bytes(&std::fs::read(&path).unwrap());
    (path, now)
}

fn ino(path: &Path) -> String {
    std::fs::metadata(path).unwrap().ino().to_string()
}

fn executables_dir(h: &Harness) -> PathBuf {
    h.pool.actions_dir().parent().unwrap().join("executables")
}

const ORIGINAL: &[u8] = b"original contents\n";
const TOOL: &[u8] = b"#!/bin/sh\necho tool ran\n";

/// Tries to overwrite `in.txt` and `bin/tool` in place (after making them
/// writable), reporting each step's status, then prints what it reads.
const VANDAL: &str = r#"
(chmod u+w in.txt) 2>/dev/null; echo "chmod=$?"
(printf CORRUPTED 1<>in.txt) 2>/dev/null; echo "write=$?"
(chmod u+w bin/tool) 2>/dev/null; echo "chmod-exe=$?"
(printf 'exit 3 #' 1<>bin/tool) 2>/dev/null; echo "write-exe=$?"
cat in.txt
"#;

/// Checks that the blobs behind `in.txt` and `bin/tool` are intact: the
/// store's files, a ByteStream-like read, and a later action's view.
async fn assert_store_intact(h: &Harness) {
    for content in [ORIGINAL, TOOL] {
        let (path, now) = store_file(h, content);
        assert_eq!(
            now,
            Digest::of_bytes(content),
            "the store's file {} was changed",
            path.display()
        );
        assert_eq!(h.read(&Digest::of_bytes(content)).await, content);
    }
    let root = h.upload_tree(&vandal_tree()).await;
    let outcome = h.run(shell("cat in.txt; bin/tool"), root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    assert_eq!(
        h.stdout(&outcome).await,
        "original contents\ntool ran\n",
        "a later action saw an earlier one's changes to a shared input"
    );
}

fn vandal_tree() -> TreeSpec {
    TreeSpec::new()
        .file("in.txt", ORIGINAL)
        .executable("bin/tool", TOOL)
        .file("dir/sub/x.txt", b"x")
}

#[tokio::test]
async fn inputs_are_copies_when_actions_run_as_the_server() {
    // The harness runs actions as the test's own user: hardlinks to the
    // store's files would let them write to the CAS, so inputs are copies.
    let h = Harness::disk().await;
    let root = h.upload_tree(&tree()).await;
    let outcome = h.run(shell(SCRIPT), root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    assert_eq!(stdout.replace("a-ro\n", ""), EXPECTED.replace("a-ro\n", ""));

    let (alpha, _) = store_file(&h, b"alpha");
    let (tool, _) = store_file(&h, b"#!/bin/sh\necho tool ran\n");
    let outcome = h
        .run(shell("stat -L -c '%i' a.txt bin/tool"), root)
        .await
        .unwrap();
    let stdout = h.stdout(&outcome).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_ne!(lines[0], ino(&alpha), "a.txt is the store's file");
    assert_ne!(lines[1], ino(&tool), "bin/tool is the store's file");
    // No executable copies to link from are made.
    assert_eq!(std::fs::read_dir(executables_dir(&h)).unwrap().count(), 0);
    // The store's files kept their mode.
    assert_eq!(std::fs::metadata(&tool).unwrap().mode() & 0o777, 0o444);
    assert!(h.leftover_action_dirs().is_empty());

    // An action writing to its inputs changes its own copies only.
    let root = h.upload_tree(&vandal_tree()).await;
    let outcome = h.run(shell(VANDAL), root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    assert!(stdout.contains("write=0\n"), "{stdout}");
    assert!(stdout.ends_with("CORRUPTEDcontents\n"), "{stdout}");
    assert_store_intact(&h).await;
    assert!(h.leftover_action_dirs().is_empty());
}

/// Whether the test may run actions as `nobody` (it must be root for
/// that). Outside CI, a test that cannot is skipped with a message; in CI
/// (`CI=true`) it fails.
fn can_switch_users(test: &str) -> bool {
    if reapi_executor::identity::server_identity().0 == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} must run as root in CI, to run actions as another user");
    }
    eprintln!("skipping {test}: running actions as another user needs root");
    false
}

#[tokio::test]
async fn actions_running_as_another_user_cannot_change_hardlinked_inputs() {
    if !can_switch_users("actions_running_as_another_user_cannot_change_hardlinked_inputs") {
        return;
    }
    let nobody = reapi_executor::identity::nobody();
    let h = Harness::disk_running_as(Some(nobody)).await;
    let root = h.upload_tree(&vandal_tree()).await;
    let script = format!(
        r#"{VANDAL}
id -u
echo "groups=$(id -G)"
stat -L -c '%i %u %a' in.txt bin/tool
echo new > dir/sub/created.txt && echo created
rm dir/sub/x.txt && echo removed
mkdir -p gen/a && printf g > gen/a/f
printf result > out/result.txt
"#
    );
    let mut cmd = shell(&script);
    cmd.output_paths = vec!["gen".into(), "out/result.txt".into()];
    let outcome = h.run(cmd, root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    let stderr = h.stderr(&outcome).await;
    assert_eq!(outcome.result.exit_code, 0, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    // Neither chmod nor the writes worked, and the action read the
    // original.
    for step in ["chmod", "write", "chmod-exe", "write-exe"] {
        assert!(
            !lines.contains(&format!("{step}=0").as_str()),
            "{step} succeeded: {stdout}"
        );
    }
    assert!(lines.contains(&"original contents"), "{stdout}");
    assert!(lines.contains(&nobody.0.to_string().as_str()), "{stdout}");
    // With its own group only: root's supplementary groups were dropped.
    assert!(
        lines.contains(&format!("groups={}", nobody.1).as_str()),
        "{stdout}"
    );
    // The inputs are the server's read-only files: in.txt the store's own,
    // bin/tool the shared executable copy.
    let (in_txt, _) = store_file(&h, ORIGINAL);
    let copy = executables_dir(&h).join(format!(
        "{}-{}",
        Digest::of_bytes(TOOL).hash_hex(),
        TOOL.len()
    ));
    assert!(
        lines.contains(&format!("{} 0 444", ino(&in_txt)).as_str()),
        "{stdout}"
    );
    assert!(
        lines.contains(&format!("{} 0 555", ino(&copy)).as_str()),
        "{stdout}"
    );
    // It could still create and remove files in the input directories.
    assert!(lines.contains(&"created"), "{stdout}");
    assert!(lines.contains(&"removed"), "{stdout}");

    // Its outputs were collected.
    let result = &outcome.result;
    let file = result
        .output_files
        .iter()
        .find(|f| f.path == "out/result.txt")
        .expect("out/result.txt collected");
    assert_eq!(h.read_proto(file.digest.as_ref().unwrap()).await, b"result");
    let gen = result
        .output_directories
        .iter()
        .find(|d| d.path == "gen")
        .expect("gen collected");
    let tree = h.tree(gen.tree_digest.as_ref().unwrap()).await;
    assert_eq!(tree.root.as_ref().unwrap().directories[0].name, "a");
    assert_eq!(tree.children.len(), 1);
    assert_eq!(
        h.read_proto(tree.children[0].files[0].digest.as_ref().unwrap())
            .await,
        b"g"
    );

    // The removed input's blob is still in the store.
    let (_, x_now) = store_file(&h, b"x");
    assert_eq!(x_now, Digest::of_bytes(b"x"));
    assert_store_intact(&h).await;
    // Files and directories the action made are removed with its
    // directory.
    assert!(h.leftover_action_dirs().is_empty());

    // Outputs under a working directory, whose parents the worker makes.
    let mut cmd = shell("mkdir made && printf y > made/y && printf z > out/deep/z.txt");
    cmd.working_directory = "dir/sub".into();
    cmd.output_paths = vec!["made".into(), "out/deep/z.txt".into()];
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    assert_eq!(outcome.result.output_directories.len(), 1);
    let z = &outcome.result.output_files[0];
    assert_eq!(z.path, "out/deep/z.txt");
    assert_eq!(h.read_proto(z.digest.as_ref().unwrap()).await, b"z");
    assert!(h.leftover_action_dirs().is_empty());
}

#[tokio::test]
async fn input_files_are_fetched_when_the_disk_store_lacks_them() {
    // A disk store is given for linking, but the CAS is another store.
    let h = Harness::disk().await;
    let memory: std::sync::Arc<dyn reapi_core::BlobStore> =
        std::sync::Arc::new(reapi_cas::store::MemoryStore::new(1 << 20));
    let mut config = reapi_executor::LocalExecutorConfig::new(h.dir.path().join("work2")).unwrap();
    config.executors = 1;
    let pool = reapi_executor::LocalExecutorPool::new(
        memory.clone(),
        h.disk.clone(),
        std::sync::Arc::new(reapi_executor::ProcessSandbox::new()),
        config,
    )
    .await
    .unwrap();
    let mut blobs = Vec::new();
    let root = tree().build(&mut blobs);
    for blob in blobs {
        memory
            .put(INSTANCE, &Digest::of_bytes(&blob), blob)
            .await
            .unwrap();
    }
    use reapi_core::execution::ExecutorPool;
    let claim = pool.claim().unwrap();
    let outcome = pool
        .run(
            &claim,
            job(shell(SCRIPT), root, std::time::Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert_eq!(outcome.result.exit_code, 0);
    let stdout = memory
        .get(
            INSTANCE,
            &Digest::from_proto(
                reapi_core::DigestFunction::Sha256,
                outcome.result.stdout_digest.as_ref().unwrap(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let stdout = String::from_utf8(stdout.to_vec()).unwrap();
    assert_eq!(stdout.replace("a-ro\n", ""), EXPECTED.replace("a-ro\n", ""));
}

fn missing_subjects(err: &reapi_core::Error) -> Vec<String> {
    let status = err.to_rpc_status();
    let failure = PreconditionFailure::decode(status.details[0].value.as_slice()).unwrap();
    failure
        .violations
        .iter()
        .map(|v| {
            assert_eq!(v.r#type, "MISSING");
            v.subject.clone()
        })
        .collect()
}

#[tokio::test]
async fn missing_inputs_are_failed_precondition_listing_them() {
    for h in [Harness::memory().await, Harness::disk().await] {
        let absent_file = Digest::of_bytes(b"never uploaded");
        let absent_dir = Digest::of_bytes(b"not a directory either");
        let root = Directory {
            files: vec![FileNode {
                name: "f".into(),
                digest: Some(absent_file.to_proto()),
                ..Default::default()
            }],
            directories: vec![DirectoryNode {
                name: "sub".into(),
                digest: Some(absent_dir.to_proto()),
            }],
            ..Default::default()
        };
        let root = h.put_message(&root).await;
        let err = h.run(shell("true"), root).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        let mut subjects = missing_subjects(&err);
        subjects.sort();
        let mut expected = vec![
            format!("blobs/{}/{}", absent_file.hash_hex(), absent_file.size()),
            format!("blobs/{}/{}", absent_dir.hash_hex(), absent_dir.size()),
        ];
        expected.sort();
        assert_eq!(subjects, expected);

        // A missing input root too.
        let err = h
            .run(shell("true"), Digest::of_bytes(b"no root"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(h.leftover_action_dirs().is_empty());
    }
}

fn file(name: &str, digest: Digest) -> FileNode {
    FileNode {
        name: name.into(),
        digest: Some(digest.to_proto()),
        ..Default::default()
    }
}

async fn assert_tree_refused(h: &Harness, root: Directory, words: &[&str]) {
    let digest = h.put_message(&root).await;
    let err = h.run(shell("true"), digest).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    for word in words {
        assert!(err.to_string().contains(word), "{word:?} not in: {err}");
    }
    assert!(h.leftover_action_dirs().is_empty());
}

#[tokio::test]
async fn malformed_trees_are_invalid_argument() {
    let h = Harness::memory().await;
    let x = h.put("x").await;
    let y = h.put("y").await;

    assert_tree_refused(
        &h,
        Directory {
            files: vec![file("..", x)],
            ..Default::default()
        },
        &["\"..\""],
    )
    .await;
    assert_tree_refused(
        &h,
        Directory {
            files: vec![file("a/b", x)],
            ..Default::default()
        },
        &["'/'"],
    )
    .await;
    assert_tree_refused(
        &h,
        Directory {
            files: vec![file("a", x), file("a", y)],
            ..Default::default()
        },
        &["twice"],
    )
    .await;
    assert_tree_refused(
        &h,
        Directory {
            files: vec![file("b", x), file("a", y)],
            ..Default::default()
        },
        &["sorted"],
    )
    .await;
    // A name used by a file and a directory.
    let empty = h.put_message(&Directory::default()).await;
    assert_tree_refused(
        &h,
        Directory {
            files: vec![file("a", x)],
            directories: vec![DirectoryNode {
                name: "a".into(),
                digest: Some(empty.to_proto()),
            }],
            ..Default::default()
        },
        &["also listed"],
    )
    .await;
    // A symlink climbing out of the input root, from a subdirectory.
    let sub = Directory {
        symlinks: vec![SymlinkNode {
            name: "up".into(),
            target: "../../etc/passwd".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let sub = h.put_message(&sub).await;
    assert_tree_refused(
        &h,
        Directory {
            directories: vec![DirectoryNode {
                name: "d".into(),
                digest: Some(sub.to_proto()),
            }],
            ..Default::default()
        },
        &["outside the input root", "d/up"],
    )
    .await;
    // A missing file digest.
    assert_tree_refused(
        &h,
        Directory {
            files: vec![FileNode {
                name: "f".into(),
                digest: None,
                ..Default::default()
            }],
            ..Default::default()
        },
        &["digest"],
    )
    .await;
}

#[tokio::test]
async fn a_blob_that_is_not_a_directory_is_invalid_argument() {
    let h = Harness::memory().await;
    let garbage = h.put(Bytes::from_static(b"\xff\xff\xff\xff garbage")).await;
    let err = h.run(shell("true"), garbage).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains(&garbage.to_string()), "{err}");

    // Also as a subdirectory.
    let root = Directory {
        directories: vec![DirectoryNode {
            name: "sub".into(),
            digest: Some(garbage.to_proto()),
        }],
        ..Default::default()
    };
    let root = h.put_message(&root).await;
    let err = h.run(shell("true"), root).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains(&garbage.to_string()), "{err}");
}

#[tokio::test]
async fn shared_subtrees_are_laid_out_at_every_path() {
    let h = Harness::disk().await;
    let shared = TreeSpec::new()
        .file("f.txt", b"same")
        .executable("run", b"#!/bin/sh\necho run\n");
    let mut blobs = Vec::new();
    let shared_digest = shared.build(&mut blobs);
    for blob in blobs {
        h.put(blob).await;
    }
    let node = |name: &str| DirectoryNode {
        name: name.into(),
        digest: Some(shared_digest.to_proto()),
    };
    let root = Directory {
        directories: vec![node("a"), node("b")],
        ..Default::default()
    };
    let root = h.put_message(&root).await;
    let outcome = h
        .run(shell("cat a/f.txt b/f.txt; a/run; b/run"), root)
        .await
        .unwrap();
    assert_eq!(h.stdout(&outcome).await, "samesamerun\nrun\n");
    // A second run hits the Directory cache.
    assert!(h.pool.materializer().cached_directories() >= 2);
    let outcome = h.run(shell("cat b/f.txt"), root).await.unwrap();
    assert_eq!(h.stdout(&outcome).await, "same");
}
