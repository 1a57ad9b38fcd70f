//! What a cluster's processes are told: [`ClusterOptions`], an optional
//! [`S3Bucket`] every process writes through to, and the command-line
//! arguments both make for schedulers and workers.

use std::net::SocketAddr;

use crate::launch::seaweedfs::{SeaweedFs, ACCESS_KEY, REGION, SECRET_KEY};

/// Executors per worker unless [`ClusterOptions::executors`] says otherwise.
pub const DEFAULT_EXECUTORS: usize = 4;

/// An S3 bucket every process of the cluster writes through to.
#[derive(Clone, Debug)]
pub struct S3Bucket {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Bucket {
    /// The bucket `bucket` (created by the test) of a SeaweedFS server.
    pub fn seaweedfs(s3: &SeaweedFs, bucket: &str) -> S3Bucket {
        S3Bucket {
            endpoint: s3.endpoint(),
            bucket: bucket.to_string(),
            region: REGION.to_string(),
            access_key_id: ACCESS_KEY.to_string(),
            secret_access_key: SECRET_KEY.to_string(),
        }
    }

    pub(super) fn args(&self) -> Vec<String> {
        vec![
            "--s3-bucket".to_string(),
            self.bucket.clone(),
            "--s3-endpoint".to_string(),
            self.endpoint.clone(),
            "--s3-path-style".to_string(),
            "--s3-region".to_string(),
            self.region.clone(),
        ]
    }

    pub(super) fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".to_string(), self.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                self.secret_access_key.clone(),
            ),
        ]
    }
}

/// How to run the cluster's processes.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `--executors` of each worker.
    pub executors: usize,
    /// A bucket every process gets (`--s3-bucket` and friends).
    pub s3: Option<S3Bucket>,
    /// Workers' `--cas ADDR`; unset, they use the schedulers'.
    pub worker_cas: Option<String>,
    /// Schedulers' `--heartbeat_timeout`, e.g. `3s`.
    pub heartbeat_timeout: Option<String>,
    /// Workers' `--drain_grace`, e.g. `60s`.
    pub drain_grace: Option<String>,
    /// More arguments for every scheduler.
    pub scheduler_args: Vec<String>,
    /// More arguments for every worker.
    pub worker_args: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            executors: DEFAULT_EXECUTORS,
            s3: None,
            worker_cas: None,
            heartbeat_timeout: None,
            drain_grace: None,
            scheduler_args: Vec::new(),
            worker_args: Vec::new(),
        }
    }
}

/// A scheduler's own arguments: where to listen and, with several, the
/// whole list (its own address included).
pub(super) fn scheduler_args(
    listen: SocketAddr,
    all: &[SocketAddr],
    options: &ClusterOptions,
) -> Vec<String> {
    let mut args = vec!["--listen".to_string(), listen.to_string()];
    if all.len() > 1 {
        args.push("--schedulers".to_string());
        args.push(join(all));
    }
    if let Some(timeout) = &options.heartbeat_timeout {
        args.push("--heartbeat_timeout".to_string());
        args.push(timeout.clone());
    }
    args.extend(options.scheduler_args.iter().cloned());
    args
}

/// A worker's own arguments.
pub(super) fn worker_args(schedulers: &[SocketAddr], options: &ClusterOptions) -> Vec<String> {
    let mut args = vec![
        "--schedulers".to_string(),
        join(schedulers),
        "--executors".to_string(),
        options.executors.to_string(),
    ];
    if let Some(cas) = &options.worker_cas {
        args.push("--cas".to_string());
        args.push(cas.clone());
    }
    if let Some(grace) = &options.drain_grace {
        args.push("--drain_grace".to_string());
        args.push(grace.clone());
    }
    args.extend(options.worker_args.iter().cloned());
    args
}

/// `ADDR,ADDR,...`
fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ports: &[u16]) -> Vec<SocketAddr> {
        ports
            .iter()
            .map(|&port| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect()
    }

    #[test]
    fn schedulers_get_the_whole_list_only_when_there_are_several() {
        let options = ClusterOptions {
            heartbeat_timeout: Some("3s".to_string()),
            ..ClusterOptions::default()
        };
        let all = addrs(&[7001, 7002]);
        assert_eq!(
            scheduler_args(all[1], &all, &options),
            [
                "--listen",
                "127.0.0.1:7002",
                "--schedulers",
                "127.0.0.1:7001,127.0.0.1:7002",
                "--heartbeat_timeout",
                "3s"
            ]
        );
        let one = addrs(&[0]);
        assert_eq!(
            scheduler_args(one[0], &one, &ClusterOptions::default()),
            ["--listen", "127.0.0.1:0"]
        );
    }

    #[test]
    fn workers_get_every_scheduler_and_their_options() {
        let options = ClusterOptions {
            executors: 2,
            worker_cas: Some("127.0.0.1:9000".to_string()),
            drain_grace: Some("60s".to_string()),
            worker_args: vec!["--extra".to_string()],
            ..ClusterOptions::default()
        };
        assert_eq!(
            worker_args(&addrs(&[7001, 7002]), &options),
            [
                "--schedulers",
                "127.0.0.1:7001,127.0.0.1:7002",
                "--executors",
                "2",
                "--cas",
                "127.0.0.1:9000",
                "--drain_grace",
                "60s",
                "--extra"
            ]
        );
        assert_eq!(
            worker_args(&addrs(&[7001]), &ClusterOptions::default()),
            ["--schedulers", "127.0.0.1:7001", "--executors", "4"]
        );
    }
}
