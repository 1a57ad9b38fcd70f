//! The worker protocol (`reapi.cluster.v1.WorkerLink`) against whatever a
//! broken or hostile worker could send, over real gRPC (arbtest, so it runs
//! in plain `cargo test`; `scripts/fuzz` runs it longer): reports with
//! nonsense pools and properties, answers and results for leases that were
//! never offered or are someone else's, goodbyes mid-stream, while a client
//! has actions queued so that real offers are in flight too. After every
//! case the scheduler must still welcome a well-formed worker: no input
//! may crash it, wedge it or poison its state.

use std::time::Duration;

use arbtest::arbitrary::{Result as ArbResult, Unstructured};
use reapi_core::cluster::messages::{
    scheduler_message, ExecutorGroup, LeaseAnswer, LeaseResult, StateReport,
};
use reapi_core::cluster::service::WorkerLinkClient;
use reapi_core::cluster::WorkerMessage;
use reapi_core::proto::remote_execution as re;
use reapi_core::proto::rpc::Status as RpcStatus;
use reapi_test_support::actions::sh;
use reapi_test_support::cas::upload;
use reapi_test_support::clients::{cas, exec};
use reapi_test_support::operations::{execute_request, start_execute};
use reapi_test_support::server::full::{Config, Server};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const PROPERTY_PAIRS: &[(&str, &str)] = &[
    ("OSFamily", "linux"),
    ("cpus", "2"),
    ("cpus", "-1"),
    ("cpus", "lots"),
    ("memory", "1G"),
    ("memory", "99999999999999999999"),
    ("", "empty name"),
    ("network", "on"),
    ("network", "sideways"),
    ("rootfs", "input-root"),
];

fn platform(u: &mut Unstructured) -> ArbResult<Option<re::Platform>> {
    if u.ratio(1, 8)? {
        return Ok(None);
    }
    let mut properties = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let (name, value) = u.choose(PROPERTY_PAIRS)?;
        properties.push(re::platform::Property {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    Ok(Some(re::Platform { properties }))
}

fn lease_id(u: &mut Unstructured) -> ArbResult<u64> {
    // Mostly ids a scheduler could have given out, sometimes anything.
    Ok(if u.ratio(3, 4)? {
        u.int_in_range(0..=8)?
    } else {
        u.arbitrary()?
    })
}

fn worker_id(u: &mut Unstructured) -> ArbResult<String> {
    Ok(if u.ratio(1, 4)? {
        u.arbitrary()?
    } else {
        u.choose(&["fuzz-a", "fuzz-b", ""])?.to_string()
    })
}

fn message(u: &mut Unstructured) -> ArbResult<WorkerMessage> {
    Ok(match u.int_in_range(0..=4)? {
        0 | 1 => {
            let mut pools = Vec::new();
            for _ in 0..u.int_in_range(0..=3)? {
                pools.push(ExecutorGroup {
                    properties: platform(u)?,
                    executors: u.int_in_range(0..=4)?,
                    free: u.int_in_range(0..=6)?,
                });
            }
            WorkerMessage::report(StateReport {
                worker_id: worker_id(u)?,
                address: if u.ratio(1, 3)? {
                    u.arbitrary()?
                } else {
                    String::new()
                },
                pools,
                running_leases: (0..u.int_in_range(0..=3)?)
                    .map(|_| lease_id(u))
                    .collect::<ArbResult<_>>()?,
                last_offer_seen: lease_id(u)?,
                draining: u.ratio(1, 8)?,
                replica_space: if u.ratio(1, 4)? { u.arbitrary()? } else { 0 },
            })
        }
        2 => WorkerMessage::answer(LeaseAnswer {
            lease_id: lease_id(u)?,
            accepted: u.arbitrary()?,
            reason: u.arbitrary()?,
        }),
        3 => WorkerMessage::result(LeaseResult {
            lease_id: lease_id(u)?,
            result: if u.ratio(1, 2)? {
                Some(re::ActionResult {
                    exit_code: u.arbitrary()?,
                    stdout_raw: u.arbitrary::<Vec<u8>>()?,
                    output_files: vec![re::OutputFile {
                        path: u.arbitrary()?,
                        digest: Some(re::Digest {
                            hash: u.arbitrary()?,
                            size_bytes: u.arbitrary()?,
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            } else {
                None
            },
            timed_out: u.arbitrary()?,
            error: if u.ratio(1, 3)? {
                Some(RpcStatus {
                    code: u.arbitrary()?,
                    message: u.arbitrary()?,
                    details: Vec::new(),
                })
            } else {
                None
            },
        }),
        _ => WorkerMessage::goodbye(u.arbitrary::<String>()?),
    })
}

/// Opens a link, sends `messages`, reads what comes back for a moment,
/// then leaves (dropping the stream, as a crashed worker would). Returns
/// how many lease offers it got, to show that fuzzed workers are offered
/// real work and so exercise the lease paths.
async fn send_all(channel: &Channel, messages: Vec<WorkerMessage>) -> usize {
    let (tx, rx) = mpsc::unbounded_channel();
    for message in messages {
        tx.send(message).unwrap();
    }
    let mut client = WorkerLinkClient::new(channel.clone());
    let Ok(mut inbound) = client.connect(UnboundedReceiverStream::new(rx)).await else {
        return 0;
    };
    let mut offers = 0;
    let _ = tokio::time::timeout(Duration::from_millis(20), async {
        while let Some(Ok(message)) = inbound.next().await {
            if matches!(message.kind, Some(scheduler_message::Kind::Offer(_))) {
                offers += 1;
            }
        }
    })
    .await;
    offers
}

/// A well-formed worker is welcomed.
async fn assert_welcomes_a_good_worker(channel: &Channel) {
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(WorkerMessage::report(StateReport {
        worker_id: "well-behaved".into(),
        pools: vec![ExecutorGroup {
            properties: Some(re::Platform {
                properties: vec![re::platform::Property {
                    name: "OSFamily".into(),
                    value: "linux".into(),
                }],
            }),
            executors: 1,
            free: 1,
        }],
        ..Default::default()
    }))
    .unwrap();
    let mut client = WorkerLinkClient::new(channel.clone());
    let mut inbound = client
        .connect(UnboundedReceiverStream::new(rx))
        .await
        .expect("the scheduler refused a good worker");
    let welcomed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = inbound.next().await {
            match message.expect("the link failed").kind {
                Some(scheduler_message::Kind::Welcome(_)) => return true,
                Some(scheduler_message::Kind::StorageMembers(_)) => continue,
                other => panic!("expected a welcome, got {other:?}"),
            }
        }
        false
    })
    .await;
    assert_eq!(welcomed, Ok(true), "no welcome for a good worker");
    drop(tx);
}

#[test]
fn no_worker_message_crashes_or_wedges_the_scheduler() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(Server::start_with(Config {
        in_process_worker: false,
        ..Default::default()
    }));
    let channel = server.channel.clone();
    // Actions waiting for a worker, so that fuzzed workers get offers.
    let _queued = runtime.block_on(async {
        let mut streams = Vec::new();
        for i in 0..3 {
            let built = sh(&format!("echo {i}")).build();
            upload(&mut cas(&channel), "", &built.blobs).await;
            let stream = start_execute(&mut exec(&channel), execute_request(&built.action_digest))
                .await
                .expect("Execute");
            streams.push(stream);
        }
        streams
    });
    let mut links = 0;
    let mut offers = 0;
    arbtest::arbtest(|u| {
        let count = u.int_in_range(1..=12)?;
        let messages = (0..count)
            .map(|_| message(u))
            .collect::<ArbResult<Vec<_>>>()?;
        offers += runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), send_all(&channel, messages))
                .await
                .expect("the scheduler stopped answering a worker link")
        });
        links += 1;
        Ok(())
    });
    eprintln!("{links} fuzzed worker links, {offers} lease offers to them");
    runtime.block_on(assert_welcomes_a_good_worker(&channel));
}
