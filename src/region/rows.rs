//! Checked rows in two buffers: what a shard appends, and its WAL payload (the two written
//! one after the other).
//!
//! The check stage parses each line once and encodes the accepted ones here; the shard
//! decodes them without touching the line protocol parser again (profiling showed the second
//! parse cost about a third of ingest CPU), and WAL replay decodes the same bytes.
//!
//! ```text
//! payload = head heap
//! head    = db_len:u32 db  rows_len:u32 row*
//! row     = ts:i64 hash:u64 meas:str ntags:u32 (k:str v:str)* nfields:u32 (k:str type:u8 value)*
//! str     = offset:u32 len:u32               a slice of the heap
//! value   = f64 | i64 | u64 (8 bytes LE) | bool (1 byte) | str   by type 0..=4
//! heap    = every string, concatenated (UTF-8)
//! ```
//! Invariants: tags are sorted by key; the heap is validated as UTF-8 once per payload and
//! strings are taken from it with checked `str::get` (a char-boundary check, no second
//! validation), so a payload from disk can never produce invalid `str`s; decoding never
//! panics.

use std::borrow::Cow;

use crate::bufpool::ROWS;
use crate::lineproto::FieldValue;

/// A decoded row, borrowing from the payload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row<'a> {
    pub ts: i64,
    pub series_hash: u64,
    pub measurement: &'a str,
    pub tags: Vec<(&'a str, &'a str)>,
    pub fields: Vec<(&'a str, FieldValue<'a>)>,
}

/// A payload in its two parts, `head` then `heap` (buffers of [`ROWS`], given back when
/// dropped): written to the WAL part by part, never copied into one buffer.
#[derive(Debug, Default)]
pub struct Payload {
    head: Vec<u8>,
    heap: Vec<u8>,
}

impl Payload {
    /// The parts, concatenated: the payload.
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.head, &self.heap]
    }

    pub fn decode(&self) -> Option<(&str, Rows<'_>)> {
        decode_parts(&self.head, &self.heap)
    }

    /// The payload in one buffer (tests).
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<u8> {
        [&self.head[..], &self.heap[..]].concat()
    }
}

impl Drop for Payload {
    /// The buffers are reused by later writes (see `bufpool`).
    fn drop(&mut self) {
        ROWS.give(std::mem::take(&mut self.head));
        ROWS.give(std::mem::take(&mut self.heap));
    }
}

/// Builds a payload row by row.
#[derive(Debug, Clone)]
pub struct RowWriter {
    /// `db_len db rows_len` (rows_len filled in by `finish`), then the rows.
    rows_buf: Vec<u8>,
    /// Where the rows start in `rows_buf`.
    rows_start: usize,
    /// Every string, concatenated (only `&str`s are appended: UTF-8).
    heap: Vec<u8>,
    rows: usize,
    /// The key strings (measurement, tag keys, field keys) of the last row pushed with a
    /// shape id, as (offset, len) in the heap, and that id: a later row of the same shape
    /// points at them instead of copying its keys again.
    keys: Option<u64>,
    key_refs: Vec<(u32, u32)>,
}

impl RowWriter {
    /// A writer with room for about `capacity` bytes of rows (growing by doubling copies
    /// everything written so far: size it from the request body).
    pub fn new(db: &str, capacity: usize) -> RowWriter {
        let mut rows_buf = ROWS.take(capacity.max(256) / 2 + 8 + db.len());
        rows_buf.extend_from_slice(&(db.len() as u32).to_le_bytes());
        rows_buf.extend_from_slice(db.as_bytes());
        rows_buf.extend_from_slice(&0u32.to_le_bytes());
        RowWriter {
            rows_start: rows_buf.len(),
            rows_buf,
            heap: ROWS.take(capacity.max(256) / 2),
            rows: 0,
            keys: None,
            key_refs: Vec::new(),
        }
    }

    fn put_str(&mut self, s: &str) {
        self.put_ref(self.heap.len() as u32, s.len() as u32);
        self.heap.extend_from_slice(s.as_bytes());
    }

    fn put_ref(&mut self, offset: u32, len: u32) {
        self.rows_buf.extend_from_slice(&offset.to_le_bytes());
        self.rows_buf.extend_from_slice(&len.to_le_bytes());
    }

    /// Writes key number `i` of the row: a reference to the same key of the previous row
    /// of the shape when `reuse`, else the string (remembered when `remember`).
    fn put_key(&mut self, i: usize, s: &str, reuse: bool, remember: bool) {
        match self.key_refs.get(i) {
            Some(&(offset, len)) if reuse => {
                // The caller's promise (same shape id, same keys), checked in tests.
                debug_assert_eq!(
                    self.heap.get(offset as usize..(offset + len) as usize),
                    Some(s.as_bytes()),
                    "a row pushed with the shape of the previous one has other keys"
                );
                self.put_ref(offset, len)
            }
            _ => {
                if remember {
                    self.key_refs.push((self.heap.len() as u32, s.len() as u32));
                }
                self.put_str(s);
            }
        }
    }

    /// Appends a row; `sorted_tags` must be sorted by key. `shape` identifies the row's
    /// keys: rows pushed with the same `Some(id)` must have the same measurement, tag keys
    /// and field keys in the same order; the writer then stores those strings once per
    /// payload (the decoder reads every reference alike, so the format is unchanged).
    pub fn push<K: AsRef<str>>(
        &mut self,
        ts: i64,
        series_hash: u64,
        measurement: &str,
        sorted_tags: &[(&str, &str)],
        fields: &[(K, FieldValue<'_>)],
        shape: Option<u64>,
    ) {
        let reuse = shape.is_some() && shape == self.keys;
        let remember = shape.is_some() && !reuse;
        if remember {
            self.keys = shape;
            self.key_refs.clear();
        }
        self.rows_buf.extend_from_slice(&ts.to_le_bytes());
        self.rows_buf.extend_from_slice(&series_hash.to_le_bytes());
        self.put_key(0, measurement, reuse, remember);
        self.rows_buf
            .extend_from_slice(&(sorted_tags.len() as u32).to_le_bytes());
        for (i, (k, v)) in sorted_tags.iter().enumerate() {
            self.put_key(1 + i, k, reuse, remember);
            self.put_str(v);
        }
        self.rows_buf
            .extend_from_slice(&(fields.len() as u32).to_le_bytes());
        for (i, (k, v)) in fields.iter().enumerate() {
            self.put_key(1 + sorted_tags.len() + i, k.as_ref(), reuse, remember);
            match v {
                FieldValue::Float(x) => {
                    self.rows_buf.push(0);
                    self.rows_buf.extend_from_slice(&x.to_le_bytes());
                }
                FieldValue::Integer(x) => {
                    self.rows_buf.push(1);
                    self.rows_buf.extend_from_slice(&x.to_le_bytes());
                }
                FieldValue::UInteger(x) => {
                    self.rows_buf.push(2);
                    self.rows_buf.extend_from_slice(&x.to_le_bytes());
                }
                FieldValue::Boolean(x) => {
                    self.rows_buf.push(3);
                    self.rows_buf.push(u8::from(*x));
                }
                FieldValue::String(st) => {
                    self.rows_buf.push(4);
                    self.put_str(st);
                }
            }
        }
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The finished payload.
    pub fn finish(mut self) -> Payload {
        let rows_len = (self.rows_buf.len() - self.rows_start) as u32;
        self.rows_buf[self.rows_start - 4..self.rows_start]
            .copy_from_slice(&rows_len.to_le_bytes());
        Payload {
            head: self.rows_buf,
            heap: self.heap,
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    heap: &'a str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn b8(&mut self) -> Option<[u8; 8]> {
        self.take(8)?.try_into().ok()
    }
    fn str(&mut self) -> Option<&'a str> {
        let off = self.u32()? as usize;
        let len = self.u32()? as usize;
        self.heap.get(off..off.checked_add(len)?)
    }
}

/// Decodes a payload: the db and an iterator of rows. `None` for bytes that are not a
/// payload; the iterator yields `Err(())` (and stops) at a malformed row.
pub fn decode(payload: &[u8]) -> Option<(&str, Rows<'_>)> {
    let mut c = Cursor {
        buf: payload,
        heap: "",
    };
    let dblen = c.u32()? as usize;
    c.take(dblen)?;
    let rows_len = c.u32()? as usize;
    c.take(rows_len)?;
    let (head, heap) = payload.split_at(8 + dblen + rows_len);
    decode_parts(head, heap)
}

/// [`decode`] of a payload given as its head and heap.
pub fn decode_parts<'a>(head: &'a [u8], heap: &'a [u8]) -> Option<(&'a str, Rows<'a>)> {
    let mut c = Cursor {
        buf: head,
        heap: "",
    };
    let dblen = c.u32()? as usize;
    let db = std::str::from_utf8(c.take(dblen)?).ok()?;
    let rows_len = c.u32()? as usize;
    let rows = c.take(rows_len)?;
    if !c.buf.is_empty() {
        return None;
    }
    let heap = std::str::from_utf8(heap).ok()?;
    Some((
        db,
        Rows {
            c: Cursor { buf: rows, heap },
            failed: false,
        },
    ))
}

pub struct Rows<'a> {
    c: Cursor<'a>,
    failed: bool,
}

impl<'a> Rows<'a> {
    /// Decodes the next row into `row`, reusing its vectors (a shard decodes millions of
    /// rows a second: two allocations per row were ~3% of ingest CPU). `None` at the end;
    /// `Some(Err(()))` at a malformed row, after which there are no more rows.
    pub fn next_into(&mut self, row: &mut Row<'a>) -> Option<Result<(), ()>> {
        if self.failed || self.c.buf.is_empty() {
            return None;
        }
        match self.row_into(row) {
            Some(()) => Some(Ok(())),
            None => {
                self.failed = true;
                Some(Err(()))
            }
        }
    }

    fn row_into(&mut self, row: &mut Row<'a>) -> Option<()> {
        let c = &mut self.c;
        row.ts = i64::from_le_bytes(c.b8()?);
        row.series_hash = u64::from_le_bytes(c.b8()?);
        row.measurement = c.str()?;
        let nt = c.u32()? as usize;
        row.tags.clear();
        row.tags.reserve(nt.min(c.buf.len() / 16));
        for _ in 0..nt {
            row.tags.push((c.str()?, c.str()?));
        }
        let nf = c.u32()? as usize;
        row.fields.clear();
        row.fields.reserve(nf.min(c.buf.len() / 9));
        for _ in 0..nf {
            let k = c.str()?;
            let v = match c.u8()? {
                0 => FieldValue::Float(f64::from_le_bytes(c.b8()?)),
                1 => FieldValue::Integer(i64::from_le_bytes(c.b8()?)),
                2 => FieldValue::UInteger(u64::from_le_bytes(c.b8()?)),
                3 => FieldValue::Boolean(c.u8()? != 0),
                4 => FieldValue::String(Cow::Borrowed(c.str()?)),
                _ => return None,
            };
            row.fields.push((k, v));
        }
        Some(())
    }
}

/// Rows handed to a shard one at a time, decoded into a caller's [`Row`] (whose vectors
/// are reused): a payload's [`Rows`] (stopping at a malformed row), or rows decoded
/// already (WAL replay).
pub trait RowSource<'a> {
    /// Puts the next row into `row`; false when there is none.
    fn next_row(&mut self, row: &mut Row<'a>) -> bool;
}

impl<'a> RowSource<'a> for Rows<'a> {
    fn next_row(&mut self, row: &mut Row<'a>) -> bool {
        matches!(self.next_into(row), Some(Ok(())))
    }
}

impl<'a> RowSource<'a> for std::vec::IntoIter<Row<'a>> {
    fn next_row(&mut self, row: &mut Row<'a>) -> bool {
        match self.next() {
            Some(r) => {
                *row = r;
                true
            }
            None => false,
        }
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = Result<Row<'a>, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut row = Row::default();
        Some(self.next_into(&mut row)?.map(|()| row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = RowWriter::new("db", 0);
        w.push(
            -5,
            42,
            "cpu load",
            &[("host", "a"), ("region", "eu,1")],
            &[
                ("f", FieldValue::Float(1.5)),
                ("i", FieldValue::Integer(-3)),
                ("u", FieldValue::UInteger(u64::MAX)),
                ("b", FieldValue::Boolean(true)),
                ("s", FieldValue::String("hé \"x\"".into())),
            ],
            None,
        );
        w.push(7, 1, "m", &[], &[("x", FieldValue::Float(0.0))], None);
        assert_eq!(w.rows(), 2);
        let p = w.finish().to_vec();
        let (db, rows) = decode(&p).unwrap();
        assert_eq!(db, "db");
        let rows: Vec<Row> = rows.map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].ts, -5);
        assert_eq!(rows[0].series_hash, 42);
        assert_eq!(rows[0].measurement, "cpu load");
        assert_eq!(rows[0].tags, vec![("host", "a"), ("region", "eu,1")]);
        assert_eq!(rows[0].fields[2], ("u", FieldValue::UInteger(u64::MAX)));
        assert_eq!(
            rows[0].fields[4],
            ("s", FieldValue::String("hé \"x\"".into()))
        );
        // Every truncation is detected (the heap or a row is short), never a panic, and
        // never yields a wrong string.
        for cut in 0..p.len() {
            if let Some((_, rows)) = decode(&p[..cut]) {
                for r in rows.flatten() {
                    assert!(r.measurement == "cpu load" || r.measurement == "m");
                }
            }
        }
        // A string reference outside the heap is an error, not a panic.
        let mut bad = p.clone();
        let off = 4 + 2 + 4 + 16; // db_len, "db", rows_len, ts+hash → measurement offset
        bad[off..off + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let (_, rows) = decode(&bad).unwrap();
        assert!(rows.collect::<Vec<_>>()[0].is_err());
    }

    /// Rows pushed with shape ids decode to exactly what was pushed, whatever the sequence
    /// of shapes; keys are stored once per shape run.
    #[test]
    fn shapes_store_keys_once_and_decode_the_same() {
        type Pushed = (
            String,
            Vec<(String, String)>,
            Vec<(String, i64)>,
            Option<u64>,
        );
        let a = |v: i64, host: &str| -> Pushed {
            (
                "cpu".into(),
                vec![("host".into(), host.into()), ("region".into(), "eu".into())],
                vec![("user".into(), v), ("system".into(), v + 1)],
                Some(1),
            )
        };
        let b = |v: i64| -> Pushed {
            (
                "mem".into(),
                vec![("host".into(), "h".into())],
                vec![("used".into(), v)],
                Some(2),
            )
        };
        let none = |v: i64| -> Pushed { ("disk".into(), vec![], vec![("free".into(), v)], None) };
        let seq = vec![
            a(1, "x"),
            a(2, "y"),
            b(3),
            a(4, "z"),
            none(5),
            none(6),
            b(7),
            b(8),
            a(9, "x"),
        ];
        let mut w = RowWriter::new("db", 0);
        for (i, (m, tags, fields, shape)) in seq.iter().enumerate() {
            let tags: Vec<(&str, &str)> =
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let fields: Vec<(&str, FieldValue)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), FieldValue::Integer(*v)))
                .collect();
            w.push(i as i64, i as u64, m, &tags, &fields, *shape);
        }
        let heap_len = w.heap.len();
        let p = w.finish();
        let (_, rows) = p.decode().unwrap();
        let rows: Vec<Row> = rows.map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), seq.len());
        for (r, (m, tags, fields, _)) in rows.iter().zip(&seq) {
            assert_eq!(r.measurement, m);
            let want: Vec<(&str, &str)> =
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(r.tags, want);
            let want: Vec<(&str, FieldValue)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), FieldValue::Integer(*v)))
                .collect();
            assert_eq!(r.fields, want);
        }
        // Keys were written at each change of shape only (a, b, a, b, a: 5 times), tag
        // values every row, keys of rows without a shape every row.
        let keys_a = "cpu".len() + "host".len() + "region".len() + "user".len() + "system".len();
        let keys_b = "mem".len() + "host".len() + "used".len();
        let values = 4 * "x".len() + 4 * "eu".len() + 3 * "h".len();
        let unshaped = 2 * ("disk".len() + "free".len());
        assert_eq!(heap_len, 3 * keys_a + 2 * keys_b + values + unshaped);
    }

    /// Decoding into one reused row gives each row exactly, with no leftovers of the
    /// previous (longer) one.
    #[test]
    fn next_into_reuses_a_row_without_leftovers() {
        let mut w = RowWriter::new("db", 0);
        let f = |v| vec![("a", FieldValue::Integer(v)), ("b", FieldValue::Integer(v))];
        w.push(1, 1, "m", &[("h", "x"), ("r", "y")], &f(1), None);
        w.push(2, 2, "m", &[("h", "z")], &f(2)[..1], None);
        w.push(3, 3, "n", &[], &f(3)[..0], None);
        let p = w.finish().to_vec();
        let (_, expected) = decode(&p).unwrap();
        let expected: Vec<Row> = expected.map(|r| r.unwrap()).collect();
        let (_, mut rows) = decode(&p).unwrap();
        let mut row = Row::default();
        let mut got = Vec::new();
        while rows.next_row(&mut row) {
            got.push(row.clone());
        }
        assert_eq!(got, expected);
        assert_eq!(got[1].tags, vec![("h", "z")]);
        assert!(got[2].tags.is_empty() && got[2].fields.is_empty());
    }

    /// Breaking the shape promise (same id, other keys) is caught in debug builds.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "other keys")]
    fn a_shape_with_other_keys_is_caught() {
        let mut w = RowWriter::new("db", 0);
        let f = [("x", FieldValue::Integer(1))];
        w.push(1, 1, "m", &[("a", "1")], &f, Some(7));
        w.push(2, 2, "m", &[("a", "2")], &f, Some(7));
        w.push(3, 3, "n", &[("b", "2")], &f, Some(7));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Some((_, rows)) = decode(&bytes) {
                for _ in rows {}
            }
        }
    }
}
