//! Bazel 4.2.3 with `--experimental_remote_downloader` pointed at
//! `reapi-server --asset_fetch_hosts 127.0.0.1`: an `http_file` is fetched
//! by the server (FetchBlob) from an HTTP origin the test runs, checked
//! against its sha256 and handed to Bazel through the CAS. After the origin
//! is gone, a clean rebuild still gets the file: the server remembers the
//! URI and checksum.
//!
//! Skipped when Bazel is not installed, except on CI.

use std::path::Path;

use reapi_e2e::bazel::{bazel_or_skip, Bazel};
use reapi_e2e::checks::{args, remote_flags};
use reapi_test_support::digests::dig;
use reapi_test_support::http_origin::{Origin, Route};
use reapi_test_support::launch::server::Server;

const CONTENT: &[u8] = b"fetched for Bazel by the remote downloader\n";

fn write_workspace(dir: &Path, url: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let sha256 = dig(CONTENT).hash;
    std::fs::write(
        dir.join("WORKSPACE"),
        format!(
            "load(\"@bazel_tools//tools/build_defs/repo:http.bzl\", \"http_file\")\n\
             http_file(name = \"data\", urls = [\"{url}\"], sha256 = \"{sha256}\", \
             downloaded_file_path = \"data.txt\")\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("BUILD"),
        "genrule(name = \"copy\", srcs = [\"@data//file\"], outs = [\"copy.txt\"], \
         cmd = \"cp $< $@\")\n",
    )
    .unwrap();
}

#[test]
fn http_file_is_fetched_through_the_server_and_remembered() {
    let Some(bazel_path) = bazel_or_skip("http_file_is_fetched_through_the_server_and_remembered")
    else {
        return;
    };
    let mut origin = Origin::start(&[("/pkg/data.txt", Route::Body(CONTENT.to_vec()))]);
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("workspace");
    write_workspace(&source, &origin.url("/pkg/data.txt"));
    let server = Server::start_with_args(&["--asset_fetch_hosts", "127.0.0.1"]);
    let bazel = Bazel::with_workspace(bazel_path, &source);
    let mut flags = remote_flags("--remote_cache", &server, 60);
    flags.extend([
        format!("--experimental_remote_downloader={}", server.grpc_url()),
        // Bazel's own download cache would hide the second fetch.
        "--repository_cache=".to_string(),
    ]);

    bazel.run_ok(&args("build", &flags, &["//:copy"]));
    assert_eq!(origin.hits(), 1, "the server did not fetch the file once");
    assert_eq!(
        std::fs::read(bazel.bin_dir().join("copy.txt")).unwrap(),
        CONTENT
    );
    assert!(server.log().contains("asset fetched"), "{}", server.log());

    origin.stop();
    bazel.run_ok(&["clean", "--expunge"]);
    bazel.run_ok(&args("build", &flags, &["//:copy"]));
    assert_eq!(
        std::fs::read(bazel.bin_dir().join("copy.txt")).unwrap(),
        CONTENT
    );
}
