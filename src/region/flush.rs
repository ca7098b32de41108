//! Flush: frozen chunks of a block → one sorted, deduplicated, zstd Parquet file.
//!
//! The crash-safe order, step by step (each step only after the previous is durable):
//! 1. sort by tag set then time, merge duplicates (`block::SortedRows`; each field column
//!    is gathered from the block when it is encoded);
//! 2. write the file under a temporary name, make it durable, rename it into place, make the
//!    directories durable (`storage::parquet::write_files`; the small blocks of a shard
//!    flushed together share one file-system sync);
//! 3. record the files in the region manifest (one durable edit for the job), with the WAL
//!    ranges each covers;
//! 4. (the shard) drop the in-memory copy, so queries switch to the file;
//! 5. (the shard) delete WAL segments whose every record is now in a file.
//!
//! A crash before 3 leaves an orphan file, deleted at start-up, and the WAL still holds the
//! rows; a crash after 3 leaves WAL records that replay skips because the manifest covers them.

use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::catalog::{FileMeta, Manifest, ManifestEdit, WalRange};
use crate::model::PartitionStart;
use crate::region::block::{Chunk, SortedRows};
use crate::storage::parquet::{FLUSH_PAGE_ROWS, FLUSH_ZSTD_LEVEL};
use crate::storage::paths::data_file_rel;
use crate::storage::store::FileRef;
use crate::storage::writer::{FileSpec, Staged, discard, publish, stage_file};

/// Identity of a block: (db, measurement, partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    pub db: Arc<str>,
    pub measurement: Arc<str>,
    pub partition: PartitionStart,
}

/// One block to write as one file.
pub struct FlushPart {
    pub key: BlockKey,
    pub chunks: Vec<Arc<Chunk>>,
    pub file_seq: u64,
    pub wal: Vec<WalRange>,
    /// The block's counted memory.
    pub bytes: u64,
}

/// Everything needed to write the files of one flush: one block, or many small ones of a
/// shard flushed together (one sync and one manifest edit for all of them).
pub struct FlushJob {
    /// Shared storage: the lease epoch the job was submitted under (0: none), which fences
    /// its manifest edit.
    pub fence: Option<u64>,
    pub region_name: Arc<str>,
    pub manifest: Arc<Manifest>,
    pub parts: Vec<FlushPart>,
    pub partition_duration_ns: i64,
    pub row_group_rows: usize,
    pub time_unit: crate::config::FileTimeUnit,
}

/// What a flush holds per row beside the block while it runs: the sort's keys (16 bytes,
/// while sorting), the rows kept and their picks from the chunks (up to 20), the time and
/// tag key columns (12), one field column gathered and its encoded pages (about 16).
const STAGING_ROW_BYTES: u64 = 64;

impl FlushPart {
    /// Memory the flush of this part holds beside the block: per row (above), and the
    /// encoding trial's copy of its middle rows in every column (the block's share of them:
    /// all of a block of fewer rows, such as a wide one).
    pub fn staging(&self) -> u64 {
        let rows: u64 = self.chunks.iter().map(|c| c.rows() as u64).sum();
        let (_, trial) = crate::storage::parquet::trial_span(rows as usize);
        let sample = (self.bytes as u128 * trial as u128 / u128::from(rows.max(1))) as u64;
        rows.saturating_mul(STAGING_ROW_BYTES)
            .saturating_add(sample)
    }
}

impl FlushJob {
    /// Memory the job holds beside its blocks while it runs (parts are written one after
    /// another, their keys kept for the index until the end).
    pub fn staging(&self) -> u64 {
        self.parts.iter().map(FlushPart::staging).sum()
    }
}

/// What a finished flush reports, per file.
#[derive(Debug)]
pub struct FlushOutcome {
    pub rows: u64,
    pub merged: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// A file a flush wrote: where it is, its manifest entry and its rows in file order (time
/// and tag columns), so that the caller can index it without reading it back.
pub struct Written {
    pub file_ref: FileRef,
    pub file: FileMeta,
    pub rows: RecordBatch,
}

/// Runs steps 1–3 for every part: all files are written, made durable together and
/// recorded in one manifest edit. On error nothing is recorded in the manifest (a written
/// file becomes an orphan cleaned at start-up, or is replaced by the retry) and the caller
/// keeps the rows in memory.
pub fn run(job: &FlushJob) -> Result<Vec<(FlushOutcome, Written)>, String> {
    let started = Instant::now();
    // Shared storage: only the lease holder writes, and its edit is refused if another
    // node took the lease over meanwhile.
    if job.fence == Some(0) {
        return Err(format!(
            "this node does not hold region {}'s flush lease",
            job.region_name
        ));
    }
    let fence = job.fence;
    let store = job.manifest.store();
    let mut staged: Vec<(Staged, RecordBatch, usize)> = Vec::with_capacity(job.parts.len());
    for part in &job.parts {
        match stage(job, part) {
            Ok(s) => staged.push(s),
            Err(e) => {
                discard(&staged.iter().map(|s| &s.0).collect::<Vec<_>>());
                return Err(e);
            }
        }
    }
    let files: Vec<&Staged> = staged.iter().map(|s| &s.0).collect();
    publish(store, &files).map_err(|e| e.to_string())?;
    let metas: Vec<FileMeta> = files.iter().map(|s| s.meta.clone()).collect();
    let paths: Vec<String> = metas.iter().map(|m| m.path.clone()).collect();
    match job.manifest.commit(ManifestEdit {
        add: metas,
        fence,
        ..ManifestEdit::default()
    }) {
        Ok(_) => {}
        Err(e @ crate::catalog::manifest::ManifestError::Conflict(_)) => {
            // Refused: these files are this node's alone (their seqs), and no edit names
            // them, unless an earlier try of this commit did after all (a lost answer).
            let listed = job.manifest.files();
            let unlisted: Vec<String> = paths
                .into_iter()
                .filter(|p| !listed.iter().any(|f| &f.path == p))
                .collect();
            let _ = store.delete(&unlisted);
            return Err(e.to_string());
        }
        Err(e) => return Err(e.to_string()),
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(staged
        .into_iter()
        .map(|(s, rows, merged)| {
            let meta = s.meta;
            (
                FlushOutcome {
                    rows: meta.rows,
                    merged,
                    bytes: meta.bytes,
                    seconds,
                },
                Written {
                    file_ref: FileRef {
                        store: store.clone(),
                        rel: meta.path.clone(),
                        len: meta.bytes,
                    },
                    file: meta,
                    rows,
                },
            )
        })
        .collect())
}

/// Step 1 for one part: sorted, merged and encoded into staging.
fn stage(job: &FlushJob, part: &FlushPart) -> Result<(Staged, RecordBatch, usize), String> {
    let sorted = SortedRows::new(&part.chunks).map_err(|e| format!("sorting block: {e}"))?;
    let rel = data_file_rel(
        &part.key.db,
        &part.key.measurement,
        part.key.partition,
        job.partition_duration_ns,
        part.file_seq,
    );
    let spec = FileSpec {
        region: &job.region_name,
        db: &part.key.db,
        measurement: &part.key.measurement,
        partition_start: part.key.partition.0,
        row_group_rows: job.row_group_rows,
        zstd_level: FLUSH_ZSTD_LEVEL,
        page_rows: FLUSH_PAGE_ROWS,
        time_unit: job.time_unit,
        // Rewritten by `meridian-compact`, which writes it; Meridian does not read it.
        column_index: false,
    };
    let staged = stage_file(
        job.manifest.store(),
        rel.to_string_lossy().replace('\\', "/"),
        part.file_seq,
        &sorted,
        &spec,
        part.wal.clone(),
    )
    .map_err(|e| e.to_string())?;
    // The file's index needs the time and tag columns only.
    let keys = sorted.keys().map_err(|e| format!("sorting block: {e}"))?;
    Ok((staged, keys, sorted.merged))
}
