//! Results: one [`Report`] per measured phase, printed as a table and
//! written as JSON.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::runner::Measured;
use crate::stats::{format_us, Latency};

/// Server or client process figures over the measured phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcFigures {
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub hwm_after_bytes: u64,
    pub cpu_seconds: f64,
    /// CPU time over wall time: how many cores the process kept busy.
    pub cpu_cores: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    /// Short human description of the parameters (`64 MiB, c=1`).
    pub label: String,
    pub params: BTreeMap<String, Value>,
    pub concurrency: usize,
    pub channels: usize,
    pub ops: u64,
    pub errors: u64,
    pub warmup_ops: u64,
    pub elapsed_s: f64,
    pub ops_per_s: f64,
    pub bytes: u64,
    /// Decimal megabytes (10^6 bytes) per second of blob payload.
    pub mb_per_s: f64,
    pub items: u64,
    pub items_per_s: f64,
    /// What `items` counts (blobs, digests, actions).
    pub item_name: String,
    pub latency: Latency,
    /// Extra latency histograms (e.g. Execute stages), by name.
    pub stages: BTreeMap<String, Latency>,
    /// Operations the scenario flagged (e.g. cached Execute results).
    pub flagged: u64,
    pub flagged_name: String,
    pub server: Option<ProcFigures>,
    pub client: Option<ProcFigures>,
    /// Scenario-specific figures (e.g. bytes per queued action).
    pub figures: BTreeMap<String, f64>,
    pub first_errors: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn from_measured(scenario: &str, label: String, m: &Measured) -> Report {
        let secs = m.elapsed.as_secs_f64();
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let figures = |pair: &Option<(crate::procfs::ProcSample, crate::procfs::ProcSample)>| {
            pair.map(|(a, b)| {
                let cpu = (b.cpu_seconds - a.cpu_seconds).max(0.0);
                ProcFigures {
                    rss_before_bytes: a.rss_bytes,
                    rss_after_bytes: b.rss_bytes,
                    hwm_after_bytes: b.hwm_bytes,
                    cpu_seconds: cpu,
                    cpu_cores: if secs > 0.0 { cpu / secs } else { 0.0 },
                }
            })
        };
        let mut notes = Vec::new();
        if m.exhausted {
            notes.push("stopped early: the prepared pool ran out".to_owned());
        }
        Report {
            scenario: scenario.to_owned(),
            label,
            ops: m.ops,
            errors: m.errors,
            warmup_ops: m.warmup_ops,
            elapsed_s: secs,
            ops_per_s: rate(m.ops),
            bytes: m.bytes,
            mb_per_s: rate(m.bytes) / 1e6,
            items: m.items,
            items_per_s: rate(m.items),
            latency: Latency::of(&m.latency),
            stages: m
                .extra
                .iter()
                .filter(|(_, h)| !h.is_empty())
                .map(|(name, h)| ((*name).to_owned(), Latency::of(h)))
                .collect(),
            flagged: m.flagged,
            server: figures(&m.server),
            client: figures(&m.client),
            first_errors: m.first_errors.clone(),
            notes,
            ..Default::default()
        }
    }

    pub fn param(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.params.insert(name.to_owned(), value.into());
        self
    }
}

/// The whole output of one invocation.
#[derive(Serialize)]
pub struct Output<'a> {
    pub tool: &'static str,
    pub version: &'static str,
    pub target: &'a str,
    pub instance: &'a str,
    pub command: String,
    pub unix_time: u64,
    pub reports: &'a [Report],
}

/// The results table, one row per report, then each report's stage
/// breakdown, figures and errors.
pub fn print_table(out: &mut dyn std::io::Write, reports: &[Report]) -> std::io::Result<()> {
    let header = [
        "scenario", "params", "ops", "ops/s", "MB/s", "items/s", "p50", "p99", "p99.9", "max",
        "srv CPU", "cli CPU", "errors",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in reports {
        let cores = |p: &Option<ProcFigures>| {
            p.as_ref()
                .map_or("-".to_owned(), |p| format!("{:.2}", p.cpu_cores))
        };
        rows.push(vec![
            r.scenario.clone(),
            r.label.clone(),
            r.ops.to_string(),
            format!("{:.1}", r.ops_per_s),
            if r.bytes > 0 {
                format!("{:.1}", r.mb_per_s)
            } else {
                "-".to_owned()
            },
            if r.items != r.ops {
                format!("{:.0} {}/s", r.items_per_s, r.item_name)
            } else {
                "-".to_owned()
            },
            format_us(r.latency.p50_us),
            format_us(r.latency.p99_us),
            format_us(r.latency.p999_us),
            format_us(r.latency.max_us),
            cores(&r.server),
            cores(&r.client),
            r.errors.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                let pad = w - cell.chars().count();
                if c < 2 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            writeln!(out, "{}", "-".repeat(total))?;
        }
    }
    for r in reports {
        let mut lines = Vec::new();
        for (name, l) in &r.stages {
            lines.push(format!(
                "  stage {name:<22} p50 {:>9}  p99 {:>9}  mean {:>9}",
                format_us(l.p50_us),
                format_us(l.p99_us),
                format_us(l.mean_us)
            ));
        }
        if !r.flagged_name.is_empty() {
            lines.push(format!("  {}: {} of {}", r.flagged_name, r.flagged, r.ops));
        }
        for (name, value) in &r.figures {
            lines.push(format!("  {name}: {value:.1}"));
        }
        if let Some(s) = &r.server {
            lines.push(format!(
                "  server RSS {:.1} -> {:.1} MiB (peak {:.1} MiB)",
                s.rss_before_bytes as f64 / 1048576.0,
                s.rss_after_bytes as f64 / 1048576.0,
                s.hwm_after_bytes as f64 / 1048576.0
            ));
        }
        for note in &r.notes {
            lines.push(format!("  note: {note}"));
        }
        for e in &r.first_errors {
            lines.push(format!("  error: {e}"));
        }
        if !lines.is_empty() {
            writeln!(out, "{} ({}):", r.scenario, r.label)?;
            for line in lines {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

/// Writes the JSON document to `path`, or to stdout for `-`.
pub fn write_json(path: &str, output: &Output<'_>) -> Result<(), String> {
    let text = serde_json::to_string_pretty(output).map_err(|e| e.to_string())?;
    if path == "-" {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}").map_err(|e| e.to_string())
    } else {
        std::fs::write(Path::new(path), text + "\n").map_err(|e| format!("writing {path}: {e}"))
    }
}
