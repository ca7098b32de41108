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
use crate::model::{Precision, is_safe_name, truncate};
use crate::query::remote::FORWARDED_HEADER;

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
        let (local, elsewhere): (Vec<_>, Vec<_>) = prepared
            .batches
            .into_iter()
            .partition(|((r, _), _)| state.engine.regions()[r.0].hosted());
        let forwards = forward_bodies(state, elsewhere, forwarded)?;
        let local_commit = async {
            if local.is_empty() {
                Ok(())
            } else {
                state
                    .engine
                    .commit(local, p.sync)
                    .await
                    .map_err(ApiError::from)
            }
        };
        let remote_commits = join_all_spawned(forwards.into_iter().map(|(url, region, body)| {
            let remote = state.remote.clone();
            let db = p.db.clone();
            let sync = p.sync;
            async move {
                remote
                    .forward_write(&url, &db, body, sync)
                    .await
                    .map_err(|(code, msg)| {
                        let msg = format!("region {region:?}: {msg}; nothing was acknowledged");
                        match code {
                            507 => ApiError::InsufficientStorage(msg),
                            400 => ApiError::BadRequest(msg),
                            _ => ApiError::Overloaded(msg),
                        }
                    })
            }
        }));
        let (l, r) = tokio::join!(local_commit, remote_commits);
        l?;
        for res in r {
            res?;
        }
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

/// Line protocol bodies (timestamps in ns) for batches of regions hosted by other nodes:
/// (url, region name, body).
fn forward_bodies(
    state: &Shared,
    batches: Vec<(
        (crate::model::RegionId, crate::model::ShardId),
        crate::region::prepare::ShardBatch,
    )>,
    already_forwarded: bool,
) -> Result<Vec<(String, String, String)>, ApiError> {
    let mut by_region: HashMap<usize, String> = HashMap::new();
    for ((r, _), b) in batches {
        let region = &state.engine.regions()[r.0];
        if already_forwarded {
            return Err(ApiError::Unavailable(format!(
                "region {:?} is not hosted by this node, which received the points from another node (check the regions' url settings)",
                region.name
            )));
        }
        if region.url.is_none() {
            return Err(ApiError::Unavailable(format!(
                "region {:?} is not hosted by this node and has no url in the config",
                region.name
            )));
        }
        let out = by_region.entry(r.0).or_default();
        // The payload was encoded by this request moments ago: it decodes.
        if let Some((_, rows)) = b.payload.decode() {
            for row in rows.map_while(Result::ok) {
                let line = crate::lineproto::ParsedLine {
                    measurement: row.measurement.into(),
                    tags: row
                        .tags
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                    fields: row.fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                    timestamp: Some(row.ts),
                };
                crate::lineproto::write_line(&line, out);
                out.push('\n');
            }
        }
    }
    Ok(by_region
        .into_iter()
        .filter_map(|(r, body)| {
            let region = &state.engine.regions()[r];
            region
                .url
                .clone()
                .map(|u| (u, region.name.to_string(), body))
        })
        .collect())
}

/// Runs futures concurrently as tasks and collects their outputs in order.
async fn join_all_spawned<F>(futs: impl Iterator<Item = F>) -> Vec<Result<(), ApiError>>
where
    F: std::future::Future<Output = Result<(), ApiError>> + Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap_or_else(|e| {
            Err(ApiError::Unavailable(format!(
                "forwarding task failed: {e}"
            )))
        }));
    }
    out
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
