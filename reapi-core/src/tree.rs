//! Merkle-tree helpers: the blobs a `Directory`, `Tree` or `ActionResult`
//! refers to.

use crate::digest::Digest;
use crate::error::{ErrorExt, Result};
use crate::proto::remote_execution::{ActionResult, Directory, Tree};

/// Digests of the files and subdirectories a `Directory` names.
pub fn directory_children(dir: &Directory) -> Result<(Vec<Digest>, Vec<Digest>)> {
    let files = dir
        .files
        .iter()
        .map(|f| {
            Digest::from_proto_field(f.digest.as_ref(), "file digest")
                .with_context(|| format!("file {:?}", f.name))
        })
        .collect::<Result<Vec<_>>>()?;
    let dirs = dir
        .directories
        .iter()
        .map(|d| {
            Digest::from_proto_field(d.digest.as_ref(), "directory digest")
                .with_context(|| format!("directory {:?}", d.name))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((files, dirs))
}

/// Digests of every file in a `Tree` (root and children).
pub fn tree_file_digests(tree: &Tree) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for dir in tree.root.iter().chain(tree.children.iter()) {
        out.extend(directory_children(dir)?.0);
    }
    Ok(out)
}

/// The blobs an `ActionResult` names directly: output files, output
/// directory trees (not their contents) and stdout/stderr.
pub fn action_result_direct_digests(result: &ActionResult) -> Result<DirectDigests> {
    let mut blobs = Vec::new();
    let mut trees = Vec::new();
    for file in &result.output_files {
        blobs.push(
            Digest::from_proto_field(file.digest.as_ref(), "output file digest")
                .with_context(|| format!("output file {:?}", file.path))?,
        );
    }
    for dir in &result.output_directories {
        trees.push(
            Digest::from_proto_field(dir.tree_digest.as_ref(), "tree digest")
                .with_context(|| format!("output directory {:?}", dir.path))?,
        );
    }
    for digest in [&result.stdout_digest, &result.stderr_digest]
        .into_iter()
        .flatten()
    {
        blobs.push(Digest::from_proto(digest).context("stdout/stderr digest")?);
    }
    Ok(DirectDigests { blobs, trees })
}

/// What an `ActionResult` refers to, split by whether it must be opened.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DirectDigests {
    /// Plain blobs: output files, stdout, stderr.
    pub blobs: Vec<Digest>,
    /// `Tree` messages of output directories, whose files count too.
    pub trees: Vec<Digest>,
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
        let direct = action_result_direct_digests(&result).unwrap();
        assert_eq!(direct.blobs, vec![a, out]);
        assert_eq!(direct.trees, vec![t]);
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
        assert_eq!(tree_file_digests(&tree).unwrap(), vec![f1, f2]);
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
        let err = action_result_direct_digests(&result).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains("output file \"a\""));
    }
}
