//! Checks of a run file against its data, made when it is loaded (so by `whet validate` and
//! before every run, and for every ablation variant): cheap reads only — the first rows of each
//! table ([`whet_tabular::scan_head`], within the memory budget), the headers of IDX files and
//! the listing of image folders. They check the target column against the target and
//! `model.task`, that `data.id` names columns of the main table, that every column a step,
//! the split or the target names is there when it is needed ([`whet_tabular::check_columns`]),
//! and that image sources have the shape and classes the run file says
//! ([`whet_image::check_images`]).
//!
//! A table that cannot be read here is not reported: the loader reports it, with its full
//! message, when the run reads it.

use crate::runfile::RunFile;
use std::collections::{BTreeMap, HashMap};
use whet_core::Issues;
use whet_tabular::polars::prelude::{DataFrame, Series};
use whet_train::Task;

/// The data checks of one run file and its variants: each table's first rows are read once.
#[derive(Default)]
pub(crate) struct DataCheck {
    /// First rows by table spec (as JSON: a variant may point a table elsewhere); `None` when
    /// the table could not be read.
    heads: HashMap<String, Option<DataFrame>>,
}

impl DataCheck {
    /// Issues of `file` against its data (key paths from the file's root).
    pub(crate) fn check(&mut self, file: &RunFile) -> Issues {
        if let Some(images) = &file.data.images {
            let mut issues = Issues::new();
            issues.nest("data.images", whet_image::check_images(images));
            return issues;
        }
        let Some(cfg) = file.tabular_config() else {
            return Issues::new();
        };
        let heads: BTreeMap<String, DataFrame> = cfg
            .data
            .tables
            .iter()
            .filter_map(|(name, spec)| {
                let key = serde_json::to_string(spec).unwrap_or_default();
                self.heads
                    .entry(key)
                    .or_insert_with(|| whet_tabular::scan_head(spec, whet_tabular::SCAN_ROWS).ok())
                    .clone()
                    .map(|df| (name.clone(), df))
            })
            .collect();
        let mut issues = Issues::new();
        let Ok(main) = cfg.data.main_name() else {
            return issues;
        };
        let (Some(spec), Some(head)) = (cfg.data.tables.get(main), heads.get(main)) else {
            return issues;
        };
        id_issues(&mut issues, &cfg.data.id, main, spec, head);
        target_issues(&mut issues, file, spec, head);
        issues.0.extend(whet_tabular::check_columns(&cfg, &heads).0);
        issues
    }
}

/// What an issue is about, the same in the baseline and in a variant whose dropped steps shift
/// the step indices: its key path without step indices, and the first name it quotes
/// (`encode.one_hot[1]` + `orign`).
pub(crate) fn issue_key(i: &whet_core::Issue) -> (String, String) {
    let path = match i.path.strip_prefix("steps[") {
        Some(rest) => rest.split_once("].").map_or(rest, |(_, r)| r).to_string(),
        None => i.path.clone(),
    };
    let name = i.message.split('`').nth(1).unwrap_or_default().to_string();
    (path, name)
}

/// The target column's values in the main table's first rows against the target and the task.
fn target_issues(
    issues: &mut Issues,
    file: &RunFile,
    spec: &whet_tabular::TableSpec,
    head: &DataFrame,
) {
    let Some(target) = &file.data.target else {
        return;
    };
    let Some(column) = target.column.as_deref().or(target.regression.as_deref()) else {
        return;
    };
    let scanned = head
        .column(column)
        .ok()
        .map(|c| (head.height(), c.as_materialized_series().clone()));
    let binary_without_threshold =
        file.model.task == Task::Binary && target.column.is_some() && target.threshold.is_none();
    if let (true, Some((rows, values))) = (binary_without_threshold, &scanned)
        && let Some(message) = binary_issue(column, *rows, values)
    {
        issues.push("data.target.column", message);
        return;
    }
    if let Some((rows, values)) = &scanned {
        let rows = format!("the first {rows} rows of `{}`", spec.path.display());
        issues.nest("data.target", target.check_values(values, &rows));
    }
}

/// `data.id` names columns of the main table as loaded (identifiers are read from it, before
/// any join or step): a name that is not one of `head`'s columns is an issue at `data.id[i]`
/// listing the columns, with the closest name.
fn id_issues(
    issues: &mut Issues,
    ids: &[String],
    main: &str,
    spec: &whet_tabular::TableSpec,
    head: &DataFrame,
) {
    let columns: Vec<String> = head
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    for (i, id) in ids.iter().enumerate() {
        if columns.contains(id) {
            continue;
        }
        let hint = whet_core::spec::closest(id, columns.iter().map(String::as_str))
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        let list: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
        issues.push(
            format!("data.id[{i}]"),
            format!(
                "`{id}` is not a column of the main table `{main}` (`{}`), which identifiers are read from (before joins); its columns are {}{hint}",
                spec.path.display(),
                list.join(", ")
            ),
        );
    }
}

/// `task: binary` on `{ column: c }` without `threshold` takes a column of two values (0/1, or
/// two labels); any other number of values is an issue, with the fix.
fn binary_issue(column: &str, rows: usize, values: &Series) -> Option<String> {
    let v = values.drop_nulls();
    let distinct = v.n_unique().unwrap_or(0);
    if distinct <= 2 {
        return None;
    }
    let numeric = v.dtype().is_primitive_numeric();
    let example = if numeric {
        format!(
            "`target: {{ column: {column}, threshold: t }}` for a binary target (`{column}` > t)"
        )
    } else {
        "a `threshold` on a numeric column for a binary target".to_string()
    };
    Some(format!(
        "`model.task: binary` without `threshold` needs a column of two values (0/1, or two \
         labels), and `{column}` has {distinct} distinct values in its first {rows} rows, neither \
         0/1 nor two values: write {example}, or use `model.task: classification` for one class \
         per value"
    ))
}
