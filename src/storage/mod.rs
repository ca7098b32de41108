//! On-disk storage: names of every file ([`paths`]) and the Parquet format ([`parquet`]).

pub mod merge;
pub mod parquet;
pub mod paths;
