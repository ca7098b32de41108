//! The cache of file indexes ([`IndexCache`]): least recently used evicted beyond a byte
//! budget, one build per file at a time, and beside it the decoded page cache that
//! selective reads through those indexes fill. Flush fills it with the files it writes;
//! queries read it: it belongs to storage, below both.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::file_meta::FileMeta;
use super::index::FileIndex;
use super::pages::PageCache;
use super::store::FileRef;

struct Entry {
    seq: u64,
    size: u64,
    index: Arc<FileIndex>,
    used: u64,
}

/// An index being built; a second caller waits for it instead of building it again (the
/// start-up warm-up and the first queries ask for the same newest files).
type Building = Arc<OnceLock<Result<Arc<FileIndex>, String>>>;

#[derive(Default)]
struct Inner {
    /// Keyed by the path's bytes: hashing an `OsString` hashes one slice, while a `Path`
    /// hashes component by component (~10% of a one-host query's CPU, measured).
    map: HashMap<OsString, Entry>,
    building: HashMap<(PathBuf, u64, u64), Building>,
    bytes: usize,
    tick: u64,
}

impl Inner {
    /// The cached index of this very file (same manifest seq and size), marked as used.
    fn hit(&mut self, path: &Path, meta: &FileMeta) -> Option<Arc<FileIndex>> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.map.get_mut(path.as_os_str())?;
        if e.seq != meta.seq || e.size != meta.bytes {
            return None;
        }
        e.used = tick;
        Some(e.index.clone())
    }
}

/// File indexes, least recently used evicted beyond a byte budget; and the decoded pages
/// that selective reads through them touched.
pub struct IndexCache {
    budget: usize,
    inner: Mutex<Inner>,
    pages: PageCache,
}

impl IndexCache {
    /// `budget` bounds the indexes, `page_budget` the decoded pages (0: no page cache).
    pub fn new(budget: u64, page_budget: u64) -> IndexCache {
        IndexCache {
            budget: usize::try_from(budget).unwrap_or(usize::MAX),
            inner: Mutex::new(Inner::default()),
            pages: PageCache::new(page_budget),
        }
    }

    /// The decoded page cache.
    pub fn pages(&self) -> &PageCache {
        &self.pages
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The cache holds no invariant a panic elsewhere could break halfway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index of a file of the manifest, built (outside the lock, once) if not cached.
    pub fn get(&self, file: &FileRef, meta: &FileMeta) -> Result<Arc<FileIndex>, String> {
        let path_buf = file.key();
        let path = path_buf.as_path();
        let (key, cell) = {
            let mut inner = self.lock();
            if let Some(index) = inner.hit(path, meta) {
                return Ok(index);
            }
            let key = (path.to_path_buf(), meta.seq, meta.bytes);
            let cell = inner.building.entry(key.clone()).or_default().clone();
            (key, cell)
        };
        let built = cell
            .get_or_init(|| FileIndex::build(file).map(Arc::new))
            .clone();
        let mut inner = self.lock();
        if inner
            .building
            .get(&key)
            .is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            inner.building.remove(&key);
        }
        let index = built?;
        if inner
            .map
            .get(path.as_os_str())
            .is_some_and(|e| Arc::ptr_eq(&e.index, &index))
        {
            return Ok(index);
        }
        self.put(&mut inner, path, meta, index.clone());
        Ok(index)
    }

    /// The index of a file if it is cached (never builds it).
    pub fn cached(&self, file: &FileRef, meta: &FileMeta) -> Option<Arc<FileIndex>> {
        self.lock().hit(&file.key(), meta)
    }

    /// Adds the index of a file just written (a flush knows its rows: nothing is read back
    /// but the footer), so that the first query of the file does not build it.
    pub fn insert(&self, file: &FileRef, meta: &FileMeta, index: FileIndex) {
        let path_buf = file.key();
        let path = path_buf.as_path();
        let mut inner = self.lock();
        // A query may have built it meanwhile: keep that one (pages are cached under its id).
        if inner.hit(path, meta).is_some() {
            return;
        }
        self.put(&mut inner, path, meta, Arc::new(index));
    }

    /// Stores an index, evicting the least recently used beyond the budget.
    fn put(&self, inner: &mut Inner, path: &Path, meta: &FileMeta, index: Arc<FileIndex>) {
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(old) = inner.map.insert(
            path.as_os_str().to_os_string(),
            Entry {
                seq: meta.seq,
                size: meta.bytes,
                index: index.clone(),
                used: tick,
            },
        ) {
            inner.bytes -= old.index.bytes;
        }
        inner.bytes += index.bytes;
        while inner.bytes > self.budget && inner.map.len() > 1 {
            let Some(victim) = inner
                .map
                .iter()
                .filter(|(p, _)| p.as_os_str() != path.as_os_str())
                .min_by_key(|(_, e)| e.used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some(e) = inner.map.remove(&victim) {
                inner.bytes -= e.index.bytes;
            }
        }
    }

    /// Indexes being built right now (tests: none is left behind).
    #[cfg(test)]
    pub(crate) fn builds_in_progress(&self) -> usize {
        self.lock().building.len()
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Entries and their approximate bytes.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.map.len(), inner.bytes)
    }
}
