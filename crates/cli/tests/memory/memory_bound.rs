//! Peak memory stays within `--memory` + 16 B a cell + a fixed overhead, on an input several
//! times larger than the budget.

use std::path::Path;
use std::process::Command;

use atlasnorm_testkit::rss::peak_rss;

const BIN: &str = env!("CARGO_BIN_EXE_atlasnorm");
const MIB: u64 = 1 << 20;
/// The binary, HDF5 and thread stacks: what the budget does not cover.
const FIXED_OVERHEAD: u64 = 64 * MIB;

fn synth(path: &Path, cells: u64, genes: u64, umis: u64) {
    let status = Command::new(BIN)
        .args([
            "synth",
            path.to_str().unwrap(),
            "--cells",
            &cells.to_string(),
        ])
        .args([
            "--genes",
            &genes.to_string(),
            "--umis",
            &umis.to_string(),
            "--seed",
            "3",
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

fn check(layout_args: &[&str], budget: u64, cells: u64, input: &Path, dir: &Path) {
    let output = dir.join("out.h5ad");
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
            .args(layout_args),
    );
    let input_size = std::fs::metadata(input).unwrap().len();
    let bound = budget + 16 * cells + FIXED_OVERHEAD;
    eprintln!(
        "input {} MiB, budget {} MiB, peak RSS {:.1} MiB, bound {:.1} MiB ({layout_args:?})",
        input_size / MIB,
        budget / MIB,
        peak as f64 / MIB as f64,
        bound as f64 / MIB as f64
    );
    assert!(
        input_size > 4 * budget,
        "the input must be several times the budget"
    );
    assert!(peak <= bound, "peak RSS {peak} above {bound}");
    assert!(output.exists());
}

#[test]
fn peak_rss_stays_within_the_budget_on_an_input_larger_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.h5ad");
    let cells = 60_000;
    // ~60k cells × ~760 genes a cell ≈ 46M stored values ≈ 350 MiB uncompressed.
    synth(&input, cells, 20_000, 2_000);
    let budget = 32 * MIB;
    check(&[], budget, cells, &input, dir.path());
    check(
        &["--exclude-highly-expressed", "--key-added", "f"],
        budget,
        cells,
        &input,
        dir.path(),
    );
    check(&["--target-sum", "1e4"], budget, cells, &input, dir.path());
}
