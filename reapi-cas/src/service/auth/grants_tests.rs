use super::*;

const FILE: &str = r#"
[[grant]]
name = "ci"
token = "ci-token"
instances = ["", "release"]
permissions = ["read", "write", "execute"]

[[grant]]
name = "readers"
token_sha256 = "C3C2E9F3E4A1B6E8F0D1A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F7"
instances = ["*"]
permissions = ["read"]

[[grant]]
name = "workers"
client_certificate = "worker.test"
instances = ["*"]
permissions = ["cluster"]
"#;

fn token(token: &str) -> Credentials<'_> {
    Credentials {
        bearer_token: Some(token),
        ..Default::default()
    }
}

#[test]
fn a_token_gets_its_permissions_on_its_instances_only() {
    let grants = Grants::parse(FILE).unwrap();
    let ci = grants.identify(&token("ci-token")).unwrap();
    assert!(ci.allows(Permission::Write, Some("")));
    assert!(ci.allows(Permission::Execute, Some("release")));
    assert!(!ci.allows(Permission::Read, Some("other")));
    assert!(!ci.allows(Permission::Cluster, None));
    // Not about one instance: one granted instance is enough.
    assert!(ci.allows(Permission::Execute, None));
    assert!(!ci.is_anonymous());
    assert_eq!(ci.names(), "ci");
}

#[test]
fn tokens_are_matched_by_their_sha256() {
    let token_text = "reader-token";
    let digest = hex::encode(sha256(token_text));
    let file = format!(
        "[[grant]]\ntoken_sha256 = \"{digest}\"\ninstances = [\"*\"]\npermissions = [\"read\"]\n"
    );
    let grants = Grants::parse(&file).unwrap();
    let reader = grants.identify(&token(token_text)).unwrap();
    assert!(reader.allows(Permission::Read, Some("any/instance")));
    assert!(!reader.allows(Permission::Write, Some("any/instance")));
    assert_eq!(reader.names(), "#1");
}

#[test]
fn unknown_tokens_and_missing_credentials_are_unauthenticated() {
    let grants = Grants::parse(FILE).unwrap();
    assert_eq!(
        grants.identify(&token("guess")).unwrap_err(),
        Unauthenticated::UnknownToken
    );
    assert_eq!(
        grants.identify(&Credentials::default()).unwrap_err(),
        Unauthenticated::NoCredentials
    );
}

#[test]
fn certificates_are_matched_by_subject_alt_name() {
    let grants = Grants::parse(FILE).unwrap();
    let worker = grants
        .identify(&Credentials {
            bearer_token: None,
            certificate_names: vec!["other.test".into(), "worker.test".into()],
        })
        .unwrap();
    assert!(worker.allows(Permission::Cluster, None));
    assert!(!worker.allows(Permission::Read, Some("")));
    // A verified certificate nobody granted anything: known, but allowed
    // nothing, so refusals say PERMISSION_DENIED rather than "log in".
    let stranger = grants
        .identify(&Credentials {
            bearer_token: None,
            certificate_names: vec!["stranger.test".into()],
        })
        .unwrap();
    assert!(!stranger.is_anonymous());
    assert!(!stranger.allows(Permission::Read, Some("")));
}

#[test]
fn anyone_grants_apply_to_every_request() {
    let file = format!(
        "{FILE}\n[[grant]]\nname = \"public\"\nanyone = true\ninstances = [\"\"]\npermissions = [\"read\"]\n"
    );
    let grants = Grants::parse(&file).unwrap();
    let nobody = grants.identify(&Credentials::default()).unwrap();
    assert!(nobody.is_anonymous());
    assert!(nobody.allows(Permission::Read, Some("")));
    assert!(!nobody.allows(Permission::Write, Some("")));
    assert!(!nobody.allows(Permission::Read, Some("release")));
    let ci = grants.identify(&token("ci-token")).unwrap();
    assert_eq!(ci.names(), "ci,public");
}

#[test]
fn mistakes_in_the_file_name_the_grant() {
    for (body, expected) in [
        (
            "name = \"x\"\ntoken = \"t\"\ninstances = [\"\"]\npermissions = [\"admin\"]",
            "grant \"x\": unknown permission \"admin\"",
        ),
        (
            "token = \"t\"\ninstances = [\"\"]\npermissions = []",
            "grant #1: no permissions",
        ),
        (
            "token = \"t\"\npermissions = [\"read\"]",
            "grant #1: no instances",
        ),
        (
            "token = \"t\"\nanyone = true\ninstances = [\"\"]\npermissions = [\"read\"]",
            "grant #1: needs exactly one of",
        ),
        (
            "instances = [\"\"]\npermissions = [\"read\"]",
            "grant #1: needs exactly one of",
        ),
        (
            "token_sha256 = \"abc\"\ninstances = [\"\"]\npermissions = [\"read\"]",
            "grant #1: token_sha256 is not 64 hex digits",
        ),
        (
            "token = \"\"\ninstances = [\"\"]\npermissions = [\"read\"]",
            "grant #1: empty token",
        ),
        (
            "tokn = \"t\"\ninstances = [\"\"]\npermissions = [\"read\"]",
            "unknown field",
        ),
    ] {
        let err = Grants::parse(&format!("[[grant]]\n{body}\n")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains(expected),
            "{body:?}: {}",
            err.message()
        );
    }
}

#[test]
fn tokens_never_appear_in_debug_output_or_errors() {
    let grants = Grants::parse(FILE).unwrap();
    assert!(!format!("{grants:?}").contains("ci-token"));
    let err = Grants::parse(
        "[[grant]]\ntoken = \"secret-token\"\ninstances = [\"\"]\npermissions = [\"x\"]\n",
    )
    .unwrap_err();
    assert!(!err.message().contains("secret-token"), "{}", err.message());
}
