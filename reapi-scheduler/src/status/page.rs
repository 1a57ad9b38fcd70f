//! The status page: one [`ClusterStatus`] as plain HTML that reloads
//! itself every few seconds. No script: a browser, `curl` or a headless
//! browser in a test all see the same document. Every text that comes from
//! a client or a worker (targets, mnemonics, ids, messages) is escaped.

use std::fmt::{self, Write};
use std::time::Duration;

use super::{ClusterStatus, MemberState};

/// How often the page reloads itself, in seconds.
pub const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}td.n{text-align:right}\
.live{color:#176117}.draining{color:#8a5a00}.suspected,.silent,.failed{color:#a11}\
code{font-size:.9em}";

/// The page for `status`.
pub fn render(status: &ClusterStatus) -> String {
    let mut html = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail.
    let _ = write_page(&mut html, status);
    html
}

fn write_page(out: &mut String, status: &ClusterStatus) -> fmt::Result {
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>reapi-scheduler {id}</title><style>{STYLE}</style></head><body>\n\
         <h1>Scheduler {id}</h1>\n",
        id = Escaped(&status.scheduler_id)
    )?;
    write_summary(out, status)?;
    write_pools(out, status)?;
    write_schedulers(out, status)?;
    write_workers(out, status)?;
    write_running(out, status)?;
    write_failures(out, status)?;
    write!(
        out,
        "<p>Refreshes every {REFRESH_SECONDS} s. Metrics: <a href=\"/metrics\">/metrics</a>; \
         readiness: <a href=\"/readyz\">/readyz</a>.</p>\n</body></html>\n"
    )
}

fn write_summary(out: &mut String, status: &ClusterStatus) -> fmt::Result {
    let (executors, used) = status.pools.iter().fold((0, 0), |(all, used), p| {
        (all + p.executors, used + p.used_executors)
    });
    let hit_rate = match status.cache.hit_rate() {
        Some(rate) => format!("{:.1} %", rate * 100.0),
        None => "no lookup yet".to_string(),
    };
    writeln!(
        out,
        "<section id=\"summary\"><table>\
         <tr><th>Queued actions</th><td class=\"n\" id=\"queued\">{}</td></tr>\
         <tr><th>Running actions</th><td class=\"n\" id=\"running-count\">{}</td></tr>\
         <tr><th>Executors used</th><td class=\"n\" id=\"executors\">{used} of {executors}</td></tr>\
         <tr><th>Action cache hit rate</th><td class=\"n\" id=\"hit-rate\">{hit_rate}</td></tr>\
         <tr><th>Action cache lookups</th><td class=\"n\">{} hits, {} misses</td></tr>\
         </table></section>",
        status.queued, status.running_total, status.cache.hits, status.cache.misses
    )
}

fn write_pools(out: &mut String, status: &ClusterStatus) -> fmt::Result {
    out.push_str(
        "<section id=\"pools\"><h2>Pools</h2><table><tr><th>Properties</th><th>Workers</th>\
         <th>Draining</th><th>Used executors</th><th>Executors</th><th>Queued for it</th></tr>\n",
    );
    if status.pools.is_empty() {
        out.push_str("<tr><td colspan=\"6\">No worker is linked.</td></tr>\n");
    }
    for p in &status.pools {
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            Escaped(or_none(&p.pool)),
            p.workers,
            p.draining_workers,
            p.used_executors,
            p.executors,
            p.queued_actions
        )?;
    }
    out.push_str("</table></section>\n");
    Ok(())
}

fn write_schedulers(out: &mut String, status: &ClusterStatus) -> fmt::Result {
    out.push_str(
        "<section id=\"schedulers\"><h2>Schedulers</h2><table><tr><th>Id</th><th>Address</th>\
         <th>State</th><th>Last heard</th></tr>\n",
    );
    for member in &status.schedulers {
        let heard = match member.last_heard {
            Some(age) => format!("{} ago", Age(age)),
            None => "this scheduler".to_string(),
        };
        writeln!(
            out,
            "<tr><td>{}</td><td>{}</td>{}<td>{heard}</td></tr>",
            Escaped(&member.id),
            Escaped(&member.address),
            StateCell(&member.state)
        )?;
    }
    out.push_str("</table></section>\n");
    Ok(())
}

fn write_workers(out: &mut String, status: &ClusterStatus) -> fmt::Result {
    out.push_str(
        "<section id=\"workers\"><h2>Workers</h2><table><tr><th>Id</th><th>Blob address</th>\
         <th>State</th><th>Used executors</th><th>Executors</th><th>Replica space</th>\
         <th>Last report</th></tr>\n",
    );
    if status.workers.is_empty() {
        out.push_str("<tr><td colspan=\"7\">No worker is linked.</td></tr>\n");
    }
    for worker in &status.workers {
        writeln!(
            out,
            "<tr><td>{}</td><td>{}</td>{}<td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{} ago</td></tr>",
            Escaped(&worker.id),
            Escaped(or_none(&worker.address)),
            StateCell(&worker.state),
            worker.used_executors,
            worker.executors,
            Bytes(worker.replica_space),
            Age(worker.last_heard)
        )?;
    }
    out.push_str("</table></section>\n");
    Ok(())
}

fn write_running(out: &mut String, status: &ClusterStatus) -> fmt::Result {
    writeln!(
        out,
        "<section id=\"running\"><h2>Running actions ({})</h2><table><tr><th>Mnemonic</th>\
         <th>Target</th><th>Running for</th><th>Queued for</th><th>Worker</th><th>Phase</th>\
         <th>Action</th></tr>",
        status.running_total
    )?;
    if status.running.is_empty() {
        out.push_str("<tr><td colspan=\"7\">Nothing runs.</td></tr>\n");
    }
    for action in &status.running {
        writeln!(
            out,
            "<tr class=\"action\"><td class=\"mnemonic\">{}</td><td class=\"target\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td>\
             <td><code>{}</code></td></tr>",
            Escaped(or_none(&action.mnemonic)),
            Escaped(or_none(&action.target)),
            Age(action.running_for),
            Age(action.queued_for),
            Escaped(&action.worker),
            action.phase,
            action.action_digest
        )?;
    }
    if status.running_total > status.running.len() {
        writeln!(
            out,
            "<tr><td colspan=\"7\">and {} more</td></tr>",
            status.running_total - status.running.len()
        )?;
    }
    out.push_str("</table></section>\n");
    Ok(())
}

fn write_failures(out: &mut String, status: &ClusterStatus) -> fmt::Result {
    out.push_str(
        "<section id=\"failures\"><h2>Recent failures</h2><table><tr><th>When</th>\
         <th>Mnemonic</th><th>Target</th><th>What</th><th>Worker</th><th>Action</th></tr>\n",
    );
    if status.failures.is_empty() {
        out.push_str("<tr><td colspan=\"6\">No action failed.</td></tr>\n");
    }
    for failure in &status.failures {
        let ago = status
            .taken_at
            .duration_since(failure.at)
            .unwrap_or_default();
        writeln!(
            out,
            "<tr class=\"failure\"><td>{} ago</td><td class=\"mnemonic\">{}</td>\
             <td class=\"target\">{}</td><td class=\"failed\">{}</td><td>{}</td>\
             <td><code>{}</code></td></tr>",
            Age(ago),
            Escaped(or_none(&failure.mnemonic)),
            Escaped(or_none(&failure.target)),
            Escaped(&failure.what),
            Escaped(&failure.worker),
            failure.action_digest
        )?;
    }
    out.push_str("</table></section>\n");
    Ok(())
}

fn or_none(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

/// Text made safe for HTML content and attribute values.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['<', '>', '&', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'&' => "&amp;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

struct StateCell<'a>(&'a MemberState);

impl fmt::Display for StateCell<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.0.as_str();
        write!(f, "<td class=\"state {state}\">{state}</td>")
    }
}

/// `4.2 s`, `3 min 05 s`, `2 h 10 min`.
struct Age(Duration);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        match secs {
            0..60 => write!(f, "{:.1} s", self.0.as_secs_f64()),
            60..3600 => write!(f, "{} min {:02} s", secs / 60, secs % 60),
            _ => write!(f, "{} h {:02} min", secs / 3600, secs % 3600 / 60),
        }
    }
}

/// Bytes in the largest binary unit that keeps a whole number.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{CacheLookups, FailedAction, RunningAction, SchedulerMember, WorkerMember};
    use crate::PoolSummary;
    use reapi_core::Digest;
    use std::time::SystemTime;

    fn status() -> ClusterStatus {
        let now = SystemTime::now();
        ClusterStatus {
            scheduler_id: "0123456789ab".into(),
            taken_at: now,
            schedulers: vec![
                SchedulerMember {
                    id: "0123456789ab".into(),
                    address: "10.0.0.1:8980".into(),
                    state: MemberState::Live,
                    this_one: true,
                    last_heard: None,
                },
                SchedulerMember {
                    id: "ba9876543210".into(),
                    address: "10.0.0.2:8980".into(),
                    state: MemberState::Suspected,
                    this_one: false,
                    last_heard: Some(Duration::from_secs(4)),
                },
            ],
            workers: vec![WorkerMember {
                id: "worker-a".into(),
                address: "10.0.1.1:8981".into(),
                state: MemberState::Draining,
                replica_space: 10 << 30,
                executors: 4,
                used_executors: 1,
                last_heard: Duration::from_millis(1500),
            }],
            pools: vec![PoolSummary {
                pool: "OSFamily=linux cpus=4".into(),
                workers: 1,
                draining_workers: 1,
                executors: 4,
                used_executors: 1,
                queued_actions: 3,
            }],
            queued: 3,
            active: 4,
            running: vec![RunningAction {
                action_digest: Digest::of_bytes(b"action"),
                mnemonic: "CppCompile".into(),
                target: "//src:<lib>".into(),
                worker: "worker-a".into(),
                pool: "OSFamily=linux cpus=4".into(),
                phase: "running",
                running_for: Duration::from_secs(125),
                queued_for: Duration::from_millis(300),
            }],
            running_total: 1,
            failures: vec![FailedAction {
                at: now - Duration::from_secs(30),
                action_digest: Digest::of_bytes(b"failed"),
                mnemonic: "Genrule".into(),
                target: "//pkg:fails".into(),
                worker: "worker-a".into(),
                what: "exit code 3".into(),
            }],
            cache: CacheLookups { hits: 3, misses: 1 },
        }
    }

    #[test]
    fn the_page_shows_every_part_and_refreshes_itself() {
        let html = render(&status());
        for expected in [
            "<meta http-equiv=\"refresh\" content=\"5\">",
            "<td class=\"n\" id=\"queued\">3</td>",
            "<td class=\"n\" id=\"executors\">1 of 4</td>",
            "<td class=\"n\" id=\"hit-rate\">75.0 %</td>",
            "<code>OSFamily=linux cpus=4</code>",
            "<td class=\"state suspected\">suspected</td>",
            "4.0 s ago",
            "<td class=\"state draining\">draining</td>",
            "10.0 GiB",
            "<td class=\"mnemonic\">CppCompile</td>",
            "2 min 05 s",
            "<td class=\"failed\">exit code 3</td>",
            "30.0 s ago",
            "<td class=\"target\">//pkg:fails</td>",
        ] {
            assert!(html.contains(expected), "{expected:?} missing from\n{html}");
        }
    }

    #[test]
    fn text_from_clients_is_escaped() {
        let html = render(&status());
        assert!(html.contains("//src:&lt;lib&gt;"), "{html}");
        assert!(!html.contains("<lib>"));
        assert_eq!(
            Escaped("a<b>&\"c'").to_string(),
            "a&lt;b&gt;&amp;&quot;c&#39;"
        );
    }

    #[test]
    fn an_idle_cluster_says_so() {
        let idle = ClusterStatus {
            workers: Vec::new(),
            pools: Vec::new(),
            running: Vec::new(),
            running_total: 0,
            failures: Vec::new(),
            cache: CacheLookups::default(),
            ..status()
        };
        let html = render(&idle);
        for expected in [
            "No worker is linked.",
            "Nothing runs.",
            "No action failed.",
            "no lookup yet",
        ] {
            assert!(html.contains(expected), "{expected:?} missing from\n{html}");
        }
    }

    #[test]
    fn ages_and_sizes_read_well() {
        assert_eq!(Age(Duration::from_millis(4200)).to_string(), "4.2 s");
        assert_eq!(
            Age(Duration::from_secs(3 * 60 + 5)).to_string(),
            "3 min 05 s"
        );
        assert_eq!(Age(Duration::from_secs(7800)).to_string(), "2 h 10 min");
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(3 << 20).to_string(), "3.0 MiB");
    }
}
