//! Routing versions outside cluster mode: a `[directory]` entry moved in regions.toml, the
//! server restarted. The change is recorded as a version in force from the restart on;
//! points keep the routing of their own time, so old points are still found, a rewrite of
//! an old point lands beside it (last write wins, no second copy), and new points go to the
//! new region. Checked through queries and by reading every region's Parquet files.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::{ServerConfig, TestServer, Value, read_rows, rows_by_key_merged};

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// (count, sum) of `v` for tenant `globex`, as the server answers.
fn count_sum(s: &TestServer, extra: &str) -> (i64, i64) {
    let r = s.get(&format!(
        "/api/v1/query?db=db&measurement=cpu&fields=v&agg=count,sum&where=tenant=globex{extra}&start=0&end=9000000000000000000"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["partial"], false, "{j}");
    let row = &j["series"][0]["values"][0];
    (row[1].as_i64().unwrap(), row[2].as_i64().unwrap())
}

/// A point of tenant globex (region tag us-east-1: americas by geography), its host by
/// its second.
fn globex_line(t: i64, v: i64) -> String {
    format!(
        "cpu,tenant=globex,region=us-east-1,host=h{} v={v}i {t}\n",
        (t / 1_000_000_000) % 3
    )
}

/// Tenant globex's points in the files, by time: the region holding each and its value
/// (merged within the region, the newer file winning); a point in two regions fails.
fn globex_by_time(rows: &[crate::support::Row]) -> BTreeMap<i64, (String, Option<Value>)> {
    let mut found = BTreeMap::new();
    for region in ["americas", "eu", "apac", "global"] {
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.region == region)
            .filter(|r| r.tags.get("tenant").map(String::as_str) == Some("globex"))
            .cloned()
            .collect();
        for (key, row) in rows_by_key_merged(&mine) {
            let before = found.insert(key.3, (region.to_string(), row.fields.get("v").cloned()));
            assert!(
                before.is_none(),
                "point at {} in {before:?} and {region}",
                key.3
            );
        }
    }
    found
}

#[test]
fn a_moved_directory_entry_keeps_old_points_where_they_were() {
    let mut s = TestServer::start(ServerConfig::default());
    let sec = 1_000_000_000i64;
    let old_t0 = (now_ns() - 3 * 3_600 * sec) / sec * sec;
    // Model: time → v of every globex point (one series per host; hosts by time).
    let mut model: BTreeMap<i64, i64> = BTreeMap::new();
    let line = globex_line;
    let mut body = String::new();
    for i in 0..60 {
        let t = old_t0 + i * sec;
        body.push_str(&line(t, i));
        model.insert(t, i);
    }
    s.write_ok("db", &body);
    s.stop();

    // globex moves to eu (us-east-1 routes it to americas by its geo tag until now).
    s.set_config(ServerConfig::default().directory_entry("tenant=globex", "eu"));
    s.restart();
    assert!(
        s.logs().contains("the routing of the config changed"),
        "{}",
        s.logs()
    );
    // New points, after the change; a rewrite of an old one.
    let new_t0 = now_ns() / sec * sec + sec;
    let mut body = String::new();
    for i in 0..30 {
        let t = new_t0 + i * sec;
        body.push_str(&line(t, 1000 + i));
        model.insert(t, 1000 + i);
    }
    let rewritten = old_t0 + 5 * sec;
    body.push_str(&line(rewritten, 5000));
    model.insert(rewritten, 5000);
    s.write_ok("db", &body);

    let expected = (model.len() as i64, model.values().sum::<i64>());
    assert_eq!(count_sum(&s, ""), expected, "in memory");
    // Pruning by the geo tag asks the regions of both versions.
    assert_eq!(
        count_sum(&s, ",region=us-east-1"),
        expected,
        "pruned by geo tag"
    );
    s.stop();
    s.restart();
    assert!(
        !s.logs().contains("the routing of the config changed"),
        "an unchanged config records no version"
    );
    assert_eq!(count_sum(&s, ""), expected, "from files");
    s.stop();

    // Every point in one region only (old ones and the rewrite in americas, new ones in
    // eu), with the value written last.
    let rows = read_rows(&s.data_dir(), s.config.partition_ns());
    let found = globex_by_time(&rows);
    assert_eq!(found.len(), model.len());
    for (t, (region, v)) in &found {
        let want = if *t < new_t0 { "americas" } else { "eu" };
        assert_eq!(region, want, "point at {t}");
        assert_eq!(v, &Some(Value::Int(model[t])), "point at {t}");
    }

    // The versions, as an operator reads them.
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["routing", "show", "--config"])
        .arg(s.config_path())
        .arg("--data-dir")
        .arg(s.data_dir())
        .output()
        .expect("running meridian routing show");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("version 1 in force from the beginning")
            && text.contains("version 2 in force from")
            && text.contains("tenant=globex → eu"),
        "{text}"
    );
}

/// `meridian-compact --reroute` (issue #15): after a move, old partitions are rewritten
/// into the region the latest routing names, and that routing then applies from the
/// beginning. Every point is found once with its last value, all of the moved tenant's in
/// its new region's files; an interrupted run (its journal left behind) keeps the server
/// from starting until a run finishes.
#[test]
fn reroute_moves_old_partitions_into_the_new_region() {
    let mut s = TestServer::start(ServerConfig::default());
    let sec = 1_000_000_000i64;
    let old_t0 = (now_ns() - 5 * 3_600 * sec) / sec * sec;
    let mut model: BTreeMap<i64, i64> = BTreeMap::new();
    let line = globex_line;
    // Two hours of old points (two partitions), and one other tenant that stays put.
    let mut body = String::new();
    for i in 0..120 {
        let t = old_t0 + i * 60 * sec;
        body.push_str(&line(t, i));
        model.insert(t, i);
        body.push_str(&format!(
            "cpu,tenant=initech,region=us-east-1,host=x v=1i {t}\n"
        ));
        // A small measurement beside it: the flush packs the two in one file, and the
        // reroute takes `cpu`'s rows out of that file.
        body.push_str(&format!(
            "disk,tenant=initech,region=us-east-1,host=x used=2i {t}\n"
        ));
    }
    s.write_ok("db", &body);
    s.stop();
    assert!(
        crate::support::tree(&s.data_dir())
            .iter()
            .any(|p| p.contains("/~packed/")),
        "cpu and disk were not packed together"
    );
    s.set_config(ServerConfig::default().directory_entry("tenant=globex", "eu"));
    s.restart();
    let new_t0 = now_ns() / sec * sec + sec;
    let mut body = String::new();
    for i in 0..10 {
        body.push_str(&line(new_t0 + i * sec, 1000 + i));
        model.insert(new_t0 + i * sec, 1000 + i);
    }
    // A rewrite of an old point: beside the original (americas), until the reroute.
    body.push_str(&line(old_t0 + 60 * sec, 5000));
    model.insert(old_t0 + 60 * sec, 5000);
    s.write_ok("db", &body);
    s.stop();

    let (config_path, data_dir) = (s.config_path(), s.data_dir());
    let compact = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .output()
            .expect("running meridian-compact");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, text) = compact(&["--reroute"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("moved 120 rows from americas to eu"),
        "{text}"
    );
    let (ok, text) = compact(&["--reroute"]);
    assert!(ok && text.contains("nothing moved"), "a second run: {text}");

    let rows = read_rows(&s.data_dir(), s.config.partition_ns());
    let found = globex_by_time(&rows);
    assert_eq!(found.len(), model.len());
    for (t, (region, v)) in &found {
        assert_eq!(region, "eu", "point at {t}");
        assert_eq!(v, &Some(Value::Int(model[t])), "point at {t}");
    }
    for m in ["cpu", "disk"] {
        let stayed = rows
            .iter()
            .filter(|r| r.tags.get("tenant").map(String::as_str) == Some("initech"))
            .filter(|r| r.region == "americas" && r.measurement == m)
            .count();
        assert_eq!(stayed, 120, "the other tenant's {m} stays in americas");
    }

    // One version now, the latest rules from the beginning; the server answers the same.
    let history: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.data_dir().join("routing.json")).expect("routing.json"),
    )
    .expect("JSON");
    assert_eq!(
        history["versions"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
    assert_eq!(history["versions"][0]["number"], 3, "{history}");
    s.restart();
    let expected = (model.len() as i64, model.values().sum::<i64>());
    assert_eq!(count_sum(&s, ""), expected);
    assert_eq!(
        count_sum(&s, ",region=us-east-1"),
        expected,
        "pruned by geo tag"
    );
    s.stop();

    // A config whose regions live on several nodes is refused: rows moved to a region
    // served elsewhere would be lost to it.
    let several = config_path.with_file_name("several.toml");
    std::fs::write(
        &several,
        std::fs::read_to_string(&config_path).unwrap().replacen(
            "name = \"eu\"\n",
            "name = \"eu\"\nurl = \"http://127.0.0.1:9\"\n",
            1,
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
        .arg("--config")
        .arg(&several)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--reroute")
        .output()
        .expect("running meridian-compact");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("has a url"),
        "{text}"
    );

    // An interrupted run: the server refuses to start until a run finishes.
    std::fs::write(s.data_dir().join("reroute.json"), "{}").expect("journal");
    assert!(
        s.spawn(&[]).is_err(),
        "the server started with a reroute journal"
    );
    assert!(
        s.logs().contains("meridian-compact --reroute"),
        "{}",
        s.logs()
    );
    let (ok, text) = compact(&["--reroute"]);
    assert!(ok, "{text}");
    assert!(!s.data_dir().join("reroute.json").exists());
    s.restart();
    assert_eq!(count_sum(&s, ""), expected);
}
