//! The series catalog: every series (tag set) of every (db, measurement), in memory, for
//! schema discovery (`SHOW TAG VALUES`, `SHOW SERIES`, `SHOW MEASUREMENTS WHERE …`,
//! cardinalities) without reading data.
//!
//! Fed by the shards as a block first sees a series (so points not flushed yet count) and,
//! at start-up, by reading the tag columns of every live file in the background
//! ([`SeriesCatalog::mark_loaded`] once done; readers that need completeness wait for it).
//! Adding is idempotent: the same series from many blocks and files is stored once.
//!
//! Per measurement, a series is a vector of value ids, one per tag key in the order keys
//! were first seen ([`ABSENT`] where the series lacks the key), and each (key, value) has a
//! posting list of series ids (roaring bitmaps), so `WITH KEY = host WHERE region = 'eu'`
//! intersects two bitmaps and lists the values whose postings meet the result.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::hash::{Hash, Hasher};

use parking_lot::RwLock;
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

/// The value id of a key a series lacks.
pub const ABSENT: u32 = u32::MAX;

/// The series carrying one tag value: most values of a high-cardinality key (an id, a
/// container name) have one series, kept inline rather than in a bitmap.
#[derive(Debug, Clone, Default)]
enum Postings {
    #[default]
    Empty,
    One(u32),
    Many(RoaringBitmap),
}

impl Postings {
    fn insert(&mut self, sid: u32) {
        match self {
            Postings::Empty => *self = Postings::One(sid),
            Postings::One(x) if *x == sid => {}
            Postings::One(x) => {
                let mut b = RoaringBitmap::new();
                b.insert(*x);
                b.insert(sid);
                *self = Postings::Many(b);
            }
            Postings::Many(b) => {
                b.insert(sid);
            }
        }
    }

    fn remove_all(&mut self, sids: &RoaringBitmap) {
        match self {
            Postings::One(x) if sids.contains(*x) => *self = Postings::Empty,
            Postings::Many(b) => {
                *b -= sids;
                if b.is_empty() {
                    *self = Postings::Empty;
                }
            }
            _ => {}
        }
    }

    fn meets(&self, within: Option<&RoaringBitmap>) -> bool {
        match (self, within) {
            (Postings::Empty, _) => false,
            (_, None) => true,
            (Postings::One(x), Some(w)) => w.contains(*x),
            (Postings::Many(b), Some(w)) => !b.is_disjoint(w),
        }
    }

    fn or_into(&self, out: &mut RoaringBitmap) {
        match self {
            Postings::Empty => {}
            Postings::One(x) => {
                out.insert(*x);
            }
            Postings::Many(b) => *out |= b,
        }
    }

    fn sub_from(&self, out: &mut RoaringBitmap) {
        match self {
            Postings::Empty => {}
            Postings::One(x) => {
                out.remove(*x);
            }
            Postings::Many(b) => *out -= b,
        }
    }
}

/// One tag key's values: id ↔ string, and the series carrying each value.
#[derive(Default, Debug)]
struct KeyValues {
    values: Vec<Arc<str>>,
    ids: FxHashMap<Arc<str>, u32>,
    postings: Vec<Postings>,
}

/// The series of one measurement.
#[derive(Default, Debug)]
pub struct MeasurementSeries {
    keys: Vec<Arc<str>>,
    key_pos: HashMap<Arc<str>, usize>,
    per_key: Vec<KeyValues>,
    /// Value ids per key position of every series, one after the other (`starts[sid]..
    /// starts[sid + 1]`); trailing [`ABSENT`]s trimmed, so a series has one form.
    ids_flat: Vec<u32>,
    starts: Vec<u32>,
    /// Hash of a series' ids → its sid; series whose hash is taken go to `collisions`.
    by_hash: FxHashMap<u64, u32>,
    collisions: FxHashMap<u64, Vec<u32>>,
    /// Series removed by a drop or delete (their ids are not reused; they are in no posting).
    removed: RoaringBitmap,
    /// Approximate heap bytes held (see [`MeasurementSeries::bytes`]).
    bytes: usize,
}

/// Heap bytes of an allocation of `n` bytes (allocator header and size classes included).
fn heap_bytes(n: usize) -> usize {
    ((n + 16 + 15) & !15).max(32)
}

/// What a measurement costs before its first series: its entry in the catalog, its lock
/// and tables.
const MEASUREMENT_BYTES: usize = 512;
/// What a new tag key costs besides its name: its slot in the key list and position map,
/// and its (empty) value tables.
const KEY_BYTES: usize = 160;
/// What a new tag value costs besides its string: its slot in the value list, its entry in
/// the id map and its posting slot, each with the slack of a growing table.
const VALUE_BYTES: usize = 136;
/// What a new series costs besides its value ids (8 bytes a key with slack): its start,
/// its hash entry.
const SERIES_BYTES: usize = 48;
/// What adding a series to a value's posting costs on average (a bitmap grows by 2 bytes a
/// series, its containers and the first bitmap of a value by more).
const POSTING_BYTES: usize = 4;

fn hash_ids(ids: &[u32]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    ids.hash(&mut h);
    h.finish()
}

impl MeasurementSeries {
    /// Approximate heap bytes held: counted as series, values and keys are added, checked
    /// against heaptrack (1 M one-tag series: 150 MB counted as ~146 B a series). Removing
    /// series frees nothing (their ids stay taken), so this only grows.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn count(&self) -> u32 {
        self.starts.len().saturating_sub(1) as u32
    }

    fn ids_of(&self, sid: u32) -> &[u32] {
        let i = sid as usize;
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.ids_flat[a as usize..b as usize],
            _ => &[],
        }
    }

    fn find(&self, ids: &[u32]) -> Option<u32> {
        let h = hash_ids(ids);
        let first = *self.by_hash.get(&h)?;
        if self.ids_of(first) == ids {
            return Some(first);
        }
        self.collisions
            .get(&h)?
            .iter()
            .copied()
            .find(|sid| self.ids_of(*sid) == ids)
    }

    /// Adds a series given as (key, value) pairs (any order, keys distinct). Returns whether
    /// it was new.
    pub fn add<K: AsRef<str>, V: AsRef<str>>(&mut self, tags: &[(K, V)]) -> bool {
        if self.starts.is_empty() {
            self.starts.push(0);
            self.bytes += MEASUREMENT_BYTES;
        }
        let mut ids: Vec<u32> = vec![ABSENT; self.keys.len()];
        // Look up first: a known series costs no allocation of strings.
        let mut unknown = false;
        for (k, v) in tags {
            match self.key_pos.get(k.as_ref()) {
                Some(&p) => match self.per_key[p].ids.get(v.as_ref()) {
                    Some(&id) => ids[p] = id,
                    None => unknown = true,
                },
                None => unknown = true,
            }
        }
        if !unknown {
            trim(&mut ids);
            if let Some(sid) = self.find(&ids)
                && !self.removed.contains(sid)
            {
                return false;
            }
        }
        for (k, v) in tags {
            let p = match self.key_pos.get(k.as_ref()) {
                Some(&p) => p,
                None => {
                    let key: Arc<str> = Arc::from(k.as_ref());
                    self.bytes += KEY_BYTES + heap_bytes(key.len() + 16);
                    self.keys.push(key.clone());
                    self.key_pos.insert(key, self.keys.len() - 1);
                    self.per_key.push(KeyValues::default());
                    self.keys.len() - 1
                }
            };
            let kv = &mut self.per_key[p];
            let id = match kv.ids.get(v.as_ref()) {
                Some(&id) => id,
                None => {
                    let value: Arc<str> = Arc::from(v.as_ref());
                    self.bytes += VALUE_BYTES + heap_bytes(value.len() + 16);
                    kv.values.push(value.clone());
                    kv.postings.push(Postings::Empty);
                    let id = (kv.values.len() - 1) as u32;
                    kv.ids.insert(value, id);
                    id
                }
            };
            if ids.len() <= p {
                ids.resize(p + 1, ABSENT);
            }
            ids[p] = id;
        }
        trim(&mut ids);
        let sid = match self.find(&ids) {
            // Re-added after a delete: same id, back in its postings.
            Some(sid) => {
                self.removed.remove(sid);
                sid
            }
            None => {
                let sid = self.count();
                self.bytes += SERIES_BYTES + 8 * ids.len();
                self.ids_flat.extend_from_slice(&ids);
                self.starts.push(self.ids_flat.len() as u32);
                let h = hash_ids(&ids);
                if let std::collections::hash_map::Entry::Vacant(e) = self.by_hash.entry(h) {
                    e.insert(sid);
                } else {
                    self.collisions.entry(h).or_default().push(sid);
                }
                sid
            }
        };
        for (p, &id) in ids.iter().enumerate() {
            if id != ABSENT {
                self.per_key[p].postings[id as usize].insert(sid);
                self.bytes += POSTING_BYTES;
            }
        }
        true
    }

    /// The id of the live series with these tags.
    pub fn sid_of<K: AsRef<str>, V: AsRef<str>>(&self, tags: &[(K, V)]) -> Option<u32> {
        let mut ids: Vec<u32> = vec![ABSENT; self.keys.len()];
        for (k, v) in tags {
            let p = *self.key_pos.get(k.as_ref())?;
            ids[p] = *self.per_key[p].ids.get(v.as_ref())?;
        }
        trim(&mut ids);
        self.find(&ids).filter(|sid| !self.removed.contains(*sid))
    }

    /// Whether a series with these tags is live (nothing is added).
    pub fn contains<K: AsRef<str>, V: AsRef<str>>(&self, tags: &[(K, V)]) -> bool {
        let mut ids: Vec<u32> = vec![ABSENT; self.keys.len()];
        for (k, v) in tags {
            let Some(&p) = self.key_pos.get(k.as_ref()) else {
                return false;
            };
            let Some(&id) = self.per_key[p].ids.get(v.as_ref()) else {
                return false;
            };
            ids[p] = id;
        }
        trim(&mut ids);
        self.find(&ids)
            .is_some_and(|sid| !self.removed.contains(sid))
    }

    /// Live series.
    pub fn len(&self) -> u64 {
        self.count() as u64 - self.removed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live series id.
    pub fn all(&self) -> RoaringBitmap {
        let mut all = RoaringBitmap::new();
        all.insert_range(0..self.count());
        all -= &self.removed;
        all
    }

    /// Series whose `key` is `value` (`""`: series lacking the key, as InfluxQL reads it).
    pub fn with_value(&self, key: &str, value: &str) -> RoaringBitmap {
        if value.is_empty() {
            return self.without_key(key);
        }
        let mut out = RoaringBitmap::new();
        if let Some(&p) = self.key_pos.get(key) {
            let kv = &self.per_key[p];
            if let Some(&id) = kv.ids.get(value) {
                kv.postings[id as usize].or_into(&mut out);
            }
        }
        out
    }

    /// Series whose `key` matches `pred` (the empty string stands for "lacks the key").
    pub fn matching(&self, key: &str, pred: impl Fn(&str) -> bool) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        if let Some(&p) = self.key_pos.get(key) {
            let kv = &self.per_key[p];
            for (i, v) in kv.values.iter().enumerate() {
                if pred(v) {
                    kv.postings[i].or_into(&mut out);
                }
            }
        }
        if pred("") {
            out |= self.without_key(key);
        }
        out
    }

    /// Series lacking `key`.
    pub fn without_key(&self, key: &str) -> RoaringBitmap {
        let mut out = self.all();
        if let Some(&p) = self.key_pos.get(key) {
            for postings in &self.per_key[p].postings {
                postings.sub_from(&mut out);
            }
        }
        out
    }

    /// Tag keys carried by at least one of `within` (all live series if `None`), sorted.
    pub fn tag_keys(&self, within: Option<&RoaringBitmap>) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .keys
            .iter()
            .enumerate()
            .filter(|(p, _)| self.per_key[*p].postings.iter().any(|b| b.meets(within)))
            .map(|(_, k)| &**k)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Values of `key` carried by at least one of `within` (all live series if `None`),
    /// sorted.
    pub fn tag_values(&self, key: &str, within: Option<&RoaringBitmap>) -> Vec<&str> {
        let Some(&p) = self.key_pos.get(key) else {
            return Vec::new();
        };
        let kv = &self.per_key[p];
        let mut out: Vec<&str> = kv
            .values
            .iter()
            .zip(&kv.postings)
            .filter(|(_, b)| b.meets(within))
            .map(|(v, _)| &**v)
            .collect();
        out.sort_unstable();
        out
    }

    /// Whether a live series carries `key` = `value` (a hash lookup).
    pub fn has_value(&self, key: &str, value: &str) -> bool {
        let Some(&p) = self.key_pos.get(key) else {
            return false;
        };
        let kv = &self.per_key[p];
        kv.ids
            .get(value)
            .is_some_and(|&id| kv.postings[id as usize].meets(None))
    }

    /// Whether a live series carries a value of `key` that `pred` accepts (unsorted, stops
    /// at the first).
    pub fn any_value(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        let Some(&p) = self.key_pos.get(key) else {
            return false;
        };
        let kv = &self.per_key[p];
        kv.values
            .iter()
            .zip(&kv.postings)
            .any(|(v, b)| b.meets(None) && pred(v))
    }

    /// How many values of `key` the catalog has listed (an upper bound of those live
    /// series carry: a value stays listed after its last series is removed).
    pub fn value_count(&self, key: &str) -> usize {
        self.key_pos
            .get(key)
            .map_or(0, |&p| self.per_key[p].values.len())
    }

    /// The value of `key` in series `sid`, if it has the key.
    pub fn tag_value(&self, sid: u32, key: &str) -> Option<&str> {
        let p = *self.key_pos.get(key)?;
        let id = *self.ids_of(sid).get(p)?;
        (id != ABSENT).then(|| &*self.per_key[p].values[id as usize])
    }

    /// The tags of series `sid`, sorted by key.
    pub fn tags(&self, sid: u32) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .ids_of(sid)
            .iter()
            .enumerate()
            .filter(|(_, id)| **id != ABSENT)
            .map(|(p, id)| (&*self.keys[p], &*self.per_key[p].values[*id as usize]))
            .collect();
        out.sort_unstable();
        out
    }

    /// Removes the series in `sids` (a drop or delete).
    pub fn remove(&mut self, sids: &RoaringBitmap) {
        for kv in &mut self.per_key {
            for b in &mut kv.postings {
                b.remove_all(sids);
            }
        }
        let mut ever = RoaringBitmap::new();
        ever.insert_range(0..self.count());
        self.removed |= sids & &ever;
    }
}

fn trim(ids: &mut Vec<u32>) {
    while ids.last() == Some(&ABSENT) {
        ids.pop();
    }
}

/// A measurement's series, shared between the shards that add and the readers.
pub type SharedSeries = Arc<RwLock<MeasurementSeries>>;

type ByMeasurement = BTreeMap<Arc<str>, SharedSeries>;

/// The catalog of every database.
#[derive(Default)]
pub struct SeriesCatalog {
    /// db → measurement → series.
    dbs: RwLock<BTreeMap<Arc<str>, ByMeasurement>>,
    /// Live series per db, read by the write path for `memory.max_series_per_database`.
    counts: RwLock<HashMap<Arc<str>, Arc<AtomicU64>>>,
    loaded: AtomicBool,
    /// Heap bytes of every measurement's series (the sum of [`MeasurementSeries::bytes`]):
    /// counted against `memory.limit` and bounded by `memory.series_catalog`.
    bytes: AtomicU64,
}

impl SeriesCatalog {
    pub fn new() -> SeriesCatalog {
        SeriesCatalog::default()
    }

    /// The series of (db, measurement), made if new.
    pub fn entry(&self, db: &str, measurement: &str) -> SharedSeries {
        if let Some(s) = self.dbs.read().get(db).and_then(|ms| ms.get(measurement)) {
            return s.clone();
        }
        self.dbs
            .write()
            .entry(Arc::from(db))
            .or_default()
            .entry(Arc::from(measurement))
            .or_default()
            .clone()
    }

    /// The series of (db, measurement), if any was ever added.
    pub fn get(&self, db: &str, measurement: &str) -> Option<SharedSeries> {
        self.dbs
            .read()
            .get(db)
            .and_then(|ms| ms.get(measurement))
            .cloned()
    }

    /// Databases with at least one measurement, sorted.
    pub fn databases(&self) -> Vec<Arc<str>> {
        self.dbs.read().keys().cloned().collect()
    }

    /// The live series count of `db` (shared: the write path reads it once per request).
    pub fn counter(&self, db: &str) -> Arc<AtomicU64> {
        if let Some(c) = self.counts.read().get(db) {
            return c.clone();
        }
        self.counts
            .write()
            .entry(Arc::from(db))
            .or_default()
            .clone()
    }

    /// Adds tag sets to a measurement, counting the new series.
    pub fn add_series<'a, K: AsRef<str> + 'a, V: AsRef<str> + 'a>(
        &self,
        db: &str,
        measurement: &str,
        sets: impl IntoIterator<Item = &'a [(K, V)]>,
    ) {
        let entry = self.entry(db, measurement);
        let mut ms = entry.write();
        let before = ms.bytes;
        let new = sets.into_iter().filter(|set| ms.add(set)).count() as u64;
        if new > 0 {
            self.counter(db).fetch_add(new, Ordering::Relaxed);
        }
        self.bytes
            .fetch_add((ms.bytes - before) as u64, Ordering::Relaxed);
    }

    /// The live series count of `db` if it ever had a series (no entry is made: a request
    /// naming a database that has none must not grow the map).
    pub fn existing_counter(&self, db: &str) -> Option<Arc<AtomicU64>> {
        self.counts.read().get(db).cloned()
    }

    /// Live series per database that has any, sorted by name.
    pub fn series_counts(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .counts
            .read()
            .iter()
            .map(|(db, n)| (db.to_string(), n.load(Ordering::Relaxed)))
            // A database asked about but never written, or dropped, has none.
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort();
        out
    }

    /// Approximate heap bytes of the catalog (what its series, values and keys hold).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// [`bytes`](Self::bytes) as memory accounting counts them: at most `bound`
    /// (`memory.series_catalog`). The catalog can pass its bound (the start-up load of the
    /// files, WAL replay, the new series of requests checked at once), and flushing frees
    /// none of it: counted whole it could hold `memory.limit` for good and refuse every
    /// write; at its bound it leaves the blocks their room, and new series stay refused.
    pub fn counted_bytes(&self, bound: u64) -> u64 {
        self.bytes().min(bound)
    }

    /// Removes series of a measurement (a delete).
    pub fn remove_series(&self, db: &str, measurement: &str, sids: &RoaringBitmap) {
        let Some(entry) = self.get(db, measurement) else {
            return;
        };
        let mut ms = entry.write();
        let before = ms.len();
        ms.remove(sids);
        let gone = before - ms.len();
        let c = self.counter(db);
        let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(gone))
        });
    }

    /// Whether `db.measurement` has a live series with these tags.
    pub fn contains(&self, db: &str, measurement: &str, tags: &[(&str, &str)]) -> bool {
        self.get(db, measurement)
            .is_some_and(|e| e.read().contains(tags))
    }

    /// Measurements of `db` with at least one live series, sorted.
    pub fn measurements(&self, db: &str) -> Vec<(Arc<str>, SharedSeries)> {
        self.dbs
            .read()
            .get(db)
            .map(|ms| {
                ms.iter()
                    .filter(|(_, s)| !s.read().is_empty())
                    .map(|(m, s)| (m.clone(), s.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets a database.
    pub fn drop_database(&self, db: &str) {
        if let Some(ms) = self.dbs.write().remove(db) {
            let freed: usize = ms.values().map(|e| e.read().bytes).sum();
            self.release(freed);
        }
        if let Some(c) = self.counts.write().remove(db) {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn release(&self, freed: usize) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(freed as u64))
            });
    }

    /// Forgets a measurement.
    pub fn drop_measurement(&self, db: &str, measurement: &str) {
        let (gone, freed) = {
            let mut dbs = self.dbs.write();
            dbs.get_mut(db)
                .and_then(|ms| ms.remove(measurement))
                .map_or((0, 0), |e| {
                    let e = e.read();
                    (e.len(), e.bytes)
                })
        };
        self.release(freed);
        if let Some(c) = self.existing_counter(db) {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(gone))
            });
        }
    }

    /// Called once every live file's series were added at start-up.
    pub fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Whether the start-up load is done (until then, answers may miss series of files).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn series_are_stored_once_and_postings_answer_predicates() {
        let mut m = MeasurementSeries::default();
        assert!(m.add(&set(&[("host", "a"), ("region", "eu")])));
        assert!(!m.add(&set(&[("region", "eu"), ("host", "a")])));
        assert!(m.add(&set(&[("host", "b")])));
        assert!(m.add(&set(&[])));
        assert!(!m.add(&set(&[])));
        assert!(m.add(&set(&[("region", "us")])));
        assert_eq!(m.len(), 4);
        assert_eq!(m.tag_keys(None), vec!["host", "region"]);
        assert_eq!(m.tag_values("host", None), vec!["a", "b"]);
        let eu = m.with_value("region", "eu");
        assert_eq!(m.tag_values("host", Some(&eu)), vec!["a"]);
        // "" = lacking the key: the tagless series and host=b.
        assert_eq!(m.with_value("region", "").len(), 2);
        assert_eq!(m.matching("host", |v| v != "a").len(), 3);
        let sids: Vec<u32> = m.all().iter().collect();
        let keys: Vec<Vec<(&str, &str)>> = sids.iter().map(|s| m.tags(*s)).collect();
        assert!(keys.contains(&vec![("host", "a"), ("region", "eu")]));
        assert!(keys.contains(&vec![]));
    }

    #[test]
    fn removed_series_leave_every_answer_and_may_come_back() {
        let mut m = MeasurementSeries::default();
        m.add(&set(&[("host", "a")]));
        m.add(&set(&[("host", "b")]));
        let a = m.with_value("host", "a");
        m.remove(&a);
        assert_eq!(m.len(), 1);
        assert_eq!(m.tag_values("host", None), vec!["b"]);
        assert_eq!(m.without_key("host").len(), 0);
        assert!(m.add(&set(&[("host", "a")])));
        assert_eq!(m.len(), 2);
        assert_eq!(m.tag_values("host", None), vec!["a", "b"]);
    }

    /// The catalog against a model: random adds and removes, every answer equal to one
    /// computed from the plain set of series.
    #[test]
    fn matches_a_model_of_plain_sets() {
        use std::collections::BTreeSet;
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut m = MeasurementSeries::default();
        let mut model: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
        for _ in 0..2_000 {
            let mut tags = Vec::new();
            for k in ["a", "b", "c"] {
                if next(3) > 0 {
                    tags.push((k.to_string(), format!("v{}", next(4))));
                }
            }
            if next(10) == 0 {
                let key = ["a", "b", "c"][next(3) as usize];
                let value = format!("v{}", next(4));
                let gone = m.with_value(key, &value);
                m.remove(&gone);
                model.retain(|s| !s.iter().any(|(k, v)| k == key && *v == value));
            } else {
                let new = m.add(&tags);
                tags.sort();
                assert_eq!(new, model.insert(tags));
            }
            assert_eq!(m.len(), model.len() as u64);
        }
        for key in ["a", "b", "c"] {
            let want: BTreeSet<&str> = model
                .iter()
                .flat_map(|s| s.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()))
                .collect();
            let got: BTreeSet<&str> = m.tag_values(key, None).into_iter().collect();
            assert_eq!(got, want);
            let lacking = model.iter().filter(|s| !s.iter().any(|(k, _)| k == key));
            assert_eq!(m.without_key(key).len(), lacking.count() as u64);
        }
        let got: BTreeSet<Vec<(String, String)>> = m
            .all()
            .iter()
            .map(|sid| {
                m.tags(sid)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect();
        assert_eq!(got, model);
    }
}
