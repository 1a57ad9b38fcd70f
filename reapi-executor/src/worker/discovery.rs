//! Links to every scheduler a member list resolves to: resolved again every
//! few seconds, a new address gets a link, an address that no longer
//! resolves has its link stopped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reapi_core::cluster::discovery::MemberList;
use tokio::task::JoinHandle;

use super::{GrpcSchedulerConnector, LinkHandle, Worker};

impl Worker {
    /// Follows `schedulers` until the worker shuts down.
    pub fn follow(&self, schedulers: MemberList, interval: Duration) -> JoinHandle<()> {
        let worker = self.clone();
        let mut shutdown = self.inner.shutdown.subscribe();
        tokio::spawn(async move {
            let mut links: BTreeMap<SocketAddr, LinkHandle> = BTreeMap::new();
            let mut warned = false;
            loop {
                match schedulers.resolve().await {
                    Ok(addresses) => {
                        warned = false;
                        links.retain(|address, link| {
                            let keep = addresses.contains(address);
                            if !keep {
                                tracing::info!(scheduler = %address, "scheduler no longer listed; unlinking");
                                link.stop();
                            }
                            keep
                        });
                        for address in addresses {
                            if links.contains_key(&address) {
                                continue;
                            }
                            match GrpcSchedulerConnector::new(address) {
                                Ok(connector) => {
                                    links.insert(address, worker.connect(Arc::new(connector)));
                                }
                                Err(e) => tracing::warn!(error = %e, "scheduler address refused"),
                            }
                        }
                    }
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(error = %e, "cannot resolve the schedulers; retrying");
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = super::link::raised(&mut shutdown) => return,
                }
            }
        })
    }
}
