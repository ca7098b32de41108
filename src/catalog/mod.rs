//! The catalog: which Parquet files are live, per region ([`manifest`]), and every series
//! of every measurement ([`series`]).

pub mod databases;
pub mod leftovers;
pub mod legacy;
pub mod manifest;
pub mod rebuild;
pub mod routing_log;
pub mod series;

pub use manifest::{FileMeta, Lease, Manifest, ManifestEdit, WalRange};
