//! Harness for the end-to-end tests in `tests/`.
//!
//! The tests drive real REAPI clients against the real `reapi-server` binary,
//! started as a child process exactly as a user would start it. This library
//! holds what every such test needs:
//!
//! - [`server`]: find (building it if needed) and start `reapi-server`, and stop
//!   it when the test ends;
//! - [`bazel`]: run Bazel on a private copy of the checked-in workspace in
//!   `bazel-workspace/`, each test with its own Bazel server;
//! - [`summary`]: parse Bazel's `INFO: N processes: ...` line, which tells how
//!   each action was run (locally, remotely, from the remote cache).
//!
//! The helpers panic with a clear message when something goes wrong: they run
//! only inside tests, where a panic is the way to report a failure.

pub mod bazel;
pub mod server;
pub mod summary;
