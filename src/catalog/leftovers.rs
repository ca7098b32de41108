//! Leftovers of interrupted writes in a region directory: temporary files (names starting
//! with `.` and ending in `.tmp`) and Parquet files the manifest does not list. Both the
//! server at start-up and `meridian-compact` remove them with [`sweep_leftovers`]; the WAL
//! directory is never touched.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::storage::parquet::{Result, io_err, sync_dir};
use crate::storage::paths::{self, is_temp_name};

/// `path` relative to `base`, `/`-separated (the manifest's form).
pub fn rel_path(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|_| path.to_string_lossy().into_owned())
}

/// Temporary files and Parquet files not in `live` (paths relative to `region_dir`) under a
/// region, not its WAL. With `remove`, deletes them and fsyncs their directories. Returns
/// them, sorted.
pub fn sweep_leftovers(
    region_dir: &Path,
    live: &HashSet<String>,
    remove: bool,
) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![region_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut removed_here = false;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let ft = entry.file_type().map_err(io_err(&path))?;
            if ft.is_dir() {
                if !(dir == region_dir && name == paths::WAL_DIR) {
                    stack.push(path);
                }
                continue;
            }
            let orphan = name.ends_with(&format!(".{}", paths::PARQUET_EXT))
                && !live.contains(&rel_path(region_dir, &path));
            if is_temp_name(&name) || orphan {
                if remove {
                    fs::remove_file(&path).map_err(io_err(&path))?;
                    removed_here = true;
                }
                found.push(path);
            }
        }
        if removed_here {
            sync_dir(&dir)?;
        }
    }
    found.sort();
    Ok(found)
}
