//! Databases made by `CREATE DATABASE`: a sorted JSON list in `<data_dir>/databases.json`,
//! rewritten atomically (temp → fsync → rename → fsync dir) before the statement answers.
//!
//! A database also exists once a point was written to it (the series catalog knows it);
//! this list adds the ones created empty, so `SHOW DATABASES` lists them as InfluxDB does.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::storage::parquet::{StorageError, write_atomically};
use crate::storage::paths::databases_file;

pub struct Databases {
    path: PathBuf,
    names: Mutex<BTreeSet<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatabasesError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "{path} is damaged ({source}); it lists the databases made by CREATE DATABASE: fix or delete it (data is not affected)"
    )]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Databases {
    /// Reads the list (none yet: empty).
    pub fn open(data_dir: &Path) -> Result<Databases, DatabasesError> {
        let path = databases_file(data_dir);
        let names = match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| DatabasesError::Damaged {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(StorageError::Io { path, source: e }.into()),
        };
        Ok(Databases {
            path,
            names: Mutex::new(names),
        })
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.names.lock().clone()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.lock().contains(name)
    }

    /// Adds `name` durably (nothing to do if listed).
    pub fn create(&self, name: &str) -> Result<(), DatabasesError> {
        let mut names = self.names.lock();
        if names.contains(name) {
            return Ok(());
        }
        let mut next = names.clone();
        next.insert(name.to_string());
        self.store(&next)?;
        *names = next;
        Ok(())
    }

    /// Removes `name` durably (nothing to do if not listed).
    pub fn remove(&self, name: &str) -> Result<(), DatabasesError> {
        let mut names = self.names.lock();
        if !names.contains(name) {
            return Ok(());
        }
        let mut next = names.clone();
        next.remove(name);
        self.store(&next)?;
        *names = next;
        Ok(())
    }

    fn store(&self, names: &BTreeSet<String>) -> Result<(), StorageError> {
        write_atomically(
            &self.path,
            &serde_json::to_vec_pretty(names).unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_databases_survive_a_reopen_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let d = Databases::open(dir.path()).unwrap();
        d.create("telegraf").unwrap();
        d.create("telegraf").unwrap();
        d.create("app").unwrap();
        let d = Databases::open(dir.path()).unwrap();
        assert_eq!(
            d.names().into_iter().collect::<Vec<_>>(),
            vec!["app", "telegraf"]
        );
        d.remove("app").unwrap();
        let d = Databases::open(dir.path()).unwrap();
        assert!(!d.contains("app") && d.contains("telegraf"));
        fs::write(databases_file(dir.path()), b"[\"x\"").unwrap();
        let err = Databases::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
