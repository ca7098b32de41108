//! Metrics at `GET /metrics`, in the Prometheus text format, encoded by the `prometheus`
//! crate.
//!
//! Counters of the hot paths are plain atomics (incremented without locks, read when a
//! scrape comes); request latencies and status counts are the crate's histogram and counter
//! vectors; `process_*` comes from its process collector (Linux); the per-region and
//! per-shard gauges are read from the engine at scrape time ([`Snapshot`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

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
    /// `[[retention]]` in the background: passes run, partitions dropped, windows rolled
    /// up, units that failed (retried next pass).
    pub retention_passes: AtomicU64,
    pub retention_partitions_dropped: AtomicU64,
    pub retention_windows_rolled_up: AtomicU64,
    pub retention_failures: AtomicU64,
    /// Cluster mode (`cluster::jetstream`); rendered only there.
    pub cluster: ClusterMetrics,
    pub http: HttpMetrics,
}

/// The JetStream write path: bodies published, parts split off them, messages of the
/// regions' logs applied here, and the last stream sequence applied per hosted region.
#[derive(Default)]
pub struct ClusterMetrics {
    pub enabled: std::sync::atomic::AtomicBool,
    pub bodies_published: AtomicU64,
    /// Bodies JetStream stored after their sender had answered 503: dropped unsplit.
    pub bodies_expired: AtomicU64,
    pub parts_published: AtomicU64,
    pub messages_applied: AtomicU64,
    pub points_applied: AtomicU64,
    /// Lines a region's node refused when applying its log (checked differently than
    /// where they were received): logged, not stored.
    pub lines_refused: AtomicU64,
    /// Messages or parts that could not be read (skipped, logged).
    pub messages_unreadable: AtomicU64,
    /// Times an applier found messages of its region's log missing (expired, recreated).
    pub log_gaps: AtomicU64,
    /// The latest routing version this node has read (`cluster::routing_kv`).
    pub routing_version: AtomicU64,
    /// The KV revision of the region definitions in force here (0: none published).
    pub definitions_revision: AtomicU64,
    pub applied_seq: parking_lot::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// Requests by endpoint: how long the server took to answer (until the response head; a
/// streamed body is not included) and how many got each status.
pub struct HttpMetrics {
    registry: Registry,
    /// `None` only if the crate refused the options (they are constants).
    vecs: Option<(HistogramVec, IntCounterVec)>,
}

impl HttpMetrics {
    fn build(registry: &Registry) -> prometheus::Result<(HistogramVec, IntCounterVec)> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "meridian_http_request_duration_seconds",
                "Time to answer a request, until the response head, by endpoint.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["endpoint"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "meridian_http_requests_total",
                "Requests answered, by endpoint and status code.",
            ),
            &["endpoint", "code"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok((duration, requests))
    }

    /// Records one request: `endpoint` is its route (a bounded set of labels).
    pub fn observe(&self, endpoint: &str, code: u16, seconds: f64) {
        if let Some((duration, requests)) = &self.vecs {
            duration.with_label_values(&[endpoint]).observe(seconds);
            requests
                .with_label_values(&[endpoint, code.to_string().as_str()])
                .inc();
        }
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        let vecs = HttpMetrics::build(&registry)
            .map_err(|e| tracing::warn!("request metrics unavailable: {e}"))
            .ok();
        HttpMetrics { registry, vecs }
    }
}

/// What the engine holds at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Series indexes cached: (files, bytes).
    pub index_cache: (usize, usize),
    pub pages: PageCacheUsage,
    pub series_catalog_bytes: u64,
    /// Live series per database.
    pub series: Vec<(String, u64)>,
    pub regions: Vec<RegionGauges>,
}

/// One region's figures.
#[derive(Debug, Default)]
pub struct RegionGauges {
    pub region: String,
    pub hosted: bool,
    pub files: u64,
    pub file_bytes: u64,
    pub file_rows: u64,
    /// Free bytes of the file system holding the region's directory (its WAL).
    pub disk_free_bytes: Option<u64>,
    pub shards: Vec<ShardGauges>,
    /// Shared storage: the lease and the log mark.
    pub shared: Option<SharedGauges>,
}

/// A region on shared storage, as this node sees it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SharedGauges {
    /// The lease epoch held here, 0 when another node holds the lease.
    pub lease_epoch: u64,
    /// The log message through which every row is in files (the mark).
    pub in_files_through: u64,
    /// The log message through which this node applied the log.
    pub applied_through: u64,
}

/// One ingest shard's figures.
#[derive(Debug, Default)]
pub struct ShardGauges {
    pub shard: usize,
    pub memory_bytes: u64,
    pub rows: u64,
    pub blocks: u64,
    pub wal_bytes: u64,
}

/// A metric family built from values read at scrape time.
fn family(
    name: &str,
    help: &str,
    kind: MetricType,
    samples: Vec<(Vec<(&str, String)>, f64)>,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    let metrics = samples
        .into_iter()
        .map(|(labels, v)| {
            let mut m = proto::Metric::default();
            m.set_label(
                labels
                    .into_iter()
                    .map(|(k, v)| {
                        let mut l = proto::LabelPair::default();
                        l.set_name(k.to_string());
                        l.set_value(v);
                        l
                    })
                    .collect(),
            );
            match kind {
                MetricType::COUNTER => {
                    let mut c = proto::Counter::default();
                    c.set_value(v);
                    m.set_counter(c);
                }
                _ => {
                    let mut g = proto::Gauge::default();
                    g.set_value(v);
                    m.set_gauge(g);
                }
            }
            m
        })
        .collect();
    f.set_metric(metrics);
    f
}

/// `meridian_build_info`'s commit: set by the build (`MERIDIAN_COMMIT`, see build.rs).
const COMMIT: &str = match option_env!("MERIDIAN_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

impl Metrics {
    /// The text exposition of every metric.
    pub fn render(&self, snap: &Snapshot) -> String {
        use MetricType::{COUNTER, GAUGE};
        let one = |a: &AtomicU64| vec![(Vec::new(), a.load(Relaxed) as f64)];
        let num = |v: u64| vec![(Vec::new(), v as f64)];
        let secs = |a: &AtomicU64| vec![(Vec::new(), a.load(Relaxed) as f64 / 1e6)];
        let per = |a: &[AtomicU64; 3]| {
            ENDPOINTS
                .iter()
                .zip(a)
                .map(|(e, v)| (vec![("endpoint", e.to_string())], v.load(Relaxed) as f64))
                .collect::<Vec<_>>()
        };
        let mut fams = self.http.registry.gather();
        let mut add = |name: &str, help: &str, kind, samples| {
            fams.push(family(name, help, kind, samples));
        };
        add(
            "meridian_build_info",
            "The running build: its version and commit (always 1).",
            GAUGE,
            vec![(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                    ("commit", COMMIT.to_string()),
                ],
                1.0,
            )],
        );
        add(
            "meridian_points_written_total",
            "Points acknowledged.",
            COUNTER,
            per(&self.points_written),
        );
        add(
            "meridian_points_rejected_total",
            "Lines rejected as invalid.",
            COUNTER,
            per(&self.points_rejected),
        );
        add(
            "meridian_write_requests_total",
            "Write requests received.",
            COUNTER,
            per(&self.write_requests),
        );
        add(
            "meridian_write_overloaded_total",
            "Write requests refused with 503.",
            COUNTER,
            one(&self.write_overloaded),
        );
        add(
            "meridian_wal_bytes_total",
            "Bytes appended to the WAL.",
            COUNTER,
            one(&self.wal_bytes),
        );
        add(
            "meridian_wal_syncs_total",
            "WAL fsyncs (one per group commit).",
            COUNTER,
            one(&self.wal_syncs),
        );
        add(
            "meridian_wal_records_total",
            "WAL records appended.",
            COUNTER,
            one(&self.wal_records),
        );
        add(
            "meridian_wal_replayed_records_total",
            "WAL records replayed at start-up.",
            COUNTER,
            one(&self.replayed_records),
        );
        add(
            "meridian_wal_replayed_points_total",
            "Points replayed from the WAL at start-up.",
            COUNTER,
            one(&self.replayed_points),
        );
        add(
            "meridian_flushes_total",
            "Blocks flushed to Parquet.",
            COUNTER,
            one(&self.flushes),
        );
        add(
            "meridian_flush_failures_total",
            "Flush attempts that failed (retried).",
            COUNTER,
            one(&self.flush_failures),
        );
        add(
            "meridian_flush_rows_total",
            "Rows written to Parquet by flushes.",
            COUNTER,
            one(&self.flush_rows),
        );
        add(
            "meridian_flush_bytes_total",
            "Parquet bytes written by flushes.",
            COUNTER,
            one(&self.flush_bytes),
        );
        add(
            "meridian_flush_duration_seconds_total",
            "Time spent flushing.",
            COUNTER,
            secs(&self.flush_micros),
        );
        add(
            "meridian_memory_bytes",
            "Bytes held by in-memory blocks (active and flushing).",
            GAUGE,
            one(&self.memory_bytes),
        );
        add(
            "meridian_series_catalog_bytes",
            "Bytes held by the series catalog (they count against memory.limit).",
            GAUGE,
            num(snap.series_catalog_bytes),
        );
        add(
            "meridian_buffer_pool_bytes",
            "Idle buffers kept for reuse by request bodies and prepared rows (they count against memory.limit and are freed first).",
            GAUGE,
            num(crate::bufpool::idle_total()),
        );
        add(
            "meridian_request_body_bytes",
            "Bytes of request bodies being read or checked (they count against memory.limit).",
            GAUGE,
            one(&self.request_bytes),
        );
        add(
            "meridian_index_cache_files",
            "Parquet files whose series index is in memory.",
            GAUGE,
            num(snap.index_cache.0 as u64),
        );
        add(
            "meridian_index_cache_bytes",
            "Approximate memory of the series indexes (bounded by query.index_cache).",
            GAUGE,
            num(snap.index_cache.1 as u64),
        );
        add(
            "meridian_page_cache_pages",
            "Decoded Parquet pages kept for selective reads.",
            GAUGE,
            num(snap.pages.pages as u64),
        );
        add(
            "meridian_page_cache_bytes",
            "Memory of the decoded pages (bounded by query.page_cache).",
            GAUGE,
            num(snap.pages.bytes as u64),
        );
        add(
            "meridian_page_cache_hits_total",
            "Pages of selective reads found decoded in memory.",
            COUNTER,
            num(snap.pages.hits),
        );
        add(
            "meridian_page_cache_misses_total",
            "Pages of selective reads read from their file.",
            COUNTER,
            num(snap.pages.misses),
        );
        add(
            "meridian_queries_total",
            "Queries answered.",
            COUNTER,
            one(&self.queries),
        );
        add(
            "meridian_query_errors_total",
            "Queries refused or failed.",
            COUNTER,
            one(&self.query_errors),
        );
        add(
            "meridian_query_duration_seconds_total",
            "Time spent answering queries.",
            COUNTER,
            secs(&self.query_micros),
        );
        add(
            "meridian_retention_passes_total",
            "Passes of the [[retention]] rules in the background.",
            COUNTER,
            one(&self.retention_passes),
        );
        add(
            "meridian_retention_partitions_dropped_total",
            "Partitions dropped by [[retention]] keep.",
            COUNTER,
            one(&self.retention_partitions_dropped),
        );
        add(
            "meridian_retention_windows_rolled_up_total",
            "Windows rolled up by [[retention]] downsample.",
            COUNTER,
            one(&self.retention_windows_rolled_up),
        );
        add(
            "meridian_retention_failures_total",
            "Retention or rollup units that failed (retried next pass).",
            COUNTER,
            one(&self.retention_failures),
        );
        add(
            "meridian_series",
            "Live series per database (the series catalog).",
            GAUGE,
            snap.series
                .iter()
                .map(|(db, n)| (vec![("db", db.clone())], *n as f64))
                .collect(),
        );
        let hosted: Vec<&RegionGauges> = snap.regions.iter().filter(|r| r.hosted).collect();
        let region = |f: &dyn Fn(&RegionGauges) -> Option<u64>| {
            hosted
                .iter()
                .filter_map(|r| Some((vec![("region", r.region.clone())], f(r)? as f64)))
                .collect::<Vec<_>>()
        };
        add(
            "meridian_region_hosted",
            "Regions of the config: 1 if this node hosts it, 0 if another node does.",
            GAUGE,
            snap.regions
                .iter()
                .map(|r| {
                    (
                        vec![("region", r.region.clone())],
                        if r.hosted { 1.0 } else { 0.0 },
                    )
                })
                .collect(),
        );
        add(
            "meridian_region_files",
            "Parquet files of a hosted region (its manifest).",
            GAUGE,
            region(&|r| Some(r.files)),
        );
        add(
            "meridian_region_file_bytes",
            "Bytes of a hosted region's Parquet files.",
            GAUGE,
            region(&|r| Some(r.file_bytes)),
        );
        add(
            "meridian_region_file_rows",
            "Rows in a hosted region's Parquet files.",
            GAUGE,
            region(&|r| Some(r.file_rows)),
        );
        add(
            "meridian_region_disk_free_bytes",
            "Free bytes of the file system holding a hosted region's directory (its WAL).",
            GAUGE,
            region(&|r| r.disk_free_bytes),
        );
        add(
            "meridian_shared_flush_lease_held",
            "Shared storage: 1 while this node holds the region's flush lease (it flushes the region's files), else 0.",
            GAUGE,
            region(&|r| r.shared.map(|s| u64::from(s.lease_epoch > 0))),
        );
        add(
            "meridian_shared_log_in_files_through",
            "Shared storage: the region's log message through which every row is in files (the log mark); compare with meridian_shared_log_applied_through to see how far the files lag.",
            GAUGE,
            region(&|r| r.shared.map(|s| s.in_files_through)),
        );
        add(
            "meridian_shared_log_applied_through",
            "Shared storage: the region's log message this node applied to memory through.",
            GAUGE,
            region(&|r| r.shared.map(|s| s.applied_through)),
        );
        let shard = |f: &dyn Fn(&ShardGauges) -> u64| {
            hosted
                .iter()
                .flat_map(|r| {
                    r.shards.iter().map(|s| {
                        (
                            vec![("region", r.region.clone()), ("shard", s.shard.to_string())],
                            f(s) as f64,
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        add(
            "meridian_shard_memory_bytes",
            "Bytes held by an ingest shard's in-memory blocks.",
            GAUGE,
            shard(&|s| s.memory_bytes),
        );
        add(
            "meridian_shard_memory_rows",
            "Rows in an ingest shard's in-memory blocks.",
            GAUGE,
            shard(&|s| s.rows),
        );
        add(
            "meridian_shard_blocks",
            "In-memory blocks of an ingest shard (active and flushing).",
            GAUGE,
            shard(&|s| s.blocks),
        );
        add(
            "meridian_shard_wal_bytes",
            "Bytes of an ingest shard's WAL segments on disk.",
            GAUGE,
            shard(&|s| s.wal_bytes),
        );
        let c = &self.cluster;
        if c.enabled.load(Relaxed) {
            add(
                "meridian_cluster_bodies_published_total",
                "Write bodies acknowledged by JetStream (cluster mode).",
                COUNTER,
                one(&c.bodies_published),
            );
            add(
                "meridian_cluster_bodies_expired_total",
                "Bodies stored by JetStream after their write was refused (503): dropped unsplit.",
                COUNTER,
                one(&c.bodies_expired),
            );
            add(
                "meridian_cluster_parts_published_total",
                "Region parts split off this node's bodies into the regions' logs.",
                COUNTER,
                one(&c.parts_published),
            );
            add(
                "meridian_cluster_messages_applied_total",
                "Messages of hosted regions' logs committed here.",
                COUNTER,
                one(&c.messages_applied),
            );
            add(
                "meridian_cluster_points_applied_total",
                "Points of hosted regions' logs committed here.",
                COUNTER,
                one(&c.points_applied),
            );
            add(
                "meridian_cluster_lines_refused_total",
                "Lines of a region's log this node refused when applying them (logged).",
                COUNTER,
                one(&c.lines_refused),
            );
            add(
                "meridian_cluster_messages_unreadable_total",
                "Messages or parts of the logs this node could not read (skipped, logged).",
                COUNTER,
                one(&c.messages_unreadable),
            );
            add(
                "meridian_cluster_log_gaps_total",
                "Times a hosted region's log was found to miss messages (expired past cluster.max_age, or recreated).",
                COUNTER,
                one(&c.log_gaps),
            );
            add(
                "meridian_cluster_routing_version",
                "The latest routing version this node has read (meridian routing show lists them).",
                GAUGE,
                one(&c.routing_version),
            );
            add(
                "meridian_cluster_definitions_revision",
                "KV revision of the published region definitions this node has read and could parse (0: none published).",
                GAUGE,
                one(&c.definitions_revision),
            );
            let applied = c
                .applied_seq
                .lock()
                .iter()
                .map(|(r, s)| (vec![("region", r.clone())], *s as f64))
                .collect();
            add(
                "meridian_cluster_applied_sequence",
                "Last sequence of a hosted region's log (stream MERIDIAN_R_<region>) committed here.",
                GAUGE,
                applied,
            );
        }
        // The encoder refuses (and stops at) a family without samples: no series yet, no
        // hosted region.
        fams.retain(|f| !f.get_metric().is_empty());
        fams.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&fams, &mut out) {
            tracing::warn!("encoding /metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
