//! The ActionCache service of a scheduler whose action cache is replicated
//! across schedulers: requests from peers (marked with
//! [`REPLICA_HEADER`]) are answered from this scheduler's own share;
//! everyone else's go through the replicated cache.

use std::convert::Infallible;
use std::task::{Context, Poll};

use reapi_core::proto::remote_execution::action_cache_server::{ActionCacheServer, SERVICE_NAME};
use tonic::codegen::{Body, BoxFuture, Service, StdError};
use tonic::server::NamedService;

use super::ActionCacheService;
use crate::action_cache::REPLICA_HEADER;

#[derive(Clone)]
pub struct ActionCacheRouter {
    public: ActionCacheServer<ActionCacheService>,
    replica: ActionCacheServer<ActionCacheService>,
}

impl ActionCacheRouter {
    pub fn new(
        public: ActionCacheServer<ActionCacheService>,
        replica: ActionCacheServer<ActionCacheService>,
    ) -> Self {
        ActionCacheRouter { public, replica }
    }
}

impl NamedService for ActionCacheRouter {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for ActionCacheRouter
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.headers().contains_key(REPLICA_HEADER) {
            self.replica.call(request)
        } else {
            self.public.call(request)
        }
    }
}
