//! One ingest shard: the single writer of its WAL and its blocks, on its own thread.
//!
//! ```text
//! writes (bounded channel) ─┐
//!                           ├─► group: every queued write ─► WAL append ─► one fsync ─► apply ─► ack all
//! control (unbounded) ──────┘        snapshot / flush-all / flush-done / shutdown
//! ```
//! Invariants: a write is acknowledged only after its WAL record is written (and fsynced when
//! the policy and the request ask for it); a write that fails in the WAL is not applied and
//! not acknowledged; rows of a block being flushed stay readable (`flushing`) until the shard
//! learns that the file is in the manifest; WAL segments are removed only after that.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use crate::catalog::series::SeriesCatalog;
use crate::catalog::{Manifest, WalRange};
use crate::config::{FlushConfig, SyncPolicy};
use crate::metrics::Metrics;
use crate::model::PartitionStart;
use crate::region::block::{Block, Chunk};
use crate::region::flush::{BlockKey, FlushJob, FlushOutcome, FlushPart};
use crate::region::prepare::ShardBatch;
use crate::region::rows::{Row, RowSource};
use crate::region::shared::SharedLog;
use crate::region::wal::{Wal, WalError};

/// Why a write could not be committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("disk full: {0}")]
    DiskFull(String),
    #[error("write-ahead log error: {0}")]
    Io(String),
    #[error("server is shutting down")]
    ShuttingDown,
}

impl From<WalError> for CommitError {
    fn from(e: WalError) -> CommitError {
        let full = matches!(&e, WalError::Io { source, .. } if source.raw_os_error() == Some(28)
            || source.kind() == std::io::ErrorKind::StorageFull);
        if full {
            CommitError::DiskFull(e.to_string())
        } else {
            CommitError::Io(e.to_string())
        }
    }
}

pub struct WriteMsg {
    pub batch: ShardBatch,
    /// fsync before acknowledging (policy `always` and no `no_sync`).
    pub sync: bool,
    pub reply: oneshot::Sender<Result<(), CommitError>>,
}

/// In-memory rows of one block, as a query sees them.
#[derive(Debug, Clone)]
pub struct MemSource {
    pub key: BlockKey,
    /// The ingest shard holding it (series are hashed to shards, so two shards never hold
    /// the same series).
    pub shard: usize,
    pub chunks: Vec<Arc<Chunk>>,
    /// Set while the block is being flushed: the file this seq will name must be ignored by
    /// a reader that also holds these chunks.
    pub flushing_file_seq: Option<u64>,
    /// Set once the block is frozen (waiting for its flush): the order it was frozen in
    /// within its shard. Frozen blocks are older than active ones, and among them, later
    /// frozen is newer.
    pub frozen: Option<u64>,
}

pub enum Ctrl {
    Snapshot {
        db: Arc<str>,
        measurement: Option<Arc<str>>,
        reply: oneshot::Sender<Vec<MemSource>>,
    },
    /// Flush every block now; reply once all are in files.
    FlushAll { reply: std::sync::mpsc::Sender<()> },
    /// Flush the blocks held now; reply once those are in files (rows written meanwhile
    /// may stay in memory: unlike `FlushAll`, steady writes cannot delay the reply).
    FlushBarrier { reply: std::sync::mpsc::Sender<()> },
    FlushDone {
        file_seq: u64,
        result: Result<FlushOutcome, String>,
    },
    /// Process queued writes, flush everything, then stop the thread.
    Shutdown { reply: std::sync::mpsc::Sender<()> },
}

struct ActiveBlock {
    block: Block,
    created: Instant,
    last_append: Instant,
    /// WAL ranges per shard log that fed it (normally just this shard's).
    wal: BTreeMap<usize, (u64, u64)>,
}

struct Flushing {
    /// Stable while the block waits (barriers name it): the file seq may change.
    id: u64,
    key: BlockKey,
    chunks: Vec<Arc<Chunk>>,
    /// The seq its file takes. Shared storage: given when the flush is submitted by the
    /// lease holder (0 until then), so that files follow the log across takeovers.
    file_seq: u64,
    wal: BTreeMap<usize, (u64, u64)>,
    bytes: u64,
    /// Whether a flush job holds it now (false: waiting for `submit_pending`).
    submitted: bool,
    retry_at: Option<Instant>,
}

impl Flushing {
    /// The block as a part of a flush job.
    fn part(&self) -> FlushPart {
        FlushPart {
            key: self.key.clone(),
            chunks: self.chunks.clone(),
            file_seq: self.file_seq,
            wal: self
                .wal
                .iter()
                .map(|(shard, (min_seq, max_seq))| WalRange {
                    shard: *shard,
                    min_seq: *min_seq,
                    max_seq: *max_seq,
                })
                .collect(),
            bytes: self.bytes,
        }
    }
}

/// Live figures of one shard, read by `GET /api/v1/regions`.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub active_blocks: std::sync::atomic::AtomicU64,
    pub flushing_blocks: std::sync::atomic::AtomicU64,
    pub rows: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    /// Blocks held, active and flushing: exact, not a periodic figure. It rises before a
    /// write into a new block is acknowledged and falls only after a flushed block's file
    /// is in the manifest, so a query that reads zero may skip this shard's memory.
    pub in_memory: std::sync::atomic::AtomicU64,
}

/// What the shard thread needs from its region.
pub struct ShardCtx {
    pub region_name: Arc<str>,
    pub shard: usize,
    pub manifest: Arc<Manifest>,
    pub partition_duration_ns: i64,
    pub flush: FlushConfig,
    pub sync: SyncPolicy,
    pub memory_high_water: u64,
    /// `memory.series_catalog`: the most of the catalog that counts as pressure.
    pub series_catalog_bytes: u64,
    pub metrics: Arc<Metrics>,
    pub flush_tx: Sender<(FlushJob, Sender<Ctrl>)>,
    pub stats: Arc<ShardStats>,
    pub series: Arc<SeriesCatalog>,
    /// Shared storage: the region's log (rows carry its sequences instead of WAL records),
    /// and whether this node holds the flush lease.
    pub log: Option<Arc<SharedLog>>,
}

pub struct Shard {
    ctx: ShardCtx,
    /// `None` on shared storage: the region's log is the WAL.
    wal: Option<Wal>,
    blocks: HashMap<BlockKey, ActiveBlock>,
    flushing: Vec<Flushing>,
    ctrl_tx: Sender<Ctrl>,
    flush_waiters: Vec<std::sync::mpsc::Sender<()>>,
    /// Barriers: the blocks (`Flushing::id`) still to be flushed before each reply.
    barriers: Vec<(Vec<u64>, std::sync::mpsc::Sender<()>)>,
    next_flushing_id: u64,
    /// When covered WAL segments were last removed.
    wal_trimmed: Instant,
}

const TICK: Duration = Duration::from_millis(100);
const MAX_GROUP: usize = 512;
const FLUSH_RETRY: Duration = Duration::from_secs(2);
const WAL_TRIM_EVERY: Duration = Duration::from_secs(1);
/// Blocks smaller than this are flushed together, at most `BATCH_PARTS` per job.
const BATCH_BYTES: u64 = 32 << 20;
const BATCH_PARTS: usize = 1024;
/// A block of an older partition with no append for this long is flushed (see
/// check_triggers). Twice the slowest acknowledgement under the benchmark load (p99 43 ms):
/// writers sending in time order finish the old partition's batches within it. With 250 ms,
/// an ingest of an hour of data every 0.4 s held a third more blocks at its peak.
const ROLLOVER_IDLE: Duration = Duration::from_millis(100);

/// Sends one flush job to the pool.
/// `fence`: shared storage, the lease epoch read before the parts took their seqs (from
/// that reign's range): it fences the job's edit.
fn send_job(
    ctx: &ShardCtx,
    ctrl_tx: &Sender<Ctrl>,
    parts: Vec<FlushPart>,
    fence: Option<u64>,
) -> bool {
    let job = FlushJob {
        fence,
        region_name: ctx.region_name.clone(),
        manifest: ctx.manifest.clone(),
        parts,
        partition_duration_ns: ctx.partition_duration_ns,
        row_group_rows: ctx.flush.row_group_rows,
        time_unit: ctx.flush.time_unit,
    };
    if ctx.flush_tx.send((job, ctrl_tx.clone())).is_err() {
        error!("flush pool is gone; blocks stay in memory");
        return false;
    }
    true
}

impl Shard {
    pub fn new(ctx: ShardCtx, wal: Option<Wal>, ctrl_tx: Sender<Ctrl>) -> Shard {
        Shard {
            ctx,
            wal,
            blocks: HashMap::new(),
            flushing: Vec::new(),
            ctrl_tx,
            flush_waiters: Vec::new(),
            barriers: Vec::new(),
            next_flushing_id: 0,
            wal_trimmed: Instant::now(),
        }
    }

    pub fn partition_duration_ns(&self) -> i64 {
        self.ctx.partition_duration_ns
    }

    /// Flushes every block and waits for the results on `ctrl` (start-up, before the thread
    /// runs). The first failure is returned.
    pub fn flush_all_and_wait(&mut self, ctrl: &Receiver<Ctrl>) -> Result<(), String> {
        self.flush_all();
        while !self.flushing.is_empty() {
            match ctrl.recv() {
                Ok(Ctrl::FlushDone { file_seq, result }) => {
                    if let Err(e) = &result {
                        return Err(e.clone());
                    }
                    self.on_flush_done(file_seq, result);
                }
                Ok(_) => {}
                Err(_) => return Err("the flush pool stopped".into()),
            }
        }
        Ok(())
    }

    /// Deletes WAL segments whose records are all in files.
    pub fn drop_covered_wal(&mut self) -> Result<usize, WalError> {
        let needed = self.wal_needed();
        match &mut self.wal {
            Some(w) => w.remove_below(needed),
            None => Ok(0),
        }
    }

    /// Appends checked rows to their blocks. `wal` names the log and record they came from.
    /// Returns the number of points applied.
    pub fn apply<'a>(
        &mut self,
        db: &Arc<str>,
        mut rows: impl RowSource<'a>,
        wal: (usize, u64),
    ) -> usize {
        let pd = self.ctx.partition_duration_ns;
        let (mut applied, mut added) = (0usize, 0usize);
        // The row being appended and the one before it; their vectors are reused.
        let (mut cur, mut prev) = (Row::default(), Row::default());
        let mut have = rows.next_row(&mut cur);
        // Runs of rows of one block (measurement and partition): the block is looked up,
        // stamped and given the WAL position once per run, not per row.
        while have {
            let partition = PartitionStart::of(cur.ts, pd);
            let measurement = cur.measurement;
            let entry = self
                .blocks
                .entry(BlockKey {
                    db: db.clone(),
                    measurement: Arc::from(measurement),
                    partition,
                })
                .or_insert_with(|| ActiveBlock {
                    block: Block::new(),
                    created: Instant::now(),
                    last_append: Instant::now(),
                    wal: BTreeMap::new(),
                });
            entry.last_append = Instant::now();
            let r = entry.wal.entry(wal.0).or_insert((wal.1, wal.1));
            r.0 = r.0.min(wal.1);
            r.1 = r.1.max(wal.1);
            if let Some(log) = &self.ctx.log {
                log.hold(self.ctx.shard, wal.1);
            }
            let mut same_fields = false;
            loop {
                added += entry.block.append(
                    cur.series_hash,
                    &cur.tags,
                    &cur.fields,
                    cur.ts,
                    same_fields,
                );
                applied += 1;
                std::mem::swap(&mut cur, &mut prev);
                have = rows.next_row(&mut cur);
                if !have
                    || !same_str(cur.measurement, measurement)
                    || PartitionStart::of(cur.ts, pd) != partition
                {
                    let new = entry.block.take_new_series();
                    if !new.is_empty() {
                        self.ctx
                            .series
                            .add_series(db, measurement, new.iter().map(|s| &s[..]));
                    }
                    break;
                }
                // Rows of one payload with a shape share their key strings (rows.rs): equal
                // references mean equal field names, and the block reuses their columns.
                same_fields = cur.fields.len() == prev.fields.len()
                    && cur
                        .fields
                        .iter()
                        .zip(&prev.fields)
                        .all(|((a, _), (b, _))| same_str(a, b));
            }
        }
        self.ctx
            .metrics
            .memory_bytes
            .fetch_add(added as u64, Relaxed);
        self.publish_in_memory();
        applied
    }

    /// Publishes the exact count of blocks held (see [`ShardStats::in_memory`]).
    fn publish_in_memory(&self) {
        let n = (self.blocks.len() + self.flushing.len()) as u64;
        self.ctx
            .stats
            .in_memory
            .store(n, std::sync::atomic::Ordering::Release);
    }

    /// Appends a group of writes to the WAL with one sync, applies and acknowledges them.
    fn commit_group(&mut self, group: Vec<WriteMsg>) {
        let Some(wal) = &mut self.wal else {
            return self.apply_logged(group);
        };
        let parts: Vec<[&[u8]; 2]> = group.iter().map(|w| w.batch.payload.parts()).collect();
        let refs: Vec<&[&[u8]]> = parts.iter().map(|p| &p[..]).collect();
        let before = wal.stats();
        let result = wal.append_parts(&refs).and_then(|first| {
            let need_sync = self.ctx.sync == SyncPolicy::Always && group.iter().any(|w| w.sync);
            if need_sync {
                wal.sync()?;
            }
            Ok(first)
        });
        let after = wal.stats();
        self.ctx
            .metrics
            .wal_bytes
            .fetch_add(after.0 - before.0, Relaxed);
        self.ctx
            .metrics
            .wal_syncs
            .fetch_add(after.1 - before.1, Relaxed);
        match result {
            Ok(first) => {
                self.ctx
                    .metrics
                    .wal_records
                    .fetch_add(group.len() as u64, Relaxed);
                let shard = self.ctx.shard;
                let mut replies = Vec::with_capacity(group.len());
                for (i, w) in group.into_iter().enumerate() {
                    let b = &w.batch;
                    // The payload was encoded by this process moments ago: it decodes.
                    if let Some((_, rows)) = b.payload.decode() {
                        self.apply(&b.db, rows, (shard, first + i as u64));
                    }
                    replies.push(w.reply);
                }
                self.acknowledge(replies);
            }
            Err(e) => {
                error!(region = %self.ctx.region_name, shard = self.ctx.shard, "WAL append failed, writes refused: {e}");
                let err = CommitError::from(e);
                for w in group {
                    let _ = w.reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Shared storage: rows of the region's log, already durable in it, go to memory as
    /// they are, each block remembering the log messages it holds.
    fn apply_logged(&mut self, group: Vec<WriteMsg>) {
        let shard = self.ctx.shard;
        let mut replies = Vec::with_capacity(group.len());
        for w in group {
            let b = &w.batch;
            let Some(seq) = b.log_seq else {
                let _ = w.reply.send(Err(CommitError::Io(format!(
                    "region {} keeps its rows in its log (shared storage): a write must come through it",
                    self.ctx.region_name
                ))));
                continue;
            };
            if let Some((_, rows)) = b.payload.decode() {
                self.apply(&b.db, rows, (shard, seq));
            }
            replies.push(w.reply);
        }
        self.acknowledge(replies);
    }

    /// Acknowledges applied writes, once the shard's gauges count their rows: a writer
    /// reading `/metrics` after its 204 sees them.
    fn acknowledge(&self, replies: Vec<oneshot::Sender<Result<(), CommitError>>>) {
        self.publish_stats();
        for r in replies {
            let _ = r.send(Ok(()));
        }
    }

    /// Shared storage: blocks whose every row the manifest's log mark says is in files
    /// leave memory (the lease holder flushed them), oldest first by construction: a
    /// block's rows all come before the mark.
    fn drop_covered(&mut self) {
        let Some(log) = &self.ctx.log else {
            return;
        };
        let through = log.through();
        let me = self.ctx.shard;
        let covered =
            |wal: &BTreeMap<usize, (u64, u64)>| wal.get(&me).is_some_and(|r| r.1 <= through);
        let before = (self.blocks.len(), self.flushing.len());
        let mut freed = 0u64;
        self.blocks.retain(|_, b| {
            let gone = covered(&b.wal);
            if gone {
                freed += b.block.bytes() as u64;
            }
            !gone
        });
        let mut done = Vec::new();
        self.flushing.retain(|f| {
            let gone = !f.submitted && covered(&f.wal);
            if gone {
                freed += f.bytes;
                done.push(f.id);
            }
            !gone
        });
        if before == (self.blocks.len(), self.flushing.len()) {
            return;
        }
        let m = &self.ctx.metrics;
        let _ = m
            .memory_bytes
            .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(freed)));
        for id in done {
            self.settle_barriers(id);
        }
        self.publish_in_memory();
        self.publish_held();
        self.notify_if_empty();
    }

    /// Shared storage: tells the log which message the oldest row held comes from.
    fn publish_held(&self) {
        if let Some(log) = &self.ctx.log {
            let me = self.ctx.shard;
            let held = self
                .blocks
                .values()
                .map(|b| &b.wal)
                .chain(self.flushing.iter().map(|f| &f.wal))
                .filter_map(|w| w.get(&me).map(|r| r.0))
                .min();
            log.set_held(me, held);
        }
    }

    fn start_flush(&mut self, key: &BlockKey) {
        let Some(mut active) = self.blocks.remove(key) else {
            return;
        };
        let chunks = active.block.freeze();
        if chunks.is_empty() {
            self.publish_in_memory();
            return;
        }
        self.next_flushing_id += 1;
        let f = Flushing {
            id: self.next_flushing_id,
            key: key.clone(),
            chunks,
            file_seq: if self.ctx.log.is_some() {
                0
            } else {
                self.ctx.manifest.next_file_seq()
            },
            wal: active.wal,
            bytes: active.block.bytes() as u64,
            submitted: false,
            retry_at: None,
        };
        self.flushing.push(f);
        self.publish_in_memory();
    }

    /// Hands the blocks waiting to be flushed to the flush pool: a large block is a job of
    /// its own; small ones go together, up to `BATCH_PARTS` blocks or `BATCH_BYTES`, so
    /// that thousands of small measurements cost a few syncs and manifest edits, not
    /// thousands (each is still its own file: one schema per measurement).
    fn submit_pending(&mut self) {
        if self.ctx.log.is_some() {
            return self.submit_in_order();
        }
        let mut batch: Vec<FlushPart> = Vec::new();
        let mut batch_bytes = 0u64;
        for f in self
            .flushing
            .iter_mut()
            .filter(|f| !f.submitted && f.retry_at.is_none())
        {
            f.submitted = true;
            let part = f.part();
            if part.bytes >= BATCH_BYTES {
                send_job(&self.ctx, &self.ctrl_tx, vec![part], None);
                continue;
            }
            batch_bytes += part.bytes;
            batch.push(part);
            if batch.len() >= BATCH_PARTS || batch_bytes >= BATCH_BYTES {
                send_job(&self.ctx, &self.ctrl_tx, std::mem::take(&mut batch), None);
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            send_job(&self.ctx, &self.ctrl_tx, batch, None);
        }
    }

    /// Shared storage: the lease holder flushes one job at a time, in the order the blocks
    /// were frozen, each file taking its seq now, from the range this node reserved when
    /// it took the lease (above every seq used before): a key's files then follow the log,
    /// whichever nodes held the lease before. A failed job is resubmitted first, under new
    /// seqs. Without the lease, frozen blocks wait for the holder's flush (drop_covered), or
    /// for this node to take the lease over.
    fn submit_in_order(&mut self) {
        // The epoch first: seqs taken after it come from its reign's range (or a later
        // one, whose fence refuses this job, which then goes again).
        let epoch = self.ctx.log.as_ref().map_or(0, |l| l.epoch());
        if epoch == 0 || self.flushing.iter().any(|f| f.submitted) {
            return;
        }
        let mut parts: Vec<FlushPart> = Vec::new();
        let mut bytes = 0u64;
        for f in self.flushing.iter_mut() {
            if f.retry_at.is_some() || parts.len() >= BATCH_PARTS || bytes >= BATCH_BYTES {
                break;
            }
            f.file_seq = self.ctx.manifest.next_file_seq();
            f.submitted = true;
            bytes += f.bytes;
            parts.push(f.part());
        }
        if parts.is_empty() {
            return;
        }
        if send_job(&self.ctx, &self.ctrl_tx, parts, Some(epoch)) {
            if let Some(log) = &self.ctx.log {
                log.flush_started(self.ctx.shard, crate::region::shared::mono_ns());
            }
        } else {
            for f in self.flushing.iter_mut().filter(|f| f.submitted) {
                f.submitted = false;
            }
        }
    }

    fn flush_all(&mut self) {
        let keys: Vec<BlockKey> = self.blocks.keys().cloned().collect();
        for k in keys {
            self.start_flush(&k);
        }
        self.submit_pending();
    }

    /// Lowest WAL seq of this shard's log still needed by a block in memory.
    fn wal_needed(&self) -> u64 {
        let me = self.ctx.shard;
        let active = self
            .blocks
            .values()
            .filter_map(|b| b.wal.get(&me).map(|r| r.0));
        let flushing = self
            .flushing
            .iter()
            .filter_map(|f| f.wal.get(&me).map(|r| r.0));
        active
            .chain(flushing)
            .min()
            .unwrap_or_else(|| self.wal.as_ref().map_or(0, Wal::next_seq))
    }

    /// Starts flushing every block and replies once those (and any flush under way) are in
    /// files.
    fn barrier(&mut self, reply: std::sync::mpsc::Sender<()>) {
        self.flush_all();
        let seqs: Vec<u64> = self.flushing.iter().map(|f| f.id).collect();
        if seqs.is_empty() {
            let _ = reply.send(());
        } else {
            self.barriers.push((seqs, reply));
        }
    }

    fn on_flush_done(&mut self, file_seq: u64, result: Result<FlushOutcome, String>) {
        if let Some(log) = &self.ctx.log {
            log.flushed(result.is_ok(), crate::region::shared::mono_ns());
            log.flush_ended(self.ctx.shard);
        }
        let Some(pos) = self
            .flushing
            .iter()
            .position(|f| f.submitted && f.file_seq == file_seq)
        else {
            return;
        };
        if result.is_ok() {
            self.settle_barriers(self.flushing[pos].id);
        }
        match result {
            Ok(outcome) => {
                // The flush job committed the file to the manifest before reporting.
                let f = self.flushing.remove(pos);
                self.publish_in_memory();
                let m = &self.ctx.metrics;
                m.memory_bytes
                    .fetch_sub(f.bytes.min(m.memory_bytes.load(Relaxed)), Relaxed);
                m.flushes.fetch_add(1, Relaxed);
                m.flush_rows.fetch_add(outcome.rows, Relaxed);
                m.flush_bytes.fetch_add(outcome.bytes, Relaxed);
                m.flush_micros
                    .fetch_add((outcome.seconds * 1e6) as u64, Relaxed);
                debug!(
                    region = %self.ctx.region_name, shard = self.ctx.shard, db = %f.key.db,
                    measurement = %f.key.measurement, rows = outcome.rows, merged = outcome.merged,
                    bytes = outcome.bytes, secs = outcome.seconds, "flushed block"
                );
                // Finding the oldest record still needed walks every block: once the
                // flushes under way are done, or at most every WAL_TRIM_EVERY (a shutdown
                // of thousands of small blocks made it quadratic).
                if self.flushing.is_empty() || self.wal_trimmed.elapsed() >= WAL_TRIM_EVERY {
                    self.wal_trimmed = Instant::now();
                    if let Err(e) = self.drop_covered_wal() {
                        warn!("could not remove covered WAL segments: {e}");
                    }
                }
                self.publish_held();
            }
            Err(e) => {
                self.ctx.metrics.flush_failures.fetch_add(1, Relaxed);
                error!(region = %self.ctx.region_name, shard = self.ctx.shard, "flush failed, will retry: {e}");
                self.flushing[pos].retry_at = Some(Instant::now() + FLUSH_RETRY);
                self.flushing[pos].submitted = false;
            }
        }
        self.notify_if_empty();
    }

    /// Barriers waiting for block `id`'s rows to be in files: they are.
    fn settle_barriers(&mut self, id: u64) {
        for (ids, _) in &mut self.barriers {
            ids.retain(|s| *s != id);
        }
        self.barriers.retain(|(seqs, reply)| {
            if seqs.is_empty() {
                let _ = reply.send(());
            }
            !seqs.is_empty()
        });
    }

    fn notify_if_empty(&mut self) {
        if self.flushing.is_empty() && self.blocks.is_empty() {
            for w in self.flush_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn snapshot(&mut self, db: &str, measurement: Option<&str>) -> Vec<MemSource> {
        let wanted =
            |k: &BlockKey| &*k.db == db && measurement.is_none_or(|m| &*k.measurement == m);
        let mut out = Vec::new();
        for (k, b) in self.blocks.iter_mut().filter(|(k, _)| wanted(k)) {
            out.push(MemSource {
                key: k.clone(),
                shard: self.ctx.shard,
                chunks: b.block.freeze(),
                flushing_file_seq: None,
                frozen: None,
            });
        }
        for f in self.flushing.iter().filter(|f| wanted(&f.key)) {
            out.push(MemSource {
                key: f.key.clone(),
                shard: self.ctx.shard,
                chunks: f.chunks.clone(),
                flushing_file_seq: (f.file_seq != 0).then_some(f.file_seq),
                frozen: Some(f.id),
            });
        }
        out
    }

    fn publish_stats(&self) {
        let st = &self.ctx.stats;
        st.active_blocks.store(self.blocks.len() as u64, Relaxed);
        st.flushing_blocks
            .store(self.flushing.len() as u64, Relaxed);
        let rows = self
            .blocks
            .values()
            .map(|b| b.block.rows() as u64)
            .sum::<u64>()
            + self
                .flushing
                .iter()
                .map(|f| f.chunks.iter().map(|c| c.rows() as u64).sum::<u64>())
                .sum::<u64>();
        st.rows.store(rows, Relaxed);
        let bytes = self
            .blocks
            .values()
            .map(|b| b.block.bytes() as u64)
            .sum::<u64>()
            + self.flushing.iter().map(|f| f.bytes).sum::<u64>();
        st.bytes.store(bytes, Relaxed);
    }

    /// Flushes what a policy says must go: size, age, partition rollover, or memory pressure.
    fn check_triggers(&mut self) {
        let fc = &self.ctx.flush;
        // Rollover: the newest partition written per (db, measurement). A block of an older
        // partition that stopped receiving rows is done; keeping it until max_age only holds
        // memory (a backfill touches many partitions within seconds).
        let mut newest: HashMap<(&str, &str), i64> = HashMap::new();
        for k in self.blocks.keys() {
            let e = newest
                .entry((&*k.db, &*k.measurement))
                .or_insert(k.partition.0);
            *e = (*e).max(k.partition.0);
        }
        let due: Vec<BlockKey> = self
            .blocks
            .iter()
            .filter(|(k, b)| {
                let rolled_over = newest
                    .get(&(&*k.db, &*k.measurement))
                    .is_some_and(|n| *n > k.partition.0)
                    && b.last_append.elapsed() >= ROLLOVER_IDLE;
                b.block.rows() as u64 >= fc.max_rows
                    || b.block.bytes() as u64 >= fc.max_bytes
                    || b.created.elapsed() >= fc.max_age
                    || rolled_over
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.start_flush(&k);
        }
        // Bodies refused for want of room count as pressure too, so they get it; so does
        // the series catalog (at most memory.series_catalog, below the high-water mark).
        let m = &self.ctx.metrics;
        let pressure = m
            .memory_bytes
            .load(Relaxed)
            .saturating_add(m.waiting_bytes.load(Relaxed))
            .saturating_add(self.ctx.series.counted_bytes(self.ctx.series_catalog_bytes));
        if pressure >= self.ctx.memory_high_water && self.flushing.is_empty() {
            // Above the high-water mark: flush this shard's largest block, one at a time (a
            // flush already queued will lower memory; piling up ever smaller ones would not).
            if let Some(k) = self
                .blocks
                .iter()
                .max_by_key(|(_, b)| b.block.bytes())
                .map(|(k, _)| k.clone())
            {
                self.start_flush(&k);
            }
        }
        let now = Instant::now();
        for f in &mut self.flushing {
            if f.retry_at.is_some_and(|t| t <= now) {
                f.retry_at = None;
            }
        }
        self.drop_covered();
        self.submit_pending();
    }

    fn handle_ctrl(&mut self, msg: Ctrl, stopping: &mut Option<std::sync::mpsc::Sender<()>>) {
        match msg {
            Ctrl::Snapshot {
                db,
                measurement,
                reply,
            } => {
                let _ = reply.send(self.snapshot(&db, measurement.as_deref()));
            }
            Ctrl::FlushAll { reply } => {
                self.flush_all();
                if self.flushing.is_empty() {
                    let _ = reply.send(());
                } else {
                    self.flush_waiters.push(reply);
                }
            }
            Ctrl::FlushBarrier { reply } => self.barrier(reply),
            Ctrl::FlushDone { file_seq, result } => self.on_flush_done(file_seq, result),
            Ctrl::Shutdown { reply } => *stopping = Some(reply),
        }
    }

    /// The shard thread's loop.
    pub fn run(mut self, writes: Receiver<WriteMsg>, ctrl: Receiver<Ctrl>) {
        let mut stopping: Option<std::sync::mpsc::Sender<()>> = None;
        let tick = match self.ctx.sync {
            SyncPolicy::Interval(d) => d.min(TICK),
            SyncPolicy::Always => TICK,
        };
        loop {
            let mut group = Vec::new();
            if stopping.is_none() {
                select! {
                    recv(ctrl) -> m => if let Ok(m) = m { self.handle_ctrl(m, &mut stopping) },
                    recv(writes) -> w => if let Ok(w) = w { group.push(w) },
                    default(tick) => {},
                }
            }
            // Group commit: take every write already queued.
            while group.len() < MAX_GROUP {
                match writes.try_recv() {
                    Ok(w) => group.push(w),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
            while let Ok(m) = ctrl.try_recv() {
                self.handle_ctrl(m, &mut stopping);
            }
            if let SyncPolicy::Interval(d) = self.ctx.sync
                && let Some(wal) = &mut self.wal
                && wal.dirty()
                && wal.since_last_sync() >= d
            {
                if let Err(e) = wal.sync() {
                    error!("interval WAL sync failed: {e}");
                } else {
                    self.ctx.metrics.wal_syncs.fetch_add(1, Relaxed);
                }
            }
            self.check_triggers();
            self.publish_stats();

            if let Some(reply) = &stopping {
                if !writes.is_empty() {
                    continue;
                }
                let Some(wal) = &mut self.wal else {
                    // Shared storage: the region's log holds every row; the node that
                    // takes the lease over (or this one, restarted) flushes them.
                    let _ = reply.send(());
                    for w in self.flush_waiters.drain(..) {
                        let _ = w.send(());
                    }
                    return;
                };
                if let Err(e) = wal.sync() {
                    error!("final WAL sync failed: {e}");
                }
                self.flush_all();
                // Wait for every flush (retrying failures) before leaving.
                while !self.flushing.is_empty() {
                    match ctrl.recv_timeout(TICK) {
                        Ok(Ctrl::FlushDone { file_seq, result }) => {
                            self.on_flush_done(file_seq, result)
                        }
                        Ok(Ctrl::Snapshot {
                            db,
                            measurement,
                            reply,
                        }) => {
                            let _ = reply.send(self.snapshot(&db, measurement.as_deref()));
                        }
                        Ok(
                            Ctrl::FlushAll { reply }
                            | Ctrl::Shutdown { reply }
                            | Ctrl::FlushBarrier { reply },
                        ) => {
                            self.flush_waiters.push(reply);
                        }
                        Err(_) => self.check_triggers(),
                    }
                }
                // Everything is in files: the log can go (a crash from here on replays nothing).
                if let Some(wal) = &mut self.wal
                    && let Err(e) = wal
                        .retire_active()
                        .and_then(|_| wal.remove_below(wal.next_seq()))
                {
                    warn!("could not remove the WAL after the final flush: {e}");
                }
                let _ = reply.send(());
                for w in self.flush_waiters.drain(..) {
                    let _ = w.send(());
                }
                return;
            }
        }
    }
}

/// Whether two strings are equal, comparing their addresses first (strings of one payload
/// that share heap bytes).
fn same_str(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}
