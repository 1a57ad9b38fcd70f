//! The Remote Asset API's gRPC services: Fetch (FetchBlob, FetchDirectory)
//! and Push (PushBlob, PushDirectory).
//!
//! Malformed requests (no URI, unsupported qualifiers, another digest
//! function) are refused as RPC errors. A fetch that could not be done is an
//! answer, not an RPC error, as the spec says: FetchBlobResponse.status
//! carries its code (NOT_FOUND, PERMISSION_DENIED, DEADLINE_EXCEEDED,
//! RESOURCE_EXHAUSTED, ABORTED) and the URI it came from.

use std::sync::Arc;

use reapi_core::proto::protobuf::Timestamp;
use reapi_core::proto::remote_asset as re_asset;
use reapi_core::proto::remote_asset::fetch_server::{Fetch, FetchServer};
use reapi_core::proto::remote_asset::push_server::{Push, PushServer};
use reapi_core::proto::remote_execution as re;
use reapi_core::proto::time;
use reapi_core::{ActionCache, BlobStore, Digest, DigestFunction, Error, InstancePolicy, Result};
use tonic::service::RoutesBuilder;
use tonic::{Code, Request, Response, Status};

use super::associations::{AssetKind, Associations, Found};
use super::fetch::Fetcher;
use super::qualifiers::{self, Qualifiers};
use crate::service::MAX_DECODING_MESSAGE_SIZE;

/// The Remote Asset services over a CAS and an action cache (which keeps
/// the associations).
#[derive(Clone)]
pub struct AssetServices {
    store: Arc<dyn BlobStore>,
    associations: Arc<Associations>,
    instances: InstancePolicy,
    /// `None`: FetchBlob answers only from associations.
    fetcher: Option<Arc<Fetcher>>,
}

impl AssetServices {
    pub fn new(
        store: Arc<dyn BlobStore>,
        action_cache: Arc<dyn ActionCache>,
        instances: InstancePolicy,
        fetcher: Option<Arc<Fetcher>>,
    ) -> AssetServices {
        AssetServices {
            store,
            associations: Arc::new(Associations::new(action_cache)),
            instances,
            fetcher,
        }
    }

    /// The services fetching under `policy` (`None`: never fetching).
    pub fn with_policy(
        store: Arc<dyn BlobStore>,
        action_cache: Arc<dyn ActionCache>,
        instances: InstancePolicy,
        policy: Option<super::FetchPolicy>,
    ) -> Result<AssetServices> {
        let fetcher = match policy {
            Some(policy) => Some(Arc::new(Fetcher::new(policy, store.clone())?)),
            None => None,
        };
        Ok(AssetServices::new(store, action_cache, instances, fetcher))
    }

    /// Adds Fetch and Push to `routes`.
    pub fn add_to(self, routes: &mut RoutesBuilder) {
        routes.add_service(
            FetchServer::new(self.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
        );
        routes.add_service(
            PushServer::new(self).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
        );
    }

    /// The checks every request gets: a known instance, at least one URI,
    /// a digest function we serve (returned), supported qualifiers.
    fn check(
        &self,
        instance: &str,
        uris: &[String],
        qualifiers: &[re_asset::Qualifier],
        digest_function: i32,
    ) -> Result<(DigestFunction, Qualifiers)> {
        self.instances.check(instance)?;
        if uris.is_empty() || uris.iter().any(String::is_empty) {
            return Err(Error::invalid_argument(
                "at least one URI is required, and none may be empty",
            ));
        }
        let function = DigestFunction::from_proto(digest_function)?;
        let qualifiers = qualifiers::parse(qualifiers)?;
        qualifiers.headers.check_indexes(uris.len())?;
        Ok((function, qualifiers))
    }

    /// Records a push of `digest` (which must be in the CAS) for each URI.
    async fn push(&self, kind: AssetKind, push: Pushed<'_>) -> Result<()> {
        let (function, qualifiers) = self.check(
            push.instance,
            push.uris,
            push.qualifiers,
            push.digest_function,
        )?;
        let (field, what) = match kind {
            AssetKind::Blob => ("blob_digest", "blob"),
            AssetKind::Directory => ("root_directory_digest", "root directory"),
        };
        let digest = Digest::from_proto_field(function, push.digest, field)?;
        let missing = self
            .store
            .find_missing(push.instance, std::slice::from_ref(&digest))
            .await?;
        if !missing.is_empty() {
            return Err(Error::failed_precondition(format!(
                "{what} {digest} is not in the CAS: upload it before pushing"
            )));
        }
        for uri in push.uris {
            self.associations
                .record(
                    push.instance,
                    kind,
                    uri,
                    &qualifiers.all,
                    &digest,
                    push.expire_at,
                )
                .await?;
        }
        Ok(())
    }

    /// The digest function and checked qualifiers of a fetch, and what is
    /// already known for its URIs.
    async fn known(
        &self,
        kind: AssetKind,
        fetch: Fetched<'_>,
    ) -> Result<(DigestFunction, Qualifiers, Option<Found>)> {
        let (function, qualifiers) = self.check(
            fetch.instance,
            fetch.uris,
            fetch.qualifiers,
            fetch.digest_function,
        )?;
        let found = self
            .associations
            .lookup(
                fetch.instance,
                function,
                kind,
                fetch.uris,
                &qualifiers.all,
                fetch.oldest_accepted,
            )
            .await?;
        Ok((function, qualifiers, found))
    }
}

/// The fields every push request has.
struct Pushed<'a> {
    instance: &'a str,
    uris: &'a [String],
    qualifiers: &'a [re_asset::Qualifier],
    digest_function: i32,
    digest: Option<&'a re::Digest>,
    expire_at: Option<Timestamp>,
}

/// The fields every fetch request has.
struct Fetched<'a> {
    instance: &'a str,
    uris: &'a [String],
    qualifiers: &'a [re_asset::Qualifier],
    digest_function: i32,
    oldest_accepted: Option<&'a Timestamp>,
}

fn status_of(e: &Error) -> re_asset::FetchBlobResponse {
    re_asset::FetchBlobResponse {
        status: Some(reapi_core::proto::rpc::Status {
            code: e.code() as i32,
            message: e.message().to_owned(),
            details: Vec::new(),
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Fetch for AssetServices {
    async fn fetch_blob(
        &self,
        request: Request<re_asset::FetchBlobRequest>,
    ) -> std::result::Result<Response<re_asset::FetchBlobResponse>, Status> {
        let request = request.into_inner();
        let instance = request.instance_name.as_str();
        let (function, qualifiers, known) = self
            .known(
                AssetKind::Blob,
                Fetched {
                    instance,
                    uris: &request.uris,
                    qualifiers: &request.qualifiers,
                    digest_function: request.digest_function,
                    oldest_accepted: request.oldest_content_accepted.as_ref(),
                },
            )
            .await?;
        if let Some(found) = known {
            return Ok(Response::new(re_asset::FetchBlobResponse {
                status: Some(Default::default()),
                uri: found.uri,
                qualifiers: request.qualifiers,
                expires_at: found.expires_at,
                blob_digest: Some(found.digest.to_proto()),
                digest_function: function.proto_value(),
            }));
        }
        let Some(fetcher) = &self.fetcher else {
            let e = Error::not_found(
                "no blob is known for these URIs, and this server does not fetch \
                 (--asset_fetch_hosts)",
            );
            let mut response = status_of(&e);
            response.uri = request.uris[0].clone();
            return Ok(Response::new(response));
        };
        let timeout = request.timeout.as_ref().and_then(time::duration);
        let mut last = None;
        // Content fetched with the client's headers (its credentials) and
        // no checksum to prove the caller knows it is not remembered, so
        // that it is never an answer to a client without them.
        let remember = qualifiers.checksum.is_some() || qualifiers.headers.is_empty();
        for (index, uri) in request.uris.iter().enumerate() {
            let headers = qualifiers.headers.for_uri(index);
            match fetcher
                .fetch(
                    instance,
                    function,
                    uri,
                    &headers,
                    qualifiers.checksum.as_ref(),
                    timeout,
                )
                .await
            {
                Ok(digest) => {
                    if remember {
                        self.associations
                            .record(
                                instance,
                                AssetKind::Blob,
                                uri,
                                &qualifiers.all,
                                &digest,
                                None,
                            )
                            .await?;
                    }
                    tracing::info!(%uri, %digest, remember, "asset fetched");
                    return Ok(Response::new(re_asset::FetchBlobResponse {
                        status: Some(Default::default()),
                        uri: uri.clone(),
                        qualifiers: request.qualifiers,
                        expires_at: None,
                        blob_digest: Some(digest.to_proto()),
                        digest_function: function.proto_value(),
                    }));
                }
                Err(e) if is_fetch_outcome(&e) => {
                    tracing::info!(%uri, code = ?e.code(), "asset fetch failed: {}", e.message());
                    last = Some((uri.clone(), e));
                }
                // The server's own trouble (its disk, its CAS): an RPC error.
                Err(e) => return Err(e.into()),
            }
        }
        let (uri, e) = last.expect("at least one URI was tried");
        let mut response = status_of(&e);
        response.uri = uri;
        Ok(Response::new(response))
    }

    async fn fetch_directory(
        &self,
        request: Request<re_asset::FetchDirectoryRequest>,
    ) -> std::result::Result<Response<re_asset::FetchDirectoryResponse>, Status> {
        let request = request.into_inner();
        let (function, _, known) = self
            .known(
                AssetKind::Directory,
                Fetched {
                    instance: &request.instance_name,
                    uris: &request.uris,
                    qualifiers: &request.qualifiers,
                    digest_function: request.digest_function,
                    oldest_accepted: request.oldest_content_accepted.as_ref(),
                },
            )
            .await?;
        let response = match known {
            Some(found) => re_asset::FetchDirectoryResponse {
                status: Some(Default::default()),
                uri: found.uri,
                qualifiers: request.qualifiers,
                expires_at: found.expires_at,
                root_directory_digest: Some(found.digest.to_proto()),
                digest_function: function.proto_value(),
            },
            None => re_asset::FetchDirectoryResponse {
                status: Some(reapi_core::proto::rpc::Status {
                    code: Code::NotFound as i32,
                    message: "no directory is known for these URIs: this server fetches \
                              only blobs; push directories with PushDirectory"
                        .into(),
                    details: Vec::new(),
                }),
                uri: request.uris[0].clone(),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }
}

/// Whether a fetch error is the fetch's outcome (reported in the response)
/// rather than the server's failure (an RPC error).
fn is_fetch_outcome(e: &Error) -> bool {
    matches!(
        e.code(),
        Code::NotFound
            | Code::PermissionDenied
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Unavailable
            | Code::InvalidArgument
    )
}

#[tonic::async_trait]
impl Push for AssetServices {
    async fn push_blob(
        &self,
        request: Request<re_asset::PushBlobRequest>,
    ) -> std::result::Result<Response<re_asset::PushBlobResponse>, Status> {
        let request = request.into_inner();
        let push = Pushed {
            instance: &request.instance_name,
            uris: &request.uris,
            qualifiers: &request.qualifiers,
            digest_function: request.digest_function,
            digest: request.blob_digest.as_ref(),
            expire_at: request.expire_at,
        };
        self.push(AssetKind::Blob, push).await?;
        Ok(Response::new(re_asset::PushBlobResponse {}))
    }

    async fn push_directory(
        &self,
        request: Request<re_asset::PushDirectoryRequest>,
    ) -> std::result::Result<Response<re_asset::PushDirectoryResponse>, Status> {
        let request = request.into_inner();
        let push = Pushed {
            instance: &request.instance_name,
            uris: &request.uris,
            qualifiers: &request.qualifiers,
            digest_function: request.digest_function,
            digest: request.root_directory_digest.as_ref(),
            expire_at: request.expire_at,
        };
        self.push(AssetKind::Directory, push).await?;
        Ok(Response::new(re_asset::PushDirectoryResponse {}))
    }
}
