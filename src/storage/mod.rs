//! The storage access layer: every name on disk ([`paths`]), the file schema ([`schema`]),
//! what the catalog records of a file ([`file_meta`]), the Parquet writer ([`parquet`]), the
//! read side that queries use (series [`index`], its [`cache`], decoded [`pages`], ranged
//! [`prefetch`]), the merge of overlapping rows ([`merge`]) and float fields stored as
//! scaled integers ([`scaled`]), and the encoder that pages columns by series ([`paged`]).

pub mod aligned;
pub mod cache;
pub mod file_cache;
pub mod file_meta;
pub mod index;
pub mod merge;
pub mod packed;
pub mod paged;
pub mod pages;
pub mod parquet;
pub mod paths;
pub mod prefetch;
pub mod scaled;
pub mod schema;
pub mod store;
pub mod writer;

/// A small deterministic generator for the storage tests' data: each call gives a number
/// below its argument.
#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed;
    move |below: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // The high 53 bits: enough for values near 2^40.
        (state >> 11) % below.max(1)
    }
}

/// The pages of leaf column `col` over every row group of the Parquet file `bytes`, as
/// the parquet crate reads them (decompressed).
#[cfg(test)]
pub(crate) fn test_pages(bytes: &[u8], col: usize) -> Vec<::parquet::column::page::Page> {
    use ::parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    let mut out = Vec::new();
    for g in 0..r.num_row_groups() {
        let mut pages = r
            .get_row_group(g)
            .unwrap()
            .get_column_page_reader(col)
            .unwrap();
        while let Some(p) = pages.get_next_page().unwrap() {
            out.push(p);
        }
    }
    out
}

/// Data pages of leaf column `col` over every row group of the Parquet file `bytes` (the
/// storage tests' check of where pages end).
#[cfg(test)]
pub(crate) fn test_data_pages(bytes: &[u8], col: usize) -> usize {
    test_pages(bytes, col)
        .iter()
        .filter(|p| p.page_type() == ::parquet::basic::PageType::DATA_PAGE)
        .count()
}
