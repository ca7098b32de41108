//! Scanning one region: its snapshot (in-memory chunks + live files) → a [`Partial`].
//!
//! Per partition (time order; newest first for `last`): each file's series index
//! (index.rs, cached) picks the series runs inside the time range that match the tag
//! predicates, and only their rows of time and the requested fields are read (tags are
//! rebuilt from the index); a file with no such run is not opened. In-memory blocks are
//! filtered by series with a roaring bitmap of matching series ids, sorted and
//! deduplicated. Sources of a partition that may hold the same points (overlapping times
//! and ingest shards) are merged last-write-wins first, so a point rewritten later is
//! counted once, with its latest fields. Rows are then filtered by time and predicates and
//! folded into mergeable accumulators.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, RecordBatch, StringArray, UInt32Array,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, UInt64Type};
use roaring::RoaringBitmap;

use super::agg::{Acc, Agg, Value};
use super::budget::OVER_QUERY_MEMORY;
use super::plan::{QuerySpec, TagOp};
use crate::catalog::FileMeta;
use crate::model::TIME_COLUMN;
use crate::region::block::{Chunk, sorted_batch};
use crate::region::{MemSource, RegionSnapshot};
use crate::storage::cache::IndexCache;
use crate::storage::index::{FileIndex, time_column};
use crate::storage::merge::{merge_dedup, merge_dedup_memory};
use crate::storage::schema::is_tag;
use crate::storage::store::FileRef;

/// Group key: the values of the `group_by` tags ("" when absent).
pub type GroupKey = Vec<String>;

/// Aggregates of one region: per group, per bucket, one accumulator per field of `fields`.
#[derive(Debug, Default)]
pub struct AggPartial {
    pub fields: Vec<String>,
    pub groups: HashMap<GroupKey, BTreeMap<i64, Vec<Acc>>>,
    /// (group, bucket) entries in `groups`, counted as they are made.
    pub entries: usize,
}

/// Raw rows of one region: per group, rows (time, values aligned with `columns`).
#[derive(Debug, Default)]
pub struct RawPartial {
    /// Tag columns (not in group_by) then fields.
    pub columns: Vec<String>,
    pub tag_columns: usize,
    pub groups: BTreeMap<GroupKey, Vec<(i64, Vec<Value>)>>,
    pub rows: usize,
    /// Approximate memory of `groups`.
    pub bytes: usize,
}

#[derive(Debug)]
pub enum Partial {
    Agg(AggPartial),
    Raw(RawPartial),
}

impl Partial {
    /// No group: nothing matched.
    pub fn is_empty(&self) -> bool {
        match self {
            Partial::Agg(a) => a.groups.is_empty(),
            Partial::Raw(r) => r.groups.values().all(Vec::is_empty),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct ScanStats {
    pub rows_scanned: u64,
    pub files_read: u64,
    pub files_pruned: u64,
    pub row_groups_pruned: u64,
}

/// One source of rows in a partition, in priority order (later wins).
struct Source {
    data: SourceData,
    min: i64,
    max: i64,
    /// Ingest shards whose rows it may hold (`None`: unknown, may hold any).
    shards: Option<Vec<usize>>,
}

enum SourceData {
    /// A file and the series runs of it the query needs (not read yet).
    File {
        path: FileRef,
        idx: Arc<FileIndex>,
        runs: Vec<usize>,
    },
    /// Rows of in-memory blocks (sorted, deduplicated, filtered by series).
    Mem(RecordBatch),
}

/// Whether aggregating `runs` of a file needs its time column: not when every run lies
/// inside the query range and within one bucket and the aggregate ignores times.
fn needs_times(idx: &FileIndex, runs: &[usize], spec: &QuerySpec) -> bool {
    !matches!(
        spec.agg,
        Agg::Count | Agg::Sum | Agg::Mean | Agg::Min | Agg::Max
    ) || runs.iter().any(|&r| {
        let run = &idx.runs[r];
        run.min_time < spec.lo()
            || run.max_time >= spec.end
            || spec.bucket_of(run.min_time) != spec.bucket_of(run.max_time)
    })
}

fn may_share_points(a: &Source, b: &Source) -> bool {
    let time = a.min <= b.max && b.min <= a.max;
    let shards = match (&a.shards, &b.shards) {
        (Some(x), Some(y)) => x.iter().any(|s| y.contains(s)),
        _ => true,
    };
    time && shards
}

/// Which values of a tag a predicate accepts, within one file.
enum ValueTest {
    /// `k=v`: the id of v in the file, if it holds v (found once, by binary search).
    One(Option<usize>),
    /// Any other operator: a verdict per value id.
    Each(Vec<bool>),
}

impl ValueTest {
    fn accepts(&self, id: usize) -> bool {
        match self {
            ValueTest::One(x) => *x == Some(id),
            ValueTest::Each(v) => v[id],
        }
    }

    fn accepts_any(&self) -> bool {
        match self {
            ValueTest::One(x) => x.is_some(),
            ValueTest::Each(v) => v.contains(&true),
        }
    }
}

/// A tag predicate over one file: the tag's position, its test of values and its verdict
/// for an absent tag; or a constant verdict when the file lacks the tag.
type Verdict = Result<(usize, ValueTest, bool), bool>;

/// The runs of a file that a query needs: inside the time range, matching the tag
/// predicates (evaluated once per distinct value), and not in an already answered group.
fn select_runs(idx: &FileIndex, spec: &QuerySpec, answered: &HashSet<GroupKey>) -> Vec<usize> {
    let verdicts: Vec<Verdict> = spec
        .preds
        .iter()
        .map(|p| match idx.tag_position(&p.key) {
            None => Err(p.matches(None)),
            Some(t) => {
                let tag = &idx.tags[t];
                let test = match &p.op {
                    TagOp::Eq(x) => ValueTest::One(tag.id_of(x)),
                    _ => ValueTest::Each(tag.values.iter().map(|v| p.matches(Some(v))).collect()),
                };
                Ok((t, test, p.matches(None)))
            }
        })
        .collect();
    // A predicate no run can satisfy (no value matches, and an absent tag does not).
    if verdicts.iter().any(|v| match v {
        Ok((_, test, absent)) => !absent && !test.accepts_any(),
        Err(c) => !c,
    }) {
        return Vec::new();
    }
    let group_pos: Vec<Option<usize>> = spec.group_by.iter().map(|g| idx.tag_position(g)).collect();
    // With a `k=v` that an absent tag does not satisfy, only the runs holding v can match.
    let holding: Option<&[u32]> = verdicts.iter().find_map(|v| match v {
        Ok((t, ValueTest::One(id), false)) => Some(id.map_or(&[][..], |id| idx.runs_with(*t, id))),
        _ => None,
    });
    let keep = |r: usize| {
        let run = &idx.runs[r];
        spec.overlaps(run.min_time, run.max_time)
            && verdicts.iter().all(|v| match v {
                Err(c) => *c,
                Ok((t, test, absent)) => idx.key(r, *t).map_or(*absent, |k| test.accepts(k)),
            })
            && (answered.is_empty() || !answered.contains(&idx.group_key(r, &group_pos)))
    };
    match holding {
        Some(runs) => runs
            .iter()
            .map(|&r| r as usize)
            .filter(|&r| keep(r))
            .collect(),
        None => (0..idx.runs.len()).filter(|&r| keep(r)).collect(),
    }
}

/// The values of each field a `count` without grouping, buckets or predicates asks for,
/// from the footer of a file that lies wholly inside the query's range and holds no point
/// another source also holds (no merge): its column chunks' value counts minus their null
/// counts, without reading a page. `None` where the footer cannot answer (a statistic
/// missing, another query shape).
fn footer_counts(
    spec: &QuerySpec,
    idx: &FileIndex,
    runs: &[usize],
    (min, max): (i64, i64),
) -> Option<Vec<(String, u64)>> {
    if spec.agg != Agg::Count
        || spec.every.is_some()
        || !spec.group_by.is_empty()
        || !spec.preds.is_empty()
        || min < spec.lo()
        || max >= spec.end
        || runs.len() != idx.runs.len()
    {
        return None;
    }
    let schema = idx.meta.schema();
    let md = idx.meta.metadata();
    let leaves = md.file_metadata().schema_descr();
    let fields: Vec<String> = match &spec.fields {
        Some(list) => list.clone(),
        None => schema
            .fields()
            .iter()
            .filter(|f| f.name() != TIME_COLUMN && !is_tag(f.data_type()))
            .map(|f| f.name().clone())
            .collect(),
    };
    let mut out = Vec::with_capacity(fields.len());
    for name in fields {
        let Some(leaf) = (0..leaves.num_columns()).find(|i| leaves.column(*i).name() == name)
        else {
            // Asked for, not in this file: none of its values.
            out.push((name, 0));
            continue;
        };
        if is_tag(schema.field_with_name(&name).ok()?.data_type()) {
            return None;
        }
        let mut n = 0u64;
        for rg in md.row_groups() {
            let c = rg.column(leaf);
            let values = u64::try_from(c.num_values()).ok()?;
            if values != u64::try_from(rg.num_rows()).ok()? {
                return None;
            }
            let nulls = c.statistics()?.null_count_opt()?;
            n += values.checked_sub(nulls)?;
        }
        out.push((name, n));
    }
    Some(out)
}

/// Adds [`footer_counts`] to the partial answer, in the one group and bucket a count
/// without grouping or buckets has.
fn fold_counts(spec: &QuerySpec, out: &mut AggPartial, time: i64, counts: &[(String, u64)]) {
    let names: Vec<String> = counts.iter().map(|(n, _)| n.clone()).collect();
    let positions = field_positions(out, &names);
    let nf = out.fields.len();
    let bucket = spec.bucket_of(time);
    let buckets = out.groups.entry(GroupKey::new()).or_default();
    if !buckets.contains_key(&bucket) {
        out.entries += 1;
    }
    let accs = buckets
        .entry(bucket)
        .or_insert_with(|| vec![Acc::default(); nf]);
    for ((_, n), pos) in counts.iter().zip(positions) {
        accs[pos].count += n;
    }
}

/// Groups whose every field (`fields`: those asked for, or with `fields=*` every field a
/// source of the scan has) already has its `first`/`last` value: older (for `last`) or
/// newer (for `first`) partitions cannot change them.
fn answered_groups(spec: &QuerySpec, fields: &[String], partial: &Partial) -> HashSet<GroupKey> {
    let Partial::Agg(a) = partial else {
        return HashSet::new();
    };
    let positions: Vec<Option<usize>> = fields
        .iter()
        .map(|f| a.fields.iter().position(|x| x == f))
        .collect();
    if positions.iter().any(Option::is_none) {
        return HashSet::new();
    }
    a.groups
        .iter()
        .filter(|(_, buckets)| {
            buckets.values().all(|accs| {
                positions.iter().flatten().all(|&p| match spec.agg {
                    Agg::First => accs.get(p).is_some_and(|a| a.first.is_some()),
                    _ => accs.get(p).is_some_and(|a| a.last.is_some()),
                })
            })
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Sorted, deduplicated rows of an in-memory block, filtered by series with a roaring
/// bitmap of the series ids that match the predicates (evaluated once per series).
fn mem_batch(chunks: &[Arc<Chunk>], spec: &QuerySpec) -> Result<Option<RecordBatch>, String> {
    mem_rows(chunks, spec, FEW_SERIES)
}

/// Matching series are "few" when at most one in this many of a block's series match.
const FEW_SERIES: u64 = 8;

/// [`mem_batch`], taking rows by series when at most one series in `few` matches.
fn mem_rows(
    chunks: &[Arc<Chunk>],
    spec: &QuerySpec,
    few: u64,
) -> Result<Option<RecordBatch>, String> {
    let Some(last) = chunks.last() else {
        return Ok(None);
    };
    let mut matching = RoaringBitmap::new();
    for (sid, set) in last.series.iter().enumerate() {
        let ok = spec.preds.iter().all(|p| {
            let v = set
                .iter()
                .find(|(k, _)| k.as_ref() == p.key)
                .map(|(_, v)| v.as_ref());
            p.matches(v)
        });
        if ok {
            matching.insert(sid as u32);
        }
    }
    if matching.is_empty() {
        return Ok(None);
    }
    // Drop rows of non-matching series and outside the range before sorting. A few series
    // of many: their rows are taken through the chunk's rows-by-series index; otherwise
    // every row is tested.
    let all_match = matching.len() as usize == last.series.len();
    let few = matching.len().saturating_mul(few) <= last.series.len() as u64;
    let in_time = |t: i64| t >= spec.lo() && t < spec.end;
    let mut relevant: Vec<Arc<Chunk>> = Vec::new();
    for c in chunks
        .iter()
        .filter(|c| spec.overlaps(c.min_time, c.max_time))
    {
        let in_range = c.min_time >= spec.lo() && c.max_time < spec.end;
        if all_match && in_range {
            relevant.push(c.clone());
            continue;
        }
        let times = c.time.values();
        let columns = [c.time.as_ref() as &dyn Array, c.sid.as_ref()]
            .into_iter()
            .chain(c.fields.iter().map(|(_, _, a)| a.as_ref()));
        let pick: Result<Vec<ArrayRef>, arrow::error::ArrowError> = if few {
            let by_series = c.rows_by_series();
            let mut rows: Vec<u32> = matching
                .iter()
                .flat_map(|sid| by_series.get(sid as usize))
                .copied()
                .filter(|&r| times.get(r as usize).is_some_and(|t| in_time(*t)))
                .collect();
            if rows.is_empty() {
                continue;
            }
            // Arrival order, as the mask below keeps it (later writes win when deduplicated).
            rows.sort_unstable();
            let rows = UInt32Array::from(rows);
            columns
                .map(|a| arrow::compute::take(a, &rows, None))
                .collect()
        } else {
            let mask: BooleanArray = c
                .sid
                .values()
                .iter()
                .zip(times.iter())
                .map(|(sid, t)| Some(matching.contains(*sid) && in_time(*t)))
                .collect();
            if mask.true_count() == 0 {
                continue;
            }
            columns.map(|a| arrow::compute::filter(a, &mask)).collect()
        };
        let mut picked = pick
            .map_err(|e| format!("selecting in-memory rows: {e}"))?
            .into_iter();
        let (Some(time), Some(sid)) = (picked.next(), picked.next()) else {
            return Err("selecting in-memory rows: columns missing".into());
        };
        let fields = c
            .fields
            .iter()
            .zip(picked)
            .map(|((n, t, _), a)| (n.clone(), *t, a))
            .collect();
        relevant.push(Arc::new(Chunk {
            time: Arc::new(
                time.as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                    .clone(),
            ),
            sid: Arc::new(sid.as_primitive::<arrow::datatypes::UInt32Type>().clone()),
            fields,
            // Some of the rows: whether they hold such a value is not known.
            undecimal: Vec::new(),
            series: c.series.clone(),
            min_time: c.min_time,
            max_time: c.max_time,
            by_series: Default::default(),
        }));
    }
    if relevant.is_empty() {
        return Ok(None);
    }
    let (batch, _, _) =
        sorted_batch(&relevant).map_err(|e| format!("sorting in-memory rows: {e}"))?;
    Ok(Some(batch))
}

/// Per-row mask of time range and tag predicates (per distinct dictionary value).
fn filter_mask(batch: &RecordBatch, spec: &QuerySpec) -> Result<BooleanArray, String> {
    let n = batch.num_rows();
    let time = time_column(batch)?;
    let mut keep: Vec<bool> = time
        .values()
        .iter()
        .map(|t| *t >= spec.lo() && *t < spec.end)
        .collect();
    for p in &spec.preds {
        match batch.column_by_name(&p.key) {
            None => {
                if !p.matches(None) {
                    return Ok(BooleanArray::from(vec![false; n]));
                }
            }
            Some(col) => {
                let per_row = tag_lookup(col)?;
                let verdict: Vec<bool> = per_row
                    .values
                    .iter()
                    .map(|v| p.matches(v.as_deref()))
                    .collect();
                for (i, k) in keep.iter_mut().enumerate() {
                    if *k {
                        *k = verdict[per_row.key(i)];
                    }
                }
            }
        }
    }
    Ok(BooleanArray::from(keep))
}

/// A tag column as (distinct values, per-row index into them); index `values.len()-1` is
/// the "absent" entry.
struct TagLookup {
    values: Vec<Option<String>>,
    keys: Vec<u32>,
}

impl TagLookup {
    fn key(&self, row: usize) -> usize {
        self.keys[row] as usize
    }
}

fn tag_lookup(col: &ArrayRef) -> Result<TagLookup, String> {
    match col.data_type() {
        DataType::Dictionary(k, _) if **k == DataType::Int32 => {
            let d: &DictionaryArray<Int32Type> = col.as_dictionary();
            let vals = d.values();
            let strings = vals
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or("tag dictionary values are not strings")?;
            let mut values: Vec<Option<String>> = (0..strings.len())
                .map(|i| strings.is_valid(i).then(|| strings.value(i).to_string()))
                .collect();
            let absent = values.len() as u32;
            values.push(None);
            let keys = (0..d.len())
                .map(|i| {
                    if d.is_valid(i) {
                        d.keys().value(i) as u32
                    } else {
                        absent
                    }
                })
                .collect();
            Ok(TagLookup { values, keys })
        }
        DataType::Utf8 => {
            let s = col.as_string::<i32>();
            let mut index: HashMap<&str, u32> = HashMap::new();
            let mut values = Vec::new();
            let mut keys = Vec::with_capacity(s.len());
            for i in 0..s.len() {
                if s.is_null(i) {
                    keys.push(u32::MAX);
                    continue;
                }
                let v = s.value(i);
                let k = *index.entry(v).or_insert_with(|| {
                    values.push(Some(v.to_string()));
                    (values.len() - 1) as u32
                });
                keys.push(k);
            }
            let absent = values.len() as u32;
            values.push(None);
            for k in &mut keys {
                if *k == u32::MAX {
                    *k = absent;
                }
            }
            Ok(TagLookup { values, keys })
        }
        other => Err(format!("tag column has unexpected type {other}")),
    }
}

/// The field columns to aggregate, in output order: the requested ones, or every non-tag
/// column of the batch.
fn field_names(batch: &RecordBatch, spec: &QuerySpec) -> Vec<String> {
    match &spec.fields {
        Some(list) => list.clone(),
        None => batch
            .schema()
            .fields()
            .iter()
            .filter(|f| f.name() != TIME_COLUMN && !is_tag(f.data_type()))
            .map(|f| f.name().clone())
            .collect(),
    }
}

/// Positions of `names` in `out.fields`, adding the new ones (with empty accumulators in
/// every existing slot).
fn field_positions(out: &mut AggPartial, names: &[String]) -> Vec<usize> {
    let mut positions = Vec::with_capacity(names.len());
    for name in names {
        let pos = match out.fields.iter().position(|f| f == name) {
            Some(p) => p,
            None => {
                out.fields.push(name.clone());
                for buckets in out.groups.values_mut() {
                    for accs in buckets.values_mut() {
                        accs.push(Acc::default());
                    }
                }
                out.fields.len() - 1
            }
        };
        positions.push(pos);
    }
    positions
}

/// Folds rows `lo..hi` of a column into one accumulator: rows of one (group, bucket) slot
/// whose times strictly increase, so the first and last row are the earliest and latest.
/// `rank_base + row` is each row's tie-break rank. Every aggregation path ends here.
fn fold_rows(
    acc: &mut Acc,
    agg: Agg,
    col: &ArrayRef,
    times: &[i64],
    lo: usize,
    hi: usize,
    rank_base: u64,
) {
    let no_nulls = col
        .nulls()
        .is_none_or(|n| n.slice(lo, hi - lo).null_count() == 0);
    let rank = |i: usize| rank_base + i as u64;
    // Empty when the aggregate ignores times (see `needs_times`).
    let time = |i: usize| times.get(i).copied().unwrap_or(0);
    let run_times = times.get(lo..hi).unwrap_or_default();
    match col.data_type() {
        DataType::Int64 => {
            let a = col.as_primitive::<Int64Type>();
            if no_nulls {
                acc.add_int_run(agg, &a.values()[lo..hi], false, run_times, rank(lo));
            } else {
                for i in (lo..hi).filter(|i| a.is_valid(*i)) {
                    acc.add_int(agg, a.value(i) as i128, false, time(i), rank(i));
                }
            }
        }
        DataType::UInt64 => {
            let a = col.as_primitive::<UInt64Type>();
            if no_nulls {
                acc.add_int_run(agg, &a.values()[lo..hi], true, run_times, rank(lo));
            } else {
                for i in (lo..hi).filter(|i| a.is_valid(*i)) {
                    acc.add_int(agg, a.value(i) as i128, true, time(i), rank(i));
                }
            }
        }
        DataType::Float64 => {
            let a = col.as_primitive::<Float64Type>();
            for i in (lo..hi).filter(|i| a.is_valid(*i)) {
                acc.add_float(agg, a.value(i), time(i), rank(i));
            }
        }
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            for i in (lo..hi).filter(|i| a.is_valid(*i)) {
                acc.add_other(agg, || Value::Str(a.value(i).to_string()), time(i), rank(i));
            }
        }
        DataType::Boolean => {
            let a = col.as_boolean();
            for i in (lo..hi).filter(|i| a.is_valid(*i)) {
                acc.add_other(agg, || Value::Bool(a.value(i)), time(i), rank(i));
            }
        }
        _ => {}
    }
}

/// Rows per batch when a file is scanned and aggregated: small enough that the decoded
/// columns stay in cache and their buffers are reused from batch to batch.
const SCAN_BATCH_ROWS: usize = 8192;

/// Folds the rows of a file read through its index into aggregates, a series run at a time:
/// the group comes from the run's tags, the rows in range are a slice of the run (its times
/// increase), each bucket a sub-slice. The rows of `runs` come in run order, batch by batch
/// ([`FileIndex::read_rows_in_batches`]); a run may straddle batches. Equivalent to
/// [`aggregate`] over the same rows filtered by [`filter_mask`].
struct RunFolder<'a> {
    idx: &'a FileIndex,
    runs: &'a [usize],
    spec: &'a QuerySpec,
    /// The run being read, and how many of its rows came already.
    next: usize,
    consumed: u64,
    /// Rows folded before the current batch; a row's tie-break rank is `rank_base` plus its
    /// position among all rows of the file read.
    seen: u64,
    rank_base: u64,
    group_pos: Vec<Option<usize>>,
    group_of: HashMap<Vec<Option<usize>>, GroupKey>,
}

impl<'a> RunFolder<'a> {
    fn new(idx: &'a FileIndex, runs: &'a [usize], spec: &'a QuerySpec, rank_base: u64) -> Self {
        RunFolder {
            idx,
            runs,
            spec,
            next: 0,
            consumed: 0,
            seen: 0,
            rank_base,
            group_pos: spec.group_by.iter().map(|g| idx.tag_position(g)).collect(),
            group_of: HashMap::new(),
        }
    }

    /// Folds the next batch (`data`: time, if read, and fields).
    fn fold(&mut self, data: &RecordBatch, out: &mut AggPartial) -> Result<(), String> {
        let spec = self.spec;
        // Without a time column (see `needs_times`) each run is one bucket, inside the range.
        let times: Option<&[i64]> = match data.column_by_name(TIME_COLUMN) {
            Some(_) => Some(time_column(data)?.values()),
            None => None,
        };
        let names = field_names(data, spec);
        let positions = field_positions(out, &names);
        let nf = out.fields.len();
        let cols: Vec<(usize, &ArrayRef)> = names
            .iter()
            .zip(&positions)
            .filter_map(|(n, p)| data.column_by_name(n).map(|c| (*p, c)))
            .collect();
        let rank_base = self.rank_base + self.seen;
        let rows = data.num_rows();
        let mut off = 0usize;
        while off < rows {
            let &r = self
                .runs
                .get(self.next)
                .ok_or("series index and rows disagree")?;
            let run = self.idx.runs[r];
            let n = ((run.len - self.consumed) as usize).min(rows - off);
            let ids: Vec<Option<usize>> = self
                .group_pos
                .iter()
                .map(|t| t.and_then(|t| self.idx.key(r, t)))
                .collect();
            let (idx, group_pos) = (self.idx, &self.group_pos);
            let group = self
                .group_of
                .entry(ids)
                .or_insert_with(|| idx.group_key(r, group_pos))
                .clone();
            let buckets = out.groups.entry(group).or_default();
            match times {
                None => {
                    let bucket = spec.bucket_of(run.min_time);
                    if !buckets.contains_key(&bucket) {
                        out.entries += 1;
                    }
                    let accs = buckets
                        .entry(bucket)
                        .or_insert_with(|| vec![Acc::default(); nf]);
                    for (pos, col) in &cols {
                        fold_rows(&mut accs[*pos], spec.agg, col, &[], off, off + n, rank_base);
                    }
                }
                Some(times) => {
                    let ts = times
                        .get(off..off + n)
                        .ok_or("series index and rows disagree")?;
                    let mut a = ts.partition_point(|t| *t < spec.lo());
                    let b = ts.partition_point(|t| *t < spec.end);
                    while a < b {
                        let bucket = spec.bucket_of(ts[a]);
                        let end = match spec.every {
                            Some(w) => {
                                let next =
                                    (bucket as i128 + w as i128).min(i64::MAX as i128) as i64;
                                (a + ts[a..b].partition_point(|t| *t < next)).max(a + 1)
                            }
                            None => b,
                        };
                        if !buckets.contains_key(&bucket) {
                            out.entries += 1;
                        }
                        let accs = buckets
                            .entry(bucket)
                            .or_insert_with(|| vec![Acc::default(); nf]);
                        for (pos, col) in &cols {
                            fold_rows(
                                &mut accs[*pos],
                                spec.agg,
                                col,
                                times,
                                off + a,
                                off + end,
                                rank_base,
                            );
                        }
                        a = end;
                    }
                }
            }
            off += n;
            self.consumed += n as u64;
            if self.consumed == run.len {
                self.next += 1;
                self.consumed = 0;
            }
        }
        self.seen += rows as u64;
        Ok(())
    }

    /// Checks that every row of every run came; returns the rows folded.
    fn finish(&self) -> Result<u64, String> {
        if self.next != self.runs.len() || self.consumed != 0 {
            return Err("series index and rows disagree".into());
        }
        Ok(self.seen)
    }
}

/// Folds a filtered batch into aggregates.
fn aggregate(
    batch: &RecordBatch,
    spec: &QuerySpec,
    out: &mut AggPartial,
    rank_base: u64,
) -> Result<(), String> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(());
    }
    let time = time_column(batch)?;
    let field_names = field_names(batch, spec);
    let slots_of_field = field_positions(out, &field_names);
    let nf = out.fields.len();

    // Group of each row.
    let lookups: Vec<Option<TagLookup>> = spec
        .group_by
        .iter()
        .map(|g| batch.column_by_name(g).map(tag_lookup).transpose())
        .collect::<Result<_, _>>()?;
    let mut group_of_keys: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut group_keys: Vec<GroupKey> = Vec::new();
    let mut row_group = Vec::with_capacity(n);
    let mut last: Option<(Vec<u32>, usize)> = None;
    for i in 0..n {
        let k: Vec<u32> = lookups
            .iter()
            .map(|l| l.as_ref().map_or(0, |l| l.keys[i]))
            .collect();
        if let Some((lk, g)) = &last
            && *lk == k
        {
            row_group.push(*g);
            continue;
        }
        let g = *group_of_keys.entry(k.clone()).or_insert_with(|| {
            let key: GroupKey = lookups
                .iter()
                .map(|l| {
                    l.as_ref()
                        .and_then(|l| l.values[l.keys[i] as usize].clone())
                        .unwrap_or_default()
                })
                .collect();
            group_keys.push(key);
            group_keys.len() - 1
        });
        row_group.push(g);
        last = Some((k, g));
    }

    // Slot of each row: (group, bucket) → index into a local accumulator table.
    let mut slot_of: HashMap<(usize, i64), usize> = HashMap::new();
    let mut slots: Vec<(usize, i64)> = Vec::new();
    let mut row_slot = Vec::with_capacity(n);
    let mut last_slot: Option<((usize, i64), usize)> = None;
    for (i, g) in row_group.iter().enumerate() {
        let key = (*g, spec.bucket_of(time.value(i)));
        if let Some((lk, s)) = last_slot
            && lk == key
        {
            row_slot.push(s);
            continue;
        }
        let s = *slot_of.entry(key).or_insert_with(|| {
            slots.push(key);
            slots.len() - 1
        });
        row_slot.push(s);
        last_slot = Some((key, s));
    }
    // Ranges of consecutive rows with one slot and increasing times (what `fold_rows` takes).
    let times = time.values();
    let mut ranges: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &slot) in row_slot.iter().enumerate() {
        match ranges.last_mut() {
            Some((_, hi, s)) if *s == slot && times[i] > times[i - 1] => *hi = i + 1,
            _ => ranges.push((i, i + 1, slot)),
        }
    }
    let nfl = field_names.len();
    let mut local: Vec<Acc> = vec![Acc::default(); slots.len() * nfl];
    for (fi, name) in field_names.iter().enumerate() {
        let Some(col) = batch.column_by_name(name) else {
            continue;
        };
        for &(lo, hi, slot) in &ranges {
            fold_rows(
                &mut local[slot * nfl + fi],
                spec.agg,
                col,
                times,
                lo,
                hi,
                rank_base,
            );
        }
    }
    for (s, (g, bucket)) in slots.iter().enumerate() {
        let buckets = out.groups.entry(group_keys[*g].clone()).or_default();
        if !buckets.contains_key(bucket) {
            out.entries += 1;
        }
        let accs = buckets
            .entry(*bucket)
            .or_insert_with(|| vec![Acc::default(); nf]);
        for (fi, pos) in slots_of_field.iter().enumerate() {
            accs[*pos].merge(&local[s * field_names.len() + fi]);
        }
    }
    Ok(())
}

fn value_at(col: &ArrayRef, i: usize) -> Value {
    if col.is_null(i) {
        return Value::Null;
    }
    match col.data_type() {
        DataType::Float64 => Value::Float(col.as_primitive::<Float64Type>().value(i)),
        DataType::Int64 => Value::Int(col.as_primitive::<Int64Type>().value(i)),
        DataType::UInt64 => Value::UInt(col.as_primitive::<UInt64Type>().value(i)),
        DataType::Utf8 => Value::Str(col.as_string::<i32>().value(i).to_string()),
        DataType::Boolean => Value::Bool(col.as_boolean().value(i)),
        _ => Value::Null,
    }
}

/// Registers the output columns of raw rows from a source's columns (name, is a tag): tags
/// not grouped on (only for `fields=*`, as InfluxQL's `SELECT *`; a field list returns those
/// fields), then fields; rows already collected get nulls in the new columns.
fn register_raw_columns<'a>(
    columns: impl Iterator<Item = (&'a str, bool)>,
    spec: &QuerySpec,
    out: &mut RawPartial,
) {
    for (name, tag) in columns {
        if name == TIME_COLUMN
            || spec.group_by.iter().any(|g| g == name)
            || out.columns.iter().any(|c| c == name)
        {
            continue;
        }
        if tag {
            if spec.fields.is_some() {
                continue;
            }
            out.columns.insert(out.tag_columns, name.to_string());
            out.tag_columns += 1;
            for rows in out.groups.values_mut() {
                for (_, vals) in rows.iter_mut() {
                    vals.insert(out.tag_columns - 1, Value::Null);
                }
            }
        } else if spec
            .fields
            .as_ref()
            .is_none_or(|l| l.iter().any(|f| f == name))
        {
            out.columns.push(name.to_string());
            for rows in out.groups.values_mut() {
                for (_, vals) in rows.iter_mut() {
                    vals.push(Value::Null);
                }
            }
        }
    }
    if let Some(list) = &spec.fields {
        for name in list {
            if !out.columns.contains(name) {
                out.columns.push(name.clone());
                for rows in out.groups.values_mut() {
                    for (_, vals) in rows.iter_mut() {
                        vals.push(Value::Null);
                    }
                }
            }
        }
    }
}

/// The error of a region whose raw rows exceed `query.max_rows`.
fn too_many_raw_rows(max_rows: usize) -> String {
    format!(
        "{OVER_QUERY_MEMORY} more than {max_rows} raw rows (query.max_rows); add a limit, an aggregate or a narrower time range"
    )
}

/// Collects the rows of a file read through its index (`data`: time and fields of `runs`,
/// in run order) for `agg=none`, a series run at a time: the group and the tag values come
/// from the run, the rows in range are a slice of the run (its times increase). Equivalent
/// to [`collect_raw`] over the same rows with their tags rebuilt ([`FileIndex::with_tags`])
/// and filtered by [`filter_mask`] (the runs already satisfy the tag predicates).
fn collect_raw_runs(
    idx: &FileIndex,
    runs: &[usize],
    data: &RecordBatch,
    spec: &QuerySpec,
    out: &mut RawPartial,
    limit: &mut RawLimit,
) -> Result<(), String> {
    let times = time_column(data)?.values();
    // The rows in range of each run: (run, first row, end row) in `data`.
    let mut spans = Vec::with_capacity(runs.len());
    let (mut off, mut total) = (0usize, 0usize);
    for &r in runs {
        let n = idx.runs[r].len as usize;
        let ts = times
            .get(off..off + n)
            .ok_or("series index and rows disagree")?;
        let a = ts.partition_point(|t| *t < spec.lo());
        let b = ts.partition_point(|t| *t < spec.end);
        spans.push((r, off + a, off + b));
        total += b - a;
        off += n;
    }
    if total == 0 {
        return Ok(());
    }
    let schema = idx.meta.schema();
    register_raw_columns(
        schema
            .fields()
            .iter()
            .filter(|f| is_tag(f.data_type()) || data.column_by_name(f.name()).is_some())
            .map(|f| (f.name().as_str(), is_tag(f.data_type()))),
        spec,
        out,
    );
    /// Where an output column's values come from.
    enum From<'a> {
        Tag(usize),
        Field(&'a ArrayRef),
        Nothing,
    }
    let from: Vec<From> = out
        .columns
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            if ci < out.tag_columns {
                idx.tag_position(c).map_or(From::Nothing, From::Tag)
            } else {
                data.column_by_name(c).map_or(From::Nothing, From::Field)
            }
        })
        .collect();
    let group_pos: Vec<Option<usize>> = spec.group_by.iter().map(|g| idx.tag_position(g)).collect();
    for (r, a, b) in spans {
        if a == b {
            continue;
        }
        let tags: Vec<Value> = from
            .iter()
            .map(|f| match f {
                From::Tag(t) => idx
                    .tag_value(r, *t)
                    .map_or(Value::Null, |v| Value::Str(v.to_string())),
                _ => Value::Null,
            })
            .collect();
        let rows = out.groups.entry(idx.group_key(r, &group_pos)).or_default();
        rows.reserve(b - a);
        for i in a..b {
            let vals: Vec<Value> = from
                .iter()
                .zip(&tags)
                .map(|(f, tag)| match f {
                    From::Field(col) => value_at(col, i),
                    _ => tag.clone(),
                })
                .collect();
            if no_field_value(&vals, out.tag_columns) {
                continue;
            }
            out.bytes += raw_row_bytes(&vals);
            rows.push((times[i], vals));
            out.rows += 1;
            if out.rows.is_multiple_of(RAW_CHECK_ROWS) {
                limit.check_parts(out.rows, out.bytes)?;
            }
        }
    }
    limit.check(out)
}

/// Heap bytes of one allocation of `n` bytes as glibc's malloc hands it out: a 16-byte
/// header, rounded up to 16, at least 32.
pub(crate) fn heap_bytes(n: usize) -> usize {
    ((n + 16 + 15) & !15).max(32)
}

/// Memory of a raw row as it is held: its slot in its group's vector (with the slack that
/// doubling leaves, up to as much again), the allocation of its values and one per string.
/// Measured against heaptrack's peak while `tools/soak` ran raw `fields=*` queries: the
/// former estimate (the vector and the string lengths) was a third of the real heap.
fn raw_row_bytes(vals: &[Value]) -> usize {
    2 * std::mem::size_of::<(i64, Vec<Value>)>()
        + heap_bytes(std::mem::size_of_val(vals))
        + vals
            .iter()
            .map(|v| match v {
                Value::Str(s) => heap_bytes(s.len()),
                _ => 0,
            })
            .sum::<usize>()
}

/// Raw rows between two checks of [`RawLimit`]: the answer may pass its budget by at most
/// this many rows before the scan stops.
const RAW_CHECK_ROWS: usize = 4096;

/// The bounds of a raw scan, checked as rows are collected (not once a whole file or batch
/// has been turned into rows): `query.max_rows`, and the query's memory budget for the rows
/// plus `staged`, the Arrow data they are being read from.
struct RawLimit<'a> {
    spec: &'a QuerySpec,
    max_rows: usize,
    charged: &'a mut usize,
    staged: usize,
}

impl RawLimit<'_> {
    fn check(&mut self, out: &RawPartial) -> Result<(), String> {
        self.check_parts(out.rows, out.bytes)
    }

    fn check_parts(&mut self, rows: usize, bytes: usize) -> Result<(), String> {
        if rows > self.max_rows {
            return Err(too_many_raw_rows(self.max_rows));
        }
        charge(self.spec, bytes + self.staged, self.charged)
    }
}

/// Approximate memory of an aggregate partial: its (group, bucket) entries and their states.
fn agg_bytes(a: &AggPartial) -> usize {
    a.entries * (64 + a.fields.len().max(1) * std::mem::size_of::<Acc>())
}

/// Approximate memory of a partial answer.
fn partial_bytes(p: &Partial) -> usize {
    match p {
        Partial::Raw(r) => r.bytes,
        Partial::Agg(a) => agg_bytes(a),
    }
}

/// Charges the growth of what a scan holds (its partial answer and the rows it stages)
/// since the last call to the query's budget: the query is charged its peak.
fn charge(spec: &QuerySpec, bytes: usize, charged: &mut usize) -> Result<(), String> {
    if let Some(b) = &spec.budget
        && bytes > *charged
    {
        b.charge((bytes - *charged) as u64)?;
        *charged = bytes;
    }
    Ok(())
}

/// Whether a raw row has none of the requested fields (as InfluxDB, such a point is not a
/// row of the answer: `fields=u` lists the points that have `u`).
fn no_field_value(vals: &[Value], tag_columns: usize) -> bool {
    vals.get(tag_columns..)
        .is_none_or(|f| f.iter().all(|v| matches!(v, Value::Null)))
}

/// Collects filtered rows for `agg=none`, sorted by time inside each group.
fn collect_raw(
    batch: &RecordBatch,
    spec: &QuerySpec,
    out: &mut RawPartial,
    limit: &mut RawLimit,
) -> Result<(), String> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(());
    }
    let schema = batch.schema();
    let time = time_column(batch)?;
    register_raw_columns(
        schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), is_tag(f.data_type()))),
        spec,
        out,
    );
    let lookups: Vec<Option<TagLookup>> = spec
        .group_by
        .iter()
        .map(|g| batch.column_by_name(g).map(tag_lookup).transpose())
        .collect::<Result<_, _>>()?;
    let cols: Vec<Option<(ArrayRef, bool)>> = out
        .columns
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            batch
                .column_by_name(c)
                .map(|a| (a.clone(), ci < out.tag_columns))
        })
        .collect();
    let tag_lookups: Vec<Option<TagLookup>> = cols
        .iter()
        .map(|c| match c {
            Some((a, true)) => tag_lookup(a).ok(),
            _ => None,
        })
        .collect();
    for i in 0..n {
        let key: GroupKey = lookups
            .iter()
            .map(|l| {
                l.as_ref()
                    .and_then(|l| l.values[l.keys[i] as usize].clone())
                    .unwrap_or_default()
            })
            .collect();
        let vals: Vec<Value> = cols
            .iter()
            .zip(&tag_lookups)
            .map(|(c, tl)| match (c, tl) {
                (_, Some(l)) => l.values[l.keys[i] as usize]
                    .clone()
                    .map_or(Value::Null, Value::Str),
                (Some((a, false)), None) => value_at(a, i),
                _ => Value::Null,
            })
            .collect();
        if no_field_value(&vals, out.tag_columns) {
            continue;
        }
        out.bytes += raw_row_bytes(&vals);
        out.groups
            .entry(key)
            .or_default()
            .push((time.value(i), vals));
        out.rows += 1;
        if out.rows.is_multiple_of(RAW_CHECK_ROWS) {
            limit.check(out)?;
        }
    }
    limit.check(out)
}

/// Whether a file may hold rows of the query (its measurement, its time range).
fn file_wanted(f: &FileMeta, spec: &QuerySpec) -> bool {
    f.measurement == spec.measurement && spec.overlaps(f.min_time, f.max_time)
}

/// The files of a snapshot a small scan reads, found while checking that it is small: per
/// file of [`RegionSnapshot::files`], its path, cached index and the runs the query needs
/// (`None` when the file is pruned).
pub struct Selection(Vec<Option<Selected>>);

/// A file's path, cached index and selected runs.
type Selected = (FileRef, Arc<FileIndex>, Vec<usize>);

/// The selection of a scan of `snap` if it is small: nothing is in memory, every file's
/// series index is cached (none has to be built), and the runs the query selects hold at
/// most `limit` rows. Lets a one-host query over files run its scan on the request's own
/// thread instead of handing it to a blocking thread; [`scan_region`] reuses the selection.
pub fn small_selection(
    snap: &RegionSnapshot,
    spec: &QuerySpec,
    cache: &IndexCache,
    limit: u64,
) -> Option<Selection> {
    let spec = with_retention(snap, spec);
    let spec: &QuerySpec = &spec;
    if !snap.mem.is_empty() {
        return None;
    }
    let none = HashSet::new();
    let mut rows = 0u64;
    let mut out = Vec::new();
    for f in snap.files() {
        if !file_wanted(f, spec) {
            out.push(None);
            continue;
        }
        let path = snap.store.file(f);
        let idx = cache.cached(&path, f)?;
        let runs = select_runs(&idx, spec, &none);
        rows += runs.iter().map(|&r| idx.runs[r].len).sum::<u64>();
        if rows > limit {
            return None;
        }
        out.push(Some((path, idx, runs)));
    }
    Some(Selection(out))
}

/// Scans one region's snapshot.
/// The error a scan stops with at the request's deadline (reported as `timeout`).
pub const DEADLINE_PASSED: &str = "stopped at the request's deadline (query.timeout)";

fn check_deadline(spec: &QuerySpec) -> Result<(), String> {
    if spec.expired() {
        Err(DEADLINE_PASSED.to_string())
    } else {
        Ok(())
    }
}

/// `spec` reading only what the snapshot's retention keeps (a copy only when that is less
/// than it asks).
fn with_retention<'a>(
    snap: &RegionSnapshot,
    spec: &'a QuerySpec,
) -> std::borrow::Cow<'a, QuerySpec> {
    let from = snap.keeps_from(&spec.measurement);
    if from > spec.lo() {
        std::borrow::Cow::Owned(QuerySpec {
            retain_from: from,
            ..spec.clone()
        })
    } else {
        std::borrow::Cow::Borrowed(spec)
    }
}

pub fn scan_region(
    snap: &RegionSnapshot,
    spec: &QuerySpec,
    max_rows: usize,
    cache: &IndexCache,
    selection: Option<Selection>,
) -> Result<(Partial, ScanStats), String> {
    let spec = with_retention(snap, spec);
    let spec: &QuerySpec = &spec;
    let mut stats = ScanStats::default();
    let mut selection = selection.map(|s| s.0);
    // Partitions in time order; each with its files (and their positions in
    // `snap.files()`) and memory sources.
    type Files<'a> = Vec<(usize, &'a FileMeta)>;
    let mut parts: BTreeMap<i64, (Files, Vec<&MemSource>)> = BTreeMap::new();
    for (i, f) in snap.files().enumerate() {
        if file_wanted(f, spec) {
            parts.entry(f.partition_start).or_default().0.push((i, f));
        } else {
            stats.files_pruned += 1;
        }
    }
    for m in &snap.mem {
        if *m.key.measurement == *spec.measurement {
            parts.entry(m.key.partition.0).or_default().1.push(m);
        }
    }
    let mut partial = if spec.agg == Agg::None {
        Partial::Raw(RawPartial::default())
    } else {
        Partial::Agg(AggPartial::default())
    };
    // `first`/`last` of whole groups (no buckets): partitions from the answering end; once
    // a group has a value for every field, the series of that group are skipped in
    // partitions entirely older (`last`) or newer (`first`) than everything read so far.
    // With `fields=*`, "every field" is every field a file or block of the scan holds.
    let early = matches!(spec.agg, Agg::First | Agg::Last) && spec.every.is_none();
    let early_fields: Vec<String> = match &spec.fields {
        Some(list) => list.clone(),
        None if early => {
            let mut all: BTreeSet<&str> = BTreeSet::new();
            for (_, f) in parts.values().flat_map(|p| p.0.iter()) {
                for (name, kind) in &f.columns {
                    if matches!(kind, crate::model::ColumnKind::Field(_)) {
                        all.insert(name);
                    }
                }
            }
            for m in parts.values().flat_map(|p| p.1.iter()) {
                for c in &m.chunks {
                    all.extend(c.fields.iter().map(|(n, _, _)| &**n));
                }
            }
            all.into_iter().map(str::to_string).collect()
        }
        None => Vec::new(),
    };
    let mut parts: Vec<_> = parts
        .into_values()
        .map(|(files, mems)| {
            let (mut min, mut max) = (i64::MAX, i64::MIN);
            for (_, f) in &files {
                (min, max) = (min.min(f.min_time), max.max(f.max_time));
            }
            for c in mems.iter().flat_map(|m| m.chunks.iter()) {
                (min, max) = (min.min(c.min_time), max.max(c.max_time));
            }
            (min, max, files, mems)
        })
        .collect();
    if early && spec.agg == Agg::Last {
        parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    }
    let mut answered: HashSet<GroupKey> = HashSet::new();
    let none_answered: HashSet<GroupKey> = HashSet::new();
    // Bytes of the partial answer charged to the query's budget so far.
    let mut charged = 0usize;
    let (mut read_min, mut read_max) = (i64::MAX, i64::MIN);
    let mut rank_base = 0u64;
    for (part_min, part_max, mut files, mut mems) in parts {
        check_deadline(spec)?;
        let beyond = match spec.agg {
            Agg::Last => part_max < read_min,
            _ => part_min > read_max,
        };
        let skip = if early && beyond {
            &answered
        } else {
            &none_answered
        };
        (read_min, read_max) = (read_min.min(part_min), read_max.max(part_max));
        files.sort_by_key(|(_, f)| f.seq);
        // Frozen blocks are older than active ones; among them, the order they were frozen.
        mems.sort_by_key(|m| m.frozen.map_or((1, 0), |id| (0, id)));
        let mut sources: Vec<Source> = Vec::new();
        for (i, f) in files {
            let selected = match &mut selection {
                Some(sel) if skip.is_empty() => sel.get_mut(i).and_then(Option::take),
                _ => None,
            };
            let (path, idx, runs) = match selected {
                Some(s) => s,
                None => {
                    let path = snap.store.file(f);
                    let idx = cache.get(&path, f)?;
                    let runs = select_runs(&idx, spec, skip);
                    (path, idx, runs)
                }
            };
            if runs.is_empty() {
                stats.files_pruned += 1;
                continue;
            }
            let mut shards: Vec<usize> = f.wal.iter().map(|w| w.shard).collect();
            shards.sort_unstable();
            shards.dedup();
            sources.push(Source {
                data: SourceData::File { path, idx, runs },
                min: f.min_time,
                max: f.max_time,
                shards: (!f.wal.is_empty()).then_some(shards),
            });
        }
        for m in mems {
            if let Some(batch) = mem_batch(&m.chunks, spec)? {
                let (min, max) = m.chunks.iter().fold((i64::MAX, i64::MIN), |(a, b), c| {
                    (a.min(c.min_time), b.max(c.max_time))
                });
                sources.push(Source {
                    data: SourceData::Mem(batch),
                    min,
                    max,
                    shards: Some(vec![m.shard]),
                });
            }
        }
        // From metadata, before reading: whether points must be merged across sources.
        let overlapping = sources
            .iter()
            .enumerate()
            .any(|(i, a)| sources[i + 1..].iter().any(|b| may_share_points(a, b)));
        let want = |name: &str| {
            spec.fields
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n == name))
        };
        let mut batches: Vec<RecordBatch> = Vec::new();
        // Rows held whole for this partition (overlapping files read for the merge, the
        // sorted copies of in-memory blocks, then the merge's own copies): charged to the
        // query's budget with its partial answer, since their size is not bounded.
        let mut staged = 0usize;
        for s in sources {
            // `count` of whole files alone with their points: from their footers.
            if let (SourceData::File { idx, runs, .. }, Partial::Agg(a)) = (&s.data, &mut partial)
                && !overlapping
                && let Some(counts) = footer_counts(spec, idx, runs, (s.min, s.max))
            {
                fold_counts(spec, a, s.min, &counts);
                continue;
            }
            let base = partial_bytes(&partial);
            match (s.data, &mut partial) {
                // A file alone with its points, aggregated a series run at a time; without
                // reading its times when no aggregate needs them.
                (SourceData::File { path, idx, runs }, Partial::Agg(a))
                    if !overlapping && idx.time_sorted =>
                {
                    let with_time = needs_times(&idx, &runs, spec);
                    let mut folder = RunFolder::new(&idx, &runs, spec, rank_base);
                    let skipped = idx.read_rows_in_batches(
                        &path,
                        &runs,
                        with_time,
                        want,
                        cache.pages(),
                        SCAN_BATCH_ROWS,
                        |batch| {
                            check_deadline(spec)?;
                            folder.fold(&batch, a)?;
                            charge(spec, agg_bytes(a), &mut charged)
                        },
                    )?;
                    let rows = folder.finish()?;
                    stats.files_read += 1;
                    stats.row_groups_pruned += skipped as u64;
                    stats.rows_scanned += rows;
                    rank_base += rows;
                }
                // Raw rows of a file alone with its points, likewise a series run at a time.
                (SourceData::File { path, idx, runs }, Partial::Raw(r))
                    if !overlapping && idx.time_sorted =>
                {
                    let (data, skipped) = idx.read_rows(&path, &runs, true, want, cache.pages())?;
                    stats.files_read += 1;
                    stats.row_groups_pruned += skipped as u64;
                    stats.rows_scanned += data.num_rows() as u64;
                    let mut limit = RawLimit {
                        spec,
                        max_rows,
                        charged: &mut charged,
                        staged: data.get_array_memory_size(),
                    };
                    limit.check(r)?;
                    collect_raw_runs(&idx, &runs, &data, spec, r, &mut limit)?;
                }
                (SourceData::File { path, idx, runs }, _) => {
                    let (data, skipped) = idx.read_rows(&path, &runs, true, want, cache.pages())?;
                    stats.files_read += 1;
                    stats.row_groups_pruned += skipped as u64;
                    let batch = idx.with_tags(&data, &runs)?;
                    drop(data);
                    staged += batch.get_array_memory_size();
                    charge(spec, base + staged, &mut charged)?;
                    batches.push(batch);
                }
                (SourceData::Mem(batch), _) => {
                    // A sorted copy of the blocks' rows, made for this query.
                    staged += batch.get_array_memory_size();
                    batches.push(batch);
                }
            }
        }
        if overlapping {
            charge(
                spec,
                partial_bytes(&partial) + staged + merge_dedup_memory(&batches),
                &mut charged,
            )?;
            let merged = merge_dedup(&batches)
                .map_err(|e| format!("merging sources: {e}"))?
                .0;
            staged = merged.get_array_memory_size();
            batches = vec![merged];
        }
        for batch in batches {
            check_deadline(spec)?;
            stats.rows_scanned += batch.num_rows() as u64;
            let mask = filter_mask(&batch, spec)?;
            let filtered =
                filter_record_batch(&batch, &mask).map_err(|e| format!("filtering: {e}"))?;
            match &mut partial {
                Partial::Agg(a) => {
                    aggregate(&filtered, spec, a, rank_base)?;
                    charge(spec, agg_bytes(a), &mut charged)?;
                }
                Partial::Raw(r) => {
                    let mut limit = RawLimit {
                        spec,
                        max_rows,
                        charged: &mut charged,
                        staged: staged + filtered.get_array_memory_size(),
                    };
                    collect_raw(&filtered, spec, r, &mut limit)?;
                }
            }
            rank_base += filtered.num_rows() as u64;
        }
        // Result rows (group x bucket) are bounded like raw rows: `every=1ns` over a long
        // range would otherwise hold an accumulator per point.
        if let Partial::Agg(a) = &partial
            && a.entries > max_rows
        {
            return Err(format!(
                "{OVER_QUERY_MEMORY} more than {max_rows} rows (query.max_rows); use a larger every, fewer group_by tags or a narrower time range"
            ));
        }
        if early {
            answered = answered_groups(spec, &early_fields, &partial);
        }
        // Raw without grouping: partitions come in time order, so once `limit` rows are in,
        // later partitions cannot contribute to the first `limit` rows by time.
        if let (Partial::Raw(r), Some(limit)) = (&partial, spec.limit)
            && spec.group_by.is_empty()
            && r.rows >= limit
        {
            break;
        }
    }
    if let Partial::Raw(r) = &mut partial {
        for rows in r.groups.values_mut() {
            rows.sort_by_key(|(t, _)| *t);
        }
    }
    Ok((partial, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::FieldValue;
    use crate::region::block::Block;
    use crate::router::series_hash;

    fn spec(params: &[(&str, &str)]) -> QuerySpec {
        let mut p: HashMap<String, String> = [("db", "d"), ("measurement", "m")]
            .into_iter()
            .chain(params.iter().copied())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.entry("start".into()).or_insert_with(|| "0".into());
        p.entry("end".into()).or_insert_with(|| "1000".into());
        QuerySpec::from_params(&p).unwrap()
    }

    /// Aggregating a file batch by batch, runs straddling batches, gives what aggregating
    /// its rows at once (tags rebuilt, filtered row by row) gives.
    #[test]
    fn folding_runs_batch_by_batch_equals_aggregating_rows() {
        use crate::storage::cache::IndexCache;
        use crate::storage::index::{test_batch, write_test_file};
        use crate::storage::parquet::writer_properties;

        const STEP: i64 = 10_000_000_000;
        let (mut hosts, mut regions, mut times, mut vs) = (vec![], vec![], vec![], vec![]);
        for h in 0..30i64 {
            for i in 0..(500 + h * 13) {
                hosts.push(format!("h{h:02}"));
                regions.push(["eu", "us", "ap"][(h % 3) as usize]);
                times.push(i * STEP);
                vs.push((i * 7919 + h * 104_729) % 1000 - 500);
            }
        }
        let hosts: Vec<Option<&str>> = hosts.iter().map(|h| Some(h.as_str())).collect();
        let regions: Vec<Option<&str>> = regions.iter().map(|r| Some(*r)).collect();
        let batch = test_batch(times, &[("host", hosts), ("region", regions)], vs);
        let schema = batch.schema();
        let dir = tempfile::tempdir().unwrap();
        let props = writer_properties(&schema, 1 << 20, vec![], 1, 20_000, &[]);
        let (path, meta) = write_test_file(dir.path(), &batch, props);
        let cache = IndexCache::new(1 << 30, 0);
        let idx = cache.get(&path, &meta).unwrap();
        let aggs = [
            "count", "sum", "mean", "min", "max", "first", "last", "stddev",
        ];
        let mut checked = 0;
        for (i, agg) in aggs.iter().enumerate() {
            for every in [None, Some("7m"), Some("1h")] {
                for (group, start, end) in [("", 0, 1 << 50), ("region", 35 * STEP, 600 * STEP)] {
                    let mut q = vec![("agg", *agg), ("fields", "v")];
                    let (start, end) = (start.to_string(), end.to_string());
                    q.extend([("start", start.as_str()), ("end", end.as_str())]);
                    if let Some(e) = every {
                        q.push(("every", e));
                    }
                    if !group.is_empty() {
                        q.push(("group_by", group));
                    }
                    if i % 2 == 1 {
                        q.push(("where", "host!=h07"));
                    }
                    let spec = spec(&q);
                    let runs = select_runs(&idx, &spec, &HashSet::new());
                    // Batch by batch, 1,000 rows at a time.
                    let mut folded = AggPartial::default();
                    let mut folder = RunFolder::new(&idx, &runs, &spec, 0);
                    let with_time = needs_times(&idx, &runs, &spec);
                    let want = |n: &str| n == "v";
                    idx.read_rows_in_batches(
                        &path,
                        &runs,
                        with_time,
                        want,
                        cache.pages(),
                        1000,
                        |b| folder.fold(&b, &mut folded),
                    )
                    .unwrap();
                    folder.finish().unwrap();
                    // All rows at once, tags rebuilt, filtered row by row.
                    let (data, _) = idx
                        .read_rows(&path, &runs, true, want, cache.pages())
                        .unwrap();
                    let full = idx.with_tags(&data, &runs).unwrap();
                    let mask = filter_mask(&full, &spec).unwrap();
                    let rows = filter_record_batch(&full, &mask).unwrap();
                    let mut direct = AggPartial::default();
                    aggregate(&rows, &spec, &mut direct, 0).unwrap();
                    let a = crate::query::merge(&spec, vec![Partial::Agg(folded)]);
                    let b = crate::query::merge(&spec, vec![Partial::Agg(direct)]);
                    assert!(!b.1.is_empty(), "{q:?}");
                    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{q:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 48);
    }

    /// A point written again after its block froze: the active block's value wins over
    /// the frozen one's, and among frozen blocks the later frozen, whatever order the
    /// snapshot lists them in and whether their files have seqs yet (shared storage gives
    /// a frozen block its seq only when the lease holder submits its flush).
    #[test]
    fn newer_blocks_win_whatever_order_the_snapshot_lists() {
        use crate::region::flush::BlockKey;
        use crate::storage::cache::IndexCache;
        let tags = [("host", "h1")];
        let hash = series_hash("m", &tags);
        let block_of = |v: i64| {
            let mut b = Block::new();
            b.append(hash, &tags, &[("v", FieldValue::Integer(v))], 10, false);
            b.freeze()
        };
        let key = BlockKey {
            db: "d".into(),
            measurement: "m".into(),
            partition: crate::model::PartitionStart(0),
        };
        let source = |v: i64, frozen: Option<u64>| MemSource {
            key: key.clone(),
            shard: 0,
            chunks: block_of(v),
            flushing_file_seq: None,
            frozen,
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = IndexCache::new(1 << 20, 0);
        for mem in [
            vec![source(3, None), source(1, Some(1)), source(2, Some(2))],
            vec![source(2, Some(2)), source(3, None), source(1, Some(1))],
            vec![source(1, Some(1)), source(2, Some(2))],
            vec![source(2, Some(2)), source(1, Some(1))],
        ] {
            let want = if mem.iter().any(|m| m.frozen.is_none()) {
                3
            } else {
                2
            };
            let snap = RegionSnapshot {
                mem,
                all_files: Arc::new(Vec::new()),
                positions: None,
                db: "d".into(),
                measurement: Some("m".into()),
                excluded: HashSet::new(),
                store: crate::storage::store::Store::local(dir.path()),
                retention: Arc::default(),
                now_ns: 0,
            };
            let q = spec(&[("agg", "sum"), ("fields", "v")]);
            let (partial, _) = scan_region(&snap, &q, 1000, &cache, None).unwrap();
            let merged = crate::query::merge(&q, vec![partial]);
            let text = format!("{:?}", merged.1);
            assert!(
                text.contains(&format!("Int({want})"))
                    || text.contains(&format!("Float({want}.0)")),
                "want {want}: {text}"
            );
        }
    }

    /// Rows taken through the rows-by-series index equal rows found by testing every row:
    /// several chunks, series in many orders, points rewritten in later chunks.
    #[test]
    fn rows_taken_by_series_equal_rows_tested_one_by_one() {
        let mut block = Block::new();
        let mut chunks = Vec::new();
        for round in 0..3i64 {
            for i in 0..400i64 {
                let host = format!("h{}", (i * 7 + round) % 50);
                let tags = [("host", host.as_str())];
                let hash = series_hash("m", &tags);
                let v = FieldValue::Integer(i + round * 1000);
                let mut fields = vec![("v", v)];
                if i % 3 == 0 {
                    fields.push(("w", FieldValue::Float(i as f64)));
                }
                block.append(hash, &tags, &fields, (i % 40) * 10, false);
            }
            chunks = block.freeze();
        }
        assert_eq!(chunks.len(), 3);
        let queries: [&[(&str, &str)]; 6] = [
            &[("where", "host=h3")],
            &[("where", "host=h3"), ("start", "55"), ("end", "200")],
            &[("where", "host=~^h1")],
            &[("where", "host=h99")],
            &[("where", "host!=h3")],
            &[],
        ];
        for q in queries {
            let s = spec(q);
            let taken = mem_rows(&chunks, &s, 1).unwrap();
            let tested = mem_rows(&chunks, &s, u64::MAX).unwrap();
            assert_eq!(taken, tested, "{q:?}");
            if q.len() == 1 && q[0].1 == "host=h3" {
                let times: HashSet<i64> = (0..3i64)
                    .flat_map(|round| (0..400i64).map(move |i| (round, i)))
                    .filter(|(round, i)| (i * 7 + round) % 50 == 3)
                    .map(|(_, i)| (i % 40) * 10)
                    .collect();
                let rows = taken.map_or(0, |b| b.num_rows());
                assert_eq!(
                    rows,
                    times.len(),
                    "one row per time of h3, rewrites deduplicated"
                );
                assert!(rows > 5);
            }
        }
        let by_series = chunks[0].rows_by_series();
        let sids = chunks[0].sid.values();
        for sid in 0..52u32 {
            let want: Vec<u32> = (0..sids.len() as u32)
                .filter(|&r| sids[r as usize] == sid)
                .collect();
            assert_eq!(by_series.get(sid as usize), want.as_slice());
        }
    }
}
