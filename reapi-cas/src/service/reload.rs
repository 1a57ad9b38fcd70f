//! Reloading configuration files while a port serves: on SIGHUP, and when a
//! file's modification time or length changes (polled, so it works on any
//! filesystem, including Kubernetes' symlink-swapped secret volumes). Used
//! for TLS certificates and for the grants file.
//!
//! A reload that fails keeps the previous configuration and is logged once
//! per change, not once per poll, while a rotation is half written.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reapi_core::{Error, Result};

/// Something loaded from files that can be loaded again.
pub trait Reloadable: Send + Sync + 'static {
    /// What it is, for logs ("TLS", "grants").
    const WHAT: &'static str;

    /// The files it is loaded from.
    fn files(&self) -> Vec<PathBuf>;

    /// Loads the files again and swaps the result in; on failure the
    /// previous configuration stays and the error is returned.
    fn reload(&self) -> Result<()>;
}

/// Modification time and length of each file, `None` for a missing one.
pub type Stamps = Vec<Option<(SystemTime, u64)>>;

pub fn stamps(files: &[PathBuf]) -> Stamps {
    files
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// Reloads `target` on SIGHUP (when `on_sighup`) and whenever its files
/// change (checked every `poll`), until `target` is dropped.
pub fn watch<R: Reloadable>(target: &Arc<R>, poll: Duration, on_sighup: bool) -> Result<()> {
    let mut hangups = if on_sighup {
        Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| Error::io("listening for SIGHUP", e))?,
        )
    } else {
        None
    };
    let last_seen = Mutex::new(stamps(&target.files()));
    let target = Arc::downgrade(target);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(signals) => signals.recv().await,
                    None => std::future::pending().await,
                }
            };
            let forced = tokio::select! {
                _ = ticks.tick() => false,
                _ = hangup => true,
            };
            let Some(target) = target.upgrade() else {
                return;
            };
            let now = stamps(&target.files());
            {
                let mut last = last_seen.lock().unwrap_or_else(|e| e.into_inner());
                if !forced && *last == now {
                    continue;
                }
                *last = now;
            }
            match target.reload() {
                Ok(()) => tracing::info!("{} configuration reloaded", R::WHAT),
                Err(e) => tracing::error!(
                    "{}: cannot reload, keeping the previous configuration: {e}",
                    R::WHAT
                ),
            }
        }
    });
    Ok(())
}
