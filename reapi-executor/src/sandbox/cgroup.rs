//! A control group per action: the CPUs and memory the action asked for
//! (`cpus`, `memory` platform properties) become hard limits, the number of
//! its processes and threads is capped, and its CPU time and out-of-memory
//! kills are read back when it ends.
//!
//! Both kernel interfaces are behind [`ActionCgroups`]:
//! - cgroup v1, one hierarchy per controller (`/sys/fs/cgroup/cpu`,
//!   `cpuacct`, `memory`, `pids`): `cpu.cfs_quota_us`,
//!   `memory.limit_in_bytes`, `pids.max`, `cpuacct.usage`, and `oom_kill` in
//!   `memory.oom_control`;
//! - cgroup v2, one tree (`/sys/fs/cgroup/cgroup.controllers` exists):
//!   `cpu.max`, `memory.max`, `pids.max`, `usage_usec` in `cpu.stat`, and
//!   `oom_kill` in `memory.events`.
//!
//! Action groups live under the server's own group (read from
//! `/proc/self/cgroup`), in a directory named after the executor's work
//! directory, so several servers on one host never touch each other's.
//! A command joins its group before `exec` ([`super::launch`]), so nothing
//! it runs escapes it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reapi_core::platform::Resources;

/// How the parent of an executor's action groups is named, followed by
/// `{pid}-{work directory tag}`.
const LEAF_PREFIX: &str = "reapi-actions-";

/// The CFS period for CPU limits: a quota of `cpus` × this per period.
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Where this executor's action groups are made, for each controller.
#[derive(Debug)]
pub struct ActionCgroups {
    version: CgroupVersion,
    /// v1: one parent per controller; v2: one parent with every controller.
    parents: Vec<(Controller, PathBuf)>,
    /// Processes (and threads) an action may have at once.
    max_processes: u64,
    next: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Controller {
    Cpu,
    CpuAccounting,
    Memory,
    Pids,
    /// v2: the one tree holding all of them.
    All,
}

impl Controller {
    const V1: [Controller; 4] = [
        Controller::Cpu,
        Controller::CpuAccounting,
        Controller::Memory,
        Controller::Pids,
    ];

    fn v1_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::CpuAccounting => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::All => "",
        }
    }
}

/// Why action groups cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup controllers for cpu, memory and pids are mounted under /sys/fs/cgroup")]
    NotMounted,
    #[error("this process's cgroup is not listed in /proc/self/cgroup for {0}")]
    OwnGroupUnknown(&'static str),
    #[error("cgroup v2 does not offer the {0} controller to this process's group")]
    ControllerMissing(&'static str),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ActionCgroups {
    /// Prepares the parent groups for the executor working in `work_dir`,
    /// killing whatever a previous run left in them.
    pub fn for_work_dir(work_dir: &Path, max_processes: u64) -> Result<Self, CgroupError> {
        ActionCgroups::under(Path::new("/sys/fs/cgroup"), work_dir, max_processes)
    }

    fn under(mount: &Path, work_dir: &Path, max_processes: u64) -> Result<Self, CgroupError> {
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(io_error(Path::new("/proc/self/cgroup")))?;
        let tag = format!("{:016x}", path_tag(work_dir));
        let leaf = format!("{LEAF_PREFIX}{}-{tag}", std::process::id());
        let (version, parents) = if mount.join("cgroup.controllers").exists() {
            let parent = mount.join(relative(own_path(&own, None)?)).join(&leaf);
            (CgroupVersion::V2, vec![(Controller::All, parent)])
        } else {
            let mut parents = Vec::new();
            for controller in Controller::V1 {
                let name = controller.v1_name();
                // Hosts that co-mount cpu and cpuacct name one hierarchy
                // twice through symlinks: the real path makes them one.
                let root = mount.join(name);
                let root = root.canonicalize().unwrap_or(root);
                if !root.join("cgroup.procs").exists() {
                    return Err(CgroupError::NotMounted);
                }
                let own = own_path(&own, Some(name))?;
                parents.push((controller, root.join(relative(own)).join(&leaf)));
            }
            (CgroupVersion::V1, parents)
        };
        let groups = ActionCgroups {
            version,
            parents,
            max_processes,
            next: AtomicU64::new(0),
        };
        groups.remove_stale(&tag);
        groups.prepare()?;
        Ok(groups)
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Removes the parents a previous run left: those of the same work
    /// directory, and those of processes that no longer exist (a killed
    /// server whose work directory is not used again), killing what is
    /// still in them.
    fn remove_stale(&self, tag: &str) {
        for (_, parent) in &self.parents {
            let Some(siblings) = parent.parent().and_then(|dir| fs::read_dir(dir).ok()) else {
                continue;
            };
            for sibling in siblings.flatten() {
                let name = sibling.file_name();
                let Some((pid, sibling_tag)) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(LEAF_PREFIX))
                    .and_then(|rest| rest.split_once('-'))
                else {
                    continue;
                };
                let pid: libc::pid_t = pid.parse().unwrap_or(0);
                // SAFETY: signal 0 only checks that the process exists.
                let gone = pid <= 0 || unsafe { libc::kill(pid, 0) } != 0;
                if sibling_tag == tag || gone {
                    remove_tree(&sibling.path());
                }
            }
        }
    }

    /// Creates the parents, or empties them of a previous run's groups.
    fn prepare(&self) -> Result<(), CgroupError> {
        for (_, parent) in &self.parents {
            if parent.exists() {
                remove_tree(parent);
            }
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        if self.version == CgroupVersion::V2 {
            let parent = &self.parents[0].1;
            let control = parent.join("cgroup.subtree_control");
            let offered =
                fs::read_to_string(parent.join("cgroup.controllers")).map_err(io_error(parent))?;
            for name in ["cpu", "memory", "pids"] {
                if !offered.split_whitespace().any(|c| c == name) {
                    return Err(CgroupError::ControllerMissing(name));
                }
                fs::write(&control, format!("+{name}")).map_err(io_error(&control))?;
            }
        }
        Ok(())
    }

    /// A new group for one run, limited to what `wanted` asks (a zero
    /// resource is not limited).
    pub fn create(&self, wanted: Resources) -> io::Result<ActionCgroup> {
        let name = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        let mut group = ActionCgroup {
            version: self.version,
            dirs: Vec::with_capacity(self.parents.len()),
            memory_limit: wanted.memory,
        };
        for (controller, parent) in &self.parents {
            let dir = parent.join(&name);
            if !group.dirs.iter().any(|(_, made)| *made == dir) {
                fs::create_dir(&dir)?;
            }
            group.dirs.push((*controller, dir));
        }
        group.limit(wanted, self.max_processes)?;
        Ok(group)
    }
}

impl Drop for ActionCgroups {
    fn drop(&mut self) {
        for (_, parent) in &self.parents {
            // Empty once every run's group is gone; left for the next
            // start to clear otherwise.
            let _ = fs::remove_dir(parent);
        }
    }
}

/// One run's group; removed when dropped (its processes must be gone).
#[derive(Debug)]
pub struct ActionCgroup {
    version: CgroupVersion,
    dirs: Vec<(Controller, PathBuf)>,
    memory_limit: u64,
}

impl ActionCgroup {
    fn dir(&self, controller: Controller) -> &Path {
        let wanted = match self.version {
            CgroupVersion::V1 => controller,
            CgroupVersion::V2 => Controller::All,
        };
        self.dirs
            .iter()
            .find(|(c, _)| *c == wanted)
            .map(|(_, dir)| dir.as_path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    fn limit(&self, wanted: Resources, max_processes: u64) -> io::Result<()> {
        let write = |controller, file: &str, value: String| {
            fs::write(self.dir(controller).join(file), value)
        };
        if wanted.cpus > 0 {
            let quota = u64::from(wanted.cpus) * CPU_PERIOD_US;
            match self.version {
                CgroupVersion::V1 => {
                    write(
                        Controller::Cpu,
                        "cpu.cfs_period_us",
                        CPU_PERIOD_US.to_string(),
                    )?;
                    write(Controller::Cpu, "cpu.cfs_quota_us", quota.to_string())?;
                }
                CgroupVersion::V2 => write(
                    Controller::Cpu,
                    "cpu.max",
                    format!("{quota} {CPU_PERIOD_US}"),
                )?,
            }
        }
        if wanted.memory > 0 {
            match self.version {
                CgroupVersion::V1 => {
                    write(
                        Controller::Memory,
                        "memory.limit_in_bytes",
                        wanted.memory.to_string(),
                    )?;
                    // With swap accounting on, the limit must cover swap
                    // too, or the action swaps instead of being stopped.
                    let memsw = self
                        .dir(Controller::Memory)
                        .join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        fs::write(memsw, wanted.memory.to_string())?;
                    }
                }
                CgroupVersion::V2 => {
                    write(Controller::Memory, "memory.max", wanted.memory.to_string())?;
                    write(Controller::Memory, "memory.swap.max", "0".into()).or_else(|e| {
                        // No swap controller: nothing to cap.
                        if e.kind() == io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
                }
            }
        }
        write(Controller::Pids, "pids.max", max_processes.to_string())
    }

    /// The `cgroup.procs` files a command writes itself into, one per
    /// hierarchy.
    pub fn procs_files(&self) -> Vec<CString> {
        let mut dirs: Vec<&PathBuf> = self.dirs.iter().map(|(_, dir)| dir).collect();
        dirs.sort();
        dirs.dedup();
        dirs.into_iter()
            .filter_map(|dir| CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok())
            .collect()
    }

    /// CPU time (user and system) the group's processes used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        match self.version {
            CgroupVersion::V1 => {
                let text =
                    fs::read_to_string(self.dir(Controller::CpuAccounting).join("cpuacct.usage"))
                        .ok()?;
                text.trim().parse().ok().map(Duration::from_nanos)
            }
            CgroupVersion::V2 => {
                let text = fs::read_to_string(self.dir(Controller::Cpu).join("cpu.stat")).ok()?;
                keyed_value(&text, "usage_usec").map(Duration::from_micros)
            }
        }
    }

    /// Whether the kernel killed a process of the group for going over its
    /// memory limit.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = match self.version {
            CgroupVersion::V1 => ("memory.oom_control", "oom_kill"),
            CgroupVersion::V2 => ("memory.events", "oom_kill"),
        };
        fs::read_to_string(self.dir(Controller::Memory).join(file))
            .ok()
            .and_then(|text| keyed_value(&text, key))
            .is_some_and(|kills| kills > 0)
    }

    /// The memory limit, in bytes (0: none).
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }
}

impl Drop for ActionCgroup {
    /// Removes the group. Right after a run its processes are gone and this
    /// is one `rmdir` per hierarchy; after a cancel they may still be dying,
    /// and the retries run on a thread of their own rather than on the
    /// async thread that dropped the run.
    fn drop(&mut self) {
        let busy: Vec<PathBuf> = std::mem::take(&mut self.dirs)
            .into_iter()
            .map(|(_, dir)| dir)
            .filter(|dir| fs::remove_dir(dir).is_err_and(|e| e.kind() != io::ErrorKind::NotFound))
            .collect();
        if !busy.is_empty() {
            let _ = std::thread::Builder::new()
                .name("remove-cgroup".into())
                .spawn(move || busy.iter().for_each(|dir| remove_group(dir)));
        }
    }
}

/// `value` of the line `key value` in a cgroup statistics file.
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// This process's group path for `controller` (v1), or in the v2 tree.
fn own_path(
    proc_self_cgroup: &str,
    controller: Option<&'static str>,
) -> Result<String, CgroupError> {
    proc_self_cgroup
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let matches = match controller {
                None => controllers.is_empty(),
                Some(name) => controllers.split(',').any(|c| c == name),
            };
            matches.then(|| path.to_string())
        })
        .ok_or(CgroupError::OwnGroupUnknown(
            controller.unwrap_or("the v2 tree"),
        ))
}

fn relative(path: String) -> PathBuf {
    PathBuf::from(path.trim_start_matches('/'))
}

/// A stable tag for a work directory (FNV-1a of its path).
fn path_tag(path: &Path) -> u64 {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, &b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Kills what is in the group and removes it. A group can only be removed
/// once its processes are gone, which takes the kernel a moment after the
/// last one was killed.
fn remove_group(dir: &Path) {
    for attempt in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => {
                kill_members(dir);
                std::thread::sleep(Duration::from_millis(2 << attempt.min(5)));
            }
        }
    }
    tracing::warn!(group = %dir.display(), "could not remove an action's cgroup");
}

/// Removes a parent left by a previous run, with its groups.
fn remove_tree(parent: &Path) {
    if let Ok(entries) = fs::read_dir(parent) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                tracing::warn!(group = %entry.path().display(), "removing an action cgroup a previous run left");
                remove_group(&entry.path());
            }
        }
    }
    remove_group(parent);
}

fn kill_members(dir: &Path) {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs
        .lines()
        .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
    {
        // SAFETY: kill has no memory-safety preconditions; a process gone
        // meanwhile gives ESRCH.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_paths_and_keyed_values() {
        let text = "12:pids:/a\n4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/user.slice/s\n";
        assert_eq!(own_path(text, Some("memory")).unwrap(), "/process_api/x");
        assert_eq!(own_path(text, Some("cpuacct")).unwrap(), "/");
        assert_eq!(own_path(text, None).unwrap(), "/user.slice/s");
        assert!(own_path("1:cpu:/\n", Some("pids")).is_err());
        let stat = "usage_usec 1500\nuser_usec 1000\n";
        assert_eq!(keyed_value(stat, "usage_usec"), Some(1500));
        assert_eq!(
            keyed_value("oom_kill_disable 0\noom_kill 2\n", "oom_kill"),
            Some(2)
        );
        assert_ne!(path_tag(Path::new("/a")), path_tag(Path::new("/b")));
    }

    /// Hosts that co-mount `cpu,cpuacct` (with `cpu` and `cpuacct` as
    /// symlinks to it) get one group there, joined once. The layout is
    /// built in a plain directory: only the paths are under test.
    #[test]
    fn co_mounted_controllers_share_one_group() {
        let mount = tempfile::tempdir().unwrap();
        let joint = mount.path().join("cpu,cpuacct");
        for dir in [
            &joint,
            &mount.path().join("memory"),
            &mount.path().join("pids"),
        ] {
            fs::create_dir(dir).unwrap();
            fs::write(dir.join("cgroup.procs"), "").unwrap();
        }
        std::os::unix::fs::symlink(&joint, mount.path().join("cpu")).unwrap();
        std::os::unix::fs::symlink(&joint, mount.path().join("cpuacct")).unwrap();
        let work = tempfile::tempdir().unwrap();
        let groups = ActionCgroups::under(mount.path(), work.path(), 16).unwrap();
        assert_eq!(groups.version(), CgroupVersion::V1);
        let group = groups
            .create(Resources {
                cpus: 1,
                memory: 1 << 20,
            })
            .unwrap();
        assert_eq!(
            group.dir(Controller::Cpu),
            group.dir(Controller::CpuAccounting)
        );
        assert_eq!(group.procs_files().len(), 3);
        let quota = fs::read_to_string(group.dir(Controller::Cpu).join("cpu.cfs_quota_us"));
        assert_eq!(quota.unwrap(), "100000");
        // Plain directories are not emptied by the kernel: clear them so
        // the group can be removed.
        for (_, dir) in &group.dirs {
            for file in fs::read_dir(dir).into_iter().flatten().flatten() {
                let _ = fs::remove_file(file.path());
            }
        }
    }
}
