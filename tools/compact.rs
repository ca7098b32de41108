//! `meridian-compact`: compaction, retention and downsampling of a Meridian data dir, beside
//! a running server (whose lock it finds held) or offline (taking the lock).
//!
//! Thin on purpose: flags → `compaction::Policy` → `compaction::DataDir::{plan, run, verify}`,
//! plus a progress bar on a terminal (plain log lines otherwise) and a summary. Every rule
//! (what is sealed, what is merged, crash-safe order) lives in `src/compaction/`.
//!
//! Test hook: `MERIDIAN_COMPACT_PAUSE_MS=N` sleeps N ms after every durable step (output
//! written, manifest committed, input retired), so an end-to-end test can `kill -9` the
//! compactor between any two of them. It changes no behaviour but timing.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use meridian::catalog::rebuild;
use meridian::compaction::datadir::DurationSource;
use meridian::compaction::exec::RegionPreview;
use meridian::compaction::plan::{parse_time, partition_of};
use meridian::compaction::{
    DataDir, Downsample, Event, ExecSettings, Filters, PartitionId, Policy, Summary, UnitKind,
    UnitReport,
};
use meridian::config::{Config, parse_byte_size};
use meridian::model::{PartitionStart, parse_duration};
use meridian::storage::parquet::{COMPACT_PAGE_ROWS, COMPACT_ZSTD_LEVEL};
use meridian::storage::paths::{encode_measurement, partition_rel_dir};
use meridian::storage::store::Store;

const LONG_ABOUT: &str = "\
Compaction, retention and downsampling of a Meridian data dir, beside a running server or \
offline.

Compaction (the default action): every sealed partition of every region is merged into as few \
Parquet files as --target-size allows: rows sorted by tag set then time, points written more \
than once merged last-write-wins field by field (a later file in the manifest wins), zstd with \
per-column encodings and large row groups. A partition is sealed when its end is more than \
--grace in the past, or when --partition names it. A partition is only rewritten when that \
lowers its file count, so rerunning is cheap and changes nothing.

Crash safety: each unit is leased in the manifest first (two compactors never work on one \
partition); outputs are written under temporary names, fsynced and renamed (or uploaded); \
one manifest edit, created with put-if-absent, swaps inputs for outputs; inputs are deleted \
only after (offline: at the end of the run; beside a server: after its query grace). An edit \
another writer made first is applied, never overwritten. A kill -9 at any moment \
leaves every point readable exactly once; the next run (or the server's start-up) deletes the \
provable leftovers (temporary files, outputs never committed, inputs a committed edit removed) \
and carries on; any other Parquet file the manifest does not list is moved to the region's \
.orphaned/ directory, never deleted.

A missing manifest (beside data files) or a damaged one stops the server and this tool with \
advice, deleting nothing; --rebuild-manifest rebuilds it from the data files' footers.

A running server: when a server holds DATA/meridian.lock, the compactor works beside it: \
the server applies its edits within a second, queries see every point exactly once \
throughout, and the compactor touches none of the server's own files. Otherwise it takes \
the lock and holds it to the end, so a server cannot start meanwhile. --dry-run and --verify \
work either way; --rebuild-manifest needs the server stopped.

Settings: --config (else ./regions.toml if present) gives data_dir and partition_duration. \
Without a config, --data-dir is required and the partition duration is --partition-duration, \
or else inferred from the directory depth of the files (part_day=… only: 1d; …/part_hour=…: \
1h; …/part_minute=…: 1m) and checked against every file's time range; a layout that does not \
fit (e.g. 2h partitions) is refused with a request for --config or --partition-duration.";

const AFTER_HELP: &str = "\
Retention: --retain 30d drops every partition that ended at least 30 days before now: the \
manifest first, then the files, then empty directories. If the WAL on disk may still hold \
records of a dropped partition, a zero-row tombstone file keeps their WAL ranges in the \
manifest so the server's replay cannot bring the data back; a later run removes it once the \
WAL has moved on. Rollup measurements are subject to retention like any other; narrow with \
--measurement to keep them longer.

Downsampling: --downsample 1m:mean,max --older-than 1d writes, for each sealed window older than \
1d, measurement cpu_1m (from cpu) with fields usage_user_mean, usage_user_max, ... per series and \
1m bucket (aligned to the epoch; time = bucket start; same tags), in the normal layout and \
manifest, so queries read it like any measurement. Aggregates: count, sum, mean, min, max, \
first, last over numeric fields (count is an integer, mean a float, the rest keep the field's \
type; an integer sum that overflows is null). EVERY must divide the partition duration or be a \
multiple of it. Rerunning never doubles anything: a rollup point's identity is (series, bucket \
start); a window is recomputed only when a source file is newer than its rollup (or an \
aggregate is missing), and the new rollup is merged with the old one and replaces it. \
Measurements already ending in _EVERY are not rolled up again.

Order of a run, per region: leftovers, retention, compaction, downsampling.

Times (--now, --partition): integer ns since the epoch, RFC 3339, YYYY-MM-DD[THH[:MM]] (UTC), or a \
partition directory part_day=YYYY-MM-DD[/part_hour=HH[/part_minute=MM]].

Examples:
  meridian-compact --config regions.toml --dry-run
  meridian-compact --data-dir data --target-size 512MiB
  meridian-compact --data-dir data --region eu --measurement cpu --partition 2026-11-27T13
  meridian-compact --config regions.toml --retain 30d --downsample 1m:mean,max --older-than 1d
  meridian-compact --data-dir data --verify
  meridian-compact --config regions.toml --rebuild-manifest

Exit status: 0 on success; 1 when the data dir is locked by a server, a unit of work failed, \
or --verify found a mismatch; 2 on a usage error.";

#[derive(Parser, Debug)]
#[command(
    name = "meridian-compact",
    version,
    about = "Compaction, retention and downsampling of a Meridian data dir, beside a running server or offline",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_HELP
)]
struct Cli {
    /// Data directory to work on (overrides data_dir of the config).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Cluster config to read data_dir and partition_duration from. Default: ./regions.toml
    /// if it exists.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Partition duration of the data dir (e.g. 1h); overrides the config and inference.
    #[arg(long, value_name = "DURATION")]
    partition_duration: Option<String>,
    /// Only this region (repeatable). Default: every region directory under the data dir.
    #[arg(long = "region", value_name = "NAME")]
    regions: Vec<String>,
    /// Only this database (repeatable).
    #[arg(long = "db", value_name = "NAME")]
    dbs: Vec<String>,
    /// Only this measurement (repeatable). For --downsample: the source measurement.
    #[arg(long = "measurement", value_name = "NAME")]
    measurements: Vec<String>,
    /// Only the partition holding this time (repeatable); a named partition counts as sealed.
    /// TIME: ns, RFC 3339, YYYY-MM-DD[THH[:MM]] or part_day=…[/part_hour=…].
    #[arg(long = "partition", value_name = "TIME")]
    partitions: Vec<String>,
    /// A partition is sealed once its end is this far in the past.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    grace: String,
    /// Size at which an output file is cut (all outputs but the last reach it), e.g. 256MiB.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    target_size: String,
    /// Rows per Parquet row group of the files written.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    row_group_rows: usize,
    /// zstd level of the files written (1-22; higher: smaller files, slower compaction).
    #[arg(long, value_name = "N", default_value_t = COMPACT_ZSTD_LEVEL,
          value_parser = clap::value_parser!(i32).range(1..=22))]
    zstd_level: i32,
    /// Rows per Parquet data page (at most) of the files written: larger pages compress
    /// better, smaller ones let selective reads skip more.
    #[arg(long, value_name = "N", default_value_t = COMPACT_PAGE_ROWS)]
    page_rows: usize,
    /// Drop whole partitions that ended at least DURATION ago (e.g. 30d).
    #[arg(long, value_name = "DURATION")]
    retain: Option<String>,
    /// Write rollups EVERY:AGGS (e.g. 1m:mean,max) of windows older than --older-than.
    #[arg(long, value_name = "EVERY:AGGS", requires = "older_than")]
    downsample: Option<String>,
    /// With --downsample: only windows that ended at least DURATION ago (e.g. 1d).
    #[arg(long, value_name = "DURATION", requires = "downsample")]
    older_than: Option<String>,
    /// Do not compact (only retention and/or downsampling).
    #[arg(long)]
    no_compact: bool,
    /// Take this as the current time instead of the clock (for tests and backfills).
    #[arg(long, value_name = "TIME")]
    now: Option<String>,
    /// Print the plan (leftovers, partitions, files in, estimated files out) and change nothing.
    #[arg(long, conflicts_with = "verify")]
    dry_run: bool,
    /// Only check every live file against the manifest (existence, bytes, rows, time range,
    /// partition, columns, sort order); change nothing; exit 1 on any mismatch.
    #[arg(long, conflicts_with_all = ["retain", "downsample", "no_compact"])]
    verify: bool,
    /// Rebuild each region's manifest that is missing (beside data files) or damaged from
    /// the data files' footers (a damaged one is moved aside first); regions whose manifest
    /// is readable are left alone. Needs the partition duration (--config or
    /// --partition-duration). Run it with the server stopped; nothing else is done.
    #[arg(long, conflicts_with_all = ["verify", "dry_run", "retain", "downsample", "no_compact"])]
    rebuild_manifest: bool,
    /// Rewrite every partition into the region the latest routing version names (after a
    /// `[directory]` entry moved, or a region's geography changed), then record that version
    /// as in force from the beginning of time. Needs --config, the server stopped cleanly
    /// (no WAL left) and a data dir holding every region. A journal (reroute.json) keeps the
    /// server from starting until a run finishes; after a crash, run it again.
    #[arg(long, requires = "config", conflicts_with_all = ["verify", "dry_run", "retain", "downsample", "no_compact", "rebuild_manifest", "regions"])]
    reroute: bool,
    /// Print the summary as one JSON object on stdout (human text goes to stderr).
    #[arg(long)]
    json: bool,
    /// Progress display: a bar on a terminal (auto), always a bar, or plain log lines.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ProgressMode {
    Auto,
    Bar,
    Lines,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("meridian-compact: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn duration_arg(flag: &str, text: &str) -> Result<i64> {
    parse_duration(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// Settings resolved from the flags and the config.
struct Setup {
    data_dir: PathBuf,
    partition_duration_ns: Option<i64>,
    config_used: Option<PathBuf>,
    config: Option<Config>,
}

fn setup(cli: &Cli) -> Result<Setup> {
    let config_path = match &cli.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("regions.toml")).filter(|p| p.is_file()),
    };
    let config = match &config_path {
        Some(p) => {
            Some(Config::load(p).with_context(|| format!("invalid config {}", p.display()))?)
        }
        None => None,
    };
    let data_dir = match (&cli.data_dir, &config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => c.data_dir.clone(),
        (None, None) => {
            bail!("no data dir: pass --data-dir DIR or --config PATH (no ./regions.toml here)")
        }
    };
    let pd = match (&cli.partition_duration, &config) {
        (Some(d), _) => {
            let ns = duration_arg("--partition-duration", d)?;
            if ns <= 0 {
                bail!("--partition-duration must be positive");
            }
            Some(ns)
        }
        (None, Some(c)) => Some(c.routing.partition_duration_ns),
        (None, None) => None,
    };
    Ok(Setup {
        data_dir,
        partition_duration_ns: pd,
        config_used: config_path.filter(|_| config.is_some()),
        config,
    })
}

/// `--rebuild-manifest`: every region directory (or those named) whose manifest is missing
/// beside data files, or damaged, gets one rebuilt from its files' footers.
fn rebuild_manifests(cli: &Cli, s: &Setup) -> Result<bool> {
    let Some(pd) = s.partition_duration_ns else {
        bail!(
            "--rebuild-manifest needs the partition duration: pass --config or --partition-duration"
        );
    };
    let _lock = meridian::compaction::datadir::lock(&s.data_dir)
        .with_context(|| format!("locking data dir {}", s.data_dir.display()))?;
    let mut regions = Vec::new();
    for e in std::fs::read_dir(&s.data_dir)
        .with_context(|| format!("reading data dir {}", s.data_dir.display()))?
    {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_dir()
            && meridian::model::is_safe_name(&name)
            && (cli.regions.is_empty() || cli.regions.contains(&name))
        {
            regions.push((name, e.path()));
        }
    }
    regions.sort();
    let mut report = Vec::new();
    let mut ok = true;
    for (name, dir) in regions {
        let rc = s.config.as_ref().and_then(|c| {
            c.routing
                .regions
                .iter()
                .find(|r| r.name == name)
                .map(|r| (c, r))
        });
        let store = match rc {
            Some((c, r)) => Store::for_region(
                &s.data_dir,
                r,
                &meridian::config::S3Config {
                    cache_bytes: 0,
                    ..c.s3.clone()
                },
            )
            .with_context(|| format!("opening the storage of region {name}"))?,
            None => Store::local(&dir),
        };
        if !rebuild::needs_rebuild(&store)
            .with_context(|| format!("reading the manifest of region {name}"))?
        {
            eprintln!("region {name}: manifest readable, left alone");
            report.push(serde_json::json!({"region": name, "rebuilt": false}));
            continue;
        }
        if rc.is_some_and(|(_, r)| r.shared_storage) {
            let why = "on shared storage its nodes elsewhere write to the bucket, so its manifest is not rebuilt from here: stop every node hosting it, then run with a config without shared_storage";
            eprintln!("region {name}: {why}");
            report.push(serde_json::json!({"region": name, "rebuilt": false, "error": why}));
            ok = false;
            continue;
        }
        match rebuild::rebuild_manifest(&store, &name, pd) {
            Ok(r) => {
                if let Some(a) = &r.moved_aside {
                    eprintln!("region {name}: damaged manifest moved to {}", a.display());
                }
                for (f, why) in &r.skipped {
                    eprintln!("region {name}: left out {}: {why}", f.display());
                }
                eprintln!(
                    "region {name}: manifest rebuilt with {} file(s), {} row(s); {} file(s) left out",
                    r.files,
                    r.rows,
                    r.skipped.len()
                );
                report.push(serde_json::json!({
                    "region": name, "rebuilt": true, "files": r.files, "rows": r.rows,
                    "skipped": r.skipped.len(),
                    "moved_aside": r.moved_aside.map(|p| p.display().to_string()),
                }));
            }
            Err(e) => {
                ok = false;
                eprintln!("region {name}: rebuild failed: {e}");
                report.push(serde_json::json!({"region": name, "error": e.to_string()}));
            }
        }
    }
    if cli.json {
        println!("{}", serde_json::json!({ "rebuild": report }));
    }
    Ok(ok)
}

fn policy(cli: &Cli, pd: i64) -> Result<Policy> {
    let now_ns = match &cli.now {
        Some(t) => parse_time(t).map_err(|e| anyhow::anyhow!("--now: {e}"))?,
        None => chrono::Utc::now()
            .timestamp_nanos_opt()
            .context("the clock is outside the nanosecond range")?,
    };
    let grace_ns = duration_arg("--grace", &cli.grace)?;
    let target_bytes =
        parse_byte_size(&cli.target_size).map_err(|e| anyhow::anyhow!("--target-size: {e}"))?;
    if target_bytes == 0 {
        bail!("--target-size must be positive");
    }
    if cli.row_group_rows == 0 {
        bail!("--row-group-rows must be positive");
    }
    if cli.page_rows == 0 {
        bail!("--page-rows must be positive");
    }
    let mut partitions = Vec::new();
    for p in &cli.partitions {
        let t = parse_time(p).map_err(|e| anyhow::anyhow!("--partition: {e}"))?;
        partitions.push(partition_of(t, pd));
    }
    let retain_ns = cli
        .retain
        .as_deref()
        .map(|r| duration_arg("--retain", r))
        .transpose()?;
    let downsample = match (&cli.downsample, &cli.older_than) {
        (Some(spec), Some(older)) => {
            let ds = Downsample::parse(spec, duration_arg("--older-than", older)?)?;
            ds.window(pd)?;
            Some(ds)
        }
        _ => None,
    };
    Ok(Policy {
        now_ns,
        partition_duration_ns: pd,
        grace_ns,
        target_bytes,
        filters: Filters {
            dbs: cli.dbs.clone(),
            measurements: cli.measurements.clone(),
            partitions,
        },
        compact: !cli.no_compact,
        retain_ns,
        downsample,
    })
}

/// `--reroute`: every partition into the region of the latest routing version.
fn reroute(cli: &Cli, s: &Setup, live: bool) -> Result<bool> {
    let Some(cfg) = &s.config else {
        bail!("--reroute needs --config (the regions and the routing)");
    };
    if live {
        bail!(
            "--reroute needs the server stopped (it holds {}): stop it with SIGTERM, which flushes its WAL, then run this again",
            s.data_dir.join("meridian.lock").display()
        );
    }
    let dir = DataDir::open(&s.data_dir, &[], s.partition_duration_ns, Some(cfg), false)
        .with_context(|| format!("opening data dir {}", s.data_dir.display()))?;
    let policy = policy(cli, dir.partition_duration_ns())?;
    let settings = ExecSettings {
        row_group_rows: cli.row_group_rows,
        zstd_level: cli.zstd_level,
        page_rows: cli.page_rows,
        time_unit: cfg.ingest.flush.time_unit,
    };
    let moved = meridian::compaction::reroute::reroute(
        &dir,
        cfg,
        &settings,
        policy.target_bytes,
        &mut |_| {},
    )?;
    if moved.is_empty() {
        eprintln!("every point is in the region the latest routing names: nothing moved");
    }
    for ((from, to), rows) in &moved {
        eprintln!("moved {rows} rows from {from} to {to}");
    }
    eprintln!(
        "the latest routing is now in force from the beginning of time ({})",
        meridian::storage::paths::routing_file(&s.data_dir).display()
    );
    Ok(true)
}

fn run(cli: Cli) -> Result<bool> {
    let s = setup(&cli)?;
    // Rollups of a region on shared storage are its lease holder's ([[retention]]
    // downsample): written from here they would outrank the holder's later files.
    if cli.downsample.is_some()
        && let Some(c) = &s.config
        && let Some(r) =
            c.routing.regions.iter().find(|r| {
                r.shared_storage && (cli.regions.is_empty() || cli.regions.contains(&r.name))
            })
    {
        anyhow::bail!(
            "region {} is on shared storage: its rollups are written by the node holding its flush lease ([[retention]] downsample in the config), not by meridian-compact; leave it out with --region",
            r.name
        );
    }
    if cli.rebuild_manifest {
        return rebuild_manifests(&cli, &s);
    }
    // A server holding the data dir: run beside it (its manifest sees our edits within a
    // second; leases keep two compactors apart; replaced files stay for its queries).
    let live = match meridian::compaction::datadir::lock(&s.data_dir) {
        Ok(_) => false,
        Err(meridian::compaction::CompactionError::Locked { .. }) => true,
        Err(_) => false,
    };
    if cli.reroute {
        return reroute(&cli, &s, live);
    }
    let dir = DataDir::open(
        &s.data_dir,
        &cli.regions,
        s.partition_duration_ns,
        s.config.as_ref(),
        live,
    )
    .with_context(|| format!("opening data dir {}", s.data_dir.display()))?;
    let pd = dir.partition_duration_ns();
    let policy = policy(&cli, pd)?;
    let source = match (
        dir.duration_source(),
        &s.config_used,
        &cli.partition_duration,
    ) {
        (DurationSource::Inferred, _, _) => "inferred from the partition directories".to_string(),
        (_, _, Some(_)) => "from --partition-duration".to_string(),
        (_, Some(c), _) => format!("from {}", c.display()),
        _ => "given".to_string(),
    };
    eprintln!(
        "data dir {} ({}): {} region(s), partition duration {} ({source})",
        s.data_dir.display(),
        if live {
            "a server is running: working beside it"
        } else {
            "locked"
        },
        dir.regions().len(),
        human_duration(pd)
    );

    if cli.verify {
        return verify(&dir, &policy.filters);
    }
    if cli.dry_run {
        let previews = dir.plan(&policy)?;
        print_plan(&previews, &policy);
        return Ok(true);
    }

    let pause = std::env::var("MERIDIAN_COMPACT_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let use_bar = match cli.progress {
        ProgressMode::Bar => true,
        ProgressMode::Lines => false,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
    };
    let mut progress = Progress::new(use_bar, pd, pause);
    let settings = ExecSettings {
        row_group_rows: cli.row_group_rows,
        zstd_level: cli.zstd_level,
        page_rows: cli.page_rows,
        // Outputs store `time` as the server does (`[storage] time_unit` of --config).
        time_unit: s
            .config
            .as_ref()
            .map(|c| c.ingest.flush.time_unit)
            .unwrap_or_default(),
    };
    let summary = dir.run(&policy, &settings, &mut |e| progress.event(e))?;
    progress.finish();
    let text = summary_text(&summary);
    if cli.json {
        eprint!("{text}");
        let mut v = serde_json::to_value(&summary)?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "bytes_per_value_before".into(),
                serde_json::json!(summary.bytes_per_value_before()),
            );
            o.insert(
                "bytes_per_value_after".into(),
                serde_json::json!(summary.bytes_per_value_after()),
            );
        }
        println!("{v}");
    } else {
        print!("{text}");
    }
    Ok(summary.failures.is_empty())
}

fn verify(dir: &DataDir, filters: &Filters) -> Result<bool> {
    let report = dir.verify(filters)?;
    for p in &report.problems {
        println!("MISMATCH {p}");
    }
    for l in &report.leftovers {
        println!(
            "leftover (not live; removed by the next run or server start): {}",
            l.display()
        );
    }
    println!(
        "verified {} live file(s), {} rows, {}: {}",
        report.files,
        report.rows,
        human_bytes(report.bytes),
        if report.ok() {
            "all match the manifest".to_string()
        } else {
            format!("{} mismatch(es)", report.problems.len())
        }
    );
    Ok(report.ok())
}

fn partition_label(p: &PartitionId, pd: i64) -> String {
    format!(
        "{}/{}/{}",
        p.db,
        encode_measurement(&p.measurement),
        partition_rel_dir(PartitionStart(p.start), pd).to_string_lossy()
    )
}

fn seq_list(seqs: impl Iterator<Item = u64>) -> String {
    let v: Vec<String> = seqs.map(|s| s.to_string()).collect();
    if v.len() <= 12 {
        v.join(",")
    } else {
        format!(
            "{},…,{} ({} files)",
            v[..6].join(","),
            v[v.len() - 3..].join(","),
            v.len()
        )
    }
}

fn print_plan(previews: &[RegionPreview], policy: &Policy) {
    let pd = policy.partition_duration_ns;
    let (mut drops, mut comps, mut files_in, mut est_out, mut rollups) = (0, 0, 0, 0, 0);
    let mut leftovers = 0;
    println!(
        "plan (dry run, nothing changed): now {}, grace {}, target {}",
        chrono::DateTime::from_timestamp_nanos(policy.now_ns).to_rfc3339(),
        human_duration(policy.grace_ns),
        human_bytes(policy.target_bytes)
    );
    for p in previews {
        println!("region {}:", p.region);
        for l in &p.leftovers {
            println!("  leftover  {} (would be deleted)", l.display());
        }
        leftovers += p.leftovers.len();
        for d in &p.plan.drops {
            println!(
                "  drop      {}: {} file(s), {}, {} rows{} [seq {}]",
                partition_label(&d.partition, pd),
                d.files.len(),
                human_bytes(d.bytes()),
                d.rows(),
                if d.tombstone_wal.is_empty() {
                    ""
                } else {
                    " (+ tombstone for WAL ranges still on disk)"
                },
                seq_list(d.files.iter().map(|f| f.seq)),
            );
        }
        drops += p.plan.drops.len();
        for c in &p.plan.compactions {
            println!(
                "  compact   {}: {} file(s) in ({}, {} rows) → ~{} file(s) out [seq {}]",
                partition_label(&c.partition, pd),
                c.inputs.len(),
                human_bytes(c.bytes_in),
                c.rows_in,
                c.est_files_out,
                seq_list(c.inputs.iter().map(|f| f.seq)),
            );
            files_in += c.inputs.len();
            est_out += c.est_files_out;
        }
        comps += p.plan.compactions.len();
        for r in &p.plan.rollups {
            println!(
                "  rollup    {}/{} → {} window {}: {} source file(s), {} existing rollup file(s)",
                r.db,
                r.source_measurement,
                r.target_measurement,
                chrono::DateTime::from_timestamp_nanos(r.window_start).to_rfc3339(),
                r.sources.len(),
                r.existing.len()
            );
        }
        rollups += p.plan.rollups.len();
        for n in &p.plan.notes {
            println!("  note      {n}");
        }
    }
    println!(
        "total: {leftovers} leftover(s), {drops} partition(s) to drop, {comps} to compact \
         ({files_in} files in → ~{est_out} out), {rollups} rollup window(s)"
    );
}

/// Progress: an indicatif bar on a terminal, else one log line per finished unit.
struct Progress {
    bar: Option<ProgressBar>,
    pd: i64,
    pause: Option<Duration>,
}

impl Progress {
    fn new(use_bar: bool, pd: i64, pause: Option<Duration>) -> Progress {
        let bar = use_bar.then(|| {
            let b = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
            ) {
                b.set_style(style);
            }
            b
        });
        Progress { bar, pd, pause }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn event(&mut self, e: &Event<'_>) {
        match e {
            Event::Planned { units } => {
                if let Some(b) = &self.bar {
                    b.set_length(*units as u64);
                } else {
                    eprintln!("{units} unit(s) of work planned");
                }
            }
            Event::Leftover { region, path } => {
                self.line(format!("{region}: removed leftover {}", path.display()))
            }
            Event::Started {
                region,
                kind,
                partition,
            } => {
                if let Some(b) = &self.bar {
                    b.set_message(format!(
                        "{} {region}/{}",
                        kind_name(*kind),
                        partition_label(partition, self.pd)
                    ));
                }
            }
            Event::Step { step, path, .. } => {
                if let Some(p) = self.pause {
                    // Lines mode shows each durable step, so a test knows where it killed us.
                    if self.bar.is_none() {
                        eprintln!("step {step:?} {}", path.display());
                    }
                    std::thread::sleep(p);
                }
            }
            Event::Finished { region, report } => {
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
                if self.bar.is_none() {
                    self.line(report_line(region, report, self.pd));
                }
            }
            Event::Failed {
                region,
                kind,
                partition,
                error,
            } => {
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
                self.line(format!(
                    "FAILED {} {region}/{}: {error}",
                    kind_name(*kind),
                    partition_label(partition, self.pd)
                ));
            }
            Event::Note { region, text } => self.line(format!("{region}: note: {text}")),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn kind_name(k: UnitKind) -> &'static str {
    match k {
        UnitKind::Drop => "drop",
        UnitKind::Compaction => "compact",
        UnitKind::Rollup => "rollup",
    }
}

fn report_line(region: &str, r: &UnitReport, pd: i64) -> String {
    let label = partition_label(&r.partition, pd);
    match r.kind {
        UnitKind::Compaction => format!(
            "compacted {region}/{label}: {} files ({}) → {} ({}), {} rows → {} ({} deduped)",
            r.files_in,
            human_bytes(r.bytes_in),
            r.files_out,
            human_bytes(r.bytes_out),
            r.rows_in,
            r.rows_out,
            r.rows_deduped
        ),
        UnitKind::Drop => format!(
            "dropped {region}/{label}: {} files, {}, {} rows{}",
            r.files_in,
            human_bytes(r.bytes_in),
            r.rows_in,
            if r.tombstone { " (tombstone kept)" } else { "" }
        ),
        UnitKind::Rollup => format!(
            "rolled up {region}/{label}: {} rows from {} files → {} rows in {} file(s)",
            r.rows_in, r.files_in, r.rows_out, r.files_out
        ),
    }
}

fn summary_text(s: &Summary) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "summary: {} region(s), {} leftover(s) removed\n",
        s.regions, s.leftovers_removed
    ));
    t.push_str(&format!(
        "  compaction: {} partition(s), files {} → {}, bytes {} → {}, bytes/value {:.3} → {:.3}, \
         rows {} → {} ({} deduped)\n",
        s.partitions_compacted,
        s.files_in,
        s.files_out,
        human_bytes(s.bytes_before),
        human_bytes(s.bytes_after),
        s.bytes_per_value_before(),
        s.bytes_per_value_after(),
        s.rows_in,
        s.rows_out,
        s.rows_deduped
    ));
    t.push_str(&format!(
        "  retention: {} partition(s) dropped ({} files, {}, {} rows), {} tombstone(s)\n",
        s.partitions_dropped,
        s.files_dropped,
        human_bytes(s.bytes_dropped),
        s.rows_dropped,
        s.tombstones
    ));
    t.push_str(&format!(
        "  downsampling: {} window(s), {} file(s), {} rows\n",
        s.windows_rolled_up, s.rollup_files_out, s.rollup_rows_out
    ));
    for f in &s.failures {
        t.push_str(&format!("  FAILED: {f}\n"));
    }
    t
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_duration(ns: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1, "ns"),
    ];
    for (n, u) in UNITS {
        if ns != 0 && ns % n == 0 {
            return format!("{}{u}", ns / n);
        }
    }
    format!("{ns}ns")
}
