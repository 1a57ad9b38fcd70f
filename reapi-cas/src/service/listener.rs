//! Serving a set of gRPC routes on a TCP listener, the way every binary,
//! example and test harness should: TCP_NODELAY on every accepted socket
//! (without it small responses wait for delayed ACKs, ~40 ms each, and
//! tonic's `Server::tcp_nodelay` does not reach a listener bound by the
//! caller), per-RPC metrics on every call, and a clean stop when `shutdown`
//! resolves; in the clear or over TLS ([`serve_tls`]).

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

use super::tls::TlsSettings;

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listening on {addr}"), e))
}

/// Serves `routes` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_incoming(incoming, routes, shutdown).await
}

/// Serves `routes` over TLS on `listener` until `shutdown` resolves (see
/// [`super::tls`]).
pub async fn serve_tls(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
    tls: Arc<TlsSettings>,
) -> Result<()> {
    serve_incoming(super::tls::incoming(listener, tls), routes, shutdown).await
}

async fn serve_incoming<I, IO, IE>(
    incoming: I,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
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
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::internal(format!("serving: {e}")))
}
