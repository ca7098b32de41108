//! Small measurements share packed files (issue #12: many small measurements must not mean
//! a file each): written by a flush, read back by queries and by a reader that knows
//! nothing of Meridian, compacted, deleted from, verified and rebuilt from their footers.

use std::collections::BTreeMap;

use crate::support::*;

const DB: &str = "pk";
/// 2026-01-01T00:00:00Z: a sealed partition.
const T0: i64 = 1_767_225_600_000_000_000;
const N: usize = 300;

/// (measurement, tags, time) → field → value: the last write of each field wins.
type Model = BTreeMap<(String, String, i64), BTreeMap<String, serde_json::Value>>;

/// Line `k` of measurement `i` in round `round`: three shapes of series (optional tags,
/// tagless, every field type), and `v` a float in some measurements and an integer in
/// others (so their columns cannot share a file).
fn line(model: &mut Model, i: usize, k: i64, round: i64) -> String {
    let m = format!("m{i:03}");
    let t = T0 + k * 1_000_000_000;
    let (tags, fields): (String, Vec<(&str, serde_json::Value, String)>) = match i % 3 {
        0 => (
            if k % 2 == 0 {
                "host=a".into()
            } else {
                String::new()
            },
            vec![(
                "v",
                serde_json::json!(k as f64 + 0.5 + round as f64),
                format!("{}", k as f64 + 0.5 + round as f64),
            )],
        ),
        1 => (
            String::new(),
            vec![("v", serde_json::json!(k + round), format!("{}i", k + round))],
        ),
        _ => (
            format!("dc=d{},host=h{}", k % 2, i % 5),
            vec![
                ("s", serde_json::json!(format!("s{k}")), format!("\"s{k}\"")),
                (
                    "b",
                    serde_json::json!(round % 2 == 0),
                    format!("{}", round % 2 == 0),
                ),
            ],
        ),
    };
    let e = model.entry((m.clone(), tags.clone(), t)).or_default();
    for (f, v, _) in &fields {
        e.insert(f.to_string(), v.clone());
    }
    let fields: Vec<String> = fields
        .iter()
        .map(|(f, _, text)| format!("{f}={text}"))
        .collect();
    let key = if tags.is_empty() {
        m
    } else {
        format!("{m},{tags}")
    };
    format!("{key} {} {t}\n", fields.join(","))
}

/// The rows of `m` in the model as "time|name=value,…" (tags and fields, nulls left out).
fn model_rows(model: &Model, m: &str) -> Vec<String> {
    let mut out: Vec<String> = model
        .iter()
        .filter(|((mm, _, _), _)| mm == m)
        .map(|((_, tags, t), fields)| {
            let mut cells: Vec<String> = tags
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    format!("{k}={}", serde_json::json!(v))
                })
                .collect();
            cells.extend(fields.iter().map(|(k, v)| format!("{k}={v}")));
            cells.sort();
            format!("{t}|{}", cells.join(","))
        })
        .collect();
    out.sort();
    out
}

/// `SELECT *` of every measurement, as the server answers it, compared with the model.
fn assert_answers(s: &TestServer, model: &Model, when: &str) {
    for i in 0..N {
        let m = format!("m{i:03}");
        let r = s.get(&format!(
            "/query?db={DB}&epoch=ns&q=SELECT%20*%20FROM%20%22{m}%22"
        ));
        assert_eq!(r.status, 200, "{when}: {}", r.body);
        let j = r.json();
        let mut got: Vec<String> = Vec::new();
        if let Some(series) = j["results"][0]["series"].as_array() {
            for sr in series {
                let cols: Vec<&str> = sr["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap())
                    .collect();
                for row in sr["values"].as_array().unwrap() {
                    let row = row.as_array().unwrap();
                    let mut cells: Vec<String> = cols
                        .iter()
                        .zip(row)
                        .skip(1)
                        .filter(|(_, v)| !v.is_null())
                        .map(|(c, v)| format!("{c}={v}"))
                        .collect();
                    cells.sort();
                    got.push(format!("{}|{}", row[0], cells.join(",")));
                }
            }
        }
        got.sort();
        assert_eq!(got, model_rows(model, &m), "{when}: {m}");
    }
}

/// Every row the manifests list, read from the Parquet files by the test's own reader
/// (packed files filtered on `_measurement`), compared with the model.
fn assert_files(s: &TestServer, model: &Model, when: &str) {
    assert_files_but(s, model, when, &[]);
}

/// [`assert_files`] for every measurement but `skip`.
fn assert_files_but(s: &TestServer, model: &Model, when: &str, skip: &[&str]) {
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in read_rows(&s.data_dir(), 3_600_000_000_000) {
        let mut cells: Vec<String> = r
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::json!(v)))
            .collect();
        cells.extend(r.fields.iter().map(|(k, v)| {
            let v = match v {
                Value::Float(x) => serde_json::json!(x),
                Value::Int(x) => serde_json::json!(x),
                Value::Str(x) => serde_json::json!(x),
                Value::Bool(x) => serde_json::json!(x),
                other => panic!("{other:?}"),
            };
            format!("{k}={v}")
        }));
        cells.sort();
        got.entry(r.measurement.clone()).or_default().push(format!(
            "{}|{}",
            r.time,
            cells.join(",")
        ));
    }
    for i in 0..N {
        let m = format!("m{i:03}");
        if skip.contains(&m.as_str()) {
            continue;
        }
        let mut rows = got.remove(&m).unwrap_or_default();
        rows.sort();
        assert_eq!(rows, model_rows(model, &m), "{when}: files of {m}");
    }
}

/// Data files on disk, and those in packed directories.
fn parquet_files(s: &TestServer) -> (usize, usize) {
    let files: Vec<String> = tree(&s.data_dir())
        .into_iter()
        .filter(|p| p.ends_with(".parquet") && !p.contains("/.") && !p.contains("_manifest"))
        .collect();
    let packed = files.iter().filter(|p| p.contains("/~packed/")).count();
    (files.len(), packed)
}

#[test]
fn small_measurements_share_files_through_flush_compaction_delete_and_rebuild() {
    let mut s = TestServer::start(ServerConfig::default().shards(1));
    let mut model = Model::new();
    // Two writes: points of the second overwrite some of the first within the block.
    for round in 0..2 {
        let body: String = (0..N)
            .flat_map(|i| (round..round + 3).map(move |k| (i, k)))
            .map(|(i, k)| line(&mut model, i, k, round))
            .collect();
        s.write_ok(DB, &body);
    }
    assert_answers(&s, &model, "in memory");
    s.stop();
    let (files, packed) = parquet_files(&s);
    assert!(
        packed >= 1 && files <= 8,
        "{files} files ({packed} packed) for {N} measurements"
    );
    assert_files(&s, &model, "after the flush");
    s.restart();
    assert_answers(&s, &model, "after a restart");

    // A later flush of the same partition: a second packed file per region.
    let body: String = (0..N / 2).map(|i| line(&mut model, i, 1, 7)).collect();
    s.write_ok(DB, &body);
    // (The files overlap now: a reader of the files alone sees both versions of a point.)
    s.stop();
    s.restart();
    assert_answers(&s, &model, "after a second flush");
    s.stop();

    // Compaction packs each measurement's rows together, deduplicated: one file per
    // region and type of `v` (float, integer).
    compact(&s, &[]);
    let (files, packed) = parquet_files(&s);
    assert!(
        packed == files && files <= 8,
        "{files} files ({packed} packed) after compaction"
    );
    assert_files(&s, &model, "after compaction");
    compact(&s, &["--verify"]);
    s.restart();
    assert_answers(&s, &model, "after compaction");

    // A delete in one packed measurement, and another deleted whole: the packed file is
    // written again without their rows (the other measurements' rows copied).
    // Every packed file written until the stop below, as a server that has not deleted the
    // replaced ones yet would still have them.
    let mut before: BTreeMap<std::path::PathBuf, Vec<u8>> = BTreeMap::new();
    let mut keep_packed = |s: &TestServer| {
        for p in tree(&s.data_dir()) {
            if p.contains("/~packed/") && p.ends_with(".parquet") {
                let p = s.data_dir().join(p);
                if let Ok(bytes) = std::fs::read(&p) {
                    before.entry(p).or_insert(bytes);
                }
            }
        }
    };
    keep_packed(&s);
    for m in ["m002", "m005"] {
        delete(&s, &mut model, m);
        keep_packed(&s);
    }
    assert_answers(&s, &model, "after a delete");
    s.stop();
    assert_files(&s, &model, "after a delete");
    compact(&s, &["--verify"]);
    // A manifest rebuilt while the replaced packed files are still there (a server keeps
    // them for the queries' grace period): the rewritten entries and m005's tombstone name
    // the entries they replaced, so the deleted rows stay deleted.
    let restored: Vec<&std::path::PathBuf> = before
        .iter()
        .filter(|(p, _)| !p.exists())
        .map(|(p, b)| {
            std::fs::write(p, b).unwrap();
            p
        })
        .collect();
    assert!(!restored.is_empty());
    remove_manifests(&s);
    compact(&s, &["--rebuild-manifest"]);
    assert_files(&s, &model, "rebuilt beside the replaced packed files");
    for p in restored {
        std::fs::remove_file(p).unwrap();
    }
    // A manifest rebuilt now, from the footers, does not bring the deleted rows back: the
    // file that held them is gone (`meridian-compact` deletes retired files at once).
    remove_manifests(&s);
    compact(&s, &["--rebuild-manifest"]);
    assert_files(
        &s,
        &model,
        "after a rebuild with rows deleted from a packed file",
    );
    s.restart();
    assert_answers(
        &s,
        &model,
        "after a rebuild with rows deleted from a packed file",
    );
    s.stop();
    // Compaction packs the files again. What is not packed is the empty file that keeps
    // the WAL ranges of m005 (deleted whole), which retention drops with its partition.
    compact(&s, &[]);
    assert_files(&s, &model, "after the second compaction");
    let alone: Vec<(String, i64)> = tree(&s.data_dir())
        .into_iter()
        .filter(|p| p.ends_with(".parquet") && !p.contains("/~packed/") && !p.contains("/."))
        .map(|p| {
            use parquet::file::reader::FileReader;
            let f = std::fs::File::open(s.data_dir().join(&p)).unwrap();
            let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
            let rows = r.metadata().file_metadata().num_rows();
            (p, rows)
        })
        .collect();
    assert!(
        alone
            .iter()
            .all(|(p, rows)| *rows == 0 && p.contains("/m005/")),
        "{alone:?}"
    );

    // A lost manifest is rebuilt from the packed files' footers.
    remove_manifests(&s);
    compact(&s, &["--rebuild-manifest"]);
    assert_files(&s, &model, "after a rebuild");
    s.restart();
    assert_answers(&s, &model, "after a rebuild");
}

/// Every region's manifest gone (the server stopped), as an operator's slip would leave it.
fn remove_manifests(s: &TestServer) {
    for region in std::fs::read_dir(s.data_dir()).unwrap() {
        let m = region.unwrap().path().join("_manifest");
        if m.exists() {
            std::fs::remove_dir_all(&m).unwrap();
        }
    }
}

/// A delete of measurements whose rows are in a packed file while their WAL records are
/// still on disk, then kill -9: the restart's WAL replay must not bring them back (replay
/// skips a record only for the measurement whose file lists it, so the WAL ranges of a
/// measurement deleted whole stay with a tombstone of its own).
#[test]
fn a_delete_from_a_packed_file_survives_kill_9_with_the_wal_on_disk() {
    let cfg = ServerConfig::default()
        .shards(1)
        .flush(1_000_000, "64MiB", "300ms");
    let mut s = TestServer::start(cfg);
    let mut model = Model::new();
    let body: String = (0..40)
        .flat_map(|i| (0..3).map(move |k| (i, k)))
        .map(|(i, k)| line(&mut model, i, k, 0))
        .collect();
    s.write_ok(DB, &body);
    // Flushed by age into packed files; the WAL segment stays (it is the active one).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !tree(&s.data_dir())
        .iter()
        .any(|p| p.contains("/~packed/") && p.ends_with(".parquet"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no packed file was flushed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    for m in ["m005", "m008"] {
        delete(&s, &mut model, m);
    }
    s.kill9();
    s.restart();
    for m in ["m005", "m008", "m011"] {
        let r = s.get(&format!(
            "/query?db={DB}&epoch=ns&q=SELECT%20count(*)%20FROM%20%22{m}%22"
        ));
        let want = model.keys().filter(|(mm, _, _)| mm == m).count();
        let got = r.json()["results"][0]["series"][0]["values"][0]
            .as_array()
            .and_then(|row| row.iter().skip(1).filter_map(|v| v.as_u64()).max())
            .unwrap_or(0) as usize;
        assert_eq!(got, want, "{m} after kill -9: {}", r.body);
    }
}

/// Deletes from measurement `m`, in the server and the model: all of `m005`, the series of
/// `dc = d0` of any other.
fn delete(s: &TestServer, model: &mut Model, m: &str) {
    let whole = m == "m005";
    let q = if whole {
        format!("DELETE FROM \"{m}\"")
    } else {
        format!("DELETE FROM \"{m}\" WHERE \"dc\" = 'd0'")
    };
    let q: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let r = s.post(&format!("/query?db={DB}&q={q}"), "");
    assert_eq!(r.status, 200, "{}", r.body);
    model.retain(|(mm, tags, _), _| !(mm == m && (whole || tags.contains("dc=d0"))));
}
