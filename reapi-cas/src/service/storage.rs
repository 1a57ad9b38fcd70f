//! Builds the four storage services with their message limits, ready to add
//! to a tonic server.

use std::sync::Arc;

use reapi_core::proto::remote_execution::action_cache_server::ActionCacheServer;
use reapi_core::proto::remote_execution::capabilities_server::CapabilitiesServer;
use reapi_core::proto::remote_execution::content_addressable_storage_server::ContentAddressableStorageServer;
use reapi_core::{ActionCache, BlobStore, InstancePolicy};
use tonic::service::RoutesBuilder;

use super::action_cache_router::ActionCacheRouter;
use super::{
    ActionCacheService, ByteStreamRoutes, ByteStreamService, CapabilitiesService, CasService,
    ExecutionSupport, MAX_DECODING_MESSAGE_SIZE,
};

/// The storage side of a server: a blob store, an action cache and the
/// instance names they serve.
pub struct StorageServices {
    pub store: Arc<dyn BlobStore>,
    pub action_cache: Arc<dyn ActionCache>,
    pub instances: InstancePolicy,
    /// Set when an execution service runs beside storage, so Capabilities
    /// advertises it.
    pub execution: Option<ExecutionSupport>,
}

impl StorageServices {
    /// Adds Capabilities, ContentAddressableStorage, ByteStream and
    /// ActionCache to `routes`.
    pub fn add_to(self, routes: &mut RoutesBuilder) {
        self.add_routes(routes, None);
    }

    /// [`StorageServices::add_to`] for a scheduler whose action cache is
    /// replicated: peers' requests are answered from `own_share`.
    pub fn add_to_with_replica(self, routes: &mut RoutesBuilder, own_share: Arc<dyn ActionCache>) {
        self.add_routes(routes, Some(own_share));
    }

    fn add_routes(self, routes: &mut RoutesBuilder, own_share: Option<Arc<dyn ActionCache>>) {
        let StorageServices {
            store,
            action_cache,
            instances,
            execution,
        } = self;
        routes.add_service(
            CapabilitiesServer::new(
                CapabilitiesService::new(instances.clone(), execution)
                    .with_max_blob_size(store.max_blob_size()),
            )
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
        );
        routes.add_service(
            ContentAddressableStorageServer::new(CasService::new(store.clone(), instances.clone()))
                .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
        );
        routes.add_service(ByteStreamRoutes::new(
            ByteStreamService::new(store.clone(), instances.clone()),
            MAX_DECODING_MESSAGE_SIZE,
        ));
        let public = ActionCacheServer::new(ActionCacheService::new(
            action_cache,
            store.clone(),
            instances.clone(),
        ))
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
        match own_share {
            None => {
                routes.add_service(public);
            }
            Some(share) => {
                let replica =
                    ActionCacheServer::new(ActionCacheService::new(share, store, instances))
                        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
                routes.add_service(ActionCacheRouter::new(public, replica));
            }
        }
    }
}

/// Capabilities, ContentAddressableStorage and ByteStream over `store`
/// alone: what a worker serves to the rest of the cluster (its share of
/// the cluster CAS). Requests to it never go further than `store`.
pub fn add_blob_services(
    routes: &mut RoutesBuilder,
    store: Arc<dyn BlobStore>,
    instances: InstancePolicy,
) {
    routes.add_service(
        CapabilitiesServer::new(CapabilitiesService::new(instances.clone(), None))
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
    );
    routes.add_service(
        ContentAddressableStorageServer::new(CasService::new(store.clone(), instances.clone()))
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
    );
    routes.add_service(ByteStreamRoutes::new(
        ByteStreamService::new(store, instances),
        MAX_DECODING_MESSAGE_SIZE,
    ));
}
