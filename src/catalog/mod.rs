//! The catalog: which Parquet files are live, per region ([`manifest`]).

pub mod manifest;

pub use manifest::{FileMeta, Manifest, ManifestEdit, WalRange};
