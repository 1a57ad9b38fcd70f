//! The google.longrunning Operations service over the scheduler's
//! operations: Get, List, Cancel, Delete and Wait.

use std::sync::Arc;
use std::time::Duration;

use reapi_core::proto::longrunning::operations_client::OperationsClient;
use reapi_core::proto::longrunning::operations_server::Operations;
use reapi_core::proto::longrunning::{
    CancelOperationRequest, DeleteOperationRequest, GetOperationRequest, ListOperationsRequest,
    ListOperationsResponse, Operation, WaitOperationRequest,
};
use reapi_core::proto::protobuf::Empty;
use reapi_core::proto::time;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::operation::parse_name;
use crate::peers::{forward, Peers, Target};
use crate::scheduler::Scheduler;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// WaitOperation returns the current state after this long when the client
/// sets no timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

pub struct OperationsService {
    scheduler: Arc<Scheduler>,
    peers: Arc<Peers>,
}

/// Where one operation is served.
enum Route {
    Local,
    Peer(String, OperationsClient<Channel>),
}

impl OperationsService {
    pub fn new(scheduler: Arc<Scheduler>, peers: Arc<Peers>) -> Self {
        OperationsService { scheduler, peers }
    }

    fn unknown(name: &str) -> Status {
        Status::not_found(format!("operation {name:?} is unknown"))
    }

    /// The scheduler an operation's name says is its home; NOT_FOUND when
    /// that scheduler is not a live member. Names that are not ours are
    /// looked up here (and are unknown).
    fn route(&self, name: &str, metadata: &MetadataMap) -> Result<Route, Status> {
        if forward::is_forwarded(metadata) {
            return Ok(Route::Local);
        }
        let Some((home, _)) = parse_name(name) else {
            return Ok(Route::Local);
        };
        match self.peers.route(home) {
            Some(Target::Local) => Ok(Route::Local),
            Some(Target::Peer { id, address }) => {
                let channel = self
                    .peers
                    .channel(&address)
                    .ok_or_else(|| Status::unavailable(format!("bad peer address {address}")))?;
                Ok(Route::Peer(id, forward::operations(channel)))
            }
            None => Err(Status::not_found(format!(
                "operation {name:?} belongs to scheduler {home}, which is not a live member of this cluster"
            ))),
        }
    }

    /// Notes a peer that could not be reached.
    fn failed<T>(&self, id: &str, result: Result<T, Status>) -> Result<T, Status> {
        if let Err(status) = &result {
            if forward::unreachable(status) {
                self.peers.suspect(id);
            }
        }
        result
    }
}

#[tonic::async_trait]
impl Operations for OperationsService {
    async fn list_operations(
        &self,
        request: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        let req = request.into_inner();
        if !req.filter.is_empty() {
            return Err(Status::invalid_argument(
                "ListOperations filters are not supported",
            ));
        }
        let page = match usize::try_from(req.page_size) {
            Ok(0) => DEFAULT_PAGE,
            Ok(n) => n.min(MAX_PAGE),
            Err(_) => return Err(Status::invalid_argument("page_size is negative")),
        };
        // The token is the name of the last operation of the previous page:
        // stable while operations come and go.
        let ops = self.scheduler.list();
        let start = if req.page_token.is_empty() {
            0
        } else {
            ops.iter()
                .position(|op| op.name == req.page_token)
                .map(|i| i + 1)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "page_token {:?} is not valid",
                        req.page_token
                    ))
                })?
        };
        let slice: Vec<Operation> = ops
            .iter()
            .skip(start)
            .take(page)
            .map(|op| op.to_proto())
            .collect();
        let next_page_token = if start + slice.len() < ops.len() {
            slice.last().map(|op| op.name.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListOperationsResponse {
            operations: slice,
            next_page_token,
            unreachable: vec![],
        }))
    }

    async fn get_operation(
        &self,
        request: Request<GetOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        if let Route::Peer(id, mut client) =
            self.route(&request.get_ref().name, request.metadata())?
        {
            let onward =
                forward::onward(&self.peers, request.get_ref().clone(), request.metadata());
            return self.failed(&id, client.get_operation(onward).await);
        }
        let name = request.into_inner().name;
        let op = self
            .scheduler
            .get(&name)
            .ok_or_else(|| Self::unknown(&name))?;
        Ok(Response::new(op.to_proto()))
    }

    async fn delete_operation(
        &self,
        request: Request<DeleteOperationRequest>,
    ) -> Result<Response<Empty>, Status> {
        if let Route::Peer(id, mut client) =
            self.route(&request.get_ref().name, request.metadata())?
        {
            let onward =
                forward::onward(&self.peers, request.get_ref().clone(), request.metadata());
            return self.failed(&id, client.delete_operation(onward).await);
        }
        let name = request.into_inner().name;
        // Finished operations expire on their own; deleting a live one would
        // strand the clients waiting on it.
        match self.scheduler.get(&name) {
            None => Err(Self::unknown(&name)),
            Some(op) if !op.is_done() => Err(Status::failed_precondition(format!(
                "operation {name:?} is still running; cancel it first"
            ))),
            Some(_) => Ok(Response::new(Empty {})),
        }
    }

    async fn cancel_operation(
        &self,
        request: Request<CancelOperationRequest>,
    ) -> Result<Response<Empty>, Status> {
        if let Route::Peer(id, mut client) =
            self.route(&request.get_ref().name, request.metadata())?
        {
            let onward =
                forward::onward(&self.peers, request.get_ref().clone(), request.metadata());
            return self.failed(&id, client.cancel_operation(onward).await);
        }
        let name = request.into_inner().name;
        self.scheduler.cancel(&name)?;
        Ok(Response::new(Empty {}))
    }

    async fn wait_operation(
        &self,
        request: Request<WaitOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        if let Route::Peer(id, mut client) =
            self.route(&request.get_ref().name, request.metadata())?
        {
            let onward =
                forward::onward(&self.peers, request.get_ref().clone(), request.metadata());
            return self.failed(&id, client.wait_operation(onward).await);
        }
        let req = request.into_inner();
        let mut watch = self
            .scheduler
            .subscribe(&req.name)
            .ok_or_else(|| Self::unknown(&req.name))?;
        let wait = req
            .timeout
            .as_ref()
            .and_then(time::duration)
            .unwrap_or(DEFAULT_WAIT);
        let _ = tokio::time::timeout(wait, watch.done()).await;
        let op = watch.state().to_proto();
        Ok(Response::new(op))
    }
}
