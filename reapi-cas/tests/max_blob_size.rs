//! `max_cas_blob_size_bytes`: the store's whole budget is advertised, and a
//! larger blob is refused with INVALID_ARGUMENT before any of it is stored,
//! whichever way it comes (ByteStream, batch, splice; `eviction.rs` checks
//! that nothing else was lost).

use reapi_core::proto::remote_execution as re;
use reapi_test_support::bytestream::{write, write_msgs, write_name};
use reapi_test_support::cas::update_request;
use reapi_test_support::digests::{data, dig};
use reapi_test_support::server::storage::{Server, Setup};
use reapi_test_support::status::{assert_code, rpc_code};
use tonic::Code;

const BUDGET: u64 = 1 << 20;

#[tokio::test]
async fn blobs_over_the_store_budget_are_invalid_arguments_everywhere() {
    let server = Server::start_with(Setup::Disk, BUDGET, None).await;
    let capabilities = server.cache_capabilities().await;
    assert_eq!(capabilities.max_cas_blob_size_bytes, BUDGET as i64);

    let big = data(BUDGET as usize + 1, 4);
    let digest = dig(&big);
    let name = write_name("", &digest);
    let status = assert_code(
        write(&mut server.bs(), write_msgs(&name, &big, 0, 64 << 10, true)).await,
        Code::InvalidArgument,
        "a ByteStream Write over the limit",
    );
    assert!(
        status
            .message()
            .contains("max_cas_blob_size_bytes of 1048576"),
        "{}",
        status.message()
    );

    let response = server
        .cas()
        .batch_update_blobs(update_request("", &[&big]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rpc_code(&response.responses[0].status),
        Code::InvalidArgument
    );

    assert_code(
        server
            .cas()
            .splice_blob(re::SpliceBlobRequest {
                blob_digest: Some(digest),
                chunk_digests: vec![dig(b"part")],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "a splice over the limit",
    );

    // At the limit is fine.
    let fits = data(BUDGET as usize / 2, 5);
    let name = write_name("", &dig(&fits));
    write(
        &mut server.bs(),
        write_msgs(&name, &fits, 0, 64 << 10, true),
    )
    .await
    .unwrap();
}
