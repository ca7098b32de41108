//! The write endpoints: `/write` (v1), `/api/v2/write`, `/api/v3/write_lp`.
//!
//! Flow: parameters → body (limit, gzip) → prepare on a blocking thread (parse, check, route)
//! → commit (WAL, durable) → 204, or 400 naming the rejected lines (the valid ones are
//! written unless v3 `accept_partial=false`). Nothing is acknowledged before it is durable.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::body::{BodyLimits, Reservation, read_body};
use super::error::{ApiError, Dialect, DialectError};
use crate::cluster::Dispatch;
use crate::cluster::remote::FORWARDED_HEADER;
use crate::model::{Precision, is_safe_name, truncate};

/// Query parameters; a repeated key keeps its first value.
pub fn parse_params(q: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Some(q) = q {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
    }
    m
}

fn bool_param(
    params: &HashMap<String, String>,
    key: &str,
    default: bool,
) -> Result<bool, ApiError> {
    match params.get(key).map(|s| s.as_str()) {
        None => Ok(default),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!(
            "invalid {key} {:?}: use true or false",
            truncate(other, 32)
        ))),
    }
}

fn db_param(params: &HashMap<String, String>, key: &str) -> Result<String, ApiError> {
    let db = params
        .get(key)
        .ok_or_else(|| ApiError::BadRequest(format!("missing required parameter `{key}`")))?;
    if !is_safe_name(db) {
        return Err(ApiError::BadRequest(format!(
            "invalid {key} name {:?}: use 1-64 characters from A-Z, a-z, 0-9, '_' and '-', not starting with '-'",
            truncate(db, 64)
        )));
    }
    if let Some(why) = crate::model::db_name_problem(db) {
        return Err(ApiError::BadRequest(format!("{key}: {why}")));
    }
    Ok(db.clone())
}

struct WriteParams {
    db: String,
    precision: Precision,
    accept_partial: bool,
    sync: bool,
}

fn params_for(dialect: Dialect, q: Option<&str>) -> Result<WriteParams, ApiError> {
    let p = parse_params(q);
    let precision = |r: Result<Precision, String>| r.map_err(ApiError::BadRequest);
    Ok(match dialect {
        Dialect::V1 => WriteParams {
            db: db_param(&p, "db")?,
            precision: precision(Precision::parse_v1(p.get("precision").map(|s| s.as_str())))?,
            accept_partial: true,
            sync: true,
        },
        Dialect::V2 => WriteParams {
            db: db_param(&p, "bucket")?,
            precision: precision(Precision::parse_v2(p.get("precision").map(|s| s.as_str())))?,
            accept_partial: true,
            sync: true,
        },
        Dialect::V3 | Dialect::Api => WriteParams {
            db: db_param(&p, "db")?,
            precision: precision(Precision::parse_v3(p.get("precision").map(|s| s.as_str())))?,
            accept_partial: bool_param(&p, "accept_partial", true)?,
            sync: !bool_param(&p, "no_sync", false)?,
        },
    })
}

fn endpoint_index(d: Dialect) -> usize {
    match d {
        Dialect::V1 => 0,
        Dialect::V2 => 1,
        _ => 2,
    }
}

async fn write(
    dialect: Dialect,
    state: Shared,
    q: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match write_inner(dialect, &state, q, &headers, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            if let ApiError::Overloaded(_) = e {
                state
                    .engine
                    .metrics()
                    .write_overloaded
                    .fetch_add(1, Relaxed);
            }
            DialectError(dialect, e).into_response()
        }
    }
}

async fn write_inner(
    dialect: Dialect,
    state: &Shared,
    q: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let ep = endpoint_index(dialect);
    let metrics = state.engine.metrics().clone();
    metrics.write_requests[ep].fetch_add(1, Relaxed);
    let p = params_for(dialect, q.as_deref())?;
    if state.engine.over_memory_limit() {
        return Err(ApiError::Overloaded(
            "in-memory data is over the memory limit; retry when flushes have drained it".into(),
        ));
    }
    let limits = BodyLimits {
        max_bytes: state.config.http.max_body_bytes,
        gap: state.config.http.body_timeout,
    };
    let body = read_body(&state.engine, headers, body, limits).await?;
    // The checked rows (the WAL payloads, ~1.25x the body) are built before the body is
    // dropped: count them too, until the write is done.
    let mut rows_memory = Reservation::new(&state.engine);
    if !rows_memory.cover(body.len() as u64 * 5 / 4) {
        return Err(rows_memory.over_limit());
    }
    let engine = state.engine.clone();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let db = p.db.clone();
    let precision = p.precision;
    let prepared = tokio::task::spawn_blocking(move || engine.prepare(&db, &body, precision, now))
        .await
        .map_err(|e| ApiError::Unavailable(format!("write task failed: {e}")))?;
    metrics.points_rejected[ep].fetch_add(prepared.rejected_count as u64, Relaxed);
    // Lines this node cannot route now (routing versions): the whole body waits.
    if let Some(why) = prepared.unroutable_reason {
        return Err(ApiError::Unavailable(format!(
            "nothing was written: {} line(s) cannot be routed here now: {why}",
            prepared.unroutable
        )));
    }

    if prepared.rejected_count > 0 && !p.accept_partial {
        return Err(ApiError::Partial {
            rejected: prepared.rejected,
            rejected_count: prepared.rejected_count,
            written: 0,
            none_written: true,
        });
    }
    if prepared.accepted > 0 {
        state
            .engine
            .admit(prepared.memory_cost, rows_memory.held())
            .map_err(ApiError::from)?;
        let forwarded = headers.contains_key(FORWARDED_HEADER);
        state
            .writes
            .dispatch(Dispatch {
                db: p.db.clone(),
                parts: prepared.batches,
                sync: p.sync,
                forwarded,
            })
            .await
            .map_err(ApiError::from)?;
        metrics.points_written[ep].fetch_add(prepared.accepted as u64, Relaxed);
    }
    if prepared.rejected_count > 0 {
        return Err(ApiError::Partial {
            rejected: prepared.rejected,
            rejected_count: prepared.rejected_count,
            written: prepared.accepted,
            none_written: false,
        });
    }
    Ok(())
}

pub async fn write_v1(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Body,
) -> Response {
    write(Dialect::V1, s, q, h, body).await
}

pub async fn write_v2(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Body,
) -> Response {
    write(Dialect::V2, s, q, h, body).await
}

pub async fn write_v3(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Body,
) -> Response {
    write(Dialect::V3, s, q, h, body).await
}
