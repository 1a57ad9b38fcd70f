//! `find-missing`: FindMissingBlobs with many digests per request, a given
//! fraction of them present (uploaded during set-up).

use std::sync::Arc;

use clap::Args;
use reapi_core::proto::remote_execution as re;
use reapi_core::{Digest, DigestFunction};

use crate::content::{fill_random, run_nonce, BlobFactory};
use crate::options::Common;
use crate::report::Report;
use crate::runner::{run, OpError, Outcome};
use crate::transfer::{ensure_present, Upload};

#[derive(Args, Clone, Debug)]
pub struct FindMissingArgs {
    #[command(flatten)]
    pub common: Common,
    /// Digests per request.
    #[arg(long, default_value_t = 10_000)]
    pub digests: usize,
    /// Fraction of each request's digests that are present.
    #[arg(long = "present-fraction", default_value_t = 0.5)]
    pub present_fraction: f64,
    /// Distinct requests prepared before the run and sent in turn.
    #[arg(long, default_value_t = 8)]
    pub variants: usize,
    /// Size of the present blobs.
    #[arg(long = "blob-size", default_value_t = 32)]
    pub blob_size: usize,
}

pub async fn find_missing(args: FindMissingArgs) -> Result<Vec<Report>, String> {
    let c = &args.common;
    let total = args.digests.max(1);
    let fraction = args.present_fraction.clamp(0.0, 1.0);
    let present = ((total as f64) * fraction).round() as usize;
    let missing = total - present;
    let clients = c.connect().await?;

    let factory = BlobFactory::new(args.blob_size, c.seed ^ 0xf1d0);
    let present_blobs: Vec<_> = (0..present as u64).map(|n| factory.blob(n)).collect();
    eprintln!("find-missing: set-up: {present} present blobs");
    let uploaded = ensure_present(
        &clients,
        present_blobs.iter().cloned().map(Upload::Blob).collect(),
    )
    .await?;
    eprintln!("find-missing: set-up: uploaded {uploaded}");
    let present_digests: Vec<Digest> = present_blobs.iter().map(|b| b.digest).collect();
    drop(present_blobs);

    // Each variant: the present digests rotated, and fresh random missing
    // ones, spread evenly through the request.
    let nonce = run_nonce();
    let mut requests = Vec::with_capacity(args.variants.max(1));
    for v in 0..args.variants.max(1) {
        let mut digests = Vec::with_capacity(total);
        let rotate = if present > 0 {
            v * present / args.variants.max(1)
        } else {
            0
        };
        let (mut p, mut m) = (0usize, 0usize);
        for i in 0..total {
            // Position i takes a present digest while present ones are
            // behind their share.
            let want_present = p < present && (m >= missing || p * total <= i * present);
            if want_present {
                digests.push(present_digests[(p + rotate) % present].to_proto());
                p += 1;
            } else {
                let mut hash = [0u8; 32];
                fill_random(
                    &mut hash,
                    nonce ^ ((v as u64) << 40) ^ (m as u64).wrapping_mul(0x9e37),
                );
                digests.push(
                    Digest::new(DigestFunction::Sha256, hash, args.blob_size as u64).to_proto(),
                );
                m += 1;
            }
        }
        requests.push(re::FindMissingBlobsRequest {
            instance_name: clients.instance().to_owned(),
            blob_digests: digests,
            digest_function: 0,
        });
    }
    let requests = Arc::new(requests);

    let label = format!(
        "{total} digests, {:.0}% present, c={}",
        fraction * 100.0,
        c.concurrency
    );
    let op_clients = clients.clone();
    let measured = run(
        &c.spec(format!("find-missing {label}")),
        move |worker, seq| {
            let request = requests[(seq % requests.len() as u64) as usize].clone();
            let mut client = op_clients.cas(worker);
            async move {
                let response = client
                    .find_missing_blobs(request)
                    .await
                    .map_err(|s| OpError::Failed(format!("FindMissingBlobs: {s}")))?
                    .into_inner();
                if response.missing_blob_digests.len() != missing {
                    return Err(OpError::Failed(format!(
                        "FindMissingBlobs: {} missing, expected {missing}",
                        response.missing_blob_digests.len()
                    )));
                }
                Ok(Outcome::new(0, total as u64))
            }
        },
    )
    .await;
    let mut report = Report::from_measured("find-missing", label, &measured)
        .param("digests", total as u64)
        .param("present_fraction", fraction);
    report.concurrency = c.concurrency;
    report.channels = clients.len();
    report.item_name = "digests".into();
    Ok(vec![report])
}
