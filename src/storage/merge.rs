//! Merge of record batches that may hold the same points: sort by tag set then time, and
//! merge rows of the same identity (tag set, time) last-write-wins field by field.
//!
//! Used wherever data from several sources meets: a query over files and memory of one
//! partition, and compaction. Sources are given oldest first; a later source wins. A tag
//! column is any Dictionary(_, Utf8) column (that is how every Meridian file stores tags);
//! `time` is the Timestamp(ns) column; every other column is a field.
//!
//! Invariant: the output has one row per identity, sorted by (tags in key order, nulls
//! first; then time), with columns `time`, tags sorted by name, fields sorted by name.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, new_null_array};
use arrow::compute::{cast, concat, take};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};

use crate::model::TIME_COLUMN;
use crate::storage::schema::{is_tag, tag_indices, tag_type, time_type};

/// The union schema of `batches`: time, tags (sorted), fields (sorted; first type seen wins).
pub fn union_schema(batches: &[RecordBatch]) -> Schema {
    let mut tags: Vec<String> = Vec::new();
    let mut fields: Vec<(String, DataType)> = Vec::new();
    for b in batches {
        for f in b.schema().fields() {
            if f.name() == TIME_COLUMN {
                continue;
            }
            if is_tag(f.data_type()) {
                if !tags.iter().any(|t| t == f.name()) {
                    tags.push(f.name().clone());
                }
            } else if !fields.iter().any(|(n, _)| n == f.name()) {
                fields.push((f.name().clone(), f.data_type().clone()));
            }
        }
    }
    tags.sort();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = vec![Field::new(TIME_COLUMN, time_type(), false)];
    out.extend(tags.into_iter().map(|t| Field::new(t, tag_type(), true)));
    out.extend(fields.into_iter().map(|(n, t)| Field::new(n, t, true)));
    Schema::new(out)
}

/// `batch` with exactly the columns of `schema` (missing ones all-null, types cast).
pub fn conform(batch: &RecordBatch, schema: &Arc<Schema>) -> Result<RecordBatch, ArrowError> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
    RecordBatch::try_new(schema.clone(), cols)
}

/// Turns the tag columns of batches into comparable keys (one converter, so keys of
/// different batches compare too).
pub struct TagKeyer {
    /// `None` without tag columns: every row then has the same, empty, tag set (a row
    /// converter over no columns would give no rows at all).
    converter: Option<RowConverter>,
}

/// The tag-set keys of one batch's rows.
pub struct TagKeys(Option<Rows>);

impl TagKeyer {
    /// A keyer for tag columns of these types, in this order.
    pub fn new(types: impl Iterator<Item = DataType>) -> Result<TagKeyer, ArrowError> {
        let fields: Vec<SortField> = types.map(SortField::new).collect();
        Ok(TagKeyer {
            converter: if fields.is_empty() {
                None
            } else {
                Some(RowConverter::new(fields)?)
            },
        })
    }

    /// Keys of the rows of `cols` (the tag columns, in the keyer's order).
    pub fn keys(&self, cols: &[ArrayRef]) -> Result<TagKeys, ArrowError> {
        Ok(TagKeys(match &self.converter {
            Some(c) => Some(c.convert_columns(cols)?),
            None => None,
        }))
    }
}

impl TagKeys {
    /// Orders rows `a` and `b` by tag set.
    pub fn cmp(&self, a: usize, b: usize) -> std::cmp::Ordering {
        match &self.0 {
            Some(r) => r.row(a).cmp(&r.row(b)),
            None => std::cmp::Ordering::Equal,
        }
    }

    /// Row `i`'s key, kept beyond this batch (`None`: no tag columns, every key equal).
    pub fn owned(&self, i: usize) -> Option<OwnedRow> {
        self.0.as_ref().map(|r| r.row(i).owned())
    }
}

/// Memory [`merge_dedup`] takes beside its `sources` at its peak: their concatenation and
/// the merged output (each about as large as the sources), the row keys of the tag columns
/// and the row order. An estimate, for budgets that must hold before the merge runs.
pub fn merge_dedup_memory(sources: &[RecordBatch]) -> usize {
    let rows: usize = sources.iter().map(RecordBatch::num_rows).sum();
    let bytes: usize = sources.iter().map(RecordBatch::get_array_memory_size).sum();
    let tags = sources
        .iter()
        .map(|b| tag_indices(b.schema_ref()).len())
        .max()
        .unwrap_or(0);
    2 * bytes + rows * (12 + 24 * tags)
}

/// Merges `sources` (oldest first). Returns the merged batch and how many rows were
/// merged away as duplicates.
pub fn merge_dedup(sources: &[RecordBatch]) -> Result<(RecordBatch, usize), ArrowError> {
    let schema = Arc::new(union_schema(sources));
    let conformed: Vec<RecordBatch> = sources
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| conform(b, &schema))
        .collect::<Result<_, _>>()?;
    if conformed.is_empty() {
        return Ok((RecordBatch::new_empty(schema), 0));
    }
    let columns: Vec<ArrayRef> = (0..schema.fields().len())
        .map(|i| {
            let parts: Vec<&dyn Array> = conformed.iter().map(|b| b.column(i).as_ref()).collect();
            concat(&parts)
        })
        .collect::<Result<_, _>>()?;
    let n = columns[0].len();
    let tag_idx = tag_indices(&schema);
    let time = columns[0]
        .as_any()
        .downcast_ref::<arrow::array::TimestampNanosecondArray>()
        .ok_or_else(|| ArrowError::CastError("time column is not Timestamp(ns)".into()))?;

    let tag_cols: Vec<ArrayRef> = tag_idx.iter().map(|i| columns[*i].clone()).collect();
    let keys = TagKeyer::new(tag_cols.iter().map(|c| c.data_type().clone()))?.keys(&tag_cols)?;
    let cmp_tags = |a: usize, b: usize| keys.cmp(a, b);

    // Order: tag set, time, then position (later source = later position = wins).
    let n32 = u32::try_from(n).map_err(|_| {
        ArrowError::ComputeError(format!("cannot merge {n} rows at once (at most 2^32)"))
    })?;
    let mut order: Vec<u32> = (0..n32).collect();
    order.sort_unstable_by(|a, b| {
        let (a, b) = (*a as usize, *b as usize);
        cmp_tags(a, b)
            .then(time.value(a).cmp(&time.value(b)))
            .then(a.cmp(&b))
    });

    let mut base: Vec<u32> = Vec::with_capacity(n);
    let mut runs: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    let mut i = 0;
    while i < n {
        let a = order[i] as usize;
        let mut j = i + 1;
        while j < n {
            let b = order[j] as usize;
            if time.value(a) != time.value(b) || cmp_tags(a, b).is_ne() {
                break;
            }
            j += 1;
        }
        if j - i > 1 {
            runs.push((base.len(), i..j));
        }
        base.push(order[j - 1]);
        i = j;
    }
    let merged = n - base.len();
    let base_idx = UInt32Array::from(base.clone());
    let mut out = Vec::with_capacity(columns.len());
    for (ci, col) in columns.iter().enumerate() {
        let is_field = ci != 0 && !tag_idx.contains(&ci);
        if !is_field || runs.is_empty() || col.null_count() == 0 {
            out.push(take(col.as_ref(), &base_idx, None)?);
            continue;
        }
        let mut idx = base.clone();
        for (out_row, run) in &runs {
            if let Some(r) = order[run.clone()]
                .iter()
                .rev()
                .find(|r| col.is_valid(**r as usize))
            {
                idx[*out_row] = *r;
            }
        }
        out.push(take(col.as_ref(), &UInt32Array::from(idx), None)?);
    }
    Ok((RecordBatch::try_new(schema, out)?, merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        AsArray, DictionaryArray, Float64Array, Int64Array, TimestampNanosecondArray,
    };
    use arrow::datatypes::{Float64Type, Int32Type, Int64Type};

    fn batch(
        hosts: &[Option<&str>],
        times: &[i64],
        x: &[Option<f64>],
        y: Option<&[Option<i64>]>,
    ) -> RecordBatch {
        let mut fields = vec![
            Field::new("time", time_type(), false),
            Field::new("host", tag_type(), true),
            Field::new("x", DataType::Float64, true),
        ];
        let host: DictionaryArray<Int32Type> = hosts.iter().copied().collect();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(times.to_vec()).with_timezone("UTC")),
            Arc::new(host),
            Arc::new(Float64Array::from(x.to_vec())),
        ];
        if let Some(y) = y {
            fields.push(Field::new("y", DataType::Int64, true));
            cols.push(Arc::new(Int64Array::from(y.to_vec())));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }

    #[test]
    fn later_sources_win_field_by_field() {
        let old = batch(
            &[Some("a"), Some("b")],
            &[10, 10],
            &[Some(1.0), Some(2.0)],
            Some(&[Some(7), Some(8)]),
        );
        let new = batch(&[Some("a"), None], &[10, 5], &[None, Some(3.0)], None);
        let newer = batch(&[Some("a")], &[10], &[Some(9.0)], None);
        let (out, merged) = merge_dedup(&[old, new, newer]).unwrap();
        assert_eq!(merged, 2);
        assert_eq!(out.num_rows(), 3);
        let names: Vec<String> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, vec!["time", "host", "x", "y"]);
        // Order: host null first, then a, then b.
        let host = out.column(1).as_dictionary::<Int32Type>();
        let vals = host.values().as_string::<i32>();
        let hosts: Vec<Option<&str>> = (0..3)
            .map(|i| {
                host.is_valid(i)
                    .then(|| vals.value(host.keys().value(i) as usize))
            })
            .collect();
        assert_eq!(hosts, vec![None, Some("a"), Some("b")]);
        let x = out.column(2).as_primitive::<Float64Type>();
        let y = out.column(3).as_primitive::<Int64Type>();
        assert_eq!(x.value(0), 3.0);
        assert!(y.is_null(0));
        // a@10: x from the newest source, y kept from the oldest (absent later).
        assert_eq!((x.value(1), y.value(1)), (9.0, 7));
        assert_eq!((x.value(2), y.value(2)), (2.0, 8));
    }

    /// Series without tags, written twice (two files): one row per time, the later wins.
    #[test]
    fn tagless_sources_merge_by_time() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", time_type(), false),
            Field::new("x", DataType::Float64, true),
        ]));
        let b = |t: Vec<i64>, x: Vec<f64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(TimestampNanosecondArray::from(t).with_timezone("UTC")),
                    Arc::new(Float64Array::from(x)),
                ],
            )
            .unwrap()
        };
        let (out, merged) = merge_dedup(&[
            b(vec![1, 2, 3], vec![1.0, 2.0, 3.0]),
            b(vec![3, 2], vec![30.0, 20.0]),
        ])
        .unwrap();
        assert_eq!((out.num_rows(), merged), (3, 2));
        let x = out.column(1).as_primitive::<Float64Type>();
        assert_eq!(x.values().to_vec(), vec![1.0, 20.0, 30.0]);
    }

    #[test]
    fn empty_input() {
        let (out, merged) = merge_dedup(&[]).unwrap();
        assert_eq!((out.num_rows(), merged), (0, 0));
    }
}
