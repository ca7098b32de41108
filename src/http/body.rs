//! Request bodies: size limit (413), optional gzip (bounded inflation), never unbounded;
//! read into reused buffers.

use std::io::Read;
use std::ops::Deref;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use http_body_util::BodyExt;

use super::error::ApiError;
use crate::bufpool::BODIES;
use crate::region::Engine;

/// Request body bytes counted against `memory.limit` (with the in-memory blocks); given
/// back when dropped.
pub struct Reservation {
    engine: Arc<Engine>,
    held: u64,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({} bytes)", self.held)
    }
}

impl Reservation {
    pub fn new(engine: &Arc<Engine>) -> Reservation {
        Reservation {
            engine: engine.clone(),
            held: 0,
        }
    }

    /// Bytes counted by this reservation.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Makes the reservation at least `total` bytes, or refuses (nothing more counted).
    pub fn cover(&mut self, total: u64) -> bool {
        if total <= self.held {
            return true;
        }
        let more = total - self.held;
        if self.engine.reserve_request_bytes(more) {
            self.held = total;
            true
        } else {
            false
        }
    }

    pub fn over_limit(&self) -> ApiError {
        ApiError::Overloaded(format!(
            "request bodies being read and in-memory data would exceed memory.limit ({} bytes); retry shortly",
            self.engine.memory_limit()
        ))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.engine.release_request_bytes(self.held);
    }
}

/// A request body's bytes, in a buffer of [`BODIES`] (given back when dropped), counted
/// against `memory.limit` until then.
#[derive(Debug, Default)]
pub struct ReqBody {
    buf: Vec<u8>,
    reservation: Option<Reservation>,
}

impl ReqBody {
    /// An empty body with room for `hint` bytes.
    fn with_capacity(hint: usize, reservation: Option<Reservation>) -> ReqBody {
        ReqBody {
            buf: BODIES.take(hint),
            reservation,
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

/// How a body may be read.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Bytes, before and after gzip inflation.
    pub max_bytes: u64,
    /// The longest gap between two parts of the body.
    pub gap: Duration,
}

/// Reads a body of at most `limits.max_bytes` bytes, inflating gzip to at most that too.
/// Every byte held (raw and inflated) is counted against `memory.limit` before it is read
/// (503 when there is no room); a client that sends nothing for `limits.gap` gets a 408.
pub async fn read_body(
    engine: &Arc<Engine>,
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> Result<ReqBody, ApiError> {
    let limit = limits.max_bytes;
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
    // Room for the declared length up to 4 MiB, counted now (a client that declares a
    // large body and then stalls holds no more than that); the rest is counted as it comes.
    let hint = declared.unwrap_or(0).min(4 << 20);
    let mut reservation = Reservation::new(engine);
    if !reservation.cover(hint) {
        return Err(reservation.over_limit());
    }
    let mut raw = ReqBody::with_capacity(hint as usize, None);
    // A pooled buffer may be larger than asked: what it holds is counted.
    if !reservation.cover(raw.buf.capacity() as u64) {
        return Err(reservation.over_limit());
    }
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout(limits.gap, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                return Err(ApiError::RequestTimeout(format!(
                    "no request body bytes for {} ms (http.body_timeout); {} bytes read",
                    limits.gap.as_millis(),
                    raw.buf.len()
                )));
            }
        };
        let frame = frame
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let total = (raw.buf.len() + data.len()) as u64;
            if total > limit {
                return Err(too_large());
            }
            if !grow_counted(&mut raw.buf, data.len(), limit, &mut |n| {
                reservation.cover(n)
            }) {
                return Err(reservation.over_limit());
            }
            raw.buf.extend_from_slice(&data);
        }
    }
    raw.reservation = Some(reservation);
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
            let mut inflated = Reservation::new(engine);
            tokio::task::spawn_blocking(move || {
                let out = gunzip(&raw, limit, &mut |n| inflated.cover(n));
                out.map(|mut b| {
                    b.reservation = Some(inflated);
                    b
                })
            })
            .await
            .map_err(|e| ApiError::Unavailable(format!("decompression task failed: {e}")))?
            .map_err(|e| match e {
                GunzipError::TooLarge => ApiError::PayloadTooLarge(format!(
                    "gzip body of {raw_len} bytes inflates beyond the limit of {limit} bytes (http.max_body_bytes)"
                )),
                GunzipError::NoMemory => ApiError::Overloaded(format!(
                    "inflating the gzip body would exceed memory.limit ({} bytes) with the data and bodies held now; retry shortly",
                    engine.memory_limit()
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
    /// `reserve` refused room for more inflated bytes.
    NoMemory,
    Invalid(String),
}

/// Inflates a gzip stream (multi-member allowed) to at most `limit` bytes, asking `reserve`
/// for room (the total inflated so far plus the next chunk) before each chunk is kept.
pub fn gunzip(
    raw: &[u8],
    limit: u64,
    reserve: &mut dyn FnMut(u64) -> bool,
) -> Result<ReqBody, GunzipError> {
    const CHUNK: usize = 256 << 10;
    let mut out = ReqBody::with_capacity(0, None);
    // A pooled buffer may come with room already: what it holds is counted.
    if !reserve(out.buf.capacity() as u64) {
        return Err(GunzipError::NoMemory);
    }
    let mut dec = flate2::read::MultiGzDecoder::new(raw).take(limit + 1);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match dec.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(GunzipError::Invalid(e.to_string())),
        };
        let total = (out.buf.len() + n) as u64;
        if total > limit {
            return Err(GunzipError::TooLarge);
        }
        if !grow_counted(&mut out.buf, n, limit, reserve) {
            return Err(GunzipError::NoMemory);
        }
        out.buf.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// Makes room in `buf` for `more` bytes, asking `reserve` for its whole new capacity first:
/// what a growing buffer holds is its capacity, up to twice its length, not its length. It
/// grows as a `Vec` would (doubling, which keeps appends cheap), but never past `limit`.
fn grow_counted(
    buf: &mut Vec<u8>,
    more: usize,
    limit: u64,
    reserve: &mut dyn FnMut(u64) -> bool,
) -> bool {
    let need = buf.len() + more;
    if need <= buf.capacity() {
        return true;
    }
    let cap = (buf.capacity() * 2)
        .max(need)
        .min(usize::try_from(limit).unwrap_or(usize::MAX).max(need));
    if !reserve(cap as u64) {
        return false;
    }
    buf.reserve_exact(cap - buf.len());
    true
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
        assert_eq!(
            &gunzip(&gz(b"cpu v=1"), 100, &mut |_| true).unwrap()[..],
            b"cpu v=1"
        );
        // A small bomb: 1 MB of zeros, limit 1 KB.
        let bomb = gz(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 4096);
        assert!(matches!(
            gunzip(&bomb, 1024, &mut |_| true),
            Err(GunzipError::TooLarge)
        ));
        assert!(matches!(
            gunzip(b"definitely not gzip", 1024, &mut |_| true),
            Err(GunzipError::Invalid(_))
        ));
        let mut truncated = gz(b"cpu v=1 1\ncpu v=2 2\n");
        truncated.truncate(truncated.len() - 6);
        assert!(matches!(
            gunzip(&truncated, 1024, &mut |_| true),
            Err(GunzipError::Invalid(_))
        ));
        // Room is asked before each chunk is kept: a refusal stops the inflation.
        let big = gz(&vec![b'x'; 3 << 20]);
        let mut asked = Vec::new();
        let r = gunzip(&big, 8 << 20, &mut |n| {
            asked.push(n);
            n <= 1 << 20
        });
        assert!(matches!(r, Err(GunzipError::NoMemory)));
        assert!(asked.windows(2).all(|w| w[0] < w[1]) && *asked.last().unwrap() > 1 << 20);
    }
}
