//! A running command that leads its own process group, and the thread that
//! waits for it.
//!
//! The group is killed (SIGKILL to the whole group) when the command's own
//! process exits, on timeout ([`ProcessGroup::kill`]) and when the
//! [`ProcessGroup`] is dropped, which is how cancelling a run (dropping its
//! future) kills everything it started.
//!
//! # Why a thread and `waitid(WNOWAIT)`
//!
//! `killpg(pgid)` is only safe while the group's id cannot have been handed
//! to another process. The kernel does not reuse a pid while a process
//! with that pid exists, zombies included. So the waiting thread first waits
//! for the leader to exit *without reaping it* (`WNOWAIT`), kills what is
//! left of the group while the leader is a zombie, and only then reaps it.
//! Every `killpg` from outside takes the same lock and checks that the
//! leader is not reaped yet. A `tokio::process::Child` reaps on its own, so
//! it cannot give this guarantee; a blocking thread per running command is
//! cheap next to the command itself.
//!
//! Processes that leave the group (`setsid`, `setpgid`) escape a group
//! kill; the command's pid namespace ([`super::launch`]) is what takes those
//! down, when the command (its pid 1) dies.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;

use parking_lot::Mutex;
use reapi_core::{Error, Result};
use tokio::sync::oneshot;

/// Owns a running process group; killing it on drop.
pub struct ProcessGroup {
    pgid: libc::pid_t,
    reaped: Arc<Mutex<bool>>,
}

impl ProcessGroup {
    /// Starts watching the process `pid`, a child of this process that
    /// leads its own process group. The receiver gets its exit status once
    /// it exited and the rest of the group was killed.
    pub fn watch(pid: libc::pid_t) -> Result<(ProcessGroup, oneshot::Receiver<ExitStatus>)> {
        let group = ProcessGroup {
            pgid: pid,
            reaped: Arc::new(Mutex::new(false)),
        };
        let (tx, rx) = oneshot::channel();
        let reaped = Arc::clone(&group.reaped);
        let spawned = std::thread::Builder::new()
            .name(format!("reap-{pid}"))
            .spawn(move || {
                let status = wait_then_reap(pid, &reaped);
                let _ = tx.send(status);
            });
        if let Err(e) = spawned {
            // Dropping `group` kills the command; nobody reaps it, which
            // leaves one zombie rather than a runaway process.
            return Err(Error::internal(format!(
                "starting the thread that waits for process {pid}: {e}"
            )));
        }
        Ok((group, rx))
    }

    /// The process group id (the leader's pid).
    pub fn pgid(&self) -> libc::pid_t {
        self.pgid
    }

    /// Sends SIGKILL to every process of the group, unless the leader has
    /// been reaped already (then the group was killed when it exited).
    pub fn kill(&self) {
        let reaped = self.reaped.lock();
        if !*reaped {
            kill_group(self.pgid);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: killpg has no memory-safety preconditions. ESRCH (no such
    // group) is expected when the group is already gone.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Waits for `pid` to exit, kills the rest of its group, reaps it.
fn wait_then_reap(pid: libc::pid_t, reaped: &Mutex<bool>) -> ExitStatus {
    loop {
        // SAFETY: `info` is a plain C struct the call fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    let mut reaped = reaped.lock();
    // The leader is a zombie now, so its pid (the group id) is still ours.
    kill_group(pid);
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // Someone else reaped it (should not happen): report a kill.
        tracing::warn!(pid, "process was reaped by someone else");
        status = libc::SIGKILL;
        break;
    }
    *reaped = true;
    ExitStatus::from_raw(status)
}

/// The exit code an action result reports: the process's own, or 128 plus
/// the signal that killed it (as shells report it).
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 128,
    }
}
