//! zstd over real gRPC on the production disk store: `compressed-blobs/zstd/`
//! ByteStream writes and reads (offsets in uncompressed bytes), compressed
//! batch entries both ways, and every bad input (wrong digest, a
//! decompression bomb, corrupt data, an unsupported compressor, a read
//! limit, a resumed offset) refused with nothing stored.

use reapi_core::proto::bytestream::ReadRequest;
use reapi_core::proto::remote_execution as re;
use reapi_test_support::bytestream::{read, write, write_msgs};
use reapi_test_support::cas::find_missing;
use reapi_test_support::digests::{data, dig, PDigest};
use reapi_test_support::server::storage::{Server, Setup};
use reapi_test_support::status::{assert_code, rpc_code};
use tonic::Code;

const ZSTD: i32 = re::compressor::Value::Zstd as i32;

/// Build output compresses well; pseudo-random data does not.
fn compressible(len: usize) -> Vec<u8> {
    let words = data(4096, 3);
    (0..len)
        .map(|i| words[(i / 3) % words.len()] % 16)
        .collect()
}

fn upload_name(digest: &PDigest, compressor: &str) -> String {
    format!(
        "uploads/8a3c2a0e-7d33-4c40-9b8e-2f0a8f6b1c11/compressed-blobs/{compressor}/{}/{}",
        digest.hash, digest.size_bytes
    )
}

fn read_name(digest: &PDigest) -> String {
    format!(
        "compressed-blobs/zstd/{}/{}",
        digest.hash, digest.size_bytes
    )
}

async fn is_stored(server: &Server, digest: &PDigest) -> bool {
    find_missing(&mut server.cas(), "", std::slice::from_ref(digest))
        .await
        .is_empty()
}

#[tokio::test]
async fn compressed_writes_and_reads_round_trip() {
    let server = Server::start(Setup::Disk).await;
    let blob = compressible(3 << 20);
    let digest = dig(&blob);
    let compressed = zstd::bulk::compress(&blob, 3).unwrap();
    assert!(compressed.len() < blob.len() / 4);

    let name = upload_name(&digest, "zstd");
    let committed = write(
        &mut server.bs(),
        write_msgs(&name, &compressed, 0, 64 << 10, true),
    )
    .await
    .unwrap();
    assert_eq!(committed, compressed.len() as i64);
    assert!(is_stored(&server, &digest).await);
    // Stored as the blob itself: a plain read gives it back.
    let plain = format!("blobs/{}/{}", digest.hash, digest.size_bytes);
    assert!(read(&mut server.bs(), &plain, 0, 0).await.unwrap() == blob);

    // A compressed read from an uncompressed offset.
    let sent = read(&mut server.bs(), &read_name(&digest), 1000, 0)
        .await
        .unwrap();
    assert!(sent.len() < blob.len() / 4, "{} bytes sent", sent.len());
    assert!(zstd::stream::decode_all(&sent[..]).unwrap() == blob[1000..]);

    // Already stored: -1, as the REAPI says for compressed uploads.
    let again = write(
        &mut server.bs(),
        write_msgs(&name, &compressed, 0, 64 << 10, true),
    )
    .await
    .unwrap();
    assert_eq!(again, -1);
}

#[tokio::test]
async fn bad_compressed_uploads_are_refused_and_store_nothing() {
    let server = Server::start(Setup::Disk).await;
    let blob = compressible(1 << 20);
    let other = compressible(1 << 20)
        .iter()
        .map(|b| b ^ 1)
        .collect::<Vec<_>>();
    let compressed_other = zstd::bulk::compress(&other, 3).unwrap();
    let digest = dig(&blob);
    let name = upload_name(&digest, "zstd");

    // Another blob's bytes under this digest (same size).
    let status = assert_code(
        write(
            &mut server.bs(),
            write_msgs(&name, &compressed_other, 0, 64 << 10, true),
        )
        .await,
        Code::InvalidArgument,
        "the wrong content",
    );
    assert!(
        status.message().contains("hashes to"),
        "{}",
        status.message()
    );

    // 1 GiB of zeros declared as 1 MiB.
    let bomb =
        zstd::stream::encode_all(std::io::Read::take(std::io::repeat(0), 1 << 30), 3).unwrap();
    let status = assert_code(
        write(
            &mut server.bs(),
            write_msgs(&name, &bomb, 0, 64 << 10, true),
        )
        .await,
        Code::InvalidArgument,
        "a decompression bomb",
    );
    assert!(
        status.message().contains("more than the 1048576 bytes"),
        "{}",
        status.message()
    );

    assert_code(
        write(
            &mut server.bs(),
            write_msgs(&name, b"not zstd at all", 0, 64 << 10, true),
        )
        .await,
        Code::InvalidArgument,
        "corrupt data",
    );
    let compressed = zstd::bulk::compress(&blob, 3).unwrap();
    assert_code(
        write(
            &mut server.bs(),
            write_msgs(&name, &compressed, 100, 64 << 10, true),
        )
        .await,
        Code::InvalidArgument,
        "a resumed compressed upload",
    );
    assert_code(
        write(
            &mut server.bs(),
            write_msgs(
                &upload_name(&digest, "deflate"),
                &compressed,
                0,
                64 << 10,
                true,
            ),
        )
        .await,
        Code::Unimplemented,
        "deflate",
    );
    assert!(
        !is_stored(&server, &digest).await,
        "a refused upload stored the blob"
    );

    // Reads: a limit is refused.
    let request = ReadRequest {
        resource_name: read_name(&dig(b"")),
        read_offset: 0,
        read_limit: 10,
    };
    let mut bs = server.bs();
    let refused = async {
        let mut stream = bs.read(request).await?.into_inner();
        while stream.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    };
    assert_code(
        refused.await,
        Code::InvalidArgument,
        "a compressed read with a limit",
    );
}

#[tokio::test]
async fn batch_entries_are_compressed_both_ways() {
    let server = Server::start(Setup::Disk).await;
    let blob = compressible(500_000);
    let digest = dig(&blob);
    let good = re::batch_update_blobs_request::Request {
        digest: Some(digest.clone()),
        data: zstd::bulk::compress(&blob, 3).unwrap(),
        compressor: ZSTD,
    };
    let garbage_digest = dig(b"garbage");
    let bad = re::batch_update_blobs_request::Request {
        digest: Some(garbage_digest.clone()),
        data: b"not zstd".to_vec(),
        compressor: ZSTD,
    };
    let responses = server
        .cas()
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![good, bad],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(rpc_code(&responses[0].status), Code::Ok);
    assert_eq!(rpc_code(&responses[1].status), Code::InvalidArgument);
    assert!(!is_stored(&server, &garbage_digest).await);

    let read = server
        .cas()
        .batch_read_blobs(re::BatchReadBlobsRequest {
            digests: vec![digest],
            acceptable_compressors: vec![ZSTD],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .responses
        .remove(0);
    assert_eq!(read.compressor, ZSTD);
    assert!(read.data.len() < blob.len() / 4);
    assert!(zstd::bulk::decompress(&read.data, blob.len()).unwrap() == blob);

    let capabilities = server.cache_capabilities().await;
    assert_eq!(capabilities.supported_compressors, vec![ZSTD]);
    assert_eq!(capabilities.supported_batch_update_compressors, vec![ZSTD]);
}
