//! Where a checked write goes: the regions' nodes, directly or through NATS JetStream.
//!
//! A write is checked and routed by the node that received it (`region::prepare`); what is
//! left is to make each region's part durable where the region lives. That is the job of a
//! [`WriteDispatch`]:
//!
//! ```text
//!   http/write.rs ── prepare ──▶ Dispatch { db, parts per (region, shard) }
//!                                     │
//!            ┌────────────────────────┴─────────────────────────┐
//!   single node / --region (forward.rs)          cluster mode (jetstream.rs)
//!   local parts: Engine::commit (WAL)            the whole body: one message to MERIDIAN_IN
//!   other regions: POST to the region's url      → split per region → MERIDIAN_R_<region>
//!                                                → applied by every node hosting it
//! ```
//!
//! `http` maps a [`DispatchError`] to a status and knows nothing else of either path.
//! Single-node mode builds [`forward::Direct`] and never touches NATS.
//!
//! The node-to-node HTTP client ([`remote::RemoteClient`]) lives here too: the query layer
//! asks other nodes through its `query::remote::NodeClient` trait, which it implements.

pub mod forward;
pub mod jetstream;
pub mod lease;
pub mod remote;
pub mod routing_kv;
pub mod wire;

use std::future::Future;
use std::pin::Pin;

use crate::model::{RegionId, ShardId};
use crate::region::WriteError;
use crate::region::prepare::ShardBatch;

/// A checked write: every accepted row, in parts per (region, ingest shard).
pub struct Dispatch {
    pub db: String,
    pub parts: Vec<((RegionId, ShardId), ShardBatch)>,
    /// Wait for the WAL fsync (`wal.sync = always`) before answering.
    pub sync: bool,
    /// The body came from another node (single-node forwarding): never forward it again.
    pub forwarded: bool,
}

/// Why a write was not acknowledged. In every case nothing of it was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// A local commit failed.
    #[error(transparent)]
    Local(#[from] WriteError),
    /// A region's node refused or could not be reached (HTTP status it answered, or 503).
    #[error("{message}")]
    Remote { status: u16, message: String },
    /// The body cannot be carried (larger than the log's message limit).
    #[error("{0}")]
    TooLarge(String),
    /// The log (JetStream) did not acknowledge the body in time.
    #[error("{0}")]
    Unavailable(String),
}

pub type DispatchFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DispatchError>> + Send + 'a>>;

/// Makes a checked write durable where its regions live; Ok once it is acknowledged whole.
pub trait WriteDispatch: Send + Sync {
    fn dispatch(&self, write: Dispatch) -> DispatchFuture<'_>;
}
