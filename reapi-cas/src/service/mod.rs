//! gRPC services over `Arc<dyn BlobStore>` and `Arc<dyn ActionCache>`:
//! Capabilities, ContentAddressableStorage, ByteStream and ActionCache.

pub mod action_cache;
pub mod action_cache_router;
pub mod auth;
pub mod bytestream;
pub mod bytestream_routes;
mod bytestream_zstd;
pub mod capabilities;
pub mod cas;
pub mod inline;
pub mod listener;
pub mod message_size;
pub mod ops_http;
mod pending_uploads;
pub mod reload;
pub mod rpc_metrics;
pub mod storage;
pub mod tls;

pub use action_cache::ActionCacheService;
pub use bytestream::ByteStreamService;
pub use bytestream_routes::ByteStreamRoutes;
pub use capabilities::{CapabilitiesService, ExecutionSupport};
pub use cas::CasService;
pub use pending_uploads::{MAX_PARKED_PER_INSTANCE, MAX_PARKED_UPLOADS};
pub use storage::StorageServices;

/// Refuses a blob over the store's `max_cas_blob_size_bytes` with
/// INVALID_ARGUMENT, as the REAPI asks, before any of it is received.
pub(crate) fn check_blob_size(
    store: &dyn reapi_core::BlobStore,
    digest: &reapi_core::Digest,
) -> reapi_core::Result<()> {
    match store.max_blob_size() {
        Some(max) if digest.size() > max => Err(reapi_core::Error::invalid_argument(format!(
            "blob {digest} is {} bytes, over this server's max_cas_blob_size_bytes of {max}",
            digest.size()
        ))),
        _ => Ok(()),
    }
}

/// `max_batch_total_size_bytes` advertised to clients. Batch reads are held
/// to it in blob bytes; batch updates in encoded message bytes, plus
/// [`BATCH_MESSAGE_HEADROOM`].
pub const MAX_BATCH_TOTAL_SIZE: usize = 4 * 1024 * 1024;

/// Clients disagree whether the limit counts blob bytes or message bytes;
/// the headroom lets a batch of just under 4 MiB of blob data through with
/// its digests and framing, while one message stays bounded.
pub const BATCH_MESSAGE_HEADROOM: usize = 256 * 1024;

/// Largest gRPC message the servers decode. Above the batch limit so an
/// oversized batch gets our INVALID_ARGUMENT, not a transport error, while
/// still bounding what one message can make us allocate.
pub const MAX_DECODING_MESSAGE_SIZE: usize = 4 * MAX_BATCH_TOTAL_SIZE;

/// HTTP/2 receive windows of our servers and of our clients of other
/// servers. The protocol's default (64 KiB) stalls a 1 MiB message on
/// sixteen window updates; these let one chunk flow whole, while a peer
/// can still make us buffer at most one connection window per connection.
pub const HTTP2_STREAM_WINDOW: u32 = 4 << 20;
pub const HTTP2_CONNECTION_WINDOW: u32 = 16 << 20;

/// Largest data chunk in one ByteStream `ReadResponse`.
pub const MAX_READ_CHUNK: usize = 1024 * 1024;
