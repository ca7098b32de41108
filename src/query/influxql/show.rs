//! SHOW statements: answered from the schema registry (measurements, field types, tag
//! keys) and the series catalog (tag values, series, cardinalities), never from data.

use std::sync::Arc;

use roaring::RoaringBitmap;

use super::Ctx;
use super::cond::series_matching;
use super::result::{Cell, ResultSeries};
use crate::catalog::series::MeasurementSeries;
use crate::influxql::{
    CardinalityKind, Measurement, MeasurementName, ShowCardinality, ShowFieldKeys,
    ShowMeasurements, ShowSeries, ShowTagKeys, ShowTagValues, SystemShow, TagKeyFilter,
};
use crate::model::ColumnKind;

fn strings(name: &str, column: &str, values: Vec<String>) -> Vec<ResultSeries> {
    if values.is_empty() {
        return Vec::new();
    }
    vec![ResultSeries {
        zone: None,
        name: name.to_string(),
        tags: None,
        columns: vec![column.to_string()],
        values: values
            .into_iter()
            .map(|v| vec![Cell::Str(v.into())])
            .collect(),
    }]
}

/// `OFFSET` then `LIMIT` (`None`: no limit).
fn page<T>(items: Vec<T>, limit: Option<u64>, offset: Option<u64>) -> Vec<T> {
    items
        .into_iter()
        .skip(offset.unwrap_or(0) as usize)
        .take(limit.map_or(usize::MAX, |l| l as usize))
        .collect()
}

pub fn databases(ctx: &Ctx) -> Vec<ResultSeries> {
    let mut names = ctx.engine.databases().names();
    names.extend(
        ctx.engine
            .registry()
            .databases()
            .iter()
            .map(|d| d.to_string()),
    );
    vec![ResultSeries {
        zone: None,
        name: "databases".into(),
        tags: None,
        columns: vec!["name".into()],
        values: names
            .into_iter()
            .map(|n| vec![Cell::Str(n.into())])
            .collect(),
    }]
}

pub async fn retention_policies(ctx: &Ctx, on: Option<&str>) -> Result<Vec<ResultSeries>, String> {
    let db = ctx.database(on)?;
    if !ctx.database_exists(&db).await {
        return Err(format!("database not found: {db}"));
    }
    Ok(vec![ResultSeries {
        zone: None,
        name: String::new(),
        tags: None,
        columns: [
            "name",
            "duration",
            "shardGroupDuration",
            "replicaN",
            "default",
        ]
        .map(String::from)
        .to_vec(),
        values: vec![vec![
            Cell::Str("autogen".into()),
            // The database's `[[retention]] keep` (0s: forever, InfluxDB's notation).
            Cell::Str(
                go_duration(
                    ctx.engine
                        .retention()
                        .rules
                        .iter()
                        .find(|r| r.db == db && r.measurement.is_none())
                        .and_then(|r| r.keep_ns)
                        .unwrap_or(0),
                )
                .into(),
            ),
            Cell::Str("168h0m0s".into()),
            Cell::Int(1),
            Cell::Bool(true),
        ]],
    }])
}

/// A duration as InfluxDB prints a retention policy's: `720h0m0s`, `1h30m0s`, `0s`.
fn go_duration(ns: i64) -> String {
    if ns <= 0 {
        return "0s".into();
    }
    let s = ns / 1_000_000_000;
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// The database of a SHOW (`ON db`, else the request's), checked to exist.
pub(super) async fn show_db(ctx: &Ctx, on: Option<&str>) -> Result<String, String> {
    let db = ctx.database(on)?;
    // Forwarded by another node, which checked that the database exists somewhere: this
    // node answers for its own regions, with nothing if it holds none of it.
    if !ctx.forwarded && !ctx.database_exists(&db).await {
        return Err(format!("database not found: {db}"));
    }
    Ok(db)
}

/// The measurements of `db` named by `sources` (all of them if empty), sorted.
pub async fn resolve_sources(ctx: &Ctx, db: &str, sources: &[Measurement]) -> Vec<Arc<str>> {
    let all = ctx.schema(db).await.keys().cloned().collect();
    match_sources(all, sources)
}

/// [`resolve_sources`] over the regions this node hosts only (a delete: every node hosting
/// a region runs it for its own).
pub fn resolve_local_sources(ctx: &Ctx, db: &str, sources: &[Measurement]) -> Vec<Arc<str>> {
    let all = ctx
        .engine
        .registry()
        .measurements(db)
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    match_sources(all, sources)
}

/// The measurements of `all` that `sources` name (all of them when there is none).
pub fn match_sources(all: Vec<Arc<str>>, sources: &[Measurement]) -> Vec<Arc<str>> {
    if sources.is_empty() {
        return all;
    }
    all.into_iter()
        .filter(|m| {
            sources.iter().any(|s| match &s.name {
                MeasurementName::Name(n) => n == &**m,
                MeasurementName::Regex(r) => r.regex().is_match(m),
            })
        })
        .collect()
}

/// The series of a measurement matching an optional condition, and the series catalog.
fn matching(
    ctx: &Ctx,
    db: &str,
    m: &str,
    cond: Option<&crate::influxql::Expr>,
) -> Option<(Arc<parking_lot::RwLock<MeasurementSeries>>, RoaringBitmap)> {
    let entry = ctx.engine.series().get(db, m)?;
    let bits = {
        let ms = entry.read();
        match cond {
            Some(c) => series_matching(&ms, &strip_time(c)),
            None => ms.all(),
        }
    };
    Some((entry, bits))
}

/// SHOW statements ignore conditions on time (as InfluxDB 1.x does): they become `true`.
fn strip_time(e: &crate::influxql::Expr) -> crate::influxql::Expr {
    use crate::influxql::{BinaryExpr, BinaryOp, Expr};
    match e {
        Expr::Paren(inner) => Expr::Paren(Box::new(strip_time(inner))),
        Expr::Binary(b) if matches!(b.op, BinaryOp::And | BinaryOp::Or) => {
            Expr::Binary(BinaryExpr {
                op: b.op,
                lhs: Box::new(strip_time(&b.lhs)),
                rhs: Box::new(strip_time(&b.rhs)),
            })
        }
        Expr::Binary(b)
            if matches!(&*b.lhs, Expr::VarRef(v) if v.name.eq_ignore_ascii_case("time"))
                || matches!(&*b.rhs, Expr::VarRef(v) if v.name.eq_ignore_ascii_case("time")) =>
        {
            Expr::Bool(true)
        }
        other => other.clone(),
    }
}

fn check_measurements_condition(e: &crate::influxql::Expr) -> Result<(), String> {
    check_tag_condition(e, false)
}

/// What InfluxDB refuses in a SHOW statement's WHERE: comparisons other than `= != =~ !~`
/// (`host > 'a'`), and, unless `time_ignored` (SHOW SERIES, TAG KEYS, TAG VALUES, which
/// ignore time), any condition on time (SHOW MEASUREMENTS).
fn check_tag_condition(e: &crate::influxql::Expr, time_ignored: bool) -> Result<(), String> {
    use crate::influxql::{BinaryOp, Expr};
    match e {
        Expr::Paren(inner) => check_tag_condition(inner, time_ignored),
        Expr::Binary(b) if matches!(b.op, BinaryOp::And | BinaryOp::Or) => {
            check_tag_condition(&b.lhs, time_ignored)?;
            check_tag_condition(&b.rhs, time_ignored)
        }
        Expr::Binary(b) => {
            let time =
                |e: &Expr| matches!(e, Expr::VarRef(v) if v.name.eq_ignore_ascii_case("time"));
            if time(&b.lhs) || time(&b.rhs) {
                if time_ignored {
                    return Ok(());
                }
                return Err("SHOW MEASUREMENTS doesn't support time in WHERE clause".into());
            }
            if !matches!(
                b.op,
                BinaryOp::Eq | BinaryOp::Neq | BinaryOp::EqRegex | BinaryOp::NeqRegex
            ) {
                return Err("invalid tag comparison operator".into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

pub async fn measurements(ctx: &Ctx, s: &ShowMeasurements) -> Result<Vec<ResultSeries>, String> {
    // An unknown database has no measurements (InfluxDB answers an empty result here).
    let db = ctx.database(s.database.as_deref())?;
    let mut names: Vec<Arc<str>> = match &s.with_measurement {
        Some(w) => resolve_sources(ctx, &db, std::slice::from_ref(w)).await,
        None => resolve_sources(ctx, &db, &[]).await,
    };
    if let Some(c) = &s.condition {
        // (It refuses time conditions, so there is none to strip.)
        check_measurements_condition(c)?;
        ctx.series_loaded().await?;
        names.retain(|m| {
            ctx.engine.series().get(&db, m).is_some_and(|e| {
                let ms = e.read();
                !ms.is_empty() && super::cond::measurement_matching(&ms, c)
            })
        });
    } else {
        // A measurement whose every series was dropped is gone.
        ctx.series_loaded().await?;
        names.retain(|m| {
            ctx.engine
                .series()
                .get(&db, m)
                .is_some_and(|e| !e.read().is_empty())
        });
    }
    if s.order == crate::influxql::SortOrder::Desc {
        names.reverse();
    }
    let names = page(names, s.limit, s.offset);
    Ok(strings(
        "measurements",
        "name",
        names.into_iter().map(|m| m.to_string()).collect(),
    ))
}

pub async fn tag_keys(ctx: &Ctx, s: &ShowTagKeys) -> Result<Vec<ResultSeries>, String> {
    if let Some(c) = &s.condition {
        check_tag_condition(c, true)?;
    }
    let db = show_db(ctx, s.database.as_deref()).await?;
    let names = resolve_sources(ctx, &db, &s.sources).await;
    if s.condition.is_some() {
        ctx.series_loaded().await?;
    }
    // SLIMIT/SOFFSET count measurements that have keys to show (as InfluxDB does).
    let mut out = Vec::new();
    for m in names {
        let mut keys: Vec<String> = match &s.condition {
            Some(c) => match matching(ctx, &db, &m, Some(c)) {
                Some((entry, bits)) => entry
                    .read()
                    .tag_keys(Some(&bits))
                    .into_iter()
                    .map(String::from)
                    .collect(),
                None => Vec::new(),
            },
            // The keys the measurement's live series carry here (a key whose every
            // series a delete removed is gone, as in InfluxDB; a measurement only other
            // nodes hold is in their answers); from the schema while the catalog loads.
            None if ctx.engine.series().is_loaded() => match ctx.engine.series().get(&db, &m) {
                Some(entry) => entry
                    .read()
                    .tag_keys(None)
                    .into_iter()
                    .map(String::from)
                    .collect(),
                None => Vec::new(),
            },
            None => {
                let schema = ctx.schema(&db).await.get(&m).cloned();
                let mut k: Vec<String> = schema
                    .iter()
                    .flat_map(|s| s.iter())
                    .filter(|(_, kind)| matches!(kind, ColumnKind::Tag))
                    .map(|(n, _)| n.to_string())
                    .collect();
                k.sort();
                k
            }
        };
        if let Some(f) = &s.tag_key {
            keys.retain(|k| key_matches(f, k));
        }
        out.extend(strings(&m, "tagKey", page(keys, s.limit, s.offset)));
    }
    Ok(page(out, s.slimit, s.soffset))
}

fn key_matches(f: &TagKeyFilter, k: &str) -> bool {
    match f {
        TagKeyFilter::Eq(x) => x == k,
        TagKeyFilter::NotEq(x) => x != k,
        TagKeyFilter::Regex(r) => r.regex().is_match(k),
        TagKeyFilter::NotRegex(r) => !r.regex().is_match(k),
        TagKeyFilter::In(list) => list.iter().any(|x| x == k),
    }
}

pub async fn tag_values(ctx: &Ctx, s: &ShowTagValues) -> Result<Vec<ResultSeries>, String> {
    if let Some(c) = &s.condition {
        check_tag_condition(c, true)?;
    }
    let db = show_db(ctx, s.database.as_deref()).await?;
    ctx.series_loaded().await?;
    let mut out = Vec::new();
    // The series catalog is this node's: other nodes' measurements would find nothing.
    for m in resolve_local_sources(ctx, &db, &s.sources) {
        let Some((entry, bits)) = matching(ctx, &db, &m, s.condition.as_ref()) else {
            continue;
        };
        let ms = entry.read();
        let mut rows: Vec<Vec<Cell>> = Vec::new();
        for key in ms.tag_keys(Some(&bits)) {
            if !key_matches(&s.tag_key, key) {
                continue;
            }
            for v in ms.tag_values(key, Some(&bits)) {
                rows.push(vec![Cell::Str(key.into()), Cell::Str(v.into())]);
            }
        }
        if s.order == crate::influxql::SortOrder::Desc {
            rows.reverse();
        }
        let rows = page(rows, s.limit, s.offset);
        if !rows.is_empty() {
            out.push(ResultSeries {
                zone: None,
                name: m.to_string(),
                tags: None,
                columns: vec!["key".into(), "value".into()],
                values: rows,
            });
        }
    }
    Ok(out)
}

pub async fn field_keys(ctx: &Ctx, s: &ShowFieldKeys) -> Result<Vec<ResultSeries>, String> {
    let db = show_db(ctx, s.database.as_deref()).await?;
    let mut out = Vec::new();
    for m in resolve_sources(ctx, &db, &s.sources).await {
        let Some(schema) = ctx.schema(&db).await.get(&m).cloned() else {
            continue;
        };
        let mut fields: Vec<(String, &'static str)> = schema
            .iter()
            .filter_map(|(n, k)| match k {
                ColumnKind::Field(t) => Some((n.to_string(), t.name())),
                ColumnKind::Tag => None,
            })
            .collect();
        fields.sort();
        if s.order == crate::influxql::SortOrder::Desc {
            fields.reverse();
        }
        let fields = page(fields, s.limit, s.offset);
        if !fields.is_empty() {
            out.push(ResultSeries {
                zone: None,
                name: m.to_string(),
                tags: None,
                columns: vec!["fieldKey".into(), "fieldType".into()],
                values: fields
                    .into_iter()
                    .map(|(n, t)| vec![Cell::Str(n.into()), Cell::Str(t.into())])
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// A series key as line protocol writes it: `m,k=v,k2=v2`, escaped.
pub fn series_key(m: &str, tags: &[(&str, &str)]) -> String {
    let esc = |s: &str, eq: bool| {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            if c == ',' || c == ' ' || (eq && c == '=') {
                o.push('\\');
            }
            o.push(c);
        }
        o
    };
    let mut k = esc(m, false);
    for (key, v) in tags {
        k.push(',');
        k.push_str(&esc(key, true));
        k.push('=');
        k.push_str(&esc(v, true));
    }
    k
}

pub async fn series(ctx: &Ctx, s: &ShowSeries) -> Result<Vec<ResultSeries>, String> {
    if let Some(c) = &s.condition {
        check_tag_condition(c, true)?;
    }
    let db = show_db(ctx, s.database.as_deref()).await?;
    ctx.series_loaded().await?;
    let mut keys = Vec::new();
    for m in resolve_local_sources(ctx, &db, &s.sources) {
        let Some((entry, bits)) = matching(ctx, &db, &m, s.condition.as_ref()) else {
            continue;
        };
        let ms = entry.read();
        keys.extend(bits.iter().map(|sid| series_key(&m, &ms.tags(sid))));
    }
    keys.sort();
    if s.order == crate::influxql::SortOrder::Desc {
        keys.reverse();
    }
    Ok(strings("", "key", page(keys, s.limit, s.offset)))
}

fn count(name: &str, n: u64) -> ResultSeries {
    ResultSeries {
        zone: None,
        name: name.to_string(),
        tags: None,
        columns: vec!["count".into()],
        values: vec![vec![Cell::Int(n as i64)]],
    }
}

pub async fn cardinality(ctx: &Ctx, s: &ShowCardinality) -> Result<Vec<ResultSeries>, String> {
    // (No operator check here: influxd 1.6.7 answers `host > 'a'` with no match.)
    let db = show_db(ctx, s.database.as_deref()).await?;
    if !s.dimensions.is_empty() {
        return Err("GROUP BY in SHOW ... CARDINALITY is not supported by Meridian".into());
    }
    ctx.series_loaded().await?;
    // Field keys come from every region's schema; the rest from this node's series catalog.
    let names = if matches!(s.kind, CardinalityKind::FieldKey) {
        resolve_sources(ctx, &db, &s.sources).await
    } else {
        resolve_local_sources(ctx, &db, &s.sources)
    };
    let mut out = Vec::new();
    // The estimate only without FROM and WHERE: with either InfluxDB counts exactly.
    if !s.exact
        && s.sources.is_empty()
        && s.condition.is_none()
        && matches!(
            s.kind,
            CardinalityKind::Measurement | CardinalityKind::Series
        )
    {
        // The estimate InfluxDB gives is one total; Meridian's is exact.
        let n: u64 = names
            .iter()
            .filter_map(|m| matching(ctx, &db, m, s.condition.as_ref()))
            .map(|(_, b)| match s.kind {
                CardinalityKind::Measurement => u64::from(!b.is_empty()),
                _ => b.len(),
            })
            .sum();
        return Ok(vec![ResultSeries {
            zone: None,
            name: String::new(),
            tags: None,
            columns: vec!["cardinality estimation".into()],
            values: vec![vec![Cell::Int(n as i64)]],
        }]);
    }
    match s.kind {
        CardinalityKind::Measurement => {
            let n = names
                .iter()
                .filter(|m| {
                    matching(ctx, &db, m, s.condition.as_ref()).is_some_and(|(_, b)| !b.is_empty())
                })
                .count();
            if n > 0 {
                out.push(count("", n as u64));
            }
        }
        CardinalityKind::Series => {
            for m in names {
                if let Some((_, bits)) = matching(ctx, &db, &m, s.condition.as_ref())
                    && !bits.is_empty()
                {
                    out.push(count(&m, bits.len()));
                }
            }
        }
        CardinalityKind::TagKey => {
            for m in names {
                if let Some((entry, bits)) = matching(ctx, &db, &m, s.condition.as_ref()) {
                    let n = entry.read().tag_keys(Some(&bits)).len();
                    if n > 0 {
                        out.push(count(&m, n as u64));
                    }
                }
            }
        }
        CardinalityKind::TagValues => {
            let Some(filter) = &s.tag_key else {
                return Err("SHOW TAG VALUES CARDINALITY needs WITH KEY".into());
            };
            for m in names {
                if let Some((entry, bits)) = matching(ctx, &db, &m, s.condition.as_ref()) {
                    let ms = entry.read();
                    let n: usize = ms
                        .tag_keys(Some(&bits))
                        .into_iter()
                        .filter(|k| key_matches(filter, k))
                        .map(|k| ms.tag_values(k, Some(&bits)).len())
                        .sum();
                    if n > 0 {
                        out.push(count(&m, n as u64));
                    }
                }
            }
        }
        CardinalityKind::FieldKey => {
            for m in names {
                // A condition keeps the measurements with a series matching it.
                if s.condition.is_some()
                    && matching(ctx, &db, &m, s.condition.as_ref())
                        .is_none_or(|(_, b)| b.is_empty())
                {
                    continue;
                }
                let n = ctx
                    .schema(&db)
                    .await
                    .get(&m)
                    .map(|s| {
                        s.values()
                            .filter(|k| matches!(k, ColumnKind::Field(_)))
                            .count()
                    })
                    .unwrap_or(0);
                if n > 0 {
                    out.push(count(&m, n as u64));
                }
            }
        }
    }
    Ok(out)
}

pub fn system(s: &SystemShow) -> Result<Vec<ResultSeries>, String> {
    match s {
        SystemShow::Users => Ok(vec![ResultSeries {
            zone: None,
            name: String::new(),
            tags: None,
            columns: vec!["user".into(), "admin".into()],
            values: Vec::new(),
        }]),
        SystemShow::ContinuousQueries | SystemShow::Subscriptions | SystemShow::Queries => {
            Ok(Vec::new())
        }
        other => Err(format!(
            "{other:?} is not supported by Meridian: see /metrics and /api/v1/regions"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_influxdb_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(30 * 86_400_000_000_000), "720h0m0s");
        assert_eq!(go_duration(5_400_000_000_000), "1h30m0s");
        assert_eq!(go_duration(61_000_000_000), "1m1s");
        assert_eq!(go_duration(7_000_000_000), "7s");
    }
}
