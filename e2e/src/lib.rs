//! Harness for the end-to-end tests in `tests/`.
//!
//! The tests drive real REAPI clients against the real `reapi-server` binary,
//! started as a child process exactly as a user would start it. This library
//! holds what every such test needs:
//!
//! - [`server`]: find (building it if needed) and start `reapi-server`, and stop
//!   it when the test ends;
//! - [`cluster`]: start `reapi-scheduler`s and `reapi-worker`s the same way,
//!   kill, stop or restart them one by one;
//! - [`cluster_log`]: what the cluster's processes log about leases, drains
//!   and lost workers, read back for the tests' checks;
//! - [`haproxy`]: a TCP load balancer in front of several schedulers;
//! - [`binaries`], [`process`], [`announce`], [`ports`]: what those share:
//!   building and finding the binaries, child processes with their logs, the
//!   lines the binaries print once they serve, free loopback ports;
//! - [`bazel`]: run Bazel on a private copy of a checked-in workspace
//!   (`bazel-workspace/`, or [`cluster_workspace`]'s hundred compiles), each
//!   test with its own Bazel server;
//! - [`checks`]: Bazel command lines and checks of what Bazel reported;
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

pub mod announce;
pub mod bazel;
pub mod binaries;
pub mod checks;
pub mod cluster;
pub mod cluster_log;
pub mod cluster_workspace;
pub mod exec_log;
pub mod haproxy;
pub mod outputs;
pub mod ports;
pub mod process;
pub mod seaweedfs;
pub mod server;
pub mod summary;
