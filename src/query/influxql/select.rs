//! SELECT: per measurement, a plan over the native query layer.
//!
//! - The time range and the tag comparisons joined by `AND` go to the regions as the native
//!   `start`/`end`/`where`; what remains (field comparisons, `OR`s) is checked per point.
//! - Fast path: aggregates the regions merge as partial states (`count, sum, mean, min,
//!   max, first, last`), no condition left to check per point, buckets aligned on the
//!   epoch: one native aggregate query per function, merged here per group and bucket.
//! - Otherwise the regions return the raw points (within the query's memory budget) and the
//!   functions run here ([`super::funcs`]).
//!
//! Then, as InfluxDB: buckets from the range's start to its end (now() when open) with
//! `fill`, arithmetic over the functions' results, `ORDER BY time DESC`, `LIMIT/OFFSET` per
//! series, `SLIMIT/SOFFSET`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::FxHashMap;
use std::sync::Arc;

use super::Ctx;
use super::DbSchema;
use super::cond::{PointView, conjuncts, eval, native_pred, tag_comparison, truthy, unparen};
use super::funcs::{Func, Out, ValueKey, apply, exact_key};
use super::result::{Cell, ResultSeries};
use super::show::match_sources;
use super::transform::{Transform, is_math, math};
use crate::influxql::column_names;
use crate::influxql::split_time_range;
use crate::influxql::{
    BinaryExpr, Call, DataType, Dimension, Expr, Fill, SelectStatement, SortOrder, TimeOffset,
    VarRef, WildcardType,
};
use crate::model::{ColumnKind, FieldType};
use crate::query::agg::{Agg, Value};
use crate::query::budget::QueryBudget;
use crate::query::plan::{QuerySpec, TagOp, TagPred};
use crate::query::scan::{GroupKey, Partial};
use crate::query::{Refusal, gather};
use crate::region::schema::MeasurementSchema;

/// Most buckets one statement may fill per series (InfluxDB's `max-select-buckets`).
pub const MAX_BUCKETS: i64 = 1_000_000;

/// Where buckets of `interval_ns` start past each multiple of it: `time(d, offset)`'s
/// offset, or `now()`'s.
pub fn bucket_offset(offset: Option<&TimeOffset>, interval_ns: i64, now_ns: i64) -> i64 {
    match offset {
        None => 0,
        Some(TimeOffset::Duration(o)) => o.rem_euclid(interval_ns),
        Some(TimeOffset::Now) => now_ns.rem_euclid(interval_ns),
    }
}

pub async fn select(ctx: &Ctx, s: &SelectStatement) -> Result<Vec<ResultSeries>, String> {
    Ok(select_window(ctx, s, &Window::default()).await?.0)
}

/// How [`select_window`] answers one part of a statement: one time window of a statement
/// grouped by `time()` alone under `fill(null)`, or one batch of the groups of a statement
/// grouped by tags (`chunked=true` runs such statements a part at a time,
/// [`super::stream`]).
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Answer the statement's one series even where none of its points lies in the window,
    /// every bucket filled: other windows showed that the series exists.
    pub answer_empty: bool,
    /// Per function, whether it has a value in the whole range (as gathered from every
    /// window): `count()` fills its empty buckets with 0 only then.
    pub any: Vec<bool>,
    /// Tag predicates added to the statement's: the series of one part of the groups
    /// (`chunked=true` runs a statement grouped by tags a batch of groups at a time).
    pub preds: Vec<TagPred>,
    /// Per function, the last value the windows before this one answered (in the
    /// statement's order): where `fill(previous)` starts.
    pub previous: Carried,
}

/// Per function, a value carried from one window to the next ([`Window::previous`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried(Vec<Option<Out>>);

/// What a window tells the windows after it ([`select_window`]).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Per function, whether it answered a value in the window (`true` for those whose
    /// fill does not depend on it).
    pub has_value: Vec<bool>,
    /// Per function, the last value it answered in the statement's order, else the one
    /// the window was given ([`Window::previous`]).
    pub last: Carried,
}

/// [`select`] over one window ([`Window`]); also, per function, whether it answered a
/// value in the window (`true` for those whose fill does not depend on it).
pub async fn select_window(
    ctx: &Ctx,
    s: &SelectStatement,
    window: &Window,
) -> Result<(Vec<ResultSeries>, Facts), String> {
    let (rest, range) =
        split_time_range(s.condition.as_ref(), ctx.now_ns).map_err(|e| e.to_string())?;
    let mut targets: Vec<(String, Arc<str>)> = Vec::new();
    // Per database, the schema the statement is planned with: this node's own when it
    // names everything the statement uses, else every region's (asked of other nodes).
    let mut dbs: Vec<(String, Arc<DbSchema>)> = Vec::new();
    for src in &s.sources {
        let db = ctx.database(src.database.as_deref())?;
        ctx.check_rp(&db, src.retention_policy.as_deref())?;
        if !dbs.iter().any(|(d, _)| *d == db) {
            let local = ctx.local_schema(&db);
            let schema = if local_schema_suffices(s, &local) {
                Arc::new(local)
            } else {
                ctx.schema(&db).await
            };
            if !ctx.database_exists_here(&db) && schema.is_empty() {
                return Err(format!("database not found: {db}"));
            }
            dbs.push((db.clone(), schema));
        }
        let schema = dbs.iter().find(|(d, _)| *d == db).map(|(_, s)| s.clone());
        let names: Vec<Arc<str>> = schema.iter().flat_map(|s| s.keys().cloned()).collect();
        for m in match_sources(names, std::slice::from_ref(src)) {
            if !targets.iter().any(|(d, n)| *d == db && *n == m) {
                targets.push((db.clone(), m));
            }
        }
    }
    targets.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    check_top_limit(s)?;
    let budget = Arc::new(ctx.query_memory.budget());
    // Wildcards expand over every measurement of the statement (InfluxDB gives each series
    // the union of their columns).
    let mut schemas: Vec<(String, Arc<str>, Arc<MeasurementSchema>)> = Vec::new();
    for (db, m) in targets {
        let Some(schema) = dbs
            .iter()
            .find(|(d, _)| *d == db)
            .and_then(|(_, s)| s.get(&m).cloned())
        else {
            continue;
        };
        // A measurement without fields holds no point (all were deleted).
        if schema.values().any(|k| matches!(k, ColumnKind::Field(_))) {
            schemas.push((db, m, schema));
        }
    }
    let mut wild = MeasurementSchema::default();
    for (_, _, schema) in &schemas {
        for (k, v) in schema.iter() {
            wild.entry(k.clone()).or_insert(*v);
        }
    }
    // GROUP BY * and /regex/: the tag keys the statement's series carry, over all its
    // measurements (InfluxDB gives every series the union, `""` where it lacks a key).
    // Read from the catalog only when such a dimension asks for them.
    let mut live_tags: BTreeSet<String> = BTreeSet::new();
    if s.dimensions
        .iter()
        .any(|d| matches!(d, Dimension::Wildcard | Dimension::Regex(_)))
    {
        for (db, m, schema) in &schemas {
            live_tags.extend(live_tag_keys(ctx, db, m, schema));
        }
    }
    let live_tags: Vec<String> = live_tags.into_iter().collect();
    let mut out = Vec::new();
    let mut facts = Facts {
        last: window.previous.clone(),
        ..Facts::default()
    };
    for (db, m, schema) in &schemas {
        let wild = (&wild, live_tags.as_slice());
        let Some(mut plan) = Plan::new(ctx, s, m, schema, wild, rest.as_ref(), range)? else {
            continue;
        };
        plan.window = window.clone();
        plan.preds.extend(window.preds.iter().cloned());
        let (series, found) = plan.run(ctx, db, &budget).await?;
        out.extend(series);
        facts.has_value = found.has_value;
        if !found.last.0.is_empty() {
            facts.last = found.last;
        }
    }
    if s.order == SortOrder::Desc {
        // Series come newest first too: InfluxDB sorts them in the statement's order.
        out.reverse();
    }
    let out = out
        .into_iter()
        .skip(s.soffset.unwrap_or(0) as usize)
        .take(s.slimit.map_or(usize::MAX, |l| l as usize))
        .collect();
    Ok((out, facts))
}

/// As InfluxDB, whatever the data: a LIMIT must leave room for every point top() or
/// bottom() chooses.
fn check_top_limit(s: &SelectStatement) -> Result<(), String> {
    let Some(limit) = s.limit.filter(|l| *l > 0) else {
        return Ok(());
    };
    for f in &s.fields {
        if let Expr::Call(c) = &f.expr
            && let Ok((Func::Top(n) | Func::Bottom(n), _)) = Func::of(c)
            && n as u64 > limit
        {
            return Err(format!(
                "limit ({n}) in {} function can not be larger than the LIMIT ({limit}) in the select statement",
                c.name
            ));
        }
    }
    Ok(())
}

/// The tag keys a measurement's series carry (the catalog forgets keys whose series were
/// all dropped; the schema does not, and is used until the catalog is loaded).
fn live_tag_keys(ctx: &Ctx, db: &str, m: &str, schema: &MeasurementSchema) -> Vec<String> {
    match ctx.engine.series().get(db, m) {
        Some(e) if ctx.engine.series().is_loaded() => e
            .read()
            .tag_keys(None)
            .into_iter()
            .map(String::from)
            .collect(),
        _ => schema
            .iter()
            .filter(|(_, k)| matches!(k, ColumnKind::Tag))
            .map(|(n, _)| n.to_string())
            .collect(),
    }
}

/// How a result column is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// A field as stored: its index in `Plan::fields`.
    Field(usize),
    /// A tag of the measurement, as stored (null where the series lacks it).
    Tag,
    /// A function's result: its index in `Plan::calls`.
    Call(usize),
    /// A selector's other column, from the chosen point.
    Aux,
    /// Anything else: evaluated.
    Other,
}

/// One function call of the projection: what it computes over which field.
#[derive(Debug, Clone)]
struct CallPlan {
    call: Call,
    func: Func,
    field: String,
}

/// A SELECT over one measurement, checked.
struct Plan<'a> {
    /// How each column is computed.
    shapes: Vec<Shape>,
    s: &'a SelectStatement,
    measurement: String,
    schema: Arc<MeasurementSchema>,
    /// Result columns after `time`, and their expressions.
    columns: Vec<(String, Expr)>,
    calls: Vec<CallPlan>,
    /// `GROUP BY time(interval, offset)`, offset within [0, interval).
    interval: Option<(i64, i64)>,
    /// A transformation of the only column (its argument is the column's expression).
    transform: Option<Transform>,
    /// `tz()`: buckets start at local boundaries, times are written with the offset.
    zone: Option<chrono_tz::Tz>,
    /// `query.max_rows`: the most rows an answer may have.
    max_rows: usize,
    /// A selector with other columns (`max(x), host`): they come from the chosen point.
    aux_columns: bool,
    group_tags: Vec<String>,
    /// The grouping tags that are tags of this measurement (a field named in GROUP BY is
    /// `""` in every series).
    native_group: Vec<String>,
    all_tags: Vec<String>,
    preds: Vec<TagPred>,
    residual: Vec<Expr>,
    fields: Vec<String>,
    /// Tags the points must carry (grouping, projection, residual condition).
    tags: Vec<String>,
    /// Inclusive time bounds.
    min: Option<i64>,
    max: Option<i64>,
    now: i64,
    /// The window of a statement streamed a window at a time ([`select_window`]).
    window: Window,
}

fn is_tag_of(schema: &MeasurementSchema, name: &str) -> bool {
    match schema.get(name) {
        Some(ColumnKind::Tag) => true,
        Some(ColumnKind::Field(_)) => false,
        None => true,
    }
}

fn field_type(schema: &MeasurementSchema, name: &str) -> Option<FieldType> {
    match schema.get(name) {
        Some(ColumnKind::Field(t)) => Some(*t),
        _ => None,
    }
}

/// The type of an expression's field reference, for arithmetic checks.
fn var_type(e: &Expr, schema: &MeasurementSchema) -> Option<(String, &'static str)> {
    match e {
        Expr::VarRef(v) if v.data_type.is_none() => match schema.get(v.name.as_str()) {
            Some(ColumnKind::Field(t)) => Some((v.name.clone(), t.name())),
            Some(ColumnKind::Tag) => Some((v.name.clone(), "tag")),
            None => None,
        },
        Expr::Paren(inner) => var_type(inner, schema),
        // A selector answers its field's type: `last(s)` of a string is a string.
        Expr::Call(c)
            if matches!(
                c.name.as_str(),
                "first" | "last" | "min" | "max" | "mode" | "distinct" | "sample"
            ) =>
        {
            let (name, t) = var_type(c.args.first()?, schema)?;
            (t != "tag").then(|| (format!("{}({name})", c.name), t))
        }
        _ => None,
    }
}

/// Arithmetic on strings, booleans or tags is a type error (InfluxDB refuses the
/// statement).
fn check_types(e: &Expr, schema: &MeasurementSchema) -> Result<(), String> {
    match e {
        Expr::Binary(b) if !b.op.is_boolean() => {
            check_types(&b.lhs, schema)?;
            check_types(&b.rhs, schema)?;
            let bitwise = matches!(
                b.op,
                crate::influxql::BinaryOp::BitAnd
                    | crate::influxql::BinaryOp::BitOr
                    | crate::influxql::BinaryOp::BitXor
            );
            for side in [&b.lhs, &b.rhs] {
                // Bitwise operators take integers and booleans only, as InfluxDB.
                let kind = var_type(side, schema)
                    .map(|(_, t)| t)
                    .or_else(|| matches!(unparen(side), Expr::Number(_)).then_some("float"));
                if bitwise && kind == Some("float") {
                    return Err(format!(
                        "type error: {e}: incompatible types: a float in a bitwise operation"
                    ));
                }
                if let Some((name, t)) = var_type(side, schema)
                    && (t == "string" || t == "tag" || (t == "boolean" && !bitwise))
                {
                    return Err(format!(
                        "type error: {e}: {name} is a {t}, which arithmetic does not take"
                    ));
                }
            }
            Ok(())
        }
        Expr::Paren(inner) => check_types(inner, schema),
        _ => Ok(()),
    }
}

/// Every call in an expression (not inside another call's arguments).
fn collect_calls<'e>(e: &'e Expr, out: &mut Vec<&'e Call>) {
    match e {
        Expr::Call(c) if is_math(&c.name) => c.args.iter().for_each(|a| collect_calls(a, out)),
        Expr::Call(c) => out.push(c),
        Expr::Binary(b) => {
            collect_calls(&b.lhs, out);
            collect_calls(&b.rhs, out);
        }
        Expr::Paren(inner) => collect_calls(inner, out),
        _ => {}
    }
}

/// Whether this node's own schema is enough to plan `s`: every source is named and known
/// here, and so is every name the statement uses (a field known only to another node would
/// otherwise be taken for a tag), and nothing is expanded (a wildcard or a regex in the
/// projection or `GROUP BY` takes every region's columns).
fn local_schema_suffices(s: &SelectStatement, local: &DbSchema) -> bool {
    let mut known: Vec<&Arc<MeasurementSchema>> = Vec::new();
    for src in &s.sources {
        match &src.name {
            crate::influxql::MeasurementName::Name(n) => match local.get(n.as_str()) {
                Some(schema) => known.push(schema),
                None => return false,
            },
            crate::influxql::MeasurementName::Regex(_) => return false,
        }
    }
    // Each measurement is planned with its own schema (a name it lacks is taken for a tag):
    // every name must be known in every one of them.
    let is_known = |name: &str| name == "time" || known.iter().all(|m| m.contains_key(name));
    let mut names: Vec<&str> = Vec::new();
    let mut expands = false;
    for f in &s.fields {
        walk(&f.expr, &mut |e| match e {
            Expr::VarRef(v) => names.push(&v.name),
            Expr::Wildcard(_) | Expr::Regex(_) => expands = true,
            _ => {}
        });
    }
    if let Some(c) = &s.condition {
        walk(c, &mut |e| {
            if let Expr::VarRef(v) = e {
                names.push(&v.name);
            }
        });
    }
    for d in &s.dimensions {
        match d {
            Dimension::Tag(t) => names.push(t),
            Dimension::Wildcard | Dimension::Regex(_) => expands = true,
            _ => {}
        }
    }
    !expands && names.into_iter().all(is_known)
}

/// Calls `f` on `e` and every expression inside it.
fn walk<'e>(e: &'e Expr, f: &mut impl FnMut(&'e Expr)) {
    f(e);
    match e {
        Expr::Call(c) => c.args.iter().for_each(|a| walk(a, f)),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(inner) => walk(inner, f),
        _ => {}
    }
}

/// Every variable outside calls.
fn collect_vars<'e>(e: &'e Expr, out: &mut Vec<&'e VarRef>) {
    match e {
        Expr::VarRef(v) => out.push(v),
        Expr::Call(c) if is_math(&c.name) => c.args.iter().for_each(|a| collect_vars(a, out)),
        Expr::Binary(b) => {
            collect_vars(&b.lhs, out);
            collect_vars(&b.rhs, out);
        }
        Expr::Paren(inner) => collect_vars(inner, out),
        _ => {}
    }
}

impl<'a> Plan<'a> {
    fn new(
        ctx: &Ctx,
        s: &'a SelectStatement,
        measurement: &str,
        schema: &Arc<MeasurementSchema>,
        (wild, live_tags): (&MeasurementSchema, &[String]),
        rest: Option<&Expr>,
        range: crate::influxql::TimeRange,
    ) -> Result<Option<Plan<'a>>, String> {
        let is_tag = |n: &str| is_tag_of(schema, n);
        let zone = s.timezone.as_deref().map(parse_zone).transpose()?;
        let mut all_tags: Vec<String> = schema
            .iter()
            .filter(|(_, k)| matches!(k, ColumnKind::Tag))
            .map(|(n, _)| n.to_string())
            .collect();
        all_tags.sort_unstable();
        let mut sorted_fields: Vec<&str> = wild
            .iter()
            .filter(|(_, k)| matches!(k, ColumnKind::Field(_)))
            .map(|(n, _)| &**n)
            .collect();
        sorted_fields.sort_unstable();
        let mut sorted_tags: Vec<&str> = wild
            .iter()
            .filter(|(_, k)| matches!(k, ColumnKind::Tag))
            .map(|(n, _)| &**n)
            .collect();
        sorted_tags.sort_unstable();

        // GROUP BY.
        let mut interval = None;
        let mut group_tags: BTreeSet<String> = BTreeSet::new();
        for d in &s.dimensions {
            match d {
                Dimension::Time {
                    interval_ns,
                    offset,
                } => {
                    if interval.is_some() {
                        return Err("multiple time dimensions".into());
                    }
                    let off = bucket_offset(offset.as_ref(), *interval_ns, ctx.now_ns);
                    interval = Some((*interval_ns, off));
                }
                Dimension::Tag(t) => {
                    group_tags.insert(t.clone());
                }
                Dimension::Wildcard => {
                    group_tags.extend(live_tags.iter().cloned());
                }
                Dimension::Regex(r) => {
                    group_tags.extend(live_tags.iter().filter(|t| r.regex().is_match(t)).cloned())
                }
            }
        }
        let group_tags: Vec<String> = group_tags.into_iter().collect();
        // Grouping by a field's name groups by a tag no series has (InfluxDB: `""`).
        let native_group: Vec<String> = group_tags.iter().filter(|t| is_tag(t)).cloned().collect();

        // Projection, wildcards and regexes expanded. Under `GROUP BY *` or `/regex/` they
        // expand to fields only, as InfluxDB does (a tag named outright is still answered).
        let tags_expand = !s
            .dimensions
            .iter()
            .any(|d| matches!(d, Dimension::Wildcard | Dimension::Regex(_)));
        let names = column_names(&s.fields);
        let mut columns: Vec<(String, Expr)> = Vec::new();
        // Whether each column's name is an alias (kept) or derived (made unique below).
        let mut aliased: Vec<bool> = Vec::new();
        for (f, name) in s.fields.iter().zip(names) {
            let var = |n: &str, tag: bool| {
                Expr::VarRef(VarRef {
                    name: n.to_string(),
                    data_type: tag.then_some(DataType::Tag),
                })
            };
            match &f.expr {
                Expr::Wildcard(kind) => {
                    let mut all: Vec<(String, Expr)> = Vec::new();
                    if *kind != Some(WildcardType::Tag) {
                        all.extend(sorted_fields.iter().map(|n| (n.to_string(), var(n, false))));
                    }
                    if *kind != Some(WildcardType::Field) && tags_expand {
                        all.extend(
                            sorted_tags
                                .iter()
                                .filter(|t| !group_tags.iter().any(|g| g == *t))
                                .map(|n| (n.to_string(), var(n, true))),
                        );
                    }
                    all.sort_by(|a, b| a.0.cmp(&b.0));
                    columns.extend(all);
                }
                Expr::Regex(r) => {
                    let mut all: Vec<(String, Expr)> = sorted_fields
                        .iter()
                        .filter(|n| r.regex().is_match(n))
                        .map(|n| (n.to_string(), var(n, false)))
                        .collect();
                    all.extend(
                        sorted_tags
                            .iter()
                            .filter(|t| {
                                tags_expand
                                    && r.regex().is_match(t)
                                    && !group_tags.iter().any(|g| g == *t)
                            })
                            .map(|n| (n.to_string(), var(n, true))),
                    );
                    all.sort_by(|a, b| a.0.cmp(&b.0));
                    columns.extend(all);
                }
                Expr::Call(c)
                    if matches!(c.args.first(), Some(Expr::Wildcard(_) | Expr::Regex(_))) =>
                {
                    if Transform::of(c, None).is_ok_and(|t| t.is_some())
                        || Transform::of(c, Some(1)).is_ok_and(|t| t.is_some())
                    {
                        return Err(format!(
                            "{}() over a wildcard or regex (a column per field) is not supported by Meridian: a transformation must be the only field; name one field",
                            c.name
                        ));
                    }
                    let (func, _) = Func::of(c)?;
                    for fname in &sorted_fields {
                        let ok = match &c.args[0] {
                            Expr::Regex(r) => r.regex().is_match(fname),
                            _ => true,
                        };
                        if !ok || !field_type(wild, fname).is_some_and(|t| func.accepts(t)) {
                            continue;
                        }
                        let mut call = c.clone();
                        call.args[0] = var(fname, false);
                        let prefix = f.alias.clone().unwrap_or_else(|| c.name.clone());
                        columns.push((format!("{prefix}_{fname}"), Expr::Call(call)));
                    }
                }
                Expr::VarRef(v) if v.name == "time" => {}
                other => columns.push((name, other.clone())),
            }
            // A call over a wildcard names its columns (`max_v`), as an alias would.
            let named = f.alias.is_some()
                || matches!(&f.expr, Expr::Call(c)
                    if matches!(c.args.first(), Some(Expr::Wildcard(_) | Expr::Regex(_))));
            aliased.resize(columns.len(), named);
        }
        // Names made unique over the expanded columns (`SELECT *, v`: `v`, `v_1`), as
        // InfluxDB names the columns of the statement it rewrote.
        let expanded: Vec<crate::influxql::Field> = columns
            .iter()
            .zip(&aliased)
            .map(|((n, e), a)| crate::influxql::Field {
                expr: e.clone(),
                alias: a.then(|| n.clone()),
            })
            .collect();
        let unique = column_names(&expanded);
        if unique.len() == columns.len() {
            for ((n, _), u) in columns.iter_mut().zip(unique) {
                *n = u;
            }
        }
        if columns.is_empty() {
            // A wildcard or regex that matches nothing answers nothing (InfluxDB).
            let expands = s.fields.iter().any(|f| match &f.expr {
                Expr::Wildcard(_) | Expr::Regex(_) => true,
                Expr::Call(c) => matches!(c.args.first(), Some(Expr::Wildcard(_) | Expr::Regex(_))),
                _ => false,
            });
            if expands {
                return Ok(None);
            }
            return Err("at least 1 non-time field must be queried".into());
        }
        let mut transform = None;
        if let [(_, Expr::Call(c))] = columns.as_slice()
            && let Some((t, arg)) = Transform::of(c, interval.map(|(d, _)| d))?
        {
            let arg = arg.clone();
            // Only elapsed() reads strings and booleans, as InfluxDB.
            if !matches!(t, Transform::Elapsed(_))
                && let Expr::VarRef(v) = &arg
                && let Some(ft @ (FieldType::String | FieldType::Boolean)) =
                    field_type(schema, &v.name)
            {
                return Err(format!(
                    "unsupported {} iterator type: {} (field {:?})",
                    c.name,
                    ft.name(),
                    v.name
                ));
            }
            transform = Some(t);
            columns[0].1 = arg;
        }
        for (_, e) in &columns {
            check_types(e, schema)?;
            let mut cs = Vec::new();
            collect_calls(e, &mut cs);
            if let Some(c) = cs.iter().find(|c| {
                Transform::of(c, None).is_ok_and(|t| t.is_some())
                    || Transform::of(c, Some(1)).is_ok_and(|t| t.is_some())
            }) {
                return Err(format!(
                    "{}() must be the only field of its SELECT in Meridian",
                    c.name
                ));
            }
        }

        // Calls.
        let mut calls: Vec<CallPlan> = Vec::new();
        let mut outside: Vec<&VarRef> = Vec::new();
        for (_, e) in &columns {
            let mut cs = Vec::new();
            collect_calls(e, &mut cs);
            collect_vars(e, &mut outside);
            for c in cs {
                let (func, arg) = Func::of(c)?;
                let field = match arg {
                    Expr::VarRef(v) => v.name.clone(),
                    other => {
                        return Err(format!(
                            "expected field argument in {}(), got {other}",
                            c.name
                        ));
                    }
                };
                if let Some(t) = field_type(schema, &field)
                    && !func.accepts(t)
                {
                    return Err(format!(
                        "unsupported {} iterator type: {} (field {field:?})",
                        c.name,
                        t.name()
                    ));
                }
                if !calls.iter().any(|p| p.call == *c) {
                    calls.push(CallPlan {
                        call: c.clone(),
                        func,
                        field,
                    });
                }
            }
        }
        // One selector may bring other fields and tags of the point it chooses.
        let aux_columns = !calls.is_empty() && !outside.is_empty();
        if aux_columns && !(calls.len() == 1 && calls[0].func.is_selector()) {
            return Err("mixing aggregate and non-aggregate queries is not supported".into());
        }
        if let Some(c) = calls
            .iter()
            .find(|c| matches!(c.func, Func::Top(_) | Func::Bottom(_)))
            && calls.len() > 1
        {
            return Err(format!(
                "selector function {}() cannot be combined with other functions",
                c.call.name
            ));
        }
        if calls.iter().any(|c| c.func == Func::Distinct) && calls.len() > 1 {
            return Err(
                "aggregate function distinct() cannot be combined with other functions or fields"
                    .into(),
            );
        }
        if calls.is_empty() && interval.is_some() {
            return Err("GROUP BY requires at least one aggregate function".into());
        }

        // Conditions: tag comparisons joined by AND go to the regions.
        let mut preds = Vec::new();
        let mut residual = Vec::new();
        if let Some(r) = rest {
            for c in conjuncts(r) {
                match tag_comparison(c, &is_tag).and_then(|(k, op, lit)| native_pred(k, op, lit)) {
                    Some(p) => preds.push(p),
                    None => residual.push(c.clone()),
                }
            }
        }

        // Fields and tags the points must carry.
        let call_vars: Vec<VarRef> = calls
            .iter()
            .map(|c| VarRef {
                name: c.field.clone(),
                data_type: None,
            })
            .collect();
        let mut vars: Vec<&VarRef> = outside.clone();
        vars.extend(call_vars.iter());
        let mut cond_vars = Vec::new();
        for r in &residual {
            collect_all_vars(r, &mut cond_vars);
        }
        vars.extend(cond_vars.iter());
        let mut fields: Vec<String> = Vec::new();
        let mut tags: Vec<String> = native_group.clone();
        for v in vars {
            // A cast to the other kind (`field::tag`, `tag::field`) names no column: null.
            let tag = match v.data_type {
                Some(DataType::Tag) if !is_tag(&v.name) => continue,
                Some(DataType::Tag) => true,
                Some(_) if is_tag(&v.name) => continue,
                Some(_) => false,
                None => is_tag(&v.name),
            };
            let list = if tag { &mut tags } else { &mut fields };
            if v.name != "time" && schema.contains_key(v.name.as_str()) && !list.contains(&v.name) {
                list.push(v.name.clone());
            }
        }
        tags.sort();
        // How each column is computed, decided once rather than per row.
        let shapes: Vec<Shape> = columns
            .iter()
            .map(|(_, e)| match e {
                // A selector's other columns come from the point it chose.
                Expr::VarRef(_) if aux_columns => Shape::Aux,
                Expr::VarRef(v)
                    if matches!(v.data_type, None | Some(DataType::Tag)) && is_tag(&v.name) =>
                {
                    Shape::Tag
                }
                Expr::VarRef(v)
                    if matches!(v.data_type, None | Some(DataType::Field)) && !is_tag(&v.name) =>
                {
                    fields
                        .iter()
                        .position(|f| *f == v.name)
                        .map_or(Shape::Other, Shape::Field)
                }
                Expr::Call(c) => calls
                    .iter()
                    .position(|p| p.call == *c)
                    .map_or(Shape::Other, Shape::Call),
                other => {
                    let mut cs = Vec::new();
                    collect_calls(other, &mut cs);
                    if cs.is_empty() && aux_columns {
                        Shape::Aux
                    } else {
                        Shape::Other
                    }
                }
            })
            .collect();
        // A transformation of bucketed aggregates reads one bucket more before the range
        // (after it, in descending order), as InfluxDB does, so that the first bucket of the
        // range has one before it: derivative, difference, moving_average and elapsed, not
        // cumulative_sum. That bucket holds the points of the wider range (the range's first
        // bucket too, when the range starts inside it).
        let (mut min, mut max) = (range.min_ns, range.max_ns);
        if let (Some(t), Some((d, _))) = (transform, interval)
            && t.reads_a_bucket_before()
            && min.is_none_or(|a| a <= max.unwrap_or(ctx.now_ns))
        {
            match s.order {
                SortOrder::Asc => min = min.map(|m| m.saturating_sub(d)),
                SortOrder::Desc => max = Some(max.unwrap_or(ctx.now_ns).saturating_add(d)),
            }
        }
        Ok(Some(Plan {
            shapes,
            s,
            measurement: measurement.to_string(),
            schema: schema.clone(),
            columns,
            calls,
            interval,
            transform,
            zone,
            max_rows: ctx.max_rows,
            aux_columns,
            group_tags,
            native_group,
            all_tags,
            preds,
            residual,
            fields,
            tags,
            min,
            max,
            now: ctx.now_ns,
            window: Window::default(),
        }))
    }

    /// Whether the regions can compute every call as partial aggregates.
    fn fast(&self) -> bool {
        !self.calls.is_empty()
            && !self.aux_columns
            && self.residual.is_empty()
            && self.interval.is_none_or(|(_, off)| off == 0)
            && self.zone.is_none()
            && self.calls.iter().all(|c| {
                c.func.native().is_some()
                    // Booleans have no partial min/max: computed from the points.
                    && !(matches!(c.func, Func::Min | Func::Max)
                        && matches!(field_type(&self.schema, &c.field), Some(FieldType::Boolean)))
            })
            && !(self.calls.len() == 1
                && matches!(self.calls[0].func, Func::Min | Func::Max)
                && self.interval.is_none())
    }

    /// Native parameters for the regions.
    fn params(
        &self,
        db: &str,
        fields: &[String],
        agg: Agg,
        tags: &[String],
    ) -> HashMap<String, String> {
        let mut p = HashMap::new();
        p.insert("db".into(), db.to_string());
        p.insert("measurement".into(), self.measurement.clone());
        p.insert("fields".into(), fields.join(","));
        if let Some(min) = self.min {
            p.insert("start".into(), min.to_string());
        }
        let end = self.end_exclusive();
        if end != i64::MAX {
            p.insert("end".into(), end.to_string());
        }
        p.insert("agg".into(), agg.name().into());
        if agg != Agg::None
            && let Some((d, _)) = self.interval
        {
            p.insert("every".into(), format!("{d}ns"));
        }
        if !tags.is_empty() {
            p.insert("group_by".into(), tags.join(","));
        }
        if !self.preds.is_empty() {
            let w: Vec<String> = self.preds.iter().map(native_where).collect();
            p.insert("where".into(), w.join(","));
        }
        p.insert("epoch".into(), "ns".into());
        p
    }

    /// The exclusive end of the range: the condition's, else `now()` for GROUP BY time.
    fn end_exclusive(&self) -> i64 {
        match (self.max, self.interval) {
            (Some(m), _) => m.saturating_add(1),
            (None, Some(_)) => self.now.saturating_add(1),
            (None, None) => i64::MAX,
        }
    }

    /// Asks the regions. `fields` and `tags` are the names `params` lists: the spec takes
    /// them, and the tag predicates, as they are (the text form splits names on `,` and
    /// `=` and trims spaces); such names cannot be sent to another node.
    async fn fetch(
        &self,
        ctx: &Ctx,
        params: HashMap<String, String>,
        (fields, tags): (&[String], &[String]),
        budget: &Arc<QueryBudget>,
    ) -> Result<(Arc<QuerySpec>, Vec<Partial>), String> {
        let plain = |n: &str| n == n.trim() && !n.contains([',', '=', '!', '~', '\\']);
        let odd = fields
            .iter()
            .chain(tags)
            .chain(self.preds.iter().map(|p| &p.key))
            .find(|n| !plain(n));
        if let Some(n) = odd
            && ctx.engine.regions().iter().any(|r| !r.hosted())
        {
            return Err(format!(
                "the name {n:?} holds a separator (',', '=', '!', '~', '\\' or surrounding spaces) and cannot be queried across nodes yet"
            ));
        }
        // The names are set from the lists, not read back from their text form (which a
        // name holding `,` or surrounding spaces would break).
        let mut text = params.clone();
        for k in ["fields", "group_by", "where"] {
            text.remove(k);
        }
        let mut spec = QuerySpec::from_params(&text)?;
        spec.fields = Some(fields.to_vec());
        spec.group_by = tags.to_vec();
        spec.preds = self.preds.clone();
        spec.deadline = Some(ctx.started + ctx.timeout);
        spec.budget = Some(budget.clone());
        let spec = Arc::new(spec);
        let g = gather(
            &ctx.engine,
            spec.clone(),
            Arc::new(params),
            &ctx.remote,
            ctx.timeout,
            ctx.max_rows,
        )
        .await;
        match g.refused {
            Some(Refusal::TooLarge(m) | Refusal::Busy(m) | Refusal::Forbidden(m)) => {
                return Err(m);
            }
            None => {}
        }
        if g.partial {
            let why: Vec<String> = g
                .regions
                .iter()
                .filter_map(|(n, r)| r.error.as_ref().map(|e| format!("region {n}: {e}")))
                .collect();
            return Err(format!(
                "not every region answered ({}); no partial answer is given",
                why.join("; ")
            ));
        }
        Ok((spec, g.partials))
    }

    /// The series answered, and per call whether it has a value ([`select_window`]).
    async fn run(
        &self,
        ctx: &Ctx,
        db: &str,
        budget: &Arc<QueryBudget>,
    ) -> Result<(Vec<ResultSeries>, Facts), String> {
        if self.min.zip(self.max).is_some_and(|(a, b)| a > b) {
            return Ok(Default::default());
        }
        if self.fields.is_empty() {
            // Only unknown fields: InfluxDB answers nothing.
            return Ok(Default::default());
        }
        if self.calls.is_empty() {
            let points = match self.s.limit {
                Some(limit) if self.transform.is_none() => {
                    let need = (limit + self.s.offset.unwrap_or(0)) as usize;
                    self.points_limited(ctx, db, budget, need).await?
                }
                _ => self.points(ctx, db, budget, None).await?,
            };
            return Ok((self.raw_series(points), Facts::default()));
        }
        let (mut groups, aux) = if self.fast() {
            (self.native_groups(ctx, db, budget).await?, Aux::default())
        } else if let Some(windows) = self.point_windows(ctx, db).await {
            // A window's points and working copies are charged to a budget of their own,
            // let go before the next window is read; the buckets' results are kept, and
            // charged to the statement's.
            let mut groups = Groups::new();
            let mut aux = Aux::default();
            // Results charged so far: without `time()` a window's choice replaces the one
            // held, so only the growth is charged.
            let mut charged = 0u64;
            for w in windows {
                let window_budget = Arc::new(ctx.query_memory.budget());
                let points = self.points(ctx, db, &window_budget, Some(w)).await?;
                let (g, mut a) = self.local_groups(points, &window_budget)?;
                drop(window_budget);
                if self.interval.is_some() {
                    budget.charge(results_bytes(&g, &a))?;
                }
                self.merge_window((&mut groups, &mut aux), (g, &mut a));
                if self.interval.is_none() {
                    let held = results_bytes(&groups, &aux);
                    budget.charge(held.saturating_sub(charged))?;
                    charged = charged.max(held);
                }
            }
            (groups, aux)
        } else {
            let points = self.points(ctx, db, budget, None).await?;
            let (groups, aux) = self.local_groups(points, budget)?;
            // The results (top and bottom: a row of other columns per chosen point) are
            // held while the answer is made.
            budget.charge(results_bytes(&groups, &aux))?;
            (groups, aux)
        };
        if self.window.answer_empty && self.group_tags.is_empty() && self.interval.is_some() {
            groups.entry(GroupKey::new()).or_default();
        }
        self.aggregate_series(groups, &aux)
    }

    /// `GROUP BY time()` (or `min()`/`max()` of the whole range) computed here from the
    /// points: the windows of whole buckets (inclusive bounds, within the statement's
    /// range) to read one after another, when the points of the whole range could pass the
    /// query's memory budget and the data lies in two or more windows. Every function here is given one bucket's points
    /// ([`apply`]), so the buckets of all windows together are those of the whole range:
    /// fills, grouping tags, `LIMIT` and transformations apply to them as they would.
    /// `None` with `tz()` (buckets of a zone are not all one width), or when a region is
    /// another node's (its partitions are not known here). The snapshot `spans` takes
    /// freezes the blocks' rows, as the read that follows would.
    async fn point_windows(&self, ctx: &Ctx, db: &str) -> Option<Vec<(i64, i64)>> {
        /// What a point costs held (its time, tags, key and row), besides its values.
        const POINT_BYTES: u64 = 64;
        let (every, offset) = match self.interval {
            Some(interval) => interval,
            // min() or max() of the whole range: the choice among the windows' choices.
            None if self.reducible() => (1, 0),
            None => return None,
        };
        let engine = &ctx.engine;
        // integral()'s area crosses bucket edges, so windows apart would lose it.
        let integral = self
            .calls
            .iter()
            .any(|c| matches!(c.func, Func::Integral(_)));
        if integral || self.zone.is_some() || !engine.regions().iter().all(|r| r.hosted()) {
            return None;
        }
        let (start, end) = (self.min.unwrap_or(i64::MIN), self.end_exclusive());
        let spans = crate::query::windows::spans(engine, db, &self.measurement, (start, end))
            .await
            .ok()?;
        let per_point = POINT_BYTES + (self.fields.len() * std::mem::size_of::<Value>()) as u64;
        if spans.rows.saturating_mul(per_point) <= ctx.query_memory.per_query() / 2 {
            return None;
        }
        let windows: Vec<(i64, i64)> =
            crate::query::windows::aligned(&spans.windows, every, offset)
                .into_iter()
                .map(|(lo, hi)| (lo.max(start), hi.min(end).saturating_sub(1)))
                .filter(|(lo, hi)| lo <= hi)
                .collect();
        (windows.len() >= 2).then_some(windows)
    }

    /// Whether the statement's one function is `min()` or `max()`: without `time()` it
    /// can be computed a window at a time, each window choosing a point, then one of them
    /// ([`Plan::merge_window`]).
    fn reducible(&self) -> bool {
        matches!(self.calls.as_slice(), [c] if matches!(c.func, Func::Min | Func::Max))
    }

    /// One window's buckets (`g`, with their other columns `a`) put with those of the
    /// windows before. With `time()` a window's buckets are its own; without it every
    /// window answers the one bucket, and a later window's choice replaces the held one
    /// only if [`funcs::replaces`] says so (the windows come in time order: the earliest
    /// point holding the value stays).
    fn merge_window(&self, (groups, aux): (&mut Groups, &mut Aux), (g, a): (Groups, &mut Aux)) {
        let f = self.calls.first().map(|c| c.func);
        let chosen = |new: &[Out], held: &[Out]| match (f, new.first(), held.first()) {
            _ if self.interval.is_some() => true,
            (_, Some(Out::One(..)), None | Some(Out::Empty)) => true,
            (Some(f), Some(Out::One(n, _)), Some(Out::One(h, _))) => {
                super::funcs::replaces(f, n, h)
            }
            _ => false,
        };
        for (key, buckets) in g {
            let into = groups.entry(key.clone()).or_default();
            for (bucket, outs) in buckets {
                if into.get(&bucket).is_none_or(|held| chosen(&outs, held)) {
                    let at = (key.clone(), bucket);
                    if let Some(row) = a.remove(&at) {
                        aux.insert(at, row);
                    }
                    into.insert(bucket, outs);
                }
            }
        }
    }

    /// The points matching the condition: (group key, time, tags, field values aligned with
    /// `self.fields`), in time order within each series.
    async fn points(
        &self,
        ctx: &Ctx,
        db: &str,
        budget: &Arc<QueryBudget>,
        window: Option<(i64, i64)>,
    ) -> Result<Vec<Owned>, String> {
        let mut params = self.params(db, &self.fields, Agg::None, &self.tags);
        if let Some((lo, hi)) = window {
            params.insert("start".into(), lo.to_string());
            params.insert("end".into(), hi.saturating_add(1).to_string());
        }
        let (spec, partials) = self
            .fetch(ctx, params, (&self.fields, &self.tags), budget)
            .await?;
        let (columns, series, _) = crate::query::merge(&spec, partials);
        let pos: Vec<Option<usize>> = self
            .fields
            .iter()
            .map(|f| columns.iter().position(|c| c == f))
            .collect();
        let identity = columns.len() == self.fields.len()
            && pos.iter().enumerate().all(|(i, p)| *p == Some(i));
        let mut out = Vec::new();
        for s in series {
            let tags: Arc<BTreeMap<String, String>> =
                Arc::new(s.tags.into_iter().filter(|(_, v)| !v.is_empty()).collect());
            let key: GroupKey = self
                .group_tags
                .iter()
                .map(|t| tags.get(t).cloned().unwrap_or_default())
                .collect();
            out.reserve(s.rows.len());
            for (t, mut vals) in s.rows {
                // The merged row is this statement's fields in order (the usual case): kept
                // as it is; otherwise its values are moved into place (no copy).
                let values: Vec<Value> = if identity {
                    vals
                } else {
                    pos.iter()
                        .map(|p| {
                            p.and_then(|i| vals.get_mut(i))
                                .map_or(Value::Null, std::mem::take)
                        })
                        .collect()
                };
                let keep = {
                    let view = Point {
                        projecting: false,
                        tags: &tags,
                        fields: &self.fields,
                        values: &values,
                        schema: &self.schema,
                    };
                    self.residual.iter().all(|r| truthy(eval(r, &view)))
                };
                if keep {
                    out.push(Owned {
                        key: key.clone(),
                        time: t,
                        tags: tags.clone(),
                        values,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Raw points for `LIMIT n` (after `OFFSET`) per series in time order, without reading
    /// the whole range: the regions first give each series' newest (`ORDER BY time DESC`)
    /// or oldest point time, as partial `last`/`first` aggregates (which read partitions
    /// from that end only); then only the window between the groups' edges is read, widened
    /// towards the range's other end until every group has `need` rows. "The last point of
    /// every host" reads the newest partition, whatever the field list.
    async fn points_limited(
        &self,
        ctx: &Ctx,
        db: &str,
        budget: &Arc<QueryBudget>,
        need: usize,
    ) -> Result<Vec<Owned>, String> {
        let desc = self.s.order == SortOrder::Desc;
        let agg = if desc { Agg::Last } else { Agg::First };
        // When every group is one series (the series catalog tells), the regions group as
        // the statement does; otherwise per series, so that a row is one series' point.
        let single = self.single_series_groups(ctx, db);
        let by: &[String] = if single.is_some() {
            &self.native_group
        } else {
            &self.all_tags
        };
        let params = self.params(db, &self.fields, agg, by);
        let (_, partials) = self.fetch(ctx, params, (&self.fields, by), budget).await?;
        let key_map: Vec<Option<usize>> = self
            .group_tags
            .iter()
            .map(|g| by.iter().position(|t| t == g))
            .collect();
        let mut edges: FxHashMap<GroupKey, i64> = FxHashMap::default();
        // Per series (all its tags): its newest (oldest) time, and each field's value there.
        let mut per_series: Vec<(GroupKey, Vec<String>, i64, Vec<Value>)> = Vec::new();
        for p in partials {
            let Partial::Agg(a) = p else { continue };
            let pos: Vec<Option<usize>> = self
                .fields
                .iter()
                .map(|f| a.fields.iter().position(|g| g == f))
                .collect();
            for (series, buckets) in a.groups {
                let key: GroupKey = key_map
                    .iter()
                    .map(|p| p.and_then(|i| series.get(i).cloned()).unwrap_or_default())
                    .collect();
                for accs in buckets.values() {
                    let stamps: Vec<Option<&crate::query::agg::Stamped>> = pos
                        .iter()
                        .map(|p| {
                            p.and_then(|i| accs.get(i)).and_then(|acc| {
                                if desc {
                                    acc.last.as_ref()
                                } else {
                                    acc.first.as_ref()
                                }
                            })
                        })
                        .collect();
                    let edge = stamps.iter().flatten().map(|s| s.time);
                    let Some(t) = (if desc { edge.max() } else { edge.min() }) else {
                        continue;
                    };
                    let e = edges.entry(key.clone()).or_insert(t);
                    *e = if desc { (*e).max(t) } else { (*e).min(t) };
                    let values = stamps
                        .iter()
                        .map(|s| match s {
                            Some(s) if s.time == t => s.value.clone(),
                            _ => Value::Null,
                        })
                        .collect();
                    per_series.push((key.clone(), series.clone(), t, values));
                }
            }
        }
        // LIMIT 1 with nothing to check per point: each group's first row is its series'
        // edge point, whose fields the aggregates just gave (a field whose last value is
        // older is null there); among series of a group at the same time, the first in tag
        // order, as a read of the rows would answer.
        if need == 1 && self.residual.is_empty() {
            if single.is_none() {
                per_series.sort_by(|a, b| a.1.cmp(&b.1));
            }
            let mut out: Vec<Owned> = Vec::with_capacity(edges.len());
            let mut done: rustc_hash::FxHashSet<GroupKey> = Default::default();
            for (key, series, t, values) in per_series {
                if edges.get(&key) != Some(&t) || !done.insert(key.clone()) {
                    continue;
                }
                let tags: BTreeMap<String, String> = match &single {
                    Some(tags_of) => tags_of.get(&key).cloned().unwrap_or_default(),
                    None => self
                        .all_tags
                        .iter()
                        .cloned()
                        .zip(series)
                        .filter(|(_, v)| !v.is_empty())
                        .collect(),
                };
                out.push(Owned {
                    key,
                    time: t,
                    tags: Arc::new(tags),
                    values,
                });
            }
            return Ok(out);
        }
        let (Some(lo), Some(hi)) = (edges.values().min().copied(), edges.values().max().copied())
        else {
            return Ok(Vec::new());
        };
        let (outer_lo, outer_hi) = (
            self.min.unwrap_or(i64::MIN),
            self.end_exclusive().saturating_sub(1),
        );
        let (mut lo, mut hi) = (lo, hi);
        let named = self.named_fields();
        loop {
            let points = self.points(ctx, db, budget, Some((lo, hi))).await?;
            let mut count: FxHashMap<&GroupKey, usize> = FxHashMap::default();
            for p in &points {
                let view = p.view(&self.fields, &self.schema);
                if named.iter().any(|e| eval(e, &view).is_some()) {
                    *count.entry(&p.key).or_default() += 1;
                }
            }
            let enough = edges
                .keys()
                .all(|g| count.get(g).copied().unwrap_or(0) >= need);
            let at_end = if desc { lo <= outer_lo } else { hi >= outer_hi };
            if enough || at_end {
                return Ok(points);
            }
            let span = (hi as i128 - lo as i128).max(1_000_000_000) * 2;
            if desc {
                lo = (lo as i128 - span).max(outer_lo as i128) as i64;
            } else {
                hi = (hi as i128 + span).min(outer_hi as i128) as i64;
            }
        }
    }

    /// If every group of the statement holds one series (of those the tag predicates
    /// select), each group's tags; from the series catalog, `None` when it is not loaded.
    fn single_series_groups(
        &self,
        ctx: &Ctx,
        db: &str,
    ) -> Option<FxHashMap<GroupKey, BTreeMap<String, String>>> {
        if !ctx.engine.series().is_loaded() {
            return None;
        }
        let entry = ctx.engine.series().get(db, &self.measurement)?;
        let ms = entry.read();
        let mut sids = ms.all();
        for p in &self.preds {
            let m = match &p.op {
                TagOp::Eq(v) => ms.with_value(&p.key, v),
                TagOp::Ne(v) => {
                    let mut all = ms.all();
                    all -= ms.with_value(&p.key, v);
                    all
                }
                TagOp::Re(r) => ms.matching(&p.key, |v| r.is_match(v)),
                TagOp::NotRe(r) => ms.matching(&p.key, |v| !r.is_match(v)),
            };
            sids &= m;
        }
        // Tags are read only if the projection shows some.
        let shown = self.columns.iter().any(|(_, e)| {
            let mut vs = Vec::new();
            collect_vars(e, &mut vs);
            vs.iter().any(|v| match v.data_type {
                Some(DataType::Tag) => true,
                Some(_) => false,
                None => is_tag_of(&self.schema, &v.name),
            })
        });
        let mut out: FxHashMap<GroupKey, BTreeMap<String, String>> = FxHashMap::default();
        for sid in sids.iter() {
            let key: GroupKey = self
                .group_tags
                .iter()
                .map(|g| ms.tag_value(sid, g).unwrap_or("").to_string())
                .collect();
            let map = if shown {
                ms.tags(sid)
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            } else {
                BTreeMap::new()
            };
            if out.insert(key, map).is_some() {
                return None;
            }
        }
        Some(out)
    }

    /// The fields the projection names (with their casts): a raw row is answered when one
    /// of them has a value there.
    fn named_fields(&self) -> Vec<Expr> {
        let mut named: Vec<Expr> = Vec::new();
        for (_, e) in &self.columns {
            let mut vs = Vec::new();
            collect_vars(e, &mut vs);
            for v in vs {
                let field = match v.data_type {
                    Some(DataType::Tag) => false,
                    Some(_) => true,
                    None => !is_tag_of(&self.schema, &v.name),
                };
                let e = Expr::VarRef(v.clone());
                if field && !named.contains(&e) {
                    named.push(e);
                }
            }
        }
        named
    }

    fn raw_series(&self, points: Vec<Owned>) -> Vec<ResultSeries> {
        let mut groups: BTreeMap<GroupKey, Vec<(i64, Vec<Cell>)>> = BTreeMap::new();
        // A row stays when any field the projection names has a value there (through its
        // cast): InfluxDB keeps `a + b` as null where only `b` exists, and drops points
        // with none of them.
        let named = self.named_fields();
        // Named fields without a cast are read directly.
        let named_at: Option<Vec<usize>> = named
            .iter()
            .map(|e| match e {
                Expr::VarRef(v) if v.data_type.is_none() => {
                    self.fields.iter().position(|f| *f == v.name)
                }
                _ => None,
            })
            .collect();
        // The names of the tag columns, in projection order.
        let tag_names: Vec<&str> = self
            .columns
            .iter()
            .zip(&self.shapes)
            .filter_map(|((_, e), shape)| match (shape, e) {
                (Shape::Tag, Expr::VarRef(v)) => Some(v.name.as_str()),
                _ => None,
            })
            .collect();
        // Fields named once each, beside tags only: their values are moved into the cells.
        let mut seen = BTreeSet::new();
        let movable = self.shapes.iter().all(|s| match s {
            Shape::Field(i) => seen.insert(*i),
            Shape::Tag => true,
            _ => false,
        });
        // Points come a series at a time: the rows of the current run of one group are
        // gathered here and handed to `groups` when the group changes (one map lookup a
        // run, not a point), and the tag cells of the last series are kept at hand.
        type Rows = Vec<(i64, Vec<Cell>)>;
        fn put(groups: &mut BTreeMap<GroupKey, Rows>, key: GroupKey, rows: Rows) {
            let slot = groups.entry(key).or_default();
            if slot.is_empty() {
                *slot = rows;
            } else {
                slot.extend(rows);
            }
        }
        let mut run: Option<(GroupKey, Rows)> = None;
        // The tag cells of the current series (points of a series share their tag map).
        type TagCells = (Arc<BTreeMap<String, String>>, Vec<Cell>);
        let mut last: Option<TagCells> = None;
        let points_total = points.len();
        for mut p in points {
            let view = p.view(&self.fields, &self.schema);
            let present = match &named_at {
                Some(at) => at
                    .iter()
                    .any(|i| p.values.get(*i).is_some_and(|v| *v != Value::Null)),
                None => named.iter().any(|e| eval(e, &view).is_some()),
            };
            if !present {
                continue;
            }
            if last
                .as_ref()
                .is_none_or(|(at, _)| !Arc::ptr_eq(at, &p.tags))
            {
                let cells = tag_names
                    .iter()
                    .map(|n| {
                        p.tags
                            .get(*n)
                            .map_or(Cell::Null, |v| Cell::Str(v.as_str().into()))
                    })
                    .collect();
                last = Some((p.tags.clone(), cells));
            }
            let tags = last.as_ref().map_or(&[][..], |(_, c)| c.as_slice());
            // The time first: the row is complete as built (no shift of its cells later).
            let mut cells: Vec<Cell> = Vec::with_capacity(self.columns.len() + 1);
            cells.push(Cell::Time(p.time));
            let mut tags = tags.iter();
            if movable {
                for shape in &self.shapes {
                    cells.push(match shape {
                        Shape::Field(i) => cell(p.values.get_mut(*i).map(std::mem::take)),
                        _ => tags.next().cloned().unwrap_or(Cell::Null),
                    });
                }
            } else {
                let view = p.view(&self.fields, &self.schema);
                for ((_, e), shape) in self.columns.iter().zip(&self.shapes) {
                    cells.push(match shape {
                        Shape::Field(i) => cell(p.values.get(*i).cloned()),
                        Shape::Tag => tags.next().cloned().unwrap_or(Cell::Null),
                        _ => cell(eval(e, &view)),
                    });
                }
            }
            match &mut run {
                Some((key, rows)) if *key == p.key => rows.push((p.time, cells)),
                _ => {
                    if let Some((key, rows)) = run.take() {
                        put(&mut groups, key, rows);
                    }
                    // One group (no GROUP BY tag): room for every point at once.
                    let mut rows = if self.group_tags.is_empty() {
                        Vec::with_capacity(points_total)
                    } else {
                        Vec::new()
                    };
                    rows.push((p.time, cells));
                    run = Some((std::mem::take(&mut p.key), rows));
                }
            }
        }
        if let Some((key, rows)) = run {
            put(&mut groups, key, rows);
        }
        let mut out = Vec::new();
        for (key, mut rows) in groups {
            rows.sort_by_key(|r| r.0);
            if let Some(series) = self.finish(&key, rows, true) {
                out.push(series);
            }
        }
        out
    }

    /// A series from its rows in time order: the transformation, `ORDER BY time DESC`,
    /// `OFFSET`/`LIMIT`; `None` when no row is left. `timed`: the cells start with the time.
    fn finish(
        &self,
        key: &GroupKey,
        rows: Vec<(i64, Vec<Cell>)>,
        timed: bool,
    ) -> Option<ResultSeries> {
        let desc = self.s.order == SortOrder::Desc;
        let (rows, timed) = match self.transform {
            // Newest bucket first; the rows of one bucket of top, bottom or distinct stay
            // in their order, as InfluxDB answers them.
            None if desc => {
                let order = self.answer_order(&rows, |r| r.0);
                let mut slots: Vec<Option<(i64, Vec<Cell>)>> = rows.into_iter().map(Some).collect();
                (
                    order.into_iter().filter_map(|i| slots[i].take()).collect(),
                    timed,
                )
            }
            None => (rows, timed),
            // In the statement's order, as InfluxDB computes it (newest first: a
            // cumulative sum from the newest point, negative elapsed times).
            Some(t) => {
                let skip = usize::from(timed);
                let mut input: Vec<(i64, Option<Value>)> = rows
                    .into_iter()
                    .map(|(time, cells)| {
                        (time, cells.into_iter().nth(skip).and_then(value_of_cell))
                    })
                    .collect();
                if desc {
                    input.reverse();
                }
                let out = t
                    .apply(&input, !desc)
                    .into_iter()
                    .map(|(time, v)| (time, vec![cell(Some(v))]))
                    .collect();
                (out, false)
            }
        };
        let rows = self.page(rows);
        if rows.is_empty() {
            return None;
        }
        Some(
            self.series_of(
                key,
                rows.into_iter()
                    .map(|(t, mut cells)| {
                        if timed {
                            // The time moved by the transformation or a selector stays.
                            cells[0] = Cell::Time(t);
                        } else {
                            cells.insert(0, Cell::Time(t));
                        }
                        cells
                    })
                    .collect(),
            ),
        )
    }

    fn page<T>(&self, rows: Vec<T>) -> Vec<T> {
        rows.into_iter()
            .skip(self.s.offset.unwrap_or(0) as usize)
            .take(self.s.limit.map_or(usize::MAX, |l| l as usize))
            .collect()
    }

    fn series_of(&self, key: &GroupKey, values: Vec<Vec<Cell>>) -> ResultSeries {
        let mut columns = vec!["time".to_string()];
        columns.extend(self.columns.iter().map(|(n, _)| n.clone()));
        ResultSeries {
            zone: self.zone,
            name: self.measurement.clone(),
            tags: (!self.group_tags.is_empty()).then(|| {
                self.group_tags
                    .iter()
                    .cloned()
                    .zip(key.iter().cloned())
                    .collect()
            }),
            columns,
            values,
        }
    }

    /// The bucket of a time.
    fn bucket(&self, t: i64) -> i64 {
        match self.interval {
            Some((d, off)) => window_start(t, d, off, self.zone),
            None => self.min.unwrap_or(0),
        }
    }

    /// Functions computed here from points.
    fn local_groups(
        &self,
        points: Vec<Owned>,
        budget: &QueryBudget,
    ) -> Result<(Groups, Aux), String> {
        let field_pos: Vec<Option<usize>> = self
            .calls
            .iter()
            .map(|c| self.fields.iter().position(|f| *f == c.field))
            .collect();
        // The candidates below copy every value a call reads, on top of the points (which
        // the fetch charged): charged to the query's memory budget before they are made.
        let entry = std::mem::size_of::<(i64, Value, usize)>() as u64;
        let mut copies = 0u64;
        for p in &points {
            for pos in field_pos.iter().flatten() {
                match p.values.get(*pos) {
                    Some(Value::Null) | None => {}
                    Some(Value::Str(s)) => copies += 2 * (entry + s.len() as u64),
                    Some(_) => copies += 2 * entry,
                }
            }
        }
        budget.charge(copies)?;
        // Per group and bucket, per call, the points' (time, value, index in `points`).
        type Cands = Vec<Vec<(i64, Value, usize)>>;
        let mut acc: BTreeMap<GroupKey, BTreeMap<i64, Cands>> = BTreeMap::new();
        let n = self.calls.len();
        for (idx, p) in points.iter().enumerate() {
            let slot = acc
                .entry(p.key.clone())
                .or_default()
                .entry(self.bucket(p.time))
                .or_insert_with(|| vec![Vec::new(); n]);
            for (i, pos) in field_pos.iter().enumerate() {
                if let Some(v) = pos.and_then(|j| p.values.get(j))
                    && *v != Value::Null
                {
                    slot[i].push((p.time, v.clone(), idx));
                }
            }
        }
        let mut aux: Aux = FxHashMap::default();
        let mut groups: Groups = BTreeMap::new();
        for (k, buckets) in acc {
            let mut b = BTreeMap::new();
            // integral() over buckets: each call's points of every bucket, in time order
            // (its area crosses bucket edges).
            let mut integrals: Vec<Vec<(i64, Vec<Stamped>)>> = vec![Vec::new(); n];
            for (t, mut per_call) in buckets {
                let mut outs = Vec::with_capacity(n);
                for (i, (c, cands)) in self.calls.iter().zip(per_call.iter_mut()).enumerate() {
                    cands.sort_by_key(|p| p.0);
                    let pts: Vec<Stamped> = cands.iter().map(|(t, v, _)| (*t, v.clone())).collect();
                    if let (Func::Integral(_), Some(_)) = (c.func, self.interval) {
                        integrals[i].push((t, pts));
                        outs.push(Out::Empty);
                        continue;
                    }
                    let mut out = apply(c.func, &pts);
                    // Newest first, InfluxDB lists a bucket's distinct values by their
                    // latest point: first seen going backwards, in reverse.
                    if c.func == Func::Distinct
                        && self.s.order == SortOrder::Desc
                        && let Out::Many(latest_first) =
                            apply(c.func, &pts.iter().rev().cloned().collect::<Vec<_>>())
                    {
                        out = Out::Many(latest_first.into_iter().rev().collect());
                    }
                    // A selector with other fields or tags: those of the chosen point (of
                    // each chosen point, for top and bottom).
                    if self.aux_columns {
                        let chosen: Vec<(i64, &Value)> = match &out {
                            Out::One(v, Some(pt)) => vec![(*pt, v)],
                            Out::Points(ps) => ps.iter().map(|(pt, v)| (*pt, v)).collect(),
                            _ => Vec::new(),
                        };
                        // The candidates by time and value (a chosen value is a copy of
                        // its candidate's), earliest first: one pass, however many points
                        // top or bottom choose.
                        let mut by_key: FxHashMap<(i64, ValueKey<'_>), Vec<usize>> =
                            FxHashMap::default();
                        for (j, (ct, cv, _)) in cands.iter().enumerate().rev() {
                            by_key.entry((*ct, exact_key(cv))).or_default().push(j);
                        }
                        let mut rows = Vec::with_capacity(chosen.len());
                        for (pt, v) in chosen {
                            let found = by_key.get_mut(&(pt, exact_key(v))).and_then(Vec::pop);
                            let row = match found {
                                Some(j) => {
                                    let view = points[cands[j].2].view(&self.fields, &self.schema);
                                    self.aux_row(&view)
                                }
                                None => vec![None; self.columns.len()],
                            };
                            rows.push(row);
                        }
                        if !rows.is_empty() {
                            aux.insert((k.clone(), t), rows);
                        }
                    }
                    outs.push(out);
                }
                b.insert(t, outs);
            }
            for (i, per_bucket) in integrals.iter().enumerate() {
                if let Func::Integral(unit) = self.calls[i].func {
                    // InfluxDB's reducer is chosen by the field's type (a field stored with
                    // several types is read as floats).
                    let integer = matches!(
                        field_type(&self.schema, &self.calls[i].field),
                        Some(FieldType::Integer | FieldType::UInteger)
                    );
                    for (t, area) in self.bucketed_integral(per_bucket, (unit, integer)) {
                        if let Some(outs) = b.get_mut(&t) {
                            outs[i] = Out::One(Value::Float(area), None);
                        }
                    }
                }
            }
            groups.insert(k, b);
        }
        Ok((groups, aux))
    }

    /// integral() per `GROUP BY time` bucket, as InfluxDB 1.6's reducers compute it:
    /// trapezoids between consecutive points (of every series of the group, in time order; a
    /// point at the time of the one before replaces it), the one across a bucket's end cut
    /// there at the value interpolated between its points, and the area from that end to the
    /// next point counted in that point's bucket (over empty buckets too): for floats the
    /// trapezoid from the interpolated value to the point's, for integers from the
    /// interpolated value to the previous point's (so InfluxDB computes them). A bucket whose
    /// only points are at its start is the last one, and answers nothing, as do empty
    /// buckets. Areas are in `unit` nanoseconds.
    fn bucketed_integral(
        &self,
        per_bucket: &[(i64, Vec<Stamped>)],
        (unit, integer): (i64, bool),
    ) -> Vec<(i64, f64)> {
        if self.interval.is_none() {
            return Vec::new();
        }
        let unit = unit.max(1) as f64;
        let window = |t: i64| {
            let start = self.bucket(t);
            (start, self.next_bucket(start))
        };
        // Times may be as far apart as the whole i64 range.
        let span = |a: i64, b: i64| (i128::from(a) - i128::from(b)) as f64;
        let mut out = Vec::new();
        let mut prev: Option<(i64, f64)> = None;
        let (mut start, mut end, mut sum) = (0i64, 0i64, 0.0f64);
        for (t, v) in per_bucket.iter().flat_map(|(_, pts)| pts) {
            let Some(x) = super::funcs::as_f64(v) else {
                continue;
            };
            let Some((mut pt, mut pv)) = prev else {
                prev = Some((*t, x));
                (start, end) = window(*t);
                continue;
            };
            if *t == pt {
                prev = Some((*t, x));
                continue;
            }
            let mut value = x;
            if *t >= end {
                if pt != end {
                    value = pv + (x - pv) * span(end, pt) / span(*t, pt);
                    sum += 0.5 * (value + pv) * span(end, pt) / unit;
                    if !integer {
                        pv = value;
                    }
                    pt = end;
                }
                out.push((start, sum));
                (start, end) = window(*t);
                sum = 0.0;
                if !integer {
                    value = x;
                }
            }
            sum += 0.5 * (value + pv) * span(*t, pt) / unit;
            prev = Some((*t, x));
        }
        if prev.is_some_and(|(pt, _)| pt != start) {
            out.push((start, sum));
        }
        out
    }

    /// The order in which rows given oldest first (`time` of each) are answered: as they
    /// are, or newest first, where the rows of one bucket of top, bottom or distinct keep
    /// their own order, as InfluxDB answers them.
    fn answer_order<R>(&self, rows: &[R], time: impl Fn(&R) -> i64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        if self.s.order != SortOrder::Desc {
            return order;
        }
        if !self.rows_per_bucket() {
            order.reverse();
            return order;
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in order {
            let bucket = self.bucket(time(&rows[i]));
            match groups.last_mut() {
                Some(g) if self.bucket(time(&rows[g[0]])) == bucket => g.push(i),
                _ => groups.push(vec![i]),
            }
        }
        groups.into_iter().rev().flatten().collect()
    }

    /// The start of the bucket after the one starting at `start` (a zone's day across a
    /// daylight-saving change is 23 or 25 hours long).
    fn next_bucket(&self, start: i64) -> i64 {
        let Some((d, _)) = self.interval else {
            return i64::MAX;
        };
        let mut probe = start.saturating_add(d);
        for _ in 0..4 {
            let next = self.bucket(probe);
            if next > start {
                return next;
            }
            probe = probe.saturating_add(3_600_000_000_000);
        }
        start.saturating_add(d)
    }

    /// Functions computed by the regions as partial aggregates, one native query per
    /// function.
    async fn native_groups(
        &self,
        ctx: &Ctx,
        db: &str,
        budget: &Arc<QueryBudget>,
    ) -> Result<Groups, String> {
        let mut groups: Groups = BTreeMap::new();
        let n = self.calls.len();
        let mut aggs: Vec<Agg> = Vec::new();
        for c in &self.calls {
            if let Some(a) = c.func.native()
                && !aggs.contains(&a)
            {
                aggs.push(a);
            }
        }
        for agg in aggs {
            let mut fields: Vec<String> = Vec::new();
            for c in self.calls.iter().filter(|c| c.func.native() == Some(agg)) {
                if !fields.contains(&c.field) && self.schema.contains_key(c.field.as_str()) {
                    fields.push(c.field.clone());
                }
            }
            if fields.is_empty() {
                continue;
            }
            // first/last break ties of one time across series as InfluxDB does (greater
            // value: `Stamped::beats`), so the regions group as the statement does.
            let by: &[String] = &self.native_group;
            let key_map: Vec<Option<usize>> = self
                .group_tags
                .iter()
                .map(|g| by.iter().position(|b| b == g))
                .collect();
            let params = self.params(db, &fields, agg, by);
            let (_, partials) = self.fetch(ctx, params, (&fields, by), budget).await?;
            let merged = crate::query::merge_accs(&fields, partials);
            for (native_key, buckets) in merged {
                let key: GroupKey = key_map
                    .iter()
                    .map(|p| {
                        p.and_then(|i| native_key.get(i).cloned())
                            .unwrap_or_default()
                    })
                    .collect();
                let g = groups.entry(key).or_default();
                for (b, accs) in buckets {
                    let bucket = if self.interval.is_some() {
                        b
                    } else {
                        self.bucket(0)
                    };
                    let slot = g.entry(bucket).or_insert_with(|| vec![Out::Empty; n]);
                    for (i, c) in self.calls.iter().enumerate() {
                        if c.func.native() != Some(agg) {
                            continue;
                        }
                        let Some(pos) = fields.iter().position(|f| *f == c.field) else {
                            continue;
                        };
                        let acc = &accs[pos];
                        if acc.count == 0 {
                            continue;
                        }
                        // One native group is one statement group (the grouping tags
                        // are the statement's, a field name among them `""`).
                        let (v, t) = acc.finish(agg);
                        slot[i] = Out::One(v, t);
                    }
                }
            }
        }
        Ok(groups)
    }

    /// Rows per series from the functions' results: buckets filled, arithmetic applied.
    /// Also, for a statement without grouping tags (one group), whether each call has a
    /// value in it (`true` where its fill does not depend on that), for [`select_window`].
    fn aggregate_series(
        &self,
        groups: Groups,
        aux: &Aux,
    ) -> Result<(Vec<ResultSeries>, Facts), String> {
        let n = self.calls.len();
        let single_selector = self.interval.is_none() && n == 1 && self.calls[0].func.is_selector();
        let mut out = Vec::new();
        // Filled buckets of every group together are bounded like raw rows.
        let mut total_rows = 0usize;
        let mut has_value = Vec::new();
        let mut last: Vec<Option<Out>> = Vec::new();
        for (key, buckets) in groups {
            if !self.window.answer_empty
                && buckets
                    .values()
                    .all(|outs| outs.iter().all(|o| *o == Out::Empty))
            {
                continue;
            }
            // The buckets to answer.
            let times: Vec<i64> = match self.interval {
                // Without filling, only the buckets holding points answer; nor are the
                // empty buckets of top, bottom and distinct filled (InfluxDB answers none).
                None => buckets.keys().copied().collect(),
                Some(_) if self.s.fill == Fill::None || self.rows_per_bucket() => {
                    buckets.keys().copied().collect()
                }
                Some((d, _)) => {
                    // Without a lower bound, from the first bucket a function answers (not
                    // one holding only points of other fields), as InfluxDB starts there.
                    let first = match self.min {
                        Some(m) => self.bucket(m),
                        None => buckets
                            .iter()
                            .find(|(_, outs)| outs.iter().any(|o| *o != Out::Empty))
                            .map_or(0, |(t, _)| *t),
                    };
                    let last = self.bucket(self.end_exclusive().saturating_sub(1));
                    let count = ((last as i128 - first as i128) / d as i128) + 1;
                    if count > MAX_BUCKETS as i128 {
                        return Err(format!(
                            "max-select-buckets limit exceeded: ({count}/{MAX_BUCKETS}); use a larger GROUP BY time() interval or a narrower range"
                        ));
                    }
                    total_rows = total_rows.saturating_add(count.max(0) as usize);
                    if total_rows > self.max_rows {
                        return Err(format!(
                            "{} the filled buckets of every group make more than {} rows (query.max_rows); use a larger GROUP BY time() interval, fill(none), fewer groups or a narrower range",
                            crate::query::budget::OVER_QUERY_MEMORY,
                            self.max_rows
                        ));
                    }
                    // Buckets of a zone with daylight saving are not all `d` long.
                    let mut times = Vec::with_capacity(count.max(0) as usize);
                    let mut t = first;
                    while t <= last {
                        times.push(t);
                        t = self.next_bucket(t);
                        if t == i64::MAX {
                            break;
                        }
                    }
                    times
                }
            };
            // Per call, the value of each bucket (None: empty), filled.
            let mut per_call: Vec<Vec<Option<Out>>> = vec![Vec::with_capacity(times.len()); n];
            for t in &times {
                let outs = buckets.get(t);
                for (i, col) in per_call.iter_mut().enumerate() {
                    let o = outs.and_then(|o| o.get(i)).cloned().unwrap_or(Out::Empty);
                    col.push((o != Out::Empty).then_some(o));
                }
            }
            // top, bottom and distinct are never filled: a bucket whose points lack the
            // field answers nothing.
            if self.interval.is_some() && !self.rows_per_bucket() {
                let desc = self.s.order == SortOrder::Desc;
                // Buckets by their number (`time / interval`) in the statement's order, as
                // InfluxDB's linear fill counts them: made once a group, for that fill only
                // (no other reads them).
                let numbers: Vec<i64> = match (self.s.fill, self.interval) {
                    (Fill::Linear, Some((every, _))) => {
                        let mut n: Vec<i64> = times.iter().map(|t| t / every.max(1)).collect();
                        if desc {
                            n.reverse();
                        }
                        n
                    }
                    _ => Vec::new(),
                };
                for (k, (col, c)) in per_call.iter_mut().zip(&self.calls).enumerate() {
                    let field = field_type(&self.schema, &c.field);
                    let kind = result_kind(c.func, field);
                    // count() of a field this measurement lacks (a wildcard over several
                    // measurements) is null, not 0, in empty buckets.
                    let empty = field.and_then(|_| c.func.empty_value());
                    // Without a lower time bound a function starts at its own first
                    // point: `count`'s 0 (fill(null)) does not go before it (InfluxDB
                    // answers null there); a number does.
                    let from = match self.min {
                        Some(_) => 0,
                        None => col.iter().position(Option::is_some).unwrap_or(0),
                    };
                    // Whether the function has a value in the whole range: here, or in
                    // another window of the statement ([`Window::any`]).
                    let here = col.iter().any(Option::is_some);
                    if self.group_tags.is_empty() {
                        // Only fill(null) fills with `empty` (count's 0).
                        has_value.push(here || empty.is_none() || self.s.fill != Fill::Null);
                    }
                    let elsewhere = self.window.any.get(k);
                    // fill(previous) starts from the last value of the windows before.
                    let start = match self.s.fill {
                        Fill::Previous => self.window.previous.0.get(k).cloned().flatten(),
                        _ => None,
                    };
                    let any = here || elsewhere == Some(&true) || start.is_some();
                    let col = match self.s.fill {
                        Fill::Null => &mut col[from..],
                        _ => &mut col[..],
                    };
                    // In the statement's order: newest first, `previous` is the newer one.
                    let how = (self.s.fill, empty);
                    if desc {
                        col.reverse();
                    }
                    fill(col, &numbers, how, (c.func, kind), (any, start.as_ref()));
                    if desc {
                        col.reverse();
                    }
                    if self.group_tags.is_empty() {
                        let answered = |c: &Option<Out>| match c {
                            Some(o @ Out::One(..)) => Some(o.clone()),
                            _ => None,
                        };
                        let at_end = if desc {
                            col.iter().find_map(answered)
                        } else {
                            col.iter().rev().find_map(answered)
                        };
                        last.push(at_end.or(start));
                    }
                }
            }
            let mut rows: Vec<(i64, Vec<Cell>)> = Vec::new();
            for (bi, t) in times.iter().enumerate() {
                let outs: Vec<Option<&Out>> = per_call.iter().map(|c| c[bi].as_ref()).collect();
                if outs.iter().all(|o| o.is_none())
                    && (self.interval.is_none()
                        || self.s.fill == Fill::None
                        || self.rows_per_bucket())
                {
                    continue;
                }
                // top/bottom: a row per chosen point, at its time.
                if let Some(Some(Out::Points(pts))) = outs.first()
                    && n == 1
                {
                    let chosen = aux.get(&(key.clone(), *t));
                    for (j, (pt, v)) in pts.iter().enumerate() {
                        let r = self.eval_row(
                            &[Some(&Out::One(v.clone(), None))],
                            chosen.and_then(|rows| rows.get(j)),
                        );
                        rows.push((*pt, r));
                    }
                    continue;
                }
                // distinct: a row per value.
                if let Some(Some(Out::Many(vals))) = outs.first()
                    && n == 1
                {
                    for v in vals {
                        let r = self.eval_row(&[Some(&Out::One(v.clone(), None))], None);
                        rows.push((*t, r));
                    }
                    continue;
                }
                let time = match (single_selector, outs.first()) {
                    (true, Some(Some(Out::One(_, Some(pt))))) => *pt,
                    // InfluxDB stamps an unbucketed integral at the epoch, whatever the range.
                    _ if n == 1
                        && self.interval.is_none()
                        && matches!(self.calls[0].func, Func::Integral(_)) =>
                    {
                        0
                    }
                    _ => *t,
                };
                let chosen = if self.aux_columns {
                    aux.get(&(key.clone(), *t)).and_then(|rows| rows.first())
                } else {
                    None
                };
                rows.push((time, self.eval_row(&outs, chosen)));
            }
            if self.aux_columns && self.interval.is_some() {
                self.fill_aux(&mut rows);
            }
            if let Some(series) = self.finish(&key, rows, false) {
                out.push(series);
            }
        }
        let facts = Facts {
            has_value,
            last: Carried(last),
        };
        Ok((out, facts))
    }

    /// A selector's other columns under `fill`, as InfluxDB fills them: a number fills
    /// every null among them (the chosen point lacked the field, or the bucket is empty)
    /// with the number as written, `previous` with the last value of that column in the
    /// statement's order; the other fills leave them.
    fn fill_aux(&self, rows: &mut [(i64, Vec<Cell>)]) {
        let aux: Vec<usize> = (self.shapes.iter().enumerate())
            .filter(|(_, s)| **s == Shape::Aux)
            .map(|(i, _)| i)
            .collect();
        match self.s.fill {
            Fill::Integer(i) => {
                for (_, cells) in rows.iter_mut() {
                    for &a in &aux {
                        if cells[a] == Cell::Null {
                            cells[a] = Cell::Int(i);
                        }
                    }
                }
            }
            Fill::Float(f) => {
                // Truncated for a column of integers (a field's type, or a cast), as
                // written for the others.
                let filled: Vec<Cell> = aux
                    .iter()
                    .map(|&a| {
                        let kind = match &self.columns[a].1 {
                            Expr::VarRef(v) => match v.data_type {
                                Some(DataType::Integer) => Some(FieldType::Integer),
                                Some(DataType::Unsigned) => Some(FieldType::UInteger),
                                Some(_) => None,
                                None => field_type(&self.schema, &v.name),
                            },
                            _ => None,
                        };
                        match kind {
                            Some(FieldType::Integer) => Cell::Int(f as i64),
                            Some(FieldType::UInteger) => Cell::UInt(f.max(0.0) as u64),
                            _ => Cell::Float(f),
                        }
                    })
                    .collect();
                for (_, cells) in rows.iter_mut() {
                    for (&a, fill) in aux.iter().zip(&filled) {
                        if cells[a] == Cell::Null {
                            cells[a] = fill.clone();
                        }
                    }
                }
            }
            Fill::Previous => {
                let mut last: Vec<Option<Cell>> = vec![None; aux.len()];
                let mut step = |cells: &mut Vec<Cell>| {
                    for (k, &a) in aux.iter().enumerate() {
                        match (&cells[a], &last[k]) {
                            (Cell::Null, Some(prev)) => cells[a] = prev.clone(),
                            (Cell::Null, None) => {}
                            (c, _) => last[k] = Some(c.clone()),
                        }
                    }
                };
                // In the order the rows are answered.
                for i in self.answer_order(rows, |r| r.0) {
                    step(&mut rows[i].1);
                }
            }
            Fill::None | Fill::Null | Fill::Linear => {}
        }
    }

    /// Whether the only call answers several rows a bucket (top, bottom, distinct) or is
    /// an integral: as InfluxDB, its empty buckets answer nothing whatever the fill.
    fn rows_per_bucket(&self) -> bool {
        matches!(
            self.calls.as_slice(),
            [c] if matches!(
                c.func,
                Func::Top(_) | Func::Bottom(_) | Func::Distinct | Func::Integral(_)
            )
        )
    }

    /// The columns of a selector's chosen point that are not calls (other fields, tags).
    fn aux_row(&self, view: &dyn super::cond::PointView) -> Vec<Option<Value>> {
        (self.columns.iter().zip(&self.shapes))
            .map(|((_, e), shape)| (*shape == Shape::Aux).then(|| eval(e, view)).flatten())
            .collect()
    }

    /// The columns of one row, given each call's result.
    fn eval_row(&self, outs: &[Option<&Out>], aux: Option<&Vec<Option<Value>>>) -> Vec<Cell> {
        let value_of = |c: &Call| -> Option<Value> {
            let i = self.calls.iter().position(|p| p.call == *c)?;
            match outs.get(i).copied().flatten() {
                Some(Out::One(v, _)) if *v != Value::Null => Some(v.clone()),
                Some(Out::Many(vs)) => vs.first().cloned(),
                _ => None,
            }
        };
        self.columns
            .iter()
            .zip(&self.shapes)
            .enumerate()
            .map(|(i, ((_, e), shape))| match shape {
                Shape::Call(c) => cell(match outs.get(*c).copied().flatten() {
                    Some(Out::One(v, _)) if *v != Value::Null => Some(v.clone()),
                    Some(Out::Many(vs)) => vs.first().cloned(),
                    _ => None,
                }),
                Shape::Aux => cell(aux.and_then(|a| a.get(i).cloned().flatten())),
                _ => cell(eval_calls(e, &value_of)),
            })
            .collect()
    }
}

/// What the buckets' results of `groups` (and the selectors' other columns) hold.
fn results_bytes(groups: &Groups, aux: &Aux) -> u64 {
    let value = |v: &Value| {
        std::mem::size_of::<Value>()
            + match v {
                Value::Str(s) => crate::query::scan::heap_bytes(s.len()),
                _ => 0,
            }
    };
    let mut bytes = 0usize;
    for (key, buckets) in groups {
        bytes += 64 + key.iter().map(|k| 24 + k.len()).sum::<usize>();
        for outs in buckets.values() {
            bytes += 64;
            for o in outs {
                bytes += std::mem::size_of::<Out>()
                    + match o {
                        Out::Empty => 0,
                        Out::One(v, _) => value(v) - std::mem::size_of::<Value>(),
                        Out::Many(vs) => vs.iter().map(value).sum(),
                        Out::Points(ps) => ps.iter().map(|(_, v)| 8 + value(v)).sum(),
                    };
            }
        }
    }
    for rows in aux.values() {
        for row in rows {
            bytes += 64 + row.iter().flatten().map(value).sum::<usize>();
        }
    }
    bytes as u64
}

/// A point's time and one field's value.
type Stamped = (i64, Value);

/// Per group, per bucket, one result per call.
type Groups = BTreeMap<GroupKey, BTreeMap<i64, Vec<Out>>>;

/// A selector's other columns, per group and bucket: the chosen point's values (a row per
/// chosen point of top and bottom, in their order).
type Aux = FxHashMap<(GroupKey, i64), Vec<Vec<Option<Value>>>>;

/// The zone of `tz('…')`, as InfluxDB names its error.
pub fn parse_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("unable to find time zone {name}"))
}

/// UTC offset of `zone` at `t` (ns), in ns.
fn zone_offset(zone: chrono_tz::Tz, t: i64) -> i64 {
    use chrono::{Offset, TimeZone};
    let secs = t.div_euclid(1_000_000_000);
    zone.offset_from_utc_datetime(
        &chrono::DateTime::from_timestamp(secs, 0)
            .unwrap_or_default()
            .naive_utc(),
    )
    .fix()
    .local_minus_utc() as i64
        * 1_000_000_000
}

/// The start of the `GROUP BY time(d, off)` bucket (in UTC) holding `t`.
pub fn bucket_start(t: i64, d: i64, off: i64) -> i64 {
    window_start(t, d, off, None)
}

/// The start of the `GROUP BY time(d, off)` bucket holding `t`: aligned on the epoch in
/// the zone's local time (InfluxDB's window rule: the local offset at `t`, corrected by
/// the offset at the start when a daylight-saving change lies between and is shorter than
/// `d`).
fn window_start(t: i64, d: i64, off: i64, zone: Option<chrono_tz::Tz>) -> i64 {
    let t = t as i128 - off as i128;
    let z = zone.map_or(0, |z| {
        zone_offset(z, t.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }) as i128;
    let mut start = t - (t + z).rem_euclid(d as i128);
    if let Some(zone) = zone {
        let at_start =
            zone_offset(zone, start.clamp(i64::MIN as i128, i64::MAX as i128) as i64) as i128;
        let o = z - at_start;
        if o != 0 && o.abs() < d as i128 {
            start += o;
        }
    }
    (start + off as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Evaluates an expression whose leaves are calls and literals.
fn eval_calls(e: &Expr, value_of: &dyn Fn(&Call) -> Option<Value>) -> Option<Value> {
    match e {
        Expr::Call(c) if is_math(&c.name) => {
            let args: Vec<Option<Value>> = c.args.iter().map(|a| eval_calls(a, value_of)).collect();
            math(&c.name, &args)
        }
        Expr::Call(c) => value_of(c),
        Expr::Paren(inner) => eval_calls(inner, value_of),
        Expr::Integer(i) => Some(Value::Int(*i)),
        Expr::Unsigned(u) => Some(Value::UInt(*u)),
        Expr::Number(f) => Some(Value::Float(*f)),
        Expr::Duration(d) => Some(Value::Int(*d)),
        Expr::Bool(b) => Some(Value::Bool(*b)),
        Expr::Binary(BinaryExpr { op, lhs, rhs }) => {
            super::funcs::arith(*op, eval_calls(lhs, value_of), eval_calls(rhs, value_of))
        }
        _ => None,
    }
}

/// The type of a call's results when it is not a number: a selector of strings or
/// booleans gives its field's type.
fn result_kind(func: Func, field: Option<FieldType>) -> Option<FieldType> {
    let selects = matches!(
        func,
        Func::First | Func::Last | Func::Mode | Func::Min | Func::Max | Func::Distinct
    );
    field.filter(|t| selects && matches!(t, FieldType::String | FieldType::Boolean))
}

/// Fills the empty buckets of one call's column, as InfluxDB: under `fill(null)` with
/// `empty` (`count`: 0 when the measurement has the field); a number takes the column's
/// type (`fill(1.5)` of integers is 1; of strings `""`, of booleans `false`). `kind`: the
/// column's type when not a number. `start`: the value `fill(previous)` starts from (the
/// last one of the windows before). `any`: whether the function has a value anywhere in
/// the group's range (in `col`, or in another window of it).
fn fill(
    col: &mut [Option<Out>],
    buckets: &[i64],
    (how, empty): (Fill, Option<Value>),
    (func, kind): (Func, Option<FieldType>),
    (any, start): (bool, Option<&Out>),
) {
    let ints = col
        .iter()
        .any(|c| matches!(c, Some(Out::One(Value::Int(_), _))))
        || matches!(func, Func::Count | Func::CountDistinct);
    let constant = |v: Value, col: &mut [Option<Out>]| {
        for c in col.iter_mut().filter(|c| c.is_none()) {
            *c = Some(Out::One(v.clone(), None));
        }
    };
    // A function with no value in the whole range of its group (its field has no point
    // there) has no type: InfluxDB fills it with the number as written, and `count`'s 0
    // does not apply.
    if !any {
        match how {
            Fill::Integer(i) => constant(Value::Int(i), col),
            Fill::Float(f) => constant(Value::Float(f), col),
            _ => {}
        }
        return;
    }
    match how {
        Fill::None => {}
        Fill::Null => {
            if let Some(v) = empty {
                constant(v, col);
            }
        }
        Fill::Integer(_) | Fill::Float(_) if kind == Some(FieldType::String) => {
            constant(Value::Str(String::new()), col)
        }
        Fill::Integer(_) | Fill::Float(_) if kind == Some(FieldType::Boolean) => {
            constant(Value::Bool(false), col)
        }
        Fill::Integer(i) => constant(
            if ints {
                Value::Int(i)
            } else {
                Value::Float(i as f64)
            },
            col,
        ),
        Fill::Float(f) => constant(
            if ints {
                Value::Int(f as i64)
            } else {
                Value::Float(f)
            },
            col,
        ),
        Fill::Previous => {
            let mut prev: Option<Out> = start.cloned();
            // The previous bucket's result, a null from points (stddev of one) too.
            for c in col.iter_mut() {
                match c {
                    Some(Out::One(_, _)) => prev = c.clone(),
                    Some(_) => {}
                    None => {
                        *c = prev.clone().map(|p| match p {
                            Out::One(v, _) => Out::One(v, None),
                            other => other,
                        })
                    }
                }
            }
        }
        Fill::Linear => {
            // The buckets that answered, with their number (`None`: a null from points,
            // such as a stddev of one point). As InfluxDB's linear fill: the empty buckets
            // between two of them are interpolated, unless either is null.
            let known: Vec<(usize, Option<f64>, bool)> = col
                .iter()
                .enumerate()
                .filter_map(|(i, c)| match c {
                    Some(Out::One(Value::Float(f), _)) => Some((i, Some(*f), false)),
                    Some(Out::One(Value::Int(v), _)) => Some((i, Some(*v as f64), true)),
                    Some(_) => Some((i, None, false)),
                    None => None,
                })
                .collect();
            for w in known.windows(2) {
                let ((i0, v0, int0), (i1, v1, _)) = (w[0], w[1]);
                let (Some(v0), Some(v1)) = (v0, v1) else {
                    continue;
                };
                for (i, slot) in col.iter_mut().enumerate().take(i1).skip(i0 + 1) {
                    // (Every answered bucket is in `known`: those between are empty.)
                    // As InfluxDB computes it, so that an integer lands on the same side
                    // of a whole number: the slope over bucket numbers first, times the
                    // distance in buckets, plus the previous value; truncated.
                    let span = |a: i64, b: i64| (i128::from(a) - i128::from(b)) as f64;
                    let slope = (v1 - v0) / span(buckets[i1], buckets[i0]);
                    let v = slope * span(buckets[i], buckets[i0]) + v0;
                    *slot = Some(Out::One(
                        if int0 {
                            Value::Int(v as i64)
                        } else {
                            Value::Float(v)
                        },
                        None,
                    ));
                }
            }
        }
    }
}

fn value_of_cell(c: Cell) -> Option<Value> {
    Some(match c {
        Cell::Null => return None,
        Cell::Int(i) => Value::Int(i),
        Cell::UInt(u) => Value::UInt(u),
        Cell::Float(f) => Value::Float(f),
        Cell::Str(s) => Value::Str(s.to_string()),
        Cell::Bool(b) => Value::Bool(b),
        Cell::Time(t) => Value::Int(t),
    })
}

fn cell(v: Option<Value>) -> Cell {
    match v {
        None | Some(Value::Null) => Cell::Null,
        Some(Value::Int(i)) => Cell::Int(i),
        Some(Value::UInt(u)) => Cell::UInt(u),
        Some(Value::Float(f)) => Cell::Float(f),
        Some(Value::Str(s)) => Cell::Str(s.into()),
        Some(Value::Bool(b)) => Cell::Bool(b),
    }
}

/// Every variable, inside calls too.
fn collect_all_vars(e: &Expr, out: &mut Vec<VarRef>) {
    match e {
        Expr::VarRef(v) => out.push(v.clone()),
        Expr::Binary(b) => {
            collect_all_vars(&b.lhs, out);
            collect_all_vars(&b.rhs, out);
        }
        Expr::Paren(inner) => collect_all_vars(inner, out),
        Expr::Call(c) => c.args.iter().for_each(|a| collect_all_vars(a, out)),
        _ => {}
    }
}

/// A native `where` term.
fn native_where(p: &TagPred) -> String {
    let esc = |s: &str| s.replace(',', "\\,");
    match &p.op {
        TagOp::Eq(v) => format!("{}={}", p.key, esc(v)),
        TagOp::Ne(v) => format!("{}!={}", p.key, esc(v)),
        TagOp::Re(r) => format!("{}=~{}", p.key, esc(r.as_str())),
        TagOp::NotRe(r) => format!("{}!~{}", p.key, esc(r.as_str())),
    }
}

/// A point as conditions and expressions see it.
struct Point<'p> {
    /// Result columns: a tag the series lacks is null.
    projecting: bool,
    tags: &'p BTreeMap<String, String>,
    fields: &'p [String],
    values: &'p [Value],
    schema: &'p MeasurementSchema,
}

/// A point kept.
struct Owned {
    key: GroupKey,
    time: i64,
    tags: Arc<BTreeMap<String, String>>,
    values: Vec<Value>,
}

impl Owned {
    fn view<'p>(&'p self, fields: &'p [String], schema: &'p MeasurementSchema) -> Point<'p> {
        Point {
            projecting: true,
            tags: &self.tags,
            fields,
            values: &self.values,
            schema,
        }
    }
}

impl PointView for Point<'_> {
    fn field(&self, name: &str) -> Option<&Value> {
        let i = self.fields.iter().position(|f| f == name)?;
        self.values.get(i)
    }
    fn tag(&self, name: &str) -> Option<&str> {
        self.tags.get(name).map(|s| s.as_str())
    }
    fn is_tag(&self, name: &str) -> bool {
        is_tag_of(self.schema, name)
    }
    fn is_known(&self, name: &str) -> bool {
        self.schema.contains_key(name)
    }
    fn absent_tag_is_empty(&self) -> bool {
        !self.projecting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Integers interpolated by `fill(linear)` as InfluxDB 1.6 computes them (the slope
    /// over bucket numbers, times the distance, plus the previous value, truncated): 1 at
    /// seven tenths of the way from -1000 to 430 (where `-1000 + 1430 × 0.7` is just below
    /// 1); newest first from the other end.
    #[test]
    fn linear_fill_of_integers_rounds_as_influxdb() {
        let filled = |from: i64, to: i64| {
            let mut col: Vec<Option<Out>> = vec![None; 11];
            col[0] = Some(Out::One(Value::Int(from), None));
            col[10] = Some(Out::One(Value::Int(to), None));
            let buckets: Vec<i64> = (100..111).collect();
            fill(
                &mut col,
                &buckets,
                (Fill::Linear, None),
                (Func::Max, Some(FieldType::Integer)),
                (true, None),
            );
            col.into_iter()
                .map(|c| match c {
                    Some(Out::One(Value::Int(v), _)) => v,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<i64>>()
        };
        let up = filled(-1000, 430);
        assert_eq!(up[7], 1);
        assert_eq!(up[3], -571);
        let down = filled(430, -1000);
        assert_eq!(down[3], 1);
    }
    use crate::influxql::{Statement, parse_query};
    use crate::model::FieldType;

    fn select(q: &str) -> SelectStatement {
        match parse_query(q).unwrap().remove(0) {
            Statement::Select(s) => s,
            other => panic!("{other:?}"),
        }
    }

    /// This node's schema plans a SELECT only when it names, in every measurement read,
    /// every name the statement uses, and nothing is expanded.
    #[test]
    fn the_local_schema_suffices_only_when_it_names_everything() {
        let schema = |cols: &[(&str, ColumnKind)]| {
            Arc::new(
                cols.iter()
                    .map(|(n, k)| (Arc::from(*n), *k))
                    .collect::<MeasurementSchema>(),
            )
        };
        let float = ColumnKind::Field(FieldType::Float);
        let local: DbSchema = [
            (
                Arc::from("a"),
                schema(&[("v", float), ("host", ColumnKind::Tag)]),
            ),
            (Arc::from("b"), schema(&[("w", float)])),
        ]
        .into_iter()
        .collect();
        for (q, suffices) in [
            ("SELECT v FROM a", true),
            (
                "SELECT mean(v) FROM a WHERE host = 'x' AND time > now() - 1h GROUP BY time(1m), host",
                true,
            ),
            ("SELECT v FROM a, b", false),
            ("SELECT v FROM c", false),
            ("SELECT * FROM a", false),
            ("SELECT /v/ FROM a", false),
            ("SELECT v FROM /a/", false),
            ("SELECT v FROM a WHERE dc = 'x'", false),
            ("SELECT v FROM a GROUP BY *", false),
            ("SELECT max(u) FROM a", false),
        ] {
            assert_eq!(local_schema_suffices(&select(q), &local), suffices, "{q}");
        }
    }
}
