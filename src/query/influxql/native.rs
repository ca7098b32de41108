//! The native `/api/v1/query` beyond what its own planner computes: several aggregates
//! (`agg=mean,max`), `median`, `mode`, `spread`, `percentile` (`agg=p99`), `distinct`,
//! `integral`, and `fill`. Such parameters become a SELECT statement run by the InfluxQL
//! engine, and its answer a [`QueryResult`] for the native encoders (JSON, CSV, Arrow).
//!
//! Columns: one aggregate keeps the field names (as the native API answers); several are
//! named `<agg>_<field>`.

use std::collections::{BTreeMap, HashMap};

use super::Ctx;
use super::result::{Cell, ResultSeries};
use crate::influxql::{
    BinaryExpr, BinaryOp, Call, DataType, Dimension, Expr, Field, Fill, Measurement,
    MeasurementName, RegexLiteral, SelectStatement, SortOrder, VarRef,
};
use crate::model::{ColumnKind, FieldType};
use crate::query::agg::Value;
use crate::query::plan::{TagOp, parse_where};
use crate::query::{QueryResult, Series};

/// The aggregates the native planner computes itself.
const NATIVE: [&str; 10] = [
    "", "none", "count", "sum", "mean", "avg", "min", "max", "first", "last",
];

/// Whether the parameters ask for something only the InfluxQL engine computes.
pub fn needs_influxql(p: &HashMap<String, String>) -> bool {
    let agg = p.get("agg").map(|s| s.trim()).unwrap_or("");
    p.contains_key("fill") || (!NATIVE.contains(&agg) && agg != "stddev")
}

/// One requested aggregate: the call's name and extra argument.
fn agg_call(a: &str) -> Result<(String, Option<Expr>), String> {
    let a = a.trim();
    if let Some(n) = a
        .strip_prefix("percentile_")
        .or_else(|| a.strip_prefix('p').filter(|n| n.parse::<f64>().is_ok()))
    {
        let n: f64 = n
            .parse()
            .map_err(|_| format!("invalid percentile {a:?}: use p99 or percentile_99.9"))?;
        if !(0.0..=100.0).contains(&n) {
            return Err(format!("invalid percentile {a:?}: between 0 and 100"));
        }
        return Ok(("percentile".into(), Some(Expr::Number(n))));
    }
    match a {
        "avg" => Ok(("mean".into(), None)),
        "count" | "sum" | "mean" | "min" | "max" | "first" | "last" | "stddev" | "median"
        | "mode" | "spread" | "distinct" | "integral" => Ok((a.to_string(), None)),
        other => Err(format!(
            "unknown agg {:?}: use count, sum, mean, min, max, first, last, stddev, median, mode, spread, distinct, integral or pNN (a percentile), several joined with ','",
            crate::model::truncate(other, 32)
        )),
    }
}

pub(crate) fn var(name: &str, tag: bool) -> Expr {
    Expr::VarRef(VarRef {
        name: name.to_string(),
        data_type: tag.then_some(DataType::Tag),
    })
}

pub(crate) fn and(a: Option<Expr>, b: Expr) -> Option<Expr> {
    Some(match a {
        None => b,
        Some(a) => Expr::Binary(BinaryExpr {
            op: BinaryOp::And,
            lhs: Box::new(a),
            rhs: Box::new(b),
        }),
    })
}

pub(crate) fn cmp(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    Expr::Binary(BinaryExpr {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    })
}

/// The SELECT statement the parameters describe.
async fn statement(
    ctx: &Ctx,
    p: &HashMap<String, String>,
) -> Result<(SelectStatement, String), String> {
    let get = |k: &str| p.get(k).map(|s| s.as_str()).filter(|s| !s.is_empty());
    let db = get("db").ok_or("missing required parameter `db`")?;
    let measurement = get("measurement").ok_or("missing required parameter `measurement`")?;
    let aggs: Vec<(String, Option<Expr>)> = get("agg")
        .unwrap_or("none")
        .split(',')
        .map(agg_call)
        .collect::<Result<_, _>>()?;
    if aggs.is_empty() {
        return Err("`fill` needs an aggregate (agg=mean, …)".into());
    }
    let fields: Vec<String> = match get("fields") {
        None | Some("*") => {
            let schema = ctx.schema(db).await.get(measurement).cloned();
            let mut f: Vec<String> = schema
                .iter()
                .flat_map(|s| s.iter())
                .filter_map(|(n, k)| match k {
                    ColumnKind::Field(t) => Some((n.to_string(), *t)),
                    ColumnKind::Tag => None,
                })
                .filter(|(_, t)| {
                    // A numeric aggregate over every field takes the numeric ones.
                    aggs.iter().all(|(a, _)| {
                        matches!(a.as_str(), "count" | "first" | "last" | "mode" | "distinct")
                    }) || matches!(
                        t,
                        FieldType::Float | FieldType::Integer | FieldType::UInteger
                    )
                })
                .map(|(n, _)| n)
                .collect();
            f.sort();
            f
        }
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
    };
    let several = aggs.len() > 1;
    let mut projection = Vec::new();
    for (a, extra) in &aggs {
        for f in &fields {
            let mut args = vec![var(f, false)];
            args.extend(extra.clone());
            let label = if a == "percentile" {
                get("agg")
                    .and_then(|all| all.split(',').map(str::trim).find(|x| x.starts_with('p')))
                    .unwrap_or("percentile")
                    .to_string()
            } else {
                a.clone()
            };
            projection.push(Field {
                expr: Expr::Call(Call {
                    name: a.clone(),
                    args,
                }),
                alias: Some(if several {
                    format!("{label}_{f}")
                } else {
                    f.clone()
                }),
            });
        }
    }
    let mut cond = None;
    let time = || var("time", false);
    let unit = crate::query::plan::precision_unit(get("precision"))?;
    let parse_time = |k: &str| -> Result<Option<i64>, String> {
        get(k)
            .map(|s| crate::query::plan::parse_time_in(k, s, unit, ctx.now_ns))
            .transpose()
    };
    if let Some(s) = parse_time("start")? {
        cond = and(cond, cmp(BinaryOp::Gte, time(), Expr::Integer(s)));
    }
    if let Some(e) = parse_time("end")? {
        cond = and(cond, cmp(BinaryOp::Lt, time(), Expr::Integer(e)));
    }
    if let Some(w) = get("where") {
        for pred in parse_where(w)? {
            let (op, rhs) = match pred.op {
                TagOp::Eq(v) => (BinaryOp::Eq, Expr::Str(v)),
                TagOp::Ne(v) => (BinaryOp::Neq, Expr::Str(v)),
                TagOp::Re(r) => (
                    BinaryOp::EqRegex,
                    Expr::Regex(RegexLiteral::new(r.as_str()).map_err(|e| e.to_string())?),
                ),
                TagOp::NotRe(r) => (
                    BinaryOp::NeqRegex,
                    Expr::Regex(RegexLiteral::new(r.as_str()).map_err(|e| e.to_string())?),
                ),
            };
            cond = and(cond, cmp(op, var(&pred.key, true), rhs));
        }
    }
    let mut dimensions = Vec::new();
    if let Some(e) = get("every") {
        let ns = crate::model::parse_duration(e).map_err(|e| format!("invalid every: {e}"))?;
        if ns <= 0 {
            return Err("invalid every: must be greater than zero".into());
        }
        dimensions.push(Dimension::Time {
            interval_ns: ns,
            offset: None,
        });
    }
    for g in get("group_by").into_iter().flat_map(|g| g.split(',')) {
        let g = g.trim();
        if !g.is_empty() {
            dimensions.push(Dimension::Tag(g.to_string()));
        }
    }
    let fill = match get("fill") {
        None | Some("null") => Fill::Null,
        Some("none") => Fill::None,
        Some("previous") => Fill::Previous,
        Some("linear") => Fill::Linear,
        Some(n) => match (n.parse::<i64>(), n.parse::<f64>()) {
            (Ok(i), _) => Fill::Integer(i),
            (_, Ok(f)) if f.is_finite() => Fill::Float(f),
            _ => {
                return Err(format!(
                    "invalid fill {:?}: use null, none, previous, linear or a number",
                    crate::model::truncate(n, 32)
                ));
            }
        },
    };
    let limit = get("limit")
        .map(|l| {
            l.parse::<u64>()
                .map_err(|_| format!("invalid limit {:?}", crate::model::truncate(l, 32)))
        })
        .transpose()?;
    Ok((
        SelectStatement {
            fields: projection,
            sources: vec![Measurement {
                database: Some(db.to_string()),
                retention_policy: None,
                name: MeasurementName::Name(measurement.to_string()),
            }],
            condition: cond,
            dimensions,
            fill,
            order: SortOrder::Asc,
            limit,
            offset: None,
            slimit: None,
            soffset: None,
            timezone: None,
        },
        measurement.to_string(),
    ))
}

fn value(c: Cell) -> Value {
    match c {
        Cell::Null => Value::Null,
        Cell::Int(i) | Cell::Time(i) => Value::Int(i),
        Cell::UInt(u) => Value::UInt(u),
        Cell::Float(f) => Value::Float(f),
        Cell::Str(s) => Value::Str(s.to_string()),
        Cell::Bool(b) => Value::Bool(b),
    }
}

/// Runs native parameters through the InfluxQL engine.
pub async fn run(ctx: &Ctx, p: &HashMap<String, String>) -> Result<QueryResult, String> {
    let (stmt, measurement) = statement(ctx, p).await?;
    let found: Vec<ResultSeries> = super::select::select(ctx, &stmt).await?;
    let columns: Vec<String> = found
        .first()
        .map(|s| s.columns.iter().skip(1).cloned().collect())
        .unwrap_or_else(|| stmt.fields.iter().filter_map(|f| f.alias.clone()).collect());
    let series = found
        .into_iter()
        .map(|s| Series {
            tags: s.tags.unwrap_or_default(),
            rows: s
                .values
                .into_iter()
                .map(|row| {
                    let mut it = row.into_iter();
                    let t = match it.next() {
                        Some(Cell::Time(t)) => t,
                        _ => 0,
                    };
                    (t, it.map(value).collect())
                })
                .collect(),
        })
        .collect();
    Ok(QueryResult {
        name: measurement,
        columns,
        series,
        partial: false,
        regions: BTreeMap::new(),
        refused: None,
        // A node that did not give its schema (the columns of its regions are missing).
        warnings: std::mem::take(&mut *ctx.warnings.lock()),
        skipped: Vec::new(),
    })
}
