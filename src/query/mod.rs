//! The query layer: range queries fanned out to regions, partial aggregates merged.
//!
//! ```text
//! QuerySpec (plan.rs: checked params, region pruning by the router's rules)
//!   └─ for each candidate region, concurrently, under one deadline:
//!        Engine::snapshot (memory chunks + live files, consistent) → scan.rs on a blocking
//!        thread → Partial (aggregates per group/bucket/field, or raw rows)
//!   └─ merge partials (agg.rs: exactly mergeable accumulators) → QueryResult → JSON/CSV/Arrow
//! ```
//! Invariant: an answer is never silently incomplete. Every candidate region is listed in
//! `regions` with its status; a failed or timed-out region sets `partial: true`.

pub mod agg;
pub mod budget;
pub mod influxql;
pub mod output;
pub mod parts;
pub mod plan;
pub mod remote;
pub mod scan;
pub mod windows;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use agg::{Acc, Agg, Value};
use plan::QuerySpec;
use scan::{GroupKey, Partial, ScanStats};

use crate::model::RegionId;
use crate::region::{Engine, RegionSnapshot};

/// How one region answered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegionReport {
    pub status: &'static str,
    pub ms: f64,
    pub rows_scanned: u64,
    pub files_read: u64,
    pub row_groups_pruned: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One output series: a group of the `group_by` tags.
#[derive(Debug, Clone)]
pub struct Series {
    pub tags: BTreeMap<String, String>,
    /// Rows: time and one value per column.
    pub rows: Vec<(i64, Vec<Value>)>,
}

#[derive(Debug)]
pub struct QueryResult {
    pub name: String,
    pub columns: Vec<String>,
    pub series: Vec<Series>,
    pub partial: bool,
    pub regions: BTreeMap<String, RegionReport>,
    /// Why no answer can be given as asked: a region found it too large (its own budget
    /// or `query.max_rows`), or the shared query memory is spent. Not a partial answer.
    pub refused: Option<Refusal>,
    /// What the answer left out and why (a numeric aggregate over a field stored with
    /// several types uses its numbers only).
    pub warnings: Vec<String>,
    /// Per field, the strings and booleans a numeric aggregate left out (the source of
    /// the warnings above; a streamed answer sums them over its parts).
    pub skipped: Skipped,
}

/// A query refused as a whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// It can never be answered as asked (413).
    TooLarge(String),
    /// Running queries hold the shared memory; retry (503).
    Busy(String),
    /// A region's residency rule forbids what it asks (403).
    Forbidden(String),
}

/// Why a region's nodes refuse to send `spec`'s answer to another node, if they do: its
/// `export` rule keeps raw points (raw rows, `first`/`last`, buckets finer than its minimum)
/// on the nodes hosting it.
pub fn export_refusal(
    region: &str,
    export: crate::config::Export,
    spec: &QuerySpec,
) -> Option<String> {
    let crate::config::Export::Aggregates { min_every_ns } = export else {
        return None;
    };
    let what = match (spec.agg, spec.every) {
        (Agg::None, _) => "raw rows".to_string(),
        (Agg::First | Agg::Last, _) => "first/last values (raw points)".to_string(),
        (_, Some(every)) if every < min_every_ns => format!(
            "buckets of {} (finer than export_min_every, {})",
            crate::influxql::format_duration(every),
            crate::influxql::format_duration(min_every_ns)
        ),
        _ => return None,
    };
    Some(format!(
        "{EXPORT_REFUSED}: region {region:?} keeps its raw points on the nodes hosting it (export = \"aggregates\"), so {what} cannot be sent to another node; ask a node hosting {region:?}, or set export = \"raw\" on the region"
    ))
}

/// A region's partial answer as it may leave its nodes: under `export = "aggregates"` the
/// accumulators lose their first and last points (each a raw point, time and value). Only
/// `first`/`last` stamp them, and those are refused by [`export_refusal`]; this keeps an
/// accumulator from carrying one out should another aggregate stamp them.
pub fn for_export(export: crate::config::Export, mut partial: Partial) -> Partial {
    if let (crate::config::Export::Aggregates { .. }, Partial::Agg(a)) = (export, &mut partial) {
        for acc in a.groups.values_mut().flat_map(|b| b.values_mut()).flatten() {
            acc.first = None;
            acc.last = None;
        }
    }
    partial
}

/// Marks an answer refused by a region's residency rule.
pub const EXPORT_REFUSED: &str = "refused by residency";

/// A hosted region whose scan reads at most this many rows of cached files (one host over
/// a day: 8,640 rows a field) is scanned on the request's thread: a handoff to a blocking
/// thread and back costs more than the scan (measured: ~0.1 ms per region on 2 cores).
const INLINE_ROWS: u64 = 20_000;

/// A hosted region's scan: done already (small scans run on the caller's thread), or
/// running on a blocking thread.
enum Scan {
    Done(Result<(Partial, ScanStats), String>),
    Running(tokio::task::JoinHandle<Result<(Partial, ScanStats), String>>),
}

/// Starts the scan of a hosted region's snapshot: on this thread when it reads at most
/// [`INLINE_ROWS`] rows of indexed files, else on a blocking thread.
fn start_scan(
    engine: &Arc<Engine>,
    snap: RegionSnapshot,
    spec: Arc<QuerySpec>,
    max_rows: usize,
) -> Scan {
    let cache = engine.index_cache();
    if let Some(sel) = scan::small_selection(&snap, &spec, cache, INLINE_ROWS) {
        return Scan::Done(scan::scan_region(&snap, &spec, max_rows, cache, Some(sel)));
    }
    let cache = cache.clone();
    Scan::Running(tokio::task::spawn_blocking(move || {
        scan::scan_region(&snap, &spec, max_rows, &cache, None)
    }))
}

/// Scans one hosted region (snapshot, then [`start_scan`]).
pub async fn scan_local(
    engine: &Arc<Engine>,
    region: RegionId,
    spec: Arc<QuerySpec>,
    max_rows: usize,
) -> Result<(Partial, ScanStats), String> {
    let snap = engine
        .snapshot(region, &spec.db, Some(&spec.measurement))
        .await?;
    match start_scan(engine, snap, spec, max_rows) {
        Scan::Done(res) => res,
        Scan::Running(h) => h.await.map_err(|e| format!("scan task failed: {e}"))?,
    }
}

/// Runs a query over every region that can hold matching data: hosted regions are scanned
/// here, others are asked over HTTP at their `url` (`params` are forwarded as they came).
pub async fn run(
    engine: &Arc<Engine>,
    spec: Arc<QuerySpec>,
    params: Arc<HashMap<String, String>>,
    remote: &remote::Nodes,
    timeout: std::time::Duration,
    max_rows: usize,
) -> QueryResult {
    let g = gather(engine, spec.clone(), params, remote, timeout, max_rows).await;
    if g.refused.is_some() {
        // No merge of the other regions' partials: the answer is not given.
        return QueryResult {
            name: spec.measurement.clone(),
            columns: Vec::new(),
            series: Vec::new(),
            partial: g.partial,
            regions: g.regions,
            refused: g.refused,
            warnings: Vec::new(),
            skipped: Vec::new(),
        };
    }
    let (columns, series, skipped) = merge(&spec, g.partials);
    let warnings = skipped_warnings(spec.agg, &skipped);
    QueryResult {
        name: spec.measurement.clone(),
        columns,
        series,
        partial: g.partial,
        regions: g.regions,
        refused: g.refused,
        warnings,
        skipped,
    }
}

/// What a query names that this server has never seen: a database, a measurement, a field,
/// a tag key in `where` or `group_by` (or a field used where a tag is expected). Said in the
/// answer's `warnings` (the answer stays 200, as InfluxDB's) so that a typo is not read as
/// "no data". Only when every region is hosted here: another node's regions may hold names
/// this node's schema registry has not seen.
pub fn unknown_names(engine: &Engine, spec: &QuerySpec) -> Vec<String> {
    use crate::model::ColumnKind;
    if !engine.regions().iter().all(|r| r.hosted()) {
        return Vec::new();
    }
    let (db, m) = (&spec.db, &spec.measurement);
    let registry = engine.registry();
    let Some(schema) = registry.get(db, m) else {
        let msg = if registry.get_any(db) || engine.databases().contains(db) {
            format!("measurement {m:?} not found in database {db:?}")
        } else {
            format!("database {db:?} not found")
        };
        return vec![msg];
    };
    let mut out = Vec::new();
    for f in spec.fields.iter().flatten() {
        match schema.get(f.as_str()) {
            None => out.push(format!("field {f:?} not found in measurement {m:?}")),
            Some(ColumnKind::Tag) => out.push(format!(
                "{f:?} is a tag of measurement {m:?}, not a field: raw answers list tags as columns, group_by groups by them"
            )),
            Some(ColumnKind::Field(_)) => {}
        }
    }
    let keys = spec
        .preds
        .iter()
        .map(|p| p.key.as_str())
        .chain(spec.group_by.iter().map(String::as_str));
    let mut seen = std::collections::BTreeSet::new();
    for k in keys.filter(|k| seen.insert(*k)) {
        match schema.get(k) {
            None => out.push(format!("tag key {k:?} not found in measurement {m:?}")),
            Some(ColumnKind::Field(_)) => out.push(format!(
                "{k:?} is a field of measurement {m:?}, not a tag: where and group_by take tags"
            )),
            Some(ColumnKind::Tag) => {}
        }
    }
    out
}

/// Every region's partial answer, not merged yet.
pub struct Gathered {
    pub partials: Vec<Partial>,
    /// A region failed or timed out.
    pub partial: bool,
    pub regions: BTreeMap<String, RegionReport>,
    pub refused: Option<Refusal>,
}

/// The fan-out of [`run`]: each candidate region's partial answer, under one deadline.
pub async fn gather(
    engine: &Arc<Engine>,
    spec: Arc<QuerySpec>,
    params: Arc<HashMap<String, String>>,
    remote: &remote::Nodes,
    timeout: std::time::Duration,
    max_rows: usize,
) -> Gathered {
    let n = engine.regions().len();
    // In cluster mode a node that has not read the routing versions lately may not know a
    // version another node routed points by: it asks every region then.
    let candidates = if engine
        .routing_table()
        .prunable(crate::catalog::manifest::now_ns())
    {
        plan::candidate_regions(&engine.routing(), &spec, n)
    } else {
        (0..n).map(RegionId).collect()
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || {
        (
            "timeout",
            format!("no answer within {} ms", timeout.as_millis()),
        )
    };
    let mut regions = BTreeMap::new();
    // Hosted regions: the snapshot here, the scan on a blocking thread (no task of its own,
    // so a one-host query does not wake a worker per region); remote ones: a task each.
    let mut pending: Vec<(String, Pending)> = Vec::new();
    for i in 0..n {
        let name = engine.regions()[i].name.to_string();
        if !candidates.contains(&RegionId(i)) {
            regions.insert(
                name,
                RegionReport {
                    status: "pruned",
                    ms: 0.0,
                    rows_scanned: 0,
                    files_read: 0,
                    row_groups_pruned: 0,
                    error: None,
                },
            );
            continue;
        }
        let started = Instant::now();
        if engine.regions()[i].hosted() {
            let snapshot = engine.snapshot(RegionId(i), &spec.db, Some(&spec.measurement));
            let outcome = match tokio::time::timeout_at(deadline, snapshot).await {
                Ok(Ok(snap)) => match start_scan(engine, snap, spec.clone(), max_rows) {
                    Scan::Done(res) => Pending::Done(started, res.map_err(|e| ("error", e))),
                    Scan::Running(h) => Pending::Task(started, h),
                },
                Ok(Err(e)) => Pending::Done(started, Err(("error", e))),
                Err(_) => Pending::Done(started, Err(timed_out())),
            };
            pending.push((name, outcome));
            continue;
        }
        let urls = engine.regions()[i].reach().urls();
        let (params, remote, region_name) = (params.clone(), remote.clone(), name.clone());
        // A replica is asked too when the node before it fails, or has not answered within
        // a quarter of the query's time.
        let hedge = timeout / 4;
        let task = tokio::spawn(async move {
            if urls.is_empty() {
                return Err(format!(
                    "region {region_name:?} is not hosted by this node and has no url in the config"
                ));
            }
            let answer = remote
                .partial_any(&urls, &region_name, &params, hedge)
                .await?;
            Ok((Partial::from(answer.partial), answer.stats))
        });
        pending.push((name, Pending::Task(started, task)));
    }
    let mut partials: Vec<Partial> = Vec::new();
    let mut partial = false;
    let mut refused: Option<Refusal> = None;
    for (name, p) in pending {
        let (res, started) = match p {
            Pending::Done(started, res) => (res, started),
            Pending::Task(started, mut h) => {
                let res = match tokio::time::timeout_at(deadline, &mut h).await {
                    Ok(Ok(r)) => r.map_err(|e| ("error", e)),
                    Ok(Err(e)) => Err(("error", format!("region task failed: {e}"))),
                    Err(_) => {
                        // Nobody waits for it any more: stop it (and the replicas it would
                        // still ask).
                        h.abort();
                        Err(timed_out())
                    }
                };
                (res, started)
            }
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let report = match res {
            Ok((p, stats)) => {
                partials.push(p);
                report("ok", ms, stats, None)
            }
            Err((status, e)) => {
                // A residency refusal outranks the others: retrying or splitting the
                // query cannot help it.
                let forbidden = matches!(refused, Some(Refusal::Forbidden(_)));
                if e.contains(EXPORT_REFUSED) {
                    refused = Some(Refusal::Forbidden(e.clone()));
                } else if forbidden {
                    // kept
                } else if e.contains(budget::OVER_QUERY_MEMORY) {
                    if !matches!(refused, Some(Refusal::TooLarge(_))) {
                        refused = Some(Refusal::TooLarge(e.clone()));
                    }
                } else if e.contains(budget::OVER_TOTAL_MEMORY) && refused.is_none() {
                    refused = Some(Refusal::Busy(e.clone()));
                }
                partial = true;
                let status = if e == scan::DEADLINE_PASSED {
                    "timeout"
                } else {
                    status
                };
                report(status, ms, ScanStats::default(), Some(e))
            }
        };
        regions.insert(name, report);
    }
    Gathered {
        partials,
        partial,
        regions,
        refused,
    }
}

/// A region's answer under way.
enum Pending {
    /// A hosted region's scan on a blocking thread, or a region asked over HTTP.
    Task(
        Instant,
        tokio::task::JoinHandle<Result<(Partial, ScanStats), String>>,
    ),
    /// Answered already (a small scan), or failed before its scan started.
    Done(
        Instant,
        Result<(Partial, ScanStats), (&'static str, String)>,
    ),
}

fn report(status: &'static str, ms: f64, s: ScanStats, error: Option<String>) -> RegionReport {
    RegionReport {
        status,
        ms: (ms * 1000.0).round() / 1000.0,
        rows_scanned: s.rows_scanned,
        files_read: s.files_read,
        row_groups_pruned: s.row_groups_pruned,
        error,
    }
}

fn tags_of(spec: &QuerySpec, key: &GroupKey) -> BTreeMap<String, String> {
    spec.group_by
        .iter()
        .cloned()
        .zip(key.iter().cloned())
        .collect()
}

/// Merges region partials into output columns and series (sorted by group key), with the
/// answer's warnings.
/// The regions' partials merged into the answer's columns and series, with the values
/// per field a numeric aggregate left out ([`skipped_warnings`]).
pub fn merge(spec: &QuerySpec, partials: Vec<Partial>) -> (Vec<String>, Vec<Series>, Skipped) {
    if spec.agg == Agg::None {
        let (c, s) = merge_raw(spec, partials);
        (c, s, Vec::new())
    } else {
        merge_agg(spec, partials)
    }
}

/// The regions' aggregate partials merged per group and bucket, one accumulator per field
/// of `fields` (in that order).
pub fn merge_accs(
    fields: &[String],
    partials: Vec<Partial>,
) -> HashMap<GroupKey, BTreeMap<i64, Vec<Acc>>> {
    let mut groups: HashMap<GroupKey, BTreeMap<i64, Vec<Acc>>> = HashMap::new();
    for p in partials {
        let Partial::Agg(a) = p else { continue };
        let map: Vec<Option<usize>> = a
            .fields
            .iter()
            .map(|f| fields.iter().position(|g| g == f))
            .collect();
        for (key, buckets) in a.groups {
            let g = groups.entry(key).or_default();
            for (b, accs) in buckets {
                let slot = g
                    .entry(b)
                    .or_insert_with(|| vec![Acc::default(); fields.len()]);
                for (i, acc) in accs.iter().enumerate() {
                    if let Some(Some(pos)) = map.get(i) {
                        slot[*pos].merge(acc);
                    }
                }
            }
        }
    }
    groups
}

/// Per field that had any: how many strings or booleans a numeric aggregate left out, and
/// whether it aggregated some number of that field. A streamed answer adds these up over
/// its parts (one part may hold only the strings, another only the numbers).
pub type Skipped = Vec<(String, u64, bool)>;

/// What the answer says of values a numeric aggregate left out where it used numbers of
/// the same field: a field stored with several types (before types were fixed per
/// measurement).
pub fn skipped_warnings(agg: Agg, skipped: &[(String, u64, bool)]) -> Vec<String> {
    skipped
        .iter()
        .filter(|(_, n, used)| *n > 0 && *used)
        .map(|(f, n, _)| {
            format!(
                "field {f:?} is stored with several types: {} used its numbers and left out {n} string or boolean value(s)",
                agg.name()
            )
        })
        .collect()
}

fn merge_agg(spec: &QuerySpec, partials: Vec<Partial>) -> (Vec<String>, Vec<Series>, Skipped) {
    let mut fields: Vec<String> = match &spec.fields {
        Some(l) => l.clone(),
        None => Vec::new(),
    };
    if spec.fields.is_none() {
        for p in &partials {
            if let Partial::Agg(a) = p {
                for f in &a.fields {
                    if !fields.contains(f) {
                        fields.push(f.clone());
                    }
                }
            }
        }
        fields.sort();
    }
    let nf = fields.len();
    let mut groups = merge_accs(&fields, partials);
    // A field whose numbers were aggregated while strings or booleans of it were left out
    // is stored with several types: say so.
    let mut skipped = vec![(0u64, false); nf];
    for buckets in groups.values() {
        for accs in buckets.values() {
            for (i, a) in accs.iter().enumerate() {
                skipped[i].0 += a.skipped;
                skipped[i].1 |= a.count > 0;
            }
        }
    }
    let skipped: Skipped = fields
        .iter()
        .zip(&skipped)
        .filter(|(_, (n, _))| *n > 0)
        .map(|(f, (n, used))| (f.clone(), *n, *used))
        .collect();
    let mut keys: Vec<GroupKey> = groups.keys().cloned().collect();
    keys.sort();
    let mut series = Vec::with_capacity(keys.len());
    let mut budget = spec.limit.unwrap_or(usize::MAX);
    for key in keys {
        if budget == 0 {
            break;
        }
        let Some(buckets) = groups.remove(&key) else {
            continue;
        };
        let mut rows = Vec::with_capacity(buckets.len());
        for (bucket, accs) in buckets {
            if accs.iter().all(|a| a.count == 0) {
                continue;
            }
            let mut times = Vec::new();
            let values: Vec<Value> = accs
                .iter()
                .map(|a| {
                    let (v, t) = a.finish(spec.agg);
                    times.extend(t);
                    v
                })
                .collect();
            // Selectors without buckets report the time of the selected point.
            let time = match (spec.every, spec.agg) {
                (None, Agg::Last) => times.iter().max().copied().unwrap_or(bucket),
                (None, Agg::First) => times.iter().min().copied().unwrap_or(bucket),
                _ => bucket,
            };
            rows.push((time, values));
            budget -= 1;
            if budget == 0 {
                break;
            }
        }
        if !rows.is_empty() {
            series.push(Series {
                tags: tags_of(spec, &key),
                rows,
            });
        }
    }
    (fields, series, skipped)
}

fn merge_raw(spec: &QuerySpec, partials: Vec<Partial>) -> (Vec<String>, Vec<Series>) {
    // Columns: tags (sorted) then fields (requested order, or sorted).
    let mut tags: Vec<String> = Vec::new();
    let mut fields: Vec<String> = spec.fields.clone().unwrap_or_default();
    for p in &partials {
        if let Partial::Raw(r) = p {
            for (i, c) in r.columns.iter().enumerate() {
                if i < r.tag_columns {
                    if !tags.contains(c) {
                        tags.push(c.clone());
                    }
                } else if !fields.contains(c) {
                    fields.push(c.clone());
                }
            }
        }
    }
    tags.sort();
    if spec.fields.is_none() {
        fields.sort();
    }
    let columns: Vec<String> = tags.iter().chain(fields.iter()).cloned().collect();
    let mut groups: BTreeMap<GroupKey, Vec<(i64, Vec<Value>)>> = BTreeMap::new();
    for p in partials {
        let Partial::Raw(r) = p else { continue };
        let map: Vec<Option<usize>> = r
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < r.tag_columns {
                    tags.iter().position(|t| t == c)
                } else {
                    fields.iter().position(|f| f == c).map(|p| p + tags.len())
                }
            })
            .collect();
        // The region's columns are the answer's, in order (one region, or regions with the
        // same columns): its complete rows are kept as they are (a row collected before a
        // later file added a column is shorter, and is filled out).
        let identity =
            map.len() == columns.len() && map.iter().enumerate().all(|(i, p)| *p == Some(i));
        for (key, rows) in r.groups {
            let g = groups.entry(key).or_default();
            g.reserve(rows.len());
            for (t, vals) in rows {
                if identity && vals.len() == columns.len() {
                    g.push((t, vals));
                    continue;
                }
                let mut out = vec![Value::Null; columns.len()];
                for (i, v) in vals.into_iter().enumerate() {
                    if let Some(Some(pos)) = map.get(i) {
                        out[*pos] = v;
                    }
                }
                g.push((t, out));
            }
        }
    }
    let mut budget = spec.limit.unwrap_or(usize::MAX);
    let mut series = Vec::new();
    for (key, mut rows) in groups {
        if budget == 0 {
            break;
        }
        // Regions hold disjoint series; order by time, then by the tag values for ties.
        rows.sort_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                a.1.iter()
                    .zip(&b.1)
                    .take(tags.len())
                    .map(|(x, y)| x.cmp_values(y))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        });
        rows.truncate(budget);
        budget -= rows.len();
        series.push(Series {
            tags: tags_of(spec, &key),
            rows,
        });
    }
    (columns, series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(agg: &str) -> QuerySpec {
        let p: HashMap<String, String> = [("db", "d"), ("measurement", "m"), ("agg", agg)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        QuerySpec::from_params(&p).unwrap()
    }

    /// A numeric aggregate over a field stored as numbers in one region (or file) and
    /// strings in another uses the numbers and says what it left out; a field of strings
    /// only is not a warning.
    #[test]
    fn a_field_of_several_types_is_a_warning_not_a_silent_skip() {
        let s = spec("mean");
        let mut numbers = Acc::default();
        numbers.add_float(Agg::Mean, 2.0, 1, 0);
        numbers.add_int(Agg::Mean, 4, false, 2, 1);
        let mut strings = Acc::default();
        strings.add_other(Agg::Mean, || Value::Str("x".into()), 3, 2);
        strings.add_other(Agg::Mean, || Value::Str("y".into()), 4, 3);
        let part = |v: Acc, w: Acc| {
            Partial::Agg(scan::AggPartial {
                fields: vec!["only_strings".into(), "v".into()],
                groups: HashMap::from([(vec![], BTreeMap::from([(0, vec![w, v])]))]),
                entries: 1,
            })
        };
        let (cols, series, skipped) = merge(
            &s,
            vec![
                part(numbers, strings.clone()),
                part(strings.clone(), strings),
            ],
        );
        assert_eq!(cols, vec!["only_strings", "v"]);
        assert_eq!(series[0].rows[0].1[1], Value::Float(3.0));
        assert_eq!(
            skipped,
            vec![
                ("only_strings".to_string(), 4, false),
                ("v".to_string(), 2, true)
            ]
        );
        let warnings = skipped_warnings(s.agg, &skipped);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("\"v\"") && warnings[0].contains("left out 2"),
            "{warnings:?}"
        );
    }
}
