//! `whet audit`: the input audit of a tabular pipeline, as a table or JSON.

use crate::Cli;
use crate::progress::Bars;
use anyhow::Result;
use std::path::Path;

/// Prints the audit of the columns the network would see (after the joins and exclusions that
/// precede the first `audit` step, or all pre-split steps).
///
/// # Errors
/// Bad input, or an image pipeline (there are no columns to audit).
pub fn audit(cli: &Cli, pipeline: &Path) -> Result<()> {
    let run = super::load(cli, pipeline)?;
    let report = run.audit(&Bars::for_cli(cli))?;
    if cli.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::outln!(
            "audit of `{}`: {} rows, target `{}`",
            run.name(),
            report.rows,
            report.target.as_deref().unwrap_or("-")
        )?;
        if report.flags.is_empty() {
            crate::outln!("no column flagged")?;
        } else {
            crate::out!("{}", report.to_table())?;
        }
    }
    Ok(())
}
