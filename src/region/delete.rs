//! Deletes: points of chosen series and times removed from every hosted region, durably,
//! before the delete is acknowledged.
//!
//! Order, each step done before the next:
//! 1. one delete at a time (a lock);
//! 2. every shard flushes the blocks it holds (a flush barrier: rows written meanwhile are
//!    concurrent with the delete and stay), so every point acknowledged before the delete
//!    is in a file;
//! 3. per region, each live file holding matching points is rewritten without them under a
//!    new name that keeps its seq (`<seq>~<rewrite seq>.parquet`: the seq orders
//!    overlapping files, last write wins, so a rewrite must not change it), or dropped
//!    when nothing is left; written temp → fsync → rename → fsync dir;
//! 4. one manifest edit per region swaps them (the old files go to `retired`);
//! 5. the old files are deleted once queries that may still read them are done (after
//!    `grace`; start-up deletes any left).
//!
//! A crash before 4 leaves rewritten files no edit names: start-up deletes them (their
//! rewrite seq is at or above the manifest's `next_seq`). Queries switch at 4.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;

use super::Engine;
use super::shard::Ctrl;
use crate::catalog::{FileMeta, ManifestEdit, WalRange};
use crate::model::{ColumnKind, TIME_COLUMN};
use crate::storage::parquet::{
    FLUSH_PAGE_ROWS, FLUSH_ZSTD_LEVEL, StorageError, write_batches, writer_properties,
};
use crate::storage::paths::rewritten_file_rel;
use crate::storage::schema::meta;

/// Which series a delete takes: given a series' tags (sorted by key, absent ones left out).
pub type SeriesFilter = Arc<dyn Fn(&[(&str, &str)]) -> bool + Send + Sync>;

/// What to delete.
#[derive(Clone)]
pub struct DeleteSpec {
    pub db: String,
    /// `None`: every measurement of the db.
    pub measurements: Option<Vec<String>>,
    /// `None`: every series.
    pub series: Option<SeriesFilter>,
    /// Inclusive time bounds.
    pub min_time: i64,
    pub max_time: i64,
}

/// What a delete did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeleteOutcome {
    pub files_rewritten: u64,
    pub files_dropped: u64,
    pub rows_deleted: u64,
}

impl DeleteSpec {
    fn takes_file(&self, f: &FileMeta) -> bool {
        f.db == self.db
            && self
                .measurements
                .as_ref()
                .is_none_or(|ms| ms.contains(&f.measurement))
            && f.max_time >= self.min_time
            && f.min_time <= self.max_time
    }

    /// Whether every row of the file goes, without reading it.
    fn takes_whole(&self, f: &FileMeta) -> bool {
        self.series.is_none() && f.min_time >= self.min_time && f.max_time <= self.max_time
    }
}

impl Engine {
    /// Deletes durably (see the module docs). `timeout` bounds the wait for the flush of
    /// the rows in memory; `grace` is how long old files stay for running queries.
    pub fn delete(
        self: &Arc<Self>,
        spec: &DeleteSpec,
        timeout: Duration,
        grace: Duration,
    ) -> Result<DeleteOutcome, String> {
        let _one_at_a_time = self.delete_lock.lock();
        self.flush_barrier(timeout)?;
        let mut outcome = DeleteOutcome::default();
        let mut retired: Vec<std::path::PathBuf> = Vec::new();
        for r in &self.regions {
            let Some(manifest) = &r.manifest else {
                continue;
            };
            let region_dir = manifest.region_dir();
            let mut edit = ManifestEdit {
                add: Vec::new(),
                remove: Vec::new(),
            };
            // WAL ranges of the files dropped whole, per partition directory: a tombstone
            // keeps them, or replay after a crash would bring the points back.
            let mut dropped: HashMap<String, (FileMeta, Vec<WalRange>)> = HashMap::new();
            let mut drop_file = |f: &FileMeta| {
                let dir = f.path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
                let e = dropped
                    .entry(dir)
                    .or_insert_with(|| (f.clone(), Vec::new()));
                e.1.extend(f.wal.iter().copied());
            };
            for f in manifest.files().iter().filter(|f| spec.takes_file(f)) {
                if spec.takes_whole(f) {
                    edit.remove.push(f.seq);
                    outcome.files_dropped += 1;
                    outcome.rows_deleted += f.rows;
                    retired.push(region_dir.join(&f.path));
                    drop_file(f);
                    continue;
                }
                let rewrite_seq = manifest.next_file_seq();
                match rewrite(region_dir, f, spec, rewrite_seq, self.row_group_rows)
                    .map_err(|e| format!("rewriting {}: {e}", f.path))?
                {
                    Rewritten::Untouched => {}
                    Rewritten::Empty => {
                        edit.remove.push(f.seq);
                        outcome.files_dropped += 1;
                        outcome.rows_deleted += f.rows;
                        retired.push(region_dir.join(&f.path));
                        drop_file(f);
                    }
                    Rewritten::To(new, deleted) => {
                        edit.remove.push(f.seq);
                        edit.add.push(new);
                        outcome.files_rewritten += 1;
                        outcome.rows_deleted += deleted;
                        retired.push(region_dir.join(&f.path));
                    }
                }
            }
            for (dir, (like, wal)) in dropped {
                if wal.is_empty() {
                    continue;
                }
                let t = write_tombstone(
                    region_dir,
                    &r.name,
                    &dir,
                    &like,
                    wal,
                    manifest.next_file_seq(),
                )
                .map_err(|e| format!("writing a tombstone in {dir}: {e}"))?;
                edit.add.push(t);
            }
            if !edit.remove.is_empty() {
                manifest
                    .commit(edit)
                    .map_err(|e| format!("recording the delete in region {}: {e}", r.name))?;
            }
        }
        if !retired.is_empty() {
            // Queries that took their snapshot before the edit may still read the old
            // files: they go after the longest a query may run.
            let spawned = std::thread::Builder::new()
                .name("meridian-delete-sweep".into())
                .spawn(move || {
                    std::thread::sleep(grace);
                    for p in retired {
                        let _ = std::fs::remove_file(&p);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("old files of a delete stay until the next start: {e}");
            }
        }
        Ok(outcome)
    }

    /// Every hosted shard flushes the blocks it holds now; returns once they are in files.
    fn flush_barrier(&self, timeout: Duration) -> Result<(), String> {
        let mut waits = Vec::new();
        for r in &self.regions {
            for s in &r.shards {
                let (tx, rx) = std::sync::mpsc::channel();
                if s.ctrl.send(Ctrl::FlushBarrier { reply: tx }).is_ok() {
                    waits.push(rx);
                }
            }
        }
        let deadline = std::time::Instant::now() + timeout;
        for w in waits {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if w.recv_timeout(left).is_err() {
                return Err(format!(
                    "the points in memory could not be flushed within {} ms (is the disk full?); nothing was deleted",
                    timeout.as_millis()
                ));
            }
        }
        Ok(())
    }
}

/// A zero-row file carrying the WAL ranges of dropped files of one partition.
fn write_tombstone(
    region_dir: &Path,
    region: &str,
    dir: &str,
    like: &FileMeta,
    wal: Vec<WalRange>,
    seq: u64,
) -> Result<FileMeta, String> {
    use arrow::datatypes::{Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new(
        TIME_COLUMN,
        crate::storage::schema::time_type(),
        false,
    )]));
    let rel = format!("{dir}/{seq:020}.parquet");
    let at = like.partition_start.to_string();
    let kv = vec![
        KeyValue::new(meta::REGION.into(), region.to_string()),
        KeyValue::new(meta::DB.into(), like.db.clone()),
        KeyValue::new(meta::MEASUREMENT.into(), like.measurement.clone()),
        KeyValue::new(meta::MIN_TIME.into(), at.clone()),
        KeyValue::new(meta::MAX_TIME.into(), at),
        KeyValue::new(meta::ROW_COUNT.into(), "0".to_string()),
        KeyValue::new(
            meta::PARTITION_START.into(),
            like.partition_start.to_string(),
        ),
        KeyValue::new(
            meta::WAL.into(),
            serde_json::to_string(&wal).map_err(|e| e.to_string())?,
        ),
        KeyValue::new(
            meta::TOMBSTONE.into(),
            "WAL ranges of files a delete emptied".to_string(),
        ),
    ];
    let props = writer_properties(&schema, 1024, kv, FLUSH_ZSTD_LEVEL, FLUSH_PAGE_ROWS);
    let bytes = write_batches(
        &region_dir.join(&rel),
        schema,
        std::iter::empty(),
        props,
        region_dir,
    )
    .map_err(|e| e.to_string())?;
    Ok(FileMeta {
        seq,
        path: rel,
        db: like.db.clone(),
        measurement: like.measurement.clone(),
        partition_start: like.partition_start,
        min_time: like.partition_start,
        max_time: like.partition_start,
        rows: 0,
        bytes,
        columns: Vec::new(),
        wal,
    })
}

enum Rewritten {
    /// No row matched.
    Untouched,
    /// Every row matched.
    Empty,
    /// The new file and the number of rows deleted.
    To(FileMeta, u64),
}

/// Rewrites one file without the rows the delete takes.
fn rewrite(
    region_dir: &Path,
    f: &FileMeta,
    spec: &DeleteSpec,
    rewrite_seq: u64,
    row_group_rows: usize,
) -> Result<Rewritten, String> {
    let path = region_dir.join(&f.path);
    let open = || -> Result<_, String> {
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())
    };
    let tags: Vec<&str> = f
        .columns
        .iter()
        .filter(|(_, k)| matches!(k, ColumnKind::Tag))
        .map(|(n, _)| n.as_str())
        .collect();
    // First pass: count what goes (nothing: no rewrite).
    let builder = open()?;
    let kv: Vec<KeyValue> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let schema = builder.schema().clone();
    let mut deleted = 0u64;
    let mut kept = 0u64;
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| e.to_string())?;
    for b in reader {
        let b = b.map_err(|e| e.to_string())?;
        let keep = keep_mask(&b, &tags, spec)?;
        let times = time_of(&b)?;
        for (i, k) in keep.iter().enumerate() {
            if k == Some(true) {
                kept += 1;
                min_t = min_t.min(times[i]);
                max_t = max_t.max(times[i]);
            } else {
                deleted += 1;
            }
        }
    }
    if deleted == 0 {
        return Ok(Rewritten::Untouched);
    }
    if kept == 0 {
        return Ok(Rewritten::Empty);
    }
    // Second pass: write the rows kept.
    let rel = rewritten_file_rel(Path::new(&f.path), f.seq, rewrite_seq);
    let new_path = region_dir.join(&rel);
    let kv: Vec<KeyValue> = kv
        .into_iter()
        .map(|k| match k.key.as_str() {
            meta::MIN_TIME => KeyValue::new(k.key, min_t.to_string()),
            meta::MAX_TIME => KeyValue::new(k.key, max_t.to_string()),
            meta::ROW_COUNT => KeyValue::new(k.key, kept.to_string()),
            _ => k,
        })
        .filter(|k| k.key != "ARROW:schema")
        .collect();
    let props = writer_properties(
        &schema,
        row_group_rows,
        kv,
        FLUSH_ZSTD_LEVEL,
        FLUSH_PAGE_ROWS,
    );
    let reader = open()?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| e.to_string())?;
    let err = |e: String| StorageError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    };
    let batches = reader.map(|b| {
        let b = b.map_err(|e| err(e.to_string()))?;
        let keep = keep_mask(&b, &tags, spec).map_err(err)?;
        filter_record_batch(&b, &keep).map_err(|e| err(e.to_string()))
    });
    let bytes =
        write_batches(&new_path, schema, batches, props, region_dir).map_err(|e| e.to_string())?;
    Ok(Rewritten::To(
        FileMeta {
            path: rel.to_string_lossy().replace('\\', "/"),
            min_time: min_t,
            max_time: max_t,
            rows: kept,
            bytes,
            ..f.clone()
        },
        deleted,
    ))
}

fn time_of(b: &RecordBatch) -> Result<Vec<i64>, String> {
    let col = b
        .column_by_name(TIME_COLUMN)
        .ok_or("no time column")?
        .as_primitive_opt::<arrow::datatypes::TimestampNanosecondType>()
        .ok_or("time column of another type")?;
    Ok(col.values().to_vec())
}

/// Per row: true to keep (outside the time range, or a series the delete does not take).
fn keep_mask(b: &RecordBatch, tags: &[&str], spec: &DeleteSpec) -> Result<BooleanArray, String> {
    let times = time_of(b)?;
    let cols: Vec<(&str, arrow::array::ArrayRef)> = tags
        .iter()
        .filter_map(|t| {
            let c = b.column_by_name(t)?;
            cast(c, &DataType::Utf8).ok().map(|c| (*t, c))
        })
        .collect();
    let strs: Vec<(&str, &arrow::array::StringArray)> = cols
        .iter()
        .map(|(n, c)| (*n, c.as_string::<i32>()))
        .collect();
    // Rows are sorted by series: decide once per run of one tag set.
    let mut memo: HashMap<Vec<Option<String>>, bool> = HashMap::new();
    let mut out = Vec::with_capacity(b.num_rows());
    for (row, t) in times.iter().enumerate() {
        if *t < spec.min_time || *t > spec.max_time {
            out.push(true);
            continue;
        }
        let Some(filter) = &spec.series else {
            out.push(false);
            continue;
        };
        let key: Vec<Option<String>> = strs
            .iter()
            .map(|(_, c)| (!c.is_null(row)).then(|| c.value(row).to_string()))
            .collect();
        let takes = match memo.get(&key) {
            Some(v) => *v,
            None => {
                let mut pairs: Vec<(&str, &str)> = strs
                    .iter()
                    .zip(&key)
                    .filter_map(|((n, _), v)| v.as_deref().map(|v| (*n, v)))
                    .collect();
                pairs.sort_unstable();
                let v = filter(&pairs);
                memo.insert(key, v);
                v
            }
        };
        out.push(!takes);
    }
    Ok(BooleanArray::from(out))
}
