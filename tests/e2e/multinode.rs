//! Two nodes of one deployment (SPEC §2): node A hosts `americas` and `global`, node B hosts
//! `eu` and `apac`; each reaches the other's regions through the `url` of the shared config.
//! Writes sent to either node land in the hosting node's files; a query on either node fans
//! out over HTTP and merges partial aggregates; a node that is down makes answers partial.

use std::path::{Path, PathBuf};

use crate::support::{Node, ServerConfig, free_port, http_client};

fn parquet_regions(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            let mut found = false;
            while let Some(d) = stack.pop() {
                for f in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let fp = f.path();
                    if fp.is_dir() {
                        stack.push(fp);
                    } else if fp.extension().is_some_and(|x| x == "parquet") {
                        found = true;
                    }
                }
            }
            if found {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn two_nodes_forward_writes_and_fan_out_queries() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pa, pb) = (free_port(), free_port());
    let a_url = format!("http://127.0.0.1:{pa}");
    let b_url = format!("http://127.0.0.1:{pb}");
    let mut cfg = ServerConfig::default().render();
    for (name, url) in [
        ("americas", &a_url),
        ("global", &a_url),
        ("eu", &b_url),
        ("apac", &b_url),
    ] {
        // eu lets other nodes have its raw rows; the others keep them (the default).
        let export = if name == "eu" {
            "export = \"raw\"\n"
        } else {
            ""
        };
        cfg = cfg.replacen(
            &format!("name = \"{name}\"\n"),
            &format!("name = \"{name}\"\nurl = \"{url}\"\n{export}"),
            1,
        );
    }
    let config = root.path().join("regions.toml");
    std::fs::write(&config, cfg).expect("writing config");
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    let a = Node::start(&da, &config, pa, &["americas", "global"], &[]);
    let b = Node::start(&db, &config, pb, &["eu", "apac"], &[]);
    let client = http_client();

    // 40 points per geo value, half written to each node.
    let geos = ["us-east-1", "eu-west-1", "ap-south-1", "af-south-1"];
    let t0 = 1_767_225_600_000_000_000i64;
    for (n, node) in [&a, &b].iter().enumerate() {
        let mut body = String::new();
        for (g, geo) in geos.iter().enumerate() {
            for i in 0..20 {
                let v = (g * 1000 + n * 100 + i) as i64;
                body.push_str(&format!(
                    "cpu,region={geo},node=n{n} v={v}i {}\n",
                    t0 + v * 1_000_000
                ));
            }
        }
        let r = client
            .post(format!("{}/write?db=mn", node.url))
            .body(body)
            .send()
            .expect("write");
        assert_eq!(r.status(), 204, "{:?}", r.text());
    }

    // The same answer from both coordinators, every region ok.
    for node in [&a, &b] {
        let j: serde_json::Value = client
            .get(format!(
                "{}/api/v1/query?db=mn&measurement=cpu&fields=v&agg=sum&group_by=region",
                node.url
            ))
            .send()
            .and_then(|r| r.json())
            .expect("query");
        assert_eq!(j["partial"], false, "{j}");
        for r in ["americas", "eu", "apac", "global"] {
            assert_eq!(j["regions"][r]["status"], "ok", "{r}: {j}");
        }
        let series = j["series"].as_array().expect("series");
        assert_eq!(series.len(), 4, "{j}");
        for s in series {
            let g = geos
                .iter()
                .position(|x| s["tags"]["region"] == *x)
                .expect("known region") as i64;
            // Σ over n in {0,1}, i in 0..20 of g*1000 + n*100 + i = 40g·1000 + 20·100 + 2·190.
            let want = 40 * g * 1000 + 2000 + 380;
            assert_eq!(s["values"][0][1].as_i64(), Some(want), "{j}");
        }
    }

    // SHOW over the series catalog: every node's, merged, sorted and paged once.
    let show = |node: &Node, q: &str| -> Vec<Vec<String>> {
        let j: serde_json::Value = client
            .get(format!("{}/query", node.url))
            .query(&[("db", "mn"), ("q", q)])
            .send()
            .and_then(|r| r.json())
            .expect("SHOW");
        assert!(j["results"][0]["error"].is_null(), "{q}: {j}");
        j["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                r.as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| c.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .collect()
    };
    let mut keys: Vec<String> = geos
        .iter()
        .flat_map(|g| (0..2).map(move |n| format!("cpu,node=n{n},region={g}")))
        .collect();
    keys.sort();
    let mut geo_sorted: Vec<&str> = geos.to_vec();
    geo_sorted.sort();
    // A database whose only points are in B's regions.
    let r = client
        .post(format!("{}/write?db=solo", b.url))
        .body("cpu,region=eu-west-1 v=1i 1767225600000000000\n")
        .send()
        .expect("write");
    assert_eq!(r.status(), 204);
    for node in [&a, &b] {
        let one = |v: Vec<&str>| -> Vec<Vec<String>> {
            v.into_iter().map(|s| vec![s.to_string()]).collect()
        };
        assert_eq!(show(node, "SHOW DATABASES"), one(vec!["mn", "solo"]));
        // Cardinalities count the merged lists: 8 series, 4 region values, 2 tag keys.
        let counts = |q: &str| -> Vec<(String, i64)> {
            let j: serde_json::Value = client
                .get(format!("{}/query", node.url))
                .query(&[("db", "mn"), ("q", q)])
                .send()
                .and_then(|r| r.json())
                .expect("cardinality");
            j["results"][0]["series"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or_default().to_string(),
                        s["values"][0][0].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        };
        let cpu = |n: i64| vec![("cpu".to_string(), n)];
        assert_eq!(counts("SHOW SERIES EXACT CARDINALITY"), cpu(8));
        assert_eq!(counts("SHOW SERIES CARDINALITY"), vec![(String::new(), 8)]);
        assert_eq!(
            counts("SHOW TAG VALUES EXACT CARDINALITY WITH KEY = region"),
            cpu(4)
        );
        assert_eq!(counts("SHOW TAG KEY EXACT CARDINALITY"), cpu(2));
        assert_eq!(
            counts("SHOW MEASUREMENT EXACT CARDINALITY"),
            vec![(String::new(), 1)]
        );
        assert_eq!(
            counts("SHOW MEASUREMENT EXACT CARDINALITY FROM cpu, mem"),
            vec![(String::new(), 1)]
        );
        let j: serde_json::Value = client
            .get(format!("{}/query", node.url))
            .query(&[("q", "SHOW SERIES EXACT CARDINALITY ON nosuch")])
            .send()
            .and_then(|r| r.json())
            .expect("cardinality");
        assert!(
            j["results"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("database not found")),
            "{j}"
        );
        assert_eq!(show(node, "SHOW MEASUREMENTS"), one(vec!["cpu"]));
        assert_eq!(show(node, "SHOW TAG KEYS"), one(vec!["node", "region"]));
        assert_eq!(
            show(node, "SHOW TAG VALUES WITH KEY = region"),
            geo_sorted
                .iter()
                .map(|g| vec!["region".to_string(), g.to_string()])
                .collect::<Vec<_>>()
        );
        assert_eq!(
            show(node, "SHOW SERIES"),
            one(keys.iter().map(String::as_str).collect())
        );
        assert_eq!(
            show(node, "SHOW SERIES LIMIT 3 OFFSET 2"),
            one(keys[2..5].iter().map(String::as_str).collect())
        );
        assert_eq!(
            show(
                node,
                "SHOW TAG VALUES WITH KEY = region WHERE node = 'n1' LIMIT 2 OFFSET 1"
            ),
            geo_sorted[1..3]
                .iter()
                .map(|g| vec!["region".to_string(), g.to_string()])
                .collect::<Vec<_>>()
        );
    }

    // Raw points of a remote region through the other node.
    let j: serde_json::Value = client
        .get(format!(
            "{}/api/v1/query?db=mn&measurement=cpu&where=region=eu-west-1&limit=3&epoch=ns",
            a.url
        ))
        .send()
        .and_then(|r| r.json())
        .expect("query");
    let rows = j["series"][0]["values"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{j}");
    assert_eq!(rows[0][0].as_i64(), Some(t0 + 1000 * 1_000_000), "{j}");

    // Residency: apac keeps its raw points on B (export = "aggregates", the default): raw
    // rows, first/last and buckets finer than a minute are refused with a 403 naming the
    // region and the rule; coarser aggregates cross.
    let ask = |q: &str| {
        let r = client
            .get(format!("{}/api/v1/query?db=mn&measurement=cpu&{q}", a.url))
            .send()
            .expect("query");
        (r.status(), r.text().unwrap_or_default())
    };
    for q in [
        "where=region=ap-south-1&limit=3",
        "fields=v&agg=last&where=region=ap-south-1",
        "fields=v&agg=mean&every=10s&where=region=ap-south-1",
    ] {
        let (status, text) = ask(q);
        assert_eq!(status, 403, "{q}: {text}");
        assert!(
            text.contains("\\\"apac\\\"") && text.contains("export"),
            "{q}: {text}"
        );
    }
    // A raw query whose filter names no geography asks every region: apac's answer holds
    // no point when nothing matches there (answered, empty), and is refused when it does.
    for (q, want) in [("where=node=n9", 200), ("where=node=n1&limit=3", 403)] {
        let (status, text) = ask(q);
        assert_eq!(status, want, "{q}: {text}");
        if want == 200 {
            let j: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(j["partial"], false, "{j}");
            assert_eq!(j["series"].as_array().map(Vec::len), Some(0), "{j}");
            assert_eq!(j["regions"]["apac"]["status"], "ok", "apac asked: {j}");
        }
    }
    let j: serde_json::Value = client
        .get(format!(
            "{}/api/v1/query?db=mn&measurement=cpu&fields=v&agg=count&every=1h&where=region=ap-south-1",
            a.url
        ))
        .send()
        .and_then(|r| r.json())
        .expect("query");
    assert_eq!(j["partial"], false, "{j}");
    // B answers raw apac rows itself: the rule is about other nodes.
    let r = client
        .get(format!(
            "{}/api/v1/query?db=mn&measurement=cpu&where=region=ap-south-1&limit=3",
            b.url
        ))
        .send()
        .expect("query");
    assert_eq!(r.status(), 200);

    // Node B down: A's answers say so.
    b.stop();
    let j: serde_json::Value = client
        .get(format!(
            "{}/api/v1/query?db=mn&measurement=cpu&fields=v&agg=count",
            a.url
        ))
        .send()
        .and_then(|r| r.json())
        .expect("query");
    assert_eq!(j["partial"], true, "{j}");
    assert_eq!(j["regions"]["eu"]["status"], "error", "{j}");
    assert_eq!(j["regions"]["americas"]["status"], "ok", "{j}");
    assert_eq!(j["series"][0]["values"][0][1].as_i64(), Some(80), "{j}");
    // And writes for B's regions are refused (503), not lost or half-acknowledged.
    let r = client
        .post(format!("{}/write?db=mn", a.url))
        .body(format!("cpu,region=eu-west-1 v=1i {t0}"))
        .send()
        .expect("write");
    assert_eq!(r.status(), 503);
    // SHOW answers what A holds, with a warning naming what is missing (a client's start
    // asks SHOW DATABASES: it keeps working while a node is down).
    let j: serde_json::Value = client
        .get(format!("{}/query", a.url))
        .query(&[("db", "mn"), ("q", "SHOW TAG VALUES WITH KEY = region")])
        .send()
        .and_then(|r| r.json())
        .expect("SHOW");
    let result = &j["results"][0];
    let values: Vec<&str> = result["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r[1].as_str())
        .collect();
    assert_eq!(values, ["af-south-1", "us-east-1"], "{j}");
    assert_eq!(result["messages"][0]["level"], "warning", "{j}");
    assert!(
        result["messages"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("incomplete")),
        "{j}"
    );
    a.stop();

    // Each node's files hold only its own regions.
    assert_eq!(parquet_regions(&da), vec!["americas", "global"]);
    assert_eq!(parquet_regions(&db), vec!["apac", "eu"]);
}

/// With auth on, nodes present `auth.node_token` to each other: forwarded writes and
/// fanned-out queries work with it, and a client token is refused where only nodes may ask.
#[test]
fn nodes_use_their_own_token_never_a_clients() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pa, pb) = (free_port(), free_port());
    let (a_url, b_url) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let client_token = "client-token-0123456789";
    let node_token = "node-token-0123456789abcdef";
    let mut cfg = ServerConfig::default().tokens(&[client_token]).render();
    for (name, url) in [
        ("americas", &a_url),
        ("global", &a_url),
        ("eu", &b_url),
        ("apac", &b_url),
    ] {
        cfg = cfg.replacen(
            &format!("name = \"{name}\"\n"),
            &format!("name = \"{name}\"\nurl = \"{url}\"\n"),
            1,
        );
    }
    // Without a node token, a config with auth and remote regions is refused.
    let config = root.path().join("regions.toml");
    std::fs::write(&config, &cfg).expect("writing config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .expect("meridian check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("auth.node_token"),
        "{err}"
    );
    let cfg = cfg.replacen(
        "[auth]\n",
        &format!("[auth]\nnode_token = \"{node_token}\"\n"),
        1,
    );
    std::fs::write(&config, &cfg).expect("writing config");
    let a = Node::start(
        &root.path().join("a"),
        &config,
        pa,
        &["americas", "global"],
        &[],
    );
    let b = Node::start(&root.path().join("b"), &config, pb, &["eu", "apac"], &[]);
    let client = http_client();
    let auth = format!("Token {client_token}");

    // A client writes eu points to A, which forwards them to B with the node token.
    let r = client
        .post(format!("{a_url}/write?db=tk"))
        .header("Authorization", &auth)
        .body("cpu,region=eu-west-1 v=1i 1767225600000000000\ncpu,region=us-east-1 v=2i 1767225600000000000\n")
        .send()
        .expect("write");
    assert_eq!(r.status(), 204, "{:?}", r.text());
    let j: serde_json::Value = client
        .get(format!(
            "{a_url}/api/v1/query?db=tk&measurement=cpu&fields=v&agg=sum"
        ))
        .header("Authorization", &auth)
        .send()
        .and_then(|r| r.json())
        .expect("query");
    assert_eq!(j["partial"], false, "{j}");
    assert_eq!(j["series"][0]["values"][0][1].as_i64(), Some(3), "{j}");

    // B's internal endpoint and forwarded writes: the node token only.
    let internal = format!("{b_url}/api/v1/internal/partial?region=eu");
    let params = r#"{"db":"tk","measurement":"cpu","fields":"v","agg":"sum"}"#;
    for (token, want) in [(client_token, 401), (node_token, 200)] {
        let r = client
            .post(&internal)
            .header("Authorization", format!("Token {token}"))
            .body(params)
            .send()
            .expect("internal");
        assert_eq!(r.status(), want, "{token}: {:?}", r.text());
    }
    let r = client
        .post(format!("{b_url}/api/v3/write_lp?db=tk"))
        .header("Authorization", &auth)
        .header("x-meridian-forwarded", "1")
        .body("cpu,region=eu-west-1 v=5i 1767225600000000001\n")
        .send()
        .expect("write");
    assert_eq!(r.status(), 401);
    a.stop();
    b.stop();
}

/// A TCP relay that records every byte it carries, both ways.
struct Capture {
    pub port: u16,
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Capture {
    fn start(to: u16) -> Capture {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        let seen = bytes.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    let seen = seen.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 << 10];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            seen.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        let _ = into.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Capture { port, bytes }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

/// Residency, checked on the wire (issue #15): node A reaches region eu through a relay
/// that records the traffic. eu keeps its raw points on B (`export = "aggregates"`, the
/// default): raw rows and `first` are refused with 403, aggregates cross; and in all the
/// bytes between the nodes no raw point of eu appears, neither a value (other than the
/// bucket's min and max, which are the answer) nor a timestamp.
#[test]
fn no_raw_point_of_an_aggregates_only_region_crosses_the_wire() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pa, pb) = (free_port(), free_port());
    let relay = Capture::start(pb);
    let lines: Vec<(&str, String)> = [
        ("americas", pa),
        ("global", pa),
        ("eu", relay.port),
        ("apac", pb),
    ]
    .into_iter()
    .map(|(name, port)| (name, format!("url = \"http://127.0.0.1:{port}\"\n")))
    .collect();
    let (a, b) = start_pair(
        root.path(),
        ServerConfig::default().render(),
        &lines,
        (pa, pb),
    );
    let client = http_client();

    // 50 points of eu, written to B: values in a shuffled order, so the first and last
    // points are neither the minimum nor the maximum.
    let t0 = 1_767_225_600_123_456_789i64;
    let value = |i: i64| 5000.03125 + ((i * 37 + 11) % 50) as f64;
    let time = |i: i64| t0 + i * 1_000_003_007;
    let mut body = String::new();
    for i in 0..50 {
        body.push_str(&format!(
            "cpu,region=eu-west-1,host=h{} v={} {}\n",
            i % 2,
            value(i),
            time(i)
        ));
    }
    let r = client
        .post(format!("{}/write?db=res", b.url))
        .body(body)
        .send()
        .expect("write");
    assert_eq!(r.status(), 204);

    let get = |q: &str| {
        let r = client
            .get(format!(
                "{}/api/v1/query?db=res&measurement=cpu&where=region=eu-west-1&start={}&end={}&{q}",
                a.url,
                t0 - 3_600_000_000_000,
                t0 + 7_200_000_000_000
            ))
            .send()
            .expect("query");
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().expect("JSON"))
    };
    for q in [
        "fields=v",
        "fields=v&agg=first",
        "fields=v&agg=mean&every=1s",
    ] {
        let (status, j) = get(q);
        assert_eq!(status, 403, "{q}: {j}");
        assert!(
            j["error"].as_str().unwrap_or("").contains("region \"eu\""),
            "{j}"
        );
    }
    let (status, j) = get("fields=v&agg=mean,count,max,min,sum&group_by=host");
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["partial"], false, "{j}");
    let (status, j) = get("fields=v&agg=mean&every=1h");
    assert_eq!(status, 200, "{j}");
    let mean: f64 = (0..50).map(value).sum::<f64>() / 50.0;
    assert!(
        (j["series"][0]["values"][0][1].as_f64().unwrap() - mean).abs() < 1e-9,
        "{j}"
    );

    let wire = relay.text();
    assert!(
        wire.contains("/api/v1/internal/partial"),
        "the queries went through the relay"
    );
    // Per host the extremes are the answer of max/min; every other value, and every
    // timestamp, must not have crossed.
    let extremes: Vec<f64> = (0..2)
        .flat_map(|h| {
            let vs: Vec<f64> = (0..50).filter(|i| i % 2 == h).map(value).collect();
            [
                vs.iter().cloned().fold(f64::MAX, f64::min),
                vs.iter().cloned().fold(f64::MIN, f64::max),
            ]
        })
        .collect();
    for i in 0..50 {
        let v = value(i);
        if !extremes.contains(&v) {
            assert!(
                !wire.contains(&v.to_string()),
                "raw value {v} crossed:\n{wire}"
            );
        }
        assert!(
            !wire.contains(&time(i).to_string()),
            "raw timestamp {} crossed:\n{wire}",
            time(i)
        );
    }
    a.stop();
    b.stop();
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with `openssl` in `dir`:
/// (ca.pem, node.pem, node.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        crate::support::output_ok(
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir),
            &format!("openssl {args:?} (Debian: openssl) makes the test certificates"),
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=meridian-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=meridian-node",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node.key"),
    )
}

/// Node-to-node HTTPS (issue #15): both nodes serve HTTPS with a certificate of a private
/// CA (`http.tls_cert`, `http.tls_key`) and trust that CA only (`http.node_ca`). Writes
/// forwarded to the other node and queries fanned out to it succeed, and a relay between
/// the nodes records nothing readable: neither an endpoint nor a value.
#[test]
fn nodes_talk_to_each_other_over_https_only() {
    let root = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(root.path());
    let (pa, pb) = (free_port(), free_port());
    let relay = Capture::start(pb);
    let cfg = ServerConfig::default().render().replacen(
        "[http]\n",
        &format!(
            "[http]\ntls_cert = {:?}\ntls_key = {:?}\nnode_ca = {:?}\n",
            cert.display().to_string(),
            key.display().to_string(),
            ca.display().to_string()
        ),
        1,
    );
    let lines: Vec<(&str, String)> = [
        ("americas", pa),
        ("global", pa),
        ("eu", relay.port),
        ("apac", relay.port),
    ]
    .into_iter()
    .map(|(name, port)| {
        (
            name,
            format!("url = \"https://127.0.0.1:{port}\"\nexport = \"raw\"\n"),
        )
    })
    .collect();
    let (a, b) = start_pair(root.path(), cfg, &lines, (pa, pb));
    let pem = std::fs::read(&ca).expect("ca.pem");
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA"))
        .no_proxy()
        .build()
        .expect("client");
    let https = |p: u16| format!("https://127.0.0.1:{p}");

    // Through A: eu's and apac's points are forwarded to B over HTTPS.
    let mut body = String::new();
    let mut want = 0i64;
    for (i, geo) in ["eu-west-1", "ap-south-1", "us-east-1"].iter().enumerate() {
        for k in 0..10i64 {
            let v = 424_242 + i as i64 * 1000 + k;
            want += v;
            body.push_str(&format!(
                "cpu,region={geo} v={v}i {}\n",
                1_767_225_600_000_000_000 + k
            ));
        }
    }
    let r = client
        .post(format!("{}/write?db=tls", https(pa)))
        .body(body)
        .send()
        .expect("write over HTTPS");
    assert_eq!(r.status(), 204, "{:?}", r.text());
    let j: serde_json::Value = client
        .get(format!(
            "{}/api/v1/query?db=tls&measurement=cpu&fields=v&agg=sum",
            https(pa)
        ))
        .send()
        .and_then(|r| r.json())
        .expect("query over HTTPS");
    assert_eq!(j["partial"], false, "{j}");
    assert_eq!(j["series"][0]["values"][0][1].as_i64(), Some(want), "{j}");
    // Raw rows of B's regions, through A.
    let j: serde_json::Value = client
        .get(format!(
            "{}/api/v1/query?db=tls&measurement=cpu&where=region=eu-west-1",
            https(pa)
        ))
        .send()
        .and_then(|r| r.json())
        .expect("raw query over HTTPS");
    assert_eq!(
        j["series"][0]["values"].as_array().map(Vec::len),
        Some(10),
        "{j}"
    );

    // Plain HTTP is not served.
    let plain = http_client()
        .get(format!("http://127.0.0.1:{pa}/health"))
        .send();
    assert!(
        !plain.is_ok_and(|r| r.status().is_success()),
        "plain HTTP answered"
    );
    let wire = relay.text();
    assert!(
        !wire.is_empty(),
        "node-to-node traffic went through the relay"
    );
    for needle in [
        "/api/v1/internal",
        "/api/v3/write_lp",
        "424242",
        "eu-west-1",
    ] {
        assert!(!wire.contains(needle), "{needle:?} readable on the wire");
    }
    a.stop();
    b.stop();
}

/// Node A (americas, global) on port `pa` and node B (eu, apac) on `pb`, reading `cfg` with
/// `lines` added to each region's table (its url, export, ...).
fn start_pair(
    root: &Path,
    mut cfg: String,
    lines: &[(&str, String)],
    (pa, pb): (u16, u16),
) -> (Node, Node) {
    for (name, extra) in lines {
        cfg = cfg.replacen(
            &format!("name = \"{name}\"\n"),
            &format!("name = \"{name}\"\n{extra}"),
            1,
        );
    }
    let config = root.join("regions.toml");
    std::fs::write(&config, cfg).expect("writing config");
    let a = Node::start(&root.join("a"), &config, pa, &["americas", "global"], &[]);
    let b = Node::start(&root.join("b"), &config, pb, &["eu", "apac"], &[]);
    (a, b)
}
