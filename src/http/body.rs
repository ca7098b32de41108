//! Request bodies: size limit (413), optional gzip (bounded inflation), never unbounded;
//! read into reused buffers.

use std::io::Read;
use std::ops::Deref;

use axum::body::Body;
use axum::http::HeaderMap;
use http_body_util::BodyExt;

use super::error::ApiError;
use crate::bufpool::BODIES;

/// A request body's bytes, in a buffer of [`BODIES`] (given back when dropped).
#[derive(Debug, Default)]
pub struct ReqBody {
    buf: Vec<u8>,
}

impl ReqBody {
    /// An empty body with room for `hint` bytes.
    fn with_capacity(hint: usize) -> ReqBody {
        ReqBody {
            buf: BODIES.take(hint),
        }
    }
}

impl Deref for ReqBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for ReqBody {
    fn drop(&mut self) {
        BODIES.give(std::mem::take(&mut self.buf));
    }
}

/// Reads a body of at most `limit` bytes, inflating gzip to at most `limit` bytes too.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<ReqBody, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "request body is larger than the limit of {limit} bytes (http.max_body_bytes); split it into smaller batches"
        ))
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    // Room for the declared length up to 4 MiB (a client that declares a large body and
    // then stalls holds no more than that), else grown as read.
    let mut raw = ReqBody::with_capacity(declared.unwrap_or(0).min(4 << 20) as usize);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if (raw.buf.len() + data.len()) as u64 > limit {
                return Err(too_large());
            }
            raw.buf.extend_from_slice(&data);
        }
    }
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
pub fn gunzip(raw: &[u8], limit: u64) -> Result<ReqBody, GunzipError> {
    let mut out = ReqBody::with_capacity(0);
    let mut dec = flate2::read::MultiGzDecoder::new(raw).take(limit + 1);
    dec.read_to_end(&mut out.buf)
        .map_err(|e| GunzipError::Invalid(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(GunzipError::TooLarge);
    }
    Ok(out)
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
