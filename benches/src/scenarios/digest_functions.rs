//! `cas-digest`: what a verified write costs the server under each digest
//! function. ByteStream writes of one large random blob and BatchUpdateBlobs
//! of many small ones, under SHA-256 and BLAKE3 in alternation so both see
//! the same machine; every blob is unique (the run, round and function are
//! in its first bytes) and is made and hashed by the client before the
//! timer. Reports throughput and, with `--server-pid`, the server's CPU per
//! GB written.

use std::time::Instant;

use clap::Args;
use reapi_core::proto::remote_execution as re;
use reapi_core::DigestFunction;

use crate::content::{fill_random, run_nonce};
use crate::options::{instance_prefix, Common};
use crate::stats::{format_size, parse_size};

use super::zstd::{server_cpu, timed_write};

#[derive(Args, Clone, Debug)]
pub struct DigestArgs {
    #[command(flatten)]
    pub common: Common,
    /// Size of the large blob written with ByteStream.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Size of each small blob written with BatchUpdateBlobs.
    #[arg(long, default_value = "4KiB", value_parser = parse_size)]
    pub small_size: u64,
    /// Small blobs per BatchUpdateBlobs request.
    #[arg(long, default_value_t = 800)]
    pub per_batch: usize,
    /// Batch requests per round.
    #[arg(long, default_value_t = 16)]
    pub batches: usize,
    /// Rounds; each writes one large blob and the batches with each function.
    #[arg(long, default_value_t = 4)]
    pub rounds: u32,
}

/// Seconds, bytes and server CPU seconds of one kind of write.
#[derive(Default, Clone, Copy)]
struct Tally {
    seconds: f64,
    bytes: u64,
    server_cpu: f64,
}

impl Tally {
    fn add(&mut self, seconds: f64, bytes: u64, server_cpu: f64) {
        self.seconds += seconds;
        self.bytes += bytes;
        self.server_cpu += server_cpu;
    }

    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }

    fn cpu_per_gb(&self) -> Option<f64> {
        (self.server_cpu > 0.0).then(|| self.server_cpu / (self.bytes as f64 / 1e9))
    }
}

/// Unique random content: the seed and a tag in the first 16 bytes.
fn blob(len: usize, seed: u64, tag: u64) -> Vec<u8> {
    let mut data = vec![0u8; len.max(16)];
    fill_random(&mut data, seed ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    data[..8].copy_from_slice(&seed.to_le_bytes());
    data[8..16].copy_from_slice(&tag.to_le_bytes());
    data.truncate(len);
    data
}

pub async fn digest_functions(args: DigestArgs) -> Result<(), String> {
    let c = &args.common;
    let clients = c.connect().await?;
    let prefix = instance_prefix(&c.instance);
    let nonce = run_nonce();
    let size = usize::try_from(args.size).map_err(|e| e.to_string())?;
    let small = usize::try_from(args.small_size).map_err(|e| e.to_string())?;
    let mut large = [Tally::default(); 2];
    let mut batched = [Tally::default(); 2];
    let mut tag = 0u64;
    for _ in 0..args.rounds {
        for (slot, function) in DigestFunction::ALL.into_iter().enumerate() {
            tag += 1;
            let data = blob(size, nonce, tag);
            let digest = function.digest_of(&data);
            let segment = match function {
                DigestFunction::Sha256 => String::new(),
                other => format!("{other}/"),
            };
            let name = format!(
                "{prefix}uploads/{}/blobs/{segment}{}/{}",
                uuid::Uuid::new_v4(),
                digest.hash_hex(),
                digest.size()
            );
            let (seconds, cpu) = timed_write(&clients, name, &data, &digest, c.server_pid).await?;
            large[slot].add(seconds, size as u64, cpu);

            let mut requests = Vec::with_capacity(args.batches);
            for _ in 0..args.batches {
                let entries = (0..args.per_batch)
                    .map(|_| {
                        tag += 1;
                        let data = blob(small, nonce, tag);
                        re::batch_update_blobs_request::Request {
                            digest: Some(function.digest_of(&data).to_proto()),
                            data,
                            compressor: 0,
                        }
                    })
                    .collect();
                requests.push(re::BatchUpdateBlobsRequest {
                    instance_name: c.instance.clone(),
                    requests: entries,
                    digest_function: function.proto_value(),
                });
            }
            let cpu = server_cpu(c.server_pid);
            let start = Instant::now();
            for request in requests {
                let responses = clients
                    .cas(0)
                    .batch_update_blobs(request)
                    .await
                    .map_err(|s| format!("BatchUpdateBlobs: {}: {}", s.code(), s.message()))?
                    .into_inner()
                    .responses;
                if let Some(failed) = responses
                    .iter()
                    .find(|r| r.status.as_ref().is_some_and(|s| s.code != 0))
                {
                    return Err(format!("BatchUpdateBlobs entry failed: {failed:?}"));
                }
            }
            batched[slot].add(
                start.elapsed().as_secs_f64(),
                (small * args.per_batch * args.batches) as u64,
                server_cpu(c.server_pid) - cpu,
            );
        }
    }
    let cpu = |t: &Tally| {
        t.cpu_per_gb()
            .map_or("-".into(), |v| format!("{v:.2} s/GB"))
    };
    println!(
        "| writes ({} rounds) | SHA-256 | BLAKE3 | BLAKE3/SHA-256 | server CPU SHA-256 | server CPU BLAKE3 |",
        args.rounds
    );
    println!("|---|---|---|---|---|---|");
    for (what, [sha, blake]) in [
        (
            format!("ByteStream, one {} blob", format_size(args.size)),
            large,
        ),
        (
            format!(
                "BatchUpdateBlobs, {} × {} blobs",
                args.per_batch,
                format_size(args.small_size)
            ),
            batched,
        ),
    ] {
        println!(
            "| {what} | {:.0} MB/s | {:.0} MB/s | {:.2} × | {} | {} |",
            sha.mb_per_s(),
            blake.mb_per_s(),
            blake.mb_per_s() / sha.mb_per_s(),
            cpu(&sha),
            cpu(&blake)
        );
    }
    Ok(())
}
