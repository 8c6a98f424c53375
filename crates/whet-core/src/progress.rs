//! Progress reporting from libraries, without a terminal dependency.
//!
//! Long work (loading, augmenting, epochs, batches) reports through a `&dyn Progress`; the CLI
//! implements it with progress bars, tests and library users pass [`NoProgress`].
//!
//! Besides the bar-like calls (`begin`, `advance`, `message`, `end`), two typed events say what
//! a log should keep: [`Progress::epoch`] (an [`EpochLine`] per finished training epoch) and
//! [`Progress::finished`] (a [`RunLine`] per finished run or ablation cell). Their `Display`
//! is the one-line text form (at most 80 columns for ordinary numbers); they serialise to the
//! fields a machine reads.

use serde::Serialize;
use std::fmt;

/// Receives progress of long work. Implementations must be cheap: `advance` may be called from
/// hot loops and from several threads.
pub trait Progress: Send + Sync {
    /// A new phase starts; `total` is the number of units if known.
    fn begin(&self, phase: &str, total: Option<u64>);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// A short status line for the current phase (e.g. the latest loss).
    fn message(&self, msg: &str);
    /// The current phase ended.
    fn end(&self);
    /// Something the user should know that does not stop the work (a skipped file, a cache
    /// that could not be written). The default prints `warning: MESSAGE` on stderr.
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
    /// A training epoch finished. The default ignores it.
    fn epoch(&self, line: &EpochLine) {
        let _ = line;
    }
    /// A run (or one cell of an ablation) finished. The default ignores it.
    fn finished(&self, line: &RunLine) {
        let _ = line;
    }
}

/// One finished training epoch: what a log keeps of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochLine {
    /// The epoch, 1-based.
    pub epoch: usize,
    /// The number of epochs the run is configured for.
    pub epochs: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Training accuracy, a fraction (classification only).
    pub train_accuracy: Option<f64>,
    /// Validation loss after the epoch (with a validation split).
    pub valid_loss: Option<f64>,
    /// Validation accuracy, a fraction (classification with a validation split).
    pub valid_accuracy: Option<f64>,
    /// Wall time of the epoch's training, seconds.
    pub seconds: f64,
    /// The run this epoch belongs to when several run in one phase (an ablation cell,
    /// `baseline seed 2`); `None` for a single run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// A loss in at most 10 characters: 4 decimals, or 3 significant digits in exponent form
/// when the value is very large or very small (a diverging run), `NaN` / `inf` as such.
fn loss(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-3..1e4).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.2e}")
    }
}

fn percent(v: f64) -> String {
    format!("{:.2} %", v * 100.0)
}

impl fmt::Display for EpochLine {
    /// `epoch  3/8  loss 0.5915 acc 70.12 %  val 0.5276 acc 82.94 %  1.1 s`: the epoch number
    /// padded to the width of the total, so successive lines align.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.epochs.to_string().len();
        if let Some(run) = &self.run {
            write!(f, "{run}: ")?;
        }
        write!(
            f,
            "epoch {:>w$}/{}  loss {}",
            self.epoch,
            self.epochs,
            loss(self.train_loss)
        )?;
        if let Some(a) = self.train_accuracy {
            write!(f, " acc {}", percent(a))?;
        }
        if let Some(v) = self.valid_loss {
            write!(f, "  val {}", loss(v))?;
            if let Some(a) = self.valid_accuracy {
                write!(f, " acc {}", percent(a))?;
            }
        }
        write!(f, "  {:.1} s", self.seconds + 0.0)
    }
}

/// One finished run, or one cell of an ablation: what a log keeps of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunLine {
    /// The run file's name.
    pub name: String,
    /// The ablation variant (`baseline` for the run file as written).
    pub variant: String,
    /// The seed.
    pub seed: u64,
    /// The fold of a k-fold run this line is about (`fold 2 of 5`); `None` for a whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold: Option<String>,
    /// How it ended: `ok`, `diverged` or `failed`.
    pub status: String,
    /// Why the run diverged or failed, when it did.
    pub message: Option<String>,
    /// True when an ablation kept the cell from an earlier run instead of running it.
    pub kept: bool,
    /// Epochs trained.
    pub epochs: usize,
    /// The metric the run is judged by, when it has one.
    pub metric: Option<RunMetric>,
    /// Wall time, seconds (training only for an ablation cell, the whole run otherwise).
    pub seconds: f64,
}

/// A named metric of a finished run, on the set it was measured on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunMetric {
    /// The set, `test` or `validation`, when the caller knows it.
    pub set: Option<String>,
    /// The metric's name (`accuracy`, `mse`, …).
    pub name: String,
    /// The value (accuracy-like metrics are fractions).
    pub value: f64,
    /// Whether the value is a fraction best shown as a percentage.
    pub percent: bool,
}

impl fmt::Display for RunLine {
    /// `run tiny [lr=0.1] seed 3: ok, 8 epochs, test accuracy 91.20 %, 4.2 s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run {}", self.name)?;
        if self.variant != "baseline" {
            write!(f, " [{}]", self.variant)?;
        }
        write!(f, " seed {}", self.seed)?;
        if let Some(fold) = &self.fold {
            write!(f, ", {fold}")?;
        }
        write!(f, ": {}", self.status)?;
        if let Some(m) = &self.message {
            write!(f, " ({m})")?;
        }
        if self.kept {
            f.write_str(" (kept from an earlier run)")?;
        }
        write!(f, ", {} epochs", self.epochs)?;
        if let Some(m) = &self.metric {
            let v = if m.percent {
                percent(m.value)
            } else {
                format!("{:.4}", m.value)
            };
            match &m.set {
                Some(set) => write!(f, ", {set} {} {v}", m.name)?,
                None => write!(f, ", {} {v}", m.name)?,
            }
        }
        // `+ 0.0` turns the -0.0 of an empty sum into 0.0.
        write!(f, ", {:.1} s", self.seconds + 0.0)
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn message(&self, _msg: &str) {}
    fn end(&self) {}
}

/// The progress of one run among several in a phase (an ablation's cells run in parallel under
/// one bar that counts them): its epoch lines carry the run's label ([`EpochLine::run`]), its
/// warnings are prefixed with it, and its own bar calls and finished-run line are dropped (the
/// phase's bar counts the runs, and the phase reports each finished run once).
pub struct RunProgress<'a> {
    inner: &'a dyn Progress,
    label: String,
}

impl<'a> RunProgress<'a> {
    /// Reports to `inner` as the run `label` (e.g. `baseline seed 2`).
    pub fn new(inner: &'a dyn Progress, label: impl Into<String>) -> Self {
        Self {
            inner,
            label: label.into(),
        }
    }
}

impl Progress for RunProgress<'_> {
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn message(&self, _msg: &str) {}
    fn end(&self) {}
    fn warn(&self, message: &str) {
        self.inner.warn(&format!("{}: {message}", self.label));
    }
    fn epoch(&self, line: &EpochLine) {
        let mut line = line.clone();
        line.run = Some(self.label.clone());
        self.inner.epoch(&line);
    }
    // `finished` keeps the default (ignored): the phase reports each run's line itself.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_line_shows_train_and_validation_and_fits_80_columns() {
        let mut e = EpochLine {
            epoch: 3,
            epochs: 8,
            train_loss: 0.59151,
            train_accuracy: Some(0.70123),
            valid_loss: Some(0.52759),
            valid_accuracy: Some(0.82941),
            seconds: 1.14,
            run: None,
        };
        assert_eq!(
            e.to_string(),
            "epoch 3/8  loss 0.5915 acc 70.12 %  val 0.5276 acc 82.94 %  1.1 s"
        );
        e.epoch = 3;
        e.epochs = 1000;
        e.train_loss = 1.5e30;
        e.valid_loss = Some(f64::NAN);
        e.seconds = 12345.6;
        let s = e.to_string();
        assert!(s.starts_with("epoch    3/1000  loss 1.50e30"), "{s}");
        assert!(s.chars().count() <= 80, "{s}");
    }

    #[test]
    fn an_epoch_line_without_validation_or_accuracy_shows_the_loss_only() {
        let e = EpochLine {
            epoch: 10,
            epochs: 10,
            train_loss: 0.25,
            train_accuracy: None,
            valid_loss: None,
            valid_accuracy: None,
            seconds: 0.04,
            run: None,
        };
        assert_eq!(e.to_string(), "epoch 10/10  loss 0.2500  0.0 s");
    }

    /// A run inside a phase reports its epochs labelled and its warnings prefixed, and none of
    /// its bar calls.
    #[test]
    fn run_progress_labels_epochs_and_warnings_and_drops_bar_calls() {
        #[derive(Default)]
        struct Log(std::sync::Mutex<Vec<String>>);
        impl Progress for Log {
            fn begin(&self, phase: &str, _total: Option<u64>) {
                self.0.lock().unwrap().push(format!("begin {phase}"));
            }
            fn advance(&self, n: u64) {
                self.0.lock().unwrap().push(format!("advance {n}"));
            }
            fn message(&self, msg: &str) {
                self.0.lock().unwrap().push(format!("message {msg}"));
            }
            fn end(&self) {
                self.0.lock().unwrap().push("end".into());
            }
            fn warn(&self, message: &str) {
                self.0.lock().unwrap().push(format!("warning {message}"));
            }
            fn epoch(&self, line: &EpochLine) {
                self.0.lock().unwrap().push(line.to_string());
            }
        }
        let log = Log::default();
        let run = RunProgress::new(&log, "affine seed 2");
        run.begin("training", Some(3));
        run.advance(1);
        run.message("loss 0.3");
        run.epoch(&EpochLine {
            epoch: 1,
            epochs: 3,
            train_loss: 0.5,
            train_accuracy: None,
            valid_loss: None,
            valid_accuracy: None,
            seconds: 0.2,
            run: None,
        });
        run.warn("a cache could not be written");
        run.end();
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                "affine seed 2: epoch 1/3  loss 0.5000  0.2 s",
                "warning affine seed 2: a cache could not be written",
            ]
        );
    }

    #[test]
    fn a_run_line_names_the_variant_status_and_metric() {
        let r = RunLine {
            name: "tiny".into(),
            variant: "lr=1000".into(),
            seed: 3,
            fold: None,
            status: "diverged".into(),
            message: Some("the loss became NaN".into()),
            kept: false,
            epochs: 2,
            metric: None,
            seconds: -0.0,
        };
        assert_eq!(
            r.to_string(),
            "run tiny [lr=1000] seed 3: diverged (the loss became NaN), 2 epochs, 0.0 s"
        );
        let ok = RunLine {
            variant: "baseline".into(),
            status: "ok".into(),
            message: None,
            seconds: 0.5,
            metric: Some(RunMetric {
                set: Some("test".into()),
                name: "accuracy".into(),
                value: 0.912,
                percent: true,
            }),
            ..r
        };
        assert_eq!(
            ok.to_string(),
            "run tiny seed 3: ok, 2 epochs, test accuracy 91.20 %, 0.5 s"
        );
        let fold = RunLine {
            fold: Some("fold 2 of 5".into()),
            ..ok
        };
        assert_eq!(
            fold.to_string(),
            "run tiny seed 3, fold 2 of 5: ok, 2 epochs, test accuracy 91.20 %, 0.5 s"
        );
    }
}
