//! The google.longrunning Operations service over the scheduler's
//! operations: Get, List, Cancel, Delete and Wait.

use std::sync::Arc;
use std::time::Duration;

use reapi_core::proto::longrunning::operations_server::Operations;
use reapi_core::proto::longrunning::{
    CancelOperationRequest, DeleteOperationRequest, GetOperationRequest, ListOperationsRequest,
    ListOperationsResponse, Operation, WaitOperationRequest,
};
use reapi_core::proto::protobuf::Empty;
use reapi_core::proto::time;
use tonic::{Request, Response, Status};

use crate::scheduler::Scheduler;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// WaitOperation returns the current state after this long when the client
/// sets no timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

pub struct OperationsService {
    scheduler: Arc<Scheduler>,
}

impl OperationsService {
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        OperationsService { scheduler }
    }

    fn unknown(name: &str) -> Status {
        Status::not_found(format!("operation {name:?} is unknown"))
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
        let name = request.into_inner().name;
        self.scheduler.cancel(&name)?;
        Ok(Response::new(Empty {}))
    }

    async fn wait_operation(
        &self,
        request: Request<WaitOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
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
