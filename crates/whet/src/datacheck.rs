//! Checks of a run file against its data, made when it is loaded (so by `whet validate` and
//! before every run): cheap reads only, [`whet_tabular::scan_column`]'s first rows of the main
//! table, within the memory budget. Today they check the target column against the target and
//! `model.task`; a check of other columns adds its reads and issues here.
//!
//! A table that cannot be read here is not reported: the loader reports it, with its full
//! message, when the run reads the table.

use crate::runfile::RunFile;
use whet_core::Issues;
use whet_tabular::polars::prelude::Series;
use whet_train::Task;

/// Issues of `file` against the first rows of its main table (key paths from the file's root).
pub(crate) fn check(file: &RunFile) -> Issues {
    let mut issues = Issues::new();
    let (Some(tables), Some(target)) = (&file.data.tables, &file.data.target) else {
        return issues;
    };
    let main = match &file.data.main {
        Some(m) => m.clone(),
        None if tables.len() == 1 => tables.keys().next().cloned().unwrap_or_default(),
        None => return issues,
    };
    let Some(spec) = tables.get(&main) else {
        return issues;
    };
    let Some(column) = target.column.as_deref().or(target.regression.as_deref()) else {
        return issues;
    };
    let scanned = whet_tabular::scan_column(spec, column, whet_tabular::SCAN_ROWS)
        .ok()
        .flatten();
    let binary_without_threshold =
        file.model.task == Task::Binary && target.column.is_some() && target.threshold.is_none();
    if let (true, Some((rows, values))) = (binary_without_threshold, &scanned)
        && let Some(message) = binary_issue(column, *rows, values)
    {
        issues.push("data.target.column", message);
        return issues;
    }
    if let Some((rows, values)) = &scanned {
        let rows = format!("the first {rows} rows of `{}`", spec.path.display());
        issues.nest("data.target", target.check_values(values, &rows));
    }
    issues
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
