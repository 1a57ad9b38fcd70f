//! Everything checked before an action is queued: the Action and Command
//! are in the CAS and decode, the command is well-formed, every input blob
//! is present and the input tree is valid.
//!
//! Missing blobs are reported together as one FAILED_PRECONDITION with a
//! `PreconditionFailure`, so the client uploads them all and retries once.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use reapi_core::input_tree::{
    normalize_working_directory, resolve_output_path, validate_directory,
};
use reapi_core::proto::remote_execution::{Action, Command, Directory};
use reapi_core::proto::time;
use reapi_core::{BlobStore, Digest, Error, ErrorExt, Result};
use tonic::Code;

use crate::config::SchedulerConfig;
use crate::directory_cache::DirectoryCache;

/// Fetches and decodes a message; NOT_FOUND becomes a missing-blob
/// precondition failure naming it.
async fn fetch<M: Message + Default>(
    cas: &dyn BlobStore,
    instance: &str,
    digest: &Digest,
    what: &str,
) -> Result<M> {
    let bytes = match cas.get(instance, digest).await {
        Ok(bytes) => bytes,
        Err(e) if e.code() == Code::NotFound => return Err(Error::missing_blobs(&[*digest])),
        Err(e) => return Err(e.context(format!("reading {what} {digest}"))),
    };
    M::decode(bytes)
        .map_err(|e| Error::invalid_argument(format!("{what} {digest} does not decode: {e}")))
}

pub async fn load_action(
    cas: &dyn BlobStore,
    instance: &str,
    action_digest: &Digest,
) -> Result<(Action, Command)> {
    let action: Action = fetch(cas, instance, action_digest, "Action").await?;
    let command_digest = Digest::from_proto_field(
        action_digest.function(),
        action.command_digest.as_ref(),
        "Action.command_digest",
    )?;
    let command: Command = fetch(cas, instance, &command_digest, "Command").await?;
    validate_command(&command)?;
    Ok((action, command))
}

/// The command has something to run and its paths stay inside the input root.
pub fn validate_command(command: &Command) -> Result<()> {
    match command.arguments.first() {
        None => return Err(Error::invalid_argument("Command has no arguments")),
        Some(first) if first.is_empty() => {
            return Err(Error::invalid_argument("Command.arguments[0] is empty"))
        }
        Some(_) => {}
    }
    normalize_working_directory(&command.working_directory).context("Command.working_directory")?;
    #[allow(deprecated)] // Bazel before 6.2 sends only the legacy fields.
    let outputs = command
        .output_paths
        .iter()
        .chain(&command.output_files)
        .chain(&command.output_directories);
    for path in outputs {
        resolve_output_path(&command.working_directory, path)
            .with_context(|| format!("output path {path:?}"))?;
    }
    for var in &command.environment_variables {
        if var.name.is_empty()
            || var.name.contains('=')
            || var.name.contains('\0')
            || var.value.contains('\0')
        {
            return Err(Error::invalid_argument(format!(
                "environment variable {:?} is not a valid name=value pair",
                var.name
            )));
        }
    }
    Ok(())
}

/// The action's timeout: its own, or the default, capped by the maximum.
pub fn effective_timeout(action: &Action, config: &SchedulerConfig) -> Result<Duration> {
    let requested = match &action.timeout {
        None => None,
        Some(d) => Some(time::duration(d).ok_or_else(|| {
            Error::invalid_argument(format!(
                "Action.timeout {}s {}ns is negative or malformed",
                d.seconds, d.nanos
            ))
        })?),
    };
    Ok(match requested {
        None => config.default_timeout,
        Some(d) if d.is_zero() => config.default_timeout,
        Some(d) => d.min(config.max_timeout),
    })
}

/// Walks the input tree: validates every directory and reports every
/// missing blob (directories and files) at once. Directories already in
/// `cache` are not read again, only asked about (with the files) in one
/// `find_missing`, which also refreshes the age of the inputs, so they
/// survive until the action runs.
pub async fn check_inputs(
    cas: &dyn BlobStore,
    cache: &DirectoryCache,
    instance: &str,
    root: &Digest,
    allow_absolute_symlinks: bool,
) -> Result<()> {
    let mut missing = Vec::new();
    // Files, and the cached directories whose presence is still to check.
    let mut ask = Vec::new();
    let mut seen = HashSet::from([*root]);
    let mut queue = VecDeque::from([(*root, String::new())]);
    while let Some((digest, path)) = queue.pop_front() {
        let dir = match cache.get(&digest) {
            Some(dir) => {
                ask.push(digest);
                dir
            }
            None => {
                let bytes = match cas.get(instance, &digest).await {
                    Ok(bytes) => bytes,
                    Err(e) if e.code() == Code::NotFound => {
                        missing.push(digest);
                        continue;
                    }
                    Err(e) => return Err(e.context(format!("reading input directory {digest}"))),
                };
                let dir = Directory::decode(bytes).map_err(|e| {
                    Error::invalid_argument(format!(
                        "input directory {path:?} ({digest}) does not decode: {e}"
                    ))
                })?;
                validate_directory(&dir, &path, allow_absolute_symlinks)?;
                let dir = Arc::new(dir);
                cache.insert(digest, dir.clone());
                dir
            }
        };
        for file in &dir.files {
            ask.push(Digest::from_proto_field(
                digest.function(),
                file.digest.as_ref(),
                "file digest",
            )?);
        }
        for sub in &dir.directories {
            let sub_digest = Digest::from_proto_field(
                digest.function(),
                sub.digest.as_ref(),
                "directory digest",
            )?;
            if seen.insert(sub_digest) {
                let sub_path = if path.is_empty() {
                    sub.name.clone()
                } else {
                    format!("{path}/{}", sub.name)
                };
                queue.push_back((sub_digest, sub_path));
            }
        }
    }
    ask.sort_unstable();
    ask.dedup();
    missing.extend(
        cas.find_missing(instance, &ask)
            .await
            .context("checking input files")?,
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::missing_blobs(&missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reapi_cas::store::memory::MemoryStore;
    use reapi_core::proto::remote_execution::{DirectoryNode, FileNode};

    fn encoded(dir: &Directory) -> (Digest, bytes::Bytes) {
        let bytes = bytes::Bytes::from(dir.encode_to_vec());
        (Digest::of_bytes(&bytes), bytes)
    }

    /// A directory known to the cache is still asked about: if the store
    /// lost it, the client is told to upload it again.
    #[tokio::test]
    async fn a_cached_directory_the_store_lost_is_reported_missing() {
        let file = bytes::Bytes::from_static(b"int main;");
        let file_digest = Digest::of_bytes(&file);
        let child = Directory {
            files: vec![FileNode {
                name: "main.c".into(),
                digest: Some(file_digest.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (child_digest, child_bytes) = encoded(&child);
        let root = Directory {
            directories: vec![DirectoryNode {
                name: "src".into(),
                digest: Some(child_digest.to_proto()),
            }],
            ..Default::default()
        };
        let (root_digest, root_bytes) = encoded(&root);

        let full = MemoryStore::new(1 << 20);
        for (d, b) in [
            (root_digest, root_bytes.clone()),
            (child_digest, child_bytes),
            (file_digest, file),
        ] {
            full.put("", &d, b).await.unwrap();
        }
        let cache = DirectoryCache::new(16);
        check_inputs(&full, &cache, "", &root_digest, false)
            .await
            .unwrap();
        assert_eq!(cache.len(), 2);

        // Only the root is left: the cached child and its file are missing.
        let partial = MemoryStore::new(1 << 20);
        partial.put("", &root_digest, root_bytes).await.unwrap();
        let err = check_inputs(&partial, &cache, "", &root_digest, false)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let message = format!("{err:?}");
        assert!(
            message.contains(&child_digest.hash_hex()[..16]),
            "{message}"
        );
        assert!(message.contains(&file_digest.hash_hex()[..16]), "{message}");
    }
}
