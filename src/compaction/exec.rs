//! Carries out the plans, region by region, phase by phase: retention, compaction, rollups.
//! Each phase is re-planned from the manifest as the previous phase left it.
//!
//! The crash-safe order of every unit (a partition, or a rollup window), step by step:
//! 1. read the inputs (each checked against its manifest entry: present, same size, same
//!    row count) and merge them oldest first: sorted, deduplicated, last write wins per field;
//! 0. take the unit's lease (a manifest edit): two compactors never work on one partition;
//! 2. write the outputs through the one file writer (staged, published durably): a crash
//!    here leaves files the manifest does not list (leftovers, named by the run's token);
//! 3. ONE manifest edit adds the outputs, removes the inputs and gives the lease back: the
//!    point where the unit takes effect. If another writer (a live server's delete, another
//!    compactor) removed an input meanwhile, the edit is refused, the outputs are deleted
//!    and the unit is reported as skipped;
//! 4. the inputs are retired: deleted after a grace period longer than any query (by the
//!    server, or by the next run), since a live server may still be reading them.
//!
//! Leftovers of 2 and 4 are deleted by the next run (and by the server); at no instant does
//! the manifest list a point twice or lose one. A failure before 3 removes the outputs and
//! leaves the partition as it was; the run goes on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;

use crate::catalog::manifest::{ManifestError, now_ns, this_holder};
use crate::catalog::{FileMeta, Lease, ManifestEdit};
use crate::model::PartitionStart;
use crate::storage::merge::merge_dedup;
use crate::storage::parquet::decode_file;
use crate::storage::paths::data_file_rel;

use super::datadir::{DataDir, RegionDir, sweep_leftovers, wal_floors};
use super::plan::{
    Compaction, Drop, PartitionId, Policy, RegionPlan, Rollup, plan_compaction, plan_region,
    plan_retention, plan_rollups, union_wal,
};
use super::rollup::rollup;
use super::writer::{OutputSpec, Written, write_outputs, write_tombstone};
use super::{
    CompactionError, Event, Result, Step, Summary, UnitKind, UnitReport, arrow_err, count_values,
};
use crate::storage::writer::FileSpec;

/// Execution settings that do not change what is picked.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// Rows per Parquet row group of the outputs.
    pub row_group_rows: usize,
    /// zstd level of the outputs.
    pub zstd_level: i32,
    /// Rows per data page of the outputs (at most).
    pub page_rows: usize,
    /// How `time` is stored (`[storage] time_unit`).
    pub time_unit: crate::config::FileTimeUnit,
}

impl Default for ExecSettings {
    fn default() -> Self {
        ExecSettings {
            row_group_rows: 1 << 20,
            zstd_level: crate::storage::parquet::COMPACT_ZSTD_LEVEL,
            page_rows: crate::storage::parquet::COMPACT_PAGE_ROWS,
            time_unit: Default::default(),
        }
    }
}

/// What a region would do (`--dry-run`).
#[derive(Debug, Clone)]
pub struct RegionPreview {
    pub region: String,
    /// Leftovers of interrupted runs that a real run deletes first.
    pub leftovers: Vec<PathBuf>,
    pub plan: RegionPlan,
}

pub(super) type Emit<'e> = &'e mut dyn FnMut(&Event<'_>);

/// The directory of a partition's files, relative to the region dir; all must share it (a
/// packed file's entry counts as in its measurement's own directory, where outputs go).
pub(super) fn common_dir(files: &[FileMeta], region_dir: &Path) -> Result<String> {
    let dirs: BTreeSet<String> = files
        .iter()
        .map(|f| {
            let own = crate::storage::paths::unpacked_rel(&f.path, &f.db, &f.measurement);
            own.rsplit_once('/').map_or("", |(d, _)| d).to_string()
        })
        .collect();
    match (dirs.len(), dirs.first()) {
        (1, Some(d)) if !d.is_empty() => Ok(d.clone()),
        _ => Err(CompactionError::Mismatch {
            path: region_dir.to_path_buf(),
            reason: format!(
                "files of one partition are not in one partition directory: {:?}",
                files.iter().map(|f| &f.path).collect::<Vec<_>>()
            ),
        }),
    }
}

/// Reads files in the given (seq) order, each checked against its manifest entry.
/// Returns the batches and the number of field values read.
pub(super) fn read_inputs(
    region: &RegionDir,
    files: &[FileMeta],
) -> Result<(Vec<RecordBatch>, u64)> {
    read_inputs_with(region, files, &mut Default::default())
}

/// [`read_inputs`], packed files read once for all their entries (kept in `packed`).
fn read_inputs_with(
    region: &RegionDir,
    files: &[FileMeta],
    packed: &mut std::collections::HashMap<String, bytes::Bytes>,
) -> Result<(Vec<RecordBatch>, u64)> {
    let store = region.manifest.store();
    let mut out = Vec::new();
    let mut values = 0;
    for f in files {
        let path = store.key_of(&f.path);
        let read = || {
            store
                .read(&f.path)?
                .ok_or_else(|| CompactionError::Mismatch {
                    path: path.clone(),
                    reason: "listed in the manifest but not stored".into(),
                })
        };
        let bytes = match (f.packed, packed.get(&f.path)) {
            (Some(_), Some(b)) => b.clone(),
            (Some(_), None) => {
                let b = read()?;
                packed.insert(f.path.clone(), b.clone());
                b
            }
            (None, _) => read()?,
        };
        if bytes.len() as u64 != f.file_bytes() {
            return Err(CompactionError::Mismatch {
                path,
                reason: format!(
                    "{} bytes stored, {} in the manifest",
                    bytes.len(),
                    f.file_bytes()
                ),
            });
        }
        let (_, batches) = decode_file(bytes, &path, store.file(f).packed_entry().as_ref())?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows != f.rows {
            return Err(CompactionError::Mismatch {
                path,
                reason: format!("{rows} rows in the file, {} in the manifest", f.rows),
            });
        }
        values += batches.iter().map(count_values).sum::<u64>();
        out.extend(batches);
    }
    Ok((out, values))
}

/// How long a unit's lease lasts: longer than any unit takes; a compactor killed while it
/// holds one blocks that partition for at most this long.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(600);

/// The lease key of a unit.
pub(super) fn lease_key(p: &PartitionId, kind: UnitKind) -> String {
    format!("{kind:?}/{}/{}/{}", p.db, p.measurement, p.start)
}

/// Step 0: takes the unit's lease (another compactor's: the unit is skipped).
fn take_lease(region: &RegionDir, key: &str, token: &str) -> Result<()> {
    let until = now_ns().saturating_add(LEASE.as_nanos() as i64);
    let taken = region.manifest.commit(ManifestEdit {
        leases: vec![Lease {
            key: key.to_string(),
            owner: token.to_string(),
            until,
            holder: Some(this_holder()),
        }],
        ..ManifestEdit::default()
    });
    match taken {
        Ok(_) => Ok(()),
        Err(ManifestError::Conflict(why)) => Err(CompactionError::Busy(why)),
        Err(e) => Err(e.into()),
    }
}

/// Gives a lease back after a unit failed (best effort: it lapses anyway).
fn give_back(region: &RegionDir, key: &str, token: &str) {
    let _ = region.manifest.commit(ManifestEdit {
        leases: vec![Lease {
            key: key.to_string(),
            owner: token.to_string(),
            until: 0,
            holder: None,
        }],
        ..ManifestEdit::default()
    });
}

/// Reports the inputs a committed edit retired. They stay until the grace period of queries
/// that may still read them is over (a live server deletes them then; a later run too).
pub(super) fn report_retired(region: &RegionDir, files: &[FileMeta], emit: Emit<'_>) {
    for f in files {
        let path = region.manifest.store().key_of(&f.path);
        emit(&Event::Step {
            region: &region.name,
            step: Step::InputRetired,
            path: &path,
        });
    }
}

/// Step 3 for a unit: one edit (the lease given back with it); on failure the (unlisted)
/// outputs are removed.
pub(super) fn commit(
    region: &RegionDir,
    add: &[Written],
    remove: &[FileMeta],
    lease: (&str, &str),
    emit: Emit<'_>,
) -> Result<()> {
    let edit = ManifestEdit {
        add: add.iter().map(|w| w.meta.clone()).collect(),
        remove: remove.iter().map(|f| f.id().into_owned()).collect(),
        leases: vec![Lease {
            key: lease.0.to_string(),
            owner: lease.1.to_string(),
            until: 0,
            holder: None,
        }],
        ..ManifestEdit::default()
    };
    if let Err(e) = region.manifest.commit(edit) {
        let mut paths: Vec<String> = add.iter().map(|w| w.meta.path.clone()).collect();
        paths.dedup();
        let _ = region.manifest.store().delete(&paths);
        return Err(match e {
            // Another writer replaced or removed an input first (a delete, a compactor whose
            // lease had lapsed): its files are live, ours are gone.
            ManifestError::Conflict(why) => CompactionError::Busy(why),
            e => e.into(),
        });
    }
    let manifest = region
        .manifest
        .store()
        .key_of(crate::storage::paths::MANIFEST_DIR);
    emit(&Event::Step {
        region: &region.name,
        step: Step::ManifestCommitted,
        path: &manifest,
    });
    Ok(())
}

/// Runs a unit under its lease: taken first, given back if the unit fails before its
/// commit (the commit gives it back itself).
pub(super) fn leased<T>(
    region: &RegionDir,
    key: &str,
    token: &str,
    inputs: &[FileMeta],
    unit: impl FnOnce() -> Result<T>,
) -> Result<T> {
    take_lease(region, key, token)?;
    // Taking the lease applied every edit before it: the plan still holds only if every
    // input is still live (another compactor may have done this unit meanwhile).
    let live: std::collections::HashSet<String> = region
        .manifest
        .files()
        .iter()
        .map(|f| f.id().into_owned())
        .collect();
    if let Some(gone) = inputs.iter().find(|f| !live.contains(f.id().as_ref())) {
        give_back(region, key, token);
        return Err(CompactionError::Busy(format!(
            "{} was replaced since the run planned (another compactor did this unit)",
            gone.path
        )));
    }
    let r = unit();
    if r.is_err() {
        give_back(region, key, token);
    }
    r
}

/// Retention: one edit takes the partition's files out (a tombstone in, if the WAL still
/// needs one); the files are retired.
pub fn drop_partition(
    region: &RegionDir,
    d: &Drop,
    settings: &ExecSettings,
    emit: Emit<'_>,
) -> Result<UnitReport> {
    let key = lease_key(&d.partition, UnitKind::Drop);
    leased(region, &key, &region.token, &d.files, || {
        let rel_dir = common_dir(&d.files, &region.dir)?;
        let tombstone = if d.tombstone_wal.is_empty() {
            None
        } else {
            let p = &d.partition;
            let mut spec = output_spec(
                region,
                settings,
                (&p.db, &p.measurement, p.start),
                &rel_dir,
                u64::MAX,
                newest_seq(&d.files),
            );
            spec.replaces = ids(&d.files);
            let t = write_tombstone(region.manifest.store(), &spec, d.tombstone_wal.clone(), 0)?;
            emit(&Event::Step {
                region: &region.name,
                step: Step::OutputWritten,
                path: &t.path,
            });
            Some(t)
        };
        let add: Vec<Written> = tombstone.into_iter().collect();
        commit(region, &add, &d.files, (&key, &region.token), emit)?;
        report_retired(region, &d.files, emit);
        Ok(UnitReport {
            kind: UnitKind::Drop,
            partition: d.partition.clone(),
            files_in: d.files.len() as u64,
            files_out: add.len() as u64,
            bytes_in: d.bytes(),
            bytes_out: add.iter().map(|w| w.meta.bytes).sum(),
            rows_in: d.rows(),
            rows_out: 0,
            values_in: 0,
            values_out: 0,
            rows_deduped: 0,
            tombstone: !add.is_empty(),
        })
    })
}

/// Where and how a unit writes: into partition `(db, measurement, start)` of the region,
/// files of about `target_bytes` carrying `seq`, encoded as `settings` say.
pub(super) fn output_spec<'a>(
    region: &'a RegionDir,
    settings: &ExecSettings,
    (db, measurement, partition_start): (&'a str, &'a str, i64),
    rel_dir: &'a str,
    target_bytes: u64,
    seq: u64,
) -> OutputSpec<'a> {
    OutputSpec {
        file: FileSpec {
            region: &region.name,
            db,
            measurement,
            partition_start,
            row_group_rows: settings.row_group_rows,
            zstd_level: settings.zstd_level,
            page_rows: settings.page_rows,
            time_unit: settings.time_unit,
            column_index: true,
        },
        rel_dir,
        target_bytes,
        seq,
        token: &region.token,
        replaces: Vec::new(),
    }
}

/// The manifest ids of `files` (what outputs replacing them record in their footers).
pub(super) fn ids(files: &[FileMeta]) -> Vec<String> {
    files.iter().map(|f| f.id().into_owned()).collect()
}

/// The highest seq of a set of files: what outputs replacing them carry.
pub(super) fn newest_seq(files: &[FileMeta]) -> u64 {
    files.iter().map(|f| f.seq).max().unwrap_or(0)
}

/// Compaction of one partition: all its files → sorted, deduplicated outputs.
pub fn compact_partition(
    region: &RegionDir,
    c: &Compaction,
    policy: &Policy,
    settings: &ExecSettings,
    emit: Emit<'_>,
) -> Result<UnitReport> {
    if c.pack {
        return pack_partition(region, c, policy, settings, emit);
    }
    let key = lease_key(&c.partition, UnitKind::Compaction);
    leased(region, &key, &region.token, &c.inputs, || {
        let rel_dir = common_dir(&c.inputs, &region.dir)?;
        let (batches, values_in) = read_inputs(region, &c.inputs)?;
        let (merged, deduped) =
            merge_dedup(&batches).map_err(arrow_err(format!("merging {rel_dir}")))?;
        drop(batches);
        let p = &c.partition;
        let mut spec = output_spec(
            region,
            settings,
            (&p.db, &p.measurement, p.start),
            &rel_dir,
            policy.target_bytes,
            newest_seq(&c.inputs),
        );
        spec.replaces = ids(&c.inputs);
        let store = region.manifest.store();
        let wal = union_wal(c.inputs.iter().flat_map(|f| f.wal.iter()));
        let mut outputs = write_outputs(store, &spec, &merged, wal.clone(), &mut |step, path| {
            emit(&Event::Step {
                region: &region.name,
                step,
                path,
            })
        })?;
        if outputs.is_empty() && !wal.is_empty() {
            // Only tombstones were merged: keep their WAL ranges alive in one.
            outputs.push(write_tombstone(store, &spec, wal, 0)?);
        }
        commit(region, &outputs, &c.inputs, (&key, &region.token), emit)?;
        report_retired(region, &c.inputs, emit);
        Ok(compaction_report(c, &outputs, values_in, deduped))
    })
}

/// What a compaction unit did: files (not entries: a packed file counts once), bytes,
/// rows and values in and out.
fn compaction_report(
    c: &Compaction,
    outputs: &[Written],
    values_in: u64,
    deduped: usize,
) -> UnitReport {
    let files = |paths: &mut dyn Iterator<Item = &str>| paths.collect::<BTreeSet<_>>().len() as u64;
    UnitReport {
        kind: UnitKind::Compaction,
        partition: c.partition.clone(),
        files_in: files(&mut c.inputs.iter().map(|f| f.path.as_str())),
        files_out: files(&mut outputs.iter().map(|w| w.meta.path.as_str())),
        bytes_in: c.bytes_in,
        bytes_out: outputs.iter().map(|w| w.meta.bytes).sum(),
        rows_in: c.rows_in,
        rows_out: outputs.iter().map(|w| w.meta.rows).sum(),
        values_in,
        values_out: outputs.iter().map(|w| w.values).sum(),
        rows_deduped: deduped as u64,
        tombstone: false,
    }
}

/// Compaction of the small measurements of one db's partition (the planner names them
/// `~packed`): each measurement's files merged, then packed together into one file
/// (`storage::packed`), or more where their column types conflict; a measurement that
/// fits with no other gets a file of its own.
fn pack_partition(
    region: &RegionDir,
    c: &Compaction,
    policy: &Policy,
    settings: &ExecSettings,
    emit: Emit<'_>,
) -> Result<UnitReport> {
    use crate::storage::packed;
    let key = lease_key(&c.partition, UnitKind::Compaction);
    leased(region, &key, &region.token, &c.inputs, || {
        let p = &c.partition;
        let store = region.manifest.store();
        let mut by_measurement: std::collections::BTreeMap<&str, Vec<FileMeta>> =
            Default::default();
        for f in &c.inputs {
            by_measurement
                .entry(f.measurement.as_str())
                .or_default()
                .push(f.clone());
        }
        // Every measurement merged (they are small: the planner's bound).
        let mut merged_all: Vec<(&str, RecordBatch, Vec<FileMeta>)> = Vec::new();
        let (mut values_in, mut deduped_all) = (0, 0);
        let mut packed_bytes = Default::default();
        for (m, files) in by_measurement {
            let (batches, values) = read_inputs_with(region, &files, &mut packed_bytes)?;
            values_in += values;
            let (merged, deduped) = merge_dedup(&batches)
                .map_err(arrow_err(format!("merging {}/{m} at {}", p.db, p.start)))?;
            deduped_all += deduped;
            merged_all.push((m, merged, files));
        }
        drop(packed_bytes);
        let schemas: Vec<_> = merged_all.iter().map(|(_, b, _)| b.schema()).collect();
        let bins = packed::bins(&schemas);
        // The partition's directories as the inputs have them, under `<db>/~packed/`.
        let packed_dir = match merged_all.first() {
            Some((m, _, files)) => {
                let own = common_dir(files, &region.dir)?;
                crate::storage::paths::packed_dir_of(&own, &p.db, m).ok_or_else(|| {
                    CompactionError::Mismatch {
                        path: region.dir.join(&own),
                        reason: format!("not a directory of {}/{m}", p.db),
                    }
                })?
            }
            None => String::new(),
        };
        let mut outputs: Vec<Written> = Vec::new();
        let result = (|| -> Result<()> {
            for (n, bin) in bins.iter().enumerate() {
                if let [i] = bin.as_slice() {
                    let (m, batch, files) = &merged_all[*i];
                    let rel_dir = common_dir(files, &region.dir)?;
                    let mut spec = output_spec(
                        region,
                        settings,
                        (&p.db, m, p.start),
                        &rel_dir,
                        policy.target_bytes,
                        newest_seq(files),
                    );
                    spec.replaces = ids(files);
                    let wal = union_wal(files.iter().flat_map(|f| f.wal.iter()));
                    outputs.extend(write_outputs(
                        store,
                        &spec,
                        batch,
                        wal,
                        &mut |step, path| {
                            emit(&Event::Step {
                                region: &region.name,
                                step,
                                path,
                            })
                        },
                    )?);
                    continue;
                }
                let parts: Vec<packed::Part<'_>> = bin
                    .iter()
                    .map(|i| {
                        let (m, batch, files) = &merged_all[*i];
                        packed::Part {
                            rows: batch,
                            measurement: m,
                            seq: newest_seq(files),
                            wal: union_wal(files.iter().flat_map(|f| f.wal.iter())),
                            replaces: ids(files),
                        }
                    })
                    .collect();
                let seq = parts.iter().map(|x| x.seq).min().unwrap_or(0);
                let rel =
                    crate::storage::paths::compacted_file_rel(&packed_dir, seq, &region.token, n);
                let spec = packed::PackSpec {
                    region: &region.name,
                    db: &p.db,
                    partition_start: p.start,
                    zstd_level: settings.zstd_level,
                    page_rows: settings.page_rows,
                    time_unit: settings.time_unit,
                    column_index: true,
                };
                let staged = packed::stage_packed(store, rel, &parts, &spec)?;
                store.publish(&[(staged.tmp.clone(), staged.path.clone())])?;
                let path = store.key_of(&staged.path);
                emit(&Event::Step {
                    region: &region.name,
                    step: Step::OutputWritten,
                    path: &path,
                });
                for (meta, i) in staged.metas.into_iter().zip(bin) {
                    outputs.push(Written {
                        meta,
                        path: path.clone(),
                        values: count_values(&merged_all[*i].1),
                    });
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let mut paths: Vec<String> = outputs.iter().map(|w| w.meta.path.clone()).collect();
            paths.dedup();
            let _ = store.delete(&paths);
            return Err(e);
        }
        commit(region, &outputs, &c.inputs, (&key, &region.token), emit)?;
        report_retired(region, &c.inputs, emit);
        Ok(compaction_report(c, &outputs, values_in, deduped_all))
    })
}

/// Downsampling of one window: sources → rollup, merged with (and replacing) the old rollup.
pub fn roll_up_window(
    region: &RegionDir,
    r: &Rollup,
    policy: &Policy,
    settings: &ExecSettings,
    partition_duration_ns: i64,
    emit: Emit<'_>,
) -> Result<UnitReport> {
    let Some(ds) = &policy.downsample else {
        return Ok(empty_report(UnitKind::Rollup, r));
    };
    let key = lease_key(&rollup_id(r), UnitKind::Rollup);
    let inputs: Vec<FileMeta> = r.sources.iter().chain(&r.existing).cloned().collect();
    leased(region, &key, &region.token, &inputs, || {
        let (batches, values_in) = read_inputs(region, &r.sources)?;
        let context = format!(
            "rolling up {}/{} window at {}",
            r.db, r.source_measurement, r.window_start
        );
        let (merged, _) = merge_dedup(&batches).map_err(arrow_err(context.clone()))?;
        drop(batches);
        let rolled = rollup(&merged, ds.every_ns, &ds.aggs).map_err(arrow_err(context.clone()))?;
        drop(merged);
        let (mut sources, _) = read_inputs(region, &r.existing)?;
        sources.push(rolled);
        let (out, _) = merge_dedup(&sources).map_err(arrow_err(context))?;
        drop(sources);
        let rel = data_file_rel(
            &r.db,
            &r.target_measurement,
            PartitionStart(r.output_partition),
            partition_duration_ns,
            0,
        );
        let rel_dir = rel
            .parent()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        // A new seq: it orders the rollup after the sources it covers (the planner's test of
        // an up-to-date rollup) and names outputs that never meet an earlier rollup's.
        let seq = region.manifest.next_file_seq();
        let mut spec = output_spec(
            region,
            settings,
            (&r.db, &r.target_measurement, r.output_partition),
            &rel_dir,
            policy.target_bytes,
            seq,
        );
        spec.replaces = ids(&r.existing);
        let wal = union_wal(r.existing.iter().flat_map(|f| f.wal.iter()));
        let outputs = write_outputs(
            region.manifest.store(),
            &spec,
            &out,
            wal,
            &mut |step, path| {
                emit(&Event::Step {
                    region: &region.name,
                    step,
                    path,
                })
            },
        )?;
        if outputs.is_empty() && r.existing.is_empty() {
            give_back(region, &key, &region.token);
            return Ok(empty_report(UnitKind::Rollup, r));
        }
        commit(region, &outputs, &r.existing, (&key, &region.token), emit)?;
        report_retired(region, &r.existing, emit);
        Ok(UnitReport {
            kind: UnitKind::Rollup,
            partition: rollup_id(r),
            files_in: (r.sources.len() + r.existing.len()) as u64,
            files_out: outputs.len() as u64,
            bytes_in: r.sources.iter().chain(&r.existing).map(|f| f.bytes).sum(),
            bytes_out: outputs.iter().map(|w| w.meta.bytes).sum(),
            rows_in: r.sources.iter().map(|f| f.rows).sum(),
            rows_out: outputs.iter().map(|w| w.meta.rows).sum(),
            values_in,
            values_out: outputs.iter().map(|w| w.values).sum(),
            rows_deduped: 0,
            tombstone: false,
        })
    })
}

/// The identity a rollup is reported under: source measurement and window start.
pub fn rollup_id(r: &Rollup) -> PartitionId {
    PartitionId {
        db: r.db.clone(),
        measurement: r.source_measurement.clone(),
        start: r.window_start,
    }
}

fn empty_report(kind: UnitKind, r: &Rollup) -> UnitReport {
    UnitReport {
        kind,
        partition: rollup_id(r),
        files_in: 0,
        files_out: 0,
        bytes_in: 0,
        bytes_out: 0,
        rows_in: 0,
        rows_out: 0,
        values_in: 0,
        values_out: 0,
        rows_deduped: 0,
        tombstone: false,
    }
}

fn record(
    summary: &mut Summary,
    region: &str,
    kind: UnitKind,
    partition: &PartitionId,
    result: Result<UnitReport>,
    emit: Emit<'_>,
) {
    match result {
        Ok(report) => {
            summary.add(&report);
            emit(&Event::Finished {
                region,
                report: &report,
            });
        }
        Err(CompactionError::Busy(why)) => {
            let text = format!(
                "{kind:?} of {}/{} partition at {} ns skipped: {why}",
                partition.db, partition.measurement, partition.start
            );
            emit(&Event::Note {
                region,
                text: &text,
            });
        }
        Err(error) => {
            summary.failures.push(format!(
                "region {region}, {kind:?} of {}/{} partition at {} ns: {error}",
                partition.db, partition.measurement, partition.start
            ));
            emit(&Event::Failed {
                region,
                kind,
                partition,
                error: &error,
            });
        }
    }
}

impl DataDir {
    /// What a run would do, without changing anything (`--dry-run`).
    pub fn plan(&self, policy: &Policy) -> Result<Vec<RegionPreview>> {
        let mut out = Vec::new();
        for r in self.regions() {
            let leftovers = sweep_leftovers(r, false, self.grace())?;
            let floors = wal_floors(&r.dir)?;
            out.push(RegionPreview {
                region: r.name.clone(),
                leftovers,
                plan: plan_region(&r.manifest.files(), &floors, policy),
            });
        }
        Ok(out)
    }

    /// Runs retention, compaction and downsampling on every region. A failed unit is
    /// reported in [`Summary::failures`] and leaves its partition as it was; an error that
    /// makes going on unsafe (a region that cannot be listed) ends the run.
    pub fn run(
        &self,
        policy: &Policy,
        settings: &ExecSettings,
        emit: &mut dyn FnMut(&Event<'_>),
    ) -> Result<Summary> {
        let mut summary = Summary {
            regions: self.regions().len(),
            ..Summary::default()
        };
        let mut units = 0;
        for r in self.regions() {
            let floors = wal_floors(&r.dir)?;
            units += plan_region(&r.manifest.files(), &floors, policy).units();
        }
        emit(&Event::Planned { units });
        let pd = self.partition_duration_ns();
        for r in self.regions() {
            for path in sweep_leftovers(r, true, self.grace())? {
                summary.leftovers_removed += 1;
                emit(&Event::Leftover {
                    region: &r.name,
                    path: &path,
                });
            }
            let floors = wal_floors(&r.dir)?;

            for d in plan_retention(&r.manifest.files(), &floors, policy) {
                emit(&Event::Started {
                    region: &r.name,
                    kind: UnitKind::Drop,
                    partition: &d.partition,
                });
                let res = drop_partition(r, &d, settings, emit);
                record(
                    &mut summary,
                    &r.name,
                    UnitKind::Drop,
                    &d.partition,
                    res,
                    emit,
                );
            }

            for c in plan_compaction(&r.manifest.files(), policy) {
                emit(&Event::Started {
                    region: &r.name,
                    kind: UnitKind::Compaction,
                    partition: &c.partition,
                });
                let res = compact_partition(r, &c, policy, settings, emit);
                record(
                    &mut summary,
                    &r.name,
                    UnitKind::Compaction,
                    &c.partition,
                    res,
                    emit,
                );
            }

            let (rollups, notes) = plan_rollups(&r.manifest.files(), policy);
            for text in &notes {
                emit(&Event::Note {
                    region: &r.name,
                    text,
                });
            }
            for ro in rollups {
                let id = rollup_id(&ro);
                emit(&Event::Started {
                    region: &r.name,
                    kind: UnitKind::Rollup,
                    partition: &id,
                });
                let res = roll_up_window(r, &ro, policy, settings, pd, emit);
                record(&mut summary, &r.name, UnitKind::Rollup, &id, res, emit);
            }
            // Inputs retired by this run go now offline (no query can read them); beside a
            // live server once their grace is over (by the server, or by a later run).
            if let Err(e) = sweep_leftovers(r, true, self.grace()) {
                let text = format!("replaced files stay until the next run: {e}");
                emit(&Event::Note {
                    region: &r.name,
                    text: &text,
                });
            }
            // Leave the manifest as one checkpoint, as a clean server stop does. Not fatal:
            // the edits hold every change of the run.
            if let Err(e) = r.manifest.checkpoint_now() {
                let text =
                    format!("the final manifest checkpoint failed (the log keeps every edit): {e}");
                emit(&Event::Note {
                    region: &r.name,
                    text: &text,
                });
            }
        }
        Ok(summary)
    }
}
