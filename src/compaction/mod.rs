//! Compaction, retention and downsampling of a data dir: by `meridian-compact` beside a
//! running server or offline, and (retention, downsampling) by the server itself
//! ([`background`]).
//!
//! ```text
//!  DataDir::open   offline: flock DATA/meridian.lock (held until drop: no server starts);
//!    │             beside a server (its lock is held): no lock, leases instead
//!    │             → regions (from the config, or dirs with _manifest/ or wal/) → stores →
//!    │             manifests → partition duration
//!    ▼
//!  per region      sweep leftovers (offline: of every interrupted write; beside a server:
//!    │             only outputs of compactions that never committed and retired files past
//!    │             their grace) → read the lowest WAL seq still on disk per shard
//!    ▼
//!  plan (pure)     retention drops ─► compactions ─► rollups, each re-planned from the manifest
//!    │             as the previous phase left it (plan.rs)
//!    ▼
//!  exec            lease the unit (a manifest edit) → read inputs → storage::merge (sort,
//!                  dedup last-write-wins per field) → [rollup] → outputs through the one file
//!                  writer → ONE manifest edit (add outputs, remove inputs, give the lease
//!                  back) → inputs retired (exec.rs, writer.rs, rollup.rs)
//!  verify          every live file against its manifest entry (verify.rs)
//! ```
//!
//! Invariants:
//! - Beside a live server: every commit is a put-if-absent manifest edit, so the server's
//!   flushes and the compactor never lose each other's edits; an edit whose inputs another
//!   writer removed meanwhile is refused whole (the unit is skipped); replaced files stay
//!   until no query can read them; the server's own files are never touched.
//! - Crash safety: at every instant the manifest lists either the inputs or the outputs of a
//!   partition, never both and never neither, and every file it lists is complete and
//!   durable. A crash leaves at most unlisted files, which the next run (or the server's
//!   start-up) deletes: every point stays readable exactly once.
//! - A merged file carries the seq of its newest input (ordering it below anything flushed
//!   after its inputs) and the union of its inputs' `wal` ranges, so the server's WAL replay
//!   keeps skipping what the inputs held.
//! - Last write wins field by field, in manifest (`seq`) order, exactly as a query merges.
//! - Nothing here reads the environment; the binary turns flags into a [`plan::Policy`].

pub mod background;
pub mod datadir;
pub mod exec;
pub mod plan;
pub mod reroute;
pub mod rollup;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::manifest::ManifestError;
use crate::storage::parquet::StorageError;

pub use datadir::DataDir;
pub use exec::ExecSettings;
pub use plan::{Agg, Downsample, Filters, PartitionId, PlanError, Policy, RegionPlan};
pub use verify::VerifyReport;

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(
        "data dir {data_dir} is in use by a running Meridian server or compactor (lock file {lock} is held); stop it first"
    )]
    Locked { data_dir: PathBuf, lock: PathBuf },
    #[error("data dir {0} does not exist or is not a directory")]
    NoDataDir(PathBuf),
    #[error("no region {region:?} under {data_dir} (regions found: {found})")]
    UnknownRegion {
        region: String,
        data_dir: PathBuf,
        found: String,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        source: arrow::error::ArrowError,
    },
    #[error("{context}: {source}")]
    Parquet {
        context: String,
        source: parquet::errors::ParquetError,
    },
    #[error("file {path} does not match its manifest entry: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    /// Another compactor holds the unit's lease, or changed its files first: skipped, not
    /// failed (it is that compactor's work).
    #[error("skipped: {0}")]
    Busy(String),
    /// `--reroute` cannot run (or go on) on this data dir.
    #[error("reroute: {0}")]
    Reroute(String),
}

pub type Result<T> = std::result::Result<T, CompactionError>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CompactionError + '_ {
    move |source| CompactionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn arrow_err(
    context: impl Into<String>,
) -> impl FnOnce(arrow::error::ArrowError) -> CompactionError {
    let context = context.into();
    move |source| CompactionError::Arrow { context, source }
}

/// A durable step of the crash-safe order; a crash right after any of them is recoverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// An output file is complete, fsynced and renamed into place (not yet live).
    OutputWritten,
    /// The manifest now lists the outputs instead of the inputs.
    ManifestCommitted,
    /// A replaced input file was retired: out of the manifest, deleted after the grace
    /// period (at the end of an offline run).
    InputRetired,
}

/// What kind of unit of work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    Drop,
    Compaction,
    Rollup,
}

/// The figures of one finished unit (one partition or rollup window).
#[derive(Debug, Clone, PartialEq)]
pub struct UnitReport {
    pub kind: UnitKind,
    /// For a rollup: the source measurement and the window start.
    pub partition: PartitionId,
    pub files_in: u64,
    pub files_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Non-null field values read / written.
    pub values_in: u64,
    pub values_out: u64,
    pub rows_deduped: u64,
    pub tombstone: bool,
}

/// Progress of a run, for a progress bar or log lines.
#[derive(Debug)]
pub enum Event<'a> {
    /// Units of work planned in all regions (drops + compactions + rollups).
    Planned { units: usize },
    /// A leftover of an interrupted run was removed.
    Leftover { region: &'a str, path: &'a Path },
    /// A unit starts.
    Started {
        region: &'a str,
        kind: UnitKind,
        partition: &'a PartitionId,
    },
    /// A durable step of the crash-safe order finished.
    Step {
        region: &'a str,
        step: Step,
        path: &'a Path,
    },
    /// A unit finished.
    Finished {
        region: &'a str,
        report: &'a UnitReport,
    },
    /// A unit failed; nothing of it is live (the run goes on with the next one).
    Failed {
        region: &'a str,
        kind: UnitKind,
        partition: &'a PartitionId,
        error: &'a CompactionError,
    },
    /// Something the planner chose not to do.
    Note { region: &'a str, text: &'a str },
}

/// Totals of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub regions: usize,
    pub leftovers_removed: u64,
    pub partitions_compacted: u64,
    pub files_in: u64,
    pub files_out: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub values_before: u64,
    pub values_after: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_deduped: u64,
    pub partitions_dropped: u64,
    pub files_dropped: u64,
    pub bytes_dropped: u64,
    pub rows_dropped: u64,
    pub tombstones: u64,
    pub windows_rolled_up: u64,
    pub rollup_files_out: u64,
    pub rollup_rows_out: u64,
    pub failures: Vec<String>,
}

impl Summary {
    pub fn add(&mut self, r: &UnitReport) {
        match r.kind {
            UnitKind::Compaction => {
                self.partitions_compacted += 1;
                self.files_in += r.files_in;
                self.files_out += r.files_out;
                self.bytes_before += r.bytes_in;
                self.bytes_after += r.bytes_out;
                self.values_before += r.values_in;
                self.values_after += r.values_out;
                self.rows_in += r.rows_in;
                self.rows_out += r.rows_out;
                self.rows_deduped += r.rows_deduped;
            }
            UnitKind::Drop => {
                self.partitions_dropped += 1;
                self.files_dropped += r.files_in;
                self.bytes_dropped += r.bytes_in;
                self.rows_dropped += r.rows_in;
                self.tombstones += u64::from(r.tombstone);
            }
            UnitKind::Rollup => {
                self.windows_rolled_up += 1;
                self.rollup_files_out += r.files_out;
                self.rollup_rows_out += r.rows_out;
            }
        }
    }

    /// Bytes per stored field value of the compacted partitions before the run.
    pub fn bytes_per_value_before(&self) -> f64 {
        ratio(self.bytes_before, self.values_before)
    }

    /// Bytes per stored field value of the compacted partitions after the run.
    pub fn bytes_per_value_after(&self) -> f64 {
        ratio(self.bytes_after, self.values_after)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Non-null field values of a batch (every column but `time` and tags).
pub(crate) fn count_values(batch: &arrow::record_batch::RecordBatch) -> u64 {
    use arrow::array::Array;
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| {
            f.name() != crate::model::TIME_COLUMN && !crate::storage::schema::is_tag(f.data_type())
        })
        .map(|(_, c)| (c.len() - c.null_count()) as u64)
        .sum()
}
