//! How the cluster store reaches a member's share: by default one gRPC
//! client per member address, made on first use and shared by every
//! request to that member (a tonic channel multiplexes them).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use reapi_core::cluster::placement::Holder;
use reapi_core::{BlobStore, Result};

use crate::store::GrpcStore;

/// Reaches the members of the cluster CAS.
pub trait MemberStores: Send + Sync + 'static {
    fn store(&self, holder: &Holder) -> Result<Arc<dyn BlobStore>>;
}

/// Clients kept before the cache is cleared of everyone: members come and
/// go with new addresses, and a reconnect is cheap next to a leak.
const MAX_CLIENTS: usize = 4096;

/// Members over gRPC (their REAPI CAS and ByteStream services).
#[derive(Default)]
pub struct GrpcMembers {
    clients: Mutex<HashMap<Arc<str>, Arc<dyn BlobStore>>>,
}

impl MemberStores for GrpcMembers {
    fn store(&self, holder: &Holder) -> Result<Arc<dyn BlobStore>> {
        let mut clients = self.clients.lock();
        if let Some(client) = clients.get(&holder.address) {
            return Ok(client.clone());
        }
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        let client: Arc<dyn BlobStore> = Arc::new(GrpcStore::for_member(&holder.address)?);
        clients.insert(holder.address.clone(), client.clone());
        Ok(client)
    }
}
