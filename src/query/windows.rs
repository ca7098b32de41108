//! The time windows a measurement's stored data falls in, from what the catalog and the
//! in-memory blocks say of themselves (no file is read): answers too large to hold whole
//! are computed a window at a time and sent as they are ready.
//!
//! A window is the span of times one partition's files and blocks really hold (a partition
//! written under another `partition_duration` may be wider than today's), with spans that
//! overlap merged: every stored point falls in exactly one window.

use std::collections::BTreeMap;

use crate::model::{ColumnKind, RegionId};
use crate::region::Engine;

/// Where a measurement's data lies within a time range.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Spans {
    /// Half-open `[start, end)` windows in time order, disjoint, within the range asked.
    pub windows: Vec<(i64, i64)>,
    /// Rows of the files and blocks that overlap the range (an upper bound of the points
    /// in it: a file counts whole, overwritten points count once per copy).
    pub rows: u64,
    /// The columns those files and blocks have, each with every kind it has there (a field
    /// written before types were fixed per measurement may have several).
    pub columns: BTreeMap<String, Vec<ColumnKind>>,
}

/// The windows of `measurement` of `db` within `[start, end)`, over every region (all must
/// be hosted here: the partitions of other nodes' regions are not known).
pub async fn spans(
    engine: &Engine,
    db: &str,
    measurement: &str,
    (start, end): (i64, i64),
) -> Result<Spans, String> {
    let mut by_partition: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut rows = 0u64;
    let mut columns: BTreeMap<String, Vec<ColumnKind>> = BTreeMap::new();
    let mut column = |name: &str, kind: ColumnKind| match columns.get_mut(name) {
        Some(kinds) if kinds.contains(&kind) => {}
        Some(kinds) => kinds.push(kind),
        None => {
            columns.insert(name.to_string(), vec![kind]);
        }
    };
    // Whether `[lo, hi]` (inclusive) overlaps the range; if so it is added, clamped to it.
    let mut add = |p: i64, lo: i64, hi: i64, n: u64| -> bool {
        if hi < start || lo >= end {
            return false;
        }
        let (lo, hi) = (lo.max(start), hi.min(end.saturating_sub(1)));
        let e = by_partition.entry(p).or_insert((lo, hi));
        *e = (e.0.min(lo), e.1.max(hi));
        rows = rows.saturating_add(n);
        true
    };
    for i in 0..engine.regions().len() {
        let snap = engine.snapshot(RegionId(i), db, Some(measurement)).await?;
        for f in snap.files().filter(|f| *f.measurement == *measurement) {
            if add(f.partition_start, f.min_time, f.max_time, f.rows) {
                for (name, kind) in &f.columns {
                    column(name, *kind);
                }
            }
        }
        for b in snap
            .mem
            .iter()
            .filter(|b| *b.key.measurement == *measurement)
        {
            for c in &b.chunks {
                if add(b.key.partition.0, c.min_time, c.max_time, c.rows() as u64) {
                    for (name, t, _) in &c.fields {
                        column(name, ColumnKind::Field(*t));
                    }
                    for set in c.series.iter() {
                        for (k, _) in set.iter() {
                            column(k, ColumnKind::Tag);
                        }
                    }
                }
            }
        }
    }
    let mut sorted: Vec<(i64, i64)> = by_partition.into_values().collect();
    sorted.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (lo, hi) in sorted {
        match merged.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    Ok(Spans {
        windows: merged
            .into_iter()
            .map(|(lo, hi)| (lo, hi.saturating_add(1)))
            .collect(),
        rows,
        columns,
    })
}

/// `[start, end)` cut in two halves (`None` when it holds a single instant).
pub fn halves((start, end): (i64, i64)) -> Option<((i64, i64), (i64, i64))> {
    let width = (end as i128) - (start as i128);
    if width < 2 {
        return None;
    }
    let mid = (start as i128 + width / 2) as i64;
    Some(((start, mid), (mid, end)))
}

/// The start of the bucket of `every` (buckets start `offset` past its multiples) holding
/// `t`, clamped to `i64`.
fn floor_to(t: i64, every: i64, offset: i64) -> i64 {
    let (e, o) = (every as i128, offset as i128);
    ((t as i128 - o).div_euclid(e) * e + o).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The end of the bucket of `every` holding `t - 1` (`t` itself when a bucket starts
/// there), clamped to `i64`.
fn ceil_to(t: i64, every: i64, offset: i64) -> i64 {
    let (e, o) = (every as i128, offset as i128);
    ((t as i128 - o + e - 1).div_euclid(e) * e + o).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// `windows` (sorted, disjoint) made into windows of whole buckets of `every` (buckets start
/// at `offset` plus multiples of `every`): each starts at the start of the bucket holding
/// its first time and ends where the next begins (the last at the end of the bucket holding
/// its last time). No bucket is split between two windows, so an answer bucketed by
/// `every` can be computed a window at a time; a bucket across two partitions' spans goes
/// to the window of the later span, which starts at that bucket (a window is a time range,
/// not a partition).
pub fn aligned(windows: &[(i64, i64)], every: i64, offset: i64) -> Vec<(i64, i64)> {
    let mut starts: Vec<i64> = windows
        .iter()
        .map(|w| floor_to(w.0, every, offset))
        .collect();
    starts.dedup();
    let Some(end) = windows.last().map(|w| ceil_to(w.1, every, offset)) else {
        return Vec::new();
    };
    let mut out: Vec<(i64, i64)> = starts.windows(2).map(|p| (p[0], p[1])).collect();
    if let Some(last) = starts.last() {
        out.push((*last, end));
    }
    out
}

/// `[start, end)` cut in two at a multiple of `every` (`every` of 1: anywhere), or `None`
/// when no such multiple lies strictly inside (a single bucket).
pub fn halves_at(span: (i64, i64), every: i64) -> Option<((i64, i64), (i64, i64))> {
    let ((start, mid), (_, end)) = halves(span)?;
    let mid = floor_to(mid, every, 0);
    (mid > start && mid < end).then_some(((start, mid), (mid, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_cover_the_window_and_stop_at_one_instant() {
        assert_eq!(halves((0, 10)), Some(((0, 5), (5, 10))));
        assert_eq!(halves((0, 3)), Some(((0, 1), (1, 3))));
        assert_eq!(halves((7, 8)), None);
        let (a, b) = halves((i64::MIN, i64::MAX)).unwrap();
        assert_eq!((a.0, a.1, b.1), (i64::MIN, b.0, i64::MAX));
        assert!(a.1 > i64::MIN && a.1 < i64::MAX);
    }

    #[test]
    fn aligned_windows_hold_whole_buckets_and_split_only_between_them() {
        // Two partitions' spans inside one 10-wide bucket become one window; a bucket
        // across two spans goes to the earlier window.
        assert_eq!(aligned(&[(3, 5), (7, 9)], 10, 0), vec![(0, 10)]);
        assert_eq!(aligned(&[(3, 5), (12, 19)], 10, 0), vec![(0, 10), (10, 20)]);
        assert_eq!(aligned(&[(-5, 5)], 10, 0), vec![(-10, 10)]);
        // Buckets that start at 3 past each multiple of 10.
        assert_eq!(aligned(&[(3, 5), (12, 19)], 10, 3), vec![(3, 23)]);
        assert_eq!(
            aligned(&[(0, 60), (60, 120)], 7, 2),
            vec![(-5, 58), (58, 121)]
        );
        assert_eq!(aligned(&[(4, 5), (14, 19)], 10, 3), vec![(3, 13), (13, 23)]);
        let wide = aligned(&[(i64::MIN + 1, i64::MAX - 1)], 1 << 40, 0);
        assert_eq!(wide.len(), 1);
        assert_eq!(halves_at((0, 40), 10), Some(((0, 20), (20, 40))));
        assert_eq!(halves_at((0, 30), 10), Some(((0, 10), (10, 30))));
        assert_eq!(halves_at((0, 10), 10), None);
        assert_eq!(halves_at((0, 10), 1), halves((0, 10)));
    }
}
