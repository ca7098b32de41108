//! Request bodies: size limit (413), optional gzip (bounded inflation), never unbounded.

use std::io::Read;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::ApiError;

/// Reads a body of at most `limit` bytes, inflating gzip to at most `limit` bytes too.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "request body is larger than the limit of {limit} bytes (http.max_body_bytes); split it into smaller batches"
        ))
    };
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    let collected = Limited::new(body, limit as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                too_large()
            } else {
                ApiError::BadRequest(format!("could not read the request body: {e}"))
            }
        })?;
    let raw = collected.to_bytes();
    let encoding = headers.get(axum::http::header::CONTENT_ENCODING).map(|v| {
        v.to_str()
            .unwrap_or("(not text)")
            .trim()
            .to_ascii_lowercase()
    });
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(raw),
        Some("gzip") | Some("x-gzip") => {
            let raw_len = raw.len();
            tokio::task::spawn_blocking(move || gunzip(&raw, limit))
                .await
                .map_err(|e| ApiError::Unavailable(format!("decompression task failed: {e}")))?
                .map_err(|e| match e {
                    GunzipError::TooLarge => ApiError::PayloadTooLarge(format!(
                        "gzip body of {raw_len} bytes inflates beyond the limit of {limit} bytes (http.max_body_bytes)"
                    )),
                    GunzipError::Invalid(m) => ApiError::BadRequest(format!("invalid gzip body: {m}")),
                })
        }
        Some(other) => Err(ApiError::BadRequest(format!(
            "unsupported Content-Encoding {:?}: send identity or gzip",
            crate::model::truncate(other, 32)
        ))),
    }
}

#[derive(Debug)]
pub enum GunzipError {
    TooLarge,
    Invalid(String),
}

/// Inflates a gzip stream (multi-member allowed) to at most `limit` bytes.
pub fn gunzip(raw: &[u8], limit: u64) -> Result<Bytes, GunzipError> {
    let mut out = Vec::new();
    let mut dec = flate2::read::MultiGzDecoder::new(raw).take(limit + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| GunzipError::Invalid(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(GunzipError::TooLarge);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_limits_and_errors() {
        assert_eq!(&gunzip(&gz(b"cpu v=1"), 100).unwrap()[..], b"cpu v=1");
        // A small bomb: 1 MB of zeros, limit 1 KB.
        let bomb = gz(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 4096);
        assert!(matches!(gunzip(&bomb, 1024), Err(GunzipError::TooLarge)));
        assert!(matches!(
            gunzip(b"definitely not gzip", 1024),
            Err(GunzipError::Invalid(_))
        ));
        let mut truncated = gz(b"cpu v=1 1\ncpu v=2 2\n");
        truncated.truncate(truncated.len() - 6);
        assert!(matches!(
            gunzip(&truncated, 1024),
            Err(GunzipError::Invalid(_))
        ));
    }
}
