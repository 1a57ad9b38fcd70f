//! ByteStream over gRPC: Write (chunking, verification, resumption),
//! QueryWriteStatus and Read, on the disk and the memory setup.

use std::time::Duration;

use reapi_core::proto::bytestream::WriteRequest;
use reapi_test_support::bytestream::{
    bs_upload, poll_write_status, query_write_status, read, read_blob, read_chunks, read_name,
    write, write_msgs, write_name, MAX_READ_CHUNK,
};
use reapi_test_support::cas::{find_missing, is_present, upload_one};
use reapi_test_support::clients::Bs;
use reapi_test_support::digests::{absent_digest, data, dig, empty_digest, PDigest};
use reapi_test_support::server::storage::{Server, Setup};
use reapi_test_support::status::assert_code;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn hello() -> PDigest {
    dig(b"hello")
}

/// Resource names no Write, QueryWriteStatus or Read may accept.
fn malformed_names(d: &PDigest) -> Vec<String> {
    let (h, s) = (&d.hash, d.size_bytes);
    vec![
        String::new(),
        "blobs".into(),
        format!("{h}/{s}"),
        format!("blobs/{h}"),
        format!("blobs/{}/{s}", &h[..63]),
        format!("blobs/{}/{s}", h.to_uppercase()),
        format!("blobs/{h}/-1"),
        format!("blobs/{h}/x"),
        format!("blobs/sha1/{h}/{s}"),
        format!("blobs/{h}/{s}/extra"),
        format!("a//b/blobs/{h}/{s}"),
        format!("/blobs/{h}/{s}"),
        format!("actions/blobs/{h}/{s}"),
        format!("uploads/blobs/{h}/{s}"),
        format!("uploads/u/blobs/{}/{s}", &h[..63]),
        format!("uploads/u/blobs/{h}/-1"),
        format!("uploads/u/{h}/{s}"),
        format!("uploads/u/compressed-blobs/gzip/{h}/{s}"),
    ]
}

fn one_message(name: &str, offset: i64, data: &[u8], finish: bool) -> WriteRequest {
    WriteRequest {
        resource_name: name.into(),
        write_offset: offset,
        finish_write: finish,
        data: data.to_vec(),
    }
}

// ----------------------------------------------------------------- Write ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_in_various_chunk_sizes() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let cases = [
            (data(1000, 1), 1),
            (data(200 * KIB + 17, 2), 16 * KIB),
            (data(10 * MIB + 3, 3), 3 * MIB),
            (data(3 * MIB, 4), 3 * MIB),
            (data(20 * MIB, 5), 16 * KIB),
        ];
        for (blob, chunk) in &cases {
            let d = bs_upload(&mut bs, "", blob, *chunk).await;
            assert!(
                is_present(&mut cas, "", &d).await,
                "{setup:?} chunk {chunk}"
            );
            assert_eq!(&read_blob(&mut bs, "", &d).await.unwrap(), blob);
        }
        // 20 MiB in 3 MiB chunks.
        let blob = data(20 * MIB, 6);
        let d = bs_upload(&mut bs, "", &blob, 3 * MIB).await;
        assert_eq!(read_blob(&mut bs, "", &d).await.unwrap(), blob, "{setup:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_repeating_the_name_in_every_message_and_the_empty_blob() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut bs = server.bs();
        let blob = data(50 * KIB, 7);
        let d = dig(&blob);
        let name = write_name("", &d);
        let mut msgs = write_msgs(&name, &blob, 0, 16 * KIB, true);
        for m in &mut msgs {
            m.resource_name = name.clone();
        }
        assert_eq!(
            write(&mut bs, msgs).await.unwrap(),
            blob.len() as i64,
            "{setup:?}"
        );
        assert_eq!(read_blob(&mut bs, "", &d).await.unwrap(), blob);

        let empty = empty_digest();
        let msgs = write_msgs(&write_name("", &empty), b"", 0, 16 * KIB, true);
        assert_eq!(write(&mut bs, msgs).await.unwrap(), 0, "{setup:?}");
        assert!(read_blob(&mut bs, "", &empty).await.unwrap().is_empty());
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_of_an_existing_blob_returns_the_full_size_at_once() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let blob = data(5 * MIB, 8);
        let d = bs_upload(&mut bs, "", &blob, 64 * KIB).await;

        // All of it again, under a new upload name.
        let msgs = write_msgs(&write_name("", &d), &blob, 0, 64 * KIB, true);
        assert_eq!(write(&mut bs, msgs).await.unwrap(), blob.len() as i64);
        // Only the first chunk, without finish_write.
        let mut msgs = write_msgs(&write_name("", &d), &blob, 0, 64 * KIB, false);
        msgs.truncate(1);
        assert_eq!(
            write(&mut bs, msgs).await.unwrap(),
            blob.len() as i64,
            "{setup:?}"
        );
        // A blob stored by BatchUpdateBlobs.
        let small = upload_one(&mut cas, "", b"batch-stored").await;
        let msgs = vec![one_message(&write_name("", &small), 0, b"batch", false)];
        assert_eq!(
            write(&mut bs, msgs).await.unwrap(),
            small.size_bytes,
            "{setup:?}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_verifies_size_and_hash() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let what = |s: &str| format!("{setup:?}: {s}");
        let blob = data(100 * KIB, 9);
        let d = dig(&blob);

        // Fewer bytes than the digest says, then finish_write.
        let msgs = write_msgs(
            &write_name("", &d),
            &blob[..blob.len() - 1],
            0,
            16 * KIB,
            true,
        );
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("short"),
        );
        // The right size but other content.
        let mut other = blob.clone();
        other[50_000] ^= 1;
        let msgs = write_msgs(&write_name("", &d), &other, 0, 16 * KIB, true);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("hash"),
        );
        // Data past the declared size: in one message, and across messages.
        let mut long = blob.clone();
        long.push(0);
        let msgs = vec![one_message(&write_name("", &d), 0, &long, true)];
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("long, one msg"),
        );
        let msgs = write_msgs(&write_name("", &d), &long, 0, 16 * KIB, true);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("long, chunked"),
        );
        let msgs = write_msgs(&write_name("", &d), &long, 0, 16 * KIB, false);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("long, no finish"),
        );
        // A digest claiming a size the data does not have.
        let mut wrong_size = d.clone();
        wrong_size.size_bytes += 10;
        let msgs = write_msgs(&write_name("", &wrong_size), &blob, 0, 16 * KIB, true);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("size"),
        );

        // Nothing was stored, under either digest.
        let query = [d.clone(), wrong_size.clone(), dig(&other), dig(&long)];
        assert_eq!(
            find_missing(&mut cas, "", &query).await,
            query.to_vec(),
            "{setup:?}"
        );
        assert_code(
            read_blob(&mut bs, "", &d).await,
            Code::NotFound,
            &what("read"),
        );
        // And the right data still goes through.
        bs_upload(&mut bs, "", &blob, 16 * KIB).await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_rejects_wrong_offsets_and_changed_names() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let what = |s: &str| format!("{setup:?}: {s}");
        let blob = data(64 * KIB, 10);
        let d = dig(&blob);

        // A fresh upload that does not start at 0.
        let msgs = write_msgs(&write_name("", &d), &blob, 16 * KIB, 16 * KIB, true);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("start at 16K"),
        );
        let msgs = vec![one_message(&write_name("", &d), -1, &blob, true)];
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("negative"),
        );
        // A gap and an overlap in the middle of a stream.
        for delta in [1i64, -1] {
            let mut msgs = write_msgs(&write_name("", &d), &blob, 0, 16 * KIB, true);
            msgs[2].write_offset += delta;
            assert_code(
                write(&mut bs, msgs).await,
                Code::InvalidArgument,
                &what(&format!("offset off by {delta}")),
            );
        }
        // The name changes within the stream.
        let name = write_name("", &d);
        let mut msgs = write_msgs(&name, &blob, 0, 16 * KIB, true);
        msgs[1].resource_name = write_name("", &d);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("renamed"),
        );
        // A stream with no message at all.
        assert_code(
            write(&mut bs, vec![]).await,
            Code::InvalidArgument,
            &what("no message"),
        );
        // None of these stored anything.
        assert!(!is_present(&mut cas, "", &d).await, "{setup:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_rejects_malformed_names_and_compression() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut bs = server.bs();
        let d = hello();
        for name in malformed_names(&d) {
            let msgs = vec![one_message(&name, 0, b"hello", true)];
            assert_code(
                write(&mut bs, msgs).await,
                Code::InvalidArgument,
                &format!("{setup:?} Write to {name:?}"),
            );
        }
        // A download name is not an upload name.
        let msgs = vec![one_message(&read_name("", &d), 0, b"hello", true)];
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            "download name",
        );
        // deflate is not offered; zstd is, and plain bytes are not zstd
        // (tests/zstd.rs covers zstd itself).
        for (compressor, code) in [
            ("deflate", Code::Unimplemented),
            ("zstd", Code::InvalidArgument),
        ] {
            let name = format!("uploads/u1/compressed-blobs/{compressor}/{}/5", d.hash);
            let msgs = vec![one_message(&name, 0, b"hello", true)];
            assert_code(
                write(&mut bs, msgs).await,
                code,
                &format!("{setup:?} {name}"),
            );
        }
        server.stop().await;
    }
}

/// One message longer than the server decodes is refused with
/// RESOURCE_EXHAUSTED naming the limit, and the blob is not stored; the same blob in smaller
/// messages is then accepted. A message above tonic's default limit (4 MiB)
/// but within ours is accepted whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_of_a_message_over_the_limit_is_refused_and_stores_nothing() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let within = data(8 * MIB, 9);
        let d = bs_upload(&mut bs, "", &within, within.len()).await;
        assert!(is_present(&mut cas, "", &d).await, "{setup:?}");
        let blob = data(reapi_cas::service::MAX_DECODING_MESSAGE_SIZE + KIB, 7);
        let d = dig(&blob);
        let name = write_name("", &d);
        let result = write(&mut bs, vec![one_message(&name, 0, &blob, true)]).await;
        let status = assert_code(result, Code::ResourceExhausted, "a message over the limit");
        let limit = reapi_cas::service::MAX_DECODING_MESSAGE_SIZE.to_string();
        assert!(status.message().contains(&limit), "{}", status.message());
        assert!(!is_present(&mut cas, "", &d).await, "{setup:?}");
        bs_upload(&mut bs, "", &blob, MIB).await;
        assert_eq!(read_blob(&mut bs, "", &d).await.unwrap(), blob, "{setup:?}");
        server.stop().await;
    }
}

/// Embedders may serve the generated `ByteStreamServer` directly; its Write
/// (the generated message type) must behave like the served one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_server_writes_through_the_same_service() {
    use reapi_cas::service::ByteStreamService;
    use reapi_cas::store::MemoryStore;
    use reapi_core::proto::bytestream::byte_stream_server::ByteStreamServer;

    let store: std::sync::Arc<dyn reapi_core::BlobStore> =
        std::sync::Arc::new(MemoryStore::new(64 * MIB as u64));
    let service = ByteStreamService::new(store.clone(), reapi_core::InstancePolicy::Any);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ByteStreamServer::new(service))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut bs = reapi_core::proto::bytestream::byte_stream_client::ByteStreamClient::new(channel);
    let blob = data(MIB + 5, 8);
    let d = bs_upload(&mut bs, "", &blob, 16 * KIB).await;
    assert_eq!(read_blob(&mut bs, "", &d).await.unwrap(), blob);
    let wrong = one_message(&write_name("", &hello()), 0, b"hellO", true);
    assert_code(
        write(&mut bs, vec![wrong]).await,
        Code::InvalidArgument,
        "bad hash",
    );
    server.abort();
}

// ----------------------------------------- Interrupted and resumed writes ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_ended_before_finish_stores_nothing_and_resumes() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let what = |s: &str| format!("{setup:?}: {s}");
        let blob = data(100 * KIB + 5, 11);
        let d = dig(&blob);
        let name = write_name("", &d);
        let sent = 48 * KIB;

        // Three 16 KiB chunks, then the client ends the stream.
        let msgs = write_msgs(&name, &blob[..sent], 0, 16 * KIB, false);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("no finish"),
        );
        assert!(!is_present(&mut cas, "", &d).await, "{setup:?}");
        assert_code(
            read_blob(&mut bs, "", &d).await,
            Code::NotFound,
            &what("read"),
        );

        let status = query_write_status(&mut bs, &name).await.unwrap();
        assert_eq!(status.committed_size, sent as i64, "{setup:?}");
        assert!(!status.complete);

        // A resume at the wrong offset is refused and keeps the upload.
        let msgs = write_msgs(&name, &blob, sent - 16 * KIB, 16 * KIB, true);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("bad resume"),
        );
        let status = query_write_status(&mut bs, &name).await.unwrap();
        assert_eq!(status.committed_size, sent as i64, "{setup:?}");

        // Another partial piece, then the rest.
        let msgs = write_msgs(&name, &blob[..sent + 16 * KIB], sent, 16 * KIB, false);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            &what("no finish 2"),
        );
        let status = query_write_status(&mut bs, &name).await.unwrap();
        assert_eq!(status.committed_size, (sent + 16 * KIB) as i64, "{setup:?}");
        let msgs = write_msgs(&name, &blob, sent + 16 * KIB, 16 * KIB, true);
        assert_eq!(
            write(&mut bs, msgs).await.unwrap(),
            blob.len() as i64,
            "{setup:?}"
        );

        assert!(is_present(&mut cas, "", &d).await);
        assert_eq!(read_blob(&mut bs, "", &d).await.unwrap(), blob);
        let status = query_write_status(&mut bs, &name).await.unwrap();
        assert_eq!(status.committed_size, blob.len() as i64);
        assert!(status.complete, "{setup:?}");
        server.stop().await;
    }
}

/// A Write marked one-shot (how the cluster CAS writes to its members) is
/// not kept when it ends before `finish_write`: nothing waits for a resume
/// that will not come, and its temporary file goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_write_ended_before_finish_is_not_kept() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let blob = data(100 * KIB + 5, 13);
        let d = dig(&blob);
        let name = write_name("", &d);
        let mut request = tonic::Request::new(futures::stream::iter(write_msgs(
            &name,
            &blob[..48 * KIB],
            0,
            16 * KIB,
            false,
        )));
        request.metadata_mut().insert(
            reapi_cas::service::bytestream::ONE_SHOT_UPLOAD_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        assert_code(
            bs.write(request).await,
            Code::InvalidArgument,
            &format!("{setup:?}: no finish"),
        );
        assert_code(
            query_write_status(&mut bs, &name).await,
            Code::NotFound,
            &format!("{setup:?}: the upload was not kept"),
        );
        assert!(!is_present(&mut cas, "", &d).await, "{setup:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_can_restart_at_zero() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let blob = data(100 * KIB, 12);
        let d = dig(&blob);
        let name = write_name("", &d);
        let msgs = write_msgs(&name, &blob[..32 * KIB], 0, 16 * KIB, false);
        assert_code(
            write(&mut bs, msgs).await,
            Code::InvalidArgument,
            "no finish",
        );
        // Start over under the same name, from 0.
        let msgs = write_msgs(&name, &blob, 0, 16 * KIB, true);
        assert_eq!(
            write(&mut bs, msgs).await.unwrap(),
            blob.len() as i64,
            "{setup:?}"
        );
        assert_eq!(read_blob(&mut bs, "", &d).await.unwrap(), blob);
        assert!(is_present(&mut cas, "", &d).await);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_write_status_of_unknown_and_completed_uploads() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let d = absent_digest(1);
        assert_code(
            query_write_status(&mut bs, &write_name("", &d)).await,
            Code::NotFound,
            &format!("{setup:?} unknown upload"),
        );
        // A blob stored by any means is complete, whatever the upload uuid.
        let stored = upload_one(&mut cas, "", b"stored by batch").await;
        let status = query_write_status(&mut bs, &write_name("", &stored))
            .await
            .unwrap();
        assert!(status.complete, "{setup:?}");
        assert_eq!(status.committed_size, stored.size_bytes);
        // The empty blob is always complete.
        let status = query_write_status(&mut bs, &write_name("", &empty_digest()))
            .await
            .unwrap();
        assert!(status.complete, "{setup:?}");
        assert_eq!(status.committed_size, 0);
        for name in malformed_names(&d) {
            assert_code(
                query_write_status(&mut bs, &name).await,
                Code::InvalidArgument,
                &format!("{setup:?} QueryWriteStatus {name:?}"),
            );
        }
        assert_code(
            query_write_status(&mut bs, &read_name("", &d)).await,
            Code::InvalidArgument,
            "QueryWriteStatus of a download name",
        );
        server.stop().await;
    }
}

/// Starts a Write whose client stream stays open; the sender feeds it.
fn open_write(
    bs: &Bs,
) -> (
    tokio::sync::mpsc::Sender<WriteRequest>,
    tokio::task::JoinHandle<Result<i64, tonic::Status>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut bs = bs.clone();
    let call = tokio::spawn(async move {
        Ok(bs
            .write(ReceiverStream::new(rx))
            .await?
            .into_inner()
            .committed_size)
    });
    (tx, call)
}

/// How a client disappears in the middle of a Write.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The call is dropped with its stream still open: HTTP/2 RST_STREAM.
    ResetStream,
    /// The client process dies: its runtime and TCP connection go away.
    CloseConnection,
}

/// Sends `msgs` on a Write that is never finished, then cuts it off.
async fn write_and_cut(server: &Server, msgs: Vec<WriteRequest>, cut: Cut) {
    match cut {
        Cut::ResetStream => {
            let (tx, call) = open_write(&server.bs());
            for msg in msgs {
                tx.send(msg).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            call.abort();
            let _ = call.await;
            drop(tx);
        }
        Cut::CloseConnection => {
            let addr = server.addr;
            let client = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                        .unwrap()
                        .connect()
                        .await
                        .unwrap();
                    let bs =
                        reapi_core::proto::bytestream::byte_stream_client::ByteStreamClient::new(
                            channel,
                        );
                    let (tx, _call) = open_write(&bs);
                    for msg in msgs {
                        tx.send(msg).await.unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // Returning leaves the call pending; dropping the runtime
                    // below drops it with the connection.
                    std::mem::forget(tx);
                });
                drop(runtime);
            });
            tokio::task::spawn_blocking(move || client.join().unwrap())
                .await
                .unwrap();
        }
    }
}

/// A client that disappears mid-upload must leave nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_cut_midway_stores_nothing() {
    for setup in Setup::ALL {
        for cut in [Cut::ResetStream, Cut::CloseConnection] {
            let server = Server::start(setup).await;
            let (mut bs, mut cas) = (server.bs(), server.cas());
            let blob = data(256 * KIB, 13);
            let d = dig(&blob);
            let name = write_name("", &d);
            let msgs = write_msgs(&name, &blob[..64 * KIB], 0, 16 * KIB, false);
            write_and_cut(&server, msgs, cut).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!is_present(&mut cas, "", &d).await, "{setup:?} {cut:?}");
            assert_code(
                read_blob(&mut bs, "", &d).await,
                Code::NotFound,
                &format!("{setup:?} {cut:?} read"),
            );
            // And it can be uploaded afresh.
            bs_upload(&mut bs, "", &blob, 16 * KIB).await;
            server.stop().await;
        }
    }
}

/// ByteStream's resumable upload exists for broken connections: after the
/// client's call is cut off, QueryWriteStatus must report the bytes
/// received and a Write at that offset must finish the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_cut_midway_can_be_resumed() {
    for setup in Setup::ALL {
        for cut in [Cut::ResetStream, Cut::CloseConnection] {
            let server = Server::start(setup).await;
            let (mut bs, mut cas) = (server.bs(), server.cas());
            let blob = data(256 * KIB, 14);
            let d = dig(&blob);
            let name = write_name("", &d);
            let sent = 64 * KIB;
            let msgs = write_msgs(&name, &blob[..sent], 0, 16 * KIB, false);
            write_and_cut(&server, msgs, cut).await;

            let status = poll_write_status(&mut bs, &name, Duration::from_secs(3))
                .await
                .unwrap_or_else(|s| {
                    panic!(
                        "{setup:?} {cut:?}: QueryWriteStatus after the Write was cut off: {:?} {}",
                        s.code(),
                        s.message()
                    )
                });
            assert!(!status.complete);
            let committed = status.committed_size as usize;
            assert!(committed <= sent, "{setup:?} {cut:?}: {committed} > {sent}");
            assert!(!is_present(&mut cas, "", &d).await);
            let msgs = write_msgs(&name, &blob, committed, 16 * KIB, true);
            assert_eq!(
                write(&mut bs, msgs).await.unwrap(),
                blob.len() as i64,
                "{setup:?} {cut:?}"
            );
            assert!(is_present(&mut cas, "", &d).await);
            assert_eq!(read_blob(&mut bs, "", &d).await.unwrap(), blob);
            server.stop().await;
        }
    }
}

/// QueryWriteStatus is for "a resource that is being written": while a
/// Write stream is open it reports the bytes received so far, not NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_write_status_during_an_open_write() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut bs = server.bs();
        let blob = data(64 * KIB, 15);
        let d = dig(&blob);
        let name = write_name("", &d);
        let (tx, call) = open_write(&bs);
        for msg in write_msgs(&name, &blob[..32 * KIB], 0, 16 * KIB, false) {
            tx.send(msg).await.unwrap();
        }
        // Poll until the server has taken in both chunks (or gives up).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let status = loop {
            let status = query_write_status(&mut bs, &name).await;
            let done = matches!(&status, Ok(s) if s.committed_size >= 32 * KIB as i64);
            if done || tokio::time::Instant::now() >= deadline {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Finish the upload whatever the answer was.
        for msg in write_msgs(&name, &blob, 32 * KIB, 16 * KIB, true) {
            tx.send(msg).await.unwrap();
        }
        drop(tx);
        assert_eq!(call.await.unwrap().unwrap(), blob.len() as i64);
        let status = status.unwrap_or_else(|s| {
            panic!(
                "{setup:?}: QueryWriteStatus during an open Write with 32 KiB received: {:?} {}",
                s.code(),
                s.message()
            )
        });
        assert_eq!(status.committed_size, 32 * KIB as i64, "{setup:?}");
        assert!(!status.complete);
        server.stop().await;
    }
}

// ------------------------------------------------------------------ Read ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ranges() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let (mut bs, mut cas) = (server.bs(), server.cas());
        let blob = data(10_000, 16);
        let d = upload_one(&mut cas, "", &blob).await;
        let name = read_name("", &d);
        let size = blob.len() as i64;
        let cases: [(i64, i64, &[u8]); 10] = [
            (0, 0, &blob),
            (1234, 0, &blob[1234..]),
            (1234, 100, &blob[1234..1334]),
            (0, 1, &blob[..1]),
            (size - 1, 0, &blob[blob.len() - 1..]),
            (9_000, 5_000, &blob[9_000..]),
            (0, size + 1, &blob),
            (size, 0, b""),
            (0, i64::MAX, &blob),
            (size, i64::MAX, b""),
        ];
        for (offset, limit, expected) in cases {
            let got = read(&mut bs, &name, offset, limit).await.unwrap();
            assert_eq!(got, expected, "{setup:?} offset {offset} limit {limit}");
        }
        let what = |s: &str| format!("{setup:?}: {s}");
        assert_code(
            read(&mut bs, &name, size + 1, 0).await,
            Code::OutOfRange,
            &what("past end"),
        );
        assert_code(
            read(&mut bs, &name, -1, 0).await,
            Code::OutOfRange,
            &what("negative offset"),
        );
        assert_code(
            read(&mut bs, &name, 0, -1).await,
            Code::InvalidArgument,
            &what("negative limit"),
        );
        // The empty blob, never uploaded, reads as empty.
        let empty = read_name("", &empty_digest());
        assert!(
            read(&mut bs, &empty, 0, 0).await.unwrap().is_empty(),
            "{setup:?}"
        );
        assert_code(
            read(&mut bs, &empty, 1, 0).await,
            Code::OutOfRange,
            &what("empty+1"),
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_errors() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut bs = server.bs();
        let what = |s: &str| format!("{setup:?}: {s}");
        let d = absent_digest(1);
        assert_code(
            read_blob(&mut bs, "", &d).await,
            Code::NotFound,
            &what("missing"),
        );
        assert_code(
            read(&mut bs, &read_name("", &d), 10, 5).await,
            Code::NotFound,
            &what("missing with offset"),
        );
        for name in malformed_names(&hello()) {
            assert_code(
                read(&mut bs, &name, 0, 0).await,
                Code::InvalidArgument,
                &what(&format!("Read {name:?}")),
            );
        }
        // An upload name is not a download name.
        assert_code(
            read(&mut bs, &write_name("", &hello()), 0, 0).await,
            Code::InvalidArgument,
            &what("upload name"),
        );
        let h = hello().hash;
        for name in [
            format!("compressed-blobs/deflate/{h}/5"),
            format!("main/compressed-blobs/deflate/{h}/5"),
        ] {
            assert_code(
                read(&mut bs, &name, 0, 0).await,
                Code::Unimplemented,
                &what(&name),
            );
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_read_arrives_in_bounded_chunks() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        let mut bs = server.bs();
        let blob = data(20 * MIB + 123, 17);
        let d = bs_upload(&mut bs, "", &blob, 3 * MIB).await;
        let name = read_name("", &d);
        let chunks = read_chunks(&mut bs, &name, 0, 0).await.unwrap();
        assert!(chunks.len() >= 21, "{setup:?}: {} chunks", chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            assert!(
                chunk.len() <= MAX_READ_CHUNK,
                "{setup:?}: chunk {i} has {} bytes",
                chunk.len()
            );
        }
        assert!(chunks.concat() == blob, "{setup:?}: content differs");
        // A range across chunk boundaries.
        let (offset, limit) = (MIB as i64 - 10, 5 * MIB as i64 + 20);
        let part = read(&mut bs, &name, offset, limit).await.unwrap();
        assert!(
            part == blob[offset as usize..(offset + limit) as usize],
            "{setup:?}: range differs"
        );
        server.stop().await;
    }
}

/// A disk fault (here the store's temp directory replaced by a file) is
/// INTERNAL with an error id, and the client learns none of the server's
/// paths: they stay in the server's log.
#[tokio::test]
async fn disk_faults_reach_clients_without_the_servers_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::disk_at(dir.path(), 1 << 30, None).await;
    let (mut bs, mut cas) = (server.bs(), server.cas());
    let tmp = dir.path().join("cas").join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let server_dir = dir.path().to_str().unwrap().to_owned();

    let big = data(2 * MIB, 77);
    let streamed = write(
        &mut bs,
        write_msgs(&write_name("", &dig(&big)), &big, 0, 64 * KIB, true),
    )
    .await
    .unwrap_err();
    let small = data(100, 78);
    let batched = cas
        .batch_update_blobs(reapi_test_support::cas::update_request("", &[&small]))
        .await
        .unwrap()
        .into_inner()
        .responses
        .remove(0)
        .status
        .unwrap();
    for (what, code, message) in [
        (
            "Write",
            streamed.code() as i32,
            streamed.message().to_owned(),
        ),
        ("BatchUpdateBlobs", batched.code, batched.message),
    ] {
        assert_eq!(code, Code::Internal as i32, "{what}: {message}");
        assert!(
            !message.contains(&server_dir),
            "{what} leaks a path: {message}"
        );
        assert!(message.contains("<path>"), "{what}: {message}");
        assert!(message.contains("error id"), "{what}: {message}");
    }
    assert!(!is_present(&mut cas, "", &dig(&big)).await);
    assert!(!is_present(&mut cas, "", &dig(&small)).await);
    drop((bs, cas));
    server.stop().await;
}
