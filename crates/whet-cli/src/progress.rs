//! Progress on stderr behind the libraries' [`Progress`] trait: bars (indicatif) in a terminal,
//! plain lines in a log, JSON lines for machines.
//!
//! What is shown depends on where stderr goes and on `--log-format`:
//! - a terminal, `text` (the default): one bar per phase, at most as wide as the terminal; each
//!   finished epoch stays on screen as one line above the bar;
//! - not a terminal (a file, a pipe, CI), `text`: no bars and no spinners; one line per finished
//!   epoch, one per finished run or ablation cell, and the warnings; a phase that runs longer
//!   than [`LOG_EVERY`] (a streamed table's pass, a prediction over a large file) gets a line
//!   every [`LOG_EVERY`] with its count, and one when it ends, so a log shows long work as it
//!   goes (short phases stay silent);
//! - `jsonl` (anywhere): the same events, one JSON object per line, with an `event` field
//!   (`epoch`, `run`, `warning`, `progress`).
//!
//! `--quiet` hides the bars, the epochs and the runs; warnings are always written.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use whet_core::{EpochLine, Progress, RunLine};

/// How often a long phase writes a line in a log (not a terminal).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A phase followed in a log: what it counts, how far it is, when it began and when it last
/// wrote a line.
#[derive(Debug, Clone)]
struct Phase {
    name: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
}

impl Phase {
    fn new(name: &str, total: Option<u64>, now: Instant) -> Self {
        Phase {
            name: name.to_string(),
            total,
            done: 0,
            started: now,
            last: now,
        }
    }

    /// The count so far: `done/total (p %)` or `done`.
    fn count(&self) -> String {
        match self.total {
            Some(t) if t > 0 => format!(
                "{}/{t} ({:.0} %)",
                self.done,
                self.done as f64 * 100.0 / t as f64
            ),
            _ => self.done.to_string(),
        }
    }

    /// The line due at `now` while the phase runs: one once [`LOG_EVERY`] has passed since the
    /// last (or the start).
    fn due(&mut self, now: Instant) -> Option<String> {
        if now.duration_since(self.last) < LOG_EVERY {
            return None;
        }
        self.last = now;
        Some(format!(
            "{}: {} after {:.0} s",
            self.name,
            self.count(),
            now.duration_since(self.started).as_secs_f64()
        ))
    }

    /// The line when the phase ends at `now`: only for a phase that ran [`LOG_EVERY`] or more.
    fn ended(&self, now: Instant) -> Option<String> {
        let took = now.duration_since(self.started);
        (took >= LOG_EVERY).then(|| {
            format!(
                "{}: finished, {} in {:.1} s",
                self.name,
                self.count(),
                took.as_secs_f64()
            )
        })
    }
}

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
    /// The phase followed in a log (text outside a terminal, or JSON lines).
    phase: Mutex<Option<Phase>>,
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
            phase: Mutex::new(None),
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

impl Bars {
    fn phase(&self) -> std::sync::MutexGuard<'_, Option<Phase>> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A log line about the phase: text, or a `progress` event.
    fn phase_line(&self, text: Option<String>, p: &Phase, finished: bool) {
        let Some(text) = text else {
            return;
        };
        match self.mode {
            Mode::Jsonl => self.line(&self.json(
                "progress",
                serde_json::json!({
                    "name": p.name,
                    "done": p.done,
                    "total": p.total,
                    "seconds": p.started.elapsed().as_secs_f64(),
                    "finished": finished,
                }),
            )),
            _ => self.line(&self.prefixed(&text)),
        }
    }
}

impl Progress for Bars {
    fn begin(&self, phase: &str, total: Option<u64>) {
        if self.quiet {
            return;
        }
        if self.mode != Mode::Terminal {
            let now = Instant::now();
            let old = self.phase().replace(Phase::new(phase, total, now));
            if let Some(old) = old {
                self.phase_line(old.ended(now), &old, true);
            }
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
        let due = match self.phase().as_mut() {
            Some(p) => {
                p.done = p.done.saturating_add(n);
                p.due(Instant::now()).map(|line| (line, p.clone()))
            }
            None => None,
        };
        if let Some((line, p)) = due {
            self.phase_line(Some(line), &p, false);
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
        let ended = self.phase().take();
        if let Some(p) = ended {
            self.phase_line(p.ended(Instant::now()), &p, true);
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

#[cfg(test)]
mod phase_tests {
    use super::*;

    /// A long phase writes a line every `LOG_EVERY` with its count, and one when it ends; a
    /// short one writes nothing.
    #[test]
    fn a_long_phase_writes_lines_in_a_log_and_a_short_one_none() {
        let t0 = Instant::now();
        let mut p = Phase::new("stream: fit steps[4].impute", Some(400), t0);
        p.done = 100;
        assert_eq!(p.due(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            p.due(t0 + Duration::from_secs(10)).as_deref(),
            Some("stream: fit steps[4].impute: 100/400 (25 %) after 10 s")
        );
        p.done = 300;
        // The next line is due 10 s after the last one.
        assert_eq!(p.due(t0 + Duration::from_secs(19)), None);
        assert!(
            p.due(t0 + Duration::from_secs(20))
                .unwrap()
                .contains("300/400 (75 %)")
        );
        p.done = 400;
        assert_eq!(
            p.ended(t0 + Duration::from_millis(21_500)).as_deref(),
            Some("stream: fit steps[4].impute: finished, 400/400 (100 %) in 21.5 s")
        );
        let mut short = Phase::new("read", None, t0);
        short.done = 7;
        assert_eq!(short.due(t0 + Duration::from_secs(3)), None);
        assert_eq!(short.ended(t0 + Duration::from_secs(3)), None);
    }
}
