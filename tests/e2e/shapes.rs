//! Data shapes real agents send, each found by an outside test to panic or answer wrong
//! (issue #12): optional tags, tagless series overwritten across flushes, a field written
//! with another type in another partition, the extreme timestamps InfluxDB accepts, and a
//! carriage return inside a comment line. Every answer is compared with the points the test
//! wrote, in memory and after flushes.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::support::{ServerConfig, TestServer};

const HOUR: i64 = 3_600_000_000_000;
/// 2020-01-01T00:00:00Z: long sealed, so the compactor takes its partitions.
const T0: i64 = 1_577_836_800_000_000_000;

/// The rows of a raw JSON answer as (tags+fields by column name) per time, every series.
fn raw_rows(answer: &Json) -> Vec<BTreeMap<String, Json>> {
    let mut out = Vec::new();
    for s in answer["series"].as_array().expect("series") {
        let cols: Vec<&str> = s["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("column name"))
            .collect();
        for row in s["values"].as_array().expect("values") {
            let mut m = BTreeMap::new();
            for (c, v) in cols.iter().zip(row.as_array().expect("row")) {
                if !v.is_null() {
                    m.insert(c.to_string(), v.clone());
                }
            }
            out.push(m);
        }
    }
    out.sort_by_key(|m| format!("{m:?}"));
    out
}

fn row(pairs: &[(&str, Json)]) -> BTreeMap<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn query(s: &TestServer, q: &str) -> Json {
    let r = s.get(&format!("/api/v1/query?db=shapes&epoch=ns&{q}"));
    assert_eq!(r.status, 200, "{q}: {r:?}");
    let j = r.json();
    assert_eq!(j["partial"], Json::Bool(false), "{q}: {j}");
    j
}

/// Series that do not all carry the same tags: raw answers in JSON, CSV and Arrow, from
/// memory and from files, with every row and its (absent) tags as written.
#[test]
fn optional_tags_answer_in_every_format() {
    let mut s = TestServer::start(ServerConfig::default());
    let body = format!(
        "m,host=a,dc=x v=1 {t}\nm,host=b v=2 {t}\nm v=3 {t}\nm,dc=y v=4 {t1}\nm,host=a s=\"z\" {t1}\n",
        t = T0,
        t1 = T0 + 1
    );
    // Many series at one time, some without `dc`: the raw answer orders rows of one time
    // by their tags, comparing absent tags with present ones.
    let mut body = body;
    let mut extra = Vec::new();
    for i in 0..64 {
        let dc = if i % 3 == 0 {
            format!(",dc=d{}", i % 5)
        } else {
            String::new()
        };
        body.push_str(&format!("m,host=h{i:02}{dc} v={i}.5 {}\n", T0 + 2));
        let mut r = row(&[
            ("host", format!("h{i:02}").into()),
            ("time", (T0 + 2).into()),
            ("v", (i as f64 + 0.5).into()),
        ]);
        if i % 3 == 0 {
            r.insert("dc".into(), format!("d{}", i % 5).into());
        }
        extra.push(r);
    }
    s.write_ok("shapes", &body);
    let want = vec![
        row(&[
            ("dc", "x".into()),
            ("host", "a".into()),
            ("time", T0.into()),
            ("v", 1.0.into()),
        ]),
        row(&[
            ("dc", "y".into()),
            ("time", (T0 + 1).into()),
            ("v", 4.0.into()),
        ]),
        row(&[
            ("host", "a".into()),
            ("s", "z".into()),
            ("time", (T0 + 1).into()),
        ]),
        row(&[("host", "b".into()), ("time", T0.into()), ("v", 2.0.into())]),
        row(&[("time", T0.into()), ("v", 3.0.into())]),
    ];
    let mut want = want;
    want.extend(extra);
    want.sort_by_key(|m| format!("{m:?}"));
    for phase in ["memory", "files"] {
        let j = query(&s, "measurement=m&fields=*");
        assert_eq!(raw_rows(&j), want, "{phase}: {j}");
        // Grouped by a tag some series lack: those form the "" group.
        let j = query(&s, "measurement=m&fields=v&agg=count&group_by=host");
        let mut counts: Vec<(String, i64)> = j["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["tags"]["host"].as_str().unwrap_or("").to_string(),
                    x["values"][0][1].as_i64().unwrap(),
                )
            })
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            [("".to_string(), 2), ("a".into(), 1), ("b".into(), 1)]
                .into_iter()
                .chain((0..64).map(|i| (format!("h{i:02}"), 1)))
                .collect::<Vec<_>>(),
            "{phase}: {j}"
        );
        let r = s.get("/api/v1/query?db=shapes&measurement=m&fields=*&format=csv");
        assert_eq!(r.status, 200, "{phase}: {r:?}");
        assert_eq!(
            r.body.lines().count(),
            1 + want.len(),
            "{phase}: {}",
            r.body
        );
        let r = s
            .client()
            .get(s.url("/api/v1/query?db=shapes&measurement=m&fields=*&format=arrow"))
            .send()
            .expect("arrow query");
        assert_eq!(r.status(), 200, "{phase}");
        let bytes = r.bytes().expect("arrow body");
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .expect("an Arrow IPC stream");
        let rows: usize = reader.map(|b| b.expect("a batch").num_rows()).sum();
        assert_eq!(rows, want.len(), "{phase}");
        s.stop();
        s.restart();
    }
    s.assert_healthy();
}

/// Series without tags, written again across two flushes (overlapping files): every query
/// sees each point once, with the latest value of each field.
#[test]
fn tagless_series_overwritten_across_flushes() {
    let mut s = TestServer::start(ServerConfig::default());
    s.write_ok(
        "shapes",
        &format!("m v=1,w=1i {T0}\nm v=2 {}\nm v=3 {}\n", T0 + 1, T0 + HOUR),
    );
    s.stop();
    s.restart();
    s.write_ok(
        "shapes",
        &format!("m v=10 {T0}\nm x=\"s\" {}\nm v=30 {}\n", T0 + 1, T0 + HOUR),
    );
    let want = {
        let mut w = vec![
            row(&[("time", T0.into()), ("v", 10.0.into()), ("w", 1.into())]),
            row(&[
                ("time", (T0 + 1).into()),
                ("v", 2.0.into()),
                ("x", "s".into()),
            ]),
            row(&[("time", (T0 + HOUR).into()), ("v", 30.0.into())]),
        ];
        w.sort_by_key(|m| format!("{m:?}"));
        w
    };
    for phase in ["memory over a file", "two files"] {
        let j = query(&s, "measurement=m&fields=*");
        assert_eq!(raw_rows(&j), want, "{phase}: {j}");
        let j = query(&s, "measurement=m&fields=v&agg=sum");
        assert_eq!(
            j["series"][0]["values"][0][1],
            Json::from(42.0),
            "{phase}: {j}"
        );
        let j = query(&s, "measurement=m&fields=v&agg=count&every=1h");
        assert_eq!(
            j["series"][0]["values"][0][1],
            Json::from(2),
            "{phase}: {j}"
        );
        s.stop();
        s.restart();
    }
}

/// A field keeps its type across partitions: another type in another hour is a bad line
/// naming the field and both types, and aggregates answer the same before and after flush.
#[test]
fn a_field_type_is_fixed_per_measurement() {
    let mut s = TestServer::start(ServerConfig::default());
    s.write_ok("shapes", &format!("m v=100i {T0}\n"));
    let r = s.post(
        "/write?db=shapes",
        format!("m v=2.5 {}\nm v=7i {}\n", T0 + HOUR, T0 + 2 * HOUR),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("\\\"v\\\"") && r.body.contains("integer") && r.body.contains("float"),
        "{}",
        r.body
    );
    // Another db or measurement is free to choose.
    s.write_ok("shapes", &format!("n v=2.5 {}\n", T0 + HOUR));
    for phase in ["memory", "files"] {
        let j = query(&s, "measurement=m&fields=v&agg=max");
        assert_eq!(
            j["series"][0]["values"][0][1],
            Json::from(100),
            "{phase}: {j}"
        );
        let j = query(&s, "measurement=m&fields=v&agg=sum");
        assert_eq!(
            j["series"][0]["values"][0][1],
            Json::from(107),
            "{phase}: {j}"
        );
        s.stop();
        s.restart();
    }
    // After a restart the type is still known (from the files).
    let r = s.post("/write?db=shapes", format!("m v=1.5 {}\n", T0 + 3 * HOUR));
    assert_eq!(r.status, 400, "{r:?}");
}

/// The earliest and latest times InfluxDB accepts are stored and read back; its sentinels
/// are refused.
#[test]
fn extreme_timestamps_round_trip() {
    let mut s = TestServer::start(ServerConfig::default());
    let (min, max) = (i64::MIN + 2, i64::MAX - 1);
    s.write_ok("shapes", &format!("m v=1 {min}\nm v=2 {max}\n"));
    let r = s.post("/write?db=shapes", format!("m v=3 {}\n", i64::MIN));
    assert_eq!(r.status, 400, "{r:?}");
    for phase in ["memory", "files"] {
        let j = query(&s, "measurement=m&fields=v");
        let mut want = vec![
            row(&[("time", min.into()), ("v", 1.0.into())]),
            row(&[("time", max.into()), ("v", 2.0.into())]),
        ];
        want.sort_by_key(|m| format!("{m:?}"));
        assert_eq!(raw_rows(&j), want, "{phase}: {j}");
        s.stop();
        s.restart();
    }
}

/// A bare carriage return inside a comment line is a bad line (InfluxDB's parsers end the
/// comment there); the other lines are still written.
#[test]
fn carriage_return_inside_a_comment_is_a_bad_line() {
    let s = TestServer::start(ServerConfig::default());
    let r = s.post(
        "/write?db=shapes",
        format!("# note\rm v=9 {T0}\nm v=1 {T0}\n# fine\r\n"),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("line 1") && r.body.contains("carriage return"),
        "{}",
        r.body
    );
    let j = query(&s, "measurement=m&fields=v");
    assert_eq!(
        raw_rows(&j),
        vec![row(&[("time", T0.into()), ("v", 1.0.into())])]
    );
}

/// Measurement names longer than a directory name (InfluxDB accepts up to 64 KiB) are
/// stored under a stable short form, with the full name in the footer and the manifest:
/// written, read back, flushed, restarted and compacted like any other.
#[test]
fn long_measurement_names_are_stored_and_read_back() {
    let mut s = TestServer::start(ServerConfig::default());
    let names = [
        "m".repeat(300),
        format!("{}x", "m".repeat(299)),
        "温度".repeat(200),
        "a b".repeat(5000),
    ];
    for (i, n) in names.iter().enumerate() {
        let escaped = n.replace(' ', "\\ ");
        s.write_ok(
            "shapes",
            &format!(
                "{escaped},host=h v={i} {T0}\n{escaped} v={i}.5 {}\n",
                T0 + HOUR
            ),
        );
    }
    for phase in ["memory", "files"] {
        for (i, n) in names.iter().enumerate() {
            let r = s
                .client()
                .get(s.url("/api/v1/query"))
                .query(&[
                    ("db", "shapes"),
                    ("measurement", n.as_str()),
                    ("fields", "v"),
                    ("agg", "sum"),
                ])
                .send()
                .unwrap();
            let j: Json = r.json().unwrap();
            assert_eq!(
                j["series"][0]["values"][0][1],
                Json::from(2.0 * i as f64 + 0.5),
                "{phase} {i}: {j}"
            );
            assert_eq!(j["series"][0]["name"], Json::from(n.clone()));
        }
        s.stop();
        s.restart();
    }
    let longest = walk_names(&s.data_dir())
        .into_iter()
        .map(|n| n.len())
        .max()
        .unwrap();
    assert!(longest <= 255, "a path component of {longest} bytes");
}

fn walk_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_names(&e.path()));
        }
    }
    out
}
