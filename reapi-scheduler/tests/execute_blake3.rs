//! Execute with BLAKE3 over gRPC: an action whose every digest is BLAKE3
//! runs on a local executor, which hashes its outputs (files, trees,
//! stdout, stderr) with BLAKE3; the operation says BLAKE3; the result is
//! cached and inlined under BLAKE3 only. Capabilities offer both functions
//! and keep SHA-256 in the legacy singular field.

use prost::Message;
use reapi_core::proto::remote_execution as re;
use reapi_core::DigestFunction;
use reapi_test_support::actions::{sh, ActionSpec};
use reapi_test_support::cas::{batch_read_with, try_find_missing_with};
use reapi_test_support::clients::Cas;
use reapi_test_support::digests::{blake3, dig, dig_blake3, sha256, PDigest};
use reapi_test_support::operations::{execute, execute_request, metadata, Run};
use reapi_test_support::server::full::Server;
use reapi_test_support::status::{assert_code, rpc_code};
use tonic::Code;

const INPUT: &[u8] = b"the input file\n";

fn blake3_action() -> ActionSpec {
    let mut spec = sh("echo hi; echo err >&2; cat input.txt > out/result.txt; \
         mkdir -p tree/sub; echo leaf > tree/sub/leaf")
    .input("input.txt", INPUT)
    .output_file("out/result.txt")
    .digest_function(DigestFunction::Blake3);
    spec.output_directories.push("tree".into());
    spec
}

fn blake3_request(action: &PDigest) -> re::ExecuteRequest {
    re::ExecuteRequest {
        digest_function: blake3(),
        ..execute_request(action)
    }
}

async fn read_blake3(cas: &mut Cas, digest: &PDigest) -> Vec<u8> {
    let response = batch_read_with(
        DigestFunction::Blake3,
        cas,
        "",
        std::slice::from_ref(digest),
    )
    .await
    .expect("BatchReadBlobs")
    .remove(0);
    assert_eq!(rpc_code(&response.status), Code::Ok, "{digest:?}");
    assert_eq!(&dig_blake3(&response.data), digest, "stored under BLAKE3");
    response.data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blake3_actions_hash_their_outputs_with_blake3() {
    let server = Server::start().await;
    let action = server.upload_action(&blake3_action()).await;
    let run = server.run_request(blake3_request(&action)).await;
    run.assert_ran_ok();
    for op in &run.ops {
        let meta = metadata(op);
        assert_eq!(meta.digest_function, blake3(), "{meta:?}");
        assert_eq!(meta.action_digest.as_ref(), Some(&action));
    }
    let result = run.result();
    let mut cas = server.cas();
    assert_eq!(result.stdout_digest, Some(dig_blake3(b"hi\n")));
    assert_eq!(result.stderr_digest, Some(dig_blake3(b"err\n")));
    assert_eq!(read_blake3(&mut cas, &dig_blake3(b"hi\n")).await, b"hi\n");
    let file = &result.output_files[0];
    assert_eq!(file.digest, Some(dig_blake3(INPUT)));
    assert_eq!(read_blake3(&mut cas, &dig_blake3(INPUT)).await, INPUT);

    let tree_digest = result.output_directories[0]
        .tree_digest
        .clone()
        .expect("tree digest");
    let tree = re::Tree::decode(&read_blake3(&mut cas, &tree_digest).await[..]).unwrap();
    let sub = &tree.children[0];
    assert_eq!(sub.files[0].digest, Some(dig_blake3(b"leaf\n")));
    let root = tree.root.expect("tree root");
    assert_eq!(
        root.directories[0].digest,
        Some(dig_blake3(&sub.encode_to_vec()))
    );
    read_blake3(&mut cas, &dig_blake3(b"leaf\n")).await;

    // Nothing of it is a SHA-256 blob.
    let as_sha256 = try_find_missing_with(
        DigestFunction::Sha256,
        &mut cas,
        "",
        &[dig(INPUT), dig(b"hi\n")],
    )
    .await
    .unwrap();
    assert_eq!(as_sha256.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blake3_results_are_cached_and_inlined_under_blake3_only() {
    let server = Server::start().await;
    let action = server.upload_action(&blake3_action()).await;
    server
        .run_request(blake3_request(&action))
        .await
        .assert_ran_ok();

    let mut hit = blake3_request(&action);
    hit.inline_stdout = true;
    hit.inline_output_files = vec!["out/result.txt".into()];
    let hit: Run = server.run_request(hit).await;
    assert!(hit.response.cached_result);
    assert_eq!(hit.result().stdout_raw, b"hi\n");
    assert_eq!(hit.result().output_files[0].contents, INPUT);

    let found = server
        .ac()
        .get_action_result(re::GetActionResultRequest {
            instance_name: String::new(),
            action_digest: Some(action.clone()),
            digest_function: blake3(),
            ..Default::default()
        })
        .await
        .expect("cached under BLAKE3");
    assert_eq!(found.into_inner().stdout_digest, Some(dig_blake3(b"hi\n")));
    assert_code(
        server.cached_result(&action).await,
        Code::NotFound,
        "the BLAKE3 action's hash looked up as SHA-256",
    );

    // Asked to run as SHA-256, the hash names no Action in the CAS.
    assert_code(
        execute(&mut server.exec(), execute_request(&action)).await,
        Code::FailedPrecondition,
        "Execute of the BLAKE3 action's hash as SHA-256",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capabilities_offer_both_functions_and_keep_the_legacy_field() {
    let server = Server::start().await;
    let caps = server
        .caps()
        .get_capabilities(re::GetCapabilitiesRequest::default())
        .await
        .expect("GetCapabilities")
        .into_inner();
    let exec = caps.execution_capabilities.expect("execution capabilities");
    assert_eq!(exec.digest_function, sha256(), "legacy singular field");
    assert_eq!(exec.digest_functions, vec![sha256(), blake3()]);
    let cache = caps.cache_capabilities.expect("cache capabilities");
    assert_eq!(cache.digest_functions, vec![sha256(), blake3()]);
}
