//! Progress bars (indicatif) behind the libraries' [`Progress`] trait.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;
use whet_core::Progress;

/// Draws one bar per phase on stderr; hidden with `--quiet` or when stderr is not a terminal.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
    prefix: String,
}

impl Bars {
    /// A new set of bars; `quiet` hides them.
    pub fn new(quiet: bool) -> Self {
        Bars {
            bar: Mutex::new(None),
            quiet,
            prefix: String::new(),
        }
    }

    /// Bars whose labels start with `prefix` (e.g. the variant and seed of an ablation run).
    pub fn with_prefix(quiet: bool, prefix: impl Into<String>) -> Self {
        Bars {
            bar: Mutex::new(None),
            quiet,
            prefix: prefix.into(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Progress for Bars {
    fn begin(&self, phase: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} {msg:<28} [{bar:30}] {pos}/{len} {elapsed}/{eta} {per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        if self.quiet {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        } else {
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        }
        bar.set_prefix(self.prefix.clone());
        bar.set_message(phase.to_string());
        if let Some(old) = self.lock().replace(bar) {
            old.finish_and_clear();
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = self.lock().as_ref() {
            b.inc(n);
        }
    }
    fn message(&self, msg: &str) {
        if let Some(b) = self.lock().as_ref() {
            b.set_message(msg.to_string());
        }
    }
    fn end(&self) {
        if let Some(b) = self.lock().take() {
            b.finish_and_clear();
        }
    }
    fn warn(&self, message: &str) {
        let line = format!("warning: {message}");
        match self.lock().as_ref() {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
