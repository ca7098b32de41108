//! `--verify`: reads every live file and checks it against its manifest entry and the
//! documented layout. Changes nothing.
//!
//! Per region: seqs and paths are unique. Per file: the path is
//! `<db>/<encoded measurement>/<partition dirs>/<seq:020>.parquet` of its partition; the
//! partition start is aligned; the file exists with the manifest's byte size; its columns
//! are `time` (Timestamp ns) plus exactly the manifest's columns with their kinds and types;
//! the row count matches the manifest and the footer; every time lies in the partition and
//! the min/max match the manifest and the footer; rows are strictly sorted by tag set (tag
//! columns by name, missing first) then time, i.e. no identity occurs twice in a file.
//! Leftovers (unlisted Parquet files, temporary files) are listed but are not errors: the
//! next run or server start removes them.

use std::collections::HashSet;

use std::path::PathBuf;

use arrow::array::{Array, ArrayRef, TimestampNanosecondArray};
use arrow::datatypes::DataType;
use arrow::row::OwnedRow;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::catalog::FileMeta;
use crate::model::{ColumnKind, FieldType, PartitionStart, TIME_COLUMN};
use crate::storage::merge::TagKeyer;
use crate::storage::paths::{data_file_rel, parse_data_file};
use crate::storage::schema::is_tag;
use crate::storage::schema::meta;
use crate::storage::store::Store;

use super::Result;
use super::datadir::{DataDir, sweep_leftovers};
use super::plan::Filters;

/// What `--verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Every mismatch, one line each, naming the file.
    pub problems: Vec<String>,
    pub leftovers: Vec<PathBuf>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn admits(filters: &Filters, f: &FileMeta) -> bool {
    (filters.dbs.is_empty() || filters.dbs.contains(&f.db))
        && (filters.measurements.is_empty() || filters.measurements.contains(&f.measurement))
        && (filters.partitions.is_empty() || filters.partitions.contains(&f.partition_start))
}

fn type_matches(kind: &ColumnKind, dt: &DataType) -> bool {
    match kind {
        ColumnKind::Tag => is_tag(dt),
        ColumnKind::Field(t) => !is_tag(dt) && FieldType::from_arrow(dt) == Some(*t),
    }
}

/// Checks one file; returns its problems (empty = fine).
/// `last` keeps the packed file read last, for its next entries.
fn verify_file(
    store: &Store,
    f: &FileMeta,
    pd: i64,
    last: &mut Option<(String, bytes::Bytes)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |what: String| problems.push(format!("{}: {what}", f.id()));
    if f.partition_start.rem_euclid(pd) != 0 {
        bad(format!(
            "partition start {} is not aligned to the partition duration {pd} ns",
            f.partition_start
        ));
    }
    let want = data_file_rel(
        &f.db,
        &f.measurement,
        PartitionStart(f.partition_start),
        pd,
        f.seq,
    )
    .to_string_lossy()
    .replace('\\', "/");
    let want_dir = want.rsplit_once('/').map_or("", |(d, _)| d);
    // A packed file's entry: in its measurement's directory once unpacked, in a file named
    // by a seq of its own.
    let own = crate::storage::paths::unpacked_rel(&f.path, &f.db, &f.measurement);
    let dir = own.rsplit_once('/').map_or("", |(d, _)| d);
    let named_seq = parse_data_file(std::path::Path::new(&f.path)).map(|n| n.seq());
    let seq_ok = match f.packed {
        None => named_seq == Some(f.seq),
        Some(_) => named_seq.is_some() && own != f.path,
    };
    if dir != want_dir || !seq_ok {
        bad(format!(
            "path should be {want_dir}/<seq {}>[~...].parquet",
            f.seq
        ));
    }
    let cached = last
        .as_ref()
        .filter(|(p, _)| f.packed.is_some() && *p == f.path)
        .map(|(_, b)| b.clone());
    let read = match cached {
        Some(b) => Ok(Some(b)),
        None => store.read(&f.path),
    };
    let bytes = match read {
        Ok(Some(b)) => {
            if f.packed.is_some() {
                *last = Some((f.path.clone(), b.clone()));
            }
            b
        }
        Ok(None) => {
            bad("listed in the manifest but not stored".into());
            return problems;
        }
        Err(e) => {
            bad(format!("cannot read the file: {e}"));
            return problems;
        }
    };
    if bytes.len() as u64 != f.file_bytes() {
        bad(format!(
            "{} bytes stored, {} in the manifest",
            bytes.len(),
            f.file_bytes()
        ));
    }
    let entry = store.file(f).packed_entry();
    if let Err(e) = check_contents(bytes, f, entry.as_ref(), pd, &mut bad) {
        bad(e);
    }
    problems
}

fn check_contents(
    file: bytes::Bytes,
    f: &FileMeta,
    entry: Option<&crate::storage::packed::Entry>,
    pd: i64,
    bad: &mut dyn FnMut(String),
) -> std::result::Result<(), String> {
    let meta = crate::storage::parquet::reader_metadata(&file, Default::default(), entry)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
    let kv: Vec<(String, Option<String>)> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let footer = |key: &str| -> Option<i64> {
        kv.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| v.parse().ok())
    };
    let schema = builder.schema().clone();

    // Columns: time + exactly the manifest's.
    match schema.field_with_name(TIME_COLUMN) {
        Ok(t)
            if matches!(
                t.data_type(),
                DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Nanosecond
                        | arrow::datatypes::TimeUnit::Microsecond,
                    _
                )
            ) => {}
        Ok(t) => bad(format!("time column has type {}", t.data_type())),
        Err(_) => return Err("no time column".into()),
    }
    let listed: HashSet<&str> = f.columns.iter().map(|(n, _)| n.as_str()).collect();
    for (name, kind) in &f.columns {
        match schema.field_with_name(name) {
            Ok(field) if type_matches(kind, field.data_type()) => {}
            Ok(field) => bad(format!(
                "column {name} is {} in the file but {kind:?} in the manifest",
                field.data_type()
            )),
            Err(_) => bad(format!("column {name} of the manifest is not in the file")),
        }
    }
    for field in schema.fields() {
        if field.name() != TIME_COLUMN && !listed.contains(field.name().as_str()) {
            bad(format!("column {} is not in the manifest", field.name()));
        }
    }

    let mut tags: Vec<(String, DataType)> = schema
        .fields()
        .iter()
        .filter(|x| is_tag(x.data_type()))
        .map(|x| (x.name().clone(), x.data_type().clone()))
        .collect();
    tags.sort();
    let keyer = TagKeyer::new(tags.iter().map(|(_, dt)| dt.clone())).map_err(|e| e.to_string())?;
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format!("cannot read: {e}"))?;
    let (mut rows, mut min, mut max) = (0u64, i64::MAX, i64::MIN);
    let mut outside = 0u64;
    let mut last: Option<(Option<OwnedRow>, i64)> = None;
    let mut unsorted = 0u64;
    let end = f.partition_start.saturating_add(pd);
    for batch in reader {
        let batch = batch
            .and_then(crate::storage::schema::batch_in_ns)
            .map_err(|e| format!("cannot read a row group: {e}"))?;
        let time = batch
            .column_by_name(TIME_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
            .ok_or("time column is not Timestamp(ns)")?;
        if time.null_count() > 0 {
            bad("null times".into());
        }
        let cols: Vec<ArrayRef> = tags
            .iter()
            .filter_map(|(n, _)| batch.column_by_name(n).cloned())
            .collect();
        if cols.len() != tags.len() {
            bad("a row group lacks a tag column of the file's schema".into());
            break;
        }
        let keys = keyer.keys(&cols).map_err(|e| e.to_string())?;
        for i in 0..batch.num_rows() {
            let t = time.value(i);
            min = min.min(t);
            max = max.max(t);
            if t < f.partition_start || t >= end {
                outside += 1;
            }
            let key = keys.owned(i);
            if let Some((lk, lt)) = &last
                && (lk.as_ref().map(|k| k.row()), *lt) >= (key.as_ref().map(|k| k.row()), t)
            {
                unsorted += 1;
            }
            last = Some((key, t));
        }
        rows += batch.num_rows() as u64;
    }
    if rows != f.rows {
        bad(format!(
            "{rows} rows in the file, {} in the manifest",
            f.rows
        ));
    }
    if let Some(n) = footer(meta::ROW_COUNT)
        && n != rows as i64
    {
        bad(format!("footer says {n} rows, the file has {rows}"));
    }
    if rows > 0 {
        if (min, max) != (f.min_time, f.max_time) {
            bad(format!(
                "times span [{min}, {max}], the manifest says [{}, {}]",
                f.min_time, f.max_time
            ));
        }
        if let (Some(a), Some(b)) = (footer(meta::MIN_TIME), footer(meta::MAX_TIME))
            && (a, b) != (min, max)
        {
            bad(format!(
                "footer says times [{a}, {b}], the file has [{min}, {max}]"
            ));
        }
    }
    if outside > 0 {
        bad(format!(
            "{outside} rows outside the partition [{}, {end})",
            f.partition_start
        ));
    }
    if unsorted > 0 {
        bad(format!(
            "{unsorted} rows not strictly after the previous one in (tag set, time) order"
        ));
    }
    Ok(())
}

impl DataDir {
    /// Verifies every live file of the open regions that `filters` admit.
    pub fn verify(&self, filters: &Filters) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let pd = self.partition_duration_ns();
        for r in self.regions() {
            let files = r.manifest.files();
            let mut last = None;
            // A seq names one file, but the outputs of one compaction share theirs.
            let mut seqs: std::collections::HashMap<u64, String> = Default::default();
            let mut paths = HashSet::new();
            for f in files.iter() {
                let group = match parse_data_file(std::path::Path::new(&f.path)) {
                    Some(crate::storage::paths::DataFileName::Compacted(_, token)) => token,
                    _ => f.path.clone(),
                };
                if seqs
                    .insert(f.seq, group.clone())
                    .is_some_and(|prev| prev != group || prev == f.path)
                {
                    report
                        .problems
                        .push(format!("region {}: seq {} listed twice", r.name, f.seq));
                }
                if !paths.insert(f.id()) {
                    report
                        .problems
                        .push(format!("region {}: {} listed twice", r.name, f.id()));
                }
                if !admits(filters, f) {
                    continue;
                }
                report.files += 1;
                report.rows += f.rows;
                report.bytes += f.bytes;
                for p in verify_file(r.manifest.store(), f, pd, &mut last) {
                    report.problems.push(format!("region {}: {p}", r.name));
                }
            }
            report
                .leftovers
                .extend(sweep_leftovers(r, false, self.grace())?);
        }
        Ok(report)
    }
}
