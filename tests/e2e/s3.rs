//! Data files and manifests in S3-compatible object storage, against a real S3 API:
//! `moto_server` (PyPI `moto[server]` 5.2.1) on a free loopback port, one per test. The
//! server writes Parquet objects and `_manifest/` objects under each region's root in the
//! bucket; its WAL stays in the local data dir. The test reads the bucket on its own, with
//! boto3 in a `python3` subprocess: it lists the objects, downloads a region root into a temp
//! dir and checks that copy with the harness's independent reader (manifest JSON + Parquet),
//! and compares query answers (count, sum and raw points per series) with the points it
//! wrote, after a restart on the same data dir and on an empty one.
//!
//! - `Moto`: `moto_server` (from `PATH`, or `MERIDIAN_MOTO_SERVER=/path/to/moto_server`)
//!   in its own temp dir, killed on drop. Without it (or without boto3, which comes with it)
//!   the tests fail saying how to install it; they never skip.
//! - Roots: with `[storage] url = "s3://<bucket>/<prefix>"`, region R's root is
//!   `<prefix>/R/`; a `[[region]]` with its own `storage = "s3://<bucket>/<p>"` has `<p>/`
//!   as its root exactly, and the other regions stay on the local disk.
//! - pyarrow, a second Parquet implementation, reads every object through its own S3 client
//!   (`.ci/run` installs it; the test fails saying how when it is missing).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    BASE_S, HOUR_NS, MANIFEST_DIR, Rng, Row, SEC_NS, ServerConfig, TestServer, Value as Field,
    assert_clean_data_dir, http_client, manifest_files, manifest_version, read_rows,
    rows_by_key_exactly_once, tree, wait_ok,
};

const MOTO_MISSING: &str = "`moto_server` (PyPI moto 5.2.1 with its server) is not installed, \
and the S3 tests need it: install it with `python3 -m pip install 'moto[server]==5.2.1'` \
(which brings boto3), or point MERIDIAN_MOTO_SERVER at it";
const START_TIMEOUT: Duration = Duration::from_secs(30);

const BUCKET: &str = "meridian-e2e";
const DB: &str = "s3db";
const T0: i64 = BASE_S * SEC_NS;
const MEASUREMENTS: [&str; 3] = ["cpu", "mem", "disk"];
const HOSTS: [&str; 4] = ["h0", "h1", "h2", "h3"];
/// Geo tag values and the regions they route to.
const GEOS: [(&str, &str); 4] = [
    ("eu-west-1", "eu"),
    ("us-east-1", "americas"),
    ("ap-south-1", "apac"),
    ("af-south-1", "global"),
];

// ---------------------------------------------------------------------------------------
// The S3 server and an independent client
// ---------------------------------------------------------------------------------------

/// A `moto_server` process on a free loopback port, with its own temp dir (its log), killed
/// (SIGKILL) on drop. Its state is in memory: every test starts with no bucket.
pub struct Moto {
    root: tempfile::TempDir,
    child: Child,
    endpoint: String,
}

/// The path of `name` in `PATH` (or the usual system directories), if it is installed.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p 0`, reads the port it picked from its log
    /// (` * Running on http://127.0.0.1:<port>`) and waits for `GET /moto-api/` to answer.
    pub fn start() -> Moto {
        let program = match std::env::var_os("MERIDIAN_MOTO_SERVER") {
            Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
            None => find_program("moto_server"),
        }
        .unwrap_or_else(|| panic!("{MOTO_MISSING}"));
        let root = tempfile::Builder::new()
            .prefix("moto-e2e-")
            .tempdir()
            .expect("creating a temp dir");
        // A file, not a pipe: moto logs every request, and a pipe nobody drains would block it.
        let log = File::create(root.path().join("moto.log")).expect("creating the moto log");
        let log2 = log.try_clone().expect("cloning the log file");
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .current_dir(root.path())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        let mut m = Moto {
            root,
            child,
            endpoint: String::new(),
        };
        if let Err(e) = m.wait_ready() {
            panic!("moto_server did not start: {e}");
        }
        m
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let client = http_client();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "moto_server exited ({status}); log:\n{}",
                    self.log()
                ));
            }
            let log =
                std::fs::read_to_string(self.root.path().join("moto.log")).unwrap_or_default();
            if self.endpoint.is_empty()
                && let Some((_, rest)) = log.split_once("Running on http://")
            {
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == ':')
                    .collect();
                self.endpoint = format!("http://{addr}");
            }
            if !self.endpoint.is_empty()
                && let Ok(r) = client.get(format!("{}/moto-api/", self.endpoint)).send()
                && r.status().as_u16() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready within {START_TIMEOUT:?} (endpoint {:?}); log:\n{}",
                    self.endpoint,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The last 4,000 characters moto printed.
    /// How many object reads (`GET` of a key, not a listing) the server has served.
    pub fn object_gets(&self) -> usize {
        std::fs::read_to_string(self.root.path().join("moto.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET /") && l.contains(".parquet"))
            .count()
    }

    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.root.path().join("moto.log")).unwrap_or_default();
        let mut cut = log.len().saturating_sub(4_000);
        while !log.is_char_boundary(cut) {
            cut += 1;
        }
        log[cut..].to_string()
    }

    /// Runs [`PY`] with `args` against this server; returns its stdout, panicking (with its
    /// stderr and moto's log) if it fails.
    pub fn py(&self, args: &[&str]) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(PY)
            .args(args)
            .env("MERIDIAN_S3_ENDPOINT", &self.endpoint)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("running python3 (needed with boto3 for the S3 tests): {e}")
            });
        assert!(
            out.status.success(),
            "python3 {args:?} failed ({}):\n{}\nmoto log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).expect("python3 printed UTF-8")
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.py(&["create", bucket]);
    }

    /// Every object whose key starts with `prefix`: (key, size), sorted by key.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> =
            serde_json::from_str(&self.py(&["list", bucket, prefix])).expect("the listing is JSON");
        v.sort();
        v
    }

    /// Copies every object under `prefix` (which ends with `/`) to `dest`, the rest of its
    /// key as the relative path. Returns how many.
    pub fn download(&self, bucket: &str, prefix: &str, dest: &Path) -> usize {
        assert!(prefix.ends_with('/'), "{prefix}");
        let dest = dest.to_str().expect("a UTF-8 temp path");
        self.py(&["download", bucket, prefix, dest])
            .trim()
            .parse()
            .expect("a count")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's own S3 client (boto3; pyarrow for `pyarrow`): `python3 -c PY <command> <args>`
/// with the endpoint in `MERIDIAN_S3_ENDPOINT`. Commands: `create <bucket>`;
/// `list <bucket> <prefix>` (JSON `[[key, size], …]`); `download <bucket> <prefix> <dir>`
/// (prints the count); `pyarrow <bucket> <key>…` (JSON `{key: {"rows", "v_sum"}}`).
const PY: &str = r#"
import json, os, sys
try:
    import boto3
except ImportError:
    sys.exit("python3 cannot import boto3, which the S3 tests use: install moto with its "
             "server, which brings it: python3 -m pip install 'moto[server]==5.2.1'")

ENDPOINT = os.environ["MERIDIAN_S3_ENDPOINT"]

def client():
    return boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id="test",
                        aws_secret_access_key="test", region_name="us-east-1")

def objects(c, bucket, prefix):
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            yield o["Key"], o["Size"]

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "create":
    client().create_bucket(Bucket=args[0])
elif cmd == "list":
    print(json.dumps(list(objects(client(), args[0], args[1]))))
elif cmd == "download":
    bucket, prefix, dest = args
    c = client()
    n = 0
    for key, _ in objects(c, bucket, prefix):
        parts = key[len(prefix):].split("/")
        if any(p in ("", ".", "..") for p in parts):
            sys.exit(f"object key {key!r} is not a plain relative path under {prefix!r}")
        path = os.path.join(dest, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(c.get_object(Bucket=bucket, Key=key)["Body"].read())
        n += 1
    print(n)
elif cmd == "pyarrow":
    import pyarrow.compute as pc
    import pyarrow.fs
    import pyarrow.parquet as pq
    fs = pyarrow.fs.S3FileSystem(endpoint_override=ENDPOINT.split("://", 1)[1], scheme="http",
                                 access_key="test", secret_key="test", region="us-east-1")
    out = {}
    for key in args[1:]:
        t = pq.read_table(f"{args[0]}/{key}", filesystem=fs)
        out[key] = {"rows": t.num_rows, "v_sum": pc.sum(t.column("v")).as_py()}
    print(json.dumps(out))
else:
    sys.exit(f"unknown command {cmd}")
"#;

fn pyarrow_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import pyarrow.fs, pyarrow.parquet, pyarrow.compute"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------------------
// Config, points, answers
// ---------------------------------------------------------------------------------------

/// The `[storage]` table: the connection to moto, and `url` when given (every region's
/// root under it).
fn storage_toml(moto: &Moto, url: Option<&str>) -> String {
    let mut s = String::from("[storage]\n");
    if let Some(u) = url {
        s.push_str(&format!("url = \"{u}\"\n"));
    }
    s.push_str(&format!(
        "endpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\n\
         secret_access_key = \"test\"\nallow_http = true\n",
        moto.endpoint()
    ));
    s
}

/// A fresh moto with the test bucket, and a server config keeping every region under
/// `s3://<bucket>/<prefix>/`.
fn bucket_and_config(prefix: &str) -> (Moto, ServerConfig) {
    let moto = moto_with_bucket();
    let cfg = ServerConfig::default().toml(&storage_toml(
        &moto,
        Some(&format!("s3://{BUCKET}/{prefix}")),
    ));
    (moto, cfg)
}

/// Every geo tag value of [`GEOS`]: points in every region.
fn all_geos() -> Vec<&'static str> {
    GEOS.iter().map(|(g, _)| *g).collect()
}

/// A fresh moto with the test bucket.
fn moto_with_bucket() -> Moto {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    moto
}

/// (measurement, host, geo tag value) → time → `v`.
type Model = BTreeMap<(String, String, String), BTreeMap<i64, i64>>;

fn region_of(geo: &str) -> &'static str {
    GEOS.iter()
        .find(|(g, _)| *g == geo)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| panic!("unknown geo {geo}"))
}

/// Writes 8 points of every (measurement, host, geo) series, 15 minutes apart from `t0`
/// (two hour partitions), with random integer values; adds them to `model`.
fn write_points(s: &TestServer, model: &mut Model, geos: &[&str], t0: i64, seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    let mut body = String::new();
    let mut n = 0;
    for m in MEASUREMENTS {
        for h in HOSTS {
            for &g in geos {
                for k in 0..8 {
                    let t = t0 + k * 15 * 60 * SEC_NS + rng.range(0, 1_000);
                    let v = rng.range(-1_000_000, 1_000_000);
                    body.push_str(&format!("{m},host={h},region={g} v={v}i {t}\n"));
                    model
                        .entry((m.to_string(), h.to_string(), g.to_string()))
                        .or_default()
                        .insert(t, v);
                    n += 1;
                }
            }
        }
    }
    s.write_ok(DB, &body);
    n
}

/// The points of the model whose geo routes to one of `regions`.
fn in_regions(model: &Model, regions: &[&str]) -> Model {
    model
        .iter()
        .filter(|((_, _, g), _)| regions.contains(&region_of(g)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Rows read back from files as a model; each identity exactly once, each in the region its
/// geo routes to.
fn model_of_rows(rows: &[Row]) -> Model {
    let mut out = Model::new();
    for ((db, m, tags, t), row) in rows_by_key_exactly_once(rows) {
        assert_eq!(db, DB, "{row:?}");
        let (h, g) = (tags["host"].clone(), tags["region"].clone());
        assert_eq!(row.region, region_of(&g), "region of {row:?}");
        let Some(Field::Int(v)) = row.fields.get("v") else {
            panic!("row without integer v: {row:?}");
        };
        out.entry((m, h, g)).or_default().insert(t, *v);
    }
    out
}

/// `/api/v1/query` of one measurement, grouped by host and geo: (host, geo) → series.
fn query_series(
    s: &TestServer,
    m: &str,
    params: &str,
    what: &str,
) -> BTreeMap<(String, String), serde_json::Value> {
    let r = s.get(&format!(
        "/api/v1/query?db={DB}&measurement={m}&fields=v&group_by=host,region&{params}"
    ));
    assert_eq!(r.status, 200, "{what}: {r:?}");
    let j = r.json();
    assert_eq!(j["partial"], false, "{what}: {j}");
    let mut out = BTreeMap::new();
    for series in j["series"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {j}"))
    {
        let tag = |k: &str| {
            series["tags"][k]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: series without tag {k}: {series}"))
                .to_string()
        };
        let key = (tag("host"), tag("region"));
        assert!(
            out.insert(key, series.clone()).is_none(),
            "{what}: series twice: {j}"
        );
    }
    out
}

/// Count, sum and raw points of every series answer as the model says.
fn assert_answers(s: &TestServer, model: &Model, what: &str) {
    for m in MEASUREMENTS {
        let want: BTreeMap<(String, String), &BTreeMap<i64, i64>> = model
            .iter()
            .filter(|((mm, _, _), _)| mm == m)
            .map(|((_, h, g), pts)| ((h.clone(), g.clone()), pts))
            .collect();
        assert!(!want.is_empty(), "the model has no {m}");
        for agg in ["count", "sum"] {
            let got: BTreeMap<(String, String), i64> =
                query_series(s, m, &format!("agg={agg}"), what)
                    .into_iter()
                    .map(|(k, series)| {
                        let rows = series["values"].as_array().expect("values");
                        assert_eq!(rows.len(), 1, "{what}: {agg} of {m} {k:?}: {series}");
                        let v = rows[0][1].as_i64().unwrap_or_else(|| {
                            panic!("{what}: {agg} of {m} {k:?} not an integer: {series}")
                        });
                        (k, v)
                    })
                    .collect();
            let expected: BTreeMap<(String, String), i64> = want
                .iter()
                .map(|(k, pts)| {
                    let v = match agg {
                        "count" => pts.len() as i64,
                        _ => pts.values().sum::<i64>(),
                    };
                    (k.clone(), v)
                })
                .collect();
            assert_eq!(got, expected, "{what}: {agg}(v) per series of {m}");
        }
        let got: BTreeMap<(String, String), BTreeMap<i64, i64>> =
            query_series(s, m, "epoch=ns", what)
                .into_iter()
                .map(|(k, series)| {
                    let cols = series["columns"].as_array().expect("columns");
                    let col = |c: &str| {
                        cols.iter()
                            .position(|x| x == c)
                            .unwrap_or_else(|| panic!("{what}: no column {c}: {series}"))
                    };
                    let (ti, vi) = (col("time"), col("v"));
                    let pts: BTreeMap<i64, i64> = series["values"]
                        .as_array()
                        .expect("values")
                        .iter()
                        .map(|row| (row[ti].as_i64().unwrap(), row[vi].as_i64().unwrap()))
                        .collect();
                    (k, pts)
                })
                .collect();
        let expected: BTreeMap<(String, String), BTreeMap<i64, i64>> =
            want.into_iter().map(|(k, pts)| (k, pts.clone())).collect();
        assert_eq!(got, expected, "{what}: raw points of {m}");
    }
}

/// Files under a local dir, relative: none may be Parquet or a manifest file (the regions
/// whose root is in the bucket keep only their WAL here).
fn assert_no_region_files(dir: &Path, what: &str) {
    let found: Vec<String> = tree(dir)
        .into_iter()
        .filter(|f| f.ends_with(".parquet") || f.split('/').any(|p| p == MANIFEST_DIR))
        .collect();
    assert!(found.is_empty(), "{what}: {found:?}");
}

/// The bucket's copy of every region root under `prefix/`, downloaded into a temp dir laid
/// out as a data dir (`<region>/…`), checked as one: every Parquet object listed by its
/// region's manifest and matching it, nothing but manifest and Parquet objects, no temporary
/// object. Returns the dir and the rows of its files.
fn bucket_copy(
    moto: &Moto,
    prefix: &str,
    as_region: Option<&str>,
) -> (tempfile::TempDir, Vec<Row>) {
    let dir = tempfile::Builder::new()
        .prefix("s3-copy-")
        .tempdir()
        .expect("creating a temp dir");
    let dest = match as_region {
        Some(r) => dir.path().join(r),
        None => dir.path().to_path_buf(),
    };
    let n = moto.download(BUCKET, &format!("{prefix}/"), &dest);
    assert!(n > 0, "no object under {prefix}/");
    assert_clean_data_dir(dir.path());
    let rows = read_rows(dir.path(), HOUR_NS);
    (dir, rows)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// Every region's root under `[storage] url`: a clean stop leaves Parquet and manifest
/// objects under `<prefix>/<region>/` and no Parquet file on the local disk; the bucket's
/// files hold exactly the points written; the restarted server answers from them.
#[test]
fn s3_write_flush_objects_query() {
    let prefix = "cluster-1/meridian";
    let (moto, cfg) = bucket_and_config(prefix);
    let mut s = TestServer::start(cfg);
    let geos = all_geos();
    let mut model = Model::new();
    let n = write_points(&s, &mut model, &geos, T0, 1);
    assert!(n >= 300, "{n}");
    assert_answers(&s, &model, "before the stop (in memory)");
    s.stop();

    let objects = moto.list(BUCKET, "");
    for (key, _) in &objects {
        assert!(
            key.starts_with(&format!("{prefix}/")),
            "object outside the root: {key}"
        );
    }
    for (_, region) in GEOS {
        let root = format!("{prefix}/{region}/");
        assert!(
            objects
                .iter()
                .any(|(k, _)| k.starts_with(&format!("{root}{DB}/")) && k.ends_with(".parquet")),
            "no Parquet object under {root}{DB}/: {objects:?}"
        );
        assert!(
            objects
                .iter()
                .any(|(k, _)| k.starts_with(&format!("{root}{MANIFEST_DIR}/"))),
            "no manifest object under {root}: {objects:?}"
        );
    }
    let (_copy, rows) = bucket_copy(&moto, prefix, None);
    assert_eq!(rows.len(), n, "rows in the bucket's files");
    assert_eq!(model_of_rows(&rows), model, "the bucket's files");
    assert_no_region_files(&s.data_dir(), "local files of regions stored in the bucket");
    assert_clean_data_dir(&s.data_dir());

    s.restart();
    assert_answers(&s, &model, "after a restart on the same data dir");
    s.stop();
}

/// The bucket is the store: a server started with the same config on a new, empty data dir
/// answers every point the first one wrote, and its own writes join them in the same
/// manifests.
#[test]
fn s3_restart_on_empty_local_disk_answers_from_the_bucket() {
    let prefix = "fleet";
    let (moto, cfg) = bucket_and_config(prefix);
    let geos = all_geos();
    let mut model = Model::new();
    let mut first = TestServer::start(cfg.clone());
    let mut n = write_points(&first, &mut model, &geos, T0, 2);
    first.stop();

    let mut second = TestServer::start(cfg);
    assert_ne!(first.data_dir(), second.data_dir());
    assert_answers(&second, &model, "a new data dir, from the bucket");
    // Files read once are read from the local cache from then on.
    let gets = moto.object_gets();
    assert!(gets > 0, "the first queries read from the bucket");
    assert_answers(&second, &model, "the same queries again");
    assert_eq!(
        moto.object_gets(),
        gets,
        "the second time, no data file was fetched"
    );
    // Its own points (four hours later, other partitions) go to the same manifests.
    n += write_points(&second, &mut model, &geos, T0 + 4 * HOUR_NS, 3);
    assert_answers(&second, &model, "old and new points");
    second.stop();
    assert_no_region_files(&second.data_dir(), "the second server's local files");
    let (_copy, rows) = bucket_copy(&moto, prefix, None);
    assert_eq!(rows.len(), n, "rows in the bucket's files");
    assert_eq!(
        model_of_rows(&rows),
        model,
        "the bucket's files after both servers"
    );

    second.restart();
    assert_answers(&second, &model, "the second server restarted");
    second.stop();
}

/// One region's own `storage` URL: its root is that prefix exactly; the other regions stay
/// on the local disk. After a clean stop the bucket holds only eu's files and the local dir
/// only americas'; queries answer both.
#[test]
fn s3_per_region_storage_url() {
    let moto = moto_with_bucket();
    let prefix = "regional-eu";
    let cfg = ServerConfig::default()
        .region_line("eu", &format!("storage = \"s3://{BUCKET}/{prefix}\""))
        .toml(&storage_toml(&moto, None));
    let mut s = TestServer::start(cfg);
    let mut model = Model::new();
    let n = write_points(&s, &mut model, &["eu-west-1", "us-east-1"], T0, 4);
    s.stop();

    let objects = moto.list(BUCKET, "");
    assert!(!objects.is_empty(), "nothing in the bucket");
    for (key, _) in &objects {
        assert!(
            key.starts_with(&format!("{prefix}/")),
            "object outside eu's root: {key}"
        );
        assert!(
            !key.starts_with(&format!("{prefix}/eu/")),
            "the region's root is its URL exactly, not <url>/eu: {key}"
        );
    }
    assert!(
        objects
            .iter()
            .any(|(k, _)| k.starts_with(&format!("{prefix}/{MANIFEST_DIR}/"))),
        "no manifest object at {prefix}/: {objects:?}"
    );
    let (_copy, eu_rows) = bucket_copy(&moto, prefix, Some("eu"));
    assert_eq!(
        model_of_rows(&eu_rows),
        in_regions(&model, &["eu"]),
        "eu in the bucket"
    );

    let data = s.data_dir();
    assert_no_region_files(&data.join("eu"), "eu's local files");
    assert_eq!(
        manifest_version(&data.join("eu")),
        None,
        "a local eu manifest"
    );
    assert!(
        manifest_files(&data.join("americas")).is_some(),
        "americas' local manifest"
    );
    let local_rows = read_rows(&data, HOUR_NS);
    assert_eq!(
        model_of_rows(&local_rows),
        in_regions(&model, &["americas"]),
        "americas on the local disk"
    );
    assert_eq!(eu_rows.len() + local_rows.len(), n);
    assert_clean_data_dir(&data);

    s.restart();
    assert_answers(&s, &model, "after a restart, both regions");
    s.stop();
}

/// The objects are plain Parquet that another implementation reads through its own S3
/// client: pyarrow reads every data object the manifests list, with the manifest's row
/// count (a packed object's: its measurements') and the sum of `v` of the points the test
/// wrote to it.
#[test]
fn s3_objects_are_parquet_that_pyarrow_reads() {
    assert!(
        pyarrow_installed(),
        "python3 cannot import pyarrow: install it with `python3 -m pip install pyarrow` \
         (.ci/run does when it is missing)"
    );
    let prefix = "pa";
    let (moto, cfg) = bucket_and_config(prefix);
    let mut s = TestServer::start(cfg);
    let geos = all_geos();
    let mut model = Model::new();
    write_points(&s, &mut model, &geos, T0, 5);
    s.stop();

    let (copy, rows) = bucket_copy(&moto, prefix, None);
    // key → (rows in the manifest, sum of v over the points in that file).
    let mut want: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for (_, region) in GEOS {
        let files = manifest_files(&copy.path().join(region))
            .unwrap_or_else(|| panic!("no manifest for {region} in the bucket"));
        for f in files {
            let rel = f["path"].as_str().expect("path");
            let sum = rows
                .iter()
                .filter(|r| r.file == format!("{region}/{rel}"))
                .map(|r| match r.fields.get("v") {
                    Some(Field::Int(v)) => *v,
                    other => panic!("v of {r:?}: {other:?}"),
                })
                .sum::<i64>();
            // A packed object holds several measurements' entries: its rows are theirs.
            want.entry(format!("{prefix}/{region}/{rel}"))
                .or_insert((0, sum))
                .0 += f["rows"].as_u64().expect("rows");
        }
    }
    assert!(!want.is_empty());
    let mut args = vec!["pyarrow", BUCKET];
    args.extend(want.keys().map(String::as_str));
    let answer: serde_json::Value =
        serde_json::from_str(&moto.py(&args)).expect("pyarrow's answer is JSON");
    let got: BTreeMap<String, (u64, i64)> = answer
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v["rows"].as_u64().unwrap(), v["v_sum"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, want, "pyarrow's reading of the objects");
}

/// The compactor beside a live server on a bucket, then a delete (which rewrites files under
/// `<seq>~<rewrite>` names, as compaction writes `<seq>~c<token>-<n>`, characters an object
/// store escapes in keys) and a measurement whose name is percent-encoded on disk: answers
/// stay exact throughout, and a server on an empty local disk reads it all back.
#[test]
fn s3_compaction_beside_a_live_server_and_a_delete() {
    let prefix = "live";
    let (moto, cfg) = bucket_and_config(prefix);
    let geos = all_geos();
    let mut model = Model::new();
    let mut server = TestServer::start(cfg.clone());
    // Two flushes of the same partitions: several files each, overlapping points.
    write_points(&server, &mut model, &geos, T0, 11);
    server.stop();
    server.restart();
    write_points(&server, &mut model, &geos, T0, 12);
    server.write_ok(DB, &format!("cpu.load,host=h0 v=7i {T0}\n"));
    server.stop();
    server.restart();
    let root = server.root().to_path_buf();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
        .arg("--config")
        .arg(root.join("regions.toml"))
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["--progress", "lines", "--json"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .expect("running meridian-compact");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("working beside it"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the --json summary");
    assert!(
        summary["partitions_compacted"].as_u64().unwrap_or(0) > 0,
        "{summary}"
    );
    assert_eq!(summary["failures"], serde_json::json!([]), "{summary}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_answers(&server, &model, "after compaction beside the server");

    // A delete of one host's cpu points rewrites compacted files.
    let r = server.get(&format!(
        "/query?db={DB}&q=DELETE%20FROM%20cpu%20WHERE%20host%3D%27h1%27"
    ));
    assert_eq!(r.status, 200, "{r:?}");
    model.retain(|(m, h, _), _| !(m == "cpu" && h == "h1"));
    assert_answers(&server, &model, "after the delete");
    let odd = server.get(&format!(
        "/query?db={DB}&q=SELECT%20count(v)%20FROM%20%22cpu.load%22"
    ));
    assert_eq!(
        odd.json()["results"][0]["series"][0]["values"][0][1],
        1,
        "{odd:?}"
    );
    server.stop();

    // Everything the bucket holds is what the model says, once; a new node reads it.
    let (_copy, rows) = bucket_copy(&moto, prefix, None);
    let rows: Vec<Row> = rows
        .into_iter()
        .filter(|r| r.measurement != "cpu.load")
        .collect();
    assert_eq!(model_of_rows(&rows), model, "the bucket's files");
    let mut fresh = TestServer::start(cfg);
    assert_answers(&fresh, &model, "a new node on an empty disk");
    fresh.stop();
}

/// On a bucket: the compactor beside a live server that is being written to, killed at a
/// random moment; the server killed while a compactor runs and restarted under it; two
/// compactors at once. Every answer stays exact, and the bucket ends with each point once.
#[test]
fn s3_kill_9_of_either_process_while_writing_and_two_compactors() {
    let prefix = "crash";
    let (moto, cfg) = bucket_and_config(prefix);
    let geos = all_geos();
    let mut model = Model::new();
    let mut server = TestServer::start(cfg);
    for seed in 20..23 {
        write_points(&server, &mut model, &geos, T0, seed);
        server.stop();
        server.restart();
    }
    let root = server.root().to_path_buf();
    let data = server.data_dir();
    let compactor = |pause: u64| {
        Command::new(env!("CARGO_BIN_EXE_meridian-compact"))
            .arg("--config")
            .arg(root.join("regions.toml"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--progress", "lines", "--target-size", "4KiB"])
            .env("MERIDIAN_COMPACT_PAUSE_MS", pause.to_string())
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning meridian-compact")
    };
    let settle = || std::thread::sleep(Duration::from_millis(2500));
    let mut rng = Rng::new(9);
    for round in 0..2u64 {
        // Writes go on (later hours) while the compactor runs and is killed.
        let mut c = compactor(40);
        write_points(
            &server,
            &mut model,
            &geos,
            T0 + (4 + round as i64) * HOUR_NS,
            30 + round,
        );
        std::thread::sleep(Duration::from_millis(rng.range(100, 800) as u64));
        let _ = c.kill();
        let _ = c.wait();
        settle();
        assert_answers(&server, &model, &format!("round {round}: compactor killed"));
        // The server killed while a compactor runs, restarted under it.
        let c = compactor(40);
        std::thread::sleep(Duration::from_millis(rng.range(100, 600) as u64));
        server.kill9();
        server.restart();
        wait_ok(c, &format!("round {round}"));
        settle();
        assert_answers(&server, &model, &format!("round {round}: server killed"));
    }
    let (a, b) = (compactor(5), compactor(5));
    for c in [a, b] {
        wait_ok(c, "compactor");
    }
    settle();
    assert_answers(&server, &model, "two compactors");
    server.stop();
    let (_copy, rows) = bucket_copy(&moto, prefix, None);
    assert_eq!(model_of_rows(&rows), model, "the bucket's files");
}
