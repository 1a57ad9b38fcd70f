//! Listing the blobs a disk store holds, grouped by instance: what repair
//! of the cluster CAS walks over.

use std::collections::HashMap;

use reapi_core::Digest;

use super::instances::InstanceId;
use super::DiskStore;
use crate::store::cluster::repair::LocalBlobs;

impl DiskStore {
    /// Every stored blob, as (instance name, digests); a snapshot.
    pub fn list_blobs(&self) -> Vec<(String, Vec<Digest>)> {
        let mut by_instance: HashMap<InstanceId, Vec<Digest>> = HashMap::new();
        for key in self.inner.index.keys() {
            by_instance
                .entry(key.instance())
                .or_default()
                .push(key.digest());
        }
        by_instance
            .into_iter()
            .filter_map(|(id, digests)| {
                let name = self.inner.instances.name(id)?;
                Some((name.to_string(), digests))
            })
            .collect()
    }
}

impl LocalBlobs for DiskStore {
    fn list_blobs(&self) -> Vec<(String, Vec<Digest>)> {
        DiskStore::list_blobs(self)
    }
}
