//! Who the schedulers of the cluster are and which of them are alive.
//! Each scheduler resolves the member list (addresses, or a DNS name whose
//! addresses are all the schedulers) and heartbeats every address; a peer
//! is live while its heartbeats succeed within the peer timeout. Answers
//! carry the peer's id (new at every start), so a restarted peer is a new
//! member and its predecessor's operations are unknown. A peer a forward
//! could not reach is suspected until its next good heartbeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use reapi_core::cluster::discovery::MemberList;
use reapi_core::cluster::messages::{PeerHeartbeat, StorageMember};
use reapi_core::cluster::placement::{publish, Placement, PlacementSender};
use reapi_core::cluster::rendezvous::{self, member_hash, PlacementKey};
use reapi_core::cluster::service::SchedulerPeersClient;
use reapi_core::Digest;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::status::{MemberState, SchedulerMember};

/// Where a request about an action or operation is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This scheduler.
    Local,
    /// Another live scheduler.
    Peer { id: String, address: String },
}

struct PeerState {
    address: String,
    hash: u64,
    last_ok: Instant,
    draining: bool,
    suspected: bool,
}

pub struct Peers {
    id: String,
    hash: u64,
    address: String,
    draining: AtomicBool,
    timeout: Duration,
    table: RwLock<HashMap<String, PeerState>>,
    channels: Mutex<HashMap<String, Channel>>,
    /// Where the live schedulers, by address, are published for the
    /// replicated action cache.
    metadata: Mutex<Option<PlacementSender>>,
    /// Where the addresses of peers seen to restart are sent.
    restarts: Mutex<Option<UnboundedSender<String>>>,
    /// Whether the member list has resolved and been heartbeaten once:
    /// until then this scheduler does not know its peers.
    resolved: watch::Sender<bool>,
}

impl Peers {
    /// A cluster of one: every action's home is this scheduler.
    pub fn solo(id: &str) -> Arc<Self> {
        let peers = Self::new(id, String::new(), Duration::from_secs(10));
        peers.resolved.send_replace(true);
        Arc::new(peers)
    }

    fn new(id: &str, address: String, timeout: Duration) -> Self {
        Peers {
            id: id.to_string(),
            hash: member_hash(id),
            address,
            draining: AtomicBool::new(false),
            timeout,
            table: RwLock::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
            metadata: Mutex::new(None),
            restarts: Mutex::new(None),
            resolved: watch::channel(false).0,
        }
    }

    /// Starts following `members`: heartbeats every `interval`; a peer is
    /// dead after `timeout` without a good one. `address` is where the
    /// others reach this scheduler.
    pub fn start(
        id: &str,
        address: String,
        members: MemberList,
        interval: Duration,
        timeout: Duration,
    ) -> Arc<Self> {
        let peers = Arc::new(Self::new(id, address, timeout));
        let weak = Arc::downgrade(&peers);
        tokio::spawn(async move {
            let mut addresses = Vec::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for round in 0u64.. {
                tick.tick().await;
                // Names are resolved again every few rounds, and until
                // something resolves.
                if round % 5 == 0 || addresses.is_empty() {
                    match members.resolve().await {
                        Ok(found) => addresses = found.into_iter().collect(),
                        Err(e) => tracing::warn!(error = %e, "cannot resolve the schedulers"),
                    }
                }
                let Some(peers) = weak.upgrade() else {
                    return;
                };
                peers.beat_all(&addresses, interval).await;
                peers.publish_metadata_members();
                if !addresses.is_empty() {
                    peers.resolved.send_replace(true);
                }
            }
        });
        peers
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns once the member list has resolved and every member was sent
    /// a heartbeat: from then on this scheduler knows its live peers.
    pub async fn wait_resolved(&self) {
        let mut resolved = self.resolved.subscribe();
        // The sender lives as long as `self`.
        let _ = resolved.wait_for(|done| *done).await;
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// This scheduler takes no new actions as their home.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.publish_metadata_members();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Keeps `sender` up to date with the live schedulers that hold action
    /// cache entries (not draining), this one included, each named by its
    /// address: addresses survive restarts, so a restarted scheduler gets
    /// its share back.
    pub fn publish_metadata_placement(&self, sender: PlacementSender) {
        *self.metadata.lock() = Some(sender);
        self.publish_metadata_members();
    }

    /// The addresses of peers that restart (a new id answers at a known
    /// address), each as it is seen. A peer back before its heartbeats ran
    /// out never left the published placement, which is by address, yet
    /// it lacks what was written while it was down: the replicated action
    /// cache copies it its share again.
    pub fn restarts(&self) -> UnboundedReceiver<String> {
        let (sender, receiver) = unbounded_channel();
        *self.restarts.lock() = Some(sender);
        receiver
    }

    fn publish_metadata_members(&self) {
        let metadata = self.metadata.lock();
        let Some(sender) = metadata.as_ref() else {
            return;
        };
        let mut members: Vec<StorageMember> = self
            .table
            .read()
            .values()
            .filter(|peer| self.is_live(peer) && !peer.draining)
            .map(|peer| StorageMember {
                worker_id: peer.address.clone(),
                address: peer.address.clone(),
            })
            .collect();
        if !self.is_draining() && !self.address.is_empty() {
            members.push(StorageMember {
                worker_id: self.address.clone(),
                address: self.address.clone(),
            });
        }
        let placement = Placement::new(&members);
        publish(sender, placement, "action cache holders");
    }

    /// This scheduler's heartbeat, as sent and as answered.
    pub fn beat(&self) -> PeerHeartbeat {
        PeerHeartbeat {
            scheduler_id: self.id.clone(),
            address: self.address.clone(),
            draining: self.is_draining(),
        }
    }

    async fn beat_all(&self, addresses: &[std::net::SocketAddr], interval: Duration) {
        let beats = addresses.iter().map(|address| {
            let address = address.to_string();
            async move {
                let channel = self.channel(&address)?;
                let answer = tokio::time::timeout(
                    interval.max(Duration::from_millis(500)),
                    SchedulerPeersClient::new(channel).heartbeat(self.beat()),
                )
                .await
                .ok()?
                .ok()?;
                Some((address, answer))
            }
        });
        for (address, answer) in futures::future::join_all(beats).await.into_iter().flatten() {
            self.heard(&address, &answer);
        }
        let forget = self.timeout * 3;
        self.table
            .write()
            .retain(|_, peer| peer.last_ok.elapsed() < forget);
    }

    /// Records a good heartbeat from (or answer of) a peer at `address`.
    pub fn heard(&self, address: &str, beat: &PeerHeartbeat) {
        if beat.scheduler_id == self.id || !crate::operation::is_scheduler_id(&beat.scheduler_id) {
            return;
        }
        let address = if beat.address.is_empty() {
            address.to_string()
        } else {
            beat.address.clone()
        };
        let mut table = self.table.write();
        // A new id at a known address is that peer restarted: the old one
        // is gone, with its operations.
        let restarted = table
            .iter()
            .any(|(id, peer)| peer.address == address && *id != beat.scheduler_id);
        table.retain(|id, peer| peer.address != address || *id == beat.scheduler_id);
        let joined = !table.contains_key(&beat.scheduler_id);
        table.insert(
            beat.scheduler_id.clone(),
            PeerState {
                address: address.clone(),
                hash: member_hash(&beat.scheduler_id),
                last_ok: Instant::now(),
                draining: beat.draining,
                suspected: false,
            },
        );
        drop(table);
        if joined {
            tracing::info!(peer = %beat.scheduler_id, %address, restarted, "scheduler peer is live");
        }
        if restarted {
            if let Some(restarts) = self.restarts.lock().as_ref() {
                let _ = restarts.send(address);
            }
        }
    }

    /// A forward to `id` failed to connect: route around it until its next
    /// good heartbeat.
    pub fn suspect(&self, id: &str) {
        if let Some(peer) = self.table.write().get_mut(id) {
            if !peer.suspected {
                tracing::warn!(peer = %id, "scheduler peer unreachable; routing around it");
            }
            peer.suspected = true;
        }
    }

    fn is_live(&self, peer: &PeerState) -> bool {
        !peer.suspected && peer.last_ok.elapsed() < self.timeout
    }

    /// Live schedulers that take new actions, this one included unless it
    /// drains, with their placement hashes.
    fn candidates(&self) -> Vec<(u64, Target)> {
        let table = self.table.read();
        let mut members: Vec<(u64, Target)> = table
            .iter()
            .filter(|(_, peer)| self.is_live(peer) && !peer.draining)
            .map(|(id, peer)| {
                (
                    peer.hash,
                    Target::Peer {
                        id: id.clone(),
                        address: peer.address.clone(),
                    },
                )
            })
            .collect();
        if !self.is_draining() || members.is_empty() {
            members.push((self.hash, Target::Local));
        }
        members
    }

    /// Every candidate home of an action, best first.
    pub fn homes(&self, instance: &str, digest: &Digest) -> Vec<Target> {
        rendezvous::rank(
            PlacementKey::for_digest(instance, digest),
            &self.candidates(),
        )
    }

    /// Where the operations of scheduler `id` are served: `None` when it is
    /// not a live member.
    pub fn route(&self, id: &str) -> Option<Target> {
        if id == self.id {
            return Some(Target::Local);
        }
        let table = self.table.read();
        let peer = table.get(id)?;
        self.is_live(peer).then(|| Target::Peer {
            id: id.to_string(),
            address: peer.address.clone(),
        })
    }

    /// Live peers, for status.
    pub fn live_peers(&self) -> Vec<String> {
        let table = self.table.read();
        let mut ids: Vec<String> = table
            .iter()
            .filter(|(_, peer)| self.is_live(peer))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Every peer still remembered, with its state, sorted by address: for
    /// the status page and metrics.
    pub fn members(&self) -> Vec<SchedulerMember> {
        let table = self.table.read();
        let mut members: Vec<SchedulerMember> = table
            .iter()
            .map(|(id, peer)| SchedulerMember {
                id: id.clone(),
                address: peer.address.clone(),
                state: if peer.suspected {
                    MemberState::Suspected
                } else if !self.is_live(peer) {
                    MemberState::Silent
                } else if peer.draining {
                    MemberState::Draining
                } else {
                    MemberState::Live
                },
                this_one: false,
                last_heard: Some(peer.last_ok.elapsed()),
            })
            .collect();
        members.sort_by(|a, b| a.address.cmp(&b.address));
        members
    }

    /// A channel to a peer, connected lazily and kept.
    pub fn channel(&self, address: &str) -> Option<Channel> {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(address) {
            return Some(channel.clone());
        }
        let endpoint = reapi_core::cluster::transport::endpoint(address)
            .ok()?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Some(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(id: &str, address: &str) -> PeerHeartbeat {
        PeerHeartbeat {
            scheduler_id: id.into(),
            address: address.into(),
            draining: false,
        }
    }

    #[tokio::test]
    async fn resolved_once_the_member_list_resolves_and_is_heartbeaten() {
        let interval = Duration::from_millis(20);
        let timeout = Duration::from_millis(200);
        let never = MemberList::parse(&["no-such-scheduler.invalid:8980"]).unwrap();
        let lost = Peers::start("aaaa", "127.0.0.1:1".into(), never, interval, timeout);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), lost.wait_resolved())
                .await
                .is_err(),
            "a member list that never resolves should keep the scheduler unresolved"
        );
        // A listed peer that does not answer is still a known membership.
        let listed = MemberList::parse(&["127.0.0.1:9"]).unwrap();
        let known = Peers::start("bbbb", "127.0.0.1:2".into(), listed, interval, timeout);
        tokio::time::timeout(Duration::from_secs(5), known.wait_resolved())
            .await
            .expect("a resolving member list should resolve");
        tokio::time::timeout(
            Duration::from_millis(10),
            Peers::solo("cccc").wait_resolved(),
        )
        .await
        .expect("a solo scheduler has nothing to resolve");
    }

    #[test]
    fn members_report_their_state() {
        let peers = Peers::solo("aaaa");
        peers.heard("10.0.0.2:1", &beat("bbbb", "10.0.0.2:1"));
        peers.heard(
            "10.0.0.3:1",
            &PeerHeartbeat {
                draining: true,
                ..beat("cccc", "10.0.0.3:1")
            },
        );
        peers.heard("10.0.0.4:1", &beat("dddd", "10.0.0.4:1"));
        peers.suspect("dddd");
        let states: Vec<(String, MemberState)> = peers
            .members()
            .into_iter()
            .map(|m| (m.id, m.state))
            .collect();
        assert_eq!(
            states,
            [
                ("bbbb".to_string(), MemberState::Live),
                ("cccc".to_string(), MemberState::Draining),
                ("dddd".to_string(), MemberState::Suspected),
            ]
        );
    }

    #[test]
    fn a_solo_scheduler_is_every_actions_home() {
        let peers = Peers::solo("aaaa");
        let digest = Digest::of_bytes(b"x");
        assert_eq!(peers.homes("", &digest), [Target::Local]);
        assert_eq!(peers.route("aaaa"), Some(Target::Local));
        assert_eq!(peers.route("bbbb"), None);
    }

    #[test]
    fn homes_spread_over_live_peers_and_follow_restarts() {
        let peers = Peers::solo("aaaa");
        peers.heard("10.0.0.2:1", &beat("bbbb", "10.0.0.2:1"));
        peers.heard("10.0.0.3:1", &beat("cccc", "10.0.0.3:1"));
        let mut local = 0;
        for i in 0..300 {
            let digest = Digest::of_bytes(format!("{i}").as_bytes());
            if peers.homes("", &digest)[0] == Target::Local {
                local += 1;
            }
        }
        assert!((60..140).contains(&local), "{local} of 300 homed here");
        // bbbb restarts as dddd at the same address.
        peers.heard("10.0.0.2:1", &beat("dddd", "10.0.0.2:1"));
        assert_eq!(peers.route("bbbb"), None);
        assert!(matches!(peers.route("dddd"), Some(Target::Peer { .. })));
        // A suspected peer is routed around.
        peers.suspect("cccc");
        assert_eq!(peers.route("cccc"), None);
        assert_eq!(peers.live_peers(), ["dddd"]);
    }

    #[test]
    fn restarts_are_reported_by_address() {
        let peers = Peers::solo("aaaa");
        let mut restarts = peers.restarts();
        peers.heard("10.0.0.2:1", &beat("bbbb", "10.0.0.2:1"));
        peers.heard("10.0.0.3:1", &beat("cccc", "10.0.0.3:1"));
        peers.heard("10.0.0.2:1", &beat("bbbb", "10.0.0.2:1"));
        assert!(restarts.try_recv().is_err(), "no restart yet");
        // bbbb restarts as dddd at the same address: reported once.
        peers.heard("10.0.0.2:1", &beat("dddd", "10.0.0.2:1"));
        peers.heard("10.0.0.2:1", &beat("dddd", "10.0.0.2:1"));
        assert_eq!(restarts.try_recv().unwrap(), "10.0.0.2:1");
        assert!(restarts.try_recv().is_err());
    }

    #[test]
    fn a_draining_scheduler_homes_nothing_new_while_peers_live() {
        let peers = Peers::solo("aaaa");
        peers.heard("10.0.0.2:1", &beat("bbbb", ""));
        peers.set_draining();
        for i in 0..50 {
            let digest = Digest::of_bytes(format!("{i}").as_bytes());
            assert_eq!(peers.homes("", &digest).len(), 1);
            assert_ne!(peers.homes("", &digest)[0], Target::Local);
        }
        // Its own operations still route here.
        assert_eq!(peers.route("aaaa"), Some(Target::Local));
    }
}
