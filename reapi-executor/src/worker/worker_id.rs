//! The worker's stable id: made up on the first start and kept in the data
//! directory, so a restarted worker is recognised as the same one (its old
//! link is replaced, not kept alongside).

use std::path::Path;

use reapi_core::{Error, ErrorExt, Result};

const FILE_NAME: &str = "worker-id";

/// The id stored in `dir`, created (a random UUID) when absent.
pub fn load_or_create(dir: &Path) -> Result<String> {
    let path = dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_string();
            if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
                return Err(Error::invalid_argument(format!(
                    "{} does not hold a worker id; remove it to get a new one",
                    path.display()
                )));
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let id = uuid::Uuid::new_v4().to_string();
            // Written aside and renamed, so a crash never leaves half an id.
            let temp = dir.join(format!("{FILE_NAME}.tmp"));
            std::fs::write(&temp, format!("{id}\n"))
                .with_context(|| format!("writing {}", temp.display()))?;
            std::fs::rename(&temp, &path)
                .with_context(|| format!("renaming {}", temp.display()))?;
            Ok(id)
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(&dir.path().join("data")).unwrap();
        let again = load_or_create(&dir.path().join("data")).unwrap();
        assert_eq!(first, again);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap(), first);
    }

    #[test]
    fn a_broken_id_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "\n").unwrap();
        let err = load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("worker id"), "{err}");
    }
}
