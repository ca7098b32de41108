//! `GET|POST /query`: InfluxQL as InfluxDB 1.x serves it (parameters `q`, `db`, `rp`,
//! `epoch`, `pretty`, `chunked`, `chunk_size`, `u`/`p`; form-encoded POST bodies; JSON, or
//! CSV for `Accept: application/csv`).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::body::read_body;
use super::error::{ApiError, Dialect, DialectError};
use crate::influxql::Statement;
use crate::query::budget::OVER_QUERY_MEMORY;
use crate::query::influxql::result::{
    Cell, Chunking, ResultSeries, SeriesPart, StatementResult, TimeFormat, write_csv,
    write_results, write_statement,
};
use crate::query::influxql::{Ctx, execute, execute_one, select, stream};

/// Rows per chunk when `chunked=true` has no `chunk_size` (InfluxDB's default).
const DEFAULT_CHUNK_SIZE: usize = 10_000;

/// What the InfluxQL engine needs for one request: the server's budgets and `now()`.
pub(crate) fn statement_ctx(
    state: &Shared,
    db: Option<String>,
    started: std::time::Instant,
) -> Ctx {
    Ctx {
        engine: state.engine.clone(),
        remote: state.remote.clone(),
        query_memory: state.query_memory.clone(),
        timeout: state.config.query.timeout,
        max_rows: state.config.query.max_rows,
        db,
        rp: None,
        now_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        started,
        forwarded: false,
        barrier: state.barrier.clone(),
        schemas: Default::default(),
        warnings: Default::default(),
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    DialectError(Dialect::Api, ApiError::BadRequest(message.into())).into_response()
}

pub async fn query_get(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = super::write::parse_params(q.as_deref());
    run(state, params, &headers).await
}

pub async fn query_post(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut params = super::write::parse_params(q.as_deref());
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let limits = super::api::query_body_limits(&state);
    let bytes = match read_body(&state.engine, &headers, body, limits).await {
        Ok(b) => b,
        Err(e) => return DialectError(Dialect::Api, e).into_response(),
    };
    if form {
        for (k, v) in form_urlencoded::parse(&bytes) {
            params.insert(k.into_owned(), v.into_owned());
        }
    } else if !bytes.is_empty() && !params.contains_key("q") {
        // The `influx` CLI and some clients send the statement as the raw body.
        params.insert("q".into(), String::from_utf8_lossy(&bytes).into_owned());
    }
    run(state, params, &headers).await
}

async fn run(state: Shared, params: HashMap<String, String>, headers: &HeaderMap) -> Response {
    let started = std::time::Instant::now();
    let metrics = state.engine.metrics().clone();
    let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return bad_request("missing required parameter \"q\"");
    };
    let time = match TimeFormat::from_param(params.get("epoch").map(|s| s.as_str())) {
        Ok(t) => t,
        Err(e) => return bad_request(e),
    };
    let statements = match crate::influxql::parse_query_lenient(q) {
        Ok(s) => s,
        Err(e) => {
            metrics.query_errors.fetch_add(1, Relaxed);
            return bad_request(e.to_string());
        }
    };
    // An unknown zone fails the whole query, as a parse error does in InfluxDB.
    for st in &statements {
        if let Ok(crate::influxql::Statement::Select(sel)) = st
            && let Some(z) = &sel.timezone
            && let Err(e) = crate::query::influxql::select::parse_zone(z)
        {
            return bad_request(format!("error parsing query: {e}"));
        }
    }
    let chunked = params.get("chunked").is_some_and(|v| v == "true");
    let chunk_size = params
        .get("chunk_size")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_CHUNK_SIZE);
    let pretty = params.get("pretty").is_some_and(|v| v == "true");
    let csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/csv") || v.contains("text/csv"));
    let mut ctx = statement_ctx(&state, params.get("db").cloned(), started);
    ctx.rp = params.get("rp").cloned();
    ctx.forwarded = headers.contains_key(crate::cluster::remote::FORWARDED_HEADER);
    let statement_count = statements.len();
    let statements: Vec<Result<Statement, String>> = statements
        .into_iter()
        .map(|s| s.map_err(|e| e.message))
        .collect();
    let version = (
        header::HeaderName::from_static("x-influxdb-version"),
        header::HeaderValue::from_static("1.8.10-meridian"),
    );
    if chunked
        && !csv
        && statements
            .iter()
            .any(|s| matches!(s, Ok(Statement::Select(_))))
    {
        // Raw SELECTs are computed and sent a partition at a time (query::influxql::stream).
        metrics.queries.fetch_add(1, Relaxed);
        let handle = tokio::runtime::Handle::current();
        let gap = state.config.http.body_timeout;
        let mut response = super::api::streamed("application/json", gap, usize::MAX, move |w| {
            stream_chunked(w, &handle, &ctx, statements, time, chunk_size)
        });
        response.headers_mut().insert(version.0, version.1);
        return response;
    }
    let results = execute(&ctx, statements).await;
    metrics.queries.fetch_add(1, Relaxed);
    metrics
        .query_micros
        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    if results.iter().any(|r| r.error.is_some()) {
        metrics.query_errors.fetch_add(1, Relaxed);
    }
    if pretty && !csv && !chunked {
        // Indented: built whole (a person reads it; answers are bounded by the budget).
        let mut out: Vec<u8> = Vec::new();
        let pretty = write_results(&mut out, &results, time).and_then(|_| {
            let v: serde_json::Value =
                serde_json::from_slice(&out).map_err(std::io::Error::other)?;
            let mut p = serde_json::to_vec_pretty(&v).map_err(std::io::Error::other)?;
            p.push(b'\n');
            Ok(p)
        });
        return match pretty {
            Ok(body) => (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/json"),
                    ),
                    version,
                ],
                body,
            )
                .into_response(),
            Err(e) => DialectError(
                Dialect::Api,
                ApiError::Unavailable(format!("could not encode the answer: {e}")),
            )
            .into_response(),
        };
    }
    // Streamed as it is serialized, in 64 KiB chunks (small answers are written at once).
    let gap = state.config.http.body_timeout;
    let cells: usize = results
        .iter()
        .flat_map(|r| &r.series)
        .map(|s| s.values.len() * s.columns.len())
        .sum();
    let mut response = if csv {
        super::api::streamed("text/csv", gap, cells, move |w| {
            write_csv(w, &results, time)
        })
    } else if chunked {
        super::api::streamed("application/json", gap, cells, move |w| {
            write_chunked(w, &results, time, chunk_size, statement_count)
        })
    } else {
        super::api::streamed("application/json", gap, cells, move |w| {
            write_results(w, &results, time)?;
            w.write_all(b"\n")
        })
    };
    response.headers_mut().insert(version.0, version.1);
    response
}

/// `POST /api/v2/delete?bucket=db` with `{"start","stop","predicate"}` (InfluxDB 2's
/// delete API): 204 once the points are deleted durably.
pub async fn delete_v2(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let params = super::write::parse_params(q.as_deref());
    let Some(db) = params
        .get("bucket")
        .or(params.get("db"))
        .filter(|d| !d.is_empty())
    else {
        return bad_request("missing required parameter `bucket`");
    };
    if !crate::model::is_safe_name(db) {
        return bad_request(format!(
            "invalid bucket name {:?}",
            crate::model::truncate(db, 64)
        ));
    }
    let limits = super::api::query_body_limits(&state);
    let bytes = match read_body(&state.engine, &headers, body, limits).await {
        Ok(b) => b,
        Err(e) => return DialectError(Dialect::Api, e).into_response(),
    };
    let v: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("invalid JSON body: {e}")),
    };
    let time = |k: &str| -> Result<i64, String> {
        let s = v[k]
            .as_str()
            .ok_or_else(|| format!("missing {k}: an RFC 3339 time"))?;
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| {
                format!(
                    "invalid {k} {:?}: use RFC 3339",
                    crate::model::truncate(s, 64)
                )
            })
    };
    let (start, stop) = match (time("start"), time("stop")) {
        (Ok(a), Ok(b)) if a <= b => (a, b),
        (Ok(_), Ok(_)) => return bad_request("start must not be after stop"),
        (Err(e), _) | (_, Err(e)) => return bad_request(e),
    };
    let predicate = v["predicate"].as_str().unwrap_or("");
    let ctx = statement_ctx(&state, Some(db.clone()), started);
    match crate::query::influxql::delete::api_v2(&ctx, db, start, stop, predicate).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) if e.contains("could not be flushed") || e.contains("recording the delete") => {
            DialectError(Dialect::Api, ApiError::Unavailable(e)).into_response()
        }
        Err(e) => bad_request(e),
    }
}

/// `chunked=true` statement by statement, each computed as its chunks are sent: a SELECT
/// a window of time at a time where [`stream::windows`] allows it, others whole. The last
/// chunk of a SELECT is held back until the next window shows whether more rows follow
/// (its `partial` flag).
fn stream_chunked(
    w: &mut dyn std::io::Write,
    handle: &tokio::runtime::Handle,
    ctx: &Ctx,
    statements: Vec<Result<Statement, String>>,
    time: TimeFormat,
    chunk_size: usize,
) -> std::io::Result<()> {
    let count = statements.len();
    for (id, st) in statements.into_iter().enumerate() {
        let left = count - id;
        let st = match st {
            Ok(s) => s,
            Err(e) => {
                return write_chunked(w, &[StatementResult::error(id, e)], time, chunk_size, left);
            }
        };
        let plan = match &st {
            Statement::Select(s) => handle.block_on(async {
                match stream::windows(ctx, s, chunk_size).await {
                    Some(ws) => Some(Streaming::Windows(s, ws)),
                    None => stream::group_parts(ctx, s)
                        .await
                        .map(|g| Streaming::Groups(Box::new(g))),
                }
            }),
            _ => None,
        };
        let ok = match plan {
            Some(plan) => {
                // At least a row a document, whatever `query.max_rows` says.
                let rows = chunk_size.min(ctx.max_rows).max(1);
                let out = Chunks::new(w, (id, left), time, rows);
                match plan {
                    Streaming::Windows(s, streamed) => {
                        stream_select(out, handle, ctx, s, &streamed)?
                    }
                    Streaming::Groups(parts) => stream_groups(out, handle, ctx, *parts)?,
                }
            }
            None => {
                let r = handle.block_on(execute_one(ctx, id, &st));
                let ok = r.error.is_none();
                write_chunked(w, &[r], time, chunk_size, left)?;
                ok
            }
        };
        if !ok {
            break;
        }
    }
    Ok(())
}

/// How a SELECT is streamed.
enum Streaming<'s> {
    Windows(&'s crate::influxql::SelectStatement, stream::Streamed),
    Groups(Box<stream::GroupParts>),
}

/// One SELECT grouped by tags, a batch of groups at a time ([`stream::GroupParts`]); false
/// if it failed (its error was sent). A part whose answer is too large for one execution
/// (or whose values do not fit a regex) goes by smaller parts ([`parts::smaller`]); a
/// single group too large is the statement's error, as when answered whole.
fn stream_groups(
    mut out: Chunks<'_>,
    handle: &tokio::runtime::Handle,
    ctx: &Ctx,
    mut plan: stream::GroupParts,
) -> std::io::Result<bool> {
    use crate::query::parts;
    out.skip_series = plan.soffset;
    out.room_series = plan.slimit;
    let desc = plan.statement.order == crate::influxql::SortOrder::Desc;
    let mut queue: std::collections::VecDeque<parts::GroupPart> =
        std::mem::take(&mut plan.parts).into();
    while let Some(part) = queue.pop_front() {
        if out.full() {
            break;
        }
        if part.rest {
            // Series written since the parts were made, with values of their own: last.
            let late =
                plan.with_catalog(ctx, |ms, among| parts::late(ms, among, &plan.keys, &part));
            for p in stream::ordered(late.unwrap_or_default(), desc)
                .into_iter()
                .rev()
            {
                queue.push_front(p);
            }
            continue;
        }
        // `None`: the part's values do not fit a regex.
        let found = part.preds(&plan.keys).map(|preds| {
            let window = select::Window {
                preds,
                ..Default::default()
            };
            handle
                .block_on(select::select_window(ctx, &plan.statement, &window))
                .map(|f| f.0)
        });
        let too_large = match &found {
            Some(Err(e)) => e.contains(OVER_QUERY_MEMORY),
            Some(Ok(_)) => false,
            None => true,
        };
        let smaller = too_large
            .then(|| {
                plan.with_catalog(ctx, |ms, among| {
                    parts::smaller(ms, among, &plan.keys, &part)
                })
            })
            .flatten()
            .flatten();
        match smaller {
            Some(smaller) => {
                for p in stream::ordered(smaller, desc).into_iter().rev() {
                    queue.push_front(p);
                }
            }
            None => {
                let found = found.unwrap_or_else(|| {
                    Err(format!(
                        "{OVER_QUERY_MEMORY} the values of one part do not fit a regex"
                    ))
                });
                if !out.answer(found)? {
                    return Ok(false);
                }
            }
        }
    }
    out.finish()?;
    Ok(true)
}

/// The chunks of one streamed SELECT being sent: each series' rows fill chunks of
/// `chunk_size` across parts, as if the answer were cut whole; a chunk waits in `ready`
/// until a next row or series shows that more follow (its statement's `partial` flag).
struct Chunks<'a> {
    head: StatementResult,
    /// Statements left in the request, this one included (an error's "not executed").
    left: usize,
    time: TimeFormat,
    chunk_size: usize,
    /// The series whose rows are in `acc`.
    template: Option<ResultSeries>,
    /// A chunk to send, and whether its series continues after it.
    ready: Option<(ResultSeries, bool)>,
    acc: Vec<Vec<Cell>>,
    /// `OFFSET` rows still to skip, `LIMIT` rows still to send (`None`: no limit).
    skip: usize,
    room: Option<usize>,
    /// `SOFFSET` series still to skip, `SLIMIT` series still to send.
    skip_series: usize,
    room_series: Option<usize>,
    w: &'a mut dyn std::io::Write,
}

impl<'a> Chunks<'a> {
    /// The chunks of statement `id`, `left` statements left in the request with it.
    fn new(
        w: &'a mut dyn std::io::Write,
        (id, left): (usize, usize),
        time: TimeFormat,
        chunk_size: usize,
    ) -> Self {
        Chunks {
            head: StatementResult {
                statement_id: id,
                chunking: Chunking::Rows,
                ..Default::default()
            },
            left,
            time,
            chunk_size,
            template: None,
            ready: None,
            acc: Vec::new(),
            skip: 0,
            room: None,
            skip_series: 0,
            room_series: None,
            w,
        }
    }

    /// Nothing more is to be sent: the `LIMIT` or `SLIMIT` is reached.
    fn full(&self) -> bool {
        self.room == Some(0) || self.room_series == Some(0)
    }

    fn piece(&mut self, series: &ResultSeries, continues: bool, more: bool) -> std::io::Result<()> {
        let part = SeriesPart {
            series,
            rows: &series.values,
            partial: continues,
        };
        write_document(
            self.w,
            &self.head,
            std::slice::from_ref(&part),
            self.time,
            more,
        )
    }

    /// `next` becomes the chunk held back; the one held before is sent, not the last.
    fn hold(&mut self, next: (ResultSeries, bool)) -> std::io::Result<()> {
        if let Some((prev, continues)) = self.ready.replace(next) {
            self.piece(&prev, continues, true)?;
        }
        Ok(())
    }

    /// The rows of `acc` end their series (another one follows).
    fn close(&mut self) -> std::io::Result<()> {
        if let Some(t) = self.template.take()
            && !self.acc.is_empty()
        {
            let rows = std::mem::take(&mut self.acc);
            self.hold((ResultSeries { values: rows, ..t }, false))?;
        }
        Ok(())
    }

    /// The rows of one part's answer.
    fn rows(&mut self, found: Vec<ResultSeries>) -> std::io::Result<()> {
        for mut series in found {
            let same = self
                .template
                .as_ref()
                .is_some_and(|t| t.name == series.name && t.tags == series.tags);
            if !same {
                self.close()?;
                match page(&mut self.skip_series, &mut self.room_series) {
                    Page::Skip => continue,
                    Page::Full => return Ok(()),
                    Page::Take => {}
                }
            }
            let rows = std::mem::take(&mut series.values);
            if self.template.is_none() {
                self.template = Some(series);
            }
            for row in rows {
                match page(&mut self.skip, &mut self.room) {
                    Page::Skip => continue,
                    Page::Full => return Ok(()),
                    Page::Take => {}
                }
                if self.acc.len() == self.chunk_size
                    && let Some(t) = &self.template
                {
                    let chunk = ResultSeries {
                        values: std::mem::take(&mut self.acc),
                        ..t.clone()
                    };
                    self.hold((chunk, true))?;
                }
                self.acc.push(row);
            }
        }
        Ok(())
    }

    /// One part's answer: its rows, or its error (the chunk held back goes first, as not
    /// the last one); false after an error.
    fn answer(&mut self, found: Result<Vec<ResultSeries>, String>) -> std::io::Result<bool> {
        match found {
            Ok(found) => self.rows(found).map(|_| true),
            Err(e) => {
                if let Some((prev, continues)) = self.ready.take() {
                    self.piece(&prev, continues, true)?;
                }
                let error = [StatementResult::error(self.head.statement_id, e)];
                write_chunked(self.w, &error, self.time, self.chunk_size, self.left)?;
                Ok(false)
            }
        }
    }

    /// The last chunks, or an empty statement.
    fn finish(mut self) -> std::io::Result<()> {
        let last = self.template.take().map(|t| ResultSeries {
            values: std::mem::take(&mut self.acc),
            ..t
        });
        match (self.ready.take(), last) {
            (Some((r, continues)), Some(l)) if !l.values.is_empty() => {
                self.piece(&r, continues, true)?;
                self.piece(&l, false, false)
            }
            (Some((r, _)), _) => self.piece(&r, false, false),
            (None, Some(l)) if !l.values.is_empty() => self.piece(&l, false, false),
            (None, _) => write_document(self.w, &self.head, &[], self.time, false),
        }
    }
}

/// What an `OFFSET` (`skip`, still to skip) and a `LIMIT` (`room`, still to send; `None`:
/// no limit) make of the next row or series, counted against them.
enum Page {
    Skip,
    Take,
    Full,
}

fn page(skip: &mut usize, room: &mut Option<usize>) -> Page {
    if *skip > 0 {
        *skip -= 1;
        return Page::Skip;
    }
    match room {
        Some(0) => Page::Full,
        Some(r) => {
            *r -= 1;
            Page::Take
        }
        None => Page::Take,
    }
}

/// One SELECT, window by window ([`stream::Streamed`]); false if it failed (its error was
/// sent).
fn stream_select(
    mut out: Chunks<'_>,
    handle: &tokio::runtime::Handle,
    ctx: &Ctx,
    s: &crate::influxql::SelectStatement,
    streamed: &stream::Streamed,
) -> std::io::Result<bool> {
    // LIMIT and OFFSET count the rows of the one series across windows.
    out.skip = s.offset.map_or(0, |o| o as usize);
    out.room = s.limit.map(|l| l as usize);
    let run = |span: (i64, i64), window: &select::Window| {
        handle.block_on(select::select_window(ctx, &stream::within(s, span), window))
    };
    // Filled buckets: a window is answered once the series is known to exist and every
    // function known to have a value somewhere (`stream::Streamed::filled`); windows read
    // before that are held and run again then, one at a time, so that only one window's
    // rows are held. `fill(previous)` starts each window from the last values of the
    // windows before it (`carry`, as of each held window for its second run).
    let mut ready = !streamed.filled;
    let mut exists = false;
    let mut any: Vec<bool> = Vec::new();
    let mut held: Vec<((i64, i64), select::Carried)> = Vec::new();
    let mut carry = select::Carried::default();
    let filled = |any: &[bool], previous: &select::Carried| select::Window {
        answer_empty: true,
        any: any.to_vec(),
        previous: previous.clone(),
        ..Default::default()
    };
    let first = |previous: &select::Carried| select::Window {
        previous: previous.clone(),
        ..Default::default()
    };
    for (i, &window) in streamed.windows.iter().enumerate() {
        if out.full() {
            break;
        }
        if ready {
            let found = if streamed.filled {
                run(window, &filled(&any, &carry))
            } else {
                run(window, &select::Window::default())
            };
            let found = found.map(|(rows, facts)| {
                carry = facts.last;
                rows
            });
            if !out.answer(found)? {
                return Ok(false);
            }
            continue;
        }
        let before = carry.clone();
        let (found, facts) = match run(window, &first(&carry)) {
            Ok(f) => f,
            Err(e) => {
                out.answer(Err(e))?;
                return Ok(false);
            }
        };
        carry = facts.last;
        exists |= !found.is_empty();
        if any.len() < facts.has_value.len() {
            any.resize(facts.has_value.len(), false);
        }
        for (a, f) in any.iter_mut().zip(&facts.has_value) {
            *a |= *f;
        }
        // A window holding the series, where every function has a value, answered as it
        // would with what the other windows know: it is not run again.
        let exact = !found.is_empty() && facts.has_value.iter().all(|f| *f);
        if !exact {
            held.push((window, before));
        }
        let last = i + 1 == streamed.windows.len();
        if exists && (last || any.iter().all(|a| *a)) {
            ready = true;
            for (span, previous) in std::mem::take(&mut held) {
                if out.full() {
                    break;
                }
                let again = run(span, &filled(&any, &previous)).map(|f| f.0);
                if !out.answer(again)? {
                    return Ok(false);
                }
            }
            if exact && !out.answer(Ok(found))? {
                return Ok(false);
            }
        }
    }
    out.finish()?;
    Ok(true)
}

/// One line of a chunked answer: `{"results":[<statement with these parts>]}`.
fn write_document(
    w: &mut dyn std::io::Write,
    r: &StatementResult,
    parts: &[SeriesPart<'_>],
    time: TimeFormat,
    more: bool,
) -> std::io::Result<()> {
    w.write_all(b"{\"results\":[")?;
    write_statement(w, r, parts, time, more)?;
    w.write_all(b"]}\n")
}

/// `chunked=true`: one JSON document per line, each holding at most `chunk_size` rows of
/// one series; `partial` marks a series (and a statement) that later chunks continue.
fn write_chunked(
    w: &mut dyn std::io::Write,
    results: &[StatementResult],
    time: TimeFormat,
    chunk_size: usize,
    statement_count: usize,
) -> std::io::Result<()> {
    for (i, r) in results.iter().enumerate() {
        let mut pieces: Vec<SeriesPart<'_>> = Vec::new();
        for s in &r.series {
            if s.values.is_empty() || r.chunking != Chunking::Rows {
                pieces.push(SeriesPart::whole(s));
                continue;
            }
            let n = s.values.len().div_ceil(chunk_size);
            for (i, rows) in s.values.chunks(chunk_size).enumerate() {
                pieces.push(SeriesPart {
                    series: s,
                    rows,
                    partial: i + 1 < n,
                });
            }
        }
        if pieces.is_empty() {
            write_document(w, r, &[], time, false)?;
            if r.error.is_some() {
                // As InfluxDB's chunked answers: the real error, then "not executed" for
                // each statement left.
                // (influxd 1.6.7 gives them all the failed statement's id.)
                for _ in i + 1..statement_count {
                    let skipped = StatementResult::error(r.statement_id, "not executed");
                    write_document(w, &skipped, &[], time, false)?;
                }
            }
            continue;
        }
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let more = i < last && r.chunking != Chunking::PerSeriesWhole;
            write_document(w, r, std::slice::from_ref(&piece), time, more)?;
        }
    }
    Ok(())
}
