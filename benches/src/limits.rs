//! `limits`: what this machine can do at best, measured in the same run as
//! the scenarios, so each figure can be set against the limit that bounds
//! it: one-stream loopback TCP, SHA-256 in process (the `sha2` crate the
//! server uses), process spawns, and synced small-file commits on the data
//! directory's file system (what storing one blob durably costs).
//!
//! Every measurement is bounded in time; nothing leaves 127.0.0.1.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use reapi_core::DigestHasher;
use serde::Serialize;

use crate::content::fill_random;
use crate::stats::{new_histogram, parse_duration, record, Latency};

#[derive(Args, Clone, Debug)]
pub struct LimitsArgs {
    /// A directory on the file system the server stores blobs on; a
    /// scratch subdirectory is made and removed there.
    #[arg(long)]
    pub dir: PathBuf,
    /// Time given to each measurement.
    #[arg(long = "each", default_value = "2s", value_parser = parse_duration)]
    pub each: Duration,
    /// Write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
pub struct Limits {
    pub cores: usize,
    /// One TCP stream over loopback, 1 MiB writes.
    pub loopback_tcp_mb_s: f64,
    /// SHA-256 of 64 MiB buffers with the `sha2` crate, one core.
    pub sha256_sha2_crate_mb_s: f64,
    /// memcpy of 64 MiB buffers, one core.
    pub memcpy_mb_s: f64,
    /// fork+exec+wait of /bin/true, one at a time.
    pub spawn_true_per_s: f64,
    pub spawn_true: Latency,
    /// Create, write 4 KiB, fdatasync, rename, fsync the directory: one at
    /// a time.
    pub sync_commit_serial_per_s: f64,
    pub sync_commit: Latency,
    /// The same from 16 threads at once (the journal batches commits).
    pub sync_commit_16_threads_per_s: f64,
}

pub fn limits(args: LimitsArgs) -> Result<Limits, String> {
    let scratch = args
        .dir
        .join(format!("reapi-bench-limits-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut l = Limits {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..Default::default()
    };
    eprintln!("limits: loopback TCP");
    l.loopback_tcp_mb_s = loopback(args.each).map_err(|e| format!("loopback: {e}"))?;
    eprintln!("limits: SHA-256 and memcpy");
    (l.sha256_sha2_crate_mb_s, l.memcpy_mb_s) = hash_and_copy(args.each);
    eprintln!("limits: process spawn");
    (l.spawn_true_per_s, l.spawn_true) = spawn(args.each)?;
    eprintln!("limits: synced commits");
    let serial = sync_commits(&scratch, 1, args.each)?;
    l.sync_commit_serial_per_s = serial.0;
    l.sync_commit = serial.1;
    l.sync_commit_16_threads_per_s = sync_commits(&scratch, 16, args.each)?.0;
    let _ = std::fs::remove_dir_all(&scratch);
    let text = serde_json::to_string_pretty(&l).map_err(|e| e.to_string())?;
    match &args.json {
        Some(path) => std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(l)
}

fn loopback(each: Duration) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 1 << 20];
    fill_random(&mut buf, 3);
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < each && sent < 64 << 30 {
        stream.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    drop(stream);
    let received = reader
        .join()
        .map_err(|_| std::io::Error::other("reader thread panicked"))??;
    Ok(received as f64 / started.elapsed().as_secs_f64() / 1e6)
}

fn hash_and_copy(each: Duration) -> (f64, f64) {
    let mut buf = vec![0u8; 64 << 20];
    fill_random(&mut buf, 5);
    let started = Instant::now();
    let mut hashed = 0u64;
    while started.elapsed() < each {
        let mut h = DigestHasher::new();
        h.update(&buf);
        std::hint::black_box(h.finish());
        hashed += buf.len() as u64;
    }
    let sha = hashed as f64 / started.elapsed().as_secs_f64() / 1e6;
    let mut dst = vec![0u8; buf.len()];
    let started = Instant::now();
    let mut copied = 0u64;
    while started.elapsed() < each {
        dst.copy_from_slice(&buf);
        std::hint::black_box(&dst);
        copied += buf.len() as u64;
    }
    (sha, copied as f64 / started.elapsed().as_secs_f64() / 1e6)
}

fn spawn(each: Duration) -> Result<(f64, Latency), String> {
    let mut h = new_histogram();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < each && n < 100_000 {
        let t = Instant::now();
        let status = std::process::Command::new("/bin/true")
            .status()
            .map_err(|e| format!("spawning /bin/true: {e}"))?;
        if !status.success() {
            return Err("/bin/true failed".into());
        }
        record(&mut h, t.elapsed().as_nanos() as u64);
        n += 1;
    }
    Ok((n as f64 / started.elapsed().as_secs_f64(), Latency::of(&h)))
}

/// One durable small-file commit, the way a disk store commits a blob.
fn commit(dir: &Path, n: u64, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("tmp-{n}"));
    let dst = dir.join(format!("blob-{n}"));
    let mut file = File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_data()?;
    std::fs::rename(&tmp, &dst)?;
    File::open(dir)?.sync_all()
}

fn sync_commits(dir: &Path, threads: usize, each: Duration) -> Result<(f64, Latency), String> {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let dir = dir.join(format!("t{t}"));
            std::thread::spawn(
                move || -> std::io::Result<(u64, hdrhistogram::Histogram<u64>)> {
                    std::fs::create_dir_all(&dir)?;
                    let data = vec![7u8; 4096];
                    let mut h = new_histogram();
                    let mut n = 0u64;
                    while started.elapsed() < each && n < 1_000_000 {
                        let t = Instant::now();
                        commit(&dir, n, &data)?;
                        record(&mut h, t.elapsed().as_nanos() as u64);
                        n += 1;
                    }
                    std::fs::remove_dir_all(&dir)?;
                    Ok((n, h))
                },
            )
        })
        .collect();
    let mut total = 0u64;
    let mut all = new_histogram();
    for handle in handles {
        let (n, h) = handle
            .join()
            .map_err(|_| "commit thread panicked".to_owned())?
            .map_err(|e| format!("synced commits in {}: {e}", dir.display()))?;
        total += n;
        let _ = all.add(&h);
    }
    Ok((
        total as f64 / started.elapsed().as_secs_f64(),
        Latency::of(&all),
    ))
}
