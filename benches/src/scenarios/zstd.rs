//! `cas-zstd`: ByteStream write and read of one large compressible blob (real
//! static libraries, the kind of build output remote caches hold), plain
//! and through `compressed-blobs/zstd/`, alternating so both see the same
//! machine. Reports throughput in uncompressed bytes, bytes on the wire and
//! the server's CPU per GB (with `--server-pid`). The client compresses its
//! uploads before the timer, as a build tool holding compressed outputs
//! would; it decompresses nothing it reads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use reapi_core::proto::bytestream::{ReadRequest, WriteRequest};
use reapi_core::Digest;

use crate::client::Clients;
use crate::content::run_nonce;
use crate::options::{instance_prefix, Common};
use crate::procfs;
use crate::stats::{format_size, parse_size};

#[derive(Args, Clone, Debug)]
pub struct ZstdArgs {
    #[command(flatten)]
    pub common: Common,
    /// Blob size.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Writes and reads of each kind.
    #[arg(long, default_value_t = 4)]
    pub rounds: u32,
    /// Where the static libraries (`*.a`) the blob is made of are.
    #[arg(long, default_value = "/usr/lib/x86_64-linux-gnu")]
    pub source: PathBuf,
    /// zstd level of the client's uploads (zstd's default is 3).
    #[arg(long, default_value_t = 3)]
    pub level: i32,
}

/// One measured transfer.
#[derive(Default, Clone, Copy)]
struct Tally {
    seconds: f64,
    wire_bytes: u64,
    blob_bytes: u64,
    server_cpu: f64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.seconds += other.seconds;
        self.wire_bytes += other.wire_bytes;
        self.blob_bytes += other.blob_bytes;
        self.server_cpu += other.server_cpu;
    }

    fn line(&self, what: &str) -> String {
        let gb = self.blob_bytes as f64 / 1e9;
        format!(
            "| {what} | {:.0} MB/s | {:.1} MiB | {} |",
            self.blob_bytes as f64 / self.seconds / 1e6,
            self.wire_bytes as f64 / (1 << 20) as f64,
            if self.server_cpu > 0.0 {
                format!("{:.2} s/GB", self.server_cpu / gb)
            } else {
                "-".into()
            }
        )
    }
}

/// `size` bytes of static libraries, largest first, repeated if needed.
fn build_output(source: &Path, size: usize) -> Result<Vec<u8>, String> {
    let mut libraries: Vec<(u64, PathBuf)> = std::fs::read_dir(source)
        .map_err(|e| format!("{}: {e}", source.display()))?
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "a"))
        .filter_map(|entry| Some((entry.metadata().ok()?.len(), entry.path())))
        .collect();
    libraries.sort_by(|a, b| b.cmp(a));
    if libraries.is_empty() {
        return Err(format!("no static library (*.a) in {}", source.display()));
    }
    let mut blob = Vec::with_capacity(size);
    'fill: loop {
        for (_, path) in &libraries {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let room = size - blob.len();
            blob.extend_from_slice(&bytes[..bytes.len().min(room)]);
            if blob.len() == size {
                break 'fill;
            }
        }
    }
    Ok(blob)
}

pub(crate) fn server_cpu(pid: Option<u32>) -> f64 {
    procfs::sample(pid).map_or(0.0, |s| s.cpu_seconds)
}

pub async fn zstd(args: ZstdArgs) -> Result<(), String> {
    let c = &args.common;
    let clients = c.connect().await?;
    let size = usize::try_from(args.size).map_err(|e| e.to_string())?;
    let base = build_output(&args.source, size)?;
    let ratio = zstd::bulk::compress(&base, args.level)
        .map_err(|e| e.to_string())?
        .len() as f64
        / size as f64;
    eprintln!(
        "cas-zstd: {} of static libraries, zstd level {} to {:.1} % of it",
        format_size(args.size),
        args.level,
        ratio * 100.0
    );
    let prefix = instance_prefix(&c.instance);
    let nonce = run_nonce();
    let (mut write_plain, mut write_zstd) = (Tally::default(), Tally::default());
    for round in 0..u64::from(args.rounds) {
        for compressed in [false, true] {
            // Unique per write: the first 16 bytes carry the run, round and
            // kind; made and compressed before the timer.
            let mut blob = base.clone();
            blob[..8].copy_from_slice(&nonce.to_le_bytes());
            blob[8..16].copy_from_slice(&(round * 2 + u64::from(compressed)).to_le_bytes());
            let digest = Digest::of_bytes(&blob);
            let (name, payload) = if compressed {
                let payload = zstd::bulk::compress(&blob, args.level).map_err(|e| e.to_string())?;
                (
                    format!(
                        "{prefix}uploads/{}/compressed-blobs/zstd/{}/{}",
                        uuid::Uuid::new_v4(),
                        digest.hash_hex(),
                        digest.size()
                    ),
                    payload,
                )
            } else {
                (
                    format!(
                        "{prefix}uploads/{}/blobs/{}/{}",
                        uuid::Uuid::new_v4(),
                        digest.hash_hex(),
                        digest.size()
                    ),
                    blob,
                )
            };
            let (seconds, cpu) =
                timed_write(&clients, name, &payload, &digest, c.server_pid).await?;
            let tally = Tally {
                seconds,
                wire_bytes: payload.len() as u64,
                blob_bytes: size as u64,
                server_cpu: cpu,
            };
            if compressed {
                write_zstd.add(tally);
            } else {
                write_plain.add(tally);
            }
        }
    }

    let digest = Digest::of_bytes(&base);
    let name = format!(
        "{prefix}uploads/{}/blobs/{}/{}",
        uuid::Uuid::new_v4(),
        digest.hash_hex(),
        size
    );
    clients
        .bytestream(0)
        .write(futures::stream::iter(write_requests(name, &base)))
        .await
        .map_err(|s| format!("Write {digest}: {}: {}", s.code(), s.message()))?;
    let (mut read_plain, mut read_zstd) = (Tally::default(), Tally::default());
    for _ in 0..args.rounds {
        for compressed in [false, true] {
            let resource = if compressed {
                format!("{prefix}compressed-blobs/zstd/{}/{size}", digest.hash_hex())
            } else {
                format!("{prefix}blobs/{}/{size}", digest.hash_hex())
            };
            let cpu = server_cpu(c.server_pid);
            let start = Instant::now();
            let mut stream = clients
                .bytestream(0)
                .read(ReadRequest {
                    resource_name: resource,
                    read_offset: 0,
                    read_limit: 0,
                })
                .await
                .map_err(|s| format!("Read: {}: {}", s.code(), s.message()))?
                .into_inner();
            let mut wire = 0u64;
            while let Some(message) = stream
                .message()
                .await
                .map_err(|s| format!("Read: {}: {}", s.code(), s.message()))?
            {
                wire += message.data.len() as u64;
            }
            let tally = Tally {
                seconds: start.elapsed().as_secs_f64(),
                wire_bytes: wire,
                blob_bytes: size as u64,
                server_cpu: server_cpu(c.server_pid) - cpu,
            };
            if compressed {
                read_zstd.add(tally);
            } else {
                read_plain.add(tally);
            }
        }
    }
    println!(
        "| transfer of {} ({} each) | throughput (uncompressed) | on the wire | server CPU |",
        format_size(args.size),
        args.rounds
    );
    println!("|---|---|---|---|");
    println!("{}", write_plain.line("write, plain"));
    println!(
        "{}",
        write_zstd.line(&format!("write, zstd level {}", args.level))
    );
    println!("{}", read_plain.line("read, plain"));
    println!(
        "{}",
        read_zstd.line("read, zstd (server compresses, level 1)")
    );
    Ok(())
}

/// Writes `payload` as the ByteStream resource `name`; the seconds it took
/// and the server's CPU seconds meanwhile (0 without `server_pid`).
pub(crate) async fn timed_write(
    clients: &Clients,
    name: String,
    payload: &[u8],
    digest: &Digest,
    server_pid: Option<u32>,
) -> Result<(f64, f64), String> {
    let requests = write_requests(name, payload);
    let cpu = server_cpu(server_pid);
    let start = Instant::now();
    clients
        .bytestream(0)
        .write(futures::stream::iter(requests))
        .await
        .map_err(|s| format!("Write {digest}: {}: {}", s.code(), s.message()))?;
    Ok((start.elapsed().as_secs_f64(), server_cpu(server_pid) - cpu))
}

fn write_requests(name: String, payload: &[u8]) -> Vec<WriteRequest> {
    const CHUNK: usize = 1 << 20;
    let pieces = payload.len().div_ceil(CHUNK).max(1);
    (0..pieces)
        .map(|i| {
            let start = i * CHUNK;
            let end = (start + CHUNK).min(payload.len());
            WriteRequest {
                resource_name: if i == 0 { name.clone() } else { String::new() },
                write_offset: start as i64,
                finish_write: i + 1 == pieces,
                data: payload[start..end].to_vec(),
            }
        })
        .collect()
}
