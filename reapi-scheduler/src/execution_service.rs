//! The Execution service: Execute (cache check, validation, queueing, a
//! stream of operation states) and WaitExecution.

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures::{Stream, StreamExt};
use reapi_cas::service::inline::{inline_outputs, InlineRequest};
use reapi_core::execution::ExecutionJob;
use reapi_core::platform::{ensure_satisfiable, Requirements};
use reapi_core::proto::longrunning::Operation;
use reapi_core::proto::remote_execution::execution_server::Execution;
use reapi_core::proto::remote_execution::{ExecuteRequest, ExecuteResponse, WaitExecutionRequest};
use reapi_core::{
    ActionCache, BlobStore, Digest, DigestFunction, ErrorExt, InstancePolicy, Result,
};
use tonic::{Request, Response, Status, Streaming};

use crate::action_loader::{check_inputs, effective_timeout, load_action};
use crate::directory_cache::DirectoryCache;
use crate::operation::{parse_name, OperationState, OperationWatch, Stage};
use crate::peers::{forward, Peers, Target};
use crate::request_labels::RequestLabels;
use crate::scheduler::{Scheduler, Submission};

/// Decoded input directories kept between Executes (a few hundred bytes
/// each).
const DIRECTORY_CACHE_ENTRIES: usize = 16 * 1024;

pub struct ExecutionService {
    scheduler: Arc<Scheduler>,
    peers: Arc<Peers>,
    directories: DirectoryCache,
    cas: Arc<dyn BlobStore>,
    action_cache: Arc<dyn ActionCache>,
    instances: InstancePolicy,
}

/// What one client asked to have inlined in its final result.
#[derive(Clone, Default)]
struct Inline {
    instance: String,
    stdout: bool,
    stderr: bool,
    output_files: Vec<String>,
}

type OperationStream = Pin<Box<dyn Stream<Item = Result<Operation, Status>> + Send>>;

impl ExecutionService {
    pub fn new(
        scheduler: Arc<Scheduler>,
        peers: Arc<Peers>,
        cas: Arc<dyn BlobStore>,
        action_cache: Arc<dyn ActionCache>,
        instances: InstancePolicy,
    ) -> Self {
        ExecutionService {
            scheduler,
            peers,
            directories: DirectoryCache::new(DIRECTORY_CACHE_ENTRIES),
            cas,
            action_cache,
            instances,
        }
    }

    /// Errors found here, before an operation exists, are the RPC's status
    /// (missing inputs as FAILED_PRECONDITION with a PreconditionFailure);
    /// errors while running go into the ExecuteResponse.
    async fn start(&self, req: &ExecuteRequest, labels: RequestLabels) -> Result<Started> {
        self.instances.check(&req.instance_name)?;
        let function = DigestFunction::from_proto(req.digest_function)?;
        let instance = req.instance_name.as_str();
        let action_digest =
            Digest::from_proto_field(function, req.action_digest.as_ref(), "action_digest")?;
        if !req.skip_cache_lookup {
            let cached = self.action_cache.get(instance, &action_digest).await?;
            reapi_cas::metrics::action_cache_lookup(cached.is_some());
            if let Some(result) = cached {
                let response = ExecuteResponse {
                    result: Some(result),
                    cached_result: true,
                    ..Default::default()
                };
                // Registered, so that a client reconnecting with
                // WaitExecution finds it rather than executing again.
                let name = self
                    .scheduler
                    .record_finished(action_digest, response.clone());
                return Ok(Started::Cached(Box::new(OperationState::completed(
                    name,
                    action_digest,
                    response,
                ))));
            }
        }
        let (action, command) = load_action(self.cas.as_ref(), instance, &action_digest)
            .await
            .with_context(|| format!("action {action_digest}"))?;
        let requirements = Requirements::for_action(&action, &command)?;
        // With no worker connected (a cluster starting, every worker
        // restarting) the action waits in the queue; with workers, one of
        // them must be able to run it some day.
        let offered = self.scheduler.offered_properties();
        if !offered.is_empty() {
            ensure_satisfiable(offered.iter(), &requirements)?;
        }
        let config = self.scheduler.config();
        let timeout = effective_timeout(&action, config)?;
        let input_root = Digest::from_proto_field(
            function,
            action.input_root_digest.as_ref(),
            "Action.input_root_digest",
        )?;
        check_inputs(
            self.cas.as_ref(),
            &self.directories,
            instance,
            &input_root,
            config.allow_absolute_symlinks,
        )
        .await
        .with_context(|| format!("inputs of action {action_digest}"))?;
        let priority = req.execution_policy.as_ref().map_or(0, |p| p.priority);
        let do_not_cache = action.do_not_cache;
        let job = ExecutionJob {
            instance_name: req.instance_name.clone(),
            action_digest,
            action,
            command,
            timeout,
            queued_at: SystemTime::now(),
        };
        Ok(Started::Queued(self.scheduler.submit(Submission {
            job,
            requirements,
            priority,
            do_not_cache,
            labels,
        })))
    }

    /// Streams an operation's states until it is done; the last one carries
    /// the response, with outputs inlined as the client asked. A slow client
    /// skips intermediate states and sees the latest.
    fn stream(&self, watch: OperationWatch, inline: Inline) -> OperationStream {
        let cas = self.cas.clone();
        let stream = futures::stream::unfold(Some((watch, true)), move |next| {
            let cas = cas.clone();
            let inline = inline.clone();
            async move {
                let (mut watch, first) = next?;
                // A closed channel means the scheduler dropped the operation
                // unfinished: end the stream; WaitExecution then answers
                // NOT_FOUND and the client executes again.
                if !first && watch.changed().await.is_err() {
                    return None;
                }
                let current = watch.latest();
                if current.is_done() {
                    let done = inline_response(cas.as_ref(), &inline, current).await;
                    return Some((Ok(done.to_proto()), None));
                }
                Some((Ok(current.to_proto()), Some((watch, false))))
            }
        });
        Box::pin(stream)
    }
}

enum Started {
    Cached(Box<OperationState>),
    Queued(OperationWatch),
}

async fn inline_response(
    cas: &dyn BlobStore,
    inline: &Inline,
    mut state: OperationState,
) -> OperationState {
    if !(inline.stdout || inline.stderr || !inline.output_files.is_empty()) {
        return state;
    }
    if let Some(result) = state.response.as_mut().and_then(|r| r.result.as_mut()) {
        let request = InlineRequest {
            stdout: inline.stdout,
            stderr: inline.stderr,
            output_files: &inline.output_files,
            function: state.action_digest.function(),
        };
        inline_outputs(cas, &inline.instance, request, result).await;
    }
    state
}

#[tonic::async_trait]
impl Execution for ExecutionService {
    type ExecuteStream = OperationStream;

    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<OperationStream>, Status> {
        let labels = RequestLabels::from_metadata(request.metadata());
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        if !forward::is_forwarded(&metadata) {
            if let Some(stream) = self.forward_to_home(&req, &metadata).await? {
                return Ok(Response::new(stream));
            }
        }
        let inline = Inline {
            instance: req.instance_name.clone(),
            stdout: req.inline_stdout,
            stderr: req.inline_stderr,
            output_files: req.inline_output_files.clone(),
        };
        let watch = match self.start(&req, labels).await {
            Ok(Started::Queued(watch)) => watch,
            Ok(Started::Cached(done)) => {
                let cache_check =
                    OperationState::new(done.name.clone(), done.action_digest, Stage::CacheCheck);
                let done = inline_response(self.cas.as_ref(), &inline, *done).await;
                let items = vec![Ok(cache_check.to_proto()), Ok(done.to_proto())];
                return Ok(Response::new(Box::pin(futures::stream::iter(items))));
            }
            Err(e) => {
                tracing::debug!(error = %e, "Execute rejected");
                return Err(e.into());
            }
        };
        Ok(Response::new(self.stream(watch, inline)))
    }

    type WaitExecutionStream = OperationStream;

    async fn wait_execution(
        &self,
        request: Request<WaitExecutionRequest>,
    ) -> Result<Response<OperationStream>, Status> {
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        let name = request.name.clone();
        let home = match parse_name(&name) {
            Some((home, _)) => home.to_string(),
            None => {
                return Err(Status::not_found(format!(
                    "operation {name:?} is unknown; execute the action again"
                )))
            }
        };
        match self.peers.route(&home) {
            Some(Target::Local) => {}
            Some(Target::Peer { id, address }) => {
                return match forward::wait_execution(&self.peers, &address, request, &metadata)
                    .await
                {
                    Ok(stream) => Ok(Response::new(relay(stream, id))),
                    // A home that cannot be reached has lost its operations
                    // as far as the client can tell: it executes again.
                    Err(status) if forward::unreachable(&status) => {
                        self.peers.suspect(&id);
                        Err(Status::not_found(format!(
                            "operation {name:?} belongs to scheduler {home}, which cannot be \
                             reached; execute the action again"
                        )))
                    }
                    Err(status) => Err(status),
                };
            }
            None => {
                tracing::debug!(operation = %name, "WaitExecution for a scheduler that is not a live member");
                return Err(Status::not_found(format!(
                    "operation {name:?} belongs to scheduler {home}, which is not a live member \
                     of this cluster; execute the action again"
                )));
            }
        }
        let watch = self.scheduler.subscribe(&name).ok_or_else(|| {
            Status::not_found(format!(
                "operation {name:?} is unknown; execute the action again"
            ))
        })?;
        Ok(Response::new(self.stream(watch, Inline::default())))
    }
}

impl ExecutionService {
    /// Sends an Execute to the action's home when that is another
    /// scheduler; `None` when this scheduler is the home. A home that
    /// cannot be reached is routed around: the next candidate serves it.
    async fn forward_to_home(
        &self,
        req: &ExecuteRequest,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Option<OperationStream>, Status> {
        // Malformed requests are answered here, without a hop.
        self.instances.check(&req.instance_name)?;
        let function = DigestFunction::from_proto(req.digest_function)?;
        let digest =
            Digest::from_proto_field(function, req.action_digest.as_ref(), "action_digest")?;
        for home in self.peers.homes(&req.instance_name, &digest) {
            let Target::Peer { id, address } = home else {
                return Ok(None);
            };
            match forward::execute(&self.peers, &address, req.clone(), metadata).await {
                Ok(stream) => {
                    tracing::debug!(action = %digest, home = %id, "Execute forwarded to the action's home");
                    return Ok(Some(relay(stream, id)));
                }
                Err(status) if forward::unreachable(&status) => self.peers.suspect(&id),
                Err(status) => return Err(status),
            }
        }
        Ok(None)
    }
}

/// A stream from another scheduler, passed on. If that scheduler goes away
/// mid-stream the client hears UNAVAILABLE, so it retries: WaitExecution
/// then answers NOT_FOUND for the lost home, and the action runs again.
fn relay(stream: Streaming<Operation>, home: String) -> OperationStream {
    Box::pin(stream.map(move |item| {
        item.map_err(|status| {
            Status::unavailable(format!(
                "scheduler {home}, home of the operation, failed: {}",
                status.message()
            ))
        })
    }))
}
