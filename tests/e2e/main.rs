//! End-to-end tests: each test starts the real `meridian` binary on port 0 in a temp dir,
//! talks to it over loopback HTTP, stops or kills it, and reads the data dir back with an
//! independent reader (manifest JSON + Parquet), comparing against a model built in the test.
//!
//! - [`support`]: the `TestServer` harness, config builder, data-dir reader, helpers.
//! - [`write_path`]: every endpoint, routing, partitioning, types, escapes, partial writes,
//!   auth, health and metrics (SPEC §4, §6).
//! - [`durability`]: `kill -9` at random moments, torn and corrupt WAL, backpressure, the
//!   interval sync policy (SPEC §1, §7).
//! - [`oracle`]: InfluxQL `/query` answers against a real InfluxDB 1.6.7 (`influxd`).
//! - [`bad_input`]: hostile bodies, names and parameters never give a 5xx, a hang, or a file
//!   outside the data dir (SPEC §4, §7).
//! - [`readers`]: pyarrow, DuckDB and polars read the data dir directly, as the README shows.
//! - [`retention`]: `[[retention]]` rules: expired points hidden at once, dropped and rolled up
//!   in the background.
//! - [`operator`]: the start-up summary, config errors as `check-config` reports them.
//! - [`s3`]: data files and manifests in an S3-compatible bucket (a real `moto_server`), read
//!   back with boto3 (and pyarrow), answers after restarts on the same and on an empty data
//!   dir, and a region with its own `storage` URL.

mod bad_input;
mod bounds;
mod cluster;
mod compaction;
mod disk_full;
mod durability;
mod influxql;
mod manifest;
mod model;
mod multinode;
mod operator;
mod oracle;
mod packed;
mod query;
mod query_limits;
mod readers;
mod retention;
mod routing;
mod s3;
mod shapes;
mod support;
mod write_path;
