//! An operation's state as clients see it, and its protocol form; the
//! compact forms the scheduler keeps per operation (its id, its progress).

use std::sync::Arc;

use reapi_core::proto::any;
use reapi_core::proto::longrunning::{operation, Operation};
use reapi_core::proto::remote_execution::{
    execution_stage, ExecuteOperationMetadata, ExecuteResponse,
};
use reapi_core::Digest;
use tokio::sync::watch;
use uuid::Uuid;

pub use execution_stage::Value as Stage;

const NAME_PREFIX: &str = "operations/";

/// Identifies an operation on its home scheduler. Names are
/// `operations/{home}/{uuid}`: the home scheduler's id lets any scheduler
/// route WaitExecution and GetOperation to it. The scheduler keeps the UUID
/// (16 bytes, no allocation) in its maps and its queue, and spells the name
/// out only for clients: a queued operation is referred to from several
/// places, and a 60-byte string in each was a large part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OperationId(Uuid);

impl OperationId {
    pub(crate) fn random() -> Self {
        OperationId(Uuid::new_v4())
    }

    /// The name of this operation when `home` is its scheduler.
    pub(crate) fn name(self, home: &str) -> String {
        format!("{NAME_PREFIX}{home}/{}", self.0.hyphenated())
    }
}

/// A name this service gives out, split into its home scheduler's id and
/// the operation's id. `None` for any other string, other spellings of the
/// same UUID included (upper case, no hyphens, braces), so each operation
/// answers to exactly one name.
pub(crate) fn parse_name(name: &str) -> Option<(&str, OperationId)> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (home, text) = rest.split_once('/')?;
    if !is_scheduler_id(home) {
        return None;
    }
    let uuid = Uuid::try_parse(text).ok()?;
    let mut canonical = [0; uuid::fmt::Hyphenated::LENGTH];
    (uuid.hyphenated().encode_lower(&mut canonical) == text).then_some((home, OperationId(uuid)))
}

/// Scheduler ids are short lowercase hex-and-dash strings (see
/// `SchedulerId`); anything else in a name is not one of ours.
pub(crate) fn is_scheduler_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

/// What changes in an operation's life, as its watch channel carries it.
/// The name and action digest never change, so they stay out: the channel
/// exists per queued operation, and its value is kept small.
#[derive(Clone, Debug)]
pub(crate) enum Progress {
    Queued,
    Executing,
    /// Shared by every watcher and the scheduler's finished operations.
    Completed(Arc<ExecuteResponse>),
}

impl Progress {
    fn is_done(&self) -> bool {
        matches!(self, Progress::Completed(_))
    }

    /// The full state, for a client.
    pub(crate) fn to_state(
        &self,
        home: &str,
        id: OperationId,
        action_digest: Digest,
    ) -> OperationState {
        let (stage, response) = match self {
            Progress::Queued => (Stage::Queued, None),
            Progress::Executing => (Stage::Executing, None),
            Progress::Completed(response) => {
                (Stage::Completed, Some(ExecuteResponse::clone(response)))
            }
        };
        OperationState {
            name: id.name(home),
            action_digest,
            stage,
            response,
        }
    }
}

/// One client's view of an operation: live while it runs, its final state
/// once finished.
pub struct OperationWatch {
    home: Arc<str>,
    id: OperationId,
    action_digest: Digest,
    progress: watch::Receiver<Progress>,
}

impl OperationWatch {
    pub(crate) fn new(
        home: Arc<str>,
        id: OperationId,
        action_digest: Digest,
        progress: watch::Receiver<Progress>,
    ) -> Self {
        OperationWatch {
            home,
            id,
            action_digest,
            progress,
        }
    }

    pub fn name(&self) -> String {
        self.id.name(&self.home)
    }

    /// The current state; `changed` still reports it if not yet seen.
    pub fn state(&self) -> OperationState {
        // Cloned first: the channel stays locked only for an Arc clone.
        let progress = self.progress.borrow().clone();
        progress.to_state(&self.home, self.id, self.action_digest)
    }

    /// The current state, marked seen.
    pub fn latest(&mut self) -> OperationState {
        let progress = self.progress.borrow_and_update().clone();
        progress.to_state(&self.home, self.id, self.action_digest)
    }

    /// Waits for a state not yet seen. An error means the scheduler dropped
    /// the operation unfinished (it was shut down).
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.progress.changed().await
    }

    /// Waits until the operation is done; errors as `changed` does.
    pub async fn done(&mut self) -> Result<OperationState, watch::error::RecvError> {
        let progress = self.progress.wait_for(Progress::is_done).await?.clone();
        Ok(progress.to_state(&self.home, self.id, self.action_digest))
    }
}

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
            digest_function: self.action_digest.function().proto_value(),
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
    fn operation_names_round_trip_in_one_spelling_only() {
        let id = OperationId::random();
        let name = id.name("5ca1ab1e");
        assert_eq!(name.len(), NAME_PREFIX.len() + 9 + 36);
        assert_eq!(parse_name(&name), Some(("5ca1ab1e", id)));
        let uuid = &name[NAME_PREFIX.len() + 9..];
        for other in [
            uuid.to_string(),
            format!("operations/{uuid}"),
            format!("operations/5ca1ab1e/{}", uuid.to_uppercase()),
            format!("operations/5ca1ab1e/{}", uuid.replace('-', "")),
            format!("operations/5ca1ab1e/{{{uuid}}}"),
            format!("operations/5ca1ab1e/urn:uuid:{uuid}"),
            format!("operations/5CA1AB1E/{uuid}"),
            format!("operations//{uuid}"),
            format!("operations/a b/{uuid}"),
            format!("{name} "),
            "operations/nope".to_string(),
            String::new(),
        ] {
            assert_eq!(parse_name(&other), None, "{other:?}");
        }
    }

    #[test]
    fn progress_becomes_the_clients_state() {
        let id = OperationId::random();
        let d = Digest::of_bytes(b"action");
        let queued = Progress::Queued.to_state("home", id, d);
        assert_eq!(
            queued,
            OperationState::new(id.name("home"), d, Stage::Queued)
        );
        assert_eq!(
            Progress::Executing.to_state("home", id, d).stage,
            Stage::Executing
        );
        let response = ExecuteResponse {
            message: "done".into(),
            ..Default::default()
        };
        let done = Progress::Completed(Arc::new(response.clone())).to_state("home", id, d);
        assert_eq!(
            done,
            OperationState::completed(id.name("home"), d, response)
        );
    }

    #[test]
    fn queued_operation_is_not_done() {
        let op = OperationState::new("n".into(), Digest::EMPTY, Stage::Queued).to_proto();
        assert!(!op.done);
        assert!(op.result.is_none());
    }
}
