//! Two nodes of one deployment (SPEC §2): node A hosts `americas` and `global`, node B hosts
//! `eu` and `apac`; each reaches the other's regions through the `url` of the shared config.
//! Writes sent to either node land in the hosting node's files; a query on either node fans
//! out over HTTP and merges partial aggregates; a node that is down makes answers partial.

use std::path::Path;

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
        cfg = cfg.replacen(
            &format!("name = \"{name}\"\n"),
            &format!("name = \"{name}\"\nurl = \"{url}\"\n"),
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
    a.stop();

    // Each node's files hold only its own regions.
    assert_eq!(parquet_regions(&da), vec!["americas", "global"]);
    assert_eq!(parquet_regions(&db), vec!["apac", "eu"]);
}
