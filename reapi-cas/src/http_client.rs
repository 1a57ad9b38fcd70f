//! The HTTP client the server's outbound calls share (the GCS store,
//! Remote Asset fetches): hyper 1 over HTTP/1.1, plain or TLS (rustls on
//! ring), no Nagle delay, a bounded connect time, idle connections kept.

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// An error and its causes on one line, each cause once (hyper's errors
/// say little at the top and repeat themselves further down).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// A client speaking http and https (with `tls`), keeping up to
/// `max_idle_per_host` idle connections per host for a minute.
pub fn build<B>(
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    max_idle_per_host: usize,
) -> HttpsClient<B>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(max_idle_per_host)
        .build(connector)
}
