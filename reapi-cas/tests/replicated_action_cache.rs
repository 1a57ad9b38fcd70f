//! The replicated action cache over real gRPC: three in-process
//! "schedulers" on loopback, each serving the storage services with its
//! own `ReplicatedActionCache` as the public action cache and its own share
//! (a `DiskActionCache` in a temporary directory, as in the binary) behind
//! the `reapi-ac-replica` header, all following the placements the test
//! publishes. The test reads and writes through the public ActionCache
//! service, looks at each share directly, and kills servers by shutting
//! them down.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reapi_cas::action_cache::{DiskActionCache, ReplicatedActionCache, REPLICA_HEADER};
use reapi_cas::service::{listener, StorageServices};
use reapi_cas::store::MemoryStore;
use reapi_core::cluster::messages::StorageMember;
use reapi_core::cluster::placement::{
    placement_channel, Placement, PlacementReceiver, PlacementSender,
};
use reapi_core::proto::remote_execution as re;
use reapi_core::{ActionCache, Digest, InstancePolicy};
use reapi_test_support::clients::{self, Ac};
use reapi_test_support::status::assert_code;
use reapi_test_support::wait::within;
use tempfile::TempDir;
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::service::RoutesBuilder;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// The schedulers of every test.
const NODES: usize = 3;

/// How long any one call may take: a dead holder must be skipped at once
/// (connections to it are refused), not waited for.
const CALL_LIMIT: Duration = Duration::from_secs(5);

/// One in-process scheduler: a server on its own port, its replicated
/// action cache and its share.
struct Node {
    addr: SocketAddr,
    share: Arc<DiskActionCache>,
    cache: Arc<ReplicatedActionCache>,
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl Node {
    fn id(&self) -> String {
        self.addr.to_string()
    }

    fn ac(&self) -> Ac {
        clients::ac(&self.channel)
    }

    fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// Whether its own share holds an entry for `digest`, read directly.
    async fn holds(&self, instance: &str, digest: &Digest) -> bool {
        self.share.get(instance, digest).await.unwrap().is_some()
    }
}

/// What a scheduler serves: its share (opened on `dir`), its replicated
/// cache following `following`, on `listener`.
struct Serving {
    share: Arc<DiskActionCache>,
    cache: Arc<ReplicatedActionCache>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn serve(
    listener: tokio::net::TcpListener,
    dir: &Path,
    following: &PlacementReceiver,
    replica_count: usize,
) -> Serving {
    let addr = listener.local_addr().unwrap();
    let share = Arc::new(DiskActionCache::open(dir.join("ac")).unwrap());
    let cache = ReplicatedActionCache::new(
        following.clone(),
        replica_count,
        addr.to_string(),
        share.clone(),
    );
    let mut routes = RoutesBuilder::default();
    StorageServices {
        store: Arc::new(MemoryStore::new(1 << 26)),
        action_cache: cache.clone(),
        instances: InstancePolicy::Any,
        execution: None,
    }
    .add_to_with_replica(&mut routes, share.clone());
    let routes = routes.routes();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        listener::serve(listener, routes, async {
            let _ = stopped.await;
        })
        .await
        .expect("server failed");
    });
    Serving {
        share,
        cache,
        shutdown,
        task,
    }
}

/// Three schedulers following one placement channel.
struct Schedulers {
    nodes: Vec<Node>,
    placement: PlacementSender,
    following: PlacementReceiver,
    replica_count: usize,
}

impl Schedulers {
    /// Starts three schedulers with `replica_count` and publishes all three
    /// as members.
    async fn start(replica_count: usize) -> Schedulers {
        let (placement, following) = placement_channel();
        let mut listeners = Vec::new();
        for _ in 0..NODES {
            let listener = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .unwrap();
            listeners.push(listener);
        }
        let mut nodes = Vec::new();
        for listener in listeners {
            let addr = listener.local_addr().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let serving = serve(listener, dir.path(), &following, replica_count).await;
            let channel = Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_lazy();
            nodes.push(Node {
                addr,
                share: serving.share,
                cache: serving.cache,
                channel,
                shutdown: Some(serving.shutdown),
                task: Some(serving.task),
                _dir: dir,
            });
        }
        let schedulers = Schedulers {
            nodes,
            placement,
            following,
            replica_count,
        };
        schedulers.publish(&[0, 1, 2]);
        schedulers
    }

    /// Starts scheduler `i`, killed before, again on its address and
    /// directory.
    async fn restart(&mut self, i: usize) {
        let node = &self.nodes[i];
        assert!(!node.is_running(), "restarting a running scheduler");
        let listener = listener::bind(node.addr).await.unwrap();
        let serving = serve(
            listener,
            node._dir.path(),
            &self.following,
            self.replica_count,
        )
        .await;
        let node = &mut self.nodes[i];
        node.share = serving.share;
        node.cache = serving.cache;
        node.shutdown = Some(serving.shutdown);
        node.task = Some(serving.task);
    }

    fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    fn placement_of(&self, members: &[usize]) -> Placement {
        let members: Vec<StorageMember> = members
            .iter()
            .map(|&i| StorageMember {
                worker_id: self.nodes[i].id(),
                address: self.nodes[i].id(),
            })
            .collect();
        Placement::new(&members)
    }

    /// Makes `members` (indexes) the schedulers every one follows.
    fn publish(&self, members: &[usize]) {
        self.placement
            .send(Arc::new(self.placement_of(members)))
            .unwrap();
    }

    /// Makes `members` (indexes) and the addresses `others` the schedulers
    /// every one follows.
    fn publish_with(&self, members: &[usize], others: &[&str]) {
        let mut list = self.placement_of(members).members();
        list.extend(others.iter().map(|address| StorageMember {
            worker_id: address.to_string(),
            address: address.to_string(),
        }));
        self.placement
            .send(Arc::new(Placement::new(&list)))
            .unwrap();
    }

    /// The indexes of the three schedulers, best holder of `digest` first.
    fn ranked(&self, instance: &str, digest: &Digest) -> Vec<usize> {
        self.placement_of(&[0, 1, 2])
            .ranked(instance, digest)
            .into_iter()
            .map(|holder| {
                self.nodes
                    .iter()
                    .position(|node| *holder.id == node.id())
                    .unwrap()
            })
            .collect()
    }

    /// Which schedulers' shares hold `digest`, read directly.
    async fn holding(&self, instance: &str, digest: &Digest) -> Vec<usize> {
        let mut holding = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.holds(instance, digest).await {
                holding.push(i);
            }
        }
        holding
    }

    /// Shuts scheduler `i`'s server down (its connections closed), and
    /// checks that it no longer answers.
    async fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let _ = node.shutdown.take().unwrap().send(());
        let task = node.task.take().unwrap();
        within(Duration::from_secs(10), "a server shutting down", task)
            .await
            .unwrap();
        let answer = tokio::time::timeout(
            CALL_LIMIT,
            get_plain(&node.ac(), "", &Digest::of_bytes(b"anything")),
        )
        .await
        .expect("a call to a stopped server hung");
        assert_code(answer, Code::Unavailable, "a call to a stopped server");
    }
}

/// The digest of an entry called `name`.
fn key(name: &str) -> Digest {
    Digest::of_bytes(format!("action {name}").as_bytes())
}

/// A distinct result for the entry `name`.
fn result_for(name: &str) -> re::ActionResult {
    re::ActionResult {
        exit_code: 7,
        stdout_raw: format!("stdout of {name}").into_bytes(),
        ..Default::default()
    }
}

fn with_header<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(REPLICA_HEADER, MetadataValue::from_static("1"));
    request
}

fn get_request(instance: &str, digest: &Digest) -> re::GetActionResultRequest {
    re::GetActionResultRequest {
        instance_name: instance.to_string(),
        action_digest: Some(digest.to_proto()),
        ..Default::default()
    }
}

fn update_request(
    instance: &str,
    digest: &Digest,
    result: &re::ActionResult,
) -> re::UpdateActionResultRequest {
    re::UpdateActionResultRequest {
        instance_name: instance.to_string(),
        action_digest: Some(digest.to_proto()),
        action_result: Some(result.clone()),
        ..Default::default()
    }
}

/// GetActionResult through the public path (no header).
async fn get_plain(ac: &Ac, instance: &str, digest: &Digest) -> Result<re::ActionResult, Status> {
    let mut ac = ac.clone();
    within(
        CALL_LIMIT,
        "GetActionResult",
        ac.get_action_result(get_request(instance, digest)),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// GetActionResult as a peer asks it (with the header).
async fn get_replica(ac: &Ac, instance: &str, digest: &Digest) -> Result<re::ActionResult, Status> {
    let mut ac = ac.clone();
    within(
        CALL_LIMIT,
        "GetActionResult with the replica header",
        ac.get_action_result(with_header(get_request(instance, digest))),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// UpdateActionResult through the public path.
async fn put_plain(
    ac: &Ac,
    instance: &str,
    digest: &Digest,
    result: &re::ActionResult,
) -> Result<(), Status> {
    let mut ac = ac.clone();
    within(
        CALL_LIMIT,
        "UpdateActionResult",
        ac.update_action_result(update_request(instance, digest, result)),
    )
    .await
    .map(|_| ())
}

/// UpdateActionResult as a peer sends it.
async fn put_replica(
    ac: &Ac,
    instance: &str,
    digest: &Digest,
    result: &re::ActionResult,
) -> Result<(), Status> {
    let mut ac = ac.clone();
    within(
        CALL_LIMIT,
        "UpdateActionResult with the replica header",
        ac.update_action_result(with_header(update_request(instance, digest, result))),
    )
    .await
    .map(|_| ())
}

/// The first entry name `entry-N` whose ranking satisfies `wanted`.
fn find_entry(schedulers: &Schedulers, wanted: impl Fn(&[usize]) -> bool) -> String {
    (0..10_000)
        .map(|i| format!("entry-{i}"))
        .find(|name| wanted(&schedulers.ranked("", &key(name))))
        .expect("no entry ranks as wanted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_through_one_lands_on_all_three_and_any_reads_it() {
    let schedulers = Schedulers::start(3).await;
    for (instance, name) in [("", "one"), ("", "two"), ("ci/linux", "three")] {
        let digest = key(name);
        let result = result_for(name);
        put_plain(&schedulers.node(0).ac(), instance, &digest, &result)
            .await
            .unwrap();
        assert_eq!(
            schedulers.holding(instance, &digest).await,
            [0, 1, 2],
            "{instance:?}/{name}: every share should hold the entry"
        );
        for node in &schedulers.nodes {
            assert_eq!(
                get_plain(&node.ac(), instance, &digest).await.unwrap(),
                result,
                "{instance:?}/{name} read through {}",
                node.addr
            );
        }
        // The instance is kept apart.
        let other = if instance.is_empty() { "ci/linux" } else { "" };
        assert_code(
            get_plain(&schedulers.node(1).ac(), other, &digest).await,
            Code::NotFound,
            &format!("{name} under instance {other:?}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_an_entry_lives_on_its_top_two() {
    let schedulers = Schedulers::start(2).await;
    let writer = 0;
    let mut read_from_a_non_holder_peer = 0;
    for i in 0..24 {
        let name = format!("entry-{i}");
        let digest = key(&name);
        let result = result_for(&name);
        put_plain(&schedulers.node(writer).ac(), "", &digest, &result)
            .await
            .unwrap();
        let ranked = schedulers.ranked("", &digest);
        let mut expected = ranked[..2].to_vec();
        // The writer keeps a copy of what it wrote when it is no holder.
        if !expected.contains(&writer) {
            expected.push(writer);
        }
        expected.sort();
        assert_eq!(
            schedulers.holding("", &digest).await,
            expected,
            "{name}: ranked {ranked:?}, written through {writer}"
        );
        let non_holder = ranked[2];
        if non_holder != writer {
            assert!(!schedulers.node(non_holder).holds("", &digest).await);
            read_from_a_non_holder_peer += 1;
        }
        assert_eq!(
            get_plain(&schedulers.node(non_holder).ac(), "", &digest)
                .await
                .unwrap(),
            result,
            "{name} read through its non-holder {non_holder}"
        );
    }
    assert!(
        read_from_a_non_holder_peer > 0,
        "every entry happened to rank the writer last; no read went remote"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_survivor_of_two_dead_schedulers_answers_every_entry() {
    let mut schedulers = Schedulers::start(3).await;
    let names: Vec<String> = (0..12).map(|i| format!("entry-{i}")).collect();
    // Written through each scheduler in turn.
    for (i, name) in names.iter().enumerate() {
        put_plain(
            &schedulers.node(i % NODES).ac(),
            "",
            &key(name),
            &result_for(name),
        )
        .await
        .unwrap();
    }
    schedulers.kill(1).await;
    schedulers.kill(2).await;
    let survivor = schedulers.node(0).ac();

    // While the dead are still members, they are skipped.
    let started = Instant::now();
    for name in &names {
        assert_eq!(
            get_plain(&survivor, "", &key(name)).await.unwrap(),
            result_for(name),
            "{name}, the dead still members"
        );
    }
    assert_code(
        get_plain(&survivor, "", &key("never written")).await,
        Code::NotFound,
        "an entry never written, the dead still members",
    );
    eprintln!(
        "{} reads with two dead members took {:.1?}",
        names.len() + 1,
        started.elapsed()
    );

    // Once the placement is the survivor alone.
    schedulers.publish(&[0]);
    for name in &names {
        assert_eq!(
            get_plain(&survivor, "", &key(name)).await.unwrap(),
            result_for(name),
            "{name}, the survivor alone"
        );
    }
    let late = key("written after the deaths");
    put_plain(&survivor, "", &late, &result_for("late"))
        .await
        .unwrap();
    assert_eq!(
        get_plain(&survivor, "", &late).await.unwrap(),
        result_for("late")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_succeeds_with_a_holder_down() {
    let mut schedulers = Schedulers::start(2).await;
    // Scheduler 1 is the entry's best holder and goes down; scheduler 0,
    // which the entry is written through, is no holder; 2 is the other.
    let name = find_entry(&schedulers, |ranked| ranked == [1, 2, 0]);
    let digest = key(&name);
    schedulers.kill(1).await;
    assert!(schedulers.node(2).is_running() && !schedulers.node(1).is_running());

    put_plain(&schedulers.node(0).ac(), "", &digest, &result_for(&name))
        .await
        .expect("a put with one of two holders down");
    assert_eq!(schedulers.holding("", &digest).await, [0, 2]);
    for reader in [0, 2] {
        assert_eq!(
            get_plain(&schedulers.node(reader).ac(), "", &digest)
                .await
                .unwrap(),
            result_for(&name),
            "read through {reader}, holder 1 down"
        );
    }
    // A miss stays a miss, not an error, with a holder down.
    assert_code(
        get_plain(&schedulers.node(0).ac(), "", &key("never written")).await,
        Code::NotFound,
        "an entry never written, a holder down",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalancing_brings_entries_to_a_returning_scheduler() {
    let schedulers = Schedulers::start(2).await;
    // A settle long enough that scheduler 1 leaves and is back within it:
    // the placement after the settle is the one before, yet 1 missed the
    // writes made meanwhile.
    for node in &schedulers.nodes {
        let entries: Arc<DiskActionCache> = node.share.clone();
        node.cache
            .spawn_rebalancer(entries, Duration::from_secs(1), None);
    }
    // Scheduler 1 is out; entries are written through 0 (and 2).
    schedulers.publish(&[0, 2]);
    let names: Vec<String> = (0..24).map(|i| format!("entry-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let writer = if i % 2 == 0 { 0 } else { 2 };
        put_plain(
            &schedulers.node(writer).ac(),
            "",
            &key(name),
            &result_for(name),
        )
        .await
        .unwrap();
    }
    for name in &names {
        assert!(!schedulers.node(1).holds("", &key(name)).await);
    }

    // It is back: the entries it now ranks in the top two for reach it.
    schedulers.publish(&[0, 1, 2]);
    let (due, not_due): (Vec<&String>, Vec<&String>) = names
        .iter()
        .partition(|name| schedulers.ranked("", &key(name))[..2].contains(&1));
    assert!(!due.is_empty() && !not_due.is_empty());
    let mut missing = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        missing.clear();
        for name in &due {
            if !schedulers.node(1).holds("", &key(name)).await {
                missing.push(name.to_string());
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        missing.is_empty(),
        "scheduler 1 lacks {} of the {} entries it holds now: {missing:?}",
        missing.len(),
        due.len()
    );
    // Nothing goes where it is not due.
    for name in &not_due {
        assert!(
            !schedulers.node(1).holds("", &key(name)).await,
            "{name} was copied to scheduler 1, not one of its holders"
        );
    }
    // Its peers are no longer needed for its entries.
    for name in &due {
        assert_eq!(
            get_replica(&schedulers.node(1).ac(), "", &key(name))
                .await
                .unwrap(),
            result_for(name)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_on_demand_copies_to_new_holders_only() {
    let schedulers = Schedulers::start(3).await;
    let node = schedulers.node(0);
    let name = "entry-on-demand";
    node.share
        .put("", &key(name), &result_for(name))
        .await
        .unwrap();
    let before = schedulers.placement_of(&[0, 2]);
    let now = schedulers.placement_of(&[0, 1, 2]);
    let copied = node
        .cache
        .rebalance(node.share.as_ref(), &before, &now)
        .await
        .unwrap();
    assert_eq!(copied, 1, "only scheduler 1 is a new holder");
    assert_eq!(schedulers.holding("", &key(name)).await, [0, 1]);
    // Unchanged membership: nothing to copy.
    let copied = node
        .cache
        .rebalance(node.share.as_ref(), &now, &now)
        .await
        .unwrap();
    assert_eq!(copied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_repairs_the_best_holder() {
    let schedulers = Schedulers::start(3).await;
    let name = "repaired";
    let digest = key(name);
    let ranked = schedulers.ranked("", &digest);
    let (first, second, third) = (ranked[0], ranked[1], ranked[2]);
    // Only the second-ranked holder has it.
    schedulers
        .node(second)
        .share
        .put("", &digest, &result_for(name))
        .await
        .unwrap();
    assert_eq!(schedulers.holding("", &digest).await, [second]);

    assert_eq!(
        get_plain(&schedulers.node(third).ac(), "", &digest)
            .await
            .unwrap(),
        result_for(name),
        "read through the third-ranked scheduler"
    );
    assert!(
        schedulers.node(first).holds("", &digest).await,
        "the best holder, found without the entry, did not get a copy"
    );
    // The reader found it before asking itself.
    assert!(!schedulers.node(third).holds("", &digest).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_header_keeps_a_request_to_the_receivers_share() {
    let schedulers = Schedulers::start(1).await;
    let b = 1;
    // Entries only in scheduler 1's share: one it holds, one it does not.
    let held = find_entry(&schedulers, |ranked| ranked[0] == b);
    let not_held = find_entry(&schedulers, |ranked| ranked[0] == 0);
    for name in [&held, &not_held] {
        schedulers
            .node(b)
            .share
            .put("", &key(name), &result_for(name))
            .await
            .unwrap();
    }
    let (ac0, ac1, ac2) = (
        schedulers.node(0).ac(),
        schedulers.node(b).ac(),
        schedulers.node(2).ac(),
    );

    // With the header, a scheduler answers from its share alone.
    for name in [&held, &not_held] {
        assert_eq!(
            get_replica(&ac1, "", &key(name)).await.unwrap(),
            result_for(name)
        );
        assert_code(
            get_replica(&ac2, "", &key(name)).await,
            Code::NotFound,
            &format!("{name} asked of 2's share"),
        );
    }
    // Without it, the request goes through the replicated cache: the
    // entry is found where it ranks, and only there.
    assert_eq!(
        get_plain(&ac2, "", &key(&held)).await.unwrap(),
        result_for(&held)
    );
    assert_code(
        get_plain(&ac2, "", &key(&not_held)).await,
        Code::NotFound,
        "an entry on 1, whose holder 0 lacks it, read through 2",
    );
    // Through 1 itself, no holder either, it is found in its own share
    // once its holder lacks it.
    assert_eq!(
        get_plain(&ac1, "", &key(&not_held)).await.unwrap(),
        result_for(&not_held)
    );

    // A put with the header stays in the receiver's share...
    let replica_only = "written with the header".to_string();
    put_replica(&ac1, "", &key(&replica_only), &result_for(&replica_only))
        .await
        .unwrap();
    assert_eq!(schedulers.holding("", &key(&replica_only)).await, [b]);
    // ... one without it is replicated to the entry's holder.
    let plain = find_entry(&schedulers, |ranked| ranked[0] == 2);
    put_plain(&ac1, "", &key(&plain), &result_for(&plain))
        .await
        .unwrap();
    assert_eq!(schedulers.holding("", &key(&plain)).await, [1, 2]);
    assert_eq!(
        get_plain(&ac0, "", &key(&plain)).await.unwrap(),
        result_for(&plain)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_codes_on_both_paths() {
    let schedulers = Schedulers::start(3).await;
    let ac = schedulers.node(0).ac();
    let digest = key("valid");
    let bad_digest = re::Digest {
        hash: "not hex".into(),
        size_bytes: 3,
    };
    for header in [false, true] {
        let what = |s: &str| format!("{s}, header {header}");
        let mut client = ac.clone();
        let no_digest = re::GetActionResultRequest {
            action_digest: None,
            ..get_request("", &digest)
        };
        assert_code(
            client
                .get_action_result(with_header_if(header, no_digest))
                .await,
            Code::InvalidArgument,
            &what("get without action_digest"),
        );
        let malformed = re::GetActionResultRequest {
            action_digest: Some(bad_digest.clone()),
            ..get_request("", &digest)
        };
        assert_code(
            client
                .get_action_result(with_header_if(header, malformed))
                .await,
            Code::InvalidArgument,
            &what("get with a malformed digest"),
        );
        let md5 = re::GetActionResultRequest {
            digest_function: re::digest_function::Value::Md5 as i32,
            ..get_request("", &digest)
        };
        assert_code(
            client.get_action_result(with_header_if(header, md5)).await,
            Code::InvalidArgument,
            &what("get with MD5"),
        );
        let mut client = ac.clone();
        let no_result = re::UpdateActionResultRequest {
            action_result: None,
            ..update_request("", &digest, &result_for("valid"))
        };
        assert_code(
            client
                .update_action_result(with_header_if(header, no_result))
                .await,
            Code::InvalidArgument,
            &what("update without action_result"),
        );
        let bad_output = re::ActionResult {
            stdout_digest: Some(bad_digest.clone()),
            ..result_for("valid")
        };
        assert_code(
            client
                .update_action_result(with_header_if(
                    header,
                    update_request("", &digest, &bad_output),
                ))
                .await,
            Code::InvalidArgument,
            &what("update with a malformed stdout digest"),
        );
        let no_digest = re::UpdateActionResultRequest {
            action_digest: None,
            ..update_request("", &digest, &result_for("valid"))
        };
        assert_code(
            client
                .update_action_result(with_header_if(header, no_digest))
                .await,
            Code::InvalidArgument,
            &what("update without action_digest"),
        );
        assert_code(
            client
                .get_action_result(with_header_if(header, get_request("", &digest)))
                .await,
            Code::NotFound,
            &what("get of an entry never written"),
        );
    }
    // Nothing bad was stored anywhere.
    assert!(schedulers.holding("", &digest).await.is_empty());
}

fn with_header_if<T>(header: bool, message: T) -> Request<T> {
    if header {
        with_header(message)
    } else {
        Request::new(message)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_member_view_still_serves() {
    // Before membership is known (an empty placement), a scheduler uses its
    // own share.
    let schedulers = Schedulers::start(3).await;
    schedulers
        .placement
        .send(Arc::new(Placement::default()))
        .unwrap();
    let digest = key("alone");
    put_plain(&schedulers.node(2).ac(), "", &digest, &result_for("alone"))
        .await
        .unwrap();
    assert_eq!(schedulers.holding("", &digest).await, [2]);
    assert_eq!(
        get_plain(&schedulers.node(2).ac(), "", &digest)
            .await
            .unwrap(),
        result_for("alone")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_holder_slows_calls_down_but_does_not_block_them() {
    let schedulers = Schedulers::start(3).await;
    // A member that takes connections (the kernel does) and never answers:
    // a stopped or partitioned scheduler.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_addr = hung.local_addr().unwrap().to_string();
    schedulers.publish_with(&[0, 1], &[&hung_addr]);
    let with_hung = {
        let mut list = schedulers.placement_of(&[0, 1]).members();
        list.push(StorageMember {
            worker_id: hung_addr.clone(),
            address: hung_addr.clone(),
        });
        Placement::new(&list)
    };
    // An entry the hung member is the best holder of.
    let name = (0..1000)
        .map(|i| format!("entry-{i}"))
        .find(|name| *with_hung.ranked("", &key(name))[0].id == *hung_addr)
        .unwrap();
    let digest = key(&name);
    let limit = Duration::from_secs(20);

    let started = Instant::now();
    let mut ac = schedulers.node(0).ac();
    tokio::time::timeout(
        limit,
        ac.update_action_result(update_request("", &digest, &result_for(&name))),
    )
    .await
    .expect("a put with a hung holder never returned")
    .expect("a put with a hung holder failed");
    assert_eq!(schedulers.holding("", &digest).await, [0, 1]);
    let mut ac = schedulers.node(1).ac();
    let found = tokio::time::timeout(limit, ac.get_action_result(get_request("", &digest)))
        .await
        .expect("a get with a hung best holder never returned")
        .expect("a get with a hung best holder failed");
    assert_eq!(found.into_inner(), result_for(&name));
    eprintln!(
        "a put and a get with a hung holder took {:.1?}",
        started.elapsed()
    );
    drop(hung);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_restarted_within_the_membership_gets_its_share_again() {
    let mut schedulers = Schedulers::start(3).await;
    // Each follows the restarts it is told of, as Peers reports them.
    let mut restarts = Vec::new();
    for node in &schedulers.nodes {
        let (sender, receiver) = unbounded_channel();
        let entries: Arc<DiskActionCache> = node.share.clone();
        node.cache
            .spawn_rebalancer(entries, Duration::from_millis(100), Some(receiver));
        restarts.push(sender);
    }
    // Scheduler 1 goes down and comes back before anyone counts it out:
    // the placement never changes.
    schedulers.kill(1).await;
    let names: Vec<String> = (0..12).map(|i| format!("entry-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let writer = if i % 2 == 0 { 0 } else { 2 };
        put_plain(
            &schedulers.node(writer).ac(),
            "",
            &key(name),
            &result_for(name),
        )
        .await
        .unwrap();
    }
    schedulers.restart(1).await;
    let lacking = |schedulers: &Schedulers| {
        let node = schedulers.node(1);
        let names = names.clone();
        let share = node.share.clone();
        async move {
            let mut lacking = Vec::new();
            for name in names {
                if share.get("", &key(&name)).await.unwrap().is_none() {
                    lacking.push(name);
                }
            }
            lacking
        }
    };
    assert_eq!(lacking(&schedulers).await.len(), names.len());

    // Its peers see it restart.
    for i in [0, 2] {
        restarts[i].send(schedulers.node(1).id()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut missing = lacking(&schedulers).await;
    while !missing.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        missing = lacking(&schedulers).await;
    }
    assert!(
        missing.is_empty(),
        "the restarted scheduler lacks {missing:?}"
    );
    // Unknown members named as restarted copy nothing, and fail nothing.
    let copied = schedulers
        .node(0)
        .cache
        .rebalance_with(
            schedulers.node(0).share.as_ref(),
            &schedulers.placement_of(&[0, 1, 2]),
            &schedulers.placement_of(&[0, 1, 2]),
            &HashSet::from(["127.0.0.1:1".to_string()]),
        )
        .await
        .unwrap();
    assert_eq!(copied, 0);
}
