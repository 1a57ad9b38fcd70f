//! A cluster whose every link is mutual TLS: the scheduler serves clients
//! and workers with `--tls_client_ca` and `--auth_grants`, the workers
//! serve their CAS shares the same way, and every process connects to the
//! others with `--cluster_ca`/`--cluster_certificate`. An action runs on a
//! worker and its output comes back through the scheduler from the
//! workers' CAS. Would-be workers without a certificate, with another
//! CA's, or with a certificate of the cluster's CA that no grant names, never
//! register.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reapi_test_support::actions::sh;
use reapi_test_support::bytestream::read_blob;
use reapi_test_support::cas::upload;
use reapi_test_support::clients::{bs, cas, exec};
use reapi_test_support::launch::binaries::binary;
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions};
use reapi_test_support::operations::{execute, execute_request, response_of};
use reapi_test_support::pki::Pki;
use reapi_test_support::process::Process;

/// The cluster's members and its clients are named `client.test` in
/// their certificates; the grant gives that name everything.
const GRANTS: &str = r#"
[[grant]]
name = "members"
client_certificate = "client.test"
instances = ["*"]
permissions = ["read", "write", "execute", "cluster"]
"#;

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// `--tls_*`: serve with the test server certificate, clients of the
/// test CA required.
fn serve_args(pki: &Pki) -> Vec<String> {
    vec![
        "--tls_certificate".into(),
        path(&pki.cert("server")),
        "--tls_key".into(),
        path(&pki.key("server")),
        "--tls_client_ca".into(),
        path(&pki.cert("ca")),
    ]
}

/// `--cluster_*`: connect trusting the test CA, presenting `identity`.
fn connect_args(pki: &Pki, identity: Option<&str>) -> Vec<String> {
    let mut args = vec!["--cluster_ca".into(), path(&pki.cert("ca"))];
    if let Some(name) = identity {
        args.extend([
            "--cluster_certificate".into(),
            path(&pki.cert(name)),
            "--cluster_key".into(),
            path(&pki.key(name)),
        ]);
    }
    args
}

/// A worker that tries to join with `identity` (its CAS elsewhere, so it
/// serves nothing of its own).
fn would_be_worker(cluster: &Cluster, pki: &Pki, label: &str, identity: Option<&str>) -> Process {
    let data = cluster.dir().join(label);
    std::fs::create_dir_all(&data).unwrap();
    let mut command = Command::new(binary("reapi-worker"));
    command
        .args(["--schedulers", &cluster.scheduler(0).addr().to_string()])
        .args(["--cas", &cluster.scheduler(0).addr().to_string()])
        .args(["--executors", "1", "--data-dir", &path(&data)])
        .args(connect_args(pki, identity))
        .env("RUST_LOG", "info");
    Process::start_logged(label, command, &data.with_extension("log"))
}

#[test]
fn a_cluster_over_mutual_tls_runs_actions_and_keeps_strangers_out() {
    let pki = Pki::new();
    pki.client("ungranted", "ca");
    let grants = pki.dir().join("grants.toml");
    std::fs::write(&grants, GRANTS).unwrap();
    let member = [serve_args(&pki), connect_args(&pki, Some("client"))].concat();
    let mut scheduler_args = member.clone();
    scheduler_args.extend(["--auth_grants".into(), path(&grants)]);
    let options = ClusterOptions {
        executors: 1,
        scheduler_args,
        worker_args: member,
        ..Default::default()
    };
    // Workers announce themselves only once linked to the scheduler:
    // starting proves the worker links work over mTLS.
    let cluster = Cluster::start(1, 2, options);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = pki
            .connect(cluster.scheduler(0).addr(), "ca", Some("client"))
            .await
            .expect("a member's certificate gets in");
        let built = sh("echo over mutual TLS > out.txt")
            .output_file("out.txt")
            .build();
        upload(&mut cas(&channel), "", &built.blobs).await;
        let ops = execute(&mut exec(&channel), execute_request(&built.action_digest))
            .await
            .expect("Execute");
        let response = response_of(ops.last().expect("an operation"));
        let result = response.result.clone().expect("a result");
        assert_eq!(result.exit_code, 0, "{response:?}");
        let out = result.output_files[0].digest.clone().unwrap();
        // Stored on the workers' shares, read back through the scheduler.
        let bytes = read_blob(&mut bs(&channel), "", &out).await.unwrap();
        assert_eq!(bytes, b"over mutual TLS\n");
    });

    let mut strangers = [
        would_be_worker(&cluster, &pki, "no-certificate", None),
        would_be_worker(&cluster, &pki, "other-ca", Some("stranger")),
        would_be_worker(&cluster, &pki, "ungranted", Some("ungranted")),
    ];
    // They retry; give them a few rounds.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    for stranger in &mut strangers {
        let log = stranger.log();
        // Still trying: refused, not stopped by something else.
        assert!(stranger.is_running(), "{} exited:\n{log}", stranger.name());
        assert!(
            !log.contains("ready, data in") && !log.contains("linked to scheduler"),
            "{} linked:\n{log}",
            stranger.name()
        );
        stranger.kill();
    }
    let log = cluster.scheduler(0).log();
    assert_eq!(
        log.matches("worker joined").count(),
        2,
        "only the two members may join:\n{log}"
    );
    assert!(log.contains("TLS handshake refused"), "{log}");
    assert!(
        log.contains("refused: not granted"),
        "the ungranted certificate was not refused by its grants:\n{log}"
    );
}
