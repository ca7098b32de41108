//! InfluxQL functions computed from points (the aggregates the regions cannot merge as
//! partial states, and all of them when a condition must first be checked per point), and
//! arithmetic and comparison of values as InfluxQL defines them.

use std::cmp::Ordering;

use crate::influxql::{BinaryOp, Call, Expr};
use crate::query::agg::{Agg, Value};

/// An aggregate or selector of a SELECT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Func {
    Count,
    CountDistinct,
    Sum,
    Mean,
    Median,
    Mode,
    Spread,
    Stddev,
    Min,
    Max,
    First,
    Last,
    Percentile(f64),
    Distinct,
    /// Area under the points (trapezoids), per `unit` nanoseconds.
    Integral(i64),
    /// The `n` greatest (`top`) or least (`bottom`) values, each at its point's time.
    Top(usize),
    Bottom(usize),
}

impl Func {
    /// The function of a call and the field it reads, or why it cannot run.
    pub fn of(call: &Call) -> Result<(Func, &Expr), String> {
        let arg = |n: usize| -> Result<&Expr, String> {
            if call.args.len() != n {
                return Err(format!(
                    "invalid number of arguments for {}, expected {n}, got {}",
                    call.name,
                    call.args.len()
                ));
            }
            Ok(&call.args[0])
        };
        Ok(match call.name.as_str() {
            "count" => {
                let a = arg(1)?;
                if let Expr::Call(inner) = a
                    && inner.name == "distinct"
                {
                    if inner.args.len() != 1 {
                        return Err("distinct function requires exactly one argument".into());
                    }
                    return Ok((Func::CountDistinct, &inner.args[0]));
                }
                (Func::Count, a)
            }
            "sum" => (Func::Sum, arg(1)?),
            "mean" => (Func::Mean, arg(1)?),
            "median" => (Func::Median, arg(1)?),
            "mode" => (Func::Mode, arg(1)?),
            "spread" => (Func::Spread, arg(1)?),
            "stddev" => (Func::Stddev, arg(1)?),
            "min" => (Func::Min, arg(1)?),
            "max" => (Func::Max, arg(1)?),
            "first" => (Func::First, arg(1)?),
            "last" => (Func::Last, arg(1)?),
            "distinct" => (Func::Distinct, arg(1)?),
            "integral" => {
                if call.args.is_empty() || call.args.len() > 2 {
                    return Err(format!(
                        "invalid number of arguments for integral, expected 1 or 2, got {}",
                        call.args.len()
                    ));
                }
                let unit = match call.args.get(1) {
                    None => 1_000_000_000,
                    Some(Expr::Duration(d)) if *d > 0 => *d,
                    Some(other) => {
                        return Err(format!("second argument must be a duration, got {other}"));
                    }
                };
                (Func::Integral(unit), &call.args[0])
            }
            "top" | "bottom" => {
                let n = match call.args.as_slice() {
                    [_, Expr::Integer(n)] if *n > 0 => *n as usize,
                    [_, _, ..] if call.args.len() > 2 => {
                        return Err(format!(
                            "{}() with tag arguments is not supported by Meridian; use GROUP BY the tag",
                            call.name
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{}() needs a field and a positive integer: {}(field, N)",
                            call.name, call.name
                        ));
                    }
                };
                let f = if call.name == "top" {
                    Func::Top(n)
                } else {
                    Func::Bottom(n)
                };
                (f, &call.args[0])
            }
            "percentile" => {
                let a = arg(2)?;
                let n = match &call.args[1] {
                    Expr::Integer(i) => *i as f64,
                    Expr::Number(f) => *f,
                    _ => {
                        return Err(format!(
                            "expected float argument in percentile(), got {}",
                            call.args[1]
                        ));
                    }
                };
                (Func::Percentile(n), a)
            }
            other => {
                return Err(format!(
                    "function {other}() is not supported by Meridian (supported: count, sum, mean, median, mode, spread, stddev, min, max, first, last, percentile, distinct)"
                ));
            }
        })
    }

    /// Whether the function picks one point (its time can be the row's).
    pub fn is_selector(self) -> bool {
        matches!(
            self,
            Func::Min
                | Func::Max
                | Func::First
                | Func::Last
                | Func::Percentile(_)
                | Func::Top(_)
                | Func::Bottom(_)
        )
    }

    /// The native aggregate computing it from partial states, if any.
    pub fn native(self) -> Option<Agg> {
        Some(match self {
            Func::Count => Agg::Count,
            Func::Sum => Agg::Sum,
            Func::Mean => Agg::Mean,
            Func::Min => Agg::Min,
            Func::Max => Agg::Max,
            Func::First => Agg::First,
            Func::Last => Agg::Last,
            _ => return None,
        })
    }

    /// Whether it reads values of this type (InfluxDB refuses the others with an error).
    pub fn accepts(self, t: crate::model::FieldType) -> bool {
        use crate::model::FieldType as T;
        match self {
            Func::Count
            | Func::CountDistinct
            | Func::Mode
            | Func::First
            | Func::Last
            | Func::Distinct => true,
            Func::Min | Func::Max => !matches!(t, T::String),
            _ => matches!(t, T::Float | T::Integer | T::UInteger),
        }
    }

    /// Whether it reads this value (a field stored with several types: the others are
    /// skipped).
    fn reads(self, v: &Value) -> bool {
        match v {
            Value::Null => false,
            Value::Float(_) | Value::Int(_) | Value::UInt(_) => true,
            Value::Bool(_) => !matches!(
                self,
                Func::Sum
                    | Func::Mean
                    | Func::Median
                    | Func::Spread
                    | Func::Stddev
                    | Func::Percentile(_)
            ),
            Value::Str(_) => matches!(
                self,
                Func::Count
                    | Func::CountDistinct
                    | Func::Mode
                    | Func::First
                    | Func::Last
                    | Func::Distinct
            ),
        }
    }

    /// The result of an empty bucket under `fill(null)`: `count` gives 0, as InfluxDB.
    pub fn empty_value(self) -> Option<Value> {
        matches!(self, Func::Count | Func::CountDistinct).then_some(Value::Int(0))
    }
}

/// What a function gives for one group and bucket.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// No point.
    Empty,
    /// A value, and the time of the chosen point for selectors.
    One(Value, Option<i64>),
    /// `distinct`: one row per value.
    Many(Vec<Value>),
    /// `top`/`bottom`: points with their times, in time order.
    Points(Vec<(i64, Value)>),
}

/// Whether `min()` or `max()` (`f`) chooses a later point's `new` value over the `held`
/// one: only a strictly smaller (greater) one, so the earliest point holding the value
/// stays, as InfluxDB's reducers keep it.
pub(super) fn replaces(f: Func, new: &Value, held: &Value) -> bool {
    let o = new.cmp_values(held);
    (f == Func::Min && o == Ordering::Less) || (f == Func::Max && o == Ordering::Greater)
}

pub(super) fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        _ => None,
    }
}

/// A value as a hash key, equal where InfluxQL takes two values as the same one: numbers
/// by value (`-0` and `0`, `1` and `1.0` alike), strings and booleans as they are.
#[derive(Hash, PartialEq, Eq)]
pub(super) enum ValueKey<'a> {
    Null,
    Integral(i128),
    Float(u64),
    Str(&'a str),
    Bool(bool),
}

/// A value's bits as a hash key: two keys are equal only for the same stored value (a
/// chosen point's value is a copy of its candidate's).
pub(super) fn exact_key(v: &Value) -> ValueKey<'_> {
    match v {
        Value::Float(f) => ValueKey::Float(f.to_bits()),
        other => value_key(other),
    }
}

/// Go's `<` as InfluxDB sorts values: numbers by value (`-0` is not below `0`), the rest
/// in their order.
fn numeric_less(a: &Value, b: &Value) -> bool {
    if is_number(a) && is_number(b) {
        compare(BinaryOp::Lt, a, b)
    } else {
        a.cmp_values(b) == Ordering::Less
    }
}

pub(super) fn value_key(v: &Value) -> ValueKey<'_> {
    match v {
        Value::Null => ValueKey::Null,
        Value::Int(i) => ValueKey::Integral(i128::from(*i)),
        Value::UInt(u) => ValueKey::Integral(i128::from(*u)),
        // Exactly integral and within i128: by that integer (so -0 is 0).
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e30 => ValueKey::Integral(*f as i128),
        Value::Float(f) => ValueKey::Float(f.to_bits()),
        Value::Str(s) => ValueKey::Str(s),
        Value::Bool(b) => ValueKey::Bool(*b),
    }
}

fn is_number(v: &Value) -> bool {
    matches!(v, Value::Float(_) | Value::Int(_) | Value::UInt(_))
}

/// Applies `f` to the points of one group and bucket, sorted by time (ties in write
/// order).
pub fn apply(f: Func, points: &[(i64, Value)]) -> Out {
    let pts: Vec<&(i64, Value)> = points.iter().filter(|(_, v)| f.reads(v)).collect();
    if pts.is_empty() {
        return Out::Empty;
    }
    let n = pts.len();
    match f {
        Func::Count => Out::One(Value::Int(n as i64), None),
        Func::CountDistinct => {
            let vals: std::collections::HashSet<ValueKey<'_>> =
                pts.iter().map(|(_, v)| value_key(v)).collect();
            Out::One(Value::Int(vals.len() as i64), None)
        }
        Func::Sum => Out::One(sum(&pts), None),
        Func::Mean => {
            let s: f64 = pts.iter().filter_map(|(_, v)| as_f64(v)).sum();
            Out::One(Value::Float(s / n as f64), None)
        }
        Func::Median => {
            let mut xs: Vec<&Value> = pts.iter().map(|(_, v)| v).collect();
            xs.sort_by(|a, b| a.cmp_values(b));
            let mid = n / 2;
            let v = if n % 2 == 1 {
                as_f64(xs[mid]).unwrap_or(f64::NAN)
            } else {
                let (a, b) = (
                    as_f64(xs[mid - 1]).unwrap_or(f64::NAN),
                    as_f64(xs[mid]).unwrap_or(f64::NAN),
                );
                a + (b - a) / 2.0
            };
            Out::One(Value::Float(v), None)
        }
        // Booleans: true unless false is more frequent (InfluxDB counts them).
        Func::Mode if pts.iter().all(|(_, v)| matches!(v, Value::Bool(_))) => {
            let trues = pts.iter().filter(|(_, v)| *v == Value::Bool(true)).count();
            Out::One(Value::Bool(2 * trues >= n), None)
        }
        Func::Mode if n <= 12 => {
            // As InfluxDB's reduction: Go's sort by value of a slice this short (a pass
            // with gap 6, then an insertion sort) over the points in time order, then its
            // scan, in which a later run of equal values takes over from its second point
            // on when it is more frequent, or as frequent and its first point is no later
            // than the best run's last.
            let mut xs: Vec<(i64, &Value)> = pts.iter().map(|(t, v)| (*t, v)).collect();
            let less = |a: &(i64, &Value), b: &(i64, &Value)| numeric_less(a.1, b.1);
            for i in 6..xs.len() {
                if less(&xs[i], &xs[i - 6]) {
                    xs.swap(i, i - 6);
                }
            }
            for i in 1..xs.len() {
                let mut j = i;
                while j > 0 && less(&xs[j], &xs[j - 1]) {
                    xs.swap(j, j - 1);
                    j -= 1;
                }
            }
            let (mut most_n, mut run_n) = (0usize, 0usize);
            let (mut run_value, mut most_value) = (xs[0].1, xs[0].1);
            let (mut most_time, mut run_time) = (xs[0].0, xs[0].0);
            for &(t, v) in &xs {
                if value_key(v) != value_key(run_value) {
                    (run_n, run_value, run_time) = (1, v, t);
                    continue;
                }
                run_n += 1;
                if most_n > run_n || (most_n == run_n && run_time > most_time) {
                    continue;
                }
                (most_n, most_value, most_time) = (run_n, v, t);
            }
            Out::One(most_value.clone(), None)
        }
        Func::Mode => {
            // Beyond 12 points InfluxDB's order among equally frequent values follows its
            // quicksort's pivots: the smallest of the most frequent values here.
            let mut xs: Vec<&Value> = pts.iter().map(|(_, v)| v).collect();
            xs.sort_by(|a, b| a.cmp_values(b));
            let (mut best, mut best_n) = (xs[0], 0usize);
            let mut i = 0;
            while i < xs.len() {
                let mut j = i;
                while j < xs.len() && value_key(xs[j]) == value_key(xs[i]) {
                    j += 1;
                }
                if j - i > best_n {
                    (best, best_n) = (xs[i], j - i);
                }
                i = j;
            }
            Out::One(best.clone(), None)
        }
        Func::Spread => {
            let (mut lo, mut hi) = (&pts[0].1, &pts[0].1);
            for (_, v) in &pts {
                if v.cmp_values(lo) == Ordering::Less {
                    lo = v;
                }
                if v.cmp_values(hi) == Ordering::Greater {
                    hi = v;
                }
            }
            Out::One(
                arith(BinaryOp::Sub, Some(hi.clone()), Some(lo.clone())).unwrap_or(Value::Null),
                None,
            )
        }
        Func::Stddev => {
            if n < 2 {
                return Out::One(Value::Null, None);
            }
            let xs: Vec<f64> = pts.iter().filter_map(|(_, v)| as_f64(v)).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n as f64 - 1.0);
            Out::One(Value::Float(var.sqrt()), None)
        }
        Func::Min | Func::Max => {
            let mut best = pts[0];
            for p in &pts[1..] {
                if replaces(f, &p.1, &best.1) {
                    best = p;
                }
            }
            Out::One(best.1.clone(), Some(best.0))
        }
        Func::First | Func::Last => {
            // Among points of the same time (several series in one group) the greater
            // value wins, as InfluxDB's first/last reducers decide.
            let mut best = pts[0];
            for p in &pts[1..] {
                let better = if f == Func::First {
                    p.0 < best.0
                } else {
                    p.0 > best.0
                };
                if better || (p.0 == best.0 && p.1.cmp_values(&best.1) == Ordering::Greater) {
                    best = p;
                }
            }
            Out::One(best.1.clone(), Some(best.0))
        }
        Func::Integral(unit) => {
            let mut area = 0.0;
            for w in pts.windows(2) {
                let ((t0, v0), (t1, v1)) = (w[0], w[1]);
                let (a, b) = (as_f64(v0).unwrap_or(0.0), as_f64(v1).unwrap_or(0.0));
                // Times may be as far apart as the whole i64 range.
                let span = (i128::from(*t1) - i128::from(*t0)) as f64;
                area += (a + b) / 2.0 * (span / unit as f64);
            }
            Out::One(Value::Float(area), None)
        }
        Func::Top(k) | Func::Bottom(k) => {
            let mut xs: Vec<&(i64, Value)> = pts.clone();
            // Greatest (least) first; on equal values the earlier point.
            xs.sort_by(|a, b| {
                let o = a.1.cmp_values(&b.1);
                let o = if matches!(f, Func::Top(_)) {
                    o.reverse()
                } else {
                    o
                };
                o.then(a.0.cmp(&b.0))
            });
            let mut chosen: Vec<(i64, Value)> = xs
                .into_iter()
                .take(k)
                .map(|(t, v)| (*t, v.clone()))
                .collect();
            chosen.sort_by_key(|p| p.0);
            Out::Points(chosen)
        }
        Func::Percentile(pct) => {
            let mut xs: Vec<&(i64, Value)> = pts.clone();
            xs.sort_by(|a, b| a.1.cmp_values(&b.1));
            // In f64 first: a rank far outside the points (`percentile(v, -1e300)`) must
            // not overflow on the way to an index.
            let rank = (n as f64 * pct / 100.0 + 0.5).floor() - 1.0;
            let i = if (0.0..n as f64).contains(&rank) {
                rank as i64
            } else {
                -1
            };
            if i < 0 || i as usize >= n {
                // No point at that rank: the bucket answers nothing, as in InfluxDB.
                return Out::Empty;
            }
            let p = xs[i as usize];
            Out::One(p.1.clone(), Some(p.0))
        }
        Func::Distinct => {
            // Each value once, in the order first seen (one hash lookup a point).
            let mut seen: std::collections::HashSet<ValueKey<'_>> = Default::default();
            let vals = pts
                .iter()
                .filter(|(_, v)| seen.insert(value_key(v)))
                .map(|(_, v)| v.clone())
                .collect();
            Out::Many(vals)
        }
    }
}

fn sum(pts: &[&(i64, Value)]) -> Value {
    if pts.iter().all(|(_, v)| matches!(v, Value::Int(_))) {
        let s: i128 = pts
            .iter()
            .map(|(_, v)| match v {
                Value::Int(i) => *i as i128,
                _ => 0,
            })
            .sum();
        return Value::Int(s as i64);
    }
    if pts.iter().all(|(_, v)| matches!(v, Value::UInt(_))) {
        let s: u128 = pts
            .iter()
            .map(|(_, v)| match v {
                Value::UInt(u) => *u as u128,
                _ => 0,
            })
            .sum();
        return Value::UInt(s as u64);
    }
    Value::Float(pts.iter().filter_map(|(_, v)| as_f64(v)).sum())
}

/// Compares two values with a comparison operator; values of unlike kinds never match
/// (numbers of any kind compare by value).
pub fn compare(op: BinaryOp, l: &Value, r: &Value) -> bool {
    let comparable = (is_number(l) && is_number(r))
        || matches!(
            (l, r),
            (Value::Str(_), Value::Str(_)) | (Value::Bool(_), Value::Bool(_))
        );
    if !comparable {
        // As InfluxDB: values of different kinds never compare, `!=` included (`host != 0`,
        // a string field `!= true`, a name the measurement lacks `!= 0` match nothing).
        return false;
    }
    if matches!(l, Value::Str(_) | Value::Bool(_)) && !matches!(op, BinaryOp::Eq | BinaryOp::Neq) {
        // InfluxQL orders numbers only: `host > 'a'` matches nothing.
        return false;
    }
    // Numbers by value, as Go compares them: `-0 = 0`, and NaN compares with nothing
    // (only `!=` holds).
    let o = match (l, r) {
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::UInt(a), Value::UInt(b)) => Some(a.cmp(b)),
        (Value::Int(a), Value::UInt(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
        (Value::UInt(a), Value::Int(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
        _ if is_number(l) => as_f64(l).partial_cmp(&as_f64(r)),
        _ => Some(l.cmp_values(r)),
    };
    let Some(o) = o else {
        return op == BinaryOp::Neq;
    };
    match op {
        BinaryOp::Eq => o == Ordering::Equal,
        BinaryOp::Neq => o != Ordering::Equal,
        BinaryOp::Lt => o == Ordering::Less,
        BinaryOp::Lte => o != Ordering::Greater,
        BinaryOp::Gt => o == Ordering::Greater,
        BinaryOp::Gte => o != Ordering::Less,
        _ => false,
    }
}

/// Arithmetic as InfluxQL does it: integers stay integers (`/` gives a float), any float
/// makes a float, null gives null, booleans take the bitwise operators.
pub fn arith(op: BinaryOp, l: Option<Value>, r: Option<Value>) -> Option<Value> {
    let (l, r) = (l?, r?);
    match (&l, &r) {
        (Value::Int(a), Value::Int(b)) => {
            let (a, b) = (*a, *b);
            Some(match op {
                BinaryOp::Add => Value::Int(a.wrapping_add(b)),
                BinaryOp::Sub => Value::Int(a.wrapping_sub(b)),
                BinaryOp::Mul => Value::Int(a.wrapping_mul(b)),
                BinaryOp::Div => {
                    if b == 0 {
                        Value::Float(0.0)
                    } else {
                        Value::Float(a as f64 / b as f64)
                    }
                }
                BinaryOp::Mod => {
                    if b == 0 {
                        Value::Int(0)
                    } else {
                        Value::Int(a.wrapping_rem(b))
                    }
                }
                BinaryOp::BitAnd => Value::Int(a & b),
                BinaryOp::BitOr => Value::Int(a | b),
                BinaryOp::BitXor => Value::Int(a ^ b),
                _ => return None,
            })
        }
        (Value::Bool(a), Value::Bool(b)) => Some(match op {
            BinaryOp::BitAnd => Value::Bool(a & b),
            BinaryOp::BitOr => Value::Bool(a | b),
            BinaryOp::BitXor => Value::Bool(a ^ b),
            _ => return None,
        }),
        _ => {
            let (a, b) = (as_f64(&l)?, as_f64(&r)?);
            Some(Value::Float(match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => {
                    if b == 0.0 {
                        0.0
                    } else {
                        a / b
                    }
                }
                // NaN, which InfluxDB answers as null.
                BinaryOp::Mod if b == 0.0 => return None,
                BinaryOp::Mod => a % b,
                _ => return None,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(xs: &[f64]) -> Vec<(i64, Value)> {
        xs.iter()
            .enumerate()
            .map(|(i, x)| (i as i64, Value::Float(*x)))
            .collect()
    }

    #[test]
    fn aggregates_of_points() {
        let p = pts(&[3.0, 1.0, 2.0, 2.0, 10.0]);
        assert_eq!(apply(Func::Count, &p), Out::One(Value::Int(5), None));
        assert_eq!(apply(Func::Median, &p), Out::One(Value::Float(2.0), None));
        assert_eq!(apply(Func::Mode, &p), Out::One(Value::Float(2.0), None));
        // Ties as influxd 1.6.7 answers them (each case checked against it).
        let at = |xs: &[(i64, f64)]| -> Vec<(i64, Value)> {
            xs.iter().map(|(t, x)| (*t, Value::Float(*x))).collect()
        };
        for (case, mode) in [
            (at(&[(10, 3.0), (20, 1.0), (30, 3.0), (40, 1.0)]), 3.0),
            (at(&[(10, 1.0), (20, 3.0), (30, 3.0), (40, 1.0)]), 3.0),
            (
                at(&[
                    (10, 5.0),
                    (20, 3.0),
                    (30, 3.0),
                    (40, 5.0),
                    (50, 1.0),
                    (60, 1.0),
                ]),
                5.0,
            ),
            (at(&[(10, 5.0), (20, 3.0), (30, 1.0)]), 1.0),
            (at(&[(5, 2.0), (10, 1.0), (20, 3.0), (30, 2.0)]), 2.0),
            // Seven points: Go's gap-6 pass swaps the first and the last first.
            (
                at(&[
                    (10, 3.0),
                    (20, 1.0),
                    (30, 1.0),
                    (40, 3.0),
                    (50, 9.0),
                    (60, 9.0),
                    (70, 2.0),
                ]),
                1.0,
            ),
        ] {
            assert_eq!(apply(Func::Mode, &case), Out::One(Value::Float(mode), None));
        }
        assert_eq!(apply(Func::Spread, &p), Out::One(Value::Float(9.0), None));
        assert_eq!(apply(Func::Max, &p), Out::One(Value::Float(10.0), Some(4)));
        assert_eq!(apply(Func::Min, &p), Out::One(Value::Float(1.0), Some(1)));
        assert_eq!(apply(Func::First, &p), Out::One(Value::Float(3.0), Some(0)));
        assert_eq!(
            apply(Func::Percentile(50.0), &p),
            Out::One(Value::Float(2.0), Some(3))
        );
        assert_eq!(
            apply(Func::CountDistinct, &p),
            Out::One(Value::Int(4), None)
        );
        assert_eq!(
            apply(Func::Stddev, &pts(&[1.0])),
            Out::One(Value::Null, None)
        );
        assert_eq!(apply(Func::Mean, &[]), Out::Empty);
        let ints = vec![(0, Value::Int(2)), (1, Value::Int(5))];
        assert_eq!(apply(Func::Sum, &ints), Out::One(Value::Int(7), None));
        assert_eq!(
            apply(Func::Median, &ints),
            Out::One(Value::Float(3.5), None)
        );
    }

    #[test]
    fn arithmetic_keeps_integers_and_nulls() {
        let i = |x| Some(Value::Int(x));
        assert_eq!(arith(BinaryOp::Add, i(2), i(3)), i(5));
        assert_eq!(arith(BinaryOp::Div, i(3), i(2)), Some(Value::Float(1.5)));
        assert_eq!(
            arith(BinaryOp::Mul, i(2), Some(Value::Float(1.5))),
            Some(Value::Float(3.0))
        );
        assert_eq!(arith(BinaryOp::Add, i(2), None), None);
        assert!(compare(BinaryOp::Lt, &Value::Int(1), &Value::Float(1.5)));
        // Numbers by value, as influxd compares them: -0 is 0, NaN compares with nothing.
        let (neg0, zero, nan) = (Value::Float(-0.0), Value::Int(0), Value::Float(f64::NAN));
        assert!(compare(BinaryOp::Eq, &neg0, &zero));
        assert!(compare(BinaryOp::Gte, &neg0, &zero));
        assert!(!compare(BinaryOp::Lt, &neg0, &zero));
        assert!(!compare(BinaryOp::Eq, &nan, &nan) && compare(BinaryOp::Neq, &nan, &nan));
        assert!(compare(
            BinaryOp::Gt,
            &Value::UInt(u64::MAX),
            &Value::Int(-1)
        ));
        let p: Vec<(i64, Value)> = [
            neg0.clone(),
            Value::Float(0.0),
            Value::Int(0),
            Value::Float(2.5),
        ]
        .into_iter()
        .enumerate()
        .map(|(t, v)| (t as i64, v))
        .collect();
        assert_eq!(
            apply(Func::Distinct, &p),
            Out::Many(vec![neg0, Value::Float(2.5)])
        );
        assert_eq!(
            apply(Func::CountDistinct, &p),
            Out::One(Value::Int(2), None)
        );
        assert!(!compare(
            BinaryOp::Eq,
            &Value::Int(1),
            &Value::Str("1".into())
        ));
    }
}
