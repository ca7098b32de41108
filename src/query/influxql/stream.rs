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
    BinaryOp, Dimension, Expr, Fill, MeasurementName, SelectStatement, SortOrder,
};
use crate::model::TIME_COLUMN;

use super::Ctx;
use super::funcs::Func;
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

/// Whether an expression is made of per-bucket aggregates of fields, constants and
/// arithmetic, with at least one aggregate.
fn per_bucket(e: &Expr) -> bool {
    fn walk(e: &Expr, calls: &mut usize) -> bool {
        match e {
            // One row per bucket from that bucket's points alone: not those answering
            // several rows a bucket (distinct, top, bottom), nor integral (its area
            // reaches across bucket edges) or count(distinct()).
            Expr::Call(c) => {
                *calls += 1;
                let per_bucket = matches!(
                    Func::of(c),
                    Ok((
                        Func::Count
                            | Func::Sum
                            | Func::Mean
                            | Func::Median
                            | Func::Mode
                            | Func::Spread
                            | Func::Stddev
                            | Func::Min
                            | Func::Max
                            | Func::First
                            | Func::Last
                            | Func::Percentile(_),
                        _
                    ))
                );
                per_bucket && c.args.iter().all(|a| !has_call(a))
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
    let offset = super::select::bucket_offset(offset.as_ref(), *interval_ns, ctx.now_ns);
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
    if !engine.regions().iter().all(|r| r.hosted()) || !ctx.database_exists(&db).await {
        return None;
    }
    // The windows of the statement's time range only. Without an upper bound a bucketed
    // statement ends at now(), and so must its windows (a window's own bound would let
    // later points in).
    let (_, range) = crate::influxql::split_time_range(s.condition.as_ref(), ctx.now_ns).ok()?;
    let end = match (range.max_ns, bucketed) {
        (Some(max), _) => max.saturating_add(1),
        (None, Some(_)) => ctx.now_ns.saturating_add(1),
        (None, None) => i64::MAX,
    };
    let start = range.min_ns.unwrap_or(i64::MIN);
    let mut out = crate::query::windows::spans(engine, &db, m, (start, end))
        .await
        .ok()?
        .windows;
    if let Some((every, offset)) = bucketed {
        out = crate::query::windows::aligned(&out, every, offset);
        if let Some(last) = out.last_mut() {
            last.1 = last.1.min(end);
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
