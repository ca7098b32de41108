//! Byte buffers of the write path, reused across requests.
//!
//! Every write request used to allocate a buffer for its body and three per ingest shard
//! for its rows (about 1.25× the body in all), and free them when the shard had appended
//! the rows. Buffers that size come from fresh pages, and the allocator hands them back
//! to the kernel soon after: each first write of a 4 KiB page was a page fault, and the
//! frees cost `madvise` calls on the shard threads. Under the load generator (5,000-line
//! bodies over 4 connections) that was ~790,000 page faults per 43 M values, and perf put
//! page faults and `madvise` at ~7% of the server's ingest CPU.
//!
//! A pool keeps a bounded number of idle buffers (and bytes): at most `max_bytes` of idle
//! capacity, so the memory kept stays small next to the in-memory blocks.

use std::sync::{Mutex, MutexGuard};

/// Idle buffers, bounded by count and total capacity.
pub struct BufPool {
    free: Mutex<Vec<Vec<u8>>>,
    max_buffers: usize,
    max_bytes: usize,
}

impl BufPool {
    pub const fn new(max_buffers: usize, max_bytes: usize) -> BufPool {
        BufPool {
            free: Mutex::new(Vec::new()),
            max_buffers,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        // A list of empty buffers holds no invariant a panic could break.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty buffer with room for at least `capacity` bytes: the smallest idle one that
    /// is big enough, else the largest idle one grown, else a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let found = {
            let mut free = self.lock();
            let fits = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= capacity)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            let largest = || {
                free.iter()
                    .enumerate()
                    .max_by_key(|(_, b)| b.capacity())
                    .map(|(i, _)| i)
            };
            fits.or_else(largest).map(|i| free.swap_remove(i))
        };
        let mut buf = found.unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    /// Keeps `buf` for a later [`take`](Self::take) if the pool has room for it; frees it
    /// otherwise.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > self.max_bytes {
            return;
        }
        let mut free = self.lock();
        let idle: usize = free.iter().map(Vec::capacity).sum();
        if free.len() < self.max_buffers && idle + buf.capacity() <= self.max_bytes {
            free.push(buf);
        }
    }

    /// Idle buffers and their total capacity.
    pub fn idle(&self) -> (usize, usize) {
        let free = self.lock();
        (free.len(), free.iter().map(Vec::capacity).sum())
    }
}

/// Request bodies (write and query bodies).
pub static BODIES: BufPool = BufPool::new(8, 32 << 20);

/// Rows of prepared writes, per ingest shard: the row and string buffers of a
/// [`RowWriter`](crate::region::rows::RowWriter) and the payloads it finishes.
pub static ROWS: BufPool = BufPool::new(64, 48 << 20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_buffers_within_bounds() {
        let pool = BufPool::new(2, 1 << 20);
        let mut a = pool.take(1000);
        assert!(a.capacity() >= 1000 && a.is_empty());
        a.extend_from_slice(b"abc");
        let ptr = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.idle().0, 1);
        // The same allocation comes back, empty.
        let b = pool.take(500);
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.is_empty());
        assert_eq!(pool.idle().0, 0);
        // The smallest buffer that fits is taken.
        pool.give(Vec::with_capacity(4000));
        pool.give(Vec::with_capacity(2000));
        assert_eq!(pool.take(1500).capacity(), 2000);
        // No buffer fits: the largest is grown.
        pool.give(Vec::with_capacity(3000));
        assert!(pool.take(10_000).capacity() >= 10_000);
        assert_eq!(pool.idle(), (1, 3000));
        // Bounded by count…
        pool.give(Vec::with_capacity(100));
        pool.give(Vec::with_capacity(100));
        assert_eq!(pool.idle().0, 2);
        // …by total bytes, and a buffer larger than the budget is freed.
        let pool = BufPool::new(10, 1000);
        pool.give(Vec::with_capacity(600));
        pool.give(Vec::with_capacity(600));
        pool.give(Vec::with_capacity(2000));
        assert_eq!(pool.idle(), (1, 600));
        pool.give(Vec::new());
        assert_eq!(pool.idle(), (1, 600));
    }
}
