//! Input trees: layout, modes, hardlinks from the disk store, executable
//! copies, symlinks, missing blobs and malformed trees.

mod common;

use bytes::Bytes;
use common::{shell, Harness, TreeSpec, INSTANCE};
use prost::Message;
use reapi_core::proto::error_details::PreconditionFailure;
use reapi_core::proto::remote_execution::{Directory, DirectoryNode, FileNode, SymlinkNode};
use reapi_core::Digest;
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

#[tokio::test]
async fn hardlinks_from_the_disk_store() {
    let h = Harness::disk().await;
    let root = h.upload_tree(&tree()).await;
    let outcome = h.run(shell(SCRIPT), root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    assert_eq!(stdout.replace("a-ro\n", ""), EXPECTED.replace("a-ro\n", ""));

    // a.txt shares the store's inode; bin/tool shares the executable copy's
    // (which is not the store's 0444 file).
    let disk = h.disk.as_ref().unwrap();
    let alpha = disk
        .blob_path(INSTANCE, &Digest::of_bytes(b"alpha"))
        .unwrap();
    let tool_blob = Digest::of_bytes(b"#!/bin/sh\necho tool ran\n");
    let tool = disk.blob_path(INSTANCE, &tool_blob).unwrap();
    let script = format!(
        "stat -L -c '%i' a.txt bin/tool; stat -c '%a' bin/tool; ls {}",
        h.pool
            .actions_dir()
            .parent()
            .unwrap()
            .join("executables")
            .display()
    );
    let outcome = h.run(shell(&script), root).await.unwrap();
    let stdout = h.stdout(&outcome).await;
    let lines: Vec<&str> = stdout.lines().collect();
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino().to_string();
    assert_eq!(lines[0], ino(&alpha), "{stdout}");
    assert_ne!(lines[1], ino(&tool), "{stdout}");
    assert_eq!(lines[2], "555");
    assert_eq!(
        lines[3],
        format!("{}-{}", tool_blob.hash_hex(), tool_blob.size())
    );
    // The store's file kept its mode.
    assert_eq!(std::fs::metadata(&tool).unwrap().mode() & 0o777, 0o444);
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
    use reapi_core::execution::{ExecutorId, ExecutorPool};
    let outcome = pool
        .run(
            &ExecutorId("local/0".into()),
            common::job(shell(SCRIPT), root, std::time::Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert_eq!(outcome.result.exit_code, 0);
    let stdout = memory
        .get(
            INSTANCE,
            &Digest::from_proto(outcome.result.stdout_digest.as_ref().unwrap()).unwrap(),
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
