//! Differential tests: Meridian's InfluxQL `/query` against a real InfluxDB 1.6.7 (`influxd`),
//! the oracle for every answer's shape, types and values.
//!
//! ```text
//!  Dataset::generate() ─ before_restart ─▶ InfluxServer          TestServer (meridian)
//!          │                          └──▶ TestServer ── stop (flush to Parquet), compact, restart
//!          └──────────── after_restart ──▶ both (overwrites of flushed points included)
//!  CASES ── GET/POST /query ──▶ both ──▶ compare_answers ──▶ every mismatch, listed at the end
//! ```
//!
//! - [`InfluxServer`]: `influxd` (from `PATH`, or `MERIDIAN_INFLUXD=/path/to/influxd`) on free
//!   loopback ports in its own temp dir, killed on drop. Without `influxd` installed the
//!   tests fail (`.ci/run` installs it); they never skip.
//! - [`compare_results`]: the comparison of two 1.x `/query` JSON answers (rules below).
//! - [`CASES`]: the InfluxQL statements, in named categories. `MERIDIAN_ORACLE_FILTER=a,b`
//!   keeps the cases whose `category: statement` contains `a` or `b` (see [`cases`]).
//! - `oracle_answers.json`: InfluxDB's answers to every case over the dataset, one line per
//!   case, so that the shapes can be read without starting `influxd`. The test
//!   `golden_answers_are_influxdb_1_6s` checks it against a live `influxd`; run it with
//!   `MERIDIAN_ORACLE_RECORD=1` to rewrite it after changing the cases or the dataset.
//!
//! Comparison rules ([`compare_results`]):
//! - Same structure: the same keys in every object, arrays of the same length, series and
//!   rows in the same order (the order InfluxDB returns is part of the answer), except that
//!   rows of equal time in a series may come in any order (InfluxDB's order among them, when
//!   a raw query merges several series, follows its internal merge and is no contract); so
//!   cases never cut such a run with LIMIT.
//! - `"error"` values are compared by presence only: the texts may differ (both are printed
//!   as a note when they do).
//! - Strings (times included), booleans and nulls: equal.
//! - Numbers: InfluxDB (Go's `encoding/json`) spells an integer column value `2` and a float
//!   column value with no fractional part `2` as well, never `2.0`; a JSON client sees `2`
//!   as an integer and `2.0` as a float. So two integer-spelled numbers must be equal;
//!   otherwise the values must agree within 1e-9 relative (1e-12 absolute near zero); and
//!   the same integral value spelled `2` by one side and `2.0` by the other is a mismatch
//!   (it is what a client sees), unless the README lists it as a deviation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Number, Value};

use crate::support::{
    Fields, Rng, SEC_NS, ServerConfig, Tags, TestServer, free_port, http_client, lp_line,
};
use crate::support::{Value as Field, tree};

/// The database both servers are written and queried in.
pub const DB: &str = "oracle";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/oracle_answers.json");
const INFLUXD_MISSING: &str = "`influxd` (InfluxDB 1.6.7, Debian package `influxdb`) is not \
installed, and the oracle tests need it: run `.ci/run`, which installs it (apt-get install \
influxdb influxdb-client), or install those packages yourself";

// ---------------------------------------------------------------------------------------
// The oracle process
// ---------------------------------------------------------------------------------------

/// An `influxd` process on free loopback ports, with its own temp dir (config, meta, data,
/// WAL, log). Nothing listens beyond 127.0.0.1; monitoring, reporting, continuous queries and
/// the other services are off. Killed (SIGKILL) on drop.
pub struct InfluxServer {
    root: tempfile::TempDir,
    child: Child,
    http_addr: String,
    client: reqwest::blocking::Client,
}

/// The path of `name` in `PATH` (or the usual system directories), if it is installed.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn influxd_config(root: &Path, rpc_port: u16, http_port: u16) -> String {
    let dir = |d: &str| root.join(d).display().to_string();
    format!(
        r#"# Written by tests/e2e/oracle.rs: loopback only, nothing running in the background.
reporting-disabled = true
# Debian's build renamed the key above.
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{meta}"
  logging-enabled = false

[data]
  dir = "{data}"
  wal-dir = "{wal}"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  https-enabled = false
  unix-socket-enabled = false

[ifql]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  enabled = false
"#,
        meta = dir("meta"),
        data = dir("data"),
        wal = dir("wal"),
    )
}

impl InfluxServer {
    /// Starts `influxd` (from `PATH`, or the file `MERIDIAN_INFLUXD` names) and waits for
    /// `/ping` to answer 204. Panics if it is not installed (saying how to install it) or
    /// does not start (with its log).
    pub fn start() -> InfluxServer {
        let influxd = match std::env::var_os("MERIDIAN_INFLUXD") {
            Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
            None => find_program("influxd"),
        }
        .unwrap_or_else(|| panic!("{INFLUXD_MISSING}"));
        let mut last_error = String::new();
        // A port picked free may be taken before influxd binds it: try again on new ports.
        for _ in 0..3 {
            match InfluxServer::try_start(&influxd) {
                Ok(s) => return s,
                Err(e) => last_error = e,
            }
        }
        panic!("influxd did not start: {last_error}")
    }

    fn try_start(influxd: &Path) -> Result<InfluxServer, String> {
        let root = tempfile::Builder::new()
            .prefix("influxd-oracle-")
            .tempdir()
            .map_err(|e| format!("creating a temp dir: {e}"))?;
        let (rpc_port, http_port) = (free_port(), free_port());
        let config = root.path().join("influxdb.conf");
        std::fs::write(&config, influxd_config(root.path(), rpc_port, http_port))
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log = std::fs::File::create(root.path().join("influxd.log"))
            .map_err(|e| format!("creating the log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let child = Command::new(influxd)
            .arg("run")
            .arg("-config")
            .arg(&config)
            .current_dir(root.path())
            .env_remove("INFLUXDB_CONFIG_PATH")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", influxd.display()))?;
        let mut s = InfluxServer {
            root,
            child,
            http_addr: format!("127.0.0.1:{http_port}"),
            client: http_client(),
        };
        s.wait_ready()?;
        Ok(s)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("influxd exited ({status}); log:\n{}", self.log()));
            }
            if let Ok(r) = self.client.get(self.url("/ping")).send()
                && r.status().as_u16() == 204
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "/ping did not answer 204 within {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.http_addr, path_and_query)
    }

    pub fn base_url(&self) -> String {
        self.url("")
    }

    /// What influxd printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("influxd.log")).unwrap_or_default()
    }

    /// `CREATE DATABASE db` (idempotent), then `POST /write?db=db[&precision=p]`; asserts 204.
    /// An empty `precision` sends none (nanoseconds).
    pub fn write(&self, db: &str, body_lp: &str, precision: &str) {
        let created = self.post_query(&format!("CREATE DATABASE \"{db}\""));
        assert!(
            created.status == 200 && created.body["results"][0].get("error").is_none(),
            "CREATE DATABASE {db}: {created:?}"
        );
        let r = self
            .client
            .post(self.url(&write_path(db, precision)))
            .body(body_lp.to_string())
            .send()
            .unwrap_or_else(|e| panic!("influxd /write: {e}"));
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        assert_eq!(status, 204, "influxd /write?db={db}: {text}");
    }

    /// `POST /query?q=…` (for statements that change something): the answer.
    pub fn post_query(&self, q: &str) -> Answer {
        let url = format!("{}?{}", self.url("/query"), encode_params(&[("q", q)]));
        let r = self
            .client
            .post(url)
            .send()
            .unwrap_or_else(|e| panic!("influxd POST /query: {e}"));
        Answer::from_response(r, false)
    }

    /// `GET /query?db=db&q=q&<extra_params>`: the JSON answer (panics if it is not JSON).
    pub fn query(&self, db: &str, q: &str, extra_params: &[(&str, &str)]) -> Value {
        let mut params = vec![("db", db), ("q", q)];
        params.extend_from_slice(extra_params);
        let url = format!("{}?{}", self.url("/query"), encode_params(&params));
        let r = self
            .client
            .get(url)
            .send()
            .unwrap_or_else(|e| panic!("influxd GET /query: {e}"));
        let answer = Answer::from_response(r, false);
        assert!(
            !answer.body.is_string(),
            "influxd's answer to {q:?} is not JSON: {answer:?}"
        );
        answer.body
    }
}

impl Drop for InfluxServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_path(db: &str, precision: &str) -> String {
    let mut params = vec![("db", db)];
    if !precision.is_empty() {
        params.push(("precision", precision));
    }
    format!("/write?{}", encode_params(&params))
}

fn encode_params(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

// ---------------------------------------------------------------------------------------
// Answers and their comparison
// ---------------------------------------------------------------------------------------

/// A `/query` response: status, media type (`application/json`, without parameters) and
/// body: the JSON value; for a chunked request the array of its newline-separated JSON
/// chunks; a body that is not JSON is kept as a JSON string.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    fn from_response(r: reqwest::blocking::Response, chunked: bool) -> Answer {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let text = r.text().unwrap_or_default();
        Answer {
            status,
            content_type,
            body: parse_body(&text, chunked),
        }
    }

    fn to_json(&self) -> Value {
        serde_json::json!({
            "status": self.status,
            "content_type": self.content_type,
            "body": self.body,
        })
    }

    fn from_json(v: &Value) -> Option<Answer> {
        Some(Answer {
            status: u16::try_from(v["status"].as_u64()?).ok()?,
            content_type: v["content_type"].as_str()?.to_string(),
            body: v.get("body")?.clone(),
        })
    }
}

/// One JSON value, or (chunked) the array of the JSON values of the body's lines; the raw
/// text as a JSON string when that fails.
fn parse_body(text: &str, chunked: bool) -> Value {
    if chunked {
        let chunks: Result<Vec<Value>, _> = text
            .split('\n')
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect();
        chunks
            .map(Value::Array)
            .unwrap_or_else(|_| Value::String(text.to_string()))
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    }
}

/// Compares two 1.x `/query` JSON answers (see the module docs for the rules). `Err` names
/// the first difference by its JSON path, e.g. `$.results[0].series[1].values[3][2]`.
/// Differing error texts are not a failure; they are printed to stderr.
pub fn compare_results(influx: &Value, meridian: &Value) -> Result<(), String> {
    let mut notes = Vec::new();
    let r = compare_at("$", influx, meridian, &mut notes);
    for n in notes {
        eprintln!("note: {n}");
    }
    r
}

/// Status, media type, then [`compare_results`] on the bodies.
pub fn compare_answers(influx: &Answer, meridian: &Answer) -> Result<(), String> {
    if influx.status != meridian.status {
        return Err(format!(
            "HTTP status {} (influxdb) vs {} (meridian)",
            influx.status, meridian.status
        ));
    }
    if influx.content_type != meridian.content_type {
        return Err(format!(
            "Content-Type {:?} (influxdb) vs {:?} (meridian)",
            influx.content_type, meridian.content_type
        ));
    }
    compare_results(&influx.body, &meridian.body)
}

fn compare_at(path: &str, a: &Value, b: &Value, notes: &mut Vec<String>) -> Result<(), String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let only_a: Vec<&String> = x.keys().filter(|k| !y.contains_key(*k)).collect();
            let only_b: Vec<&String> = y.keys().filter(|k| !x.contains_key(*k)).collect();
            if !only_a.is_empty() || !only_b.is_empty() {
                return Err(format!(
                    "{path}: keys only in influxdb's answer {only_a:?} (e.g. {}), only in \
                     meridian's {only_b:?} (e.g. {})",
                    first_value(x, &only_a),
                    first_value(y, &only_b)
                ));
            }
            for (k, va) in x {
                let vb = &y[k];
                let p = format!("{path}.{k}");
                if k == "error" {
                    if va != vb {
                        notes.push(format!("{p}: influxdb says {va}, meridian says {vb}"));
                    }
                    continue;
                }
                if k == "values" && x["columns"][0] == "time" && y["columns"][0] == "time" {
                    let (ra, rb) = (rows_in_tie_order(va, vb), rows_in_tie_order(vb, va));
                    compare_at(&p, &ra, &rb, notes)?;
                    continue;
                }
                compare_at(&p, va, vb, notes)?;
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                compare_at(&format!("{path}[{i}]"), va, vb, notes)?;
            }
            if x.len() != y.len() {
                let extra = if x.len() > y.len() {
                    format!("influxdb's next: {}", x[y.len()])
                } else {
                    format!("meridian's next: {}", y[x.len()])
                };
                return Err(format!(
                    "{path}: {} elements (influxdb) vs {} (meridian), equal up to there; {}",
                    x.len(),
                    y.len(),
                    truncate(&extra, 300)
                ));
            }
            Ok(())
        }
        (Value::Number(x), Value::Number(y)) => numbers_agree(x, y)
            .map_err(|why| format!("{path}: {x} (influxdb) vs {y} (meridian): {why}")),
        _ if a == b => Ok(()),
        _ => Err(format!(
            "{path}: {} (influxdb) vs {} (meridian)",
            truncate(&a.to_string(), 300),
            truncate(&b.to_string(), 300)
        )),
    }
}

/// `rows` with each run of rows of equal time sorted by their JSON text, when `other` has
/// the same times in the same order (otherwise `rows` as they are, so that the difference
/// shows). InfluxDB's order among rows of equal time from different series follows its
/// internal merge, differs between `SELECT *` and `SELECT *::field`, and is no contract.
fn rows_in_tie_order(rows: &Value, other: &Value) -> Value {
    let (Some(a), Some(b)) = (rows.as_array(), other.as_array()) else {
        return rows.clone();
    };
    let time = |r: &Value| r.get(0).cloned().unwrap_or(Value::Null);
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| time(x) != time(y)) {
        return rows.clone();
    }
    let mut out: Vec<Value> = Vec::with_capacity(a.len());
    for run in a.chunk_by(|x, y| time(x) == time(y)) {
        let mut run = run.to_vec();
        run.sort_by_cached_key(|r| r.to_string());
        out.extend(run);
    }
    Value::Array(out)
}

fn first_value(m: &serde_json::Map<String, Value>, keys: &[&String]) -> String {
    keys.first()
        .map(|k| truncate(&m[k.as_str()].to_string(), 200))
        .unwrap_or_else(|| "-".into())
}

fn numbers_agree(a: &Number, b: &Number) -> Result<(), String> {
    let as_int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    let (ia, ib) = (as_int(a), as_int(b));
    match (ia, ib) {
        (Some(x), Some(y)) if x == y => return Ok(()),
        (Some(_), Some(_)) => return Err("integers differ".into()),
        _ => {}
    }
    let (x, y) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    if x == y && ia.is_some() != ib.is_some() {
        return Err(
            "the same value spelled as an integer by one and as a float by the other \
                    (a JSON client sees 2 vs 2.0)"
                .into(),
        );
    }
    let scale = x.abs().max(y.abs());
    if x == y || (x - y).abs() <= 1e-9 * scale || (x - y).abs() <= 1e-12 {
        Ok(())
    } else {
        Err("numbers differ by more than 1e-9 relative".into())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &s[..cut], s.len())
}

// ---------------------------------------------------------------------------------------
// The data set
// ---------------------------------------------------------------------------------------

/// 2024-01-01T00:00:00Z, the start of the data's two-hour window.
pub const T0_NS: i64 = 1_704_067_200 * SEC_NS;
const STEP_NS: i64 = 10 * SEC_NS;
/// Ten-second steps in the two-hour window.
const STEPS: i64 = 720;
/// `cpu` hosts and their `region` tag (`host_4` has none). Meridian routes `us-*` to its
/// americas region, `eu-*` to eu, and a series without the tag to global.
pub const CPU_HOSTS: [(&str, Option<&str>); 4] = [
    ("host_1", Some("us-east-1")),
    ("host_2", Some("eu-west-1")),
    ("host_3", Some("us-east-1")),
    ("host_4", None),
];
const STATES: [&str; 3] = ["idle", "busy", "down"];
/// Points from here on are written after Meridian's restart (its first hour is in files).
const SPLIT_NS: i64 = T0_NS + 70 * 60 * SEC_NS;

#[derive(Clone, Debug)]
struct Point {
    measurement: &'static str,
    tags: Tags,
    fields: Fields,
    time: i64,
}

/// Line protocol bodies to write in order; `precision` is the `/write` parameter (empty:
/// none, nanoseconds).
#[derive(Clone, Debug)]
pub struct Batch {
    pub precision: &'static str,
    pub body: String,
}

/// What agents send, deterministically (seeded):
/// - `cpu,host=host_N[,region=R] usage_user=<f>,usage_system=<f>,n=<i>i,ok=<b>,state="<s>"`
///   every 10 s over 2024-01-01T00:00:00Z + 2h for four hosts; `host_4` has no `region`
///   and stops at 01:30; `host_3` has a gap 00:20–00:30; fields are sparse (`state` on
///   every sixth point, the others missing at random); `n` is a counter (host_2's resets at
///   01:06:40).
/// - `mem used=<i>i,free=<i>i,pct=<f>` (tagless) every 30 s, plus three points at
///   sub-second times around 00:15; `mem,host=host_1 used,free` every minute 00:30–01:29.
/// - Bodies shuffled (out of order), in `s`, `ms` and `ns` precision; points of the first
///   hour arriving late (after the restart); overwrites of some fields of existing points
///   (last write wins, field by field), both of points already flushed to files and of
///   points still in memory.
pub struct Dataset {
    /// Written to Meridian before its stop (a clean stop flushes them to Parquet).
    pub before_restart: Vec<Batch>,
    /// Written after the restart.
    pub after_restart: Vec<Batch>,
    /// (measurement, tag set, time) → fields, last write wins per field.
    model: BTreeMap<(String, Tags, i64), Fields>,
}

fn cents(rng: &mut Rng, lo: i64, hi: i64) -> Field {
    Field::Float(rng.range(lo, hi) as f64 / 100.0)
}

impl Dataset {
    pub fn generate() -> Dataset {
        let mut rng = Rng::new(0x0AC1_E016_7001);
        let base = base_points(&mut rng);
        let (mut early, mut late) = (Vec::new(), Vec::new());
        for p in &base {
            // 5% of the first part arrives late, after the restart.
            if p.time < SPLIT_NS && !rng.chance(5) {
                early.push(p.clone());
            } else {
                late.push(p.clone());
            }
        }
        let sub_second: Vec<Point> = [500, 1_250, 1_750]
            .iter()
            .map(|ms| {
                let mut f = Fields::new();
                f.insert("used".into(), Field::Int(4_100_000_000 + ms));
                f.insert("free".into(), Field::Int(3_900_000_000 - ms));
                f.insert("pct".into(), Field::Float(51.25));
                Point {
                    measurement: "mem",
                    tags: Tags::new(),
                    fields: f,
                    time: T0_NS + 15 * 60 * SEC_NS + ms * 1_000_000,
                }
            })
            .collect();

        // Overwrites of points already stored: before the restart (merged in memory), after
        // it (of points now in files, and of points written after the restart).
        let flushed: Vec<&Point> = early.iter().filter(|p| p.measurement == "cpu").collect();
        let overwrite1 = overwrites(&mut rng, &flushed, 40, &["usage_user"]);
        let overwrite2 = overwrites(&mut rng, &flushed, 40, &["usage_user", "usage_system"]);
        let states = overwrites(&mut rng, &flushed, 10, &["state"]);
        let fresh: Vec<&Point> = late
            .iter()
            .filter(|p| p.measurement == "cpu" && p.time >= SPLIT_NS)
            .collect();
        let overwrite3 = overwrites(&mut rng, &fresh, 20, &["usage_user", "ok"]);
        let mem: Vec<&Point> = early
            .iter()
            .filter(|p| p.measurement == "mem" && p.tags.is_empty())
            .collect();
        let overwrite_mem = overwrites(&mut rng, &mem, 10, &["used"]);

        let mut d = Dataset {
            before_restart: Vec::new(),
            after_restart: Vec::new(),
            model: BTreeMap::new(),
        };
        let before = [
            ("s", early),
            ("ms", sub_second),
            ("", overwrite1),
            ("", states),
        ];
        for (precision, points) in before {
            let b = d.batches(&mut rng, precision, points);
            d.before_restart.extend(b);
        }
        let after = [
            ("ms", late),
            ("", overwrite2),
            ("u", overwrite3),
            ("", overwrite_mem),
        ];
        for (precision, points) in after {
            let b = d.batches(&mut rng, precision, points);
            d.after_restart.extend(b);
        }
        d
    }

    /// Shuffled bodies of at most 500 lines; records the points in the model.
    fn batches(
        &mut self,
        rng: &mut Rng,
        precision: &'static str,
        mut points: Vec<Point>,
    ) -> Vec<Batch> {
        for i in (1..points.len()).rev() {
            points.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let unit = match precision {
            "s" => SEC_NS,
            "ms" => 1_000_000,
            "u" => 1_000,
            _ => 1,
        };
        let mut out = Vec::new();
        for chunk in points.chunks(500) {
            let mut body = String::new();
            for p in chunk {
                assert_eq!(
                    p.time % unit,
                    0,
                    "invariant: times fit their batch's precision"
                );
                let style = rng.below(15);
                body.push_str(&lp_line(
                    p.measurement,
                    &p.tags,
                    &p.fields,
                    Some(p.time / unit),
                    style,
                ));
                body.push('\n');
                let key = (p.measurement.to_string(), p.tags.clone(), p.time);
                let stored = self.model.entry(key).or_default();
                stored.extend(p.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            out.push(Batch { precision, body });
        }
        out
    }

    /// How many points of `measurement` carry each field (overwrites merge into the points
    /// they rewrite).
    pub fn field_counts(&self, measurement: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for ((m, _, _), fields) in &self.model {
            if m == measurement {
                for k in fields.keys() {
                    *counts.entry(k.clone()).or_default() += 1;
                }
            }
        }
        counts
    }
}

fn base_points(rng: &mut Rng) -> Vec<Point> {
    let mut points = Vec::new();
    for (hi, (host, region)) in CPU_HOSTS.iter().enumerate() {
        let mut tags = Tags::new();
        tags.insert("host".into(), host.to_string());
        if let Some(r) = region {
            tags.insert("region".into(), r.to_string());
        }
        for i in 0..STEPS {
            if (*host == "host_3" && (120..180).contains(&i)) || (*host == "host_4" && i >= 540) {
                continue;
            }
            let mut f = Fields::new();
            if !rng.chance(3) {
                f.insert("usage_user".into(), cents(rng, 0, 10_000));
            }
            if rng.chance(90) {
                f.insert("usage_system".into(), cents(rng, 0, 3_000));
            }
            if rng.chance(95) {
                // A counter; host_2's restarts from zero at step 400.
                let step = if *host == "host_2" && i >= 400 {
                    i - 400
                } else {
                    i
                };
                let n = hi as i64 * 100_000 + step * 3 + rng.range(0, 3);
                f.insert("n".into(), Field::Int(n));
            }
            if rng.chance(80) {
                f.insert("ok".into(), Field::Bool(rng.chance(85)));
            }
            if i % 6 == 0 {
                f.insert("state".into(), Field::Str(rng.pick(&STATES).to_string()));
            }
            if f.is_empty() {
                f.insert("usage_user".into(), cents(rng, 0, 10_000));
            }
            points.push(Point {
                measurement: "cpu",
                tags: tags.clone(),
                fields: f,
                time: T0_NS + i * STEP_NS,
            });
        }
    }
    for i in 0..STEPS / 3 {
        let used = 4_000_000_000 + rng.range(-500_000_000, 500_000_000);
        let free = 8_000_000_000 - used - rng.range(0, 100_000_000);
        let mut f = Fields::new();
        f.insert("used".into(), Field::Int(used));
        f.insert("free".into(), Field::Int(free));
        if rng.chance(90) {
            let pct = (used as f64 / (used + free) as f64 * 100_000.0).round() / 1000.0;
            f.insert("pct".into(), Field::Float(pct));
        }
        points.push(Point {
            measurement: "mem",
            tags: Tags::new(),
            fields: f,
            time: T0_NS + i * 3 * STEP_NS,
        });
    }
    let mut host_1 = Tags::new();
    host_1.insert("host".into(), "host_1".into());
    for i in 0..60 {
        let used = 2_000_000_000 + rng.range(0, 100_000_000);
        let mut f = Fields::new();
        f.insert("used".into(), Field::Int(used));
        f.insert("free".into(), Field::Int(6_000_000_000 - used));
        points.push(Point {
            measurement: "mem",
            tags: host_1.clone(),
            fields: f,
            time: T0_NS + (30 + i) * 60 * SEC_NS,
        });
    }
    points
}

/// `n` rewrites of distinct random points of `of`, carrying new values of `fields` only.
fn overwrites(rng: &mut Rng, of: &[&Point], n: usize, fields: &[&str]) -> Vec<Point> {
    let mut picked = std::collections::BTreeSet::new();
    while picked.len() < n.min(of.len()) {
        picked.insert(rng.below(of.len() as u64) as usize);
    }
    picked
        .into_iter()
        .map(|i| {
            let p = of[i];
            let mut f = Fields::new();
            for name in fields {
                let v = match *name {
                    "usage_user" => cents(rng, 0, 10_000),
                    "usage_system" => cents(rng, 0, 3_000),
                    "ok" => Field::Bool(rng.chance(50)),
                    "state" => Field::Str(rng.pick(&STATES).to_string()),
                    "used" => Field::Int(4_000_000_000 + rng.range(0, 1_000_000)),
                    other => panic!("no overwrite rule for {other}"),
                };
                f.insert(name.to_string(), v);
            }
            Point {
                measurement: p.measurement,
                tags: p.tags.clone(),
                fields: f,
                time: p.time,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The statements
// ---------------------------------------------------------------------------------------

/// How a case is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `GET /query?db=…&q=…&<params>` (Grafana's default, the Python client's).
    Get,
    /// `POST /query?db=…&q=…&<params>` with an empty body (the `influx` CLI).
    PostUrl,
    /// `POST /query?db=…&<params>` with the form body `q=…` (Grafana's POST mode).
    PostForm,
}

/// One request: `q` (one or more `;`-separated statements) with `params` (raw query string,
/// e.g. `epoch=ms&chunked=true`). `db=oracle` is added unless `params` has a `db`.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub category: &'static str,
    pub via: Via,
    pub params: &'static str,
    pub q: &'static str,
}

impl Case {
    /// The key of the case in `oracle_answers.json`: the statement, followed by
    /// `  [POST-URL epoch=ms]` when it is not a plain GET.
    pub fn key(&self) -> String {
        let via = match self.via {
            Via::Get => "",
            Via::PostUrl => "POST-URL ",
            Via::PostForm => "POST-FORM ",
        };
        if via.is_empty() && self.params.is_empty() {
            self.q.to_string()
        } else {
            format!("{}  [{via}{}]", self.q, self.params).replace(" ]", "]")
        }
    }

    fn chunked(&self) -> bool {
        form_urlencoded::parse(self.params.as_bytes()).any(|(k, v)| k == "chunked" && v == "true")
    }

    /// Sends the case to the server at `base` (`http://host:port`).
    pub fn run(&self, client: &reqwest::blocking::Client, base: &str) -> Answer {
        // `accept=csv` is not sent: it asks for `Accept: application/csv` (the answer is
        // then compared as text).
        let mut given: Vec<(String, String)> = form_urlencoded::parse(self.params.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let csv = given.iter().any(|(k, v)| k == "accept" && v == "csv");
        given.retain(|(k, _)| k != "accept");
        let mut params: Vec<(&str, &str)> = Vec::new();
        if !given.iter().any(|(k, _)| k == "db") {
            params.push(("db", DB));
        }
        if self.via != Via::PostForm {
            params.push(("q", self.q));
        }
        params.extend(given.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let url = format!("{base}/query?{}", encode_params(&params));
        let mut rb = match self.via {
            Via::Get => client.get(url),
            Via::PostUrl => client.post(url),
            Via::PostForm => client
                .post(url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(encode_params(&[("q", self.q)])),
        };
        if csv {
            rb = rb.header("Accept", "application/csv");
        }
        match rb.send() {
            Ok(r) => Answer::from_response(r, self.chunked()),
            Err(e) => Answer {
                status: 0,
                content_type: String::new(),
                body: Value::String(format!("request failed: {e}")),
            },
        }
    }
}

const fn get(category: &'static str, q: &'static str) -> Case {
    Case {
        category,
        via: Via::Get,
        params: "",
        q,
    }
}

const fn with(category: &'static str, params: &'static str, q: &'static str) -> Case {
    Case {
        category,
        via: Via::Get,
        params,
        q,
    }
}

/// Grafana's InfluxQL data source: GET with `epoch=ms`.
const fn grafana(q: &'static str) -> Case {
    Case {
        category: "grafana",
        via: Via::Get,
        params: "epoch=ms",
        q,
    }
}

/// Grafana's data source with "HTTP Method: POST": the statement in a form body.
const fn grafana_post(q: &'static str) -> Case {
    Case {
        category: "grafana",
        via: Via::PostForm,
        params: "epoch=ms",
        q,
    }
}

/// The `influx` CLI (1.6): `POST /query?chunked=true&db=…&epoch=ns&q=…` (no `epoch` after
/// `precision rfc3339`).
const fn cli(params: &'static str, q: &'static str) -> Case {
    Case {
        category: "cli",
        via: Via::PostUrl,
        params,
        q,
    }
}

/// The InfluxQL cases, by category. Times: the data covers 2024-01-01T00:00:00Z (1704067200 s)
/// to 02:00:00Z; `now()` is the machine's clock, so relative ranges are either far larger
/// than the data's age or miss it entirely.
#[rustfmt::skip]
pub const CASES: &[Case] = &[
    // ----- SHOW: metadata -----
    get("show", "SHOW DATABASES"),
    with("show", "db=", "SHOW DATABASES"),
    get("show", "SHOW MEASUREMENTS"),
    get("show", "SHOW MEASUREMENTS LIMIT 100"),
    get("show", "SHOW MEASUREMENTS LIMIT 1 OFFSET 1"),
    get("show", "SHOW MEASUREMENTS WITH MEASUREMENT =~ /c.*/"),
    get("show", "SHOW MEASUREMENTS WITH MEASUREMENT = \"mem\""),
    get("show", "SHOW MEASUREMENTS WHERE \"host\" = 'host_4'"),
    get("show", "SHOW MEASUREMENTS WHERE \"host\" = 'host_1'"),
    // Per measurement, over the values its series carry (a measurement without the key
    // matches neither `=` nor `!=`).
    get("show", "SHOW MEASUREMENTS WHERE host != 'host_1'"),
    get("show", "SHOW MEASUREMENTS WHERE host != 'nobody'"),
    get("show", "SHOW MEASUREMENTS WHERE host = ''"),
    get("show", "SHOW MEASUREMENTS WHERE region !~ /west/ OR host =~ /4/"),
    get("show", "SHOW MEASUREMENTS WHERE host =~ /.*/ AND region != 'x'"),
    get("show", "SHOW MEASUREMENTS WHERE time > 0"),
    get("show", "SHOW MEASUREMENTS WHERE n > 0"),
    get("show", "SHOW SERIES WHERE host > 'host_1'"),
    get("show", "SHOW TAG VALUES WITH KEY = host WHERE region < 'x'"),
    with("show", "db=", "SHOW MEASUREMENTS ON \"oracle\""),
    get("show", "SHOW TAG KEYS"),
    get("show", "SHOW TAG KEYS FROM \"cpu\""),
    get("show", "SHOW TAG KEYS FROM \"mem\""),
    with("show", "db=", "SHOW TAG KEYS ON oracle FROM cpu"),
    get("show", "SHOW TAG VALUES FROM \"cpu\" WITH KEY = \"host\""),
    get("show", "SHOW TAG VALUES WITH KEY = \"host\""),
    get("show", "SHOW TAG VALUES WITH KEY IN (\"host\",\"region\")"),
    get("show", "SHOW TAG VALUES FROM cpu WITH KEY =~ /h.*/"),
    get("show", "SHOW TAG VALUES FROM cpu WITH KEY != \"host\""),
    get("show", "SHOW TAG VALUES FROM cpu WITH KEY = \"host\" WHERE \"region\" = 'us-east-1'"),
    get("show", "SHOW TAG VALUES FROM cpu WITH KEY = \"region\""),
    get("show", "SHOW TAG VALUES FROM cpu WITH KEY = \"host\" LIMIT 2 OFFSET 1"),
    get("show", "SHOW TAG VALUES FROM cpu WITH KEY = \"nope\""),
    get("show", "SHOW TAG VALUES FROM nope WITH KEY = \"host\""),
    get("show", "SHOW TAG VALUES FROM cpu WITH KEY = host WHERE time > '2024-01-01T01:40:00Z'"),
    with("show", "db=", "SHOW TAG VALUES ON oracle FROM cpu WITH KEY = host"),
    get("show", "SHOW FIELD KEYS"),
    get("show", "SHOW FIELD KEYS FROM cpu"),
    get("show", "SHOW FIELD KEYS FROM \"mem\""),
    get("show", "SHOW FIELD KEYS FROM nope"),
    with("show", "db=", "SHOW FIELD KEYS ON oracle FROM cpu"),
    get("show", "SHOW SERIES"),
    get("show", "SHOW SERIES FROM cpu"),
    get("show", "SHOW SERIES FROM cpu WHERE host='host_1'"),
    get("show", "SHOW SERIES WHERE region =~ /^us/"),
    get("show", "SHOW SERIES FROM mem"),
    get("show", "SHOW SERIES LIMIT 2 OFFSET 1"),
    get("show", "SHOW SERIES FROM cpu WHERE region = ''"),
    get("show", "SHOW SERIES FROM cpu WHERE time > '2024-01-01T01:40:00Z'"),
    get("show", "SHOW RETENTION POLICIES ON oracle"),
    get("show", "SHOW RETENTION POLICIES"),
    get("show", "SHOW MEASUREMENT EXACT CARDINALITY"),
    get("show", "SHOW SERIES EXACT CARDINALITY"),
    get("show", "SHOW SERIES EXACT CARDINALITY FROM cpu"),
    get("show", "SHOW TAG VALUES EXACT CARDINALITY WITH KEY = \"host\""),
    get("show", "SHOW TAG VALUES EXACT CARDINALITY FROM cpu WITH KEY = \"region\""),
    get("show", "SHOW TAG KEY EXACT CARDINALITY"),
    get("show", "SHOW FIELD KEY EXACT CARDINALITY"),
    get("show", "SHOW MEASUREMENT CARDINALITY"),
    get("show", "SHOW SERIES CARDINALITY"),
    // CSV (`Accept: application/csv`), compared as text: tags without their empty values,
    // escaped as line protocol; floats with every digit.
    with("csv", "accept=csv", "SELECT max(usage_user) FROM cpu GROUP BY *"),
    with("csv", "accept=csv&epoch=s", "SELECT mean(n) * 1000000000000 FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:30:00Z' GROUP BY time(10m), host, region"),
    with("csv", "accept=csv", "SHOW TAG VALUES WITH KEY = host; SHOW FIELD KEYS"),
    // With FROM or WHERE the estimates are exact counts (per measurement for series);
    // a WHERE keeps the measurements with a matching series.
    get("show", "SHOW SERIES CARDINALITY FROM cpu"),
    get("show", "SHOW SERIES CARDINALITY WHERE host = 'host_1'"),
    get("show", "SHOW MEASUREMENT CARDINALITY FROM cpu, mem"),
    get("show", "SHOW MEASUREMENT EXACT CARDINALITY WHERE host = 'nobody'"),
    get("show", "SHOW FIELD KEY CARDINALITY WHERE region = 'us-east-1'"),
    get("show", "SHOW FIELD KEY EXACT CARDINALITY FROM mem"),
    // ----- Grafana's InfluxDB data source (InfluxQL mode) -----
    grafana("SHOW MEASUREMENTS LIMIT 100"),
    grafana("SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu/ LIMIT 100"),
    grafana("SHOW TAG KEYS FROM \"cpu\""),
    grafana("SHOW FIELD KEYS FROM \"cpu\""),
    grafana("SHOW TAG VALUES FROM \"cpu\" WITH KEY = \"host\""),
    grafana("SHOW TAG VALUES FROM \"cpu\" WITH KEY = \"host\" WHERE \"region\" =~ /^us-east-1$/"),
    grafana("SHOW RETENTION POLICIES on \"oracle\""),
    grafana("SHOW DATABASES"),
    grafana("SELECT mean(\"usage_user\") FROM \"cpu\" WHERE (\"host\" =~ /^host_(1|2)$/) AND time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(1m), \"host\" fill(null)"),
    grafana("SELECT mean(\"usage_user\") FROM \"autogen\".\"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(5m) fill(null)"),
    grafana("SELECT mean(\"usage_user\") FROM \"cpu\" WHERE (\"host\" = 'host_3') AND time >= 1704067200000ms and time <= 1704070800000ms GROUP BY time(2m) fill(null)"),
    grafana("SELECT max(\"used\") FROM \"mem\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(10m) fill(none)"),
    grafana("SELECT last(\"usage_user\") FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY \"host\""),
    grafana("SELECT last(\"usage_user\"), last(\"state\") FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY \"host\""),
    grafana("SELECT non_negative_derivative(mean(\"n\"), 1s) FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(5m), \"host\" fill(null)"),
    grafana("SELECT \"usage_user\" FROM \"cpu\" WHERE (\"host\" = 'host_2') AND time >= 1704070800000ms and time <= 1704071400000ms"),
    grafana("SELECT mean(\"usage_user\") AS \"user\", mean(\"usage_system\") AS \"system\" FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(10m) fill(null)"),
    grafana("SELECT mean(\"pct\") FROM \"mem\" WHERE time >= now() - 6h GROUP BY time(1m) fill(null)"),
    grafana("SELECT sum(\"n\") FROM \"cpu\" WHERE (\"region\" =~ /^(us-east-1|eu-west-1)$/) AND time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(30m), \"region\" fill(null)"),
    grafana("SELECT percentile(\"usage_user\", 95) FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(15m) fill(none)"),
    grafana("SELECT mean(\"usage_user\") FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(20m), * fill(linear)"),
    grafana("SELECT count(\"state\") FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(30m), \"state\" fill(0)"),
    grafana("SELECT mean(\"usage_user\") FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(10m) fill(null);SELECT mean(\"used\") FROM \"mem\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(10m) fill(null)"),
    grafana("SELECT mean(\"usage_user\") FROM \"cpu\" WHERE (\"host\" = 'host_1') AND time >= 1704067200000ms and time <= 1704067500000ms GROUP BY time(10s) fill(null)"),
    grafana("SELECT moving_average(mean(\"usage_user\"), 3) FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(10m) fill(null)"),
    grafana("SELECT difference(max(\"n\")) FROM \"cpu\" WHERE (\"host\" = 'host_2') AND time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(10m) fill(none)"),
    grafana("SELECT max(\"usage_user\") FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074399999ms GROUP BY time(30m), \"host\" ORDER BY time DESC"),
    grafana_post("SELECT mean(\"usage_user\") FROM \"cpu\" WHERE time >= 1704067200000ms and time <= 1704074400000ms GROUP BY time(15m) fill(null)"),
    grafana_post("SHOW TAG VALUES FROM \"cpu\" WITH KEY = \"region\""),
    // ----- the influx CLI -----
    // A failed statement, then one "not executed" a statement left, all under its id.
    cli("chunked=true&epoch=ns", "SELECT top(usage_user, 3) FROM cpu LIMIT 1; SELECT n FROM cpu LIMIT 1; SHOW SERIES; SHOW TAG KEYS"),
    get("show", "SHOW SERIES CARDINALITY WHERE host > 'host_1'"),
    cli("chunked=true&epoch=ns", "SHOW DATABASES"),
    cli("chunked=true&epoch=ns", "SHOW MEASUREMENTS"),
    cli("chunked=true&epoch=ns", "SHOW FIELD KEYS"),
    cli("chunked=true&epoch=ns", "SHOW SERIES"),
    cli("chunked=true&epoch=ns", "SELECT * FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:00:30Z'"),
    cli("chunked=true&epoch=ns", "SELECT count(*) FROM cpu"),
    cli("chunked=true&epoch=ns", "SELECT mean(usage_user) FROM cpu GROUP BY host"),
    cli("chunked=true", "SELECT * FROM mem LIMIT 3"),
    cli("chunked=true", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m)"),
    // ----- aggregates, one per statement -----
    get("aggregate", "SELECT count(usage_user) FROM cpu"),
    get("aggregate", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT sum(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT median(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT mode(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT spread(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT stddev(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT min(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT max(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT first(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT last(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT percentile(usage_user, 90) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT percentile(usage_user, 50) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT percentile(usage_user, 99.9) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("aggregate", "SELECT max(usage_user) FROM cpu"),
    get("aggregate", "SELECT min(usage_user) FROM cpu"),
    get("aggregate", "SELECT first(usage_user) FROM cpu"),
    get("aggregate", "SELECT last(usage_user) FROM cpu"),
    get("aggregate", "SELECT mean(usage_user) FROM cpu"),
    get("aggregate", "SELECT max(usage_user) FROM cpu GROUP BY host"),
    get("aggregate", "SELECT median(usage_user) FROM cpu GROUP BY host"),
    get("aggregate", "SELECT count(n) FROM cpu"),
    get("aggregate", "SELECT sum(n) FROM cpu"),
    get("aggregate", "SELECT mean(n) FROM cpu"),
    get("aggregate", "SELECT median(n) FROM cpu"),
    get("aggregate", "SELECT mode(n) FROM cpu"),
    get("aggregate", "SELECT spread(n) FROM cpu"),
    get("aggregate", "SELECT stddev(n) FROM cpu"),
    get("aggregate", "SELECT min(n), max(n) FROM cpu GROUP BY host"),
    get("aggregate", "SELECT first(n) FROM cpu GROUP BY host"),
    get("aggregate", "SELECT last(n) FROM cpu GROUP BY host"),
    get("aggregate", "SELECT percentile(n, 90) FROM cpu GROUP BY host"),
    get("aggregate", "SELECT count(ok) FROM cpu"),
    get("aggregate", "SELECT first(ok) FROM cpu"),
    get("aggregate", "SELECT last(ok) FROM cpu GROUP BY host"),
    get("aggregate", "SELECT mode(ok) FROM cpu"),
    get("aggregate", "SELECT distinct(ok) FROM cpu"),
    get("aggregate", "SELECT max(ok) FROM cpu"),
    get("aggregate", "SELECT count(state) FROM cpu"),
    get("aggregate", "SELECT first(state) FROM cpu"),
    get("aggregate", "SELECT last(state) FROM cpu GROUP BY host"),
    get("aggregate", "SELECT mode(state) FROM cpu"),
    get("aggregate", "SELECT distinct(state) FROM cpu"),
    get("aggregate", "SELECT count(distinct(state)) FROM cpu"),
    get("aggregate", "SELECT distinct(state) FROM cpu GROUP BY host"),
    get("aggregate", "SELECT max(state) FROM cpu"),
    get("aggregate", "SELECT distinct(n) FROM cpu WHERE host = 'host_1' AND time < '2024-01-01T00:01:00Z'"),
    get("aggregate", "SELECT count(distinct(usage_user)) FROM cpu"),
    get("aggregate", "SELECT sum(used) FROM mem"),
    get("aggregate", "SELECT mean(pct) FROM mem"),
    get("aggregate", "SELECT max(free) FROM mem"),
    get("aggregate", "SELECT min(used) FROM mem GROUP BY host"),
    get("aggregate", "SELECT integral(usage_user) FROM cpu WHERE host = 'host_1' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:10:00Z'"),
    // (Not GROUP BY host: InfluxDB 1.6 returns integral()'s series in a random order.)
    get("aggregate", "SELECT integral(usage_user, 1m) FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    // Over buckets: the trapezoid across a bucket's end is cut there (interpolated), the
    // area over empty buckets counts in the next point's, and empty buckets answer nothing
    // whatever the fill. One series: points of several series at one time replace each
    // other in InfluxDB's merge order, which is not defined (README deviations).
    get("aggregate", "SELECT integral(usage_user) FROM cpu WHERE host = 'host_1' AND time >= '2023-12-31T23:50:00Z' AND time < '2024-01-01T01:00:00Z' GROUP BY time(7m)"),
    get("aggregate", "SELECT integral(n, 1m) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:05:00Z' AND time < '2024-01-01T00:45:00Z' GROUP BY time(5m) fill(0)"),
    get("aggregate", "SELECT integral(usage_user) FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:30:00Z' GROUP BY time(10m) fill(null)"),
    get("aggregate", "SELECT integral(n), count(n) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:05:00Z' AND time < '2024-01-01T00:45:00Z' GROUP BY time(5m) fill(0)"),
    get("aggregate", "SELECT integral(usage_user, 1m) FROM cpu WHERE host = 'host_1' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T01:00:00Z' GROUP BY time(7m, 2m) tz('Asia/Kolkata')"),
    get("aggregate", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(10m)"),
    // ----- several aggregates in one statement -----
    get("multi_agg", "SELECT count(usage_user), mean(usage_user), max(usage_user) FROM cpu"),
    get("multi_agg", "SELECT count(usage_user), mean(usage_user), max(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("multi_agg", "SELECT min(usage_user), max(usage_user) FROM cpu GROUP BY host"),
    get("multi_agg", "SELECT max(usage_user), min(usage_system) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("multi_agg", "SELECT max(usage_user), host FROM cpu"),
    get("multi_agg", "SELECT max(usage_user), host, region FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("multi_agg", "SELECT max(usage_user), state, n FROM cpu"),
    get("multi_agg", "SELECT first(usage_user), last(usage_user) FROM cpu GROUP BY host"),
    get("multi_agg", "SELECT count(usage_user), count(usage_system), count(ok), count(state) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m)"),
    get("multi_agg", "SELECT mean(usage_user), median(usage_user), stddev(usage_user), spread(usage_user) FROM cpu GROUP BY host"),
    get("multi_agg", "SELECT sum(used), sum(free), mean(pct) FROM mem WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m)"),
    get("multi_agg", "SELECT max(usage_user) AS peak, min(usage_user) AS low FROM cpu GROUP BY host"),
    get("multi_agg", "SELECT percentile(usage_user, 90), percentile(usage_user, 10) FROM cpu GROUP BY host"),
    get("multi_agg", "SELECT count(distinct(state)), count(state) FROM cpu"),
    get("multi_agg", "SELECT mean(usage_user), mean(usage_user) FROM cpu"),
    get("multi_agg", "SELECT top(usage_user, 3), bottom(usage_user, 3) FROM cpu"),
    // ----- arithmetic -----
    get("math", "SELECT mean(usage_user) * 100 FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'"),
    get("math", "SELECT usage_user + usage_system FROM cpu WHERE host = 'host_1' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:02:00Z'"),
    get("math", "SELECT max(usage_user) - min(usage_user) FROM cpu GROUP BY host"),
    get("math", "SELECT n * 2, n / 2, n % 7, n - 1000 FROM cpu WHERE host = 'host_2' LIMIT 5"),
    get("math", "SELECT usage_user / 0 FROM cpu LIMIT 3"),
    get("math", "SELECT n / 0 FROM cpu WHERE n > 0 LIMIT 3"),
    get("math", "SELECT (usage_user + usage_system) / 2 AS avg FROM cpu WHERE host = 'host_3' LIMIT 5"),
    get("math", "SELECT usage_user * n FROM cpu WHERE host = 'host_2' LIMIT 5"),
    get("math", "SELECT sum(n) / count(n) FROM cpu GROUP BY host"),
    get("math", "SELECT mean(usage_user) + mean(usage_system) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m)"),
    get("math", "SELECT used / (used + free) * 100 FROM mem LIMIT 5"),
    get("math", "SELECT 2 * max(n) FROM cpu"),
    get("math", "SELECT -usage_user FROM cpu WHERE host = 'host_2' LIMIT 2"),
    get("math", "SELECT usage_user + state FROM cpu WHERE state = 'busy' LIMIT 2"),
    get("math", "SELECT n & 255, n | 1, n ^ 3 FROM cpu WHERE host = 'host_2' LIMIT 3"),
    get("math", "SELECT usage_user - 100 FROM cpu WHERE usage_user > 99.5"),
    get("math", "SELECT count(usage_user) * 1.5 FROM cpu"),
    get("math", "SELECT mean(n) / 1000 FROM cpu GROUP BY host"),
    get("math", "SELECT free - used FROM mem WHERE time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T00:31:30Z'"),
    // ----- raw selects -----
    get("raw", "SELECT * FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:01:00Z'"),
    get("raw", "SELECT * FROM cpu LIMIT 8"),
    get("raw", "SELECT * FROM mem WHERE time >= '2024-01-01T00:29:00Z' AND time < '2024-01-01T00:32:00Z'"),
    get("raw", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 10"),
    get("raw", "SELECT usage_user, host FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:01:00Z'"),
    get("raw", "SELECT usage_user, host, region FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:00:30Z'"),
    get("raw", "SELECT \"usage_user\"::field, \"host\"::tag FROM cpu WHERE time < '2024-01-01T00:00:20Z'"),
    get("raw", "SELECT \"host\"::field FROM cpu LIMIT 3"),
    get("raw", "SELECT \"state\"::tag FROM cpu LIMIT 3"),
    get("raw", "SELECT *::field FROM cpu LIMIT 8"),
    get("raw", "SELECT *::tag FROM cpu LIMIT 5"),
    get("raw", "SELECT *::tag, usage_user FROM cpu WHERE time < '2024-01-01T00:00:20Z'"),
    get("raw", "SELECT n::float, usage_user::integer FROM cpu WHERE time < '2024-01-01T00:00:20Z'"),
    get("raw", "SELECT n::string FROM cpu LIMIT 2"),
    get("raw", "SELECT state FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:05:00Z'"),
    get("raw", "SELECT ok, state FROM cpu WHERE host = 'host_4' LIMIT 8"),
    get("raw", "SELECT host FROM cpu LIMIT 3"),
    get("raw", "SELECT host, region FROM cpu LIMIT 3"),
    get("raw", "SELECT usage_user FROM cpu WHERE host = 'host_1' AND time = '2024-01-01T00:10:00Z'"),
    get("raw", "SELECT * FROM mem WHERE time >= '2024-01-01T00:15:00Z' AND time < '2024-01-01T00:15:02Z'"),
    get("raw", "SELECT /usage/ FROM cpu WHERE time < '2024-01-01T00:00:20Z'"),
    get("raw", "SELECT * FROM cpu GROUP BY host LIMIT 2"),
    get("raw", "SELECT * FROM cpu GROUP BY * LIMIT 1"),
    // Names made unique over the expanded columns; GROUP BY a regex expands wildcards to
    // fields only; a wildcard or regex that matches nothing answers nothing.
    get("raw", "SELECT *, usage_user FROM cpu LIMIT 2"),
    get("raw", "SELECT usage_user, *, usage_user FROM cpu LIMIT 2"),
    get("raw", "SELECT * FROM cpu WHERE host = 'host_1' GROUP BY /^nothing$/ LIMIT 2"),
    get("raw", "SELECT /usage|host/ FROM cpu GROUP BY /os/ LIMIT 2"),
    get("raw", "SELECT /^zzz/ FROM cpu"),
    // A cast to the other kind names no column: null, beside the field itself.
    get("raw", "SELECT usage_user::tag, usage_user FROM cpu WHERE host = 'host_1' LIMIT 3"),
    get("raw", "SELECT host::field, usage_user, host FROM cpu WHERE host = 'host_1' LIMIT 3"),
    get("aggregate", "SELECT max(usage_user), host::field FROM cpu GROUP BY host"),
    get("raw", "SELECT *::tag FROM cpu GROUP BY *"),
    get("aggregate", "SELECT max(/^zzz/) FROM cpu"),
    get("raw", "SELECT usage_user FROM mem GROUP BY host LIMIT 2"),
    get("raw", "SELECT used FROM mem GROUP BY host LIMIT 2"),
    get("raw", "SELECT \"usage_user\" AS u FROM cpu WHERE host = 'host_2' LIMIT 2"),
    get("raw", "SELECT usage_user, usage_user FROM cpu WHERE host = 'host_2' LIMIT 2"),
    get("raw", "SELECT time, usage_user FROM cpu WHERE host = 'host_2' LIMIT 2"),
    get("raw", "SELECT usage_user AS time FROM cpu WHERE host = 'host_2' LIMIT 2"),
    get("raw", "SELECT * FROM \"cpu\" WHERE host = 'host_1' ORDER BY time DESC LIMIT 3"),
    get("raw", "SELECT * FROM cpu WHERE time >= '2024-01-01T01:06:30Z' AND time < '2024-01-01T01:07:00Z' AND host = 'host_2'"),
    // ----- WHERE -----
    get("where", "SELECT count(usage_user) FROM cpu WHERE host = 'host_1'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host != 'host_1'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host <> 'host_1'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host =~ /^host_[12]$/"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host !~ /1/"),
    // Values of different kinds never compare, `!=` included; a name the measurement lacks
    // is an empty tag to strings and null to numbers.
    get("where", "SELECT count(usage_user) FROM cpu WHERE nope != 0"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE nope !~ /x/"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host != 0"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE state != 1 OR ok != 'x'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE usage_user != true"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host = 'host_1' AND nope != 0"),
    // Two names the measurement lacks: unequal nulls.
    get("where", "SELECT count(usage_user) FROM cpu WHERE nope = nope2"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE nope != nope2 AND host = 'host_2'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE region = 'us-east-1' GROUP BY host"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE region = '' GROUP BY host"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE region != '' GROUP BY host"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE region =~ /.*/ GROUP BY host"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE region !~ /./ GROUP BY host"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host = \"host_1\""),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host = 'host_1' AND host = 'host_2'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host = 'host_1' OR host = 'host_2'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host > 'host_2'"),
    get("where", "SELECT usage_user, host FROM cpu WHERE usage_user > 99.5"),
    get("where", "SELECT usage_user, host FROM cpu WHERE usage_user < 0.3"),
    get("where", "SELECT n, host FROM cpu WHERE n = 1005 OR n = 100010"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE usage_user >= 50 AND usage_user <= 50.5"),
    get("where", "SELECT count(state) FROM cpu WHERE state = 'down' GROUP BY host"),
    get("where", "SELECT count(state) FROM cpu WHERE state != 'idle'"),
    get("where", "SELECT count(state) FROM cpu WHERE state =~ /^b/"),
    get("where", "SELECT count(ok) FROM cpu WHERE ok = true"),
    get("where", "SELECT count(ok) FROM cpu WHERE ok = false GROUP BY host"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE ok = false"),
    get("where", "SELECT usage_user, host FROM cpu WHERE (host = 'host_1' OR host = 'host_2') AND usage_user > 99"),
    get("where", "SELECT usage_user, host FROM cpu WHERE host = 'host_1' OR usage_user > 99.8"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host = 'host_1' AND (usage_user > 90 OR usage_user < 5)"),
    get("where", "SELECT usage_user, usage_system FROM cpu WHERE usage_user < usage_system AND host = 'host_1' LIMIT 5"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:30:00Z' AND time <= '2024-01-01T00:30:30Z'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time >= 1704069000s AND time < 1704069030s"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time >= 1704069000000ms AND time < 1704069030000ms"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time >= 1704069000000000000 AND time < 1704069030000000000"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time >= 1704069000000000u AND time < 1704069030000000u"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time > '2024-01-01 00:30:00' AND time < '2024-01-01 00:31:00'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T01:30:00+01:00' AND time < '2024-01-01T01:31:00+01:00'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' + 30m AND time < '2024-01-01T00:00:00Z' + 31m"),
    // (An aggregate's time would be the lower bound, now() - 3650d: a selector's is the point's.)
    get("where", "SELECT max(usage_user) FROM cpu WHERE time > now() - 3650d"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time < now() - 3650d"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time > now()"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time = '2024-01-01T00:10:00Z'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time >= 1704069000s AND time < 1704069000s"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE time < '2024-01-01T00:01:00Z' OR time > '2024-01-01T01:59:00Z'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE '2024-01-01T01:59:00Z' < time"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE host = 'host_1' AND time >= '2024-01-01T01:00:00Z'"),
    get("where", "SELECT count(used) FROM mem WHERE host = ''"),
    get("where", "SELECT count(used) FROM mem WHERE host = 'host_1'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE \"host\" = 'host_1' AND \"region\" = 'us-east-1'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE nope = 'x'"),
    get("where", "SELECT count(usage_user) FROM cpu WHERE nope != 'x'"),
    // ----- GROUP BY -----
    get("group_by", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(10m)"),
    get("group_by", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1h, 15m)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(10m, -5m)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(7m)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:05:00Z' AND time < '2024-01-01T01:00:00Z' GROUP BY time(1h)"),
    get("group_by", "SELECT mean(usage_user) FROM cpu GROUP BY host"),
    get("group_by", "SELECT mean(usage_user) FROM cpu GROUP BY *"),
    get("group_by", "SELECT mean(usage_user) FROM cpu GROUP BY /h.*/"),
    get("group_by", "SELECT mean(usage_user) FROM cpu GROUP BY host, region"),
    get("group_by", "SELECT mean(usage_user) FROM cpu GROUP BY region"),
    get("group_by", "SELECT mean(usage_user) FROM cpu GROUP BY region, host"),
    get("group_by", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m), host"),
    get("group_by", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY host, time(30m)"),
    get("group_by", "SELECT mean(usage_user) FROM cpu WHERE time < '2024-01-01T02:00:00Z' GROUP BY time(1h)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' GROUP BY time(1h) fill(none)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1h) fill(none)"),
    get("group_by", "SELECT count(used) FROM mem GROUP BY host"),
    get("group_by", "SELECT mean(used) FROM mem WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m), host"),
    get("group_by", "SELECT count(usage_user) FROM cpu GROUP BY dc"),
    get("group_by", "SELECT count(usage_user) FROM cpu GROUP BY host, dc"),
    get("group_by", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_1' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:10:00Z' GROUP BY time(1m)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(10m) ORDER BY time DESC"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(5m) LIMIT 3 OFFSET 2"),
    get("group_by", "SELECT count(used) FROM mem WHERE time >= '2024-01-01T00:15:00Z' AND time < '2024-01-01T00:15:03Z' GROUP BY time(500ms)"),
    get("group_by", "SELECT max(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m)"),
    get("group_by", "SELECT first(usage_user), last(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m)"),
    get("group_by", "SELECT max(usage_user), host FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time <= '2024-01-01T02:00:00Z' GROUP BY time(1h)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time > '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1h)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1d)"),
    get("group_by", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1w)"),
    // More than 10000 rows in one series (InfluxDB's default chunk size).
    with("group_by", "epoch=s", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:46:45Z' GROUP BY time(1s)"),
    // ----- fill -----
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(null)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(none)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(previous)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(linear)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(0)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(-1.5)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(100)"),
    get("fill", "SELECT count(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(null)"),
    get("fill", "SELECT count(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(none)"),
    get("fill", "SELECT count(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(7)"),
    get("fill", "SELECT count(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(previous)"),
    get("fill", "SELECT mean(n) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(0)"),
    get("fill", "SELECT max(n) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(linear)"),
    // Gaps of two and three buckets: an integer interpolated lands on a whole number or
    // just below it as InfluxDB computes it (the slope over bucket numbers).
    get("fill", "SELECT first(n), last(n), mean(usage_user) FROM cpu WHERE host = 'host_1' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T01:30:00Z' GROUP BY time(3s) fill(linear)"),
    get("fill", "SELECT max(n) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T01:30:00Z' GROUP BY time(4s), host fill(linear) ORDER BY time DESC"),
    get("fill", "SELECT sum(n) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(0)"),
    get("fill", "SELECT max(n) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(1.5)"),
    get("fill", "SELECT last(state) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(previous)"),
    get("fill", "SELECT last(ok) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(previous)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T01:00:00Z' AND time < '2024-01-01T02:30:00Z' GROUP BY time(15m), host fill(previous)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T01:00:00Z' GROUP BY time(5m), host fill(linear)"),
    get("fill", "SELECT count(usage_user), mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(0)"),
    get("fill", "SELECT mean(used) FROM mem WHERE host = 'host_1' AND time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T00:35:00Z' GROUP BY time(30s)"),
    get("fill", "SELECT mean(used) FROM mem WHERE host = 'host_1' AND time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T00:35:00Z' GROUP BY time(30s) fill(linear)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE time >= '2023-01-01T00:00:00Z' AND time < '2023-01-01T01:00:00Z' GROUP BY time(10m) fill(0)"),
    get("fill", "SELECT mean(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(nope)"),
    // A number fills strings with "" and booleans with false; a selector's other columns
    // are filled too (their nulls in every row); previous goes in the statement's order.
    get("fill", "SELECT last(state), max(usage_user) FROM cpu WHERE host = 'host_1' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:20:00Z' GROUP BY time(10m) fill(1.5)"),
    get("fill", "SELECT last(ok) FROM cpu WHERE host = 'host_1' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:20:00Z' GROUP BY time(10m) fill(7)"),
    get("fill", "SELECT first(n), usage_user, host FROM cpu WHERE host = 'host_1' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:20:00Z' GROUP BY time(10m) fill(1.5)"),
    get("fill", "SELECT first(n), usage_user, host FROM cpu WHERE host = 'host_1' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:20:00Z' GROUP BY time(10m) fill(previous) ORDER BY time DESC"),
    get("fill", "SELECT count(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(5m) fill(previous) ORDER BY time DESC"),
    get("fill", "SELECT max(usage_user), state FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:30:00Z' GROUP BY time(1m) fill(previous)"),
    get("fill", "SELECT max(usage_user), state FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:30:00Z' GROUP BY time(1m) fill(9)"),
    // linear fills empty buckets only (a stddev of one point stays null); a count of a
    // field the measurement lacks stays null; a fraction fills an integer column truncated.
    get("fill", "SELECT stddev(usage_user) FROM cpu WHERE host = 'host_1' AND time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:02:00Z' GROUP BY time(15s) fill(linear)"),
    get("fill", "SELECT stddev(usage_user) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:19:30Z' AND time < '2024-01-01T00:22:00Z' GROUP BY time(15s) fill(previous)"),
    get("fill", "SELECT count(*) FROM cpu, mem WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:30:00Z' GROUP BY time(10m)"),
    get("fill", "SELECT first(usage_user), n FROM cpu WHERE host = 'host_1' AND time >= '2023-12-31T23:40:00Z' AND time < '2024-01-01T00:20:00Z' GROUP BY time(10m) fill(1.5)"),
    // elapsed() reads strings too; the numeric transformations refuse them.
    get("transform", "SELECT elapsed(state, 1s) FROM cpu WHERE host = 'host_1' LIMIT 4"),
    get("errors", "SELECT difference(state) FROM cpu"),
    // ----- ORDER BY, LIMIT, OFFSET, SLIMIT, SOFFSET, wildcards -----
    get("order_limit", "SELECT usage_user FROM cpu WHERE host = 'host_1' ORDER BY time DESC LIMIT 5"),
    get("order_limit", "SELECT usage_user FROM cpu GROUP BY host ORDER BY time DESC LIMIT 1"),
    get("order_limit", "SELECT * FROM cpu GROUP BY host ORDER BY time DESC LIMIT 1"),
    get("order_limit", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 3 OFFSET 5"),
    get("order_limit", "SELECT usage_user FROM cpu WHERE host = 'host_1' ORDER BY time DESC LIMIT 3 OFFSET 5"),
    get("order_limit", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m), host SLIMIT 2"),
    get("order_limit", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m), host SLIMIT 2 SOFFSET 1"),
    get("order_limit", "SELECT usage_user FROM cpu GROUP BY host SLIMIT 1 SOFFSET 3 LIMIT 2"),
    get("order_limit", "SELECT last(*) FROM cpu"),
    get("order_limit", "SELECT last(*) FROM cpu GROUP BY host"),
    get("order_limit", "SELECT first(*) FROM mem"),
    get("order_limit", "SELECT mean(*) FROM cpu"),
    get("order_limit", "SELECT max(*) FROM cpu GROUP BY host"),
    get("order_limit", "SELECT count(*) FROM cpu"),
    get("order_limit", "SELECT count(*) FROM mem WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1h)"),
    get("order_limit", "SELECT mean(/usage/) FROM cpu"),
    get("order_limit", "SELECT last(*) FROM /.*/"),
    get("order_limit", "SELECT usage_user FROM cpu WHERE host = 'host_3' ORDER BY time ASC LIMIT 2"),
    get("order_limit", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m) ORDER BY time DESC"),
    get("order_limit", "SELECT usage_user FROM cpu LIMIT 2 OFFSET 100000"),
    get("order_limit", "SELECT usage_user FROM cpu LIMIT 0"),
    get("order_limit", "SELECT count(usage_user) FROM cpu GROUP BY host LIMIT 1"),
    get("order_limit", "SELECT count(usage_user) FROM cpu GROUP BY host SLIMIT 2"),
    get("order_limit", "SELECT usage_user FROM cpu ORDER BY host"),
    // ----- FROM -----
    get("from", "SELECT count(usage_user) FROM /c.*/"),
    get("from", "SELECT count(*) FROM /.*/"),
    get("from", "SELECT count(used) FROM cpu, mem"),
    get("from", "SELECT * FROM cpu, mem LIMIT 4"),
    // GROUP BY * and /regex/ over several measurements: every series gets the union of
    // their tag keys ("" where it lacks one).
    get("from", "SELECT max(usage_user), max(used) FROM cpu, mem GROUP BY *"),
    get("from", "SELECT count(used) FROM cpu, mem WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:30:00Z' GROUP BY time(10m), /o/"),
    get("from", "SELECT count(usage_user) FROM oracle..cpu"),
    with("from", "db=", "SELECT count(usage_user) FROM oracle..cpu"),
    get("from", "SELECT count(usage_user) FROM oracle.\"autogen\".cpu"),
    get("from", "SELECT count(usage_user) FROM \"autogen\".\"cpu\""),
    get("from", "SELECT count(usage_user) FROM nosuchdb..cpu"),
    get("from", "SELECT count(usage_user) FROM oracle.nosuchrp.cpu"),
    get("from", "SELECT count(usage_user) FROM \"CPU\""),
    get("from", "SELECT last(used) FROM /^m/"),
    get("from", "SELECT * FROM /^nomatch/"),
    // ----- time zones -----
    get("tz", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1d) tz('Europe/Paris')"),
    get("tz", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1h) tz('Europe/Paris')"),
    get("tz", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 3 tz('Europe/Paris')"),
    get("tz", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1d) tz('America/New_York')"),
    get("tz", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1h) tz('UTC')"),
    get("tz", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1h) tz('Asia/Kolkata')"),
    get("tz", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1d) tz('Australia/Sydney')"),
    get("tz", "SELECT max(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' tz('Europe/Paris')"),
    get("tz", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' tz('Europe/Paris')"),
    with("tz", "epoch=ms", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1d) tz('Europe/Paris')"),
    get("tz", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00+01:00' AND time < '2024-01-01T03:00:00+01:00' GROUP BY time(1h) tz('Europe/Paris')"),
    get("tz", "SELECT usage_user FROM cpu LIMIT 1 tz('Nope/Zone')"),
    // ----- empty answers, unknown names -----
    get("empty", "SELECT * FROM cpu WHERE time > '2030-01-01T00:00:00Z'"),
    get("empty", "SELECT mean(usage_user) FROM cpu WHERE time > '2030-01-01T00:00:00Z'"),
    get("empty", "SELECT count(usage_user) FROM cpu WHERE time > '2030-01-01T00:00:00Z'"),
    get("empty", "SELECT mean(usage_user) FROM cpu WHERE time >= '2023-01-01T00:00:00Z' AND time < '2023-01-01T01:00:00Z' GROUP BY time(10m)"),
    get("empty", "SELECT count(usage_user) FROM cpu WHERE time >= '2023-01-01T00:00:00Z' AND time < '2023-01-01T01:00:00Z' GROUP BY time(10m)"),
    get("empty", "SELECT * FROM nope"),
    get("empty", "SELECT nope FROM cpu"),
    get("empty", "SELECT nope, usage_user FROM cpu WHERE host = 'host_2' LIMIT 2"),
    get("empty", "SELECT mean(nope) FROM cpu"),
    get("empty", "SELECT count(nope) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m)"),
    get("empty", "SELECT usage_user FROM cpu WHERE host = 'nope'"),
    get("empty", "SELECT count(usage_user) FROM cpu WHERE host = 'nope' GROUP BY host"),
    get("empty", "SHOW TAG VALUES FROM cpu WITH KEY = \"host\" WHERE host = 'nope'"),
    get("empty", "SHOW SERIES FROM nope"),
    get("empty", "SELECT count(usage_user) FROM cpu WHERE host = 'host_4' AND time > '2024-01-01T01:45:00Z'"),
    get("empty", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' AND host = 'host_4' GROUP BY time(30m)"),
    with("empty", "db=nosuchdb", "SELECT * FROM cpu"),
    with("empty", "db=nosuchdb", "SHOW MEASUREMENTS"),
    with("empty", "db=nosuchdb", "SHOW TAG KEYS"),
    with("empty", "db=nosuchdb", "SHOW RETENTION POLICIES"),
    with("empty", "db=", "SELECT * FROM cpu"),
    with("empty", "db=", "SHOW MEASUREMENTS"),
    // ----- epoch= -----
    with("epoch", "epoch=ns", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("epoch", "epoch=n", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("epoch", "epoch=u", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("epoch", "epoch=ms", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("epoch", "epoch=s", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("epoch", "epoch=m", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("epoch", "epoch=h", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("epoch", "epoch=s", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m)"),
    with("epoch", "epoch=s", "SELECT * FROM mem WHERE time >= '2024-01-01T00:15:00Z' AND time < '2024-01-01T00:15:02Z'"),
    with("epoch", "epoch=ms", "SELECT * FROM mem WHERE time >= '2024-01-01T00:15:00Z' AND time < '2024-01-01T00:15:02Z'"),
    with("epoch", "epoch=ms", "SELECT count(usage_user) FROM cpu"),
    with("epoch", "epoch=ms", "SHOW SERIES FROM mem"),
    with("epoch", "epoch=bogus", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("epoch", "epoch=", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("epoch", "epoch=rfc3339", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    // ----- chunked=true -----
    with("chunked", "chunked=true&chunk_size=2", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 5"),
    with("chunked", "chunked=true&chunk_size=2", "SELECT usage_user FROM cpu GROUP BY host LIMIT 3"),
    with("chunked", "chunked=true&chunk_size=3", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(30m), host"),
    with("chunked", "chunked=true", "SELECT count(usage_user) FROM cpu; SELECT count(used) FROM mem"),
    with("chunked", "chunked=true&chunk_size=2", "SHOW SERIES"),
    with("chunked", "chunked=true&chunk_size=2", "SHOW TAG VALUES WITH KEY IN (\"host\",\"region\")"),
    with("chunked", "chunked=true", "SELECT usage_user FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T01:00:00Z' AND time < '2024-01-01T01:10:00Z'"),
    with("chunked", "chunked=true", "SELECT count(usage_user) FROM nosuchdb..cpu"),
    // Raw selects over both hours, across series (answered whole) and of one series
    // (tests/e2e/influxql.rs checks the partition-at-a-time path on one-series data).
    with("chunked", "chunked=true&chunk_size=500", "SELECT usage_user FROM cpu WHERE host = 'host_1'"),
    with("chunked", "chunked=true&chunk_size=300", "SELECT * FROM cpu WHERE host = 'host_2' ORDER BY time DESC"),
    with("chunked", "chunked=true&chunk_size=1000", "SELECT usage_user * 2 FROM cpu WHERE time >= '2024-01-01T00:50:00Z' AND time < '2024-01-01T01:20:00Z'"),
    with("chunked", "chunked=true&chunk_size=7", "SELECT usage_user FROM cpu WHERE host = 'nobody'; SELECT used FROM mem WHERE host = 'host_1'"),
    with("chunked", "chunked=true&chunk_size=1", "SELECT * FROM nope"),
    // Grouped by time() alone under fill(null), over ranges reaching past the data (empty
    // windows before and after it): streamed a window at a time, every bucket answered.
    with("chunked", "chunked=true&chunk_size=50", "SELECT mean(usage_user), count(state) FROM cpu WHERE time >= '2023-12-31T22:00:00Z' AND time < '2024-01-01T04:00:00Z' GROUP BY time(5m)"),
    with("chunked", "chunked=true&chunk_size=7&epoch=ms", "SELECT count(ok), max(n) FROM cpu WHERE time >= '2023-12-31T23:00:00Z' AND time < '2024-01-01T03:00:00Z' GROUP BY time(10m) fill(null)"),
    with("chunked", "chunked=true&chunk_size=40", "SELECT min(usage_system), count(usage_user) FROM cpu WHERE host = 'host_4' AND time >= '2023-12-31T23:30:00Z' AND time < '2024-01-01T03:00:00Z' GROUP BY time(3m, 1m) ORDER BY time DESC"),
    with("chunked", "chunked=true&chunk_size=9", "SELECT count(state) FROM cpu WHERE host = 'host_3' AND time >= '2024-01-01T00:10:00Z' AND time < '2024-01-01T01:40:00Z' GROUP BY time(1m) LIMIT 30 OFFSET 5"),
    with("chunked", "chunked=true&chunk_size=100", "SELECT mean(used) FROM mem WHERE time >= '2023-12-31T23:00:00Z' AND time < '2024-01-01T03:00:00Z' GROUP BY time(2m) ORDER BY time DESC LIMIT 50"),
    with("chunked", "chunked=true&chunk_size=5", "SELECT mean(usage_user) FROM cpu WHERE host = 'nobody' AND time >= '2023-12-31T23:00:00Z' AND time < '2024-01-01T03:00:00Z' GROUP BY time(10m)"),
    // fill(previous) streamed: each window starts from the last values before it.
    with("chunked", "chunked=true&chunk_size=20", "SELECT max(usage_user), count(state) FROM cpu WHERE host = 'host_2' AND time >= '2023-12-31T23:00:00Z' AND time < '2024-01-01T04:00:00Z' GROUP BY time(2m) fill(previous)"),
    with("chunked", "chunked=true&chunk_size=30&epoch=ms", "SELECT last(n), mean(used) FROM mem WHERE time >= '2023-12-31T23:30:00Z' AND time < '2024-01-01T03:00:00Z' GROUP BY time(3m) fill(previous) ORDER BY time DESC"),
    with("chunked", "chunked=true&chunk_size=25", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 40 OFFSET 350"),
    // Grouped by tags, several series a document (series without the tag first,
    // SLIMIT/SOFFSET, DESC). At the oracle's size (query.max_rows at its default) these
    // are answered whole: tests/e2e/influxql.rs computes such statements in parts against
    // the whole answer.
    with("chunked", "chunked=true&chunk_size=10", "SELECT max(usage_user), count(state) FROM cpu WHERE time >= '2023-12-31T23:00:00Z' AND time < '2024-01-01T03:00:00Z' GROUP BY time(10m), region"),
    with("chunked", "chunked=true&chunk_size=20", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(5m), host, region ORDER BY time DESC SLIMIT 3 SOFFSET 1"),
    with("chunked", "chunked=true&chunk_size=7", "SELECT usage_user, state FROM cpu WHERE time >= '2024-01-01T00:50:00Z' AND time < '2024-01-01T01:20:00Z' GROUP BY host LIMIT 30"),
    with("chunked", "chunked=true&chunk_size=11", "SELECT derivative(max(n), 1m) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(10m), host fill(previous)"),
    with("chunked", "chunked=false", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("chunked", "chunked=true&chunk_size=0", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    // ----- several statements in one request -----
    get("multi", "SELECT count(usage_user) FROM cpu; SELECT count(used) FROM mem"),
    get("multi", "SHOW MEASUREMENTS; SHOW TAG KEYS FROM cpu"),
    get("multi", "SELECT count(usage_user) FROM cpu; SELECT nope( FROM cpu"),
    get("multi", "SELECT count(usage_user) FROM cpu; SELECT mean(state) FROM cpu; SELECT count(used) FROM mem"),
    get("multi", "SELECT * FROM nope; SELECT count(used) FROM mem"),
    get("multi", "SELECT count(used) FROM mem;"),
    get("multi", "SELECT count(usage_user) FROM nosuchdb..cpu; SELECT count(used) FROM mem"),
    get("multi", "SELECT count(used) FROM mem;;SELECT count(free) FROM mem"),
    get("multi", "SHOW DATABASES; SHOW RETENTION POLICIES; SHOW MEASUREMENTS"),
    get("multi", "SELECT count(usage_user) FROM cpu; SELECT mean(state) FROM cpu"),
    get("multi", "SELECT mean(state) FROM cpu; SELECT count(usage_user) FROM cpu"),
    with("multi", "chunked=true", "SELECT count(usage_user) FROM cpu; SELECT mean(state) FROM cpu; SELECT count(used) FROM mem"),
    // ----- other parameters -----
    with("params", "pretty=true", "SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 2"),
    with("params", "rp=autogen", "SELECT count(usage_user) FROM cpu"),
    with("params", "rp=nosuchrp", "SELECT count(usage_user) FROM cpu"),
    with("params", "rp=nosuchrp", "SHOW MEASUREMENTS"),
    with("params", "db=oracle&epoch=ms&chunked=true&chunk_size=10000", "SELECT count(usage_user) FROM cpu GROUP BY host"),
    Case { category: "params", via: Via::PostUrl, params: "", q: "SHOW MEASUREMENTS" },
    Case { category: "params", via: Via::PostForm, params: "", q: "SELECT count(usage_user) FROM cpu; SELECT count(used) FROM mem" },
    // ----- subqueries -----
    get("subquery", "SELECT mean(m) FROM (SELECT max(usage_user) AS m FROM cpu GROUP BY host)"),
    get("subquery", "SELECT max(mean) FROM (SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(10m), host) GROUP BY host"),
    get("subquery", "SELECT * FROM (SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 3)"),
    // ----- transformations (Grafana's favourites) -----
    get("transform", "SELECT derivative(usage_user, 1s) FROM cpu WHERE host = 'host_1' LIMIT 5"),
    get("transform", "SELECT non_negative_derivative(n, 1m) FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T01:05:00Z' AND time < '2024-01-01T01:08:00Z'"),
    get("transform", "SELECT difference(n) FROM cpu WHERE host = 'host_1' LIMIT 5"),
    get("transform", "SELECT non_negative_difference(n) FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T01:05:00Z' AND time < '2024-01-01T01:08:00Z'"),
    get("transform", "SELECT cumulative_sum(n) FROM cpu WHERE host = 'host_1' LIMIT 5"),
    get("transform", "SELECT moving_average(usage_user, 3) FROM cpu WHERE host = 'host_1' LIMIT 5"),
    get("transform", "SELECT elapsed(usage_user, 1s) FROM cpu WHERE host = 'host_1' LIMIT 5"),
    get("transform", "SELECT derivative(mean(usage_user), 1m) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(10m)"),
    get("transform", "SELECT non_negative_difference(max(n)) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(20m), host"),
    // A range starting inside the data: the bucket before it is read too (and the range's
    // first bucket holds the points of the wider range), in either order.
    get("transform", "SELECT difference(max(n)) FROM cpu WHERE time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T01:30:00Z' GROUP BY time(10m)"),
    get("transform", "SELECT difference(max(n)) FROM cpu WHERE time >= '2024-01-01T00:35:00Z' AND time < '2024-01-01T01:30:00Z' GROUP BY time(10m) fill(0)"),
    get("transform", "SELECT non_negative_derivative(mean(n), 1s) FROM cpu WHERE time >= '2024-01-01T00:40:00Z' AND time < '2024-01-01T01:20:00Z' GROUP BY time(5m), host fill(null)"),
    get("transform", "SELECT moving_average(mean(usage_user), 3) FROM cpu WHERE time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T01:30:00Z' GROUP BY time(10m)"),
    get("transform", "SELECT elapsed(max(n), 1s) FROM cpu WHERE time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T01:00:00Z' GROUP BY time(10m)"),
    get("transform", "SELECT difference(max(n)) FROM cpu WHERE time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T01:30:00Z' GROUP BY time(10m) ORDER BY time DESC"),
    get("transform", "SELECT moving_average(mean(usage_user), 2) FROM cpu WHERE time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T01:30:00Z' GROUP BY time(10m), host ORDER BY time DESC"),
    get("transform", "SELECT cumulative_sum(max(n)) FROM cpu WHERE time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T01:30:00Z' GROUP BY time(10m) ORDER BY time DESC"),
    // Newest first, computed in that order: rates per unit forward, elapsed negative,
    // sums from the newest point.
    get("transform", "SELECT derivative(usage_user, 1s) FROM cpu WHERE host = 'host_1' ORDER BY time DESC LIMIT 5"),
    get("transform", "SELECT elapsed(usage_user, 1s) FROM cpu WHERE host = 'host_1' ORDER BY time DESC LIMIT 5"),
    get("transform", "SELECT cumulative_sum(n) FROM cpu WHERE host = 'host_1' ORDER BY time DESC LIMIT 5"),
    get("transform", "SELECT non_negative_difference(n) FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T01:05:00Z' AND time < '2024-01-01T01:08:00Z' ORDER BY time DESC"),
    get("transform", "SELECT top(usage_user, 3) FROM cpu"),
    get("transform", "SELECT bottom(usage_user, 3) FROM cpu"),
    get("transform", "SELECT top(usage_user, host, 2) FROM cpu"),
    get("transform", "SELECT top(n, 2) FROM cpu GROUP BY host"),
    // The tags and fields of each point top and bottom choose; their buckets with no point
    // answer nothing whatever the fill; newest first keeps a bucket's rows in their order.
    get("transform", "SELECT bottom(usage_user, 2), host, n FROM cpu"),
    get("transform", "SELECT top(n, 2), host FROM cpu GROUP BY host"),
    get("transform", "SELECT top(n, 2), host FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(10m)"),
    get("transform", "SELECT top(n, 2) FROM cpu WHERE host = 'host_3' AND time >= '2023-12-31T23:00:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(10m) fill(0)"),
    get("transform", "SELECT bottom(usage_user, 2) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:40:00Z' GROUP BY time(10m) ORDER BY time DESC"),
    get("transform", "SELECT bottom(usage_user, 3) FROM cpu ORDER BY time DESC"),
    get("transform", "SELECT distinct(state) FROM cpu WHERE time >= '2023-12-31T23:00:00Z' AND time < '2024-01-01T00:30:00Z' GROUP BY time(10m) fill(null)"),
    get("transform", "SELECT distinct(state) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:30:00Z' GROUP BY time(10m) ORDER BY time DESC"),
    get("errors", "SELECT top(usage_user, 3) FROM cpu LIMIT 2"),
    // A rank no point holds answers nothing; mode's ties as InfluxDB breaks them.
    get("aggregate", "SELECT percentile(usage_user, 1) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:01:00Z' GROUP BY host"),
    get("aggregate", "SELECT mode(state), mode(ok), mode(n) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(5m), host"),
    get("aggregate", "SELECT mode(state), mode(ok), mode(n) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1m), host"),
    get("aggregate", "SELECT mode(state) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T01:00:00Z' GROUP BY time(30s)"),
    // Arithmetic on a selector of strings or booleans is a type error.
    get("errors", "SELECT last(state) * 2 FROM cpu"),
    get("errors", "SELECT max(usage_user) - first(state) FROM cpu"),
    get("errors", "SELECT mode(ok) + 1 FROM cpu"),
    get("aggregate", "SELECT mode(ok) & true FROM cpu GROUP BY host"),
    // A float in a bitwise operation is a type error; a float % 0 is null.
    get("errors", "SELECT usage_user & 1 FROM cpu"),
    get("errors", "SELECT max(usage_user) | n FROM cpu"),
    get("aggregate", "SELECT max(usage_user) % 0, max(n) % 0 FROM cpu GROUP BY host"),
    // A function whose field has no point in the group's range: null, a number as written.
    get("fill", "SELECT count(state), count(usage_user) FROM cpu WHERE host = 'host_1' AND time >= '2024-01-01T00:00:10Z' AND time < '2024-01-01T00:00:50Z' GROUP BY time(10s)"),
    get("fill", "SELECT first(state), max(usage_user) FROM cpu WHERE host = 'host_1' AND time >= '2024-01-01T00:00:10Z' AND time < '2024-01-01T00:00:50Z' GROUP BY time(10s) fill(7)"),
    // Newest first, distinct values by their latest point.
    get("aggregate", "SELECT distinct(state) FROM cpu WHERE host = 'host_1' AND time < '2024-01-01T00:30:00Z' ORDER BY time DESC"),
    get("transform", "SELECT abs(usage_user - 50) FROM cpu WHERE host = 'host_1' LIMIT 3"),
    get("transform", "SELECT round(usage_user), floor(usage_user), ceil(usage_user) FROM cpu WHERE host = 'host_1' LIMIT 3"),
    // ----- errors -----
    get("errors", "SELEC * FROM cpu"),
    get("errors", "SELECT FROM cpu"),
    get("errors", "SELECT * FROM"),
    get("errors", ""),
    get("errors", "SELECT * FROM cpu WHERE"),
    get("errors", "SELECT usage_user, mean(usage_user) FROM cpu"),
    get("errors", "SELECT mean(usage_user) FROM cpu WHERE time < '2024-01-01T01:00:00Z' GROUP BY time(1m)"),
    get("errors", "SELECT mean(state) FROM cpu"),
    get("errors", "SELECT sum(ok) FROM cpu"),
    get("errors", "SELECT * INTO nosuchdb..cpu2 FROM cpu"),
    get("errors", "SELECT percentile(usage_user) FROM cpu"),
    get("errors", "SELECT top(usage_user) FROM cpu"),
    get("errors", "SELECT derivative(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(1m)"),
    get("errors", "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(0s)"),
    get("errors", "SELECT * FROM cpu WHERE time > 'not a time'"),
    get("errors", "SHOW TAG VALUES FROM cpu"),
    get("errors", "SELECT * FROM cpu WHERE host = 'unterminated"),
    get("errors", "SELECT usage_user FROM cpu SLIMIT -1"),
    get("errors", "SELECT * FROM cpu LIMIT 'a'"),
    get("errors", "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T00:05:00Z' GROUP BY time(1m) fill(linear, 1)"),
    get("errors", "SELECT count(*) FROM cpu GROUP BY time"),
    get("errors", "SHOW NOTHING"),
    get("errors", "EXPLAIN SELEC 1"),
    get("errors", "SELECT \"usage_user\" FROM \"cpu"),
];

/// The cases whose `category: key` contains one of the comma-separated substrings of
/// `MERIDIAN_ORACLE_FILTER` (all cases when it is unset or empty).
pub fn cases() -> Vec<&'static Case> {
    let filter = std::env::var("MERIDIAN_ORACLE_FILTER").unwrap_or_default();
    let wanted: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    CASES
        .iter()
        .filter(|c| {
            let name = format!("{}: {}", c.category, c.key());
            wanted.is_empty() || wanted.iter().any(|w| name.contains(w))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// An InfluxDB holding the whole data set.
fn loaded_influxdb(data: &Dataset) -> InfluxServer {
    let influx = InfluxServer::start();
    for b in data.before_restart.iter().chain(&data.after_restart) {
        influx.write(DB, &b.body, b.precision);
    }
    for m in ["cpu", "mem"] {
        // The data set's own count of each field against the oracle's: checks the generator
        // (overwrites merge into the points they rewrite) before anything else.
        let answer = influx.query(DB, &format!("SELECT count(*) FROM {m}"), &[]);
        let series = &answer["results"][0]["series"][0];
        let mut counted = BTreeMap::new();
        if let (Some(cols), Some(row)) =
            (series["columns"].as_array(), series["values"][0].as_array())
        {
            for (c, v) in cols.iter().zip(row).skip(1) {
                let name = c
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("count_")
                    .to_string();
                counted.insert(name, v.as_u64().unwrap_or(0) as usize);
            }
        }
        assert_eq!(
            counted,
            data.field_counts(m),
            "influxd's count(*) of {m}: {answer}"
        );
    }
    influx
}

fn write_meridian(s: &TestServer, batches: &[Batch]) {
    for b in batches {
        let r = s.post(&write_path(DB, b.precision), b.body.as_bytes().to_vec());
        assert_eq!(r.status, 204, "meridian /write: {r:?}");
    }
}

/// A finding of the differential test.
struct Mismatch {
    case: &'static Case,
    influx: Answer,
    meridian: Answer,
    difference: String,
}

fn show(a: &Answer, max: usize) -> String {
    format!(
        "{} {} {}",
        a.status,
        a.content_type,
        truncate(&a.body.to_string(), max)
    )
}

fn report(mismatches: &[Mismatch], ran: usize, max: usize) -> String {
    let mut out = String::new();
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    for m in mismatches {
        *per_category.entry(m.case.category).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "{} of {ran} cases disagree with InfluxDB 1.6 (per category: {per_category:?})",
        mismatches.len()
    );
    for (i, m) in mismatches.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n#{} [{}] {}\n  first difference: {}\n  influxdb: {}\n  meridian: {}",
            i + 1,
            m.case.category,
            m.case.key(),
            m.difference,
            show(&m.influx, max),
            show(&m.meridian, max)
        );
    }
    out
}

/// Every case against InfluxDB 1.6 and Meridian holding the same points (Meridian's first
/// part flushed to Parquet by a clean stop and compacted (small measurements packed),
/// the rest in memory), answers compared with
/// [`compare_answers`]. Fails at the end listing every mismatch; the full answers are in
/// `$CARGO_TARGET_TMPDIR/oracle_report.txt`.
#[test]
fn meridian_agrees_with_influxdb_1_6() {
    let started = Instant::now();
    let data = Dataset::generate();
    let influx = loaded_influxdb(&data);

    let mut meridian = TestServer::start(ServerConfig::default());
    write_meridian(&meridian, &data.before_restart);
    meridian.stop();
    let files = tree(&meridian.data_dir())
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .count();
    assert!(files > 0, "a clean stop left no Parquet file");
    // Compacted: the small measurements of a region's hour (`mem`, and the `cpu` of the
    // host without a region) are packed in one file, which the answers are read from.
    crate::support::compact(&meridian, &[]);
    assert!(
        tree(&meridian.data_dir())
            .iter()
            .any(|f| f.contains("/~packed/")),
        "compaction packed nothing"
    );
    meridian.restart();
    write_meridian(&meridian, &data.after_restart);
    let loaded = started.elapsed();

    let client = http_client();
    let (influx_base, meridian_base) = (influx.base_url(), meridian.url(""));
    let selected = cases();
    let mut mismatches = Vec::new();
    let mut deviations_seen = Vec::new();
    for case in &selected {
        let expected = case.run(&client, &influx_base);
        let got = case.run(&client, &meridian_base);
        let deviation = DEVIATIONS.iter().find(|(q, _)| *q == case.q);
        match (compare_answers(&expected, &got), deviation) {
            (Ok(()), None) => {}
            (Err(_), Some((q, _))) => deviations_seen.push(*q),
            (Ok(()), Some((q, why))) => mismatches.push(Mismatch {
                case,
                influx: expected,
                meridian: got,
                difference: format!(
                    "listed as a deviation ({why}) but now agrees: remove {q:?} from DEVIATIONS and the README"
                ),
            }),
            (Err(difference), None) => mismatches.push(Mismatch {
                case,
                influx: expected,
                meridian: got,
                difference,
            }),
        }
    }
    eprintln!(
        "oracle: {} intended deviations (README, InfluxQL deviations)",
        deviations_seen.len()
    );
    eprintln!(
        "oracle: {} cases in {:?} (data loaded in {loaded:?}, {files} Parquet files)",
        selected.len(),
        started.elapsed()
    );
    if mismatches.is_empty() {
        return;
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oracle_report.txt");
    let full = report(&mismatches, selected.len(), usize::MAX);
    let saved = match std::fs::write(&path, &full) {
        Ok(()) => format!("full answers in {}", path.display()),
        Err(e) => format!("could not write {}: {e}", path.display()),
    };
    panic!("{}\n({saved})", report(&mismatches, selected.len(), 400));
}

/// Statements whose answers differ from InfluxDB 1.6.7 on purpose; each is listed, with
/// its reason, in the README's "Deviations from InfluxDB 1.x" (the test fails when one of
/// them starts to agree, so that the list stays true).
const DEVIATIONS: &[(&str, &str)] = &[
    (
        "SELECT first(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z'",
        "first()/last() among points of one time in several series: the greater value",
    ),
    (
        "SELECT first(usage_user) FROM cpu",
        "first()/last() among points of one time in several series: the greater value",
    ),
    (
        "SELECT last(*) FROM cpu",
        "first()/last() among points of one time in several series: the greater value",
    ),
    (
        "SELECT last(*) FROM /.*/",
        "first()/last() among points of one time in several series: the greater value",
    ),
    (
        "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(0s)",
        "GROUP BY time(0s) is a parse error",
    ),
    (
        "SELECT count(*) FROM cpu GROUP BY time",
        "GROUP BY time without an interval is a parse error",
    ),
    (
        "SELECT count(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:46:45Z' GROUP BY time(1s)",
        "no partial flag on a complete series of more than 10,000 rows",
    ),
    (
        "SELECT mean(m) FROM (SELECT max(usage_user) AS m FROM cpu GROUP BY host)",
        "subqueries are a statement error",
    ),
    (
        "SELECT max(mean) FROM (SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(10m), host) GROUP BY host",
        "subqueries are a statement error",
    ),
    (
        "SELECT * FROM (SELECT usage_user FROM cpu WHERE host = 'host_1' LIMIT 3)",
        "subqueries are a statement error",
    ),
    (
        "SELECT top(usage_user, host, 2) FROM cpu",
        "top()/bottom() with tag arguments are not supported",
    ),
    (
        "SELECT count(usage_user) FROM cpu WHERE time < '2024-01-01T00:01:00Z' OR time > '2024-01-01T01:59:00Z'",
        "time conditions under OR are an error, not an empty answer",
    ),
];

/// The golden file `oracle_answers.json` holds what a live InfluxDB 1.6 answers to every
/// case over the data set. `MERIDIAN_ORACLE_RECORD=1` rewrites it (all cases, whatever the
/// filter).
#[test]
fn golden_answers_are_influxdb_1_6s() {
    let record = std::env::var("MERIDIAN_ORACLE_RECORD").is_ok_and(|v| v == "1");
    let data = Dataset::generate();
    let influx = loaded_influxdb(&data);
    let client = http_client();
    let base = influx.base_url();
    if record {
        let mut out = String::from("{\n");
        for (i, case) in CASES.iter().enumerate() {
            let answer = case.run(&client, &base);
            let mut entry = serde_json::json!({
                "category": case.category,
                "via": format!("{:?}", case.via),
                "params": case.params,
                "q": case.q,
            });
            if let (Value::Object(e), Value::Object(a)) = (&mut entry, answer.to_json()) {
                e.extend(a);
            }
            let key = Value::String(case.key()).to_string();
            let comma = if i + 1 < CASES.len() { "," } else { "" };
            let _ = writeln!(out, "{key}: {entry}{comma}");
        }
        out.push_str("}\n");
        std::fs::write(GOLDEN, out).unwrap_or_else(|e| panic!("writing {GOLDEN}: {e}"));
        return;
    }
    let text = std::fs::read_to_string(GOLDEN).unwrap_or_else(|e| panic!("reading {GOLDEN}: {e}"));
    let golden: BTreeMap<String, Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{GOLDEN} is not a JSON object: {e}"));
    let keys: std::collections::BTreeSet<String> = CASES.iter().map(|c| c.key()).collect();
    assert_eq!(keys.len(), CASES.len(), "two cases have the same key");
    let stale: Vec<&String> = golden.keys().filter(|k| !keys.contains(*k)).collect();
    let mut problems: Vec<String> = stale.iter().map(|k| format!("stale entry {k:?}")).collect();
    for case in cases() {
        let live = case.run(&client, &base);
        match golden.get(&case.key()).and_then(Answer::from_json) {
            None => problems.push(format!("no entry for {:?}", case.key())),
            Some(recorded) if recorded != live => problems.push(format!(
                "{:?}: recorded {}\n    live {}",
                case.key(),
                show(&recorded, 300),
                show(&live, 300)
            )),
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{GOLDEN} is out of date (rerun with MERIDIAN_ORACLE_RECORD=1):\n{}",
        problems.join("\n")
    );
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Deletes against InfluxDB 1.6: the same delete statements on both (Meridian holding part
/// of the points in Parquet files and part in memory), then the same checks after each,
/// and once more after Meridian is killed with -9 and restarted.
#[test]
fn deletes_agree_with_influxdb_1_6() {
    let data = Dataset::generate();
    let influx = loaded_influxdb(&data);
    let mut meridian = TestServer::start(ServerConfig::default());
    write_meridian(&meridian, &data.before_restart);
    meridian.stop();
    meridian.restart();
    write_meridian(&meridian, &data.after_restart);

    // Not here: a time-bounded DELETE that removes every point of a series. InfluxDB 1.6
    // keeps the series in SHOW TAG VALUES/SERIES; Meridian drops it (README deviations).
    const DELETES: &[&str] = &[
        "DELETE FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T01:00:00Z'",
        "DROP SERIES FROM cpu WHERE host = 'host_3'",
        "DELETE FROM mem WHERE time < '2024-01-01T00:20:00Z'",
        "DELETE FROM cpu WHERE region =~ /eu/ AND time > '2024-01-01T01:30:00Z'",
        "DROP SERIES FROM mem WHERE host = 'host_1'",
        // Every point of mem: the measurement is forgotten (its columns leave SHOW and
        // wildcards over several measurements) though its files hold the points until
        // compaction.
        "DELETE FROM mem",
        "DROP MEASUREMENT mem",
    ];
    const CHECKS: &[&str] = &[
        "SELECT count(*) FROM cpu GROUP BY *",
        "SELECT count(*) FROM mem GROUP BY *",
        "SELECT sum(n), max(usage_user) FROM cpu GROUP BY host",
        "SELECT * FROM cpu WHERE host = 'host_2' AND time >= '2024-01-01T00:29:00Z' AND time < '2024-01-01T01:01:00Z'",
        "SELECT mean(usage_user) FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' GROUP BY time(15m), host fill(none)",
        "SHOW MEASUREMENTS",
        "SHOW SERIES",
        "SHOW TAG VALUES WITH KEY = host",
        "SHOW FIELD KEYS",
        "SHOW TAG KEYS",
        "SELECT max(*) FROM /.*/",
    ];
    let post = |base: &str, q: &str| {
        let url = format!("{base}/query?{}", encode_params(&[("db", DB), ("q", q)]));
        let r = http_client().post(url).send().unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap_or_default();
        assert!(
            status == 200 && body["results"][0].get("error").is_none(),
            "{q} on {base}: {status} {body}"
        );
    };
    let mut mismatches = Vec::new();
    let mut check = |stage: &str, meridian: &TestServer| {
        for q in CHECKS {
            let a = influx.query(DB, q, &[]);
            let b = meridian.get(&format!(
                "/query?{}",
                encode_params(&[("db", DB), ("q", q)])
            ));
            if let Err(d) = compare_results(&a, &b.json()) {
                mismatches.push(format!(
                    "after {stage}: {q}\n  {d}\n  influxdb: {}\n  meridian: {}",
                    cut(&a.to_string(), 600),
                    cut(&b.body, 600)
                ));
            }
        }
    };
    for d in DELETES {
        post(&influx.base_url(), d);
        post(&meridian.url(""), d);
        check(d, &meridian);
    }
    meridian.kill9();
    meridian.restart();
    check("kill -9 and restart", &meridian);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
