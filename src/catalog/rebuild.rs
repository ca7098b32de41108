//! Rebuilding a lost or damaged manifest from the data files' own footers
//! (`meridian-compact --rebuild-manifest`).
//!
//! Every Parquet file Meridian writes carries, in its footer, the region, db, measurement,
//! partition start, time range, row count and WAL ranges it holds, and its Arrow schema gives
//! the columns. A rebuild reads each data file's footer (not its data), checks that it belongs
//! to this region, and writes a new manifest listing every file that does. A damaged manifest
//! is first moved aside (`_manifest/` to `_manifest.damaged-<unix seconds>/`, a manifest of the
//! previous format to `manifest.json.damaged-<unix seconds>`), never deleted; files that
//! cannot be read or belong elsewhere are reported and left where they are, unlisted.
//!
//! A packed file's footer lists its measurements, each an entry. Files a later write
//! replaced (named in another footer's `meridian.replaces`) are left out; other overlapping
//! files are fine: queries and compaction merge them last-write-wins by file seq (in each
//! file's name or packed entry), as they did before the manifest was lost.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::catalog::legacy;
use crate::catalog::manifest::{ManifestError, Result, data_files};
use crate::catalog::{FileMeta, Manifest, WalRange};
use crate::model::PartitionStart;
use crate::storage::packed::Replacing;
use crate::storage::parquet::{io_err, read_footer};
use crate::storage::paths::{DataFileName, MANIFEST_DIR, parse_data_file};
use crate::storage::schema::columns_of;
use crate::storage::schema::meta;
use crate::storage::store::{FileRef, Store};

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
/// Any other error (the store cannot be reached) is returned, not taken for "readable".
pub fn needs_rebuild(store: &Store) -> Result<bool> {
    match Manifest::open(store) {
        Ok(_) => Ok(false),
        Err(ManifestError::Missing { .. } | ManifestError::Corrupt { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Rebuilds the manifest of a region's store (region `region`) from its files' footers.
/// Refuses when the manifest is readable. `partition_duration_ns` places files written
/// before the partition start was in the footer.
pub fn rebuild_manifest(
    store: &Store,
    region: &str,
    partition_duration_ns: i64,
) -> Result<Rebuilt> {
    let mut out = Rebuilt::default();
    match Manifest::open(store) {
        Ok(m) => {
            return Err(ManifestError::Corrupt {
                path: store.key_of(MANIFEST_DIR),
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
    // What is left of the manifest goes aside, never deleted.
    let aside = format!("{MANIFEST_DIR}.damaged-{secs}");
    let mut moved = false;
    for (rel, _) in store.list(MANIFEST_DIR)? {
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        store.rename(&rel, &format!("{aside}/{name}"))?;
        moved = true;
    }
    if moved {
        out.moved_aside = Some(store.key_of(&aside));
    }
    if let Some(root) = store.local_root() {
        for old in legacy::files(root) {
            let name = old.file_name().map(|n| n.to_string_lossy().into_owned());
            let to = old.with_file_name(format!("{}.damaged-{secs}", name.unwrap_or_default()));
            fs::rename(&old, &to).map_err(io_err(&to))?;
            out.moved_aside.get_or_insert(to);
        }
    }
    let mut files: Vec<Replacing> = Vec::new();
    let stored = data_files(store)?;
    let mut next_seq = stored
        .iter()
        .filter_map(|(rel, _)| crate::storage::paths::parse_data_file_seq(Path::new(rel)))
        .max()
        .map_or(1, |s| s.saturating_add(1));
    for (rel, len) in stored {
        let file = FileRef {
            store: store.clone(),
            rel,
            len,
            row_group: None,
        };
        match describe(&file, region, partition_duration_ns) {
            Ok(f) => files.extend(f),
            Err(reason) => out.skipped.push((file.key(), reason)),
        }
    }
    // Above every seq used, a packed entry's (in its footer) too.
    for (f, _) in &files {
        next_seq = next_seq.max(f.seq.saturating_add(1));
    }
    // Every file written since footers name what they replaced (`meridian.replaces`: a
    // delete's rewrite its source, the last output of a compaction its inputs (a run that
    // died before it replaced nothing), a tombstone the files it stands for, a packed
    // entry the entry it was rewritten from) leaves those out: what is left is what the
    // lost manifest listed, whatever is still on disk.
    let replaced: std::collections::HashSet<String> = files
        .iter()
        .flat_map(|(_, r)| r.iter().flatten().cloned())
        .collect();
    // Files written before that key, per seq (a delete rewrites a file under the same seq,
    // `<seq>~<rewrite>.parquet`; a compaction writes its outputs under the highest seq of
    // its inputs, `<seq>~c<token>-<n>.parquet`): the newest version is live (the outputs
    // of the compaction, all of them; the rewrite with the highest rewrite seq). Two
    // flushed files with one seq cannot both be listed: keep neither silently, report both.
    let mut by_seq: HashMap<u64, Vec<(FileMeta, bool)>> = HashMap::new();
    for (f, r) in files {
        if replaced.contains(f.id().as_ref()) {
            let what = match f.packed {
                Some(p) => format!("its row group {} was", p.row_group),
                None => "it was".to_string(),
            };
            out.skipped.push((
                store.key_of(&f.path),
                format!("{what} replaced by a later write (a delete, a compaction)"),
            ));
            continue;
        }
        by_seq.entry(f.seq).or_default().push((f, r.is_some()));
    }
    let mut files: Vec<FileMeta> = Vec::new();
    for (seq, group) in by_seq {
        // Files that name what they replaced are kept (what they replaced is out already);
        // the older rule decides among the others.
        let (named, group): (Vec<_>, Vec<_>) = group.into_iter().partition(|(_, named)| *named);
        files.extend(named.into_iter().map(|(f, _)| f));
        if group.is_empty() {
            continue;
        }
        let group: Vec<FileMeta> = group.into_iter().map(|(f, _)| f).collect();
        let name = |f: &FileMeta| parse_data_file(Path::new(&f.path));
        let flushed = group
            .iter()
            .filter(|f| matches!(name(f), Some(DataFileName::Flushed(_))))
            .count();
        if flushed > 1 {
            for f in group {
                out.skipped.push((
                    store.key_of(&f.path),
                    format!("another file has the same seq {seq}"),
                ));
            }
            continue;
        }
        let compacted: Vec<&FileMeta> = group
            .iter()
            .filter(|f| matches!(name(f), Some(DataFileName::Compacted(..))))
            .collect();
        let keep: Vec<FileMeta> = if let Some(first) = compacted.first() {
            // One compaction's outputs (the first token found; another's is reported).
            let token = match name(first) {
                Some(DataFileName::Compacted(_, t)) => t,
                _ => String::new(),
            };
            group
                .iter()
                .filter(|f| matches!(name(f), Some(DataFileName::Compacted(_, t)) if t == token))
                .cloned()
                .collect()
        } else {
            let newest = group
                .iter()
                .max_by_key(|f| match name(f) {
                    Some(DataFileName::Rewritten(_, r)) => r,
                    _ => 0,
                })
                .cloned();
            newest.into_iter().collect()
        };
        for f in &group {
            if !keep.iter().any(|k| k.id() == f.id()) {
                out.skipped.push((
                    store.key_of(&f.path),
                    format!("an older version of seq {seq}, which a delete or compaction replaced"),
                ));
            }
        }
        files.extend(keep);
    }
    files.sort_by_key(|f| f.seq);
    out.files = files.len();
    out.rows = files.iter().map(|f| f.rows).sum();
    Manifest::create(store, files, next_seq)?;
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
pub fn footer_kv(file: &FileRef) -> std::result::Result<HashMap<String, String>, String> {
    let md = read_footer(file).map_err(|e| format!("unreadable footer: {e}"))?;
    Ok(kv_of(md.file_metadata()))
}

/// A data file's manifest entries (a packed file's: one per measurement), each with the
/// entries it replaced (`meridian.replaces`; `None` where the footer predates the key),
/// from its footer.
fn describe(
    file: &FileRef,
    region: &str,
    partition_duration_ns: i64,
) -> std::result::Result<Vec<Replacing>, String> {
    let seq = parse_data_file(Path::new(&file.rel))
        .ok_or("its name is not <seq>.parquet")?
        .seq();
    let bytes = file.len;
    let footer = read_footer(file).map_err(|e| format!("unreadable footer: {e}"))?;
    let md = footer.file_metadata();
    if crate::storage::packed::parts_of(md).is_some() {
        let file_region = crate::storage::schema::footer_value(md, meta::REGION);
        if file_region != Some(region) {
            return Err(format!(
                "its footer says region {file_region:?}, not {region:?}"
            ));
        }
        return crate::storage::packed::entries(&footer, &file.rel, bytes);
    }
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
    let schema = crate::storage::schema::file_schema(md)?;
    let columns = columns_of(&schema)?;
    let replaces: Option<Vec<String>> = match kv.get(meta::REPLACES) {
        Some(v) => Some(
            serde_json::from_str(v).map_err(|e| format!("footer key {}: {e}", meta::REPLACES))?,
        ),
        None => None,
    };
    Ok(vec![(
        FileMeta {
            seq,
            path: file.rel.clone(),
            db: key(meta::DB)?.to_string(),
            measurement: key(meta::MEASUREMENT)?.to_string(),
            partition_start,
            min_time,
            max_time,
            rows,
            bytes,
            columns,
            wal,
            packed: None,
        },
        replaces,
    )])
}
