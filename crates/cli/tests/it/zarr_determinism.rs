//! Sharded zarr output is the same bytes on every run: a shard's inner chunks are placed in
//! index order, not in the order their parallel encodes finish.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_atlasnorm");

fn run(args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("cannot run atlasnorm");
    assert!(
        out.status.success(),
        "atlasnorm {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `root` (relative path -> bytes).
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                all.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    all
}

#[test]
fn sharded_zarr_output_bytes_do_not_vary_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.h5ad");
    let p = |x: &Path| x.to_str().unwrap().to_string();
    run(&[
        "synth",
        "--profile",
        "pbmc68k",
        "--cells",
        "3000",
        "--seed",
        "3",
        &p(&input),
    ]);
    let mut outputs = Vec::new();
    for (i, threads) in ["2", "2", "1"].iter().enumerate() {
        let out = dir.path().join(format!("out{i}.zarr"));
        run(&[
            "normalize",
            &p(&input),
            &p(&out),
            "--quiet",
            "--threads",
            threads,
            "--zarr-format",
            "3",
            "--zarr-codec",
            "zstd:3",
            "--zarr-chunk",
            "512",
            "--zarr-shard",
            "65536",
        ]);
        outputs.push(files(&out));
    }
    let first = &outputs[0];
    let shards = first.keys().filter(|k| k.starts_with("X/data/c")).count();
    assert!(
        shards > 1,
        "expected several shards of X/data, got {shards}"
    );
    for (i, other) in outputs.iter().enumerate().skip(1) {
        assert_eq!(
            first.keys().collect::<Vec<_>>(),
            other.keys().collect::<Vec<_>>(),
            "run {i}: other files"
        );
        for (k, bytes) in first {
            assert!(other[k] == *bytes, "run {i}: {} differs", k.display());
        }
    }
}
