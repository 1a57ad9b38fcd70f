//! `ac`: GetActionResult hits (results stored during set-up, whose outputs
//! are present) and misses, and UpdateActionResult of fresh keys.

use std::sync::Arc;

use clap::{Args, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use reapi_core::proto::remote_execution as re;
use reapi_core::{Digest, DigestFunction};
use tonic::Code;

use crate::client::Clients;
use crate::content::{fill_random, run_nonce, splitmix64, BlobFactory};
use crate::options::Common;
use crate::report::Report;
use crate::runner::{run, OpError, Outcome};
use crate::stats::parse_size;
use crate::transfer::{ensure_present, Upload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AcOp {
    Hit,
    Miss,
    Update,
}

#[derive(Args, Clone, Debug)]
pub struct AcArgs {
    #[command(flatten)]
    pub common: Common,
    /// Calls to measure, one after the other.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "hit,miss,update"
    )]
    pub ops: Vec<AcOp>,
    /// Action results stored during set-up (the keys hits pick from).
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Output files per action result (besides stdout).
    #[arg(long, default_value_t = 2)]
    pub outputs: usize,
    /// Size of each output blob.
    #[arg(long = "output-size", default_value = "1KiB", value_parser = parse_size)]
    pub output_size: u64,
}

fn random_digest(seed: u64) -> Digest {
    let mut hash = [0u8; 32];
    fill_random(&mut hash, seed);
    Digest::new(DigestFunction::Sha256, hash, 140)
}

pub async fn ac(args: AcArgs) -> Result<Vec<Report>, String> {
    let c = &args.common;
    let clients = c.connect().await?;
    let instance = clients.instance().to_owned();

    // The outputs every stored result names, and the result itself.
    let factory = BlobFactory::new(args.output_size as usize, c.seed ^ 0xac0);
    let outputs: Vec<_> = (0..=args.outputs as u64).map(|n| factory.blob(n)).collect();
    ensure_present(
        &clients,
        outputs.iter().cloned().map(Upload::Blob).collect(),
    )
    .await?;
    let result = re::ActionResult {
        output_files: outputs[1..]
            .iter()
            .enumerate()
            .map(|(i, b)| re::OutputFile {
                path: format!("out/file{i}"),
                digest: Some(b.digest.to_proto()),
                is_executable: false,
                ..Default::default()
            })
            .collect(),
        exit_code: 0,
        stdout_digest: Some(outputs[0].digest.to_proto()),
        execution_metadata: Some(re::ExecutedActionMetadata {
            worker: "reapi-bench".into(),
            ..Default::default()
        }),
        ..Default::default()
    };

    let keys: Arc<Vec<Digest>> = Arc::new(
        (0..args.keys.max(1) as u64)
            .map(|n| random_digest(c.seed ^ 0xac_0000 ^ n.wrapping_mul(0x9e37_79b9)))
            .collect(),
    );
    if args.ops.contains(&AcOp::Hit) {
        eprintln!("ac: set-up: storing {} action results", keys.len());
        store_results(&clients, &keys, &result).await?;
    }

    let key_count = keys.len();
    let nonce = run_nonce();
    let mut reports = Vec::new();
    for op in &args.ops {
        let (scenario, label) = match op {
            AcOp::Hit => (
                "ac-hit",
                format!("GetActionResult hit, c={}", c.concurrency),
            ),
            AcOp::Miss => (
                "ac-miss",
                format!("GetActionResult miss, c={}", c.concurrency),
            ),
            AcOp::Update => (
                "ac-update",
                format!("UpdateActionResult, c={}", c.concurrency),
            ),
        };
        let op_clients = clients.clone();
        let keys = Arc::clone(&keys);
        let instance = instance.clone();
        let result = result.clone();
        let op = *op;
        let expected_outputs = args.outputs;
        let measured = run(
            &c.spec(format!("{scenario} c={}", c.concurrency)),
            move |worker, seq| {
                let mut client = op_clients.action_cache(worker);
                let instance = instance.clone();
                let mut state = seq ^ nonce;
                let pick = splitmix64(&mut state);
                let key = match op {
                    AcOp::Hit => keys[(pick % keys.len() as u64) as usize],
                    AcOp::Miss | AcOp::Update => random_digest(pick ^ nonce.rotate_left(17)),
                };
                let result = (op == AcOp::Update).then(|| result.clone());
                async move {
                    match result {
                        None => {
                            let request = re::GetActionResultRequest {
                                instance_name: instance,
                                action_digest: Some(key.to_proto()),
                                ..Default::default()
                            };
                            match client.get_action_result(request).await {
                                Ok(r) if op == AcOp::Hit => {
                                    let files = r.into_inner().output_files.len();
                                    if files != expected_outputs {
                                        return Err(OpError::Failed(format!(
                                            "hit with {files} output files"
                                        )));
                                    }
                                    Ok(Outcome::new(0, 1))
                                }
                                Err(s) if op == AcOp::Miss && s.code() == Code::NotFound => {
                                    Ok(Outcome::new(0, 1))
                                }
                                Ok(_) => Err(OpError::Failed(format!("{key}: unexpected hit"))),
                                Err(s) => {
                                    Err(OpError::Failed(format!("GetActionResult {key}: {s}")))
                                }
                            }
                        }
                        Some(result) => {
                            let request = re::UpdateActionResultRequest {
                                instance_name: instance,
                                action_digest: Some(key.to_proto()),
                                action_result: Some(result),
                                ..Default::default()
                            };
                            client
                                .update_action_result(request)
                                .await
                                .map_err(|s| OpError::Failed(format!("UpdateActionResult: {s}")))?;
                            Ok(Outcome::new(0, 1))
                        }
                    }
                }
            },
        )
        .await;
        let mut report = Report::from_measured(scenario, label, &measured)
            .param("op", format!("{op:?}").to_lowercase())
            .param("keys", key_count as u64)
            .param("outputs", args.outputs as u64);
        report.concurrency = c.concurrency;
        report.channels = clients.len();
        report.item_name = "requests".into();
        reports.push(report);
    }
    Ok(reports)
}

async fn store_results(
    clients: &Clients,
    keys: &[Digest],
    result: &re::ActionResult,
) -> Result<(), String> {
    futures::stream::iter(keys.iter().enumerate())
        .map(|(i, key)| {
            let request = re::UpdateActionResultRequest {
                instance_name: clients.instance().to_owned(),
                action_digest: Some(key.to_proto()),
                action_result: Some(result.clone()),
                ..Default::default()
            };
            let mut client = clients.action_cache(i);
            async move {
                client
                    .update_action_result(request)
                    .await
                    .map(drop)
                    .map_err(|s| format!("UpdateActionResult during set-up: {s}"))
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}
