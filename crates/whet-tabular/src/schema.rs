//! The columns every step names, checked against the tables before the run: the first rows of
//! each table give its column names and types (as loading would infer them), and the steps are
//! followed in order without touching the data — a join adds the other table's columns (with
//! its suffix on clashes), `exclude` removes, `encode` replaces a column by its one-hot or date
//! part columns, the target leaves at the split, identifiers before the first fitted step. A
//! name that is not there when its step runs, a join key whose types differ, a text column
//! given to `normalize` or `clip`, a non-date column given to `encode.dates`: each is an
//! [`Issue`](whet_core::Issue) at the key path that names it (`steps[3].encode.one_hot[1]`),
//! so `whet validate` reports it with the run file's line instead of the run failing minutes in.
//!
//! What depends on the values (which columns `drop_columns` drops, which levels `one_hot`
//! makes, which columns get an `impute` indicator) is not known here: names those steps may
//! make or remove are accepted.

use crate::join::JoinConfig;
use crate::pipeline::{StepConfig, TabularConfig};
use polars::prelude::{DataFrame, DataType};
use std::collections::{BTreeMap, BTreeSet};
use whet_core::Issues;

/// Issues of `cfg`'s steps, split and target against the tables' columns in `heads` (the
/// first rows of each table that could be read, by table name; see the module docs). Key paths are from the run file's root (`steps[i].…`, `split.…`,
/// `data.target.…`). Nothing is checked past a join whose table is not in `heads`.
pub fn check_columns(cfg: &TabularConfig, heads: &BTreeMap<String, DataFrame>) -> Issues {
    let mut issues = Issues::new();
    let Ok(main) = cfg.data.main_name() else {
        return issues;
    };
    let Some(head) = heads.get(main) else {
        return issues;
    };
    let mut frame = Frame::of(head, &format!("the main table `{main}`"));
    let sp = cfg.split_point();
    for (i, step) in cfg.steps.iter().enumerate() {
        if i == sp {
            frame.split(cfg, &mut issues);
        }
        let path = format!("steps[{i}].{}", step.key());
        if !frame.step(step, &path, heads, &mut issues) {
            return issues;
        }
    }
    if sp == cfg.steps.len() {
        frame.split(cfg, &mut issues);
    }
    issues
}

/// The table's columns as the steps see them, while following the steps.
struct Frame {
    /// Columns present, in order, with their types.
    columns: Vec<(String, DataType)>,
    /// Why a name is gone: `name` → "taken out by steps[2].exclude".
    gone: BTreeMap<String, String>,
    /// Names a value-dependent step may have made (`impute` indicators).
    maybe: BTreeSet<String>,
    /// Prefixes of names a value-dependent step makes (`carrier=` after a one-hot).
    prefixes: Vec<String>,
    /// Where the columns come from, for messages ("the main table `flights`, joined with `weather`").
    origin: String,
}

/// What a step does with the names it is given.
enum Need {
    /// The column must be there.
    Any,
    /// The column must be there and numeric (or boolean).
    Numeric,
    /// The column must be there and a date or datetime.
    Date,
}

impl Frame {
    fn of(df: &DataFrame, origin: &str) -> Frame {
        Frame {
            columns: df
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.dtype().clone()))
                .collect(),
            gone: BTreeMap::new(),
            maybe: BTreeSet::new(),
            prefixes: Vec::new(),
            origin: origin.into(),
        }
    }

    fn dtype(&self, name: &str) -> Option<&DataType> {
        self.columns.iter().find(|(c, _)| c == name).map(|(_, t)| t)
    }

    /// True when `name` is (or may be) a column here.
    fn may_have(&self, name: &str) -> bool {
        self.dtype(name).is_some()
            || self.maybe.contains(name)
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    fn remove(&mut self, name: &str, why: String) {
        if let Some(i) = self.columns.iter().position(|(c, _)| c == name) {
            self.columns.remove(i);
            self.gone.insert(name.to_string(), why);
        }
    }

    /// Checks that every name of `names` is a column here (of the kind `need` says); issues at
    /// `path[k]`.
    fn require(&self, names: &[String], path: &str, need: Need, issues: &mut Issues) {
        for (k, name) in names.iter().enumerate() {
            self.require_one(name, &format!("{path}[{k}]"), &need, issues);
        }
    }

    fn require_one(&self, name: &str, path: &str, need: &Need, issues: &mut Issues) {
        let Some(dtype) = self.dtype(name) else {
            if !self.may_have(name) {
                issues.push(path, self.missing(name));
            }
            return;
        };
        let ok = match need {
            Need::Any => true,
            Need::Numeric => dtype.is_primitive_numeric() || dtype == &DataType::Boolean,
            Need::Date => matches!(dtype, DataType::Date | DataType::Datetime(_, _)),
        };
        if !ok {
            let fix = match need {
                Need::Numeric => {
                    "this step needs numbers: encode the column first (`encode: { one_hot: [...] }` \
                     or `ordinal`), or leave it out of this step; a number column read as text \
                     has a missing-value marker to declare (`missing: [NA]` on its table) or a \
                     type to set (`types: { column: float }`)"
                }
                _ => {
                    "`encode.dates` needs a date or datetime column: declare its type on its table \
                     (`types: { column: date }` or `datetime`)"
                }
            };
            issues.push(
                path,
                format!(
                    "`{name}` is {} here ({}); {fix}",
                    type_name(dtype),
                    self.origin
                ),
            );
        }
    }

    /// The message for a name that is not a column when its step runs.
    fn missing(&self, name: &str) -> String {
        if let Some(why) = self.gone.get(name) {
            return format!("`{name}` is no longer a column at this step: {why}");
        }
        let names: Vec<&str> = self.columns.iter().map(|(c, _)| c.as_str()).collect();
        let hint = whet_core::spec::closest(name, names.iter().copied())
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        format!(
            "`{name}` is not a column of {} at this step{hint} (its columns: {}){}",
            self.origin,
            list(&names),
            crate::error::delimiter_hint(&owned)
        )
    }

    /// Follows one step. False when the rest cannot be followed (a join with an unread table).
    fn step(
        &mut self,
        step: &StepConfig,
        path: &str,
        heads: &BTreeMap<String, DataFrame>,
        issues: &mut Issues,
    ) -> bool {
        match step {
            StepConfig::Join(j) => return self.join(j, path, heads, issues),
            StepConfig::Exclude(names) => {
                for n in names {
                    self.remove(n, format!("taken out by {path}"));
                }
            }
            StepConfig::Audit(_) => {}
            StepConfig::DropRows(c) => {
                self.require(&c.columns, &format!("{path}.columns"), Need::Any, issues)
            }
            StepConfig::DropColumns(c) => {
                self.require(&c.columns, &format!("{path}.columns"), Need::Any, issues);
                // Which ones go depends on the training split: any may.
                let candidates: Vec<String> = if c.columns.is_empty() {
                    self.columns.iter().map(|(n, _)| n.clone()).collect()
                } else {
                    c.columns.clone()
                };
                for n in candidates {
                    if self.dtype(&n).is_some() {
                        self.maybe.insert(n);
                    }
                }
            }
            StepConfig::Impute(c) => {
                self.require(&c.columns, &format!("{path}.columns"), Need::Any, issues);
                if let Some(by) = &c.by {
                    self.require_one(by, &format!("{path}.by"), &Need::Any, issues);
                }
                if c.indicator {
                    let candidates: Vec<String> = if c.columns.is_empty() {
                        self.columns.iter().map(|(n, _)| n.clone()).collect()
                    } else {
                        c.columns.clone()
                    };
                    for n in candidates {
                        self.maybe.insert(format!("{n}__missing"));
                    }
                }
            }
            StepConfig::Fill(c) => {
                self.require_one(&c.order, &format!("{path}.order"), &Need::Any, issues);
                self.require(&c.columns, &format!("{path}.columns"), Need::Any, issues);
            }
            StepConfig::Normalize(c) => self.require(
                &c.columns,
                &format!("{path}.columns"),
                Need::Numeric,
                issues,
            ),
            StepConfig::Clip(c) => self.require(
                &c.columns,
                &format!("{path}.columns"),
                Need::Numeric,
                issues,
            ),
            StepConfig::Encode(e) => {
                self.require(&e.one_hot, &format!("{path}.one_hot"), Need::Any, issues);
                self.require(&e.ordinal, &format!("{path}.ordinal"), Need::Any, issues);
                self.require(&e.boolean, &format!("{path}.boolean"), Need::Any, issues);
                self.require(&e.dates, &format!("{path}.dates"), Need::Date, issues);
                for c in &e.one_hot {
                    self.remove(
                        c,
                        format!("{path} one-hot encoded it into `{c}=<level>` columns"),
                    );
                    self.prefixes.push(format!("{c}="));
                }
                for c in &e.dates {
                    if self.dtype(c).is_none() {
                        continue;
                    }
                    self.remove(
                        c,
                        format!("{path} replaced it by its parts (`{c}_year`, …)"),
                    );
                    for p in &e.parts {
                        let part = serde_json::to_value(p)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        self.columns.push((format!("{c}_{part}"), DataType::Int32));
                    }
                }
            }
        }
        true
    }

    fn join(
        &mut self,
        j: &JoinConfig,
        path: &str,
        heads: &BTreeMap<String, DataFrame>,
        issues: &mut Issues,
    ) -> bool {
        let Some(right) = heads.get(&j.with) else {
            return false;
        };
        let (lk, rk) = j.keys();
        let (lkey, rkey) = if j.on.is_empty() {
            ("left_on", "right_on")
        } else {
            ("on", "on")
        };
        let other = Frame::of(right, &format!("the table `{}`", j.with));
        for (k, (l, r)) in lk.iter().zip(&rk).enumerate() {
            self.require_one(l, &format!("{path}.{lkey}[{k}]"), &Need::Any, issues);
            other.require_one(r, &format!("{path}.{rkey}[{k}]"), &Need::Any, issues);
            if let (Some(lt), Some(rt)) = (self.dtype(l), other.dtype(r))
                && lt != rt
            {
                issues.push(
                    format!("{path}.{lkey}[{k}]"),
                    format!(
                        "join key `{l}` is {} in {} but `{r}` is {} in the table `{}`: keys must \
                         have one type; set it with `types:` on one of the tables",
                        type_name(lt),
                        self.origin,
                        type_name(rt),
                        j.with
                    ),
                );
            }
        }
        let left: BTreeSet<String> = self.columns.iter().map(|(c, _)| c.clone()).collect();
        for (name, dtype) in other.columns {
            if rk.contains(&name) {
                continue;
            }
            let name = if left.contains(&name) {
                format!("{name}{}", j.suffix)
            } else {
                name
            };
            self.gone.remove(&name);
            self.columns.push((name, dtype));
        }
        self.origin = format!("{}, joined with `{}`", self.origin, j.with);
        true
    }

    /// The split: the target must be there (it is taken out), `split.group` / `split.order`
    /// must be columns, and identifiers leave before the first fitted step.
    fn split(&mut self, cfg: &TabularConfig, issues: &mut Issues) {
        let target = &cfg.data.target;
        let (key, column) = match (&target.column, &target.regression) {
            (Some(c), _) => ("data.target.column", c),
            (None, Some(c)) => ("data.target.regression", c),
            (None, None) => return,
        };
        self.require_one(column, key, &Need::Any, issues);
        self.remove(
            column,
            "it is the target, taken out of the table before the split".into(),
        );
        for (key, c) in [
            ("split.group", cfg.split.group.as_ref()),
            ("split.order", cfg.split.order.as_ref()),
        ] {
            if let Some(c) = c
                && Some(c) != Some(column)
            {
                self.require_one(c, key, &Need::Any, issues);
            }
        }
        for id in &cfg.data.id {
            self.remove(
                id,
                "it is an identifier (`data.id`): identifiers are taken out before the first \
                 fitted step, never features"
                    .into(),
            );
        }
    }
}

/// A type as a user reads it.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::String => "text".into(),
        t if t.is_integer() => format!("an integer ({t})"),
        t if t.is_float() => format!("a number ({t})"),
        t => t.to_string(),
    }
}

/// `a`, `b`, … (at most 30 names, then a count).
fn list(names: &[&str]) -> String {
    const MAX: usize = 30;
    let mut s: Vec<String> = names.iter().take(MAX).map(|n| format!("`{n}`")).collect();
    if names.len() > MAX {
        s.push(format!("and {} more", names.len() - MAX));
    }
    s.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::EncodeConfig;
    use crate::load::TableSpec;
    use crate::pipeline::TablesConfig;
    use crate::scale::NormalizeConfig;
    use crate::target::TargetConfig;
    use polars::prelude::*;

    fn cfg(steps: Vec<StepConfig>) -> TabularConfig {
        let tables = [("f", "f.csv"), ("w", "w.csv")]
            .into_iter()
            .map(|(n, p)| (n.to_string(), TableSpec::new(p)))
            .collect();
        TabularConfig {
            data: TablesConfig {
                tables,
                main: Some("f".into()),
                target: TargetConfig::classes("late"),
                id: vec!["flight".into()],
                shuffle_buffer: None,
            },
            steps,
            split: Default::default(),
        }
    }

    fn heads() -> BTreeMap<String, DataFrame> {
        let f = df!(
            "flight" => [1i64, 2],
            "origin" => ["EWR", "JFK"],
            "hour" => [5i64, 6],
            "carrier" => ["AA", "UA"],
            "late" => [0i64, 1],
        )
        .unwrap();
        let w = df!("origin" => ["EWR", "JFK"], "hour" => [5.0f64, 6.0], "temp" => [1.0f64, 2.0])
            .unwrap();
        [("f".to_string(), f), ("w".to_string(), w)]
            .into_iter()
            .collect()
    }

    fn paths(is: &Issues) -> Vec<String> {
        is.iter().map(|i| i.path.clone()).collect()
    }

    #[test]
    fn a_valid_pipeline_has_no_issues() {
        let steps = vec![
            StepConfig::Join(JoinConfig::new("w", &["origin"])),
            StepConfig::Encode(EncodeConfig {
                one_hot: vec!["carrier".into(), "origin".into()],
                ..Default::default()
            }),
            StepConfig::Normalize(NormalizeConfig {
                columns: vec!["hour".into(), "hour_right".into(), "temp".into()],
                ..Default::default()
            }),
        ];
        let is = check_columns(&cfg(steps), &heads());
        assert!(is.is_empty(), "{is:?}");
    }

    #[test]
    fn a_misspelt_one_hot_column_is_located_with_a_suggestion() {
        let steps = vec![StepConfig::Encode(EncodeConfig {
            one_hot: vec!["carrier".into(), "carier".into()],
            ..Default::default()
        })];
        let is = check_columns(&cfg(steps), &heads());
        assert_eq!(paths(&is), ["steps[0].encode.one_hot[1]"]);
        let m = &is.0[0].message;
        assert!(m.contains("did you mean `carrier`"), "{m}");
    }

    #[test]
    fn columns_are_followed_through_joins_exclusions_and_the_split() {
        let steps = vec![
            StepConfig::Exclude(vec!["carrier".into()]),
            StepConfig::Encode(EncodeConfig {
                one_hot: vec!["carrier".into(), "temp".into(), "flight".into()],
                ..Default::default()
            }),
            StepConfig::Join(JoinConfig::new("w", &["origin"])),
        ];
        let is = check_columns(&cfg(steps), &heads());
        // `carrier` was excluded; `temp` only arrives with the join (after); `flight` is an id.
        assert_eq!(
            paths(&is),
            [
                "steps[1].encode.one_hot[0]",
                "steps[1].encode.one_hot[1]",
                "steps[1].encode.one_hot[2]"
            ]
        );
        assert!(is.0[0].message.contains("taken out by steps[0].exclude"));
        assert!(
            is.0[2].message.contains("identifier"),
            "{}",
            is.0[2].message
        );
    }

    #[test]
    fn key_types_text_to_normalize_and_the_target_are_checked() {
        let steps = vec![
            StepConfig::Join(JoinConfig::new("w", &["hour"])),
            StepConfig::Normalize(NormalizeConfig {
                columns: vec!["carrier".into(), "late".into()],
                ..Default::default()
            }),
        ];
        let mut c = cfg(steps);
        c.data.target = TargetConfig::classes("lates");
        let is = check_columns(&c, &heads());
        assert_eq!(
            paths(&is),
            [
                "steps[0].join.on[0]",
                "data.target.column",
                "steps[1].normalize.columns[0]"
            ]
        );
        assert!(
            is.0[0].message.contains("an integer (i64)"),
            "{}",
            is.0[0].message
        );
        assert!(is.0[2].message.contains("is text"), "{}", is.0[2].message);
        // The target's suggestion.
        assert!(
            is.0[1].message.contains("did you mean `late`"),
            "{}",
            is.0[1].message
        );
    }

    #[test]
    fn one_hot_outputs_and_indicators_are_accepted_later() {
        let steps = vec![
            StepConfig::Encode(EncodeConfig {
                one_hot: vec!["carrier".into()],
                ..Default::default()
            }),
            StepConfig::Normalize(NormalizeConfig {
                columns: vec!["carrier=AA".into()],
                ..Default::default()
            }),
            StepConfig::Encode(EncodeConfig {
                one_hot: vec!["carrier".into()],
                ..Default::default()
            }),
        ];
        let is = check_columns(&cfg(steps), &heads());
        assert_eq!(paths(&is), ["steps[2].encode.one_hot[0]"]);
        assert!(
            is.0[0].message.contains("one-hot encoded it"),
            "{}",
            is.0[0].message
        );
    }
}
