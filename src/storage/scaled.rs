//! Float fields written with few decimals (`12.34`, what most agents send) stored as scaled
//! integers: a Parquet `DECIMAL(18, s)` column on `INT64`, DELTA_BINARY_PACKED, instead of
//! `DOUBLE`.
//!
//! Doubles of such values have noisy low mantissa bits that neither a dictionary nor
//! BYTE_STREAM_SPLIT compress well; the same values as integers ×10^s are small deltas
//! (measured in `../shared/MEASURED.md`: 1.15 bytes per value against 1.80 for the best
//! double encoding, on two-decimal random walks).
//!
//! The choice is made per column from the values themselves, when a file is written (flush,
//! compaction, a delete's rewrite): the smallest scale `s` (at most [`MAX_SCALE`]) at which
//! every value `v` of the column is exactly `k / 10^s` for an integer `k` with
//! `|k| <= 2^53`, where `k / 10^s` is computed in floating point as readers do. Then `k / 10^s`
//! gives back the very double that was written (an IEEE division of two exactly
//! representable numbers is correctly rounded, as the parse of `12.34` is), and every
//! external reader gets the exact decimal value (DuckDB `DECIMAL(18,2)`, pyarrow
//! `decimal128(18, 2)`, polars and Spark decimals). A column with any other value (full
//! precision, `-0.0`, NaN, infinities, magnitudes past 2^53 / 10^s) stays `DOUBLE`.
//!
//! The footer key [`SCALED_FLOATS`] lists the columns stored so (`name:scale`, comma
//! separated): Meridian's type for them is a float field. Every reader of the engine turns
//! them back into `Float64` ([`decimal_to_f64`]).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Float64Array, PrimitiveArray};
use arrow::datatypes::{
    DataType, Decimal32Type, Decimal64Type, Decimal128Type, DecimalType, Float64Type, Schema,
    SchemaRef,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// Footer key: the columns stored as scaled integers, `name:scale,…`.
pub const SCALED_FLOATS: &str = "meridian.scaled_floats";

/// The largest scale tried (nine decimals).
pub const MAX_SCALE: u8 = 9;

/// Decimal precision of a scaled column: the most an `INT64` holds.
pub const PRECISION: u8 = 18;

/// Decimal precision of a scaled column whose integers all have at most 9 digits: stored as
/// `INT32`, half the bytes to encode, compress and decode (a two-decimal percentage ×100 is
/// at most 10,000).
pub const PRECISION_32: u8 = 9;

/// 10^s for s in 0..=MAX_SCALE, each exact as a double.
const POW10: [f64; MAX_SCALE as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Integers up to this magnitude are exact doubles.
const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

/// A float column stored as scaled integers: `DECIMAL(precision, scale)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaled {
    pub name: String,
    pub scale: u8,
    /// [`PRECISION_32`] (`INT32`) or [`PRECISION`] (`INT64`).
    pub precision: u8,
}

/// 10^s as a double (exact); `s` is at most [`MAX_SCALE`] (larger ones saturate there).
pub fn pow10(s: u8) -> f64 {
    POW10[usize::from(s.min(MAX_SCALE))]
}

/// `v` as `k` at scale `s`, if `k / 10^s` is exactly `v`.
pub fn scaled(v: f64, s: u8) -> Option<i64> {
    let p = POW10[s as usize];
    let k = (v * p).round();
    // Also refuses NaN and infinities (their product is not finite).
    if !k.is_finite() || k.abs() > EXACT {
        return None;
    }
    // What a reader computes from the stored integer; bitwise, so that -0.0 (stored as 0,
    // read back as +0.0) stays a double.
    let k = k as i64;
    let back = k as f64 / p;
    (back.to_bits() == v.to_bits()).then_some(k)
}

/// The smallest scale at which every value of `values` is a scaled integer, and the
/// decimal precision the integers need ([`PRECISION_32`] or [`PRECISION`]); `None` when
/// there is no such scale.
fn scale_and_digits(values: &Float64Array) -> Option<(u8, u8)> {
    if values.null_count() == values.len() {
        return None;
    }
    let mut s = 0u8;
    let mut check = |v: f64| -> bool {
        while scaled(v, s).is_none() {
            if s == MAX_SCALE {
                return false;
            }
            s += 1;
        }
        true
    };
    let ok = if values.null_count() == 0 {
        values.values().iter().all(|v| check(*v))
    } else {
        values.iter().flatten().all(&mut check)
    };
    if !ok {
        return None;
    }
    // Every value again at the scale found: one that was exact at a smaller scale may not
    // be at this one (past 2^53 once multiplied, or rounded otherwise), and the largest
    // integer decides the precision.
    let mut max = 0u64;
    for v in values.iter().flatten() {
        max = max.max(scaled(v, s)?.unsigned_abs());
    }
    Some((s, precision_for(max)))
}

/// The decimal precision a scaled column whose largest integer is `max` is stored at.
pub fn precision_for(max: u64) -> u8 {
    if max < 1_000_000_000 {
        PRECISION_32
    } else {
        PRECISION
    }
}

/// Each float column of `batch` that can be stored scaled, with its scale and precision
/// (the tests' way to ask for a whole batch; writers ask column by column).
#[cfg(test)]
pub fn choose(batch: &RecordBatch) -> Vec<Scaled> {
    let schema = batch.schema();
    schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter_map(|(f, c)| choose_column(f, c))
        .collect()
}

/// Whether one float column (of `field`) can be stored scaled, with its scale and precision.
pub fn choose_column(field: &arrow::datatypes::Field, column: &ArrayRef) -> Option<Scaled> {
    if *field.data_type() != DataType::Float64 {
        return None;
    }
    let values = column.as_primitive_opt::<Float64Type>()?;
    scale_and_digits(values).map(|(scale, precision)| Scaled {
        name: field.name().clone(),
        scale,
        precision,
    })
}

/// The scaled columns of a file, from the decimal columns of its Arrow schema.
pub fn of_schema(schema: &Schema) -> Vec<Scaled> {
    schema
        .fields()
        .iter()
        .filter_map(|f| match f.data_type() {
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s)
                if (0..=MAX_SCALE as i8).contains(s) && *p <= PRECISION =>
            {
                Some(Scaled {
                    name: f.name().clone(),
                    scale: *s as u8,
                    precision: *p,
                })
            }
            _ => None,
        })
        .collect()
}

/// The footer value of [`SCALED_FLOATS`] for `scales`.
pub fn footer(scales: &[Scaled]) -> String {
    scales
        .iter()
        .map(|c| format!("{}:{}", c.name, c.scale))
        .collect::<Vec<_>>()
        .join(",")
}

/// `schema` with the scaled columns as `Decimal128(precision, scale)` (stored as `INT32` or
/// `INT64` by precision; `Decimal128` in the Arrow schema of the footer, which every Arrow
/// version reads).
pub fn stored_schema(schema: &SchemaRef, scales: &[Scaled]) -> SchemaRef {
    if scales.is_empty() {
        return schema.clone();
    }
    let stored = super::schema::retype(schema, |f| {
        match scales.iter().find(|c| c.name == *f.name()) {
            Some(c) if *f.data_type() == DataType::Float64 => {
                Some(DataType::Decimal128(c.precision, c.scale as i8))
            }
            _ => None,
        }
    });
    stored.map_or_else(|| schema.clone(), Arc::new)
}

/// `batch` as a file with `scales` stores it (`stored` is [`stored_schema`]). A value that
/// is not exactly a scaled integer (the scales were chosen from other rows) is an error,
/// never a changed value.
pub fn to_stored(
    batch: &RecordBatch,
    scales: &[Scaled],
    stored: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    if scales.is_empty() {
        return Ok(batch.clone());
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let Some(sc) = scales.iter().find(|c| c.name == *f.name()) else {
            columns.push(c.clone());
            continue;
        };
        let s = &sc.scale;
        let values = c.as_primitive_opt::<Float64Type>().ok_or_else(|| {
            ArrowError::SchemaError(format!("scaled column {} is not Float64", f.name()))
        })?;
        let mut bad = None;
        let ints: Decimal128Array = values
            .iter()
            .map(|v| {
                v.and_then(|v| {
                    let k = scaled(v, *s);
                    if k.is_none() {
                        bad = Some(v);
                    }
                    k.map(i128::from)
                })
            })
            .collect();
        if let Some(v) = bad {
            return Err(ArrowError::ComputeError(format!(
                "column {}: {v} is not a multiple of 10^-{s}",
                f.name()
            )));
        }
        // Past the precision (rows the layout was not chosen from): an error, as above.
        let ints = ints.with_precision_and_scale(sc.precision, *s as i8)?;
        ints.validate_decimal_precision(sc.precision)?;
        columns.push(Arc::new(ints));
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(stored.clone(), columns, &options)
}

/// The reader type of a file's scaled column: a `Decimal128` stored on `INT32` (`INT64`)
/// as `Decimal32` (`Decimal64`), half or a quarter of the memory and a cheaper conversion to
/// floats; `None` for any other column (a decimal of another physical type reads as is).
pub fn narrow_decimal(dt: &DataType, physical: parquet::basic::Type) -> Option<DataType> {
    use parquet::basic::Type;
    match (dt, physical) {
        (DataType::Decimal128(p, s), Type::INT32) if *p <= PRECISION_32 => {
            Some(DataType::Decimal32(*p, *s))
        }
        (DataType::Decimal128(p, s), Type::INT64) if *p <= PRECISION => {
            Some(DataType::Decimal64(*p, *s))
        }
        _ => None,
    }
}

/// A decimal column read from a file as the `Float64` it was written as (`None`: not a
/// decimal column).
pub fn decimal_to_f64(array: &ArrayRef) -> Option<Result<ArrayRef, ArrowError>> {
    fn convert<D: DecimalType>(a: &PrimitiveArray<D>, scale: i8) -> Result<ArrayRef, ArrowError>
    where
        D::Native: Into<i128> + TryInto<i64>,
    {
        let p = usize::try_from(scale)
            .ok()
            .and_then(|s| POW10.get(s))
            .copied()
            .ok_or_else(|| {
                ArrowError::ComputeError(format!("decimal scale {scale} is not a Meridian scale"))
            })?;
        // A Meridian integer fits 64 bits (precision 18): converted by the CPU, not in
        // software as a 128-bit integer would be.
        let out: Float64Array = a.unary(|k| match k.try_into() {
            Ok(k) => {
                let k: i64 = k;
                k as f64 / p
            }
            Err(_) => {
                let k: i128 = k.into();
                k as f64 / p
            }
        });
        Ok(Arc::new(out))
    }
    Some(match array.data_type() {
        DataType::Decimal32(_, s) => convert(array.as_primitive::<Decimal32Type>(), *s),
        DataType::Decimal64(_, s) => convert(array.as_primitive::<Decimal64Type>(), *s),
        DataType::Decimal128(_, s) => convert(array.as_primitive::<Decimal128Type>(), *s),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    fn col(vals: &[Option<f64>]) -> Float64Array {
        vals.iter().copied().collect()
    }

    fn scale_of(values: &Float64Array) -> Option<u8> {
        scale_and_digits(values).map(|(s, _)| s)
    }

    #[test]
    fn the_smallest_exact_scale_is_chosen() {
        assert_eq!(scale_of(&col(&[Some(1.0), Some(-3.0), None])), Some(0));
        assert_eq!(
            scale_of(&col(&[Some(12.34), Some(0.5), Some(58.0)])),
            Some(2)
        );
        assert_eq!(
            scale_of(&col(&[Some(0.29), Some(0.57), Some(1.005)])),
            Some(3)
        );
        assert_eq!(scale_of(&col(&[Some(0.1 + 0.2)])), None);
        assert_eq!(scale_of(&col(&[Some(-0.0)])), None);
        assert_eq!(scale_of(&col(&[Some(f64::NAN)])), None);
        assert_eq!(scale_of(&col(&[Some(f64::INFINITY)])), None);
        assert_eq!(scale_of(&col(&[Some(1e300)])), None);
        assert_eq!(scale_of(&col(&[None, None])), None);
        // Exact at scale 0, not at the scale a later value needs (2e16 is past 2^53): the
        // column stays a double rather than fail to be written.
        assert_eq!(scale_of(&col(&[Some(2e13), Some(0.001)])), None);
        assert_eq!(scale_of(&col(&[Some(0.001), Some(2e13)])), None);
        assert_eq!(scale_of(&col(&[Some(123_456.123_456_789)])), Some(9));
        // Integers of at most 9 digits at the scale: INT32.
        assert_eq!(
            scale_and_digits(&col(&[Some(99.99), Some(-0.01)])),
            Some((2, PRECISION_32))
        );
        assert_eq!(
            scale_and_digits(&col(&[Some(100_000_000.5)])),
            Some((1, PRECISION))
        );
    }

    #[test]
    fn stored_and_read_back_gives_the_same_doubles() {
        // Decimal strings as agents write them, parsed as the line protocol parser does.
        let texts = [
            "12.34",
            "0.01",
            "-7.5",
            "99.99",
            "0",
            "100",
            "3.14159",
            "-0.001",
            "1e-3",
            "58.63",
            "0.3",
            "1234567.891",
        ];
        let vals: Vec<Option<f64>> = texts
            .iter()
            .map(|t| Some(t.parse::<f64>().unwrap()))
            .chain([None])
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, true)])),
            vec![Arc::new(col(&vals)) as ArrayRef],
        )
        .unwrap();
        let scales = choose(&batch);
        assert_eq!(
            scales,
            vec![Scaled {
                name: "v".into(),
                scale: 5,
                precision: PRECISION
            }]
        );
        let stored_schema = stored_schema(&batch.schema(), &scales);
        let stored = to_stored(&batch, &scales, &stored_schema).unwrap();
        assert_eq!(
            stored.schema().field(0).data_type(),
            &DataType::Decimal128(18, 5)
        );
        // Read back as Decimal128, or as Decimal64 by a reader that prefers it: exactly.
        for array in [
            stored.column(0).clone(),
            arrow::compute::cast(stored.column(0), &DataType::Decimal64(18, 5)).unwrap(),
        ] {
            let back = decimal_to_f64(&array).unwrap().unwrap();
            let back = back.as_primitive::<Float64Type>();
            for (i, want) in vals.iter().enumerate() {
                assert_eq!(back.is_null(i), want.is_none());
                if let Some(w) = want {
                    assert_eq!(back.value(i).to_bits(), w.to_bits(), "{w}");
                }
            }
        }
        assert_eq!(footer(&scales), "v:5");
        assert_eq!(of_schema(&stored_schema), scales);
        // Rows the scales were not chosen from: refused, never rounded.
        let other = RecordBatch::try_new(
            batch.schema(),
            vec![Arc::new(col(&[Some(0.123_456_7)])) as ArrayRef],
        )
        .unwrap();
        assert!(to_stored(&other, &scales, &stored_schema).is_err());
    }

    #[test]
    fn random_decimals_round_trip_at_their_scale() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for s in 0..=6u32 {
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = (x % 2_000_000_000) as i64 - 1_000_000_000;
                let text = format!("{}", k as f64 / 10f64.powi(s as i32));
                let v: f64 = text.parse().unwrap();
                let back = scaled(v, s as u8).map(|k| k as f64 / POW10[s as usize]);
                assert_eq!(back.map(f64::to_bits), Some(v.to_bits()), "{text} at {s}");
            }
        }
    }

    /// The read type follows the column's physical type: an `INT64` decimal of few digits
    /// (valid Parquet, not what Meridian writes) reads as 64-bit, never as a 32-bit hint
    /// the parquet crate cannot coerce `INT64` into.
    #[test]
    fn decimals_narrow_by_their_physical_type() {
        use parquet::basic::Type;
        let d = DataType::Decimal128(5, 2);
        assert_eq!(
            narrow_decimal(&d, Type::INT32),
            Some(DataType::Decimal32(5, 2))
        );
        assert_eq!(
            narrow_decimal(&d, Type::INT64),
            Some(DataType::Decimal64(5, 2))
        );
        assert_eq!(narrow_decimal(&d, Type::FIXED_LEN_BYTE_ARRAY), None);
        assert_eq!(
            narrow_decimal(&DataType::Decimal128(12, 2), Type::INT32),
            None
        );
        assert_eq!(narrow_decimal(&DataType::Float64, Type::INT64), None);
    }
}
