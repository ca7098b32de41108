//! `meridian`: the server binary. Thin: parse flags, load and validate the config, open the
//! engine (recovery happens there), serve HTTP until SIGINT/SIGTERM, then flush and exit 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing::info;

use meridian::cluster::WriteDispatch;
use meridian::cluster::forward::Direct;
use meridian::cluster::jetstream::JetStream;
use meridian::cluster::remote::RemoteClient;
use meridian::config::Config;
use meridian::http::serve::{self as http_serve, ServeLimits, connection_limit, raise_fd_limit};
use meridian::http::{AppState, router};
use meridian::query::budget::QueryMemory;
use meridian::region::{Engine, OpenOptions};

/// jemalloc rather than glibc's malloc: under `tools/soak --duration 60` (concurrent 30 MiB
/// bodies, raw queries, a cardinality burst) glibc keeps freed memory in its arenas. Same
/// code, same run: peak RSS 802 MiB with glibc, 635 and 649 MiB with jemalloc and the
/// options below.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (`_rjem_` is the prefix tikv-jemalloc-sys builds
/// it with): a background thread returns freed pages to the kernel after 200 ms
/// (jemalloc's default is ten seconds, and only while the program allocates), so memory
/// given back by a finished request, flush or query leaves the RSS soon. Under the
/// 1,000-host ingest of `tools/compare`, peak RSS was 207–214 MiB with 1 s and 173–181 MiB
/// with 200 ms, at the same server CPU; 50 ms gave 162–171 MiB for 6% more CPU, and 0 ms
/// 40% more. `_RJEM_MALLOC_CONF` in the environment still overrides them.
#[cfg(feature = "jemalloc")]
#[used]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: JemallocConf =
    JemallocConf(c"background_thread:true,dirty_decay_ms:200,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads as `const char *malloc_conf`.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);

// SAFETY: it points to a static string that nothing writes.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for JemallocConf {}

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Meridian: a geo-sharded time-series database (InfluxDB line protocol in, Parquet out)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: HTTP writes and queries for the regions of the config.
    Serve(ServeArgs),
    /// Routing versions: which routing was in force when (see the README's "Changing the
    /// routing").
    #[command(subcommand)]
    Routing(RoutingCommand),
    /// Validate a config file and print the regions it describes.
    CheckConfig {
        /// Path of the config file.
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum RoutingCommand {
    /// Print every routing version: from NATS in cluster mode, else from the data dir.
    Show {
        /// Path of the config file (its [cluster] section, or its data_dir).
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// Data directory (overrides data_dir of the config; not in cluster mode).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the versions whole, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cluster mode: publish the routing of a config file (its [[region]] geography,
    /// default_region, geo tags and [directory]) as a new version. Every node reads it
    /// within a second; points at or after its effective time are routed by it, earlier
    /// points keep the routing they had. Outside cluster mode, edit regions.toml and
    /// restart instead.
    Publish {
        /// The config whose routing is published (and whose [cluster] says where NATS is).
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// When the version takes effect (RFC 3339), at least cluster.routing_lead from
        /// now. Default: now plus cluster.routing_lead, rounded up to the second.
        #[arg(long)]
        effective: Option<String>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Path of the cluster config (regions, partitioning, flush, WAL, limits).
    #[arg(long, default_value = "regions.toml")]
    config: PathBuf,
    /// Address to listen on (overrides http.listen). Use port 0 for any free port; the
    /// address actually bound is printed as `listening on ADDR`.
    #[arg(long)]
    listen: Option<String>,
    /// Data directory (overrides data_dir of the config).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Host only this region (repeatable). Default: every region of the config.
    #[arg(long = "region", value_name = "NAME")]
    regions: Vec<String>,
    /// Cluster mode: this node's name, unique in the cluster (overrides cluster.node, so
    /// that every node can read the same regions.toml).
    #[arg(long)]
    node: Option<String>,
    /// Start even if a WAL segment is corrupt in the middle, dropping the rest of that segment
    /// (default: refuse to start, so no data is dropped silently).
    #[arg(long)]
    skip_corrupt_wal: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `meridian=debug`.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> std::process::ExitCode {
    // The error and its causes, one line, without a backtrace (RUST_BACKTRACE is common on
    // developer machines, and a stack trace tells an operator nothing about a config key or
    // a damaged manifest).
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meridian: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::CheckConfig { config } => {
            let cfg = Config::load(&config)
                .with_context(|| format!("invalid config {}", config.display()))?;
            // What serve checks before opening the data directory: the connection limit
            // against the descriptors this process may open.
            let fd_limit = raise_fd_limit().context("reading the descriptor limit")?;
            // The shard count serve would run with on this config's data dir (the default
            // for a new one when the data dir cannot be read by this user).
            let per_region = match resolved_shards(&cfg, None) {
                Ok((n, _)) => n,
                Err(e) => {
                    eprintln!(
                        "note: {e:#}; the descriptor check assumes {} ingest shards per region",
                        cfg.ingest.shards_per_region
                    );
                    cfg.ingest.shards_per_region
                }
            };
            let shards = cfg.routing.regions.len() * per_region;
            connection_limit(cfg.http.max_connections, fd_limit, shards)
                .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", config.display()))?;
            // A closed stdout (`| head`) is not an error of the config.
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "config {} is valid", config.display());
            let _ = writeln!(out, "data_dir: {}", cfg.data_dir.display());
            for (i, r) in cfg.routing.regions.iter().enumerate() {
                let default = if i == cfg.routing.default_region {
                    " (default)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "region {}{default}: tag_values {:?}, {} bbox(es)",
                    r.name,
                    r.tag_values,
                    r.bbox.len()
                );
            }
            Ok(())
        }
        Command::Serve(args) => serve(args),
        Command::Routing(cmd) => routing_command(cmd),
    }
}

/// The ingest shards per region `cfg`'s data dir runs with, and where the count came from
/// (`meridian::region::shards_for_data_dir`; nothing is written).
/// `hosted`: the regions this node hosts (`serve --region`; all when `None`), among which the
/// default shares the cores.
fn resolved_shards(
    cfg: &Config,
    hosted: Option<&[String]>,
) -> Result<(usize, meridian::region::ShardsFrom)> {
    let regions: Vec<(&str, bool)> = cfg
        .routing
        .regions
        .iter()
        .filter(|r| hosted.is_none_or(|h| h.contains(&r.name)))
        .map(|r| {
            let bucket =
                r.shared_storage || !matches!(r.storage, meridian::config::StorageLocation::Local);
            (r.name.as_str(), bucket)
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    meridian::region::shards_for_data_dir(
        &cfg.data_dir,
        &regions,
        cfg.ingest.shards_configured,
        meridian::config::default_shards_per_region(cores, regions.len()),
        cores,
    )
    .with_context(|| {
        format!(
            "reading the ingest shard count of {}",
            cfg.data_dir.join(meridian::region::SHARDS_FILE).display()
        )
    })
}

fn routing_command(cmd: RoutingCommand) -> Result<()> {
    use meridian::cluster::routing_kv;
    use meridian::routing::{Definitions, History, Rules};
    let load = |config: &PathBuf| {
        Config::load(config).with_context(|| format!("invalid config {}", config.display()))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let store = |cfg: &Config| {
        let c = cfg.cluster.clone();
        async move {
            let c = c.context("no [cluster] section")?;
            let client = meridian::cluster::jetstream::connect_client(&c, "meridian-routing")
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            // The largest message the servers take (a history must fit in one).
            let max_payload = client.server_info().max_payload;
            let js = async_nats::jetstream::new(client);
            let kv = routing_kv::bucket(&js, &c)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            anyhow::Ok((kv, max_payload))
        }
    };
    let when = |ns: i64| {
        if ns == i64::MIN {
            "the beginning".to_string()
        } else {
            chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339()
        }
    };
    match cmd {
        RoutingCommand::Show {
            config,
            data_dir,
            json,
        } => {
            let cfg = load(&config)?;
            // Cluster mode: the published region definitions too (`None`: none published).
            let mut definitions = None;
            let history = if cfg.cluster.is_some() {
                let (history, defs) = rt.block_on(async {
                    let (kv, _) = store(&cfg).await?;
                    let history = routing_kv::read(&kv)
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                    // Unreadable definitions are shown as such, with the versions.
                    let defs = routing_kv::read_definitions(&kv).await;
                    anyhow::Ok((history, defs))
                })?;
                definitions = Some(defs.map(|d| d.map(|(d, _)| d)));
                history
                    .map(|(h, _)| h)
                    .context("no routing version is recorded in NATS yet: start a node first")?
            } else {
                let dir = data_dir.unwrap_or(cfg.data_dir);
                let path = meridian::storage::paths::routing_file(&dir);
                let bytes = std::fs::read(&path).with_context(|| {
                    format!(
                        "reading {} (it is written when the server starts)",
                        path.display()
                    )
                })?;
                History::parse(&bytes).with_context(|| format!("reading {}", path.display()))?
            };
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            if json {
                // The history as recorded, with the definitions beside its versions.
                let mut value = serde_json::to_value(&history).unwrap_or_default();
                if let (Some(defs), Some(map)) = (&definitions, value.as_object_mut()) {
                    let defs = match defs {
                        Ok(d) => serde_json::to_value(d).unwrap_or_default(),
                        Err(e) => serde_json::json!({ "error": e }),
                    };
                    map.insert("definitions".into(), defs);
                }
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
                return Ok(());
            }
            for v in &history.versions {
                let summary = serde_json::from_value::<Rules>(v.rules.clone()).map_or_else(
                    |_| format!("format {} (not readable by this build)", v.format),
                    |r| {
                        let directory: Vec<String> = r
                            .directory
                            .iter()
                            .map(|e| format!("{}={} → {}", e.tag, e.value, e.region))
                            .collect();
                        let geo: Vec<String> = r
                            .regions
                            .iter()
                            .map(|g| format!("{} {:?} {} bbox", g.name, g.tag_values, g.bbox.len()))
                            .collect();
                        format!(
                            "default {}; regions: {}; directory: {}",
                            r.default_region,
                            geo.join(", "),
                            if directory.is_empty() {
                                "(none)".to_string()
                            } else {
                                directory.join(", ")
                            }
                        )
                    },
                );
                let _ = writeln!(
                    out,
                    "version {} in force from {} (recorded {}): {summary}",
                    v.number,
                    when(v.effective_from),
                    when(v.recorded_at)
                );
            }
            match definitions {
                Some(Ok(Some(defs))) => {
                    let _ = writeln!(
                        out,
                        "region definitions published {} (each node takes them within seconds of reading them):",
                        when(defs.recorded_at)
                    );
                    for r in &defs.regions {
                        let export = match r.reach.export {
                            meridian::config::Export::Raw => "raw".to_string(),
                            meridian::config::Export::Aggregates { min_every_ns } => format!(
                                "aggregates (buckets of {} or more)",
                                meridian::influxql::format_duration(min_every_ns)
                            ),
                        };
                        let _ = writeln!(
                            out,
                            "  {}: url {}, replicas [{}], export {export}",
                            r.name,
                            r.reach.url.as_deref().unwrap_or("(none)"),
                            r.reach.replicas.join(", ")
                        );
                    }
                }
                Some(Ok(None)) => {
                    let _ = writeln!(
                        out,
                        "region definitions: none published (each node uses its regions.toml's url, replicas and export)"
                    );
                }
                Some(Err(e)) => {
                    let _ = writeln!(
                        out,
                        "region definitions: {e} (nodes keep their urls and no region's raw points leave its nodes; publish again to replace them)"
                    );
                }
                None => {}
            }
            Ok(())
        }
        RoutingCommand::Publish { config, effective } => {
            let cfg = load(&config)?;
            let lead = cfg
                .cluster
                .as_ref()
                .map(|c| c.routing_lead)
                .context("routing versions are published in cluster mode ([cluster] in the config); otherwise edit regions.toml and restart the server, which records the change")?;
            // Default: the lead from now, computed just before the version is recorded.
            let effective_from = match effective {
                Some(t) => Some(
                    chrono::DateTime::parse_from_rfc3339(&t)
                        .ok()
                        .and_then(|d| d.timestamp_nanos_opt())
                        .with_context(|| format!("--effective {t:?}: not an RFC 3339 time"))?,
                ),
                None => None,
            };
            let rules = Rules::from_config(&cfg.routing);
            let defs =
                Definitions::from_config(&cfg.routing, meridian::catalog::manifest::now_ns());
            // A region no node can reach: say so (its own nodes still answer for it).
            for r in cfg.routing.regions.iter().filter(|r| r.url.is_none()) {
                eprintln!(
                    "note: region {:?} has no url: only nodes hosting it can query it",
                    r.name
                );
            }
            rt.block_on(async {
                let (kv, max_payload) = store(&cfg).await?;
                let version =
                    routing_kv::publish(&kv, &rules, effective_from, lead, Some(max_payload))
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                // Said at once: the definitions below may fail on their own.
                match &version {
                    Some((v, compressed)) => {
                        println!(
                            "published routing version {} in force from {}",
                            v.number,
                            when(v.effective_from)
                        );
                        if *compressed {
                            eprintln!(
                                "note: the routing history is over {} KiB of JSON and is stored zstd-compressed: nodes of builds before compression cannot read it",
                                routing_kv::COMPRESS_ABOVE >> 10
                            );
                        }
                    }
                    None if effective_from.is_some() => eprintln!(
                        "note: the routing is unchanged (it is the latest version): --effective applies to nothing"
                    ),
                    None => {}
                }
                let revision = routing_kv::publish_definitions(&kv, &defs)
                    .await
                    .map_err(|e| match &version {
                        Some((v, _)) => anyhow::anyhow!(
                            "routing version {} is published, but the region definitions are not: {e}",
                            v.number
                        ),
                        None => anyhow::anyhow!(e),
                    })?;
                match (&version, revision) {
                    (_, Some(revision)) => println!(
                        "published region definitions (url, replicas, export; revision {revision}): each node puts them in force within seconds (`meridian routing show`)"
                    ),
                    (Some(_), None) => {}
                    (None, None) => anyhow::bail!(
                        "nothing to publish: the routing is unchanged (it is the latest version) and so are the region definitions"
                    ),
                }
                anyhow::Ok(())
            })
        }
    }
}

/// What an operator wants to see at start-up, a line per region and one for the limits:
/// which regions this node hosts (where their files are, how many) and where the others
/// are, what the WAL replay put back in memory, then the bounds in force.
fn log_startup_summary(engine: &Engine, cfg: &Config) {
    use std::sync::atomic::Ordering::Relaxed;
    for r in engine.regions() {
        match &r.manifest {
            Some(m) => {
                let files = m.files();
                info!(
                    region = %r.name,
                    storage = %m.store().describe(),
                    files = files.len(),
                    file_bytes = files.iter().map(|f| f.bytes).sum::<u64>(),
                    file_rows = files.iter().map(|f| f.rows).sum::<u64>(),
                    "region hosted here"
                );
            }
            None => info!(
                region = %r.name,
                url = r.reach().url.as_deref().unwrap_or("(none)"),
                "region hosted elsewhere"
            ),
        }
    }
    let m = engine.metrics();
    info!(
        wal_records = m.replayed_records.load(Relaxed),
        wal_points = m.replayed_points.load(Relaxed),
        "WAL replayed"
    );
    let mem = &cfg.ingest.memory;
    info!(
        memory_limit = %size(mem.limit_bytes),
        high_water = %size(mem.high_water_bytes),
        series_catalog = %size(mem.series_catalog_bytes),
        max_series_per_database = mem.max_series_per_database,
        max_body_bytes = %size(cfg.http.max_body_bytes),
        query_max_memory = %size(cfg.query.max_memory),
        query_total_memory = %size(cfg.query.total_memory),
        query_timeout_ms = cfg.query.timeout.as_millis() as u64,
        wal_sync = %match cfg.ingest.wal.sync {
            meridian::config::SyncPolicy::Always => "always".to_string(),
            meridian::config::SyncPolicy::Interval(d) => format!("interval {}ms", d.as_millis()),
        },
        "limits in force"
    );
}

/// How often the flushes of the last period are summed up in one log line (each flush is
/// a debug line).
const FLUSH_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Logs, every `every`, one line summing the flushes of the period (none when there were
/// none), and the memory held at its end.
async fn log_flush_summaries(engine: Arc<Engine>, every: Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    let m = engine.metrics().clone();
    let read = || {
        (
            m.flushes.load(Relaxed),
            m.flush_rows.load(Relaxed),
            m.flush_bytes.load(Relaxed),
            m.flush_micros.load(Relaxed),
            m.flush_failures.load(Relaxed),
        )
    };
    let mut last = read();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = read();
        let flushes = now.0 - last.0;
        if flushes > 0 || now.4 > last.4 {
            info!(
                flushes,
                rows = now.1 - last.1,
                bytes = now.2 - last.2,
                secs = (now.3 - last.3) as f64 / 1e6,
                failures = now.4 - last.4,
                memory_bytes = m.memory_bytes.load(Relaxed),
                period_secs = every.as_secs(),
                "flushed"
            );
        }
        last = now;
    }
}

/// At most four malloc arenas (glibc's default is eight per core): each blocking thread
/// that parsed a large body otherwise keeps its own arena's freed memory. Measured with
/// `tools/soak` (six concurrent 30 MiB gzip writers, 256 MiB limit): peak RSS 948 MiB with
/// the default, 715 MiB with four.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    cap_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).context("invalid --log filter")?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut cfg = Config::load(&args.config)
        .with_context(|| format!("invalid config {}", args.config.display()))?;
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(c) = cfg.cluster.as_mut() {
        if let Some(n) = args.node {
            meridian::config::check_node_name(&n).map_err(|e| anyhow::anyhow!("--node: {e}"))?;
            c.node = Some(n);
        }
        if c.node.is_none() {
            anyhow::bail!(
                "cluster mode needs this node's name: give --node NAME or cluster.node in the config"
            );
        }
    } else if args.node.is_some() {
        anyhow::bail!("--node is for cluster mode: the config has no [cluster] section");
    }
    if let Some(l) = args.listen {
        meridian::config::check_listen(&l).map_err(|e| anyhow::anyhow!("--listen: {e}"))?;
        cfg.http.listen = l;
    }
    // A region this node does not host is reached at its url: without one, every write
    // and query touching it would fail (writes with a 503 that retrying never ends).
    if !args.regions.is_empty() {
        let unreachable: Vec<&str> = cfg
            .routing
            .regions
            .iter()
            .filter(|r| !args.regions.contains(&r.name) && r.url.is_none())
            .map(|r| r.name.as_str())
            .collect();
        if !unreachable.is_empty() {
            anyhow::bail!(
                "--region {}: region(s) {} are not hosted here and have no url in the config; give each a url (the node hosting it) or host it here too",
                args.regions.join(","),
                unreachable.join(", ")
            );
        }
    }
    let opts = OpenOptions {
        hosted: (!args.regions.is_empty()).then_some(args.regions),
        skip_corrupt_wal: args.skip_corrupt_wal,
    };
    // The shard count this data dir runs with (a default must not move under its data).
    let shards_from;
    {
        let (n, from) = resolved_shards(&cfg, opts.hosted.as_deref())?;
        cfg.ingest.shards_per_region = n;
        shards_from = from;
        match from {
            meridian::region::ShardsFrom::Remembered => {
                info!(
                    shards_per_region = n,
                    "ingest shards per region: as this data dir ran before"
                )
            }
            meridian::region::ShardsFrom::Wal => info!(
                shards_per_region = n,
                "ingest shards per region: as this data dir's WAL was written (now recorded)"
            ),
            meridian::region::ShardsFrom::Cores => info!(
                shards_per_region = n,
                "ingest shards per region: one per core (a region kept in a bucket, no record here)"
            ),
            _ => {}
        }
    }
    // Descriptors: raised before anything is opened, and the connection limit checked
    // against them (the config error names the key) before the engine opens.
    let fd_limit = raise_fd_limit().context("reading the descriptor limit")?;
    let shards = cfg.routing.regions.len() * cfg.ingest.shards_per_region;
    let max_connections = connection_limit(cfg.http.max_connections, fd_limit, shards)
        .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", args.config.display()))?;
    // Node-to-node traffic in the clear while this node serves HTTPS: say so.
    if cfg.http.tls.is_some() {
        let plain = node_urls(&cfg, "http://");
        if !plain.is_empty() {
            tracing::warn!(urls = ?plain, "this node serves HTTPS but reaches these nodes over plain HTTP: give them https:// urls (and http.node_ca)");
        }
    }
    // An https:// node with no CA to verify it by would fail every request: refuse now.
    let secure = node_urls(&cfg, "https://");
    if !secure.is_empty() && cfg.http.node_ca.is_none() {
        anyhow::bail!(
            "regions are reached over HTTPS ({}) but http.node_ca is not set: give the CA that signs the nodes' certificates",
            secure.join(", ")
        );
    }
    // HTTPS: the certificate is read before anything is opened (a bad file stops start-up).
    let tls = match &cfg.http.tls {
        Some((cert, key)) => {
            Some(http_serve::tls_acceptor(cert, key).map_err(|e| anyhow::anyhow!(e))?)
        }
        None => None,
    };
    // The address is taken before the data directory is opened: a port in use stops
    // start-up before any recovery work.
    let std_listener = std::net::TcpListener::bind(&cfg.http.listen)
        .with_context(|| format!("cannot listen on {}", cfg.http.listen))?;
    std_listener
        .set_nonblocking(true)
        .context("configuring the listening socket")?;
    let engine = Engine::open(&cfg, &opts).context("opening the data directory")?;
    if shards_from != meridian::region::ShardsFrom::Remembered {
        meridian::region::record_shards(engine.data_dir(), cfg.ingest.shards_per_region)
            .with_context(|| {
                format!(
                    "recording the ingest shard count in {}",
                    cfg.data_dir.join(meridian::region::SHARDS_FILE).display()
                )
            })?;
    }
    log_startup_summary(&engine, &cfg);
    engine.load_series_catalog();
    engine.warm_index_cache();
    // Replaced files outlive any query that may still read them.
    engine.keep_manifests_current(cfg.query.timeout + Duration::from_secs(30));
    // `[[retention]]`: expired partitions dropped and windows rolled up in the background.
    let token = meridian::compaction::datadir::run_token();
    let regions = engine
        .regions()
        .iter()
        .filter_map(|r| {
            let manifest = r.manifest.clone()?;
            Some(meridian::compaction::datadir::RegionDir {
                dir: meridian::storage::paths::region_dir(engine.data_dir(), &r.name),
                name: r.name.to_string(),
                manifest,
                token: token.clone(),
                // Shared storage: other nodes write beside this one.
                sweeper: if r.log.is_some() {
                    meridian::catalog::leftovers::Sweeper::BesideServer
                } else {
                    meridian::catalog::leftovers::Sweeper::Owner
                },
                shared: r.log.clone(),
            })
        })
        .collect();
    // Joined by the engine's shutdown, before its last deletion of replaced files.
    if let Some(t) = meridian::compaction::background::spawn(
        regions,
        engine.retention().clone(),
        cfg.routing.partition_duration_ns,
        cfg.ingest.flush.time_unit,
        engine.stopping_flag(),
        engine.metrics().clone(),
    ) {
        engine.adopt_thread(t);
    }
    let cfg = Arc::new(cfg);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("meridian-http")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .with_context(|| format!("cannot listen on {}", cfg.http.listen))?;
        let addr = listener.local_addr()?;
        // Install the signal handlers before announcing readiness: a SIGTERM sent right
        // after `listening on` must stop the server gracefully, not kill it.
        let signals = Signals::install()?;
        // Nodes present the node token to each other (config refuses client tokens for that
        // when auth is on and a region is remote). The client's own timeout comes a second
        // after the query's deadline, so a hung node is reported as `timeout`, not as an error.
        let remote = RemoteClient::new(
            cfg.http.node_token.clone(),
            cfg.query.timeout + Duration::from_secs(1),
            cfg.http.node_ca.as_deref(),
            cfg.query.max_memory,
        )
            .map_err(|e| anyhow::anyhow!("building the HTTP client for other nodes: {e}"))?;
        // Cluster mode: writes go through JetStream; this node splits the bodies it
        // receives and applies the logs of the regions it hosts.
        type Barrier = Option<Arc<dyn meridian::query::remote::WriteBarrier>>;
        let (writes, barrier, cluster_tasks, cluster): (Arc<dyn WriteDispatch>, Barrier, Vec<_>, _) = match &cfg.cluster {
            Some(c) => {
                let js = Arc::new(
                    JetStream::connect(
                        c,
                        &cfg.routing,
                        engine.clone(),
                        cfg.http.max_body_bytes,
                        cfg.s3.request_timeout + cfg.s3.retry_timeout,
                        meridian::cluster::routing_kv::NodeAccess::from_config(&cfg),
                    )
                        .await
                        .map_err(|e| anyhow::anyhow!("cluster mode: {e}"))?,
                );
                info!(node = ?c.node, nats = ?c.nats, replicas = c.replicas, max_payload = js.max_payload(), "cluster mode: writes go through NATS JetStream");
                let tasks = js.start();
                (js.clone(), Some(js.clone()), tasks, Some(js))
            }
            None => (
                Arc::new(Direct::new(engine.clone(), remote.clone())),
                None,
                Vec::new(),
                None,
            ),
        };
        info!(%addr, data_dir = %cfg.data_dir.display(), max_connections, fd_limit, "meridian is ready");
        println!("listening on {addr}");
        let state = Arc::new(AppState {
            engine: engine.clone(),
            config: cfg.clone(),
            remote: Arc::new(remote),
            writes,
            barrier,
            query_memory: QueryMemory::new(cfg.query.total_memory, cfg.query.max_memory),
        });
        // The accept loop runs on a worker thread, not on this one: a connection's task is
        // then started by the worker that accepted it, without waking another thread (one
        // thread hand-off less per new connection).
        let limits = ServeLimits {
            max_connections,
            header_timeout: cfg.http.header_timeout,
            tls,
        };
        tokio::spawn(log_flush_summaries(engine.clone(), FLUSH_SUMMARY_EVERY));
        let drain = cfg.query.timeout.max(cfg.http.body_timeout) + Duration::from_secs(5);
        let app = router(state);
        tokio::spawn(http_serve::serve(listener, app, limits, signals.wait(), drain))
            .await
            .context("HTTP server task failed")?;
        // What the appliers committed is in the WAL; what they had not is still in the
        // regions' logs and is applied again at the next start.
        for t in cluster_tasks {
            t.abort();
        }
        // Shared storage: the flush leases go back at once, so another node hosting the
        // region takes its flushes over without waiting for them to lapse (the rows this
        // node held are in the region's log, from the last mark on).
        if let Some(js) = cluster {
            for lease in js.flush_leases() {
                lease.release().await;
            }
        }
        anyhow::Ok(())
    })?;
    use std::sync::atomic::Ordering::Relaxed;
    let m = engine.metrics().clone();
    let (flushes, rows) = (m.flushes.load(Relaxed), m.flush_rows.load(Relaxed));
    info!(
        memory_bytes = m.memory_bytes.load(Relaxed),
        "stopped accepting requests; flushing every in-memory block"
    );
    let started = std::time::Instant::now();
    engine.shutdown();
    info!(
        flushes = m.flushes.load(Relaxed) - flushes,
        rows = m.flush_rows.load(Relaxed) - rows,
        secs = started.elapsed().as_secs_f64(),
        "all data flushed; bye"
    );
    Ok(())
}

/// The urls of other nodes (regions' `url` and `replicas`) that start with `scheme`.
fn node_urls<'c>(cfg: &'c Config, scheme: &str) -> Vec<&'c str> {
    cfg.routing
        .regions
        .iter()
        .flat_map(|r| r.url.iter().chain(&r.replicas))
        .filter(|u| u.starts_with(scheme))
        .map(String::as_str)
        .collect()
}

/// A byte count as an operator reads it (`1GiB`, `768MiB`, `1536KiB`, `100B`).
fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(u, _)| bytes >= *u && bytes.is_multiple_of(*u))
        .map_or_else(|| format!("{bytes}B"), |(u, n)| format!("{}{n}", bytes / u))
}

/// SIGINT and SIGTERM streams, registered with the OS as soon as they are created.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
                int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        info!("shutdown signal received");
    }
}
