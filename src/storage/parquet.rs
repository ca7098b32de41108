//! Parquet writer settings and crash-safe file writes.
//!
//! Encodings are chosen per column for size (figures in `../shared/MEASURED.md` and
//! `benches/`): `time` DELTA_BINARY_PACKED without dictionary; tags dictionary; floats
//! dictionary with BYTE_STREAM_SPLIT as the fallback when the dictionary overflows; integers
//! DELTA_BINARY_PACKED without dictionary (0.48 vs 0.84 bytes/value with a dictionary first,
//! on TSBS-like data); zstd level 1 everywhere (level 3 is at most 0.4% smaller and slower).
//!
//! Files are written by `storage::writer` (the one writer) and made durable by
//! `storage::store` (temp files → durable → rename → directories durable on a local disk);
//! this module holds the encodings, the durability primitives and whole-file reads.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use arrow::record_batch::RecordBatchReader;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::prefetch::Prefetched;
use super::store::FileRef;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Parquet error on {path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("Arrow error on {path}: {source}")]
    Arrow {
        path: PathBuf,
        source: arrow::error::ArrowError,
    },
    #[error("object store error on {what}: {source}")]
    Object {
        what: String,
        source: object_store::Error,
    },
    #[error("{0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pq_err(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> StorageError + '_ {
    move |source| StorageError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads a file's footer (and page index, as `options` say) for reading it in the Arrow
/// schema Meridian reads files in ([`super::schema::file_schema`]): tags as dictionaries
/// whether or not the footer embeds an Arrow schema.
/// `entry`: a packed file's entry, read as its view ([`super::packed::view`]).
pub fn reader_metadata<R: parquet::file::reader::ChunkReader>(
    reader: &R,
    options: ArrowReaderOptions,
    entry: Option<&super::packed::Entry>,
) -> parquet::errors::Result<ArrowReaderMetadata> {
    load_metadata(reader, options, false, entry)
}

/// [`reader_metadata`] for queries: scaled float columns read as 32- or 64-bit decimals, as
/// their physical type is ([`super::scaled::narrow_decimal`]).
pub fn query_reader_metadata<R: parquet::file::reader::ChunkReader>(
    reader: &R,
    options: ArrowReaderOptions,
    entry: Option<&super::packed::Entry>,
) -> parquet::errors::Result<ArrowReaderMetadata> {
    load_metadata(reader, options, true, entry)
}

fn load_metadata<R: parquet::file::reader::ChunkReader>(
    reader: &R,
    options: ArrowReaderOptions,
    narrow: bool,
    entry: Option<&super::packed::Entry>,
) -> parquet::errors::Result<ArrowReaderMetadata> {
    // A packed file's entry: its view, whose schema is set below as for any file.
    let meta = match entry {
        None => ArrowReaderMetadata::load(reader, options.clone())?,
        Some(e) => ArrowReaderMetadata::try_new(
            Arc::new(super::packed::view(e, reader)?),
            options.clone(),
        )?,
    };
    let md = meta.metadata().file_metadata();
    let embedded = super::schema::footer_value(md, super::schema::ARROW_SCHEMA_KEY).is_some();
    let schema = if embedded {
        None
    } else {
        Some(super::schema::file_schema(md).map_err(parquet::errors::ParquetError::General)?)
    };
    let narrowed = narrow
        .then(|| {
            let base = schema.as_ref().unwrap_or(meta.schema());
            let columns = md.schema_descr().columns();
            super::schema::retype(base, |f| {
                let leaf = columns
                    .iter()
                    .find(|c| c.path().parts() == [f.name().as_str()])?;
                super::scaled::narrow_decimal(f.data_type(), leaf.physical_type())
            })
        })
        .flatten();
    match narrowed.or(schema) {
        None => Ok(meta),
        Some(s) => {
            ArrowReaderMetadata::try_new(meta.metadata().clone(), options.with_schema(Arc::new(s)))
        }
    }
}

/// zstd level and rows per data page of the files the server flushes: the cheapest, ingest
/// CPU and memory matter most (20,000 rows is the parquet crate's default). Measured on the
/// loadgen replay (43.2 M values; bytes per value after the SIGTERM flush, server CPU, peak
/// RSS): level 1 / 20k 0.435, 9.0 s, 190-201 MiB; 3 / 20k 0.417, 9.5-10.7 s, 194-212 MiB;
/// 5 / 20k 0.414, 9.7-9.9 s, 211-217 MiB; 5 / 120k 0.396, 9.1-9.4 s, 224-244 MiB.
/// `meridian-compact` rewrites the files smaller anyway.
pub const FLUSH_ZSTD_LEVEL: i32 = 1;
pub const FLUSH_PAGE_ROWS: usize = 20_000;

/// zstd level and rows per data page of the files `meridian-compact` writes (offline,
/// written once, read often; decompression speed hardly depends on the level). Measured with
/// meridian-compact on loadgen data (1,000 hosts x 12 h, 43.2 M integer values, 36 files of
/// ~120k rows; Parquet bytes per value, compaction CPU): level 12 / 30k-row pages 0.367,
/// 4.2 s; 19 / 30k 0.366; 12 / 45k 0.385; 12 / 120k 0.373; 19 / 60k 0.356; 13 / 120k
/// 0.370; 14 / 120k 0.348; 15 / 120k 0.348; 19 / 120k 0.347, 5.5 s. zstd picks its
/// parameters by input size and level, so neither knob is monotonic on its own; at level
/// 14 and above (its optimal parsers) a page of a whole hourly file's column compresses
/// best. Larger pages make a selective read decode more rows the first time (the page
/// cache keeps them decoded).
pub const COMPACT_ZSTD_LEVEL: i32 = 19;
pub const COMPACT_PAGE_ROWS: usize = 120_000;

/// Writer properties for a batch of this schema (`encodings`: columns whose encoding was
/// chosen from their data, [`trial_encodings`]; without a dictionary).
pub fn writer_properties(
    schema: &Schema,
    row_group_rows: usize,
    kv: Vec<KeyValue>,
    zstd_level: i32,
    page_rows: usize,
    encodings: &[(String, Encoding)],
) -> WriterProperties {
    let zstd = ZstdLevel::try_new(zstd_level).unwrap_or_default();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_data_page_row_count_limit(page_rows.max(1))
        // The row limit is checked once per write batch: keep batches within a page.
        .set_write_batch_size(page_rows.clamp(1, 1024))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(kv))
        .set_created_by(format!("meridian {}", env!("CARGO_PKG_VERSION")));
    for f in schema.fields() {
        let col = ColumnPath::from(f.name().as_str());
        if let Some((_, e)) = encodings.iter().find(|(n, _)| n == f.name()) {
            b = b
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col, *e);
            continue;
        }
        b = match f.data_type() {
            DataType::Timestamp(_, _) => b
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col, Encoding::DELTA_BINARY_PACKED),
            DataType::Float64 => b.set_column_encoding(col, Encoding::BYTE_STREAM_SPLIT),
            // Measured on loadgen data (random-walk integers, rows sorted by series then time):
            // DELTA without a dictionary 0.478 bytes/value, dictionary first 0.844.
            // Float fields stored as scaled integers (`storage::scaled`): as integers.
            DataType::Int64 | DataType::UInt64 | DataType::Decimal128(..) => b
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col, Encoding::DELTA_BINARY_PACKED),
            _ => b,
        };
    }
    b.build()
}

/// `props` as a file's layout finishes them: without the column index (page min/max) unless
/// `column_index`, and never for a column paged by series (a page per series: ~25 bytes an
/// entry, 0.06 of 1.55 bytes a value on counters, and Meridian reads only page
/// locations); the columns of `levels` compressed at their zstd level. The file writer and
/// [`trial_encodings`] both build their properties so, so a trial measures what the file
/// will hold.
pub fn finish_properties(
    props: WriterProperties,
    column_index: bool,
    series_pages: &[String],
    levels: &[(String, i32)],
) -> WriterProperties {
    let mut b = props.into_builder();
    if !column_index {
        b = b.set_statistics_enabled(EnabledStatistics::Chunk);
    }
    for c in series_pages {
        b = b.set_column_statistics_enabled(c.as_str().into(), EnabledStatistics::Chunk);
    }
    for (c, level) in levels {
        if let Ok(l) = ZstdLevel::try_new(*level) {
            b = b.set_column_compression(c.as_str().into(), Compression::ZSTD(l));
        }
    }
    b.build()
}

/// Rows of a column encoded by [`trial_encodings`] per candidate encoding.
const TRIAL_ROWS: usize = 8_192;

/// How much smaller BYTE_STREAM_SPLIT must be than DELTA_BINARY_PACKED to be chosen: the
/// parquet crate decodes it about 2.5 times slower (on the `tools/compare` integer data,
/// where it was 2.3% smaller after compaction at level 19, the full scan of q2 took 152 ms
/// instead of 62 ms, and `meridian-compact` 19.8 s instead of 5.6 s).
const BSS_MIN_GAIN: f64 = 0.10;

/// The rows [`trial_encodings`] encodes: up to [`TRIAL_ROWS`] from the middle.
pub fn trial_rows(batch: &RecordBatch) -> RecordBatch {
    let (from, len) = trial_span(batch.num_rows());
    batch.slice(from, len)
}

/// The first row and the number of rows [`trial_rows`] takes of `n`.
pub fn trial_span(n: usize) -> (usize, usize) {
    let len = n.min(TRIAL_ROWS);
    ((n - len) / 2, len)
}

/// How much smaller a DELTA_BINARY_PACKED column must be packed at aligned widths
/// ([`super::aligned`]) to be written so: its pages are encoded twice.
const ALIGNED_MIN_GAIN: f64 = 0.02;

/// How much smaller a column must be with a page per series than whole to be written so:
/// many small pages decode a little slower than a few large ones.
const SERIES_MIN_GAIN: f64 = 0.03;

/// The zstd level a column of a file written at a lower one (the server's flushes) is
/// compressed at when zstd shrinks its encoded pages at least [`RAISED_LEVEL_MIN_RATIO`]
/// times at the file's level: there a higher level costs no time (ten gauge columns of
/// 54,000 rows on their byte planes: 8.5 ms at level 1, 4.5 at 3, 7.8 at 6) and saves
/// bytes (21,456 at level 1, 20,375 at 3, 19,102 at 6); on data that compresses less it
/// costs time for less. Not 6: the parquet crate keeps a compressor per column being
/// written, and at level 6 those contexts took peak ingest RSS on the 1,000-host gauges
/// set from 193–199 to 244–306 MiB (four runs; flushed files 12% smaller); at 3 it stayed
/// at 195–199 MiB. The gain shows only on whole files' pages (at 8,192 rows, level 6 was
/// 3.6% smaller, under any bar), so it is decided by the ratio, not by a trial at both
/// levels.
pub const RAISED_ZSTD_LEVEL: i32 = 3;
const RAISED_LEVEL_MIN_RATIO: i64 = 16;

/// How [`trial_encodings`] stores the integer columns of a file: each one's encoding, the
/// columns whose data pages end at series boundaries ([`super::paged`]), and the columns
/// compressed at a level above the file's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trial {
    pub encodings: Vec<(String, Encoding)>,
    pub series_pages: Vec<String>,
    pub levels: Vec<(String, i32)>,
    /// DELTA_BINARY_PACKED columns packed at aligned widths ([`super::aligned`]).
    pub aligned: Vec<String>,
}

/// The encoding of each integer column (`Int64`, `UInt64`, and float fields stored as scaled
/// integers) of `batch` (in its stored form) for files written at `zstd_level`:
/// DELTA_BINARY_PACKED, or BYTE_STREAM_SPLIT where it is at least [`BSS_MIN_GAIN`] smaller;
/// and whether DELTA with a page per series is at least [`SERIES_MIN_GAIN`] smaller still;
/// for the DELTA layout kept, whether packing it at aligned widths ([`super::aligned`]) is
/// at least [`ALIGNED_MIN_GAIN`] smaller still; below [`RAISED_ZSTD_LEVEL`], whether zstd shrinks the choice at least
/// [`RAISED_LEVEL_MIN_RATIO`] times (then it is compressed at that level). The `time`
/// column is always DELTA_BINARY_PACKED; only its level is chosen so.
/// The three are tried on a run of up to [`TRIAL_ROWS`] rows from the middle of the column
/// (rows are sorted by series, so the run holds whole series as the file will). Which one
/// wins depends on the data and the zstd level: on two-decimal random walks stored as 64-bit
/// integers (values ×100, steps of up to ±1.00), DELTA is 1.238 bytes a value at level 3
/// against 1.255 for BYTE_STREAM_SPLIT, but 1.226 against 1.182 at level 19, where zstd
/// finds the byte planes' structure; as 32-bit integers DELTA wins at both. Counters (large
/// integers, small steps) are where a page per series wins: a series boundary makes DELTA
/// pack a whole block at the width of the jump between two counters (one hourly file of
/// 60 counter series, 360 rows each: 1.68 bytes a value whole at level 19 and 2.56 at level
/// 1, 1.44 with a page per series at either).
pub fn trial_encodings(
    batch: &RecordBatch,
    zstd_level: i32,
    page_rows: usize,
    column_index: bool,
) -> Trial {
    let batch = trial_rows(batch);
    let len = batch.num_rows();
    let mut out = Trial::default();
    if len == 0 {
        return out;
    }
    let runs = super::paged::series_runs(&batch, &super::schema::tag_indices(&batch.schema()))
        .unwrap_or_default();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let time = matches!(f.data_type(), DataType::Timestamp(..));
        if !(time
            || matches!(
                f.data_type(),
                DataType::Int64 | DataType::UInt64 | DataType::Decimal128(..)
            ))
            || c.null_count() == c.len()
        {
            continue;
        }
        let field = Arc::new(Schema::new(vec![f.as_ref().clone()]));
        let Ok(one) = RecordBatch::try_new(field.clone(), vec![c.clone()]) else {
            continue;
        };
        // (bytes, zstd's ratio on the encoded pages).
        let size = |e: Encoding, by_series: bool, aligned: bool| -> Option<(usize, i64)> {
            let name = f.name().clone();
            // This column, or none.
            let only = |on: bool| -> Vec<String> { on.then(|| name.clone()).into_iter().collect() };
            let (paged, aligned) = (only(by_series), only(aligned));
            let props = finish_properties(
                writer_properties(&field, len, Vec::new(), zstd_level, page_rows, &[(name, e)]),
                column_index,
                &paged,
                &[],
            );
            let mut w = super::paged::PagedWriter::try_new(
                Vec::new(),
                field.clone(),
                props,
                &paged,
                &aligned,
            )
            .ok()?;
            w.write(&one, &runs).ok()?;
            // The column's pages and its page index; not the footer, which every file has
            // once whatever its columns (in a trial of a few thousand rows it would weigh
            // as much as a compressible column).
            let meta = w.finish().ok()?;
            let chunks = || meta.row_groups().iter().flat_map(|g| g.columns());
            let bytes = chunks()
                .map(|c| {
                    c.compressed_size()
                        + i64::from(c.column_index_length().unwrap_or(0))
                        + i64::from(c.offset_index_length().unwrap_or(0))
                })
                .sum::<i64>();
            let compressed = chunks().map(|c| c.compressed_size()).sum::<i64>().max(1);
            let encoded = chunks().map(|c| c.uncompressed_size()).sum::<i64>();
            Some((usize::try_from(bytes).ok()?, encoded / compressed))
        };
        let delta = size(Encoding::DELTA_BINARY_PACKED, false, false);
        if time {
            // Always DELTA_BINARY_PACKED (`writer_properties`): only its level is chosen.
            if zstd_level < RAISED_ZSTD_LEVEL
                && delta.is_some_and(|d| d.1 >= RAISED_LEVEL_MIN_RATIO)
            {
                out.levels.push((f.name().clone(), RAISED_ZSTD_LEVEL));
            }
            continue;
        }
        let bss = size(Encoding::BYTE_STREAM_SPLIT, false, false);
        let smaller =
            |a: (usize, i64), b: (usize, i64), gain: f64| (a.0 as f64) < b.0 as f64 * (1.0 - gain);
        let (e, best) = match (delta, bss) {
            (Some(d), Some(b)) if smaller(b, d, BSS_MIN_GAIN) => {
                (Encoding::BYTE_STREAM_SPLIT, Some(b))
            }
            (None, Some(b)) => (Encoding::BYTE_STREAM_SPLIT, Some(b)),
            (d, _) => (Encoding::DELTA_BINARY_PACKED, d),
        };
        let series = if runs.len() > 1 {
            size(Encoding::DELTA_BINARY_PACKED, true, false)
        } else {
            None
        };
        let (e, by_series, best) = match (series, best) {
            (Some(s), Some(b)) if smaller(s, b, SERIES_MIN_GAIN) => {
                (Encoding::DELTA_BINARY_PACKED, true, Some(s))
            }
            _ => (e, false, best),
        };
        let aligned = if e == Encoding::DELTA_BINARY_PACKED {
            size(Encoding::DELTA_BINARY_PACKED, by_series, true)
        } else {
            None
        };
        let (aligned, best) = match (aligned, best) {
            (Some(a), Some(b)) if smaller(a, b, ALIGNED_MIN_GAIN) => (true, Some(a)),
            _ => (false, best),
        };
        out.encodings.push((f.name().clone(), e));
        if by_series {
            out.series_pages.push(f.name().clone());
        }
        if aligned {
            out.aligned.push(f.name().clone());
        }
        if zstd_level < RAISED_ZSTD_LEVEL && best.is_some_and(|b| b.1 >= RAISED_LEVEL_MIN_RATIO) {
            out.levels.push((f.name().clone(), RAISED_ZSTD_LEVEL));
        }
    }
    out
}

/// From this many files on, `Store::publish` makes them durable with two `syncfs` calls
/// instead of an fsync per file and per directory. Measured on this machine's ext4
/// (3,000 files of 1.4 KB in their own directories): an fsync of each file and directory
/// 2.58 s, the same fsyncs batched after all writes 1.81 s, one `syncfs` 0.26 s.
pub const SYNCFS_MIN_FILES: usize = 8;

/// Makes everything written to the file system holding `dir` durable (`syncfs(2)`, which
/// reports write-back errors since Linux 5.8).
#[cfg(target_os = "linux")]
pub(crate) fn sync_fs(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).map_err(io_err(dir))?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(StorageError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::last_os_error(),
        })
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn sync_fs(_dir: &Path) -> Result<()> {
    unreachable!("Store::publish uses syncfs only on Linux")
}

/// Replaces `path` with `bytes` atomically and durably: temp file → fsync → rename → fsync
/// of the directory. A crash leaves the old content or the new, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let tmp = crate::storage::paths::temp_path(path);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory so a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// fsyncs `dir` and each ancestor up to and including `stop` (never above it), so that
/// directories made by `create_dir_all` and entries renamed into them are durable.
pub fn sync_dirs_up_to(dir: &Path, stop: &Path) -> Result<()> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        sync_dir(d)?;
        if d == stop || !d.starts_with(stop) {
            break;
        }
        cur = d.parent();
    }
    Ok(())
}

/// Reads a whole Parquet file into record batches (used by compaction and tests; queries read
/// through `storage::index`).
pub fn read_file(file: &FileRef) -> Result<(Arc<Schema>, Vec<RecordBatch>)> {
    let path = file.key();
    let bytes = file
        .store
        .read(&file.rel)?
        .ok_or_else(|| StorageError::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        })?;
    decode_file(bytes, &path, file.packed_entry().as_ref())
}

/// Decodes a whole Parquet file held in memory (`row_group`: a packed file's entry); `path`
/// names it in errors.
pub fn decode_file(
    bytes: bytes::Bytes,
    path: &Path,
    entry: Option<&super::packed::Entry>,
) -> Result<(Arc<Schema>, Vec<RecordBatch>)> {
    let meta = reader_metadata(&bytes, ArrowReaderOptions::new(), entry).map_err(pq_err(path))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::new_with_metadata(
        bytes, meta,
    )
    .with_batch_size(64 * 1024)
    .build()
    .map_err(pq_err(path))?;
    // The schema as queries see it: `time` in nanoseconds whatever the file stores.
    let arrow_err = |source| StorageError::Arrow {
        path: path.to_path_buf(),
        source,
    };
    let schema = super::schema::batch_in_ns(RecordBatch::new_empty(reader.schema()))
        .map_err(arrow_err)?
        .schema();
    let mut out = Vec::new();
    for b in reader {
        out.push(
            b.and_then(super::schema::batch_in_ns)
                .map_err(|source| StorageError::Arrow {
                    path: path.to_path_buf(),
                    source,
                })?,
        );
    }
    Ok((schema, out))
}

/// The footer of a data file (its last bytes, one read).
pub fn read_footer(file: &FileRef) -> Result<Arc<parquet::file::metadata::ParquetMetaData>> {
    let key = file.key();
    let path = key.as_path();
    let reader = file.store.open(&file.rel, Some(file.len))?;
    let len = reader.len();
    let tail = len.min(64 * 1024);
    let footer = Prefetched::fetch(reader, vec![(len - tail, tail)]).map_err(io_err(path))?;
    match file.packed_entry() {
        None => parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&footer)
            .map(Arc::new)
            .map_err(pq_err(path)),
        Some(e) => super::packed::view(&e, &footer)
            .map(Arc::new)
            .map_err(pq_err(path)),
    }
}

/// Calls `each` with every distinct tag set of a file (tag name, value; absent tags left
/// out), reading only its tag columns (fetched together, after the footer). Rows are sorted
/// by tag set, so each set is one run and is reported once; a file without tag columns
/// reports the empty set once.
pub fn for_each_tag_set(
    file: &FileRef,
    tag_columns: &[&str],
    mut each: impl FnMut(&[(&str, &str)]),
) -> Result<()> {
    use arrow::array::{Array, AsArray};
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let key = file.key();
    let path = key.as_path();
    let reader = file.store.open(&file.rel, Some(file.len))?;
    let len = reader.len();
    let tail = len.min(64 * 1024);
    let io = |e: std::io::Error| StorageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let footer = Prefetched::fetch(reader.clone(), vec![(len - tail, tail)]).map_err(io)?;
    let meta = reader_metadata(&footer, Default::default(), file.packed_entry().as_ref())
        .map_err(pq_err(path))?;
    let schema = meta.parquet_schema();
    let wanted: Vec<usize> = (0..schema.num_columns())
        .filter(|i| tag_columns.contains(&schema.column(*i).name()))
        .collect();
    if wanted.is_empty() {
        if meta.metadata().file_metadata().num_rows() > 0 {
            each(&[]);
        }
        return Ok(());
    }
    let ranges = super::prefetch::chunk_ranges(meta.metadata(), &wanted);
    let data = Prefetched::fetch(reader, ranges).map_err(io)?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(data, meta.clone());
    let schema = builder.parquet_schema();
    let mask = ProjectionMask::leaves(schema, wanted);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(pq_err(path))?;
    let mut prev: Option<Vec<Option<String>>> = None;
    let mut cur: Vec<Option<String>> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| StorageError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let cols: Vec<arrow::array::ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Utf8))
            .collect::<std::result::Result<_, _>>()
            .map_err(|source| StorageError::Arrow {
                path: path.to_path_buf(),
                source,
            })?;
        let strs: Vec<&arrow::array::StringArray> = cols.iter().map(|c| c.as_string()).collect();
        for row in 0..batch.num_rows() {
            let same = prev.as_ref().is_some_and(|p| {
                strs.iter().enumerate().all(|(i, c)| {
                    let v = (!c.is_null(row)).then(|| c.value(row));
                    p[i].as_deref() == v
                })
            });
            if same {
                continue;
            }
            cur.clear();
            cur.extend(
                strs.iter()
                    .map(|c| (!c.is_null(row)).then(|| c.value(row).to_string())),
            );
            let pairs: Vec<(&str, &str)> = names
                .iter()
                .zip(&cur)
                .filter_map(|(n, v)| v.as_deref().map(|v| (n.as_str(), v)))
                .collect();
            each(&pairs);
            prev = Some(std::mem::take(&mut cur));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use parquet::arrow::ArrowWriter;

    /// Tag sets come back once per run, absent (null) tags left out; a file without tag
    /// columns has the one empty set.
    #[test]
    fn tag_sets_of_a_file_are_its_runs() {
        use arrow::array::{DictionaryArray, StringArray};
        use arrow::datatypes::Int32Type;
        let root = tempfile::tempdir().unwrap();
        let host: DictionaryArray<Int32Type> = vec![Some("a"), Some("a"), Some("b"), None, None]
            .into_iter()
            .collect();
        let region = StringArray::from(vec![Some("eu"), Some("eu"), None, Some("us"), None]);
        let v = Int64Array::from(vec![1, 2, 3, 4, 5]);
        let batch = RecordBatch::try_from_iter(vec![
            ("host", Arc::new(host) as arrow::array::ArrayRef),
            ("region", Arc::new(region) as arrow::array::ArrayRef),
            ("v", Arc::new(v) as arrow::array::ArrayRef),
        ])
        .unwrap();
        let path = root.path().join("f.parquet");
        let props = writer_properties(&batch.schema(), 1024, vec![], 1, 1024, &[]);
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), Some(props))
            .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let store = crate::storage::store::Store::local(root.path());
        let path = store
            .open("f.parquet", None)
            .map(|f| FileRef {
                store: store.clone(),
                rel: "f.parquet".into(),
                len: f.len(),
                row_group: None,
            })
            .unwrap();
        let mut got: Vec<Vec<(String, String)>> = Vec::new();
        for_each_tag_set(&path, &["host", "region"], |set| {
            got.push(
                set.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        })
        .unwrap();
        let s = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            got,
            vec![
                s(&[("host", "a"), ("region", "eu")]),
                s(&[("host", "b")]),
                s(&[("region", "us")]),
                s(&[]),
            ]
        );
        let mut none = 0;
        for_each_tag_set(&path, &[], |set| {
            assert!(set.is_empty());
            none += 1;
        })
        .unwrap();
        assert_eq!(none, 1);
    }

    /// Counters (values near 2^40, small steps, one random base per series): the trial
    /// pages their column by series, which is smaller than DELTA over whole pages at both
    /// zstd levels Meridian writes; the file reads back exactly, and its pages end where the
    /// series do. Random-walk gauges of a few hundred values stay whole.
    #[test]
    fn counters_get_a_page_per_series_and_read_back_exactly() {
        use arrow::array::{ArrayRef, DictionaryArray};
        use arrow::datatypes::Int32Type;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let (series, per) = (40usize, 360usize);
        let mut next = crate::storage::test_rng(7);
        let (mut hosts, mut counters, mut gauges) = (Vec::new(), Vec::new(), Vec::new());
        for s in 0..series {
            let (mut c, mut g) = (next(1 << 40) as i64, 50i64);
            for _ in 0..per {
                hosts.push(format!("host_{s:03}"));
                counters.push(c);
                gauges.push(g);
                c += next(1000) as i64;
                g = (g + next(3) as i64 - 1).clamp(0, 100);
            }
        }
        let host: DictionaryArray<Int32Type> = hosts.iter().map(|h| h.as_str()).collect();
        // Nullable, as field columns are: the parquet crate batches those differently.
        let batch = RecordBatch::try_from_iter_with_nullable(vec![
            ("hostname", Arc::new(host) as ArrayRef, true),
            (
                "c",
                Arc::new(Int64Array::from(counters.clone())) as ArrayRef,
                true,
            ),
            ("g", Arc::new(Int64Array::from(gauges)) as ArrayRef, true),
        ])
        .unwrap();
        let runs = crate::storage::paged::series_runs(&batch, &[0]).unwrap();
        assert_eq!(runs.len(), series);
        let write = |trial: &Trial, level: i32| -> Vec<u8> {
            let props = writer_properties(
                &batch.schema(),
                1 << 20,
                vec![],
                level,
                COMPACT_PAGE_ROWS,
                &trial.encodings,
            );
            let mut w = crate::storage::paged::PagedWriter::try_new(
                Vec::new(),
                batch.schema(),
                props,
                &trial.series_pages,
                &trial.aligned,
            )
            .unwrap();
            w.write(&batch, &runs).unwrap();
            w.into_inner().unwrap()
        };
        let chunk = |bytes: &[u8], col: usize| -> (i64, usize) {
            let r = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
            let size = r.metadata().row_group(0).column(col).compressed_size();
            (size, crate::storage::test_data_pages(bytes, col))
        };
        for level in [FLUSH_ZSTD_LEVEL, COMPACT_ZSTD_LEVEL] {
            let trial = trial_encodings(&batch, level, COMPACT_PAGE_ROWS, true);
            assert_eq!(trial.series_pages, vec!["c".to_string()], "level {level}");
            let whole = Trial {
                encodings: trial.encodings.clone(),
                ..Trial::default()
            };
            let (paged, plain) = (write(&trial, level), write(&whole, level));
            let ((paged_c, paged_pages), (plain_c, plain_pages)) =
                (chunk(&paged, 1), chunk(&plain, 1));
            assert_eq!(paged_pages, series, "a page per series");
            assert_eq!(plain_pages, 1);
            assert!(
                (paged_c as f64) < plain_c as f64 * 0.95,
                "level {level}: {paged_c} bytes by series against {plain_c} whole"
            );
            assert_eq!(chunk(&paged, 2).1, 1, "the gauge column stays whole");
            let mut r = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                bytes::Bytes::from(paged),
                1 << 20,
            )
            .unwrap();
            let back = r.next().unwrap().unwrap();
            assert_eq!(back.num_rows(), series * per);
            let got = back
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            assert_eq!(got.values().to_vec(), counters);
        }
    }

    /// A flush (zstd level 1) compresses a gauge that rarely changes at the raised level,
    /// where it is much smaller, and counters (random low bits) at its own; compaction's
    /// level is never raised.
    #[test]
    fn highly_compressible_columns_get_a_raised_level_at_flush() {
        use arrow::array::{ArrayRef, DictionaryArray};
        use arrow::datatypes::Int32Type;
        let mut next = crate::storage::test_rng(5);
        let (mut hosts, mut gauges, mut counters) = (Vec::new(), Vec::new(), Vec::new());
        for s in 0..100 {
            let (mut g, mut c) = (next(100) as i64, next(1 << 40) as i64);
            for _ in 0..360 {
                hosts.push(format!("host_{s:03}"));
                if next(50) == 0 {
                    g = (g + next(11) as i64 - 5).clamp(0, 100);
                }
                c += next(1000) as i64;
                gauges.push(g);
                counters.push(c);
            }
        }
        let host: DictionaryArray<Int32Type> = hosts.iter().map(|h| h.as_str()).collect();
        let batch = RecordBatch::try_from_iter_with_nullable(vec![
            ("hostname", Arc::new(host) as ArrayRef, true),
            ("g", Arc::new(Int64Array::from(gauges)) as ArrayRef, true),
            ("c", Arc::new(Int64Array::from(counters)) as ArrayRef, true),
        ])
        .unwrap();
        let flush = trial_encodings(&batch, FLUSH_ZSTD_LEVEL, FLUSH_PAGE_ROWS, false);
        assert_eq!(flush.levels, vec![("g".to_string(), RAISED_ZSTD_LEVEL)]);
        let compact = trial_encodings(&batch, COMPACT_ZSTD_LEVEL, COMPACT_PAGE_ROWS, true);
        assert!(compact.levels.is_empty());
    }
}
