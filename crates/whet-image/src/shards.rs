//! Sharded image sets: many images packed into a few large files, as large image collections
//! are kept and moved.
//!
//! Two formats, one sample = an encoded image (PNG, JPEG, …) and its integer label:
//! - **WebDataset** tar shards (`*.tar`): the files of a sample share a key, the member path up
//!   to the first `.` of its file name (`000123.png` and `000123.cls`); the label is the `.cls`
//!   member's decimal text. Members of one sample are consecutive; other members of a sample
//!   (`.json`, `.txt`, …) are ignored. Read and written here ([`read_webdataset`],
//!   [`write_webdataset`]).
//! - **Hugging Face-style Parquet** shards (`*.parquet`): an `image` column of structs
//!   `{bytes, path}`, a `label` integer column, class names in the file's `huggingface`
//!   metadata. whet-image has no Parquet reader (polars lives in whet-tabular): the caller
//!   passes one as a [`ParquetShards`] (the `whet` crate does).
//!
//! [`ShardSource`] (YAML `data.images.*.shards`) loads the shards of a folder, a file or a
//! file-name pattern, decoding on the rayon pool as the folder loader does.

use crate::error::{Error, Result};
use crate::folder::{Encoded, FolderLoad, Grey, MAX_IMAGE_FILE_BYTES, Skipped, decode_many};
use crate::set::{ImageSet, PixelStats, check_set_memory};
use crate::stream::{ShardIndex, ShardSet};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The two shard formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShardFormat {
    /// WebDataset tar shards (`*.tar`).
    Webdataset,
    /// Hugging Face-style Parquet shards (`*.parquet`).
    Parquet,
}

impl ShardFormat {
    /// The file extension of its shards (`tar`, `parquet`).
    pub fn extension(self) -> &'static str {
        match self {
            ShardFormat::Webdataset => "tar",
            ShardFormat::Parquet => "parquet",
        }
    }

    /// The format a file's extension names, if any.
    pub fn of(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "tar" => Some(ShardFormat::Webdataset),
            "parquet" => Some(ShardFormat::Parquet),
            _ => None,
        }
    }
}

/// One image of a shard, still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedImage {
    /// Its name in the shard, with the extension that says how it is encoded: the image
    /// member (`000123.png`) of a tar shard, the `image.path` of a Parquet row.
    pub name: String,
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// The label.
    pub label: u32,
}

/// The images of one shard file, in file order, and the class names it declares (Parquet
/// shards written by whet or Hugging Face `datasets`; tar shards declare none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shard {
    /// The images.
    pub images: Vec<EncodedImage>,
    /// Names of the labels `0..k`, when the file declares them.
    pub class_names: Option<Vec<String>>,
}

/// Reads and writes Parquet shards for whet-image, which has no Parquet reader of its own.
pub trait ParquetShards: Send + Sync {
    /// The number of images in a shard, from its metadata (an upper bound on what
    /// [`ParquetShards::read`] keeps after a class filter).
    ///
    /// # Errors
    /// The file cannot be read or is not an image shard.
    fn count(&self, path: &Path) -> Result<usize>;
    /// Reads every image of a shard.
    ///
    /// # Errors
    /// The file cannot be read or is not an image shard (naming the column and what it
    /// should hold).
    fn read(&self, path: &Path) -> Result<Shard>;
    /// Writes `images` as a shard at `path`, atomically, declaring `class_names`.
    ///
    /// # Errors
    /// Write errors.
    fn write(
        &self,
        path: &Path,
        images: &[EncodedImage],
        class_names: Option<&[String]>,
    ) -> Result<()>;
}

/// A [`ParquetShards`] for callers without Parquet support: every call is an error that says
/// so.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoParquet;

impl NoParquet {
    fn refuse(path: &Path) -> Error {
        Error::Format {
            path: path.to_path_buf(),
            message: "Parquet shards are read and written through the `whet` crate (polars); \
                      whet-image alone reads WebDataset tar shards"
                .into(),
        }
    }
}

impl ParquetShards for NoParquet {
    fn count(&self, path: &Path) -> Result<usize> {
        Err(Self::refuse(path))
    }
    fn read(&self, path: &Path) -> Result<Shard> {
        Err(Self::refuse(path))
    }
    fn write(&self, path: &Path, _: &[EncodedImage], _: Option<&[String]>) -> Result<()> {
        Err(Self::refuse(path))
    }
}

fn one_channel() -> usize {
    1
}

/// `data.images.*.shards`: a sharded image set.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShardSource {
    /// A shard file (`*.tar`: WebDataset; `*.parquet`: Hugging Face-style), a folder whose
    /// `*.tar` or `*.parquet` files are the shards (in name order; one format per folder), or a
    /// file-name pattern with `*` (`export/train-*.tar`).
    pub path: PathBuf,
    /// Width images are resized to (as `folder.width`).
    pub width: usize,
    /// Height images are resized to.
    pub height: usize,
    /// 1 (grey, default) or 3 (RGB).
    #[serde(default = "one_channel")]
    pub channels: usize,
    /// With `channels: 1`, how colour images become grey (as `folder.grey`; default `rec601`).
    #[serde(default)]
    pub grey: Option<Grey>,
    /// Skip undecodable images and report them instead of failing. Default false.
    #[serde(default)]
    pub skip_bad: bool,
    /// Names of the labels `0, 1, …, k-1`. Default: the names a Parquet shard declares, else
    /// the label values as text (`"0"`, `"1"`, …).
    #[serde(default)]
    pub class_names: Option<Vec<String>>,
    /// Training only: shuffle through a buffer of this many images instead of shuffling the
    /// whole set. Each epoch then visits the shards in a new random order and shuffles the
    /// images inside consecutive windows of this size, so a window needs only the few shards
    /// it spans, and training can stream a set larger than the memory budget, a few decoded
    /// shards at a time. The order is the same whether the set is streamed or fits in memory.
    /// Default: none (a full shuffle, which needs the training set in memory). Write shards
    /// in shuffled order: a window holds what neighbouring shards hold.
    #[serde(default)]
    pub shuffle_buffer: Option<usize>,
}

impl ShardSource {
    /// The shards at `path`, images resized to `height × width`, grey (1 channel).
    pub fn new(path: impl Into<PathBuf>, width: usize, height: usize) -> Self {
        Self {
            path: path.into(),
            width,
            height,
            channels: one_channel(),
            grey: None,
            skip_bad: false,
            class_names: None,
            shuffle_buffer: None,
        }
    }

    /// Sets the channels: 1 (grey) or 3 (RGB), checked by validation.
    pub fn with_channels(mut self, channels: usize) -> Self {
        self.channels = channels;
        self
    }

    /// Shuffles training images through a buffer of `images` (see
    /// [`ShardSource::shuffle_buffer`]).
    pub fn with_shuffle_buffer(mut self, images: usize) -> Self {
        self.shuffle_buffer = Some(images);
        self
    }

    /// Names the labels `0..k-1`.
    pub fn with_class_names(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.class_names = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Loads the shards: images whose label is in `classes` (relabelled to their position in
    /// it) or all, the first `limit` of them in shard then file order. Shards are read one at
    /// a time and decoded on the rayon pool, so the encoded bytes of one shard at most are in
    /// memory beside the set. `key` is the YAML key (`data.images.train`), named in errors.
    ///
    /// # Errors
    /// As [`shard_files`], [`read_webdataset`] and `parquet`'s reader; [`Error::Decode`] for an
    /// undecodable image unless `skip_bad`; [`Error::Budget`] before a set that would not fit;
    /// [`Error::Config`] for class names that do not cover a label, or shards that declare
    /// different ones.
    pub fn load(
        &self,
        classes: Option<&[u32]>,
        limit: Option<usize>,
        key: &str,
        parquet: &dyn ParquetShards,
    ) -> Result<FolderLoad> {
        let scan = self.scan(classes, limit, key, parquet, true, &whet_core::NoProgress)?;
        let (h, w, c) = (self.height, self.width, self.channels);
        Ok(FolderLoad {
            set: ImageSet::new(h, w, c, scan.pixels, scan.labels, scan.names)?,
            skipped: scan.skipped,
            empty_classes: Vec::new(),
        })
    }

    /// Reads and decodes every shard once, as [`ShardSource::load`] (same images, labels,
    /// class names and errors), but keeps only where each image lives, its label and the sums
    /// a normaliser is fitted from: what streaming the shards needs ([`ShardIndex`]). Advances
    /// `progress` by one per shard file read.
    ///
    /// # Errors
    /// As [`ShardSource::load`], without the memory check of the whole set.
    pub fn index(
        &self,
        classes: Option<&[u32]>,
        limit: Option<usize>,
        key: &str,
        parquet: &dyn ParquetShards,
        progress: &dyn whet_core::Progress,
    ) -> Result<ShardIndex> {
        let scan = self.scan(classes, limit, key, parquet, false, progress)?;
        Ok(ShardIndex {
            images: ShardSet {
                files: scan.files,
                format: scan.format,
                members: scan.members,
                labels: scan.labels,
                class_names: scan.names,
                shape: (self.height, self.width, self.channels),
                grey: self.grey.unwrap_or_default(),
                stats: scan.stats,
            },
            skipped: scan.skipped,
        })
    }

    /// An upper bound on the images the shards hold (from the tar headers or the Parquet
    /// metadata, before any image is read), at most `limit`.
    ///
    /// # Errors
    /// As [`shard_files`], [`count_webdataset`] and `parquet`'s counter.
    pub fn count(&self, limit: Option<usize>, parquet: &dyn ParquetShards) -> Result<usize> {
        let (format, files) = shard_files(&self.path)?;
        let mut upper = 0usize;
        for f in &files {
            upper = upper.saturating_add(match format {
                ShardFormat::Webdataset => count_webdataset(f)?,
                ShardFormat::Parquet => parquet.count(f)?,
            });
        }
        Ok(upper.min(limit.unwrap_or(usize::MAX)))
    }

    /// The one pass over the shards of [`ShardSource::load`] and [`ShardSource::index`]:
    /// `keep` keeps the decoded pixels (after a memory check of the whole set), otherwise only
    /// their sums are kept.
    fn scan(
        &self,
        classes: Option<&[u32]>,
        limit: Option<usize>,
        key: &str,
        parquet: &dyn ParquetShards,
        keep: bool,
        progress: &dyn whet_core::Progress,
    ) -> Result<Scan> {
        let (format, files) = shard_files(&self.path)?;
        let (h, w, c) = (self.height, self.width, self.channels);
        let mut pixels = Vec::new();
        if keep {
            // Upper bound on the images before reading any.
            let upper = self.count(limit, parquet)?;
            check_set_memory(
                &format!("the images of `{}`", self.path.display()),
                upper,
                (h, w, c),
                &format!("{key}.shards (width, height) or {key}.limit"),
            )?;
            pixels.reserve(upper.saturating_mul(h * w * c));
        }
        let limit = limit.unwrap_or(usize::MAX);
        let mut labels: Vec<u32> = Vec::new();
        let mut members: Vec<Vec<u32>> = Vec::with_capacity(files.len());
        let mut stats = PixelStats::new(c);
        let mut skipped: Vec<Skipped> = Vec::new();
        let mut declared: Option<(PathBuf, Vec<String>)> = None;
        let mut top = None::<u32>;
        for file in &files {
            let mut here: Vec<u32> = Vec::new();
            if labels.len() >= limit {
                members.push(here);
                continue;
            }
            let shard = read_shard(file, format, parquet)?;
            if let Some(names) = shard.class_names {
                match &declared {
                    Some((first, d)) if *d != names => {
                        return Err(Error::Config(format!(
                            "{key}.shards: `{}` names the classes {names:?} but `{}` named them \
                             {d:?}; shards of one set must agree (or set `class_names`)",
                            file.display(),
                            first.display()
                        )));
                    }
                    Some(_) => {}
                    None => declared = Some((file.clone(), names)),
                }
            }
            // (position in the shard, label after `classes`, image)
            let kept: Vec<(u32, u32, EncodedImage)> = shard
                .images
                .into_iter()
                .enumerate()
                .filter_map(|(at, im)| {
                    let label = match classes {
                        Some(cl) => cl.iter().position(|&k| k == im.label)? as u32,
                        None => im.label,
                    };
                    Some((at as u32, label, im))
                })
                .collect();
            let mut next = 0;
            // Decoded in batches of the images still wanted: one batch unless `skip_bad`
            // skipped some before `limit` was reached.
            while labels.len() < limit && next < kept.len() {
                let take = (limit - labels.len()).min(kept.len() - next);
                let batch: Vec<Member<'_>> = kept[next..next + take]
                    .iter()
                    .map(|(_, _, im)| Member {
                        shard: file,
                        image: im,
                    })
                    .collect();
                let from = pixels.len();
                let ok = decode_many(
                    &batch,
                    (h, w, c),
                    self.grey.unwrap_or_default(),
                    self.skip_bad,
                    &mut pixels,
                    &mut skipped,
                )?;
                if !keep {
                    stats.add(&pixels[from..]);
                    pixels.truncate(from);
                }
                for ((at, label, im), ok) in kept[next..next + take].iter().zip(ok) {
                    if ok {
                        labels.push(*label);
                        here.push(*at);
                        top = Some(top.map_or(im.label, |t| t.max(im.label)));
                    }
                }
                next += take;
            }
            members.push(here);
            progress.advance(1);
        }
        if labels.is_empty() {
            return Err(Error::Format {
                path: self.path.clone(),
                message: match classes {
                    Some(cl) => format!("no image with a label in `classes` {cl:?}"),
                    None if skipped.is_empty() => "the shards hold no image".into(),
                    None => format!(
                        "no image could be decoded ({} skipped with skip_bad)",
                        skipped.len()
                    ),
                },
            });
        }
        let all_names: Option<Vec<String>> = self
            .class_names
            .clone()
            .or(declared.map(|(_, names)| names));
        let names: Vec<String> = match (classes, &all_names) {
            (Some(cl), Some(n)) => {
                let top = cl.iter().copied().max().unwrap_or(0);
                self.names_cover(n, top, key)?;
                cl.iter().map(|&l| n[l as usize].clone()).collect()
            }
            (Some(cl), None) => cl.iter().map(|l| l.to_string()).collect(),
            (None, Some(n)) => {
                self.names_cover(n, top.unwrap_or(0), key)?;
                n.clone()
            }
            (None, None) => (0..=top.unwrap_or(0)).map(|l| l.to_string()).collect(),
        };
        Ok(Scan {
            format,
            files,
            pixels,
            labels,
            members,
            names,
            stats,
            skipped,
        })
    }

    fn names_cover(&self, names: &[String], top: u32, key: &str) -> Result<()> {
        if top as usize >= names.len() {
            return Err(Error::Config(format!(
                "{key}.shards: the shards hold label {top}, but {} class name(s) are known, for \
                 labels 0 to {}; give one name per label in `class_names`",
                names.len(),
                names.len().saturating_sub(1)
            )));
        }
        Ok(())
    }
}

/// What one pass over the shards found ([`ShardSource::scan`]).
struct Scan {
    format: ShardFormat,
    files: Vec<PathBuf>,
    /// The decoded images, when kept.
    pixels: Vec<u8>,
    labels: Vec<u32>,
    /// Per shard file: the positions of the images kept, in file order.
    members: Vec<Vec<u32>>,
    names: Vec<String>,
    /// Sums of every kept image's pixels.
    stats: PixelStats,
    skipped: Vec<Skipped>,
}

/// Reads one shard file of `format` (Parquet through `parquet`).
///
/// # Errors
/// As [`read_webdataset`] and `parquet`'s reader.
pub fn read_shard(path: &Path, format: ShardFormat, parquet: &dyn ParquetShards) -> Result<Shard> {
    match format {
        ShardFormat::Webdataset => read_webdataset(path),
        ShardFormat::Parquet => parquet.read(path),
    }
}

/// Decodes `images` (members of the shard `file`, named `file/member` in errors) into a set of
/// `height × width × channels` images, converted and resized as the folder loader does, on the
/// rayon pool, in order, all labelled 0 of one class `unlabelled` (as
/// [`load_files`](crate::load_files)): what `whet predict` scores.
///
/// # Errors
/// [`Error::Budget`] when the set would not fit; [`Error::Decode`] naming the member.
pub fn decode_images(
    images: &[EncodedImage],
    file: &Path,
    shape: (usize, usize, usize),
    grey: Grey,
) -> Result<ImageSet> {
    let members: Vec<Member<'_>> = images
        .iter()
        .map(|image| Member { shard: file, image })
        .collect();
    crate::folder::decode_unlabelled(
        &members,
        shape,
        grey,
        &format!("the images of `{}`", file.display()),
        "fewer images per shard",
    )
}

/// A shard member to decode: named `shard/member` in messages.
pub(crate) struct Member<'a> {
    pub(crate) shard: &'a Path,
    pub(crate) image: &'a EncodedImage,
}

impl Encoded for Member<'_> {
    fn bytes(&self) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self.image.bytes))
    }
    fn name(&self) -> PathBuf {
        self.shard.join(&self.image.name)
    }
}

/// The shard files `path` names and their format: the file itself, the `*.tar` or `*.parquet`
/// files of a folder, or the files matching a file-name pattern with `*` (in name order).
///
/// # Errors
/// [`Error::Read`] when a folder cannot be listed; [`Error::Format`] when nothing matches, a
/// file is not a shard by its extension, or the files mix the two formats.
pub fn shard_files(path: &Path) -> Result<(ShardFormat, Vec<PathBuf>)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files: Vec<PathBuf> = if name.contains('*') {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(Error::Format {
                path: path.to_path_buf(),
                message: format!(
                    "no shard found: the pattern's folder `{}` does not exist (relative paths \
                     are resolved against the run file's folder)",
                    dir.display()
                ),
            });
        }
        let mut v: Vec<PathBuf> = crate::folder::sorted_entries(dir)?
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| wildcard(&name, &n.to_string_lossy()))
                    && p.is_file()
            })
            .collect();
        v.sort();
        v
    } else if path.is_dir() {
        let mut v: Vec<PathBuf> = crate::folder::sorted_entries(path)?
            .into_iter()
            .filter(|p| p.is_file() && ShardFormat::of(p).is_some())
            .collect();
        v.sort();
        v
    } else {
        whet_core::input::check_input(path)?;
        vec![path.to_path_buf()]
    };
    let Some(first) = files.first() else {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: "no shard found: expected a `.tar` (WebDataset) or `.parquet` file, a \
                      folder of them, or a pattern such as `train-*.tar`"
                .into(),
        });
    };
    let format = ShardFormat::of(first).ok_or_else(|| Error::Format {
        path: first.clone(),
        message: "not a shard by its extension: expected `.tar` (WebDataset) or `.parquet`".into(),
    })?;
    if let Some(other) = files.iter().find(|f| ShardFormat::of(f) != Some(format)) {
        return Err(Error::Format {
            path: other.clone(),
            message: format!(
                "the shards must share one format, but `{}` is a `.{}` shard and this one is not; \
                 point `path` at one kind",
                first.display(),
                format.extension()
            ),
        });
    }
    Ok((format, files))
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The largest `.cls` member read (a label is a short decimal number).
const MAX_LABEL_BYTES: u64 = 64;

fn tar_error(path: &Path, e: std::io::Error) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: format!("not a readable tar shard: {e}"),
    }
}

/// Splits a member path into its sample key and extension (lower case): the key is the path
/// up to the first `.` of the file name (`a/b/000123.seg.png` → `a/b/000123`, `seg.png`).
fn key_and_extension(member: &str) -> (&str, String) {
    let start = member.rfind('/').map_or(0, |i| i + 1);
    match member[start..].find('.') {
        Some(i) => (
            &member[..start + i],
            member[start + i + 1..].to_ascii_lowercase(),
        ),
        None => (member, String::new()),
    }
}

fn is_image_extension(ext: &str) -> bool {
    crate::folder::IMAGE_EXTENSIONS.contains(&ext)
}

/// Counts the samples of a WebDataset shard (keys with an image member) from its headers,
/// seeking past the contents.
///
/// # Errors
/// As [`read_webdataset`], for the headers.
pub fn count_webdataset(path: &Path) -> Result<usize> {
    whet_core::input::check_input(path)?;
    let file = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut archive = tar::Archive::new(file);
    let mut n = 0;
    let mut last_key = String::new();
    for entry in archive
        .entries_with_seek()
        .map_err(|e| tar_error(path, e))?
    {
        let entry = entry.map_err(|e| tar_error(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let (key, ext) = key_and_extension(&member);
        if is_image_extension(&ext) && key != last_key {
            n += 1;
            last_key = key.to_string();
        }
    }
    Ok(n)
}

/// A sample being read from a tar shard: its key, its image (member name, bytes), its label.
type Sample = (String, Option<(String, Vec<u8>)>, Option<u32>);

/// Reads a WebDataset tar shard: one [`EncodedImage`] per sample, in file order. Folder
/// members are skipped, and so are a sample's members that are neither an image nor `.cls`.
///
/// # Errors
/// [`Error::Format`] naming the shard and the sample for: a tar that cannot be read, a member
/// that is neither a file nor a folder (a link), a non-UTF-8 member name, an image over
/// [`MAX_IMAGE_FILE_BYTES`], a sample with no image, two images or no `.cls` label, a label
/// that is not a non-negative integer, or a key that comes back after other samples (the
/// members of a sample must be consecutive).
pub fn read_webdataset(path: &Path) -> Result<Shard> {
    whet_core::input::check_input(path)?;
    let file = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    let bad = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut images = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut current: Option<Sample> = None;
    let finish = |sample: Sample, images: &mut Vec<EncodedImage>| -> Result<()> {
        let (key, image, label) = sample;
        match (image, label) {
            (Some((name, bytes)), Some(label)) => {
                images.push(EncodedImage { name, bytes, label });
                Ok(())
            }
            (None, _) => Err(bad(format!(
                "sample `{key}` has no image member (expected `{key}.png`, `.jpg`, … beside \
                 `{key}.cls`)"
            ))),
            (Some(_), None) => Err(bad(format!(
                "sample `{key}` has no label: expected a `{key}.cls` member holding its class \
                 number"
            ))),
        }
    };
    for entry in archive.entries().map_err(|e| tar_error(path, e))? {
        let mut entry = entry.map_err(|e| tar_error(path, e))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let member = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| bad("a member name is not UTF-8 text".into()))?;
        if !kind.is_file() {
            return Err(bad(format!(
                "member `{member}` is not a regular file (a link or a device entry); a shard \
                 holds files only"
            )));
        }
        let size = entry.size();
        let (key, ext) = key_and_extension(&member);
        let key = key.to_string();
        if current.as_ref().is_none_or(|c| c.0 != key) {
            if let Some(done) = current.take() {
                finish(done, &mut images)?;
            }
            if !seen.insert(key.clone()) {
                return Err(bad(format!(
                    "sample `{key}` appears again after other samples: the members of a sample \
                     must be consecutive (WebDataset)"
                )));
            }
            current = Some((key.clone(), None, None));
        }
        let sample = current.as_mut().expect("set above");
        let cap = if is_image_extension(&ext) {
            MAX_IMAGE_FILE_BYTES
        } else if ext == "cls" {
            MAX_LABEL_BYTES
        } else {
            continue;
        };
        if size > cap || size > file_len {
            return Err(bad(format!(
                "member `{member}` declares {size} bytes, over the {cap}-byte limit of a \
                 `.{ext}` member{}",
                if size > file_len {
                    " (and the shard's size)"
                } else {
                    ""
                }
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| tar_error(path, e))?;
        if ext == "cls" {
            let text = String::from_utf8_lossy(&bytes);
            let label = text.trim().parse::<u32>().map_err(|_| {
                bad(format!(
                    "member `{member}`: expected a class number (0, 1, …), found `{}`",
                    text.trim().chars().take(40).collect::<String>()
                ))
            })?;
            sample.2 = Some(label);
        } else {
            if let Some((first, _)) = &sample.1 {
                return Err(bad(format!(
                    "sample `{key}` has two images, `{first}` and `{member}`; a sample holds one"
                )));
            }
            sample.1 = Some((member.clone(), bytes));
        }
    }
    if let Some(done) = current.take() {
        finish(done, &mut images)?;
    }
    Ok(Shard {
        images,
        class_names: None,
    })
}

/// Writes `images` as a WebDataset tar shard at `path`, atomically: for each image its member
/// (`name`) and `<key>.cls` with the label, in order. The bytes depend only on the images
/// (modification times 0, no owner names), so the same set gives the same shard.
///
/// # Errors
/// [`Error::Format`] for an image name without an image extension or with a key used twice;
/// [`Error::Write`].
pub fn write_webdataset(path: &Path, images: &[EncodedImage]) -> Result<()> {
    let mut keys = std::collections::HashSet::new();
    for im in images {
        let (key, ext) = key_and_extension(&im.name);
        if !is_image_extension(&ext) || !keys.insert(key) {
            return Err(Error::Format {
                path: path.to_path_buf(),
                message: format!(
                    "cannot write image `{}`: expected a unique key and an image extension",
                    im.name
                ),
            });
        }
    }
    whet_core::fsx::atomic_write_with(path, |out| -> Result<()> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        let io = |source: std::io::Error| {
            Error::Write(whet_core::fsx::FsError {
                action: "writing the tar shard",
                path: path.to_path_buf(),
                source,
            })
        };
        for im in images {
            let (key, _) = key_and_extension(&im.name);
            let label = im.label.to_string();
            for (name, data) in [
                (im.name.clone(), im.bytes.as_slice()),
                (format!("{key}.cls"), label.as_bytes()),
            ] {
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(0);
                header.set_entry_type(tar::EntryType::Regular);
                builder.append_data(&mut header, &name, data).map_err(io)?;
            }
        }
        builder.finish().map_err(io)?;
        Ok(())
    })
}

/// Encodes every image of `set` as PNG (lossless: loading the shards gives the pixels back),
/// on the rayon pool, named `00000000.png`, `00000001.png`, … in set order.
///
/// # Errors
/// [`Error::Encode`] when the encoder fails.
pub fn encode_pngs(set: &ImageSet) -> Result<Vec<EncodedImage>> {
    encode_pngs_range(set, 0..set.len(), 0)
}

/// [`encode_pngs`] for the images `range` of `set`, named after their index plus `first`
/// (`{first + i:08}.png`): what a split written a part at a time names its images.
///
/// # Errors
/// [`Error::Encode`] when the encoder fails.
pub fn encode_pngs_range(
    set: &ImageSet,
    range: std::ops::Range<usize>,
    first: usize,
) -> Result<Vec<EncodedImage>> {
    use image::ImageEncoder;
    use rayon::prelude::*;
    let ct = if set.c() == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    range
        .into_par_iter()
        .map(|i| {
            let name = format!("{:08}.png", first + i);
            let mut bytes = Vec::new();
            image::codecs::png::PngEncoder::new(&mut bytes)
                .write_image(set.image(i), set.w() as u32, set.h() as u32, ct)
                .map_err(|source| Error::Encode {
                    path: PathBuf::from(&name),
                    source,
                })?;
            Ok(EncodedImage {
                name,
                bytes,
                label: set.labels()[i],
            })
        })
        .collect()
}

/// Bytes an image takes in a shard file of `format`: in a tar, its member and its `.cls`
/// member, each a 512-byte header and contents padded to 512 bytes; in Parquet, its encoded
/// bytes (compression and the small columns aside).
fn shard_cost(im: &EncodedImage, format: ShardFormat) -> u64 {
    let len = im.bytes.len() as u64;
    match format {
        ShardFormat::Webdataset => 512 + len.div_ceil(512) * 512 + 1024,
        ShardFormat::Parquet => len,
    }
}

/// Splits `images` into consecutive shards of at most `shard_bytes` each, as a file of `format`
/// holds them (in a tar an image takes a 512-byte header and its bytes padded to 512, plus 1,024
/// bytes for its `.cls` member; in Parquet its encoded bytes). A shard holds at least one image,
/// so an image larger than `shard_bytes` is a shard alone. Returns the index ranges, at least
/// one (empty for no image).
pub fn plan_shards(
    images: &[EncodedImage],
    shard_bytes: u64,
    format: ShardFormat,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0usize, 0u64);
    for (i, im) in images.iter().enumerate() {
        let b = shard_cost(im, format);
        if i > start && size + b > shard_bytes {
            out.push(start..i);
            (start, size) = (i, 0);
        }
        size += b;
    }
    out.push(start..images.len());
    out
}

/// The file name of shard `k` of `n` of a split: `train-00000-of-00003.tar` (Hugging Face's
/// naming, for both formats).
pub fn shard_name(split: &str, k: usize, n: usize, format: ShardFormat) -> String {
    format!("{split}-{k:05}-of-{n:05}.{}", format.extension())
}

/// Writes `set` as shards of `format` into the folder `dir` (created), at most `shard_bytes`
/// each (tar headers counted; see [`plan_shards`]), named by [`shard_name`] with `split`;
/// Parquet shards declare the set's class names. Returns the file names written, in order.
/// Images are encoded a few thousand at a time, so at most one shard of encoded images is
/// held besides the set.
///
/// # Errors
/// Encoding and write errors; Parquet errors from `parquet`.
pub fn write_shards(
    set: &ImageSet,
    dir: &Path,
    split: &str,
    format: ShardFormat,
    shard_bytes: u64,
    parquet: &dyn ParquetShards,
) -> Result<Vec<String>> {
    let mut w = ShardWriter::new(dir, split, format, shard_bytes, set.class_names(), parquet)?;
    let chunk = 4096;
    for from in (0..set.len()).step_by(chunk) {
        w.push(encode_pngs_range(
            set,
            from..(from + chunk).min(set.len()),
            0,
        )?)?;
    }
    w.finish()
}

/// Writes a split's shards as its images arrive ([`ShardWriter::push`]), each at most
/// `shard_bytes` (as [`plan_shards`] cuts them), under temporary names that
/// [`ShardWriter::finish`] renames to [`shard_name`]s once the count is known.
pub struct ShardWriter<'a> {
    dir: PathBuf,
    split: String,
    format: ShardFormat,
    shard_bytes: u64,
    class_names: Vec<String>,
    parquet: &'a dyn ParquetShards,
    pending: Vec<EncodedImage>,
    size: u64,
    written: Vec<PathBuf>,
}

impl<'a> ShardWriter<'a> {
    /// A writer of shards of `format` into `dir` (created), named after `split`; Parquet
    /// shards declare `class_names`.
    ///
    /// # Errors
    /// [`Error::Write`] when the folder cannot be created.
    pub fn new(
        dir: &Path,
        split: &str,
        format: ShardFormat,
        shard_bytes: u64,
        class_names: &[String],
        parquet: &'a dyn ParquetShards,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| {
            Error::Write(whet_core::fsx::FsError {
                action: "creating the shard folder",
                path: dir.to_path_buf(),
                source,
            })
        })?;
        Ok(ShardWriter {
            dir: dir.to_path_buf(),
            split: split.to_string(),
            format,
            shard_bytes,
            class_names: class_names.to_vec(),
            parquet,
            pending: Vec::new(),
            size: 0,
            written: Vec::new(),
        })
    }

    /// Adds the next images, writing every shard they fill.
    ///
    /// # Errors
    /// Write errors.
    pub fn push(&mut self, images: Vec<EncodedImage>) -> Result<()> {
        for im in images {
            let b = shard_cost(&im, self.format);
            if !self.pending.is_empty() && self.size + b > self.shard_bytes {
                self.flush()?;
            }
            self.size += b;
            self.pending.push(im);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let path = self.dir.join(format!(
            ".{}-{:05}.partial.{}",
            self.split,
            self.written.len(),
            self.format.extension()
        ));
        match self.format {
            ShardFormat::Webdataset => write_webdataset(&path, &self.pending)?,
            ShardFormat::Parquet => {
                self.parquet
                    .write(&path, &self.pending, Some(&self.class_names))?
            }
        }
        self.written.push(path);
        self.pending.clear();
        self.size = 0;
        Ok(())
    }

    /// Writes the last shard (an empty one for a split without images) and gives every shard
    /// its final name. Returns the file names, in order.
    ///
    /// # Errors
    /// Write and rename errors.
    pub fn finish(mut self) -> Result<Vec<String>> {
        if !self.pending.is_empty() || self.written.is_empty() {
            self.flush()?;
        }
        let n = self.written.len();
        let mut names = Vec::with_capacity(n);
        for (k, from) in self.written.iter().enumerate() {
            let name = shard_name(&self.split, k, n, self.format);
            std::fs::rename(from, self.dir.join(&name)).map_err(|source| {
                Error::Write(whet_core::fsx::FsError {
                    action: "naming a shard",
                    path: self.dir.join(&name),
                    source,
                })
            })?;
            names.push(name);
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> ImageSet {
        let pixels: Vec<u8> = (0..n * 12).map(|i| (i * 37 % 251) as u8).collect();
        let labels = (0..n as u32).map(|i| i % 3).collect();
        ImageSet::new(
            2,
            2,
            3,
            pixels,
            labels,
            vec!["a".into(), "b".into(), "c".into()],
        )
        .unwrap()
    }

    #[test]
    fn keys_split_at_the_first_dot_of_the_file_name() {
        assert_eq!(key_and_extension("000123.png"), ("000123", "png".into()));
        assert_eq!(
            key_and_extension("a.b/x/000123.seg.PNG"),
            ("a.b/x/000123", "seg.png".into())
        );
        assert_eq!(key_and_extension("noext"), ("noext", String::new()));
    }

    #[test]
    fn wildcards_match_runs_of_characters() {
        assert!(wildcard("train-*.tar", "train-00000-of-00002.tar"));
        assert!(wildcard("*", "x"));
        assert!(wildcard("a*b*c", "aXbYc"));
        assert!(!wildcard("a*b*c", "aXcYb"));
        assert!(!wildcard("train-*.tar", "test-00000.tar"));
        assert!(!wildcard("ab*ba", "aba"));
    }

    #[test]
    fn shards_hold_at_most_the_size_and_at_least_one_image() {
        let im = |n: usize| EncodedImage {
            name: "x.png".into(),
            bytes: vec![0; n],
            label: 0,
        };
        let images = vec![im(4), im(4), im(10), im(1), im(1)];
        let pq = ShardFormat::Parquet;
        assert_eq!(plan_shards(&images, 8, pq), vec![0..2, 2..3, 3..5]);
        assert_eq!(plan_shards(&images, 100, pq), vec![0..5]);
        assert_eq!(plan_shards(&[], 8, pq), vec![0..0]);
        // A tar member of 4 bytes takes 2,048 bytes with its label.
        let wds = ShardFormat::Webdataset;
        assert_eq!(plan_shards(&images, 4096, wds), vec![0..2, 2..4, 4..5]);
    }

    #[test]
    fn webdataset_round_trip_gives_the_pixels_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = set(7);
        let names = write_shards(
            &s,
            dir.path(),
            "train",
            ShardFormat::Webdataset,
            6000,
            &NoParquet,
        )
        .unwrap();
        assert!(names.len() > 1, "{names:?}");
        assert_eq!(names[0], format!("train-00000-of-{:05}.tar", names.len()));
        let again = write_shards(
            &s,
            &dir.path().join("again"),
            "train",
            ShardFormat::Webdataset,
            6000,
            &NoParquet,
        )
        .unwrap();
        for n in &again {
            assert_eq!(
                std::fs::read(dir.path().join(n)).unwrap(),
                std::fs::read(dir.path().join("again").join(n)).unwrap(),
                "same set, same bytes"
            );
        }
        let src = ShardSource::new(dir.path(), 2, 2)
            .with_channels(3)
            .with_class_names(["a", "b", "c"]);
        let got = src.load(None, None, "t", &NoParquet).unwrap().set;
        assert_eq!(got.pixels(), s.pixels());
        assert_eq!(got.labels(), s.labels());
        assert_eq!(got.class_names(), s.class_names());
        // A pattern, a class filter and a limit.
        let src = ShardSource::new(dir.path().join("train-*.tar"), 2, 2).with_channels(3);
        let got = src
            .load(Some(&[2, 0]), Some(3), "t", &NoParquet)
            .unwrap()
            .set;
        assert_eq!(got.labels(), [1, 0, 1]);
        assert_eq!(got.class_names(), ["2", "0"]);
        assert_eq!(got.image(0), s.image(0));
        assert_eq!(got.image(1), s.image(2));
    }

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn broken_shards_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let png = encode_pngs(&set(1)).unwrap().remove(0).bytes;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("nolabel", tar_of(&[("a.png", &png)]), "no label"),
            ("noimage", tar_of(&[("a.cls", b"1")]), "no image member"),
            (
                "badlabel",
                tar_of(&[("a.png", &png), ("a.cls", b"cat")]),
                "class number",
            ),
            (
                "twice",
                tar_of(&[
                    ("a.png", &png),
                    ("a.cls", b"1"),
                    ("b.png", &png),
                    ("b.cls", b"0"),
                    ("a.json", b"{}"),
                ]),
                "appears again",
            ),
            (
                "two",
                tar_of(&[("a.png", &png), ("a.jpg", &png), ("a.cls", b"1")]),
                "two images",
            ),
            (
                "garbage",
                b"this is not a tar file at all".repeat(40),
                "tar",
            ),
        ];
        for (name, bytes, want) in cases {
            let p = dir.path().join(format!("{name}.tar"));
            std::fs::write(&p, bytes).unwrap();
            let e = read_webdataset(&p).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(name), "{name}: {e}");
        }
        // Members that are neither images nor labels are ignored; folders too.
        let p = dir.path().join("extra.tar");
        std::fs::write(
            &p,
            tar_of(&[("a.png", &png), ("a.json", b"{}"), ("a.cls", b" 2\n")]),
        )
        .unwrap();
        let s = read_webdataset(&p).unwrap();
        assert_eq!(s.images.len(), 1);
        assert_eq!(s.images[0].label, 2);
        assert_eq!(count_webdataset(&p).unwrap(), 1);
    }

    #[test]
    fn shard_paths_must_name_shards_of_one_format() {
        let dir = tempfile::tempdir().unwrap();
        let e = shard_files(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no shard found"), "{e}");
        std::fs::write(dir.path().join("a.tar"), b"").unwrap();
        std::fs::write(dir.path().join("b.parquet"), b"").unwrap();
        let e = shard_files(dir.path()).unwrap_err().to_string();
        assert!(e.contains("one format"), "{e}");
        let (f, files) = shard_files(&dir.path().join("*.tar")).unwrap();
        assert_eq!((f, files.len()), (ShardFormat::Webdataset, 1));
        let e = NoParquet
            .read(&dir.path().join("b.parquet"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("whet"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// A shard with bytes changed anywhere reads or fails with an error: never a panic,
        /// never an allocation its size cannot back.
        #[test]
        fn damaged_shards_never_panic(
            edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..24),
            cut in 0usize..4096,
        ) {
            let png = encode_pngs(&set(2)).unwrap();
            let mut bytes = tar_of(&[
                ("a.png", &png[0].bytes),
                ("a.cls", b"1"),
                ("b.png", &png[1].bytes),
                ("b.cls", b"0"),
            ]);
            for (at, v) in edits {
                let n = bytes.len();
                bytes[at % n] = v;
            }
            bytes.truncate(cut.max(1).min(bytes.len()));
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("x.tar");
            std::fs::write(&p, &bytes).unwrap();
            let _ = read_webdataset(&p);
            let _ = count_webdataset(&p);
            if let Ok(s) = read_webdataset(&p) {
                let src = ShardSource::new(&p, 2, 2).with_channels(3);
                let _ = src.load(None, None, "t", &NoParquet);
                proptest::prop_assert!(s.images.len() <= 2);
            }
        }
    }
}
