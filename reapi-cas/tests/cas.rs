//! ContentAddressableStorage over gRPC: FindMissingBlobs, BatchUpdateBlobs,
//! BatchReadBlobs and GetTree, on the disk and the memory setup.

use prost::Message;
use reapi_core::proto::remote_execution as re;
use reapi_test_support::bytestream::read_blob;
use reapi_test_support::cas::{
    batch_read, find_missing, get_tree, is_present, tree_request, try_find_missing, update_request,
    upload, upload_msg, upload_one, MAX_BATCH,
};
use reapi_test_support::clients::Cas;
use reapi_test_support::digests::{
    absent_digest, data, dig, dig_msg, empty_digest, md5, sha256, PDigest,
};
use reapi_test_support::server::storage::{Server, Setup};
use reapi_test_support::status::{assert_code, rpc_code};
use tonic::Code;

const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// Digests that must be refused as malformed.
fn malformed_digests() -> Vec<(&'static str, PDigest)> {
    let d = |hash: String, size_bytes| PDigest { hash, size_bytes };
    vec![
        ("short hash", d(HELLO[..63].into(), 5)),
        ("long hash", d(format!("{HELLO}0"), 5)),
        ("uppercase hash", d(HELLO.to_uppercase(), 5)),
        ("non-hex hash", d(format!("{}g", &HELLO[..63]), 5)),
        ("empty hash", d(String::new(), 0)),
        ("negative size", d(HELLO.into(), -1)),
    ]
}

// ------------------------------------------------------ FindMissingBlobs ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_missing_keeps_order_and_never_misses_the_empty_blob() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let present = upload(&mut cas, "", &[b"one".as_slice(), b"two", b"three"]).await;
        let absent: Vec<PDigest> = (0..4).map(absent_digest).collect();
        let query = vec![
            absent[0].clone(),
            present[0].clone(),
            empty_digest(),
            absent[1].clone(),
            present[1].clone(),
            absent[2].clone(),
            present[2].clone(),
            absent[3].clone(),
        ];
        let missing = find_missing(&mut cas, "", &query).await;
        assert_eq!(missing, absent, "{setup:?}");
        // An empty query and the empty blob alone.
        assert!(find_missing(&mut cas, "", &[]).await.is_empty());
        assert!(find_missing(&mut cas, "", &[empty_digest()])
            .await
            .is_empty());
        assert!(find_missing(&mut cas, "other", &[empty_digest()])
            .await
            .is_empty());
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_missing_of_many_digests() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let blobs: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("blob {i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        let present = upload(&mut cas, "", &refs).await;
        let mut query = Vec::new();
        let mut expected = Vec::new();
        for (i, d) in present.iter().enumerate() {
            let absent = absent_digest(i as u64);
            if i % 2 == 0 {
                query.extend([d.clone(), absent.clone()]);
            } else {
                query.extend([absent.clone(), d.clone()]);
            }
            expected.push(absent);
        }
        assert_eq!(
            find_missing(&mut cas, "", &query).await,
            expected,
            "{setup:?}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_missing_rejects_malformed_digests() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        for (what, bad) in malformed_digests() {
            // Alone and among valid digests.
            for query in [
                vec![bad.clone()],
                vec![dig(b"x"), bad.clone(), empty_digest()],
            ] {
                assert_code(
                    try_find_missing(&mut cas, "", &query).await,
                    Code::InvalidArgument,
                    &format!("{setup:?} {what}"),
                );
            }
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_function_must_be_sha256_blake3_or_unset() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let root = upload_msg(&mut cas, "", &re::Directory::default()).await;
        let find = |digest_function| re::FindMissingBlobsRequest {
            instance_name: String::new(),
            blob_digests: vec![root.clone()],
            digest_function,
        };
        // UNKNOWN (0) is what clients before 2.5 send; it means SHA256.
        for ok in [0, sha256()] {
            let missing = cas.find_missing_blobs(find(ok)).await.unwrap().into_inner();
            assert!(missing.missing_blob_digests.is_empty());
        }
        let unsupported = [
            md5(),
            re::digest_function::Value::Sha1 as i32,
            re::digest_function::Value::Sha256tree as i32,
            999,
        ];
        for bad in unsupported {
            let what = format!("{setup:?} digest_function {bad}");
            assert_code(
                cas.find_missing_blobs(find(bad)).await,
                Code::InvalidArgument,
                &what,
            );
            let mut update = update_request("", &[b"blob"]);
            update.digest_function = bad;
            assert_code(
                cas.batch_update_blobs(update).await,
                Code::InvalidArgument,
                &what,
            );
            let read = re::BatchReadBlobsRequest {
                digests: vec![root.clone()],
                digest_function: bad,
                ..Default::default()
            };
            assert_code(
                cas.batch_read_blobs(read).await,
                Code::InvalidArgument,
                &what,
            );
            let mut tree = tree_request("", &root, 0, "");
            tree.digest_function = bad;
            assert_code(get_tree(&mut cas, tree).await, Code::InvalidArgument, &what);
        }
        // Nothing was stored by the refused update.
        assert!(!is_present(&mut cas, "", &dig(b"blob")).await);
        server.stop().await;
    }
}

/// A digest is hash and size: the right hash with another size is another
/// blob, absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_hash_with_another_size_is_missing() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut cas, mut bs) = (server.cas(), server.bs());
        let d = upload_one(&mut cas, "", b"hello").await;
        let others: Vec<PDigest> = [0, 4, 6, 1 << 20]
            .into_iter()
            .map(|size_bytes| PDigest {
                hash: d.hash.clone(),
                size_bytes,
            })
            .collect();
        assert_eq!(
            find_missing(&mut cas, "", &others).await,
            others,
            "{setup:?}"
        );
        let responses = batch_read(&mut cas, "", &others).await.unwrap();
        for (response, other) in responses.iter().zip(&others) {
            assert_eq!(
                rpc_code(&response.status),
                Code::NotFound,
                "{setup:?} {other:?}"
            );
        }
        for other in &others {
            assert_code(
                read_blob(&mut bs, "", other).await,
                Code::NotFound,
                &format!("{setup:?} read {other:?}"),
            );
        }
        server.stop().await;
    }
}

// ------------------------------------------------------ BatchUpdateBlobs ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_update_stores_good_blobs_and_refuses_bad_ones_one_by_one() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let good: Vec<Vec<u8>> = vec![b"alpha".to_vec(), data(100_000, 1), Vec::new(), data(7, 2)];
        let wrong_hash = b"content whose hash is claimed wrongly".to_vec();
        let wrong_size = b"content whose size is claimed wrongly".to_vec();
        let mut request = update_request(
            "",
            &[
                &good[0],
                &wrong_hash,
                &good[1],
                &wrong_size,
                &good[2],
                &good[3],
            ],
        );
        request.requests[1].digest = Some(dig(b"something else entirely"));
        let mut short = dig(&wrong_size);
        short.size_bytes -= 1;
        request.requests[3].digest = Some(short.clone());
        let claimed: Vec<PDigest> = request
            .requests
            .iter()
            .map(|r| r.digest.clone().unwrap())
            .collect();

        let responses = cas
            .batch_update_blobs(request)
            .await
            .unwrap()
            .into_inner()
            .responses;
        assert_eq!(responses.len(), 6, "{setup:?}");
        let codes: Vec<Code> = responses.iter().map(|r| rpc_code(&r.status)).collect();
        assert_eq!(
            codes,
            [
                Code::Ok,
                Code::InvalidArgument,
                Code::Ok,
                Code::InvalidArgument,
                Code::Ok,
                Code::Ok
            ],
            "{setup:?} {responses:?}"
        );
        // Each response names the digest of its request.
        for (response, digest) in responses.iter().zip(&claimed) {
            assert_eq!(response.digest.as_ref(), Some(digest));
        }
        // The good ones are stored, the bad ones are not, under any digest.
        let mut query: Vec<PDigest> = good.iter().map(|g| dig(g)).collect();
        query.extend([
            claimed[1].clone(),
            claimed[3].clone(),
            dig(&wrong_hash),
            dig(&wrong_size),
        ]);
        assert_eq!(
            find_missing(&mut cas, "", &query).await,
            query[4..].to_vec(),
            "{setup:?}"
        );
        let read = batch_read(&mut cas, "", &query[..4]).await.unwrap();
        for (response, blob) in read.iter().zip(&good) {
            assert_eq!(rpc_code(&response.status), Code::Ok);
            assert_eq!(&response.data, blob);
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_update_refuses_malformed_digests_and_compressors_per_blob() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let mut request = update_request("", &[b"first", b"second", b"third"]);
        request.requests[0].digest = Some(PDigest {
            hash: dig(b"first").hash.to_uppercase(),
            size_bytes: 5,
        });
        request.requests[1].digest = None;
        let responses = cas
            .batch_update_blobs(request)
            .await
            .unwrap()
            .into_inner()
            .responses;
        let codes: Vec<Code> = responses.iter().map(|r| rpc_code(&r.status)).collect();
        assert_eq!(
            codes,
            [Code::InvalidArgument, Code::InvalidArgument, Code::Ok],
            "{setup:?}"
        );

        // No compressor is advertised, so a compressed blob is refused.
        let mut request = update_request("", &[b"zstd?"]);
        request.requests[0].compressor = re::compressor::Value::Zstd as i32;
        let responses = cas
            .batch_update_blobs(request)
            .await
            .unwrap()
            .into_inner()
            .responses;
        assert_eq!(
            rpc_code(&responses[0].status),
            Code::InvalidArgument,
            "{setup:?}"
        );
        assert!(!is_present(&mut cas, "", &dig(b"zstd?")).await);
        assert!(!is_present(&mut cas, "", &dig(b"first")).await);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_update_over_the_limit_is_refused_whole() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        // Over the advertised limit plus the server's headroom for framing.
        let a = data(MAX_BATCH / 2 + 256 * 1024, 10);
        let b = data(MAX_BATCH / 2 + 256 * 1024, 11);
        let small = b"small".to_vec();
        let status = assert_code(
            cas.batch_update_blobs(update_request("", &[&small, &a, &b]))
                .await,
            Code::InvalidArgument,
            &format!("{setup:?} batch of {} bytes", a.len() + b.len()),
        );
        // The limit named is the one enforced.
        let enforced = format!("limit of {} bytes", MAX_BATCH + 256 * 1024);
        assert!(
            status.message().contains(&enforced),
            "{:?} should name the {enforced}",
            status.message()
        );
        let query = [dig(&small), dig(&a), dig(&b)];
        assert_eq!(find_missing(&mut cas, "", &query).await, query.to_vec());
        server.stop().await;
    }
}

/// A request message over the server's decoding limit (16 MiB) is
/// RESOURCE_EXHAUSTED, gRPC's code for a message too large, naming the
/// size and the limit; nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_size_limit_are_resource_exhausted() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let limit = (4 * MAX_BATCH).to_string();
        // 400 000 digests: about 30 MB.
        let many: Vec<PDigest> = (0..400_000u64).map(|i| dig(&i.to_le_bytes())).collect();
        let status = assert_code(
            try_find_missing(&mut cas, "", &many).await,
            Code::ResourceExhausted,
            &format!("{setup:?}: FindMissingBlobs of {} digests", many.len()),
        );
        assert!(
            status.message().contains(&limit) && status.message().contains("bytes"),
            "{:?} should name the limit, {limit} bytes",
            status.message()
        );
        // A 20 MiB batch.
        let big = data(20 << 20, 50);
        let status = assert_code(
            cas.batch_update_blobs(update_request("", &[&big])).await,
            Code::ResourceExhausted,
            &format!("{setup:?}: BatchUpdateBlobs of 20 MiB"),
        );
        assert!(status.message().contains(&limit), "{}", status.message());
        assert!(!is_present(&mut cas, "", &dig(&big)).await);
        // The server still answers on the same connection.
        assert!(find_missing(&mut cas, "", &[dig(b"after")]).await.len() == 1);
        server.stop().await;
    }
}

/// The spec defines max_batch_total_size_bytes as the total size of the
/// blobs. Clients compare blob sizes against it (Pants uses the batch call
/// for a blob when `len < max_batch_total_size_bytes`), so a batch whose
/// blob bytes stay under the advertised limit must be accepted even though
/// its encoded message is a little larger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_update_accepts_blob_bytes_under_the_advertised_limit() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let blob = data(MAX_BATCH - 1, 12);
        let result = cas.batch_update_blobs(update_request("", &[&blob])).await;
        let responses = result
            .unwrap_or_else(|s| {
                panic!(
                    "{setup:?}: a {}-byte blob (under max_batch_total_size_bytes = {MAX_BATCH}) \
                     was refused: {:?} {}",
                    blob.len(),
                    s.code(),
                    s.message()
                )
            })
            .into_inner()
            .responses;
        assert_eq!(rpc_code(&responses[0].status), Code::Ok);
        assert!(is_present(&mut cas, "", &dig(&blob)).await);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_update_just_under_the_limit_in_message_bytes_works() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let blobs: Vec<Vec<u8>> = (0..4).map(|i| data(MAX_BATCH / 4 - 1024, 20 + i)).collect();
        let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        assert!(update_request("", &refs).encoded_len() <= MAX_BATCH);
        let digests = upload(&mut cas, "", &refs).await;
        assert!(
            find_missing(&mut cas, "", &digests).await.is_empty(),
            "{setup:?}"
        );
        server.stop().await;
    }
}

// -------------------------------------------------------- BatchReadBlobs ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_read_returns_data_and_per_blob_not_found() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let big = data(1_000_000, 30);
        let present = upload(&mut cas, "", &[b"red".as_slice(), &big]).await;
        let query = vec![
            present[0].clone(),
            absent_digest(1),
            empty_digest(),
            present[1].clone(),
            absent_digest(2),
        ];
        let responses = batch_read(&mut cas, "", &query).await.unwrap();
        assert_eq!(responses.len(), query.len(), "{setup:?}");
        for (response, digest) in responses.iter().zip(&query) {
            assert_eq!(response.digest.as_ref(), Some(digest));
        }
        let codes: Vec<Code> = responses.iter().map(|r| rpc_code(&r.status)).collect();
        assert_eq!(
            codes,
            [Code::Ok, Code::NotFound, Code::Ok, Code::Ok, Code::NotFound],
            "{setup:?}"
        );
        assert_eq!(responses[0].data, b"red");
        assert!(responses[1].data.is_empty());
        assert!(responses[2].data.is_empty());
        assert_eq!(responses[3].data, big);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_read_limits_the_total_requested_size() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        // Exactly the limit is allowed (stored in two batches).
        let a = data(MAX_BATCH / 2, 40);
        let b = data(MAX_BATCH / 2, 41);
        let da = upload_one(&mut cas, "", &a).await;
        let db = upload_one(&mut cas, "", &b).await;
        let responses = batch_read(&mut cas, "", &[da.clone(), db.clone()])
            .await
            .unwrap();
        assert_eq!(responses[0].data, a, "{setup:?}");
        assert_eq!(responses[1].data, b, "{setup:?}");
        // One byte more is refused, even for blobs that do not exist.
        let c = PDigest {
            hash: absent_digest(3).hash,
            size_bytes: 1,
        };
        assert_code(
            batch_read(&mut cas, "", &[da.clone(), db.clone(), c]).await,
            Code::InvalidArgument,
            &format!("{setup:?} batch read over the limit"),
        );
        let huge = PDigest {
            hash: absent_digest(4).hash,
            size_bytes: 100 << 20,
        };
        assert_code(
            batch_read(&mut cas, "", &[huge]).await,
            Code::InvalidArgument,
            &format!("{setup:?} batch read of a 100 MiB blob"),
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_read_rejects_malformed_digests() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let good = upload_one(&mut cas, "", b"fine").await;
        for (what, bad) in malformed_digests() {
            assert_code(
                batch_read(&mut cas, "", &[good.clone(), bad]).await,
                Code::InvalidArgument,
                &format!("{setup:?} {what}"),
            );
        }
        server.stop().await;
    }
}

// --------------------------------------------------------------- GetTree ---

fn file(name: &str, content: &[u8]) -> re::FileNode {
    re::FileNode {
        name: name.into(),
        digest: Some(dig(content)),
        ..Default::default()
    }
}

fn subdir(name: &str, digest: &PDigest) -> re::DirectoryNode {
    re::DirectoryNode {
        name: name.into(),
        digest: Some(digest.clone()),
    }
}

/// root -> {a, b}; a -> {shared}; b -> {shared}: four distinct directories,
/// one of them reachable twice.
struct TestTree {
    root: PDigest,
    /// Every distinct directory, root first, in breadth-first order.
    all: Vec<re::Directory>,
}

async fn upload_tree(cas: &mut Cas) -> TestTree {
    let shared = re::Directory {
        files: vec![file("c", b"shared file")],
        ..Default::default()
    };
    let shared_d = upload_msg(cas, "", &shared).await;
    let a = re::Directory {
        files: vec![file("x", b"file in a")],
        directories: vec![subdir("s", &shared_d)],
        ..Default::default()
    };
    let b = re::Directory {
        files: vec![file("y", b"file in b")],
        directories: vec![subdir("s", &shared_d)],
        ..Default::default()
    };
    let a_d = upload_msg(cas, "", &a).await;
    let b_d = upload_msg(cas, "", &b).await;
    let root = re::Directory {
        directories: vec![subdir("a", &a_d), subdir("b", &b_d)],
        ..Default::default()
    };
    let root_d = upload_msg(cas, "", &root).await;
    TestTree {
        root: root_d,
        all: vec![root, a, b, shared],
    }
}

fn sorted(dirs: &[re::Directory]) -> Vec<Vec<u8>> {
    let mut encoded: Vec<Vec<u8>> = dirs.iter().map(Message::encode_to_vec).collect();
    encoded.sort();
    encoded
}

fn directories(pages: &[re::GetTreeResponse]) -> Vec<re::Directory> {
    pages.iter().flat_map(|p| p.directories.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tree_returns_each_directory_once() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let tree = upload_tree(&mut cas).await;
        let pages = get_tree(&mut cas, tree_request("", &tree.root, 0, ""))
            .await
            .unwrap();
        assert_eq!(pages.last().unwrap().next_page_token, "", "{setup:?}");
        let dirs = directories(&pages);
        assert_eq!(dirs.len(), 4, "{setup:?}: {dirs:?}");
        assert_eq!(sorted(&dirs), sorted(&tree.all), "{setup:?}");
        assert_eq!(dirs[0], tree.all[0], "the root comes first");

        // A single directory is a tree too.
        let leaf = upload_msg(&mut cas, "", &tree.all[3]).await;
        let pages = get_tree(&mut cas, tree_request("", &leaf, 0, ""))
            .await
            .unwrap();
        assert_eq!(directories(&pages), vec![tree.all[3].clone()]);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tree_pages_and_resumes() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let tree = upload_tree(&mut cas).await;
        let pages = get_tree(&mut cas, tree_request("", &tree.root, 1, ""))
            .await
            .unwrap();
        assert_eq!(pages.len(), 4, "{setup:?}: {pages:?}");
        for (i, page) in pages.iter().enumerate() {
            assert_eq!(page.directories.len(), 1, "{setup:?} page {i}");
            let last = i == pages.len() - 1;
            assert_eq!(page.next_page_token.is_empty(), last, "{setup:?} page {i}");
        }
        assert_eq!(sorted(&directories(&pages)), sorted(&tree.all), "{setup:?}");

        // Resume after the second page: the rest, and nothing already seen.
        let token = pages[1].next_page_token.clone();
        let rest = get_tree(&mut cas, tree_request("", &tree.root, 1, &token))
            .await
            .unwrap();
        let mut seen = directories(&pages[..2]);
        seen.extend(directories(&rest));
        assert_eq!(
            sorted(&seen),
            sorted(&tree.all),
            "{setup:?} resumed from {token:?}"
        );
        assert_eq!(rest.last().unwrap().next_page_token, "");

        // Resume with a larger page size.
        let token = pages[0].next_page_token.clone();
        let rest = get_tree(&mut cas, tree_request("", &tree.root, 100, &token))
            .await
            .unwrap();
        assert_eq!(rest.len(), 1, "{setup:?}");
        let mut seen = directories(&pages[..1]);
        seen.extend(directories(&rest));
        assert_eq!(sorted(&seen), sorted(&tree.all), "{setup:?}");

        // Page size 2: two pages of two.
        let pages = get_tree(&mut cas, tree_request("", &tree.root, 2, ""))
            .await
            .unwrap();
        let sizes: Vec<usize> = pages.iter().map(|p| p.directories.len()).collect();
        assert_eq!(sizes, [2, 2], "{setup:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tree_errors() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let tree = upload_tree(&mut cas).await;
        let what = |s: &str| format!("{setup:?}: {s}");

        // Missing root.
        assert_code(
            get_tree(&mut cas, tree_request("", &absent_digest(1), 0, "")).await,
            Code::NotFound,
            &what("missing root"),
        );
        // Root digest absent or malformed.
        let mut request = tree_request("", &tree.root, 0, "");
        request.root_digest = None;
        assert_code(
            get_tree(&mut cas, request).await,
            Code::InvalidArgument,
            &what("no root"),
        );
        for (name, bad) in malformed_digests() {
            assert_code(
                get_tree(&mut cas, tree_request("", &bad, 0, "")).await,
                Code::InvalidArgument,
                &what(name),
            );
        }
        // Bad paging parameters.
        assert_code(
            get_tree(&mut cas, tree_request("", &tree.root, -1, "")).await,
            Code::InvalidArgument,
            &what("negative page size"),
        );
        for token in ["bogus", "skip:", "skip:-1", "42"] {
            assert_code(
                get_tree(&mut cas, tree_request("", &tree.root, 0, token)).await,
                Code::InvalidArgument,
                &what(&format!("page token {token:?}")),
            );
        }

        // A root that is not a Directory message.
        let garbage = upload_one(&mut cas, "", b"\xff\xff\xff\xff").await;
        assert_code(
            get_tree(&mut cas, tree_request("", &garbage, 0, "")).await,
            Code::InvalidArgument,
            &what("root is not a Directory"),
        );
        // A subdirectory that is not a Directory message, at the first page
        // and after pages were sent.
        let bad_child = re::Directory {
            directories: vec![subdir("ok", &tree.root), subdir("zz", &garbage)],
            ..Default::default()
        };
        let bad_root = upload_msg(&mut cas, "", &bad_child).await;
        for page_size in [0, 1] {
            assert_code(
                get_tree(&mut cas, tree_request("", &bad_root, page_size, "")).await,
                Code::InvalidArgument,
                &what(&format!("child is not a Directory, page size {page_size}")),
            );
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tree_omits_missing_subdirectories() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut cas = server.cas();
        let tree = upload_tree(&mut cas).await;
        let missing = dig_msg(&re::Directory {
            files: vec![file("never", b"uploaded")],
            ..Default::default()
        });
        let root = re::Directory {
            directories: vec![subdir("gone", &missing), subdir("t", &tree.root)],
            ..Default::default()
        };
        let root_d = upload_msg(&mut cas, "", &root).await;
        for page_size in [0, 1] {
            let pages = get_tree(&mut cas, tree_request("", &root_d, page_size, ""))
                .await
                .unwrap();
            let mut expected = tree.all.clone();
            expected.push(root.clone());
            assert_eq!(
                sorted(&directories(&pages)),
                sorted(&expected),
                "{setup:?} page size {page_size}"
            );
            assert_eq!(pages.last().unwrap().next_page_token, "");
        }
        server.stop().await;
    }
}
