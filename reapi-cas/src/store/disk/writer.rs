//! Writing blobs: temp file, verify, sync, rename into place.
//!
//! A streamed write buffers chunks up to [`FLUSH_BYTES`]. Each batch goes to
//! a hashing task (which queues up to [`HASH_QUEUE`] batches, so the one
//! strictly sequential step, SHA-256, never waits for the network) and to a
//! blocking-pool task that writes it (one batch in flight), both running
//! while the next batch arrives.
//! Blobs of [`DIRECT_MIN_BYTES`] or more are written around the page cache
//! ([`ContentFile`]). The temp file is created on the first flush, so a
//! small blob costs one blocking-pool task in all. A writer dropped without
//! commit removes its temp file. The bytes in temp files count against the
//! budget as they are written (see `temp_space.rs`), and a write that takes
//! the store over it evicts then, not only at commit.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use reapi_core::blob_store::BlobWriter;
use reapi_core::{Digest, DigestHasher, Error, ErrorExt, Result};
use tokio::task::JoinHandle;

use super::content_file::ContentFile;
use super::index::{Inserted, Key};
use super::temp_space::{Resumed, TempFile};
use super::{blocking, Inner};

/// Bytes buffered by a streamed write before they go to the file.
const FLUSH_BYTES: usize = 1 << 20;

/// Batches queued for hashing per write: bounds the memory of an upload
/// whose hashing falls behind, at `HASH_QUEUE × FLUSH_BYTES`.
const HASH_QUEUE: usize = 4;

/// Streamed blobs at least this large bypass the page cache.
const DIRECT_MIN_BYTES: u64 = 1 << 20;

/// Mode of content files: read-only for everyone, as they are hardlinked
/// into action input trees.
const CONTENT_MODE: u32 = 0o444;

/// The temp file, created on the first write.
struct FileSink {
    file: Option<ContentFile>,
    direct: bool,
}

impl FileSink {
    fn new(digest: &Digest) -> Self {
        FileSink {
            file: None,
            direct: digest.size() >= DIRECT_MIN_BYTES,
        }
    }

    fn write(&mut self, temp: &TempFile, digest: &Digest, chunks: &[Bytes]) -> Result<()> {
        let context = || format!("writing blob {digest} to {}", temp.path().display());
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = create_temp(temp.path(), self.direct).with_context(context)?;
                self.file.insert(file)
            }
        };
        // Counted once per batch, not per chunk: each count takes the temp
        // file's lock. A failed batch fails the write, which deletes the file.
        let mut written = 0u64;
        for chunk in chunks {
            file.write(chunk).with_context(context)?;
            written += chunk.len() as u64;
        }
        temp.grew(written);
        Ok(())
    }
}

fn hash_chunks(mut hasher: DigestHasher, chunks: &[Bytes]) -> DigestHasher {
    for chunk in chunks {
        hasher.update(chunk);
    }
    hasher
}

/// A blocking-pool task hashing the batches it is sent, in order.
struct HashPipeline {
    batches: tokio::sync::mpsc::Sender<Arc<Vec<Bytes>>>,
    hashed: JoinHandle<DigestHasher>,
}

impl HashPipeline {
    fn start(mut hasher: DigestHasher) -> HashPipeline {
        let (batches, mut receiver) = tokio::sync::mpsc::channel::<Arc<Vec<Bytes>>>(HASH_QUEUE);
        let hashed = tokio::task::spawn_blocking(move || {
            while let Some(batch) = receiver.blocking_recv() {
                hasher = hash_chunks(hasher, &batch);
            }
            hasher
        });
        HashPipeline { batches, hashed }
    }
}

/// Creates a temp file, read-only from the start (the open descriptor can
/// still write), and its shard directory if needed.
fn create_temp(path: &Path, direct: bool) -> io::Result<ContentFile> {
    match ContentFile::create(path, CONTENT_MODE, direct) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                match fs::create_dir(dir) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
            }
            ContentFile::create(path, CONTENT_MODE, direct)
        }
        other => other,
    }
}

/// Makes a fully written temp file durable and read-only.
fn seal(file: &File, temp: &Path, digest: &Digest) -> Result<()> {
    let context = || format!("syncing blob {digest} at {}", temp.display());
    file.set_permissions(Permissions::from_mode(CONTENT_MODE))
        .with_context(context)?;
    file.sync_data().with_context(context)
}

/// Syncs a directory, making renames and unlinks in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Inner {
    /// The whole-buffer write: verify, write, sync, install.
    pub(super) fn put_blocking(&self, instance: &str, digest: &Digest, data: &[u8]) -> Result<()> {
        digest
            .verify_content(data)
            .with_context(|| format!("storing blob in instance {instance:?}"))?;
        if digest.is_empty_blob() {
            return Ok(());
        }
        self.check_storable(instance, digest)?;
        if self.present(instance, digest).is_some() {
            return Ok(());
        }
        self.make_room(digest, digest.size())?;
        let temp = self.temp_file(digest);
        let context = || format!("writing blob {digest} to {}", temp.path().display());
        let mut file = create_temp(temp.path(), false).with_context(context)?;
        file.write(data).with_context(context)?;
        temp.grew(data.len() as u64);
        seal(file.finish().with_context(context)?, temp.path(), digest)?;
        drop(file);
        self.install(instance, digest, temp)
    }

    fn temp_file(&self, digest: &Digest) -> TempFile {
        TempFile::new(&self.tmp_dir, digest, &self.temp_space)
    }

    /// Renames a verified, synced temp file into place and indexes it, then
    /// evicts if the budget is exceeded (never this blob). When the blob is
    /// already there, or is refused for want of room (see
    /// [`Inner::make_room`]), the temp file is dropped instead.
    pub(super) fn install(&self, instance: &str, digest: &Digest, temp: TempFile) -> Result<()> {
        let id = self.instances.intern(instance)?;
        let key = Key::new(id, digest).ok_or_else(|| {
            Error::resource_exhausted(format!("blob {digest} is too large for the disk store"))
        })?;
        let path = self.path_of(&key);
        let tick = self.index.tick();
        // The temp file's bytes are counted already.
        let uncounted = digest.size().saturating_sub(temp.bytes());
        if self.retention.is_some() && !self.fits(uncounted) {
            if self.index.touch(&key, tick) {
                return Ok(());
            }
            if let Err(err) = self.make_room(digest, uncounted) {
                // A concurrent write may have stored it meanwhile.
                return if self.index.touch(&key, tick) {
                    Ok(())
                } else {
                    Err(err)
                };
            }
        }
        let inserted = self
            .index
            .insert_with(&key, tick, || rename_into_place(temp.path(), &path))
            .with_context(|| format!("storing blob {digest} in instance {instance:?}"))?;
        if inserted == Inserted::AlreadyPresent {
            return Ok(());
        }
        temp.disarm();
        let synced = path
            .parent()
            .map_or(Ok(()), sync_dir)
            .with_context(|| format!("syncing the directory of {}", path.display()));
        self.evict_if_needed();
        self.index.unpin(&key);
        synced
    }
}

/// Renames a temp file to its content path, creating the instance and shard
/// directories on first use.
fn rename_into_place(temp: &Path, path: &Path) -> Result<()> {
    let context = || format!("moving {} to {}", temp.display(), path.display());
    match fs::rename(temp, path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(shard_dir) = path.parent() {
                create_dirs(shard_dir)
                    .with_context(|| format!("creating the directory {}", shard_dir.display()))?;
            }
            fs::rename(temp, path).with_context(context)
        }
        other => other.with_context(context),
    }
}

/// Creates a shard directory (and its instance directory), syncing the
/// parents whose entries changed.
fn create_dirs(shard_dir: &Path) -> io::Result<()> {
    fs::create_dir_all(shard_dir)?;
    let instance_dir = shard_dir.parent();
    for dir in [instance_dir, instance_dir.and_then(Path::parent)]
        .into_iter()
        .flatten()
    {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A streamed write; see the module documentation.
pub(super) struct DiskWriter {
    inner: Arc<Inner>,
    instance: String,
    digest: Digest,
    received: u64,
    buffered: Vec<Bytes>,
    buffered_len: usize,
    /// `None` for the empty blob, which is verified but not stored.
    temp: Option<Arc<TempFile>>,
    /// Suspended for resumption: the sink's file waits in `temp`.
    suspended: bool,
    /// Exactly one of `hasher` and `hashing` is set: the hasher moves into
    /// a pipeline on the first flush.
    hasher: Option<DigestHasher>,
    hashing: Option<HashPipeline>,
    /// Exactly one of `sink` and `writing` is set until a failure.
    sink: Option<FileSink>,
    writing: Option<JoinHandle<(FileSink, Result<()>)>>,
    failed: Option<Error>,
}

impl DiskWriter {
    pub(super) fn new(inner: Arc<Inner>, instance: &str, digest: Digest) -> Self {
        let temp = (!digest.is_empty_blob()).then(|| Arc::new(inner.temp_file(&digest)));
        DiskWriter {
            inner,
            instance: instance.to_owned(),
            digest,
            received: 0,
            buffered: Vec::new(),
            buffered_len: 0,
            temp,
            suspended: false,
            hasher: Some(digest.function().hasher()),
            hashing: None,
            sink: Some(FileSink::new(&digest)),
            writing: None,
            failed: None,
        }
    }

    fn fail(&mut self, err: Error) -> Error {
        self.failed = Some(err.clone());
        err
    }

    fn task_failed(&self, e: tokio::task::JoinError) -> Error {
        Error::internal(format!("writing blob {}: task failed: {e}", self.digest))
    }

    fn spent(&self) -> Error {
        Error::internal(format!("writing blob {}: writer is spent", self.digest))
    }

    /// Waits for every batch to be hashed and takes the hasher back.
    async fn take_hasher(&mut self) -> Result<DigestHasher> {
        if let Some(HashPipeline { batches, hashed }) = self.hashing.take() {
            drop(batches);
            return hashed.await.map_err(|e| self.task_failed(e));
        }
        self.hasher.take().ok_or_else(|| self.spent())
    }

    /// Queues `batch` for hashing, waiting while the queue is full.
    async fn hash(&mut self, batch: Arc<Vec<Bytes>>) -> Result<()> {
        if self.hashing.is_none() {
            let hasher = self.hasher.take().ok_or_else(|| self.spent())?;
            self.hashing = Some(HashPipeline::start(hasher));
        }
        let Some(pipeline) = &self.hashing else {
            return Err(self.spent());
        };
        if pipeline.batches.send(batch).await.is_err() {
            // The task ended early: it panicked. Its error says why.
            return match self.take_hasher().await {
                Err(e) => Err(e),
                Ok(_) => Err(self.spent()),
            };
        }
        Ok(())
    }

    /// Waits for the batch being written and takes the sink back.
    async fn take_sink(&mut self) -> Result<FileSink> {
        if let Some(handle) = self.writing.take() {
            let (sink, result) = handle.await.map_err(|e| self.task_failed(e))?;
            result?;
            return Ok(sink);
        }
        self.sink.take().ok_or_else(|| self.spent())
    }

    /// Starts hashing and writing the buffered chunks.
    async fn flush(&mut self) -> Result<()> {
        let chunks = Arc::new(std::mem::take(&mut self.buffered));
        self.buffered_len = 0;
        self.hash(Arc::clone(&chunks)).await?;
        let mut sink = self.take_sink().await?;
        let Some(temp) = self.temp.clone() else {
            self.sink = Some(sink);
            return Ok(());
        };
        let digest = self.digest;
        let inner = Arc::clone(&self.inner);
        let instance = self.instance.clone();
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let result = sink
                .write(&temp, &digest, &chunks)
                .and_then(|()| inner.room_for_temp_files(&instance, &digest));
            (sink, result)
        }));
        Ok(())
    }

    /// Takes the file back from a suspension, or, if the store gave it up
    /// for room meanwhile, starts the upload again from nothing (its
    /// committed size said 0).
    fn end_suspension(&mut self) {
        if !std::mem::take(&mut self.suspended) {
            return;
        }
        let Some(temp) = &self.temp else {
            return;
        };
        match temp.resume() {
            Resumed::File(file) => {
                if let Some(sink) = &mut self.sink {
                    sink.file = file;
                }
            }
            Resumed::GivenUp => {
                tracing::debug!(blob = %self.digest, "resumed upload starts again: its data were dropped for room");
                self.received = 0;
                self.hasher = Some(self.digest.function().hasher());
                self.sink = Some(FileSink::new(&self.digest));
                self.temp = Some(Arc::new(self.inner.temp_file(&self.digest)));
            }
        }
    }
}

#[async_trait]
impl BlobWriter for DiskWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.end_suspension();
        let len = chunk.len() as u64;
        if self.received.saturating_add(len) > self.digest.size() {
            return Err(Error::invalid_argument(format!(
                "blob {}: a write of {len} bytes at offset {} runs past its size",
                self.digest, self.received
            )));
        }
        if chunk.is_empty() {
            return Ok(());
        }
        self.received += len;
        self.buffered_len += chunk.len();
        self.buffered.push(chunk);
        if self.buffered_len >= FLUSH_BYTES {
            if let Err(err) = self.flush().await {
                return Err(self.fail(err));
            }
        }
        Ok(())
    }

    fn committed_size(&self) -> u64 {
        if self.suspended && self.temp.as_ref().is_some_and(|t| t.given_up()) {
            return 0;
        }
        self.received
    }

    async fn suspend(&mut self) -> Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.suspended {
            return Ok(());
        }
        if self.buffered_len > 0 {
            if let Err(err) = self.flush().await {
                return Err(self.fail(err));
            }
        }
        // The batch in flight lands in the file and the hashing catches
        // up: nothing holds a chunk any more. A later write starts them
        // again.
        let sink = match self.take_sink().await {
            Ok(mut sink) => {
                blocking(move || {
                    if let Some(file) = &mut sink.file {
                        file.suspend()
                            .map_err(|e| Error::io("suspending an upload's temp file", e))?;
                    }
                    Ok(sink)
                })
                .await
            }
            Err(err) => Err(err),
        };
        let hasher = self.take_hasher().await;
        match (sink, hasher) {
            (Ok(mut sink), Ok(hasher)) => {
                if let Some(temp) = &self.temp {
                    temp.suspend(sink.file.take());
                }
                self.sink = Some(sink);
                self.hasher = Some(hasher);
                self.buffered = Vec::new();
                self.suspended = true;
                Ok(())
            }
            (Err(err), _) | (_, Err(err)) => Err(self.fail(err)),
        }
    }

    fn resume(&mut self) {
        self.end_suspension();
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        if let Some(err) = self.failed.take() {
            return Err(err);
        }
        self.end_suspension();
        let digest = self.digest;
        // Wait for the batches in flight first, so that on any failure the
        // temp file is gone when this returns.
        let hasher = self.take_hasher().await;
        let mut sink = self.take_sink().await?;
        let hasher = hasher?;
        if self.received != digest.size() {
            return Err(Error::invalid_argument(format!(
                "blob {digest}: received {} bytes, the digest says {}",
                self.received,
                digest.size()
            )));
        }
        let chunks = std::mem::take(&mut self.buffered);
        let Some(temp) = self.temp.take() else {
            // The empty blob: verify only.
            return hasher.verify(&digest);
        };
        let inner = Arc::clone(&self.inner);
        let instance = std::mem::take(&mut self.instance);
        blocking(move || {
            let hasher = hash_chunks(hasher, &chunks);
            sink.write(&temp, &digest, &chunks)?;
            hasher
                .verify(&digest)
                .with_context(|| format!("storing blob in instance {instance:?}"))?;
            let mut file = sink.file.ok_or_else(|| {
                Error::internal(format!("blob {digest}: no temp file was written"))
            })?;
            let context = || format!("writing blob {digest} to {}", temp.path().display());
            seal(file.finish().with_context(context)?, temp.path(), &digest)?;
            drop(file);
            // Nothing else holds the temp file once the batches are done.
            let temp = Arc::try_unwrap(temp)
                .map_err(|_| Error::internal(format!("blob {digest}: temp file still in use")))?;
            inner.install(&instance, &digest, temp)
        })
        .await
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        // Remove the temp file now, even when a batch is still being
        // written: that batch then writes to the unlinked file, or, if it
        // had not yet created the file, its handle on the TempFile (the
        // last one) removes it when the batch ends.
        if let Some(temp) = self.temp.take() {
            if let Err(e) = fs::remove_file(temp.path()) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %temp.path().display(), "removing temp file: {e}");
                }
            }
        }
    }
}
