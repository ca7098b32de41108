//! `meridian-loadgen`: a deterministic TSBS "cpu-only"-style data generator and HTTP load
//! driver for Meridian (and any other database that accepts InfluxDB line protocol over HTTP).
//!
//! * Generation: measurement `cpu`, one series per host with the TSBS tag set plus fixed
//!   `lat`/`lon` tags near the host's (real) cloud region, and 10 `usage_*` fields that each do
//!   a bounded random walk in [0, 100]. Rows are emitted time-major (all hosts at t0, then all
//!   hosts at t1, ...). The only randomness is a PCG generator per host seeded from `--seed`,
//!   so the same flags always produce byte-identical output, whatever the batch size or the
//!   number of connections.
//! * Sinks: a file / stdout (`--out`), or HTTP (`--url`, v1/v2/v3 write APIs) with batching,
//!   bounded concurrency, optional gzip, retries on 429/503 honouring `Retry-After`, and a
//!   latency histogram.
//! * `--input` replays an existing line protocol file through the same batching/sinks.
//!
//! Single file on purpose: it is built as a `[[bin]]` of the main crate.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{ArgGroup, Parser, ValueEnum};
use serde::Serialize;

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

const ABOUT: &str =
    "Deterministic TSBS cpu-only style line protocol generator and HTTP load driver";

const LONG_ABOUT: &str = "\
Deterministic TSBS \"cpu-only\"-style line protocol generator and HTTP load driver.

Generates measurement `cpu` for --hosts hosts every --interval over --duration, time-major \
(all hosts at t0, then all hosts at t1, ...), timestamps in nanoseconds. Each host has the \
TSBS tags hostname, region, datacenter, rack, os, arch, team, service, service_version and \
service_environment, plus fixed lat/lon tags (4 decimals) near its cloud region's real \
location, and 10 fields usage_user ... usage_guest_nice, each a bounded random walk in \
[0,100]. Lines = hosts x (duration / interval); values = lines x 10. The same flags always \
produce byte-identical output, independent of --batch-lines and --concurrency.

Exactly one sink is required: --out FILE (or - for stdout) writes the line protocol; \
--url URL --db NAME sends it with HTTP POSTs of --batch-lines lines over --concurrency \
connections. --input FILE sends/copies an existing line protocol file instead of generating \
one, so the same bytes can be loaded into several databases.

At the end a summary is printed (lines, values, wall time, lines/s, values/s, MB/s, request \
latency p50/p90/p99/max, responses by status, retries, connection errors); with --json it is \
also printed as one JSON object on stdout and the human text goes to stderr. Progress is a bar \
on a terminal, or a plain line on stderr every 5 s otherwise.";

const AFTER_HELP: &str = "\
HTTP endpoints (URL is the base, e.g. http://127.0.0.1:8086; a path prefix is kept):
  v1  POST {url}/write?db=NAME&precision=ns
  v2  POST {url}/api/v2/write?bucket=NAME&org=ORG&precision=ns
  v3  POST {url}/api/v3/write_lp?db=NAME&precision=nanosecond
  429/503 responses are retried (same batch) after Retry-After seconds (capped at 60 s;
  exponential backoff from 100 ms when absent); connection errors and timeouts are retried with
  backoff; both at most --max-retries times. Any other non-2xx response fails the batch without
  a retry. HTTP proxies from the environment and redirects are never used.

Examples:
  meridian-loadgen --hosts 1000 --duration 12h --out cpu-12h.lp
  meridian-loadgen --hosts 1000 --duration 12h --url http://127.0.0.1:8086 --db bench
  meridian-loadgen --input cpu-12h.lp --url http://127.0.0.1:8181 --api v3 --db bench --gzip
  meridian-loadgen --url http://127.0.0.1:8086 --db bench --json > summary.json

Exit status: 0 on success; 1 on an error or when any batch finally failed; 2 on a usage error.";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "meridian-loadgen",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    group(ArgGroup::new("sink").required(true).args(["out", "url"])),
)]
pub struct Cli {
    /// Write the line protocol to FILE ("-" = stdout) instead of sending it over HTTP.
    #[arg(long, value_name = "FILE", help_heading = "Sink (exactly one)")]
    out: Option<PathBuf>,

    /// Send the line protocol over HTTP to this base URL (http:// only, no TLS), e.g.
    /// http://127.0.0.1:8086. The host must be a loopback address (127.0.0.0/8, localhost,
    /// [::1]) unless --allow-remote is given. Requires --db.
    #[arg(
        long,
        value_name = "URL",
        requires = "db",
        help_heading = "Sink (exactly one)"
    )]
    url: Option<String>,

    /// Read line protocol from FILE ("-" = stdin) instead of generating it. Blank lines and
    /// #-comments are skipped; every other line is sent verbatim (a missing final newline is
    /// added). Values are counted per line. Cannot be combined with the data set flags.
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Input",
        conflicts_with_all = ["hosts", "interval", "duration", "start", "seed", "field_type", "unmapped_regions", "sparse", "optional_tags"],
    )]
    input: Option<PathBuf>,

    /// Number of hosts, i.e. series (lines) per timestamp.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Data set")]
    hosts: u32,

    /// Time between two points of a host: a number plus unit (ns, us, ms, s, m, h, d), may be
    /// combined, e.g. 10s, 1m30s.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_positive_duration, help_heading = "Data set")]
    interval: u64,

    /// Time span to generate (e.g. 1h, 12h, 3d); the number of timestamps is
    /// duration / interval (rounded down), the first one at --start.
    #[arg(long, value_name = "DUR", default_value = "1h", value_parser = parse_duration, help_heading = "Data set")]
    duration: u64,

    /// First timestamp, RFC 3339 (e.g. 2026-01-01T00:00:00Z, 2026-03-01T12:00:00.5+01:00).
    #[arg(long, value_name = "RFC3339", default_value = "2026-01-01T00:00:00Z", value_parser = parse_rfc3339, help_heading = "Data set")]
    start: i64,

    /// Seed of the random generator: the same flags and seed always give byte-identical output.
    #[arg(long, value_name = "N", default_value_t = 1, help_heading = "Data set")]
    seed: u64,

    /// How field values are written: int = TSBS-style integers (`58i`), float = two decimals
    /// (`58.63`), decimals = floats with 0, 1, 2 or 3 decimals (field k has k mod 4), full =
    /// floats at full precision (`182.21237390820801`), counter = monotonic integers (each
    /// step adds 0..999), gauge = integers that change at one step in fifty.
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = FieldType::Int, help_heading = "Data set")]
    field_type: FieldType,

    /// Share of field values left out (0..1, or a percentage like 50%): each field of a line
    /// is written with probability 1 - SHARE (a line keeps at least one), as agents that send
    /// only what they measured.
    #[arg(long, value_name = "SHARE", default_value = "0", value_parser = parse_share, help_heading = "Data set")]
    sparse: f64,

    /// Leave optional tags out on some hosts, as Telegraf does: every third host has no `rack`,
    /// every fourth no `team` and `service_version`, every fifth no `os` and `arch`
    /// (`hostname` and `region` are always there).
    #[arg(long, help_heading = "Data set")]
    optional_tags: bool,

    /// Share of hosts (0..1, or a percentage like 10%) placed in regions a deployment may not
    /// map (af-south-1, me-south-1, il-central-1), spread evenly over the host range. The
    /// other hosts cycle through us-east-1, us-west-2, sa-east-1, ca-central-1, eu-west-1,
    /// eu-central-1, eu-north-1, ap-southeast-1, ap-northeast-1, ap-south-1.
    #[arg(long, value_name = "SHARE", default_value = "0", value_parser = parse_share, help_heading = "Data set")]
    unmapped_regions: f64,

    /// Lines per batch: per HTTP POST, and per write with --out.
    #[arg(long, value_name = "N", default_value_t = 5000, value_parser = parse_positive_usize, help_heading = "Batching and HTTP")]
    batch_lines: usize,

    /// Database (v1, v3) or bucket (v2) name to write to.
    #[arg(
        long,
        value_name = "NAME",
        requires = "url",
        help_heading = "Batching and HTTP"
    )]
    db: Option<String>,

    /// Write API flavour: v1 (/write), v2 (/api/v2/write), v3 (/api/v3/write_lp).
    #[arg(long, value_enum, value_name = "API", default_value_t = Api::V1, requires = "url", help_heading = "Batching and HTTP")]
    api: Api,

    /// Organisation for --api v2.
    #[arg(
        long,
        value_name = "ORG",
        default_value = "x",
        requires = "url",
        help_heading = "Batching and HTTP"
    )]
    org: String,

    /// Number of concurrent HTTP connections (requests in flight).
    #[arg(long, value_name = "C", default_value_t = 4, value_parser = parse_positive_usize, requires = "url", help_heading = "Batching and HTTP")]
    concurrency: usize,

    /// Compress each request body with gzip (level 1) and send Content-Encoding: gzip.
    #[arg(long, requires = "url", help_heading = "Batching and HTTP")]
    gzip: bool,

    /// Send `Authorization: Token T` with every request.
    #[arg(
        long,
        value_name = "T",
        requires = "url",
        help_heading = "Batching and HTTP"
    )]
    token: Option<String>,

    /// Retries per batch after a 429/503 response or a connection error before it counts as
    /// failed.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        requires = "url",
        help_heading = "Batching and HTTP"
    )]
    max_retries: u32,

    /// Per-request timeout (connect + send + response), e.g. 60s.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_positive_duration, requires = "url", help_heading = "Batching and HTTP")]
    timeout: u64,

    /// Allow a --url whose host is not a loopback address.
    #[arg(long, requires = "url", help_heading = "Batching and HTTP")]
    allow_remote: bool,

    /// Also print the summary as one JSON object on stdout (on stderr with --out -); the human
    /// summary then goes to stderr.
    #[arg(long, help_heading = "Reporting")]
    json: bool,

    /// No progress bar or periodic progress lines.
    #[arg(short, long, help_heading = "Reporting")]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FieldType {
    Int,
    Float,
    Decimals,
    Full,
    Counter,
    Gauge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Api {
    V1,
    V2,
    V3,
}

fn parse_positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a positive integer: {e}")),
    }
}

fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(p) => (p, 100.0),
        None => (t, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|e| format!("not a number: {e}"))?;
    let v = v / scale;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s:?} is outside 0..1 (0%..100%)"));
    }
    Ok(v)
}

/// Parses `10s`, `1h30m`, `500ms`, `2d`, ... into nanoseconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(0);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    while i < b.len() {
        let ns = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if ns == i {
            return Err(format!(
                "invalid duration {s:?}: expected a number (e.g. 10s, 1h30m, 500ms)"
            ));
        }
        let n: u64 = s[ns..i]
            .parse()
            .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
        let us = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        let mult: u64 = match &s[us..i] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit (ns, us, ms, s, m, h, d)"
                ));
            }
            u => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {u:?} (ns, us, ms, s, m, h, d)"
                ));
            }
        };
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
    }
    Ok(total)
}

fn parse_positive_duration(s: &str) -> Result<u64, String> {
    match parse_duration(s)? {
        0 => Err("must be greater than zero".into()),
        v => Ok(v),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 timestamp into nanoseconds since the Unix epoch.
fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let err =
        |why: &str| format!("invalid RFC 3339 timestamp {s:?}: {why} (e.g. 2026-01-01T00:00:00Z)");
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = b.get(r).ok_or_else(|| err("too short"))?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(err("expected digits"));
        }
        Ok(part.iter().fold(0i64, |a, &c| a * 10 + i64::from(c - b'0')))
    };
    if b.len() < 20 {
        return Err(err("too short"));
    }
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) {
        return Err(err("month out of range"));
    }
    if day < 1 || day > month_days[(month - 1) as usize] {
        return Err(err("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(err("time of day out of range"));
    }
    let mut i = 19;
    let mut frac_ns: i64 = 0;
    if b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - fs < 9 {
                frac_ns = frac_ns * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == fs {
            return Err(err("empty fraction"));
        }
        for _ in (i - fs)..9 {
            frac_ns *= 10;
        }
    }
    let offset_s: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err(err("offset out of range"));
            }
            let o = oh * 3600 + om * 60;
            if sign == b'-' { -o } else { o }
        }
        _ => return Err(err("expected Z or +HH:MM / -HH:MM at the end")),
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(frac_ns);
    i64::try_from(ns).map_err(|_| err("outside the nanosecond range 1677..2262"))
}

// ---------------------------------------------------------------------------------------------
// Data generation
// ---------------------------------------------------------------------------------------------

mod generator {
    use rand_pcg::Pcg64Mcg;
    use rand_pcg::rand_core::RngCore;

    pub const MEASUREMENT: &str = "cpu";

    pub const FIELDS: [&str; 10] = [
        "usage_user",
        "usage_system",
        "usage_idle",
        "usage_nice",
        "usage_iowait",
        "usage_irq",
        "usage_softirq",
        "usage_steal",
        "usage_guest",
        "usage_guest_nice",
    ];

    /// A cloud region and the approximate location of its data centres, in 1e-4 degrees.
    pub struct Region {
        pub name: &'static str,
        pub lat: i32,
        pub lon: i32,
    }

    const fn region(name: &'static str, lat: i32, lon: i32) -> Region {
        Region { name, lat, lon }
    }

    /// Regions a deployment is expected to map (Americas, Europe, Asia-Pacific).
    pub const MAPPED_REGIONS: [Region; 10] = [
        region("us-east-1", 390_438, -774_874),    // Ashburn, Virginia
        region("us-west-2", 458_399, -1_197_006),  // Boardman, Oregon
        region("sa-east-1", -235_505, -466_333),   // São Paulo
        region("ca-central-1", 455_017, -735_673), // Montréal
        region("eu-west-1", 533_498, -62_603),     // Dublin
        region("eu-central-1", 501_109, 86_821),   // Frankfurt
        region("eu-north-1", 593_293, 180_686),    // Stockholm
        region("ap-southeast-1", 13_521, 1_038_198), // Singapore
        region("ap-northeast-1", 356_762, 1_396_503), // Tokyo
        region("ap-south-1", 190_760, 728_777),    // Mumbai
    ];

    /// Regions a deployment may not map (used for the `--unmapped-regions` share).
    pub const UNMAPPED_REGIONS: [Region; 3] = [
        region("af-south-1", -339_249, 184_241),  // Cape Town
        region("me-south-1", 260_667, 505_577),   // Bahrain
        region("il-central-1", 320_853, 347_818), // Tel Aviv
    ];

    const OS: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
    const ARCH: [&str; 2] = ["x86", "x64"];
    const TEAM: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
    const ENVIRONMENT: [&str; 3] = ["production", "staging", "test"];
    const DATACENTER_SUFFIX: [&str; 3] = ["a", "b", "c"];

    /// Values are fixed-point hundredths in 0..=MAX_VALUE.
    const MAX_VALUE: i32 = 10_000;
    /// A random-walk step is uniform in -MAX_STEP..=MAX_STEP hundredths (±1.00).
    const MAX_STEP: i32 = 100;
    /// Per-host coordinate jitter, uniform in ±JITTER (1e-4 degrees, i.e. ±0.5°).
    const JITTER: i32 = 5_000;

    #[derive(Clone, Debug, PartialEq)]
    pub struct GenConfig {
        pub hosts: u32,
        pub start_ns: i64,
        pub interval_ns: u64,
        /// Number of timestamps.
        pub steps: u64,
        pub seed: u64,
        pub float: bool,
        pub unmapped_share: f64,
        /// How values are written (`float` is `kind == Float`).
        pub kind: super::FieldType,
        /// Share of field values left out.
        pub sparse: f64,
        pub optional_tags: bool,
    }

    impl GenConfig {
        pub fn total_lines(&self) -> u64 {
            u64::from(self.hosts) * self.steps
        }

        pub fn timestamp(&self, step: u64) -> Option<i64> {
            let ts = i128::from(self.start_ns) + i128::from(step) * i128::from(self.interval_ns);
            i64::try_from(ts).ok()
        }
    }

    struct Host {
        /// `cpu,hostname=...,lon=... ` (series key plus the separating space).
        prefix: Vec<u8>,
        rng: Pcg64Mcg,
        values: [u16; 10],
        /// `counter` values.
        counters: [u64; 10],
    }

    /// Streams the data set in time-major order; `next_batch` may be called with any batch
    /// size, the concatenated output is always the same.
    pub struct Generator {
        cfg: GenConfig,
        hosts: Vec<Host>,
        step: u64,
        next_host: usize,
        /// ` <timestamp>\n` of the current step.
        ts_suffix: Vec<u8>,
        /// Rendered value (incl. the `i` suffix in int mode) for each value in hundredths,
        /// per field (`decimals` renders fields differently).
        value_text: Vec<Vec<Box<[u8]>>>,
        field_prefix: [Vec<u8>; 10],
    }

    fn splitmix64(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Independent, reproducible PCG stream for one host.
    fn host_rng(seed: u64, host: u32) -> Pcg64Mcg {
        let a = splitmix64(seed ^ 0x6D65_7269_6469_616E);
        let b = splitmix64(a ^ u64::from(host).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let c = splitmix64(b ^ 0x6C6F_6164_6765_6E21);
        Pcg64Mcg::new((u128::from(b) << 64) | u128::from(c))
    }

    /// Uniform integer in 0..n (multiply-shift; the bias is < n / 2^64 and, above all, fixed).
    fn below(rng: &mut Pcg64Mcg, n: u64) -> u64 {
        ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn pick<'a>(rng: &mut Pcg64Mcg, items: &[&'a str]) -> &'a str {
        items[below(rng, items.len() as u64) as usize]
    }

    /// Formats a fixed-point 1e-4 degree value with exactly 4 decimals.
    pub fn format_coord(v: i32) -> String {
        let sign = if v < 0 { "-" } else { "" };
        let a = v.unsigned_abs();
        format!("{sign}{}.{:04}", a / 10_000, a % 10_000)
    }

    /// Whether host `i` falls into the unmapped share: exactly round-down(n × share) of the
    /// first n hosts are unmapped, spread evenly.
    fn is_unmapped(i: u32, share: f64) -> (bool, u64) {
        let before = (f64::from(i) * share).floor() as u64;
        let upto = ((f64::from(i) + 1.0) * share).floor() as u64;
        (upto > before, before)
    }

    impl Generator {
        pub fn new(cfg: GenConfig) -> Self {
            let hosts = (0..cfg.hosts)
                .map(|i| {
                    let mut rng = host_rng(cfg.seed, i);
                    let (unmapped, unmapped_before) = is_unmapped(i, cfg.unmapped_share);
                    let region = if unmapped {
                        &UNMAPPED_REGIONS[(unmapped_before % UNMAPPED_REGIONS.len() as u64) as usize]
                    } else {
                        let mapped_before = u64::from(i) - unmapped_before;
                        &MAPPED_REGIONS[(mapped_before % MAPPED_REGIONS.len() as u64) as usize]
                    };
                    let dc = pick(&mut rng, &DATACENTER_SUFFIX);
                    let rack = below(&mut rng, 100);
                    let os = pick(&mut rng, &OS);
                    let arch = pick(&mut rng, &ARCH);
                    let team = pick(&mut rng, &TEAM);
                    let service = below(&mut rng, 20);
                    let service_version = below(&mut rng, 2);
                    let env = pick(&mut rng, &ENVIRONMENT);
                    let jitter = |rng: &mut Pcg64Mcg| below(rng, 2 * JITTER as u64 + 1) as i32 - JITTER;
                    let lat = (region.lat + jitter(&mut rng)).clamp(-900_000, 900_000);
                    let lon = (region.lon + jitter(&mut rng)).clamp(-1_800_000, 1_800_000);
                    let prefix = if cfg.optional_tags {
                        // Tags in key order, some left out by host.
                        let mut p = MEASUREMENT.to_string();
                        let mut tag = |k: &str, v: &str, keep: bool| {
                            if keep {
                                p.push_str(&format!(",{k}={v}"));
                            }
                        };
                        let (no_rack, no_team, no_os) = (i % 3 == 1, i % 4 == 2, i % 5 == 3);
                        tag("arch", arch, !no_os);
                        tag("datacenter", &format!("{}{dc}", region.name), true);
                        tag("hostname", &format!("host_{i}"), true);
                        tag("lat", &format_coord(lat), true);
                        tag("lon", &format_coord(lon), true);
                        tag("os", os, !no_os);
                        tag("rack", &rack.to_string(), !no_rack);
                        tag("region", region.name, true);
                        tag("service", &service.to_string(), true);
                        tag("service_environment", env, true);
                        tag("service_version", &service_version.to_string(), !no_team);
                        tag("team", team, !no_team);
                        p + " "
                    } else {
                        format!(
                            "{MEASUREMENT},hostname=host_{i},region={r},datacenter={r}{dc},rack={rack},os={os},\
                             arch={arch},team={team},service={service},service_version={service_version},\
                             service_environment={env},lat={},lon={} ",
                            format_coord(lat),
                            format_coord(lon),
                            r = region.name,
                        )
                    };
                    let mut values = [0u16; 10];
                    for v in &mut values {
                        *v = below(&mut rng, MAX_VALUE as u64 + 1) as u16;
                    }
                    let mut counters = [0u64; 10];
                    if cfg.kind == super::FieldType::Counter {
                        for c in &mut counters {
                            *c = below(&mut rng, 1 << 40);
                        }
                    }
                    Host { prefix: prefix.into_bytes(), rng, values, counters }
                })
                .collect();
            use super::FieldType as K;
            let value_text = (0..10)
                .map(|k| {
                    (0..=MAX_VALUE)
                        .map(|v| {
                            let s = match cfg.kind {
                                K::Float => format!("{}.{:02}", v / 100, v % 100),
                                K::Decimals => match k % 4 {
                                    0 => format!("{}", v / 100),
                                    1 => format!("{}.{}", v / 100, (v % 100) / 10),
                                    2 => format!("{}.{:02}", v / 100, v % 100),
                                    _ => format!("{}.{:02}{}", v / 100, v % 100, (v * 7) % 10),
                                },
                                K::Full => {
                                    format!("{:?}", f64::from(v) * std::f64::consts::PI / 100.0)
                                }
                                K::Int | K::Counter | K::Gauge => format!("{}i", (v + 50) / 100),
                            };
                            s.into_bytes().into_boxed_slice()
                        })
                        .collect()
                })
                .collect();
            let field_prefix = std::array::from_fn(|k| {
                let sep = if k == 0 { "" } else { "," };
                format!("{sep}{}=", FIELDS[k]).into_bytes()
            });
            Generator {
                cfg,
                hosts,
                step: 0,
                next_host: 0,
                ts_suffix: Vec::new(),
                value_text,
                field_prefix,
            }
        }

        /// Whether lines leave fields out (`--sparse`).
        pub fn sparse(&self) -> bool {
            self.cfg.sparse > 0.0
        }

        /// Appends up to `max_lines` lines to `buf`; returns how many (0 once exhausted).
        pub fn next_batch(&mut self, buf: &mut Vec<u8>, max_lines: usize) -> usize {
            let mut n = 0;
            while n < max_lines && self.step < self.cfg.steps && !self.hosts.is_empty() {
                if self.next_host == 0 || self.ts_suffix.is_empty() {
                    // The last timestamp was checked to fit an i64 when the config was built.
                    let ts = self.cfg.timestamp(self.step).unwrap_or(i64::MAX);
                    self.ts_suffix.clear();
                    self.ts_suffix
                        .extend_from_slice(format!(" {ts}\n").as_bytes());
                }
                let host = &mut self.hosts[self.next_host];
                buf.extend_from_slice(&host.prefix);
                // Fields left out (sparse): drawn first, the first field kept if none is.
                let mut keep = [true; 10];
                if self.cfg.sparse > 0.0 {
                    let cut = (self.cfg.sparse * (1u64 << 32) as f64) as u64;
                    for kp in &mut keep {
                        *kp = below(&mut host.rng, 1 << 32) >= cut;
                    }
                    if !keep.iter().any(|k| *k) {
                        keep[0] = true;
                    }
                }
                let mut first = true;
                for (k, v) in host.values.iter_mut().enumerate() {
                    if keep[k] {
                        let prefix = &self.field_prefix[k];
                        // The prefix of field 0 has no comma; the others drop theirs first.
                        buf.extend_from_slice(if first && k > 0 { &prefix[1..] } else { prefix });
                        first = false;
                        if self.cfg.kind == super::FieldType::Counter {
                            buf.extend_from_slice(format!("{}i", host.counters[k]).as_bytes());
                        } else {
                            buf.extend_from_slice(&self.value_text[k][usize::from(*v)]);
                        }
                    }
                    match self.cfg.kind {
                        super::FieldType::Counter => {
                            host.counters[k] += below(&mut host.rng, 1000);
                        }
                        super::FieldType::Gauge => {
                            if below(&mut host.rng, 50) == 0 {
                                let step =
                                    below(&mut host.rng, 2 * MAX_STEP as u64 + 1) as i32 - MAX_STEP;
                                *v = (i32::from(*v) + step).clamp(0, MAX_VALUE) as u16;
                            }
                        }
                        _ => {
                            let step =
                                below(&mut host.rng, 2 * MAX_STEP as u64 + 1) as i32 - MAX_STEP;
                            *v = (i32::from(*v) + step).clamp(0, MAX_VALUE) as u16;
                        }
                    }
                }
                buf.extend_from_slice(&self.ts_suffix);
                n += 1;
                self.next_host += 1;
                if self.next_host == self.hosts.len() {
                    self.next_host = 0;
                    self.step += 1;
                }
            }
            n
        }
    }
}

use generator::{GenConfig, Generator};

fn gen_config(cli: &Cli) -> Result<GenConfig> {
    let steps = cli.duration / cli.interval;
    if steps == 0 {
        bail!(
            "--duration ({:.3} s) is shorter than --interval ({:.3} s): nothing to generate",
            cli.duration as f64 / 1e9,
            cli.interval as f64 / 1e9
        );
    }
    let cfg = GenConfig {
        hosts: cli.hosts,
        start_ns: cli.start,
        interval_ns: cli.interval,
        steps,
        seed: cli.seed,
        float: cli.field_type == FieldType::Float,
        unmapped_share: cli.unmapped_regions,
        kind: cli.field_type,
        sparse: cli.sparse,
        optional_tags: cli.optional_tags,
    };
    if cfg.timestamp(steps - 1).is_none() {
        bail!(
            "the last timestamp (--start + --duration) does not fit a signed 64-bit nanosecond value"
        );
    }
    Ok(cfg)
}

// ---------------------------------------------------------------------------------------------
// Line protocol input
// ---------------------------------------------------------------------------------------------

/// Number of fields of one line protocol line (0 if it has no field set). Handles
/// backslash escapes and quoted string fields.
fn count_fields(line: &[u8]) -> u64 {
    let n = line.len();
    let mut i = 0;
    // Series key: measurement and tags, up to the first unescaped space.
    while i < n {
        match line[i] {
            b'\\' => i += 2,
            b' ' => break,
            _ => i += 1,
        }
    }
    while i < n && line[i] == b' ' {
        i += 1;
    }
    if i >= n || matches!(line[i], b'\n' | b'\r') {
        return 0;
    }
    let mut count = 1;
    let mut quoted = false;
    while i < n {
        let c = line[i];
        if c == b'\\' {
            i += 2;
            continue;
        }
        if quoted {
            if c == b'"' {
                quoted = false;
            }
        } else {
            match c {
                b'"' => quoted = true,
                b',' => count += 1,
                b' ' | b'\n' | b'\r' => break,
                _ => {}
            }
        }
        i += 1;
    }
    count
}

struct LpReader {
    reader: Box<dyn BufRead + Send>,
}

impl LpReader {
    fn next_batch(&mut self, buf: &mut Vec<u8>, max_lines: usize) -> io::Result<(u64, u64)> {
        let (mut lines, mut values) = (0u64, 0u64);
        while (lines as usize) < max_lines {
            let start = buf.len();
            if self.reader.read_until(b'\n', buf)? == 0 {
                break;
            }
            let line = &buf[start..];
            let content = line.trim_ascii();
            if content.is_empty() || content[0] == b'#' {
                buf.truncate(start);
                continue;
            }
            values += count_fields(line);
            lines += 1;
            if buf.last() != Some(&b'\n') {
                buf.push(b'\n');
            }
        }
        Ok((lines, values))
    }
}

enum Source {
    Gen(Box<Generator>),
    Input(LpReader),
}

impl Source {
    /// Appends a batch; returns (lines, values), (0, 0) at the end.
    fn next_batch(&mut self, buf: &mut Vec<u8>, max_lines: usize) -> Result<(u64, u64)> {
        match self {
            Source::Gen(g) => {
                let start = buf.len();
                let n = g.next_batch(buf, max_lines) as u64;
                // Sparse lines carry fewer fields: count them.
                let values = if g.sparse() {
                    buf[start..]
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(count_fields)
                        .sum()
                } else {
                    n * generator::FIELDS.len() as u64
                };
                Ok((n, values))
            }
            Source::Input(r) => r.next_batch(buf, max_lines).context("reading --input"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Live counters, progress
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Live {
    lines: AtomicU64,
    values: AtomicU64,
    bytes: AtomicU64,
    wire_bytes: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    conn_errors: AtomicU64,
    failed_batches: AtomicU64,
    failed_lines: AtomicU64,
}

impl Live {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    fn add(c: &AtomicU64, v: u64) {
        c.fetch_add(v, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProgressMode {
    Off,
    Bar,
    Log,
}

#[derive(Clone, Copy, Debug)]
enum Total {
    Lines(u64),
    Bytes(u64),
    Unknown,
}

struct Reporter {
    stop: std::sync::mpsc::Sender<()>,
    handle: std::thread::JoinHandle<()>,
}

impl Reporter {
    fn start(
        mode: ProgressMode,
        live: Arc<Live>,
        total: Total,
        started: Instant,
    ) -> Option<Reporter> {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let handle = match mode {
            ProgressMode::Off => return None,
            ProgressMode::Bar => {
                std::thread::spawn(move || progress_bar(&live, total, started, &rx))
            }
            ProgressMode::Log => {
                std::thread::spawn(move || progress_log(&live, total, started, &rx))
            }
        };
        Some(Reporter { stop, handle })
    }

    fn finish(self) {
        drop(self.stop);
        // A panicking reporter only loses progress output.
        let _ = self.handle.join();
    }
}

/// Waits up to `tick`; false once the reporter should stop.
fn tick(rx: &std::sync::mpsc::Receiver<()>, tick: Duration) -> bool {
    matches!(
        rx.recv_timeout(tick),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
    )
}

fn rate(v: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { v as f64 / s } else { 0.0 }
}

fn progress_bar(live: &Live, total: Total, started: Instant, rx: &std::sync::mpsc::Receiver<()>) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let (len, template) = match total {
        Total::Lines(n) => (
            Some(n),
            "{spinner} [{elapsed_precise}] [{wide_bar}] {human_pos}/{human_len} lines, ETA {eta} {msg}",
        ),
        Total::Bytes(n) => (
            Some(n),
            "{spinner} [{elapsed_precise}] [{wide_bar}] {binary_bytes}/{binary_total_bytes}, ETA {eta} {msg}",
        ),
        Total::Unknown => (None, "{spinner} [{elapsed_precise}] {msg}"),
    };
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    loop {
        let go_on = tick(rx, Duration::from_millis(200));
        let elapsed = started.elapsed();
        let lines = Live::get(&live.lines);
        let bytes = Live::get(&live.bytes);
        bar.set_position(if matches!(total, Total::Bytes(_)) {
            bytes
        } else {
            lines
        });
        let failed = Live::get(&live.failed_batches);
        let mut msg = if matches!(total, Total::Lines(_)) {
            String::new()
        } else {
            format!("{} lines | ", group_digits(lines))
        };
        msg.push_str(&format!(
            "{} lines/s | {:.1} MB/s",
            group_digits(rate(lines, elapsed).round() as u64),
            rate(bytes, elapsed) / 1e6
        ));
        let retries = Live::get(&live.retries);
        if retries > 0 || failed > 0 {
            msg.push_str(&format!(" | retries {retries} | failed batches {failed}"));
        }
        bar.set_message(msg);
        if !go_on {
            break;
        }
    }
    bar.finish_and_clear();
}

fn progress_log(live: &Live, total: Total, started: Instant, rx: &std::sync::mpsc::Receiver<()>) {
    while tick(rx, Duration::from_secs(5)) {
        let elapsed = started.elapsed();
        let lines = Live::get(&live.lines);
        let bytes = Live::get(&live.bytes);
        let pct = match total {
            Total::Lines(n) if n > 0 => format!(" ({:.1}%)", lines as f64 * 100.0 / n as f64),
            Total::Bytes(n) if n > 0 => format!(" ({:.1}%)", bytes as f64 * 100.0 / n as f64),
            _ => String::new(),
        };
        eprintln!(
            "[{:>8.1}s] {} lines{pct} | {} lines/s | {:.1} MB/s | retries {} | conn errors {} | failed batches {}",
            elapsed.as_secs_f64(),
            group_digits(lines),
            group_digits(rate(lines, elapsed).round() as u64),
            rate(bytes, elapsed) / 1e6,
            Live::get(&live.retries),
            Live::get(&live.conn_errors),
            Live::get(&live.failed_batches),
        );
    }
}

fn group_digits(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP sink
// ---------------------------------------------------------------------------------------------

mod http {
    use super::*;
    use hdrhistogram::Histogram;
    use reqwest::Url;
    use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};

    /// Longest wait honoured from a Retry-After header.
    const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

    pub struct HttpCfg {
        pub endpoint: Url,
        pub gzip: bool,
        pub token: Option<String>,
        pub concurrency: usize,
        pub max_retries: u32,
        pub timeout: Duration,
    }

    pub struct Batch {
        pub data: Vec<u8>,
        pub lines: u64,
        pub values: u64,
    }

    #[derive(Default)]
    pub struct Outcome {
        pub status: BTreeMap<u16, u64>,
        pub first_error: Option<String>,
        pub latency: Option<Histogram<u64>>,
    }

    /// True for 127.0.0.0/8, ::1 (also IPv4-mapped), and the name `localhost`.
    pub fn is_loopback_host(host: &str) -> bool {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.is_loopback(),
            Ok(IpAddr::V6(v6)) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Err(_) => bare.eq_ignore_ascii_case("localhost"),
        }
    }

    /// Builds the write endpoint and enforces the http-only / loopback-only rules.
    pub fn build_endpoint(
        base: &str,
        api: Api,
        db: &str,
        org: &str,
        allow_remote: bool,
    ) -> Result<Url> {
        let mut url = Url::parse(base).with_context(|| format!("invalid --url {base:?}"))?;
        match url.scheme() {
            "http" => {}
            "https" => bail!(
                "--url {base:?}: https is not supported (this tool is built without TLS); use http://"
            ),
            s => bail!("--url {base:?}: unsupported scheme {s:?}; use http://"),
        }
        let host = url
            .host_str()
            .ok_or_else(|| anyhow!("--url {base:?} has no host"))?
            .to_string();
        if !allow_remote && !is_loopback_host(&host) {
            bail!(
                "refusing to send to {host:?}: not a loopback address (127.0.0.0/8, localhost, ::1); \
                 pass --allow-remote to override"
            );
        }
        let base_path = url.path().trim_end_matches('/').to_string();
        let (path, params): (&str, Vec<(&str, &str)>) = match api {
            Api::V1 => ("/write", vec![("db", db), ("precision", "ns")]),
            Api::V2 => (
                "/api/v2/write",
                vec![("bucket", db), ("org", org), ("precision", "ns")],
            ),
            Api::V3 => (
                "/api/v3/write_lp",
                vec![("db", db), ("precision", "nanosecond")],
            ),
        };
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(None);
        url.set_fragment(None);
        url.query_pairs_mut().extend_pairs(params);
        Ok(url)
    }

    fn client(cfg: &HttpCfg) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(cfg.concurrency)
            .tcp_nodelay(true)
            .user_agent(concat!("meridian-loadgen/", env!("CARGO_PKG_VERSION")));
        if let (Some(host), Some(port)) = (
            cfg.endpoint.host_str(),
            cfg.endpoint.port_or_known_default(),
        ) && host.eq_ignore_ascii_case("localhost")
        {
            // Never let a resolver send "localhost" traffic anywhere but the loopback interface.
            builder = builder.resolve_to_addrs(
                host,
                &[
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
                ],
            );
        }
        builder.build().context("building the HTTP client")
    }

    /// 1 µs .. 1 h at 3 significant digits.
    fn new_histogram() -> Result<Histogram<u64>> {
        Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| anyhow!("creating a latency histogram: {e:?}"))
    }

    fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(data.len() / 4 + 64),
            flate2::Compression::fast(),
        );
        enc.write_all(data)?;
        enc.finish()
    }

    pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
        let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        let secs: f64 = v.parse().ok()?;
        (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER))
    }

    fn backoff(attempt: u32) -> Duration {
        Duration::from_millis(100u64.saturating_mul(1u64 << attempt.min(6)))
            .min(Duration::from_secs(5))
    }

    struct Ctx {
        cfg: HttpCfg,
        client: reqwest::Client,
        live: Arc<Live>,
        status: Mutex<BTreeMap<u16, u64>>,
        first_error: Mutex<Option<String>>,
    }

    impl Ctx {
        fn count_status(&self, status: u16) {
            if let Ok(mut m) = self.status.lock() {
                *m.entry(status).or_default() += 1;
            }
        }

        fn fail(&self, batch: &Batch, why: String) {
            Live::add(&self.live.failed_batches, 1);
            Live::add(&self.live.failed_lines, batch.lines);
            if let Ok(mut e) = self.first_error.lock()
                && e.is_none()
            {
                *e = Some(why);
            }
        }
    }

    fn snippet(body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let mut s: String = text.chars().take(300).collect();
        if text.chars().count() > 300 {
            s.push('…');
        }
        s
    }

    async fn send_batch(ctx: &Ctx, batch: Batch, hist: &mut Histogram<u64>) {
        let Batch {
            data,
            lines,
            values,
        } = batch;
        let raw_len = data.len() as u64;
        let batch = Batch {
            data: Vec::new(),
            lines,
            values,
        };
        let body = if ctx.cfg.gzip {
            match tokio::task::spawn_blocking(move || gzip(&data)).await {
                Ok(Ok(z)) => z,
                Ok(Err(e)) => return ctx.fail(&batch, format!("gzip failed: {e}")),
                Err(e) => return ctx.fail(&batch, format!("gzip task failed: {e}")),
            }
        } else {
            data
        };
        let mut attempt: u32 = 0;
        loop {
            let mut req = ctx
                .client
                .post(ctx.cfg.endpoint.clone())
                .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(body.clone());
            if ctx.cfg.gzip {
                req = req.header(CONTENT_ENCODING, "gzip");
            }
            if let Some(token) = &ctx.cfg.token {
                req = req.header(AUTHORIZATION, format!("Token {token}"));
            }
            Live::add(&ctx.live.requests, 1);
            let started = Instant::now();
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let wait = retry_after(resp.headers());
                    let resp_body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                    hist.saturating_record((started.elapsed().as_micros() as u64).max(1));
                    ctx.count_status(status);
                    if (200..300).contains(&status) {
                        Live::add(&ctx.live.lines, batch.lines);
                        Live::add(&ctx.live.values, batch.values);
                        Live::add(&ctx.live.bytes, raw_len);
                        Live::add(&ctx.live.wire_bytes, body.len() as u64);
                        return;
                    }
                    if matches!(status, 429 | 503) && attempt < ctx.cfg.max_retries {
                        Live::add(&ctx.live.retries, 1);
                        tokio::time::sleep(wait.unwrap_or_else(|| backoff(attempt))).await;
                    } else {
                        let why = if matches!(status, 429 | 503) {
                            format!(
                                "HTTP {status} after {attempt} retries: {}",
                                snippet(&resp_body)
                            )
                        } else {
                            format!("HTTP {status}: {}", snippet(&resp_body))
                        };
                        ctx.fail(&batch, why);
                        return;
                    }
                }
                Err(e) => {
                    Live::add(&ctx.live.conn_errors, 1);
                    if attempt < ctx.cfg.max_retries {
                        Live::add(&ctx.live.retries, 1);
                        tokio::time::sleep(backoff(attempt)).await;
                    } else {
                        let e = anyhow::Error::from(e);
                        ctx.fail(
                            &batch,
                            format!("connection error after {attempt} retries: {e:#}"),
                        );
                        return;
                    }
                }
            }
            attempt += 1;
        }
    }

    /// Streams `source` to the endpoint: a producer thread pre-generates batches into a
    /// bounded channel (capacity = concurrency), `concurrency` tasks send them.
    pub fn run(
        mut source: Source,
        batch_lines: usize,
        cfg: HttpCfg,
        live: Arc<Live>,
    ) -> Result<Outcome> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let concurrency = cfg.concurrency;
        let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(concurrency);
        let producer = std::thread::spawn(move || -> Result<()> {
            let mut capacity = 1 << 16;
            loop {
                let mut data = Vec::with_capacity(capacity);
                let (lines, values) = source.next_batch(&mut data, batch_lines)?;
                if lines == 0 {
                    return Ok(());
                }
                capacity = data.len() + data.len() / 8 + 64;
                if tx
                    .blocking_send(Batch {
                        data,
                        lines,
                        values,
                    })
                    .is_err()
                {
                    return Ok(()); // all senders are gone
                }
            }
        });
        let ctx = Arc::new(Ctx {
            client: runtime.block_on(async { client(&cfg) })?,
            cfg,
            live,
            status: Mutex::new(BTreeMap::new()),
            first_error: Mutex::new(None),
        });
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let hist = runtime.block_on(async {
            let mut tasks = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                let (ctx, rx) = (ctx.clone(), rx.clone());
                let mut hist = new_histogram()?;
                tasks.push(tokio::spawn(async move {
                    loop {
                        let next = rx.lock().await.recv().await;
                        let Some(batch) = next else { break };
                        send_batch(&ctx, batch, &mut hist).await;
                    }
                    hist
                }));
            }
            let mut all = new_histogram()?;
            for t in tasks {
                let h = t.await.context("a sender task panicked")?;
                all.add(&h)
                    .map_err(|e| anyhow!("merging latency histograms: {e:?}"))?;
            }
            Ok::<_, anyhow::Error>(all)
        })?;
        drop(rx);
        producer
            .join()
            .map_err(|_| anyhow!("the batch producer panicked"))??;
        let status = ctx.status.lock().map(|m| m.clone()).unwrap_or_default();
        let first_error = ctx.first_error.lock().ok().and_then(|e| e.clone());
        Ok(Outcome {
            status,
            first_error,
            latency: (!hist.is_empty()).then_some(hist),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// File sink
// ---------------------------------------------------------------------------------------------

fn run_file(mut source: Source, batch_lines: usize, out: &Path, live: &Live) -> Result<()> {
    let to_stdout = out.as_os_str() == "-";
    let mut sink: Box<dyn Write> = if to_stdout {
        Box::new(io::stdout().lock())
    } else {
        Box::new(File::create(out).with_context(|| format!("creating {}", out.display()))?)
    };
    let what = if to_stdout {
        "stdout".to_string()
    } else {
        out.display().to_string()
    };
    let mut buf = Vec::with_capacity(1 << 20);
    loop {
        buf.clear();
        let (lines, values) = source.next_batch(&mut buf, batch_lines)?;
        if lines == 0 {
            break;
        }
        sink.write_all(&buf)
            .with_context(|| format!("writing {what}"))?;
        Live::add(&live.lines, lines);
        Live::add(&live.values, values);
        Live::add(&live.bytes, buf.len() as u64);
        Live::add(&live.wire_bytes, buf.len() as u64);
    }
    sink.flush().with_context(|| format!("writing {what}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
    pub count: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Summary {
    /// "file" or "http".
    pub mode: &'static str,
    /// Output file or write endpoint.
    pub target: String,
    /// Lines delivered (written, or acknowledged with 2xx).
    pub lines: u64,
    pub values: u64,
    /// Uncompressed line protocol bytes delivered.
    pub bytes: u64,
    /// Request body bytes delivered (compressed with --gzip).
    pub wire_bytes: u64,
    pub elapsed_s: f64,
    pub lines_per_s: f64,
    pub values_per_s: f64,
    /// Uncompressed MB (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// HTTP requests attempted, including retries and those that failed to connect.
    pub requests: u64,
    /// Request latency in microseconds over all requests that got a response.
    pub latency_us: Option<Latency>,
    pub status_2xx: u64,
    pub status_non_2xx: BTreeMap<String, u64>,
    pub retries: u64,
    pub connection_errors: u64,
    pub failed_batches: u64,
    pub failed_lines: u64,
    pub first_error: Option<String>,
}

impl Summary {
    fn human(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<16}{v}\n"));
        line("target", format!("{} ({})", self.target, self.mode));
        line("lines sent", group_digits(self.lines));
        line("values sent", group_digits(self.values));
        let wire = if self.mode == "http" && self.wire_bytes != self.bytes {
            format!(", {:.1} MB on the wire", self.wire_bytes as f64 / 1e6)
        } else {
            String::new()
        };
        line("bytes", format!("{:.1} MB{wire}", self.bytes as f64 / 1e6));
        line("elapsed", format!("{:.3} s", self.elapsed_s));
        line(
            "throughput",
            format!(
                "{} lines/s, {} values/s, {:.1} MB/s",
                group_digits(self.lines_per_s.round() as u64),
                group_digits(self.values_per_s.round() as u64),
                self.mb_per_s
            ),
        );
        if self.mode == "http" {
            match &self.latency_us {
                Some(l) => line(
                    "latency (us)",
                    format!(
                        "p50 {}  p90 {}  p99 {}  max {}  ({} responses, mean {:.0})",
                        l.p50, l.p90, l.p99, l.max, l.count, l.mean
                    ),
                ),
                None => line("latency (us)", "no responses".into()),
            }
            let mut statuses = format!("2xx {}", group_digits(self.status_2xx));
            for (code, n) in &self.status_non_2xx {
                statuses.push_str(&format!(", {code} {}", group_digits(*n)));
            }
            line("responses", statuses);
            line("requests", group_digits(self.requests));
            line("retries", group_digits(self.retries));
            line("conn errors", group_digits(self.connection_errors));
            line(
                "failed batches",
                format!(
                    "{} ({} lines)",
                    group_digits(self.failed_batches),
                    group_digits(self.failed_lines)
                ),
            );
            if let Some(e) = &self.first_error {
                line("first error", e.clone());
            }
        }
        format!("meridian-loadgen summary\n{s}")
    }
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

/// Runs the generator/sender described by `cli` and returns its summary.
fn execute(cli: &Cli, progress: ProgressMode) -> Result<Summary> {
    // Validate the sink before doing any work.
    let http_cfg = match &cli.url {
        Some(url) => {
            let db = cli
                .db
                .as_deref()
                .ok_or_else(|| anyhow!("--url requires --db"))?;
            let endpoint = http::build_endpoint(url, cli.api, db, &cli.org, cli.allow_remote)?;
            Some(http::HttpCfg {
                endpoint,
                gzip: cli.gzip,
                token: cli.token.clone(),
                concurrency: cli.concurrency,
                max_retries: cli.max_retries,
                timeout: Duration::from_nanos(cli.timeout),
            })
        }
        None => None,
    };
    let (source, total) = match &cli.input {
        Some(path) if path.as_os_str() == "-" => (
            Source::Input(LpReader {
                reader: Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
            }),
            Total::Unknown,
        ),
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("opening --input {}", path.display()))?;
            let total = file
                .metadata()
                .map(|m| Total::Bytes(m.len()))
                .unwrap_or(Total::Unknown);
            (
                Source::Input(LpReader {
                    reader: Box::new(BufReader::with_capacity(1 << 20, file)),
                }),
                total,
            )
        }
        None => {
            let cfg = gen_config(cli)?;
            let total = Total::Lines(cfg.total_lines());
            (Source::Gen(Box::new(Generator::new(cfg))), total)
        }
    };

    let live = Arc::new(Live::default());
    let started = Instant::now();
    let reporter = Reporter::start(progress, live.clone(), total, started);
    let (mode, target, result) = match (http_cfg, &cli.out) {
        (Some(cfg), _) => {
            let target = cfg.endpoint.to_string();
            let r = http::run(source, cli.batch_lines, cfg, live.clone());
            ("http", target, r)
        }
        (None, Some(out)) => {
            let target = if out.as_os_str() == "-" {
                "stdout".into()
            } else {
                out.display().to_string()
            };
            let r =
                run_file(source, cli.batch_lines, out, &live).map(|()| http::Outcome::default());
            ("file", target, r)
        }
        (None, None) => (
            "none",
            String::new(),
            Err(anyhow!("one of --out or --url is required")),
        ),
    };
    let elapsed = started.elapsed();
    if let Some(r) = reporter {
        r.finish();
    }
    let outcome = result?;

    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let lines = get(&live.lines);
    let values = get(&live.values);
    let bytes = get(&live.bytes);
    let status_2xx = outcome
        .status
        .iter()
        .filter(|(c, _)| (200..300).contains(*c))
        .map(|(_, n)| n)
        .sum();
    let status_non_2xx = outcome
        .status
        .iter()
        .filter(|(c, _)| !(200..300).contains(*c))
        .map(|(c, n)| (c.to_string(), *n))
        .collect();
    let latency_us = outcome.latency.as_ref().map(|h| Latency {
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
        mean: h.mean(),
        count: h.len(),
    });
    Ok(Summary {
        mode,
        target,
        lines,
        values,
        bytes,
        wire_bytes: get(&live.wire_bytes),
        elapsed_s: elapsed.as_secs_f64(),
        lines_per_s: rate(lines, elapsed),
        values_per_s: rate(values, elapsed),
        mb_per_s: rate(bytes, elapsed) / 1e6,
        requests: get(&live.requests),
        latency_us,
        status_2xx,
        status_non_2xx,
        retries: get(&live.retries),
        connection_errors: get(&live.conn_errors),
        failed_batches: get(&live.failed_batches),
        failed_lines: get(&live.failed_lines),
        first_error: outcome.first_error,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let progress = if cli.quiet {
        ProgressMode::Off
    } else if io::stderr().is_terminal() {
        ProgressMode::Bar
    } else {
        ProgressMode::Log
    };
    let summary = match execute(&cli, progress) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let stdout_taken = cli.out.as_ref().is_some_and(|o| o.as_os_str() == "-");
    let human = summary.human();
    if cli.json || stdout_taken {
        eprint!("{human}");
    } else {
        print!("{human}");
    }
    if cli.json {
        match serde_json::to_string(&summary) {
            Ok(json) if stdout_taken => eprintln!("{json}"),
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: serializing the summary: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if summary.failed_batches > 0 {
        eprintln!(
            "error: {} batch(es) ({} lines) finally failed",
            summary.failed_batches, summary.failed_lines
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::generator::{FIELDS, MAPPED_REGIONS, UNMAPPED_REGIONS};
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

    /// Tag keys in the order they are written.
    const TAG_KEYS: [&str; 12] = [
        "hostname",
        "region",
        "datacenter",
        "rack",
        "os",
        "arch",
        "team",
        "service",
        "service_version",
        "service_environment",
        "lat",
        "lon",
    ];

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["meridian-loadgen"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    /// The other value kinds, sparse fields and optional tags: each line's values read as
    /// the kind says, over a few hosts and steps.
    #[test]
    fn value_kinds_sparse_fields_and_optional_tags() {
        let text = |args: &[&str]| String::from_utf8(generate(args, 7)).unwrap();
        let base = ["--hosts", "12", "--duration", "10m", "--out", "-"];
        let fields_of = |line: &str| -> Vec<(String, String)> {
            line.split(' ')
                .nth(1)
                .unwrap()
                .split(',')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect()
        };
        // decimals: field k has k mod 4 decimals.
        let out = text(&[&base[..], &["--field-type", "decimals"]].concat());
        for line in out.lines() {
            for (k, (_, v)) in fields_of(line).iter().enumerate() {
                let decimals = v.split_once('.').map_or(0, |(_, f)| f.len());
                assert_eq!(decimals, k % 4, "{v} in {line}");
                assert!(v.parse::<f64>().is_ok());
            }
        }
        // full: floats that no short decimal gives back.
        let out = text(&[&base[..], &["--field-type", "full"]].concat());
        let long = out
            .lines()
            .flat_map(|l| fields_of(l).into_iter().map(|(_, v)| v))
            .filter(|v| v.len() > 12)
            .count();
        assert!(long > 1000, "{long}");
        // counter: per host and field, never decreasing; gauge: rarely changing.
        for (kind, max_changes) in [("counter", usize::MAX), ("gauge", 60 * 12 * 10 / 25)] {
            let out = text(&[&base[..], &["--field-type", kind]].concat());
            let mut last: std::collections::HashMap<(String, String), u64> = Default::default();
            let mut changes = 0;
            for line in out.lines() {
                let host = line.split(',').nth(1).unwrap().to_string();
                for (k, v) in fields_of(line) {
                    let n: u64 = v.strip_suffix('i').unwrap().parse().unwrap();
                    if let Some(prev) = last.insert((host.clone(), k), n) {
                        if kind == "counter" {
                            assert!(n >= prev, "{kind} decreased: {prev} -> {n}");
                        }
                        changes += usize::from(n != prev);
                    }
                }
            }
            assert!(changes <= max_changes, "{kind}: {changes} changes");
            assert!(changes > 0, "{kind}: no change");
        }
        // sparse: about half the values, at least one per line, counted as sent.
        let out = text(&[&base[..], &["--field-type", "float", "--sparse", "50%"]].concat());
        let per_line: Vec<usize> = out.lines().map(|l| fields_of(l).len()).collect();
        assert!(per_line.iter().all(|n| (1..=10).contains(n)));
        let total: usize = per_line.iter().sum();
        assert!(
            (total as f64 / per_line.len() as f64 - 5.0).abs() < 0.5,
            "{total} values in {} lines",
            per_line.len()
        );
        // optional tags: hostname and region always, some hosts without rack, team or os.
        let out = text(&[&base[..], &["--optional-tags"]].concat());
        let tag_counts: Vec<usize> = out
            .lines()
            .map(|l| {
                let series = l.split(' ').next().unwrap();
                assert!(series.contains(",hostname=") && series.contains(",region="));
                series.split(',').count() - 1
            })
            .collect();
        assert!(tag_counts.contains(&12) && tag_counts.iter().any(|n| *n < 12));
        // The earlier data sets are unchanged by these options' existence.
        assert_eq!(
            generate(&base, 5),
            generate(
                &[&base[..], &["--sparse", "0", "--field-type", "int"]].concat(),
                3
            )
        );
    }

    fn generate(args: &[&str], batch: usize) -> Vec<u8> {
        let c = cli(args);
        let mut g = Generator::new(gen_config(&c).unwrap());
        let mut out = Vec::new();
        while g.next_batch(&mut out, batch) > 0 {}
        out
    }

    #[derive(Debug)]
    struct Parsed {
        tags: Vec<(String, String)>,
        fields: Vec<(String, f64)>,
        ts: i64,
    }

    /// A strict checker for the generator's lines: `cpu,<12 tags> <10 fields> <ts>`.
    fn parse_line(line: &str, float: bool) -> Parsed {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "3 space-separated sections: {line}");
        let mut series = parts[0].split(',');
        assert_eq!(series.next(), Some("cpu"));
        let tags: Vec<(String, String)> = series
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                assert!(
                    !k.is_empty() && !v.is_empty() && !v.contains('='),
                    "tag {kv}"
                );
                (k.to_string(), v.to_string())
            })
            .collect();
        let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, TAG_KEYS);
        let fields: Vec<(String, f64)> = parts[1]
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                let value = if float {
                    let (_, frac) = v.split_once('.').unwrap();
                    assert_eq!(frac.len(), 2, "two decimals: {v}");
                    v.parse::<f64>().unwrap()
                } else {
                    f64::from(v.strip_suffix('i').unwrap().parse::<u8>().unwrap())
                };
                (k.to_string(), value)
            })
            .collect();
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, FIELDS);
        assert_eq!(count_fields(line.as_bytes()), 10);
        Parsed {
            tags,
            fields,
            ts: parts[2].parse().unwrap(),
        }
    }

    fn tag<'a>(p: &'a Parsed, key: &str) -> &'a str {
        &p.tags.iter().find(|(k, _)| k == key).unwrap().1
    }

    #[test]
    fn deterministic_per_seed_and_independent_of_batch_size() {
        let args = ["--hosts", "17", "--duration", "5m", "--out", "-"];
        let a = generate(&args, 5000);
        assert_eq!(a, generate(&args, 5000));
        assert_eq!(a, generate(&args, 1));
        assert_eq!(a, generate(&args, 7));
        let b = generate(
            &[
                "--hosts",
                "17",
                "--duration",
                "5m",
                "--seed",
                "2",
                "--out",
                "-",
            ],
            5000,
        );
        assert_ne!(a, b);
        assert_eq!(
            a.iter().filter(|&&c| c == b'\n').count(),
            b.iter().filter(|&&c| c == b'\n').count()
        );
    }

    #[test]
    fn counts_ranges_and_time_major_order() {
        for float in [false, true] {
            let ft = if float { "float" } else { "int" };
            let hosts = 23;
            let data = generate(
                &[
                    "--hosts",
                    "23",
                    "--duration",
                    "30m",
                    "--interval",
                    "10s",
                    "--field-type",
                    ft,
                    "--out",
                    "-",
                ],
                100,
            );
            let text = std::str::from_utf8(&data).unwrap();
            assert!(text.ends_with('\n'));
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), hosts * 180);
            let mut prev: Vec<Option<Vec<f64>>> = vec![None; hosts];
            for (j, line) in lines.iter().enumerate() {
                let p = parse_line(line, float);
                let (step, host) = (j / hosts, j % hosts);
                assert_eq!(p.ts, T0 + step as i64 * 10_000_000_000, "line {j}");
                assert_eq!(tag(&p, "hostname"), format!("host_{host}"));
                let region = tag(&p, "region");
                assert!(MAPPED_REGIONS.iter().any(|r| r.name == region), "{region}");
                let dc = tag(&p, "datacenter");
                assert!(
                    dc.len() == region.len() + 1
                        && dc.starts_with(region)
                        && "abc".contains(&dc[region.len()..])
                );
                let lat: f64 = tag(&p, "lat").parse().unwrap();
                let lon: f64 = tag(&p, "lon").parse().unwrap();
                assert!((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon));
                for key in ["lat", "lon"] {
                    assert_eq!(tag(&p, key).split_once('.').unwrap().1.len(), 4);
                }
                let values: Vec<f64> = p.fields.iter().map(|(_, v)| *v).collect();
                assert!(values.iter().all(|v| (0.0..=100.0).contains(v)), "{line}");
                if let Some(before) = &prev[host] {
                    // Random walk: at most ±1.00 per step (int mode rounds, so ±2 there).
                    let limit = if float { 1.0 + 1e-9 } else { 2.0 };
                    for (a, b) in before.iter().zip(&values) {
                        assert!((a - b).abs() <= limit, "step too large: {a} -> {b}");
                    }
                    assert_eq!(before.len(), 10);
                }
                prev[host] = Some(values);
                // Tags are fixed per host.
                if step > 0 {
                    assert_eq!(lines[j - hosts].split(' ').next(), line.split(' ').next());
                }
            }
        }
    }

    #[test]
    fn coordinates_near_their_region_and_unmapped_share() {
        let data = generate(
            &[
                "--hosts",
                "200",
                "--duration",
                "10s",
                "--unmapped-regions",
                "10%",
                "--out",
                "-",
            ],
            5000,
        );
        let text = std::str::from_utf8(&data).unwrap();
        let mut unmapped = 0;
        for line in text.lines() {
            let p = parse_line(line, false);
            let name = tag(&p, "region");
            let region = MAPPED_REGIONS
                .iter()
                .chain(UNMAPPED_REGIONS.iter())
                .find(|r| r.name == name)
                .unwrap();
            if UNMAPPED_REGIONS.iter().any(|r| r.name == name) {
                unmapped += 1;
            }
            let lat: f64 = tag(&p, "lat").parse().unwrap();
            let lon: f64 = tag(&p, "lon").parse().unwrap();
            assert!(
                (lat - f64::from(region.lat) / 1e4).abs() <= 0.5 + 1e-9,
                "{line}"
            );
            assert!(
                (lon - f64::from(region.lon) / 1e4).abs() <= 0.5 + 1e-9,
                "{line}"
            );
        }
        assert_eq!(unmapped, 20);
        // Dublin really is where eu-west-1 says.
        let dublin = MAPPED_REGIONS
            .iter()
            .find(|r| r.name == "eu-west-1")
            .unwrap();
        assert_eq!(generator::format_coord(dublin.lat), "53.3498");
        assert_eq!(generator::format_coord(dublin.lon), "-6.2603");
        assert_eq!(generator::format_coord(-5), "-0.0005");
    }

    #[test]
    fn all_regions_are_used_and_tags_vary() {
        let data = generate(&["--hosts", "100", "--duration", "10s", "--out", "-"], 5000);
        let text = std::str::from_utf8(&data).unwrap();
        let regions: std::collections::BTreeSet<String> = text
            .lines()
            .map(|l| tag(&parse_line(l, false), "region").to_string())
            .collect();
        assert_eq!(regions.len(), MAPPED_REGIONS.len());
        let teams: std::collections::BTreeSet<String> = text
            .lines()
            .map(|l| tag(&parse_line(l, false), "team").to_string())
            .collect();
        assert!(teams.len() > 1);
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_duration("10s"), Ok(10_000_000_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("2d"), Ok(172_800_000_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_positive_duration("0s").is_err());
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Ok(T0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00.5+01:00"),
            Ok(T0 + 500_000_000)
        );
        assert_eq!(parse_rfc3339("2025-12-31T19:00:00-05:00"), Ok(T0));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000_000_000)
        );
        assert!(parse_rfc3339("2025-02-29T00:00:00Z").is_err());
        assert!(parse_rfc3339("2026-01-01").is_err());
        assert!(parse_rfc3339("2026-01-01T00:00:00").is_err());
        assert!(parse_rfc3339("2300-01-01T00:00:00Z").is_err());
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert_eq!(parse_share("10%"), Ok(0.1));
        assert!(parse_share("1.5").is_err());
        assert!(Cli::try_parse_from(["x", "--hosts", "0", "--out", "-"]).is_err());
        assert!(
            Cli::try_parse_from(["x", "--hosts", "5"]).is_err(),
            "a sink is required"
        );
        assert!(
            Cli::try_parse_from([
                "x",
                "--out",
                "-",
                "--url",
                "http://127.0.0.1:1",
                "--db",
                "d"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from(["x", "--url", "http://127.0.0.1:1"]).is_err(),
            "--db is required"
        );
        assert!(Cli::try_parse_from(["x", "--input", "f", "--hosts", "3", "--out", "-"]).is_err());
        assert!(gen_config(&cli(&["--duration", "5s", "--out", "-"])).is_err());
    }

    #[test]
    fn field_counting() {
        assert_eq!(count_fields(b"m,t=1 a=1i,b=2 10\n"), 2);
        assert_eq!(count_fields(b"m a=\"x, y z\",b=1"), 2);
        assert_eq!(count_fields(b"m\\ x,t=a\\ b a=1,b=\"q\\\"\",c=t 5"), 3);
        assert_eq!(count_fields(b"m\n"), 0);
    }

    #[test]
    fn endpoints_and_loopback_rule() {
        let ep = |u: &str, api| {
            http::build_endpoint(u, api, "my db", "org", false).map(|u| u.to_string())
        };
        assert_eq!(
            ep("http://127.0.0.1:8086", Api::V1).unwrap(),
            "http://127.0.0.1:8086/write?db=my+db&precision=ns"
        );
        assert_eq!(
            ep("http://localhost:8086/prefix/", Api::V2).unwrap(),
            "http://localhost:8086/prefix/api/v2/write?bucket=my+db&org=org&precision=ns"
        );
        assert_eq!(
            ep("http://[::1]:8181", Api::V3).unwrap(),
            "http://[::1]:8181/api/v3/write_lp?db=my+db&precision=nanosecond"
        );
        assert!(ep("http://127.9.8.7:1", Api::V1).is_ok());
        for bad in [
            "http://10.0.0.1:8086",
            "http://192.168.1.2",
            "http://example.com",
            "http://localhost.example.com",
            "https://127.0.0.1",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(ep(bad, Api::V1).is_err(), "{bad} must be refused");
        }
        assert!(http::build_endpoint("http://10.0.0.1:8086", Api::V1, "d", "o", true).is_ok());
        let c = cli(&[
            "--url",
            "http://10.1.2.3:8086",
            "--db",
            "d",
            "--duration",
            "10s",
        ]);
        let err = execute(&c, ProgressMode::Off).unwrap_err();
        assert!(format!("{err:#}").contains("refusing"), "{err:#}");
    }

    // --- a tiny HTTP/1.1 server --------------------------------------------------------------

    struct Request {
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    #[derive(Default)]
    struct ServerState {
        requests: Mutex<Vec<Request>>,
        /// Decoded bodies of the requests answered with 2xx.
        accepted: Mutex<Vec<Vec<u8>>>,
    }

    type Responder = fn(usize) -> &'static str;

    fn start_server(respond: Responder) -> (SocketAddr, Arc<ServerState>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st, respond));
            }
        });
        (addr, state)
    }

    fn serve(conn: TcpStream, st: &ServerState, respond: Responder) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut writer = conn;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let target = request_line
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let decoded = if header("content-encoding").as_deref() == Some("gzip") {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            } else {
                body.clone()
            };
            let n = {
                let mut reqs = st.requests.lock().unwrap();
                reqs.push(Request {
                    target,
                    headers,
                    body,
                });
                reqs.len() - 1
            };
            let response = respond(n);
            if response.starts_with("HTTP/1.1 2") {
                st.accepted.lock().unwrap().push(decoded);
            }
            if writer.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }

    const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n";
    const BAD_REQUEST: &str = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\nunable to parse";

    fn sorted_lines(data: &[u8]) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = data
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn http_delivers_every_line_exactly_once_after_a_503() {
        let (addr, state) = start_server(|n| if n == 0 { UNAVAILABLE } else { NO_CONTENT });
        let url = format!("http://{addr}");
        let args = [
            "--url",
            url.as_str(),
            "--db",
            "bench",
            "--hosts",
            "20",
            "--duration",
            "10m",
            "--batch-lines",
            "100",
            "--concurrency",
            "3",
        ];
        let summary = execute(&cli(&args), ProgressMode::Off).unwrap();
        eprintln!("{}", summary.human());
        let expected = generate(&["--hosts", "20", "--duration", "10m", "--out", "-"], 5000);
        let received: Vec<u8> = state.accepted.lock().unwrap().concat();
        assert_eq!(sorted_lines(&received), sorted_lines(&expected));
        assert_eq!(received.len(), expected.len());
        assert_eq!(summary.lines, 1200);
        assert_eq!(summary.values, 12_000);
        assert_eq!(summary.bytes, expected.len() as u64);
        assert_eq!(summary.status_2xx, 12);
        assert_eq!(summary.status_non_2xx.get("503"), Some(&1));
        assert_eq!(summary.retries, 1);
        assert_eq!(summary.requests, 13);
        assert_eq!(summary.failed_batches, 0);
        assert_eq!(summary.connection_errors, 0);
        assert_eq!(summary.latency_us.as_ref().map(|l| l.count), Some(13));
        let reqs = state.requests.lock().unwrap();
        assert!(
            reqs.iter()
                .all(|r| r.target == "/write?db=bench&precision=ns")
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["lines"], 1200);
        assert_eq!(json["status_non_2xx"]["503"], 1);
    }

    #[test]
    fn http_gzip_token_v2_and_input_replay() {
        let (addr, state) = start_server(|_| NO_CONTENT);
        let expected = generate(
            &[
                "--hosts",
                "7",
                "--duration",
                "5m",
                "--field-type",
                "float",
                "--out",
                "-",
            ],
            5000,
        );
        let path = std::env::temp_dir().join(format!("loadgen-test-{}.lp", std::process::id()));
        let mut file_data = b"# a comment\n\n".to_vec();
        file_data.extend_from_slice(&expected);
        file_data.pop(); // no final newline
        std::fs::write(&path, &file_data).unwrap();
        let url = format!("http://{addr}/");
        let p = path.to_string_lossy().to_string();
        let args = [
            "--input",
            p.as_str(),
            "--url",
            url.as_str(),
            "--api",
            "v2",
            "--db",
            "b",
            "--org",
            "o",
            "--gzip",
            "--token",
            "secret",
            "--batch-lines",
            "50",
        ];
        let summary = execute(&cli(&args), ProgressMode::Off).unwrap();
        std::fs::remove_file(&path).unwrap();
        let received: Vec<u8> = state.accepted.lock().unwrap().concat();
        assert_eq!(sorted_lines(&received), sorted_lines(&expected));
        assert_eq!(received.len(), expected.len());
        assert_eq!(summary.lines, 7 * 30);
        assert_eq!(summary.values, 7 * 30 * 10);
        assert!(summary.wire_bytes < summary.bytes);
        let reqs = state.requests.lock().unwrap();
        assert_eq!(reqs.len(), 5);
        for r in reqs.iter() {
            assert_eq!(r.target, "/api/v2/write?bucket=b&org=o&precision=ns");
            assert!(
                r.headers
                    .contains(&("authorization".into(), "Token secret".into()))
            );
            assert!(
                r.headers
                    .contains(&("content-encoding".into(), "gzip".into()))
            );
            assert!(r.body.starts_with(&[0x1f, 0x8b]));
        }
    }

    #[test]
    fn retry_after_is_honoured_on_429() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let mut h = HeaderMap::new();
        assert_eq!(http::retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 2 "));
        assert_eq!(http::retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("100000"));
        assert_eq!(http::retry_after(&h), Some(Duration::from_secs(60)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(http::retry_after(&h), None);

        const TOO_MANY: &str =
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
        let (addr, state) = start_server(|n| if n == 0 { TOO_MANY } else { NO_CONTENT });
        let url = format!("http://{addr}");
        let args = [
            "--url",
            url.as_str(),
            "--db",
            "d",
            "--hosts",
            "3",
            "--duration",
            "10s",
            "--concurrency",
            "1",
        ];
        let summary = execute(&cli(&args), ProgressMode::Off).unwrap();
        assert!(summary.elapsed_s >= 1.0, "waited {}", summary.elapsed_s);
        assert_eq!(summary.status_non_2xx.get("429"), Some(&1));
        assert_eq!(
            (summary.retries, summary.status_2xx, summary.lines),
            (1, 1, 3)
        );
        assert_eq!(state.accepted.lock().unwrap().len(), 1);
    }

    #[test]
    fn http_other_errors_fail_the_batch_without_retry() {
        let (addr, state) = start_server(|_| BAD_REQUEST);
        let url = format!("http://{addr}");
        let args = [
            "--url",
            url.as_str(),
            "--db",
            "d",
            "--hosts",
            "10",
            "--duration",
            "1m",
            "--batch-lines",
            "20",
        ];
        let summary = execute(&cli(&args), ProgressMode::Off).unwrap();
        assert_eq!(summary.lines, 0);
        assert_eq!(summary.failed_batches, 3);
        assert_eq!(summary.failed_lines, 60);
        assert_eq!(summary.retries, 0);
        assert_eq!(summary.status_non_2xx.get("400"), Some(&3));
        assert_eq!(state.requests.lock().unwrap().len(), 3);
        assert!(
            summary
                .first_error
                .as_deref()
                .unwrap()
                .contains("unable to parse")
        );
    }

    #[test]
    fn http_connection_errors_are_retried_then_fail() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://localhost:{port}");
        let args = [
            "--url",
            url.as_str(),
            "--db",
            "d",
            "--hosts",
            "2",
            "--duration",
            "10s",
            "--max-retries",
            "2",
            "--timeout",
            "2s",
        ];
        let summary = execute(&cli(&args), ProgressMode::Off).unwrap();
        assert_eq!(summary.connection_errors, 3);
        assert_eq!(summary.retries, 2);
        assert_eq!(summary.failed_batches, 1);
        assert_eq!(summary.failed_lines, 2);
        assert_eq!(summary.latency_us, None);
    }

    #[test]
    fn file_sink_writes_the_generated_bytes() {
        let path = std::env::temp_dir().join(format!("loadgen-out-{}.lp", std::process::id()));
        let p = path.to_string_lossy().to_string();
        let summary = execute(
            &cli(&[
                "--hosts",
                "5",
                "--duration",
                "2m",
                "--out",
                p.as_str(),
                "--batch-lines",
                "3",
            ]),
            ProgressMode::Off,
        )
        .unwrap();
        let written = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            written,
            generate(&["--hosts", "5", "--duration", "2m", "--out", "-"], 5000)
        );
        assert_eq!(summary.lines, 60);
        assert_eq!(summary.values, 600);
        assert_eq!(summary.bytes, written.len() as u64);
    }
}
