//! `whet completions` and `whet man`: the shell completion scripts (clap_complete) and the
//! man pages (clap_mangen), both generated from the command-line definition ([`crate::Cli`]),
//! so they never fall behind it.

use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;

/// `whet completions SHELL`: the completion script on standard output.
///
/// # Errors
/// Standard output cannot be written.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "whet", &mut script);
    crate::out!("{}", String::from_utf8_lossy(&script))
}

/// `whet man [--out DIR]`: `whet.1` on standard output, or `whet.1` and one `whet-COMMAND.1`
/// per command written into `DIR` (created if missing).
///
/// # Errors
/// A page cannot be rendered or written.
pub fn man(out: Option<&Path>) -> Result<()> {
    let mut cmd = crate::Cli::command().disable_help_subcommand(true);
    cmd.build();
    match out {
        None => crate::out!("{}", render(&cmd)?),
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating `{}`", dir.display()))?;
            let mut pages = vec![cmd.clone()];
            pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
            for page in pages {
                let name = clap_mangen::Man::new(page.clone()).get_filename();
                let path = dir.join(&name);
                whet_core::fsx::atomic_write(&path, render(&page)?.as_bytes())
                    .with_context(|| format!("writing `{}`", path.display()))?;
                crate::outln!("{}", path.display())?;
            }
            Ok(())
        }
    }
}

/// One command's man page, as roff.
fn render(cmd: &clap::Command) -> Result<String> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("rendering the man page")?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}
