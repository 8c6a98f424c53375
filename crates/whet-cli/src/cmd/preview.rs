//! `whet preview`: originals and their augmented versions in a labelled grid.

use crate::Cli;
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
    let run = super::load(cli, pipeline)?;
    run.preview(out, samples, versions)?;
    crate::outln!("wrote {}", out.display())?;
    Ok(())
}
