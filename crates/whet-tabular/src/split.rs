//! Train / validation / test splits: random, stratified, by time, by group; seeded from
//! `whet_core::rng::stream(seed, &[2, …])`.

use polars::prelude::*;
use rand::seq::SliceRandom;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::{Issues, Probability};

use crate::error::{Error, Result};
use crate::stage::not_found;

/// How rows are assigned to splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SplitMethod {
    /// Uniformly at random.
    #[default]
    Random,
    /// At random within each class, so every split has the class proportions.
    Stratified,
    /// By the `order` column: every train row is strictly before every validation row, which is
    /// strictly before every test row (ties stay together, in the earlier split).
    Time,
    /// Whole groups of the `group` column go to one split.
    Group,
}

fn default_test() -> Probability {
    Probability::new(0.2).expect("constant in range")
}

/// `split: { method: time, order: time_hour, test: 0.2, validation: 0.1 }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Method. Default `random`.
    #[serde(default)]
    pub method: SplitMethod,
    /// Fraction of rows in test. Default 0.2.
    #[serde(default = "default_test")]
    pub test: Probability,
    /// Fraction of rows in validation. Default 0.
    #[serde(default = "default_zero")]
    pub validation: Probability,
    /// Order column (`method: time`).
    #[serde(default)]
    pub order: Option<String>,
    /// Group column (`method: group`).
    #[serde(default)]
    pub group: Option<String>,
}

fn default_zero() -> Probability {
    Probability::new(0.0).expect("constant in range")
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            method: SplitMethod::Random,
            test: default_test(),
            validation: default_zero(),
            order: None,
            group: None,
        }
    }
}

impl SplitConfig {
    /// Cross-field checks.
    pub fn validate(&self) -> Issues {
        let mut is = Issues::new();
        is.check(self.test.get() + self.validation.get() < 1.0, "", || {
            format!(
                "test + validation must be below 1 (got {} + {})",
                self.test, self.validation
            )
        });
        // `test: 0` is allowed (the run reports validation metrics); without either split,
        // nothing would measure the trained network.
        is.check(
            self.test.get() > 0.0 || self.validation.get() > 0.0,
            "test",
            || {
                "`test` and `validation` are both 0, so nothing would measure the trained \
                 network: set `split.test` (e.g. 0.2) or `split.validation` (the run then \
                 reports validation metrics)"
                    .into()
            },
        );
        is.check(
            self.method != SplitMethod::Time || self.order.is_some(),
            "order",
            || "`method: time` needs `order: <column>`".into(),
        );
        is.check(
            self.method != SplitMethod::Group || self.group.is_some(),
            "group",
            || "`method: group` needs `group: <column>`".into(),
        );
        is
    }
}

/// Row indices of each split, ascending.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SplitIndices {
    /// Train rows.
    pub train: Vec<IdxSize>,
    /// Validation rows.
    pub validation: Vec<IdxSize>,
    /// Test rows.
    pub test: Vec<IdxSize>,
}

fn counts(n: usize, cfg: &SplitConfig) -> (usize, usize) {
    let t = (n as f64 * cfg.test.get()).round() as usize;
    let v = (n as f64 * cfg.validation.get()).round() as usize;
    (t, v)
}

fn finish(mut s: SplitIndices) -> Result<SplitIndices> {
    if s.train.is_empty() {
        return Err(Error::Split(
            "the training split is empty (too few rows or fractions too large)".into(),
        ));
    }
    s.train.sort_unstable();
    s.validation.sort_unstable();
    s.test.sort_unstable();
    Ok(s)
}

/// Assigns the rows of `df` to splits. `labels` (class per row) is needed for `stratified`.
///
/// # Errors
/// [`Error::Split`] for an empty train split, missing labels for `stratified`, or missing values
/// in the `order` column; [`Error::ColumnNotFound`] for an unknown `order`/`group` column.
pub fn split_indices(
    df: &DataFrame,
    labels: Option<&[u32]>,
    cfg: &SplitConfig,
    seed: u64,
) -> Result<SplitIndices> {
    let n = df.height();
    let (n_test, n_val) = counts(n, cfg);
    match cfg.method {
        SplitMethod::Random => {
            let mut idx: Vec<IdxSize> = (0..n as IdxSize).collect();
            idx.shuffle(&mut whet_core::rng::stream(seed, &[2, 0]));
            finish(SplitIndices {
                test: idx[..n_test].to_vec(),
                validation: idx[n_test..n_test + n_val].to_vec(),
                train: idx[n_test + n_val..].to_vec(),
            })
        }
        SplitMethod::Stratified => {
            let Some(labels) = labels else {
                return Err(Error::Split(
                    "`stratified` needs a classification or binary target".into(),
                ));
            };
            let k = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
            let mut per: Vec<Vec<IdxSize>> = vec![Vec::new(); k];
            for (i, &l) in labels.iter().enumerate() {
                per[l as usize].push(i as IdxSize);
            }
            let mut s = SplitIndices::default();
            for (c, mut idx) in per.into_iter().enumerate() {
                idx.shuffle(&mut whet_core::rng::stream(seed, &[2, 1, c as u64]));
                let (t, v) = counts(idx.len(), cfg);
                s.test.extend_from_slice(&idx[..t]);
                s.validation.extend_from_slice(&idx[t..t + v]);
                s.train.extend_from_slice(&idx[t + v..]);
            }
            finish(s)
        }
        SplitMethod::Time => {
            let col = cfg.order.as_deref().unwrap_or_default();
            let Ok(c) = df.column(col) else {
                return Err(not_found(df, col, "split `order`"));
            };
            let s = c.as_materialized_series();
            if s.null_count() > 0 {
                return Err(Error::Split(format!(
                    "order column `{col}` has {} missing values; drop or fill them first",
                    s.null_count()
                )));
            }
            let perm = s.arg_sort(SortOptions::default().with_maintain_order(true));
            let sorted = s.take(&perm)?;
            let key = sorted.to_physical_repr().into_owned();
            let same = |a: usize, b: usize| -> bool {
                matches!((key.get(a), key.get(b)), (Ok(x), Ok(y)) if x == y)
            };
            // Move a cut forward past ties so equal order values never straddle two splits.
            let advance = |mut cut: usize| {
                while cut > 0 && cut < n && same(cut - 1, cut) {
                    cut += 1;
                }
                cut
            };
            let c1 = advance(n - n_test - n_val);
            let c2 = advance((n - n_test).max(c1));
            let p: Vec<IdxSize> = perm.no_null_iter().collect();
            finish(SplitIndices {
                train: p[..c1].to_vec(),
                validation: p[c1..c2].to_vec(),
                test: p[c2..].to_vec(),
            })
        }
        SplitMethod::Group => {
            let col = cfg.group.as_deref().unwrap_or_default();
            let Ok(c) = df.column(col) else {
                return Err(not_found(df, col, "split `group`"));
            };
            let s = c.as_materialized_series().cast(&DataType::String)?;
            let ca = s.str()?;
            let mut groups: std::collections::BTreeMap<Option<&str>, Vec<IdxSize>> =
                std::collections::BTreeMap::new();
            for (i, g) in ca.iter().enumerate() {
                groups.entry(g).or_default().push(i as IdxSize);
            }
            let mut list: Vec<Vec<IdxSize>> = groups.into_values().collect();
            list.shuffle(&mut whet_core::rng::stream(seed, &[2, 2]));
            let mut out = SplitIndices::default();
            for g in list {
                if out.test.len() < n_test {
                    out.test.extend(g);
                } else if out.validation.len() < n_val {
                    out.validation.extend(g);
                } else {
                    out.train.extend(g);
                }
            }
            finish(out)
        }
    }
}

impl SplitConfig {
    /// A random split with this test fraction (no validation split).
    ///
    /// # Panics
    /// When `test` is not in `[0, 1]`.
    #[track_caller]
    pub fn random(test: f64) -> Self {
        SplitConfig {
            test: Probability::new(test).expect("SplitConfig::random: test must be in [0, 1]"),
            ..Self::default()
        }
    }

    /// A split by time: the latest rows by `order` are the test set, the ones before them the
    /// validation set.
    ///
    /// # Panics
    /// When `test` is not in `[0, 1]`.
    #[track_caller]
    pub fn time(order: impl Into<String>, test: f64) -> Self {
        SplitConfig {
            method: SplitMethod::Time,
            order: Some(order.into()),
            ..Self::random(test)
        }
    }

    /// Sets the validation fraction.
    ///
    /// # Panics
    /// When `fraction` is not in `[0, 1]`.
    #[track_caller]
    pub fn with_validation(mut self, fraction: f64) -> Self {
        self.validation = Probability::new(fraction)
            .expect("SplitConfig::with_validation: the fraction must be in [0, 1]");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> DataFrame {
        df!(
            "t" => (0..n as i64).map(|i| i / 3).collect::<Vec<_>>(),
            "g" => (0..n as i64).map(|i| i % 7).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn cfg(method: SplitMethod) -> SplitConfig {
        SplitConfig {
            method,
            test: Probability::new(0.2).unwrap(),
            validation: Probability::new(0.1).unwrap(),
            order: Some("t".into()),
            group: Some("g".into()),
        }
    }

    #[test]
    fn random_is_seeded_and_partitions() {
        let df = frame(100);
        let a = split_indices(&df, None, &cfg(SplitMethod::Random), 1).unwrap();
        let b = split_indices(&df, None, &cfg(SplitMethod::Random), 1).unwrap();
        let c = split_indices(&df, None, &cfg(SplitMethod::Random), 2).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            (a.train.len(), a.validation.len(), a.test.len()),
            (70, 10, 20)
        );
        let mut all: Vec<_> = a
            .train
            .iter()
            .chain(&a.validation)
            .chain(&a.test)
            .copied()
            .collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<IdxSize>>());
    }

    #[test]
    fn time_split_is_strictly_ordered() {
        let df = frame(100);
        let s = split_indices(&df, None, &cfg(SplitMethod::Time), 0).unwrap();
        let t = |i: &IdxSize| *i as i64 / 3;
        let max_train = s.train.iter().map(t).max().unwrap();
        let min_val = s.validation.iter().map(t).min().unwrap();
        let max_val = s.validation.iter().map(t).max().unwrap();
        let min_test = s.test.iter().map(t).min().unwrap();
        assert!(max_train < min_val && max_val < min_test);
    }

    #[test]
    fn group_split_keeps_groups_whole() {
        let df = frame(140);
        let s = split_indices(&df, None, &cfg(SplitMethod::Group), 3).unwrap();
        let g = |v: &Vec<IdxSize>| {
            v.iter()
                .map(|i| i % 7)
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert!(g(&s.train).is_disjoint(&g(&s.test)));
        assert!(g(&s.train).is_disjoint(&g(&s.validation)));
        assert!(g(&s.test).is_disjoint(&g(&s.validation)));
    }

    #[test]
    fn stratified_keeps_proportions() {
        let df = frame(100);
        let labels: Vec<u32> = (0..100).map(|i| u32::from(i % 4 == 0)).collect();
        let s = split_indices(&df, Some(&labels), &cfg(SplitMethod::Stratified), 5).unwrap();
        let pos = |v: &Vec<IdxSize>| v.iter().filter(|&&i| labels[i as usize] == 1).count();
        assert_eq!((pos(&s.test), s.test.len()), (5, 20));
        // 25 positives: round(2.5) = 3 in validation.
        assert_eq!(pos(&s.validation), 3);
    }
}
