//! Starting a command so that everything it starts dies with this process.
//!
//! When a server or worker is killed (SIGKILL, a crash, the OOM killer),
//! the commands it was running must not go on: they would keep writing in
//! action directories that a restarted server hands to new actions. Two
//! kernel features make that hold without anyone left to clean up:
//!
//! - `PR_SET_PDEATHSIG`: the command's first process gets SIGKILL when the
//!   *thread* that started it ends. So every command is started from one
//!   thread that lives as long as the process ([`Launcher`]), never from a
//!   pool thread that may retire.
//! - A pid namespace per command: its first process is pid 1 there, and
//!   when pid 1 dies the kernel kills every other process in the namespace,
//!   including those that left the process group (`setsid`) or were
//!   orphaned. Creating one needs `CAP_SYS_ADMIN`: a root server has it; an
//!   unprivileged one gets it inside a user namespace of its own, mapping
//!   only its own uid and gid. Where neither works ([`Containment`] says
//!   which applied), only the first process dies with us, and the rest is
//!   killed by the next start ([`super::leftovers`]).
//!
//! # Why `clone` by hand
//!
//! The code between creating the child and `exec` (the namespace, the
//! parent-death signal, the switch to the action's user) rules out
//! `posix_spawn`, and std's `pre_exec` falls back to `fork()`, which copies
//! the page tables of a server with hundreds of threads: several ms of CPU
//! per command. `clone(CLONE_VM | CLONE_VFORK)` is what `posix_spawn` does
//! inside: the child runs on a stack of its own in the server's memory while
//! the starting thread waits until the child has exec'd or exited. The child
//! therefore only makes system calls on data prepared beforehand: no
//! allocation, no locks. Credentials are switched with raw system calls,
//! since glibc's wrappers would signal every thread of the process.

use std::ffi::{c_char, c_int, c_ulong, c_void, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, OnceLock};

use reapi_core::{Error, Result};

use super::new_root::{NewRoot, NEW_ROOT_STEPS};

/// How far the processes of a command are tied to the process that started
/// it, as the host allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Containment {
    /// Each command runs in a pid namespace of its own: all its processes
    /// die when its first process does, which dies with this process.
    PidNamespace,
    /// The same, inside a user namespace that maps only this process's uid
    /// and gid (an unprivileged server).
    UserAndPidNamespace,
    /// Only the command's first process dies with this process; processes
    /// it started are killed with its process group when it exits, or by
    /// the next start of the executor.
    FirstProcessOnly,
}

impl Containment {
    fn clone_flags(self) -> c_int {
        match self {
            Containment::PidNamespace => libc::CLONE_NEWPID,
            Containment::UserAndPidNamespace => libc::CLONE_NEWUSER | libc::CLONE_NEWPID,
            Containment::FirstProcessOnly => 0,
        }
    }

    /// A short description for start lines and logs.
    pub fn describe(self) -> &'static str {
        match self {
            Containment::PidNamespace => "a pid namespace per action",
            Containment::UserAndPidNamespace => "a user and pid namespace per action",
            Containment::FirstProcessOnly => {
                "no pid namespace (only each action's first process dies with the server)"
            }
        }
    }
}

/// What to start: everything already in the form `execve` takes.
pub(super) struct LaunchSpec {
    /// Paths tried in order until one execs (several when a bare name is
    /// looked up in `PATH` inside the command's own root).
    pub programs: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub working_directory: CString,
    pub stdout: File,
    pub stderr: File,
    /// `(uid, gid)` to switch to, with no supplementary groups.
    pub run_as: Option<(u32, u32)>,
    /// `cgroup.procs` files the command joins before anything else runs.
    pub cgroup_procs: Vec<CString>,
    /// `process` and `linux` isolation: a pid namespace (where the host
    /// allows) and resource limits; `none`: neither.
    pub contained: bool,
    /// With `contained`: a cap on the command's address space (bytes), the
    /// memory limit of commands that run without a cgroup.
    pub address_space: Option<u64>,
    /// `linux` isolation: mount, network, IPC and hostname namespaces.
    pub private_view: Option<PrivateView>,
}

/// What a `linux`-level command sees of the file system, prepared by
/// [`PrivateView::new`] before the clone.
pub(super) struct PrivateView {
    /// Covered by an empty tmpfs, unless under `/tmp` (which gets one
    /// anyway).
    hidden: Option<CString>,
    /// Every ancestor of the input root, outermost first, then the input
    /// root: recreated (empty) where the covering hid them.
    path_to_input_root: Vec<CString>,
    /// The action asked for the network (`network=on`): no network
    /// namespace, the host's interfaces.
    pub host_network: bool,
    /// `rootfs=input-root`: the input root becomes the command's `/`.
    pub new_root: Option<NewRoot>,
}

impl PrivateView {
    /// The view for a command whose input root is `input_root`, with
    /// `hidden` (the server's data) covered.
    pub fn new(input_root: &std::path::Path, hidden: &std::path::Path) -> io::Result<PrivateView> {
        use std::os::unix::ffi::OsStrExt;
        let c = |path: &std::path::Path| {
            CString::new(path.as_os_str().as_bytes())
                .map_err(|_| io::Error::other("a path with a NUL byte"))
        };
        let input_root = std::path::absolute(input_root)?;
        let mut ancestors: Vec<&std::path::Path> = input_root
            .ancestors()
            .filter(|p| p.parent().is_some())
            .collect();
        ancestors.reverse();
        Ok(PrivateView {
            hidden: if hidden.starts_with("/tmp") || hidden == std::path::Path::new("/") {
                None
            } else {
                Some(c(hidden)?)
            },
            path_to_input_root: ancestors.into_iter().map(c).collect::<io::Result<_>>()?,
            host_network: false,
            new_root: None,
        })
    }
}

/// `SIOCSIFFLAGS` for `lo`: up and running.
fn loopback_up_request() -> libc::ifreq {
    // SAFETY: an all-zero ifreq is valid; the name and flags are set below.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    request
}

/// Namespaces a `linux`-level command gets besides the pid namespace, and
/// a network namespace unless it asked for the network.
const PRIVATE_VIEW_FLAGS: c_int = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;

/// Open files a contained command may have: a generous cap that still stops
/// a leak from exhausting the host's table.
const MAX_OPEN_FILES: libc::rlim_t = 1 << 16;

type Reply = mpsc::SyncSender<io::Result<libc::pid_t>>;

/// The one thread of this process that starts commands.
#[derive(Debug)]
pub(super) struct Launcher {
    requests: mpsc::Sender<(LaunchSpec, Reply)>,
    containment: Containment,
}

static LAUNCHER: OnceLock<std::result::Result<Launcher, String>> = OnceLock::new();

/// The process's launcher, started on first use.
pub(super) fn launcher() -> Result<&'static Launcher> {
    LAUNCHER
        .get_or_init(Launcher::start)
        .as_ref()
        .map_err(|message| Error::internal(message.clone()))
}

/// How commands started by this process are contained (starts the
/// launcher if needed).
pub fn containment() -> Result<Containment> {
    Ok(launcher()?.containment)
}

impl Launcher {
    fn start() -> std::result::Result<Launcher, String> {
        let (requests, receiver) = mpsc::channel::<(LaunchSpec, Reply)>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("launch-actions".into())
            .spawn(move || {
                let mut thread = match LaunchThread::new() {
                    Ok(thread) => thread,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(thread.containment));
                // The sender lives in a static: this loop, and with it the
                // thread the commands' parent-death signal is tied to, ends
                // only with the process.
                while let Ok((spec, reply)) = receiver.recv() {
                    let _ = reply.send(thread.launch(spec));
                }
            })
            .map_err(|e| format!("starting the thread that launches actions: {e}"))?;
        let containment = ready_rx
            .recv()
            .map_err(|_| "the thread that launches actions ended".to_string())?
            .map_err(|e| format!("preparing to launch actions: {e}"))?;
        tracing::info!(
            containment = containment.describe(),
            "actions' processes die with this process"
        );
        Ok(Launcher {
            requests,
            containment,
        })
    }

    /// Starts `spec` and returns the pid of its first process, which leads
    /// its own process group. Blocks until the command has exec'd: call it
    /// from the blocking pool. An error with an OS code is `exec`'s own.
    pub(super) fn launch(&self, spec: LaunchSpec) -> io::Result<libc::pid_t> {
        let gone = || io::Error::other("the thread that launches actions ended");
        let (reply, result) = mpsc::sync_channel(1);
        self.requests.send((spec, reply)).map_err(|_| gone())?;
        result.recv().map_err(|_| gone())?
    }
}

/// Room for the child's stack frames until it execs: a few system call
/// wrappers deep.
const CHILD_STACK_BYTES: usize = 64 * 1024;

struct LaunchThread {
    stack: Vec<u8>,
    dev_null: File,
    containment: Containment,
    /// `"<uid> <uid> 1"` and the gid's, for [`Containment::UserAndPidNamespace`].
    own_ids_map: (CString, CString),
    known_capabilities: Vec<c_ulong>,
}

impl LaunchThread {
    fn new() -> io::Result<LaunchThread> {
        let dev_null = File::open("/dev/null")?;
        let (uid, gid) = crate::identity::server_identity();
        let map = |id: u32| CString::new(format!("{id} {id} 1")).expect("digits only");
        let mut thread = LaunchThread {
            stack: vec![0; CHILD_STACK_BYTES],
            dev_null,
            containment: Containment::FirstProcessOnly,
            own_ids_map: (map(uid), map(gid)),
            known_capabilities: super::privileges::known_capabilities(),
        };
        thread.containment = thread.strongest_containment();
        Ok(thread)
    }

    /// Tries each containment in turn with a child that does everything
    /// but `exec`.
    fn strongest_containment(&mut self) -> Containment {
        // A root server switches actions to another user, which a user
        // namespace mapping only root could not do.
        let root = crate::identity::server_identity().0 == 0;
        let candidates: &[Containment] = if root {
            &[Containment::PidNamespace]
        } else {
            &[Containment::PidNamespace, Containment::UserAndPidNamespace]
        };
        for &candidate in candidates {
            let plan = ChildPlan::probe(candidate, &self.own_ids_map);
            match self.clone_child(&plan, candidate.clone_flags()) {
                Ok(pid) => {
                    let status = reap(pid);
                    if status == 0 && plan.failed().is_none() {
                        return candidate;
                    }
                    tracing::debug!(?candidate, status, "containment probe failed");
                }
                Err(e) => tracing::debug!(?candidate, "containment not available: {e}"),
            }
        }
        Containment::FirstProcessOnly
    }

    fn launch(&mut self, spec: LaunchSpec) -> io::Result<libc::pid_t> {
        // The child moves these onto 0, 1 and 2; above 2 they cannot be
        // overwritten by one another's move.
        let stdin = dup_above_stdio(&self.dev_null)?;
        let stdout = dup_above_stdio(&spec.stdout)?;
        let stderr = dup_above_stdio(&spec.stderr)?;
        let programs = null_terminated(&spec.programs);
        let argv = null_terminated(&spec.argv);
        let envp = null_terminated(&spec.envp);
        let cgroup_procs = null_terminated(&spec.cgroup_procs);
        let path_to_input_root = spec
            .private_view
            .as_ref()
            .map(|view| null_terminated(&view.path_to_input_root));
        let view = spec.private_view.as_ref().map(|view| ViewPlan {
            hidden: view
                .hidden
                .as_ref()
                .map_or(std::ptr::null(), |h| h.as_ptr()),
            path_to_input_root: path_to_input_root
                .as_ref()
                .map_or(std::ptr::null(), |p| p.as_ptr()),
            input_root: view
                .path_to_input_root
                .last()
                .map_or(std::ptr::null(), |p| p.as_ptr()),
            loopback_up: (!view.host_network).then(loopback_up_request),
            new_root: view
                .new_root
                .as_ref()
                .map_or(std::ptr::null(), |root| root as *const NewRoot),
        });
        let containment = if spec.contained {
            self.containment
        } else {
            Containment::FirstProcessOnly
        };
        let mut flags = containment.clone_flags();
        if let Some(view) = &spec.private_view {
            flags |= PRIVATE_VIEW_FLAGS;
            if !view.host_network {
                flags |= libc::CLONE_NEWNET;
            }
        }
        let plan = ChildPlan {
            programs: programs.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            working_directory: spec.working_directory.as_ptr(),
            stdio: [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
            run_as: spec.run_as,
            cgroup_procs: cgroup_procs.as_ptr(),
            view,
            limit_resources: spec.contained,
            address_space: spec.address_space.unwrap_or(0),
            drop_privileges: spec.contained.then_some((
                self.known_capabilities.as_ptr(),
                self.known_capabilities.len(),
            )),
            own_ids_map: (containment == Containment::UserAndPidNamespace)
                .then(|| (self.own_ids_map.0.as_ptr(), self.own_ids_map.1.as_ptr())),
            // SAFETY: getpid has no preconditions.
            parent_pid: unsafe { libc::getpid() },
            check_parent: containment == Containment::FirstProcessOnly,
            probe_only: false,
            failed_stage: AtomicI32::new(0),
            failed_errno: AtomicI32::new(0),
            failed_detail: AtomicI32::new(0),
        };
        let pid = self.clone_child(&plan, flags)?;
        match plan.failed() {
            None => Ok(pid),
            Some((stage, errno)) => {
                reap(pid);
                let os_error = io::Error::from_raw_os_error(errno);
                let detail = plan.failed_detail.load(Ordering::Acquire) as usize;
                match stage {
                    Stage::Exec => Err(os_error),
                    Stage::PrivateView => Err(io::Error::other(format!(
                        "{} ({}): {os_error}",
                        stage.doing(),
                        VIEW_STEPS.get(detail).copied().unwrap_or("?")
                    ))),
                    Stage::NewRoot => Err(io::Error::other(format!(
                        "{} ({}): {os_error}",
                        stage.doing(),
                        NEW_ROOT_STEPS.get(detail).copied().unwrap_or("?")
                    ))),
                    _ => Err(io::Error::other(format!("{}: {os_error}", stage.doing()))),
                }
            }
        }
    }

    /// Clones a child running [`child_main`] on `plan`, and returns once it
    /// has exec'd or exited.
    fn clone_child(&mut self, plan: &ChildPlan, namespaces: c_int) -> io::Result<libc::pid_t> {
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD | namespaces;
        let stack_top = {
            let end = self.stack.as_mut_ptr_range().end as usize;
            (end & !15) as *mut c_void
        };
        // SAFETY: the sets are plain C structs filled in by the calls. Every
        // signal is blocked around the clone so no handler of the server
        // runs in the child, which shares its memory; the child unblocks
        // them only once its handlers are reset to the default.
        let mut previous_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous_mask);
            // SAFETY: `plan` and the stack outlive the child's use of them:
            // with CLONE_VFORK this call returns only once the child has
            // exec'd or exited.
            let pid = libc::clone(
                child_main,
                stack_top,
                flags,
                plan as *const ChildPlan as *mut c_void,
            );
            let error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &previous_mask, std::ptr::null_mut());
            if pid == -1 {
                return Err(error);
            }
            pid
        };
        Ok(pid)
    }
}

/// What the child does, step by step; a failed step is reported by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
enum Stage {
    UserNamespace = 1,
    PrivateView,
    Network,
    NewRoot,
    ResourceLimits,
    ProcessGroup,
    Cgroup,
    BoundingSet,
    Identity,
    Capabilities,
    ParentDeathSignal,
    ParentGone,
    Stdio,
    WorkingDirectory,
    Exec,
}

impl Stage {
    const ALL: [Stage; 15] = [
        Stage::UserNamespace,
        Stage::PrivateView,
        Stage::Network,
        Stage::NewRoot,
        Stage::ResourceLimits,
        Stage::ProcessGroup,
        Stage::Cgroup,
        Stage::BoundingSet,
        Stage::Identity,
        Stage::Capabilities,
        Stage::ParentDeathSignal,
        Stage::ParentGone,
        Stage::Stdio,
        Stage::WorkingDirectory,
        Stage::Exec,
    ];

    fn doing(self) -> &'static str {
        match self {
            Stage::UserNamespace => "mapping the user namespace's ids",
            Stage::PrivateView => "setting up the action's view of the file system",
            Stage::Network => "bringing up the action's loopback interface",
            Stage::NewRoot => "making the input root the action's /",
            Stage::ResourceLimits => "setting the action's resource limits",
            Stage::ProcessGroup => "making the command a process group leader",
            Stage::Cgroup => "joining the action's cgroup",
            Stage::BoundingSet => "emptying the command's capability bounding set",
            Stage::Identity => "switching to the action's user",
            Stage::Capabilities => "dropping the command's capabilities",
            Stage::ParentDeathSignal => "tying the command to the server's life",
            Stage::ParentGone => "starting the command (the server was exiting)",
            Stage::Stdio => "setting up stdin, stdout and stderr",
            Stage::WorkingDirectory => "changing to the working directory",
            Stage::Exec => "executing the program",
        }
    }
}

/// Everything the child needs, prepared by the launching thread: pointers
/// into memory that thread keeps alive until the child is done with it.
struct ChildPlan {
    /// Null-terminated list of paths to try.
    programs: *const *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    working_directory: *const c_char,
    stdio: [c_int; 3],
    run_as: Option<(u32, u32)>,
    /// Null-terminated list of `cgroup.procs` paths.
    cgroup_procs: *const *const c_char,
    view: Option<ViewPlan>,
    limit_resources: bool,
    /// RLIMIT_AS with `limit_resources`; 0: none.
    address_space: u64,
    /// See [`super::privileges`]: the capabilities the kernel knows.
    drop_privileges: Option<(*const c_ulong, usize)>,
    own_ids_map: Option<(*const c_char, *const c_char)>,
    parent_pid: libc::pid_t,
    /// Without a pid namespace the child can see whether the server died
    /// before the parent-death signal was armed.
    check_parent: bool,
    /// Stop before anything but the namespace setup (the containment probe).
    probe_only: bool,
    failed_stage: AtomicI32,
    failed_errno: AtomicI32,
    /// Which step of the stage failed, where a stage has several.
    failed_detail: AtomicI32,
}

impl ChildPlan {
    fn probe(containment: Containment, own_ids_map: &(CString, CString)) -> ChildPlan {
        ChildPlan {
            programs: std::ptr::null(),
            argv: std::ptr::null(),
            envp: std::ptr::null(),
            working_directory: std::ptr::null(),
            stdio: [-1; 3],
            run_as: None,
            cgroup_procs: std::ptr::null(),
            view: None,
            limit_resources: false,
            address_space: 0,
            drop_privileges: None,
            own_ids_map: (containment == Containment::UserAndPidNamespace)
                .then(|| (own_ids_map.0.as_ptr(), own_ids_map.1.as_ptr())),
            parent_pid: 0,
            check_parent: false,
            probe_only: true,
            failed_stage: AtomicI32::new(0),
            failed_errno: AtomicI32::new(0),
            failed_detail: AtomicI32::new(0),
        }
    }

    fn failed(&self) -> Option<(Stage, i32)> {
        let stage = self.failed_stage.load(Ordering::Acquire);
        let stage = Stage::ALL.into_iter().find(|s| *s as i32 == stage)?;
        Some((stage, self.failed_errno.load(Ordering::Acquire)))
    }
}

/// [`PrivateView`] as pointers the child can use.
struct ViewPlan {
    hidden: *const c_char,
    path_to_input_root: *const *const c_char,
    input_root: *const c_char,
    /// `None` when the command uses the host's network.
    loopback_up: Option<libc::ifreq>,
    /// Null unless the input root becomes `/`.
    new_root: *const NewRoot,
}

/// Mounts the private view: nothing the command mounts is seen outside,
/// `/tmp` and the server's data are covered by empty tmpfs, the input root
/// is put back at its own path, and `/proc` shows the command's pid
/// namespace.
unsafe fn mount_private_view(view: &ViewPlan) -> Result<(), usize> {
    let none: *const c_char = std::ptr::null();
    let tmpfs = c"tmpfs".as_ptr();
    let covering = libc::MS_NOSUID | libc::MS_NODEV;
    let check = |step: usize, rc: c_int| if rc == 0 { Ok(()) } else { Err(step) };
    check(
        0,
        libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ),
    )?;
    // The way back to the input root once its path is covered: a
    // descriptor of this namespace's copy of it (one from before the clone
    // belongs to the server's namespace, which a bind mount refuses).
    let root_fd = libc::open(
        view.input_root,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    );
    check(3, if root_fd < 0 { -1 } else { 0 })?;
    let mut by_fd = [0u8; 32];
    proc_self_fd_path(root_fd, &mut by_fd);
    check(
        1,
        libc::mount(
            tmpfs,
            c"/tmp".as_ptr(),
            tmpfs,
            covering,
            c"mode=1777".as_ptr().cast(),
        ),
    )?;
    if !view.hidden.is_null() {
        check(
            2,
            libc::mount(
                tmpfs,
                view.hidden,
                tmpfs,
                covering,
                c"mode=755".as_ptr().cast(),
            ),
        )?;
    }
    let mut dir = view.path_to_input_root;
    while !dir.is_null() && !(*dir).is_null() {
        // Fails with EEXIST where the path was not covered.
        libc::mkdir(*dir, 0o755);
        dir = dir.add(1);
    }
    check(
        3,
        libc::mount(
            by_fd.as_ptr().cast(),
            view.input_root,
            none,
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ),
    )?;
    check(
        4,
        libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ),
    )
}

/// Writes `/proc/self/fd/{fd}` and a NUL into `out`, without allocating.
fn proc_self_fd_path(fd: c_int, out: &mut [u8; 32]) {
    let prefix = b"/proc/self/fd/";
    out[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let mut n = fd.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, digit) in digits[..len].iter().rev().enumerate() {
        out[prefix.len() + i] = *digit;
    }
    out[prefix.len() + len] = 0;
}

/// What each step of [`mount_private_view`] mounts, for errors.
const VIEW_STEPS: [&str; 5] = [
    "making the action's mounts private",
    "mounting a private /tmp",
    "covering the server's data",
    "putting the input root back",
    "mounting a private /proc",
];

/// The new network namespace has only a loopback interface, down.
unsafe fn bring_up_loopback(request: &libc::ifreq) -> bool {
    let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if socket < 0 {
        return false;
    }
    let mut request = *request;
    let done = libc::ioctl(socket, libc::SIOCSIFFLAGS, &mut request) == 0;
    libc::close(socket);
    done
}

/// No core dumps (they would land in the input root as outputs nobody
/// asked for), a cap on open files, and on the address space when
/// `address_space` is not 0.
unsafe fn limit_resources(address_space: u64) -> bool {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let mut files: libc::rlimit = std::mem::zeroed();
    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut files) != 0 {
        return false;
    }
    files.rlim_max = files.rlim_max.min(MAX_OPEN_FILES);
    files.rlim_cur = files.rlim_max;
    let address_space_capped = address_space == 0 || {
        let cap = libc::rlimit {
            rlim_cur: address_space,
            rlim_max: address_space,
        };
        libc::setrlimit(libc::RLIMIT_AS, &cap) == 0
    };
    libc::setrlimit(libc::RLIMIT_CORE, &no_core) == 0
        && libc::setrlimit(libc::RLIMIT_NOFILE, &files) == 0
        && address_space_capped
}

/// The child, between clone and exec. Runs in the server's memory on the
/// launch thread's spare stack, while that thread waits.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the ChildPlan the launching thread keeps alive
    // until this child execs or exits.
    let plan = unsafe { &*(arg as *const ChildPlan) };
    // SAFETY: only system calls on memory prepared by the parent.
    let failed = unsafe { prepare_and_exec(plan) };
    match failed {
        None => 0, // the probe: everything but exec went well
        Some(stage) => {
            // SAFETY: errno is the parent thread's, which is waiting.
            let errno = unsafe { *libc::__errno_location() };
            plan.failed_errno.store(errno, Ordering::Release);
            plan.failed_stage.store(stage as i32, Ordering::Release);
            // SAFETY: leaves without running anything of the server's.
            unsafe { libc::_exit(127) }
        }
    }
}

/// Returns only on failure (the step that failed), or `None` after a probe.
unsafe fn prepare_and_exec(plan: &ChildPlan) -> Option<Stage> {
    if let Some((uid_map, gid_map)) = plan.own_ids_map {
        if !write_proc_self(c"/proc/self/setgroups", c"deny".as_ptr())
            || !write_proc_self(c"/proc/self/uid_map", uid_map)
            || !write_proc_self(c"/proc/self/gid_map", gid_map)
        {
            return Some(Stage::UserNamespace);
        }
    }
    if plan.probe_only {
        return None;
    }
    reset_signal_handlers();
    if let Some(view) = &plan.view {
        if let Err(step) = mount_private_view(view) {
            plan.failed_detail.store(step as i32, Ordering::Release);
            return Some(Stage::PrivateView);
        }
        if let Some(request) = &view.loopback_up {
            if !bring_up_loopback(request) {
                return Some(Stage::Network);
            }
        }
    }
    if plan.limit_resources && !limit_resources(plan.address_space) {
        return Some(Stage::ResourceLimits);
    }
    if libc::setpgid(0, 0) != 0 {
        return Some(Stage::ProcessGroup);
    }
    // Before the switch: the group's files belong to the server's user.
    let mut procs = plan.cgroup_procs;
    while !procs.is_null() && !(*procs).is_null() {
        if !write_kernel_file(*procs, c"0".as_ptr()) {
            return Some(Stage::Cgroup);
        }
        procs = procs.add(1);
    }
    // After everything that needs the host's paths (the cgroup files).
    if let Some(view) = &plan.view {
        if let Some(new_root) = view.new_root.as_ref() {
            if let Err(step) = new_root.enter() {
                plan.failed_detail.store(step as i32, Ordering::Release);
                return Some(Stage::NewRoot);
            }
        }
    }
    // Before the switch: emptying the bounding set takes CAP_SETPCAP.
    if let Some((known, count)) = plan.drop_privileges {
        if !super::privileges::drop_bounding_and_ambient(known, count) {
            return Some(Stage::BoundingSet);
        }
    }
    if let Some((uid, gid)) = plan.run_as {
        let no_groups: *const libc::gid_t = std::ptr::null();
        if libc::syscall(libc::SYS_setgroups, 0usize, no_groups) != 0
            || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
            || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
        {
            return Some(Stage::Identity);
        }
    }
    if plan.drop_privileges.is_some() && !super::privileges::drop_remaining_and_forbid_new() {
        return Some(Stage::Capabilities);
    }
    // After the switch: changing credentials clears the setting.
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
        return Some(Stage::ParentDeathSignal);
    }
    if plan.check_parent && libc::getppid() != plan.parent_pid {
        return Some(Stage::ParentGone);
    }
    for (target, &fd) in plan.stdio.iter().enumerate() {
        if libc::dup2(fd, target as c_int) == -1 {
            return Some(Stage::Stdio);
        }
    }
    if libc::chdir(plan.working_directory) != 0 {
        return Some(Stage::WorkingDirectory);
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    exec_first_found(plan);
    Some(Stage::Exec)
}

/// Execs the first of the plan's programs that exists, as `execvp` does;
/// returns when none could run, with errno from the most telling failure
/// (EACCES from a program that exists over ENOENT from one that does not).
unsafe fn exec_first_found(plan: &ChildPlan) {
    let mut denied = false;
    let mut program = plan.programs;
    while !(*program).is_null() {
        libc::execve(*program, plan.argv, plan.envp);
        match *libc::__errno_location() {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => denied = true,
            _ => return,
        }
        program = program.add(1);
    }
    if denied {
        *libc::__errno_location() = libc::EACCES;
    }
}

/// Signals the server handles go back to their default action, and so does
/// SIGPIPE, which the Rust runtime ignores: a command writing to a closed
/// pipe should die of it as it would started from a shell. Other ignored
/// signals stay ignored, as `exec` would keep them.
unsafe fn reset_signal_handlers() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut current) != 0 {
            continue; // a signal the C library reserves
        }
        if current.sa_sigaction == libc::SIG_DFL
            || (current.sa_sigaction == libc::SIG_IGN && signal != libc::SIGPIPE)
        {
            continue;
        }
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &default, std::ptr::null_mut());
    }
}

/// Writes `text` (NUL-terminated) to a file of `/proc/self`.
unsafe fn write_proc_self(path: &std::ffi::CStr, text: *const c_char) -> bool {
    write_kernel_file(path.as_ptr(), text)
}

/// Writes `text` (NUL-terminated) to the kernel file `path` in one write.
unsafe fn write_kernel_file(path: *const c_char, text: *const c_char) -> bool {
    let fd = libc::open(path, libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let len = libc::strlen(text);
    let written = libc::write(fd, text.cast(), len);
    libc::close(fd);
    written == len as isize
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn dup_above_stdio(file: &File) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own.
    let fd = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits for `pid` and returns its raw wait status (-1 if it cannot).
fn reap(pid: libc::pid_t) -> c_int {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status;
        }
        if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return -1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str, dir: &std::path::Path, run_as: Option<(u32, u32)>) -> LaunchSpec {
        let c = |s: &str| CString::new(s).unwrap();
        LaunchSpec {
            programs: vec![c("/bin/sh")],
            argv: vec![c("sh"), c("-c"), c(script)],
            envp: vec![c("PATH=/usr/bin:/bin")],
            working_directory: CString::new(dir.as_os_str().as_encoded_bytes()).unwrap(),
            stdout: File::create(dir.join("stdout")).unwrap(),
            stderr: File::create(dir.join("stderr")).unwrap(),
            run_as,
            cgroup_procs: Vec::new(),
            contained: true,
            address_space: None,
            private_view: None,
        }
    }

    #[test]
    fn commands_get_their_own_pid_namespace_and_user() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let root = crate::identity::server_identity().0 == 0;
        let run_as = root.then_some((65534, 65533));
        let script = "echo $$ $(id -u) $(id -g) $(id -G) $(pwd); echo oops >&2";
        let pid = launcher()
            .unwrap()
            .launch(spec(script, dir.path(), run_as))
            .unwrap();
        assert_eq!(reap(pid), 0);
        let out = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
        let fields: Vec<&str> = out.split_whitespace().collect();
        let containment = containment().unwrap();
        eprintln!("containment: {containment:?}; output: {out}");
        if containment != Containment::FirstProcessOnly {
            assert_eq!(fields[0], "1", "not pid 1 of its namespace: {out}");
        }
        if root {
            assert_eq!(containment, Containment::PidNamespace);
            assert_eq!(&fields[1..4], ["65534", "65533", "65533"], "{out}");
        }
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(fields[4], cwd.to_str().unwrap());
        let err = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
        assert_eq!(err, "oops\n");
    }

    #[test]
    fn descriptor_paths_are_written_without_allocating() {
        let mut out = [0xffu8; 32];
        proc_self_fd_path(1023, &mut out);
        let path = std::ffi::CStr::from_bytes_until_nul(&out).unwrap();
        assert_eq!(path, c"/proc/self/fd/1023");
        proc_self_fd_path(7, &mut out);
        let path = std::ffi::CStr::from_bytes_until_nul(&out).unwrap();
        assert_eq!(path, c"/proc/self/fd/7");
    }

    #[test]
    fn exec_failures_keep_their_os_code_and_others_say_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let mut missing = spec("true", dir.path(), None);
        missing.programs = vec![CString::new("/no/such/program").unwrap()];
        let err = launcher().unwrap().launch(missing).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");

        let mut nowhere = spec("true", dir.path(), None);
        nowhere.working_directory = CString::new("/no/such/directory").unwrap();
        let err = launcher().unwrap().launch(nowhere).unwrap_err();
        assert_eq!(err.raw_os_error(), None);
        assert!(
            err.to_string()
                .starts_with("changing to the working directory"),
            "{err}"
        );
    }
}
