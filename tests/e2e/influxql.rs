//! `/query` (InfluxQL) as the 1.x read clients use it: schema discovery over points in
//! memory and in files, across a restart; `CREATE DATABASE`; the real `influx` CLI and the
//! Python `influxdb` package. The answers themselves are compared with InfluxDB 1.6.7 in
//! [`crate::oracle`].

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{ServerConfig, TestServer};

fn q(s: &TestServer, db: &str, query: &str) -> Value {
    let url = format!(
        "/query?db={db}&q={}",
        form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    );
    let r = s.get(&url);
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    r.json()
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
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "the Python influxdb package is missing (.ci/run installs it) or failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dbs"], json!(["made", "py"]));
    assert_eq!(v["ms"], json!(["cpu", "mem"]));
    assert_eq!(
        v["points"],
        json!([{"time": "2024-01-01T00:00:10Z", "usage": 3}])
    );
    assert_eq!(v["grouped"], json!([["a", 2], ["b", 5]]));
}
