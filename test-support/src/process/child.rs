//! A child process for a test: started with its stderr in a log file, killed
//! when dropped, its log at hand for failure messages.
//!
//! The project's binaries announce that they serve with one line on stdout
//! (`reapi-server listening on ...`, `reapi-worker ID ready, ...`):
//! [`Process::start_announced`] waits for that line, with a timeout, so a test
//! starts talking to a process only once it is ready, and a process that
//! crashes or hangs at start fails the test with its log.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A running (or exited, not yet dropped) child process.
pub struct Process {
    /// For messages, e.g. `reapi-scheduler 0`.
    name: String,
    child: Child,
    log_path: PathBuf,
    /// What the process printed on stdout after its first line.
    stdout_rest: Arc<Mutex<String>>,
}

impl Process {
    /// Starts `command` with its stdout and stderr appended to `log_path`,
    /// without waiting for anything.
    pub fn start_logged(name: &str, mut command: Command, log_path: &Path) -> Process {
        let log = open_log(log_path);
        let stdout = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot reopen {}: {e}", log_path.display()));
        command.stdin(Stdio::null()).stdout(stdout).stderr(log);
        let child = spawn(name, &mut command);
        Process {
            name: name.to_string(),
            child,
            log_path: log_path.to_path_buf(),
            stdout_rest: Arc::default(),
        }
    }

    /// Starts `command` with its stderr appended to `log_path` and waits, at
    /// most `timeout`, for its first line on stdout, which must start with
    /// `prefix`. Returns the process and that line. Panics, with the log,
    /// if the process exits, prints something else or nothing in time.
    pub fn start_announced(
        name: &str,
        mut command: Command,
        log_path: &Path,
        prefix: &str,
        timeout: Duration,
    ) -> (Process, String) {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(open_log(log_path));
        let mut child = spawn(name, &mut command);

        // Read stdout on a thread so the wait for the first line can time out;
        // the thread then keeps draining stdout so the process never blocks
        // on a full pipe.
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdout_rest = Arc::new(Mutex::new(String::new()));
        let (first_line_tx, first_line_rx) = mpsc::channel();
        let rest = Arc::clone(&stdout_rest);
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = match lines.next() {
                Some(Ok(line)) => Ok(line),
                Some(Err(e)) => Err(format!("reading its stdout failed: {e}")),
                None => Err("it closed stdout without printing anything".to_string()),
            };
            // The receiver is gone only if the test already gave up.
            let _ = first_line_tx.send(first);
            for line in lines.map_while(Result::ok) {
                let mut rest = rest.lock().unwrap_or_else(|e| e.into_inner());
                rest.push_str(&line);
                rest.push('\n');
            }
        });
        let mut process = Process {
            name: name.to_string(),
            child,
            log_path: log_path.to_path_buf(),
            stdout_rest,
        };

        let line = match first_line_rx.recv_timeout(timeout) {
            Ok(Ok(line)) => line,
            Ok(Err(problem)) => process.fail_start(&problem),
            Err(RecvTimeoutError::Timeout) => {
                process.fail_start(&format!("it printed no line on stdout within {timeout:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => process.fail_start("its stdout reader stopped"),
        };
        if !line.starts_with(prefix) {
            process.fail_start(&format!(
                "its first line on stdout does not start with {prefix:?}: {line:?}"
            ));
        }
        (process, line)
    }

    /// The name given at start, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating system's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file holding the process's stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})\n", self.log_path.display()))
    }

    /// The last `lines` lines of the process's stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// What the process printed on stdout after its first line.
    pub fn stdout_rest(&self) -> String {
        self.stdout_rest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How the process ended, or `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot check whether {} still runs: {e}", self.name))
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Kills the process at once (SIGKILL), as a crash would, and reaps it.
    /// Does nothing if it already exited.
    pub fn kill(&mut self) {
        // Killing an already reaped child is a no-op in std.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM), as an operator or an orchestrator
    /// would. Does not wait: see [`Process::wait_exit`].
    pub fn terminate(&mut self) {
        self.signal("TERM");
    }

    /// Sends `signal` (a name for `kill -s`: `TERM`, `STOP`, `CONT`, ...) to
    /// the process if it still runs. An exited child stays a zombie until
    /// this process reaps it, so its pid cannot have been reused.
    pub fn signal(&mut self, signal: &str) {
        if !self.is_running() {
            return;
        }
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -s {signal}: {e}"));
        assert!(
            status.success(),
            "kill -s {signal} {} ({}) failed: {status}",
            self.pid(),
            self.name
        );
    }

    /// Waits for the process to exit, panicking with its log tail if it
    /// still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            if Instant::now() > deadline {
                let report = self.report(Some(200));
                panic!("{} did not exit within {timeout:?}\n{report}", self.name);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's state and output, for failure messages: all of its
    /// stderr, or only the last `tail_lines` lines.
    pub fn report(&mut self, tail_lines: Option<usize>) -> String {
        let state = match self.child.try_wait() {
            Ok(None) => "running".to_string(),
            Ok(Some(status)) => format!("exited: {status}"),
            Err(e) => format!("state unknown: {e}"),
        };
        let (what, log) = match tail_lines {
            Some(lines) => (
                format!("last {lines} lines of stderr"),
                self.log_tail(lines),
            ),
            None => ("stderr".to_string(), self.log()),
        };
        let mut report = format!(
            "---- {} ({state}) {what} ({}) ----\n{log}",
            self.name,
            self.log_path.display()
        );
        let rest = self.stdout_rest();
        if !rest.is_empty() {
            report.push_str(&format!(
                "---- {} stdout after the first line ----\n{rest}",
                self.name
            ));
        }
        report.push_str(&format!("---- end of {} output ----", self.name));
        report
    }

    /// Stops a process that failed to start and panics with its log.
    fn fail_start(&mut self, problem: &str) -> ! {
        self.kill();
        let report = self.report(None);
        panic!("{} did not start: {problem}\n{report}", self.name);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Opens `path` for appending, so a restarted process adds to its log.
fn open_log(path: &Path) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open the log {}: {e}", path.display()))
}

fn spawn(name: &str, command: &mut Command) -> Child {
    command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"))
}

/// The last `lines` lines of `text`, each ending in a newline.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("{line}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb", 5), "a\nb\n");
        assert_eq!(tail("", 3), "");
    }

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn waits_for_the_announcement_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let (mut process, line) = Process::start_announced(
            "announcer",
            sh("echo to-log >&2; echo 'ready on 1'; echo more; exec sleep 30"),
            &log,
            "ready on ",
            Duration::from_secs(10),
        );
        assert_eq!(line, "ready on 1");
        assert!(process.is_running());
        let deadline = Instant::now() + Duration::from_secs(10);
        while process.stdout_rest() != "more\n" || process.log() != "to-log\n" {
            assert!(Instant::now() < deadline, "{}", process.report(None));
            thread::sleep(Duration::from_millis(10));
        }
        process.terminate();
        let status = process.wait_exit(Duration::from_secs(10));
        assert!(!status.success());
        assert!(!process.is_running());
        // Harmless once it exited.
        process.terminate();
        process.kill();
    }

    #[test]
    #[should_panic(expected = "does not start with")]
    fn rejects_another_first_line() {
        let dir = tempfile::tempdir().unwrap();
        Process::start_announced(
            "chatty",
            sh("echo hello; exec sleep 30"),
            &dir.path().join("log"),
            "ready on ",
            Duration::from_secs(10),
        );
    }

    #[test]
    #[should_panic(expected = "closed stdout without printing anything")]
    fn reports_an_early_exit() {
        let dir = tempfile::tempdir().unwrap();
        Process::start_announced(
            "crasher",
            sh("echo oops >&2; exit 3"),
            &dir.path().join("log"),
            "ready on ",
            Duration::from_secs(10),
        );
    }
}
