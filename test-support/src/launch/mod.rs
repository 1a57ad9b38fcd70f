//! Real processes for tests, started as child processes exactly as a user
//! would start them, and killed when their guard drops:
//!
//! - [`server`]: the workspace's `reapi-server` binary;
//! - [`cluster`]: `reapi-scheduler`s and `reapi-worker`s, killed, stopped or
//!   restarted one by one;
//! - [`haproxy`]: a TCP load balancer in front of several schedulers;
//! - [`seaweedfs`]: a real S3-compatible server (SeaweedFS);
//! - [`fake_gcs`]: a real GCS-protocol server (fake-gcs-server);
//! - [`binaries`], [`announce`], [`ports`]: what those share: building and
//!   finding the workspace's binaries, the lines they print once they serve,
//!   free loopback ports. The child processes themselves, with their logs,
//!   are [`crate::process::Process`]es.
//!
//! Used by the end-to-end tests (`reapi-e2e`) and by the storage tests of
//! `reapi-cas`. The launchers panic with a clear message when something goes
//! wrong; the ones of third-party servers return `None` (the test skips)
//! when the server is not installed, except on CI (`CI=true`).

pub mod announce;
pub mod binaries;
pub mod cluster;
pub mod fake_gcs;
pub mod haproxy;
pub mod ports;
pub mod seaweedfs;
pub mod server;
