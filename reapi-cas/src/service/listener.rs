//! Serving a set of gRPC routes on a TCP listener, the way every binary,
//! example and test harness should: TCP_NODELAY on every accepted socket
//! (without it small responses wait for delayed ACKs, ~40 ms each, and
//! tonic's `Server::tcp_nodelay` does not reach a listener bound by the
//! caller), per-RPC metrics on every call, and a clean stop when `shutdown`
//! resolves; in the clear or over TLS, with or without grants ([`Front`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::server::Connected;

use reapi_core::{Error, Result};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use super::auth::{AuthLayer, Authorizer};
use super::tls::TlsSettings;

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listening on {addr}"), e))
}

/// What stands in front of a port's services.
#[derive(Clone, Debug, Default)]
pub struct Front {
    /// TLS (see [`super::tls`]); `None`: plaintext.
    pub tls: Option<Arc<TlsSettings>>,
    /// Grants every call is checked against (see [`super::auth`]);
    /// `None`: every call is let through.
    pub grants: Option<Arc<Authorizer>>,
}

/// Serves `routes` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    serve_behind(listener, routes, shutdown, Front::default()).await
}

/// Serves `routes` over TLS on `listener` until `shutdown` resolves (see
/// [`super::tls`]).
pub async fn serve_tls(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
    tls: Arc<TlsSettings>,
) -> Result<()> {
    let front = Front {
        tls: Some(tls),
        grants: None,
    };
    serve_behind(listener, routes, shutdown, front).await
}

/// Serves `routes` on `listener` behind `front` until `shutdown` resolves.
pub async fn serve_behind(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
    front: Front,
) -> Result<()> {
    let grants = AuthLayer::new(front.grants);
    match front.tls {
        Some(tls) => {
            let incoming = super::tls::incoming(listener, tls);
            serve_incoming(incoming, routes, shutdown, grants).await
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            serve_incoming(incoming, routes, shutdown, grants).await
        }
    }
}

async fn serve_incoming<I, IO, IE>(
    incoming: I,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
    grants: AuthLayer,
) -> Result<()>
where
    I: Stream<Item = std::result::Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tonic::transport::Server::builder()
        .initial_stream_window_size(super::HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(super::HTTP2_CONNECTION_WINDOW)
        // Outermost first: the metrics count the status the client gets.
        .layer(super::rpc_metrics::RpcMetricsLayer)
        .layer(super::message_size::MessageSizeLayer)
        // Inside the size layer: the grants' own refusals are final.
        .layer(grants)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::internal(format!("serving: {e}")))
}
