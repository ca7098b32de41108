//! `DROP DATABASE`, `DROP MEASUREMENT`, `DROP SERIES`, `DELETE` (and `/api/v2/delete`):
//! the statement becomes a [`DeleteSpec`] the engine applies durably on every hosted
//! region ([`crate::region::delete`]); regions hosted by other nodes get the statement
//! forwarded, and the answer says which did not take it. Then the catalogs forget what is
//! gone: the database, the measurement, or the series a delete without time bounds took.

use std::sync::Arc;

use super::Ctx;
use super::cond::{PointView, eval, is_tag_only, series_matching, truthy};
use super::result::ResultSeries;
use super::show::resolve_local_sources;
use crate::influxql::{Expr, Measurement, SeriesFilter as Filter, Statement, split_time_range};
use crate::query::agg::Value;
use crate::region::delete::{DeleteOutcome, DeleteSpec, SeriesFilter};

/// Tags of one series, as a condition sees them.
struct Tags<'a>(&'a [(&'a str, &'a str)]);

impl PointView for Tags<'_> {
    fn field(&self, _: &str) -> Option<&Value> {
        None
    }
    fn tag(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
    fn is_tag(&self, _: &str) -> bool {
        true
    }
}

/// A series filter from a tag-only condition.
fn filter_of(cond: Expr) -> SeriesFilter {
    Arc::new(move |tags: &[(&str, &str)]| truthy(eval(&cond, &Tags(tags))))
}

/// What a delete statement names.
struct Target {
    db: String,
    /// `None`: every measurement.
    measurements: Option<Vec<String>>,
    cond: Option<Expr>,
    min: i64,
    max: i64,
    kind: Kind,
}

#[derive(PartialEq)]
enum Kind {
    Database,
    Measurement,
    Series,
}

pub async fn run(ctx: &Ctx, stmt: &Statement, text: &str) -> Result<Vec<ResultSeries>, String> {
    let target = match stmt {
        Statement::DropDatabase { name } => Target {
            db: name.clone(),
            measurements: None,
            cond: None,
            min: i64::MIN,
            max: i64::MAX,
            kind: Kind::Database,
        },
        Statement::DropMeasurement { name } => Target {
            db: ctx.database(None)?,
            measurements: Some(vec![name.clone()]),
            cond: None,
            min: i64::MIN,
            max: i64::MAX,
            kind: Kind::Measurement,
        },
        Statement::DropSeries(f) => {
            let (rest, range) =
                split_time_range(f.condition.as_ref(), ctx.now_ns).map_err(|e| e.to_string())?;
            if range.min_ns.is_some() || range.max_ns.is_some() {
                return Err("DROP SERIES doesn't support time in WHERE clause".into());
            }
            series_target(ctx, f, rest, i64::MIN, i64::MAX)?
        }
        Statement::Delete(f) => {
            let (rest, range) =
                split_time_range(f.condition.as_ref(), ctx.now_ns).map_err(|e| e.to_string())?;
            series_target(
                ctx,
                f,
                rest,
                range.min_ns.unwrap_or(i64::MIN),
                range.max_ns.unwrap_or(i64::MAX),
            )?
        }
        _ => return Err("not a delete statement".into()),
    };
    apply(ctx, target, Some(text)).await?;
    Ok(Vec::new())
}

fn series_target(
    ctx: &Ctx,
    f: &Filter,
    cond: Option<Expr>,
    min: i64,
    max: i64,
) -> Result<Target, String> {
    let db_named = f.sources.iter().find_map(|s| s.database.clone());
    let db = ctx.database(db_named.as_deref())?;
    if let Some(c) = &cond
        && !is_tag_only(c, &|_| true)
    {
        return Err(
            "fields not supported in WHERE clause during deletion: only tags and time".into(),
        );
    }
    let measurements = if f.sources.is_empty() {
        None
    } else {
        Some(named_measurements(ctx, &db, &f.sources))
    };
    Ok(Target {
        db,
        measurements,
        cond,
        min,
        max,
        kind: Kind::Series,
    })
}

fn named_measurements(ctx: &Ctx, db: &str, sources: &[Measurement]) -> Vec<String> {
    resolve_local_sources(ctx, db, sources)
        .into_iter()
        .map(|m| m.to_string())
        .collect()
}

/// `POST /api/v2/delete`: `start`, `stop` (RFC 3339) and a predicate of `key="value"`
/// terms joined by `AND` (`_measurement` names the measurement).
pub async fn api_v2(
    ctx: &Ctx,
    db: &str,
    start: i64,
    stop: i64,
    predicate: &str,
) -> Result<DeleteOutcome, String> {
    let mut measurement = None;
    let mut terms: Vec<(String, String)> = Vec::new();
    for term in split_and(predicate) {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        let (k, v) = term
            .split_once('=')
            .ok_or_else(|| format!("invalid predicate term {term:?}: use key=\"value\""))?;
        let k = k.trim().trim_matches('"').to_string();
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| format!("invalid predicate term {term:?}: quote the value"))?;
        if k == "_measurement" {
            measurement = Some(v.to_string());
        } else if k == "_field" {
            return Err("deleting by _field is not supported (InfluxDB 2 refuses it too)".into());
        } else {
            terms.push((k, v.to_string()));
        }
    }
    let filter: Option<SeriesFilter> = (!terms.is_empty()).then(|| {
        let terms = terms.clone();
        Arc::new(move |tags: &[(&str, &str)]| {
            terms.iter().all(|(k, v)| {
                tags.iter()
                    .find(|(tk, _)| tk == k)
                    .map_or(v.is_empty(), |(_, tv)| tv == v)
            })
        }) as SeriesFilter
    });
    let spec = DeleteSpec {
        db: db.to_string(),
        measurements: measurement.clone().map(|m| vec![m]),
        series: filter,
        // `stop` is inclusive in InfluxDB 2's delete.
        min_time: start,
        max_time: stop,
    };
    if ctx.engine.regions().iter().any(|r| !r.hosted()) {
        return Err(
            "/api/v2/delete on a node that does not host every region: use DELETE on /query".into(),
        );
    }
    let outcome = run_spec(ctx, spec).await?;
    // The same terms as a condition, for the catalog's series left without points.
    let cond = terms.iter().fold(None, |acc: Option<Expr>, (k, v)| {
        let term = Expr::Binary(crate::influxql::BinaryExpr {
            op: crate::influxql::BinaryOp::Eq,
            lhs: Box::new(Expr::VarRef(crate::influxql::VarRef {
                name: k.clone(),
                data_type: Some(crate::influxql::DataType::Tag),
            })),
            rhs: Box::new(Expr::Str(v.clone())),
        });
        Some(match acc {
            None => term,
            Some(a) => Expr::Binary(crate::influxql::BinaryExpr {
                op: crate::influxql::BinaryOp::And,
                lhs: Box::new(a),
                rhs: Box::new(term),
            }),
        })
    });
    let names = measurement_names(ctx, db, measurement.map(|m| vec![m]));
    for m in names {
        forget_emptied(ctx, db, &m, cond.as_ref()).await?;
    }
    Ok(outcome)
}

/// `AND`-separated terms (case-insensitive), outside quotes.
fn split_and(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted
            && chars.len() >= i + 5
            && chars[i].is_whitespace()
            && chars[i + 1..i + 4]
                .iter()
                .collect::<String>()
                .eq_ignore_ascii_case("and")
            && chars[i + 4].is_whitespace()
        {
            out.push(std::mem::take(&mut cur));
            i += 5;
            continue;
        }
        cur.push(c);
        i += 1;
    }
    out.push(cur);
    out
}

async fn run_spec(ctx: &Ctx, spec: DeleteSpec) -> Result<DeleteOutcome, String> {
    // Cluster mode: points acknowledged before this delete must be applied first, or they
    // would be applied after it and stay.
    if let Some(b) = &ctx.barrier {
        let left = ctx.timeout.saturating_sub(ctx.started.elapsed());
        b.settle(left)
            .await
            .map_err(|e| format!("{e}; nothing was deleted, run the statement again"))?;
    }
    let engine = ctx.engine.clone();
    let timeout = ctx.timeout;
    tokio::task::spawn_blocking(move || engine.delete(&spec, timeout))
        .await
        .map_err(|e| format!("delete task failed: {e}"))?
}

async fn apply(ctx: &Ctx, t: Target, text: Option<&str>) -> Result<(), String> {
    if t.measurements.as_ref().is_some_and(|m| m.is_empty()) {
        return Ok(());
    }
    let spec = DeleteSpec {
        db: t.db.clone(),
        measurements: t.measurements.clone(),
        series: t.cond.clone().map(filter_of),
        min_time: t.min,
        max_time: t.max,
    };
    run_spec(ctx, spec).await?;
    // Regions hosted elsewhere: the statement goes to their nodes.
    if let (false, Some(q)) = (ctx.forwarded, text) {
        // Every node hosting a region: the url of a region hosted elsewhere, and every
        // replica (a replica of a region hosted here too; this node asking itself again
        // deletes nothing more).
        let mut urls: Vec<String> = ctx
            .engine
            .regions()
            .iter()
            .flat_map(|r| {
                let reach = r.reach();
                let url = reach.url.clone().filter(|_| !r.hosted());
                url.into_iter()
                    .chain(reach.replicas.iter().cloned())
                    .collect::<Vec<_>>()
            })
            .collect();
        urls.sort();
        urls.dedup();
        let mut failed = Vec::new();
        for url in urls {
            if let Err(e) = ctx.remote.forward_statement(&url, &t.db, q).await {
                failed.push(e);
            }
        }
        if !failed.is_empty() {
            return Err(format!(
                "deleted on this node's regions but not on others ({}); run the statement again",
                failed.join("; ")
            ));
        }
    }
    // The catalogs forget what is gone, and so do the schemas this request asked for.
    ctx.forget_schemas().await;
    let series = ctx.engine.series();
    match t.kind {
        Kind::Database => {
            series.drop_database(&t.db);
            ctx.engine.registry().drop_database(&t.db);
            ctx.engine
                .databases()
                .remove(&t.db)
                .map_err(|e| format!("could not update the database list: {e}"))?;
        }
        Kind::Measurement => {
            for m in t.measurements.iter().flatten() {
                series.drop_measurement(&t.db, m);
                ctx.engine.registry().drop_measurement(&t.db, m);
            }
        }
        Kind::Series if t.min == i64::MIN && t.max == i64::MAX => {
            let names = measurement_names(ctx, &t.db, t.measurements.clone());
            for m in names {
                let gone = series.get(&t.db, &m).map(|entry| {
                    let ms = entry.read();
                    match &t.cond {
                        Some(c) => series_matching(&ms, c),
                        None => ms.all(),
                    }
                });
                if let Some(gone) = gone {
                    series.remove_series(&t.db, &m, &gone);
                }
            }
        }
        Kind::Series => {
            // A delete with time bounds: the matching series that have no point left go.
            let names = measurement_names(ctx, &t.db, t.measurements.clone());
            for m in names {
                forget_emptied(ctx, &t.db, &m, t.cond.as_ref()).await?;
            }
        }
    }
    Ok(())
}

/// The measurements a delete names, or every measurement of `db` with series.
fn measurement_names(ctx: &Ctx, db: &str, named: Option<Vec<String>>) -> Vec<String> {
    named.unwrap_or_else(|| {
        ctx.engine
            .series()
            .measurements(db)
            .into_iter()
            .map(|(m, _)| m.to_string())
            .collect()
    })
}

/// Removes from the catalog the series of `m` matching `cond` that hold no point any more:
/// the regions count every series' points (their series indexes answer a count without a
/// time range from run lengths), and the matching series without a count are gone.
async fn forget_emptied(ctx: &Ctx, db: &str, m: &str, cond: Option<&Expr>) -> Result<(), String> {
    let series = ctx.engine.series();
    let Some(entry) = series.get(db, m) else {
        return Ok(());
    };
    let Some(schema) = ctx.engine.registry().get(db, m) else {
        return Ok(());
    };
    let mut tags: Vec<String> = schema
        .iter()
        .filter(|(_, k)| matches!(k, crate::model::ColumnKind::Tag))
        .map(|(n, _)| n.to_string())
        .collect();
    tags.sort();
    let matched = {
        let ms = entry.read();
        match cond {
            Some(c) => series_matching(&ms, c),
            None => ms.all(),
        }
    };
    if matched.is_empty() {
        return Ok(());
    }
    let mut params = std::collections::HashMap::new();
    params.insert("db".to_string(), db.to_string());
    params.insert("measurement".to_string(), m.to_string());
    params.insert("agg".to_string(), "count".to_string());
    if !tags.is_empty() {
        params.insert("group_by".to_string(), tags.join(","));
    }
    let mut spec = crate::query::plan::QuerySpec::from_params(&params)?;
    spec.deadline = Some(ctx.started + ctx.timeout);
    spec.budget = Some(Arc::new(ctx.query_memory.budget()));
    let g = crate::query::gather(
        &ctx.engine,
        Arc::new(spec),
        Arc::new(params),
        &ctx.remote,
        ctx.timeout,
        ctx.max_rows,
    )
    .await;
    if g.partial || g.refused.is_some() {
        // Not every region answered: keep the series listed rather than guess.
        return Ok(());
    }
    let mut present = roaring::RoaringBitmap::new();
    {
        let ms = entry.read();
        for p in g.partials {
            let crate::query::scan::Partial::Agg(a) = p else {
                continue;
            };
            for (key, buckets) in a.groups {
                let live = buckets
                    .values()
                    .any(|accs| accs.iter().any(|a| a.count > 0));
                if !live {
                    continue;
                }
                let pairs: Vec<(&str, &str)> = tags
                    .iter()
                    .zip(&key)
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                if let Some(sid) = ms.sid_of(&pairs) {
                    present.insert(sid);
                }
            }
        }
    }
    let gone = matched - present;
    if !gone.is_empty() {
        series.remove_series(db, m, &gone);
    }
    Ok(())
}
