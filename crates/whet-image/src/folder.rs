//! Image folders: one sub-folder per class holding PNG, JPEG, WebP, TIFF, BMP or GIF files,
//! loaded grey or RGB and resized to a declared size; and export of a set as such folders (PNG).

use crate::error::{Error, Result};
use crate::set::ImageSet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The file extensions (lower case) of the image files whet reads: PNG, JPEG, WebP, TIFF, BMP
/// and GIF (its first frame). Other files in a class folder are skipped and reported.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "gif"];

/// How a colour image becomes grey (`channels: 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grey {
    /// ITU-R BT.601 luma, `0.299 R + 0.587 G + 0.114 B`, in PIL's fixed point
    /// (`(19595 R + 38470 G + 7471 B + 2^15) >> 16`), so a pixel gets the value of PIL's
    /// `convert("L")` (and, but for a rare rounding step, OpenCV's `cvtColor(…, BGR2GRAY)`):
    /// pure red is 76. The default.
    #[default]
    Rec601,
    /// ITU-R BT.709 luma, `0.2126 R + 0.7152 G + 0.0722 B` (the `image` crate's `to_luma8`;
    /// what whet used before `grey` existed): pure red is 54.
    Rec709,
}

impl Grey {
    /// The grey value of one RGB pixel.
    pub fn luma(self, [r, g, b]: [u8; 3]) -> u8 {
        match self {
            Grey::Rec601 => {
                ((19595 * r as u32 + 38470 * g as u32 + 7471 * b as u32 + (1 << 15)) >> 16) as u8
            }
            Grey::Rec709 => image::Pixel::to_luma(&image::Rgb([r, g, b])).0[0],
        }
    }
}

/// Why a file or folder was skipped while loading a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// A sub-folder that whet wrote.
    OutputFolder,
    /// A file whose extension is not one of [`IMAGE_EXTENSIONS`].
    NotAnImage,
    /// An image file that could not be decoded (with `skip_bad`).
    Undecodable,
}

/// The largest image file read from a folder, in bytes: 256 MiB.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// A file or folder skipped while loading a folder: an undecodable file (with `skip_bad`), or a
/// sub-folder that whet wrote (it holds [`whet_core::outputs::OUTPUT_MARKER`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Why, as a kind (the summary of [`skipped_warnings`] groups by it).
    pub kind: SkipKind,
    /// The file or folder.
    pub path: PathBuf,
    /// Why (with the decoder's message for a file).
    pub reason: String,
}

/// What [`load_folder`] read.
#[derive(Debug, Clone)]
pub struct FolderLoad {
    /// The images.
    pub set: ImageSet,
    /// Sub-folders skipped because whet wrote them, files that are not images by their
    /// extension, then files skipped because they could not be decoded (only with `skip_bad`).
    pub skipped: Vec<Skipped>,
    /// Chosen class folders that hold no image file at all. They stay classes (so labels keep
    /// matching the test folders and the `classes` indices), which the network never sees in
    /// training: the caller warns about them.
    pub empty_classes: Vec<PathBuf>,
}

/// Options of [`load_folder`].
#[derive(Debug, Clone)]
pub struct FolderOptions {
    /// Output width in pixels.
    pub width: usize,
    /// Output height in pixels.
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// How colour images become grey when `channels` is 1.
    pub grey: Grey,
    /// Skip undecodable files (and report them) instead of failing.
    pub skip_bad: bool,
    /// Keep only these classes, by their index in the sorted list of sub-folder names, relabelled
    /// to their position in this list.
    pub classes: Option<Vec<u32>>,
    /// Keep at most this many images (after the class filter, in folder then file-name order).
    pub limit: Option<usize>,
}

/// Whether `p` names an image file by its extension (one of [`IMAGE_EXTENSIONS`], any case):
/// the files [`load_folder`] and [`image_files`] read.
pub fn is_image_file(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// How a file's extension is shown in messages: `.webp`, or `(none)`.
fn extension_of(p: &Path) -> String {
    p.extension().map_or_else(
        || "(none)".to_string(),
        |e| format!(".{}", e.to_string_lossy().to_ascii_lowercase()),
    )
}

/// The supported extensions as a message lists them.
pub(crate) fn supported() -> String {
    IMAGE_EXTENSIONS
        .iter()
        .map(|e| format!(".{e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Files named in a summary before "and N more".
const SHOWN: usize = 5;

/// The warnings for what [`load_folder`] skipped, grouped so a folder of thousands of stray
/// files gives one line each kind: every folder whet wrote; files that are not images (count,
/// the extensions seen, the first few); undecodable files (count, the first few with the
/// decoder's message).
pub fn skipped_warnings(skipped: &[Skipped]) -> Vec<String> {
    // A folder read as train and as test lists its files twice: each once here.
    let mut seen = std::collections::HashSet::new();
    let skipped: Vec<&Skipped> = skipped
        .iter()
        .filter(|s| seen.insert(s.path.clone()))
        .collect();
    let mut out: Vec<String> = skipped
        .iter()
        .filter(|s| s.kind == SkipKind::OutputFolder)
        .map(|s| format!("skipped `{}`: {}", s.path.display(), s.reason))
        .collect();
    let of = |kind| skipped.iter().filter(move |s| s.kind == kind);
    let names = |kind, with_reason: bool| {
        let mut v: Vec<String> = of(kind)
            .take(SHOWN)
            .map(|s| {
                if with_reason {
                    format!("`{}` ({})", s.path.display(), s.reason)
                } else {
                    format!("`{}`", s.path.display())
                }
            })
            .collect();
        let n = of(kind).count();
        if n > SHOWN {
            v.push(format!("and {} more", n - SHOWN));
        }
        v.join(", ")
    };
    let not_images = of(SkipKind::NotAnImage).count();
    if not_images > 0 {
        let exts: BTreeSet<String> = of(SkipKind::NotAnImage)
            .map(|s| extension_of(&s.path))
            .collect();
        out.push(format!(
            "skipped {not_images} file(s) that are not images by their extension ({}; whet reads {}): {}",
            exts.into_iter().collect::<Vec<_>>().join(", "),
            supported(),
            names(SkipKind::NotAnImage, false)
        ));
    }
    let bad = of(SkipKind::Undecodable).count();
    if bad > 0 {
        out.push(format!(
            "skipped {bad} image file(s) that could not be decoded (skip_bad): {}",
            names(SkipKind::Undecodable, true)
        ));
    }
    out
}

pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

/// Loads `root/<class>/*.{png,jpg,jpeg,webp,tif,tiff,bmp,gif}`. Classes are the sub-folders in
/// name order, named by their folder name decoded as [`write_png_folders`] encodes it; other
/// files are skipped, and so are sub-folders holding whet's output marker (all listed in
/// [`FolderLoad::skipped`]; [`skipped_warnings`] words them). Each image is converted to grey
/// (`channels: 1`, weighted as `grey` says) or RGB and resized (antialiased bilinear, PIL's
/// `BILINEAR` filter) to `width × height` when its size differs; a GIF gives its first frame.
/// Files are decoded in parallel on the rayon pool; the set is the same on any thread count.
///
/// # Errors
/// [`Error::Read`] when a folder cannot be listed or a file read; [`Error::Decode`] for a corrupt
/// file unless `skip_bad`; [`Error::Config`] for bad options; [`Error::Format`] for no class
/// folder, two folders that name one class, or class folders with no image read (naming the
/// extensions seen and those supported).
pub fn load_folder(root: &Path, opt: &FolderOptions) -> Result<FolderLoad> {
    if opt.channels != 1 && opt.channels != 3 {
        return Err(Error::Config(format!(
            "channels must be 1 or 3, found {}",
            opt.channels
        )));
    }
    if opt.width == 0 || opt.height == 0 || opt.width * opt.height > 1 << 26 {
        return Err(Error::Config(format!(
            "image size {}x{} is out of range (1 to 2^26 pixels)",
            opt.width, opt.height
        )));
    }
    let mut skipped = Vec::new();
    let mut class_dirs: Vec<PathBuf> = Vec::new();
    for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        if whet_core::outputs::is_output_folder(&dir) {
            skipped.push(Skipped {
                kind: SkipKind::OutputFolder,
                reason: format!(
                    "a folder whet wrote (it holds `{}`), not a class",
                    whet_core::outputs::OUTPUT_MARKER
                ),
                path: dir,
            });
        } else {
            class_dirs.push(dir);
        }
    }
    if class_dirs.is_empty() {
        return Err(Error::Format {
            path: root.to_path_buf(),
            message: "no class sub-folder found (expected one folder per class)".into(),
        });
    }
    let all_names = class_names(root, &class_dirs)?;
    let chosen: Vec<usize> = match &opt.classes {
        Some(cl) => {
            let mut v = Vec::new();
            for &c in cl {
                if c as usize >= class_dirs.len() {
                    return Err(Error::Config(format!(
                        "class {c} requested but `{}` has {} class folders ({all_names:?})",
                        root.display(),
                        class_dirs.len()
                    )));
                }
                v.push(c as usize);
            }
            v
        }
        None => (0..class_dirs.len()).collect(),
    };
    let (w, h, c) = (opt.width, opt.height, opt.channels);
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut empty_classes = Vec::new();
    let limit = opt.limit.unwrap_or(usize::MAX);
    // Every file first (paths only), so the decoded set's size is known before decoding.
    let mut files = Vec::new();
    for (new_label, &ci) in chosen.iter().enumerate() {
        let before = files.len();
        for file in sorted_entries(&class_dirs[ci])?
            .into_iter()
            .filter(|p| p.is_file())
        {
            if is_image_file(&file) {
                files.push((new_label, file));
            } else {
                skipped.push(Skipped {
                    kind: SkipKind::NotAnImage,
                    reason: format!("extension {} is not an image's", extension_of(&file)),
                    path: file,
                });
            }
        }
        if files.len() == before {
            empty_classes.push(class_dirs[ci].clone());
        }
    }
    crate::set::check_set_memory(
        &format!("the images of `{}`", root.display()),
        files.len().min(limit),
        (h, w, c),
        "data.images.*.folder (width, height) or data.images.*.limit",
    )?;
    // Decoded in parallel, in batches of the images still wanted: one batch unless `skip_bad`
    // skipped some files before `limit` was reached.
    let mut next = 0;
    while labels.len() < limit && next < files.len() {
        let take = (limit - labels.len()).min(files.len() - next);
        let batch = &files[next..next + take];
        next += take;
        let paths: Vec<&Path> = batch.iter().map(|(_, f)| f.as_path()).collect();
        let kept = decode_many(
            &paths,
            (h, w, c),
            opt.grey,
            opt.skip_bad,
            &mut pixels,
            &mut skipped,
        )?;
        labels.extend(
            batch
                .iter()
                .zip(kept)
                .filter(|(_, k)| *k)
                .map(|((l, _), _)| *l as u32),
        );
    }
    if labels.is_empty() && limit > 0 {
        return Err(no_image_read(root, &skipped));
    }
    let names = chosen.iter().map(|&i| all_names[i].clone()).collect();
    Ok(FolderLoad {
        set: ImageSet::new(h, w, c, pixels, labels, names)?,
        skipped,
        empty_classes,
    })
}

/// An encoded image to decode: a file, or a member of a shard already in memory.
pub(crate) trait Encoded: Sync {
    /// The encoded bytes (read from disk for a file).
    fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>>;
    /// What messages name: the file, or `shard/member`.
    fn name(&self) -> PathBuf;
}

impl Encoded for &Path {
    fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>> {
        Ok(whet_core::input::read_capped(self, "images", MAX_IMAGE_FILE_BYTES)?.into())
    }
    fn name(&self) -> PathBuf {
        self.to_path_buf()
    }
}

/// Decodes one encoded image: `Err` when it cannot be read, `Ok(Err)` when it cannot be
/// decoded (a decoder panic counts as a decode error). The format comes from the name's
/// extension, else from the content.
fn decode_one(
    item: &impl Encoded,
) -> Result<std::result::Result<image::DynamicImage, image::ImageError>> {
    let bytes = item.bytes()?;
    let name = item.name();
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes[..]));
    if let Ok(format) = image::ImageFormat::from_path(&name) {
        reader.set_format(format);
    }
    let reader = reader.with_guessed_format().map_err(|source| Error::Read {
        path: name.clone(),
        source,
    })?;
    // The decoders can panic on corrupt files (whet-fuzz found an `unwrap` in zune-jpeg's
    // AVX2 IDCT): a panic there is a corrupt file, reported like any decode error.
    Ok(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode())).unwrap_or_else(
            |p| {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(image::ImageError::Decoding(
                    image::error::DecodingError::new(
                        image::error::ImageFormatHint::Unknown,
                        format!("the decoder failed on corrupt data ({what})"),
                    ),
                ))
            },
        ),
    )
}

/// The error when class folders gave no image: what was skipped, by extension, and what whet
/// reads.
fn no_image_read(root: &Path, skipped: &[Skipped]) -> Error {
    let exts: BTreeSet<String> = skipped
        .iter()
        .filter(|s| s.kind == SkipKind::NotAnImage)
        .map(|s| extension_of(&s.path))
        .collect();
    let undecodable = skipped
        .iter()
        .filter(|s| s.kind == SkipKind::Undecodable)
        .count();
    let seen = if exts.is_empty() {
        "no other file".to_string()
    } else {
        format!(
            "only files with the extensions {}",
            exts.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    let bad = if undecodable > 0 {
        format!(", and {undecodable} image file(s) that could not be decoded")
    } else {
        String::new()
    };
    Error::Format {
        path: root.to_path_buf(),
        message: format!(
            "no image was read from the class folders: they hold {seen}{bad}; whet reads {}",
            supported()
        ),
    }
}

/// Decodes `files` (image files, or shard members) on the rayon pool and appends their pixels
/// to `out`, each converted and resized as [`write_pixels`] does, in file order whatever the
/// thread count. With `skip_bad` an undecodable file is left out and listed in `skipped`; the
/// result says which files were kept. The first failure in file order is the error.
pub(crate) fn decode_many<E: Encoded>(
    files: &[E],
    (h, w, c): (usize, usize, usize),
    grey: Grey,
    skip_bad: bool,
    out: &mut Vec<u8>,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<bool>> {
    use rayon::prelude::*;
    let per = h * w * c;
    let start = out.len();
    out.resize(start + files.len() * per, 0);
    let outcomes: Vec<Result<Option<image::ImageError>>> = out[start..]
        .par_chunks_mut(per.max(1))
        .zip(files.par_iter())
        .map(|(slot, file)| {
            Ok(match decode_one(file)? {
                Ok(img) => {
                    write_pixels(img, (h, w, c), grey, slot);
                    None
                }
                Err(e) => Some(e),
            })
        })
        .collect();
    let mut kept = Vec::with_capacity(files.len());
    let mut end = start;
    for (i, (outcome, file)) in outcomes.into_iter().zip(files).enumerate() {
        match outcome? {
            None => {
                let from = start + i * per;
                if from != end {
                    out.copy_within(from..from + per, end);
                }
                end += per;
                kept.push(true);
            }
            Some(source) if skip_bad => {
                skipped.push(Skipped {
                    kind: SkipKind::Undecodable,
                    path: file.name(),
                    reason: format!("not decodable (skip_bad): {source}"),
                });
                kept.push(false);
            }
            Some(source) => {
                return Err(Error::Decode {
                    path: file.name(),
                    source,
                });
            }
        }
    }
    out.truncate(end);
    Ok(kept)
}

/// Writes `img` converted to grey (`c` = 1, with `grey`'s weights) or RGB, then resized
/// ([`crate::antialias::resize_antialiased`]: antialiased bilinear, PIL's) to `w × h` when its size
/// differs, into `out` (`h·w·c` bytes).
fn write_pixels(
    img: image::DynamicImage,
    (h, w, c): (usize, usize, usize),
    grey: Grey,
    out: &mut [u8],
) {
    use image::DynamicImage;
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let pixels: Vec<u8> = match (c, img) {
        (3, DynamicImage::ImageRgb8(b)) => b.into_raw(),
        (3, img) => img.to_rgb8().into_raw(),
        (_, DynamicImage::ImageLuma8(b)) => b.into_raw(),
        (_, img) if grey == Grey::Rec709 => img.to_luma8().into_raw(),
        (_, img) => img.to_rgb8().pixels().map(|p| grey.luma(p.0)).collect(),
    };
    crate::antialias::resize_antialiased(&pixels, (ih, iw, c), (h, w), out, &mut Vec::new());
}

/// The image files (extensions [`IMAGE_EXTENSIONS`]) under `path`, in name order: `path` itself when it is a file;
/// for a folder, the files of its class sub-folders (folders whet wrote skipped) when it has
/// any, else the files directly in it.
///
/// # Errors
/// [`Error::Read`] when a folder cannot be listed; [`Error::Format`] for a file that is not an
/// image by its extension, or a folder without image files (naming the extensions seen).
pub fn image_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        if !is_image_file(path) {
            return Err(Error::Format {
                path: path.to_path_buf(),
                message: format!("expected an image ({}) or a folder of them", supported()),
            });
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = sorted_entries(path)?;
    let dirs: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.is_dir() && !whet_core::outputs::is_output_folder(p))
        .collect();
    let mut candidates = Vec::new();
    if dirs.is_empty() {
        candidates.extend(entries.iter().filter(|p| p.is_file()).cloned());
    } else {
        for d in dirs {
            candidates.extend(sorted_entries(d)?.into_iter().filter(|p| p.is_file()));
        }
    }
    let (files, others): (Vec<PathBuf>, Vec<PathBuf>) =
        candidates.into_iter().partition(|p| is_image_file(p));
    if files.is_empty() {
        let exts: BTreeSet<String> = others.iter().map(|p| extension_of(p)).collect();
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: format!(
                "no image in the folder or its sub-folders (files seen: {}); whet reads {}",
                if exts.is_empty() {
                    "none".to_string()
                } else {
                    exts.into_iter().collect::<Vec<_>>().join(", ")
                },
                supported()
            ),
        });
    }
    Ok(files)
}

/// Decodes `files` into a set of `height × width × channels` images (converted and resized as
/// [`load_folder`] does), all labelled 0 of one class `unlabelled`: what a prediction scores.
///
/// # Errors
/// [`Error::Read`] or [`Error::Decode`] naming the file; [`Error::Budget`] when
/// the set does not fit in the memory budget.
pub fn load_files(
    files: &[PathBuf],
    width: usize,
    height: usize,
    channels: usize,
    grey: Grey,
) -> Result<ImageSet> {
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    decode_unlabelled(
        &paths,
        (height, width, channels),
        grey,
        "the images to predict",
        "fewer image files",
    )
}

/// Decodes `items` (files or shard members, in order, none skipped) into a set all labelled 0
/// of one class `unlabelled`, after checking its size (`what`, `key`) against the budget.
pub(crate) fn decode_unlabelled<E: Encoded>(
    items: &[E],
    (height, width, channels): (usize, usize, usize),
    grey: Grey,
    what: &str,
    key: &str,
) -> Result<ImageSet> {
    crate::set::check_set_memory(what, items.len(), (height, width, channels), key)?;
    let mut pixels = Vec::with_capacity(items.len() * height * width * channels);
    decode_many(
        items,
        (height, width, channels),
        grey,
        false,
        &mut pixels,
        &mut Vec::new(),
    )?;
    ImageSet::new(
        height,
        width,
        channels,
        pixels,
        vec![0; items.len()],
        vec!["unlabelled".into()],
    )
}

/// The class name of each class folder: the folder name decoded when it is what
/// [`write_png_folders`] writes for a name ([`whet_core::names::decode_component`]), else the
/// folder name as it is.
///
/// # Errors
/// [`Error::Format`] when two folders give the same class name (`%2Ea` and `.a`), which would
/// merge two classes.
fn class_names(root: &Path, class_dirs: &[PathBuf]) -> Result<Vec<String>> {
    let mut seen: std::collections::HashMap<String, &Path> = Default::default();
    let mut names = Vec::with_capacity(class_dirs.len());
    for dir in class_dirs {
        let folder = dir.file_name().unwrap_or_default().to_string_lossy();
        let name = whet_core::names::decode_component(&folder).unwrap_or_else(|| folder.into());
        if let Some(first) = seen.insert(name.clone(), dir) {
            return Err(Error::Format {
                path: root.to_path_buf(),
                message: format!(
                    "the class folders `{}` and `{}` both name the class `{}` (a folder name with `%XX` is read as the name it encodes); rename one of them",
                    first.display(),
                    dir.display(),
                    name.escape_debug()
                ),
            });
        }
        names.push(name);
    }
    Ok(names)
}

/// Writes `set` as `root/<class folder>/<index:06>.png`, each file atomically. The class folder
/// is the class name encoded by [`whet_core::names::encode_component`] (`x\\y` → `x%5Cy`,
/// `%` → `%25`, a leading `.` → `%2E`), which [`load_folder`] decodes: distinct classes never
/// share a folder, and loading the folders gives the class names back.
///
/// # Errors
/// [`Error::Format`] for a class name whose encoding is too long for a folder name, or a file
/// system that merges two class folders (one that ignores case); [`Error::Encode`] or
/// [`Error::Write`].
pub fn write_png_folders(set: &ImageSet, root: &Path) -> Result<()> {
    let ct = if set.c() == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut used = vec![false; set.class_names().len()];
    for &l in set.labels() {
        used[l as usize] = true;
    }
    let mut dirs = Vec::with_capacity(used.len());
    for (l, name) in set.class_names().iter().enumerate() {
        let folder = whet_core::names::encode_component(name).map_err(|e| Error::Format {
            path: root.to_path_buf(),
            message: format!("class {l} cannot be written as a folder: {e}"),
        })?;
        let dir = root.join(&folder);
        if used[l] {
            std::fs::create_dir_all(&dir).map_err(|source| {
                Error::Write(whet_core::fsx::FsError {
                    action: "creating the class folder",
                    path: dir.clone(),
                    source,
                })
            })?;
        }
        dirs.push((folder, dir));
    }
    check_folders_distinct(root, &dirs, &used)?;
    for i in 0..set.len() {
        let (_, dir) = &dirs[set.labels()[i] as usize];
        let path = dir.join(format!("{i:06}.png"));
        encode_png(&path, set.image(i), set.w() as u32, set.h() as u32, ct)?;
    }
    Ok(())
}

/// Checks that every used class folder is listed in `root` under its exact name: a file system
/// that ignores case (or normalises Unicode) stores `cat` and `Cat` as one folder, which would
/// merge two classes.
fn check_folders_distinct(root: &Path, dirs: &[(String, PathBuf)], used: &[bool]) -> Result<()> {
    if !used.iter().any(|&u| u) {
        return Ok(());
    }
    let listed: std::collections::HashSet<String> = sorted_entries(root)?
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for ((folder, _), _) in dirs.iter().zip(used).filter(|(_, u)| **u) {
        if !listed.contains(folder) {
            return Err(Error::Format {
                path: root.to_path_buf(),
                message: format!(
                    "the class folder `{folder}` was stored under another name: this file system does not tell some class names apart (for example by case), so two classes would merge; export to a case-sensitive file system or use --format idx"
                ),
            });
        }
    }
    Ok(())
}

/// Encodes `bytes` as a PNG at `path`, atomically.
pub(crate) fn encode_png(
    path: &Path,
    bytes: &[u8],
    w: u32,
    h: u32,
    ct: image::ExtendedColorType,
) -> Result<()> {
    use image::ImageEncoder;
    whet_core::fsx::atomic_write_with(path, |out| {
        image::codecs::png::PngEncoder::new(out)
            .write_image(bytes, w, h, ct)
            .map_err(|source| Error::Encode {
                path: path.to_path_buf(),
                source,
            })
    })
}
