//! Process-wide counters, rendered in the Prometheus text format at `GET /metrics`.
//!
//! Plain atomics: incremented on hot paths without locks, read when rendered.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::storage::pages::PageCacheUsage;

/// The write endpoints, as metric labels.
pub const ENDPOINTS: [&str; 3] = ["v1", "v2", "v3"];

#[derive(Default)]
pub struct Metrics {
    pub points_written: [AtomicU64; 3],
    pub points_rejected: [AtomicU64; 3],
    pub write_requests: [AtomicU64; 3],
    pub write_overloaded: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub wal_records: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    pub flush_rows: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub flush_micros: AtomicU64,
    pub memory_bytes: AtomicU64,
    /// Bytes of request bodies being read, inflated or checked (counted against the limit).
    pub request_bytes: AtomicU64,
    /// The largest memory cost of a body refused for want of room since the last admitted
    /// one: shards count it as pressure, so they flush even below the high-water mark.
    pub waiting_bytes: AtomicU64,
    pub queries: AtomicU64,
    pub query_errors: AtomicU64,
    pub query_micros: AtomicU64,
    pub replayed_records: AtomicU64,
    pub replayed_points: AtomicU64,
}

impl Metrics {
    /// The text exposition; `index_cache` is (files, bytes) of the series index cache,
    /// `pages` the use of the decoded page cache.
    /// `series_catalog` the bytes of the series catalog.
    pub fn render(
        &self,
        index_cache: (usize, usize),
        pages: PageCacheUsage,
        series_catalog: u64,
    ) -> String {
        let mut s = String::new();
        let mut metric =
            |name: &str, help: &str, kind: &str, values: Vec<(Option<&str>, String)>| {
                let _ = writeln!(s, "# HELP {name} {help}");
                let _ = writeln!(s, "# TYPE {name} {kind}");
                for (label, v) in values {
                    match label {
                        Some(l) => {
                            let _ = writeln!(s, "{name}{{endpoint=\"{l}\"}} {v}");
                        }
                        None => {
                            let _ = writeln!(s, "{name} {v}");
                        }
                    }
                }
            };
        let per = |a: &[AtomicU64; 3]| -> Vec<(Option<&'static str>, String)> {
            ENDPOINTS
                .iter()
                .zip(a)
                .map(|(e, v)| (Some(*e), v.load(Relaxed).to_string()))
                .collect()
        };
        let one = |a: &AtomicU64| vec![(None, a.load(Relaxed).to_string())];
        let secs = |a: &AtomicU64| vec![(None, format!("{:.6}", a.load(Relaxed) as f64 / 1e6))];
        let c = "counter";
        metric(
            "meridian_points_written_total",
            "Points acknowledged.",
            c,
            per(&self.points_written),
        );
        metric(
            "meridian_points_rejected_total",
            "Lines rejected as invalid.",
            c,
            per(&self.points_rejected),
        );
        metric(
            "meridian_write_requests_total",
            "Write requests received.",
            c,
            per(&self.write_requests),
        );
        metric(
            "meridian_write_overloaded_total",
            "Write requests refused with 503.",
            c,
            one(&self.write_overloaded),
        );
        metric(
            "meridian_wal_bytes_total",
            "Bytes appended to the WAL.",
            c,
            one(&self.wal_bytes),
        );
        metric(
            "meridian_wal_syncs_total",
            "WAL fsyncs (one per group commit).",
            c,
            one(&self.wal_syncs),
        );
        metric(
            "meridian_wal_records_total",
            "WAL records appended.",
            c,
            one(&self.wal_records),
        );
        metric(
            "meridian_wal_replayed_records_total",
            "WAL records replayed at start-up.",
            c,
            one(&self.replayed_records),
        );
        metric(
            "meridian_wal_replayed_points_total",
            "Points replayed from the WAL at start-up.",
            c,
            one(&self.replayed_points),
        );
        metric(
            "meridian_flushes_total",
            "Blocks flushed to Parquet.",
            c,
            one(&self.flushes),
        );
        metric(
            "meridian_flush_failures_total",
            "Flush attempts that failed (retried).",
            c,
            one(&self.flush_failures),
        );
        metric(
            "meridian_flush_rows_total",
            "Rows written to Parquet by flushes.",
            c,
            one(&self.flush_rows),
        );
        metric(
            "meridian_flush_bytes_total",
            "Parquet bytes written by flushes.",
            c,
            one(&self.flush_bytes),
        );
        metric(
            "meridian_flush_duration_seconds_total",
            "Time spent flushing.",
            c,
            secs(&self.flush_micros),
        );
        metric(
            "meridian_memory_bytes",
            "Bytes held by in-memory blocks (active and flushing).",
            "gauge",
            one(&self.memory_bytes),
        );
        metric(
            "meridian_series_catalog_bytes",
            "Bytes held by the series catalog (they count against memory.limit).",
            "gauge",
            vec![(None, series_catalog.to_string())],
        );
        metric(
            "meridian_request_body_bytes",
            "Bytes of request bodies being read or checked (they count against memory.limit).",
            "gauge",
            one(&self.request_bytes),
        );
        metric(
            "meridian_index_cache_files",
            "Parquet files whose series index is in memory.",
            "gauge",
            vec![(None, index_cache.0.to_string())],
        );
        metric(
            "meridian_index_cache_bytes",
            "Approximate memory of the series indexes (bounded by query.index_cache).",
            "gauge",
            vec![(None, index_cache.1.to_string())],
        );
        metric(
            "meridian_page_cache_pages",
            "Decoded Parquet pages kept for selective reads.",
            "gauge",
            vec![(None, pages.pages.to_string())],
        );
        metric(
            "meridian_page_cache_bytes",
            "Memory of the decoded pages (bounded by query.page_cache).",
            "gauge",
            vec![(None, pages.bytes.to_string())],
        );
        metric(
            "meridian_page_cache_hits_total",
            "Pages of selective reads found decoded in memory.",
            c,
            vec![(None, pages.hits.to_string())],
        );
        metric(
            "meridian_page_cache_misses_total",
            "Pages of selective reads read from their file.",
            c,
            vec![(None, pages.misses.to_string())],
        );
        metric(
            "meridian_queries_total",
            "Queries answered.",
            c,
            one(&self.queries),
        );
        metric(
            "meridian_query_errors_total",
            "Queries refused or failed.",
            c,
            one(&self.query_errors),
        );
        metric(
            "meridian_query_duration_seconds_total",
            "Time spent answering queries.",
            c,
            secs(&self.query_micros),
        );
        s
    }
}
