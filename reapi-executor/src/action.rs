//! One run of one action, start to end: check the command, lay out the
//! inputs, run, upload, clean up. Each step lives in its own module; this
//! file only puts them in order and takes the times.
//!
//! Who owns what on the way out:
//! - the [`ActionDir`] removes the action's directory (on success, error
//!   and cancel alike);
//! - the sandbox kills the command's process group when its future is
//!   dropped;
//! - the timeout is the sandbox's (it kills on expiry and says so); the
//!   outputs written until then are still uploaded, as the trait asks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use reapi_core::execution::{
    ExecutionJob, ExecutionOutcome, ExecutorId, Sandbox, SandboxCommand, SandboxOutcome,
};
use reapi_core::platform::Requirements;
use reapi_core::proto::remote_execution::ActionResult;
use reapi_core::{BlobStore, Digest, Error, ErrorExt, Result};
use tracing::Instrument;

use crate::action_dir::ActionDir;
use crate::command::CommandSpec;
use crate::materialize::Materializer;
use crate::metadata::StageTimes;
use crate::paths::prepare_run;
use crate::upload::upload_outputs;

/// What a run needs from its pool.
pub struct ActionContext<'a> {
    pub cas: &'a dyn BlobStore,
    pub materializer: &'a Materializer,
    pub sandbox: &'a dyn Sandbox,
    pub executor: &'a ExecutorId,
    /// A fresh path for the action's directory (it must not exist).
    pub action_dir: PathBuf,
    /// Who gets the directories the action writes in, when not the
    /// server's user ([`crate::identity::ActionIdentity::directory_owner`]).
    pub directory_owner: Option<(u32, u32)>,
}

/// Runs `job` and returns its result; errors carry the action digest.
pub async fn run_action(ctx: ActionContext<'_>, job: ExecutionJob) -> Result<ExecutionOutcome> {
    let action_digest = job.action_digest;
    let span = tracing::info_span!("action", digest = %action_digest, executor = %ctx.executor);
    run_steps(ctx, job)
        .instrument(span)
        .await
        .with_context(|| format!("running action {action_digest}"))
}

async fn run_steps(ctx: ActionContext<'_>, job: ExecutionJob) -> Result<ExecutionOutcome> {
    let worker_start = SystemTime::now();
    let spec = Arc::new(CommandSpec::from_command(&job.command).context("checking the command")?);
    // Everything the action names, reads and writes is hashed with its
    // digest's function.
    let input_root = Digest::from_proto_field(
        job.action_digest.function(),
        job.action.input_root_digest.as_ref(),
        "input_root_digest",
    )
    .context("checking the action")?;

    let dir = tokio::task::spawn_blocking({
        let path = ctx.action_dir.clone();
        let owner = ctx.directory_owner;
        move || ActionDir::create(path, owner)
    })
    .await
    .map_err(|e| Error::internal(format!("creating the action directory: {e}")))??;
    let ran = run_in_dir(&ctx, &job, &spec, &input_root, &dir).await;
    // Removed before returning, on error too, so a caller sees a clean work
    // directory; only a cancelled run leaves removal to the guard's Drop.
    if let Err(e) = dir.remove().await {
        tracing::warn!("{e}");
    }
    let (mut result, outcome, times) = ran?;

    result.exit_code = outcome.exit_code;
    result.execution_metadata = Some(
        StageTimes {
            queued: job.queued_at,
            worker_start,
            input_fetch: times.input_fetch,
            execution: (outcome.started, outcome.finished),
            output_upload: times.output_upload,
            worker_completed: SystemTime::now(),
        }
        .to_proto(&ctx.executor.0),
    );
    Ok(ExecutionOutcome {
        result,
        timed_out: outcome.timed_out,
    })
}

struct Times {
    input_fetch: (SystemTime, SystemTime),
    output_upload: (SystemTime, SystemTime),
}

/// Inputs, run, outputs: everything that happens in the action directory.
async fn run_in_dir(
    ctx: &ActionContext<'_>,
    job: &ExecutionJob,
    spec: &Arc<CommandSpec>,
    input_root: &Digest,
    dir: &ActionDir,
) -> Result<(ActionResult, SandboxOutcome, Times)> {
    let instance = job.instance_name.as_str();
    let root = dir.input_root();

    let input_fetch_start = SystemTime::now();
    ctx.materializer
        .materialize(instance, input_root, &root, &dir.cancel_flag())
        .await
        .with_context(|| format!("laying out input root {input_root}"))?;
    tokio::task::spawn_blocking({
        let (root, spec) = (root.clone(), Arc::clone(spec));
        let owner = ctx.directory_owner;
        move || prepare_run(&root, &spec, owner)
    })
    .await
    .map_err(|e| Error::internal(format!("preparing the run: {e}")))??;
    let input_fetch_done = SystemTime::now();

    // The scheduler and the lease checked the platform already; one that
    // does not parse asks for nothing.
    let wanted = Requirements::for_action(&job.action, &job.command).unwrap_or_default();
    let command = SandboxCommand {
        arguments: spec.arguments.clone(),
        environment: spec.environment.clone(),
        input_root: root.clone(),
        working_directory: root.join(&spec.working_directory),
        stdout_path: dir.stdout_path(),
        stderr_path: dir.stderr_path(),
        timeout: job.timeout,
        resources: wanted.resources(),
        network: wanted.wants_network(),
        rootfs: wanted.rootfs(),
    };
    let outcome = ctx
        .sandbox
        .run(command)
        .await
        .context("running the command")?;
    tracing::debug!(
        exit_code = outcome.exit_code,
        timed_out = outcome.timed_out,
        "command finished"
    );

    let upload_start = SystemTime::now();
    let result = upload_outputs(
        job.action_digest.function(),
        ctx.cas,
        instance,
        &root,
        spec,
        &dir.stdout_path(),
        &dir.stderr_path(),
    )
    .await
    .context("uploading outputs")?;
    let times = Times {
        input_fetch: (input_fetch_start, input_fetch_done),
        output_upload: (upload_start, SystemTime::now()),
    };
    Ok((result, outcome, times))
}
