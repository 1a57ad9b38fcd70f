//! `cas-write` and `cas-read`: ByteStream Write of unique blobs and Read of
//! blobs uploaded during set-up.

use std::sync::Arc;

use clap::Args;

use crate::content::{run_nonce, BlobFactory};
use crate::options::Common;
use crate::report::Report;
use crate::runner::{run, Outcome};
use crate::stats::{format_size, parse_size};
use crate::transfer::{bytestream_read, bytestream_write, ensure_present, Upload};

#[derive(Args, Clone, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    pub common: Common,
    /// Blob size (1KiB .. 1GiB).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub size: u64,
    /// Data per WriteRequest (Bazel sends 16 KiB).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub chunk: u64,
}

#[derive(Args, Clone, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    pub common: Common,
    /// Blob size (1KiB .. 1GiB).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub size: u64,
    /// Distinct blobs uploaded during set-up and read in turn (default: two
    /// per worker, at most 1 GiB in all, at least one).
    #[arg(long)]
    pub pool: Option<usize>,
    /// Hash what is read and compare with the digest (costs client CPU).
    #[arg(long)]
    pub verify: bool,
}

pub async fn write(args: WriteArgs) -> Result<Vec<Report>, String> {
    let c = &args.common;
    let clients = c.connect().await?;
    let size = usize::try_from(args.size).map_err(|e| e.to_string())?;
    let chunk = usize::try_from(args.chunk.max(1)).map_err(|e| e.to_string())?;
    let factory = Arc::new(BlobFactory::new(size, run_nonce()));
    let label = format!(
        "{}, chunk {}, c={}",
        format_size(args.size),
        format_size(args.chunk),
        c.concurrency
    );
    let op_clients = clients.clone();
    let measured = run(&c.spec(format!("cas-write {label}")), move |worker, seq| {
        // Made and hashed here, before the timer.
        let blob = factory.blob(seq);
        let clients = op_clients.clone();
        async move {
            bytestream_write(&clients, worker, blob, chunk).await?;
            Ok(Outcome::new(size as u64, 1))
        }
    })
    .await;
    let mut report = Report::from_measured("cas-write", label, &measured)
        .param("size", args.size)
        .param("chunk", args.chunk);
    report.concurrency = c.concurrency;
    report.channels = clients.len();
    report.item_name = "blobs".into();
    Ok(vec![report])
}

pub async fn read(args: ReadArgs) -> Result<Vec<Report>, String> {
    let c = &args.common;
    let clients = c.connect().await?;
    let size = usize::try_from(args.size).map_err(|e| e.to_string())?;
    let pool = args
        .pool
        .unwrap_or_else(|| (c.concurrency * 2).min(((1usize << 30) / size.max(1)).max(1)))
        .max(1);
    // Seeded by size so each size has its own pool, reused across runs.
    let factory = BlobFactory::new(size, c.seed ^ (args.size << 8) ^ 0xcafe);
    let blobs: Vec<_> = (0..pool as u64).map(|n| factory.blob(n)).collect();
    eprintln!(
        "cas-read: set-up: {pool} blobs of {}",
        format_size(args.size)
    );
    let uploaded =
        ensure_present(&clients, blobs.iter().cloned().map(Upload::Blob).collect()).await?;
    eprintln!(
        "cas-read: set-up: uploaded {uploaded}, {} already present",
        pool - uploaded
    );
    let digests: Arc<Vec<_>> = Arc::new(blobs.iter().map(|b| b.digest).collect());
    drop(blobs);
    let label = format!("{}, c={}", format_size(args.size), c.concurrency);
    let op_clients = clients.clone();
    let verify = args.verify;
    let measured = run(&c.spec(format!("cas-read {label}")), move |worker, seq| {
        let digest = digests[(seq % digests.len() as u64) as usize];
        let clients = op_clients.clone();
        async move {
            let bytes = bytestream_read(&clients, worker, &digest, verify).await?;
            Ok(Outcome::new(bytes, 1))
        }
    })
    .await;
    let mut report = Report::from_measured("cas-read", label, &measured)
        .param("size", args.size)
        .param("pool", pool as u64)
        .param("verify", verify);
    report.concurrency = c.concurrency;
    report.channels = clients.len();
    report.item_name = "blobs".into();
    Ok(vec![report])
}
