//! The run file: one YAML document composed of the config types of each crate.
//!
//! Loading goes: read (size, UTF-8) → typed parse with located errors → `--set` overrides →
//! paths resolved against the file's folder → validation of every section and of the data
//! files, all problems reported at once with file, line, column and key path.

use crate::variants::{self, AblationConfig};
use crate::yaml::{self, ConfigError, ConfigErrors, PathIndex, Source};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use whet_core::Issues;

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
}

/// What kind of data a run file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Images.
    Images,
    /// Tables.
    Tables,
}

/// A run file loaded and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed run file (paths resolved).
    pub run: RunFile,
    /// The run file as a value tree (paths as written), for ablation variants.
    pub value: Value,
    /// The file.
    pub source: Source,
    /// Folder that relative paths are resolved against.
    pub base_dir: PathBuf,
}

impl RunFile {
    /// Image or table data.
    pub fn kind(&self) -> DataKind {
        if self.data.images.is_some() {
            DataKind::Images
        } else {
            DataKind::Tables
        }
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
        } else if self.name.contains(['/', '\\']) || self.name == ".." {
            issues.push(
                "name",
                format!(
                    "`{}` cannot be a folder name; use letters, digits, `-` and `_`",
                    self.name
                ),
            );
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
                Some(target) => {
                    let cfg = whet_tabular::TabularConfig {
                        data: whet_tabular::TablesConfig { tables: tables.clone(), main: self.data.main.clone(), target: target.clone() },
                        steps: self.steps.clone(),
                        split: self.split.clone().unwrap_or_default(),
                    };
                    issues.0.extend(cfg.validate().0);
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
            && !p.pipeline.is_file()
        {
            issues.push(
                "pretrain.pipeline",
                format!("`{}` does not exist", p.pipeline.display()),
            );
        }
        issues.nest("model", self.model.validate());
        issues.nest("train", self.train.validate());
        issues
    }
}

impl RunFile {
    /// Data files that do not exist, reported at their key paths before any loading.
    fn check_files(&self, issues: &mut Issues) {
        let mut need = |path: &Path, key: String| {
            if !path.exists() {
                issues.push(key, format!("`{}` does not exist (relative paths are resolved against the run file's folder)", path.display()));
            }
        };
        if let Some(i) = &self.data.images {
            let mut sources = vec![("train", &i.train)];
            if let Some(t) = &i.test {
                sources.push(("test", t));
            }
            for (name, s) in sources {
                if let Some(idx) = &s.idx {
                    need(&idx.images, format!("data.images.{name}.idx.images"));
                    need(&idx.labels, format!("data.images.{name}.idx.labels"));
                }
                if let Some(f) = &s.folder {
                    need(&f.path, format!("data.images.{name}.folder.path"));
                }
            }
        }
        if let Some(t) = &self.data.tables {
            for (name, spec) in t {
                need(&spec.path, format!("data.tables.{name}"));
            }
        }
    }
}

/// Parses a `--set key.path=value` override; the value is YAML (`0.1`, `full`, `[1, 2]`,
/// `{adam: {lr: 0.01}}`).
///
/// # Errors
/// No `=`, or a value that is not YAML.
pub fn parse_override(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`--set {s}`: expected KEY.PATH=VALUE, e.g. train.epochs=5"))?;
    let value: Value = serde_saphyr::from_str(v)
        .map_err(|e| format!("`--set {s}`: the value is not valid YAML: {e}"))?;
    Ok((k.trim().to_string(), value))
}

/// Deserialises a run file from a value tree (variants, overrides), reporting the key path.
///
/// # Errors
/// The first type or range error, with its key path; `what` says where the value came from.
pub fn from_value(value: &Value, file: &Path, what: &str) -> Result<RunFile, ConfigError> {
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

/// Loads, overrides, resolves and validates a run file.
///
/// # Errors
/// Every problem found, located in the file.
pub fn load(path: &Path, overrides: &[(String, Value)]) -> Result<Loaded, ConfigErrors> {
    let one = |e: ConfigError| ConfigErrors(vec![e]);
    let source = Source::read(path).map_err(one)?;
    let mut run: RunFile = yaml::parse(&source).map_err(one)?;
    let mut value = yaml::parse_value(&source).map_err(one)?;
    if !overrides.is_empty() {
        for (k, v) in overrides {
            variants::set_path(&mut value, k, v).map_err(|e| {
                one(ConfigError {
                    file: path.to_path_buf(),
                    position: None,
                    key_path: k.clone(),
                    message: format!("--set: {e}"),
                    hint: None,
                    snippet: None,
                })
            })?;
        }
        run = from_value(&value, path, "--set overrides").map_err(one)?;
    }
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    run.resolve_paths(&base_dir);
    let index = PathIndex::build(&source.text);
    let mut errors: Vec<ConfigError> = run
        .validate()
        .iter()
        .map(|i| source.error_at(&index, &i.path, i.message.clone()))
        .collect();
    if let Some(ab) = &run.ablation {
        match variants::expand(&value, ab) {
            Err(e) => errors.push(source.error_at(&index, "ablation", e)),
            Ok(vs) => {
                for v in vs.iter().skip(1) {
                    let what = format!("ablation variant `{}`", v.name);
                    match from_value(&v.value, path, &what) {
                        Err(mut e) => {
                            e.position = index.lookup("ablation");
                            errors.push(e);
                        }
                        Ok(mut r) => {
                            r.resolve_paths(&base_dir);
                            for i in r.validate().iter() {
                                errors.push(source.error_at(
                                    &index,
                                    &i.path,
                                    format!("{} (in {what})", i.message),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(Loaded {
            run,
            value,
            source,
            base_dir,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Loads a variant's run file from its value tree, paths resolved against `base_dir`.
///
/// # Errors
/// The variant does not parse (already checked by [`load`], so only on internal errors).
pub fn load_variant(value: &Value, loaded: &Loaded) -> Result<RunFile, ConfigError> {
    let mut r = from_value(value, &loaded.source.path, "an ablation variant")?;
    r.resolve_paths(&loaded.base_dir);
    Ok(r)
}

/// The JSON Schema of run files.
pub fn schema() -> Value {
    let schema = schemars::schema_for!(RunFile);
    serde_json::to_value(schema).unwrap_or(Value::Null)
}
