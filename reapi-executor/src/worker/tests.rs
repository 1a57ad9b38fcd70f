//! The cluster CAS's members as a draining worker knows them: the list its
//! scheduler sends back once it reads the draining report, kept when the
//! worker closes its links (the hand-off of its share ranks against it).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reapi_core::cluster::messages::{worker_message, StorageMember, Welcome};
use reapi_core::cluster::placement::placement_channel;
use reapi_core::cluster::service::SchedulerMessageStream;
use reapi_core::cluster::{SchedulerConnector, SchedulerMessage, WorkerMessageStream};
use reapi_core::Result;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Worker, WorkerConfig};

const ME: &str = "me";
const OTHER: &str = "other";

fn member(id: &str) -> StorageMember {
    StorageMember {
        worker_id: id.to_string(),
        address: format!("{id}:1"),
    }
}

/// A scheduler that welcomes the worker, lists it and another worker as
/// the members, and takes it out of the list once it reports draining,
/// as `reapi-scheduler` does.
struct MembersScheduler;

#[async_trait]
impl SchedulerConnector for MembersScheduler {
    fn target(&self) -> &str {
        "members-scheduler"
    }

    async fn connect(&self, mut outbound: WorkerMessageStream) -> Result<SchedulerMessageStream> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut welcomed = false;
            while let Some(message) = outbound.next().await {
                let Some(worker_message::Kind::Report(report)) = message.kind else {
                    continue;
                };
                if !welcomed {
                    welcomed = true;
                    let _ = tx.send(Ok(SchedulerMessage::welcome(Welcome {
                        scheduler_id: "s".to_string(),
                        heartbeat_interval: None,
                        heartbeat_timeout: None,
                    })));
                    let _ = tx.send(Ok(SchedulerMessage::storage_members(vec![
                        member(ME),
                        member(OTHER),
                    ])));
                }
                if report.draining {
                    // A round trip's worth of delay.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = tx.send(Ok(SchedulerMessage::storage_members(vec![member(OTHER)])));
                }
            }
        });
        Ok(Box::pin(UnboundedReceiverStream::new(rx)))
    }
}

#[tokio::test]
async fn a_drained_worker_keeps_the_members_its_scheduler_sent_last() {
    let (placement, members) = placement_channel();
    let mut config = WorkerConfig::new(ME);
    config.address = "me:1".to_string();
    config.replica_space = 1 << 30;
    config.placement = Some(placement);
    let worker = Worker::new(config, Vec::new());
    let _link = worker.connect(Arc::new(MembersScheduler));
    let mut watching = members.clone();
    tokio::time::timeout(
        Duration::from_secs(5),
        watching.wait_for(|p| p.contains(ME) && p.contains(OTHER)),
    )
    .await
    .expect("the first member list")
    .unwrap();

    let outcome = worker.drain(Duration::from_secs(5)).await;
    assert_eq!(outcome.abandoned, 0);
    // Not empty (the links it closed), not the list from before the
    // drain: the one the scheduler sent back, without this worker.
    let after = members.borrow().clone();
    assert_eq!(
        after.holders().iter().map(|h| &*h.id).collect::<Vec<_>>(),
        [OTHER]
    );
}
