//! Meridian: a write-optimized, geo-sharded time-series database.
//!
//! Write path:
//! ```text
//!  HTTP line protocol (v1 /write, v2 /api/v2/write, v3 /api/v3/write_lp)
//!    │  http::write: auth, body limit, gzip, db name, precision
//!    ▼
//!  region::prepare  parse (lineproto) → check (names, reserved keys, schema registry)
//!    │              → route (router: directory → geo tag → lat/lon → default; partition; shard)
//!    ▼
//!  region::shard    one thread per (region, shard): WAL append, one fsync per group → 204
//!    │              → Block (Arrow builders, series table)
//!    ▼ flush: rows | bytes | age | memory high-water | shutdown
//!  region::flush    sort by tag set, time; merge duplicates (last write wins, per field)
//!                   → zstd Parquet (temp, fsync, rename) → manifest (atomic) → drop WAL
//! ```
//! Read path: `query` asks each region for a snapshot (in-memory chunks + live files, never
//! both for the same rows), scans and aggregates per region, and merges partial aggregates.
//!
//! Invariants:
//! - A write is acknowledged only after its WAL record is durable per the sync policy.
//! - Nothing acknowledged is lost: WAL segments are deleted only after the files holding
//!   their records are in the manifest; start-up replays what the manifest does not cover.
//! - A name from a request reaches the file system only as a checked db name
//!   (`model::is_safe_name`) or a percent-encoded measurement (`storage::paths`).
//! - Bad input is a 4xx naming what was wrong; nothing from outside reaches an `unwrap`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bufpool;
pub mod catalog;
pub mod cluster;
pub mod compaction;
pub mod config;
pub mod grouped;
pub mod http;
pub mod influxql;
#[cfg(test)]
mod layering;
pub mod lineproto;
pub mod metrics;
pub mod model;
pub mod query;
pub mod region;
pub mod rollup;
pub mod router;
pub mod routing;
pub mod storage;
