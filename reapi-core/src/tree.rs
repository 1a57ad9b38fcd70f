//! Merkle-tree helpers: the blobs a `Directory`, `Tree` or `ActionResult`
//! refers to.

use crate::digest::{Digest, DigestFunction};
use crate::error::{Error, ErrorExt, Result};
use crate::proto::remote_execution::{ActionResult, Directory, Tree};

/// Digests of the files and subdirectories a `Directory` names; they are
/// made with `function`, the function of the directory's own digest.
pub fn directory_children(
    function: DigestFunction,
    dir: &Directory,
) -> Result<(Vec<Digest>, Vec<Digest>)> {
    let files = dir
        .files
        .iter()
        .map(|f| {
            Digest::from_proto_field(function, f.digest.as_ref(), "file digest")
                .with_context(|| format!("file {:?}", f.name))
        })
        .collect::<Result<Vec<_>>>()?;
    let dirs = dir
        .directories
        .iter()
        .map(|d| {
            Digest::from_proto_field(function, d.digest.as_ref(), "directory digest")
                .with_context(|| format!("directory {:?}", d.name))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((files, dirs))
}

/// Digests of every file in a `Tree` (root and children).
pub fn tree_file_digests(function: DigestFunction, tree: &Tree) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for dir in tree.root.iter().chain(tree.children.iter()) {
        out.extend(directory_children(function, dir)?.0);
    }
    Ok(out)
}

/// The blobs an `ActionResult` names directly: output files, output
/// directory trees and root directories (not their contents) and
/// stdout/stderr. An output directory may name its `Tree`, its root
/// `Directory` (REAPI 2.8, `DIRECTORY_ONLY`), or both; naming neither is
/// INVALID_ARGUMENT. Its digests are made with `function`, the function of
/// the action's digest.
pub fn action_result_direct_digests(
    function: DigestFunction,
    result: &ActionResult,
) -> Result<DirectDigests> {
    let mut blobs = Vec::new();
    let mut trees = Vec::new();
    let mut roots = Vec::new();
    for file in &result.output_files {
        blobs.push(
            Digest::from_proto_field(function, file.digest.as_ref(), "output file digest")
                .with_context(|| format!("output file {:?}", file.path))?,
        );
    }
    for dir in &result.output_directories {
        let context = || format!("output directory {:?}", dir.path);
        let tree = dir
            .tree_digest
            .as_ref()
            .map(|d| Digest::from_proto(function, d).context("tree_digest"))
            .transpose()
            .with_context(context)?;
        let root = dir
            .root_directory_digest
            .as_ref()
            .map(|d| Digest::from_proto(function, d).context("root_directory_digest"))
            .transpose()
            .with_context(context)?;
        match (tree, root) {
            (Some(tree), root) => {
                trees.push(tree);
                // The Tree lists every directory; the root must be stored too.
                blobs.extend(root);
            }
            (None, Some(root)) => roots.push(root),
            (None, None) => {
                return Err(Error::invalid_argument(format!(
                    "output directory {:?} has neither tree_digest nor root_directory_digest",
                    dir.path
                )))
            }
        }
    }
    for digest in [&result.stdout_digest, &result.stderr_digest]
        .into_iter()
        .flatten()
    {
        blobs.push(Digest::from_proto(function, digest).context("stdout/stderr digest")?);
    }
    Ok(DirectDigests {
        blobs,
        trees,
        roots,
    })
}

/// What an `ActionResult` refers to, split by whether it must be opened.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DirectDigests {
    /// Plain blobs: output files, stdout, stderr.
    pub blobs: Vec<Digest>,
    /// `Tree` messages of output directories, whose files count too.
    pub trees: Vec<Digest>,
    /// Root `Directory` messages of output directories that have no
    /// `Tree`: their whole hierarchy counts too.
    pub roots: Vec<Digest>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::remote_execution::{DirectoryNode, FileNode, OutputDirectory, OutputFile};

    #[test]
    fn collects_what_a_result_names() {
        let a = Digest::of_bytes(b"a");
        let t = Digest::of_bytes(b"tree");
        let out = Digest::of_bytes(b"stdout");
        let result = ActionResult {
            output_files: vec![OutputFile {
                path: "a".into(),
                digest: Some(a.to_proto()),
                ..Default::default()
            }],
            output_directories: vec![OutputDirectory {
                path: "d".into(),
                tree_digest: Some(t.to_proto()),
                ..Default::default()
            }],
            stdout_digest: Some(out.to_proto()),
            ..Default::default()
        };
        let direct = action_result_direct_digests(DigestFunction::Sha256, &result).unwrap();
        assert_eq!(direct.blobs, vec![a, out]);
        assert_eq!(direct.trees, vec![t]);
        assert!(direct.roots.is_empty());
    }

    #[test]
    fn output_directories_name_a_tree_a_root_or_both() {
        let t = Digest::of_bytes(b"tree");
        let r = Digest::of_bytes(b"root");
        let dir = |tree: Option<Digest>, root: Option<Digest>| OutputDirectory {
            path: "d".into(),
            tree_digest: tree.map(|d| d.to_proto()),
            root_directory_digest: root.map(|d| d.to_proto()),
            ..Default::default()
        };
        let of = |dirs: Vec<OutputDirectory>| {
            action_result_direct_digests(
                DigestFunction::Sha256,
                &ActionResult {
                    output_directories: dirs,
                    ..Default::default()
                },
            )
        };
        let root_only = of(vec![dir(None, Some(r))]).unwrap();
        assert_eq!(
            (root_only.trees, root_only.roots, root_only.blobs),
            (vec![], vec![r], vec![])
        );
        let both = of(vec![dir(Some(t), Some(r))]).unwrap();
        assert_eq!(
            (both.trees, both.roots, both.blobs),
            (vec![t], vec![], vec![r])
        );
        let neither = of(vec![dir(None, None)]).unwrap_err();
        assert_eq!(neither.code(), tonic::Code::InvalidArgument);
        assert!(
            neither
                .to_string()
                .contains("neither tree_digest nor root_directory_digest"),
            "{neither}"
        );
        let mut bad = dir(None, Some(r));
        bad.root_directory_digest.as_mut().unwrap().hash = "xyz".into();
        let bad = of(vec![bad]).unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.to_string().contains("root_directory_digest"), "{bad}");
    }

    #[test]
    fn tree_files_include_children() {
        let f1 = Digest::of_bytes(b"1");
        let f2 = Digest::of_bytes(b"2");
        let child = Directory {
            files: vec![FileNode {
                name: "two".into(),
                digest: Some(f2.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let root = Directory {
            files: vec![FileNode {
                name: "one".into(),
                digest: Some(f1.to_proto()),
                ..Default::default()
            }],
            directories: vec![DirectoryNode {
                name: "sub".into(),
                digest: Some(Digest::of_message(&child).to_proto()),
            }],
            ..Default::default()
        };
        let tree = Tree {
            root: Some(root),
            children: vec![child],
        };
        assert_eq!(
            tree_file_digests(DigestFunction::Sha256, &tree).unwrap(),
            vec![f1, f2]
        );
    }

    #[test]
    fn missing_digest_is_invalid() {
        let result = ActionResult {
            output_files: vec![OutputFile {
                path: "a".into(),
                digest: None,
                ..Default::default()
            }],
            ..Default::default()
        };
        let err = action_result_direct_digests(DigestFunction::Sha256, &result).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains("output file \"a\""));
    }
}
