//! Who may do what on a gRPC port: one `tower` layer in front of every
//! service checks each call against the grants file ([`grants`]). A call
//! is identified by its bearer token (`authorization: Bearer …`) and/or the
//! client certificate its TLS handshake verified; it needs the permission
//! its method calls for ([`methods`]) on the instance its first request
//! message names ([`first_message`]).
//!
//! Calls without an accepted credential get UNAUTHENTICATED; calls whose
//! credential lacks the permission get PERMISSION_DENIED, and learn
//! nothing of the instance (not even whether it exists). Tokens are never
//! logged: refusals name the grants, not the credential.
//!
//! The grants file is reloaded on change and on SIGHUP, like the TLS files;
//! a file that cannot be loaded keeps the previous grants.

pub mod first_message;
pub mod grants;
pub mod methods;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use prost::Message as _;
use reapi_core::resource_name::{ReadResource, WriteResource};
use reapi_core::Result;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;
use tower::{Layer, Service};

use self::first_message::FirstField;
use self::grants::{Credentials, Grants, Permission, Principal};
use self::methods::{InstanceIn, Need};
use super::reload::Reloadable;

/// Longest instance name echoed back in a refusal.
const ECHOED_NAME: usize = 128;

/// The grants a port enforces, reloadable while it serves.
#[derive(Debug)]
pub struct Authorizer {
    path: PathBuf,
    current: RwLock<Arc<Grants>>,
}

impl Authorizer {
    /// Loads the grants file at `path`; an error says what is wrong where.
    pub fn load(path: &Path) -> Result<Arc<Authorizer>> {
        let grants = Grants::load(path)?;
        Ok(Arc::new(Authorizer {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(grants)),
        }))
    }

    /// Reloads on SIGHUP (when `on_sighup`) and when the file changes.
    pub fn watch(self: &Arc<Self>, poll: Duration, on_sighup: bool) -> Result<()> {
        super::reload::watch(self, poll, on_sighup)
    }

    fn grants(&self) -> Arc<Grants> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Reloadable for Authorizer {
    const WHAT: &'static str = "grants";

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn reload(&self) -> Result<()> {
        let grants = Grants::load(&self.path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(grants);
        Ok(())
    }
}

/// The layer; without an [`Authorizer`] it lets every call through.
#[derive(Clone, Debug, Default)]
pub struct AuthLayer {
    authorizer: Option<Arc<Authorizer>>,
}

impl AuthLayer {
    pub fn new(authorizer: Option<Arc<Authorizer>>) -> AuthLayer {
        AuthLayer { authorizer }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authorizer: self.authorizer.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    authorizer: Option<Arc<Authorizer>>,
}

type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = std::result::Result<R, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let request = request.map(Body::new);
        let Some(authorizer) = self.authorizer.clone() else {
            return Box::pin(self.inner.call(request));
        };
        // The clone is not ready: keep it, call the one that is.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            match authorize(&authorizer.grants(), request).await {
                Ok(request) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// `request` as the service should get it, or the status to answer.
async fn authorize(
    grants: &Grants,
    request: http::Request<Body>,
) -> std::result::Result<http::Request<Body>, Status> {
    let method = request.uri().path().to_owned();
    let Some(need) = methods::need(&method) else {
        tracing::info!(%method, "refused: a method no grant can allow");
        return Err(Status::permission_denied(
            "this method is not open to clients of this server",
        ));
    };
    let (permission, instance_in) = match need {
        Need::Nothing => return Ok(request),
        Need::AnyPermission(instance_in) => (None, instance_in),
        Need::Permission(permission, instance_in) => (Some(permission), instance_in),
    };
    let names = certificate_names(&request);
    let credentials = Credentials {
        bearer_token: bearer_token(request.headers())?,
        certificate_names: names,
    };
    let principal = grants.identify(&credentials).map_err(|why| {
        tracing::debug!(%method, "refused: {why}");
        Status::unauthenticated(why.to_string())
    })?;
    let allowed = |instance: Option<&str>| match permission {
        Some(permission) => principal.allows(permission, instance),
        None => [Permission::Read, Permission::Write, Permission::Execute]
            .into_iter()
            .any(|p| principal.allows(p, instance)),
    };
    // Refused before reading anything when no instance would do.
    if !allowed(None) {
        return Err(refusal(&principal, &method, permission, None));
    }
    if instance_in == InstanceIn::Nowhere {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let read = first_message::read_first(body, super::MAX_DECODING_MESSAGE_SIZE).await?;
    if let Some(message) = &read.message {
        let instance = instance_named(message, instance_in)?;
        if !allowed(Some(&instance)) {
            return Err(refusal(&principal, &method, permission, Some(&instance)));
        }
    }
    // Without a whole message the service refuses the call itself.
    Ok(http::Request::from_parts(parts, read.body))
}

fn refusal(
    principal: &Principal<'_>,
    method: &str,
    permission: Option<Permission>,
    instance: Option<&str>,
) -> Status {
    let wanted = permission.map_or("use", Permission::as_str);
    tracing::info!(
        %method,
        grants = %principal.names(),
        permission = wanted,
        instance = instance.map(|i| truncated(i, ECHOED_NAME)),
        "refused: not granted"
    );
    if principal.is_anonymous() {
        return Status::unauthenticated(grants::Unauthenticated::NoCredentials.to_string());
    }
    Status::permission_denied(match instance {
        Some(instance) => format!(
            "these credentials may not {wanted} instance {:?}",
            truncated(instance, ECHOED_NAME)
        ),
        None => format!("these credentials may not {wanted} here"),
    })
}

fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The instance a request message names.
fn instance_named(message: &[u8], instance_in: InstanceIn) -> std::result::Result<String, Status> {
    let field = FirstField::decode(message)
        .map_err(|e| Status::invalid_argument(format!("decoding the request: {e}")))?
        .value;
    let instance = match instance_in {
        InstanceIn::InstanceName | InstanceIn::Nowhere => field,
        InstanceIn::ReadResource => {
            ReadResource::parse(&field)
                .map_err(Status::from)?
                .instance_name
        }
        InstanceIn::WriteResource => {
            WriteResource::parse(&field)
                .map_err(Status::from)?
                .instance_name
        }
    };
    Ok(instance)
}

/// The token of an `authorization: Bearer …` header, if there is one.
fn bearer_token(headers: &http::HeaderMap) -> std::result::Result<Option<&str>, Status> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let not_bearer =
        || Status::unauthenticated("the authorization header must be \"Bearer <token>\"");
    let value = value.to_str().map_err(|_| not_bearer())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(not_bearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(not_bearer());
    }
    Ok(Some(token))
}

/// The DNS and URI subjectAltNames of the client certificate the TLS
/// handshake verified (rustls hands over only verified chains).
fn certificate_names(request: &http::Request<Body>) -> Vec<String> {
    let Some(leaf) = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|chain| chain.first().cloned())
    else {
        return Vec::new();
    };
    match webpki::EndEntityCert::try_from(&leaf) {
        Ok(cert) => cert
            .valid_dns_names()
            .chain(cert.valid_uri_names())
            .map(str::to_owned)
            .collect(),
        Err(e) => {
            tracing::warn!("a verified client certificate cannot be parsed for its names: {e}");
            Vec::new()
        }
    }
}
