//! Processes a previous life of this executor left running. Commands die
//! with the process that started them ([`super::launch`]), but not where
//! the host allows no pid namespace, nor one started in the instant the
//! server died: those are reparented to init and go on, still writing in
//! their action directories. Before the pool clears its work directory at start,
//! every process whose working directory is in it is killed, with its
//! process group, so no stale command writes into a directory a new action
//! is given.
//!
//! A process is found by its working directory (`/proc/PID/cwd`): commands
//! run in their input root, and their children stay there unless they
//! change directory. One that moved out is not found here; the `linux`
//! isolation level (a cgroup per action) is what contains those.

use std::fs;
use std::path::Path;
use std::time::Duration;

/// Passes over `/proc`: a process found may have forked meanwhile.
const MAX_ROUNDS: usize = 20;

/// Kills every process (and its process group) whose working directory is
/// under `dir`. Returns how many processes were found. Needs to see other
/// processes' `/proc/PID/cwd`: root, or the same user as the commands.
pub fn kill_processes_in(dir: &Path) -> usize {
    let Ok(dir) = dir.canonicalize() else {
        return 0; // nothing there: nothing can run there
    };
    let own_group = unsafe { libc::getpgrp() };
    let own_pid = std::process::id();
    let mut found = 0;
    for round in 0..MAX_ROUNDS {
        let inside = processes_under(&dir, own_pid);
        if inside.is_empty() {
            break;
        }
        found += inside.len();
        for pid in inside {
            let pid = pid as libc::pid_t;
            // SAFETY: plain system calls on a pid; a process that is gone
            // meanwhile makes them fail with ESRCH, which is fine.
            unsafe {
                let group = libc::getpgid(pid);
                if group > 1 && group != own_group {
                    libc::killpg(group, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if round + 1 < MAX_ROUNDS {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if found > 0 {
        tracing::warn!(
            processes = found,
            dir = %dir.display(),
            "killed processes a previous run left in the work directory"
        );
    }
    found
}

/// Live processes (not zombies) other than this one whose working
/// directory is `dir` or under it.
fn processes_under(dir: &Path, own_pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own_pid)
        .filter(|&pid| {
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
                && !is_zombie(pid)
        })
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}
