//! Harness for the end-to-end tests in `tests/`.
//!
//! The tests drive real REAPI clients against the real `reapi-server` binary,
//! or a cluster of `reapi-scheduler`s and `reapi-worker`s, started as child
//! processes exactly as a user would start them. The processes are started
//! by `reapi-test-support`'s launchers ([`reapi_test_support::launch`]:
//! `server`, `cluster`, `haproxy`, `seaweedfs`), which the tests import
//! directly. This library holds the Bazel side:
//!
//! - [`bazel`]: run Bazel on a private copy of a checked-in workspace
//!   (`bazel-workspace/`, or [`cluster_workspace`]'s hundred compiles), each
//!   test with its own Bazel server;
//! - [`checks`]: Bazel command lines and checks of what Bazel reported;
//! - [`chromium`]: headless Chromium, for the schedulers' status page;
//! - [`buildstream`]: BuildStream 2 as a second real client: a tiny project,
//!   its user configuration and `bst`;
//! - [`summary`]: parse Bazel's `INFO: N processes: ...` line, which tells how
//!   each action was run (locally, remotely, from the remote cache), and the
//!   result line of a test;
//! - [`exec_log`]: read Bazel's execution log, which tells how each spawn ran;
//! - [`outputs`]: what the workspace's targets must produce, checked on the
//!   files a build left in `bazel-bin`;
//! - [`cluster_log`]: what the cluster's processes log about leases, drains
//!   and lost workers, read back for the tests' checks;
//! - [`cluster_cas`]: the blobs of the cluster CAS on each worker's disk.
//!
//! The helpers panic with a clear message when something goes wrong: they run
//! only inside tests, where a panic is the way to report a failure.

pub mod bazel;
pub mod buildstream;
pub mod checks;
pub mod chromium;
pub mod cluster_cas;
pub mod cluster_log;
pub mod cluster_workspace;
pub mod exec_log;
pub mod metrics;
pub mod outputs;
pub mod summary;
