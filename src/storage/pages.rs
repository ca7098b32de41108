//! Decoded page cache: the pages of Parquet column chunks that selective reads touched,
//! kept decoded (Arrow arrays) under a byte budget, least recently used evicted first.
//!
//! A selective query (one host's hour, one field of one host over a day) needs a few
//! hundred rows of each file it touches, but a page holds tens of thousands: without a
//! cache every such query decompresses and decodes the same pages again, and creates a
//! zstd context per column chunk. With it, a repeated or neighbouring query slices the rows
//! it needs out of arrays already in memory. This is the same idea as GreptimeDB's page
//! cache or ClickHouse's uncompressed cache; it caches data pages, never query results, so
//! an answer is always computed from the rows.
//!
//! Invariants:
//! - Keys carry the id of the [`super::index::FileIndex`] the page was read through; an id
//!   is never reused, and a file's index is built anew for any other file (other manifest
//!   seq or size), so a cached page always belongs to the file a query reads.
//! - A page is inserted whole (every row of it, decoded), and only ever read by slicing.
//! - The budget counts the arrays' buffers; the arrays are copies, so evicting a page
//!   frees its memory.

use std::collections::HashMap;
use std::sync::Mutex;

use arrow::array::{Array, ArrayRef, MutableArrayData, make_array};

/// A page: (file index id, leaf column, row group, page number in the chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub file: u64,
    pub column: usize,
    pub row_group: usize,
    pub page: usize,
}

struct Entry {
    array: ArrayRef,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<PageKey, Entry>,
    bytes: usize,
    tick: u64,
    hits: u64,
    misses: u64,
}

/// Decoded pages, bounded by a byte budget (0 disables the cache).
pub struct PageCache {
    budget: usize,
    inner: Mutex<Inner>,
}

/// Entries, bytes, hits and misses so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageCacheUsage {
    pub pages: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

impl PageCache {
    pub fn new(budget: u64) -> PageCache {
        PageCache {
            budget: usize::try_from(budget).unwrap_or(usize::MAX),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The cache holds no invariant a panic elsewhere could break halfway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether pages are cached at all.
    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The cached page, if any (counts a hit or a miss).
    pub fn get(&self, key: &PageKey) -> Option<ArrayRef> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        match inner.map.get_mut(key) {
            Some(e) => {
                e.used = tick;
                let array = e.array.clone();
                inner.hits += 1;
                Some(array)
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    /// Caches a copy of `array` (so that no larger buffer it may slice is kept alive) and
    /// returns it; beyond the budget, least recently used pages are evicted. A page larger
    /// than the whole budget is returned without being cached.
    pub fn insert(&self, key: PageKey, array: &dyn Array) -> ArrayRef {
        // A page that cannot fit is not copied (its slice of a larger buffer is returned).
        let overhead = std::mem::size_of::<PageKey>() + 64;
        let data = array.to_data();
        if !data
            .get_slice_memory_size()
            .is_ok_and(|b| b + overhead <= self.budget)
        {
            return make_array(data);
        }
        let copy = compact_copy(array);
        let bytes = copy.get_array_memory_size() + overhead;
        if bytes > self.budget {
            return copy;
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let used = inner.tick;
        if let Some(old) = inner.map.insert(
            key,
            Entry {
                array: copy.clone(),
                bytes,
                used,
            },
        ) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        if inner.bytes > self.budget {
            // Evict down to 7/8 of the budget at once, so the scan for victims is amortized.
            let target = self.budget - self.budget / 8;
            let mut by_age: Vec<(u64, PageKey)> = inner
                .map
                .iter()
                .filter(|(k, _)| **k != key)
                .map(|(k, e)| (e.used, *k))
                .collect();
            by_age.sort_unstable_by_key(|(used, _)| *used);
            for (_, victim) in by_age {
                if inner.bytes <= target {
                    break;
                }
                if let Some(e) = inner.map.remove(&victim) {
                    inner.bytes -= e.bytes;
                }
            }
        }
        copy
    }

    pub fn usage(&self) -> PageCacheUsage {
        let inner = self.lock();
        PageCacheUsage {
            pages: inner.map.len(),
            bytes: inner.bytes,
            hits: inner.hits,
            misses: inner.misses,
        }
    }
}

/// A copy of `array` in buffers of its own (the array itself if it cannot be copied, which
/// only an offset overflow could cause: never for rows that already fit in one array).
fn compact_copy(array: &dyn Array) -> ArrayRef {
    let data = array.to_data();
    let mut m = MutableArrayData::new(vec![&data], false, data.len());
    if m.try_extend(0, 0, data.len()).is_ok() {
        return make_array(m.freeze());
    }
    drop(m);
    make_array(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::Int64Type;

    fn key(page: usize) -> PageKey {
        PageKey {
            file: 1,
            column: 0,
            row_group: 0,
            page,
        }
    }

    #[test]
    fn caches_copies_and_evicts_least_recently_used() {
        let page = |v: i64| Int64Array::from(vec![v; 1000]);
        let one = page(0).get_array_memory_size() + std::mem::size_of::<PageKey>() + 64;
        let cache = PageCache::new((one * 3) as u64);
        // A slice of a larger array is cached as a copy of just its rows.
        let big = Int64Array::from((0..10_000).collect::<Vec<i64>>());
        let got = cache.insert(key(0), &big.slice(500, 1000));
        assert_eq!(got.as_primitive::<Int64Type>().value(0), 500);
        assert_eq!(cache.usage().bytes, one);
        cache.insert(key(1), &page(1));
        cache.insert(key(2), &page(2));
        assert!(
            cache.get(&key(0)).is_some(),
            "page 0 is now the most recent"
        );
        cache.insert(key(3), &page(3));
        let u = cache.usage();
        assert!(u.bytes <= one * 3, "{u:?}");
        assert!(
            cache.get(&key(1)).is_none(),
            "least recently used page evicted"
        );
        let p0 = cache.get(&key(0)).unwrap();
        assert_eq!(p0.as_primitive::<Int64Type>().values()[999], 1499);
        assert_eq!(
            cache
                .get(&key(3))
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            3
        );
        let u = cache.usage();
        assert_eq!((u.hits, u.misses), (3, 1));
        // Disabled, or a page over the whole budget: nothing is kept.
        let off = PageCache::new(0);
        assert!(!off.enabled());
        off.insert(key(0), &page(0));
        assert_eq!(off.usage().pages, 0);
        let small = PageCache::new(100);
        let got = small.insert(key(0), &big.slice(500, 1000));
        assert_eq!(got.as_primitive::<Int64Type>().value(0), 500);
        assert_eq!((small.usage().pages, small.usage().bytes), (0, 0));
    }
}
