//! Bazel 4.2.3 against `reapi-server --auth_grants`: with a bearer token
//! granted on its instance (`--remote_header=authorization=Bearer …`) it
//! builds remotely; without a token it is UNAUTHENTICATED, and with a
//! token for another instance PERMISSION_DENIED, before any action runs.
//!
//! The workspace is one genrule: what is proved is the front door, not
//! the build.

use std::path::Path;

use reapi_e2e::bazel::{bazel_or_skip, Bazel};
use reapi_e2e::checks::{args, assert_no_remote_warnings, remote_flags};
use reapi_test_support::launch::server::Server;

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

#[test]
fn bazel_builds_with_its_token_and_is_refused_without_or_with_another_instances() {
    let Some(bazel_path) = bazel_or_skip(
        "bazel_builds_with_its_token_and_is_refused_without_or_with_another_instances",
    ) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let grants = scratch.path().join("grants.toml");
    std::fs::write(&grants, GRANTS).unwrap();
    let source = scratch.path().join("workspace");
    write_workspace(&source);
    let server = Server::start_with_args(&["--auth_grants", grants.to_str().unwrap()]);
    let bazel = Bazel::with_workspace(bazel_path, &source);
    let mut flags = remote_flags("--remote_executor", &server, 60);
    flags.push("--remote_instance_name=ci".into());
    let with_header = |token: Option<&str>| {
        let mut all = flags.clone();
        if let Some(token) = token {
            all.push(format!("--remote_header=authorization=Bearer {token}"));
        }
        all
    };

    for (token, code) in [
        (None, "UNAUTHENTICATED"),
        (Some("other-token"), "PERMISSION_DENIED"),
    ] {
        let refused = bazel.run(&args("build", &with_header(token), &["//:hello"]));
        assert!(
            !refused.status.success(),
            "a build with {token:?} got in\n{}",
            refused.dump()
        );
        assert!(
            refused.stderr.contains(code),
            "a build with {token:?} was not refused with {code}\n{}",
            refused.dump()
        );
    }

    let built = bazel.run_ok(&args(
        "build",
        &with_header(Some("ci-token")),
        &["//:hello"],
    ));
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
    // The refusals were logged with the grant's name, never a token.
    let log = server.log();
    assert!(log.contains("refused: not granted"), "{log}");
    assert!(
        !log.contains("other-token") && !log.contains("ci-token"),
        "{log}"
    );
}
