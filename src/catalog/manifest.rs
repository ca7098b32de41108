//! Per-region manifest of live Parquet files.
//!
//! The manifest is the truth: a Parquet file under the region directory that it does not
//! list is not part of the database (see `leftovers` for what start-up does with such a
//! file: it deletes only what is provably a leftover). A missing manifest beside data files,
//! or a damaged one, stops start-up with advice and deletes nothing; `meridian-compact
//! --rebuild-manifest` rebuilds it from the files' footers ([`crate::catalog::rebuild`]).
//!
//! On disk: a checkpoint, `manifest.json` (the whole state, rewritten atomically: temp file
//! → fsync → rename → fsync directory), and a log of the edits since it,
//! `manifest.<generation>.log`, one JSON edit per line. A commit appends its line and
//! fsyncs the log (O(edit), not O(files): a flush of thousands of small blocks no longer
//! rewrites the whole list for each), under one lock, so [`Manifest::files`] and the disk
//! move together. When the log has grown past the checkpoint's size (and 1 MiB), the state
//! is checkpointed under the next generation and the old log deleted; the checkpoint names
//! its generation, so a log of another generation is never replayed. At open, the log's
//! complete lines are applied in order; a last line cut short by a crash is a commit that
//! never returned and is dropped; a damaged line before the end stops start-up like a
//! damaged checkpoint.
//!
//! Each file records which WAL records it holds (`wal`: shard and sequence range), so WAL
//! replay after a crash skips what is already in a file: replay is idempotent.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::catalog::leftovers::data_files;
use crate::storage::parquet::{StorageError, io_err, sync_dir};
use crate::storage::paths::{manifest_file, temp_path};

pub use crate::storage::file_meta::{FileMeta, WalRange};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct ManifestData {
    version: u32,
    files: Vec<FileMeta>,
    /// The next file seq when this was written: no committed edit names a file whose seq is
    /// at least this, so such a file is the output of an interrupted flush or compaction.
    /// (0 in manifests written before it was recorded: then the highest seq + 1.)
    #[serde(default)]
    next_seq: u64,
    /// Paths that committed edits removed and whose deletion is not known to be done (the
    /// inputs of a compaction, a dropped partition): start-up deletes them if still there.
    #[serde(default)]
    retired: Vec<String>,
    /// The generation of the log of edits made after this checkpoint.
    #[serde(default)]
    log_generation: u64,
}

/// One committed edit, a line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LogRecord {
    #[serde(default)]
    add: Vec<FileMeta>,
    #[serde(default)]
    remove: Vec<u64>,
    next_seq: u64,
}

/// The log is checkpointed once it is larger than this and than the checkpoint.
const CHECKPOINT_MIN_LOG_BYTES: u64 = 1 << 20;

/// Files added and removed in one atomic step.
#[derive(Debug, Default)]
pub struct ManifestEdit {
    pub add: Vec<FileMeta>,
    pub remove: Vec<u64>,
}

/// What an operator can do about a missing or damaged manifest.
const REBUILD_ADVICE: &str = "nothing was deleted; restore the file from a backup, or rebuild it from the data files' own footers with `meridian-compact --config <regions.toml> --rebuild-manifest` (with the server stopped)";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("manifest {path} is corrupt: {reason}; {REBUILD_ADVICE}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "manifest {path} is missing, but {files} Parquet file(s) are in its region directory (first: {first}); refusing to start rather than treat them as leftovers; {REBUILD_ADVICE}"
    )]
    Missing {
        path: PathBuf,
        files: usize,
        first: String,
    },
}

pub type Result<T> = std::result::Result<T, ManifestError>;

pub struct Manifest {
    region_dir: PathBuf,
    state: Mutex<State>,
    next_seq: AtomicU64,
    /// The next seq recorded on disk when the manifest was opened (see `ManifestData`).
    committed_next_seq: u64,
}

struct State {
    files: Arc<Vec<FileMeta>>,
    retired: Vec<String>,
    /// The open log of the current generation, and its size.
    log: Option<fs::File>,
    log_generation: u64,
    log_bytes: u64,
    /// Whether `log_bytes` is the length of the log's committed lines (set once the log
    /// was opened; a reopen cuts anything after it).
    log_len_known: bool,
    /// Size of the last checkpoint written or read.
    checkpoint_bytes: u64,
}

impl Manifest {
    /// Opens the manifest of a region directory; creates an empty one only where the
    /// directory holds no data file (a new region). Never deletes anything.
    pub fn open(region_dir: &Path) -> Result<Manifest> {
        fs::create_dir_all(region_dir).map_err(|e| io_err(region_dir)(e))?;
        let path = manifest_file(region_dir);
        let checkpoint_bytes;
        let data = match fs::read(&path) {
            Ok(bytes) => {
                checkpoint_bytes = bytes.len() as u64;
                let mut data = serde_json::from_slice::<ManifestData>(&bytes).map_err(|e| {
                    ManifestError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?;
                replay_log(region_dir, &mut data)?;
                data
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut found = data_files(region_dir)?;
                // A log without its checkpoint is a lost manifest too.
                found.extend(log_files(region_dir));
                if let Some(first) = found.first() {
                    return Err(ManifestError::Missing {
                        path,
                        files: found.len(),
                        first: first.display().to_string(),
                    });
                }
                // A new region: its first checkpoint now, so that a manifest on disk always
                // has one (a log without it would read as a lost manifest).
                let m = Self::from_data(region_dir, ManifestData::default(), &path)?;
                m.checkpoint_now()?;
                return Ok(m);
            }
            Err(e) => return Err(io_err(&path)(e).into()),
        };
        let m = Self::from_data(region_dir, data, &path)?;
        m.state.lock().checkpoint_bytes = checkpoint_bytes;
        Ok(m)
    }

    /// A new manifest listing `files`, written durably (rebuilding a lost one). Fails if a
    /// readable manifest is there already.
    pub fn create(region_dir: &Path, files: Vec<FileMeta>) -> Result<Manifest> {
        let path = manifest_file(region_dir);
        if path.exists() {
            return Err(ManifestError::Corrupt {
                path,
                reason: "a manifest exists already; move it aside before rebuilding".into(),
            });
        }
        let next_seq = files.iter().map(allocated_after).max().unwrap_or(1);
        let data = ManifestData {
            version: 1,
            files,
            next_seq,
            retired: Vec::new(),
            log_generation: 0,
        };
        let m = Self::from_data(region_dir, data, &path)?;
        m.checkpoint(&mut m.state.lock())?;
        Ok(m)
    }

    fn from_data(region_dir: &Path, mut data: ManifestData, path: &Path) -> Result<Manifest> {
        // Read from disk: every path must stay inside the region directory (compaction and
        // retention delete what the manifest names), and seqs must leave room for the next.
        for f in &data.files {
            if !is_inside(&f.path) || f.seq == u64::MAX || f.min_time > f.max_time {
                return Err(ManifestError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("invalid file entry {:?} (seq {})", f.path, f.seq),
                });
            }
        }
        // Retired paths are deleted at start-up: the same rule, and never a live file.
        let live: HashSet<&str> = data.files.iter().map(|f| f.path.as_str()).collect();
        data.retired
            .retain(|p| is_inside(p) && !live.contains(p.as_str()));
        data.files.sort_by_key(|f| f.seq);
        let next = data
            .files
            .iter()
            .map(allocated_after)
            .max()
            .unwrap_or(1)
            .max(data.next_seq);
        Ok(Manifest {
            region_dir: region_dir.to_path_buf(),
            state: Mutex::new(State {
                files: Arc::new(data.files),
                retired: data.retired,
                log: None,
                log_generation: data.log_generation,
                log_bytes: 0,
                log_len_known: false,
                checkpoint_bytes: 0,
            }),
            next_seq: AtomicU64::new(next),
            committed_next_seq: next,
        })
    }

    pub fn region_dir(&self) -> &Path {
        &self.region_dir
    }

    /// A snapshot of the live files, in seq order.
    pub fn files(&self) -> Arc<Vec<FileMeta>> {
        self.state.lock().files.clone()
    }

    /// Paths removed by committed edits that may still be on disk.
    pub fn retired(&self) -> Vec<String> {
        self.state.lock().retired.clone()
    }

    /// The next file seq recorded when the manifest was opened: a file with a seq at least
    /// this is in no committed edit.
    pub fn committed_next_seq(&self) -> u64 {
        self.committed_next_seq
    }

    /// Reserves a new file sequence number.
    pub fn next_file_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies an edit durably: the manifest on disk and the snapshot change together. The
    /// edit is appended to the log and fsynced; the log is checkpointed when it has grown
    /// past the checkpoint.
    pub fn commit(&self, edit: ManifestEdit) -> Result<()> {
        let mut guard = self.state.lock();
        let record = LogRecord {
            add: edit.add,
            remove: edit.remove,
            next_seq: self.next_seq.load(Ordering::Relaxed),
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| ManifestError::Corrupt {
            path: manifest_file(&self.region_dir),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        self.append(&mut guard, &line)?;
        let st = &mut *guard;
        // Copied only while a reader holds the previous snapshot.
        let files = Arc::make_mut(&mut st.files);
        apply(files, &mut st.retired, record);
        // The edit is durable now: a checkpoint that fails is retried by a later commit,
        // never reported as a failed commit (the caller would undo a committed edit).
        if st.log_bytes > CHECKPOINT_MIN_LOG_BYTES.max(st.checkpoint_bytes)
            && let Err(e) = self.checkpoint(st)
        {
            tracing::warn!(region_dir = %self.region_dir.display(), "manifest checkpoint failed, will retry: {e}");
        }
        Ok(())
    }

    /// Writes a checkpoint now (the compactor does at the end of a run, leaving one file).
    pub fn checkpoint_now(&self) -> Result<()> {
        self.checkpoint(&mut self.state.lock())
    }

    fn log_path(&self, generation: u64) -> PathBuf {
        log_file(&self.region_dir, generation)
    }

    /// Appends one line to the current log and fsyncs it (creating the log, and fsyncing
    /// the directory, on the first line of a generation).
    fn append(&self, st: &mut State, line: &[u8]) -> Result<()> {
        use std::io::Write;
        let path = self.log_path(st.log_generation);
        let mut f = match st.log.take() {
            Some(f) => f,
            None => {
                let f = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_err(&path)(e))?;
                let len = f.metadata().map_err(|e| io_err(&path)(e))?.len();
                match st.log_len_known {
                    // Reopened after a failed append whose cut failed: cut it now, or
                    // the failed edit (or half of it) would be taken for a committed one.
                    true if len > st.log_bytes => f
                        .set_len(st.log_bytes)
                        .and_then(|_| f.sync_data())
                        .map_err(|e| io_err(&path)(e))?,
                    true => {}
                    false => st.log_bytes = len,
                }
                st.log_len_known = true;
                sync_dir(&self.region_dir)?;
                f
            }
        };
        if let Err(e) = f.write_all(line).and_then(|_| f.sync_data()) {
            // A partial line may be on disk: cut it, so the next append starts a line (a
            // failed commit leaves nothing behind); if even that fails, the next append
            // reopens the log and cuts it to the length known good.
            if f.set_len(st.log_bytes).and_then(|_| f.sync_data()).is_ok() {
                st.log = Some(f);
            }
            return Err(io_err(&path)(e).into());
        }
        st.log = Some(f);
        st.log_bytes += line.len() as u64;
        Ok(())
    }

    /// Writes the whole state as a checkpoint of the next generation (temp → fsync →
    /// rename → fsync dir), then deletes the previous log.
    fn checkpoint(&self, st: &mut State) -> Result<()> {
        let old_generation = st.log_generation;
        let next_generation = old_generation + 1;
        // Paths retired earlier whose deletion is done need not be carried on.
        st.retired.retain(|p| self.region_dir.join(p).exists());
        let data = ManifestData {
            version: 1,
            files: (*st.files).clone(),
            next_seq: self.next_seq.load(Ordering::Relaxed),
            retired: st.retired.clone(),
            log_generation: next_generation,
        };
        let path = manifest_file(&self.region_dir);
        let tmp = temp_path(&path);
        let bytes = serde_json::to_vec(&data).map_err(|e| ManifestError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| io_err(&path)(e))?;
        // The checkpoint on disk names the next generation from here on: so must the
        // appends (if the rename is lost in a crash, open replays the older log and then
        // this one).
        st.log = None;
        st.log_generation = next_generation;
        st.log_bytes = 0;
        st.log_len_known = true;
        st.checkpoint_bytes = bytes.len() as u64;
        sync_dir(&self.region_dir)?;
        let old = self.log_path(old_generation);
        match fs::remove_file(&old) {
            Ok(()) => sync_dir(&self.region_dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&old)(e).into()),
        }
        Ok(())
    }

    /// Absolute path of a file of this region.
    pub fn abs_path(&self, f: &FileMeta) -> PathBuf {
        self.region_dir.join(&f.path)
    }
}

/// The log of edits of a generation.
pub fn log_file(region_dir: &Path, generation: u64) -> PathBuf {
    region_dir.join(format!("manifest.{generation}.log"))
}

/// The logs of edits in a region directory, of any generation.
pub fn log_files(region_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(region_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if log_generation_of(&name).is_some() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn log_generation_of(name: &str) -> Option<u64> {
    name.strip_prefix("manifest.")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// The lowest seq not yet used by a file: above its seq and, for a file a delete rewrote,
/// above the seq allocated for the rewrite (in its name).
fn allocated_after(f: &FileMeta) -> u64 {
    crate::storage::paths::parse_data_file_seq(Path::new(&f.path))
        .unwrap_or(0)
        .max(f.seq)
        .saturating_add(1)
}

/// Applies one logged edit: removed files go to `retired`, added ones in seq order.
/// `files` stays sorted by seq; a new file (the usual case: the highest seq) is appended
/// without a search.
fn apply(files: &mut Vec<FileMeta>, retired: &mut Vec<String>, r: LogRecord) {
    if !r.remove.is_empty() {
        let remove: HashSet<u64> = r.remove.into_iter().collect();
        files.retain(|f| {
            if remove.contains(&f.seq) {
                retired.push(f.path.clone());
                false
            } else {
                true
            }
        });
    }
    for f in r.add {
        if files.last().is_none_or(|l| l.seq < f.seq) {
            files.push(f);
        } else if let Err(at) = files.binary_search_by_key(&f.seq, |g| g.seq) {
            files.insert(at, f);
        }
    }
}

/// Applies the checkpoint's log to `data`; a last line cut short (a commit that never
/// returned) is dropped and cut from the file, any other damaged line is an error. Logs of
/// other generations (older ones whose deletion was interrupted) are deleted.
fn replay_log(region_dir: &Path, data: &mut ManifestData) -> Result<()> {
    data.files.sort_by_key(|f| f.seq);
    let first = data.log_generation;
    let mut generation = first;
    // The checkpoint's log, then any later one: a checkpoint whose rename a crash undid
    // left edits in the next generation's log, made on top of this log's.
    while log_file(region_dir, generation).exists() || generation == first {
        replay_one(region_dir, generation, data)?;
        generation += 1;
    }
    // Appends go on in the last log replayed, after its edits.
    data.log_generation = generation - 1;
    // Logs of older generations are subsumed by the checkpoint (their deletion was
    // interrupted).
    for other in log_files(region_dir) {
        let name = other.file_name().map(|n| n.to_string_lossy().into_owned());
        if name
            .and_then(|n| log_generation_of(&n))
            .is_some_and(|g| g < first)
        {
            fs::remove_file(&other).map_err(|e| io_err(&other)(e))?;
        }
    }
    Ok(())
}

fn replay_one(region_dir: &Path, generation: u64, data: &mut ManifestData) -> Result<()> {
    let path = log_file(region_dir, generation);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(&path)(e).into()),
    };
    let mut good = 0usize;
    let mut pos = 0usize;
    while pos < text.len() {
        let Some(end) = text[pos..].iter().position(|b| *b == b'\n') else {
            break; // a last line without its newline: cut short
        };
        let line = &text[pos..pos + end];
        match serde_json::from_slice::<LogRecord>(line) {
            Ok(r) => {
                data.next_seq = data.next_seq.max(r.next_seq);
                apply(&mut data.files, &mut data.retired, r);
            }
            Err(e) if pos + end + 1 == text.len() => {
                // The last line, complete but unreadable: a torn write the OS finished
                // with garbage. Dropped like a cut line.
                let _ = e;
                break;
            }
            Err(e) => {
                return Err(ManifestError::Corrupt {
                    path: path.clone(),
                    reason: format!("line at byte {pos}: {e}"),
                });
            }
        }
        pos += end + 1;
        good = pos;
    }
    if good < text.len() {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path)(e))?;
        f.set_len(good as u64)
            .and_then(|_| f.sync_all())
            .map_err(|e| io_err(&path)(e))?;
    }
    Ok(())
}

/// Relative, `/`-separated, no `.`/`..`/empty parts (the form the server writes, which
/// start-up compares with the files on disk), a Parquet file.
fn is_inside(path: &str) -> bool {
    path.split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'))
        && path.ends_with(".parquet")
}

impl StorageError {
    fn from_io(path: &Path, e: std::io::Error) -> StorageError {
        io_err(path)(e)
    }
}

impl From<(PathBuf, std::io::Error)> for StorageError {
    fn from((path, e): (PathBuf, std::io::Error)) -> StorageError {
        StorageError::from_io(&path, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ColumnKind;

    fn meta(seq: u64) -> FileMeta {
        FileMeta {
            seq,
            path: format!("db/m/{seq}.parquet"),
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
        }
    }

    /// Reserves a seq and commits a file with it.
    fn commit_add(m: &Manifest, seq: u64) {
        m.next_file_seq();
        m.commit(ManifestEdit {
            add: vec![meta(seq)],
            remove: vec![],
        })
        .unwrap();
    }

    /// The live seqs of the manifest as a new open reads it.
    fn reopened_seqs(dir: &Path) -> Vec<u64> {
        Manifest::open(dir)
            .unwrap()
            .files()
            .iter()
            .map(|f| f.seq)
            .collect()
    }

    #[test]
    fn commit_is_durable_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::open(dir.path()).unwrap();
        assert!(m.files().is_empty());
        let a = m.next_file_seq();
        let b = m.next_file_seq();
        assert!(b > a);
        m.commit(ManifestEdit {
            add: vec![meta(a), meta(b)],
            remove: vec![],
        })
        .unwrap();
        let before = m.files();
        m.commit(ManifestEdit {
            add: vec![meta(10)],
            remove: vec![a],
        })
        .unwrap();
        assert_eq!(before.len(), 2, "old snapshots are unchanged");
        let reopened = Manifest::open(dir.path()).unwrap();
        let seqs: Vec<u64> = reopened.files().iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![b, 10]);
        assert_eq!(reopened.next_file_seq(), 11);
        assert_eq!(reopened.files()[0], meta(b));
        // No temp file left behind: the checkpoint and its log.
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["manifest.1.log", "manifest.json"]);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    /// Commits append to the log; once it outgrows the checkpoint a new checkpoint of the
    /// next generation replaces both, and the state reads back the same at every step.
    #[test]
    fn the_log_is_checkpointed_when_it_outgrows_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::open(dir.path()).unwrap();
        let mut want = Vec::new();
        for round in 0..100u64 {
            let add: Vec<FileMeta> = (0..100).map(|i| meta(round * 100 + i + 1)).collect();
            for _ in 0..100 {
                m.next_file_seq();
            }
            want.extend(add.iter().map(|f| f.seq));
            // Compaction-like removals too.
            let remove = if round % 5 == 4 {
                let r: Vec<u64> = want.drain(..50).collect();
                r
            } else {
                vec![]
            };
            m.commit(ManifestEdit { add, remove }).unwrap();
            let seqs = reopened_seqs(dir.path());
            assert_eq!(seqs, want, "round {round}");
        }
        let n = names(dir.path());
        assert!(
            n.iter().any(|x| x.starts_with("manifest.")
                && x.ends_with(".log")
                && x != "manifest.1.log"),
            "a later generation: {n:?}"
        );
        assert_eq!(n.iter().filter(|x| x.ends_with(".log")).count(), 1, "{n:?}");
    }

    /// A checkpoint whose rename a crash undid (the directory was never synced): the older
    /// checkpoint and its log come back, and the edits made after the checkpoint in the next
    /// generation's log are replayed on top of them, in order.
    #[test]
    fn edits_after_a_lost_checkpoint_rename_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::open(dir.path()).unwrap();
        commit_add(&m, 1);
        commit_add(&m, 2);
        let old_checkpoint = fs::read(manifest_file(dir.path())).unwrap();
        let old_log = fs::read(log_file(dir.path(), 1)).unwrap();
        m.checkpoint_now().unwrap();
        commit_add(&m, 3);
        m.commit(ManifestEdit {
            add: vec![],
            remove: vec![1],
        })
        .unwrap();
        drop(m);
        fs::write(manifest_file(dir.path()), old_checkpoint).unwrap();
        fs::write(log_file(dir.path(), 1), old_log).unwrap();
        let m = Manifest::open(dir.path()).unwrap();
        let seqs: Vec<u64> = m.files().iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
        // Appends go on after the newest edits, and survive another reopen.
        commit_add(&m, 4);
        drop(m);
        let seqs = reopened_seqs(dir.path());
        assert_eq!(seqs, vec![2, 3, 4]);
    }

    /// A last log line cut short by a crash is a commit that never returned: dropped (and
    /// cut from the file); a damaged line before the end is an error, never ignored.
    #[test]
    fn a_torn_last_line_is_dropped_a_damaged_middle_line_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::open(dir.path()).unwrap();
        for seq in 1..=3 {
            commit_add(&m, seq);
        }
        drop(m);
        let log = log_file(dir.path(), 1);
        let text = fs::read(&log).unwrap();
        fs::write(&log, &text[..text.len() - 10]).unwrap();
        let m = Manifest::open(dir.path()).unwrap();
        let seqs: Vec<u64> = m.files().iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        // Appends go on after the cut.
        commit_add(&m, 9);
        drop(m);
        let seqs = reopened_seqs(dir.path());
        assert_eq!(seqs, vec![1, 2, 9]);
        let mut text = fs::read(&log).unwrap();
        text[5] = b'#';
        fs::write(&log, &text).unwrap();
        let err = Manifest::open(dir.path()).err().expect("damaged");
        assert!(err.to_string().contains("corrupt"), "{err}");
        // A lost checkpoint beside its log is a lost manifest, not a new region.
        fs::remove_file(manifest_file(dir.path())).unwrap();
        let err = Manifest::open(dir.path()).err().expect("missing");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn corrupt_manifest_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(manifest_file(dir.path()), b"{not json").unwrap();
        let err = Manifest::open(dir.path()).err().expect("corrupt");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn entries_pointing_outside_the_region_are_refused() {
        for (path, seq) in [
            ("../other/1.parquet", 1),
            ("/etc/passwd.parquet", 1),
            ("db/./m/1.parquet", 1),
            ("db/m/1.txt", 1),
            ("db//m/1.parquet", 1),
            ("db/m/1.parquet", u64::MAX),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut f = meta(1);
            f.path = path.into();
            f.seq = seq;
            let data = ManifestData {
                version: 1,
                files: vec![f],
                ..ManifestData::default()
            };
            fs::write(
                manifest_file(dir.path()),
                serde_json::to_vec(&data).unwrap(),
            )
            .unwrap();
            let err = Manifest::open(dir.path()).err().expect("refused");
            assert!(err.to_string().contains("corrupt"), "{path}: {err}");
        }
    }
}
