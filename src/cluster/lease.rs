//! Shared storage's flush lease, in JetStream KV (bucket `MERIDIAN_LEASES_<region>`, placed
//! in the region's NATS cluster so that its nodes keep flushing while another geography's
//! NATS is away; key `flush.<region>`: the holder and until when), and the work each
//! hosting node does with it every tick.
//!
//! ```text
//!  every node hosting a shared region, every tick (a third of cluster.lease_ttl, ≤ 1 s):
//!    read the lease (from the stream leader)
//!      free, lapsed, or ours  ─▶ compare-and-set it to us, until now + ttl
//!                                 newly taken: a fresh range of file seqs (above every seq
//!                                 used), then epoch = max(revision, manifest epoch + 1)
//!                                 committed as a fence before any flush
//!      another node's, live   ─▶ follow (epoch 0)
//!    announce: key member.<region>.<node> = this node's ingest shard count, valid for
//!      three ttls (a node whose count differs from a live one's refuses to start)
//!    refresh the shared manifest ─▶ SharedLog::set_through (followers drop what it covers)
//!    flush requests (key flushreq.<region>): a delete on a follower asks for the log to be
//!      in files up to a message; the holder flushes what it holds when one is ahead
//!    holder: record the log mark (SharedLog::mark) under its epoch
//!    holder whose flushes all failed for three ttls, whose flush job has run for
//!      `stalled_after` without ending (it takes none while so), or that cannot fence the
//!      manifest: gives the lease back and stays out for a ttl
//! ```
//!
//! Invariants:
//! - At most one node's manifest edits count: every flush and mark is committed under the
//!   holder's epoch, and the manifest refuses an edit under an epoch older than one it
//!   holds. Two nodes believing they hold the lease (clocks apart, a node stopped while
//!   its lease lapsed) cannot both record: the older epoch's edits are refused, and it
//!   steps down when it sees so.
//! - A holder that finds, after a tick, that it could not renew its lease within two thirds
//!   of the ttl stops flushing on its own (epoch 0). A tick slowed by the object store or
//!   NATS can let another node take over first: the fence keeps that safe.
//! - Liveness only depends on clocks: a lease is taken over once its `until`, by the
//!   taker's clock, has passed.
//! - A node takes the lease only once it reads the region's log, and not for three ttls
//!   after it found messages of the log expired before it read them (it gives the lease
//!   up then: another node may hold those rows and must be the one to flush them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use crate::catalog::Manifest;
use crate::catalog::manifest::{LogMark, ManifestEdit, ManifestError, now_ns};
use crate::cluster::routing_kv::nanos;
use crate::config::{ClusterConfig, RegionConfig};
use crate::model::RegionId;
use crate::region::Engine;
use crate::region::shared::SharedLog;

/// Where builds before per-region buckets kept every region's lease (see
/// [`retire_legacy_lease`]); each region's bucket is this name and `_<region>`.
pub const LEGACY_BUCKET: &str = "MERIDIAN_LEASES";

/// How long a holder's flush job may run (from when the holder sent it to the node's flush
/// pool) before the holder gives the lease up: ten ttls, and at least twice
/// `bucket_patience` (`storage.request_timeout` + `storage.retry_timeout`), the longest a
/// bucket that hangs holds a flush before failing it. A bucket that hangs is caught by the
/// failures that follow (every node shares it: moving the lease would not help), and a job
/// may wait in the pool behind other regions' jobs on such a bucket. What is left is a
/// hang elsewhere, on the local staging disk. Three minutes with the defaults.
pub fn stalled_after(ttl: Duration, bucket_patience: Duration) -> Duration {
    (ttl * 10).max(bucket_patience * 2)
}

fn key(region: &str) -> String {
    format!("flush.{region}")
}

fn request_key(region: &str) -> String {
    format!("flushreq.{region}")
}

fn member_key(region: &str, node: &str) -> String {
    format!("member.{region}.{node}")
}

/// A node hosting a shared region, as it announces itself every tick.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Member {
    /// Its ingest shards per region (every node of the region must run as many).
    shards: usize,
    /// Unix ns (its clock) until which the announcement holds.
    until: i64,
}

/// Refuses to start a node whose shard count differs from that of another node hosting
/// the region now (files name the shards of their series, and queries take files of other
/// shards for other series: two counts would count points twice). Nodes that stopped
/// announcing themselves (three ttls) are not asked, so the count can be changed by
/// restarting every node with the new one.
pub async fn check_members(
    store: &kv::Store,
    region: &str,
    node: &str,
    shards: usize,
) -> Result<(), String> {
    use futures::StreamExt;
    // The members' keys, from the stream's subjects: one request, where the client's key
    // listing (a consumer reading the bucket to its end) need not end while other nodes
    // write to the bucket every tick, as they do (a start-up over a slow link waited
    // minutes for it).
    let subjects = format!("{}member.{region}.*", store.prefix);
    let mut listed = store
        .stream
        .info_with_subjects(&subjects)
        .await
        .map_err(|e| format!("listing {}: {e}", store.name))?;
    let mut keys = Vec::new();
    while let Some(s) = listed.next().await {
        let (subject, _) = s.map_err(|e| format!("listing {}: {e}", store.name))?;
        if let Some(k) = subject.strip_prefix(&store.prefix) {
            keys.push(k.to_string());
        }
    }
    let prefix = format!("member.{region}.");
    let now = now_ns();
    for k in keys {
        let Some(other) = k.strip_prefix(&prefix) else {
            continue;
        };
        if other == node || other.contains('.') {
            continue;
        }
        let Some(entry) = store
            .entry(&k)
            .await
            .map_err(|e| format!("reading {}/{k}: {e}", store.name))?
        else {
            continue;
        };
        if let Ok(m) = serde_json::from_slice::<Member>(&entry.value)
            && m.until > now
            && m.shards != shards
        {
            return Err(format!(
                "region {region:?} is on shared storage, where node {other:?} runs {} ingest shards and this node {shards}: every node hosting it needs the same ingest.shards_per_region (to change it, stop them all and start them with the new one)",
                m.shards
            ));
        }
    }
    Ok(())
}

/// The holder a lease entry names (`None`: no entry, deleted, or not a holder).
fn holder_of(entry: Option<&kv::Entry>) -> Option<Holder> {
    entry
        .filter(|e| e.operation == kv::Operation::Put)
        .and_then(|e| serde_json::from_slice(&e.value).ok())
}

/// The lease's value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Holder {
    node: String,
    /// Unix ns (the holder's clock) until which it holds.
    until: i64,
}

/// The bucket of `region`'s lease: the region's own, whatever its placement, so that
/// nodes whose configs place it differently still share one.
pub fn bucket_name(region: &str) -> String {
    format!("{LEGACY_BUCKET}_{region}")
}

/// Opens (creating it if needed) the bucket of `region`'s lease, placed in the region's
/// NATS cluster (the cluster's own when the region names none); then retires the lease
/// older builds kept in [`LEGACY_BUCKET`] (see [`retire_legacy_lease`]).
pub async fn bucket(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    region: &RegionConfig,
    node: &str,
) -> Result<kv::Store, String> {
    let placed = region
        .nats_cluster
        .as_deref()
        .or(cfg.nats_cluster.as_deref());
    let description = format!("Meridian's flush lease of region {}", region.name);
    let store =
        super::routing_kv::open_bucket(js, cfg, &bucket_name(&region.name), &description, placed)
            .await?;
    let retire = retire_legacy_lease(js, &region.name, node);
    match tokio::time::timeout(START_CHECK_TIMEOUT, retire).await {
        Ok(Ok(())) => {}
        Ok(Err(Refused(why))) => return Err(why),
        Ok(Err(Unchecked(why))) => tracing::warn!(
            region = %region.name,
            "{LEGACY_BUCKET} (where builds before per-region lease buckets keep leases) could not be checked: {why}; do not start nodes of such a build for this region"
        ),
        Err(_) => tracing::warn!(
            region = %region.name,
            "{LEGACY_BUCKET} (where builds before per-region lease buckets keep leases) did not answer within {START_CHECK_TIMEOUT:?}; do not start nodes of such a build for this region"
        ),
    }
    Ok(store)
}

/// The longest a start-up check of a lease bucket may take.
pub const START_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// The holder written into [`LEGACY_BUCKET`] for a region whose lease moved: nodes of older
/// builds read it as another node's lease that never lapses, so they follow and never
/// flush beside the holder of the region's own bucket.
pub const RETIRED_HOLDER: &str = "(moved to MERIDIAN_LEASES_<region>)";

/// Why the legacy lease was not retired.
enum RetireError {
    /// A node of an older build holds it: this node must not start.
    Refused(String),
    /// The legacy bucket could not be read or written (it may live in a geography that is
    /// away): not checked.
    Unchecked(String),
}
use RetireError::{Refused, Unchecked};

/// Builds before per-region buckets kept every region's lease in [`LEGACY_BUCKET`]. If that
/// bucket exists: refuses while another node holds the region's lease there (an older
/// build flushing: two holders in two buckets would take the manifest's fence from each
/// other at every tick), then writes [`RETIRED_HOLDER`] there with a compare-and-set, so that
/// no node of an older build started later takes it. A compare-and-set lost to another
/// writer is decided again on what that writer wrote.
async fn retire_legacy_lease(
    js: &jetstream::Context,
    region: &str,
    node: &str,
) -> Result<(), RetireError> {
    // Only "no such stream" means a deployment that never ran an older build; any other
    // failure (a timeout, JetStream unavailable) leaves it unchecked, and said so.
    match js.get_stream(format!("KV_{LEGACY_BUCKET}")).await {
        Ok(_) => {}
        Err(e) => {
            return match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(())
                }
                _ => Err(Unchecked(format!("looking for {LEGACY_BUCKET}: {e}"))),
            };
        }
    }
    let legacy = js
        .get_key_value(LEGACY_BUCKET)
        .await
        .map_err(|e| Unchecked(format!("opening {LEGACY_BUCKET}: {e}")))?;
    let k = key(region);
    // A lost compare-and-set means another writer: read again (a few times at most).
    for _ in 0..5 {
        let entry = legacy
            .entry(&k)
            .await
            .map_err(|e| Unchecked(format!("reading {LEGACY_BUCKET}/{k}: {e}")))?;
        let holder = holder_of(entry.as_ref());
        match &holder {
            Some(h) if h.node == RETIRED_HOLDER => return Ok(()),
            // This node's own earlier run (node names are unique) is over.
            Some(h) if h.until > now_ns() && h.node != node => {
                return Err(Refused(format!(
                    "node {:?} holds region {region:?}'s flush lease in {LEGACY_BUCKET}, where builds before per-region lease buckets keep it, while this build keeps it in {}: stop every node hosting the region (a killed holder's lease lapses after cluster.lease_ttl) and start them all with this build",
                    h.node,
                    bucket_name(region)
                )));
            }
            _ => {}
        }
        let retired = Holder {
            node: RETIRED_HOLDER.to_string(),
            until: i64::MAX,
        };
        let bytes =
            Bytes::from(serde_json::to_vec(&retired).map_err(|e| Unchecked(e.to_string()))?);
        match entry {
            Some(e) => match legacy.update(&k, bytes, e.revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(Unchecked(format!("retiring {LEGACY_BUCKET}/{k}: {e}"))),
            },
            None => match legacy.create(&k, bytes).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Unchecked(format!("retiring {LEGACY_BUCKET}/{k}: {e}"))),
            },
        }
    }
    Err(Refused(format!(
        "{LEGACY_BUCKET}/{k} kept changing while this node retired it: another node is writing region {region:?}'s lease there"
    )))
}

/// One node's side of one shared region's lease.
pub struct FlushLease {
    pub store: kv::Store,
    pub region: String,
    pub node: String,
    pub ttl: Duration,
    /// [`stalled_after`].
    pub stalled_after: Duration,
    pub manifest: Arc<Manifest>,
    pub log: Arc<SharedLog>,
    pub engine: Arc<Engine>,
    pub region_id: RegionId,
}

/// What the node knows of the lease between ticks.
#[derive(Default)]
struct Held {
    /// The KV revision of our last renewal, and when we sent it.
    revision: u64,
    renewed: Option<Instant>,
    /// After a gap in this node's log (its end): since when the lease has been free.
    free_since: Option<(u64, Instant)>,
    /// The gap this node gave its lease up for.
    gap_released: Option<u64>,
    /// The highest flush request this holder flushed for.
    flushed_for: u64,
    /// After a take-over this node could not complete (it cannot write the bucket): no
    /// new try before this, so that another node gets the lease.
    backoff_until: Option<Instant>,
}

impl Held {
    fn forget(&mut self) {
        self.revision = 0;
        self.renewed = None;
    }
}

impl FlushLease {
    fn tick(&self) -> Duration {
        (self.ttl / 3).min(Duration::from_secs(1))
    }

    /// Runs until aborted.
    pub async fn run(self) {
        let mut held = Held::default();
        loop {
            if let Err(e) = self.step(&mut held).await {
                tracing::warn!(region = %self.region, error = %e, "flush lease: {e}");
            }
            // Not renewed within two thirds of the ttl: another node may take it soon.
            if self.log.epoch() > 0 && held.renewed.is_none_or(|t| t.elapsed() >= self.ttl * 2 / 3)
            {
                self.step_down("its lease could not be renewed in time");
                held.forget();
            }
            tokio::time::sleep(self.tick()).await;
        }
    }

    fn step_down(&self, why: &str) {
        if self.log.epoch() > 0 {
            tracing::warn!(region = %self.region, node = %self.node, "this node stops flushing the region: {why}");
        }
        self.log.set_epoch(0);
    }

    /// Three ttls: how long an announcement stands, how long flushes may fail before the
    /// holder gives the lease up, how long a free lease over skipped rows waits for a taker.
    fn stale_after(&self) -> Duration {
        self.ttl * 3
    }

    /// Gives the lease back and forgets holding it; `backoff`: stays out for a ttl.
    async fn give_up(&self, held: &mut Held, backoff: bool) {
        self.release().await;
        held.forget();
        if backoff {
            held.backoff_until = Some(Instant::now() + self.ttl);
        }
    }

    /// Announces this node as hosting the region (see [`check_members`]).
    async fn announce(&self) -> Result<(), String> {
        let m = Member {
            shards: self.engine.shards_per_region(),
            until: now_ns().saturating_add(nanos(self.stale_after())),
        };
        let bytes = Bytes::from(serde_json::to_vec(&m).map_err(|e| e.to_string())?);
        self.store
            .put(member_key(&self.region, &self.node), bytes)
            .await
            .map(|_| ())
            .map_err(|e| format!("announcing this node: {e}"))
    }

    async fn step(&self, held: &mut Held) -> Result<(), String> {
        // The lease first: a slow read of the manifest must not delay its renewal.
        if let Some(end) = self.log.gap_end()
            && held.gap_released != Some(end)
        {
            held.gap_released = Some(end);
            tracing::error!(region = %self.region, node = %self.node, gap_end = end, "messages of the region's log expired before this node read them: it gives up the flush lease (another node may hold those rows)");
            self.give_up(held, false).await;
        }
        // A holder whose flushes have only failed for three ttls (it cannot write to the
        // bucket, a flush hangs on it) gives the lease to a node that may do better, and
        // stays out for a ttl.
        let failing = self
            .log
            .failing_since()
            .map(crate::region::shared::mono_elapsed);
        if self.log.epoch() > 0 && failing.is_some_and(|d| d >= self.stale_after()) {
            tracing::error!(region = %self.region, node = %self.node, "every flush of the region has failed for three lease ttls: this node gives the flush lease up");
            self.give_up(held, true).await;
        }
        // A holder whose flush job has run `stalled_after` without committing or failing
        // (a hang outside the bucket: its local disk) gives the lease up the same way.
        if self.log.epoch() > 0 && self.stalled() {
            tracing::error!(region = %self.region, node = %self.node, secs = self.stalled_after.as_secs(), "a flush of the region has neither committed nor failed for longer than this: this node gives the flush lease up");
            self.give_up(held, true).await;
        }
        self.lease(held).await?;
        self.announce().await?;
        // What the holder recorded: followers drop the rows it covers.
        let m = self.manifest.clone();
        let shared = tokio::task::spawn_blocking(move || m.refresh().map(|_| m.shared()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading the shared manifest: {e}"))?;
        if let Some(mark) = &shared.log {
            self.log.set_through(mark.through);
        }
        if self.log.epoch() > 0 && shared.epoch > self.log.epoch() {
            self.step_down("another node recorded a later lease epoch");
            held.forget();
        }
        self.flush_requests(held).await?;
        let epoch = self.log.epoch();
        if epoch > 0
            && let Some((through, state)) = self.log.mark()
        {
            let edit = ManifestEdit {
                fence: Some(epoch),
                log: Some(LogMark {
                    epoch,
                    through,
                    state,
                }),
                ..ManifestEdit::default()
            };
            if let Err(e) = self.commit(edit).await {
                return Err(format!("recording the log mark {through}: {e}"));
            }
            self.log.set_through(through);
        }
        Ok(())
    }

    /// Commits an edit; a refused one means another node holds a later epoch.
    async fn commit(&self, edit: ManifestEdit) -> Result<(), String> {
        let m = self.manifest.clone();
        match tokio::task::spawn_blocking(move || m.commit(edit))
            .await
            .map_err(|e| e.to_string())?
        {
            Ok(_) => Ok(()),
            Err(ManifestError::Conflict(why)) => {
                self.step_down(&why);
                Err(why)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// A delete here waits for the log to be in files up to a message: asked of the holder
    /// through the KV entry `flushreq.<region>` (the highest message asked); the holder
    /// flushes what it holds when the entry is ahead of the mark.
    async fn flush_requests(&self, held: &mut Held) -> Result<(), String> {
        let k = request_key(&self.region);
        let wanted = self.log.wanted();
        let through = self.log.through();
        let entry = self
            .store
            .entry(&k)
            .await
            .map_err(|e| format!("reading {}/{k}: {e}", self.store.name))?;
        let asked = entry
            .as_ref()
            .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        // Once per request, once this node applied the log that far: the flush takes what
        // is held then, and the mark follows.
        let ask = asked.max(wanted);
        if self.log.epoch() > 0
            && ask > through
            && ask > held.flushed_for
            && self.log.committed() >= ask
        {
            held.flushed_for = ask;
            self.engine.request_flush(self.region_id);
        }
        if wanted > through && wanted > asked {
            let value = Bytes::from(wanted.to_string());
            // Lost to another node's request: the next tick asks again.
            match &entry {
                None => drop(self.store.create(&k, value).await),
                Some(e) => drop(self.store.update(&k, value, e.revision).await),
            }
        }
        Ok(())
    }

    /// Takes, renews or leaves the lease.
    async fn lease(&self, held: &mut Held) -> Result<(), String> {
        let k = key(&self.region);
        let entry = self
            .store
            .entry(&k)
            .await
            .map_err(|e| format!("reading {}/{k}: {e}", self.store.name))?;
        let now = now_ns();
        let current = holder_of(entry.as_ref());
        let ours = current.as_ref().is_some_and(|h| h.node == self.node);
        let free = current.as_ref().is_none_or(|h| h.until <= now);
        if self.log.epoch() > 0 && !ours {
            self.step_down("another node took the lease over");
            held.forget();
        }
        if !(ours || free) {
            // Another node leads: a gap of ours waits for its mark to pass it.
            held.free_since = None;
            return Ok(());
        }
        if self.log.epoch() == 0 && !self.may_take(held) {
            return Ok(());
        }
        // Ours from an earlier run of this node (restarted): taken again under a new epoch.
        let renewing = ours
            && self.log.epoch() > 0
            && entry.as_ref().map(|e| e.revision) == Some(held.revision);
        let revision = match self.write_lease(entry.as_ref().map(|e| e.revision)).await {
            Ok((r, sent)) => {
                held.revision = r;
                held.renewed = Some(sent);
                r
            }
            Err(e) => {
                // Another node was quicker (or the server did not answer): not ours.
                self.step_down("the lease changed hands");
                held.forget();
                return Err(format!("taking or renewing the lease: {e}"));
            }
        };
        if renewing {
            return Ok(());
        }
        // Newly taken, in one manifest edit: a fence above every epoch recorded (the
        // previous holder's late edits are refused from now on), and file seqs above every
        // one used so far (this node's files of a key follow every earlier holder's).
        let (m, node, shards) = (
            self.manifest.clone(),
            self.node.clone(),
            self.engine.shards_per_region(),
        );
        let taken = tokio::task::spawn_blocking(move || {
            m.take_over(&node, crate::region::SHARED_SEQS_RESERVED, shards, revision)
        })
        .await
        .map_err(|e| e.to_string())?;
        let epoch = match taken {
            Ok((epoch, _)) => epoch,
            Err(e) => {
                // This node cannot write to the bucket: the lease goes back, so that a node
                // that can takes it (held, it would never lapse), and this one stays out
                // for a ttl.
                self.give_up(held, true).await;
                return Err(format!("fencing the shared manifest: {e}"));
            }
        };
        // The take may have been slow (object storage): renewed once more, so that the
        // lease is fresh when flushing starts.
        match self.write_lease(Some(revision)).await {
            Ok((r, sent)) => {
                held.revision = r;
                held.renewed = Some(sent);
            }
            Err(e) => {
                held.forget();
                return Err(format!("renewing the lease just taken: {e}"));
            }
        }
        held.flushed_for = 0;
        self.log.clear_failures();
        self.log.set_epoch(epoch);
        tracing::info!(region = %self.region, node = %self.node, epoch, "this node holds the region's flush lease: it flushes the region's files");
        Ok(())
    }

    /// This node's oldest flush job of the region has run longer than `stalled_after`.
    fn stalled(&self) -> bool {
        self.log
            .running_since()
            .is_some_and(|since| crate::region::shared::mono_elapsed(since) >= self.stalled_after)
    }

    /// Whether a node that does not lead may take the lease now: once its log reader
    /// started from the mark, and after a gap only once the mark passed it (a node that
    /// had those rows flushed them) or the lease stayed free for three ttls (no node that
    /// could lead is up).
    fn may_take(&self, held: &mut Held) -> bool {
        // A node whose flush job hangs would give the lease up again at once (it sends no
        // other job while one runs).
        if !self.log.started()
            || held.backoff_until.is_some_and(|t| Instant::now() < t)
            || self.stalled()
        {
            return false;
        }
        let Some(end) = self.log.gap_end() else {
            held.free_since = None;
            return true;
        };
        if self.log.through() >= end {
            held.free_since = None;
            return self.log.clear_gap(end);
        }
        // Three ttls of a free lease for this gap (a later gap starts them again).
        let since = match held.free_since {
            Some((gap, t)) if gap == end => t,
            _ => {
                held.free_since = Some((end, Instant::now()));
                return false;
            }
        };
        if since.elapsed() >= self.stale_after() {
            tracing::warn!(region = %self.region, node = %self.node, "no other node took the flush lease over rows this node's log skipped: it leads again (those rows are lost)");
            held.free_since = None;
            return self.log.clear_gap(end);
        }
        false
    }

    /// Writes the lease as ours until a ttl from now (create, or compare-and-set on
    /// `revision`); returns the new revision and records when it was sent.
    async fn write_lease(&self, revision: Option<u64>) -> Result<(u64, Instant), String> {
        let k = key(&self.region);
        let value = Holder {
            node: self.node.clone(),
            until: now_ns().saturating_add(nanos(self.ttl)),
        };
        let bytes = Bytes::from(serde_json::to_vec(&value).map_err(|e| e.to_string())?);
        let sent = Instant::now();
        let r = match revision {
            None => self
                .store
                .create(&k, bytes)
                .await
                .map_err(|e| e.to_string()),
            Some(rev) => self
                .store
                .update(&k, bytes, rev)
                .await
                .map_err(|e| e.to_string()),
        }?;
        Ok((r, sent))
    }

    /// Gives the lease back (shutdown): another node takes it at its next tick.
    pub async fn release(&self) {
        let k = key(&self.region);
        self.log.set_epoch(0);
        if let Ok(Some(e)) = self.store.entry(&k).await
            && serde_json::from_slice::<Holder>(&e.value).is_ok_and(|h| h.node == self.node)
        {
            let gone = Holder {
                node: self.node.clone(),
                until: 0,
            };
            if let Ok(v) = serde_json::to_vec(&gone) {
                let _ = self.store.update(&k, Bytes::from(v), e.revision).await;
            }
        }
    }
}

#[cfg(test)]
mod stall_tests {
    use super::*;
    use crate::config::{DEFAULT_S3_REQUEST_TIMEOUT, DEFAULT_S3_RETRY_TIMEOUT};

    /// The bucket's own failure path comes first: twice its patience (three minutes by
    /// default), or ten ttls when those are longer.
    #[test]
    fn a_flush_is_stalled_after_the_bucket_would_have_failed_it() {
        let patience = DEFAULT_S3_REQUEST_TIMEOUT + DEFAULT_S3_RETRY_TIMEOUT;
        assert_eq!(
            stalled_after(Duration::from_secs(6), patience),
            Duration::from_secs(180)
        );
        assert_eq!(
            stalled_after(Duration::from_secs(3), patience),
            Duration::from_secs(180)
        );
        assert_eq!(
            stalled_after(Duration::from_secs(30), patience),
            Duration::from_secs(300)
        );
    }
}
