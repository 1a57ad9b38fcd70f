//! A remote cache held entirely in memory, composed from the library parts
//! (see `reapi_examples::memory_cache_routes`).
//!
//! Run: `cargo run -p reapi-examples --example memory_cache_server -- 127.0.0.1:8981`
//! then point Bazel at it with `--remote_cache=grpc://127.0.0.1:8981`.

use reapi_examples::memory_cache_routes;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8981".into());
    let routes = memory_cache_routes(1 << 30);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("memory cache listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await?;
    Ok(())
}
