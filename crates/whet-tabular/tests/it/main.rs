//! Integration tests of whet-tabular (one binary, as polars does).

mod flights;
mod parquet_guard;
mod sklearn;
