//! BuildStream 2 with the server as its artifact cache as well as its
//! remote execution service: a build pushes its artifact (Remote Asset
//! PushBlob/PushDirectory over the CAS), and a second client with an empty
//! local cache pulls it (FetchBlob/FetchDirectory) instead of building.

use reapi_e2e::buildstream::{add_artifact_cache, Client, ELEMENT, HELLO, HELLO_PATH};
use reapi_test_support::launch::server::Server;

const SERVER_ARGS: [&str; 4] = ["--isolation", "linux", "--default_rootfs", "input-root"];

#[test]
fn an_artifact_pushed_by_one_client_is_pulled_by_another() {
    let server = Server::start_with_args(&SERVER_ARGS);
    let url = format!("http://{}", server.addr());

    let builder = Client::new(&url, None);
    add_artifact_cache(&builder.config, &url);
    builder.build_and_check_out();

    let puller = Client::new(&url, None);
    add_artifact_cache(&puller.config, &url);
    let (output, log) = puller.run(&["build", ELEMENT]);
    assert!(output.status.success(), "bst build failed:\n{log}");
    assert!(
        !log.contains("Waiting for the remote build to complete"),
        "the second client built instead of pulling:\n{log}"
    );
    assert!(
        log.contains("Pulled artifact"),
        "nothing was pulled:\n{log}"
    );
    let out = puller.checkout();
    let (output, log) = puller.run(&[
        "artifact",
        "checkout",
        ELEMENT,
        "--directory",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "checkout failed:\n{log}");
    assert_eq!(
        std::fs::read_to_string(out.join(HELLO_PATH)).unwrap(),
        HELLO
    );
}
