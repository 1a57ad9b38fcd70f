//! BLAKE3 as a second digest function, over real gRPC on the production disk
//! store and the memory store: blobs, trees, chunks and action results made
//! with BLAKE3 are stored, found and read under BLAKE3 only. The same hash
//! asked for as SHA-256 is another blob (absent); content that does not
//! hash to its digest under the request's function is refused and nothing
//! is stored; the disk store finds BLAKE3 blobs again after a restart.

use prost::Message;
use reapi_core::proto::remote_execution as re;
use reapi_core::DigestFunction;
use reapi_test_support::action_cache::simple_result;
use reapi_test_support::bytestream::{read, write, write_msgs};
use reapi_test_support::cas::{batch_read_with, try_find_missing_with, upload_with};
use reapi_test_support::clients::Cas;
use reapi_test_support::digests::{blake3, data, dig, dig_blake3, dig_msg_blake3, sha256, PDigest};
use reapi_test_support::server::storage::{Server, Setup, LARGE_BUDGET};
use reapi_test_support::status::{assert_code, rpc_code};
use tonic::Code;

async fn find_missing(cas: &mut Cas, function: i32, digests: &[PDigest]) -> Vec<PDigest> {
    let function = DigestFunction::from_proto(function).unwrap();
    try_find_missing_with(function, cas, "", digests)
        .await
        .expect("FindMissingBlobs")
}

/// Uploads `blobs` in one batch under `function`, each named by `digest`;
/// returns each entry's status code.
async fn batch_update(cas: &mut Cas, function: i32, blobs: &[(&PDigest, &[u8])]) -> Vec<Code> {
    cas.batch_update_blobs(re::BatchUpdateBlobsRequest {
        instance_name: String::new(),
        requests: blobs
            .iter()
            .map(|(digest, data)| re::batch_update_blobs_request::Request {
                digest: Some((*digest).clone()),
                data: data.to_vec(),
                compressor: 0,
            })
            .collect(),
        digest_function: function,
    })
    .await
    .expect("BatchUpdateBlobs")
    .into_inner()
    .responses
    .iter()
    .map(|r| rpc_code(&r.status))
    .collect()
}

async fn upload_blake3(cas: &mut Cas, blobs: &[&[u8]]) -> Vec<PDigest> {
    upload_with(DigestFunction::Blake3, cas, "", blobs).await
}

async fn batch_read(
    cas: &mut Cas,
    function: i32,
    digest: &PDigest,
) -> re::batch_read_blobs_response::Response {
    let function = DigestFunction::from_proto(function).unwrap();
    batch_read_with(function, cas, "", std::slice::from_ref(digest))
        .await
        .expect("BatchReadBlobs")
        .remove(0)
}

fn blake3_name(prefix: &str, digest: &PDigest) -> String {
    format!("{prefix}blake3/{}/{}", digest.hash, digest.size_bytes)
}

#[tokio::test]
async fn capabilities_list_sha256_and_blake3() {
    let server = Server::start(Setup::Memory).await;
    let cache = server.cache_capabilities().await;
    assert_eq!(cache.digest_functions, vec![sha256(), blake3()]);
}

#[tokio::test]
async fn blake3_blobs_are_found_and_read_under_blake3_only() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let blob = b"content hashed with blake3".to_vec();
        let d3 = upload_blake3(&mut cas, &[&blob]).await.remove(0);
        assert_ne!(d3, dig(&blob));

        assert!(find_missing(&mut cas, blake3(), std::slice::from_ref(&d3))
            .await
            .is_empty());
        // The same hash and size under SHA-256 name another blob.
        assert_eq!(
            find_missing(&mut cas, sha256(), std::slice::from_ref(&d3)).await,
            vec![d3.clone()],
            "{setup:?}"
        );
        assert_eq!(
            find_missing(&mut cas, sha256(), &[dig(&blob)]).await,
            vec![dig(&blob)]
        );

        // The empty blob is always present, under each function's digest.
        let empty = [dig_blake3(b""), dig(b"")];
        assert!(find_missing(&mut cas, blake3(), &empty[..1])
            .await
            .is_empty());
        assert!(find_missing(&mut cas, sha256(), &empty[1..])
            .await
            .is_empty());

        let found = batch_read(&mut cas, blake3(), &d3).await;
        assert_eq!(rpc_code(&found.status), Code::Ok);
        assert_eq!(found.data, blob);
        let other = batch_read(&mut cas, sha256(), &d3).await;
        assert_eq!(rpc_code(&other.status), Code::NotFound, "{setup:?}");

        let mut bs = server.bs();
        assert_eq!(
            read(&mut bs, &blake3_name("blobs/", &d3), 0, 0)
                .await
                .unwrap(),
            blob
        );
        let plain = format!("blobs/{}/{}", d3.hash, d3.size_bytes);
        assert_code(
            read(&mut bs, &plain, 0, 0).await,
            Code::NotFound,
            "a SHA-256 read of the hash",
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn content_that_is_not_the_blake3_digest_is_refused_and_not_stored() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let blob = b"uploaded under the wrong function".to_vec();
        // A SHA-256 digest sent as BLAKE3, and a BLAKE3 digest sent as SHA-256.
        let codes = batch_update(
            &mut cas,
            blake3(),
            &[(&dig(&blob), &blob), (&dig_blake3(b"other"), b"not other")],
        )
        .await;
        assert_eq!(codes, vec![Code::InvalidArgument; 2], "{setup:?}");
        let codes = batch_update(&mut cas, sha256(), &[(&dig_blake3(&blob), &blob)]).await;
        assert_eq!(codes, vec![Code::InvalidArgument]);
        for function in [sha256(), blake3()] {
            for digest in [dig(&blob), dig_blake3(&blob)] {
                assert_eq!(
                    find_missing(&mut cas, function, std::slice::from_ref(&digest)).await,
                    vec![digest],
                    "nothing stored"
                );
            }
        }

        // ByteStream: a BLAKE3 name whose data hashes otherwise.
        let mut bs = server.bs();
        let name = blake3_name(
            "uploads/4f1e2d3c-0000-4000-8000-000000000001/blobs/",
            &dig(&blob),
        );
        assert_code(
            write(&mut bs, write_msgs(&name, &blob, 0, 8, true)).await,
            Code::InvalidArgument,
            "BLAKE3 name, other content",
        );
        assert_eq!(
            find_missing(&mut cas, blake3(), &[dig(&blob)]).await,
            vec![dig(&blob)]
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn bytestream_writes_and_compressed_reads_of_blake3_blobs() {
    let server = Server::start(Setup::Disk).await;
    let blob = data(3 << 20, 7);
    let d3 = dig_blake3(&blob);
    let mut bs = server.bs();
    let name = blake3_name("uploads/4f1e2d3c-0000-4000-8000-000000000002/blobs/", &d3);
    let committed = write(&mut bs, write_msgs(&name, &blob, 0, 64 << 10, true))
        .await
        .unwrap();
    assert_eq!(committed, blob.len() as i64);
    assert!(
        find_missing(&mut server.cas(), blake3(), std::slice::from_ref(&d3))
            .await
            .is_empty()
    );
    let back = read(&mut bs, &blake3_name("blobs/", &d3), 1000, 0)
        .await
        .unwrap();
    assert!(back == blob[1000..]);
    let compressed = read(&mut bs, &blake3_name("compressed-blobs/zstd/", &d3), 0, 0)
        .await
        .unwrap();
    assert!(zstd::stream::decode_all(&compressed[..]).unwrap() == blob);

    // A compressed BLAKE3 upload.
    let other = data(1 << 20, 8);
    let d_other = dig_blake3(&other);
    let name = blake3_name(
        "uploads/4f1e2d3c-0000-4000-8000-000000000003/compressed-blobs/zstd/",
        &d_other,
    );
    let packed = zstd::bulk::compress(&other, 3).unwrap();
    write(&mut bs, write_msgs(&name, &packed, 0, 64 << 10, true))
        .await
        .unwrap();
    assert_eq!(
        read(&mut bs, &blake3_name("blobs/", &d_other), 0, 0)
            .await
            .unwrap()
            .len(),
        other.len()
    );
}

#[tokio::test]
async fn get_tree_and_split_follow_the_requests_function() {
    let server = Server::start(Setup::Disk).await;
    let mut cas = server.cas();
    let file = b"a file in a blake3 tree".to_vec();
    let child = re::Directory {
        files: vec![re::FileNode {
            name: "f".into(),
            digest: Some(dig_blake3(&file)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let root = re::Directory {
        directories: vec![re::DirectoryNode {
            name: "sub".into(),
            digest: Some(dig_msg_blake3(&child)),
        }],
        ..Default::default()
    };
    let (child_bytes, root_bytes) = (child.encode_to_vec(), root.encode_to_vec());
    let digests = upload_blake3(&mut cas, &[&file, &child_bytes, &root_bytes]).await;
    let tree = |function| re::GetTreeRequest {
        instance_name: String::new(),
        root_digest: Some(digests[2].clone()),
        page_size: 0,
        page_token: String::new(),
        digest_function: function,
    };
    let mut stream = cas.get_tree(tree(blake3())).await.unwrap().into_inner();
    let mut directories = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        directories.extend(page.directories);
    }
    assert_eq!(
        directories,
        vec![root, child],
        "the child found by its BLAKE3 digest"
    );
    let as_sha256 = match cas.get_tree(tree(sha256())).await {
        Ok(stream) => stream.into_inner().message().await.map(drop),
        Err(status) => Err(status),
    };
    assert_code(as_sha256, Code::NotFound, "GetTree as SHA-256");

    // Chunks of a BLAKE3 blob are named with BLAKE3.
    let big = data(5 << 20, 9);
    let d_big = dig_blake3(&big);
    let name = blake3_name(
        "uploads/4f1e2d3c-0000-4000-8000-000000000004/blobs/",
        &d_big,
    );
    write(&mut server.bs(), write_msgs(&name, &big, 0, 1 << 20, true))
        .await
        .unwrap();
    let chunks = cas
        .split_blob(re::SplitBlobRequest {
            instance_name: String::new(),
            blob_digest: Some(d_big.clone()),
            digest_function: blake3(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .chunk_digests;
    assert!(chunks.len() > 1, "{} chunks", chunks.len());
    let mut joined = Vec::new();
    for chunk in &chunks {
        let read = batch_read(&mut cas, blake3(), chunk).await;
        assert_eq!(rpc_code(&read.status), Code::Ok);
        assert_eq!(&dig_blake3(&read.data), chunk);
        joined.extend(read.data);
    }
    assert!(joined == big);
}

#[tokio::test]
async fn action_results_of_blake3_actions_are_their_own() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let outputs = upload_blake3(&mut cas, &[b"output", b"stdout", b"stderr"]).await;
        let result = simple_result(&outputs[0], &outputs[1], &outputs[2]);
        let action = dig_blake3(b"a blake3 action");
        let mut ac = server.ac();
        let update = |function| re::UpdateActionResultRequest {
            instance_name: String::new(),
            action_digest: Some(action.clone()),
            action_result: Some(result.clone()),
            results_cache_policy: None,
            digest_function: function,
        };
        let get = |function| re::GetActionResultRequest {
            instance_name: String::new(),
            action_digest: Some(action.clone()),
            digest_function: function,
            ..Default::default()
        };
        ac.update_action_result(update(blake3())).await.unwrap();
        let found = ac.get_action_result(get(blake3())).await.unwrap();
        assert_eq!(found.into_inner().output_files, result.output_files);
        assert_code(
            ac.get_action_result(get(sha256())).await,
            Code::NotFound,
            "GetActionResult as SHA-256",
        );

        // Stored as SHA-256, the result names blobs that, as SHA-256
        // digests, are not in the CAS: it is never served.
        ac.update_action_result(update(sha256())).await.unwrap();
        assert_code(
            ac.get_action_result(get(sha256())).await,
            Code::NotFound,
            "a SHA-256 entry naming BLAKE3 blobs",
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn the_disk_store_finds_blake3_blobs_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let blob = b"kept across a restart".to_vec();
    let server = Server::disk_at(dir.path(), LARGE_BUDGET, None).await;
    let d3 = upload_blake3(&mut server.cas(), &[&blob]).await.remove(0);
    server.stop().await;

    let server = Server::disk_at(dir.path(), LARGE_BUDGET, None).await;
    let mut cas = server.cas();
    assert!(find_missing(&mut cas, blake3(), std::slice::from_ref(&d3))
        .await
        .is_empty());
    assert_eq!(
        find_missing(&mut cas, sha256(), std::slice::from_ref(&d3)).await,
        vec![d3.clone()]
    );
    assert_eq!(batch_read(&mut cas, blake3(), &d3).await.data, blob);
}
