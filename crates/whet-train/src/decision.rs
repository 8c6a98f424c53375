//! How the network's outputs become predictions: [`Decision`] is the one place that turns a
//! row of logits into outputs (probabilities for classification and binary tasks, values for
//! regression) and into a label (classification: the argmax; binary: the positive-class score
//! above the threshold). Evaluation, prediction and exports all go through it.
//!
//! The binary threshold is `model.threshold`: a probability, or `auto`, chosen after training on
//! the validation split by [`choose_threshold`] under a [`ThresholdCriterion`].

use crate::activation::{sigmoid, softmax_in_place};
use crate::config::Task;
use crate::mlp::argmax;
use ndarray::ArrayViewMut2;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The default binary threshold on the positive-class probability.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// `model.threshold` (binary tasks): a probability strictly between 0 and 1, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdConfig {
    /// A sample is positive when its positive-class probability is above this.
    Fixed(f64),
    /// Chosen after training on the validation split by `model.threshold_criterion`.
    Auto,
}

impl Serialize for ThresholdConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ThresholdConfig::Fixed(t) => s.serialize_f64(*t),
            ThresholdConfig::Auto => s.serialize_str("auto"),
        }
    }
}

fn threshold_message(found: &str) -> String {
    format!(
        "expected a probability strictly between 0 and 1 (e.g. 0.5) or `auto` (chosen on the \
         validation split), found {found}"
    )
}

impl<'de> Deserialize<'de> for ThresholdConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ThresholdConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a probability strictly between 0 and 1, or `auto`")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ThresholdConfig, E> {
                if v > 0.0 && v < 1.0 {
                    Ok(ThresholdConfig::Fixed(v))
                } else {
                    Err(E::custom(threshold_message(&whet_core::spec::fmt_number(
                        v,
                    ))))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ThresholdConfig, E> {
                Err(E::custom(threshold_message(&v.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ThresholdConfig, E> {
                Err(E::custom(threshold_message(&v.to_string())))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ThresholdConfig, E> {
                if v == "auto" {
                    Ok(ThresholdConfig::Auto)
                } else {
                    Err(E::custom(threshold_message(&format!("`{v}`"))))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ThresholdConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ThresholdConfig".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "binary tasks: the positive-class probability above which a sample is positive (strictly between 0 and 1), or `auto` (chosen on the validation split by `threshold_criterion`)",
            "oneOf": [
                { "type": "number", "exclusiveMinimum": 0.0, "exclusiveMaximum": 1.0 },
                { "const": "auto" }
            ]
        })
    }
}

/// What `threshold: auto` maximises on the validation split.
///
/// Youden's J (`TPR + TNR - 1`) is `2 × balanced accuracy - 1`, so it picks the same threshold
/// as `balanced_accuracy` and is not a separate criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdCriterion {
    /// The mean of the two classes' recalls (sensitivity and specificity).
    #[default]
    BalancedAccuracy,
    /// The positive class's F1 score, `2 TP / (2 TP + FP + FN)`.
    F1,
}

/// The one rule from a network's logits to outputs and labels, for a task (and, for binary
/// tasks, a threshold on the positive-class probability).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    task: Task,
    /// The positive-class probability threshold (binary).
    threshold: f64,
    /// The same threshold as a logit: `ln(t / (1 - t))`, 0 for the default 0.5.
    cut: f64,
}

impl Decision {
    /// The rule for `task` with the default threshold 0.5 (binary: logit > 0).
    pub fn new(task: Task) -> Self {
        Self {
            task,
            threshold: DEFAULT_THRESHOLD,
            cut: 0.0,
        }
    }

    /// The rule for a binary task with `threshold` on the positive-class probability.
    ///
    /// # Errors
    /// A message when the task is not binary or `threshold` is not strictly between 0 and 1.
    pub fn binary(threshold: f64) -> Result<Self, String> {
        if !(threshold > 0.0 && threshold < 1.0) {
            return Err(threshold_message(&whet_core::spec::fmt_number(threshold)));
        }
        Ok(Self {
            task: Task::Binary,
            threshold,
            cut: (threshold / (1.0 - threshold)).ln(),
        })
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The positive-class probability threshold (binary tasks only).
    pub fn threshold(&self) -> Option<f64> {
        (self.task == Task::Binary).then_some(self.threshold)
    }

    /// The label of one row of logits: the argmax (the first on ties) for classification, 1
    /// when the positive-class probability is above the threshold for binary, 0 for regression.
    pub fn label(&self, logits: &[f32]) -> usize {
        match self.task {
            Task::Classification => argmax(logits.iter().copied()),
            Task::Binary => usize::from(self.positive(logits[0])),
            Task::Regression => 0,
        }
    }

    /// Whether a binary logit is a positive prediction (its probability is above the threshold).
    pub fn positive(&self, logit: f32) -> bool {
        f64::from(logit) > self.cut
    }

    /// The threshold as an `f32` logit cut for runtimes that compare in `f32` (an exported
    /// graph): the largest `f32` not above the exact cut `ln(t / (1 - t))`, so for every `f32`
    /// logit `x`, `x > logit_cut()` exactly when [`Decision::positive`] says so (the next `f32`
    /// above it is above the exact cut). `None` unless the task is binary.
    pub fn logit_cut(&self) -> Option<f32> {
        if self.task != Task::Binary {
            return None;
        }
        let c = self.cut as f32;
        Some(if f64::from(c) > self.cut {
            c.next_down()
        } else {
            c
        })
    }

    /// Turns logits into outputs in place: softmax probabilities (classification), the
    /// positive-class probability (binary), values (regression).
    pub fn outputs(&self, mut z: ArrayViewMut2<f32>) {
        match self.task {
            Task::Classification => {
                for mut row in z.rows_mut() {
                    softmax_in_place(row.as_slice_mut().expect("contiguous rows"));
                }
            }
            Task::Binary => z.mapv_inplace(sigmoid),
            Task::Regression => {}
        }
    }
}

/// Counts at one cut of the sorted scores.
#[derive(Debug, Clone, Copy)]
struct Cut {
    tp: u64,
    fp: u64,
    tn: u64,
    fn_: u64,
}

impl Cut {
    /// The criterion as an exact fraction (numerator, denominator).
    fn score(&self, c: ThresholdCriterion) -> (u128, u128) {
        let (tp, fp, tn, fn_) = (
            u128::from(self.tp),
            u128::from(self.fp),
            u128::from(self.tn),
            u128::from(self.fn_),
        );
        match c {
            // (TP/P + TN/N) / 2, up to the constant factor 2 P N.
            ThresholdCriterion::BalancedAccuracy => (tp * (tn + fp) + tn * (tp + fn_), 1),
            ThresholdCriterion::F1 => (2 * tp, 2 * tp + fp + fn_),
        }
    }
}

fn better(a: (u128, u128), b: (u128, u128)) -> Ordering {
    (a.0 * b.1).cmp(&(b.0 * a.1))
}

/// The probability threshold that maximises `criterion` over `scores` (logit, is positive), by
/// an exact scan over the distinct scores: each cut between two consecutive distinct logits
/// makes everything above it positive; the threshold is the cut's midpoint (as a probability).
/// Ties go to the cut closest to the default 0.5 (logit 0), then to the lower one.
///
/// `None` when a class is absent (no cut can be judged) or all scores are equal (no cut
/// separates them).
pub fn choose_threshold(scores: &[(f32, bool)], criterion: ThresholdCriterion) -> Option<f64> {
    let pos = scores.iter().filter(|s| s.1).count() as u64;
    let neg = scores.len() as u64 - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut tn, mut fn_) = (0u64, 0u64);
    let mut best: Option<((u128, u128), f64)> = None;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            if sorted[j].1 {
                fn_ += 1;
            } else {
                tn += 1;
            }
            j += 1;
        }
        if j == sorted.len() {
            break;
        }
        let cut = Cut {
            tp: pos - fn_,
            fp: neg - tn,
            tn,
            fn_,
        };
        let mid = (f64::from(sorted[i].0) + f64::from(sorted[j].0)) / 2.0;
        let score = cut.score(criterion);
        let replace = match &best {
            None => true,
            Some((b, m)) => match better(score, *b) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => mid.abs() < m.abs(),
            },
        };
        if replace {
            best = Some((score, mid));
        }
        i = j;
    }
    best.map(|(_, m)| 1.0 / (1.0 + (-m).exp()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    // Logits sorted: -3 P, -2 N, -1 N, 0 N, 1 P, 2 P, 3 N, 4 P (4 positives, 4 negatives).
    fn hand() -> Vec<(f32, bool)> {
        vec![
            (1.0, true),
            (-2.0, false),
            (4.0, true),
            (0.0, false),
            (-3.0, true),
            (3.0, false),
            (-1.0, false),
            (2.0, true),
        ]
    }

    fn logit(p: f64) -> f64 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn balanced_accuracy_scan_on_a_hand_example() {
        // Cuts (midpoint: TP FP TN FN → BA): -2.5: 3 4 0 1 → 0.375; -1.5: 3 3 1 1 → 0.5;
        // -0.5: 3 2 2 1 → 0.625; 0.5: 3 1 3 1 → 0.75; 1.5: 2 1 3 2 → 0.625;
        // 2.5: 1 1 3 3 → 0.5; 3.5: 1 0 4 3 → 0.625. Best: 0.5.
        let t = choose_threshold(&hand(), ThresholdCriterion::BalancedAccuracy).unwrap();
        assert!((logit(t) - 0.5).abs() < 1e-12, "{}", logit(t));
        let d = Decision::binary(t).unwrap();
        let labels: Vec<usize> = [-3.0f32, 0.0, 0.49, 0.51, 1.0]
            .iter()
            .map(|z| d.label(&[*z]))
            .collect();
        assert_eq!(labels, [0, 0, 0, 1, 1]);
    }

    #[test]
    fn f1_scan_on_a_hand_example() {
        // With two more low positives (6 P, 4 N), F1 = 2TP / (2TP + FP + FN) is best at the
        // lowest cut, -4.5 (TP 5 FP 4 FN 1 → 10/15), ahead of 0.5 (TP 3 FP 1 FN 3 → 6/10).
        let mut s = hand();
        s.extend([(-5.0, true), (-4.0, true)]);
        let t = choose_threshold(&s, ThresholdCriterion::F1).unwrap();
        assert!((logit(t) + 4.5).abs() < 1e-9, "{}", logit(t));
        // Balanced accuracy still prefers 0.5 (TPR 3/6, TNR 3/4 → 0.625; at -4.5: 0.417).
        let b = choose_threshold(&s, ThresholdCriterion::BalancedAccuracy).unwrap();
        assert!((logit(b) - 0.5).abs() < 1e-12, "{}", logit(b));
    }

    #[test]
    fn ties_go_to_the_cut_nearest_one_half_and_degenerate_scores_give_none() {
        // -1 N, 1 P, 3 N, 5 P: cuts 0 (BA 0.75), 2 (0.5), 4 (0.75) → 0 (logit) = 0.5.
        let s = [(-1.0, false), (1.0, true), (3.0, false), (5.0, true)];
        let t = choose_threshold(&s, ThresholdCriterion::BalancedAccuracy).unwrap();
        assert_eq!(t, 0.5);
        // -3 N, -1 P, 1 N, 3 P: cuts -2 (0.75), 0 (0.5), 2 (0.75): equally near → the lower.
        let s = [(-3.0, false), (-1.0, true), (1.0, false), (3.0, true)];
        let t = choose_threshold(&s, ThresholdCriterion::BalancedAccuracy).unwrap();
        assert!((logit(t) + 2.0).abs() < 1e-12, "{}", logit(t));
        assert_eq!(
            choose_threshold(&[(0.0, true), (1.0, true)], ThresholdCriterion::F1),
            None
        );
        assert_eq!(
            choose_threshold(&[(0.5, true), (0.5, false)], ThresholdCriterion::F1),
            None
        );
    }

    #[test]
    fn default_decision_is_logit_above_zero_and_argmax() {
        let d = Decision::new(Task::Binary);
        assert_eq!(d.threshold(), Some(0.5));
        assert_eq!(d.label(&[0.0]), 0);
        assert_eq!(d.label(&[1e-30]), 1);
        assert_eq!(Decision::binary(0.5).unwrap(), d);
        let c = Decision::new(Task::Classification);
        assert_eq!(c.threshold(), None);
        assert_eq!(c.label(&[0.1, 2.0, 2.0]), 1);
        let mut z = array![[0.0f32, 0.0], [0.0, 0.0]];
        c.outputs(z.view_mut());
        assert_eq!(z, array![[0.5f32, 0.5], [0.5, 0.5]]);
        assert!(Decision::binary(1.0).is_err());
        assert!(Decision::binary(0.0).is_err());
    }

    #[test]
    fn the_f32_logit_cut_gives_the_same_labels() {
        assert_eq!(Decision::new(Task::Binary).logit_cut(), Some(0.0));
        assert_eq!(Decision::new(Task::Classification).logit_cut(), None);
        for t in [0.5, 0.3, 0.237_41, 0.9, 1e-3, 0.999_9] {
            let d = Decision::binary(t).unwrap();
            let c = d.logit_cut().unwrap();
            assert!(f64::from(c) <= d.cut, "{t}");
            // The f32 logits around the cut: the rule and the comparison agree on every one.
            let mut x = c;
            for _ in 0..4 {
                x = x.next_down();
            }
            for _ in 0..9 {
                assert_eq!(x > c, d.positive(x), "t {t}, x {x}");
                x = x.next_up();
            }
        }
    }

    #[test]
    fn threshold_parses_probability_or_auto() {
        let p = |s: &str| serde_json::from_str::<ThresholdConfig>(s);
        assert_eq!(p("0.3").unwrap(), ThresholdConfig::Fixed(0.3));
        assert_eq!(p("\"auto\"").unwrap(), ThresholdConfig::Auto);
        for bad in ["0", "1", "1.5", "-0.2", "\"best\""] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains("strictly between 0 and 1"), "{bad}: {e}");
        }
    }
}
