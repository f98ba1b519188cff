//! The floor for a zarr-to-zarr normalize: decode and re-encode one array with its own codec.
//!
//! Opens `IN_STORE/ARRAY` (default `X/data`) with `zarrs`, reads every chunk (every shard when
//! the array is sharded) and writes it, decoded and encoded again, to `OUT_STORE/ARRAY` with
//! identical metadata. Chunks/shards are processed in parallel on rayon, one worker per unit,
//! so no two workers touch one object; inside a unit zarrs parallelizes its codecs itself (a
//! shard's inner chunks). Nothing is computed on the values: this is what any job that rewrites
//! `X/data` with the same codec must at least pay.
//!
//! ```sh
//! cargo run --release --example zarr_recode -- IN.zarr OUT.zarr [ARRAY]
//! ```
//!
//! Prints one line: units, elements, bytes decoded, and the time split into metadata, chunk
//! retrieval + decode (summed over workers) and encode + store (summed over workers), so that a
//! slow store can be told from a slow codec.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use zarrs::array::{Array, ArrayBytes};
use zarrs::filesystem::FilesystemStore;

type Err = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Err> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output, array_path) = match args.as_slice() {
        [_, i, o] => (i, o, "X/data"),
        [_, i, o, a] => (i, o, a.as_str()),
        _ => return Err("usage: zarr_recode IN.zarr OUT.zarr [ARRAY (default X/data)]".into()),
    };
    let start = Instant::now();
    let node = format!("/{}", array_path.trim_matches('/'));
    let src_store = Arc::new(FilesystemStore::new(input)?);
    std::fs::create_dir_all(output)?;
    let dst_store = Arc::new(FilesystemStore::new(output)?);

    let src = Array::open(src_store, &node)?;
    let dst = Array::new_with_metadata(dst_store, &node, src.metadata().clone())?;
    dst.store_metadata()?;
    let setup = start.elapsed();

    // Every unit of the chunk grid (the shard grid for a sharded v3 array), in C order.
    let grid = src.chunk_grid_shape().to_vec();
    let n_units: u64 = grid.iter().product();
    let unit_index = |mut k: u64| {
        let mut idx = vec![0u64; grid.len()];
        for (d, &g) in grid.iter().enumerate().rev() {
            idx[d] = k % g;
            k /= g;
        }
        idx
    };
    let read_ns = AtomicU64::new(0);
    let write_ns = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    (0..n_units)
        .into_par_iter()
        .try_for_each(|k| -> Result<(), Err> {
            let idx = unit_index(k);
            let t = Instant::now();
            let decoded: ArrayBytes = src.retrieve_chunk(&idx)?;
            read_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            bytes.fetch_add(decoded.size() as u64, Ordering::Relaxed);
            let t = Instant::now();
            dst.store_chunk(&idx, decoded)?;
            write_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            Ok(())
        })?;

    let total = start.elapsed().as_secs_f64();
    let decoded = bytes.load(Ordering::Relaxed);
    println!(
        "recode {input}/{array_path}: {n_units} units (grid {grid:?}), {:.1} MiB decoded, \
         {} threads; wall {total:.3} s (setup {:.3} s; summed over workers: retrieve+decode \
         {:.3} s, encode+store {:.3} s); {:.0} MiB/s decoded",
        decoded as f64 / (1 << 20) as f64,
        rayon::current_num_threads(),
        setup.as_secs_f64(),
        read_ns.load(Ordering::Relaxed) as f64 * 1e-9,
        write_ns.load(Ordering::Relaxed) as f64 * 1e-9,
        decoded as f64 / (1 << 20) as f64 / total,
    );
    Ok(())
}
