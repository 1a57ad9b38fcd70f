//! Digests of files on disk, read in chunks (never whole).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use reapi_core::{Digest, DigestFunction};

const BUFFER_BYTES: usize = 256 * 1024;

/// Hashes files, and the messages that describe them, with one digest
/// function (the action's) and one reusable buffer.
pub struct FileHasher {
    function: DigestFunction,
    buf: Vec<u8>,
}

impl FileHasher {
    pub fn new(function: DigestFunction) -> Self {
        FileHasher {
            function,
            buf: vec![0; BUFFER_BYTES],
        }
    }

    pub fn function(&self) -> DigestFunction {
        self.function
    }

    /// The digest of bytes in memory (an encoded `Directory` or `Tree`).
    pub fn digest_of(&self, data: &[u8]) -> Digest {
        self.function.digest_of(data)
    }

    /// The digest of the regular file at `path`; a symlink there is not
    /// followed (ELOOP), and a FIFO does not block the open.
    pub fn hash(&mut self, path: &Path) -> io::Result<Digest> {
        let mut file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        let mut hasher = self.function.hasher();
        loop {
            match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(hasher.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_digest_of_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        std::fs::write(dir.path().join("e"), b"").unwrap();
        let mut hasher = FileHasher::new(DigestFunction::Sha256);
        assert_eq!(
            hasher.hash(&dir.path().join("f")).unwrap(),
            Digest::of_bytes(&data)
        );
        assert_eq!(hasher.hash(&dir.path().join("e")).unwrap(), Digest::EMPTY);
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        assert!(hasher.hash(&dir.path().join("l")).is_err());
    }
}
