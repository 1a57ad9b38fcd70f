//! `Repairer` over in-process members: each member a real `DiskStore` in a
//! temporary directory (or, where a fault is wanted, a `FaultyStore` from
//! the cluster tests), reached through an in-memory `MemberStores`. Blobs
//! are seeded where an earlier placement put them, the membership changes,
//! and each pass's report and the members' contents are compared with what
//! the placements say.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use parking_lot::Mutex;
use reapi_core::blob_store::{BlobStore, SMALL_BLOB_LIMIT};
use reapi_core::cluster::placement::{
    placement_channel, Holder, Placement, PlacementReceiver, PlacementSender,
};
use reapi_core::{Digest, Error, Result};
use tempfile::TempDir;

use super::{RateLimiter, RepairConfig, RepairReport, Repairer, BURST};
use crate::store::cluster::tests::{blob, placement_of, worker, FaultyStore, BIG};
use crate::store::cluster::{ClusterStore, LocalMember, MemberStores};
use crate::store::{DiskStore, DiskStoreConfig};

/// Copies of every blob.
const K: usize = 3;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A blob of the test and the instance it is stored under.
#[derive(Clone, PartialEq)]
struct TestBlob {
    instance: &'static str,
    digest: Digest,
    data: Bytes,
}

impl TestBlob {
    fn new(instance: &'static str, (digest, data): (Digest, Bytes)) -> TestBlob {
        TestBlob {
            instance,
            digest,
            data,
        }
    }

    fn size(&self) -> u64 {
        self.digest.size()
    }
}

/// `n` small blobs of varied sizes from seeds `first..`, every third one
/// under instance `team-a` (placement ranks per instance).
fn small_blobs(n: u64, first: u64) -> Vec<TestBlob> {
    (first..first + n)
        .map(|seed| {
            let instance = if seed % 3 == 0 { "team-a" } else { "" };
            TestBlob::new(instance, blob(100 + (seed as usize * 397) % 4000, seed))
        })
        .collect()
}

/// The blob's top `k` holders under `placement`, best first.
fn top(placement: &Placement, b: &TestBlob, k: usize) -> Vec<String> {
    placement
        .ranked(b.instance, &b.digest)
        .into_iter()
        .take(k)
        .map(|h| h.id.to_string())
        .collect()
}

fn set<'a>(ids: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    ids.into_iter().cloned().collect()
}

/// Repair as fast as it can go.
fn unlimited() -> RepairConfig {
    RepairConfig {
        bytes_per_second: 1 << 40,
        concurrency: 4,
        ..RepairConfig::default()
    }
}

/// The members "over the network": worker id to store. A member missing
/// from the map is unreachable.
#[derive(Default)]
struct Net {
    stores: Mutex<HashMap<String, Arc<dyn BlobStore>>>,
}

impl Net {
    fn get(&self, id: &str) -> Result<Arc<dyn BlobStore>> {
        self.stores
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::unavailable(format!("no member {id}")))
    }
}

impl MemberStores for Net {
    fn store(&self, holder: &Holder) -> Result<Arc<dyn BlobStore>> {
        self.get(&holder.id)
    }
}

/// Members sharing one placement channel; each member with a disk can run
/// its own `Repairer` (its own `ClusterStore`, its disk as the local
/// member, everyone else through `net`).
struct Cluster {
    dir: TempDir,
    tx: PlacementSender,
    rx: PlacementReceiver,
    net: Arc<Net>,
    disks: Mutex<HashMap<String, DiskStore>>,
}

impl Cluster {
    /// Members `ids`, each over its own `DiskStore`, published as the
    /// placement.
    async fn new(ids: &[String]) -> Cluster {
        let (tx, rx) = placement_channel();
        let c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            tx,
            rx,
            net: Arc::default(),
            disks: Mutex::default(),
        };
        for id in ids {
            c.add_disk(id).await;
        }
        c.publish(ids);
        c
    }

    /// A member over a new disk store: reachable, not yet in the placement.
    async fn add_disk(&self, id: &str) -> DiskStore {
        let disk = DiskStore::open(DiskStoreConfig {
            root: self.dir.path().join(id),
            max_bytes: 1 << 30,
            retention: Duration::ZERO,
        })
        .await
        .unwrap();
        self.net
            .stores
            .lock()
            .insert(id.to_string(), Arc::new(disk.clone()));
        self.disks.lock().insert(id.to_string(), disk.clone());
        disk
    }

    /// A member over a `FaultyStore`: reachable, not yet in the placement.
    fn add_faulty(&self, id: &str) -> Arc<FaultyStore> {
        let store = FaultyStore::new();
        self.net.stores.lock().insert(id.to_string(), store.clone());
        store
    }

    fn publish(&self, ids: &[String]) {
        self.tx.send_replace(Arc::new(placement_of(ids)));
    }

    fn placement(&self) -> Arc<Placement> {
        self.tx.borrow().clone()
    }

    fn member_ids(&self) -> Vec<String> {
        self.placement()
            .holders()
            .iter()
            .map(|h| h.id.to_string())
            .collect()
    }

    /// `id` dies: unreachable, and out of the placement.
    fn kill(&self, id: &str) {
        self.net.stores.lock().remove(id);
        let ids: Vec<String> = self.member_ids().into_iter().filter(|m| m != id).collect();
        self.publish(&ids);
    }

    /// Member `id`'s repairer; `id` must have a disk.
    fn repairer(&self, id: &str, config: RepairConfig) -> Repairer {
        let disk = self.disks.lock()[id].clone();
        let cas = ClusterStore::with_members(
            self.rx.clone(),
            K,
            Some(LocalMember {
                id: id.to_string(),
                store: Arc::new(disk.clone()),
            }),
            self.net.clone(),
        );
        Repairer::new(cas, Arc::new(disk), config).expect("the store has a local member")
    }

    /// One unlimited pass of member `id`.
    async fn pass(&self, id: &str) -> RepairReport {
        self.repairer(id, unlimited()).pass().await
    }

    /// Stores the blob on members `ids` directly (a write made under an
    /// earlier placement).
    async fn seed(&self, ids: &[String], b: &TestBlob) {
        for id in ids {
            let store = self.net.get(id).unwrap();
            store
                .put(b.instance, &b.digest, b.data.clone())
                .await
                .unwrap();
        }
    }

    async fn holds(&self, id: &str, b: &TestBlob) -> bool {
        let store = self.net.get(id).unwrap();
        store
            .find_missing(b.instance, &[b.digest])
            .await
            .unwrap()
            .is_empty()
    }

    /// The reachable members holding the blob (a member that is down says
    /// nothing).
    async fn holders(&self, b: &TestBlob) -> BTreeSet<String> {
        let stores: Vec<(String, Arc<dyn BlobStore>)> = self
            .net
            .stores
            .lock()
            .iter()
            .map(|(id, store)| (id.clone(), store.clone()))
            .collect();
        let mut holders = BTreeSet::new();
        for (id, store) in stores {
            if let Ok(missing) = store.find_missing(b.instance, &[b.digest]).await {
                if missing.is_empty() {
                    holders.insert(id);
                }
            }
        }
        holders
    }

    /// The blob's content as member `id` serves it.
    async fn content_on(&self, id: &str, b: &TestBlob) -> Bytes {
        self.net
            .get(id)
            .unwrap()
            .get(b.instance, &b.digest)
            .await
            .unwrap()
    }
}

fn sum(reports: impl IntoIterator<Item = RepairReport>) -> RepairReport {
    reports
        .into_iter()
        .fold(RepairReport::default(), |a, r| RepairReport {
            checked: a.checked + r.checked,
            copied: a.copied + r.copied,
            copied_bytes: a.copied_bytes + r.copied_bytes,
            failed: a.failed + r.failed,
        })
}

// ---------------------------------------------------------------------------
// Membership changes
// ---------------------------------------------------------------------------

/// A member dies: a survivor's pass re-copies exactly the blobs it is now
/// the best-ranked holder of, to the holders that lack them, and leaves the
/// others to their best holder; once every survivor has run a pass, each
/// blob is on its 3 holders again, each lost copy made once.
#[tokio::test]
async fn after_a_member_dies_each_blob_is_recopied_by_its_best_surviving_holder() {
    let ids: Vec<String> = (0..5).map(worker).collect();
    let c = Cluster::new(&ids).await;
    let before = c.placement();
    let mut blobs = small_blobs(60, 1);
    // Above SMALL_BLOB_LIMIT: copied as a stream.
    let big = TestBlob::new("", blob(BIG, 1000));
    blobs.push(big.clone());
    for b in &blobs {
        c.seed(&top(&before, b, K), b).await;
    }

    // The big blob's first holder dies; its second becomes its best.
    let dead = top(&before, &big, K)[0].clone();
    c.kill(&dead);
    let after = c.placement();
    assert_eq!(after.len(), 4);
    let me = top(&after, &big, K)[0].clone();

    // What `me`'s pass must do, from the placements alone.
    let best_old_holder = |b: &TestBlob| -> String {
        let old = top(&before, b, K);
        top(&after, b, K)
            .into_iter()
            .find(|id| old.contains(id))
            .unwrap()
    };
    let mut expected = RepairReport::default();
    let (mut mine, mut left_to_others) = (0, 0);
    for b in &blobs {
        let old = top(&before, b, K);
        if !old.contains(&me) {
            continue;
        }
        expected.checked += 1;
        let lacking = top(&after, b, K)
            .iter()
            .filter(|id| !old.contains(id))
            .count() as u64;
        if lacking == 0 {
            continue;
        }
        if best_old_holder(b) == me {
            expected.copied += lacking;
            expected.copied_bytes += lacking * b.size();
            mine += 1;
        } else {
            left_to_others += 1;
        }
    }
    assert!(
        mine > 1 && left_to_others > 0,
        "the blobs do not exercise both cases ({mine} to copy, {left_to_others} left to others)"
    );

    let report = c.pass(&me).await;
    assert_eq!(report, expected, "{me}'s pass");
    for b in &blobs {
        let old = top(&before, b, K);
        let want = if old.contains(&me) && best_old_holder(b) == me {
            set(&top(&after, b, K))
        } else {
            set(old.iter().filter(|id| **id != dead))
        };
        assert_eq!(
            c.holders(b).await,
            want,
            "blob {} after {me}'s pass",
            b.digest
        );
    }
    let third = top(&after, &big, K)[2].clone();
    assert_eq!(c.content_on(&third, &big).await, big.data);

    // The other survivors finish the job: every lost copy made once.
    let mut reports = vec![report];
    for id in after.holders().iter().map(|h| h.id.to_string()) {
        if id != me {
            reports.push(c.pass(&id).await);
        }
    }
    let total = sum(reports);
    let lost: Vec<&TestBlob> = blobs
        .iter()
        .filter(|b| top(&before, b, K).contains(&dead))
        .collect();
    assert_eq!(total.copied, lost.len() as u64);
    assert_eq!(
        total.copied_bytes,
        lost.iter().map(|b| b.size()).sum::<u64>()
    );
    assert_eq!(total.failed, 0);
    for b in &blobs {
        assert_eq!(
            c.holders(b).await,
            set(&top(&after, b, K)),
            "blob {} after every survivor's pass",
            b.digest
        );
    }
}

/// A member joins: the old holders' passes copy to it exactly the blobs
/// that now place on it (each by its best-ranked old holder), and the old
/// holder a blob no longer places on keeps its copy: repair never deletes.
#[tokio::test]
async fn a_joining_member_receives_the_blobs_that_now_place_on_it() {
    let old_ids: Vec<String> = (0..4).map(worker).collect();
    let c = Cluster::new(&old_ids).await;
    let before = c.placement();
    let blobs = small_blobs(60, 100);
    for b in &blobs {
        c.seed(&top(&before, b, K), b).await;
    }

    let newcomer = worker(4);
    let new_disk = c.add_disk(&newcomer).await;
    let mut ids = old_ids.clone();
    ids.push(newcomer.clone());
    c.publish(&ids);
    let after = c.placement();
    let moved: Vec<&TestBlob> = blobs
        .iter()
        .filter(|b| top(&after, b, K).contains(&newcomer))
        .collect();
    assert!(!moved.is_empty() && moved.len() < blobs.len());

    for id in &old_ids {
        let mut expected = RepairReport::default();
        for b in &blobs {
            let old = top(&before, b, K);
            if !old.contains(id) {
                continue;
            }
            expected.checked += 1;
            let new = top(&after, b, K);
            let best = new.iter().find(|m| old.contains(m)).unwrap();
            if new.contains(&newcomer) && best == id {
                expected.copied += 1;
                expected.copied_bytes += b.size();
            }
        }
        assert_eq!(c.pass(id).await, expected, "{id}'s pass");
    }

    assert_eq!(new_disk.blob_count(), moved.len());
    for b in &blobs {
        let old = set(&top(&before, b, K));
        let mut want = old.clone();
        if moved.contains(&b) {
            // The member it no longer places on still has it.
            assert_eq!(old.difference(&set(&top(&after, b, K))).count(), 1);
            want.insert(newcomer.clone());
            assert_eq!(c.content_on(&newcomer, b).await, b.data);
        }
        assert_eq!(c.holders(b).await, want, "blob {}", b.digest);
    }

    // The newcomer's own pass finds everything in place.
    assert_eq!(
        c.pass(&newcomer).await,
        RepairReport {
            checked: moved.len() as u64,
            ..RepairReport::default()
        }
    );
}

/// Every blob on its holders already: each member's pass looks at its
/// blobs and copies nothing; no member is even asked to store anything.
#[tokio::test]
async fn a_pass_with_every_copy_in_place_copies_nothing() {
    let ids: Vec<String> = (0..5).map(worker).collect();
    let c = Cluster::new(&ids[..4]).await;
    // One member counts the writes it is asked for.
    let counting = c.add_faulty(&ids[4]);
    c.publish(&ids);
    let placement = c.placement();
    let mut blobs = small_blobs(40, 300);
    blobs.push(TestBlob::new("", blob(BIG, 3000)));
    for b in &blobs {
        c.seed(&top(&placement, b, K), b).await;
    }
    let puts = counting.puts.load(SeqCst);
    assert!(puts > 0);

    for id in &ids[..4] {
        let held = blobs
            .iter()
            .filter(|b| top(&placement, b, K).contains(id))
            .count() as u64;
        assert!(held > 0);
        assert_eq!(
            c.pass(id).await,
            RepairReport {
                checked: held,
                ..RepairReport::default()
            },
            "{id}'s pass"
        );
    }
    assert_eq!(counting.puts.load(SeqCst), puts);
    for b in &blobs {
        assert_eq!(c.holders(b).await, set(&top(&placement, b, K)));
    }
}

/// A draining member's hand-off copies each of its blobs to the holders it
/// has without that member, including the blobs another member ranks
/// ahead of it for; after it is gone, the survivors have nothing left to
/// copy.
#[tokio::test]
async fn hand_off_leaves_every_blob_of_a_draining_member_on_the_others() {
    let ids: Vec<String> = (0..5).map(worker).collect();
    let c = Cluster::new(&ids).await;
    let before = c.placement();
    let mut blobs = small_blobs(60, 500);
    blobs.push(TestBlob::new("", blob(BIG, 5000)));
    for b in &blobs {
        c.seed(&top(&before, b, K), b).await;
    }

    let leaving = top(&before, &blobs[60], K)[1].clone();
    let without = before.without(&leaving);
    let held: Vec<&TestBlob> = blobs
        .iter()
        .filter(|b| top(&before, b, K).contains(&leaving))
        .collect();
    let not_best = held
        .iter()
        .filter(|b| top(&before, b, K)[0] != leaving)
        .count();
    assert!(not_best > 0 && not_best < held.len());

    let repairer = c.repairer(&leaving, unlimited());
    // Still a member: every copy is in place, a pass copies nothing.
    assert_eq!(
        repairer.pass().await,
        RepairReport {
            checked: held.len() as u64,
            ..RepairReport::default()
        }
    );

    // Each blob it holds lacks exactly one holder once it is left out.
    assert_eq!(
        repairer.hand_off().await,
        RepairReport {
            checked: held.len() as u64,
            copied: held.len() as u64,
            copied_bytes: held.iter().map(|b| b.size()).sum(),
            failed: 0,
        }
    );
    for b in &blobs {
        let mut want = set(&top(&without, b, K));
        if held.contains(&b) {
            want.insert(leaving.clone());
        }
        assert_eq!(c.holders(b).await, want, "blob {} after hand-off", b.digest);
    }

    c.kill(&leaving);
    let after = c.placement();
    assert_eq!(*after, without);
    for id in after.holders().iter().map(|h| h.id.to_string()) {
        let report = c.pass(&id).await;
        assert_eq!(
            (report.copied, report.failed),
            (0, 0),
            "{id}'s pass after the hand-off"
        );
    }
}

// ---------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------

// The limiter keeps its account on `std::time::Instant` and only sleeps
// with tokio, so a paused tokio clock would not move it (and tokio's
// `test-util` is not enabled here): these tests check whether a `take`
// waits from its first poll and read the account directly.

#[tokio::test]
async fn rate_limiter_lets_one_burst_through_then_makes_takers_wait() {
    let limiter = RateLimiter::new(1_000_000);
    let start = Instant::now();
    // One second's worth goes at once...
    for _ in 0..4 {
        assert!(
            limiter.take(250_000).now_or_never().is_some(),
            "a take within the burst waited"
        );
    }
    // ...anything more waits for the rate.
    assert!(
        limiter.take(500_000).now_or_never().is_none(),
        "a take beyond the burst did not wait"
    );
    let paid = *limiter.paid_until.lock();
    let cost = Duration::from_millis(1500);
    assert!(
        paid >= start + cost && paid <= Instant::now() + cost,
        "1.5 MB at 1 MB/s is not paid 1.5 s ahead"
    );
    assert_eq!(BURST, Duration::from_secs(1));
}

#[tokio::test]
async fn rate_limiter_saves_up_no_more_than_the_burst() {
    let limiter = RateLimiter::new(1_000_000);
    // An hour unused.
    *limiter.paid_until.lock() = Instant::now()
        .checked_sub(Duration::from_secs(3600))
        .unwrap();
    assert!(limiter.take(1_000_000).now_or_never().is_some());
    assert!(
        limiter.take(500_000).now_or_never().is_none(),
        "unused rate was saved up beyond the burst"
    );
}

/// A pass's copies are paid for at the configured rate: 1.5 MiB at
/// 1 MiB/s cannot finish before 0.5 s (the first second's worth is the
/// burst). Only a lower bound on time is asserted.
#[tokio::test]
async fn a_pass_copies_no_faster_than_the_configured_rate() {
    let ids: Vec<String> = (0..2).map(worker).collect();
    let c = Cluster::new(&ids).await;
    // 24 blobs of 64 KiB, only on worker-0: each is copied to worker-1.
    let blobs: Vec<TestBlob> = (0..24)
        .map(|seed| TestBlob::new("", blob(64 << 10, 700 + seed)))
        .collect();
    for b in &blobs {
        c.seed(&ids[..1], b).await;
    }
    let rate: u64 = 1 << 20;
    let total: u64 = 24 * (64 << 10);
    let repairer = c.repairer(
        &ids[0],
        RepairConfig {
            bytes_per_second: rate,
            concurrency: 4,
            ..RepairConfig::default()
        },
    );

    let start = Instant::now();
    let report = repairer.pass().await;
    let elapsed = start.elapsed();
    assert_eq!(
        report,
        RepairReport {
            checked: 24,
            copied: 24,
            copied_bytes: total,
            failed: 0,
        }
    );
    let at_rate = Duration::from_secs_f64(total as f64 / rate as f64);
    let slack = Duration::from_millis(1);
    let paid = *repairer.limiter.paid_until.lock();
    assert!(
        paid + slack >= start + at_rate,
        "the limiter was not charged for every byte copied"
    );
    assert!(
        elapsed + slack >= at_rate - BURST,
        "{total} bytes copied in {elapsed:?} at {rate} bytes/s"
    );
    for b in &blobs {
        assert!(c.holds(&ids[1], b).await);
    }
}

// ---------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------

/// The copies a second round of passes must make: (those member `me`'s
/// pass makes, those the other holders' passes make). The best-ranked
/// holder that has a blob copies it, or `me` when none has it; `having`
/// is who has each blob, `lacking` how many of its holders lack it.
fn second_round(
    placement: &Placement,
    blobs: &[TestBlob],
    me: &str,
    having: impl Fn(&TestBlob) -> BTreeSet<String>,
    lacking: impl Fn(&TestBlob) -> u64,
) -> (RepairReport, RepairReport) {
    let (mut mine, mut others) = (RepairReport::default(), RepairReport::default());
    for b in blobs {
        let has = having(b);
        let copier = match top(placement, b, K).into_iter().find(|id| has.contains(id)) {
            Some(id) if id != me => &mut others,
            _ => &mut mine,
        };
        let n = lacking(b);
        copier.copied += n;
        copier.copied_bytes += n * b.size();
    }
    (mine, others)
}

/// Copies to a member that refuses writes, or cuts a streamed one, fail
/// and are counted; every other copy of the pass is still made. With the
/// faults gone, the next passes make the failed ones: this member's for
/// the blobs it still ranks first among the holders that have them, the
/// other holders' for the rest.
#[tokio::test]
async fn failed_copies_are_counted_and_the_rest_of_the_pass_goes_on() {
    let ids: Vec<String> = (0..5).map(worker).collect();
    let c = Cluster::new(&ids[..3]).await;
    let full = c.add_faulty(&ids[3]);
    full.set_full(true);
    let cut = c.add_faulty(&ids[4]);
    cut.cut_after(1 << 20);
    c.publish(&ids);
    let placement = c.placement();

    // The small blobs place on the member that refuses writes or on
    // neither faulty member, the big one on the member that cuts streams:
    // only disk members, which run repair, ever hold a blob.
    let mut blobs: Vec<TestBlob> = small_blobs(80, 900)
        .into_iter()
        .filter(|b| !top(&placement, b, K).contains(&ids[4]))
        .collect();
    let big = (9000..9100)
        .map(|seed| TestBlob::new("", blob(BIG, seed)))
        .find(|b| top(&placement, b, K).contains(&ids[4]))
        .unwrap();
    blobs.push(big);
    // Written while no other member could take them: only on worker-0,
    // which copies each to every holder.
    for b in &blobs {
        c.seed(&ids[..1], b).await;
    }
    let fails = |target: &str, b: &TestBlob| {
        target == ids[3] || (target == ids[4] && b.size() > SMALL_BLOB_LIMIT)
    };
    let targets = |b: &TestBlob| -> Vec<String> {
        top(&placement, b, K)
            .into_iter()
            .filter(|id| *id != ids[0])
            .collect()
    };
    let mut expected = RepairReport {
        checked: blobs.len() as u64,
        ..RepairReport::default()
    };
    for b in &blobs {
        for target in targets(b) {
            if fails(&target, b) {
                expected.failed += 1;
            } else {
                expected.copied += 1;
                expected.copied_bytes += b.size();
            }
        }
    }
    assert!(expected.failed > 1 && expected.copied > 1);

    // One copy at a time: the failures come between successes.
    let repairer = c.repairer(
        &ids[0],
        RepairConfig {
            concurrency: 1,
            ..unlimited()
        },
    );
    assert_eq!(repairer.pass().await, expected, "the first pass");
    // The blobs with a failed copy stay under-replicated; nothing is left
    // to copy in this pass.
    let short = blobs
        .iter()
        .filter(|b| targets(b).iter().any(|t| fails(t, b)))
        .count();
    assert!(short > 1);
    assert_eq!(repairer.progress().under_replicated(), short as i64);
    assert_eq!(repairer.progress().backlog_bytes(), 0);
    let to_full = blobs
        .iter()
        .filter(|b| targets(b).contains(&ids[3]))
        .count();
    assert_eq!(full.puts.load(SeqCst), to_full, "a copy was not tried");
    assert_eq!(cut.puts.load(SeqCst), 1);
    let having = |b: &TestBlob| {
        let mut has = set(targets(b).iter().filter(|t| !fails(t, b)));
        has.insert(ids[0].clone());
        has
    };
    for b in &blobs {
        assert_eq!(c.holders(b).await, having(b), "blob {}", b.digest);
    }

    full.set_full(false);
    cut.cut_after(u64::MAX);
    let (mine, others) = second_round(&placement, &blobs, &ids[0], having, |b| {
        targets(b).iter().filter(|t| fails(t, b)).count() as u64
    });
    assert!(mine.copied > 0 && others.copied > 0);
    assert_eq!(mine.copied + others.copied, expected.failed);
    assert_eq!(
        repairer.pass().await,
        RepairReport {
            checked: blobs.len() as u64,
            ..mine
        },
        "worker-0's second pass"
    );
    assert_eq!(
        repairer.progress().under_replicated(),
        0,
        "worker-0 made every copy it was to make"
    );
    let rest = sum([c.pass(&ids[1]).await, c.pass(&ids[2]).await]);
    assert_eq!(
        (rest.copied, rest.copied_bytes, rest.failed),
        (others.copied, others.copied_bytes, 0),
        "the other holders' passes"
    );
    for b in &blobs {
        let mut want = set(&top(&placement, b, K));
        want.insert(ids[0].clone());
        assert_eq!(c.holders(b).await, want, "blob {}", b.digest);
    }
}

/// A holder that cannot say what it has is neither relied on nor copied
/// to (not a failure) while the rest is copied; once it is back, the next
/// passes copy to it.
#[tokio::test]
async fn a_member_that_cannot_answer_is_left_for_the_next_pass() {
    let ids: Vec<String> = (0..4).map(worker).collect();
    let c = Cluster::new(&ids[..3]).await;
    let down = c.add_faulty(&ids[3]);
    down.set_down(true);
    c.publish(&ids);
    let placement = c.placement();
    let blobs = small_blobs(30, 1200);
    for b in &blobs {
        c.seed(&ids[..1], b).await;
    }
    let targets = |b: &TestBlob| -> Vec<String> {
        top(&placement, b, K)
            .into_iter()
            .filter(|id| *id != ids[0])
            .collect()
    };
    let reachable: Vec<(&TestBlob, String)> = blobs
        .iter()
        .flat_map(|b| targets(b).into_iter().map(move |t| (b, t)))
        .filter(|(_, t)| *t != ids[3])
        .collect();
    let to_down = blobs
        .iter()
        .filter(|b| targets(b).contains(&ids[3]))
        .count();
    assert!(to_down > 0);

    let repairer = c.repairer(&ids[0], unlimited());
    assert_eq!(
        repairer.pass().await,
        RepairReport {
            checked: blobs.len() as u64,
            copied: reachable.len() as u64,
            copied_bytes: reachable.iter().map(|(b, _)| b.size()).sum(),
            failed: 0,
        },
        "the pass with a member down"
    );
    assert_eq!(down.puts.load(SeqCst), 0);
    let having = |b: &TestBlob| {
        let mut has = set(targets(b).iter().filter(|t| **t != ids[3]));
        has.insert(ids[0].clone());
        has
    };
    for b in &blobs {
        assert_eq!(c.holders(b).await, having(b), "blob {}", b.digest);
    }

    down.set_down(false);
    let (mine, others) = second_round(&placement, &blobs, &ids[0], having, |b| {
        u64::from(targets(b).contains(&ids[3]))
    });
    assert_eq!(mine.copied + others.copied, to_down as u64);
    assert_eq!(
        repairer.pass().await,
        RepairReport {
            checked: blobs.len() as u64,
            ..mine
        },
        "worker-0's pass once the member is back"
    );
    let rest = sum([c.pass(&ids[1]).await, c.pass(&ids[2]).await]);
    assert_eq!(
        (rest.copied, rest.copied_bytes, rest.failed),
        (others.copied, others.copied_bytes, 0),
        "the other holders' passes"
    );
    assert_eq!(down.puts.load(SeqCst), to_down);
    for b in &blobs {
        let mut want = set(&top(&placement, b, K));
        want.insert(ids[0].clone());
        assert_eq!(c.holders(b).await, want, "blob {}", b.digest);
    }
}

// ---------------------------------------------------------------------------
// The background task
// ---------------------------------------------------------------------------

/// Spawned repairers run a pass when the membership changes: after a
/// member dies, its blobs get their copies back without anyone calling
/// `pass`.
#[tokio::test]
async fn spawned_repair_runs_after_a_membership_change() {
    let ids: Vec<String> = (0..4).map(worker).collect();
    let c = Cluster::new(&ids).await;
    let before = c.placement();
    let blobs = small_blobs(30, 1500);
    for b in &blobs {
        c.seed(&top(&before, b, K), b).await;
    }
    let dead = ids[3].clone();
    let config = RepairConfig {
        settle: Duration::from_millis(10),
        period: Duration::from_secs(3600),
        ..unlimited()
    };
    let tasks: Vec<_> = ids[..3]
        .iter()
        .map(|id| c.repairer(id, config.clone()).spawn())
        .collect();
    c.kill(&dead);
    let after = c.placement();
    let lost: Vec<&TestBlob> = blobs
        .iter()
        .filter(|b| top(&before, b, K).contains(&dead))
        .collect();
    assert!(!lost.is_empty());

    // Polled, with a deadline: the passes run in the background.
    let deadline = Instant::now() + Duration::from_secs(30);
    for b in &blobs {
        let want = set(&top(&after, b, K));
        while c.holders(b).await != want {
            assert!(
                Instant::now() < deadline,
                "blob {} did not get its copies back",
                b.digest
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for task in tasks {
        task.abort();
    }
}

/// The task ends when the placement's sender is gone (the process is
/// stopping); a store without a local member has no repairer.
#[tokio::test]
async fn spawned_repair_ends_when_the_placement_sender_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskStore::open(DiskStoreConfig {
        root: dir.path().to_owned(),
        max_bytes: 1 << 20,
        retention: Duration::ZERO,
    })
    .await
    .unwrap();
    let (tx, rx) = placement_channel();
    tx.send_replace(Arc::new(placement_of(&[worker(0)])));
    let without_local = ClusterStore::with_members(rx.clone(), K, None, Arc::new(Net::default()));
    assert!(Repairer::new(without_local, Arc::new(disk.clone()), unlimited()).is_none());

    let cas = ClusterStore::with_members(
        rx,
        K,
        Some(LocalMember {
            id: worker(0),
            store: Arc::new(disk.clone()),
        }),
        Arc::new(Net::default()),
    );
    let repairer = Repairer::new(
        cas,
        Arc::new(disk),
        RepairConfig {
            settle: Duration::ZERO,
            period: Duration::from_secs(3600),
            ..unlimited()
        },
    )
    .unwrap();
    let task = repairer.spawn();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the repair task outlived the placement sender")
        .unwrap();
}
