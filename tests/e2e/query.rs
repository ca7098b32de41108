//! The query API against an independent computation (issue #4).
//!
//! A random dataset over every region and three partitions is written through HTTP, with
//! rewrites of existing points (last write wins per field). Flush thresholds are small and
//! the block age is one second, so the queries run while data is in files, in memory and
//! being flushed. Every query's answer is compared with a straightforward computation over
//! the points the test sent, done here without any of the server's code.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::support::{Rng, ServerConfig, TestServer};

const HOUR: i64 = 3_600_000_000_000;
const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

#[derive(Clone, Debug, PartialEq)]
enum V {
    F(f64),
    I(i64),
    S(String),
    B(bool),
}

type Tags = BTreeMap<String, String>;

struct Model {
    /// (tags, time) → fields, last write wins per field.
    points: BTreeMap<(Tags, i64), BTreeMap<String, V>>,
}

fn lp_escape(s: &str) -> String {
    s.replace(',', "\\,")
        .replace('=', "\\=")
        .replace(' ', "\\ ")
}

fn line(tags: &Tags, fields: &BTreeMap<String, V>, t: i64) -> String {
    let mut s = String::from("m");
    for (k, v) in tags {
        s.push_str(&format!(",{}={}", lp_escape(k), lp_escape(v)));
    }
    let f: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            let val = match v {
                V::F(x) => format!("{x:?}"),
                V::I(x) => format!("{x}i"),
                V::S(x) => format!("\"{}\"", x.replace('\\', "\\\\").replace('"', "\\\"")),
                V::B(x) => x.to_string(),
            };
            format!("{}={val}", lp_escape(k))
        })
        .collect();
    format!("{s} {} {t}", f.join(","))
}

fn hosts() -> Vec<Tags> {
    let geo = [
        Some("us-east-1"),
        Some("eu-west-1"),
        Some("ap-south-1"),
        Some("af-south-1"),
        None,
    ];
    (0..14)
        .map(|i| {
            let mut t = Tags::new();
            t.insert("host".into(), format!("h{i}"));
            match geo[i % geo.len()] {
                Some(r) => {
                    t.insert("region".into(), r.into());
                }
                None => {
                    // Coordinates only: Dublin or Tokyo.
                    let (lat, lon) = if i % 2 == 0 {
                        ("53.35", "-6.26")
                    } else {
                        ("35.68", "139.69")
                    };
                    t.insert("lat".into(), lat.into());
                    t.insert("lon".into(), lon.into());
                }
            }
            if i % 3 != 0 {
                t.insert("dc".into(), ["a", "b"][i % 2].into());
            }
            t
        })
        .collect()
}

/// Writes the dataset in batches and returns the model of what the server must hold.
fn load(server: &TestServer, rng: &mut Rng) -> Model {
    let hosts = hosts();
    let mut model = Model {
        points: BTreeMap::new(),
    };
    let mut used_times = std::collections::BTreeSet::new();
    let mut all: Vec<(Tags, i64, BTreeMap<String, V>)> = Vec::new();
    for _ in 0..3000 {
        let tags = rng.pick(&hosts).clone();
        // Unique timestamps (so first/last have no ties), spread over 3 hours + edges.
        let mut t;
        loop {
            t = T0 + rng.range(0, 3 * HOUR / 1_000_000) * 1_000_000;
            if used_times.insert(t) {
                break;
            }
        }
        let mut f = BTreeMap::new();
        f.insert(
            "f".to_string(),
            V::F((rng.range(-100_000, 100_000) as f64) / 7.0),
        );
        if rng.chance(80) {
            f.insert("i".to_string(), V::I(rng.range(-1_000_000, 1_000_000)));
        }
        if rng.chance(20) {
            f.insert("s".to_string(), V::S(format!("v{}", rng.below(50))));
        }
        if rng.chance(20) {
            f.insert("b".to_string(), V::B(rng.chance(50)));
        }
        all.push((tags, t, f));
    }
    send(server, &all, &mut model);
    // Let the age trigger (1 s) flush the originals, so that the rewrites below land in new
    // blocks and files: the same points then live in several sources.
    // Wait (bounded) until the age trigger wrote files, then a little more so that every block
    // of the originals is out of memory.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while count_parquet(&server.data_dir()) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let files_before = count_parquet(&server.data_dir());
    assert!(
        files_before > 0,
        "the originals must have been flushed by age"
    );
    let originals = all.len();
    // Rewrites of existing points with some fields: later values win field by field.
    for _ in 0..300 {
        let (tags, t, _) = all[rng.below(all.len() as u64) as usize].clone();
        let mut f = BTreeMap::new();
        if rng.chance(60) {
            f.insert("f".to_string(), V::F(rng.range(-50, 50) as f64 + 0.5));
        }
        if rng.chance(60) || f.is_empty() {
            f.insert("i".to_string(), V::I(rng.range(-10, 10)));
        }
        all.push((tags, t, f));
    }
    let rewrites = all.split_off(originals);
    send(server, &rewrites, &mut model);
    model
}

fn count_parquet(dir: &std::path::Path) -> usize {
    walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count()
}

fn send(server: &TestServer, points: &[(Tags, i64, BTreeMap<String, V>)], model: &mut Model) {
    for chunk in points.chunks(250) {
        let body: Vec<String> = chunk.iter().map(|(tags, t, f)| line(tags, f, *t)).collect();
        server.write_ok("qdb", &body.join("\n"));
        for (tags, t, f) in chunk {
            let e = model.points.entry((tags.clone(), *t)).or_default();
            for (k, v) in f {
                e.insert(k.clone(), v.clone());
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Q {
    fields: Vec<String>,
    start: Option<i64>,
    end: Option<i64>,
    preds: Vec<(String, &'static str, String)>,
    agg: &'static str,
    every: Option<(i64, &'static str)>,
    group_by: Vec<String>,
}

impl Q {
    fn url(&self) -> String {
        let mut u = format!(
            "/api/v1/query?db=qdb&measurement=m&epoch=ns&agg={}",
            self.agg
        );
        u.push_str(&format!("&fields={}", self.fields.join(",")));
        if let Some(s) = self.start {
            u.push_str(&format!("&start={s}"));
        }
        if let Some(e) = self.end {
            u.push_str(&format!("&end={e}"));
        }
        if !self.preds.is_empty() {
            let w: Vec<String> = self
                .preds
                .iter()
                .map(|(k, op, v)| format!("{k}{op}{v}"))
                .collect();
            let enc: String = form_urlencoded::byte_serialize(w.join(",").as_bytes()).collect();
            u.push_str(&format!("&where={enc}"));
        }
        if let Some((_, e)) = self.every {
            u.push_str(&format!("&every={e}"));
        }
        if !self.group_by.is_empty() {
            u.push_str(&format!("&group_by={}", self.group_by.join(",")));
        }
        u
    }

    fn matches(&self, tags: &Tags, t: i64) -> bool {
        if self.start.is_some_and(|s| t < s) || self.end.is_some_and(|e| t >= e) {
            return false;
        }
        self.preds.iter().all(|(k, op, v)| {
            let have = tags.get(k).map(|s| s.as_str()).unwrap_or("");
            match *op {
                "=" => have == v,
                "!=" => have != v,
                "=~" => regex_lite(v, have),
                "!~" => !regex_lite(v, have),
                _ => unreachable!(),
            }
        })
    }
}

/// The two regex shapes the test uses: `^prefix` and a plain substring.
fn regex_lite(re: &str, s: &str) -> bool {
    match re.strip_prefix('^') {
        Some(p) => s.starts_with(p),
        None => s.contains(re),
    }
}

/// Expected answer: group key → bucket → (time, values per field).
type Expected = BTreeMap<Vec<String>, BTreeMap<i64, (i64, Vec<Option<V>>)>>;

fn expected(model: &Model, q: &Q) -> Expected {
    // group → bucket → field → list of (time, value)
    type PerField = Vec<Vec<(i64, V)>>;
    let mut acc: BTreeMap<Vec<String>, BTreeMap<i64, PerField>> = BTreeMap::new();
    for ((tags, t), fields) in &model.points {
        if !q.matches(tags, *t) {
            continue;
        }
        let key: Vec<String> = q
            .group_by
            .iter()
            .map(|g| tags.get(g).cloned().unwrap_or_default())
            .collect();
        let bucket = match q.every {
            Some((w, _)) => t.div_euclid(w) * w,
            None => q.start.unwrap_or(0),
        };
        let slot = acc
            .entry(key)
            .or_default()
            .entry(bucket)
            .or_insert_with(|| vec![Vec::new(); q.fields.len()]);
        for (i, f) in q.fields.iter().enumerate() {
            if let Some(v) = fields.get(f) {
                slot[i].push((*t, v.clone()));
            }
        }
    }
    let numeric = |v: &V| match v {
        V::F(x) => Some(*x),
        V::I(x) => Some(*x as f64),
        _ => None,
    };
    let mut out = Expected::new();
    for (key, buckets) in acc {
        for (bucket, per_field) in buckets {
            let mut times = Vec::new();
            let mut any = false;
            let vals: Vec<Option<V>> = per_field
                .iter()
                .map(|xs| {
                    let nums: Vec<&(i64, V)> =
                        xs.iter().filter(|(_, v)| numeric(v).is_some()).collect();
                    match q.agg {
                        "count" => {
                            any |= !xs.is_empty();
                            Some(V::I(xs.len() as i64))
                        }
                        "first" | "last" => {
                            any |= !xs.is_empty();
                            let pick = if q.agg == "first" {
                                xs.iter().min_by_key(|(t, _)| *t)
                            } else {
                                xs.iter().max_by_key(|(t, _)| *t)
                            };
                            pick.map(|(t, v)| {
                                times.push(*t);
                                v.clone()
                            })
                        }
                        _ if nums.is_empty() => None,
                        agg => {
                            any = true;
                            let all_int = nums.iter().all(|(_, v)| matches!(v, V::I(_)));
                            match agg {
                                "sum" if all_int => Some(V::I(
                                    nums.iter()
                                        .map(|(_, v)| if let V::I(i) = v { *i } else { 0 })
                                        .sum(),
                                )),
                                "sum" => {
                                    Some(V::F(nums.iter().filter_map(|(_, v)| numeric(v)).sum()))
                                }
                                "mean" => Some(V::F(
                                    nums.iter().filter_map(|(_, v)| numeric(v)).sum::<f64>()
                                        / nums.len() as f64,
                                )),
                                "min" | "max" => {
                                    let it = nums.iter().map(|(_, v)| v.clone());
                                    let cmp = |a: &V, b: &V| {
                                        numeric(a)
                                            .unwrap_or(0.0)
                                            .total_cmp(&numeric(b).unwrap_or(0.0))
                                    };
                                    if agg == "min" {
                                        it.min_by(cmp)
                                    } else {
                                        it.max_by(cmp)
                                    }
                                }
                                "stddev" => {
                                    let xs: Vec<f64> =
                                        nums.iter().filter_map(|(_, v)| numeric(v)).collect();
                                    if xs.len() < 2 {
                                        None
                                    } else {
                                        let m = xs.iter().sum::<f64>() / xs.len() as f64;
                                        let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>()
                                            / (xs.len() as f64 - 1.0);
                                        Some(V::F(var.sqrt()))
                                    }
                                }
                                _ => unreachable!(),
                            }
                        }
                    }
                })
                .collect();
            if !any {
                continue;
            }
            let time = match (q.every, q.agg) {
                (None, "last") => times.iter().max().copied().unwrap_or(bucket),
                (None, "first") => times.iter().min().copied().unwrap_or(bucket),
                _ => bucket,
            };
            out.entry(key.clone())
                .or_default()
                .insert(bucket, (time, vals));
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn same(expected: &Option<V>, got: &Json) -> bool {
    match (expected, got) {
        (None, Json::Null) => true,
        (Some(V::F(x)), Json::Number(n)) => n.as_f64().is_some_and(|y| close(*x, y)),
        (Some(V::I(x)), Json::Number(n)) => {
            n.as_i64() == Some(*x) || n.as_f64().is_some_and(|y| close(*x as f64, y))
        }
        (Some(V::S(x)), Json::String(s)) => x == s,
        (Some(V::B(x)), Json::Bool(b)) => x == b,
        _ => false,
    }
}

/// Raw points (`agg=none`) compared with the model: per group, one row per matching point in
/// time order, the requested fields (null where the point lacks one). Each group must hold one
/// series (ties in time between series have no defined order).
fn check_raw(server: &TestServer, model: &Model, q: &Q) -> usize {
    let r = server.get(&q.url());
    assert_eq!(r.status, 200, "{}: {}", q.url(), r.body);
    let j = r.json();
    assert_eq!(j["partial"], Json::Bool(false), "{}: {}", q.url(), r.body);
    type Rows = Vec<(i64, Vec<Option<V>>)>;
    let mut want: BTreeMap<Vec<String>, Rows> = BTreeMap::new();
    for ((tags, t), fields) in &model.points {
        if q.matches(tags, *t) {
            let key = q
                .group_by
                .iter()
                .map(|g| tags.get(g).cloned().unwrap_or_default())
                .collect();
            let vals = q.fields.iter().map(|f| fields.get(f).cloned()).collect();
            want.entry(key).or_default().push((*t, vals));
        }
    }
    let series = j["series"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        series.len(),
        want.len(),
        "series of {}\n{}",
        q.url(),
        r.body
    );
    let mut compared = 0;
    for (s, (key, mut rows)) in series.iter().zip(want) {
        rows.sort_by_key(|(t, _)| *t);
        let tags: Vec<String> = q
            .group_by
            .iter()
            .map(|g| s["tags"][g].as_str().unwrap_or("?").to_string())
            .collect();
        assert_eq!(tags, key, "group of {}", q.url());
        let got = s["values"].as_array().unwrap();
        assert_eq!(got.len(), rows.len(), "rows of {key:?} for {}", q.url());
        for (g, (t, vals)) in got.iter().zip(&rows) {
            let g = g.as_array().unwrap();
            assert_eq!(g[0].as_i64(), Some(*t), "time in {}", q.url());
            for (i, v) in vals.iter().enumerate() {
                assert!(
                    same(v, &g[i + 1]),
                    "{} at {t}: expected {v:?}, got {}",
                    q.url(),
                    g[i + 1]
                );
                compared += 1;
            }
        }
    }
    compared
}

/// Compares one query; returns how many values were compared.
fn check(server: &TestServer, model: &Model, q: &Q) -> usize {
    let mut compared = 0;
    let r = server.get(&q.url());
    assert_eq!(r.status, 200, "{}: {}", q.url(), r.body);
    let j = r.json();
    assert_eq!(j["partial"], Json::Bool(false), "{}: {}", q.url(), r.body);
    let want = expected(model, q);
    let series = j["series"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        series.len(),
        want.len(),
        "series count for {}\n{}",
        q.url(),
        r.body
    );
    for (s, (key, buckets)) in series.iter().zip(&want) {
        let tags: Vec<String> = q
            .group_by
            .iter()
            .map(|g| s["tags"][g].as_str().unwrap_or("?").to_string())
            .collect();
        assert_eq!(&tags, key, "group order/keys for {}", q.url());
        let cols: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cols[0], "time");
        assert_eq!(
            &cols[1..],
            q.fields
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .as_slice()
        );
        let rows = s["values"].as_array().unwrap();
        assert_eq!(
            rows.len(),
            buckets.len(),
            "rows of group {key:?} for {}\n{}",
            q.url(),
            r.body
        );
        for (row, (_, (time, vals))) in rows.iter().zip(buckets) {
            let row = row.as_array().unwrap();
            assert_eq!(
                row[0].as_i64(),
                Some(*time),
                "time in {} group {key:?}",
                q.url()
            );
            for (i, v) in vals.iter().enumerate() {
                assert!(
                    same(v, &row[i + 1]),
                    "{} group {key:?} time {time} field {}: expected {v:?}, got {}",
                    q.url(),
                    q.fields[i],
                    row[i + 1]
                );
                compared += 1;
            }
        }
    }
    compared
}

fn random_query(rng: &mut Rng) -> Q {
    let field_sets: [&[&str]; 5] = [&["f"], &["i"], &["f", "i"], &["s", "f"], &["b", "i", "f"]];
    let aggs = [
        "count", "sum", "mean", "min", "max", "first", "last", "stddev",
    ];
    let everies = [
        None,
        Some((600_000_000_000, "10m")),
        Some((HOUR, "1h")),
        Some((420_000_000_000, "7m")),
    ];
    let groups: [&[&str]; 5] = [&[], &["region"], &["host"], &["region", "dc"], &["dc"]];
    let preds: [&[(&str, &str, &str)]; 7] = [
        &[],
        &[("host", "=", "h3")],
        &[("region", "=~", "^eu")],
        &[("dc", "!=", "a")],
        &[("host", "!~", "h1"), ("dc", "=", "b")],
        &[("region", "=", "us-east-1")],
        &[("dc", "=", "")],
    ];
    // Ranges include partition edges and ones inside a partition.
    let start = match rng.below(4) {
        0 => None,
        1 => Some(T0 + HOUR),
        2 => Some(T0 + rng.range(0, 3 * HOUR)),
        _ => Some(T0 - HOUR),
    };
    let end = match rng.below(4) {
        0 => None,
        1 => Some(T0 + 2 * HOUR),
        _ => Some(start.unwrap_or(T0) + rng.range(1, 3 * HOUR)),
    };
    let (start, end) = match (start, end) {
        (Some(s), Some(e)) if e <= s => (Some(s), Some(s + HOUR)),
        x => x,
    };
    Q {
        fields: rng
            .pick(&field_sets)
            .iter()
            .map(|s| s.to_string())
            .collect(),
        start,
        end,
        preds: rng
            .pick(&preds)
            .iter()
            .map(|(k, o, v)| (k.to_string(), *o, v.to_string()))
            .collect(),
        agg: aggs[rng.below(aggs.len() as u64) as usize],
        every: *rng.pick(&everies),
        group_by: rng.pick(&groups).iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn query_answers_match_an_independent_computation() {
    // Small blocks and a 1 s age: files, memory and in-flight flushes all take part.
    let cfg = ServerConfig::default().flush(100, "64MiB", "1s");
    let mut server = TestServer::start(cfg);
    let mut rng = Rng::new(0x5eed);
    let model = load(&server, &mut rng);

    // Read-your-writes: the last batch is visible immediately.
    let all = Q {
        fields: vec!["f".into()],
        start: None,
        end: None,
        preds: vec![],
        agg: "count",
        every: None,
        group_by: vec![],
    };
    assert_eq!(check(&server, &model, &all), 1);
    assert_eq!(
        server.get(&all.url()).json()["series"][0]["values"][0][1].as_i64(),
        Some(model.points.len() as i64),
        "every distinct point counted once"
    );

    let mut compared = 0;
    for _ in 0..120 {
        let q = random_query(&mut rng);
        compared += check(&server, &model, &q);
    }
    // Guard against a vacuous comparison (e.g. everything filtered out on both sides).
    assert!(compared > 2_000, "only {compared} values compared");

    // After a restart everything is in files; answers must not change.
    server.stop();
    server.restart();
    let mut compared = 0;
    for _ in 0..40 {
        let q = random_query(&mut rng);
        compared += check(&server, &model, &q);
    }
    assert!(
        compared > 500,
        "only {compared} values compared after restart"
    );
    server.stop();

    // After compaction each partition is one file per region, sorted by series: the
    // series-run aggregation and the first/last early stop take over; answers must not change.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
        .arg("--config")
        .arg(server.config_path())
        .output()
        .expect("running meridian-compact");
    assert!(
        out.status.success(),
        "meridian-compact failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.restart();
    // The series indexes of every live file are built in the background after the start.
    let files = count_parquet(&server.data_dir());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let cached = loop {
        let text = server.get("/metrics").body;
        let n = text
            .lines()
            .find_map(|l| l.strip_prefix("meridian_index_cache_files "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if n >= files || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(cached, files, "index warm-up after the start");
    let mut compared = 0;
    for _ in 0..60 {
        let q = random_query(&mut rng);
        compared += check(&server, &model, &q);
    }
    assert!(
        compared > 800,
        "only {compared} values compared after compaction"
    );
    // One host at a time is a selective read: it goes through the decoded page cache, and
    // the second round is answered from cached pages. Answers must not change.
    let page_hits = |server: &TestServer| {
        server
            .get("/metrics")
            .body
            .lines()
            .find_map(|l| l.strip_prefix("meridian_page_cache_hits_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let hits_before = page_hits(&server);
    let mut compared = 0;
    for _round in 0..2 {
        for h in 0..14 {
            for (agg, every) in [("max", Some((HOUR, "1h"))), ("sum", None), ("last", None)] {
                let q = Q {
                    fields: vec!["f".into(), "i".into(), "b".into()],
                    start: None,
                    end: None,
                    preds: vec![("host".into(), "=", format!("h{h}"))],
                    agg,
                    every,
                    group_by: Vec::new(),
                };
                compared += check(&server, &model, &q);
            }
        }
    }
    assert!(compared > 300, "only {compared} values compared per host");
    // Raw points of one host (read through the page cache, twice) and of every host.
    let mut compared = 0;
    for h in (0..14).chain(0..14) {
        let q = Q {
            fields: vec!["f".into(), "i".into(), "s".into()],
            start: Some(T0 + HOUR / 2),
            end: Some(T0 + 2 * HOUR),
            preds: vec![("host".into(), "=", format!("h{h}"))],
            agg: "none",
            every: None,
            group_by: Vec::new(),
        };
        compared += check_raw(&server, &model, &q);
    }
    let q = Q {
        fields: vec!["b".into(), "f".into()],
        start: None,
        end: None,
        preds: Vec::new(),
        agg: "none",
        every: None,
        group_by: vec!["host".into()],
    };
    compared += check_raw(&server, &model, &q);
    assert!(compared > 1_000, "only {compared} raw values compared");
    assert!(
        page_hits(&server) > hits_before,
        "repeated one-host queries found no page in the page cache"
    );
    server.stop();
}

#[test]
fn raw_points_limit_formats_and_region_pruning() {
    let server = TestServer::start(ServerConfig::default());
    let mut body = String::new();
    for i in 0..50i64 {
        let region = if i % 2 == 0 { "eu-west-1" } else { "us-east-1" };
        body.push_str(&format!(
            "cpu,host=h{},region={region} v={i}i,x={}.5 {}\n",
            i % 5,
            i,
            T0 + i * 1_000_000_000
        ));
    }
    server.write_ok("rdb", &body);

    // Raw points, ordered by time, limit honoured, tags as columns.
    let r = server.get("/api/v1/query?db=rdb&measurement=cpu&epoch=ns&limit=7");
    let j = r.json();
    let s = &j["series"][0];
    assert_eq!(
        s["columns"],
        serde_json::json!(["time", "host", "region", "v", "x"])
    );
    let rows = s["values"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0].as_i64(), Some(T0 + i as i64 * 1_000_000_000));
        assert_eq!(row[3].as_i64(), Some(i as i64));
    }
    // Aggregate rows (group x bucket) are capped like raw rows: the query is refused as too
    // large (413 naming the key), not answered in part.
    let capped = TestServer::start(ServerConfig {
        query_max_rows: 20,
        ..Default::default()
    });
    capped.write_ok("rdb", &body);
    let r = capped.get("/api/v1/query?db=rdb&measurement=cpu&agg=count&fields=v&every=1s");
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.body.contains("query.max_rows"), "{}", r.body);
    let j = capped
        .get("/api/v1/query?db=rdb&measurement=cpu&agg=count&fields=v&every=1h")
        .json();
    assert_eq!(j["partial"], false, "{j}");

    // A field list returns those fields only (InfluxQL: `SELECT x, v` has no tag columns);
    // tags come back through group_by.
    let j = server
        .get("/api/v1/query?db=rdb&measurement=cpu&epoch=ns&fields=x,v&limit=3")
        .json();
    assert_eq!(
        j["series"][0]["columns"],
        serde_json::json!(["time", "x", "v"])
    );
    assert_eq!(
        j["series"][0]["values"][2],
        serde_json::json!([T0 + 2_000_000_000, 2.5, 2])
    );
    let j = server
        .get("/api/v1/query?db=rdb&measurement=cpu&epoch=ns&fields=v&group_by=host&where=host=h1")
        .json();
    assert_eq!(j["series"][0]["tags"], serde_json::json!({"host": "h1"}));
    assert_eq!(j["series"][0]["columns"], serde_json::json!(["time", "v"]));

    // A geo equality prunes the other regions, and says so.
    let r = server
        .get("/api/v1/query?db=rdb&measurement=cpu&agg=count&fields=v&where=region=eu-west-1");
    let j = r.json();
    assert_eq!(j["series"][0]["values"][0][1].as_i64(), Some(25));
    assert_eq!(j["regions"]["americas"]["status"], "pruned");
    assert_eq!(j["regions"]["eu"]["status"], "ok");

    // CSV and Arrow carry the same numbers.
    let csv = server
        .get("/api/v1/query?db=rdb&measurement=cpu&agg=sum&fields=v&group_by=region&format=csv");
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "name,region,time,v");
    assert_eq!(lines[1], "cpu,eu-west-1,1970-01-01T00:00:00Z,600");
    assert_eq!(lines[2], "cpu,us-east-1,1970-01-01T00:00:00Z,625");
    let arrow = server
        .client()
        .get(server.url(
            "/api/v1/query?db=rdb&measurement=cpu&agg=max&fields=v,x&group_by=host&format=arrow",
        ))
        .send()
        .unwrap();
    assert_eq!(arrow.status(), 200);
    let bytes = arrow.bytes().unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let b = &batches[0];
    assert_eq!(b.num_rows(), 5);
    let v = b
        .column_by_name("v")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    // host h0 has v = 0,5,...,45 → max 45; h4 → 49.
    assert_eq!(v.value(0), 45);
    assert_eq!(v.value(4), 49);

    // Malformed parameters are clear 400s.
    for q in [
        "agg=nope",
        "where=host=~(",
        "start=10&end=5",
        "every=soon&agg=sum",
        "format=xml",
        "limit=x",
    ] {
        let r = server.get(&format!("/api/v1/query?db=rdb&measurement=cpu&{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // POST with a JSON body answers like GET.
    let r = server.post_with(
        "/api/v1/query",
        r#"{"db":"rdb","measurement":"cpu","agg":"count","fields":["v"],"group_by":["region"]}"#,
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["series"].as_array().unwrap().len(), 2);
}

#[test]
fn a_failing_region_makes_the_answer_partial() {
    let mut server = TestServer::start(ServerConfig::default());
    server.write_ok(
        "pdb",
        &format!("cpu,region=eu-west-1 v=1 {T0}\ncpu,region=us-east-1 v=2 {T0}\n"),
    );
    server.stop();
    // Damage the eu file: the region's scan fails, the others still answer.
    let eu = server.data_dir().join("eu");
    let mut damaged = 0;
    for entry in walk(&eu) {
        if entry.extension().is_some_and(|e| e == "parquet") {
            std::fs::write(&entry, b"not a parquet file").unwrap();
            damaged += 1;
        }
    }
    assert_eq!(damaged, 1);
    server.restart();
    let r = server.get("/api/v1/query?db=pdb&measurement=cpu&agg=sum&fields=v");
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["partial"], Json::Bool(true), "{}", r.body);
    assert_eq!(j["regions"]["eu"]["status"], "error");
    assert!(
        j["regions"]["eu"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(".parquet")),
        "{}",
        r.body
    );
    assert_eq!(j["regions"]["americas"]["status"], "ok");
    assert_eq!(j["series"][0]["values"][0][1].as_f64(), Some(2.0));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Query habits that used to answer the wrong thing in silence: integer times take a unit
/// (`precision`), a time that reads as the first days of 1970 is called out, quoted tag
/// values in `where` are understood, and names the server has never seen are warned about
/// (still 200, as InfluxDB).
#[test]
fn integer_times_take_a_unit_and_unknown_names_are_warned_about() {
    let s = TestServer::start(ServerConfig::default());
    // 2026-01-01T00:00:00Z and an hour later, one point each.
    let t0 = 1_767_225_600i64;
    s.write_ok(
        "hab",
        &format!(
            "cpu,hostname=host_1 v=1 {}\ncpu,hostname=host_2 v=2 {}\n",
            t0 * 1_000_000_000,
            (t0 + 3600) * 1_000_000_000
        ),
    );
    let ask = |q: &str| {
        let r = s.get(&format!("/api/v1/query?db=hab&{q}"));
        assert_eq!(r.status, 200, "{q}: {r:?}");
        r.json()
    };
    let count = |j: &serde_json::Value| {
        j["series"].as_array().map_or(0, |a| {
            a.iter()
                .map(|s| s["values"].as_array().unwrap().len())
                .sum::<usize>()
        })
    };
    let warnings = |j: &serde_json::Value| j["warnings"].to_string();
    // Seconds and milliseconds with their precision select the first hour only.
    for (p, mul) in [("s", 1i64), ("ms", 1_000)] {
        let j = ask(&format!(
            "measurement=cpu&fields=v&start={}&end={}&precision={p}",
            t0 * mul,
            (t0 + 1800) * mul
        ));
        assert_eq!(count(&j), 1, "precision={p}: {j}");
        assert!(j.get("warnings").is_none(), "{j}");
    }
    // Without it, seconds read as nanoseconds in 1970: the answer says so.
    let j = ask(&format!("measurement=cpu&fields=v&start={t0}"));
    assert_eq!(count(&j), 2);
    assert!(
        warnings(&j).contains("start=1767225600 was read as nanoseconds")
            && warnings(&j).contains("precision"),
        "{j}"
    );
    // Quoted tag values, as InfluxQL users type them; regexes between slashes.
    for w in [
        "hostname='host_1'",
        "hostname=\"host_1\"",
        "hostname=host_1",
        "hostname=~/^host_1$/",
    ] {
        let j = ask(&format!(
            "measurement=cpu&fields=v&where={}",
            w.replace('\'', "%27").replace('"', "%22")
        ));
        assert_eq!(count(&j), 1, "{w}: {j}");
    }
    // Unknown names: a warning each, and no data.
    let cases = [
        (
            "db=nope&measurement=cpu&fields=v",
            "database \\\"nope\\\" not found",
        ),
        (
            "measurement=cpux&fields=v",
            "measurement \\\"cpux\\\" not found in database \\\"hab\\\"",
        ),
        (
            "measurement=cpu&fields=vv",
            "field \\\"vv\\\" not found in measurement \\\"cpu\\\"",
        ),
        (
            "measurement=cpu&fields=v&where=host=a",
            "tag key \\\"host\\\" not found",
        ),
        (
            "measurement=cpu&fields=v&agg=count&group_by=v",
            "\\\"v\\\" is a field",
        ),
    ];
    for (q, want) in cases {
        let r = s.get(&format!(
            "/api/v1/query?{}",
            if q.starts_with("db=") {
                q.to_string()
            } else {
                format!("db=hab&{q}")
            }
        ));
        assert_eq!(r.status, 200, "{q}: {r:?}");
        let j = r.json();
        assert!(warnings(&j).contains(want), "{q}: {j}");
    }
    // A known name gets none.
    assert!(
        ask("measurement=cpu&fields=v&where=hostname=host_2&group_by=hostname&agg=count")
            .get("warnings")
            .is_none()
    );
}

/// `last` of every field (`fields=*`) reads partitions newest first and stops for a group
/// once it has a value of every field the scanned files and blocks hold, as it does with
/// the fields named: "the last point of every host" read every partition with `*`. A field
/// a host stopped sending is still found in an older partition.
#[test]
fn last_of_every_field_reads_only_the_partitions_it_needs() {
    use serde_json::json;
    let (h, t0) = (HOUR, T0);
    let mut s = TestServer::start(ServerConfig::default());
    let mut lp = String::new();
    for hour in 0..4i64 {
        for minute in 0..3i64 {
            let t = t0 + hour * h + minute * 60_000_000_000;
            lp += &format!(
                "m,host=h1 a={hour}.{minute},b={}i {t}\n",
                hour * 10 + minute
            );
            // h2 stops sending `b` after the first hour.
            if hour == 0 {
                lp += &format!("m,host=h2 a={hour}.{minute},b=-{minute}i {t}\n");
            } else {
                lp += &format!("m,host=h2 a={hour}.{minute} {t}\n");
            }
        }
    }
    s.write_ok("lp", &lp);
    s.stop();
    s.restart();
    let q = |extra: &str| {
        let r = s.get(&format!(
            "/api/v1/query?db=lp&measurement=m&agg=last&group_by=host&epoch=ns{extra}"
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    for fields in ["&fields=*", "&fields=a,b", ""] {
        let j = q(fields);
        let series = j["series"].as_array().unwrap();
        assert_eq!(series.len(), 2, "{j}");
        let row = |i: usize| {
            let cols = series[i]["columns"].as_array().unwrap();
            let vals = series[i]["values"][0].as_array().unwrap();
            let get = |c: &str| vals[cols.iter().position(|x| x == c).unwrap()].clone();
            (series[i]["tags"]["host"].clone(), get("a"), get("b"))
        };
        assert_eq!(row(0), (json!("h1"), json!(3.2), json!(32)), "{fields}");
        assert_eq!(row(1), (json!("h2"), json!(3.2), json!(-2)), "{fields}");
    }
    // One host with every field in the newest partition: only that partition is read.
    let files_read = |j: &Json| -> u64 {
        j["regions"]
            .as_object()
            .unwrap()
            .values()
            .map(|r| r["files_read"].as_u64().unwrap_or(0))
            .sum()
    };
    let star = q("&fields=*&where=host=h1");
    let named = q("&fields=a,b&where=host=h1");
    assert_eq!(files_read(&named), 1, "{named}");
    assert_eq!(files_read(&star), 1, "{star}");
    assert_eq!(star["series"], named["series"]);
    // h2 lacks `b` after the first hour: its `b` needs the oldest partition.
    let h2 = q("&fields=*&where=host=h2");
    assert_eq!(files_read(&h2), 4, "{h2}");
}

/// `count` without grouping, buckets or predicates over whole files that share no point
/// with another source is answered from the files' footers (no page read), and equals the
/// count of the points written, per field (nulls of sparse fields left out); a range that
/// cuts a file, an overwrite or points still in memory fall back to reading, still exact.
#[test]
fn count_of_whole_files_comes_from_their_footers() {
    let mut s = TestServer::start(ServerConfig::default());
    let mut lp = String::new();
    let (mut na, mut nb) = (0u64, 0u64);
    for hour in 0..3i64 {
        for i in 0..200i64 {
            let t = T0 + hour * HOUR + i * 1_000_000_000;
            lp += &format!("m,host=h{} a={i}i", i % 7);
            na += 1;
            if i % 3 == 0 {
                lp += &format!(",b={}.5", i);
                nb += 1;
            }
            lp += &format!(" {t}\n");
        }
    }
    s.write_ok("cf", &lp);
    s.stop();
    s.restart();
    let count = |s: &TestServer, extra: &str| -> (u64, u64, u64) {
        let r = s.get(&format!(
            "/api/v1/query?db=cf&measurement=m&agg=count{extra}"
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        let cols = j["series"][0]["columns"].as_array().unwrap().clone();
        let row = j["series"][0]["values"][0].as_array().unwrap().clone();
        let get = |c: &str| {
            cols.iter()
                .position(|x| x == c)
                .map_or(0, |i| row[i].as_u64().unwrap_or(0))
        };
        let read: u64 = j["regions"]
            .as_object()
            .unwrap()
            .values()
            .map(|r| r["files_read"].as_u64().unwrap_or(0))
            .sum();
        (get("a"), get("b"), read)
    };
    // Whole files: from the footers, nothing read.
    assert_eq!(count(&s, ""), (na, nb, 0));
    assert_eq!(count(&s, "&fields=b,a"), (na, nb, 0));
    let r = s.get("/query?db=cf&q=SELECT%20count(*)%20FROM%20m");
    assert_eq!(r.status, 200);
    let v = &r.json()["results"][0]["series"][0]["values"][0];
    assert_eq!((v[1].as_u64(), v[2].as_u64()), (Some(na), Some(nb)), "{v}");
    // A range that cuts the first hour's files (one per ingest shard): they are read, the
    // other hours' are not.
    let (a, _, read) = count(&s, &format!("&start={}", T0 + 100 * 1_000_000_000));
    let (_, _, read_all) = count(&s, "&start=0");
    assert_eq!(a, na - 100);
    assert!(read >= 1 && read_all == 0, "{read} {read_all}");
    // A predicate: read, exact.
    let (a, _, read) = count(&s, "&where=host=h0");
    assert_eq!(a, (0..3 * 200).filter(|i| i % 200 % 7 == 0).count() as u64);
    assert!(read > 0);
    // An overwrite of a point in a later file (the files now share points): merged, exact.
    s.write_ok("cf", &format!("m,host=h0 a=-1i {T0}\n"));
    assert_eq!(count(&s, "").0, na);
    s.stop();
    s.restart();
    let (a, b, read) = count(&s, "");
    assert_eq!((a, b), (na, nb));
    assert!(read >= 2, "the overlapping files are read: {read}");
}
