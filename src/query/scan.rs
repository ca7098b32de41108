//! Scanning one region: its snapshot (in-memory chunks + live files) → a [`Partial`].
//!
//! Per partition (time order): files overlapping the range are read with row groups pruned
//! by statistics (time, and tag equality predicates) and only the needed columns; in-memory
//! blocks are sorted and deduplicated; rows are filtered by time and by tag predicates
//! evaluated once per distinct tag value (or once per series, with a roaring bitmap of
//! matching series ids, for in-memory chunks). Sources of a partition that may hold the same
//! points (overlapping times and ingest shards) are merged last-write-wins first, so a
//! point rewritten later is counted once, with its latest fields.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, UInt64Type};
use arrow::record_batch::RecordBatchReader;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowFilter,
};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::statistics::Statistics;
use roaring::RoaringBitmap;

use super::agg::{Acc, Agg, Value};
use super::plan::{QuerySpec, TagOp};
use crate::catalog::FileMeta;
use crate::model::TIME_COLUMN;
use crate::region::block::{Chunk, sorted_batch};
use crate::region::{MemSource, RegionSnapshot};
use crate::storage::merge::{is_tag, merge_dedup};

/// Group key: the values of the `group_by` tags ("" when absent).
pub type GroupKey = Vec<String>;

/// Aggregates of one region: per group, per bucket, one accumulator per field of `fields`.
#[derive(Debug, Default)]
pub struct AggPartial {
    pub fields: Vec<String>,
    pub groups: HashMap<GroupKey, BTreeMap<i64, Vec<Acc>>>,
}

/// Raw rows of one region: per group, rows (time, values aligned with `columns`).
#[derive(Debug, Default)]
pub struct RawPartial {
    /// Tag columns (not in group_by) then fields.
    pub columns: Vec<String>,
    pub tag_columns: usize,
    pub groups: BTreeMap<GroupKey, Vec<(i64, Vec<Value>)>>,
    pub rows: usize,
}

#[derive(Debug)]
pub enum Partial {
    Agg(AggPartial),
    Raw(RawPartial),
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
    batch: RecordBatch,
    min: i64,
    max: i64,
    /// Ingest shards whose rows it may hold (`None`: unknown, may hold any).
    shards: Option<Vec<usize>>,
}

fn may_share_points(a: &Source, b: &Source) -> bool {
    let time = a.min <= b.max && b.min <= a.max;
    let shards = match (&a.shards, &b.shards) {
        (Some(x), Some(y)) => x.iter().any(|s| y.contains(s)),
        _ => true,
    };
    time && shards
}

/// Reads the needed columns and row groups of a file.
fn read_file(
    path: &Path,
    spec: &QuerySpec,
    stats: &mut ScanStats,
) -> Result<Option<RecordBatch>, String> {
    let err = |e: &dyn std::fmt::Display| format!("reading {}: {e}", path.display());
    let file = File::open(path).map_err(|e| err(&e))?;
    // The page index lets a row filter skip whole pages: rows are sorted by tag set, so the
    // rows of a tag value are contiguous.
    let policy = if spec.preds.is_empty() {
        PageIndexPolicy::Skip
    } else {
        PageIndexPolicy::Optional
    };
    let options = ArrowReaderOptions::new().with_page_index_policy(policy);
    let mut builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| err(&e))?;
    let arrow_schema = builder.schema().clone();
    let parquet_schema = builder.parquet_schema();
    // Columns: time, every tag (identity and predicates), requested fields.
    let wanted: Vec<usize> = arrow_schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.name() == TIME_COLUMN
                || is_tag(f.data_type())
                || spec
                    .fields
                    .as_ref()
                    .is_none_or(|l| l.iter().any(|n| n == f.name()))
        })
        .map(|(i, _)| i)
        .collect();
    // Row groups: by time statistics and tag equality statistics.
    let col_index = |name: &str| {
        (0..parquet_schema.num_columns()).find(|i| parquet_schema.column(*i).name() == name)
    };
    let time_col = col_index(TIME_COLUMN);
    let eq_preds: Vec<(usize, &str)> = spec
        .preds
        .iter()
        .filter_map(|p| match &p.op {
            TagOp::Eq(v) if !v.is_empty() => col_index(&p.key).map(|c| (c, v.as_str())),
            _ => None,
        })
        .collect();
    let mut groups = Vec::new();
    for (i, rg) in builder.metadata().row_groups().iter().enumerate() {
        let mut keep = true;
        if let Some(Statistics::Int64(s)) = time_col.and_then(|c| rg.column(c).statistics())
            && let (Some(min), Some(max)) = (s.min_opt(), s.max_opt())
        {
            keep &= spec.overlaps(*min, *max);
        }
        for (c, v) in &eq_preds {
            if let Some(Statistics::ByteArray(s)) = rg.column(*c).statistics()
                && let (Some(min), Some(max)) = (s.min_opt(), s.max_opt())
            {
                // Null count = rows: the tag is absent everywhere in this group.
                let all_null = s.null_count_opt() == Some(rg.num_rows() as u64);
                keep &= !all_null && min.data() <= v.as_bytes() && v.as_bytes() <= max.data();
            }
        }
        if keep {
            groups.push(i);
        } else {
            stats.row_groups_pruned += 1;
        }
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let mask = ProjectionMask::roots(parquet_schema, wanted);
    // Tag predicates as a row filter: the reader decodes the tag columns first and reads the
    // other columns only where rows match (late materialisation).
    let filtered: Vec<(usize, super::plan::TagPred)> = spec
        .preds
        .iter()
        .filter_map(|p| arrow_schema.index_of(&p.key).ok().map(|i| (i, p.clone())))
        .collect();
    if !filtered.is_empty() {
        let mut roots: Vec<usize> = filtered.iter().map(|(i, _)| *i).collect();
        roots.sort_unstable();
        roots.dedup();
        let pred_mask = ProjectionMask::roots(parquet_schema, roots);
        let preds: Vec<super::plan::TagPred> = filtered.into_iter().map(|(_, p)| p).collect();
        let predicate = ArrowPredicateFn::new(pred_mask, move |batch: RecordBatch| {
            let mut keep = vec![true; batch.num_rows()];
            for p in &preds {
                let Some(col) = batch.column_by_name(&p.key) else {
                    continue;
                };
                let lookup = tag_lookup(col).map_err(arrow::error::ArrowError::ComputeError)?;
                let verdict: Vec<bool> = lookup
                    .values
                    .iter()
                    .map(|v| p.matches(v.as_deref()))
                    .collect();
                for (i, k) in keep.iter_mut().enumerate() {
                    *k = *k && verdict[lookup.key(i)];
                }
            }
            Ok(BooleanArray::from(keep))
        });
        builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
    }
    let reader = builder
        .with_projection(mask)
        .with_row_groups(groups)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| err(&e))?;
    let schema = reader.schema();
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| err(&e))?);
    }
    stats.files_read += 1;
    let batch = arrow::compute::concat_batches(&schema, &batches).map_err(|e| err(&e))?;
    Ok(Some(batch))
}

/// Sorted, deduplicated rows of an in-memory block, filtered by series with a roaring
/// bitmap of the series ids that match the predicates (evaluated once per series).
fn mem_batch(chunks: &[Arc<Chunk>], spec: &QuerySpec) -> Result<Option<RecordBatch>, String> {
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
    // Drop rows of non-matching series and outside the range before sorting.
    let all_match = matching.len() as usize == last.series.len();
    let mut relevant: Vec<Arc<Chunk>> = Vec::new();
    for c in chunks
        .iter()
        .filter(|c| spec.overlaps(c.min_time, c.max_time))
    {
        let in_range = c.min_time >= spec.start && c.max_time < spec.end;
        if all_match && in_range {
            relevant.push(c.clone());
            continue;
        }
        let mask: BooleanArray = c
            .sid
            .values()
            .iter()
            .zip(c.time.values().iter())
            .map(|(sid, t)| Some(matching.contains(*sid) && *t >= spec.start && *t < spec.end))
            .collect();
        if mask.true_count() == 0 {
            continue;
        }
        let f = |a: &dyn Array| {
            arrow::compute::filter(a, &mask).map_err(|e| format!("filtering in-memory rows: {e}"))
        };
        let time = f(c.time.as_ref())?;
        let sid = f(c.sid.as_ref())?;
        let fields = c
            .fields
            .iter()
            .map(|(n, t, a)| Ok((n.clone(), *t, f(a.as_ref())?)))
            .collect::<Result<Vec<_>, String>>()?;
        relevant.push(Arc::new(Chunk {
            time: Arc::new(
                time.as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                    .clone(),
            ),
            sid: Arc::new(sid.as_primitive::<arrow::datatypes::UInt32Type>().clone()),
            fields,
            series: c.series.clone(),
            min_time: c.min_time,
            max_time: c.max_time,
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
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or("batch without a time column")?;
    let mut keep: Vec<bool> = time
        .values()
        .iter()
        .map(|t| *t >= spec.start && *t < spec.end)
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

/// Calls `f` with the accumulator of each row's slot (field `fi` of `stride` per slot) for
/// every row whose value is not null. Generic, so each column type's loop is monomorphised.
#[inline(always)]
fn fold_valid<F: FnMut(&mut Acc, usize) + ?Sized>(
    nulls: Option<&arrow::buffer::NullBuffer>,
    row_slot: &[usize],
    local: &mut [Acc],
    stride: usize,
    fi: usize,
    f: &mut F,
) {
    for (i, slot) in row_slot.iter().enumerate() {
        if nulls.is_none_or(|b| b.is_valid(i)) {
            f(&mut local[slot * stride + fi], i);
        }
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
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or("batch without a time column")?;
    // Field columns of this batch in the output order.
    let schema = batch.schema();
    let field_names: Vec<String> = match &spec.fields {
        Some(list) => list.clone(),
        None => schema
            .fields()
            .iter()
            .filter(|f| f.name() != TIME_COLUMN && !is_tag(f.data_type()))
            .map(|f| f.name().clone())
            .collect(),
    };
    let mut slots_of_field = Vec::with_capacity(field_names.len());
    for name in &field_names {
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
        slots_of_field.push(pos);
    }
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
    let mut local: Vec<Acc> = vec![Acc::default(); slots.len() * field_names.len()];
    let agg = spec.agg;
    for (fi, name) in field_names.iter().enumerate() {
        let Some(col) = batch.column_by_name(name) else {
            continue;
        };
        let nfl = field_names.len();
        let nulls = col.nulls();
        let stamp = |i: usize| (time.value(i), rank_base + i as u64);
        match col.data_type() {
            DataType::Float64 => {
                let a = col.as_primitive::<Float64Type>();
                fold_valid(
                    nulls,
                    &row_slot,
                    &mut local,
                    nfl,
                    fi,
                    &mut |acc: &mut Acc, i: usize| {
                        let (t, r) = stamp(i);
                        acc.add_float(agg, a.value(i), t, r)
                    },
                );
            }
            DataType::Int64 => {
                let a = col.as_primitive::<Int64Type>();
                fold_valid(
                    nulls,
                    &row_slot,
                    &mut local,
                    nfl,
                    fi,
                    &mut |acc: &mut Acc, i: usize| {
                        let (t, r) = stamp(i);
                        acc.add_int(agg, a.value(i) as i128, false, t, r)
                    },
                );
            }
            DataType::UInt64 => {
                let a = col.as_primitive::<UInt64Type>();
                fold_valid(
                    nulls,
                    &row_slot,
                    &mut local,
                    nfl,
                    fi,
                    &mut |acc: &mut Acc, i: usize| {
                        let (t, r) = stamp(i);
                        acc.add_int(agg, a.value(i) as i128, true, t, r)
                    },
                );
            }
            DataType::Utf8 => {
                let a = col.as_string::<i32>();
                fold_valid(
                    nulls,
                    &row_slot,
                    &mut local,
                    nfl,
                    fi,
                    &mut |acc: &mut Acc, i: usize| {
                        let (t, r) = stamp(i);
                        acc.add_other(agg, || Value::Str(a.value(i).to_string()), t, r)
                    },
                );
            }
            DataType::Boolean => {
                let a = col.as_boolean();
                fold_valid(
                    nulls,
                    &row_slot,
                    &mut local,
                    nfl,
                    fi,
                    &mut |acc: &mut Acc, i: usize| {
                        let (t, r) = stamp(i);
                        acc.add_other(agg, || Value::Bool(a.value(i)), t, r)
                    },
                );
            }
            _ => {}
        }
    }
    for (s, (g, bucket)) in slots.iter().enumerate() {
        let accs = out
            .groups
            .entry(group_keys[*g].clone())
            .or_default()
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

/// Collects filtered rows for `agg=none`, sorted by time inside each group.
fn collect_raw(batch: &RecordBatch, spec: &QuerySpec, out: &mut RawPartial) -> Result<(), String> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(());
    }
    let schema = batch.schema();
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or("batch without a time column")?;
    // Register columns: tags not grouped on, then fields.
    for f in schema.fields() {
        let name = f.name();
        if name == TIME_COLUMN || spec.group_by.contains(name) || out.columns.contains(name) {
            continue;
        }
        if is_tag(f.data_type()) {
            out.columns.insert(out.tag_columns, name.clone());
            out.tag_columns += 1;
            for rows in out.groups.values_mut() {
                for (_, vals) in rows.iter_mut() {
                    vals.insert(out.tag_columns - 1, Value::Null);
                }
            }
        } else if spec.fields.as_ref().is_none_or(|l| l.contains(name)) {
            out.columns.push(name.clone());
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
        out.groups
            .entry(key)
            .or_default()
            .push((time.value(i), vals));
        out.rows += 1;
    }
    Ok(())
}

/// Scans one region's snapshot.
pub fn scan_region(
    snap: &RegionSnapshot,
    spec: &QuerySpec,
    max_rows: usize,
) -> Result<(Partial, ScanStats), String> {
    let mut stats = ScanStats::default();
    // Partitions in time order; each with its file and memory sources.
    let mut parts: BTreeMap<i64, (Vec<&FileMeta>, Vec<&MemSource>)> = BTreeMap::new();
    for f in &snap.files {
        if f.measurement == spec.measurement && spec.overlaps(f.min_time, f.max_time) {
            parts.entry(f.partition_start).or_default().0.push(f);
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
    let mut rank_base = 0u64;
    for (_, (mut files, mut mems)) in parts {
        files.sort_by_key(|f| f.seq);
        // Flushing blocks are older than active ones; among them, file seq order.
        mems.sort_by_key(|m| m.flushing_file_seq.map_or((1, 0), |s| (0, s)));
        let mut sources: Vec<Source> = Vec::new();
        for f in files {
            if let Some(batch) = read_file(&snap.region_dir.join(&f.path), spec, &mut stats)? {
                let mut shards: Vec<usize> = f.wal.iter().map(|w| w.shard).collect();
                shards.dedup();
                sources.push(Source {
                    batch,
                    min: f.min_time,
                    max: f.max_time,
                    shards: (!f.wal.is_empty()).then_some(shards),
                });
            }
        }
        for m in mems {
            if let Some(batch) = mem_batch(&m.chunks, spec)? {
                let (min, max) = m.chunks.iter().fold((i64::MAX, i64::MIN), |(a, b), c| {
                    (a.min(c.min_time), b.max(c.max_time))
                });
                sources.push(Source {
                    batch,
                    min,
                    max,
                    shards: Some(vec![m.shard]),
                });
            }
        }
        let overlapping = sources
            .iter()
            .enumerate()
            .any(|(i, a)| sources[i + 1..].iter().any(|b| may_share_points(a, b)));
        let batches: Vec<RecordBatch> = if overlapping {
            let all: Vec<RecordBatch> = sources.into_iter().map(|s| s.batch).collect();
            vec![
                merge_dedup(&all)
                    .map_err(|e| format!("merging sources: {e}"))?
                    .0,
            ]
        } else {
            sources.into_iter().map(|s| s.batch).collect()
        };
        for batch in batches {
            stats.rows_scanned += batch.num_rows() as u64;
            let mask = filter_mask(&batch, spec)?;
            let filtered =
                filter_record_batch(&batch, &mask).map_err(|e| format!("filtering: {e}"))?;
            match &mut partial {
                Partial::Agg(a) => aggregate(&filtered, spec, a, rank_base)?,
                Partial::Raw(r) => {
                    collect_raw(&filtered, spec, r)?;
                    if r.rows > max_rows {
                        return Err(format!(
                            "the query returns more than {max_rows} raw rows (query.max_rows); add a limit, an aggregate or a narrower time range"
                        ));
                    }
                }
            }
            rank_base += filtered.num_rows() as u64;
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
