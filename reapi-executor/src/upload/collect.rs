//! Finds what a command left at its output paths and describes it in
//! `ActionResult` terms, hashing every file on the way (nothing is uploaded
//! here; see [`super::send`]).
//!
//! - `output_paths` (REAPI 2.1+): the type is whatever is on disk. Files go
//!   to `output_files`, directories to `output_directories`, symlinks to
//!   `output_symlinks`.
//! - Legacy `output_files` / `output_directories` (REAPI 2.0, which Bazel
//!   4.x speaks): a symlink goes to `output_file_symlinks` or
//!   `output_directory_symlinks`, which is what 2.0 clients read; the spec
//!   says `output_symlinks` is only filled for `output_paths`, so it is
//!   not. The symlink is reported whatever it points to (dangling
//!   symlinks are legitimate outputs). A directory where a file was
//!   asked for, or the reverse, is FAILED_PRECONDITION, as the spec says.
//! - A missing output is left out; so is one whose parent is not a real
//!   directory (it cannot be reached without following a symlink), and a
//!   special file (FIFO, socket, device), with a warning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reapi_core::proto::remote_execution::{
    ActionResult, OutputDirectory, OutputFile, OutputSymlink,
};
use reapi_core::{DigestFunction, Error, ErrorExt, Result};

use super::hash::FileHasher;
use super::tree::build_tree;
use super::Blobs;
use crate::command::{CommandSpec, OutputKind, OutputRequest};
use crate::paths::lookup_no_follow;

/// Describes the outputs under `root` and the command's stdout/stderr
/// files; returns the result's output fields and every blob they name,
/// with digests made by `function` (the action digest's).
pub fn collect(
    function: DigestFunction,
    root: &Path,
    spec: &CommandSpec,
    stdout: &Path,
    stderr: &Path,
) -> Result<(ActionResult, Blobs)> {
    let mut hasher = FileHasher::new(function);
    let mut blobs = Blobs::default();
    let mut result = ActionResult::default();
    for output in &spec.outputs {
        collect_one(root, spec, output, &mut hasher, &mut blobs, &mut result)
            .with_context(|| format!("output {:?}", output.path))?;
    }
    for (path, field) in [
        (stdout, &mut result.stdout_digest),
        (stderr, &mut result.stderr_digest),
    ] {
        // A sandbox that never started the command may not have made the
        // file: that is an empty stream.
        let digest = match hasher.hash(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => function.empty_digest(),
            hashed => hashed.with_context(|| format!("hashing {}", path.display()))?,
        };
        blobs.add_file(digest, path);
        *field = Some(digest.to_proto());
    }
    Ok((result, blobs))
}

fn collect_one(
    root: &Path,
    spec: &CommandSpec,
    output: &OutputRequest,
    hasher: &mut FileHasher,
    blobs: &mut Blobs,
    result: &mut ActionResult,
) -> Result<()> {
    let Some(meta) = lookup_no_follow(root, &output.root_relative).context("inspecting")? else {
        return Ok(());
    };
    let path = root.join(&output.root_relative);
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(&path).context("reading the symlink")?;
        let target = target.into_os_string().into_string().map_err(|t| {
            Error::failed_precondition(format!("the symlink points to {t:?}, which is not UTF-8"))
        })?;
        let symlink = OutputSymlink {
            path: output.path.clone(),
            target,
            ..Default::default()
        };
        #[allow(deprecated)]
        match output.kind {
            OutputKind::Any => result.output_symlinks.push(symlink),
            OutputKind::File => result.output_file_symlinks.push(symlink),
            OutputKind::Directory => result.output_directory_symlinks.push(symlink),
        }
    } else if kind.is_file() {
        if output.kind == OutputKind::Directory {
            return Err(Error::failed_precondition(
                "an output directory was asked for, but the command made a file",
            ));
        }
        let digest = hasher.hash(&path).context("hashing")?;
        blobs.add_file(digest, &path);
        result.output_files.push(OutputFile {
            path: output.path.clone(),
            digest: Some(digest.to_proto()),
            is_executable: meta.permissions().mode() & 0o100 != 0,
            ..Default::default()
        });
    } else if kind.is_dir() {
        if output.kind == OutputKind::File {
            return Err(Error::failed_precondition(
                "an output file was asked for, but the command made a directory",
            ));
        }
        let built = build_tree(&path, hasher, blobs)?;
        let tree_digest = spec.wants_trees.then(|| {
            let tree_bytes = bytes::Bytes::from(prost::Message::encode_to_vec(&built.tree));
            let tree_digest = hasher.digest_of(&tree_bytes);
            blobs.add_bytes(tree_digest, tree_bytes);
            tree_digest.to_proto()
        });
        let root_directory_digest = if spec.wants_directory_digests {
            for (digest, bytes) in built.directories {
                blobs.add_bytes(digest, bytes);
            }
            Some(built.root_digest.to_proto())
        } else {
            None
        };
        result.output_directories.push(OutputDirectory {
            path: output.path.clone(),
            tree_digest,
            is_topologically_sorted: false,
            root_directory_digest,
        });
    } else {
        tracing::warn!(path = %path.display(), "leaving out an output that is a special file");
    }
    Ok(())
}
