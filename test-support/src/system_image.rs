//! The smallest system image that runs some of the host's programs: each
//! program and the shared libraries `ldd` says it loads, at the paths the
//! host has them. For actions that see their input root as `/`
//! (`rootfs=input-root`) and for BuildStream's base elements.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `programs` (absolute paths) and their libraries, sorted, each once.
pub fn programs_with_libraries(programs: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = programs.iter().map(PathBuf::from).collect();
    for program in programs {
        let ldd = Command::new("ldd")
            .arg(program)
            .output()
            .unwrap_or_else(|e| panic!("running ldd {program}: {e}"));
        assert!(ldd.status.success(), "ldd {program}: {ldd:?}");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
            // `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file.
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(path) = path.filter(|p| p.starts_with('/')) {
                files.push(PathBuf::from(path));
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

/// Copies `files` (absolute host paths, symlinks followed) into `root` at
/// the same paths.
pub fn copy_into(root: &Path, files: &[PathBuf]) {
    for file in files {
        let to = root.join(file.strip_prefix("/").expect("an absolute path"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(file, &to).unwrap_or_else(|e| panic!("copying {}: {e}", file.display()));
    }
}
