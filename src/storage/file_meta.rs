//! What the catalog knows of one data file without opening it ([`FileMeta`]), and the WAL
//! records a file holds ([`WalRange`]), so that WAL replay after a crash skips them.

use serde::{Deserialize, Serialize};

use crate::model::ColumnKind;

/// WAL records `[min_seq, max_seq]` of one ingest shard, contained in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRange {
    pub shard: usize,
    pub min_seq: u64,
    pub max_seq: u64,
}

/// One live Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Unique, increasing per region: a later seq holds later writes of the same series.
    pub seq: u64,
    /// Path relative to the region directory, `/`-separated.
    pub path: String,
    pub db: String,
    pub measurement: String,
    pub partition_start: i64,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub bytes: u64,
    /// Every column but `time`, with its kind.
    pub columns: Vec<(String, ColumnKind)>,
    #[serde(default)]
    pub wal: Vec<WalRange>,
}

impl FileMeta {
    /// The names of its tag columns.
    pub fn tag_names(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|(_, k)| matches!(k, ColumnKind::Tag))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}
