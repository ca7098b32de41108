//! The picker: which partitions to drop, compact and roll up. Pure code, no I/O: it takes
//! the manifest's [`FileMeta`] list of one region, the lowest WAL sequence number still on
//! disk per WAL shard, and a [`Policy`], and returns plans. `exec` carries them out.
//!
//! Rules (each one a function below, each unit-tested):
//! - **Sealed**: a partition `[start, start + duration)` is sealed when
//!   `start + duration + grace <= now`, or when it is named explicitly (`--partition`).
//!   Only sealed partitions are compacted or rolled up; retention needs no seal.
//! - **Compaction** ([`plan_compaction`]): a sealed partition with `n >= 2` files of total
//!   size `B` is compacted when `n > ceil(B / target)`, i.e. when merging can lower its file
//!   count. All its files are merged together (never a subset: a merged output gets a new,
//!   higher seq, so leaving an older file out would let it lose to data it should beat);
//!   outputs split the sorted rows, so their identities are disjoint. Outputs are cut when a
//!   file reaches the target, so all but the last are `>= target`: a rerun finds
//!   `n <= ceil(B / target)` and leaves the partition alone (stable, idempotent). A sealed
//!   partition whose bytes are at least half in files no compaction wrote (named without
//!   `~c`: a flush's or a delete's) is compacted too, so a lone flushed file gets
//!   compaction's encoding once; its output is named `~c`, so a rerun leaves it alone.
//! - **Retention** ([`plan_retention`]): a partition whose end is `<= now - retain` is
//!   dropped whole. If a WAL segment on disk may still hold records of the dropped files
//!   (`max_seq >= ` the shard's lowest seq on disk), the drop leaves a *tombstone*: a
//!   zero-row file carrying those WAL ranges, so the server's replay keeps skipping them
//!   instead of resurrecting dropped data. A later run removes the tombstone once the WAL
//!   has moved past it. A file with `rows == 0` is such a tombstone.
//! - **Downsampling** ([`plan_rollups`]): source rows are aggregated per window of
//!   `max(every, partition duration)` (one must divide the other). A window is rolled up
//!   when it is sealed and ends `<= now - older_than`, unless its rollup is already up to
//!   date: the rollup files of the window all have a higher seq than every source file and
//!   hold every expected column. A recomputed rollup is merged with the old one (the new
//!   wins, field by field) and replaces it, so a rerun never doubles anything: a rollup
//!   point's identity is (series, bucket start). Measurements that already end with the
//!   rollup suffix (`cpu_1m` for `1m`) are not rolled up again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{NaiveDate, NaiveDateTime};

use crate::catalog::{FileMeta, WalRange};
use crate::model::{
    ColumnKind, FieldType, PARTITION_KEY_DAY, PARTITION_KEY_HOUR, PARTITION_KEY_MINUTE,
    PartitionStart,
};

pub const MINUTE_NS: i64 = 60_000_000_000;
pub const HOUR_NS: i64 = 60 * MINUTE_NS;
pub const DAY_NS: i64 = 24 * HOUR_NS;

/// Why a policy or a flag value is not usable.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("--{0}")]
    Downsample(#[from] crate::rollup::DownsampleError),
    #[error("invalid time or partition {text:?}: {reason}")]
    Time { text: String, reason: String },
    #[error("cannot tell the partition duration: {0}")]
    Layout(String),
}

/// Which files an action may touch (region filtering happens before the planner).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Databases; empty = all.
    pub dbs: Vec<String>,
    /// Measurements; empty = all. For downsampling these name the source measurements.
    pub measurements: Vec<String>,
    /// Partition starts named explicitly; empty = all. A named partition counts as sealed.
    pub partitions: Vec<i64>,
}

impl Filters {
    fn admits_series(&self, db: &str, measurement: &str) -> bool {
        (self.dbs.is_empty() || self.dbs.iter().any(|d| d == db))
            && (self.measurements.is_empty() || self.measurements.iter().any(|m| m == measurement))
    }

    fn admits_partition(&self, start: i64) -> bool {
        self.partitions.is_empty() || self.partitions.contains(&start)
    }

    fn names(&self, start: i64) -> bool {
        self.partitions.contains(&start)
    }
}

pub use crate::rollup::{Agg, Downsample, is_numeric, rollup_column};

/// Everything the picker decides by.
#[derive(Debug, Clone)]
pub struct Policy {
    pub now_ns: i64,
    pub partition_duration_ns: i64,
    pub grace_ns: i64,
    pub target_bytes: u64,
    pub filters: Filters,
    /// Compact sealed partitions (off with `--no-compact`).
    pub compact: bool,
    pub retain_ns: Option<i64>,
    pub downsample: Option<Downsample>,
}

impl Policy {
    /// Whether the partition starting at `start` is sealed (see the module docs).
    pub fn is_sealed(&self, start: i64) -> bool {
        self.filters.names(start)
            || start
                .saturating_add(self.partition_duration_ns)
                .saturating_add(self.grace_ns)
                <= self.now_ns
    }
}

/// One time partition of one measurement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    pub db: String,
    pub measurement: String,
    pub start: i64,
}

impl PartitionId {
    fn of(f: &FileMeta) -> PartitionId {
        PartitionId {
            db: f.db.clone(),
            measurement: f.measurement.clone(),
            start: f.partition_start,
        }
    }
}

/// Merge every file of a partition into as few files as the size target allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Compaction {
    pub partition: PartitionId,
    /// Every file of the partition, in seq order (oldest first: later ones win).
    pub inputs: Vec<FileMeta>,
    pub bytes_in: u64,
    pub rows_in: u64,
    /// `ceil(bytes_in / target)`: an upper bound, as merging removes duplicates.
    pub est_files_out: u64,
    /// The small measurements of a db's partition packed together (`storage::packed`); the
    /// partition is named `~packed`, `inputs` are every such measurement's files.
    pub pack: bool,
}

/// Drop a whole partition (retention).
#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    pub partition: PartitionId,
    pub files: Vec<FileMeta>,
    /// WAL ranges a tombstone must keep covering; empty = no tombstone needed.
    pub tombstone_wal: Vec<WalRange>,
}

impl Drop {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Aggregate one window of a measurement into its rollup measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    pub db: String,
    pub source_measurement: String,
    pub target_measurement: String,
    pub window_start: i64,
    pub window_ns: i64,
    /// Source files of the window, seq order.
    pub sources: Vec<FileMeta>,
    /// Rollup files already in the window (merged with the new rollup and replaced), seq order.
    pub existing: Vec<FileMeta>,
    /// Partition of the output: the window start.
    pub output_partition: i64,
}

/// What one region would do, phase by phase (for `--dry-run`; `exec` re-plans each phase
/// from the manifest as it stands after the previous one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionPlan {
    pub drops: Vec<Drop>,
    pub compactions: Vec<Compaction>,
    pub rollups: Vec<Rollup>,
    /// Things the planner chose not to do and why (shown by `--dry-run`).
    pub notes: Vec<String>,
}

impl RegionPlan {
    pub fn units(&self) -> usize {
        self.drops.len() + self.compactions.len() + self.rollups.len()
    }
}

/// The files of a region grouped by partition, each group in seq order.
pub fn by_partition(files: &[FileMeta]) -> BTreeMap<PartitionId, Vec<FileMeta>> {
    let mut out: BTreeMap<PartitionId, Vec<FileMeta>> = BTreeMap::new();
    for f in files {
        out.entry(PartitionId::of(f)).or_default().push(f.clone());
    }
    for v in out.values_mut() {
        v.sort_by_key(|f| f.seq);
    }
    out
}

/// Union of WAL ranges as a set of sequence numbers per shard: sorted, overlapping and
/// adjacent ranges merged, gaps kept (a gap may hold records of another file or of none).
pub fn union_wal<'a>(ranges: impl IntoIterator<Item = &'a WalRange>) -> Vec<WalRange> {
    let mut all: Vec<WalRange> = ranges.into_iter().copied().collect();
    all.sort_by_key(|r| (r.shard, r.min_seq, r.max_seq));
    let mut out: Vec<WalRange> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if last.shard == r.shard && r.min_seq <= last.max_seq.saturating_add(1) => {
                last.max_seq = last.max_seq.max(r.max_seq);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Whether records of `r` may still be in a WAL segment on disk. `wal_floors` maps a WAL
/// shard directory to the first seq of its oldest segment; a shard without segments holds
/// nothing.
fn may_be_in_wal(r: &WalRange, wal_floors: &BTreeMap<usize, u64>) -> bool {
    wal_floors
        .get(&r.shard)
        .is_some_and(|floor| r.max_seq >= *floor)
}

/// Retention: whole partitions that ended at or before `now - retain`.
pub fn plan_retention(
    files: &[FileMeta],
    wal_floors: &BTreeMap<usize, u64>,
    policy: &Policy,
) -> Vec<Drop> {
    let Some(retain) = policy.retain_ns else {
        return Vec::new();
    };
    let horizon = policy.now_ns.saturating_sub(retain);
    let mut out = Vec::new();
    for (p, group) in by_partition(files) {
        if !policy.filters.admits_series(&p.db, &p.measurement)
            || !policy.filters.admits_partition(p.start)
            || p.start.saturating_add(policy.partition_duration_ns) > horizon
        {
            continue;
        }
        let still_in_wal: Vec<WalRange> = group
            .iter()
            .flat_map(|f| f.wal.iter())
            .filter(|r| may_be_in_wal(r, wal_floors))
            .copied()
            .collect();
        let tombstone_wal = union_wal(&still_in_wal);
        // Only tombstones left, and all still needed: nothing to change.
        if group.iter().all(|f| f.rows == 0) && !tombstone_wal.is_empty() {
            let kept = union_wal(group.iter().flat_map(|f| f.wal.iter()));
            if group.len() == 1 && kept == tombstone_wal {
                continue;
            }
        }
        out.push(Drop {
            partition: p,
            files: group,
            tombstone_wal,
        });
    }
    out
}

/// Compaction: sealed partitions whose file count merging can lower, or whose bytes are
/// mostly in files no compaction wrote (a flush's or a delete's, at zstd level 1; a
/// flush's without a column index), which a rewrite stores as compaction does: a lone
/// flushed file is rewritten once, while a small late file beside a full compacted one does
/// not make the whole partition be rewritten.
pub fn plan_compaction(files: &[FileMeta], policy: &Policy) -> Vec<Compaction> {
    if !policy.compact {
        return Vec::new();
    }
    let mut out = Vec::new();
    // Packed files some of whose measurements left (a compaction or delete of theirs).
    let mut live_entries: HashMap<&str, u32> = HashMap::new();
    for f in files.iter().filter(|f| f.packed.is_some()) {
        *live_entries.entry(f.path.as_str()).or_default() += 1;
    }
    let holey = |f: &FileMeta| {
        f.packed
            .is_some_and(|p| live_entries.get(f.path.as_str()).copied().unwrap_or(0) < p.row_groups)
    };
    // Small measurements of one db and partition, packed together (`storage::packed`).
    let mut small: BTreeMap<(String, i64), Vec<Partition>> = BTreeMap::new();
    for (p, group) in by_partition(files) {
        if !policy.filters.admits_series(&p.db, &p.measurement)
            || !policy.filters.admits_partition(p.start)
            || !policy.is_sealed(p.start)
            || group.iter().all(|f| f.rows == 0)
        {
            continue;
        }
        if is_small(&group) {
            small
                .entry((p.db.clone(), p.start))
                .or_default()
                .push((p, group));
            continue;
        }
        // A packed file that measurements left still holds their rows: rewritten.
        let force = group.iter().any(holey);
        out.extend(compaction_of(p, group, policy, force));
    }
    for ((db, start), mut all) in small {
        // At most a file's worth of measurements a unit (they are merged in memory).
        while !all.is_empty() {
            let rest = all.split_off(all.len().min(crate::storage::packed::MAX_PARTS));
            let parts = std::mem::replace(&mut all, rest);
            plan_pack(&mut out, (&db, start), parts, policy, &holey);
        }
    }
    out
}

/// The packing of the small measurements `parts` of a db's partition (see
/// [`plan_compaction`]).
fn plan_pack(
    out: &mut Vec<Compaction>,
    (db, start): (&str, i64),
    parts: Vec<Partition>,
    policy: &Policy,
    holey: &dyn Fn(&FileMeta) -> bool,
) {
    if parts.len() < 2 {
        // Nothing to pack it with: compacted as any measurement.
        for (p, group) in parts {
            let force = group.iter().any(holey);
            out.extend(compaction_of(p, group, policy, force));
        }
        return;
    }
    let mut inputs: Vec<FileMeta> = parts.into_iter().flat_map(|(_, g)| g).collect();
    inputs.sort_by_key(|f| f.seq);
    // Stable once one compaction packed them all (in one file, or several where column
    // types differ) and none left its files.
    let tokens: BTreeSet<Option<String>> = inputs
        .iter()
        .map(
            |f| match crate::storage::paths::parse_data_file(std::path::Path::new(&f.path)) {
                Some(crate::storage::paths::DataFileName::Compacted(_, t))
                    if f.packed.is_some() =>
                {
                    Some(t)
                }
                _ => None,
            },
        )
        .collect();
    let packed_once = tokens.len() == 1 && tokens.iter().all(Option::is_some);
    if packed_once && !inputs.iter().any(holey) {
        return;
    }
    out.push(Compaction {
        pack: true,
        partition: PartitionId {
            db: db.to_string(),
            measurement: crate::storage::paths::PACKED_DIR.to_string(),
            start,
        },
        rows_in: inputs.iter().map(|f| f.rows).sum(),
        bytes_in: inputs.iter().map(|f| f.bytes).sum(),
        est_files_out: 1,
        inputs,
    });
}

/// A measurement's partition and its files.
type Partition = (PartitionId, Vec<FileMeta>);

/// Whether a measurement's files of a partition are to be packed with other measurements'
/// (`storage::packed`): few rows even before duplicates merge, few columns, and only
/// files a flush wrote or packed ones (a measurement a compaction or a rollup wrote a file
/// of its own for keeps it, so that a rerun changes nothing).
fn is_small(group: &[FileMeta]) -> bool {
    if group.iter().any(|f| {
        f.packed.is_none() && crate::storage::paths::is_compacted(std::path::Path::new(&f.path))
    }) {
        return false;
    }
    let rows: u64 = group.iter().map(|f| f.rows).sum();
    let columns: BTreeSet<&str> = group
        .iter()
        .flat_map(|f| f.columns.iter().map(|(n, _)| n.as_str()))
        .collect();
    let names = group.first().map_or(0, |f| f.measurement.len())
        + columns.iter().map(|c| c.len()).sum::<usize>();
    rows <= crate::storage::packed::MAX_COMPACTED_PART_ROWS as u64
        && columns.len() < crate::storage::packed::MAX_COLUMNS
        && names <= crate::storage::packed::MAX_NAME_BYTES
        && !columns.contains(crate::storage::packed::MEASUREMENT_COLUMN)
}

/// The compaction of one measurement's partition, if it needs one (see [`plan_compaction`]);
/// `force`: whether or not it does.
fn compaction_of(
    p: PartitionId,
    group: Vec<FileMeta>,
    policy: &Policy,
    force: bool,
) -> Option<Compaction> {
    let target = policy.target_bytes.max(1);
    let bytes_in: u64 = group.iter().map(|f| f.bytes).sum();
    let est = bytes_in.div_ceil(target).max(1);
    let fewer = group.len() >= 2 && group.len() as u64 > est;
    let uncompacted_bytes: u64 = group
        .iter()
        .filter(|f| {
            f.rows > 0 && !crate::storage::paths::is_compacted(std::path::Path::new(&f.path))
        })
        .map(|f| f.bytes)
        .sum();
    let uncompacted = uncompacted_bytes > 0 && uncompacted_bytes * 2 >= bytes_in;
    if !fewer && !uncompacted && !force {
        return None;
    }
    Some(Compaction {
        pack: false,
        partition: p,
        rows_in: group.iter().map(|f| f.rows).sum(),
        bytes_in,
        est_files_out: est,
        inputs: group,
    })
}

/// The numeric fields of a set of files, by name (first type seen wins).
fn numeric_fields(files: &[FileMeta]) -> BTreeMap<String, FieldType> {
    let mut out = BTreeMap::new();
    for f in files {
        for (name, kind) in &f.columns {
            if let ColumnKind::Field(t) = kind
                && is_numeric(*t)
            {
                out.entry(name.clone()).or_insert(*t);
            }
        }
    }
    out
}

/// Downsampling: windows of source measurements whose rollup is missing or stale.
pub fn plan_rollups(files: &[FileMeta], policy: &Policy) -> (Vec<Rollup>, Vec<String>) {
    let mut notes = Vec::new();
    let Some(ds) = &policy.downsample else {
        return (Vec::new(), notes);
    };
    let pd = policy.partition_duration_ns;
    let window = match ds.window(pd) {
        Ok(w) => w,
        Err(e) => {
            notes.push(e.to_string());
            return (Vec::new(), notes);
        }
    };
    let suffix = format!("_{}", ds.suffix);
    let horizon = policy.now_ns.saturating_sub(ds.older_than_ns);
    // (db, source measurement, window start) → (sources, partitions seen).
    type Key = (String, String, i64);
    let mut windows: BTreeMap<Key, (Vec<FileMeta>, BTreeSet<i64>)> = BTreeMap::new();
    // (db, measurement, window start) → files, to find existing rollups.
    let mut all: HashMap<Key, Vec<FileMeta>> = HashMap::new();
    for f in files {
        let ws = f.partition_start.div_euclid(window) * window;
        all.entry((f.db.clone(), f.measurement.clone(), ws))
            .or_default()
            .push(f.clone());
        if f.rows == 0
            || f.measurement.ends_with(&suffix)
            || !policy.filters.admits_series(&f.db, &f.measurement)
        {
            continue;
        }
        let e = windows
            .entry((f.db.clone(), f.measurement.clone(), ws))
            .or_default();
        e.0.push(f.clone());
        e.1.insert(f.partition_start);
    }
    let mut out = Vec::new();
    for ((db, m, ws), (mut sources, parts)) in windows {
        let end = ws.saturating_add(window);
        if !policy.filters.partitions.is_empty() && !parts.iter().any(|p| policy.filters.names(*p))
        {
            continue;
        }
        if end > horizon || !parts.iter().all(|p| policy.is_sealed(*p)) {
            continue;
        }
        let target = ds.target(&m);
        sources.sort_by_key(|f| f.seq);
        let mut existing = all
            .get(&(db.clone(), target.clone(), ws))
            .cloned()
            .unwrap_or_default();
        existing.sort_by_key(|f| f.seq);
        let newest_source = sources.iter().map(|f| f.seq).max().unwrap_or(0);
        let have: BTreeSet<&str> = existing
            .iter()
            .flat_map(|f| f.columns.iter().map(|(n, _)| n.as_str()))
            .collect();
        let complete = numeric_fields(&sources).keys().all(|field| {
            ds.aggs
                .iter()
                .all(|a| have.contains(rollup_column(field, *a).as_str()))
        });
        let up_to_date =
            !existing.is_empty() && existing.iter().all(|f| f.seq > newest_source) && complete;
        if up_to_date {
            continue;
        }
        if numeric_fields(&sources).is_empty() {
            notes.push(format!(
                "db {db} measurement {m:?} window at {ws}: no numeric field; not rolled up"
            ));
            continue;
        }
        out.push(Rollup {
            db,
            source_measurement: m,
            target_measurement: target,
            window_start: ws,
            window_ns: window,
            sources,
            existing,
            output_partition: ws,
        });
    }
    (out, notes)
}

/// All phases for one region, each on the files the previous one leaves (a rollup is
/// planned on the files before compaction: `exec` re-plans it on the compacted ones).
pub fn plan_region(
    files: &[FileMeta],
    wal_floors: &BTreeMap<usize, u64>,
    policy: &Policy,
) -> RegionPlan {
    let drops = plan_retention(files, wal_floors, policy);
    let dropped: BTreeSet<u64> = drops
        .iter()
        .flat_map(|d| d.files.iter().map(|f| f.seq))
        .collect();
    let left: Vec<FileMeta> = files
        .iter()
        .filter(|f| !dropped.contains(&f.seq))
        .cloned()
        .collect();
    let compactions = plan_compaction(&left, policy);
    let (rollups, notes) = plan_rollups(&left, policy);
    RegionPlan {
        drops,
        compactions,
        rollups,
        notes,
    }
}

/// The partition directory levels of a file path (`part_day=…` = 1, `/part_hour=…` = 2,
/// `/part_minute=…` = 3), or `None` for a path without them.
fn partition_depth(path: &str) -> Option<usize> {
    let keys = [PARTITION_KEY_DAY, PARTITION_KEY_HOUR, PARTITION_KEY_MINUTE];
    let n = path
        .split('/')
        .filter(|c| {
            keys.iter()
                .any(|k| c.strip_prefix(k).is_some_and(|r| r.starts_with('=')))
        })
        .count();
    (n > 0).then_some(n)
}

/// Guesses the partition duration when no config says it: the directory depth gives the
/// unit (day → 1d, hour → 1h, minute → 1m), which is exact for the usual durations (1d, 1h,
/// 1m). The guess must then pass [`check_layout`]; a 2h partition, for instance, has hour
/// directories but files longer than 1h, and is refused: pass `--config` or
/// `--partition-duration` then. `None` when there are no files.
pub fn infer_partition_duration<'a>(
    files: impl IntoIterator<Item = &'a FileMeta>,
) -> Result<Option<i64>, PlanError> {
    let mut depth: Option<(usize, &str)> = None;
    for f in files {
        let d = partition_depth(&f.path).ok_or_else(|| {
            PlanError::Layout(format!("file {} has no partition directory", f.path))
        })?;
        match depth {
            None => depth = Some((d, &f.path)),
            Some((d0, p0)) if d0 != d => {
                return Err(PlanError::Layout(format!(
                    "files {p0} and {} have different partition depths",
                    f.path
                )));
            }
            Some(_) => {}
        }
    }
    Ok(depth.map(|(d, _)| match d {
        1 => DAY_NS,
        2 => HOUR_NS,
        _ => MINUTE_NS,
    }))
}

/// Checks that every file lies inside an aligned partition of `duration`, so sealing,
/// retention and rollup windows computed with it are right.
pub fn check_layout<'a>(
    files: impl IntoIterator<Item = &'a FileMeta>,
    duration: i64,
) -> Result<(), PlanError> {
    if duration <= 0 {
        return Err(PlanError::Layout(format!(
            "partition duration {duration} ns is not positive"
        )));
    }
    for f in files {
        if f.partition_start.rem_euclid(duration) != 0 {
            return Err(PlanError::Layout(format!(
                "file {} starts its partition at {} ns, not a multiple of the partition \
                 duration {duration} ns (was partition_duration changed?)",
                f.path, f.partition_start
            )));
        }
        if f.rows > 0
            && (f.min_time < f.partition_start
                || f.max_time >= f.partition_start.saturating_add(duration))
        {
            return Err(PlanError::Layout(format!(
                "file {} holds times [{}, {}] outside its partition [{}, +{duration} ns)",
                f.path, f.min_time, f.max_time, f.partition_start
            )));
        }
    }
    Ok(())
}

/// Parses a time given on the command line: integer ns since the epoch, RFC 3339,
/// `YYYY-MM-DD`, `YYYY-MM-DDTHH`, `YYYY-MM-DDTHH:MM`, or a partition directory
/// `part_day=YYYY-MM-DD[/part_hour=HH[/part_minute=MM]]`. Times without a zone are UTC.
pub fn parse_time(text: &str) -> Result<i64, PlanError> {
    let t = text.trim().trim_end_matches('/');
    let err = |reason: &str| PlanError::Time {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    if let Ok(ns) = t.parse::<i64>() {
        return Ok(ns);
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return dt
            .timestamp_nanos_opt()
            .ok_or_else(|| err("out of the nanosecond range"));
    }
    let text_form = if t.starts_with(PARTITION_KEY_DAY) {
        let mut day = None;
        let mut hour = "00";
        let mut minute = "00";
        for part in t.split('/') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| err("expected key=value directory names"))?;
            match k {
                _ if k == PARTITION_KEY_DAY => day = Some(v),
                _ if k == PARTITION_KEY_HOUR => hour = v,
                _ if k == PARTITION_KEY_MINUTE => minute = v,
                _ => return Err(err("unknown partition key")),
            }
        }
        format!("{}T{hour}:{minute}", day.ok_or_else(|| err("no part_day"))?)
    } else if t.len() == 10 {
        format!("{t}T00:00")
    } else if t.len() == 13 {
        format!("{t}:00")
    } else {
        t.to_string()
    };
    let naive = NaiveDateTime::parse_from_str(&text_form, "%Y-%m-%dT%H:%M")
        .or_else(|_| {
            NaiveDate::parse_from_str(&text_form, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        })
        .map_err(|_| {
            err("use ns since the epoch, RFC 3339, YYYY-MM-DD[THH[:MM]] or a part_day=… path")
        })?;
    naive
        .and_utc()
        .timestamp_nanos_opt()
        .ok_or_else(|| err("out of the nanosecond range"))
}

/// The start of the partition of `duration` holding `t`.
pub fn partition_of(t: i64, duration: i64) -> i64 {
    PartitionStart::of(t, duration).0
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_NS;
    const NOW: i64 = 100 * H;

    fn file(seq: u64, m: &str, start: i64, bytes: u64) -> FileMeta {
        FileMeta {
            seq,
            path: format!("db/{m}/part_day=1970-01-01/part_hour=00/{seq:020}.parquet"),
            db: "db".into(),
            measurement: m.into(),
            partition_start: start,
            min_time: start,
            max_time: start + H - 1,
            // More than a measurement packed with others holds (see `packs_small_...`).
            rows: 10_000,
            bytes,
            columns: vec![
                ("host".into(), ColumnKind::Tag),
                ("x".into(), ColumnKind::Field(FieldType::Float)),
                ("s".into(), ColumnKind::Field(FieldType::String)),
            ],
            wal: vec![WalRange {
                shard: 0,
                min_seq: seq * 10,
                max_seq: seq * 10 + 5,
            }],
            packed: None,
        }
    }

    /// `file` as a compaction names its outputs.
    fn compacted(seq: u64, m: &str, start: i64, bytes: u64) -> FileMeta {
        let mut f = file(seq, m, start, bytes);
        f.path = format!("db/{m}/part_day=1970-01-01/part_hour=00/{seq:020}~ctok-0.parquet");
        f
    }

    fn policy() -> Policy {
        Policy {
            now_ns: NOW,
            partition_duration_ns: H,
            grace_ns: 10 * MINUTE_NS,
            target_bytes: 1000,
            filters: Filters::default(),
            compact: true,
            retain_ns: None,
            downsample: None,
        }
    }

    #[test]
    fn sealed_means_past_end_plus_grace_or_named() {
        let mut p = policy();
        assert!(p.is_sealed(NOW - 2 * H));
        // Ended 50 minutes ago: sealed; ended 5 minutes ago: within the grace period.
        assert!(p.is_sealed(NOW - H - 50 * MINUTE_NS));
        assert!(!p.is_sealed(NOW - H + 5 * MINUTE_NS - 10 * MINUTE_NS));
        assert!(!p.is_sealed(NOW));
        p.filters.partitions = vec![NOW];
        assert!(p.is_sealed(NOW), "named partitions are sealed");
    }

    #[test]
    fn compacts_sealed_partitions_that_can_lose_files() {
        let files = vec![
            file(1, "cpu", 0, 100),
            file(5, "cpu", 0, 100),
            file(3, "cpu", 0, 100),
            compacted(2, "mem", 0, 100), // alone and compacted: nothing to do
            file(4, "cpu", NOW, 100),
            file(6, "cpu", NOW, 100), // live partition
        ];
        let plan = plan_compaction(&files, &policy());
        assert_eq!(plan.len(), 1);
        let c = &plan[0];
        assert_eq!(c.partition.measurement, "cpu");
        assert_eq!(c.partition.start, 0);
        let seqs: Vec<u64> = c.inputs.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![1, 3, 5], "all files, oldest first");
        assert_eq!((c.bytes_in, c.rows_in, c.est_files_out), (300, 30_000, 1));
    }

    /// The small measurements of a sealed partition are packed together in one unit (named
    /// `~packed`); once one compacted packed file holds them all, nothing more is done,
    /// unless a measurement left it (dead rows) or a new file came. A small measurement
    /// alone is compacted as any other.
    #[test]
    fn packs_small_measurements_together_once() {
        let small = |seq, m: &str| {
            let mut f = file(seq, m, 0, 100);
            f.rows = 100;
            f
        };
        let files = vec![
            small(1, "a"),
            small(2, "b"),
            small(3, "a"),
            file(4, "big", 0, 5000),
        ];
        let plan = plan_compaction(&files, &policy());
        let names: Vec<&str> = plan
            .iter()
            .map(|c| c.partition.measurement.as_str())
            .collect();
        assert_eq!(names, vec!["big", crate::storage::paths::PACKED_DIR]);
        let seqs: Vec<u64> = plan[1].inputs.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);

        let packed = |seq, m: &str, g, of| {
            let mut f = small(seq, m);
            f.path = format!(
                "db/~packed/part_day=1970-01-01/part_hour=00/{:020}~ctok-0.parquet",
                3
            );
            f.packed = Some(crate::storage::file_meta::Packed {
                row_group: g,
                file_bytes: 500,
                row_groups: of,
            });
            f
        };
        let done = vec![packed(3, "a", 0, 2), packed(2, "b", 1, 2)];
        assert!(plan_compaction(&done, &policy()).is_empty(), "stable");
        let holey = vec![packed(3, "a", 0, 3), packed(2, "b", 1, 3)];
        assert_eq!(
            plan_compaction(&holey, &policy()).len(),
            1,
            "dead rows rewritten"
        );
        let late = vec![packed(3, "a", 0, 2), packed(2, "b", 1, 2), small(9, "b")];
        assert_eq!(
            plan_compaction(&late, &policy()).len(),
            1,
            "a late file packed in"
        );
        let alone = plan_compaction(&[small(1, "a"), small(2, "a")], &policy());
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].partition.measurement, "a");
        assert!(!alone[0].pack);
        // One run's two packed files (types that could not share one): stable too.
        let mut other = packed(4, "c", 0, 1);
        other.path = other.path.replace("-0.parquet", "-1.parquet");
        let two = vec![packed(3, "a", 0, 2), packed(2, "b", 1, 2), other];
        assert!(
            plan_compaction(&two, &policy()).is_empty(),
            "two files, one run"
        );
        // The last measurement in a file others left: rewritten alone.
        let last = plan_compaction(&[packed(3, "a", 0, 2)], &policy());
        assert_eq!(last.len(), 1);
        assert!(!last[0].pack && last[0].partition.measurement == "a");
        // A larger measurement in such a file too.
        let mut grown = packed(3, "a", 0, 2);
        grown.rows = 2_000;
        assert_eq!(plan_compaction(&[grown], &policy()).len(), 1);
    }

    /// A partition's only file, written by a flush, is rewritten once as compaction stores
    /// files (level 19, whole-column pages, the column index); then left alone.
    #[test]
    fn a_lone_flushed_file_is_rewritten_once() {
        let plan = plan_compaction(&[file(2, "mem", 0, 100)], &policy());
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].est_files_out, 1);
        assert!(plan_compaction(&[compacted(2, "mem", 0, 100)], &policy()).is_empty());
        // A small late file beside a full compacted one: the partition is left as it is.
        let late = [compacted(2, "mem", 0, 1000), file(9, "mem", 0, 50)];
        assert!(plan_compaction(&late, &policy()).is_empty());
    }

    #[test]
    fn compaction_output_is_stable_under_rerun() {
        // Big files: 3 files of 900 bytes with a 1000-byte target: ceil(2700/1000) = 3;
        // flushed, they are rewritten once; compacted, left alone.
        let big: Vec<FileMeta> = (1..=3).map(|s| file(s, "cpu", 0, 900)).collect();
        assert_eq!(plan_compaction(&big, &policy())[0].est_files_out, 3);
        let big: Vec<FileMeta> = (1..=3).map(|s| compacted(s, "cpu", 0, 900)).collect();
        assert!(plan_compaction(&big, &policy()).is_empty());
        // What a compaction leaves: all but the last >= target.
        let out = vec![
            compacted(7, "cpu", 0, 1000),
            compacted(8, "cpu", 0, 1200),
            compacted(9, "cpu", 0, 10),
        ];
        assert!(plan_compaction(&out, &policy()).is_empty());
        // Five small ones become (at most) one.
        let small: Vec<FileMeta> = (1..=5).map(|s| file(s, "cpu", 0, 150)).collect();
        let plan = plan_compaction(&small, &policy());
        assert_eq!(plan[0].est_files_out, 1);
        let mut off = policy();
        off.compact = false;
        assert!(plan_compaction(&small, &off).is_empty());
    }

    #[test]
    fn filters_narrow_the_plan() {
        let files = vec![
            file(1, "cpu", 0, 1),
            file(2, "cpu", 0, 1),
            file(3, "mem", 0, 1),
            file(4, "mem", 0, 1),
            file(5, "cpu", H, 1),
            file(6, "cpu", H, 1),
        ];
        let mut p = policy();
        p.filters.measurements = vec!["cpu".into()];
        assert_eq!(plan_compaction(&files, &p).len(), 2);
        p.filters.partitions = vec![H];
        let plan = plan_compaction(&files, &p);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].partition.start, H);
        p.filters.dbs = vec!["other".into()];
        assert!(plan_compaction(&files, &p).is_empty());
    }

    #[test]
    fn wal_union_merges_overlaps_and_keeps_gaps() {
        let r = |shard, a, b| WalRange {
            shard,
            min_seq: a,
            max_seq: b,
        };
        let u = union_wal(&[r(0, 10, 12), r(1, 1, 3), r(0, 1, 5), r(0, 6, 8), r(0, 4, 4)]);
        assert_eq!(u, vec![r(0, 1, 8), r(0, 10, 12), r(1, 1, 3)]);
        assert!(union_wal(&[]).is_empty());
    }

    #[test]
    fn retention_drops_old_partitions_and_keeps_tombstones_while_the_wal_holds_them() {
        let files = vec![
            file(1, "cpu", 0, 1),
            file(2, "cpu", 0, 1),
            file(3, "cpu", 52 * H, 1),
            file(4, "cpu", 98 * H, 1),
        ];
        let mut p = policy();
        // Horizon 52h: the partition [52h, 53h) is not old enough.
        p.retain_ns = Some(48 * H);
        // Shard 0's oldest WAL segment starts at seq 15: file 1 (10..15) may be in it,
        // file 2 (20..25) too; file 3 too but it is not old enough.
        let floors = BTreeMap::from([(0usize, 15u64)]);
        let drops = plan_retention(&files, &floors, &p);
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].partition.start, 0);
        assert_eq!(drops[0].files.len(), 2);
        assert_eq!(
            drops[0].tombstone_wal,
            vec![
                WalRange {
                    shard: 0,
                    min_seq: 10,
                    max_seq: 15
                },
                WalRange {
                    shard: 0,
                    min_seq: 20,
                    max_seq: 25
                }
            ]
        );
        // WAL gone past them: no tombstone.
        let floors = BTreeMap::from([(0usize, 1000u64)]);
        assert!(
            plan_retention(&files, &floors, &p)[0]
                .tombstone_wal
                .is_empty()
        );
        assert!(
            plan_retention(&files, &BTreeMap::new(), &p)[0]
                .tombstone_wal
                .is_empty()
        );
        // The partition ending exactly at the horizon is dropped; one after is not.
        p.retain_ns = Some(NOW - 53 * H);
        assert_eq!(plan_retention(&files, &BTreeMap::new(), &p).len(), 2);
        p.retain_ns = None;
        assert!(plan_retention(&files, &BTreeMap::new(), &p).is_empty());
    }

    #[test]
    fn a_needed_tombstone_is_left_alone_and_a_stale_one_is_removed() {
        let mut t = file(9, "cpu", 0, 1);
        t.rows = 0;
        t.columns.clear();
        let mut p = policy();
        p.retain_ns = Some(H);
        let floors = BTreeMap::from([(0usize, 0u64)]);
        assert!(plan_retention(std::slice::from_ref(&t), &floors, &p).is_empty());
        let floors = BTreeMap::from([(0usize, 1000u64)]);
        let d = plan_retention(std::slice::from_ref(&t), &floors, &p);
        assert_eq!(d.len(), 1);
        assert!(d[0].tombstone_wal.is_empty());
        // Tombstones alone are never "compacted".
        let mut t2 = t.clone();
        t2.seq = 10;
        assert!(plan_compaction(&[t, t2], &policy()).is_empty());
    }

    fn ds(spec: &str, older: i64) -> Downsample {
        Downsample::parse(spec, older).unwrap()
    }

    #[test]
    fn downsample_spec() {
        let d = ds("1m:mean,max,mean", 0);
        assert_eq!(d.every_ns, MINUTE_NS);
        assert_eq!(d.aggs, vec![Agg::Mean, Agg::Max]);
        assert_eq!(d.target("cpu"), "cpu_1m");
        assert_eq!(d.window(H).unwrap(), H);
        assert_eq!(ds("1d:count", 0).window(H).unwrap(), DAY_NS);
        assert!(ds("7m:count", 0).window(H).is_err());
        for bad in [
            "1m",
            "1m:",
            "1m:median",
            "x:mean",
            ":mean",
            "1m/2:mean",
            "0s:sum",
        ] {
            assert!(Downsample::parse(bad, 0).is_err(), "{bad}");
        }
        assert!(Downsample::parse("1m:sum", -1).is_err());
        assert_eq!(Agg::Count.output_type(FieldType::Float), FieldType::Integer);
        assert_eq!(Agg::Mean.output_type(FieldType::Integer), FieldType::Float);
        assert_eq!(
            Agg::Max.output_type(FieldType::UInteger),
            FieldType::UInteger
        );
    }

    fn rollup_file(seq: u64, start: i64, aggs: &[&str]) -> FileMeta {
        let mut f = file(seq, "cpu_1m", start, 1);
        f.columns = vec![("host".into(), ColumnKind::Tag)];
        for a in aggs {
            f.columns
                .push((format!("x_{a}"), ColumnKind::Field(FieldType::Float)));
        }
        f.wal.clear();
        f
    }

    #[test]
    fn rollups_pick_old_sealed_windows_once() {
        let files = vec![
            file(1, "cpu", 0, 1),
            file(2, "cpu", 0, 1),
            file(3, "cpu", H, 1),
            file(4, "cpu", 99 * H, 1), // too recent
        ];
        let mut p = policy();
        p.downsample = Some(ds("1m:mean,max", 90 * H));
        let (plan, _) = plan_rollups(&files, &p);
        let starts: Vec<i64> = plan.iter().map(|r| r.window_start).collect();
        assert_eq!(starts, vec![0, H]);
        assert_eq!(plan[0].target_measurement, "cpu_1m");
        assert_eq!(plan[0].sources.len(), 2);
        assert!(plan[0].existing.is_empty());

        // After a rollup of window 0 (seq 10 > sources): up to date, skipped.
        let mut after = files.clone();
        after.push(rollup_file(10, 0, &["mean", "max"]));
        let (plan, _) = plan_rollups(&after, &p);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].window_start, H);
        // The rollup itself is never a source.
        assert!(plan.iter().all(|r| r.source_measurement == "cpu"));

        // A late source file (seq 11) makes it stale; the old rollup is merged and replaced.
        let mut late = after.clone();
        late.push(file(11, "cpu", 0, 1));
        let (plan, _) = plan_rollups(&late, &p);
        assert_eq!(plan[0].window_start, 0);
        assert_eq!(plan[0].existing.len(), 1);

        // A new aggregate asked for: stale too.
        p.downsample = Some(ds("1m:mean,max,sum", 90 * H));
        let (plan, _) = plan_rollups(&after, &p);
        assert_eq!(plan.len(), 2);
    }

    #[test]
    fn rollup_windows_longer_than_partitions_need_every_partition_sealed() {
        // 1d rollups over 1h partitions: the window is the day.
        let files = vec![file(1, "cpu", 0, 1), file(2, "cpu", 23 * H, 1)];
        let mut p = policy();
        p.now_ns = 24 * H + 5 * MINUTE_NS; // the last hour ended 5 min ago: within grace
        p.downsample = Some(ds("1d:count", 0));
        assert!(plan_rollups(&files, &p).0.is_empty());
        p.now_ns = 25 * H;
        let (plan, _) = plan_rollups(&files, &p);
        assert_eq!(plan.len(), 1);
        assert_eq!((plan[0].window_start, plan[0].window_ns), (0, DAY_NS));
        assert_eq!(plan[0].sources.len(), 2);
        // Naming one partition of the window selects the whole window.
        p.filters.partitions = vec![23 * H];
        assert_eq!(plan_rollups(&files, &p).0[0].sources.len(), 2);
        p.filters.partitions = vec![48 * H];
        assert!(plan_rollups(&files, &p).0.is_empty());
    }

    #[test]
    fn region_plan_drops_before_compacting() {
        let files = vec![
            file(1, "cpu", 0, 1),
            file(2, "cpu", 0, 1),
            file(3, "cpu", 60 * H, 1),
            file(4, "cpu", 60 * H, 1),
        ];
        let mut p = policy();
        p.retain_ns = Some(48 * H);
        let plan = plan_region(&files, &BTreeMap::new(), &p);
        assert_eq!(plan.drops.len(), 1);
        assert_eq!(plan.compactions.len(), 1);
        assert_eq!(plan.compactions[0].partition.start, 60 * H);
        assert_eq!(plan.units(), 2);
    }

    #[test]
    fn partition_duration_inference_and_layout_check() {
        let mut a = file(1, "cpu", 0, 1);
        a.path = "db/cpu/part_day=1970-01-01/part_hour=00/1.parquet".into();
        let mut b = file(2, "cpu", H, 1);
        b.path = "db/cpu/part_day=1970-01-01/part_hour=01/2.parquet".into();
        assert_eq!(infer_partition_duration([&a, &b]).unwrap(), Some(H));
        assert_eq!(infer_partition_duration([]).unwrap(), None);
        let mut d = a.clone();
        d.path = "db/cpu/part_day=1970-01-01/1.parquet".into();
        assert_eq!(infer_partition_duration([&d]).unwrap(), Some(DAY_NS));
        assert!(infer_partition_duration([&a, &d]).is_err());
        let mut m = a.clone();
        m.path = "db/cpu/part_day=1970-01-01/part_hour=00/part_minute=15/1.parquet".into();
        assert_eq!(infer_partition_duration([&m]).unwrap(), Some(MINUTE_NS));
        let mut none = a.clone();
        none.path = "db/cpu/1.parquet".into();
        assert!(infer_partition_duration([&none]).is_err());

        assert!(check_layout([&a, &b], H).is_ok());
        // A 2h partition seen as 1h: its rows run past the hour.
        let mut two = file(3, "cpu", 2 * H, 1);
        two.max_time = 4 * H - 1;
        assert!(check_layout([&two], H).is_err());
        assert!(check_layout([&two], 2 * H).is_ok());
        // Misaligned start.
        assert!(check_layout([&b], 2 * H).is_err());
        assert!(check_layout([&a], 0).is_err());
    }

    #[test]
    fn times_on_the_command_line() {
        let t = 1_795_784_400_000_000_000i64; // 2026-11-27T13:00:00Z
        assert_eq!(parse_time(&t.to_string()).unwrap(), t);
        assert_eq!(parse_time("2026-11-27T13:00:00Z").unwrap(), t);
        assert_eq!(parse_time("2026-11-27T14:00:00+01:00").unwrap(), t);
        assert_eq!(parse_time("2026-11-27T13").unwrap(), t);
        assert_eq!(parse_time("2026-11-27T13:00").unwrap(), t);
        assert_eq!(parse_time("2026-11-27").unwrap(), t - 13 * H);
        assert_eq!(parse_time("part_day=2026-11-27/part_hour=13").unwrap(), t);
        assert_eq!(parse_time("part_day=2026-11-27/part_hour=13/").unwrap(), t);
        assert_eq!(
            parse_time("part_day=2026-11-27/part_hour=13/part_minute=15").unwrap(),
            t + 15 * MINUTE_NS
        );
        assert_eq!(parse_time("part_day=2026-11-27").unwrap(), t - 13 * H);
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "part_day=x",
            "part_day=2026-11-27/x=1",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(partition_of(t + 5, H), t);
    }
}
