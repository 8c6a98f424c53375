//! Run-file composition: `extends: base.yaml` and `${VAR}` interpolation.
//!
//! Each file of a chain (`a.yaml` extends `b.yaml` extends `c.yaml`) is read and parsed into a
//! value tree on its own, with its own [`PathIndex`], so a problem found after merging is
//! reported in the file and at the line its key came from (see [`Composed::error_at`]).
//!
//! - Merging: mappings are merged key by key, the extending file winning; anything else (lists,
//!   scalars) is replaced wholesale; a key set to `null` (`~`) in the extending file removes it.
//! - Paths: the relative data paths of a base (`data.images.*.idx.*`, `data.images.*.folder.path`,
//!   `data.images.*.shards.path`, `data.tables.*`, `train.transfer.checkpoint`, `pretrain.*`) are rewritten to stay relative to
//!   the base's folder, so the composed tree holds every path relative to the first file.
//! - Interpolation, in every string scalar (not keys) of every file: `${VAR}` is the variable's
//!   value (an error if unset), `${VAR:-default}` the default when unset or empty, `$$` one `$`;
//!   any other `$` stays. A scalar that is exactly one `${…}` is typed as YAML types the
//!   substituted text (`epochs: ${EPOCHS:-10}` is the number 10, `true` a boolean, `~` null;
//!   lists and mappings stay text); anything else stays a string.

use crate::yaml::{self, ConfigError, PathIndex, Source};
use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// The longest `extends` chain accepted (a chain longer than this is surely a mistake).
pub const MAX_EXTENDS_DEPTH: usize = 32;

/// One file of a composed run file.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    /// The file's text and path.
    pub source: Source,
    /// Positions of its keys.
    pub index: PathIndex,
}

/// A run file composed from its `extends` chain, interpolated.
#[derive(Debug, Clone)]
pub(crate) struct Composed {
    /// The merged value tree (no `extends` key; paths relative to the first file's folder).
    pub value: Value,
    /// The files, the one named on the command line first, then its base, its base's base…
    pub layers: Vec<Layer>,
    /// Whether the value differs from the first file's text as parsed (a base or a `${…}`):
    /// then typed errors are found on the value tree and located through the layers.
    pub composed: bool,
}

/// Where variables come from (the process environment, or a map in tests).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Composed {
    /// Reads the run file at `path` and its bases.
    pub fn read(path: &Path, env: Env) -> Result<Composed, ConfigError> {
        let source = Source::read(path)?;
        Self::from_source(source, env)
    }

    /// Composes a source already read (its `extends` is relative to its path's folder).
    pub fn from_source(source: Source, env: Env) -> Result<Composed, ConfigError> {
        let mut chain = Vec::new();
        let mut layers = Vec::new();
        let mut composed = false;
        let value = load(
            source,
            Path::new(""),
            env,
            &mut chain,
            &mut layers,
            &mut composed,
        )?;
        Ok(Composed {
            value,
            layers,
            composed,
        })
    }

    /// The first file (the one named on the command line).
    pub fn root(&self) -> &Source {
        &self.layers[0].source
    }

    /// The files after the first: its base, its base's base…
    pub fn bases(&self) -> impl Iterator<Item = &Path> {
        self.layers.iter().skip(1).map(|l| l.source.path.as_path())
    }

    /// The layer `key_path` came from: the first file (in chain order) that has the key, else
    /// the first that has its nearest enclosing key.
    fn owner(&self, key_path: &str) -> &Layer {
        let mut p = key_path.to_string();
        loop {
            if let Some(l) = self.layers.iter().find(|l| l.index.contains(&p)) {
                return l;
            }
            match p.rfind(['.', '[']) {
                Some(cut) => p.truncate(cut),
                None => return &self.layers[0],
            }
        }
    }

    /// A located error at `key_path`, in the file and at the line the key came from.
    pub fn error_at(&self, key_path: &str, message: String) -> ConfigError {
        let l = self.owner(key_path);
        l.source.error_at(&l.index, key_path, message)
    }

    /// Locates an error found on the value tree (no position yet) through the layers.
    pub fn locate(&self, mut e: ConfigError) -> ConfigError {
        if e.position.is_none() {
            let l = self.owner(&e.key_path);
            let located = l.source.error_at(&l.index, &e.key_path, String::new());
            e.file = located.file;
            e.position = located.position;
            e.snippet = located.snippet;
        }
        e
    }
}

/// Loads `source` and, recursively, its bases; returns its merged value.
fn load(
    source: Source,
    prefix: &Path,
    env: Env,
    chain: &mut Vec<(PathBuf, PathBuf)>,
    layers: &mut Vec<Layer>,
    composed: &mut bool,
) -> Result<Value, ConfigError> {
    let mut value = yaml::parse_value(&source)?;
    let index = PathIndex::build(&source.text);
    let located = |key: &str, message: String| source.error_at(&index, key, message);
    *composed |= interpolate_tree(&mut value, "", env).map_err(|(k, m)| located(&k, m))?;
    let extends = match &mut value {
        Value::Object(m) => m.remove("extends"),
        _ => None,
    };
    if !prefix.as_os_str().is_empty() {
        rebase_paths(&mut value, prefix);
    }
    let me = source.path.clone();
    chain.push((canonical(&me), me.clone()));
    let base = match extends {
        None => None,
        Some(Value::String(rel)) if !rel.trim().is_empty() => {
            *composed = true;
            let folder = me.parent().unwrap_or(Path::new(""));
            let base_path = folder.join(&rel);
            let key = canonical(&base_path);
            if let Some(at) = chain.iter().position(|(c, _)| *c == key) {
                let names: Vec<String> = chain[at..]
                    .iter()
                    .map(|(_, p)| p.display().to_string())
                    .chain([base_path.display().to_string()])
                    .collect();
                return Err(located(
                    "extends",
                    format!(
                        "`extends` makes a cycle: {}; a base may not extend a file that extends it",
                        names.join(" → ")
                    ),
                ));
            }
            if chain.len() >= MAX_EXTENDS_DEPTH {
                return Err(located(
                    "extends",
                    format!("the `extends` chain is longer than {MAX_EXTENDS_DEPTH} files"),
                ));
            }
            let base_src = match Source::read(&base_path) {
                Ok(s) => s,
                Err(_) if !base_path.exists() => {
                    return Err(located(
                        "extends",
                        format!(
                            "the base run file `{}` does not exist (`extends` is relative to the folder of the file that names it)",
                            base_path.display()
                        ),
                    ));
                }
                Err(e) => return Err(e),
            };
            let rel_dir = Path::new(&rel).parent().unwrap_or(Path::new(""));
            Some((base_src, prefix.join(rel_dir)))
        }
        Some(other) => {
            return Err(located(
                "extends",
                format!(
                    "`extends` names one base run file by its path (e.g. `extends: base.yaml`), found {}",
                    describe(&other)
                ),
            ));
        }
    };
    layers.push(Layer {
        source: source.clone(),
        index: index.clone(),
    });
    match base {
        None => Ok(value),
        Some((base_src, base_prefix)) => {
            let base_value = load(base_src, &base_prefix, env, chain, layers, composed)?;
            Ok(merge(base_value, value))
        }
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| normalise(p))
}

/// `a/./b/../c` → `a/c`, without touching the file system.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "an empty string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Deep merge: mappings key by key (`over` wins; a `null` in `over` removes the key), anything
/// else replaced by `over`.
pub(crate) fn merge(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Object(mut b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                    continue;
                }
                let merged = match b.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            Value::Object(b)
        }
        (_, over) => over,
    }
}

/// Rewrites the relative paths a base file holds so they stay relative to its folder once
/// composed into a file in another folder: `prefix` is the base's folder relative to the first
/// file's. The keys are the path-valued fields of [`crate::RunFile`] (guarded by a test against
/// `RunFile::resolve_paths`).
fn rebase_paths(value: &mut Value, prefix: &Path) {
    let fix = |v: &mut Value| {
        if let Value::String(s) = v
            && Path::new(s.as_str()).is_relative()
        {
            *s = prefix.join(s.as_str()).display().to_string();
        }
    };
    fn at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
        let mut cur = v;
        for k in path {
            cur = cur.as_object_mut()?.get_mut(*k)?;
        }
        Some(cur)
    }
    for set in ["train", "test"] {
        for leaf in [
            &["idx", "images"][..],
            &["idx", "labels"],
            &["folder", "path"],
            &["shards", "path"],
        ] {
            let mut p = vec!["data", "images", set];
            p.extend_from_slice(leaf);
            if let Some(v) = at(value, &p) {
                fix(v);
            }
        }
    }
    if let Some(Value::Object(tables)) = at(value, &["data", "tables"]) {
        for t in tables.values_mut() {
            match t {
                Value::String(_) => fix(t),
                Value::Object(m) => {
                    if let Some(p) = m.get_mut("path") {
                        fix(p);
                    }
                }
                _ => {}
            }
        }
    }
    for p in [
        &["train", "transfer", "checkpoint"][..],
        &["pretrain", "pipeline"],
        &["pretrain", "out"],
    ] {
        if let Some(v) = at(value, p) {
            fix(v);
        }
    }
}

/// Interpolates every string scalar under `v` (whose key path is `path`); true when anything
/// changed. Errors carry the key path.
fn interpolate_tree(v: &mut Value, path: &str, env: Env) -> Result<bool, (String, String)> {
    match v {
        Value::String(s) => {
            if !s.contains('$') {
                return Ok(false);
            }
            let new = interpolate(s, env).map_err(|m| (path.to_string(), m))?;
            let changed = new != Value::String(s.clone());
            *v = new;
            Ok(changed)
        }
        Value::Array(a) => {
            let mut changed = false;
            for (i, x) in a.iter_mut().enumerate() {
                changed |= interpolate_tree(x, &format!("{path}[{i}]"), env)?;
            }
            Ok(changed)
        }
        Value::Object(m) => {
            let mut changed = false;
            for (k, x) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                changed |= interpolate_tree(x, &p, env)?;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

/// One variable reference: its name and default.
fn reference(inner: &str) -> Result<(&str, Option<&str>), String> {
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "`${{{inner}}}`: a variable name is letters, digits and `_`, not starting with a digit \
             (`${{NAME}}` or `${{NAME:-default}}`; write `$$` for a literal `$`)"
        ));
    }
    Ok((name, default))
}

fn value_of(inner: &str, env: Env) -> Result<String, String> {
    let (name, default) = reference(inner)?;
    match (env(name).filter(|v| !v.is_empty()), default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(format!(
            "the environment variable `{name}` is not set (`${{{name}}}`): set it, or give a \
             default with `${{{name}:-default}}`"
        )),
    }
}

/// Interpolates one string scalar (see the module docs for the rules).
///
/// # Errors
/// An unset variable without a default, an unclosed `${`, or a bad variable name.
pub(crate) fn interpolate(s: &str, env: Env) -> Result<Value, String> {
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !inner.contains('}')
        && !inner.contains("${")
    {
        let text = value_of(inner, env)?;
        return Ok(typed(&text));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| {
                format!("unclosed `${{` in `{s}`: write `${{NAME}}`, or `$$` for a literal `$`")
            })?;
            out.push_str(&value_of(&r[..end], env)?);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// The substituted text of a whole-scalar `${…}` as YAML types a plain scalar: number,
/// boolean, null or string (lists and mappings stay text).
fn typed(text: &str) -> Value {
    match serde_saphyr::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
        _ => Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn merge_is_deep_for_mappings_and_replaces_lists() {
        let base = json!({"train": {"epochs": 5, "batch_size": 32}, "steps": [1, 2, 3],
                          "augment": {"ops": []}});
        let over = json!({"train": {"epochs": 9}, "steps": [4], "augment": null});
        assert_eq!(
            merge(base, over),
            json!({"train": {"epochs": 9, "batch_size": 32}, "steps": [4]})
        );
    }

    #[test]
    fn chains_merge_in_order_and_keep_paths_relative_to_their_file() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "common/c.yaml",
            "seed: 1\ndata:\n  tables: { t: data/t.csv, u: { path: /abs/u.csv } }\ntrain: { epochs: 1, batch_size: 8 }\n",
        );
        write(
            d.path(),
            "common/b.yaml",
            "extends: c.yaml\nseed: 2\ntrain: { epochs: 2 }\nsteps: [a, b]\n",
        );
        let a = write(
            d.path(),
            "runs/a.yaml",
            "extends: ../common/b.yaml\nname: a\nsteps: [z]\n",
        );
        let c = Composed::read(&a, &no_env).unwrap();
        assert!(c.composed);
        assert_eq!(
            c.value,
            json!({"name": "a", "seed": 2, "steps": ["z"],
                   "data": {"tables": {"t": "../common/data/t.csv", "u": {"path": "/abs/u.csv"}}},
                   "train": {"epochs": 2, "batch_size": 8}})
        );
        assert_eq!(c.layers.len(), 3);
        // A key from the base of the base is located there, at its line.
        let e = c.error_at("train.batch_size", "bad".into());
        assert!(e.file.ends_with("common/c.yaml"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
        // A key the first file overrides is located in the first file.
        let e = c.error_at("steps[0]", "bad".into());
        assert!(e.file.ends_with("runs/a.yaml"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        // A missing key: where its nearest enclosing key is, nearest file first.
        let e = c.error_at("train.optimizer", "missing".into());
        assert!(e.file.ends_with("common/b.yaml"), "{e}");
    }

    #[test]
    fn cycles_and_missing_bases_are_located_at_the_extends_key() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml", "name: a\nextends: b.yaml\n");
        write(d.path(), "b.yaml", "# b\nextends: ./a.yaml\n");
        let e = Composed::read(&d.path().join("a.yaml"), &no_env).unwrap_err();
        assert!(e.message.contains("cycle"), "{e}");
        assert!(
            e.message.contains("a.yaml → ") && e.message.contains("b.yaml → "),
            "the chain is listed: {e}"
        );
        assert!(e.file.ends_with("b.yaml"), "{e}");
        assert_eq!(e.position, Some((2, 1)), "{e}");
        let m = write(
            d.path(),
            "m.yaml",
            "name: m\n\nextends: nowhere/base.yaml\n",
        );
        let e = Composed::read(&m, &no_env).unwrap_err();
        assert!(e.file.ends_with("m.yaml"), "{e}");
        assert_eq!(e.position, Some((3, 1)), "{e}");
        assert!(e.message.contains("nowhere/base.yaml") && e.message.contains("does not exist"));
        let x = write(d.path(), "x.yaml", "extends: [a.yaml]\n");
        let e = Composed::read(&x, &no_env).unwrap_err();
        assert!(e.message.contains("found a list"), "{e}");
    }

    #[test]
    fn interpolation_types_whole_scalars_and_escapes_dollars() {
        let vars: HashMap<&str, &str> = [("EPOCHS", "7"), ("NAME", "x"), ("EMPTY", "")].into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        assert_eq!(interpolate("${EPOCHS}", &env).unwrap(), json!(7));
        assert_eq!(interpolate("${MISSING:-0.5}", &env).unwrap(), json!(0.5));
        assert_eq!(interpolate("${MISSING:-true}", &env).unwrap(), json!(true));
        assert_eq!(interpolate("${EMPTY:-def}", &env).unwrap(), json!("def"));
        assert_eq!(
            interpolate("${MISSING:-[1, 2]}", &env).unwrap(),
            json!("[1, 2]")
        );
        assert_eq!(interpolate("run-${EPOCHS}", &env).unwrap(), json!("run-7"));
        assert_eq!(
            interpolate("${NAME}-${EPOCHS}", &env).unwrap(),
            json!("x-7")
        );
        assert_eq!(
            interpolate("cost $$5 and $x", &env).unwrap(),
            json!("cost $5 and $x")
        );
        assert_eq!(interpolate("$${NAME}", &env).unwrap(), json!("${NAME}"));
        let e = interpolate("a ${MISSING}", &env).unwrap_err();
        assert!(e.contains("`MISSING` is not set"), "{e}");
        assert!(
            interpolate("${oops", &env)
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            interpolate("${1X}", &env)
                .unwrap_err()
                .contains("variable name")
        );
    }

    #[test]
    fn an_unset_variable_is_located_at_its_key_in_its_file() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "base.yaml", "train:\n  epochs: ${EPOCHS}\n");
        let a = write(d.path(), "a.yaml", "extends: base.yaml\nname: ${NAME:-a}\n");
        let e = Composed::read(&a, &no_env).unwrap_err();
        assert!(e.file.ends_with("base.yaml"), "{e}");
        assert_eq!(e.key_path, "train.epochs");
        assert_eq!(e.position, Some((2, 3)), "{e}");
        assert!(e.message.contains("`EPOCHS`"), "{e}");
        let env = |k: &str| (k == "EPOCHS").then(|| "4".to_string());
        let c = Composed::read(&a, &env).unwrap();
        assert_eq!(c.value, json!({"name": "a", "train": {"epochs": 4}}));
        // A file without `extends` or `${…}` is not composed: typed errors come from its text.
        let p = write(d.path(), "plain.yaml", "name: p\ndescription: costs 5 $\n");
        assert!(!Composed::read(&p, &no_env).unwrap().composed);
    }

    #[test]
    fn rebased_keys_are_every_path_run_files_resolve() {
        // Every string a `RunFile::resolve_paths` changes must be a key `rebase_paths` knows.
        let text = "name: t\ndata:\n  images:\n    train: { idx: { images: p, labels: p } }\n    test: { folder: { path: p, width: 4, height: 4 } }\n  tables: { a: p, b: { path: p } }\nmodel: { task: classification, hidden: [] }\ntrain: { optimizer: { sgd: { lr: 0.1 } }, batch_size: 8, epochs: 1, transfer: { checkpoint: p } }\npretrain: { pipeline: p, out: p }\n";
        let value: Value = serde_saphyr::from_str(text).unwrap();
        let mut file: crate::RunFile = serde_json::from_value(value.clone()).unwrap();
        file.resolve_paths(Path::new("R"));
        let resolved = serde_json::to_value(&file).unwrap();
        let mut rebased = value.clone();
        rebase_paths(&mut rebased, Path::new("R"));
        fn strings(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                Value::Object(m) => m.values().for_each(|x| strings(x, out)),
                _ => {}
            }
        }
        let (mut want, mut got) = (vec![], vec![]);
        strings(&resolved, &mut want);
        strings(&rebased, &mut got);
        let count = |v: &[String]| v.iter().filter(|s| s.as_str() == "R/p").count();
        assert_eq!(count(&want), 8);
        assert_eq!(count(&got), count(&want));
    }
}
