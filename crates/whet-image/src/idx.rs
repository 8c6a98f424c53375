//! MNIST IDX files (LeCun et al., <http://yann.lecun.com/exdb/mnist/>), raw or gzip: reading with
//! limits and class filters, and atomic writing.
//!
//! Format: big-endian magic `0x00000803` (u8 images, three dimensions N, rows, cols) or
//! `0x00000801` (u8 labels, one dimension N), then the dimensions as big-endian `u32`, then the
//! bytes.

use crate::error::{Error, Result};
use crate::set::ImageSet;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Largest number of bytes a header may declare; larger is refused before allocating.
pub const MAX_DECLARED_BYTES: u64 = 1 << 31;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// A read error of `path`: the cap of [`whet_core::input`] as itself, anything else as
/// [`Error::Read`].
fn read_error(path: &Path, source: std::io::Error) -> Error {
    match whet_core::input::InputError::from_io(source) {
        Ok(e) => Error::Input(e),
        Err(source) => Error::Read {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn open(path: &Path) -> Result<Box<dyn Read>> {
    let read_err = |source| read_error(path, source);
    // A regular file or a pipe, capped a little above the largest body a header may declare.
    let file = whet_core::input::open_input(path, "IDX files", MAX_DECLARED_BYTES + (1 << 20))?;
    let mut f = BufReader::with_capacity(1 << 16, file);
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(read_err)?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let chained = head.chain(f);
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(GzDecoder::new(chained)))
    } else {
        Ok(Box::new(chained))
    }
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8], path: &Path, what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|source| {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Format {
                path: path.to_path_buf(),
                message: format!("truncated: the file ends inside the {what}"),
            }
        } else {
            read_error(path, source)
        }
    })
}

fn header(r: &mut dyn Read, path: &Path, magic: u32, ndim: usize) -> Result<Vec<u32>> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b, path, "header")?;
    let found = u32::from_be_bytes(b);
    if found != magic {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: format!(
                "wrong magic number 0x{found:08x}, expected 0x{magic:08x} ({})",
                if magic == IMAGES_MAGIC {
                    "IDX u8 images with 3 dimensions"
                } else {
                    "IDX u8 labels with 1 dimension"
                }
            ),
        });
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        read_exact(r, &mut b, path, "header")?;
        dims.push(u32::from_be_bytes(b));
    }
    // Three u32 dimensions can overflow u64: saturate (anything that large is refused).
    let total = dims
        .iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(u64::from(d)));
    if total > MAX_DECLARED_BYTES {
        let shown: Vec<String> = dims.iter().map(u32::to_string).collect();
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: format!(
                "header declares {} = {} bytes, more than the limit of {MAX_DECLARED_BYTES} bytes (2 GiB)",
                shown.join(" x "),
                if total == u64::MAX {
                    "over 2^64".to_string()
                } else {
                    total.to_string()
                }
            ),
        });
    }
    Ok(dims)
}

/// Reads an IDX image file and its label file.
///
/// `classes`, when given, keeps only images whose label is in the list and relabels them to
/// their position in it (`[3, 5]`: 3 becomes 0, 5 becomes 1); `limit` keeps the first `limit`
/// images that pass the filter. Class names are the original label values as text.
///
/// # Errors
/// [`Error::Read`] for I/O and corrupt gzip streams, [`Error::Format`] for a wrong magic number,
/// a truncated file, absurd declared sizes (more than [`MAX_DECLARED_BYTES`]) or labels above 255
/// classes, [`Error::LabelCount`] when the files disagree, [`Error::Config`] for an empty or
/// repeated `classes` list. Every error names the file.
pub fn load_idx(
    images: &Path,
    labels: &Path,
    limit: Option<usize>,
    classes: Option<&[u32]>,
) -> Result<ImageSet> {
    if let Some(cl) = classes {
        check_classes(cl)?;
    }
    let mut lr = open(labels)?;
    let ldims = header(&mut *lr, labels, LABELS_MAGIC, 1)?;
    let mut ir = open(images)?;
    let (n, h, w) = image_header(&mut *ir, images)?;
    if ldims[0] as usize != n {
        return Err(Error::LabelCount {
            images_path: images.to_path_buf(),
            labels_path: labels.to_path_buf(),
            images: n,
            labels: ldims[0] as usize,
        });
    }
    crate::set::check_set_memory(
        &format!("the IDX images of `{}`", images.display()),
        n.min(limit.unwrap_or(usize::MAX)),
        (h, w, 1),
        "data.images.*.limit",
    )?;
    let mut all_labels = vec![0u8; n];
    read_exact(&mut *lr, &mut all_labels, labels, "labels")?;
    // Map original label -> new label.
    let max_label = all_labels.iter().copied().max().unwrap_or(0) as u32;
    let (map, names): (Vec<Option<u32>>, Vec<String>) = match classes {
        Some(cl) => {
            let mut map = vec![None; 256];
            for (k, &c) in cl.iter().enumerate() {
                if (c as usize) < 256 {
                    map[c as usize] = Some(k as u32);
                }
            }
            (map, cl.iter().map(|c| c.to_string()).collect())
        }
        None => (
            (0..256).map(|l| Some(l as u32)).collect(),
            (0..=max_label).map(|c| c.to_string()).collect(),
        ),
    };
    let keep_max = limit.unwrap_or(usize::MAX);
    let img_len = h * w;
    let kept_estimate = n.min(keep_max);
    let mut pixels = Vec::with_capacity(kept_estimate * img_len);
    let mut out_labels = Vec::with_capacity(kept_estimate);
    let mut buf = vec![0u8; img_len];
    for &l in &all_labels {
        if out_labels.len() >= keep_max {
            break;
        }
        read_exact(&mut *ir, &mut buf, images, "pixel data")?;
        if let Some(new) = map[l as usize] {
            pixels.extend_from_slice(&buf);
            out_labels.push(new);
        }
    }
    ImageSet::new(h, w, 1, pixels, out_labels, names)
}

/// What an IDX pair holds, read without the pixels: for checks before a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IdxShape {
    /// Images in the images file.
    pub images: usize,
    /// Height and width of each image.
    pub size: (usize, usize),
    /// Labels in the labels file.
    pub labels: usize,
    /// How many labels have each value (256 counts).
    pub label_counts: Vec<usize>,
}

/// Reads the headers of `images` and `labels` and counts the label values (the labels file is
/// read in 64 KiB pieces; the pixels are not read).
///
/// # Errors
/// Those of [`load_idx`] for the headers and the labels.
pub(crate) fn idx_shape(images: &Path, labels: &Path) -> Result<IdxShape> {
    let mut ir = open(images)?;
    let (n, h, w) = image_header(&mut *ir, images)?;
    let mut lr = open(labels)?;
    let count = header(&mut *lr, labels, LABELS_MAGIC, 1)?[0] as usize;
    let mut label_counts = vec![0usize; 256];
    let mut buf = vec![0u8; 1 << 16];
    let mut left = count;
    while left > 0 {
        let take = left.min(buf.len());
        read_exact(&mut *lr, &mut buf[..take], labels, "labels")?;
        for &l in &buf[..take] {
            label_counts[l as usize] += 1;
        }
        left -= take;
    }
    Ok(IdxShape {
        images: n,
        size: (h, w),
        labels: count,
        label_counts,
    })
}

/// Reads an IDX image file without labels: every image labelled 0 of one class `unlabelled`
/// (what a prediction scores, as [`crate::load_files`] gives for image files).
///
/// # Errors
/// [`Error::Read`] for I/O and corrupt gzip streams, [`Error::Format`] for a file that is not
/// IDX u8 images (wrong magic number), a truncated file, absurd declared sizes or empty images;
/// [`Error::Budget`] when the images do not fit in the memory budget. Every error names the
/// file.
pub fn load_idx_images(images: &Path) -> Result<ImageSet> {
    let mut ir = open(images)?;
    let (n, h, w) = image_header(&mut *ir, images)?;
    crate::set::check_set_memory(
        &format!("the IDX images of `{}`", images.display()),
        n,
        (h, w, 1),
        "fewer images",
    )?;
    let mut pixels = vec![0u8; n * h * w];
    read_exact(&mut *ir, &mut pixels, images, "pixel data")?;
    ImageSet::new(h, w, 1, pixels, vec![0; n], vec!["unlabelled".into()])
}

/// The header of an IDX image file: `(images, height, width)`, both sides > 0.
fn image_header(r: &mut dyn Read, path: &Path) -> Result<(usize, usize, usize)> {
    let d = header(r, path, IMAGES_MAGIC, 3)?;
    let (n, h, w) = (d[0] as usize, d[1] as usize, d[2] as usize);
    if h == 0 || w == 0 {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: format!("images of size {h}x{w}: expected both dimensions > 0"),
        });
    }
    Ok((n, h, w))
}

fn check_classes(cl: &[u32]) -> Result<()> {
    if cl.is_empty() {
        return Err(Error::Config(
            "`classes` is empty: list at least one class".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for &c in cl {
        if !seen.insert(c) {
            return Err(Error::Config(format!("`classes` lists {c} twice")));
        }
    }
    Ok(())
}

/// Writes `set` as gzip IDX files `images` and `labels`, atomically. Colour sets are refused
/// (IDX images here are grey).
///
/// # Errors
/// [`Error::Shape`] for colour images or more than 256 classes; [`Error::Write`] on I/O errors.
pub fn write_idx(set: &ImageSet, images: &Path, labels: &Path) -> Result<()> {
    if set.c() != 1 {
        return Err(Error::Shape {
            op: "write_idx",
            message: format!("IDX export needs grey images, found {} channels", set.c()),
        });
    }
    if set.class_names().len() > 256 {
        return Err(Error::Shape {
            op: "write_idx",
            message: format!("IDX labels are bytes: {} classes", set.class_names().len()),
        });
    }
    let gz = |path: &PathBuf, header: Vec<u8>, body: Vec<u8>| -> Result<()> {
        whet_core::fsx::atomic_write_with(path, |w| {
            let mut e = GzEncoder::new(w, Compression::new(6));
            e.write_all(&header).map_err(whet_core::fsx::io_err(path))?;
            e.write_all(&body).map_err(whet_core::fsx::io_err(path))?;
            e.finish().map_err(whet_core::fsx::io_err(path))?;
            Ok::<(), Error>(())
        })
    };
    let n = set.len() as u32;
    let mut ih = IMAGES_MAGIC.to_be_bytes().to_vec();
    for d in [n, set.h() as u32, set.w() as u32] {
        ih.extend_from_slice(&d.to_be_bytes());
    }
    gz(&images.to_path_buf(), ih, set.pixels().to_vec())?;
    let mut lh = LABELS_MAGIC.to_be_bytes().to_vec();
    lh.extend_from_slice(&n.to_be_bytes());
    gz(
        &labels.to_path_buf(),
        lh,
        set.labels().iter().map(|&l| l as u8).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn huge_declared_dimensions_are_refused_without_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let (pi, pl) = (dir.path().join("i"), dir.path().join("l"));
        // Found by whet-fuzz: the product of three u32 dimensions overflowed u64.
        let max = u32::MAX;
        std::fs::write(&pi, idx(IMAGES_MAGIC, &[max, max, max], &[])).unwrap();
        std::fs::write(&pl, idx(LABELS_MAGIC, &[max], &[])).unwrap();
        let e = load_idx(&pi, &pl, None, None).unwrap_err().to_string();
        assert!(e.contains("more than the limit"), "{e}");
        std::fs::write(&pi, idx(IMAGES_MAGIC, &[1, 100_000, 100_000], &[])).unwrap();
        std::fs::write(&pl, idx(LABELS_MAGIC, &[1], &[0])).unwrap();
        let e = load_idx(&pi, &pl, None, None).unwrap_err().to_string();
        assert!(e.contains("1 x 100000 x 100000 = 10000000000 bytes"), "{e}");
    }

    #[test]
    fn images_without_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i");
        std::fs::write(&p, idx(IMAGES_MAGIC, &[2, 1, 2], &[1, 2, 3, 4])).unwrap();
        let set = load_idx_images(&p).unwrap();
        assert_eq!((set.len(), set.shape()), (2, (1, 2, 1)));
        assert_eq!(
            (set.image(1), set.labels()),
            (&[3u8, 4][..], &[0u32, 0][..])
        );
        std::fs::write(&p, idx(IMAGES_MAGIC, &[2, 1, 2], &[1, 2, 3])).unwrap();
        let e = load_idx_images(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&p, idx(LABELS_MAGIC, &[1], &[0])).unwrap();
        let e = load_idx_images(&p).unwrap_err().to_string();
        assert!(e.contains("wrong magic number"), "{e}");
    }
}
