//! Checks of the image sources against the files, made before a run (`whet validate` and the
//! load of every run file) without decoding any image: IDX headers and label counts, image
//! folders' class sub-folders and file names. Each problem is an [`Issue`](whet_core::Issue)
//! at the key path (relative to `data.images`) of the setting it concerns, so it is reported
//! with the run file's line; what only decoding can tell (a corrupt file) is left to the load.

use crate::folder::is_image_file;
use crate::idx::idx_shape;
use crate::source::{ImageSourceConfig, ImagesConfig};
use std::path::{Path, PathBuf};
use whet_core::Issues;

/// What one source holds, as far as a check can tell without decoding.
struct Found {
    /// IDX: `(height, width)`; folders: none (images are resized).
    size: Option<(usize, usize)>,
    /// Class names in label order (IDX: the label values present, as text; folders: the
    /// sub-folder names).
    classes: Vec<String>,
    /// Images per class, in the order of `classes`.
    counts: Vec<usize>,
}

/// Issues of `cfg` against its files (key paths relative to `data.images`): unreadable or
/// malformed IDX headers, image and label counts that differ, folders without class
/// sub-folders or without image files, `classes` that select nothing, test images of another
/// size than the training images, and test class folders that differ from the training ones
/// (classes are matched by position).
pub fn check_images(cfg: &ImagesConfig) -> Issues {
    let mut issues = Issues::new();
    let Some(train) = check_source(&cfg.train, "train", &mut issues) else {
        return issues;
    };
    check_class_names(
        &cfg.train,
        "train",
        &train,
        cfg.classes.as_deref(),
        &mut issues,
    );
    if let Some(classes) = &cfg.classes {
        let (what, n) = if cfg.train.idx.is_some() {
            ("label value", 256)
        } else {
            ("class folder index", train.classes.len())
        };
        for (k, &c) in classes.iter().enumerate() {
            let images = if cfg.train.idx.is_some() {
                train
                    .classes
                    .iter()
                    .position(|name| *name == c.to_string())
                    .map_or(0, |i| train.counts[i])
            } else {
                train.counts.get(c as usize).copied().unwrap_or(0)
            };
            if (c as usize) >= n || images == 0 {
                issues.push(
                    format!("classes[{k}]"),
                    format!(
                        "{what} {c} has no training image; the training images have the \
                         classes {}",
                        describe(&train, cfg.train.idx.is_some())
                    ),
                );
            }
        }
    }
    let Some(test_cfg) = &cfg.test else {
        return issues;
    };
    let Some(test) = check_source(test_cfg, "test", &mut issues) else {
        return issues;
    };
    check_class_names(test_cfg, "test", &test, cfg.classes.as_deref(), &mut issues);
    if let (Some(a), Some(b)) = (train.size, test.size)
        && a != b
    {
        issues.push(
            "test.idx.images",
            format!(
                "the test images are {}x{} but the training images {}x{}: a network takes one size",
                b.0, b.1, a.0, a.1
            ),
        );
    }
    if test_cfg.folder.is_some() && cfg.train.folder.is_some() && test.classes != train.classes {
        issues.push(
            "test.folder.path",
            format!(
                "the test class folders {:?} differ from the training class folders {:?}: \
                 classes are matched by position, so give the test set the same class \
                 sub-folders (an empty folder keeps a class's place)",
                test.classes, train.classes
            ),
        );
    }
    if cfg.train.idx.is_some() && test_cfg.idx.is_some() {
        for (name, &n) in test.classes.iter().zip(&test.counts) {
            if n > 0 && !train.classes.contains(name) {
                issues.push(
                    "test.idx.labels",
                    format!(
                        "the test labels have the value {name} ({n} images), which no training \
                         image has (training labels: {})",
                        train.classes.join(", ")
                    ),
                );
            }
        }
    }
    issues
}

/// An IDX source's `class_names` must name every label the run keeps: the labels `classes`
/// keeps, or else every label value in the file.
fn check_class_names(
    src: &ImageSourceConfig,
    key: &str,
    found: &Found,
    classes: Option<&[u32]>,
    issues: &mut Issues,
) {
    let Some(idx) = &src.idx else { return };
    let Some(names) = &idx.class_names else {
        return;
    };
    let top = match classes {
        Some(cl) => cl.iter().copied().max(),
        None => found
            .classes
            .iter()
            .filter_map(|c| c.parse::<u32>().ok())
            .max(),
    };
    let Some(top) = top else { return };
    if top as usize >= names.len() {
        let why = match classes {
            Some(_) => format!("`classes` keeps label {top}"),
            None => format!("`{}` holds labels up to {top}", idx.labels.display()),
        };
        issues.push(
            format!("{key}.idx.class_names"),
            format!(
                "{why}, but {} name(s) are given, for labels 0 to {}; give one name per label \
                 (0 to {top} at least)",
                names.len(),
                names.len().saturating_sub(1)
            ),
        );
    }
}

/// Checks one source; `None` when it cannot be read far enough to compare it with another.
fn check_source(src: &ImageSourceConfig, key: &str, issues: &mut Issues) -> Option<Found> {
    if let Some(idx) = &src.idx {
        return match idx_shape(&idx.images, &idx.labels) {
            Err(e) => {
                let which = if e.to_string().contains(&idx.labels.display().to_string()) {
                    "labels"
                } else {
                    "images"
                };
                issues.push(format!("{key}.idx.{which}"), e.to_string());
                None
            }
            Ok(s) if s.images != s.labels => {
                issues.push(
                    format!("{key}.idx.labels"),
                    format!(
                        "`{}` has {} labels but `{}` has {} images: give the labels file of \
                         these images",
                        idx.labels.display(),
                        s.labels,
                        idx.images.display(),
                        s.images
                    ),
                );
                None
            }
            Ok(s) => {
                let (classes, counts) = s
                    .label_counts
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(l, n)| (l.to_string(), *n))
                    .unzip();
                Some(Found {
                    size: Some(s.size),
                    classes,
                    counts,
                })
            }
        };
    }
    if let Some(shards) = &src.shards {
        // Listing only: counting or decoding is the load's work.
        if let Err(e) = crate::shards::shard_files(&shards.path) {
            issues.push(format!("{key}.shards.path"), e.to_string());
        }
        return None;
    }
    let folder = src.folder.as_ref()?;
    match class_files(&folder.path) {
        Err(message) => {
            issues.push(format!("{key}.folder.path"), message);
            None
        }
        Ok(classes) => {
            let total: usize = classes.iter().map(|(_, f)| f.images).sum();
            if classes.is_empty() {
                issues.push(
                    format!("{key}.folder.path"),
                    format!(
                        "`{}` has no class sub-folder: put each class's images in a sub-folder \
                         named after the class (`{}/cat/001.png`)",
                        folder.path.display(),
                        folder.path.display()
                    ),
                );
                return None;
            }
            if total == 0 {
                let mut others: Vec<String> = classes
                    .iter()
                    .flat_map(|(_, f)| f.other_extensions.iter().cloned())
                    .collect();
                others.sort();
                others.dedup();
                let seen = if others.is_empty() {
                    "they hold no files".to_string()
                } else {
                    format!("the files there end in {}", others.join(", "))
                };
                issues.push(
                    format!("{key}.folder.path"),
                    format!(
                        "the class folders of `{}` hold no image file the loader reads ({}); \
                         {seen}",
                        folder.path.display(),
                        crate::folder::supported(),
                    ),
                );
                return None;
            }
            Some(Found {
                size: None,
                counts: classes.iter().map(|(_, f)| f.images).collect(),
                classes: classes.into_iter().map(|(c, _)| c).collect(),
            })
        }
    }
}

/// What a class folder holds.
struct ClassFiles {
    images: usize,
    /// Extensions of the other files (`.txt`), for the message when no image is found.
    other_extensions: Vec<String>,
}

/// The class sub-folders of `root` in the loader's order (whet's own output folders left out),
/// named as the loader names them, with their image files counted.
fn class_files(root: &Path) -> Result<Vec<(String, ClassFiles)>, String> {
    if !root.is_dir() {
        return Err(if root.exists() {
            format!("`{}` is not a folder", root.display())
        } else {
            format!("the folder `{}` does not exist", root.display())
        });
    }
    let list = |dir: &Path| -> Result<Vec<PathBuf>, String> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| format!("listing `{}`: {e}", dir.display()))? {
            v.push(
                e.map_err(|e| format!("listing `{}`: {e}", dir.display()))?
                    .path(),
            );
        }
        v.sort();
        Ok(v)
    };
    let mut out = Vec::new();
    for dir in list(root)?
        .into_iter()
        .filter(|p| p.is_dir() && !whet_core::outputs::is_output_folder(p))
    {
        let folder = dir.file_name().unwrap_or_default().to_string_lossy();
        let name = whet_core::names::decode_component(&folder).unwrap_or_else(|| folder.into());
        let mut files = ClassFiles {
            images: 0,
            other_extensions: Vec::new(),
        };
        for f in list(&dir)?.into_iter().filter(|p| p.is_file()) {
            if is_image_file(&f) {
                files.images += 1;
            } else if let Some(e) = f.extension() {
                files
                    .other_extensions
                    .push(format!(".{}", e.to_string_lossy()));
            }
        }
        out.push((name, files));
    }
    Ok(out)
}

/// The classes of a training source, for messages.
fn describe(found: &Found, idx: bool) -> String {
    found
        .classes
        .iter()
        .zip(&found.counts)
        .enumerate()
        .map(|(i, (c, n))| {
            if idx {
                format!("{c} ({n} images)")
            } else {
                format!("{i} = `{c}` ({n} images)")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::write_png_folders;
    use crate::idx::write_idx;
    use crate::set::ImageSet;
    use crate::source::FolderSource;

    /// `n` 4x4 grey images with `labels`, class names `0..=max`.
    fn set(labels: &[u32], side: usize) -> ImageSet {
        let k = labels.iter().max().map_or(1, |m| m + 1);
        ImageSet::new(
            side,
            side,
            1,
            vec![7; labels.len() * side * side],
            labels.to_vec(),
            (0..k).map(|c| c.to_string()).collect(),
        )
        .unwrap()
    }

    fn idx(dir: &Path, name: &str, s: &ImageSet) -> ImageSourceConfig {
        let (i, l) = (dir.join(format!("{name}-i")), dir.join(format!("{name}-l")));
        write_idx(s, &i, &l).unwrap();
        ImageSourceConfig::idx(i, l)
    }

    fn paths(is: &Issues) -> Vec<String> {
        is.iter().map(|i| i.path.clone()).collect()
    }

    #[test]
    fn matching_idx_files_have_no_issue_and_classes_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let train = idx(d.path(), "train", &set(&[0, 1, 2, 1], 4));
        let test = idx(d.path(), "test", &set(&[0, 2], 4));
        let cfg = ImagesConfig::new(train.clone()).with_test(test);
        assert!(check_images(&cfg).is_empty(), "{:?}", check_images(&cfg));
        // Class 7 has no image: the run would train on a class it never sees.
        let is = check_images(&cfg.clone().with_classes([2, 7]));
        assert_eq!(paths(&is), ["classes[1]"]);
        assert!(
            is.0[0].message.contains("0 (1 images), 1 (2 images)"),
            "{}",
            is.0[0].message
        );
    }

    #[test]
    fn idx_mismatches_are_located() {
        let d = tempfile::tempdir().unwrap();
        let train = idx(d.path(), "train", &set(&[0, 1, 1], 4));
        // Labels of another file: 2 labels for 3 images.
        let other = idx(d.path(), "other", &set(&[0, 1], 4));
        let mut bad = train.clone();
        bad.idx.as_mut().unwrap().labels = other.idx.as_ref().unwrap().labels.clone();
        let is = check_images(&ImagesConfig::new(bad));
        assert_eq!(paths(&is), ["train.idx.labels"]);
        assert!(
            is.0[0].message.contains("has 2 labels"),
            "{}",
            is.0[0].message
        );
        // Test images of another size, with a label train never has.
        let test = idx(d.path(), "test", &set(&[0, 3], 5));
        let is = check_images(&ImagesConfig::new(train.clone()).with_test(test));
        assert_eq!(paths(&is), ["test.idx.images", "test.idx.labels"]);
        // Images given as labels: a wrong magic number, at the key that names the file.
        let mut swapped = train;
        let i = swapped.idx.as_ref().unwrap().images.clone();
        swapped.idx.as_mut().unwrap().labels = i;
        let is = check_images(&ImagesConfig::new(swapped));
        assert_eq!(paths(&is), ["train.idx.labels"]);
        assert!(is.0[0].message.contains("magic"), "{}", is.0[0].message);
    }

    #[test]
    fn idx_class_names_must_name_every_label_kept() {
        let dir = tempfile::tempdir().unwrap();
        let train = idx(dir.path(), "tr", &set(&[0, 1, 2, 2], 4));
        let named = |src: &ImageSourceConfig, names: &[&str]| {
            let mut s = src.clone();
            s.idx.as_mut().unwrap().class_names =
                Some(names.iter().map(|n| n.to_string()).collect());
            s
        };
        let ok = ImagesConfig::new(named(&train, &["a", "b", "c"]));
        assert!(check_images(&ok).is_empty(), "{:?}", check_images(&ok));
        let short = ImagesConfig::new(named(&train, &["a", "b"]));
        let is = check_images(&short);
        assert_eq!(paths(&is), ["train.idx.class_names"]);
        assert!(
            is.0[0]
                .message
                .contains("labels up to 2, but 2 name(s) are given"),
            "{}",
            is.0[0].message
        );
        // With `classes`, only the labels kept need names.
        let mut kept = ImagesConfig::new(named(&train, &["a", "b"]));
        kept.classes = Some(vec![0, 1]);
        assert!(check_images(&kept).is_empty(), "{:?}", check_images(&kept));
        kept.classes = Some(vec![0, 2]);
        let is = check_images(&kept);
        assert_eq!(paths(&is), ["train.idx.class_names"]);
        assert!(
            is.0[0].message.contains("`classes` keeps label 2"),
            "{}",
            is.0[0].message
        );
    }

    #[test]
    fn folders_need_classes_images_and_the_same_classes_in_test() {
        let d = tempfile::tempdir().unwrap();
        let mut s = set(&[0, 1, 1], 4);
        s.set_class_names(vec!["cat".into(), "dog".into()]).unwrap();
        write_png_folders(&s, &d.path().join("train")).unwrap();
        let mut t = set(&[0, 1], 4);
        t.set_class_names(vec!["cat".into(), "dogs".into()])
            .unwrap();
        write_png_folders(&t, &d.path().join("test")).unwrap();
        let folder = |p: &str| ImageSourceConfig::folder(FolderSource::new(d.path().join(p), 4, 4));
        let cfg = ImagesConfig::new(folder("train")).with_test(folder("train"));
        assert!(check_images(&cfg).is_empty(), "{:?}", check_images(&cfg));
        let is = check_images(&ImagesConfig::new(folder("train")).with_test(folder("test")));
        assert_eq!(paths(&is), ["test.folder.path"]);
        assert!(is.0[0].message.contains("\"dogs\""), "{}", is.0[0].message);
        // A class index past the folders.
        let is = check_images(&ImagesConfig::new(folder("train")).with_classes([1, 2]));
        assert_eq!(paths(&is), ["classes[1]"]);
        // No folder; a folder of text files.
        let is = check_images(&ImagesConfig::new(folder("nowhere")));
        assert_eq!(paths(&is), ["train.folder.path"]);
        assert!(is.0[0].message.contains("does not exist"));
        std::fs::create_dir_all(d.path().join("notes/a")).unwrap();
        std::fs::write(d.path().join("notes/a/x.txt"), "x").unwrap();
        let is = check_images(&ImagesConfig::new(folder("notes")));
        assert!(
            is.0[0].message.contains("end in .txt"),
            "{}",
            is.0[0].message
        );
        let is = check_images(&ImagesConfig::new(folder("notes/a")));
        assert!(
            is.0[0].message.contains("no class sub-folder"),
            "{}",
            is.0[0].message
        );
    }
}
