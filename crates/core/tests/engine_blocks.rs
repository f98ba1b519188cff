//! The engine's output must not depend on block size or thread count, and CSC input must
//! give exactly what the same matrix stored as CSR gives (scanpy's `tocsr()`).

mod common;

use std::collections::BTreeSet;

use atlasnorm::engine::normalize_stores;
use atlasnorm::{Options, Silent};
use common::memory_store::{layouts_of, MemoryInput, MemoryMatrix, MemoryOutput, Written};
use proptest::prelude::*;

fn try_run(matrix: &MemoryMatrix, opts: &Options) -> Result<Written, String> {
    let input = MemoryInput {
        path: "memory.h5ad".into(),
        matrix: matrix.clone(),
    };
    let out = MemoryOutput::default();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.unwrap_or(1))
        .build()
        .unwrap();
    pool.install(|| normalize_stores(&input, Box::new(out.clone()), opts, &Silent))
        .map_err(|e| e.to_string())?;
    let written = out.0.lock().unwrap().clone();
    assert!(written.committed);
    Ok(written)
}

fn run(matrix: &MemoryMatrix, opts: &Options) -> Written {
    try_run(matrix, opts).unwrap()
}

/// What a run produced, as bits, or the error (which must then be the same everywhere).
type Bits = (Vec<u64>, Vec<(String, Vec<u64>)>);

fn outcome(r: &Result<Written, String>) -> Result<Bits, String> {
    r.as_ref()
        .map(|w| (w.data_bits(), w.obs_bits()))
        .map_err(|e| {
            e.split(" in rows")
                .next()
                .unwrap()
                .split(": ")
                .take(2)
                .collect()
        })
}

/// Random count-like entries, unique positions, some non-integer, some explicit zeros.
fn entries() -> impl Strategy<Value = (usize, usize, Vec<(usize, usize, f32)>)> {
    (1usize..400, 1usize..60).prop_flat_map(|(n_obs, n_vars)| {
        let cells = proptest::collection::vec(
            (
                0..n_obs,
                0..n_vars,
                prop_oneof![8 => 1u32..30, 1 => Just(0u32), 1 => 100u32..5000],
                any::<bool>(),
            ),
            0..(n_obs * n_vars).min(6000),
        );
        cells.prop_map(move |raw| {
            let mut seen = BTreeSet::new();
            let e = raw
                .into_iter()
                .filter(|(r, c, _, _)| seen.insert((*r, *c)))
                .map(|(r, c, v, frac)| (r, c, if frac { v as f32 + 0.37 } else { v as f32 }))
                .collect();
            (n_obs, n_vars, e)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn blocks_threads_and_layouts_do_not_change_a_bit(
        (n_obs, n_vars, e) in entries(),
        exclude in any::<bool>(),
        fixed in any::<bool>(),
        log1p in any::<bool>(),
    ) {
        let (csr, csc, dense) = layouts_of(n_obs, n_vars, &e);
        let base = Options {
            target_sum: fixed.then_some(1e4),
            exclude_highly_expressed: exclude,
            max_fraction: 0.2,
            key_added: Some("f".into()),
            log1p,
            ..Options::default()
        };
        // Blocks of at most 97 values: most cases take many blocks.
        let small = Options { max_block_values: Some(97), threads: Some(2), ..base.clone() };
        let one_block = Options { memory: 1 << 30, threads: Some(1), ..base.clone() };
        let a = try_run(&csr, &one_block);
        let b = try_run(&csr, &small);
        prop_assert_eq!(outcome(&a), outcome(&b));
        // CSC comes out as CSR with the same values, indices and indptr (errors name rows,
        // so only whether it failed is compared).
        let c = try_run(&csc, &small);
        prop_assert_eq!(a.is_ok(), c.is_ok());
        if let (Ok(a), Ok(c)) = (&a, &c) {
            prop_assert_eq!(a.data_bits(), c.data_bits());
            prop_assert_eq!(a.obs_bits(), c.obs_bits());
            prop_assert_eq!(&c.indptr, &csr.indptr);
            prop_assert_eq!(&c.indices, &csr.indices);
            prop_assert_eq!(a.uns_log1p, log1p.then_some(None));
        }
        // Dense: same output whatever the blocks (dense log1p never refuses, as in scanpy).
        let d1 = run(&dense, &one_block);
        let d2 = run(&dense, &small);
        prop_assert_eq!(d1.data_bits(), d2.data_bits());
        prop_assert_eq!(d1.data_bits().len(), n_obs * n_vars);
    }
}

#[test]
fn obs_factor_is_total_over_target() {
    // Two cells: totals 3 and 5, median 4 -> factors 0.75 and 1.25.
    let (csr, _, _) = layouts_of(2, 3, &[(0, 0, 1.0), (0, 2, 2.0), (1, 1, 5.0)]);
    let opts = Options {
        key_added: Some("f".into()),
        log1p: false,
        ..Options::default()
    };
    let w = run(&csr, &opts);
    assert_eq!(
        w.obs,
        vec![(
            "f".to_string(),
            atlasnorm::array::NumVec::F32(vec![0.75, 1.25])
        )]
    );
    assert_eq!(
        w.data,
        vec![atlasnorm::array::NumVec::F32(vec![
            1.0 / 0.75,
            2.0 / 0.75,
            4.0
        ])]
    );
}
