//! Reads the first `limit` images/labels of a gzipped IDX file (the MNIST format).

use flate2::read::GzDecoder;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `datasets/mnist/<name>` of the repository.
pub fn mnist_path(name: &str) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../datasets/mnist")
    .join(name)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// Images as rows of `rows * cols` bytes, at most `limit` of them.
pub fn images(path: &Path, limit: usize) -> io::Result<(Vec<u8>, usize, usize)> {
    let mut r = GzDecoder::new(File::open(path)?);
    let magic = read_u32(&mut r)?;
    if magic != 0x0803 {
        return Err(io::Error::other(format!(
            "{}: magic {magic:#x}, expected 0x803",
            path.display()
        )));
    }
    let n = read_u32(&mut r)? as usize;
    let (h, w) = (read_u32(&mut r)? as usize, read_u32(&mut r)? as usize);
    let n = n.min(limit);
    let mut buf = vec![0u8; n * h * w];
    r.read_exact(&mut buf)?;
    Ok((buf, n, h * w))
}

/// Labels, at most `limit`.
pub fn labels(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let mut r = GzDecoder::new(File::open(path)?);
    let magic = read_u32(&mut r)?;
    if magic != 0x0801 {
        return Err(io::Error::other(format!(
            "{}: magic {magic:#x}, expected 0x801",
            path.display()
        )));
    }
    let n = (read_u32(&mut r)? as usize).min(limit);
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// `(x, y)`: pixels scaled to [0, 1] and one-hot labels, first `limit` samples of the split
/// (`train` or `t10k`), keeping only labels in `keep`, relabelled to their index in `keep`.
pub fn load(
    split: &str,
    limit: usize,
    keep: &[u8],
) -> (ndarray::Array2<f32>, ndarray::Array2<f32>) {
    let (px, n, d) =
        images(&mnist_path(&format!("{split}-images-idx3-ubyte.gz")), limit).expect("images");
    let lab = labels(&mnist_path(&format!("{split}-labels-idx1-ubyte.gz")), limit).expect("labels");
    let rows: Vec<usize> = (0..n).filter(|&i| keep.contains(&lab[i])).collect();
    let mut x = ndarray::Array2::zeros((rows.len(), d));
    let mut y = ndarray::Array2::zeros((rows.len(), keep.len()));
    for (k, &i) in rows.iter().enumerate() {
        for j in 0..d {
            x[[k, j]] = f32::from(px[i * d + j]) / 255.0;
        }
        let c = keep.iter().position(|&l| l == lab[i]).expect("kept");
        y[[k, c]] = 1.0;
    }
    (x, y)
}
