//! Query parameters and limits an outside test found wrong (issue #12): `group_by=time` is a
//! 400, not a partial answer; the `u=` 1.x clients send is accepted; `query.timeout` bounds
//! the whole request and stops the scans, so a timed-out query answers on time with its
//! regions marked `timeout` and leaves the server responsive.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{ServerConfig, TestServer};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

#[test]
fn group_by_time_is_a_bad_request_and_u_is_accepted() {
    let s = TestServer::start(ServerConfig::default());
    s.write_ok("ql", &format!("m,host=a v=1 {T0}\n"));
    let r = s.get("/api/v1/query?db=ql&measurement=m&agg=mean&group_by=time");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("every="), "{}", r.body);
    let r = s.get("/api/v1/query?db=ql&measurement=m&agg=count&u=grafana&p=x");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["series"][0]["values"][0][1], 1, "{}", r.body);
}

#[test]
fn the_query_timeout_bounds_the_whole_request() {
    let s = TestServer::start(ServerConfig {
        query_timeout: Some("60ms".into()),
        ..ServerConfig::default()
    });
    // Enough rows in memory and in four regions that a raw query of all of them takes far
    // longer than 60 ms (about 150 ms on an idle 2-core machine).
    for chunk in 0..20 {
        let mut body = String::new();
        for i in 0..10_000i64 {
            let n = chunk * 10_000 + i;
            let region = ["us-east-1", "eu-west-1", "ap-south-1", "zz"][(n % 4) as usize];
            body.push_str(&format!(
                "m,host=h{},region={region} a={n}.5,b={n}i,c=\"s{n}\" {}\n",
                n % 500,
                T0 + n
            ));
        }
        s.write_ok("ql", &body);
    }
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let url = s.url("/api/v1/query?db=ql&measurement=m&fields=*&agg=none");
            std::thread::spawn(move || {
                let started = Instant::now();
                let r = crate::support::http_client()
                    .get(url)
                    .send()
                    .expect("query");
                let status = r.status().as_u16();
                let body = r.text().unwrap_or_default();
                (started.elapsed(), status, body)
            })
        })
        .collect();
    for t in threads {
        let (took, status, body) = t.join().unwrap();
        assert_eq!(status, 200, "{body:.300}");
        let j: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(j["partial"], true, "{:.300}", body);
        let timed_out = j["regions"]
            .as_object()
            .unwrap()
            .values()
            .filter(|r| r["status"] == "timeout")
            .count();
        assert!(timed_out >= 1, "{:.600}", body);
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }
    // The scans stopped: the server answers at once.
    let started = Instant::now();
    s.assert_healthy();
    let r = s.get("/api/v1/query?db=ql&measurement=m&agg=count&fields=a&where=host=h1");
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

/// A query whose partial answers would pass `query.max_memory` is refused whole with a 413
/// naming the key, not answered in part and not allowed to take the host's memory (one
/// `fields=*` raw query over 1 M points added 1.2 GiB of RSS); smaller answers still come,
/// and a fine-bucket answer is streamed a part at a time.
#[test]
fn query_memory_is_bounded() {
    let s = TestServer::start(ServerConfig::default().with_query_memory("3MiB", "6MiB"));
    for chunk in 0..10 {
        let body: String = (0..5_000i64)
            .map(|i| {
                let n = chunk * 5_000 + i;
                format!(
                    "m,host=h{} a={n}.5,b={n}i,c=\"some text {n}\" {}\n",
                    n % 200,
                    T0 + n * 1_000_000
                )
            })
            .collect();
        s.write_ok("qm", &body);
    }
    let raw = s.get("/api/v1/query?db=qm&measurement=m&fields=*");
    assert_eq!(raw.status, 413, "{:.300}", raw.body);
    assert!(raw.body.contains("query.max_memory"), "{}", raw.body);
    // A bucketed answer this large is streamed a batch of groups at a time (each within
    // the budget): every point in its own bucket.
    let fine = s.get("/api/v1/query?db=qm&measurement=m&fields=*&agg=mean&every=1ms&group_by=host");
    assert_eq!(fine.status, 200, "{:.300}", fine.body);
    let j = fine.json();
    assert_eq!(j["partial"], false);
    let series = j["series"].as_array().unwrap();
    assert_eq!(series.len(), 200);
    let rows: usize = series
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows, 50_000);
    let ok = s.get("/api/v1/query?db=qm&measurement=m&fields=a&agg=count&group_by=host");
    assert_eq!(ok.status, 200, "{:.300}", ok.body);
    assert_eq!(ok.json()["series"].as_array().unwrap().len(), 200);
    let ok = s.get("/api/v1/query?db=qm&measurement=m&fields=a&where=host=h7");
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.json()["series"][0]["values"].as_array().unwrap().len(),
        250
    );
    // The same after a flush: the files are read under the same budget.
    let mut s = s;
    s.stop();
    s.restart();
    let raw = s.get("/api/v1/query?db=qm&measurement=m&fields=*");
    assert_eq!(raw.status, 413, "{:.300}", raw.body);
    let m = s.metrics();
    assert!(m.value("meridian_queries_total", None) >= 1.0);
}

/// JSON and CSV answers are streamed: sent in chunks as they are serialized (no Content-Length, the
/// whole document never held), complete when read to the end; a client that leaves in the
/// middle stops the writing and the server goes on.
#[test]
fn json_answers_are_streamed() {
    let s = TestServer::start(ServerConfig::default());
    let body: String = (0..30_000i64)
        .map(|n| format!("m,host=h{} a={n}.5,c=\"text {n}\" {}\n", n % 20, T0 + n))
        .collect();
    s.write_ok("st", &body);
    let r = s.get("/api/v1/query?db=st&measurement=m&fields=*&epoch=ns");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("transfer-encoding").map(String::as_str),
        Some("chunked"),
        "{:?}",
        r.headers
    );
    assert!(!r.headers.contains_key("content-length"));
    let j = r.json();
    let rows: usize = j["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows, 30_000);
    let csv = s.get("/api/v1/query?db=st&measurement=m&fields=*&format=csv");
    assert_eq!(csv.status, 200);
    assert_eq!(
        csv.headers.get("transfer-encoding").map(String::as_str),
        Some("chunked")
    );
    assert_eq!(csv.body.lines().count(), 1 + 30_000);
    // Leave after the first bytes.
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.write_all(b"GET /api/v1/query?db=st&measurement=m&fields=* HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 256];
    let _ = c.read(&mut first).unwrap();
    drop(c);
    s.assert_healthy();
}

/// InfluxQL functions computed from the points themselves (`distinct`, percentiles,
/// transformations) copy the values they read: those copies count against
/// `query.max_memory` too, so a statement whose raw points fit but whose working copies do
/// not is refused naming the key, instead of holding memory nothing counted.
#[test]
fn local_aggregation_copies_count_against_the_query_budget() {
    let s = TestServer::start(ServerConfig::default().with_query_memory("3MiB", "6MiB"));
    let pad = "x".repeat(700);
    let body: String = (0..1_500i64)
        .map(|n| {
            format!(
                "m,host=h{} s=\"{n} {pad}\",v={n}i {}\n",
                n % 10,
                T0 + n * 1_000_000
            )
        })
        .collect();
    s.write_ok("lq", &body);
    let q = |stmt: &str| {
        let r = s.get(&format!(
            "/query?db=lq&q={}",
            stmt.replace(' ', "%20")
                .replace('(', "%28")
                .replace(')', "%29")
        ));
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["results"][0].clone()
    };
    let raw = q("SELECT s FROM m");
    assert_eq!(
        raw["series"][0]["values"].as_array().map(|v| v.len()),
        Some(1_500),
        "the raw points fit the budget: {:.300}",
        raw.to_string()
    );
    let distinct = q("SELECT distinct(s) FROM m");
    let err = distinct["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("query.max_memory"),
        "{:.300}",
        distinct.to_string()
    );
    // Small enough, the same function answers.
    let one = q("SELECT distinct(s) FROM m WHERE host = 'h3'");
    assert_eq!(
        one["series"][0]["values"].as_array().map(|v| v.len()),
        Some(150),
        "{:.300}",
        one.to_string()
    );
}

/// A point of the export test: time, host, rack, a, b, c.
type ExportPoint = (i64, String, Option<String>, f64, i64, Option<String>);

/// The points of the export tests: 4 hours (4 partitions), one a second, 4 hosts, a tag
/// only some series carry, a field only some lines carry.
fn export_points() -> Vec<ExportPoint> {
    (0..14_400i64)
        .map(|n| {
            let host = format!("h{}", n % 4);
            let rack = (n % 4 < 2).then(|| format!("r{}", n % 2));
            let c = (n % 3 == 0).then(|| format!("text, \"{n}\""));
            (T0 + n * 1_000_000_000, host, rack, n as f64 / 4.0, n * 7, c)
        })
        .collect()
}

/// A raw answer larger than `query.max_memory` (the export of a measurement, every point of
/// it) is computed a window at a time and streamed, in JSON, CSV and Arrow: every point comes
/// back, in time order, with the measurement's columns, in memory and after a flush; `limit`
/// and a time range cut across windows. An instant alone too large for the budget is still a
/// 413 before anything is sent; one met after rows were sent ends a JSON answer partial
/// with the reason, and cuts a CSV answer short (never ended as if complete).
#[test]
fn raw_exports_larger_than_the_query_budget_are_streamed() {
    let (mut s, points) = export_server();
    let want_row = |p: &ExportPoint| serde_json::json!([p.0, p.1, p.2, p.3, p.4, p.5]);
    for phase in ["in memory", "in files"] {
        let r = s.get("/api/v1/query?db=ex&measurement=m&fields=*&epoch=ns");
        assert_eq!(r.status, 200, "{phase}: {:.300}", r.body);
        let j = r.json();
        assert_eq!(j["partial"], false, "{phase}");
        let series = j["series"].as_array().unwrap();
        assert_eq!(series.len(), 1, "{phase}");
        assert_eq!(
            series[0]["columns"],
            serde_json::json!(["time", "host", "rack", "a", "b", "c"])
        );
        let got = series[0]["values"].as_array().unwrap();
        assert_eq!(got.len(), points.len(), "{phase}");
        for (g, p) in got.iter().zip(&points) {
            assert_eq!(g, &want_row(p), "{phase}");
        }
        // The whole answer would not fit: the same query with an aggregate-free field list
        // too, and a limit and a time range that cross windows.
        let r = s.get("/api/v1/query?db=ex&measurement=m&fields=c,a&epoch=ns&limit=5000");
        assert_eq!(r.status, 200, "{phase}: {:.300}", r.body);
        let j = r.json();
        assert_eq!(
            j["series"][0]["columns"],
            serde_json::json!(["time", "c", "a"])
        );
        let got = j["series"][0]["values"].as_array().unwrap();
        assert_eq!(got.len(), 5000);
        for (g, p) in got.iter().zip(&points) {
            assert_eq!(g, &serde_json::json!([p.0, p.5, p.3]), "{phase}");
        }
        let (lo, hi) = (points[1000].0, points[12_000].0);
        let r = s.get(&format!(
            "/api/v1/query?db=ex&measurement=m&fields=*&epoch=ns&start={lo}&end={hi}"
        ));
        assert_eq!(r.status, 200, "{phase}: {:.300}", r.body);
        let got = r.json()["series"][0]["values"].as_array().unwrap().clone();
        assert_eq!(got.len(), 11_000);
        assert_eq!(got[0], want_row(&points[1000]));
        assert_eq!(got[10_999], want_row(&points[11_999]));

        // CSV: the header, then every point as a line.
        let csv = s.get("/api/v1/query?db=ex&measurement=m&fields=*&format=csv&epoch=ns");
        assert_eq!(csv.status, 200, "{phase}: {:.300}", csv.body);
        let mut lines = csv.body.lines();
        assert_eq!(lines.next(), Some("name,time,host,rack,a,b,c"));
        let want: Vec<String> = points
            .iter()
            .map(|(t, host, rack, a, b, c)| {
                let c = c
                    .as_ref()
                    .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                    .unwrap_or_default();
                let a = serde_json::json!(a);
                format!(
                    "m,{t},{host},{},{a},{b},{c}",
                    rack.clone().unwrap_or_default()
                )
            })
            .collect();
        let got: Vec<&str> = lines.collect();
        assert_eq!(got.len(), want.len(), "{phase}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{phase}");
        }

        // Arrow: the measurement's types, every point.
        let arrow = s
            .client()
            .get(s.url("/api/v1/query?db=ex&measurement=m&fields=*&format=arrow"))
            .send()
            .unwrap();
        assert_eq!(arrow.status(), 200);
        let bytes = arrow.bytes().unwrap().to_vec();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let schema = reader.schema();
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect();
        assert_eq!(
            types,
            [
                "time:Timestamp(ns, \"UTC\")",
                "host:Utf8",
                "rack:Utf8",
                "a:Float64",
                "b:Int64",
                "c:Utf8"
            ]
        );
        let (mut rows, mut sum_b, mut cs) = (0usize, 0i64, 0usize);
        for batch in reader {
            let batch = batch.unwrap();
            rows += batch.num_rows();
            let b = batch
                .column_by_name("b")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            sum_b += b.iter().flatten().sum::<i64>();
            cs += batch.num_rows() - batch.column_by_name("c").unwrap().null_count();
        }
        assert_eq!(rows, points.len(), "{phase}");
        assert_eq!(sum_b, points.iter().map(|p| p.4).sum::<i64>(), "{phase}");
        assert_eq!(cs, points.iter().filter(|p| p.5.is_some()).count());
        if phase == "in memory" {
            s.stop();
            s.restart();
        }
    }

    // One instant holding more rows than the budget: refused before anything is sent when
    // it comes first; after rows were sent, a JSON answer ends partial with the reason and
    // a CSV answer is cut short.
    let crowd: String = (0..15_000)
        .map(|i| {
            format!(
                "big,host=h{i} v={i}i,s=\"some padding text\" {}\n",
                T0 + 3_600_000_000_000
            )
        })
        .collect();
    let early: String = (0..100)
        .map(|i| format!("big,host=h{i} v={i}i {}\n", T0 + i))
        .collect();
    s.write_ok("ex", &crowd);
    let r = s.get(&format!(
        "/api/v1/query?db=ex&measurement=big&fields=*&start={}",
        T0 + 1_000
    ));
    assert_eq!(r.status, 413, "{:.300}", r.body);
    assert!(r.body.contains("query.max_memory"), "{}", r.body);
    s.write_ok("ex", &early);
    let r = s.get("/api/v1/query?db=ex&measurement=big&fields=*");
    assert_eq!(r.status, 200, "{:.300}", r.body);
    let j = r.json();
    assert_eq!(j["partial"], true);
    assert_eq!(j["series"][0]["values"].as_array().unwrap().len(), 100);
    let warnings = j["warnings"].to_string();
    assert!(warnings.contains("after 100 rows"), "{warnings}");
    assert!(warnings.contains("query.max_memory"), "{warnings}");
    let cut = s
        .client()
        .get(s.url("/api/v1/query?db=ex&measurement=big&fields=*&format=csv"))
        .send()
        .unwrap();
    assert_eq!(cut.status(), 200);
    assert!(
        cut.text().is_err(),
        "a CSV answer that failed midway must not end cleanly"
    );
    s.assert_healthy();
}

/// A raw answer with `group_by` larger than the budget streams a batch of the first key's
/// values at a time: one series per group, in group order, every point once, in JSON and
/// CSV; a group alone too large for the budget goes by time windows (one key).
#[test]
fn grouped_raw_exports_stream_a_batch_of_groups_at_a_time() {
    let mut s = TestServer::start(ServerConfig::default().with_query_memory("1MiB", "4MiB"));
    let points = export_points();
    let lp: String = points
        .iter()
        .map(|(t, host, rack, a, b, _)| {
            let rack = rack
                .as_ref()
                .map(|r| format!(",rack={r}"))
                .unwrap_or_default();
            format!("g,host={host}{rack} a={a},b={b}i,pad=\"some text to make rows wider\" {t}\n")
        })
        .collect();
    s.write_ok("ex", &lp);
    s.stop();
    s.restart();
    for group_by in ["host", "rack", "host,rack"] {
        let r = s.get(&format!(
            "/api/v1/query?db=ex&measurement=g&fields=a,b&group_by={group_by}&epoch=ns"
        ));
        assert_eq!(r.status, 200, "{group_by}: {:.300}", r.body);
        let j = r.json();
        assert_eq!(j["partial"], false);
        let keys: Vec<&str> = group_by.split(',').collect();
        // The model: per group (values of the keys, "" when absent), rows in time order.
        let mut want: BTreeMap<Vec<String>, Vec<serde_json::Value>> = BTreeMap::new();
        for (t, host, rack, a, b, _) in &points {
            let key = keys
                .iter()
                .map(|k| match *k {
                    "host" => host.clone(),
                    _ => rack.clone().unwrap_or_default(),
                })
                .collect();
            want.entry(key)
                .or_default()
                .push(serde_json::json!([t, a, b]));
        }
        let got: Vec<(Vec<String>, Vec<serde_json::Value>)> = j["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["columns"], serde_json::json!(["time", "a", "b"]));
                let key = keys
                    .iter()
                    .map(|k| s["tags"][k].as_str().unwrap().to_string())
                    .collect();
                (key, s["values"].as_array().unwrap().clone())
            })
            .collect();
        let want: Vec<(Vec<String>, Vec<serde_json::Value>)> = want.into_iter().collect();
        assert_eq!(got.len(), want.len(), "{group_by}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0, "{group_by}: group order");
            assert!(g.1 == w.1, "{group_by}: rows of {:?}", g.0);
        }
        let csv = s.get(&format!(
            "/api/v1/query?db=ex&measurement=g&fields=a,b&group_by={group_by}&format=csv"
        ));
        assert_eq!(csv.status, 200);
        assert_eq!(csv.body.lines().count(), 1 + points.len(), "{group_by}");
        assert_eq!(
            csv.body.lines().next(),
            Some(format!("name,{group_by},time,a,b").as_str())
        );
    }
}

/// (time, dc, zone, host, a, b).
type WidePoint = (i64, &'static str, Option<&'static str>, String, f64, i64);

/// A group's values of the `group_by` keys, and its rows (time, a, b).
type GroupRows = (Vec<String>, Vec<(i64, f64, i64)>);

/// A raw or bucketed answer grouped by several keys where one value of a key holds more
/// rows than the budget: that value goes by the values of the next key under it, and a
/// value of the last key by time windows. Every group once, in group order, every point
/// once, in memory and in files. On the old code each was a 413.
#[test]
fn a_group_value_too_large_for_the_budget_goes_by_the_next_key() {
    let mut s = TestServer::start(ServerConfig::default().with_query_memory("1MiB", "4MiB"));
    // dc=a: one host of 200 points; dc=b: eight hosts of 2,000 points, all in zone z0
    // (the zone tag only on dc=b).
    let mut points: Vec<WidePoint> = Vec::new();
    for n in 0..200i64 {
        points.push((
            T0 + n * 1_000_000_000,
            "a",
            None,
            "h9".into(),
            n as f64 / 2.0,
            n,
        ));
    }
    for h in 0..8i64 {
        for n in 0..2000i64 {
            let t = T0 + n * 1_000_000_000;
            points.push((
                t,
                "b",
                Some("z0"),
                format!("h{h}"),
                (n * h) as f64 / 4.0,
                n + h,
            ));
        }
    }
    let lp: String = points
        .iter()
        .map(|(t, dc, zone, host, a, b)| {
            let zone = zone.map(|z| format!(",zone={z}")).unwrap_or_default();
            format!("w,dc={dc},host={host}{zone} a={a},b={b}i {t}\n")
        })
        .collect();
    s.write_ok("ex", &lp);
    for phase in ["in memory", "in files"] {
        for (group_by, every) in [
            ("dc,host", ""),
            ("dc,zone,host", ""),
            ("dc,zone", ""),
            ("dc,host", "&agg=sum&every=1s"),
        ] {
            let r = s.get(&format!(
                "/api/v1/query?db=ex&measurement=w&fields=a,b&group_by={group_by}{every}&epoch=ns"
            ));
            assert_eq!(r.status, 200, "{phase}, {group_by}{every}: {:.300}", r.body);
            let j = r.json();
            assert_eq!(j["partial"], false, "{phase}, {group_by}");
            let keys: Vec<&str> = group_by.split(',').collect();
            // The model: per group (values of the keys, "" when absent), rows in time order
            // (a sum over one point's bucket is the point: b exact, a as a float).
            let mut want: BTreeMap<Vec<String>, Vec<(i64, f64, i64)>> = BTreeMap::new();
            for (t, dc, zone, host, a, b) in &points {
                let key = keys
                    .iter()
                    .map(|k| match *k {
                        "dc" => dc.to_string(),
                        "zone" => zone.unwrap_or_default().to_string(),
                        _ => host.clone(),
                    })
                    .collect();
                want.entry(key).or_default().push((*t, *a, *b));
            }
            for rows in want.values_mut() {
                rows.sort_by_key(|r| r.0);
            }
            let got: Vec<GroupRows> = j["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let key = keys
                        .iter()
                        .map(|k| s["tags"][k].as_str().unwrap().to_string())
                        .collect();
                    let rows = s["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            (
                                r[0].as_i64().unwrap(),
                                r[1].as_f64().unwrap(),
                                r[2].as_i64().unwrap(),
                            )
                        })
                        .collect();
                    (key, rows)
                })
                .collect();
            let want: Vec<GroupRows> = want.into_iter().collect();
            assert_eq!(got.len(), want.len(), "{phase}, {group_by}{every}: groups");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.0, w.0, "{phase}, {group_by}{every}: group order");
                // In time order; rows of several series at one time in any order.
                assert!(
                    g.1.windows(2).all(|p| p[0].0 <= p[1].0),
                    "{phase}: time order"
                );
                let sorted = |rows: &[(i64, f64, i64)]| {
                    let mut rows = rows.to_vec();
                    rows.sort_by(|x, y| (x.0, x.2).cmp(&(y.0, y.2)).then(x.1.total_cmp(&y.1)));
                    rows
                };
                assert!(
                    sorted(&g.1) == sorted(&w.1),
                    "{phase}, {group_by}{every}: rows of {:?}",
                    g.0
                );
            }
        }
        s.stop();
        s.restart();
    }
}

/// A server with a 1 MiB query budget holding the export points in measurement `m` of
/// database `ex` (in memory).
fn export_server() -> (TestServer, Vec<ExportPoint>) {
    let s = TestServer::start(ServerConfig::default().with_query_memory("1MiB", "4MiB"));
    let points = export_points();
    s.write_ok("ex", &export_lines(&points));
    (s, points)
}

/// The export points written as line protocol into measurement `m` (rack and c where the
/// point has them).
fn export_lines(points: &[ExportPoint]) -> String {
    points
        .iter()
        .map(|(t, host, rack, a, b, c)| {
            let rack = rack
                .as_ref()
                .map(|r| format!(",rack={r}"))
                .unwrap_or_default();
            let c = c
                .as_ref()
                .map(|c| format!(",c=\"{}\"", c.replace('"', "\\\"")))
                .unwrap_or_default();
            format!("m,host={host}{rack} a={a},b={b}i{c} {t}\n")
        })
        .collect()
}

/// A bucketed answer (`every`) larger than `query.max_memory` is computed a window of whole
/// buckets at a time (or a batch of groups at a time) and streamed, in JSON, CSV and Arrow,
/// in memory and after a restart: every bucket of every group once, with the value an
/// independent computation over the points gives. On the old code each was a 413.
#[test]
fn bucketed_answers_larger_than_the_query_budget_are_streamed() {
    let (mut s, points) = export_server();
    let bucket = |t: i64, every: i64| t.div_euclid(every) * every;
    const SEC: i64 = 1_000_000_000;
    for phase in ["in memory", "in files"] {
        // One group, 1 s buckets (one point each): mean of every field, the string field c
        // a column of nulls.
        let r = s.get("/api/v1/query?db=ex&measurement=m&agg=mean&every=1s&epoch=ns");
        assert_eq!(r.status, 200, "{phase}: {:.300}", r.body);
        let j = r.json();
        assert_eq!(j["partial"], false, "{phase}");
        let series = j["series"].as_array().unwrap();
        assert_eq!(series.len(), 1, "{phase}");
        assert_eq!(
            series[0]["columns"],
            serde_json::json!(["time", "a", "b", "c"])
        );
        let got = series[0]["values"].as_array().unwrap();
        assert_eq!(got.len(), points.len(), "{phase}");
        for (g, p) in got.iter().zip(&points) {
            assert_eq!(
                g,
                &serde_json::json!([p.0, p.3, p.4 as f64, null]),
                "{phase}"
            );
        }

        // Grouped by host, 8 s buckets (two points of each host): sums, integers exact.
        let r = s.get(
            "/api/v1/query?db=ex&measurement=m&agg=sum&every=8s&group_by=host&fields=b,a&epoch=ns",
        );
        assert_eq!(r.status, 200, "{phase}: {:.300}", r.body);
        let j = r.json();
        assert_eq!(j["partial"], false, "{phase}");
        let mut want: BTreeMap<String, BTreeMap<i64, (i64, f64)>> = BTreeMap::new();
        for (t, host, _, a, b, _) in &points {
            let e = want
                .entry(host.clone())
                .or_default()
                .entry(bucket(*t, 8 * SEC))
                .or_default();
            e.0 += b;
            e.1 += a;
        }
        let got = j["series"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{phase}");
        for (s, (host, buckets)) in got.iter().zip(&want) {
            assert_eq!(s["tags"]["host"], host.as_str(), "{phase}: group order");
            assert_eq!(s["columns"], serde_json::json!(["time", "b", "a"]));
            let rows = s["values"].as_array().unwrap();
            assert_eq!(rows.len(), buckets.len(), "{phase}: buckets of {host}");
            for (row, (t, (b, a))) in rows.iter().zip(buckets) {
                assert_eq!(row, &serde_json::json!([t, b, a]), "{phase}: {host}");
            }
        }

        // Counts by rack (series without it group as ""), 1 s buckets, in CSV; a limit
        // that ends inside a window.
        let csv = s.get(
            "/api/v1/query?db=ex&measurement=m&agg=count&every=1s&group_by=rack&fields=a,c&format=csv&epoch=ns",
        );
        assert_eq!(csv.status, 200, "{phase}: {:.300}", csv.body);
        let mut want: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
        for (t, _, rack, _, _, c) in &points {
            let e = want
                .entry((rack.clone().unwrap_or_default(), *t))
                .or_default();
            e.0 += 1;
            e.1 += u64::from(c.is_some());
        }
        let want: Vec<String> = want
            .iter()
            .map(|((rack, t), (a, c))| format!("m,{rack},{t},{a},{c}"))
            .collect();
        let mut lines = csv.body.lines();
        assert_eq!(lines.next(), Some("name,rack,time,a,c"));
        let got: Vec<&str> = lines.collect();
        assert_eq!(got.len(), want.len(), "{phase}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{phase}");
        }
        let r = s.get("/api/v1/query?db=ex&measurement=m&agg=max&every=1s&fields=b&limit=5000");
        assert_eq!(r.status, 200, "{phase}: {:.300}", r.body);
        let rows = r.json()["series"][0]["values"].as_array().unwrap().clone();
        assert_eq!(rows.len(), 5000, "{phase}");
        assert_eq!(rows[4999][1], points[4999].4, "{phase}");

        // Arrow: the types the aggregates give (max of a string field: no number, a
        // float column of nulls), every bucket.
        let arrow = s
            .client()
            .get(s.url(
                "/api/v1/query?db=ex&measurement=m&agg=max&every=2s&fields=a,b,c&format=arrow",
            ))
            .send()
            .unwrap();
        assert_eq!(arrow.status(), 200);
        let bytes = arrow.bytes().unwrap().to_vec();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let types: Vec<String> = reader
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect();
        assert_eq!(
            types,
            [
                "time:Timestamp(ns, \"UTC\")",
                "a:Float64",
                "b:Int64",
                "c:Float64"
            ]
        );
        let mut want: BTreeMap<i64, i64> = BTreeMap::new();
        for p in &points {
            let e = want.entry(bucket(p.0, 2 * SEC)).or_insert(i64::MIN);
            *e = (*e).max(p.4);
        }
        let (mut rows, mut sum_b) = (0usize, 0i64);
        for batch in reader {
            let batch = batch.unwrap();
            rows += batch.num_rows();
            let b = batch
                .column_by_name("b")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            sum_b += b.iter().flatten().sum::<i64>();
            assert_eq!(
                batch.column_by_name("c").unwrap().null_count(),
                batch.num_rows()
            );
        }
        assert_eq!(rows, want.len(), "{phase}");
        assert_eq!(sum_b, want.values().sum::<i64>(), "{phase}");
        if phase == "in memory" {
            s.stop();
            s.restart();
        }
    }
    s.assert_healthy();
}
