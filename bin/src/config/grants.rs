//! `--auth_grants FILE` (or `auth_grants` in the file; the flag wins): the
//! grants every call on the client port is checked against (bearer tokens
//! and client certificates -> instances and permissions; see
//! `reapi_cas::service::auth::grants` for the format). Without it, every
//! client that reaches the port may do everything.

use std::path::PathBuf;

use clap::Args;

use super::file::FileConfig;

#[derive(Args, Debug, Default)]
pub struct GrantsFlags {
    /// Check every call against this grants file (TOML: bearer tokens and
    /// client certificates -> instances and permissions); reloaded when it
    /// changes and on SIGHUP. Without it, every client may do everything.
    #[arg(long = "auth_grants", value_name = "FILE")]
    pub grants: Option<PathBuf>,
}

impl GrantsFlags {
    pub fn resolve(self, file: &FileConfig) -> Option<PathBuf> {
        self.grants.or_else(|| file.auth_grants.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_file() {
        let file: FileConfig = toml::from_str("auth_grants = \"/etc/reapi/grants.toml\"").unwrap();
        let from_file = GrantsFlags::default().resolve(&file);
        assert_eq!(from_file, Some(PathBuf::from("/etc/reapi/grants.toml")));
        let flag = GrantsFlags {
            grants: Some(PathBuf::from("mine.toml")),
        };
        assert_eq!(flag.resolve(&file), Some(PathBuf::from("mine.toml")));
        assert_eq!(GrantsFlags::default().resolve(&FileConfig::default()), None);
    }
}
