//! `ExecutedActionMetadata`: the timestamps of one run's stages.

use std::time::SystemTime;

use reapi_core::proto::remote_execution::ExecutedActionMetadata;
use reapi_core::proto::time::timestamp;

/// When each stage of a run started and ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StageTimes {
    pub queued: SystemTime,
    pub worker_start: SystemTime,
    pub input_fetch: (SystemTime, SystemTime),
    pub execution: (SystemTime, SystemTime),
    pub output_upload: (SystemTime, SystemTime),
    pub worker_completed: SystemTime,
}

impl StageTimes {
    pub(crate) fn to_proto(self, worker: &str) -> ExecutedActionMetadata {
        let ts = |t| Some(timestamp(t));
        ExecutedActionMetadata {
            worker: worker.to_string(),
            queued_timestamp: ts(self.queued),
            worker_start_timestamp: ts(self.worker_start),
            worker_completed_timestamp: ts(self.worker_completed),
            input_fetch_start_timestamp: ts(self.input_fetch.0),
            input_fetch_completed_timestamp: ts(self.input_fetch.1),
            execution_start_timestamp: ts(self.execution.0),
            execution_completed_timestamp: ts(self.execution.1),
            output_upload_start_timestamp: ts(self.output_upload.0),
            output_upload_completed_timestamp: ts(self.output_upload.1),
            ..Default::default()
        }
    }
}
