//! `chunked=true` answers computed a partition at a time, so that exporting a measurement
//! (`SELECT * FROM m`) never holds the whole answer: each window is its own statement
//! execution (its own memory budget), the rows of one are sent before the next is read.
//!
//! Only where the answer is the concatenation of the windows' answers in time order: one
//! measurement named exactly, no `LIMIT`/`OFFSET`/`SLIMIT`/`SOFFSET`, every region hosted
//! by this node (the partitions of other nodes' regions are not known here), and either
//! - raw fields (no function) and no `GROUP BY`, or
//! - aggregates of each bucket (`count`, `sum`, `mean`, `median`, `mode`, `spread`,
//!   `stddev`, `min`, `max`, `first`, `last`, `percentile`, and arithmetic on them) with
//!   `GROUP BY time(d[, offset])` alone, `fill(none)` and no `tz()`: the windows are widened
//!   to whole buckets, so a bucket is never split, and an empty bucket is not answered
//!   either way (other fills answer the empty buckets of the whole range, which a window
//!   holding no point of the statement cannot know of).
//!
//! Anything else is answered whole, as before. Points of several series at one time have
//! no defined order (InfluxDB 1.6 answers them in its merge heap's order, which differs
//! from one timestamp to the next); a window may order them otherwise than the whole
//! answer would.

use crate::influxql::{
    BinaryOp, Dimension, Expr, Fill, MeasurementName, SelectStatement, SortOrder, TimeOffset,
};
use crate::model::TIME_COLUMN;

use super::Ctx;
use super::native::{and, cmp, var};

/// Whether an expression calls a function (an aggregate, a selector, a transformation).
fn has_call(e: &Expr) -> bool {
    match e {
        Expr::Call(_) => true,
        Expr::Binary(b) => has_call(&b.lhs) || has_call(&b.rhs),
        Expr::Paren(p) => has_call(p),
        _ => false,
    }
}

/// Functions whose value in a bucket depends on that bucket's points alone.
const PER_BUCKET: &[&str] = &[
    "count",
    "sum",
    "mean",
    "median",
    "mode",
    "spread",
    "stddev",
    "min",
    "max",
    "first",
    "last",
    "percentile",
];

/// Whether an expression is made of per-bucket aggregates of fields, constants and
/// arithmetic, with at least one aggregate.
fn per_bucket(e: &Expr) -> bool {
    fn walk(e: &Expr, calls: &mut usize) -> bool {
        match e {
            Expr::Call(c) => {
                *calls += 1;
                PER_BUCKET.contains(&c.name.as_str()) && c.args.iter().all(|a| !has_call(a))
            }
            Expr::Binary(b) => walk(&b.lhs, calls) && walk(&b.rhs, calls),
            Expr::Paren(p) => walk(p, calls),
            Expr::Integer(_) | Expr::Number(_) => true,
            _ => false,
        }
    }
    let mut calls = 0;
    walk(e, &mut calls) && calls > 0
}

/// The bucket width and offset of a statement grouped by `time(d[, offset])` alone, with
/// per-bucket aggregates, `fill(none)` and no `tz()`.
fn buckets(ctx: &Ctx, s: &SelectStatement) -> Option<(i64, i64)> {
    let [
        Dimension::Time {
            interval_ns,
            offset,
        },
    ] = s.dimensions.as_slice()
    else {
        return None;
    };
    let ok = s.fill == Fill::None
        && s.timezone.is_none()
        && *interval_ns > 0
        && s.fields.iter().all(|f| per_bucket(&f.expr));
    if !ok {
        return None;
    }
    let offset = match offset {
        None => 0,
        Some(TimeOffset::Duration(o)) => o.rem_euclid(*interval_ns),
        Some(TimeOffset::Now) => ctx.now_ns.rem_euclid(*interval_ns),
    };
    Some((*interval_ns, offset))
}

/// The time windows ([`crate::query::windows::spans`], in the statement's order) to run `s`
/// over, or `None` when it must be answered whole: not a select of one measurement as
/// described above, or data in at most one window.
pub async fn windows(ctx: &Ctx, s: &SelectStatement) -> Option<Vec<(i64, i64)>> {
    let common = s.limit.is_none()
        && s.offset.is_none()
        && s.slimit.is_none()
        && s.soffset.is_none()
        && s.sources.len() == 1;
    let raw = s.fields.iter().all(|f| !has_call(&f.expr)) && s.dimensions.is_empty();
    let bucketed = if raw { None } else { buckets(ctx, s) };
    if !common || !(raw || bucketed.is_some()) {
        return None;
    }
    let src = &s.sources[0];
    let MeasurementName::Name(m) = &src.name else {
        return None;
    };
    let db = ctx.database(src.database.as_deref()).ok()?;
    let engine = &ctx.engine;
    if !ctx.database_exists(&db) || !engine.regions().iter().all(|r| r.hosted()) {
        return None;
    }
    let mut out = crate::query::windows::spans(engine, &db, m, (i64::MIN, i64::MAX))
        .await
        .ok()?
        .windows;
    if let Some((every, offset)) = bucketed {
        out = crate::query::windows::aligned(&out, every, offset);
        // Without an upper time bound a bucketed statement ends at now(); its windows
        // must too (a window's own bound would let later points in).
        let (_, range) =
            crate::influxql::split_time_range(s.condition.as_ref(), ctx.now_ns).ok()?;
        if range.max_ns.is_none() {
            let end = ctx.now_ns.saturating_add(1);
            out.retain(|w| w.0 < end);
            if let Some(last) = out.last_mut() {
                last.1 = last.1.min(end);
            }
        }
    }
    if out.len() < 2 {
        return None;
    }
    if s.order == SortOrder::Desc {
        out.reverse();
    }
    Some(out)
}

/// `s` restricted to `[start, end)`.
pub fn within(s: &SelectStatement, (start, end): (i64, i64)) -> SelectStatement {
    let time = || var(TIME_COLUMN, false);
    let mut w = s.clone();
    let cond = and(
        w.condition.take().map(|c| Expr::Paren(Box::new(c))),
        cmp(BinaryOp::Gte, time(), Expr::Integer(start)),
    );
    w.condition = and(cond, cmp(BinaryOp::Lt, time(), Expr::Integer(end)));
    w
}
