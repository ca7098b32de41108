//! The routing versions of a data dir outside cluster mode: `<data_dir>/routing.json`.
//!
//! At start-up the routing of regions.toml is compared with the latest recorded version.
//! When it changed (a `[directory]` entry moved, a region's geography changed, a region
//! added) it is recorded as a new version, in force from the later of now and the newest
//! point this node holds: points already stored keep the version that routed them, so a
//! query still finds them and a rewrite of one lands where the original is (last write
//! wins). A data dir from before versions were recorded starts with the config's routing
//! as version 1, in force from the beginning of time.
//!
//! The file is replaced atomically (`storage::parquet::write_atomically`) before the
//! server accepts traffic. Cluster mode keeps its versions in JetStream KV instead.

use std::path::Path;

use crate::config::RoutingConfig;
use crate::routing::{History, HistoryError, Rules};
use crate::storage::parquet::write_atomically;
use crate::storage::paths::routing_file;

/// What start-up found and did.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// No file: the config's routing was recorded as version 1, in force from the
    /// beginning of time; `had_data`: points were stored already (a data dir from before
    /// versions, or a deleted file: they are assumed routed by this config).
    Started { had_data: bool },
    /// The config's routing is the latest version.
    Unchanged,
    /// The config's routing was recorded as this version, in force from this time.
    Recorded { number: u64, effective_from: i64 },
}

/// Reads the data dir's versions, records the config's routing if it changed, and returns
/// every version. `newest_point_ns`: the latest timestamp this node holds (files, WAL).
pub fn open(
    data_dir: &Path,
    cfg: &RoutingConfig,
    newest_point_ns: Option<i64>,
    now_ns: i64,
) -> Result<(History, Outcome), String> {
    let path = routing_file(data_dir);
    let rules = Rules::from_config(cfg);
    let stored = match std::fs::read(&path) {
        Ok(bytes) => Some(History::parse(&bytes).map_err(|e| {
            format!(
                "{} is damaged ({e}); it records which routing was in force when: restore it from a backup (deleting it makes regions.toml's routing apply to all stored data)",
                path.display()
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let (history, outcome) = match stored {
        None => (
            History::first(&rules, now_ns),
            Outcome::Started {
                had_data: newest_point_ns.is_some(),
            },
        ),
        Some(mut h) => {
            let last_from = h.latest().map_or(i64::MIN, |v| v.effective_from);
            let from = now_ns
                .max(newest_point_ns.map_or(i64::MIN, |t| t.saturating_add(1)))
                .max(last_from.saturating_add(1));
            match h.push(&rules, from, now_ns) {
                Ok(v) => {
                    let outcome = Outcome::Recorded {
                        number: v.number,
                        effective_from: v.effective_from,
                    };
                    (h, outcome)
                }
                Err(HistoryError::Unchanged(_)) => return Ok((h, Outcome::Unchanged)),
                Err(e) => return Err(format!("recording the routing of regions.toml: {e}")),
            }
        }
    };
    write_atomically(&path, &history.to_json())
        .map_err(|e| format!("recording the routing versions: {e}"))?;
    Ok((history, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cfg(directory: &str) -> Config {
        Config::parse(&format!(
            "data_dir = \"d\"\npartition_duration = \"1h\"\ndefault_region = \"b\"\n[[region]]\nname = \"a\"\n[[region]]\nname = \"b\"\n[directory]\n{directory}\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_changed_config_is_recorded_after_the_newest_point() {
        let dir = tempfile::tempdir().unwrap();
        let one = cfg("");
        let (h, o) = open(dir.path(), &one.routing, None, 100).unwrap();
        assert_eq!(
            (h.versions.len(), o),
            (1, Outcome::Started { had_data: false })
        );
        let (_, o) = open(dir.path(), &one.routing, Some(500), 200).unwrap();
        assert_eq!(o, Outcome::Unchanged);
        let two = cfg("\"tenant=acme\" = \"a\"");
        let (h, o) = open(dir.path(), &two.routing, Some(500), 300).unwrap();
        assert_eq!(
            o,
            Outcome::Recorded {
                number: 2,
                effective_from: 501
            }
        );
        assert_eq!(h.versions.len(), 2);
        // Back to the first rules: a third version, after the second.
        let (h, o) = open(dir.path(), &one.routing, None, 400).unwrap();
        assert_eq!(
            o,
            Outcome::Recorded {
                number: 3,
                effective_from: 502
            }
        );
        let read = History::parse(&std::fs::read(routing_file(dir.path())).unwrap()).unwrap();
        assert_eq!(read, h);
        std::fs::write(routing_file(dir.path()), b"{").unwrap();
        let e = open(dir.path(), &one.routing, None, 500).unwrap_err();
        assert!(e.contains("routing.json is damaged"), "{e}");
    }
}
