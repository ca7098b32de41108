//! The HTTP API (axum). Only this module knows HTTP types.
//!
//! Routes: writes (`write`), queries and admin (`query` handlers in [`api`]), `/health`,
//! `/ping`, `/metrics`. Authentication, when tokens are configured, is checked by one
//! middleware for everything but `/health` and `/ping`. Statuses are decided in [`error`].

pub mod api;
pub mod body;
pub mod error;
mod export;
pub mod influxql;
pub mod serve;
pub mod write;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::Config;
use crate::region::Engine;
use error::{ApiError, Dialect, DialectError};

/// What every handler can reach.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    /// Client for regions hosted by other nodes.
    pub remote: crate::query::remote::Nodes,
    /// Where checked writes go: this node and the regions' nodes, or JetStream.
    pub writes: Arc<dyn crate::cluster::WriteDispatch>,
    /// Cluster mode: what deletes wait for.
    pub barrier: Option<Arc<dyn crate::query::remote::WriteBarrier>>,
    /// The memory budget shared by running queries.
    pub query_memory: Arc<crate::query::budget::QueryMemory>,
}

pub type Shared = Arc<AppState>;

/// The token in `Authorization: Token T` / `Bearer T` / `Basic base64(user:T)`, or `?p=T`/`?token=T` (v1).
fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Token ")
            .or_else(|| v.strip_prefix("Bearer "))
        {
            return Some(t.trim().to_string());
        }
        if let Some(b) = v.strip_prefix("Basic ") {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            return text.split_once(':').map(|(_, p)| p.to_string());
        }
    }
    let q = query?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "p" || k == "token")
        .map(|(_, v)| v.into_owned())
}

fn token_ok(tokens: &[String], presented: &str) -> bool {
    // Compare every token in full so timing does not tell which prefix matched.
    tokens.iter().fold(false, |acc, t| {
        let eq = t.len() == presented.len()
            && t.bytes()
                .zip(presented.bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0;
        acc | eq
    })
}

async fn auth(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let http = &state.config.http;
    let tokens = &http.tokens;
    let path = req.uri().path();
    let metrics = path == "/metrics";
    // What only another node asks: with a node token, only that token is accepted there.
    let from_node = path == "/api/v1/internal/partial"
        || path == "/api/v1/internal/schema"
        || req
            .headers()
            .contains_key(crate::cluster::remote::FORWARDED_HEADER);
    if let (true, Some(node)) = (from_node, &http.node_token) {
        let ok = presented_token(req.headers(), req.uri().query())
            .is_some_and(|t| token_ok(std::slice::from_ref(node), &t));
        if ok {
            return next.run(req).await;
        }
        return DialectError(Dialect::Api, ApiError::Unauthorized).into_response();
    }
    if tokens.is_empty() || path == "/health" || path == "/ping" || (metrics && http.metrics_open) {
        return next.run(req).await;
    }
    let ok = presented_token(req.headers(), req.uri().query())
        .is_some_and(|t| token_ok(tokens, &t) || (metrics && token_ok(&http.metrics_tokens, &t)));
    if ok {
        return next.run(req).await;
    }
    let dialect = match path {
        "/write" => Dialect::V1,
        "/api/v2/write" => Dialect::V2,
        "/api/v3/write_lp" => Dialect::V3,
        _ => Dialect::Api,
    };
    DialectError(dialect, ApiError::Unauthorized).into_response()
}

async fn health() -> impl IntoResponse {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "pass", "name": "meridian"})),
    )
}

async fn ping() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [
            ("X-Influxdb-Version", "1.8.10-meridian"),
            ("X-Influxdb-Build", "OSS"),
        ],
    )
}

async fn metrics(State(state): State<Shared>) -> Response {
    // Reading the regions' directories and the manifests is file-system work.
    let engine = state.engine.clone();
    match tokio::task::spawn_blocking(move || engine.metrics().render(&engine.metrics_snapshot()))
        .await
    {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => DialectError(
            Dialect::Api,
            ApiError::Unavailable(format!("gathering metrics failed: {e}")),
        )
        .into_response(),
    }
}

/// The routes, as the `endpoint` label of request metrics (anything else is `other`, so a
/// client cannot make labels without bound).
const ROUTES: [&str; 13] = [
    "/write",
    "/api/v2/write",
    "/api/v3/write_lp",
    "/api/v1/query",
    "/query",
    "/api/v2/delete",
    "/api/v1/regions",
    "/api/v1/internal/partial",
    "/api/v1/internal/schema",
    "/health",
    "/ping",
    "/metrics",
    "other",
];

/// Times and counts every request (refused ones too) by its route.
async fn track(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let endpoint = ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other");
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state.engine.metrics().http.observe(
        endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn not_found() -> Response {
    DialectError(Dialect::Api, ApiError::NotFound("no such endpoint".into())).into_response()
}

/// The application router.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/write", post(write::write_v1))
        .route("/api/v2/write", post(write::write_v2))
        .route("/api/v3/write_lp", post(write::write_v3))
        .route("/api/v1/query", get(api::query_get).post(api::query_post))
        .route(
            "/query",
            get(influxql::query_get).post(influxql::query_post),
        )
        .route("/api/v2/delete", post(influxql::delete_v2))
        .route("/api/v1/regions", get(api::regions))
        .route("/api/v1/internal/partial", post(api::internal_partial))
        .route("/api/v1/internal/schema", get(api::internal_schema))
        .route("/health", get(health))
        .route("/ping", get(ping).head(ping))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_headers_and_query() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Token abcdefgh".parse().unwrap());
        assert_eq!(presented_token(&h, None).as_deref(), Some("abcdefgh"));
        h.insert(header::AUTHORIZATION, "Bearer xyz12345".parse().unwrap());
        assert_eq!(presented_token(&h, None).as_deref(), Some("xyz12345"));
        // Basic user:token
        h.insert(
            header::AUTHORIZATION,
            "Basic dTpzZWNyZXQxMjM=".parse().unwrap(),
        );
        assert_eq!(presented_token(&h, None).as_deref(), Some("secret123"));
        let empty = HeaderMap::new();
        assert_eq!(
            presented_token(&empty, Some("db=x&p=tok%2Fen")).as_deref(),
            Some("tok/en")
        );
        assert_eq!(presented_token(&empty, Some("db=x")), None);
        let tokens = vec!["abcdefgh".to_string()];
        assert!(token_ok(&tokens, "abcdefgh"));
        assert!(!token_ok(&tokens, "abcdefgX"));
        assert!(!token_ok(&tokens, "abcdefg"));
    }
}
