//! The run file: one YAML document composed of the config types of each crate, and [`Run`], the
//! run file parsed once, resolved and validated.
//!
//! Loading goes: read (size, UTF-8) → typed parse with located errors → `--set` overrides →
//! paths resolved against the file's folder → validation of every section and of the data
//! files, all problems reported at once with file, line, column and key path.

use crate::ablation::AblationConfig;
use crate::compose::{self, Composed};
use crate::error::{Error, Result};
use crate::variants;
use crate::yaml::{self, ConfigError, ConfigErrors, Source};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use whet_core::{Issues, names};

/// A whole run file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunFile {
    /// Name of the run; the default output folder is `runs/<name>`.
    pub name: String,
    /// What the run is for (shown in reports).
    #[serde(default)]
    pub description: Option<String>,
    /// Seed of every random choice (splits, initialisation, shuffling, augmentation). Default 0.
    #[serde(default)]
    pub seed: u64,
    /// The memory budget of the commands that read this file, e.g. `memory: 8GiB` or
    /// `memory: 500MB`: work whose estimate is larger is refused before it allocates, and a
    /// main table larger than it streams (see the README's "Tables larger than memory").
    /// `--max-memory` wins when both are given. Default: 60 % of the physical memory or of
    /// the cgroup limit, or half of `ulimit -v`, whichever is smallest. Not part of a run's
    /// identity: an ablation cell's hash leaves it out.
    #[serde(default)]
    pub memory: Option<whet_core::budget::MemorySize>,
    /// Where the data comes from: `images` or `tables` (with `target`).
    pub data: DataConfig,
    /// Image augmentation and input noise (image data only).
    #[serde(default)]
    pub augment: Option<whet_image::AugmentConfig>,
    /// Tabular steps in order (table data only): joins, exclusions, audit, missing values,
    /// encoding, normalisation. Fitted steps are fitted on the training split only.
    #[serde(default)]
    pub steps: Vec<whet_tabular::StepConfig>,
    /// How table rows are split into train / validation / test (table data only).
    #[serde(default)]
    pub split: Option<whet_tabular::SplitConfig>,
    /// The network.
    pub model: whet_train::ModelConfig,
    /// How it is trained.
    pub train: whet_train::TrainConfig,
    /// Variants compared by `whet ablate`.
    #[serde(default)]
    pub ablation: Option<AblationConfig>,
    /// Another run file to run first (for transfer learning: it produces the checkpoint that
    /// `train.transfer.checkpoint` names). Skipped when its output is up to date.
    #[serde(default)]
    pub pretrain: Option<PretrainConfig>,
    /// Experiment tracking: `track: { mlflow: { uri, experiment, run_name } }` (see the
    /// README's "Tracking"). Not part of a run's identity: an ablation cell's hash leaves it
    /// out.
    #[serde(default)]
    pub track: Option<crate::track::TrackConfig>,
}

/// The `pretrain` section: a run that must have happened before this one.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// The run file to run first (relative to this file).
    pub pipeline: PathBuf,
    /// Its output folder (relative to this file); its `model.safetensors` is the checkpoint.
    pub out: PathBuf,
}

/// The `data` section.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Image data: MNIST IDX files or folders of PNG/JPEG images.
    #[serde(default)]
    pub images: Option<whet_image::ImagesConfig>,
    /// Named tables: `name: path` or `name: { path, missing, types, limit }`.
    #[serde(default)]
    pub tables: Option<std::collections::BTreeMap<String, whet_tabular::TableSpec>>,
    /// The table the rows come from (default: the only table, or the first).
    #[serde(default)]
    pub main: Option<String>,
    /// What to predict (tables): `{ column: c }`, `{ column: c, threshold: t }` or
    /// `{ regression: c }`.
    #[serde(default)]
    pub target: Option<whet_tabular::TargetConfig>,
    /// Identifier columns of the main table (tables): never features, written next to every
    /// row by `whet export`, `whet apply` and `whet predict`. Default: none, and rows are
    /// identified by `row`, their 0-based row number in the main table's file (header not
    /// counted).
    #[serde(default)]
    pub id: Vec<String>,
    /// Tables: shuffle the training rows a block of 16,384 rows at a time, within windows of
    /// this many rows, the order of a table larger than the memory budget (whose prepared rows
    /// are read back from disk). Set, a table in memory trains in the same order, so both give
    /// the same weights. Default: a full shuffle in memory; windows of 65,536 rows streamed.
    #[serde(default)]
    pub shuffle_buffer: Option<usize>,
}

impl RunFile {
    /// The tabular config of a run file with tables and a target (the one place a
    /// [`whet_tabular::TabularConfig`] is made from a run file).
    pub(crate) fn tabular_config(&self) -> Option<whet_tabular::TabularConfig> {
        Some(whet_tabular::TabularConfig {
            data: whet_tabular::TablesConfig {
                tables: self.data.tables.clone()?,
                main: self.data.main.clone(),
                // A binary model has one 0/1 output: a label column is then two labels.
                target: self
                    .data
                    .target
                    .clone()?
                    .with_two_labels(self.model.task == whet_train::Task::Binary),
                id: self.data.id.clone(),
                shuffle_buffer: self.data.shuffle_buffer,
            },
            steps: self.steps.clone(),
            split: self.split.clone().unwrap_or_default(),
        })
    }

    /// Resolves relative paths against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(i) = &mut self.data.images {
            i.resolve_paths(base);
        }
        if let Some(t) = &mut self.data.tables {
            for s in t.values_mut() {
                s.resolve_paths(base);
            }
        }
        self.train.resolve_paths(base);
        if let Some(p) = &mut self.pretrain {
            p.pipeline = base.join(&p.pipeline);
            p.out = base.join(&p.out);
        }
    }

    /// Checks every section and the relations between them. Paths are from the file's root.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        match (&self.data.images, &self.data.tables) {
            (None, None) => issues.push("data", "no data: give `images` or `tables`"),
            (Some(_), Some(_)) => issues.push(
                "data",
                "give either `images` or `tables`, not both: a run trains on one kind of data",
            ),
            _ => {}
        }
        if self.name.trim().is_empty() {
            issues.push("name", "the name is empty; it names the output folder");
        } else if let Err(e) = names::check_component(&self.name) {
            issues.push(
                "name",
                format!(
                    "the run's name names its output folder `runs/<name>`: {e}; {}",
                    names::VALID_NAME
                ),
            );
        }
        if let Some(t) = &self.track {
            issues.nest("track", t.validate());
        }
        if let Some(i) = &self.data.images {
            issues.nest("data.images", i.validate());
            if !self.steps.is_empty() {
                issues.push(
                    "steps",
                    "tabular `steps` need `data.tables`; for images use `augment`",
                );
            }
            if self.split.is_some() {
                issues.push(
                    "split",
                    "`split` is for tables; images use `data.images.validation` and the test files",
                );
            }
            if self.data.target.is_some() {
                issues.push("data.target", "`target` is for tables; image labels come from the IDX labels or class folders");
            }
            if !self.data.id.is_empty() {
                issues.push(
                    "data.id",
                    "`id` is for tables; `whet predict` identifies images by their file path",
                );
            }
            if self.data.shuffle_buffer.is_some() {
                issues.push(
                    "data.shuffle_buffer",
                    "`shuffle_buffer` here is for tables; image shards take `data.images.train.shards.shuffle_buffer`",
                );
            }
        }
        if let Some(tables) = &self.data.tables {
            if tables.is_empty() {
                issues.push("data.tables", "no tables listed");
            }
            if self.augment.is_some() {
                issues.push("augment", "`augment` is for image data");
            }
            match &self.data.target {
                None => issues.push("data", "tables need a `target`: `{ column: c }`, `{ column: c, threshold: t }` or `{ regression: c }`"),
                Some(t) => {
                    if let Some(cfg) = self.tabular_config() {
                        issues.0.extend(cfg.validate().0);
                    }
                    self.check_task_target(t, &mut issues);
                }
            }
            for name in tables.keys() {
                if let Err(e) = names::check_component(name) {
                    issues.push(
                        format!("data.tables.{name}"),
                        format!("table name: {e}; {}", names::VALID_NAME),
                    );
                }
            }
            // `types` is a CSV option: on a Parquet table it would be accepted and do nothing.
            for (name, spec) in tables {
                if !spec.types.is_empty()
                    && spec.resolved_format().ok() == Some(whet_tabular::TableFormat::Parquet)
                {
                    let cols: Vec<&str> = spec.types.keys().map(String::as_str).collect();
                    issues.push(
                        format!("data.tables.{name}.types"),
                        format!(
                            "type overrides apply to CSV tables; `{}` is Parquet, whose columns keep the types stored in the file: remove `types` ({})",
                            spec.path.display(),
                            cols.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(a) = &self.augment {
            issues.nest("augment", a.validate());
            if a.ops.is_empty() {
                issues.push("augment.ops", "the op list is empty: list at least one op, or remove `augment` to train without augmentation");
            }
        }
        self.check_files(&mut issues);
        if let Some(p) = &self.pretrain
            && let Err(e) = whet_core::input::check_input(&p.pipeline)
        {
            issues.push("pretrain.pipeline", e.to_string());
        }
        // The checkpoint may not exist yet (`pretrain` makes it); one that exists must be a
        // file whet can read.
        if let Some(t) = &self.train.transfer
            && std::fs::symlink_metadata(&t.checkpoint).is_ok()
            && let Err(e) = whet_core::input::check_input(&t.checkpoint)
        {
            issues.push("train.transfer.checkpoint", e.to_string());
        }
        issues.nest("model", self.model.validate());
        if self.data.tables.is_some()
            && let Some(i) = self.model.layers.iter().position(|l| l.is_image_layer())
        {
            issues.push(
                format!("model.layers[{i}]"),
                format!(
                    "`{}` reads images, and this run trains on tables (one row of features per \
                     sample): use dense layers (`- dense: 64`) or `hidden`",
                    self.model.layers[i].key()
                ),
            );
        }
        issues.nest("train", self.train.validate());
        if let Some(es) = &self.train.early_stopping {
            issues.nest("train.early_stopping", es.check_metric(self.model.task));
        }
        self.check_imbalance_keys(&mut issues);
        if let Some(ab) = &self.ablation {
            if let crate::ablation::Seeds::List(seeds) = &ab.seeds {
                let mut seen = std::collections::BTreeSet::new();
                for s in seeds {
                    if !seen.insert(s) {
                        issues.push(
                            "ablation.seeds",
                            format!("seed {s} is listed more than once: each variant runs once per seed, so list each seed once"),
                        );
                        break;
                    }
                }
            }
            if let Some(m) = &ab.metric {
                let names = whet_train::metric_names(self.model.task);
                if !names.contains(&m.as_str()) {
                    let hint = whet_core::spec::closest(m, names.iter().copied())
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_default();
                    issues.push(
                        "ablation.metric",
                        format!(
                            "unknown metric `{m}` for a {} model: expected one of {}{hint}",
                            format!("{:?}", self.model.task).to_lowercase(),
                            names.join(", ")
                        ),
                    );
                }
            }
        }
        issues
    }
}

impl RunFile {
    /// `model.task` against the kind of target (the data's values are checked at load, by
    /// `datacheck`): a regression task needs `{ regression: c }` (a `{ column: c }` target would
    /// become one class per value), a regression target a regression task, and `threshold` (a
    /// binary target) the binary task.
    fn check_task_target(&self, t: &whet_tabular::TargetConfig, issues: &mut Issues) {
        use whet_train::Task;
        let task = self.model.task;
        let name = |t: Task| format!("{t:?}").to_lowercase();
        if let (Task::Regression, Some(c)) = (task, &t.column) {
            let (key, made) = match t.threshold {
                Some(_) => ("data.target.threshold", "a binary 0/1 target"),
                None => ("data.target.column", "one class per distinct value"),
            };
            issues.push(
                key,
                format!(
                    "`model.task: regression` predicts the values of a column, but this target makes {made} of `{c}`: \
                     write `target: {{ regression: {c} }}`"
                ),
            );
        }
        if let (Task::Binary | Task::Classification, Some(c)) = (task, &t.regression) {
            issues.push(
                "data.target.regression",
                format!(
                    "a regression target (`{{ regression: {c} }}`) needs `model.task: regression`, not `{}`: \
                     set the task to regression, or for classes write `target: {{ column: {c} }}` \
                     (binary: `{{ column: {c}, threshold: t }}`)",
                    name(task)
                ),
            );
        }
        if let (Task::Classification, Some(c), Some(_)) = (task, &t.column, t.threshold) {
            issues.push(
                "data.target.threshold",
                format!(
                    "`threshold` makes a binary target (one 0/1 output: `{c}` > threshold), which needs \
                     `model.task: binary`; remove `threshold` for one class per value of `{c}`"
                ),
            );
        }
    }

    /// The fraction of the data in the validation split (`split.validation` for tables,
    /// `data.images.validation` for images).
    fn validation_fraction(&self) -> f64 {
        match (&self.data.images, &self.data.tables) {
            (Some(i), _) => i.validation.get(),
            (None, Some(_)) => self.split.as_ref().map_or(0.0, |s| s.validation.get()),
            (None, None) => 0.0,
        }
    }

    /// `train.class_weights` needs classes; `model.threshold: auto` needs a validation split.
    fn check_imbalance_keys(&self, issues: &mut Issues) {
        if self.train.class_weights.is_some() && self.model.task == whet_train::Task::Regression {
            issues.push(
                "train.class_weights",
                "class weights weigh the classes of a `classification` or `binary` task; a \
                 `regression` task has none: remove `class_weights`",
            );
        }
        if self.model.auto_threshold().is_some() && self.validation_fraction() <= 0.0 {
            let key = if self.data.images.is_some() {
                "data.images.validation"
            } else {
                "split.validation"
            };
            issues.push(
                "model.threshold",
                format!(
                    "`threshold: auto` is chosen on the validation split, and this run has none: \
                     set `{key}` (e.g. 0.1) or give a fixed threshold such as 0.5"
                ),
            );
        }
    }

    /// Data files that do not exist or are not regular files (a folder, a device such as
    /// `/dev/zero`, a named pipe: data files are read more than once, for the cache key and by
    /// every seed), reported at their key paths before any loading.
    fn check_files(&self, issues: &mut Issues) {
        fn need(issues: &mut Issues, path: &Path, key: String) {
            match whet_core::input::check_input(path) {
                Err(whet_core::input::InputError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    issues.push(key, format!("`{}` does not exist (relative paths are resolved against the run file's folder)", path.display()));
                }
                Err(e) => issues.push(key, e.to_string()),
                Ok(kind) => {
                    if let Err(e) = whet_core::input::InputError::no_pipe(
                        path,
                        kind,
                        "data files are read more than once (the cache key, every seed)",
                    ) {
                        issues.push(key, e.to_string());
                    }
                }
            }
        }
        fn need_folder(issues: &mut Issues, path: &Path, key: String) {
            if !path.exists() {
                issues.push(key, format!("`{}` does not exist (relative paths are resolved against the run file's folder)", path.display()));
            } else if !path.is_dir() {
                issues.push(
                    key,
                    format!(
                        "`{}` is not a folder: give the folder that holds one subfolder per class",
                        path.display()
                    ),
                );
            }
        }
        if let Some(i) = &self.data.images {
            let mut sources = vec![("train", &i.train)];
            if let Some(t) = &i.test {
                sources.push(("test", t));
            }
            for (name, s) in sources {
                if let Some(idx) = &s.idx {
                    need(
                        issues,
                        &idx.images,
                        format!("data.images.{name}.idx.images"),
                    );
                    need(
                        issues,
                        &idx.labels,
                        format!("data.images.{name}.idx.labels"),
                    );
                }
                if let Some(f) = &s.folder {
                    need_folder(issues, &f.path, format!("data.images.{name}.folder.path"));
                }
                if let Some(f) = &s.shards
                    && !f.path.exists()
                    && let Err(e) = whet_image::shard_files(&f.path)
                {
                    // A pattern names no file itself; a missing path or a pattern that
                    // matches nothing is reported with what would be valid.
                    issues.push(format!("data.images.{name}.shards.path"), e.to_string());
                }
            }
        }
        if let Some(t) = &self.data.tables {
            for (name, spec) in t {
                need(issues, &spec.path, format!("data.tables.{name}"));
            }
        }
    }
}

/// One `--set key.path=value` override of a run file; the value is YAML (`0.1`, `full`,
/// `[1, 2]`, `{adam: {lr: 0.01}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    key: String,
    value: Value,
    /// As given, for reports and plan files.
    text: String,
}

impl Override {
    /// Parses `key.path=value`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no `=` or the value is not YAML.
    pub fn parse(s: &str) -> Result<Override> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            Error::Invalid(format!(
                "`--set {s}`: expected KEY.PATH=VALUE, e.g. train.epochs=5"
            ))
        })?;
        let value: Value = serde_saphyr::from_str(v).map_err(|e| {
            Error::Invalid(format!("`--set {s}`: the value is not valid YAML: {e}"))
        })?;
        Ok(Override {
            key: k.trim().to_string(),
            value,
            text: s.trim().to_string(),
        })
    }

    /// The key path it sets.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value it sets.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// `key.path=value` as given (`train.epochs=5`): how reports and plan files show the overrides
/// a run was made with ([`Override::parse`] reads it back).
impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `--sweep key.path=a,b,c` of `whet ablate`: a key path and the values it takes, one
/// variant per value (several sweeps make a grid). The values are YAML, read as the items of a
/// flow list (`0.1,0.01`, `adam,sgd`, `[64],[128,64]`, `{rate: 0.1},{rate: 0.2}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    key: String,
    values: Vec<Value>,
    /// As given, for reports and plan files.
    text: String,
}

impl Sweep {
    /// Parses `key.path=a,b,c`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no `=`, the values are not a YAML list, or there are
    /// none.
    pub fn parse(s: &str) -> Result<Sweep> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            Error::Invalid(format!(
                "`--sweep {s}`: expected KEY.PATH=A,B,C, e.g. train.optimizer.adam.lr=0.1,0.01"
            ))
        })?;
        let key = k.trim();
        if key.is_empty() {
            return Err(Error::Invalid(format!(
                "`--sweep {s}`: the key path before `=` is empty"
            )));
        }
        let values: Vec<Value> = serde_saphyr::from_str(&format!("[{v}]")).map_err(|e| {
            Error::Invalid(format!(
                "`--sweep {s}`: the values are not a comma-separated YAML list: {e}"
            ))
        })?;
        if values.is_empty() {
            return Err(Error::Invalid(format!(
                "`--sweep {s}`: no values after `=`; give at least one (KEY.PATH=A,B,C)"
            )));
        }
        Ok(Sweep {
            key: key.to_string(),
            values,
            text: s.trim().to_string(),
        })
    }

    /// The key path it varies.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The values it takes, in the order given.
    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

/// `key.path=a,b,c`, as given on the command line ([`Sweep::parse`] reads it back).
impl std::fmt::Display for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A run's data, by kind: what [`RunFile::data`] says once validated.
#[derive(Debug, Clone)]
pub enum RunData {
    /// Images, with the augmentation of the training set (none when the run file has no op).
    Images {
        /// Where the images come from, the validation split and the normalisation.
        images: whet_image::ImagesConfig,
        /// Augmentation and input noise of the training images.
        augment: Option<whet_image::AugmentConfig>,
    },
    /// Tables: files, joins, steps, target and split.
    Tables(whet_tabular::TabularConfig),
}

/// A run file parsed once, overrides applied, paths resolved against its folder and every
/// section validated: what [`Run::prepare`], [`Run::execute`], [`Run::export`] and
/// [`crate::Ablation::plan`] take.
#[derive(Debug, Clone)]
pub struct Run {
    file: RunFile,
    data: RunData,
    /// The run file as a value tree (paths as written), for ablation variants and run keys.
    pub(crate) value: Value,
    /// The files the run file was composed from (for located errors).
    pub(crate) composed: Arc<Composed>,
    base_dir: PathBuf,
    overrides: Vec<Override>,
    variant: String,
}

impl RunFile {
    /// Reads, parses and validates the run file at `path` (relative data paths are resolved
    /// against its folder).
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found, located in the file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Run> {
        Run::load(path.as_ref(), &[])
    }

    /// Parses and validates a run file's text; relative data paths are resolved against
    /// `base_dir`.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found, located in the text.
    pub fn from_yaml(text: &str, base_dir: impl AsRef<Path>) -> Result<Run> {
        let base_dir = base_dir.as_ref();
        let source = Source::from_bytes(&base_dir.join("<run file>"), text.as_bytes().to_vec())
            .map_err(|e| ConfigErrors(vec![e]))?;
        Run::from_source(source, base_dir.to_path_buf(), &[])
    }

    /// Validates a run file built in code (relative data paths are resolved against
    /// `base_dir`).
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found, located by key path.
    pub fn into_run(self, base_dir: impl AsRef<Path>) -> Result<Run> {
        let text = serde_saphyr::to_string(&self)
            .map_err(|e| Error::Invalid(format!("the run file cannot be written as YAML: {e}")))?;
        Self::from_yaml(&text, base_dir)
    }

    /// A run file with `data` and the given network and training; the rest takes its default
    /// (seed 0, no augmentation, steps or ablation).
    fn with_data(
        name: String,
        data: DataConfig,
        model: whet_train::ModelConfig,
        train: whet_train::TrainConfig,
    ) -> RunFile {
        RunFile {
            name,
            description: None,
            seed: 0,
            memory: None,
            data,
            augment: None,
            steps: vec![],
            split: None,
            model,
            train,
            ablation: None,
            pretrain: None,
            track: None,
        }
    }

    /// A run file for image data with the given network and training; the rest takes its
    /// default (seed 0, no augmentation, no ablation). Add the rest with the `with_*` setters.
    pub fn images(
        name: impl Into<String>,
        images: whet_image::ImagesConfig,
        model: whet_train::ModelConfig,
        train: whet_train::TrainConfig,
    ) -> RunFile {
        let data = DataConfig {
            images: Some(images),
            tables: None,
            main: None,
            target: None,
            id: vec![],
            shuffle_buffer: None,
        };
        Self::with_data(name.into(), data, model, train)
    }

    /// A run file for table data: the named tables, the target, the network and training.
    pub fn tables(
        name: impl Into<String>,
        tables: impl IntoIterator<Item = (String, whet_tabular::TableSpec)>,
        target: whet_tabular::TargetConfig,
        model: whet_train::ModelConfig,
        train: whet_train::TrainConfig,
    ) -> RunFile {
        let data = DataConfig {
            images: None,
            tables: Some(tables.into_iter().collect()),
            main: None,
            target: Some(target),
            id: vec![],
            shuffle_buffer: None,
        };
        Self::with_data(name.into(), data, model, train)
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the memory budget (`memory:`).
    pub fn with_memory(mut self, memory: whet_core::budget::MemorySize) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Sets the description shown in reports.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the image augmentation.
    pub fn with_augment(mut self, augment: whet_image::AugmentConfig) -> Self {
        self.augment = Some(augment);
        self
    }

    /// Names the table the rows come from (default: the only table, or the first).
    pub fn with_main(mut self, main: impl Into<String>) -> Self {
        self.data.main = Some(main.into());
        self
    }

    /// Declares the identifier columns of the main table (`data.id`).
    pub fn with_id(mut self, columns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.data.id = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a tabular step.
    pub fn with_step(mut self, step: whet_tabular::StepConfig) -> Self {
        self.steps.push(step);
        self
    }

    /// Sets the table split.
    pub fn with_split(mut self, split: whet_tabular::SplitConfig) -> Self {
        self.split = Some(split);
        self
    }

    /// Sets the ablation section.
    pub fn with_ablation(mut self, ablation: AblationConfig) -> Self {
        self.ablation = Some(ablation);
        self
    }
}

impl Run {
    /// Loads the run file at `path` with `overrides` applied (see [`RunFile::from_path`]).
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found, located in the file.
    pub fn load(path: &Path, overrides: &[Override]) -> Result<Run> {
        Run::load_with_env(path, overrides, &compose::process_env)
    }

    /// [`Run::load`] with `${VAR}` looked up by `env` instead of the process environment.
    pub(crate) fn load_with_env(
        path: &Path,
        overrides: &[Override],
        env: compose::Env,
    ) -> Result<Run> {
        let composed = Composed::read(path, env).map_err(|e| ConfigErrors(vec![e]))?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Run::from_composed(composed, base_dir, overrides)
    }

    fn from_source(source: Source, base_dir: PathBuf, overrides: &[Override]) -> Result<Run> {
        let one = |e: ConfigError| ConfigErrors(vec![e]);
        let composed = Composed::from_source(source, &compose::process_env).map_err(one)?;
        Run::from_composed(composed, base_dir, overrides)
    }

    fn from_composed(composed: Composed, base_dir: PathBuf, overrides: &[Override]) -> Result<Run> {
        let source = composed.root().clone();
        let path = source.path.clone();
        let one = |e: ConfigError| ConfigErrors(vec![e]);
        let mut value = composed.value.clone();
        let mut file: RunFile = if overrides.is_empty() && !composed.composed {
            yaml::parse(&source).map_err(one)?
        } else {
            for o in overrides {
                variants::set_path(&mut value, &o.key, &o.value).map_err(|e| {
                    one(ConfigError {
                        file: path.clone(),
                        position: None,
                        key_path: o.key.clone(),
                        message: format!("--set: {e}"),
                        hint: None,
                        snippet: None,
                    })
                })?;
            }
            let what = if overrides.is_empty() {
                "the composed run file"
            } else {
                "the run file with its --set overrides"
            };
            from_value(&value, &path, what)
                .map_err(|e| {
                    // A key an override set is not in any file: report it without a line.
                    if overrides.iter().any(|o| e.key_path.starts_with(&o.key)) {
                        e
                    } else {
                        composed.locate(e)
                    }
                })
                .map_err(one)?
        };
        file.resolve_paths(&base_dir);
        let mut errors: Vec<ConfigError> = file
            .validate()
            .iter()
            .map(|i| composed.error_at(&i.path, i.message.clone()))
            .collect();
        // Variants that parse and validate, for the data checks below.
        let mut checked_variants = Vec::new();
        if let Some(ab) = &file.ablation {
            match variants::expand(&value, ab) {
                Err(e) => errors.push(composed.error_at("ablation", e)),
                Ok(vs) => {
                    for v in vs.iter().skip(1) {
                        if let Err(e) = names::check_component(&v.name) {
                            errors.push(composed.error_at(&v.origin, variant_name_message(&e)));
                        }
                        let what = format!("ablation variant `{}`", v.name.escape_debug());
                        match from_value(&v.value, &path, &what) {
                            Err(mut e) => {
                                let at = composed.error_at("ablation", String::new());
                                e.file = at.file;
                                e.position = at.position;
                                errors.push(e);
                            }
                            Ok(mut r) => {
                                r.resolve_paths(&base_dir);
                                let issues = r.validate();
                                for i in issues.iter() {
                                    errors.push(
                                        composed.error_at(
                                            &i.path,
                                            format!("{} (in {what})", i.message),
                                        ),
                                    );
                                }
                                if issues.is_empty() {
                                    checked_variants.push((what, v.origin.clone(), r));
                                }
                            }
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            // Against the data, once the file itself is valid; then each variant's own
            // issues (a variant that drops a join may leave a later step without its column).
            let mut data = crate::datacheck::DataCheck::default();
            let base = data.check(&file);
            errors.extend(
                base.iter()
                    .map(|i| composed.error_at(&i.path, i.message.clone())),
            );
            // A variant's key paths are its own (a dropped step shifts the indices): located
            // at the variant, the path in the message.
            // A problem the baseline has too is reported once, at the baseline.
            let same = |i: &whet_core::Issue| {
                let key = crate::datacheck::issue_key(i);
                base.iter().any(|b| crate::datacheck::issue_key(b) == key)
            };
            for (what, origin, r) in &checked_variants {
                for i in data.check(r).iter().filter(|i| !same(i)) {
                    errors.push(
                        composed
                            .error_at(origin, format!("in {what}, at `{}`: {}", i.path, i.message)),
                    );
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors).into());
        }
        let data = run_data(&file)?;
        Ok(Run {
            file,
            data,
            value,
            composed: Arc::new(composed),
            base_dir,
            overrides: overrides.to_vec(),
            variant: "baseline".into(),
        })
    }

    /// A variant of this run: its value tree parsed, paths resolved like the baseline's.
    pub(crate) fn variant_of(&self, name: &str, value: &Value) -> Result<Run> {
        let mut file = from_value(value, self.path(), "an ablation variant")
            .map_err(|e| ConfigErrors(vec![e]))?;
        file.resolve_paths(&self.base_dir);
        let data = run_data(&file)?;
        Ok(Run {
            file,
            data,
            value: value.clone(),
            composed: self.composed.clone(),
            base_dir: self.base_dir.clone(),
            overrides: self.overrides.clone(),
            variant: name.to_string(),
        })
    }

    /// A problem found after loading (the data decide it, e.g. a class label), located in the
    /// run file at `key_path` like the problems `validate` finds.
    pub(crate) fn located(&self, key_path: &str, message: String) -> Error {
        ConfigErrors(vec![self.composed.error_at(key_path, message)]).into()
    }

    /// Where `key_path` is in the run file, as `FILE:LINE:COLUMN: at `key_path``, like a
    /// located problem starts; `None` for a run not read from a file.
    pub(crate) fn location(&self, key_path: &str) -> Option<String> {
        let at = self.composed.error_at(key_path, String::new());
        let (line, column) = at.position?;
        Some(format!(
            "{}:{line}:{column}: at `{key_path}`",
            at.file.display()
        ))
    }

    /// The typed run file (data paths resolved).
    pub fn file(&self) -> &RunFile {
        &self.file
    }

    /// The budget the run file's `memory:` key sets, if it has one (a program sets it for the
    /// process with [`whet_core::budget::set`] unless it was given another, as the `whet`
    /// binary does unless `--max-memory` is given).
    pub fn memory(&self) -> Option<whet_core::Budget> {
        self.file.memory.map(whet_core::budget::MemorySize::budget)
    }

    /// The data, by kind.
    pub fn data(&self) -> &RunData {
        &self.data
    }

    /// `(k, repeats)` of a table run whose split is `method: kfold`; `None` otherwise.
    pub fn folds(&self) -> Option<(usize, usize)> {
        match &self.data {
            RunData::Tables(t) => t.split.folds(),
            RunData::Images { .. } => None,
        }
    }

    /// The run's name.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// The run file's seed (a run may be executed with any other).
    pub fn seed(&self) -> u64 {
        self.file.seed
    }

    /// The run file's path as given (`<run file>` in `base_dir` for text).
    pub fn path(&self) -> &Path {
        &self.composed.root().path
    }

    /// The base run files the run file extends (`extends`), nearest first; empty for a file
    /// without `extends`.
    pub fn bases(&self) -> Vec<&Path> {
        self.composed.bases().collect()
    }

    /// The folder relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The overrides the run was loaded with.
    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }

    /// The ablation variant this run is (`baseline` for the run file as written).
    pub fn variant(&self) -> &str {
        &self.variant
    }

    /// True for image data.
    pub fn is_images(&self) -> bool {
        matches!(self.data, RunData::Images { .. })
    }

    /// Whether the run has a test set (`data.images.test`, or `split.test` above 0); without
    /// one it reports validation metrics.
    pub fn has_test_set(&self) -> bool {
        match &self.data {
            RunData::Images { images, .. } => images.test.is_some(),
            RunData::Tables(t) => t.split.test.get() > 0.0,
        }
    }
}

/// Why an ablation variant's name (after grid templating) cannot be its folder.
pub(crate) fn variant_name_message(e: &names::NameError) -> String {
    format!(
        "ablation variant name: {e}; each variant runs in the folder `runs/<name>` inside the output folder, so {}",
        names::VALID_NAME
    )
}

/// The data section of a validated run file, by kind.
fn run_data(file: &RunFile) -> Result<RunData> {
    match (&file.data.images, &file.data.tables, &file.data.target) {
        (Some(images), None, _) => Ok(RunData::Images {
            images: images.clone(),
            augment: file.augment.clone().filter(|a| !a.ops.is_empty()),
        }),
        (None, Some(_), Some(_)) => file
            .tabular_config()
            .map(RunData::Tables)
            .ok_or_else(|| Error::Invalid("the run file's tables need a `data.target`".into())),
        // `RunFile::validate` reports these with their lines; this is only reached for a run
        // file that skipped it.
        _ => Err(Error::Invalid(
            "the run file needs `data.images`, or `data.tables` with `data.target`".into(),
        )),
    }
}

/// Deserialises a run file from a value tree (variants, overrides), reporting the key path.
fn from_value(value: &Value, file: &Path, what: &str) -> Result<RunFile, ConfigError> {
    serde_path_to_error::deserialize::<_, RunFile>(value).map_err(|e| {
        let key_path = e.path().to_string();
        let message = e.into_inner().to_string();
        ConfigError {
            file: file.to_path_buf(),
            position: None,
            key_path: if key_path == "." {
                String::new()
            } else {
                key_path
            },
            hint: yaml::did_you_mean(&message),
            message: format!("{message} (in {what})"),
            snippet: None,
        }
    })
}

/// The JSON Schema of run files, as pretty JSON (for editors: `whet schema`).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(RunFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// The Markdown reference of every run-file key (`docs/reference.md`), made from the schema.
pub fn reference_markdown() -> String {
    let schema = serde_json::to_value(schemars::schema_for!(RunFile)).unwrap_or(Value::Null);
    crate::reference::markdown(&schema)
}
