//! Outputs: files, directories (as Trees), symlinks, in the `output_paths`
//! and the legacy forms; missing outputs; bad output paths.

use bytes::Bytes;
use prost::Message;
use reapi_core::proto::remote_execution::command::OutputDirectoryFormat;
use reapi_core::proto::remote_execution::{ActionResult, Directory};
use reapi_core::Digest;
use reapi_test_support::actions::shell;
use reapi_test_support::executor::Harness;
use reapi_test_support::trees::TreeSpec;
use tonic::Code;

const MAKE_OUTPUTS: &str = r#"
set -e
printf 'object' > out/a.o
printf '#!/bin/sh\n' > out/tool; chmod 755 out/tool
mkdir -p gen/sub/deeper gen/empty
printf 'one' > gen/one.txt
printf 'two' > gen/sub/two.sh; chmod +x gen/sub/two.sh
printf 'one' > gen/sub/deeper/same.txt
ln -s ../one.txt gen/sub/link
ln -s a.o out/link.o
ln -s ../gen out/gendir
"#;

fn paths(result: &ActionResult) -> Vec<String> {
    let mut all: Vec<String> = result
        .output_files
        .iter()
        .map(|f| format!("file {}", f.path))
        .collect();
    all.extend(
        result
            .output_directories
            .iter()
            .map(|d| format!("dir {}", d.path)),
    );
    all.extend(
        result
            .output_symlinks
            .iter()
            .map(|s| format!("symlink {} -> {}", s.path, s.target)),
    );
    #[allow(deprecated)]
    {
        all.extend(
            result
                .output_file_symlinks
                .iter()
                .map(|s| format!("file-symlink {} -> {}", s.path, s.target)),
        );
        all.extend(
            result
                .output_directory_symlinks
                .iter()
                .map(|s| format!("dir-symlink {} -> {}", s.path, s.target)),
        );
    }
    all.sort();
    all
}

async fn check_gen_tree(h: &Harness, result: &ActionResult, path: &str) {
    let dir = result
        .output_directories
        .iter()
        .find(|d| d.path == path)
        .unwrap();
    assert!(!dir.is_topologically_sorted);
    let tree = h.tree(dir.tree_digest.as_ref().unwrap()).await;
    let root = tree.root.as_ref().unwrap();
    let names = |d: &Directory| {
        (
            d.files
                .iter()
                .map(|f| (f.name.clone(), f.is_executable))
                .collect::<Vec<_>>(),
            d.directories
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
            d.symlinks
                .iter()
                .map(|s| format!("{}->{}", s.name, s.target))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        names(root),
        (
            vec![("one.txt".into(), false)],
            vec!["empty".into(), "sub".into()],
            vec![]
        )
    );
    // Every child the root names is in the tree.
    let child = |digest: &reapi_core::proto::remote_execution::Digest| {
        tree.children
            .iter()
            .find(|c| Digest::of_message(*c).to_proto() == *digest)
            .unwrap_or_else(|| panic!("child {digest:?} not in the tree"))
    };
    let sub = child(root.directories[1].digest.as_ref().unwrap());
    assert_eq!(
        names(sub),
        (
            vec![("two.sh".into(), true)],
            vec!["deeper".into()],
            vec!["link->../one.txt".into()]
        )
    );
    let empty = child(root.directories[0].digest.as_ref().unwrap());
    assert_eq!(empty, &Directory::default());
    let deeper = child(sub.directories[0].digest.as_ref().unwrap());
    // Files are in the CAS.
    assert_eq!(
        h.read_proto(deeper.files[0].digest.as_ref().unwrap()).await,
        b"one"
    );
    assert_eq!(
        h.read_proto(sub.files[0].digest.as_ref().unwrap()).await,
        b"two"
    );
    assert_eq!(tree.children.len(), 3);
}

#[tokio::test]
async fn output_paths_are_typed_by_what_is_on_disk() {
    let h = Harness::disk().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let mut cmd = shell(MAKE_OUTPUTS);
    cmd.output_paths = [
        "gen",
        "missing",
        "out/a.o",
        "out/gendir",
        "out/link.o",
        "out/tool",
    ]
    .map(String::from)
    .to_vec();
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    let result = &outcome.result;
    assert_eq!(
        paths(result),
        [
            "dir gen",
            "file out/a.o",
            "file out/tool",
            "symlink out/gendir -> ../gen",
            "symlink out/link.o -> a.o",
        ]
    );
    let a = result
        .output_files
        .iter()
        .find(|f| f.path == "out/a.o")
        .unwrap();
    assert!(!a.is_executable);
    assert_eq!(h.read_proto(a.digest.as_ref().unwrap()).await, b"object");
    let tool = result
        .output_files
        .iter()
        .find(|f| f.path == "out/tool")
        .unwrap();
    assert!(tool.is_executable);
    check_gen_tree(&h, result, "gen").await;
    // TREE_ONLY (the default): no root_directory_digest.
    assert!(result.output_directories[0].root_directory_digest.is_none());
}

#[tokio::test]
#[allow(deprecated)]
async fn legacy_output_fields_work_and_report_symlinks_the_v2_0_way() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let mut cmd = shell(MAKE_OUTPUTS);
    cmd.output_files = ["missing.o", "out/a.o", "out/link.o", "out/tool"]
        .map(String::from)
        .to_vec();
    cmd.output_directories = ["gen", "out/gendir"].map(String::from).to_vec();
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    assert_eq!(
        paths(&outcome.result),
        [
            "dir gen",
            "dir-symlink out/gendir -> ../gen",
            "file out/a.o",
            "file out/tool",
            "file-symlink out/link.o -> a.o",
        ]
    );
    assert!(outcome.result.output_symlinks.is_empty());
    check_gen_tree(&h, &outcome.result, "gen").await;
}

#[tokio::test]
#[allow(deprecated)]
async fn outputs_are_relative_to_the_working_directory() {
    let h = Harness::memory().await;
    let root = h
        .upload_tree(&TreeSpec::new().file("pkg/in.txt", b"in"))
        .await;
    // The parents of outputs are created before the run, even outside the
    // working directory.
    let mut cmd = shell("cat in.txt > deep/er/copy.txt && printf up > ../top/up.txt");
    cmd.working_directory = "pkg".into();
    cmd.output_files = vec!["deep/er/copy.txt".into(), "../top/up.txt".into()];
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    let files = &outcome.result.output_files;
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].path, "deep/er/copy.txt");
    assert_eq!(h.read_proto(files[0].digest.as_ref().unwrap()).await, b"in");
    assert_eq!(files[1].path, "../top/up.txt");
    assert_eq!(h.read_proto(files[1].digest.as_ref().unwrap()).await, b"up");

    // The working directory itself as an output directory ("").
    let mut cmd = shell("printf x > made.txt");
    cmd.working_directory = "pkg".into();
    cmd.output_directories = vec!["".into()];
    let outcome = h.run(cmd, root).await.unwrap();
    let dir = &outcome.result.output_directories[0];
    assert_eq!(dir.path, "");
    let tree = h.tree(dir.tree_digest.as_ref().unwrap()).await;
    let names: Vec<_> = tree
        .root
        .unwrap()
        .files
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(names, ["in.txt", "made.txt"]);
}

#[tokio::test]
#[allow(deprecated)]
async fn escaping_output_paths_are_invalid_argument() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new().dir("pkg")).await;
    for (wd, path) in [("", "../x"), ("pkg", "../../x"), ("", "/tmp/x")] {
        for legacy in [false, true] {
            let mut cmd = shell("true");
            cmd.working_directory = wd.into();
            if legacy {
                cmd.output_files = vec![path.into()];
            } else {
                cmd.output_paths = vec![path.into()];
            }
            let err = h.run(cmd, root).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{wd:?} {path:?}");
            assert!(err.to_string().contains(path), "{err}");
        }
    }
    // An output whose parent is a symlink in the input tree is refused
    // rather than created through the symlink.
    let root = h.upload_tree(&TreeSpec::new().symlink("out", "/tmp")).await;
    let mut cmd = shell("true");
    cmd.output_paths = vec!["out/x".into()];
    let err = h.run(cmd, root).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(h.leftover_action_dirs().is_empty());
}

#[tokio::test]
#[allow(deprecated)]
async fn outputs_reached_through_a_symlink_are_absent() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let outside = h.scratch();
    std::fs::write(outside.join("secret"), "secret").unwrap();
    // The action replaces the output's parent by a symlink to outside.
    let mut cmd = shell(&format!("rmdir out && ln -s {} out", outside.display()));
    cmd.output_files = vec!["out/secret".into()];
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 0, "{}", h.stderr(&outcome).await);
    assert!(outcome.result.output_files.is_empty());
}

#[tokio::test]
#[allow(deprecated)]
async fn legacy_type_mismatches_are_failed_precondition() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let mut cmd = shell("mkdir d");
    cmd.output_files = vec!["d".into()];
    let err = h.run(cmd, root).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.to_string().contains("\"d\""), "{err}");

    let mut cmd = shell("touch f");
    cmd.output_directories = vec!["f".into()];
    let err = h.run(cmd, root).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(h.leftover_action_dirs().is_empty());
}

#[tokio::test]
async fn directory_format_adds_root_directory_digests() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let mut cmd = shell("mkdir -p d/e && printf x > d/e/f");
    cmd.output_paths = vec!["d".into()];
    cmd.output_directory_format = OutputDirectoryFormat::TreeAndDirectory as i32;
    let outcome = h.run(cmd, root).await.unwrap();
    let dir = &outcome.result.output_directories[0];
    let root_digest = dir.root_directory_digest.as_ref().unwrap();
    let tree = h.tree(dir.tree_digest.as_ref().unwrap()).await;
    // The root Directory and its child are stored on their own.
    let root_dir = Directory::decode(Bytes::from(h.read_proto(root_digest).await)).unwrap();
    assert_eq!(Some(&root_dir), tree.root.as_ref());
    let child = h
        .read_proto(root_dir.directories[0].digest.as_ref().unwrap())
        .await;
    assert_eq!(
        Directory::decode(Bytes::from(child)).unwrap(),
        tree.children[0]
    );
}

/// DIRECTORY_ONLY (BuildStream, buildbox): the root Directory and no Tree,
/// neither named nor stored; every Directory of the output is stored.
#[tokio::test]
async fn directory_only_gives_the_root_directory_and_no_tree() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let mut cmd = shell("mkdir -p d/e && printf x > d/e/f");
    cmd.output_paths = vec!["d".into()];
    cmd.output_directory_format = OutputDirectoryFormat::DirectoryOnly as i32;
    let outcome = h.run(cmd.clone(), root).await.unwrap();
    let dir = &outcome.result.output_directories[0];
    assert!(dir.tree_digest.is_none(), "{dir:?}");
    let root_digest = dir.root_directory_digest.as_ref().unwrap();
    let root_dir = Directory::decode(Bytes::from(h.read_proto(root_digest).await)).unwrap();
    assert_eq!(root_dir.directories[0].name, "e");
    let child = h
        .read_proto(root_dir.directories[0].digest.as_ref().unwrap())
        .await;
    let child = Directory::decode(Bytes::from(child)).unwrap();
    assert_eq!(child.files[0].name, "f");

    // The same command as TREE_ONLY: the Tree it would have stored is not
    // in the CAS after the DIRECTORY_ONLY run.
    cmd.output_directory_format = OutputDirectoryFormat::TreeOnly as i32;
    let tree_only = h.run(cmd, root).await.unwrap();
    let tree_dir = &tree_only.result.output_directories[0];
    assert!(tree_dir.root_directory_digest.is_none(), "{tree_dir:?}");
    let tree = h.tree(tree_dir.tree_digest.as_ref().unwrap()).await;
    assert_eq!(tree.root.as_ref(), Some(&root_dir));
}

#[tokio::test]
async fn outputs_of_a_failed_command_are_still_collected() {
    let h = Harness::memory().await;
    let root = h.upload_tree(&TreeSpec::new()).await;
    let mut cmd = shell("printf partial > log.txt; exit 1");
    cmd.output_paths = vec!["log.txt".into()];
    let outcome = h.run(cmd, root).await.unwrap();
    assert_eq!(outcome.result.exit_code, 1);
    assert_eq!(outcome.result.output_files.len(), 1);
}
