//! `batch`: BatchUpdateBlobs of unique small blobs and BatchReadBlobs of
//! blobs uploaded during set-up.

use std::sync::Arc;

use clap::{Args, ValueEnum};
use reapi_core::proto::remote_execution as re;
use tonic::Code;

use crate::content::{run_nonce, BlobFactory};
use crate::options::Common;
use crate::report::Report;
use crate::runner::{run, OpError, Outcome};
use crate::stats::{format_size, parse_size};
use crate::transfer::{batch_update, ensure_present, Upload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BatchOp {
    Update,
    Read,
    Both,
}

#[derive(Args, Clone, Debug)]
pub struct BatchArgs {
    #[command(flatten)]
    pub common: Common,
    /// Size of each blob.
    #[arg(long = "blob-size", default_value = "4KiB", value_parser = parse_size)]
    pub blob_size: u64,
    /// Blobs per request.
    #[arg(long = "per-request", default_value_t = 100)]
    pub per_request: usize,
    /// Which call to measure; `both` measures update, then read.
    #[arg(long, value_enum, default_value = "both")]
    pub op: BatchOp,
    /// Blobs uploaded during set-up for reads (default: 8 requests' worth).
    #[arg(long)]
    pub pool: Option<usize>,
}

pub async fn batch(args: BatchArgs) -> Result<Vec<Report>, String> {
    let c = &args.common;
    let per = args.per_request.max(1);
    let size = usize::try_from(args.blob_size).map_err(|e| e.to_string())?;
    if per * size > 4 << 20 {
        return Err(format!(
            "{per} blobs of {} exceed the usual 4 MiB batch limit",
            format_size(args.blob_size)
        ));
    }
    let clients = c.connect().await?;
    let label = format!(
        "{} x {}, c={}",
        per,
        format_size(args.blob_size),
        c.concurrency
    );
    let mut reports = Vec::new();

    if matches!(args.op, BatchOp::Update | BatchOp::Both) {
        let factory = Arc::new(BlobFactory::new(size, run_nonce()));
        let op_clients = clients.clone();
        let measured = run(
            &c.spec(format!("batch-update {label}")),
            move |worker, seq| {
                let blobs: Vec<_> = (0..per as u64)
                    .map(|j| {
                        let blob = factory.blob(seq * per as u64 + j);
                        (blob.digest, blob.to_vec())
                    })
                    .collect();
                let clients = op_clients.clone();
                async move {
                    batch_update(&clients, worker, blobs).await?;
                    Ok(Outcome::new((per * size) as u64, per as u64))
                }
            },
        )
        .await;
        let mut report = Report::from_measured("batch-update", label.clone(), &measured)
            .param("blob_size", args.blob_size)
            .param("per_request", per as u64);
        report.concurrency = c.concurrency;
        report.channels = clients.len();
        report.item_name = "blobs".into();
        reports.push(report);
    }

    if matches!(args.op, BatchOp::Read | BatchOp::Both) {
        let pool = args.pool.unwrap_or(per * 8).max(per);
        let factory = BlobFactory::new(size, c.seed ^ (args.blob_size << 8) ^ 0xba7c);
        let blobs: Vec<_> = (0..pool as u64).map(|n| factory.blob(n)).collect();
        eprintln!("batch-read: set-up: {pool} blobs");
        let uploaded =
            ensure_present(&clients, blobs.iter().cloned().map(Upload::Blob).collect()).await?;
        eprintln!("batch-read: set-up: uploaded {uploaded}");
        let digests: Arc<Vec<re::Digest>> =
            Arc::new(blobs.iter().map(|b| b.digest.to_proto()).collect());
        let instance = clients.instance().to_owned();
        let op_clients = clients.clone();
        let measured = run(
            &c.spec(format!("batch-read {label}")),
            move |worker, seq| {
                let start = (seq as usize * per) % pool;
                let request = re::BatchReadBlobsRequest {
                    instance_name: instance.clone(),
                    digests: (0..per)
                        .map(|j| digests[(start + j) % pool].clone())
                        .collect(),
                    acceptable_compressors: vec![],
                    digest_function: 0,
                };
                let mut client = op_clients.cas(worker);
                async move {
                    let response = client
                        .batch_read_blobs(request)
                        .await
                        .map_err(|s| OpError::Failed(format!("BatchReadBlobs: {s}")))?
                        .into_inner();
                    let mut bytes = 0u64;
                    for r in &response.responses {
                        let code = r.status.as_ref().map_or(0, |s| s.code);
                        if code != Code::Ok as i32 || r.data.len() != size {
                            return Err(OpError::Failed(format!(
                                "BatchReadBlobs: blob {:?}: code {code}, {} bytes",
                                r.digest,
                                r.data.len()
                            )));
                        }
                        bytes += r.data.len() as u64;
                    }
                    if response.responses.len() != per {
                        return Err(OpError::Failed(format!(
                            "BatchReadBlobs: {} responses for {per} digests",
                            response.responses.len()
                        )));
                    }
                    Ok(Outcome::new(bytes, per as u64))
                }
            },
        )
        .await;
        let mut report = Report::from_measured("batch-read", label, &measured)
            .param("blob_size", args.blob_size)
            .param("per_request", per as u64)
            .param("pool", pool as u64);
        report.concurrency = c.concurrency;
        report.channels = clients.len();
        report.item_name = "blobs".into();
        reports.push(report);
    }
    Ok(reports)
}
