//! Flush: frozen chunks of a block → one sorted, deduplicated, zstd Parquet file.
//!
//! The crash-safe order, step by step (each step only after the previous is durable):
//! 1. sort by tag set then time, merge duplicates (`block::sorted_batch`);
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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use parquet::file::metadata::KeyValue;

use crate::catalog::{FileMeta, Manifest, ManifestEdit, WalRange};
use crate::model::PartitionStart;
use crate::region::block::{Chunk, sorted_batch};
use crate::storage::parquet::{FLUSH_PAGE_ROWS, FLUSH_ZSTD_LEVEL, write_files, writer_properties};
use crate::storage::paths::data_file_rel;
use crate::storage::schema::meta;

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
    /// The block's counted memory: its sorted copy and the encoder's buffers take about
    /// as much again while the flush runs, and are counted as such.
    pub bytes: u64,
}

/// Everything needed to write the files of one flush: one block, or many small ones of a
/// shard flushed together (one sync and one manifest edit for all of them).
pub struct FlushJob {
    pub region_name: Arc<str>,
    pub manifest: Arc<Manifest>,
    pub parts: Vec<FlushPart>,
    pub partition_duration_ns: i64,
    pub row_group_rows: usize,
}

impl FlushJob {
    /// Memory the job holds while it runs.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
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

/// A file a flush wrote: where it is, its manifest entry and its rows in file order, so
/// that the caller can index it without reading it back.
pub struct Written {
    pub path: PathBuf,
    pub file: FileMeta,
    pub rows: RecordBatch,
}

/// Runs steps 1–3 for every part: all files are written, made durable together and
/// recorded in one manifest edit. On error nothing is recorded in the manifest (a written
/// file becomes an orphan cleaned at start-up, or is replaced by the retry) and the caller
/// keeps the rows in memory.
pub fn run(job: &FlushJob) -> Result<Vec<(FlushOutcome, Written)>, String> {
    let started = Instant::now();
    let region_dir = job.manifest.region_dir();
    let mut prepared = Vec::with_capacity(job.parts.len());
    for part in &job.parts {
        prepared.push(prepare(job, part)?);
    }
    let files = prepared
        .iter()
        .map(|p| (region_dir.join(&p.rel), &p.batch, p.props.clone()))
        .collect();
    let sizes = write_files(files, region_dir).map_err(|e| e.to_string())?;
    let metas: Vec<FileMeta> = prepared
        .iter()
        .zip(&sizes)
        .map(|(p, bytes)| FileMeta {
            bytes: *bytes,
            ..p.meta.clone()
        })
        .collect();
    job.manifest
        .commit(ManifestEdit {
            add: metas.clone(),
            remove: vec![],
        })
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(prepared
        .into_iter()
        .zip(metas)
        .map(|(p, meta)| {
            (
                FlushOutcome {
                    rows: meta.rows,
                    merged: p.merged,
                    bytes: meta.bytes,
                    seconds,
                },
                Written {
                    path: region_dir.join(&p.rel),
                    file: meta,
                    rows: p.batch,
                },
            )
        })
        .collect())
}

/// One part sorted and described, ready to write.
struct Prepared {
    rel: PathBuf,
    batch: RecordBatch,
    props: parquet::file::properties::WriterProperties,
    merged: usize,
    /// Everything but the size, known once written.
    meta: FileMeta,
}

/// Step 1 for one part, and its footer and manifest entry.
fn prepare(job: &FlushJob, part: &FlushPart) -> Result<Prepared, String> {
    let (batch, cols, merged) =
        sorted_batch(&part.chunks).map_err(|e| format!("sorting block: {e}"))?;
    let rows = batch.num_rows() as u64;
    let (min_time, max_time) = part.chunks.iter().fold((i64::MAX, i64::MIN), |(a, b), c| {
        (a.min(c.min_time), b.max(c.max_time))
    });
    let rel = data_file_rel(
        &part.key.db,
        &part.key.measurement,
        part.key.partition,
        job.partition_duration_ns,
        part.file_seq,
    );
    let kv = vec![
        KeyValue::new(meta::REGION.into(), job.region_name.to_string()),
        KeyValue::new(meta::DB.into(), part.key.db.to_string()),
        KeyValue::new(meta::MEASUREMENT.into(), part.key.measurement.to_string()),
        KeyValue::new(meta::MIN_TIME.into(), min_time.to_string()),
        KeyValue::new(meta::MAX_TIME.into(), max_time.to_string()),
        KeyValue::new(meta::ROW_COUNT.into(), rows.to_string()),
        KeyValue::new(
            meta::PARTITION_START.into(),
            part.key.partition.0.to_string(),
        ),
        KeyValue::new(
            meta::WAL.into(),
            serde_json::to_string(&part.wal).map_err(|e| format!("encoding WAL ranges: {e}"))?,
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
    let meta = FileMeta {
        seq: part.file_seq,
        path: rel.to_string_lossy().replace('\\', "/"),
        db: part.key.db.to_string(),
        measurement: part.key.measurement.to_string(),
        partition_start: part.key.partition.0,
        min_time,
        max_time,
        rows,
        bytes: 0,
        columns: cols.kinds(),
        wal: part.wal.clone(),
    };
    Ok(Prepared {
        rel,
        batch,
        props,
        merged,
        meta,
    })
}
