//! Memory and CPU time of a local process from `/proc` (Linux): the server's
//! when its pid is given, and the load generator's own.

use serde::Serialize;

/// Linux reports `utime`/`stime` in USER_HZ, which is 100 on every
/// architecture the kernel exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// A snapshot of one process.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcSample {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Peak resident set size, bytes.
    pub hwm_bytes: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
}

/// `pid` of `None` reads this process.
pub fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let base = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let cpu = ticks(11)? + ticks(12)?;
    Some(ProcSample {
        rss_bytes: field("VmRSS:"),
        hwm_bytes: field("VmHWM:"),
        cpu_seconds: cpu as f64 / TICKS_PER_SECOND,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_self() {
        let s = sample(None).expect("/proc/self is readable on Linux");
        assert!(s.rss_bytes > 0);
        assert!(s.hwm_bytes >= s.rss_bytes);
    }
}
