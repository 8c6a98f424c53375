//! Image folders: one sub-folder per class holding PNG or JPEG files, loaded grey or RGB and
//! resized to a declared size; and export of a set as such folders (PNG).

use crate::error::{Error, Result};
use crate::set::ImageSet;
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// The largest image file read from a folder, in bytes: 256 MiB.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// A file skipped while loading a folder with `skip_bad`.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why (the decoder's message).
    pub reason: String,
}

/// What [`load_folder`] read.
#[derive(Debug, Clone)]
pub struct FolderLoad {
    /// The images.
    pub set: ImageSet,
    /// Files skipped because they could not be decoded (only with `skip_bad`).
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
    /// Skip undecodable files (and report them) instead of failing.
    pub skip_bad: bool,
    /// Keep only these classes, by their index in the sorted list of sub-folder names, relabelled
    /// to their position in this list.
    pub classes: Option<Vec<u32>>,
    /// Keep at most this many images (after the class filter, in folder then file-name order).
    pub limit: Option<usize>,
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
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

/// Loads `root/<class>/*.{png,jpg,jpeg}`. Classes are the sub-folders in name order; other files
/// are ignored. Each image is converted to grey (`channels: 1`) or RGB and resized (bilinear) to
/// `width × height` when its size differs.
///
/// # Errors
/// [`Error::Read`] when a folder cannot be listed or a file read; [`Error::Decode`] for a corrupt
/// file unless `skip_bad`; [`Error::Config`] for bad options or no class folder.
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
    let class_dirs: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if class_dirs.is_empty() {
        return Err(Error::Format {
            path: root.to_path_buf(),
            message: "no class sub-folder found (expected one folder per class)".into(),
        });
    }
    let all_names: Vec<String> = class_dirs
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
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
    let mut skipped = Vec::new();
    let mut empty_classes = Vec::new();
    let limit = opt.limit.unwrap_or(usize::MAX);
    'outer: for (new_label, &ci) in chosen.iter().enumerate() {
        let files: Vec<PathBuf> = sorted_entries(&class_dirs[ci])?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        if files.is_empty() {
            empty_classes.push(class_dirs[ci].clone());
        }
        for file in files {
            if labels.len() >= limit {
                break 'outer;
            }
            let bytes = whet_core::input::read_capped(&file, "images", MAX_IMAGE_FILE_BYTES)?;
            let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
            if let Ok(format) = image::ImageFormat::from_path(&file) {
                reader.set_format(format);
            }
            let reader = reader.with_guessed_format().map_err(|source| Error::Read {
                path: file.clone(),
                source,
            })?;
            // The decoders can panic on corrupt files (whet-fuzz found an `unwrap` in zune-jpeg's
            // AVX2 IDCT): a panic there is a corrupt file, reported like any decode error.
            let decoded =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode()))
                    .unwrap_or_else(|p| {
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
                    });
            let img = match decoded {
                Ok(img) => img,
                Err(source) if opt.skip_bad => {
                    skipped.push(Skipped {
                        path: file.clone(),
                        reason: source.to_string(),
                    });
                    continue;
                }
                Err(source) => return Err(Error::Decode { path: file, source }),
            };
            let img = if img.width() as usize != w || img.height() as usize != h {
                img.resize_exact(w as u32, h as u32, FilterType::Triangle)
            } else {
                img
            };
            if c == 1 {
                pixels.extend_from_slice(img.to_luma8().as_raw());
            } else {
                pixels.extend_from_slice(img.to_rgb8().as_raw());
            }
            labels.push(new_label as u32);
        }
    }
    let names = chosen.iter().map(|&i| all_names[i].clone()).collect();
    Ok(FolderLoad {
        set: ImageSet::new(h, w, c, pixels, labels, names)?,
        skipped,
        empty_classes,
    })
}

/// Writes `set` as `root/<class name>/<index:06>.png`, each file atomically. Class names that are
/// not safe file names (empty, `.`/`..`, containing a path separator) are replaced by the label.
///
/// # Errors
/// [`Error::Encode`] or [`Error::Write`].
pub fn write_png_folders(set: &ImageSet, root: &Path) -> Result<()> {
    let ct = if set.c() == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    for i in 0..set.len() {
        let l = set.labels()[i] as usize;
        let name = &set.class_names()[l];
        let safe = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
        let dir = root.join(if safe { name.clone() } else { l.to_string() });
        let path = dir.join(format!("{i:06}.png"));
        encode_png(&path, set.image(i), set.w() as u32, set.h() as u32, ct)?;
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
