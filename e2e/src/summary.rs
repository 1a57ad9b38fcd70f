//! Parsing of Bazel's process summary line.
//!
//! At the end of each build Bazel prints how its actions were run, e.g.
//! `INFO: 29 processes: 11 internal, 18 remote cache hit.` or, on another
//! build, `INFO: 29 processes: 18 remote cache hit, 11 internal.`: the order of
//! the parts varies, so the line is read as a list of `N kind` items.
//!
//! `bazel test` also prints one result line per test, e.g.
//! `//tests:check     PASSED in 0.2s` or, when the result came from a cache,
//! `//tests:check     (cached) PASSED in 0.0s`: see [`parse_test_result`].

use std::collections::BTreeMap;
use std::fmt;

/// The kind Bazel gives to actions it runs in-process (symlinks, runfiles
/// trees, ...): they never reach a remote cache.
pub const INTERNAL: &str = "internal";

/// The kind of actions whose result came from the remote cache.
pub const REMOTE_CACHE_HIT: &str = "remote cache hit";

/// One process summary: the total and the count of each kind of process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSummary {
    /// The `N` of `N processes`.
    pub total: u64,
    /// Counts by kind, e.g. `"internal" => 11`, `"remote cache hit" => 18`.
    pub kinds: BTreeMap<String, u64>,
}

impl ProcessSummary {
    /// The count of processes of `kind` (0 when absent).
    pub fn count(&self, kind: &str) -> u64 {
        self.kinds.get(kind).copied().unwrap_or(0)
    }

    /// The number of processes that were not internal: those a remote cache
    /// could have served.
    pub fn non_internal(&self) -> u64 {
        self.total - self.count(INTERNAL)
    }

    /// Kinds other than internal and remote cache hit, with their counts:
    /// processes that actually ran somewhere (`linux-sandbox`,
    /// `processwrapper-sandbox`, `local`, `remote`, `worker`, ...).
    pub fn executed(&self) -> BTreeMap<&str, u64> {
        self.kinds
            .iter()
            .filter(|(kind, count)| {
                **count > 0 && kind.as_str() != INTERNAL && kind.as_str() != REMOTE_CACHE_HIT
            })
            .map(|(kind, count)| (kind.as_str(), *count))
            .collect()
    }
}

impl fmt::Display for ProcessSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} processes:", self.total)?;
        for (i, (kind, count)) in self.kinds.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{count} {kind}")?;
        }
        Ok(())
    }
}

/// Parses one summary line (with or without the `INFO: ` prefix), e.g.
/// `INFO: 27 processes: 11 internal, 16 linux-sandbox.` or
/// `INFO: 1 process: 1 internal.`. Returns `None` for any other line.
pub fn parse_line(line: &str) -> Option<ProcessSummary> {
    let line = line.trim();
    let line = line.strip_prefix("INFO: ").unwrap_or(line);
    let line = line.strip_suffix('.').unwrap_or(line);
    let (total, rest) = line.split_once(' ')?;
    let total: u64 = total.parse().ok()?;
    // "0 processes." has no list; "N process(es): ..." has one.
    let items = match rest
        .strip_prefix("processes")
        .or_else(|| rest.strip_prefix("process"))?
    {
        "" => "",
        list => list.strip_prefix(": ")?,
    };
    let mut kinds = BTreeMap::new();
    for item in items.split(", ").filter(|item| !item.is_empty()) {
        let (count, kind) = item.split_once(' ')?;
        *kinds.entry(kind.to_string()).or_insert(0) += count.parse::<u64>().ok()?;
    }
    Some(ProcessSummary { total, kinds })
}

/// The last process summary in Bazel's output (`bazel test` may print other
/// lines in between), or `None` if there is none.
pub fn parse_last(output: &str) -> Option<ProcessSummary> {
    output.lines().rev().find_map(parse_line)
}

/// The status of a test as `bazel test` reports it at the end of its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    /// E.g. `PASSED`, `FAILED`, `NO STATUS`, `FAILED TO BUILD`.
    pub status: String,
    /// Whether Bazel marked it `(cached)`: the result came from a cache (its
    /// own or the remote one) instead of a run of the test.
    pub cached: bool,
    /// The whole line, for messages.
    pub line: String,
}

impl TestResult {
    /// Whether the test passed.
    pub fn passed(&self) -> bool {
        self.status == "PASSED"
    }
}

/// The last result line for the test `label` (e.g. `//tests:check`) in
/// Bazel's output, or `None` if there is none.
pub fn parse_test_result(output: &str, label: &str) -> Option<TestResult> {
    output.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix(label)?;
        // `//tests:check` must not match `//tests:check_more`.
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let rest = rest.trim();
        let (cached, rest) = match rest.strip_prefix("(cached)") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, rest),
        };
        let status = rest.split(" in ").next().unwrap_or(rest).trim();
        if status.is_empty() {
            return None;
        }
        Some(TestResult {
            status: status.to_string(),
            cached,
            line: line.trim().to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_in_any_order() {
        let a = parse_line("INFO: 29 processes: 11 internal, 18 remote cache hit.").unwrap();
        let b = parse_line("INFO: 29 processes: 18 remote cache hit, 11 internal.").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.total, 29);
        assert_eq!(a.count(INTERNAL), 11);
        assert_eq!(a.count(REMOTE_CACHE_HIT), 18);
        assert_eq!(a.non_internal(), 18);
        assert!(a.executed().is_empty());
    }

    #[test]
    fn reports_executed_kinds() {
        let s =
            parse_line("INFO: 27 processes: 2 remote cache hit, 11 internal, 14 linux-sandbox.")
                .unwrap();
        assert_eq!(s.executed(), BTreeMap::from([("linux-sandbox", 14)]));
        assert_eq!(
            s.to_string(),
            "27 processes: 11 internal, 14 linux-sandbox, 2 remote cache hit"
        );
    }

    #[test]
    fn parses_singular_and_empty_forms() {
        let one = parse_line("INFO: 1 process: 1 internal.").unwrap();
        assert_eq!((one.total, one.count(INTERNAL)), (1, 1));
        let none = parse_line("INFO: 0 processes.").unwrap();
        assert_eq!((none.total, none.kinds.len()), (0, 0));
    }

    #[test]
    fn ignores_other_lines_and_takes_the_last_summary() {
        assert_eq!(
            parse_line("INFO: Elapsed time: 5.214s, Critical Path: 0.67s"),
            None
        );
        assert_eq!(
            parse_line("INFO: Build completed successfully, 27 total actions"),
            None
        );
        let output = "INFO: 3 processes: 3 internal.\n\
                      INFO: Build completed successfully\n\
                      INFO: 5 processes: 1 internal, 4 remote.\n\
                      //tests:check PASSED in 0.1s\n";
        assert_eq!(parse_last(output).unwrap().count("remote"), 4);
        assert_eq!(parse_last("no summary here"), None);
    }

    #[test]
    fn parses_test_results() {
        let output = "INFO: 27 processes: 11 internal, 16 remote.\n\
                      //tests:check                                      PASSED in 0.2s\n\
                      \n\
                      Executed 1 out of 1 test: 1 test passes.\n";
        let result = parse_test_result(output, "//tests:check").unwrap();
        assert!(result.passed() && !result.cached);
        assert_eq!(
            result.line,
            "//tests:check                                      PASSED in 0.2s"
        );

        let cached = "//tests:check                             (cached) PASSED in 0.0s\n";
        let result = parse_test_result(cached, "//tests:check").unwrap();
        assert!(result.passed() && result.cached);

        let failed = "//tests:check                                      FAILED in 0.1s\n  \
                      /tmp/x/testlogs/tests/check/test.log\n";
        let result = parse_test_result(failed, "//tests:check").unwrap();
        assert_eq!((result.status.as_str(), result.cached), ("FAILED", false));

        let no_status = "//tests:check                                   NO STATUS\n";
        let result = parse_test_result(no_status, "//tests:check").unwrap();
        assert_eq!(result.status, "NO STATUS");

        assert_eq!(parse_test_result(output, "//tests:che"), None);
        assert_eq!(parse_test_result("nothing here", "//tests:check"), None);
    }
}
