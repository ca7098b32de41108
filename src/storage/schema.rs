//! The file schema: the Arrow types of `time` and tag columns, which columns are tags,
//! the manifest's column list of a file, and the keys of each file's footer metadata.
//!
//! Every Meridian file: `time` (Timestamp(ns, UTC), not null), one Dictionary(Int32, Utf8)
//! column per tag key, one typed column per field. Flush, compaction and queries all
//! describe files through this module.

use arrow::datatypes::{DataType, Schema, TimeUnit};

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
    pub const TAG_COLUMNS: &str = "meridian.tag_columns";
    /// The partition's start (ns): the earliest partition's is not derivable from its times.
    pub const PARTITION_START: &str = "meridian.partition_start";
    /// The WAL records the file holds, as the manifest's JSON list of `WalRange`s, so that a
    /// manifest rebuilt from the footers keeps WAL replay exact.
    pub const WAL: &str = "meridian.wal";
    /// Marks a zero-row file that only carries WAL ranges (of a partition dropped by
    /// retention, or of files a delete emptied), so WAL replay keeps skipping them.
    pub const TOMBSTONE: &str = "meridian.tombstone";
}
