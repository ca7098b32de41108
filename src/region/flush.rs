//! Flush: frozen chunks of a block → one sorted, deduplicated, zstd Parquet file.
//!
//! The crash-safe order, step by step (each step only after the previous is durable):
//! 1. sort by tag set then time, merge duplicates (`block::sorted_batch`);
//! 2. write the file under a temporary name, fsync it, rename it into place, fsync the
//!    directory (`storage::parquet::write_file`); new partition directories are fsynced into
//!    their parents;
//! 3. record the file in the region manifest (atomic rewrite + directory fsync), with the WAL
//!    ranges it covers;
//! 4. (the shard) drop the in-memory copy, so queries switch to the file;
//! 5. (the shard) delete WAL segments whose every record is now in a file.
//!
//! A crash before 3 leaves an orphan file, deleted at start-up, and the WAL still holds the
//! rows; a crash after 3 leaves WAL records that replay skips because the manifest covers them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use parquet::file::metadata::KeyValue;

use crate::catalog::{FileMeta, Manifest, ManifestEdit, WalRange};
use crate::model::PartitionStart;
use crate::region::block::{Chunk, sorted_batch};
use crate::storage::parquet::{
    FLUSH_PAGE_ROWS, FLUSH_ZSTD_LEVEL, meta, sync_dirs_up_to, write_file, writer_properties,
};
use crate::storage::paths::data_file_rel;

/// Identity of a block: (db, measurement, partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    pub db: Arc<str>,
    pub measurement: Arc<str>,
    pub partition: PartitionStart,
}

/// Everything needed to write one file.
pub struct FlushJob {
    pub region_name: Arc<str>,
    pub manifest: Arc<Manifest>,
    pub key: BlockKey,
    pub chunks: Vec<Arc<Chunk>>,
    pub file_seq: u64,
    pub wal: Vec<WalRange>,
    pub partition_duration_ns: i64,
    pub row_group_rows: usize,
    /// The block's counted memory: its sorted copy and the encoder's buffers take about
    /// as much again while the flush runs, and are counted as such.
    pub bytes: u64,
}

/// What a finished flush reports.
#[derive(Debug)]
pub struct FlushOutcome {
    pub rows: u64,
    pub merged: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// A file a flush wrote: where it is, its manifest entry and its rows in file order, so
/// that the caller can index it without reading it back.
pub struct Written {
    pub path: PathBuf,
    pub file: FileMeta,
    pub rows: RecordBatch,
}

/// Runs steps 1–3. On error nothing is recorded in the manifest (a written file is removed
/// or becomes an orphan cleaned at start-up) and the caller keeps the rows in memory.
pub fn run(job: &FlushJob) -> Result<(FlushOutcome, Written), String> {
    let started = Instant::now();
    let (batch, cols, merged) =
        sorted_batch(&job.chunks).map_err(|e| format!("sorting block: {e}"))?;
    let rows = batch.num_rows() as u64;
    let (min_time, max_time) = job.chunks.iter().fold((i64::MAX, i64::MIN), |(a, b), c| {
        (a.min(c.min_time), b.max(c.max_time))
    });
    let rel = data_file_rel(
        &job.key.db,
        &job.key.measurement,
        job.key.partition,
        job.partition_duration_ns,
        job.file_seq,
    );
    let region_dir = job.manifest.region_dir();
    let path = region_dir.join(&rel);
    let kv = vec![
        KeyValue::new(meta::REGION.into(), job.region_name.to_string()),
        KeyValue::new(meta::DB.into(), job.key.db.to_string()),
        KeyValue::new(meta::MEASUREMENT.into(), job.key.measurement.to_string()),
        KeyValue::new(meta::MIN_TIME.into(), min_time.to_string()),
        KeyValue::new(meta::MAX_TIME.into(), max_time.to_string()),
        KeyValue::new(meta::ROW_COUNT.into(), rows.to_string()),
        KeyValue::new(
            meta::PARTITION_START.into(),
            job.key.partition.0.to_string(),
        ),
        KeyValue::new(
            meta::WAL.into(),
            serde_json::to_string(&job.wal).map_err(|e| format!("encoding WAL ranges: {e}"))?,
        ),
        KeyValue::new(
            meta::TAG_COLUMNS.into(),
            cols.tags
                .iter()
                .map(|t| t.as_ref())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    let props = writer_properties(
        &batch.schema(),
        job.row_group_rows,
        kv,
        FLUSH_ZSTD_LEVEL,
        FLUSH_PAGE_ROWS,
    );
    let bytes = write_file(&path, &batch, props).map_err(|e| e.to_string())?;
    if let Some(parent) = path.parent() {
        sync_dirs_up_to(parent, region_dir).map_err(|e| e.to_string())?;
    }
    let meta = FileMeta {
        seq: job.file_seq,
        path: rel.to_string_lossy().replace('\\', "/"),
        db: job.key.db.to_string(),
        measurement: job.key.measurement.to_string(),
        partition_start: job.key.partition.0,
        min_time,
        max_time,
        rows,
        bytes,
        columns: cols.kinds(),
        wal: job.wal.clone(),
    };
    job.manifest
        .commit(ManifestEdit {
            add: vec![meta.clone()],
            remove: vec![],
        })
        .map_err(|e| e.to_string())?;
    Ok((
        FlushOutcome {
            rows,
            merged,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        },
        Written {
            path,
            file: meta,
            rows: batch,
        },
    ))
}
