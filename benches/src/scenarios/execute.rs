//! `execute`: Execute of trivial actions with warm inputs, and `queue-fill`:
//! how much server memory queued actions take.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use clap::{Args, ValueEnum};
use futures::StreamExt;
use prost::Message;
use reapi_core::proto::longrunning::{operation, CancelOperationRequest, Operation};
use reapi_core::proto::remote_execution as re;
use reapi_core::proto::time::to_proto_duration;
use reapi_core::Digest;
use tonic::transport::Channel;

use crate::client::Clients;
use crate::content::{run_nonce, BlobFactory};
use crate::options::Common;
use crate::procfs;
use crate::report::Report;
use crate::runner::{run, OpError, Outcome, RunSpec};
use crate::stats::{format_size, parse_duration, parse_size};
use crate::transfer::{ensure_present, Upload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every Execute names a different action (salted), so each one runs
    /// after an action-cache miss.
    Unique,
    /// Every Execute names the same action: after the first run, cache hits
    /// (and merging of identical in-flight actions).
    Identical,
    /// The same action with `do_not_cache` and `skip_cache_lookup`: each
    /// Execute runs, nothing is merged or cached, and no action blob needs
    /// uploading per run.
    Uncached,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Program {
    /// `/bin/true`.
    True,
    /// `/bin/cat in.txt`: reads the input and produces stdout.
    Cat,
}

#[derive(Args, Clone, Debug)]
pub struct ExecuteArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, value_enum, default_value = "unique")]
    pub mode: Mode,
    #[arg(long, value_enum, default_value = "true")]
    pub command: Program,
    /// Size of the one input file, `in.txt`.
    #[arg(long = "input-size", default_value = "1KiB", value_parser = parse_size)]
    pub input_size: u64,
    /// Unique mode: salted actions uploaded before the run (warm-up and
    /// measured runs draw from it; the run ends when it is used up).
    /// Default: --count plus 500, or 6000.
    #[arg(long)]
    pub pool: Option<usize>,
    /// Action timeout.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Clone, Debug)]
pub struct QueueFillArgs {
    #[command(flatten)]
    pub common: Common,
    /// Long actions submitted first to occupy every executor.
    #[arg(long, default_value_t = 1)]
    pub blockers: usize,
    /// How long the blocking actions sleep.
    #[arg(long = "blocker-seconds", default_value_t = 600)]
    pub blocker_seconds: u64,
    /// Distinct (salted) actions instead of `do_not_cache` copies of one
    /// action; each then needs its own Action blob uploaded first.
    #[arg(long)]
    pub distinct: bool,
    /// Leave the queued actions and blockers in place (default: cancel them
    /// all with CancelOperation afterwards).
    #[arg(long = "no-cancel")]
    pub no_cancel: bool,
    /// Pause before reading the server's memory, for it to settle.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,
}

/// The messages of a trivial action, ready to upload.
pub(crate) struct ActionKit {
    pub(crate) uploads: Vec<Upload>,
    pub(crate) template: re::Action,
}

pub(crate) fn action_kit(
    seed: u64,
    arguments: Vec<String>,
    input_size: u64,
    timeout: Duration,
    do_not_cache: bool,
) -> ActionKit {
    let input = BlobFactory::new(input_size as usize, seed ^ 0xe8ec).blob(0);
    let root = re::Directory {
        files: vec![re::FileNode {
            name: "in.txt".into(),
            digest: Some(input.digest.to_proto()),
            is_executable: false,
            ..Default::default()
        }],
        ..Default::default()
    };
    let command = re::Command {
        arguments,
        ..Default::default()
    };
    let root = Upload::message(&root);
    let command = Upload::message(&command);
    let template = re::Action {
        command_digest: Some(command.digest().to_proto()),
        input_root_digest: Some(root.digest().to_proto()),
        timeout: Some(to_proto_duration(timeout)),
        do_not_cache,
        ..Default::default()
    };
    ActionKit {
        uploads: vec![Upload::Blob(input), root, command],
        template,
    }
}

fn salted(template: &re::Action, salt: u64) -> (Digest, Upload) {
    let mut action = template.clone();
    action.salt = salt.to_le_bytes().to_vec();
    let upload = Upload::message(&action);
    (upload.digest(), upload)
}

/// What the final Operation of an Execute said.
struct Finished {
    response: re::ExecuteResponse,
}

fn decode_done(op: Operation) -> Result<Finished, String> {
    match op.result {
        Some(operation::Result::Response(any)) => {
            let response = re::ExecuteResponse::decode(any.value.as_slice())
                .map_err(|e| format!("ExecuteResponse does not decode: {e}"))?;
            if let Some(status) = &response.status {
                if status.code != 0 {
                    return Err(format!(
                        "Execute failed: code {}: {}",
                        status.code, status.message
                    ));
                }
            }
            let exit = response.result.as_ref().map_or(-1, |r| r.exit_code);
            if exit != 0 {
                return Err(format!("action exited with {exit}"));
            }
            Ok(Finished { response })
        }
        Some(operation::Result::Error(status)) => Err(format!(
            "operation failed: code {}: {}",
            status.code, status.message
        )),
        None => Err("done operation without a result".into()),
    }
}

fn stage(op: &Operation) -> i32 {
    op.metadata
        .as_ref()
        .and_then(|any| re::ExecuteOperationMetadata::decode(any.value.as_slice()).ok())
        .map_or(0, |m| m.stage)
}

async fn execute_to_end(
    client: &mut re::execution_client::ExecutionClient<Channel>,
    request: re::ExecuteRequest,
) -> Result<Finished, String> {
    let mut stream = client
        .execute(request)
        .await
        .map_err(|s| format!("Execute: {}: {}", s.code(), s.message()))?
        .into_inner();
    while let Some(op) = stream
        .message()
        .await
        .map_err(|s| format!("Execute stream: {}: {}", s.code(), s.message()))?
    {
        if op.done {
            // Read on to the trailers, as gRPC clients do: dropping a stream
            // early makes h2 reset it, and a connection that resets
            // thousands of streams ends with GOAWAY (ENHANCE_YOUR_CALM).
            if let Some(extra) = stream
                .message()
                .await
                .map_err(|s| format!("Execute stream end: {}: {}", s.code(), s.message()))?
            {
                return Err(format!("message after the final operation: {}", extra.name));
            }
            return decode_done(op);
        }
    }
    Err("Execute stream ended before the operation was done".into())
}

const STAGES: [&str; 6] = [
    "1 client -> queued",
    "2 queued -> worker start",
    "3 input fetch",
    "4 execution",
    "5 output upload",
    "6 worker done -> client",
];

fn since(a: Option<&reapi_core::proto::protobuf::Timestamp>, b: SystemTime) -> Option<u64> {
    let a = a?;
    let a = SystemTime::UNIX_EPOCH + Duration::new(a.seconds as u64, a.nanos as u32);
    b.duration_since(a).ok().map(|d| d.as_nanos() as u64)
}

fn ts(t: Option<&reapi_core::proto::protobuf::Timestamp>) -> Option<SystemTime> {
    let t = t?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32))
}

/// Stage durations from the executed-action metadata (server clock) and the
/// client's own clock at send and receive (the same clock when the server
/// runs on this machine).
fn stages(m: &re::ExecutedActionMetadata, sent: SystemTime, got: SystemTime) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut push = |i: usize, v: Option<u64>| {
        if let Some(v) = v {
            out.push((i, v));
        }
    };
    push(
        0,
        ts(m.queued_timestamp.as_ref())
            .and_then(|q| q.duration_since(sent).ok())
            .map(|d| d.as_nanos() as u64),
    );
    push(
        1,
        ts(m.worker_start_timestamp.as_ref()).and_then(|w| since(m.queued_timestamp.as_ref(), w)),
    );
    push(
        2,
        ts(m.input_fetch_completed_timestamp.as_ref())
            .and_then(|e| since(m.input_fetch_start_timestamp.as_ref(), e)),
    );
    push(
        3,
        ts(m.execution_completed_timestamp.as_ref())
            .and_then(|e| since(m.execution_start_timestamp.as_ref(), e)),
    );
    push(
        4,
        ts(m.output_upload_completed_timestamp.as_ref())
            .and_then(|e| since(m.output_upload_start_timestamp.as_ref(), e)),
    );
    push(5, since(m.worker_completed_timestamp.as_ref(), got));
    out
}

pub async fn execute(args: ExecuteArgs) -> Result<Vec<Report>, String> {
    let c = &args.common;
    let clients = c.connect().await?;
    let arguments = match args.command {
        Program::True => vec!["/bin/true".to_owned()],
        Program::Cat => vec!["/bin/cat".to_owned(), "in.txt".to_owned()],
    };
    let kit = action_kit(
        c.seed,
        arguments,
        args.input_size,
        args.timeout,
        args.mode == Mode::Uncached,
    );
    let mut uploads = kit.uploads.clone();
    let actions: Vec<Digest> = match args.mode {
        Mode::Unique => {
            let pool = args
                .pool
                .unwrap_or_else(|| c.count.map_or(6000, |n| n as usize + 500));
            let nonce = run_nonce();
            let mut digests = Vec::with_capacity(pool);
            for n in 0..pool as u64 {
                let (digest, upload) = salted(&kit.template, nonce ^ n.wrapping_mul(0x9e37_79b9));
                digests.push(digest);
                uploads.push(upload);
            }
            digests
        }
        Mode::Identical | Mode::Uncached => {
            let upload = Upload::message(&kit.template);
            let digest = upload.digest();
            uploads.push(upload);
            vec![digest]
        }
    };
    eprintln!("execute: set-up: uploading {} blobs", uploads.len());
    let started = std::time::Instant::now();
    let uploaded = ensure_present(&clients, uploads).await?;
    eprintln!(
        "execute: set-up: uploaded {uploaded} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let actions = Arc::new(actions);

    let mode = args.mode;
    let label = format!(
        "{} {}, {}, c={}",
        format!("{:?}", args.command).to_lowercase(),
        format_size(args.input_size),
        format!("{mode:?}").to_lowercase(),
        c.concurrency
    );
    let mut spec = c.spec(format!("execute {label}"));
    spec.extra = STAGES.to_vec();
    let instance = clients.instance().to_owned();
    let op_clients = clients.clone();
    let measured = run(&spec, move |worker, seq| {
        let digest = match mode {
            Mode::Unique => actions.get(seq as usize).copied(),
            Mode::Identical | Mode::Uncached => Some(actions[0]),
        };
        let request = digest.map(|d| re::ExecuteRequest {
            instance_name: instance.clone(),
            skip_cache_lookup: mode == Mode::Uncached,
            action_digest: Some(d.to_proto()),
            ..Default::default()
        });
        let mut client = op_clients.execution(worker);
        async move {
            let Some(request) = request else {
                return Err(OpError::Exhausted);
            };
            let sent = SystemTime::now();
            let finished = execute_to_end(&mut client, request).await?;
            let got = SystemTime::now();
            let cached = finished.response.cached_result;
            let extra = match finished
                .response
                .result
                .as_ref()
                .and_then(|r| r.execution_metadata.as_ref())
            {
                Some(m) if !cached => stages(m, sent, got),
                _ => Vec::new(),
            };
            Ok(Outcome {
                bytes: 0,
                items: 1,
                flagged: cached,
                extra,
            })
        }
    })
    .await;
    let mut report = Report::from_measured("execute", label, &measured)
        .param("mode", format!("{mode:?}").to_lowercase())
        .param("command", format!("{:?}", args.command).to_lowercase())
        .param("input_size", args.input_size);
    report.concurrency = c.concurrency;
    report.channels = clients.len();
    report.item_name = "actions".into();
    report.flagged_name = "cached results".into();
    if measured.exhausted {
        report.notes = vec!["the pool of unique actions ran out: raise --pool".into()];
    }
    Ok(vec![report])
}

/// Submits an Execute and returns the operation name once the operation has
/// reached `until_stage` (QUEUED = 2, EXECUTING = 3) or later.
pub(crate) async fn submit(
    client: &mut re::execution_client::ExecutionClient<Channel>,
    request: re::ExecuteRequest,
    until_stage: i32,
) -> Result<String, String> {
    let mut stream = client
        .execute(request)
        .await
        .map_err(|s| format!("Execute: {}: {}", s.code(), s.message()))?
        .into_inner();
    while let Some(op) = stream
        .message()
        .await
        .map_err(|s| format!("Execute stream: {}: {}", s.code(), s.message()))?
    {
        if op.done {
            return Err(format!(
                "operation {} finished while it was meant to wait",
                op.name
            ));
        }
        if stage(&op) >= until_stage {
            return Ok(op.name);
        }
    }
    Err("Execute stream ended early".into())
}

async fn cancel_all(clients: &Clients, names: Vec<String>) -> (usize, usize) {
    let results: Vec<bool> = futures::stream::iter(names.into_iter().enumerate())
        .map(|(i, name)| {
            let mut client = clients.operations(i);
            async move {
                client
                    .cancel_operation(CancelOperationRequest { name })
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let ok = results.iter().filter(|r| **r).count();
    (ok, results.len() - ok)
}

pub async fn queue_fill(args: QueueFillArgs) -> Result<Vec<Report>, String> {
    let c = &args.common;
    let count = c.count.unwrap_or(100_000);
    let clients = c.connect().await?;
    let instance = clients.instance().to_owned();
    let timeout = Duration::from_secs(args.blocker_seconds + 300);

    let blocker = action_kit(
        c.seed,
        vec!["/bin/sleep".into(), args.blocker_seconds.to_string()],
        64,
        timeout,
        true,
    );
    let queued = action_kit(
        c.seed,
        vec!["/bin/true".into()],
        64,
        Duration::from_secs(60),
        !args.distinct,
    );
    let mut uploads = blocker.uploads.clone();
    uploads.extend(queued.uploads.iter().cloned());
    let blocker_action = Upload::message(&blocker.template);
    let blocker_digest = blocker_action.digest();
    uploads.push(blocker_action);
    let nonce = run_nonce();
    let actions: Vec<Digest> = if args.distinct {
        (0..count)
            .map(|n| {
                let (digest, upload) = salted(&queued.template, nonce ^ n);
                uploads.push(upload);
                digest
            })
            .collect()
    } else {
        let upload = Upload::message(&queued.template);
        let digest = upload.digest();
        uploads.push(upload);
        vec![digest]
    };
    eprintln!("queue-fill: set-up: uploading {} blobs", uploads.len());
    ensure_present(&clients, uploads).await?;

    let mut blockers = Vec::new();
    for i in 0..args.blockers {
        let request = re::ExecuteRequest {
            instance_name: instance.clone(),
            skip_cache_lookup: true,
            action_digest: Some(blocker_digest.to_proto()),
            ..Default::default()
        };
        let name = tokio::time::timeout(
            Duration::from_secs(60),
            submit(&mut clients.execution(i), request, 3),
        )
        .await
        .map_err(|_| "a blocking action did not start executing within 60 s".to_owned())??;
        blockers.push(name);
    }
    eprintln!(
        "queue-fill: {} blocking action(s) executing",
        blockers.len()
    );
    tokio::time::sleep(args.settle).await;
    let before = c.server_pid.and_then(|p| procfs::sample(Some(p)));

    let names = Arc::new(Mutex::new(Vec::with_capacity(count as usize)));
    let spec = RunSpec {
        warmup: Duration::ZERO,
        count: Some(count),
        ..c.spec(format!("queue-fill {count}"))
    };
    let actions = Arc::new(actions);
    let op_names = Arc::clone(&names);
    let op_clients = clients.clone();
    let op_instance = instance.clone();
    let measured = run(&spec, move |worker, seq| {
        let digest = actions[(seq % actions.len() as u64) as usize];
        let request = re::ExecuteRequest {
            instance_name: op_instance.clone(),
            skip_cache_lookup: true,
            action_digest: Some(digest.to_proto()),
            ..Default::default()
        };
        let mut client = op_clients.execution(worker);
        let names = Arc::clone(&op_names);
        async move {
            let name = submit(&mut client, request, 2).await?;
            names.lock().map_err(|e| e.to_string())?.push(name);
            Ok(Outcome::new(0, 1))
        }
    })
    .await;
    tokio::time::sleep(args.settle).await;
    let after = c.server_pid.and_then(|p| procfs::sample(Some(p)));

    let label = format!(
        "{} {} actions queued, c={}",
        measured.ops,
        if args.distinct {
            "distinct"
        } else {
            "do_not_cache"
        },
        c.concurrency
    );
    let mut report = Report::from_measured("queue-fill", label, &measured)
        .param("count", count)
        .param("distinct", args.distinct)
        .param("blockers", args.blockers as u64);
    report.concurrency = c.concurrency;
    report.channels = clients.len();
    report.item_name = "actions".into();
    if let (Some(b), Some(a)) = (before, after) {
        report
            .figures
            .insert("rss_before_bytes".into(), b.rss_bytes as f64);
        report
            .figures
            .insert("rss_after_bytes".into(), a.rss_bytes as f64);
        if measured.ops > 0 {
            report.figures.insert(
                "rss_bytes_per_queued_action".into(),
                (a.rss_bytes as f64 - b.rss_bytes as f64) / measured.ops as f64,
            );
        }
    } else {
        report
            .notes
            .push("no --server-pid: server memory not measured".into());
    }

    if !args.no_cancel {
        let names = std::mem::take(&mut *names.lock().map_err(|e| e.to_string())?);
        eprintln!("queue-fill: cancelling {} operations", names.len());
        let (ok, failed) = cancel_all(&clients, names).await;
        let (bok, bfailed) = cancel_all(&clients, blockers).await;
        report.figures.insert("cancelled".into(), (ok + bok) as f64);
        if failed + bfailed > 0 {
            report
                .notes
                .push(format!("{} CancelOperation calls failed", failed + bfailed));
        }
    }
    Ok(vec![report])
}
