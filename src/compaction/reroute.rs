//! `meridian-compact --reroute`: old partitions rewritten into the region the latest
//! routing version names, on a stopped data dir that holds every region.
//!
//! A routing change applies to points by their time (`routing`): points written before it
//! stay in the region of their time's routing. Rerouting moves them: every row of every
//! partition goes to the region the *latest* version routes it to, and then the latest
//! version is recorded as in force from the beginning of time.
//!
//! ```text
//!  journal (<data_dir>/reroute.json: the server refuses to start while it exists)
//!  per region A, per partition: read + merge its files → route each row by the latest
//!    version → rows of region B: written into B's partition, ONE edit adds them to B
//!    → the rows staying: written, ONE edit replaces A's inputs (a tombstone keeps their
//!      WAL ranges when none stay)
//!  routing.json: the latest rules, in force from the beginning → journal removed
//! ```
//!
//! Crash safety: between B's edit and A's, a moved row is listed twice; the journal keeps
//! the server from starting on such a data dir, and running `--reroute` again finishes the
//! work: the rows still in A are moved again (B then holds them twice, in two files, with
//! the same values: merged as one, the later file winning), and A is rewritten. Each step
//! is the usual compaction unit (lease, outputs staged and published, one manifest edit).
//! Only a single-node data dir (no `[cluster]`, no region `url`: every region is here) with
//! no WAL left (a server stopped cleanly) is rerouted: replayed rows would return to their
//! old region. Partitions are checked before the journal is written; a run that still
//! fails midway names the partition and keeps the journal: fix the cause (`--verify`,
//! `--rebuild-manifest`) and run again.

use std::collections::BTreeMap;

use arrow::array::{Array, BooleanArray, DictionaryArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;

use super::datadir::{DataDir, RegionDir};
use super::exec::{
    Emit, commit, common_dir, lease_key, leased, newest_seq, output_spec, read_inputs,
    report_retired,
};
use super::plan::{PartitionId, union_wal};
use super::writer::{write_outputs, write_tombstone};
use super::{CompactionError, ExecSettings, Result, UnitKind, arrow_err};
use crate::catalog::FileMeta;
use crate::config::Config;
use crate::router::Router;
use crate::routing::History;
use crate::storage::merge::merge_dedup;

/// The journal of a reroute in progress.
pub const JOURNAL: &str = "reroute.json";

/// Rows moved, per (from, to) region.
pub type Moved = BTreeMap<(String, String), u64>;

/// Reroutes every partition of `data` (opened offline, with `cfg`) by the latest routing
/// version of its `routing.json` (recorded first if regions.toml's changed), then records
/// that version as in force from the beginning. Returns the rows moved.
pub fn reroute(
    data: &DataDir,
    cfg: &Config,
    settings: &ExecSettings,
    target_bytes: u64,
    emit: Emit<'_>,
) -> Result<Moved> {
    let dir = data.path();
    let io = |what: &str| {
        let what = what.to_string();
        move |e: String| CompactionError::Reroute(format!("{what}: {e}"))
    };
    // Every region must live in this data dir: rows moved to a region served by another
    // node (or whose writes JetStream still holds) would be lost to it.
    if cfg.cluster.is_some() {
        return Err(CompactionError::Reroute(
            "cluster mode keeps its routing in NATS and each region on its own nodes: --reroute works on a single-node data dir".into(),
        ));
    }
    if let Some(r) = cfg.routing.regions.iter().find(|r| r.url.is_some()) {
        return Err(CompactionError::Reroute(format!(
            "region {:?} has a url (it may be hosted by another node): --reroute works on a data dir that holds every region (a config without urls)",
            r.name
        )));
    }
    if let Some(wal) = wal_left(data) {
        return Err(CompactionError::Reroute(format!(
            "{} holds WAL records: start the server and stop it cleanly (SIGTERM flushes everything), then reroute",
            wal.display()
        )));
    }
    let newest = data
        .regions()
        .iter()
        .flat_map(|r| {
            r.manifest
                .files()
                .iter()
                .map(|f| f.max_time)
                .collect::<Vec<_>>()
        })
        .max();
    let now = crate::catalog::manifest::now_ns();
    let (history, _) = crate::catalog::routing_log::open(dir, &cfg.routing, newest, now)
        .map_err(io("reading the routing versions"))?;
    let latest = history
        .latest()
        .cloned()
        .ok_or_else(|| CompactionError::Reroute("no routing version".into()))?;
    // The latest version's router, which every row is now routed by.
    let rules: crate::routing::Rules = serde_json::from_value(latest.rules.clone())
        .map_err(|e| CompactionError::Reroute(format!("routing version {}: {e}", latest.number)))?;
    let router = Router::from_rules(&rules, &cfg.routing)
        .map_err(|e| CompactionError::Reroute(format!("routing version {}: {e}", latest.number)))?;
    let router = &router;
    // What would fail a partition midway is checked before anything changes: a failed run
    // leaves the journal, and the server refuses to start until a run finishes.
    for a in data.regions() {
        let mut dirs: BTreeMap<(String, String, i64), Vec<FileMeta>> = BTreeMap::new();
        for f in a.manifest.files().iter() {
            dirs.entry((f.db.clone(), f.measurement.clone(), f.partition_start))
                .or_default()
                .push(f.clone());
        }
        for files in dirs.values() {
            common_dir(files, &a.dir)?;
        }
    }
    let journal = dir.join(JOURNAL);
    crate::storage::parquet::write_atomically(
        &journal,
        format!("{{\"version\":{},\"started\":{now}}}\n", latest.number).as_bytes(),
    )?;
    let mut moved = Moved::new();
    for a in data.regions() {
        let mut partitions: BTreeMap<(String, String, i64), Vec<FileMeta>> = BTreeMap::new();
        for f in a.manifest.files().iter() {
            partitions
                .entry((f.db.clone(), f.measurement.clone(), f.partition_start))
                .or_default()
                .push(f.clone());
        }
        for ((db, measurement, start), mut files) in partitions {
            if files.iter().all(|f| f.rows == 0) {
                continue;
            }
            files.sort_by_key(|f| f.seq);
            let p = PartitionId {
                db,
                measurement,
                start,
            };
            for (to, rows) in reroute_partition(
                data,
                a,
                &p,
                &files,
                router,
                cfg,
                settings,
                target_bytes,
                emit,
            )? {
                *moved.entry((a.name.clone(), to)).or_default() += rows;
            }
        }
    }
    // The latest rules, in force from the beginning: what every partition now follows
    // (already so when the history is that one version).
    if history.versions.len() == 1 {
        std::fs::remove_file(&journal).map_err(|e| {
            CompactionError::Reroute(format!("removing {}: {e}", journal.display()))
        })?;
        return Ok(moved);
    }
    let collapsed = History {
        versions: vec![crate::routing::Version {
            number: latest.number.saturating_add(1),
            effective_from: i64::MIN,
            recorded_at: now,
            ..latest
        }],
        lead_ns: None,
    };
    crate::storage::parquet::write_atomically(
        &crate::storage::paths::routing_file(dir),
        &collapsed.to_json(),
    )?;
    std::fs::remove_file(&journal)
        .map_err(|e| CompactionError::Reroute(format!("removing {}: {e}", journal.display())))?;
    Ok(moved)
}

/// A WAL segment file left in a region of the data dir, if any.
fn wal_left(data: &DataDir) -> Option<std::path::PathBuf> {
    for r in data.regions() {
        let wal = crate::storage::paths::region_dir(data.path(), &r.name)
            .join(crate::storage::paths::WAL_DIR);
        let mut stack = vec![wal];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p
                    .extension()
                    .is_some_and(|x| x == crate::storage::paths::WAL_EXT)
                {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// One partition of region `a`: rows another region now owns are written there (one edit
/// each), then the partition is rewritten with the rows that stay. Returns rows moved per
/// target region.
#[allow(clippy::too_many_arguments)]
fn reroute_partition(
    data: &DataDir,
    a: &RegionDir,
    p: &PartitionId,
    files: &[FileMeta],
    router: &Router,
    cfg: &Config,
    settings: &ExecSettings,
    target_bytes: u64,
    emit: Emit<'_>,
) -> Result<BTreeMap<String, u64>> {
    let (batches, _) = read_inputs(a, files)?;
    let rel_dir = common_dir(files, &a.dir)?;
    let (merged, _) = merge_dedup(&batches).map_err(arrow_err(format!("merging {rel_dir}")))?;
    drop(batches);
    let targets = route_rows(&merged, router)?;
    let own = cfg.routing.regions.iter().position(|r| r.name == a.name);
    if targets.iter().all(|t| Some(*t) == own) {
        return Ok(BTreeMap::new());
    }
    let mut moved = BTreeMap::new();
    let mut others: Vec<usize> = targets
        .iter()
        .copied()
        .filter(|t| Some(*t) != own)
        .collect();
    others.sort_unstable();
    others.dedup();
    for to in others {
        let name = &cfg.routing.regions[to].name;
        let b = data
            .regions()
            .iter()
            .find(|r| &r.name == name)
            .ok_or_else(|| {
                CompactionError::Reroute(format!(
                    "rows of {}/{} go to region {name:?}, which this data dir does not hold: --reroute works on a data dir with every region",
                    a.name, rel_dir
                ))
            })?;
        let mask = BooleanArray::from(targets.iter().map(|t| *t == to).collect::<Vec<bool>>());
        let rows = filter_record_batch(&merged, &mask)
            .map_err(arrow_err(format!("splitting {rel_dir}")))?;
        let seq = b.manifest.next_file_seq();
        let key = lease_key(p, UnitKind::Compaction);
        leased(b, &key, &b.token, &[], || {
            let spec = output_spec(
                b,
                settings,
                (&p.db, &p.measurement, p.start),
                &rel_dir,
                target_bytes,
                seq,
            );
            let outputs =
                write_outputs(b.manifest.store(), &spec, &rows, Vec::new(), &mut |_, _| {})?;
            commit(b, &outputs, &[], (&key, &b.token), emit)
        })?;
        moved.insert(name.clone(), rows.num_rows() as u64);
    }
    // What stays in A replaces A's files (their WAL ranges kept, as compaction keeps them).
    let mask = BooleanArray::from(
        targets
            .iter()
            .map(|t| Some(*t) == own)
            .collect::<Vec<bool>>(),
    );
    let stay =
        filter_record_batch(&merged, &mask).map_err(arrow_err(format!("splitting {rel_dir}")))?;
    let key = lease_key(p, UnitKind::Compaction);
    leased(a, &key, &a.token, files, || {
        let mut spec = output_spec(
            a,
            settings,
            (&p.db, &p.measurement, p.start),
            &rel_dir,
            target_bytes,
            newest_seq(files),
        );
        spec.replaces = super::exec::ids(files);
        let store = a.manifest.store();
        let wal = union_wal(files.iter().flat_map(|f| f.wal.iter()));
        let mut outputs = write_outputs(store, &spec, &stay, wal.clone(), &mut |_, _| {})?;
        if outputs.is_empty() && !wal.is_empty() {
            outputs.push(write_tombstone(store, &spec, wal, 0)?);
        }
        commit(a, &outputs, files, (&key, &a.token), emit)
    })?;
    report_retired(a, files, emit);
    Ok(moved)
}

/// The region (index in the config) the router sends each row to, by its tags.
fn route_rows(batch: &RecordBatch, router: &Router) -> Result<Vec<usize>> {
    let schema = batch.schema();
    let tags: Vec<(String, StringArray)> = crate::storage::schema::tag_indices(&schema)
        .into_iter()
        .map(|i| {
            let col = batch.column(i);
            let strings = match col.as_any().downcast_ref::<DictionaryArray<Int32Type>>() {
                Some(d) => arrow::compute::cast(d, &arrow::datatypes::DataType::Utf8),
                None => arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8),
            }
            .map_err(arrow_err(format!("reading tag {}", schema.field(i).name())))?;
            let strings = strings
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| {
                    CompactionError::Reroute(format!("tag {} is not text", schema.field(i).name()))
                })?;
            Ok((schema.field(i).name().clone(), strings))
        })
        .collect::<Result<_>>()?;
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut row_tags: Vec<(&str, &str)> = Vec::new();
    for row in 0..batch.num_rows() {
        row_tags.clear();
        for (k, col) in &tags {
            if col.is_valid(row) {
                row_tags.push((k.as_str(), col.value(row)));
            }
        }
        out.push(router.route(&row_tags).0.0);
    }
    Ok(out)
}
