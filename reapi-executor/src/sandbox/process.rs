//! [`ProcessSandbox`]: isolation level `process`. The command runs as a
//! child of the worker, in its own process group (and, where the host
//! allows, its own pid namespace: see [`super::launch`]), with exactly the
//! environment it was given, stdin from `/dev/null` and stdout/stderr
//! straight into files; as the server's user, or as another one
//! ([`ProcessSandbox::running_as`]).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reapi_core::execution::{Sandbox, SandboxCommand, SandboxOutcome};
use reapi_core::platform::{
    RootFs, NETWORK, NETWORK_OFF, NETWORK_ON, ROOTFS, ROOTFS_HOST, ROOTFS_INPUT_ROOT,
};
use reapi_core::{Error, ErrorExt, Result};

use super::cgroup::{ActionCgroup, ActionCgroups};
use super::group::{exit_code, ProcessGroup};
use super::isolation::Isolation;
use super::launch::{launcher, LaunchSpec, PrivateView};
use super::new_root::NewRoot;
use super::resolve::{candidates_in_own_root, resolve_program, NotRunnable, DEFAULT_SEARCH_PATH};

/// Runs commands as child processes, each leading its own process group.
///
/// On timeout and on cancel the whole group gets SIGKILL; when the command
/// itself exits, whatever it left running in its group is killed too. If
/// this process dies, the command dies with it ([`super::launch`]). A
/// timeout of zero means "no timeout".
///
/// By default commands run as the server's own user. With
/// [`ProcessSandbox::running_as`] they run as another user instead, with
/// no supplementary groups (switching needs the server to be root).
#[derive(Clone, Debug)]
pub struct ProcessSandbox {
    default_search_path: String,
    run_as: Option<(u32, u32)>,
    /// Where each command gets a cgroup of its own, if anywhere.
    cgroups: Option<Arc<ActionCgroups>>,
    confinement: Confinement,
}

/// The isolation level and what it hides.
#[derive(Clone, Debug)]
struct Confinement {
    isolation: Isolation,
    /// `linux`: the directory covered by an empty one (the server's data).
    hidden: Option<PathBuf>,
    /// What commands that do not say (`rootfs`) see as `/`.
    default_rootfs: RootFs,
}

impl Default for ProcessSandbox {
    fn default() -> Self {
        ProcessSandbox::new()
    }
}

impl ProcessSandbox {
    /// A sandbox that looks bare program names up in
    /// [`DEFAULT_SEARCH_PATH`] when the action sets no `PATH`.
    pub fn new() -> Self {
        ProcessSandbox::with_default_search_path(DEFAULT_SEARCH_PATH)
    }

    /// Uses `search_path` (colon-separated) instead of the default for
    /// actions without a `PATH`. It is never added to their environment.
    pub fn with_default_search_path(search_path: impl Into<String>) -> Self {
        ProcessSandbox {
            default_search_path: search_path.into(),
            run_as: None,
            cgroups: None,
            confinement: Confinement {
                isolation: Isolation::Process,
                hidden: None,
                default_rootfs: RootFs::Host,
            },
        }
    }

    /// Runs commands as user `uid`, group `gid` and no supplementary
    /// groups. The pool laying out the inputs must be told the same
    /// identity ([`crate::LocalExecutorConfig::run_as`]): it decides
    /// whether inputs may be hardlinks to the store's files.
    pub fn running_as(mut self, uid: u32, gid: u32) -> Self {
        self.run_as = Some((uid, gid));
        self
    }

    /// Runs each command in a cgroup of its own under `cgroups`: the CPUs
    /// and memory it asked for become limits, its processes are counted
    /// and capped, and its CPU time and out-of-memory kills are reported.
    pub fn with_cgroups(mut self, cgroups: Arc<ActionCgroups>) -> Self {
        self.cgroups = Some(cgroups);
        self
    }

    /// Runs commands at isolation level `isolation` (`process` by default;
    /// see [`super::isolation`]). For `linux`, `hidden` is covered by an
    /// empty directory in each command's view (the server's data: the
    /// store and the other actions' directories), all but the command's
    /// own input root; cgroups come from [`Self::with_cgroups`].
    pub fn with_isolation(mut self, isolation: Isolation, hidden: Option<PathBuf>) -> Self {
        self.confinement.isolation = isolation;
        self.confinement.hidden = hidden;
        self
    }

    /// What commands that do not ask (`rootfs`) see as `/`. Only `linux`
    /// can give [`RootFs::InputRoot`].
    pub fn with_default_rootfs(mut self, rootfs: RootFs) -> Result<Self> {
        if rootfs == RootFs::InputRoot && self.confinement.isolation < Isolation::Linux {
            return Err(Error::invalid_argument(format!(
                "{ROOTFS} {rootfs} needs isolation linux, not {}",
                self.confinement.isolation
            )));
        }
        self.confinement.default_rootfs = rootfs;
        Ok(self)
    }

    /// The isolation level commands run at.
    pub fn isolation(&self) -> Isolation {
        self.confinement.isolation
    }

    /// The `(uid, gid)` commands run as; `None` for the server's own.
    pub fn run_as(&self) -> Option<(u32, u32)> {
        self.run_as
    }

    /// The identity to switch commands to, when it is not the server's;
    /// an error when the server cannot switch.
    fn switch_to(&self) -> Result<Option<(u32, u32)>> {
        let Some((uid, gid)) = self.run_as else {
            return Ok(None);
        };
        let (euid, egid) = crate::identity::server_identity();
        if (uid, gid) == (euid, egid) {
            return Ok(None);
        }
        if euid != 0 {
            return Err(Error::failed_precondition(format!(
                "commands are to run as uid {uid} gid {gid}, but the server (uid {euid}) \
                 is not root and cannot switch to them"
            )));
        }
        Ok(Some((uid, gid)))
    }
}

#[async_trait]
impl Sandbox for ProcessSandbox {
    async fn run(&self, command: SandboxCommand) -> Result<SandboxOutcome> {
        let started = SystemTime::now();
        let search_path = self.default_search_path.clone();
        let run_as = self.switch_to()?;
        let timeout = command.timeout;
        let cgroups = self.cgroups.clone();
        let confinement = self.confinement.clone();
        let stderr_path = command.stderr_path.clone();
        // Spawning touches the file system and waits for exec: off the
        // async threads. If this future is dropped meanwhile, the
        // ProcessGroup the task returns is dropped with it, which kills the
        // command.
        let spawned = tokio::task::spawn_blocking(move || {
            start(
                &command,
                &search_path,
                run_as,
                cgroups.as_deref(),
                &confinement,
            )
        })
        .await
        .map_err(|e| Error::internal(format!("starting the command: {e}")))??;
        let (group, mut exited, cgroup) = match spawned {
            Started::Running(group, exited, cgroup) => (group, exited, cgroup),
            Started::NotRunnable(exit_code) => {
                return Ok(SandboxOutcome {
                    exit_code,
                    timed_out: false,
                    started,
                    finished: SystemTime::now(),
                    cpu_time: None,
                });
            }
        };

        let lost = || Error::internal("the thread waiting for the command ended early");
        let (status, timed_out) = if timeout.is_zero() {
            (exited.await.map_err(|_| lost())?, false)
        } else {
            match tokio::time::timeout(timeout, &mut exited).await {
                Ok(status) => (status.map_err(|_| lost())?, false),
                Err(_) => {
                    tracing::info!(
                        pgid = group.pgid(),
                        ?timeout,
                        "command timed out, killing its process group"
                    );
                    group.kill();
                    (exited.await.map_err(|_| lost())?, true)
                }
            }
        };
        drop(group);
        let finished = SystemTime::now();
        let cpu_time = match cgroup {
            Some(cgroup) => {
                tokio::task::spawn_blocking(move || report_usage(&cgroup, &stderr_path))
                    .await
                    .map_err(|e| Error::internal(format!("reading the command's cgroup: {e}")))??
            }
            None => None,
        };
        Ok(SandboxOutcome {
            exit_code: exit_code(status),
            timed_out,
            started,
            finished,
            cpu_time,
        })
    }

    /// Every level runs commands with the host's network; only `linux`
    /// can run them without.
    fn offered_properties(&self) -> Vec<(&'static str, &'static str)> {
        let mut offered = vec![(NETWORK, NETWORK_ON), (ROOTFS, ROOTFS_HOST)];
        if self.confinement.isolation >= Isolation::Linux {
            offered.push((NETWORK, NETWORK_OFF));
            offered.push((ROOTFS, ROOTFS_INPUT_ROOT));
        }
        offered.sort_unstable();
        offered
    }
}

enum Started {
    Running(
        ProcessGroup,
        tokio::sync::oneshot::Receiver<std::process::ExitStatus>,
        Option<ActionCgroup>,
    ),
    NotRunnable(i32),
}

/// Reads what the finished command used, and tells it in its stderr when
/// it was killed for going over its memory limit.
fn report_usage(cgroup: &ActionCgroup, stderr_path: &Path) -> Result<Option<Duration>> {
    if cgroup.oom_killed() {
        let mut stderr = std::fs::OpenOptions::new()
            .append(true)
            .open(stderr_path)
            .with_context(|| format!("opening {}", stderr_path.display()))?;
        writeln!(
            stderr,
            "reapi-executor: the action was killed for using more than its memory limit \
             ({} bytes, its `memory` platform property)",
            cgroup.memory_limit()
        )
        .with_context(|| format!("writing {}", stderr_path.display()))?;
        tracing::info!(
            limit = cgroup.memory_limit(),
            "command killed by the OOM killer"
        );
    }
    Ok(cgroup.cpu_time())
}

fn start(
    command: &SandboxCommand,
    search_path: &str,
    run_as: Option<(u32, u32)>,
    cgroups: Option<&ActionCgroups>,
    confinement: &Confinement,
) -> Result<Started> {
    let stdout = File::create(&command.stdout_path)
        .with_context(|| format!("creating {}", command.stdout_path.display()))?;
    let mut stderr = File::create(&command.stderr_path)
        .with_context(|| format!("creating {}", command.stderr_path.display()))?;
    let Some(arg0) = command.arguments.first() else {
        return Err(Error::invalid_argument("the command has no arguments"));
    };
    let rootfs = command.rootfs.unwrap_or(confinement.default_rootfs);
    if rootfs == RootFs::InputRoot && confinement.isolation < Isolation::Linux {
        return Err(Error::failed_precondition(format!(
            "{ROOTFS}={rootfs} needs isolation linux; this executor runs at {}",
            confinement.isolation
        )));
    }
    let programs = match rootfs {
        RootFs::Host => resolve_program(
            arg0,
            &command.environment,
            &command.working_directory,
            search_path,
        )
        .map(|program| vec![program]),
        RootFs::InputRoot => candidates_in_own_root(arg0, &command.environment, search_path),
    };
    let spawned = programs.and_then(|programs| {
        let cgroup = match cgroups.map(|c| c.create(command.resources)).transpose() {
            Ok(cgroup) => cgroup,
            Err(e) => return Ok(Err(Error::io("creating the command's cgroup", e))),
        };
        Ok(spawn(
            command,
            &programs,
            rootfs,
            run_as,
            cgroup.as_ref(),
            confinement,
            &stdout,
            &stderr,
        )?
        .map(|pid| (pid, cgroup)))
    });
    match spawned {
        Ok(Ok((pid, cgroup))) => {
            let (group, exited) = ProcessGroup::watch(pid)?;
            Ok(Started::Running(group, exited, cgroup))
        }
        Ok(Err(e)) => Err(e),
        Err(not_runnable) => {
            tracing::debug!(arg0, "{}", not_runnable.message);
            writeln!(stderr, "reapi-executor: {}", not_runnable.message)
                .with_context(|| format!("writing {}", command.stderr_path.display()))?;
            Ok(Started::NotRunnable(not_runnable.exit_code))
        }
    }
}

/// How often a spawn that met ETXTBSY is retried. Another thread of this
/// process forking while an executable input was being written holds the
/// file open for writing in the child until that child execs; the window
/// is short.
const TEXT_BUSY_RETRIES: u32 = 5;

/// Spawns the command; the outer error is an outcome (exec failed in a way
/// a shell reports with 126/127), the inner one a failure of the worker.
#[allow(clippy::too_many_arguments)]
fn spawn(
    command: &SandboxCommand,
    programs: &[PathBuf],
    rootfs: RootFs,
    run_as: Option<(u32, u32)>,
    cgroup: Option<&ActionCgroup>,
    confinement: &Confinement,
    stdout: &File,
    stderr: &File,
) -> Result<Result<libc::pid_t>, NotRunnable> {
    let launcher = match launcher() {
        Ok(launcher) => launcher,
        Err(e) => return Ok(Err(e)),
    };
    let mut attempt = 0;
    loop {
        let spec = match launch_spec(
            command,
            programs,
            rootfs,
            run_as,
            cgroup,
            confinement,
            stdout,
            stderr,
        ) {
            Ok(spec) => spec,
            Err(e) => return Ok(Err(e)),
        };
        match launcher.launch(spec) {
            Ok(pid) => return Ok(Ok(pid)),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < TEXT_BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10 << attempt));
            }
            Err(e) => return classify_spawn_error(command, programs, rootfs, e),
        }
    }
}

/// The command in the form `execve` takes. A program may be relative to the
/// working directory (`./tool`): the child changes directory before it
/// execs, so it is found there, and a script's `$0` is what the client
/// wrote. With `rootfs=input-root` paths are those inside the input root.
#[allow(clippy::too_many_arguments)]
fn launch_spec(
    command: &SandboxCommand,
    programs: &[PathBuf],
    rootfs: RootFs,
    run_as: Option<(u32, u32)>,
    cgroup: Option<&ActionCgroup>,
    confinement: &Confinement,
    stdout: &File,
    stderr: &File,
) -> Result<LaunchSpec> {
    let c_string = |bytes: &[u8], what: &str| {
        CString::new(bytes)
            .map_err(|_| Error::invalid_argument(format!("{what} contains a NUL byte")))
    };
    let argv = command
        .arguments
        .iter()
        .map(|arg| c_string(arg.as_bytes(), "an argument"))
        .collect::<Result<Vec<_>>>()?;
    let envp = command
        .environment
        .iter()
        .map(|(name, value)| c_string(format!("{name}={value}").as_bytes(), "a variable"))
        .collect::<Result<Vec<_>>>()?;
    let working_directory = match rootfs {
        RootFs::Host => command.working_directory.clone(),
        RootFs::InputRoot => Path::new("/").join(
            command
                .working_directory
                .strip_prefix(&command.input_root)
                .map_err(|_| Error::internal("the working directory is outside the input root"))?,
        ),
    };
    Ok(LaunchSpec {
        programs: programs
            .iter()
            .map(|program| c_string(program.as_os_str().as_bytes(), "the program"))
            .collect::<Result<_>>()?,
        argv,
        envp,
        working_directory: c_string(
            working_directory.as_os_str().as_bytes(),
            "the working directory",
        )?,
        stdout: stdout
            .try_clone()
            .map_err(|e| Error::io("duplicating the stdout file", e))?,
        stderr: stderr
            .try_clone()
            .map_err(|e| Error::io("duplicating the stderr file", e))?,
        run_as,
        cgroup_procs: cgroup.map(ActionCgroup::procs_files).unwrap_or_default(),
        contained: confinement.isolation >= Isolation::Process,
        // Without a cgroup the memory asked for can only bound the address
        // space (which also counts mappings and reservations, never less
        // than what is resident).
        address_space: (confinement.isolation >= Isolation::Process
            && cgroup.is_none()
            && command.resources.memory > 0)
            .then_some(command.resources.memory),
        private_view: match confinement.isolation {
            Isolation::Linux => {
                let mut view = PrivateView::new(
                    &command.input_root,
                    confinement.hidden.as_deref().unwrap_or(Path::new("/")),
                )
                .map_err(|e| Error::io("preparing the action's view of the file system", e))?;
                view.host_network = command.network;
                if rootfs == RootFs::InputRoot {
                    view.new_root = Some(NewRoot::prepare(&command.input_root).map_err(|e| {
                        if e.kind() == std::io::ErrorKind::InvalidInput {
                            Error::invalid_argument(e.to_string())
                        } else {
                            Error::io("preparing the input root to be the action's /", e)
                        }
                    })?);
                }
                Some(view)
            }
            _ => None,
        },
    })
}

fn classify_spawn_error(
    command: &SandboxCommand,
    programs: &[PathBuf],
    rootfs: RootFs,
    e: std::io::Error,
) -> Result<Result<libc::pid_t>, NotRunnable> {
    let arg0 = command.arguments.first().map_or("", String::as_str);
    let shown = match programs {
        [program] => program.display().to_string(),
        _ => arg0.to_string(),
    };
    if rootfs == RootFs::InputRoot && e.raw_os_error() == Some(libc::ENOENT) {
        let looked: Vec<String> = programs.iter().map(|p| p.display().to_string()).collect();
        return Err(NotRunnable::not_found(format!(
            "{arg0}: not found in the input root, which is the action's / (looked for {}; \
             or its interpreter or loader is missing)",
            looked.join(", ")
        )));
    }
    match e.raw_os_error() {
        // The program exists (we checked), so ENOENT is about its
        // interpreter (`#!/missing/sh`) or its dynamic loader.
        Some(libc::ENOENT) => Err(NotRunnable::not_found(format!(
            "{shown}: cannot execute: {e} (a missing interpreter or loader?)"
        ))),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOEXEC) | Some(libc::ETXTBSY)
        | Some(libc::E2BIG) | Some(libc::EISDIR) | Some(libc::ELOOP) | Some(libc::ENOTDIR) => Err(
            NotRunnable::not_executable(format!("{shown}: cannot execute: {e}")),
        ),
        _ => Ok(Err(Error::io(format!("starting {shown}"), e))),
    }
}
