//! A region whose nodes share its storage (cluster mode, `[[region]] shared_storage`).
//!
//! ```text
//!  MERIDIAN_R_<region> ──▶ every hosting node: rows into memory (no WAL: the log is one),
//!                          each row remembering its log message's sequence
//!  lease holder only:      flushes Parquet to the shared storage (edits fenced by its lease
//!                          epoch), and records the log mark: the sequence through which
//!                          every row is in files, with the log reader's state there
//!  the others:             drop what the mark covers; take over when the lease lapses,
//!                          their memory holding every row after the mark
//!  a node starting:        reads the log from the mark on
//! ```
//!
//! Invariants:
//! - The mark never runs ahead of memory: it is the lower of the last message committed to
//!   memory and the oldest message a row held in memory came from (minus one), read in that
//!   order, snapped down to a batch end the reader recorded its state at.
//! - A node's memory for the region holds every row of the log after some point at or
//!   below the mark, contiguously (blocks are dropped oldest first, only once the mark
//!   covers them); so a node that takes the lease over has every row not in files.
//! - Last write wins across holders: the holder gives each file its seq when it submits the
//!   flush, in the order its blocks were frozen, from a range reserved when it took the
//!   lease, above every seq used before (`Manifest::reserve_seqs`): a key's newer rows are
//!   always in a file of higher seq, or in memory.
//! - A node that lost the lease cannot record anything: the manifest refuses an edit made
//!   under an epoch older than one committed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use parking_lot::Mutex;

/// The shared state of one region's log on this node.
pub struct SharedLog {
    /// The flush lease epoch this node holds (0: none, it follows).
    epoch: AtomicU64,
    /// How far the log is in files, as the manifest last said.
    through: AtomicU64,
    /// Per shard: the oldest log message a row held in memory came from (`u64::MAX`: none).
    held_from: Vec<AtomicU64>,
    applied: Mutex<Applied>,
    /// The reader has started (from the manifest's mark): only then may the node lead.
    started: AtomicBool,
    /// Messages of the log expired before this node read them: the first message after
    /// the gap (0: none). It must not record a mark past rows it never had (another node
    /// may have them), so it records none and gives the lease up until the mark passes the
    /// gap or no other node takes the lease.
    gap_end: AtomicU64,
    /// A delete here waits for the log to be in files up to this message: the holder is
    /// asked to flush (see `cluster::lease`).
    wanted: AtomicU64,
    /// When ([`mono_ns`]) the first flush failure since the last flush of the region that
    /// committed here happened (0: the last one committed): a holder whose flushes only
    /// fail gives the lease up.
    failing_from: AtomicU64,
    /// Per shard: since when ([`mono_ns`]) its flush job has been running (0: none). A
    /// holder whose flush neither commits nor fails (it hangs on its local disk, say) gives
    /// the lease up too.
    running_from: Vec<AtomicU64>,
}

#[derive(Default)]
struct Applied {
    /// The last message committed to memory.
    through: u64,
    /// The reader's state at batch ends, oldest first.
    marks: VecDeque<(u64, serde_json::Value)>,
}

/// Nanoseconds since the process's first call, from the monotonic clock: how long a flush
/// job runs, whatever the wall clock does meanwhile.
pub fn mono_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The time since `since` (a [`mono_ns`] reading).
pub fn mono_elapsed(since: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(mono_ns().saturating_sub(since))
}

/// Batch-end states kept at most (beyond, every other one goes but the oldest and newest).
const MARKS_KEPT: usize = 4096;

impl SharedLog {
    pub fn new(shards: usize) -> SharedLog {
        SharedLog {
            epoch: AtomicU64::new(0),
            through: AtomicU64::new(0),
            held_from: (0..shards).map(|_| AtomicU64::new(u64::MAX)).collect(),
            applied: Mutex::new(Applied::default()),
            started: AtomicBool::new(false),
            gap_end: AtomicU64::new(0),
            wanted: AtomicU64::new(0),
            failing_from: AtomicU64::new(0),
            running_from: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A flush of the region committed (`ok`) or failed, at `now_ns` ([`mono_ns`]).
    pub fn flushed(&self, ok: bool, now_ns: u64) {
        if ok {
            self.failing_from.store(0, SeqCst);
        } else {
            let _ = self
                .failing_from
                .compare_exchange(0, now_ns.max(1), SeqCst, SeqCst);
        }
    }

    /// Shard `shard` started a flush job at `now_ns`.
    pub fn flush_started(&self, shard: usize, now_ns: u64) {
        if let Some(r) = self.running_from.get(shard) {
            r.store(now_ns.max(1), SeqCst);
        }
    }

    /// Shard `shard`'s flush job ended (committed or failed).
    pub fn flush_ended(&self, shard: usize) {
        if let Some(r) = self.running_from.get(shard) {
            r.store(0, SeqCst);
        }
    }

    /// Since when ([`mono_ns`]) the oldest flush job still running has been running.
    pub fn running_since(&self) -> Option<u64> {
        self.running_from
            .iter()
            .map(|r| r.load(SeqCst))
            .filter(|t| *t > 0)
            .min()
    }

    /// Since when ([`mono_ns`]) every flush has failed, if the last one did.
    pub fn failing_since(&self) -> Option<u64> {
        Some(self.failing_from.load(SeqCst)).filter(|t| *t > 0)
    }

    /// A new holder starts with a clean record.
    pub fn clear_failures(&self) {
        self.failing_from.store(0, SeqCst);
    }

    pub fn started(&self) -> bool {
        self.started.load(SeqCst)
    }

    /// The reader skips messages that expired before it read them, up to `next` (the
    /// first it has): no mark from here on (see `gap_end`), the lease is given up, and the
    /// next holder is asked to flush past the gap.
    pub fn note_gap(&self, next: u64) {
        let _a = self.applied.lock();
        self.gap_end.fetch_max(next, SeqCst);
        self.set_epoch(0);
        self.want_through(next);
    }

    /// The first message after a gap this node's log has, while it lasts.
    pub fn gap_end(&self) -> Option<u64> {
        Some(self.gap_end.load(SeqCst)).filter(|g| *g > 0)
    }

    /// The mark passed the gap ending at `end` (a node that had those rows flushed them),
    /// or no other node took the lease: this node may lead again, unless a later gap was
    /// noted meanwhile.
    pub fn clear_gap(&self, end: u64) -> bool {
        self.gap_end
            .compare_exchange(end, 0, SeqCst, SeqCst)
            .is_ok()
    }

    /// A delete waits for the log to be in files up to `seq`.
    pub fn want_through(&self, seq: u64) {
        self.wanted.fetch_max(seq, SeqCst);
    }

    pub fn wanted(&self) -> u64 {
        self.wanted.load(SeqCst)
    }

    /// The lease epoch held (0: none).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(SeqCst)
    }

    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, SeqCst);
    }

    /// How far the log is in files (the manifest's mark).
    pub fn through(&self) -> u64 {
        self.through.load(SeqCst)
    }

    pub fn set_through(&self, seq: u64) {
        self.through.fetch_max(seq, SeqCst);
    }

    /// The reader starts after `seq`, in `state` (the manifest's mark at start-up).
    pub fn start_at(&self, seq: u64, state: serde_json::Value) {
        let mut a = self.applied.lock();
        a.through = seq;
        a.marks.clear();
        a.marks.push_back((seq, state));
        self.set_through(seq);
        self.started.store(true, SeqCst);
    }

    /// The reader committed every message up to `seq` to memory; `state` is its state there.
    pub fn applied(&self, seq: u64, state: serde_json::Value) {
        let mut a = self.applied.lock();
        a.through = a.through.max(seq);
        if a.marks.len() >= MARKS_KEPT {
            // Every other one goes, never the oldest (the mark may need it for as long as
            // a row of its time is held) nor the newest: the mark stays possible, a little
            // coarser.
            let last = a.marks.len() - 1;
            let mut i = 0;
            a.marks.retain(|_| {
                let keep = i % 2 == 0 || i == last;
                i += 1;
                keep
            });
        }
        a.marks.push_back((seq, state));
    }

    /// The last message committed to memory.
    pub fn committed(&self) -> u64 {
        self.applied.lock().through
    }

    /// A shard holds a row of message `seq`.
    pub fn hold(&self, shard: usize, seq: u64) {
        if let Some(h) = self.held_from.get(shard) {
            h.fetch_min(seq, SeqCst);
        }
    }

    /// A shard's oldest message held, after blocks left its memory.
    pub fn set_held(&self, shard: usize, seq: Option<u64>) {
        if let Some(h) = self.held_from.get(shard) {
            h.store(seq.unwrap_or(u64::MAX), SeqCst);
        }
    }

    /// The mark that may be recorded now: every row of the log up to its sequence is in
    /// files, and the reader's state there. `None` when none is newer than the manifest's.
    pub fn mark(&self) -> Option<(u64, serde_json::Value)> {
        let mut a = self.applied.lock();
        if self.gap_end().is_some() {
            return None;
        }
        // In this order: a row committed after `through` was read comes from a later
        // message, so it cannot lower the bound below what it covers.
        let committed = a.through;
        let held = self
            .held_from
            .iter()
            .map(|h| h.load(SeqCst))
            .min()
            .unwrap_or(u64::MAX);
        let upto = committed.min(held.saturating_sub(1));
        let i = a.marks.iter().rposition(|(s, _)| *s <= upto)?;
        // States before the one chosen are never needed again.
        a.marks.drain(..i);
        let (seq, state) = a.marks.front()?.clone();
        (seq > self.through()).then_some((seq, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Past the states kept, older ones are thinned, never the oldest: a mark held back by
    /// an old row stays possible under steady load.
    #[test]
    fn the_oldest_state_survives_steady_load() {
        let log = SharedLog::new(1);
        log.start_at(0, json!(0));
        log.hold(0, 1);
        for seq in 1..=(MARKS_KEPT as u64 * 5) {
            log.applied(seq, json!(seq));
        }
        assert_eq!(log.mark(), None, "shard 0 still holds message 1");
        // The held row moves on: the mark follows, to a kept state below it.
        let upto = MARKS_KEPT as u64 * 2;
        log.set_held(0, Some(upto + 1));
        let (seq, state) = log.mark().expect("a mark below the held row");
        assert!(seq > 0 && seq <= upto && state == json!(seq), "{seq}");
        log.set_through(seq);
        log.set_held(0, None);
        let newest = MARKS_KEPT as u64 * 5;
        assert_eq!(log.mark(), Some((newest, json!(newest))));
    }

    /// Running since the oldest start of a shard's flush job still running; its end (a
    /// commit or a failure) clears that shard's.
    #[test]
    fn a_running_flush_is_timed_from_the_oldest_start_still_running() {
        let log = SharedLog::new(3);
        assert_eq!(log.running_since(), None);
        log.flush_started(1, 500);
        log.flush_started(2, 300);
        assert_eq!(log.running_since(), Some(300));
        log.flush_ended(2);
        assert_eq!(log.running_since(), Some(500));
        log.flush_ended(1);
        assert_eq!(log.running_since(), None);
        // A shard this log does not know changes nothing.
        log.flush_started(7, 100);
        assert_eq!(log.running_since(), None);
    }

    /// Failing since the first failure after the last committed flush; a commit clears it.
    #[test]
    fn flush_failures_are_timed_from_the_first_since_the_last_success() {
        let log = SharedLog::new(1);
        assert_eq!(log.failing_since(), None);
        log.flushed(false, 100);
        log.flushed(false, 200);
        assert_eq!(log.failing_since(), Some(100));
        log.flushed(true, 300);
        assert_eq!(log.failing_since(), None);
        log.flushed(false, 400);
        assert_eq!(log.failing_since(), Some(400));
        log.clear_failures();
        assert_eq!(log.failing_since(), None);
    }

    /// The mark follows what memory still holds and snaps to a recorded batch end.
    #[test]
    fn the_mark_stays_behind_rows_held_in_memory() {
        let log = SharedLog::new(2);
        log.start_at(10, json!(10));
        assert_eq!(log.mark(), None, "nothing newer than the start");
        log.hold(0, 11);
        log.hold(1, 13);
        log.applied(12, json!(12));
        log.applied(15, json!(15));
        // Shard 0 holds a row of 11: nothing past 10 is in files yet.
        assert_eq!(log.mark(), None);
        // Shard 0 flushed; shard 1 still holds 13: up to 12.
        log.set_held(0, None);
        assert_eq!(log.mark(), Some((12, json!(12))));
        log.set_through(12);
        assert_eq!(log.mark(), None);
        // Everything flushed: up to the last batch committed.
        log.set_held(1, None);
        assert_eq!(log.mark(), Some((15, json!(15))));
        // A message committed but with no batch end recorded yet is not covered.
        log.set_through(15);
        log.hold(1, 16);
        log.set_held(1, None);
        assert_eq!(log.mark(), None);
    }
}
