//! `meridian-compact` end to end (SPEC §2, §6, §7; issue #5). A real server with a tiny flush
//! threshold writes many small files holding overlapping rewrites of the same points (some
//! fields omitted), is stopped, and the real compactor binary runs on its data dir. The
//! result is read back with the harness's independent reader (manifest JSON + Parquet) and
//! compared with a model built here: last write wins, field by field.
//!
//! - merge: fewer files, every point exactly once, equal to the model; `--verify` passes; a
//!   rerun changes nothing; the restarted server answers the same through its query API and
//!   replays nothing (the merged files kept the inputs' WAL ranges).
//! - size target: outputs split at the target, disjoint, stable under rerun.
//! - lock: refused while a server runs (also `--dry-run`, `--verify`); a server cannot start
//!   while the compactor runs.
//! - crash: `kill -9` of the compactor at spread-out moments (slowed down by
//!   `MERIDIAN_COMPACT_PAUSE_MS`) leaves every point readable exactly once; the rerun
//!   finishes and leaves a clean data dir.
//! - retention and downsampling: exact against an independent computation; rerun idempotent;
//!   the server reads rollups through its query API; retention tombstones keep a crashed
//!   server's WAL from resurrecting dropped partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const DB: &str = "cdb";
const M: &str = "cpu";
const T0: i64 = BASE_S * SEC_NS;
const MIN_NS: i64 = 60 * SEC_NS;

/// Small outputs (more files, row groups, pages and durable steps), a cheap zstd level.
const SMALL_OUTPUTS: [&str; 8] = [
    "--target-size",
    "8KiB",
    "--row-group-rows",
    "64",
    "--page-rows",
    "16",
    "--zstd-level",
    "3",
];

/// (host, region tag): spread over every region of the default config, one without a tag.
const HOSTS: [(&str, Option<&str>); 6] = [
    ("h0", Some("eu-west")),
    ("h1", Some("eu-central")),
    ("h2", Some("us-east")),
    ("h3", Some("ap-south")),
    ("h4", None),
    ("h5", Some("us-west")),
];

/// (tags, time) → fields, last write wins per field.
type Model = BTreeMap<(Tags, i64), Fields>;

/// Line protocol bodies in write order, and the model they must leave.
struct Dataset {
    bodies: Vec<String>,
    model: Model,
}

fn tags_of(host: &str, region: Option<&str>) -> Tags {
    let mut t = Tags::new();
    t.insert("host".into(), host.into());
    if let Some(r) = region {
        t.insert("region".into(), r.into());
    }
    t
}

/// A float from a small integer: sums of these are exact in any order.
fn quarter(rng: &mut Rng) -> Value {
    Value::Float(rng.range(-400, 400) as f64 / 4.0)
}

/// Points every minute for `hours` hours from `start`, for every host, then three rounds of
/// rewrites of random subsets carrying only some fields. Bodies are shuffled and chunked so
/// rewrites and originals of a point land in different files.
fn dataset(seed: u64, start: i64, hours: i64) -> Dataset {
    dataset_every(seed, start, hours, MIN_NS)
}

/// [`dataset`] with a point every `step` ns per host.
fn dataset_every(seed: u64, start: i64, hours: i64, step: i64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let mut bodies = Vec::new();
    let mut points: Vec<(Tags, i64)> = Vec::new();
    for (h, r) in HOSTS {
        for i in 0..hours * HOUR_NS / step {
            points.push((tags_of(h, r), start + i * step + rng.range(0, 1000)));
        }
    }
    for round in 0..4 {
        let mut lines = Vec::new();
        for (tags, t) in &points {
            let keep = match round {
                0 => true,
                1 => rng.chance(40),
                2 => rng.chance(20),
                _ => rng.chance(10),
            };
            if !keep {
                continue;
            }
            let mut f = Fields::new();
            if matches!(round, 0 | 1 | 3) {
                f.insert("usage_user".into(), quarter(&mut rng));
            }
            if matches!(round, 0 | 3) {
                f.insert("usage_idle".into(), quarter(&mut rng));
            }
            if matches!(round, 0 | 2) {
                f.insert("procs".into(), Value::Int(rng.range(0, 500)));
                f.insert("state".into(), Value::Str(format!("s{}", rng.below(4))));
            }
            lines.push(lp_line(M, tags, &f, Some(*t), rng.next_u64()));
            let e = model.entry((tags.clone(), *t)).or_default();
            for (k, v) in f {
                e.insert(k, v);
            }
        }
        // Shuffle within the round (Fisher-Yates) so files mix series and times.
        for i in (1..lines.len()).rev() {
            lines.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for chunk in lines.chunks(150) {
            bodies.push(chunk.join("\n"));
        }
    }
    Dataset { bodies, model }
}

fn small_flush_config() -> ServerConfig {
    ServerConfig::default().shards(2).flush(50, "64MiB", "1h")
}

/// A stopped server whose data dir holds `ds`, in many small files.
fn written(ds: &Dataset) -> TestServer {
    let mut server = TestServer::start(small_flush_config());
    for b in &ds.bodies {
        server.write_ok(DB, b);
    }
    server.stop();
    server
}

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn compactor(root: &Path, data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian-compact"));
    cmd.arg("--config")
        .arg(root.join("regions.toml"))
        .arg("--data-dir")
        .arg(data)
        .arg("--progress")
        .arg("lines")
        .args(args)
        .current_dir(root)
        .env_remove("MERIDIAN_COMPACT_PAUSE_MS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn compact(root: &Path, data: &Path, args: &[&str]) -> Run {
    let out = compactor(root, data, args)
        .output()
        .expect("running meridian-compact");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs with `--json`, asserts success, returns the summary.
fn compact_ok(root: &Path, data: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let r = compact(root, data, &a);
    assert!(
        r.ok,
        "meridian-compact {args:?} failed ({:?}):\n{}\n{}",
        r.code, r.stdout, r.stderr
    );
    let last = r.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {}", r.stdout))
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary without {key}: {v}"))
}

/// Live rows of one measurement, each identity exactly once (panics on duplicates).
fn live(data: &Path, measurement: &str) -> Model {
    rows_by_key_exactly_once(&read_rows(data, HOUR_NS))
        .into_iter()
        .filter(|((db, m, _, _), _)| db == DB && m == measurement)
        .map(|((_, _, tags, t), row)| ((tags, t), row.fields))
        .collect()
}

/// What a reader that merges the live files sees: rows in file-seq order, last write wins
/// per field (an independent merge, as a query does). Before compaction an identity may be
/// in several files; the manifest decides which are live.
fn merged(data: &Path, measurement: &str) -> Model {
    // `<seq>.parquet`, `<seq>~<rewrite>.parquet` or `<seq>~c<token>-<n>.parquet`.
    let seq_of = |file: &str| -> u64 {
        let name = file.rsplit('/').next().unwrap_or_default();
        name.split(['.', '~'])
            .next()
            .and_then(|d| d.parse().ok())
            .expect("file name starts with its seq")
    };
    let mut rows: Vec<Row> = read_rows(data, HOUR_NS)
        .into_iter()
        .filter(|r| r.db == DB && r.measurement == measurement)
        .collect();
    // Seqs are per region, and a series lives in one region: order within regions suffices.
    rows.sort_by_key(|r| (r.region.clone(), seq_of(&r.file)));
    let mut out = Model::new();
    for r in rows {
        let e = out.entry((r.tags.clone(), r.time)).or_default();
        for (k, v) in r.fields {
            e.insert(k, v);
        }
    }
    out
}

/// The crash-safety invariant: no partition lists both an input (a file live before the run)
/// and an output of the run.
fn assert_no_partition_mixes_old_and_new(before: &[(String, u64, String, u64, u64)], data: &Path) {
    let inputs: BTreeSet<(&str, &str)> = before
        .iter()
        .map(|(region, _, path, ..)| (region.as_str(), path.as_str()))
        .collect();
    let mut kinds: BTreeMap<String, BTreeSet<bool>> = BTreeMap::new();
    for (region, _, path, ..) in manifest_entries(data) {
        let dir = path
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        let new = !inputs.contains(&(region.as_str(), path.as_str()));
        kinds
            .entry(format!("{region}/{dir}"))
            .or_default()
            .insert(new);
    }
    for (dir, k) in kinds {
        assert_eq!(
            k.len(),
            1,
            "{dir} lists inputs and outputs of the same compaction"
        );
    }
}

fn assert_same(got: &Model, want: &Model, what: &str) {
    if got == want {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            Some(g) if g == v => {}
            other => diffs.push(format!("{k:?}: want {v:?}, got {other:?}")),
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(k)) {
        diffs.push(format!("{k:?}: unexpected {:?}", got[k]));
    }
    panic!(
        "{what}: {} of {} points differ, e.g.\n{}",
        diffs.len(),
        want.len(),
        diffs[..diffs.len().min(5)].join("\n")
    );
}

/// Manifest entries per region: (region, seq, path, rows, bytes).
fn manifest_entries(data: &Path) -> Vec<(String, u64, String, u64, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(data) else {
        return out;
    };
    for e in rd.flatten() {
        let region = e.file_name().to_string_lossy().into_owned();
        if !e.path().is_dir() {
            continue;
        }
        let Some(files) = manifest_files(&e.path()) else {
            continue;
        };
        for f in &files {
            out.push((
                region.clone(),
                f["seq"].as_u64().expect("seq"),
                f["path"].as_str().expect("path").to_string(),
                f["rows"].as_u64().expect("rows"),
                f["bytes"].as_u64().expect("bytes"),
            ));
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).expect("copy");
        }
    }
}

/// Points of the measurement through the server's query API (`agg=none`).
fn query_model(server: &TestServer, measurement: &str) -> Model {
    let r = server.get(&format!(
        "/api/v1/query?db={DB}&measurement={measurement}&agg=none&epoch=ns"
    ));
    assert_eq!(r.status, 200, "query: {r:?}");
    let v = r.json();
    assert_eq!(v["partial"], false, "partial answer: {v}");
    let mut out = Model::new();
    for s in v["series"].as_array().expect("series") {
        let cols: Vec<&str> = s["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("column name"))
            .collect();
        for row in s["values"].as_array().expect("values") {
            let row = row.as_array().expect("row");
            let t = row[0].as_i64().expect("time in ns");
            let mut tags = Tags::new();
            let mut fields = Fields::new();
            for (c, x) in cols.iter().zip(row).skip(1) {
                if x.is_null() {
                    continue;
                }
                if *c == "host" || *c == "region" {
                    tags.insert(c.to_string(), x.as_str().expect("tag").to_string());
                } else if let Some(i) = x.as_i64().filter(|_| !x.is_f64()) {
                    fields.insert(c.to_string(), Value::Int(i));
                } else if let Some(f) = x.as_f64() {
                    fields.insert(c.to_string(), Value::Float(f));
                } else {
                    fields.insert(
                        c.to_string(),
                        Value::Str(x.as_str().expect("string").into()),
                    );
                }
            }
            assert!(
                out.insert((tags, t), fields).is_none(),
                "point returned twice"
            );
        }
    }
    out
}

/// Files of a measurement in the manifest, per partition directory.
/// Per partition directory: (seq, bytes, file name) of each live file.
fn files_per_partition(
    data: &Path,
    measurement: &str,
) -> BTreeMap<String, Vec<(u64, u64, String)>> {
    let mut out: BTreeMap<String, Vec<(u64, u64, String)>> = BTreeMap::new();
    for (region, seq, path, _, bytes) in manifest_entries(data) {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.get(1) != Some(&encode_measurement(measurement).as_str()) {
            continue;
        }
        let dir = format!("{region}/{}", parts[..parts.len() - 1].join("/"));
        let name = parts[parts.len() - 1].to_string();
        out.entry(dir).or_default().push((seq, bytes, name));
    }
    out
}

#[test]
fn compaction_merges_files_and_keeps_the_last_write_of_each_field() {
    let ds = dataset(1, T0, 4);
    let mut server = written(&ds);
    let (root, data) = (server.root().to_path_buf(), server.data_dir());
    let before = manifest_entries(&data);
    let stored_rows: u64 = before.iter().map(|e| e.3).sum();
    assert!(
        stored_rows > ds.model.len() as u64,
        "the files must hold rewrites of the same points ({stored_rows} rows, {} points)",
        ds.model.len()
    );
    let parts_before = files_per_partition(&data, M);
    assert!(
        parts_before.values().any(|f| f.len() >= 3),
        "several files per partition expected: {parts_before:?}"
    );

    // Dry run: a plan, no change.
    let dry = compact(&root, &data, &["--dry-run"]);
    assert!(dry.ok, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout
            .contains("compact   cdb/cpu/part_day=2024-05-01/part_hour=00"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("file(s) in"), "{}", dry.stdout);
    assert_eq!(
        manifest_entries(&data),
        before,
        "--dry-run changed the manifest"
    );

    let s = compact_ok(&root, &data, &[]);
    let after = manifest_entries(&data);
    assert_eq!(num(&s, "files_in"), before.len() as u64, "{s}");
    assert_eq!(num(&s, "files_out"), after.len() as u64, "{s}");
    assert_eq!(num(&s, "rows_in"), stored_rows, "{s}");
    assert_eq!(num(&s, "rows_out"), ds.model.len() as u64, "{s}");
    assert_eq!(
        num(&s, "rows_deduped"),
        stored_rows - ds.model.len() as u64,
        "{s}"
    );
    assert!(num(&s, "bytes_after") < num(&s, "bytes_before"), "{s}");
    // One file per (region, partition) now.
    let parts_after = files_per_partition(&data, M);
    assert_eq!(
        parts_after.keys().collect::<Vec<_>>(),
        parts_before.keys().collect::<Vec<_>>()
    );
    assert!(
        parts_after.values().all(|f| f.len() == 1),
        "{parts_after:?}"
    );
    // Every output carries the seq of the newest input of its partition (which orders it
    // below anything flushed after its inputs), under a compaction's name.
    let dir_of = |p: &str| {
        p.rsplit_once('/')
            .map_or(String::new(), |(d, _)| d.to_string())
    };
    for (region, seq, path, ..) in &after {
        let max_in = before
            .iter()
            .filter(|e| &e.0 == region && dir_of(&e.2) == dir_of(path))
            .map(|e| e.1)
            .max()
            .unwrap_or(0);
        assert_eq!(*seq, max_in, "{region}: output {path}");
        assert!(path.contains("~c"), "{path}");
    }

    assert_same(&live(&data, M), &ds.model, "after compaction");
    assert_clean_data_dir(&data);
    let v = compact(&root, &data, &["--verify"]);
    assert!(
        v.ok && v.stdout.contains("all match"),
        "{}\n{}",
        v.stdout,
        v.stderr
    );

    // A rerun has nothing to do.
    let s2 = compact_ok(&root, &data, &[]);
    assert_eq!(num(&s2, "partitions_compacted"), 0, "{s2}");
    assert_eq!(manifest_entries(&data), after);

    // The server reads the compacted dir: same answer, and it replays nothing from its WAL
    // (the merged files carry the union of the inputs' WAL ranges).
    server.restart();
    assert_same(
        &query_model(&server, M),
        &ds.model,
        "query API after compaction",
    );
    server.stop();
    assert_eq!(
        manifest_entries(&data),
        after,
        "the restart added or removed files"
    );
    assert_same(&live(&data, M), &ds.model, "after a server restart");
}

#[test]
fn a_size_target_splits_outputs_that_reruns_leave_alone() {
    let ds = dataset_every(2, T0, 2, 10 * SEC_NS);
    let server = written(&ds);
    let (root, data) = (server.root().to_path_buf(), server.data_dir());
    let target = 8 * 1024;
    let args = SMALL_OUTPUTS;
    let before = manifest_entries(&data);
    // The newest input seq of a partition directory (`<region>/<path dir>`).
    let max_in = |dir: &str| -> u64 {
        before
            .iter()
            .filter(|e| {
                let d = e.2.rsplit_once('/').map_or("", |(d, _)| d);
                format!("{}/{d}", e.0) == dir
            })
            .map(|e| e.1)
            .max()
            .unwrap_or(0)
    };
    let s = compact_ok(&root, &data, &args);
    assert!(num(&s, "files_out") < num(&s, "files_in"), "{s}");
    // Row groups and pages of the outputs are as asked.
    let newest = walk_parquet(&data)
        .into_iter()
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("some output file");
    let file = std::fs::File::open(&newest).expect("opening an output");
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required)
        .parse_and_finish(&file)
        .expect("reading an output's footer and page index");
    let rows: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    assert!(rows.iter().all(|r| *r <= 64), "row groups {rows:?}");
    let pages = &meta.offset_index().expect("offset index")[0][0];
    let locs = pages.page_locations();
    let total = rows[0];
    for (i, p) in locs.iter().enumerate() {
        let end = locs.get(i + 1).map_or(total, |n| n.first_row_index);
        assert!(
            end - p.first_row_index <= 16,
            "page of {} rows",
            end - p.first_row_index
        );
    }
    let parts = files_per_partition(&data, M);
    let mut split = 0;
    for (dir, files) in &parts {
        let total: u64 = files.iter().map(|f| f.1).sum();
        let outputs = files.iter().filter(|f| f.2.contains("~c")).count();
        if outputs == 0 {
            // Left alone: merging could not have lowered its file count (and its files were
            // not mostly flushed ones, which a compaction rewrites).
            assert!(
                files.len() as u64 <= total.div_ceil(target),
                "{dir}: {files:?}"
            );
            continue;
        }
        assert_eq!(outputs, files.len(), "{dir}: inputs left beside outputs");
        split += usize::from(files.len() > 1);
        // Outputs are numbered in row order (`~c<token>-<n>`): all but the last reach the
        // target, and all carry the seq of the partition's newest input.
        let n_of = |name: &str| -> u64 {
            name.trim_end_matches(".parquet")
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let last = files.iter().map(|f| n_of(&f.2)).max().unwrap_or(0);
        for (seq, bytes, name) in files {
            assert_eq!(*seq, max_in(dir), "{dir}: {name}");
            if n_of(name) != last {
                assert!(
                    *bytes >= target,
                    "{dir}: output {name} is {bytes} bytes, under the target"
                );
            }
        }
    }
    assert!(split > 0, "a small target splits some partition: {parts:?}");
    assert_same(&live(&data, M), &ds.model, "split outputs");
    let entries = manifest_entries(&data);
    let s2 = compact_ok(&root, &data, &args);
    assert_eq!(num(&s2, "partitions_compacted"), 0, "{s2}");
    assert_eq!(manifest_entries(&data), entries);
    let v = compact(&root, &data, &["--verify"]);
    assert!(v.ok, "{}\n{}", v.stdout, v.stderr);

    // Without a config (no ./regions.toml in the working dir) the partition duration is
    // inferred from the directory depth and checked against every file.
    let out = Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--verify")
        .current_dir(&data)
        .output()
        .expect("running meridian-compact");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("partition duration 1h (inferred"), "{err}");
}

#[test]
fn compaction_runs_beside_a_live_server_and_every_query_sees_each_point_once() {
    let ds = dataset(3, T0, 2);
    let mut server = written(&ds);
    server.restart();
    let (root, data) = (server.root().to_path_buf(), server.data_dir());
    let before = manifest_entries(&data);
    assert!(
        before.len() > 8,
        "several files per partition: {}",
        before.len()
    );

    // A plan and a check of the live data dir change nothing.
    for args in [&["--dry-run"][..], &["--verify"][..]] {
        let r = compact(&root, &data, args);
        assert!(r.ok, "{args:?}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("working beside it"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(
        manifest_entries(&data),
        before,
        "--dry-run or --verify changed files"
    );

    // While it runs: writes of another measurement go on, and every query of `cpu` sees
    // each point exactly once, before, during and after the swap.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (queries, wrong, others) = std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let (mut n, mut wrong) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 3 {
                let got = query_model(&server, M);
                if got != ds.model {
                    wrong.push(format!(
                        "query {n}: {} rows, want {}",
                        got.len(),
                        ds.model.len()
                    ));
                }
                n += 1;
            }
            (n, wrong)
        });
        let writer = s.spawn(|| {
            let mut i = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let line = format!("other,host=h v={i}i {}\n", T0 + 5 * HOUR_NS + i);
                server.write_ok(DB, &line);
                i += 1;
            }
            i
        });
        let run = compact(&root, &data, &[]);
        assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("working beside it"), "{}", run.stderr);
        // The server applies the compactor's edits within a second or two.
        std::thread::sleep(Duration::from_millis(2500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.join().expect("writer");
        assert!(written > 0);
        let (n, wrong) = checker.join().expect("checker");
        (n, wrong, written)
    });
    assert!(
        wrong.is_empty(),
        "{} of {queries} queries wrong: {wrong:?}",
        wrong.len()
    );
    server.assert_healthy();
    // The outputs are live: one file per partition of `cpu`, under a compaction's name.
    let parts = files_per_partition(&data, M);
    assert!(
        parts
            .values()
            .all(|f| f.len() == 1 && f[0].2.contains("~c")),
        "{parts:?}"
    );
    // Points written after the compaction into its partitions land beside its outputs and
    // win over them (later writes), in queries and after a restart.
    let (tags, t) = ds.model.keys().next().cloned().expect("a point");
    let line = format!(
        "{M},{} usage_user=123456.5 {t}\n",
        tags.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    server.write_ok(DB, &line);
    let mut want = ds.model.clone();
    want.entry((tags.clone(), t))
        .or_default()
        .insert("usage_user".into(), Value::Float(123456.5));
    assert_same(&query_model(&server, M), &want, "a write after compaction");
    server.stop();
    server.restart();
    assert_same(&query_model(&server, M), &want, "after a restart");
    // Every point written beside the compactor is there: it left the server's files alone.
    let count = server.get(&format!(
        "/query?db={DB}&q=SELECT%20count(v)%20FROM%20other&epoch=ns"
    ));
    assert_eq!(count.status, 200, "{count:?}");
    assert_eq!(
        count.json()["results"][0]["series"][0]["values"][0][1].as_i64(),
        Some(others),
        "{count:?}"
    );
    server.stop();
    assert_same(&merged(&data, M), &want, "files after the stop");
    assert_clean_data_dir(&data);

    // Offline: the compactor holds the lock (slowed down): a server cannot start meanwhile.
    let child = compactor(&root, &data, &[])
        .env("MERIDIAN_COMPACT_PAUSE_MS", "400")
        .spawn()
        .expect("spawning the compactor");
    std::thread::sleep(Duration::from_millis(300));
    let started = server.spawn(&[]);
    assert!(
        started.is_err(),
        "a server started while the compactor held the data dir"
    );
    let err = started.err().unwrap_or_default();
    assert!(err.contains("in use"), "{err}");
    wait_ok(child, "compactor");
    assert_same(&live(&data, M), &want, "after compaction");
    server.restart();
    assert_same(
        &query_model(&server, M),
        &want,
        "query API after compaction",
    );
    server.stop();
}

#[test]
fn kill_9_of_the_compactor_at_any_moment_leaves_every_point_exactly_once() {
    let ds = dataset(4, T0, 3);
    let server = written(&ds);
    let root = server.root().to_path_buf();
    let template = server.data_dir();
    let files_before = manifest_entries(&template).len();
    // Small outputs: more durable steps to crash between.
    let args = SMALL_OUTPUTS;
    let pause_ms = 25u64;
    let run_paused = |dir: &Path| {
        compactor(&root, dir, &args)
            .env("MERIDIAN_COMPACT_PAUSE_MS", pause_ms.to_string())
            .spawn()
            .expect("spawning the compactor")
    };

    // Calibrate: a full paused run, and how many durable steps it takes.
    let calib = root.join("calib");
    copy_dir(&template, &calib);
    let t = Instant::now();
    let out = run_paused(&calib).wait_with_output().expect("compactor");
    let full = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("step "))
        .count();
    assert!(steps >= 10, "too few steps to crash between: {steps}");

    let iterations = 8u32;
    let mut rng = Rng::new(44);
    let mut kill_points = BTreeSet::new();
    let mut mid_commit = 0;
    for i in 0..iterations {
        let dir = root.join(format!("crash-{i}"));
        copy_dir(&template, &dir);
        // Spread the kills over the whole run (stratified), jittered.
        let frac = (f64::from(i) + rng.below(1000) as f64 / 1000.0) / f64::from(iterations);
        let mut child = run_paused(&dir);
        std::thread::sleep(full.mul_f64(frac));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().expect("compactor");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let done = stderr.lines().filter(|l| l.starts_with("step ")).count();
        let commits = stderr
            .lines()
            .filter(|l| l.starts_with("step ManifestCommitted"))
            .count();
        kill_points.insert(done);
        if commits > 0 && done < steps {
            mid_commit += 1;
        }

        // Right after the crash: every file the manifest lists exists and matches it, no
        // partition lists old and new files together, and a merging reader sees the model.
        assert_same(
            &merged(&dir, M),
            &ds.model,
            &format!("after kill at step {done}"),
        );
        assert_no_partition_mixes_old_and_new(&manifest_entries(&template), &dir);
        // The rerun finishes, cleans up, and leaves the same data.
        let s = compact_ok(&root, &dir, &args);
        assert!(
            s["failures"].as_array().is_some_and(|f| f.is_empty()),
            "{s}"
        );
        assert_same(
            &live(&dir, M),
            &ds.model,
            &format!("after the rerun (kill at {done})"),
        );
        assert_clean_data_dir(&dir);
        assert!(manifest_entries(&dir).len() < files_before);
        let v = compact(&root, &dir, &["--verify"]);
        assert!(v.ok, "{}", v.stdout);
        // Nothing left to do.
        let s = compact_ok(&root, &dir, &args);
        assert_eq!(num(&s, "partitions_compacted"), 0, "{s}");
    }
    assert!(
        kill_points.len() >= 3 && mid_commit >= 1,
        "kills should land at several steps, some between commits: {kill_points:?}, {mid_commit}"
    );
}

/// Independent rollup: per (series, 1m bucket), every aggregate of the numeric fields.
fn expected_rollup(model: &Model, every: i64) -> Model {
    let mut groups: BTreeMap<(Tags, i64), BTreeMap<String, Vec<Value>>> = BTreeMap::new();
    for ((tags, t), fields) in model {
        let bucket = t.div_euclid(every) * every;
        let g = groups.entry((tags.clone(), bucket)).or_default();
        for (k, v) in fields {
            if matches!(v, Value::Float(_) | Value::Int(_)) {
                g.entry(k.clone()).or_default().push(v.clone());
            }
        }
    }
    let mut out = Model::new();
    for (key, per_field) in groups {
        let mut f = Fields::new();
        for (name, vals) in per_field {
            let n = vals.len();
            f.insert(format!("{name}_count"), Value::Int(n as i64));
            f.insert(format!("{name}_first"), vals[0].clone());
            f.insert(format!("{name}_last"), vals[n - 1].clone());
            match &vals[0] {
                Value::Float(_) => {
                    let xs: Vec<f64> = vals
                        .iter()
                        .map(|v| {
                            if let Value::Float(x) = v {
                                *x
                            } else {
                                unreachable!()
                            }
                        })
                        .collect();
                    let sum = xs.iter().fold(0.0, |a, b| a + b);
                    f.insert(format!("{name}_sum"), Value::Float(sum));
                    f.insert(format!("{name}_mean"), Value::Float(sum / n as f64));
                    f.insert(
                        format!("{name}_min"),
                        Value::Float(xs.iter().copied().fold(f64::INFINITY, f64::min)),
                    );
                    f.insert(
                        format!("{name}_max"),
                        Value::Float(xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                    );
                }
                _ => {
                    let xs: Vec<i64> = vals
                        .iter()
                        .map(|v| {
                            if let Value::Int(x) = v {
                                *x
                            } else {
                                unreachable!()
                            }
                        })
                        .collect();
                    let sum: i64 = xs.iter().sum();
                    f.insert(format!("{name}_sum"), Value::Int(sum));
                    f.insert(format!("{name}_mean"), Value::Float(sum as f64 / n as f64));
                    f.insert(
                        format!("{name}_min"),
                        Value::Int(*xs.iter().min().unwrap_or(&0)),
                    );
                    f.insert(
                        format!("{name}_max"),
                        Value::Int(*xs.iter().max().unwrap_or(&0)),
                    );
                }
            }
        }
        if !f.is_empty() {
            out.insert(key, f);
        }
    }
    out
}

#[test]
fn retention_and_downsampling_are_exact_and_idempotent() {
    let ds = dataset(5, T0, 6);
    let mut server = written(&ds);
    let (root, data) = (server.root().to_path_buf(), server.data_dir());
    // Now = T0 + 10h; keep 7h: partitions ending at or before T0 + 3h go (hours 0, 1, 2).
    let now = (T0 + 10 * HOUR_NS).to_string();
    let cut = T0 + 3 * HOUR_NS;
    let args = [
        "--now",
        now.as_str(),
        "--retain",
        "7h",
        "--downsample",
        "1m:count,sum,mean,min,max,first,last",
        "--older-than",
        "1h",
    ];
    let kept: Model = ds
        .model
        .iter()
        .filter(|((_, t), _)| *t >= cut)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let rollup = expected_rollup(&kept, MIN_NS);
    assert!(kept.len() < ds.model.len() && !rollup.is_empty());

    let s = compact_ok(&root, &data, &args);
    assert!(
        num(&s, "partitions_dropped") > 0 && num(&s, "windows_rolled_up") > 0,
        "{s}"
    );
    assert_eq!(num(&s, "rollup_rows_out"), rollup.len() as u64, "{s}");
    assert_same(&live(&data, M), &kept, "raw data after retention");
    assert_same(&live(&data, "cpu_1m"), &rollup, "rollups");
    // Dropped partitions are gone from disk, not only from the manifest.
    for h in 0..3 {
        let dir = partition_dir(T0 + h * HOUR_NS, HOUR_NS);
        for rel in tree(&data) {
            assert!(
                !rel.contains(&format!("/{M}/{dir}")),
                "{rel} survived retention"
            );
        }
    }
    assert_clean_data_dir(&data);
    let v = compact(&root, &data, &["--verify"]);
    assert!(v.ok, "{}\n{}", v.stdout, v.stderr);

    // A rerun neither doubles nor changes anything.
    let entries = manifest_entries(&data);
    let s2 = compact_ok(&root, &data, &args);
    for k in [
        "partitions_dropped",
        "windows_rolled_up",
        "partitions_compacted",
    ] {
        assert_eq!(num(&s2, k), 0, "{k}: {s2}");
    }
    assert_eq!(manifest_entries(&data), entries);
    assert_same(&live(&data, "cpu_1m"), &rollup, "rollups after a rerun");

    // A point written late into a rolled-up window: the next run rolls that window up
    // again, exactly, and the run after it finds nothing stale (the new rollup is newer
    // than every source it covers).
    let (tags, t) = kept.keys().next().cloned().expect("a kept point");
    let late = t + 1;
    server.restart();
    server.write_ok(
        DB,
        &format!(
            "{M},{} usage_user=42.5 {late}\n",
            tags.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
    server.stop();
    let mut kept = kept;
    kept.insert(
        (tags, late),
        Fields::from([("usage_user".to_string(), Value::Float(42.5))]),
    );
    let rollup = expected_rollup(&kept, MIN_NS);
    let s3 = compact_ok(&root, &data, &args);
    assert_eq!(num(&s3, "windows_rolled_up"), 1, "{s3}");
    assert_same(
        &live(&data, "cpu_1m"),
        &rollup,
        "rollups after a late point",
    );
    let s4 = compact_ok(&root, &data, &args);
    assert_eq!(num(&s4, "windows_rolled_up"), 0, "{s4}");
    let entries = manifest_entries(&data);

    // The server reads rollups like any measurement, and brings nothing back.
    server.restart();
    assert_same(
        &query_model(&server, "cpu_1m"),
        &rollup,
        "rollups through the query API",
    );
    assert_same(
        &query_model(&server, M),
        &kept,
        "raw data through the query API",
    );
    server.stop();
    assert_eq!(manifest_entries(&data), entries);
}

/// A server killed with SIGKILL after its age-based flush put every row in a file: its WAL
/// segments stay on disk, every record covered by a file's WAL ranges.
fn crashed_with_everything_flushed(ds: &Dataset) -> TestServer {
    let mut server = TestServer::start(ServerConfig::default().shards(2).flush(50, "64MiB", "1s"));
    for b in &ds.bodies {
        server.write_ok(DB, b);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mem = server.get("/api/v1/regions").json()["memory_bytes"].as_u64();
        if mem == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "blocks never flushed by age");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill9();
    assert!(
        !wal_segments(&server.data_dir()).is_empty(),
        "the crash must leave WAL segments"
    );
    server
}

#[test]
fn merged_files_keep_the_wal_coverage_of_their_inputs() {
    let ds = dataset(7, T0, 3);
    let mut server = crashed_with_everything_flushed(&ds);
    let (root, data) = (server.root().to_path_buf(), server.data_dir());
    let s = compact_ok(&root, &data, &[]);
    assert!(num(&s, "partitions_compacted") > 0, "{s}");
    let after = manifest_entries(&data);
    // The restarted server replays its WAL: every record is covered by a merged file's WAL
    // ranges, so it writes no new file and the data is unchanged.
    server.restart();
    assert_same(
        &query_model(&server, M),
        &ds.model,
        "query API after replay",
    );
    server.stop();
    assert_eq!(
        manifest_entries(&data),
        after,
        "WAL replay re-wrote compacted records"
    );
    assert_same(&live(&data, M), &ds.model, "after replay");
}

#[test]
fn retention_tombstones_keep_a_crashed_servers_wal_from_resurrecting_dropped_data() {
    let ds = dataset(6, T0, 3);
    let mut server = crashed_with_everything_flushed(&ds);
    let (root, data) = (server.root().to_path_buf(), server.data_dir());

    // Drop everything. The WAL still holds those records: tombstones keep them covered.
    let now = (T0 + 30 * HOUR_NS).to_string();
    let args = ["--now", now.as_str(), "--retain", "1d"];
    let s = compact_ok(&root, &data, &args);
    assert!(num(&s, "partitions_dropped") > 0, "{s}");
    assert!(num(&s, "tombstones") > 0, "{s}");
    assert!(live(&data, M).is_empty());
    let v = compact(&root, &data, &["--verify"]);
    assert!(v.ok, "{}\n{}", v.stdout, v.stderr);

    // The server replays its WAL and must skip every dropped record.
    server.restart();
    assert!(
        query_model(&server, M).is_empty(),
        "dropped points came back"
    );
    server.stop();
    assert!(
        live(&data, M).is_empty(),
        "dropped points came back into files"
    );

    // The clean stop emptied the WAL: the next run removes the tombstones and directories.
    let s = compact_ok(&root, &data, &args);
    assert_eq!(num(&s, "tombstones"), 0, "{s}");
    assert!(
        manifest_entries(&data).is_empty(),
        "{:?}",
        manifest_entries(&data)
    );
    assert!(
        tree(&data).iter().all(|p| !p.contains(&format!("{DB}/"))),
        "{:?}",
        tree(&data)
    );
    assert_clean_data_dir(&data);
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
        .arg("--help")
        .output()
        .expect("running --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data-dir",
        "--config",
        "--partition-duration",
        "--region",
        "--db",
        "--measurement",
        "--partition",
        "--grace",
        "--target-size",
        "--row-group-rows",
        "--retain",
        "--downsample",
        "--older-than",
        "--no-compact",
        "--now",
        "--dry-run",
        "--verify",
        "--json",
        "--progress",
    ] {
        assert!(text.contains(flag), "--help does not explain {flag}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
        .args(["--data-dir", "/nonexistent/x", "--downsample", "1m:mean"])
        .output()
        .expect("running");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "--downsample without --older-than is a usage error"
    );
}

fn walk_parquet(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_parquet(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

/// Tagless series overwritten across two flushes (overlapping files): `--verify`, the
/// compaction and the downsampling all run (they panicked in the merge), and the compacted
/// files answer exactly what was written last.
#[test]
fn tagless_overwritten_series_compact_verify_and_downsample() {
    let mut s = TestServer::start(ServerConfig::default());
    let hour = 3_600_000_000_000i64;
    s.write_ok("tl", &format!("m v=1,w=1i {T0}\nm v=2 {}\n", T0 + 1));
    s.stop();
    s.restart();
    s.write_ok("tl", &format!("m v=10 {T0}\nm v=3 {}\n", T0 + hour));
    s.stop();
    let (root, data) = (s.root().to_path_buf(), s.data_dir());
    let v = compact(&root, &data, &["--verify"]);
    assert!(v.ok, "{}\n{}", v.stdout, v.stderr);
    let sum = compact_ok(&root, &data, &[]);
    assert_eq!(num(&sum, "rows_deduped"), 1, "{sum}");
    let v = compact(&root, &data, &["--verify"]);
    assert!(v.ok, "{}\n{}", v.stdout, v.stderr);
    let d = compact(
        &root,
        &data,
        &[
            "--downsample",
            "1h:sum",
            "--older-than",
            "1d",
            "--no-compact",
        ],
    );
    assert!(d.ok, "{}\n{}", d.stdout, d.stderr);
    s.restart();
    let j = s
        .get("/api/v1/query?db=tl&measurement=m&fields=*&epoch=ns")
        .json();
    assert_eq!(j["partial"], false, "{j}");
    let values = &j["series"][0]["values"];
    assert_eq!(
        values,
        &serde_json::json!([[T0, 10.0, 1], [T0 + 1, 2.0, null], [T0 + hour, 3.0, null]]),
        "{j}"
    );
    let j = s
        .get("/api/v1/query?db=tl&measurement=m_1h&fields=v_sum&epoch=ns")
        .json();
    assert_eq!(
        j["series"][0]["values"],
        serde_json::json!([[T0, 12.0], [T0 + hour, 3.0]]),
        "{j}"
    );
}

/// Beside a live server: the compactor killed at random moments, the server killed while a
/// compactor runs and restarted under it, two compactors at once. After every round each
/// query sees every point exactly once; at the end the files hold each point once.
#[test]
fn kill_9_of_either_process_beside_a_live_server_loses_and_doubles_nothing() {
    let ds = dataset(5, T0, 3);
    let mut server = written(&ds);
    server.restart();
    let (root, data) = (server.root().to_path_buf(), server.data_dir());
    let paused = |ms: u64| {
        compactor(&root, &data, &SMALL_OUTPUTS)
            .env("MERIDIAN_COMPACT_PAUSE_MS", ms.to_string())
            .spawn()
            .expect("spawning the compactor")
    };
    let settle = || std::thread::sleep(Duration::from_millis(2500));
    let mut rng = Rng::new(71);
    for round in 0..4 {
        // The compactor killed at a random moment of its run.
        let mut c = paused(30);
        std::thread::sleep(Duration::from_millis(rng.range(100, 900) as u64));
        let _ = c.kill();
        let _ = c.wait();
        settle();
        assert_same(
            &query_model(&server, M),
            &ds.model,
            &format!("round {round}: compactor killed"),
        );
        // The server killed while a compactor runs, and restarted under it.
        let c = paused(30);
        std::thread::sleep(Duration::from_millis(rng.range(100, 600) as u64));
        server.kill9();
        server.restart();
        wait_ok(c, &format!("round {round}"));
        settle();
        assert_same(
            &query_model(&server, M),
            &ds.model,
            &format!("round {round}: server killed"),
        );
    }
    // Two compactors at once: leases keep them off each other's partitions.
    let (a, b) = (paused(5), paused(5));
    for c in [a, b] {
        wait_ok(c, "compactor");
    }
    settle();
    assert_same(&query_model(&server, M), &ds.model, "two compactors");
    server.stop();
    assert_same(&live(&data, M), &ds.model, "files after the stop");
    assert_clean_data_dir(&data);
    let v = compact(&root, &data, &["--verify"]);
    assert!(v.ok, "{}\n{}", v.stdout, v.stderr);
}
