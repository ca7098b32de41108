//! Packed files: the small measurements of one flush share one Parquet file, so that many
//! small measurements do not mean one file each.
//!
//! A packed file lives at `<db>/~packed/<partition dirs>/<seq>.parquet`
//! ([`super::paths::packed_file_rel`]). It holds one row
//! group per measurement, in the union of their columns: `time`, [`MEASUREMENT_COLUMN`]
//! (the measurement's name, for readers of the hive layout), every tag column, then every
//! field column, each sorted by name; a column a measurement lacks is null in its row
//! group. Columns of one name have one type in a file: measurements whose types conflict go
//! to another file ([`bins`]).
//!
//! The footer has the file's region, db, partition and WAL ranges as an ordinary file's, and
//! under [`PACKED_KEY`] one [`PartFooter`] per row group. Each measurement has its own
//! manifest entry (its own seq, `FileMeta::packed` naming its row group). Meridian opens an
//! entry through [`view`]: the footer an ordinary file of that measurement would have (its
//! row group, its columns, its keys), whose column chunks point into the packed file, so
//! that the scan, the index, compaction and deletes read it as any other file. The file is
//! deleted when no entry names it any more.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, DictionaryArray, Int32Array, StringArray, new_null_array};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataBuilder, RowGroupMetaData,
};
use parquet::schema::types::{SchemaDescriptor, Type};
use serde::{Deserialize, Serialize};

use super::file_meta::{FileMeta, Packed, WalRange};
use super::parquet::{Result, StorageError, finish_properties, io_err, writer_properties};
use super::schema::{batch_in_unit, columns_of, is_tag, meta, time_type};
use super::store::Store;
use super::writer::Columns;
use crate::config::FileTimeUnit;
use crate::model::{ColumnKind, TIME_COLUMN};

/// The column of a packed file naming each row's measurement.
pub const MEASUREMENT_COLUMN: &str = "_measurement";

/// The footer key listing a packed file's measurements, one [`PartFooter`] per row group.
pub const PACKED_KEY: &str = "meridian.packed";

/// Most rows a block may hold to be packed with others at a flush: beyond it a measurement
/// is worth a file of its own (and its own encodings, see `storage::writer::Layout`).
pub const MAX_PART_ROWS: usize = 4_096;

/// Most rows a measurement's partition may hold for compaction to pack it with others.
/// Lower than at a flush: compaction gives a measurement of its own file the layout chosen
/// for its data (floats as scaled integers, pages per series, encodings tried), which a
/// packed file, whose columns are shared, does not; below this its footer would outweigh
/// what that saves.
pub const MAX_COMPACTED_PART_ROWS: usize = 1_024;

/// Most measurements in one packed file.
pub const MAX_PARTS: usize = 2_048;

/// Most columns of one packed file: a measurement's row group holds a (null) chunk of every
/// column of the file, about 60 bytes of footer each, and every entry's view reads the
/// whole footer.
pub const MAX_COLUMNS: usize = 256;

/// Most column chunks (row groups × columns) of one packed file: bounds its footer.
pub const MAX_CHUNKS: usize = 65_536;

/// What a packed file's footer says of one of its row groups: what an ordinary file of that
/// measurement says in its own footer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartFooter {
    pub db: String,
    pub measurement: String,
    pub seq: u64,
    /// Its columns but `time`, tags first (the file's order).
    pub columns: Vec<String>,
    pub tags: Vec<String>,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    #[serde(default)]
    pub wal: Vec<WalRange>,
    /// The manifest entries whose rows it replaced (see `meta::REPLACES`; absent in files
    /// written before the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Vec<String>>,
}

/// One measurement to pack: its rows (sorted by tag set then time, in a Meridian file
/// schema), its seq and the WAL ranges it covers.
pub struct Part<'a> {
    pub rows: &'a dyn Columns,
    pub measurement: &'a str,
    pub seq: u64,
    pub wal: Vec<WalRange>,
    /// The manifest entries (ids) whose rows these replace ([`PartFooter::replaces`]).
    pub replaces: Vec<String>,
}

/// Where a packed file goes and how its rows are stored.
pub struct PackSpec<'a> {
    pub region: &'a str,
    pub db: &'a str,
    pub partition_start: i64,
    pub zstd_level: i32,
    pub page_rows: usize,
    pub time_unit: FileTimeUnit,
    /// Page min/max statistics (see `storage::writer::FileSpec::column_index`).
    pub column_index: bool,
}

/// A packed file in staging, with the manifest entry of each of its measurements.
#[derive(Debug)]
pub struct StagedPacked {
    pub tmp: PathBuf,
    pub path: String,
    pub metas: Vec<FileMeta>,
}

/// How many files [`bins`] keeps open for the next part.
const OPEN_BINS: usize = 8;

/// Groups parts (given by their schemas) into files: parts whose columns agree in type,
/// within [`MAX_PARTS`], [`MAX_COLUMNS`] and [`MAX_CHUNKS`]. A part that fits no open
/// file starts one. Returns the parts' indices per file, in the order given.
pub fn bins(schemas: &[SchemaRef]) -> Vec<Vec<usize>> {
    struct Bin {
        parts: Vec<usize>,
        columns: BTreeMap<String, DataType>,
    }
    let mut out: Vec<Bin> = Vec::new();
    for (i, s) in schemas.iter().enumerate() {
        let own: Vec<(&String, &DataType)> = s
            .fields()
            .iter()
            .filter(|f| f.name() != TIME_COLUMN)
            .map(|f| (f.name(), f.data_type()))
            .collect();
        let fits = |b: &Bin| {
            let mut columns = b.columns.len();
            for (n, t) in &own {
                match b.columns.get(*n) {
                    Some(have) if have != *t => return false,
                    Some(_) => {}
                    None => columns += 1,
                }
            }
            b.parts.len() < MAX_PARTS
                && columns <= MAX_COLUMNS
                && (b.parts.len() + 1) * (columns + 2) <= MAX_CHUNKS
        };
        // Only the files opened last are tried: linear in the parts, whatever their columns.
        match out.iter_mut().rev().take(OPEN_BINS).find(|b| fits(b)) {
            Some(b) => {
                b.parts.push(i);
                for (n, t) in own {
                    b.columns.entry(n.clone()).or_insert_with(|| t.clone());
                }
            }
            None => out.push(Bin {
                parts: vec![i],
                columns: own
                    .into_iter()
                    .map(|(n, t)| (n.clone(), t.clone()))
                    .collect(),
            }),
        }
    }
    out.into_iter().map(|b| b.parts).collect()
}

/// Most bytes of names (the measurement's and its columns') a packed measurement may have:
/// each is written in the packed file's footer, which every entry's view parses, so names
/// of kilobytes (InfluxDB takes keys up to 64 KiB) would make a footer of megabytes per
/// measurement. Such a measurement gets a file of its own.
pub const MAX_NAME_BYTES: usize = 4_096;

/// Whether a part can be packed at all: it has rows, fits one file's columns, names no
/// column [`MEASUREMENT_COLUMN`], and its names are short ([`MAX_NAME_BYTES`]).
pub fn packable(measurement: &str, schema: &Schema, rows: usize) -> bool {
    let names: usize = measurement.len()
        + schema
            .fields()
            .iter()
            .map(|f| f.name().len())
            .sum::<usize>();
    rows > 0
        && rows <= MAX_PART_ROWS
        && schema.fields().len() <= MAX_COLUMNS
        && names <= MAX_NAME_BYTES
        && schema.field_with_name(MEASUREMENT_COLUMN).is_err()
}

/// The union schema of `parts`: `time`, the measurement, tags by name, fields by name.
fn union_schema(parts: &[Part<'_>]) -> Result<SchemaRef> {
    let mut tags: BTreeMap<String, DataType> = BTreeMap::new();
    let mut fields: BTreeMap<String, DataType> = BTreeMap::new();
    for p in parts {
        for f in p.rows.schema().fields() {
            if f.name() == TIME_COLUMN {
                continue;
            }
            let to = if is_tag(f.data_type()) {
                &mut tags
            } else {
                &mut fields
            };
            let have = to
                .entry(f.name().clone())
                .or_insert_with(|| f.data_type().clone());
            if have != f.data_type() {
                return Err(StorageError::Config(format!(
                    "packed parts disagree on the type of column {}",
                    f.name()
                )));
            }
        }
    }
    if let Some(n) = tags.keys().find(|n| fields.contains_key(*n)) {
        return Err(StorageError::Config(format!(
            "packed parts have {n} both as a tag and as a field"
        )));
    }
    let mut out = vec![
        Field::new(TIME_COLUMN, time_type(), false),
        Field::new(MEASUREMENT_COLUMN, super::schema::tag_type(), false),
    ];
    out.extend(
        tags.into_iter()
            .chain(fields)
            .map(|(n, t)| Field::new(n, t, true)),
    );
    Ok(Arc::new(Schema::new(out)))
}

/// Writes `parts` (of one db and partition) as one packed file at `rel`, in staging.
pub fn stage_packed(
    store: &Store,
    rel: String,
    parts: &[Part<'_>],
    spec: &PackSpec<'_>,
) -> Result<StagedPacked> {
    let tmp = store.staging_path(&rel)?;
    let result = write_packed(&tmp, &rel, parts, spec);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|metas| StagedPacked {
        tmp,
        path: rel,
        metas,
    })
}

fn write_packed(
    tmp: &std::path::Path,
    rel: &str,
    parts: &[Part<'_>],
    spec: &PackSpec<'_>,
) -> Result<Vec<FileMeta>> {
    let arrow_err = |source| StorageError::Arrow {
        path: tmp.to_path_buf(),
        source,
    };
    let pq_err = |source| StorageError::Parquet {
        path: tmp.to_path_buf(),
        source,
    };
    let union = union_schema(parts)?;
    let max_rows = parts.iter().map(|p| p.rows.num_rows()).max().unwrap_or(1);
    let wal: Vec<WalRange> = parts.iter().flat_map(|p| p.wal.iter().copied()).collect();
    let kv = vec![
        KeyValue::new(meta::REGION.into(), spec.region.to_string()),
        KeyValue::new(meta::DB.into(), spec.db.to_string()),
        KeyValue::new(
            meta::PARTITION_START.into(),
            spec.partition_start.to_string(),
        ),
        KeyValue::new(meta::WAL.into(), json(&wal)?),
        // As in any file, for readers of the hive layout: a column is a tag in every
        // measurement of the file or in none.
        KeyValue::new(
            meta::TAG_COLUMNS.into(),
            json(
                &union
                    .fields()
                    .iter()
                    .filter(|f| f.name() != MEASUREMENT_COLUMN && is_tag(f.data_type()))
                    .map(|f| f.name())
                    .collect::<Vec<_>>(),
            )?,
        ),
    ];
    // One row group per part: a group is never cut (no part holds more than `max_rows`)
    // and each part's group is closed before the next.
    let props = writer_properties(&union, max_rows, kv, spec.zstd_level, spec.page_rows, &[]);
    let props = finish_properties(props, spec.column_index, &[], &[]);
    let schema = match spec.time_unit {
        FileTimeUnit::Nanosecond => union.clone(),
        unit => batch_in_unit(&RecordBatch::new_empty(union.clone()), unit)
            .map_err(arrow_err)?
            .schema(),
    };
    let file = super::store::create_file(tmp).map_err(io_err(tmp))?;
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    let mut writer = ArrowWriter::try_new_with_options(file, schema, options).map_err(pq_err)?;
    // A part at a time: its rows in the union schema exist only while it is written.
    let mut footers = Vec::with_capacity(parts.len());
    for p in parts {
        let (b, footer) = part_batch(p, spec.db, &union).map_err(arrow_err)?;
        let b = match spec.time_unit {
            FileTimeUnit::Nanosecond => b,
            unit => batch_in_unit(&b, unit).map_err(arrow_err)?,
        };
        writer.write(&b).map_err(pq_err)?;
        writer.flush().map_err(pq_err)?;
        footers.push(footer);
    }
    writer.append_key_value_metadata(KeyValue::new(PACKED_KEY.into(), json(&footers)?));
    let written = writer.finish().map_err(pq_err)?;
    let file_bytes = std::fs::metadata(tmp).map_err(io_err(tmp))?.len();
    if written.num_row_groups() != parts.len() {
        return Err(pq_err(ParquetError::General(format!(
            "{} row groups written for {} measurements",
            written.num_row_groups(),
            parts.len()
        ))));
    }
    parts
        .iter()
        .zip(footers)
        .enumerate()
        .map(|(i, (p, f))| {
            let columns = columns_of(&p.rows.schema())
                .map_err(|e| arrow_err(arrow::error::ArrowError::SchemaError(e)))?;
            Ok(FileMeta {
                seq: p.seq,
                path: rel.to_string(),
                db: f.db,
                measurement: f.measurement,
                partition_start: spec.partition_start,
                min_time: f.min_time,
                max_time: f.max_time,
                rows: f.rows,
                bytes: u64::try_from(written.row_group(i).compressed_size()).unwrap_or(0),
                columns,
                wal: f.wal,
                packed: Some(Packed {
                    row_group: i as u32,
                    file_bytes,
                    row_groups: parts.len() as u32,
                }),
            })
        })
        .collect()
}

/// A footer value as JSON text.
fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| StorageError::Config(format!("encoding footer metadata: {e}")))
}

/// One part's rows in the union schema, and what the footer says of it.
fn part_batch(
    p: &Part<'_>,
    db: &str,
    union: &SchemaRef,
) -> std::result::Result<(RecordBatch, PartFooter), arrow::error::ArrowError> {
    let own = p.rows.schema();
    let n = p.rows.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(union.fields().len());
    let mut names = Vec::new();
    let mut tags = Vec::new();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for f in union.fields() {
        if f.name() == MEASUREMENT_COLUMN {
            let keys = Int32Array::from(vec![0; n]);
            let values = Arc::new(StringArray::from(vec![p.measurement]));
            columns.push(Arc::new(DictionaryArray::<Int32Type>::try_new(
                keys, values,
            )?));
            continue;
        }
        match own.index_of(f.name()) {
            Ok(i) => {
                let c = p.rows.column_at(i)?;
                if f.name() == TIME_COLUMN {
                    let t = c
                        .as_any()
                        .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                        .ok_or_else(|| {
                            arrow::error::ArrowError::SchemaError(
                                "time is not Timestamp(ns)".into(),
                            )
                        })?;
                    for v in t.values().iter() {
                        min = min.min(*v);
                        max = max.max(*v);
                    }
                } else {
                    names.push(f.name().clone());
                    if is_tag(f.data_type()) {
                        tags.push(f.name().clone());
                    }
                }
                columns.push(c);
            }
            Err(_) => columns.push(new_null_array(f.data_type(), n)),
        }
    }
    let batch = RecordBatch::try_new(union.clone(), columns)?;
    Ok((
        batch,
        PartFooter {
            db: db.to_string(),
            measurement: p.measurement.to_string(),
            seq: p.seq,
            columns: names,
            tags,
            min_time: min,
            max_time: max,
            rows: n as u64,
            wal: p.wal.clone(),
            replaces: Some(p.replaces.clone()),
        },
    ))
}

/// An entry of a packed file to read: the file (its store key and length) and its row group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file: PathBuf,
    pub len: u64,
    pub row_group: usize,
}

/// Bytes of packed files' parsed footers kept ([`full_metadata`]).
const FOOTER_CACHE_BYTES: usize = 64 << 20;

type Footers = std::sync::Mutex<std::collections::VecDeque<(PathBuf, u64, Arc<Full>)>>;

/// A packed file's whole footer, parsed: its metadata and its measurements.
struct Full {
    md: ParquetMetaData,
    parts: Vec<PartFooter>,
    /// Memory held, about: the metadata, and the parts as much again as their JSON text.
    bytes: usize,
}

impl Full {
    /// The view of one entry ([`view`]).
    fn view(&self, row_group: usize) -> parquet::errors::Result<ParquetMetaData> {
        view_of(&self.md, &self.parts, row_group)
    }
}

/// The whole footer (and page index) of a packed file, parsed once for all its entries: a
/// file of a thousand measurements would otherwise be parsed a thousand times (each entry's
/// index, each query's first read). Recently used footers are kept up to
/// [`FOOTER_CACHE_BYTES`]; one that is not is parsed from `reader`.
fn full_metadata<R: parquet::file::reader::ChunkReader>(
    file: &Entry,
    reader: &R,
) -> parquet::errors::Result<Arc<Full>> {
    static CACHE: std::sync::OnceLock<Footers> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let lock = || cache.lock().unwrap_or_else(|p| p.into_inner());
    {
        let mut c = lock();
        if let Some(i) = c
            .iter()
            .position(|(p, l, _)| *p == file.file && *l == file.len)
        {
            let hit = c.remove(i).map(|e| e.2);
            if let Some(md) = hit {
                c.push_back((file.file.clone(), file.len, md.clone()));
                return Ok(md);
            }
        }
    }
    let md = parquet::file::metadata::ParquetMetaDataReader::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional)
        .parse_and_finish(reader)?;
    let parts = parts_of(md.file_metadata())
        .ok_or_else(|| ParquetError::General("not a packed file (no packed footer key)".into()))?
        .map_err(ParquetError::General)?;
    let text = super::schema::footer_value(md.file_metadata(), PACKED_KEY).map_or(0, str::len);
    let bytes = md.memory_size() + text + parts.len() * std::mem::size_of::<PartFooter>();
    let full = Arc::new(Full { md, parts, bytes });
    let mut c = lock();
    c.push_back((file.file.clone(), file.len, full.clone()));
    let mut bytes: usize = c.iter().map(|e| e.2.bytes).sum();
    while bytes > FOOTER_CACHE_BYTES && c.len() > 1 {
        if let Some(old) = c.pop_front() {
            bytes -= old.2.bytes;
        }
    }
    Ok(full)
}

/// The parts a packed file's footer lists (`None`: not a packed file).
pub fn parts_of(md: &FileMetaData) -> Option<std::result::Result<Vec<PartFooter>, String>> {
    let v = super::schema::footer_value(md, PACKED_KEY)?;
    Some(serde_json::from_str(v).map_err(|e| format!("footer key {PACKED_KEY}: {e}")))
}

/// The footer of a packed file's entry as an ordinary file of its measurement would have
/// it: its row group alone, its columns alone (the page index too), and its footer keys.
/// Its column chunks keep their offsets in the packed file. The whole footer comes from
/// [`full_metadata`].
pub fn view<R: parquet::file::reader::ChunkReader>(
    entry: &Entry,
    reader: &R,
) -> parquet::errors::Result<ParquetMetaData> {
    full_metadata(entry, reader)?.view(entry.row_group)
}

/// [`view`] of row group `row_group` of the file `md`, whose parts are `parts`.
fn view_of(
    md: &ParquetMetaData,
    parts: &[PartFooter],
    row_group: usize,
) -> parquet::errors::Result<ParquetMetaData> {
    let err = |why: String| ParquetError::General(why);
    let file = md.file_metadata();
    if parts.len() != md.num_row_groups() {
        return Err(err(format!(
            "the packed footer lists {} measurements for {} row groups",
            parts.len(),
            md.num_row_groups()
        )));
    }
    let part = parts
        .get(row_group)
        .ok_or_else(|| err(format!("no row group {row_group} in the packed file")))?;
    // A packed file's schema is flat: leaf `i` is field `i` of the root.
    let descr = file.schema_descr();
    let root = descr.root_schema();
    if root.get_fields().len() != descr.num_columns() {
        return Err(err("the packed file's schema is not flat".into()));
    }
    let keep: Vec<usize> = (0..descr.num_columns())
        .filter(|i| {
            let column = descr.column(*i);
            let name = column.name();
            name == TIME_COLUMN || part.columns.iter().any(|c| c == name)
        })
        .collect();
    if keep.len() != part.columns.len() + 1 {
        return Err(err(format!(
            "row group {row_group} of the packed file lacks some of its columns"
        )));
    }
    let fields: Vec<Arc<Type>> = keep.iter().map(|i| root.get_fields()[*i].clone()).collect();
    let schema = Arc::new(SchemaDescriptor::new(Arc::new(
        Type::group_type_builder(root.name())
            .with_fields(fields)
            .build()?,
    )));
    let rg = md.row_group(row_group);
    let chunks: Vec<_> = keep.iter().map(|i| rg.column(*i).clone()).collect();
    let total: i64 = chunks.iter().map(|c| c.uncompressed_size()).sum();
    let group = RowGroupMetaData::builder(schema.clone())
        .set_num_rows(rg.num_rows())
        .set_total_byte_size(total)
        .set_column_metadata(chunks)
        .set_ordinal(0)
        .build()?;
    let mut kv = vec![
        (meta::DB, part.db.clone()),
        (meta::MEASUREMENT, part.measurement.clone()),
        (
            meta::TAG_COLUMNS,
            serde_json::to_string(&part.tags).map_err(|e| err(e.to_string()))?,
        ),
        (meta::MIN_TIME, part.min_time.to_string()),
        (meta::MAX_TIME, part.max_time.to_string()),
        (meta::ROW_COUNT, part.rows.to_string()),
        (
            meta::WAL,
            serde_json::to_string(&part.wal).map_err(|e| err(e.to_string()))?,
        ),
    ];
    for k in [meta::REGION, meta::PARTITION_START] {
        if let Some(v) = super::schema::footer_value(file, k) {
            kv.push((k, v.to_string()));
        }
    }
    let kv = kv
        .into_iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v))
        .collect();
    let orders = file
        .column_orders()
        .map(|o| keep.iter().filter_map(|i| o.get(*i).copied()).collect());
    let file_md = FileMetaData::new(
        file.version(),
        rg.num_rows(),
        file.created_by().map(str::to_string),
        Some(kv),
        schema,
        orders,
    );
    Ok(ParquetMetaDataBuilder::new(file_md)
        .set_row_groups(vec![group])
        .set_column_index(md.column_index().and_then(|c| pick(c, row_group, &keep)))
        .set_offset_index(md.offset_index().and_then(|o| pick(o, row_group, &keep)))
        .build())
}

/// Of a page index (per row group, per column), row group `row_group`'s columns `keep`.
fn pick<T: Clone>(per_group: &[Vec<T>], row_group: usize, keep: &[usize]) -> Option<Vec<Vec<T>>> {
    let cols = per_group.get(row_group)?;
    Some(vec![
        keep.iter()
            .map(|i| cols.get(*i).cloned())
            .collect::<Option<Vec<_>>>()?,
    ])
}

/// A manifest entry, and the entries whose rows it replaced (`None`: not recorded).
pub type Replacing = (FileMeta, Option<Vec<String>>);

/// The manifest entries of a packed file, from its footer (a lost manifest's rebuild),
/// each with the entries it replaced ([`PartFooter::replaces`]); `file_bytes` is the
/// file's size.
pub fn entries(
    md: &ParquetMetaData,
    path: &str,
    file_bytes: u64,
) -> std::result::Result<Vec<Replacing>, String> {
    let file = md.file_metadata();
    let parts = parts_of(file).ok_or("not a packed file")??;
    let partition_start = super::schema::footer_value(file, meta::PARTITION_START)
        .ok_or_else(|| format!("no {} in the footer", meta::PARTITION_START))?
        .parse::<i64>()
        .map_err(|e| format!("footer key {}: {e}", meta::PARTITION_START))?;
    let mut out = Vec::with_capacity(parts.len());
    let row_groups = parts.len() as u32;
    for (i, p) in parts.iter().cloned().enumerate() {
        let v = view_of(md, &parts, i).map_err(|e| e.to_string())?;
        let schema = super::schema::file_schema(v.file_metadata())?;
        let columns: Vec<(String, ColumnKind)> = columns_of(&schema)?;
        if p.min_time > p.max_time {
            return Err(format!(
                "row group {i}: time range {} > {}",
                p.min_time, p.max_time
            ));
        }
        let replaces = p.replaces.clone();
        out.push((
            FileMeta {
                seq: p.seq,
                path: path.to_string(),
                db: p.db,
                measurement: p.measurement,
                partition_start,
                min_time: p.min_time,
                max_time: p.max_time,
                rows: p.rows,
                bytes: u64::try_from(md.row_group(i).compressed_size()).unwrap_or(0),
                columns,
                wal: p.wal,
                packed: Some(Packed {
                    row_group: i as u32,
                    file_bytes,
                    row_groups,
                }),
            },
            replaces,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Float64Array, Int64Array, TimestampNanosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn tags(values: &[Option<&str>]) -> ArrayRef {
        let d: DictionaryArray<Int32Type> = values.iter().copied().collect();
        Arc::new(d)
    }

    fn time(ts: &[i64]) -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(ts.to_vec()).with_timezone("UTC"))
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), *n != TIME_COLUMN))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    /// Three measurements of different columns in one file: each entry reads back as its
    /// own rows and columns (a view), and a reader of the whole file sees every row with
    /// its measurement and nulls where a measurement lacks a column.
    #[test]
    fn entries_read_back_as_their_own_files() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::local(root.path());
        let cpu = batch(vec![
            (TIME_COLUMN, time(&[1, 2, 1])),
            ("host", tags(&[Some("a"), Some("a"), Some("b")])),
            ("usage", Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5]))),
        ]);
        let mem = batch(vec![
            (TIME_COLUMN, time(&[5])),
            ("dc", tags(&[Some("x")])),
            ("host", tags(&[Some("a")])),
            ("used", Arc::new(Int64Array::from(vec![7]))),
        ]);
        let bare = batch(vec![
            (TIME_COLUMN, time(&[-3, 9])),
            ("usage", Arc::new(Float64Array::from(vec![Some(1.0), None]))),
        ]);
        let wal = |s| {
            vec![WalRange {
                shard: 0,
                min_seq: s,
                max_seq: s,
            }]
        };
        let parts = [
            Part {
                rows: &cpu,
                measurement: "cpu",
                seq: 4,
                wal: wal(1),
                replaces: vec![],
            },
            Part {
                rows: &mem,
                measurement: "mem",
                seq: 5,
                wal: wal(2),
                replaces: vec![],
            },
            Part {
                rows: &bare,
                measurement: "bare",
                seq: 6,
                wal: wal(3),
                replaces: vec![],
            },
        ];
        let spec = PackSpec {
            region: "eu",
            db: "db",
            partition_start: 0,
            zstd_level: 1,
            page_rows: 20_000,
            time_unit: FileTimeUnit::Nanosecond,
            column_index: false,
        };
        let rel = "db/~packed/part_day=1970-01-01/00000000000000000004.parquet".to_string();
        let staged = stage_packed(&store, rel.clone(), &parts, &spec).unwrap();
        store
            .publish(&[(staged.tmp.clone(), staged.path.clone())])
            .unwrap();
        assert_eq!(staged.metas.len(), 3);
        for (m, (want, name)) in
            staged
                .metas
                .iter()
                .zip([(&cpu, "cpu"), (&mem, "mem"), (&bare, "bare")])
        {
            assert_eq!(m.measurement, name);
            assert_eq!(m.path, rel);
            assert_eq!(m.rows, want.num_rows() as u64);
            assert_eq!(m.columns, columns_of(&want.schema()).unwrap());
            let file = store.file(m);
            let (schema, got) = super::super::parquet::read_file(&file).unwrap();
            let got = arrow::compute::concat_batches(&schema, &got).unwrap();
            assert_eq!(got.schema().fields().len(), want.schema().fields().len());
            for f in want.schema().fields() {
                let (a, b) = (
                    got.column_by_name(f.name()).unwrap(),
                    want.column_by_name(f.name()).unwrap(),
                );
                let utf8 = |c: &ArrayRef| match is_tag(c.data_type()) {
                    true => arrow::compute::cast(c, &DataType::Utf8).unwrap(),
                    false => c.clone(),
                };
                assert_eq!(utf8(a).as_ref(), utf8(b).as_ref(), "{name}.{}", f.name());
            }
            // The view's footer is an ordinary file's.
            let footer = super::super::parquet::read_footer(&file).unwrap();
            let md = footer.file_metadata();
            let key = |k| super::super::schema::footer_value(md, k).map(str::to_string);
            assert_eq!(key(meta::MEASUREMENT).as_deref(), Some(name));
            assert_eq!(key(meta::ROW_COUNT), Some(m.rows.to_string()));
            assert_eq!(key(meta::MIN_TIME), Some(m.min_time.to_string()));
            assert_eq!(key(meta::REGION).as_deref(), Some("eu"));
            assert_eq!(footer.num_row_groups(), 1);
        }
        let (a, b) = (&staged.metas[0], &staged.metas[2]);
        assert_eq!(
            (a.min_time, a.max_time, b.min_time, b.max_time),
            (1, 2, -3, 9)
        );
        // Tag sets of one entry only.
        let mut sets = Vec::new();
        super::super::parquet::for_each_tag_set(
            &store.file(&staged.metas[1]),
            &["dc", "host"],
            |s| sets.push(format!("{s:?}")),
        )
        .unwrap();
        assert_eq!(sets, vec![r#"[("dc", "x"), ("host", "a")]"#]);

        // A reader that knows nothing of Meridian: every row, with its measurement.
        let bytes = std::fs::read(root.path().join(&rel)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let all: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let all = arrow::compute::concat_batches(&all[0].schema(), &all).unwrap();
        assert_eq!(all.num_rows(), 6);
        let names = arrow::compute::cast(
            all.column_by_name(MEASUREMENT_COLUMN).unwrap(),
            &DataType::Utf8,
        )
        .unwrap();
        let names: Vec<&str> = names.as_string::<i32>().iter().flatten().collect();
        assert_eq!(names, ["cpu", "cpu", "cpu", "mem", "bare", "bare"]);
        let used = all.column_by_name("used").unwrap();
        assert_eq!(used.null_count(), 5);
        let cols: Vec<&str> = all
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            cols,
            [
                TIME_COLUMN,
                MEASUREMENT_COLUMN,
                "dc",
                "host",
                "usage",
                "used"
            ]
        );

        // The footer alone gives back every entry (a lost manifest's rebuild).
        let whole = super::super::parquet::read_footer(&crate::storage::store::FileRef {
            store: store.clone(),
            rel: rel.clone(),
            len: staged.metas[0].file_bytes(),
            row_group: None,
        })
        .unwrap();
        let again: Vec<FileMeta> = entries(&whole, &rel, staged.metas[0].file_bytes())
            .unwrap()
            .into_iter()
            .map(|(m, replaces)| {
                assert_eq!(replaces, Some(vec![]));
                m
            })
            .collect();
        assert_eq!(again, staged.metas);
    }

    /// Empty, large and long-named measurements get files of their own.
    #[test]
    fn only_small_short_named_measurements_are_packed() {
        let s = Schema::new(vec![
            Field::new(TIME_COLUMN, time_type(), false),
            Field::new("v", DataType::Float64, true),
        ]);
        assert!(packable("cpu", &s, 10));
        assert!(!packable("cpu", &s, 0));
        assert!(!packable("cpu", &s, MAX_PART_ROWS + 1));
        assert!(!packable(&"m".repeat(MAX_NAME_BYTES), &s, 10));
        let named = Schema::new(vec![
            Field::new(TIME_COLUMN, time_type(), false),
            Field::new(MEASUREMENT_COLUMN, DataType::Utf8, true),
        ]);
        assert!(!packable("cpu", &named, 10));
    }

    /// Files are cut where types conflict and at the column bound.
    #[test]
    fn bins_keep_one_type_per_column() {
        let s = |cols: &[(&str, DataType)]| -> SchemaRef {
            let mut f = vec![Field::new(TIME_COLUMN, time_type(), false)];
            f.extend(cols.iter().map(|(n, t)| Field::new(*n, t.clone(), true)));
            Arc::new(Schema::new(f))
        };
        let schemas = vec![
            s(&[("v", DataType::Float64)]),
            s(&[("v", DataType::Int64)]),
            s(&[("v", DataType::Float64), ("w", DataType::Utf8)]),
            s(&[("v", DataType::Int64)]),
        ];
        assert_eq!(bins(&schemas), vec![vec![0, 2], vec![1, 3]]);
        let wide: Vec<SchemaRef> = (0..3)
            .map(|i| {
                let cols: Vec<(String, DataType)> = (0..MAX_COLUMNS / 2)
                    .map(|c| (format!("m{i}c{c}"), DataType::Float64))
                    .collect();
                let cols: Vec<(&str, DataType)> =
                    cols.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
                s(&cols)
            })
            .collect();
        assert_eq!(bins(&wide), vec![vec![0, 1], vec![2]]);
    }
}
