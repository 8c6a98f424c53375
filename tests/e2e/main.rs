//! End-to-end tests: the `whet` binary on run files, as a user runs it.
//!
//! Registered by `whet-cli` (`[[test]] name = "e2e"`). Each test works in its own temporary
//! folder; data comes from the repository's `datasets/`.

mod bad_input;
mod budgets;
mod catalogue;
mod cli;
mod cluster;
mod concurrency;
mod data_options;
mod export_model;
mod hostile_paths;
mod imbalanced;
mod interrupt;
mod messages;
mod pinned;
mod pipelines;
mod predict;
mod regression;
mod shards;
mod slurm;
mod stream_tables;
mod sweep;
mod tracking;
mod util;
mod validate_data;
