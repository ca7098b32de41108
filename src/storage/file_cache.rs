//! A local-disk cache of whole data files of a bucket, least recently used evicted beyond a
//! byte budget (`[storage] cache`). Files are immutable once published, so a cached copy
//! never goes stale: an entry is keyed by the file's path and size. A flush keeps the file
//! it just uploaded (its staged copy is moved in, nothing is read back); a query that opens
//! a file not cached downloads it whole, once, and reads it locally from then on, as a
//! local-disk region would. Files larger than a quarter of the budget are not cached (they
//! are read with ranged requests instead).
//!
//! The directory is emptied when the store opens and at a clean stop: the cache holds
//! nothing the manifest needs. Only the server uses it (one per data dir, by its lock);
//! `meridian-compact` reads whole files and keeps none.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

pub struct FileCache {
    dir: PathBuf,
    budget: u64,
    inner: Mutex<Inner>,
    /// Files being downloaded: a second reader of one waits for it instead of fetching it
    /// again (the index warm-up and the first query ask for the same files).
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

#[derive(Default)]
struct Inner {
    /// rel → (size, last use, name in the directory).
    entries: HashMap<String, (u64, u64, String)>,
    bytes: u64,
    tick: u64,
    next_name: u64,
}

impl FileCache {
    /// A cache in `dir` (emptied now) of at most `budget` bytes.
    pub fn open(dir: &Path, budget: u64) -> std::io::Result<FileCache> {
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(dir)?;
        Ok(FileCache {
            dir: dir.to_path_buf(),
            budget,
            inner: Mutex::new(Inner::default()),
            fetching: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `fetch` for `rel` unless another thread is fetching it; then waits for that one
    /// and returns `None` (the caller looks in the cache again).
    pub fn fetch_once<T>(&self, rel: &str, fetch: impl FnOnce() -> T) -> Option<T> {
        let (lock, first) = {
            let mut f = self.fetching.lock();
            match f.get(rel) {
                Some(l) => (l.clone(), false),
                None => {
                    let l = Arc::new(Mutex::new(()));
                    f.insert(rel.to_string(), l.clone());
                    (l, true)
                }
            }
        };
        if !first {
            drop(lock.lock());
            return None;
        }
        let guard = lock.lock();
        let out = fetch();
        self.fetching.lock().remove(rel);
        drop(guard);
        Some(out)
    }

    /// Whether a file of `len` bytes may be cached.
    pub fn admits(&self, len: u64) -> bool {
        len <= self.budget / 4
    }

    /// The cached copy of `rel` of `len` bytes, opened, if there is one.
    pub fn get(&self, rel: &str, len: u64) -> Option<File> {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let (size, used, name) = inner.entries.get_mut(rel)?;
        if *size != len {
            return None;
        }
        *used = tick;
        // Eviction may unlink it right after: an open file stays readable.
        File::open(self.dir.join(&*name)).ok()
    }

    /// The cached copy of `rel`, whatever its size, if there is one.
    pub fn cached_any(&self, rel: &str) -> Option<File> {
        let inner = self.inner.lock();
        let (_, _, name) = inner.entries.get(rel)?;
        File::open(self.dir.join(name)).ok()
    }

    /// A path in the cache directory to write a file to before [`FileCache::insert`].
    pub fn scratch(&self) -> PathBuf {
        let mut inner = self.inner.lock();
        inner.next_name += 1;
        self.dir.join(format!(".{}.tmp", inner.next_name))
    }

    /// Takes the complete file at `from` (on the same file system: it is renamed) as the
    /// copy of `rel`; evicts the least recently used beyond the budget. A file that does
    /// not fit is deleted instead.
    pub fn insert(&self, rel: &str, len: u64, from: &Path) {
        if !self.admits(len) {
            let _ = fs::remove_file(from);
            return;
        }
        let mut inner = self.inner.lock();
        inner.next_name += 1;
        let name = format!("{}.bin", inner.next_name);
        if fs::rename(from, self.dir.join(&name)).is_err() {
            let _ = fs::remove_file(from);
            return;
        }
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, _, old_name)) = inner
            .entries
            .insert(rel.to_string(), (len, tick, name.clone()))
        {
            inner.bytes -= old;
            let _ = fs::remove_file(self.dir.join(old_name));
        }
        inner.bytes += len;
        while inner.bytes > self.budget {
            let Some(victim) = inner
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != rel)
                .min_by_key(|(_, e)| e.1)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((size, _, n)) = inner.entries.remove(&victim) {
                inner.bytes -= size;
                let _ = fs::remove_file(self.dir.join(n));
            }
        }
    }

    /// Empties the cache (a clean stop: a restart starts empty anyway).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        for (_, (_, _, name)) in inner.entries.drain() {
            let _ = fs::remove_file(self.dir.join(name));
        }
        inner.bytes = 0;
        let _ = fs::remove_dir(&self.dir);
    }

    /// Bytes cached now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn keeps_the_most_recently_used_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileCache::open(&dir.path().join("cache"), 400).unwrap();
        let put = |rel: &str, n: usize| {
            let p = c.scratch();
            fs::write(&p, vec![b'x'; n]).unwrap();
            c.insert(rel, n as u64, &p);
        };
        put("a", 100);
        put("b", 100);
        put("c", 100);
        assert!(c.get("a", 100).is_some(), "a is used: b is now the oldest");
        put("d", 100);
        put("e", 100);
        assert!(c.bytes() <= 400);
        assert!(c.get("b", 100).is_none(), "evicted");
        assert!(c.get("a", 100).is_some());
        assert!(c.get("a", 99).is_none(), "another size is another file");
        let mut s = String::new();
        c.get("e", 100).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s.len(), 100);
        put("big", 101);
        assert!(c.get("big", 101).is_none(), "over a quarter of the budget");
    }

    #[test]
    fn concurrent_readers_of_one_file_fetch_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileCache::open(&dir.path().join("cache"), 1 << 20).unwrap();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    c.fetch_once("a", || {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        let p = c.scratch();
                        fs::write(&p, b"abc").unwrap();
                        c.insert("a", 3, &p);
                    });
                    assert!(c.get("a", 3).is_some());
                });
            }
        });
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
