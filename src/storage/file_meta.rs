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
    /// Set when the file is packed with other measurements' (`storage::packed`): `path` is
    /// shared with them, `bytes` is this entry's share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed: Option<Packed>,
}

/// Where an entry of a packed file is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packed {
    /// Its row group.
    pub row_group: u32,
    /// The whole file's size in bytes.
    pub file_bytes: u64,
    /// How many measurements (row groups) the file holds: fewer live entries leave dead
    /// rows in it, which compaction rewrites away.
    pub row_groups: u32,
}

impl FileMeta {
    /// What names this entry in a manifest edit: its path, and for a packed file's entry
    /// its row group too (`<path>#<row group>`; no data file name ends so).
    pub fn id(&self) -> std::borrow::Cow<'_, str> {
        match self.packed {
            None => std::borrow::Cow::Borrowed(&self.path),
            Some(p) => std::borrow::Cow::Owned(format!("{}#{}", self.path, p.row_group)),
        }
    }

    /// A packed file's entry: its row group.
    pub fn row_group(&self) -> Option<usize> {
        self.packed.map(|p| p.row_group as usize)
    }

    /// The size of the file on disk (a packed file's whole size).
    pub fn file_bytes(&self) -> u64 {
        self.packed.map_or(self.bytes, |p| p.file_bytes)
    }

    /// The names of its tag columns.
    pub fn tag_names(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|(_, k)| matches!(k, ColumnKind::Tag))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}
