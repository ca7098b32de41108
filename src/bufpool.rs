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
//! capacity, so the memory kept stays small next to the in-memory blocks. Idle bytes count
//! against `memory.limit` ([`idle_total`]) and are let go when a reservation would not fit
//! otherwise ([`release_all`]).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

/// Buffers smaller than this are neither kept nor handed out: allocating them costs little,
/// and a pool slot is better spent on a large one.
pub const MIN_POOLED: usize = 64 << 10;

/// Idle buffers, bounded by count and total capacity.
pub struct BufPool {
    free: Mutex<Vec<Vec<u8>>>,
    max_buffers: usize,
    max_bytes: usize,
    /// Capacity of the idle buffers (read without the lock).
    idle_bytes: AtomicUsize,
}

impl BufPool {
    pub const fn new(max_buffers: usize, max_bytes: usize) -> BufPool {
        BufPool {
            free: Mutex::new(Vec::new()),
            max_buffers,
            max_bytes,
            idle_bytes: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        // A list of empty buffers holds no invariant a panic could break.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty buffer with room for at least `capacity` bytes: the smallest idle one that
    /// is big enough, else the largest idle one grown, else a new one. A small request
    /// (`0 < capacity <` [`MIN_POOLED`]) gets a new buffer: it is cheap, and it should not
    /// hold a large idle one (a 200-byte query body, say). `capacity == 0` means unknown.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        if capacity > 0 && capacity < MIN_POOLED {
            return Vec::with_capacity(capacity);
        }
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
            let found = fits.or_else(largest).map(|i| free.swap_remove(i));
            if let Some(b) = &found {
                self.idle_bytes.fetch_sub(b.capacity(), Relaxed);
            }
            found
        };
        let mut buf = found.unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    /// Keeps `buf` for a later [`take`](Self::take) if the pool has room for it; frees it
    /// otherwise.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() < MIN_POOLED || buf.capacity() > self.max_bytes {
            return;
        }
        let mut free = self.lock();
        let idle: usize = free.iter().map(Vec::capacity).sum();
        if free.len() < self.max_buffers && idle + buf.capacity() <= self.max_bytes {
            self.idle_bytes.fetch_add(buf.capacity(), Relaxed);
            free.push(buf);
        }
    }

    /// Idle buffers and their total capacity.
    pub fn idle(&self) -> (usize, usize) {
        let free = self.lock();
        (free.len(), free.iter().map(Vec::capacity).sum())
    }

    /// Capacity of the idle buffers, without taking the lock.
    pub fn idle_bytes(&self) -> usize {
        self.idle_bytes.load(Relaxed)
    }

    /// Frees every idle buffer.
    pub fn release(&self) {
        let gone = std::mem::take(&mut *self.lock());
        self.idle_bytes
            .fetch_sub(gone.iter().map(Vec::capacity).sum(), Relaxed);
    }
}

/// Idle bytes of every pool (they count against `memory.limit`).
pub fn idle_total() -> u64 {
    (BODIES.idle_bytes() + ROWS.idle_bytes()) as u64
}

/// Frees the idle buffers of every pool (when what they hold is needed for data).
pub fn release_all() {
    BODIES.release();
    ROWS.release();
}

/// Request bodies (write and query bodies). The bounds hold what four writers reuse (the
/// benchmark load's bodies are 1.9 MB); they were 32 MiB (and 48 MiB of rows), which the
/// RSS of a 1,000-host ingest showed as 12–34 MiB of idle buffers at its peak (now 4–18).
/// Buffers beyond them go back to jemalloc, which keeps freed pages for 200 ms.
pub static BODIES: BufPool = BufPool::new(4, 8 << 20);

/// Rows of prepared writes, per ingest shard: the row and string buffers of a
/// [`RowWriter`](crate::region::rows::RowWriter) and the payloads it finishes.
pub static ROWS: BufPool = BufPool::new(16, 12 << 20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_buffers_within_bounds() {
        const K: usize = MIN_POOLED;
        let pool = BufPool::new(2, 100 * K);
        let mut a = pool.take(2 * K);
        assert!(a.capacity() >= 2 * K && a.is_empty());
        a.extend_from_slice(b"abc");
        let ptr = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.idle().0, 1);
        // The same allocation comes back, empty (also for an unknown size).
        let b = pool.take(0);
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.is_empty());
        assert_eq!(pool.idle().0, 0);
        // The smallest buffer that fits is taken.
        pool.give(Vec::with_capacity(8 * K));
        pool.give(Vec::with_capacity(4 * K));
        assert_eq!(pool.take(3 * K).capacity(), 4 * K);
        // No buffer fits: the largest is grown.
        pool.give(Vec::with_capacity(6 * K));
        assert!(pool.take(20 * K).capacity() >= 20 * K);
        assert_eq!(pool.idle(), (1, 6 * K));
        // A small request gets a fresh buffer; small buffers are not kept.
        assert_eq!(pool.take(100).capacity(), 100);
        assert_eq!(pool.idle(), (1, 6 * K));
        pool.give(Vec::with_capacity(K - 1));
        assert_eq!(pool.idle(), (1, 6 * K));
        // Bounded by count…
        pool.give(Vec::with_capacity(K));
        pool.give(Vec::with_capacity(K));
        assert_eq!(pool.idle().0, 2);
        // …by total bytes, and a buffer larger than the budget is freed.
        let pool = BufPool::new(10, 3 * K);
        pool.give(Vec::with_capacity(2 * K));
        pool.give(Vec::with_capacity(2 * K));
        pool.give(Vec::with_capacity(4 * K));
        assert_eq!(pool.idle(), (1, 2 * K));
        assert_eq!(
            pool.idle_bytes(),
            2 * K,
            "the counter follows take and give"
        );
        pool.release();
        assert_eq!((pool.idle(), pool.idle_bytes()), ((0, 0), 0));
    }
}
