//! The catalog: which Parquet files are live, per region ([`manifest`]).

pub mod leftovers;
pub mod manifest;
pub mod rebuild;

pub use manifest::{FileMeta, Manifest, ManifestEdit, WalRange};
