//! CSV tables: `ablation.csv` (one row per run) and a run's `curves.csv` (one row per epoch).
//!
//! Fields are quoted as RFC 4180 says: a field containing a comma, a double quote, CR or LF is
//! enclosed in double quotes, and its double quotes are doubled. Rows end with `\n`. Numbers are
//! written with Rust's shortest round-trip formatting; missing or non-finite values are empty.

use std::fmt::Write as _;

use crate::record::{AblationInput, EpochRow, RunRecord};

/// Appends `field` to `out`, quoted if it needs to be.
pub(crate) fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

fn push_row<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, f.as_ref());
    }
    out.push('\n');
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

/// The text of `ablation.csv`: columns `variant, seed, status`, one per metric (primary first),
/// `train_seconds`, `message`; one row per run, ordered by variant then seed.
pub fn ablation_csv(input: &AblationInput) -> String {
    let metrics = input.metric_names();
    let mut out = String::new();
    let mut header = vec!["variant".to_string(), "seed".into(), "status".into()];
    header.extend(metrics.iter().cloned());
    header.extend(["train_seconds".to_string(), "message".into()]);
    push_row(&mut out, &header);
    for run in input.sorted_runs() {
        push_row(&mut out, &run_fields(run, &metrics));
    }
    out
}

fn run_fields(run: &RunRecord, metrics: &[String]) -> Vec<String> {
    let mut row = vec![
        run.variant.clone(),
        run.seed.to_string(),
        run.status.to_string(),
    ];
    row.extend(metrics.iter().map(|m| num(run.metrics.get(m).copied())));
    row.push(num(Some(run.train_seconds)));
    row.push(run.message.clone().unwrap_or_default());
    row
}

/// The text of a run's `curves.csv`: `epoch, train_loss, train_accuracy, val_loss,
/// val_accuracy, seconds`, one row per epoch.
pub fn curves_csv(curves: &[EpochRow]) -> String {
    let mut out = String::with_capacity(64 * (curves.len() + 1));
    out.push_str("epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n");
    for r in curves {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            r.epoch,
            num(Some(r.train_loss)),
            num(r.train_accuracy),
            num(r.val_loss),
            num(r.val_accuracy),
            num(Some(r.seconds)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_rfc_4180() {
        let mut s = String::new();
        push_row(&mut s, &["plain", "a,b", "say \"hi\"", "two\nlines", ""]);
        assert_eq!(s, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\n");
    }

    #[test]
    fn curves_have_empty_cells_for_missing_values() {
        let rows = [EpochRow {
            epoch: 1,
            train_loss: f64::INFINITY,
            train_accuracy: Some(0.5),
            val_loss: None,
            val_accuracy: None,
            seconds: 0.25,
        }];
        assert_eq!(
            curves_csv(&rows),
            "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n1,,0.5,,,0.25\n"
        );
    }
}
