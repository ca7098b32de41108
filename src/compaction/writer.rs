//! Writes the sorted rows of one partition as one or more Parquet files of about a target
//! size, crash-safely, and describes each as a [`FileMeta`] ready for the manifest.
//!
//! Each file: temporary name → row groups of `row_group_rows` → footer with the same
//! key-value metadata as a flush → fsync → rename → fsync the directory chain up to the
//! region dir. A file is cut after the row group that brings it to the target, so every
//! output but the last is at least the target (what keeps a rerun from compacting again).
//! Outputs split the rows in sort order, so their point identities are disjoint.
//! On error, every file written so far is removed: none of them is in the manifest yet.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, TimestampNanosecondArray};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::catalog::{FileMeta, Manifest, WalRange};
use crate::model::{ColumnKind, TIME_COLUMN};
use crate::storage::parquet::writer_properties;
use crate::storage::paths::{PARQUET_EXT, temp_path};
use crate::storage::schema::meta;
use crate::storage::schema::time_type;

use super::{CompactionError, Result, Step, count_values, io_err};
use crate::storage::parquet::sync_dirs_up_to;

/// Footer key marking a retention tombstone (a zero-row file that only carries WAL ranges).
pub const TOMBSTONE_KEY: &str = crate::storage::schema::meta::TOMBSTONE;

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct OutputSpec<'a> {
    pub region: &'a str,
    pub db: &'a str,
    pub measurement: &'a str,
    pub partition_start: i64,
    /// Directory of the outputs, relative to the region dir, `/`-separated.
    pub rel_dir: &'a str,
    pub target_bytes: u64,
    pub row_group_rows: usize,
    pub zstd_level: i32,
    pub page_rows: usize,
}

/// Writer properties of an output: the flush writer's encodings, with the compactor's zstd
/// level and page size.
fn output_properties(schema: &Schema, spec: &OutputSpec, kv: Vec<KeyValue>) -> WriterProperties {
    writer_properties(
        schema,
        spec.row_group_rows,
        kv,
        spec.zstd_level,
        spec.page_rows,
    )
}

/// One output file, complete and durable but not yet live.
#[derive(Debug, Clone)]
pub struct Written {
    pub meta: FileMeta,
    pub path: PathBuf,
    pub values: u64,
}

fn pq_err(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> CompactionError + '_ {
    move |source| CompactionError::Parquet {
        context: format!("writing {}", path.display()),
        source,
    }
}

/// The manifest's column list of a batch: tags then fields, in schema order.
pub fn columns_of(schema: &Schema) -> Result<Vec<(String, ColumnKind)>> {
    crate::storage::schema::columns_of(schema).map_err(|e| CompactionError::Arrow {
        context: "output columns".into(),
        source: arrow::error::ArrowError::SchemaError(e),
    })
}

fn base_kv(spec: &OutputSpec<'_>, tags: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new(meta::REGION.into(), spec.region.to_string()),
        KeyValue::new(meta::DB.into(), spec.db.to_string()),
        KeyValue::new(meta::MEASUREMENT.into(), spec.measurement.to_string()),
        KeyValue::new(meta::TAG_COLUMNS.into(), tags.to_string()),
    ]
}

struct Open {
    seq: u64,
    rel: String,
    path: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
    values: u64,
    min: i64,
    max: i64,
}

/// Writes `batch` (sorted, deduplicated, all of one partition) as files of about
/// `spec.target_bytes`. `wal` goes to the first output. `on_step` is called after each
/// file is durable. Returns nothing for an empty batch.
pub fn write_outputs(
    manifest: &Manifest,
    spec: &OutputSpec<'_>,
    batch: &RecordBatch,
    wal: Vec<WalRange>,
    on_step: &mut dyn FnMut(Step, &Path),
) -> Result<Vec<Written>> {
    let mut done: Vec<Written> = Vec::new();
    let result = write_all(manifest, spec, batch, wal, &mut done, on_step);
    if let Err(e) = result {
        for w in &done {
            let _ = fs::remove_file(&w.path);
        }
        return Err(e);
    }
    Ok(done)
}

fn write_all(
    manifest: &Manifest,
    spec: &OutputSpec<'_>,
    batch: &RecordBatch,
    wal: Vec<WalRange>,
    done: &mut Vec<Written>,
    on_step: &mut dyn FnMut(Step, &Path),
) -> Result<()> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(());
    }
    let schema = batch.schema();
    let columns = columns_of(&schema)?;
    let tags: Vec<&str> = columns
        .iter()
        .filter(|(_, k)| *k == ColumnKind::Tag)
        .map(|(n, _)| n.as_str())
        .collect();
    let kv = base_kv(spec, &tags.join(","));
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| CompactionError::Arrow {
            context: "merged batch".into(),
            source: arrow::error::ArrowError::SchemaError("no Timestamp(ns) time column".into()),
        })?;
    let region_dir = manifest.region_dir();
    let dir = region_dir.join(spec.rel_dir);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    sync_dirs_up_to(&dir, region_dir)?;

    let rg = spec.row_group_rows.max(1);
    let mut wal = Some(wal);
    let mut offset = 0;
    while offset < n {
        let seq = manifest.next_file_seq();
        let rel = format!("{}/{seq:020}.{PARQUET_EXT}", spec.rel_dir);
        let path = region_dir.join(&rel);
        let tmp = temp_path(&path);
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let props = output_properties(&schema, spec, kv.clone());
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(pq_err(&tmp));
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let mut open = Open {
            seq,
            rel,
            path,
            tmp,
            writer,
            rows: 0,
            values: 0,
            min: i64::MAX,
            max: i64::MIN,
        };
        let step = (|| -> Result<()> {
            while offset < n {
                let len = rg.min(n - offset);
                let slice = batch.slice(offset, len);
                open.writer.write(&slice).map_err(pq_err(&open.tmp))?;
                for i in offset..offset + len {
                    let t = time.value(i);
                    open.min = open.min.min(t);
                    open.max = open.max.max(t);
                }
                open.rows += len as u64;
                open.values += count_values(&slice);
                offset += len;
                if open.writer.bytes_written() as u64 >= spec.target_bytes {
                    break;
                }
            }
            Ok(())
        })();
        if let Err(e) = step {
            let _ = fs::remove_file(&open.tmp);
            return Err(e);
        }
        let written = finish(open, spec, &columns, wal.take().unwrap_or_default())?;
        on_step(Step::OutputWritten, &written.path);
        done.push(written);
    }
    Ok(())
}

fn finish(
    mut open: Open,
    spec: &OutputSpec<'_>,
    columns: &[(String, ColumnKind)],
    wal: Vec<WalRange>,
) -> Result<Written> {
    let tmp = open.tmp.clone();
    let result = (|| -> Result<u64> {
        let wal_json = serde_json::to_string(&wal).map_err(|e| CompactionError::Arrow {
            context: "encoding WAL ranges".into(),
            source: arrow::error::ArrowError::ExternalError(Box::new(e)),
        })?;
        for (k, v) in [
            (meta::MIN_TIME, open.min.to_string()),
            (meta::MAX_TIME, open.max.to_string()),
            (meta::ROW_COUNT, open.rows.to_string()),
            (meta::PARTITION_START, spec.partition_start.to_string()),
            (meta::WAL, wal_json),
        ] {
            open.writer
                .append_key_value_metadata(KeyValue::new(k.into(), v));
        }
        let file = open.writer.into_inner().map_err(pq_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        let bytes = file.metadata().map_err(io_err(&tmp))?.len();
        drop(file);
        fs::rename(&tmp, &open.path).map_err(io_err(&open.path))?;
        if let Some(dir) = open.path.parent() {
            crate::storage::parquet::sync_dir(dir)?;
        }
        Ok(bytes)
    })();
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    Ok(Written {
        meta: FileMeta {
            seq: open.seq,
            path: open.rel,
            db: spec.db.to_string(),
            measurement: spec.measurement.to_string(),
            partition_start: spec.partition_start,
            min_time: open.min,
            max_time: open.max,
            rows: open.rows,
            bytes,
            columns: columns.to_vec(),
            wal,
        },
        path: open.path,
        values: open.values,
    })
}

/// Writes a retention tombstone: a zero-row file (only a `time` column) whose manifest entry
/// carries `wal`, so WAL replay keeps skipping records of a dropped partition.
pub fn write_tombstone(
    manifest: &Manifest,
    spec: &OutputSpec<'_>,
    wal: Vec<WalRange>,
) -> Result<Written> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        TIME_COLUMN,
        time_type(),
        false,
    )]));
    let seq = manifest.next_file_seq();
    let rel = format!("{}/{seq:020}.{PARQUET_EXT}", spec.rel_dir);
    let region_dir = manifest.region_dir();
    let path = region_dir.join(&rel);
    let dir = region_dir.join(spec.rel_dir);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    sync_dirs_up_to(&dir, region_dir)?;
    let tmp = temp_path(&path);
    let mut kv = base_kv(spec, "");
    kv.push(KeyValue::new(
        TOMBSTONE_KEY.into(),
        "WAL ranges of a partition dropped by retention".to_string(),
    ));
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let props = output_properties(&schema, spec, kv);
    let writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(pq_err(&tmp));
    let mut writer = match writer {
        Ok(w) => w,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    writer.append_key_value_metadata(KeyValue::new(meta::ROW_COUNT.into(), "0".to_string()));
    let open = Open {
        seq,
        rel,
        path,
        tmp,
        writer,
        rows: 0,
        values: 0,
        min: spec.partition_start,
        max: spec.partition_start,
    };
    finish(open, spec, &[], wal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, DictionaryArray, Float64Array};
    use arrow::datatypes::{DataType, Int32Type};

    use crate::storage::parquet::read_file;
    use crate::storage::schema::tag_type;

    fn batch(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(TIME_COLUMN, time_type(), false),
            Field::new("host", tag_type(), true),
            Field::new("x", DataType::Float64, true),
        ]));
        let host: DictionaryArray<Int32Type> =
            (0..n).map(|i| Some(["a", "b"][i * 2 / n])).collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from(
                    (0..n as i64).map(|i| i % 500 * 7).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(host),
            Arc::new(Float64Array::from(
                (0..n)
                    .map(|i| (i % 3 != 0).then_some(i as f64 * 1.5))
                    .collect::<Vec<_>>(),
            )),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    fn spec(target: u64) -> OutputSpec<'static> {
        OutputSpec {
            region: "eu",
            db: "db",
            measurement: "cpu",
            partition_start: 0,
            rel_dir: "db/cpu/part_day=1970-01-01/part_hour=00",
            target_bytes: target,
            row_group_rows: 100,
            zstd_level: 1,
            page_rows: 20_000,
        }
    }

    #[test]
    fn splits_at_the_target_and_describes_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::open(dir.path()).unwrap();
        let b = batch(1000);
        let wal = vec![WalRange {
            shard: 1,
            min_seq: 1,
            max_seq: 9,
        }];
        let mut steps = 0;
        let out = write_outputs(&m, &spec(2000), &b, wal.clone(), &mut |s, p| {
            assert_eq!(s, Step::OutputWritten);
            assert!(p.exists());
            steps += 1;
        })
        .unwrap();
        assert!(out.len() > 1, "a small target splits the rows");
        assert_eq!(steps, out.len());
        assert_eq!(out.iter().map(|w| w.meta.rows).sum::<u64>(), 1000);
        assert_eq!(out[0].meta.wal, wal);
        assert!(out[1..].iter().all(|w| w.meta.wal.is_empty()));
        for (i, w) in out.iter().enumerate() {
            if i + 1 < out.len() {
                assert!(w.meta.bytes >= 2000, "all but the last reach the target");
            }
            let (schema, batches) = read_file(&w.path).unwrap();
            assert_eq!(schema.field(1).data_type(), &tag_type());
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(rows as u64, w.meta.rows);
            assert_eq!(std::fs::metadata(&w.path).unwrap().len(), w.meta.bytes);
            assert_eq!(
                w.meta.columns,
                vec![
                    ("host".to_string(), ColumnKind::Tag),
                    (
                        "x".to_string(),
                        ColumnKind::Field(crate::model::FieldType::Float)
                    )
                ]
            );
            let times: Vec<i64> = batches
                .iter()
                .flat_map(|b| {
                    let t = b
                        .column(0)
                        .as_any()
                        .downcast_ref::<TimestampNanosecondArray>()
                        .unwrap();
                    t.values().to_vec()
                })
                .collect();
            assert_eq!(w.meta.min_time, *times.iter().min().unwrap());
            assert_eq!(w.meta.max_time, *times.iter().max().unwrap());
            assert!(
                w.meta
                    .path
                    .starts_with("db/cpu/part_day=1970-01-01/part_hour=00/")
            );
        }
        let seqs: Vec<u64> = out.iter().map(|w| w.meta.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        // One big target: one file.
        let one = write_outputs(&m, &spec(u64::MAX), &b, vec![], &mut |_, _| {}).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].values, count_values(&b));
        // No temp files left.
        let leftovers: Vec<_> = walkdir_names(dir.path())
            .into_iter()
            .filter(|n| crate::storage::paths::is_temp_name(n))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walkdir_names(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.extend(walkdir_names(&e.path()));
            } else {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out
    }

    #[test]
    fn tombstones_are_empty_readable_files() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::open(dir.path()).unwrap();
        let wal = vec![WalRange {
            shard: 0,
            min_seq: 3,
            max_seq: 4,
        }];
        let t = write_tombstone(&m, &spec(1), wal.clone()).unwrap();
        assert_eq!((t.meta.rows, t.meta.wal.clone()), (0, wal));
        assert!(t.meta.columns.is_empty());
        let (_, batches) = read_file(&t.path).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
        assert!(
            write_outputs(&m, &spec(1), &batch(0), vec![], &mut |_, _| {})
                .unwrap()
                .is_empty()
        );
    }
}
