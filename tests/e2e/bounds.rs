//! Bounds a client cannot push past (issue #12): a header dribbled a byte at a time and a
//! body that stalls are cut off by `http.header_timeout` / `http.body_timeout`; idle
//! connections beyond `http.max_connections` wait instead of exhausting descriptors, and the
//! server answers again as soon as they go; request bodies count against `memory.limit`
//! before they are read (503 with Retry-After when there is no room).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{ServerConfig, TestServer, fresh_client, manifest_version};

fn server(extra: &[&str], memory: Option<(&str, &str)>) -> TestServer {
    let mut cfg = ServerConfig {
        http_extra: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerConfig::default()
    };
    if let Some((limit, body)) = memory {
        cfg = cfg.memory(limit, limit).max_body_bytes(body);
    }
    TestServer::start(cfg)
}

/// Reads until the server closes the connection (or `limit` passes); returns what came.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_header_sent_a_byte_at_a_time_is_cut_off() {
    let s = server(&["header_timeout = \"1s\""], None);
    let mut c = TcpStream::connect(s.addr()).unwrap();
    let started = Instant::now();
    let head = b"POST /write?db=slow HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in head {
        if c.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !closed {
        let (_, _) = read_until_closed(&mut c, Duration::from_secs(3));
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the connection stayed open {:?}",
        started.elapsed()
    );
    s.assert_healthy();
}

#[test]
fn a_stalled_body_gets_a_408() {
    let s = server(&["body_timeout = \"1s\""], None);
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.write_all(
        b"POST /write?db=slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\ncpu v=1 1\n",
    )
    .unwrap();
    let (got, took) = read_until_closed(&mut c, Duration::from_secs(5));
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(got.contains("http.body_timeout"), "{got:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn idle_connections_beyond_the_limit_wait_and_the_server_recovers() {
    let s = server(&["max_connections = 16", "header_timeout = \"2s\""], None);
    // 64 idle connections: 16 are served (and idle), the others wait in the backlog.
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(s.addr()).unwrap())
        .collect();
    let started = Instant::now();
    // Idle ones are dropped after header_timeout, so a real request gets through soon.
    let r = fresh_client()
        .get(s.url("/health"))
        .timeout(Duration::from_secs(15))
        .send()
        .expect("health after the idle connections timed out");
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    s.assert_healthy();
    let m = s.metrics();
    assert!(m.0.contains("meridian_request_body_bytes"), "{}", m.0);
}

#[test]
fn request_bodies_count_against_the_memory_limit() {
    // 2 MiB for data and bodies; each body declares 900 KiB.
    let s = server(&["body_timeout = \"3s\""], Some(("2MiB", "1MiB")));
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(s.addr()).unwrap();
        c.write_all(
            b"POST /write?db=mem HTTP/1.1\r\nHost: x\r\nContent-Length: 921600\r\n\r\ncpu v=1 1\n",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        match c.read(&mut buf) {
            Ok(n) if n > 0 => refused.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => held.push(c),
        }
    }
    assert_eq!(held.len(), 2, "two bodies fit: {refused:?}");
    assert_eq!(refused.len(), 2);
    for r in &refused {
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.to_ascii_lowercase().contains("retry-after"), "{r}");
        assert!(r.contains("memory.limit"), "{r}");
    }
    // The stalled ones time out and give their room back: writes go through again.
    for mut c in held {
        c.set_nonblocking(false).unwrap();
        let (got, _) = read_until_closed(&mut c, Duration::from_secs(6));
        assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    }
    s.write_ok("mem", "cpu v=2 2\n");
    let m = s.metrics();
    assert_eq!(m.value("meridian_request_body_bytes", None), 0.0);
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// One line with 5,000 fields, then thousands of rows that each carry one field: the block
/// must not hold a null for every other column of every row unaccounted (that was 1.3 GiB of
/// RSS from 264 KB of bodies with 20,000 fields, every write answered 204). Each row is
/// counted as a flush will hold it (every column of its measurement): a body that could
/// never fit is a 413, one that must wait a 503, and memory stays bounded.
#[test]
fn sparse_wide_lines_stay_within_memory() {
    let s = TestServer::start(ServerConfig::default().memory("64MiB", "48MiB"));
    let wide: Vec<String> = (0..5_000).map(|i| format!("f{i:05}={i}i")).collect();
    s.write_ok("wide", &format!("m,host=a {} 1000\n", wide.join(",")));
    // 5,000 rows over 5,000 columns: ~225 MB once dense, more than the limit.
    let narrow = |from: usize, n: usize| -> String {
        (from..from + n)
            .map(|k| format!("m,host=a f{:05}={k}i {}\n", k % 5_000, 2000 + k))
            .collect()
    };
    let r = s.post("/write?db=wide", narrow(0, 5_000));
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.body.contains("memory.limit"), "{}", r.body);
    // Bodies of 500 rows (~22 MB each once dense) go through, waiting for flushes as needed.
    let started = Instant::now();
    let mut written = 0;
    let mut peak = 0.0f64;
    while written < 10 && started.elapsed() < Duration::from_secs(60) {
        let r = s.post("/write?db=wide", narrow(written * 500, 500));
        match r.status {
            204 => written += 1,
            503 => std::thread::sleep(Duration::from_millis(100)),
            _ => panic!("{r:?}"),
        }
        peak = peak.max(rss_mib(s.pid()));
        let counted = s.metrics().value("meridian_memory_bytes", None);
        // The limit, plus at most the staging of a flush under way (counted as such).
        assert!(counted <= 64.0 * 1024.0 * 1024.0 * 2.0, "counted {counted}");
    }
    assert_eq!(written, 10, "bodies stuck behind the memory limit");
    eprintln!("sparse wide: peak RSS {peak:.0} MiB with memory.limit 64MiB");
    assert!(peak < 400.0, "peak RSS {peak:.0} MiB");
    // Every value reads back.
    let r = s.get("/api/v1/query?db=wide&measurement=m&fields=f00007&agg=count");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["series"][0]["values"][0][1], 2, "{}", r.body);
    let r = s.get("/api/v1/query?db=wide&measurement=m&agg=count&fields=f04999");
    assert_eq!(r.json()["series"][0]["values"][0][1], 2, "{}", r.body);
}

/// A write of 5,000 measurements, then kill -9: the restart replays them into memory and
/// accepts traffic at once (it used to flush a file per replayed block first: 136 s for
/// 15,000 measurements), and every point answers.
#[test]
fn a_restart_with_many_measurements_in_the_wal_is_quick() {
    let mut s = TestServer::start(ServerConfig::default());
    let body: String = (0..5_000)
        .map(|i| format!("m{i:05},host=a v={i}i 1767225600000000000\n"))
        .collect();
    s.write_ok("many", &body);
    s.kill9();
    let started = Instant::now();
    s.restart();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "restart took {took:?}");
    for i in [0, 2_500, 4_999] {
        let r = s.get(&format!(
            "/api/v1/query?db=many&measurement=m{i:05}&fields=v&agg=sum"
        ));
        assert_eq!(r.json()["series"][0]["values"][0][1], i, "{}", r.body);
    }
}

/// Each region's manifest version (0 for a region without a checkpoint yet): every committed
/// edit (`_manifest/<version>.edit.json`) adds one, whatever checkpoints and clean-up of old
/// edits happen meanwhile.
fn manifest_versions_by_region(data_dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(data_dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            let region = p.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(region, manifest_version(&p).unwrap_or(0));
        }
    }
    out
}

/// 2,000 one-point measurements flushed by age while the server runs: they are written
/// together, in a few packed files and a few manifest edits, not a file and an edit per
/// measurement (each edit is a durable write, and the syncs per file made a shutdown of
/// 20,000 measurements take 36 s). Every point is in the files.
#[test]
fn many_small_measurements_flush_together() {
    let cfg = ServerConfig::default()
        .shards(1)
        .flush(1_000_000, "64MiB", "500ms");
    let part_ns = cfg.partition_ns();
    let mut s = TestServer::start(cfg);
    let before = manifest_versions_by_region(&s.data_dir());
    let n = 2_000;
    let body: String = (0..n)
        .map(|i| format!("m{i:05},host=a v={i}i 1767225600000000000\n"))
        .collect();
    s.write_ok("many", &body);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_files = 0;
    while Instant::now() < deadline {
        in_files = crate::support::read_rows(&s.data_dir(), part_ns).len();
        if in_files == n {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(in_files, n, "points in files after the age flush");
    let files = crate::support::tree(&s.data_dir())
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .count();
    assert!(files <= 8, "{files} files for {n} measurements");
    // The manifest edits committed since the server started.
    let mut edits = 0;
    for (region, v) in manifest_versions_by_region(&s.data_dir()) {
        let was = before.get(&region).copied().unwrap_or(0);
        assert!(
            v >= was,
            "manifest of {region} went back from version {was} to {v}"
        );
        edits += v - was;
    }
    assert!(
        (1..=8).contains(&edits),
        "{edits} manifest edits for {n} measurements flushed by age"
    );
    s.kill9();
    let rows = crate::support::read_rows(&s.data_dir(), part_ns);
    let mut got: Vec<i64> = rows
        .iter()
        .map(|r| r.measurement[1..].parse::<i64>().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, (0..n as i64).collect::<Vec<_>>());
}
