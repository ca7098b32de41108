//! `chunked=true` answers of raw SELECTs computed a partition at a time, so that exporting
//! a measurement (`SELECT * FROM m`) never holds the whole answer: each window is its own
//! statement execution (its own memory budget), the rows of one are sent before the next
//! is read.
//!
//! Only where the answer is the concatenation of the windows' answers in time order: raw
//! fields (no function), one measurement named exactly, no `GROUP BY`, no `LIMIT`/
//! `OFFSET`/`SLIMIT`/`SOFFSET`, and every region hosted by this node (the partitions of
//! other nodes' regions are not known here). Anything else is answered whole, as before.
//! Points of several series at one time have no defined order (InfluxDB 1.6 answers them
//! in its merge heap's order, which differs from one timestamp to the next); a window may
//! order them otherwise than the whole answer would.

use crate::influxql::{BinaryOp, Expr, MeasurementName, SelectStatement, SortOrder};
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

/// The time windows ([`crate::query::windows::spans`], in the statement's order) to run `s`
/// over, or `None` when it must be answered whole: not a raw select of one measurement as
/// described above, or data in at most one partition.
pub async fn windows(ctx: &Ctx, s: &SelectStatement) -> Option<Vec<(i64, i64)>> {
    let raw = s.fields.iter().all(|f| !has_call(&f.expr))
        && s.dimensions.is_empty()
        && s.limit.is_none()
        && s.offset.is_none()
        && s.slimit.is_none()
        && s.soffset.is_none()
        && s.sources.len() == 1;
    if !raw {
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
