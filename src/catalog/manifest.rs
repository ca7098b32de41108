//! Per-region manifest of live Parquet files: versioned edits plus checkpoints, on the
//! region's [`Store`] (a local directory or a bucket prefix).
//!
//! The manifest is the truth: a data file it does not list is not part of the database
//! (see `leftovers` for what start-up does with such a file: it deletes only what is
//! provably a leftover). A missing manifest beside data files, or a damaged one, stops
//! start-up with advice and deletes nothing; `meridian-compact --rebuild-manifest` rebuilds
//! it from the files' footers ([`crate::catalog::rebuild`]).
//!
//! Layout under the root (`storage::paths`): `_manifest/<v:020>.edit.json`, one committed
//! edit each (files added, paths removed, leases taken or given back), and
//! `_manifest/<v:020>.checkpoint.json`, the whole state as of edit `v`. The state is the
//! newest checkpoint plus the edits after it, in order.
//!
//! Commit: edit `v + 1` is created with put-if-absent (`Store::put_new`). If another
//! writer (a server's flush, a compactor beside it) created that version first, its edit is
//! read and applied, this edit is checked again against the new state (every file it
//! removes must still be live; a lease it takes must not be held by another owner) and
//! tried as the next version; an edit that no longer holds is refused with
//! [`ManifestError::Conflict`] and nothing of it is committed. So no writer ever loses
//! another's edit, and a commit costs one small object, not a rewrite of the list. A
//! checkpoint is written when the edits since the last one outweigh it; edits and
//! checkpoints older than the previous checkpoint are deleted then. [`Manifest::refresh`]
//! applies edits other writers made (a server calls it every second).
//!
//! Each file records which WAL records it holds (`wal`: shard and sequence range), so WAL
//! replay after a crash skips what is already in a file: replay is idempotent.
//!
//! Files that an edit removed are `retired` with the edit's time: they are deleted once no
//! query can still be reading them (see [`Manifest::retired_due`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::catalog::legacy;
use crate::storage::parquet::StorageError;
use crate::storage::paths::{
    MANIFEST_DIR, ORPHANED_DIR, PARQUET_EXT, WAL_DIR, manifest_checkpoint_rel, manifest_edit_rel,
    parse_manifest_rel,
};
use crate::storage::store::Store;

pub use crate::storage::file_meta::{FileMeta, WalRange};

/// A compactor's claim on a unit of work (a partition), held until `until` (Unix ns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub key: String,
    pub owner: String,
    /// 0 gives the lease back.
    pub until: i64,
    /// `<host>:<pid>` of the holder: a holder on this host whose process is gone (killed)
    /// holds nothing, so its work can be taken over at once rather than after `until`.
    #[serde(default)]
    pub holder: Option<String>,
}

/// This process as a lease holder.
pub fn this_holder() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    }
}

/// Whether a lease still holds at `now`.
fn lease_holds(l: &Lease, now: i64) -> bool {
    if l.until <= now {
        return false;
    }
    let Some((host, pid)) = l.holder.as_deref().and_then(|h| h.rsplit_once(':')) else {
        return true;
    };
    if host != host_name() {
        return true;
    }
    let Ok(pid) = pid.parse::<libc::pid_t>() else {
        return true;
    };
    process_alive(pid)
}

/// Whether a process with this pid runs on this host.
pub fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) }) == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A file an edit removed, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub path: String,
    pub at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    format: u32,
    version: u64,
    files: Vec<FileMeta>,
    next_seq: u64,
    #[serde(default)]
    retired: Vec<Retired>,
    #[serde(default)]
    leases: Vec<Lease>,
    #[serde(default, skip_serializing_if = "Shared::is_empty")]
    shared: Shared,
}

/// A region whose nodes share its storage (cluster mode, `shared_storage`): the flush
/// lease's fence, how far the region's log is in files, and the file seqs each node
/// reserved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    /// The highest lease epoch an edit was committed under: an edit under a lower one is
    /// refused (its node lost the lease).
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub log: Option<LogMark>,
    /// Per node, the last ranges of file seqs it reserved (newest last).
    #[serde(default)]
    pub reserved: Vec<Reservation>,
}

impl Shared {
    fn is_empty(&self) -> bool {
        *self == Shared::default()
    }
}

/// Every row of the region's log up to `through` is in the manifest's files; `state` is
/// what the log's reader needs to go on from there (opaque here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMark {
    pub epoch: u64,
    pub through: u64,
    #[serde(default)]
    pub state: serde_json::Value,
}

/// File seqs `[first, end)` are for `node`'s files alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub node: String,
    pub first: u64,
    pub end: u64,
    /// The node's ingest shards per region: files name shards, and queries take files of
    /// other shards for other series, so every node of a region must have as many.
    #[serde(default)]
    pub shards: usize,
}

/// Ranges of file seqs kept per node in the manifest (a node's orphans are found in them).
const RESERVATIONS_KEPT: usize = 32;

/// One committed edit, an object of its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EditRecord {
    version: u64,
    #[serde(default)]
    add: Vec<FileMeta>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    leases: Vec<Lease>,
    next_seq: u64,
    /// Unix ns when it was committed.
    at: i64,
    /// Shared storage: the lease epoch the edit was made under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log: Option<LogMark>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reserve: Option<Reservation>,
}

/// The newest checkpoint format. 3: entries may be packed (`FileMeta::packed`), which a
/// reader of format 2 would take for whole files; the first edit that adds one is followed
/// by a checkpoint at once, so that such a reader refuses the manifest rather than misread.
const FORMAT: u32 = 3;
/// The oldest checkpoint format read.
const OLDEST_FORMAT: u32 = 2;

/// The format a checkpoint of `files` is written in: the oldest that can hold them, so that
/// a data dir without packed files stays readable by the version before them.
fn format_for(files: &[FileMeta]) -> u32 {
    if files.iter().any(|f| f.packed.is_some()) {
        FORMAT
    } else {
        OLDEST_FORMAT
    }
}
/// A checkpoint is written once the edits since the last one are more than this many, or
/// larger (in bytes) than it and than 1 MiB.
const CHECKPOINT_EVERY_EDITS: u64 = 1000;
const CHECKPOINT_MIN_EDIT_BYTES: u64 = 1 << 20;
/// How often [`Manifest::refresh`] lists the directory for a newer checkpoint (a writer far
/// behind whose next edit was already cleaned up).
const LIST_EVERY: Duration = Duration::from_secs(10);
/// Commit attempts racing other writers before giving up.
const MAX_RACES: usize = 10_000;

/// Files added and removed (and leases taken) in one atomic step.
#[derive(Debug, Default, Clone)]
pub struct ManifestEdit {
    pub add: Vec<FileMeta>,
    /// Paths of live files.
    pub remove: Vec<String>,
    pub leases: Vec<Lease>,
    /// Shared storage: made under this lease epoch (refused if a higher one committed).
    pub fence: Option<u64>,
    /// Shared storage: how far the region's log is in files now (under `fence`).
    pub log: Option<LogMark>,
}

/// What an operator can do about a missing or damaged manifest.
const REBUILD_ADVICE: &str = "nothing was deleted; restore it from a backup, or rebuild it from the data files' own footers with `meridian-compact --config <regions.toml> --rebuild-manifest` (with the server stopped)";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("manifest {path} is corrupt: {reason}; {REBUILD_ADVICE}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "manifest {path} is missing, but {files} Parquet file(s) are in its region (first: {first}); refusing to start rather than treat them as leftovers; {REBUILD_ADVICE}"
    )]
    Missing {
        path: PathBuf,
        files: usize,
        first: String,
    },
    #[error("manifest edit refused: {0}")]
    Conflict(String),
}

pub type Result<T> = std::result::Result<T, ManifestError>;

pub struct Manifest {
    store: Store,
    state: Mutex<State>,
    next_seq: AtomicU64,
    /// The next seq recorded when the manifest was opened.
    committed_next_seq: AtomicU64,
    /// Shared storage: this node's reserved seqs `(next, end)` (see [`Manifest::reserve_seqs`]).
    own_seqs: Mutex<Option<(u64, u64)>>,
}

struct State {
    version: u64,
    files: Arc<Vec<FileMeta>>,
    retired: Vec<Retired>,
    leases: Vec<Lease>,
    shared: Shared,
    next_seq: u64,
    checkpoint_version: u64,
    /// When `checkpoint_version` was written (or found, for one read at open).
    checkpoint_written: Instant,
    checkpoint_bytes: u64,
    edits_since: u64,
    edit_bytes_since: u64,
    listed: Instant,
    /// The format of the newest checkpoint.
    checkpoint_format: u32,
    /// Whether an entry was ever packed (the checkpoint must then be format 3).
    has_packed: bool,
    /// Positions in `files` of each (db, measurement)'s files, built when first asked for
    /// after a change ([`Manifest::files_of`]).
    by_measurement: Option<Arc<ByMeasurement>>,
}

/// Positions of files in the manifest's list, per (db, measurement).
type ByMeasurement = std::collections::HashMap<(String, String), Arc<[u32]>>;

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Relative, `/`-separated, no `.`/`..`/empty parts, a Parquet file outside the manifest
/// and WAL directories: compaction and retention delete what the manifest names.
fn is_data_path(path: &str) -> bool {
    path.split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'))
        && path.ends_with(&format!(".{PARQUET_EXT}"))
        && !path.starts_with(&format!("{MANIFEST_DIR}/"))
        && !path.starts_with(&format!("{WAL_DIR}/"))
}

/// Read from storage: every path must stay inside the region (compaction and retention
/// delete what the manifest names), seqs must leave room for the next, times be in order.
fn entry_is_valid(f: &FileMeta) -> bool {
    is_data_path(&f.path) && f.seq != u64::MAX && f.min_time <= f.max_time
}

/// The data files of a store (every Parquet file outside the manifest, WAL and quarantine).
pub fn data_files(store: &Store) -> std::result::Result<Vec<(String, u64)>, StorageError> {
    Ok(store
        .list("")?
        .into_iter()
        .filter(|(rel, _)| is_data_path(rel) && !rel.starts_with(&format!("{ORPHANED_DIR}/")))
        .collect())
}

impl State {
    fn from_checkpoint(c: Checkpoint) -> State {
        let mut files = c.files;
        files.sort_by_key(|f| f.seq);
        State {
            checkpoint_format: c.format,
            has_packed: files.iter().any(|f| f.packed.is_some()),
            version: c.version,
            files: Arc::new(files),
            retired: c.retired,
            leases: c.leases,
            shared: c.shared,
            next_seq: c.next_seq,
            checkpoint_version: c.version,
            checkpoint_written: Instant::now(),
            checkpoint_bytes: 0,
            edits_since: 0,
            edit_bytes_since: 0,
            listed: Instant::now(),
            by_measurement: None,
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            format: format_for(&self.files),
            version: self.version,
            files: (*self.files).clone(),
            next_seq: self.next_seq,
            retired: self.retired.clone(),
            leases: self.leases.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Applies a committed edit.
    fn apply(&mut self, r: EditRecord, bytes: u64) {
        if !r.add.is_empty() || !r.remove.is_empty() {
            self.by_measurement = None;
        }
        self.has_packed |= r.add.iter().any(|f| f.packed.is_some());
        let files = Arc::make_mut(&mut self.files);
        if !r.remove.is_empty() {
            let remove: HashSet<&str> = r.remove.iter().map(String::as_str).collect();
            let retired = &mut self.retired;
            let mut packed_gone: Vec<String> = Vec::new();
            files.retain(|f| {
                let gone = remove.contains(f.id().as_ref());
                if gone {
                    match f.packed {
                        None => retired.push(Retired {
                            path: f.path.clone(),
                            at: r.at,
                        }),
                        Some(_) => packed_gone.push(f.path.clone()),
                    }
                }
                !gone
            });
            // A packed file is retired with the last entry that names it.
            if !packed_gone.is_empty() {
                packed_gone.sort();
                packed_gone.dedup();
                let named: HashSet<&str> = files
                    .iter()
                    .filter(|f| f.packed.is_some())
                    .map(|f| f.path.as_str())
                    .collect();
                for path in packed_gone {
                    if !named.contains(path.as_str()) {
                        retired.push(Retired { path, at: r.at });
                    }
                }
            }
        }
        if !self.retired.is_empty() && !r.add.is_empty() {
            let added: HashSet<&str> = r.add.iter().map(|f| f.path.as_str()).collect();
            self.retired.retain(|x| !added.contains(x.path.as_str()));
        }
        let mut replaced_paths: Vec<String> = Vec::new();
        for f in r.add {
            // A retried write under the same name (so the same seq) replaces its earlier
            // entry: looked for among the files of that seq only (files are in seq order).
            // A retried flush of a measurement packed with others writes another packed
            // file (a name of its own), whose entry replaces the earlier try's.
            let lo = files.partition_point(|g| g.seq < f.seq);
            let hi = files.partition_point(|g| g.seq <= f.seq);
            let flushed = |g: &FileMeta| {
                matches!(
                    crate::storage::paths::parse_data_file(Path::new(&g.path)),
                    Some(crate::storage::paths::DataFileName::Flushed(_))
                )
            };
            let retry_of = |g: &FileMeta| {
                g.id() == f.id()
                    || ((g.packed.is_some() || f.packed.is_some())
                        && g.db == f.db
                        && g.measurement == f.measurement
                        && flushed(g)
                        && flushed(&f))
            };
            if let Some(i) = (lo..hi).find(|&i| retry_of(&files[i])) {
                let old = files.remove(i);
                if old.path != f.path {
                    replaced_paths.push(old.path);
                }
            }
            if files.last().is_none_or(|l| l.seq <= f.seq) {
                files.push(f);
            } else {
                let at = files.partition_point(|g| g.seq <= f.seq);
                files.insert(at, f);
            }
        }
        for path in replaced_paths {
            if !files.iter().any(|g| g.path == path) && !self.retired.iter().any(|x| x.path == path)
            {
                self.retired.push(Retired { path, at: r.at });
            }
        }
        for l in r.leases {
            self.leases.retain(|x| x.key != l.key);
            if l.until > 0 {
                self.leases.push(l);
            }
        }
        if let Some(e) = r.fence {
            self.shared.epoch = self.shared.epoch.max(e);
        }
        if let Some(mark) = r.log
            && self
                .shared
                .log
                .as_ref()
                .is_none_or(|m| m.through <= mark.through)
        {
            self.shared.epoch = self.shared.epoch.max(mark.epoch);
            self.shared.log = Some(mark);
        }
        if let Some(res) = r.reserve {
            self.next_seq = self.next_seq.max(res.end);
            let reserved = &mut self.shared.reserved;
            reserved.push(res);
            let node = reserved[reserved.len() - 1].node.clone();
            let mine = reserved.iter().filter(|x| x.node == node).count();
            if mine > RESERVATIONS_KEPT
                && let Some(i) = reserved.iter().position(|x| x.node == node)
            {
                reserved.remove(i);
            }
        }
        self.next_seq = self.next_seq.max(r.next_seq);
        self.version = r.version;
        self.edits_since += 1;
        self.edit_bytes_since += bytes;
    }

    /// The lowest seq no file of the state used (and no writer recorded as allocated).
    fn first_free_seq(&self) -> u64 {
        self.files
            .iter()
            .map(allocated_after)
            .max()
            .unwrap_or(1)
            .max(self.next_seq)
    }

    /// Why `edit` cannot be committed on this state, if it cannot.
    fn refuses(&self, edit: &ManifestEdit, now: i64) -> Option<String> {
        if !edit.remove.is_empty() {
            let live: HashSet<std::borrow::Cow<'_, str>> =
                self.files.iter().map(FileMeta::id).collect();
            if let Some(gone) = edit.remove.iter().find(|p| !live.contains(p.as_str())) {
                return Some(format!(
                    "file {gone} is no longer live (another writer replaced or removed it)"
                ));
            }
        }
        if let Some(e) = edit.fence.or(edit.log.as_ref().map(|m| m.epoch))
            && e < self.shared.epoch
        {
            return Some(format!(
                "made under flush lease epoch {e}, but epoch {} took over since (another node holds the region's lease)",
                self.shared.epoch
            ));
        }
        for l in edit.leases.iter().filter(|l| l.until > 0) {
            if let Some(h) = self
                .leases
                .iter()
                .find(|h| h.key == l.key && h.owner != l.owner && lease_holds(h, now))
            {
                return Some(format!("{} is leased by {} for now", l.key, h.owner));
            }
        }
        None
    }
}

impl Manifest {
    /// Opens the manifest of a region's store; creates an empty one only where the store
    /// holds no data file (a new region). Migrates a manifest of the previous format.
    /// Never deletes a data file.
    pub fn open(store: &Store) -> Result<Manifest> {
        let listing = store.list(MANIFEST_DIR)?;
        let mut checkpoints = Vec::new();
        let mut edits = HashSet::new();
        for (rel, _) in &listing {
            match parse_manifest_rel(rel) {
                Some((v, true)) => checkpoints.push(v),
                Some((v, false)) => {
                    edits.insert(v);
                }
                None => {}
            }
        }
        if let Some(&c) = checkpoints.iter().max() {
            let m = Self::load(store, c)?;
            {
                let mut st = m.state.lock();
                m.catch_up(&mut st)?;
                // An edit past a gap was made by a writer that had read the missing one: the
                // manifest lost it.
                if let Some(v) = edits.iter().copied().filter(|v| *v > st.version + 1).min() {
                    return Err(ManifestError::Corrupt {
                        path: store.key_of(&manifest_edit_rel(st.version + 1)),
                        reason: format!("edit {} is missing but edit {v} exists", st.version + 1),
                    });
                }
            }
            m.sync_seq();
            return Ok(m);
        }
        if !edits.is_empty() {
            return Err(ManifestError::Corrupt {
                path: store.key_of(MANIFEST_DIR),
                reason: format!("{} edit(s) but no checkpoint", edits.len()),
            });
        }
        if let Some(root) = store.local_root() {
            match legacy::read(root) {
                Ok(Some(old)) => return Self::migrate(store, root, old),
                Ok(None) => {}
                Err(reason) => {
                    return Err(ManifestError::Corrupt {
                        path: crate::storage::paths::manifest_file(root),
                        reason,
                    });
                }
            }
        }
        let found = data_files(store)?;
        if let Some((first, _)) = found.first() {
            return Err(ManifestError::Missing {
                path: store.key_of(MANIFEST_DIR),
                files: found.len(),
                first: first.clone(),
            });
        }
        // A new region: its first checkpoint now, so that a manifest always has one.
        Self::create_at(store, Vec::new(), 1, Vec::new())
    }

    /// A new manifest listing `files` (rebuilding a lost one), whose next seq is above
    /// theirs and at least `next_seq` (above every data file stored, listed or not: a file
    /// left out must not look like a leftover of a later write, nor have its name reused).
    pub fn create(store: &Store, files: Vec<FileMeta>, next_seq: u64) -> Result<Manifest> {
        let next = files
            .iter()
            .map(allocated_after)
            .max()
            .unwrap_or(1)
            .max(next_seq);
        Self::create_at(store, files, next, Vec::new())
    }

    fn create_at(
        store: &Store,
        files: Vec<FileMeta>,
        next_seq: u64,
        retired: Vec<Retired>,
    ) -> Result<Manifest> {
        let c = Checkpoint {
            format: format_for(&files),
            version: 0,
            files,
            next_seq,
            retired,
            leases: Vec::new(),
            shared: Shared::default(),
        };
        if let Some(f) = c.files.iter().find(|f| !entry_is_valid(f)) {
            return Err(ManifestError::Corrupt {
                path: store.key_of(MANIFEST_DIR),
                reason: format!("invalid file entry {:?} (seq {})", f.path, f.seq),
            });
        }
        let rel = manifest_checkpoint_rel(0);
        let bytes = encode(&c, store, &rel)?;
        if !store.put_new(&rel, bytes)? {
            // Another process created it first (two starts racing): read theirs.
            return Self::open(store);
        }
        let m = Self::from_state(store, State::from_checkpoint(c))?;
        Ok(m)
    }

    /// Writes the legacy state as checkpoint 0, then removes the legacy files.
    fn migrate(store: &Store, root: &Path, old: legacy::LegacyData) -> Result<Manifest> {
        let now = now_ns();
        let next = old
            .files
            .iter()
            .map(allocated_after)
            .max()
            .unwrap_or(1)
            .max(old.next_seq);
        let retired = old
            .retired
            .into_iter()
            .map(|path| Retired { path, at: now })
            .collect();
        let m = Self::create_at(store, old.files, next, retired)?;
        for f in legacy::files(root) {
            let _ = std::fs::remove_file(&f);
        }
        tracing::info!(region_dir = %root.display(), "manifest migrated to versioned edits");
        Ok(m)
    }

    fn load(store: &Store, version: u64) -> Result<Manifest> {
        let rel = manifest_checkpoint_rel(version);
        let path = store.key_of(&rel);
        let bytes = store.read(&rel)?.ok_or_else(|| ManifestError::Corrupt {
            path: path.clone(),
            reason: "the checkpoint disappeared while it was read".into(),
        })?;
        let c: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| ManifestError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if !(OLDEST_FORMAT..=FORMAT).contains(&c.format) || c.version != version {
            return Err(ManifestError::Corrupt {
                path,
                reason: format!("format {} version {} in its body", c.format, c.version),
            });
        }
        let mut st = State::from_checkpoint(c);
        st.checkpoint_bytes = bytes.len() as u64;
        Self::from_state(store, st)
    }

    fn from_state(store: &Store, st: State) -> Result<Manifest> {
        // Read from storage: every path must stay inside the region (compaction and
        // retention delete what the manifest names), and seqs must leave room for the next.
        for f in st.files.iter() {
            if !entry_is_valid(f) {
                return Err(ManifestError::Corrupt {
                    path: store.key_of(MANIFEST_DIR),
                    reason: format!("invalid file entry {:?} (seq {})", f.path, f.seq),
                });
            }
        }
        let next = st.first_free_seq();
        Ok(Manifest {
            store: store.clone(),
            state: Mutex::new(st),
            next_seq: AtomicU64::new(next),
            committed_next_seq: AtomicU64::new(next),
            own_seqs: Mutex::new(None),
        })
    }

    /// After catching up at open: the allocator starts above every seq recorded.
    fn sync_seq(&self) {
        let next = self.state.lock().first_free_seq();
        self.next_seq.fetch_max(next, Ordering::Relaxed);
        self.committed_next_seq.store(next, Ordering::Relaxed);
    }

    /// Reads and applies the edits after the state's version, as long as there are any.
    fn catch_up(&self, st: &mut State) -> Result<bool> {
        let mut any = false;
        loop {
            let rel = manifest_edit_rel(st.version + 1);
            let Some(bytes) = self.store.read(&rel)? else {
                return Ok(any);
            };
            let r: EditRecord =
                serde_json::from_slice(&bytes).map_err(|e| ManifestError::Corrupt {
                    path: self.store.key_of(&rel),
                    reason: e.to_string(),
                })?;
            if r.version != st.version + 1
                || r.next_seq == u64::MAX
                || r.add.iter().any(|f| !entry_is_valid(f))
            {
                return Err(ManifestError::Corrupt {
                    path: self.store.key_of(&rel),
                    reason: "the edit names another version or a path outside the region".into(),
                });
            }
            self.next_seq.fetch_max(r.next_seq, Ordering::Relaxed);
            st.apply(r, bytes.len() as u64);
            any = true;
        }
    }

    /// Applies the edits other writers committed since the last look; whether any.
    pub fn refresh(&self) -> Result<bool> {
        let mut st = self.state.lock();
        let jumped = self.jump_if_far_behind(&mut st)?;
        Ok(self.catch_up(&mut st)? || jumped)
    }

    /// At most every [`LIST_EVERY`]: if a checkpoint newer than the state exists, loads it.
    /// A writer that slept through two checkpoints (a compactor's long unit) finds the edits
    /// after its version deleted; without this it would take the missing version for the
    /// next free one. Every writer runs it before a commit, and edits are deleted only once
    /// they are older than the previous checkpoint (a whole interval of edits behind it).
    fn jump_if_far_behind(&self, st: &mut State) -> Result<bool> {
        if st.listed.elapsed() < LIST_EVERY {
            return Ok(false);
        }
        st.listed = Instant::now();
        let newest = self
            .store
            .list(MANIFEST_DIR)?
            .iter()
            .filter_map(|(rel, _)| parse_manifest_rel(rel))
            .filter(|(_, c)| *c)
            .map(|(v, _)| v)
            .max();
        match newest.filter(|c| *c > st.version) {
            Some(c) => {
                let fresh = Self::load(&self.store, c)?;
                *st = fresh.state.into_inner();
                self.next_seq.fetch_max(st.next_seq, Ordering::Relaxed);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A snapshot of the live files, in seq order.
    pub fn files(&self) -> Arc<Vec<FileMeta>> {
        self.state.lock().files.clone()
    }

    /// The live files, and the positions among them of `measurement`'s files in `db` (for
    /// a measurement of many: a query of one of 20,000 measurements looked at every file).
    pub fn files_of(&self, db: &str, measurement: &str) -> (Arc<Vec<FileMeta>>, Arc<[u32]>) {
        let pick = |files: Arc<Vec<FileMeta>>, index: &ByMeasurement| {
            let positions = index
                .get(&(db.to_string(), measurement.to_string()))
                .cloned()
                .unwrap_or_else(|| Arc::from(Vec::new()));
            (files, positions)
        };
        let (files, version) = {
            let st = self.state.lock();
            if let Some(index) = &st.by_measurement {
                return pick(st.files.clone(), index);
            }
            (st.files.clone(), st.version)
        };
        // Built outside the lock (commits wait for it otherwise); kept if no edit came.
        let mut by: std::collections::HashMap<(String, String), Vec<u32>> = Default::default();
        for (i, f) in files.iter().enumerate() {
            by.entry((f.db.clone(), f.measurement.clone()))
                .or_default()
                .push(i as u32);
        }
        let index: Arc<ByMeasurement> =
            Arc::new(by.into_iter().map(|(k, v)| (k, Arc::from(v))).collect());
        let mut st = self.state.lock();
        if st.version == version && Arc::ptr_eq(&st.files, &files) {
            st.by_measurement = Some(index.clone());
        }
        drop(st);
        pick(files, &index)
    }

    /// The version of the last edit applied.
    pub fn version(&self) -> u64 {
        self.state.lock().version
    }

    /// Paths removed by committed edits that may still be stored.
    pub fn retired(&self) -> Vec<String> {
        self.state
            .lock()
            .retired
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }

    /// Retired paths whose removal is older than `grace` (no query reads them any more).
    pub fn retired_due(&self, grace: Duration) -> Vec<String> {
        let before = now_ns().saturating_sub(i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX));
        self.state
            .lock()
            .retired
            .iter()
            .filter(|r| r.at <= before)
            .map(|r| r.path.clone())
            .collect()
    }

    /// Forgets retired paths whose deletion is done.
    pub fn forget_retired(&self, done: &[String]) {
        let done: HashSet<&str> = done.iter().map(String::as_str).collect();
        self.state
            .lock()
            .retired
            .retain(|r| !done.contains(r.path.as_str()));
    }

    /// Leases held now.
    pub fn leases(&self) -> Vec<Lease> {
        let now = now_ns();
        self.state
            .lock()
            .leases
            .iter()
            .filter(|l| lease_holds(l, now))
            .cloned()
            .collect()
    }

    /// The next file seq recorded when the manifest was opened: a file with a seq at least
    /// this is in no committed edit.
    pub fn committed_next_seq(&self) -> u64 {
        self.committed_next_seq.load(Ordering::Relaxed)
    }

    /// Reserves a new file sequence number (from this node's range on shared storage).
    pub fn next_file_seq(&self) -> u64 {
        if let Some((next, end)) = self.own_seqs.lock().as_mut() {
            if *next < *end {
                *next += 1;
                return *next - 1;
            }
            tracing::error!(
                store = %self.store.describe(),
                "this node's reserved file seqs are used up; taking one from the shared counter"
            );
        }
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Shared storage: reserves `count` file seqs for `node` alone with a committed edit, and
    /// takes them for this manifest's files from now on (two nodes never name a file
    /// alike, and each node's seqs grow with time, as flushes need).
    pub fn reserve_seqs(&self, node: &str, count: u64, shards: usize) -> Result<(u64, u64)> {
        self.reserve(node, count, shards, None).map(|(_, r)| r)
    }

    /// Shared storage: takes the flush lease over in one edit: a fence at an epoch of at
    /// least `min_epoch` and above every epoch recorded, and a fresh range of file seqs
    /// above every seq used so far (reserved only if the fence is). Returns the epoch and
    /// the range.
    pub fn take_over(
        &self,
        node: &str,
        count: u64,
        shards: usize,
        min_epoch: u64,
    ) -> Result<(u64, (u64, u64))> {
        self.reserve(node, count, shards, Some(min_epoch))
    }

    fn reserve(
        &self,
        node: &str,
        count: u64,
        shards: usize,
        min_epoch: Option<u64>,
    ) -> Result<(u64, (u64, u64))> {
        let mut st = self.state.lock();
        self.catch_up(&mut st)?;
        for _ in 0..MAX_RACES {
            let first = st.next_seq.max(self.next_seq.load(Ordering::Relaxed));
            let res = Reservation {
                node: node.to_string(),
                first,
                end: first.saturating_add(count),
                shards,
            };
            // Computed on the state this edit follows: above every epoch recorded.
            let fence = min_epoch.map(|m| m.max(st.shared.epoch.saturating_add(1)));
            let record = EditRecord {
                version: st.version + 1,
                add: Vec::new(),
                remove: Vec::new(),
                leases: Vec::new(),
                next_seq: res.end,
                at: now_ns(),
                fence,
                log: None,
                reserve: Some(res.clone()),
            };
            let rel = manifest_edit_rel(record.version);
            let bytes = encode(&record, &self.store, &rel)?;
            let len = bytes.len() as u64;
            if self.store.put_new(&rel, bytes)? {
                st.apply(record, len);
                self.next_seq.fetch_max(res.end, Ordering::Relaxed);
                *self.own_seqs.lock() = Some((res.first, res.end));
                return Ok((fence.unwrap_or(0), (res.first, res.end)));
            }
            self.catch_up(&mut st)?;
        }
        Err(ManifestError::Conflict(
            "too many concurrent commits by other writers".into(),
        ))
    }

    /// Shared storage: the fence, log mark and reservations as committed so far.
    pub fn shared(&self) -> Shared {
        self.state.lock().shared.clone()
    }

    /// Commits an edit durably as the next version, after any edits other writers made
    /// (see the module doc); returns its version. The snapshot changes with it.
    pub fn commit(&self, edit: ManifestEdit) -> Result<u64> {
        let mut st = self.state.lock();
        self.jump_if_far_behind(&mut st)?;
        let at = now_ns();
        for _ in 0..MAX_RACES {
            if st.refuses(&edit, at).is_some() {
                // Perhaps only our view is old: look at what others committed first.
                self.catch_up(&mut st)?;
                if let Some(why) = st.refuses(&edit, at) {
                    return Err(ManifestError::Conflict(why));
                }
            }
            let record = EditRecord {
                version: st.version + 1,
                add: edit.add.clone(),
                remove: edit.remove.clone(),
                leases: edit.leases.clone(),
                next_seq: self.next_seq.load(Ordering::Relaxed).max(st.next_seq),
                at,
                fence: edit.fence,
                log: edit.log.clone(),
                reserve: None,
            };
            let rel = manifest_edit_rel(record.version);
            let bytes = encode(&record, &self.store, &rel)?;
            let len = bytes.len() as u64;
            if self.store.put_new(&rel, bytes)? {
                let version = record.version;
                st.apply(record, len);
                if st.edits_since >= CHECKPOINT_EVERY_EDITS
                    || st.edit_bytes_since > CHECKPOINT_MIN_EDIT_BYTES.max(st.checkpoint_bytes)
                    || (st.checkpoint_format < FORMAT && st.has_packed)
                {
                    // The edit is durable: a failed checkpoint is retried by a later commit,
                    // never reported as a failed commit.
                    if let Err(e) = self.checkpoint(&mut st) {
                        tracing::warn!(store = %self.store.describe(), "manifest checkpoint failed, will retry: {e}");
                    }
                }
                return Ok(version);
            }
            // Another writer committed this version first: apply theirs, then try again.
            if !self.catch_up(&mut st)? {
                return Err(ManifestError::Corrupt {
                    path: self.store.key_of(&rel),
                    reason: "the edit exists but cannot be read".into(),
                });
            }
        }
        Err(ManifestError::Conflict(
            "too many concurrent commits by other writers".into(),
        ))
    }

    /// Writes a checkpoint of the current state now (the compactor does at the end of a run).
    pub fn checkpoint_now(&self) -> Result<()> {
        let mut st = self.state.lock();
        self.catch_up(&mut st)?;
        self.checkpoint(&mut st)
    }

    /// Writes the state as the checkpoint of its version, then deletes what the previous
    /// checkpoint made redundant (edits up to it, older checkpoints), keeping one interval
    /// of edits for readers that are behind.
    fn checkpoint(&self, st: &mut State) -> Result<()> {
        if st.version == st.checkpoint_version && st.checkpoint_bytes > 0 {
            return Ok(());
        }
        // Retired files whose deletion is done need not be carried on (on an error, all are).
        let mut keep = Vec::with_capacity(st.retired.len());
        for r in &st.retired {
            if self.store.exists(&r.path)? {
                keep.push(r.clone());
            }
        }
        st.retired = keep;
        let c = st.checkpoint();
        let rel = manifest_checkpoint_rel(c.version);
        let bytes = encode(&c, &self.store, &rel)?;
        let len = bytes.len() as u64;
        // Another writer may have written the same version's checkpoint: the same state.
        self.store.put_new(&rel, bytes)?;
        // Edits up to the previous checkpoint go once it has stood for two listing intervals:
        // by then every writer that commits has listed and seen it (a writer lists before a
        // commit when it has not for `LIST_EVERY`), so none can take a deleted edit's
        // version for a free one. Checkpoints closer together than that leave the clean-up
        // to a later one.
        let cleanup_below =
            (st.checkpoint_written.elapsed() >= 2 * LIST_EVERY).then_some(st.checkpoint_version);
        st.checkpoint_version = c.version;
        st.checkpoint_format = c.format;
        st.checkpoint_written = Instant::now();
        st.checkpoint_bytes = len;
        st.edits_since = 0;
        st.edit_bytes_since = 0;
        let Some(cleanup_below) = cleanup_below else {
            return Ok(());
        };
        let old: Vec<String> = self
            .store
            .list(MANIFEST_DIR)?
            .into_iter()
            .filter_map(|(rel, _)| {
                let (v, is_checkpoint) = parse_manifest_rel(&rel)?;
                let redundant = if is_checkpoint {
                    v < cleanup_below
                } else {
                    v <= cleanup_below
                };
                redundant.then_some(rel)
            })
            .collect();
        self.store.delete(&old)?;
        Ok(())
    }
}

fn encode<T: Serialize>(value: &T, store: &Store, rel: &str) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ManifestError::Corrupt {
            path: store.key_of(rel),
            reason: e.to_string(),
        })
}

/// The lowest seq not yet used by a file: above its seq and, for a file a delete rewrote,
/// above the seq allocated for the rewrite (in its name).
fn allocated_after(f: &FileMeta) -> u64 {
    crate::storage::paths::parse_data_file_seq(Path::new(&f.path))
        .unwrap_or(0)
        .max(f.seq)
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ColumnKind;

    fn meta(seq: u64) -> FileMeta {
        FileMeta {
            seq,
            path: format!("db/m/{seq:020}.parquet"),
            db: "db".into(),
            measurement: "m".into(),
            partition_start: 0,
            min_time: 1,
            max_time: 2,
            rows: 3,
            bytes: 4,
            columns: vec![("host".into(), ColumnKind::Tag)],
            wal: vec![WalRange {
                shard: 0,
                min_seq: 1,
                max_seq: 9,
            }],
            packed: None,
        }
    }

    fn add(seqs: &[u64]) -> ManifestEdit {
        ManifestEdit {
            add: seqs.iter().map(|s| meta(*s)).collect(),
            ..ManifestEdit::default()
        }
    }

    fn seqs(m: &Manifest) -> Vec<u64> {
        m.files().iter().map(|f| f.seq).collect()
    }

    /// Entries of a packed file: removed one by one, the file is retired with the last;
    /// a retried flush's entry in another packed file replaces the earlier try's.
    #[test]
    fn packed_files_are_retired_with_their_last_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let m = Manifest::open(&store).unwrap();
        let packed = |seq: u64, file: u64, g: u32, measurement: &str| {
            let mut f = meta(seq);
            f.measurement = measurement.into();
            f.path = format!("db/~packed/{file:020}.parquet");
            f.packed = Some(crate::storage::file_meta::Packed {
                row_group: g,
                file_bytes: 100,
                row_groups: 2,
            });
            f
        };
        let (a, b) = (packed(5, 7, 0, "a"), packed(6, 7, 1, "b"));
        m.commit(ManifestEdit {
            add: vec![a.clone(), b.clone()],
            ..ManifestEdit::default()
        })
        .unwrap();
        m.commit(ManifestEdit {
            remove: vec![a.id().into_owned()],
            ..ManifestEdit::default()
        })
        .unwrap();
        assert_eq!(seqs(&m), vec![6]);
        assert!(m.retired().is_empty(), "b still reads the file");
        // Removing by the file's path names no entry.
        assert!(
            m.commit(ManifestEdit {
                remove: vec![b.path.clone()],
                ..ManifestEdit::default()
            })
            .is_err()
        );
        // A retry of b's flush in another packed file replaces its entry.
        let b2 = packed(6, 9, 0, "b");
        m.commit(ManifestEdit {
            add: vec![b2.clone()],
            ..ManifestEdit::default()
        })
        .unwrap();
        assert_eq!(
            m.files()
                .iter()
                .map(|f| f.id().into_owned())
                .collect::<Vec<_>>(),
            vec![b2.id().into_owned()]
        );
        assert_eq!(m.retired(), vec![b.path.clone()]);
        // Reopened from storage: the same.
        let again = Manifest::open(&store).unwrap();
        assert_eq!(again.files().len(), 1);
        assert_eq!(again.retired(), vec![b.path.clone()]);
        // A flush written alone whose retry was packed: the lone file is retired.
        let mut alone = meta(8);
        alone.measurement = "c".into();
        m.commit(ManifestEdit {
            add: vec![alone.clone()],
            ..ManifestEdit::default()
        })
        .unwrap();
        m.commit(ManifestEdit {
            add: vec![packed(8, 11, 0, "c")],
            ..ManifestEdit::default()
        })
        .unwrap();
        assert_eq!(seqs(&m), vec![6, 8]);
        assert_eq!(m.retired(), vec![b.path, alone.path]);
    }

    #[test]
    fn commits_are_durable_and_snapshots_do_not_move() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let m = Manifest::open(&store).unwrap();
        assert!(m.files().is_empty());
        let (a, b) = (m.next_file_seq(), m.next_file_seq());
        assert!(b > a);
        assert_eq!(m.commit(add(&[a, b])).unwrap(), 1);
        let before = m.files();
        m.commit(ManifestEdit {
            add: vec![meta(10)],
            remove: vec![meta(a).path],
            ..ManifestEdit::default()
        })
        .unwrap();
        assert_eq!(before.len(), 2, "a snapshot taken before is unchanged");
        assert_eq!(seqs(&m), vec![b, 10]);
        assert_eq!(m.retired(), vec![meta(a).path]);
        let again = Manifest::open(&store).unwrap();
        assert_eq!(seqs(&again), vec![b, 10]);
        assert_eq!(again.version(), 2);
        assert!(again.next_file_seq() > 10, "seqs are never reused");
    }

    /// Two writers on one store (a server and a compactor): neither loses the other's edit,
    /// each sees the other's after a refresh, and an edit whose input another writer
    /// removed is refused whole.
    #[test]
    fn two_writers_never_lose_each_others_edits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let server = Manifest::open(&store).unwrap();
        let compactor = Manifest::open(&store).unwrap();
        server.commit(add(&[1, 2])).unwrap();
        // The compactor has not looked yet: its commit lands after the server's.
        compactor.commit(add(&[3])).unwrap();
        assert_eq!(seqs(&compactor), vec![1, 2, 3]);
        assert!(server.refresh().unwrap());
        assert_eq!(seqs(&server), vec![1, 2, 3]);
        assert!(!server.refresh().unwrap(), "nothing new");
        // The server removes 1 (a delete); the compactor, not knowing, tries to replace 1 and
        // 2: refused, nothing of it applied.
        server
            .commit(ManifestEdit {
                remove: vec![meta(1).path],
                ..ManifestEdit::default()
            })
            .unwrap();
        let err = compactor
            .commit(ManifestEdit {
                add: vec![meta(2)],
                remove: vec![meta(1).path, meta(2).path],
                ..ManifestEdit::default()
            })
            .unwrap_err();
        assert!(matches!(err, ManifestError::Conflict(_)), "{err}");
        assert_eq!(seqs(&compactor), vec![2, 3]);
        // Many commits racing from threads: every one lands once.
        std::thread::scope(|s| {
            for (k, m) in [&server, &compactor].into_iter().enumerate() {
                s.spawn(move || {
                    for i in 0..50u64 {
                        m.commit(add(&[100 + k as u64 * 1000 + i])).unwrap();
                    }
                });
            }
        });
        let fresh = Manifest::open(&store).unwrap();
        assert_eq!(fresh.files().len(), 2 + 100);
        server.refresh().unwrap();
        compactor.refresh().unwrap();
        assert_eq!(seqs(&server), seqs(&fresh));
        assert_eq!(seqs(&compactor), seqs(&fresh));
    }

    /// Shared storage: an edit under an older lease epoch than one committed is refused
    /// (the node that lost the lease cannot record a flush), the log mark only moves
    /// forward, and seqs reserved by two nodes never meet.
    #[test]
    fn shared_storage_fences_old_epochs_and_reserves_disjoint_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let a = Manifest::open(&store).unwrap();
        let b = Manifest::open(&store).unwrap();
        let (a0, a1) = a.reserve_seqs("a", 1000, 2).unwrap();
        let (b0, b1) = b.reserve_seqs("b", 1000, 2).unwrap();
        assert!(a1 <= b0 || b1 <= a0, "{a0}..{a1} and {b0}..{b1} overlap");
        let (sa, sb) = (a.next_file_seq(), b.next_file_seq());
        assert!((a0..a1).contains(&sa) && (b0..b1).contains(&sb));
        let mark = |epoch, through| LogMark {
            epoch,
            through,
            state: serde_json::json!({ "n": through }),
        };
        a.commit(ManifestEdit {
            fence: Some(5),
            log: Some(mark(5, 10)),
            ..ManifestEdit::default()
        })
        .unwrap();
        // b takes over with a later epoch; a, still believing it leads, is refused.
        b.commit(ManifestEdit {
            fence: Some(7),
            log: Some(mark(7, 12)),
            ..ManifestEdit::default()
        })
        .unwrap();
        let late = a.commit(ManifestEdit {
            fence: Some(5),
            log: Some(mark(5, 20)),
            ..ManifestEdit::default()
        });
        assert!(matches!(late, Err(ManifestError::Conflict(ref why)) if why.contains("epoch 7")));
        // A mark behind the one recorded does not move it back.
        b.commit(ManifestEdit {
            fence: Some(7),
            log: Some(mark(7, 11)),
            ..ManifestEdit::default()
        })
        .unwrap();
        let fresh = Manifest::open(&store).unwrap();
        let shared = fresh.shared();
        assert_eq!(shared.epoch, 7);
        assert_eq!(shared.log, Some(mark(7, 12)));
        assert_eq!(shared.reserved.len(), 2);
        // Edits without a fence (a compactor's) are not concerned.
        a.commit(ManifestEdit::default()).unwrap();
        // Taking the lease over: an epoch above every one recorded, whatever the taker
        // asked for, so two takers never share one; the later take fences the earlier.
        let (ea, (a2, _)) = a.take_over("a", 1000, 2, 7).unwrap();
        let (eb, (b2, _)) = b.take_over("b", 1000, 2, 3).unwrap();
        assert_eq!((ea, eb), (8, 9));
        assert!(
            a2 >= b1 && b2 >= a2 + 1000,
            "each take's seqs above every earlier one"
        );
        assert_eq!(a.next_file_seq(), a2);
        assert!(matches!(
            a.commit(ManifestEdit {
                fence: Some(ea),
                ..ManifestEdit::default()
            }),
            Err(ManifestError::Conflict(_))
        ));
    }

    #[test]
    fn a_lease_held_by_another_owner_refuses_until_it_lapses_or_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let a = Manifest::open(&store).unwrap();
        let b = Manifest::open(&store).unwrap();
        let lease = |owner: &str, until: i64| ManifestEdit {
            leases: vec![Lease {
                key: "p1".into(),
                owner: owner.into(),
                until,
                holder: Some(this_holder()),
            }],
            ..ManifestEdit::default()
        };
        let later = now_ns() + 60_000_000_000;
        a.commit(lease("a", later)).unwrap();
        assert!(matches!(
            b.commit(lease("b", later)),
            Err(ManifestError::Conflict(_))
        ));
        a.commit(lease("a", 0)).unwrap();
        b.commit(lease("b", later)).unwrap();
        // A lapsed lease is free.
        b.commit(lease("b", now_ns() - 1)).unwrap();
        a.commit(lease("a", later)).unwrap();
        assert_eq!(a.leases().len(), 1);
        // A holder on this host whose process is gone holds nothing.
        let dead = ManifestEdit {
            leases: vec![Lease {
                key: "p2".into(),
                owner: "dead".into(),
                until: later,
                holder: Some(format!("{}:{}", host_name(), i32::MAX)),
            }],
            ..ManifestEdit::default()
        };
        a.commit(dead).unwrap();
        b.commit(ManifestEdit {
            leases: vec![Lease {
                key: "p2".into(),
                owner: "b".into(),
                until: later,
                holder: Some(this_holder()),
            }],
            ..ManifestEdit::default()
        })
        .unwrap();
    }

    #[test]
    fn checkpoints_bound_the_edits_kept_and_readers_far_behind_catch_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let behind = Manifest::open(&store).unwrap();
        let m = Manifest::open(&store).unwrap();
        for i in 0..(2 * CHECKPOINT_EVERY_EDITS + 5) {
            m.commit(add(&[i + 1])).unwrap();
        }
        // Checkpoints this close together leave every edit (a writer that listed a moment
        // ago may still need them); once the previous one has stood two listing intervals,
        // the edits up to it go.
        let all = store.list(MANIFEST_DIR).unwrap().len() as u64;
        assert!(all > 2 * CHECKPOINT_EVERY_EDITS, "{all}");
        m.state.lock().checkpoint_written = Instant::now() - 2 * LIST_EVERY;
        m.checkpoint_now().unwrap();
        let listed = store.list(MANIFEST_DIR).unwrap();
        let edits = listed
            .iter()
            .filter(|(r, _)| parse_manifest_rel(r).is_some_and(|(_, c)| !c))
            .count() as u64;
        assert!(edits <= CHECKPOINT_EVERY_EDITS + 10, "{edits} edits kept");
        let fresh = Manifest::open(&store).unwrap();
        assert_eq!(fresh.files().len() as u64, 2 * CHECKPOINT_EVERY_EDITS + 5);
        // A writer that slept through two checkpoints (its next edit is deleted) commits
        // after the newest edit, not into the gap.
        let also_behind = Manifest::open(&store).unwrap();
        also_behind.state.lock().version = 1;
        also_behind.state.lock().listed = Instant::now() - LIST_EVERY;
        let v = also_behind.commit(add(&[99_999])).unwrap();
        assert_eq!(v, fresh.version() + 1);
        let after = Manifest::open(&store).unwrap();
        assert_eq!(after.files().len() as u64, 2 * CHECKPOINT_EVERY_EDITS + 6);
        // A reader that slept through two checkpoints finds the newest one.
        behind.state.lock().listed = Instant::now() - LIST_EVERY;
        assert!(behind.refresh().unwrap());
        assert_eq!(seqs(&behind), seqs(&after));
    }

    #[test]
    fn a_manifest_of_the_previous_format_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let old = serde_json::json!({
            "version": 1, "files": [meta(1), meta(2)], "next_seq": 5,
            "retired": [], "log_generation": 3,
        });
        std::fs::write(r.join("manifest.json"), old.to_string()).unwrap();
        let line = serde_json::json!({"add": [meta(4)], "remove": [1], "next_seq": 7});
        std::fs::write(r.join("manifest.3.log"), format!("{line}\n{{\"add\":[")).unwrap();
        let m = Manifest::open(&Store::local(r)).unwrap();
        assert_eq!(seqs(&m), vec![2, 4]);
        assert!(m.next_file_seq() >= 7);
        assert!(!r.join("manifest.json").exists() && !r.join("manifest.3.log").exists());
        let again = Manifest::open(&Store::local(r)).unwrap();
        assert_eq!(seqs(&again), vec![2, 4]);
    }

    #[test]
    fn entries_pointing_outside_the_region_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let m = Manifest::open(&store).unwrap();
        let mut bad = meta(1);
        bad.path = "../../etc/x.parquet".into();
        let rec = EditRecord {
            version: 1,
            add: vec![bad],
            remove: vec![],
            leases: vec![],
            next_seq: 2,
            at: 0,
            fence: None,
            log: None,
            reserve: None,
        };
        store
            .put_new(
                &manifest_edit_rel(1),
                Bytes::from(serde_json::to_vec(&rec).unwrap()),
            )
            .unwrap();
        drop(m);
        let err = Manifest::open(&store).err().expect("refused");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    /// Three writers commit random adds and removes at once (checkpoints included); the
    /// edits that were acknowledged, applied in version order to a plain set, give exactly
    /// what a fresh open reads, and no version was given twice.
    #[test]
    fn racing_writers_match_a_model_of_their_acknowledged_edits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let writers: Vec<Manifest> = (0..3).map(|_| Manifest::open(&store).unwrap()).collect();
        let done: Vec<Vec<(u64, ManifestEdit)>> = std::thread::scope(|s| {
            let handles: Vec<_> = writers
                .iter()
                .enumerate()
                .map(|(w, m)| {
                    s.spawn(move || {
                        let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1);
                        let mut next = || {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            rng
                        };
                        let mut ok = Vec::new();
                        for i in 0..700u64 {
                            let edit = if next() % 3 == 0 {
                                let live = m.files();
                                if live.is_empty() {
                                    continue;
                                }
                                let f = &live[(next() % live.len() as u64) as usize];
                                ManifestEdit {
                                    remove: vec![f.path.clone()],
                                    ..ManifestEdit::default()
                                }
                            } else {
                                add(&[(w as u64 + 1) * 1_000_000 + i])
                            };
                            match m.commit(edit.clone()) {
                                Ok(v) => ok.push((v, edit)),
                                Err(ManifestError::Conflict(_)) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        ok
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<(u64, ManifestEdit)> = done.into_iter().flatten().collect();
        all.sort_by_key(|(v, _)| *v);
        let versions: Vec<u64> = all.iter().map(|(v, _)| *v).collect();
        let mut unique = versions.clone();
        unique.dedup();
        assert_eq!(unique.len(), versions.len(), "a version acknowledged twice");
        let mut model: std::collections::BTreeSet<String> = Default::default();
        for (_, e) in &all {
            for r in &e.remove {
                assert!(
                    model.remove(r),
                    "a removal of a file not live was acknowledged: {r}"
                );
            }
            for a in &e.add {
                model.insert(a.path.clone());
            }
        }
        let fresh = Manifest::open(&store).unwrap();
        let got: std::collections::BTreeSet<String> =
            fresh.files().iter().map(|f| f.path.clone()).collect();
        assert_eq!(got, model);
        assert!(all.len() > 1500, "{} edits acknowledged", all.len());
    }
}
