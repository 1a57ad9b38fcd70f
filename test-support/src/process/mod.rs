//! Processes in tests: the child processes a test starts and watches
//! ([`Process`], with its log and its announcement line), and processes seen
//! only from outside, by pid ([`process_alive`], [`read_pid`], ...).

mod child;
mod pids;

pub use child::{tail, Process};
pub use pids::{
    background_recording_pid, group_stopped, process_alive, process_exists,
    processes_with_cwd_under, read_pid, read_pids, SHELL_OUTER_PID,
};
