//! Configuration of the binaries: defaults, then the TOML file given with
//! `--config`, then flags; the later wins. One file format serves all
//! three binaries; each reads the keys it uses.
//!
//! - [`file`]: the TOML format;
//! - [`storage`]: the storage flags every binary has;
//! - [`scheduling`]: the flags of the binaries that run a scheduler;
//! - [`ops`]: the operators' HTTP port, every binary;
//! - [`server`], [`scheduler`], [`worker`]: each binary's flags and
//!   resolved configuration.

pub mod asset;
pub mod cluster_tls;
pub mod file;
pub mod front;
pub mod grants;
pub mod ops;
pub mod scheduler;
pub mod scheduling;
pub mod server;
pub mod storage;
pub mod tls;
pub mod worker;

use reapi_core::config::{parse_byte_size, parse_duration};
use reapi_core::platform::RootFs;
use reapi_executor::sandbox::isolation::Isolation;
use reapi_executor::SandboxChoice;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8980";

/// `--isolation` and `--default_rootfs`, each `(flag, file)`; the flag
/// wins. No isolation level means the strongest the host allows.
pub(crate) fn resolve_sandbox(
    isolation: (Option<String>, Option<String>),
    default_rootfs: (Option<String>, Option<String>),
) -> Result<SandboxChoice, String> {
    let isolation = isolation
        .0
        .or(isolation.1)
        .map(|text| text.parse::<Isolation>())
        .transpose()
        .map_err(|e| format!("--isolation: {}", e.message()))?;
    let default_rootfs = default_rootfs
        .0
        .or(default_rootfs.1)
        .map(|text| text.parse::<RootFs>())
        .transpose()
        .map_err(|e| format!("--default_rootfs: {}", e.message()))?
        .unwrap_or_default();
    Ok(SandboxChoice {
        isolation,
        default_rootfs,
    })
}

pub(crate) fn parse_size_flag(text: &str) -> Result<u64, String> {
    parse_byte_size(text).map_err(|e| e.to_string())
}

pub(crate) fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}
