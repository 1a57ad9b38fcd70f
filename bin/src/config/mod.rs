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

pub mod file;
pub mod ops;
pub mod scheduler;
pub mod scheduling;
pub mod server;
pub mod storage;
pub mod worker;

use reapi_core::config::{parse_byte_size, parse_duration};
use reapi_executor::sandbox::isolation::Isolation;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8980";

/// `--isolation` (or `isolation` in the file; the flag wins): `None` for
/// the strongest level the host allows.
pub(crate) fn resolve_isolation(
    flag: Option<String>,
    file: Option<String>,
) -> Result<Option<Isolation>, String> {
    flag.or(file)
        .map(|text| text.parse::<Isolation>())
        .transpose()
        .map_err(|e| format!("--isolation: {}", e.message()))
}

pub(crate) fn parse_size_flag(text: &str) -> Result<u64, String> {
    parse_byte_size(text).map_err(|e| e.to_string())
}

pub(crate) fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}
