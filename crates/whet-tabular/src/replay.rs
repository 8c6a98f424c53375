//! A run's fitted preprocessing replayed on new data (`whet predict`, `whet apply`,
//! `whet evaluate`): [`Replay`] takes batches of the main table's rows through the manifest's
//! steps, and [`NewData`] reads a data file for it, whole when it fits in the memory budget, a
//! chunk of rows at a time (polars' streaming engine, as a run streams its main table) when it
//! does not. Both ways run the same code on every row, so a file gives the same rows either way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use whet_core::Progress;

use crate::error::{Error, Result};
use crate::export::Manifest;
use crate::load::{TableFormat, TableSpec};
use crate::pipeline::{PrepareReport, StepConfig, Transformed, emptied, pre_step, step_err};
use crate::stage::{FittedStage, FittedStep, names};
use crate::stream::{Chunks, batch_refusal, for_each_batch, parquet_rows, row_groups, table_bytes};
use crate::target::{all_missing, extract_target};

/// A manifest's steps replayed on the main table's rows, batch by batch: the pre-split steps
/// (joins through [`crate::join::Joins`], audits skipped), the target when its column is
/// present (rows with a missing target dropped), the identifier columns taken out, and every
/// fitted step with its stored parameters. What concerns every row (a step that removed them
/// all, a target missing in all of them) is checked by [`Replay::finish`], after the last
/// batch.
pub(crate) struct Replay<'a> {
    manifest: &'a Manifest,
    stages: Vec<Box<dyn FittedStage>>,
    tables: &'a BTreeMap<String, DataFrame>,
    joins: crate::join::Joins<'a>,
    /// Rows into and out of each pre-split step, summed over the batches.
    steps: Vec<(usize, usize)>,
    /// Rows that reached the target with its column present.
    target_rows: usize,
    /// Rows dropped for a missing target.
    dropped: usize,
}

impl<'a> Replay<'a> {
    /// A replay of `manifest`'s pre-split steps then `fitted` (the manifest's fitted steps, or
    /// a part of them), joining `tables`; `batched` when the rows come in more than one batch.
    pub(crate) fn new(
        manifest: &'a Manifest,
        fitted: &[FittedStep],
        tables: &'a BTreeMap<String, DataFrame>,
        batched: bool,
    ) -> Self {
        Replay {
            manifest,
            stages: fitted.iter().map(|f| f.clone().into_stage()).collect(),
            tables,
            joins: crate::join::Joins::new(batched),
            steps: vec![(0, 0); manifest.pre_split.len()],
            target_rows: 0,
            dropped: 0,
        }
    }

    /// One batch of the main table's rows (with the hidden source-row column) through the
    /// steps; `None` when the steps left none of its rows.
    ///
    /// # Errors
    /// Step errors, [`Error::Apply`] for a feature the steps do not produce.
    pub(crate) fn batch(&mut self, mut df: DataFrame) -> Result<Option<Transformed>> {
        let (manifest, tables) = (self.manifest, self.tables);
        let kind = &manifest.target;
        let mut scratch = PrepareReport::default();
        for (i, step) in manifest.pre_split.iter().enumerate() {
            let rows = df.height();
            df = match step {
                StepConfig::Join(j) => self.joins.join(i, j, df, tables),
                _ => pre_step(step, df, tables, Some(kind), &mut scratch, false),
            }
            .map_err(step_err(i, step))?;
            self.steps[i].0 += rows;
            self.steps[i].1 += df.height();
            if rows > 0 && df.height() == 0 {
                return Ok(None);
            }
        }
        let mut dropped = 0;
        let (df, target) = match df.column(kind.column()) {
            Err(_) => (df, None),
            Ok(c) => {
                self.target_rows += df.height();
                if df.height() > 0 && c.null_count() == df.height() {
                    self.dropped += df.height();
                    return Ok(None);
                }
                let (df, t, d) = extract_target(df, kind, Some(&manifest.classes))?;
                dropped = d;
                self.dropped += d;
                (df, Some(t))
            }
        };
        let (df, source_rows) = crate::rows::take_source_rows(df)?;
        let mut df = crate::rows::drop_ids(df, &manifest.data.id)?;
        let mut last = "load".to_string();
        for (i, stage) in self.stages.iter().enumerate() {
            df = stage.transform(df).map_err(|e| Error::Step {
                index: i,
                name: format!("fitted step {i}"),
                source: Box::new(e),
            })?;
            last = format!("fitted step {i}");
        }
        for f in &manifest.features {
            if df.column(f).is_err() {
                return Err(Error::Apply(format!(
                    "feature `{f}` is not produced from the new data (have {:?})",
                    names(&df)
                )));
            }
        }
        Ok(Some(Transformed {
            frame: df,
            target,
            source_rows,
            target_missing_dropped: dropped,
            last_step: last,
        }))
    }

    /// The checks on every row, after the last batch: a pre-split step that removed them all,
    /// a target column missing in all of them. Returns the rows dropped for a missing target.
    ///
    /// # Errors
    /// [`Error::Step`] naming the step, [`Error::Target`].
    pub(crate) fn finish(&self) -> Result<usize> {
        for (i, (step, &(rows_in, rows_out))) in
            self.manifest.pre_split.iter().zip(&self.steps).enumerate()
        {
            if rows_in > 0 && rows_out == 0 {
                return Err(emptied(i, step, rows_in));
            }
        }
        if self.target_rows > 0 && self.dropped == self.target_rows {
            return Err(all_missing(self.manifest.target.column(), self.target_rows));
        }
        Ok(self.dropped)
    }
}

/// One batch of new data after a manifest's steps ([`NewData::for_each_batch`]).
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// The batch after the steps.
    pub transformed: Transformed,
    /// The identifier columns (`data.id`, or the row number) and the kept columns, as loaded,
    /// one row per row of `transformed.frame`.
    pub ids: DataFrame,
    /// The batch's rows as read (every column), rows `first..` of the data file.
    raw: DataFrame,
    first: IdxSize,
}

impl NewBatch {
    /// The value of `column` as loaded at `row` (0-based, of the whole file), for messages.
    pub fn loaded(&self, column: &str, row: IdxSize) -> Option<String> {
        let c = self.raw.column(column).ok()?;
        let i = row.checked_sub(self.first)?;
        c.get(i as usize).ok().map(|v| v.to_string())
    }

    /// Removes the rows at `positions` (rows of `transformed.frame`, ascending) from the
    /// frame, the identifiers, the target and the source rows.
    ///
    /// # Errors
    /// polars errors only.
    pub fn remove(&mut self, positions: &[usize]) -> Result<()> {
        let n = self.transformed.frame.height();
        let mut keep = vec![true; n];
        for &p in positions {
            keep[p] = false;
        }
        let mask = BooleanChunked::from_slice("keep".into(), &keep);
        let t = &mut self.transformed;
        t.frame = t.frame.filter(&mask)?;
        self.ids = self.ids.filter(&mask)?;
        let idx: Vec<IdxSize> = (0..n as IdxSize).filter(|&i| keep[i as usize]).collect();
        if let Some(target) = &mut t.target {
            *target = target.take(&idx);
        }
        t.source_rows = idx.iter().map(|&i| t.source_rows[i as usize]).collect();
        Ok(())
    }
}

/// What reading new data through [`NewData::for_each_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NewDataReport {
    /// Rows read from the file.
    pub rows_in: usize,
    /// Rows after the steps (handed to the batches).
    pub rows_out: usize,
    /// Rows dropped because the target was present but missing.
    pub target_missing_dropped: usize,
    /// Batches handed over.
    pub batches: usize,
}

/// A data file for a manifest, with the tables its joins use, ready to be read batch by batch.
pub struct NewData<'a> {
    manifest: &'a Manifest,
    spec: TableSpec,
    tables: BTreeMap<String, DataFrame>,
    /// The file's estimated size in memory and the budget, when it is over the budget and is
    /// read a chunk of rows at a time.
    streamed: Option<(u64, u64)>,
    /// A CSV file over the budget, converted to the Parquet file `spec` reads.
    csv: Option<crate::load::csvchunks::Converted>,
}

impl<'a> NewData<'a> {
    /// The data file `data` for `manifest` (read with the manifest's load options for its
    /// main table, every row), with the tables the manifest joins (from `tables` when it names
    /// them, `--table NAME=PATH`, else from the run's paths), loaded. A file estimated
    /// ([`table_bytes`]) to need more than `budget` bytes is read a chunk of rows at a time: a
    /// CSV file is first converted to a Parquet file in the folder `<work>-csv` (`work` not
    /// yet existing), removed when this is dropped.
    ///
    /// # Errors
    /// Loading errors; [`Error::CannotStream`] for a file over the budget and a manifest step
    /// that needs every row at once; the errors of [`crate::load_new_data`] for the joined
    /// tables.
    pub fn open(
        manifest: &'a Manifest,
        data: &Path,
        tables: &BTreeMap<String, PathBuf>,
        budget: u64,
        work: &Path,
        progress: &dyn whet_core::Progress,
    ) -> Result<Self> {
        let mut spec = crate::pipeline::new_data_spec(manifest, data)?;
        let bytes = table_bytes(&spec)?;
        let streamed = (bytes > budget).then_some((bytes, budget));
        if streamed.is_some() {
            let over = format!(
                "`{}` needs about {} in memory, more than the budget of {}",
                data.display(),
                whet_core::budget::show_bytes(bytes),
                whet_core::budget::show_bytes(budget)
            );
            for (i, step) in manifest.pre_split.iter().enumerate() {
                if let Some(why) = batch_refusal(step) {
                    return Err(Error::CannotStream {
                        key: format!("the run's steps[{i}].{}", step.key()),
                        reason: format!("{over}; {why}"),
                    });
                }
            }
        }
        let tables = crate::pipeline::load_joined(manifest, tables)?;
        let csv = match (streamed, spec.resolved_format()?) {
            (Some(_), TableFormat::Csv | TableFormat::CsvGz) => {
                let converted = crate::stream::csv_to_parquet(&spec, work, budget, progress)?;
                spec = converted.spec.clone();
                Some(converted)
            }
            _ => None,
        };
        Ok(NewData {
            manifest,
            spec,
            tables,
            streamed,
            csv,
        })
    }

    /// The file's estimated size in memory and the budget it is over, when it is read a chunk
    /// of rows at a time.
    pub fn streamed(&self) -> Option<(u64, u64)> {
        self.streamed
    }

    /// Reads the file and hands every batch after the manifest's steps to `each`, in row
    /// order, with its identifier and `keep` columns: one batch when the file is read whole,
    /// else one per batch of the streaming engine. Without `with_target`, a target column in
    /// the file is not read (every row is kept, whatever its target). `progress` counts the
    /// rows read.
    ///
    /// # Errors
    /// Loading and step errors, a `keep` column not in the file, and those of `each`.
    pub fn for_each_batch<E: From<Error>>(
        &self,
        with_target: bool,
        keep: &[String],
        progress: &dyn Progress,
        mut each: impl FnMut(NewBatch) -> std::result::Result<(), E>,
    ) -> std::result::Result<NewDataReport, E> {
        let manifest = self.manifest;
        let fitted = &manifest.fitted;
        let mut replay = Replay::new(manifest, fitted, &self.tables, self.streamed.is_some());
        let mut report = NewDataReport::default();
        // Errors name the file as given (not the Parquet file a CSV file became).
        let path = self
            .csv
            .as_ref()
            .map_or(&self.spec.path, |c| &c.report.path);
        let target = manifest.target.column();
        let mut one = |raw: DataFrame, first: IdxSize| -> std::result::Result<(), E> {
            report.rows_in += raw.height();
            // The input: the rows with their row numbers, without a target not asked for.
            let mut input = raw.clone();
            if !with_target && input.column(target).is_ok() {
                input = input.drop(target).map_err(Error::from)?;
            }
            if input.column(crate::rows::SOURCE_ROW).is_err() {
                input = crate::rows::with_source_rows(input)?;
            }
            let Some(transformed) = replay.batch(input)? else {
                return Ok(());
            };
            let ids = crate::rows::row_columns_from(
                &raw,
                first,
                &transformed.source_rows,
                &manifest.data.id,
                keep,
                path,
            )?;
            report.rows_out += transformed.frame.height();
            report.batches += 1;
            each(NewBatch {
                transformed,
                ids,
                raw,
                first,
            })
        };
        match self.streamed {
            None => {
                progress.begin("read data", None);
                let (df, _) = crate::load::load_rows(&self.spec)?;
                let rows = df.height() as u64;
                progress.end();
                progress.begin("replay steps", Some(rows));
                one(df, 0)?;
                progress.advance(rows);
            }
            Some((bytes, budget)) => {
                let rows = parquet_rows(&self.spec)?.0;
                if rows == 0 {
                    return Err(Error::EmptyTable { path: path.clone() }.into());
                }
                let bytes = match &self.csv {
                    Some(_) => table_bytes(&self.spec)?,
                    None => bytes,
                };
                let chunks = Chunks::new(&row_groups(&self.spec)?, rows, bytes, budget);
                progress.begin("replay steps (streamed)", Some(rows));
                // An error of `each` stops the reading; it is returned as it is.
                let mut failed: Option<E> = None;
                let read = for_each_batch(&self.spec, &[], &chunks, |df| {
                    let n = df.height() as u64;
                    let first = df
                        .column(crate::rows::SOURCE_ROW)?
                        .idx()?
                        .get(0)
                        .unwrap_or_default();
                    if let Err(e) = one(df, first) {
                        failed = Some(e);
                        return Err(Error::Apply("stopped".into()));
                    }
                    progress.advance(n);
                    Ok(())
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                read?;
            }
        }
        progress.end();
        report.target_missing_dropped = replay.finish()?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every batch [`NewData::for_each_batch`] hands over, end to end: the transformed frame,
    /// the identifier columns, the source rows and the targets.
    fn read(new: &NewData<'_>) -> (DataFrame, DataFrame, Vec<IdxSize>, Vec<f32>, NewDataReport) {
        let (mut frame, mut ids): (Option<DataFrame>, Option<DataFrame>) = (None, None);
        let (mut rows, mut targets) = (Vec::new(), Vec::new());
        let stack = |all: &mut Option<DataFrame>, df: DataFrame| match all {
            Some(a) => {
                a.vstack_mut_owned(df).unwrap();
            }
            None => *all = Some(df),
        };
        let report = new
            .for_each_batch(
                true,
                &["tailnum".to_string()],
                &whet_core::NoProgress,
                |b| {
                    let t = b.transformed;
                    rows.extend(t.source_rows);
                    targets.extend(t.target.unwrap().values);
                    stack(&mut frame, t.frame);
                    stack(&mut ids, b.ids);
                    Ok::<(), Error>(())
                },
            )
            .unwrap();
        (frame.unwrap(), ids.unwrap(), rows, targets, report)
    }

    /// The shipped flights (as Parquet) replayed through a manifest with an inner join (which
    /// removes rows), a left join and the fitted steps: read a batch at a time they give the
    /// rows read whole, to the bit, with the same identifiers, source rows and targets.
    #[test]
    fn new_data_read_in_batches_give_the_rows_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (flights, path, cfg) = crate::stream::tests::flights_run(
            dir.path(),
            r#"
                 { "join": { "with": "planes", "on": ["tailnum"], "how": "inner", "suffix": "_plane", "cardinality": "many_to_one" } },
                 { "join": { "with": "weather", "on": ["origin", "time_hour"], "how": "left", "cardinality": "many_to_one" } },
                 { "exclude": ["arr_time", "dep_time"] },
                 { "drop_columns": { "max_missing": 0.5 } },
                 { "impute": { "numeric": "median", "categorical": "mode", "indicator": true } },
                 { "encode": { "one_hot": ["carrier", "origin"], "max_levels": 8 } },
                 { "normalize": { "method": "zscore" } }"#,
        );
        let manifest = crate::pipeline::prepare(
            &cfg,
            5,
            None,
            &crate::LoadedTables::none(),
            &whet_core::NoProgress,
        )
        .unwrap()
        .manifest;
        let none = BTreeMap::new();
        let work = dir.path().join("work");
        let open = |path: &Path, budget| {
            NewData::open(
                &manifest,
                path,
                &none,
                budget,
                &work,
                &whet_core::NoProgress,
            )
            .unwrap()
        };
        let whole = open(&path, u64::MAX);
        assert!(whole.streamed().is_none());
        // A budget of one byte: plans of one batch each.
        let batched = open(&path, 1);
        assert!(batched.streamed().is_some());
        let (fa, ia, ra, ta, a) = read(&whole);
        let (fb, ib, rb, tb, b) = read(&batched);
        assert_eq!(a.batches, 1);
        assert_eq!(b.batches, flights.height().div_ceil(crate::BATCH_ROWS));
        assert_eq!((a.rows_in, a.rows_out), (b.rows_in, b.rows_out));
        assert!(a.rows_out < a.rows_in, "the inner join removes rows");
        assert_eq!(a.target_missing_dropped, b.target_missing_dropped);
        assert!(a.target_missing_dropped > 0);
        assert_eq!(ra, rb);
        assert_eq!(ta, tb);
        assert!(fa.equals_missing(&fb), "the transformed rows differ");
        assert!(ia.equals_missing(&ib), "the identifier columns differ");
        assert_eq!(ia.get_column_names(), ["row", "tailnum"]);

        // The shipped CSV file itself, over the budget: converted to Parquet (parts of 1 MiB
        // of text), then read the same way, to the same rows; the Parquet file goes with it.
        let csv = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/nycflights13/flights.csv.gz");
        let converted = open(&csv, 1);
        assert!(converted.streamed().is_some());
        let parquet = converted.csv.as_ref().unwrap().spec.path.clone();
        assert!(parquet.starts_with(dir.path().join("work-csv")));
        assert!(crate::stream::row_groups(&converted.spec).unwrap().len() > 10);
        let (fc, ic, rc, tc, c) = read(&converted);
        assert_eq!((c.rows_in, c.rows_out), (b.rows_in, b.rows_out));
        assert_eq!((rc, tc), (rb, tb));
        assert!(
            fc.equals_missing(&fb),
            "the transformed rows of the CSV file differ"
        );
        assert!(
            ic.equals_missing(&ib),
            "the identifier columns of the CSV file differ"
        );
        drop(converted);
        assert!(
            !parquet.exists(),
            "the converted file is removed with the data"
        );

        // A data file whose rows the inner join all removes: named as in memory, both ways.
        let mut strangers = flights.head(Some(100_000));
        strangers
            .with_column(Column::new(
                "tailnum".into(),
                vec!["NOPLANE"; strangers.height()],
            ))
            .unwrap();
        let lost = dir.path().join("lost.parquet");
        ParquetWriter::new(std::fs::File::create(&lost).unwrap())
            .finish(&mut strangers)
            .unwrap();
        for budget in [u64::MAX, 1] {
            let new = open(&lost, budget);
            let e = new
                .for_each_batch(false, &[], &whet_core::NoProgress, |_| Ok::<(), Error>(()))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("step 0 `join`") && e.contains("removed all 100000 rows"),
                "{e}"
            );
        }
    }
}
