//! `[[retention]]` rules enforced by the server: expired points disappear from queries at
//! once and from storage at the background pass; a rolled-up measurement gets its rollup
//! written in the background. Times are relative to the clock (retention is), points sit
//! well away from each cutoff so the seconds a test takes do not matter.

use std::time::{Duration, Instant};

use crate::support::*;

const MIN_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 60 * MIN_NS;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// `SELECT count(v) FROM <m>` on `db` (0 when there is no series).
fn count(server: &TestServer, db: &str, m: &str) -> i64 {
    let r = server.get(&format!(
        "/query?db={db}&q=SELECT%20count(v)%20FROM%20{m}&epoch=ns"
    ));
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

/// Points of `m` every 10 minutes (5 minutes off the hour) over the last `hours`, 2 hosts,
/// `v` = an integer of the time; returns their times and values.
fn write_points(server: &TestServer, db: &str, m: &str, now: i64, hours: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut body = String::new();
    for k in 0..hours * 6 {
        let t = now - 5 * MIN_NS - k * 10 * MIN_NS;
        for h in 0..2 {
            let v = (t / MIN_NS) % 1000 + h;
            body.push_str(&format!("{m},host=h{h} v={v}i {t}\n"));
            out.push((t, v));
        }
    }
    server.write_ok(db, &body);
    out
}

/// Live files of `db`/`m` in the data dir's manifests: (partition start, rows).
fn files_of(server: &TestServer, db: &str, m: &str) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    for region in ["americas", "apac", "eu", "global"] {
        for f in manifest_files(&server.data_dir().join(region)).unwrap_or_default() {
            if f["db"] == db && f["measurement"] == m {
                out.push((
                    f["partition_start"].as_i64().unwrap(),
                    f["rows"].as_u64().unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn expired_points_leave_queries_at_once_and_storage_in_the_background() {
    // The points are written before r1 has rules (a rule refuses older points, below);
    // then the rules are added and the server restarted.
    let mut server = TestServer::start(ServerConfig::default().toml(
        "[[retention]]\ndb = \"r2\"\nmeasurement = \"cpu\"\n\
         downsample = \"10m:mean,max\"\ndownsample_after = \"1h\"\n",
    ));
    let now = now_ns();
    let mem = write_points(&server, "r1", "mem", now, 8);
    let disk = write_points(&server, "r1", "disk", now, 8);
    let cpu = write_points(&server, "r2", "cpu", now, 8);
    server.stop();
    let config = server.root().join("regions.toml");
    let mut text = std::fs::read_to_string(&config).expect("the config");
    text.push_str(
        "\n[[retention]]\ndb = \"r1\"\nkeep = \"2h\"\n\n\
         [[retention]]\ndb = \"r1\"\nmeasurement = \"disk\"\nkeep = \"5h\"\n",
    );
    std::fs::write(&config, text).expect("writing the config");
    server.restart();
    let kept = |pts: &[(i64, i64)], hours: i64| {
        pts.iter()
            .filter(|(t, _)| *t >= now - hours * HOUR_NS)
            .count() as i64
    };
    // At once, also for points replayed into memory: a measurement's own rule wins over its
    // db's.
    assert_eq!(count(&server, "r1", "mem"), kept(&mem, 2));
    assert_eq!(count(&server, "r1", "disk"), kept(&disk, 5));
    assert_eq!(
        count(&server, "r2", "cpu"),
        cpu.len() as i64,
        "no keep: all"
    );
    // A point older than what its measurement keeps is refused (it would never be seen);
    // the newer lines of the same body are written.
    let old = now - 3 * HOUR_NS;
    let r = server.post(
        "/write?db=r1",
        format!("mem,host=h0 v=1i {old}\nmem,host=h0 v=2i {now}\ndisk,host=h0 v=3i {old}\n"),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("retention"), "{r:?}");
    let (mem_extra, disk_extra) = (1, 1);
    assert_eq!(count(&server, "r1", "mem"), kept(&mem, 2) + mem_extra);
    assert_eq!(
        count(&server, "r1", "disk"),
        kept(&disk, 5) + disk_extra,
        "5h keeps the 3h-old point"
    );
    // InfluxQL clients see the database's rule as its retention policy's duration.
    let rp = server.get("/query?q=SHOW%20RETENTION%20POLICIES%20ON%20r1");
    assert_eq!(
        rp.json()["results"][0]["series"][0]["values"][0][1],
        "2h0m0s",
        "{rp:?}"
    );
    let rp = server.get("/query?q=SHOW%20RETENTION%20POLICIES%20ON%20r2");
    assert_eq!(
        rp.json()["results"][0]["series"][0]["values"][0][1],
        "0s",
        "{rp:?}"
    );

    // Flush (a restart), then the background pass drops every partition that ended before
    // what the rules keep, and writes the rollup of windows older than an hour.
    server.stop();
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let expired = |m: &str, hours: i64| {
        files_of(&server, "r1", m)
            .iter()
            .filter(|(start, rows)| *rows > 0 && start + HOUR_NS <= now - hours * HOUR_NS)
            .count()
    };
    loop {
        let rolled = files_of(&server, "r2", "cpu_10m");
        if expired("mem", 2) == 0 && expired("disk", 5) == 0 && !rolled.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no background pass: mem {:?}, disk {:?}, cpu_10m {rolled:?}\n{}",
            files_of(&server, "r1", "mem"),
            files_of(&server, "r1", "disk"),
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Partitions still holding kept points stay; the answers are unchanged.
    assert!(!files_of(&server, "r1", "mem").is_empty());
    assert_eq!(count(&server, "r1", "mem"), kept(&mem, 2) + mem_extra);
    assert_eq!(count(&server, "r1", "disk"), kept(&disk, 5) + disk_extra);
    assert_eq!(count(&server, "r2", "cpu"), cpu.len() as i64);

    // The rollup: per host and 10-minute bucket, mean and max of the source points, for
    // every whole hour window that ended at least an hour ago.
    // InfluxQL knows the rollup once the server has seen its files (within a second or
    // two of the edit that added them).
    let v = loop {
        let r = server.get(
            "/query?db=r2&q=SELECT%20v_mean,v_max%20FROM%20cpu_10m%20GROUP%20BY%20host&epoch=ns",
        );
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        if !v["results"][0]["series"].is_null() {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the rollup never became queryable: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut got = std::collections::BTreeMap::new();
    for s in v["results"][0]["series"].as_array().expect("series") {
        let host = s["tags"]["host"].as_str().unwrap().to_string();
        for row in s["values"].as_array().unwrap() {
            got.insert(
                (host.clone(), row[0].as_i64().unwrap()),
                (row[1].as_f64().unwrap(), row[2].as_i64().unwrap()),
            );
        }
    }
    let mut want = std::collections::BTreeMap::new();
    let horizon = (now - HOUR_NS).div_euclid(HOUR_NS) * HOUR_NS;
    for (i, (t, v)) in cpu.iter().enumerate() {
        let window_end = t.div_euclid(HOUR_NS) * HOUR_NS + HOUR_NS;
        if window_end > horizon {
            continue;
        }
        let host = format!("h{}", i % 2);
        let bucket = t.div_euclid(10 * MIN_NS) * 10 * MIN_NS;
        let e = want.entry((host, bucket)).or_insert((0.0, i64::MIN, 0));
        e.0 += *v as f64;
        e.1 = e.1.max(*v);
        e.2 += 1;
    }
    let want: std::collections::BTreeMap<_, _> = want
        .into_iter()
        .map(|(k, (sum, max, n))| (k, (sum / n as f64, max)))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    server.stop();
    assert_clean_data_dir(&server.data_dir());
}
