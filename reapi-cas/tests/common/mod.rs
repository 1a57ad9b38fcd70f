//! Shared harness for the storage-service integration tests: servers on
//! loopback over real gRPC, clients, and helpers for digests, blobs,
//! ByteStream names and the common calls.
//!
//! Every test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use reapi_cas::action_cache::{CompletenessCheckingActionCache, MemoryActionCache};
use reapi_cas::config::StorageConfig;
use reapi_cas::service::StorageServices;
use reapi_cas::store::MemoryStore;
use reapi_core::proto::bytestream::byte_stream_client::ByteStreamClient;
use reapi_core::proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, WriteRequest,
};
use reapi_core::proto::remote_execution as re;
use reapi_core::proto::remote_execution::action_cache_client::ActionCacheClient;
use reapi_core::proto::remote_execution::capabilities_client::CapabilitiesClient;
use reapi_core::proto::remote_execution::content_addressable_storage_client::ContentAddressableStorageClient;
use reapi_core::{ActionCache, BlobStore, InstancePolicy};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

pub use re::Digest as PDigest;

pub type Cas = ContentAddressableStorageClient<Channel>;
pub type Bs = ByteStreamClient<Channel>;
pub type Ac = ActionCacheClient<Channel>;
pub type Caps = CapabilitiesClient<Channel>;

/// `max_batch_total_size_bytes` the server must advertise and enforce.
pub const MAX_BATCH: usize = 4 * 1024 * 1024;
/// Largest `ReadResponse.data` the server may send.
pub const MAX_READ_CHUNK: usize = 1024 * 1024;
/// Client message limits: far above anything the tests send or receive.
const CLIENT_MESSAGE_LIMIT: usize = 256 * 1024 * 1024;
/// Store budget when a test does not care about eviction.
pub const LARGE_BUDGET: u64 = 1 << 30;

/// Which store composition a server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `StorageConfig::open`: DiskStore + DiskActionCache behind
    /// CompletenessCheckingActionCache (production).
    Disk,
    /// MemoryStore + MemoryActionCache behind CompletenessCheckingActionCache.
    Memory,
}

impl Setup {
    pub const ALL: [Setup; 2] = [Setup::Disk, Setup::Memory];
}

/// A server on 127.0.0.1 and a channel to it. Dropping it leaves the server
/// task running until the test's runtime ends; call [`Server::stop`] to
/// shut it down and release its stores.
pub struct Server {
    pub setup: Setup,
    pub addr: SocketAddr,
    pub channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// The data directory of a disk server started by [`Server::start`].
    _dir: Option<TempDir>,
}

impl Server {
    /// A server with any instance name allowed and a large budget.
    pub async fn start(setup: Setup) -> Server {
        Server::start_with(setup, LARGE_BUDGET, None).await
    }

    /// A server with a given store budget and instance list. The disk setup
    /// gets a fresh temporary data directory owned by the server.
    pub async fn start_with(setup: Setup, budget: u64, instances: Option<Vec<&str>>) -> Server {
        let instances: Option<Vec<String>> =
            instances.map(|v| v.into_iter().map(str::to_owned).collect());
        match setup {
            Setup::Disk => {
                let dir = tempfile::tempdir().expect("temp dir");
                let mut server = Server::disk_at(dir.path(), budget, instances).await;
                server._dir = Some(dir);
                server
            }
            Setup::Memory => {
                let policy = match instances {
                    None => InstancePolicy::Any,
                    Some(names) => InstancePolicy::only(names),
                };
                Server::serve(Setup::Memory, memory_services(budget, policy)).await
            }
        }
    }

    /// The production composition on `data_dir`, which the caller owns (so
    /// a test can stop the server and open the same directory again).
    pub async fn disk_at(
        data_dir: &Path,
        disk_size: u64,
        instances: Option<Vec<String>>,
    ) -> Server {
        let storage = StorageConfig {
            data_dir: data_dir.to_path_buf(),
            disk_size,
            instances,
            ..Default::default()
        }
        .open()
        .await
        .expect("opening the storage");
        let services = storage.services();
        drop(storage);
        Server::serve(Setup::Disk, services).await
    }

    /// Serves `services` on a fresh loopback port.
    pub async fn serve(setup: Setup, services: StorageServices) -> Server {
        let mut routes = tonic::service::RoutesBuilder::default();
        services.add_to(&mut routes);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_routes(routes.routes())
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("server failed");
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        Server {
            setup,
            addr,
            channel,
            shutdown: Some(shutdown),
            task,
            _dir: None,
        }
    }

    pub fn cas(&self) -> Cas {
        ContentAddressableStorageClient::new(self.channel.clone())
            .max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
            .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
    }

    pub fn bs(&self) -> Bs {
        ByteStreamClient::new(self.channel.clone())
            .max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
            .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
    }

    pub fn ac(&self) -> Ac {
        ActionCacheClient::new(self.channel.clone())
            .max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
            .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
    }

    pub fn caps(&self) -> Caps {
        CapabilitiesClient::new(self.channel.clone())
    }

    /// Shuts the server down and waits for it, so its stores are dropped.
    /// Clients made from it should be dropped first.
    pub async fn stop(mut self) {
        drop(self.channel);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }
}

/// MemoryStore + MemoryActionCache behind the completeness check.
pub fn memory_services(budget: u64, instances: InstancePolicy) -> StorageServices {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(budget));
    let results: Arc<dyn ActionCache> = Arc::new(MemoryActionCache::new(64 << 20));
    let action_cache: Arc<dyn ActionCache> =
        Arc::new(CompletenessCheckingActionCache::new(results, store.clone()));
    StorageServices {
        store,
        action_cache,
        instances,
        execution: None,
    }
}

// ---------------------------------------------------------------- data ---

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The SHA-256 digest of `bytes`, as the protocol message.
pub fn dig(bytes: &[u8]) -> PDigest {
    reapi_core::Digest::of_bytes(bytes).to_proto()
}

/// Digest of an encoded message.
pub fn dig_msg<M: Message>(message: &M) -> PDigest {
    dig(&message.encode_to_vec())
}

pub fn empty_digest() -> PDigest {
    dig(b"")
}

/// A 64-hex-character hash nobody stores.
pub fn absent_digest(seed: u64) -> PDigest {
    dig(format!("absent blob {seed}").as_bytes())
}

pub fn sha256() -> i32 {
    re::digest_function::Value::Sha256 as i32
}

pub fn md5() -> i32 {
    re::digest_function::Value::Md5 as i32
}

// -------------------------------------------------------------- status ---

/// Asserts `result` failed with `code`; returns the status.
#[track_caller]
pub fn assert_code<T: Debug>(result: Result<T, Status>, code: Code, what: &str) -> Status {
    match result {
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "{what}: wrong code; message: {}",
                status.message()
            );
            status
        }
    }
}

/// Code of a per-blob `google.rpc.Status`.
pub fn rpc_code(status: &Option<reapi_core::proto::rpc::Status>) -> Code {
    Code::from_i32(status.as_ref().map_or(0, |s| s.code))
}

// ------------------------------------------------------------------ CAS ---

/// Digests absent from the CAS, in the order the server returned them.
pub async fn find_missing(cas: &mut Cas, instance: &str, digests: &[PDigest]) -> Vec<PDigest> {
    try_find_missing(cas, instance, digests)
        .await
        .expect("FindMissingBlobs")
}

pub async fn try_find_missing(
    cas: &mut Cas,
    instance: &str,
    digests: &[PDigest],
) -> Result<Vec<PDigest>, Status> {
    Ok(cas
        .find_missing_blobs(re::FindMissingBlobsRequest {
            instance_name: instance.into(),
            blob_digests: digests.to_vec(),
            digest_function: sha256(),
        })
        .await?
        .into_inner()
        .missing_blob_digests)
}

/// Whether one blob is present.
pub async fn is_present(cas: &mut Cas, instance: &str, digest: &PDigest) -> bool {
    find_missing(cas, instance, std::slice::from_ref(digest))
        .await
        .is_empty()
}

pub fn update_request(instance: &str, blobs: &[&[u8]]) -> re::BatchUpdateBlobsRequest {
    re::BatchUpdateBlobsRequest {
        instance_name: instance.into(),
        requests: blobs
            .iter()
            .map(|b| re::batch_update_blobs_request::Request {
                digest: Some(dig(b)),
                data: b.to_vec(),
                compressor: 0,
            })
            .collect(),
        digest_function: sha256(),
    }
}

/// Uploads blobs with BatchUpdateBlobs and asserts each succeeded; returns
/// their digests.
pub async fn upload(cas: &mut Cas, instance: &str, blobs: &[&[u8]]) -> Vec<PDigest> {
    let responses = cas
        .batch_update_blobs(update_request(instance, blobs))
        .await
        .expect("BatchUpdateBlobs")
        .into_inner()
        .responses;
    assert_eq!(responses.len(), blobs.len());
    for (blob, response) in blobs.iter().zip(&responses) {
        assert_eq!(response.digest.as_ref(), Some(&dig(blob)));
        assert_eq!(rpc_code(&response.status), Code::Ok, "{response:?}");
    }
    blobs.iter().map(|b| dig(b)).collect()
}

pub async fn upload_one(cas: &mut Cas, instance: &str, blob: &[u8]) -> PDigest {
    upload(cas, instance, &[blob]).await.remove(0)
}

/// Uploads an encoded message; returns its digest.
pub async fn upload_msg<M: Message>(cas: &mut Cas, instance: &str, message: &M) -> PDigest {
    upload_one(cas, instance, &message.encode_to_vec()).await
}

pub async fn batch_read(
    cas: &mut Cas,
    instance: &str,
    digests: &[PDigest],
) -> Result<Vec<re::batch_read_blobs_response::Response>, Status> {
    Ok(cas
        .batch_read_blobs(re::BatchReadBlobsRequest {
            instance_name: instance.into(),
            digests: digests.to_vec(),
            acceptable_compressors: vec![],
            digest_function: sha256(),
        })
        .await?
        .into_inner()
        .responses)
}

pub fn tree_request(
    instance: &str,
    root: &PDigest,
    page_size: i32,
    token: &str,
) -> re::GetTreeRequest {
    re::GetTreeRequest {
        instance_name: instance.into(),
        root_digest: Some(root.clone()),
        page_size,
        page_token: token.into(),
        digest_function: sha256(),
    }
}

/// Every page of a GetTree stream; an error whether it comes at the call or
/// in the stream.
pub async fn get_tree(
    cas: &mut Cas,
    request: re::GetTreeRequest,
) -> Result<Vec<re::GetTreeResponse>, Status> {
    let mut stream = cas.get_tree(request).await?.into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await? {
        pages.push(page);
    }
    Ok(pages)
}

// ------------------------------------------------------------ ByteStream ---

fn prefix(instance: &str) -> String {
    if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    }
}

/// `{instance}/blobs/{hash}/{size}`.
pub fn read_name(instance: &str, d: &PDigest) -> String {
    format!("{}blobs/{}/{}", prefix(instance), d.hash, d.size_bytes)
}

/// `{instance}/uploads/{uuid}/blobs/{hash}/{size}` with a fresh uuid.
pub fn write_name(instance: &str, d: &PDigest) -> String {
    write_name_uuid(instance, &uuid::Uuid::new_v4().to_string(), d)
}

pub fn write_name_uuid(instance: &str, uuid: &str, d: &PDigest) -> String {
    format!(
        "{}uploads/{uuid}/blobs/{}/{}",
        prefix(instance),
        d.hash,
        d.size_bytes
    )
}

/// Write messages for `data[start..]` in `chunk`-byte pieces, the first
/// naming the resource (as Bazel does), the last with `finish_write` when
/// `finish`. Empty data gives one empty message.
pub fn write_msgs(
    name: &str,
    data: &[u8],
    start: usize,
    chunk: usize,
    finish: bool,
) -> Vec<WriteRequest> {
    let mut msgs = Vec::new();
    let mut offset = start;
    loop {
        let end = (offset + chunk).min(data.len());
        msgs.push(WriteRequest {
            resource_name: if msgs.is_empty() {
                name.to_owned()
            } else {
                String::new()
            },
            write_offset: offset as i64,
            finish_write: false,
            data: data[offset..end].to_vec(),
        });
        offset = end;
        if offset >= data.len() {
            break;
        }
    }
    msgs.last_mut().unwrap().finish_write = finish;
    msgs
}

/// Sends the messages as one Write stream; the committed size.
pub async fn write(bs: &mut Bs, msgs: Vec<WriteRequest>) -> Result<i64, Status> {
    Ok(bs
        .write(futures::stream::iter(msgs))
        .await?
        .into_inner()
        .committed_size)
}

/// Uploads a whole blob with ByteStream in `chunk`-byte pieces; asserts the
/// committed size and returns the digest.
pub async fn bs_upload(bs: &mut Bs, instance: &str, blob: &[u8], chunk: usize) -> PDigest {
    let d = dig(blob);
    let committed = write(
        bs,
        write_msgs(&write_name(instance, &d), blob, 0, chunk, true),
    )
    .await
    .expect("ByteStream Write");
    assert_eq!(committed, blob.len() as i64);
    d
}

pub async fn query_write_status(
    bs: &mut Bs,
    name: &str,
) -> Result<QueryWriteStatusResponse, Status> {
    Ok(bs
        .query_write_status(QueryWriteStatusRequest {
            resource_name: name.into(),
        })
        .await?
        .into_inner())
}

/// The `data` of every ReadResponse; an error whether it comes at the call
/// or in the stream.
pub async fn read_chunks(
    bs: &mut Bs,
    name: &str,
    offset: i64,
    limit: i64,
) -> Result<Vec<Vec<u8>>, Status> {
    let mut stream = bs
        .read(ReadRequest {
            resource_name: name.into(),
            read_offset: offset,
            read_limit: limit,
        })
        .await?
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(response) = stream.message().await? {
        chunks.push(response.data);
    }
    Ok(chunks)
}

pub async fn read(bs: &mut Bs, name: &str, offset: i64, limit: i64) -> Result<Vec<u8>, Status> {
    Ok(read_chunks(bs, name, offset, limit).await?.concat())
}

/// Reads a whole blob by digest.
pub async fn read_blob(bs: &mut Bs, instance: &str, d: &PDigest) -> Result<Vec<u8>, Status> {
    read(bs, &read_name(instance, d), 0, 0).await
}

// ----------------------------------------------------------- ActionCache ---

pub async fn get_result(
    ac: &mut Ac,
    instance: &str,
    action: &PDigest,
) -> Result<re::ActionResult, Status> {
    get_result_with(
        ac,
        re::GetActionResultRequest {
            instance_name: instance.into(),
            action_digest: Some(action.clone()),
            digest_function: sha256(),
            ..Default::default()
        },
    )
    .await
}

pub async fn get_result_with(
    ac: &mut Ac,
    request: re::GetActionResultRequest,
) -> Result<re::ActionResult, Status> {
    Ok(ac.get_action_result(request).await?.into_inner())
}

pub async fn update_result(
    ac: &mut Ac,
    instance: &str,
    action: &PDigest,
    result: &re::ActionResult,
) -> Result<re::ActionResult, Status> {
    Ok(ac
        .update_action_result(re::UpdateActionResultRequest {
            instance_name: instance.into(),
            action_digest: Some(action.clone()),
            action_result: Some(result.clone()),
            results_cache_policy: None,
            digest_function: sha256(),
        })
        .await?
        .into_inner())
}

/// An ActionResult naming one output file and stdout/stderr.
pub fn simple_result(output: &PDigest, stdout: &PDigest, stderr: &PDigest) -> re::ActionResult {
    re::ActionResult {
        output_files: vec![re::OutputFile {
            path: "out/a".into(),
            digest: Some(output.clone()),
            ..Default::default()
        }],
        exit_code: 0,
        stdout_digest: Some(stdout.clone()),
        stderr_digest: Some(stderr.clone()),
        ..Default::default()
    }
}

/// A digest for use as an action key (never needs to be in the CAS).
pub fn action_key(name: &str) -> PDigest {
    dig(format!("action {name}").as_bytes())
}

/// Polls QueryWriteStatus until it answers something other than NOT_FOUND
/// or `timeout` passes; the last answer.
pub async fn poll_write_status(
    bs: &mut Bs,
    name: &str,
    timeout: Duration,
) -> Result<QueryWriteStatusResponse, Status> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = query_write_status(bs, name).await;
        let not_found = matches!(&status, Err(s) if s.code() == Code::NotFound);
        if !not_found || tokio::time::Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
