//! Row identity through the pipeline: every row of the main table carries its row number in the
//! file through the pre-split steps (joins, row filters and the target's missing-value drop keep
//! or drop it with its row), so identifiers (`data.id`) and `--keep` columns can be taken from
//! the table as loaded and stay aligned with the rows that are left.

use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::pipeline::TablesConfig;
use crate::stage::{names, not_found};

/// The default identifier column: the 0-based row number in the main table's file (the header
/// not counted).
pub const ROW_ID: &str = "row";

/// The hidden column that carries the source row number through the pre-split steps.
pub(crate) const SOURCE_ROW: &str = "__whet_source_row__";

/// Checks that every `data.id` column is in the main table `df` read from `path`.
///
/// # Errors
/// [`Error::ColumnNotFound`] naming the key path `data.id`, the file and the columns present.
pub(crate) fn check_ids(data: &TablesConfig, df: &DataFrame, path: &Path) -> Result<()> {
    for (i, c) in data.id.iter().enumerate() {
        if df.column(c).is_err() {
            return Err(not_found(
                df,
                c,
                &format!("data.id[{i}] (the main table `{}`)", path.display()),
            ));
        }
    }
    Ok(())
}

/// `df` with the hidden source-row column.
pub(crate) fn with_source_rows(df: DataFrame) -> Result<DataFrame> {
    if df.column(SOURCE_ROW).is_ok() {
        return Err(Error::Config(format!(
            "the main table has a column named `{SOURCE_ROW}`, which whet uses internally; rename it"
        )));
    }
    Ok(df.with_row_index(SOURCE_ROW.into(), None)?)
}

/// `df` without the hidden source-row column (what an audit looks at).
pub(crate) fn without_source_rows(df: &DataFrame) -> DataFrame {
    df.drop(SOURCE_ROW).unwrap_or_else(|_| df.clone())
}

/// Takes the hidden source-row column out of `df`: the frame and each row's source row.
pub(crate) fn take_source_rows(df: DataFrame) -> Result<(DataFrame, Vec<IdxSize>)> {
    let Ok(c) = df.column(SOURCE_ROW) else {
        return Err(Error::Config(format!(
            "a step before the split removed the row numbers (`{SOURCE_ROW}`): do not name that column in a step"
        )));
    };
    let rows: Vec<IdxSize> = c.idx()?.into_no_null_iter().collect();
    Ok((df.drop(SOURCE_ROW)?, rows))
}

/// `df` without the identifier columns (those still present).
pub(crate) fn drop_ids(df: DataFrame, ids: &[String]) -> Result<DataFrame> {
    let present: Vec<&String> = ids.iter().filter(|c| df.column(c).is_ok()).collect();
    if present.is_empty() {
        return Ok(df);
    }
    Ok(df.drop_many(present.iter().map(|s| s.as_str())))
}

/// The columns that identify `rows` of `raw` (the main table as loaded from `path`): the `ids`
/// columns (or [`ROW_ID`], the row number, when there are none), then the `keep` columns not
/// already among them, with their values as loaded.
///
/// # Errors
/// [`Error::ColumnNotFound`] for a `keep` column that is not in the table, naming the file.
pub fn row_columns(
    raw: &DataFrame,
    rows: &[IdxSize],
    ids: &[String],
    keep: &[String],
    path: &Path,
) -> Result<DataFrame> {
    row_columns_from(raw, 0, rows, ids, keep, path)
}

/// [`row_columns`] when `raw` holds the main table's rows from row `first` on (a streamed
/// table's chunk); `rows` are rows of the whole table, each at least `first`.
pub(crate) fn row_columns_from(
    raw: &DataFrame,
    first: IdxSize,
    rows: &[IdxSize],
    ids: &[String],
    keep: &[String],
    path: &Path,
) -> Result<DataFrame> {
    let idx = IdxCa::from_vec("idx".into(), rows.iter().map(|&r| r - first).collect());
    let mut cols: Vec<Column> = Vec::new();
    let mut named: Vec<&str> = Vec::new();
    if ids.is_empty() {
        let r: Vec<u64> = rows.iter().map(|&r| u64::from(r)).collect();
        cols.push(UInt64Chunked::from_vec(ROW_ID.into(), r).into_column());
        named.push(ROW_ID);
    }
    for c in ids {
        let Ok(col) = raw.column(c) else {
            return Err(not_found(
                raw,
                c,
                &format!("data.id (the table `{}`)", path.display()),
            ));
        };
        cols.push(col.take(&idx)?);
        named.push(c);
    }
    for c in keep {
        if named.contains(&c.as_str()) {
            continue;
        }
        let Ok(col) = raw.column(c) else {
            return Err(not_found(
                raw,
                c,
                &format!("--keep (the table `{}`)", path.display()),
            ));
        };
        cols.push(col.take(&idx)?);
        named.push(c);
    }
    Ok(DataFrame::new(rows.len(), cols)?)
}

/// Refuses identifier and `--keep` columns (`extra`) whose names the output already uses
/// (`taken`: features, `target`, prediction columns), since one file cannot hold two columns
/// of one name.
///
/// # Errors
/// [`Error::Apply`] naming the column and what else has that name.
pub fn check_clashes(extra: &DataFrame, taken: &[String], what: &str) -> Result<()> {
    for c in names(extra) {
        if taken.contains(&c) {
            return Err(Error::Apply(format!(
                "column `{c}` (an identifier or a --keep column) has the name of one of the {what}; a file cannot hold two columns of one name: keep another column, or read `{c}` from the source by the identifiers"
            )));
        }
    }
    Ok(())
}

/// One row the fitted steps leave unscorable.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// Position in the transformed frame.
    pub index: usize,
    /// The feature column at fault (the first one in feature order).
    pub column: String,
    /// Why: `missing` or `not a finite number`.
    pub reason: &'static str,
}

/// The rows of `frame` that cannot become a feature row: a feature value that is missing or
/// not finite after the fitted steps (a gap the run had no `impute` for, text in a numeric
/// column, an overflow), first fault per row, in row order.
///
/// # Errors
/// [`Error::ColumnNotFound`] for an absent feature; polars cast errors.
pub fn bad_rows(frame: &DataFrame, features: &[String]) -> Result<Vec<BadRow>> {
    let mut bad: Vec<Option<BadRow>> = vec![None; frame.height()];
    let mut any = false;
    for f in features {
        let Ok(c) = frame.column(f) else {
            return Err(not_found(frame, f, "features"));
        };
        let s = c.as_materialized_series().cast(&DataType::Float64)?;
        for (i, v) in s.f64()?.iter().enumerate() {
            let reason = match v {
                None => "missing",
                Some(v) if !v.is_finite() => "not a finite number",
                Some(_) => continue,
            };
            if bad[i].is_none() {
                any = true;
                bad[i] = Some(BadRow {
                    index: i,
                    column: f.clone(),
                    reason,
                });
            }
        }
    }
    if !any {
        return Ok(vec![]);
    }
    Ok(bad.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_rows_follow_a_filter() {
        let df = df!("a" => [Some(1.0), None, Some(3.0)], "k" => ["x", "y", "z"]).unwrap();
        let df = with_source_rows(df).unwrap();
        let df = df.filter(&df.column("a").unwrap().is_not_null()).unwrap();
        let (df, rows) = take_source_rows(df).unwrap();
        assert_eq!(rows, [0, 2]);
        assert_eq!(names(&df), ["a", "k"]);
        let raw = df!("k" => ["x", "y", "z"], "v" => [7, 8, 9]).unwrap();
        let ids = row_columns(
            &raw,
            &rows,
            &["k".into()],
            &["v".into(), "k".into()],
            Path::new("t.csv"),
        )
        .unwrap();
        assert_eq!(names(&ids), ["k", "v"]);
        assert_eq!(ids.column("v").unwrap().i32().unwrap().get(1), Some(9));
        let rows_only = row_columns(&raw, &rows, &[], &[], Path::new("t.csv")).unwrap();
        assert_eq!(
            rows_only.column(ROW_ID).unwrap().u64().unwrap().get(1),
            Some(2)
        );
        let e = row_columns(&raw, &rows, &[], &["nope".into()], Path::new("t.csv")).unwrap_err();
        assert!(e.to_string().contains("t.csv"), "{e}");
    }

    #[test]
    fn bad_rows_name_the_first_faulty_feature() {
        let df = df!("a" => [Some(1.0), None, Some(f64::NAN)], "b" => [Some(1.0), None, Some(2.0)])
            .unwrap();
        let bad = bad_rows(&df, &["a".into(), "b".into()]).unwrap();
        assert_eq!(bad.len(), 2);
        assert_eq!(
            (bad[0].index, bad[0].column.as_str(), bad[0].reason),
            (1, "a", "missing")
        );
        assert_eq!((bad[1].index, bad[1].reason), (2, "not a finite number"));
    }

    #[test]
    fn ids_are_checked_against_the_target_the_row_number_and_repeats() {
        let cfg: TablesConfig = serde_json::from_value(serde_json::json!({
            "tables": { "t": "t.csv" },
            "target": { "column": "y" },
            "id": ["y", "row", "k", "k"],
        }))
        .unwrap();
        let text: Vec<String> = cfg.validate().iter().map(|i| i.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].contains("id[0]") && text[0].contains("target"),
            "{text:?}"
        );
        assert!(
            text[1].contains("id[1]") && text[1].contains("row number"),
            "{text:?}"
        );
        assert!(
            text[2].contains("id[3]") && text[2].contains("twice"),
            "{text:?}"
        );
        let df = df!("k" => [1]).unwrap();
        let e = check_ids(&cfg, &df, Path::new("main.csv")).unwrap_err();
        assert!(e.to_string().contains("data.id[0]") && e.to_string().contains("main.csv"));
    }
}
