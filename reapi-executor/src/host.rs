//! The host's figures, for the default properties of local executors:
//! `OSFamily`, `ISA`, `cpus` and `memory`.

use reapi_core::platform::{ExecutorProperties, CPUS, MEMORY};
use reapi_core::Result;

/// Number of CPUs this process may use (1 when it cannot be told).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Bytes of physical memory (0 when it cannot be told).
pub fn memory_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on error.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || page_size <= 0 {
        return 0;
    }
    (pages as u64).saturating_mul(page_size as u64)
}

/// The `OSFamily` value of this host, as REAPI clients spell it.
pub fn os_family() -> &'static str {
    std::env::consts::OS
}

/// The `ISA` value of this host, in the spelling of the REAPI platform
/// lexicon (`x86-64`, not Rust's `x86_64`).
pub fn isa() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86-32",
        other => other,
    }
}

/// The host's properties (`OSFamily`, `ISA`, `cpus`, `memory`) with
/// `custom` `name=value` pairs added. A custom pair whose name is one of the
/// four replaces the host's figure (`cpus=4` on a 16-CPU host offers 4);
/// other names are added, and may be given several times.
pub fn host_properties<S: AsRef<str>>(custom: &[S]) -> Result<ExecutorProperties> {
    let overridden = |name: &str| {
        custom
            .iter()
            .any(|pair| pair.as_ref().split_once('=').map(|(n, _)| n) == Some(name))
    };
    let mut pairs: Vec<String> = Vec::new();
    let defaults = [
        ("OSFamily", os_family().to_string()),
        ("ISA", isa().to_string()),
        (CPUS, cpu_count().to_string()),
        (MEMORY, memory_bytes().to_string()),
    ];
    for (name, value) in defaults {
        if !overridden(name) {
            pairs.push(format!("{name}={value}"));
        }
    }
    pairs.extend(custom.iter().map(|pair| pair.as_ref().to_string()));
    ExecutorProperties::from_pairs(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_figures_are_plausible() {
        assert!(cpu_count() >= 1);
        assert!(memory_bytes() > 1 << 20);
        let props = host_properties::<&str>(&[]).unwrap();
        assert_eq!(props.values("OSFamily").collect::<Vec<_>>(), [os_family()]);
        assert_eq!(props.resources().cpus as usize, cpu_count());
        assert_eq!(props.resources().memory, memory_bytes());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(props.values("ISA").collect::<Vec<_>>(), ["x86-64"]);
        }
    }

    #[test]
    fn custom_pairs_add_or_replace() {
        let props = host_properties(&["cpus=3", "label=a", "label=b", "OSFamily=linux"]).unwrap();
        assert_eq!(props.resources().cpus, 3);
        assert_eq!(props.values("label").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(props.values("OSFamily").collect::<Vec<_>>(), ["linux"]);
        assert!(host_properties(&["nonsense"]).is_err());
    }
}
