//! SplitBlob / GetChunkMapping and SpliceBlob / RegisterChunkMapping (REAPI
//! 2.12 and 2.13) over real gRPC, on the production disk store: a blob is
//! cut into FastCDC chunks that are all stored and concatenate to it; chunks
//! splice into a blob only when they are all there and make exactly that
//! blob, and a refused splice stores nothing.

use reapi_core::proto::remote_execution as re;
use reapi_test_support::bytestream::{bs_upload, read_blob};
use reapi_test_support::cas::{find_missing, upload};
use reapi_test_support::digests::{data, dig};
use reapi_test_support::operations::missing_subjects;
use reapi_test_support::server::storage::{Server, Setup};
use reapi_test_support::status::assert_code;
use tonic::Code;

const FAST_CDC_2020: i32 = re::chunking_function::Value::FastCdc2020 as i32;

async fn split(server: &Server, digest: &re::Digest) -> Result<Vec<re::Digest>, tonic::Status> {
    let response = server
        .cas()
        .split_blob(re::SplitBlobRequest {
            blob_digest: Some(digest.clone()),
            chunking_function: FAST_CDC_2020,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(response.chunking_function, FAST_CDC_2020);
    Ok(response.chunk_digests)
}

async fn splice(
    server: &Server,
    blob: &re::Digest,
    chunks: &[re::Digest],
) -> Result<re::Digest, tonic::Status> {
    let response = server
        .cas()
        .splice_blob(re::SpliceBlobRequest {
            blob_digest: Some(blob.clone()),
            chunk_digests: chunks.to_vec(),
            chunking_function: FAST_CDC_2020,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(response.blob_digest.expect("the spliced blob's digest"))
}

#[tokio::test]
async fn a_large_blob_splits_into_stored_chunks_that_make_it() {
    let server = Server::start(Setup::Disk).await;
    let blob = data(7 << 20, 11);
    let digest = bs_upload(&mut server.bs(), "", &blob, 1 << 20).await;
    let chunks = split(&server, &digest).await.unwrap();
    assert!(chunks.len() >= 4, "7 MiB in {} chunks", chunks.len());
    assert!(find_missing(&mut server.cas(), "", &chunks)
        .await
        .is_empty());
    let mut joined = Vec::new();
    for chunk in &chunks {
        joined.extend(read_blob(&mut server.bs(), "", chunk).await.unwrap());
    }
    assert!(joined == blob, "the chunks do not concatenate to the blob");

    // The streamed form answers the same.
    let mut stream = server
        .cas()
        .get_chunk_mapping(re::GetChunkMappingRequest {
            blob_digest: Some(digest.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(response) = stream.message().await.unwrap() {
        streamed.extend(response.chunk_digests);
    }
    assert_eq!(streamed, chunks);

    // Under the maximum chunk size, a blob is its own chunk.
    let small = upload(&mut server.cas(), "", &[data(100_000, 2)]).await[0].clone();
    assert_eq!(split(&server, &small).await.unwrap(), vec![small]);
    assert_code(
        split(&server, &dig(b"never stored")).await,
        Code::NotFound,
        "splitting a blob the CAS does not hold",
    );
}

#[tokio::test]
async fn chunks_splice_into_the_blob_they_make_and_nothing_else() {
    let server = Server::start(Setup::Disk).await;
    let blob = data(3 << 20, 5);
    let pieces = [
        &blob[..1_000_000],
        &blob[1_000_000..2_500_000],
        &blob[2_500_000..],
    ];
    let chunks = upload(&mut server.cas(), "", &pieces).await;
    let target = dig(&blob);

    // Wrong order: the right sizes, not the right bytes.
    let reordered = [chunks[1].clone(), chunks[0].clone(), chunks[2].clone()];
    let status = assert_code(
        splice(&server, &target, &reordered).await,
        Code::InvalidArgument,
        "chunks in the wrong order",
    );
    assert!(
        status.message().contains("hashes to"),
        "{}",
        status.message()
    );
    // Too many bytes.
    assert_code(
        splice(&server, &target, &[chunks.clone(), chunks.clone()].concat()).await,
        Code::InvalidArgument,
        "chunks longer than the blob",
    );
    // Too few bytes.
    assert_code(
        splice(&server, &target, &chunks[..2]).await,
        Code::InvalidArgument,
        "chunks shorter than the blob",
    );
    // A chunk the CAS does not hold: listed as missing.
    let absent = dig(b"not uploaded");
    let status = assert_code(
        splice(&server, &target, &[chunks[0].clone(), absent.clone()]).await,
        Code::FailedPrecondition,
        "a missing chunk",
    );
    assert_eq!(
        missing_subjects(&status),
        vec![format!("blobs/{}/{}", absent.hash, absent.size_bytes)]
    );
    assert_eq!(
        find_missing(&mut server.cas(), "", std::slice::from_ref(&target)).await,
        vec![target.clone()],
        "a refused splice stored the blob"
    );

    assert_eq!(splice(&server, &target, &chunks).await.unwrap(), target);
    assert_eq!(
        read_blob(&mut server.bs(), "", &target).await.unwrap(),
        blob
    );
    // Already stored: answered at once.
    assert_eq!(splice(&server, &target, &chunks).await.unwrap(), target);
}

#[tokio::test]
async fn a_chunk_mapping_can_be_registered_over_several_messages() {
    let server = Server::start(Setup::Disk).await;
    let blob = data(2 << 20, 9);
    let pieces: Vec<&[u8]> = blob.chunks(300_000).collect();
    let chunks = upload(&mut server.cas(), "", &pieces).await;
    let target = dig(&blob);
    let requests: Vec<re::RegisterChunkMappingRequest> = chunks
        .chunks(3)
        .enumerate()
        .map(|(i, batch)| re::RegisterChunkMappingRequest {
            blob_digest: (i == 0).then(|| target.clone()),
            chunk_digests: batch.to_vec(),
            ..Default::default()
        })
        .collect();
    assert!(requests.len() > 1);
    let response = server
        .cas()
        .register_chunk_mapping(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.blob_digest, Some(target.clone()));
    assert_eq!(
        read_blob(&mut server.bs(), "", &target).await.unwrap(),
        blob
    );
}

#[tokio::test]
async fn capabilities_advertise_splitting_and_splicing_with_fast_cdc() {
    let server = Server::start(Setup::Memory).await;
    let capabilities = server.cache_capabilities().await;
    assert!(capabilities.split_blob_support && capabilities.splice_blob_support);
    let params = capabilities.fast_cdc_2020_params.unwrap();
    assert_eq!(params.avg_chunk_size_bytes, 512 * 1024);
    assert_eq!(params.seed, 0);
}
