//! The one data-file writer: flush, deletes and compaction all write through it, so every
//! file has the same encodings and the same footer, built here and nowhere else.
//!
//! A file is written in three steps:
//! 1. [`FileWriter::create`] → [`FileWriter::write`]… → [`FileWriter::finish`]: encoded
//!    into the store's staging file, the footer completed with the rows' time range, row
//!    count, partition and WAL ranges; the result is a [`Staged`] file with its manifest
//!    entry.
//! 2. [`publish`]: the staged files made durable and visible under their names together
//!    (one sync for many on a local disk, concurrent uploads to a bucket).
//! 3. The caller records them in the manifest. A crash before that leaves files no
//!    manifest lists (swept at start-up) and nothing lost: their rows are still in the WAL
//!    or in the files they were to replace.

use std::fs::{self, File};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, TimestampNanosecondArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;

use super::file_meta::{FileMeta, WalRange};
use super::paged::{PagedWriter, series_runs};
use super::parquet::{Result, StorageError, finish_properties, writer_properties};
use super::scaled;
use super::schema::{batch_in_unit, columns_of, meta, time_type};
use super::store::Store;
use crate::config::FileTimeUnit;
use crate::model::{ColumnKind, TIME_COLUMN};

/// What a file holds and how to encode it.
#[derive(Debug, Clone)]
pub struct FileSpec<'a> {
    pub region: &'a str,
    pub db: &'a str,
    pub measurement: &'a str,
    pub partition_start: i64,
    pub row_group_rows: usize,
    pub zstd_level: i32,
    pub page_rows: usize,
    /// How `time` is stored (`[storage] time_unit`).
    pub time_unit: FileTimeUnit,
    /// Page-level min/max statistics (the Parquet column index), for other engines' page
    /// pruning. Meridian reads only the offset index (page locations), which every file
    /// has; the server's flushes leave the column index out (files `meridian-compact`
    /// rewrites anyway), compaction writes it.
    pub column_index: bool,
}

/// How a file stores its columns beyond their Meridian types, chosen from the rows it will
/// hold: float fields as scaled integers ([`scaled`]), and encodings and series pages tried
/// on the data ([`super::parquet::trial_encodings`]).
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub scales: Vec<scaled::Scaled>,
    pub encodings: Vec<(String, parquet::basic::Encoding)>,
    /// Columns whose data pages end at series boundaries ([`super::paged`]).
    pub series_pages: Vec<String>,
    /// Columns compressed at another zstd level than the file's.
    pub levels: Vec<(String, i32)>,
    /// Integer columns whose DELTA_BINARY_PACKED pages are packed at aligned widths
    /// ([`super::aligned`]).
    pub aligned: Vec<String>,
}

/// The rows of a file to write, column by column: a batch, or a block's sorted rows whose
/// field columns are made when asked (`region::block::SortedRows`).
pub trait Columns {
    fn schema(&self) -> SchemaRef;
    fn num_rows(&self) -> usize;
    /// Column `i` of the schema.
    fn column_at(&self, i: usize) -> std::result::Result<ArrayRef, ArrowError>;

    /// Rows `range` of column `i` (a batch slices it; sorted rows make only those).
    fn column_range(
        &self,
        i: usize,
        range: Range<usize>,
    ) -> std::result::Result<ArrayRef, ArrowError> {
        Ok(self.column_at(i)?.slice(range.start, range.len()))
    }

    /// Nulls in column `i`.
    fn null_count(&self, i: usize) -> std::result::Result<usize, ArrowError> {
        Ok(self.column_at(i)?.null_count())
    }

    /// The runs of rows of one series each ([`series_runs`] over every tag column), when
    /// known without comparing the tag columns row by row.
    fn known_series_runs(&self) -> Option<Vec<Range<usize>>> {
        None
    }

    /// The scale float column `i` is stored at ([`scaled::choose_column`] on the whole
    /// column), when known without making the column: `Some(None)` for not scaled.
    fn known_scale(&self, _i: usize) -> Option<Option<scaled::Scaled>> {
        None
    }
}

impl Columns for RecordBatch {
    fn schema(&self) -> SchemaRef {
        RecordBatch::schema(self)
    }

    fn num_rows(&self) -> usize {
        RecordBatch::num_rows(self)
    }

    fn column_at(&self, i: usize) -> std::result::Result<ArrayRef, ArrowError> {
        self.columns()
            .get(i)
            .cloned()
            .ok_or_else(|| ArrowError::InvalidArgumentError(format!("no column {i}")))
    }
}

/// The columns `indices` of `rows` as one batch.
fn project(rows: &dyn Columns, indices: &[usize]) -> std::result::Result<RecordBatch, ArrowError> {
    let schema = rows.schema().project(indices)?;
    let columns = indices
        .iter()
        .map(|i| rows.column_at(*i))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(schema), columns, &options)
}

impl Layout {
    /// The scales of `batch`'s float columns, and each integer column's encoding, series
    /// pages and zstd level tried as `spec` will write the file (flush and compaction; a
    /// delete's rewrite keeps the file's scales).
    pub fn tried(batch: &RecordBatch, spec: &FileSpec<'_>) -> Layout {
        Layout::tried_columns(batch, spec)
    }

    /// [`tried`](Self::tried) over rows given column by column: a float column whose scale
    /// the rows do not know ([`Columns::known_scale`]) is asked for whole, one at a time;
    /// the trial gets only the middle rows of each.
    pub fn tried_columns(rows: &dyn Columns, spec: &FileSpec<'_>) -> Layout {
        let schema = rows.schema();
        let n = rows.num_rows();
        let (from, len) = super::parquet::trial_span(n);
        let mut scales = Vec::new();
        let mut sample = Vec::with_capacity(schema.fields().len());
        for (i, f) in schema.fields().iter().enumerate() {
            let float = *f.data_type() == arrow::datatypes::DataType::Float64;
            let known = if float { rows.known_scale(i) } else { None };
            let middle = if float && known.is_none() {
                let Ok(column) = rows.column_at(i) else {
                    return Layout::default();
                };
                scales.extend(scaled::choose_column(f, &column));
                // The middle rows of the column already gathered, copied: the whole
                // column is let go before the next one is gathered.
                arrow::compute::concat(&[column.slice(from, len).as_ref()])
            } else {
                scales.extend(known.flatten());
                rows.column_range(i, from..from + len)
            };
            let Ok(middle) = middle else {
                return Layout::default();
            };
            sample.push(middle);
        }
        let stored_schema = scaled::stored_schema(&schema, &scales);
        // Only the rows the trial encodes are converted.
        let trial = RecordBatch::try_new(schema.clone(), sample)
            .and_then(|sample| scaled::to_stored(&sample, &scales, &stored_schema));
        match trial {
            Ok(stored) => {
                let mut trial = super::parquet::trial_encodings(
                    &stored,
                    spec.zstd_level,
                    spec.page_rows,
                    spec.column_index,
                );
                let tried_pages = std::mem::take(&mut trial.series_pages);
                let fit = !tried_pages.is_empty() && series_pages_fit(rows);
                trial.series_pages = tried_pages
                    .iter()
                    .filter(|c| {
                        fit && schema
                            .index_of(c)
                            .ok()
                            .and_then(|i| rows.null_count(i).ok())
                            == Some(0)
                    })
                    .cloned()
                    .collect();
                // Aligned widths were measured with the series pages: a column that loses
                // them keeps the parquet crate's packing (what the trial measured without).
                trial
                    .aligned
                    .retain(|c| !tried_pages.contains(c) || trial.series_pages.contains(c));
                Layout {
                    scales,
                    encodings: trial.encodings,
                    series_pages: trial.series_pages,
                    levels: trial.levels,
                    aligned: trial.aligned,
                }
            }
            // Not expected (the scales come from these rows): the plain layout, never a
            // file that cannot be written.
            Err(_) => Layout::default(),
        }
    }
}

/// Fewest rows a series holds on average in a file whose columns may be paged by series:
/// the trial sees only the middle of the rows, and a page costs tens of bytes whatever it
/// holds, so many short series elsewhere in the file would cost more than the trial gained.
const MIN_SERIES_ROWS: usize = 64;

/// Whether `batch`'s series are long enough, on average, for a page each
/// ([`MIN_SERIES_ROWS`]). Columns paged by series must also hold no nulls (the parquet crate
/// would write an all-null run a page per row; see [`super::paged::PagedWriter`]).
fn series_pages_fit(rows: &dyn Columns) -> bool {
    match all_runs(rows) {
        Ok(runs) => !runs.is_empty() && rows.num_rows() / runs.len() >= MIN_SERIES_ROWS,
        Err(_) => false,
    }
}

/// The series runs of `rows` by all its tag columns.
fn all_runs(rows: &dyn Columns) -> parquet::errors::Result<Vec<Range<usize>>> {
    match rows.known_series_runs() {
        Some(runs) => Ok(runs),
        None => runs_of(rows, &super::schema::tag_indices(&rows.schema())),
    }
}

/// The series runs of `rows` ([`series_runs`]) by its tag columns `tags`.
fn runs_of(rows: &dyn Columns, tags: &[usize]) -> parquet::errors::Result<Vec<Range<usize>>> {
    let arrow = |e: ArrowError| ParquetError::General(e.to_string());
    let keys = project(rows, tags).map_err(arrow)?;
    series_runs(&keys, &(0..tags.len()).collect::<Vec<_>>())
}

/// A complete file in staging, not yet visible, with its manifest entry.
#[derive(Debug)]
pub struct Staged {
    pub tmp: PathBuf,
    pub meta: FileMeta,
}

/// Rows converted to their stored form at a time by [`FileWriter::write`].
const CONVERT_ROWS: usize = 65_536;

/// A file being encoded.
pub struct FileWriter {
    rel: String,
    seq: u64,
    tmp: PathBuf,
    writer: PagedWriter<File>,
    /// The tag columns' positions, when some column is paged by series (their runs are
    /// found as rows are written).
    series_tags: Option<Vec<usize>>,
    columns: Vec<(String, ColumnKind)>,
    db: String,
    measurement: String,
    partition_start: i64,
    time_unit: FileTimeUnit,
    /// Float columns stored as scaled integers, and the schema they are stored in.
    scales: Vec<scaled::Scaled>,
    stored: SchemaRef,
    rows: u64,
    min: i64,
    max: i64,
    /// The entries whose rows this file replaces ([`meta::REPLACES`]).
    replaces: Vec<String>,
}

fn pq_err(
    path: &std::path::Path,
) -> impl FnOnce(parquet::errors::ParquetError) -> StorageError + '_ {
    move |source| StorageError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn schema_err(path: &std::path::Path, why: String) -> StorageError {
    StorageError::Arrow {
        path: path.to_path_buf(),
        source: arrow::error::ArrowError::SchemaError(why),
    }
}

impl FileWriter {
    /// Starts file `seq` at `rel` of `store` with `schema` (a Meridian file schema), its
    /// columns stored as `layout` says (every row written must fit it: choose it from the
    /// rows, [`Layout::tried`]).
    pub fn create(
        store: &Store,
        rel: String,
        seq: u64,
        schema: SchemaRef,
        spec: &FileSpec<'_>,
        layout: Layout,
    ) -> Result<FileWriter> {
        let Layout {
            scales,
            encodings,
            series_pages,
            levels,
            aligned,
        } = layout;
        let tmp = store.staging_path(&rel)?;
        let columns = columns_of(&schema).map_err(|e| schema_err(&tmp, e))?;
        let tags: Vec<&str> = columns
            .iter()
            .filter(|(_, k)| *k == ColumnKind::Tag)
            .map(|(n, _)| n.as_str())
            .collect();
        let mut kv = vec![
            KeyValue::new(meta::REGION.into(), spec.region.to_string()),
            KeyValue::new(meta::DB.into(), spec.db.to_string()),
            KeyValue::new(meta::MEASUREMENT.into(), spec.measurement.to_string()),
            KeyValue::new(
                meta::TAG_COLUMNS.into(),
                serde_json::to_string(&tags).map_err(|e| schema_err(&tmp, e.to_string()))?,
            ),
        ];
        let scales: Vec<scaled::Scaled> = scales
            .into_iter()
            .filter(|c| {
                schema
                    .field_with_name(&c.name)
                    .is_ok_and(|f| *f.data_type() == arrow::datatypes::DataType::Float64)
            })
            .collect();
        if !scales.is_empty() {
            kv.push(KeyValue::new(
                scaled::SCALED_FLOATS.into(),
                scaled::footer(&scales),
            ));
        }
        let stored = scaled::stored_schema(&schema, &scales);
        let props = writer_properties(
            &stored,
            spec.row_group_rows,
            kv,
            spec.zstd_level,
            spec.page_rows,
            &encodings,
        );
        let props = finish_properties(props, spec.column_index, &series_pages, &levels);
        let schema = match spec.time_unit {
            FileTimeUnit::Nanosecond => stored.clone(),
            unit => batch_in_unit(&RecordBatch::new_empty(stored.clone()), unit)
                .map_err(|e| schema_err(&tmp, e.to_string()))?
                .schema(),
        };
        let series_pages: Vec<String> = series_pages
            .into_iter()
            .filter(|c| schema.field_with_name(c).is_ok())
            .collect();
        let series_tags = (!series_pages.is_empty()).then(|| super::schema::tag_indices(&schema));
        let file = super::store::create_file(&tmp).map_err(super::parquet::io_err(&tmp))?;
        let writer = match PagedWriter::try_new(file, schema, props, &series_pages, &aligned) {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(pq_err(&tmp)(e));
            }
        };
        Ok(FileWriter {
            rel,
            seq,
            tmp,
            writer,
            series_tags,
            columns,
            db: spec.db.to_string(),
            measurement: spec.measurement.to_string(),
            partition_start: spec.partition_start,
            time_unit: spec.time_unit,
            scales,
            stored,
            rows: 0,
            min: i64::MAX,
            max: i64::MIN,
            replaces: Vec::new(),
        })
    }

    /// Records in the footer the manifest entries (ids) whose rows this file replaces.
    pub fn replacing(&mut self, ids: Vec<String>) {
        self.replaces = ids;
    }

    /// Counts the rows of `batch` and their time range.
    fn count(&mut self, batch: &dyn Columns) -> Result<()> {
        let time = batch
            .schema()
            .index_of(TIME_COLUMN)
            .ok()
            .and_then(|i| batch.column_at(i).ok());
        let time = time
            .as_ref()
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
            .ok_or_else(|| schema_err(&self.tmp, "no Timestamp(ns) time column".into()))?;
        for t in time.values().iter() {
            self.min = self.min.min(*t);
            self.max = self.max.max(*t);
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Writes every row of the file (sorted by tag set then time, in the file's schema) a
    /// column at a time ([`PagedWriter::write_whole`]): one column's encoder and stored form
    /// exist at a time, not every column's.
    pub fn write_whole(&mut self, batch: &dyn Columns) -> Result<()> {
        self.count(batch)?;
        // `series_tags` are every tag column of the file.
        let runs = match &self.series_tags {
            Some(_) => all_runs(batch).map_err(pq_err(&self.tmp))?,
            None => Vec::new(),
        };
        let (scales, stored, unit) = (&self.scales, &self.stored, self.time_unit);
        let schema = batch.schema();
        let arrow = |e: ArrowError| ParquetError::General(e.to_string());
        let mut column = |i: usize, rows: Range<usize>| -> parquet::errors::Result<ArrayRef> {
            let values = batch.column_range(i, rows).map_err(arrow)?;
            if scales.is_empty() && unit == FileTimeUnit::Nanosecond {
                return Ok(values);
            }
            let one = Schema::new(vec![schema.field(i).clone()]);
            let one = RecordBatch::try_new(Arc::new(one), vec![values]).map_err(arrow)?;
            let stored_one = Arc::new(stored.project(&[i]).map_err(arrow)?);
            let out = scaled::to_stored(&one, scales, &stored_one)
                .and_then(|b| batch_in_unit(&b, unit))
                .map_err(arrow)?;
            Ok(out.column(0).clone())
        };
        self.writer
            .write_whole(batch.num_rows(), &runs, &mut column)
            .map_err(pq_err(&self.tmp))
    }

    /// Appends rows (sorted by tag set then time, in the file's schema).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.count(batch)?;
        if self.scales.is_empty() && self.time_unit == FileTimeUnit::Nanosecond {
            return self.put(batch);
        }
        // Converted a slice at a time: a scaled column's stored form takes 16 bytes a value,
        // which for a whole block would be a second copy of it.
        let n = batch.num_rows();
        let mut offset = 0;
        while offset < n {
            let len = CONVERT_ROWS.min(n - offset);
            let stored = scaled::to_stored(&batch.slice(offset, len), &self.scales, &self.stored)
                .and_then(|b| batch_in_unit(&b, self.time_unit))
                .map_err(|e| schema_err(&self.tmp, e.to_string()))?;
            self.put(&stored)?;
            offset += len;
        }
        Ok(())
    }

    /// Encodes rows in their stored form.
    fn put(&mut self, batch: &RecordBatch) -> Result<()> {
        let runs = match &self.series_tags {
            Some(tags) => series_runs(batch, tags).map_err(pq_err(&self.tmp))?,
            None => Vec::new(),
        };
        self.writer.write(batch, &runs).map_err(pq_err(&self.tmp))
    }

    /// Bytes encoded so far (to cut outputs at a target size).
    pub fn bytes_written(&self) -> u64 {
        self.writer.bytes_written() as u64
    }

    /// Completes the footer (time range, rows, partition, `wal`) and the file.
    pub fn finish(self, wal: Vec<WalRange>) -> Result<Staged> {
        let tmp = self.tmp.clone();
        let result = self.finish_inner(wal);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn finish_inner(mut self, wal: Vec<WalRange>) -> Result<Staged> {
        let (min, max) = if self.rows == 0 {
            (self.partition_start, self.partition_start)
        } else {
            (self.min, self.max)
        };
        let wal_json = serde_json::to_string(&wal)
            .map_err(|e| schema_err(&self.tmp, format!("encoding WAL ranges: {e}")))?;
        let mut kv = vec![
            (meta::MIN_TIME, min.to_string()),
            (meta::MAX_TIME, max.to_string()),
            (meta::ROW_COUNT, self.rows.to_string()),
            (meta::PARTITION_START, self.partition_start.to_string()),
            (meta::WAL, wal_json),
            (
                meta::REPLACES,
                serde_json::to_string(&self.replaces).map_err(|e| {
                    schema_err(&self.tmp, format!("encoding the replaced entries: {e}"))
                })?,
            ),
        ];
        if self.rows == 0 {
            kv.push((
                meta::TOMBSTONE,
                "no rows: only the WAL ranges the file's writer covered".to_string(),
            ));
        }
        for (k, v) in kv {
            self.writer
                .append_key_value_metadata(KeyValue::new(k.into(), v));
        }
        let file = self.writer.into_inner().map_err(pq_err(&self.tmp))?;
        let bytes = file
            .metadata()
            .map_err(super::parquet::io_err(&self.tmp))?
            .len();
        Ok(Staged {
            tmp: self.tmp,
            meta: FileMeta {
                seq: self.seq,
                path: self.rel,
                db: self.db,
                measurement: self.measurement,
                partition_start: self.partition_start,
                min_time: min,
                max_time: max,
                rows: self.rows,
                bytes,
                columns: self.columns,
                wal,
                packed: None,
            },
        })
    }
}

/// Writes one whole file to staging.
pub fn stage_file(
    store: &Store,
    rel: String,
    seq: u64,
    batch: &dyn Columns,
    spec: &FileSpec<'_>,
    wal: Vec<WalRange>,
) -> Result<Staged> {
    let layout = Layout::tried_columns(batch, spec);
    let mut w = FileWriter::create(store, rel, seq, batch.schema(), spec, layout)?;
    if let Err(e) = w.write_whole(batch) {
        let _ = fs::remove_file(&w.tmp);
        return Err(e);
    }
    w.finish(wal)
}

/// A zero-row file (only `time`) that carries WAL ranges: what is left of a partition that
/// retention dropped or a delete emptied, so WAL replay keeps skipping those records.
pub fn stage_tombstone(
    store: &Store,
    rel: String,
    seq: u64,
    spec: &FileSpec<'_>,
    wal: Vec<WalRange>,
    replaces: Vec<String>,
) -> Result<Staged> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        TIME_COLUMN,
        time_type(),
        false,
    )]));
    let mut w = FileWriter::create(store, rel, seq, schema, spec, Layout::default())?;
    w.replacing(replaces);
    w.finish(wal)
}

/// Makes staged files durable and visible (step 2).
pub fn publish(store: &Store, staged: &[&Staged]) -> Result<()> {
    let files: Vec<(PathBuf, String)> = staged
        .iter()
        .map(|s| (s.tmp.clone(), s.meta.path.clone()))
        .collect();
    store.publish(&files)
}

/// Removes staged files that will not be published.
pub fn discard(staged: &[&Staged]) {
    for s in staged {
        let _ = fs::remove_file(&s.tmp);
    }
}
