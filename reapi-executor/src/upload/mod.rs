//! Output upload: [`collect`] describes the outputs (hashing files, building
//! `Tree`s) on a blocking thread, then [`send`] uploads what the CAS lacks.
//!
//! stdout and stderr are uploaded like outputs and always get a digest,
//! the empty blob's when they are empty (it is always present, so it costs
//! no upload). Inlining them into `stdout_raw` is the scheduler's concern:
//! it has the request's flags.

pub mod collect;
pub mod hash;
pub mod send;
pub mod tree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use reapi_core::proto::remote_execution::ActionResult;
use reapi_core::{BlobStore, Digest, DigestFunction, Error, Result};

use crate::command::CommandSpec;

/// Where a blob's bytes are.
#[derive(Clone, Debug)]
pub enum BlobSource {
    File(PathBuf),
    Bytes(Bytes),
}

/// The blobs an action result names, each with one source.
#[derive(Debug, Default)]
pub struct Blobs {
    map: HashMap<Digest, BlobSource>,
}

impl Blobs {
    pub fn add_file(&mut self, digest: Digest, path: &Path) {
        if !digest.is_empty_blob() {
            self.map
                .entry(digest)
                .or_insert_with(|| BlobSource::File(path.to_owned()));
        }
    }

    pub fn add_bytes(&mut self, digest: Digest, bytes: Bytes) {
        if !digest.is_empty_blob() {
            self.map.entry(digest).or_insert(BlobSource::Bytes(bytes));
        }
    }

    pub fn digests(&self) -> impl Iterator<Item = Digest> + '_ {
        self.map.keys().copied()
    }

    pub fn source(&self, digest: &Digest) -> Option<&BlobSource> {
        self.map.get(digest)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Collects and uploads the outputs of a finished command whose input root
/// is `root`; returns the result's output, stdout and stderr fields. Their
/// digests are made with `function`, the action digest's.
pub async fn upload_outputs(
    function: DigestFunction,
    cas: &dyn BlobStore,
    instance: &str,
    root: &Path,
    spec: &Arc<CommandSpec>,
    stdout: &Path,
    stderr: &Path,
) -> Result<ActionResult> {
    let (root, spec, stdout, stderr) = (
        root.to_owned(),
        Arc::clone(spec),
        stdout.to_owned(),
        stderr.to_owned(),
    );
    let (result, blobs) = tokio::task::spawn_blocking(move || {
        collect::collect(function, &root, &spec, &stdout, &stderr)
    })
    .await
    .map_err(|e| Error::internal(format!("collecting outputs: {e}")))??;
    send::upload_missing(cas, instance, &blobs).await?;
    Ok(result)
}
