//! SHOW statements that read the series catalog (`SHOW MEASUREMENTS`, `SHOW TAG KEYS`,
//! `SHOW TAG VALUES`, `SHOW SERIES`, and `SHOW DATABASES`) over every node: each node's
//! catalog covers the regions it hosts, so the statement runs here and on one node per remote region (sent as
//! a forwarded statement: that node answers for its own regions), and the answers merge.
//!
//! ```text
//!   statement ──LIMIT offset+limit, no OFFSET──▶ here + each other node
//!             ◀──── union of rows per series, sorted, deduplicated ────┘
//!             then ORDER and the paging of the statement, as one node applies them
//! ```
//! A node that does not answer (nor any replica) leaves its regions out, and the statement
//! answers what the others gave with a warning naming it (in `messages`), as a query's
//! answer is `partial` when a region is down: `SHOW DATABASES` at a client's start keeps
//! working while a node is down.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Ctx;
use super::result::{Cell, ResultSeries};
use crate::influxql::{
    CardinalityKind, ShowCardinality, ShowMeasurements, ShowSeries, ShowTagKeys, ShowTagValues,
    SortOrder, Statement,
};

/// Runs `stmt` here and, when regions live on other nodes, there too, merging the answers.
/// `local` runs a statement on this node.
pub async fn across_nodes<'a, F, Fut>(
    ctx: &'a Ctx,
    stmt: &'a Statement,
    local: F,
) -> Result<Vec<ResultSeries>, String>
where
    F: Fn(&'a Ctx, Statement) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<ResultSeries>, String>>,
{
    let nodes = ctx.remote_nodes();
    if ctx.forwarded || nodes.is_empty() {
        return local(ctx, stmt.clone()).await;
    }
    let Some((unpaged, paging)) = strip_paging(stmt) else {
        return local(ctx, stmt.clone()).await;
    };
    let db = match (&unpaged, db_of(&unpaged)) {
        // SHOW DATABASES names none.
        (Statement::ShowDatabases, _) => ctx.db.clone().unwrap_or_default(),
        (_, Some(d)) => ctx.database(Some(d))?,
        (_, None) => ctx.database(None)?,
    };
    let text = unpaged.to_string();
    let deadline = tokio::time::Instant::now() + ctx.timeout / 2;
    let hedge = ctx.timeout / 4;
    let asks = nodes.iter().map(|urls| {
        let text = text.clone();
        let db = db.clone();
        async move {
            match tokio::time::timeout_at(deadline, ctx.remote.show_any(urls, &db, &text, hedge))
                .await
            {
                Ok(r) => r.map_err(|e| format!("{}: {e}", urls.join(" or "))),
                Err(_) => Err(format!(
                    "{}: no answer within half the query timeout",
                    urls.join(" or ")
                )),
            }
        }
    });
    let (mine, theirs) = tokio::join!(local(ctx, unpaged.clone()), futures::future::join_all(asks));
    // Per series name: its columns and every row, as strings (SHOW answers are strings).
    let mut merged: BTreeMap<String, (Vec<String>, Vec<Vec<String>>)> = BTreeMap::new();
    for s in mine? {
        let entry = merged
            .entry(s.name.clone())
            .or_insert_with(|| (s.columns.clone(), Vec::new()));
        entry.1.extend(
            s.values
                .iter()
                .map(|row| row.iter().map(cell_text).collect()),
        );
    }
    for answer in theirs {
        // A node (and its replicas) that does not answer: the others' rows, with a warning
        // naming it (as a query's answer is partial when a region is down).
        let answer = match answer {
            Ok(a) => a,
            // An error the node answered (or an answer too large to read) is the statement's.
            Err(e) if e.contains(crate::query::remote::NODE_ERROR) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "a node did not answer a SHOW statement");
                ctx.warn(format!(
                    "incomplete: the regions of a node that did not answer are missing ({e})"
                ));
                continue;
            }
        };
        for (name, columns, rows) in answer {
            let entry = merged.entry(name).or_insert_with(|| (columns, Vec::new()));
            entry.1.extend(rows);
        }
    }
    Ok(page(merged, &paging))
}

/// `SHOW … CARDINALITY` over every node: the list the count is of (measurements, series
/// keys, tag keys, tag values) is gathered across the nodes as its SHOW statement is, and
/// counted merged, so a series or a value held by two nodes counts once. Field keys come
/// from the merged schema already; a forwarded statement, or one with no other node, is
/// counted here.
pub async fn cardinality(ctx: &Ctx, s: &ShowCardinality) -> Result<Vec<ResultSeries>, String> {
    let local = matches!(s.kind, CardinalityKind::FieldKey)
        || ctx.forwarded
        || ctx.remote_nodes().is_empty()
        || !s.dimensions.is_empty();
    if local {
        return super::show::cardinality(ctx, s).await;
    }
    // An unknown database is an error, as on one node.
    super::show::show_db(ctx, s.database.as_deref()).await?;
    // Tag keys of live series (the series catalog), as one node counts them: a condition
    // on time alone, which SHOW statements take as true.
    let live = || {
        Some(s.condition.clone().unwrap_or_else(|| {
            super::native::cmp(
                crate::influxql::BinaryOp::Gt,
                super::native::var(crate::model::TIME_COLUMN, false),
                crate::influxql::Expr::Integer(0),
            )
        }))
    };
    let list = match s.kind {
        // Every measurement, narrowed to the sources below once merged.
        CardinalityKind::Measurement => Statement::ShowMeasurements(ShowMeasurements {
            database: s.database.clone(),
            retention_policy: None,
            with_measurement: None,
            condition: s.condition.clone(),
            order: SortOrder::Asc,
            limit: None,
            offset: None,
        }),
        CardinalityKind::Series => Statement::ShowSeries(ShowSeries {
            database: s.database.clone(),
            sources: s.sources.clone(),
            condition: s.condition.clone(),
            order: SortOrder::Asc,
            limit: None,
            offset: None,
        }),
        CardinalityKind::TagKey => Statement::ShowTagKeys(ShowTagKeys {
            database: s.database.clone(),
            sources: s.sources.clone(),
            tag_key: None,
            condition: live(),
            order: SortOrder::Asc,
            limit: None,
            offset: None,
            slimit: None,
            soffset: None,
        }),
        CardinalityKind::TagValues => {
            let Some(filter) = &s.tag_key else {
                return Err("SHOW TAG VALUES CARDINALITY needs WITH KEY".into());
            };
            Statement::ShowTagValues(ShowTagValues {
                database: s.database.clone(),
                sources: s.sources.clone(),
                tag_key: filter.clone(),
                condition: s.condition.clone(),
                order: SortOrder::Asc,
                limit: None,
                offset: None,
            })
        }
        CardinalityKind::FieldKey => return super::show::cardinality(ctx, s).await,
    };
    let merged = across_nodes(ctx, &list, super::show_catalog).await?;
    let count = |name: &str, n: usize| ResultSeries {
        zone: None,
        name: name.to_string(),
        tags: None,
        columns: vec!["count".into()],
        values: vec![vec![Cell::Int(n as i64)]],
    };
    // Per measurement: SHOW SERIES answers one list of keys, the others a series each.
    let per_measurement: Vec<(String, usize)> = match s.kind {
        CardinalityKind::Series => {
            let mut by: BTreeMap<String, usize> = BTreeMap::new();
            for row in merged.iter().flat_map(|r| &r.values) {
                if let Some(Cell::Str(key)) = row.first() {
                    *by.entry(measurement_of(key)).or_default() += 1;
                }
            }
            by.into_iter().collect()
        }
        CardinalityKind::Measurement => {
            let names: Vec<Arc<str>> = merged
                .iter()
                .flat_map(|r| &r.values)
                .filter_map(|row| match row.first() {
                    Some(Cell::Str(m)) => Some(m.clone()),
                    _ => None,
                })
                .collect();
            vec![(
                String::new(),
                super::show::match_sources(names, &s.sources).len(),
            )]
        }
        _ => merged
            .iter()
            .map(|r| (r.name.clone(), r.values.len()))
            .collect(),
    };
    let total: usize = per_measurement.iter().map(|(_, n)| n).sum();
    // The estimate only without FROM and WHERE (with either InfluxDB counts exactly), as
    // on one node (`show::cardinality`).
    if !s.exact
        && s.sources.is_empty()
        && s.condition.is_none()
        && matches!(
            s.kind,
            CardinalityKind::Measurement | CardinalityKind::Series
        )
    {
        // The estimate InfluxDB gives is one total; Meridian's is exact.
        return Ok(vec![ResultSeries {
            zone: None,
            name: String::new(),
            tags: None,
            columns: vec!["cardinality estimation".into()],
            values: vec![vec![Cell::Int(total as i64)]],
        }]);
    }
    Ok(match s.kind {
        CardinalityKind::Measurement if total == 0 => Vec::new(),
        CardinalityKind::Measurement => vec![count("", total)],
        _ => per_measurement
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(m, n)| count(&m, n))
            .collect(),
    })
}

/// The measurement of a series key (`m,k=v,…`, escaped as line protocol writes it).
fn measurement_of(key: &str) -> String {
    let mut out = String::new();
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // Only `,` and ` ` are escaped in a series key's measurement.
            '\\' => match chars.peek() {
                Some(&n @ (',' | ' ')) => {
                    out.push(n);
                    chars.next();
                }
                _ => out.push('\\'),
            },
            ',' => break,
            c => out.push(c),
        }
    }
    out
}

/// How a statement orders and pages its answer.
#[derive(Default)]
struct Paging {
    order: SortOrder,
    /// Rows of each series.
    limit: Option<u64>,
    offset: Option<u64>,
    /// Series (SHOW TAG KEYS).
    slimit: Option<u64>,
    soffset: Option<u64>,
}

/// The statement every node runs, and the ordering and paging applied to the merged rows.
/// Each node sorts the same way, so a node's first `offset + limit` rows hold every row of
/// the merged page: that is what it is asked for (no more: a `LIMIT 10` over millions of
/// series stays small). `SHOW TAG KEYS` pages measurements (SLIMIT) as well; its lists are
/// small and asked whole. `None` for a statement not merged here.
fn strip_paging(stmt: &Statement) -> Option<(Statement, Paging)> {
    let mut s = stmt.clone();
    let paging = match &mut s {
        Statement::ShowMeasurements(m) => first_rows(m.order, &mut m.limit, &mut m.offset),
        Statement::ShowTagValues(v) => first_rows(v.order, &mut v.limit, &mut v.offset),
        Statement::ShowSeries(v) => first_rows(v.order, &mut v.limit, &mut v.offset),
        Statement::ShowTagKeys(k) => Paging {
            limit: k.limit.take(),
            offset: k.offset.take(),
            slimit: k.slimit.take(),
            soffset: k.soffset.take(),
            ..Paging::default()
        },
        Statement::ShowDatabases => Paging::default(),
        _ => return None,
    };
    Some((s, paging))
}

/// The paging of a statement whose nodes are asked for their first `offset + limit` rows
/// (`limit` and `offset` are rewritten so).
fn first_rows(order: SortOrder, limit: &mut Option<u64>, offset: &mut Option<u64>) -> Paging {
    let p = Paging {
        order,
        limit: *limit,
        offset: offset.take(),
        ..Paging::default()
    };
    *limit = p.limit.map(|l| l.saturating_add(p.offset.unwrap_or(0)));
    p
}

fn db_of(stmt: &Statement) -> Option<&str> {
    match stmt {
        Statement::ShowMeasurements(m) => m.database.as_deref(),
        Statement::ShowTagKeys(k) => k.database.as_deref(),
        Statement::ShowTagValues(v) => v.database.as_deref(),
        Statement::ShowSeries(s) => s.database.as_deref(),
        _ => None,
    }
}

fn cell_text(c: &Cell) -> String {
    match c {
        Cell::Str(s) => s.to_string(),
        Cell::Int(i) => i.to_string(),
        Cell::UInt(u) => u.to_string(),
        Cell::Float(f) => f.to_string(),
        Cell::Bool(b) => b.to_string(),
        Cell::Time(t) => t.to_string(),
        Cell::Null => String::new(),
    }
}

/// Sorted, deduplicated rows per series; then ORDER, LIMIT/OFFSET per series, and
/// SLIMIT/SOFFSET over the series left with rows, as one node applies them.
fn page(
    merged: BTreeMap<String, (Vec<String>, Vec<Vec<String>>)>,
    p: &Paging,
) -> Vec<ResultSeries> {
    let skip = |n: Option<u64>| n.unwrap_or(0) as usize;
    let take = |n: Option<u64>| n.map_or(usize::MAX, |n| n as usize);
    merged
        .into_iter()
        .filter_map(|(name, (columns, mut rows))| {
            rows.sort();
            rows.dedup();
            if p.order == SortOrder::Desc {
                rows.reverse();
            }
            let values: Vec<Vec<Cell>> = rows
                .into_iter()
                .skip(skip(p.offset))
                .take(take(p.limit))
                .map(|row| row.into_iter().map(|v| Cell::Str(Arc::from(v))).collect())
                .collect();
            (!values.is_empty()).then_some(ResultSeries {
                zone: None,
                name,
                tags: None,
                columns,
                values,
            })
        })
        // SLIMIT/SOFFSET count the series left with rows, as one node counts them.
        .skip(skip(p.soffset))
        .take(take(p.slimit))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn the_measurement_of_a_series_key_is_unescaped() {
        assert_eq!(measurement_of("cpu,host=a"), "cpu");
        assert_eq!(measurement_of("my\\ m\\,x,host=a"), "my m,x");
        assert_eq!(measurement_of("a\\b,host=a"), "a\\b");
        // `a\ b` (a backslash, then an escaped space).
        assert_eq!(measurement_of("a\\\\ b,host=x"), "a\\ b");
        assert_eq!(measurement_of("tagless"), "tagless");
    }

    /// Answers of two nodes merge into what one node holding everything answers.
    #[test]
    fn merged_answers_are_sorted_deduplicated_and_paged_once() {
        let mut merged = BTreeMap::new();
        let mut cpu = rows(&[&["host", "b"], &["host", "a"]]);
        cpu.extend(rows(&[&["host", "c"], &["host", "a"]]));
        merged.insert("cpu".to_string(), (vec!["key".into(), "value".into()], cpu));
        merged.insert(
            "mem".to_string(),
            (vec!["key".into(), "value".into()], rows(&[&["host", "z"]])),
        );
        let p = Paging {
            order: SortOrder::Desc,
            limit: Some(2),
            offset: Some(0),
            slimit: None,
            soffset: Some(0),
        };
        let out = page(merged.clone(), &p);
        let text = |s: &ResultSeries| -> Vec<String> {
            s.values.iter().map(|r| cell_text(&r[1])).collect()
        };
        assert_eq!(out.len(), 2);
        assert_eq!(text(&out[0]), ["c", "b"]);
        assert_eq!(text(&out[1]), ["z"]);
        let p = Paging {
            order: SortOrder::Asc,
            limit: None,
            offset: Some(1),
            slimit: Some(1),
            soffset: None,
        };
        let out = page(merged, &p);
        assert_eq!(out.len(), 1);
        assert_eq!(text(&out[0]), ["b", "c"]);
    }
}
