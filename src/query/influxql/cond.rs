//! WHERE conditions other than time: over the series catalog (SHOW statements: which
//! series match), split into native tag predicates (SELECT: what the regions can filter),
//! and evaluated on points (what they cannot).
//!
//! Tags follow InfluxQL: a series lacking a tag has the empty string there. An identifier
//! that is neither a field nor a tag of the measurement is a tag no series has.

use roaring::RoaringBitmap;

use super::funcs::{arith, compare};
use crate::catalog::series::MeasurementSeries;
use crate::influxql::{BinaryOp, DataType, Expr};
use crate::query::agg::Value;
use crate::query::plan::{TagOp, TagPred};

/// Strips parentheses.
pub fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(inner) => unparen(inner),
        other => other,
    }
}

/// The top-level `AND` terms of a condition.
pub fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match unparen(e) {
        Expr::Binary(b) if b.op == BinaryOp::And => {
            let mut out = conjuncts(&b.lhs);
            out.extend(conjuncts(&b.rhs));
            out
        }
        other => vec![other],
    }
}

/// A comparison of a tag with a literal: (key, op, literal), mirrored if written
/// `'v' = key`. `is_tag` says which names are tags.
pub fn tag_comparison<'a>(
    e: &'a Expr,
    is_tag: &dyn Fn(&str) -> bool,
) -> Option<(&'a str, BinaryOp, &'a Expr)> {
    let Expr::Binary(b) = unparen(e) else {
        return None;
    };
    if !matches!(
        b.op,
        BinaryOp::Eq | BinaryOp::Neq | BinaryOp::EqRegex | BinaryOp::NeqRegex
    ) {
        return None;
    }
    let (var, lit) = match (unparen(&b.lhs), unparen(&b.rhs)) {
        (Expr::VarRef(v), lit @ (Expr::Str(_) | Expr::Regex(_))) => (v, lit),
        (lit @ Expr::Str(_), Expr::VarRef(v)) if matches!(b.op, BinaryOp::Eq | BinaryOp::Neq) => {
            (v, lit)
        }
        _ => return None,
    };
    let tag_ok = match var.data_type {
        Some(DataType::Tag) => true,
        None => is_tag(&var.name),
        Some(_) => false,
    };
    let op_ok = matches!(
        (b.op, lit),
        (BinaryOp::Eq | BinaryOp::Neq, Expr::Str(_))
            | (BinaryOp::EqRegex | BinaryOp::NeqRegex, Expr::Regex(_))
    );
    (tag_ok && op_ok).then_some((var.name.as_str(), b.op, lit))
}

/// A native predicate for a tag comparison.
pub fn native_pred(key: &str, op: BinaryOp, lit: &Expr) -> Option<TagPred> {
    let op = match (op, lit) {
        (BinaryOp::Eq, Expr::Str(s)) => TagOp::Eq(s.clone()),
        (BinaryOp::Neq, Expr::Str(s)) => TagOp::Ne(s.clone()),
        (BinaryOp::EqRegex, Expr::Regex(r)) => TagOp::Re(r.regex().clone()),
        (BinaryOp::NeqRegex, Expr::Regex(r)) => TagOp::NotRe(r.regex().clone()),
        _ => return None,
    };
    Some(TagPred {
        key: key.to_string(),
        op,
    })
}

/// Whether an expression refers only to tags (and literals), with AND / OR / parentheses:
/// it can be decided per series.
pub fn is_tag_only(e: &Expr, is_tag: &dyn Fn(&str) -> bool) -> bool {
    match unparen(e) {
        Expr::Binary(b) if matches!(b.op, BinaryOp::And | BinaryOp::Or) => {
            is_tag_only(&b.lhs, is_tag) && is_tag_only(&b.rhs, is_tag)
        }
        Expr::Bool(_) => true,
        other => tag_comparison(other, is_tag).is_some(),
    }
}

/// The series of a measurement matching a tag-only condition (fields compare as absent,
/// and a comparison that is not on a tag matches nothing, as InfluxDB's index does).
pub fn series_matching(ms: &MeasurementSeries, e: &Expr) -> RoaringBitmap {
    match unparen(e) {
        Expr::Binary(b) if b.op == BinaryOp::And => {
            let mut l = series_matching(ms, &b.lhs);
            l &= series_matching(ms, &b.rhs);
            l
        }
        Expr::Binary(b) if b.op == BinaryOp::Or => {
            let mut l = series_matching(ms, &b.lhs);
            l |= series_matching(ms, &b.rhs);
            l
        }
        Expr::Bool(true) => ms.all(),
        Expr::Bool(false) => RoaringBitmap::new(),
        other => match tag_comparison(other, &|_| true) {
            Some((key, BinaryOp::Eq, Expr::Str(v))) => ms.with_value(key, v),
            Some((key, BinaryOp::Neq, Expr::Str(v))) => {
                let mut all = ms.all();
                all -= ms.with_value(key, v);
                all
            }
            Some((key, BinaryOp::EqRegex, Expr::Regex(r))) => {
                ms.matching(key, |v| r.regex().is_match(v))
            }
            Some((key, BinaryOp::NeqRegex, Expr::Regex(r))) => {
                ms.matching(key, |v| !r.regex().is_match(v))
            }
            _ => RoaringBitmap::new(),
        },
    }
}

/// Whether a measurement matches a tag-only condition as `SHOW MEASUREMENTS WHERE` decides
/// it in InfluxDB: over the values its series carry for a key, not series by series. `=`
/// and `=~` match when one value does; `!=` and `!~` when the measurement has the key and
/// no value matches the positive form (a measurement without the key matches neither, and
/// `key = ''` nothing).
pub fn measurement_matching(ms: &MeasurementSeries, e: &Expr) -> bool {
    match unparen(e) {
        Expr::Binary(b) if b.op == BinaryOp::And => {
            measurement_matching(ms, &b.lhs) && measurement_matching(ms, &b.rhs)
        }
        Expr::Binary(b) if b.op == BinaryOp::Or => {
            measurement_matching(ms, &b.lhs) || measurement_matching(ms, &b.rhs)
        }
        Expr::Bool(b) => *b,
        other => match tag_comparison(other, &|_| true) {
            Some((key, op, lit)) => {
                // A value equal to (or matching) the literal: a lookup, or a scan for a
                // regex.
                let any = match lit {
                    Expr::Str(s) => ms.has_value(key, s),
                    Expr::Regex(r) => ms.any_value(key, |v| r.regex().is_match(v)),
                    _ => false,
                };
                match op {
                    BinaryOp::Eq | BinaryOp::EqRegex => any,
                    _ => !any && ms.any_value(key, |_| true),
                }
            }
            None => false,
        },
    }
}

/// What a point offers to a condition or an expression.
pub trait PointView {
    /// A field's value (`Value::Null` if the point lacks it).
    fn field(&self, name: &str) -> Option<&Value>;
    /// A tag's value (`None` if the series lacks it).
    fn tag(&self, name: &str) -> Option<&str>;
    /// Whether `name` is a tag of the measurement.
    fn is_tag(&self, name: &str) -> bool;
    /// Whether the measurement has `name` at all, as a field or a tag.
    fn is_known(&self, _name: &str) -> bool {
        true
    }
    /// What a tag the series lacks reads as: the empty string in conditions (InfluxQL),
    /// null in result columns.
    fn absent_tag_is_empty(&self) -> bool {
        true
    }
}

/// Evaluates an expression on one point: fields, tags (as strings), literals, arithmetic,
/// comparisons and AND / OR. `None` is InfluxQL's null.
pub fn eval(e: &Expr, p: &dyn PointView) -> Option<Value> {
    match e {
        Expr::Paren(inner) => eval(inner, p),
        Expr::VarRef(v) => {
            let as_tag = match v.data_type {
                Some(DataType::Tag) => true,
                Some(_) => false,
                None => p.is_tag(&v.name),
            };
            if as_tag {
                match p.tag(&v.name) {
                    Some(t) => Some(Value::Str(t.to_string())),
                    None if p.absent_tag_is_empty() => Some(Value::Str(String::new())),
                    None => None,
                }
            } else {
                let value = p.field(&v.name).filter(|v| **v != Value::Null)?;
                cast(value, v.data_type)
            }
        }
        Expr::Integer(i) => Some(Value::Int(*i)),
        Expr::Unsigned(u) => Some(Value::UInt(*u)),
        Expr::Number(f) => Some(Value::Float(*f)),
        Expr::Duration(d) => Some(Value::Int(*d)),
        Expr::Str(s) => Some(Value::Str(s.clone())),
        Expr::Bool(b) => Some(Value::Bool(*b)),
        Expr::Call(c) if super::transform::is_math(&c.name) => {
            let args: Vec<Option<Value>> = c.args.iter().map(|a| eval(a, p)).collect();
            super::transform::math(&c.name, &args)
        }
        Expr::Binary(b) => match b.op {
            BinaryOp::And => {
                let l = truthy(eval(&b.lhs, p));
                Some(Value::Bool(l && truthy(eval(&b.rhs, p))))
            }
            BinaryOp::Or => {
                let l = truthy(eval(&b.lhs, p));
                Some(Value::Bool(l || truthy(eval(&b.rhs, p))))
            }
            BinaryOp::EqRegex | BinaryOp::NeqRegex => {
                let Expr::Regex(r) = unparen(&b.rhs) else {
                    return Some(Value::Bool(false));
                };
                let m = match eval(&b.lhs, p) {
                    Some(Value::Str(s)) => r.regex().is_match(&s),
                    _ => return Some(Value::Bool(false)),
                };
                Some(Value::Bool(m == (b.op == BinaryOp::EqRegex)))
            }
            op if op.is_comparison() => {
                // Two names the measurement has neither as field nor as tag: InfluxDB
                // compares its two nulls as unequal (`=` false, `!=` true).
                let unknown = |e: &Expr| match unparen(e) {
                    Expr::VarRef(v) => v.data_type.is_none() && !p.is_known(&v.name),
                    _ => false,
                };
                if unknown(&b.lhs) && unknown(&b.rhs) {
                    return Some(Value::Bool(op == BinaryOp::Neq));
                }
                let (l, r) = (eval(&b.lhs, p), eval(&b.rhs, p));
                Some(Value::Bool(match (l, r) {
                    (Some(l), Some(r)) => compare(op, &l, &r),
                    _ => false,
                }))
            }
            op => arith(op, eval(&b.lhs, p), eval(&b.rhs, p)),
        },
        _ => None,
    }
}

/// A field value through a `::type` cast: numbers convert (a float to an integer
/// truncates), other kinds give null, as in InfluxDB.
fn cast(v: &Value, to: Option<DataType>) -> Option<Value> {
    Some(match (to, v) {
        (None | Some(DataType::Field), v) => v.clone(),
        (Some(DataType::Float), Value::Float(f)) => Value::Float(*f),
        (Some(DataType::Float), Value::Int(i)) => Value::Float(*i as f64),
        (Some(DataType::Float), Value::UInt(u)) => Value::Float(*u as f64),
        (Some(DataType::Integer), Value::Float(f)) => Value::Int(f.trunc() as i64),
        (Some(DataType::Integer), Value::Int(i)) => Value::Int(*i),
        (Some(DataType::Integer), Value::UInt(u)) => Value::Int(*u as i64),
        (Some(DataType::Unsigned), Value::Float(f)) if *f >= 0.0 => Value::UInt(f.trunc() as u64),
        (Some(DataType::Unsigned), Value::Int(i)) if *i >= 0 => Value::UInt(*i as u64),
        (Some(DataType::Unsigned), Value::UInt(u)) => Value::UInt(*u),
        (Some(DataType::String), Value::Str(s)) => Value::Str(s.clone()),
        (Some(DataType::Boolean), Value::Bool(b)) => Value::Bool(*b),
        _ => return None,
    })
}

pub fn truthy(v: Option<Value>) -> bool {
    matches!(v, Some(Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SHOW MEASUREMENTS WHERE` per measurement, as influxd 1.6.7 answered these cases.
    #[test]
    fn measurements_match_over_the_values_their_series_carry() {
        let mut cpu = MeasurementSeries::default();
        cpu.add(&[("host", "a"), ("dc", "x")]);
        cpu.add(&[("host", "b"), ("dc", "y")]);
        cpu.add(&[("host", "c")]);
        let mut mem = MeasurementSeries::default();
        mem.add::<&str, &str>(&[]);
        let mut net = MeasurementSeries::default();
        net.add(&[("host", "h9")]);
        let matching = |cond: &str| -> Vec<&str> {
            let e = crate::influxql::parse_expr(cond).unwrap();
            [("cpu", &cpu), ("mem", &mem), ("net", &net)]
                .into_iter()
                .filter(|(_, ms)| measurement_matching(ms, &e))
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(matching("host != 'h9'"), ["cpu"]);
        assert_eq!(matching("host = ''"), Vec::<&str>::new());
        assert_eq!(matching("dc != 'x'"), Vec::<&str>::new());
        assert_eq!(matching("dc != 'z'"), ["cpu"]);
        assert_eq!(matching("host !~ /h9/"), ["cpu"]);
        assert_eq!(matching("dc = 'y'"), ["cpu"]);
        assert_eq!(matching("host =~ /.*/"), ["cpu", "net"]);
        assert_eq!(matching("host != 'a' OR dc = 'y'"), ["cpu", "net"]);
        assert_eq!(matching("host != 'a' AND dc = 'y'"), Vec::<&str>::new());
    }
}
