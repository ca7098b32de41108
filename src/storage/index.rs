//! Per-file series index: the Parquet metadata (footer and page index) and the runs of
//! rows that share one tag set, built once per file on first use and kept in a bounded
//! cache.
//!
//! Meridian files are sorted by tag set, then time, so every series is one contiguous run
//! of rows. Knowing the runs lets a query
//! - evaluate tag predicates once per series instead of once per row, and skip a file
//!   without opening it when no series matches;
//! - read only the matching rows (a Parquet row selection: with the page index, pages
//!   holding none of them are not even decompressed);
//! - never decode the tag columns: they are rebuilt from the runs;
//! - skip whole series whose group is already answered (`first`/`last`).
//!
//! Files are immutable once in the manifest (a compaction writes new files under new
//! names), so an entry stays valid as long as its file exists; an entry is keyed by path,
//! manifest seq and size so a different file under an old name is never confused with it.
//! The index costs no disk space: nothing here is persisted.

use std::collections::HashMap;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use arrow::record_batch::RecordBatchReader;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::file::metadata::PageIndexPolicy;

use super::pages::{PageCache, PageKey};
use super::prefetch::{Prefetched, chunk_ranges, needed_ranges, page_locations, pages_holding};
use super::schema::{batch_in_ns, time_in_ns};
use super::store::FileRef;
use crate::grouped::Grouped;
use crate::model::TIME_COLUMN;
use crate::storage::schema::{is_tag, tag_indices};

/// Key of a tag value that is absent (null) in a run.
const ABSENT: u32 = u32::MAX;

/// Rows per batch when building an index.
const BATCH_ROWS: usize = 64 * 1024;

/// Largest batch when reading selected rows (they are read as one batch when they fit).
const MAX_BATCH_ROWS: usize = 4 << 20;

/// A read is selective, and goes through the [`PageCache`], when it selects at most one
/// row in this many of the file: one series' hour, not a scan of every series (which would
/// only push the pages of selective reads out of the cache).
const SELECTIVE: u64 = 4;

/// Where a page lies: its cache key and its rows (file rows `from..to`).
struct PagePlace {
    key: PageKey,
    from: u64,
    to: u64,
}

/// One tag column of a file: its distinct values.
#[derive(Debug)]
pub struct TagColumn {
    pub name: String,
    pub values: Vec<String>,
    /// (hash of the value, value id), sorted: a value's id is found by binary search over
    /// one contiguous array and one string comparison. (A binary search comparing the
    /// strings themselves touches a `String` and its heap bytes at every step: ~15% of a
    /// one-host query's CPU over 36 files, measured.)
    by_hash: Vec<(u64, u32)>,
}

/// The hash of a tag value in [`TagColumn::by_hash`] (fixed within the process).
fn value_hash(value: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

impl TagColumn {
    /// The id of `value` (an index into `values`), if the file holds it.
    pub fn id_of(&self, value: &str) -> Option<usize> {
        let h = value_hash(value);
        let i = self.by_hash.partition_point(|&(x, _)| x < h);
        self.by_hash[i..]
            .iter()
            .take_while(|&&(x, _)| x == h)
            .map(|&(_, id)| id as usize)
            .find(|&id| self.values[id] == value)
    }
}

/// A run of rows with one tag set, sorted by time.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub start: u64,
    pub len: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// The index of one file.
#[derive(Debug)]
pub struct FileIndex {
    pub meta: ArrowReaderMetadata,
    pub tags: Vec<TagColumn>,
    pub runs: Vec<Run>,
    /// `runs.len() × tags.len()`: the value of each tag in each run (index into
    /// `tags[t].values`, or [`ABSENT`]).
    keys: Vec<u32>,
    /// First row of each row group, and the total row count at the end.
    rg_starts: Vec<u64>,
    /// Whether the times of every run strictly increase (true of every file Meridian
    /// writes: sorted by tag set and time, deduplicated), so a run can be cut into time
    /// buckets by binary search.
    pub time_sorted: bool,
    /// Per tag column, the runs holding each value (`offsets[id]..offsets[id + 1]` of
    /// `runs`, ascending): a `k=v` query visits only the runs with that value.
    postings: Vec<Grouped>,
    /// Approximate heap size, for the cache budget.
    pub(super) bytes: usize,
    /// Unique among every index built by this process: keys the file's decoded pages in
    /// the [`PageCache`].
    id: u64,
}

/// Ids of built indexes, never reused.
static NEXT_INDEX_ID: AtomicU64 = AtomicU64::new(1);

/// The `time` column of a batch read from a Meridian file or block.
pub fn time_column(batch: &RecordBatch) -> Result<&TimestampNanosecondArray, String> {
    batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| "no nanosecond timestamp time column".to_string())
}

fn read_err(path: &FileRef, e: &dyn std::fmt::Display) -> String {
    format!("reading {}: {e}", path.key().display())
}

/// Opens a file and reads `wanted` ranges of it up front.
fn fetch(path: &FileRef, wanted: Vec<(u64, u64)>) -> Result<Prefetched, String> {
    let file = path
        .store
        .open(&path.rel, Some(path.len))
        .map_err(|e| read_err(path, &e))?;
    Prefetched::fetch(file, wanted).map_err(|e| read_err(path, &e))
}

/// The footer, page index and such are read with the file's last bytes, in one request.
const TAIL_BYTES: u64 = 64 * 1024;

/// Maps the values of one batch's tag column to file-wide value ids.
fn batch_keys(
    col: &ArrayRef,
    ids: &mut HashMap<String, u32>,
    values: &mut Vec<String>,
    out: &mut Vec<u32>,
) -> Result<(), String> {
    out.clear();
    let mut id_of = |v: &str| -> u32 {
        if let Some(id) = ids.get(v) {
            return *id;
        }
        let id = values.len() as u32;
        values.push(v.to_string());
        ids.insert(v.to_string(), id);
        id
    };
    match col.data_type() {
        DataType::Dictionary(k, _) if **k == DataType::Int32 => {
            let d: &DictionaryArray<Int32Type> = col.as_dictionary();
            let strings = d
                .values()
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or("tag dictionary values are not strings")?;
            let local: Vec<u32> = (0..strings.len())
                .map(|i| {
                    if strings.is_valid(i) {
                        id_of(strings.value(i))
                    } else {
                        ABSENT
                    }
                })
                .collect();
            for i in 0..d.len() {
                out.push(if d.is_valid(i) {
                    local
                        .get(d.keys().value(i) as usize)
                        .copied()
                        .ok_or("tag dictionary key out of range")?
                } else {
                    ABSENT
                });
            }
        }
        DataType::Utf8 => {
            let s = col.as_string::<i32>();
            for i in 0..s.len() {
                out.push(if s.is_valid(i) {
                    id_of(s.value(i))
                } else {
                    ABSENT
                });
            }
        }
        other => return Err(format!("tag column has unexpected type {other}")),
    }
    Ok(())
}

/// Opens a file and loads its footer and page index, checking what the reader would
/// otherwise assert on; also returns the first row of each row group (and the total).
fn open_meta(path: &FileRef) -> Result<(Prefetched, ArrowReaderMetadata, Vec<u64>), String> {
    let reader = path
        .store
        .open(&path.rel, Some(path.len))
        .map_err(|e| read_err(path, &e))?;
    let file_len = reader.len();
    let tail = file_len.min(TAIL_BYTES);
    let file =
        Prefetched::fetch(reader, vec![(file_len - tail, tail)]).map_err(|e| read_err(path, &e))?;
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    // Float fields stored as scaled integers decode as 32- or 64-bit decimals: a half or a
    // quarter of the memory of the default 128-bit ones, and a cheaper conversion to floats.
    let meta = super::parquet::query_reader_metadata(&file, options, path.packed_entry().as_ref())
        .map_err(|e| read_err(path, &e))?;
    let parquet = meta.metadata().clone();
    // The footer is read from disk: check what the reader would otherwise assert on
    // (negative or out-of-file column chunk ranges) and what is summed here.
    let mut rg_starts = Vec::with_capacity(parquet.num_row_groups() + 1);
    let mut total = 0u64;
    for rg in parquet.row_groups() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let ok = start >= 0
                && c.compressed_size() >= 0
                && (start as u64)
                    .checked_add(c.compressed_size() as u64)
                    .is_some_and(|end| end <= file_len);
            if !ok {
                return Err(read_err(
                    path,
                    &"a column chunk lies outside the file (corrupt footer)",
                ));
            }
        }
        rg_starts.push(total);
        total = u64::try_from(rg.num_rows())
            .ok()
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| read_err(path, &"invalid row counts in the footer"))?;
    }
    rg_starts.push(total);
    Ok((file, meta, rg_starts))
}

/// Finds the series runs of a file from its rows (time and tag columns), batch by batch.
struct RunsBuilder {
    tags: Vec<TagColumn>,
    ids: Vec<HashMap<String, u32>>,
    runs: Vec<Run>,
    keys: Vec<u32>,
    current: Vec<u32>,
    per_tag: Vec<Vec<u32>>,
    row: u64,
    time_sorted: bool,
}

impl RunsBuilder {
    fn new(meta: &ArrowReaderMetadata) -> RunsBuilder {
        let schema = meta.schema();
        let tags: Vec<TagColumn> = tag_indices(schema)
            .iter()
            .map(|i| TagColumn {
                name: schema.field(*i).name().clone(),
                values: Vec::new(),
                by_hash: Vec::new(),
            })
            .collect();
        let n = tags.len();
        RunsBuilder {
            tags,
            ids: vec![HashMap::new(); n],
            runs: Vec::new(),
            keys: Vec::new(),
            current: Vec::new(),
            per_tag: vec![Vec::new(); n],
            row: 0,
            time_sorted: true,
        }
    }

    fn push(&mut self, batch: &RecordBatch) -> Result<(), String> {
        for (t, tag) in self.tags.iter_mut().enumerate() {
            let col = batch
                .column_by_name(&tag.name)
                .ok_or("tag column missing")?;
            batch_keys(col, &mut self.ids[t], &mut tag.values, &mut self.per_tag[t])?;
        }
        let time = time_column(batch)?;
        for i in 0..batch.num_rows() {
            let t = time.value(i);
            let same = !self.runs.is_empty()
                && self
                    .per_tag
                    .iter()
                    .zip(&self.current)
                    .all(|(k, c)| k[i] == *c);
            if same && let Some(r) = self.runs.last_mut() {
                self.time_sorted &= t > r.max_time;
                r.len += 1;
                r.min_time = r.min_time.min(t);
                r.max_time = r.max_time.max(t);
            } else {
                self.current.clear();
                self.current.extend(self.per_tag.iter().map(|k| k[i]));
                self.keys.extend_from_slice(&self.current);
                self.runs.push(Run {
                    start: self.row,
                    len: 1,
                    min_time: t,
                    max_time: t,
                });
            }
            self.row += 1;
        }
        Ok(())
    }

    fn finish(
        mut self,
        path: &FileRef,
        meta: ArrowReaderMetadata,
        rg_starts: Vec<u64>,
    ) -> Result<FileIndex, String> {
        let total = rg_starts.last().copied().unwrap_or(0);
        if self.row != total {
            return Err(read_err(
                path,
                &format!("read {} rows, the footer says {total}", self.row),
            ));
        }
        for tag in &mut self.tags {
            let mut by_hash: Vec<(u64, u32)> = (0..tag.values.len() as u32)
                .map(|id| (value_hash(&tag.values[id as usize]), id))
                .collect();
            by_hash.sort_unstable();
            tag.by_hash = by_hash;
        }
        let stride = self.tags.len();
        let postings: Vec<Grouped> = self
            .tags
            .iter()
            .enumerate()
            .map(|(t, tag)| {
                let ids = self.keys.iter().skip(t).step_by(stride.max(1)).copied();
                Grouped::new(tag.values.len(), ids)
            })
            .collect();
        let bytes = meta.metadata().memory_size()
            + self.runs.len() * std::mem::size_of::<Run>()
            + self.keys.len() * 4
            + postings.iter().map(Grouped::heap_bytes).sum::<usize>()
            + self
                .tags
                .iter()
                .flat_map(|t| t.values.iter())
                .map(|v| v.len() + 40)
                .sum::<usize>()
            + 256;
        Ok(FileIndex {
            meta,
            tags: self.tags,
            runs: self.runs,
            keys: self.keys,
            rg_starts,
            time_sorted: self.time_sorted,
            postings,
            bytes,
            id: NEXT_INDEX_ID.fetch_add(1, Ordering::Relaxed),
        })
    }
}

impl FileIndex {
    /// Reads the footer, the page index, the time and the tag columns of a file.
    pub fn build(path: &FileRef) -> Result<FileIndex, String> {
        let (_, meta, rg_starts) = open_meta(path)?;
        let schema = meta.schema().clone();
        let tag_idx = tag_indices(&schema);
        let time_idx = schema
            .index_of(TIME_COLUMN)
            .map_err(|_| read_err(path, &"no time column"))?;
        let mut roots = tag_idx.clone();
        roots.push(time_idx);
        // Every chunk of those columns (flat schema: a root is its leaf), fetched together
        // (concurrently from a bucket).
        let file = fetch(path, chunk_ranges(meta.metadata(), &roots))?;
        let mask = ProjectionMask::roots(meta.metadata().file_metadata().schema_descr(), roots);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| read_err(path, &e))?;
        let mut runs = RunsBuilder::new(&meta);
        for batch in reader {
            let batch = batch
                .and_then(batch_in_ns)
                .map_err(|e| read_err(path, &e))?;
            runs.push(&batch).map_err(|e| read_err(path, &e))?;
        }
        runs.finish(path, meta, rg_starts)
    }

    /// The index of a file just written from `rows` (its rows, in file order: time and tag
    /// columns are used): only the footer and page index are read back from the file.
    pub fn from_written(path: &FileRef, rows: &RecordBatch) -> Result<FileIndex, String> {
        /// Rows pushed at a time: the builder keeps a value id per row and tag column for
        /// what it is given (12 tags of a 120,000-row flush were 6 MB at once). A push maps
        /// every value of a tag column's dictionary (a slice keeps them all), so rows with
        /// many series go at once, as before.
        const PUSH_ROWS: usize = 8192;
        let (_, meta, rg_starts) = open_meta(path)?;
        let mut runs = RunsBuilder::new(&meta);
        let n = rows.num_rows();
        let dictionary = rows
            .columns()
            .iter()
            .filter_map(|c| c.as_any_dictionary_opt())
            .map(|d| d.values().len())
            .max()
            .unwrap_or(0);
        let step = if dictionary > PUSH_ROWS / 8 {
            n.max(1)
        } else {
            PUSH_ROWS
        };
        for from in (0..n).step_by(step) {
            runs.push(&rows.slice(from, step.min(n - from)))
                .map_err(|e| read_err(path, &e))?;
        }
        runs.finish(path, meta, rg_starts)
    }

    /// The value id of tag column `t` in run `r` (an index into `tags[t].values`; `None`:
    /// absent).
    pub fn key(&self, r: usize, t: usize) -> Option<usize> {
        let k = self.keys[r * self.tags.len() + t];
        (k != ABSENT).then_some(k as usize)
    }

    /// The runs whose tag column `t` has value id `id`, ascending.
    pub fn runs_with(&self, t: usize, id: usize) -> &[u32] {
        self.postings.get(t).map_or(&[], |p| p.get(id))
    }

    /// The value of tag column `t` in run `r` (`None`: absent).
    pub fn tag_value(&self, r: usize, t: usize) -> Option<&str> {
        self.key(r, t).map(|k| self.tags[t].values[k].as_str())
    }

    /// The group key of run `r`: its values of the tags at `positions` ("" when absent or
    /// when the file lacks the tag).
    pub fn group_key(&self, r: usize, positions: &[Option<usize>]) -> Vec<String> {
        positions
            .iter()
            .map(|t| {
                t.and_then(|t| self.tag_value(r, t))
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// The position of a tag column by name.
    pub fn tag_position(&self, name: &str) -> Option<usize> {
        self.tags.iter().position(|t| t.name == name)
    }

    /// Reads the rows of `runs` (ascending run indexes), in run order: time (if `with_time`)
    /// and the non-tag columns that `want` accepts. Also returns how many row groups were
    /// skipped.
    pub fn read_rows(
        &self,
        path: &FileRef,
        runs: &[usize],
        with_time: bool,
        want: impl Fn(&str) -> bool,
        pages: &PageCache,
    ) -> Result<(RecordBatch, usize), String> {
        // `read_rows_in_batches` hands over at least one batch (an empty one for no rows).
        let mut batches = Vec::new();
        let skipped =
            self.read_rows_in_batches(path, runs, with_time, want, pages, MAX_BATCH_ROWS, |b| {
                batches.push(b);
                Ok(())
            })?;
        let data = match batches.len() {
            0 => return Err(read_err(path, &"no batch read")),
            1 => batches.swap_remove(0),
            _ => arrow::compute::concat_batches(&batches[0].schema(), &batches)
                .map_err(|e| read_err(path, &e))?,
        };
        Ok((data, skipped))
    }

    /// [`FileIndex::read_rows`] a batch of at most `batch_rows` rows at a time, each handed to
    /// `each` in order, so that a scan of a whole file never holds it decoded at once (and
    /// reuses small buffers instead of mapping fresh memory for every file).
    #[allow(clippy::too_many_arguments)]
    pub fn read_rows_in_batches(
        &self,
        path: &FileRef,
        runs: &[usize],
        with_time: bool,
        want: impl Fn(&str) -> bool,
        pages: &PageCache,
        batch_rows: usize,
        mut each: impl FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<usize, String> {
        let schema = self.meta.schema().clone();
        let mut read_cols: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                !is_tag(f.data_type())
                    && if f.name() == TIME_COLUMN {
                        with_time
                    } else {
                        want(f.name())
                    }
            })
            .map(|(i, _)| i)
            .collect();
        // At least one column, so that batches carry the row count.
        if read_cols.is_empty()
            && let Ok(t) = schema.index_of(TIME_COLUMN)
        {
            read_cols.push(t);
        }
        // The rows wanted, as merged ranges of file rows.
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut expected = 0u64;
        for &r in runs {
            let run = self.runs[r];
            expected += run.len;
            match ranges.last_mut() {
                Some(last) if last.1 == run.start => last.1 += run.len,
                _ => ranges.push((run.start, run.start + run.len)),
            }
        }
        // Row groups touched, and the selection relative to their concatenation.
        let mut groups: Vec<usize> = Vec::new();
        let mut selectors: Vec<RowSelector> = Vec::new();
        let mut next = 0;
        for g in 0..self.rg_starts.len().saturating_sub(1) {
            let (gs, ge) = (self.rg_starts[g], self.rg_starts[g + 1]);
            let mut cursor = gs;
            let mut local = Vec::new();
            while let Some(&(s, e)) = ranges.get(next) {
                if s >= ge {
                    break;
                }
                let (s, e2) = (s.max(gs), e.min(ge));
                if s < e2 {
                    if s > cursor {
                        local.push(RowSelector::skip((s - cursor) as usize));
                    }
                    local.push(RowSelector::select((e2 - s) as usize));
                    cursor = e2;
                }
                if e > ge {
                    break;
                }
                next += 1;
            }
            if !local.is_empty() {
                if cursor < ge {
                    local.push(RowSelector::skip((ge - cursor) as usize));
                }
                groups.push(g);
                selectors.extend(local);
            }
        }
        let groups_skipped = self.rg_starts.len().saturating_sub(1) - groups.len();
        let parquet_schema = self.meta.metadata().file_metadata().schema_descr();
        let mask = ProjectionMask::roots(parquet_schema, read_cols.iter().copied());
        // The pages holding selected rows of the projected columns, read up front.
        let leaves: Vec<usize> = read_cols
            .iter()
            .filter_map(|&i| {
                let name = schema.field(i).name();
                (0..parquet_schema.num_columns()).find(|&c| parquet_schema.column(c).name() == name)
            })
            .collect();
        // A selective read goes through the decoded page cache.
        let total = self.rg_starts.last().copied().unwrap_or(0);
        if pages.enabled()
            && expected.saturating_mul(SELECTIVE) <= total
            && leaves.len() == read_cols.len()
            && let Some(data) =
                self.read_through_pages(path, &read_cols, &leaves, &groups, &ranges, pages)?
        {
            if data.num_rows() as u64 != expected {
                return Err(read_err(
                    path,
                    &format!(
                        "selected {expected} rows of the series index, read {}",
                        data.num_rows()
                    ),
                ));
            }
            each(data)?;
            return Ok(groups_skipped);
        }
        let wanted = needed_ranges(
            self.meta.metadata(),
            &self.rg_starts,
            &groups,
            &leaves,
            &ranges,
        );
        let file = fetch(path, wanted)?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
            .with_projection(mask)
            .with_row_groups(groups)
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size((expected as usize).clamp(1, batch_rows.max(1)))
            .build()
            .map_err(|e| read_err(path, &e))?;
        let mut read = 0u64;
        let mut any = false;
        let empty_schema = reader.schema();
        for b in reader {
            let b = b.and_then(batch_in_ns).map_err(|e| read_err(path, &e))?;
            read += b.num_rows() as u64;
            any = true;
            each(b)?;
        }
        if read != expected {
            return Err(read_err(
                path,
                &format!("selected {expected} rows of the series index, read {read}"),
            ));
        }
        if !any {
            each(
                batch_in_ns(RecordBatch::new_empty(empty_schema))
                    .map_err(|e| read_err(path, &e))?,
            )?;
        }
        Ok(groups_skipped)
    }

    /// [`FileIndex::read_rows`] through the page cache: each column of `read_cols` (root
    /// indexes; `leaves` their Parquet leaf columns) is cut out of the decoded pages that hold
    /// the selected `ranges` (sorted disjoint file rows in `groups`); pages not cached are
    /// read whole, one pass per column, and cached. `None` when the file has no offset index
    /// (then pages cannot be located and the caller reads directly).
    fn read_through_pages(
        &self,
        path: &FileRef,
        read_cols: &[usize],
        leaves: &[usize],
        groups: &[usize],
        ranges: &[(u64, u64)],
        cache: &PageCache,
    ) -> Result<Option<RecordBatch>, String> {
        let meta = self.meta.metadata();
        // Every column's pages holding selected rows, in file order; located before any is
        // read, so that a column chunk without an offset index sends the whole read to the
        // caller's direct path before anything was read twice.
        let mut needed_by_col: Vec<Vec<PagePlace>> = Vec::with_capacity(leaves.len());
        for &leaf in leaves {
            let mut needed: Vec<PagePlace> = Vec::new();
            for &g in groups {
                let (Some(&gs), Some(&ge)) = (self.rg_starts.get(g), self.rg_starts.get(g + 1))
                else {
                    continue;
                };
                let Some(locs) = page_locations(meta, g, leaf) else {
                    return Ok(None);
                };
                for (p, from, to, _) in pages_holding(locs, gs, ge, ranges) {
                    needed.push(PagePlace {
                        key: PageKey {
                            file: self.id,
                            column: leaf,
                            row_group: g,
                            page: p,
                        },
                        from,
                        to,
                    });
                }
            }
            needed_by_col.push(needed);
        }
        let schema = self.meta.schema();
        let mut fields: Vec<Field> = Vec::with_capacity(read_cols.len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(read_cols.len());
        for ((&col, &leaf), needed) in read_cols.iter().zip(leaves).zip(needed_by_col) {
            let mut arrays: Vec<Option<ArrayRef>> =
                needed.iter().map(|n| cache.get(&n.key)).collect();
            let missing: Vec<&PagePlace> = needed
                .iter()
                .zip(&arrays)
                .filter(|(_, a)| a.is_none())
                .map(|(n, _)| n)
                .collect();
            if !missing.is_empty() {
                let mut read = self.read_pages(path, col, leaf, &missing)?.into_iter();
                for (n, a) in needed.iter().zip(arrays.iter_mut()) {
                    if a.is_none() {
                        let page = read
                            .next()
                            .ok_or_else(|| read_err(path, &"fewer pages read than asked"))?;
                        *a = Some(cache.insert(n.key, page.as_ref()));
                    }
                }
            }
            // The selected rows, sliced out of the pages.
            let mut slices: Vec<ArrayRef> = Vec::new();
            let mut pi = 0;
            for &(s, e) in ranges {
                let mut at = s;
                while at < e {
                    while needed.get(pi).is_some_and(|n| n.to <= at) {
                        pi += 1;
                    }
                    let (Some(n), Some(Some(page))) = (needed.get(pi), arrays.get(pi)) else {
                        return Err(read_err(path, &"no page holds a selected row"));
                    };
                    let end = e.min(n.to);
                    // Checked before subtracting: a corrupt page index must give an error.
                    if at < n.from || (end - n.from) as usize > page.len() {
                        return Err(read_err(
                            path,
                            &"a page holds fewer rows than its index says",
                        ));
                    }
                    let (off, len) = ((at - n.from) as usize, (end - at) as usize);
                    slices.push(page.slice(off, len));
                    at = end;
                }
            }
            let field = schema.field(col);
            let column = match slices.len() {
                0 => time_in_ns(arrow::array::new_empty_array(field.data_type()))
                    .map_err(|e| read_err(path, &e))?,
                1 => slices.swap_remove(0),
                _ => {
                    let refs: Vec<&dyn Array> = slices.iter().map(|a| a.as_ref()).collect();
                    arrow::compute::concat(&refs).map_err(|e| read_err(path, &e))?
                }
            };
            // `time` is in nanoseconds whatever the file stores.
            fields.push(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(column.data_type().clone()),
            );
            columns.push(column);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| read_err(path, &e))?;
        Ok(Some(batch))
    }

    /// Reads the pages `places` (file order) of one column whole, one array per page.
    fn read_pages(
        &self,
        path: &FileRef,
        col: usize,
        leaf: usize,
        places: &[&PagePlace],
    ) -> Result<Vec<ArrayRef>, String> {
        let mut groups: Vec<usize> = Vec::new();
        let mut selectors: Vec<RowSelector> = Vec::new();
        let mut rows: Vec<(u64, u64)> = Vec::new();
        let mut cursor = 0u64;
        for (i, n) in places.iter().enumerate() {
            let g = n.key.row_group;
            let (Some(&group_start), Some(&group_end)) =
                (self.rg_starts.get(g), self.rg_starts.get(g + 1))
            else {
                return Err(read_err(path, &"a page of a row group the file lacks"));
            };
            if groups.last() != Some(&g) {
                groups.push(g);
                cursor = group_start;
            }
            if n.from > cursor {
                selectors.push(RowSelector::skip((n.from - cursor) as usize));
            }
            selectors.push(RowSelector::select((n.to - n.from) as usize));
            rows.push((n.from, n.to));
            cursor = n.to;
            let group_ends = places
                .get(i + 1)
                .is_none_or(|next| next.key.row_group != n.key.row_group);
            if group_ends && cursor < group_end {
                selectors.push(RowSelector::skip((group_end - cursor) as usize));
            }
        }
        let total: u64 = rows.iter().map(|(a, b)| b - a).sum();
        let wanted = needed_ranges(
            self.meta.metadata(),
            &self.rg_starts,
            &groups,
            &[leaf],
            &rows,
        );
        let file = fetch(path, wanted)?;
        let parquet_schema = self.meta.metadata().file_metadata().schema_descr();
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
            .with_projection(ProjectionMask::roots(parquet_schema, [col]))
            .with_row_groups(groups)
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size((total as usize).clamp(1, MAX_BATCH_ROWS))
            .build()
            .map_err(|e| read_err(path, &e))?;
        let mut parts: Vec<ArrayRef> = Vec::new();
        for b in reader {
            let b = b.map_err(|e| read_err(path, &e))?;
            if b.num_columns() != 1 {
                return Err(read_err(path, &"expected one column"));
            }
            parts.push(time_in_ns(b.column(0).clone()).map_err(|e| read_err(path, &e))?);
        }
        let all = match parts.len() {
            1 => parts.swap_remove(0),
            _ => {
                let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                arrow::compute::concat(&refs).map_err(|e| read_err(path, &e))?
            }
        };
        if all.len() as u64 != total {
            return Err(read_err(
                path,
                &format!("pages of {total} rows, read {}", all.len()),
            ));
        }
        let mut out = Vec::with_capacity(places.len());
        let mut off = 0usize;
        for (from, to) in rows {
            let n = (to - from) as usize;
            out.push(all.slice(off, n));
            off += n;
        }
        Ok(out)
    }

    /// Rows read by [`FileIndex::read_rows`] with every tag column rebuilt from the runs, in
    /// the file's column order (the shape of a batch read whole from the file).
    pub fn with_tags(&self, data: &RecordBatch, runs: &[usize]) -> Result<RecordBatch, String> {
        let schema = self.meta.schema().clone();
        let expected = data.num_rows();
        let err = |e: &dyn std::fmt::Display| format!("rebuilding tag columns: {e}");
        // Output: the file's column order; tags rebuilt from the runs.
        let mut fields: Vec<Field> = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for f in schema.fields() {
            if is_tag(f.data_type()) {
                let Some(t) = self.tag_position(f.name()) else {
                    continue;
                };
                let mut keys: Vec<Option<i32>> = Vec::with_capacity(expected);
                for &r in runs {
                    let v = self.key(r, t).map(|k| k as i32);
                    keys.extend(std::iter::repeat_n(v, self.runs[r].len as usize));
                }
                let values: ArrayRef = Arc::new(StringArray::from_iter_values(
                    self.tags[t].values.iter().map(String::as_str),
                ));
                let dict = DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), values)
                    .map_err(|e| err(&e))?;
                fields.push(Field::new(f.name(), dict.data_type().clone(), true));
                columns.push(Arc::new(dict));
            } else if let Some(col) = data.column_by_name(f.name()) {
                // The read rows' type (`time` in nanoseconds whatever the file stores).
                fields.push(f.as_ref().clone().with_data_type(col.data_type().clone()));
                columns.push(col.clone());
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| err(&e))
    }
}

/// Tests: a batch shaped like a Meridian file's rows: `time`, the tag columns `tags` (name,
/// value per row; `None`: absent), then one Int64 field `v`.
#[cfg(test)]
pub(crate) fn test_batch(
    times: Vec<i64>,
    tags: &[(&str, Vec<Option<&str>>)],
    v: Vec<i64>,
) -> RecordBatch {
    use crate::storage::schema::{tag_type, time_type};
    use arrow::array::{Int64Array, TimestampNanosecondArray};
    let mut fields = vec![Field::new(TIME_COLUMN, time_type(), false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(
        TimestampNanosecondArray::from(times).with_timezone("UTC"),
    )];
    for (name, values) in tags {
        let dict: DictionaryArray<Int32Type> = values.iter().copied().collect();
        fields.push(Field::new(*name, tag_type(), true));
        columns.push(Arc::new(dict));
    }
    fields.push(Field::new("v", DataType::Int64, true));
    columns.push(Arc::new(Int64Array::from(v)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// Tests: writes `batch` to `dir/f.parquet` as file 1 of db `d`, measurement `m`, and
/// returns its path and manifest entry.
#[cfg(test)]
pub(crate) fn write_test_file(
    dir: &std::path::Path,
    batch: &RecordBatch,
    props: parquet::file::properties::WriterProperties,
) -> (FileRef, crate::storage::file_meta::FileMeta) {
    let path = dir.join("f.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let meta = crate::storage::file_meta::FileMeta {
        seq: 1,
        path: "f.parquet".into(),
        db: "d".into(),
        measurement: "m".into(),
        partition_start: 0,
        min_time: 0,
        max_time: 0,
        rows: batch.num_rows() as u64,
        bytes,
        columns: Vec::new(),
        wal: Vec::new(),
        packed: None,
    };
    let file = crate::storage::store::Store::local(dir).file(&meta);
    (file, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::storage::cache::IndexCache;
    use crate::storage::file_meta::FileMeta;
    use crate::storage::parquet::writer_properties;
    use std::path::Path;

    /// Series runs of these lengths (host `h{i}`, the third without the tag), times 0.. per
    /// run, `v` = row number; row groups of 7 rows so runs straddle them.
    fn file(dir: &Path, lens: &[usize]) -> (FileRef, FileMeta) {
        file_with(dir, lens, |schema| {
            writer_properties(schema, 7, Vec::new(), 1, 20_000, &[])
        })
    }

    fn file_with(
        dir: &Path,
        lens: &[usize],
        props: impl Fn(&Schema) -> parquet::file::properties::WriterProperties,
    ) -> (FileRef, FileMeta) {
        let (mut hosts, mut times, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (s, len) in lens.iter().enumerate() {
            for i in 0..*len {
                hosts.push((s != 2).then(|| format!("h{s}")));
                times.push(i as i64 * 10);
                vs.push(vs.len() as i64);
            }
        }
        let hosts: Vec<Option<&str>> = hosts.iter().map(|h| h.as_deref()).collect();
        let batch = test_batch(times, &[("host", hosts)], vs);
        write_test_file(dir, &batch, props(&batch.schema()))
    }

    #[test]
    fn runs_and_selected_rows_across_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let lens = [5, 9, 3, 1, 12];
        let (path, meta) = file(dir.path(), &lens);
        let cache = IndexCache::new(1 << 30, 1 << 30);
        let idx = cache.get(&path, &meta).unwrap();
        assert!(idx.time_sorted);
        let got: Vec<(u64, u64, i64, i64)> = idx
            .runs
            .iter()
            .map(|r| (r.start, r.len, r.min_time, r.max_time))
            .collect();
        let mut start = 0;
        let want: Vec<(u64, u64, i64, i64)> = lens
            .iter()
            .map(|&l| {
                let r = (start, l as u64, 0, (l as i64 - 1) * 10);
                start += l as u64;
                r
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(idx.tag_value(2, 0), None, "run 2 lacks the tag");
        for (id, v) in idx.tags[0].values.iter().enumerate() {
            let want: Vec<u32> = (0..idx.runs.len() as u32)
                .filter(|&r| idx.tag_value(r as usize, 0) == Some(v.as_str()))
                .collect();
            assert_eq!(idx.runs_with(0, id), want.as_slice(), "{v}");
        }
        assert!(idx.runs_with(0, 99).is_empty() && idx.runs_with(5, 0).is_empty());
        assert_eq!(idx.tag_value(4, 0), Some("h4"));
        let host = &idx.tags[0];
        for v in ["h0", "h1", "h3", "h4"] {
            assert_eq!(host.id_of(v).map(|id| host.values[id].as_str()), Some(v));
        }
        for v in ["h2", "", "h", "h40", "zz"] {
            assert_eq!(host.id_of(v), None, "{v}");
        }
        // A second lookup is served from the cache.
        assert!(Arc::ptr_eq(&idx, &cache.get(&path, &meta).unwrap()));
        // Callers that miss at the same time share one build.
        let fresh = IndexCache::new(1 << 30, 0);
        let all: Vec<Arc<FileIndex>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| fresh.get(&path, &meta).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(all.iter().all(|i| Arc::ptr_eq(i, &all[0])));
        assert_eq!(fresh.usage().0, 1);
        assert_eq!(fresh.builds_in_progress(), 0);

        for runs in [
            vec![1, 3, 4],
            vec![0],
            vec![2, 3],
            vec![0, 1, 2, 3, 4],
            vec![4],
        ] {
            let (data, _) = idx
                .read_rows(&path, &runs, true, |_| true, cache.pages())
                .unwrap();
            let want_v: Vec<i64> = runs
                .iter()
                .flat_map(|&r| {
                    let s = idx.runs[r].start as i64;
                    s..s + idx.runs[r].len as i64
                })
                .collect();
            let v = data
                .column_by_name("v")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>();
            assert_eq!(v.values().to_vec(), want_v, "runs {runs:?}");
            let full = idx.with_tags(&data, &runs).unwrap();
            let host = full.column_by_name("host").unwrap();
            let want_h: Vec<Option<String>> = runs
                .iter()
                .flat_map(|&r| {
                    std::iter::repeat_n((r != 2).then(|| format!("h{r}")), idx.runs[r].len as usize)
                })
                .collect();
            let d = host.as_dictionary::<Int32Type>();
            let vals = d.values().as_string::<i32>();
            let got_h: Vec<Option<String>> = (0..d.len())
                .map(|i| {
                    d.is_valid(i)
                        .then(|| vals.value(d.keys().value(i) as usize).to_string())
                })
                .collect();
            assert_eq!(got_h, want_h, "runs {runs:?}");
        }
        // Only the fields asked for are read.
        let (data, _) = idx
            .read_rows(&path, &[0], true, |_| false, cache.pages())
            .unwrap();
        assert_eq!(data.num_columns(), 1);
        let (data, _) = idx
            .read_rows(&path, &[1, 4], false, |n| n == "v", cache.pages())
            .unwrap();
        assert_eq!(data.num_columns(), 1);
        assert_eq!(data.num_rows(), 21);
        // Nothing asked: the time column still carries the row count.
        let (data, _) = idx
            .read_rows(&path, &[1, 4], false, |_| false, cache.pages())
            .unwrap();
        assert_eq!((data.num_columns(), data.num_rows()), (1, 21));
    }

    /// The index made from the rows a flush wrote equals the index read from the file; runs
    /// longer than the rows pushed at a time continue across pushes.
    #[test]
    fn index_from_written_rows_equals_index_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = file_with(dir.path(), &[5, 9_000, 3, 1, 12_000], |schema| {
            writer_properties(schema, 5_000, Vec::new(), 1, 20_000, &[])
        });
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path.key()).unwrap())
                .unwrap()
                .build()
                .unwrap();
        let schema = reader.schema();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let rows = arrow::compute::concat_batches(&schema, &batches).unwrap();
        let read = FileIndex::build(&path).unwrap();
        let made = FileIndex::from_written(&path, &rows).unwrap();
        let runs = |i: &FileIndex| {
            i.runs
                .iter()
                .map(|r| (r.start, r.len, r.min_time, r.max_time))
                .collect::<Vec<_>>()
        };
        assert_eq!(runs(&made), runs(&read));
        assert_eq!(made.keys, read.keys);
        assert_eq!(made.rg_starts, read.rg_starts);
        assert_eq!(made.time_sorted, read.time_sorted);
        let tags = |i: &FileIndex| {
            i.tags
                .iter()
                .map(|t| (t.name.clone(), t.values.clone(), t.by_hash.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(tags(&made), tags(&read));
        assert_ne!(made.id, read.id);
        // Rows that are not the file's are refused.
        let short = rows.slice(0, 10);
        assert!(FileIndex::from_written(&path, &short).is_err());
    }

    /// Reads through the page cache (pages of 2-3 rows, row groups of 13, every subset of
    /// runs, cold and warm, with a budget that holds everything and one that holds almost
    /// nothing) give the rows a direct read gives.
    #[test]
    fn page_cache_reads_equal_direct_reads() {
        let dir = tempfile::tempdir().unwrap();
        let lens = [5, 9, 3, 1, 12, 4, 2, 7, 6, 3, 8, 1, 5, 9, 2, 11, 3, 6];
        let (path, meta) = file_with(dir.path(), &lens, |schema| {
            let _ = schema;
            parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .set_max_row_group_row_count(Some(13))
                .set_data_page_row_count_limit(3)
                .set_write_batch_size(2)
                .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
                .set_column_dictionary_enabled("v".into(), false)
                .set_column_encoding("v".into(), parquet::basic::Encoding::DELTA_BINARY_PACKED)
                .build()
        });
        let direct = IndexCache::new(1 << 30, 0);
        let idx = direct.get(&path, &meta).unwrap();
        let pages_of_v = idx.meta.metadata().offset_index().unwrap()[0][2]
            .page_locations()
            .len();
        assert!(pages_of_v >= 4, "{pages_of_v} pages in the first row group");
        let roomy = PageCache::new(1 << 30);
        let tiny = PageCache::new(4096);
        let n = idx.runs.len();
        let total: u64 = lens.iter().map(|l| *l as u64).sum();
        let mut through_cache = 0;
        for pick in 1u32..(1 << n) {
            if pick % 997 != 1 && pick.count_ones() > 2 {
                continue;
            }
            let runs: Vec<usize> = (0..n).filter(|r| pick & (1 << r) != 0).collect();
            let rows: u64 = runs.iter().map(|&r| idx.runs[r].len).sum();
            through_cache += usize::from(rows * SELECTIVE <= total);
            for with_time in [true, false] {
                let want = idx.read_rows(&path, &runs, with_time, |_| true, direct.pages());
                let want = want.unwrap().0;
                for cache in [&roomy, &roomy, &tiny] {
                    let (got, _) = idx
                        .read_rows(&path, &runs, with_time, |_| true, cache)
                        .unwrap();
                    assert_eq!(got, want, "runs {runs:?}");
                }
            }
        }
        assert!(through_cache > 100, "{through_cache} selective reads");
        let u = roomy.usage();
        assert!(u.hits > u.misses && u.pages > 0, "{u:?}");
        assert!(tiny.usage().bytes <= 4096);
        assert_eq!(direct.pages().usage().pages, 0);
    }
}
