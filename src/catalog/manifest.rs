//! Per-region manifest of live Parquet files.
//!
//! The manifest is the truth: a Parquet file under the region directory that it does not
//! list is not part of the database (see `leftovers` for what start-up does with such a
//! file: it deletes only what is provably a leftover). A missing manifest beside data files,
//! or a damaged one, stops start-up with advice and deletes nothing; `meridian-compact
//! --rebuild-manifest` rebuilds it from the files' footers ([`crate::catalog::rebuild`]). Each commit
//! rewrites `manifest.json` atomically: temp file → fsync → rename → fsync directory, under
//! one lock, so readers of the file and of [`Manifest::files`] see either the old or the new
//! list, never a mix. A full rewrite costs O(files); compaction keeps the file count small.
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
use crate::model::ColumnKind;
use crate::storage::parquet::{StorageError, io_err, sync_dir};
use crate::storage::paths::{manifest_file, temp_path};

/// WAL records `[min_seq, max_seq]` of one ingest shard, contained in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRange {
    pub shard: usize,
    pub min_seq: u64,
    pub max_seq: u64,
}

/// One live Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Unique, increasing per region: a later seq holds later writes of the same series.
    pub seq: u64,
    /// Path relative to the region directory, `/`-separated.
    pub path: String,
    pub db: String,
    pub measurement: String,
    pub partition_start: i64,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub bytes: u64,
    /// Every column but `time`, with its kind.
    pub columns: Vec<(String, ColumnKind)>,
    #[serde(default)]
    pub wal: Vec<WalRange>,
}

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
}

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
}

impl Manifest {
    /// Opens the manifest of a region directory; creates an empty one only where the
    /// directory holds no data file (a new region). Never deletes anything.
    pub fn open(region_dir: &Path) -> Result<Manifest> {
        fs::create_dir_all(region_dir).map_err(|e| io_err(region_dir)(e))?;
        let path = manifest_file(region_dir);
        let data = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<ManifestData>(&bytes).map_err(|e| {
                ManifestError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let found = data_files(region_dir)?;
                if let Some(first) = found.first() {
                    return Err(ManifestError::Missing {
                        path,
                        files: found.len(),
                        first: first.display().to_string(),
                    });
                }
                ManifestData::default()
            }
            Err(e) => return Err(io_err(&path)(e).into()),
        };
        Self::from_data(region_dir, data, &path)
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
        let next_seq = files.iter().map(|f| f.seq + 1).max().unwrap_or(1);
        let data = ManifestData {
            version: 1,
            files,
            next_seq,
            retired: Vec::new(),
        };
        let m = Self::from_data(region_dir, data, &path)?;
        m.commit(ManifestEdit::default())?;
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
            .map(|f| f.seq + 1)
            .max()
            .unwrap_or(1)
            .max(data.next_seq);
        Ok(Manifest {
            region_dir: region_dir.to_path_buf(),
            state: Mutex::new(State {
                files: Arc::new(data.files),
                retired: data.retired,
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

    /// Applies an edit durably: the manifest on disk and the snapshot change together.
    pub fn commit(&self, edit: ManifestEdit) -> Result<()> {
        let mut guard = self.state.lock();
        let remove: HashSet<u64> = edit.remove.into_iter().collect();
        let mut retired: Vec<String> = guard
            .retired
            .iter()
            .filter(|p| self.region_dir.join(p).exists())
            .cloned()
            .collect();
        let mut files: Vec<FileMeta> = Vec::with_capacity(guard.files.len() + edit.add.len());
        for f in guard.files.iter() {
            if remove.contains(&f.seq) {
                retired.push(f.path.clone());
            } else {
                files.push(f.clone());
            }
        }
        files.extend(edit.add);
        files.sort_by_key(|f| f.seq);
        let data = ManifestData {
            version: 1,
            files,
            next_seq: self.next_seq.load(Ordering::Relaxed),
            retired,
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
        sync_dir(&self.region_dir)?;
        *guard = State {
            files: Arc::new(data.files),
            retired: data.retired,
        };
        Ok(())
    }

    /// Absolute path of a file of this region.
    pub fn abs_path(&self, f: &FileMeta) -> PathBuf {
        self.region_dir.join(&f.path)
    }
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
        // No temp file left behind.
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![crate::storage::paths::MANIFEST_FILE.to_string()]
        );
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
