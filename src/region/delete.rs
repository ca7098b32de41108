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
//!    when nothing is left; written through the one file writer (staged, then published
//!    durably);
//! 4. one manifest edit per region swaps them (the old files go to `retired`); if a
//!    compactor beside the server replaced one of those files first, the edit is refused
//!    and the region's delete is redone on the new files;
//! 5. the old files are deleted once queries that may still read them are done (the
//!    server's retired-file sweep, after the query timeout; start-up deletes any left).
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

use super::Engine;
use super::shard::Ctrl;
use crate::catalog::manifest::ManifestError;
use crate::catalog::{FileMeta, Manifest, ManifestEdit, WalRange};
use crate::model::TIME_COLUMN;
use crate::storage::packed::StagedPacked;
use crate::storage::parquet::{FLUSH_PAGE_ROWS, FLUSH_ZSTD_LEVEL};
use crate::storage::paths::rewritten_file_rel;
use crate::storage::store::Store;
use crate::storage::writer::{FileSpec, FileWriter, Staged, discard, stage_tombstone};

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
    /// the rows in memory. The replaced files are retired: the server deletes them once no
    /// query can read them (`keep_manifests_current`).
    pub fn delete(
        self: &Arc<Self>,
        spec: &DeleteSpec,
        timeout: Duration,
    ) -> Result<DeleteOutcome, String> {
        let _one_at_a_time = self.delete_lock.lock();
        self.flush_barrier(timeout)?;
        let mut outcome = DeleteOutcome::default();
        for r in &self.regions {
            let Some(manifest) = &r.manifest else {
                continue;
            };
            // A compactor beside the server may replace a file between the read and the
            // commit: the commit is refused then, and the delete is redone on the new files.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match delete_in_region(
                    manifest,
                    &r.name,
                    spec,
                    self.row_group_rows,
                    self.time_unit,
                    r.log.is_some(),
                )? {
                    Ok(o) => {
                        outcome.files_rewritten += o.files_rewritten;
                        outcome.files_dropped += o.files_dropped;
                        outcome.rows_deleted += o.rows_deleted;
                        break;
                    }
                    Err(conflict) if attempt < 5 => {
                        tracing::info!(region = %r.name, "delete redone: {conflict}");
                    }
                    Err(conflict) => {
                        return Err(format!(
                            "recording the delete in region {}: {conflict}",
                            r.name
                        ));
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Every hosted shard flushes the blocks it holds now; returns once they are in files.
    /// On shared storage, once the log mark also covers them: a node starting later reads
    /// the log from the mark, and must not bring the deleted points back into memory.
    fn flush_barrier(&self, timeout: Duration) -> Result<(), String> {
        let marks: Vec<(&str, &super::shared::SharedLog, u64)> = self
            .regions
            .iter()
            .filter_map(|r| r.log.as_deref().map(|l| (&*r.name, l, l.committed())))
            .collect();
        // A node without the lease cannot flush: it asks the holder to (cluster::lease).
        for (_, log, target) in &marks {
            log.want_through(*target);
        }
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
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match w.recv_timeout(left.min(Duration::from_millis(200))) {
                    Ok(()) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                        // Shared storage: what a shard froze may reach past what was asked
                        // of the holder at first (rows applied meanwhile).
                        for (_, log, _) in &marks {
                            log.want_through(log.committed());
                        }
                    }
                    Err(_) => {
                        return Err(format!(
                            "the points in memory could not be flushed within {} ms (is the disk full, or does no node hold a shared region's flush lease?); nothing was deleted",
                            timeout.as_millis()
                        ));
                    }
                }
            }
        }
        for (region, log, target) in marks {
            while log.through() < target {
                if std::time::Instant::now() >= deadline {
                    return Err(format!(
                        "region {region}'s log was not marked as in files up to message {target} within {} ms (does a node hold its flush lease?); nothing was deleted",
                        timeout.as_millis()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

/// One region's part of a delete, committed as one manifest edit. The outer error stops
/// the delete; the inner one is a commit another writer's edit refused (redo it).
fn delete_in_region(
    manifest: &Manifest,
    region: &str,
    spec: &DeleteSpec,
    row_group_rows: usize,
    time_unit: crate::config::FileTimeUnit,
    shared: bool,
) -> Result<Result<DeleteOutcome, String>, String> {
    let store = manifest.store();
    let mut outcome = DeleteOutcome::default();
    let mut edit = ManifestEdit::default();
    let mut staged: Vec<Staged> = Vec::new();
    // WAL ranges of the files dropped whole, per partition directory: a tombstone keeps
    // them, or replay after a crash would bring the points back.
    // (The tombstone records the entries it stands for, so that a manifest rebuilt from the
    // footers leaves them out.)
    type Dropped = HashMap<String, (FileMeta, Vec<WalRange>, Vec<String>)>;
    let mut dropped: Dropped = HashMap::new();
    // Packed files some of whose rows go: each is rewritten whole (below), so that no
    // packed file ever holds rows its entries no longer list.
    let mut packed_files: std::collections::BTreeSet<String> = Default::default();
    let mut packed_staged: Vec<StagedPacked> = Vec::new();
    fn drop_file(dropped: &mut Dropped, f: &FileMeta) {
        // A packed file's entry: its measurement's own directory, where the tombstone goes.
        let own = crate::storage::paths::unpacked_rel(&f.path, &f.db, &f.measurement);
        let dir = own.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        let e = dropped
            .entry(dir)
            .or_insert_with(|| (f.clone(), Vec::new(), Vec::new()));
        e.1.extend(f.wal.iter().copied());
        e.2.push(f.id().into_owned());
    }
    let result = (|| -> Result<(), String> {
        let files = manifest.files();
        for f in files.iter().filter(|f| spec.takes_file(f)) {
            if f.packed.is_some() {
                packed_files.insert(f.path.clone());
                continue;
            }
            if spec.takes_whole(f) {
                edit.remove.push(f.id().into_owned());
                outcome.files_dropped += 1;
                outcome.rows_deleted += f.rows;
                drop_file(&mut dropped, f);
                continue;
            }
            let rewrite_seq = manifest.next_file_seq();
            match rewrite(
                store,
                region,
                f,
                spec,
                rewrite_seq,
                row_group_rows,
                time_unit,
            )
            .map_err(|e| format!("rewriting {}: {e}", f.path))?
            {
                Rewritten::Untouched => {}
                Rewritten::Empty => {
                    edit.remove.push(f.id().into_owned());
                    outcome.files_dropped += 1;
                    outcome.rows_deleted += f.rows;
                    drop_file(&mut dropped, f);
                }
                Rewritten::To(new, deleted) => {
                    let new = *new;
                    edit.remove.push(f.id().into_owned());
                    edit.add.push(new.meta.clone());
                    staged.push(new);
                    outcome.files_rewritten += 1;
                    outcome.rows_deleted += deleted;
                }
            }
        }
        for path in &packed_files {
            let entries: Vec<&FileMeta> = files.iter().filter(|f| f.path == *path).collect();
            let Some(repacked) = repack(manifest, region, &entries, spec, time_unit)
                .map_err(|e| format!("rewriting {path}: {e}"))?
            else {
                continue;
            };
            edit.remove
                .extend(entries.iter().map(|f| f.id().into_owned()));
            outcome.rows_deleted += repacked.deleted;
            outcome.files_dropped += repacked.dropped.len() as u64;
            outcome.files_rewritten += u64::from(repacked.staged.is_some());
            for f in &repacked.dropped {
                drop_file(&mut dropped, f);
            }
            if let Some(s) = repacked.staged {
                edit.add.extend(s.metas.iter().cloned());
                packed_staged.push(s);
            }
        }
        for (dir, (like, wal, replaces)) in dropped {
            // Shared storage has no WAL to replay (the log is read from the mark, past
            // the deleted rows): no tombstone, whose seq would outrank the holder's files.
            if wal.is_empty() || shared {
                continue;
            }
            let seq = manifest.next_file_seq();
            let spec = FileSpec {
                region,
                db: &like.db,
                measurement: &like.measurement,
                partition_start: like.partition_start,
                row_group_rows: 1024,
                zstd_level: FLUSH_ZSTD_LEVEL,
                page_rows: FLUSH_PAGE_ROWS,
                time_unit,
                column_index: true,
            };
            let rel = format!("{dir}/{seq:020}.parquet");
            let t = stage_tombstone(store, rel, seq, &spec, wal, replaces)
                .map_err(|e| format!("writing a tombstone in {dir}: {e}"))?;
            edit.add.push(t.meta.clone());
            staged.push(t);
        }
        Ok(())
    })();
    let mut all: Vec<(std::path::PathBuf, String)> = staged
        .iter()
        .map(|s| (s.tmp.clone(), s.meta.path.clone()))
        .collect();
    all.extend(
        packed_staged
            .iter()
            .map(|s| (s.tmp.clone(), s.path.clone())),
    );
    let discard_all = || {
        for (tmp, _) in &all {
            let _ = std::fs::remove_file(tmp);
        }
    };
    if let Err(e) = result {
        discard_all();
        return Err(e);
    }
    if edit.remove.is_empty() {
        discard_all();
        return Ok(Ok(outcome));
    }
    store
        .publish(&all)
        .map_err(|e| format!("writing the rewritten files: {e}"))?;
    match manifest.commit(edit) {
        Ok(_) => Ok(Ok(outcome)),
        Err(ManifestError::Conflict(why)) => {
            // Nothing of this attempt is live: its files go now.
            let paths: Vec<String> = all.into_iter().map(|(_, p)| p).collect();
            let _ = store.delete(&paths);
            Ok(Err(why))
        }
        Err(e) => Err(format!("recording the delete in region {region}: {e}")),
    }
}

/// A packed file rewritten without the rows a delete takes.
struct Repacked {
    /// Its measurements that have rows left, packed again (a new file), if any has.
    staged: Option<StagedPacked>,
    /// Its entries that lost every row.
    dropped: Vec<FileMeta>,
    deleted: u64,
}

/// Rewrites the packed file of `entries` (its live entries) without the rows `spec` takes:
/// the measurements with rows left go into a new packed file under their seqs; `None`
/// when no row goes. The WAL ranges of an entry left without rows are kept by a tombstone
/// in its measurement's directory (the caller's, from `dropped`): WAL replay skips a record
/// only for the measurement whose file lists it.
fn repack(
    manifest: &Manifest,
    region: &str,
    entries: &[&FileMeta],
    spec: &DeleteSpec,
    time_unit: crate::config::FileTimeUnit,
) -> Result<Option<Repacked>, String> {
    use crate::storage::packed;
    let store = manifest.store();
    let Some(first) = entries.first() else {
        return Ok(None);
    };
    let bytes = store
        .read(&first.path)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the file is gone".to_string())?;
    let path = store.key_of(&first.path);
    let mut kept: Vec<(&FileMeta, RecordBatch)> = Vec::new();
    let mut dropped: Vec<FileMeta> = Vec::new();
    let mut deleted = 0u64;
    for f in entries {
        let entry = store.file(f).packed_entry();
        let (schema, batches) =
            crate::storage::parquet::decode_file(bytes.clone(), &path, entry.as_ref())
                .map_err(|e| e.to_string())?;
        let batch = arrow::compute::concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
        let batch = if spec.takes_file(f) {
            let keep = keep_mask(&batch, &f.tag_names(), spec)?;
            filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?
        } else {
            batch
        };
        deleted += f.rows.saturating_sub(batch.num_rows() as u64);
        if batch.num_rows() == 0 {
            dropped.push((*f).clone());
        } else {
            kept.push((f, batch));
        }
    }
    if deleted == 0 {
        return Ok(None);
    }
    let staged = if kept.is_empty() {
        None
    } else {
        let parts: Vec<packed::Part<'_>> = kept
            .iter()
            .map(|(f, batch)| packed::Part {
                rows: batch,
                measurement: &f.measurement,
                seq: f.seq,
                wal: f.wal.clone(),
                replaces: vec![f.id().into_owned()],
            })
            .collect();
        let dir = first.path.rsplit_once('/').map_or("", |(d, _)| d);
        let rel = format!("{dir}/{:020}.parquet", manifest.next_file_seq());
        let pspec = packed::PackSpec {
            region,
            db: &first.db,
            partition_start: first.partition_start,
            zstd_level: FLUSH_ZSTD_LEVEL,
            page_rows: FLUSH_PAGE_ROWS,
            time_unit,
            column_index: true,
        };
        Some(packed::stage_packed(store, rel, &parts, &pspec).map_err(|e| e.to_string())?)
    };
    Ok(Some(Repacked {
        staged,
        dropped,
        deleted,
    }))
}

enum Rewritten {
    /// No row matched.
    Untouched,
    /// Every row matched.
    Empty,
    /// The new file (staged) and the number of rows deleted.
    To(Box<Staged>, u64),
}

/// Rewrites one file without the rows the delete takes (staged, not yet published).
fn rewrite(
    store: &Store,
    region: &str,
    f: &FileMeta,
    spec: &DeleteSpec,
    rewrite_seq: u64,
    row_group_rows: usize,
    time_unit: crate::config::FileTimeUnit,
) -> Result<Rewritten, String> {
    let bytes = store
        .read(&f.path)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the file is gone".to_string())?;
    // The footer is read once; each pass builds its reader from it.
    let entry = store.file(f).packed_entry();
    let meta = crate::storage::parquet::reader_metadata(&bytes, Default::default(), entry.as_ref())
        .map_err(|e| e.to_string())?;
    let open = || -> Result<_, String> {
        Ok(
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
                .with_batch_size(64 * 1024),
        )
    };
    let tags = f.tag_names();
    // First pass: count what goes (nothing: no rewrite).
    let builder = open()?;
    // Rows are read with `time` in nanoseconds, whatever the file stores.
    let schema =
        crate::storage::schema::batch_in_ns(RecordBatch::new_empty(builder.schema().clone()))
            .map_err(|e| e.to_string())?
            .schema();
    // Columns the file stores as scaled integers (its decimal columns): the rows kept are
    // some of its rows, so they fit the same scales.
    let scales = crate::storage::scaled::of_schema(builder.schema());
    let mut deleted = 0u64;
    let mut kept = 0u64;
    for b in builder.build().map_err(|e| e.to_string())? {
        let b = b
            .and_then(crate::storage::schema::batch_in_ns)
            .map_err(|e| e.to_string())?;
        let keep = keep_mask(&b, &tags, spec)?;
        let k = keep.true_count() as u64;
        kept += k;
        deleted += b.num_rows() as u64 - k;
    }
    if deleted == 0 {
        return Ok(Rewritten::Untouched);
    }
    if kept == 0 {
        return Ok(Rewritten::Empty);
    }
    // Second pass: write the rows kept, under the same seq (it orders the file among
    // overlapping ones) and a name of its own.
    let rel = rewritten_file_rel(Path::new(&f.path), f.seq, rewrite_seq)
        .to_string_lossy()
        .replace('\\', "/");
    let fspec = FileSpec {
        region,
        db: &f.db,
        measurement: &f.measurement,
        partition_start: f.partition_start,
        row_group_rows,
        zstd_level: FLUSH_ZSTD_LEVEL,
        page_rows: FLUSH_PAGE_ROWS,
        time_unit,
        // A rewrite may be of a compacted file: it keeps what compaction writes.
        column_index: true,
    };
    let layout = crate::storage::writer::Layout {
        scales,
        encodings: Vec::new(),
        series_pages: Vec::new(),
        levels: Vec::new(),
        aligned: Vec::new(),
    };
    let mut w =
        FileWriter::create(store, rel, f.seq, schema, &fspec, layout).map_err(|e| e.to_string())?;
    w.replacing(vec![f.id().into_owned()]);
    let written = (|| -> Result<(), String> {
        for b in open()?.build().map_err(|e| e.to_string())? {
            let b = b
                .and_then(crate::storage::schema::batch_in_ns)
                .map_err(|e| e.to_string())?;
            let keep = keep_mask(&b, &tags, spec)?;
            let b = filter_record_batch(&b, &keep).map_err(|e| e.to_string())?;
            w.write(&b).map_err(|e| e.to_string())?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = w.finish(Vec::new()).map(|s| discard(&[&s]));
        return Err(e);
    }
    let staged = w.finish(f.wal.clone()).map_err(|e| e.to_string())?;
    Ok(Rewritten::To(Box::new(staged), deleted))
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
