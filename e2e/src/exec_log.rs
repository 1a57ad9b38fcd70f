//! Reading Bazel's execution log (`--execution_log_json_file=FILE`).
//!
//! The process summary says how many actions ran where; the execution log
//! says which: one `SpawnExec` message per spawn, with its mnemonic
//! (`CppCompile`, `Genrule`, `TestRunner`, ...), the runner that ran it
//! (`remote`, `remote cache hit`, `linux-sandbox`, ...) and whether it was a
//! remote cache hit.
//!
//! Bazel 4.2 writes the messages one after another, each pretty-printed by
//! protobuf's `JsonFormat` (`{` ... `}{` ... `}`), with the message's own
//! fields indented by two spaces. Only the few top-level scalar fields the
//! tests need are read, line by line, so no JSON library is needed; a file in
//! another layout yields no spawns, which the tests report as a failure.

use std::fmt;
use std::fs;
use std::path::Path;

/// One spawn of the execution log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spawn {
    /// E.g. `Genrule`, `CppCompile`, `TestRunner`.
    pub mnemonic: String,
    /// How it ran: `remote`, `remote cache hit`, `linux-sandbox`, ...
    pub runner: String,
    /// Whether its result came from the remote cache.
    pub remote_cache_hit: bool,
    /// The first of its declared outputs, to tell spawns apart in messages.
    pub first_output: String,
}

impl fmt::Display for Spawn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}{}",
            self.mnemonic,
            self.first_output,
            self.runner,
            if self.remote_cache_hit {
                " (remote cache hit)"
            } else {
                ""
            }
        )
    }
}

/// Reads and parses the execution log at `path`, panicking if it cannot be
/// read.
pub fn read(path: &Path) -> Vec<Spawn> {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the execution log {}: {e}", path.display()));
    parse(&text)
}

/// Parses the text of an execution log.
pub fn parse(text: &str) -> Vec<Spawn> {
    let mut spawns = Vec::new();
    let mut current: Option<Spawn> = None;
    for line in text.lines() {
        // `{` opens the first message, `}{` closes one and opens the next,
        // `}` closes the last.
        if line.starts_with('}') {
            spawns.extend(current.take());
        }
        if line == "{" || line == "}{" {
            current = Some(Spawn::default());
            continue;
        }
        let Some(spawn) = current.as_mut() else {
            continue;
        };
        // The message's own fields: exactly two spaces of indentation.
        let Some(field) = line.strip_prefix("  ").filter(|f| f.starts_with('"')) else {
            continue;
        };
        let Some((name, value)) = field.split_once(": ") else {
            continue;
        };
        let value = value.strip_suffix(',').unwrap_or(value);
        match name {
            "\"mnemonic\"" => spawn.mnemonic = json_string(value).unwrap_or_default(),
            "\"runner\"" => spawn.runner = json_string(value).unwrap_or_default(),
            "\"remoteCacheHit\"" => spawn.remote_cache_hit = value == "true",
            "\"listedOutputs\"" => {
                let first = value
                    .strip_prefix('[')
                    .and_then(|rest| json_string(rest.trim_start()));
                spawn.first_output = first.unwrap_or_default();
            }
            _ => {}
        }
    }
    spawns.extend(current);
    spawns
}

/// Decodes the JSON string literal at the start of `text` (what follows it
/// is ignored).
fn json_string(text: &str) -> Option<String> {
    let mut chars = text.strip_prefix('"')?.chars();
    let mut value = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                'b' => value.push('\u{8}'),
                'f' => value.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let code = u32::from_str_radix(&hex, 16).ok()?;
                    value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{
  "commandArgs": ["/usr/bin/gcc", "-D_FORTIFY_SOURCE\u003d1", "-c", "lib/greet.cc"],
  "environmentVariables": [{
    "name": "PWD",
    "value": "/proc/self/cwd"
  }],
  "platform": {
    "properties": []
  },
  "inputs": [{
    "path": "lib/greet.cc",
    "digest": {
      "hash": "9f9a",
      "sizeBytes": "744",
      "hashFunctionName": "SHA-256"
    }
  }],
  "listedOutputs": ["bazel-out/host/bin/lib/_objs/greet/greet.d", "bazel-out/host/bin/lib/_objs/greet/greet.o"],
  "remotable": true,
  "cacheable": true,
  "progressMessage": "Compiling lib/greet.cc",
  "mnemonic": "CppCompile",
  "actualOutputs": [{
    "path": "bazel-out/host/bin/lib/_objs/greet/greet.d"
  }],
  "runner": "remote",
  "walltime": "0.250s"
}{
  "commandArgs": ["external/bazel_tools/tools/test/test-setup.sh", "tests/check.sh"],
  "listedOutputs": ["bazel-out/k8-fastbuild/testlogs/tests/check/test.log"],
  "remoteCacheHit": true,
  "mnemonic": "TestRunner",
  "runner": "remote cache hit"
}"#;

    #[test]
    fn parses_concatenated_messages() {
        let spawns = parse(LOG);
        assert_eq!(
            spawns,
            vec![
                Spawn {
                    mnemonic: "CppCompile".into(),
                    runner: "remote".into(),
                    remote_cache_hit: false,
                    first_output: "bazel-out/host/bin/lib/_objs/greet/greet.d".into(),
                },
                Spawn {
                    mnemonic: "TestRunner".into(),
                    runner: "remote cache hit".into(),
                    remote_cache_hit: true,
                    first_output: "bazel-out/k8-fastbuild/testlogs/tests/check/test.log".into(),
                },
            ]
        );
        assert_eq!(
            spawns[1].to_string(),
            "TestRunner bazel-out/k8-fastbuild/testlogs/tests/check/test.log -> remote cache hit (remote cache hit)"
        );
    }

    #[test]
    fn decodes_escapes_and_ignores_other_text() {
        assert_eq!(
            json_string(r#""a\u003db\"c\\d""#).as_deref(),
            Some("a=b\"c\\d")
        );
        assert_eq!(json_string("unquoted"), None);
        assert!(parse("").is_empty());
        assert!(parse("not a log\n").is_empty());
    }
}
