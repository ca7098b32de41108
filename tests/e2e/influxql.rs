//! `/query` (InfluxQL) as the 1.x read clients use it: schema discovery over points in
//! memory and in files, across a restart; `CREATE DATABASE`; the real `influx` CLI and the
//! Python `influxdb` package. The answers themselves are compared with InfluxDB 1.6.7 in
//! [`crate::oracle`].

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{ServerConfig, TestServer};

fn q(s: &TestServer, db: &str, query: &str) -> Value {
    serde_json::from_str(&ask(s, db, "", query)).unwrap()
}

/// The body of `GET /query` with `query` on `db` and more `params` (asserted 200).
fn ask(s: &TestServer, db: &str, params: &str, query: &str) -> String {
    let url = format!(
        "/query?db={db}&{params}&q={}",
        form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    );
    let r = s.get(&url);
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    r.body
}

/// Runs a Python script (with the `influxdb` package) and parses what it prints as JSON.
fn python_json(script: &str) -> Value {
    let out = crate::support::output_ok(
        Command::new("python3").arg("-c").arg(script),
        "the Python influxdb package is missing (.ci/run installs it) or the script failed",
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn values(v: &Value) -> Vec<Vec<Value>> {
    v["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|row| row.as_array().cloned().unwrap_or_default())
        .collect()
}

const LINES: &str = "cpu,host=a,region=eu usage=1.5,n=2i 1704067200000000000
cpu,host=b usage=3,n=5i 1704067210000000000
cpu,host=c,region=us usage=2 1704067220000000000
mem used=10i 1704067200000000000
";

/// Every answer gives back the very doubles written, `pretty=true` too: it re-reads the
/// compact answer to indent it, and JSON's default float parsing (serde_json without
/// `float_roundtrip`) returned 106.81415022205296 for 106.81415022205297.
#[test]
fn full_precision_floats_come_back_bit_for_bit_in_every_format() {
    let s = TestServer::start(ServerConfig::default());
    // (Not 0: a whole float is written `0`, as InfluxDB does.)
    let written: Vec<f64> = (-40..40)
        .filter(|x| *x != 0)
        .map(|x| f64::from(x) * std::f64::consts::PI)
        .chain([
            106.81415022205297,
            0.1 + 0.2,
            1e-300,
            123_456_789.012_345_67,
        ])
        .collect();
    let body: String = written
        .iter()
        .enumerate()
        .map(|(i, x)| format!("fp v={x:?} {}\n", 1_704_067_200_000_000_000i64 + i as i64))
        .collect();
    assert_eq!(s.post("/write?db=fp", body).status, 204);
    for params in ["", "pretty=true", "epoch=ns&pretty=true"] {
        let text = ask(&s, "fp", params, "SELECT v FROM fp");
        for x in &written {
            // The shortest text that reads back as `x`, as both Rust and the server write it.
            assert!(
                text.contains(&format!("{x:?}")),
                "{params}: {x:?} not in {text}"
            );
        }
    }
}

/// SHOW answers come from the series catalog: the same before the flush (points in memory),
/// and after a clean stop and restart (points only in files, the catalog rebuilt from
/// their tag columns).
#[test]
fn schema_discovery_sees_memory_and_files_across_a_restart() {
    let mut s = TestServer::start(ServerConfig::default());
    s.write_ok("telegraf", LINES);
    let check = |s: &TestServer| {
        assert_eq!(
            values(&q(s, "telegraf", "SHOW MEASUREMENTS")),
            vec![vec![json!("cpu")], vec![json!("mem")]]
        );
        assert_eq!(
            values(&q(
                s,
                "telegraf",
                "SHOW TAG VALUES FROM cpu WITH KEY = host"
            )),
            vec![
                vec![json!("host"), json!("a")],
                vec![json!("host"), json!("b")],
                vec![json!("host"), json!("c")]
            ]
        );
        assert_eq!(
            values(&q(
                s,
                "telegraf",
                "SHOW TAG VALUES FROM cpu WITH KEY = host WHERE region =~ /eu|us/"
            )),
            vec![
                vec![json!("host"), json!("a")],
                vec![json!("host"), json!("c")]
            ]
        );
        assert_eq!(
            values(&q(s, "telegraf", "SHOW SERIES")),
            vec![
                vec![json!("cpu,host=a,region=eu")],
                vec![json!("cpu,host=b")],
                vec![json!("cpu,host=c,region=us")],
                vec![json!("mem")]
            ]
        );
        assert_eq!(
            values(&q(s, "telegraf", "SHOW FIELD KEYS FROM cpu")),
            vec![
                vec![json!("n"), json!("integer")],
                vec![json!("usage"), json!("float")]
            ]
        );
        let sum = q(s, "telegraf", "SELECT sum(n), count(usage) FROM cpu");
        assert_eq!(
            values(&sum),
            vec![vec![json!("1970-01-01T00:00:00Z"), json!(7), json!(3)]]
        );
    };
    check(&s);
    s.stop();
    s.restart();
    check(&s);
}

/// CREATE DATABASE makes an empty database visible, durably; an unknown one is an error
/// of its statement only.
#[test]
fn created_databases_are_listed_and_survive_a_restart() {
    let mut s = TestServer::start(ServerConfig::default());
    let r = q(
        &s,
        "",
        "CREATE DATABASE telegraf; SHOW DATABASES; SHOW TAG KEYS ON nope",
    );
    assert_eq!(r["results"][0], json!({"statement_id": 0}));
    assert_eq!(
        r["results"][1]["series"][0]["values"],
        json!([["telegraf"]])
    );
    assert!(
        r["results"][2]["error"]
            .as_str()
            .unwrap()
            .contains("database not found")
    );
    s.kill9();
    s.restart();
    assert_eq!(
        values(&q(&s, "", "SHOW DATABASES")),
        vec![vec![json!("telegraf")]]
    );
}

/// A bad statement is a 400 with InfluxDB's message shape; a missing `q` too.
#[test]
fn parse_errors_are_400_with_the_1x_message() {
    let s = TestServer::start(ServerConfig::default());
    let r = s.get("/query?q=SELEC%20x");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("error parsing query: found SELEC"),
        "{}",
        r.body
    );
    let r = s.get("/query?db=x");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("missing required parameter"), "{}", r.body);
    // Something Meridian does not support is that statement's error; earlier ones answer.
    let v = q(
        &s,
        "x",
        "SHOW DATABASES; SELECT * FROM (SELECT v FROM m); SHOW DATABASES",
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{v}");
    assert!(results[0]["error"].is_null(), "{v}");
    assert!(
        results[1]["error"].as_str().unwrap().contains("subqueries"),
        "{v}"
    );
}

/// The `influx` 1.x CLI (Debian's influxdb-client) against Meridian: create, import, show,
/// select, as a user types them.
#[test]
fn the_influx_cli_works_unchanged() {
    let s = TestServer::start(ServerConfig::default());
    let (host, port) = s.addr().rsplit_once(':').unwrap();
    let influx = |args: &[&str]| {
        let out = Command::new("influx")
            .args(["-host", host, "-port", port])
            .args(args)
            .output()
            .expect("the `influx` CLI is missing: .ci/run installs Debian's influxdb-client");
        assert!(
            out.status.success(),
            "influx {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    influx(&["-execute", "CREATE DATABASE cli"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("import.txt");
    std::fs::write(
        &file,
        "# DML\n# CONTEXT-DATABASE: cli\ncpu,host=a v=1 1704067200\ncpu,host=b v=3 1704067260\n",
    )
    .unwrap();
    let out = influx(&[
        "-import",
        "-path",
        file.to_str().unwrap(),
        "-precision",
        "s",
    ]);
    assert!(!out.contains("failed"), "{out}");
    let out = influx(&[
        "-database",
        "cli",
        "-format",
        "json",
        "-execute",
        "SHOW TAG VALUES WITH KEY = host",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["results"][0]["series"][0]["values"],
        json!([["host", "a"], ["host", "b"]]),
        "{out}"
    );
    let out = influx(&[
        "-database",
        "cli",
        "-format",
        "csv",
        "-precision",
        "s",
        "-execute",
        "SELECT mean(v) FROM cpu",
    ]);
    assert!(out.contains("cpu,0,2"), "{out}");
    let out = influx(&["-execute", "SHOW DATABASES"]);
    assert!(out.contains("cli"), "{out}");
    influx(&[
        "-database",
        "cli",
        "-execute",
        "DELETE FROM cpu WHERE host = 'a'",
    ]);
    let out = influx(&[
        "-database",
        "cli",
        "-format",
        "json",
        "-execute",
        "SELECT v FROM cpu; SHOW TAG VALUES WITH KEY = host",
    ]);
    assert!(
        out.contains("[\"host\",\"b\"]") && !out.contains("\"a\""),
        "{out}"
    );
    assert!(out.contains(",3]"), "host b's point stays: {out}");
}

/// The Python `influxdb` package (1.x client) reads with query(), get_list_database() and
/// get_list_measurements() unchanged.
#[test]
fn the_python_influxdb_client_reads_unchanged() {
    let s = TestServer::start(ServerConfig::default());
    s.write_ok("py", LINES);
    let (host, port) = s.addr().rsplit_once(':').unwrap();
    let script = format!(
        r#"
import json, influxdb
c = influxdb.InfluxDBClient(host="{host}", port={port}, database="py")
c.create_database("made")
out = {{
  "dbs": sorted(d["name"] for d in c.get_list_database()),
  "ms": [m["name"] for m in c.get_list_measurements()],
  "points": list(c.query('SELECT "usage" FROM "cpu" WHERE "host" = \'b\'').get_points()),
  "grouped": sorted((k[1]["host"], list(v)[0]["max"]) for k, v in c.query("SELECT max(n) FROM cpu GROUP BY host").items()),
}}
print(json.dumps(out))
"#
    );
    let v = python_json(&script);
    assert_eq!(v["dbs"], json!(["made", "py"]));
    assert_eq!(v["ms"], json!(["cpu", "mem"]));
    assert_eq!(
        v["points"],
        json!([{"time": "2024-01-01T00:00:10Z", "usage": 3}])
    );
    assert_eq!(v["grouped"], json!([["a", 2], ["b", 5]]));
}

fn post_q(s: &TestServer, db: &str, query: &str) -> Value {
    let body = format!(
        "db={db}&q={}",
        form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    );
    let r = s.post_with(
        "/query",
        body.into_bytes(),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    let v = r.json();
    assert!(v["results"][0]["error"].is_null(), "{query}: {}", r.body);
    v
}

/// (host, time in s) → value of every point the model says is live.
type Model = std::collections::BTreeMap<(String, i64), i64>;

fn answer(s: &TestServer) -> Model {
    let v = q(s, "del", "SELECT v FROM cpu GROUP BY host");
    let mut out = Model::new();
    for series in v["results"][0]["series"].as_array().into_iter().flatten() {
        let host = series["tags"]["host"].as_str().unwrap().to_string();
        for row in series["values"].as_array().unwrap() {
            let t = chrono::DateTime::parse_from_rfc3339(row[0].as_str().unwrap())
                .unwrap()
                .timestamp();
            out.insert((host.clone(), t), row[1].as_i64().unwrap());
        }
    }
    out
}

/// DELETE and DROP SERIES hide the points from every query at once, in files and in
/// memory, durably: the answer equals a model before and after a kill -9, the Parquet files
/// no longer hold them, and points written afterwards at the same times are visible.
#[test]
fn deletes_are_durable_and_physical_across_memory_and_files() {
    const T0: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
    let mut s = TestServer::start(ServerConfig::default());
    let mut model = Model::new();
    let write = |s: &TestServer, model: &mut Model, round: i64| {
        let mut body = String::new();
        for host in ["a", "b", "c"] {
            // Three hours (three partitions), every 10 minutes; round 2 overwrites half.
            for i in 0..18 {
                if round == 2 && i % 2 == 1 {
                    continue;
                }
                let t = T0 + i * 600;
                let v = round * 1000 + i;
                body.push_str(&format!("cpu,host={host} v={v}i {t}000000000\n"));
                model.insert((host.to_string(), t), v);
            }
        }
        s.write_ok("del", &body);
    };
    write(&s, &mut model, 1);
    s.stop();
    s.restart();
    // Round 2: in memory, over points that are in files.
    write(&s, &mut model, 2);
    assert_eq!(answer(&s), model);

    // host a, hour 1 only.
    post_q(
        &s,
        "del",
        "DELETE FROM cpu WHERE host = 'a' AND time >= '2024-01-01T01:00:00Z' AND time < '2024-01-01T02:00:00Z'",
    );
    model.retain(|(h, t), _| !(h == "a" && *t >= T0 + 3600 && *t < T0 + 7200));
    assert_eq!(answer(&s), model, "after DELETE");
    post_q(&s, "del", "DROP SERIES FROM cpu WHERE host = 'b'");
    model.retain(|(h, _), _| h != "b");
    assert_eq!(answer(&s), model, "after DROP SERIES");
    assert_eq!(
        values(&q(&s, "del", "SHOW TAG VALUES FROM cpu WITH KEY = host")),
        vec![
            vec![json!("host"), json!("a")],
            vec![json!("host"), json!("c")]
        ]
    );

    s.kill9();
    s.restart();
    assert_eq!(answer(&s), model, "after kill -9 and restart");
    // Physically gone: an independent reader of the live files finds exactly the model
    // (before the flush of memory, files hold only what the model has or older versions
    // of its points).
    s.stop();
    let rows = crate::support::read_rows(&s.data_dir(), 3_600_000_000_000);
    for r in &rows {
        let t = r.time / 1_000_000_000;
        let host = r.tags.get("host").cloned().unwrap_or_default();
        assert!(
            model.contains_key(&(host.clone(), t)),
            "a deleted point is still in {}: host={host} t={t}",
            r.file
        );
    }
    s.restart();
    // A point written after the delete at a deleted time is visible.
    s.write_ok("del", &format!("cpu,host=b v=7i {T0}000000000\n"));
    model.insert(("b".into(), T0), 7);
    assert_eq!(answer(&s), model, "a write after the delete");
}

/// DROP MEASUREMENT, DROP DATABASE and /api/v2/delete; the Python client's
/// drop_measurement() and delete_series().
#[test]
fn drops_and_the_v2_delete_api() {
    let s = TestServer::start(ServerConfig::default());
    s.write_ok("d1", LINES);
    s.write_ok("d2", LINES);
    // In one request: what a statement drops is gone for the statements after it.
    let v = q(
        &s,
        "d1",
        "SHOW FIELD KEYS; DROP MEASUREMENT mem; SHOW FIELD KEYS",
    );
    let series = |i: usize| -> Vec<Value> {
        v["results"][i]["series"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["name"].clone())
            .collect()
    };
    assert_eq!(
        (series(0), series(2)),
        (vec![json!("cpu"), json!("mem")], vec![json!("cpu")]),
        "{v}"
    );
    assert_eq!(
        values(&q(&s, "d1", "SHOW MEASUREMENTS")),
        vec![vec![json!("cpu")]]
    );
    assert!(values(&q(&s, "d1", "SELECT * FROM mem")).is_empty());
    post_q(&s, "", "DROP DATABASE d1");
    assert_eq!(
        values(&q(&s, "", "SHOW DATABASES")),
        vec![vec![json!("d2")]]
    );
    assert!(q(&s, "d1", "SELECT * FROM cpu")["results"][0]["error"].is_string());

    let r = s.post_with(
        "/api/v2/delete?org=x&bucket=d2",
        serde_json::to_vec(&json!({
            "start": "2024-01-01T00:00:00Z",
            "stop": "2024-01-01T00:00:10Z",
            "predicate": "_measurement=\"cpu\" AND host=\"b\""
        }))
        .unwrap(),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        values(&q(&s, "d2", "SELECT usage FROM cpu")),
        vec![
            vec![json!("2024-01-01T00:00:00Z"), json!(1.5)],
            vec![json!("2024-01-01T00:00:20Z"), json!(2)]
        ]
    );
    let r = s.post_with(
        "/api/v2/delete?bucket=d2",
        b"{\"start\":\"x\"}".to_vec(),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 400, "{}", r.body);

    let (host, port) = s.addr().rsplit_once(':').unwrap();
    let script = format!(
        r#"
import json, influxdb
c = influxdb.InfluxDBClient(host="{host}", port={port}, database="d2")
c.delete_series(measurement="cpu", tags={{"host": "a"}})
c.drop_measurement("mem")
print(json.dumps({{
  "ms": [m["name"] for m in c.get_list_measurements()],
  "hosts": sorted(v["value"] for v in c.query('SHOW TAG VALUES FROM cpu WITH KEY = "host"').get_points()),
}}))
"#
    );
    let v = python_json(&script);
    assert_eq!(v["ms"], json!(["cpu"]));
    // b lost its only point to a time-bounded delete: it is no longer listed.
    assert_eq!(v["hosts"], json!(["c"]));
}

/// `ORDER BY time DESC LIMIT n` reads a window from the newest points and widens it until
/// each group has n rows that pass the condition: the answer is the same as a full read.
#[test]
fn limited_raw_queries_widen_their_window_until_the_condition_is_met() {
    let s = TestServer::start(ServerConfig::default());
    let mut body = String::new();
    for i in 0..2_000i64 {
        for host in ["a", "b"] {
            body.push_str(&format!("m,host={host} v={i}i {}\n", 1_704_067_200 + i));
        }
    }
    let r = s.post("/write?db=w&precision=s", body.into_bytes());
    assert_eq!(r.status, 204, "{r:?}");
    let v = q(
        &s,
        "w",
        "SELECT v FROM m WHERE v < 10 OR (host = 'b' AND v < 1500) GROUP BY host ORDER BY time DESC LIMIT 3 OFFSET 1",
    );
    let series = v["results"][0]["series"].as_array().unwrap();
    let got: Vec<(String, Vec<i64>)> = series
        .iter()
        .map(|s| {
            (
                s["tags"]["host"].as_str().unwrap().to_string(),
                s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r[1].as_i64().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("b".to_string(), vec![1498, 1497, 1496]),
            ("a".to_string(), vec![8, 7, 6])
        ]
    );
    let asc = q(
        &s,
        "w",
        "SELECT v FROM m WHERE v > 1995 AND host = 'a' LIMIT 2",
    );
    assert_eq!(
        values(&asc)
            .iter()
            .map(|r| r[1].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![1996, 1997]
    );
}

/// The native API answers what only the InfluxQL engine computes (several aggregates,
/// median, percentiles, fill, relative times) in its own shape, checked against values
/// computed here.
#[test]
fn the_native_api_gains_median_percentiles_fill_and_several_aggregates() {
    let s = TestServer::start(ServerConfig::default());
    let now = chrono::Utc::now().timestamp();
    // 10 points a minute apart ending now, values 1..=10, host a; and 2 points for host b.
    let mut body = String::new();
    for i in 0..10i64 {
        body.push_str(&format!("m,host=a v={}i {}\n", i + 1, now - 600 + i * 60));
    }
    body.push_str(&format!(
        "m,host=b v=100i {}\nm,host=b v=200i {}\n",
        now - 120,
        now - 60
    ));
    let r = s.post("/write?db=n&precision=s", body.into_bytes());
    assert_eq!(r.status, 204, "{r:?}");
    let get = |q: &str| {
        let r = s.get(&format!("/api/v1/query?db=n&measurement=m&{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        r.json()
    };
    let a = get("fields=v&agg=median,p90,mean,max&where=host=a&start=-1h");
    assert_eq!(
        a["series"][0]["columns"],
        json!(["time", "median_v", "p90_v", "mean_v", "max_v"])
    );
    // median of 1..=10 is 5.5; nearest-rank p90 of ten values is the 9th: 9.
    let row = a["series"][0]["values"][0].as_array().unwrap();
    assert_eq!(row[1..], [json!(5.5), json!(9), json!(5.5), json!(10)]);
    let b = get("fields=v&agg=spread&group_by=host&start=now-1h");
    let spreads: Vec<(String, i64)> = b["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["tags"]["host"].as_str().unwrap().to_string(),
                s["values"][0][1].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(spreads, vec![("a".to_string(), 9), ("b".to_string(), 100)]);
    // fill(0) over 5-minute buckets of the last hour: every bucket present.
    let c = get("fields=v&agg=count&every=5m&fill=0&where=host=b&start=-1h&end=now");
    let rows = c["series"][0]["values"].as_array().unwrap();
    assert!(rows.len() >= 12, "{c}");
    let total: i64 = rows.iter().map(|r| r[1].as_i64().unwrap()).sum();
    assert_eq!(total, 2);
    let bad = s.get("/api/v1/query?db=n&measurement=m&fields=v&agg=p200");
    assert_eq!(bad.status, 400, "{}", bad.body);
}

/// memory.max_series_per_database bounds the series catalog: at the limit, a line that
/// would add a series is refused (400 naming the limit, its line number), lines of known
/// series are written, and a dropped series frees its place — also after a restart.
#[test]
fn the_series_limit_refuses_new_series_and_frees_dropped_ones() {
    let mut s = TestServer::start(ServerConfig {
        max_series: Some(3),
        ..ServerConfig::default()
    });
    s.write_ok("lim", "m,host=a v=1 1\nm,host=b v=1 1\nm,host=c v=1 1\n");
    let r = s.post(
        "/write?db=lim",
        b"m,host=a v=2 2\nm,host=d v=1 1\n".to_vec(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body
            .contains("max-series-per-database limit exceeded: (3/3)")
            && r.body.contains("line 2"),
        "{}",
        r.body
    );
    assert_eq!(
        values(&q(&s, "lim", "SELECT v FROM m WHERE host = 'a'")).len(),
        2,
        "the known series' point was written"
    );
    // Other databases have their own count.
    s.write_ok("other", "m,host=d v=1 1\n");
    post_q(&s, "lim", "DROP SERIES FROM m WHERE host = 'c'");
    s.write_ok("lim", "m,host=d v=1 1\n");
    s.stop();
    s.restart();
    // SHOW TAG VALUES waits for the start-up load of the catalog (until then the count
    // holds only the series replayed from the WAL).
    assert_eq!(
        values(&q(&s, "lim", "SHOW TAG VALUES FROM m WITH KEY = host")).len(),
        3
    );
    let r = s.post("/write?db=lim", b"m,host=e v=1 1\n".to_vec());
    assert_eq!(r.status, 400, "the count is rebuilt at start-up: {r:?}");
}

/// memory.series_catalog bounds the catalog's bytes whatever the series count: once the
/// catalog holds that much, a line that would add a series is refused (400 naming the key),
/// lines of known series are written. (As with the series count, a request below the bound
/// may pass it by its own new series.) The catalog's bytes are a gauge.
#[test]
fn the_series_catalog_is_bounded_in_bytes() {
    let s = TestServer::start(ServerConfig {
        series_catalog: Some("64KiB".into()),
        ..ServerConfig::default()
    });
    // 1,000 series of 100-byte ids: well over 64 KiB.
    let id = |i: usize| format!("{i:0>100}");
    let body: String = (0..1_000)
        .map(|i| format!("m,id={} v=1 1\n", id(i)))
        .collect();
    s.write_ok("cat", &body);
    let held = s.metrics().value("meridian_series_catalog_bytes", None);
    assert!(
        (64.0 * 1024.0..1e6).contains(&held),
        "1,000 series of 100-byte values: {held} bytes"
    );
    let r = s.post(
        "/write?db=cat",
        format!("m,id={} v=1 1\n", id(5_000)).into_bytes(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("series catalog full") && r.body.contains("memory.series_catalog"),
        "{}",
        r.body
    );
    // Known series are still written, in any database.
    s.write_ok("cat", &format!("m,id={} v=2 2\n", id(0)));
    let v = q(
        &s,
        "cat",
        &format!("SELECT v FROM m WHERE id = '{}'", id(0)),
    );
    assert_eq!(values(&v).len(), 2, "{v}");
    let r = s.post("/write?db=other", b"m,host=a v=1 1\n".to_vec());
    assert_eq!(r.status, 400, "the bound covers every database: {r:?}");
}

/// Chunked windows follow the times files hold, not today's partition_duration: files of
/// day partitions read after the config moved to hours still come back whole, once each.
#[test]
fn chunked_windows_follow_the_files_not_the_config() {
    let mut s = TestServer::start(ServerConfig {
        partition_duration: "1d".into(),
        ..ServerConfig::default()
    });
    let t0: i64 = 1_704_067_200_000_000_000;
    let body: String = (0..96i64)
        .map(|i| format!("d v={i}i {}\n", t0 + i * 1_800_000_000_000))
        .collect();
    s.write_ok("pd", &body);
    s.stop();
    s.set_config(ServerConfig {
        partition_duration: "1h".into(),
        ..ServerConfig::default()
    });
    s.restart();
    s.write_ok("pd", &format!("d v=96i {}\n", t0 + 96 * 1_800_000_000_000));
    let url = |params: &str| {
        format!(
            "/query?db=pd&{params}&q={}",
            form_urlencoded::byte_serialize(b"SELECT v FROM d").collect::<String>()
        )
    };
    let whole = values(&s.get(&url("")).json());
    let chunked: Vec<Vec<Value>> = s
        .get(&url("chunked=true&chunk_size=10"))
        .body
        .lines()
        .flat_map(|l| values(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(whole.len(), 97);
    assert_eq!(chunked, whole);
}

/// A catalog larger than its bound (here loaded at start-up from files written under a
/// larger limit, beyond the whole `memory.limit`) refuses new series but not writes: it
/// counts against the limit at most at its bound, so blocks keep their room.
#[test]
fn a_catalog_past_its_bound_still_takes_writes_of_known_series() {
    let mut s = TestServer::start(ServerConfig::default());
    let id = |i: usize| format!("{i:0>100}");
    for part in 0..4 {
        let body: String = (part * 2_000..(part + 1) * 2_000)
            .map(|i| format!("m,id={} v=1 1\n", id(i)))
            .collect();
        s.write_ok("big", &body);
    }
    s.stop();
    s.set_config(ServerConfig {
        memory_limit: "2MiB".into(),
        max_body_bytes: "1MiB".into(),
        ..ServerConfig::default()
    });
    s.restart();
    // SHOW waits for the start-up load of the catalog: 8,000 series of 100-byte values.
    let n = values(&q(
        &s,
        "big",
        "SHOW TAG VALUES EXACT CARDINALITY FROM m WITH KEY = id",
    ));
    assert_eq!(n[0].last(), Some(&json!(8_000)), "{n:?}");
    let held = s.metrics().value("meridian_series_catalog_bytes", None);
    assert!(
        held > 2.0 * 1024.0 * 1024.0,
        "the catalog is past memory.limit: {held}"
    );
    for i in 0..20 {
        s.write_ok("big", &format!("m,id={} v=2 {}\n", id(i), 2 + i));
    }
    let r = s.post(
        "/write?db=big",
        format!("m,id={} v=1 1\n", id(9_999_999)).into_bytes(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("series catalog full"), "{}", r.body);
}

/// Filled buckets of every group together are bounded by query.max_rows: a statement that
/// would make more is its own error naming the limit; fill(none) answers only the buckets
/// with points.
#[test]
fn filled_buckets_are_bounded_by_max_rows() {
    let s = TestServer::start(ServerConfig {
        query_max_rows: 5_000,
        ..ServerConfig::default()
    });
    s.write_ok(
        "b",
        "m,host=a v=1 1704067200000000000\nm,host=b v=1 1704067200000000000\nm,host=c v=1 1704067200000000000\n",
    );
    let range = "time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T01:00:00Z'";
    let v = q(
        &s,
        "b",
        &format!("SELECT count(v) FROM m WHERE {range} GROUP BY time(1s), host"),
    );
    let err = v["results"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("query.max_rows"), "{v}");
    let v = q(
        &s,
        "b",
        &format!("SELECT count(v) FROM m WHERE {range} GROUP BY time(1s), host fill(none)"),
    );
    assert_eq!(values(&v).len(), 3, "{v}");
}

/// Names with the characters the native parameters use as separators (`=` in a tag key,
/// `,` in a field or tag key, surrounding spaces) answer as any other name.
#[test]
fn names_with_separator_characters_answer_right() {
    let s = TestServer::start(ServerConfig::default());
    s.write_ok(
        "sep",
        "m,a\\=b=x,c\\,d=p x\\,y=5,\\ sp=1 1000000000\nm,a\\=b=y,c\\,d=q x\\,y=7,\\ sp=2 2000000000\n",
    );
    let v = q(&s, "sep", "SELECT \"x,y\" FROM m WHERE \"a=b\" = 'x'");
    assert_eq!(
        values(&v),
        vec![vec![json!("1970-01-01T00:00:01Z"), json!(5)]],
        "{v}"
    );
    let v = q(&s, "sep", "SELECT sum(\" sp\") FROM m GROUP BY \"c,d\"");
    let sums: Vec<(String, i64)> = v["results"][0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["tags"]["c,d"].as_str().unwrap().to_string(),
                s["values"][0][1].as_f64().unwrap() as i64,
            )
        })
        .collect();
    assert_eq!(
        sums,
        vec![("p".to_string(), 1), ("q".to_string(), 2)],
        "{v}"
    );
    // Names that are only a separator, or differ from another by a surrounding space,
    // through `*` and `GROUP BY *` (their text form would lose them).
    s.write_ok("sep2", "m \\,=1,a\\ =2 5\no,z=1,z\\ =u f=1 5\n");
    let v = q(&s, "sep2", "SELECT * FROM m");
    assert_eq!(
        v["results"][0]["series"][0]["columns"],
        json!(["time", ",", "a "]),
        "{v}"
    );
    assert_eq!(
        values(&v),
        vec![vec![
            json!("1970-01-01T00:00:00.000000005Z"),
            json!(1),
            json!(2)
        ]],
        "{v}"
    );
    let v = q(&s, "sep2", "SELECT f FROM o GROUP BY *");
    assert_eq!(
        v["results"][0]["series"][0]["tags"],
        json!({"z": "1", "z ": "u"}),
        "{v}"
    );
}

/// `chunked=true` computes a raw SELECT of a one-series measurement a partition at a time:
/// an export whose answer would pass `query.max_memory` whole streams within it, with the
/// same rows, in order either way, and chunks filled to `chunk_size` across partitions
/// (the last one only without `partial`). Data in files and in memory.
#[test]
fn chunked_raw_selects_stream_a_partition_at_a_time() {
    let mut s = TestServer::start(ServerConfig::default().with_query_memory("2MiB", "4MiB"));
    // 2024-01-01T00:00:00Z; four hours of one series, 900 points an hour with 600-byte
    // strings: about 0.6 MB of strings a partition, 2.2 MB in all.
    let t0: i64 = 1_704_067_200_000_000_000;
    let pad = "x".repeat(600);
    let body = |hours: std::ops::Range<i64>| -> String {
        hours
            .flat_map(|h| (0..900i64).map(move |i| (h, i)))
            .map(|(h, i)| {
                format!(
                    "exp s=\"{h}-{i} {pad}\",v={i}i {}\n",
                    t0 + h * 3_600_000_000_000 + i * 4_000_000_000
                )
            })
            .collect()
    };
    s.write_ok("st", &body(0..2));
    s.stop();
    s.restart();
    s.write_ok("st", &body(2..4));
    let ask = |params: &str, query: &str| ask(&s, "st", params, query);
    // Whole, the answer is over the budget.
    let whole: Value = serde_json::from_str(&ask("", "SELECT s, v FROM exp")).unwrap();
    let err = whole["results"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("query.max_memory"), "{whole:.300}");
    for (order, stmt) in [
        ("asc", "SELECT s, v FROM exp"),
        ("desc", "SELECT s, v FROM exp ORDER BY time DESC"),
    ] {
        let text = ask("chunked=true&chunk_size=1000", stmt);
        let docs: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let sizes: Vec<usize> = docs.iter().map(|d| values(d).len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 1000, 600], "{order}");
        let partial: Vec<bool> = docs
            .iter()
            .map(|d| d["results"][0]["partial"] == json!(true))
            .collect();
        assert_eq!(partial, vec![true, true, true, false], "{order}");
        let rows: Vec<Vec<Value>> = docs.iter().flat_map(values).collect();
        let mut expected: Vec<i64> = (0..4)
            .flat_map(|h| (0..900i64).map(move |i| i + h * 10_000))
            .collect();
        if order == "desc" {
            expected.reverse();
        }
        let got: Vec<i64> = rows
            .iter()
            .map(|r| {
                let (h, i) = r[1]
                    .as_str()
                    .unwrap()
                    .split_once(' ')
                    .unwrap()
                    .0
                    .split_once('-')
                    .unwrap();
                assert_eq!(r[2].as_i64().unwrap().to_string(), i, "{r:?}");
                h.parse::<i64>().unwrap() * 10_000 + i.parse::<i64>().unwrap()
            })
            .collect();
        assert_eq!(got, expected, "{order}: every point once, in order");
    }
    // A smaller answer is the same chunked or whole.
    let stmt =
        "SELECT v FROM exp WHERE time >= '2024-01-01T01:50:00Z' AND time < '2024-01-01T02:10:00Z'";
    let whole: Value = serde_json::from_str(&ask("", stmt)).unwrap();
    let chunked: Vec<Vec<Value>> = ask("chunked=true&chunk_size=7", stmt)
        .lines()
        .flat_map(|l| values(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(values(&whole), chunked);
    assert_eq!(chunked.len(), 300);
    // Several series (a tagless one among them), interleaved in time, across partitions.
    let two: String = (0..2 * 360i64)
        .map(|i| {
            let t = t0 + i * 10_000_000_000;
            format!(
                "two v={i}i {t}\ntwo,host=b v={}i {}\n",
                -i,
                t + 5_000_000_000
            )
        })
        .collect();
    s.write_ok("st", &two);
    for stmt in ["SELECT * FROM two", "SELECT v FROM two ORDER BY time DESC"] {
        let whole: Value = serde_json::from_str(&ask("", stmt)).unwrap();
        let chunked: Vec<Vec<Value>> = ask("chunked=true&chunk_size=100", stmt)
            .lines()
            .flat_map(|l| values(&serde_json::from_str(l).unwrap()))
            .collect();
        assert_eq!(chunked.len(), 1440, "{stmt}");
        assert_eq!(values(&whole), chunked, "{stmt}");
    }
}

/// `GROUP BY time()` of functions computed from the points (median, percentile, a selector
/// with other columns), whose points over the whole range would pass `query.max_memory`,
/// is read a window of whole buckets at a time: with tags, a fill over empty buckets
/// before the data, and `ORDER BY time DESC LIMIT`, every bucket as computed from the
/// points. The same buckets under `tz('UTC')` (not windowed: a zone's buckets are not all
/// one width) pass the budget.
#[test]
fn bucketed_functions_of_points_are_read_a_window_at_a_time() {
    let mut s = TestServer::start(ServerConfig::default().with_query_memory("2MiB", "4MiB"));
    // 2024-01-01T00:00:00Z; four hours of two hosts, a point every two seconds each.
    let t0: i64 = 1_704_067_200_000_000_000;
    let sec = 1_000_000_000i64;
    let v = |host: i64, n: i64| (n * 7919 + host * 104_729) % 1000;
    let body = |hours: std::ops::Range<i64>| -> String {
        let mut out = String::new();
        for n in (hours.start * 3600..hours.end * 3600).step_by(2) {
            for h in 0..2 {
                out.push_str(&format!("pts,host=h{h} v={}i {}\n", v(h, n), t0 + n * sec));
            }
        }
        out
    };
    s.write_ok("win", &body(0..2));
    s.stop();
    s.restart();
    s.write_ok("win", &body(2..4));
    let run = |stmt: &str| -> Value {
        let r: Value = serde_json::from_str(&ask(&s, "win", "epoch=ns", stmt)).unwrap();
        assert!(r["results"][0]["error"].is_null(), "{stmt}: {r:.400}");
        r
    };
    // Per host and 30-minute bucket, from an hour before the data: the median and count of
    // its 900 points, or the fill.
    let range = format!(
        "time >= {} AND time < {}",
        t0 - 3600 * sec,
        t0 + 4 * 3600 * sec
    );
    let stmt = format!(
        "SELECT median(v), count(v) FROM pts WHERE {range} GROUP BY time(30m), host fill(-1)"
    );
    let r = run(&stmt);
    let series = r["results"][0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{r:.300}");
    for (h, sr) in series.iter().enumerate() {
        assert_eq!(sr["tags"]["host"], json!(format!("h{h}")));
        let rows = sr["values"].as_array().unwrap();
        assert_eq!(rows.len(), 10, "{sr:.300}");
        for (b, row) in rows.iter().enumerate() {
            let start = t0 + (b as i64 - 2) * 1800 * sec;
            assert_eq!(row[0], json!(start));
            if b < 2 {
                assert_eq!((&row[1], &row[2]), (&json!(-1), &json!(-1)), "{row:?}");
                continue;
            }
            let first = (b as i64 - 2) * 1800;
            let mut vals: Vec<i64> = (first..first + 1800)
                .step_by(2)
                .map(|n| v(h as i64, n))
                .collect();
            vals.sort_unstable();
            let median = (vals[449] + vals[450]) as f64 / 2.0;
            assert_eq!(row[1].as_f64(), Some(median), "bucket {b}: {row:?}");
            assert_eq!(row[2], json!(900));
        }
    }
    // min() and max() of the whole range (a selector: the time of the earliest point
    // holding the value), per host and with another column of the chosen point.
    let chosen = |hosts: &[i64], largest: bool| -> (i64, i64, i64) {
        let mut best: Option<(i64, i64, i64)> = None;
        for n in (0..4 * 3600).step_by(2) {
            for &h in hosts {
                let x = v(h, n);
                if best.is_none_or(|(b, _, _)| if largest { x > b } else { x < b }) {
                    best = Some((x, n, h));
                }
            }
        }
        best.unwrap()
    };
    let rows = values(&run("SELECT max(v), host FROM pts"));
    let (x, n, h) = chosen(&[0, 1], true);
    assert_eq!(
        rows,
        vec![vec![json!(t0 + n * sec), json!(x), json!(format!("h{h}"))]]
    );
    let r = run("SELECT min(v) FROM pts GROUP BY host");
    let series = r["results"][0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{r:.300}");
    for (h, sr) in series.iter().enumerate() {
        let (x, n, _) = chosen(&[h as i64], false);
        assert_eq!(sr["values"], json!([[t0 + n * sec, x]]), "host {h}");
    }
    // The same buckets under tz('UTC'), read whole: over the budget.
    let whole: Value =
        serde_json::from_str(&ask(&s, "win", "epoch=ns", &format!("{stmt} tz('UTC')"))).unwrap();
    let err = whole["results"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("query.max_memory"), "{whole:.300}");
    // A selector with another column, newest first, the three last hours: each bucket's
    // largest value (at the bucket's start, as InfluxDB answers), with the host of its
    // first point holding it.
    let stmt = format!(
        "SELECT max(v), host FROM pts WHERE time >= {t0} AND time < {end} GROUP BY time(1h) ORDER BY time DESC LIMIT 3",
        end = t0 + 4 * 3600 * sec
    );
    let rows = values(&run(&stmt));
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        let hour = 3 - i as i64;
        let (mut best, mut host) = (-1, 0);
        for n in (hour * 3600..(hour + 1) * 3600).step_by(2) {
            for h in 0..2 {
                if v(h, n) > best {
                    (best, host) = (v(h, n), h);
                }
            }
        }
        assert_eq!(
            row,
            &vec![
                json!(t0 + hour * 3600 * sec),
                json!(best),
                json!(format!("h{host}"))
            ]
        );
    }
}

/// `chunked=true` computes a statement of per-bucket aggregates grouped by `time()` alone
/// with `fill(none)` a window of whole buckets at a time: an answer over `query.max_memory`
/// whole streams within it, each bucket's value as computed from the points; buckets with an
/// offset that cross partition edges, and `ORDER BY time DESC`, answer as the whole
/// statement does; other fills are answered whole, as before.
#[test]
fn chunked_bucketed_selects_stream_a_window_of_buckets_at_a_time() {
    let mut s = TestServer::start(ServerConfig::default().with_query_memory("2MiB", "4MiB"));
    // 2024-01-01T00:00:00Z; four hours of one series, a point a second.
    let t0: i64 = 1_704_067_200_000_000_000;
    let sec = 1_000_000_000i64;
    let body = |hours: std::ops::Range<i64>| -> String {
        hours
            .flat_map(|h| (0..3600i64).map(move |i| h * 3600 + i))
            .map(|n| format!("agg v={n}i,f={} {}\n", n as f64 / 4.0, t0 + n * sec))
            .collect()
    };
    s.write_ok("bk", &body(0..2));
    s.stop();
    s.restart();
    s.write_ok("bk", &body(2..4));
    let ask = |params: &str, query: &str| ask(&s, "bk", &format!("epoch=ns&{params}"), query);
    let chunked = |stmt: &str, size: usize| -> Vec<Vec<Value>> {
        ask(&format!("chunked=true&chunk_size={size}"), stmt)
            .lines()
            .flat_map(|l| {
                let d: Value = serde_json::from_str(l).unwrap();
                assert!(d["results"][0]["error"].is_null(), "{stmt}: {d}");
                values(&d)
            })
            .collect()
    };
    let range = format!("time >= {t0} AND time < {}", t0 + 4 * 3600 * sec);
    // Whole, 14,400 one-second buckets pass the budget; chunked, each comes once, with the
    // mean and max of its one point.
    let stmt =
        format!("SELECT mean(v), max(f) FROM agg WHERE {range} GROUP BY time(1s) fill(none)");
    let whole: Value = serde_json::from_str(&ask("", &stmt)).unwrap();
    let err = whole["results"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("query.max_memory"), "{whole:.300}");
    let rows = chunked(&stmt, 5000);
    assert_eq!(rows.len(), 14_400);
    for (n, r) in rows.iter().enumerate() {
        let n = n as i64;
        assert_eq!(r[0], json!(t0 + n * sec));
        assert_eq!(r[1].as_f64(), Some(n as f64), "{r:?}");
        assert_eq!(r[2].as_f64(), Some(n as f64 / 4.0), "{r:?}");
    }
    // Smaller answers (an hour across the edge of the files and the memory): the same
    // chunked or whole, buckets of 7 minutes starting 2 minutes past (across the hour's
    // edge), ascending and descending, with arithmetic.
    let range = format!("time >= {} AND time < {}", t0 + 5400 * sec, t0 + 9000 * sec);
    for stmt in [
        format!(
            "SELECT count(v), median(f), spread(v) FROM agg WHERE {range} GROUP BY time(7m, 2m) fill(none)"
        ),
        format!(
            "SELECT mean(f) * 2 + 1, last(v) FROM agg WHERE {range} GROUP BY time(7m, 2m) fill(none) ORDER BY time DESC"
        ),
        format!("SELECT sum(v) FROM agg WHERE {range} GROUP BY time(25m) fill(none)"),
        // Not streamed (other fills answer empty buckets of the whole range): the same.
        format!("SELECT sum(v) FROM agg WHERE {range} GROUP BY time(25m) fill(0)"),
    ] {
        let whole: Value = serde_json::from_str(&ask("", &stmt)).unwrap();
        assert!(whole["results"][0]["error"].is_null(), "{stmt}: {whole}");
        let want = values(&whole);
        assert!(!want.is_empty(), "{stmt}");
        assert_eq!(chunked(&stmt, 13), want, "{stmt}");
    }
    // The 7-minute buckets of the four hours hold every point once.
    let stmt =
        format!("SELECT count(v) FROM agg WHERE time >= {t0} GROUP BY time(7m, 2m) fill(none)");
    let total: i64 = chunked(&stmt, 10)
        .iter()
        .map(|r| r[1].as_i64().unwrap())
        .sum();
    assert_eq!(total, 14_400);
}

/// `chunked=true` streams statements grouped by `time()` alone under `fill(null)` too:
/// every bucket of the range is answered, windows without points (before, between and
/// after the data, and where the condition matches nothing) filled as the whole answer
/// fills them, so an answer over `query.max_rows` whole comes back in full, chunked, also
/// when an empty stretch alone holds more buckets than `query.max_rows`; `LIMIT`/`OFFSET`
/// count rows across windows; a condition that no point matches answers no series, as
/// whole. Number fills and raw selects with `LIMIT` (answered whole) answer the same.
#[test]
fn chunked_filled_selects_answer_every_bucket_a_window_at_a_time() {
    let s = TestServer::start(ServerConfig {
        query_max_rows: 20_000,
        ..ServerConfig::default()
    });
    // 2024-01-01T00:00:00Z; points a second in hours 1, 2 and 6 of eight, host a before
    // the gap, b after it.
    let t0: i64 = 1_704_067_200_000_000_000;
    let sec = 1_000_000_000i64;
    let mut body = String::new();
    for h in [1i64, 2, 6] {
        let host = if h < 6 { "a" } else { "b" };
        for i in 0..3600i64 {
            let n = h * 3600 + i;
            // Field g only after the gap.
            let g = if h == 6 { ",g=1i" } else { "" };
            body.push_str(&format!(
                "fl,host={host} v={n}i,f={}{g} {}\n",
                n as f64 / 4.0,
                t0 + n * sec
            ));
        }
    }
    s.write_ok("fl", &body);
    let ask = |params: &str, query: &str| ask(&s, "fl", &format!("epoch=ns&{params}"), query);
    let chunked = |stmt: &str, size: usize| -> (Vec<Vec<Value>>, usize) {
        let text = ask(&format!("chunked=true&chunk_size={size}"), stmt);
        let mut rows = Vec::new();
        for l in text.lines() {
            let d: Value = serde_json::from_str(l).unwrap();
            assert!(d["results"][0]["error"].is_null(), "{stmt}: {d}");
            rows.extend(values(&d));
        }
        (rows, text.lines().count())
    };
    let whole = |stmt: &str| -> Value { serde_json::from_str(&ask("", stmt)).unwrap() };
    // 28,800 one-second buckets: over max_rows whole, every one of them chunked.
    let range = format!("time >= {t0} AND time < {}", t0 + 8 * 3600 * sec);
    let stmt = format!("SELECT max(v), count(f) FROM fl WHERE {range} GROUP BY time(1s)");
    let w = whole(&stmt);
    let err = w["results"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("query.max_rows"), "{w:.300}");
    let (rows, docs) = chunked(&stmt, 5000);
    assert_eq!(rows.len(), 28_800);
    assert_eq!(docs, 6);
    for (n, r) in rows.iter().enumerate() {
        let n = n as i64;
        let has = matches!(n / 3600, 1 | 2 | 6);
        assert_eq!(r[0], json!(t0 + n * sec));
        if has {
            assert_eq!(r[1], json!(n), "{r:?}");
            assert_eq!(r[2], json!(1), "{r:?}");
        } else {
            // count() of an empty bucket is 0 under fill(null), as InfluxDB answers.
            assert_eq!(r[1], Value::Null, "{r:?}");
            assert_eq!(r[2], json!(0), "{r:?}");
        }
    }
    // Fourteen hours: the seven empty ones after the data (25,200 buckets) alone pass
    // max_rows; windows are cut within it.
    let stmt = format!(
        "SELECT max(v) FROM fl WHERE time >= {t0} AND time < {} GROUP BY time(1s)",
        t0 + 14 * 3600 * sec
    );
    let (rows, _) = chunked(&stmt, 10_000);
    assert_eq!(rows.len(), 14 * 3600);
    assert_eq!(rows[6 * 3600 + 5][1], json!(6 * 3600 + 5));
    assert!(rows[7 * 3600..].iter().all(|r| r[1].is_null()));
    // fill(previous) over max_rows whole: the empty hours take the last value before them.
    let stmt = format!("SELECT max(v) FROM fl WHERE {range} GROUP BY time(1s) fill(previous)");
    let w = whole(&stmt);
    assert!(
        w["results"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("query.max_rows")
    );
    let (rows, _) = chunked(&stmt, 5000);
    assert_eq!(rows.len(), 28_800);
    for (n, r) in rows.iter().enumerate() {
        let n = n as i64;
        let want = match n / 3600 {
            0 => Value::Null,
            1 | 2 | 6 => json!(n),
            3..=5 => json!(3 * 3600 - 1),
            _ => json!(7 * 3600 - 1),
        };
        assert_eq!(r[1], want, "{n}: {r:?}");
    }
    // count(g) has points only in the last hour with data: every empty bucket before it
    // is 0 too (windows are held until a window shows g), as the whole answer has it.
    let stmt = format!("SELECT count(g) FROM fl WHERE {range} GROUP BY time(1s) fill(null)");
    let (rows, _) = chunked(&stmt, 5000);
    assert_eq!(rows.len(), 28_800);
    for (n, r) in rows.iter().enumerate() {
        let want = i64::from(n / 3600 == 6);
        assert_eq!(r[1], json!(want), "{n}: {r:?}");
    }
    // Smaller answers: the same chunked or whole, whatever the chunk size (a window holds
    // about a chunk's buckets, at least 64: at 13 rows a chunk, the fill(null) statements
    // below are computed in two to seven windows). Ranges that
    // start and end in empty hours, buckets across hour edges, descending order, numbers
    // as fill, a condition matching host b only (its first windows hold no point of it),
    // LIMIT and OFFSET across windows, a selector's other column.
    let range = format!(
        "time >= {} AND time < {}",
        t0 + 1800 * sec,
        t0 + 27000 * sec
    );
    for stmt in [
        format!("SELECT mean(v), sum(f) FROM fl WHERE {range} GROUP BY time(3m, 1m)"),
        format!(
            "SELECT mean(v) FROM fl WHERE {range} GROUP BY time(3m, 1m) fill(null) ORDER BY time DESC"
        ),
        format!("SELECT count(v), max(f) * 2 FROM fl WHERE {range} GROUP BY time(5m) fill(-1.5)"),
        format!("SELECT last(v) FROM fl WHERE {range} GROUP BY time(10m) fill(7)"),
        format!("SELECT min(v) FROM fl WHERE {range} AND host = 'b' GROUP BY time(5m)"),
        format!(
            "SELECT min(v) FROM fl WHERE {range} AND host = 'b' GROUP BY time(5m) ORDER BY time DESC"
        ),
        format!("SELECT max(v), f FROM fl WHERE {range} GROUP BY time(10m) fill(0)"),
        format!("SELECT mean(v) FROM fl WHERE {range} GROUP BY time(1m) LIMIT 100 OFFSET 50"),
        format!(
            "SELECT mean(v) FROM fl WHERE {range} GROUP BY time(1m) fill(none) LIMIT 70 OFFSET 10"
        ),
        format!(
            "SELECT mean(v) FROM fl WHERE {range} GROUP BY time(1m) ORDER BY time DESC LIMIT 300"
        ),
        // g only in the last window with data; before the gap (no g in the range: null).
        format!("SELECT count(g), count(v) FROM fl WHERE {range} GROUP BY time(5m)"),
        format!(
            "SELECT count(g), mean(v) FROM fl WHERE {range} GROUP BY time(5m) ORDER BY time DESC"
        ),
        format!(
            "SELECT count(g), count(v) FROM fl WHERE time >= {t0} AND time < {} GROUP BY time(2m)",
            t0 + 5 * 3600 * sec
        ),
        // fill(previous): each window starts from the last values of those before it.
        format!("SELECT max(v), count(g) FROM fl WHERE {range} GROUP BY time(5m) fill(previous)"),
        format!(
            "SELECT mean(v) FROM fl WHERE {range} GROUP BY time(3m, 1m) fill(previous) ORDER BY time DESC"
        ),
        format!(
            "SELECT last(f) FROM fl WHERE {range} AND host = 'b' GROUP BY time(5m) fill(previous) LIMIT 40 OFFSET 5"
        ),
    ] {
        let w = whole(&stmt);
        assert!(w["results"][0]["error"].is_null(), "{stmt}: {w}");
        let want = values(&w);
        assert!(!want.is_empty(), "{stmt}");
        for size in [13, 100] {
            assert_eq!(chunked(&stmt, size).0, want, "{stmt}");
        }
    }
    // No point matches: no series, chunked as whole.
    let stmt = format!("SELECT mean(v) FROM fl WHERE {range} AND host = 'z' GROUP BY time(10m)");
    assert!(values(&whole(&stmt)).is_empty());
    assert!(chunked(&stmt, 13).0.is_empty());
}

/// A chunked answer's series, in order: each document holds one piece of one series,
/// `partial` on a series that the next document continues and on every document but the
/// last; pieces of one series are joined.
fn chunked_series(text: &str) -> Vec<(Value, Vec<Vec<Value>>)> {
    let docs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut out: Vec<(Value, Vec<Vec<Value>>)> = Vec::new();
    let mut continues = false;
    for (i, d) in docs.iter().enumerate() {
        let r = &d["results"][0];
        assert!(r["error"].is_null(), "{d}");
        let last = i + 1 == docs.len();
        assert_eq!(
            r["partial"].as_bool().unwrap_or(false),
            !last,
            "document {i}: {d:.200}"
        );
        let series = r["series"].as_array().cloned().unwrap_or_default();
        assert!(series.len() <= 1, "{d:.200}");
        for sr in series {
            let key = json!([sr["name"], sr["tags"]]);
            let rows: Vec<Vec<Value>> = (sr["values"].as_array().into_iter().flatten())
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect();
            match out.last_mut() {
                Some((k, held)) if continues => {
                    assert_eq!(*k, key, "a continued series changed");
                    held.extend(rows);
                }
                _ => {
                    assert!(out.iter().all(|(k, _)| *k != key), "{key} answered twice");
                    out.push((key, rows));
                }
            }
            continues = sr["partial"].as_bool().unwrap_or(false);
        }
    }
    assert!(!continues, "the last piece is continued");
    out
}

/// `chunked=true` computes a statement grouped by tags a batch of groups at a time (the
/// first key's values from the series catalog, each batch over the whole range): an answer
/// over `query.max_rows` whole comes back in full, every group's buckets as written; a
/// batch of one value still too large goes by the values of the next key under it. The
/// same rows and series order as whole, at two chunk sizes, with `ORDER BY time DESC`,
/// `SLIMIT`/`SOFFSET`, `LIMIT`/`OFFSET`, fills, a transformation, raw rows, a tag and a
/// field condition, and series without the grouping tags.
#[test]
fn chunked_selects_grouped_by_tags_answer_a_batch_of_groups_at_a_time() {
    let s = TestServer::start(ServerConfig {
        query_max_rows: 20_000,
        ..ServerConfig::default()
    });
    // 2024-01-01T00:00:00Z; two hours of a point every 10 s for 60 hosts, dc x for 40 of
    // them, y for 10 and none for the last 10, and a series with neither tag (index 60).
    let t0: i64 = 1_704_067_200_000_000_000;
    let sec = 1_000_000_000i64;
    let v = |h: i64, n: i64| (n * 31 + h * 17) % 1000;
    let tags = |h: i64| match h {
        0..40 => format!(",dc=x,host=h{h:02}"),
        40..50 => format!(",dc=y,host=h{h:02}"),
        50..60 => format!(",host=h{h:02}"),
        _ => String::new(),
    };
    let mut body = String::new();
    for n in 0..720i64 {
        for h in 0..61i64 {
            body.push_str(&format!(
                "gt{} v={}i,f={} {}\n",
                tags(h),
                v(h, n),
                (v(h, n) as f64) / 8.0,
                t0 + n * 10 * sec
            ));
        }
    }
    s.write_ok("gt", &body);
    let ask = |params: &str, query: &str| ask(&s, "gt", &format!("epoch=ns&{params}"), query);
    let chunked = |stmt: &str, size: usize| {
        chunked_series(&ask(&format!("chunked=true&chunk_size={size}"), stmt))
    };
    let whole = |stmt: &str| -> Value { serde_json::from_str(&ask("", stmt)).unwrap() };
    let host_of = |tags: &Value| -> i64 {
        tags["host"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map_or(60, |h| h[1..].parse().unwrap())
    };
    // 61 groups of 720 buckets: over max_rows whole, every bucket chunked.
    let range = format!("time >= {t0} AND time < {}", t0 + 7200 * sec);
    for (stmt, keys) in [
        (
            format!("SELECT max(v), count(f) FROM gt WHERE {range} GROUP BY time(10s), host"),
            1,
        ),
        // Sorted keys dc, host: dc x holds 40 groups (28,800 rows, over max_rows in one
        // part), answered by halves of its hosts.
        (
            format!("SELECT max(v), count(f) FROM gt WHERE {range} GROUP BY time(10s), host, dc"),
            2,
        ),
    ] {
        let w = whole(&stmt);
        let err = w["results"][0]["error"].as_str().unwrap_or_default();
        assert!(err.contains("query.max_rows"), "{w:.300}");
        let got = chunked(&stmt, 5000);
        assert_eq!(got.len(), 61, "{stmt}");
        let mut order = Vec::new();
        for (key, rows) in &got {
            let h = host_of(&key[1]);
            let dc = key[1]["dc"].as_str().unwrap_or_default().to_string();
            order.push(if keys == 1 {
                (String::new(), key[1]["host"].as_str().unwrap().to_string())
            } else {
                (dc, key[1]["host"].as_str().unwrap().to_string())
            });
            assert_eq!(rows.len(), 720, "{key}");
            for (n, r) in rows.iter().enumerate() {
                let n = n as i64;
                assert_eq!(
                    r,
                    &vec![json!(t0 + n * 10 * sec), json!(v(h, n)), json!(1)],
                    "{key}"
                );
            }
        }
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "{stmt}: series in the order of their groups");
    }
    // The `influx` CLI (chunked, as it asks by default) prints every row of the answer
    // refused whole.
    let (host, port) = s.addr().rsplit_once(':').unwrap();
    let stmt = format!("SELECT max(v) FROM gt WHERE {range} GROUP BY time(10s), host");
    let out = Command::new("influx")
        .args(["-host", host, "-port", port, "-database", "gt"])
        .args(["-format", "csv", "-precision", "ns", "-execute", &stmt])
        .output()
        .expect("the `influx` CLI is missing: .ci/run installs Debian's influxdb-client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text:.300}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = text.lines().filter(|l| !l.starts_with("name,")).collect();
    assert_eq!(rows.len(), 61 * 720, "{text:.300}");
    for line in rows.iter().step_by(97) {
        let f: Vec<&str> = line.split(',').collect();
        let h = match f[1].strip_prefix("host=h") {
            Some(n) => n.parse::<i64>().unwrap(),
            None => 60,
        };
        let n = (f[2].parse::<i64>().unwrap() - t0) / (10 * sec);
        assert_eq!(f[3], v(h, n).to_string(), "{line}");
    }
    // So does the Python `influxdb` package's chunked query (a result set per document).
    let script = format!(
        r#"
import json, influxdb
c = influxdb.InfluxDBClient(host="{host}", port={port}, database="gt")
rows = {{}}
for rs in c.query({stmt:?}, chunked=True, chunk_size=5000, epoch="ns"):
    for (name, tags), points in rs.items():
        rows.setdefault(tags.get("host", ""), []).extend(p["max"] for p in points)
print(json.dumps(rows))
"#
    );
    let got = python_json(&script);
    let got = got.as_object().unwrap();
    assert_eq!(got.len(), 61);
    for (host, maxes) in got {
        let h = host
            .strip_prefix('h')
            .map_or(60, |n| n.parse::<i64>().unwrap());
        let want: Vec<i64> = (0..720).map(|n| v(h, n)).collect();
        assert_eq!(maxes, &json!(want), "host {host:?}");
    }
    // Equal to whole, each answer between a part (a quarter of max_rows: 5,000 rows) and
    // max_rows, so that it is computed in parts chunked and fits whole: over twenty minutes
    // (10 s buckets: 7,381 rows; the points of a field condition fit max_rows) or the
    // two hours (coarser buckets).
    let range = format!("time >= {} AND time < {}", t0 + 1800 * sec, t0 + 3000 * sec);
    let wide = format!("time >= {t0} AND time < {}", t0 + 7200 * sec);
    let cases = [
        format!("SELECT mean(v) FROM gt WHERE {range} GROUP BY time(10s), host"),
        format!("SELECT mean(v) FROM gt WHERE {range} GROUP BY time(10s), host ORDER BY time DESC"),
        format!("SELECT max(v) FROM gt WHERE {range} GROUP BY time(10s), host SLIMIT 7 SOFFSET 50"),
        // 41 groups a part: SLIMIT and SOFFSET count across parts.
        format!("SELECT max(v) FROM gt WHERE {wide} GROUP BY time(1m), host SLIMIT 2 SOFFSET 4"),
        format!(
            "SELECT last(f), count(v) FROM gt WHERE {wide} GROUP BY time(30s), dc, host fill(-1) LIMIT 5 OFFSET 3"
        ),
        format!(
            "SELECT mean(v) FROM gt WHERE {range} AND (v > 500 OR v < 100) GROUP BY time(10s), host fill(previous) ORDER BY time DESC SLIMIT 20"
        ),
        format!(
            "SELECT mean(v) FROM gt WHERE {range} AND v > 500 GROUP BY time(10s), host fill(linear)"
        ),
        format!("SELECT derivative(mean(v), 10s) FROM gt WHERE {range} GROUP BY time(10s), host"),
        format!("SELECT v, f FROM gt WHERE {range} AND host =~ /h[0-4]/ GROUP BY host"),
        format!("SELECT max(v), f FROM gt WHERE {range} GROUP BY time(10s), host, nosuch"),
        format!("SELECT count(v) FROM gt WHERE {range} AND dc != 'y' GROUP BY time(10s), dc, host"),
    ];
    for stmt in &cases {
        let w = whole(stmt);
        assert!(w["results"][0]["error"].is_null(), "{stmt}: {w:.300}");
        let want: Vec<(Value, Vec<Vec<Value>>)> = (w["results"][0]["series"].as_array())
            .into_iter()
            .flatten()
            .map(|sr| {
                let rows = (sr["values"].as_array().into_iter().flatten())
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect();
                (json!([sr["name"], sr["tags"]]), rows)
            })
            .collect();
        assert!(!want.is_empty(), "{stmt}");
        for size in [50, 10_000] {
            assert_eq!(chunked(stmt, size), want, "{stmt} at {size} rows a chunk");
        }
    }
}

/// Daily buckets in a zone across the day clocks go back (America/New_York, 2023-11-05 is
/// 25 hours long): `count` and `integral` over hourly points answer per local day, with no
/// bucket for the extra hour, compared with sums computed here. `integral`'s trapezoid
/// ending at a day's last instant belongs to that day.
#[test]
fn zone_days_across_a_daylight_saving_change_are_whole_buckets() {
    let s = TestServer::start(ServerConfig::default());
    const HOUR: i64 = 3_600;
    // 2023-11-04T00:00:00Z, then hourly for three days: v cycles 1..=7.
    let t0: i64 = 1_699_056_000;
    let value = |h: i64| (h % 7 + 1) as f64;
    let body: String = (0..72)
        .map(|h| format!("d v={} {}\n", value(h), t0 + h * HOUR))
        .collect();
    let url = "/write?db=dst&precision=s";
    let r = s.post(url, body);
    assert_eq!(r.status, 204, "{}", r.body);
    // Local midnights: 04:00Z (EDT) on the 4th and 5th, 05:00Z (EST) from the 6th.
    let days = [
        (t0 + 4 * HOUR, t0 + 28 * HOUR),
        (t0 + 28 * HOUR, t0 + 53 * HOUR),
        (t0 + 53 * HOUR, t0 + 77 * HOUR),
    ];
    let range = "time >= '2023-11-04T04:00:00Z' AND time < '2023-11-07T05:00:00Z'";
    let zone = "tz('America/New_York')";
    let epoch_s = |query: String| -> Value {
        serde_json::from_str(&ask(&s, "dst", "epoch=s", &query)).unwrap()
    };
    let v = epoch_s(format!(
        "SELECT count(v) FROM d WHERE {range} GROUP BY time(1d) fill(0) {zone}"
    ));
    let hours_in = |(a, b): (i64, i64)| {
        (0..72)
            .filter(|h| (a..b).contains(&(t0 + h * HOUR)))
            .count()
    };
    let expected: Vec<Vec<Value>> = days
        .iter()
        .map(|d| vec![json!(d.0), json!(hours_in(*d))])
        .collect();
    assert_eq!(values(&v), expected, "{v}");
    let v = epoch_s(format!(
        "SELECT integral(v, 1h) FROM d WHERE {range} GROUP BY time(1d) {zone}"
    ));
    // Each hourly trapezoid lies in the day where it starts; the range ends at the last
    // point (72 h), so the last day is cut there.
    let area = |(a, b): (i64, i64)| -> f64 {
        (0..71)
            .filter(|h| (a..b).contains(&(t0 + h * HOUR)))
            .map(|h| (value(h) + value(h + 1)) / 2.0)
            .sum()
    };
    let got: Vec<f64> = values(&v).iter().map(|r| r[1].as_f64().unwrap()).collect();
    let want: Vec<f64> = days.iter().map(|d| area(*d)).collect();
    assert_eq!(got, want, "{v}");
}

/// Without a lower time bound, `GROUP BY time` buckets start at the first point of the
/// function's own field, not at a point that only other fields (or series) have, as
/// influxd 1.6.7 answered this case.
#[test]
fn buckets_without_a_lower_bound_start_at_the_fields_first_point() {
    let s = TestServer::start(ServerConfig::default());
    let r = s.post(
        "/write?db=lb&precision=s",
        "m,h=a x=1.5 10\nm,h=b r=2.5 20\nm,h=b x=2 40\n",
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let v: Value = serde_json::from_str(&ask(
        &s,
        "lb",
        "epoch=s",
        "SELECT mean(r) FROM m WHERE time < 50s GROUP BY time(10s)",
    ))
    .unwrap();
    assert_eq!(
        values(&v),
        vec![
            vec![json!(20), json!(2.5)],
            vec![json!(30), Value::Null],
            vec![json!(40), Value::Null]
        ],
        "{v}"
    );
    // Each function from its own first point: `count(r)` is null, not 0, before it.
    let v: Value = serde_json::from_str(&ask(
        &s,
        "lb",
        "epoch=s",
        "SELECT count(x), count(r) FROM m WHERE time < 50s GROUP BY time(10s)",
    ))
    .unwrap();
    assert_eq!(
        values(&v),
        vec![
            vec![json!(10), json!(1), Value::Null],
            vec![json!(20), json!(0), json!(1)],
            vec![json!(30), json!(0), json!(0)],
            vec![json!(40), json!(1), json!(0)]
        ],
        "{v}"
    );
}

/// The statement errors the oracle compares by presence only, checked for what they say;
/// and a percentile rank far outside the points answers nothing (it overflowed before).
#[test]
fn statement_errors_name_what_is_wrong() {
    let s = TestServer::start(ServerConfig::default());
    s.write_ok("se", "m,h=a x=1.5,i=3i,s=\"t\" 10\nm,h=b x=2.5,i=4i 20\n");
    let error = |query: &str| -> String {
        let v = q(&s, "se", query);
        v["results"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        error("SELECT top(x, 3) FROM m LIMIT 2"),
        "limit (3) in top function can not be larger than the LIMIT (2) in the select statement"
    );
    for q in ["SELECT x & 1 FROM m", "SELECT max(x) | i FROM m"] {
        let e = error(q);
        assert!(
            e.starts_with("type error:") && e.contains("bitwise"),
            "{q}: {e}"
        );
    }
    let e = error("SELECT last(s) * 2 FROM m");
    assert!(e.contains("last(s) is a string"), "{e}");
    let e = error("SELECT difference(s) FROM m");
    assert!(
        e.starts_with("unsupported difference iterator type: string"),
        "{e}"
    );
    // Integers still take bitwise operators.
    assert_eq!(error("SELECT i & 1 FROM m"), "");
    for pct in ["-1e300", "1e300"] {
        let v = q(&s, "se", &format!("SELECT percentile(x, {pct}) FROM m"));
        assert_eq!(v["results"][0], json!({"statement_id": 0}), "{pct}: {v}");
    }
}
