//! Query parameters and limits an outside test found wrong (issue #12): `group_by=time` is a
//! 400, not a partial answer; the `u=` 1.x clients send is accepted; `query.timeout` bounds
//! the whole request and stops the scans, so a timed-out query answers on time with its
//! regions marked `timeout` and leaves the server responsive.

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
        query_timeout: Some("200ms".into()),
        ..ServerConfig::default()
    });
    // Enough rows in memory and in four regions that a raw query of all of them takes far
    // longer than 200 ms.
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
/// `fields=*` raw query over 1 M points added 1.2 GiB of RSS); smaller answers still come.
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
    let fine = s.get("/api/v1/query?db=qm&measurement=m&fields=*&agg=mean&every=1ms&group_by=host");
    assert_eq!(fine.status, 413, "{:.300}", fine.body);
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
