//! Writes: to every holder of the blob at once. A write succeeds once the
//! placement's wanted number of copies is committed. A holder that fails
//! (unreachable, full, cut off mid-stream) is replaced by the next member
//! in the ranking: for a whole-buffer write the data is sent to it; for a
//! streamed write, which holds no copy of the data, the replacement gets
//! the blob copied from a holder that committed it.
//!
//! Fewer copies than wanted are accepted only when every member was tried:
//! the members that could take the blob are fewer than `replica_count`.
//! A write the data itself fails (size or hash mismatch) fails at once,
//! and nothing is stored anywhere: every holder verifies its copy before it
//! commits it (our workers' disk stores do), and they all see the same
//! bytes, so they all refuse them. Nothing here hashes the data again; on
//! a scheduler that relays a write to three holders, hashing was the
//! largest cost per byte.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use reapi_core::blob_store::BlobWriter;
use reapi_core::cluster::placement::{Holder, Placement};
use reapi_core::{Digest, Error, Result};
use tonic::Code;

use super::read::copy_blob;
use super::Inner;

/// Errors that condemn the data rather than the member that saw it.
fn is_bad_data(e: &Error) -> bool {
    matches!(e.code(), Code::InvalidArgument)
}

/// What the write ended with, for the error when too few copies exist.
struct Tally {
    committed: Vec<Holder>,
    failures: Vec<(Holder, Error)>,
}

impl Tally {
    fn outcome(self, digest: &Digest, wanted: usize, placement: &Placement) -> Result<()> {
        let copies = self.committed.len();
        let all_tried = copies + self.failures.len() >= placement.len();
        if copies >= wanted || (copies > 0 && all_tried) {
            if copies < wanted {
                tracing::warn!(
                    %digest,
                    copies,
                    wanted,
                    "blob stored with fewer copies than wanted: the other members failed"
                );
            }
            return Ok(());
        }
        let detail: Vec<String> = self
            .failures
            .iter()
            .map(|(h, e)| format!("{}: {e}", h.id))
            .collect();
        // Every member full is the client's problem to hear about as such.
        let code = if !self.failures.is_empty()
            && self
                .failures
                .iter()
                .all(|(_, e)| e.code() == Code::ResourceExhausted)
        {
            Code::ResourceExhausted
        } else {
            Code::Unavailable
        };
        Err(Error::new(
            code,
            format!(
                "blob {digest} reached {copies} of {wanted} copies in the cluster CAS: {}",
                detail.join("; ")
            ),
        ))
    }
}

pub(super) async fn put(inner: &Inner, instance: &str, digest: &Digest, data: Bytes) -> Result<()> {
    if digest.is_empty_blob() {
        if !data.is_empty() {
            return Err(Error::invalid_argument("the empty blob has no data"));
        }
        return Ok(());
    }
    let placement = inner.placement();
    let wanted = inner.copies_wanted(&placement)?;
    let ranked: Vec<Holder> = placement
        .ranked(instance, digest)
        .into_iter()
        .cloned()
        .collect();
    let put_one = |holder: Holder| {
        let data = data.clone();
        async move {
            let result = match inner.store_of(&holder) {
                Ok(store) => store.put(instance, digest, data).await,
                Err(e) => Err(e),
            };
            (holder, result)
        }
    };
    let mut running: FuturesUnordered<_> = ranked[..wanted].iter().cloned().map(put_one).collect();
    let mut next = wanted;
    let mut tally = Tally {
        committed: Vec::new(),
        failures: Vec::new(),
    };
    while let Some((holder, result)) = running.next().await {
        match result {
            Ok(()) => tally.committed.push(holder),
            Err(e) if is_bad_data(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(%digest, member = %holder.id, error = %e, "cluster CAS write failed; trying the next member");
                tally.failures.push((holder, e));
                if let Some(replacement) = ranked.get(next) {
                    running.push(put_one(replacement.clone()));
                    next += 1;
                }
            }
        }
    }
    tally.outcome(digest, wanted, &placement)
}

pub(super) async fn begin_write(
    inner: &Arc<Inner>,
    instance: &str,
    digest: &Digest,
) -> Result<Box<dyn BlobWriter>> {
    let placement = inner.placement();
    let wanted = if digest.is_empty_blob() {
        0
    } else {
        inner.copies_wanted(&placement)?
    };
    let ranked: Vec<Holder> = placement
        .ranked(instance, digest)
        .into_iter()
        .cloned()
        .collect();
    let mut writer = ReplicatedWriter {
        inner: inner.clone(),
        placement,
        instance: instance.to_string(),
        digest: *digest,
        wanted,
        ranked,
        next: 0,
        writers: Vec::new(),
        failures: Vec::new(),
        received: 0,
    };
    writer.open_writers().await?;
    Ok(Box::new(writer))
}

struct ReplicatedWriter {
    inner: Arc<Inner>,
    placement: Arc<Placement>,
    instance: String,
    digest: Digest,
    wanted: usize,
    ranked: Vec<Holder>,
    /// The next member in `ranked` not yet tried.
    next: usize,
    writers: Vec<(Holder, Box<dyn BlobWriter>)>,
    failures: Vec<(Holder, Error)>,
    received: u64,
}

impl ReplicatedWriter {
    /// Opens writers on the first members that accept one, until `wanted`
    /// are open or the members run out.
    async fn open_writers(&mut self) -> Result<()> {
        while self.writers.len() < self.wanted && self.next < self.ranked.len() {
            let batch: Vec<Holder> = self.ranked
                [self.next..(self.next + self.wanted - self.writers.len()).min(self.ranked.len())]
                .to_vec();
            self.next += batch.len();
            let (instance, digest, inner) = (&self.instance, &self.digest, &self.inner);
            let opened = join_all(batch.into_iter().map(|holder| async move {
                let result = match inner.store_of(&holder) {
                    Ok(store) => store.begin_write(instance, digest).await,
                    Err(e) => Err(e),
                };
                (holder, result)
            }))
            .await;
            for (holder, result) in opened {
                match result {
                    Ok(writer) => self.writers.push((holder, writer)),
                    Err(e) if is_bad_data(&e) || e.code() == Code::OutOfRange => return Err(e),
                    Err(e) => {
                        tracing::warn!(digest = %self.digest, member = %holder.id, error = %e, "cannot start a cluster CAS write; trying the next member");
                        self.failures.push((holder, e));
                    }
                }
            }
        }
        if self.writers.is_empty() && self.wanted > 0 {
            return Err(self.all_failed());
        }
        Ok(())
    }

    fn all_failed(&mut self) -> Error {
        let failures = std::mem::take(&mut self.failures);
        let tally = Tally {
            committed: Vec::new(),
            failures,
        };
        match tally.outcome(&self.digest, self.wanted, &self.placement) {
            Err(e) => e,
            Ok(()) => Error::unavailable(format!(
                "blob {}: no cluster CAS member accepted the write",
                self.digest
            )),
        }
    }
}

#[async_trait]
impl BlobWriter for ReplicatedWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if self.wanted == 0 {
            if !chunk.is_empty() {
                return Err(Error::invalid_argument(format!(
                    "data past the end of blob {}",
                    self.digest
                )));
            }
            return Ok(());
        }
        if self.received + chunk.len() as u64 > self.digest.size() {
            self.writers.clear();
            return Err(Error::invalid_argument(format!(
                "blob {} is longer than its digest says",
                self.digest
            )));
        }
        let writers = std::mem::take(&mut self.writers);
        let results = join_all(writers.into_iter().map(|(holder, mut writer)| {
            let chunk = chunk.clone();
            async move {
                let result = writer.write(chunk).await;
                (holder, writer, result)
            }
        }))
        .await;
        let mut bad_data = None;
        for (holder, writer, result) in results {
            match result {
                Ok(()) => self.writers.push((holder, writer)),
                Err(e) if is_bad_data(&e) => bad_data = Some(e),
                Err(e) => {
                    tracing::warn!(digest = %self.digest, member = %holder.id, error = %e, "cluster CAS write cut off; its copy will be made after commit");
                    self.failures.push((holder, e));
                }
            }
        }
        if let Some(e) = bad_data {
            // Dropping the writers aborts every copy.
            self.writers.clear();
            return Err(e);
        }
        if self.writers.is_empty() {
            return Err(self.all_failed());
        }
        self.received += chunk.len() as u64;
        Ok(())
    }

    fn committed_size(&self) -> u64 {
        self.received
    }

    async fn suspend(&mut self) -> Result<()> {
        let results = join_all(self.writers.iter_mut().map(|(_, w)| w.suspend())).await;
        results.into_iter().collect()
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        if self.wanted == 0 {
            if self.received != 0 {
                return Err(Error::invalid_argument("the empty blob has no data"));
            }
            return Ok(());
        }
        let writers = std::mem::take(&mut self.writers);
        let results = join_all(
            writers
                .into_iter()
                .map(|(holder, writer)| async move { (holder, writer.commit().await) }),
        )
        .await;
        let mut tally = Tally {
            committed: Vec::new(),
            failures: std::mem::take(&mut self.failures),
        };
        for (holder, result) in results {
            match result {
                Ok(()) => tally.committed.push(holder),
                Err(e) if is_bad_data(&e) => return Err(e),
                Err(e) => tally.failures.push((holder, e)),
            }
        }
        // Replacements for the members that failed, copied from one that
        // committed.
        if let Some(source) = tally.committed.first().cloned() {
            let source = self.inner.store_of(&source)?;
            while tally.committed.len() < self.wanted && self.next < self.ranked.len() {
                let holder = self.ranked[self.next].clone();
                self.next += 1;
                let result = match self.inner.store_of(&holder) {
                    Ok(target) => {
                        copy_blob(
                            source.as_ref(),
                            target.as_ref(),
                            &self.instance,
                            &self.digest,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {
                        tracing::info!(digest = %self.digest, member = %holder.id, "blob copied to a replacement holder");
                        tally.committed.push(holder);
                    }
                    Err(e) => tally.failures.push((holder, e)),
                }
            }
        }
        tally.outcome(&self.digest, self.wanted, &self.placement)
    }
}
