//! Taking every privilege from a contained command before it execs.
//!
//! Switching from root to the action's user clears the effective and
//! permitted capabilities, but not the bounding set, and a set-user-id
//! program (`su`, `mount`, a copy the action made setuid while it ran as
//! root in its user namespace) would still raise the command back to root.
//! So a contained command gets, in its child between clone and exec:
//!
//! 1. an empty bounding set and ambient set, while it still holds the
//!    `CAP_SETPCAP` that emptying the bounding set takes;
//! 2. after the switch of user, no capabilities in any set (which also
//!    covers a command left running as root);
//! 3. `no_new_privs`, so no `exec` can grant anything again: set-user-id
//!    bits and file capabilities are ignored from then on.
//!
//! The functions here run in that child, on the launching thread's memory:
//! system calls only, no allocation.

use std::ffi::c_ulong;

/// The capabilities the kernel knows, as `PR_CAPBSET_DROP` takes them,
/// read once with the `caps` crate (it probes the running kernel, which may
/// know more or fewer than the headers this was built with).
pub(super) fn known_capabilities() -> Vec<c_ulong> {
    let mut known: Vec<c_ulong> = caps::runtime::thread_all_supported()
        .into_iter()
        .map(|cap| c_ulong::from(cap.index()))
        .collect();
    known.sort_unstable();
    known
}

/// Step 1: empties the bounding and ambient sets. A process without
/// `CAP_SETPCAP` (an unprivileged server without a user namespace) cannot
/// shrink its bounding set; that is not an error, since it has no
/// capabilities to lose and step 3 stops it gaining any.
///
/// # Safety
/// `known` must point to `count` readable values.
pub(super) unsafe fn drop_bounding_and_ambient(known: *const c_ulong, count: usize) -> bool {
    for i in 0..count {
        let cap = *known.add(i);
        if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
            match *libc::__errno_location() {
                libc::EPERM => break,
                // A capability this kernel does not know.
                libc::EINVAL => continue,
                _ => return false,
            }
        }
    }
    // Kernels before 4.3 have no ambient set (EINVAL): nothing to clear.
    libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
        0,
        0,
        0,
    ) == 0
        || *libc::__errno_location() == libc::EINVAL
}

/// Steps 2 and 3: no capability left in the effective, permitted or
/// inheritable set, and `no_new_privs`.
///
/// # Safety
/// Only system calls; safe in the launch child.
pub(super) unsafe fn drop_remaining_and_forbid_new() -> bool {
    // The layout `capset(2)` takes for _LINUX_CAPABILITY_VERSION_3: two
    // 32-bit halves of each set.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let none = [
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    libc::syscall(libc::SYS_capset, &header as *const Header, none.as_ptr()) == 0
        && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as c_ulong, 0, 0, 0) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_knows_at_least_the_classic_capabilities() {
        let known = known_capabilities();
        // CAP_CHOWN (0) through CAP_SETFCAP (31) are in every kernel since
        // 2.6.24; CAP_SYS_ADMIN is 21.
        assert!(known.len() >= 32, "{known:?}");
        assert!(known.contains(&21));
        assert!(known.windows(2).all(|w| w[0] < w[1]));
    }
}
