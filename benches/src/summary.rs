//! `summarize`: reads a results directory (the JSON of every scenario run,
//! `limits.json` from `reapi-bench limits` and `machine.json` from
//! `run.sh`) and prints Markdown: the machine's limits, every figure next
//! to the limit that bounds it, and the targets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use crate::stats::format_us;

#[derive(Args, Clone, Debug)]
pub struct SummarizeArgs {
    /// The results directory.
    #[arg(long)]
    pub results: PathBuf,
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_f64()
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

struct Row {
    file: String,
    report: Value,
}

impl Row {
    fn scenario(&self) -> &str {
        self.report["scenario"].as_str().unwrap_or("")
    }
    fn f(&self, path: &[&str]) -> f64 {
        num(&self.report, path).unwrap_or(0.0)
    }
    fn param(&self, name: &str) -> Option<&Value> {
        self.report["params"].get(name)
    }
    fn param_str(&self, name: &str) -> &str {
        self.param(name).and_then(Value::as_str).unwrap_or("")
    }
    fn concurrency(&self) -> u64 {
        self.report["concurrency"].as_u64().unwrap_or(0)
    }
}

fn gb(mb_s: f64) -> String {
    if mb_s >= 1000.0 {
        format!("{:.2} GB/s", mb_s / 1000.0)
    } else {
        format!("{mb_s:.0} MB/s")
    }
}

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

pub fn summarize(args: SummarizeArgs) -> Result<String, String> {
    let dir = &args.results;
    let limits = read_json(&dir.join("limits.json")).unwrap_or(Value::Null);
    let machine = read_json(&dir.join("machine.json")).unwrap_or(Value::Null);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for path in &files {
        let Some(doc) = read_json(path) else { continue };
        let Some(reports) = doc.get("reports").and_then(Value::as_array) else {
            continue;
        };
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for r in reports {
            rows.push(Row {
                file: file.clone(),
                report: r.clone(),
            });
        }
    }

    let sha_openssl = num(&machine, &["sha256_openssl_mb_s"]).unwrap_or(0.0);
    let sha_crate = num(&limits, &["sha256_sha2_crate_mb_s"]).unwrap_or(0.0);
    let disk_write_buffered = num(&machine, &["disk_write_mb_s"]).unwrap_or(0.0);
    // Large blobs are written with O_DIRECT, so that is the disk's bound
    // when it was measured (older results have only the buffered figure).
    let disk_write_direct = num(&machine, &["disk_write_direct_mb_s"]).unwrap_or(0.0);
    let disk_write = if disk_write_direct > 0.0 {
        disk_write_direct
    } else {
        disk_write_buffered
    };
    let disk_read = num(&machine, &["disk_read_mb_s"]).unwrap_or(0.0);
    let loopback = num(&limits, &["loopback_tcp_mb_s"]).unwrap_or(0.0);
    let spawn = num(&limits, &["spawn_true_per_s"]).unwrap_or(0.0);
    let spawn_p50 = num(&limits, &["spawn_true", "p50_us"]).unwrap_or(0.0);
    let commits1 = num(&limits, &["sync_commit_serial_per_s"]).unwrap_or(0.0);
    let commit_p50 = num(&limits, &["sync_commit", "p50_us"]).unwrap_or(0.0);
    let commits16 = num(&limits, &["sync_commit_16_threads_per_s"]).unwrap_or(0.0);
    let write_bound = match (sha_openssl > 0.0, disk_write > 0.0) {
        (true, true) => sha_openssl.min(disk_write),
        (true, false) => sha_openssl,
        _ => disk_write,
    };

    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line("### Machine limits (measured in the same run)".into());
    line(String::new());
    line("| limit | value | how |".into());
    line("|---|---|---|".into());
    line(format!(
        "| cores | {} | `nproc`; server and load generator share them ({}) |",
        num(&machine, &["cores"])
            .or_else(|| num(&limits, &["cores"]))
            .unwrap_or(0.0),
        machine["pinning"].as_str().unwrap_or("not pinned")
    ));
    line(format!(
        "| load average (1, 5, 15 min) | {} at start, {} at end | `/proc/loadavg`: other work on the machine |",
        machine["loadavg_start"].as_str().unwrap_or("?"),
        machine["loadavg_end"].as_str().unwrap_or("?")
    ));
    line(format!(
        "| SHA-256, one core (OpenSSL) | {} | `openssl speed -evp sha256`, 16 KiB blocks |",
        gb(sha_openssl)
    ));
    line(format!(
        "| SHA-256, one core (`sha2` crate, as the server) | {} | `reapi-bench limits`, 64 MiB buffers |",
        gb(sha_crate)
    ));
    line(format!(
        "| disk write, sequential, buffered | {} | `dd` 1 GiB into a new file, `conv=fdatasync` |",
        gb(disk_write_buffered)
    ));
    if disk_write_direct > 0.0 {
        line(format!(
            "| disk write, sequential, O_DIRECT (the store's large writes; the bound used) | {} | `dd` 1 GiB, `oflag=direct conv=fdatasync` |",
            gb(disk_write_direct)
        ));
    }
    line(format!(
        "| disk read, sequential | {} | `dd` 1 GiB, `iflag=direct` |",
        gb(disk_read)
    ));
    line(format!(
        "| synced small-file commits | {} /s serial (p50 {}), {} /s from 16 threads | create, write 4 KiB, fdatasync, rename, fsync dir |",
        rate(commits1),
        format_us(commit_p50),
        rate(commits16)
    ));
    line(format!(
        "| loopback TCP, one stream | {} | `reapi-bench limits` |",
        gb(loopback)
    ));
    line(format!(
        "| memcpy, one core | {} | 64 MiB buffers |",
        gb(num(&limits, &["memcpy_mb_s"]).unwrap_or(0.0))
    ));
    line(format!(
        "| spawn `/bin/true` | {} /s serial (p50 {}) | `std::process::Command` spawn + wait, from a small process |",
        rate(spawn),
        format_us(spawn_p50)
    ));
    line(String::new());

    line("### Figures".into());
    line(String::new());
    line("| scenario | parameters | result | p50 | p99 | p99.9 | bound by | ratio | server CPU | client CPU | file |".into());
    line("|---|---|---|---|---|---|---|---|---|---|---|".into());
    for r in &rows {
        let s = r.scenario();
        let mb = r.f(&["mb_per_s"]);
        let ops = r.f(&["ops_per_s"]);
        let items = r.f(&["items_per_s"]);
        let (result, bound, ratio) = match s {
            "cas-write" => (
                gb(mb),
                format!("min(SHA-256, disk write) = {}", gb(write_bound)),
                ratio_str(mb, write_bound, "min(SHA-256, disk write)"),
            ),
            "cas-read" => (
                gb(mb),
                format!("loopback TCP {}", gb(loopback)),
                ratio_str(mb, loopback, "loopback"),
            ),
            "batch-update" => (
                format!("{} blobs/s, {}", rate(items), gb(mb)),
                format!("synced commits, 16 threads: {}/s", rate(commits16)),
                ratio_str(items, commits16, "commit rate"),
            ),
            "batch-read" => (
                format!("{} blobs/s, {}", rate(items), gb(mb)),
                "CPU".into(),
                "-".into(),
            ),
            "find-missing" => (
                format!("{} digests/s ({} req/s)", rate(items), rate(ops)),
                "CPU".into(),
                "-".into(),
            ),
            "ac-hit" | "ac-miss" => (format!("{} req/s", rate(ops)), "CPU".into(), "-".into()),
            "ac-update" => (
                format!("{} req/s", rate(ops)),
                format!("synced commits, 16 threads: {}/s", rate(commits16)),
                ratio_str(ops, commits16, "commit rate"),
            ),
            "execute" if r.param_str("mode") != "identical" => (
                format!("{} actions/s", rate(ops)),
                format!("spawn /bin/true {}/s", rate(spawn)),
                ratio_str(ops, spawn, "spawn rate"),
            ),
            "execute" => (format!("{} actions/s", rate(ops)), "CPU".into(), "-".into()),
            "queue-fill" => (
                format!(
                    "{:.0} B/queued action",
                    r.f(&["figures", "rss_bytes_per_queued_action"])
                ),
                "memory".into(),
                "-".into(),
            ),
            _ => (format!("{} ops/s", rate(ops)), "-".into(), "-".into()),
        };
        let cores = |who: &str| {
            num(&r.report, &[who, "cpu_cores"]).map_or("-".to_owned(), |c| format!("{c:.2}"))
        };
        line(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s,
            r.report["label"].as_str().unwrap_or(""),
            result,
            format_us(r.f(&["latency", "p50_us"])),
            format_us(r.f(&["latency", "p99_us"])),
            format_us(r.f(&["latency", "p999_us"])),
            bound,
            ratio,
            cores("server"),
            cores("client"),
            r.file
        ));
    }
    line(String::new());

    // Execute stage breakdowns.
    let staged: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.scenario() == "execute"
                && r.report["stages"]
                    .as_object()
                    .is_some_and(|m| !m.is_empty())
        })
        .collect();
    if !staged.is_empty() {
        line("### Where an Execute's time goes (p50 / mean per stage, server timestamps)".into());
        line(String::new());
        let names: Vec<String> = staged[0].report["stages"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        line(format!("| run | {} |", names.join(" | ")));
        line(format!("|---|{}", "---|".repeat(names.len())));
        for r in staged {
            let cells: Vec<String> = names
                .iter()
                .map(|n| {
                    format!(
                        "{} / {}",
                        format_us(r.f(&["stages", n, "p50_us"])),
                        format_us(r.f(&["stages", n, "mean_us"]))
                    )
                })
                .collect();
            line(format!(
                "| {} | {} |",
                r.report["label"].as_str().unwrap_or(""),
                cells.join(" | ")
            ));
        }
        line(String::new());
    }

    line("### Targets".into());
    line(String::new());
    line("| target | measured | status |".into());
    line("|---|---|---|".into());
    let size_is = |r: &Row, n: u64| r.param("size").and_then(Value::as_u64) == Some(n);
    let pick = |f: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| f(r)).collect::<Vec<_>>();
    let mut targets: BTreeMap<usize, (String, String, bool)> = BTreeMap::new();

    let chunk_is = |r: &Row, n: u64| r.param("chunk").and_then(Value::as_u64) == Some(n);
    if let Some(r) =
        pick(&|r| r.scenario() == "cas-write" && size_is(r, 64 << 20) && chunk_is(r, 1 << 20))
            .into_iter()
            .min_by_key(|r| r.concurrency())
    {
        let mb = r.f(&["mb_per_s"]);
        let want = 0.8 * write_bound;
        targets.insert(
            1,
            (
                format!(
                    "ByteStream write of 64 MiB >= 0.8 x min(SHA-256, disk write) = {}",
                    gb(want)
                ),
                format!(
                    "{} = {:.2} x ({})",
                    gb(mb),
                    mb / write_bound.max(1e-9),
                    r.report["label"].as_str().unwrap_or("")
                ),
                mb >= want,
            ),
        );
    }
    if let Some(r) =
        pick(&|r| r.scenario() == "cas-read" && size_is(r, 64 << 20) && r.concurrency() == 1)
            .into_iter()
            .next()
    {
        let mb = r.f(&["mb_per_s"]);
        targets.insert(
            2,
            (
                "ByteStream read of a cached 64 MiB >= 1.5 GB/s on one stream".into(),
                gb(mb),
                mb >= 1500.0,
            ),
        );
    }
    if let Some(r) = pick(&|r| {
        r.scenario() == "find-missing" && r.param("digests").and_then(Value::as_u64) == Some(10_000)
    })
    .into_iter()
    .max_by(|a, b| a.f(&["items_per_s"]).total_cmp(&b.f(&["items_per_s"])))
    {
        let d = r.f(&["items_per_s"]);
        targets.insert(
            3,
            (
                "FindMissingBlobs >= 2 M digests/s with 10 000 per request".into(),
                format!(
                    "{} digests/s ({})",
                    rate(d),
                    r.report["label"].as_str().unwrap_or("")
                ),
                d >= 2e6,
            ),
        );
    }
    if let Some(r) = pick(&|r| r.scenario() == "ac-hit" && r.concurrency() == 64)
        .into_iter()
        .next()
    {
        let q = r.f(&["ops_per_s"]);
        let p99 = r.f(&["latency", "p99_us"]);
        targets.insert(
            4,
            (
                "GetActionResult hits >= 50 000 req/s at concurrency 64, p99 < 1 ms".into(),
                format!("{} req/s, p99 {}", rate(q), format_us(p99)),
                q >= 50_000.0 && p99 < 1000.0,
            ),
        );
    }
    let unique: Vec<&Row> = pick(&|r| r.scenario() == "execute" && r.param_str("mode") == "unique");
    if !unique.is_empty() {
        let low = unique.iter().min_by_key(|r| r.concurrency()).copied();
        let best = unique
            .iter()
            .max_by(|a, b| a.f(&["ops_per_s"]).total_cmp(&b.f(&["ops_per_s"])))
            .copied();
        if let (Some(low), Some(best)) = (low, best) {
            let p50 = low.f(&["latency", "p50_us"]);
            let aps = best.f(&["ops_per_s"]);
            targets.insert(
                5,
                (
                    "Execute of a trivial action, warm inputs: p50 < 3 ms and >= 500 actions/s"
                        .into(),
                    format!(
                        "p50 {} (c={}), {} actions/s (c={})",
                        format_us(p50),
                        low.concurrency(),
                        rate(aps),
                        best.concurrency()
                    ),
                    p50 < 3000.0 && aps >= 500.0,
                ),
            );
        }
    }
    if let Some(b) = num(&machine, &["index_test_bytes_per_blob_rss"]) {
        let restart = num(&machine, &["index_restart_bytes_per_blob"]);
        targets.insert(
            6,
            (
                "memory: < 100 B of index per blob".into(),
                format!(
                    "{b:.1} B/blob at 1 M blobs (reapi-cas ignored test, RSS growth){}",
                    restart.map_or(String::new(), |r| format!(
                        "; server restart on this run's store: {r:.0} B/blob over {:.0} blobs",
                        num(&machine, &["index_restart_blobs"]).unwrap_or(0.0)
                    ))
                ),
                b < 100.0,
            ),
        );
    }
    if let Some(r) = pick(&|r| r.scenario() == "queue-fill").into_iter().next() {
        let b = r.f(&["figures", "rss_bytes_per_queued_action"]);
        targets.insert(
            7,
            (
                "memory: < 2 KiB per queued action".into(),
                format!(
                    "{b:.0} B/action ({})",
                    r.report["label"].as_str().unwrap_or("")
                ),
                b > 0.0 && b < 2048.0,
            ),
        );
    }
    for (_, (target, measured, ok)) in targets {
        line(format!(
            "| {target} | {measured} | {} |",
            if ok { "met" } else { "MISSED" }
        ));
    }
    Ok(out)
}

fn ratio_str(value: f64, bound: f64, name: &str) -> String {
    if bound > 0.0 {
        format!("{:.2} x {name}", value / bound)
    } else {
        "-".into()
    }
}
