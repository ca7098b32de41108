//! The manifest format before versioned edits (`manifest.json` plus `manifest.<gen>.log`
//! on a local disk), read once to migrate a data dir: [`read`] returns its state, and
//! [`files`] names its files so that the migration can delete them after the first
//! checkpoint of the new format is durable.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::storage::file_meta::FileMeta;
use crate::storage::paths::manifest_file;

#[derive(Debug, Default, Deserialize)]
pub struct LegacyData {
    pub files: Vec<FileMeta>,
    #[serde(default)]
    pub next_seq: u64,
    #[serde(default)]
    pub retired: Vec<String>,
    #[serde(default)]
    log_generation: u64,
}

#[derive(Deserialize)]
struct LogRecord {
    #[serde(default)]
    add: Vec<FileMeta>,
    #[serde(default)]
    remove: Vec<u64>,
    next_seq: u64,
}

/// The state of a legacy manifest in `region_dir`, `None` if there is none; `Err` names
/// what is damaged.
pub fn read(region_dir: &Path) -> Result<Option<LegacyData>, String> {
    let path = manifest_file(region_dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut data: LegacyData =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    data.files.sort_by_key(|f| f.seq);
    // The checkpoint's log, then any later one (a checkpoint whose rename a crash undid).
    let mut generation = data.log_generation;
    loop {
        let log = log_file(region_dir, generation);
        let text = match fs::read(&log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(format!("{}: {e}", log.display())),
        };
        let mut pos = 0;
        while let Some(end) = text[pos..].iter().position(|b| *b == b'\n') {
            let line = &text[pos..pos + end];
            match serde_json::from_slice::<LogRecord>(line) {
                Ok(r) => {
                    data.next_seq = data.next_seq.max(r.next_seq);
                    data.files.retain(|f| {
                        let gone = r.remove.contains(&f.seq);
                        if gone {
                            data.retired.push(f.path.clone());
                        }
                        !gone
                    });
                    data.files.extend(r.add);
                    data.files.sort_by_key(|f| f.seq);
                }
                // The last line, unreadable: a commit that never returned.
                Err(_) if pos + end + 1 == text.len() => break,
                Err(e) => return Err(format!("{} at byte {pos}: {e}", log.display())),
            }
            pos += end + 1;
        }
        generation += 1;
    }
    Ok(Some(data))
}

fn log_file(region_dir: &Path, generation: u64) -> PathBuf {
    region_dir.join(format!("manifest.{generation}.log"))
}

/// Every file of a legacy manifest in `region_dir`.
pub fn files(region_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(region_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_log = name
                .strip_prefix("manifest.")
                .and_then(|g| g.strip_suffix(".log"))
                .is_some_and(|g| g.parse::<u64>().is_ok());
            if is_log || name == crate::storage::paths::MANIFEST_FILE {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}
