//! Native answers too large to hold whole: raw rows (`agg=none`, the export of a
//! measurement) and bucketed aggregates (`every`), computed a part at a time, each part
//! within its own `query.max_memory`, its rows sent before the next part is read. Without
//! `group_by` a part is a window of time (for buckets, a window of whole buckets, so that
//! no bucket is split); with it, a batch of values of the first `group_by` key (series
//! come in the order of their group values, so a group is never split between parts), from
//! the series catalog. One value too large for a part goes by the values of the next key
//! under it, and one value of the last key (a single group) by time windows. An aggregate
//! without `every` (one row per group) and `fill` (the InfluxQL engine) are answered whole.
//!
//! The windows are the spans the measurement's files and blocks hold
//! ([`crate::query::windows`]); a window whose rows would pass the budget is cut in halves
//! until they fit (at most [`MAX_SPLITS`] times; a single instant that does not fit is
//! refused). The columns are those of the files and blocks the range overlaps (every tag,
//! then every field, or the fields asked for), known before the first row, so that a CSV
//! header and an Arrow schema can be sent first. Used only where every region is hosted
//! here and the answer is estimated to pass `query.stream_above` (a quarter of
//! `query.max_memory` by default); other answers are computed whole as before. The whole export runs within `query.timeout`.
//!
//! A failure after the first rows were sent (a timeout, the shared budget spent, a region
//! error): a JSON answer ends with `"partial": true` and the reason in `warnings`; a CSV or
//! Arrow answer, which has no place for it, is cut short (the connection is reset before the
//! end of the body), never ended as if it were complete.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use axum::response::{IntoResponse, Response};

use super::Shared;
use super::error::{ApiError, Dialect, DialectError};
use crate::model::ColumnKind;
use crate::query::agg::{Agg, Value};
use crate::query::budget::OVER_QUERY_MEMORY;
use crate::query::output::{RowStream, agg_type};
use crate::query::parts::{self, GroupPart, MAX_BATCH_VALUES};
use crate::query::plan::{Format, QuerySpec, TagPred};
use crate::query::{Refusal, RegionReport, windows};

/// Bytes a raw row is estimated to hold in memory: its slot, its time and one value per
/// column (strings cost more; this only chooses between whole and streamed answers).
fn row_estimate(columns: usize) -> u64 {
    48 + 24 * (columns as u64 + 1)
}

/// Bytes a result row of an aggregate is estimated to hold: one accumulator per column and
/// its bucket's slot.
fn agg_row_estimate(columns: usize) -> u64 {
    64 + std::mem::size_of::<crate::query::agg::Acc>() as u64 * columns as u64
}

/// The windows and columns of an answer to stream, or `None` when it is answered whole.
pub async fn plan(state: &Shared, spec: &QuerySpec) -> Option<Plan> {
    let engine = &state.engine;
    // An aggregate without `every` has one row per group: answered whole.
    let raw = spec.agg == Agg::None;
    if (!raw && spec.every.is_none()) || !engine.regions().iter().all(|r| r.hosted()) {
        return None;
    }
    // The groups of a bucketed answer: at most the series, and at most the combinations of
    // the group_by keys' values (each key's values, and its absence), as the series
    // catalog lists them (`None`: not listed).
    let groups: Option<u64> = if raw {
        None
    } else if spec.group_by.is_empty() {
        Some(1)
    } else {
        engine
            .series()
            .get(&spec.db, &spec.measurement)
            .map(|entry| {
                let ms = entry.read();
                let combinations = spec.group_by.iter().fold(1u64, |n, key| {
                    n.saturating_mul(ms.value_count(key) as u64 + 1)
                });
                ms.len().min(combinations)
            })
    };
    if let (false, Some(every)) = (raw, spec.every) {
        // A bucketed answer that cannot pass the threshold (the buckets of its range, every
        // column of the measurement) is answered whole without looking at its files.
        let columns = match &spec.fields {
            Some(list) => Some(list.len()),
            None => engine
                .registry()
                .get(&spec.db, &spec.measurement)
                .map(|m| m.len()),
        };
        let span = (spec.end as i128 - spec.lo() as i128).max(0) as u128;
        let buckets = span / every.max(1) as u128 + 2;
        if let (Some(columns), Some(groups)) = (columns, groups) {
            let most = buckets
                .saturating_mul(groups as u128)
                .saturating_mul(agg_row_estimate(columns) as u128);
            if most <= state.config.query.stream_above as u128 {
                return None;
            }
        }
    }
    let spans = windows::spans(engine, &spec.db, &spec.measurement, (spec.lo(), spec.end))
        .await
        .ok()?;
    let is_tag = |kinds: &[ColumnKind]| kinds.contains(&ColumnKind::Tag);
    let grouped = |n: &String| spec.group_by.contains(n);
    let columns: Vec<String> = match &spec.fields {
        // As the whole answer: a field list is its columns, as given.
        Some(list) => list.clone(),
        // Tags not grouped on (sorted, in a BTreeMap), then fields: as a whole answer
        // orders them.
        None if raw => {
            let tags = spans.columns.iter().filter(|(_, k)| is_tag(k));
            let fields = spans.columns.iter().filter(|(_, k)| !is_tag(k));
            tags.chain(fields)
                .map(|(n, _)| n)
                .filter(|n| !grouped(n))
                .cloned()
                .collect()
        }
        // An aggregate's columns: every field, sorted.
        None => spans
            .columns
            .iter()
            .filter(|(_, k)| !is_tag(k))
            .map(|(n, _)| n.clone())
            .collect(),
    };
    // Bucketed: windows of whole buckets, so that no bucket is split between two parts.
    let windows = match spec.every {
        Some(every) if !raw => windows::aligned(&spans.windows, every, 0),
        _ => spans.windows.clone(),
    };
    let (rows, row_bytes) = if raw {
        (spans.rows, row_estimate(columns.len()))
    } else {
        // Result rows: a group's buckets, at most one per point.
        let every = spec.every.unwrap_or(1).max(1) as u128;
        let buckets: u128 = windows
            .iter()
            .map(|(lo, hi)| (*hi as i128 - *lo as i128) as u128 / every)
            .sum();
        let groups = groups.unwrap_or(spans.rows);
        let rows = buckets
            .saturating_mul(groups as u128)
            .min(spans.rows as u128) as u64;
        (rows, agg_row_estimate(columns.len()))
    };
    let estimate = rows.saturating_mul(row_bytes).min(
        spec.limit
            .map_or(u64::MAX, |l| (l as u64).saturating_mul(row_bytes)),
    );
    if estimate <= state.config.query.stream_above {
        return None;
    }
    let units = if spec.group_by.is_empty() {
        // One window of raw rows is answered whole; one of buckets may still be halved.
        if windows.is_empty() || (raw && windows.len() < 2) {
            return None;
        }
        windows
            .iter()
            .map(|w| Unit::Window {
                span: *w,
                splits: 0,
                preds: Vec::new(),
            })
            .collect()
    } else {
        // Series come in the order of their group_by values, the first key first: the
        // answer goes a batch of that key's values at a time (from the series catalog),
        // each batch sized to about a quarter of the budget.
        let catalog = engine.series();
        // Right after a start the catalog may still be reading the files: wait for it
        // a quarter of the query's time at most (else the answer is computed whole, with
        // the rest of the time).
        let until = std::time::Instant::now()
            .checked_add(state.config.query.timeout / 4)
            .unwrap_or_else(std::time::Instant::now);
        while !catalog.is_loaded() {
            let now = std::time::Instant::now();
            if now >= until || spec.deadline.is_some_and(|d| now >= d) {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let entry = catalog.get(&spec.db, &spec.measurement)?;
        let key = &spec.group_by[0];
        // Many distinct values (an id-like key): each part would test every value of the
        // key in every file; computed whole instead (within the budget).
        let values = parts::first_values(&entry.read(), None, key)?;
        let per_value = estimate / values.len() as u64;
        let batch = (state.query_memory.per_query() / 4)
            .checked_div(per_value)
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_BATCH_VALUES as u64) as usize;
        parts::batches(Vec::new(), values, batch)
            .into_iter()
            .map(Unit::Groups)
            .collect()
    };
    let types = columns
        .iter()
        .map(|c| {
            agg_type(
                spec.agg,
                spans.columns.get(c).map_or(&[][..], Vec::as_slice),
            )
        })
        .collect();
    Some(Plan {
        units,
        windows,
        columns,
        types,
    })
}

/// What [`plan`] found.
pub struct Plan {
    units: Vec<Unit>,
    windows: Vec<(i64, i64)>,
    columns: Vec<String>,
    types: Vec<arrow::datatypes::DataType>,
}

/// One part of a streamed answer.
#[derive(Debug, Clone)]
enum Unit {
    /// A time window (halved `splits` times), of the series `preds` select.
    Window {
        span: (i64, i64),
        splits: u32,
        preds: Vec<TagPred>,
    },
    /// Groups over the whole range.
    Groups(GroupPart),
}

/// A part's series (tags, rows) and the query holding their memory budget.
type WindowRows = (
    Vec<(BTreeMap<String, String>, Vec<(i64, Vec<Value>)>)>,
    Arc<QuerySpec>,
);

/// How many times a window is halved at most. A file's series are read whole whatever the
/// window (then cut by time), so when one file alone passes the budget, halving does not
/// help: after this many halvings (1/4,096 of a partition's span) the answer is refused.
const MAX_SPLITS: u32 = 12;

/// Runs the windows one after the other.
struct Windows {
    state: Shared,
    spec: Arc<QuerySpec>,
    params: Arc<HashMap<String, String>>,
    /// Parts still to run.
    queue: VecDeque<Unit>,
    /// The measurement's time windows (a group too large for one part goes by them).
    windows: Vec<(i64, i64)>,
    columns: Vec<String>,
    /// Rows still allowed by `limit`.
    left: Option<usize>,
    regions: BTreeMap<String, RegionReport>,
    partial: bool,
    /// Series written after the parts were made came last.
    late: bool,
    /// Per field, the values a numeric aggregate left out over every part, and whether
    /// it used some number of that field.
    skipped: BTreeMap<String, (u64, bool)>,
}

impl Windows {
    /// The smaller parts of a group part too large for the budget: halves of its values,
    /// the values of the next `group_by` key under one value ([`parts::smaller`]), or, for
    /// one value of the last key (one group), the measurement's time windows. Empty when
    /// there are none.
    fn smaller(&self, part: GroupPart) -> Vec<Unit> {
        let group_by = &self.spec.group_by;
        let one_group =
            !part.rest && part.values.len() == 1 && part.fixed.len() + 1 == group_by.len();
        if one_group {
            let Some(preds) = part.preds(group_by) else {
                return Vec::new();
            };
            return self
                .windows
                .iter()
                .map(|span| Unit::Window {
                    span: *span,
                    splits: 0,
                    preds: preds.clone(),
                })
                .collect();
        }
        let catalog = (self.state.engine.series()).get(&self.spec.db, &self.spec.measurement);
        let smaller = match catalog {
            Some(entry) => parts::smaller(&entry.read(), None, group_by, &part),
            None => part.halves().map(|h| h.to_vec()),
        };
        smaller.into_iter().flatten().map(Unit::Groups).collect()
    }

    /// The next window's rows (never empty) with the query that holds their memory budget
    /// (drop it once they are sent), `None` at the end, or why the answer stops.
    async fn next(&mut self) -> Result<Option<WindowRows>, Refusal> {
        loop {
            if self.left == Some(0) {
                return Ok(None);
            }
            let Some(unit) = self.queue.pop_front() else {
                return Ok(None);
            };
            let remaining = self
                .spec
                .deadline
                .map(|d| d.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or(self.state.config.query.timeout);
            let mut w = (*self.spec).clone();
            match &unit {
                Unit::Window { span, preds, .. } => {
                    w.start = span.0.max(self.spec.start);
                    w.end = span.1.min(self.spec.end);
                    w.preds.extend(preds.iter().cloned());
                }
                Unit::Groups(part) if part.rest => {
                    // Series written since the parts were made, with values of their own.
                    let late = (self.state.engine.series())
                        .get(&self.spec.db, &self.spec.measurement)
                        .map(|entry| parts::late(&entry.read(), None, &self.spec.group_by, part));
                    for p in late.into_iter().flatten().rev() {
                        self.queue.push_front(Unit::Groups(p));
                    }
                    continue;
                }
                Unit::Groups(part) => match part.preds(&self.spec.group_by) {
                    Some(p) => w.preds.extend(p),
                    // A regex too large: smaller parts, as for too many rows.
                    None => match part.halves() {
                        Some(halves) => {
                            for half in halves.into_iter().rev() {
                                self.queue.push_front(Unit::Groups(half));
                            }
                            continue;
                        }
                        None => {
                            return Err(Refusal::TooLarge(format!(
                                "{OVER_QUERY_MEMORY} the group_by values do not fit one part"
                            )));
                        }
                    },
                },
            }
            w.limit = self.left;
            w.budget = Some(Arc::new(self.state.query_memory.budget()));
            let hold = Arc::new(w);
            let r = crate::query::run(
                &self.state.engine,
                hold.clone(),
                self.params.clone(),
                &self.state.remote,
                remaining,
                self.state.config.query.max_rows,
            )
            .await;
            let late = matches!(&unit, Unit::Groups(p) if p.late);
            match r.refused {
                Some(Refusal::TooLarge(m)) => {
                    // Smaller parts: halves of the window, halves of the values; one value
                    // goes by the values of the next group_by key under it, and one value
                    // of the last key (one series group) by time windows.
                    let smaller: Vec<Unit> = match unit {
                        Unit::Window {
                            span,
                            splits,
                            preds,
                        } => match windows::halves_at(span, self.spec.every.unwrap_or(1)) {
                            Some((a, b)) if splits < MAX_SPLITS => [a, b]
                                .into_iter()
                                .map(|span| Unit::Window {
                                    span,
                                    splits: splits + 1,
                                    preds: preds.clone(),
                                })
                                .collect(),
                            _ => Vec::new(),
                        },
                        Unit::Groups(part) => self.smaller(part),
                    };
                    if smaller.is_empty() {
                        return Err(Refusal::TooLarge(m));
                    }
                    for p in smaller.into_iter().rev() {
                        self.queue.push_front(p);
                    }
                    continue;
                }
                Some(refusal @ (Refusal::Busy(_) | Refusal::Forbidden(_))) => return Err(refusal),
                None => {}
            }
            for (name, rep) in r.regions {
                match self.regions.get_mut(&name) {
                    None => {
                        self.regions.insert(name, rep);
                    }
                    Some(sum) => {
                        // Summed to the microsecond (no float noise in the answer).
                        sum.ms = ((sum.ms + rep.ms) * 1000.0).round() / 1000.0;
                        sum.rows_scanned += rep.rows_scanned;
                        sum.files_read += rep.files_read;
                        sum.row_groups_pruned += rep.row_groups_pruned;
                        if rep.status != "ok" {
                            sum.status = rep.status;
                            sum.error = rep.error;
                        }
                    }
                }
            }
            for (field, n, used) in r.skipped {
                let sum = self.skipped.entry(field).or_default();
                *sum = (sum.0 + n, sum.1 || used);
            }
            if r.partial {
                // What came is sent; nothing after it (the answer says it is partial).
                self.partial = true;
                self.queue.clear();
            }
            let map: Vec<Option<usize>> = r
                .columns
                .iter()
                .map(|c| self.columns.iter().position(|x| x == c))
                .collect();
            // A column the part has no value of holds what the whole answer has where a
            // row has none: a count of nothing is 0, anything else null.
            let absent = match self.spec.agg {
                Agg::None => Value::Null,
                agg => crate::query::agg::Acc::default().finish(agg).0,
            };
            let mut series = Vec::with_capacity(r.series.len());
            for s in r.series {
                let mut rows: Vec<(i64, Vec<Value>)> = Vec::with_capacity(s.rows.len());
                for (t, vals) in s.rows {
                    let mut out = vec![absent.clone(); self.columns.len()];
                    for (v, to) in vals.into_iter().zip(&map) {
                        if let Some(i) = to {
                            out[*i] = v;
                        }
                    }
                    rows.push((t, out));
                }
                if let Some(left) = &mut self.left {
                    rows.truncate(*left);
                    *left -= rows.len();
                }
                if !rows.is_empty() {
                    series.push((s.tags, rows));
                }
            }
            if !series.is_empty() {
                self.late |= late;
                return Ok(Some((series, hold)));
            }
        }
    }
}

/// The streamed answer: the first window is computed here (its failure is a plain error
/// response), the rest on a blocking thread as the client reads.
pub async fn respond(
    state: Shared,
    spec: Arc<QuerySpec>,
    params: Arc<HashMap<String, String>>,
    plan: Plan,
    warnings: Vec<String>,
) -> Response {
    let mut run = Windows {
        state: state.clone(),
        spec: spec.clone(),
        params,
        queue: plan.units.into(),
        windows: plan.windows,
        columns: plan.columns.clone(),
        left: spec.limit,
        regions: BTreeMap::new(),
        partial: false,
        late: false,
        skipped: BTreeMap::new(),
    };
    let first = match run.next().await {
        Ok(rows) => rows,
        Err(refusal) => {
            let metrics = state.engine.metrics();
            metrics
                .query_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let e = match refusal {
                Refusal::TooLarge(m) => ApiError::PayloadTooLarge(m),
                Refusal::Busy(m) => ApiError::Overloaded(m),
                Refusal::Forbidden(m) => ApiError::Forbidden(m),
            };
            return DialectError(Dialect::Api, e).into_response();
        }
    };
    let content_type = match spec.format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Arrow => "application/vnd.apache.arrow.stream",
    };
    let handle = tokio::runtime::Handle::current();
    super::api::streamed(
        content_type,
        state.config.http.body_timeout,
        usize::MAX,
        move |w| {
            let mut warnings = warnings;
            let mut out = RowStream::start(
                w,
                spec.format,
                &spec.measurement,
                (plan.columns, plan.types),
                spec.group_by.clone(),
                spec.epoch,
            )?;
            let mut next = first;
            while let Some((series, hold)) = next {
                for (tags, rows) in &series {
                    out.rows(tags, rows)?;
                }
                // The part's memory is given back once its rows are sent.
                drop(series);
                drop(hold);
                next = match handle.block_on(run.next()) {
                    Ok(n) => n,
                    Err(Refusal::TooLarge(msg) | Refusal::Busy(msg) | Refusal::Forbidden(msg)) => {
                        if spec.format != Format::Json {
                            return Err(std::io::Error::other(msg));
                        }
                        run.partial = true;
                        warnings.push(format!(
                            "the answer stops after {} rows: {msg}",
                            out.rows_written()
                        ));
                        None
                    }
                };
            }
            let skipped: Vec<(String, u64, bool)> = std::mem::take(&mut run.skipped)
                .into_iter()
                .map(|(f, (n, used))| (f, n, used))
                .collect();
            warnings.extend(crate::query::skipped_warnings(spec.agg, &skipped));
            if run.late {
                warnings.push(
                    "series written while the answer was being sent come last, after the others"
                        .into(),
                );
            }
            if run.partial && spec.format != Format::Json {
                return Err(std::io::Error::other(
                    "a region failed or timed out while the answer was sent",
                ));
            }
            out.finish(run.partial, &run.regions, &warnings)
        },
    )
}
