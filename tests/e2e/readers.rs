//! Readers Meridian did not write — pyarrow, DuckDB and polars — read a data dir directly,
//! exactly as the README shows, on the shapes real agents send: optional tags, tags only
//! some series carry, integer and float fields, a field missing from some lines, points
//! overwritten across flushes (merged by `meridian-compact`), counters whose column is paged
//! by series, random walks whose columns are packed at aligned widths. Each must see every
//! point of the model once, with its values.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::support::*;

const DB: &str = "rdb";

/// The README's reads, one per reader, each printing `{measurement: [rows, sum(v), [f…]]}`
/// with every `f` as the double it reads (sorted): float fields with few decimals are
/// stored as DECIMAL(18, s), which each reader turns into exactly the doubles written.
const PY: &str = r#"
import glob, json, sys
data, reader = sys.argv[1], sys.argv[2]
out = {}
for m in ["cpu", "mem", "net", "walk"]:
    # A measurement's own files, and the packed files of small measurements (rows whose
    # _measurement is m), as the README says.
    pattern = f"{data}/*/rdb/{m}/**/*.parquet"
    packed = f"{data}/*/rdb/~packed/**/*.parquet"
    files = sorted(glob.glob(pattern, recursive=True))
    packs = sorted(glob.glob(packed, recursive=True))
    if reader == "pyarrow":
        import pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc
        def exact(t):  # DECIMAL columns (float fields stored scaled) as the doubles written
            for i, f in enumerate(t.schema):
                if pa.types.is_decimal(f.type):
                    t = t.set_column(i, f.name, t.column(i).cast(pa.string()).cast(pa.float64()))
            return t
        ts = [exact(pq.read_table(f)) for f in files]
        for p in packs:
            t = pq.read_table(p)
            ts.append(exact(t.filter(pc.field("_measurement") == m).drop_columns(["_measurement"])))
        t = pa.concat_tables(ts, promote_options="permissive")
        v = t.column("v").to_pylist()
        f = t.column("f").to_pylist() if "f" in t.column_names else []
        out[m] = [t.num_rows, sum(x for x in v if x is not None), sorted(x for x in f if x is not None)]
    elif reader == "duckdb":
        import duckdb
        parts = []
        if files:
            parts.append(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)")
        if packs:
            parts.append(f"SELECT * EXCLUDE (_measurement) FROM read_parquet('{packed}', hive_partitioning = true, union_by_name = true) WHERE _measurement = '{m}'")
        src = "(" + " UNION ALL BY NAME ".join(parts) + ")"
        con = duckdb.connect()
        rows, sv = con.execute(f"SELECT count(*), coalesce(sum(v), 0) FROM {src}").fetchone()
        f = [r[0] for r in con.execute(f"SELECT CAST(f AS DOUBLE) FROM {src} WHERE f IS NOT NULL ORDER BY 1").fetchall()]
        out[m] = [rows, int(sv), f]
    elif reader == "polars":
        import polars as pl
        ts = [pl.read_parquet(f) for f in files]
        ts += [pl.read_parquet(p).filter(pl.col("_measurement") == m).drop("_measurement") for p in packs]
        t = pl.concat(ts, how="diagonal_relaxed")
        t = t.with_columns(pl.col(pl.Decimal).cast(pl.Float64))
        f = sorted(t["f"].drop_nulls().to_list()) if "f" in t.columns else []
        out[m] = [t.height, int(t["v"].sum()), f]
print(json.dumps(out))
"#;

/// (measurement, tags, time) → (v, f): the last write of each field wins.
type Model = BTreeMap<(String, String, i64), (Option<i64>, Option<f64>)>;

/// The line of a point (`f` only where given), recorded in `model` field by field.
fn point(model: &mut Model, m: &str, tags: &str, t: i64, v: i64, f: Option<f64>) -> String {
    let e = model
        .entry((m.to_string(), tags.to_string(), t))
        .or_default();
    e.0 = Some(v);
    let mut line = format!("{m},{tags} v={v}i");
    if let Some(f) = f {
        line.push_str(&format!(",f={f}"));
        e.1 = Some(f);
    }
    format!("{line} {t}\n")
}

/// What the Python `script` prints as JSON, run on `path` with `reader`.
fn read_with<T: serde::de::DeserializeOwned>(
    script: &str,
    path: &std::path::Path,
    reader: &str,
) -> T {
    let out = output_ok(
        Command::new("python3")
            .args(["-c", script])
            .arg(path)
            .arg(reader),
        reader,
    );
    serde_json::from_slice(&out.stdout).expect("the reader's JSON")
}

fn reader_installed(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn pyarrow_duckdb_and_polars_read_the_data_dir_as_written() {
    for module in ["pyarrow", "duckdb", "polars"] {
        assert!(
            reader_installed(module),
            "python3 cannot import {module}: `python3 -m pip install {module}` (.ci/run does when it is missing)"
        );
    }
    let mut server = TestServer::start(ServerConfig::default());
    let mut model = Model::new();
    let mut rng = Rng::new(5);
    // Counters start far apart, not in series order (most boundaries are a fall), and rise
    // by random steps; a point's value is the same in every round (a rewrite changes `f`).
    let counters: Vec<Vec<i64>> = [5, 1, 4, 0, 3, 2]
        .iter()
        .map(|b| {
            let mut c = 1_000_000_000_000 + b * 130_000_000_000;
            (0..300)
                .map(|_| {
                    c += rng.range(0, 1000);
                    c
                })
                .collect()
        })
        .collect();
    for round in 0..3 {
        let mut body = String::new();
        for m in ["cpu", "mem"] {
            for s in 0..12 {
                // Optional tags: some series have no host, some carry a rack as well.
                let tags = match s % 3 {
                    0 => format!("region=r{}", s % 4),
                    1 => format!("host=h{s},region=r{}", s % 4),
                    _ => format!("host=h{s},rack=k{},region=r{}", s % 2, s % 4),
                };
                for k in 0..20i64 {
                    // Later rounds rewrite some points written earlier (other flushes).
                    if round > 0 && !rng.chance(30) {
                        continue;
                    }
                    let t = BASE_S * SEC_NS + k * 90 * SEC_NS + s;
                    let v = rng.range(-1000, 1000);
                    // A float field on some lines only.
                    let f = rng.chance(50).then(|| rng.range(0, 100_000) as f64 / 100.0);
                    body.push_str(&point(&mut model, m, &tags, t, v, f));
                }
            }
        }
        // Counters: values near 2^40 rising by small steps, 300 points a series, so the
        // file pages `v` by series (`storage::paged`); a later round rewrites some of them
        // a little higher (the last write must win in the paged column too).
        for s in 0..6i64 {
            let tags = format!("host=n{s}");
            for k in 0..300i64 {
                let c = counters[s as usize][k as usize] + round;
                if round > 0 && !rng.chance(30) {
                    continue;
                }
                let t = BASE_S * SEC_NS + k * 10 * SEC_NS;
                let f = rng.chance(50).then(|| rng.range(0, 1000) as f64 / 10.0);
                body.push_str(&point(&mut model, "net", &tags, t, c, f));
            }
        }
        // Random walks by steps of -1, 0 or +1 (an integer, and a two-decimal float stored
        // as scaled integers), 360 points a series: the trial packs both columns' DELTA
        // pages at aligned widths (`storage::aligned`).
        if round == 0 {
            for s in 0..12i64 {
                let (mut v, mut f) = (rng.range(0, 100), rng.range(1000, 9000));
                let tags = format!("host=w{s}");
                for k in 0..360i64 {
                    let t = BASE_S * SEC_NS + k * 9 * SEC_NS;
                    let g = Some(f as f64 / 100.0);
                    body.push_str(&point(&mut model, "walk", &tags, t, v, g));
                    v = (v + rng.range(-1, 2)).clamp(0, 100);
                    f += rng.range(-1, 2);
                }
            }
        }
        server.write_ok(DB, &body);
        server.stop();
        server.restart();
    }
    server.stop();
    // Flushed files carry page locations (the offset index) but no page min/max (column
    // index); compacted ones carry both.
    let indexes = |server: &TestServer| -> Vec<(bool, bool)> {
        tree(&server.data_dir())
            .iter()
            .filter(|p| p.ends_with(".parquet"))
            .map(|p| page_indexes(&server.data_dir().join(p)))
            .collect()
    };
    let flushed = indexes(&server);
    assert!(
        !flushed.is_empty() && flushed.iter().all(|i| *i == (true, false)),
        "{flushed:?}"
    );
    // Before compaction a point rewritten in a later flush is in two files; readers outside
    // Meridian would see both (the README says so). Compaction merges them.
    compact(&server, &[]);
    let compacted = indexes(&server);
    assert!(
        !compacted.is_empty() && compacted.iter().all(|i| *i == (true, true)),
        "{compacted:?}"
    );

    let mut want: BTreeMap<String, (u64, i64, Vec<f64>)> = BTreeMap::new();
    for ((m, _, _), (v, f)) in &model {
        let e = want.entry(m.clone()).or_default();
        e.0 += 1;
        e.1 += v.unwrap_or(0);
        e.2.extend(*f);
    }
    for e in want.values_mut() {
        e.2.sort_by(f64::total_cmp);
    }
    // The float field is stored as scaled integers (DECIMAL) in some file at least.
    assert!(
        tree(&server.data_dir())
            .iter()
            .filter(|p| p.ends_with(".parquet"))
            .any(|p| {
                let file = std::fs::File::open(server.data_dir().join(p)).unwrap();
                let r = parquet::file::reader::SerializedFileReader::new(file).unwrap();
                use parquet::file::reader::FileReader;
                r.metadata()
                    .file_metadata()
                    .key_value_metadata()
                    .is_some_and(|kv| kv.iter().any(|k| k.key == "meridian.scaled_floats"))
            }),
        "no file stores f as a decimal"
    );
    // The counters' column has a data page per series in the compacted file.
    let net: Vec<String> = tree(&server.data_dir())
        .into_iter()
        .filter(|p| p.contains("/net/") && p.ends_with(".parquet"))
        .collect();
    assert_eq!(net.len(), 1, "{net:?}");
    let (pages, series) = data_pages_and_series(&server.data_dir().join(&net[0]), "v", "host");
    assert_eq!(
        (pages, series),
        (6, 6),
        "data pages of v, and series, in {}",
        net[0]
    );
    // The walks' columns are packed at aligned widths: a block at a series boundary at 8 or
    // 16 bits (the parquet crate would pack it at the jump's width, 3 to 13), every other
    // at 0 to 2.
    let walk: Vec<String> = tree(&server.data_dir())
        .into_iter()
        .filter(|p| p.contains("/walk/") && p.ends_with(".parquet"))
        .collect();
    assert_eq!(walk.len(), 1, "{walk:?}");
    for column in ["v", "f"] {
        let widths = delta_widths(&server.data_dir().join(&walk[0]), column);
        assert!(
            widths.iter().any(|w| *w >= 8) && widths.iter().all(|w| *w <= 2 || w.is_multiple_of(8)),
            "{column}: {widths:?}"
        );
    }
    for reader in ["pyarrow", "duckdb", "polars"] {
        let got: BTreeMap<String, (u64, i64, Vec<f64>)> = read_with(PY, &server.data_dir(), reader);
        for (m, (rows, v, f)) in &want {
            let (grows, gv, gf) = &got[m];
            assert_eq!((grows, gv), (rows, v), "{reader}, {m}: rows and sum(v)");
            assert_eq!(gf.len(), f.len(), "{reader}, {m}: values of f");
            for (g, w) in gf.iter().zip(f) {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{reader}, {m}: f {g} read, {w} written"
                );
            }
        }
    }
    // Meridian reads the counters' pages back too: every point of each series, in order.
    server.restart();
    let r = server.get(&format!(
        "/api/v1/query?db={DB}&measurement=net&fields=v&group_by=host&epoch=ns"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut got: Vec<(String, i64, i64)> = Vec::new();
    for series in r.json()["series"].as_array().unwrap() {
        let host = series["tags"]["host"].as_str().unwrap().to_string();
        for row in series["values"].as_array().unwrap() {
            got.push((
                host.clone(),
                row[0].as_i64().unwrap(),
                row[1].as_i64().unwrap(),
            ));
        }
    }
    let want: Vec<(String, i64, i64)> = model
        .iter()
        .filter(|((m, _, _), _)| m == "net")
        .map(|((_, tags, t), (v, _))| (tags.replace("host=", ""), *t, v.unwrap()))
        .collect();
    assert_eq!(got, want);
}

/// Whether every column chunk of `path` has an offset index, and whether its `time` column
/// has a column index (a column paged by series has none in any file).
fn page_indexes(path: &std::path::Path) -> (bool, bool) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let chunks: Vec<_> = r
        .metadata()
        .row_groups()
        .iter()
        .flat_map(|g| g.columns().iter().cloned())
        .collect();
    let time: Vec<_> = chunks
        .iter()
        .filter(|c| c.column_path().string() == "time")
        .collect();
    assert!(
        !time.is_empty(),
        "{} has no time column chunk",
        path.display()
    );
    (
        chunks.iter().all(|c| c.offset_index_offset().is_some()),
        time.iter().all(|c| c.column_index_offset().is_some()),
    )
}

/// Data pages of `column` in `path` (one row group), and runs of equal `tag` values.
fn data_pages_and_series(path: &std::path::Path, column: &str, tag: &str) -> (usize, usize) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    assert_eq!(r.num_row_groups(), 1);
    let leaf = |name: &str| {
        r.metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == name)
            .unwrap()
    };
    let rg = r.get_row_group(0).unwrap();
    let mut pages = rg.get_column_page_reader(leaf(column)).unwrap();
    let mut n = 0;
    while let Some(p) = pages.get_next_page().unwrap() {
        if matches!(
            p.page_type(),
            parquet::basic::PageType::DATA_PAGE | parquet::basic::PageType::DATA_PAGE_V2
        ) {
            n += 1;
        }
    }
    let tags: Vec<String> = rg
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            row.get_column_iter()
                .find(|(name, _)| name.as_str() == tag)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        })
        .collect();
    let runs = 1 + tags.windows(2).filter(|w| w[0] != w[1]).count();
    (n, runs)
}

/// The miniblock widths of every DELTA_BINARY_PACKED block in `column`'s data pages (v1, a
/// nullable column) of the one row group of the Parquet file at `path`.
fn delta_widths(path: &std::path::Path, column: &str) -> Vec<u8> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let leaf = r
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == column)
        .unwrap();
    let varint = |buf: &[u8], pos: &mut usize| -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = buf[*pos];
            *pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        v
    };
    let mut out = Vec::new();
    let mut pages = r
        .get_row_group(0)
        .unwrap()
        .get_column_page_reader(leaf)
        .unwrap();
    while let Some(page) = pages.get_next_page().unwrap() {
        if page.page_type() != parquet::basic::PageType::DATA_PAGE {
            continue;
        }
        assert_eq!(
            page.encoding(),
            parquet::basic::Encoding::DELTA_BINARY_PACKED
        );
        let buf = page.buffer();
        // Definition levels (length-prefixed), then the header: block size, miniblocks,
        // values, first value; then per block its smallest delta and miniblock widths.
        let mut pos = 4 + u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
        let block = varint(buf, &mut pos) as usize;
        let minis = varint(buf, &mut pos) as usize;
        let mut left = (varint(buf, &mut pos) as usize).saturating_sub(1);
        varint(buf, &mut pos);
        while left > 0 {
            varint(buf, &mut pos);
            let widths = buf[pos..pos + minis].to_vec();
            pos += minis;
            for w in widths {
                if left == 0 {
                    break;
                }
                pos += usize::from(w) * (block / minis) / 8;
                left -= (block / minis).min(left);
                out.push(w);
            }
        }
        assert_eq!(
            pos,
            buf.len(),
            "{column}: the page ends where its blocks do"
        );
    }
    out
}

/// Spark 4 refuses `TIMESTAMP(NANOS)`: with `[storage] time_unit = "us"` files store
/// microseconds (timestamps truncated to them when written), Spark reads them without any
/// setting, and Meridian's answers, compaction and verification are the same as with
/// nanoseconds.
#[test]
fn spark_reads_files_written_with_microsecond_time() {
    assert!(
        reader_installed("pyspark"),
        "python3 cannot import pyspark: `python3 -m pip install pyspark` (.ci/run does when it is missing)"
    );
    let mut server =
        TestServer::start(ServerConfig::default().toml("[storage]\ntime_unit = \"us\"\n"));
    // Nanosecond timestamps that are not whole microseconds, two flushes of overlapping
    // points: `model` holds what is kept (truncated times, last write wins).
    let mut model: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let mut rng = Rng::new(8);
    for round in 0..2 {
        let mut body = String::new();
        for h in 0..4 {
            for k in 0..50i64 {
                let t = BASE_S * SEC_NS + k * 60 * SEC_NS + 123_456_789 + h;
                let v = rng.range(-1000, 1000) + round;
                body.push_str(&format!("sp,host=h{h} v={v}i {t}\n"));
                model.insert((format!("h{h}"), t - t.rem_euclid(1000)), v);
            }
        }
        server.write_ok(DB, &body);
        server.stop();
        server.restart();
    }
    let raw = |server: &TestServer| -> BTreeMap<(String, i64), i64> {
        let r = server.get(&format!(
            "/query?db={DB}&q=SELECT%20v%20FROM%20sp%20GROUP%20BY%20host&epoch=ns"
        ));
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        let mut out = BTreeMap::new();
        let series = v["results"][0]["series"].as_array();
        for s in series.unwrap_or_else(|| panic!("no series: {v}")) {
            let host = s["tags"]["host"].as_str().unwrap().to_string();
            for row in s["values"].as_array().unwrap() {
                out.insert(
                    (host.clone(), row[0].as_i64().unwrap()),
                    row[1].as_i64().unwrap(),
                );
            }
        }
        out
    };
    assert_eq!(raw(&server), model, "answers from files of microseconds");
    server.stop();
    compact(&server, &[]);
    compact(&server, &["--verify"]);
    server.restart();
    assert_eq!(raw(&server), model, "answers after compaction");
    server.stop();

    let spark = r#"
import glob, json, sys
from pyspark.sql import SparkSession, functions as F
files = sorted(glob.glob(f"{sys.argv[1]}/*/rdb/sp/**/*.parquet", recursive=True))
s = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
df = s.read.parquet(*files)
r = df.agg(F.count("*"), F.sum("v"), F.min(F.unix_micros("time")), F.max(F.unix_micros("time"))).collect()[0]
print(json.dumps([r[0], r[1], r[2], r[3]]))
"#;
    let out = output_ok(
        Command::new("python3")
            .args(["-c", spark])
            .arg(server.data_dir()),
        "spark",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: Vec<i64> = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("spark's answer {stdout:?}: {e}"));
    let times: Vec<i64> = model.keys().map(|(_, t)| t / 1000).collect();
    assert_eq!(
        got,
        vec![
            model.len() as i64,
            model.values().sum::<i64>(),
            *times.iter().min().unwrap(),
            *times.iter().max().unwrap(),
        ],
        "spark: rows, sum(v), first and last time in microseconds"
    );
}

/// Float columns are stored as scaled integers only when every value of the file round-trips
/// at one scale: a large whole number beside a value with decimals (2e13 and 0.001 need
/// scale 3, where 2e13 is past 2^53) keeps the column a double, so the flush and the
/// compaction succeed and every value comes back as written; -0.0 and full precision too.
#[test]
fn floats_that_do_not_fit_one_scale_stay_doubles() {
    let mut server = TestServer::start(ServerConfig::default());
    let vals = [
        ("a", vec!["20000000000000", "0.001", "12.34"]),
        ("b", vec!["0.001", "20000000000000"]),
        ("c", vec!["-0", "1.5"]),
        ("d", vec!["0.1", "0.30000000000000004"]),
        ("e", vec!["12.34", "-0.5", "100"]),
    ];
    for round in 0..2 {
        let mut body = String::new();
        for (m, vs) in &vals {
            for (i, v) in vs.iter().enumerate() {
                let t = BASE_S * SEC_NS + (round * 10 + i as i64) * SEC_NS;
                body.push_str(&format!("{m} v={v} {t}\n"));
            }
        }
        server.write_ok(DB, &body);
        server.stop();
        server.restart();
    }
    server.stop();
    compact(&server, &[]);
    server.restart();
    for (m, vs) in &vals {
        let r = server.get(&format!(
            "/api/v1/query?db={DB}&measurement={m}&fields=v&epoch=ns"
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        let got: Vec<u64> = r.json()["series"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[1].as_f64().unwrap().to_bits())
            .collect();
        let want: Vec<u64> = (0..2)
            .flat_map(|_| vs.iter().map(|v| v.parse::<f64>().unwrap().to_bits()))
            .collect();
        assert_eq!(got, want, "{m}");
    }
}

/// Reads every column of the Parquet file argv[1] with reader argv[2] and prints them as
/// JSON lists of strings (None for a null): integers as written, decimals as their text.
const PY_COLUMNS: &str = r#"
import json, sys
path, reader = sys.argv[1], sys.argv[2]
cols = ["i", "u", "d", "e"]
if reader == "pyarrow":
    import pyarrow.parquet as pq
    t = pq.read_table(path)
    out = {c: t.column(c).to_pylist() for c in cols}
elif reader == "duckdb":
    import duckdb
    rows = duckdb.connect().execute(f"SELECT {', '.join(cols)} FROM read_parquet('{path}')").fetchall()
    out = {c: [r[k] for r in rows] for k, c in enumerate(cols)}
else:
    import polars as pl
    df = pl.read_parquet(path)
    out = {c: df[c].to_list() for c in cols}
print(json.dumps({c: [None if v is None else str(v) for v in vs] for c, vs in out.items()}))
"#;

/// Pages packed at aligned widths (`storage::aligned`) hold every width a column can need
/// (0 to 64 bits, deltas that wrap around INT32 and INT64), nulls, pages of one value and
/// all-null pages, over several row groups: pyarrow, DuckDB and polars read back the values
/// written, in order. The file is written by Meridian's Parquet writer directly (which
/// values a server's trial packs so depends on the data).
#[test]
fn aligned_pages_of_every_width_read_back_in_every_reader() {
    use arrow::array::{ArrayRef, Decimal128Array, Int64Array, StringArray, UInt64Array};
    use arrow::record_batch::RecordBatch;
    use meridian::storage::paged::{PagedWriter, series_runs};
    use meridian::storage::parquet::{finish_properties, writer_properties};
    use std::sync::Arc;
    let mut rng = Rng::new(17);
    let n = 3000usize;
    let mut values: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut walk = 0i64;
    for k in 0..n {
        let v = match (k / 250) % 6 {
            // Walks by small steps, by steps of every width up to 63 bits, extremes.
            0 => walk.checked_add(rng.range(-1, 2)),
            1 => Some(walk.wrapping_add(rng.range(-(1 << (k % 62)), 1 << (k % 62)))),
            2 => Some([i64::MIN, i64::MAX, 0, -1][k % 4]),
            // Nulls: every other value, then a whole run of them.
            3 => (k % 2 == 0).then_some(walk),
            4 => None,
            _ => Some(rng.range(-1_000_000_000, 1_000_000_000)),
        };
        if let Some(v) = v {
            walk = v;
        }
        values.push(v);
    }
    let host: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|k| format!("h{}", k / 700)),
    ));
    let d: Vec<Option<i128>> = values
        .iter()
        .map(|v| v.map(|v| i128::from(v % 1_000_000_000)))
        .collect();
    let e: Vec<Option<i128>> = values
        .iter()
        .map(|v| v.map(|v| i128::from(v % 1_000_000_000_000_000_000)))
        .collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("host", host),
        ("i", Arc::new(Int64Array::from(values.clone())) as ArrayRef),
        (
            "u",
            Arc::new(UInt64Array::from(
                values
                    .iter()
                    .map(|v| v.map(|v| v as u64))
                    .collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "d",
            Arc::new(
                Decimal128Array::from(d)
                    .with_precision_and_scale(9, 2)
                    .unwrap(),
            ) as ArrayRef,
        ),
        (
            "e",
            Arc::new(
                Decimal128Array::from(e)
                    .with_precision_and_scale(18, 3)
                    .unwrap(),
            ) as ArrayRef,
        ),
    ])
    .unwrap();
    let columns: Vec<String> = ["i", "u", "d", "e"].iter().map(|c| c.to_string()).collect();
    let delta: Vec<(String, parquet::basic::Encoding)> = columns
        .iter()
        .map(|c| (c.clone(), parquet::basic::Encoding::DELTA_BINARY_PACKED))
        .collect();
    // Row groups of 1,100 rows, pages of 37 (and of one value where a run ends).
    let props = writer_properties(&batch.schema(), 1100, vec![], 3, 37, &delta);
    let props = finish_properties(props, true, &[], &[]);
    let runs = series_runs(&batch, &[0]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aligned.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let mut w = PagedWriter::try_new(file, batch.schema(), props, &[], &columns).unwrap();
    w.write(&batch, &runs).unwrap();
    w.finish().unwrap();
    for c in &columns {
        let widths = delta_widths(&path, c);
        assert!(
            widths.iter().any(|w| *w >= 24)
                && widths.iter().all(|w| *w <= 2 || w.is_multiple_of(8)),
            "{c}: {widths:?}"
        );
    }
    let decimal = |v: Option<i128>, scale: u32| -> Option<String> {
        v.map(|v| {
            let sign = if v < 0 { "-" } else { "" };
            let a = v.unsigned_abs();
            let p = 10u128.pow(scale);
            format!("{sign}{}.{:0width$}", a / p, a % p, width = scale as usize)
        })
    };
    let want: BTreeMap<String, Vec<Option<String>>> = BTreeMap::from([
        (
            "i".to_string(),
            values.iter().map(|v| v.map(|v| v.to_string())).collect(),
        ),
        (
            "u".to_string(),
            values
                .iter()
                .map(|v| v.map(|v| (v as u64).to_string()))
                .collect(),
        ),
        (
            "d".to_string(),
            values
                .iter()
                .map(|v| decimal(v.map(|v| i128::from(v % 1_000_000_000)), 2))
                .collect(),
        ),
        (
            "e".to_string(),
            values
                .iter()
                .map(|v| decimal(v.map(|v| i128::from(v % 1_000_000_000_000_000_000)), 3))
                .collect(),
        ),
    ]);
    for reader in ["pyarrow", "duckdb", "polars"] {
        let got: BTreeMap<String, Vec<Option<String>>> = read_with(PY_COLUMNS, &path, reader);
        for (c, w) in &want {
            let g = &got[c];
            assert_eq!(g.len(), w.len(), "{reader}, {c}: rows");
            for (k, (g, w)) in g.iter().zip(w).enumerate() {
                assert_eq!(g, w, "{reader}, {c}: row {k}");
            }
        }
    }
}
