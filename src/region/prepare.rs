//! The write validator: a request body → lines that are checked and routed.
//!
//! Stages, each a type: the body is *parsed* (`lineproto`), each line *checked* (names,
//! reserved keys, timestamp and precision, column kinds against the schema registry) and
//! *routed* (region, partition, shard). What comes out, [`PreparedWrite`], can no longer be
//! rejected line by line: committing it can only fail as a whole (WAL I/O, overload).
//! CPU-bound; run it off the async reactor.

use rustc_hash::FxHashMap;
use std::collections::HashSet;
use std::sync::Arc;

use super::rows::{Payload, RowWriter};
use crate::catalog::series::SeriesCatalog;
use crate::lineproto::{self, FieldValue, ParsedLine};
use crate::model::{
    ColumnKind, FieldType, MAX_TIME, MIN_TIME, Precision, RESERVED_KEYS, RegionId, ShardId,
    truncate,
};
use crate::region::block::{ROW_BASE_BYTES, field_type_of, field_width};
use crate::region::schema::{MeasurementSchema, SchemaRegistry};
use crate::router::{GeoCache, series_hash, shard_of};
use crate::routing::{Horizon, Routing};

/// Longest `original_line` echoed back in an error.
const MAX_ECHO: usize = 256;
/// How many rejected lines are described in a response.
pub const MAX_REPORTED: usize = 100;

/// Everything one shard must append for one request: checked rows (see [`rows`]), which
/// are also its WAL payload.
#[derive(Debug)]
pub struct ShardBatch {
    pub db: Arc<str>,
    pub payload: Payload,
    pub rows: usize,
    /// The region's log message the rows came from (shared storage: it stands for the WAL
    /// record; `None` elsewhere).
    pub log_seq: Option<u64>,
}

/// A line the server refused, as reported to the client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejected {
    pub line_number: usize,
    pub original_line: String,
    pub error_message: String,
}

/// The outcome of the check stage.
#[derive(Debug, Default)]
pub struct PreparedWrite {
    pub batches: Vec<((RegionId, ShardId), ShardBatch)>,
    /// The first [`MAX_REPORTED`] rejected lines.
    pub rejected: Vec<Rejected>,
    pub rejected_count: usize,
    pub accepted: usize,
    pub fields_accepted: usize,
    /// Memory the accepted rows will take in blocks: per row its base and the width of
    /// every field column of its measurement (rows are dense over them once sorted), plus
    /// string bytes. Checked against `memory.limit` before anything is committed.
    pub memory_cost: u64,
    /// Lines this node cannot route now (a routing version it does not know, or versions
    /// not read recently enough in cluster mode): the write must be refused whole, as
    /// unavailable, not as bad lines.
    pub unroutable: usize,
    /// Why, for the first such line.
    pub unroutable_reason: Option<String>,
}

/// Sorted tags of a line, borrowed.
pub fn sorted_tags<'l>(line: &'l ParsedLine<'_>) -> Vec<(&'l str, &'l str)> {
    let mut tags: Vec<(&str, &str)> = line
        .tags
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    tags.sort_unstable_by(|a, b| a.0.cmp(b.0));
    tags
}

/// The keys of the last line accepted, in line order, with what was checked about them: a
/// body's lines nearly always share one measurement, tag keys and field keys (with types),
/// so a line of the same shape needs no name checks, no schema lookups and no tag sort.
#[derive(Debug, Default)]
struct Shape {
    measurement: String,
    tag_keys: Vec<String>,
    fields: Vec<(String, FieldType)>,
    /// Positions of the tags in key order.
    order: Vec<usize>,
    /// Changes whenever the shape is remembered anew: rows pushed to a `RowWriter` with the
    /// same generation have the same keys.
    generation: u64,
}

impl Shape {
    /// Whether the line has this shape's measurement and keys (and field types).
    fn same_keys(&self, line: &ParsedLine<'_>) -> bool {
        self.measurement == line.measurement.as_ref()
            && self.tag_keys.len() == line.tags.len()
            && self.fields.len() == line.fields.len()
            && self
                .tag_keys
                .iter()
                .zip(&line.tags)
                .all(|(k, (lk, _))| k == lk.as_ref())
            && self
                .fields
                .iter()
                .zip(&line.fields)
                .all(|((k, t), (lk, v))| *t == field_type_of(v) && k == lk.as_ref())
    }

    fn remember(&mut self, line: &ParsedLine<'_>) {
        self.generation += 1;
        self.measurement.clear();
        self.measurement.push_str(&line.measurement);
        self.tag_keys.clear();
        self.tag_keys
            .extend(line.tags.iter().map(|(k, _)| k.to_string()));
        self.fields.clear();
        self.fields.extend(
            line.fields
                .iter()
                .map(|(k, v)| (k.to_string(), field_type_of(v))),
        );
        self.order.clear();
        self.order.extend(0..line.tags.len());
        let keys = &self.tag_keys;
        self.order.sort_unstable_by(|a, b| keys[*a].cmp(&keys[*b]));
    }

    /// The tags of a line of this shape, in key order.
    fn sorted_tags<'l>(&self, line: &'l ParsedLine<'_>) -> Vec<(&'l str, &'l str)> {
        self.order
            .iter()
            .map(|&i| {
                let (k, v) = &line.tags[i];
                (k.as_ref(), v.as_ref())
            })
            .collect()
    }
}

/// Checks that do not depend on the registry.
fn check_names(line: &ParsedLine<'_>) -> Result<(), String> {
    for (k, _) in &line.tags {
        if RESERVED_KEYS.contains(&k.as_ref()) {
            return Err(format!(
                "tag key {k:?} is reserved (the time column and partition directory keys {RESERVED_KEYS:?} cannot be tags)"
            ));
        }
    }
    // A key used as both a tag and a field: a pairwise test for the usual few keys, a set
    // of the tag keys beyond that, so a line's check stays linear in its size.
    let tag_set: Option<HashSet<&str>> = (line.tags.len() * line.fields.len() > 256)
        .then(|| line.tags.iter().map(|(t, _)| t.as_ref()).collect());
    let is_tag = |k: &str| match &tag_set {
        Some(set) => set.contains(k),
        None => line.tags.iter().any(|(t, _)| t == k),
    };
    for (k, _) in &line.fields {
        if RESERVED_KEYS.contains(&k.as_ref()) {
            return Err(format!(
                "field key {k:?} is reserved (the time column and partition directory keys {RESERVED_KEYS:?} cannot be fields)"
            ));
        }
        if is_tag(k) {
            return Err(format!(
                "key {:?} is used as both a tag and a field",
                truncate(k, 64)
            ));
        }
    }
    Ok(())
}

/// What a write is checked and routed against.
pub struct Checks<'a> {
    /// The routing versions: a point is routed by the one in force at its time.
    pub routing: &'a Routing,
    /// How far ahead points may be routed (cluster mode), else [`Horizon::NONE`].
    pub horizon: Horizon,
    /// Every row goes to this region, unrouted: rows of a region's log (cluster mode),
    /// which the node that received them routed already.
    pub fixed_region: Option<RegionId>,
    pub registry: &'a SchemaRegistry,
    pub series: &'a SeriesCatalog,
    /// `memory.max_series_per_database` (0: no limit).
    pub max_series: u64,
    /// `memory.series_catalog`: bytes the series catalog may hold.
    pub catalog_bytes: u64,
    /// Timestamps are truncated to microseconds when files store microseconds
    /// (`[storage] time_unit = "us"`), so that what is acknowledged is what is stored.
    pub microseconds: bool,
    /// `[[retention]]`: a point older than its measurement keeps is refused (it would be
    /// acknowledged and then never seen).
    pub retention: &'a crate::config::RetentionRules,
}

/// Where the lines to check come from: a request body's parser, or the rows of a payload
/// another node checked already (cluster mode applies a region's log through the same
/// checks, without printing and parsing line protocol again).
pub trait LineSource<'a> {
    fn next_line(&mut self) -> Option<lineproto::LineItem<'a>>;
    /// Hands a line's vectors back for reuse.
    fn recycle(&mut self, line: ParsedLine<'a>);
}

impl<'a> LineSource<'a> for lineproto::Lines<'a> {
    fn next_line(&mut self) -> Option<lineproto::LineItem<'a>> {
        self.next()
    }
    fn recycle(&mut self, line: ParsedLine<'a>) {
        lineproto::Lines::recycle(self, line);
    }
}

/// The rows of a payload as lines (timestamps in ns, line numbers counting rows). A
/// malformed row ends them with an error line.
pub struct PayloadLines<'a> {
    rows: super::rows::Rows<'a>,
    row: super::rows::Row<'a>,
    number: usize,
}

impl<'a> PayloadLines<'a> {
    /// The db and lines of a payload; `None` if the bytes are not a payload.
    pub fn new(payload: &'a [u8]) -> Option<(&'a str, PayloadLines<'a>)> {
        let (db, rows) = super::rows::decode(payload)?;
        Some((
            db,
            PayloadLines {
                rows,
                row: Default::default(),
                number: 0,
            },
        ))
    }
}

impl<'a> LineSource<'a> for PayloadLines<'a> {
    fn next_line(&mut self) -> Option<lineproto::LineItem<'a>> {
        let ok = self.rows.next_into(&mut self.row)?;
        self.number += 1;
        let result = match ok {
            Ok(()) => Ok(ParsedLine {
                measurement: self.row.measurement.into(),
                tags: self
                    .row
                    .tags
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                fields: self
                    .row
                    .fields
                    .iter()
                    .map(|(k, v)| ((*k).into(), v.clone()))
                    .collect(),
                timestamp: Some(self.row.ts),
            }),
            Err(()) => Err(lineproto::ParseError {
                kind: lineproto::ParseErrorKind::InvalidUtf8,
                message: "a row of the payload is malformed".into(),
            }),
        };
        Some(lineproto::LineItem {
            line_number: self.number,
            text: b"",
            result,
        })
    }
    fn recycle(&mut self, _line: ParsedLine<'a>) {}
}

/// Parses, checks and routes a request body.
pub fn prepare(
    checks: Checks<'_>,
    shards_per_region: usize,
    db: &str,
    body: &[u8],
    precision: Precision,
    now_ns: i64,
) -> PreparedWrite {
    prepare_lines(
        checks,
        shards_per_region,
        db,
        &mut lineproto::lines(body),
        body.len(),
        precision,
        now_ns,
    )
}

/// Checks and routes lines (`bytes`: about how large they were as text, to size buffers).
pub fn prepare_lines<'a>(
    checks: Checks<'_>,
    shards_per_region: usize,
    db: &str,
    lines: &mut impl LineSource<'a>,
    bytes: usize,
    precision: Precision,
    now_ns: i64,
) -> PreparedWrite {
    let Checks {
        routing,
        horizon,
        fixed_region,
        registry,
        series,
        max_series,
        catalog_bytes,
        microseconds,
        retention,
    } = checks;
    // What the measurement of the last line keeps from (rules are few; lines of one
    // measurement come together).
    let mut keeps: Option<(String, i64)> = None;
    let db: Arc<str> = Arc::from(db);
    let mut out = PreparedWrite::default();
    // Live series of the db, read per line only to know whether the limit is reached.
    // (None when the db has no series yet: this request may add its own.)
    let series_count = (max_series > 0)
        .then(|| series.existing_counter(&db))
        .flatten();
    let mut by_shard: FxHashMap<(RegionId, ShardId), RowWriter> = FxHashMap::default();
    // Rows take about as many bytes as their line; spread over the shards of the regions.
    let region_count = routing.at(now_ns).map_or(1, |r| r.region_count());
    let row_capacity = bytes * 5 / 4 / (shards_per_region * region_count).max(1) + 1024;
    // One cache of geo tag matches per routing version.
    let mut geo_caches: Vec<GeoCache> = (0..routing.version_count())
        .map(|_| GeoCache::default())
        .collect();
    let single_version = routing.version_count() == 1;
    // Most bodies hold one measurement: remember the last schema used.
    let mut last_schema: Option<(String, Arc<MeasurementSchema>)> = None;
    let mut shape = Shape::default();

    // Accepted lines are handed back to the parser, which reuses their vectors.
    // Accepted rows per measurement (counted per run of lines of one measurement), for
    // the memory cost.
    let mut rows_per_measurement: FxHashMap<String, u64> = FxHashMap::default();
    let mut run: (String, u64) = (String::new(), 0);
    let mut string_bytes = 0u64;
    while let Some(item) = lines.next_line() {
        let reject = |out: &mut PreparedWrite, msg: String| {
            out.rejected_count += 1;
            if out.rejected.len() < MAX_REPORTED {
                let text = String::from_utf8_lossy(item.text);
                out.rejected.push(Rejected {
                    line_number: item.line_number,
                    original_line: truncate(&text, MAX_ECHO).to_string(),
                    error_message: msg,
                });
            }
        };
        let line = match item.result {
            Ok(l) => l,
            Err(e) => {
                reject(&mut out, e.to_string());
                continue;
            }
        };
        // Names were checked for a line with the same keys already.
        let same_keys = shape.same_keys(&line);
        if !same_keys && let Err(msg) = check_names(&line) {
            reject(&mut out, msg);
            continue;
        }
        let ts = match line.timestamp {
            Some(t) => match precision.to_nanos(t) {
                Ok(ts) => ts,
                Err(msg) => {
                    reject(&mut out, msg);
                    continue;
                }
            },
            None => precision.now(now_ns),
        };
        let ts = if microseconds {
            ts - ts.rem_euclid(1000)
        } else {
            ts
        };
        if !(MIN_TIME..=MAX_TIME).contains(&ts) {
            reject(
                &mut out,
                format!(
                    "timestamp {ts} ns is out of range: InfluxDB's range is [{MIN_TIME}, {MAX_TIME}]"
                ),
            );
            continue;
        }
        if !retention.is_empty() {
            let from = match &keeps {
                Some((m, from)) if m.as_str() == line.measurement.as_ref() => *from,
                _ => {
                    let from = retention.keeps_from(&db, &line.measurement, now_ns);
                    keeps = Some((line.measurement.to_string(), from));
                    from
                }
            };
            if ts < from {
                reject(
                    &mut out,
                    format!(
                        "point beyond retention policy: timestamp {ts} ns is older than what [[retention]] keeps for {db}/{} ({from} ns)",
                        line.measurement
                    ),
                );
                continue;
            }
        }
        // A line shaped like the last accepted one passed the checks below already (types
        // are fixed per measurement, whatever the partition); its tags are put in order
        // with the remembered permutation.
        let checked = same_keys;
        let tags = if checked {
            shape.sorted_tags(&line)
        } else {
            sorted_tags(&line)
        };
        let region = match fixed_region {
            Some(r) => r,
            None => {
                if ts > horizon.future_limit {
                    reject(
                        &mut out,
                        format!(
                            "timestamp {ts} ns is more than {} s ahead of this node's clock: in cluster mode a point is routed by the routing version in force at its time, and versions are known only that far ahead (a quarter of cluster.routing_lead)",
                            (horizon.future_limit - now_ns) / 1_000_000_000
                        ),
                    );
                    continue;
                }
                if ts > horizon.known_until {
                    out.unroutable += 1;
                    if out.unroutable_reason.is_none() {
                        out.unroutable_reason = Some(if horizon.known_until == i64::MIN {
                            "this node has not read the cluster's routing versions from NATS yet: retry shortly".to_string()
                        } else {
                            format!(
                                "this node read the cluster's routing versions from NATS too long ago to route points after {} ns (a version published since may route them elsewhere): retry once NATS is reachable",
                                horizon.known_until
                            )
                        });
                    }
                    continue;
                }
                let span = if single_version {
                    0
                } else {
                    routing.span_at(ts)
                };
                let router = match routing.span(span).0 {
                    Ok(r) => r,
                    Err(unknown) => {
                        out.unroutable += 1;
                        if out.unroutable_reason.is_none() {
                            out.unroutable_reason = Some(format!(
                                "{unknown}; points at or after its effective time are refused rather than misrouted"
                            ));
                        }
                        continue;
                    }
                };
                router.route_cached(&tags, &mut geo_caches[span]).0
            }
        };
        // At the series limit, only lines of series the catalog holds are taken (InfluxDB's
        // max-series-per-database). Below it a request may add series freely: the count can
        // pass the limit by one request's worth.
        if let Some(count) = &series_count {
            let n = count.load(std::sync::atomic::Ordering::Relaxed);
            if n >= max_series && !series.contains(&db, &line.measurement, &tags) {
                reject(
                    &mut out,
                    format!(
                        "max-series-per-database limit exceeded: ({n}/{max_series}): this line adds a series to database {db:?}; raise memory.max_series_per_database or drop series"
                    ),
                );
                continue;
            }
        }
        let held = series.bytes();
        if held >= catalog_bytes && !series.contains(&db, &line.measurement, &tags) {
            reject(
                &mut out,
                format!(
                    "series catalog full: it holds {held} bytes, memory.series_catalog is {catalog_bytes}; this line adds a series to database {db:?}; raise memory.series_catalog (and memory.limit) or drop series"
                ),
            );
            continue;
        }

        // Column kinds against the registry: fast path without the lock when nothing is new.
        let known = checked
            || match &last_schema {
                Some((m, s)) if m.as_str() == line.measurement.as_ref() => {
                    tags.iter()
                        .all(|(k, _)| s.get(*k) == Some(&ColumnKind::Tag))
                        && line.fields.iter().all(|(k, v)| {
                            s.get(k.as_ref()) == Some(&ColumnKind::Field(field_type_of(v)))
                        })
                }
                _ => false,
            };
        if !known {
            let mut cols: Vec<(&str, ColumnKind)> =
                tags.iter().map(|(k, _)| (*k, ColumnKind::Tag)).collect();
            cols.extend(line.fields.iter().map(|(k, v): &(_, FieldValue<'_>)| {
                (k.as_ref(), ColumnKind::Field(field_type_of(v)))
            }));
            match registry.check_and_add(&db, &line.measurement, &cols) {
                Ok(schema) => last_schema = Some((line.measurement.to_string(), schema)),
                Err(msg) => {
                    reject(&mut out, msg);
                    continue;
                }
            }
        }

        let hash = series_hash(&line.measurement, &tags);
        let shard = shard_of(hash, shards_per_region);
        by_shard
            .entry((region, shard))
            .or_insert_with(|| RowWriter::new(&db, row_capacity))
            .push(
                ts,
                hash,
                &line.measurement,
                &tags,
                &line.fields,
                same_keys.then_some(shape.generation),
            );
        out.accepted += 1;
        out.fields_accepted += line.fields.len();
        if run.0 != line.measurement.as_ref() {
            if run.1 > 0 {
                *rows_per_measurement
                    .entry(std::mem::take(&mut run.0))
                    .or_default() += run.1;
            }
            run = (line.measurement.to_string(), 0);
        }
        run.1 += 1;
        for (_, v) in &line.fields {
            if let FieldValue::String(s) = v {
                string_bytes += s.len() as u64;
            }
        }
        if !checked {
            shape.remember(&line);
        }
        lines.recycle(line);
    }

    if run.1 > 0 {
        *rows_per_measurement.entry(run.0).or_default() += run.1;
    }
    out.memory_cost = string_bytes
        + rows_per_measurement
            .iter()
            .map(|(m, n)| {
                let width: usize = registry.get(&db, m).map_or(0, |s| {
                    s.values()
                        .map(|k| match k {
                            ColumnKind::Field(t) => field_width(*t),
                            ColumnKind::Tag => 0,
                        })
                        .sum()
                });
                n * (ROW_BASE_BYTES + width) as u64
            })
            .sum::<u64>();
    let mut batches: Vec<_> = by_shard
        .into_iter()
        .map(|(k, w)| {
            let rows = w.rows();
            (
                k,
                ShardBatch {
                    db: db.clone(),
                    payload: w.finish(),
                    rows,
                    log_seq: None,
                },
            )
        })
        .collect();
    batches.sort_by_key(|(k, _)| *k);
    out.batches = batches;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::region::rows;

    fn setup() -> (Routing, SchemaRegistry) {
        let cfg = Config::parse(include_str!("../../regions.toml")).unwrap();
        (
            Routing::from_config(&cfg.routing).unwrap(),
            SchemaRegistry::new(),
        )
    }

    fn run(body: &str, precision: Precision) -> PreparedWrite {
        let (r, reg) = setup();
        prepare(
            Checks {
                routing: &r,
                horizon: Horizon::NONE,
                fixed_region: None,
                registry: &reg,
                series: &SeriesCatalog::new(),
                max_series: 0,
                catalog_bytes: u64::MAX,
                microseconds: false,
                retention: &Default::default(),
            },
            2,
            "db",
            body.as_bytes(),
            precision,
            1_700_000_000_123_456_789,
        )
    }

    /// The rows of a checked payload, checked again as lines (cluster mode's appliers),
    /// come out as the same rows in the same shards; a damaged payload is refused.
    #[test]
    fn payload_rows_check_again_to_the_same_rows() {
        let body = "cpu,region=eu-west,host=a v=1.5,n=3i,s=\"x y\",b=true,u=7u 1700000000000000000\n\
                    cpu,region=us-east,host=b v=2 1700000000000000001\n\
                    mem,host=c free=10i 1700000000000000002\n";
        let first = run(body, Precision::Nanosecond);
        assert_eq!((first.accepted, first.rejected_count), (3, 0));
        let (r, reg) = setup();
        let catalog = SeriesCatalog::new();
        let retention = Default::default();
        let checks = || Checks {
            routing: &r,
            horizon: Horizon::NONE,
            fixed_region: None,
            registry: &reg,
            series: &catalog,
            max_series: 0,
            catalog_bytes: u64::MAX,
            microseconds: false,
            retention: &retention,
        };
        let decode_all = |p: &PreparedWrite| -> Vec<((RegionId, ShardId), Vec<String>)> {
            p.batches
                .iter()
                .map(|(k, b)| {
                    let bytes = b.payload.to_vec();
                    let (_, rows) = rows::decode(&bytes).unwrap();
                    (*k, rows.map(|r| format!("{:?}", r.unwrap())).collect())
                })
                .collect()
        };
        let mut again = Vec::new();
        for (_, b) in &first.batches {
            let bytes = b.payload.to_vec();
            let (db, mut lines) = PayloadLines::new(&bytes).unwrap();
            assert_eq!(db, "db");
            let p = prepare_lines(
                checks(),
                2,
                db,
                &mut lines,
                bytes.len(),
                Precision::Nanosecond,
                0,
            );
            assert_eq!(p.rejected_count, 0);
            again.extend(decode_all(&p));
        }
        again.sort_by_key(|(k, _)| *k);
        assert_eq!(again, decode_all(&first));
        let bytes = first.batches[0].1.payload.to_vec();
        assert!(PayloadLines::new(&bytes[..bytes.len() / 2]).is_none());
    }

    /// A write naming a database that has no series leaves no trace in the catalog (a
    /// client sending bad lines to ever new names must not grow it).
    #[test]
    fn writes_to_unknown_databases_leave_the_catalog_alone() {
        let (r, reg) = setup();
        let catalog = SeriesCatalog::new();
        for db in ["a1", "a2", "a3"] {
            let p = prepare(
                Checks {
                    routing: &r,
                    horizon: Horizon::NONE,
                    fixed_region: None,
                    registry: &reg,
                    series: &catalog,
                    max_series: 10,
                    catalog_bytes: u64::MAX,
                    microseconds: false,
                    retention: &Default::default(),
                },
                2,
                db,
                b"not a line\n",
                Precision::Nanosecond,
                0,
            );
            assert_eq!(p.rejected_count, 1);
        }
        assert!(catalog.existing_counter("a1").is_none());
        assert!(catalog.series_counts().is_empty());
    }

    #[test]
    fn routes_and_reports_bad_lines_with_numbers() {
        let body = "cpu,region=eu-west-1,host=a v=1 10\n\
                    # comment\n\
                    cpu,region=us-east-1 v=2 20\n\
                    bad line here\n\
                    cpu,time=x v=1 30\n\
                    cpu v=1i 40\n\
                    cpu,region=ap-south-1 v=3\r\n";
        let p = run(body, Precision::Nanosecond);
        assert_eq!(p.accepted, 3);
        assert_eq!(p.rejected_count, 3);
        let nums: Vec<usize> = p.rejected.iter().map(|r| r.line_number).collect();
        assert_eq!(nums, vec![4, 5, 6]);
        assert!(
            p.rejected[1].error_message.contains("reserved"),
            "{:?}",
            p.rejected[1]
        );
        assert!(
            p.rejected[2].error_message.contains("type float"),
            "{:?}",
            p.rejected[2]
        );
        assert_eq!(p.rejected[0].original_line, "bad line here");
        let regions: std::collections::BTreeSet<usize> =
            p.batches.iter().map(|((r, _), _)| r.0).collect();
        assert_eq!(regions.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        // Missing timestamp → server time at the precision; rows carry what was checked.
        let (_, apac) = p.batches.iter().find(|((r, _), _)| r.0 == 2).unwrap();
        let row = rows_of(apac).remove(0);
        assert_eq!(row.ts, 1_700_000_000_123_456_789);
        assert_eq!(row.measurement, "cpu");
        assert_eq!(row.tags, vec![("region", "ap-south-1")]);
        assert_eq!(row.fields, vec![("v", FieldValue::Float(3.0))]);
    }

    fn rows_of(b: &ShardBatch) -> Vec<rows::Row<'_>> {
        let (db, rows) = b.payload.decode().unwrap();
        assert_eq!(db, "db");
        let out: Vec<_> = rows.map(|r| r.unwrap()).collect();
        assert_eq!(out.len(), b.rows);
        out
    }

    #[test]
    fn precision_and_overflow() {
        let p = run(
            "m v=1 -9223372036854775808\nm v=1 9223372036854775807\nm v=1 -9223372036854775806\nm v=1 9223372036854775806\n",
            Precision::Nanosecond,
        );
        // InfluxDB's range: both sentinels refused, the times next to them accepted.
        assert_eq!((p.accepted, p.rejected_count), (2, 2));
        assert!(
            p.rejected[0].error_message.contains("out of range"),
            "{:?}",
            p.rejected
        );
        let p = run("m v=1 5\nm v=1 9223372036854775\n", Precision::Second);
        assert_eq!(p.accepted, 1);
        assert_eq!(rows_of(&p.batches[0].1)[0].ts, 5_000_000_000);
        assert!(p.rejected[0].error_message.contains("overflows"));
        let p = run("m v=1\n", Precision::Second);
        assert_eq!(rows_of(&p.batches[0].1)[0].ts, 1_700_000_000_000_000_000);
    }

    #[test]
    fn same_series_same_shard_with_sorted_tags_and_hash() {
        let body = "m,host=a,dc=x v=1 1\nm,dc=x,host=a v=2 2\nm,host=b v=3 3\n";
        let p = run(body, Precision::Nanosecond);
        let total: usize = p.batches.iter().map(|(_, b)| b.rows).sum();
        assert_eq!(total, 3);
        let holders: Vec<_> = p
            .batches
            .iter()
            .filter(|(_, b)| {
                rows_of(b)
                    .iter()
                    .any(|r| r.tags == vec![("dc", "x"), ("host", "a")])
            })
            .collect();
        assert_eq!(holders.len(), 1, "one series, one shard");
        let rows = rows_of(&holders[0].1);
        let a: Vec<_> = rows
            .iter()
            .filter(|r| r.tags == vec![("dc", "x"), ("host", "a")])
            .collect();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].series_hash, a[1].series_hash);
        assert_eq!(
            a[0].series_hash,
            series_hash("m", &[("dc", "x"), ("host", "a")])
        );
    }

    #[test]
    fn lines_of_one_shape_are_checked_like_any_other() {
        let body = "m,a=1,b=2 x=1i,y=2 10\n\
                    m,a=1,b=3 x=2i,y=3 11\n\
                    m,b=4,a=1 x=3i,y=4 12\n\
                    m,a=1,b=2 x=1.5,y=2 13\n\
                    m,a=1,b=2 x=4i,y=5 14\n\
                    m,a=1,time=2 x=1i,y=2 15\n\
                    m,a=1,b=2 x=5i,a=7 16\n\
                    m,a=1,b=2 x=6i,y=6 7200000000000\n\
                    m,a=1,b=2 x=6i,y=6 -5\n\
                    m,a=1,b=5 x=7i,y=7 7200000000001\n";
        let p = run(body, Precision::Nanosecond);
        let nums: Vec<usize> = p.rejected.iter().map(|r| r.line_number).collect();
        assert_eq!(nums, vec![4, 6, 7], "{:?}", p.rejected);
        assert!(p.rejected[0].error_message.contains("type"));
        assert!(p.rejected[1].error_message.contains("reserved"));
        assert!(
            p.rejected[2]
                .error_message
                .contains("both a tag and a field")
        );
        assert_eq!(p.accepted, 7);
        type Tags = Vec<(String, String)>;
        let mut rows: Vec<(i64, Tags, u64)> = p
            .batches
            .iter()
            .flat_map(|(_, b)| rows_of(b))
            .map(|r| {
                let tags = r
                    .tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (r.ts, tags, r.series_hash)
            })
            .collect();
        rows.sort();
        let t = |a: &str, b: &str| {
            vec![
                ("a".to_string(), a.to_string()),
                ("b".to_string(), b.to_string()),
            ]
        };
        let want = [
            (-5, t("1", "2")),
            (10, t("1", "2")),
            (11, t("1", "3")),
            (12, t("1", "4")),
            (14, t("1", "2")),
            (7_200_000_000_000, t("1", "2")),
            (7_200_000_000_001, t("1", "5")),
        ];
        assert_eq!(rows.len(), want.len());
        for ((ts, tags, hash), (wts, wtags)) in rows.iter().zip(&want) {
            assert_eq!((ts, tags), (wts, wtags));
            let pairs: Vec<(&str, &str)> =
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(*hash, series_hash("m", &pairs));
        }
    }

    #[test]
    fn tag_and_field_with_same_key_is_rejected() {
        let p = run("m,k=a k=1 1\n", Precision::Nanosecond);
        assert_eq!(p.accepted, 0);
        assert!(
            p.rejected[0]
                .error_message
                .contains("both a tag and a field")
        );
    }
}
