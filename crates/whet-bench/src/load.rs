//! `whet-bench load`: images per second of whet-image's folder loader on the files
//! `bench/py/make_images.py` writes (one sub-folder per class of PNG or JPEG files).
//!
//! Each repeat is one [`whet_image::load_folder`] call, as `data.images.*.folder` runs it: list
//! the class folders, read every file, decode, convert to RGB (or grey) and resize (bilinear,
//! `image`'s triangle filter, scaled to the downscale factor as PIL's bilinear is) to
//! `--width × --height`, on rayon's pool. The peers (`bench/py/load.py`) loop over the same
//! files with PIL and OpenCV. The files stay in the page cache after the first (reported) pass;
//! the figure is the median of the timed repeats.

use crate::measure::{self, RetryPolicy, round3, timed};
use serde_json::json;
use std::path::PathBuf;
use whet_image::{FolderOptions, Grey, load_folder};

/// Options of `whet-bench load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The folder of class sub-folders (`bench/data/images/<format>` from make_images.py).
    #[arg(long)]
    pub folder: PathBuf,
    /// Output width in pixels.
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// Output height in pixels.
    #[arg(long, default_value_t = 64)]
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    #[arg(long, default_value_t = 3)]
    pub channels: usize,
    /// A label for the record (e.g. `png`, `jpeg`).
    #[arg(long, default_value = "")]
    pub format: String,
}

/// Loads the folder `policy.repeats` times (plus a first pass) and prints one JSON line.
///
/// # Errors
/// whet-image's error for the folder, or a stdout failure.
pub fn run(args: &LoadArgs, threads: usize, policy: RetryPolicy) -> Result<(), String> {
    let opt = FolderOptions {
        width: args.width,
        height: args.height,
        channels: args.channels,
        grey: Grey::Rec601,
        skip_bad: false,
        classes: None,
        limit: None,
    };
    let load = || load_folder(&args.folder, &opt).map_err(|e| e.to_string());
    let (first, m) = timed(load);
    let first = first?;
    let n = first.set.len();
    let checksum: u64 = first.set.pixels().iter().map(|&v| u64::from(v)).sum();
    drop(first);
    let mut failure = None;
    let r = measure::repeat(policy, || {
        let (res, mm) = timed(load);
        match res {
            Ok(l) => drop(std::hint::black_box(l)),
            Err(e) => failure = Some(e),
        }
        (n as f64 / mm.wall, mm)
    });
    if let Some(e) = failure {
        return Err(e);
    }
    measure::emit(&json!({
        "bench": "load",
        "engine": "whet",
        "threads": threads,
        "parallelism": format!("1 process x {threads} rayon thread(s)"),
        "library_threads": { "rayon.current_num_threads": rayon::current_num_threads() },
        "versions": { "whet": env!("CARGO_PKG_VERSION") },
        "format": args.format,
        "folder": args.folder,
        "images": n,
        "output": [args.height, args.width, args.channels],
        "pixel_sum": checksum,
        "unit": "images/s",
        "first_ips": n as f64 / m.wall,
        "first_other_cores": m.other_cores.map(round3),
        "median_ips": r.median(),
        "ips": r.values,
        "other_cores": r.other_json(),
        "retried": r.retried,
        "peak_rss_bytes": measure::peak_rss_bytes(),
    }))
    .map_err(|e| format!("writing the result: {e}"))
}
