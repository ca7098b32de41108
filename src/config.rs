//! `regions.toml` → a validated [`Config`].
//!
//! The file is deserialized once ([`RawConfig`], `deny_unknown_fields` so a misspelt key is
//! an error), then [`RawConfig::validate`] checks every value and turns it into typed
//! settings. Every error names the key and the reason; nothing is silently rewritten.
//! Components receive their own sub-struct ([`RoutingConfig`], [`IngestConfig`], …).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::{is_safe_name, parse_duration};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// `[storage] cache` when not given: local disk per region for data files of a bucket.
pub const DEFAULT_STORAGE_CACHE: u64 = 4 << 30;

/// Checks the `[[retention]]` entries.
fn check_retention(raw: Vec<RawRetention>, partition_ns: i64) -> Result<RetentionRules> {
    let mut rules: Vec<RetentionRule> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("retention[{i}].{k}");
        if let Some(why) = crate::model::db_name_problem(&r.db) {
            return Err(invalid(key("db"), why));
        }
        if r.measurement.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(key("measurement"), "must not be empty"));
        }
        let keep_ns = match &r.keep {
            Some(k) => {
                let ns = parse_duration(k).map_err(|e| invalid(key("keep"), e))?;
                if ns <= 0 {
                    return Err(invalid(key("keep"), "must be positive"));
                }
                Some(ns)
            }
            None => None,
        };
        let downsample = match (&r.downsample, &r.downsample_after) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    key("downsample_after"),
                    "is required with downsample: how old a window must be to be rolled up (e.g. \"1d\")",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    key("downsample"),
                    "is required with downsample_after",
                ));
            }
            (Some(spec), Some(after)) => {
                if r.measurement.is_none() {
                    return Err(invalid(
                        key("measurement"),
                        "is required with downsample: name the measurement to roll up",
                    ));
                }
                let after =
                    parse_duration(after).map_err(|e| invalid(key("downsample_after"), e))?;
                let ds = crate::rollup::Downsample::parse(spec, after)
                    .map_err(|e| invalid(key("downsample"), e.to_string()))?;
                let window = ds
                    .window(partition_ns)
                    .map_err(|e| invalid(key("downsample"), e.to_string()))?;
                // Sources must outlive the wait before they are rolled up.
                if keep_ns.is_some_and(|k| k < after.saturating_add(window)) {
                    return Err(invalid(
                        key("keep"),
                        "must be longer than downsample_after plus a rollup window: points would be dropped before they are rolled up",
                    ));
                }
                Some(ds)
            }
        };
        if keep_ns.is_none() && downsample.is_none() {
            return Err(invalid(
                key("keep"),
                "a [[retention]] entry needs keep, downsample (with downsample_after), or both",
            ));
        }
        if rules
            .iter()
            .any(|o| o.db == r.db && o.measurement == r.measurement)
        {
            return Err(invalid(
                key("db"),
                format!(
                    "a second rule for {}{}",
                    r.db,
                    r.measurement
                        .as_deref()
                        .map(|m| format!(", measurement {m}"))
                        .unwrap_or_default()
                ),
            ));
        }
        rules.push(RetentionRule {
            db: r.db,
            measurement: r.measurement,
            keep_ns,
            downsample,
        });
    }
    Ok(RetentionRules { rules })
}

/// A node's url (a region's `url` or one of its `replicas`).
pub fn check_node_url(url: &str) -> std::result::Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{url:?} must start with http:// or https://"))
    }
}

/// An `s3://bucket[/prefix]` URL without its trailing `/`.
fn check_s3_url(url: &str) -> std::result::Result<String, String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} must start with s3:// (files stay local without it)"))?;
    let rest = rest.trim_end_matches('/');
    let bucket = rest.split('/').next().unwrap_or("");
    if bucket.is_empty() {
        return Err(format!("{url:?} names no bucket"));
    }
    if rest
        .split('/')
        .skip(1)
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(format!("{url:?} has an empty, '.' or '..' path part"));
    }
    Ok(format!("s3://{rest}"))
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A byte size written as an integer (`1048576`) or a string with a unit (`"64MiB"`, `"1GB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size: a number of bytes or a string like \"64MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Checks an address to listen on: `host:port` or `[v6]:port`, with a port (0: any free
/// port), so that `check-config` refuses what binding would.
pub fn check_listen(addr: &str) -> std::result::Result<(), String> {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    match addr.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok() =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{addr:?} is not an address to listen on: use host:port, like \"127.0.0.1:8086\" (port 0 picks a free port)"
        )),
    }
}

/// Parses `"512"`, `"64KiB"`, `"64MiB"`, `"2GiB"`, `"10MB"` (decimal units too).
pub fn parse_byte_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size {s:?}: expected a number with an optional unit like \"64MiB\"")
    })?;
    if unit.starts_with('.') {
        return Err(format!(
            "invalid size {s:?}: sizes are whole numbers of a unit; use a smaller unit (\"1536MiB\", not \"1.5GiB\")"
        ));
    }
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {s:?}: use B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// The file as written. See the README for every key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: PathBuf,
    pub partition_duration: String,
    pub default_region: String,
    #[serde(default = "default_geo_tag")]
    pub geo_tag: String,
    #[serde(default = "default_lat_tag")]
    pub lat_tag: String,
    #[serde(default = "default_lon_tag")]
    pub lon_tag: String,
    #[serde(default)]
    pub ingest: RawIngest,
    #[serde(default)]
    pub flush: RawFlush,
    #[serde(default)]
    pub memory: RawMemory,
    #[serde(default)]
    pub wal: RawWal,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub query: RawQuery,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default, rename = "region")]
    pub regions: Vec<RawRegion>,
    #[serde(default)]
    pub directory: BTreeMap<String, String>,
    #[serde(default, rename = "retention")]
    pub retention: Vec<RawRetention>,
    pub cluster: Option<RawCluster>,
}

/// `[cluster]`: cluster mode, writes carried by NATS JetStream (see `cluster`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// NATS server URLs (`nats://host:port`, `tls://host:port`).
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster (`meridian serve --node` overrides it, so
    /// that nodes can share one file): names the subject of the bodies it receives.
    pub node: Option<String>,
    /// Copies of each stream kept by JetStream (1, or 3 on a cluster of NATS servers).
    pub replicas: Option<usize>,
    /// A NATS credentials file (JWT + nkey seed) for this node.
    pub credentials: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// CA certificate (PEM) that signs the NATS servers' certificates; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that verify clients.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Longest a write waits for JetStream to acknowledge its body (default 5s).
    pub publish_timeout: Option<String>,
    /// How long a stream keeps messages (default 7d): a node down for longer misses them.
    pub max_age: Option<String>,
    /// The NATS cluster that keeps `MERIDIAN_IN` (the receiving side's).
    pub nats_cluster: Option<String>,
    /// How long before it takes effect a routing version must be published (default 10m).
    pub routing_lead: Option<String>,
    /// Shared storage: how long a flush lease holds without renewal (another node takes
    /// the region's flushes over after it).
    pub lease_ttl: Option<String>,
    /// This node's site: the NATS cluster that keeps the bodies it receives until they are
    /// split (stream `MERIDIAN_IN_<site>`), instead of the one `MERIDIAN_IN`.
    pub site: Option<String>,
}

/// `[[retention]]`: how long a database (or one measurement of it) keeps its points, and
/// whether a measurement is rolled up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub db: String,
    pub measurement: Option<String>,
    pub keep: Option<String>,
    /// `EVERY:AGGS`, e.g. `1m:mean,max`: rolled up into `<measurement>_<EVERY>`.
    pub downsample: Option<String>,
    /// Windows at least this old are rolled up.
    pub downsample_after: Option<String>,
}

fn default_geo_tag() -> String {
    "region".into()
}
fn default_lat_tag() -> String {
    "lat".into()
}
fn default_lon_tag() -> String {
    "lon".into()
}

/// `[storage]`: where data files and manifests live (the WAL stays in `data_dir`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// `s3://bucket/prefix`: every region's root is `<url>/<region>`.
    pub url: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: Option<bool>,
    /// Local disk kept for whole data files read from the bucket.
    pub cache: Option<ByteSize>,
    /// `ns` (default) or `us`: the unit of `time` in the files.
    pub time_unit: Option<String>,
    /// Longest one request to the bucket may take, connecting to the last byte.
    pub request_timeout: Option<String>,
    /// Longest a call to the bucket is retried for (after a failed or timed-out request).
    pub retry_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// Ingest shards per region; 0 or absent = the CPU cores shared among the regions
    /// ([`default_shards_per_region`]).
    pub shards_per_region: Option<usize>,
}

/// The most ingest shards a region may have.
pub const MAX_SHARDS_PER_REGION: usize = 256;

/// Flush threads when `flush.workers` is not set. Two: while one encodes a block whose flush
/// is slow (counters, a data page per series; sparse fields), blocks of the next hour do
/// not wait behind it. Peak ingest RSS of the 1,000-host sets on 2 cores, one worker
/// against two: sparse 181-200 against 159-162 MiB, counters 150-173 against 149-154,
/// integers 143-158 against 152-159; flushes hold little beside their block (a column at a
/// time), so a second one costs little.
pub const DEFAULT_FLUSH_WORKERS: usize = 2;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlush {
    pub max_rows: Option<u64>,
    pub max_bytes: Option<ByteSize>,
    pub max_age: Option<String>,
    pub workers: Option<usize>,
    pub row_group_rows: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemory {
    pub limit: Option<ByteSize>,
    pub high_water: Option<ByteSize>,
    pub max_series_per_database: Option<u64>,
    pub series_catalog: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWal {
    pub sync: Option<String>,
    pub interval_ms: Option<u64>,
    pub segment_bytes: Option<ByteSize>,
    pub queue_depth: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub max_body_bytes: Option<ByteSize>,
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub max_connections: Option<usize>,
    /// Certificate chain and private key (PEM): the server speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that sign the other nodes' certificates: node-to-node
    /// requests to `https://` urls trust these only.
    pub node_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    pub timeout: Option<String>,
    pub max_rows: Option<usize>,
    pub max_memory: Option<ByteSize>,
    pub total_memory: Option<ByteSize>,
    pub stream_above: Option<ByteSize>,
    pub index_cache: Option<ByteSize>,
    pub page_cache: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Tokens accepted on `/metrics` only (a scraper's).
    #[serde(default)]
    pub metrics_tokens: Vec<String>,
    /// The token nodes present to each other (internal queries, forwarded writes); client
    /// tokens are not accepted there when it is set.
    pub node_token: Option<String>,
    /// `/metrics` without any token.
    #[serde(default)]
    pub metrics_open: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    pub name: String,
    #[serde(default)]
    pub tag_values: Vec<String>,
    #[serde(default)]
    pub bbox: Vec<BBox>,
    pub url: Option<String>,
    /// `s3://bucket/prefix`: this region's root (overrides `[storage] url`).
    pub storage: Option<String>,
    /// `"aggregates"` (default): no raw point of the region leaves the nodes hosting it;
    /// `"raw"`: other nodes may ask for raw rows.
    pub export: Option<String>,
    /// With `export = "aggregates"`: the finest bucket other nodes may ask for (default 1m).
    pub export_min_every: Option<String>,
    /// Cluster mode: other nodes hosting the region (each applies the region's log into
    /// its own data dir); queries fail over to them.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Cluster mode: the NATS cluster that keeps the region's stream (its geography).
    pub nats_cluster: Option<String>,
    /// Cluster mode: the nodes hosting the region share its `storage` (a bucket): one
    /// holds a lease and flushes, the others follow and take over.
    #[serde(default)]
    pub shared_storage: bool,
}

/// A lat/lon rectangle, inclusive on every edge. `min_lon > max_lon` is allowed and means
/// the box crosses the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BBox {
    pub min_lat: f64,
    pub max_lat: f64,
    pub min_lon: f64,
    pub max_lon: f64,
}

impl BBox {
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        if !(self.min_lat..=self.max_lat).contains(&lat) {
            return false;
        }
        if self.min_lon <= self.max_lon {
            (self.min_lon..=self.max_lon).contains(&lon)
        } else {
            lon >= self.min_lon || lon <= self.max_lon
        }
    }
}

/// When writes are acknowledged relative to the WAL fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync before every acknowledgement (group-committed).
    Always,
    /// Acknowledge once written to the OS; fsync at most this long after.
    Interval(Duration),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub s3: S3Config,
    pub retention: RetentionRules,
    pub routing: RoutingConfig,
    pub ingest: IngestConfig,
    pub http: HttpConfig,
    pub query: QueryConfig,
    /// `None`: single-node mode (nothing else to run).
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub nats: Vec<String>,
    /// `None`: given by `meridian serve --node`.
    pub node: Option<String>,
    pub replicas: usize,
    pub credentials: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_client: Option<(PathBuf, PathBuf)>,
    pub publish_timeout: Duration,
    pub max_age: Duration,
    pub nats_cluster: Option<String>,
    /// A routing version takes effect at least this long after it is published; nodes
    /// route points up to about this far past the last time they read the versions.
    pub routing_lead: Duration,
    /// Shared storage: a flush lease not renewed for this long is taken over.
    pub lease_ttl: Duration,
    /// This node's site (a NATS cluster name): its bodies wait there to be split.
    pub site: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RegionConfig {
    pub name: String,
    pub tag_values: Vec<String>,
    pub bbox: Vec<BBox>,
    pub url: Option<String>,
    /// Where the region's data files and manifest live.
    pub storage: StorageLocation,
    /// What other nodes may ask of the region.
    pub export: Export,
    /// Other nodes hosting the region (cluster mode), after `url`.
    pub replicas: Vec<String>,
    /// The NATS cluster that keeps the region's stream (`None`: where JetStream puts it).
    pub nats_cluster: Option<String>,
    /// Cluster mode: its nodes share its storage (a bucket) under a flush lease.
    pub shared_storage: bool,
}

/// `export_min_every` when not given: a minute.
pub const DEFAULT_EXPORT_MIN_EVERY_NS: i64 = 60_000_000_000;

/// What a region's nodes answer to other nodes (residency). In JSON (cluster mode's
/// published region definitions): `"raw"` or `{"aggregates": {"min_every_ns": …}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Export {
    /// Raw rows too.
    Raw,
    /// Aggregates only: no raw rows, no `first`/`last` (a raw point each), no bucket finer
    /// than `min_every_ns`.
    Aggregates { min_every_ns: i64 },
}

/// One `[[retention]]` entry, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionRule {
    pub db: String,
    /// `None`: every measurement of the db without a rule of its own.
    pub measurement: Option<String>,
    pub keep_ns: Option<i64>,
    pub downsample: Option<crate::rollup::Downsample>,
}

/// Every retention rule; a measurement's own rule wins over its database's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionRules {
    pub rules: Vec<RetentionRule>,
}

impl RetentionRules {
    /// The rule that governs a measurement, if any.
    pub fn rule_for(&self, db: &str, measurement: &str) -> Option<&RetentionRule> {
        self.rules
            .iter()
            .find(|r| r.db == db && r.measurement.as_deref() == Some(measurement))
            .or_else(|| {
                self.rules
                    .iter()
                    .find(|r| r.db == db && r.measurement.is_none())
            })
    }

    /// The rule whose `keep` a measurement follows: its own if that has one, else its
    /// database's (a measurement's rule that only downsamples keeps the database's).
    pub fn keep_rule(&self, db: &str, measurement: &str) -> Option<&RetentionRule> {
        let own = self
            .rules
            .iter()
            .find(|r| r.db == db && r.measurement.as_deref() == Some(measurement));
        own.filter(|r| r.keep_ns.is_some()).or_else(|| {
            self.rules
                .iter()
                .find(|r| r.db == db && r.measurement.is_none() && r.keep_ns.is_some())
        })
    }

    /// The earliest time a measurement still keeps at `now_ns` (`i64::MIN`: everything).
    pub fn keeps_from(&self, db: &str, measurement: &str, now_ns: i64) -> i64 {
        self.keep_rule(db, measurement)
            .and_then(|r| r.keep_ns)
            .map_or(i64::MIN, |k| now_ns.saturating_sub(k))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// A region's storage root.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageLocation {
    /// `<data_dir>/<region>` (the default).
    Local,
    /// A prefix of an S3-compatible bucket, `s3://bucket/prefix`.
    S3 { url: String },
}

/// Connection settings of S3-compatible storage; unset ones come from the `AWS_*`
/// variables when the store is opened.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: Option<bool>,
    /// Bytes of local disk per region for whole data files read from the bucket (0: none).
    pub cache_bytes: u64,
    /// One request, from connecting to its last byte (a stalled upload or read fails then).
    pub request_timeout: Duration,
    /// How long a call is retried after failed or timed-out requests: with
    /// `request_timeout`, the longest a bucket that hangs can hold a flush, a manifest
    /// edit or a read before it fails.
    pub retry_timeout: Duration,
}

/// `storage.request_timeout` unset: object_store's own default.
pub const DEFAULT_S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `storage.retry_timeout` unset: a third of object_store's own (3 min), so that a bucket
/// that hangs fails a flush within about 1.5 min (see `cluster::lease`).
pub const DEFAULT_S3_RETRY_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: None,
            cache_bytes: 0,
            request_timeout: DEFAULT_S3_REQUEST_TIMEOUT,
            retry_timeout: DEFAULT_S3_RETRY_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub regions: Vec<RegionConfig>,
    /// Index into `regions`.
    pub default_region: usize,
    pub geo_tag: String,
    pub lat_tag: String,
    pub lon_tag: String,
    /// `(tag key, tag value, region index)`, sorted by `key=value`.
    pub directory: Vec<(String, String, usize)>,
    pub partition_duration_ns: i64,
}

#[derive(Debug, Clone)]
pub struct FlushConfig {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub workers: usize,
    pub row_group_rows: usize,
    /// `[storage] time_unit`: how `time` is stored in the files.
    pub time_unit: FileTimeUnit,
}

/// The unit of `time` in data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileTimeUnit {
    /// `TIMESTAMP(NANOS)`: every timestamp as written.
    #[default]
    Nanosecond,
    /// `TIMESTAMP(MICROS)`, which Spark reads: timestamps are truncated to microseconds when
    /// written (two points of a series less than 1 µs apart are one point).
    Microsecond,
}

#[derive(Debug, Clone)]
pub struct MemoryConfig {
    pub limit_bytes: u64,
    pub high_water_bytes: u64,
    /// Series a database may hold (the series catalog keeps each in memory); a line that
    /// would add one more is refused. 0: no limit.
    pub max_series_per_database: u64,
    /// Bytes the series catalog of every database may hold (counted within `limit_bytes`);
    /// a line that would add a series beyond it is refused.
    pub series_catalog_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub sync: SyncPolicy,
    pub segment_bytes: u64,
    /// Bound on queued write batches per ingest shard before writers get 503.
    pub queue_depth: usize,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub shards_per_region: usize,
    /// `shards_per_region` as the config gives it (`None`: 0 or absent, the default). The
    /// server resolves the count against its data dir (`region::shards_for_data_dir`).
    pub shards_configured: Option<usize>,
    pub flush: FlushConfig,
    pub memory: MemoryConfig,
    pub wal: WalConfig,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: String,
    pub max_body_bytes: u64,
    pub tokens: Vec<String>,
    /// Tokens accepted on `/metrics` besides `tokens`.
    pub metrics_tokens: Vec<String>,
    /// What nodes present to each other; `None`: nothing (no `tokens` either) or, in a
    /// single-node config, unused.
    pub node_token: Option<String>,
    /// `/metrics` is served without a token.
    pub metrics_open: bool,
    /// The longest a client may take to send a request's headers, counted from when the
    /// server starts waiting for them (so also the idle limit of a kept-alive connection).
    pub header_timeout: Duration,
    /// The longest gap while a client sends a request body.
    pub body_timeout: Duration,
    /// Connections served at once (`None`: derived from the descriptor limit at start-up).
    pub max_connections: Option<usize>,
    /// `http.tls_cert` and `http.tls_key`: HTTPS only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `http.node_ca`: the CA node-to-node HTTPS trusts.
    pub node_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub timeout: Duration,
    pub max_rows: usize,
    /// Memory one query's partial answers may hold (query/budget.rs).
    pub max_memory: u64,
    /// Memory all running queries' partial answers may hold together.
    pub total_memory: u64,
    /// Raw answers estimated above this are computed and sent a part at a time
    /// (http/export.rs).
    pub stream_above: u64,
    /// Budget of the in-memory series indexes of Parquet files (query/index.rs).
    pub index_cache_bytes: u64,
    /// Budget of the decoded pages of selective reads (query/pages.rs); 0 disables it.
    pub page_cache_bytes: u64,
}

impl Config {
    /// Reads and validates a config file. A relative `data_dir` is taken relative to the
    /// directory of the config file, so `meridian serve --config x/regions.toml` works from
    /// anywhere.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        let mut cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        // Relative paths are the config file's, whatever the working directory.
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut cfg.data_dir);
        if let Some((c, k)) = cfg.http.tls.as_mut() {
            rebase(c);
            rebase(k);
        }
        if let Some(ca) = cfg.http.node_ca.as_mut() {
            rebase(ca);
        }
        Ok(cfg)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: one_line_toml_error(text, &e),
        })?;
        raw.validate()
    }
}

/// A TOML or value error in one line: `line N, key section.key: message` (the key found
/// from where the error is: the key of that line under the last table header above it),
/// instead of toml's multi-line excerpt.
fn one_line_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e
        .message()
        .trim()
        .replace('\n', " ")
        .replace("expected usize", "expected a whole number (0 or more)")
        .replace("expected u64", "expected a whole number (0 or more)")
        .replace("expected u32", "expected a whole number (0 or more)")
        .replace("expected u16", "expected a whole number (0 or more)")
        .replace("expected i64", "expected a whole number")
        .replace("expected f64", "expected a number")
        .replace("expected path string", "expected a path (a string)");
    if message.starts_with("missing field") {
        // The span is the table that lacks it, not a key of the line it starts on.
        return message.replacen("missing field", "missing key", 1);
    }
    let Some(span) = e.span() else {
        return message;
    };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    let line = line.split('\n').next().unwrap_or_default();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match (table, key) {
        (Some(t), Some(k)) => format!("line {line_no}, key {t}.{k}: {message}"),
        (None, Some(k)) => format!("line {line_no}, key {k}: {message}"),
        _ => match line.trim() {
            t if t.starts_with('[') => format!("line {line_no}, table {t}: {message}"),
            _ => format!("line {line_no}: {message}"),
        },
    }
}

/// A node name: it is a token of NATS subjects, so letters, digits, '_' and '-' only.
pub fn check_node_name(name: &str) -> std::result::Result<(), String> {
    if is_safe_name(name) && name.len() <= 32 {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1 to 32 letters, digits, '_' or '-' (it names this node's subjects in JetStream)"
        ))
    }
}

/// `[cluster]` → [`ClusterConfig`]: every server a NATS URL, the node a safe name, TLS
/// files given in pairs.
fn check_cluster(c: RawCluster) -> Result<ClusterConfig> {
    if c.nats.is_empty() {
        return Err(invalid(
            "cluster.nats",
            "must list at least one NATS server URL",
        ));
    }
    for u in &c.nats {
        let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .any(|p| u.starts_with(p));
        if !scheme_ok {
            return Err(invalid(
                "cluster.nats",
                format!("{u:?} must start with nats://, tls://, ws:// or wss://"),
            ));
        }
    }
    if let Some(n) = &c.node {
        check_node_name(n).map_err(|e| invalid("cluster.node", e))?;
    }
    let replicas = c.replicas.unwrap_or(1);
    if !(1..=5).contains(&replicas) {
        return Err(invalid(
            "cluster.replicas",
            "must be 1 to 5 (JetStream's limit)",
        ));
    }
    if c.user.is_some() != c.password.is_some() {
        return Err(invalid(
            "cluster.password",
            "user and password come together",
        ));
    }
    let tls_client = match (c.tls_cert, c.tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "cluster.tls_key",
                "tls_cert and tls_key come together",
            ));
        }
    };
    let publish_timeout = match &c.publish_timeout {
        Some(s) => duration_key("cluster.publish_timeout", s)?,
        None => Duration::from_secs(5),
    };
    if publish_timeout.is_zero() {
        return Err(invalid("cluster.publish_timeout", "must be more than 0"));
    }
    let max_age = match &c.max_age {
        Some(s) => duration_key("cluster.max_age", s)?,
        None => Duration::from_secs(7 * 86_400),
    };
    if max_age < Duration::from_secs(60) {
        return Err(invalid(
            "cluster.max_age",
            "must be at least 1m (a stream must keep what nodes have not applied yet)",
        ));
    }
    let routing_lead = match &c.routing_lead {
        Some(s) => duration_key("cluster.routing_lead", s)?,
        None => Duration::from_secs(600),
    };
    if routing_lead < Duration::from_secs(4) {
        return Err(invalid(
            "cluster.routing_lead",
            "must be at least 4s (nodes read the routing versions every second)",
        ));
    }
    let lease_ttl = match &c.lease_ttl {
        Some(s) => duration_key("cluster.lease_ttl", s)?,
        None => Duration::from_secs(6),
    };
    if lease_ttl < Duration::from_secs(3) {
        return Err(invalid(
            "cluster.lease_ttl",
            "must be at least 3s (the holder renews it every third of it)",
        ));
    }
    if let Some(site) = &c.site {
        check_node_name(site).map_err(|e| invalid("cluster.site", e))?;
    }
    Ok(ClusterConfig {
        site: c.site,
        lease_ttl,
        nats: c.nats,
        node: c.node,
        replicas,
        credentials: c.credentials,
        user: c.user,
        password: c.password,
        tls_ca: c.tls_ca,
        tls_client,
        publish_timeout,
        max_age,
        nats_cluster: c.nats_cluster,
        routing_lead,
    })
}

fn duration_key(key: &str, value: &str) -> Result<Duration> {
    let ns = parse_duration(value).map_err(|e| invalid(key, e))?;
    if ns <= 0 {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

const NS_PER_MIN: i64 = 60_000_000_000;
const NS_PER_DAY: i64 = 86_400_000_000_000;

impl RawConfig {
    pub fn validate(self) -> Result<Config> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }

        let part_ns = parse_duration(&self.partition_duration)
            .map_err(|e| invalid("partition_duration", e))?;
        if part_ns < NS_PER_MIN || part_ns % NS_PER_MIN != 0 {
            return Err(invalid(
                "partition_duration",
                "must be a whole number of minutes, at least \"1m\"",
            ));
        }
        if part_ns < NS_PER_DAY && NS_PER_DAY % part_ns != 0 {
            return Err(invalid(
                "partition_duration",
                "a duration under one day must divide a day evenly (e.g. \"15m\", \"1h\", \"6h\")",
            ));
        }
        if part_ns > NS_PER_DAY && part_ns % NS_PER_DAY != 0 {
            return Err(invalid(
                "partition_duration",
                "a duration over one day must be a whole number of days (e.g. \"7d\")",
            ));
        }

        for (key, v) in [
            ("geo_tag", &self.geo_tag),
            ("lat_tag", &self.lat_tag),
            ("lon_tag", &self.lon_tag),
        ] {
            if v.is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }

        if self.regions.is_empty() {
            return Err(invalid("region", "at least one [[region]] is required"));
        }
        let mut names = HashSet::new();
        let mut regions = Vec::with_capacity(self.regions.len());
        for (i, r) in self.regions.into_iter().enumerate() {
            let key = |k: &str| format!("region[{i}].{k}");
            if !is_safe_name(&r.name) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "{:?} is not a valid region name: use 1-64 characters from a-z, A-Z, 0-9, '_' and '-', not starting with '-'",
                        r.name
                    ),
                ));
            }
            if !names.insert(r.name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!("region {:?} is defined twice", r.name),
                ));
            }
            for (j, pat) in r.tag_values.iter().enumerate() {
                if pat.is_empty() {
                    return Err(invalid(
                        format!("region[{i}].tag_values[{j}]"),
                        "must not be empty",
                    ));
                }
                globset::Glob::new(pat).map_err(|e| {
                    invalid(
                        format!("region[{i}].tag_values[{j}]"),
                        format!("bad glob {pat:?}: {e}"),
                    )
                })?;
            }
            for (j, b) in r.bbox.iter().enumerate() {
                let k = format!("region[{i}].bbox[{j}]");
                let lat_ok = |v: f64| (-90.0..=90.0).contains(&v);
                let lon_ok = |v: f64| (-180.0..=180.0).contains(&v);
                if !lat_ok(b.min_lat) || !lat_ok(b.max_lat) {
                    return Err(invalid(
                        k,
                        format!(
                            "min_lat {} / max_lat {}: latitudes must be within [-90, 90]",
                            b.min_lat, b.max_lat
                        ),
                    ));
                }
                if !lon_ok(b.min_lon) || !lon_ok(b.max_lon) {
                    return Err(invalid(
                        k,
                        format!(
                            "min_lon {} / max_lon {}: longitudes must be within [-180, 180]",
                            b.min_lon, b.max_lon
                        ),
                    ));
                }
                if b.min_lat > b.max_lat {
                    return Err(invalid(k, "min_lat must not exceed max_lat"));
                }
            }
            if let Some(url) = &r.url {
                check_node_url(url).map_err(|e| invalid(key("url"), e))?;
            }
            let storage = match (&r.storage, &self.storage.url) {
                (Some(u), _) => StorageLocation::S3 {
                    url: check_s3_url(u).map_err(|e| invalid(key("storage"), e))?,
                },
                (None, Some(u)) => StorageLocation::S3 {
                    url: format!(
                        "{}/{}",
                        check_s3_url(u).map_err(|e| invalid("storage.url", e))?,
                        r.name
                    ),
                },
                (None, None) => StorageLocation::Local,
            };
            let export = match r.export.as_deref() {
                None | Some("aggregates") => {
                    let min_every_ns = match r.export_min_every.as_deref() {
                        Some(min) => {
                            parse_duration(min).map_err(|e| invalid(key("export_min_every"), e))?
                        }
                        None => DEFAULT_EXPORT_MIN_EVERY_NS,
                    };
                    if min_every_ns <= 0 {
                        return Err(invalid(key("export_min_every"), "must be positive"));
                    }
                    Export::Aggregates { min_every_ns }
                }
                Some("raw") if r.export_min_every.is_some() => {
                    return Err(invalid(
                        key("export_min_every"),
                        "applies to export = \"aggregates\" only",
                    ));
                }
                Some("raw") => Export::Raw,
                Some(other) => {
                    return Err(invalid(
                        key("export"),
                        format!("{other:?} must be \"aggregates\" or \"raw\""),
                    ));
                }
            };
            for u in &r.replicas {
                check_node_url(u).map_err(|e| invalid(key("replicas"), e))?;
            }
            if !r.replicas.is_empty()
                && matches!(storage, StorageLocation::S3 { .. })
                && !r.shared_storage
            {
                return Err(invalid(
                    key("replicas"),
                    "each node hosting a region keeps its own files: a region with replicas keeps them on local disk, or shares a bucket with shared_storage = true",
                ));
            }
            if r.shared_storage && !matches!(storage, StorageLocation::S3 { .. }) {
                return Err(invalid(
                    key("shared_storage"),
                    "needs the region's files in a bucket its nodes share (storage = \"s3://…\" or [storage] url)",
                ));
            }
            if !r.replicas.is_empty() && r.url.is_none() {
                return Err(invalid(
                    key("replicas"),
                    "needs url too (the node asked first)",
                ));
            }
            regions.push(RegionConfig {
                name: r.name,
                tag_values: r.tag_values,
                bbox: r.bbox,
                url: r.url,
                storage,
                export,
                replicas: r.replicas,
                nats_cluster: r.nats_cluster,
                shared_storage: r.shared_storage,
            });
        }
        let region_index = |name: &str| regions.iter().position(|r| r.name == name);
        let default_region = region_index(&self.default_region).ok_or_else(|| {
            invalid(
                "default_region",
                format!(
                    "{:?} is not the name of any [[region]]",
                    self.default_region
                ),
            )
        })?;

        let mut directory = Vec::with_capacity(self.directory.len());
        for (entry, target) in &self.directory {
            let key = format!("directory.\"{entry}\"");
            let Some((k, v)) = entry.split_once('=') else {
                return Err(invalid(key, "an entry must be written \"tag=value\""));
            };
            if k.is_empty() || v.is_empty() {
                return Err(invalid(key, "tag key and value must not be empty"));
            }
            let idx = region_index(target).ok_or_else(|| {
                invalid(
                    &key,
                    format!("{target:?} is not the name of any [[region]]"),
                )
            })?;
            directory.push((k.to_string(), v.to_string(), idx));
        }

        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let shards_per_region = match self.ingest.shards_per_region {
            None | Some(0) => default_shards_per_region(cores, regions.len()),
            Some(n) if n > MAX_SHARDS_PER_REGION => {
                return Err(invalid(
                    "ingest.shards_per_region",
                    format!(
                        "{n}: at most {MAX_SHARDS_PER_REGION} (0 or absent: the cores shared among the regions)"
                    ),
                ));
            }
            Some(n) => n,
        };

        let flush = FlushConfig {
            max_rows: self.flush.max_rows.unwrap_or(1_000_000),
            max_bytes: self.flush.max_bytes.map_or(128 << 20, ByteSize::bytes),
            max_age: match &self.flush.max_age {
                Some(s) => duration_key("flush.max_age", s)?,
                None => Duration::from_secs(60),
            },
            workers: self.flush.workers.unwrap_or(DEFAULT_FLUSH_WORKERS),
            row_group_rows: self.flush.row_group_rows.unwrap_or(1 << 20),
            time_unit: match self.storage.time_unit.as_deref() {
                None | Some("ns") => FileTimeUnit::Nanosecond,
                Some("us") => FileTimeUnit::Microsecond,
                Some(other) => {
                    return Err(invalid(
                        "storage.time_unit",
                        format!("{other:?}: use \"ns\" (the default) or \"us\" (for Spark)"),
                    ));
                }
            },
        };
        if flush.max_rows == 0 {
            return Err(invalid("flush.max_rows", "must be greater than zero"));
        }
        if flush.max_bytes == 0 {
            return Err(invalid("flush.max_bytes", "must be greater than zero"));
        }
        if flush.workers == 0 || flush.workers > 64 {
            return Err(invalid(
                "flush.workers",
                format!("{}: must be between 1 and 64", flush.workers),
            ));
        }
        if flush.row_group_rows < 1024 {
            return Err(invalid("flush.row_group_rows", "must be at least 1024"));
        }

        let limit_bytes = self.memory.limit.map_or(1 << 30, ByteSize::bytes);
        if limit_bytes < (1 << 20) {
            return Err(invalid("memory.limit", "must be at least 1MiB"));
        }
        let high_water_bytes = self
            .memory
            .high_water
            .map_or(limit_bytes / 4 * 3, ByteSize::bytes);
        if high_water_bytes > limit_bytes {
            return Err(invalid(
                "memory.high_water",
                format!(
                    "{high_water_bytes} bytes: must not exceed memory.limit ({limit_bytes} bytes)"
                ),
            ));
        }
        let series_catalog_bytes = self
            .memory
            .series_catalog
            .map_or(high_water_bytes / 3 * 2, ByteSize::bytes);
        if series_catalog_bytes == 0 {
            return Err(invalid(
                "memory.series_catalog",
                "0 bytes: must be greater than zero (the catalog holds every series written, for SHOW statements and the series limit)",
            ));
        }
        if series_catalog_bytes >= high_water_bytes {
            return Err(invalid(
                "memory.series_catalog",
                format!(
                    "{series_catalog_bytes} bytes: must be below memory.high_water ({high_water_bytes} bytes): the catalog counts against memory.limit, and blocks need room beside it"
                ),
            ));
        }

        let sync = match self.wal.sync.as_deref() {
            None | Some("always") => {
                if self.wal.interval_ms.is_some() {
                    return Err(invalid(
                        "wal.interval_ms",
                        "only used with wal.sync = \"interval\"",
                    ));
                }
                SyncPolicy::Always
            }
            Some("interval") => {
                let ms = self.wal.interval_ms.ok_or_else(|| {
                    invalid("wal.interval_ms", "required when wal.sync = \"interval\"")
                })?;
                if ms == 0 || ms > 60_000 {
                    return Err(invalid("wal.interval_ms", "must be between 1 and 60000"));
                }
                SyncPolicy::Interval(Duration::from_millis(ms))
            }
            Some(other) => {
                return Err(invalid(
                    "wal.sync",
                    format!("{other:?} is not a sync policy: use \"always\" or \"interval\""),
                ));
            }
        };
        let segment_bytes = self.wal.segment_bytes.map_or(64 << 20, ByteSize::bytes);
        if segment_bytes < (64 << 10) {
            return Err(invalid(
                "wal.segment_bytes",
                format!("{segment_bytes} bytes: must be at least 64KiB"),
            ));
        }
        let queue_depth = self.wal.queue_depth.unwrap_or(256);
        if queue_depth == 0 {
            return Err(invalid("wal.queue_depth", "must be greater than zero"));
        }

        let max_body_bytes = self.http.max_body_bytes.map_or(32 << 20, ByteSize::bytes);
        if max_body_bytes < 1024 {
            return Err(invalid("http.max_body_bytes", "must be at least 1024"));
        }
        // A body's WAL record is at most ~9x its size (tiny lines), and a WAL record is at
        // most 1 GiB: keep every acceptable body recordable.
        if max_body_bytes > 64 << 20 {
            return Err(invalid("http.max_body_bytes", "must be at most 64MiB"));
        }
        // Request bodies count against memory.limit while they are read and checked: a
        // body that can never fit would be refused with a 503 forever.
        if max_body_bytes > limit_bytes {
            return Err(invalid(
                "http.max_body_bytes",
                format!(
                    "must not exceed memory.limit ({limit_bytes} bytes): request bodies count against it"
                ),
            ));
        }
        let header_timeout = match &self.http.header_timeout {
            Some(s) => duration_key("http.header_timeout", s)?,
            None => Duration::from_secs(30),
        };
        let body_timeout = match &self.http.body_timeout {
            Some(s) => duration_key("http.body_timeout", s)?,
            None => Duration::from_secs(30),
        };
        if self.http.max_connections == Some(0) {
            return Err(invalid("http.max_connections", "must be greater than zero"));
        }
        let lists = [
            ("auth.tokens", &self.auth.tokens),
            ("auth.metrics_tokens", &self.auth.metrics_tokens),
        ];
        for (key, list) in lists {
            for (i, t) in list.iter().enumerate() {
                if t.len() < 8 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid(
                        format!("{key}[{i}]"),
                        "a token must be at least 8 characters, without whitespace",
                    ));
                }
            }
        }

        let max_memory = self.query.max_memory.map_or(256 << 20, ByteSize::bytes);
        let total_memory = self.query.total_memory.map_or(1 << 30, ByteSize::bytes);
        if max_memory < (1 << 20) {
            return Err(invalid("query.max_memory", "must be at least 1MiB"));
        }
        if total_memory < max_memory {
            return Err(invalid(
                "query.total_memory",
                "must be at least query.max_memory (one query alone must fit)",
            ));
        }
        let timeout = match &self.query.timeout {
            Some(s) => duration_key("query.timeout", s)?,
            None => Duration::from_secs(30),
        };

        if let Some(e) = &self.storage.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(invalid(
                "storage.endpoint",
                format!("{e:?} must start with http:// or https://"),
            ));
        }
        if let Some(t) = &self.auth.node_token {
            if t.len() < 16 {
                return Err(invalid("auth.node_token", "must be at least 16 characters"));
            }
            if self.auth.tokens.contains(t) || self.auth.metrics_tokens.contains(t) {
                return Err(invalid(
                    "auth.node_token",
                    "must differ from every client token (nodes never use a client's)",
                ));
            }
        } else if !self.auth.tokens.is_empty() && regions.iter().any(|r| r.url.is_some()) {
            return Err(invalid(
                "auth.node_token",
                "is required when auth.tokens is set and a region has a url: nodes authenticate to each other with it, never with a client token",
            ));
        }
        let retention = check_retention(self.retention, part_ns)?;
        let cluster = self.cluster.map(check_cluster).transpose()?;
        if cluster.is_none()
            && let Some(r) = regions.iter().find(|r| r.nats_cluster.is_some())
        {
            return Err(invalid(
                format!("region {:?}: nats_cluster", r.name),
                "needs [cluster] (it places the region's JetStream stream)",
            ));
        }
        if cluster.is_none()
            && let Some(r) = regions.iter().find(|r| r.shared_storage)
        {
            return Err(invalid(
                format!("region {:?}: shared_storage", r.name),
                "needs [cluster]: the region's log (JetStream) is what its nodes share",
            ));
        }
        if cluster.is_none()
            && let Some(r) = regions.iter().find(|r| !r.replicas.is_empty())
        {
            return Err(invalid(
                format!("region {:?}: replicas", r.name),
                "need [cluster]: without it, writes reach only the node at the region's url",
            ));
        }
        let request_timeout = match &self.storage.request_timeout {
            Some(v) => duration_key("storage.request_timeout", v)?,
            None => DEFAULT_S3_REQUEST_TIMEOUT,
        };
        let retry_timeout = match &self.storage.retry_timeout {
            Some(v) => duration_key("storage.retry_timeout", v)?,
            None => DEFAULT_S3_RETRY_TIMEOUT,
        };
        Ok(Config {
            cluster,
            data_dir: self.data_dir,
            retention,
            s3: S3Config {
                endpoint: self.storage.endpoint,
                region: self.storage.region,
                access_key_id: self.storage.access_key_id,
                secret_access_key: self.storage.secret_access_key,
                allow_http: self.storage.allow_http,
                cache_bytes: self
                    .storage
                    .cache
                    .map_or(DEFAULT_STORAGE_CACHE, ByteSize::bytes),
                request_timeout,
                retry_timeout,
            },
            routing: RoutingConfig {
                regions,
                default_region,
                geo_tag: self.geo_tag,
                lat_tag: self.lat_tag,
                lon_tag: self.lon_tag,
                directory,
                partition_duration_ns: part_ns,
            },
            ingest: IngestConfig {
                shards_per_region,
                shards_configured: self.ingest.shards_per_region.filter(|n| *n > 0),
                flush,
                memory: MemoryConfig {
                    limit_bytes,
                    high_water_bytes,
                    max_series_per_database: self
                        .memory
                        .max_series_per_database
                        .unwrap_or(1_000_000),
                    series_catalog_bytes,
                },
                wal: WalConfig {
                    sync,
                    segment_bytes,
                    queue_depth,
                },
            },
            http: HttpConfig {
                listen: match self.http.listen {
                    Some(l) => {
                        check_listen(&l).map_err(|e| invalid("http.listen", e))?;
                        l
                    }
                    None => "127.0.0.1:8086".into(),
                },
                max_body_bytes,
                tokens: self.auth.tokens,
                metrics_tokens: self.auth.metrics_tokens,
                metrics_open: self.auth.metrics_open,
                node_token: self.auth.node_token,
                header_timeout,
                body_timeout,
                max_connections: self.http.max_connections,
                tls: match (self.http.tls_cert, self.http.tls_key) {
                    (Some(c), Some(k)) => Some((c, k)),
                    (None, None) => None,
                    _ => {
                        return Err(invalid(
                            "http.tls_key",
                            "tls_cert and tls_key come together",
                        ));
                    }
                },
                node_ca: self.http.node_ca,
            },
            query: QueryConfig {
                timeout,
                max_rows: self.query.max_rows.unwrap_or(10_000_000),
                max_memory,
                total_memory,
                stream_above: self
                    .query
                    .stream_above
                    .map_or(max_memory / 4, ByteSize::bytes),
                index_cache_bytes: self.query.index_cache.map_or(256 << 20, ByteSize::bytes),
                page_cache_bytes: self.query.page_cache.map_or(256 << 20, ByteSize::bytes),
            },
        })
    }
}

/// Ingest shards per region when the config leaves it out: the cores shared among the
/// config's regions, at least one each, so that the shards (a thread and a WAL each) are
/// about as many as the cores. One per core in every region oversubscribed the cores when a
/// node hosts several: with the repo's four regions on two cores (eight shards), the
/// 1,000-host gauges set took 7.39 server CPU s to ingest against 6.41 with one shard a
/// region, 3,797 WAL syncs against 1,880 (every shard a body touches syncs its own log), and
/// its flush wrote twice the files (0.068 against 0.057 bytes a value right after it);
/// ingest ran at 8.4 against 9.3 M values/s. `serve` counts the regions it hosts (all,
/// without `--region`): a node hosting one region of four keeps every core for it. Nodes
/// sharing a region on shared storage must agree; a bucket region without a recorded count
/// runs one shard per core (`region::shards_for_data_dir`).
pub fn default_shards_per_region(cores: usize, regions: usize) -> usize {
    (cores / regions.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
data_dir = "data"
partition_duration = "1h"
default_region = "global"
[[region]]
name = "global"
"#;

    fn err_of(text: &str) -> String {
        match Config::parse(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    /// `[cluster]`: absent is single-node mode; present, every value is checked and a bad
    /// one names its key.
    #[test]
    fn cluster_section_is_checked() {
        assert!(Config::parse(MIN).unwrap().cluster.is_none());
        let cfg = Config::parse(&format!(
            "{MIN}\n[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\nnode = \"n-1\"\n"
        ))
        .unwrap();
        let c = cfg.cluster.unwrap();
        assert_eq!(
            (c.node.as_deref(), c.replicas, c.publish_timeout, c.max_age),
            (
                Some("n-1"),
                1,
                Duration::from_secs(5),
                Duration::from_secs(7 * 86_400)
            )
        );
        let no_node = Config::parse(&format!("{MIN}\n[cluster]\nnats = [\"tls://h:4222\"]\n"));
        assert_eq!(no_node.unwrap().cluster.unwrap().node, None);
        for (body, key) in [
            ("nats = []", "cluster.nats"),
            ("nats = [\"http://h:4222\"]", "cluster.nats"),
            ("nats = [\"nats://h\"]\nnode = \"a.b\"", "cluster.node"),
            ("nats = [\"nats://h\"]\nreplicas = 7", "cluster.replicas"),
            ("nats = [\"nats://h\"]\nuser = \"u\"", "cluster.password"),
            (
                "nats = [\"nats://h\"]\ntls_cert = \"c.pem\"",
                "cluster.tls_key",
            ),
            (
                "nats = [\"nats://h\"]\npublish_timeout = \"0s\"",
                "cluster.publish_timeout",
            ),
            (
                "nats = [\"nats://h\"]\nmax_age = \"10s\"",
                "cluster.max_age",
            ),
            (
                "nats = [\"nats://h\"]\nrouting_lead = \"1s\"",
                "cluster.routing_lead",
            ),
            ("nats = [\"nats://h\"]\nbogus = 1", "bogus"),
            (
                "nats = [\"nats://h\"]\nlease_ttl = \"1s\"",
                "cluster.lease_ttl",
            ),
            ("nats = [\"nats://h\"]\nsite = \"e.u\"", "cluster.site"),
        ] {
            let e = err_of(&format!("{MIN}\n[cluster]\n{body}\n"));
            assert!(e.contains(key), "{body}: {e}");
        }
        assert_eq!(c.lease_ttl, Duration::from_secs(6));
    }

    /// `shared_storage`: a bucket the region's nodes share, in cluster mode only; replicas
    /// may then share a bucket.
    #[test]
    fn shared_storage_needs_a_bucket_and_cluster_mode() {
        let cluster = "[cluster]\nnats = [\"nats://h\"]\n";
        let eu =
            |lines: &str| format!("{MIN}[[region]]\nname = \"eu\"\nurl = \"http://a\"\n{lines}");
        let ok = Config::parse(&format!(
            "{}{cluster}",
            eu("replicas = [\"http://b\"]\nshared_storage = true\nstorage = \"s3://b/eu\"\n")
        ))
        .unwrap();
        let r = ok.routing.regions.iter().find(|r| r.name == "eu").unwrap();
        assert!(r.shared_storage);
        for (text, want) in [
            (
                format!("{}{cluster}", eu("shared_storage = true\n")),
                "shared_storage",
            ),
            (
                eu("shared_storage = true\nstorage = \"s3://b/eu\"\n"),
                "needs [cluster]",
            ),
            (
                format!(
                    "{}{cluster}",
                    eu("replicas = [\"http://b\"]\nstorage = \"s3://b/eu\"\n")
                ),
                "shared_storage = true",
            ),
        ] {
            let e = err_of(&text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    /// `export` per region (residency) and `auth.node_token`: defaults, checks, and the
    /// refusal of client tokens between nodes.
    #[test]
    fn export_rules_and_node_token_are_checked() {
        let cfg = Config::parse(MIN).unwrap();
        assert!(cfg.routing.regions.iter().all(|r| r.export
            == Export::Aggregates {
                min_every_ns: 60_000_000_000
            }));
        let with = |region: &str| format!("{MIN}[[region]]\nname = \"eu\"\n{region}");
        let cfg = Config::parse(&with("export = \"raw\"\n")).unwrap();
        let eu = cfg.routing.regions.iter().find(|r| r.name == "eu").unwrap();
        assert_eq!(eu.export, Export::Raw);
        let cfg = Config::parse(&with("export_min_every = \"1h\"\n")).unwrap();
        let eu = cfg.routing.regions.iter().find(|r| r.name == "eu").unwrap();
        assert_eq!(
            eu.export,
            Export::Aggregates {
                min_every_ns: 3_600_000_000_000
            }
        );
        for (lines, key) in [
            ("export = \"all\"\n", "export"),
            (
                "export = \"raw\"\nexport_min_every = \"1h\"\n",
                "export_min_every",
            ),
            ("export_min_every = \"soon\"\n", "export_min_every"),
            ("export_min_every = \"0s\"\n", "export_min_every"),
        ] {
            let e = err_of(&with(lines));
            assert!(e.contains(key), "{lines}: {e}");
        }
        // Auth on and a remote region: the node token is required, long, not a client's.
        let remote = with("url = \"http://10.0.0.2:8086\"\n");
        let auth =
            |extra: &str| format!("{remote}\n[auth]\ntokens = [\"client-token-1\"]\n{extra}");
        assert!(err_of(&auth("")).contains("auth.node_token"));
        assert!(err_of(&auth("node_token = \"short\"\n")).contains("16 characters"));
        assert!(err_of(&auth("node_token = \"client-token-1\"\n")).contains("auth.node_token"));
        let cfg = Config::parse(&auth("node_token = \"node-token-0123456789\"\n")).unwrap();
        assert_eq!(
            cfg.http.node_token.as_deref(),
            Some("node-token-0123456789")
        );
        // Without auth, or on a single node, none is needed.
        assert!(Config::parse(&remote).is_ok());
        // Replicas: URLs, after a url, in cluster mode only.
        let cluster = "\n[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\n";
        let replicas = with("url = \"http://b:8086\"\nreplicas = [\"http://c:8086\"]\n");
        let cfg = Config::parse(&format!("{replicas}{cluster}")).unwrap();
        let eu = cfg.routing.regions.iter().find(|r| r.name == "eu").unwrap();
        assert_eq!(eu.replicas, ["http://c:8086"]);
        assert!(err_of(&replicas).contains("[cluster]"));
        let e = err_of(&format!(
            "{}{cluster}",
            with("replicas = [\"http://c:8086\"]\n")
        ));
        assert!(e.contains("needs url"), "{e}");
        let e = err_of(&format!(
            "{}{cluster}",
            with("url = \"http://b:8086\"\nreplicas = [\"c:8086\"]\n")
        ));
        assert!(e.contains("replicas") && e.contains("http://"), "{e}");
    }

    /// A size error is the size parser's, naming the key and what is valid (not serde's
    /// "did not match any variant of untagged enum").
    #[test]
    fn size_errors_name_the_key_and_the_valid_units() {
        let e = err_of(&format!("{MIN}\n[wal]\nsegment_bytes = \"64mb\"\n"));
        assert!(
            e.contains("segment_bytes")
                && e.contains("invalid size unit \"mb\"")
                && e.contains("MiB"),
            "{e}"
        );
        assert!(!e.contains("untagged"), "{e}");
        let e = err_of(&format!("{MIN}\n[memory]\nlimit = -5\n"));
        assert!(e.contains("limit") && e.contains("negative"), "{e}");
        let e = err_of(&format!("{MIN}\n[memory]\nlimit = true\n"));
        assert!(e.contains("limit") && e.contains("\"64MiB\""), "{e}");
        let cfg = Config::parse(&format!("{MIN}\n[memory]\nlimit = 268435456\n")).unwrap();
        assert_eq!(cfg.ingest.memory.limit_bytes, 256 << 20);
        let e = err_of(&format!("{MIN}\n[memory]\nlimit = \"1.5GiB\"\n"));
        assert!(e.contains("memory.limit") && e.contains("1536MiB"), "{e}");
        let e = err_of(&format!("{MIN}\n[flush]\nmax_age = \"1.5h\"\n"));
        assert!(e.contains("max_age") && e.contains("1h30m"), "{e}");
        let e = err_of(&format!("{MIN}\n[ingest]\nshards_per_region = -1\n"));
        assert!(
            e.contains("shards_per_region") && e.contains("whole number"),
            "{e}"
        );
        let e = err_of("data_dir = \"d\"\ndefault_region = \"g\"\n[[region]]\nname = \"g\"\n");
        assert!(
            e.contains("missing key `partition_duration`") && !e.contains("data_dir"),
            "{e}"
        );
        let e = err_of(&format!(
            "{MIN}\n[query]\ntimeout = \"1s\"\n[query]\nmax_rows = 5\n"
        ));
        assert!(e.contains("[query]"), "{e}");
        let cfg = Config::parse(&format!("{MIN}\n[flush]\nmax_age = \"1 h\"\n")).unwrap();
        assert_eq!(
            cfg.ingest.flush.max_age,
            std::time::Duration::from_secs(3600)
        );
    }

    #[test]
    fn repo_default_config_is_valid() {
        let text = include_str!("../regions.toml");
        let cfg = Config::parse(text).expect("regions.toml must be valid");
        assert_eq!(cfg.routing.regions.len(), 4);
        assert_eq!(cfg.http.listen, "127.0.0.1:8086");
        assert_eq!(cfg.ingest.wal.sync, SyncPolicy::Always);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = Config::parse(MIN).unwrap();
        assert_eq!(cfg.routing.partition_duration_ns, 3_600_000_000_000);
        assert_eq!(cfg.routing.geo_tag, "region");
        assert_eq!(cfg.ingest.flush.max_rows, 1_000_000);
        assert_eq!(cfg.http.max_body_bytes, 32 << 20);
        assert_eq!(cfg.query.index_cache_bytes, 256 << 20);
        assert!(cfg.ingest.shards_per_region >= 1);
        assert_eq!(
            cfg.ingest.shards_per_region,
            default_shards_per_region(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
                cfg.routing.regions.len()
            )
        );
        // The cores shared among the regions, at least one shard each.
        assert_eq!(default_shards_per_region(2, 4), 1);
        assert_eq!(default_shards_per_region(8, 4), 2);
        assert_eq!(default_shards_per_region(8, 1), 8);
        assert_eq!(default_shards_per_region(8, 3), 2);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err_of(&format!("{MIN}\nbogus_key = 1\n"));
        assert!(e.contains("bogus_key"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (MIN.replace("\"1h\"", "\"7m\""), "partition_duration"),
            (MIN.replace("\"1h\"", "\"30s\""), "partition_duration"),
            (MIN.replace("\"1h\"", "\"36h\""), "partition_duration"),
            (MIN.replace("\"1h\"", "\"soon\""), "partition_duration"),
            (
                MIN.replace("default_region = \"global\"", "default_region = \"mars\""),
                "default_region",
            ),
            (
                MIN.replace("name = \"global\"", "name = \"../x\""),
                "region[0].name",
            ),
            (format!("{MIN}\n[wal]\nsync = \"sometimes\"\n"), "wal.sync"),
            (
                format!("{MIN}\n[wal]\nsync = \"interval\"\n"),
                "wal.interval_ms",
            ),
            (
                format!("{MIN}\n[flush]\nmax_age = \"0s\"\n"),
                "flush.max_age",
            ),
            (
                format!("{MIN}\n[flush]\nmax_bytes = \"12 parsecs\"\n"),
                "max_bytes",
            ),
            (
                format!("{MIN}\n[memory]\nlimit = \"1GiB\"\nhigh_water = \"2GiB\"\n"),
                "memory.high_water",
            ),
            (
                format!("{MIN}\n[http]\nmax_body_bytes = \"1GiB\"\n"),
                "http.max_body_bytes",
            ),
            (
                format!("{MIN}\n[http]\nlisten = \"127.0.0.1\"\n"),
                "http.listen",
            ),
            (
                format!("{MIN}\n[http]\nlisten = \"host:99999\"\n"),
                "http.listen",
            ),
            (
                format!("{MIN}\n[directory]\n\"tenant\" = \"global\"\n"),
                "directory.\"tenant\"",
            ),
            (
                format!("{MIN}\n[directory]\n\"tenant=acme\" = \"mars\"\n"),
                "directory.\"tenant=acme\"",
            ),
            (
                format!("{MIN}\n[auth]\ntokens = [\"short\"]\n"),
                "auth.tokens[0]",
            ),
            (
                format!(
                    "{MIN}\n[[region]]\nname = \"eu\"\nbbox = [{{min_lat = 10.0, max_lat = 5.0, min_lon = 0.0, max_lon = 1.0}}]\n"
                ),
                "region[1].bbox[0]",
            ),
            (
                format!("{MIN}\n[[region]]\nname = \"eu\"\ntag_values = [\"eu-[\"]\n"),
                "region[1].tag_values[0]",
            ),
            (
                format!("{MIN}\n[[region]]\nname = \"global\"\n"),
                "region[1].name",
            ),
            (
                format!("{MIN}\n[storage]\nurl = \"gs://b/p\"\n"),
                "storage.url",
            ),
            (
                format!("{MIN}\n[storage]\nurl = \"s3:///p\"\n"),
                "storage.url",
            ),
            (
                format!("{MIN}\n[storage]\nendpoint = \"127.0.0.1:9000\"\n"),
                "storage.endpoint",
            ),
            (
                format!("{MIN}\n[storage]\ntime_unit = \"ms\"\n"),
                "storage.time_unit",
            ),
            (
                format!("{MIN}\n[[retention]]\ndb = \"wal\"\nkeep = \"1d\"\n"),
                "retention[0].db",
            ),
            (
                format!("{MIN}\n[[retention]]\ndb = \"t\"\nkeep = \"-1d\"\n"),
                "retention[0].keep",
            ),
            (
                format!("{MIN}\n[[retention]]\ndb = \"t\"\n"),
                "retention[0].keep",
            ),
            (
                format!(
                    "{MIN}\n[[retention]]\ndb = \"t\"\nmeasurement = \"cpu\"\ndownsample = \"1m:mean\"\n"
                ),
                "retention[0].downsample_after",
            ),
            (
                format!(
                    "{MIN}\n[[retention]]\ndb = \"t\"\ndownsample = \"1m:mean\"\ndownsample_after = \"1d\"\n"
                ),
                "retention[0].measurement",
            ),
            (
                format!(
                    "{MIN}\n[[retention]]\ndb = \"t\"\nmeasurement = \"cpu\"\ndownsample = \"7m:mean\"\ndownsample_after = \"1d\"\n"
                ),
                "retention[0].downsample",
            ),
            (
                format!(
                    "{MIN}\n[[retention]]\ndb = \"t\"\nkeep = \"1d\"\n[[retention]]\ndb = \"t\"\nkeep = \"2d\"\n"
                ),
                "retention[1].db",
            ),
        ];
        for (text, key) in cases {
            let e = err_of(&text);
            assert!(e.contains(key), "error {e:?} should name {key:?}");
        }
    }

    #[test]
    fn storage_and_retention() {
        let cfg = Config::parse(&format!(
            "{MIN}\n[storage]\nurl = \"s3://bucket/pre/fix/\"\n[[region]]\nname = \"eu\"\nstorage = \"s3://eu-bucket\"\n"
        ))
        .unwrap();
        let loc: Vec<_> = cfg
            .routing
            .regions
            .iter()
            .map(|r| r.storage.clone())
            .collect();
        assert_eq!(
            loc,
            vec![
                StorageLocation::S3 {
                    url: "s3://bucket/pre/fix/global".into()
                },
                StorageLocation::S3 {
                    url: "s3://eu-bucket".into()
                },
            ]
        );
        assert_eq!(
            Config::parse(MIN).unwrap().routing.regions[0].storage,
            StorageLocation::Local
        );
        let cfg = Config::parse(&format!(
            "{MIN}\n[[retention]]\ndb = \"t\"\nkeep = \"30d\"\n[[retention]]\ndb = \"t\"\nmeasurement = \"cpu\"\nkeep = \"7d\"\ndownsample = \"1m:mean,max\"\ndownsample_after = \"1d\"\n"
        ))
        .unwrap();
        let day = 86_400_000_000_000i64;
        let now = 100 * day;
        let r = &cfg.retention;
        assert_eq!(r.keeps_from("t", "cpu", now), now - 7 * day, "its own rule");
        assert_eq!(
            r.keeps_from("t", "mem", now),
            now - 30 * day,
            "the db's rule"
        );
        assert_eq!(r.keeps_from("other", "cpu", now), i64::MIN, "no rule");
        // A measurement rule that only downsamples keeps what its database keeps.
        let cfg = Config::parse(&format!(
            "{MIN}\n[[retention]]\ndb = \"t\"\nkeep = \"30d\"\n[[retention]]\ndb = \"t\"\nmeasurement = \"cpu\"\ndownsample = \"1m:mean\"\ndownsample_after = \"1d\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.retention.keeps_from("t", "cpu", now), now - 30 * day);
        // Sources must live long enough to be rolled up.
        let e = err_of(&format!(
            "{MIN}\n[[retention]]\ndb = \"t\"\nmeasurement = \"cpu\"\nkeep = \"1d\"\ndownsample = \"1m:mean\"\ndownsample_after = \"1d\"\n"
        ));
        assert!(e.contains("retention[0].keep"), "{e}");
        let ds = r
            .rule_for("t", "cpu")
            .and_then(|r| r.downsample.clone())
            .unwrap();
        assert_eq!(ds.target("cpu"), "cpu_1m");
        assert_eq!(ds.older_than_ns, day);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("512").unwrap(), 512);
        assert_eq!(parse_byte_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_byte_size("2GB").unwrap(), 2_000_000_000);
        assert!(parse_byte_size("MiB").is_err());
        assert!(parse_byte_size("99999999999999999999GiB").is_err());
        let cfg = Config::parse(&format!("{MIN}\n[flush]\nmax_bytes = 1000\n")).unwrap();
        assert_eq!(cfg.ingest.flush.max_bytes, 1000);
        let cfg = Config::parse(&format!("{MIN}\n[query]\nindex_cache = \"64MiB\"\n")).unwrap();
        assert_eq!(cfg.query.index_cache_bytes, 64 << 20);
        assert_eq!(cfg.query.page_cache_bytes, 256 << 20, "the default");
        let cfg = Config::parse(&format!("{MIN}\n[query]\npage_cache = \"0\"\n")).unwrap();
        assert_eq!(cfg.query.page_cache_bytes, 0);
    }

    #[test]
    fn bbox_crossing_antimeridian() {
        let b = BBox {
            min_lat: -50.0,
            max_lat: 0.0,
            min_lon: 160.0,
            max_lon: -170.0,
        };
        assert!(b.contains(-40.0, 175.0));
        assert!(b.contains(-40.0, -175.0));
        assert!(!b.contains(-40.0, 0.0));
        assert!(!b.contains(10.0, 175.0));
    }

    #[test]
    fn interval_sync_policy() {
        let cfg = Config::parse(&format!(
            "{MIN}\n[wal]\nsync = \"interval\"\ninterval_ms = 50\n"
        ))
        .unwrap();
        assert_eq!(
            cfg.ingest.wal.sync,
            SyncPolicy::Interval(Duration::from_millis(50))
        );
    }
}
