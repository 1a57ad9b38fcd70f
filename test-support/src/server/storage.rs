//! A storage-only server (Capabilities, CAS, ByteStream, ActionCache) on
//! loopback, over the production disk composition or over memory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use reapi_cas::action_cache::{CompletenessCheckingActionCache, MemoryActionCache};
use reapi_cas::config::StorageConfig;
use reapi_cas::service::StorageServices;
use reapi_cas::store::MemoryStore;
use reapi_core::{ActionCache, BlobStore, InstancePolicy};
use tempfile::TempDir;
use tonic::transport::Channel;

use super::Serving;
use crate::clients::{self, Ac, Bs, Caps, Cas};

/// Store budget when a test does not care about eviction.
pub const LARGE_BUDGET: u64 = 1 << 30;

/// Which store composition a server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `StorageConfig::open`: DiskStore + DiskActionCache behind
    /// CompletenessCheckingActionCache (production).
    Disk,
    /// MemoryStore + MemoryActionCache behind CompletenessCheckingActionCache.
    Memory,
}

impl Setup {
    pub const ALL: [Setup; 2] = [Setup::Disk, Setup::Memory];
}

/// A storage server on 127.0.0.1 and a channel to it. Dropping it leaves
/// the server task running until the test's runtime ends; call
/// [`Server::stop`] to shut it down and release its stores.
pub struct Server {
    pub setup: Setup,
    pub addr: SocketAddr,
    pub channel: Channel,
    serving: Serving,
    /// The data directory of a disk server started by [`Server::start`].
    _dir: Option<TempDir>,
}

impl Server {
    /// A server with any instance name allowed and a large budget.
    pub async fn start(setup: Setup) -> Server {
        Server::start_with(setup, LARGE_BUDGET, None).await
    }

    /// A server with a given store budget and instance list. The disk setup
    /// gets a fresh temporary data directory owned by the server.
    pub async fn start_with(setup: Setup, budget: u64, instances: Option<Vec<&str>>) -> Server {
        let instances: Option<Vec<String>> =
            instances.map(|v| v.into_iter().map(str::to_owned).collect());
        match setup {
            Setup::Disk => {
                let dir = tempfile::tempdir().expect("temp dir");
                let mut server = Server::disk_at(dir.path(), budget, instances).await;
                server._dir = Some(dir);
                server
            }
            Setup::Memory => {
                let policy = match instances {
                    None => InstancePolicy::Any,
                    Some(names) => InstancePolicy::only(names),
                };
                Server::serve(Setup::Memory, memory_services(budget, policy)).await
            }
        }
    }

    /// The production composition on `data_dir`, which the caller owns (so
    /// a test can stop the server and open the same directory again).
    pub async fn disk_at(
        data_dir: &Path,
        disk_size: u64,
        instances: Option<Vec<String>>,
    ) -> Server {
        let storage = StorageConfig {
            data_dir: data_dir.to_path_buf(),
            disk_size,
            instances,
            // Tests of LRU eviction fill small budgets within seconds.
            default_replica_timeout: std::time::Duration::ZERO,
            ..Default::default()
        }
        .open()
        .await
        .expect("opening the storage");
        let services = storage.services();
        drop(storage);
        Server::serve(Setup::Disk, services).await
    }

    /// Serves `services` on a fresh loopback port.
    pub async fn serve(setup: Setup, services: StorageServices) -> Server {
        let mut routes = tonic::service::RoutesBuilder::default();
        services.add_to(&mut routes);
        let serving = Serving::start(routes.routes()).await;
        let addr = serving.addr;
        Server {
            setup,
            addr,
            channel: clients::connect(addr).await,
            serving,
            _dir: None,
        }
    }

    pub fn cas(&self) -> Cas {
        clients::cas(&self.channel)
    }

    pub fn bs(&self) -> Bs {
        clients::bs(&self.channel)
    }

    pub fn ac(&self) -> Ac {
        clients::ac(&self.channel)
    }

    pub fn caps(&self) -> Caps {
        clients::caps(&self.channel)
    }

    /// What GetCapabilities says of the CAS (default instance).
    pub async fn cache_capabilities(
        &self,
    ) -> reapi_core::proto::remote_execution::CacheCapabilities {
        self.caps()
            .get_capabilities(
                reapi_core::proto::remote_execution::GetCapabilitiesRequest::default(),
            )
            .await
            .expect("GetCapabilities")
            .into_inner()
            .cache_capabilities
            .expect("cache capabilities")
    }

    /// Shuts the server down and waits for it, so its stores are dropped.
    /// Clients made from it should be dropped first.
    pub async fn stop(self) {
        drop(self.channel);
        self.serving.stop().await;
    }
}

/// MemoryStore + MemoryActionCache behind the completeness check.
pub fn memory_services(budget: u64, instances: InstancePolicy) -> StorageServices {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(budget));
    let results: Arc<dyn ActionCache> = Arc::new(MemoryActionCache::new(64 << 20));
    let action_cache: Arc<dyn ActionCache> =
        Arc::new(CompletenessCheckingActionCache::new(results, store.clone()));
    StorageServices {
        store,
        action_cache,
        instances,
        execution: None,
    }
}
