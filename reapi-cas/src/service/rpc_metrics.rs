//! Per-RPC metrics for every gRPC service a process serves: a `tower` layer
//! around the whole server, so no handler counts anything itself.
//!
//! `reapi_grpc_server_handled_total` and `reapi_grpc_server_handling_seconds`,
//! labelled by service, method and gRPC status code. The code comes from
//! the response headers (a trailers-only error) or the trailers (a normal
//! or streamed answer); the time runs until that status is sent, so a
//! streamed Read counts until its last chunk. A call the client abandons
//! (it resets the stream, or its deadline passes) counts as CANCELLED,
//! whatever the handler answers after.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use reapi_core::metrics;
use tonic::Code;
use tower::{Layer, Service};

/// Distinct methods labelled by name; calls to further paths, and calls
/// to paths no service answers, share the label `other`, so a client
/// probing random names cannot grow the metrics without bound.
const MAX_METHODS: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: String,
    method: String,
    code: &'static str,
}

type HistogramFamily = Family<RpcLabels, Histogram, fn() -> Histogram>;

struct RpcMetrics {
    handled: Family<RpcLabels, Counter>,
    seconds: HistogramFamily,
    methods: Mutex<HashSet<String>>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(metrics::latency_buckets())
}

static RPC: LazyLock<RpcMetrics> = LazyLock::new(|| {
    let rpc = RpcMetrics {
        handled: Family::default(),
        seconds: HistogramFamily::new_with_constructor(latency_histogram),
        methods: Mutex::new(HashSet::new()),
    };
    metrics::register(|registry| {
        registry.register(
            "grpc_server_handled",
            "gRPC calls completed, by service, method and status code",
            rpc.handled.clone(),
        );
        registry.register_with_unit(
            "grpc_server_handling",
            "Time from a call's arrival to its status, by service, method and status code",
            Unit::Seconds,
            rpc.seconds.clone(),
        );
    });
    rpc
});

/// One call being measured; counted once, when its status is known, or as
/// CANCELLED if it is dropped before (the client reset the call, or its
/// deadline passed, while the handler was still at work).
struct Recording {
    path: String,
    start: Instant,
    /// The client reset the request stream (see [`CancelAwareBody`]):
    /// whatever the handler answers after that, the call was cancelled.
    cancelled: Arc<AtomicBool>,
    done: bool,
}

impl Recording {
    fn of_path(path: &str) -> Recording {
        Recording {
            path: path.to_owned(),
            start: Instant::now(),
            cancelled: Arc::new(AtomicBool::new(false)),
            done: false,
        }
    }

    /// The call's (service, method) labels. A path is named once it has
    /// been answered by a service (not UNIMPLEMENTED) while the table has
    /// room, so a client probing random names cannot grow the metrics or
    /// take the places of real methods.
    fn labels(&self, code: Code) -> (String, String) {
        let known = {
            let mut methods = RPC.methods.lock();
            methods.contains(&self.path)
                || (code != Code::Unimplemented
                    && methods.len() < MAX_METHODS
                    && methods.insert(self.path.clone()))
        };
        if !known {
            return ("other".to_owned(), "other".to_owned());
        }
        let (service, method) = self
            .path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("", &self.path));
        (service.to_owned(), method.to_owned())
    }

    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let code = if self.cancelled.load(Ordering::Relaxed) {
            Code::Cancelled
        } else {
            code
        };
        let (service, method) = self.labels(code);
        let labels = RpcLabels {
            service,
            method,
            code: code_name(code),
        };
        RPC.handled.get_or_create(&labels).inc();
        RPC.seconds
            .get_or_create(&labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// The canonical name of a status code, as gRPC documents it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// Measures every call of the services it wraps; add it with
/// `Server::builder().layer(RpcMetricsLayer)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RpcMetricsService<S> {
    inner: S,
}

type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcMetricsService<S>
where
    S: Service<http::Request<CancelAwareBody<ReqBody>>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin + Send + 'static,
{
    type Response = http::Response<RecordedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let mut recording = Recording::of_path(request.uri().path());
        let cancelled = recording.cancelled.clone();
        let response = self
            .inner
            .call(request.map(|inner| CancelAwareBody { inner, cancelled }));
        Box::pin(async move {
            // Dropped here (an error, or the whole call abandoned), the
            // recording counts the call CANCELLED.
            let response = response.await?;
            // A trailers-only answer (most errors) has its status here.
            if let Some(code) = grpc_status(response.headers()) {
                recording.finish(code);
            }
            Ok(response.map(|inner| RecordedBody { inner, recording }))
        })
    }
}

/// A request body that notes when the client resets the call: tonic turns
/// that into a clean end of the request stream, which a handler cannot
/// tell from a client that finished sending.
pub struct CancelAwareBody<B> {
    inner: B,
    cancelled: Arc<AtomicBool>,
}

impl<B: Body + Unpin> Body for CancelAwareBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.cancelled.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that records its call when the status goes by (or, if
/// it is dropped first, as CANCELLED: the client went away).
pub struct RecordedBody<B> {
    inner: B,
    recording: Recording,
}

impl<B: Body + Unpin> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    self.recording.finish(code);
                }
            }
            // The stream broke, or ended without a status: none reached
            // the client.
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.recording.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
