//! The in-memory columnar block of one (db, measurement, partition) in one ingest shard.
//!
//! ```text
//! append(row) ─► time: Vec<i64>, sid: Vec<u32> (series id), fields: builders (numbers
//!                 held narrow: integers at the width they need, decimals as scaled i32)
//!                 series table: sid → sorted tag set (tags are stored once per series)
//! freeze()    ─► Chunk (immutable Arrow arrays, Arc) — what queries and flushes read
//! sorted_batch(chunks) ─► RecordBatch sorted by tag set then time, duplicates merged
//! ```
//! Invariants: rows are kept in arrival order, so among rows with the same (series, time)
//! the later one wins, field by field (a field absent from the later row keeps the earlier
//! value). A field's type is fixed before a row reaches the block (the schema registry), so
//! appends cannot fail.

use rustc_hash::FxHashMap;

use crate::grouped::Grouped;
use std::cmp::Ordering;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use arrow::array::BooleanBufferBuilder;
use arrow::array::{
    Array, ArrayBuilder, ArrayRef, BooleanBuilder, Decimal32Array, DictionaryArray, Float64Array,
    Int8Array, Int16Array, Int32Array, Int64Array, StringArray, StringBuilder,
    TimestampNanosecondArray, UInt32Array, UInt64Builder, new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{interleave, take};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};

use crate::storage::scaled;
use crate::storage::schema::{tag_type, time_type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::lineproto::FieldValue;
use crate::model::{ColumnKind, FieldType, TIME_COLUMN};

/// Tag set of one series: `(key, value)` sorted by key.
pub type TagSet = Arc<[(Arc<str>, Arc<str>)]>;

/// Series of a block: id → tag set, and a hash index to find ids.
#[derive(Default)]
pub struct SeriesTable {
    sets: Vec<TagSet>,
    by_hash: FxHashMap<u64, Vec<u32>>,
    /// The last snapshot, shared by every chunk frozen while no series was added (a query
    /// freezes the block: with a million series, a copy per query was 16 MB a chunk).
    snap: Option<Arc<[TagSet]>>,
}

impl SeriesTable {
    /// The tag sets from id `from` on.
    pub fn sets_from(&self, from: usize) -> &[TagSet] {
        self.sets.get(from..).unwrap_or(&[])
    }

    /// The id of the series with these sorted tags, adding it if new.
    pub fn intern<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        hash: u64,
        sorted_tags: &[(K, V)],
    ) -> u32 {
        let candidates = self.by_hash.entry(hash).or_default();
        for &sid in candidates.iter() {
            let set = &self.sets[sid as usize];
            if set.len() == sorted_tags.len()
                && set
                    .iter()
                    .zip(sorted_tags)
                    .all(|((k, v), (k2, v2))| &**k == k2.as_ref() && &**v == v2.as_ref())
            {
                return sid;
            }
        }
        let sid = self.sets.len() as u32;
        self.sets.push(
            sorted_tags
                .iter()
                .map(|(k, v)| (Arc::<str>::from(k.as_ref()), Arc::<str>::from(v.as_ref())))
                .collect(),
        );
        candidates.push(sid);
        sid
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Entries a [`snapshot`](Self::snapshot) would copy now (none while it can share the
    /// last one).
    pub fn snapshot_cost(&self) -> usize {
        match &self.snap {
            Some(s) if s.len() == self.sets.len() => 0,
            _ => self.sets.len(),
        }
    }

    /// A snapshot of the tag sets (ids index into it): the previous one while no series
    /// was added since, else a new copy.
    pub fn snapshot(&mut self) -> Arc<[TagSet]> {
        match &self.snap {
            Some(s) if s.len() == self.sets.len() => s.clone(),
            _ => {
                let s: Arc<[TagSet]> = self.sets.iter().cloned().collect();
                self.snap = Some(s.clone());
                s
            }
        }
    }
}

enum FieldBuilder {
    Float(Narrow<FloatValues>),
    Integer(Narrow<IntValues>),
    UInteger(UInt64Builder),
    String(StringBuilder),
    Boolean(BooleanBuilder),
}

impl FieldBuilder {
    /// An empty builder that allocates nothing until its first value (`new()` reserves
    /// 1,024 slots: 8 KiB for each of a wide line's thousands of columns).
    fn new(t: FieldType) -> FieldBuilder {
        match t {
            FieldType::Float => FieldBuilder::Float(Narrow::default()),
            FieldType::Integer => FieldBuilder::Integer(Narrow::default()),
            FieldType::UInteger => FieldBuilder::UInteger(UInt64Builder::with_capacity(0)),
            FieldType::String => FieldBuilder::String(StringBuilder::with_capacity(0, 0)),
            FieldType::Boolean => FieldBuilder::Boolean(BooleanBuilder::with_capacity(0)),
        }
    }

    /// Appends nulls up to `n` rows.
    fn pad_to(&mut self, n: usize) {
        let len = self.len();
        if len < n {
            self.append_nulls(n - len);
        }
    }

    fn len(&self) -> usize {
        match self {
            FieldBuilder::Float(b) => b.len(),
            FieldBuilder::Integer(b) => b.len(),
            FieldBuilder::UInteger(b) => b.len(),
            FieldBuilder::String(b) => b.len(),
            FieldBuilder::Boolean(b) => b.len(),
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            FieldBuilder::Float(b) => b.append_nulls(n),
            FieldBuilder::Integer(b) => b.append_nulls(n),
            FieldBuilder::UInteger(b) => b.append_nulls(n),
            FieldBuilder::String(b) => (0..n).for_each(|_| b.append_null()),
            FieldBuilder::Boolean(b) => b.append_nulls(n),
        }
    }

    /// Appends a value of the builder's type; returns the bytes it adds beyond the column's
    /// width (a string's bytes). The schema registry guarantees the type matches; a
    /// mismatch would be a bug, and is recorded as a null rather than a crash.
    fn append(&mut self, v: &FieldValue<'_>) -> usize {
        match (self, v) {
            (FieldBuilder::Float(b), FieldValue::Float(x)) => b.append(*x),
            (FieldBuilder::Integer(b), FieldValue::Integer(x)) => b.append(*x),
            (FieldBuilder::UInteger(b), FieldValue::UInteger(x)) => b.append_value(*x),
            (FieldBuilder::String(b), FieldValue::String(s)) => {
                b.append_value(s);
                return s.len();
            }
            (FieldBuilder::Boolean(b), FieldValue::Boolean(x)) => b.append_value(*x),
            (b, _) => {
                debug_assert!(false, "field type mismatch reached a block");
                b.append_nulls(1);
            }
        }
        0
    }

    /// Whether a float column holds a value no scale represents (see [`FloatValues`]).
    fn undecimal(&self) -> bool {
        matches!(self, FieldBuilder::Float(b) if matches!(b.values, FloatValues::Plain(_, true)))
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            FieldBuilder::Float(b) => b.finish(),
            FieldBuilder::Integer(b) => b.finish(),
            FieldBuilder::UInteger(b) => Arc::new(b.finish()),
            FieldBuilder::String(b) => Arc::new(b.finish()),
            FieldBuilder::Boolean(b) => Arc::new(b.finish()),
        }
    }
}

/// Which rows of a narrow column hold a value: a count while none is null, a bitmap from
/// the first null on. Its own, inlined: the arrow builder's length was a call per value.
#[derive(Default)]
struct Validity {
    len: usize,
    bitmap: Option<BooleanBufferBuilder>,
}

impl Validity {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn valid(&mut self) {
        if let Some(b) = &mut self.bitmap {
            b.append(true);
        }
        self.len += 1;
    }

    fn nulls(&mut self, n: usize) {
        let len = self.len;
        self.bitmap
            .get_or_insert_with(|| {
                let mut b = BooleanBufferBuilder::new(len + n);
                b.append_n(len, true);
                b
            })
            .append_n(n, false);
        self.len += n;
    }

    /// The validity of the rows so far (none when every row has a value); starts again.
    fn finish(&mut self) -> Option<NullBuffer> {
        self.len = 0;
        self.bitmap.take().map(|mut b| NullBuffer::new(b.finish()))
    }
}

/// The values of a number column in a narrow form ([`IntValues`], [`FloatValues`]).
trait Held: Default {
    type Item: Copy;
    fn push(&mut self, x: Self::Item);
    /// Pads with zeros (the slots of nulls) up to `len` values.
    fn pad(&mut self, len: usize);
    /// The values as an array with `nulls`; they start again empty, in the narrowest form.
    fn finish(&mut self, nulls: Option<NullBuffer>) -> ArrayRef;
}

/// A number column under construction: its values held narrow, and their validity.
#[derive(Default)]
struct Narrow<V> {
    values: V,
    nulls: Validity,
}

impl<V: Held> Narrow<V> {
    #[inline]
    fn len(&self) -> usize {
        self.nulls.len()
    }

    #[inline]
    fn append(&mut self, x: V::Item) {
        self.values.push(x);
        self.nulls.valid();
    }

    fn append_nulls(&mut self, n: usize) {
        self.values.pad(self.len() + n);
        self.nulls.nulls(n);
    }

    fn finish(&mut self) -> ArrayRef {
        let nulls = self.nulls.finish();
        self.values.finish(nulls)
    }
}

/// The values of an integer column, each in the narrowest width that holds every value of
/// the column so far: the integer fields agents send are mostly small gauges (percentages,
/// counts, states) that fit a byte or two, where 64-bit slots held eight times the memory
/// during ingest. A value that does not fit widens the column (one copy per width). Frozen
/// chunks keep their width; [`SortedRows`] hands readers 64-bit columns.
enum IntValues {
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl Default for IntValues {
    fn default() -> Self {
        IntValues::I8(Vec::new())
    }
}

impl Held for IntValues {
    type Item = i64;

    fn push(&mut self, x: i64) {
        loop {
            match self {
                IntValues::I8(v) => match i8::try_from(x) {
                    Ok(n) => return v.push(n),
                    Err(_) => *self = IntValues::I16(widen(v)),
                },
                IntValues::I16(v) => match i16::try_from(x) {
                    Ok(n) => return v.push(n),
                    Err(_) => *self = IntValues::I32(widen(v)),
                },
                IntValues::I32(v) => match i32::try_from(x) {
                    Ok(n) => return v.push(n),
                    Err(_) => *self = IntValues::I64(widen(v)),
                },
                IntValues::I64(v) => return v.push(x),
            }
        }
    }

    fn pad(&mut self, len: usize) {
        match self {
            IntValues::I8(v) => v.resize(len, 0),
            IntValues::I16(v) => v.resize(len, 0),
            IntValues::I32(v) => v.resize(len, 0),
            IntValues::I64(v) => v.resize(len, 0),
        }
    }

    /// An array of the column's width.
    fn finish(&mut self, nulls: Option<NullBuffer>) -> ArrayRef {
        match std::mem::take(self) {
            IntValues::I8(v) => Arc::new(Int8Array::new(v.into(), nulls)),
            IntValues::I16(v) => Arc::new(Int16Array::new(v.into(), nulls)),
            IntValues::I32(v) => Arc::new(Int32Array::new(v.into(), nulls)),
            IntValues::I64(v) => Arc::new(Int64Array::new(v.into(), nulls)),
        }
    }
}

/// The values of a float column: while every value so far is exactly `k / 10^s` for a
/// 9-digit integer `k` (the decimals agents send, `12.34`; the test is
/// [`scaled`](crate::storage::scaled::scaled)'s, as for files), the integers at the
/// smallest such scale, half the memory of doubles; else doubles. A value that needs a
/// larger scale rescales the integers (`k·10^d / 10^(s+d)` is the same double: both are
/// the correctly rounded quotient of the same rational); one that is no such decimal turns
/// the column into doubles. Frozen chunks keep `Decimal32(9, s)`; [`SortedRows`] hands
/// readers doubles.
enum FloatValues {
    Scaled(u8, Vec<i32>),
    /// Doubles, and whether the value that turned the column into them is one no scale
    /// represents: a file cannot store these rows scaled either (see
    /// [`SortedRows::known_scale`]).
    Plain(Vec<f64>, bool),
}

impl Default for FloatValues {
    fn default() -> Self {
        FloatValues::Scaled(0, Vec::new())
    }
}

/// `x` as an integer of at most nine digits at scale `s`, if exactly so: the same values
/// as [`scaled::scaled`] with that bound, with the product rounded by a truncating
/// conversion rather than a call to `round` (a fifth of a block's append time for such
/// floats). Below 2^30 the product is within a millionth of the integer when there is one,
/// and the check that `k / 10^s` gives back `x` bit for bit decides.
#[inline]
fn scaled_32(x: f64, s: u8) -> Option<i32> {
    let p = scaled::pow10(s);
    let y = x * p;
    if y.is_nan() || y.abs() > MAX_SCALED as f64 {
        return None;
    }
    let k = (y + 0.5f64.copysign(y)) as i32;
    ((f64::from(k) / p).to_bits() == x.to_bits()).then_some(k)
}

/// The largest integer of an in-memory scaled column (`Decimal32(9, s)`).
const MAX_SCALED: u64 = 999_999_999;

impl FloatValues {
    /// `x` does not fit the held scale: a larger scale, or doubles.
    #[cold]
    #[inline(never)]
    fn change_form(&mut self, x: f64) {
        let FloatValues::Scaled(s, v) = self else {
            return;
        };
        // The smallest larger scale holding `x`; the integers held must fit it too (at a
        // larger one they would be larger still).
        if let Some((wider, k)) =
            (*s + 1..=scaled::MAX_SCALE).find_map(|w| scaled_32(x, w).map(|k| (w, k)))
        {
            let factor = 10i64.pow(u32::from(wider - *s));
            let largest = v.iter().map(|k| i64::from(*k).unsigned_abs()).max();
            if largest.unwrap_or(0).saturating_mul(factor.unsigned_abs()) <= MAX_SCALED {
                let mut rescaled = Vec::with_capacity(v.capacity());
                // In i32: each is at most MAX_SCALED, checked above.
                rescaled.extend(v.iter().map(|k| (i64::from(*k) * factor) as i32));
                rescaled.push(k);
                *self = FloatValues::Scaled(wider, rescaled);
                return;
            }
        }
        let undecimal = (0..=scaled::MAX_SCALE).all(|s| scaled::scaled(x, s).is_none());
        let p = scaled::pow10(*s);
        let mut plain = Vec::with_capacity(v.capacity());
        plain.extend(v.iter().map(|k| f64::from(*k) / p));
        plain.push(x);
        *self = FloatValues::Plain(plain, undecimal);
    }
}

impl Held for FloatValues {
    type Item = f64;

    #[inline]
    fn push(&mut self, x: f64) {
        match self {
            FloatValues::Plain(v, _) => v.push(x),
            FloatValues::Scaled(s, v) => match scaled_32(x, *s) {
                Some(k) => v.push(k),
                None => self.change_form(x),
            },
        }
    }

    fn pad(&mut self, len: usize) {
        match self {
            FloatValues::Scaled(_, v) => v.resize(len, 0),
            FloatValues::Plain(v, _) => v.resize(len, 0.0),
        }
    }

    /// `Decimal32(9, s)` or `Float64`.
    fn finish(&mut self, nulls: Option<NullBuffer>) -> ArrayRef {
        match std::mem::take(self) {
            FloatValues::Scaled(s, v) => Arc::new(
                Decimal32Array::new(v.into(), nulls)
                    .with_data_type(DataType::Decimal32(scaled::PRECISION_32, s as i8)),
            ),
            FloatValues::Plain(v, _) => Arc::new(Float64Array::new(v.into(), nulls)),
        }
    }
}

/// The values in the next wider type, with the same capacity (the column keeps growing by
/// doubling, so a chunk frozen at a power of two is full).
fn widen<A: Copy, B: From<A>>(v: &Vec<A>) -> Vec<B> {
    let mut w = Vec::with_capacity(v.capacity());
    w.extend(v.iter().map(|a| B::from(*a)));
    w
}

pub fn field_type_of(v: &FieldValue<'_>) -> FieldType {
    match v {
        FieldValue::Float(_) => FieldType::Float,
        FieldValue::Integer(_) => FieldType::Integer,
        FieldValue::UInteger(_) => FieldType::UInteger,
        FieldValue::String(_) => FieldType::String,
        FieldValue::Boolean(_) => FieldType::Boolean,
    }
}

/// Immutable rows frozen out of a block: arrival order, not sorted.
#[derive(Debug)]
pub struct Chunk {
    pub time: Arc<TimestampNanosecondArray>,
    pub sid: Arc<UInt32Array>,
    /// Field columns (name, type, values); a field absent from the chunk is all-null.
    pub fields: Vec<(Arc<str>, FieldType, ArrayRef)>,
    /// Float fields of `fields` that hold a value no decimal scale represents (their rows
    /// cannot be stored scaled); empty when not known.
    pub undecimal: Vec<Arc<str>>,
    /// Tag sets of every series id that can appear in `sid`.
    pub series: Arc<[TagSet]>,
    pub min_time: i64,
    pub max_time: i64,
    /// Its rows grouped by series id, built by the first selective query that reads it.
    pub by_series: OnceLock<Grouped>,
}

impl Chunk {
    pub fn rows(&self) -> usize {
        self.time.len()
    }

    /// The rows of each series, by series id (built once, on first use).
    pub fn rows_by_series(&self) -> &Grouped {
        self.by_series.get_or_init(|| {
            let sids = self.sid.values();
            let n = sids.iter().max().map_or(0, |m| *m as usize + 1);
            Grouped::new(n, sids.iter().copied())
        })
    }
}

/// The mutable block.
pub struct Block {
    series: SeriesTable,
    /// Series already handed to the series catalog (`take_new_series`).
    reported: usize,
    time: Vec<i64>,
    sid: Vec<u32>,
    fields: Vec<(Arc<str>, FieldType, FieldBuilder)>,
    field_index: FxHashMap<Arc<str>, usize>,
    /// The column of each field of the last row appended, in its order.
    last_columns: Vec<usize>,
    /// Bytes per row of all the block's field columns: a flush (or a query's sort) makes
    /// every row dense over them, so every row costs that much, value or null.
    width: usize,
    /// Bytes per row of the columns with a value among the active (not frozen) rows, and
    /// how many values those rows hold: what freezing them would cost, and what it holds.
    active_width: usize,
    active_values: usize,
    min_time: i64,
    max_time: i64,
    /// Frozen chunks, oldest first.
    chunks: Vec<Arc<Chunk>>,
    rows: usize,
    bytes: usize,
    /// Bytes of series-table snapshots frozen by [`freeze`](Self::freeze) (a query's read)
    /// and not yet returned by an [`append`](Self::append): the next one counts them.
    unreported: usize,
}

impl Default for Block {
    fn default() -> Self {
        Self::new()
    }
}

impl Block {
    pub fn new() -> Block {
        Block {
            series: SeriesTable::default(),
            reported: 0,
            time: Vec::new(),
            sid: Vec::new(),
            fields: Vec::new(),
            field_index: FxHashMap::default(),
            last_columns: Vec::new(),
            width: 0,
            active_width: 0,
            active_values: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
            chunks: Vec::new(),
            rows: 0,
            bytes: 0,
            unreported: 0,
        }
    }

    /// Rows in the block (frozen and active).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends one row; returns the bytes it added to [`Block::bytes`]. `same_fields`: the
    /// caller knows the field names are those of the last row appended, in the same order
    /// (their columns are reused without a lookup).
    ///
    /// Columns are padded with nulls lazily (when they get a value, and at freeze), so a row
    /// costs CPU for its own fields only. Memory is counted as a flush will hold it: every
    /// row costs the width of every field column of the block ([`field_width`]), and a new
    /// column costs that for the rows already there. When the active rows are sparse over
    /// their columns (a wide line among narrow ones), they are frozen first, so chunks hold
    /// only the columns their rows use.
    /// The series added since the last call (for the series catalog).
    pub fn take_new_series(&mut self) -> &[TagSet] {
        let from = self.reported;
        self.reported = self.series.len();
        self.series.sets_from(from)
    }

    pub fn append<K: AsRef<str>, V: AsRef<str>, F: AsRef<str>>(
        &mut self,
        series_hash: u64,
        sorted_tags: &[(K, V)],
        fields: &[(F, FieldValue<'_>)],
        ts: i64,
        same_fields: bool,
    ) -> usize {
        let mut added = ROW_BASE_BYTES + std::mem::take(&mut self.unreported);
        if self.rows == 0 {
            added += BLOCK_OVERHEAD;
        }
        let active_rows = self.time.len();
        if active_rows * self.active_width
            > SPARSE_RATIO * self.active_values * field_width(FieldType::Float) + SPARSE_FLOOR
            || (active_rows == ACTIVE_ROWS && self.series.snapshot_cost() <= ACTIVE_ROWS)
        {
            // The chunk's snapshot of the series table, when a new one, is held until the
            // block is flushed.
            added += self.freeze_active();
        }
        let before_series = self.series.len();
        let sid = self.series.intern(series_hash, sorted_tags);
        if self.series.len() > before_series {
            added += SERIES_BASE_BYTES
                + sorted_tags
                    .iter()
                    .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + TAG_BYTES)
                    .sum::<usize>();
        }
        let row = self.time.len();
        self.time.push(ts);
        self.sid.push(sid);
        self.min_time = self.min_time.min(ts);
        self.max_time = self.max_time.max(ts);
        if same_fields && self.last_columns.len() == fields.len() {
            for (i, (_, value)) in fields.iter().enumerate() {
                let idx = self.last_columns[i];
                added += self.append_value(idx, value, row);
            }
        } else {
            added += self.append_fields(fields, row);
        }
        self.active_values += fields.len();
        added += self.width;
        self.rows += 1;
        self.bytes += added;
        added
    }

    /// Appends a value to column `idx` at active row `row` (padding it first); returns the
    /// bytes added: the column's nulls of earlier active rows if it had no value among them
    /// yet, and the value's heap bytes.
    fn append_value(&mut self, idx: usize, value: &FieldValue<'_>, row: usize) -> usize {
        let (_, t, b) = &mut self.fields[idx];
        if b.len() == 0 {
            self.active_width += field_width(*t);
        }
        b.pad_to(row);
        b.append(value)
    }

    /// Appends the field values of row `row`, finding (or adding) each field's column;
    /// remembers the columns in [`Block::last_columns`]. Returns the bytes added.
    fn append_fields<F: AsRef<str>>(
        &mut self,
        fields: &[(F, FieldValue<'_>)],
        row: usize,
    ) -> usize {
        let mut added = 0;
        self.last_columns.clear();
        for (name, value) in fields {
            let name = name.as_ref();
            let idx = match self.field_index.get(name) {
                Some(&i) => i,
                None => {
                    let t = field_type_of(value);
                    let key: Arc<str> = Arc::from(name);
                    self.fields.push((key.clone(), t, FieldBuilder::new(t)));
                    self.field_index.insert(key, self.fields.len() - 1);
                    // The rows already in the block get this column too (as nulls).
                    self.width += field_width(t);
                    added += name.len() + 64 + self.rows * field_width(t);
                    self.fields.len() - 1
                }
            };
            self.last_columns.push(idx);
            added += self.append_value(idx, value, row);
        }
        added
    }

    /// Freezes the active rows into a chunk (no-op when there are none) and returns every
    /// chunk of the block: a consistent snapshot of its rows.
    pub fn freeze(&mut self) -> Vec<Arc<Chunk>> {
        self.unreported += self.freeze_active();
        self.chunks.clone()
    }

    /// Moves the active rows into a new chunk: only the columns with a value among them,
    /// padded to the chunk's length (a column absent from a chunk is all-null there).
    /// Returns the bytes of the series-table snapshot it copied (0 when it shares the last).
    fn freeze_active(&mut self) -> usize {
        if self.time.is_empty() {
            return 0;
        }
        let snapshot = self.series.snapshot_cost() * std::mem::size_of::<TagSet>();
        let rows = self.time.len();
        let time = Arc::new(
            TimestampNanosecondArray::from(std::mem::take(&mut self.time)).with_timezone("UTC"),
        );
        let sid = Arc::new(UInt32Array::from(std::mem::take(&mut self.sid)));
        let undecimal = self
            .fields
            .iter()
            .filter(|(_, _, b)| b.len() > 0 && b.undecimal())
            .map(|(n, _, _)| n.clone())
            .collect();
        let fields = self
            .fields
            .iter_mut()
            .filter(|(_, _, b)| b.len() > 0)
            .map(|(n, t, b)| {
                b.pad_to(rows);
                (n.clone(), *t, b.finish())
            })
            .collect();
        self.chunks.push(Arc::new(Chunk {
            time,
            sid,
            fields,
            undecimal,
            series: self.series.snapshot(),
            min_time: self.min_time,
            max_time: self.max_time,
            by_series: OnceLock::new(),
        }));
        self.min_time = i64::MAX;
        self.max_time = i64::MIN;
        self.active_width = 0;
        self.active_values = 0;
        self.last_columns.clear();
        snapshot
    }
}

/// Bytes a row costs in a field column of this type once materialized (value slot or
/// offset, validity bit), whether or not the row has a value there: a block's rows are made
/// dense over all its fields when it is sorted for a flush or a query.
pub fn field_width(t: FieldType) -> usize {
    match t {
        FieldType::Float | FieldType::Integer | FieldType::UInteger => 9,
        FieldType::String => 5,
        FieldType::Boolean => 1,
    }
}

/// What a new series costs in a block's series table besides its tags: the tag set's
/// allocation, its slot, the hash index entry and its id list, and its slot in a snapshot.
pub const SERIES_BASE_BYTES: usize = 128;
/// What a tag of a new series costs besides its key and value bytes: the pair in the tag
/// set and two string allocations with their headers (allocator granularity included).
pub const TAG_BYTES: usize = 96;

/// What a row costs in a block (time, series id) besides its fields.
pub const ROW_BASE_BYTES: usize = 12;

/// Memory a block costs before its first row (its maps, series table, shard entry).
const BLOCK_OVERHEAD: usize = 1024;
/// Active rows are frozen when there are this many: their columns grew by doubling, so at a
/// power of two they are full, and a chunk holds no spare capacity (a block of 120,000 rows
/// in one chunk held up to 1.7× its rows). Not when the snapshot of the series table a
/// chunk takes would copy more than that many entries (many series new since the last).
const ACTIVE_ROWS: usize = 1 << 16;
/// Active rows are frozen when freezing them would cost more than [`SPARSE_RATIO`] times
/// their values plus [`SPARSE_FLOOR`] bytes, so nulls of sparse columns do not multiply.
const SPARSE_RATIO: usize = 8;
const SPARSE_FLOOR: usize = 256 << 10;

/// Compares two tag sets as rows of tag columns sorted by key: the first key where they
/// differ decides; a missing tag (null) sorts first.
pub fn compare_tag_sets(a: &[(Arc<str>, Arc<str>)], b: &[(Arc<str>, Arc<str>)]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return Ordering::Equal,
            // `a` lacks b's key: a has null there, nulls first.
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                Ordering::Equal => match va.cmp(vb) {
                    Ordering::Equal => {
                        i += 1;
                        j += 1;
                    }
                    o => return o,
                },
                // a has key ka < kb, so b is null at ka: b sorts first.
                Ordering::Less => return Ordering::Greater,
                Ordering::Greater => return Ordering::Less,
            },
        }
    }
}

/// The columns of a sorted batch: tag keys and fields, both sorted by name.
#[derive(Debug, Clone)]
pub struct BatchColumns {
    pub tags: Vec<Arc<str>>,
    pub fields: Vec<(Arc<str>, FieldType)>,
}

impl BatchColumns {
    /// The columns as a manifest entry lists them: tags, then fields.
    pub fn kinds(&self) -> Vec<(String, ColumnKind)> {
        let tags = self.tags.iter().map(|t| (t.to_string(), ColumnKind::Tag));
        let fields = self
            .fields
            .iter()
            .map(|(n, t)| (n.to_string(), ColumnKind::Field(*t)));
        tags.chain(fields).collect()
    }
}

/// The rows of a block's chunks numbered in arrival order (the chunks one after another),
/// and columns gathered from the chunks by those numbers.
struct Arrival {
    /// The number of each chunk's first row.
    starts: Vec<usize>,
    rows: usize,
}

/// Rows to gather: indices into the one chunk, or (chunk, row) pairs across several.
enum Picks {
    One(UInt32Array),
    Many(Vec<(usize, usize)>),
}

impl Arrival {
    fn new(chunks: &[Arc<Chunk>]) -> Arrival {
        let mut starts = Vec::with_capacity(chunks.len());
        let mut rows = 0;
        for c in chunks {
            starts.push(rows);
            rows += c.rows();
        }
        Arrival { starts, rows }
    }

    fn rows(&self) -> usize {
        self.rows
    }

    /// The chunk holding row `r`, and the row within it.
    fn locate(&self, r: u32) -> (usize, usize) {
        let r = r as usize;
        let c = self.starts.partition_point(|s| *s <= r).saturating_sub(1);
        (c, r - self.starts.get(c).copied().unwrap_or(0))
    }

    fn indices(&self, rows: &[u32]) -> Picks {
        if self.starts.len() == 1 {
            Picks::One(UInt32Array::from(rows.to_vec()))
        } else {
            Picks::Many(rows.iter().map(|r| self.locate(*r)).collect())
        }
    }

    fn is_valid(&self, parts: &[&dyn Array], r: u32) -> bool {
        let (c, i) = self.locate(r);
        parts[c].is_valid(i)
    }

    /// One column (its part in each chunk) at the picked rows `range` (of the picks).
    fn gather(
        &self,
        parts: &[&dyn Array],
        picks: &Picks,
        range: Range<usize>,
    ) -> Result<ArrayRef, ArrowError> {
        match (picks, parts) {
            (Picks::One(idx), [one]) => take(*one, &idx.slice(range.start, range.len()), None),
            (Picks::Many(locs), _) => interleave(parts, &locs[range]),
            (Picks::One(_), _) => Err(ArrowError::InvalidArgumentError(
                "rows of one chunk picked from several".into(),
            )),
        }
    }
}

/// Merges chunks (oldest first) into one batch sorted by tag set then time, with rows of the
/// same (series, time) merged last-write-wins field by field. Returns the batch, its
/// columns, and how many rows were merged away.
pub fn sorted_batch(
    chunks: &[Arc<Chunk>],
) -> Result<(RecordBatch, BatchColumns, usize), ArrowError> {
    let sorted = SortedRows::new(chunks)?;
    Ok((sorted.batch()?, sorted.columns.clone(), sorted.merged))
}

/// A block's rows sorted by tag set then time, duplicates merged (see [`sorted_batch`]),
/// whose time and tag columns are made at once and whose field columns are gathered from
/// the chunks when asked, one at a time: a flush encodes a column, then the next, and never
/// holds a sorted copy of the whole block beside it.
pub struct SortedRows {
    chunks: Vec<Arc<Chunk>>,
    arrival: Arrival,
    /// The row kept of each (series, time), in output order, by arrival number, and the
    /// same as picks from the chunks.
    base: Vec<u32>,
    base_picks: Picks,
    /// Rows merged into one, by output row: the range of `dup_rows` holding the run's rows
    /// by arrival number, oldest first (a field takes the last one with a value).
    dups: Vec<(usize, Range<usize>)>,
    dup_rows: Vec<u32>,
    /// `time`, then the tag columns.
    keys: Vec<ArrayRef>,
    /// The series id of each row (rows of one series are adjacent).
    sids: UInt32Array,
    schema: SchemaRef,
    pub columns: BatchColumns,
    pub merged: usize,
}

impl SortedRows {
    pub fn new(chunks: &[Arc<Chunk>]) -> Result<SortedRows, ArrowError> {
        // The series table of the last chunk covers every sid of earlier chunks.
        let series: Arc<[TagSet]> = chunks
            .last()
            .map(|c| c.series.clone())
            .unwrap_or_else(|| Arc::from(vec![]));

        // Union of field columns (first type seen wins; the registry makes them agree).
        let mut fields: Vec<(Arc<str>, FieldType)> = Vec::new();
        for c in chunks {
            for (n, t, _) in &c.fields {
                if !fields.iter().any(|(m, _)| m == n) {
                    fields.push((n.clone(), *t));
                }
            }
        }
        fields.sort_by(|a, b| a.0.cmp(&b.0));

        // Rank series by tag set.
        let mut order: Vec<u32> = (0..series.len() as u32).collect();
        order.sort_by(|a, b| compare_tag_sets(&series[*a as usize], &series[*b as usize]));
        let mut rank = vec![0u32; series.len()];
        for (r, sid) in order.iter().enumerate() {
            rank[*sid as usize] = r as u32;
        }

        // Rows are numbered in arrival order across the chunks (nothing is concatenated)
        // and sorted by (series rank, time, arrival).
        let arrival = Arrival::new(chunks);
        let n = arrival.rows();
        let mut rows: Vec<(u32, i64, u32)> = Vec::with_capacity(n);
        for (c, start) in chunks.iter().zip(&arrival.starts) {
            let (times, sids) = (c.time.values(), c.sid.values());
            rows.extend(
                times
                    .iter()
                    .zip(sids.iter())
                    .enumerate()
                    .map(|(i, (t, s))| (rank[*s as usize], *t, (start + i) as u32)),
            );
        }
        rows.sort_unstable();

        // Runs of equal (series, time): keep the last row, and per field the last non-null.
        let mut base: Vec<u32> = Vec::with_capacity(n);
        let mut dups: Vec<(usize, Range<usize>)> = Vec::new();
        let mut dup_rows: Vec<u32> = Vec::new();
        let mut i = 0;
        while i < n {
            let mut j = i + 1;
            while j < n && rows[j].0 == rows[i].0 && rows[j].1 == rows[i].1 {
                j += 1;
            }
            if j - i > 1 {
                let from = dup_rows.len();
                dup_rows.extend(rows[i..j].iter().map(|r| r.2));
                dups.push((base.len(), from..dup_rows.len()));
            }
            base.push(rows[j - 1].2);
            i = j;
        }
        drop(rows);
        let merged = n - base.len();
        let base_picks = arrival.indices(&base);
        let all = 0..base.len();
        let time_parts: Vec<&dyn Array> = chunks.iter().map(|c| c.time.as_ref() as _).collect();
        let sid_parts: Vec<&dyn Array> = chunks.iter().map(|c| c.sid.as_ref() as _).collect();
        let out_time = arrival.gather(&time_parts, &base_picks, all.clone())?;
        let out_sid = arrival.gather(&sid_parts, &base_picks, all)?;
        let out_sid = out_sid
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| ArrowError::CastError("sid column is not u32".into()))?;

        // Tag columns: dictionary arrays keyed by series id, values = that series' tag value.
        let mut tag_keys: Vec<Arc<str>> = Vec::new();
        for set in series.iter() {
            for (k, _) in set.iter() {
                if let Err(pos) = tag_keys.binary_search(k) {
                    tag_keys.insert(pos, k.clone());
                }
            }
        }
        let sid_keys = Int32Array::from_iter_values(out_sid.values().iter().map(|s| *s as i32));
        let mut keys: Vec<ArrayRef> = vec![out_time];
        let mut schema_fields = vec![Field::new(TIME_COLUMN, time_type(), false)];
        for k in &tag_keys {
            let values: StringArray = series
                .iter()
                .map(|set| {
                    set.binary_search_by(|(key, _)| key.as_ref().cmp(k.as_ref()))
                        .ok()
                        .map(|p| set[p].1.to_string())
                })
                .collect();
            let dict = DictionaryArray::<Int32Type>::try_new(sid_keys.clone(), Arc::new(values))?;
            // A row whose series lacks this tag must be null, not the dictionary's null value.
            let dict = if dict.values().null_count() > 0 {
                let logical_nulls = dict.logical_nulls();
                let (k, v) = dict.into_parts();
                let keys = Int32Array::new(k.values().clone(), logical_nulls);
                DictionaryArray::<Int32Type>::try_new(keys, v)?
            } else {
                dict
            };
            keys.push(Arc::new(dict));
            schema_fields.push(Field::new(k.as_ref(), tag_type(), true));
        }
        for (name, t) in &fields {
            schema_fields.push(Field::new(name.as_ref(), t.arrow_type(), true));
        }
        Ok(SortedRows {
            chunks: chunks.to_vec(),
            arrival,
            base,
            base_picks,
            dups,
            dup_rows,
            keys,
            sids: out_sid.clone(),
            schema: Arc::new(Schema::new(schema_fields)),
            columns: BatchColumns {
                tags: tag_keys,
                fields,
            },
            merged,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn num_rows(&self) -> usize {
        self.base.len()
    }

    /// The time and tag columns.
    pub fn keys(&self) -> Result<RecordBatch, ArrowError> {
        let n = self.keys.len();
        let schema = self.schema.project(&(0..n).collect::<Vec<_>>())?;
        RecordBatch::try_new(Arc::new(schema), self.keys.clone())
    }

    /// Column `i` of [`schema`](Self::schema).
    pub fn column(&self, i: usize) -> Result<ArrayRef, ArrowError> {
        self.column_range(i, 0..self.num_rows())
    }

    /// The parts of field column `i` (of the schema) in each chunk (a chunk without the
    /// field has nulls), in one form to be gathered in, and the field's type. Parts held
    /// narrow (see [`IntValues`], [`FloatValues`]) stay narrow where they can: in their own
    /// form when they share it, at the widest integer width among them, else widened each
    /// to the field's type. [`reader_column`] widens what is gathered.
    fn field_parts(&self, i: usize) -> Result<(Vec<ArrayRef>, FieldType), ArrowError> {
        let (name, t) = self.field_at(i)?;
        let held = self.held(name);
        let form = gather_form(held.iter().flatten().map(|a| a.data_type()), t);
        let parts = self
            .chunks
            .iter()
            .zip(held)
            .map(|(c, a)| match a {
                Some(a) if *a.data_type() == form => Ok(a.clone()),
                Some(a) if form == t.arrow_type() => reader_column(a, t),
                Some(a) => arrow::compute::cast(a, &form),
                None => Ok(new_null_array(&form, c.rows())),
            })
            .collect::<Result<_, ArrowError>>()?;
        Ok((parts, t))
    }

    /// The name and type of field column `i` of the schema.
    fn field_at(&self, i: usize) -> Result<(&Arc<str>, FieldType), ArrowError> {
        i.checked_sub(self.keys.len())
            .and_then(|f| self.columns.fields.get(f))
            .map(|(n, t)| (n, *t))
            .ok_or_else(|| ArrowError::InvalidArgumentError(format!("no field column {i}")))
    }

    /// Each chunk's array of field `name`, as held.
    fn held(&self, name: &str) -> Vec<Option<&ArrayRef>> {
        self.chunks
            .iter()
            .map(|c| {
                c.fields
                    .iter()
                    .find(|(n, _, _)| &**n == name)
                    .map(|(_, _, a)| a)
            })
            .collect()
    }

    /// Rows `range` of column `i`: only those are gathered.
    pub fn column_range(&self, i: usize, range: Range<usize>) -> Result<ArrayRef, ArrowError> {
        if range.end > self.num_rows() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "rows {range:?} of {}",
                self.num_rows()
            )));
        }
        if let Some(k) = self.keys.get(i) {
            return Ok(k.slice(range.start, range.len()));
        }
        let (parts, t) = self.field_parts(i)?;
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        // The merged runs among these rows (`dups` is in output order).
        let first = self.dups.partition_point(|(r, _)| *r < range.start);
        let last = self.dups.partition_point(|(r, _)| *r < range.end);
        let dups = &self.dups[first..last];
        if dups.is_empty() || parts.iter().all(|a| a.null_count() == 0) {
            let gathered = self.arrival.gather(&refs, &self.base_picks, range)?;
            return reader_column(&gathered, t);
        }
        let mut idx = self.base[range.clone()].to_vec();
        for (out_row, run) in dups {
            let run = &self.dup_rows[run.clone()];
            if let Some(r) = run.iter().rev().find(|r| self.arrival.is_valid(&refs, **r)) {
                idx[*out_row - range.start] = *r;
            }
        }
        let gathered = self
            .arrival
            .gather(&refs, &self.arrival.indices(&idx), 0..idx.len())?;
        reader_column(&gathered, t)
    }

    /// The scale float column `i` is stored at in a file ([`scaled::choose_column`]'s
    /// answer on the gathered column), when the chunks' held forms tell it without the
    /// column being made: every part held as scaled integers (the largest of their scales,
    /// which is the smallest holding every value; the largest integer at it decides the
    /// precision), or a part holding a value no scale represents (not scaled). `None` when
    /// they do not tell: doubles held for another reason, or merged rows (the file holds
    /// a subset of the values, whose smallest scale may be smaller).
    pub fn known_scale(&self, i: usize) -> Option<Option<scaled::Scaled>> {
        let (name, t) = self.field_at(i).ok()?;
        if t != FieldType::Float || !self.dups.is_empty() {
            return None;
        }
        if self.chunks.iter().any(|c| c.undecimal.contains(name)) {
            return Some(None);
        }
        let mut parts = Vec::new();
        for a in self.held(name).into_iter().flatten() {
            let DataType::Decimal32(_, s) = a.data_type() else {
                return None;
            };
            let ints = a.as_any().downcast_ref::<Decimal32Array>()?;
            if ints.null_count() < ints.len() {
                let largest = ints.iter().flatten().map(i32::unsigned_abs).max();
                parts.push((u8::try_from(*s).ok()?, u64::from(largest.unwrap_or(0))));
            }
        }
        let Some(scale) = parts.iter().map(|(s, _)| *s).max() else {
            // No value at all: a column of nulls stays a double column.
            return Some(None);
        };
        let mut largest = 0u64;
        for (s, k) in parts {
            let at_scale = k.checked_mul(10u64.checked_pow(u32::from(scale - s))?)?;
            largest = largest.max(at_scale);
        }
        // `choose_column` multiplies each double by 10^scale and rounds: that gives back the
        // integer for certain only below 2^51 (the double and the product are each within
        // half an ulp); past it the values decide.
        if largest >= 1 << 51 {
            return None;
        }
        Some(Some(scaled::Scaled {
            name: name.to_string(),
            scale,
            precision: scaled::precision_for(largest),
        }))
    }

    /// Nulls in column `i` (a field none of whose chunks has one is not gathered).
    pub fn null_count(&self, i: usize) -> Result<usize, ArrowError> {
        if let Some(k) = self.keys.get(i) {
            return Ok(k.null_count());
        }
        // Without merged rows every row of the chunks is kept once: their nulls are the
        // column's, counted on the parts as held.
        let (name, _) = self.field_at(i)?;
        let nulls: Vec<usize> = self
            .chunks
            .iter()
            .zip(self.held(name))
            .map(|(c, a)| a.map_or(c.rows(), |a| a.null_count()))
            .collect();
        if self.dups.is_empty() || nulls.iter().all(|n| *n == 0) {
            return Ok(nulls.iter().sum());
        }
        Ok(self.column(i)?.null_count())
    }

    /// Every column, as one batch.
    pub fn batch(&self) -> Result<RecordBatch, ArrowError> {
        let columns = (0..self.schema.fields().len())
            .map(|i| self.column(i))
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

/// The form parts of these types are gathered in (see [`SortedRows::field_parts`]).
fn gather_form<'a>(mut types: impl Iterator<Item = &'a DataType>, t: FieldType) -> DataType {
    let Some(first) = types.next() else {
        return t.arrow_type();
    };
    let width = |d: &DataType| match d {
        DataType::Int8 => Some(1),
        DataType::Int16 => Some(2),
        DataType::Int32 => Some(4),
        DataType::Int64 => Some(8),
        _ => None,
    };
    let mut form = first.clone();
    for d in types {
        if *d == form {
            continue;
        }
        match (width(d), width(&form)) {
            (Some(a), Some(b)) if a > b => form = d.clone(),
            (Some(_), Some(_)) => {}
            _ => return t.arrow_type(),
        }
    }
    form
}

/// A chunk's column in its field's type: narrow integers ([`IntValues`]) widened, scaled
/// floats ([`FloatValues`]) divided back into the doubles they were.
fn reader_column(a: &ArrayRef, t: FieldType) -> Result<ArrayRef, ArrowError> {
    let want = t.arrow_type();
    if *a.data_type() == want {
        return Ok(a.clone());
    }
    match scaled::decimal_to_f64(a) {
        Some(floats) => floats,
        None => arrow::compute::cast(a, &want),
    }
}

impl crate::storage::writer::Columns for SortedRows {
    fn schema(&self) -> SchemaRef {
        SortedRows::schema(self)
    }

    fn num_rows(&self) -> usize {
        SortedRows::num_rows(self)
    }

    fn column_at(&self, i: usize) -> Result<ArrayRef, ArrowError> {
        self.column(i)
    }

    fn column_range(&self, i: usize, range: Range<usize>) -> Result<ArrayRef, ArrowError> {
        SortedRows::column_range(self, i, range)
    }

    fn null_count(&self, i: usize) -> Result<usize, ArrowError> {
        SortedRows::null_count(self, i)
    }

    fn known_scale(&self, i: usize) -> Option<Option<scaled::Scaled>> {
        SortedRows::known_scale(self, i)
    }

    /// Where the series id changes: distinct series differ in some tag, so these are the
    /// runs the tag columns give.
    fn known_series_runs(&self) -> Option<Vec<Range<usize>>> {
        let sids = self.sids.values();
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=sids.len() {
            if i == sids.len() || sids[i] != sids[start] {
                runs.push(start..i);
                start = i;
            }
        }
        Some(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::series_hash;
    use arrow::array::{AsArray, Float64Array, Int64Array};
    use arrow::datatypes::{Float64Type, Int64Type};
    use proptest::prelude::*;

    /// Appends a row; the bytes it added to the block's count.
    fn add(
        b: &mut Block,
        tags: &[(&str, &str)],
        fields: &[(&str, FieldValue<'static>)],
        ts: i64,
    ) -> usize {
        let mut t = tags.to_vec();
        t.sort();
        b.append(series_hash("m", &t), &t, fields, ts, false)
    }

    /// One line with thousands of fields, then many rows with one field each: the chunks do
    /// not hold rows x columns (the wide row is frozen apart), every value reads back, and
    /// the memory counted is what a flush will make of them (rows x columns).
    #[test]
    fn sparse_wide_rows_do_not_multiply_nulls() {
        let mut b = Block::new();
        let names: Vec<String> = (0..2000).map(|i| format!("f{i:04}")).collect();
        let wide: Vec<(&str, FieldValue<'static>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), FieldValue::Integer(i as i64)))
            .collect();
        let mut counted = b.append(1, &[("host", "a")], &wide, 0, false);
        for t in 1..=10_000i64 {
            let f = [(names[(t % 7) as usize].as_str(), FieldValue::Integer(-t))];
            counted += b.append(1, &[("host", "a")], &f, t, false);
        }
        let chunks = b.freeze();
        let held: usize = chunks
            .iter()
            .map(|c| {
                c.fields
                    .iter()
                    .map(|(_, _, a)| a.get_array_memory_size())
                    .sum::<usize>()
                    + c.rows() * 12
            })
            .sum();
        assert!(held < 4 << 20, "chunks hold {held} bytes");
        // Counted as a flush will hold it: every row over all 2,000 columns.
        assert!(counted >= 10_001 * 2000 * 9, "counted {counted}");
        assert_eq!(chunks.iter().map(|c| c.rows()).sum::<usize>(), 10_001);
        let (batch, _, _) = sorted_batch(&chunks).unwrap();
        assert_eq!(batch.num_rows(), 10_001);
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone()
        };
        assert_eq!(col("f1999").value(0), 1999);
        assert_eq!(col("f0003").value(3), -3);
        assert!(col("f0003").is_null(4));
    }

    /// Chunks frozen while no series was added share one snapshot of the series table (a
    /// query freezes the block: a copy each time multiplied a million series' table).
    #[test]
    fn chunks_share_the_series_snapshot_until_a_series_is_added() {
        let mut b = Block::new();
        let f = [("v", FieldValue::Integer(1))];
        b.append(1, &[("host", "a")], &f, 1, false);
        let c1 = b.freeze();
        b.append(1, &[("host", "a")], &f, 2, false);
        let c2 = b.freeze();
        assert!(Arc::ptr_eq(&c1[0].series, &c2[1].series));
        b.append(2, &[("host", "b")], &f, 3, false);
        let c3 = b.freeze();
        assert!(!Arc::ptr_eq(&c2[1].series, &c3[2].series));
        assert_eq!(c3[2].series.len(), 2);
    }

    /// Memory is counted as a flush will hold it: a row costs every column of the block.
    #[test]
    fn every_row_costs_every_active_column() {
        let mut b = Block::new();
        let names: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
        let mut counted = 0;
        for t in 0..1000i64 {
            let f = [(names[(t % 100) as usize].as_str(), FieldValue::Float(1.0))];
            counted += b.append(1, &[("host", "a")], &f, t, false);
        }
        // 100 float columns x 1000 rows x 9 bytes: what a flush makes of them.
        assert!(counted >= 100 * 1000 * 9, "{counted}");
        let chunks = b.freeze();
        assert_eq!(chunks.iter().map(|c| c.rows()).sum::<usize>(), 1000);
    }

    /// Rows appended with `same_fields` (reusing the last row's columns) make the same
    /// block as rows whose columns are looked up, with field sets changing in between.
    #[test]
    fn reused_columns_equal_looked_up_columns() {
        let rows: Vec<(Vec<(&str, FieldValue<'static>)>, bool)> = vec![
            (
                vec![("a", FieldValue::Integer(1)), ("b", FieldValue::Float(2.0))],
                false,
            ),
            (
                vec![("a", FieldValue::Integer(3)), ("b", FieldValue::Float(4.0))],
                true,
            ),
            (
                vec![("b", FieldValue::Float(5.0)), ("a", FieldValue::Integer(6))],
                false,
            ),
            (
                vec![("b", FieldValue::Float(7.0)), ("a", FieldValue::Integer(8))],
                true,
            ),
            (vec![("c", FieldValue::Boolean(true))], false),
            (vec![("c", FieldValue::Boolean(false))], true),
            (
                vec![("a", FieldValue::Integer(9)), ("b", FieldValue::Float(1.0))],
                false,
            ),
        ];
        let (mut reused, mut looked_up) = (Block::new(), Block::new());
        for (i, (fields, same)) in rows.iter().enumerate() {
            let t = [("host", "h")];
            let h = series_hash("m", &t);
            reused.append(h, &t, fields, i as i64, *same);
            looked_up.append(h, &t, fields, i as i64, false);
        }
        let (a, ..) = sorted_batch(&reused.freeze()).unwrap();
        let (b, ..) = sorted_batch(&looked_up.freeze()).unwrap();
        assert_eq!(a, b);
        let ints = a.column_by_name("a").unwrap().as_primitive::<Int64Type>();
        assert_eq!(
            ints.iter().collect::<Vec<_>>(),
            vec![Some(1), Some(3), Some(6), Some(8), None, None, Some(9)]
        );
        let bools = a.column_by_name("c").unwrap().as_boolean();
        assert_eq!(bools.null_count(), 5);
    }

    fn tag_values(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let col = batch.column_by_name(name).unwrap();
        let d = col.as_dictionary::<Int32Type>();
        let vals = d.values().as_string::<i32>();
        (0..d.len())
            .map(|i| {
                d.is_valid(i)
                    .then(|| vals.value(d.keys().value(i) as usize).to_string())
            })
            .collect()
    }

    #[test]
    fn sorts_by_tag_set_then_time_with_nulls_first() {
        let mut b = Block::new();
        add(
            &mut b,
            &[("host", "b")],
            &[("v", FieldValue::Float(1.0))],
            20,
        );
        add(
            &mut b,
            &[("host", "a")],
            &[("v", FieldValue::Float(2.0))],
            30,
        );
        add(
            &mut b,
            &[("host", "a")],
            &[("v", FieldValue::Float(3.0))],
            10,
        );
        add(&mut b, &[], &[("v", FieldValue::Float(4.0))], 5);
        add(
            &mut b,
            &[("host", "a"), ("dc", "x")],
            &[("v", FieldValue::Float(5.0))],
            1,
        );
        let chunks = b.freeze();
        let (batch, cols, merged) = sorted_batch(&chunks).unwrap();
        assert_eq!(merged, 0);
        assert_eq!(
            cols.tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            vec!["dc", "host"]
        );
        // dc null < dc=x; within dc null: host null < a < b.
        assert_eq!(
            tag_values(&batch, "host"),
            vec![
                None,
                Some("a".into()),
                Some("a".into()),
                Some("b".into()),
                Some("a".into())
            ]
        );
        assert_eq!(
            tag_values(&batch, "dc"),
            vec![None, None, None, None, Some("x".into())]
        );
        let t = batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(t.values().to_vec(), vec![5, 10, 30, 20, 1]);
        let v = batch
            .column_by_name("v")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(v.values().to_vec(), vec![4.0, 3.0, 2.0, 1.0, 5.0]);
    }

    /// Active rows are frozen at ACTIVE_ROWS, into chunks whose buffers are full; the
    /// sorted batch gathered across them equals a model (last write wins, also for a
    /// point rewritten in a later chunk).
    #[test]
    fn full_active_rows_freeze_into_full_chunks_and_sort_across_them() {
        let mut b = Block::new();
        let mut model = std::collections::BTreeMap::new();
        let n = 2 * ACTIVE_ROWS + 10;
        for i in 0..n {
            let host = format!("h{:02}", i % 50);
            // Times repeat every 40,000 rows: later chunks overwrite earlier points.
            let t = ((i * 7919) % 40_000) as i64;
            add(
                &mut b,
                &[("host", &host)],
                &[("v", FieldValue::Integer(i as i64))],
                t,
            );
            model.insert((host, t), i as i64);
        }
        assert_eq!(b.chunks.len(), 2, "frozen at each ACTIVE_ROWS");
        for c in &b.chunks {
            assert_eq!(c.rows(), ACTIVE_ROWS);
            assert_eq!(c.time.values().inner().capacity(), ACTIVE_ROWS * 8);
        }
        let chunks = b.freeze();
        assert_eq!(chunks.len(), 3);
        let (batch, _, merged) = sorted_batch(&chunks).unwrap();
        assert_eq!(merged, n - model.len());
        let hosts = tag_values(&batch, "host");
        let times = batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        let v = batch
            .column_by_name("v")
            .unwrap()
            .as_primitive::<Int64Type>();
        let got: Vec<((String, i64), i64)> = (0..batch.num_rows())
            .map(|r| ((hosts[r].clone().unwrap(), times.value(r)), v.value(r)))
            .collect();
        let want: Vec<((String, i64), i64)> = model.into_iter().collect();
        assert_eq!(got, want);
    }

    /// Any rows of a field column, gathered alone, are those rows of the whole column, also
    /// where rewritten points merge field by field across chunks; null counts agree.
    #[test]
    fn column_ranges_equal_slices_of_the_whole_column() {
        let mut b = Block::new();
        for round in 0..3i64 {
            for i in 0..40i64 {
                let host = format!("h{}", i % 4);
                let x = FieldValue::Integer(round * 100 + i);
                let fields: Vec<(&str, FieldValue<'static>)> = match (round + i) % 3 {
                    0 => vec![("x", x)],
                    1 => vec![("y", FieldValue::Float(i as f64))],
                    _ => vec![("x", x), ("y", FieldValue::Float(-1.0))],
                };
                add(&mut b, &[("host", &host)], &fields, i / 4);
            }
            b.freeze();
        }
        let sorted = SortedRows::new(&b.freeze()).unwrap();
        assert!(sorted.merged > 0 && sorted.chunks.len() == 3);
        let n = sorted.num_rows();
        for i in 0..sorted.schema().fields().len() {
            let whole = sorted.column(i).unwrap();
            assert_eq!(sorted.null_count(i).unwrap(), whole.null_count());
            for start in 0..n {
                for end in [start, (start + 1).min(n), (start + 7).min(n), n] {
                    let part = sorted.column_range(i, start..end).unwrap();
                    assert_eq!(part.as_ref(), whole.slice(start, end - start).as_ref());
                }
            }
        }
        assert!(sorted.column_range(0, 0..n + 1).is_err());
        // No merged rows, sparse fields in every chunk: the null count comes from the
        // chunks without a gather, and is the column's.
        let mut b = Block::new();
        for round in 0..3i64 {
            for i in 0..40i64 {
                let fields: Vec<(&str, FieldValue<'static>)> = match i % 3 {
                    0 => vec![("x", FieldValue::Integer(i))],
                    _ => vec![("y", FieldValue::Float(i as f64))],
                };
                add(
                    &mut b,
                    &[("host", &format!("h{}", i % 4))],
                    &fields,
                    round * 100 + i,
                );
            }
            b.freeze();
        }
        let sorted = SortedRows::new(&b.freeze()).unwrap();
        assert_eq!(sorted.merged, 0);
        for i in 0..sorted.schema().fields().len() {
            assert_eq!(
                sorted.null_count(i).unwrap(),
                sorted.column(i).unwrap().null_count()
            );
        }
    }

    /// The series runs told by the series ids are those the tag columns give, with series
    /// that lack a tag (nulls) among them.
    #[test]
    fn series_runs_from_ids_equal_runs_from_tag_columns() {
        use crate::storage::writer::Columns;
        let mut b = Block::new();
        for i in 0..300i64 {
            let host = format!("h{}", i % 7);
            let tags: Vec<(&str, &str)> = match i % 3 {
                0 => vec![("host", &host)],
                1 => vec![("dc", "d1"), ("host", &host)],
                _ => vec![],
            };
            add(&mut b, &tags, &[("v", FieldValue::Integer(i))], i / 5);
        }
        let sorted = SortedRows::new(&b.freeze()).unwrap();
        let keys = sorted.keys().unwrap();
        let tags: Vec<usize> = (1..keys.num_columns()).collect();
        let want = crate::storage::paged::series_runs(&keys, &tags).unwrap();
        assert!(want.len() > 10);
        assert_eq!(sorted.known_series_runs(), Some(want));
    }

    /// A block adding many series is not frozen at ACTIVE_ROWS once a chunk's snapshot of
    /// its series table would copy more entries than that.
    #[test]
    fn many_new_series_do_not_freeze_a_snapshot_per_chunk() {
        let mut b = Block::new();
        for i in 0..3 * ACTIVE_ROWS {
            let host = format!("h{i}");
            add(
                &mut b,
                &[("host", &host)],
                &[("v", FieldValue::Integer(1))],
                0,
            );
        }
        // Frozen at the first ACTIVE_ROWS (a snapshot of 65,536 series), not the second.
        assert_eq!(b.chunks.len(), 1);
        assert_eq!(b.freeze().len(), 2);
        // That freeze (a query's read) copied the table again: the next row counts it.
        let row = add(
            &mut b,
            &[("host", "h0")],
            &[("v", FieldValue::Integer(1))],
            0,
        );
        assert!(
            row >= 3 * ACTIVE_ROWS * std::mem::size_of::<TagSet>(),
            "{row}"
        );
        let next = add(
            &mut b,
            &[("host", "h0")],
            &[("v", FieldValue::Integer(1))],
            1,
        );
        assert!(next < 1024, "{next}");
    }

    #[test]
    fn duplicates_merge_last_write_wins_field_by_field_across_chunks() {
        let mut b = Block::new();
        add(
            &mut b,
            &[("h", "a")],
            &[("x", FieldValue::Float(1.0)), ("y", FieldValue::Integer(1))],
            100,
        );
        b.freeze();
        add(&mut b, &[("h", "a")], &[("x", FieldValue::Float(2.0))], 100);
        add(
            &mut b,
            &[("h", "a")],
            &[("z", FieldValue::Boolean(true))],
            100,
        );
        add(&mut b, &[("h", "a")], &[("x", FieldValue::Float(9.0))], 101);
        let chunks = b.freeze();
        assert_eq!(chunks.len(), 2);
        let (batch, _, merged) = sorted_batch(&chunks).unwrap();
        assert_eq!(merged, 2);
        assert_eq!(batch.num_rows(), 2);
        let x = batch
            .column_by_name("x")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        let y = batch
            .column_by_name("y")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let z = batch.column_by_name("z").unwrap().as_boolean();
        assert_eq!((x.value(0), y.value(0), z.value(0)), (2.0, 1, true));
        assert_eq!(x.value(1), 9.0);
        assert!(y.is_null(1) && z.is_null(1));
    }

    /// Integer and float columns are held narrow (small integers in a byte, decimals as
    /// scaled 32-bit integers) and read back as the 64-bit values written.
    #[test]
    fn small_integers_and_decimals_are_held_narrow() {
        let mut b = Block::new();
        for (t, (i, x)) in [(58, 12.34), (-3, 0.5), (100, 99.99)]
            .into_iter()
            .enumerate()
        {
            let f = [
                ("i", FieldValue::Integer(i)),
                ("x", FieldValue::Float(x)),
                ("full", FieldValue::Float(x + 1e-12)),
            ];
            add(&mut b, &[("h", "a")], &f, t as i64);
        }
        let chunks = b.freeze();
        let held = |name: &str| {
            let (_, _, a) = chunks[0].fields.iter().find(|f| &*f.0 == name).unwrap();
            a.data_type().clone()
        };
        assert_eq!(held("i"), DataType::Int8);
        assert_eq!(held("x"), DataType::Decimal32(9, 2));
        assert_eq!(held("full"), DataType::Float64);
        let (batch, _, _) = sorted_batch(&chunks).unwrap();
        let i = batch
            .column_by_name("i")
            .unwrap()
            .as_primitive::<Int64Type>();
        let x = batch
            .column_by_name("x")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(i.values().to_vec(), vec![58, -3, 100]);
        assert_eq!(x.values().to_vec(), vec![12.34, 0.5, 99.99]);
    }

    /// Chunks holding one column in different forms (widths, scales, doubles) are gathered
    /// together: integers at the widest width among them, floats as doubles.
    #[test]
    fn chunks_of_different_forms_gather_together() {
        let mut b = Block::new();
        let rows: [(i64, Option<i64>, f64); 4] = [
            (0, Some(7), 1.5),
            (1, Some(1_000), 0.125),
            (2, None, 0.1 + 0.2),
            (3, Some(-3), 2.0),
        ];
        for (t, i, x) in rows {
            let mut f = vec![("x", FieldValue::Float(x))];
            f.extend(i.map(|i| ("i", FieldValue::Integer(i))));
            add(&mut b, &[("h", "a")], &f, t);
            b.freeze();
        }
        let chunks = b.freeze();
        let held = |c: &Chunk, name: &str| {
            c.fields
                .iter()
                .find(|f| &*f.0 == name)
                .map(|(_, _, a)| a.data_type().clone())
        };
        let forms: Vec<_> = chunks
            .iter()
            .map(|c| (held(c, "i"), held(c, "x")))
            .collect();
        assert_eq!(
            forms,
            vec![
                (Some(DataType::Int8), Some(DataType::Decimal32(9, 1))),
                (Some(DataType::Int16), Some(DataType::Decimal32(9, 3))),
                (None, Some(DataType::Float64)),
                (Some(DataType::Int8), Some(DataType::Decimal32(9, 0))),
            ]
        );
        let sorted = SortedRows::new(&chunks).unwrap();
        let (parts, _) = sorted.field_parts(2).unwrap();
        assert!(parts.iter().all(|p| *p.data_type() == DataType::Int16));
        let batch = sorted.batch().unwrap();
        let i: Vec<Option<i64>> = batch
            .column_by_name("i")
            .unwrap()
            .as_primitive::<Int64Type>()
            .iter()
            .collect();
        let x = batch
            .column_by_name("x")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(i, vec![Some(7), Some(1_000), None, Some(-3)]);
        assert_eq!(x.values().to_vec(), vec![1.5, 0.125, 0.1 + 0.2, 2.0]);
        assert_eq!(sorted.null_count(2).unwrap(), 1);
        // `x` holds 0.1 + 0.2, which no scale represents: a file stores it as doubles.
        assert_eq!(sorted.known_scale(3), Some(None));
        assert_eq!(sorted.known_scale(2), None);
        // Without it, the largest scale of the parts, as the values say.
        let sorted = SortedRows::new(&[chunks[0].clone(), chunks[1].clone()]).unwrap();
        let known = sorted.known_scale(3).unwrap().unwrap();
        assert_eq!((known.scale, known.precision), (3, 9));
        let whole = sorted.column(3).unwrap();
        let field = sorted.schema().field(3).clone();
        assert_eq!(scaled::choose_column(&field, &whole), Some(known));
        // Parts whose integers at the largest scale pass nine digits: 64-bit precision.
        let mut b = Block::new();
        for (t, x) in [(0, 5_000.0), (1, 0.000_001)] {
            add(&mut b, &[("h", "a")], &[("x", FieldValue::Float(x))], t);
            b.freeze();
        }
        let sorted = SortedRows::new(&b.freeze()).unwrap();
        let known = sorted.known_scale(2).unwrap().unwrap();
        assert_eq!((known.scale, known.precision), (6, 18));
        let field = sorted.schema().field(2).clone();
        assert_eq!(
            scaled::choose_column(&field, &sorted.column(2).unwrap()),
            Some(known)
        );
        // Past 2^51 at the largest scale, multiplying the double back may not give the
        // integer (4239389.15 × 10^9 does not): the values decide, and here say no scale.
        let mut b = Block::new();
        for (t, x) in [(0, 4_239_389.15), (1, 1e-9)] {
            add(&mut b, &[("h", "a")], &[("x", FieldValue::Float(x))], t);
            b.freeze();
        }
        let sorted = SortedRows::new(&b.freeze()).unwrap();
        assert_eq!(sorted.known_scale(2), None);
        let field = sorted.schema().field(2).clone();
        assert_eq!(
            scaled::choose_column(&field, &sorted.column(2).unwrap()),
            None
        );
    }

    #[test]
    fn new_fields_backfill_nulls_and_freeze_is_a_snapshot() {
        let mut b = Block::new();
        add(&mut b, &[("h", "a")], &[("x", FieldValue::Float(1.0))], 1);
        add(
            &mut b,
            &[("h", "a")],
            &[("s", FieldValue::String("hi".into()))],
            2,
        );
        let snap = b.freeze();
        add(&mut b, &[("h", "b")], &[("x", FieldValue::Float(3.0))], 3);
        assert_eq!(snap.iter().map(|c| c.rows()).sum::<usize>(), 2);
        assert_eq!(b.rows(), 3);
        let c = &snap[0];
        let s = c.fields.iter().find(|f| &*f.0 == "s").unwrap();
        assert!(s.2.is_null(0) && s.2.is_valid(1));
        let x = c.fields.iter().find(|f| &*f.0 == "x").unwrap();
        assert!(x.2.is_valid(0) && x.2.is_null(1));
        let all = b.freeze();
        let (batch, _, _) = sorted_batch(&all).unwrap();
        assert_eq!(batch.num_rows(), 3);
        // series b appeared after the first chunk was frozen; the last chunk's table has it.
        assert_eq!(
            tag_values(&batch, "h"),
            vec![Some("a".into()), Some("a".into()), Some("b".into())]
        );
    }

    /// An integer of any width: small ones most often, as agents send them.
    fn any_integer() -> impl Strategy<Value = i64> {
        prop_oneof![
            -128i64..128,
            -40_000i64..40_000,
            any::<i32>().prop_map(i64::from),
            Just(i64::MIN),
            Just(i64::MAX),
            any::<i64>(),
        ]
    }

    /// A float as an agent sends it: a decimal of 0 to 10 places (parsed as `k / 10^s` is),
    /// or any double at all (full precision, -0.0, infinities, NaN).
    fn any_float() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-20_000i64..20_000, 0i32..4).prop_map(|(k, s)| k as f64 / 10f64.powi(s)),
            (-10_000_000_000i64..10_000_000_000, 0i32..=10)
                .prop_map(|(k, s)| k as f64 / 10f64.powi(s)),
            any::<f64>(),
        ]
    }

    /// A small gauge, now and then past a byte or two.
    fn small_integer() -> impl Strategy<Value = i64> {
        prop_oneof![20 => -100i64..100, 1 => -40_000i64..40_000, 1 => Just(1i64 << 40)]
    }

    /// A decimal of a few places, now and then of more (a rescale) or of too many digits
    /// for 32 bits (doubles).
    fn decimal() -> impl Strategy<Value = f64> {
        prop_oneof![
            20 => (-10_000i64..10_000, 0i32..3).prop_map(|(k, s)| k as f64 / 10f64.powi(s)),
            1 => (-1_000_000i64..1_000_000, 3i32..7).prop_map(|(k, s)| k as f64 / 10f64.powi(s)),
            1 => Just(123_456_789.012_345),
            // Nine digits at two places and a ninth place apart: 2^51 and more at scale 9.
            1 => (400_000_000i64..999_999_999).prop_map(|k| k as f64 / 100.0),
            1 => (1i64..1_000).prop_map(|k| k as f64 / 1e9),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// The block's test for a scaled value takes exactly the values the files' takes.
        #[test]
        fn scaled_32_agrees_with_the_files_test(
            x in prop_oneof![any_float(), decimal(), (-2_000_000_000i64..2_000_000_000, 0i32..=9)
                .prop_map(|(k, s)| k as f64 / 10f64.powi(s))],
            s in 0u8..=scaled::MAX_SCALE,
        ) {
            let files = scaled::scaled(x, s)
                .filter(|k| k.unsigned_abs() <= MAX_SCALED)
                .map(|k| k as i32);
            prop_assert_eq!(scaled_32(x, s), files);
        }

        /// Whatever widths and scales the values force, wherever chunks are frozen and
        /// whichever rows overwrite others, the sorted rows hold the values written (floats
        /// bit for bit), merged last-write-wins field by field as a map of the rows says;
        /// a range of rows and the null counts agree with the whole column.
        #[test]
        fn narrow_columns_read_back_the_values_written(
            rows in proptest::collection::vec(
                (
                    0i64..60,
                    proptest::option::of(small_integer()),
                    proptest::option::of(any_integer()),
                    proptest::option::of(decimal()),
                    proptest::option::of(any_float()),
                    0u8..6,
                ),
                1..300,
            ),
            cut in 0usize..60,
            distinct in any::<bool>(),
        ) {
            type Row = (Option<i64>, Option<i64>, Option<u64>, Option<u64>);
            let mut b = Block::new();
            let mut model: std::collections::BTreeMap<i64, Row> = Default::default();
            for (n, (ts, small, wide, dec, any, freeze)) in rows.iter().enumerate() {
                // Half the cases overwrite no row (the file's scale is known from the chunks
                // only then).
                let ts = if distinct { n as i64 } else { *ts };
                let mut f = vec![("always", FieldValue::Boolean(true))];
                f.extend(small.map(|v| ("small", FieldValue::Integer(v))));
                f.extend(wide.map(|v| ("wide", FieldValue::Integer(v))));
                f.extend(dec.map(|v| ("dec", FieldValue::Float(v))));
                f.extend(any.map(|v| ("any", FieldValue::Float(v))));
                add(&mut b, &[("h", "a")], &f, ts);
                let m = model.entry(ts).or_default();
                m.0 = small.or(m.0);
                m.1 = wide.or(m.1);
                m.2 = dec.map(f64::to_bits).or(m.2);
                m.3 = any.map(f64::to_bits).or(m.3);
                if *freeze == 0 {
                    b.freeze();
                }
            }
            let sorted = SortedRows::new(&b.freeze()).unwrap();
            let batch = sorted.batch().unwrap();
            prop_assert_eq!(batch.num_rows(), model.len());
            let ints = |name: &str, want: Vec<Option<i64>>| -> Result<(), TestCaseError> {
                if let Some(c) = batch.column_by_name(name) {
                    let got: Vec<Option<i64>> = c.as_primitive::<Int64Type>().iter().collect();
                    prop_assert_eq!(got, want);
                }
                Ok(())
            };
            let floats = |name: &str, want: Vec<Option<u64>>| -> Result<(), TestCaseError> {
                if let Some(c) = batch.column_by_name(name) {
                    let c = c.as_primitive::<Float64Type>();
                    let got: Vec<Option<u64>> = c.iter().map(|v| v.map(f64::to_bits)).collect();
                    prop_assert_eq!(got, want);
                }
                Ok(())
            };
            ints("small", model.values().map(|m| m.0).collect())?;
            ints("wide", model.values().map(|m| m.1).collect())?;
            floats("dec", model.values().map(|m| m.2).collect())?;
            floats("any", model.values().map(|m| m.3).collect())?;
            let from = cut.min(batch.num_rows());
            let schema = batch.schema();
            for i in 0..batch.num_columns() {
                let whole = batch.column(i);
                // What the held forms say of a file's scale is what the values say.
                if let Some(known) = sorted.known_scale(i) {
                    prop_assert_eq!(known, scaled::choose_column(schema.field(i), whole));
                }
                prop_assert_eq!(sorted.null_count(i).unwrap(), whole.null_count());
                let part = sorted.column_range(i, from..batch.num_rows()).unwrap();
                prop_assert_eq!(&part, &whole.slice(from, batch.num_rows() - from));
            }
        }
    }
}
