//! An operation's state as clients see it, and its protocol form.

use reapi_core::proto::any;
use reapi_core::proto::longrunning::{operation, Operation};
use reapi_core::proto::remote_execution::{
    digest_function, execution_stage, ExecuteOperationMetadata, ExecuteResponse,
};
use reapi_core::Digest;

pub use execution_stage::Value as Stage;

#[derive(Clone, Debug, PartialEq)]
pub struct OperationState {
    pub name: String,
    pub action_digest: Digest,
    pub stage: Stage,
    /// Set once the stage is `Completed`.
    pub response: Option<ExecuteResponse>,
}

impl OperationState {
    pub fn new(name: String, action_digest: Digest, stage: Stage) -> Self {
        OperationState {
            name,
            action_digest,
            stage,
            response: None,
        }
    }

    pub fn completed(name: String, action_digest: Digest, response: ExecuteResponse) -> Self {
        OperationState {
            name,
            action_digest,
            stage: Stage::Completed,
            response: Some(response),
        }
    }

    pub fn is_done(&self) -> bool {
        self.stage == Stage::Completed
    }

    /// COMPLETED always comes with `done = true` and the ExecuteResponse.
    pub fn to_proto(&self) -> Operation {
        let metadata = ExecuteOperationMetadata {
            stage: self.stage as i32,
            action_digest: Some(self.action_digest.to_proto()),
            digest_function: digest_function::Value::Sha256 as i32,
            ..Default::default()
        };
        Operation {
            name: self.name.clone(),
            metadata: Some(any::pack(
                "build.bazel.remote.execution.v2.ExecuteOperationMetadata",
                &metadata,
            )),
            done: self.is_done(),
            result: self.response.as_ref().map(|response| {
                operation::Result::Response(any::pack(
                    "build.bazel.remote.execution.v2.ExecuteResponse",
                    response,
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn completed_operation_is_done_with_response() {
        let d = Digest::of_bytes(b"action");
        let response = ExecuteResponse {
            cached_result: true,
            ..Default::default()
        };
        let op = OperationState::completed("operations/x".into(), d, response.clone()).to_proto();
        assert!(op.done);
        let Some(operation::Result::Response(any)) = op.result else {
            panic!("no response")
        };
        assert!(any
            .type_url
            .ends_with("build.bazel.remote.execution.v2.ExecuteResponse"));
        assert_eq!(
            ExecuteResponse::decode(any.value.as_slice()).unwrap(),
            response
        );
        let meta = ExecuteOperationMetadata::decode(op.metadata.unwrap().value.as_slice()).unwrap();
        assert_eq!(meta.stage, Stage::Completed as i32);
    }

    #[test]
    fn queued_operation_is_not_done() {
        let op = OperationState::new("n".into(), Digest::EMPTY, Stage::Queued).to_proto();
        assert!(!op.done);
        assert!(op.result.is_none());
    }
}
