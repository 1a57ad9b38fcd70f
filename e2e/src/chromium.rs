//! Headless Chromium (Debian's `chromium`), for the tests of the
//! schedulers' status page: the page as a real browser parsed it
//! (`--dump-dom`), and a screenshot of it for people reading a failure.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian installs it; `REAPI_CHROMIUM` overrides.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
const CHROMIUM_ENV: &str = "REAPI_CHROMIUM";

/// Chromium's path, or `None` when it is missing and the test should be
/// skipped. On CI (`CI=true`) a missing Chromium is a failure instead.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let chromium =
        env::var_os(CHROMIUM_ENV).map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
    if chromium.is_file() {
        return Some(chromium);
    }
    let hint = "install Debian's chromium, or run scripts/test";
    if env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "{} not found and CI=true: the browser tests must run on CI ({hint})",
            chromium.display()
        );
    }
    eprintln!("skipping {test}: {} not found ({hint})", chromium.display());
    None
}

/// Headless Chromium with a profile of its own.
pub struct Chromium {
    path: PathBuf,
    profile: tempfile::TempDir,
}

impl Chromium {
    pub fn new(path: PathBuf) -> Chromium {
        let profile = tempfile::tempdir().expect("cannot make a Chromium profile directory");
        Chromium { path, profile }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command
            .arg("--headless")
            // Tests run as root, where Chromium's own sandbox cannot start.
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg("--no-first-run")
            .arg(format!("--user-data-dir={}", self.profile.path().display()));
        command
    }

    /// The DOM of `url` once loaded, as Chromium serializes it. Panics
    /// with Chromium's stderr if it fails.
    pub fn dump_dom(&self, url: &str) -> String {
        let output = self
            .command()
            .arg("--dump-dom")
            .arg(url)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.path.display()));
        assert!(
            output.status.success(),
            "chromium --dump-dom {url} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("Chromium's DOM is not UTF-8")
    }

    /// A PNG of `url` at `to`.
    pub fn screenshot(&self, url: &str, to: &Path) {
        let status = self
            .command()
            .arg(format!("--screenshot={}", to.display()))
            .arg("--window-size=1400,1000")
            .arg(url)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.path.display()))
            .status;
        assert!(
            status.success(),
            "chromium --screenshot {url} failed ({status})"
        );
    }
}
