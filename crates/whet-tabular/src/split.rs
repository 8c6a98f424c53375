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
    /// By a seeded hash of each row's identity: the values of `data.id` when it is set, else the
    /// row's number in the main table's file. A row's split depends on that row alone, so it
    /// stays in its split when rows are added, removed or reordered, and a reader that streams
    /// the rows decides it row by row. The fractions hold on average (a row goes to test with
    /// probability `test`), not exactly.
    Hash,
    /// k-fold cross-validation: the rows are dealt into `k` folds and the run trains `k` models,
    /// each tested on one fold and trained on the others (a `validation` fraction of which is
    /// held out). Stratified by class for a classification or binary target; whole groups of the
    /// `group` column stay in one fold when it is set. `repeats` deals the folds again with new
    /// randomness.
    Kfold,
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
    /// Fraction of rows in test. Default 0.2. Not with `method: kfold` (each fold is the test
    /// set once).
    #[serde(default = "default_test")]
    pub test: Probability,
    /// Fraction of rows in validation (with `method: kfold`, of each fold's training rows).
    /// Default 0.
    #[serde(default = "default_zero")]
    pub validation: Probability,
    /// Order column (`method: time`).
    #[serde(default)]
    pub order: Option<String>,
    /// Group column (`method: group`, or `method: kfold` to keep groups in one fold).
    #[serde(default)]
    pub group: Option<String>,
    /// Number of folds (`method: kfold`), 2 to 100. Default 5.
    #[serde(default)]
    pub k: Option<usize>,
    /// How many times the folds are dealt (`method: kfold`), each time with new randomness: 1
    /// to 20. Default 1.
    #[serde(default)]
    pub repeats: Option<usize>,
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
            k: None,
            repeats: None,
        }
    }
}

/// The default number of folds of `method: kfold`.
pub const DEFAULT_FOLDS: usize = 5;
/// The most folds `method: kfold` takes.
pub const MAX_FOLDS: usize = 100;
/// The most repeats `method: kfold` takes.
pub const MAX_REPEATS: usize = 20;

/// One fold of a k-fold split: which dealing (`repeat`, from 0) and which fold of it (`index`,
/// from 0) is the test set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fold {
    /// The repeat, from 0.
    pub repeat: usize,
    /// The fold tested, from 0.
    pub index: usize,
}

impl Fold {
    /// Every fold of `k` folds dealt `repeats` times, repeat by repeat.
    pub fn all(k: usize, repeats: usize) -> impl Iterator<Item = Fold> {
        (0..repeats).flat_map(move |repeat| (0..k).map(move |index| Fold { repeat, index }))
    }

    /// `fold 2 of 5`, or `fold 2 of 5, repeat 1 of 3` when the folds are dealt more than once
    /// (1-based).
    pub fn label(&self, k: usize, repeats: usize) -> String {
        if repeats > 1 {
            format!(
                "fold {} of {k}, repeat {} of {repeats}",
                self.index + 1,
                self.repeat + 1
            )
        } else {
            format!("fold {} of {k}", self.index + 1)
        }
    }

    /// The folder name of this fold's outputs: `fold-3` (1-based), or `repeat-2-fold-3` when
    /// the folds are dealt more than once.
    pub fn folder(&self, repeats: usize) -> String {
        if repeats > 1 {
            format!("repeat-{}-fold-{}", self.repeat + 1, self.index + 1)
        } else {
            format!("fold-{}", self.index + 1)
        }
    }
}

impl std::fmt::Display for Fold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fold {} of repeat {}", self.index + 1, self.repeat + 1)
    }
}

impl SplitConfig {
    /// Whether the rows of each split depend on the seed: every method but `time` (the rows
    /// ordered by a column, cut at fixed fractions). The seed reaches a table preparation
    /// through the split only, so a run split by time prepares the same arrays for every seed
    /// (whet's stage cache keeps them once for all seeds).
    pub fn uses_seed(&self) -> bool {
        self.method != SplitMethod::Time
    }

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
        if self.method == SplitMethod::Kfold {
            is.check(
                (2..=MAX_FOLDS).contains(&self.k.unwrap_or(DEFAULT_FOLDS)),
                "k",
                || {
                    format!(
                        "k-fold takes 2 to {MAX_FOLDS} folds (got {}); 5 or 10 are usual",
                        self.k.unwrap_or_default()
                    )
                },
            );
            is.check(
                (1..=MAX_REPEATS).contains(&self.repeats.unwrap_or(1)),
                "repeats",
                || {
                    format!(
                        "k-fold is repeated 1 to {MAX_REPEATS} times (got {})",
                        self.repeats.unwrap_or_default()
                    )
                },
            );
            is.check(self.test == default_test(), "test", || {
                format!(
                    "with `method: kfold` every fold is the test set once, so there is no test \
                     fraction (got {}): remove `test` (`validation` is the fraction of the \
                     training folds held out for validation)",
                    self.test
                )
            });
            is.check(self.order.is_none(), "order", || {
                "`order` is for `method: time`; k-fold deals rows at random (by class, or by \
                 `group`): remove it"
                    .into()
            });
        } else {
            for (key, given) in [("k", self.k.is_some()), ("repeats", self.repeats.is_some())] {
                is.check(!given, key, || {
                    format!(
                        "`{key}` is for `method: kfold` (this split is `{}`): remove it, or set \
                         `method: kfold`",
                        self.method.key()
                    )
                });
            }
        }
        is
    }

    /// `(k, repeats)` of a k-fold split; `None` for the other methods.
    pub fn folds(&self) -> Option<(usize, usize)> {
        (self.method == SplitMethod::Kfold)
            .then(|| (self.k.unwrap_or(DEFAULT_FOLDS), self.repeats.unwrap_or(1)))
    }
}

impl SplitMethod {
    /// The name in a run file.
    pub fn key(self) -> &'static str {
        match self {
            SplitMethod::Random => "random",
            SplitMethod::Stratified => "stratified",
            SplitMethod::Time => "time",
            SplitMethod::Group => "group",
            SplitMethod::Hash => "hash",
            SplitMethod::Kfold => "kfold",
        }
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

/// The rows of each value of the `group` column, in the column's sort order (missing first).
fn groups_of(df: &DataFrame, col: &str) -> Result<Vec<Vec<IdxSize>>> {
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
    Ok(groups.into_values().collect())
}

/// The fold (0..k) of every row under the `repeat`-th dealing: whole groups to the fold with the
/// fewest rows so far (largest groups first, ties among equal sizes in a seeded order) when
/// `group` is set; else class by class, each class shuffled and dealt round-robin with one
/// counter across classes (so folds keep the class proportions and differ in size by at most
/// one); else all rows shuffled and dealt round-robin.
fn deal_folds(
    df: &DataFrame,
    labels: Option<&[u32]>,
    cfg: &SplitConfig,
    seed: u64,
    repeat: usize,
    k: usize,
) -> Result<Vec<u32>> {
    let n = df.height();
    if n < k {
        return Err(Error::Split(format!(
            "k-fold with k = {k} needs at least {k} rows; the table has {n} after the steps \
             before the split: lower `split.k`"
        )));
    }
    let mut fold = vec![0u32; n];
    let r = repeat as u64;
    if let Some(col) = cfg.group.as_deref() {
        let mut groups = groups_of(df, col)?;
        if groups.len() < k {
            return Err(Error::Split(format!(
                "k-fold with k = {k} keeps each value of `{col}` in one fold, but `{col}` has \
                 only {} distinct values: lower `split.k` to at most {}",
                groups.len(),
                groups.len()
            )));
        }
        groups.shuffle(&mut whet_core::rng::stream(seed, &[2, 6, r]));
        groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
        let mut sizes = vec![0usize; k];
        for g in groups {
            let f = (0..k).min_by_key(|&f| (sizes[f], f)).expect("k >= 2");
            sizes[f] += g.len();
            for i in g {
                fold[i as usize] = f as u32;
            }
        }
    } else if let Some(labels) = labels {
        let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        let mut per: Vec<Vec<IdxSize>> = vec![Vec::new(); classes];
        for (i, &l) in labels.iter().enumerate() {
            per[l as usize].push(i as IdxSize);
        }
        let mut dealt = 0usize;
        for (c, mut idx) in per.into_iter().enumerate() {
            idx.shuffle(&mut whet_core::rng::stream(seed, &[2, 5, r, c as u64]));
            for i in idx {
                fold[i as usize] = (dealt % k) as u32;
                dealt += 1;
            }
        }
    } else {
        let mut idx: Vec<IdxSize> = (0..n as IdxSize).collect();
        idx.shuffle(&mut whet_core::rng::stream(seed, &[2, 3, r]));
        for (p, i) in idx.into_iter().enumerate() {
            fold[i as usize] = (p % k) as u32;
        }
    }
    Ok(fold)
}

/// The split of one fold: its rows are the test set; the `validation` fraction of the other
/// folds' rows (whole groups with `group`, by class with labels, seeded by the fold) is the
/// validation set, the rest is the training set.
fn fold_split(
    df: &DataFrame,
    labels: Option<&[u32]>,
    cfg: &SplitConfig,
    seed: u64,
    fold: Fold,
) -> Result<SplitIndices> {
    let (k, repeats) = cfg.folds().expect("a k-fold split");
    if fold.index >= k || fold.repeat >= repeats {
        return Err(Error::Split(format!(
            "{fold} does not exist: the split has {k} folds and {repeats} repeats"
        )));
    }
    let dealt = deal_folds(df, labels, cfg, seed, fold.repeat, k)?;
    let mut s = SplitIndices::default();
    let mut rest: Vec<IdxSize> = Vec::new();
    for (i, &f) in dealt.iter().enumerate() {
        if f as usize == fold.index {
            s.test.push(i as IdxSize);
        } else {
            rest.push(i as IdxSize);
        }
    }
    let frac = cfg.validation.get();
    let path = |extra: &[u64]| {
        let mut p = vec![2, 4, fold.repeat as u64, fold.index as u64];
        p.extend_from_slice(extra);
        whet_core::rng::stream(seed, &p)
    };
    if let Some(col) = cfg.group.as_deref() {
        let all = groups_of(df, col)?;
        let mut groups: Vec<Vec<IdxSize>> = all
            .into_iter()
            .filter(|g| dealt[g[0] as usize] as usize != fold.index)
            .collect();
        groups.shuffle(&mut path(&[]));
        let n_val = (rest.len() as f64 * frac).round() as usize;
        for g in groups {
            if s.validation.len() < n_val {
                s.validation.extend(g);
            } else {
                s.train.extend(g);
            }
        }
    } else if let Some(labels) = labels {
        let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        let mut per: Vec<Vec<IdxSize>> = vec![Vec::new(); classes];
        for &i in &rest {
            per[labels[i as usize] as usize].push(i);
        }
        for (c, mut idx) in per.into_iter().enumerate() {
            idx.shuffle(&mut path(&[c as u64]));
            let v = (idx.len() as f64 * frac).round() as usize;
            s.validation.extend_from_slice(&idx[..v]);
            s.train.extend_from_slice(&idx[v..]);
        }
    } else {
        rest.shuffle(&mut path(&[]));
        let v = (rest.len() as f64 * frac).round() as usize;
        s.validation = rest[..v].to_vec();
        s.train = rest[v..].to_vec();
    }
    finish(s)
}

/// What identifies the rows for `method: hash`: the `data.id` columns (in `df`), else each row's
/// number in the main table's file (`rows`; without them, the row's place in `df`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RowKeys<'a> {
    /// The `data.id` columns.
    pub ids: &'a [String],
    /// The rows' numbers in the main table's file.
    pub rows: Option<&'a [IdxSize]>,
}

/// FNV-1a over `bytes`: a stable 64-bit hash (the same on every platform and version).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Where `method: hash` puts a row whose identity hashes to `key`: 0 train, 1 validation, 2
/// test. `u` = the seeded mix of `key` as a fraction in [0, 1): test below `test`, validation
/// below `test + validation`.
pub fn hash_split_of(key: u64, seed: u64, test: f64, validation: f64) -> u8 {
    HashSplit::new(seed, test, validation).of(key)
}

/// [`hash_split_of`] for many rows under one seed and one split's fractions: the seed's part of
/// the hash made once.
struct HashSplit {
    prefix: whet_core::rng::SeedPrefix,
    test: f64,
    /// `test + validation`.
    held_out: f64,
}

impl HashSplit {
    fn new(seed: u64, test: f64, validation: f64) -> Self {
        HashSplit {
            prefix: whet_core::rng::SeedPrefix::new(seed, &[2, 7]),
            test,
            held_out: test + validation,
        }
    }

    /// The split of the row whose identity hashes to `key`.
    #[inline]
    fn of(&self, key: u64) -> u8 {
        let x = self.prefix.then(key);
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        if u < self.test {
            2
        } else if u < self.held_out {
            1
        } else {
            0
        }
    }
}

/// Where `method: hash` puts each row of `df` (0 train, 1 validation, 2 test): the split of
/// [`split_indices`], decided row by row, so a table read in batches gets the same split.
///
/// # Errors
/// [`Error::ColumnNotFound`] when a `data.id` column is missing.
pub fn hash_assign(
    df: &DataFrame,
    keys: RowKeys<'_>,
    cfg: &SplitConfig,
    seed: u64,
) -> Result<Vec<u8>> {
    let split = HashSplit::new(seed, cfg.test.get(), cfg.validation.get());
    Ok(row_keys(df, keys)?
        .into_iter()
        .map(|key| split.of(key))
        .collect())
}

/// The identity hash of every row for `method: hash` (see [`RowKeys`]): the `data.id` values
/// as text (a missing value as `\0`), joined with the unit separator, through FNV-1a; or the
/// row number.
fn row_keys(df: &DataFrame, keys: RowKeys<'_>) -> Result<Vec<u64>> {
    let n = df.height();
    if keys.ids.is_empty() {
        return Ok(match keys.rows {
            Some(r) => r.iter().map(|&i| i as u64).collect(),
            None => (0..n as u64).collect(),
        });
    }
    let mut texts: Vec<Vec<u8>> = vec![Vec::new(); n];
    for (k, col) in keys.ids.iter().enumerate() {
        let Ok(c) = df.column(col) else {
            return Err(not_found(df, col, "`data.id` (the split's `method: hash`)"));
        };
        let s = c.as_materialized_series().cast(&DataType::String)?;
        for (t, v) in texts.iter_mut().zip(s.str()?.iter()) {
            if k > 0 {
                t.push(0x1f);
            }
            match v {
                Some(v) => t.extend_from_slice(v.as_bytes()),
                None => t.push(0),
            }
        }
    }
    Ok(texts.iter().map(|t| fnv1a(t)).collect())
}

/// Assigns the rows of `df` to splits. `labels` (class per row) is needed for `stratified`
/// (and makes `kfold` stratified); `fold` says which fold of a `kfold` split is the test set
/// (ignored by the other methods); `keys` identify the rows for `hash`.
///
/// # Errors
/// [`Error::Split`] for an empty train split, missing labels for `stratified`, missing values
/// in the `order` column, a `kfold` split without a fold or with fewer rows (or groups) than
/// folds; [`Error::ColumnNotFound`] for an unknown `order`/`group` column.
pub fn split_indices(
    df: &DataFrame,
    labels: Option<&[u32]>,
    cfg: &SplitConfig,
    seed: u64,
    fold: Option<Fold>,
    keys: RowKeys<'_>,
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
        SplitMethod::Hash => {
            let mut s = SplitIndices::default();
            for (i, to) in hash_assign(df, keys, cfg, seed)?.into_iter().enumerate() {
                let to = match to {
                    2 => &mut s.test,
                    1 => &mut s.validation,
                    _ => &mut s.train,
                };
                to.push(i as IdxSize);
            }
            finish(s)
        }
        SplitMethod::Kfold => match fold {
            Some(fold) => fold_split(df, labels, cfg, seed, fold),
            None => Err(Error::Split(
                "a k-fold split is made one fold at a time, and no fold was given (prepare each \
                 fold, as `whet run` does)"
                    .into(),
            )),
        },
        SplitMethod::Group => {
            let col = cfg.group.as_deref().unwrap_or_default();
            let mut list = groups_of(df, col)?;
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
mod hash_tests {
    use super::*;

    fn hash_cfg() -> SplitConfig {
        SplitConfig {
            method: SplitMethod::Hash,
            test: Probability::new(0.2).unwrap(),
            validation: Probability::new(0.1).unwrap(),
            ..SplitConfig::default()
        }
    }

    #[test]
    fn a_rows_split_depends_on_its_identity_only() {
        let ids: Vec<String> = (0..5000).map(|i| format!("f{i}")).collect();
        let df = df!("id" => &ids, "x" => (0..5000).map(|i| i as f64).collect::<Vec<_>>()).unwrap();
        let id = ["id".to_string()];
        let keys = RowKeys {
            ids: &id,
            rows: None,
        };
        let s = split_indices(&df, None, &hash_cfg(), 3, None, keys).unwrap();
        let frac = |v: &[IdxSize]| v.len() as f64 / 5000.0;
        assert!((frac(&s.test) - 0.2).abs() < 0.03, "{}", frac(&s.test));
        assert!(
            (frac(&s.validation) - 0.1).abs() < 0.03,
            "{}",
            frac(&s.validation)
        );
        // The same rows reversed and with half of them dropped: each kept row keeps its split.
        let half: Vec<IdxSize> = (0..5000).rev().step_by(2).collect();
        let other = df.take(&IdxCa::from_vec("i".into(), half.clone())).unwrap();
        let t = split_indices(&other, None, &hash_cfg(), 3, None, keys).unwrap();
        let test: std::collections::BTreeSet<IdxSize> = s.test.iter().copied().collect();
        for (j, &i) in half.iter().enumerate() {
            let in_test = t.test.contains(&(j as IdxSize));
            assert_eq!(in_test, test.contains(&i), "row {i}");
        }
        // Another seed, another split; row numbers work without ids.
        let u = split_indices(&df, None, &hash_cfg(), 4, None, keys).unwrap();
        assert_ne!(u.test, s.test);
        let rows: Vec<IdxSize> = (0..5000).collect();
        let by_row = RowKeys {
            ids: &[],
            rows: Some(&rows),
        };
        let r = split_indices(&df, None, &hash_cfg(), 3, None, by_row).unwrap();
        assert_eq!(
            r,
            split_indices(&df, None, &hash_cfg(), 3, None, RowKeys::default()).unwrap()
        );
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

    /// A split that is not k-fold or hash (no fold, no row keys).
    fn split(df: &DataFrame, labels: Option<&[u32]>, c: &SplitConfig, seed: u64) -> SplitIndices {
        split_indices(df, labels, c, seed, None, RowKeys::default()).unwrap()
    }

    fn cfg(method: SplitMethod) -> SplitConfig {
        SplitConfig {
            method,
            test: Probability::new(0.2).unwrap(),
            validation: Probability::new(0.1).unwrap(),
            order: Some("t".into()),
            group: Some("g".into()),
            k: None,
            repeats: None,
        }
    }

    #[test]
    fn random_is_seeded_and_partitions() {
        let df = frame(100);
        let a = split(&df, None, &cfg(SplitMethod::Random), 1);
        let b = split(&df, None, &cfg(SplitMethod::Random), 1);
        let c = split(&df, None, &cfg(SplitMethod::Random), 2);
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
        let s = split(&df, None, &cfg(SplitMethod::Time), 0);
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
        let s = split(&df, None, &cfg(SplitMethod::Group), 3);
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
        let s = split(&df, Some(&labels), &cfg(SplitMethod::Stratified), 5);
        let pos = |v: &Vec<IdxSize>| v.iter().filter(|&&i| labels[i as usize] == 1).count();
        assert_eq!((pos(&s.test), s.test.len()), (5, 20));
        // 25 positives: round(2.5) = 3 in validation.
        assert_eq!(pos(&s.validation), 3);
    }

    fn kfold(k: usize, repeats: usize, group: Option<&str>) -> SplitConfig {
        SplitConfig {
            method: SplitMethod::Kfold,
            validation: Probability::new(0.1).unwrap(),
            group: group.map(String::from),
            k: Some(k),
            repeats: Some(repeats),
            ..SplitConfig::default()
        }
    }

    fn all_folds(
        df: &DataFrame,
        labels: Option<&[u32]>,
        c: &SplitConfig,
        seed: u64,
    ) -> Vec<SplitIndices> {
        let (k, r) = c.folds().unwrap();
        Fold::all(k, r)
            .map(|f| split_indices(df, labels, c, seed, Some(f), RowKeys::default()).unwrap())
            .collect()
    }

    #[test]
    fn kfold_tests_every_row_once_per_repeat() {
        let df = frame(103);
        let c = kfold(5, 2, None);
        let folds = all_folds(&df, None, &c, 7);
        assert_eq!(folds.len(), 10);
        for repeat in folds.chunks(5) {
            let mut tested: Vec<IdxSize> = repeat.iter().flat_map(|s| s.test.clone()).collect();
            tested.sort_unstable();
            assert_eq!(tested, (0..103).collect::<Vec<IdxSize>>());
            let sizes: Vec<usize> = repeat.iter().map(|s| s.test.len()).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            for s in repeat {
                let mut all: Vec<IdxSize> = s
                    .train
                    .iter()
                    .chain(&s.validation)
                    .chain(&s.test)
                    .copied()
                    .collect();
                all.sort_unstable();
                assert_eq!(all, (0..103).collect::<Vec<IdxSize>>());
                // 10 % of the other folds' rows validate.
                let rest = 103 - s.test.len();
                assert_eq!(s.validation.len(), (rest as f64 * 0.1).round() as usize);
            }
        }
        // The two repeats deal differently; the same seed deals the same.
        assert_ne!(folds[0].test, folds[5].test);
        assert_eq!(folds, all_folds(&df, None, &c, 7));
        assert_ne!(folds, all_folds(&df, None, &c, 8));
    }

    #[test]
    fn kfold_keeps_class_proportions() {
        let df = frame(100);
        let labels: Vec<u32> = (0..100).map(|i| u32::from(i % 4 == 0)).collect();
        for s in all_folds(&df, Some(&labels), &kfold(5, 1, None), 3) {
            let pos = s.test.iter().filter(|&&i| labels[i as usize] == 1).count();
            assert_eq!((pos, s.test.len()), (5, 20));
            // The validation split is stratified too: 20 positives left, 2 validate.
            let vpos = s
                .validation
                .iter()
                .filter(|&&i| labels[i as usize] == 1)
                .count();
            assert_eq!(vpos, 2);
        }
    }

    #[test]
    fn grouped_kfold_keeps_groups_in_one_fold() {
        let df = frame(140);
        let folds = all_folds(&df, None, &kfold(3, 1, Some("g")), 11);
        let g = |v: &Vec<IdxSize>| {
            v.iter()
                .map(|i| i % 7)
                .collect::<std::collections::BTreeSet<_>>()
        };
        let mut tested = std::collections::BTreeSet::new();
        for s in &folds {
            assert!(g(&s.test).is_disjoint(&g(&s.train)));
            assert!(g(&s.test).is_disjoint(&g(&s.validation)));
            assert!(g(&s.train).is_disjoint(&g(&s.validation)));
            assert!(tested.is_disjoint(&g(&s.test)));
            tested.extend(g(&s.test));
        }
        assert_eq!(tested.len(), 7);
        // 7 groups of 20 rows into 3 folds by size: 3, 2 and 2 groups.
        let mut sizes: Vec<usize> = folds.iter().map(|s| s.test.len()).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [40, 40, 60]);
    }

    #[test]
    fn kfold_refuses_what_it_cannot_deal() {
        let df = frame(4);
        let f = Some(Fold {
            repeat: 0,
            index: 0,
        });
        let e = split_indices(&df, None, &kfold(5, 1, None), 1, f, RowKeys::default()).unwrap_err();
        assert!(e.to_string().contains("at least 5 rows"), "{e}");
        let e = split_indices(
            &frame(40),
            None,
            &kfold(10, 1, Some("g")),
            1,
            f,
            RowKeys::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("only 7 distinct values"), "{e}");
        let e = split_indices(
            &frame(40),
            None,
            &kfold(5, 1, None),
            1,
            None,
            RowKeys::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("one fold at a time"), "{e}");
        let is = SplitConfig {
            test: Probability::new(0.3).unwrap(),
            ..kfold(5, 1, None)
        }
        .validate();
        assert!(is.iter().any(|i| i.path == "test"), "{is:?}");
        let is = SplitConfig {
            k: Some(1),
            ..kfold(5, 1, None)
        }
        .validate();
        assert!(is.iter().any(|i| i.path == "k"), "{is:?}");
        let is = SplitConfig {
            k: Some(5),
            ..SplitConfig::default()
        }
        .validate();
        assert!(
            is.iter()
                .any(|i| i.path == "k" && i.message.contains("method: kfold")),
            "{is:?}"
        );
    }
}
