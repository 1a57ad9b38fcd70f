//! A BLAKE3 action on a cluster of processes: one `reapi-scheduler` and two
//! `reapi-worker`s holding the CAS. The client uploads and executes with
//! BLAKE3 through the scheduler; the lease carries the function to the
//! worker, which fetches the inputs from its peers, hashes the outputs with
//! BLAKE3 and stores them on the workers' disks as BLAKE3 blobs. The same
//! action then hits the cache, under BLAKE3 only.

use reapi_core::proto::remote_execution as re;
use reapi_core::DigestFunction;
use reapi_e2e::cluster_cas::blobs_per_worker;
use reapi_test_support::actions::sh;
use reapi_test_support::cas::upload_with;
use reapi_test_support::clients::{ac, bs, cas, connect, exec};
use reapi_test_support::digests::{blake3, dig_blake3, sha256};
use reapi_test_support::launch::cluster::{Cluster, ClusterOptions};
use reapi_test_support::operations::{execute, execute_request, metadata, response_of};
use reapi_test_support::status::assert_code;
use tonic::Code;

const INPUT: &[u8] = b"an input held by the workers\n";

#[test]
fn a_blake3_action_runs_on_a_cluster_and_is_cached_as_blake3() {
    let options = ClusterOptions {
        executors: 1,
        ..Default::default()
    };
    let cluster = Cluster::start(1, 2, options);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let output = runtime.block_on(async {
        let channel = connect(cluster.scheduler(0).addr()).await;
        let built = sh("tr a-z A-Z < input.txt > out.txt")
            .input("input.txt", INPUT)
            .output_file("out.txt")
            .digest_function(DigestFunction::Blake3)
            .build();
        upload_with(DigestFunction::Blake3, &mut cas(&channel), "", &built.blobs).await;
        let request = re::ExecuteRequest {
            digest_function: blake3(),
            ..execute_request(&built.action_digest)
        };
        let ops = execute(&mut exec(&channel), request.clone())
            .await
            .expect("Execute");
        let last = ops.last().expect("an operation");
        assert_eq!(metadata(last).digest_function, blake3());
        let response = response_of(last);
        assert!(!response.cached_result);
        let result = response.result.clone().expect("a result");
        assert_eq!(result.exit_code, 0, "{response:?}");
        let expected = INPUT.to_ascii_uppercase();
        let out = result.output_files[0].digest.clone().unwrap();
        assert_eq!(out, dig_blake3(&expected), "the worker hashed with BLAKE3");
        let name = format!("blobs/blake3/{}/{}", out.hash, out.size_bytes);
        let bytes = reapi_test_support::bytestream::read(&mut bs(&channel), &name, 0, 0)
            .await
            .expect("the output, read as BLAKE3");
        assert_eq!(bytes, expected);

        let again = execute(&mut exec(&channel), request)
            .await
            .expect("Execute");
        assert!(response_of(again.last().unwrap()).cached_result);
        let as_sha256 = ac(&channel)
            .get_action_result(re::GetActionResultRequest {
                action_digest: Some(built.action_digest.clone()),
                digest_function: sha256(),
                ..Default::default()
            })
            .await;
        assert_code(
            as_sha256,
            Code::NotFound,
            "the BLAKE3 action's hash looked up as SHA-256",
        );
        out
    });

    // On the workers' disks, the output is a BLAKE3 content file.
    let file = format!("blake3-{}-{}", output.hash, output.size_bytes);
    let holders: Vec<usize> = blobs_per_worker(&cluster)
        .iter()
        .enumerate()
        .filter(|(_, blobs)| blobs.iter().any(|b| b.ends_with(&file)))
        .map(|(i, _)| i)
        .collect();
    assert!(
        !holders.is_empty(),
        "no worker holds {file}: {:?}",
        blobs_per_worker(&cluster)
    );
}
