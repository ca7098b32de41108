//! DELTA_BINARY_PACKED pages whose miniblocks are packed at byte-aligned widths.
//!
//! Why: the parquet crate packs each miniblock of 32 deltas at the fewest bits that hold
//! its largest delta above the block's smallest. Rows are sorted by series, so a block
//! holding a series boundary has the jump between two series as its smallest (or largest)
//! delta, and every miniblock of that block is packed at the jump's width: on random walks
//! with steps of ±1 (two bits a delta), a block of 6-bit values that straddle byte
//! boundaries in a pattern repeating every three bytes. zstd codes bytes, so it finds
//! little in them. Packed at 8 bits instead, each delta is one byte from a handful of
//! values, which zstd's entropy coder takes down to about the deltas' own entropy. On the
//! 1,000-host integer set (hourly files, 360 rows a series) the field columns came out
//! 16% smaller at zstd level 19 and 5% at level 1 (`trial_encodings` has the figures).
//! On data whose deltas are spread evenly (two-decimal floats with steps up to ±1.00,
//! counters) the wider packing costs more than zstd wins back: the trial chooses per column.
//!
//! The pages are standard DELTA_BINARY_PACKED: the format lets a writer pack a miniblock
//! at any width that holds its values, and every reader unpacks the width the page states.
//!
//! How: the parquet crate's column writer encodes and measures the pages (levels,
//! statistics, page index, page limits all as for any column), with the column's
//! compression off. A [`PageWriter`] given to it takes each data page, re-encodes its
//! values (the column's values, queued by [`AlignedColumn::write`] in the order the column
//! writer consumes them; the page's own header says how many and which comes first) at
//! aligned widths, compresses the page at the column's zstd level, and keeps the
//! serialized pages; [`AlignedColumn::append_to`] splices them into the row group with
//! the column chunk's codec set back to zstd.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Decimal128Type, Int64Type, UInt64Type};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, Type as PhysicalType};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::{ColumnWriter, get_column_writer};
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterPropertiesPtr;
use parquet::file::writer::{SerializedPageWriter, SerializedRowGroupWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Values in a block and miniblocks in a block: the parquet crate's (and the format's
/// smallest) block.
const BLOCK: usize = 128;
const MINIBLOCKS: usize = 4;
const MINIBLOCK: usize = BLOCK / MINIBLOCKS;

/// The width a miniblock whose values need `bits` is packed at: one or two bits (four or
/// eight values to a byte) as they are, any other width rounded up to whole bytes.
fn aligned_width(bits: u32) -> u32 {
    if bits <= 2 {
        bits
    } else {
        bits.div_ceil(8) * 8
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn get_uvarint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| ParquetError::General("DELTA page header cut short".into()))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ParquetError::General(
        "DELTA page header varint too long".into(),
    ))
}

/// Packs exactly [`MINIBLOCK`] values (`values`, padded with zeros) at `width` bits each,
/// least significant bit first, as Parquet bit-packs.
fn pack(values: &[u64], width: u32, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    for i in 0..MINIBLOCK {
        acc |= u128::from(values.get(i).copied().unwrap_or(0)) << bits;
        bits += width;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
}

/// Appends `values` DELTA_BINARY_PACKED as a column of physical type INT32 (`int32`: the
/// values fit 32 bits, deltas wrap at 32 bits) or INT64, every miniblock at its
/// [`aligned_width`].
fn encode(values: &[i64], int32: bool, out: &mut Vec<u8>) {
    put_uvarint(out, BLOCK as u64);
    put_uvarint(out, MINIBLOCKS as u64);
    put_uvarint(out, values.len() as u64);
    put_zigzag(out, values.first().copied().unwrap_or(0));
    // A delta, and a delta above the block's smallest, wrapping in the physical type.
    let delta = |a: i64, b: i64| -> i64 {
        if int32 {
            i64::from((a as i32).wrapping_sub(b as i32))
        } else {
            a.wrapping_sub(b)
        }
    };
    let above = |d: i64, min: i64| -> u64 {
        if int32 {
            u64::from((d as i32).wrapping_sub(min as i32) as u32)
        } else {
            d.wrapping_sub(min) as u64
        }
    };
    let mut deltas = [0i64; BLOCK];
    let mut packed = [0u64; MINIBLOCK];
    let mut start = 1;
    while start < values.len() {
        let end = (start + BLOCK).min(values.len());
        for (d, i) in deltas.iter_mut().zip(start..end) {
            *d = delta(values[i], values[i - 1]);
        }
        let deltas = &deltas[..end - start];
        start = end;
        let min = deltas.iter().copied().min().unwrap_or(0);
        put_zigzag(out, min);
        let widths_at = out.len();
        out.extend([0u8; MINIBLOCKS]);
        for (m, mini) in deltas.chunks(MINIBLOCK).enumerate() {
            for (p, d) in packed.iter_mut().zip(mini) {
                *p = above(*d, min);
            }
            let values = &packed[..mini.len()];
            let max = values.iter().copied().max().unwrap_or(0);
            let width = aligned_width(64 - max.leading_zeros());
            out[widths_at + m] = width as u8;
            pack(values, width, out);
        }
    }
}

/// What the column writer's page writer and the [`AlignedColumn`] share.
struct Shared {
    /// The column's non-null values not yet in a page, in order.
    values: VecDeque<i64>,
    /// The serialized pages (headers and data) of the column chunk so far; their offsets
    /// are counted from its start.
    out: TrackedWrite<Vec<u8>>,
}

fn lock(shared: &Mutex<Shared>) -> Result<MutexGuard<'_, Shared>> {
    shared
        .lock()
        .map_err(|_| ParquetError::General("aligned page writer poisoned".into()))
}

/// The page writer: realigns and compresses each DELTA_BINARY_PACKED data page, serializes
/// every page.
struct AlignedPages {
    shared: Arc<Mutex<Shared>>,
    max_def: i16,
    int32: bool,
    /// One zstd context for all the column's pages.
    zstd: zstd::bulk::Compressor<'static>,
}

impl AlignedPages {
    /// `page` with its values at aligned widths.
    fn realign(&mut self, page: &CompressedPage, shared: &mut Shared) -> Result<CompressedPage> {
        let Page::DataPage {
            buf,
            num_values,
            encoding: Encoding::DELTA_BINARY_PACKED,
            def_level_encoding,
            rep_level_encoding,
            statistics,
        } = page.compressed_page()
        else {
            return Err(ParquetError::General(
                "aligned pages: not a DELTA_BINARY_PACKED data page (v1)".into(),
            ));
        };
        // Not compressed (`AlignedColumn::new`). A v1 page: the definition levels
        // (length-prefixed), then the values.
        let raw: &[u8] = buf;
        let levels = if self.max_def > 0 {
            let len = raw
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| ParquetError::General("page levels cut short".into()))?;
            4 + len as usize
        } else {
            0
        };
        let mut pos = levels;
        let (_block, _minis, count) = (
            get_uvarint(raw, &mut pos)?,
            get_uvarint(raw, &mut pos)?,
            get_uvarint(raw, &mut pos)? as usize,
        );
        let first = get_uvarint(raw, &mut pos)?;
        let first = ((first >> 1) as i64) ^ -((first & 1) as i64);
        if count > shared.values.len()
            || (count > 0 && shared.values.front().copied() != Some(first))
        {
            return Err(ParquetError::General(
                "aligned pages: a page's values are not the ones queued".into(),
            ));
        }
        let values: Vec<i64> = shared.values.drain(..count).collect();
        let mut data = Vec::with_capacity(raw.len() * 2);
        data.extend_from_slice(raw.get(..levels).unwrap_or_default());
        encode(&values, self.int32, &mut data);
        let compressed = self
            .zstd
            .compress(&data)
            .map_err(|e| ParquetError::General(format!("aligned pages: {e}")))?;
        Ok(CompressedPage::new(
            Page::DataPage {
                buf: Bytes::from(compressed),
                num_values: *num_values,
                encoding: Encoding::DELTA_BINARY_PACKED,
                def_level_encoding: *def_level_encoding,
                rep_level_encoding: *rep_level_encoding,
                statistics: statistics.clone(),
            },
            data.len(),
        ))
    }
}

impl PageWriter for AlignedPages {
    fn write_page(&mut self, page: CompressedPage) -> Result<PageWriteSpec> {
        let shared = Arc::clone(&self.shared);
        let mut shared = lock(&shared)?;
        let page = if page.compressed_page().is_data_page() {
            self.realign(&page, &mut shared)?
        } else {
            page
        };
        SerializedPageWriter::new(&mut shared.out).write_page(page)
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A writer of one integer column chunk (`Int64`, `UInt64`, or `Decimal128` stored as
/// INT32 or INT64) as DELTA_BINARY_PACKED pages at aligned widths.
pub struct AlignedColumn {
    writer: ColumnWriter<'static>,
    shared: Arc<Mutex<Shared>>,
    max_def: i16,
    /// The codec the file records for the column (the writer's properties have none).
    codec: Compression,
    /// Rows [`write`](Self::write) gives the column writer at a time.
    step: usize,
}

/// About the rows given to the column writer at a time: what [`AlignedColumn::write`] holds
/// besides the column is a few of its copies of this many values. Rounded to whole write
/// batches of the column writer, which checks its page limits after each: a page of a
/// column paged by series ends with every call, so a call must not end inside a batch.
const WRITE_ROWS: usize = 65_536;

impl AlignedColumn {
    /// Properties for the writers of the `columns` of a file written with `props`: those
    /// columns not compressed (their pages are, once realigned). Made once per file.
    pub fn properties(props: &WriterPropertiesPtr, columns: &[String]) -> WriterPropertiesPtr {
        let mut b = props.as_ref().clone().into_builder();
        for c in columns {
            b = b.set_column_compression(c.as_str().into(), Compression::UNCOMPRESSED);
        }
        Arc::new(b.build())
    }

    /// A writer of the column `descr` of a file whose codec for it is `codec`, given the
    /// file's properties as [`properties`](Self::properties) made them; `None` when the
    /// column is not a flat INT32/INT64 column written DELTA_BINARY_PACKED with zstd (then
    /// it is written as any other).
    pub fn new(
        descr: ColumnDescPtr,
        props: WriterPropertiesPtr,
        codec: Compression,
    ) -> Option<AlignedColumn> {
        let path = descr.path();
        let Compression::ZSTD(level) = codec else {
            return None;
        };
        if props.compression(path) != Compression::UNCOMPRESSED {
            return None;
        }
        let int32 = match descr.physical_type() {
            PhysicalType::INT32 => true,
            PhysicalType::INT64 => false,
            _ => return None,
        };
        if descr.max_rep_level() > 0
            || descr.max_def_level() > 1
            || props.encoding(path) != Some(Encoding::DELTA_BINARY_PACKED)
            || props.dictionary_enabled(path)
            || props.writer_version() != parquet::file::properties::WriterVersion::PARQUET_1_0
        {
            return None;
        }
        let batch = props.write_batch_size().max(1);
        let step = (WRITE_ROWS / batch).max(1) * batch;
        let shared = Arc::new(Mutex::new(Shared {
            values: VecDeque::new(),
            out: TrackedWrite::new(Vec::new()),
        }));
        let max_def = descr.max_def_level();
        let pages = AlignedPages {
            shared: Arc::clone(&shared),
            max_def,
            int32,
            zstd: zstd::bulk::Compressor::new(level.compression_level()).ok()?,
        };
        Some(AlignedColumn {
            writer: get_column_writer(descr, props, Box::new(pages)),
            shared,
            max_def,
            codec,
            step,
        })
    }

    /// Writes `array`'s rows (the column writer ends pages as it does for any column).
    pub fn write(&mut self, array: &ArrayRef) -> Result<()> {
        if self.max_def == 0 && array.null_count() > 0 {
            return Err(ParquetError::General(
                "aligned pages: nulls in a required column".into(),
            ));
        }
        let mut from = 0;
        while from < array.len() {
            let len = self.step.min(array.len() - from);
            self.write_part(&array.slice(from, len))?;
            from += len;
        }
        Ok(())
    }

    fn write_part(&mut self, array: &ArrayRef) -> Result<()> {
        let mut values = Vec::with_capacity(array.len() - array.null_count());
        let mut levels = (self.max_def > 0).then(|| Vec::with_capacity(array.len()));
        let mut put = |v: Option<i64>| {
            if let Some(l) = levels.as_mut() {
                l.push(i16::from(v.is_some()));
            }
            values.extend(v);
        };
        match array.data_type() {
            DataType::Int64 => array.as_primitive::<Int64Type>().iter().for_each(&mut put),
            DataType::UInt64 => array
                .as_primitive::<UInt64Type>()
                .iter()
                .for_each(|v| put(v.map(|v| v as i64))),
            // A decimal of at most 18 digits (the physical type's check in `new`).
            DataType::Decimal128(..) => array
                .as_primitive::<Decimal128Type>()
                .iter()
                .for_each(|v| put(v.map(|v| v as i64))),
            other => {
                return Err(ParquetError::General(format!(
                    "aligned pages: {other} is not an integer column"
                )));
            }
        }
        // Queued for the page writer only once the writer takes them.
        let queue = |values: &[i64]| -> Result<()> {
            lock(&self.shared)?.values.extend(values.iter().copied());
            Ok(())
        };
        let levels = levels.as_deref();
        match &mut self.writer {
            ColumnWriter::Int64ColumnWriter(w) => {
                queue(&values)?;
                w.write_batch(&values, levels, None)?;
            }
            ColumnWriter::Int32ColumnWriter(w) => {
                let narrow = values
                    .iter()
                    .map(|v| i32::try_from(*v))
                    .collect::<std::result::Result<Vec<i32>, _>>()
                    .map_err(|_| {
                        ParquetError::General("aligned pages: a value outside INT32".into())
                    })?;
                queue(&values)?;
                w.write_batch(&narrow, levels, None)?;
            }
            _ => {
                return Err(ParquetError::General(
                    "aligned pages: not an integer column".into(),
                ));
            }
        }
        Ok(())
    }

    /// Closes the column chunk and appends it to `rg`.
    pub fn append_to<W: std::io::Write + Send>(
        self,
        rg: &mut SerializedRowGroupWriter<'_, W>,
    ) -> Result<()> {
        let mut close = self.writer.close()?;
        close.metadata = close
            .metadata
            .into_builder()
            .set_compression(self.codec)
            .build()?;
        let mut shared = lock(&self.shared)?;
        if !shared.values.is_empty() {
            return Err(ParquetError::General(
                "aligned pages: values left over after the last page".into(),
            ));
        }
        let out = std::mem::replace(&mut shared.out, TrackedWrite::new(Vec::new()));
        drop(shared);
        let bytes = Bytes::from(out.into_inner()?);
        rg.append_column(&bytes, close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::paged::{PagedWriter, series_runs};
    use crate::storage::parquet::{finish_properties, trial_encodings, writer_properties};
    use arrow::array::{Decimal128Array, DictionaryArray, Int64Array, UInt64Array};
    use arrow::datatypes::Int32Type;
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use proptest::prelude::*;
    use std::ops::Range;

    /// The miniblock widths of every DELTA block of leaf column `col`'s data pages in the
    /// Parquet file `bytes` (a column with definition levels when `nullable`).
    fn widths(bytes: &[u8], col: usize, nullable: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for page in crate::storage::test_pages(bytes, col) {
            if !page.is_data_page() {
                continue;
            }
            let buf = page.buffer();
            let mut pos = 0;
            if nullable {
                pos = 4 + u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
            }
            let block = get_uvarint(buf, &mut pos).unwrap() as usize;
            let minis = get_uvarint(buf, &mut pos).unwrap() as usize;
            let count = get_uvarint(buf, &mut pos).unwrap() as usize;
            get_uvarint(buf, &mut pos).unwrap();
            let mut left = count.saturating_sub(1);
            while left > 0 {
                get_uvarint(buf, &mut pos).unwrap();
                let ws = buf[pos..pos + minis].to_vec();
                pos += minis;
                for w in ws {
                    if left == 0 {
                        break;
                    }
                    pos += usize::from(w) * (block / minis) / 8;
                    left -= (block / minis).min(left);
                    out.push(w);
                }
            }
            assert_eq!(pos, buf.len(), "the page's values end where its blocks do");
        }
        out
    }

    fn is_aligned(w: u8) -> bool {
        w <= 2 || w.is_multiple_of(8)
    }

    /// `batch` written as the storage layer writes files: every integer column
    /// DELTA_BINARY_PACKED, `series` columns paged by series, `aligned` ones aligned.
    fn write(
        batch: &RecordBatch,
        level: i32,
        page_rows: usize,
        series: &[String],
        aligned: &[String],
    ) -> Vec<u8> {
        write_in(batch, level, page_rows, 1 << 20, series, aligned, &[])
    }

    /// [`write`] in row groups of `group_rows`: in one `write` call per part of `batch`
    /// between the `cuts`, or whole (`write_whole`, as compaction writes) when `cuts` is
    /// `None`.
    fn write_in(
        batch: &RecordBatch,
        level: i32,
        page_rows: usize,
        group_rows: usize,
        series: &[String],
        aligned: &[String],
        cuts: &[usize],
    ) -> Vec<u8> {
        let encodings: Vec<(String, Encoding)> = batch
            .schema()
            .fields()
            .iter()
            .filter(|f| !matches!(f.data_type(), DataType::Dictionary(..)))
            .map(|f| (f.name().clone(), Encoding::DELTA_BINARY_PACKED))
            .collect();
        let props = writer_properties(
            &batch.schema(),
            group_rows,
            vec![],
            level,
            page_rows,
            &encodings,
        );
        let props = finish_properties(props, true, series, &[]);
        let runs: Vec<Range<usize>> = series_runs(batch, &[0]).unwrap();
        let mut w =
            PagedWriter::try_new(Vec::new(), batch.schema(), props, series, aligned).unwrap();
        if cuts == [usize::MAX] {
            w.write_whole(batch.num_rows(), &runs, &mut |i, r| {
                Ok(batch.column(i).slice(r.start, r.len()))
            })
            .unwrap();
        } else {
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (batch.num_rows() + 1)).collect();
            bounds.push(0);
            bounds.push(batch.num_rows());
            bounds.sort_unstable();
            for part in bounds.windows(2) {
                let (from, to) = (part[0], part[1]);
                let local: Vec<Range<usize>> = runs
                    .iter()
                    .map(|r| r.start.max(from) - from..r.end.min(to).max(from) - from)
                    .filter(|r| r.start < r.end)
                    .collect();
                w.write(&batch.slice(from, to - from), &local).unwrap();
            }
        }
        w.into_inner().unwrap()
    }

    fn read(bytes: Vec<u8>) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap()
    }

    /// Rows `from..from + len` of the file `bytes`, read through its page index (the page
    /// locations Meridian's selective reads use): the pages before are skipped by offset.
    fn read_rows(bytes: Vec<u8>, from: usize, len: usize) -> RecordBatch {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
        use parquet::file::metadata::PageIndexPolicy;
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let b = ParquetRecordBatchReaderBuilder::try_new_with_options(Bytes::from(bytes), options)
            .unwrap();
        let schema = b.schema().clone();
        let batches = b
            .with_row_selection(RowSelection::from(vec![
                RowSelector::skip(from),
                RowSelector::select(len),
            ]))
            .build()
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap();
        arrow::compute::concat_batches(&schema, &batches).unwrap()
    }

    /// TSBS-like integers: `series` series of `rows` rows, random walks in 0..100 by steps
    /// of -1, 0 or +1.
    fn walks(series: usize, rows: usize, step: u64) -> RecordBatch {
        let mut next = crate::storage::test_rng(3);
        let (mut hosts, mut values) = (Vec::new(), Vec::new());
        for s in 0..series {
            let mut v = next(100) as i64;
            for _ in 0..rows {
                hosts.push(format!("h{s:04}"));
                values.push(v);
                v = (v + next(2 * step + 1) as i64 - step as i64).clamp(0, 100 * step as i64);
            }
        }
        let host: DictionaryArray<Int32Type> = hosts.iter().map(|h| h.as_str()).collect();
        RecordBatch::try_from_iter(vec![
            ("host", Arc::new(host) as ArrayRef),
            ("v", Arc::new(Int64Array::from(values)) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn random_walks_across_series_pack_smaller_at_aligned_widths() {
        let batch = walks(80, 360, 1);
        let v = vec!["v".to_string()];
        for level in [1, 19] {
            let plain = write(&batch, level, 120_000, &[], &[]);
            let aligned = write(&batch, level, 120_000, &[], &v);
            assert_eq!(read(aligned.clone()), read(plain.clone()));
            let plain_widths = widths(&plain, 1, false);
            let aligned_widths = widths(&aligned, 1, false);
            // The blocks at series boundaries: 3 to 7 bits in the crate's pages, 8 here.
            assert!(
                plain_widths.iter().any(|w| !is_aligned(*w)),
                "{plain_widths:?}"
            );
            assert!(aligned_widths.iter().all(|w| is_aligned(*w)));
            assert!(aligned_widths.contains(&8));
            assert!(
                aligned.len() * 100 < plain.len() * 95,
                "level {level}: {} bytes aligned, {} plain",
                aligned.len(),
                plain.len()
            );
        }
    }

    #[test]
    fn pages_end_where_the_crates_do() {
        // One series longer than a page and than the rows `write` gives at a time, paged
        // by series or not: the same pages as the parquet crate's own writer makes.
        let batch = walks(1, 150_000, 1);
        let v = vec!["v".to_string()];
        for (page_rows, series) in [(100_000, v.clone()), (20_000, v.clone()), (20_000, vec![])] {
            let plain = write(&batch, 1, page_rows, &series, &[]);
            let aligned = write(&batch, 1, page_rows, &series, &v);
            assert_eq!(
                crate::storage::test_data_pages(&aligned, 1),
                crate::storage::test_data_pages(&plain, 1),
                "pages of {page_rows} rows, by series: {}",
                !series.is_empty()
            );
            assert_eq!(read(aligned), read(plain));
        }
    }

    #[test]
    fn the_trial_aligns_small_steps_and_not_evenly_spread_ones() {
        // Small steps: aligned; steps spread over ±100 (two-decimal floats as integers): not.
        for (step, want) in [(1, true), (100, false)] {
            let batch = walks(80, 360, step);
            for level in [1, 19] {
                let trial = trial_encodings(&batch, level, 120_000, true);
                assert_eq!(
                    trial.aligned.contains(&"v".to_string()),
                    want,
                    "steps of {step}, level {level}: {trial:?}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever the values (wrapping deltas included), nulls, page size and series
        /// pages, aligned pages read back as the values written, and pack at aligned widths.
        #[test]
        fn aligned_pages_read_back_the_values_written(
            rows in proptest::collection::vec(
                (0u8..6, any::<i64>(), -3i64..4, 0u8..10),
                0..1500,
            ),
            page_rows in 1usize..700,
            group_rows in 1usize..2500,
            by_series in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
            whole in any::<bool>(),
            window in (any::<usize>(), any::<usize>()),
        ) {
            // (series, raw, step, kind): kind 0 a null, 1 the raw value, else a walk.
            let mut hosts = Vec::new();
            let (mut i, mut u, mut d, mut e, mut r) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut rows = rows;
            rows.sort_by_key(|x| x.0);
            let mut walk = 0i64;
            for (s, raw, step, kind) in rows {
                hosts.push(format!("h{s}"));
                walk = walk.wrapping_add(step);
                let v = match kind {
                    0 => None,
                    1 => Some(raw),
                    _ => Some(walk),
                };
                i.push(v);
                u.push(v.map(|v| v as u64));
                // Nine digits at most (INT32), and the extremes, whose deltas wrap.
                d.push(v.map(|v| i128::from(v % 1_000_000_000)));
                e.push(v.map(|v| i128::from(v % 1_000_000_000_000_000_000)));
                r.push(v.unwrap_or(walk));
            }
            let host: DictionaryArray<Int32Type> = hosts.iter().map(|h| h.as_str()).collect();
            let batch = RecordBatch::try_from_iter_with_nullable(vec![
                ("host", Arc::new(host) as ArrayRef, true),
                ("i", Arc::new(Int64Array::from(i)) as ArrayRef, true),
                ("u", Arc::new(UInt64Array::from(u)) as ArrayRef, true),
                (
                    "d",
                    Arc::new(Decimal128Array::from(d).with_precision_and_scale(9, 2).unwrap())
                        as ArrayRef,
                    true,
                ),
                (
                    "e",
                    Arc::new(Decimal128Array::from(e).with_precision_and_scale(18, 3).unwrap())
                        as ArrayRef,
                    true,
                ),
                ("r", Arc::new(Int64Array::from(r)) as ArrayRef, false),
            ])
            .unwrap();
            let columns: Vec<String> =
                ["i", "u", "d", "e", "r"].iter().map(|c| c.to_string()).collect();
            // A nullable column paged by series too (a part with nulls is written whole).
            let series: Vec<String> = if by_series {
                vec!["r".to_string(), "i".to_string()]
            } else {
                Vec::new()
            };
            let cuts = if whole { vec![usize::MAX] } else { cuts };
            let bytes = write_in(&batch, 3, page_rows, group_rows, &series, &columns, &cuts);
            let got = read_rows(bytes.clone(), 0, batch.num_rows());
            prop_assert_eq!(got.num_rows(), batch.num_rows());
            // A window of rows read through the page index.
            let n = batch.num_rows();
            let from = window.0 % (n + 1);
            let len = window.1 % (n - from + 1);
            let part = read_rows(bytes.clone(), from, len);
            for c in 1..batch.num_columns() {
                let want = batch.column(c).slice(from, len);
                prop_assert_eq!(part.column(c).as_ref(), want.as_ref(), "rows {}+{}", from, len);
            }
            for (c, name) in columns.iter().enumerate() {
                let want = batch.column(c + 1);
                let col = got.column(c + 1);
                prop_assert_eq!(col.as_ref(), want.as_ref(), "column {}", name);
                let nullable = name != "r";
                prop_assert!(
                    widths(&bytes, c + 1, nullable).iter().all(|w| is_aligned(*w)),
                    "column {} packed at unaligned widths", name
                );
            }
        }
    }
}
