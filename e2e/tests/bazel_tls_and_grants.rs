//! Bazel 4.2.3 against `reapi-server` serving TLS, client certificates
//! optional, and `--auth_grants`: with a client certificate a grant names
//! (`--tls_client_certificate`/`--tls_client_key`), or with a bearer token
//! granted on its instance (`--remote_header=authorization=Bearer …`), it
//! builds remotely; with neither it is UNAUTHENTICATED, and with a token for
//! another instance PERMISSION_DENIED, before any action runs.
//!
//! The workspace is one genrule: what is proved is the front door, not
//! the build. Skipped when Bazel is not installed, except on CI.

use std::path::Path;

use reapi_e2e::bazel::{bazel_or_skip, tls_startup_options, Bazel};
use reapi_e2e::checks::{args, assert_no_remote_warnings, remote_flags_for_url};
use reapi_test_support::launch::server::Server;
use reapi_test_support::pki::Pki;

const GRANTS: &str = r#"
[[grant]]
name = "ci"
token = "ci-token"
instances = ["ci"]
permissions = ["read", "write", "execute"]

[[grant]]
name = "other-team"
token = "other-token"
instances = ["other"]
permissions = ["read", "write", "execute"]

[[grant]]
name = "developers"
client_certificate = "client.test"
instances = ["ci"]
permissions = ["read", "write", "execute"]
"#;

fn write_workspace(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("WORKSPACE"), "").unwrap();
    std::fs::write(
        dir.join("BUILD"),
        "genrule(name = \"hello\", outs = [\"hello.txt\"], cmd = \"echo granted > $@\")\n",
    )
    .unwrap();
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

#[test]
fn bazel_over_tls_gets_in_with_a_granted_certificate_or_token_only() {
    let Some(bazel_path) =
        bazel_or_skip("bazel_over_tls_gets_in_with_a_granted_certificate_or_token_only")
    else {
        return;
    };
    let pki = Pki::new();
    let grants = pki.dir().join("grants.toml");
    std::fs::write(&grants, GRANTS).unwrap();
    let source = pki.dir().join("workspace");
    write_workspace(&source);
    let server = Server::start_with_args(&[
        "--tls_certificate",
        &path(&pki.cert("server")),
        "--tls_key",
        &path(&pki.key("server")),
        "--tls_client_ca",
        &path(&pki.cert("ca")),
        "--tls_client_auth",
        "optional",
        "--auth_grants",
        &path(&grants),
    ]);
    let bazel = Bazel::with_workspace(bazel_path, &source)
        .with_startup_options(&tls_startup_options(pki.dir()));
    let url = format!("grpcs://localhost:{}", server.addr().port());
    let mut flags = remote_flags_for_url("--remote_executor", &url, 60);
    flags.extend([
        format!("--tls_certificate={}", path(&pki.cert("ca"))),
        "--remote_instance_name=ci".into(),
    ]);
    let with = |extra: &[String]| [flags.clone(), extra.to_vec()].concat();
    let token = |token: &str| vec![format!("--remote_header=authorization=Bearer {token}")];

    for (who, extra, code) in [
        ("no certificate and no token", vec![], "UNAUTHENTICATED"),
        (
            "another instance's token",
            token("other-token"),
            "PERMISSION_DENIED",
        ),
    ] {
        let refused = bazel.run(&args("build", &with(&extra), &["//:hello"]));
        assert!(
            !refused.status.success(),
            "a build with {who} got in\n{}",
            refused.dump()
        );
        assert!(
            refused.stderr.contains(code),
            "a build with {who} was not refused with {code}\n{}",
            refused.dump()
        );
    }

    let built = bazel.run_ok(&args("build", &with(&token("ci-token")), &["//:hello"]));
    assert_no_remote_warnings(&built);
    assert_eq!(
        built.summary().count("remote"),
        1,
        "the genrule did not run remotely\n{}",
        built.dump()
    );
    assert_eq!(
        std::fs::read_to_string(bazel.bin_dir().join("hello.txt")).unwrap(),
        "granted\n"
    );

    // A granted certificate, no token: the rebuild is served by the
    // instance's cache, which the certificate may read.
    bazel.run_ok(&["clean"]);
    let certificate = vec![
        format!("--tls_client_certificate={}", path(&pki.cert("client"))),
        format!("--tls_client_key={}", path(&pki.key("client"))),
    ];
    let rebuilt = bazel.run_ok(&args("build", &with(&certificate), &["//:hello"]));
    assert_no_remote_warnings(&rebuilt);
    assert_eq!(
        rebuilt.summary().count("remote cache hit"),
        1,
        "the rebuild was not a cache hit\n{}",
        rebuilt.dump()
    );

    // The refusals were logged with the grant's name, never a token.
    let log = server.log();
    assert!(log.contains("refused: not granted"), "{log}");
    assert!(
        !log.contains("other-token") && !log.contains("ci-token"),
        "{log}"
    );
}
