//! Parquet image shards for whet-image: its [`ParquetShards`] reader and writer on
//! whet-tabular's Parquet columns ([`whet_tabular::read_image_parquet`]). whet-image reads and
//! writes WebDataset tar shards itself; polars lives in whet-tabular, so this crate wires the
//! Parquet ones.

use std::path::Path;
use whet_image::{EncodedImage, ParquetShards, Shard};

/// whet's [`ParquetShards`]: Hugging Face-style Parquet shards through whet-tabular.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolarsShards;

fn image_err(e: whet_tabular::Error) -> whet_image::Error {
    whet_image::Error::Parquet(Box::new(e))
}

impl ParquetShards for PolarsShards {
    fn count(&self, path: &Path) -> whet_image::Result<usize> {
        whet_tabular::count_image_parquet(path).map_err(image_err)
    }

    fn read(&self, path: &Path) -> whet_image::Result<Shard> {
        let rows = whet_tabular::read_image_parquet(path).map_err(image_err)?;
        let images = rows
            .names
            .into_iter()
            .zip(rows.bytes)
            .zip(rows.labels)
            .map(|((name, bytes), label)| EncodedImage { name, bytes, label })
            .collect();
        Ok(Shard {
            images,
            class_names: rows.class_names,
        })
    }

    fn write(
        &self,
        path: &Path,
        images: &[EncodedImage],
        class_names: Option<&[String]>,
    ) -> whet_image::Result<()> {
        let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
        let bytes: Vec<&[u8]> = images.iter().map(|i| i.bytes.as_slice()).collect();
        let labels: Vec<u32> = images.iter().map(|i| i.label).collect();
        whet_tabular::write_image_parquet(path, &names, &bytes, &labels, class_names)
            .map_err(image_err)
    }
}
