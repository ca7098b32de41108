//! Region ingesters: the write path from checked lines to durable files.
//!
//! ```text
//! Engine::prepare (parse, check, route) ─► Engine::commit ─► shard channel (bounded: 503 when full)
//!   shard thread: WAL append + group fsync ─► Block (Arrow builders) ─► ack
//!   flush trigger (rows | bytes | age | memory | shutdown) ─► flush pool ─► Parquet + manifest
//! ```
//! Start-up ([`Engine::open`]) takes the data-dir lock, opens every manifest, sweeps
//! provable leftovers, loads the schema registry from the manifests, replays WAL records the
//! manifests do not cover into memory (blocks that remember their WAL records, flushed by
//! the usual triggers later), drops segments whose records are all in files, and only then
//! starts the shard threads: traffic is accepted after recovery is complete.

pub mod block;
pub mod delete;
pub mod flush;
pub mod prepare;
pub mod rows;
pub mod schema;
pub mod shard;
pub mod shared;
pub mod wal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, unbounded};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::catalog::leftovers::{Fate, Sweeper, sweep_leftovers};
use crate::catalog::{FileMeta, Manifest};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{ColumnKind, PartitionStart, Precision, RegionId, ShardId};
use crate::router::Router;
use crate::routing::{Horizon, Reach, Routing, RoutingTable};
use crate::storage::cache::IndexCache;
use crate::storage::index::FileIndex;
use crate::storage::paths;
use crate::storage::store::{FileRef, Store};

use crate::catalog::databases::Databases;
use crate::catalog::series::SeriesCatalog;
use flush::FlushJob;
use prepare::{PreparedWrite, ShardBatch};
use schema::SchemaRegistry;
pub use shard::{CommitError, Ctrl, MemSource, WriteMsg};
use shard::{Shard, ShardCtx, ShardStats};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("data dir {0} is in use by another Meridian process (lock file {1} is held)")]
    Locked(PathBuf, PathBuf),
    #[error("cannot start: {0}")]
    Startup(String),
}

/// Why a write was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The body could never fit in memory (413): nothing was stored.
    #[error("too large: {0}")]
    TooLarge(String),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("region {0:?} is not hosted by this node")]
    NotHosted(String),
}

struct ShardHandle {
    writes: Sender<WriteMsg>,
    ctrl: Sender<Ctrl>,
    stats: Arc<ShardStats>,
}

pub struct RegionHandle {
    pub name: Arc<str>,
    /// Its url, replicas and export rule: the config's, or in cluster mode the definitions
    /// published last (`cluster::routing_kv`), replaced as a whole.
    reach: parking_lot::RwLock<Arc<Reach>>,
    pub manifest: Option<Arc<Manifest>>,
    /// Shared storage (`shared_storage`, hosted here): the region's log and flush lease.
    pub log: Option<Arc<shared::SharedLog>>,
    shards: Vec<ShardHandle>,
}

/// In-memory figures of a hosted region, summed over its shards.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct MemoryStats {
    pub active_blocks: u64,
    pub flushing_blocks: u64,
    pub rows: u64,
    pub bytes: u64,
}

impl RegionHandle {
    pub fn hosted(&self) -> bool {
        self.manifest.is_some()
    }

    /// How the region is reached and what it exports, as in force now.
    pub fn reach(&self) -> Arc<Reach> {
        self.reach.read().clone()
    }

    /// Puts other definitions in force (cluster mode: published ones).
    pub fn set_reach(&self, reach: Reach) {
        *self.reach.write() = Arc::new(reach);
    }

    pub fn memory(&self) -> MemoryStats {
        let mut m = MemoryStats::default();
        for s in &self.shards {
            m.active_blocks += s.stats.active_blocks.load(Relaxed);
            m.flushing_blocks += s.stats.flushing_blocks.load(Relaxed);
            m.rows += s.stats.rows.load(Relaxed);
            m.bytes += s.stats.bytes.load(Relaxed);
        }
        m
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

/// Options of [`Engine::open`] that come from the command line.
#[derive(Debug, Default, Clone)]
pub struct OpenOptions {
    /// Regions hosted here; `None` = all.
    pub hosted: Option<Vec<String>>,
    /// Drop the rest of a WAL segment after corruption in its middle instead of refusing to start.
    pub skip_corrupt_wal: bool,
}

/// What a query reads from one region: in-memory chunks and live files, consistent.
pub struct RegionSnapshot {
    pub mem: Vec<MemSource>,
    /// Every live file of the region when the snapshot was taken (shared with the manifest,
    /// not copied); [`RegionSnapshot::files`] picks the snapshot's own.
    pub all_files: Arc<Vec<FileMeta>>,
    /// With a measurement: the positions of its files in `all_files`.
    pub positions: Option<Arc<[u32]>>,
    pub db: Arc<str>,
    /// `None`: every measurement.
    pub measurement: Option<Arc<str>>,
    /// Ids ([`FileMeta::id`]) of files whose rows are still in `mem` (a flush finished
    /// between the two reads).
    pub excluded: HashSet<String>,
    pub store: Store,
    /// Retention rules and the time the snapshot was taken: what a query may see.
    pub retention: Arc<crate::config::RetentionRules>,
    pub now_ns: i64,
}

impl RegionSnapshot {
    /// The earliest time of `measurement` the snapshot's queries may see (`i64::MIN`: all).
    pub fn keeps_from(&self, measurement: &str) -> i64 {
        self.retention
            .keeps_from(&self.db, measurement, self.now_ns)
    }

    /// The live files of the snapshot's db (and measurement) not covered by `mem`.
    pub fn files(&self) -> impl Iterator<Item = &FileMeta> {
        let all = &self.all_files;
        let picked: Box<dyn Iterator<Item = &FileMeta>> = match &self.positions {
            Some(p) => Box::new(p.iter().filter_map(move |i| all.get(*i as usize))),
            None => Box::new(all.iter()),
        };
        picked.filter(|f| {
            f.db == *self.db
                && self
                    .measurement
                    .as_deref()
                    .is_none_or(|m| f.measurement == m)
                && (self.excluded.is_empty() || !self.excluded.contains(f.id().as_ref()))
        })
    }
}

pub struct Engine {
    /// The routing versions in force (replaced at run time in cluster mode).
    routing: RoutingTable,
    partition_duration_ns: i64,
    registry: SchemaRegistry,
    series: Arc<SeriesCatalog>,
    databases: Databases,
    /// One delete at a time.
    delete_lock: Mutex<()>,
    /// `[[retention]]`: points older than a rule keeps are hidden from every query.
    retention: Arc<crate::config::RetentionRules>,
    /// Rows per row group of the files the server writes.
    row_group_rows: usize,
    /// `[storage] time_unit` of the files a delete rewrites.
    time_unit: crate::config::FileTimeUnit,
    /// `memory.max_series_per_database` (0: no limit).
    max_series_per_database: u64,
    /// `memory.series_catalog`.
    series_catalog_bytes: u64,
    regions: Vec<RegionHandle>,
    shards_per_region: usize,
    memory_limit: u64,
    metrics: Arc<Metrics>,
    index_cache: Arc<IndexCache>,
    /// Set by `shutdown`: background work (the index warm-up) stops.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    data_dir: PathBuf,
    _lock: File,
}

fn startup<E: std::fmt::Display>(ctx: &str) -> impl FnOnce(E) -> EngineError + '_ {
    move |e| EngineError::Startup(format!("{ctx}: {e}"))
}

/// Bytes of the files directly in `dir` (0 when it cannot be read).
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Free bytes (for unprivileged users) of the file system holding `dir`.
fn disk_free(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is written by statvfs before it is read.
    let ok = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } == 0;
    // SAFETY: statvfs returned 0, so it filled `st`.
    ok.then(|| {
        let st = unsafe { st.assume_init() };
        // The field types differ between platforms (u32 on some): widened, then multiplied.
        u64::try_from(u128::from(st.f_bavail) * u128::from(st.f_frsize)).unwrap_or(u64::MAX)
    })
}

/// The file in the data dir that records the ingest shards per region it runs with.
pub const SHARDS_FILE: &str = "ingest_shards.json";

/// Where [`shards_for_data_dir`] took the shard count from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardsFrom {
    /// `ingest.shards_per_region` in the config.
    Config,
    /// [`SHARDS_FILE`]: the count this data dir last ran with.
    Remembered,
    /// The WAL shard directories of a data dir written before the count was recorded.
    Wal,
    /// One per core: a region kept in a bucket, whose files may have been written by any
    /// node (the default before the count was recorded, which every version agrees on).
    Cores,
    /// A new data dir: the default for this machine and config.
    Default,
}

/// The ingest shards per region a server runs with on `data_dir` ([`record_shards`] writes
/// it there once the server has opened the data dir). An explicit count (`configured`) is
/// used as given. Without one: the count the data dir ran with (recorded; for an older data
/// dir, its regions' WAL shard directories); else, when a region is kept in a bucket (files
/// this disk may not know of, written under any count), one per core, the default every
/// version used; only for a new data dir of local regions `default`. A series' shard is its
/// hash modulo the count, and queries rely on a series living in one shard of a file's WAL
/// ranges, so a default that moved with the machine or the config (cores ÷ regions) must
/// not change the count of a data dir that holds data. A record that cannot be read is an
/// error naming the file, never taken as no record.
pub fn shards_for_data_dir(
    data_dir: &Path,
    regions: &[(&str, bool)],
    configured: Option<usize>,
    default: usize,
    cores: usize,
) -> std::io::Result<(usize, ShardsFrom)> {
    if let Some(n) = configured {
        return Ok((n, ShardsFrom::Config));
    }
    let file = data_dir.join(SHARDS_FILE);
    // Read at most 4 KiB: the record is one small object; anything longer is not one.
    let read = File::open(&file).and_then(|f| {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        f.take(4096).read_to_end(&mut bytes).map(|_| bytes)
    });
    let recorded = match read {
        Ok(bytes) => Some(
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("shards_per_region")?.as_u64())
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=crate::config::MAX_SHARDS_PER_REGION).contains(n))
                .ok_or_else(|| {
                    std::io::Error::other(format!(
                        "{} does not hold a shard count ({{\"shards_per_region\": 1..={}}}): \
                         set ingest.shards_per_region to the count this data dir ran with \
                         (the file is then rewritten), or remove the file to take it from the \
                         WAL directories",
                        file.display(),
                        crate::config::MAX_SHARDS_PER_REGION
                    ))
                })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(n) = recorded {
        return Ok((n, ShardsFrom::Remembered));
    }
    let mut wal = 0;
    for (r, _) in regions {
        let dirs = wal_shard_dirs(&paths::region_dir(data_dir, r))?;
        // Sorted: the last is the highest (a name near usize::MAX saturates).
        wal = wal.max(dirs.last().map_or(0, |d| d.saturating_add(1)));
    }
    Ok(if wal > 0 {
        (
            wal.min(crate::config::MAX_SHARDS_PER_REGION),
            ShardsFrom::Wal,
        )
    } else if regions.iter().any(|(_, bucket)| *bucket) {
        (
            cores.clamp(1, crate::config::MAX_SHARDS_PER_REGION),
            ShardsFrom::Cores,
        )
    } else {
        (default, ShardsFrom::Default)
    })
}

/// Records in `data_dir` the shard count the server opened it with (see
/// [`shards_for_data_dir`]); called once the data dir is opened (its lock held), unless
/// the count came from the record.
pub fn record_shards(data_dir: &Path, n: usize) -> std::io::Result<()> {
    let file = data_dir.join(SHARDS_FILE);
    let body = serde_json::json!({ "shards_per_region": n }).to_string();
    crate::storage::parquet::write_atomically(&file, body.as_bytes())
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The WAL shard directories present under a region (`wal/<n>`).
fn wal_shard_dirs(region_dir: &Path) -> std::io::Result<Vec<usize>> {
    let dir = region_dir.join(paths::WAL_DIR);
    let mut out = Vec::new();
    match fs::read_dir(&dir) {
        Ok(rd) => {
            for e in rd {
                if let Some(n) = e?
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<usize>().ok())
                {
                    out.push(n);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort_unstable();
    Ok(out)
}

/// File seqs a node reserves in a shared manifest at start-up and when it takes a flush
/// lease: never used up (a trillion).
pub const SHARED_SEQS_RESERVED: u64 = 1 << 40;

/// Flushes whose working memory (`staging`) is at least this large are followed by
/// [`release_free_memory`].
const TRIM_AFTER_FLUSH_BYTES: u64 = 8 << 20;

/// Hands freed heap pages back to the kernel after a flush (the block and the flush's
/// staging were just freed): glibc keeps freed memory in its arenas
/// otherwise, and RSS would stay at the high-water mark of every flush.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Engine {
    /// Opens the data dir, recovers, and starts the ingest threads.
    pub fn open(cfg: &Config, opts: &OpenOptions) -> Result<Arc<Engine>, EngineError> {
        let data_dir = cfg.data_dir.clone();
        fs::create_dir_all(&data_dir).map_err(|e| {
            EngineError::Startup(format!("creating data dir {}: {e}", data_dir.display()))
        })?;
        let lock_path = paths::lock_file(&data_dir);
        let lock = File::create(&lock_path).map_err(startup("creating lock file"))?;
        if lock.try_lock().is_err() {
            return Err(EngineError::Locked(data_dir, lock_path));
        }
        Router::new(&cfg.routing).map_err(startup("building router"))?;
        // An interrupted `meridian-compact --reroute` may list moved rows in two regions.
        let journal = data_dir.join(crate::compaction::reroute::JOURNAL);
        if journal.exists() {
            return Err(EngineError::Startup(format!(
                "{} says a `meridian-compact --reroute` was interrupted: rows may be listed in two regions until it finishes; run it again (meridian-compact --config … --reroute) before starting the server",
                journal.display()
            )));
        }
        // The newest point held here (files, WAL): a routing change recorded at this start
        // takes effect after it.
        let mut newest_point: Option<i64> = None;
        let registry = SchemaRegistry::new();
        let series = Arc::new(SeriesCatalog::new());
        let databases = Databases::open(&data_dir).map_err(startup("reading the database list"))?;
        let metrics = Arc::new(Metrics::default());
        let n_shards = cfg.ingest.shards_per_region;
        if let Some(h) = &opts.hosted {
            for name in h {
                if !cfg.routing.regions.iter().any(|r| &r.name == name) {
                    return Err(EngineError::Startup(format!(
                        "--region {name:?} is not a region of the config"
                    )));
                }
            }
        }

        // The flush pool. A flushed file is indexed from the rows just written (only its
        // footer is read back), after the shard was told, so that the first query of the
        // file does not read its time and tag columns.
        let index_cache = Arc::new(IndexCache::new(
            cfg.query.index_cache_bytes,
            cfg.query.page_cache_bytes,
        ));
        let (flush_tx, flush_rx) = unbounded::<(FlushJob, Sender<Ctrl>)>();
        let mut threads = Vec::new();
        for i in 0..cfg.ingest.flush.workers {
            let rx = flush_rx.clone();
            let cache = index_cache.clone();
            let flush_metrics = metrics.clone();
            let t = std::thread::Builder::new()
                .name(format!("flush-{i}"))
                .spawn(move || {
                    let mut last_trim = std::time::Instant::now();
                    while let Ok((job, reply)) = rx.recv() {
                        // The sorting, the keys and the column being encoded.
                        let staging = job.staging();
                        flush_metrics.memory_bytes.fetch_add(staging, Relaxed);
                        // A panic in a flush (a bug) fails the job like an error: its
                        // shard keeps the rows and retries, rather than wait for good.
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            flush::run(&job)
                        }))
                        .unwrap_or_else(|_| Err("the flush panicked".to_string()));
                        let _ = flush_metrics
                            .memory_bytes
                            .fetch_update(Relaxed, Relaxed, |m| Some(m.saturating_sub(staging)));
                        // A trim walks the heap: after every one of thousands of small
                        // flushes it dominated. After a large one, or once a second.
                        if staging >= TRIM_AFTER_FLUSH_BYTES
                            || last_trim.elapsed() >= std::time::Duration::from_secs(1)
                        {
                            release_free_memory();
                            last_trim = std::time::Instant::now();
                        }
                        let written = match result {
                            Ok(done) => done
                                .into_iter()
                                .zip(&job.parts)
                                .map(|((outcome, written), part)| {
                                    let _ = reply.send(Ctrl::FlushDone {
                                        file_seq: part.file_seq,
                                        result: Ok(outcome),
                                    });
                                    written
                                })
                                .collect(),
                            Err(e) => {
                                for part in &job.parts {
                                    let _ = reply.send(Ctrl::FlushDone {
                                        file_seq: part.file_seq,
                                        result: Err(e.clone()),
                                    });
                                }
                                Vec::new()
                            }
                        };
                        for w in written {
                            match FileIndex::from_written(&w.file_ref, &w.rows) {
                                Ok(index) => cache.insert(&w.file_ref, &w.file, index),
                                // Not fatal: the first query of the file builds it.
                                Err(e) => warn!("indexing {}: {e}", w.file_ref.key().display()),
                            }
                        }
                    }
                })
                .map_err(startup("starting flush thread"))?;
            threads.push(t);
        }

        // Every hosted region's manifest first: a missing or damaged one stops start-up
        // before any region has replayed, flushed or swept anything.
        let mut manifests: HashMap<&str, Arc<Manifest>> = HashMap::new();
        for rc in &cfg.routing.regions {
            if opts.hosted.as_ref().is_none_or(|h| h.contains(&rc.name)) {
                let store = Store::for_region(&data_dir, rc, &cfg.s3)
                    .map_err(startup("opening region storage"))?;
                let m = Manifest::open(&store).map_err(startup("opening manifest"))?;
                manifests.insert(rc.name.as_str(), Arc::new(m));
            }
        }

        let mut regions = Vec::new();
        let mut shard_runs: Vec<(Shard, Receiver<WriteMsg>, Receiver<Ctrl>, String)> = Vec::new();
        for rc in &cfg.routing.regions {
            let hosted = manifests.contains_key(rc.name.as_str());
            let name: Arc<str> = Arc::from(rc.name.as_str());
            if !hosted {
                regions.push(RegionHandle {
                    name,
                    reach: parking_lot::RwLock::new(Arc::new(Reach::from_config(rc))),
                    manifest: None,
                    log: None,
                    shards: Vec::new(),
                });
                continue;
            }
            let region_dir = paths::region_dir(&data_dir, &rc.name);
            let Some(manifest) = manifests.remove(rc.name.as_str()) else {
                continue;
            };
            let files = manifest.files();
            // Shared storage: the other nodes' queries may read retired files and their
            // flushes write files no edit names yet; this node's seqs are its own.
            let log = match (rc.shared_storage, &cfg.cluster) {
                (false, _) => None,
                (true, None) => {
                    return Err(EngineError::Startup(format!(
                        "region {:?} has shared_storage but the config has no [cluster]",
                        rc.name
                    )));
                }
                (true, Some(cl)) => {
                    let node = cl.node.as_deref().unwrap_or("node");
                    Self::refuse_wal_of_shared(&region_dir, &rc.name, opts.skip_corrupt_wal)?;
                    let orphans = crate::catalog::leftovers::sweep_own_orphans(&manifest, node)
                        .map_err(startup("removing this node's unrecorded files"))?;
                    for path in orphans {
                        warn!(file = %path, "removed a file this node wrote before it stopped and never recorded");
                    }
                    // Every node of the region runs as many shards: checked against the
                    // nodes announcing themselves in JetStream KV (cluster::lease).
                    manifest
                        .reserve_seqs(node, SHARED_SEQS_RESERVED, n_shards)
                        .map_err(startup("reserving file seqs in the shared manifest"))?;
                    Some(Arc::new(shared::SharedLog::new(n_shards)))
                }
            };
            // No query runs yet: files retired by committed edits go now (on shared
            // storage, once other nodes' queries are done with them).
            let swept = if log.is_some() {
                sweep_leftovers(
                    &manifest,
                    &region_dir,
                    true,
                    cfg.query.timeout + std::time::Duration::from_secs(30),
                    Sweeper::BesideServer,
                )
            } else {
                sweep_leftovers(
                    &manifest,
                    &region_dir,
                    true,
                    std::time::Duration::ZERO,
                    Sweeper::Owner,
                )
            }
            .map_err(startup("cleaning region dir"))?;
            for l in swept {
                match l.fate {
                    Fate::Removed(why) => {
                        warn!(file = %l.path.display(), "removed a leftover: {why}")
                    }
                    Fate::Quarantined(to) => warn!(
                        file = %l.path.display(), moved_to = %to.display(),
                        "a data file the manifest does not list was moved aside, not deleted; check it, then delete it or rebuild the manifest"
                    ),
                }
            }
            // Tombstones (no rows) name a measurement that may be gone: not a schema.
            for f in files.iter().filter(|f| f.rows > 0) {
                let cols: Vec<(&str, ColumnKind)> =
                    f.columns.iter().map(|(n, k)| (n.as_str(), *k)).collect();
                registry.load(&f.db, &f.measurement, &cols);
            }

            let mut shards = Vec::new();
            let mut handles = Vec::new();
            for i in 0..n_shards {
                let (wtx, wrx) = bounded(cfg.ingest.wal.queue_depth);
                let (ctx_tx, ctx_rx) = unbounded();
                let stats = Arc::new(ShardStats::default());
                handles.push(ShardHandle {
                    writes: wtx,
                    ctrl: ctx_tx.clone(),
                    stats: stats.clone(),
                });
                let max_in_manifest = files
                    .iter()
                    .flat_map(|f| f.wal.iter())
                    .filter(|r| r.shard == i)
                    .map(|r| r.max_seq)
                    .max()
                    .unwrap_or(0);
                let w = if log.is_some() {
                    None
                } else {
                    let wal_dir = paths::wal_dir(&region_dir, i);
                    let existing = wal::read_dir(&wal_dir, opts.skip_corrupt_wal)
                        .map_err(startup("reading WAL"))?;
                    let next_seq = max_in_manifest
                        .max(existing.max_seq.unwrap_or(0))
                        .checked_add(1)
                        .ok_or_else(|| {
                            EngineError::Startup(format!(
                                "WAL sequence numbers of {} shard {i} are exhausted",
                                region_dir.display()
                            ))
                        })?;
                    Some(
                        wal::Wal::open(&wal_dir, next_seq, cfg.ingest.wal.segment_bytes)
                            .map_err(startup("opening WAL"))?,
                    )
                };
                let ctx = ShardCtx {
                    region_name: name.clone(),
                    shard: i,
                    manifest: manifest.clone(),
                    partition_duration_ns: cfg.routing.partition_duration_ns,
                    flush: cfg.ingest.flush.clone(),
                    sync: cfg.ingest.wal.sync,
                    memory_high_water: cfg.ingest.memory.high_water_bytes,
                    series_catalog_bytes: cfg.ingest.memory.series_catalog_bytes,
                    metrics: metrics.clone(),
                    flush_tx: flush_tx.clone(),
                    stats,
                    series: series.clone(),
                    log: log.clone(),
                };
                shards.push((Shard::new(ctx, w, ctx_tx), wrx, ctx_rx));
            }

            if log.is_none() {
                Self::recover(
                    &region_dir,
                    &manifest,
                    &registry,
                    &mut shards,
                    &metrics,
                    opts.skip_corrupt_wal,
                    &mut newest_point,
                )?;
            } else {
                for f in files.iter() {
                    newest_point = newest_point.max(Some(f.max_time));
                }
            }

            for (s, wrx, crx) in shards {
                shard_runs.push((s, wrx, crx, rc.name.clone()));
            }
            regions.push(RegionHandle {
                name,
                reach: parking_lot::RwLock::new(Arc::new(Reach::from_config(rc))),
                manifest: Some(manifest),
                log,
                shards: handles,
            });
        }
        drop(flush_tx);
        let routing = Self::open_routing(cfg, &data_dir, newest_point)?;

        for (i, (s, wrx, crx, region)) in shard_runs.into_iter().enumerate() {
            let t = std::thread::Builder::new()
                .name(format!("ingest-{region}-{}", i % n_shards.max(1)))
                .spawn(move || s.run(wrx, crx))
                .map_err(startup("starting ingest thread"))?;
            threads.push(t);
        }

        Ok(Arc::new(Engine {
            routing,
            partition_duration_ns: cfg.routing.partition_duration_ns,
            registry,
            series,
            databases,
            delete_lock: Mutex::new(()),
            retention: Arc::new(cfg.retention.clone()),
            row_group_rows: cfg.ingest.flush.row_group_rows,
            time_unit: cfg.ingest.flush.time_unit,
            max_series_per_database: cfg.ingest.memory.max_series_per_database,
            series_catalog_bytes: cfg.ingest.memory.series_catalog_bytes,
            regions,
            shards_per_region: n_shards,
            memory_limit: cfg.ingest.memory.limit_bytes,
            metrics,
            index_cache,
            stopping: Arc::default(),
            threads: Mutex::new(threads),
            data_dir,
            _lock: lock,
        }))
    }

    /// A region switched to shared storage must not leave rows in its own WAL: the log is
    /// read from the shared manifest's mark, and those rows would never be read again.
    fn refuse_wal_of_shared(
        region_dir: &Path,
        region: &str,
        skip_corrupt: bool,
    ) -> Result<(), EngineError> {
        for d in wal_shard_dirs(region_dir).map_err(startup("listing WAL"))? {
            let out = wal::read_dir(&paths::wal_dir(region_dir, d), skip_corrupt)
                .map_err(startup("reading WAL"))?;
            if !out.records.is_empty() {
                return Err(EngineError::Startup(format!(
                    "region {region:?} has shared_storage now, but {} holds {} WAL record(s) of its own: start once without shared_storage so that they are flushed, then switch",
                    region_dir.display(),
                    out.records.len()
                )));
            }
        }
        Ok(())
    }

    /// Replays WAL records of a region that its manifest does not cover, flushes them, and
    /// removes the replayed segments.
    fn recover(
        region_dir: &Path,
        manifest: &Manifest,
        registry: &SchemaRegistry,
        shards: &mut [(Shard, Receiver<WriteMsg>, Receiver<Ctrl>)],
        metrics: &Metrics,
        skip_corrupt: bool,
        newest_point: &mut Option<i64>,
    ) -> Result<(), EngineError> {
        let files = manifest.files();
        for f in files.iter() {
            *newest_point = (*newest_point).max(Some(f.max_time));
        }
        // (wal shard, db, measurement, partition) → covered seq ranges.
        type Key<'a> = (usize, &'a str, &'a str, i64);
        let mut covered: HashMap<Key<'_>, Vec<(u64, u64)>> = HashMap::new();
        for f in files.iter() {
            for r in &f.wal {
                covered
                    .entry((
                        r.shard,
                        f.db.as_str(),
                        f.measurement.as_str(),
                        f.partition_start,
                    ))
                    .or_default()
                    .push((r.min_seq, r.max_seq));
            }
        }
        let n = shards.len().max(1);
        let dirs = wal_shard_dirs(region_dir).map_err(startup("listing WAL"))?;
        let mut replayed_any = false;
        let mut foreign = Vec::new();
        for d in dirs {
            let wal_dir = paths::wal_dir(region_dir, d);
            let out = wal::read_dir(&wal_dir, skip_corrupt).map_err(startup("reading WAL"))?;
            for (file, offset) in &out.torn {
                warn!(file = %file.display(), offset, "WAL segment has a torn tail; cut at the last good record");
            }
            for (file, offset, reason) in &out.skipped {
                warn!(file = %file.display(), offset, "skipping corrupt WAL data as asked: {reason}");
            }
            if d >= n {
                foreign.push(wal_dir.clone());
            }
            let (shard, _, _) = &mut shards[d % n];
            let duration = shard.partition_duration_ns();
            let (mut records, mut points, mut skipped) = (0u64, 0u64, 0u64);
            for rec in &out.records {
                let Some((db_name, rows)) = rows::decode(&rec.payload) else {
                    warn!(dir = %wal_dir.display(), seq = rec.seq, "undecodable WAL record skipped");
                    continue;
                };
                let db: Arc<str> = Arc::from(db_name);
                let mut keep = Vec::new();
                for row in rows {
                    let Ok(row) = row else {
                        warn!(dir = %wal_dir.display(), seq = rec.seq, "malformed row in WAL record; rest of the record skipped");
                        break;
                    };
                    let part = PartitionStart::of(row.ts, duration).0;
                    let is_covered = covered
                        .get(&(d, db_name, row.measurement, part))
                        .is_some_and(|rs| rs.iter().any(|(a, b)| (*a..=*b).contains(&rec.seq)));
                    if is_covered {
                        skipped += 1;
                        continue;
                    }
                    // Acknowledged data: recorded whatever its types (written before types
                    // were fixed per measurement, a row may disagree with a file).
                    let mut cols: Vec<(&str, ColumnKind)> = row
                        .tags
                        .iter()
                        .map(|(k, _)| (*k, ColumnKind::Tag))
                        .collect();
                    cols.extend(
                        row.fields
                            .iter()
                            .map(|(k, v)| (*k, ColumnKind::Field(block::field_type_of(v)))),
                    );
                    registry.load(db_name, row.measurement, &cols);
                    *newest_point = (*newest_point).max(Some(row.ts));
                    keep.push(row);
                }
                points += keep.len() as u64;
                if !keep.is_empty() {
                    records += 1;
                }
                shard.apply(&db, keep.into_iter(), (d, rec.seq));
            }
            if records > 0 {
                replayed_any = true;
            }
            metrics.replayed_records.fetch_add(records, Relaxed);
            metrics.replayed_points.fetch_add(points, Relaxed);
            if out.records.is_empty() {
                continue;
            }
            info!(
                region_dir = %region_dir.display(), wal_shard = d, records, points, already_in_files = skipped,
                "replayed WAL"
            );
        }
        // Replayed rows stay in memory, in blocks that remember their WAL records, and are
        // flushed by the usual triggers once traffic is accepted: a restart costs the replay,
        // not a file per replayed block, and a full disk does not keep the server from
        // starting and serving reads. Only logs of shards that no longer exist (fewer
        // shards than before) are flushed now, so that their directories can go.
        if replayed_any && !foreign.is_empty() {
            for (shard, _, ctrl) in shards.iter_mut() {
                shard
                    .flush_all_and_wait(ctrl)
                    .map_err(|e| EngineError::Startup(format!("flushing replayed WAL: {e}")))?;
            }
        }
        for (shard, _, _) in shards.iter_mut() {
            shard
                .drop_covered_wal()
                .map_err(startup("removing replayed WAL"))?;
        }
        for dir in foreign {
            // Logs of shards that no longer exist: everything in them is now in files.
            fs::remove_dir_all(&dir).map_err(startup("removing old WAL directory"))?;
        }
        Ok(())
    }

    /// The routing versions in force now.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.current()
    }

    /// The routing versions and, in cluster mode, when they were last read.
    pub fn routing_table(&self) -> &RoutingTable {
        &self.routing
    }

    /// Outside cluster mode, the versions of `<data_dir>/routing.json`, with the config's
    /// routing recorded when it changed; in cluster mode nothing is routable until the
    /// cluster's versions are read from NATS.
    fn open_routing(
        cfg: &Config,
        data_dir: &Path,
        newest_point: Option<i64>,
    ) -> Result<RoutingTable, EngineError> {
        if let Some(c) = &cfg.cluster {
            let lead = i64::try_from(c.routing_lead.as_nanos()).unwrap_or(i64::MAX);
            return Ok(RoutingTable::cluster(lead));
        }
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let (history, outcome) =
            crate::catalog::routing_log::open(data_dir, &cfg.routing, newest_point, now)
                .map_err(EngineError::Startup)?;
        use crate::catalog::routing_log::Outcome;
        match outcome {
            Outcome::Recorded {
                number,
                effective_from,
            } => {
                let at = chrono::DateTime::from_timestamp_nanos(effective_from).to_rfc3339();
                info!(
                    version = number,
                    effective_from = %at,
                    "the routing of the config changed: recorded as a new version; points before it keep the routing they were written with"
                );
                // A point stamped far ahead holds the change back until its time.
                if effective_from > now.saturating_add(86_400_000_000_000) {
                    warn!(
                        version = number,
                        effective_from = %at,
                        "the new routing takes effect only after the newest point stored here, more than a day ahead: points stamped before then keep the old routing (delete the far-future points to bring the change forward)"
                    );
                }
            }
            Outcome::Started { had_data: true } => warn!(
                "no routing.json beside stored data: the routing of regions.toml is taken as the one every stored point was written with (if it changed since, restore routing.json from a backup)"
            ),
            Outcome::Started { had_data: false } | Outcome::Unchanged => {}
        }
        let routing = Routing::compile(&history, &cfg.routing);
        for v in &history.versions {
            if let Err(e) = routing.at(v.effective_from) {
                warn!("{e}: points of its time are refused and queries over it ask every region");
            }
        }
        Ok(RoutingTable::local(routing))
    }

    pub fn registry(&self) -> &SchemaRegistry {
        &self.registry
    }

    /// The measurements of `db` in the regions hosted here and their columns, without those
    /// whose every series a `DELETE` or `DROP SERIES` removed (their files still hold the
    /// points until compaction, hidden from every query): what InfluxQL's wildcards and
    /// SHOW statements see, as InfluxDB forgets such a measurement. All of them while the
    /// series catalog is loading.
    pub fn live_measurements(
        &self,
        db: &str,
    ) -> Vec<(Arc<str>, Arc<crate::region::schema::MeasurementSchema>)> {
        let loaded = self.series.is_loaded();
        self.registry
            .measurements(db)
            .into_iter()
            .filter(|(m, _)| !loaded || self.series.get(db, m).is_none_or(|e| !e.read().is_empty()))
            .collect()
    }

    /// Databases made by `CREATE DATABASE`.
    pub fn databases(&self) -> &Databases {
        &self.databases
    }

    /// Every series of every measurement (see [`SeriesCatalog`]).
    pub fn series(&self) -> &Arc<SeriesCatalog> {
        &self.series
    }

    /// Adds the series of every live file to the series catalog, in the background (the
    /// rows in memory were added by the replay already), and marks it loaded. Only the tag
    /// columns are read.
    pub fn load_series_catalog(self: &Arc<Self>) {
        let engine = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("meridian-series-load".into())
            .spawn(move || {
                let Some(e) = engine.upgrade() else { return };
                let started = std::time::Instant::now();
                let mut files: Vec<(FileRef, FileMeta)> = Vec::new();
                for r in &e.regions {
                    if let Some(m) = &r.manifest {
                        let store = m.store().clone();
                        files.extend(m.files().iter().map(|f| (store.file(f), f.clone())));
                    }
                }
                let (series, stopping) = (e.series.clone(), e.stopping.clone());
                drop(e);
                let mut read = 0usize;
                for (path, meta) in &files {
                    if stopping.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    if meta.rows == 0 {
                        continue;
                    }
                    let tags = meta.tag_names();
                    let result = crate::storage::parquet::for_each_tag_set(path, &tags, |set| {
                        series.add_series(&meta.db, &meta.measurement, [set]);
                    });
                    match result {
                        Ok(()) => read += 1,
                        // Compacted away meanwhile (its rows are in a newer file, read too),
                        // or unreadable: queries of it will say so.
                        Err(err) => warn!(%err, "series catalog: a file was skipped"),
                    }
                }
                series.mark_loaded();
                info!(
                    files = read,
                    secs = started.elapsed().as_secs_f64(),
                    "series catalog loaded"
                );
            });
        if let Err(e) = spawned {
            warn!("cannot start the series catalog load: {e}; marking it loaded as is");
            self.series.mark_loaded();
        }
    }

    /// Keeps each hosted region's manifest current in the background: every second, the
    /// edits another writer (a compactor beside the server) committed are applied, so
    /// queries see its files within about a second; files retired more than `grace` ago
    /// (longer than any query runs) are deleted from storage.
    pub fn keep_manifests_current(self: &Arc<Self>, grace: Duration) {
        let engine = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("meridian-manifest".into())
            .spawn(move || {
                let mut ticks = 0u64;
                let mut seen: HashMap<String, u64> = HashMap::new();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let Some(e) = engine.upgrade() else { return };
                    if e.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    ticks += 1;
                    for r in &e.regions {
                        let Some(m) = &r.manifest else { continue };
                        match m.refresh() {
                            Ok(true) => info!(region = %r.name, version = m.version(), "manifest: applied edits of another writer"),
                            Ok(false) => {}
                            Err(err) => warn!(region = %r.name, %err, "manifest refresh failed; will retry"),
                        }
                        // Files of measurements this server never saw written (rollups
                        // written beside it or in the background): their schema and series.
                        let version = m.version();
                        if seen.insert(r.name.to_string(), version) != Some(version) {
                            e.learn_new_measurements(m);
                        }
                        if ticks.is_multiple_of(10) {
                            let due = m.retired_due(grace);
                            if due.is_empty() {
                                continue;
                            }
                            match m.store().delete(&due) {
                                Ok(()) => {
                                    m.forget_retired(&due);
                                    info!(region = %r.name, files = due.len(), "deleted replaced files after their grace period");
                                }
                                Err(err) => warn!(region = %r.name, %err, "deleting replaced files failed; will retry"),
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            warn!(
                "cannot start the manifest upkeep: edits of a compactor beside the server are seen after a restart only: {e}"
            );
        }
    }

    /// Adds to the schema registry and the series catalog the measurements of live files
    /// that neither knows (files another writer added: rollups); only the tag columns of
    /// those files are read.
    fn learn_new_measurements(&self, manifest: &Manifest) {
        let files = manifest.files();
        // The files of each measurement neither catalog knows, grouped in one pass.
        let mut unknown: BTreeMap<(&str, &str), Vec<&FileMeta>> = BTreeMap::new();
        for f in files.iter().filter(|f| f.rows > 0) {
            if self.registry.get(&f.db, &f.measurement).is_none() {
                unknown.entry((&f.db, &f.measurement)).or_default().push(f);
            }
        }
        for ((db, measurement), group) in unknown {
            // Its columns are those of all its files (a later file may add a field).
            let mut cols: Vec<(&str, ColumnKind)> = Vec::new();
            for (n, k) in group.iter().flat_map(|f| f.columns.iter()) {
                if !cols.iter().any(|(c, _)| *c == n.as_str()) {
                    cols.push((n.as_str(), *k));
                }
            }
            let mut complete = true;
            for f in &group {
                let tags = f.tag_names();
                let result = crate::storage::parquet::for_each_tag_set(
                    &manifest.store().file(f),
                    &tags,
                    |set| {
                        self.series.add_series(db, measurement, [set]);
                    },
                );
                if let Err(err) = result {
                    warn!(%err, "series catalog: a new file could not be read; tried again at the next manifest change");
                    complete = false;
                }
            }
            // Known only once every file was read: until then it is looked at again.
            if complete {
                self.registry.load(db, measurement, &cols);
                info!(%db, %measurement, "a measurement written beside this server is now known");
            }
        }
    }

    /// Joins a background thread at shutdown, before the final deletion of retired files
    /// and checkpoint (it must stop on [`Engine::stopping_flag`]).
    pub fn adopt_thread(&self, t: JoinHandle<()>) {
        self.threads.lock().push(t);
    }

    /// Set when the server begins to stop: background work ends.
    pub fn stopping_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.stopping.clone()
    }

    /// The retention rules of the config.
    pub fn retention(&self) -> &Arc<crate::config::RetentionRules> {
        &self.retention
    }

    /// The hosted regions' names, local directories and manifests (for background work on
    /// their files: retention, downsampling).
    pub fn hosted_manifests(&self) -> Vec<(String, Arc<Manifest>)> {
        self.regions
            .iter()
            .filter_map(|r| r.manifest.as_ref().map(|m| (r.name.to_string(), m.clone())))
            .collect()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What `/metrics` reports besides the counters, read now: per region its files and
    /// the disk free under it, per shard its memory and WAL bytes on disk, series per db.
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        use crate::metrics::{RegionGauges, ShardGauges, Snapshot};
        let regions = self
            .regions
            .iter()
            .map(|r| {
                let Some(m) = &r.manifest else {
                    return RegionGauges {
                        region: r.name.to_string(),
                        ..RegionGauges::default()
                    };
                };
                let files = m.files();
                let dir = paths::region_dir(&self.data_dir, &r.name);
                let shards = r
                    .shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ShardGauges {
                        shard: i,
                        memory_bytes: s.stats.bytes.load(Relaxed),
                        rows: s.stats.rows.load(Relaxed),
                        blocks: s.stats.active_blocks.load(Relaxed)
                            + s.stats.flushing_blocks.load(Relaxed),
                        wal_bytes: dir_bytes(&dir.join(paths::WAL_DIR).join(i.to_string())),
                    })
                    .collect();
                RegionGauges {
                    region: r.name.to_string(),
                    hosted: true,
                    files: files.len() as u64,
                    file_bytes: files.iter().map(|f| f.bytes).sum(),
                    file_rows: files.iter().map(|f| f.rows).sum(),
                    disk_free_bytes: disk_free(&dir),
                    shards,
                    shared: r.log.as_ref().map(|l| crate::metrics::SharedGauges {
                        lease_epoch: l.epoch(),
                        in_files_through: l.through(),
                        applied_through: l.committed(),
                    }),
                }
            })
            .collect();
        Snapshot {
            index_cache: self.index_cache.usage(),
            pages: self.index_cache.pages().usage(),
            series_catalog_bytes: self.series.bytes(),
            series: self.series.series_counts(),
            regions,
        }
    }

    /// The series indexes of Parquet files, shared by every query.
    pub fn index_cache(&self) -> &Arc<IndexCache> {
        &self.index_cache
    }

    /// Builds the series indexes of the live files in the background, newest partitions
    /// first, until half of `query.index_cache` is used, so that the first queries after a
    /// start do not each pay for reading the files' time and tag columns. Queries never wait
    /// for it (one that needs an index not built yet builds it itself).
    pub fn warm_index_cache(self: &Arc<Self>) {
        let engine = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("meridian-index-warm".into())
            .spawn(move || {
                lowest_cpu_priority();
                let mut files: Vec<(FileRef, FileMeta)> = Vec::new();
                let Some(e) = engine.upgrade() else { return };
                for r in &e.regions {
                    if let Some(m) = &r.manifest {
                        let store = m.store().clone();
                        files.extend(m.files().iter().map(|f| (store.file(f), f.clone())));
                    }
                }
                let (cache, stopping) = (e.index_cache.clone(), e.stopping.clone());
                drop(e);
                files.sort_by_key(|(_, f)| std::cmp::Reverse((f.partition_start, f.seq)));
                let mut built = 0usize;
                for (path, meta) in files {
                    // Stop when the server shuts down or the budget is half used.
                    if stopping.load(std::sync::atomic::Ordering::Relaxed)
                        || engine.strong_count() == 0
                        || cache.usage().1 >= cache.budget() / 2
                    {
                        break;
                    }
                    // Retention tombstones hold no rows: nothing to index.
                    if meta.rows == 0 {
                        continue;
                    }
                    match cache.get(&path, &meta) {
                        Ok(_) => built += 1,
                        // Compacted away in the meantime, or unreadable: queries will say so.
                        Err(err) => debug!(%err, "index warm-up skipped a file"),
                    }
                }
                debug!(files = built, "series index warm-up done");
            });
        if let Err(e) = spawned {
            warn!("cannot start the index warm-up thread: {e}");
        }
    }

    pub fn regions(&self) -> &[RegionHandle] {
        &self.regions
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Parse, check and route a body (CPU-bound: call from a blocking thread).
    pub fn prepare(
        &self,
        db: &str,
        body: &[u8],
        precision: Precision,
        now_ns: i64,
    ) -> PreparedWrite {
        // The horizon first: the versions read after it are at least as new as the ones it
        // was confirmed with (RoutingTable::confirm follows install).
        let horizon = self.routing.horizon(now_ns);
        let routing = self.routing.current();
        prepare::prepare(
            self.checks(&routing, horizon, None),
            self.shards_per_region,
            db,
            body,
            precision,
            now_ns,
        )
    }

    /// Checks the rows of a payload of region `region`'s log (cluster mode), as
    /// [`Engine::prepare`] does a body, and puts every row in that region: the node that
    /// received them routed them, and the log is the region's. `None` if the bytes are not
    /// a payload. Returns the payload's db too.
    pub fn prepare_payload(
        &self,
        payload: &[u8],
        now_ns: i64,
        region: RegionId,
    ) -> Option<(String, PreparedWrite)> {
        let (db, mut lines) = prepare::PayloadLines::new(payload)?;
        let routing = self.routing.current();
        let prepared = prepare::prepare_lines(
            self.checks(&routing, Horizon::NONE, Some(region)),
            self.shards_per_region,
            db,
            &mut lines,
            payload.len(),
            Precision::Nanosecond,
            now_ns,
        );
        Some((db.to_string(), prepared))
    }

    fn checks<'a>(
        &'a self,
        routing: &'a Routing,
        horizon: Horizon,
        fixed_region: Option<RegionId>,
    ) -> prepare::Checks<'a> {
        prepare::Checks {
            routing,
            horizon,
            fixed_region,
            registry: &self.registry,
            series: &self.series,
            max_series: self.max_series_per_database,
            catalog_bytes: self.series_catalog_bytes,
            microseconds: self.time_unit == crate::config::FileTimeUnit::Microsecond,
            retention: &self.retention,
        }
    }

    /// Whether in-memory blocks are over the memory limit (writes must wait).
    pub fn over_memory_limit(&self) -> bool {
        self.metrics
            .memory_bytes
            .load(Relaxed)
            .saturating_add(self.series.counted_bytes(self.series_catalog_bytes))
            >= self.memory_limit
    }

    /// Whether rows that will take `cost` bytes in blocks may be committed now: refused for
    /// good if they could never fit in `memory.limit`, for now if blocks and request bodies
    /// leave no room for them.
    /// `own`: bytes the caller counts already for this body (its rows while they are
    /// built), left out of what others hold.
    pub fn admit(&self, cost: u64, own: u64) -> Result<(), WriteError> {
        if cost.saturating_add(own) > self.memory_limit {
            return Err(WriteError::TooLarge(format!(
                "the rows of this body would take about {cost} bytes in memory (each row costs every field column of its measurement), more than memory.limit ({} bytes); split it into smaller batches",
                self.memory_limit
            )));
        }
        let held = || {
            self.metrics
                .memory_bytes
                .load(Relaxed)
                .saturating_add(self.series.counted_bytes(self.series_catalog_bytes))
                .saturating_add(self.metrics.request_bytes.load(Relaxed).saturating_sub(own))
                .saturating_add(crate::bufpool::idle_total())
        };
        if held().saturating_add(cost) > self.memory_limit {
            // Idle reusable buffers go first.
            crate::bufpool::release_all();
        }
        let held = held();
        if held.saturating_add(cost) > self.memory_limit {
            // Make room: the shards flush as if memory were that much higher.
            self.metrics.waiting_bytes.fetch_max(cost, Relaxed);
            return Err(WriteError::Overloaded(format!(
                "in-memory data ({held} bytes with request bodies and the series catalog) leaves no room for this body's {cost} bytes under memory.limit ({} bytes); retry when flushes have drained it",
                self.memory_limit
            )));
        }
        self.metrics.waiting_bytes.store(0, Relaxed);
        Ok(())
    }

    /// Counts `n` more bytes of request bodies against `memory.limit`, if blocks and the
    /// bodies already counted leave room for them; false (nothing counted) otherwise.
    pub fn reserve_request_bytes(&self, n: u64) -> bool {
        let m = &self.metrics;
        let reserve = || {
            m.request_bytes
                .fetch_update(Relaxed, Relaxed, |held| {
                    let total = m
                        .memory_bytes
                        .load(Relaxed)
                        .saturating_add(self.series.counted_bytes(self.series_catalog_bytes))
                        .saturating_add(crate::bufpool::idle_total())
                        .saturating_add(held);
                    (total.saturating_add(n) <= self.memory_limit).then_some(held + n)
                })
                .is_ok()
        };
        // Idle reusable buffers are let go before a body is refused.
        reserve()
            || (crate::bufpool::idle_total() > 0 && {
                crate::bufpool::release_all();
                reserve()
            })
    }

    /// Gives back bytes counted by [`Engine::reserve_request_bytes`].
    pub fn release_request_bytes(&self, n: u64) {
        let _ = self
            .metrics
            .request_bytes
            .fetch_update(Relaxed, Relaxed, |held| Some(held.saturating_sub(n)));
    }

    /// The memory limit (bytes).
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// Sends prepared batches to their shards and waits until each is durable.
    pub async fn commit(
        &self,
        batches: Vec<((RegionId, ShardId), ShardBatch)>,
        sync: bool,
    ) -> Result<(), WriteError> {
        if self.over_memory_limit() {
            return Err(WriteError::Overloaded(format!(
                "in-memory data is over the memory limit ({} bytes); retry when flushes have drained it",
                self.memory_limit
            )));
        }
        // A body is refused whole or accepted whole: every queue it needs is checked before
        // any part is sent, and a queue that fills up in between (another request raced for
        // its last slot) is waited for rather than refused, since earlier parts are queued.
        let mut targets = Vec::with_capacity(batches.len());
        for ((region, shard), _) in &batches {
            let r = &self.regions[region.0];
            let Some(s) = r.shards.get(shard.0) else {
                return Err(WriteError::NotHosted(r.name.to_string()));
            };
            if s.writes.is_full() {
                return Err(WriteError::Overloaded(format!(
                    "write queue of region {} shard {} is full",
                    r.name, shard.0
                )));
            }
            targets.push(s.writes.clone());
        }
        let mut waits = Vec::with_capacity(batches.len());
        for (((_, _), batch), queue) in batches.into_iter().zip(targets) {
            let (tx, rx) = oneshot::channel();
            let msg = WriteMsg {
                batch,
                sync,
                reply: tx,
            };
            match queue.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(msg)) => {
                    let sent = tokio::task::spawn_blocking(move || queue.send(msg)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return Err(CommitError::ShuttingDown.into());
                    }
                }
                Err(TrySendError::Disconnected(_)) => return Err(CommitError::ShuttingDown.into()),
            }
            waits.push(rx);
        }
        for rx in waits {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(CommitError::ShuttingDown.into()),
            }
        }
        Ok(())
    }

    /// A consistent view of one region's data of `db` (optionally one measurement).
    pub async fn snapshot(
        &self,
        region: RegionId,
        db: &str,
        measurement: Option<&str>,
    ) -> Result<RegionSnapshot, String> {
        let r = &self.regions[region.0];
        let Some(manifest) = &r.manifest else {
            return Err(format!("region {:?} is not hosted by this node", r.name));
        };
        let db: Arc<str> = Arc::from(db);
        let measurement: Option<Arc<str>> = measurement.map(Arc::from);
        let mut waits = Vec::new();
        for s in &r.shards {
            // A shard holding no block has nothing to add: no round trip to its thread. The
            // count drops to zero only after the manifest holds the flushed files (Release,
            // in the shard; Acquire here), and the manifest is read below, after this.
            if s.stats.in_memory.load(std::sync::atomic::Ordering::Acquire) == 0 {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            s.ctrl
                .send(Ctrl::Snapshot {
                    db: db.clone(),
                    measurement: measurement.clone(),
                    reply: tx,
                })
                .map_err(|_| "region is shutting down".to_string())?;
            waits.push(rx);
        }
        let mut mem = Vec::new();
        for rx in waits {
            mem.extend(
                rx.await
                    .map_err(|_| "region is shutting down".to_string())?,
            );
        }
        // Files after memory: a block that finished flushing in between is in the file list
        // and was dropped from memory, or is in memory and its file is excluded here. If a
        // compactor beside the server already replaced that file, its rows are in the
        // replacement (live) and the block is left out instead.
        let (all_files, positions) = match measurement.as_deref() {
            Some(m) => {
                let (files, positions) = manifest.files_of(&db, m);
                (files, Some(positions))
            }
            None => (manifest.files(), None),
        };
        let mut excluded: HashSet<String> = HashSet::new();
        if mem.iter().any(|m| m.flushing_file_seq.is_some()) {
            let live: HashSet<&str> = all_files.iter().map(|f| f.path.as_str()).collect();
            let retired: HashSet<String> = manifest.retired().into_iter().collect();
            let pd = self.partition_duration_ns;
            mem.retain(|m| {
                let Some(seq) = m.flushing_file_seq else {
                    return true;
                };
                let path =
                    paths::data_file_rel(&m.key.db, &m.key.measurement, m.key.partition, pd, seq)
                        .to_string_lossy()
                        .replace('\\', "/");
                if live.contains(path.as_str()) {
                    excluded.insert(path);
                    return true;
                }
                // Packed with other measurements: its entry has the flush's seq (a delete's
                // rewrite of a packed file is named so too: a delete waits for the rows in
                // memory to be flushed first, so it is not met here).
                let same = |f: &&FileMeta| {
                    f.db == *m.key.db
                        && f.measurement == *m.key.measurement
                        && f.partition_start == m.key.partition.0
                };
                let named = |f: &FileMeta| paths::parse_data_file(Path::new(&f.path));
                if let Some(f) = all_files.iter().filter(same).find(|f| {
                    f.seq == seq
                        && f.packed.is_some()
                        && matches!(named(f), Some(paths::DataFileName::Flushed(_)))
                }) {
                    excluded.insert(f.id().into_owned());
                    return true;
                }
                // Committed and compacted away already, or not committed yet. A packed
                // entry leaves no retired path of its own: its replacement tells (a
                // compaction's output carries the highest seq of its inputs, a delete's
                // rewrite of an unpacked file the same seq). A compaction of later flushes
                // that committed first also has a higher seq; compaction takes sealed
                // partitions only, so a flush racing it is rare, and the rows are back once
                // it commits.
                let replaced = all_files.iter().filter(same).any(|f| match named(f) {
                    Some(paths::DataFileName::Compacted(..)) => f.seq >= seq,
                    Some(paths::DataFileName::Rewritten(..)) => f.seq == seq,
                    _ => false,
                });
                !retired.contains(&path) && !replaced
            });
        }
        Ok(RegionSnapshot {
            retention: self.retention.clone(),
            now_ns: crate::catalog::manifest::now_ns(),
            mem,
            all_files,
            positions,
            db,
            measurement,
            excluded,
            store: manifest.store().clone(),
        })
    }

    /// Ingest shards per hosted region.
    pub fn shards_per_region(&self) -> usize {
        self.shards_per_region
    }

    /// Asks the shards of a hosted region to flush every block they hold now, without
    /// waiting (shared storage: a delete on another node waits for it).
    pub fn request_flush(&self, region: RegionId) {
        if let Some(r) = self.regions.get(region.0) {
            for s in &r.shards {
                let (tx, _rx) = std::sync::mpsc::channel();
                let _ = s.ctrl.send(Ctrl::FlushBarrier { reply: tx });
            }
        }
    }

    /// Flushes every in-memory block of every hosted region and waits (blocking).
    pub fn flush_all_blocking(&self) {
        let mut waits = Vec::new();
        for r in &self.regions {
            for s in &r.shards {
                let (tx, rx) = std::sync::mpsc::channel();
                if s.ctrl.send(Ctrl::FlushAll { reply: tx }).is_ok() {
                    waits.push(rx);
                }
            }
        }
        for w in waits {
            let _ = w.recv();
        }
    }

    /// Stops the shards after they flushed everything, then joins every thread (blocking).
    pub fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut waits = Vec::new();
        for r in &self.regions {
            for s in &r.shards {
                let (tx, rx) = std::sync::mpsc::channel();
                if s.ctrl.send(Ctrl::Shutdown { reply: tx }).is_ok() {
                    waits.push(rx);
                }
            }
        }
        for w in waits {
            let _ = w.recv();
        }
        // Shard threads return after replying; the flush pool ends when they are gone.
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        // No query runs any more: files retired by committed edits go now (a crash leaves
        // them to the next start). A clean stop leaves each manifest with a checkpoint of
        // its last edit.
        for r in &self.regions {
            // Shared storage: other nodes' queries may still read them; the background
            // sweep of a running node deletes them after its grace.
            if let Some(m) = r.manifest.as_ref().filter(|_| r.log.is_none()) {
                let retired = m.retired_due(Duration::ZERO);
                match m.store().delete(&retired) {
                    Ok(()) => m.forget_retired(&retired),
                    Err(e) => {
                        warn!(region = %r.name, "replaced files stay until the next start: {e}")
                    }
                }
            }
        }
        for r in &self.regions {
            if let Some(m) = &r.manifest {
                m.store().clear_cache();
            }
        }
        for r in &self.regions {
            if let Some(m) = &r.manifest
                && let Err(e) = m.checkpoint_now()
            {
                warn!(region = %r.name, "final manifest checkpoint failed (the log keeps every edit): {e}");
            }
        }
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19), so that background work
/// (the index warm-up) yields the cores to queries and writes. Best effort: on failure, or
/// off Linux, the thread keeps its priority.
fn lowest_cpu_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its three integer arguments; on Linux, `who` = 0
        // with PRIO_PROCESS names the calling thread. No memory is passed or shared.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        if rc != 0 {
            debug!("could not lower the index warm-up thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new data dir takes the default, and once recorded keeps it whatever the default
    /// has become; an explicit count is used; a data dir written before counts were
    /// recorded keeps the count of its WAL shard directories; a bucket region without a
    /// record runs one shard per core; an unreadable record is an error.
    #[test]
    fn a_data_dir_keeps_its_shard_count_when_the_default_moves() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        fs::create_dir_all(&dir).unwrap();
        let local = [("eu", false), ("us", false)];
        let got = shards_for_data_dir(&dir, &local, None, 1, 8).unwrap();
        assert_eq!(got, (1, ShardsFrom::Default));
        assert!(!dir.join(SHARDS_FILE).exists(), "recorded only once opened");
        record_shards(&dir, 1).unwrap();
        assert_eq!(
            shards_for_data_dir(&dir, &local, None, 4, 8).unwrap(),
            (1, ShardsFrom::Remembered)
        );
        assert_eq!(
            shards_for_data_dir(&dir, &local, Some(3), 4, 8).unwrap(),
            (3, ShardsFrom::Config)
        );
        record_shards(&dir, 3).unwrap();
        assert_eq!(
            shards_for_data_dir(&dir, &local, None, 1, 8).unwrap(),
            (3, ShardsFrom::Remembered)
        );
        fs::write(dir.join(SHARDS_FILE), b"{\"shards_per_region\": 0}").unwrap();
        let e = shards_for_data_dir(&dir, &local, None, 1, 8).unwrap_err();
        assert!(e.to_string().contains(SHARDS_FILE), "{e}");
        // An explicit count needs no record.
        assert_eq!(
            shards_for_data_dir(&dir, &local, Some(2), 1, 8).unwrap(),
            (2, ShardsFrom::Config)
        );

        let old = root.path().join("old");
        for d in ["0", "1"] {
            fs::create_dir_all(paths::region_dir(&old, "us").join(paths::WAL_DIR).join(d)).unwrap();
        }
        assert_eq!(
            shards_for_data_dir(&old, &local, None, 1, 8).unwrap(),
            (2, ShardsFrom::Wal)
        );
        let bucket = root.path().join("bucket");
        assert_eq!(
            shards_for_data_dir(&bucket, &[("eu", true), ("us", false)], None, 1, 8).unwrap(),
            (8, ShardsFrom::Cores)
        );
    }
}
