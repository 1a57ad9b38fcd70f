//! Temp files of unfinished writes: the bytes they hold count against the
//! disk store's budget, and those of uploads suspended for resumption
//! (ADR 0002) are given up, oldest first, when they crowd the store.
//!
//! A suspended upload's temp file is worth less than a stored blob: its
//! client can send it again, while a blob may be an input an action cache
//! entry promises. So eviction takes unprotected blobs first and suspended
//! files only when that was not enough (every blob protected by the
//! retention time), and suspended files may hold at most a quarter of the
//! budget, or an abandoning client could push every blob out. The newest
//! suspended upload is always kept against that cap, so one large upload
//! can still resume. An upload whose file was given up reports a committed
//! size of 0, so its client starts it again from the beginning.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use reapi_core::Digest;

use super::content_file::ContentFile;
use super::layout;

/// The share of the budget suspended uploads may hold: 1 / this.
const SUSPENDED_SHARE: u64 = 4;

/// The space of one store's temp files.
pub(super) struct TempSpace {
    /// Bytes written to temp files that are neither installed nor deleted.
    bytes: AtomicU64,
    /// The most suspended uploads may hold (but see the module docs).
    max_suspended: u64,
    suspended: Mutex<Suspended>,
}

/// Suspended uploads in the order they were suspended.
#[derive(Default)]
struct Suspended {
    next: u64,
    files: BTreeMap<u64, (Weak<TempFile>, u64)>,
    bytes: u64,
}

impl Suspended {
    fn remove(&mut self, seq: u64) {
        if let Some((_, bytes)) = self.files.remove(&seq) {
            self.bytes -= bytes;
        }
    }

    fn pop_oldest(&mut self) -> Option<Weak<TempFile>> {
        let (_, (file, bytes)) = self.files.pop_first()?;
        self.bytes -= bytes;
        Some(file)
    }
}

impl TempSpace {
    pub(super) fn new(max_bytes: u64) -> Arc<TempSpace> {
        Arc::new(TempSpace {
            bytes: AtomicU64::new(0),
            max_suspended: max_bytes / SUSPENDED_SHARE,
            suspended: Mutex::default(),
        })
    }

    /// Bytes held by temp files now.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes held by suspended uploads now.
    pub(super) fn suspended_bytes(&self) -> u64 {
        self.suspended.lock().bytes
    }

    /// Gives up suspended uploads, oldest first, until `need` bytes are
    /// freed or none is left. Returns the bytes freed.
    pub(super) fn give_up_oldest(&self, need: u64) -> u64 {
        let mut freed = 0;
        while freed < need {
            let Some(file) = self.suspended.lock().pop_oldest() else {
                break;
            };
            freed += file.upgrade().map_or(0, |file| file.give_up());
        }
        freed
    }

    /// Gives up the oldest suspended uploads while they hold more than
    /// their share, keeping the newest.
    fn enforce_share(&self) {
        loop {
            let oldest = {
                let mut suspended = self.suspended.lock();
                if suspended.bytes <= self.max_suspended || suspended.files.len() <= 1 {
                    return;
                }
                suspended.pop_oldest()
            };
            if let Some(bytes) = oldest.and_then(|file| file.upgrade()).map(|f| f.give_up()) {
                tracing::info!(
                    bytes,
                    max_suspended_bytes = self.max_suspended,
                    "unfinished uploads held over a quarter of the disk store; \
                     dropped the data of the oldest (its client starts it again)"
                );
            }
        }
    }
}

/// A temp file path that is removed when dropped, unless disarmed by a
/// successful rename. Counts the bytes written to it in its store's
/// [`TempSpace`] while it exists.
pub(super) struct TempFile {
    path: PathBuf,
    space: Arc<TempSpace>,
    state: Mutex<TempState>,
}

#[derive(Default)]
struct TempState {
    bytes: u64,
    disarmed: bool,
    /// Set while suspended: the position in [`Suspended`], and the open
    /// file, kept here so that giving it up closes it too.
    suspended: Option<(u64, Option<ContentFile>)>,
    given_up: bool,
}

/// What a suspended upload finds when it resumes.
pub(super) enum Resumed {
    /// Its file, as it was suspended.
    File(Option<ContentFile>),
    /// Its file was given up for room: the upload starts again.
    GivenUp,
}

impl TempFile {
    /// A fresh name in `tmp/{hh}/`: temp files are spread over the shard
    /// directories like content files, so concurrent writes do not all take
    /// the lock of one directory to create and rename.
    pub(super) fn new(tmp_dir: &Path, digest: &Digest, space: &Arc<TempSpace>) -> Self {
        let mut path = tmp_dir.join(layout::shard_dir_name(digest));
        path.push(uuid::Uuid::new_v4().simple().to_string());
        TempFile {
            path,
            space: Arc::clone(space),
            state: Mutex::default(),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written to the file and counted.
    pub(super) fn bytes(&self) -> u64 {
        self.state.lock().bytes
    }

    /// Counts `bytes` more written to the file.
    pub(super) fn grew(&self, bytes: u64) {
        self.state.lock().bytes += bytes;
        self.space.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Keeps the file (still open, or `None` if nothing was written) for a
    /// suspended upload, where its store may give it up; then enforces the
    /// suspended uploads' share of the budget.
    pub(super) fn suspend(self: &Arc<Self>, file: Option<ContentFile>) {
        {
            let mut state = self.state.lock();
            let mut suspended = self.space.suspended.lock();
            let seq = suspended.next;
            suspended.next += 1;
            suspended
                .files
                .insert(seq, (Arc::downgrade(self), state.bytes));
            suspended.bytes += state.bytes;
            state.suspended = Some((seq, file));
        }
        self.space.enforce_share();
    }

    /// Ends a suspension: the file back, unless it was given up.
    pub(super) fn resume(&self) -> Resumed {
        let mut state = self.state.lock();
        if state.given_up {
            return Resumed::GivenUp;
        }
        match state.suspended.take() {
            Some((seq, file)) => {
                self.space.suspended.lock().remove(seq);
                Resumed::File(file)
            }
            None => Resumed::File(None),
        }
    }

    /// Whether the file was given up while suspended.
    pub(super) fn given_up(&self) -> bool {
        self.state.lock().given_up
    }

    /// Deletes the file of a suspended upload and stops counting its bytes;
    /// returns them. Does nothing to an upload that resumed meanwhile.
    fn give_up(&self) -> u64 {
        let mut state = self.state.lock();
        let Some((_, file)) = state.suspended.take() else {
            return 0;
        };
        drop(file);
        remove(&self.path);
        state.given_up = true;
        let bytes = std::mem::take(&mut state.bytes);
        self.space.bytes.fetch_sub(bytes, Ordering::Relaxed);
        bytes
    }

    /// The file was renamed into place: keep it. Its bytes now count as
    /// stored.
    pub(super) fn disarm(self) {
        self.state.lock().disarmed = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        if let Some((seq, file)) = state.suspended.take() {
            drop(file);
            self.space.suspended.lock().remove(seq);
        }
        self.space.bytes.fetch_sub(state.bytes, Ordering::Relaxed);
        if !state.disarmed {
            remove(&self.path);
        }
    }
}

fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), "removing temp file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::new(reapi_core::DigestFunction::Sha256, [n; 32], 100)
    }

    fn suspended(dir: &Path, space: &Arc<TempSpace>, n: u8, bytes: u64) -> Arc<TempFile> {
        let temp = Arc::new(TempFile::new(dir, &digest(n), space));
        fs::create_dir_all(temp.path().parent().unwrap()).unwrap();
        fs::write(temp.path(), vec![n; bytes as usize]).unwrap();
        temp.grew(bytes);
        temp.suspend(None);
        temp
    }

    #[test]
    fn bytes_are_counted_until_the_file_goes() {
        let dir = tempfile::tempdir().unwrap();
        let space = TempSpace::new(1000);
        let kept = TempFile::new(dir.path(), &digest(1), &space);
        let dropped = TempFile::new(dir.path(), &digest(2), &space);
        kept.grew(30);
        dropped.grew(40);
        assert_eq!(space.bytes(), 70);
        drop(dropped);
        assert_eq!(space.bytes(), 30);
        kept.disarm();
        assert_eq!(space.bytes(), 0);
    }

    #[test]
    fn oldest_suspended_are_given_up_first() {
        let dir = tempfile::tempdir().unwrap();
        let space = TempSpace::new(1000);
        let old = suspended(dir.path(), &space, 1, 100);
        let new = suspended(dir.path(), &space, 2, 100);
        assert_eq!(space.suspended_bytes(), 200);
        assert_eq!(space.give_up_oldest(50), 100);
        assert!(old.given_up() && !old.path().exists());
        assert!(!new.given_up() && new.path().exists());
        assert!(matches!(old.resume(), Resumed::GivenUp));
        assert!(matches!(new.resume(), Resumed::File(None)));
        assert_eq!((space.bytes(), space.suspended_bytes()), (100, 0));
        // Resumed, it is no longer the store's to give up.
        assert_eq!(space.give_up_oldest(50), 0);
    }

    #[test]
    fn suspended_uploads_keep_to_a_quarter_of_the_budget_but_the_newest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let space = TempSpace::new(1000);
        let first = suspended(dir.path(), &space, 1, 200);
        let second = suspended(dir.path(), &space, 2, 200);
        assert!(first.given_up() && !second.given_up());
        assert_eq!(space.suspended_bytes(), 200);
        let huge = suspended(dir.path(), &space, 3, 600);
        assert!(second.given_up() && !huge.given_up());
        assert_eq!((space.bytes(), space.suspended_bytes()), (600, 600));
        drop(huge);
        assert_eq!((space.bytes(), space.suspended_bytes()), (0, 0));
    }
}
