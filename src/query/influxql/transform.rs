//! Transformations over a series' rows (`derivative`, `non_negative_derivative`,
//! `difference`, `non_negative_difference`, `cumulative_sum`, `moving_average`,
//! `elapsed`) and the math functions applied to each value (`abs`, `round`, `sqrt`, …), as
//! InfluxQL defines them. A transformation reads the rows of its argument (raw values, or
//! an aggregate per `GROUP BY time` bucket) in time order and skips nulls.

use crate::influxql::{Call, Expr};
use crate::query::agg::Value;

/// A transformation of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Change per `unit` nanoseconds between consecutive values.
    Derivative {
        unit: i64,
        non_negative: bool,
    },
    Difference {
        non_negative: bool,
    },
    CumulativeSum,
    MovingAverage(usize),
    /// Time between consecutive values, in `unit` nanoseconds.
    Elapsed(i64),
}

fn duration_arg(call: &Call, i: usize) -> Result<Option<i64>, String> {
    match call.args.get(i) {
        None => Ok(None),
        Some(Expr::Duration(d)) if *d > 0 => Ok(Some(*d)),
        Some(other) => Err(format!(
            "second argument to {} must be a duration, got {other}",
            call.name
        )),
    }
}

impl Transform {
    /// The transformation a call names and its argument, if it is one. `interval` is the
    /// statement's `GROUP BY time` width: the default unit of derivatives under it.
    pub fn of(call: &Call, interval: Option<i64>) -> Result<Option<(Transform, &Expr)>, String> {
        let name = call.name.as_str();
        let t = match name {
            "derivative" | "non_negative_derivative" => Transform::Derivative {
                unit: duration_arg(call, 1)?.or(interval).unwrap_or(1_000_000_000),
                non_negative: name == "non_negative_derivative",
            },
            "difference" | "non_negative_difference" => Transform::Difference {
                non_negative: name == "non_negative_difference",
            },
            "cumulative_sum" => Transform::CumulativeSum,
            "moving_average" => match call.args.get(1) {
                Some(Expr::Integer(n)) if *n > 1 => Transform::MovingAverage(*n as usize),
                _ => {
                    return Err("moving_average window must be an integer greater than 1".into());
                }
            },
            "elapsed" => Transform::Elapsed(duration_arg(call, 1)?.unwrap_or(1)),
            _ => return Ok(None),
        };
        let Some(arg) = call.args.first() else {
            return Err(format!(
                "invalid number of arguments for {name}, expected at least 1"
            ));
        };
        let nested = matches!(arg, Expr::Call(_));
        if interval.is_some() && !nested {
            return Err(format!(
                "aggregate function required inside the call to {name}"
            ));
        }
        if interval.is_none() && nested {
            return Err(format!("{name} aggregate requires a GROUP BY interval"));
        }
        Ok(Some((t, arg)))
    }

    /// Whether, over `GROUP BY time` buckets, it reads the bucket before the range too
    /// (InfluxDB widens the range by one interval for these).
    pub fn reads_a_bucket_before(self) -> bool {
        !matches!(self, Transform::CumulativeSum)
    }

    /// Applies it to rows (time, value) in the statement's time order (`ascending` or
    /// newest first); nulls are skipped. A derivative is per unit of time forward either
    /// way; elapsed times are negative newest first, as InfluxDB answers.
    pub fn apply(self, rows: &[(i64, Option<Value>)], ascending: bool) -> Vec<(i64, Value)> {
        // elapsed() reads the times of any values (strings and booleans too); the others
        // numbers.
        let elapsed = matches!(self, Transform::Elapsed(_));
        let pts: Vec<(i64, &Value)> = rows
            .iter()
            .filter_map(|(t, v)| {
                v.as_ref()
                    .filter(|v| elapsed || num(v).is_some())
                    .map(|v| (*t, v))
            })
            .collect();
        let mut out = Vec::new();
        match self {
            Transform::Derivative { unit, non_negative } => {
                for w in pts.windows(2) {
                    let ((t0, v0), (t1, v1)) = (w[0], w[1]);
                    if t1 == t0 {
                        continue;
                    }
                    let elapsed = if ascending { t1 - t0 } else { t0 - t1 };
                    let d = (num(v1).unwrap_or(0.0) - num(v0).unwrap_or(0.0))
                        / (elapsed as f64 / unit as f64);
                    if !(non_negative && d < 0.0) {
                        out.push((t1, Value::Float(d)));
                    }
                }
            }
            Transform::Difference { non_negative } => {
                for w in pts.windows(2) {
                    let ((_, v0), (t1, v1)) = (w[0], w[1]);
                    let d = match (v0, v1) {
                        (Value::Int(a), Value::Int(b)) => Value::Int(b.wrapping_sub(*a)),
                        _ => Value::Float(num(v1).unwrap_or(0.0) - num(v0).unwrap_or(0.0)),
                    };
                    let negative = match d {
                        Value::Int(i) => i < 0,
                        Value::Float(f) => f < 0.0,
                        _ => false,
                    };
                    if !(non_negative && negative) {
                        out.push((t1, d));
                    }
                }
            }
            Transform::CumulativeSum => {
                let mut acc: Option<Value> = None;
                for (t, v) in pts {
                    let next = match (&acc, v) {
                        (None, v) => v.clone(),
                        (Some(Value::Int(a)), Value::Int(b)) => Value::Int(a.wrapping_add(*b)),
                        (Some(a), b) => Value::Float(num(a).unwrap_or(0.0) + num(b).unwrap_or(0.0)),
                    };
                    out.push((t, next.clone()));
                    acc = Some(next);
                }
            }
            Transform::MovingAverage(n) => {
                for (i, w) in pts.windows(n).enumerate() {
                    let sum: f64 = w.iter().map(|(_, v)| num(v).unwrap_or(0.0)).sum();
                    out.push((pts[i + n - 1].0, Value::Float(sum / n as f64)));
                }
            }
            Transform::Elapsed(unit) => {
                for w in pts.windows(2) {
                    out.push((w[1].0, Value::Int((w[1].0 - w[0].0) / unit)));
                }
            }
        }
        out
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        _ => None,
    }
}

/// Whether `name` is a math function applied value by value.
pub fn is_math(name: &str) -> bool {
    matches!(
        name,
        "abs"
            | "round"
            | "floor"
            | "ceil"
            | "sqrt"
            | "ln"
            | "log2"
            | "log10"
            | "exp"
            | "sin"
            | "cos"
            | "tan"
            | "asin"
            | "acos"
            | "atan"
            | "pow"
            | "log"
            | "atan2"
    )
}

/// Applies a math function to its evaluated arguments (null in, null out). Rounding keeps
/// integers as they are; the others give floats.
pub fn math(name: &str, args: &[Option<Value>]) -> Option<Value> {
    let a = args.first()?.as_ref()?;
    if let Value::Int(i) = a
        && matches!(name, "abs" | "round" | "floor" | "ceil")
    {
        return Some(Value::Int(if name == "abs" {
            i.wrapping_abs()
        } else {
            *i
        }));
    }
    let x = num(a)?;
    let y = || args.get(1).and_then(|v| v.as_ref()).and_then(num);
    Some(Value::Float(match name {
        "abs" => x.abs(),
        "round" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        "sqrt" => x.sqrt(),
        "ln" => x.ln(),
        "log2" => x.log2(),
        "log10" => x.log10(),
        "exp" => x.exp(),
        "sin" => x.sin(),
        "cos" => x.cos(),
        "tan" => x.tan(),
        "asin" => x.asin(),
        "acos" => x.acos(),
        "atan" => x.atan(),
        "pow" => x.powf(y()?),
        "log" => x.log(y()?),
        "atan2" => x.atan2(y()?),
        _ => return None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(xs: &[(i64, f64)]) -> Vec<(i64, Option<Value>)> {
        xs.iter()
            .map(|(t, v)| (*t, Some(Value::Float(*v))))
            .collect()
    }

    #[test]
    fn transformations_of_a_series() {
        let s = 1_000_000_000;
        let r = rows(&[(0, 1.0), (10 * s, 6.0), (20 * s, 4.0), (30 * s, 10.0)]);
        let d = Transform::Derivative {
            unit: s,
            non_negative: false,
        };
        assert_eq!(
            d.apply(&r, true),
            vec![
                (10 * s, Value::Float(0.5)),
                (20 * s, Value::Float(-0.2)),
                (30 * s, Value::Float(0.6))
            ]
        );
        let nn = Transform::Derivative {
            unit: s,
            non_negative: true,
        };
        assert_eq!(nn.apply(&r, true).len(), 2);
        assert_eq!(
            Transform::MovingAverage(3).apply(&r, true),
            vec![
                (20 * s, Value::Float(11.0 / 3.0)),
                (30 * s, Value::Float(20.0 / 3.0))
            ]
        );
        let ints: Vec<(i64, Option<Value>)> = vec![
            (0, Some(Value::Int(5))),
            (1, None),
            (2, Some(Value::Int(3))),
        ];
        assert_eq!(
            Transform::Difference {
                non_negative: false
            }
            .apply(&ints, true),
            vec![(2, Value::Int(-2))]
        );
        assert_eq!(
            Transform::CumulativeSum.apply(&ints, true),
            vec![(0, Value::Int(5)), (2, Value::Int(8))]
        );
        assert_eq!(
            Transform::Elapsed(1).apply(&ints, true),
            vec![(2, Value::Int(2))]
        );
        // Newest first, as InfluxDB computes it: the rate is still per unit forward, a
        // difference is newer minus older in that order, elapsed times are negative.
        let newest_first: Vec<(i64, Option<Value>)> = rows(&[(50, 8.0), (40, 3.0), (30, 4.0)]);
        assert_eq!(
            Transform::Derivative {
                unit: 10,
                non_negative: false
            }
            .apply(&newest_first, false),
            vec![(40, Value::Float(-5.0)), (30, Value::Float(1.0))]
        );
        assert_eq!(
            Transform::Elapsed(1).apply(&newest_first, false),
            vec![(40, Value::Int(-10)), (30, Value::Int(-10))]
        );
        assert_eq!(
            math("round", &[Some(Value::Float(11.5))]),
            Some(Value::Float(12.0))
        );
        assert_eq!(math("abs", &[Some(Value::Int(-3))]), Some(Value::Int(3)));
        assert_eq!(math("sqrt", &[None]), None);
    }
}
