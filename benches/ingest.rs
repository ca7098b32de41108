//! Criterion benches of the write path's hot spots, each reporting a `Throughput`:
//!
//! ```text
//! parse      lineproto::lines over ~10k TSBS-like lines (int and float)   bytes/s
//! routing    Router::route (and series_hash) over 10k hosts' sorted tags    tag sets/s
//! prepare    region::prepare::prepare: parse → check → route a 10k-line body bytes/s
//! block      Block::append of 100k rows × 10 fields                          values/s
//! parquet    freeze + sorted_batch + the file writer (stage, publish), 1M rows values/s
//!            (bytes per value of the file are printed once on stderr, with those of the
//!            same rows written without dictionary on field columns, for comparison)
//! ```
//!
//! The data imitates `meridian-loadgen` (TSBS cpu-only); see `tsbs/mod.rs`.
//!
//! Run: `cargo bench --bench ingest` (a few minutes); `-- --quick` for a rough pass.

/// The server's allocator (`src/main.rs`): with glibc's, appends of 8-byte columns measured
/// page faults of its `mmap`ed large blocks (600,000 in 4 s against 100,000 for byte-wide
/// ones), not the code.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use meridian::config::Config;
use meridian::lineproto::{self, FieldValue};
use meridian::model::Precision;
use meridian::region::block::{Block, sorted_batch};
use meridian::region::prepare::prepare;
use meridian::region::schema::SchemaRegistry;
use meridian::router::{Router, series_hash};
use meridian::storage::store::Store;
use meridian::storage::writer::{FileSpec, publish, stage_file};

use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

mod tsbs;
use tsbs::{Dataset, FIELDS, INTERVAL_NS, START_NS, filled_block};

fn routing_config() -> Config {
    match Config::parse(include_str!("../regions.toml")) {
        Ok(c) => c,
        Err(e) => panic!("regions.toml does not parse: {e}"),
    }
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, int) in [("int", true), ("float", false)] {
        // 1,000 hosts × 10 timestamps = 10k lines (~2.4 MB).
        let body = Dataset::new(1_000).line_protocol(10, int);
        let lines = lineproto::lines(&body).count();
        assert_eq!(lines, 10_000);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("lines_10k_{name}"), |b| {
            b.iter(|| {
                let mut ok = 0usize;
                for item in lineproto::lines(black_box(&body)) {
                    if let Ok(line) = &item.result {
                        ok += line.fields.len();
                    }
                }
                assert_eq!(ok, 100_000);
                ok
            })
        });
    }
    g.finish();
}

fn bench_routing(c: &mut Criterion) {
    let cfg = routing_config();
    let router = Router::new(&cfg.routing).expect("the default globs compile");
    let data = Dataset::new(10_000);
    let tag_sets: Vec<Vec<(&str, &str)>> = data
        .hosts
        .iter()
        .map(|h| {
            h.tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(tag_sets.len() as u64));
    g.bench_function("route_10k_hosts", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for tags in &tag_sets {
                sum += router.route(black_box(tags)).0.0;
            }
            sum
        })
    });
    g.bench_function("series_hash_10k_hosts", |b| {
        b.iter(|| {
            let mut x = 0u64;
            for tags in &tag_sets {
                x ^= series_hash("cpu", black_box(tags));
            }
            x
        })
    });
    g.finish();
}

fn bench_prepare(c: &mut Criterion) {
    let cfg = routing_config();
    let routing =
        meridian::routing::Routing::from_config(&cfg.routing).expect("the default globs compile");
    // Steady state: the registry already knows the columns after the first iteration.
    let registry = SchemaRegistry::new();
    let catalog = meridian::catalog::series::SeriesCatalog::new();
    let shards = 2;
    let now = START_NS;
    let mut g = c.benchmark_group("prepare");
    for (name, int) in [("int", true), ("float", false)] {
        let body = Bytes::from(Dataset::new(1_000).line_protocol(10, int));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("body_10k_lines_{name}"), |b| {
            b.iter(|| {
                // Separate dbs per variant: a field cannot be both integer and float.
                let p = prepare(
                    meridian::region::prepare::Checks {
                        routing: &routing,
                        horizon: meridian::routing::Horizon::NONE,
                        fixed_region: None,
                        registry: &registry,
                        series: &catalog,
                        max_series: 1_000_000,
                        catalog_bytes: 512 << 20,
                        microseconds: false,
                        retention: &Default::default(),
                    },
                    shards,
                    name,
                    black_box(&body[..]),
                    Precision::Nanosecond,
                    now,
                );
                assert_eq!(p.accepted, 10_000);
                p
            })
        });
    }
    g.finish();
}

/// One prepared row for the append bench.
struct Row {
    host: usize,
    fields: Vec<(&'static str, FieldValue<'static>)>,
    ts: i64,
}

/// The ten field values of a row from a step of the random walks.
type Values = fn([i64; 10]) -> Vec<(&'static str, FieldValue<'static>)>;

/// Appends 100,000 rows of 10 fields to a block, for three kinds of values: TSBS integers
/// (held in a byte), floats with two decimals (held as scaled 32-bit integers) and floats
/// at full precision (held as doubles).
fn bench_block_append(c: &mut Criterion) {
    const HOSTS: usize = 1_000;
    const STEPS: usize = 100;
    let mut data = Dataset::new(HOSTS);
    let mut steps = Vec::with_capacity(HOSTS * STEPS);
    for t in 0..STEPS {
        for h in 0..HOSTS {
            steps.push((h, data.step(h), START_NS + t as i64 * INTERVAL_NS));
        }
    }
    let tags: Vec<Vec<(&str, &str)>> = data
        .hosts
        .iter()
        .map(|h| {
            h.tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let hashes: Vec<u64> = data.hosts.iter().map(|h| h.hash).collect();
    let mut g = c.benchmark_group("block");
    g.sample_size(20);
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.throughput(Throughput::Elements((steps.len() * FIELDS.len()) as u64));
    let kinds: [(&str, Values); 3] = [
        ("", |v| Dataset::field_values(v, true)),
        ("_float2", |v| Dataset::field_values(v, false)),
        ("_full", |v| {
            FIELDS
                .iter()
                .zip(v)
                .map(|(n, v)| {
                    (
                        *n,
                        FieldValue::Float(v as f64 / 100.0 * std::f64::consts::PI),
                    )
                })
                .collect()
        }),
    ];
    for (suffix, values) in kinds {
        let rows: Vec<Row> = steps
            .iter()
            .map(|(host, vals, ts)| Row {
                host: *host,
                fields: values(*vals),
                ts: *ts,
            })
            .collect();
        g.bench_function(format!("append_100k_rows_x10_fields{suffix}"), |b| {
            b.iter_batched(
                Block::new,
                |mut block| {
                    // As a shard appends a run of rows of one shape.
                    for (i, r) in rows.iter().enumerate() {
                        block.append(hashes[r.host], &tags[r.host], &r.fields, r.ts, i > 0);
                    }
                    block
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// Meridian's writer properties, except that field columns (Int64, Float64) have no
/// dictionary, so their configured encoding is used from the first page.
fn no_field_dictionary(schema: &arrow::datatypes::Schema) -> WriterProperties {
    use arrow::datatypes::DataType;
    use parquet::basic::{Compression, Encoding, ZstdLevel};
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("level 1 is valid"),
        ))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page);
    for f in schema.fields() {
        let col = ColumnPath::from(f.name().as_str());
        b = match f.data_type() {
            DataType::Timestamp(_, _) | DataType::Int64 | DataType::UInt64 => b
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col, Encoding::DELTA_BINARY_PACKED),
            DataType::Float64 => b
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col, Encoding::BYTE_STREAM_SPLIT),
            _ => b,
        };
    }
    b.build()
}

/// Writes `batch` as the server's flush does (the one file writer: staged, then published
/// durably); returns its size.
fn write_file(store: &Store, rel: &str, batch: &arrow::record_batch::RecordBatch) -> u64 {
    let spec = FileSpec {
        region: "bench",
        db: "db",
        measurement: "cpu",
        partition_start: 0,
        row_group_rows: 1 << 20,
        zstd_level: meridian::storage::parquet::FLUSH_ZSTD_LEVEL,
        page_rows: meridian::storage::parquet::FLUSH_PAGE_ROWS,
        time_unit: Default::default(),
        column_index: false,
    };
    let staged =
        stage_file(store, rel.to_string(), 1, batch, &spec, Vec::new()).expect("writing the file");
    publish(store, &[&staged]).expect("publishing the file");
    staged.meta.bytes
}

/// Encodes `batch` with other writer properties (an experiment, not what Meridian writes);
/// returns the size.
fn encoded_size(batch: &arrow::record_batch::RecordBatch, props: WriterProperties) -> u64 {
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props))
        .expect("a writer");
    w.write(batch).expect("encoding");
    w.into_inner().expect("finishing").len() as u64
}

fn bench_parquet(c: &mut Criterion) {
    // 1,000 hosts × 1,000 timestamps = 1M rows, 10M values.
    const HOSTS: usize = 1_000;
    const STEPS: usize = 1_000;
    let rows = HOSTS * STEPS;
    let values = (rows * FIELDS.len()) as u64;
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::local(dir.path());
    let mut g = c.benchmark_group("parquet");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.throughput(Throughput::Elements(values));
    for (name, int) in [("int", true), ("float", false)] {
        let mut block = filled_block(HOSTS, STEPS, int);
        let chunks = block.freeze();

        // Size of one file, printed once.
        let (batch, _, merged) = sorted_batch(&chunks).expect("sorting the block");
        assert_eq!((batch.num_rows(), merged), (rows, 0));
        let size = write_file(&store, &format!("probe_{name}.parquet"), &batch);
        eprintln!(
            "parquet/{name}: {rows} rows × {} fields → {size} bytes: {:.3} bytes/value, {:.2} bytes/row",
            FIELDS.len(),
            size as f64 / values as f64,
            size as f64 / rows as f64
        );
        // For comparison (not what Meridian writes): field columns without dictionary, so
        // integers use DELTA_BINARY_PACKED and floats BYTE_STREAM_SPLIT.
        let plain = no_field_dictionary(&batch.schema());
        let size = encoded_size(&batch, plain);
        eprintln!(
            "parquet/{name}: same rows, fields without dictionary → {size} bytes: {:.3} bytes/value",
            size as f64 / values as f64
        );
        drop(batch);

        g.bench_function(format!("sorted_batch_1m_rows_{name}"), |b| {
            b.iter(|| sorted_batch(black_box(&chunks)).expect("sorting the block"))
        });
        let (batch, _, _) = sorted_batch(&chunks).expect("sorting the block");
        let batch = Arc::new(batch);
        let mut n = 0u64;
        g.bench_function(format!("write_file_1m_rows_{name}"), |b| {
            b.iter(|| {
                n += 1;
                let rel = format!("{name}_{n}.parquet");
                let size = write_file(&store, &rel, &batch);
                let _ = std::fs::remove_file(dir.path().join(&rel));
                size
            })
        });
        drop(batch);
        // The whole flush of a block: freeze, sort and dedup, encode, fsync, rename.
        g.bench_function(format!("flush_1m_rows_{name}"), |b| {
            b.iter(|| {
                n += 1;
                let chunks = block.freeze();
                let (batch, _, _) = sorted_batch(&chunks).expect("sorting the block");
                let rel = format!("{name}_{n}.parquet");
                let size = write_file(&store, &rel, &batch);
                let _ = std::fs::remove_file(dir.path().join(&rel));
                size
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_routing,
    bench_prepare,
    bench_block_append,
    bench_parquet
);
criterion_main!(benches);
