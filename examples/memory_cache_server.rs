//! A remote cache held entirely in memory, composed from the library parts:
//! a `MemoryStore` for blobs, a `MemoryActionCache` behind the completeness
//! check, and the four storage services.
//!
//! Run: `cargo run -p reapi-examples --example memory_cache_server -- 127.0.0.1:8981`
//! then point Bazel at it with `--remote_cache=grpc://127.0.0.1:8981`.

use std::sync::Arc;

use reapi_cas::action_cache::{CompletenessCheckingActionCache, MemoryActionCache};
use reapi_cas::service::StorageServices;
use reapi_cas::store::MemoryStore;
use reapi_core::{ActionCache, BlobStore, InstancePolicy};
use tonic::service::RoutesBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8981".into());
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(1 << 30));
    let results = Arc::new(MemoryActionCache::new(64 << 20));
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

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("memory cache listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await?;
    Ok(())
}
