//! The status page's routes on the operators' HTTP port: `/` and
//! `/status`. The router holds the scheduler weakly, so a page asked for
//! while the process stops answers 503 rather than keeping it alive.

use std::sync::{Arc, Weak};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{render, ClusterStatus};
use crate::{Peers, Scheduler};

/// `/` and `/status` of `scheduler`, which clients reach at `address`
/// (and of its `peers`).
pub fn status_router(
    scheduler: &Arc<Scheduler>,
    address: String,
    peers: Option<Arc<Peers>>,
) -> Router {
    let scheduler = Arc::downgrade(scheduler);
    let address: Arc<str> = Arc::from(address);
    let page = move || {
        let scheduler: Weak<Scheduler> = scheduler.clone();
        let peers = peers.clone();
        let address = address.clone();
        async move { status_page(&scheduler, &address, peers.as_deref()) }
    };
    Router::new()
        .route("/", get(page.clone()))
        .route("/status", get(page))
}

fn status_page(scheduler: &Weak<Scheduler>, address: &str, peers: Option<&Peers>) -> Response {
    let Some(scheduler) = scheduler.upgrade() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the scheduler has stopped\n",
        )
            .into_response();
    };
    let html = render(&ClusterStatus::gather(&scheduler, address, peers));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}
