//! The instance table: instance names interned as small ids, each with its
//! directory under `cas/`.
//!
//! Ids are never freed; a name gets one when a blob of it is first stored
//! (or found on disk at start), so lookups by clients of unknown instances
//! add nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use reapi_core::{Error, Result};

use super::layout;

pub(super) type InstanceId = u16;

/// The empty instance name always has this id.
const EMPTY_ID: InstanceId = 0;

struct Table {
    by_name: HashMap<Arc<str>, InstanceId>,
    dirs: Vec<Arc<Path>>,
}

pub(super) struct Instances {
    cas_dir: PathBuf,
    table: RwLock<Table>,
}

impl Instances {
    pub(super) fn new(cas_dir: PathBuf) -> Self {
        let empty_dir: Arc<Path> = cas_dir.join(crate::instance_dir::encode("")).into();
        Instances {
            cas_dir,
            table: RwLock::new(Table {
                by_name: HashMap::from([(Arc::from(""), EMPTY_ID)]),
                dirs: vec![empty_dir],
            }),
        }
    }

    /// The id of a known instance; `None` when nothing of it was ever stored.
    pub(super) fn lookup(&self, name: &str) -> Option<InstanceId> {
        if name.is_empty() {
            return Some(EMPTY_ID);
        }
        self.table.read().by_name.get(name).copied()
    }

    /// The id of an instance, allocating one when it is new.
    pub(super) fn intern(&self, name: &str) -> Result<InstanceId> {
        if let Some(id) = self.lookup(name) {
            return Ok(id);
        }
        let encoded = encode(name)?;
        let mut table = self.table.write();
        if let Some(&id) = table.by_name.get(name) {
            return Ok(id);
        }
        let id = InstanceId::try_from(table.dirs.len()).map_err(|_| {
            Error::resource_exhausted(format!(
                "instance {name:?}: the disk store holds the most instance names it can ({})",
                table.dirs.len()
            ))
        })?;
        table.dirs.push(self.cas_dir.join(encoded).into());
        table.by_name.insert(Arc::from(name), id);
        Ok(id)
    }

    /// The name of an interned instance.
    pub(super) fn name(&self, id: InstanceId) -> Option<Arc<str>> {
        self.table
            .read()
            .by_name
            .iter()
            .find(|(_, &i)| i == id)
            .map(|(name, _)| name.clone())
    }

    /// The directory of an interned instance.
    pub(super) fn dir(&self, id: InstanceId) -> Arc<Path> {
        let table = self.table.read();
        // Ids only come from this table, which never shrinks.
        table
            .dirs
            .get(usize::from(id))
            .cloned()
            .unwrap_or_else(|| Arc::from(self.cas_dir.join("_invalid-id")))
    }
}

/// Checks that an instance name can be stored (its encoding fits in a file
/// name) and returns the encoding.
pub(super) fn encode(name: &str) -> Result<String> {
    layout::encode_instance(name).ok_or_else(|| {
        Error::invalid_argument(format!(
            "instance name {name:?} is too long for the disk store \
             (its directory name would exceed 255 bytes)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_and_knows_directories() {
        let instances = Instances::new(PathBuf::from("/r/cas"));
        assert_eq!(instances.lookup(""), Some(0));
        assert_eq!(instances.lookup("a/b"), None);
        let id = instances.intern("a/b").unwrap();
        assert_eq!(id, 1);
        assert_eq!(instances.intern("a/b").unwrap(), 1);
        assert_eq!(instances.lookup("a/b"), Some(1));
        assert_eq!(&*instances.dir(1), Path::new("/r/cas/a%2Fb"));
        assert_eq!(&*instances.dir(0), Path::new("/r/cas/@default"));
        assert_eq!(
            instances.intern(&"x".repeat(300)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
