//! Processes the tests' commands start, seen from outside: whether a pid
//! is alive, and pids the commands write to files.

use std::path::Path;
use std::time::Duration;

use crate::wait::eventually;

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state follows the parenthesised command name.
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !rest.trim_start().starts_with(['Z', 'X']),
            None => true,
        },
    }
}

/// Whether every thread of every process in process group `group` is
/// stopped (by SIGSTOP or a tracer). `kill` returns once the signal is
/// queued; a multi-threaded process stops only when one of its threads
/// takes the signal, and its other threads run on until then: under load,
/// for milliseconds.
pub fn group_stopped(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let members: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_fields(&format!("/proc/{pid}/stat")).is_some_and(|f| f.pgrp == group))
        .collect();
    !members.is_empty()
        && members.iter().all(|pid| {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                // Gone since it was listed: nothing of it runs.
                return true;
            };
            tasks.flatten().all(|task| {
                stat_fields(&task.path().join("stat").to_string_lossy())
                    .is_none_or(|f| matches!(f.state, 'T' | 't' | 'Z' | 'X'))
            })
        })
}

/// The fields of a `/proc/.../stat` line that tests look at.
struct StatFields {
    state: char,
    pgrp: u32,
}

fn stat_fields(path: &str) -> Option<StatFields> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name is parenthesised and may hold spaces or ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(StatFields { state, pgrp })
}

/// Whether `/proc/{pid}` exists at all (a zombie counts).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Reads a pid a command wrote to `path`, waiting until it is there.
pub async fn read_pid(path: &Path) -> u32 {
    let mut pid = None;
    let found = eventually(Duration::from_secs(20), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    })
    .await;
    assert!(found, "no pid in {}", path.display());
    pid.unwrap()
}

/// The pids in a file of one pid per line (none if there is no file).
pub fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Shell code that makes `$me` the running shell's pid as seen from
/// outside. Actions run in a pid namespace of their own, where `$$` is 1
/// and `$!` is a pid of that namespace; `/proc` is the host's, so
/// `/proc/self` names the process by its outer pid.
pub const SHELL_OUTER_PID: &str = "read -r me _ < /proc/self/stat";

/// Shell code that starts `command` in the background and appends its
/// outer pid (see [`SHELL_OUTER_PID`]) to `file`.
pub fn background_recording_pid(command: &str, file: &Path) -> String {
    format!(
        "sh -c '{SHELL_OUTER_PID}; echo $me >> {f}; exec {command}' &",
        f = file.display()
    )
}

/// Live processes (not zombies) whose working directory is `dir` or under
/// it, as the host sees them: how a test finds an action's processes when
/// the action cannot tell it (its `/proc` is its own).
pub fn processes_with_cwd_under(dir: &Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
                && process_alive(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::Instant;

    #[test]
    fn a_group_is_stopped_only_once_every_thread_is() {
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let group = child.id();
        assert!(!group_stopped(group), "a sleeping process is not stopped");
        let signal = |name: &str| {
            let status = Command::new("kill")
                .args([name, "--", &format!("-{group}")])
                .status()
                .unwrap();
            assert!(status.success());
        };
        signal("-STOP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !group_stopped(group) {
            assert!(Instant::now() < deadline, "not stopped after SIGSTOP");
            std::thread::sleep(Duration::from_millis(1));
        }
        signal("-CONT");
        while group_stopped(group) {
            assert!(Instant::now() < deadline, "still stopped after SIGCONT");
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!group_stopped(group), "an empty group is not stopped");
    }
}
