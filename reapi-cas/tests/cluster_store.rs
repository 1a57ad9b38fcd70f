//! `ClusterStore` over real members: four CAS servers on loopback, each
//! serving its own `DiskStore` in a temporary directory the way a worker
//! serves its share (`add_blob_services`), reached through `GrpcMembers`
//! (`GrpcStore::for_member`, which does not hash what it sends).
//!
//! Neither the cluster store nor its member clients verify written data:
//! the members' disk stores do. These tests check that a blob whose bytes
//! do not match its digest is refused with INVALID_ARGUMENT and ends up
//! nowhere (not stored, no file left behind), and that a good blob lands
//! on exactly its top `replica_count` holders.
//!
//! A member's directory is its disk store's root: committed blobs under
//! `cas/`, uploads in progress under `tmp/`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reapi_cas::service::listener;
use reapi_cas::service::storage::add_blob_services;
use reapi_cas::store::{ClusterStore, DiskStore, DiskStoreConfig, GrpcStore};
use reapi_core::blob_store::{collect_stream, BlobStore};
use reapi_core::cluster::messages::StorageMember;
use reapi_core::cluster::placement::{placement_channel, Placement, PlacementSender};
use reapi_core::{Digest, InstancePolicy};
use reapi_test_support::digests::data;
use reapi_test_support::wait::{eventually, within};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::RoutesBuilder;
use tonic::Code;

const MEMBERS: usize = 4;
const REPLICA_COUNT: usize = 3;
const INSTANCE: &str = "";
/// Streamed blobs: above the 1 MiB BatchUpdateBlobs limit of the member
/// clients and the disk store's O_DIRECT threshold, and not a whole number
/// of chunks.
const BIG: usize = 3 * 1024 * 1024 + 12_345;
/// Small blobs: one BatchUpdateBlobs call per member.
const SMALL: usize = 4 * 1024 + 7;
/// Chunks the tests stream in.
const CHUNK: usize = 512 * 1024;
/// Bound on any one cluster call, and on the wait for a member to clean up
/// after a write it was told to abandon.
const LIMIT: Duration = Duration::from_secs(20);

/// One member: a CAS server on its own port over its own disk store.
struct Member {
    id: String,
    addr: SocketAddr,
    disk: Arc<DiskStore>,
    dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Member {
    async fn start(id: String) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(
            DiskStore::open(DiskStoreConfig {
                root: dir.path().to_path_buf(),
                max_bytes: 1 << 30,
                retention: Duration::ZERO,
            })
            .await
            .unwrap(),
        );
        let listener = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut routes = RoutesBuilder::default();
        add_blob_services(&mut routes, disk.clone(), InstancePolicy::Any);
        let routes = routes.routes();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            listener::serve(listener, routes, async {
                let _ = stopped.await;
            })
            .await
            .expect("member server failed");
        });
        Member {
            id,
            addr,
            disk,
            dir,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Whether the server holds `digest`, asked over gRPC with a plain
    /// client.
    async fn holds(&self, digest: &Digest) -> bool {
        let client = GrpcStore::new(&self.addr.to_string()).unwrap();
        let missing = within(
            LIMIT,
            "FindMissingBlobs at a member",
            client.find_missing(INSTANCE, &[*digest]),
        )
        .await
        .unwrap();
        missing.is_empty()
    }

    /// The regular files under the member's directory (`Files::All`) or
    /// under its content directory `cas/` (`Files::Content`).
    fn files(&self, which: Files) -> BTreeSet<PathBuf> {
        let mut files = BTreeSet::new();
        match which {
            Files::All => walk(self.dir.path(), &mut files),
            Files::Content => walk(&self.dir.path().join("cas"), &mut files),
        }
        files
    }

    /// Whether an upload is in progress (or kept) here: a file in `tmp/`.
    fn has_upload_file(&self) -> bool {
        let mut files = BTreeSet::new();
        walk(&self.dir.path().join("tmp"), &mut files);
        !files.is_empty()
    }

    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            within(LIMIT, "a member server stopping", task)
                .await
                .unwrap();
        }
    }
}

/// Which of a member's files to look at.
#[derive(Clone, Copy, Debug)]
enum Files {
    /// Everything: content files and temp files of uploads.
    All,
    /// Content files (committed blobs) only.
    Content,
}

fn walk(dir: &Path, files: &mut BTreeSet<PathBuf>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A directory removed while we walk it holds nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("reading {}: {e}", dir.display()),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {}: {e}", dir.display()),
        };
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&entry.path(), files);
        } else {
            files.insert(entry.path());
        }
    }
}

/// Four members, the cluster store over them, and the files each member
/// held before the test wrote anything.
struct Cluster {
    members: Vec<Member>,
    store: ClusterStore,
    placement: Placement,
    files_before: Vec<BTreeSet<PathBuf>>,
    _publisher: PlacementSender,
}

impl Cluster {
    async fn start() -> Cluster {
        let mut members = Vec::new();
        for i in 0..MEMBERS {
            members.push(Member::start(format!("member-{i}")).await);
        }
        let list: Vec<StorageMember> = members
            .iter()
            .map(|m| StorageMember {
                worker_id: m.id.clone(),
                address: m.addr.to_string(),
            })
            .collect();
        let placement = Placement::new(&list);
        assert_eq!(placement.len(), MEMBERS);
        let (publisher, following) = placement_channel();
        publisher.send(Arc::new(placement.clone())).unwrap();
        let store = ClusterStore::new(following, REPLICA_COUNT, None);
        let files_before = members.iter().map(|m| m.files(Files::All)).collect();
        Cluster {
            members,
            store,
            placement,
            files_before,
            _publisher: publisher,
        }
    }

    /// Indexes of the members, best holder of `digest` first.
    fn ranked(&self, digest: &Digest) -> Vec<usize> {
        self.placement
            .ranked(INSTANCE, digest)
            .into_iter()
            .map(|holder| {
                self.members
                    .iter()
                    .position(|m| *holder.id == m.id)
                    .unwrap()
            })
            .collect()
    }

    /// Indexes of the members whose servers hold `digest`.
    async fn holding(&self, digest: &Digest) -> Vec<usize> {
        let mut holding = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            if member.holds(digest).await {
                holding.push(i);
            }
        }
        holding
    }

    /// Waits until every member's directory holds exactly (of the files
    /// `which` selects) the files it held at the start plus the content
    /// files of `stored` (on the members holding them); panics with the
    /// difference otherwise. A member cleans up after an abandoned upload
    /// once it sees the stream end, which may be just after the client
    /// returned.
    async fn assert_files(&self, which: Files, stored: &[Digest]) {
        let expected: Vec<BTreeSet<PathBuf>> = self
            .members
            .iter()
            .zip(&self.files_before)
            .map(|(member, before)| {
                let mut files: BTreeSet<PathBuf> = before
                    .iter()
                    .filter(|p| match which {
                        Files::All => true,
                        Files::Content => p.starts_with(member.dir.path().join("cas")),
                    })
                    .cloned()
                    .collect();
                files.extend(
                    stored
                        .iter()
                        .filter_map(|d| member.disk.blob_path(INSTANCE, d)),
                );
                files
            })
            .collect();
        let clean = eventually(LIMIT, || {
            self.members
                .iter()
                .zip(&expected)
                .all(|(member, expected)| member.files(which) == *expected)
        })
        .await;
        if !clean {
            let mut report = Vec::new();
            for (member, expected) in self.members.iter().zip(&expected) {
                let files = member.files(which);
                let extra: Vec<String> = files
                    .difference(expected)
                    .map(|p| match std::fs::metadata(p) {
                        Ok(meta) => format!("{} ({} bytes)", p.display(), meta.len()),
                        Err(_) => format!("{} (gone)", p.display()),
                    })
                    .collect();
                let absent: Vec<_> = expected.difference(&files).collect();
                if !extra.is_empty() || !absent.is_empty() {
                    report.push(format!(
                        "{} ({}): unexpected files {extra:?}, missing files {absent:?}",
                        member.id, member.addr
                    ));
                }
            }
            panic!(
                "member directories ({which:?} files) not as expected after {LIMIT:?}:\n{}",
                report.join("\n")
            );
        }
    }

    /// Checks that no member server holds `digest`, nor the cluster
    /// store, and that no member kept a file (of those `which` selects)
    /// of the write.
    async fn assert_stored_nowhere(&self, digest: &Digest, which: Files) {
        assert_eq!(
            self.holding(digest).await,
            Vec::<usize>::new(),
            "members holding the refused blob {digest}"
        );
        assert_eq!(
            within(
                LIMIT,
                "FindMissingBlobs through the cluster",
                self.store.find_missing(INSTANCE, &[*digest])
            )
            .await
            .unwrap(),
            [*digest]
        );
        self.assert_files(which, &[]).await;
    }

    async fn stop(self) {
        for member in self.members {
            member.stop().await;
        }
    }
}

/// The same number of bytes as `blob`, one of them different.
fn corrupted(blob: &[u8], at: usize) -> Vec<u8> {
    let mut wrong = blob.to_vec();
    wrong[at] ^= 0x5a;
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_blob_not_matching_its_digest_is_refused_and_stored_nowhere() {
    let cluster = Cluster::start().await;
    let blob = data(BIG, 1);
    let digest = Digest::of_bytes(&blob);
    // The last byte differs: every member has taken almost all of it when
    // the mismatch shows.
    let wrong = corrupted(&blob, BIG - 1);

    let mut writer = within(
        LIMIT,
        "begin_write",
        cluster.store.begin_write(INSTANCE, &digest),
    )
    .await
    .unwrap();
    for chunk in wrong.chunks(CHUNK) {
        within(LIMIT, "write", writer.write(Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    assert_eq!(writer.committed_size(), BIG as u64);
    let err = within(LIMIT, "commit", writer.commit()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    cluster.assert_stored_nowhere(&digest, Files::All).await;
    cluster.stop().await;
}

/// Streams the right bytes of a `BIG` blob and then more, in one last
/// chunk that runs past the end; checks that the cluster store refuses it
/// with INVALID_ARGUMENT and returns the digest once the caller has given
/// up on the write (dropped it, as a ByteStream service does). With
/// `settle`, the chunk past the end is sent only once every holder has an
/// upload file, so all of them are mid-upload when the write is abandoned.
async fn write_too_long(cluster: &Cluster, seed: u64, settle: bool) -> Digest {
    let blob = data(BIG, seed);
    let digest = Digest::of_bytes(&blob);
    let mut long = blob;
    long.extend_from_slice(&data(1000, seed + 1));
    let chunks: Vec<&[u8]> = long.chunks(CHUNK).collect();
    let (last, rest) = chunks.split_last().unwrap();
    assert!(rest.iter().map(|c| c.len()).sum::<usize>() < BIG);

    let mut writer = within(
        LIMIT,
        "begin_write",
        cluster.store.begin_write(INSTANCE, &digest),
    )
    .await
    .unwrap();
    for chunk in rest {
        within(LIMIT, "write", writer.write(Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    if settle {
        let holders = cluster.ranked(&digest)[..REPLICA_COUNT].to_vec();
        assert!(
            eventually(LIMIT, || holders
                .iter()
                .all(|&i| cluster.members[i].has_upload_file()))
            .await,
            "the holders of {digest} never started their uploads"
        );
    }
    let err = within(
        LIMIT,
        "write past the end",
        writer.write(Bytes::copy_from_slice(last)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        writer.committed_size() <= digest.size(),
        "{} bytes taken of a {}-byte blob",
        writer.committed_size(),
        digest.size()
    );
    drop(writer);
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_blob_longer_than_its_digest_is_refused_and_stored_nowhere() {
    let cluster = Cluster::start().await;
    let digest = write_too_long(&cluster, 2, false).await;
    // Content files only: what the members keep of the abandoned upload is
    // the subject of the next test.
    cluster.assert_stored_nowhere(&digest, Files::Content).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_blob_longer_than_its_digest_leaves_no_upload_file_on_any_member() {
    let cluster = Cluster::start().await;
    let digest = write_too_long(&cluster, 2, true).await;
    cluster.assert_stored_nowhere(&digest, Files::All).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_blob_not_matching_its_digest_is_refused_and_stored_nowhere() {
    let cluster = Cluster::start().await;
    let blob = data(SMALL, 4);
    let digest = Digest::of_bytes(&blob);
    let wrong = Bytes::from(corrupted(&blob, SMALL / 2));

    let err = within(LIMIT, "put", cluster.store.put(INSTANCE, &digest, wrong))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    cluster.assert_stored_nowhere(&digest, Files::All).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_blobs_are_stored_on_their_top_three_members_and_read_back() {
    let cluster = Cluster::start().await;

    let big = Bytes::from(data(BIG, 5));
    let big_digest = Digest::of_bytes(&big);
    let mut writer = within(
        LIMIT,
        "begin_write",
        cluster.store.begin_write(INSTANCE, &big_digest),
    )
    .await
    .unwrap();
    for chunk in big.chunks(CHUNK) {
        within(LIMIT, "write", writer.write(Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    within(LIMIT, "commit", writer.commit()).await.unwrap();

    let small = Bytes::from(data(SMALL, 6));
    let small_digest = Digest::of_bytes(&small);
    within(
        LIMIT,
        "put",
        cluster.store.put(INSTANCE, &small_digest, small.clone()),
    )
    .await
    .unwrap();

    for (digest, blob) in [(&big_digest, &big), (&small_digest, &small)] {
        let mut top: Vec<usize> = cluster.ranked(digest)[..REPLICA_COUNT].to_vec();
        top.sort_unstable();
        assert_eq!(
            cluster.holding(digest).await,
            top,
            "members holding {digest} (its ranking: {:?})",
            cluster.ranked(digest)
        );
        assert_eq!(
            cluster
                .store
                .find_missing(INSTANCE, &[*digest])
                .await
                .unwrap(),
            Vec::<Digest>::new()
        );
        let read = within(LIMIT, "get", cluster.store.get(INSTANCE, digest))
            .await
            .unwrap();
        assert!(read == *blob, "{digest} read back differs");
        let streamed = within(LIMIT, "read", async {
            collect_stream(
                cluster.store.read(INSTANCE, digest, 0, None).await?,
                digest.size(),
            )
            .await
        })
        .await
        .unwrap();
        assert!(streamed == *blob, "{digest} streamed back differs");
    }
    // Reads found every blob on its holders: nothing was copied elsewhere,
    // and no member kept anything but the content files.
    cluster
        .assert_files(Files::All, &[big_digest, small_digest])
        .await;
    cluster.stop().await;
}
