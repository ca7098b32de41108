//! Query and admin endpoints: `/api/v1/query` (GET and JSON POST), `GET /api/v1/regions`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::body::{BodyLimits, read_body};
use super::error::{ApiError, Dialect, DialectError};
use crate::query::Refusal;
use crate::query::output;
use crate::query::plan::{Format, QuerySpec};
use crate::query::remote::WireAnswer;

/// Regions, where they are hosted, and what they hold.
pub async fn regions(State(state): State<Shared>) -> Json<Value> {
    let regions: Vec<Value> = state
        .engine
        .regions()
        .iter()
        .map(|r| (r, r.reach()))
        .map(|(r, reach)| match &r.manifest {
            Some(m) => {
                let files = m.files();
                // Shared storage: whether this node flushes the region, and how far the
                // region's log is in files.
                let shared = r.log.as_ref().map(|l| {
                    json!({
                        "flushes": l.epoch() > 0,
                        "lease_epoch": l.epoch(),
                        "log_in_files_through": l.through(),
                        "log_applied_through": l.committed(),
                    })
                });
                json!({
                    "name": &*r.name,
                    "hosted": true,
                    "url": reach.url,
                    "replicas": reach.replicas,
                    "export": reach.export,
                    "shards": r.shard_count(),
                    "memory": r.memory(),
                    "files": files.len(),
                    "file_bytes": files.iter().map(|f| f.bytes).sum::<u64>(),
                    "file_rows": files.iter().map(|f| f.rows).sum::<u64>(),
                    "shared_storage": shared,
                })
            }
            None => {
                json!({ "name": &*r.name, "hosted": false, "url": reach.url, "replicas": reach.replicas, "export": reach.export })
            }
        })
        .collect();
    Json(json!({
        "regions": regions,
        "memory_bytes": state.engine.metrics().memory_bytes.load(std::sync::atomic::Ordering::Relaxed),
    }))
}

/// `GET /api/v1/query?db=..&measurement=..&...` (SPEC §5).
pub async fn query_get(State(state): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let params = super::write::parse_params(q.as_deref());
    query(state, params).await
}

/// Bytes a streamed answer is sent in.
const STREAM_CHUNK: usize = 64 << 10;

/// Answers of at most this many cells are written on the request's thread and sent whole:
/// for them a handoff to a blocking thread cost more than the writing (about 0.1 ms a
/// request, measured on `/query` with 3,600 cells).
pub(crate) const SMALL_ANSWER_CELLS: usize = 8_192;

/// A response whose body `produce` writes on a blocking thread, sent in chunks of
/// [`STREAM_CHUNK`] as it is written (at most four chunks wait for the client): the
/// serialized answer is never held whole, and a client that goes away stops the writing.
/// An answer of at most [`SMALL_ANSWER_CELLS`] `cells` is written here and sent whole.
pub(crate) fn streamed<F>(
    content_type: &'static str,
    gap: std::time::Duration,
    cells: usize,
    produce: F,
) -> Response
where
    F: FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'static,
{
    if cells <= SMALL_ANSWER_CELLS {
        let mut out = Vec::new();
        return match produce(&mut out) {
            Ok(()) => ([(header::CONTENT_TYPE, content_type)], out).into_response(),
            Err(e) => DialectError(
                Dialect::Api,
                ApiError::Unavailable(format!("could not encode the answer: {e}")),
            )
            .into_response(),
        };
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter {
            tx,
            handle,
            gap,
            buf: Vec::with_capacity(STREAM_CHUNK),
        };
        match produce(&mut w) {
            Ok(()) => {
                let _ = w.send_chunk();
            }
            // The answer could not be completed: the body ends in an error (the connection
            // is reset before the body's end), so that a client cannot take what it got
            // for the whole answer.
            Err(e) => {
                let (tx, gap) = (w.tx.clone(), w.gap);
                let _ = w
                    .handle
                    .block_on(tokio::time::timeout(gap, tx.send(Err(e))));
            }
        }
    });
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::new(ChunkBody { rx }),
    )
        .into_response()
}

/// A response body fed by one channel of chunks: it ends only once every chunk sent was
/// taken and the writer is gone. (http-body-util's `Channel` ends the body when its error
/// half is dropped and its data half polls empty at that moment: a few answers in hundreds
/// arrived cut short under load, the model and oracle tests found.)
struct ChunkBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
}

impl http_body::Body for ChunkBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| b.map(http_body::Frame::data)))
    }
}

/// Writes into chunks handed to a response body.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    handle: tokio::runtime::Handle,
    /// The longest a client may take to take a chunk (a blocking thread waits meanwhile).
    gap: std::time::Duration,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(STREAM_CHUNK),
        ));
        match self
            .handle
            .block_on(tokio::time::timeout(self.gap, self.tx.send(Ok(chunk))))
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client left",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading (http.body_timeout)",
            )),
        }
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK {
            self.send_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bodies of query requests: JSON parameters, at most 1 MiB.
pub(crate) fn query_body_limits(state: &Shared) -> BodyLimits {
    BodyLimits {
        max_bytes: 1 << 20,
        gap: state.config.http.body_timeout,
    }
}

/// `POST /api/v1/query` with a JSON object of the same parameters. Lists (fields, group_by,
/// where) may be JSON arrays; numbers may be JSON numbers.
pub async fn query_post(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match read_body(&state.engine, &headers, body, query_body_limits(&state)).await {
        Ok(b) => b,
        Err(e) => return DialectError(Dialect::Api, e).into_response(),
    };
    let obj: serde_json::Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return DialectError(
                Dialect::Api,
                ApiError::BadRequest("the body must be a JSON object".into()),
            )
            .into_response();
        }
        Err(e) => {
            return DialectError(
                Dialect::Api,
                ApiError::BadRequest(format!("invalid JSON body: {e}")),
            )
            .into_response();
        }
    };
    let mut params = HashMap::new();
    for (k, v) in obj {
        let s = match v {
            Value::Null => continue,
            Value::String(s) => s,
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.replace(',', "\\,"),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        params.insert(k, s);
    }
    query(state, params).await
}

async fn query(state: Shared, params: HashMap<String, String>) -> Response {
    let metrics = state.engine.metrics().clone();
    let started = std::time::Instant::now();
    let qc = &state.config.query;
    if crate::query::influxql::native::needs_influxql(&params) {
        return extended_query(state, params, started).await;
    }
    let spec = match QuerySpec::from_params(&params) {
        Ok(mut s) => {
            s.deadline = Some(started + qc.timeout);
            s.budget = Some(Arc::new(state.query_memory.budget()));
            Arc::new(s)
        }
        Err(e) => {
            metrics.query_errors.fetch_add(1, Relaxed);
            return DialectError(Dialect::Api, ApiError::BadRequest(e)).into_response();
        }
    };
    let hints = crate::query::plan::time_unit_hints(&params);
    let params = Arc::new(params);
    if let Some(plan) = super::export::plan(&state, &spec).await {
        metrics.queries.fetch_add(1, Relaxed);
        let mut warnings = hints;
        warnings.extend(crate::query::unknown_names(&state.engine, &spec));
        return super::export::respond(state, spec, params, plan, warnings).await;
    }
    let result = crate::query::run(
        &state.engine,
        spec.clone(),
        params,
        &state.remote,
        qc.timeout,
        qc.max_rows,
    )
    .await;
    metrics.queries.fetch_add(1, Relaxed);
    match result.refused.clone() {
        Some(Refusal::TooLarge(m)) => {
            metrics.query_errors.fetch_add(1, Relaxed);
            return DialectError(Dialect::Api, ApiError::PayloadTooLarge(m)).into_response();
        }
        Some(Refusal::Busy(m)) => {
            metrics.query_errors.fetch_add(1, Relaxed);
            return DialectError(Dialect::Api, ApiError::Overloaded(m)).into_response();
        }
        Some(Refusal::Forbidden(m)) => {
            metrics.query_errors.fetch_add(1, Relaxed);
            return DialectError(Dialect::Api, ApiError::Forbidden(m)).into_response();
        }
        None => {}
    }
    metrics
        .query_micros
        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    let mut result = result;
    result.warnings.extend(hints);
    result
        .warnings
        .extend(crate::query::unknown_names(&state.engine, &spec));
    // The spec (with the query's memory budget) lives until the answer is written.
    let (format, epoch, group_by) = (spec.format, spec.epoch, spec.group_by.clone());
    encode(&state, result, format, epoch, group_by, Some(spec))
}

/// A result in the format asked for, streamed as it is written (JSON, CSV, and Arrow batch
/// by batch).
/// `hold` is kept alive until the answer is written (the query's memory budget).
fn encode(
    state: &Shared,
    result: crate::query::QueryResult,
    format: Format,
    epoch: crate::query::plan::Epoch,
    group_by: Vec<String>,
    hold: Option<Arc<QuerySpec>>,
) -> Response {
    let cells: usize = result
        .series
        .iter()
        .map(|s| s.rows.len() * (result.columns.len() + 1))
        .sum();
    match format {
        Format::Json => streamed(
            "application/json",
            state.config.http.body_timeout,
            cells,
            move |w| {
                let _hold = hold;
                serde_json::to_writer(w, &output::to_json(&result, epoch)).map_err(Into::into)
            },
        ),
        Format::Csv => streamed(
            "text/csv; charset=utf-8",
            state.config.http.body_timeout,
            cells,
            move |w| {
                let _hold = hold;
                output::write_csv(&result, &group_by, epoch, w)
            },
        ),
        Format::Arrow => streamed(
            "application/vnd.apache.arrow.stream",
            state.config.http.body_timeout,
            cells,
            move |w| {
                let _hold = hold;
                output::write_arrow(&result, &group_by, w).map_err(std::io::Error::other)
            },
        ),
    }
}

/// A native query the InfluxQL engine answers (several aggregates, median, percentiles,
/// fill, …): the same encoders, no region reports (a region that does not answer fails
/// the query rather than leaving it partial).
async fn extended_query(
    state: Shared,
    params: HashMap<String, String>,
    started: std::time::Instant,
) -> Response {
    let metrics = state.engine.metrics().clone();
    // Parameters the native API checks, checked the same way (format, epoch, names).
    let mut checked = params.clone();
    checked.remove("fill");
    checked.insert("agg".into(), "count".into());
    let spec = match QuerySpec::from_params(&checked) {
        Ok(s) => s,
        Err(e) => {
            metrics.query_errors.fetch_add(1, Relaxed);
            return DialectError(Dialect::Api, ApiError::BadRequest(e)).into_response();
        }
    };
    let ctx = super::influxql::statement_ctx(&state, params.get("db").cloned(), started);
    let result = crate::query::influxql::native::run(&ctx, &params).await;
    metrics.queries.fetch_add(1, Relaxed);
    metrics
        .query_micros
        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            metrics.query_errors.fetch_add(1, Relaxed);
            let err = if e.contains(crate::query::budget::OVER_QUERY_MEMORY) {
                ApiError::PayloadTooLarge(e)
            } else if e.contains(crate::query::budget::OVER_TOTAL_MEMORY)
                || e.contains("not every region answered")
            {
                ApiError::Unavailable(e)
            } else {
                ApiError::BadRequest(e)
            };
            return DialectError(Dialect::Api, err).into_response();
        }
    };
    let (format, epoch, group_by) = (spec.format, spec.epoch, spec.group_by.clone());
    encode(&state, result, format, epoch, group_by, None)
}

/// `GET /api/v1/internal/schema?db=NAME`: another node's InfluxQL front end asks for the
/// columns this node knows (those of the regions it hosts), to expand wildcards and answer
/// SHOW statements over every region.
pub async fn internal_schema(State(state): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let qp = super::write::parse_params(q.as_deref());
    let Some(db) = qp.get("db") else {
        return DialectError(
            Dialect::Api,
            ApiError::BadRequest("missing required parameter `db`".into()),
        )
        .into_response();
    };
    let measurements = state
        .engine
        .live_measurements(db)
        .into_iter()
        .map(|(m, schema)| {
            let mut cols: Vec<(String, crate::model::ColumnKind)> =
                schema.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            cols.sort_by(|a, b| a.0.cmp(&b.0));
            (m.to_string(), cols)
        })
        .collect();
    Json(crate::query::remote::WireSchema { measurements }).into_response()
}

/// `POST /api/v1/internal/partial?region=NAME`: another node's coordinator asks for this
/// node's partial answer for one hosted region (body: the query parameters as JSON strings).
pub async fn internal_partial(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let bad = |m: String| DialectError(Dialect::Api, ApiError::BadRequest(m)).into_response();
    let qp = super::write::parse_params(q.as_deref());
    let Some(name) = qp.get("region") else {
        return bad("missing required parameter `region`".into());
    };
    let Some(idx) = state
        .engine
        .regions()
        .iter()
        .position(|r| &*r.name == name.as_str())
    else {
        return bad(format!(
            "unknown region {:?}",
            crate::model::truncate(name, 64)
        ));
    };
    if !state.engine.regions()[idx].hosted() {
        return DialectError(
            Dialect::Api,
            ApiError::Unavailable(format!("region {name:?} is not hosted by this node")),
        )
        .into_response();
    }
    let bytes = match read_body(&state.engine, &headers, body, query_body_limits(&state)).await {
        Ok(b) => b,
        Err(e) => return DialectError(Dialect::Api, e).into_response(),
    };
    let params: HashMap<String, String> = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => return bad(format!("invalid JSON body: {e}")),
    };
    let qc = &state.config.query;
    let spec = match QuerySpec::from_params(&params) {
        Ok(mut s) => {
            s.deadline = Some(started + qc.timeout);
            s.budget = Some(Arc::new(state.query_memory.budget()));
            Arc::new(s)
        }
        Err(e) => return bad(e),
    };
    // Residency: what the region keeps on its own nodes is not sent to another.
    // One reading of the rule for both checks (published definitions may replace it).
    let export = state.engine.regions()[idx].reach().export;
    let refusal = crate::query::export_refusal(name, export, &spec);
    let region = crate::model::RegionId(idx);
    // A refused kind of answer is refused when it holds anything: an answer with no group
    // carries no point (a query not pruned to its regions, such as one whose filter names
    // no geography, asks every region). Whether it holds anything takes a scan stopped at
    // the second row or group (`max_rows` 1), so a refusal stays cheap.
    let max_rows = match refusal {
        Some(_) => 1,
        None => state.config.query.max_rows,
    };
    let scanned = crate::query::scan_local(&state.engine, region, spec, max_rows).await;
    match (scanned, refusal) {
        (Ok((partial, _)), Some(m)) if !partial.is_empty() => {
            DialectError(Dialect::Api, ApiError::Forbidden(m)).into_response()
        }
        (Err(_), Some(m)) => DialectError(Dialect::Api, ApiError::Forbidden(m)).into_response(),
        (Ok((partial, stats)), _) => Json(WireAnswer {
            partial: crate::query::for_export(export, partial).into(),
            stats,
        })
        .into_response(),
        (Err(e), _) => DialectError(Dialect::Api, ApiError::Unavailable(e)).into_response(),
    }
}
