//! Flush: frozen chunks of a block → one sorted, deduplicated, zstd Parquet file.
//!
//! The crash-safe order, step by step (each step only after the previous is durable):
//! 1. sort by tag set then time, merge duplicates (`block::SortedRows`; each field column
//!    is gathered from the block when it is encoded);
//! 2. write the file under a temporary name, make it durable, rename it into place, make the
//!    directories durable (`storage::parquet::write_files`; the small blocks of a shard
//!    flushed together share one file-system sync);
//! 3. record the files in the region manifest (one durable edit for the job), with the WAL
//!    ranges each covers;
//! 4. (the shard) drop the in-memory copy, so queries switch to the file;
//! 5. (the shard) delete WAL segments whose every record is now in a file.
//!
//! A crash before 3 leaves an orphan file, deleted at start-up, and the WAL still holds the
//! rows; a crash after 3 leaves WAL records that replay skips because the manifest covers them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::catalog::{FileMeta, Manifest, ManifestEdit, WalRange};
use crate::model::PartitionStart;
use crate::region::block::{Chunk, SortedRows};
use crate::storage::packed::{self, StagedPacked};
use crate::storage::parquet::{FLUSH_PAGE_ROWS, FLUSH_ZSTD_LEVEL};
use crate::storage::paths::{data_file_rel, packed_file_rel};
use crate::storage::store::FileRef;
use crate::storage::writer::{FileSpec, Staged, discard, stage_file};

/// Identity of a block: (db, measurement, partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    pub db: Arc<str>,
    pub measurement: Arc<str>,
    pub partition: PartitionStart,
}

/// One block to write as one file.
pub struct FlushPart {
    pub key: BlockKey,
    pub chunks: Vec<Arc<Chunk>>,
    pub file_seq: u64,
    pub wal: Vec<WalRange>,
    /// The block's counted memory.
    pub bytes: u64,
}

/// Everything needed to write the files of one flush: one block, or many small ones of a
/// shard flushed together (one sync and one manifest edit for all of them).
pub struct FlushJob {
    /// Shared storage: the lease epoch the job was submitted under (0: none), which fences
    /// its manifest edit.
    pub fence: Option<u64>,
    pub region_name: Arc<str>,
    pub manifest: Arc<Manifest>,
    pub parts: Vec<FlushPart>,
    pub partition_duration_ns: i64,
    pub row_group_rows: usize,
    pub time_unit: crate::config::FileTimeUnit,
}

/// What a flush holds per row beside the block while it runs: the sort's keys (16 bytes,
/// while sorting), the rows kept and their picks from the chunks (up to 20), the time and
/// tag key columns (12), one field column gathered and its encoded pages (about 16).
const STAGING_ROW_BYTES: u64 = 64;

impl FlushPart {
    /// Rows in its chunks (duplicates not yet merged).
    pub fn rows(&self) -> usize {
        self.chunks.iter().map(|c| c.rows()).sum()
    }

    /// Memory the flush of this part holds beside the block: per row (above), and the
    /// encoding trial's copy of its middle rows in every column (the block's share of them:
    /// all of a block of fewer rows, such as a wide one).
    pub fn staging(&self) -> u64 {
        let rows: u64 = self.chunks.iter().map(|c| c.rows() as u64).sum();
        let (_, trial) = crate::storage::parquet::trial_span(rows as usize);
        let sample = (self.bytes as u128 * trial as u128 / u128::from(rows.max(1))) as u64;
        rows.saturating_mul(STAGING_ROW_BYTES)
            .saturating_add(sample)
    }
}

impl FlushJob {
    /// Memory the job holds beside its blocks while it runs (parts are written one after
    /// another, their keys kept for the index until the end).
    pub fn staging(&self) -> u64 {
        self.parts.iter().map(FlushPart::staging).sum()
    }
}

/// What a finished flush reports, per file.
#[derive(Debug)]
pub struct FlushOutcome {
    pub rows: u64,
    pub merged: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// A file a flush wrote: where it is, its manifest entry and its rows in file order (time
/// and tag columns), so that the caller can index it without reading it back.
pub struct Written {
    pub file_ref: FileRef,
    pub file: FileMeta,
    pub rows: RecordBatch,
}

/// Runs steps 1–3 for every part: all files are written, made durable together and
/// recorded in one manifest edit. On error nothing is recorded in the manifest (a written
/// file becomes an orphan cleaned at start-up, or is replaced by the retry) and the caller
/// keeps the rows in memory.
pub fn run(job: &FlushJob) -> Result<Vec<(FlushOutcome, Written)>, String> {
    let started = Instant::now();
    // Shared storage: only the lease holder writes, and its edit is refused if another
    // node took the lease over meanwhile.
    if job.fence == Some(0) {
        return Err(format!(
            "this node does not hold region {}'s flush lease",
            job.region_name
        ));
    }
    let fence = job.fence;
    let store = job.manifest.store();
    // Small blocks of one db and partition share packed files; the others get a file each.
    let (packs, alone) = pack_plan(job)?;
    let mut staged: Vec<(Staged, RecordBatch, usize)> = Vec::with_capacity(alone.len());
    let mut packed: Vec<(StagedPacked, Vec<(RecordBatch, usize)>)> = Vec::new();
    let discard_all = |staged: &[(Staged, RecordBatch, usize)],
                       packed: &[(StagedPacked, Vec<(RecordBatch, usize)>)]| {
        discard(&staged.iter().map(|s| &s.0).collect::<Vec<_>>());
        for (p, _) in packed {
            let _ = std::fs::remove_file(&p.tmp);
        }
    };
    for pack in &packs {
        match stage_pack(job, pack) {
            Ok(s) => packed.push(s),
            Err(e) => {
                discard_all(&staged, &packed);
                return Err(e);
            }
        }
    }
    drop(packs);
    for (part, sorted) in alone {
        match stage(job, part, sorted) {
            Ok(s) => staged.push(s),
            Err(e) => {
                discard_all(&staged, &packed);
                return Err(e);
            }
        }
    }
    let mut files: Vec<(std::path::PathBuf, String)> = staged
        .iter()
        .map(|s| (s.0.tmp.clone(), s.0.meta.path.clone()))
        .collect();
    files.extend(packed.iter().map(|(p, _)| (p.tmp.clone(), p.path.clone())));
    store.publish(&files).map_err(|e| e.to_string())?;
    let mut metas: Vec<FileMeta> = staged.iter().map(|s| s.0.meta.clone()).collect();
    metas.extend(packed.iter().flat_map(|(p, _)| p.metas.iter().cloned()));
    let paths: Vec<String> = files.into_iter().map(|(_, p)| p).collect();
    match job.manifest.commit(ManifestEdit {
        add: metas,
        fence,
        ..ManifestEdit::default()
    }) {
        Ok(_) => {}
        Err(e @ crate::catalog::manifest::ManifestError::Conflict(_)) => {
            // Refused: these files are this node's alone (their seqs), and no edit names
            // them, unless an earlier try of this commit did after all (a lost answer).
            let listed = job.manifest.files();
            let unlisted: Vec<String> = paths
                .into_iter()
                .filter(|p| !listed.iter().any(|f| &f.path == p))
                .collect();
            let _ = store.delete(&unlisted);
            return Err(e.to_string());
        }
        Err(e) => return Err(e.to_string()),
    }
    let seconds = started.elapsed().as_secs_f64();
    let packed = packed.into_iter().flat_map(|(p, keys)| {
        p.metas
            .into_iter()
            .zip(keys)
            .map(|(meta, (rows, merged))| (meta, rows, merged))
    });
    let mut by_seq: std::collections::HashMap<u64, (FlushOutcome, Written)> = staged
        .into_iter()
        .map(|(s, rows, merged)| (s.meta, rows, merged))
        .chain(packed)
        .map(|(meta, rows, merged)| {
            (
                meta.seq,
                (
                    FlushOutcome {
                        rows: meta.rows,
                        merged,
                        bytes: meta.bytes,
                        seconds,
                    },
                    Written {
                        file_ref: store.file(&meta),
                        file: meta,
                        rows,
                    },
                ),
            )
        })
        .collect();
    // In the order of the job's parts (the shard matches them by position).
    job.parts
        .iter()
        .map(|p| {
            by_seq
                .remove(&p.file_seq)
                .ok_or_else(|| format!("no file was written for flush seq {}", p.file_seq))
        })
        .collect()
}

/// The small parts of a job sorted, in the packed files they go to (a db and partition
/// each, at least two parts a file); and the parts written alone (with their rows if they
/// were sorted already).
type Packs<'j> = Vec<Vec<(&'j FlushPart, SortedRows)>>;
type Alone<'j> = Vec<(&'j FlushPart, Option<SortedRows>)>;

fn pack_plan(job: &FlushJob) -> Result<(Packs<'_>, Alone<'_>), String> {
    let mut alone: Alone<'_> = Vec::new();
    let mut small: BTreeMap<(&str, i64), Vec<(&FlushPart, SortedRows)>> = BTreeMap::new();
    let candidates = job
        .parts
        .iter()
        .filter(|p| p.rows() <= packed::MAX_PART_ROWS)
        .count();
    for part in &job.parts {
        if candidates < 2 || part.rows() > packed::MAX_PART_ROWS {
            alone.push((part, None));
            continue;
        }
        let sorted = SortedRows::new(&part.chunks).map_err(|e| format!("sorting block: {e}"))?;
        if packed::packable(&part.key.measurement, &sorted.schema(), sorted.num_rows()) {
            small
                .entry((&part.key.db, part.key.partition.0))
                .or_default()
                .push((part, sorted));
        } else {
            alone.push((part, Some(sorted)));
        }
    }
    let mut packs = Vec::new();
    for (_, mut group) in small {
        let schemas: Vec<_> = group.iter().map(|(_, s)| s.schema()).collect();
        let mut taken: Vec<Option<(&FlushPart, SortedRows)>> = group.drain(..).map(Some).collect();
        for bin in packed::bins(&schemas) {
            let mut parts: Vec<_> = bin.iter().filter_map(|i| taken[*i].take()).collect();
            // A part alone in its file is written as an ordinary file.
            match parts.len() {
                1 => alone.extend(parts.pop().map(|(p, s)| (p, Some(s)))),
                _ => packs.push(parts),
            }
        }
    }
    Ok((packs, alone))
}

/// Step 1 for the parts of one packed file.
fn stage_pack(
    job: &FlushJob,
    pack: &[(&FlushPart, SortedRows)],
) -> Result<(StagedPacked, Vec<(RecordBatch, usize)>), String> {
    let first = pack.first().ok_or("an empty pack")?.0;
    // A seq of its own: a retry of the job (an earlier try may have committed after all)
    // never writes over a file whose entries are live.
    let seq = job.manifest.next_file_seq();
    let rel = packed_file_rel(
        &first.key.db,
        first.key.partition,
        job.partition_duration_ns,
        seq,
    );
    let parts: Vec<packed::Part<'_>> = pack
        .iter()
        .map(|(p, rows)| packed::Part {
            rows,
            measurement: &p.key.measurement,
            seq: p.file_seq,
            wal: p.wal.clone(),
            replaces: Vec::new(),
        })
        .collect();
    let spec = packed::PackSpec {
        region: &job.region_name,
        db: &first.key.db,
        partition_start: first.key.partition.0,
        zstd_level: FLUSH_ZSTD_LEVEL,
        page_rows: FLUSH_PAGE_ROWS,
        time_unit: job.time_unit,
        column_index: false,
    };
    let staged = packed::stage_packed(
        job.manifest.store(),
        rel.to_string_lossy().replace('\\', "/"),
        &parts,
        &spec,
    )
    .map_err(|e| e.to_string())?;
    let keys = pack
        .iter()
        .map(|(_, s)| {
            s.keys()
                .map(|k| (k, s.merged))
                .map_err(|e| format!("sorting block: {e}"))
        })
        .collect::<Result<Vec<_>, _>>();
    match keys {
        Ok(keys) => Ok((staged, keys)),
        Err(e) => {
            let _ = std::fs::remove_file(&staged.tmp);
            Err(e)
        }
    }
}

/// Step 1 for one part: sorted, merged and encoded into staging.
/// `sorted`: its rows, when the packing plan sorted them already.
fn stage(
    job: &FlushJob,
    part: &FlushPart,
    sorted: Option<SortedRows>,
) -> Result<(Staged, RecordBatch, usize), String> {
    let sorted = match sorted {
        Some(s) => s,
        None => SortedRows::new(&part.chunks).map_err(|e| format!("sorting block: {e}"))?,
    };
    let rel = data_file_rel(
        &part.key.db,
        &part.key.measurement,
        part.key.partition,
        job.partition_duration_ns,
        part.file_seq,
    );
    let spec = FileSpec {
        region: &job.region_name,
        db: &part.key.db,
        measurement: &part.key.measurement,
        partition_start: part.key.partition.0,
        row_group_rows: job.row_group_rows,
        zstd_level: FLUSH_ZSTD_LEVEL,
        page_rows: FLUSH_PAGE_ROWS,
        time_unit: job.time_unit,
        // Rewritten by `meridian-compact`, which writes it; Meridian does not read it.
        column_index: false,
    };
    let staged = stage_file(
        job.manifest.store(),
        rel.to_string_lossy().replace('\\', "/"),
        part.file_seq,
        &sorted,
        &spec,
        part.wal.clone(),
    )
    .map_err(|e| e.to_string())?;
    // The file's index needs the time and tag columns only.
    let keys = sorted.keys().map_err(|e| format!("sorting block: {e}"))?;
    Ok((staged, keys, sorted.merged))
}
