//! What an operator meets on the first day: the start-up summary and config errors that name
//! the key, the value and what is valid, without a backtrace.

use std::process::Command;

use crate::support::{ServerConfig, TestServer};

/// Start-up logs a line per region (hosted here: storage, files, bytes; elsewhere: its
/// node), the WAL replay and the limits in force.
#[test]
fn start_up_summarises_regions_replay_and_limits() {
    let mut s = TestServer::start(ServerConfig {
        memory_limit: "96MiB".into(),
        ..ServerConfig::default()
    });
    s.write_ok(
        "ops",
        "cpu,region=eu-west-1 v=1 1\ncpu,region=us-east-1 v=2 1\n",
    );
    s.stop();
    s.restart();
    s.write_ok("ops", "cpu,region=eu-west-1 v=3 2\n");
    s.kill9();
    s.restart();
    // stderr is read by a thread of its own: the summary may arrive after the ready line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while (s.logs().matches("region hosted here").count() < 4
        || !s.logs().contains("limits in force")
        || !s.logs().contains("WAL replayed"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let logs = s.logs();
    let hosted: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("region hosted here"))
        .collect();
    assert_eq!(hosted.len(), 4, "a line per region:\n{logs}");
    let eu = hosted
        .iter()
        .find(|l| l.contains("region=eu"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        eu.contains("files=1") && eu.contains("file_rows=1"),
        "eu: one flushed file: {eu}"
    );
    assert!(eu.contains("storage="), "{eu}");
    let replay = logs
        .lines()
        .find(|l| l.contains("WAL replayed"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(replay.contains("wal_points=1"), "{replay}");
    let limits = logs
        .lines()
        .find(|l| l.contains("limits in force"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        limits.contains("memory_limit=96MiB") && limits.contains("series_catalog=48MiB"),
        "{limits}"
    );
}

fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regions.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), text)
}

/// `check-config` refuses what `serve` would, each error in a line or two naming the key,
/// the value and what is valid, and no backtrace although RUST_BACKTRACE is set.
#[test]
fn config_errors_name_key_value_and_what_is_valid() {
    let base = include_str!("../../regions.toml");
    // (a line of the repo's file, what it becomes, what the error must name)
    let cases = [
        (
            "segment_bytes = \"64MiB\"",
            "segment_bytes = \"64mb\"",
            &["segment_bytes", "\"mb\"", "MiB"][..],
        ),
        (
            "listen = \"127.0.0.1:8086\"",
            "listen = \"127.0.0.1\"",
            &["http.listen", "\"127.0.0.1\"", "host:port"][..],
        ),
        (
            "high_water = \"768MiB\"",
            "high_water = \"768MiB\"\nseries_catalog = \"1GiB\"",
            &["memory.series_catalog", "memory.high_water"][..],
        ),
    ];
    for (line, changed, words) in cases {
        assert!(base.contains(line), "{line}");
        let text = base.replacen(line, changed, 1);
        let extra = changed;
        let (ok, err) = check_config(&text);
        assert!(!ok, "accepted:\n{extra}");
        for w in words {
            assert!(err.contains(w), "{extra}: {err:?} should name {w}");
        }
        assert!(
            !err.to_lowercase().contains("backtrace") && err.lines().count() <= 2,
            "{err}"
        );
    }
    let (ok, out) = check_config(base);
    assert!(ok, "{out}");
}

/// Prometheus' own parser (the Python client's) and promtool read the exposition; it holds
/// request latencies and statuses per endpoint, process_*, build info, per-region and
/// per-shard gauges and series per database, with values that match what was done.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
        out[key] = s.value
    out["type:" + fam.name] = fam.type
print(json.dumps(out))
"#;

/// Runs `program` with `text` on its stdin; its output. `what` says where it comes from.
fn piped(program: &str, args: &[&str], text: &str, what: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} ({what}): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn parse_exposition(text: &str) -> serde_json::Map<String, serde_json::Value> {
    let out = piped(
        "python3",
        &["-c", PARSE],
        text,
        "with prometheus_client, which .ci/run installs",
    );
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        serde_json::Value::Object(m) => m,
        other => panic!("{other}"),
    }
}

#[test]
fn metrics_are_parsed_by_prometheus_and_match_what_was_done() {
    let s = TestServer::start(ServerConfig {
        shards: 2,
        ..ServerConfig::default()
    });
    // A fresh server (no series, no request yet) has its whole exposition too.
    let fresh = parse_exposition(&s.get("/metrics").body);
    assert!(
        fresh.contains_key("process_resident_memory_bytes{}"),
        "{fresh:?}"
    );
    for i in 0..3 {
        s.write_ok(
            "met",
            &format!("cpu,region=eu-west-1,host=h{i} v={i} {i}\n"),
        );
    }
    let bad = s.post("/write?db=met", b"cpu v=\n".to_vec());
    assert_eq!(bad.status, 400);
    let r = s.get("/api/v1/query?db=met&measurement=cpu&agg=count");
    assert_eq!(r.status, 200);
    let text = s.get("/metrics").body;
    let m = parse_exposition(&text);
    let v = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_f64())
            .unwrap_or_else(|| panic!("{k} missing in:\n{text}"))
    };
    assert_eq!(
        v("meridian_http_requests_total{code=204,endpoint=/write}"),
        3.0
    );
    assert_eq!(
        v("meridian_http_requests_total{code=400,endpoint=/write}"),
        1.0
    );
    assert_eq!(
        v("meridian_http_requests_total{code=200,endpoint=/api/v1/query}"),
        1.0
    );
    assert_eq!(
        v("meridian_http_request_duration_seconds_count{endpoint=/write}"),
        4.0
    );
    assert_eq!(
        m["type:meridian_http_request_duration_seconds"],
        "histogram"
    );
    assert!(v("process_resident_memory_bytes{}") > 1e6);
    assert!(v("process_open_fds{}") > 0.0);
    assert!(v("process_start_time_seconds{}") > 1.7e9);
    let build = m
        .keys()
        .find(|k| k.starts_with("meridian_build_info{commit="))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        build.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert_eq!(v("meridian_series{db=met}"), 3.0);
    assert_eq!(v("meridian_region_hosted{region=eu}"), 1.0);
    assert!(v("meridian_region_disk_free_bytes{region=eu}") > 0.0);
    let rows_in_eu: f64 = (0..2)
        .map(|i| {
            v(&format!(
                "meridian_shard_memory_rows{{region=eu,shard={i}}}"
            ))
        })
        .sum();
    assert_eq!(rows_in_eu, 3.0);
    let wal: f64 = (0..2)
        .map(|i| v(&format!("meridian_shard_wal_bytes{{region=eu,shard={i}}}")))
        .sum();
    assert!(wal > 0.0, "the WAL holds the three writes");
    assert_eq!(m["type:meridian_points_written"], "counter");
    // promtool (Prometheus' linter) finds nothing to say.
    let out = piped(
        "promtool",
        &["check", "metrics"],
        &text,
        "Debian: prometheus, which .ci/run installs",
    );
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With tokens on, `/metrics` takes a client token, a scrape token of its own
/// (`auth.metrics_tokens`, good for nothing else), or none with `auth.metrics_open`.
#[test]
fn metrics_take_their_own_scrape_token_or_none() {
    let scrape = ServerConfig {
        auth_extra: "metrics_tokens = [\"scrape-only-1\"]".into(),
        ..ServerConfig::default().tokens(&["client-token-1"])
    };
    let s = TestServer::start(scrape);
    assert_eq!(s.get("/metrics").status, 401);
    let with = |t: &str| [("Authorization", format!("Token {t}"))];
    let get = |p: &str, t: &str| {
        let h = with(t);
        s.get_with(p, &[(h[0].0, h[0].1.as_str())]).status
    };
    assert_eq!(get("/metrics", "scrape-only-1"), 200);
    assert_eq!(get("/metrics", "client-token-1"), 200);
    assert_eq!(
        get("/api/v1/regions", "scrape-only-1"),
        401,
        "a scrape token reads /metrics only"
    );
    drop(s);
    let open = ServerConfig {
        auth_extra: "metrics_open = true".into(),
        ..ServerConfig::default().tokens(&["client-token-1"])
    };
    let s = TestServer::start(open);
    assert_eq!(s.get("/metrics").status, 200);
    assert_eq!(s.get("/api/v1/regions").status, 401);
}

/// `serve --region` refuses, before touching the data dir, a config whose other regions have
/// no url: every write for them would get a 503 no retry could end.
#[test]
fn serving_some_regions_needs_urls_for_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regions.toml");
    std::fs::write(&config, include_str!("../../regions.toml")).unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--region",
            "eu",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("have no url") && err.contains("americas") && !err.contains("eu,"),
        "{err}"
    );
    assert!(!data.exists(), "nothing was opened");
}

/// Without an explicit `ingest.shards_per_region` a data dir keeps the count it was written
/// with (the default moved from one per core to the cores shared among the regions; a
/// series' shard is its hash modulo the count, so a count that changed under stored data
/// would count rewritten points twice): an older data dir's WAL shard directories give it,
/// it is recorded, and later starts keep it; a record that cannot be read stops start-up.
#[test]
fn a_data_dir_keeps_its_shard_count_without_an_explicit_one() {
    let mut s = TestServer::new(ServerConfig::default().shards(0));
    // A data dir written by an older version with three shards a region.
    for shard in 0..3 {
        std::fs::create_dir_all(s.data_dir().join("global/wal").join(shard.to_string())).unwrap();
    }
    s.spawn(&[]).unwrap();
    let shards = |s: &TestServer| -> Vec<u64> {
        let r = s.get("/api/v1/regions");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["shards"].as_u64().unwrap())
            .collect()
    };
    let first = shards(&s);
    assert!(
        !first.is_empty() && first.iter().all(|n| *n == 3),
        "{first:?}"
    );
    let record = s.data_dir().join("ingest_shards.json");
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(recorded["shards_per_region"], 3);
    // Taken from the WAL directories, not a default that happens to be 3 on this machine.
    assert!(
        s.logs().contains("as this data dir's WAL was written"),
        "{}",
        s.logs()
    );
    s.write_ok("db", "m,host=a v=1i 1700000000000000000\n");
    s.stop();
    s.restart();
    assert_eq!(shards(&s), first);
    // The record wins over the WAL directories (three of them).
    s.stop();
    std::fs::write(&record, b"{\"shards_per_region\": 5}").unwrap();
    s.restart();
    let recorded_count = shards(&s);
    assert!(
        !recorded_count.is_empty() && recorded_count.iter().all(|n| *n == 5),
        "{recorded_count:?}"
    );
    s.stop();
    std::fs::write(&record, b"{\"shards_per_region\": \"three\"}").unwrap();
    let err = s.spawn(&[]).unwrap_err();
    assert!(err.contains("ingest_shards.json"), "{err}");
}
