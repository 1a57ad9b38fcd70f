//! The operators' endpoints over real sockets: per-RPC metrics recorded by
//! the layer `listener::serve` puts around every server, read back both
//! from `reapi_core::metrics::render()` and from `GET /metrics` on a
//! `serve_ops` port; `/healthz` and `/readyz` following a `Readiness`; the
//! gRPC health service following the same readiness; and the bound on the
//! number of method labels.
//!
//! The metrics registry is process-wide and the tests of this binary run in
//! parallel, so every assertion on a counter compares the values of one
//! exact label set before and after, and no two tests make calls that land
//! on the same (service, method, code).
//!
//! The method labels are bounded process-wide too (the first 256 paths
//! called get their own labels, later ones share `other`), so the
//! cardinality test first calls every path the other tests use, before it
//! fills the table: whichever order the tests run in, their methods keep
//! their own labels.
//!
//! HTTP is spoken by hand (HTTP/1.1 over a `TcpStream`, `Connection:
//! close`) so the test needs no HTTP client.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use reapi_cas::service::listener;
use reapi_cas::service::ops_http::{grpc_health_service, ops_router, serve_ops};
use reapi_core::health::Readiness;
use reapi_core::metrics;
use reapi_core::proto::bytestream::ReadRequest;
use reapi_core::proto::remote_execution as re;
use reapi_test_support::action_cache::get_result;
use reapi_test_support::bytestream::{bs_upload, read_chunks, read_name, write_msgs, write_name};
use reapi_test_support::clients;
use reapi_test_support::digests::{action_key, data, dig, PDigest};
use reapi_test_support::server::storage::{Server, Setup};
use reapi_test_support::server::Serving;
use reapi_test_support::wait::{eventually, within, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codegen::http;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const HANDLED: &str = "reapi_grpc_server_handled_total";
const HANDLING_COUNT: &str = "reapi_grpc_server_handling_seconds_count";

const CAS: &str = "build.bazel.remote.execution.v2.ContentAddressableStorage";
const AC: &str = "build.bazel.remote.execution.v2.ActionCache";
const BS: &str = "google.bytestream.ByteStream";
const HEALTH: &str = "grpc.health.v1.Health";
/// The service of [`Stalling`].
const STALLING: &str = "ops_http.Stalling";
/// The service name of the cardinality test's unknown paths.
const PROBE: &str = "ops_http.Probe";

/// The label bound of `rpc_metrics.rs` (`MAX_METHODS`).
const MAX_METHODS: usize = 256;

// ---------------------------------------------------------------------------
// The Prometheus text format, just enough of it.

/// The samples of one rendering: metric name and label set to value.
struct Samples(BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Samples {
    fn parse(text: &str) -> Samples {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (name, labels, value) =
                parse_sample(line).unwrap_or_else(|| panic!("unparsable sample line {line:?}"));
            let previous = samples.insert((name.to_owned(), labels), value);
            assert!(previous.is_none(), "sample rendered twice: {line:?}");
        }
        Samples(samples)
    }

    /// The value of `name` with exactly `labels`; 0 when not rendered (a
    /// series appears on its first use).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    fn handled(&self, service: &str, method: &str, code: &str) -> f64 {
        self.get(HANDLED, &rpc_labels(service, method, code))
    }

    fn handling_count(&self, service: &str, method: &str, code: &str) -> f64 {
        self.get(HANDLING_COUNT, &rpc_labels(service, method, code))
    }

    /// Calls of a method counted under any code but UNIMPLEMENTED: the
    /// cardinality test's calls to the same paths, on a server without
    /// services, are counted under that code, at any time.
    fn handled_any_code(&self, service: &str, method: &str) -> f64 {
        self.0
            .iter()
            .filter(|((name, labels), _)| {
                name == HANDLED
                    && labels.get("service").map(String::as_str) == Some(service)
                    && labels.get("method").map(String::as_str) == Some(method)
                    && labels.get("code").map(String::as_str) != Some("UNIMPLEMENTED")
            })
            .fold(0.0, |sum, (_, value)| sum + value)
    }

    /// Every (service, method) label pair of the RPC counter.
    fn method_labels(&self) -> BTreeSet<(String, String)> {
        self.0
            .keys()
            .filter(|(name, _)| name == HANDLED)
            .map(|(_, labels)| (labels["service"].clone(), labels["method"].clone()))
            .collect()
    }
}

fn rpc_labels<'a>(service: &'a str, method: &'a str, code: &'a str) -> [(&'a str, &'a str); 3] {
    [("service", service), ("method", method), ("code", code)]
}

/// `name{key="value",...} value [timestamp]` or `name value`.
fn parse_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(inside) => parse_labels(inside)?,
        None => (BTreeMap::new(), &line[name_end..]),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// The labels after a `{`, and what follows the closing `}`.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.strip_prefix(',').unwrap_or(text);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, quoted) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i + 1,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        text = &quoted[end..];
    }
}

/// Asserts that between `before` and `after` each (service, method, code)
/// was counted exactly `calls` more times, by the counter and by the
/// histogram, and that its method was counted under no other code.
fn assert_counted(
    source: &str,
    before: &Samples,
    after: &Samples,
    expected: &[(&str, &str, &str, f64)],
) {
    for &(service, method, code, calls) in expected {
        let handled = after.handled(service, method, code) - before.handled(service, method, code);
        assert_eq!(
            handled, calls,
            "{source}: {HANDLED} of {service}/{method} {code}"
        );
        let timed = after.handling_count(service, method, code)
            - before.handling_count(service, method, code);
        assert_eq!(
            timed, calls,
            "{source}: {HANDLING_COUNT} of {service}/{method} {code}"
        );
    }
    let mut per_method = BTreeMap::<(&str, &str), f64>::new();
    for &(service, method, _, calls) in expected {
        *per_method.entry((service, method)).or_default() += calls;
    }
    for ((service, method), calls) in per_method {
        let any =
            after.handled_any_code(service, method) - before.handled_any_code(service, method);
        assert_eq!(
            any, calls,
            "{source}: {service}/{method} counted under codes not expected"
        );
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 by hand.

struct HttpResponse {
    status: u16,
    /// Names in lower case.
    headers: BTreeMap<String, String>,
    body: String,
}

/// `GET path` on a fresh connection, read until the server closes it.
async fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    within(PATIENCE, "an HTTP response", stream.read_to_end(&mut raw))
        .await
        .expect("receive");
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the response head");
    let head = std::str::from_utf8(&raw[..head_end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: BTreeMap<String, String> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        body = dechunk(&body);
    } else if let Some(length) = headers.get("content-length") {
        assert_eq!(
            body.len(),
            length.parse::<usize>().unwrap(),
            "{path}: body length"
        );
    }
    HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_line = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size_hex = size_line.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size_hex, 16).expect("chunk size");
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

/// A `serve_ops` port on loopback.
struct OpsPort {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl OpsPort {
    async fn start(readiness: Readiness) -> OpsPort {
        let listener = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_ops(listener, ops_router(readiness), async {
                let _ = stopped.await;
            })
            .await
            .expect("the ops port failed");
        });
        OpsPort {
            addr,
            shutdown,
            task,
        }
    }

    async fn get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path).await
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        within(PATIENCE, "the ops port's shutdown", self.task)
            .await
            .expect("the ops port's task");
    }
}

// ---------------------------------------------------------------------------
// gRPC helpers.

/// A unary call of any path with an empty message; its status code.
async fn raw_call(channel: &Channel, path: &str, timeout: Option<Duration>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let path = PathAndQuery::try_from(path.to_owned()).expect("path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let mut request = tonic::Request::new(());
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    match grpc.unary::<(), (), _>(request, path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// A service whose every call waits forever: a handler still working when
/// its client gives up.
#[derive(Clone)]
struct Stalling;

impl NamedService for Stalling {
    const NAME: &'static str = STALLING;
}

type StallingFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl Service<http::Request<tonic::body::Body>> for Stalling {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = StallingFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(std::future::pending())
    }
}

// ---------------------------------------------------------------------------
// The tests.

/// Held by the tests that make ByteStream Writes: they assert on the codes
/// Writes are counted under.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Bigger than the client's HTTP/2 stream window (2 MiB, hyper's default)
/// by far: when the client drops the Read after one message, the server
/// still has most of it to send, so its status never went out.
const ABANDONED_READ_SIZE: usize = 12 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_metrics_count_every_call_by_service_method_and_code() {
    let _writes = WRITES.lock().await;
    let server = Server::start(Setup::Memory).await;
    let ops = OpsPort::start(Readiness::new("starting")).await;
    let mut cas = server.cas();
    let mut ac = server.ac();
    let mut bs = server.bs();
    let before = Samples::parse(&metrics::render());
    let before_http = Samples::parse(&ops.get("/metrics").await.body);

    // FindMissingBlobs: two that succeed, one with a malformed digest.
    for seed in 0..2 {
        let missing = cas
            .find_missing_blobs(re::FindMissingBlobsRequest {
                blob_digests: vec![dig(format!("ops_http absent {seed}").as_bytes())],
                ..Default::default()
            })
            .await
            .expect("FindMissingBlobs");
        assert_eq!(missing.into_inner().missing_blob_digests.len(), 1);
    }
    let malformed = PDigest {
        hash: "not a hash".into(),
        size_bytes: 3,
    };
    let refused = cas
        .find_missing_blobs(re::FindMissingBlobsRequest {
            blob_digests: vec![malformed],
            ..Default::default()
        })
        .await
        .expect_err("a malformed digest");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused}");

    // GetActionResult of an action nobody ran.
    let absent = get_result(&mut ac, "", &action_key("ops_http never run"))
        .await
        .expect_err("no result");
    assert_eq!(absent.code(), Code::NotFound, "{absent}");

    // ByteStream: two Writes, a whole streamed Read, a Read abandoned after
    // its first message.
    let blob = data((3 << 20) + 123, 41);
    let digest = bs_upload(&mut bs, "", &blob, 1 << 20).await;
    let big = data(ABANDONED_READ_SIZE, 42);
    let big_digest = bs_upload(&mut bs, "", &big, 1 << 20).await;
    let chunks = read_chunks(&mut bs, &read_name("", &digest), 0, 0)
        .await
        .expect("ByteStream Read");
    assert!(chunks.len() > 1, "a 3 MiB Read comes in several messages");
    assert_eq!(chunks.concat(), blob);
    let mut stream = bs
        .read(ReadRequest {
            resource_name: read_name("", &big_digest),
            read_offset: 0,
            read_limit: 0,
        })
        .await
        .expect("ByteStream Read")
        .into_inner();
    let first = within(PATIENCE, "the first ReadResponse", stream.message())
        .await
        .expect("first message")
        .expect("a message");
    assert_eq!(first.data, big[..first.data.len()]);
    drop(stream);

    // The server learns of the dropped Read when the reset reaches it.
    let reads_before = before.handled_any_code(BS, "Read");
    assert!(
        eventually(PATIENCE, || {
            Samples::parse(&metrics::render()).handled_any_code(BS, "Read") >= reads_before + 2.0
        })
        .await,
        "the abandoned Read was never counted"
    );
    // Counted once, not again later.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let expected = [
        (CAS, "FindMissingBlobs", "OK", 2.0),
        (CAS, "FindMissingBlobs", "INVALID_ARGUMENT", 1.0),
        (AC, "GetActionResult", "NOT_FOUND", 1.0),
        (BS, "Write", "OK", 2.0),
        (BS, "Read", "OK", 1.0),
        (BS, "Read", "CANCELLED", 1.0),
    ];
    let after = Samples::parse(&metrics::render());
    assert_counted("render()", &before, &after, &expected);
    let response = ops.get("/metrics").await;
    assert_eq!(response.status, 200);
    let after_http = Samples::parse(&response.body);
    assert_counted("GET /metrics", &before_http, &after_http, &expected);

    drop((cas, ac, bs));
    ops.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_port_answers_health_readiness_and_metrics() {
    let readiness = Readiness::new("starting");
    let ops = OpsPort::start(readiness.clone()).await;

    let healthz = ops.get("/healthz").await;
    assert_eq!(healthz.status, 200, "{}", healthz.body);

    let starting = ops.get("/readyz").await;
    assert_eq!(starting.status, 503);
    assert!(starting.body.contains("starting"), "{:?}", starting.body);

    readiness.set_ready();
    let ready = ops.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    readiness.set_not_ready("draining");
    let draining = ops.get("/readyz").await;
    assert_eq!(draining.status, 503);
    assert!(draining.body.contains("draining"), "{:?}", draining.body);
    // Liveness does not follow readiness.
    assert_eq!(ops.get("/healthz").await.status, 200);

    assert_eq!(ops.get("/no/such/page").await.status, 404);

    let metrics = ops.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let content_type = metrics.headers.get("content-type").expect("content type");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(metrics.body.ends_with("# EOF\n"), "{:?}", metrics.body);
    Samples::parse(&metrics.body);

    ops.stop().await;
}

/// Polls Check of the whole server ("") until it answers `want`; the
/// number of calls made.
async fn await_serving_status(health: &mut HealthClient<Channel>, want: ServingStatus) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut calls = 0.0;
    loop {
        calls += 1.0;
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("Check")
            .into_inner()
            .status();
        if status == want {
            return calls;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Check still answers {status:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_readiness() {
    let readiness = Readiness::new("starting");
    let mut routes = RoutesBuilder::default();
    routes.add_service(grpc_health_service(readiness.clone()).await);
    let serving = Serving::start(routes.routes()).await;
    let channel = clients::connect(serving.addr).await;
    let mut health = HealthClient::new(channel.clone());
    let before = Samples::parse(&metrics::render());

    let mut checks = await_serving_status(&mut health, ServingStatus::NotServing).await;
    readiness.set_ready();
    checks += await_serving_status(&mut health, ServingStatus::Serving).await;
    readiness.set_not_ready("draining");
    checks += await_serving_status(&mut health, ServingStatus::NotServing).await;

    // Only the whole server is reported.
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("an unknown service");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown}");

    // The health service's calls are measured like any other.
    let after = Samples::parse(&metrics::render());
    assert_counted(
        "render()",
        &before,
        &after,
        &[
            (HEALTH, "Check", "OK", checks),
            (HEALTH, "Check", "NOT_FOUND", 1.0),
        ],
    );

    drop((health, channel));
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_labels_are_bounded() {
    // No services: every path answers UNIMPLEMENTED, and a path no service
    // answers never gets labels of its own, so probing random names can
    // neither grow the metrics nor use up the table real methods need.
    let serving = Serving::start(RoutesBuilder::default().routes()).await;
    let channel = clients::connect(serving.addr).await;
    const PROBES: usize = 300;
    let before = Samples::parse(&metrics::render());
    for i in 0..PROBES {
        let path = format!("/{PROBE}/M{i}");
        assert_eq!(
            raw_call(&channel, &path, None).await,
            Code::Unimplemented,
            "{path}"
        );
    }
    let after = Samples::parse(&metrics::render());
    let named: f64 = (0..PROBES)
        .map(|i| after.handled(PROBE, &format!("M{i}"), "UNIMPLEMENTED"))
        .sum();
    assert_eq!(named, 0.0, "probes got labels of their own");
    let other = after.handled("other", "other", "UNIMPLEMENTED")
        - before.handled("other", "other", "UNIMPLEMENTED");
    assert_eq!(other, PROBES as f64);
    let labels = after.method_labels();
    assert!(
        labels.len() <= MAX_METHODS + 1,
        "{} distinct method labels",
        labels.len()
    );

    drop(channel);
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_abandoned_before_their_response_are_counted() {
    let mut routes = RoutesBuilder::default();
    routes.add_service(Stalling);
    let serving = Serving::start(routes.routes()).await;
    let channel = clients::connect(serving.addr).await;
    let before = Samples::parse(&metrics::render());

    // The client gives up (a Ctrl-C, a dropped future): it resets the stream.
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        raw_call(&channel, "/ops_http.Stalling/Dropped", None),
    )
    .await;
    assert!(dropped.is_err(), "the stalling call answered");
    // The client's deadline passes: tonic's server answers for the handler.
    let deadline = raw_call(
        &channel,
        "/ops_http.Stalling/Deadline",
        Some(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(
        deadline,
        Code::Cancelled,
        "tonic answers an expired deadline"
    );

    let counted = eventually(Duration::from_secs(3), || {
        let now = Samples::parse(&metrics::render());
        now.handled_any_code(STALLING, "Dropped") > before.handled_any_code(STALLING, "Dropped")
            && now.handled_any_code(STALLING, "Deadline")
                > before.handled_any_code(STALLING, "Deadline")
    })
    .await;
    let after = Samples::parse(&metrics::render());
    assert!(
        counted,
        "abandoned calls were not counted: Dropped {} -> {}, Deadline {} -> {}",
        before.handled_any_code(STALLING, "Dropped"),
        after.handled_any_code(STALLING, "Dropped"),
        before.handled_any_code(STALLING, "Deadline"),
        after.handled_any_code(STALLING, "Deadline"),
    );
    assert_counted(
        "render()",
        &before,
        &after,
        &[
            (STALLING, "Dropped", "CANCELLED", 1.0),
            (STALLING, "Deadline", "CANCELLED", 1.0),
        ],
    );

    drop(channel);
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_write_is_counted_cancelled() {
    let _writes = WRITES.lock().await;
    let server = Server::start(Setup::Memory).await;
    let mut bs = server.bs();
    let blob = data(4 << 20, 43);
    let name = write_name("", &dig(&blob));
    let first = write_msgs(&name, &blob, 0, 1 << 20, true).swap_remove(0);
    let before = Samples::parse(&metrics::render());

    // One message of four, then the client goes away (its call future is
    // dropped, so hyper resets the stream).
    let messages = futures::stream::iter([first]).chain(futures::stream::pending());
    let abandoned = tokio::time::timeout(Duration::from_millis(300), bs.write(messages)).await;
    assert!(abandoned.is_err(), "the Write answered: {abandoned:?}");

    let writes_before = before.handled_any_code(BS, "Write");
    assert!(
        eventually(PATIENCE, || {
            Samples::parse(&metrics::render()).handled_any_code(BS, "Write") > writes_before
        })
        .await,
        "the abandoned Write was never counted"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = Samples::parse(&metrics::render());
    assert_eq!(
        after.handled(BS, "Write", "INVALID_ARGUMENT")
            - before.handled(BS, "Write", "INVALID_ARGUMENT"),
        0.0,
        "the client's leaving is no invalid argument"
    );
    assert_counted(
        "render()",
        &before,
        &after,
        &[(BS, "Write", "CANCELLED", 1.0)],
    );

    drop(bs);
    server.stop().await;
}
