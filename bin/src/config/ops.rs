//! `--metrics_listen`: where a binary serves `/metrics`, `/healthz` and
//! `/readyz` over HTTP. Off unless set: several processes on one host (a
//! test cluster, a workstation) would otherwise fight over one port.

use std::net::SocketAddr;

use clap::Args;

use super::file::FileConfig;

#[derive(Args, Debug, Default)]
pub struct OpsFlags {
    /// Serve Prometheus metrics, /healthz and /readyz over HTTP on this
    /// address (port 0 picks a free port). Off by default.
    #[arg(
        long = "metrics_listen",
        visible_alias = "metrics-listen",
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<SocketAddr>,
}

impl OpsFlags {
    /// The flag, else the file's `metrics_listen`.
    pub fn resolve(&self, file: &FileConfig) -> Option<SocketAddr> {
        self.metrics_listen.or(file.metrics_listen)
    }
}
