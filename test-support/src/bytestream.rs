//! ByteStream calls and resource names: Read, Write in chunks,
//! QueryWriteStatus.

use std::time::Duration;

use reapi_core::proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, WriteRequest,
};
use tonic::{Code, Status};

use crate::clients::Bs;
use crate::digests::{dig, PDigest};

/// Largest `ReadResponse.data` the server may send.
pub const MAX_READ_CHUNK: usize = 1024 * 1024;

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
