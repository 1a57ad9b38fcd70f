//! Servers on a free loopback port over real gRPC: [`storage`] (the
//! storage services over memory or disk) and [`full`] (storage, a
//! scheduler and an optional in-process worker). Both serve with
//! `reapi_cas::service::listener::serve`, as the binaries do, so every
//! socket has TCP_NODELAY.

pub mod full;
pub mod storage;

use std::net::SocketAddr;
use std::time::Duration;

use reapi_cas::service::listener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Routes;

/// A server task serving routes on a loopback port until stopped.
pub struct Serving {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Serving {
    /// Serves `routes` on a fresh port of 127.0.0.1.
    pub async fn start(routes: Routes) -> Serving {
        let listener = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            listener::serve(listener, routes, async {
                let _ = stopped.await;
            })
            .await
            .expect("server failed");
        });
        Serving {
            addr,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// Shuts the server down and waits for it (5 s at most, then aborts
    /// it). Channels to it should be dropped first: a graceful shutdown
    /// waits for their connections.
    pub async fn stop(mut self) {
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
