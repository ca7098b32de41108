//! The Parquet encoder behind every data file: row groups written column by column, where
//! chosen columns end a data page at every series boundary.
//!
//! Why series pages: DELTA_BINARY_PACKED packs each block of 128 values at the width of the
//! block's largest delta above its smallest. Rows are sorted by series, so a block that
//! holds a series boundary packs every one of its values at the width of the jump from one
//! series' value to the next. For counters (values near 2^40, steps below 1,000) that is
//! 41 bits instead of 10 for a block in every series of a file. A data page starts the
//! encoding afresh, so a column whose pages end where series end pays no jump; each page
//! costs a header, a zstd frame and its page-index entries instead (tens of bytes), and
//! zstd no longer sees the column as one stream. Which wins depends on the column: the
//! caller chooses per column from its data (`super::parquet::trial_encodings`).
//!
//! The parquet crate ends pages by row and byte limits of the whole file, checked once per
//! write batch. Columns paged by series get writers whose properties end a page after every
//! write call (a page row limit of 1, write batches as large as a page may be), and are
//! written one series run at a time; every other column is written as the plain properties
//! say.

use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{DataType, Decimal128Type, Int64Type, UInt64Type};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions, compute_leaves,
};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use parquet::schema::types::ColumnDescPtr;

use super::aligned::AlignedColumn;

/// A file being encoded.
///
/// A column paged by series must hold no nulls (`Layout::tried` pages only such columns): a
/// part of a batch where it has some is written in one call, one page for the part, and a
/// part where it is all null gets a page per row (the parquet crate writes the levels of an
/// all-null slice in batches of the page row limit), larger but still correct.
pub struct PagedWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    /// Per column of `schema`: paged by series.
    paged: Vec<bool>,
    /// Per column of `schema`: its properties, when its DELTA_BINARY_PACKED pages are packed
    /// at aligned widths ([`super::aligned`]).
    aligned: Vec<Option<Aligned>>,
    schema: SchemaRef,
    max_group_rows: usize,
    group: Option<Group>,
    groups: usize,
    /// Per column, a factory of writers of that column alone, with the properties of the
    /// file or, for a column paged by series, those of series pages ([`single_factory`]).
    single: Vec<ArrowRowGroupWriterFactory>,
}

/// What a column packed at aligned widths is written with: its descriptor, the properties
/// of its writers ([`AlignedColumn::properties`]) and the codec the file records for it.
type Aligned = (
    ColumnDescPtr,
    Arc<WriterProperties>,
    parquet::basic::Compression,
);

/// The row group being encoded.
struct Group {
    writers: Vec<ColumnOut>,
    rows: usize,
}

/// The writer of one column chunk.
enum ColumnOut {
    Arrow(ArrowColumnWriter),
    Aligned(AlignedColumn),
}

impl ColumnOut {
    fn append_to<W: Write + Send>(
        self,
        rg: &mut parquet::file::writer::SerializedRowGroupWriter<'_, W>,
    ) -> Result<()> {
        match self {
            ColumnOut::Arrow(w) => w.close()?.append_to_row_group(rg),
            ColumnOut::Aligned(w) => w.append_to(rg),
        }
    }
}

fn options(props: WriterProperties) -> ArrowWriterOptions {
    // Without the Arrow schema in the footer: readers take the types from the Parquet
    // schema, and Meridian its tag columns from `meridian.tag_columns`.
    ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true)
}

impl<W: Write + Send> PagedWriter<W> {
    /// Starts a file of `schema` on `out`, encoded as `props` says; the columns named in
    /// `series_pages` end a page at every series boundary (see [`PagedWriter::write`]), and
    /// those named in `aligned` (integer columns written DELTA_BINARY_PACKED) pack their
    /// pages at aligned widths ([`super::aligned`]).
    pub fn try_new(
        out: W,
        schema: SchemaRef,
        props: WriterProperties,
        series_pages: &[String],
        aligned: &[String],
    ) -> Result<PagedWriter<W>> {
        let max_group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let paged: Vec<bool> = schema
            .fields()
            .iter()
            .map(|f| series_pages.iter().any(|n| n == f.name()))
            .collect();
        let series_props = paged.iter().any(|p| *p).then(|| {
            // A page after every write call; a call (one series run) is one write batch
            // unless the run is longer than a page may be.
            let page_rows = props.data_page_row_count_limit().max(1);
            props
                .clone()
                .into_builder()
                .set_data_page_row_count_limit(1)
                .set_write_batch_size(page_rows)
                .build()
        });
        let (file, _) = ArrowWriter::try_new_with_options(out, schema.clone(), options(props))?
            .into_serialized_writer()?;
        let series_props = series_props.map(Arc::new);
        let props_of = |i: usize| match (&series_props, paged[i]) {
            (Some(p), true) => p.clone(),
            _ => file.properties().clone(),
        };
        let single = (0..schema.fields().len())
            .map(|i| single_factory(&file, &schema, i, props_of(i)))
            .collect::<Result<Vec<_>>>()?;
        // The properties of aligned columns' writers: one copy per kind of column.
        let mut aligned_props: [Option<Arc<WriterProperties>>; 2] = [None, None];
        let aligned_columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if !aligned.iter().any(|n| n == f.name()) {
                    return None;
                }
                let descr = file.schema_descr().column(i);
                let codec = file.properties().compression(descr.path());
                let props = aligned_props[usize::from(paged[i])]
                    .get_or_insert_with(|| AlignedColumn::properties(&props_of(i), aligned))
                    .clone();
                Some((descr, props, codec))
            })
            .collect();
        Ok(PagedWriter {
            file,
            single,
            paged,
            aligned: aligned_columns,
            schema,
            max_group_rows,
            group: None,
            groups: 0,
        })
    }

    /// Writes `rows` rows given column by column, in row groups of their own: each column
    /// of a row group is encoded by a writer of that column alone, closed and appended to
    /// the file before the next column's writer is made. Only one column's encoder buffers
    /// (and, from `column`, one column's values) exist at a time, where
    /// [`write`](Self::write) holds every column's writer until its row group ends. For a
    /// caller that has every row of the file: a row group open from `write` is ended first.
    /// `column(i, range)` gives column `i` of the file's schema for those rows.
    pub fn write_whole(
        &mut self,
        rows: usize,
        series: &[Range<usize>],
        column: &mut dyn FnMut(usize, Range<usize>) -> Result<ArrayRef>,
    ) -> Result<()> {
        self.end_group()?;
        let mut offset = 0;
        while offset < rows {
            let take = self.max_group_rows.min(rows - offset);
            let part = offset..offset + take;
            let local: Vec<Range<usize>> = clip(series, &part)
                .map(|r| r.start - part.start..r.end - part.start)
                .collect();
            let mut rg = self.file.next_row_group()?;
            for (i, field) in self.schema.fields().iter().enumerate() {
                let paged = self.paged[i];
                let mut writer = column_out(&self.aligned[i], &self.single[i], self.groups)?;
                let values = column(i, part.clone())?;
                if values.len() != take || values.data_type() != field.data_type() {
                    return Err(ParquetError::General(format!(
                        "column {} differs from the file's",
                        field.name()
                    )));
                }
                write_column(&mut writer, field, &values, 0..take, &local, paged)?;
                writer.append_to(&mut rg)?;
            }
            rg.close()?;
            self.groups += 1;
            offset += take;
        }
        Ok(())
    }

    /// Appends `batch` (in the file's schema). `series` are the runs of rows of one series
    /// each, in order, covering the batch (see [`series_runs`]); they are used only by the
    /// columns paged by series, and may be empty when there are none.
    pub fn write(&mut self, batch: &RecordBatch, series: &[Range<usize>]) -> Result<()> {
        let fields = batch.schema_ref().fields();
        if fields.len() != self.schema.fields().len()
            || fields
                .iter()
                .zip(self.schema.fields())
                .any(|(a, b)| a.name() != b.name() || a.data_type() != b.data_type())
        {
            return Err(ParquetError::General(
                "batch columns differ from the file's".into(),
            ));
        }
        let n = batch.num_rows();
        let mut offset = 0;
        while offset < n {
            let group = match &mut self.group {
                Some(g) => g,
                slot => {
                    let writers = (0..self.single.len())
                        .map(|i| column_out(&self.aligned[i], &self.single[i], self.groups))
                        .collect::<Result<Vec<_>>>()?;
                    slot.insert(Group { writers, rows: 0 })
                }
            };
            let take = (self.max_group_rows - group.rows).min(n - offset);
            let part = offset..offset + take;
            let runs: Vec<Range<usize>> = clip(series, &part).collect();
            for (i, (field, column)) in self.schema.fields().iter().zip(batch.columns()).enumerate()
            {
                write_column(
                    &mut group.writers[i],
                    field,
                    column,
                    part.clone(),
                    &runs,
                    self.paged[i],
                )?;
            }
            group.rows += take;
            offset += take;
            if group.rows >= self.max_group_rows {
                self.end_group()?;
            }
        }
        Ok(())
    }

    fn end_group(&mut self) -> Result<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let mut rg = self.file.next_row_group()?;
        for w in group.writers {
            w.append_to(&mut rg)?;
        }
        rg.close()?;
        self.groups += 1;
        Ok(())
    }

    /// Bytes of completed row groups written so far.
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    pub fn append_key_value_metadata(&mut self, kv: KeyValue) {
        self.file.append_key_value_metadata(kv);
    }

    /// Ends the last row group and the footer; returns the file's metadata (the output is
    /// dropped with the writer).
    pub fn finish(mut self) -> Result<parquet::file::metadata::ParquetMetaData> {
        self.end_group()?;
        self.file.finish()
    }

    /// Ends the last row group and the footer; returns the output.
    pub fn into_inner(mut self) -> Result<W> {
        self.end_group()?;
        self.file.into_inner()
    }
}

/// A factory of writers of column `i` of `file` alone, as a writer of the whole file would
/// write it: the file's own Parquet type of the column, `props` shared (a copy of the
/// properties per column was quadratic in a wide file's columns). A nested column is
/// refused.
fn single_factory<W: Write + Send>(
    file: &SerializedFileWriter<W>,
    schema: &SchemaRef,
    i: usize,
    props: Arc<WriterProperties>,
) -> Result<ArrowRowGroupWriterFactory> {
    let root = file.schema_descr().root_schema();
    let column = root
        .get_fields()
        .get(i)
        .cloned()
        .ok_or_else(|| ParquetError::General(format!("no column {i} in the file")))?;
    if column.is_group() {
        return Err(ParquetError::General(
            "nested columns are not written by this writer".into(),
        ));
    }
    let one = parquet::schema::types::Type::group_type_builder(root.name())
        .with_fields(vec![column])
        .build()?;
    let probe = SerializedFileWriter::new(std::io::sink(), Arc::new(one), props)?;
    let field = schema.field(i).clone();
    Ok(ArrowRowGroupWriterFactory::new(
        &probe,
        Arc::new(arrow::datatypes::Schema::new(vec![field])),
    ))
}

/// The writer a single-column factory makes for row group `group`.
fn column_writer(single: &ArrowRowGroupWriterFactory, group: usize) -> Result<ArrowColumnWriter> {
    let mut writers = single.create_column_writers(group)?;
    match (writers.pop(), writers.is_empty()) {
        (Some(w), true) => Ok(w),
        _ => Err(ParquetError::General(
            "nested columns are not written by this writer".into(),
        )),
    }
}

/// The writer of a column for row group `group`: packed at aligned widths when `aligned`
/// gives its descriptor and properties (and it is a column that can be), else `single`'s.
fn column_out(
    aligned: &Option<Aligned>,
    single: &ArrowRowGroupWriterFactory,
    group: usize,
) -> Result<ColumnOut> {
    if let Some((descr, props, codec)) = aligned
        && let Some(w) = AlignedColumn::new(descr.clone(), props.clone(), *codec)
    {
        return Ok(ColumnOut::Aligned(w));
    }
    column_writer(single, group).map(ColumnOut::Arrow)
}

/// The parts of the runs `series` within `part`.
fn clip<'a>(
    series: &'a [Range<usize>],
    part: &'a Range<usize>,
) -> impl Iterator<Item = Range<usize>> + 'a {
    series
        .iter()
        .map(|r| r.start.max(part.start)..r.end.min(part.end))
        .filter(|r| r.start < r.end)
}

/// Writes rows `part` of `column` (of `field`): a column paged by series one run of
/// `series` (within `part`) at a time, when it has no null there; otherwise in one call.
fn write_column(
    writer: &mut ColumnOut,
    field: &arrow::datatypes::FieldRef,
    column: &ArrayRef,
    part: Range<usize>,
    series: &[Range<usize>],
    paged: bool,
) -> Result<()> {
    let mut put = |range: Range<usize>, validity: bool| -> Result<()> {
        let mut slice: ArrayRef = column.slice(range.start, range.len());
        let writer = match writer {
            ColumnOut::Aligned(w) => return w.write(&slice),
            ColumnOut::Arrow(w) => w,
        };
        if validity && slice.nulls().is_none() {
            slice = with_validity(&slice);
        }
        for leaf in compute_leaves(field, &slice)? {
            writer.write(&leaf)?;
        }
        Ok(())
    };
    if paged && !series.is_empty() && column.slice(part.start, part.len()).null_count() == 0 {
        for run in series {
            put(run.clone(), field.is_nullable())?;
        }
        Ok(())
    } else {
        // A paged column's part in one call: one page (see the type's doc).
        put(part, paged && field.is_nullable())
    }
}

/// `array` with an explicit all-valid null buffer. The parquet crate writes a nullable column
/// whose slice has no null buffer in write batches of a page's row limit (one row here),
/// and one with a null buffer in batches of `write_batch_size` (a whole series run): without
/// it every value of a column paged by series would be a page of its own. Checked by
/// `storage::parquet::tests::counters_get_a_page_per_series_and_read_back_exactly`.
fn with_validity(array: &ArrayRef) -> ArrayRef {
    // Built by the typed constructors: `ArrayData` drops a null buffer without nulls.
    fn valid<T: ArrowPrimitiveType>(array: &ArrayRef) -> Option<PrimitiveArray<T>> {
        let a = array.as_primitive_opt::<T>()?;
        PrimitiveArray::<T>::try_new(a.values().clone(), Some(NullBuffer::new_valid(a.len()))).ok()
    }
    let out: Option<ArrayRef> = match array.data_type() {
        DataType::Int64 => valid::<Int64Type>(array).map(|a| Arc::new(a) as ArrayRef),
        DataType::UInt64 => valid::<UInt64Type>(array).map(|a| Arc::new(a) as ArrayRef),
        DataType::Decimal128(p, s) => valid::<Decimal128Type>(array)
            .and_then(|a| a.with_precision_and_scale(*p, *s).ok())
            .map(|a| Arc::new(a) as ArrayRef),
        // Not a type the trial pages: written as it is (a page per row, never an error).
        _ => None,
    };
    out.unwrap_or_else(|| array.clone())
}

/// The runs of rows of `batch` that hold one series each: rows where the value (or
/// presence) of any of the `tags` columns changes start a new run. One run when there are
/// no tag columns.
pub fn series_runs(batch: &RecordBatch, tags: &[usize]) -> Result<Vec<Range<usize>>> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(Vec::new());
    }
    let columns: Vec<ArrayRef> = tags
        .iter()
        .filter_map(|i| batch.columns().get(*i).cloned())
        .collect();
    if columns.is_empty() {
        return Ok(std::iter::once(0..n).collect());
    }
    arrow::compute::kernels::partition::partition(&columns)
        .map(|p| p.ranges())
        .map_err(|e| ParquetError::General(format!("finding series runs: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int64Array};
    use arrow::datatypes::Int32Type;

    /// Counters of `series` series with `rows(s)` rows each (`None`: the series lacks the
    /// field), as a flush or compaction holds them.
    fn counters(rows: impl Fn(usize) -> Option<usize>, series: usize) -> RecordBatch {
        let mut next = crate::storage::test_rng(11);
        let (mut hosts, mut values) = (Vec::new(), Vec::new());
        for s in 0..series {
            let (n, present) = match rows(s) {
                Some(n) => (n, true),
                None => (360, false),
            };
            let mut c = next(1 << 40) as i64;
            for _ in 0..n {
                hosts.push(format!("h{s:05}"));
                values.push(present.then_some(c));
                c += next(1000) as i64;
            }
        }
        let host: DictionaryArray<Int32Type> = hosts.iter().map(|h| h.as_str()).collect();
        RecordBatch::try_from_iter_with_nullable(vec![
            ("host", Arc::new(host) as ArrayRef, true),
            ("c", Arc::new(Int64Array::from(values)) as ArrayRef, true),
        ])
        .unwrap()
    }

    fn data_pages(bytes: &[u8]) -> usize {
        crate::storage::test_data_pages(bytes, 1)
    }

    fn write(batch: &RecordBatch, paged: &[String], runs: &[Range<usize>]) -> Vec<u8> {
        let props = crate::storage::parquet::writer_properties(
            &batch.schema(),
            1 << 20,
            vec![],
            1,
            20_000,
            &[("c".into(), parquet::basic::Encoding::DELTA_BINARY_PACKED)],
        );
        let mut w = PagedWriter::try_new(Vec::new(), batch.schema(), props, paged, &[]).unwrap();
        w.write(batch, runs).unwrap();
        w.into_inner().unwrap()
    }

    /// A file written a column at a time (`write_whole`) is the file `write` makes, byte for
    /// byte: row groups cut within series runs, a paged column and a nullable one.
    #[test]
    fn a_column_at_a_time_writes_the_same_file() {
        let batch = counters(|s| Some(250 + s * 7), 12);
        let runs = series_runs(&batch, &[0]).unwrap();
        let paged = vec!["c".to_string()];
        let props = crate::storage::parquet::writer_properties(
            &batch.schema(),
            1000,
            vec![],
            1,
            20_000,
            &[("c".into(), parquet::basic::Encoding::DELTA_BINARY_PACKED)],
        );
        let mut whole =
            PagedWriter::try_new(Vec::new(), batch.schema(), props.clone(), &paged, &[]).unwrap();
        let mut column = |i: usize, rows: Range<usize>| -> Result<ArrayRef> {
            Ok(batch.column(i).slice(rows.start, rows.len()))
        };
        whole
            .write_whole(batch.num_rows(), &runs, &mut column)
            .unwrap();
        let whole = whole.into_inner().unwrap();
        let mut by_rows =
            PagedWriter::try_new(Vec::new(), batch.schema(), props, &paged, &[]).unwrap();
        by_rows.write(&batch, &runs).unwrap();
        let by_rows = by_rows.into_inner().unwrap();
        assert!(data_pages(&whole) > 12, "paged by series");
        assert_eq!(whole, by_rows);
        let meta =
            parquet::file::serialized_reader::SerializedFileReader::new(bytes::Bytes::from(whole))
                .unwrap();
        use parquet::file::reader::FileReader;
        assert_eq!(
            meta.metadata().num_row_groups(),
            batch.num_rows().div_ceil(1000)
        );
    }

    /// Long counter series are paged; not when a series lacks the field (its nulls would
    /// be a page a row), nor when most series are short although the middle rows the trial
    /// sees hold long ones.
    #[test]
    fn only_long_series_without_nulls_are_paged() {
        use crate::storage::writer::{FileSpec, Layout};
        let spec = FileSpec {
            region: "r",
            db: "db",
            measurement: "m",
            partition_start: 0,
            row_group_rows: 1 << 20,
            zstd_level: 1,
            page_rows: 20_000,
            time_unit: Default::default(),
            column_index: false,
        };
        let long = counters(|_| Some(360), 40);
        assert_eq!(Layout::tried(&long, &spec).series_pages, vec!["c"]);
        let sparse = counters(|s| (s != 7).then_some(360), 40);
        assert!(Layout::tried(&sparse, &spec).series_pages.is_empty());
        // 1,500 two-row series on each side of 40 long ones.
        let mixed = counters(
            |s| Some(if (1500..1540).contains(&s) { 360 } else { 2 }),
            3040,
        );
        let middle = crate::storage::parquet::trial_rows(&mixed);
        assert_eq!(
            crate::storage::parquet::trial_encodings(&middle, 1, 20_000, false).series_pages,
            vec!["c"],
            "the trial alone would page it"
        );
        assert!(Layout::tried(&mixed, &spec).series_pages.is_empty());
    }

    /// A paged column given nulls, or no runs, is written a page per call, never a page per
    /// row, and reads back as written.
    #[test]
    fn nulls_or_no_runs_in_a_paged_column_make_one_page() {
        let sparse = counters(|s| (s != 2).then_some(300), 6);
        let runs = series_runs(&sparse, &[0]).unwrap();
        assert_eq!(runs.len(), 6);
        let paged = vec!["c".to_string()];
        for (what, runs) in [("with nulls", &runs[..]), ("without runs", &[][..])] {
            let bytes = write(&sparse, &paged, runs);
            assert_eq!(data_pages(&bytes), 1, "{what}");
            let back = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                bytes::Bytes::from(bytes),
                1 << 20,
            )
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
            assert_eq!(back.column(1).as_ref(), sparse.column(1).as_ref(), "{what}");
        }
        // Without nulls: a page per run.
        let dense = counters(|_| Some(300), 6);
        let runs = series_runs(&dense, &[0]).unwrap();
        assert_eq!(data_pages(&write(&dense, &paged, &runs)), 6);
    }
}
