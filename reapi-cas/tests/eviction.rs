//! LRU eviction seen through the services: blobs a client asks about
//! (FindMissingBlobs) or gets a cache hit for (GetActionResult) outlive
//! untouched ones when new data needs room.

use reapi_test_support::action_cache::{get_result, simple_result, update_result};
use reapi_test_support::bytestream::{read_blob, write, write_msgs, write_name};
use reapi_test_support::cas::{find_missing, is_present, update_request, upload, upload_one};
use reapi_test_support::digests::{action_key, data, dig, PDigest};
use reapi_test_support::server::storage::{Server, Setup};
use reapi_test_support::status::{assert_code, rpc_code};

/// Room for three blobs and a bit: the fourth evicts one.
const BUDGET: u64 = 100_000;
const BLOB: usize = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_missing_keeps_a_blob_alive() {
    for setup in Setup::ALL {
        let server = Server::start_with(setup, BUDGET, None).await;
        let mut cas = server.cas();
        let blobs: Vec<Vec<u8>> = (0..4).map(|i| data(BLOB, 100 + i)).collect();
        let digests: Vec<PDigest> = blobs.iter().map(|b| dig(b)).collect();
        for blob in &blobs[..3] {
            upload_one(&mut cas, "", blob).await;
        }
        assert!(find_missing(&mut cas, "", &digests[..3]).await.is_empty());
        // Touch the oldest two, in order: the third is now the least
        // recently used.
        assert!(is_present(&mut cas, "", &digests[0]).await);
        assert!(is_present(&mut cas, "", &digests[1]).await);
        upload_one(&mut cas, "", &blobs[3]).await;
        assert_eq!(
            find_missing(&mut cas, "", &digests).await,
            vec![digests[2].clone()],
            "{setup:?}"
        );

        // Again, touching 3 then 0 (the query above touched all at once):
        // 1 is now the least recently used.
        assert!(is_present(&mut cas, "", &digests[3]).await);
        assert!(is_present(&mut cas, "", &digests[0]).await);
        let fifth = data(BLOB, 200);
        upload_one(&mut cas, "", &fifth).await;
        let mut query = digests.clone();
        query.push(dig(&fifth));
        assert_eq!(
            find_missing(&mut cas, "", &query).await,
            vec![digests[1].clone(), digests[2].clone()],
            "{setup:?}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_cache_hit_keeps_its_outputs_alive() {
    for setup in Setup::ALL {
        let server = Server::start_with(setup, BUDGET, None).await;
        let (mut cas, mut ac) = (server.cas(), server.ac());
        let output = upload_one(&mut cas, "", &data(BLOB, 1)).await;
        let other = upload_one(&mut cas, "", &data(BLOB, 2)).await;
        let third = upload_one(&mut cas, "", &data(BLOB - 100, 3)).await;
        let logs = upload(&mut cas, "", &[b"out", b"err"]).await;
        let result = simple_result(&output, &logs[0], &logs[1]);
        let action = action_key("keep");
        update_result(&mut ac, "", &action, &result).await.unwrap();
        // The hit refreshes the output file; `other` is now the oldest.
        assert_eq!(get_result(&mut ac, "", &action).await.unwrap(), result);
        upload_one(&mut cas, "", &data(BLOB, 4)).await;
        assert_eq!(
            find_missing(
                &mut cas,
                "",
                &[output.clone(), other.clone(), third.clone()]
            )
            .await,
            vec![other],
            "{setup:?}"
        );
        assert_eq!(
            get_result(&mut ac, "", &action).await.unwrap(),
            result,
            "{setup:?}"
        );
        server.stop().await;
    }
}

/// The same blob uploaded concurrently (under two upload names, and twice
/// in one batch) is stored once and counted once against the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_one_blob_count_once() {
    for setup in Setup::ALL {
        let server = Server::start_with(setup, BUDGET, None).await;
        let (mut cas, mut bs) = (server.cas(), server.bs());
        let blob = data(BLOB, 1);
        let d = dig(&blob);
        // Two interleaved Write streams: both have sent data before either
        // finishes.
        let names = [write_name("", &d), write_name("", &d)];
        let first: Vec<_> = names
            .iter()
            .map(|n| write_msgs(n, &blob[..BLOB / 2], 0, BLOB / 2, false).remove(0))
            .collect();
        let mut streams = Vec::new();
        for msg in first {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tx.send(msg).await.unwrap();
            let mut bs = bs.clone();
            let call = tokio::spawn(async move {
                bs.write(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                    .map(|r| r.into_inner().committed_size)
            });
            streams.push((tx, call));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        for ((tx, _), name) in streams.iter().zip(&names) {
            let rest = write_msgs(name, &blob, BLOB / 2, BLOB, true).remove(0);
            tx.send(rest).await.unwrap();
        }
        for (tx, call) in streams {
            drop(tx);
            assert_eq!(call.await.unwrap().unwrap(), BLOB as i64, "{setup:?}");
        }
        // Twice in one batch, and once more on its own.
        let responses = cas
            .batch_update_blobs(update_request("", &[&blob, &blob]))
            .await
            .unwrap()
            .into_inner()
            .responses;
        assert!(responses
            .iter()
            .all(|r| rpc_code(&r.status) == tonic::Code::Ok));
        upload_one(&mut cas, "", &blob).await;
        assert_eq!(read_blob(&mut bs, "", &d).await.unwrap(), blob);

        // Two more blobs fill the budget to 90 %: nothing may be evicted.
        let others = [data(BLOB, 2), data(BLOB, 3)];
        for other in &others {
            upload_one(&mut cas, "", other).await;
        }
        let query = [d.clone(), dig(&others[0]), dig(&others[1])];
        assert!(
            find_missing(&mut cas, "", &query).await.is_empty(),
            "{setup:?}: a blob was evicted though the store holds 90 % of its budget"
        );
        server.stop().await;
    }
}

/// A blob larger than the whole budget can never be stored: it is over the
/// advertised `max_cas_blob_size_bytes`, INVALID_ARGUMENT as the REAPI asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_over_the_whole_budget_is_refused() {
    for setup in Setup::ALL {
        let server = Server::start_with(setup, BUDGET, None).await;
        let (mut cas, mut bs) = (server.cas(), server.bs());
        let kept = upload_one(&mut cas, "", &data(BLOB, 1)).await;
        let huge = data(BUDGET as usize + 1, 2);
        let responses = cas
            .batch_update_blobs(update_request("", &[&huge]))
            .await
            .unwrap()
            .into_inner()
            .responses;
        assert_eq!(
            rpc_code(&responses[0].status),
            tonic::Code::InvalidArgument,
            "{setup:?} batch"
        );
        let msgs = write_msgs(&write_name("", &dig(&huge)), &huge, 0, 16 * 1024, true);
        assert_code(
            write(&mut bs, msgs).await,
            tonic::Code::InvalidArgument,
            &format!("{setup:?} write"),
        );
        assert!(!is_present(&mut cas, "", &dig(&huge)).await);
        assert!(is_present(&mut cas, "", &kept).await, "{setup:?}");
        server.stop().await;
    }
}
