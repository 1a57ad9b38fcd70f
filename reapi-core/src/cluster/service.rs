//! The cluster protocol's gRPC services, written by hand in the shape tonic
//! generates (there is no `.proto` build step): `WorkerLink` (one
//! bidirectional stream per worker and scheduler) and `SchedulerPeers`
//! (heartbeats between schedulers), each as a server wrapper around a trait
//! and as a client.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService, UnaryService};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use super::messages::{PeerHeartbeat, SchedulerMessage, WorkerMessage};

pub const WORKER_LINK_SERVICE: &str = "reapi.cluster.v1.WorkerLink";
pub const SCHEDULER_PEERS_SERVICE: &str = "reapi.cluster.v1.SchedulerPeers";
const CONNECT_PATH: &str = "/reapi.cluster.v1.WorkerLink/Connect";
const HEARTBEAT_PATH: &str = "/reapi.cluster.v1.SchedulerPeers/Heartbeat";

/// Largest message either side decodes: an offer carries an Action and a
/// Command, a result an ActionResult; both are far below this.
pub const MAX_CLUSTER_MESSAGE: usize = 16 * 1024 * 1024;

pub type SchedulerMessageStream =
    Pin<Box<dyn Stream<Item = Result<SchedulerMessage, Status>> + Send + 'static>>;

/// The scheduler's side of `WorkerLink`.
#[tonic::async_trait]
pub trait WorkerLink: Send + Sync + 'static {
    async fn connect(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<SchedulerMessageStream>, Status>;
}

/// A scheduler's side of `SchedulerPeers`.
#[tonic::async_trait]
pub trait SchedulerPeers: Send + Sync + 'static {
    async fn heartbeat(
        &self,
        request: Request<PeerHeartbeat>,
    ) -> Result<Response<PeerHeartbeat>, Status>;
}

/// Serves a [`WorkerLink`] implementation.
pub struct WorkerLinkServer<T> {
    inner: Arc<T>,
}

impl<T> WorkerLinkServer<T> {
    pub fn from_arc(inner: Arc<T>) -> Self {
        WorkerLinkServer { inner }
    }
}

impl<T> Clone for WorkerLinkServer<T> {
    fn clone(&self) -> Self {
        WorkerLinkServer {
            inner: self.inner.clone(),
        }
    }
}

impl<T> NamedService for WorkerLinkServer<T> {
    const NAME: &'static str = WORKER_LINK_SERVICE;
}

struct ConnectMethod<T>(Arc<T>);

impl<T: WorkerLink> StreamingService<WorkerMessage> for ConnectMethod<T> {
    type Response = SchedulerMessage;
    type ResponseStream = SchedulerMessageStream;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<WorkerMessage>>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.connect(request).await })
    }
}

impl<T, B> Service<http::Request<B>> for WorkerLinkServer<T>
where
    T: WorkerLink,
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
        if request.uri().path() != CONNECT_PATH {
            return Box::pin(async { Ok(unimplemented_response()) });
        }
        let method = ConnectMethod(self.inner.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::default())
                .apply_max_message_size_config(Some(MAX_CLUSTER_MESSAGE), None);
            Ok(grpc.streaming(method, request).await)
        })
    }
}

/// Serves a [`SchedulerPeers`] implementation.
pub struct SchedulerPeersServer<T> {
    inner: Arc<T>,
}

impl<T> SchedulerPeersServer<T> {
    pub fn from_arc(inner: Arc<T>) -> Self {
        SchedulerPeersServer { inner }
    }
}

impl<T> Clone for SchedulerPeersServer<T> {
    fn clone(&self) -> Self {
        SchedulerPeersServer {
            inner: self.inner.clone(),
        }
    }
}

impl<T> NamedService for SchedulerPeersServer<T> {
    const NAME: &'static str = SCHEDULER_PEERS_SERVICE;
}

struct HeartbeatMethod<T>(Arc<T>);

impl<T: SchedulerPeers> UnaryService<PeerHeartbeat> for HeartbeatMethod<T> {
    type Response = PeerHeartbeat;
    type Future = BoxFuture<Response<PeerHeartbeat>, Status>;

    fn call(&mut self, request: Request<PeerHeartbeat>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.heartbeat(request).await })
    }
}

impl<T, B> Service<http::Request<B>> for SchedulerPeersServer<T>
where
    T: SchedulerPeers,
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
        if request.uri().path() != HEARTBEAT_PATH {
            return Box::pin(async { Ok(unimplemented_response()) });
        }
        let method = HeartbeatMethod(self.inner.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::default())
                .apply_max_message_size_config(Some(MAX_CLUSTER_MESSAGE), None);
            Ok(grpc.unary(method, request).await)
        })
    }
}

fn unimplemented_response() -> http::Response<tonic::body::Body> {
    Status::unimplemented("no such method").into_http()
}

/// The worker's side of `WorkerLink`.
#[derive(Clone)]
pub struct WorkerLinkClient {
    inner: tonic::client::Grpc<Channel>,
}

impl WorkerLinkClient {
    pub fn new(channel: Channel) -> Self {
        WorkerLinkClient {
            inner: tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_CLUSTER_MESSAGE),
        }
    }

    /// Opens the link: `outbound` is everything the worker will send.
    pub async fn connect(
        &mut self,
        outbound: impl Stream<Item = WorkerMessage> + Send + 'static,
    ) -> Result<Streaming<SchedulerMessage>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("scheduler not ready: {e}")))?;
        let response = self
            .inner
            .streaming(
                Request::new(outbound),
                PathAndQuery::from_static(CONNECT_PATH),
                ProstCodec::<WorkerMessage, SchedulerMessage>::default(),
            )
            .await?;
        Ok(response.into_inner())
    }
}

/// A scheduler's client of its peers' `SchedulerPeers`.
#[derive(Clone)]
pub struct SchedulerPeersClient {
    inner: tonic::client::Grpc<Channel>,
}

impl SchedulerPeersClient {
    pub fn new(channel: Channel) -> Self {
        SchedulerPeersClient {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    pub async fn heartbeat(&mut self, beat: PeerHeartbeat) -> Result<PeerHeartbeat, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("peer not ready: {e}")))?;
        let response = self
            .inner
            .unary(
                Request::new(beat),
                PathAndQuery::from_static(HEARTBEAT_PATH),
                ProstCodec::<PeerHeartbeat, PeerHeartbeat>::default(),
            )
            .await?;
        Ok(response.into_inner())
    }
}
