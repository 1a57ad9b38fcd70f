//! Instance names over gRPC: separate namespaces, multi-segment names in
//! ByteStream resource names, and a server restricted to listed names.

use reapi_core::proto::bytestream::WriteRequest;
use reapi_core::proto::remote_execution as re;
use reapi_test_support::action_cache::{get_result, simple_result, update_result};
use reapi_test_support::bytestream::{
    bs_upload, query_write_status, read, read_blob, write, write_msgs, write_name, write_name_uuid,
};
use reapi_test_support::cas::{
    batch_read, find_missing, get_tree, is_present, tree_request, try_find_missing, update_request,
    upload, upload_msg, upload_one,
};
use reapi_test_support::digests::{action_key, data, dig, dig_msg};
use reapi_test_support::server::storage::{Server, Setup, LARGE_BUDGET};
use reapi_test_support::status::{assert_code, rpc_code};
use tonic::{Code, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_and_results_do_not_cross_instances() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut cas, mut bs, mut ac) = (server.cas(), server.bs(), server.ac());
        let blob = b"written under a".to_vec();
        let big = data(200_000, 1);
        let d = upload_one(&mut cas, "a", &blob).await;
        let big_d = bs_upload(&mut bs, "a", &big, 16 * 1024).await;
        let dir = re::Directory {
            files: vec![re::FileNode {
                name: "f".into(),
                digest: Some(d.clone()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let dir = upload_msg(&mut cas, "a", &dir).await;
        let result = simple_result(&d, &d, &big_d);
        let action = action_key("a");
        update_result(&mut ac, "a", &action, &result).await.unwrap();

        // Visible under "a".
        assert!(find_missing(&mut cas, "a", &[d.clone(), big_d.clone()])
            .await
            .is_empty());
        assert_eq!(read_blob(&mut bs, "a", &big_d).await.unwrap(), big);
        assert_eq!(get_result(&mut ac, "a", &action).await.unwrap(), result);

        for other in ["b", "", "a/b", "team/a"] {
            let what = |s: &str| format!("{setup:?} instance {other:?}: {s}");
            let query = [d.clone(), big_d.clone(), dir.clone()];
            assert_eq!(
                find_missing(&mut cas, other, &query).await,
                query.to_vec(),
                "{}",
                what("find")
            );
            assert_code(
                read_blob(&mut bs, other, &d).await,
                Code::NotFound,
                &what("read"),
            );
            assert_code(
                read_blob(&mut bs, other, &big_d).await,
                Code::NotFound,
                &what("read big"),
            );
            let responses = batch_read(&mut cas, other, std::slice::from_ref(&d))
                .await
                .unwrap();
            assert_eq!(
                rpc_code(&responses[0].status),
                Code::NotFound,
                "{}",
                what("batch read")
            );
            assert!(responses[0].data.is_empty());
            assert_code(
                get_tree(&mut cas, tree_request(other, &dir, 0, "")).await,
                Code::NotFound,
                &what("get tree"),
            );
            assert_code(
                get_result(&mut ac, other, &action).await,
                Code::NotFound,
                &what("ac"),
            );
            assert_code(
                query_write_status(&mut bs, &write_name(other, &big_d)).await,
                Code::NotFound,
                &what("query write status"),
            );
        }

        // The same result stored under "b" without its blobs is a miss there.
        update_result(&mut ac, "b", &action, &result).await.unwrap();
        assert_code(
            get_result(&mut ac, "b", &action).await,
            Code::NotFound,
            "b without blobs",
        );
        upload(&mut cas, "b", &[&blob]).await;
        bs_upload(&mut bs, "b", &big, 1 << 20).await;
        assert_eq!(
            get_result(&mut ac, "b", &action).await.unwrap(),
            result,
            "{setup:?}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_segment_instance_names_in_bytestream() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut cas, mut bs) = (server.cas(), server.bs());
        let blob = data(100_000, 2);
        let d = dig(&blob);
        let upload_name = format!(
            "team/x/uploads/{}/blobs/{}/{}",
            uuid::Uuid::new_v4(),
            d.hash,
            d.size_bytes
        );
        assert_eq!(
            upload_name,
            write_name_uuid("team/x", upload_name.split('/').nth(3).unwrap(), &d)
        );
        let committed = write(&mut bs, write_msgs(&upload_name, &blob, 0, 16 * 1024, true))
            .await
            .unwrap();
        assert_eq!(committed, blob.len() as i64, "{setup:?}");
        let download_name = format!("team/x/blobs/{}/{}", d.hash, d.size_bytes);
        assert_eq!(
            read(&mut bs, &download_name, 0, 0).await.unwrap(),
            blob,
            "{setup:?}"
        );
        // With an explicit digest function segment.
        let explicit = format!("team/x/blobs/sha256/{}/{}", d.hash, d.size_bytes);
        assert_eq!(
            read(&mut bs, &explicit, 10, 20).await.unwrap(),
            &blob[10..30]
        );
        assert!(is_present(&mut cas, "team/x", &d).await);
        // An upload name with the explicit digest function.
        let blob3 = data(3_000, 4);
        let d3 = dig(&blob3);
        let name = format!(
            "team/x/uploads/{}/blobs/sha256/{}/{}",
            uuid::Uuid::new_v4(),
            d3.hash,
            d3.size_bytes
        );
        write(&mut bs, write_msgs(&name, &blob3, 0, 1000, true))
            .await
            .unwrap();
        assert_eq!(read_blob(&mut bs, "team/x", &d3).await.unwrap(), blob3);
        for other in ["team", "x", "team/x/y", ""] {
            assert!(!is_present(&mut cas, other, &d).await, "{setup:?} {other}");
        }
        let status = query_write_status(&mut bs, &upload_name).await.unwrap();
        assert!(status.complete);

        // Upload metadata after the size is allowed and ignored.
        let blob2 = data(5_000, 3);
        let d2 = dig(&blob2);
        let name = format!(
            "team/x/uploads/{}/blobs/{}/{}/some/metadata",
            uuid::Uuid::new_v4(),
            d2.hash,
            d2.size_bytes
        );
        assert_eq!(
            write(&mut bs, write_msgs(&name, &blob2, 0, 1000, true))
                .await
                .unwrap(),
            blob2.len() as i64,
            "{setup:?}"
        );
        assert_eq!(read_blob(&mut bs, "team/x", &d2).await.unwrap(), blob2);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_instance_names_are_refused() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut cas, mut ac) = (server.cas(), server.ac());
        for bad in [
            "a//b",
            "/a",
            "a/",
            "blobs",
            "x/uploads",
            "actions",
            "compressed-blobs/y",
        ] {
            let what = format!("{setup:?} instance {bad:?}");
            assert_code(
                try_find_missing(&mut cas, bad, &[dig(b"x")]).await,
                Code::InvalidArgument,
                &what,
            );
            assert_code(
                get_result(&mut ac, bad, &action_key("x")).await,
                Code::InvalidArgument,
                &what,
            );
        }
        server.stop().await;
    }
}

/// Every RPC of the storage services, under one instance name; the first
/// error (or Ok).
async fn every_rpc(server: &Server, instance: &str) -> Vec<(&'static str, Result<(), Status>)> {
    let (mut cas, mut bs, mut ac, mut caps) =
        (server.cas(), server.bs(), server.ac(), server.caps());
    let d = dig(b"instance check");
    let root = dig_msg(&re::Directory::default());
    let mut out = Vec::new();
    let r = caps
        .get_capabilities(re::GetCapabilitiesRequest {
            instance_name: instance.into(),
        })
        .await;
    out.push(("GetCapabilities", r.map(drop)));
    let r = cas
        .batch_update_blobs(update_request(instance, &[b"instance check", b""]))
        .await;
    // Per-blob failures count as failures here.
    let r = r.and_then(|resp| {
        match resp
            .into_inner()
            .responses
            .iter()
            .find(|x| rpc_code(&x.status) != Code::Ok)
        {
            Some(x) => Err(Status::new(rpc_code(&x.status), "per-blob")),
            None => Ok(()),
        }
    });
    out.push(("BatchUpdateBlobs", r));
    out.push((
        "FindMissingBlobs",
        try_find_missing(&mut cas, instance, std::slice::from_ref(&d))
            .await
            .map(drop),
    ));
    out.push((
        "BatchReadBlobs",
        batch_read(&mut cas, instance, std::slice::from_ref(&d))
            .await
            .map(drop),
    ));
    // The root is the empty Directory, whose encoding is the empty blob.
    out.push((
        "GetTree",
        get_tree(&mut cas, tree_request(instance, &root, 0, ""))
            .await
            .map(drop),
    ));
    let blob = b"bytestream instance check";
    let bd = dig(blob);
    let wname = write_name(instance, &bd);
    let msgs = vec![WriteRequest {
        resource_name: wname.clone(),
        write_offset: 0,
        finish_write: true,
        data: blob.to_vec(),
    }];
    out.push(("Write", write(&mut bs, msgs).await.map(drop)));
    out.push((
        "QueryWriteStatus",
        query_write_status(&mut bs, &wname).await.map(drop),
    ));
    out.push(("Read", read_blob(&mut bs, instance, &bd).await.map(drop)));
    let action = action_key("instance check");
    let result = re::ActionResult::default();
    out.push((
        "UpdateActionResult",
        update_result(&mut ac, instance, &action, &result)
            .await
            .map(drop),
    ));
    out.push((
        "GetActionResult",
        get_result(&mut ac, instance, &action).await.map(drop),
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_instances_are_served() {
    for setup in Setup::ALL {
        let server = Server::start_with(setup, LARGE_BUDGET, Some(vec!["", "ci"])).await;
        for good in ["", "ci"] {
            for (rpc, result) in every_rpc(&server, good).await {
                if let Err(s) = result {
                    panic!(
                        "{setup:?} {rpc} on listed instance {good:?}: {:?} {}",
                        s.code(),
                        s.message()
                    );
                }
            }
        }
        for bad in ["other", "ci/sub", "CI", "main"] {
            for (rpc, result) in every_rpc(&server, bad).await {
                assert_code(
                    result,
                    Code::InvalidArgument,
                    &format!("{setup:?} {rpc} on unlisted instance {bad:?}"),
                );
            }
        }
        server.stop().await;
    }
}

/// An instance name too long for the disk layout (its directory name would
/// pass 255 bytes) is the client's error: INVALID_ARGUMENT from every RPC
/// that would store under it, never INTERNAL. Reads of it just miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_instance_names_are_a_client_error() {
    let long = "x".repeat(300);
    let server = Server::start(Setup::Disk).await;
    for (rpc, result) in every_rpc(&server, &long).await {
        if let Err(s) = result {
            assert!(
                matches!(s.code(), Code::InvalidArgument | Code::NotFound),
                "{rpc} under a 300-character instance name: {:?} {}",
                s.code(),
                s.message()
            );
        }
    }
    server.stop().await;
}
