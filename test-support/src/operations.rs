//! Execute calls and their operation streams: requests, reading streams
//! (whole, to a stage, one operation), stages and ExecuteResponses,
//! [`Run`] (a finished stream checked for the rules every stream follows),
//! and the PreconditionFailure of an Execute refused for MISSING blobs.

use prost::Message;
use reapi_core::proto::error_details::{PreconditionFailure, PRECONDITION_FAILURE_TYPE_URL};
use reapi_core::proto::longrunning::{operation, Operation};
use reapi_core::proto::remote_execution as re;
use tonic::{Code, Status, Streaming};

use crate::clients::Exec;
use crate::digests::{sha256, PDigest};
use crate::status::rpc_code;
use crate::wait::{within, PATIENCE};

pub use re::execution_stage::Value as Stage;

pub fn execute_request(action: &PDigest) -> re::ExecuteRequest {
    re::ExecuteRequest {
        action_digest: Some(action.clone()),
        digest_function: sha256(),
        ..Default::default()
    }
}

pub fn with_priority(mut request: re::ExecuteRequest, priority: i32) -> re::ExecuteRequest {
    request.execution_policy = Some(re::ExecutionPolicy { priority });
    request
}

/// Starts an Execute; the operation stream, or the RPC's error.
pub async fn start_execute(
    exec: &mut Exec,
    request: re::ExecuteRequest,
) -> Result<Streaming<Operation>, Status> {
    Ok(exec.execute(request).await?.into_inner())
}

/// Every operation of a stream until it ends (within [`PATIENCE`]).
pub async fn drain(stream: &mut Streaming<Operation>) -> Result<Vec<Operation>, Status> {
    within(PATIENCE, "operation stream", async {
        let mut ops = Vec::new();
        while let Some(op) = stream.message().await? {
            ops.push(op);
        }
        Ok(ops)
    })
    .await
}

/// Executes and reads the whole stream.
pub async fn execute(
    exec: &mut Exec,
    request: re::ExecuteRequest,
) -> Result<Vec<Operation>, Status> {
    let mut stream = start_execute(exec, request).await?;
    drain(&mut stream).await
}

/// The next operation of a stream; panics when it ends or fails.
pub async fn next_op(stream: &mut Streaming<Operation>) -> Operation {
    within(PATIENCE, "next operation", stream.message())
        .await
        .expect("stream failed")
        .expect("stream ended early")
}

/// Reads a stream until an operation at `stage` (or a later one) arrives;
/// every operation read.
pub async fn read_until(stream: &mut Streaming<Operation>, stage: Stage) -> Vec<Operation> {
    let mut ops = Vec::new();
    loop {
        let op = next_op(stream).await;
        let reached = stage_of(&op) as i32 >= stage as i32;
        ops.push(op);
        if reached {
            return ops;
        }
    }
}

pub fn metadata(op: &Operation) -> re::ExecuteOperationMetadata {
    let any = op.metadata.as_ref().expect("operation has metadata");
    assert!(
        any.type_url
            .ends_with("build.bazel.remote.execution.v2.ExecuteOperationMetadata"),
        "metadata type {}",
        any.type_url
    );
    re::ExecuteOperationMetadata::decode(any.value.as_slice()).expect("metadata decodes")
}

pub fn stage_of(op: &Operation) -> Stage {
    Stage::try_from(metadata(op).stage).expect("a known stage")
}

pub fn stages(ops: &[Operation]) -> Vec<Stage> {
    ops.iter().map(stage_of).collect()
}

/// The ExecuteResponse of a done operation.
pub fn response_of(op: &Operation) -> re::ExecuteResponse {
    assert!(op.done, "operation {} is not done", op.name);
    match op.result.as_ref().expect("a done operation has a result") {
        operation::Result::Response(any) => {
            assert!(
                any.type_url
                    .ends_with("build.bazel.remote.execution.v2.ExecuteResponse"),
                "response type {}",
                any.type_url
            );
            re::ExecuteResponse::decode(any.value.as_slice()).expect("response decodes")
        }
        operation::Result::Error(status) => {
            panic!("operation {} failed: {status:?}", op.name)
        }
    }
}

/// A finished Execute stream, checked for the rules every stream follows:
/// one name throughout, only the last operation done, and it COMPLETED
/// with an ExecuteResponse.
pub struct Run {
    pub ops: Vec<Operation>,
    pub response: re::ExecuteResponse,
}

impl Run {
    pub fn new(ops: Vec<Operation>) -> Run {
        assert!(!ops.is_empty(), "the stream sent no operation");
        let name = &ops[0].name;
        assert!(!name.is_empty(), "the operation has no name");
        for (i, op) in ops.iter().enumerate() {
            assert_eq!(&op.name, name, "operation {i} changed name");
            let last = i + 1 == ops.len();
            assert_eq!(
                op.done,
                last,
                "operation {i} of {}: done={}",
                ops.len(),
                op.done
            );
            assert_eq!(
                stage_of(op) == Stage::Completed,
                op.done,
                "COMPLETED exactly when done (operation {i})"
            );
        }
        let response = response_of(ops.last().unwrap());
        Run { ops, response }
    }

    pub fn name(&self) -> &str {
        &self.ops[0].name
    }

    pub fn stages(&self) -> Vec<Stage> {
        stages(&self.ops)
    }

    pub fn result(&self) -> &re::ActionResult {
        self.response
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("no ActionResult: {:?}", self.response))
    }

    /// The response's status code (OK when absent).
    pub fn code(&self) -> Code {
        rpc_code(&self.response.status)
    }

    /// Asserts the action ran (was not a cache hit) and finished OK.
    #[track_caller]
    pub fn assert_ran_ok(&self) {
        assert_eq!(self.code(), Code::Ok, "{:?}", self.response.status);
        assert!(!self.response.cached_result, "unexpected cache hit");
        let stages = self.stages();
        assert!(
            stages.contains(&Stage::Queued) || stages.contains(&Stage::Executing),
            "stages {stages:?}"
        );
        assert!(!stages.contains(&Stage::CacheCheck), "stages {stages:?}");
    }
}

/// The PreconditionFailure in a gRPC status's details.
pub fn precondition_failure(status: &Status) -> PreconditionFailure {
    assert!(!status.details().is_empty(), "no details in {status:?}");
    let rpc = reapi_core::proto::rpc::Status::decode(status.details())
        .expect("details decode as google.rpc.Status");
    assert_eq!(rpc.code, Code::FailedPrecondition as i32);
    assert_eq!(rpc.details.len(), 1, "{rpc:?}");
    assert_eq!(rpc.details[0].type_url, PRECONDITION_FAILURE_TYPE_URL);
    PreconditionFailure::decode(rpc.details[0].value.as_slice())
        .expect("details[0] decodes as PreconditionFailure")
}

/// The sorted subjects of MISSING violations, asserting every violation is
/// of that type.
pub fn missing_subjects(status: &Status) -> Vec<String> {
    let failure = precondition_failure(status);
    let mut subjects: Vec<String> = failure
        .violations
        .iter()
        .map(|v| {
            assert_eq!(v.r#type, "MISSING", "{v:?}");
            v.subject.clone()
        })
        .collect();
    subjects.sort();
    subjects
}

/// `blobs/{hash}/{size}`, the subject of a MISSING violation.
pub fn subject(d: &PDigest) -> String {
    format!("blobs/{}/{}", d.hash, d.size_bytes)
}
