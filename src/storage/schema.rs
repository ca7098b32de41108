//! The file schema: the Arrow types of `time` and tag columns, which columns are tags,
//! the manifest's column list of a file, and the keys of each file's footer metadata.
//!
//! Every Meridian file: `time` (Timestamp(ns, UTC), not null), one Dictionary(Int32, Utf8)
//! column per tag key, one typed column per field (a float field with few decimals may be
//! stored as `DECIMAL(18, s)`, see [`super::scaled`]). Flush, compaction and queries all
//! describe files through this module.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;

use crate::model::{ColumnKind, FieldType, TIME_COLUMN};

/// The Arrow type of `time` in blocks, files and query results.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The Arrow type of a tag column.
pub fn tag_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Whether a column is a tag column.
pub fn is_tag(dt: &DataType) -> bool {
    matches!(dt, DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
}

/// The manifest's column list of a file schema: tags then fields, in schema order (`time`
/// left out); an error names a column whose type is not a Meridian field type.
pub fn columns_of(schema: &Schema) -> Result<Vec<(String, ColumnKind)>, String> {
    let mut tags = Vec::new();
    let mut fields = Vec::new();
    for f in schema.fields() {
        if f.name() == TIME_COLUMN {
            continue;
        }
        if is_tag(f.data_type()) {
            tags.push((f.name().clone(), ColumnKind::Tag));
        } else {
            let t = FieldType::from_arrow(f.data_type()).ok_or_else(|| {
                format!(
                    "column {} has type {}, not a Meridian field type",
                    f.name(),
                    f.data_type()
                )
            })?;
            fields.push((f.name().clone(), ColumnKind::Field(t)));
        }
    }
    tags.extend(fields);
    Ok(tags)
}

/// `schema` with the type of each field `to` gives a new type for (name, nullability and
/// metadata kept), or `None` when `to` changes none.
pub fn retype(schema: &Schema, to: impl Fn(&Field) -> Option<DataType>) -> Option<Schema> {
    let mut changed = false;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match to(f) {
            Some(dt) => {
                changed = true;
                f.as_ref().clone().with_data_type(dt)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    changed.then(|| Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The value of `key` in a file's footer key-value metadata.
pub fn footer_value<'m>(
    md: &'m parquet::file::metadata::FileMetaData,
    key: &str,
) -> Option<&'m str> {
    md.key_value_metadata()?
        .iter()
        .find(|k| k.key == key)
        .and_then(|k| k.value.as_deref())
}

/// The key of the Arrow schema that the parquet crate embeds in a footer (base64 IPC).
pub const ARROW_SCHEMA_KEY: &str = "ARROW:schema";

/// The Arrow schema Meridian reads a file in, from its footer. Files written before the
/// footer lost its embedded Arrow schema (2.3 KB, a third of a small file's footer) carry
/// it as `ARROW:schema`; newer files name their tag columns in `meridian.tag_columns` (a
/// JSON list), which are read as dictionaries; every other column's type follows from its
/// Parquet type (`time`: a UTC timestamp; scaled floats: decimals).
pub fn file_schema(md: &parquet::file::metadata::FileMetaData) -> Result<Schema, String> {
    let schema =
        parquet::arrow::parquet_to_arrow_schema(md.schema_descr(), md.key_value_metadata())
            .map_err(|e| format!("schema: {e}"))?;
    if footer_value(md, ARROW_SCHEMA_KEY).is_some() {
        return Ok(schema);
    }
    let tags: Vec<String> = match footer_value(md, meta::TAG_COLUMNS) {
        Some(v) => {
            serde_json::from_str(v).map_err(|e| format!("footer key {}: {e}", meta::TAG_COLUMNS))?
        }
        None => Vec::new(),
    };
    for f in schema.fields() {
        if tags.contains(f.name()) && *f.data_type() != DataType::Utf8 {
            return Err(format!(
                "footer key {} lists {:?}, whose column is {}, not strings",
                meta::TAG_COLUMNS,
                f.name(),
                f.data_type()
            ));
        }
    }
    Ok(retype(&schema, |f| tags.contains(f.name()).then(tag_type)).unwrap_or(schema))
}

/// Positions of the tag columns of a schema.
pub fn tag_indices(schema: &Schema) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| is_tag(f.data_type()))
        .map(|(i, _)| i)
        .collect()
}

/// Key-value metadata keys written into every file's footer.
pub mod meta {
    pub const REGION: &str = "meridian.region";
    pub const DB: &str = "meridian.db";
    pub const MEASUREMENT: &str = "meridian.measurement";
    pub const MIN_TIME: &str = "meridian.min_time";
    pub const MAX_TIME: &str = "meridian.max_time";
    pub const ROW_COUNT: &str = "meridian.row_count";
    /// The tag columns' names, a JSON list (comma-separated in files that also hold their
    /// Arrow schema, where it is not read).
    pub const TAG_COLUMNS: &str = "meridian.tag_columns";
    /// The partition's start (ns): the earliest partition's is not derivable from its times.
    pub const PARTITION_START: &str = "meridian.partition_start";
    /// The WAL records the file holds, as the manifest's JSON list of `WalRange`s, so that a
    /// manifest rebuilt from the footers keeps WAL replay exact.
    pub const WAL: &str = "meridian.wal";
    /// Marks a zero-row file that only carries WAL ranges (of a partition dropped by
    /// retention, or of files a delete emptied), so WAL replay keeps skipping them.
    pub const TOMBSTONE: &str = "meridian.tombstone";
    /// The manifest entries (ids: paths, `<path>#<row group>` for a packed file's) whose
    /// rows the file replaced when it was written, a JSON list: a delete's rewrite its
    /// source, compaction's outputs their inputs, a tombstone the files it stands for; empty
    /// for a flush's. A manifest rebuilt from the footers leaves out every entry another
    /// file replaced.
    pub const REPLACES: &str = "meridian.replaces";
}

/// A column as queries use it: files written with `[storage] time_unit = "us"` hold
/// microseconds, which every reader turns into the nanoseconds the engine works in; float
/// fields stored as scaled integers (`DECIMAL(18, s)`) come back as the `Float64` values
/// written.
pub fn time_in_ns(array: ArrayRef) -> Result<ArrayRef, ArrowError> {
    match read_type(array.data_type()) {
        None => Ok(array),
        Some(DataType::Float64) => super::scaled::decimal_to_f64(&array).unwrap_or(Ok(array)),
        Some(to) => arrow::compute::cast(&array, &to),
    }
}

/// The type a column read from a file has for queries ([`time_in_ns`]), `None` when it is
/// the file's own (most columns: no allocation on the read path to say so).
fn read_type(dt: &DataType) -> Option<DataType> {
    match dt {
        DataType::Timestamp(TimeUnit::Nanosecond, Some(tz)) if tz.as_ref() == "UTC" => None,
        DataType::Timestamp(_, _) => Some(time_type()),
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) => {
            Some(DataType::Float64)
        }
        _ => None,
    }
}

/// A batch read from a file as queries use it: its `time` column (if any) in nanoseconds,
/// scaled float columns as `Float64` ([`time_in_ns`] for each column).
pub fn batch_in_ns(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    if schema
        .fields()
        .iter()
        .all(|f| read_type(f.data_type()).is_none())
    {
        return Ok(batch);
    }
    let mut columns = Vec::with_capacity(batch.num_columns());
    for c in batch.columns() {
        columns.push(time_in_ns(c.clone())?);
    }
    let read = retype(&schema, |f| read_type(f.data_type())).unwrap_or_else(|| (*schema).clone());
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(read), columns, &options)
}

/// A batch as a file of `unit` stores it.
pub fn batch_in_unit(
    batch: &RecordBatch,
    unit: crate::config::FileTimeUnit,
) -> Result<RecordBatch, ArrowError> {
    match unit {
        crate::config::FileTimeUnit::Nanosecond => Ok(batch.clone()),
        crate::config::FileTimeUnit::Microsecond => with_time_type(
            batch,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
    }
}

/// `batch` with its `time` column (if any) cast to `to` (a copy only when it differs).
fn with_time_type(batch: &RecordBatch, to: &DataType) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let Ok(i) = schema.index_of(TIME_COLUMN) else {
        return Ok(batch.clone());
    };
    if schema.field(i).data_type() == to {
        return Ok(batch.clone());
    }
    let mut columns = batch.columns().to_vec();
    columns[i] = arrow::compute::cast(&columns[i], to)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[i] = Field::new(TIME_COLUMN, to.clone(), schema.field(i).is_nullable());
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, TimestampNanosecondArray};

    #[test]
    fn microsecond_files_read_back_as_nanoseconds() {
        let time =
            TimestampNanosecondArray::from(vec![-2_000, 0, 1_234_567_000]).with_timezone("UTC");
        let batch = RecordBatch::try_from_iter(vec![
            (TIME_COLUMN, Arc::new(time) as ArrayRef),
            ("v", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        ])
        .unwrap();
        let stored = batch_in_unit(&batch, crate::config::FileTimeUnit::Microsecond).unwrap();
        assert_eq!(
            stored.schema().field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let back = batch_in_ns(stored).unwrap();
        assert_eq!(back, batch);
        assert_eq!(back.column(0).data_type(), &time_type());
        // Nanoseconds stay as they are.
        assert_eq!(batch_in_ns(batch.clone()).unwrap(), batch);
        assert_eq!(
            batch_in_unit(&batch, crate::config::FileTimeUnit::Nanosecond).unwrap(),
            batch
        );
        assert!(back.column(0).len() == 3);
    }
}

#[cfg(test)]
mod footer_schema_tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::Int32Type;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_writer::ArrowWriterOptions;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// A file written with `tag_columns` in the footer, with or without the Arrow schema.
    fn file(tag_columns: &str, embed: bool) -> bytes::Bytes {
        let host: DictionaryArray<Int32Type> = vec![Some("a"), None].into_iter().collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new(TIME_COLUMN, time_type(), false),
            Field::new("host", tag_type(), true),
            Field::new("v", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![1, 2]).with_timezone("UTC")),
                Arc::new(host),
                Arc::new(Int64Array::from(vec![Some(1), None])),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                meta::TAG_COLUMNS.into(),
                tag_columns.to_string(),
            )]))
            .build();
        let options = ArrowWriterOptions::new()
            .with_properties(props)
            .with_skip_arrow_metadata(!embed);
        let mut w = ArrowWriter::try_new_with_options(Vec::new(), schema, options).unwrap();
        w.write(&batch).unwrap();
        w.into_inner().unwrap().into()
    }

    #[test]
    fn files_with_and_without_the_arrow_schema_read_alike() {
        // Written before the footer lost its Arrow schema (tag names comma-separated), and
        // since (a JSON list, no Arrow schema): the same schema either way.
        let old = SerializedFileReader::new(file("host", true)).unwrap();
        let new = SerializedFileReader::new(file("[\"host\"]", false)).unwrap();
        let a = file_schema(old.metadata().file_metadata()).unwrap();
        let b = file_schema(new.metadata().file_metadata()).unwrap();
        let types = |s: &Schema| -> Vec<(String, DataType, bool)> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
                .collect()
        };
        assert_eq!(types(&a), types(&b));
        assert_eq!(
            columns_of(&b).unwrap(),
            vec![
                ("host".to_string(), ColumnKind::Tag),
                ("v".to_string(), ColumnKind::Field(FieldType::Integer))
            ]
        );
        // A footer whose tag list is not JSON (and no Arrow schema) is an error, not tags
        // read as fields.
        let bad = SerializedFileReader::new(file("host", false)).unwrap();
        assert!(file_schema(bad.metadata().file_metadata()).is_err());
        // A listed tag whose column is not strings is an error too.
        let bad = SerializedFileReader::new(file("[\"v\"]", false)).unwrap();
        assert!(file_schema(bad.metadata().file_metadata()).is_err());
    }
}
