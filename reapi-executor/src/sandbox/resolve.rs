//! Finding the program `arguments[0]` names (REAPI 2.3): a path with a `/`
//! is taken relative to the working directory (or as it is, when absolute);
//! a bare name is looked up in the `PATH` of the action's own environment,
//! or in a default search path when the action sets no `PATH`. The default
//! is only used for the lookup: nothing is added to the environment.
//!
//! A program that cannot be run is not an error but an outcome, with the
//! exit codes a shell uses: 127 for "not found", 126 for "found but not
//! executable".

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The search path used when the action's environment has no `PATH`.
pub const DEFAULT_SEARCH_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Exit code for a command that does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code for a command that exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;

/// Why a command cannot be run: an exit code and a line for its stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotRunnable {
    pub exit_code: i32,
    pub message: String,
}

impl NotRunnable {
    pub fn not_found(message: String) -> Self {
        NotRunnable {
            exit_code: EXIT_NOT_FOUND,
            message,
        }
    }

    pub fn not_executable(message: String) -> Self {
        NotRunnable {
            exit_code: EXIT_NOT_EXECUTABLE,
            message,
        }
    }
}

/// The program to execute for `arg0`: an absolute path, or a path with a
/// `/` relative to `working_directory` (the process changes into it before
/// exec, so a script sees `$0` as the client wrote it, not a path into the
/// worker's directories).
pub fn resolve_program(
    arg0: &str,
    environment: &[(String, String)],
    working_directory: &Path,
    default_search_path: &str,
) -> Result<PathBuf, NotRunnable> {
    if arg0.is_empty() {
        return Err(NotRunnable::not_found(
            "the command's first argument (the program) is empty".into(),
        ));
    }
    if arg0.contains('/') {
        let path = working_directory.join(arg0);
        return match check_candidate(&path) {
            Candidate::Runnable => Ok(PathBuf::from(arg0)),
            Candidate::Missing => Err(NotRunnable::not_found(format!(
                "{arg0}: no such file (looked for {})",
                path.display()
            ))),
            Candidate::Directory => Err(NotRunnable::not_executable(format!(
                "{arg0}: is a directory"
            ))),
            Candidate::NotExecutable => Err(NotRunnable::not_executable(format!(
                "{arg0}: permission denied (the file is not executable)"
            ))),
        };
    }

    let (search, from_env) = search_path(environment, default_search_path);
    let mut not_executable = None;
    for dir in search.split(':') {
        // An empty entry means the current (working) directory.
        let program = Path::new(if dir.is_empty() { "." } else { dir }).join(arg0);
        match check_candidate(&working_directory.join(&program)) {
            Candidate::Runnable => return Ok(program),
            Candidate::NotExecutable if not_executable.is_none() => {
                not_executable = Some(program);
            }
            _ => {}
        }
    }
    if let Some(path) = not_executable {
        return Err(NotRunnable::not_executable(format!(
            "{arg0}: permission denied ({} is not executable)",
            path.display()
        )));
    }
    let which = if from_env {
        "the action's PATH"
    } else {
        "the default search path (the action sets no PATH)"
    };
    Err(NotRunnable::not_found(format!(
        "{arg0}: command not found in {which} {search:?}"
    )))
}

/// The action's `PATH` (its last definition), or the default; and whether
/// it was the action's.
fn search_path<'a>(
    environment: &'a [(String, String)],
    default_search_path: &'a str,
) -> (&'a str, bool) {
    match environment.iter().rev().find(|(name, _)| name == "PATH") {
        Some((_, value)) => (value.as_str(), true),
        None => (default_search_path, false),
    }
}

/// The paths to try, in order, for a command whose `/` is its input root
/// (`rootfs=input-root`): they only mean something inside that root, where
/// absolute symlinks point elsewhere than on the host, so the launch child
/// tries each with `execve`, as `execvp` would. A path with a `/` is the
/// only candidate.
pub fn candidates_in_own_root(
    arg0: &str,
    environment: &[(String, String)],
    default_search_path: &str,
) -> Result<Vec<PathBuf>, NotRunnable> {
    if arg0.is_empty() {
        return Err(NotRunnable::not_found(
            "the command's first argument (the program) is empty".into(),
        ));
    }
    if arg0.contains('/') {
        return Ok(vec![PathBuf::from(arg0)]);
    }
    let (search, _) = search_path(environment, default_search_path);
    Ok(search
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(arg0))
        .collect())
}

enum Candidate {
    Runnable,
    Missing,
    Directory,
    NotExecutable,
}

fn check_candidate(path: &Path) -> Candidate {
    // Follows symlinks: a program may well be one.
    match std::fs::metadata(path) {
        Err(_) => Candidate::Missing,
        Ok(meta) if meta.is_dir() => Candidate::Directory,
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Candidate::NotExecutable,
        Ok(_) => Candidate::Runnable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn in_its_own_root_a_bare_name_is_tried_in_every_path_entry() {
        let env = vec![("PATH".to_string(), "/usr/bin::/bin".to_string())];
        assert_eq!(
            candidates_in_own_root("sh", &env, DEFAULT_SEARCH_PATH).unwrap(),
            [
                PathBuf::from("/usr/bin/sh"),
                PathBuf::from("./sh"),
                PathBuf::from("/bin/sh")
            ]
        );
        assert_eq!(
            candidates_in_own_root("./configure", &env, DEFAULT_SEARCH_PATH).unwrap(),
            [PathBuf::from("./configure")]
        );
        assert_eq!(
            candidates_in_own_root("make", &[], "/bin").unwrap(),
            [PathBuf::from("/bin/make")]
        );
        let err = candidates_in_own_root("", &env, DEFAULT_SEARCH_PATH).unwrap_err();
        assert_eq!(err.exit_code, EXIT_NOT_FOUND);
    }

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        for (name, mode) in [("tool", 0o755), ("plain", 0o644)] {
            let path = bin.join(name);
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        dir
    }

    #[test]
    fn relative_paths_start_at_the_working_directory() {
        let dir = setup();
        let wd = dir.path();
        assert_eq!(
            resolve_program("./bin/tool", &[], wd, DEFAULT_SEARCH_PATH).unwrap(),
            Path::new("./bin/tool")
        );
        assert_eq!(
            resolve_program("bin/tool", &[], wd, "").unwrap(),
            Path::new("bin/tool")
        );
        let abs = wd.join("bin/tool");
        assert_eq!(
            resolve_program(abs.to_str().unwrap(), &[], Path::new("/"), "").unwrap(),
            abs
        );
        let err = resolve_program("./bin/missing", &[], wd, "").unwrap_err();
        assert_eq!(err.exit_code, EXIT_NOT_FOUND);
        let err = resolve_program("./bin/plain", &[], wd, "").unwrap_err();
        assert_eq!(err.exit_code, EXIT_NOT_EXECUTABLE);
        let err = resolve_program("./bin", &[], wd, "").unwrap_err();
        assert_eq!(err.exit_code, EXIT_NOT_EXECUTABLE);
    }

    #[test]
    fn bare_names_use_the_action_path() {
        let dir = setup();
        let wd = dir.path();
        let env = vec![("PATH".to_string(), "/nonexistent:bin".to_string())];
        assert_eq!(
            resolve_program("tool", &env, wd, DEFAULT_SEARCH_PATH).unwrap(),
            Path::new("bin/tool")
        );
        let here = vec![("PATH".to_string(), ":/nonexistent".to_string())];
        let wd_bin = wd.join("bin");
        assert_eq!(
            resolve_program("tool", &here, &wd_bin, "").unwrap(),
            Path::new("./tool")
        );
        let err = resolve_program("plain", &env, wd, DEFAULT_SEARCH_PATH).unwrap_err();
        assert_eq!(err.exit_code, EXIT_NOT_EXECUTABLE);
        // `sh` is in the default path but not in the action's.
        let err = resolve_program("sh", &env, wd, DEFAULT_SEARCH_PATH).unwrap_err();
        assert_eq!(err.exit_code, EXIT_NOT_FOUND);
        assert!(err.message.contains("the action's PATH"), "{}", err.message);
    }

    #[test]
    fn bare_names_without_path_use_the_default() {
        let dir = setup();
        let found = resolve_program("sh", &[], dir.path(), DEFAULT_SEARCH_PATH).unwrap();
        assert!(found.ends_with("sh"));
        let err = resolve_program("tool", &[], dir.path(), DEFAULT_SEARCH_PATH).unwrap_err();
        assert_eq!(err.exit_code, EXIT_NOT_FOUND);
        assert!(
            err.message.contains("default search path"),
            "{}",
            err.message
        );
        let err = resolve_program("", &[], dir.path(), DEFAULT_SEARCH_PATH).unwrap_err();
        assert_eq!(err.exit_code, EXIT_NOT_FOUND);
    }
}
