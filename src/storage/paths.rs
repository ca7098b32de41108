//! Every file and directory name Meridian uses on disk, defined in one place.
//!
//! ```text
//! <data_dir>/
//!   meridian.lock                                  held (flock) by a running server
//!   databases.json                                 databases made by CREATE DATABASE
//!   <region>/                                      the region's local directory
//!     wal/<shard>/<first_seq:020>.wal              write-ahead log segments (always local)
//! <region root>/                                   the same directory, or s3://bucket/prefix
//!   _manifest/<version:020>.checkpoint.json        live files as of an edit version
//!   _manifest/<version:020>.edit.json              one committed edit (put-if-absent)
//!   <db>/<measurement>/part_day=2026-11-27/part_hour=13/<file_seq:020>.parquet
//!                     …/<seq:020>~<rewrite_seq:020>.parquet   a file a delete rewrote
//!                     …/<seq:020>~c<token>-<n>.parquet       compaction outputs of seq
//! ```
//! Directories starting with `_` or `.` are skipped by Spark, Hive and pyarrow datasets, so
//! a region root read as a table holds nothing but its Parquet files.
//! Invariants: db and region names are checked by `model::is_safe_name`; a measurement is
//! percent-encoded ([`encode_measurement`]) so that any name becomes one safe path component;
//! temporary files start with `.` so that Parquet readers globbing `*.parquet` skip them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike};

use crate::model::{PARTITION_KEY_DAY, PARTITION_KEY_HOUR, PARTITION_KEY_MINUTE, PartitionStart};

pub const LOCK_FILE: &str = "meridian.lock";
/// The manifest of versions before 0.2 (read once, to migrate).
pub const MANIFEST_FILE: &str = "manifest.json";
/// Directory of manifest edits and checkpoints under a region root.
pub const MANIFEST_DIR: &str = "_manifest";
pub const DATABASES_FILE: &str = "databases.json";
/// The routing versions of a single-node data dir.
pub const ROUTING_FILE: &str = "routing.json";
pub const WAL_DIR: &str = "wal";
pub const PARQUET_EXT: &str = "parquet";
/// Under a region directory: data files no manifest lists and that were not provably
/// leftovers, kept aside by start-up instead of deleted (hidden from hive readers).
pub const ORPHANED_DIR: &str = ".orphaned";
pub const WAL_EXT: &str = "wal";
/// Under a region's local directory, when its files live in a bucket: files being encoded
/// before their upload.
pub const STAGING_DIR: &str = ".staging";
/// Under a region's local directory, when its files live in a bucket: whole data files kept
/// for reads (`storage::file_cache`).
pub const CACHE_DIR: &str = ".cache";

/// Longest directory name of a measurement (one path component must stay under 255
/// bytes). Longer encodings are shortened (see [`encode_measurement`]).
pub const MAX_ENCODED_MEASUREMENT: usize = 200;

/// The directory name of a measurement. Every byte outside `A-Z a-z 0-9 _ -` is
/// percent-encoded (`%XX`, upper-case hex), so `.`/`..`/`/` cannot occur. An encoding longer
/// than [`MAX_ENCODED_MEASUREMENT`] bytes (InfluxDB accepts names up to 64 KiB) is cut to
/// its first 183 bytes (never inside an escape) followed by `~` and the 16 hex digits of
/// the xxh3-64 hash of the full name: stable, and distinct from every full encoding (which
/// never holds `~`). The full name is in each file's footer and the manifest.
pub fn encode_measurement(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    if out.len() <= MAX_ENCODED_MEASUREMENT {
        return out;
    }
    let mut cut = MAX_ENCODED_MEASUREMENT - 17;
    let bytes = out.as_bytes();
    while cut > 0 && (bytes[cut - 1] == b'%' || (cut >= 2 && bytes[cut - 2] == b'%')) {
        cut -= 1;
    }
    out.truncate(cut);
    out.push_str(&format!(
        "~{:016x}",
        xxhash_rust::xxh3::xxh3_64(name.as_bytes())
    ));
    out
}

/// Inverse of [`encode_measurement`]; `None` for text it could not have produced.
pub fn decode_measurement(enc: &str) -> Option<String> {
    let bytes = enc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = enc.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn lock_file(data_dir: &Path) -> PathBuf {
    data_dir.join(LOCK_FILE)
}

pub fn databases_file(data_dir: &Path) -> PathBuf {
    data_dir.join(DATABASES_FILE)
}

pub fn routing_file(data_dir: &Path) -> PathBuf {
    data_dir.join(ROUTING_FILE)
}

pub fn region_dir(data_dir: &Path, region: &str) -> PathBuf {
    data_dir.join(region)
}

pub fn manifest_file(region_dir: &Path) -> PathBuf {
    region_dir.join(MANIFEST_FILE)
}

pub fn wal_dir(region_dir: &Path, shard: usize) -> PathBuf {
    region_dir.join(WAL_DIR).join(shard.to_string())
}

pub fn wal_segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{WAL_EXT}")
}

/// Parses a WAL segment file name back to its first sequence number.
pub fn parse_wal_segment_name(name: &str) -> Option<u64> {
    name.strip_suffix(&format!(".{WAL_EXT}"))?.parse().ok()
}

/// The hive-style partition directory, relative to the measurement directory: day, then
/// hour and minute only when the partition duration needs them.
pub fn partition_rel_dir(start: PartitionStart, duration_ns: i64) -> PathBuf {
    const HOUR: i64 = 3_600_000_000_000;
    const DAY: i64 = 24 * HOUR;
    let t = DateTime::from_timestamp_nanos(start.0);
    let mut p = PathBuf::from(format!(
        "{PARTITION_KEY_DAY}={:04}-{:02}-{:02}",
        t.year(),
        t.month(),
        t.day()
    ));
    if duration_ns % DAY != 0 {
        p.push(format!("{PARTITION_KEY_HOUR}={:02}", t.hour()));
        if duration_ns % HOUR != 0 {
            p.push(format!("{PARTITION_KEY_MINUTE}={:02}", t.minute()));
        }
    }
    p
}

/// Path of a data file relative to the region directory.
pub fn data_file_rel(
    db: &str,
    measurement: &str,
    start: PartitionStart,
    duration_ns: i64,
    file_seq: u64,
) -> PathBuf {
    let mut p = PathBuf::from(db);
    p.push(encode_measurement(measurement));
    p.push(partition_rel_dir(start, duration_ns));
    p.push(format!("{file_seq:020}.{PARQUET_EXT}"));
    p
}

/// The directory, under a database's, of the files that pack small measurements together
/// (`storage::packed`). No measurement's directory starts with `~` ([`encode_measurement`]).
pub const PACKED_DIR: &str = "~packed";

/// Path of a packed file (`storage::packed`) relative to the region directory.
pub fn packed_file_rel(
    db: &str,
    start: PartitionStart,
    duration_ns: i64,
    file_seq: u64,
) -> PathBuf {
    let mut p = PathBuf::from(db);
    p.push(PACKED_DIR);
    p.push(partition_rel_dir(start, duration_ns));
    p.push(format!("{file_seq:020}.{PARQUET_EXT}"));
    p
}

/// For a packed file's `path`, the same path in `measurement`'s own directory of `db`
/// (where a file rewritten from one of its entries goes); any other path as it is.
pub fn unpacked_rel(path: &str, db: &str, measurement: &str) -> String {
    match path
        .strip_prefix(db)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.strip_prefix(PACKED_DIR))
        .and_then(|p| p.strip_prefix('/'))
    {
        Some(rest) => format!("{db}/{}/{rest}", encode_measurement(measurement)),
        None => path.to_string(),
    }
}

/// The other way: for the partition directory `own` of `measurement` in `db`, the same
/// partition's directory of packed files; `None` when `own` is not under that
/// measurement's directory.
pub fn packed_dir_of(own: &str, db: &str, measurement: &str) -> Option<String> {
    let rest = own.strip_prefix(&format!("{db}/{}/", encode_measurement(measurement)))?;
    Some(format!("{db}/{PACKED_DIR}/{rest}"))
}

/// Path of a rewritten data file (a delete removed rows from it): it keeps the original's
/// seq, which orders it among overlapping files (last write wins), and carries the seq
/// allocated for the rewrite: `<seq:020>~<rewrite_seq:020>.parquet`.
pub fn rewritten_file_rel(original: &Path, seq: u64, rewrite_seq: u64) -> PathBuf {
    original.with_file_name(format!("{seq:020}~{rewrite_seq:020}.{PARQUET_EXT}"))
}

/// Path of output `n` of a compaction whose inputs' highest seq is `seq`: outputs keep that
/// seq (it orders them below every file flushed after their inputs, whatever runs beside
/// the compactor), and carry the compaction's `token`, unique per run.
pub fn compacted_file_rel(dir: &str, seq: u64, token: &str, n: usize) -> String {
    format!("{dir}/{seq:020}~c{token}-{n}.{PARQUET_EXT}")
}

/// Whether the data file at `path` was written by a compaction (its name says so).
pub fn is_compacted(path: &Path) -> bool {
    matches!(parse_data_file(path), Some(DataFileName::Compacted(..)))
}

/// What a data file's name says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFileName {
    /// `<seq>.parquet`: written by a flush.
    Flushed(u64),
    /// `<seq>~<rewrite_seq>.parquet`: rewritten by a delete.
    Rewritten(u64, u64),
    /// `<seq>~c<token>-<n>.parquet`: written by a compaction.
    Compacted(u64, String),
}

impl DataFileName {
    pub fn seq(&self) -> u64 {
        match self {
            DataFileName::Flushed(s) | DataFileName::Rewritten(s, _) => *s,
            DataFileName::Compacted(s, _) => *s,
        }
    }
}

/// Parses a data file's name.
pub fn parse_data_file(path: &Path) -> Option<DataFileName> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(PARQUET_EXT)?.strip_suffix('.')?;
    let digits = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match stem.split_once('~') {
        None => Some(DataFileName::Flushed(digits(stem)?)),
        Some((a, b)) => match b.strip_prefix('c') {
            Some(rest) => {
                let (token, n) = rest.rsplit_once('-')?;
                digits(n)?;
                if token.is_empty() || !token.bytes().all(|c| c.is_ascii_alphanumeric()) {
                    return None;
                }
                Some(DataFileName::Compacted(digits(a)?, token.to_string()))
            }
            None => Some(DataFileName::Rewritten(digits(a)?, digits(b)?)),
        },
    }
}

/// The seqs in a data file's name: the file's seq, and for a rewritten file the seq
/// allocated for the rewrite.
pub fn parse_data_file_name(path: &Path) -> Option<(u64, Option<u64>)> {
    match parse_data_file(path)? {
        DataFileName::Flushed(s) | DataFileName::Compacted(s, _) => Some((s, None)),
        DataFileName::Rewritten(s, r) => Some((s, Some(r))),
    }
}

/// The seq allocated when a data file was written by a flush or a delete
/// (`<seq:020>.parquet`, or the rewrite's seq of `<seq>~<rewrite_seq>.parquet`): a file
/// whose write no committed manifest edit covers has one at or above the manifest's
/// `next_seq`. Compaction outputs allocate none.
pub fn parse_data_file_seq(path: &Path) -> Option<u64> {
    match parse_data_file(path)? {
        DataFileName::Flushed(s) => Some(s),
        DataFileName::Rewritten(_, r) => Some(r),
        DataFileName::Compacted(..) => None,
    }
}

/// A manifest edit's path under the region root.
pub fn manifest_edit_rel(version: u64) -> String {
    format!("{MANIFEST_DIR}/{version:020}.edit.json")
}

/// A manifest checkpoint's path under the region root.
pub fn manifest_checkpoint_rel(version: u64) -> String {
    format!("{MANIFEST_DIR}/{version:020}.checkpoint.json")
}

/// A file of the manifest directory: `(version, is_checkpoint)`.
pub fn parse_manifest_rel(rel: &str) -> Option<(u64, bool)> {
    let name = rel.strip_prefix(MANIFEST_DIR)?.strip_prefix('/')?;
    let (v, checkpoint) = if let Some(v) = name.strip_suffix(".checkpoint.json") {
        (v, true)
    } else {
        (name.strip_suffix(".edit.json")?, false)
    };
    if v.len() != 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((v.parse().ok()?, checkpoint))
}

/// The temporary name a file is written under before its atomic rename.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_path.with_file_name(format!(".{name}.tmp"))
}

pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packed file's path and a measurement's directory of the same partition map onto
    /// each other, for names that need escaping too.
    #[test]
    fn packed_and_own_directories_map_onto_each_other() {
        let packed = "db/~packed/part_day=2026-01-01/part_hour=03/00000000000000000007.parquet";
        let own = unpacked_rel(packed, "db", "cpu load");
        assert_eq!(
            own,
            "db/cpu%20load/part_day=2026-01-01/part_hour=03/00000000000000000007.parquet"
        );
        let dir = own.rsplit_once('/').map(|(d, _)| d).unwrap();
        assert_eq!(
            packed_dir_of(dir, "db", "cpu load").as_deref(),
            Some("db/~packed/part_day=2026-01-01/part_hour=03")
        );
        assert_eq!(packed_dir_of(dir, "db", "mem"), None);
        assert_eq!(
            unpacked_rel("db/cpu/x.parquet", "db", "cpu"),
            "db/cpu/x.parquet"
        );
    }

    #[test]
    fn reserved_database_names_are_the_directories_beside_the_databases() {
        let mut dirs = [WAL_DIR, MANIFEST_DIR];
        dirs.sort();
        let mut reserved = crate::model::RESERVED_DB_NAMES;
        reserved.sort();
        assert_eq!(dirs, reserved);
    }

    #[test]
    fn measurement_encoding_is_safe_and_reversible() {
        for m in [
            "cpu",
            "my measurement",
            "../../etc/passwd",
            ".",
            "..",
            "a/b\\c",
            "温度",
            "%41",
            "x,y=z",
        ] {
            let e = encode_measurement(m);
            assert!(
                !e.contains('/') && !e.contains('\\') && !e.contains('.'),
                "{e}"
            );
            assert!(!e.is_empty());
            assert_eq!(decode_measurement(&e).as_deref(), Some(m));
        }
        assert_eq!(decode_measurement("%4"), None);
        assert_eq!(decode_measurement("%ZZ"), None);
    }

    /// Names whose encoding is longer than a directory name get a stable short form:
    /// within the limit, distinct for distinct names, never cut inside an escape.
    #[test]
    fn long_measurement_names_get_a_short_stable_form() {
        let long_ascii = "m".repeat(300);
        let long_escaped = "温".repeat(100);
        let near = format!("{}x", "m".repeat(299));
        let mut seen = std::collections::HashSet::new();
        for m in [&long_ascii, &long_escaped, &near, &"a b".repeat(70)] {
            let e = encode_measurement(m);
            assert!(e.len() <= MAX_ENCODED_MEASUREMENT, "{} bytes", e.len());
            assert_eq!(e, encode_measurement(m), "stable");
            let (head, hash) = e.split_once('~').expect("short form");
            assert_eq!(hash.len(), 16);
            let full = encode_measurement(&m[..m.char_indices().nth(10).unwrap().0]);
            assert!(head.starts_with(&full[..10]));
            let pct = head.rfind('%');
            assert!(
                pct.is_none_or(|i| i + 3 <= head.len()),
                "cut inside an escape: {head}"
            );
            assert!(seen.insert(e));
        }
        assert_eq!(encode_measurement(&"m".repeat(200)), "m".repeat(200));
        // A full encoding never holds `~`, so no short form equals another name's encoding.
        assert_eq!(encode_measurement("a~b"), "a%7Eb");
    }

    #[test]
    fn hive_partition_dirs() {
        let h = 3_600_000_000_000i64;
        // 2026-11-27T13:00:00Z
        let t = 1_795_784_400_000_000_000i64;
        assert_eq!(
            partition_rel_dir(PartitionStart(t), h),
            PathBuf::from("part_day=2026-11-27/part_hour=13")
        );
        assert_eq!(
            partition_rel_dir(PartitionStart(t - 13 * h), 24 * h),
            PathBuf::from("part_day=2026-11-27")
        );
        assert_eq!(
            partition_rel_dir(PartitionStart(t + h / 4), h / 4),
            PathBuf::from("part_day=2026-11-27/part_hour=13/part_minute=15")
        );
        let p = data_file_rel("telegraf", "cpu load", PartitionStart(t), h, 7);
        assert_eq!(
            p,
            PathBuf::from(
                "telegraf/cpu%20load/part_day=2026-11-27/part_hour=13/00000000000000000007.parquet"
            )
        );
        assert!(is_temp_name(
            &temp_path(&p).file_name().unwrap().to_string_lossy()
        ));
        assert_eq!(parse_wal_segment_name(&wal_segment_name(42)), Some(42));
    }
}
