//! Criterion benches of the read path over one Parquet file: `query::scan::scan_region` on a
//! region snapshot holding one flushed file, then `query::merge` into output series.
//!
//! The file is what a flush writes for one hourly partition of the TSBS-like data set
//! (`tsbs/mod.rs`): 1,000 hosts × 360 points (1 h at 10 s) = 360k rows × 10 integer fields,
//! sorted by tag set then time, Meridian's writer properties. The four queries are the
//! TSBS-like ones of `tools/compare`:
//!
//! ```text
//! max_one_host      fields=usage_user agg=max every=1h where hostname=host_1
//! mean_by_region    fields=*          agg=mean every=1h group_by=region
//! last_every_host   fields=*          agg=last group_by=hostname
//! raw_one_host      fields=*          agg=none where hostname=host_1
//! ```
//!
//! Throughput is the number of field values the query covers in the file (rows × requested
//! fields), so full scans read as values/s; for the one-host queries it shows how much the
//! scan avoids reading (one row group: pruning by statistics cannot skip it).
//!
//! Run: `cargo bench --bench query`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use meridian::model::PartitionStart;
use meridian::query::plan::QuerySpec;
use meridian::query::scan::{Partial, scan_region};
use meridian::query::{Series, merge};
use meridian::region::RegionSnapshot;
use meridian::region::block::sorted_batch;
use meridian::storage::cache::IndexCache;
use meridian::storage::store::Store;
use meridian::storage::writer::{FileSpec, publish, stage_file};

mod tsbs;
use tsbs::{FIELDS, START_NS, filled_block};

const HOSTS: usize = 1_000;
const STEPS: usize = 360;
const HOUR_NS: i64 = 3_600_000_000_000;
/// What the default config allows a query to return as raw rows is irrelevant here.
const MAX_ROWS: usize = usize::MAX;

/// Writes the file and returns a snapshot of a region holding only it.
fn one_file_region(dir: &std::path::Path) -> (RegionSnapshot, u64) {
    let mut block = filled_block(HOSTS, STEPS, true);
    let chunks = block.freeze();
    let (batch, cols, _) = sorted_batch(&chunks).expect("sorting the block");
    let rel = "bench/cpu/part_day=2026-01-01/part_hour=00/00000001.parquet";
    let store = Store::local(dir);
    let spec = FileSpec {
        region: "bench",
        db: "bench",
        measurement: "cpu",
        partition_start: PartitionStart::of(START_NS, HOUR_NS).0,
        row_group_rows: 1 << 20,
        zstd_level: meridian::storage::parquet::FLUSH_ZSTD_LEVEL,
        page_rows: meridian::storage::parquet::FLUSH_PAGE_ROWS,
        time_unit: Default::default(),
        column_index: false,
    };
    let staged = stage_file(&store, rel.to_string(), 1, &batch, &spec, Vec::new())
        .expect("writing the file");
    publish(&store, &[&staged]).expect("publishing the file");
    let meta = staged.meta;
    assert_eq!(meta.columns, cols.kinds());
    let snap = RegionSnapshot {
        mem: Vec::new(),
        all_files: Arc::new(vec![meta]),
        positions: None,
        db: Arc::from("bench"),
        measurement: Some(Arc::from("cpu")),
        excluded: Default::default(),
        store,
        retention: Default::default(),
        now_ns: 0,
    };
    (snap, batch.num_rows() as u64)
}

fn spec(params: &[(&str, &str)]) -> QuerySpec {
    let mut p: HashMap<String, String> = [
        ("db", "bench".to_string()),
        ("measurement", "cpu".to_string()),
        ("start", START_NS.to_string()),
        ("end", (START_NS + HOUR_NS).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in params {
        p.insert(k.to_string(), v.to_string());
    }
    match QuerySpec::from_params(&p) {
        Ok(s) => s,
        Err(e) => panic!("bad query {params:?}: {e}"),
    }
}

fn run(snap: &RegionSnapshot, spec: &QuerySpec, cache: &IndexCache) -> (Vec<String>, Vec<Series>) {
    let (partial, _stats): (Partial, _) =
        scan_region(snap, spec, MAX_ROWS, cache, None).expect("scan");
    let (columns, series, _) = merge(spec, vec![partial]);
    (columns, series)
}

/// One benchmarked query: its parameters and the shape of its answer.
struct Query {
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    /// Fields the query reads (for the throughput).
    fields: usize,
    /// Series in the answer.
    series: usize,
}

fn bench_queries(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (snap, rows) = one_file_region(dir.path());
    // As in the server: the file's series index is built by the first query and kept.
    let cache = IndexCache::new(256 << 20, 256 << 20);
    let queries = [
        Query {
            name: "max_one_host",
            params: &[
                ("fields", "usage_user"),
                ("agg", "max"),
                ("every", "1h"),
                ("where", "hostname=host_1"),
            ],
            fields: 1,
            series: 1,
        },
        Query {
            name: "mean_by_region",
            params: &[
                ("fields", "*"),
                ("agg", "mean"),
                ("every", "1h"),
                ("group_by", "region"),
            ],
            fields: FIELDS.len(),
            series: 10,
        },
        Query {
            name: "last_every_host",
            params: &[("fields", "*"), ("agg", "last"), ("group_by", "hostname")],
            fields: FIELDS.len(),
            series: HOSTS,
        },
        Query {
            name: "raw_one_host",
            params: &[
                ("fields", "*"),
                ("agg", "none"),
                ("where", "hostname=host_1"),
            ],
            fields: FIELDS.len(),
            series: 1,
        },
    ];
    let mut g = c.benchmark_group("query_one_file");
    g.sample_size(20);
    g.warm_up_time(std::time::Duration::from_secs(1));
    for Query {
        name,
        params,
        fields,
        series,
    } in queries
    {
        let spec = spec(params);
        // The answer has the expected shape before anything is timed.
        let (_, out) = run(&snap, &spec, &cache);
        assert_eq!(out.len(), series, "{name}: series");
        g.throughput(Throughput::Elements(rows * fields as u64));
        g.bench_function(name, |b| {
            b.iter(|| run(black_box(&snap), black_box(&spec), &cache))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_queries);
criterion_main!(benches);
