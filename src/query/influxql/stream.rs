//! `chunked=true` answers computed a window of time at a time, so that exporting a
//! measurement (`SELECT * FROM m`) or a long graph (`GROUP BY time(10s)` over a month) never
//! holds the whole answer: each window is its own statement execution (its own memory
//! budget), the rows of one are sent before the next is read.
//!
//! Only where the answer is the concatenation of the windows' answers in time order: one
//! measurement named exactly, no `SLIMIT`/`SOFFSET`, every region hosted by this node (the
//! partitions of other nodes' regions are not known here), and either
//! - raw fields (no function) and no `GROUP BY`, or
//! - aggregates of each bucket (`count`, `sum`, `mean`, `median`, `mode`, `spread`,
//!   `stddev`, `min`, `max`, `first`, `last`, `percentile`, and arithmetic on them) with
//!   `GROUP BY time(d[, offset])` alone, `fill(none)`, `fill(null)` or `fill(previous)`
//!   and no `tz()`: the windows are widened to whole
//!   buckets, so a bucket is never split, and joined up to about `chunk_size` buckets
//!   (at least 64, at most 100,000, fewer when `query.max_rows` or
//!   `query.max_memory` ask for fewer). Under `fill(none)`
//!   an empty bucket is answered by no window. Under `fill(null)` every bucket of the range
//!   is answered, so the statement needs a lower time bound (without one InfluxDB starts at
//!   the first point's bucket), the range is cut into windows of that many buckets (empty
//!   stretches included), and windows are answered once what the fill depends on over the
//!   whole range is known ([`Streamed::filled`]); a series without any point is not
//!   answered, as InfluxDB does. Under `fill(previous)` too, each window starting from the
//!   last values of the windows before it ([`super::select::Window::previous`]).
//!
//! With a bucketed statement, `LIMIT` and `OFFSET` count the rows of its one series
//! across windows, and reading stops once the limit is reached; a raw select with them is
//! answered whole (its read stops at the rows it needs). Statements grouped by tags go a
//! batch of groups at a time ([`group_parts`]). Anything else (`fill(linear)`, a number as
//! fill, several measurements) is answered whole, within `query.max_rows` and
//! `query.max_memory`. Points of several series at one
//! time have no defined order (InfluxDB 1.6 answers them in its merge heap's order, which
//! differs from one timestamp to the next); a window may order them otherwise than the
//! whole answer would.

use crate::catalog::series::MeasurementSeries;
use crate::influxql::{
    BinaryOp, Dimension, Expr, Fill, MeasurementName, SelectStatement, SortOrder,
};
use crate::model::{ColumnKind, TIME_COLUMN};
use roaring::RoaringBitmap;

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
/// per-bucket aggregates, `fill(none)`, `fill(null)` or `fill(previous)`, and no `tz()`.
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
    let ok = matches!(s.fill, Fill::None | Fill::Null | Fill::Previous)
        && s.timezone.is_none()
        && *interval_ns > 0
        && s.fields.iter().all(|f| per_bucket(&f.expr));
    if !ok {
        return None;
    }
    let offset = super::select::bucket_offset(offset.as_ref(), *interval_ns, ctx.now_ns);
    Some((*interval_ns, offset))
}

/// Most buckets of one window: what one execution answers a series (filled).
pub const MAX_WINDOW_BUCKETS: i64 = 100_000;

/// How a statement is answered a window at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Streamed {
    /// `[start, end)` windows in the statement's order.
    pub windows: Vec<(i64, i64)>,
    /// Buckets are filled (`fill(null)`): see [`super::select::Window`]. A window is
    /// answered once the series is known to exist (a window answered it) and every
    /// `count()` of the statement is known to have a value somewhere (it fills with 0 only
    /// then); until then windows are held, and run again once that is known or the last
    /// window was read. If no window answers the series, neither do they.
    pub filled: bool,
}

/// How to run `s` a window at a time ([`crate::query::windows::spans`]), or `None` when it
/// must be answered whole: not a select of one measurement as described above, or data in
/// at most one window.
pub async fn windows(ctx: &Ctx, s: &SelectStatement, chunk_size: usize) -> Option<Streamed> {
    let common = s.slimit.is_none() && s.soffset.is_none() && s.sources.len() == 1;
    let raw = s.fields.iter().all(|f| !has_call(&f.expr)) && s.dimensions.is_empty();
    let bucketed = if raw { None } else { buckets(ctx, s) };
    // A raw LIMIT reads only the rows it needs when answered whole (each series' edge
    // first, then a range around it), where a window would read its partition whole.
    let paged = s.limit.is_some() || s.offset.is_some();
    if !common || !(raw && !paged || bucketed.is_some()) {
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
    let filled = bucketed.is_some() && s.fill != Fill::None;
    if filled && range.min_ns.is_none() || start >= end {
        return None;
    }
    let mut out = crate::query::windows::spans(engine, &db, m, (start, end))
        .await
        .ok()?
        .windows;
    if let Some((every, offset)) = bucketed {
        let step = every.saturating_mul(window_buckets(ctx, s, chunk_size));
        out = if filled {
            // Every bucket of the range, empty stretches included, a step at a time.
            let first = super::select::bucket_start(start, every, offset);
            let last = super::select::bucket_start(end - 1, every, offset);
            let count = (i128::from(last) - i128::from(first)) / i128::from(every) + 1;
            if count > i128::from(super::select::MAX_BUCKETS) || out.is_empty() {
                // The whole statement answers the error (or nothing at all).
                return None;
            }
            cut((first, end), step)
        } else {
            let mut aligned = crate::query::windows::aligned(&out, every, offset);
            if let Some(last) = aligned.last_mut() {
                last.1 = last.1.min(end);
            }
            merged(&aligned, step)
        };
    }
    if out.len() < 2 {
        return None;
    }
    if s.order == SortOrder::Desc {
        out.reverse();
    }
    Some(Streamed {
        windows: out,
        filled,
    })
}

/// How a statement grouped by tags is answered a batch of groups at a time
/// ([`crate::query::parts`]): each part is the statement over the whole range, restricted
/// to the series of its groups, so that every function, fill and `LIMIT`/`OFFSET` sees a
/// group's points exactly as the whole answer does (InfluxDB computes each group on its
/// own); the parts' series, one after the other, are the whole answer's.
#[derive(Debug, Clone)]
pub struct GroupParts {
    /// The statement without `SLIMIT` and `SOFFSET` (they count the series of every
    /// part together).
    pub statement: SelectStatement,
    /// Its database and measurement, whose series catalog lists the groups.
    pub db: String,
    pub measurement: String,
    /// The statement's tag comparisons joined by AND: the series whose groups are listed.
    pub tag_cond: Option<Expr>,
    /// The grouping keys that are tags, sorted: the order of the answer's series.
    pub keys: Vec<String>,
    pub parts: Vec<crate::query::parts::GroupPart>,
    pub soffset: usize,
    pub slimit: Option<usize>,
}

impl GroupParts {
    /// `make` over the measurement's series catalog as it is now, with the series the
    /// statement's tag comparisons match ([`GroupParts::tag_cond`]); `None` when the
    /// catalog no longer lists the measurement.
    pub fn with_catalog<T>(
        &self,
        ctx: &Ctx,
        make: impl FnOnce(&MeasurementSeries, Option<&RoaringBitmap>) -> T,
    ) -> Option<T> {
        let entry = ctx.engine.series().get(&self.db, &self.measurement)?;
        let ms = entry.read();
        let among = (self.tag_cond.as_ref()).map(|c| super::cond::series_matching(&ms, c));
        Some(make(&ms, among.as_ref()))
    }
}

/// How to run `s` a batch of groups at a time, or `None` when it is answered whole: a
/// select of one measurement named exactly, grouped by tags named outright (and perhaps
/// `time()`), not raw rows with `LIMIT`/`OFFSET`, every region hosted here, whose answer
/// is estimated to hold more rows than one part ([`part_rows`]), and whose first key (in
/// sorted order) has between 2 and [`crate::query::parts::MAX_GROUP_VALUES`] values in the
/// series catalog.
pub async fn group_parts(ctx: &Ctx, s: &SelectStatement) -> Option<GroupParts> {
    use crate::query::parts;
    let [src] = s.sources.as_slice() else {
        return None;
    };
    let MeasurementName::Name(m) = &src.name else {
        return None;
    };
    let by_tags = s.dimensions.iter().any(|d| matches!(d, Dimension::Tag(_)));
    let explicit = s
        .dimensions
        .iter()
        .all(|d| matches!(d, Dimension::Tag(_) | Dimension::Time { .. }));
    // A raw LIMIT reads only the rows it needs when answered whole.
    let raw = s.fields.iter().all(|f| !has_call(&f.expr));
    let paged = s.limit.is_some() || s.offset.is_some();
    if !by_tags || !explicit || raw && paged {
        return None;
    }
    let db = ctx.database(src.database.as_deref()).ok()?;
    let engine = &ctx.engine;
    let catalog = engine.series();
    if !engine.regions().iter().all(|r| r.hosted()) || !catalog.is_loaded() {
        return None;
    }
    let schema = ctx.local_schema(&db).get(m.as_str()).cloned()?;
    let mut keys: Vec<String> = s
        .dimensions
        .iter()
        .filter_map(|d| match d {
            Dimension::Tag(t) if matches!(schema.get(t.as_str()), Some(ColumnKind::Tag)) => {
                Some(t.clone())
            }
            _ => None,
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let (rest, range) = crate::influxql::split_time_range(s.condition.as_ref(), ctx.now_ns).ok()?;
    // The groups of the series the condition's tag comparisons (joined by AND) can match:
    // `WHERE host = 'a' … GROUP BY host` is one group, not a part per host.
    let is_tag = |n: &str| matches!(schema.get(n), Some(ColumnKind::Tag));
    let tag_cond = rest.as_ref().and_then(|r| {
        super::cond::conjuncts(r)
            .into_iter()
            .filter(|c| super::cond::is_tag_only(c, &is_tag))
            .fold(None, |acc, c| and(acc, c.clone()))
    });
    let (first, groups, series) = {
        let entry = catalog.get(&db, m)?;
        let ms = entry.read();
        let among = tag_cond
            .as_ref()
            .map(|c| super::cond::series_matching(&ms, c));
        let first = parts::first_values(&ms, among.as_ref(), keys.first()?)?;
        // Groups: at most the series, and at most the combinations of the keys' values.
        let combinations = keys
            .iter()
            .fold(1u64, |n, k| n.saturating_mul(ms.value_count(k) as u64 + 1));
        let matching = among.as_ref().map_or(ms.len(), |a| a.len());
        (first, matching.min(combinations).max(1), ms.len().max(1))
    };
    // Rows a group answers: its buckets; one for aggregates without `time()`; its share
    // of the points for raw rows.
    let end = range.max_ns.unwrap_or(ctx.now_ns).saturating_add(1);
    let interval = s.dimensions.iter().find_map(|d| match d {
        Dimension::Time { interval_ns, .. } => Some(*interval_ns),
        _ => None,
    });
    let per_group: u64 = match interval {
        Some(every) if every > 0 => {
            let start = match range.min_ns {
                Some(min) => min,
                None => {
                    let spans = crate::query::windows::spans(engine, &db, m, (i64::MIN, end))
                        .await
                        .ok()?;
                    spans.windows.first()?.0
                }
            };
            let span = (i128::from(end) - i128::from(start)).max(0);
            u64::try_from(span / i128::from(every) + 1).unwrap_or(u64::MAX)
        }
        _ if !raw => 1,
        _ => {
            let lo = range.min_ns.unwrap_or(i64::MIN);
            let hi = range.max_ns.map_or(i64::MAX, |m| m.saturating_add(1));
            let spans = crate::query::windows::spans(engine, &db, m, (lo, hi))
                .await
                .ok()?;
            spans.rows / series
        }
    };
    let per_part = u64::try_from(part_rows(ctx, s)).unwrap_or(1);
    let total = per_group.saturating_mul(groups);
    if total <= per_part {
        return None;
    }
    let per_value = (total / first.len() as u64).max(1);
    let batch = (per_part / per_value).clamp(1, parts::MAX_BATCH_VALUES as u64) as usize;
    let mut statement = s.clone();
    statement.slimit = None;
    statement.soffset = None;
    Some(GroupParts {
        statement,
        db,
        measurement: m.clone(),
        tag_cond,
        keys,
        parts: ordered(
            parts::batches(Vec::new(), first, batch),
            s.order == SortOrder::Desc,
        ),
        soffset: s.soffset.map_or(0, |o| o as usize),
        slimit: s.slimit.map(|l| l as usize),
    })
}

/// Parts made in the order of their groups, in the answer's order: reversed for
/// `ORDER BY time DESC`, the rest (series written since) last either way.
pub fn ordered(
    mut parts: Vec<crate::query::parts::GroupPart>,
    desc: bool,
) -> Vec<crate::query::parts::GroupPart> {
    if desc {
        let batches = parts.iter().take_while(|p| !p.rest).count();
        parts[..batches].reverse();
    }
    parts
}

/// Rows of one part of groups: at most [`GROUP_PART_ROWS`], a quarter of `query.max_rows`
/// (the estimate may be short: a part over it is halved, at a cost) and what half of
/// `query.max_memory` holds ([`window_buckets`]), whatever the chunk size (a part is a
/// statement execution reading every file of the range).
fn part_rows(ctx: &Ctx, s: &SelectStatement) -> i64 {
    let quarter = i64::try_from(ctx.max_rows / 4).unwrap_or(i64::MAX);
    window_buckets(ctx, s, usize::MAX)
        .min(GROUP_PART_ROWS)
        .min(quarter)
        .max(1)
}

/// Most rows of one part of groups. Measured on the benchmark's 12 hours (1,000 hosts,
/// `mean, max … GROUP BY time(1m), hostname`, 720,000 rows): parts of 100,000 rows took
/// 0.50 s and a 206 MB peak RSS, of 10,000 rows 0.50 s and 143 MB, of 2,500 rows 0.67 s
/// and 137 MB.
pub const GROUP_PART_ROWS: i64 = 10_000;

/// Fewest buckets of one window whatever the chunk size (a window is a statement
/// execution: one per few rows would cost more than the rows).
pub const MIN_WINDOW_BUCKETS: i64 = 64;

/// Most buckets of one window: about a chunk's rows (`chunk_size`, at least
/// [`MIN_WINDOW_BUCKETS`]), so that a window computes what the client takes at a time; at
/// most [`MAX_WINDOW_BUCKETS`], and fewer when `query.max_rows` is lower (a filled window
/// answers all of its buckets) or when the buckets' results (about `BUCKET_BYTES` and
/// `CALL_BYTES` a function, twice for the answer's rows) could take more than half of
/// `query.max_memory`.
fn window_buckets(ctx: &Ctx, s: &SelectStatement, chunk_size: usize) -> i64 {
    const BUCKET_BYTES: u64 = 256;
    const CALL_BYTES: u64 = 64;
    fn calls(e: &Expr) -> u64 {
        match e {
            Expr::Call(_) => 1,
            Expr::Binary(b) => calls(&b.lhs) + calls(&b.rhs),
            Expr::Paren(p) => calls(p),
            _ => 0,
        }
    }
    let per_bucket =
        BUCKET_BYTES + CALL_BYTES * s.fields.iter().map(|f| calls(&f.expr)).sum::<u64>();
    let by_memory = ctx.query_memory.per_query() / 2 / per_bucket;
    let chunk = i64::try_from(chunk_size).unwrap_or(i64::MAX);
    MAX_WINDOW_BUCKETS
        .min(chunk.max(MIN_WINDOW_BUCKETS))
        .min(i64::try_from(ctx.max_rows).unwrap_or(i64::MAX))
        .min(i64::try_from(by_memory).unwrap_or(i64::MAX))
        .max(1)
}

/// `[start, end)` cut into windows `step` long (the last one shorter).
fn cut((mut start, end): (i64, i64), step: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    while start < end {
        let e = start.saturating_add(step).min(end);
        out.push((start, e));
        start = e;
    }
    out
}

/// Consecutive windows joined while a joined window is at most `step` long: a window per
/// partition would run the statement once per partition (720 times for a month of hourly
/// buckets over hourly partitions), where its functions already read points a window at
/// a time within the memory budget.
fn merged(windows: &[(i64, i64)], step: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &(a, b) in windows {
        match out.last_mut() {
            Some(last) if (i128::from(b) - i128::from(last.0)) <= i128::from(step) => last.1 = b,
            _ => out.push((a, b)),
        }
    }
    out
}

/// `s` restricted to `[start, end)`, without its `LIMIT` and `OFFSET` (the rows of every
/// window together are paged by the caller, [`Streamed`]).
pub fn within(s: &SelectStatement, (start, end): (i64, i64)) -> SelectStatement {
    let time = || var(TIME_COLUMN, false);
    let mut w = s.clone();
    w.limit = None;
    w.offset = None;
    let cond = and(
        w.condition.take().map(|c| Expr::Paren(Box::new(c))),
        cmp(BinaryOp::Gte, time(), Expr::Integer(start)),
    );
    w.condition = and(cond, cmp(BinaryOp::Lt, time(), Expr::Integer(end)));
    w
}
