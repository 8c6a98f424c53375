//! Image loading, augmentation, input noise, previews and export for whet.
//!
//! - [`ImageSet`]: `n` images of `h × w × c` bytes with labels and class names, loaded from MNIST
//!   IDX files ([`load_idx`]), class folders ([`load_folder`]) or shards ([`ShardSource`]:
//!   WebDataset tar files, Parquet through a [`ParquetShards`]), or through the `data.images`
//!   config ([`ImagesConfig`], [`load_train_test`]); split with
//!   [`ImageSet::split_stratified`].
//! - [`AugmentConfig`] (YAML key `augment`) builds an [`Augmenter`], which expands a set offline
//!   ([`Augmenter::expand`]) or fills normalised `f32` batches online in parallel
//!   ([`Augmenter::fill`]). Every sample's randomness comes from
//!   `whet_core::rng::stream(seed, &[1, epoch, sample, op])`, so results do not depend on threads.
//! - [`write_preview`] draws a labelled grid of originals and augmented versions;
//!   [`write_png_folders`] and [`write_idx`] export a set.
//!
//! ```
//! use whet_image::{Augmenter, AugmentConfig, ImageSet, Normalizer};
//! let cfg: AugmentConfig = serde_json::from_str(
//!     r#"{ "ops": [ { "rotate": { "degrees": 10 } }, { "gaussian_noise": { "std": 0.05 } } ] }"#,
//! ).unwrap();
//! let set = ImageSet::new(4, 4, 1, vec![128; 32], vec![0, 1], vec!["a".into(), "b".into()]).unwrap();
//! let aug = Augmenter::new(&cfg, 42, 4, 4, 1).unwrap();
//! let mut x = vec![0.0f32; 2 * 16];
//! let mut y = vec![0u32; 2];
//! aug.fill(&set, &Normalizer::unit(1), 0, &[0, 1], &mut x, &mut y).unwrap();
//! assert_eq!(y, [0, 1]);
//! ```

// Pixel kernels index several parallel slices (source, destination, weights) by channel.
#![allow(clippy::needless_range_loop)]

mod antialias;
mod augment;
mod buf;
mod builder;
mod check;
pub mod color;
mod error;
mod folder;
pub mod geometric;
mod idx;
pub mod noise;
mod online;
mod preview;
mod set;
mod shards;
mod simd;
mod source;
mod stream;

pub use augment::{
    AugmentConfig, AugmentMode, Augmenter, OneOfConfig, OpConfig, Scratch, SomeOfConfig,
};
pub use buf::{Img, View};
pub use check::check_images;
pub use error::{Error, Result};
pub use folder::{
    FolderLoad, FolderOptions, Grey, IMAGE_EXTENSIONS, MAX_IMAGE_FILE_BYTES, SkipKind, Skipped,
    image_files, is_image_file, load_files, load_folder, skipped_warnings, write_png_folders,
};
pub use idx::{MAX_DECLARED_BYTES, load_idx, load_idx_images, write_idx};
pub use online::AugmentSource;
pub use preview::{MIN_CELL, render_preview, write_preview};
pub use set::{ImageSet, NormalizeKind, Normalizer, PixelStats, set_bytes, validation_mask};
pub use shards::{
    EncodedImage, NoParquet, ParquetShards, Shard, ShardFormat, ShardSource, ShardWriter,
    count_webdataset, decode_images, encode_pngs, encode_pngs_range, plan_shards, read_shard,
    read_webdataset, shard_files, shard_name, write_shards, write_webdataset,
};
pub use source::{
    FolderSource, IdxFiles, ImageSourceConfig, ImagesConfig, TrainTest, load_test, load_train_test,
};
pub use stream::{ShardIndex, ShardSet, ShardStream};
