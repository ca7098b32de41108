//! The write validator: a request body → lines that are checked and routed.
//!
//! Stages, each a type: the body is *parsed* (`lineproto`), each line *checked* (names,
//! reserved keys, timestamp and precision, column kinds against the schema registry) and
//! *routed* (region, partition, shard). What comes out, [`PreparedWrite`], can no longer be
//! rejected line by line: committing it can only fail as a whole (WAL I/O, overload).
//! CPU-bound; run it off the async reactor.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::lineproto::{self, FieldValue, ParsedLine};
use crate::model::{ColumnKind, Precision, RESERVED_KEYS, RegionId, ShardId, truncate};
use crate::region::block::field_type_of;
use crate::region::schema::{PartitionSchema, SchemaRegistry};
use crate::router::{Router, series_hash, shard_of};
use crate::storage::paths::{MAX_ENCODED_MEASUREMENT, encoded_measurement_len};

/// Longest `original_line` echoed back in an error.
const MAX_ECHO: usize = 256;
/// How many rejected lines are described in a response.
pub const MAX_REPORTED: usize = 100;

/// A line of the body accepted for one shard.
#[derive(Debug, Clone, Copy)]
pub struct LineRef {
    /// Byte range of the line in the body (no EOL).
    pub start: usize,
    pub end: usize,
    /// Timestamp in ns, precision applied.
    pub ts: i64,
    pub series_hash: u64,
}

/// Everything one shard must append for one request.
#[derive(Debug, Clone)]
pub struct ShardBatch {
    pub db: Arc<str>,
    pub body: Bytes,
    pub lines: Vec<LineRef>,
}

impl ShardBatch {
    /// WAL payload: db, then (ts, line) pairs. Self-contained, so replay needs no request.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 + self.db.len()
                + self
                    .lines
                    .iter()
                    .map(|l| 12 + l.end - l.start)
                    .sum::<usize>(),
        );
        out.extend_from_slice(&(self.db.len() as u32).to_le_bytes());
        out.extend_from_slice(self.db.as_bytes());
        out.extend_from_slice(&(self.lines.len() as u32).to_le_bytes());
        for l in &self.lines {
            out.extend_from_slice(&l.ts.to_le_bytes());
            out.extend_from_slice(&((l.end - l.start) as u32).to_le_bytes());
            out.extend_from_slice(&self.body[l.start..l.end]);
        }
        out
    }
}

/// A WAL payload decoded: the db and its (ts, line) pairs.
pub struct DecodedBatch<'a> {
    pub db: &'a str,
    pub lines: Vec<(i64, &'a [u8])>,
}

/// Inverse of [`ShardBatch::encode`]; `None` for bytes it could not have produced.
pub fn decode_batch(p: &[u8]) -> Option<DecodedBatch<'_>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if p.len() < n {
            return None;
        }
        let (a, b) = p.split_at(n);
        *p = b;
        Some(a)
    }
    let mut p = p;
    let dblen = u32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?) as usize;
    let db = std::str::from_utf8(take(&mut p, dblen)?).ok()?;
    let n = u32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?) as usize;
    let mut lines = Vec::with_capacity(n.min(p.len() / 12));
    for _ in 0..n {
        let ts = i64::from_le_bytes(take(&mut p, 8)?.try_into().ok()?);
        let len = u32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?) as usize;
        lines.push((ts, take(&mut p, len)?));
    }
    p.is_empty().then_some(DecodedBatch { db, lines })
}

/// A line the server refused, as reported to the client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejected {
    pub line_number: usize,
    pub original_line: String,
    pub error_message: String,
}

/// The outcome of the check stage.
#[derive(Debug, Default)]
pub struct PreparedWrite {
    pub batches: Vec<((RegionId, ShardId), ShardBatch)>,
    /// The first [`MAX_REPORTED`] rejected lines.
    pub rejected: Vec<Rejected>,
    pub rejected_count: usize,
    pub accepted: usize,
    pub fields_accepted: usize,
}

/// Sorted tags of a line, borrowed.
pub fn sorted_tags<'l>(line: &'l ParsedLine<'_>) -> Vec<(&'l str, &'l str)> {
    let mut tags: Vec<(&str, &str)> = line
        .tags
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    tags.sort_unstable_by(|a, b| a.0.cmp(b.0));
    tags
}

/// Checks that do not depend on the registry.
fn check_names(line: &ParsedLine<'_>) -> Result<(), String> {
    if encoded_measurement_len(&line.measurement) > MAX_ENCODED_MEASUREMENT {
        return Err(format!(
            "measurement name {:?}... is too long (its file-system form exceeds {MAX_ENCODED_MEASUREMENT} bytes)",
            truncate(&line.measurement, 32)
        ));
    }
    for (k, _) in &line.tags {
        if RESERVED_KEYS.contains(&k.as_ref()) {
            return Err(format!(
                "tag key {k:?} is reserved (the time column and partition directory keys {RESERVED_KEYS:?} cannot be tags)"
            ));
        }
    }
    for (k, _) in &line.fields {
        if RESERVED_KEYS.contains(&k.as_ref()) {
            return Err(format!(
                "field key {k:?} is reserved (the time column and partition directory keys {RESERVED_KEYS:?} cannot be fields)"
            ));
        }
        if line.tags.iter().any(|(t, _)| t == k) {
            return Err(format!(
                "key {:?} is used as both a tag and a field",
                truncate(k, 64)
            ));
        }
    }
    Ok(())
}

/// Parses, checks and routes a request body.
pub fn prepare(
    router: &Router,
    registry: &SchemaRegistry,
    shards_per_region: usize,
    db: &str,
    body: Bytes,
    precision: Precision,
    now_ns: i64,
) -> PreparedWrite {
    let db: Arc<str> = Arc::from(db);
    let mut out = PreparedWrite::default();
    let mut by_shard: HashMap<(RegionId, ShardId), Vec<LineRef>> = HashMap::new();
    // Most bodies hold one measurement and partition: remember the last schema used.
    let mut last_schema: Option<(String, i64, Arc<PartitionSchema>)> = None;
    let base = body.as_ptr() as usize;

    for item in lineproto::lines(&body) {
        let reject = |out: &mut PreparedWrite, msg: String| {
            out.rejected_count += 1;
            if out.rejected.len() < MAX_REPORTED {
                let text = String::from_utf8_lossy(item.text);
                out.rejected.push(Rejected {
                    line_number: item.line_number,
                    original_line: truncate(&text, MAX_ECHO).to_string(),
                    error_message: msg,
                });
            }
        };
        let line = match &item.result {
            Ok(l) => l,
            Err(e) => {
                reject(&mut out, e.to_string());
                continue;
            }
        };
        if let Err(msg) = check_names(line) {
            reject(&mut out, msg);
            continue;
        }
        let ts = match line.timestamp {
            Some(t) => match precision.to_nanos(t) {
                Ok(ts) => ts,
                Err(msg) => {
                    reject(&mut out, msg);
                    continue;
                }
            },
            None => precision.now(now_ns),
        };
        let tags = sorted_tags(line);
        let (region, _) = router.route(&tags);
        let partition = router.partition(ts);

        // Column kinds against the registry: fast path without the lock when nothing is new.
        let known = match &last_schema {
            Some((m, p, s)) if *p == partition.0 && m.as_str() == line.measurement.as_ref() => {
                tags.iter()
                    .all(|(k, _)| s.get(*k) == Some(&ColumnKind::Tag))
                    && line.fields.iter().all(|(k, v)| {
                        s.get(k.as_ref()) == Some(&ColumnKind::Field(field_type_of(v)))
                    })
            }
            _ => false,
        };
        if !known {
            let mut cols: Vec<(&str, ColumnKind)> =
                tags.iter().map(|(k, _)| (*k, ColumnKind::Tag)).collect();
            cols.extend(line.fields.iter().map(|(k, v): &(_, FieldValue<'_>)| {
                (k.as_ref(), ColumnKind::Field(field_type_of(v)))
            }));
            match registry.check_and_add(&db, &line.measurement, partition, &cols) {
                Ok(schema) => {
                    last_schema = Some((line.measurement.to_string(), partition.0, schema))
                }
                Err(msg) => {
                    reject(&mut out, msg);
                    continue;
                }
            }
        }

        let hash = series_hash(&line.measurement, &tags);
        let shard = shard_of(hash, shards_per_region);
        let start = item.text.as_ptr() as usize - base;
        by_shard.entry((region, shard)).or_default().push(LineRef {
            start,
            end: start + item.text.len(),
            ts,
            series_hash: hash,
        });
        out.accepted += 1;
        out.fields_accepted += line.fields.len();
    }

    let mut batches: Vec<_> = by_shard
        .into_iter()
        .map(|(k, lines)| {
            (
                k,
                ShardBatch {
                    db: db.clone(),
                    body: body.clone(),
                    lines,
                },
            )
        })
        .collect();
    batches.sort_by_key(|(k, _)| *k);
    out.batches = batches;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn setup() -> (Router, SchemaRegistry) {
        let cfg = Config::parse(include_str!("../../regions.toml")).unwrap();
        (Router::new(&cfg.routing).unwrap(), SchemaRegistry::new())
    }

    fn run(body: &str, precision: Precision) -> PreparedWrite {
        let (r, reg) = setup();
        prepare(
            &r,
            &reg,
            2,
            "db",
            Bytes::from(body.to_string()),
            precision,
            1_700_000_000_123_456_789,
        )
    }

    #[test]
    fn routes_and_reports_bad_lines_with_numbers() {
        let body = "cpu,region=eu-west-1,host=a v=1 10\n\
                    # comment\n\
                    cpu,region=us-east-1 v=2 20\n\
                    bad line here\n\
                    cpu,time=x v=1 30\n\
                    cpu v=1i 40\n\
                    cpu,region=ap-south-1 v=3\r\n";
        let p = run(body, Precision::Nanosecond);
        assert_eq!(p.accepted, 3);
        assert_eq!(p.rejected_count, 3);
        let nums: Vec<usize> = p.rejected.iter().map(|r| r.line_number).collect();
        assert_eq!(nums, vec![4, 5, 6]);
        assert!(
            p.rejected[1].error_message.contains("reserved"),
            "{:?}",
            p.rejected[1]
        );
        assert!(
            p.rejected[2].error_message.contains("type float"),
            "{:?}",
            p.rejected[2]
        );
        assert_eq!(p.rejected[0].original_line, "bad line here");
        let regions: std::collections::BTreeSet<usize> =
            p.batches.iter().map(|((r, _), _)| r.0).collect();
        assert_eq!(regions.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        // Missing timestamp → server time at the precision; lines point into the body.
        let (_, apac) = p.batches.iter().find(|((r, _), _)| r.0 == 2).unwrap();
        assert_eq!(apac.lines[0].ts, 1_700_000_000_123_456_789);
        assert_eq!(
            &apac.body[apac.lines[0].start..apac.lines[0].end],
            b"cpu,region=ap-south-1 v=3"
        );
    }

    #[test]
    fn precision_and_overflow() {
        let p = run("m v=1 5\nm v=1 9223372036854775\n", Precision::Second);
        assert_eq!(p.accepted, 1);
        assert_eq!(p.batches[0].1.lines[0].ts, 5_000_000_000);
        assert!(p.rejected[0].error_message.contains("overflows"));
        let p = run("m v=1\n", Precision::Second);
        assert_eq!(p.batches[0].1.lines[0].ts, 1_700_000_000_000_000_000);
    }

    #[test]
    fn same_series_same_shard_and_wal_payload_round_trips() {
        let body = "m,host=a v=1 1\nm,host=a v=2 2\nm,host=b v=3 3\n";
        let p = run(body, Precision::Nanosecond);
        let total: usize = p.batches.iter().map(|(_, b)| b.lines.len()).sum();
        assert_eq!(total, 3);
        let holder: Vec<_> = p
            .batches
            .iter()
            .filter(|(_, b)| {
                b.lines
                    .iter()
                    .any(|l| &b.body[l.start..l.end] == b"m,host=a v=1 1")
            })
            .collect();
        assert_eq!(holder.len(), 1);
        assert!(
            holder[0]
                .1
                .lines
                .iter()
                .any(|l| &holder[0].1.body[l.start..l.end] == b"m,host=a v=2 2")
        );
        for (_, b) in &p.batches {
            let enc = b.encode();
            let d = decode_batch(&enc).unwrap();
            assert_eq!(d.db, "db");
            assert_eq!(d.lines.len(), b.lines.len());
            for ((ts, text), l) in d.lines.iter().zip(&b.lines) {
                assert_eq!(*ts, l.ts);
                assert_eq!(*text, &b.body[l.start..l.end]);
            }
            assert!(decode_batch(&enc[..enc.len() - 1]).is_none());
        }
    }

    #[test]
    fn tag_and_field_with_same_key_is_rejected() {
        let p = run("m,k=a k=1 1\n", Precision::Nanosecond);
        assert_eq!(p.accepted, 0);
        assert!(
            p.rejected[0]
                .error_message
                .contains("both a tag and a field")
        );
    }
}
