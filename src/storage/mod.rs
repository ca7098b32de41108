//! The storage access layer: every name on disk ([`paths`]), the file schema ([`schema`]),
//! what the catalog records of a file ([`file_meta`]), the Parquet writer ([`parquet`]), the
//! read side that queries use (series [`index`], its [`cache`], decoded [`pages`], ranged
//! [`prefetch`]), the merge of overlapping rows ([`merge`]) and float fields stored as
//! scaled integers ([`scaled`]).

pub mod cache;
pub mod file_cache;
pub mod file_meta;
pub mod index;
pub mod merge;
pub mod paged;
pub mod pages;
pub mod parquet;
pub mod paths;
pub mod prefetch;
pub mod scaled;
pub mod schema;
pub mod store;
pub mod writer;
