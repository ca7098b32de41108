//! The only place where errors become HTTP statuses and bodies.
//!
//! v1/v2 bodies: `{"code":"invalid","message":...}` (InfluxDB 1.8+/2 shape); v3 bodies:
//! `{"error":..., "data":[{"original_line","line_number","error_message"}]}` (InfluxDB 3 shape).

use crate::cluster::DispatchError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::region::prepare::Rejected;
use crate::region::{CommitError, WriteError};

/// Which API dialect shapes the error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    V1,
    V2,
    V3,
    /// Query and admin endpoints: `{"error": ...}`.
    Api,
}

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized,
    /// 403: a rule forbids it (a region's residency).
    Forbidden(String),
    NotFound(String),
    PayloadTooLarge(String),
    /// 408: the client was too slow sending its request.
    RequestTimeout(String),
    /// 503 with Retry-After: the client should retry; nothing was acknowledged.
    Overloaded(String),
    InsufficientStorage(String),
    Unavailable(String),
    /// Some lines were rejected (and, unless `none_written`, the others written).
    Partial {
        rejected: Vec<Rejected>,
        rejected_count: usize,
        written: usize,
        none_written: bool,
    },
}

/// An error in a dialect.
pub struct DialectError(pub Dialect, pub ApiError);

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::Overloaded(m) => ApiError::Overloaded(m),
            WriteError::TooLarge(m) => ApiError::PayloadTooLarge(m),
            WriteError::Commit(CommitError::DiskFull(m)) => ApiError::InsufficientStorage(format!(
                "write not accepted, nothing was acknowledged: {m}"
            )),
            WriteError::Commit(e @ CommitError::Io(_)) => {
                ApiError::Unavailable(format!("write not accepted, nothing was acknowledged: {e}"))
            }
            WriteError::Commit(CommitError::ShuttingDown) => {
                ApiError::Unavailable("server is shutting down".into())
            }
            WriteError::NotHosted(r) => {
                ApiError::Unavailable(format!("region {r:?} is not hosted by this node"))
            }
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> ApiError {
        match e {
            DispatchError::Local(e) => e.into(),
            DispatchError::Remote { status, message } => match status {
                507 => ApiError::InsufficientStorage(message),
                400 => ApiError::BadRequest(message),
                _ => ApiError::Overloaded(message),
            },
            DispatchError::TooLarge(m) => ApiError::PayloadTooLarge(m),
            DispatchError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Partial { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Overloaded(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::Partial { .. } => "invalid",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not found",
            ApiError::PayloadTooLarge(_) => "request too large",
            ApiError::RequestTimeout(_) => "request timeout",
            ApiError::Overloaded(_) | ApiError::Unavailable(_) => "unavailable",
            ApiError::InsufficientStorage(_) => "insufficient storage",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::RequestTimeout(m)
            | ApiError::Overloaded(m)
            | ApiError::InsufficientStorage(m)
            | ApiError::Unavailable(m) => m.clone(),
            ApiError::Unauthorized => {
                "authorization failed: send `Authorization: Token <token>` (or Bearer) with a configured token".into()
            }
            ApiError::Partial {
                rejected,
                rejected_count,
                written,
                none_written,
            } => {
                let first = rejected
                    .first()
                    .map(|r| format!("line {}: {}", r.line_number, r.error_message))
                    .unwrap_or_default();
                if *none_written {
                    format!(
                        "write rejected: {rejected_count} invalid line(s), nothing written (accept_partial=false); first: {first}"
                    )
                } else {
                    format!("partial write: {first}; {written} line(s) written, {rejected_count} rejected")
                }
            }
        }
    }
}

impl IntoResponse for DialectError {
    fn into_response(self) -> Response {
        let DialectError(dialect, err) = self;
        let status = err.status();
        let message = err.message();
        let body = match (dialect, &err) {
            (Dialect::V3, ApiError::Partial { rejected, .. }) => {
                json!({ "error": message, "data": rejected })
            }
            (Dialect::V3 | Dialect::Api, _) => json!({ "error": message }),
            (Dialect::V1 | Dialect::V2, _) => json!({ "code": err.code(), "message": message }),
        };
        let mut resp = (status, Json(body)).into_response();
        // Most errors are answered before the request body was read; a client that reuses
        // the connection would then send its next request after an unread body. Closing
        // makes that explicit. (Partial writes read the whole body and may keep it open.)
        if !matches!(err, ApiError::Partial { .. }) {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::Overloaded(_) = err {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::Unauthorized = err {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        resp
    }
}
