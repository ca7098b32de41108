//! Files in a region directory that the manifest does not list, and what becomes of them.
//! Both the server at start-up and `meridian-compact` sweep with [`sweep_leftovers`]; the
//! WAL directory and the quarantine directory are never touched.
//!
//! Only a provable leftover is deleted:
//! - a temporary file (`.<name>.tmp`): a write interrupted before its rename;
//! - a file that a committed edit removed (the manifest's `retired` list): a compaction input
//!   or a dropped partition whose deletion was interrupted;
//! - a data file whose seq is at least the manifest's recorded next seq: written after the
//!   last committed edit, by a flush or compaction that never committed (its rows are still
//!   in the WAL, or in the files it was to replace);
//! - a flushed file whose footer's WAL ranges all start at or above the first record still
//!   in that shard's WAL: every row it holds is replayed from the WAL (flushes of several
//!   shards commit in any order, so an uncommitted file may have a lower seq than a committed
//!   one).
//!
//! Any other unlisted data file is moved, not deleted, to `<region>/.orphaned/<its path>`
//! with a warning, so that nothing a manifest lost is destroyed and readers of the hive
//! layout do not see it twice.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::catalog::manifest::{data_files, process_alive};
use crate::catalog::rebuild::footer_kv;
use crate::catalog::{Manifest, WalRange};
use crate::storage::parquet::{Result, io_err, sync_dir};
use crate::storage::paths::DataFileName;
#[cfg(test)]
use crate::storage::paths::ORPHANED_DIR as ORPHANED;
use crate::storage::paths::{self, is_temp_name};
use crate::storage::schema::meta;
use crate::storage::store::FileRef;

/// Shared storage, at a node's start-up: its own leftovers in the region's bucket, deleted.
/// A node's files take seqs from the ranges it reserved in the manifest (no other node
/// writes in them), so a data file with such a seq that the manifest neither lists nor
/// retired was written by this node's previous run and never recorded (killed between the
/// write and the edit): nothing can read or record it any more. Returns the paths deleted.
pub fn sweep_own_orphans(manifest: &Manifest, node: &str) -> Result<Vec<String>> {
    manifest
        .refresh()
        .map_err(|e| crate::storage::parquet::StorageError::Config(e.to_string()))?;
    let ranges: Vec<(u64, u64)> = manifest
        .shared()
        .reserved
        .iter()
        .filter(|r| r.node == node)
        .map(|r| (r.first, r.end))
        .collect();
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let files = manifest.files();
    let live: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let retired: HashSet<String> = manifest.retired().into_iter().collect();
    let store = manifest.store();
    let orphans: Vec<String> = data_files(store)?
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| !live.contains(rel.as_str()) && !retired.contains(rel))
        .filter(|rel| {
            paths::parse_data_file_seq(Path::new(rel))
                .is_some_and(|seq| ranges.iter().any(|(a, b)| (*a..*b).contains(&seq)))
        })
        .collect();
    if !orphans.is_empty() {
        store.delete(&orphans)?;
    }
    Ok(orphans)
}

/// What a sweep does (or, without `remove`, would do) with a leftover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Provably a leftover: deleted.
    Removed(&'static str),
    /// Unlisted but not provably a leftover: moved to this path.
    Quarantined(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub path: PathBuf,
    pub fate: Fate,
}

/// `path` relative to `base`, `/`-separated (the manifest's form).
pub fn rel_path(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|_| path.to_string_lossy().into_owned())
}

/// Temporary files under a region's local directory (but its WAL and quarantine): writes
/// interrupted before their rename, and uploads interrupted in the staging directory.
fn temp_files(local_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![local_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == local_dir => continue,
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let ft = entry.file_type().map_err(io_err(&path))?;
            if ft.is_dir() {
                // Not the WAL's, the quarantine's or the read cache's (it empties itself).
                // In the manifest's, only commits of dead writers: another writer's commit
                // may be in flight there.
                let skip = [paths::WAL_DIR, paths::ORPHANED_DIR, paths::CACHE_DIR];
                let top = dir == local_dir;
                if top && name == paths::MANIFEST_DIR {
                    found.extend(dead_commits(&path)?);
                } else if !(top && skip.contains(&name.as_str())) {
                    stack.push(path);
                }
            } else if is_temp_name(&name) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Temporary files of manifest commits (`.<name>.<pid>-<n>.tmp`) whose writing process no
/// longer runs on this host: a commit interrupted by a crash.
fn dead_commits(manifest_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(manifest_dir).map_err(io_err(manifest_dir))? {
        let entry = entry.map_err(io_err(manifest_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let writer = name
            .strip_suffix(".tmp")
            .filter(|_| is_temp_name(&name))
            .and_then(|n| n.rsplit_once('.'))
            .and_then(|(_, pid_n)| pid_n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok());
        if writer.is_some_and(|pid| !process_alive(pid)) {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Whether every WAL record a data file's footer says it holds is still in the WAL on disk
/// (at or above its shard's oldest segment), so replay brings all its rows back. False for
/// a file without WAL ranges (compaction outputs of old data) or an unreadable footer.
fn rows_still_in_wal(file: &FileRef, floors: &BTreeMap<usize, u64>) -> bool {
    let Ok(kv) = footer_kv(file) else {
        return false;
    };
    let Some(Ok(ranges)) = kv
        .get(meta::WAL)
        .map(|v| serde_json::from_str::<Vec<WalRange>>(v))
    else {
        return false;
    };
    !ranges.is_empty()
        && ranges
            .iter()
            .all(|r| floors.get(&r.shard).is_some_and(|f| r.min_seq >= *f))
}

/// Per WAL shard directory of a region, the first seq of its oldest segment: records
/// below it are gone from disk. Shards without segments are absent.
pub fn wal_floors(region_dir: &Path) -> Result<BTreeMap<usize, u64>> {
    let wal = region_dir.join(paths::WAL_DIR);
    let mut out = BTreeMap::new();
    let rd = match fs::read_dir(&wal) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(&wal)(e)),
    };
    for shard in rd {
        let shard = shard.map_err(io_err(&wal))?;
        let Some(n) = shard
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            continue;
        };
        let dir = shard.path();
        for seg in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let seg = seg.map_err(io_err(&dir))?;
            if let Some(first) = seg
                .file_name()
                .to_str()
                .and_then(paths::parse_wal_segment_name)
            {
                let e = out.entry(n).or_insert(first);
                *e = (*e).min(first);
            }
        }
    }
    Ok(out)
}

/// Who sweeps: the region's writer (a server starting, or a compactor holding the data
/// dir's lock), which may judge every file; or a compactor beside a live server, which
/// touches only what is provably its own business (retired files past their grace, outputs
/// of compactions that never committed): a file the server is writing or has just
/// flushed looks like a leftover to anyone but the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweeper {
    Owner,
    BesideServer,
}

/// The leftovers of a region (data files its manifest does not list, and temporary files
/// under its local directory `local_dir`, which holds its WAL) and their fate; with
/// `remove`, carries it out.
pub fn sweep_leftovers(
    manifest: &Manifest,
    local_dir: &Path,
    remove: bool,
    grace: std::time::Duration,
    who: Sweeper,
) -> Result<Vec<Leftover>> {
    let store = manifest.store();
    // Files first, then the manifest as it stands after: every file listed was written
    // after the lease of the compaction writing it was committed (or by a flush, which
    // commits after), so the refreshed state knows whether it is live, leased or a leftover.
    // In the other order, a compaction that took its lease and wrote an output between the
    // two looks like one that never committed, and its output would be deleted.
    let temps = match who {
        Sweeper::Owner => temp_files(local_dir)?,
        Sweeper::BesideServer => Vec::new(),
    };
    let stored = data_files(store)?;
    manifest
        .refresh()
        .map_err(|e| crate::storage::parquet::StorageError::Config(e.to_string()))?;
    let files = manifest.files();
    let live: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let retired_all = manifest.retired();
    let retired_all: HashSet<&str> = retired_all.iter().map(String::as_str).collect();
    let due = manifest.retired_due(grace);
    let retired: HashSet<&str> = due.iter().map(String::as_str).collect();
    let leased: HashSet<String> = manifest.leases().into_iter().map(|l| l.owner).collect();
    let floor = manifest.committed_next_seq();
    let wal = wal_floors(local_dir)?;
    let mut out = Vec::new();
    let mut touched: HashSet<PathBuf> = HashSet::new();
    for path in temps {
        // A compactor beside the server may be writing one: only those of a compaction
        // whose lease is over, and those of the server's own writes, go.
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name
            .as_deref()
            .is_some_and(|n| leased.iter().any(|o| n.contains(&format!("~c{o}-"))))
        {
            continue;
        }
        if remove {
            match fs::remove_file(&path) {
                Ok(()) => {}
                // Its writer finished or removed it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
            if let Some(parent) = path.parent() {
                touched.insert(parent.to_path_buf());
            }
        }
        out.push(Leftover {
            path,
            fate: Fate::Removed("temporary file of an interrupted write"),
        });
    }
    for (rel, len) in stored {
        let file = FileRef {
            store: store.clone(),
            rel: rel.clone(),
            len,
            row_group: None,
        };
        let name = paths::parse_data_file(Path::new(&rel));
        let fate = if live.contains(rel.as_str()) {
            continue;
        } else if retired_all.contains(rel.as_str()) && !retired.contains(rel.as_str()) {
            continue; // queries may still read it: its grace period is not over
        } else if retired.contains(rel.as_str()) {
            Fate::Removed("removed from the manifest by a committed edit")
        } else if let Some(DataFileName::Compacted(_, token)) = &name {
            if leased.contains(token) {
                continue; // a compaction still running beside us
            }
            Fate::Removed("output of a compaction that never committed")
        } else if who == Sweeper::BesideServer {
            continue; // the server's business
        } else if paths::parse_data_file_seq(Path::new(&rel)).is_some_and(|seq| seq >= floor) {
            Fate::Removed("written after the last committed manifest edit")
        } else if rows_still_in_wal(&file, &wal) {
            Fate::Removed("an uncommitted flush whose rows are all still in the WAL")
        } else {
            Fate::Quarantined(store.key_of(&format!("{}/{rel}", paths::ORPHANED_DIR)))
        };
        if remove {
            match &fate {
                Fate::Removed(_) => store.delete(std::slice::from_ref(&rel))?,
                Fate::Quarantined(_) => {
                    // Never over an earlier quarantined file of the same name.
                    let mut to = format!("{}/{rel}", paths::ORPHANED_DIR);
                    let mut n = 1;
                    while store.exists(&to)? {
                        to = format!("{}/{rel}.{n}", paths::ORPHANED_DIR);
                        n += 1;
                    }
                    store.rename(&rel, &to)?;
                }
            }
        }
        out.push(Leftover {
            path: store.key_of(&rel),
            fate,
        });
    }
    for dir in touched {
        sync_dir(&dir)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{FileMeta, ManifestEdit};
    use crate::storage::store::Store;
    use std::time::Duration;

    fn meta(seq: u64, rel: &str) -> FileMeta {
        FileMeta {
            seq,
            path: rel.into(),
            db: "db".into(),
            measurement: "cpu".into(),
            partition_start: 0,
            min_time: 0,
            max_time: 1,
            rows: 1,
            bytes: 1,
            columns: vec![],
            wal: vec![],
            packed: None,
        }
    }

    /// Shared storage: a node's start-up deletes the unlisted files in its own reserved
    /// seqs, and nothing of another node's, nor a listed file.
    #[test]
    fn a_node_sweeps_only_its_own_unrecorded_files_on_shared_storage() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let part = "db/cpu/part_day=2024-05-01";
        let name = |seq: u64| format!("{part}/{seq:020}.parquet");
        let a = Manifest::open(&Store::local(r)).unwrap();
        let b = Manifest::open(&Store::local(r)).unwrap();
        a.reserve_seqs("a", 100, 1).unwrap();
        b.reserve_seqs("b", 100, 1).unwrap();
        let (a1, a2, b1) = (a.next_file_seq(), a.next_file_seq(), b.next_file_seq());
        a.commit(ManifestEdit {
            add: vec![meta(a1, &name(a1))],
            ..ManifestEdit::default()
        })
        .unwrap();
        fs::create_dir_all(r.join(part)).unwrap();
        for seq in [a1, a2, b1] {
            fs::write(r.join(name(seq)), b"x").unwrap();
        }
        assert_eq!(sweep_own_orphans(&a, "a").unwrap(), vec![name(a2)]);
        assert!(r.join(name(a1)).exists() && r.join(name(b1)).exists());
        assert!(!r.join(name(a2)).exists());
        assert!(sweep_own_orphans(&b, "c").unwrap().is_empty());
    }

    #[test]
    fn only_provable_leftovers_are_deleted_the_rest_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let part = "db/cpu/part_day=2024-05-01";
        let name = |seq: u64| format!("{part}/{seq:020}.parquet");
        {
            let m = Manifest::open(&Store::local(r)).unwrap();
            for _ in 0..5 {
                m.next_file_seq();
            }
            m.commit(ManifestEdit {
                add: vec![meta(1, &name(1)), meta(5, &name(5))],
                ..ManifestEdit::default()
            })
            .unwrap();
            // A compaction swapped 5 out: its deletion is pending.
            m.commit(ManifestEdit {
                remove: vec![name(5)],
                ..ManifestEdit::default()
            })
            .unwrap();
        }
        fs::create_dir_all(r.join(part)).unwrap();
        fs::create_dir_all(r.join("wal/0")).unwrap();
        for seq in [1, 3, 5, 9] {
            fs::write(r.join(name(seq)), b"x").unwrap();
        }
        fs::write(r.join(part).join(".x.parquet.tmp"), b"x").unwrap();
        fs::write(r.join(part).join("notes.txt"), b"x").unwrap();
        fs::write(r.join("wal/0/.odd.tmp"), b"x").unwrap();
        // Commits in flight: one of a process that died (removed), one of a live one.
        let commit = |pid: u32| format!("_manifest/.00000000000000000009.edit.json.{pid}-3.tmp");
        let (dead, live) = (commit(2_000_000_000), commit(std::process::id()));
        fs::write(r.join(&dead), b"x").unwrap();
        fs::write(r.join(&live), b"x").unwrap();
        let m = Manifest::open(&Store::local(r)).unwrap();
        assert_eq!(m.committed_next_seq(), 6);
        let dry = sweep_leftovers(&m, r, false, Duration::ZERO, Sweeper::Owner).unwrap();
        let fates: Vec<(String, Fate)> = dry
            .iter()
            .map(|l| (rel_path(r, &l.path), l.fate.clone()))
            .collect();
        assert_eq!(
            fates,
            vec![
                (
                    dead.clone(),
                    Fate::Removed("temporary file of an interrupted write")
                ),
                (
                    format!("{part}/.x.parquet.tmp"),
                    Fate::Removed("temporary file of an interrupted write")
                ),
                (name(3), Fate::Quarantined(r.join(ORPHANED).join(name(3)))),
                (
                    name(5),
                    Fate::Removed("removed from the manifest by a committed edit")
                ),
                (
                    name(9),
                    Fate::Removed("written after the last committed manifest edit")
                ),
            ]
        );
        assert!(r.join(name(9)).exists(), "a dry sweep changes nothing");
        sweep_leftovers(&m, r, true, Duration::ZERO, Sweeper::Owner).unwrap();
        assert!(r.join(name(1)).exists() && r.join(part).join("notes.txt").exists());
        for seq in [3, 5, 9] {
            assert!(!r.join(name(seq)).exists(), "{seq}");
        }
        assert!(
            r.join(ORPHANED).join(name(3)).exists(),
            "moved, not deleted"
        );
        assert!(r.join("wal/0/.odd.tmp").exists(), "the WAL is not ours");
        assert!(!r.join(&dead).exists() && r.join(&live).exists());
        fs::remove_file(r.join(&live)).unwrap();
        assert!(
            sweep_leftovers(&m, r, true, Duration::ZERO, Sweeper::Owner)
                .unwrap()
                .is_empty()
        );
        // A checkpoint forgets retired paths that are gone.
        m.checkpoint_now().unwrap();
        assert!(m.retired().is_empty());
    }

    fn assert_refused_as_corrupt(r: &Path) {
        let msg = Manifest::open(&Store::local(r))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            msg.contains("corrupt") && msg.contains("--rebuild-manifest"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_manifest_beside_data_files_refuses_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let f = r.join("db/cpu/part_day=2024-05-01/00000000000000000001.parquet");
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, b"x").unwrap();
        let err = Manifest::open(&Store::local(r)).err().expect("refused");
        let msg = err.to_string();
        assert!(
            msg.contains("missing") && msg.contains("--rebuild-manifest"),
            "{msg}"
        );
        assert!(f.exists());
        assert!(!r.join(crate::storage::paths::MANIFEST_DIR).exists());
        // A damaged checkpoint says the same.
        let cp = r.join(crate::storage::paths::manifest_checkpoint_rel(0));
        fs::create_dir_all(cp.parent().unwrap()).unwrap();
        fs::write(&cp, b"{\"format\":2,\"vers").unwrap();
        assert_refused_as_corrupt(r);
        fs::remove_dir_all(cp.parent().unwrap()).unwrap();
        // And a damaged manifest of the previous format.
        fs::write(
            crate::storage::paths::manifest_file(r),
            b"{\"version\":1,\"fi",
        )
        .unwrap();
        assert_refused_as_corrupt(r);
        assert!(f.exists());
    }
}
