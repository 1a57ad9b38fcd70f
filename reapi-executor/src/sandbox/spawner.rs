//! A thread that starts commands as another user without `fork()`.
//!
//! Switching user in the child needs code between fork and exec, which
//! makes std fall back from `posix_spawn` (vfork semantics: no copy of the
//! server's address space) to a plain `fork()`. That fork copies the page
//! tables of a server with hundreds of threads and write-protects all its
//! memory, which made spawning `/bin/true` cost several milliseconds of
//! CPU. Linux keeps credentials per thread, and a child inherits those of
//! the thread that cloned it. So one thread drops to the target user for
//! good (raw system calls: glibc's wrappers would switch every thread of
//! the process) and every spawn for that user runs on it, through
//! `posix_spawn`.

use std::io;
use std::sync::mpsc;

use reapi_core::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// A thread running as `(uid, gid)` with no supplementary groups and no
/// capabilities, which runs the closures it is given one at a time.
#[derive(Debug)]
pub(super) struct CredentialThread {
    jobs: mpsc::Sender<Job>,
    uid: u32,
    gid: u32,
}

impl CredentialThread {
    /// Starts the thread and switches it to `(uid, gid)`; fails if the
    /// switch is not allowed (the server is not root).
    pub(super) fn start(uid: u32, gid: u32) -> Result<CredentialThread> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
        std::thread::Builder::new()
            .name(format!("spawn-as-{uid}"))
            .spawn(move || {
                let switched = switch_this_thread(uid, gid);
                let ok = switched.is_ok();
                let _ = ready_tx.send(switched);
                if ok {
                    while let Ok(job) = receiver.recv() {
                        job();
                    }
                }
            })
            .map_err(|e| Error::io("starting the thread that spawns commands", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(CredentialThread { jobs, uid, gid }),
            Ok(Err(e)) => Err(Error::failed_precondition(format!(
                "cannot run commands as uid {uid} gid {gid}: {e}"
            ))),
            Err(_) => Err(Error::internal("the thread that spawns commands ended")),
        }
    }

    /// Runs `job` on the thread and waits for its result. Blocks: call it
    /// from the blocking pool.
    pub(super) fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (result_tx, result_rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move || {
                let _ = result_tx.send(job());
            }))
            .map_err(|_| self.gone())?;
        result_rx.recv().map_err(|_| self.gone())
    }

    fn gone(&self) -> Error {
        Error::internal(format!(
            "the thread that spawns commands as uid {} gid {} ended",
            self.uid, self.gid
        ))
    }
}

/// Gives the calling thread alone the identity `(uid, gid)`, real, effective
/// and saved, so nothing it starts can switch back.
fn switch_this_thread(uid: u32, gid: u32) -> io::Result<()> {
    let no_groups: *const libc::gid_t = std::ptr::null();
    // SAFETY: plain system calls on the calling thread; a null list with
    // size 0 is valid for setgroups.
    let failed = unsafe {
        libc::syscall(libc::SYS_setgroups, 0usize, no_groups) != 0
            || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
            || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
    };
    if failed {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_ids() -> (u32, u32, u32, u32) {
        // SAFETY: these calls read the calling thread's credentials.
        unsafe {
            let (mut r, mut e, mut s) = (0, 0, 0);
            libc::syscall(libc::SYS_getresuid, &mut r, &mut e, &mut s);
            let gid = libc::syscall(libc::SYS_getegid) as u32;
            (r, e, s, gid)
        }
    }

    #[test]
    fn only_the_thread_changes_identity() {
        let (euid, egid) = crate::identity::server_identity();
        if euid != 0 {
            let err = CredentialThread::start(65534, 65534).unwrap_err();
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
            return;
        }
        let thread = CredentialThread::start(65534, 65533).unwrap();
        let (r, e, s, g) = thread.run(thread_ids).unwrap();
        assert_eq!((r, e, s, g), (65534, 65534, 65534, 65533));
        // The rest of the process keeps its identity.
        assert_eq!(crate::identity::server_identity(), (euid, egid));
        let groups = thread
            .run(|| {
                // SAFETY: a zero-sized query of the group list.
                unsafe { libc::getgroups(0, std::ptr::null_mut()) }
            })
            .unwrap();
        assert_eq!(groups, 0, "no supplementary groups");
    }
}
