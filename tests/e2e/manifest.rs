//! A lost or damaged manifest (issue #12): start-up refuses with advice and deletes nothing;
//! `meridian-compact --rebuild-manifest` rebuilds it from the files' footers, and every
//! acknowledged point (in files written by several flushes, and in the WAL) answers again
//! with its last written value, compared with a model kept by the test.
//!
//! "Lost" is a region's whole `_manifest/` directory gone; "damaged" is its newest checkpoint
//! (`_manifest/<version:020>.checkpoint.json`) cut to half its length.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use crate::support::{
    MANIFEST_DIR, ServerConfig, TestServer, manifest_files, manifest_version, manifest_versions,
    tree,
};

const HOUR: i64 = 3_600_000_000_000;
const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

/// (host, time) → field → value; last write wins per field.
type Model = BTreeMap<(String, i64), BTreeMap<String, f64>>;

fn write(s: &TestServer, model: &mut Model, round: u32, hosts: &[&str], times: &[i64]) {
    let mut body = String::new();
    for h in hosts {
        // The host's number picks its region: a host is one series in every round.
        let i: usize = h[1..].parse().unwrap();
        let region = if i.is_multiple_of(2) {
            "eu-west-1"
        } else {
            "us-east-1"
        };
        for &t in times {
            let field = if round.is_multiple_of(2) { "a" } else { "b" };
            let v = f64::from(round) * 100.0 + i as f64 + (t % 7) as f64 / 8.0;
            body.push_str(&format!("m,host={h},region={region} {field}={v:?} {t}\n"));
            model
                .entry((h.to_string(), t))
                .or_default()
                .insert(field.to_string(), v);
        }
    }
    s.write_ok("mf", &body);
}

/// Every file under `dir` (recursively) whose content is exactly `bytes`.
fn files_holding(dir: &Path, bytes: &[u8]) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|rel| !rel.ends_with('/'))
        .filter(|rel| std::fs::read(dir.join(rel)).is_ok_and(|b| b == bytes))
        .collect()
}

fn parquet_files(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|rel| rel.ends_with(".parquet"))
        .collect()
}

fn answer(s: &TestServer) -> Model {
    let r = s.get("/api/v1/query?db=mf&measurement=m&fields=*&epoch=ns");
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["partial"], Json::Bool(false), "{j}");
    let mut got = Model::new();
    for series in j["series"].as_array().unwrap() {
        let cols: Vec<&str> = series["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for row in series["values"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            let get = |c: &str| &row[cols.iter().position(|x| *x == c).unwrap()];
            let key = (
                get("host").as_str().unwrap().to_string(),
                get("time").as_i64().unwrap(),
            );
            let mut fields = BTreeMap::new();
            for f in ["a", "b"] {
                if let Some(i) = cols.iter().position(|x| *x == f)
                    && let Some(v) = row[i].as_f64()
                {
                    fields.insert(f.to_string(), v);
                }
            }
            assert!(
                got.insert(key.clone(), fields).is_none(),
                "{key:?} twice: {j}"
            );
        }
    }
    got
}

#[test]
fn a_lost_or_damaged_manifest_deletes_nothing_and_is_rebuilt_from_footers() {
    let mut s = TestServer::start(ServerConfig::default());
    let mut model = Model::new();
    let hosts = ["h0", "h1", "h2", "h3"];
    write(&s, &mut model, 0, &hosts, &[T0, T0 + 1, T0 + HOUR]);
    s.stop();
    s.restart();
    // Overwrites across flushes (field b added to existing points, a rewritten).
    write(&s, &mut model, 1, &hosts[..3], &[T0, T0 + HOUR + 5]);
    write(&s, &mut model, 2, &hosts[1..], &[T0 + 1]);
    s.stop();
    s.restart();
    // Acknowledged, in the WAL only.
    write(&s, &mut model, 3, &hosts, &[T0 + 2, T0 + HOUR]);
    assert_eq!(answer(&s), model, "before anything was lost");
    s.kill9();

    let data = s.data_dir();
    let files = parquet_files(&data);
    assert!(files.len() >= 4, "{files:?}");
    // The eu manifest lost: its whole `_manifest/` directory (checkpoints and edits).
    assert!(
        manifest_version(&data.join("eu")).is_some(),
        "eu has a manifest to lose"
    );
    std::fs::remove_dir_all(data.join("eu").join(MANIFEST_DIR)).unwrap();
    let err = s
        .spawn(&[])
        .expect_err("must refuse to start without the eu manifest");
    assert!(
        err.contains("missing") && err.contains("--rebuild-manifest"),
        "{err}"
    );
    assert_eq!(
        parquet_files(&data),
        files,
        "a refused start deletes nothing"
    );
    // A truncated manifest (the newest americas checkpoint cut in half): the same refusal,
    // and nothing deleted.
    let (checkpoints, _) = manifest_versions(&data.join("americas"));
    let newest = *checkpoints.last().expect("americas has a checkpoint");
    let am = data
        .join("americas")
        .join(MANIFEST_DIR)
        .join(format!("{newest:020}.checkpoint.json"));
    let text = std::fs::read(&am).unwrap();
    let damaged = text[..text.len() / 2].to_vec();
    std::fs::write(&am, &damaged).unwrap();
    let err = s.spawn(&[]).expect_err("must refuse a damaged manifest");
    assert!(
        err.contains("corrupt")
            && err.contains("--rebuild-manifest")
            && !err.contains("stack backtrace"),
        "{err}"
    );
    assert_eq!(parquet_files(&data), files);

    let out = Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
        .arg("--config")
        .arg(s.config_path())
        .arg("--data-dir")
        .arg(&data)
        .arg("--rebuild-manifest")
        .arg("--json")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    let rebuilt: BTreeMap<String, bool> = report["rebuild"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["region"].as_str().unwrap().to_string(),
                r["rebuilt"] == true,
            )
        })
        .collect();
    assert_eq!(rebuilt.get("eu"), Some(&true), "{report}");
    assert_eq!(rebuilt.get("americas"), Some(&true), "{report}");
    assert_eq!(rebuilt.get("global"), Some(&false), "{report}");
    // The damaged checkpoint is kept aside (under whatever name), and the manifest a reader
    // sees now is whole.
    assert!(
        !files_holding(&data, &damaged).is_empty(),
        "the damaged checkpoint is kept aside"
    );
    assert!(manifest_files(&data.join("americas")).is_some());
    assert!(manifest_files(&data.join("eu")).is_some());

    s.restart();
    assert_eq!(answer(&s), model);
    s.stop();
    s.restart();
    assert_eq!(answer(&s), model, "after the replayed WAL was flushed");
}
