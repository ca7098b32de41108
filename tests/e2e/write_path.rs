//! The write path end to end (SPEC §4, §6): every endpoint and precision, routing to every
//! region, hive partitions, the five field types with escapes, last-write-wins, partial
//! writes, schema conflicts, reserved keys, auth, health and metrics.

use std::collections::BTreeMap;

use crate::support::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    F,
    I,
    U,
    S,
    B,
}

/// Measurements (escapes and non-ASCII in names) and their fields with fixed types. `v` is a
/// float in one measurement and an integer in another: types are per measurement.
const MEASUREMENTS: [(&str, &[(&str, Ty)]); 4] = [
    (
        "cpu",
        &[
            ("usage_user", Ty::F),
            ("usage idle", Ty::F),
            ("cores", Ty::I),
            ("ctx,switches", Ty::U),
            ("state", Ty::S),
            ("online", Ty::B),
            ("v", Ty::F),
        ],
    ),
    (
        "weather station",
        &[
            ("temp", Ty::F),
            ("wind=dir", Ty::S),
            ("rain mm", Ty::F),
            ("sensor ok", Ty::B),
            ("samples", Ty::U),
            ("delta", Ty::I),
        ],
    ),
    (
        "net,io",
        &[
            ("bytes in", Ty::U),
            ("errs", Ty::I),
            ("drop%", Ty::F),
            ("iface", Ty::S),
            ("up", Ty::B),
        ],
    ),
    (
        "温度=x",
        &[
            ("value", Ty::F),
            ("note", Ty::S),
            ("flag", Ty::B),
            ("count", Ty::I),
            ("big", Ty::U),
            ("v", Ty::I),
        ],
    ),
];

/// Geography of a series → the region it must land in (regions.toml of the repo).
const GEO: [(&[(&str, &str)], &str); 18] = [
    (&[("region", "us-east-1")], "americas"),
    (&[("region", "ca-central-1")], "americas"),
    (&[("region", "sa-east-1")], "americas"),
    (&[("region", "eu-west-1")], "eu"),
    (&[("region", "uk-south-1")], "eu"),
    (&[("region", "ap-south-1")], "apac"),
    (&[("region", "au-east-1")], "apac"),
    (&[("region", "af-south-1")], "global"),
    // lat/lon only: Dublin, Tokyo, São Paulo, Cape Town (no box), Wellington.
    (&[("lat", "53.35"), ("lon", "-6.26")], "eu"),
    (&[("lat", "35.68"), ("lon", "139.69")], "apac"),
    (&[("lat", "-23.55"), ("lon", "-46.63")], "americas"),
    (&[("lat", "-33.92"), ("lon", "18.42")], "global"),
    (&[("lat", "-41.29"), ("lon", "174.78")], "apac"),
    // A geo tag no glob claims falls through to the coordinates (Paris).
    (
        &[("region", "me-south-1"), ("lat", "48.85"), ("lon", "2.35")],
        "eu",
    ),
    // Directory override beats the geo tag and the coordinates.
    (&[("tenant", "acme-eu"), ("region", "us-east-1")], "eu"),
    (
        &[("tenant", "acme-eu"), ("lat", "35.68"), ("lon", "139.69")],
        "eu",
    ),
    (&[("tenant", "acme-us"), ("region", "ap-south-1")], "apac"),
    // No geography at all.
    (&[], "global"),
];

const STRINGS: [&str; 12] = [
    "",
    "plain",
    "with \"quotes\"",
    "back\\slash",
    "comma, space = equals",
    "ünïcödé ✓ 温度",
    "ends with backslash \\",
    "literal \\n escape",
    "tab\tinside",
    "raw\nnewline inside",
    "{\"json\": [1, 2]}",
    "#not a comment",
];

#[derive(Clone)]
struct Series {
    measurement: usize,
    tags: Tags,
    region: &'static str,
}

fn make_series(rng: &mut Rng) -> Vec<Series> {
    let mut out = Vec::new();
    for m in 0..MEASUREMENTS.len() {
        for (geo, region) in GEO.iter() {
            for host in 0..3 {
                let mut tags: Tags = geo
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                tags.insert("host".into(), format!("host-{host}"));
                if rng.chance(30) {
                    tags.insert("rack id".into(), "r,1=a b".into());
                }
                if rng.chance(10) {
                    tags.insert("path".into(), "C:\\dir".into());
                }
                if rng.chance(10) {
                    tags.insert("Region".into(), "not-the-geo-tag".into());
                }
                out.push(Series {
                    measurement: m,
                    tags,
                    region,
                });
            }
        }
    }
    out
}

fn value(rng: &mut Rng, ty: Ty) -> Value {
    match ty {
        Ty::F => {
            let specials = [
                0.0,
                -0.0,
                1.5,
                -2.25e-7,
                1e300,
                f64::MAX,
                f64::MIN_POSITIVE,
                5e-324,
                123456.789,
                3.0,
            ];
            if rng.chance(30) {
                Value::Float(*rng.pick(&specials))
            } else {
                let m = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                Value::Float(m * 10f64.powi(rng.range(-12, 12) as i32))
            }
        }
        Ty::I => {
            if rng.chance(20) {
                Value::Int(*rng.pick(&[0, -1, i64::MIN, i64::MAX]))
            } else {
                Value::Int(rng.next_u64() as i64 >> rng.below(60))
            }
        }
        Ty::U => {
            if rng.chance(20) {
                Value::UInt(*rng.pick(&[0, 1, u64::MAX]))
            } else {
                Value::UInt(rng.next_u64() >> rng.below(60))
            }
        }
        Ty::S => {
            if rng.chance(70) {
                Value::Str(rng.pick(&STRINGS).to_string())
            } else {
                Value::Str(format!("s-{}", rng.next_u64()))
            }
        }
        Ty::B => Value::Bool(rng.chance(50)),
    }
}

fn fields_for(rng: &mut Rng, m: usize) -> Fields {
    let spec = MEASUREMENTS[m].1;
    let mut f = Fields::new();
    for (name, ty) in spec {
        if rng.chance(55) {
            f.insert(name.to_string(), value(rng, *ty));
        }
    }
    if f.is_empty() {
        let (name, ty) = spec[rng.below(spec.len() as u64) as usize];
        f.insert(name.to_string(), value(rng, ty));
    }
    f
}

/// How a request is sent: path template (`{db}`), timestamp unit in ns (0 = v3 auto: any
/// unit per line), gzip, endpoint index (0 v1, 1 v2, 2 v3).
struct Endpoint {
    path: &'static str,
    unit: i64,
    gzip: bool,
    ep: usize,
}

const ENDPOINTS: [Endpoint; 11] = [
    Endpoint {
        path: "/write?db={db}&precision=s&rp=autogen",
        unit: SEC_NS,
        gzip: false,
        ep: 0,
    },
    Endpoint {
        path: "/write?db={db}&precision=ms",
        unit: 1_000_000,
        gzip: false,
        ep: 0,
    },
    Endpoint {
        path: "/write?db={db}&precision=u",
        unit: 1_000,
        gzip: false,
        ep: 0,
    },
    Endpoint {
        path: "/write?db={db}",
        unit: 1,
        gzip: true,
        ep: 0,
    },
    Endpoint {
        path: "/api/v2/write?bucket={db}&org=ignored&precision=ns",
        unit: 1,
        gzip: false,
        ep: 1,
    },
    Endpoint {
        path: "/api/v2/write?bucket={db}",
        unit: 1,
        gzip: true,
        ep: 1,
    },
    Endpoint {
        path: "/api/v3/write_lp?db={db}",
        unit: 0,
        gzip: false,
        ep: 2,
    },
    Endpoint {
        path: "/api/v3/write_lp?db={db}&precision=auto",
        unit: 0,
        gzip: true,
        ep: 2,
    },
    Endpoint {
        path: "/api/v3/write_lp?db={db}&precision=millisecond&no_sync=true",
        unit: 1_000_000,
        gzip: false,
        ep: 2,
    },
    Endpoint {
        path: "/api/v3/write_lp?db={db}&precision=second&accept_partial=true",
        unit: SEC_NS,
        gzip: true,
        ep: 2,
    },
    Endpoint {
        path: "/api/v3/write_lp?db={db}&precision=nanosecond",
        unit: 1,
        gzip: false,
        ep: 2,
    },
];

const UNITS: [i64; 4] = [SEC_NS, 1_000_000, 1_000, 1];
const SPAN_S: i64 = 6 * 3600;

/// A time (ns) representable in `unit`, in [BASE, BASE + 6h), sometimes on an hour boundary.
fn time_in(rng: &mut Rng, unit: i64) -> i64 {
    let per_s = SEC_NS / unit;
    let t_unit = match rng.below(20) {
        0 => BASE_S * per_s + rng.range(0, 6) * 3600 * per_s, // exactly on a boundary
        1 => BASE_S * per_s + rng.range(1, 6) * 3600 * per_s - 1, // just before one
        _ => BASE_S * per_s + rng.range(0, SPAN_S * per_s),
    };
    t_unit * unit
}

struct Request {
    path: String,
    gzip: bool,
    ep: usize,
    body: String,
    lines: usize,
}

type Model = BTreeMap<Key, (&'static str, Fields)>;

/// Builds every request and the expected content of the data dir.
fn plan(seed: u64, n_requests: usize, per_request: usize) -> (Vec<Request>, Model) {
    let mut rng = Rng::new(seed);
    let series = make_series(&mut rng);
    let dbs = ["telegraf", "metrics_2"];
    let mut model: Model = BTreeMap::new();
    let mut used: Vec<(usize, Key)> = Vec::new(); // (series index, key)
    let mut reqs = Vec::new();
    for r in 0..n_requests {
        let e = &ENDPOINTS[r % ENDPOINTS.len()];
        let db = dbs[(r / ENDPOINTS.len() + r) % dbs.len()];
        let eol = if rng.chance(30) { "\r\n" } else { "\n" };
        let mut lines: Vec<String> = Vec::new();
        if rng.chance(30) {
            lines.push(format!("# request {r}"));
            lines.push(String::new());
        }
        let mut n_points = 0;
        let this_body_from = used.len();
        while n_points < per_request {
            // ~8%: write an identity again, from an earlier request or from this very body
            // (then the later line of the body wins): last write wins, field by field.
            let compatible = |key: &Key| key.0 == db && (e.unit == 0 || key.3 % e.unit == 0);
            let mut dup = None;
            if rng.chance(8) && !used.is_empty() {
                let from_this_body = rng.chance(30) && used.len() > this_body_from;
                for _ in 0..6 {
                    let i = if from_this_body {
                        this_body_from + rng.below((used.len() - this_body_from) as u64) as usize
                    } else {
                        rng.below(used.len() as u64) as usize
                    };
                    let (si, key) = &used[i];
                    if compatible(key) {
                        dup = Some((*si, key.3));
                        break;
                    }
                }
            }
            let (si, time) = match dup {
                Some(x) => x,
                None => {
                    let si = rng.below(series.len() as u64) as usize;
                    let unit = if e.unit == 0 {
                        *rng.pick(&UNITS)
                    } else {
                        e.unit
                    };
                    (si, time_in(&mut rng, unit))
                }
            };
            let s = &series[si];
            let unit = if e.unit == 0 {
                // v3 auto: the digit count says the unit; use any unit that divides the time.
                let ok: Vec<i64> = UNITS.iter().copied().filter(|u| time % u == 0).collect();
                *rng.pick(&ok)
            } else {
                e.unit
            };
            let fields = fields_for(&mut rng, s.measurement);
            let measurement = MEASUREMENTS[s.measurement].0;
            lines.push(lp_line(
                measurement,
                &s.tags,
                &fields,
                Some(time / unit),
                rng.next_u64(),
            ));
            if rng.chance(5) {
                lines.push("   # an indented comment".into());
            }
            let key: Key = (
                db.to_string(),
                measurement.to_string(),
                s.tags.clone(),
                time,
            );
            let entry = model
                .entry(key.clone())
                .or_insert_with(|| (s.region, Fields::new()));
            entry.1.extend(fields);
            used.push((si, key));
            n_points += 1;
        }
        let mut body = lines.join(eol);
        if rng.chance(50) {
            body.push_str(eol);
        }
        reqs.push(Request {
            path: e.path.replace("{db}", db),
            gzip: e.gzip,
            ep: e.ep,
            body,
            lines: n_points,
        });
    }
    (reqs, model)
}

fn compare(rows: &[Row], model: &Model) {
    // Under load a partition may be flushed early (it rolled over) and written again: then
    // its points are in two files, merged by seq as queries merge them.
    let got = crate::support::rows_by_key_merged(rows);
    let mut problems = Vec::new();
    for (key, (region, fields)) in model {
        match got.get(key) {
            None => problems.push(format!("missing point {key:?}")),
            Some(row) => {
                if row.region != *region {
                    problems.push(format!(
                        "point {key:?} is in region {} (file {}), expected {region}",
                        row.region, row.file
                    ));
                }
                if &row.fields != fields {
                    problems.push(format!(
                        "point {key:?} has fields\n  {:?}\nexpected\n  {fields:?}",
                        row.fields
                    ));
                }
            }
        }
    }
    for key in got.keys() {
        if !model.contains_key(key) {
            problems.push(format!("unexpected point {key:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems (of {} expected points, {} rows), first ones:\n{}",
        problems.len(),
        model.len(),
        rows.len(),
        problems[..problems.len().min(12)].join("\n")
    );
}

/// SPEC §4/§6 (issue #2's check): ~2,000 points over every endpoint, precision, region and
/// field type arrive exactly once, in the right region and partition, with exact values.
#[test]
fn every_point_of_every_endpoint_lands_once_in_the_right_region_and_partition() {
    let (reqs, model) = plan(0x5EED_0002, 44, 46);
    // ~380 blocks are flushed at shutdown: two flush workers keep that quick.
    let mut server = TestServer::start(ServerConfig::default().flush_workers(2));
    let mut lines_per_ep = [0u64; 3];
    let mut reqs_per_ep = [0u64; 3];
    for (i, r) in reqs.iter().enumerate() {
        let resp = if r.gzip {
            server.post_with(
                &r.path,
                gzip(r.body.as_bytes()),
                &[("Content-Encoding", "gzip")],
            )
        } else {
            server.post(&r.path, r.body.clone().into_bytes())
        };
        assert_eq!(
            resp.status, 204,
            "request {i} to {} refused: {resp:?}\nbody:\n{}",
            r.path, r.body
        );
        lines_per_ep[r.ep] += r.lines as u64;
        reqs_per_ep[r.ep] += 1;
    }
    // The plan rewrites some identities (last write wins), and covers every region.
    let lines: usize = reqs.iter().map(|r| r.lines).sum();
    assert!(
        lines >= model.len() + 80,
        "too few rewrites in the plan: {lines} lines, {} identities",
        model.len()
    );
    let regions: std::collections::BTreeSet<&str> = model.values().map(|(r, _)| *r).collect();
    assert_eq!(regions.len(), 4, "the plan must cover every region");

    let health = server.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "pass", "{health:?}");
    let ping = server.get("/ping");
    assert_eq!(ping.status, 204);
    assert!(ping.headers.contains_key("x-influxdb-version"), "{ping:?}");

    let m = server.metrics();
    let written = m.per_endpoint("meridian_points_written_total");
    let rejected = m.per_endpoint("meridian_points_rejected_total");
    let requests = m.per_endpoint("meridian_write_requests_total");
    for ep in 0..3 {
        assert_eq!(
            written[ep] as u64, lines_per_ep[ep],
            "points written, endpoint {ep}"
        );
        assert_eq!(rejected[ep], 0.0, "points rejected, endpoint {ep}");
        assert_eq!(
            requests[ep] as u64, reqs_per_ep[ep],
            "write requests, endpoint {ep}"
        );
    }
    assert!(m.value("meridian_wal_records_total", None) >= reqs.len() as f64);
    assert!(m.value("meridian_wal_syncs_total", None) >= 1.0);
    assert!(m.value("meridian_memory_bytes", None) > 0.0);
    assert_eq!(m.value("meridian_write_overloaded_total", None), 0.0);

    server.stop();
    assert_clean_data_dir(&server.data_dir());
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    compare(&rows, &model);
    let partitions: std::collections::BTreeSet<i64> =
        rows.iter().map(|r| r.time.div_euclid(HOUR_NS)).collect();
    assert!(
        partitions.len() >= 6,
        "expected 6 hourly partitions, got {partitions:?}"
    );

    // A clean stop leaves nothing to replay, and a restart neither loses nor duplicates.
    server.restart();
    let m = server.metrics();
    assert_eq!(
        m.value("meridian_wal_replayed_records_total", None),
        0.0,
        "a clean shutdown must leave nothing to replay"
    );
    let regions = server.get("/api/v1/regions");
    assert_eq!(regions.status, 200);
    let v = regions.json();
    let listed = v["regions"].as_array().expect("regions array");
    let names: Vec<&str> = listed.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, REGIONS.to_vec());
    let file_rows: u64 = listed
        .iter()
        .map(|r| r["file_rows"].as_u64().unwrap())
        .sum();
    assert_eq!(file_rows, rows.len() as u64, "{v}");
    assert!(listed.iter().all(|r| r["hosted"] == true));
    server.stop();
    let again = read_rows(&server.data_dir(), HOUR_NS);
    compare(&again, &model);
}

const T0: i64 = BASE_S * SEC_NS;

/// v1 and v2 partial writes: 400 `{"code":"invalid"}` naming the first bad line's physical
/// number (comments and blank lines count); the valid lines are written.
#[test]
fn partial_writes_report_line_numbers_and_keep_valid_lines() {
    let mut server = TestServer::start(ServerConfig::default().shards(1));
    let body = format!(
        "# comment\n\
         pw,host=a v=1 {a}\n\
         \n\
         pw,host=b v=oops {b}\n\
         pw,host=c v=3 {c}\r\n\
         pw,host=d {d}\n\
         pw,host=e v=5,s=\"x\" {e}\n",
        a = T0 + 1,
        b = T0 + 2,
        c = T0 + 3,
        d = T0 + 4,
        e = T0 + 5
    );
    for (path, db) in [
        ("/write?db=pw1", "pw1"),
        ("/api/v2/write?bucket=pw2", "pw2"),
    ] {
        let r = server.post(path, body.clone());
        assert_eq!(r.status, 400, "{path}: {r:?}");
        let j = r.json();
        assert_eq!(j["code"], "invalid", "{path}: {j}");
        let msg = j["message"].as_str().unwrap();
        assert!(
            msg.contains("line 4"),
            "{path}: message must name line 4: {msg}"
        );
        assert!(msg.contains("oops"), "{path}: message must say why: {msg}");
        let _ = db;
    }
    let r = server.post("/api/v3/write_lp?db=pw3&precision=nanosecond", body.clone());
    assert_eq!(r.status, 400, "{r:?}");
    let j = r.json();
    assert!(j["error"].is_string(), "{j}");
    let data = j["data"].as_array().expect("v3 data array");
    assert_eq!(data.len(), 2, "{j}");
    assert_eq!(data[0]["line_number"], 4, "{j}");
    assert_eq!(
        data[0]["original_line"],
        format!("pw,host=b v=oops {}", T0 + 2)
    );
    assert!(!data[0]["error_message"].as_str().unwrap().is_empty());
    assert_eq!(data[1]["line_number"], 6, "{j}");
    assert_eq!(data[1]["original_line"], format!("pw,host=d {}", T0 + 4));

    let m = server.metrics();
    let rejected = m.per_endpoint("meridian_points_rejected_total");
    assert_eq!(rejected, [2.0, 2.0, 2.0]);
    let written = m.per_endpoint("meridian_points_written_total");
    assert_eq!(written, [3.0, 3.0, 3.0]);
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    let got = rows_by_key_exactly_once(&rows);
    for db in ["pw1", "pw2", "pw3"] {
        let hosts: Vec<String> = rows
            .iter()
            .filter(|r| r.db == db)
            .map(|r| r.tags["host"].clone())
            .collect();
        assert_eq!(hosts, vec!["a", "c", "e"], "db {db}");
    }
    let e = got
        .values()
        .find(|r| r.db == "pw3" && r.tags["host"] == "e")
        .unwrap();
    assert_eq!(e.fields["v"], Value::Float(5.0));
    assert_eq!(e.fields["s"], Value::Str("x".into()));
    assert_eq!(e.time, T0 + 5);
}

/// v3 `accept_partial=false`: one bad line rejects the whole body, nothing is written.
#[test]
fn v3_accept_partial_false_writes_nothing() {
    let mut server = TestServer::start(ServerConfig::default());
    let body = format!(
        "ap,host=a v=1 {}\nap,host=b v=2 {}\nap,host=c v=\n",
        T0 + 1,
        T0 + 2
    );
    let r = server.post(
        "/api/v3/write_lp?db=strict&precision=nanosecond&accept_partial=false",
        body,
    );
    assert_eq!(r.status, 400, "{r:?}");
    let j = r.json();
    assert_eq!(j["data"][0]["line_number"], 3, "{j}");
    assert!(
        j["error"].as_str().unwrap().contains("nothing written")
            || j["error"].as_str().unwrap().contains("rejected"),
        "{j}"
    );
    // A good body with accept_partial=false is accepted as usual.
    let r = server.post(
        "/api/v3/write_lp?db=strict_ok&precision=nanosecond&accept_partial=false",
        format!("ap,host=z v=1 {}\n", T0),
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        server
            .metrics()
            .per_endpoint("meridian_points_written_total")[2],
        1.0
    );
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    assert!(
        rows.iter().all(|r| r.db != "strict"),
        "accept_partial=false wrote: {rows:?}"
    );
    assert_eq!(rows.iter().filter(|r| r.db == "strict_ok").count(), 1);
}

/// A field type conflicting with the measurement's schema is a bad line naming the field (in
/// the same body, across requests, in another partition, and after a restart); another
/// measurement is independent.
#[test]
fn type_conflicts_are_bad_lines_naming_the_field() {
    let mut server = TestServer::start(ServerConfig::default());
    let r = server.post(
        "/write?db=tc",
        format!(
            "tc,host=a usage=1.5 {}\ntc,host=a usage=2i {}\n",
            T0,
            T0 + 1
        ),
    );
    assert_eq!(r.status, 400, "{r:?}");
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("line 2") && msg.contains("usage"), "{msg}");
    // Across requests, also a string, a bool, and a field reused as a tag.
    for (line, name) in [
        (format!("tc,host=b usage=\"high\" {}", T0 + 2), "usage"),
        (format!("tc,host=b usage=true {}", T0 + 3), "usage"),
        (format!("tc,host=b usage=7u {}", T0 + 4), "usage"),
        (format!("tc,usage=x other=1 {}", T0 + 5), "usage"),
        (format!("tc,host=b host=1 {}", T0 + 6), "host"),
    ] {
        let r = server.post("/api/v3/write_lp?db=tc&precision=nanosecond", line.clone());
        assert_eq!(r.status, 400, "{line}: {r:?}");
        let j = r.json();
        let em = j["data"][0]["error_message"].as_str().unwrap();
        assert!(em.contains(name), "{line}: {em}");
    }
    // The same field as an integer in another hour (another partition) is a conflict too:
    // a field's type is fixed per measurement, as in InfluxDB.
    let r = server.post(
        "/write?db=tc",
        format!("tc,host=a usage=9i {}", T0 + 2 * HOUR_NS),
    );
    assert_eq!(r.status, 400, "{r:?}");
    server.write_ok("tc", &format!("tc,host=a usage=9.0 {}", T0 + 2 * HOUR_NS));
    server.write_ok("tc", &format!("tc2,host=a usage=9i {}", T0 + 2 * HOUR_NS));
    server.stop();
    // After a restart the schema comes back from the files: the conflict is still one.
    server.restart();
    let r = server.post("/write?db=tc", format!("tc,host=z usage=3i {}", T0 + 10));
    assert_eq!(r.status, 400, "schema must survive a restart: {r:?}");
    let r = server.post("/write?db=tc", format!("tc,host=z usage=3.25 {}", T0 + 10));
    assert_eq!(r.status, 204, "{r:?}");
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    let mut got: Vec<(String, String, i64, Value)> = rows
        .iter()
        .map(|r| {
            (
                r.measurement.clone(),
                r.tags["host"].clone(),
                r.time,
                r.fields["usage"].clone(),
            )
        })
        .collect();
    got.sort_by_key(|g| (g.0.clone(), g.1.clone(), g.2));
    assert_eq!(
        got,
        vec![
            ("tc".into(), "a".into(), T0, Value::Float(1.5)),
            ("tc".into(), "a".into(), T0 + 2 * HOUR_NS, Value::Float(9.0)),
            ("tc".into(), "z".into(), T0 + 10, Value::Float(3.25)),
            ("tc2".into(), "a".into(), T0 + 2 * HOUR_NS, Value::Int(9)),
        ]
    );
}

/// `time`, `part_day`, `part_hour`, `part_minute` can be neither tag nor field keys (400
/// naming the key); nothing of those lines is written.
#[test]
fn reserved_keys_are_rejected() {
    let mut server = TestServer::start(ServerConfig::default());
    for key in ["time", "part_day", "part_hour", "part_minute"] {
        for line in [
            format!("rk,{key}=x f=1 {T0}"),
            format!("rk,host=a {key}=1 {T0}"),
            format!("rk,host=a {key}=\"s\",f=2 {T0}"),
        ] {
            for path in [
                "/write?db=rk",
                "/api/v3/write_lp?db=rk&precision=nanosecond",
            ] {
                let r = server.post(path, line.clone());
                assert_eq!(r.status, 400, "{path} {line}: {r:?}");
                assert!(
                    r.body.contains(key),
                    "{path} {line}: must name the key: {}",
                    r.body
                );
                assert!(r.body.contains("reserved"), "{path} {line}: {}", r.body);
            }
        }
    }
    // Near-misses are ordinary keys.
    server.write_ok(
        "rk",
        &format!("rk,Time=x,part=y,day=d,hour=h f=1,times=2i {T0}"),
    );
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].tags.len(), 4);
}

/// With tokens configured: 401 without or with a wrong token, 204 with `Token` or `Bearer`;
/// `/health` and `/ping` stay open; `/metrics` needs the token too.
#[test]
fn auth_tokens_are_required_when_configured() {
    let tok = "s3cret-token-1";
    let mut server = TestServer::start(ServerConfig::default().tokens(&[tok, "second-token-22"]));
    let line = |h: &str| format!("auth,host={h} v=1 {T0}");
    let r = server.post("/write?db=a", line("none"));
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.json()["code"], "unauthorized");
    for bad in [
        "Token wrong-token-xx",
        "Bearer s3cret-token-",
        "s3cret-token-1",
        "Token ",
    ] {
        let r = server.post_with("/write?db=a", line("bad"), &[("Authorization", bad)]);
        assert_eq!(r.status, 401, "{bad}: {r:?}");
    }
    let r = server.post("/api/v3/write_lp?db=a", line("none3"));
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.json()["error"].is_string());

    let auth_token = format!("Token {tok}");
    let r = server.post_with(
        "/write?db=a",
        line("tok"),
        &[("Authorization", &auth_token)],
    );
    assert_eq!(r.status, 204, "{r:?}");
    let r = server.post_with(
        "/api/v2/write?bucket=a",
        line("bearer"),
        &[("Authorization", "Bearer second-token-22")],
    );
    assert_eq!(r.status, 204, "{r:?}");
    let bearer = format!("Bearer {tok}");
    let r = server.post_with(
        "/api/v3/write_lp?db=a&precision=nanosecond",
        line("v3"),
        &[("Authorization", &bearer)],
    );
    assert_eq!(r.status, 204, "{r:?}");

    assert_eq!(server.get("/health").status, 200);
    assert_eq!(server.get("/ping").status, 204);
    assert_eq!(server.get("/metrics").status, 401);
    let m = server.get_with("/metrics", &[("Authorization", &auth_token)]);
    assert_eq!(m.status, 200);
    assert!(m.body.contains("meridian_points_written_total"));
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    let mut hosts: Vec<&str> = rows.iter().map(|r| r.tags["host"].as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, vec!["bearer", "tok", "v3"]);
}

/// A line without a timestamp gets the server's time, truncated to the request precision.
#[test]
fn missing_timestamp_is_server_time_at_the_precision() {
    let mut server = TestServer::start(ServerConfig::default());
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
    };
    let before = now();
    server.write_ok("nots", "nots,p=ns v=1");
    let r = server.post("/write?db=nots&precision=s", "nots,p=s v=1");
    assert_eq!(r.status, 204, "{r:?}");
    let r = server.post("/api/v3/write_lp?db=nots", "nots,p=auto v=1");
    assert_eq!(r.status, 204, "{r:?}");
    let after = now();
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    let by_p: BTreeMap<&str, i64> = rows
        .iter()
        .map(|r| (r.tags["p"].as_str(), r.time))
        .collect();
    assert_eq!(by_p.len(), 3, "{rows:?}");
    for (p, t) in &by_p {
        let lo = if *p == "s" {
            before - before % SEC_NS
        } else {
            before
        };
        assert!(
            *t >= lo && *t <= after,
            "{p}: time {t} not in [{lo}, {after}]"
        );
    }
    assert_eq!(
        by_p["s"] % SEC_NS,
        0,
        "precision=s must truncate server time to seconds"
    );
}
