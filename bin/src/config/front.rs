//! What stands in front of a process's gRPC port, and how it reaches the
//! cluster's other processes: TLS ([`super::tls`]), grants
//! ([`super::grants`]) and cluster TLS ([`super::cluster_tls`]), resolved
//! together so that every binary reads them the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use reapi_cas::service::auth::Authorizer;
use reapi_cas::service::listener::Front;
use reapi_cas::service::tls::{TlsFiles, TlsSettings};
use reapi_core::cluster::transport::ClusterTransport;

use super::cluster_tls::ClusterTlsFlags;
use super::file::FileConfig;
use super::grants::GrantsFlags;
use super::tls::TlsFlags;

/// How often the TLS and grants files are checked for a change (SIGHUP
/// reloads at once).
const FILES_POLL: Duration = Duration::from_secs(10);

#[derive(Args, Debug, Default)]
pub struct FrontFlags {
    #[command(flatten)]
    pub tls: TlsFlags,
    #[command(flatten)]
    pub grants: GrantsFlags,
    #[command(flatten)]
    pub cluster_tls: ClusterTlsFlags,
}

#[derive(Debug, Default)]
pub struct FrontConfig {
    /// `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// The grants file; `None`: every client may do everything.
    pub grants: Option<PathBuf>,
    /// How this process connects to the cluster's others.
    pub cluster: ClusterTransport,
}

impl FrontFlags {
    pub fn resolve(self, file: &FileConfig) -> Result<FrontConfig, String> {
        Ok(FrontConfig {
            tls: self.tls.resolve(file)?,
            grants: self.grants.resolve(file),
            cluster: self.cluster_tls.resolve(file)?,
        })
    }
}

impl FrontConfig {
    /// Installs the cluster transport and loads the TLS and grants files,
    /// watched for changes; an unusable file stops the start.
    pub fn open(&self) -> Result<Front, String> {
        self.cluster.clone().install().map_err(|e| e.to_string())?;
        let tls = match self.tls.clone() {
            Some(files) => {
                let tls = TlsSettings::load(files).map_err(|e| format!("TLS: {e}"))?;
                tls.watch(FILES_POLL, true).map_err(|e| e.to_string())?;
                Some(tls)
            }
            None => None,
        };
        let grants = match &self.grants {
            Some(path) => {
                let grants: Arc<Authorizer> =
                    Authorizer::load(path).map_err(|e| format!("grants: {e}"))?;
                grants.watch(FILES_POLL, true).map_err(|e| e.to_string())?;
                Some(grants)
            }
            None => None,
        };
        Ok(Front { tls, grants })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Flag ids must be unique across each binary's flattened groups; clap
    /// checks that only when a command is built, so build all three.
    #[test]
    fn every_binarys_flags_are_well_formed() {
        super::super::server::ServerFlags::command().debug_assert();
        super::super::scheduler::SchedulerFlags::command().debug_assert();
        super::super::worker::WorkerFlags::command().debug_assert();
    }
}
