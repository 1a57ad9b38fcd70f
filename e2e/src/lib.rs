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
//!   each action was run (locally, remotely, from the remote cache), and the
//!   result line of a test;
//! - [`exec_log`]: read Bazel's execution log, which tells how each spawn ran;
//! - [`outputs`]: what the workspace's targets must produce, checked on the
//!   files a build left in `bazel-bin`;
//! - [`seaweedfs`]: a real S3-compatible server (SeaweedFS) for the server to
//!   write through to.
//!
//! The helpers panic with a clear message when something goes wrong: they run
//! only inside tests, where a panic is the way to report a failure.

pub mod bazel;
pub mod checks;
pub mod exec_log;
pub mod outputs;
pub mod seaweedfs;
pub mod server;
pub mod summary;
