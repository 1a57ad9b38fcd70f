//! `ReplicatedActionCache`: the action cache spread over the schedulers.
//! Each entry lives on the top `metadata_replica_count` schedulers for its
//! action digest (rendezvous hashing over the live schedulers, keyed by
//! their addresses, which survive restarts). Writes go to all of them,
//! reads to each in rank order until one has the entry; a holder found
//! without it gets a copy (read repair).
//!
//! Each scheduler keeps its share in its local action cache (on its disk).
//! Peers are reached through their public ActionCache service with the
//! [`REPLICA_HEADER`] set, which makes the receiver answer from its local
//! share alone ([`crate::service::ActionCacheRouter`]).
//!
//! After a membership change, [`ReplicatedActionCache::spawn_rebalancer`]
//! copies every local entry to the holders that newly rank for it: a
//! scheduler that died is replaced, one that comes back gets its share
//! back, even when it was out for less than the settle time; so does one
//! that restarted too quickly to leave the membership, once it is reported
//! as restarted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use reapi_core::cluster::placement::{Holder, Placement, PlacementReceiver};
use reapi_core::proto::remote_execution::action_cache_client::ActionCacheClient;
use reapi_core::proto::remote_execution::{
    ActionResult, GetActionResultRequest, UpdateActionResultRequest,
};
use reapi_core::{ActionCache, Digest, Error, Result};
use tokio::sync::mpsc::UnboundedReceiver;
use tonic::transport::Channel;
use tonic::Code;

use crate::service::MAX_DECODING_MESSAGE_SIZE;

/// Set on a request one scheduler makes of another's action cache: answer
/// from your own share, do not replicate.
pub const REPLICA_HEADER: &str = "reapi-ac-replica";

/// Default number of schedulers holding each entry.
pub const DEFAULT_METADATA_REPLICA_COUNT: usize = 3;

/// How long a call to a peer may take. Without a bound, a peer that takes
/// connections but does not answer (stopped, partitioned) would hold every
/// put forever, and with it the completion of every action it holds the
/// result of, until long after heartbeats counted it out.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// Entries per rebalancing round sent at once.
const REBALANCE_CONCURRENCY: usize = 16;

/// Lists the entries of a local share.
pub trait ActionCacheEntries: Send + Sync + 'static {
    fn list_entries(&self) -> Result<Vec<(String, Digest)>>;
}

impl ActionCacheEntries for super::DiskActionCache {
    fn list_entries(&self) -> Result<Vec<(String, Digest)>> {
        super::DiskActionCache::list_entries(self)
    }
}

pub struct ReplicatedActionCache {
    placement: PlacementReceiver,
    replica_count: usize,
    /// This scheduler's member id (its advertised address).
    self_id: String,
    local: Arc<dyn ActionCache>,
    peers: Mutex<HashMap<Arc<str>, ActionCacheClient<Channel>>>,
}

impl ReplicatedActionCache {
    pub fn new(
        placement: PlacementReceiver,
        replica_count: usize,
        self_id: impl Into<String>,
        local: Arc<dyn ActionCache>,
    ) -> Arc<Self> {
        Arc::new(ReplicatedActionCache {
            placement,
            replica_count: replica_count.max(1),
            self_id: self_id.into(),
            local,
            peers: Mutex::new(HashMap::new()),
        })
    }

    fn placement(&self) -> Arc<Placement> {
        self.placement.borrow().clone()
    }

    /// The holders of an entry, best first; this scheduler alone when it
    /// knows no members yet.
    fn holders(&self, placement: &Placement, instance: &str, digest: &Digest) -> Vec<Holder> {
        let k = placement.copies_wanted(self.replica_count);
        placement
            .ranked(instance, digest)
            .into_iter()
            .take(k)
            .cloned()
            .collect()
    }

    fn is_me(&self, holder: &Holder) -> bool {
        *holder.id == *self.self_id
    }

    fn client(&self, holder: &Holder) -> Result<ActionCacheClient<Channel>> {
        let mut peers = self.peers.lock();
        if let Some(client) = peers.get(&holder.address) {
            return Ok(client.clone());
        }
        let channel = reapi_core::cluster::transport::endpoint(&holder.address)?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .timeout(PEER_TIMEOUT)
            .connect_lazy();
        let client =
            ActionCacheClient::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
        peers.insert(holder.address.clone(), client.clone());
        Ok(client)
    }

    async fn get_from(
        &self,
        holder: &Holder,
        instance: &str,
        digest: &Digest,
    ) -> Result<Option<ActionResult>> {
        if self.is_me(holder) {
            return self.local.get(instance, digest).await;
        }
        let mut request = tonic::Request::new(GetActionResultRequest {
            instance_name: instance.to_string(),
            action_digest: Some(digest.to_proto()),
            digest_function: digest.function().proto_value(),
            ..Default::default()
        });
        request.metadata_mut().insert(
            REPLICA_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        match self.client(holder)?.get_action_result(request).await {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(Error::from(status)),
        }
    }

    async fn put_to(
        &self,
        holder: &Holder,
        instance: &str,
        digest: &Digest,
        result: &ActionResult,
    ) -> Result<()> {
        if self.is_me(holder) {
            return self.local.put(instance, digest, result).await;
        }
        let mut request = tonic::Request::new(UpdateActionResultRequest {
            instance_name: instance.to_string(),
            action_digest: Some(digest.to_proto()),
            action_result: Some(result.clone()),
            digest_function: digest.function().proto_value(),
            ..Default::default()
        });
        request.metadata_mut().insert(
            REPLICA_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        self.client(holder)?
            .update_action_result(request)
            .await
            .map(|_| ())
            .map_err(Error::from)
    }

    /// Copies every local entry to the holders that newly rank for it each
    /// time membership changes (after `settle`, so changes arriving
    /// together are handled once), until the process ends.
    ///
    /// A member counts as new to its entries when it was not a member at
    /// the last round, when it left and came back during the settle (the
    /// round's placement is then the last one's, yet it missed what was
    /// written while it was out), and when `restarts` names it: members
    /// (by id) that restarted without leaving the placement, back before
    /// their peers counted them out, which lack what was written while
    /// they were down (and everything, if they lost their disk).
    pub fn spawn_rebalancer(
        self: &Arc<Self>,
        entries: Arc<dyn ActionCacheEntries>,
        settle: Duration,
        mut restarts: Option<UnboundedReceiver<String>>,
    ) -> tokio::task::JoinHandle<()> {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let mut following = cache.placement.clone();
            let mut before = cache.placement();
            loop {
                // Members that went missing from a placement seen in this
                // round, or restarted.
                let mut rejoined: HashSet<String> = HashSet::new();
                tokio::select! {
                    changed = following.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    member = next_restart(&mut restarts) => {
                        rejoined.insert(member);
                    }
                }
                let deadline = tokio::time::Instant::now() + settle;
                loop {
                    let seen = following.borrow_and_update().clone();
                    for holder in before.holders() {
                        if !seen.contains(&holder.id) {
                            rejoined.insert(holder.id.to_string());
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        changed = following.changed() => {
                            if changed.is_err() {
                                return;
                            }
                        }
                        member = next_restart(&mut restarts) => {
                            rejoined.insert(member);
                        }
                    }
                }
                let now = cache.placement();
                match cache
                    .rebalance_with(entries.as_ref(), &before, &now, &rejoined)
                    .await
                {
                    Ok(copied) if copied > 0 => {
                        tracing::info!(
                            copied,
                            members = now.len(),
                            "action cache entries copied to their new holders"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "action cache rebalancing failed"),
                }
                before = now;
            }
        })
    }

    /// Copies every local entry to the holders it has without this
    /// scheduler, before it leaves. Returns the copies made.
    pub async fn hand_off(&self, entries: &dyn ActionCacheEntries) -> Result<u64> {
        let now = self.placement();
        let without = now.without(&self.self_id);
        // Every holder of `without` counts as new: the others may not
        // have seen this scheduler go yet.
        let copies = self
            .rebalance(entries, &Placement::default(), &without)
            .await?;
        tracing::info!(copies, "action cache share handed off");
        Ok(copies)
    }

    /// Copies each local entry to the holders in `now` that were not its
    /// holders in `before`. Returns the copies made.
    pub async fn rebalance(
        &self,
        entries: &dyn ActionCacheEntries,
        before: &Placement,
        now: &Placement,
    ) -> Result<u64> {
        self.rebalance_with(entries, before, now, &HashSet::new())
            .await
    }

    /// [`ReplicatedActionCache::rebalance`], the members (ids) in
    /// `rejoined` counting as new holders wherever they hold an entry in
    /// `now`.
    pub async fn rebalance_with(
        &self,
        entries: &dyn ActionCacheEntries,
        before: &Placement,
        now: &Placement,
        rejoined: &HashSet<String>,
    ) -> Result<u64> {
        use futures::stream::{self, StreamExt};
        let listed = entries.list_entries()?;
        let mut copies = Vec::new();
        for (instance, digest) in listed {
            let old: HashSet<Arc<str>> = self
                .holders(before, &instance, &digest)
                .into_iter()
                .map(|h| h.id)
                .collect();
            for holder in self.holders(now, &instance, &digest) {
                let new = !old.contains(&holder.id) || rejoined.contains(&*holder.id);
                if !self.is_me(&holder) && new {
                    copies.push((instance.clone(), digest, holder));
                }
            }
        }
        let copied = stream::iter(copies)
            .map(|(instance, digest, holder)| async move {
                let result = match self.local.get(&instance, &digest).await {
                    Ok(Some(result)) => self.put_to(&holder, &instance, &digest, &result).await,
                    Ok(None) => return false,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(%digest, member = %holder.id, error = %e, "action cache entry not copied");
                        false
                    }
                }
            })
            .buffer_unordered(REBALANCE_CONCURRENCY)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        Ok(copied as u64)
    }
}

/// The next member `restarts` names; never, once it is closed or absent.
async fn next_restart(restarts: &mut Option<UnboundedReceiver<String>>) -> String {
    if let Some(receiver) = restarts.as_mut() {
        if let Some(member) = receiver.recv().await {
            return member;
        }
        *restarts = None;
    }
    std::future::pending().await
}

#[async_trait]
impl ActionCache for ReplicatedActionCache {
    async fn get(&self, instance: &str, action_digest: &Digest) -> Result<Option<ActionResult>> {
        let placement = self.placement();
        let holders = self.holders(&placement, instance, action_digest);
        let mut lacking = Vec::new();
        let mut asked_me = false;
        for holder in &holders {
            asked_me |= self.is_me(holder);
            match self.get_from(holder, instance, action_digest).await {
                Ok(Some(result)) => {
                    for holder in lacking {
                        if let Err(e) = self.put_to(&holder, instance, action_digest, &result).await
                        {
                            tracing::debug!(digest = %action_digest, member = %holder.id, error = %e, "action cache read repair failed");
                        }
                    }
                    return Ok(Some(result));
                }
                Ok(None) => lacking.push(holder.clone()),
                Err(e) => {
                    tracing::debug!(digest = %action_digest, member = %holder.id, error = %e, "action cache holder did not answer");
                }
            }
        }
        // Not on its holders: this scheduler's own copy, if it has one
        // (it held the entry before membership changed).
        if !asked_me {
            return self.local.get(instance, action_digest).await;
        }
        Ok(None)
    }

    async fn put(
        &self,
        instance: &str,
        action_digest: &Digest,
        result: &ActionResult,
    ) -> Result<()> {
        let placement = self.placement();
        let mut holders = self.holders(&placement, instance, action_digest);
        if holders.is_empty() {
            return self.local.put(instance, action_digest, result).await;
        }
        // Stored here too when this scheduler is not a holder: it answers
        // its clients at once, and rebalancing has a copy to hand on.
        if !holders.iter().any(|h| self.is_me(h)) {
            let me = Placement::new(&[reapi_core::cluster::messages::StorageMember {
                worker_id: self.self_id.clone(),
                address: self.self_id.clone(),
            }]);
            holders.extend(me.holders().iter().cloned());
        }
        let results = futures::future::join_all(
            holders
                .iter()
                .map(|holder| self.put_to(holder, instance, action_digest, result)),
        )
        .await;
        let mut stored = 0;
        let mut last_error = None;
        for (holder, outcome) in holders.iter().zip(results) {
            match outcome {
                Ok(()) => stored += 1,
                Err(e) => {
                    tracing::warn!(digest = %action_digest, member = %holder.id, error = %e, "action cache entry not stored on a holder");
                    last_error = Some(e);
                }
            }
        }
        match (stored, last_error) {
            (0, Some(e)) => Err(e.context("storing the action result on any scheduler")),
            _ => Ok(()),
        }
    }
}
