//! [`LocalExecutorPool`]: N executors on this host, all with the same
//! properties, sharing one CAS, one input materialiser and one sandbox.
//!
//! The scheduler decides what runs where and never gives an executor two
//! jobs at once; the pool still refuses a second concurrent run on one
//! executor (FAILED_PRECONDITION) rather than trusting that.
//!
//! # The work directory
//!
//! ```text
//! {work_dir}/actions/{executor}.{n}/   one per run, removed after it
//!     root/                            the input root; the command runs here
//!     stdout, stderr                   the command's output streams
//! {work_dir}/executables/              executable copies of input blobs
//! ```
//!
//! Both subdirectories are emptied when the pool starts (runs cut off by a
//! crash leave theirs behind), after the processes such runs left running
//! in `actions/` are killed; nothing else in `work_dir` is touched. For
//! hardlinking, `work_dir` should be on the disk store's file system; when
//! it is not, inputs are copied.
//!
//! # Who actions run as
//!
//! [`LocalExecutorConfig::run_as`] names the user the sandbox runs
//! commands as, and must be the one it really uses
//! ([`LocalExecutorConfig::process_sandbox`] makes a matching
//! [`ProcessSandbox`]). Inputs are hardlinked from the disk store only when
//! that user is neither root nor the server's own (it then cannot write
//! to or `chmod` the store's read-only files); otherwise they are copied,
//! so an action writing to its inputs can never change the CAS. See
//! [`crate::identity`]. For another user, the pool also makes the way to
//! `{work_dir}/actions` searchable by it (adding `o+x` where needed, with
//! a warning) and gives it the directories of each input tree.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use reapi_cas::store::DiskStore;
use reapi_core::execution::{
    ExecutionJob, ExecutionOutcome, ExecutorClaim, ExecutorId, ExecutorPool, Sandbox,
};
use reapi_core::platform::{ExecutorProperties, RootFs};
use reapi_core::{BlobStore, Error, ErrorExt, Result};

use crate::action::{run_action, ActionContext};
use crate::action_dir::reset_dir;
use crate::host;
use crate::identity::{self, ActionIdentity};
use crate::materialize::executables::ExecutableCache;
use crate::materialize::Materializer;
use crate::sandbox::cgroup::ActionCgroups;
use crate::sandbox::isolation::Isolation;
use crate::sandbox::launch::Containment;
use crate::sandbox::ProcessSandbox;

/// What an operator chose of the sandbox (`--isolation`,
/// `--default_rootfs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SandboxChoice {
    /// `None`: the strongest level the host allows.
    pub isolation: Option<Isolation>,
    pub default_rootfs: RootFs,
}

/// How a [`LocalExecutorPool`] is set up.
#[derive(Clone, Debug)]
pub struct LocalExecutorConfig {
    /// Where action directories and executable copies live.
    pub work_dir: PathBuf,
    /// Number of executors (actions run at once).
    pub executors: usize,
    /// What every executor offers.
    pub properties: ExecutorProperties,
    /// Names the worker: executors are `{worker}/0`, `{worker}/1`, ...
    pub worker: String,
    /// Byte budget of the executable copies.
    pub executable_cache_bytes: u64,
    /// Decoded `Directory` messages kept between runs.
    pub directory_cache_entries: usize,
    /// Whether input symlinks may have absolute targets (the Capabilities
    /// service advertises `SymlinkAbsolutePathStrategy`; this must agree).
    pub allow_absolute_symlinks: bool,
    /// The `(uid, gid)` the sandbox runs commands as; `None` (the default)
    /// for the server's own user. It must match the sandbox given to the
    /// pool: inputs are hardlinks to the store's files only when this is
    /// another user than the server's and not root, and a sandbox that
    /// really ran commands as root or as the server would then let them
    /// write to the CAS. [`identity::default_run_as`] is what a server
    /// should use.
    pub run_as: Option<(u32, u32)>,
    /// Processes and threads one action may have at once, where actions get
    /// a cgroup each (a fork bomb stops there).
    pub max_processes_per_action: u64,
    /// The isolation level actions run at; `None` (the default) for the
    /// strongest this host allows ([`crate::sandbox::isolation`]).
    pub isolation: Option<Isolation>,
    /// What actions that do not ask (`rootfs`) see as `/`: the host's file
    /// system (the default) or their input root, which needs `linux`.
    pub default_rootfs: RootFs,
}

impl LocalExecutorConfig {
    /// One executor per CPU with the host's properties
    /// ([`host::host_properties`]), worker name `local`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(LocalExecutorConfig {
            work_dir: work_dir.into(),
            executors: host::cpu_count(),
            properties: host::host_properties::<&str>(&[])?,
            worker: "local".to_string(),
            executable_cache_bytes: 1 << 30,
            directory_cache_entries: 4096,
            allow_absolute_symlinks: true,
            run_as: None,
            max_processes_per_action: 8192,
            isolation: None,
            default_rootfs: RootFs::Host,
        })
    }

    /// What a server or worker runs with: one executor per CPU unless
    /// `executors` says otherwise, the host's properties with `platform`
    /// (`key=value`) applied, executors named after `worker`, and actions
    /// run as [`identity::default_run_as`] (never as root, never as the
    /// owner of the store's files).
    pub fn for_host(
        work_dir: impl Into<PathBuf>,
        worker: &str,
        executors: Option<usize>,
        platform: &[String],
    ) -> Result<Self> {
        let mut config = Self::new(work_dir)?;
        config.properties = host::host_properties(platform).context("--platform")?;
        if let Some(n) = executors {
            config.executors = n;
        }
        config.worker = worker.to_string();
        config.run_as = identity::default_run_as();
        Ok(config)
    }

    /// A [`ProcessSandbox`] running commands as [`Self::run_as`] says, at
    /// [`Self::isolation`]: the strongest level the host allows when unset,
    /// and an error naming what is missing when the level asked for is not
    /// available. Starts the thread that launches commands.
    pub fn process_sandbox(&self) -> Result<ProcessSandbox> {
        let containment = crate::sandbox::launch::containment()?;
        let sandbox = match self.run_as {
            Some((uid, gid)) => ProcessSandbox::new().running_as(uid, gid),
            None => ProcessSandbox::new(),
        };
        let linux = match self.isolation {
            Some(level) if level < Isolation::Linux => Err(String::new()),
            _ => self.linux_requirements(containment),
        };
        let sandbox = match (self.isolation, linux) {
            (Some(Isolation::Linux), Err(missing)) => {
                return Err(Error::failed_precondition(format!(
                    "isolation linux is not available on this host: {missing}"
                )))
            }
            (Some(Isolation::Linux) | None, Ok(cgroups)) => {
                let work_dir = std::path::absolute(&self.work_dir)
                    .with_context(|| format!("resolving {}", self.work_dir.display()))?;
                // The server's data (the store, the other actions) is the
                // work directory's parent in every layout we ship.
                let hidden = match work_dir.parent() {
                    Some(parent) if parent.parent().is_some() => parent.to_path_buf(),
                    _ => work_dir,
                };
                sandbox
                    .with_cgroups(Arc::new(cgroups))
                    .with_isolation(Isolation::Linux, Some(hidden))
            }
            (None, Err(missing)) => {
                tracing::warn!("isolation linux is not available, using process: {missing}");
                sandbox.with_isolation(Isolation::Process, None)
            }
            (Some(level), _) => sandbox.with_isolation(level, None),
        };
        let sandbox = sandbox
            .with_default_rootfs(self.default_rootfs)
            .context("--default_rootfs")?;
        tracing::info!(
            isolation = %sandbox.isolation(),
            default_rootfs = %self.default_rootfs,
            "actions run at isolation level {}",
            sandbox.isolation()
        );
        Ok(sandbox)
    }

    /// The cgroups of isolation `linux`, or what the host lacks for it.
    fn linux_requirements(
        &self,
        containment: Containment,
    ) -> std::result::Result<ActionCgroups, String> {
        if containment != Containment::PidNamespace {
            return Err(format!(
                "it needs a server that may create namespaces (root); here: {}",
                containment.describe()
            ));
        }
        ActionCgroups::for_work_dir(&self.work_dir, self.max_processes_per_action)
            .map_err(|e| format!("it needs cgroups: {e}"))
    }
}

/// Adds the properties the sandbox implements (`network`) to what the pool
/// offers. An operator may offer fewer of their values (`--platform
/// network=off` keeps network actions away from the pool), never one the
/// sandbox cannot honour.
fn offer_what_the_sandbox_honours(
    properties: &mut ExecutorProperties,
    sandbox: &dyn Sandbox,
) -> Result<()> {
    let honoured = sandbox.offered_properties();
    let mut names: Vec<&str> = honoured.iter().map(|(name, _)| *name).collect();
    names.dedup();
    for name in names {
        let values: Vec<&str> = honoured
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, value)| *value)
            .collect();
        let configured: Vec<String> = properties.values(name).map(str::to_string).collect();
        if configured.is_empty() {
            for value in values {
                properties.offer(name, value)?;
            }
        } else if let Some(bad) = configured.iter().find(|v| !values.contains(&v.as_str())) {
            return Err(Error::invalid_argument(format!(
                "--platform {name}={bad}: this executor's sandbox cannot honour it \
                 (it can give {name}={})",
                values.join(format!(" or {name}=").as_str())
            )));
        }
    }
    Ok(())
}

/// Executors running actions on this host; see the module documentation.
pub struct LocalExecutorPool {
    executors: Arc<[Executor]>,
    properties: ExecutorProperties,
    free: Arc<AtomicUsize>,
    cas: Arc<dyn BlobStore>,
    materializer: Materializer,
    sandbox: Arc<dyn Sandbox>,
    actions_dir: PathBuf,
    identity: ActionIdentity,
    runs: AtomicU64,
}

struct Executor {
    id: ExecutorId,
    /// Claimed for a lease.
    claimed: AtomicBool,
}

impl LocalExecutorPool {
    /// Sets up the pool: empties its parts of the work directory (on a
    /// blocking thread) and creates the executors.
    ///
    /// `cas` is where inputs are read from and outputs written to; `disk`,
    /// when given, is the local disk store whose content files are
    /// hardlinked or copied into input trees (normally the local layer of
    /// `cas`); `sandbox` must run commands as `config.run_as` says.
    pub async fn new(
        cas: Arc<dyn BlobStore>,
        disk: Option<Arc<DiskStore>>,
        sandbox: Arc<dyn Sandbox>,
        config: LocalExecutorConfig,
    ) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::new_blocking(cas, disk, sandbox, config))
            .await
            .map_err(|e| Error::internal(format!("setting up the executor pool: {e}")))?
    }

    /// [`LocalExecutorPool::new`] for callers outside an async context.
    pub fn new_blocking(
        cas: Arc<dyn BlobStore>,
        disk: Option<Arc<DiskStore>>,
        sandbox: Arc<dyn Sandbox>,
        config: LocalExecutorConfig,
    ) -> Result<Self> {
        if config.executors == 0 {
            return Err(Error::invalid_argument(
                "an executor pool needs at least one executor",
            ));
        }
        let mut config = config;
        offer_what_the_sandbox_honours(&mut config.properties, sandbox.as_ref())?;
        let actions_dir = config.work_dir.join("actions");
        let executables_dir = config.work_dir.join("executables");
        // Commands a killed predecessor left running would go on writing
        // in the directories cleared next.
        crate::sandbox::leftovers::kill_processes_in(&actions_dir);
        reset_dir(&actions_dir)?;
        reset_dir(&executables_dir)?;
        let identity = ActionIdentity::new(config.run_as);
        if let Some(owner) = identity.directory_owner() {
            identity::make_reachable(&actions_dir, owner)?;
        }
        let materializer = Materializer::new(
            Arc::clone(&cas),
            disk,
            ExecutableCache::new(executables_dir, config.executable_cache_bytes),
            identity,
            config.directory_cache_entries,
            config.allow_absolute_symlinks,
        );
        let executors = (0..config.executors)
            .map(|i| Executor {
                id: ExecutorId(format!("{}/{i}", config.worker)),
                claimed: AtomicBool::new(false),
            })
            .collect();
        let run_as = match config.run_as {
            Some((uid, gid)) => match identity::user_name(uid) {
                Some(name) => format!("{name} ({uid}:{gid})"),
                None => format!("{uid}:{gid}"),
            },
            None => "the server's user".to_string(),
        };
        tracing::info!(
            executors = config.executors,
            work_dir = %config.work_dir.display(),
            properties = %config.properties,
            run_as,
            inputs = if identity.may_link_server_files() { "hardlinked" } else { "copied" },
            "local executor pool ready"
        );
        Ok(LocalExecutorPool {
            executors,
            free: Arc::new(AtomicUsize::new(config.executors)),
            properties: config.properties,
            cas,
            materializer,
            sandbox,
            actions_dir,
            identity,
            runs: AtomicU64::new(0),
        })
    }

    /// The pool a server or worker runs: [`LocalExecutorConfig::for_host`]
    /// with its matching [`ProcessSandbox`], over `cas` with `disk` as the
    /// local store inputs are linked from.
    pub async fn for_host(
        cas: Arc<dyn BlobStore>,
        disk: Arc<DiskStore>,
        work_dir: impl Into<PathBuf>,
        worker: &str,
        executors: Option<usize>,
        platform: &[String],
        sandbox: SandboxChoice,
    ) -> Result<Self> {
        let mut config = LocalExecutorConfig::for_host(work_dir, worker, executors, platform)?;
        config.isolation = sandbox.isolation;
        config.default_rootfs = sandbox.default_rootfs;
        let sandbox = Arc::new(config.process_sandbox()?);
        Self::new(cas, Some(disk), sandbox, config).await
    }

    /// Where the pool's action directories are made.
    pub fn actions_dir(&self) -> &std::path::Path {
        &self.actions_dir
    }

    /// The input materialiser (for its cache statistics).
    pub fn materializer(&self) -> &Materializer {
        &self.materializer
    }
}

#[async_trait]
impl ExecutorPool for LocalExecutorPool {
    fn properties(&self) -> &ExecutorProperties {
        &self.properties
    }

    fn capacity(&self) -> usize {
        self.executors.len()
    }

    fn free(&self) -> usize {
        self.free.load(Ordering::Acquire)
    }

    fn claim(&self) -> Option<ExecutorClaim> {
        let index = self.executors.iter().position(|e| {
            e.claimed
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })?;
        self.free.fetch_sub(1, Ordering::AcqRel);
        let (executors, free) = (self.executors.clone(), self.free.clone());
        Some(ExecutorClaim::new(
            self.executors[index].id.clone(),
            move || {
                executors[index].claimed.store(false, Ordering::Release);
                free.fetch_add(1, Ordering::AcqRel);
            },
        ))
    }

    async fn run(&self, claim: &ExecutorClaim, job: ExecutionJob) -> Result<ExecutionOutcome> {
        let executor = claim.executor();
        let Some(index) = self.executors.iter().position(|e| &e.id == executor) else {
            return Err(Error::failed_precondition(format!(
                "executor {executor} is not in this pool"
            )));
        };
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let ctx = ActionContext {
            cas: self.cas.as_ref(),
            materializer: &self.materializer,
            sandbox: self.sandbox.as_ref(),
            executor,
            action_dir: self.actions_dir.join(format!("{index}.{n}")),
            directory_owner: self.identity.directory_owner(),
        };
        run_action(ctx, job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_isolation_names_what_the_host_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let config = LocalExecutorConfig::new(dir.path().join("work")).unwrap();
        let missing = config
            .linux_requirements(Containment::FirstProcessOnly)
            .unwrap_err();
        assert!(missing.contains("namespaces (root)"), "{missing}");
        assert!(missing.contains("no pid namespace"), "{missing}");
    }

    #[test]
    fn lower_levels_are_taken_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LocalExecutorConfig::new(dir.path().join("work")).unwrap();
        for level in [Isolation::None, Isolation::Process] {
            config.isolation = Some(level);
            assert_eq!(config.process_sandbox().unwrap().isolation(), level);
        }
    }
}
