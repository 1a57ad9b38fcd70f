//! `ClusterStore` over in-memory members with switchable faults: placement
//! of copies, replacement of failed holders, read repair, and the error
//! codes clients act on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use reapi_core::blob_store::{collect_stream, BlobStore, BlobWriter, ChunkStream};
use reapi_core::cluster::messages::StorageMember;
use reapi_core::cluster::placement::{placement_channel, Holder, Placement, PlacementSender};
use reapi_core::{Digest, Error, Result};
use tonic::Code;

use super::{ClusterStore, LocalMember, MemberStores};
use crate::store::MemoryStore;

const MIB: usize = 1024 * 1024;
/// Above `SMALL_BLOB_LIMIT`, so copies between members take the streaming
/// branch.
pub(super) const BIG: usize = 5 * MIB;

// ---------------------------------------------------------------------------
// Test doubles
// ---------------------------------------------------------------------------

struct Faults {
    /// Every call fails UNAVAILABLE.
    down: AtomicBool,
    /// Writes fail RESOURCE_EXHAUSTED.
    full: AtomicBool,
    /// A streamed writer fails UNAVAILABLE once more than this many bytes
    /// were written to it.
    cut_after_bytes: AtomicU64,
    /// FindMissingBlobs answers in reverse order.
    reverse_answers: AtomicBool,
}

/// A member's store: a `MemoryStore` with switchable faults and counters.
pub(super) struct FaultyStore {
    mem: MemoryStore,
    faults: Arc<Faults>,
    /// `put` and `begin_write` calls.
    pub(super) puts: AtomicUsize,
    /// `get` and `read` calls.
    reads: AtomicUsize,
    find_missing_calls: AtomicUsize,
}

impl FaultyStore {
    pub(super) fn new() -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            mem: MemoryStore::new(1 << 30),
            faults: Arc::new(Faults {
                down: AtomicBool::new(false),
                full: AtomicBool::new(false),
                cut_after_bytes: AtomicU64::new(u64::MAX),
                reverse_answers: AtomicBool::new(false),
            }),
            puts: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            find_missing_calls: AtomicUsize::new(0),
        })
    }

    pub(super) fn set_down(&self, down: bool) {
        self.faults.down.store(down, SeqCst);
    }

    pub(super) fn set_full(&self, full: bool) {
        self.faults.full.store(full, SeqCst);
    }

    /// Answers FindMissingBlobs in reverse order, as a store is free to.
    fn reverse_answers(&self) {
        self.faults.reverse_answers.store(true, SeqCst);
    }

    pub(super) fn cut_after(&self, bytes: u64) {
        self.faults.cut_after_bytes.store(bytes, SeqCst);
    }

    fn check_up(&self) -> Result<()> {
        if self.faults.down.load(SeqCst) {
            return Err(Error::unavailable("member is down"));
        }
        Ok(())
    }

    fn check_room(&self) -> Result<()> {
        self.check_up()?;
        if self.faults.full.load(SeqCst) {
            return Err(Error::resource_exhausted("member is full"));
        }
        Ok(())
    }

    /// Whether the blob is stored here, faults aside and uncounted.
    async fn holds(&self, digest: &Digest) -> bool {
        self.mem
            .find_missing("", &[*digest])
            .await
            .unwrap()
            .is_empty()
    }

    fn blob_count(&self) -> usize {
        self.mem.blob_count()
    }
}

#[async_trait]
impl BlobStore for FaultyStore {
    async fn find_missing(&self, instance: &str, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.find_missing_calls.fetch_add(1, SeqCst);
        self.check_up()?;
        let mut missing = self.mem.find_missing(instance, digests).await?;
        if self.faults.reverse_answers.load(SeqCst) {
            missing.reverse();
        }
        Ok(missing)
    }

    async fn get(&self, instance: &str, digest: &Digest) -> Result<Bytes> {
        self.reads.fetch_add(1, SeqCst);
        self.check_up()?;
        self.mem.get(instance, digest).await
    }

    async fn read(
        &self,
        instance: &str,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<ChunkStream> {
        self.reads.fetch_add(1, SeqCst);
        self.check_up()?;
        self.mem.read(instance, digest, offset, limit).await
    }

    async fn put(&self, instance: &str, digest: &Digest, data: Bytes) -> Result<()> {
        self.puts.fetch_add(1, SeqCst);
        self.check_room()?;
        self.mem.put(instance, digest, data).await
    }

    async fn begin_write(&self, instance: &str, digest: &Digest) -> Result<Box<dyn BlobWriter>> {
        self.puts.fetch_add(1, SeqCst);
        self.check_room()?;
        Ok(Box::new(FaultyWriter {
            inner: self.mem.begin_write(instance, digest).await?,
            faults: self.faults.clone(),
            written: 0,
        }))
    }
}

struct FaultyWriter {
    inner: Box<dyn BlobWriter>,
    faults: Arc<Faults>,
    written: u64,
}

#[async_trait]
impl BlobWriter for FaultyWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if self.faults.down.load(SeqCst) {
            return Err(Error::unavailable("member is down"));
        }
        self.written += chunk.len() as u64;
        if self.written > self.faults.cut_after_bytes.load(SeqCst) {
            return Err(Error::unavailable("member died mid-stream"));
        }
        self.inner.write(chunk).await
    }

    fn committed_size(&self) -> u64 {
        self.inner.committed_size()
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        if self.faults.down.load(SeqCst) {
            return Err(Error::unavailable("member is down"));
        }
        self.inner.commit().await
    }
}

/// The members reached "over the network": a map from worker id to store.
#[derive(Default)]
struct Members {
    stores: Mutex<HashMap<String, Arc<FaultyStore>>>,
    /// The id served through `LocalMember`, which must never be asked for.
    local_id: Option<String>,
    asked_for_local: AtomicUsize,
}

impl MemberStores for Members {
    fn store(&self, holder: &Holder) -> Result<Arc<dyn BlobStore>> {
        if self.local_id.as_deref() == Some(&*holder.id) {
            self.asked_for_local.fetch_add(1, SeqCst);
            return Err(Error::internal("MemberStores asked for the local member"));
        }
        match self.stores.lock().get(&*holder.id) {
            Some(store) => Ok(store.clone()),
            None => Err(Error::unavailable(format!("no member {}", holder.id))),
        }
    }
}

struct Cluster {
    tx: PlacementSender,
    members: Arc<Members>,
    local: Option<(String, Arc<FaultyStore>)>,
    cas: ClusterStore,
}

pub(super) fn worker(i: usize) -> String {
    format!("worker-{i}")
}

pub(super) fn placement_of(ids: &[String]) -> Placement {
    let members: Vec<StorageMember> = ids
        .iter()
        .map(|id| StorageMember {
            worker_id: id.clone(),
            address: format!("mem://{id}"),
        })
        .collect();
    Placement::new(&members)
}

fn ranked_ids(placement: &Placement, digest: &Digest) -> Vec<String> {
    placement
        .ranked("", digest)
        .into_iter()
        .map(|h| h.id.to_string())
        .collect()
}

impl Cluster {
    /// `n` members, `worker-0` .. `worker-{n-1}`, all remote.
    fn new(n: usize, replica_count: usize) -> Cluster {
        Self::build(n, replica_count, false)
    }

    /// Like `new`, but `worker-0` is this process's own share.
    fn with_local(n: usize, replica_count: usize) -> Cluster {
        Self::build(n, replica_count, true)
    }

    fn build(n: usize, replica_count: usize, local: bool) -> Cluster {
        let local = local.then(|| (worker(0), FaultyStore::new()));
        let members = Arc::new(Members {
            local_id: local.as_ref().map(|(id, _)| id.clone()),
            ..Members::default()
        });
        for i in 0..n {
            if local.is_none() || i > 0 {
                members.stores.lock().insert(worker(i), FaultyStore::new());
            }
        }
        let (tx, rx) = placement_channel();
        let cas = ClusterStore::with_members(
            rx,
            replica_count,
            local.as_ref().map(|(id, store)| LocalMember {
                id: id.clone(),
                store: store.clone(),
            }),
            members.clone(),
        );
        let cluster = Cluster {
            tx,
            members,
            local,
            cas,
        };
        cluster.publish();
        cluster
    }

    /// Publishes every member known here as the placement.
    fn publish(&self) {
        let mut ids: Vec<String> = self.members.stores.lock().keys().cloned().collect();
        ids.extend(self.local.iter().map(|(id, _)| id.clone()));
        self.tx.send_replace(Arc::new(placement_of(&ids)));
    }

    /// A new member joins the cluster.
    fn add_member(&self, id: &str) -> Arc<FaultyStore> {
        let store = FaultyStore::new();
        self.members
            .stores
            .lock()
            .insert(id.to_string(), store.clone());
        self.publish();
        store
    }

    fn store(&self, id: &str) -> Arc<FaultyStore> {
        if let Some((local_id, store)) = &self.local {
            if local_id == id {
                return store.clone();
            }
        }
        self.members.stores.lock()[id].clone()
    }

    fn all_stores(&self) -> Vec<Arc<FaultyStore>> {
        let mut stores: Vec<_> = self.members.stores.lock().values().cloned().collect();
        stores.extend(self.local.iter().map(|(_, s)| s.clone()));
        stores
    }

    fn ranked(&self, digest: &Digest) -> Vec<String> {
        ranked_ids(&self.cas.placement(), digest)
    }

    /// The members that hold the blob, in rank order.
    async fn holders(&self, digest: &Digest) -> Vec<String> {
        let mut holders = Vec::new();
        for id in self.ranked(digest) {
            if self.store(&id).holds(digest).await {
                holders.push(id);
            }
        }
        holders
    }

    fn stored_anywhere(&self) -> usize {
        self.all_stores().iter().map(|s| s.blob_count()).sum()
    }
}

/// `len` pseudo-random bytes from `seed`, with their digest.
pub(super) fn blob(len: usize, seed: u64) -> (Digest, Bytes) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    (Digest::of_bytes(&data), Bytes::from(data))
}

/// The first small blob (seeds from `first` on) whose ranking under
/// `placement` satisfies `wanted`.
fn find_blob(
    placement: &Placement,
    first: u64,
    wanted: impl Fn(&[String]) -> bool,
) -> (Digest, Bytes) {
    (first..first + 100_000)
        .map(|seed| blob(100, seed))
        .find(|(d, _)| wanted(&ranked_ids(placement, d)))
        .expect("no blob with the wanted ranking")
}

/// begin_write, `data` in `chunk`-sized writes, commit.
async fn stream_write(
    cas: &ClusterStore,
    digest: &Digest,
    data: &Bytes,
    chunk: usize,
) -> Result<()> {
    let mut writer = cas.begin_write("", digest).await?;
    let mut sent = 0u64;
    for start in (0..data.len()).step_by(chunk) {
        let piece = data.slice(start..(start + chunk).min(data.len()));
        sent += piece.len() as u64;
        writer.write(piece).await?;
        assert_eq!(writer.committed_size(), sent);
    }
    writer.commit().await
}

fn err_code<T>(result: Result<T>) -> Code {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}

/// Polls (up to 5 s) until `store` holds the blob: read repair runs in the
/// background.
async fn eventually_holds(store: &FaultyStore, digest: &Digest) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if store.holds(digest).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn put_lands_on_the_top_ranked_members() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(1000, 1);
    c.cas.put("", &d, data.clone()).await.unwrap();

    let ranked = c.ranked(&d);
    assert_eq!(ranked.len(), 5);
    assert_eq!(c.holders(&d).await, ranked[..3].to_vec());
    for id in &ranked[3..] {
        assert_eq!(c.store(id).blob_count(), 0, "{id} holds a copy");
    }

    assert_eq!(c.cas.get("", &d).await.unwrap(), data);
    let (never, _) = blob(1000, 2);
    assert_eq!(
        c.cas.find_missing("", &[d, never]).await.unwrap(),
        vec![never]
    );

    // The empty blob: always present, never stored, never sent anywhere.
    let puts_before: usize = c.all_stores().iter().map(|s| s.puts.load(SeqCst)).sum();
    c.cas.put("", &Digest::EMPTY, Bytes::new()).await.unwrap();
    let mut w = c.cas.begin_write("", &Digest::EMPTY).await.unwrap();
    w.write(Bytes::new()).await.unwrap();
    w.commit().await.unwrap();
    assert!(c
        .cas
        .find_missing("", &[Digest::EMPTY])
        .await
        .unwrap()
        .is_empty());
    assert!(c.cas.get("", &Digest::EMPTY).await.unwrap().is_empty());
    let puts_after: usize = c.all_stores().iter().map(|s| s.puts.load(SeqCst)).sum();
    assert_eq!(puts_after, puts_before);
    assert_eq!(c.stored_anywhere(), 3);
}

#[tokio::test]
async fn streamed_write_lands_on_the_top_ranked_members() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(BIG, 3);
    stream_write(&c.cas, &d, &data, 512 * 1024).await.unwrap();

    let ranked = c.ranked(&d);
    assert_eq!(c.holders(&d).await, ranked[..3].to_vec());
    assert_eq!(c.stored_anywhere(), 3);
    assert_eq!(c.cas.get("", &d).await.unwrap(), data);
    let tail = collect_stream(c.cas.read("", &d, 100, Some(10)).await.unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(tail, data.slice(100..110));
}

#[tokio::test]
async fn member_cut_mid_stream_is_replaced_by_the_next_in_rank() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(BIG, 4);
    let ranked = c.ranked(&d);
    c.store(&ranked[1]).cut_after(2 * MIB as u64);

    stream_write(&c.cas, &d, &data, 512 * 1024).await.unwrap();

    assert_eq!(
        c.holders(&d).await,
        vec![ranked[0].clone(), ranked[2].clone(), ranked[3].clone()]
    );
    assert_eq!(c.store(&ranked[1]).blob_count(), 0);
    assert_eq!(c.store(&ranked[4]).blob_count(), 0);
    assert_eq!(c.store(&ranked[3]).mem.get("", &d).await.unwrap(), data);
}

#[tokio::test]
async fn down_holder_is_skipped_then_read_repaired() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(1000, 5);
    let ranked = c.ranked(&d);
    let first = c.store(&ranked[0]);
    first.set_down(true);

    c.cas.put("", &d, data.clone()).await.unwrap();
    assert_eq!(c.holders(&d).await, ranked[1..4].to_vec());

    // Still down: served by rank 2, and nothing can be repaired.
    assert_eq!(c.cas.get("", &d).await.unwrap(), data);

    // Back up: the read finds rank 1 lacking and copies the blob there.
    first.set_down(false);
    assert_eq!(c.cas.get("", &d).await.unwrap(), data);
    assert!(
        eventually_holds(&first, &d).await,
        "read repair did not copy the blob to its first holder"
    );
    assert_eq!(c.holders(&d).await, ranked[..4].to_vec());
}

#[tokio::test]
async fn new_member_gets_a_copy_by_read_repair() {
    let c = Cluster::new(4, 3);
    let old: Vec<String> = (0..4).map(worker).collect();
    let mut grown = old.clone();
    grown.push(worker(4));
    let grown = placement_of(&grown);
    // Read repair copies to holders ranked ahead of the one that served
    // the read: pick a blob the new member ranks first for.
    let (d, data) = find_blob(&grown, 1000, |ranked| ranked[0] == worker(4));

    c.cas.put("", &d, data.clone()).await.unwrap();
    let old_top = ranked_ids(&placement_of(&old), &d)[..3].to_vec();
    assert_eq!(c.holders(&d).await, old_top);

    let newcomer = c.add_member(&worker(4));
    assert_eq!(c.ranked(&d)[0], worker(4));
    assert_eq!(c.cas.get("", &d).await.unwrap(), data);
    assert!(
        eventually_holds(&newcomer, &d).await,
        "the new member did not get a copy"
    );
    assert!(c.cas.find_missing("", &[d]).await.unwrap().is_empty());
}

#[tokio::test]
async fn fewer_members_than_replicas() {
    let c = Cluster::new(2, 3);
    let (d, data) = blob(1000, 6);
    c.cas.put("", &d, data.clone()).await.unwrap();
    assert_eq!(c.holders(&d).await, c.ranked(&d));
    assert_eq!(c.ranked(&d).len(), 2);
    let (d2, data2) = blob(1000, 7);
    stream_write(&c.cas, &d2, &data2, 300).await.unwrap();
    assert_eq!(c.holders(&d2).await.len(), 2);
    assert_eq!(c.cas.get("", &d).await.unwrap(), data);
}

#[tokio::test]
async fn no_members_means_unavailable() {
    let c = Cluster::new(0, 3);
    let (d, data) = blob(1000, 8);
    assert_eq!(err_code(c.cas.put("", &d, data).await), Code::Unavailable);
    assert_eq!(err_code(c.cas.begin_write("", &d).await), Code::Unavailable);
    let (d2, _) = blob(10, 9);
    assert_eq!(
        c.cas
            .find_missing("", &[d, Digest::EMPTY, d2])
            .await
            .unwrap(),
        vec![d, d2]
    );
    assert_eq!(
        err_code(c.cas.read("", &d, 0, None).await),
        Code::Unavailable
    );
    assert_eq!(err_code(c.cas.get("", &d).await), Code::Unavailable);
    // The empty blob needs no member.
    c.cas.put("", &Digest::EMPTY, Bytes::new()).await.unwrap();
    assert!(c.cas.get("", &Digest::EMPTY).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_member_full_is_resource_exhausted() {
    let c = Cluster::new(5, 3);
    for store in c.all_stores() {
        store.set_full(true);
    }
    let (d, data) = blob(1000, 10);
    assert_eq!(
        err_code(c.cas.put("", &d, data.clone()).await),
        Code::ResourceExhausted
    );
    assert_eq!(
        err_code(c.cas.begin_write("", &d).await),
        Code::ResourceExhausted
    );
    assert_eq!(c.stored_anywhere(), 0);
    // Every member was tried before giving up.
    for store in c.all_stores() {
        assert_eq!(store.puts.load(SeqCst), 2);
    }
}

#[tokio::test]
async fn bad_data_is_invalid_argument_and_stored_nowhere() {
    let c = Cluster::new(5, 3);
    let (d, _) = blob(1000, 11);
    let (_, other) = blob(1000, 12);
    assert_eq!(
        err_code(c.cas.put("", &d, other.clone()).await),
        Code::InvalidArgument
    );
    assert_eq!(
        err_code(c.cas.put("", &d, other.slice(..999)).await),
        Code::InvalidArgument
    );
    assert_eq!(c.stored_anywhere(), 0);

    // Streamed: the right size, the wrong bytes.
    let (big, _) = blob(BIG, 13);
    let (_, wrong) = blob(BIG, 14);
    assert_eq!(
        err_code(stream_write(&c.cas, &big, &wrong, MIB).await),
        Code::InvalidArgument
    );
    // Streamed: more bytes than the digest says.
    let mut w = c.cas.begin_write("", &d).await.unwrap();
    w.write(other.clone()).await.unwrap();
    assert_eq!(
        err_code(w.write(Bytes::from_static(b"x")).await),
        Code::InvalidArgument
    );
    drop(w);
    assert_eq!(c.stored_anywhere(), 0);
    assert_eq!(err_code(c.cas.get("", &big).await), Code::NotFound);
}

#[tokio::test]
async fn read_errors_tell_missing_from_unreachable() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(1000, 15);
    assert_eq!(err_code(c.cas.read("", &d, 0, None).await), Code::NotFound);
    assert_eq!(err_code(c.cas.get("", &d).await), Code::NotFound);

    // One member could not be asked: it might have the blob.
    let ranked = c.ranked(&d);
    c.store(&ranked[4]).set_down(true);
    assert_eq!(err_code(c.cas.get("", &d).await), Code::Unavailable);
    c.store(&ranked[4]).set_down(false);

    c.cas.put("", &d, data.clone()).await.unwrap();
    assert_eq!(
        err_code(c.cas.read("", &d, 1001, None).await),
        Code::OutOfRange
    );
    let at_end = collect_stream(c.cas.read("", &d, 1000, None).await.unwrap(), 0)
        .await
        .unwrap();
    assert!(at_end.is_empty());
    // Reading at an offset past the end of the empty blob.
    assert_eq!(
        err_code(c.cas.read("", &Digest::EMPTY, 1, None).await),
        Code::OutOfRange
    );
}

#[tokio::test]
async fn find_missing_survives_down_holders() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(1000, 16);
    let (never, _) = blob(1000, 17);
    c.cas.put("", &d, data).await.unwrap();
    let ranked = c.ranked(&d);

    c.store(&ranked[0]).set_down(true);
    c.store(&ranked[1]).set_down(true);
    assert_eq!(
        c.cas.find_missing("", &[d, never]).await.unwrap(),
        vec![never]
    );

    c.store(&ranked[2]).set_down(true);
    assert_eq!(
        c.cas.find_missing("", &[d, never]).await.unwrap(),
        vec![d, never]
    );
}

#[tokio::test]
async fn local_member_is_reached_directly() {
    let c = Cluster::with_local(5, 3);
    let placement = c.cas.placement();
    let local = c.store(&worker(0));

    // worker-0 ranks first: every request about the blob starts there.
    let (d, data) = find_blob(&placement, 1000, |ranked| ranked[0] == worker(0));
    c.cas.put("", &d, data.clone()).await.unwrap();
    assert!(local.holds(&d).await);
    assert_eq!(c.holders(&d).await, c.ranked(&d)[..3].to_vec());

    let reads = local.reads.load(SeqCst);
    assert_eq!(c.cas.get("", &d).await.unwrap(), data);
    assert_eq!(local.reads.load(SeqCst), reads + 1);
    assert!(c.cas.find_missing("", &[d]).await.unwrap().is_empty());
    assert_eq!(local.find_missing_calls.load(SeqCst), 1);

    // Streamed, and with worker-0 in third place.
    let (d2, data2) = find_blob(&placement, 2000, |ranked| ranked[2] == worker(0));
    stream_write(&c.cas, &d2, &data2, 30).await.unwrap();
    assert!(local.holds(&d2).await);

    // Read repair onto the local member.
    local.set_down(true);
    let (d3, data3) = find_blob(&placement, 3000, |ranked| ranked[0] == worker(0));
    c.cas.put("", &d3, data3.clone()).await.unwrap();
    local.set_down(false);
    assert!(!local.holds(&d3).await);
    assert_eq!(c.cas.get("", &d3).await.unwrap(), data3);
    assert!(eventually_holds(&local, &d3).await);

    assert_eq!(c.members.asked_for_local.load(SeqCst), 0);
}

/// Members may answer in any order; the answer, repeated digests
/// included, is the same as when they keep the request's order.
#[tokio::test]
async fn find_missing_matches_members_answering_out_of_order() {
    let c = Cluster::new(5, 3);
    let mut asked = Vec::new();
    let mut absent = std::collections::HashSet::new();
    for seed in 0..50 {
        let (d, data) = blob(64, 300 + seed);
        if seed % 2 == 0 {
            c.cas.put("", &d, data).await.unwrap();
        } else {
            absent.insert(d);
        }
        asked.push(d);
    }
    asked.extend_from_within(10..30);
    asked.push(Digest::EMPTY);
    let expected: Vec<Digest> = asked
        .iter()
        .filter(|d| absent.contains(*d))
        .copied()
        .collect();
    assert_eq!(c.cas.find_missing("", &asked).await.unwrap(), expected);
    for store in c.all_stores() {
        store.reverse_answers();
    }
    assert_eq!(c.cas.find_missing("", &asked).await.unwrap(), expected);
}

#[tokio::test]
async fn find_missing_asks_each_member_once() {
    let c = Cluster::new(5, 3);
    let mut stored = Vec::new();
    for seed in 0..20 {
        let (d, data) = blob(64, 100 + seed);
        c.cas.put("", &d, data).await.unwrap();
        stored.push(d);
    }
    let asked: Vec<Digest> = (0u32..10_000)
        .map(|i| Digest::of_bytes(&i.to_le_bytes()))
        .chain(stored.iter().copied())
        .collect();
    let missing = c.cas.find_missing("", &asked).await.unwrap();
    assert_eq!(missing, asked[..10_000].to_vec());
    for store in c.all_stores() {
        assert!(store.find_missing_calls.load(SeqCst) <= 1);
    }
    let calls: usize = c
        .all_stores()
        .iter()
        .map(|s| s.find_missing_calls.load(SeqCst))
        .sum();
    assert_eq!(calls, 5);
}

#[tokio::test]
async fn streamed_write_skips_members_that_refuse_it() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(BIG, 18);
    let ranked = c.ranked(&d);
    c.store(&ranked[0]).set_down(true);
    c.store(&ranked[2]).set_full(true);
    stream_write(&c.cas, &d, &data, MIB).await.unwrap();
    assert_eq!(
        c.holders(&d).await,
        vec![ranked[1].clone(), ranked[3].clone(), ranked[4].clone()]
    );
}

#[tokio::test]
async fn streamed_write_with_every_writer_cut_fails_and_stores_nothing() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(BIG, 19);
    for store in c.all_stores() {
        store.cut_after(MIB as u64);
    }
    assert_eq!(
        err_code(stream_write(&c.cas, &d, &data, 512 * 1024).await),
        Code::Unavailable
    );
    assert_eq!(c.stored_anywhere(), 0);
}

#[tokio::test]
async fn put_with_too_few_live_members_keeps_what_it_could() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(1000, 20);
    let ranked = c.ranked(&d);
    for id in &ranked[..3] {
        c.store(id).set_down(true);
    }
    c.cas.put("", &d, data).await.unwrap();
    assert_eq!(c.holders(&d).await, ranked[3..].to_vec());
    for id in &ranked {
        c.store(id).set_down(true);
    }
    let (d2, data2) = blob(1000, 21);
    assert_eq!(err_code(c.cas.put("", &d2, data2).await), Code::Unavailable);
}

#[tokio::test]
async fn blob_found_off_place_is_copied_to_every_holder() {
    let c = Cluster::new(5, 3);
    let (d, data) = blob(BIG, 22);
    let ranked = c.ranked(&d);
    for id in &ranked[..3] {
        c.store(id).set_down(true);
    }
    // Only ranks 4 and 5 take it: every member was tried.
    stream_write(&c.cas, &d, &data, MIB).await.unwrap();
    assert_eq!(c.holders(&d).await, ranked[3..].to_vec());
    // Its holders cannot be asked, so FindMissingBlobs reports it missing.
    assert_eq!(c.cas.find_missing("", &[d]).await.unwrap(), vec![d]);

    for id in &ranked[..3] {
        c.store(id).set_down(false);
    }
    assert_eq!(c.cas.get("", &d).await.unwrap(), data);
    for id in &ranked[..3] {
        assert!(
            eventually_holds(&c.store(id), &d).await,
            "read repair did not copy the blob to {id}"
        );
        assert_eq!(c.store(id).mem.get("", &d).await.unwrap(), data);
    }
    assert!(c.cas.find_missing("", &[d]).await.unwrap().is_empty());
}
