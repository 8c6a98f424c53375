//! Progress on stderr behind the libraries' [`Progress`] trait: bars (indicatif) in a terminal,
//! plain lines in a log, JSON lines for machines.
//!
//! What is shown depends on where stderr goes and on `--log-format`:
//! - a terminal, `text` (the default): one bar per phase, at most as wide as the terminal; each
//!   finished epoch stays on screen as one line above the bar;
//! - not a terminal (a file, a pipe, CI), `text`: no bars and no spinners; one line per finished
//!   epoch, one per finished run or ablation cell, and the warnings;
//! - `jsonl` (anywhere): the same events, one JSON object per line, with an `event` field
//!   (`epoch`, `run`, `warning`).
//!
//! `--quiet` hides the bars, the epochs and the runs; warnings are always written.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;
use whet_core::{EpochLine, Progress, RunLine};

/// The format of progress and warnings on stderr (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Bars in a terminal; plain lines otherwise.
    #[default]
    Text,
    /// One JSON object per event (epoch, finished run, warning), never bars.
    Jsonl,
}

/// Where the events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bars, and lines kept above them.
    Terminal,
    /// Plain lines.
    Text,
    /// JSON lines.
    Jsonl,
}

/// Shows progress on stderr as [`LogFormat`] and the terminal say (see the module docs).
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    mode: Mode,
    quiet: bool,
    prefix: String,
}

impl Bars {
    /// Progress in `format`; `quiet` hides everything but warnings. Bars are drawn only when
    /// stderr is a terminal and the format is text.
    pub fn new(quiet: bool, format: LogFormat) -> Self {
        let mode = match format {
            LogFormat::Jsonl => Mode::Jsonl,
            LogFormat::Text if std::io::stderr().is_terminal() => Mode::Terminal,
            LogFormat::Text => Mode::Text,
        };
        Bars {
            bar: Mutex::new(None),
            mode,
            quiet,
            prefix: String::new(),
        }
    }

    /// Progress as the command line's `--quiet` and `--log-format` say.
    pub fn for_cli(cli: &crate::Cli) -> Self {
        Self::new(cli.quiet, cli.log_format)
    }

    /// The same, with labels and lines starting with `prefix` (e.g. `pretrain`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `prefix line`, or `line` without a prefix.
    fn prefixed(&self, line: &str) -> String {
        if self.prefix.is_empty() {
            line.to_string()
        } else {
            format!("{} {line}", self.prefix)
        }
    }

    /// A JSON object for an event: `event`, the prefix as `phase` when there is one, then
    /// `fields` (an object).
    fn json(&self, event: &str, fields: serde_json::Value) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("event".into(), event.into());
        if !self.prefix.is_empty() {
            obj.insert("phase".into(), self.prefix.clone().into());
        }
        if let serde_json::Value::Object(f) = fields {
            obj.extend(f);
        }
        serde_json::Value::Object(obj).to_string()
    }

    /// Writes a line on stderr: above the bar in a terminal (so the bar is redrawn below it),
    /// as is otherwise. A closed stderr is ignored (progress is never worth failing a run).
    fn line(&self, text: &str) {
        let write = || {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        };
        match self.lock().as_ref() {
            Some(b) if self.mode == Mode::Terminal => b.suspend(write),
            _ => write(),
        }
    }
}

/// A bar over `total` units fitting the terminal: the phase (cut at 24 columns), a bar taking
/// the rest of the width, the count and the time left.
fn bar_style(total: Option<u64>) -> ProgressStyle {
    let template = match total {
        Some(_) => "{prefix:.bold}{msg:<24!} [{wide_bar}] {pos}/{len} {eta}",
        None => "{prefix:.bold}{spinner} {wide_msg} {elapsed}",
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn begin(&self, phase: &str, total: Option<u64>) {
        if self.quiet || self.mode != Mode::Terminal {
            return;
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        }
        .with_style(bar_style(total));
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        if !self.prefix.is_empty() {
            bar.set_prefix(format!("{} ", self.prefix));
        }
        bar.set_message(phase.to_string());
        if total.is_none() {
            // A spinner that is not ticked looks stuck while the phase works.
            bar.enable_steady_tick(Duration::from_millis(120));
        }
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
        match self.mode {
            Mode::Jsonl => {
                self.line(&self.json("warning", serde_json::json!({ "message": message })));
            }
            Mode::Terminal | Mode::Text => self.line(&format!("warning: {message}")),
        }
    }
    fn epoch(&self, e: &EpochLine) {
        if self.quiet {
            return;
        }
        match self.mode {
            Mode::Jsonl => self.line(&self.json(
                "epoch",
                serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
            )),
            // In a terminal the cells of an ablation run under one bar that counts them: their
            // epochs would scroll it away (a log keeps them).
            Mode::Terminal if e.run.is_some() => {}
            Mode::Terminal | Mode::Text => self.line(&self.prefixed(&e.to_string())),
        }
    }
    fn finished(&self, r: &RunLine) {
        if self.quiet {
            return;
        }
        match self.mode {
            Mode::Jsonl => self.line(&self.json(
                "run",
                serde_json::to_value(r).unwrap_or(serde_json::Value::Null),
            )),
            Mode::Text => self.line(&self.prefixed(&r.to_string())),
            // In a terminal a run's end is worth a line only inside a longer phase (an
            // ablation's cells); a single run prints its summary next.
            Mode::Terminal => {
                let inside_a_phase = self.lock().is_some();
                if inside_a_phase {
                    self.line(&self.prefixed(&r.to_string()));
                }
            }
        }
    }
}
