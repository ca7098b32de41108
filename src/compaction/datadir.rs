//! The data dir as the compactor sees it: the server's lock, the regions, their manifests,
//! the WAL positions, and leftovers of interrupted writes.
//!
//! Invariants: offline, [`DataDir::open`] takes `DATA/meridian.lock` with the same `flock`
//! the server takes (`File::try_lock`) and keeps it until the `DataDir` is dropped, so a
//! server cannot start while compaction runs; beside a running server it takes no lock and
//! sweeps only what is provably a compactor's leftover. The WAL directory is never touched.

use std::collections::HashSet;
use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use crate::catalog::leftovers;
use crate::catalog::{FileMeta, Manifest};
use crate::config::Config;
use crate::model::is_safe_name;
use crate::storage::paths;
use crate::storage::store::Store;

use super::plan::{check_layout, infer_partition_duration};
use super::{CompactionError, Result, io_err};

/// One region: its local directory (WAL), its manifest (over its store) and the token of
/// this run (names its outputs and its leases).
pub struct RegionDir {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: std::sync::Arc<Manifest>,
    pub token: String,
    /// Beside a live server, only provable leftovers of compactions are touched.
    pub sweeper: leftovers::Sweeper,
    /// The server's region on shared storage: retention and rollups run on the node that
    /// holds its flush lease only (`None`: always).
    pub shared: Option<std::sync::Arc<crate::region::shared::SharedLog>>,
}

/// A token unique to one compaction run: time and process id, in hex.
pub fn run_token() -> String {
    format!(
        "{:x}{:x}",
        crate::catalog::manifest::now_ns(),
        std::process::id()
    )
}

/// A locked data dir.
pub struct DataDir {
    path: PathBuf,
    regions: Vec<RegionDir>,
    partition_duration_ns: i64,
    inferred: bool,
    /// How long retired files stay for queries of a live server (0 offline).
    grace: std::time::Duration,
    _lock: Option<File>,
}

/// Beside a live server: how long replaced files stay after the edit that retired them,
/// when the config does not give the server's query timeout.
pub const LIVE_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// Where the partition duration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationSource {
    /// `--partition-duration` or the config.
    Given,
    /// Guessed from the directory depth of the files and checked against them.
    Inferred,
}

/// Takes the data-dir lock without blocking.
pub fn lock(data_dir: &Path) -> Result<File> {
    let lock_path = paths::lock_file(data_dir);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(CompactionError::Locked {
            data_dir: data_dir.to_path_buf(),
            lock: lock_path,
        }),
        Err(TryLockError::Error(e)) => Err(io_err(&lock_path)(e)),
    }
}

/// Region directories under the data dir: safe names holding a manifest or a WAL, sorted.
pub fn discover_regions(data_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(data_dir).map_err(io_err(data_dir))? {
        let e = e.map_err(io_err(data_dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if !path.is_dir() || !is_safe_name(&name) {
            continue;
        }
        if paths::manifest_file(&path).is_file()
            || path.join(paths::MANIFEST_DIR).is_dir()
            || path.join(paths::WAL_DIR).is_dir()
        {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

pub use crate::catalog::leftovers::wal_floors;

/// Leftovers of interrupted writes under a region (see `catalog::leftovers`: provable ones
/// are deleted, other unlisted files moved to the quarantine directory). Retired files go
/// only once `grace` has passed since their removal (queries of a live server may still
/// read them).
pub fn sweep_leftovers(
    region: &RegionDir,
    remove: bool,
    grace: std::time::Duration,
) -> Result<Vec<PathBuf>> {
    Ok(
        leftovers::sweep_leftovers(&region.manifest, &region.dir, remove, grace, region.sweeper)?
            .into_iter()
            .map(|l| l.path)
            .collect(),
    )
}

impl DataDir {
    /// Locks the data dir, opens the manifests of the regions (all, or those named), and
    /// settles the partition duration: `partition_duration_ns` if given, else inferred from
    /// the files ([`infer_partition_duration`]). Either way every file must fit it
    /// ([`check_layout`]), or nothing is done.
    pub fn open(
        path: &Path,
        only_regions: &[String],
        partition_duration_ns: Option<i64>,
        config: Option<&Config>,
        live: bool,
    ) -> Result<DataDir> {
        if !path.is_dir() {
            return Err(CompactionError::NoDataDir(path.to_path_buf()));
        }
        // Offline, the server's lock keeps a server from starting meanwhile; beside a live
        // server the manifest's commits and leases keep both right instead.
        let lock = if live { None } else { Some(lock(path)?) };
        let found: Vec<(String, PathBuf)> = match config {
            Some(c) => c
                .routing
                .regions
                .iter()
                .map(|r| (r.name.clone(), paths::region_dir(path, &r.name)))
                .collect(),
            None => discover_regions(path)?,
        };
        for r in only_regions {
            if !found.iter().any(|(n, _)| n == r) {
                return Err(CompactionError::UnknownRegion {
                    region: r.clone(),
                    data_dir: path.to_path_buf(),
                    found: found
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let token = run_token();
        let mut regions = Vec::new();
        let mut shared_any = false;
        for (name, dir) in found {
            if !only_regions.is_empty() && !only_regions.contains(&name) {
                continue;
            }
            let rc = config.and_then(|c| {
                c.routing
                    .regions
                    .iter()
                    .find(|r| r.name == name)
                    .map(|r| (r, &c.s3))
            });
            // Shared storage: the region's nodes elsewhere write beside us, whether or not
            // a server holds this data dir.
            let shared = rc.is_some_and(|(r, _)| r.shared_storage);
            let beside = live || shared;
            shared_any |= shared;
            let store = match rc {
                // The read cache belongs to the server of the data dir (one per directory):
                // the compactor reads whole files and keeps none.
                Some((rc, s3)) => Store::for_region(
                    path,
                    rc,
                    &crate::config::S3Config {
                        cache_bytes: 0,
                        ..s3.clone()
                    },
                )?,
                None => Store::local(&dir),
            };
            let manifest = std::sync::Arc::new(Manifest::open(&store)?);
            regions.push(RegionDir {
                name,
                dir,
                manifest,
                token: token.clone(),
                shared: None,
                sweeper: if beside {
                    leftovers::Sweeper::BesideServer
                } else {
                    leftovers::Sweeper::Owner
                },
            });
        }
        let all: Vec<FileMeta> = regions
            .iter()
            .flat_map(|r| r.manifest.files().iter().cloned().collect::<Vec<_>>())
            .collect();
        let (pd, inferred) = match partition_duration_ns {
            Some(d) => (d, false),
            // No files: nothing will be planned; any positive duration will do.
            None => (
                infer_partition_duration(&all)?.unwrap_or(super::plan::HOUR_NS),
                true,
            ),
        };
        check_layout(&all, pd)?;
        Ok(DataDir {
            path: path.to_path_buf(),
            regions,
            partition_duration_ns: pd,
            inferred,
            grace: if live || shared_any {
                config.map_or(LIVE_GRACE, |c| {
                    c.query.timeout + std::time::Duration::from_secs(30)
                })
            } else {
                std::time::Duration::ZERO
            },
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn regions(&self) -> &[RegionDir] {
        &self.regions
    }

    /// How long retired files stay before a run deletes them.
    pub fn grace(&self) -> std::time::Duration {
        self.grace
    }

    pub fn partition_duration_ns(&self) -> i64 {
        self.partition_duration_ns
    }

    pub fn duration_source(&self) -> DurationSource {
        if self.inferred {
            DurationSource::Inferred
        } else {
            DurationSource::Given
        }
    }
}

impl RegionDir {
    /// Paths (relative to the region dir) of the live files.
    pub fn live_paths(&self) -> HashSet<String> {
        self.manifest
            .files()
            .iter()
            .map(|f| f.path.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).expect_err("second lock must fail");
        assert!(matches!(err, CompactionError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("running Meridian server"), "{err}");
        drop(held);
        lock(dir.path()).unwrap();
    }

    #[test]
    fn wal_floors_and_region_discovery() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("eu");
        fs::create_dir_all(r.join("wal/0")).unwrap();
        fs::create_dir_all(r.join("wal/1")).unwrap();
        fs::create_dir_all(r.join("wal/2")).unwrap();
        for (s, seq) in [(0, 40u64), (0, 7), (1, 3)] {
            fs::write(
                r.join(format!("wal/{s}/{}", paths::wal_segment_name(seq))),
                b"",
            )
            .unwrap();
        }
        let floors = wal_floors(&r).unwrap();
        assert_eq!(floors, std::collections::BTreeMap::from([(0, 7), (1, 3)]));
        assert!(wal_floors(&dir.path().join("none")).unwrap().is_empty());
        fs::create_dir_all(dir.path().join("not a region")).unwrap();
        fs::create_dir_all(dir.path().join("empty")).unwrap();
        fs::create_dir_all(dir.path().join("us")).unwrap();
        fs::write(dir.path().join("us/manifest.json"), b"{}").unwrap();
        let names: Vec<String> = discover_regions(dir.path())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec!["eu", "us"]);
    }
}
