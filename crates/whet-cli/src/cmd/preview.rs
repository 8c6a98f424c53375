//! `whet preview`: originals and their augmented versions in a labelled grid.

use crate::Cli;
use crate::config::DataKind;
use anyhow::Result;
use std::path::Path;

/// Writes the preview grid of the run file's augmentation to `out`.
///
/// # Errors
/// Bad input, a tabular pipeline, or a PNG that cannot be written.
pub fn preview(
    cli: &Cli,
    pipeline: &Path,
    out: &Path,
    samples: usize,
    versions: usize,
) -> Result<()> {
    let loaded = super::load(cli, pipeline)?;
    if loaded.run.kind() != DataKind::Images {
        anyhow::bail!(
            "`whet preview` shows image augmentation; `{}` uses tables (try `whet audit`)",
            pipeline.display()
        );
    }
    if !(1..=64).contains(&samples) || !(1..=32).contains(&versions) {
        anyhow::bail!(
            "--samples must be 1 to 64 and --versions 1 to 32 (got {samples} and {versions})"
        );
    }
    crate::images::preview(&loaded.run, out, samples, versions)?;
    println!("wrote {}", out.display());
    Ok(())
}
