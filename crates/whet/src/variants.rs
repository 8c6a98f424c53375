//! Ablation variants: the `ablation` section of a run file and its expansion into concrete run
//! files.
//!
//! A variant is the baseline run file with edits applied to its value tree before it is parsed
//! into typed configs, so variants can change anything the run file can say, without this
//! module knowing the configs of the other crates:
//! - `drop: augment` removes a key; `drop: augment.ops.elastic` removes every `elastic` op from
//!   the `augment.ops` list; `drop: steps[2]` removes one list item by index;
//! - `set: { model.hidden.0.noise: 0.0 }` sets a value (list items by index or by op name:
//!   `augment.ops.gaussian_noise.std`);
//! - `grid: { train.optimizer.adam.lr: [0.1, 0.01] }` makes one variant per combination, named
//!   by the `name` template (`"lr={lr}"`);
//! - `leave_one_out: [augment.ops, steps]` adds a `no-<op>` variant for every item of each list.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The `ablation` section.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AblationConfig {
    /// Seeds per variant: a count `n` (the run's seed, seed+1, … seed+n-1), an explicit list, or
    /// `{ min: 3, max: 10 }` for sequential seeding: every variant runs the first `min` seeds,
    /// then a variant whose paired difference on the metric is not yet clear after the
    /// Holm–Bonferroni adjustment over the variants (adjusted p ≥ 0.05, as the report's headline
    /// judges) gets one more seed at a time (the baseline runs it too) until it is clear or it
    /// has `max`.
    /// Every variant runs with the same seeds, so differences are paired. Default 3.
    #[serde(default = "default_seeds")]
    pub seeds: Seeds,
    /// The metric the report ranks by (default: `accuracy` for classification, `mse` for
    /// regression).
    #[serde(default)]
    pub metric: Option<String>,
    /// Lists (key paths such as `augment.ops` or `steps`) whose every item gets an automatic
    /// `no-<op>` variant without it.
    #[serde(default)]
    pub leave_one_out: Vec<String>,
    /// Hand-written variants.
    #[serde(default)]
    pub variants: Vec<VariantConfig>,
    /// Job-array settings for `whet ablate --launcher slurm` (`--slurm KEY=VALUE` overrides
    /// them). They do not change what a cell computes.
    #[serde(default)]
    pub slurm: Option<crate::slurm::SlurmOptions>,
}

fn default_seeds() -> Seeds {
    Seeds::Count(3)
}

/// How many seeds, or which.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Seeds {
    /// `n` seeds starting at the run's seed.
    Count(u64),
    /// These seeds.
    List(Vec<u64>),
    /// Sequential seeding: `min` seeds for every variant, up to `max` for the unresolved ones.
    Sequential {
        /// Seeds every variant runs (2 to `max`).
        min: u64,
        /// Seeds a variant can get at most (`min` to 100).
        max: u64,
    },
}

impl<'de> Deserialize<'de> for Seeds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Seeds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a number of seeds (1 to 100), a list of seeds, or `{ min: 3, max: 10 }`",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seeds, E> {
                if (1..=100).contains(&v) {
                    Ok(Seeds::Count(v))
                } else {
                    Err(E::custom(format!("expected 1 to 100 seeds, found {v}")))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seeds, E> {
                self.visit_u64(
                    u64::try_from(v)
                        .map_err(|_| E::custom(format!("expected 1 to 100 seeds, found {v}")))?,
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Seeds, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = a.next_element::<u64>()? {
                    v.push(s);
                }
                if v.is_empty() {
                    return Err(serde::de::Error::custom("the seed list is empty"));
                }
                Ok(Seeds::List(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Seeds, A::Error> {
                use serde::de::Error as _;
                let (mut min, mut max) = (None, None);
                while let Some(k) = a.next_key::<String>()? {
                    match k.as_str() {
                        "min" => min = Some(a.next_value::<u64>()?),
                        "max" => max = Some(a.next_value::<u64>()?),
                        other => {
                            return Err(A::Error::custom(format!(
                                "unknown field `{other}`, expected `min` or `max`"
                            )));
                        }
                    }
                }
                let (Some(min), Some(max)) = (min, max) else {
                    return Err(A::Error::custom(
                        "sequential seeding needs both `min` and `max`: `{ min: 3, max: 10 }`",
                    ));
                };
                if min < 2 || min > max || max > 100 {
                    return Err(A::Error::custom(format!(
                        "expected 2 <= min <= max <= 100 (an interval needs 2 paired seeds), found min {min}, max {max}"
                    )));
                }
                Ok(Seeds::Sequential { min, max })
            }
        }
        d.deserialize_any(V)
    }
}

impl Seeds {
    /// The concrete seeds, given the run's seed.
    pub fn resolve(&self, base: u64) -> Vec<u64> {
        match self {
            Seeds::Count(n) => (0..*n).map(|i| base.wrapping_add(i)).collect(),
            Seeds::List(v) => v.clone(),
            Seeds::Sequential { max, .. } => (0..*max).map(|i| base.wrapping_add(i)).collect(),
        }
    }

    /// For sequential seeding, the number of seeds every variant runs; `None` when all of
    /// [`Seeds::resolve`]'s seeds always run.
    pub fn sequential_min(&self) -> Option<usize> {
        match self {
            Seeds::Sequential { min, .. } => Some(*min as usize),
            _ => None,
        }
    }
}

/// One key path or several.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Paths {
    /// No paths.
    #[default]
    None,
    /// One path.
    One(String),
    /// Several paths.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Paths;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key path such as `augment.ops.elastic`, or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Paths, E> {
                Ok(Paths::One(v.to_string()))
            }
            // `Paths::None` serialises as `null` (a manifest's resolved run file has it).
            fn visit_unit<E: serde::de::Error>(self) -> Result<Paths, E> {
                Ok(Paths::None)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Paths, E> {
                Ok(Paths::None)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Paths, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    v.push(s);
                }
                Ok(Paths::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Paths {
    /// The paths as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Paths::None => vec![],
            Paths::One(s) => vec![s.clone()],
            Paths::Many(v) => v.clone(),
        }
    }
}

/// One hand-written variant.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// The variant's name (unique; `baseline` is reserved). With `grid`, a template:
    /// `{key}` is replaced by the value of the grid path ending in `key`.
    pub name: String,
    /// Key paths to remove (a key, a list item by index, or every list item with that op name).
    #[serde(default)]
    pub drop: Paths,
    /// Key paths to set, with their new values.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// Key paths with lists of values: one variant per combination.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<Value>>,
    /// What the variant tests, for the report (default: made from the edits).
    #[serde(default)]
    pub description: Option<String>,
}

/// A concrete variant: its name, what it changes, and its whole run-file value.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Unique name (`baseline` for the unchanged file).
    pub name: String,
    /// What it changes, in words.
    pub description: String,
    /// The edited run file (without its `ablation` section).
    pub value: Value,
    /// The run-file key its name comes from (`ablation.variants[2].name`,
    /// `ablation.leave_one_out[0]`; empty for the baseline), for locating errors about it.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    for part in path.split('.') {
        let (head, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !head.is_empty() {
            match head.parse::<usize>() {
                Ok(i) => segs.push(Seg::Index(i)),
                Err(_) => segs.push(Seg::Key(head.to_string())),
            }
        } else if rest.is_empty() {
            return Err(format!("empty segment in key path `{path}`"));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let (num, after) = r
                .split_once(']')
                .ok_or_else(|| format!("unclosed `[` in key path `{path}`"))?;
            segs.push(Seg::Index(num.parse().map_err(|_| {
                format!("`[{num}]` in `{path}` is not a list index")
            })?));
            rest = after;
        }
        if !rest.is_empty() {
            return Err(format!("unexpected `{rest}` in key path `{path}`"));
        }
    }
    Ok(segs)
}

/// The op name of a list item written as a one-key map (`{rotate: {...}}`), if it is one.
fn tag_of(item: &Value) -> Option<&str> {
    match item {
        Value::Object(m) if m.len() == 1 => m.keys().next().map(String::as_str),
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn describe_keys(v: &Value) -> String {
    match v {
        Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| tag_of(x).map_or(format!("[{i}]"), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "no keys: it is a single value".into(),
    }
}

/// All nodes reached by `segs` from `v` (several when an op name matches several list items).
fn resolve_mut<'a>(
    v: &'a mut Value,
    segs: &[Seg],
    create: bool,
    walked: &str,
) -> Result<Vec<&'a mut Value>, String> {
    let Some((first, rest)) = segs.split_first() else {
        return Ok(vec![v]);
    };
    let here = |s: &Seg| match s {
        Seg::Key(k) if walked.is_empty() => k.clone(),
        Seg::Key(k) => format!("{walked}.{k}"),
        Seg::Index(i) => format!("{walked}[{i}]"),
    };
    let next_walked = here(first);
    match (v, first) {
        (Value::Object(m), Seg::Key(k)) => {
            if !m.contains_key(k) {
                if !create {
                    let have = m.keys().cloned().collect::<Vec<_>>().join(", ");
                    return Err(format!(
                        "`{next_walked}` is not in the run file (`{walked}` has: {have})"
                    ));
                }
                m.insert(k.clone(), Value::Object(Default::default()));
            }
            resolve_mut(
                m.get_mut(k).expect("inserted above"),
                rest,
                create,
                &next_walked,
            )
        }
        (Value::Object(m), Seg::Index(i)) => {
            let k = i.to_string();
            match m.get_mut(&k) {
                Some(x) => resolve_mut(x, rest, create, &next_walked),
                None => Err(format!("`{walked}` has no key `{k}`")),
            }
        }
        (Value::Array(a), Seg::Index(i)) => {
            let n = a.len();
            let x = a
                .get_mut(*i)
                .ok_or_else(|| format!("`{walked}` has {n} items; there is no item {i}"))?;
            resolve_mut(x, rest, create, &next_walked)
        }
        (Value::Array(a), Seg::Key(tag)) => {
            let have = describe_keys(&Value::Array(a.clone()));
            let mut out = Vec::new();
            for item in a.iter_mut() {
                if tag_of(item) == Some(tag.as_str())
                    && let Value::Object(m) = item
                {
                    out.extend(resolve_mut(
                        m.get_mut(tag).expect("tag is the key"),
                        rest,
                        create,
                        &next_walked,
                    )?);
                }
            }
            if out.is_empty() {
                return Err(format!(
                    "no `{tag}` in the list `{walked}` (it has: {have})"
                ));
            }
            Ok(out)
        }
        (other, _) => Err(format!(
            "`{walked}` is {}, not a mapping or list; cannot go to `{next_walked}`",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn join(parent: &[Seg]) -> String {
    let mut s = String::new();
    for seg in parent {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Removes what `path` names from `root`.
///
/// # Errors
/// The path does not exist (the message says what is there instead).
pub fn drop_path(root: &mut Value, path: &str) -> Result<(), String> {
    let segs = parse_path(path)?;
    let (last, parent) = segs.split_last().ok_or("empty key path")?;
    let parent_path = join(parent);
    for node in resolve_mut(root, parent, false, "")? {
        let have = describe_keys(node);
        match (node, last) {
            (Value::Object(m), Seg::Key(k)) => {
                if m.remove(k).is_none() {
                    return Err(format!(
                        "`{path}` is not in the run file (`{parent_path}` has: {have})"
                    ));
                }
            }
            (Value::Array(a), Seg::Index(i)) => {
                if *i >= a.len() {
                    return Err(format!(
                        "`{parent_path}` has {} items; there is no item {i}",
                        a.len()
                    ));
                }
                a.remove(*i);
            }
            (Value::Array(a), Seg::Key(tag)) => {
                let before = a.len();
                a.retain(|x| tag_of(x) != Some(tag.as_str()));
                if a.len() == before {
                    return Err(format!(
                        "no `{tag}` in the list `{parent_path}` (it has: {have})"
                    ));
                }
            }
            (other, _) => {
                return Err(format!(
                    "`{parent_path}` is {}; cannot drop `{path}` from it",
                    kind(other)
                ));
            }
        }
    }
    Ok(())
}

/// Sets what `path` names in `root` to `value` (creating missing mapping keys).
///
/// # Errors
/// The path goes through a value that is not a mapping or list, or names a missing list item.
pub fn set_path(root: &mut Value, path: &str, value: &Value) -> Result<(), String> {
    let segs = parse_path(path)?;
    for node in resolve_mut(root, &segs, true, "")? {
        *node = value.clone();
    }
    Ok(())
}

/// A value as a variant's name or description shows it: strings bare, the rest as compact JSON.
pub(crate) fn fmt_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Most variants an ablation may have (grids multiplied out, leave-one-out items counted),
/// not counting the baseline.
pub const MAX_VARIANTS: usize = 10_000;

/// Every combination of one value per axis (`path`, values), the first axis varying slowest;
/// one empty combination when there is no axis.
fn combinations<'a>(
    axes: impl Iterator<Item = (&'a str, &'a [Value])>,
) -> Vec<Vec<(String, Value)>> {
    let mut combos = vec![vec![]];
    for (path, values) in axes {
        combos = combos
            .into_iter()
            .flat_map(|c: Vec<(String, Value)>| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((path.to_string(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
}

/// The run file's value without its `ablation` section: the baseline every variant edits.
fn baseline_of(base: &Value) -> Value {
    let mut baseline = base.clone();
    if let Value::Object(m) = &mut baseline {
        m.remove("ablation");
    }
    baseline
}

/// The variants of `whet ablate --sweep`: the baseline, then one variant per combination of the
/// sweeps' values (a grid; the first sweep varies slowest), named `leaf=value,leaf=value` after
/// the last segment of each key path (the whole path when two sweeps end alike). A combination
/// that leaves the run file as it is says so in its description (`(the baseline's value)`): it
/// still runs, as a check of run-to-run agreement.
///
/// # Errors
/// No sweep, a key path given twice or not valid, a value that cannot be set there, or more
/// than [`MAX_VARIANTS`] combinations.
pub fn sweep(base: &Value, sweeps: &[(String, Vec<Value>)]) -> Result<Vec<Variant>, String> {
    if sweeps.is_empty() {
        return Err("no --sweep given".into());
    }
    let mut n = 1u64;
    for (i, (key, values)) in sweeps.iter().enumerate() {
        parse_path(key).map_err(|e| format!("--sweep {key}: {e}"))?;
        if sweeps[..i].iter().any(|(k, _)| k == key) {
            return Err(format!(
                "--sweep {key} is given twice; give all its values in one --sweep ({key}=A,B,C)"
            ));
        }
        if values.is_empty() {
            return Err(format!("--sweep {key} has no values"));
        }
        n = n.saturating_mul(values.len() as u64);
    }
    if n > MAX_VARIANTS as u64 {
        let sizes: Vec<String> = sweeps.iter().map(|(_, v)| v.len().to_string()).collect();
        return Err(format!(
            "the sweeps make {} = {n} variants, more than the limit of {MAX_VARIANTS}; give fewer values",
            sizes.join(" x ")
        ));
    }
    let leaf = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
    let label = |p: &str| {
        if sweeps.iter().filter(|(k, _)| leaf(k) == leaf(p)).count() > 1 {
            p.to_string()
        } else {
            leaf(p)
        }
    };
    let baseline = baseline_of(base);
    let mut out = vec![Variant {
        name: "baseline".into(),
        description: "the run file as written".into(),
        value: baseline.clone(),
        origin: String::new(),
    }];
    let combos = combinations(sweeps.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    for combo in combos {
        let mut value = baseline.clone();
        let mut name = Vec::new();
        let mut desc = Vec::new();
        for (p, v) in &combo {
            set_path(&mut value, p, v).map_err(|e| format!("--sweep {p}: {e}"))?;
            name.push(format!("{}={}", label(p), fmt_value(v)));
            desc.push(format!("{p} = {}", fmt_value(v)));
        }
        let mut description = desc.join("; ");
        if value == baseline {
            description.push_str(" (the baseline's value)");
        }
        out.push(Variant {
            name: name.join(","),
            description,
            value,
            origin: String::new(),
        });
    }
    Ok(out)
}

/// Expands the ablation section of `base` into concrete variants, baseline first.
///
/// # Errors
/// A variant whose edits do not apply, duplicate names, or more than [`MAX_VARIANTS`] variants;
/// the message names the variant.
pub fn expand(base: &Value, ab: &AblationConfig) -> Result<Vec<Variant>, String> {
    // The number of variants is counted before any is made: a grid's size is the product of
    // its value counts, which can be far beyond what fits in memory.
    let mut planned = 0u64;
    for (vi, vc) in ab.variants.iter().enumerate() {
        let n = vc
            .grid
            .values()
            .fold(1u64, |a, v| a.saturating_mul(v.len() as u64));
        planned = planned.saturating_add(n);
        if planned > MAX_VARIANTS as u64 {
            let sizes: Vec<String> = vc.grid.values().map(|v| v.len().to_string()).collect();
            return Err(format!(
                "ablation.variants[{vi}] (`{}`): the ablation would have {planned} or more \
                 variants (this grid: {} = {n}), more than the limit of {MAX_VARIANTS}; list \
                 fewer grid values or split the ablation",
                vc.name,
                sizes.join(" x ")
            ));
        }
    }
    let baseline = baseline_of(base);
    let mut out = vec![Variant {
        name: "baseline".into(),
        description: "the run file as written".into(),
        value: baseline.clone(),
        origin: String::new(),
    }];
    for (vi, vc) in ab.variants.iter().enumerate() {
        let ctx = |e: String| format!("ablation.variants[{vi}] (`{}`): {e}", vc.name);
        if let Some((path, _)) = vc.grid.iter().find(|(_, v)| v.is_empty()) {
            return Err(ctx(format!("grid `{path}` has no values")));
        }
        let combos = combinations(vc.grid.iter().map(|(p, v)| (p.as_str(), v.as_slice())));
        for combo in combos {
            let mut value = baseline.clone();
            let mut desc = Vec::new();
            for p in vc.drop.to_vec() {
                drop_path(&mut value, &p).map_err(ctx)?;
                desc.push(format!("drop {p}"));
            }
            for (p, v) in &vc.set {
                set_path(&mut value, p, v).map_err(ctx)?;
                desc.push(format!("{p} = {}", fmt_value(v)));
            }
            let mut name = vc.name.clone();
            let mut templated = false;
            for (p, v) in &combo {
                set_path(&mut value, p, v).map_err(ctx)?;
                desc.push(format!("{p} = {}", fmt_value(v)));
                let leaf = p.rsplit('.').next().unwrap_or(p);
                for key in [format!("{{{p}}}"), format!("{{{leaf}}}")] {
                    if name.contains(&key) {
                        name = name.replace(&key, &fmt_value(v));
                        templated = true;
                    }
                }
            }
            if !combo.is_empty() && !templated {
                let vals: Vec<String> = combo.iter().map(|(_, v)| fmt_value(v)).collect();
                name = format!("{name}-{}", vals.join("-"));
            }
            let description = vc.description.clone().unwrap_or_else(|| desc.join("; "));
            out.push(Variant {
                name,
                description,
                value,
                origin: format!("ablation.variants[{vi}].name"),
            });
        }
    }
    for (li, list_path) in ab.leave_one_out.iter().enumerate() {
        let segs =
            parse_path(list_path).map_err(|e| format!("ablation.leave_one_out[{li}]: {e}"))?;
        let mut probe = baseline.clone();
        let nodes = resolve_mut(&mut probe, &segs, false, "")
            .map_err(|e| format!("ablation.leave_one_out[{li}]: {e}"))?;
        let items: Vec<Value> = match nodes.as_slice() {
            [Value::Array(a)] => a.clone(),
            [other] => {
                return Err(format!(
                    "ablation.leave_one_out[{li}]: `{list_path}` is {}, not a list",
                    kind(other)
                ));
            }
            _ => {
                return Err(format!(
                    "ablation.leave_one_out[{li}]: `{list_path}` names several lists"
                ));
            }
        };
        if out.len() - 1 + items.len() > MAX_VARIANTS {
            return Err(format!(
                "ablation.leave_one_out[{li}]: `{list_path}` has {} items, which would take the \
                 ablation to {} variants, more than the limit of {MAX_VARIANTS}",
                items.len(),
                out.len() - 1 + items.len()
            ));
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for item in &items {
            *counts
                .entry(tag_of(item).unwrap_or("item").to_string())
                .or_default() += 1;
        }
        for (i, item) in items.iter().enumerate() {
            let tag = tag_of(item).unwrap_or("item").to_string();
            let name = if counts[&tag] > 1 {
                format!("no-{tag}-{i}")
            } else {
                format!("no-{tag}")
            };
            let mut value = baseline.clone();
            drop_path(&mut value, &format!("{list_path}[{i}]"))
                .map_err(|e| format!("ablation.leave_one_out[{li}]: {e}"))?;
            out.push(Variant {
                name,
                description: format!("drop {list_path}[{i}] ({tag})"),
                value,
                origin: format!("ablation.leave_one_out[{li}]"),
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    for v in &out {
        if !seen.insert(v.name.clone()) {
            return Err(format!(
                "two ablation variants are named `{}`; variant names must be unique (`baseline` is reserved)",
                v.name
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_back_what_they_write() {
        // A variant without `drop` is written `"drop": null` (in a run's manifest).
        for p in [
            Paths::None,
            Paths::One("a.b".into()),
            Paths::Many(vec!["a".into(), "b.c".into()]),
        ] {
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Paths>(&text).unwrap(), p, "{text}");
        }
    }

    fn base() -> Value {
        json!({
            "name": "t", "seed": 1,
            "augment": {"mode": "online", "ops": [
                {"rotate": {"degrees": 12}}, {"elastic": {"alpha": 34}}, {"gaussian_noise": {"std": 0.1}}
            ]},
            "model": {"hidden": [{"dense": 64, "noise": 0.1}]},
            "ablation": {"seeds": 2}
        })
    }

    fn ab(v: Value) -> AblationConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_grid_too_big_is_counted_before_it_is_expanded() {
        let ten: Vec<u32> = (0..10).collect();
        let grid: serde_json::Map<String, Value> = (0..6)
            .map(|i| (format!("train.k{i}"), json!(ten)))
            .collect();
        let a = ab(json!({"variants": [{"name": "big", "grid": grid}]}));
        let e = expand(&base(), &a).unwrap_err();
        assert!(e.contains("1000000") && e.contains("limit of 10000"), "{e}");
        // 10,000 in all is the limit, not beyond it: two grids of 100 x 60 are over.
        let hundred: Vec<u32> = (0..100).collect();
        let sixty: Vec<u32> = (0..60).collect();
        let a = ab(json!({"variants": [
            {"name": "a", "grid": {"train.x": hundred, "train.y": sixty}},
            {"name": "b", "grid": {"train.x": hundred, "train.y": sixty}},
        ]}));
        let e = expand(&base(), &a).unwrap_err();
        assert!(e.contains("ablation.variants[1]"), "{e}");
    }

    #[test]
    fn drop_set_and_grid() {
        let a = ab(json!({"variants": [
            {"name": "no-augment", "drop": "augment"},
            {"name": "no-elastic", "drop": "augment.ops.elastic"},
            {"name": "no-hidden-noise", "set": {"model.hidden.0.noise": 0.0}},
            {"name": "noise={std}", "grid": {"augment.ops.gaussian_noise.std": [0.0, 0.2]}}
        ]}));
        let vs = expand(&base(), &a).unwrap();
        let names: Vec<_> = vs.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "baseline",
                "no-augment",
                "no-elastic",
                "no-hidden-noise",
                "noise=0.0",
                "noise=0.2"
            ]
        );
        assert!(vs[0].value.get("ablation").is_none());
        assert!(vs[1].value.get("augment").is_none());
        assert_eq!(vs[2].value["augment"]["ops"].as_array().unwrap().len(), 2);
        assert_eq!(vs[3].value["model"]["hidden"][0]["noise"], json!(0.0));
        assert_eq!(
            vs[5].value["augment"]["ops"][2]["gaussian_noise"]["std"],
            json!(0.2)
        );
        assert_eq!(vs[4].description, "augment.ops.gaussian_noise.std = 0.0");
    }

    #[test]
    fn leave_one_out_names_each_item() {
        let vs = expand(&base(), &ab(json!({"leave_one_out": ["augment.ops"]}))).unwrap();
        let names: Vec<_> = vs.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            ["baseline", "no-rotate", "no-elastic", "no-gaussian_noise"]
        );
        assert_eq!(
            vs[1].value["augment"]["ops"][0],
            json!({"elastic": {"alpha": 34}})
        );
    }

    #[test]
    fn bad_paths_say_what_is_there() {
        let e = expand(
            &base(),
            &ab(json!({"variants": [{"name": "x", "drop": "augment.ops.blur"}]})),
        )
        .unwrap_err();
        assert!(
            e.contains("no `blur`") && e.contains("rotate, elastic, gaussian_noise"),
            "{e}"
        );
        let e = expand(
            &base(),
            &ab(json!({"variants": [{"name": "x", "drop": "augmnt"}]})),
        )
        .unwrap_err();
        assert!(e.contains("`augmnt` is not in the run file"), "{e}");
        let e = expand(
            &base(),
            &ab(json!({"variants": [{"name": "baseline", "set": {"seed": 2}}]})),
        )
        .unwrap_err();
        assert!(e.contains("unique"), "{e}");
    }

    #[test]
    fn sweeps_make_a_grid_named_by_leaf() {
        let lr = "train.optimizer.adam.lr".to_string();
        let std = "augment.ops.gaussian_noise.std".to_string();
        let vs = sweep(
            &base(),
            &[
                (lr.clone(), vec![json!(0.1), json!(0.01)]),
                (std.clone(), vec![json!(0.1), json!(0.3)]),
            ],
        )
        .unwrap();
        let names: Vec<_> = vs.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "baseline",
                "lr=0.1,std=0.1",
                "lr=0.1,std=0.3",
                "lr=0.01,std=0.1",
                "lr=0.01,std=0.3"
            ]
        );
        assert_eq!(vs[4].value["train"]["optimizer"]["adam"]["lr"], json!(0.01));
        assert_eq!(
            vs[4].value["augment"]["ops"][2]["gaussian_noise"]["std"],
            json!(0.3)
        );
        assert!(vs.iter().all(|v| v.value.get("ablation").is_none()));
        // Only a combination that changes nothing says it is the baseline's value.
        assert!(
            !vs[1].description.contains("baseline"),
            "{}",
            vs[1].description
        );
        let same = sweep(&base(), &[(std.clone(), vec![json!(0.1), json!(0.2)])]).unwrap();
        assert_eq!(
            same[1].description,
            "augment.ops.gaussian_noise.std = 0.1 (the baseline's value)"
        );
        assert_eq!(same[2].description, "augment.ops.gaussian_noise.std = 0.2");
        // Two keys ending alike are named by their whole path.
        let vs = sweep(
            &base(),
            &[
                ("a.std".to_string(), vec![json!(1)]),
                ("b.std".to_string(), vec![json!(2)]),
            ],
        )
        .unwrap();
        assert_eq!(vs[1].name, "a.std=1,b.std=2");
    }

    #[test]
    fn bad_sweeps_say_why() {
        let e = sweep(
            &base(),
            &[
                ("seed".to_string(), vec![json!(1)]),
                ("seed".to_string(), vec![json!(2)]),
            ],
        )
        .unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        let e = sweep(&base(), &[("a..b".to_string(), vec![json!(1)])]).unwrap_err();
        assert!(
            e.contains("--sweep a..b") && e.contains("empty segment"),
            "{e}"
        );
        let e = sweep(&base(), &[("seed.x".to_string(), vec![json!(1)])]).unwrap_err();
        assert!(
            e.contains("--sweep seed.x") && e.contains("a number"),
            "{e}"
        );
        let many: Vec<Value> = (0..101).map(|i| json!(i)).collect();
        let e = sweep(
            &base(),
            &[("a".to_string(), many.clone()), ("b".to_string(), many)],
        )
        .unwrap_err();
        assert!(e.contains("101 x 101 = 10201"), "{e}");
    }

    #[test]
    fn seeds_resolve() {
        assert_eq!(Seeds::Count(3).resolve(7), vec![7, 8, 9]);
        assert_eq!(Seeds::List(vec![1, 5]).resolve(7), vec![1, 5]);
        assert!(serde_json::from_value::<Seeds>(json!(0)).is_err());
        assert!(serde_json::from_value::<Seeds>(json!([])).is_err());
    }

    #[test]
    fn path_parsing() {
        assert_eq!(
            parse_path("a.b[2].c").unwrap(),
            vec![
                Seg::Key("a".into()),
                Seg::Key("b".into()),
                Seg::Index(2),
                Seg::Key("c".into())
            ]
        );
        assert_eq!(
            parse_path("a.0").unwrap(),
            vec![Seg::Key("a".into()), Seg::Index(0)]
        );
        assert!(parse_path("a..b").is_err());
        assert!(parse_path("a[x]").is_err());
    }
}
