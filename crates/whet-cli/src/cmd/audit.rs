//! `whet audit`: the input audit of a tabular pipeline, as a table or JSON.

use crate::Cli;
use crate::config::DataKind;
use crate::progress::Bars;
use anyhow::Result;
use std::path::Path;

/// Prints the audit of the columns the network would see (after the joins and exclusions that
/// precede the first `audit` step, or all pre-split steps).
///
/// # Errors
/// Bad input, or an image pipeline (there are no columns to audit).
pub fn audit(cli: &Cli, pipeline: &Path) -> Result<()> {
    let loaded = super::load(cli, pipeline)?;
    if loaded.run.kind() != DataKind::Tables {
        anyhow::bail!(
            "`whet audit` audits table columns; `{}` uses image data",
            pipeline.display()
        );
    }
    let cfg = crate::data::tabular_config(&loaded.run)?;
    let bars = Bars::new(cli.quiet);
    let report = crate::data::catch_corrupt_tables(cfg.data.tables.values(), || {
        Ok(whet_tabular::audit(&cfg, &bars)?)
    })?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "audit of `{}`: {} rows, target `{}`",
            loaded.run.name,
            report.rows,
            report.target.as_deref().unwrap_or("-")
        );
        if report.flags.is_empty() {
            println!("no column flagged");
        } else {
            print!("{}", report.to_table());
        }
    }
    Ok(())
}
