//! Rebuilding a lost or damaged manifest from the data files' own footers
//! (`meridian-compact --rebuild-manifest`).
//!
//! Every Parquet file Meridian writes carries, in its footer, the region, db, measurement,
//! partition start, time range, row count and WAL ranges it holds, and its Arrow schema gives
//! the columns. A rebuild reads each data file's footer (not its data), checks that it belongs
//! to this region, and writes a new manifest listing every file that does. A damaged manifest
//! is first moved aside (`manifest.json.damaged-<unix seconds>`), never deleted; files that
//! cannot be read or belong elsewhere are reported and left where they are, unlisted.
//!
//! Overlapping files are fine: queries and compaction merge them last-write-wins by file seq
//! (the seq is in each file's name), as they did before the manifest was lost.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::catalog::leftovers::{data_files, rel_path};
use crate::catalog::manifest::{ManifestError, Result, log_files};
use crate::catalog::{FileMeta, Manifest, WalRange};
use crate::model::PartitionStart;
use crate::storage::parquet::io_err;
use crate::storage::paths::{manifest_file, parse_data_file_name};
use crate::storage::schema::columns_of;
use crate::storage::schema::meta;

/// What a rebuild found.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Files listed in the new manifest.
    pub files: usize,
    pub rows: u64,
    /// Where the damaged manifest was moved, if there was one.
    pub moved_aside: Option<PathBuf>,
    /// Data files left out, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Whether a region's manifest needs a rebuild: missing beside data files, or unreadable.
pub fn needs_rebuild(region_dir: &Path) -> bool {
    Manifest::open(region_dir).is_err_and(|e| {
        matches!(
            e,
            ManifestError::Missing { .. } | ManifestError::Corrupt { .. }
        )
    })
}

/// Rebuilds the manifest of `region_dir` (region `region`) from its files' footers. Refuses
/// when the manifest is readable. `partition_duration_ns` places files written before the
/// partition start was in the footer.
pub fn rebuild_manifest(
    region_dir: &Path,
    region: &str,
    partition_duration_ns: i64,
) -> Result<Rebuilt> {
    let path = manifest_file(region_dir);
    let mut out = Rebuilt::default();
    match Manifest::open(region_dir) {
        Ok(m) => {
            return Err(ManifestError::Corrupt {
                path,
                reason: format!(
                    "it is readable ({} live files): refusing to rebuild it",
                    m.files().len()
                ),
            });
        }
        Err(ManifestError::Missing { .. }) | Err(ManifestError::Corrupt { .. }) => {}
        Err(e) => return Err(e),
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if path.exists() {
        let aside = path.with_file_name(format!(
            "{}.damaged-{secs}",
            crate::storage::paths::MANIFEST_FILE
        ));
        fs::rename(&path, &aside).map_err(io_err(&aside))?;
        out.moved_aside = Some(aside);
    }
    // Logs of edits go aside too (the new manifest starts without one): never deleted.
    for log in log_files(region_dir) {
        let name = log.file_name().map(|n| n.to_string_lossy().into_owned());
        let to = log.with_file_name(format!("{}.damaged-{secs}", name.unwrap_or_default()));
        fs::rename(&log, &to).map_err(io_err(&to))?;
    }
    let mut files: Vec<FileMeta> = Vec::new();
    for file in data_files(region_dir)? {
        match describe(region_dir, &file, region, partition_duration_ns) {
            Ok(f) => files.push(f),
            Err(reason) => out.skipped.push((file, reason)),
        }
    }
    // A delete rewrites a file under the same seq (`<seq>~<rewrite>.parquet`): the
    // newest version of each seq is the live one. Two files with one seq otherwise cannot
    // both be listed: keep neither silently, report both.
    let version =
        |f: &FileMeta| parse_data_file_name(Path::new(&f.path)).map_or((0, None), |(_, r)| (0, r));
    let mut by_seq: HashMap<u64, Vec<FileMeta>> = HashMap::new();
    for f in files {
        by_seq.entry(f.seq).or_default().push(f);
    }
    let mut files: Vec<FileMeta> = Vec::new();
    for (seq, mut group) in by_seq {
        group.sort_by_key(|f| version(f));
        let originals = group.iter().filter(|f| version(f).1.is_none()).count();
        if originals > 1 {
            for f in group {
                out.skipped.push((
                    region_dir.join(&f.path),
                    format!("another file has the same seq {seq}"),
                ));
            }
            continue;
        }
        let Some(newest) = group.pop() else { continue };
        for f in group {
            out.skipped.push((
                region_dir.join(&f.path),
                format!("an older version of seq {seq}, which a delete rewrote"),
            ));
        }
        files.push(newest);
    }
    files.sort_by_key(|f| f.seq);
    out.files = files.len();
    out.rows = files.iter().map(|f| f.rows).sum();
    Manifest::create(region_dir, files)?;
    Ok(out)
}

fn kv_of(md: &parquet::file::metadata::FileMetaData) -> HashMap<String, String> {
    md.key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The key-value metadata of a Parquet file's footer (reads the footer only).
pub fn footer_kv(file: &Path) -> std::result::Result<HashMap<String, String>, String> {
    let handle = File::open(file).map_err(|e| format!("cannot open: {e}"))?;
    let reader =
        SerializedFileReader::new(handle).map_err(|e| format!("unreadable footer: {e}"))?;
    Ok(kv_of(reader.metadata().file_metadata()))
}

/// A data file's manifest entry, from its footer.
fn describe(
    region_dir: &Path,
    file: &Path,
    region: &str,
    partition_duration_ns: i64,
) -> std::result::Result<FileMeta, String> {
    let (seq, _) = parse_data_file_name(file).ok_or("its name is not <seq>.parquet")?;
    let handle = File::open(file).map_err(|e| format!("cannot open: {e}"))?;
    let bytes = handle
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .len();
    let reader =
        SerializedFileReader::new(handle).map_err(|e| format!("unreadable footer: {e}"))?;
    let md = reader.metadata().file_metadata();
    let kv = kv_of(md);
    let kv: HashMap<&str, &str> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let key = |k: &str| {
        kv.get(k)
            .copied()
            .ok_or_else(|| format!("no {k} in the footer: not a Meridian file"))
    };
    let int = |k: &str| -> std::result::Result<i64, String> {
        key(k)?
            .parse::<i64>()
            .map_err(|e| format!("footer key {k}: {e}"))
    };
    let file_region = key(meta::REGION)?;
    if file_region != region {
        return Err(format!(
            "its footer says region {file_region:?}, not {region:?}"
        ));
    }
    let (min_time, max_time) = (int(meta::MIN_TIME)?, int(meta::MAX_TIME)?);
    if min_time > max_time {
        return Err(format!("footer time range {min_time} > {max_time}"));
    }
    let rows = match kv.get(meta::ROW_COUNT) {
        Some(v) => v
            .parse::<u64>()
            .map_err(|e| format!("footer key {}: {e}", meta::ROW_COUNT))?,
        None => u64::try_from(md.num_rows()).map_err(|_| "negative row count")?,
    };
    let partition_start = match kv.get(meta::PARTITION_START) {
        Some(v) => v
            .parse::<i64>()
            .map_err(|e| format!("footer key {}: {e}", meta::PARTITION_START))?,
        None => PartitionStart::of(min_time, partition_duration_ns).0,
    };
    let wal: Vec<WalRange> = match kv.get(meta::WAL) {
        Some(v) => serde_json::from_str(v).map_err(|e| format!("footer key {}: {e}", meta::WAL))?,
        None => Vec::new(),
    };
    let schema = parquet_to_arrow_schema(md.schema_descr(), md.key_value_metadata())
        .map_err(|e| format!("schema: {e}"))?;
    let columns = columns_of(&schema)?;
    Ok(FileMeta {
        seq,
        path: rel_path(region_dir, file),
        db: key(meta::DB)?.to_string(),
        measurement: key(meta::MEASUREMENT)?.to_string(),
        partition_start,
        min_time,
        max_time,
        rows,
        bytes,
        columns,
        wal,
    })
}
