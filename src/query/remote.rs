//! Regions hosted by other nodes: the wire form of a region's partial answer, and the
//! client that asks a node for it.
//!
//! A node asked by `POST /api/v1/internal/partial?region=NAME` (body: the query's parameters
//! as a JSON object) scans that region and answers a [`WireAnswer`]; the coordinator merges
//! it like a local partial. Accumulators travel as they are, so merging stays exact. The
//! query layer asks through [`NodeClient`]; its HTTP client lives in `cluster::remote`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::agg::{Acc, Value};
use super::scan::{AggPartial, GroupKey, Partial, RawPartial, ScanStats};

/// Per group: (bucket, one accumulator per field).
pub type WireAggGroups = Vec<(GroupKey, Vec<(i64, Vec<Acc>)>)>;
/// Per group: (time, one value per column).
pub type WireRawGroups = Vec<(GroupKey, Vec<(i64, Vec<Value>)>)>;

#[derive(Debug, Serialize, Deserialize)]
pub enum WirePartial {
    Agg {
        fields: Vec<String>,
        groups: WireAggGroups,
    },
    Raw {
        columns: Vec<String>,
        tag_columns: usize,
        groups: WireRawGroups,
        rows: usize,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireAnswer {
    pub partial: WirePartial,
    pub stats: ScanStats,
}

impl From<Partial> for WirePartial {
    fn from(p: Partial) -> WirePartial {
        match p {
            Partial::Agg(a) => WirePartial::Agg {
                fields: a.fields,
                groups: a
                    .groups
                    .into_iter()
                    .map(|(k, b)| (k, b.into_iter().collect()))
                    .collect(),
            },
            Partial::Raw(r) => WirePartial::Raw {
                columns: r.columns,
                tag_columns: r.tag_columns,
                groups: r.groups.into_iter().collect(),
                rows: r.rows,
            },
        }
    }
}

impl From<WirePartial> for Partial {
    fn from(w: WirePartial) -> Partial {
        match w {
            WirePartial::Agg { fields, groups } => {
                let groups = groups
                    .into_iter()
                    .map(|(k, b)| (k, b.into_iter().collect::<BTreeMap<_, _>>()))
                    .collect::<HashMap<_, _>>();
                Partial::Agg(AggPartial {
                    fields,
                    entries: groups.values().map(BTreeMap::len).sum(),
                    groups,
                })
            }
            WirePartial::Raw {
                columns,
                tag_columns,
                groups,
                rows,
            } => Partial::Raw(RawPartial {
                columns,
                tag_columns,
                groups: groups.into_iter().collect(),
                rows,
                bytes: 0,
            }),
        }
    }
}

/// What a node's schema registry holds for one database (`GET
/// /api/v1/internal/schema?db=`): per measurement, its columns and their kinds. A node
/// knows the columns of the regions it hosts; InfluxQL's wildcards and SHOW statements
/// need the union over every region.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WireSchema {
    pub measurements: Vec<(String, Vec<(String, crate::model::ColumnKind)>)>,
}

/// Marks an error a node answered (it is up): a statement fails with it rather than leave
/// the node's regions out as if it were down.
pub const NODE_ERROR: &str = "the node answered an error";

/// A SHOW statement's answer: per series, its name, columns and rows.
pub type ShowAnswer = Vec<(String, Vec<String>, Vec<Vec<String>>)>;

/// Other nodes, as the query layer asks them (implemented over HTTP by
/// `cluster::remote::RemoteClient`; the query layer needs no HTTP client of its own).
pub trait NodeClient: Send + Sync {
    /// A region's partial answer from the nodes hosting it: the first of `urls`, then the
    /// next whenever every node asked so far failed or `hedge` passed without an answer.
    fn partial_any<'a>(
        &'a self,
        urls: &'a [String],
        region: &'a str,
        params: &'a HashMap<String, String>,
        hedge: Duration,
    ) -> BoxFuture<'a, Result<WireAnswer, String>>;

    /// The schema of `db` on the nodes hosting a region, asked as `partial_any` asks.
    fn schema_any<'a>(
        &'a self,
        urls: &'a [String],
        db: &'a str,
        hedge: Duration,
    ) -> BoxFuture<'a, Result<WireSchema, String>>;

    /// A SHOW statement's answer from the nodes hosting a region (asked as `partial_any`
    /// asks), for their own regions: per series, its name, columns and rows (as strings).
    fn show_any<'a>(
        &'a self,
        urls: &'a [String],
        db: &'a str,
        q: &'a str,
        hedge: Duration,
    ) -> BoxFuture<'a, Result<ShowAnswer, String>>;

    /// Runs an InfluxQL statement (a delete) on the node at `url`.
    fn forward_statement<'a>(
        &'a self,
        url: &'a str,
        db: &'a str,
        q: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Cluster mode's write path, as a delete needs it: writes acknowledged before the delete
/// was asked must be applied before it runs, or they would come back after it.
pub trait WriteBarrier: Send + Sync {
    /// Waits, at most `within`, until this node's acknowledged bodies are in their regions'
    /// logs and the logs of the regions it hosts are applied up to their ends.
    fn settle(&self, within: Duration) -> BoxFuture<'_, Result<(), String>>;
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The other nodes, shared by every request.
pub type Nodes = std::sync::Arc<dyn NodeClient>;
