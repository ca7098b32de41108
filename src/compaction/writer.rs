//! Compaction's outputs: the sorted rows of one partition cut into files of about a target
//! size, written through the one file writer (`storage::writer`: staged, then published
//! durably), each described as a [`FileMeta`] ready for the manifest.
//!
//! A file is cut after the row group that brings it to the target, so every output but the
//! last is at least the target (what keeps a rerun from compacting again). Outputs split
//! the rows in sort order, so their point identities are disjoint; they all carry the seq
//! of the newest input (`storage::paths::compacted_file_rel`), which orders them below any
//! file flushed after their inputs, and the run's token in their names. On error, every
//! output written so far is removed: none of them is in the manifest yet.

use std::path::PathBuf;

use arrow::record_batch::RecordBatch;

use crate::catalog::{FileMeta, WalRange};
use crate::storage::paths::compacted_file_rel;
use crate::storage::store::Store;
use crate::storage::writer::{FileSpec, FileWriter, Staged, publish, stage_tombstone};

use super::{Result, Step, count_values};

/// Where and how to write: each file as `file` says, and how the outputs are cut and named.
#[derive(Debug, Clone)]
pub struct OutputSpec<'a> {
    pub file: FileSpec<'a>,
    /// Directory of the outputs, relative to the region root, `/`-separated.
    pub rel_dir: &'a str,
    pub target_bytes: u64,
    /// The seq the outputs carry (the newest input's).
    pub seq: u64,
    /// Unique per compaction run (names its outputs, and its lease).
    pub token: &'a str,
    /// The manifest entries (ids) the outputs replace, recorded in the footer of the last
    /// (a rebuild trusts a whole set of outputs only).
    pub replaces: Vec<String>,
}

/// One output file, complete and durable but not yet live.
#[derive(Debug, Clone)]
pub struct Written {
    pub meta: FileMeta,
    /// Where it is (for messages).
    pub path: PathBuf,
    pub values: u64,
}

/// Writes `batch` (sorted, deduplicated, all of one partition) as files of about
/// `spec.target_bytes`, numbered from 0. `wal` goes to the first output. `on_step` is
/// called after each file is durable. Returns nothing for an empty batch.
pub fn write_outputs(
    store: &Store,
    spec: &OutputSpec<'_>,
    batch: &RecordBatch,
    wal: Vec<WalRange>,
    on_step: &mut dyn FnMut(Step, &std::path::Path),
) -> Result<Vec<Written>> {
    let mut done: Vec<Written> = Vec::new();
    let result = write_all(store, spec, batch, wal, &mut done, on_step);
    if let Err(e) = result {
        let paths: Vec<String> = done.iter().map(|w| w.meta.path.clone()).collect();
        let _ = store.delete(&paths);
        return Err(e);
    }
    Ok(done)
}

fn write_all(
    store: &Store,
    spec: &OutputSpec<'_>,
    batch: &RecordBatch,
    wal: Vec<WalRange>,
    done: &mut Vec<Written>,
    on_step: &mut dyn FnMut(Step, &std::path::Path),
) -> Result<()> {
    let n = batch.num_rows();
    let fspec = &spec.file;
    let rg = fspec.row_group_rows.max(1);
    let mut wal = Some(wal);
    let mut offset = 0;
    let mut k = 0;
    // How columns are stored (float fields as scaled integers, the integer encodings that
    // compress best at this zstd level): chosen from all the rows, for every output.
    let layout = crate::storage::writer::Layout::tried(batch, fspec);
    while offset < n {
        let rel = compacted_file_rel(spec.rel_dir, spec.seq, spec.token, k);
        k += 1;
        let mut w =
            FileWriter::create(store, rel, spec.seq, batch.schema(), fspec, layout.clone())?;
        let mut values = 0;
        let step = (|| -> Result<()> {
            while offset < n {
                let len = rg.min(n - offset);
                let slice = batch.slice(offset, len);
                w.write(&slice)?;
                values += count_values(&slice);
                offset += len;
                if w.bytes_written() >= spec.target_bytes {
                    break;
                }
            }
            Ok(())
        })();
        let staged = match step {
            Ok(()) => {
                // Only the last output names the inputs it replaces: outputs are published
                // one by one before the commit, and a manifest rebuilt from the footers
                // after a run died halfway must keep the inputs of the outputs it lacks.
                if offset >= n {
                    w.replacing(spec.replaces.clone());
                }
                w.finish(wal.take().unwrap_or_default())?
            }
            Err(e) => {
                if let Ok(s) = w.finish(Vec::new()) {
                    crate::storage::writer::discard(&[&s]);
                }
                return Err(e);
            }
        };
        done.push(publish_one(store, staged, values)?);
        on_step(Step::OutputWritten, &done[done.len() - 1].path);
    }
    Ok(())
}

fn publish_one(store: &Store, staged: Staged, values: u64) -> Result<Written> {
    publish(store, &[&staged])?;
    Ok(Written {
        path: store.key_of(&staged.meta.path),
        meta: staged.meta,
        values,
    })
}

/// Writes a retention tombstone: a zero-row file (only a `time` column) whose manifest entry
/// carries `wal`, so WAL replay keeps skipping records of a dropped partition.
pub fn write_tombstone(
    store: &Store,
    spec: &OutputSpec<'_>,
    wal: Vec<WalRange>,
    n: usize,
) -> Result<Written> {
    let rel = compacted_file_rel(spec.rel_dir, spec.seq, spec.token, n);
    let staged = stage_tombstone(store, rel, spec.seq, &spec.file, wal, spec.replaces.clone())?;
    publish_one(store, staged, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, DictionaryArray, Float64Array, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use crate::model::{ColumnKind, TIME_COLUMN};
    use crate::storage::schema::time_type;

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
                    // Full precision: stored as doubles (not as scaled integers, which
                    // would be too small to split at the test's target).
                    .map(|i| (i % 3 != 0).then_some((i as f64 * 1.5).sqrt()))
                    .collect::<Vec<_>>(),
            )),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    fn spec(target: u64) -> OutputSpec<'static> {
        OutputSpec {
            file: FileSpec {
                region: "eu",
                db: "db",
                measurement: "cpu",
                partition_start: 0,
                row_group_rows: 100,
                zstd_level: 1,
                page_rows: 20_000,
                time_unit: Default::default(),
                column_index: true,
            },
            rel_dir: "db/cpu/part_day=1970-01-01/part_hour=00",
            target_bytes: target,
            seq: 7,
            token: "t1",
            replaces: Vec::new(),
        }
    }

    #[test]
    fn splits_at_the_target_and_describes_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let b = batch(1000);
        let wal = vec![WalRange {
            shard: 1,
            min_seq: 1,
            max_seq: 9,
        }];
        let mut steps = 0;
        let mut out_spec = spec(2000);
        out_spec.replaces = vec!["db/cpu/a.parquet".into(), "db/~packed/b.parquet#3".into()];
        let out = write_outputs(&store, &out_spec, &b, wal.clone(), &mut |s, p| {
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
            let (schema, batches) = read_file(&store.file(&w.meta)).unwrap();
            assert_eq!(schema.field(1).data_type(), &tag_type());
            // Only the last output names the inputs it replaces.
            let footer = crate::storage::parquet::read_footer(&store.file(&w.meta)).unwrap();
            let replaces = crate::storage::schema::footer_value(
                footer.file_metadata(),
                crate::storage::schema::meta::REPLACES,
            );
            let want = if i + 1 == out.len() {
                serde_json::to_string(&out_spec.replaces).unwrap()
            } else {
                "[]".to_string()
            };
            assert_eq!(replaces, Some(want.as_str()));
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
        // Every output carries the seq it was given, under a name of its own.
        assert!(out.iter().all(|w| w.meta.seq == 7));
        let names: std::collections::HashSet<&str> =
            out.iter().map(|w| w.meta.path.as_str()).collect();
        assert_eq!(names.len(), out.len());
        // One big target: one file.
        let one = write_outputs(&store, &spec(u64::MAX), &b, vec![], &mut |_, _| {}).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].values, count_values(&b));
        // No temp files left.
        let leftovers: Vec<_> = walkdir_names(dir.path())
            .into_iter()
            .filter(|n| crate::storage::paths::is_temp_name(n))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walkdir_names(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
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
        let store = Store::local(dir.path());
        let wal = vec![WalRange {
            shard: 0,
            min_seq: 3,
            max_seq: 4,
        }];
        let t = write_tombstone(&store, &spec(1), wal.clone(), 0).unwrap();
        assert_eq!((t.meta.rows, t.meta.wal.clone()), (0, wal));
        assert!(t.meta.columns.is_empty());
        let (_, batches) = read_file(&store.file(&t.meta)).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
        assert!(
            write_outputs(&store, &spec(1), &batch(0), vec![], &mut |_, _| {})
                .unwrap()
                .is_empty()
        );
    }
}
