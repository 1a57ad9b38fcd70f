//! BuildStream 2 builds against the server: every build command runs
//! remotely, with the element's staged sysroot as its `/`
//! (`--default_rootfs input-root`; BuildStream sends no property of its
//! own), Directory-only outputs (`output_directory_format =
//! DIRECTORY_ONLY`), and the artifact checked out afterwards holds what
//! the remote command wrote. Over TLS with client certificates too, where
//! clients without one, or with one from another CA, are refused.

use reapi_e2e::buildstream::{Client, RemoteAuth, ELEMENT, HELLO, HELLO_PATH, PID_PATH};
use reapi_test_support::launch::server::Server;
use reapi_test_support::pki::Pki;

const SERVER_ARGS: [&str; 4] = ["--isolation", "linux", "--default_rootfs", "input-root"];

#[test]
fn buildstream_builds_remotely_with_the_sysroot_as_root() {
    let server = Server::start_with_args(&SERVER_ARGS);
    let client = Client::new(&format!("http://{}", server.addr()), None);
    client.build_and_check_out();
    let out = client.checkout();
    assert_eq!(
        std::fs::read_to_string(out.join(HELLO_PATH)).unwrap(),
        HELLO
    );
    // The command ran in a pid namespace of its own: its shell is one of
    // the first few processes there (the host's pids are far higher).
    let pid: u32 = std::fs::read_to_string(out.join(PID_PATH))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid <= 10, "pid {pid} in the action's namespace");
}

#[test]
fn buildstream_builds_over_mutual_tls_and_strangers_are_refused() {
    let pki = Pki::new();
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_string();
    let mut args: Vec<String> = SERVER_ARGS.iter().map(|a| a.to_string()).collect();
    args.extend([
        "--tls_certificate".into(),
        path(pki.cert("server")),
        "--tls_key".into(),
        path(pki.key("server")),
        "--tls_client_ca".into(),
        path(pki.cert("ca")),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with_args(&args);
    let url = format!("https://{}", server.addr());
    let ca = pki.cert("ca");
    let auth = |name: Option<&str>| RemoteAuth {
        server_cert: &ca,
        client: name.map(|name| (pki.cert(name), pki.key(name))),
    };

    for (who, name) in [
        ("no certificate", None),
        ("another CA's certificate", Some("stranger")),
    ] {
        let client = Client::new(&url, Some(auth(name)));
        let (output, log) = client.run(&["build", ELEMENT]);
        assert!(
            !output.status.success(),
            "a client with {who} got in:\n{log}"
        );
    }
    // Refused at the handshake: no request of theirs was read.
    assert!(
        server.log().contains("TLS handshake refused"),
        "{}",
        server.log()
    );

    let client = Client::new(&url, Some(auth(Some("client"))));
    client.build_and_check_out();
    let hello = std::fs::read_to_string(client.checkout().join(HELLO_PATH)).unwrap();
    assert_eq!(hello, HELLO);
}
