//! Options every scenario takes, and the context built from them.

use std::time::Duration;

use clap::Args;

use crate::client::{channels_for, Clients, Target};
use crate::runner::RunSpec;
use crate::stats::parse_duration;

#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The server: grpc://HOST:PORT.
    #[arg(long, default_value = "grpc://127.0.0.1:8980")]
    pub target: String,
    /// REAPI instance name.
    #[arg(long, default_value = "")]
    pub instance: String,
    /// Requests in flight at once (one per worker).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// gRPC channels (HTTP/2 connections); default one per 8 workers.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Warm-up before measuring (not counted).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Length of the measured phase (unless --count is given).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Measured requests to issue instead of a duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Hard cap on the measured phase, whatever --count says.
    #[arg(long = "max-time", default_value = "120s", value_parser = parse_duration)]
    pub max_time: Duration,
    /// Stop after this many failed requests.
    #[arg(long = "max-errors", default_value_t = 100)]
    pub max_errors: u64,
    /// Write results as JSON to FILE (or to stdout with `--json` alone or
    /// `--json -`; the table then goes to stderr).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<String>,
    /// The server's pid when it runs on this machine: its memory and CPU
    /// time are read from /proc around each measured phase.
    #[arg(long = "server-pid")]
    pub server_pid: Option<u32>,
    /// Seed of the blobs uploaded during set-up (reads, present digests):
    /// the same seed reuses what an earlier run uploaded.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl Common {
    pub fn channel_count(&self) -> usize {
        self.channels
            .unwrap_or_else(|| channels_for(self.concurrency, 8))
            .max(1)
    }

    pub async fn connect(&self) -> Result<Clients, String> {
        let target = Target::parse(&self.target, &self.instance)?;
        Clients::connect(&target, self.channel_count()).await
    }

    pub fn spec(&self, name: impl Into<String>) -> RunSpec {
        RunSpec {
            name: name.into(),
            concurrency: self.concurrency.max(1),
            warmup: self.warmup,
            duration: self.duration,
            count: self.count,
            max_time: self.max_time,
            max_errors: self.max_errors.max(1),
            server_pid: self.server_pid,
            extra: Vec::new(),
            progress: !self.quiet,
        }
    }
}

/// `{instance}/` or nothing for the empty instance name.
pub fn instance_prefix(instance: &str) -> String {
    if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    }
}
