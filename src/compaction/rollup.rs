//! Downsampling: one sorted, deduplicated batch → one row per (series, time bucket).
//!
//! Buckets are aligned to the epoch: bucket start = `t - t.rem_euclid(every)`, which is the
//! row's `time`. Tags are kept; each numeric field `f` gives one column per aggregate,
//! `f_count`, `f_sum`, `f_mean`, `f_min`, `f_max`, `f_first`, `f_last`, over the non-null
//! values of `f` in the bucket. `count` is an integer, `mean` a float, the others keep the
//! field's type; an integer `sum` that overflows 64 bits is null. Sums run in time order from
//! zero. An aggregate over no value is null, and a bucket where no numeric field has a value
//! (only strings or booleans) gives no row. String and boolean fields are not aggregated.
//!
//! Invariant: the input is sorted by tag set then time (as `storage::merge` leaves it), so
//! every (series, bucket) is one contiguous run of rows.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, PrimitiveArray, RecordBatch,
    TimestampNanosecondArray, UInt32Array,
};
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Float64Type, Int64Type, Schema, UInt64Type,
};
use arrow::error::ArrowError;

use crate::model::TIME_COLUMN;
use crate::storage::merge::TagKeyer;
use crate::storage::schema::tag_indices;
use crate::storage::schema::time_type;

use super::plan::{Agg, rollup_column};

/// Numeric field types the rollup aggregates.
trait Num: ArrowPrimitiveType {
    fn sum(vals: &[Self::Native]) -> Option<Self::Native>;
    fn mean(vals: &[Self::Native]) -> f64;
    fn less(a: Self::Native, b: Self::Native) -> bool;
}

impl Num for Float64Type {
    fn sum(vals: &[f64]) -> Option<f64> {
        Some(vals.iter().fold(0.0, |a, b| a + b))
    }
    fn mean(vals: &[f64]) -> f64 {
        vals.iter().fold(0.0, |a, b| a + b) / vals.len() as f64
    }
    fn less(a: f64, b: f64) -> bool {
        a.total_cmp(&b).is_lt()
    }
}

impl Num for Int64Type {
    fn sum(vals: &[i64]) -> Option<i64> {
        vals.iter().try_fold(0i64, |a, b| a.checked_add(*b))
    }
    fn mean(vals: &[i64]) -> f64 {
        vals.iter().map(|v| i128::from(*v)).sum::<i128>() as f64 / vals.len() as f64
    }
    fn less(a: i64, b: i64) -> bool {
        a < b
    }
}

impl Num for UInt64Type {
    fn sum(vals: &[u64]) -> Option<u64> {
        vals.iter().try_fold(0u64, |a, b| a.checked_add(*b))
    }
    fn mean(vals: &[u64]) -> f64 {
        vals.iter().map(|v| u128::from(*v)).sum::<u128>() as f64 / vals.len() as f64
    }
    fn less(a: u64, b: u64) -> bool {
        a < b
    }
}

/// Aggregates of one field over every group: (column name, array) per aggregate, and
/// which groups had a value.
fn aggregate<T: Num>(
    name: &str,
    col: &ArrayRef,
    groups: &[Range<usize>],
    aggs: &[Agg],
    has_value: &mut [bool],
) -> Result<Vec<(String, ArrayRef)>, ArrowError> {
    let arr: &PrimitiveArray<T> = col
        .as_primitive_opt::<T>()
        .ok_or_else(|| ArrowError::CastError(format!("field {name} is not {}", T::DATA_TYPE)))?;
    let g = groups.len();
    let mut count: Vec<Option<i64>> = Vec::with_capacity(g);
    let mut mean: Vec<Option<f64>> = Vec::with_capacity(g);
    let mut sum: Vec<Option<T::Native>> = Vec::with_capacity(g);
    let mut min: Vec<Option<T::Native>> = Vec::with_capacity(g);
    let mut max: Vec<Option<T::Native>> = Vec::with_capacity(g);
    let mut first: Vec<Option<T::Native>> = Vec::with_capacity(g);
    let mut last: Vec<Option<T::Native>> = Vec::with_capacity(g);
    let mut vals: Vec<T::Native> = Vec::new();
    for (gi, r) in groups.iter().enumerate() {
        vals.clear();
        vals.extend(r.clone().filter(|i| arr.is_valid(*i)).map(|i| arr.value(i)));
        if vals.is_empty() {
            for v in [&mut sum, &mut min, &mut max, &mut first, &mut last] {
                v.push(None);
            }
            count.push(None);
            mean.push(None);
            continue;
        }
        has_value[gi] = true;
        count.push(Some(vals.len() as i64));
        mean.push(Some(T::mean(&vals)));
        sum.push(T::sum(&vals));
        let pick = |better: fn(T::Native, T::Native) -> bool| {
            vals.iter()
                .copied()
                .reduce(|a, b| if better(b, a) { b } else { a })
        };
        min.push(pick(T::less));
        max.push(pick(|a, b| T::less(b, a)));
        first.push(vals.first().copied());
        last.push(vals.last().copied());
    }
    let prim = |v: &Vec<Option<T::Native>>| -> ArrayRef {
        Arc::new(v.iter().copied().collect::<PrimitiveArray<T>>())
    };
    Ok(aggs
        .iter()
        .map(|a| {
            let arr: ArrayRef = match a {
                Agg::Count => Arc::new(Int64Array::from(count.clone())),
                Agg::Mean => Arc::new(Float64Array::from(mean.clone())),
                Agg::Sum => prim(&sum),
                Agg::Min => prim(&min),
                Agg::Max => prim(&max),
                Agg::First => prim(&first),
                Agg::Last => prim(&last),
            };
            (rollup_column(name, *a), arr)
        })
        .collect())
}

/// Rolls `batch` (sorted by tag set then time, one row per identity) up into buckets of
/// `every_ns`. See the module docs for the output.
pub fn rollup(batch: &RecordBatch, every_ns: i64, aggs: &[Agg]) -> Result<RecordBatch, ArrowError> {
    if every_ns <= 0 {
        return Err(ArrowError::InvalidArgumentError(
            "bucket width must be positive".into(),
        ));
    }
    let schema = batch.schema();
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| ArrowError::SchemaError("no Timestamp(ns) time column".into()))?;
    let tag_idx = tag_indices(&schema);
    let n = batch.num_rows();
    let mut buckets: Vec<i64> = Vec::with_capacity(n);
    for i in 0..n {
        let t = time.value(i);
        buckets.push(
            t.checked_sub(t.rem_euclid(every_ns)).ok_or_else(|| {
                ArrowError::ComputeError(format!("time {t} has no bucket in range"))
            })?,
        );
    }
    let tag_cols: Vec<ArrayRef> = tag_idx.iter().map(|i| batch.column(*i).clone()).collect();
    let rows = TagKeyer::new(tag_cols.iter().map(|c| c.data_type().clone()))?.keys(&tag_cols)?;
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for i in 1..=n {
        if i == n || buckets[i] != buckets[start] || rows.cmp(i, start).is_ne() {
            groups.push(start..i);
            start = i;
        }
    }
    if n == 0 {
        groups.clear();
    }

    let firsts = UInt32Array::from_iter_values(groups.iter().map(|g| g.start as u32));
    let mut fields = vec![Field::new(TIME_COLUMN, time_type(), false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(
        TimestampNanosecondArray::from_iter_values(groups.iter().map(|g| buckets[g.start]))
            .with_timezone("UTC"),
    )];
    for i in &tag_idx {
        fields.push(schema.field(*i).clone());
        cols.push(take(batch.column(*i).as_ref(), &firsts, None)?);
    }
    let mut has_value = vec![false; groups.len()];
    for (i, f) in schema.fields().iter().enumerate() {
        if f.name() == TIME_COLUMN || tag_idx.contains(&i) {
            continue;
        }
        let col = batch.column(i);
        let out = match f.data_type() {
            DataType::Float64 => {
                aggregate::<Float64Type>(f.name(), col, &groups, aggs, &mut has_value)?
            }
            DataType::Int64 => {
                aggregate::<Int64Type>(f.name(), col, &groups, aggs, &mut has_value)?
            }
            DataType::UInt64 => {
                aggregate::<UInt64Type>(f.name(), col, &groups, aggs, &mut has_value)?
            }
            _ => continue,
        };
        for (name, arr) in out {
            fields.push(Field::new(name, arr.data_type().clone(), true));
            cols.push(arr);
        }
    }
    let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    if has_value.iter().all(|v| *v) {
        return Ok(out);
    }
    filter_record_batch(&out, &BooleanArray::from(has_value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, StringArray, UInt64Array};
    use arrow::datatypes::{Float64Type, Int32Type};

    use crate::storage::schema::tag_type;

    const M: i64 = 60_000_000_000;

    fn input() -> RecordBatch {
        // Series a: t = 0, 10s, 70s (buckets 0, 0, 60s); series b: t = -5s (bucket -60s), 30s.
        let schema = Arc::new(Schema::new(vec![
            Field::new(TIME_COLUMN, time_type(), false),
            Field::new("host", tag_type(), true),
            Field::new("f", DataType::Float64, true),
            Field::new("i", DataType::Int64, true),
            Field::new("u", DataType::UInt64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let s = 1_000_000_000;
        let host: DictionaryArray<Int32Type> = vec![
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("b"),
        ]
        .into_iter()
        .collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from(vec![0, 10 * s, 70 * s, -5 * s, 30 * s, 40 * s])
                    .with_timezone("UTC"),
            ),
            Arc::new(host),
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                Some(-2.0),
                None,
                Some(4.0),
                None,
                None,
            ])),
            Arc::new(Int64Array::from(vec![
                Some(i64::MAX),
                Some(1),
                Some(7),
                None,
                Some(3),
                None,
            ])),
            Arc::new(UInt64Array::from(vec![
                Some(5),
                Some(9),
                None,
                None,
                Some(2),
                None,
            ])),
            Arc::new(StringArray::from(vec![
                None,
                None,
                None,
                None,
                None,
                Some("only a string"),
            ])),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a ArrayRef {
        b.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    #[test]
    fn aggregates_per_series_and_bucket() {
        let out = rollup(&input(), M, &Agg::ALL).unwrap();
        // Groups: a@0 (2 rows), a@60s, b@-60s, b@0 (30s with values, 40s string only).
        assert_eq!(out.num_rows(), 4);
        let t = out
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(t.values().to_vec(), vec![0, M, -M, 0]);
        assert!(
            out.schema().column_with_name("s_count").is_none(),
            "strings are not aggregated"
        );
        let f_sum = col(&out, "f_sum").as_primitive::<Float64Type>();
        assert_eq!(f_sum.value(0), -0.5);
        assert!(f_sum.is_null(1));
        assert_eq!(f_sum.value(2), 4.0);
        let f_mean = col(&out, "f_mean").as_primitive::<Float64Type>();
        assert_eq!(f_mean.value(0), -0.25);
        let f_min = col(&out, "f_min").as_primitive::<Float64Type>();
        let f_max = col(&out, "f_max").as_primitive::<Float64Type>();
        assert_eq!((f_min.value(0), f_max.value(0)), (-2.0, 1.5));
        let f_first = col(&out, "f_first").as_primitive::<Float64Type>();
        let f_last = col(&out, "f_last").as_primitive::<Float64Type>();
        assert_eq!((f_first.value(0), f_last.value(0)), (1.5, -2.0));
        let f_count = col(&out, "f_count").as_primitive::<Int64Type>();
        assert_eq!(f_count.value(0), 2);
        assert!(f_count.is_null(1));
        // i64 overflow → null sum; the mean is still right.
        let i_sum = col(&out, "i_sum").as_primitive::<Int64Type>();
        assert!(i_sum.is_null(0));
        assert_eq!(i_sum.value(1), 7);
        assert_eq!(i_sum.value(3), 3);
        let i_mean = col(&out, "i_mean").as_primitive::<Float64Type>();
        assert_eq!(i_mean.value(0), (i64::MAX as i128 + 1) as f64 / 2.0);
        assert_eq!(col(&out, "i_max").data_type(), &DataType::Int64);
        let u_max = col(&out, "u_max").as_primitive::<UInt64Type>();
        assert_eq!(u_max.value(0), 9);
        assert_eq!(col(&out, "u_sum").as_primitive::<UInt64Type>().value(3), 2);
        // Tags carried over.
        let host = out.column(1).as_dictionary::<Int32Type>();
        let vals = host.values().as_string::<i32>();
        let hosts: Vec<&str> = (0..4)
            .map(|i| vals.value(host.keys().value(i) as usize))
            .collect();
        assert_eq!(hosts, vec!["a", "a", "b", "b"]);
    }

    #[test]
    fn only_requested_aggregates_and_empty_input() {
        let out = rollup(&input(), M, &[Agg::Max]).unwrap();
        let names: Vec<String> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, vec!["time", "host", "f_max", "i_max", "u_max"]);
        let empty = rollup(&input().slice(0, 0), M, &[Agg::Max]).unwrap();
        assert_eq!(empty.num_rows(), 0);
        assert!(rollup(&input(), 0, &[Agg::Max]).is_err());
        // One bucket over everything.
        let all = rollup(&input(), 1_000 * M, &[Agg::Count]).unwrap();
        assert_eq!(all.num_rows(), 3, "a@0, b@-1000m (t=-5s), b@0");
    }
}
