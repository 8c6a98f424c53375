//! `whet export`: the data sets a run trains and evaluates on, written to files with the run's
//! manifest. They come from [`Run::prepare`], the function the run itself uses, so the saved
//! model scores on the exported test set exactly what the run reported.

use crate::cache::{Cache, hash_file};
use crate::error::{Error, Result};
use crate::manifest::{FileEntry, Manifest, ManifestKind};
use crate::prepare::{PreparedData, PreparedImages, TrainImages, image_arrays};
use crate::runfile::Run;
use ndarray::Array2;
use std::path::Path;
use whet_core::Progress;
use whet_image::{AugmentMode, ImageSet};

/// File formats of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Apache Parquet (tables).
    Parquet,
    /// Comma-separated values (tables).
    Csv,
    /// NumPy `.npy` arrays (tables and images): features as the network sees them.
    Npy,
    /// PNG files, one folder per class (images).
    Png,
    /// MNIST IDX files, gzip-compressed (images).
    Idx,
    /// WebDataset tar shards, `KEY.png` + `KEY.cls` per image (images).
    Webdataset,
    /// Hugging Face-style Parquet shards: `image: {bytes, path}` (PNG) and `label` (images).
    ParquetShards,
}

impl ExportFormat {
    /// Every format, for help texts.
    pub const ALL: [ExportFormat; 7] = [
        ExportFormat::Parquet,
        ExportFormat::Csv,
        ExportFormat::Npy,
        ExportFormat::Png,
        ExportFormat::Idx,
        ExportFormat::Webdataset,
        ExportFormat::ParquetShards,
    ];

    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Parquet => "parquet",
            ExportFormat::Csv => "csv",
            ExportFormat::Npy => "npy",
            ExportFormat::Png => "png",
            ExportFormat::Idx => "idx",
            ExportFormat::Webdataset => "webdataset",
            ExportFormat::ParquetShards => "parquet-shards",
        }
    }

    /// The table format, for tables.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an image-only format.
    pub fn table_format(self) -> Result<whet_tabular::ExportFormat> {
        match self {
            ExportFormat::Parquet => Ok(whet_tabular::ExportFormat::Parquet),
            ExportFormat::Csv => Ok(whet_tabular::ExportFormat::Csv),
            ExportFormat::Npy => Ok(whet_tabular::ExportFormat::Npy),
            other => Err(Error::Invalid(format!(
                "--format {}: tables export as parquet, csv or npy (the shard formats hold images)",
                other.name()
            ))),
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!("`{s}`: expected parquet, csv, npy, png, idx, webdataset or parquet-shards")
            })
    }
}

impl std::fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The file format (default: Parquet for tables, PNG for images).
    pub format: Option<ExportFormat>,
    /// With online augmentation: also write this many augmented copies of every training image
    /// after the originals (by default online mode exports the originals only; offline mode
    /// exports the copies the model was trained on, and refuses this option).
    pub augmented_copies: Option<usize>,
    /// Columns of the main table written next to every row, with their values as loaded,
    /// after the identifier columns (`data.id`, or `row`) (tables; `--keep`).
    pub keep: Vec<String>,
    /// Shard formats: the most encoded image bytes per shard (default
    /// [`DEFAULT_SHARD_BYTES`]; a shard holds at least one image).
    pub shard_bytes: Option<u64>,
}

/// Default size of a shard: 256 MiB of encoded images.
pub const DEFAULT_SHARD_BYTES: u64 = 256 << 20;

/// What [`Run::export`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// Rows (tables) or images per split: train, validation, test.
    pub rows: [usize; 3],
    /// Features per row (tables) or values per image.
    pub features: usize,
    /// The files, as listed in the manifest.
    pub files: Vec<FileEntry>,
    /// Whether the data were images.
    pub images: bool,
}

impl Run {
    /// Writes the run's prepared train / validation / test sets and `manifest.json` into `out`,
    /// through a staging folder: a failure leaves earlier exports in `out` untouched. `out` is
    /// checked before any work ([`Run::check_output`]: it may not overlap an input).
    ///
    /// `out` is locked first (another run, export or ablation into it fails at once). Files of
    /// an earlier export into `out` that this one does not replace (the CSV files when this one
    /// writes Parquet, say) are removed when it commits, if the earlier `manifest.json` lists
    /// them and they are unchanged; anything else in `out` is left in place with a warning
    /// through `progress`, since whet did not write it.
    ///
    /// # Errors
    /// An `out` that overlaps an input, bad input, a format for the other kind of data, write
    /// errors, or [`Error::Lock`] when another process writes into `out`.
    pub fn export(
        &self,
        out: impl AsRef<Path>,
        options: &ExportOptions,
        cache: &Cache,
        progress: &dyn Progress,
    ) -> Result<ExportReport> {
        let out = out.as_ref();
        self.check_output(out)?;
        let _lock = whet_core::lock::FolderLock::acquire(out)?;
        let seed = self.seed();
        // A main table over the memory budget is prepared straight into the export's files.
        let streams = self.table_streams()?;
        let prepared = match streams {
            None => Some(self.prepare(seed, cache, progress)?),
            Some(_) => None,
        };
        whet_core::publish::staged_removing(out, |stage| -> Result<_> {
            // Published with the export (first, as names starting with `.` sort first).
            whet_core::outputs::mark(stage)?;
            let (prepared, report) = match (prepared, streams) {
                (Some(prepared), _) => {
                    let report = self.export_prepared(&prepared, stage, options)?;
                    (prepared, report)
                }
                (None, Some(bytes)) => {
                    let (p, files) =
                        self.export_streamed_tables(seed, bytes, stage, options, cache, progress)?;
                    let report = match &p.data {
                        PreparedData::Tables(t) => ExportReport {
                            rows: [
                                t.report.rows.train,
                                t.report.rows.validation,
                                t.report.rows.test,
                            ],
                            features: t.features.len(),
                            files,
                            images: false,
                        },
                        PreparedData::Images(_) => unreachable!("a streamed table run"),
                    };
                    (p, report)
                }
                (None, None) => unreachable!("prepared unless streamed"),
            };
            let mut manifest = Manifest::new(
                ManifestKind::Export,
                self,
                seed,
                prepared.summary(),
                prepared.preprocessing(self),
                None,
                prepared.warnings.clone(),
            );
            manifest.files = report.files.clone();
            manifest.save(&stage.join("manifest.json"))?;
            let obsolete = obsolete_files(out, stage, progress)?;
            Ok((report, obsolete))
        })
    }

    /// Writes the prepared splits (in memory, or a streamed image set's shards) into `stage`.
    fn export_prepared(
        &self,
        prepared: &crate::prepare::Prepared,
        stage: &Path,
        options: &ExportOptions,
    ) -> Result<ExportReport> {
        Ok(match &prepared.data {
            PreparedData::Tables(p) => {
                let fmt = table_format(options)?;
                let ids = whet_tabular::split_ids(p, &options.keep)?;
                ExportReport {
                    rows: [p.train.len(), p.validation.len(), p.test.len()],
                    features: p.features.len(),
                    files: whet_tabular::write_splits(p, stage, fmt, &ids)?,
                    images: false,
                }
            }
            PreparedData::Images(p) => {
                if options.shard_bytes.is_some()
                    && !matches!(
                        options.format,
                        Some(ExportFormat::Webdataset | ExportFormat::ParquetShards)
                    )
                {
                    return Err(Error::Invalid(
                        "--shard-size is for --format webdataset or parquet-shards".into(),
                    ));
                }
                if !options.keep.is_empty() {
                    return Err(Error::Invalid(
                        "--keep names table columns; an image export has none".into(),
                    ));
                }
                export_images(p, stage, options)?
            }
        })
    }
}

/// The file format of a table export, refusing the image options.
pub(crate) fn table_format(options: &ExportOptions) -> Result<whet_tabular::ExportFormat> {
    if options.shard_bytes.is_some() {
        return Err(Error::Invalid(
            "--shard-size is for image exports in a shard format".into(),
        ));
    }
    if options.augmented_copies.is_some() {
        return Err(Error::Invalid(
            "--augmented-copies is for image runs with online augmentation".into(),
        ));
    }
    options
        .format
        .unwrap_or(ExportFormat::Parquet)
        .table_format()
}

/// The entries of `out` that an earlier export wrote and the new one (in `stage`) does not
/// replace: listed in `out`'s earlier export manifest, and unchanged since (same SHA-256).
/// Warns about every other entry the new export leaves beside it (changed since, or never
/// written by whet); hidden entries (whet's lock and staging files) are not looked at.
fn obsolete_files(
    out: &Path,
    stage: &Path,
    progress: &dyn Progress,
) -> Result<Vec<std::ffi::OsString>> {
    let earlier: Vec<FileEntry> = std::fs::read(out.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .filter(|m| m.kind == ManifestKind::Export)
        .map(|m| m.files)
        .unwrap_or_default();
    let mut obsolete = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(obsolete);
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let text = name.to_string_lossy();
        if text.starts_with('.') || stage.join(&name).exists() {
            continue;
        }
        let path = out.join(&name);
        let listed = earlier
            .iter()
            .find(|e| e.name.trim_end_matches('/') == text);
        let Some(entry) = listed else {
            progress.warn(&format!(
                "`{}` was not written by `whet export` and is not part of this export; left in place",
                path.display()
            ));
            continue;
        };
        let now = if entry.name.ends_with('/') && path.is_dir() {
            tree_entry(out, &text)?.sha256
        } else if !entry.name.ends_with('/') && path.is_file() {
            hash_file(&path)?
        } else {
            String::new()
        };
        if now == entry.sha256 {
            obsolete.push(name);
        } else {
            progress.warn(&format!(
                "`{}` was written by an earlier export but has changed since; left in place (it is not part of this export)",
                path.display()
            ));
        }
    }
    Ok(obsolete)
}

fn export_images(p: &PreparedImages, dir: &Path, options: &ExportOptions) -> Result<ExportReport> {
    let format = options.format.unwrap_or(ExportFormat::Png);
    let shard_format = match format {
        ExportFormat::Webdataset => Some(whet_image::ShardFormat::Webdataset),
        ExportFormat::ParquetShards => Some(whet_image::ShardFormat::Parquet),
        _ => None,
    };
    let in_memory = match (&p.train, shard_format, options.augmented_copies) {
        (TrainImages::Memory { set, .. }, _, _) => set,
        (TrainImages::Streamed { set, .. }, Some(f), None) => {
            return export_streamed(p, set, dir, f, options);
        }
        (TrainImages::Streamed { .. }, _, copies) => {
            return Err(Error::Invalid(format!(
                "the {} training images do not fit in the memory budget, so they stay in their \
                 shards and stream; they export as shards, one source shard at a time: use \
                 `--format webdataset` or `--format parquet-shards`{} (or raise `--max-memory`)",
                p.train.len(),
                if copies.is_some() {
                    " without --augmented-copies"
                } else {
                    ""
                }
            )));
        }
    };
    let expanded;
    let train = match (options.augmented_copies, &p.online) {
        (None, _) => in_memory,
        (Some(n), Some(augmenter)) => {
            expanded = augmenter.expand(in_memory, n)?;
            &expanded
        }
        (Some(_), None) => {
            let why = match &p.augment {
                Some(a) if a.mode == AugmentMode::Offline => {
                    "offline augmentation exports the copies the model was trained on (set `augment.copies`)"
                }
                _ => "the run has no augmentation",
            };
            return Err(Error::Invalid(format!("--augmented-copies: {why}")));
        }
    };
    let mut files = Vec::new();
    for (name, set) in [
        ("train", Some(train)),
        ("validation", p.validation.as_ref()),
        ("test", Some(&p.test)),
    ] {
        let Some(set) = set else { continue };
        match format {
            ExportFormat::Png => {
                whet_image::write_png_folders(set, &dir.join(name))?;
                files.push(tree_entry(dir, name)?);
            }
            ExportFormat::Idx => {
                let (i, l) = (
                    format!("{name}-images-idx3-ubyte.gz"),
                    format!("{name}-labels-idx1-ubyte.gz"),
                );
                whet_image::write_idx(set, &dir.join(&i), &dir.join(&l))?;
                files.push(file_entry(dir, &i)?);
                files.push(file_entry(dir, &l)?);
            }
            ExportFormat::Npy => {
                let a = image_arrays(set, &p.normalizer, set.class_names().len())?;
                let labels = labels_column(set);
                for (file, x) in [
                    (format!("{name}_x.npy"), a.x()),
                    (format!("{name}_y.npy"), &labels),
                ] {
                    whet_core::fsx::atomic_write(&dir.join(&file), &whet_tabular::npy_bytes(x))?;
                    files.push(file_entry(dir, &file)?);
                }
            }
            ExportFormat::Webdataset | ExportFormat::ParquetShards => {
                let f = shard_format.unwrap_or(whet_image::ShardFormat::Webdataset);
                files.push(write_split_shards(set, dir, name, f, options)?);
            }
            ExportFormat::Parquet | ExportFormat::Csv => {
                return Err(Error::Invalid(format!(
                    "--format {format}: images export as png, idx, npy, webdataset or \
                     parquet-shards"
                )));
            }
        }
    }
    Ok(ExportReport {
        rows: [
            train.len(),
            p.validation.as_ref().map_or(0, ImageSet::len),
            p.test.len(),
        ],
        features: train.image_len(),
        files,
        images: true,
    })
}

/// Writes the split `name` of `set` as shards into `dir/name`; its manifest entry.
fn write_split_shards(
    set: &ImageSet,
    dir: &Path,
    name: &str,
    format: whet_image::ShardFormat,
    options: &ExportOptions,
) -> Result<FileEntry> {
    whet_image::write_shards(
        set,
        &dir.join(name),
        name,
        format,
        options.shard_bytes.unwrap_or(DEFAULT_SHARD_BYTES),
        &crate::PolarsShards,
    )?;
    tree_entry(dir, name)
}

/// A run whose training images stream from their shards, exported as shards: the training
/// split one source shard at a time, the validation and test sets from memory. The files are
/// those the same run would write with its training images in memory.
fn export_streamed(
    p: &PreparedImages,
    train: &whet_image::ShardSet,
    dir: &Path,
    format: whet_image::ShardFormat,
    options: &ExportOptions,
) -> Result<ExportReport> {
    train.write_shards(
        &dir.join("train"),
        "train",
        format,
        options.shard_bytes.unwrap_or(DEFAULT_SHARD_BYTES),
        &crate::PolarsShards,
    )?;
    let mut files = vec![tree_entry(dir, "train")?];
    for (name, set) in [
        ("validation", p.validation.as_ref()),
        ("test", Some(&p.test)),
    ] {
        if let Some(set) = set {
            files.push(write_split_shards(set, dir, name, format, options)?);
        }
    }
    let (h, w, c) = train.shape();
    Ok(ExportReport {
        rows: [
            train.len(),
            p.validation.as_ref().map_or(0, ImageSet::len),
            p.test.len(),
        ],
        features: h * w * c,
        files,
        images: true,
    })
}

/// Labels as one `f32` column (class indices).
fn labels_column(set: &ImageSet) -> Array2<f32> {
    Array2::from_shape_fn((set.len(), 1), |(i, _)| set.labels()[i] as f32)
}

/// A written file's entry: size and SHA-256.
fn file_entry(dir: &Path, name: &str) -> Result<FileEntry> {
    let path = dir.join(name);
    let bytes = std::fs::metadata(&path)
        .map_err(Error::io("reading", &path))?
        .len();
    Ok(FileEntry {
        name: name.into(),
        bytes,
        sha256: hash_file(&path)?,
    })
}

/// A written folder's entry (`name/`): its total size, and the SHA-256 of the sorted list of
/// `relative path, SHA-256 of content` lines of every file in it.
fn tree_entry(dir: &Path, name: &str) -> Result<FileEntry> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<(String, u64, String)>) -> Result<()> {
        let here = root.join(rel);
        for e in std::fs::read_dir(&here).map_err(Error::io("listing", &here))? {
            let e = e.map_err(Error::io("listing", &here))?;
            let rel = rel.join(e.file_name());
            let path = root.join(&rel);
            if path.is_dir() {
                walk(root, &rel, out)?;
            } else {
                let bytes = std::fs::metadata(&path)
                    .map_err(Error::io("reading", &path))?
                    .len();
                out.push((rel.display().to_string(), bytes, hash_file(&path)?));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(&dir.join(name), Path::new(""), &mut files)?;
    files.sort();
    let list: String = files
        .iter()
        .map(|(p, _, h)| format!("{p}  {h}\n"))
        .collect();
    use sha2::Digest;
    let digest = sha2::Sha256::digest(list.as_bytes());
    Ok(FileEntry {
        name: format!("{name}/"),
        bytes: files.iter().map(|f| f.1).sum(),
        sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
    })
}
