//! `--asset_fetch_hosts`, `--asset_fetch_max_size`, `--asset_fetch_timeout`
//! (or `[asset]` in the file; each flag wins over its key): whether and from
//! where FetchBlob downloads. Without hosts the Remote Asset services still
//! serve what was pushed, and never make the server fetch a URL.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use reapi_cas::asset::FetchPolicy;
use serde::Deserialize;

use super::file::{FileConfig, SizeValue};
use super::{parse_duration_flag, parse_size_flag};

const DEFAULT_MAX_SIZE: u64 = 4 << 30;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Args, Debug, Default)]
pub struct AssetFlags {
    /// Hosts FetchBlob may download from, comma-separated: a name, every
    /// subdomain of one (`*.example.com`), or any host (`*`). Default:
    /// none, FetchBlob answers only from pushed or earlier fetches.
    #[arg(
        long = "asset_fetch_hosts",
        value_name = "HOSTS",
        value_delimiter = ','
    )]
    pub fetch_hosts: Vec<String>,
    /// Largest download (default 4G).
    #[arg(long = "asset_fetch_max_size", value_name = "SIZE", value_parser = parse_size_flag)]
    pub fetch_max_size: Option<u64>,
    /// Longest download (default 10m); a request may ask for less.
    #[arg(long = "asset_fetch_timeout", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub fetch_timeout: Option<Duration>,
}

/// `[asset]` in the configuration file.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct AssetSection {
    pub fetch_hosts: Option<Vec<String>>,
    pub fetch_max_size: Option<SizeValue>,
    pub fetch_timeout: Option<String>,
}

impl AssetFlags {
    /// The fetch policy, downloads written under `data_dir`; `None` when
    /// no host is allowed.
    pub fn resolve(
        self,
        file: &FileConfig,
        data_dir: &Path,
    ) -> Result<Option<FetchPolicy>, String> {
        let section = file.asset.clone().unwrap_or_default();
        let hosts = if self.fetch_hosts.is_empty() {
            section.fetch_hosts.unwrap_or_default()
        } else {
            self.fetch_hosts
        };
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        let max_size = match self.fetch_max_size {
            Some(size) => Some(size),
            None => FileConfig::size(&section.fetch_max_size, "asset.fetch_max_size")?,
        };
        let timeout = match self.fetch_timeout {
            Some(timeout) => Some(timeout),
            None => FileConfig::duration(&section.fetch_timeout, "asset.fetch_timeout")?,
        };
        if hosts.is_empty() {
            if max_size.is_some() || timeout.is_some() {
                return Err(
                    "--asset_fetch_max_size and --asset_fetch_timeout need --asset_fetch_hosts"
                        .into(),
                );
            }
            return Ok(None);
        }
        Ok(Some(FetchPolicy {
            allowed_hosts: hosts,
            max_size: max_size.unwrap_or(DEFAULT_MAX_SIZE),
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            scratch_dir: data_dir.join("asset-downloads"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> AssetFlags {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            asset: AssetFlags,
        }
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        <Wrapper as clap::Parser>::parse_from(all).asset
    }

    #[test]
    fn no_hosts_no_fetching_and_flags_win_over_the_file() {
        let dir = Path::new("/data");
        assert!(flags(&[])
            .resolve(&FileConfig::default(), dir)
            .unwrap()
            .is_none());
        let policy = flags(&[
            "--asset_fetch_hosts",
            "github.com,*.example.com",
            "--asset_fetch_timeout",
            "30s",
        ])
        .resolve(&FileConfig::default(), dir)
        .unwrap()
        .unwrap();
        assert_eq!(policy.allowed_hosts, ["github.com", "*.example.com"]);
        assert_eq!(policy.timeout, Duration::from_secs(30));
        assert_eq!(policy.max_size, DEFAULT_MAX_SIZE);
        assert_eq!(policy.scratch_dir, dir.join("asset-downloads"));
        let file: FileConfig =
            toml::from_str("[asset]\nfetch_hosts = [\"mirror.test\"]\nfetch_max_size = \"1G\"\n")
                .unwrap();
        let from_file = flags(&[]).resolve(&file, dir).unwrap().unwrap();
        assert_eq!(from_file.allowed_hosts, ["mirror.test"]);
        assert_eq!(from_file.max_size, 1 << 30);
        let err = flags(&["--asset_fetch_timeout", "30s"])
            .resolve(&FileConfig::default(), dir)
            .unwrap_err();
        assert!(err.contains("--asset_fetch_hosts"), "{err}");
    }
}
