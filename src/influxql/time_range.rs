//! Splitting a WHERE condition into its time range and the rest (influxql `ConditionExpr`).
//!
//! Comparisons of `time` with a constant, joined to the rest by `AND` (at any depth of
//! `AND`s and parentheses), become a [`TimeRange`] of inclusive nanosecond bounds:
//! `time > x` → min `x+1`, `time >= x` → min `x`, `time < x` → max `x-1`, `time <= x` → max
//! `x`, `time = x` → both; `x op time` is mirrored; several bounds intersect. The constant
//! may be:
//! - an integer (nanoseconds since the epoch), a float (truncated) or a duration literal
//!   (`1700000000000ms`, as Grafana writes);
//! - a string holding a timestamp: RFC 3339 with or without fractional seconds and with `Z`
//!   or an offset, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) or `YYYY-MM-DD` (midnight UTC), as
//!   InfluxDB accepts (`tz()` is not applied: zone-less strings are UTC);
//! - `now()`;
//! - `+` / `-` of the above with durations or integers (`now() - 1h`,
//!   `'2024-01-01T00:00:00Z' + 10m`), `*` / `/` of durations by integers, parentheses.
//!
//! A `time` comparison under an `OR` is an error (`cannot use OR with time conditions`), as
//! is `!=`, `=~` or `!~` on time and a constant that is not a time. All arithmetic is
//! checked: an overflow is an error, never a wrap-around.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::ast::{BinaryExpr, BinaryOp, Expr};
use super::error::ConditionError;

/// Inclusive bounds on `time`, in nanoseconds since the Unix epoch; `None` is unbounded.
/// `min_ns > max_ns` means no time matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    /// Earliest matching time.
    pub min_ns: Option<i64>,
    /// Latest matching time.
    pub max_ns: Option<i64>,
}

impl TimeRange {
    /// The tighter of both bounds on each side.
    pub fn intersect(self, other: TimeRange) -> TimeRange {
        let tighter = |a: Option<i64>, b: Option<i64>, pick: fn(i64, i64) -> i64| match (a, b) {
            (Some(x), Some(y)) => Some(pick(x, y)),
            (x, None) => x,
            (None, y) => y,
        };
        TimeRange {
            min_ns: tighter(self.min_ns, other.min_ns, i64::max),
            max_ns: tighter(self.max_ns, other.max_ns, i64::min),
        }
    }

    /// Whether no time can match (`min_ns > max_ns`).
    pub fn is_empty(&self) -> bool {
        matches!((self.min_ns, self.max_ns), (Some(min), Some(max)) if min > max)
    }

    /// Whether `t_ns` lies within the bounds.
    pub fn contains(&self, t_ns: i64) -> bool {
        self.min_ns.is_none_or(|min| t_ns >= min) && self.max_ns.is_none_or(|max| t_ns <= max)
    }
}

/// Splits `condition` into the conditions not on time and the time range, evaluating
/// `now()` as `now_ns`. The rest keeps its structure minus the time comparisons (top-level
/// parentheses removed); it is `None` when nothing else remains (or only `true`).
pub fn split_time_range(
    condition: Option<&Expr>,
    now_ns: i64,
) -> Result<(Option<Expr>, TimeRange), ConditionError> {
    let Some(condition) = condition else {
        return Ok((None, TimeRange::default()));
    };
    let mut range = TimeRange::default();
    let mut rest = split(condition, now_ns, &mut range)?;
    while let Some(Expr::Paren(inner)) = rest {
        rest = Some(*inner);
    }
    if rest == Some(Expr::Bool(true)) {
        rest = None;
    }
    Ok((rest, range))
}

fn is_time_ref(expr: &Expr) -> bool {
    matches!(expr, Expr::VarRef(v) if v.name.eq_ignore_ascii_case("time"))
}

fn is_time_comparison(b: &BinaryExpr) -> bool {
    b.op.is_comparison() && (is_time_ref(&b.lhs) || is_time_ref(&b.rhs))
}

/// Whether a time comparison is reachable through AND / OR / parentheses.
fn has_time_condition(expr: &Expr) -> bool {
    match expr {
        Expr::Binary(b) if matches!(b.op, BinaryOp::And | BinaryOp::Or) => {
            has_time_condition(&b.lhs) || has_time_condition(&b.rhs)
        }
        Expr::Binary(b) => is_time_comparison(b),
        Expr::Paren(inner) => has_time_condition(inner),
        _ => false,
    }
}

fn split(expr: &Expr, now_ns: i64, range: &mut TimeRange) -> Result<Option<Expr>, ConditionError> {
    match expr {
        Expr::Binary(b) if b.op == BinaryOp::And => {
            let lhs = split(&b.lhs, now_ns, range)?;
            let rhs = split(&b.rhs, now_ns, range)?;
            Ok(match (lhs, rhs) {
                (Some(l), Some(r)) => Some(Expr::Binary(BinaryExpr {
                    op: BinaryOp::And,
                    lhs: Box::new(l),
                    rhs: Box::new(r),
                })),
                (l, None) => l,
                (None, r) => r,
            })
        }
        Expr::Binary(b) if b.op == BinaryOp::Or => {
            if has_time_condition(expr) {
                return Err(ConditionError::new("cannot use OR with time conditions"));
            }
            Ok(Some(expr.clone()))
        }
        Expr::Binary(b) if is_time_comparison(b) => {
            let (op, operand) = if is_time_ref(&b.lhs) {
                (b.op, &*b.rhs)
            } else {
                let mirrored = match b.op {
                    BinaryOp::Lt => BinaryOp::Gt,
                    BinaryOp::Lte => BinaryOp::Gte,
                    BinaryOp::Gt => BinaryOp::Lt,
                    BinaryOp::Gte => BinaryOp::Lte,
                    other => other,
                };
                (mirrored, &*b.lhs)
            };
            if !matches!(
                op,
                BinaryOp::Gt | BinaryOp::Gte | BinaryOp::Lt | BinaryOp::Lte | BinaryOp::Eq
            ) {
                return Err(ConditionError::new(format!(
                    "invalid time comparison operator: {}",
                    op.as_str()
                )));
            }
            let t = eval_time(operand, now_ns)?;
            let out_of_range = || ConditionError::new(format!("time {operand} is out of range"));
            let bound = match op {
                BinaryOp::Gt => TimeRange {
                    min_ns: Some(t.checked_add(1).ok_or_else(out_of_range)?),
                    max_ns: None,
                },
                BinaryOp::Gte => TimeRange {
                    min_ns: Some(t),
                    max_ns: None,
                },
                BinaryOp::Lt => TimeRange {
                    min_ns: None,
                    max_ns: Some(t.checked_sub(1).ok_or_else(out_of_range)?),
                },
                BinaryOp::Lte => TimeRange {
                    min_ns: None,
                    max_ns: Some(t),
                },
                _ => TimeRange {
                    min_ns: Some(t),
                    max_ns: Some(t),
                },
            };
            *range = range.intersect(bound);
            Ok(None)
        }
        Expr::Paren(inner) => Ok(split(inner, now_ns, range)?.map(|e| Expr::Paren(Box::new(e)))),
        other => Ok(Some(other.clone())),
    }
}

/// A constant in a time expression.
#[derive(Debug, Clone, Copy)]
enum TimeValue {
    /// A point in time (ns since the epoch).
    Time(i64),
    /// A duration (ns).
    Duration(i64),
    Integer(i64),
    Float(f64),
}

/// Evaluates the constant side of a time comparison to nanoseconds since the epoch.
fn eval_time(expr: &Expr, now_ns: i64) -> Result<i64, ConditionError> {
    match eval(expr, now_ns)? {
        TimeValue::Time(t) | TimeValue::Duration(t) | TimeValue::Integer(t) => Ok(t),
        TimeValue::Float(x) => {
            // i64::MAX as f64 rounds up to 2^63, hence the strict upper bound.
            if x.is_finite() && x >= i64::MIN as f64 && x < i64::MAX as f64 {
                Ok(x as i64)
            } else {
                Err(ConditionError::new(format!("time {expr} is out of range")))
            }
        }
    }
}

fn eval(expr: &Expr, now_ns: i64) -> Result<TimeValue, ConditionError> {
    let incompatible = || {
        ConditionError::new(format!(
            "invalid operation: time and {expr} are not compatible"
        ))
    };
    match expr {
        Expr::Paren(inner) => eval(inner, now_ns),
        Expr::Call(call) if call.name == "now" && call.args.is_empty() => {
            Ok(TimeValue::Time(now_ns))
        }
        Expr::Integer(i) => Ok(TimeValue::Integer(*i)),
        Expr::Number(x) => Ok(TimeValue::Float(*x)),
        Expr::Duration(d) => Ok(TimeValue::Duration(*d)),
        Expr::Unsigned(_) => Err(ConditionError::new(format!("time {expr} is out of range"))),
        Expr::Str(s) => match parse_timestamp(s) {
            Some(result) => result.map(TimeValue::Time),
            None => Err(incompatible()),
        },
        Expr::Binary(b) => {
            let lhs = eval(&b.lhs, now_ns)?;
            let rhs = eval(&b.rhs, now_ns)?;
            combine(lhs, b.op, rhs)
                .ok_or_else(|| ConditionError::new(format!("invalid time expression: {expr}")))?
                .ok_or_else(|| ConditionError::new(format!("time {expr} is out of range")))
        }
        _ => Err(incompatible()),
    }
}

/// `None`: the operation does not apply to these operands; `Some(None)`: it overflows.
fn combine(lhs: TimeValue, op: BinaryOp, rhs: TimeValue) -> Option<Option<TimeValue>> {
    use TimeValue::*;
    let float = |v: TimeValue| match v {
        Integer(i) | Duration(i) => Some(i as f64),
        Float(x) => Some(x),
        Time(_) => None,
    };
    let result = match (lhs, op, rhs) {
        (Time(t), BinaryOp::Add, Duration(d) | Integer(d))
        | (Duration(d) | Integer(d), BinaryOp::Add, Time(t)) => t.checked_add(d).map(Time),
        (Time(t), BinaryOp::Sub, Duration(d) | Integer(d)) => t.checked_sub(d).map(Time),
        (Time(a), BinaryOp::Sub, Time(b)) => a.checked_sub(b).map(Duration),
        (Duration(a), BinaryOp::Add, Duration(b) | Integer(b))
        | (Integer(a), BinaryOp::Add, Duration(b)) => a.checked_add(b).map(Duration),
        (Duration(a), BinaryOp::Sub, Duration(b) | Integer(b))
        | (Integer(a), BinaryOp::Sub, Duration(b)) => a.checked_sub(b).map(Duration),
        (Duration(a), BinaryOp::Mul, Integer(b)) | (Integer(a), BinaryOp::Mul, Duration(b)) => {
            a.checked_mul(b).map(Duration)
        }
        // As InfluxDB: a duration divided by zero is zero.
        (Duration(_), BinaryOp::Div, Integer(0)) => Some(Duration(0)),
        (Duration(a), BinaryOp::Div, Integer(b)) => a.checked_div(b).map(Duration),
        (Integer(a), BinaryOp::Add, Integer(b)) => a.checked_add(b).map(Integer),
        (Integer(a), BinaryOp::Sub, Integer(b)) => a.checked_sub(b).map(Integer),
        (Integer(a), BinaryOp::Mul, Integer(b)) => a.checked_mul(b).map(Integer),
        (Integer(a), BinaryOp::Div, Integer(b)) => a.checked_div(b).map(Integer),
        (
            l @ (Float(_) | Integer(_) | Duration(_)),
            op,
            r @ (Float(_) | Integer(_) | Duration(_)),
        ) if matches!(l, Float(_)) || matches!(r, Float(_)) => {
            let (a, b) = (float(l)?, float(r)?);
            let x = match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => a / b,
                _ => return None,
            };
            x.is_finite().then_some(Float(x))
        }
        _ => return None,
    };
    Some(result)
}

/// Whether `text` starts like a date (`YYYY-MM-DD`), which makes a string a time literal
/// in InfluxDB.
fn looks_like_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 10
        && b.iter().take(10).enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Parses an InfluxQL timestamp string to nanoseconds since the epoch: `None` when the text
/// does not look like a date at all (it is then an ordinary string), `Some(Err)` when it
/// does but is not a valid timestamp or is outside the years 1677–2262.
pub fn parse_timestamp(text: &str) -> Option<Result<i64, ConditionError>> {
    if !looks_like_date(text) {
        return None;
    }
    let utc = if text.len() == 10 {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|dt| dt.and_utc())
    } else {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .map(|dt| dt.and_utc())
            .or_else(|_| DateTime::parse_from_rfc3339(text).map(|dt| dt.to_utc()))
            .ok()
    };
    Some(match utc {
        None => Err(ConditionError::new(format!(
            "invalid timestamp string: {text:?}"
        ))),
        Some(dt) => dt
            .timestamp_nanos_opt()
            .ok_or_else(|| ConditionError::new(format!("time {text:?} overflows time literal"))),
    })
}
