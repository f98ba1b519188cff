//! zarr → zarr: peak memory stays within `--memory` + 16 B a cell + a fixed overhead, on a store
//! whose matrix is several times larger than the budget (zarr v3 sharded, and zarr v2).
//!
//! The inputs are made by atlasnorm itself (`normalize big.h5ad in.zarr` with the default 1 GiB
//! budget, so the layout is anndata's: v3 with one ~134 MB shard of `X/data` per 33.5 M values,
//! zstd; v2 with blosc-lz4 chunks). That normalizes the values, which does not matter here: the
//! memory a run takes depends on the layout and nnz, not on the values (the warning "already
//! log-transformed" is expected).
//!
//! Measured (release build, 2 cores, 60,000 cells, 45.6 M stored values, `--memory 32MiB`):
//! peak RSS 63–81 MiB, i.e. 30–48 MiB above budget + 16 B/cell. A reader or sink that held one
//! whole input shard (134 MB of `X/data`) or the whole array (182 MB of data, 182 MB of
//! indices) would exceed the bound below.

use std::path::Path;
use std::process::Command;

use atlasnorm_testkit::rss::peak_rss;

const BIN: &str = env!("CARGO_BIN_EXE_atlasnorm");
const MIB: u64 = 1 << 20;
/// What the budget does not cover: the binary and its libraries mapped in (~12 MiB, HDF5 is
/// linked statically), the runtime and thread stacks, zarrs' codec state (zstd/blosc contexts,
/// one shard index per open array, the chunk being decoded by each worker besides the budgeted
/// block buffers) and the raw copies of untouched arrays (`indices`, `indptr`, obs/var), which
/// go through memory one encoded chunk at a time. Measured 30–48 MiB; 64 MiB as in
/// `tests/memory_bound.rs`, which is still below the size of one input shard (134 MB).
const FIXED_OVERHEAD: u64 = 64 * MIB;
const CELLS: u64 = 60_000;

fn run(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nnz` of the store's X (the shape of `X/data`), from its zarr metadata.
fn stored_values(store: &Path) -> u64 {
    let dir = store.join("X").join("data");
    let doc = std::fs::read_to_string(dir.join("zarr.json"))
        .or_else(|_| std::fs::read_to_string(dir.join(".zarray")))
        .unwrap();
    let meta: serde_json::Value = serde_json::from_str(&doc).unwrap();
    meta["shape"][0].as_u64().unwrap()
}

fn check(input: &Path, extra: &[&str], budget: u64, dir: &Path) {
    let output = dir.join("out.zarr");
    let peak = peak_rss(
        Command::new(BIN)
            .arg("normalize")
            .arg(input)
            .arg(&output)
            .args([
                "--memory",
                &format!("{}MiB", budget / MIB),
                "--force",
                "--quiet",
            ])
            .args(extra)
            .stderr(std::process::Stdio::null()),
    );
    // float32 data + int32 indices, decoded.
    let matrix_bytes = stored_values(input) * 8;
    let bound = budget + 16 * CELLS + FIXED_OVERHEAD;
    eprintln!(
        "{}: matrix {} MiB decoded, budget {} MiB, peak RSS {:.1} MiB, bound {:.1} MiB ({extra:?})",
        input.file_name().unwrap().to_string_lossy(),
        matrix_bytes / MIB,
        budget / MIB,
        peak as f64 / MIB as f64,
        bound as f64 / MIB as f64
    );
    assert!(
        matrix_bytes > 4 * budget,
        "the matrix must be several times the budget"
    );
    assert!(peak <= bound, "peak RSS {peak} above {bound}");
    assert!(output.join("X").join("data").exists());
    std::fs::remove_dir_all(&output).unwrap();
}

#[test]
fn zarr_peak_rss_stays_within_the_budget_on_a_store_larger_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let h5 = dir.path().join("big.h5ad");
    let (h5s, d) = (h5.to_str().unwrap(), dir.path());
    // ~60k cells × ~760 genes a cell ≈ 45.6 M stored values ≈ 350 MiB decoded (data + indices).
    run(&[
        "synth", h5s, "--cells", "60000", "--genes", "20000", "--umis", "2000", "--seed", "3",
    ]);
    let v3 = d.join("in3.zarr");
    let v2 = d.join("in2.zarr");
    run(&["normalize", h5s, v3.to_str().unwrap(), "--quiet"]);
    run(&[
        "normalize",
        h5s,
        v2.to_str().unwrap(),
        "--zarr-format",
        "2",
        "--quiet",
    ]);
    std::fs::remove_file(&h5).unwrap();
    let budget = 32 * MIB;
    // v3 sharded → v3 (median target: two passes), then the fused one-pass path.
    check(&v3, &[], budget, d);
    check(&v3, &["--target-sum", "1e4"], budget, d);
    // v2 (blosc lz4) → v2.
    check(&v2, &[], budget, d);
}
