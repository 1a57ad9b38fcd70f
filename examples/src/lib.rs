//! Runnable examples of embedding the REAPI crates. Each example's
//! composition lives here as a function, so the tests in `tests/` run the
//! same code the example binaries do.
//!
//! - [`memory_cache_routes`]: a remote cache held in memory;
//! - [`custom_sandbox`]: a worker that runs actions through a sandbox of
//!   its own.

pub mod custom_sandbox;

use std::sync::Arc;

use reapi_cas::action_cache::{CompletenessCheckingActionCache, MemoryActionCache};
use reapi_cas::service::StorageServices;
use reapi_cas::store::MemoryStore;
use reapi_core::{ActionCache, BlobStore, InstancePolicy};
use tonic::service::RoutesBuilder;

/// A remote cache held entirely in memory: a `MemoryStore` for blobs, a
/// `MemoryActionCache` behind the completeness check, and the four storage
/// services. `blob_bytes` bounds the memory blobs may use.
pub fn memory_cache_routes(blob_bytes: u64) -> RoutesBuilder {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(blob_bytes));
    let results = Arc::new(MemoryActionCache::new(blob_bytes / 16));
    let action_cache: Arc<dyn ActionCache> =
        Arc::new(CompletenessCheckingActionCache::new(results, store.clone()));
    let mut routes = RoutesBuilder::default();
    StorageServices {
        store,
        action_cache,
        instances: InstancePolicy::Any,
        execution: None,
    }
    .add_to(&mut routes);
    routes
}
