//! `dispatch`: a scheduler's dispatch rate and queue-to-start latency,
//! measured with simulated workers (see `simulated_workers`) so no action
//! really runs. Talks to a scheduler without workers of its own
//! (`reapi-scheduler`), started with a long `--orphan_timeout`: the queued
//! operations' Execute streams are dropped once they are queued.
//!
//! Two phases:
//! 1. backlog: the workers hold still while `--queued` actions are queued,
//!    then all report free executors; the time until every action has been
//!    leased and finished gives dispatches per second with that backlog;
//! 2. steady: `--concurrency` clients each Execute and wait, with the
//!    workers free: completions per second and queue-to-start latency
//!    (lease offer arrival less the operation's queue time).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use reapi_core::proto::remote_execution as re;

use crate::client::{Clients, Target};
use crate::options::Common;
use crate::procfs;
use crate::report::{ProcFigures, Report};
use crate::runner::{run, Outcome};
use crate::scenarios::execute::{action_kit, submit};
use crate::simulated_workers;
use crate::stats::Latency;
use crate::transfer::{ensure_present, Upload};

/// Simulated workers sharing one HTTP/2 connection.
const WORKERS_PER_CONNECTION: usize = 25;

#[derive(Args, Clone, Debug)]
pub struct DispatchArgs {
    #[command(flatten)]
    pub common: Common,
    /// Simulated workers.
    #[arg(long, default_value_t = 200)]
    pub workers: usize,
    /// Executors per simulated worker.
    #[arg(long, default_value_t = 4)]
    pub executors: u32,
    /// Actions queued before the workers start taking leases.
    #[arg(long, default_value_t = 10_000)]
    pub queued: u64,
    /// Clients queueing the backlog at once.
    #[arg(long = "queue-concurrency", default_value_t = 64)]
    pub queue_concurrency: usize,
}

pub async fn dispatch(args: DispatchArgs) -> Result<Vec<Report>, String> {
    let c = &args.common;
    let clients = c.connect().await?;
    let instance = clients.instance().to_owned();
    let kit = action_kit(
        c.seed,
        vec!["/bin/true".into()],
        64,
        Duration::from_secs(60),
        true,
    );
    let action = Upload::message(&kit.template);
    let digest = action.digest();
    let mut uploads = kit.uploads.clone();
    uploads.push(action);
    ensure_present(&clients, uploads).await?;
    let request = re::ExecuteRequest {
        instance_name: instance,
        skip_cache_lookup: true,
        action_digest: Some(digest.to_proto()),
        ..Default::default()
    };

    // The workers get connections of their own: the queued operations'
    // Execute streams are dropped, and once those operations progress the
    // server resets them; past ~1000 resets h2 closes a connection
    // (ENHANCE_YOUR_CALM), which must not take worker links with it.
    let worker_clients = Clients::connect(
        &Target::parse(&c.target, &c.instance)?,
        args.workers.div_ceil(WORKERS_PER_CONNECTION),
    )
    .await?;
    let channels: Vec<_> = (0..worker_clients.len())
        .map(|i| worker_clients.channel(i))
        .collect();
    let workers = simulated_workers::start(&channels, args.workers, args.executors).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while workers.linked.load(Ordering::SeqCst) < args.workers as u64 {
        if Instant::now() > deadline {
            return Err("the simulated workers were not all welcomed within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("dispatch: {} simulated workers linked", args.workers);

    // Phase 1: a backlog, then every executor free at once.
    let queued = futures::stream::iter(0..args.queued)
        .map(|i| {
            let mut client = clients.execution(i as usize);
            let request = request.clone();
            async move { submit(&mut client, request, 2).await }
        })
        .buffer_unordered(args.queue_concurrency)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await as u64;
    if queued < args.queued {
        return Err(format!(
            "only {queued} of {} actions were queued",
            args.queued
        ));
    }
    eprintln!("dispatch: {queued} actions queued; releasing the workers");
    let before = c.server_pid.and_then(|p| procfs::sample(Some(p)));
    let started = Instant::now();
    workers.open();
    let limit = started + c.max_time;
    while workers.finished.load(Ordering::SeqCst) < queued {
        if Instant::now() > limit {
            return Err(format!(
                "only {} of {queued} leases finished within {:?}",
                workers.finished.load(Ordering::SeqCst),
                c.max_time
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = c.server_pid.and_then(|p| procfs::sample(Some(p)));
    let backlog_latency = workers.take_latency();
    let mut backlog = Report {
        scenario: "dispatch".into(),
        label: format!(
            "backlog {queued}, {} workers x {}",
            args.workers, args.executors
        ),
        ops: queued,
        elapsed_s: elapsed,
        ops_per_s: queued as f64 / elapsed,
        items: queued,
        items_per_s: queued as f64 / elapsed,
        item_name: "dispatches".into(),
        latency: Latency::of(&backlog_latency),
        concurrency: args.workers * args.executors as usize,
        channels: clients.len(),
        server: match (before, after) {
            (Some(a), Some(b)) => {
                let cpu = (b.cpu_seconds - a.cpu_seconds).max(0.0);
                Some(ProcFigures {
                    rss_before_bytes: a.rss_bytes,
                    rss_after_bytes: b.rss_bytes,
                    hwm_after_bytes: b.hwm_bytes,
                    cpu_seconds: cpu,
                    cpu_cores: cpu / elapsed,
                })
            }
            _ => None,
        },
        ..Default::default()
    }
    .param("queued", queued)
    .param("workers", args.workers as u64)
    .param("executors", u64::from(args.executors));
    if let Some(server) = &backlog.server {
        backlog.figures.insert(
            "server_cpu_us_per_dispatch".into(),
            server.cpu_seconds * 1e6 / queued as f64,
        );
    }

    // Phase 2: steady closed-loop load with free workers.
    let label = format!(
        "steady, c={}, {} workers x {}",
        c.concurrency, args.workers, args.executors
    );
    let spec = c.spec(label.clone());
    // Fresh connections: the backlog's dropped streams may have had the
    // server close the old ones.
    let execution = c.connect().await?;
    let measured = run(&spec, move |worker, _| {
        let mut client = execution.execution(worker);
        let request = request.clone();
        async move {
            let mut stream = client
                .execute(request)
                .await
                .map_err(|s| format!("Execute: {}: {}", s.code(), s.message()))?
                .into_inner();
            // Read to the trailers: a stream dropped early is reset, and
            // enough resets make h2 close the connection.
            let mut done = false;
            while let Some(op) = stream
                .message()
                .await
                .map_err(|s| format!("Execute stream: {}: {}", s.code(), s.message()))?
            {
                done |= op.done;
            }
            if done {
                Ok(Outcome::new(0, 1))
            } else {
                Err("Execute stream ended before the operation was done".into())
            }
        }
    })
    .await;
    let mut steady = Report::from_measured("dispatch", label, &measured)
        .param("workers", args.workers as u64)
        .param("executors", u64::from(args.executors));
    steady.item_name = "actions".into();
    steady.stages.insert(
        "queue_to_start".into(),
        Latency::of(&workers.take_latency()),
    );
    Ok(vec![backlog, steady])
}
