//! A Parquet [`ChunkReader`] over a file whose needed pages were read up front.
//!
//! parquet's own `ChunkReader for File` duplicates the descriptor, seeks and reads (and
//! allocates a buffered reader) for every page it touches. A selective query touches a few
//! pages of many column chunks, so those syscalls dominated its time. Here the pages a row
//! selection needs (found with the offset index) are read first, neighbouring ones merged
//! into one positioned read; the Parquet reader then slices them without copying. A range
//! that was not prefetched is still served, by a positioned read on demand, so prefetching
//! is only ever an optimisation.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::reader::{ChunkReader, Length};

use super::store::ReadAt;

/// Ranges closer than this are read together.
const MERGE_GAP: u64 = 16 * 1024;

pub struct Prefetched {
    file: Arc<dyn ReadAt>,
    len: u64,
    /// Sorted, disjoint `(offset, bytes)`.
    ranges: Vec<(u64, Bytes)>,
}

/// The byte ranges (offset, length) of whole column chunks `columns` (leaf indexes) of every
/// row group: what to fetch together to read those columns of the whole file.
pub fn chunk_ranges(meta: &ParquetMetaData, columns: &[usize]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for rg in meta.row_groups() {
        for &c in columns {
            if let Some(c) = rg.columns().get(c) {
                let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
                out.push((start.max(0) as u64, c.compressed_size().max(0) as u64));
            }
        }
    }
    out
}

/// The page locations of column chunk (`row_group`, `leaf`), if the file has an offset
/// index for it.
pub fn page_locations(
    meta: &ParquetMetaData,
    row_group: usize,
    leaf: usize,
) -> Option<&[PageLocation]> {
    meta.offset_index()
        .and_then(|o| o.get(row_group))
        .and_then(|cols| cols.get(leaf))
        .map(|o| o.page_locations().as_slice())
        .filter(|p| !p.is_empty())
}

/// The pages of `locs` (one column chunk of a row group spanning file rows
/// `[g_start, g_end)`) that hold any row of `rows` (file rows, sorted disjoint
/// `[start, end)`): (page number, first file row, end file row, location).
pub fn pages_holding<'a>(
    locs: &'a [PageLocation],
    g_start: u64,
    g_end: u64,
    rows: &'a [(u64, u64)],
) -> impl Iterator<Item = (usize, u64, u64, &'a PageLocation)> + 'a {
    locs.iter().enumerate().filter_map(move |(i, p)| {
        let from = g_start + p.first_row_index.max(0) as u64;
        let to = locs
            .get(i + 1)
            .map_or(g_end, |n| g_start + n.first_row_index.max(0) as u64)
            .min(g_end);
        let k = rows.partition_point(|r| r.1 <= from);
        (from < to && rows.get(k).is_some_and(|r| r.0 < to)).then_some((i, from, to, p))
    })
}

/// The byte ranges `(offset, length)` of the pages of `columns` (leaf indexes) in
/// `row_groups` that hold any row of `rows` (file rows, sorted disjoint `[start, end)`);
/// `rg_starts` are the first file row of each row group (and the total at the end). Whole
/// column chunks where the file has no offset index.
pub fn needed_ranges(
    meta: &ParquetMetaData,
    rg_starts: &[u64],
    row_groups: &[usize],
    columns: &[usize],
    rows: &[(u64, u64)],
) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &g in row_groups {
        let (Some(&g_start), Some(&g_end)) = (rg_starts.get(g), rg_starts.get(g + 1)) else {
            continue;
        };
        let rg = meta.row_group(g);
        for &c in columns {
            let (chunk_start, chunk_len) = rg.column(c).byte_range();
            let Some(pages) = page_locations(meta, g, c) else {
                out.push((chunk_start, chunk_len));
                continue;
            };
            // A dictionary page precedes the first data page.
            let first = pages[0].offset.max(0) as u64;
            if first > chunk_start {
                out.push((chunk_start, first - chunk_start));
            }
            for (_, _, _, p) in pages_holding(pages, g_start, g_end, rows) {
                out.push((p.offset.max(0) as u64, p.compressed_page_size.max(0) as u64));
            }
        }
    }
    out
}

impl Prefetched {
    /// Reads `wanted` ranges (offset, length) of `file`, merged when close, in one call
    /// (concurrent requests on an object store).
    pub fn fetch(
        file: Arc<dyn ReadAt>,
        mut wanted: Vec<(u64, u64)>,
    ) -> std::io::Result<Prefetched> {
        let len = file.len();
        wanted.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (start, n) in wanted {
            let end = (start + n).min(len);
            match merged.last_mut() {
                Some(last) if start <= last.1 + MERGE_GAP => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged.retain(|(start, end)| end > start);
        let want: Vec<std::ops::Range<u64>> = merged.iter().map(|(s, e)| *s..*e).collect();
        let got = file.read_ranges(&want)?;
        let ranges = merged.iter().map(|(s, _)| *s).zip(got).collect();
        Ok(Prefetched { file, len, ranges })
    }

    /// The prefetched range holding `start`, and the offset in it.
    fn find(&self, start: u64) -> Option<(&Bytes, usize)> {
        let i = self.ranges.partition_point(|(o, _)| *o <= start);
        let (offset, bytes) = self.ranges.get(i.checked_sub(1)?)?;
        let at = (start - offset) as usize;
        (at < bytes.len()).then_some((bytes, at))
    }
}

impl Length for Prefetched {
    fn len(&self) -> u64 {
        self.len
    }
}

/// Reads from `pos` on: from a prefetched range while it lasts, then positioned reads.
pub struct ChunkRead {
    file: Arc<dyn ReadAt>,
    pos: u64,
    /// A prefetched range and its file offset.
    mem: Option<(u64, Bytes)>,
}

impl Read for ChunkRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some((offset, bytes)) = &self.mem {
            let at = (self.pos - offset) as usize;
            if let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                self.pos += n as u64;
                return Ok(n);
            }
        }
        // Past the prefetched ranges: read on in pieces of up to 64 KiB.
        let left = self.file.len().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left).min(64 * 1024) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl ChunkReader for Prefetched {
    type T = ChunkRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<ChunkRead> {
        let i = self.ranges.partition_point(|(o, _)| *o <= start);
        let mem = i
            .checked_sub(1)
            .and_then(|i| self.ranges.get(i))
            .filter(|(o, b)| start < o + b.len() as u64)
            .cloned();
        Ok(ChunkRead {
            file: self.file.clone(),
            pos: start,
            mem,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if let Some((bytes, at)) = self.find(start)
            && at + length <= bytes.len()
        {
            return Ok(bytes.slice(at..at + length));
        }
        // `length` comes from a page header on disk: never allocate past the file's end.
        if (start)
            .checked_add(length as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(ParquetError::General(format!(
                "a page of {length} bytes at offset {start} lies outside the file of {} bytes",
                self.len
            )));
        }
        let mut buf = vec![0u8; length];
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_prefetched_and_other_ranges_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..100u8).collect();
        std::fs::write(&path, &data).unwrap();
        // Ranges less than MERGE_GAP apart are read as one.
        let store = crate::storage::store::Store::local(dir.path());
        let file = store.open("f", None).unwrap();
        let p = Prefetched::fetch(file, vec![(60, 5), (2, 4), (8, 2)]).unwrap();
        assert_eq!(
            p.ranges.len(),
            1,
            "{:?}",
            p.ranges.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        assert_eq!(p.len(), 100);
        for (start, n) in [(3, 2), (0, 10), (40, 30), (95, 5), (61, 3)] {
            let got = p.get_bytes(start, n).unwrap();
            assert_eq!(&got[..], &data[start as usize..start as usize + n]);
        }
        assert!(p.get_bytes(98, 5).is_err(), "past the end of the file");
        // A reader that starts in a prefetched range continues from the file after it.
        let mut r = p.get_read(60).unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, &data[60..]);
    }
}
