//! `rootfs=input-root`: the command sees its input root as `/`, as
//! BuildStream's actions expect (their input root is a whole system image).
//!
//! In the command's mount namespace, after the private view is mounted
//! (so the input root is a mount point of its own), the child:
//! 1. mounts an empty tmpfs on the input root's `dev` and binds into it the
//!    harmless device nodes every program may use (`null`, `zero`, `full`,
//!    `random`, `urandom`, `tty`), with the usual `fd`/`stdin`/... links;
//! 2. mounts a `/proc` of its own pid namespace on the input root's `proc`;
//! 3. makes the input root `/` with `pivot_root` and detaches the old root,
//!    so nothing of the host stays reachable (unlike `chroot`, which a
//!    process could leave).
//!
//! The `dev` and `proc` mount points are made in the input root by
//! [`NewRoot::prepare`] before the clone, when the inputs lack them; an
//! input that has either as something other than a directory is refused.

use std::ffi::{c_char, c_int, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Device nodes bound into the command's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Links in the command's `/dev`, `(target, name)`.
const LINKS: [(&str, &str); 4] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
];

/// Everything [`NewRoot::enter`] needs, as C strings made before the clone.
pub(super) struct NewRoot {
    root: CString,
    dev: CString,
    proc_dir: CString,
    /// `(host node, its place in the new /dev)`.
    devices: Vec<(CString, CString)>,
    /// `(target, link in the new /dev)`.
    links: Vec<(CString, CString)>,
}

/// What each step of [`NewRoot::enter`] does, for errors.
pub(super) const NEW_ROOT_STEPS: [&str; 7] = [
    "mounting the input root's /dev",
    "making a device node's mount point",
    "binding a device node",
    "linking /dev/fd and the standard streams",
    "mounting the input root's /proc",
    "changing into the input root",
    "making the input root / (pivot_root)",
];

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a path with a NUL byte"))
}

impl NewRoot {
    /// Prepares `input_root` (an absolute path) to become a command's `/`:
    /// creates its `dev` and `proc` mount points when missing.
    pub(super) fn prepare(input_root: &Path) -> io::Result<NewRoot> {
        for name in ["dev", "proc"] {
            let path = input_root.join(name);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("the input root's /{name} is not a directory"),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&path)?,
                Err(e) => return Err(e),
            }
        }
        let dev = input_root.join("dev");
        Ok(NewRoot {
            root: c_path(input_root)?,
            dev: c_path(&dev)?,
            proc_dir: c_path(&input_root.join("proc"))?,
            devices: DEVICES
                .iter()
                .map(|name| {
                    Ok((
                        c_path(&Path::new("/dev").join(name))?,
                        c_path(&dev.join(name))?,
                    ))
                })
                .collect::<io::Result<_>>()?,
            links: LINKS
                .iter()
                .map(|(target, name)| Ok((c_path(Path::new(target))?, c_path(&dev.join(name))?)))
                .collect::<io::Result<_>>()?,
        })
    }

    /// Runs in the launch child, after the private view is mounted: system
    /// calls on memory prepared by [`NewRoot::prepare`] only. On failure,
    /// the index of the step in [`NEW_ROOT_STEPS`].
    ///
    /// # Safety
    /// Only in a child with a mount namespace of its own.
    pub(super) unsafe fn enter(&self) -> Result<(), usize> {
        let check = |step: usize, ok: bool| if ok { Ok(()) } else { Err(step) };
        let none: *const c_char = std::ptr::null();
        let tmpfs = c"tmpfs".as_ptr();
        check(
            0,
            libc::mount(
                tmpfs,
                self.dev.as_ptr(),
                tmpfs,
                libc::MS_NOSUID | libc::MS_NOEXEC,
                c"mode=755".as_ptr().cast(),
            ) == 0,
        )?;
        for (host, inside) in &self.devices {
            let fd: c_int = libc::open(
                inside.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            check(1, fd >= 0)?;
            libc::close(fd);
            check(
                2,
                libc::mount(
                    host.as_ptr(),
                    inside.as_ptr(),
                    none,
                    libc::MS_BIND,
                    std::ptr::null(),
                ) == 0,
            )?;
        }
        for (target, link) in &self.links {
            check(3, libc::symlink(target.as_ptr(), link.as_ptr()) == 0)?;
        }
        check(
            4,
            libc::mount(
                c"proc".as_ptr(),
                self.proc_dir.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) == 0,
        )?;
        check(5, libc::chdir(self.root.as_ptr()) == 0)?;
        // pivot_root(".", "."): the old root ends up stacked under the new
        // one at "/", and detaching it leaves only the input root.
        let dot = c".".as_ptr();
        check(6, libc::syscall(libc::SYS_pivot_root, dot, dot) == 0)?;
        check(6, libc::umount2(dot, libc::MNT_DETACH) == 0)?;
        check(5, libc::chdir(c"/".as_ptr()) == 0)
    }
}
