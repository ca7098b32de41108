//! The harness: a real `meridian serve` process in a temp dir, its `regions.toml`, HTTP
//! helpers, and an independent reader of everything the server left on disk.
//!
//! The reader trusts nothing of the server's code: it parses each region's `_manifest/`
//! (newest checkpoint, then the edits after it) as plain JSON, reads each listed Parquet file
//! with the `parquet` crate, and checks the documented layout (path, partition, column types,
//! sort order, row counts) while collecting the rows.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatchReader;
use chrono::{DateTime, Datelike, Timelike};

pub const SEC_NS: i64 = 1_000_000_000;
pub const HOUR_NS: i64 = 3_600 * SEC_NS;
/// 2024-05-01T00:00:00Z in seconds: a fixed, past base time for generated points.
pub const BASE_S: i64 = 1_714_521_600;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum SyncPolicy {
    Always,
    Interval(u64),
}

/// The knobs tests turn; everything else is the repo's four-region default.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub partition_duration: String,
    pub shards: usize,
    pub max_rows: u64,
    pub max_bytes: String,
    pub max_age: String,
    pub flush_workers: usize,
    pub memory_limit: String,
    pub high_water: Option<String>,
    pub sync: SyncPolicy,
    pub segment_bytes: String,
    pub queue_depth: usize,
    pub max_body_bytes: String,
    pub query_max_rows: u64,
    pub query_timeout: Option<String>,
    /// Extra `key = value` lines of the `[http]` table.
    pub http_extra: Vec<String>,
    /// `query.max_memory` and `query.total_memory`.
    pub query_memory: Option<(String, String)>,
    /// Lines added to `[query]`.
    pub query_extra: Vec<String>,
    pub tokens: Vec<String>,
    /// `memory.max_series_per_database`.
    pub max_series: Option<u64>,
    /// `memory.series_catalog`.
    pub series_catalog: Option<String>,
    /// Lines added to `[auth]` (after `tokens`).
    pub auth_extra: String,
    /// Raw TOML appended after everything else (whole tables, such as `[storage]`).
    pub extra_toml: String,
    /// Extra `key = value` lines of one `[[region]]` table: (region name, line).
    pub region_extra: Vec<(String, String)>,
    /// `[directory]` entries: ("tag=value", region).
    pub directory: Vec<(String, String)>,
}

impl Default for ServerConfig {
    /// Flushes only at shutdown (huge thresholds, 1h age), so a test controls when files appear.
    fn default() -> Self {
        ServerConfig {
            partition_duration: "1h".into(),
            shards: 2,
            max_rows: 100_000_000,
            max_bytes: "1GiB".into(),
            max_age: "1h".into(),
            flush_workers: 1,
            memory_limit: "1GiB".into(),
            high_water: None,
            sync: SyncPolicy::Always,
            segment_bytes: "64MiB".into(),
            queue_depth: 256,
            max_body_bytes: "32MiB".into(),
            query_max_rows: 10_000_000,
            query_timeout: None,
            http_extra: vec![],
            query_memory: None,
            query_extra: Vec::new(),
            tokens: vec![],
            max_series: None,
            series_catalog: None,
            auth_extra: String::new(),
            extra_toml: String::new(),
            region_extra: vec![],
            directory: vec![("tenant=acme-eu".into(), "eu".into())],
        }
    }
}

impl ServerConfig {
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }
    pub fn flush(mut self, max_rows: u64, max_bytes: &str, max_age: &str) -> Self {
        self.max_rows = max_rows;
        self.max_bytes = max_bytes.into();
        self.max_age = max_age.into();
        self
    }
    pub fn flush_workers(mut self, n: usize) -> Self {
        self.flush_workers = n;
        self
    }
    pub fn memory(mut self, limit: &str, high_water: &str) -> Self {
        self.memory_limit = limit.into();
        self.high_water = Some(high_water.into());
        self
    }
    pub fn sync(mut self, s: SyncPolicy) -> Self {
        self.sync = s;
        self
    }
    pub fn segment_bytes(mut self, s: &str) -> Self {
        self.segment_bytes = s.into();
        self
    }
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n;
        self
    }
    pub fn tokens(mut self, t: &[&str]) -> Self {
        self.tokens = t.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Adds a `key = value` line to `[query]`.
    pub fn query_line(mut self, line: &str) -> Self {
        self.query_extra.push(line.into());
        self
    }
    pub fn with_query_memory(mut self, one: &str, all: &str) -> Self {
        self.query_memory = Some((one.into(), all.into()));
        self
    }
    pub fn max_body_bytes(mut self, s: &str) -> Self {
        self.max_body_bytes = s.into();
        self
    }
    /// Appends raw TOML (whole tables) to the rendered config.
    pub fn toml(mut self, text: &str) -> Self {
        self.extra_toml.push_str(text);
        if !text.ends_with('\n') {
            self.extra_toml.push('\n');
        }
        self
    }
    /// Adds a `[directory]` entry (`entry`: "tag=value").
    pub fn directory_entry(mut self, entry: &str, region: &str) -> Self {
        self.directory.push((entry.into(), region.into()));
        self
    }
    /// Adds a `key = value` line to the `[[region]]` table of `region`.
    pub fn region_line(mut self, region: &str, line: &str) -> Self {
        assert!(
            REGIONS.contains(&region),
            "no region {region} in the config"
        );
        self.region_extra.push((region.into(), line.into()));
        self
    }

    pub fn partition_ns(&self) -> i64 {
        match self.partition_duration.as_str() {
            "1h" => HOUR_NS,
            "1d" => 24 * HOUR_NS,
            other => panic!("test harness only knows 1h and 1d partitions, not {other}"),
        }
    }

    /// `regions.toml` text. `data_dir` is relative to the file; tests also pass `--data-dir`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("data_dir = \"data\"\n");
        s.push_str(&format!(
            "partition_duration = \"{}\"\n",
            self.partition_duration
        ));
        s.push_str("default_region = \"global\"\ngeo_tag = \"region\"\nlat_tag = \"lat\"\nlon_tag = \"lon\"\n\n");
        s.push_str(&format!(
            "[ingest]\nshards_per_region = {}\n\n",
            self.shards
        ));
        s.push_str(&format!(
            "[flush]\nmax_rows = {}\nmax_bytes = \"{}\"\nmax_age = \"{}\"\nworkers = {}\nrow_group_rows = 1024\n\n",
            self.max_rows, self.max_bytes, self.max_age, self.flush_workers
        ));
        s.push_str(&format!("[memory]\nlimit = \"{}\"\n", self.memory_limit));
        if let Some(h) = &self.high_water {
            s.push_str(&format!("high_water = \"{h}\"\n"));
        }
        if let Some(n) = self.max_series {
            s.push_str(&format!("max_series_per_database = {n}\n"));
        }
        if let Some(c) = &self.series_catalog {
            s.push_str(&format!("series_catalog = \"{c}\"\n"));
        }
        s.push('\n');
        match self.sync {
            SyncPolicy::Always => s.push_str("[wal]\nsync = \"always\"\n"),
            SyncPolicy::Interval(ms) => {
                s.push_str(&format!("[wal]\nsync = \"interval\"\ninterval_ms = {ms}\n"))
            }
        }
        s.push_str(&format!(
            "segment_bytes = \"{}\"\nqueue_depth = {}\n\n",
            self.segment_bytes, self.queue_depth
        ));
        s.push_str(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = \"{}\"\n",
            self.max_body_bytes
        ));
        for line in &self.http_extra {
            s.push_str(line);
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&format!("[query]\nmax_rows = {}\n", self.query_max_rows));
        if let Some(t) = &self.query_timeout {
            s.push_str(&format!("timeout = \"{t}\"\n"));
        }
        if let Some((one, all)) = &self.query_memory {
            s.push_str(&format!(
                "max_memory = \"{one}\"\ntotal_memory = \"{all}\"\n"
            ));
        }
        for line in &self.query_extra {
            s.push_str(line);
            s.push('\n');
        }
        s.push('\n');
        let toks: Vec<String> = self.tokens.iter().map(|t| format!("\"{t}\"")).collect();
        s.push_str(&format!(
            "[auth]\ntokens = [{}]\n{}\n\n",
            toks.join(", "),
            self.auth_extra
        ));
        s.push_str(
            r#"[[region]]
name = "americas"
tag_values = ["us-*", "ca-*", "sa-*", "mx-*", "americas", "na", "sa"]
bbox = [{ min_lat = -60.0, max_lat = 84.0, min_lon = -170.0, max_lon = -25.0 }]

[[region]]
name = "eu"
tag_values = ["eu-*", "europe", "eu", "uk-*"]
bbox = [{ min_lat = 34.0, max_lat = 72.0, min_lon = -25.0, max_lon = 45.0 }]

[[region]]
name = "apac"
tag_values = ["ap-*", "apac", "asia", "au-*"]
bbox = [
  { min_lat = -50.0, max_lat = 60.0, min_lon = 60.0, max_lon = 180.0 },
  { min_lat = -50.0, max_lat = 0.0, min_lon = -180.0, max_lon = -170.0 },
]

[[region]]
name = "global"

[directory]
"#,
        );
        for (entry, region) in &self.directory {
            s.push_str(&format!("\"{entry}\" = \"{region}\"\n"));
        }
        for (region, line) in &self.region_extra {
            let table = format!("[[region]]\nname = \"{region}\"\n");
            let at = s.find(&table).expect("the region's table") + table.len();
            s.insert_str(at, &format!("{line}\n"));
        }
        if !self.extra_toml.is_empty() {
            s.push('\n');
            s.push_str(&self.extra_toml);
        }
        s
    }
}

pub const REGIONS: [&str; 4] = ["americas", "eu", "apac", "global"];

// ---------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------

/// A `meridian serve` process with its own temp dir (config + data dir).
pub struct TestServer {
    root: tempfile::TempDir,
    pub config: ServerConfig,
    child: Option<Child>,
    addr: String,
    /// stderr of the current run (filled by a reader thread).
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
    /// stderr of earlier runs of this data dir, in order.
    past_logs: String,
    runs: usize,
    client: reqwest::blocking::Client,
}

/// What a request got back.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.body))
    }
}

pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .pool_max_idle_per_host(8)
        .build()
        .expect("building the HTTP client")
}

/// A client that never reuses a connection (one request, one connection).
pub fn fresh_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
        .expect("building the HTTP client")
}

impl TestServer {
    /// Starts a server on a fresh temp dir; panics (with the server's stderr) if it fails.
    pub fn start(config: ServerConfig) -> TestServer {
        let mut s = TestServer::new(config);
        if let Err(e) = s.spawn(&[]) {
            panic!("server did not start: {e}");
        }
        s
    }

    /// A harness with its temp dir and config written, no process yet.
    pub fn new(config: ServerConfig) -> TestServer {
        let root = tempfile::Builder::new()
            .prefix("meridian-e2e-")
            .tempdir()
            .expect("creating a temp dir");
        let s = TestServer {
            root,
            config,
            child: None,
            addr: String::new(),
            stderr: Arc::new(Mutex::new(String::new())),
            stderr_thread: None,
            past_logs: String::new(),
            runs: 0,
            client: http_client(),
        };
        s.write_config();
        s
    }

    fn write_config(&self) {
        std::fs::write(self.config_path(), self.config.render()).expect("writing regions.toml");
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.path().join("regions.toml")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }
    pub fn addr(&self) -> &str {
        &self.addr
    }
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }
    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Replaces the config used by the next (re)start.
    pub fn set_config(&mut self, config: ServerConfig) {
        self.config = config;
        self.write_config();
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian"));
        cmd.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--log")
            .arg("info,meridian::region::shard=debug")
            .args(extra)
            .current_dir(self.root.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn begin_run(&mut self) {
        if self.runs > 0 || !self.stderr.lock().unwrap().is_empty() {
            let prev = std::mem::take(&mut *self.stderr.lock().unwrap());
            self.past_logs
                .push_str(&format!("----- run {} -----\n{prev}", self.runs));
        }
        self.runs += 1;
    }

    /// Spawns the process; returns a receiver of stdout lines. stderr is collected.
    pub fn spawn_raw(&mut self, extra: &[&str]) -> mpsc::Receiver<String> {
        assert!(self.child.is_none(), "server already running");
        self.begin_run();
        let mut child = self
            .command(extra)
            .spawn()
            .expect("spawning the meridian binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining so the server never blocks.
                }
            }
        });
        let buf = Arc::new(Mutex::new(String::new()));
        self.stderr = buf.clone();
        self.stderr_thread = Some(std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => buf
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&line)),
                }
            }
        }));
        self.child = Some(child);
        rx
    }

    /// Spawns the server and waits for `listening on ADDR`. On failure the process is gone
    /// and the error holds its exit status and stderr.
    pub fn spawn(&mut self, extra: &[&str]) -> Result<(), String> {
        let rx = self.spawn_raw(extra);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        self.addr = addr.trim().to_string();
                        // Ready = answering HTTP. (A SIGTERM sent in the instant between the
                        // `listening on` line and the first poll of the server's signal
                        // handler kills it; `sigterm_right_after_ready_line_is_graceful`
                        // tests that race on its own, so other tests do not trip on it.)
                        self.wait_http_ready(deadline)?;
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(10));
                    return Err(format!(
                        "server exited ({status:?}) before listening; stderr:\n{}",
                        self.logs()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.kill9();
                    return Err(format!(
                        "server did not print `listening on` within {START_TIMEOUT:?}; stderr:\n{}",
                        self.logs()
                    ));
                }
            }
        }
    }

    fn wait_http_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            match self.client.get(self.url("/health")).send() {
                Ok(r) if r.status().as_u16() == 200 => return Ok(()),
                other => {
                    if Instant::now() > deadline {
                        self.kill9();
                        return Err(format!(
                            "server printed `listening on` but /health fails: {other:?}; stderr:\n{}",
                            self.logs()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Spawns the server and kills it with SIGKILL after `delay`, whether or not it finished
    /// starting (to crash it in the middle of recovery).
    pub fn spawn_and_kill_after(&mut self, delay: Duration) {
        let _rx = self.spawn_raw(&[]);
        std::thread::sleep(delay);
        self.kill9();
    }

    /// Spawns the server and SIGKILLs it as soon as its stderr contains `pattern` (or after
    /// `timeout`). Returns whether it was killed before it said it was ready.
    pub fn spawn_and_kill_on_log(&mut self, pattern: &str, timeout: Duration) -> bool {
        let _rx = self.spawn_raw(&[]);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !self.stderr.lock().unwrap().contains(pattern) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.kill9();
        !self.logs().contains("meridian is ready")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// Waits for the process to exit; SIGKILLs it after `timeout`. Joins the stderr reader.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        status
    }

    /// SIGTERM, wait, and assert a clean exit (status 0) within the timeout.
    pub fn stop(&mut self) {
        let pid = self.pid();
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(st.success(), "kill -TERM {pid} failed");
        let status = self.wait_exit(STOP_TIMEOUT);
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!(
                "server exited with {s} after SIGTERM (expected 0); stderr:\n{}",
                self.logs()
            ),
            None => panic!(
                "server did not exit within {STOP_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                self.logs()
            ),
        }
        let logs = self.logs();
        assert!(
            !logs.contains("panicked"),
            "server panicked during this run:\n{logs}"
        );
    }

    /// Sends SIGTERM and returns at once (the process keeps running while it shuts down).
    pub fn terminate(&self) {
        let pid = self.pid();
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(st.success(), "kill -TERM {pid} failed");
    }

    /// SIGKILL (a crash: no flush, no cleanup).
    pub fn kill9(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        self.wait_exit(Duration::from_secs(10));
    }

    /// Starts again on the same data dir (after stop or kill9), panicking on failure.
    pub fn restart(&mut self) {
        if let Err(e) = self.spawn(&[]) {
            panic!("restart failed: {e}\nearlier runs:\n{}", self.past_logs);
        }
    }

    /// stderr of the current (or last) run.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// stderr of every run so far.
    pub fn all_logs(&self) -> String {
        format!("{}----- current -----\n{}", self.past_logs, self.logs())
    }

    // ----- HTTP -----

    pub fn post(&self, path_and_query: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.post_with(path_and_query, body, &[])
    }

    pub fn post_with(
        &self,
        path_and_query: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        try_post(
            &self.client,
            &self.url(path_and_query),
            body.into(),
            headers,
        )
        .unwrap_or_else(|e| {
            panic!(
                "POST {path_and_query} failed: {e}\nserver stderr:\n{}",
                self.logs()
            )
        })
    }

    /// POST on a new connection (for responses after which the server may close it).
    pub fn post_fresh(
        &self,
        path_and_query: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        try_post(
            &fresh_client(),
            &self.url(path_and_query),
            body.into(),
            headers,
        )
        .unwrap_or_else(|e| {
            panic!(
                "POST {path_and_query} failed: {e:?}\nserver stderr:\n{}",
                self.logs()
            )
        })
    }

    pub fn get(&self, path_and_query: &str) -> Resp {
        self.get_with(path_and_query, &[])
    }

    pub fn get_with(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Resp {
        let mut rb = self.client.get(self.url(path_and_query));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().unwrap_or_else(|e| {
            panic!(
                "GET {path_and_query} failed: {e}\nserver stderr:\n{}",
                self.logs()
            )
        });
        to_resp(r)
    }

    /// Writes through v1 (ns) and asserts 204.
    pub fn write_ok(&self, db: &str, body: &str) {
        let r = self.post(&format!("/write?db={db}"), body.as_bytes().to_vec());
        assert_eq!(r.status, 204, "write failed: {r:?}");
    }

    pub fn metrics(&self) -> Metrics {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "{r:?}");
        Metrics(r.body)
    }

    pub fn assert_healthy(&self) {
        let r = self.get("/health");
        assert_eq!(r.status, 200, "health: {r:?}");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn try_post(
    client: &reqwest::blocking::Client,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Result<Resp, reqwest::Error> {
    let mut rb = client.post(url).body(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    Ok(to_resp(rb.send()?))
}

fn to_resp(r: reqwest::blocking::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = r.text().unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

/// Waits for a child process (a `meridian-compact` run) and asserts it succeeded; `what`
/// prefixes the failure message.
pub fn wait_ok(child: std::process::Child, what: &str) -> std::process::Output {
    let out = child
        .wait_with_output()
        .expect("waiting for the child process");
    assert_success(&out, what);
    out
}

/// Runs `cmd` to its end (stdin closed, stdout and stderr kept) and asserts it succeeded;
/// `what` prefixes the failure message.
pub fn output_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_success(&out, what);
    out
}

fn assert_success(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Prometheus text of `/metrics`.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of `name` with exactly this label text (`endpoint="v1"`), or without labels.
    pub fn value(&self, name: &str, label: Option<&str>) -> f64 {
        let want = match label {
            Some(l) => format!("{name}{{{l}}}"),
            None => name.to_string(),
        };
        for line in self.0.lines() {
            if line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.rsplit_once(' ')
                && k == want
            {
                return v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            }
        }
        panic!("metric {want} not found in:\n{}", self.0)
    }

    /// Sum over the three write endpoints.
    pub fn per_endpoint(&self, name: &str) -> [f64; 3] {
        ["v1", "v2", "v3"].map(|e| self.value(name, Some(&format!("endpoint=\"{e}\""))))
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic randomness (no dependency: SplitMix64)
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------
// Values, rows and line protocol (written independently of the server's writer)
// ---------------------------------------------------------------------------------------

/// A typed field value. Floats compare by bit pattern (so `-0.0 != 0.0`, exact round trips).
#[derive(Clone, Debug)]
pub enum Value {
    Float(f64),
    Int(i64),
    UInt(u64),
    Str(String),
    Bool(bool),
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::UInt(a), Value::UInt(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

pub type Tags = BTreeMap<String, String>;
pub type Fields = BTreeMap<String, Value>;

/// A point's identity: (db, measurement, tag set, time ns).
pub type Key = (String, String, Tags, i64);

/// One row read back from a Parquet file.
#[derive(Clone, Debug)]
pub struct Row {
    pub region: String,
    pub db: String,
    pub measurement: String,
    pub tags: Tags,
    pub time: i64,
    pub fields: Fields,
    /// The file, relative to the data dir.
    pub file: String,
}

impl Row {
    pub fn key(&self) -> Key {
        (
            self.db.clone(),
            self.measurement.clone(),
            self.tags.clone(),
            self.time,
        )
    }
}

/// Measurement: `,` and space escaped.
pub fn esc_measurement(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if c == ',' || c == ' ' {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// Tag key, tag value, field key: `,`, `=` and space escaped.
pub fn esc_key(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if c == ',' || c == ' ' || c == '=' {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// A string field value, quoted, with `"` and `\` escaped.
pub fn quote_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

/// A field value in line protocol. `style` varies the spelling where the grammar allows.
pub fn lp_value(v: &Value, style: u64) -> String {
    match v {
        Value::Float(f) => match style % 3 {
            0 => format!("{f}"),
            1 => format!("{f:?}"),
            _ => format!("{f:e}"),
        },
        Value::Int(i) => format!("{i}i"),
        Value::UInt(u) => format!("{u}u"),
        Value::Str(s) => quote_string(s),
        Value::Bool(b) => {
            let t = ["t", "T", "true", "True", "TRUE"];
            let f = ["f", "F", "false", "False", "FALSE"];
            let i = (style % 5) as usize;
            if *b { t[i] } else { f[i] }.to_string()
        }
    }
}

/// One line of line protocol; `ts` is the timestamp text (already in the request's unit).
pub fn lp_line(
    measurement: &str,
    tags: &Tags,
    fields: &Fields,
    ts: Option<i64>,
    style: u64,
) -> String {
    let mut s = esc_measurement(measurement);
    for (k, v) in tags {
        s.push(',');
        s.push_str(&esc_key(k));
        s.push('=');
        s.push_str(&esc_key(v));
    }
    s.push(' ');
    let fs: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, (k, v))| format!("{}={}", esc_key(k), lp_value(v, style + i as u64)))
        .collect();
    s.push_str(&fs.join(","));
    if let Some(t) = ts {
        s.push(' ');
        s.push_str(&t.to_string());
    }
    s
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Percent-encoding of a measurement in paths, as the README documents it: every byte
/// outside `A-Z a-z 0-9 _ -` becomes `%XX` (upper-case hex); an encoding over 200 bytes is
/// cut to 183 bytes (not inside an escape) followed by `~` and the xxh3-64 hex of the name.
pub fn encode_measurement(name: &str) -> String {
    let mut o = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    if o.len() > 200 {
        let mut cut = 183;
        while o.as_bytes()[cut - 1] == b'%' || o.as_bytes()[cut - 2] == b'%' {
            cut -= 1;
        }
        o.truncate(cut);
        o.push_str(&format!(
            "~{:016x}",
            xxhash_rust::xxh3::xxh3_64(name.as_bytes())
        ));
    }
    o
}

/// `part_day=YYYY-MM-DD/part_hour=HH` (1h partitions) or `part_day=YYYY-MM-DD` (1d).
pub fn partition_dir(start_ns: i64, partition_ns: i64) -> String {
    let t = DateTime::from_timestamp_nanos(start_ns);
    let day = format!("part_day={:04}-{:02}-{:02}", t.year(), t.month(), t.day());
    if partition_ns % (24 * HOUR_NS) == 0 {
        day
    } else {
        format!("{day}/part_hour={:02}", t.hour())
    }
}

// ---------------------------------------------------------------------------------------
// Reading the data dir
// ---------------------------------------------------------------------------------------

/// The manifest directory under a region's storage root.
pub const MANIFEST_DIR: &str = "_manifest";

/// A file name of `_manifest/`: `(version, is_checkpoint)` for `<version:020>.checkpoint.json`
/// and `<version:020>.edit.json`; `None` for anything else (temporary files included).
pub fn parse_manifest_name(name: &str) -> Option<(u64, bool)> {
    let (v, checkpoint) = if let Some(v) = name.strip_suffix(".checkpoint.json") {
        (v, true)
    } else {
        (name.strip_suffix(".edit.json")?, false)
    };
    if v.len() != 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((v.parse().ok()?, checkpoint))
}

/// The versions in a region's `_manifest/`: (checkpoints, edits), each ascending. Empty
/// when there is no `_manifest/` directory.
pub fn manifest_versions(region_dir: &Path) -> (Vec<u64>, Vec<u64>) {
    let (mut checkpoints, mut edits) = (Vec::new(), Vec::new());
    let dir = region_dir.join(MANIFEST_DIR);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (checkpoints, edits),
        Err(e) => panic!("listing {}: {e}", dir.display()),
    };
    for e in rd {
        let e = e.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        match parse_manifest_name(&e.file_name().to_string_lossy()) {
            Some((v, true)) => checkpoints.push(v),
            Some((v, false)) => edits.push(v),
            None => {}
        }
    }
    checkpoints.sort_unstable();
    edits.sort_unstable();
    (checkpoints, edits)
}

/// The manifest state a reader sees, from the names in a `_manifest/` directory and a way to
/// read one of them: the newest checkpoint `C`, then the edits `C+1, C+2, …` while the next
/// one exists (an edit drops the live files whose path it removes, then adds its entries).
/// Returns `(version, files sorted by seq)`, `None` without any checkpoint; an
/// error only when `read` fails (a file listed a moment ago may be gone: the caller retries).
/// `what` names the directory in panic messages. Plain JSON, in the documented format:
/// - checkpoint: `{"format":2 (3 once an entry is packed),"version":V,"files":[…],"next_seq":n,"retired":[…]}`;
/// - edit: `{"version":V,"add":[…],"remove":["<path>",…],"next_seq":n,"at":ns}`.
pub fn manifest_state(
    what: &str,
    names: &[String],
    mut read: impl FnMut(&str) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<Option<(u64, Vec<serde_json::Value>)>> {
    let mut checkpoints = BTreeSet::new();
    let mut edits = BTreeSet::new();
    for n in names {
        match parse_manifest_name(n) {
            Some((v, true)) => checkpoints.insert(v),
            Some((v, false)) => edits.insert(v),
            None => false,
        };
    }
    let Some(&c) = checkpoints.last() else {
        return Ok(None);
    };
    let parse = |name: &str, bytes: &[u8]| -> serde_json::Value {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("manifest file {what}/{name} is not JSON: {e}"))
    };
    let name = format!("{c:020}.checkpoint.json");
    let cp = parse(&name, &read(&name)?);
    // 3 once some entry is packed (README, "Files on disk"), 2 before.
    let packed = cp["files"]
        .as_array()
        .is_some_and(|fs| fs.iter().any(|f| !f["packed"].is_null()));
    assert_eq!(
        cp["format"],
        if packed { 3 } else { 2 },
        "format of {what}/{name}: {cp}"
    );
    assert_eq!(cp["version"], c, "version of {what}/{name}");
    let mut files = cp["files"]
        .as_array()
        .unwrap_or_else(|| panic!("checkpoint {what}/{name} without files array: {cp}"))
        .clone();
    let mut version = c;
    while edits.contains(&(version + 1)) {
        version += 1;
        let name = format!("{version:020}.edit.json");
        let edit = parse(&name, &read(&name)?);
        assert_eq!(edit["version"], version, "version of {what}/{name}");
        let list = |k: &str| -> Vec<serde_json::Value> {
            match &edit[k] {
                serde_json::Value::Null => Vec::new(),
                serde_json::Value::Array(a) => a.clone(),
                other => panic!("{k} of {what}/{name} is not an array: {other}"),
            }
        };
        let removed: BTreeSet<String> = list("remove")
            .iter()
            .map(|p| {
                p.as_str()
                    .unwrap_or_else(|| panic!("remove of {what}/{name} lists {p}, not a path"))
                    .to_string()
            })
            .collect();
        files.retain(|f| !removed.contains(&entry_id(f)));
        for f in list("add") {
            // A file written again under the same name replaces its earlier entry.
            files.retain(|g| entry_id(g) != entry_id(&f));
            files.push(f);
        }
    }
    // Stable: entries of equal seq keep their order.
    files.sort_by_key(|f| f["seq"].as_u64().unwrap_or(0));
    Ok(Some((version, files)))
}

/// What names a manifest entry in an edit's `remove` list: its path, and for a packed
/// file's entry `#<row group>` after it (README, "Files on disk").
fn entry_id(f: &serde_json::Value) -> String {
    let path = f["path"].as_str().unwrap_or_default();
    match f["packed"]["row_group"].as_u64() {
        Some(g) => format!("{path}#{g}"),
        None => path.to_string(),
    }
}

/// [`manifest_state`] of a local region directory, retried while the server replaces files
/// under the reader (a newer checkpoint written and older files deleted between listing and
/// reading).
fn local_manifest_state(region_dir: &Path) -> Option<(u64, Vec<serde_json::Value>)> {
    let dir = region_dir.join(MANIFEST_DIR);
    let what = dir.display().to_string();
    let mut attempt = 0;
    loop {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("listing {what}: {e}"),
        };
        let names: Vec<String> = rd
            .map(|e| {
                e.unwrap_or_else(|e| panic!("listing {what}: {e}"))
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        match manifest_state(&what, &names, |name| std::fs::read(dir.join(name))) {
            Ok(state) => return state,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("reading the manifest in {what}: {e}"),
        }
    }
}

/// The live files of a region (manifest entries, sorted by seq): `None` when the region has
/// no `_manifest/` directory or no checkpoint in it.
pub fn manifest_files(region_dir: &Path) -> Option<Vec<serde_json::Value>> {
    local_manifest_state(region_dir).map(|(_, files)| files)
}

/// The version of a region's manifest as a reader sees it (the newest checkpoint's, plus one
/// per edit after it): each committed edit adds one, whatever checkpoints or clean-up
/// happened meanwhile. `None` without a checkpoint.
pub fn manifest_version(region_dir: &Path) -> Option<u64> {
    local_manifest_state(region_dir).map(|(v, _)| v)
}

fn region_dirs(data_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(data_dir) else {
        return out;
    };
    for e in rd {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
        }
    }
    out.sort();
    out
}

/// Every live row of the data dir: each manifest's files, read and checked against the
/// documented layout. `partition_ns` is the configured partition duration.
pub fn read_rows(data_dir: &Path, partition_ns: i64) -> Vec<Row> {
    let mut rows = Vec::new();
    for (region, rdir) in region_dirs(data_dir) {
        let Some(files) = manifest_files(&rdir) else {
            continue;
        };
        // A seq names one file, but for the outputs of one compaction (which share the seq
        // of their newest input, `<seq>~c<token>-<n>.parquet`).
        let mut seqs: BTreeMap<u64, String> = BTreeMap::new();
        // A packed file is read once for all its measurements.
        let mut loaded: std::collections::HashMap<PathBuf, std::rc::Rc<Loaded>> =
            Default::default();
        for f in &files {
            let seq = f["seq"].as_u64().expect("seq");
            let path = f["path"].as_str().expect("path");
            let name = path.rsplit('/').next().unwrap_or("");
            let group = match name.split_once("~c") {
                Some((_, rest)) => format!("c{}", rest.rsplit_once('-').map_or(rest, |r| r.0)),
                None => path.to_string(),
            };
            if let Some(prev) = seqs.insert(seq, group.clone()) {
                assert!(
                    prev == group && group.starts_with('c'),
                    "file seq {seq} listed twice in {region}: {path} (and {prev})"
                );
            }
            rows.extend(read_file(&region, &rdir, f, partition_ns, &mut loaded));
        }
    }
    rows
}

/// A data file as a reader that knows nothing of Meridian reads it: its schema, rows and
/// footer keys.
struct Loaded {
    schema: arrow::datatypes::SchemaRef,
    batches: Vec<arrow::record_batch::RecordBatch>,
    scaled: BTreeMap<String, i8>,
    tag_names: Vec<String>,
    arrow_schema: bool,
}

fn load(path: &Path) -> Loaded {
    let file = std::fs::File::open(path).unwrap();
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap_or_else(|e| panic!("{} is not Parquet: {e}", path.display()));
    let kv: Vec<(String, Option<String>)> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let footer = |key: &str| {
        kv.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.clone())
    };
    // Float fields with few decimals are stored as DECIMAL(18, s), each listed with its
    // scale in the footer (README, "Files on disk").
    let scaled = footer("meridian.scaled_floats")
        .map(|v| {
            v.split(',')
                .map(|item| {
                    let (n, s) = item.rsplit_once(':').expect("name:scale");
                    (n.to_string(), s.parse().expect("scale"))
                })
                .collect()
        })
        .unwrap_or_default();
    // Tag columns are strings the footer names (`meridian.tag_columns`, a JSON list); the
    // footer holds no Arrow schema, so a reader sees them as plain strings.
    let tag_names: Vec<String> = footer("meridian.tag_columns")
        .map(|v| serde_json::from_str(&v).expect("meridian.tag_columns is a JSON list"))
        .unwrap_or_default();
    let arrow_schema = footer("ARROW:schema").is_some();
    let reader = builder.build().unwrap();
    let schema = reader.schema();
    let batches = reader
        .map(|b| b.unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
        .collect();
    Loaded {
        schema,
        batches,
        scaled,
        tag_names,
        arrow_schema,
    }
}

fn read_file(
    region: &str,
    rdir: &Path,
    f: &serde_json::Value,
    partition_ns: i64,
    loaded: &mut std::collections::HashMap<PathBuf, std::rc::Rc<Loaded>>,
) -> Vec<Row> {
    let s = |k: &str| {
        f[k].as_str()
            .unwrap_or_else(|| panic!("manifest entry without {k}: {f}"))
            .to_string()
    };
    let i = |k: &str| {
        f[k].as_i64()
            .unwrap_or_else(|| panic!("manifest entry without {k}: {f}"))
    };
    let (rel, db, measurement) = (s("path"), s("db"), s("measurement"));
    let (seq, pstart) = (i("seq"), i("partition_start"));
    // Aligned, except the earliest partition, whose aligned start is not a 64-bit time.
    assert!(
        pstart.rem_euclid(partition_ns) == 0 || pstart == i64::MIN,
        "partition_start not aligned: {f}"
    );
    // A small measurement packed with others (README, "Files on disk"): in
    // <db>/~packed/part_day=…/part_hour=…/<seq:020>[~…].parquet, named by a seq of its own,
    // its rows those whose `_measurement` is its name.
    let packed = !f["packed"].is_null();
    // The documented path: <db>/<encoded measurement>/part_day=…/part_hour=…/<seq:020>.parquet,
    // or <seq:020>~<rewrite seq:020>.parquet for a file a delete rewrote.
    let want = if packed {
        let dir = format!("{db}/~packed/{}/", partition_dir(pstart, partition_ns));
        let name = rel
            .strip_prefix(&dir)
            .unwrap_or_else(|| panic!("{rel} not in {dir}"));
        let named: i64 = name[..20.min(name.len())]
            .parse()
            .expect("packed file name");
        format!("{dir}{named:020}")
    } else {
        format!(
            "{db}/{}/{}/{seq:020}",
            encode_measurement(&measurement),
            partition_dir(pstart, partition_ns)
        )
    };
    let rest = rel.strip_prefix(&want).unwrap_or("");
    let rewritten = rest
        .strip_prefix('~')
        .and_then(|r| r.strip_suffix(".parquet"))
        .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()));
    // <seq:020>~c<token>-<n>.parquet for the outputs of a compaction.
    let compacted = rest
        .strip_prefix("~c")
        .and_then(|r| r.strip_suffix(".parquet"))
        .and_then(|r| r.rsplit_once('-'))
        .is_some_and(|(token, n)| {
            !token.is_empty()
                && token.bytes().all(|b| b.is_ascii_alphanumeric())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        });
    assert!(
        rest == ".parquet" || rewritten || compacted,
        "file path in region {region}: {rel}, expected {want}.parquet"
    );
    let path = rdir.join(&rel);
    let meta = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("manifest lists {} but: {e}", path.display()));
    let file_bytes = if packed {
        f["packed"]["file_bytes"].as_u64()
    } else {
        f["bytes"].as_u64()
    };
    assert_eq!(meta.len(), file_bytes.unwrap(), "bytes of {rel}");

    // Column kinds from the manifest.
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    for c in f["columns"].as_array().expect("columns") {
        let name = c[0].as_str().expect("column name").to_string();
        let kind = if c[1] == "tag" {
            "tag".to_string()
        } else {
            c[1]["field"]
                .as_str()
                .unwrap_or_else(|| panic!("column kind {c}"))
                .to_string()
        };
        kinds.insert(name, kind);
    }

    let file = loaded
        .entry(path.clone())
        .or_insert_with(|| std::rc::Rc::new(load(&path)))
        .clone();
    let (schema, scaled, tag_names) = (&file.schema, &file.scaled, &file.tag_names);
    assert!(!file.arrow_schema, "{rel} embeds an Arrow schema");
    let mut seen_cols = BTreeMap::new();
    for field in schema.fields() {
        let name = field.name().clone();
        if packed && (name == "_measurement" || !kinds.contains_key(&name)) {
            // Another measurement's column: null in these rows (checked below).
            continue;
        }
        if name == "time" {
            assert_eq!(
                field.data_type(),
                &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                "time column type in {rel}"
            );
            continue;
        }
        let kind = match field.data_type() {
            DataType::Utf8 if tag_names.contains(&name) => "tag",
            DataType::Float64 => "float",
            DataType::Decimal64(_, s) | DataType::Decimal128(_, s) => {
                assert_eq!(
                    scaled.get(&name),
                    Some(s),
                    "footer scale of {name} in {rel}"
                );
                "float"
            }
            DataType::Int64 => "integer",
            DataType::UInt64 => "uinteger",
            DataType::Utf8 => "string",
            DataType::Boolean => "boolean",
            other => panic!("unexpected column type {other:?} for {name} in {rel}"),
        };
        seen_cols.insert(name, kind.to_string());
    }
    assert_eq!(
        seen_cols, kinds,
        "Parquet columns vs manifest columns of {rel}"
    );

    let mut out = Vec::new();
    for batch in file.batches.iter().cloned() {
        let batch = if packed {
            let names = batch
                .column_by_name("_measurement")
                .unwrap_or_else(|| panic!("packed {rel} without _measurement"));
            let names = names.as_any().downcast_ref::<StringArray>().unwrap();
            let mine: arrow::array::BooleanArray = names
                .iter()
                .map(|n| Some(n == Some(measurement.as_str())))
                .collect();
            let mine = arrow::compute::filter_record_batch(&batch, &mine).unwrap();
            let keep: Vec<usize> = (0..mine.num_columns())
                .filter(|i| {
                    let name = mine.schema().field(*i).name().clone();
                    let ours = name == "time" || kinds.contains_key(&name);
                    if !ours && name != "_measurement" {
                        assert_eq!(
                            mine.column(*i).null_count(),
                            mine.num_rows(),
                            "{measurement} has values in column {name} of {rel}"
                        );
                    }
                    ours
                })
                .collect();
            mine.project(&keep).unwrap()
        } else {
            batch
        };
        let n = batch.num_rows();
        let sch = batch.schema();
        let mut rows: Vec<Row> = (0..n)
            .map(|_| Row {
                region: region.to_string(),
                db: db.clone(),
                measurement: measurement.clone(),
                tags: Tags::new(),
                time: 0,
                fields: Fields::new(),
                file: format!("{region}/{rel}"),
            })
            .collect();
        for (ci, field) in sch.fields().iter().enumerate() {
            let col = batch.column(ci);
            let name = field.name().clone();
            match col.data_type() {
                DataType::Timestamp(_, _) => {
                    let a = col
                        .as_any()
                        .downcast_ref::<TimestampNanosecondArray>()
                        .unwrap();
                    assert_eq!(a.null_count(), 0, "null time in {rel}");
                    for (r, row) in rows.iter_mut().enumerate() {
                        row.time = a.value(r);
                    }
                }
                DataType::Utf8 if tag_names.contains(&name) => {
                    let values = col.as_any().downcast_ref::<StringArray>().unwrap();
                    for (r, row) in rows.iter_mut().enumerate() {
                        if values.is_valid(r) {
                            row.tags.insert(name.clone(), values.value(r).to_string());
                        }
                    }
                }
                dt => {
                    for (r, row) in rows.iter_mut().enumerate() {
                        if col.is_null(r) {
                            continue;
                        }
                        let v = match dt {
                            DataType::Float64 => Value::Float(
                                col.as_any()
                                    .downcast_ref::<Float64Array>()
                                    .unwrap()
                                    .value(r),
                            ),
                            DataType::Decimal64(_, s) => Value::Float(
                                col.as_any()
                                    .downcast_ref::<arrow::array::Decimal64Array>()
                                    .unwrap()
                                    .value(r) as f64
                                    / 10f64.powi(*s as i32),
                            ),
                            DataType::Decimal128(_, s) => Value::Float(
                                col.as_any()
                                    .downcast_ref::<arrow::array::Decimal128Array>()
                                    .unwrap()
                                    .value(r) as f64
                                    / 10f64.powi(*s as i32),
                            ),
                            DataType::Int64 => Value::Int(
                                col.as_any().downcast_ref::<Int64Array>().unwrap().value(r),
                            ),
                            DataType::UInt64 => Value::UInt(
                                col.as_any().downcast_ref::<UInt64Array>().unwrap().value(r),
                            ),
                            DataType::Utf8 => Value::Str(
                                col.as_any()
                                    .downcast_ref::<StringArray>()
                                    .unwrap()
                                    .value(r)
                                    .to_string(),
                            ),
                            DataType::Boolean => Value::Bool(
                                col.as_any()
                                    .downcast_ref::<BooleanArray>()
                                    .unwrap()
                                    .value(r),
                            ),
                            other => panic!("unexpected type {other:?}"),
                        };
                        row.fields.insert(name.clone(), v);
                    }
                }
            }
        }
        out.extend(rows);
    }

    // Row count, time range, partition, field presence and order, as documented.
    assert_eq!(
        out.len() as u64,
        f["rows"].as_u64().unwrap(),
        "rows of {rel}"
    );
    let (mn, mx) = out.iter().fold((i64::MAX, i64::MIN), |(a, b), r| {
        (a.min(r.time), b.max(r.time))
    });
    if !out.is_empty() {
        assert_eq!(
            (mn, mx),
            (i("min_time"), i("max_time")),
            "time range of {rel}"
        );
    }
    for r in &out {
        assert!(
            r.time >= pstart && (r.time as i128) < pstart as i128 + partition_ns as i128,
            "row at {} outside partition {pstart} of {rel}",
            r.time
        );
        assert!(
            !r.fields.is_empty(),
            "row without any field in {rel}: {r:?}"
        );
    }
    // Sorted by tag set (tag columns in name order, missing tags first) then time, strictly
    // (duplicates are merged within a file).
    let tag_cols: Vec<&String> = kinds
        .iter()
        .filter(|(_, k)| *k == "tag")
        .map(|(n, _)| n)
        .collect();
    let sort_key = |r: &Row| -> (Vec<Option<String>>, i64) {
        (
            tag_cols.iter().map(|c| r.tags.get(*c).cloned()).collect(),
            r.time,
        )
    };
    for w in out.windows(2) {
        let (a, b) = (sort_key(&w[0]), sort_key(&w[1]));
        assert!(
            a < b,
            "rows of {rel} not strictly sorted by tag set then time: {a:?} then {b:?}"
        );
    }
    out
}

/// Index rows by identity as queries see them: an identity in several files (a partition
/// flushed early, then written again) merges field by field, the newer file (higher seq)
/// winning, as compaction and queries merge them. Panics if a file holds an identity twice
/// (a flush deduplicates its block).
pub fn rows_by_key_merged(rows: &[Row]) -> BTreeMap<Key, Row> {
    let seq_of = |file: &str| -> u64 {
        let name = file.rsplit('/').next().unwrap_or("");
        name.split(['.', '~'])
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("not a data file name: {file}"))
    };
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by_key(|r| seq_of(&r.file));
    let mut map: BTreeMap<Key, Row> = BTreeMap::new();
    for r in sorted {
        match map.get_mut(&r.key()) {
            None => {
                map.insert(r.key(), r.clone());
            }
            Some(prev) => {
                assert_ne!(
                    prev.file, r.file,
                    "one file holds a point identity twice: {r:#?}"
                );
                for (k, v) in &r.fields {
                    prev.fields.insert(k.clone(), v.clone());
                }
                prev.file = r.file.clone();
                prev.region = r.region.clone();
            }
        }
    }
    map
}

/// Index rows by identity; panics listing the duplicates if any identity occurs twice.
pub fn rows_by_key_exactly_once(rows: &[Row]) -> BTreeMap<Key, Row> {
    let mut map: BTreeMap<Key, Row> = BTreeMap::new();
    let mut dups = Vec::new();
    for r in rows {
        if let Some(prev) = map.insert(r.key(), r.clone()) {
            dups.push((prev, r.clone()));
        }
    }
    assert!(
        dups.is_empty(),
        "{} point identities are stored more than once, e.g. {:#?}",
        dups.len(),
        &dups[..dups.len().min(3)]
    );
    map
}

/// Every file under `root`, relative, sorted (directories end with `/`).
pub fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                stack.push(e.path());
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// After a clean stop: no temporary files, no Parquet file that a manifest does not list, and
/// nothing but the documented kinds of files (lock, routing versions, shard count, manifest
/// checkpoints and edits
/// `<region>/_manifest/<version:020>.{checkpoint,edit}.json`, WAL segments, Parquet).
pub fn assert_clean_data_dir(data_dir: &Path) {
    let mut live = BTreeSet::new();
    for (region, rdir) in region_dirs(data_dir) {
        for f in manifest_files(&rdir).unwrap_or_default() {
            live.insert(format!("{region}/{}", f["path"].as_str().unwrap()));
        }
    }
    let mut problems = Vec::new();
    for rel in tree(data_dir) {
        if rel.ends_with('/') {
            continue;
        }
        let name = rel.rsplit('/').next().unwrap();
        let parts: Vec<&str> = rel.split('/').collect();
        if name.ends_with(".tmp") || name.starts_with('.') {
            problems.push(format!("temporary file left: {rel}"));
        } else if name.ends_with(".parquet") {
            if !live.contains(&rel) {
                problems.push(format!("Parquet file not in any manifest: {rel}"));
            }
        } else if rel == "meridian.lock"
            || rel == "routing.json"
            || rel == "ingest_shards.json"
            || (parts.len() == 3 && parts[1] == MANIFEST_DIR && parse_manifest_name(name).is_some())
            || (parts.len() == 4 && parts[1] == "wal" && name.ends_with(".wal"))
        {
        } else {
            problems.push(format!("unexpected file: {rel}"));
        }
    }
    assert!(
        problems.is_empty(),
        "data dir is not clean:\n{}",
        problems.join("\n")
    );
}

/// WAL segments under the data dir: (region, shard, path), sorted by path.
pub fn wal_segments(data_dir: &Path) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    for (region, rdir) in region_dirs(data_dir) {
        let w = rdir.join("wal");
        let Ok(rd) = std::fs::read_dir(&w) else {
            continue;
        };
        for shard in rd {
            let shard = shard.unwrap();
            for seg in std::fs::read_dir(shard.path()).unwrap() {
                let seg = seg.unwrap();
                out.push((
                    region.clone(),
                    shard.file_name().to_string_lossy().into_owned(),
                    seg.path(),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.2.cmp(&b.2));
    out
}

/// Frames of a WAL segment, parsed from the documented format:
/// `"MRDNWAL1"` then `len:u32le crc:u32le seq:u64le payload[len]`. Returns
/// (offset, seq, payload range) per frame; stops at the first frame that does not fit.
pub fn wal_frames(bytes: &[u8]) -> Vec<(usize, u64, std::ops::Range<usize>)> {
    assert!(bytes.len() >= 8 && &bytes[..8] == b"MRDNWAL1", "WAL header");
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().unwrap());
        let end = pos + 16 + len;
        if end > bytes.len() {
            break;
        }
        out.push((pos, seq, pos + 16..end));
        pos = end;
    }
    out
}

// ---------------------------------------------------------------------------------------
// Nodes of a multi-node deployment
// ---------------------------------------------------------------------------------------

/// A port the kernel just handed out on 127.0.0.1 (free unless someone takes it meanwhile;
/// `oracle`'s `InfluxServer::start` retries on a failed start).
pub fn free_port() -> u16 {
    // Never the same port twice in this process: the kernel may hand a port just let go
    // to the next bind, and a test that asks for several (a NATS server's monitor and
    // gateway ports) got one port twice ("address already in use").
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        let port = l.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// One `meridian serve` of a multi-node deployment: a shared config, its own data dir and
/// port, the regions it hosts, extra flags (`--node`). Killed when dropped.
pub struct Node {
    child: Option<Child>,
    pub url: String,
    args: Vec<String>,
    port: u16,
}

impl Node {
    pub fn start(dir: &Path, config: &Path, port: u16, regions: &[&str], extra: &[&str]) -> Node {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.display().to_string(),
        ];
        for r in regions {
            args.push("--region".into());
            args.push(r.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut node = Node {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            args,
            port,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning meridian");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) if line.starts_with("listening on") => {}
            other => {
                let _ = child.kill();
                panic!("node on port {} did not start: {other:?}", self.port);
            }
        }
        self.child = Some(child);
    }

    /// SIGTERM, and the exit must be clean.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("a running node");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = child.wait().expect("waiting for the node");
        assert!(status.success(), "node exited with {status:?}");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running node").id()
    }

    /// SIGKILL: nothing is flushed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same flags (after `kill9`).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `meridian-compact` on the (stopped) server's data dir; every partition is sealed.
pub fn compact(server: &TestServer, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
        .arg("--config")
        .arg(server.root().join("regions.toml"))
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["--progress", "lines", "--grace", "0s"])
        .args(args)
        .current_dir(server.root())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running meridian-compact");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
