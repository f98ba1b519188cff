//! The drivers sweep: every driver of the core — the streaming engine over the in-memory
//! backend (many block sizes, 1 and 2 threads), the in-memory driver (1 and 2 threads) and
//! its per-chunk steps (chunks of 1, 7 and all rows) — gives the same bits on the same cases,
//! and CSC input gives exactly what the same matrix stored as CSR gives (scanpy's `tocsr()`).

use std::collections::BTreeSet;

use atlasnorm_core::engine::in_memory::{self, chunk, CsrRef, Indices};
use atlasnorm_core::engine::{normalize_stores, uns_log1p};
use atlasnorm_core::memory::{layouts_of, MemoryInput, MemoryMatrix, MemoryOutput, Written};
use atlasnorm_core::{Params, Silent};
use proptest::prelude::*;

fn try_run(matrix: &MemoryMatrix, opts: &Params) -> Result<Written, String> {
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

fn run(matrix: &MemoryMatrix, opts: &Params) -> Written {
    try_run(matrix, opts).unwrap()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn f32_bits(v: &[f32]) -> Vec<u64> {
    v.iter().map(|x| u64::from(x.to_bits())).collect()
}

fn f32_data(m: &MemoryMatrix) -> &[f32] {
    match &m.data {
        atlasnorm_core::array::NumVec::F32(v) => v,
        other => panic!("f32 test data, not {:?}", other.dtype()),
    }
}

/// The in-memory driver on a CSR (or dense) matrix: (data bits, factor bits) or the error.
fn in_memory_run(
    m: &MemoryMatrix,
    params: &Params,
    threads: usize,
) -> Result<(Vec<u64>, Vec<u64>), String> {
    pool(threads).install(|| {
        let data = f32_data(m);
        let n_vars = m.meta.n_vars as usize;
        if m.indptr.is_empty() {
            let mut out = data.to_vec();
            let (fitted, _) =
                in_memory::normalize_dense(&mut out, n_vars, params).map_err(|e| e.to_string())?;
            return Ok((f32_bits(&out), f32_bits(&fitted.factors)));
        }
        let csr = CsrRef {
            n_vars,
            indptr: &m.indptr,
            indices: Indices::I64(&m.indices),
            data,
        };
        let mut out = vec![0f32; data.len()];
        let (fitted, _) =
            in_memory::normalize_csr(&csr, &mut out, params).map_err(|e| e.to_string())?;
        Ok((f32_bits(&out), f32_bits(&fitted.factors)))
    })
}

/// The per-chunk steps over chunks of `rows` rows, as a task scheduler would run them.
fn chunked_run(
    m: &MemoryMatrix,
    params: &Params,
    rows: usize,
) -> Result<(Vec<u64>, Vec<u64>), String> {
    let data = f32_data(m);
    let n_obs = m.meta.n_obs as usize;
    let n_vars = m.meta.n_vars as usize;
    let dense = m.indptr.is_empty();
    let starts: Vec<usize> = (0..n_obs).step_by(rows.max(1)).collect();
    let span = |s: usize| s..(s + rows).min(n_obs);
    // A chunk: its rebased indptr and its value range.
    let piece = |s: usize| {
        let r = span(s);
        if dense {
            return (Vec::new(), r.start * n_vars..r.end * n_vars);
        }
        let lo = m.indptr[r.start];
        let ptr: Vec<i64> = m.indptr[r.start..=r.end].iter().map(|p| p - lo).collect();
        (ptr, lo as usize..m.indptr[r.end] as usize)
    };
    // The chunk's CSR view over its rebased indptr and its values.
    fn view<'a>(
        m: &'a MemoryMatrix,
        data: &'a [f32],
        ptr: &'a [i64],
        vals: std::ops::Range<usize>,
    ) -> CsrRef<'a, f32> {
        CsrRef {
            n_vars: m.meta.n_vars as usize,
            indptr: ptr,
            indices: Indices::I64(&m.indices[vals.clone()]),
            data: &data[vals],
        }
    }
    let err = |e: atlasnorm_core::Error| e.to_string();
    let mut totals = Vec::new();
    for &s in &starts {
        let (ptr, vals) = piece(s);
        totals.extend(if dense {
            chunk::dense_totals(&data[vals], n_vars)
        } else {
            let c = view(m, data, &ptr, vals);
            chunk::csr_totals(&c).map_err(err)?
        });
    }
    let mut mask = None;
    if params.exclude_highly_expressed {
        let mut all = vec![false; n_vars];
        for &s in &starts {
            let (ptr, vals) = piece(s);
            let t = &totals[span(s)];
            let one = if dense {
                chunk::dense_mask(&data[vals], n_vars, t, params.max_fraction)
            } else {
                let c = view(m, data, &ptr, vals);
                chunk::csr_mask(&c, t, params.max_fraction).map_err(err)?
            };
            chunk::merge_masks(&mut all, &one);
        }
        let mut kept = Vec::new();
        for &s in &starts {
            let (ptr, vals) = piece(s);
            kept.extend(if dense {
                chunk::dense_totals_kept(&data[vals], n_vars, &all, n_obs)
            } else {
                let c = view(m, data, &ptr, vals);
                chunk::csr_totals_kept(&c, &all).map_err(err)?
            });
        }
        totals = kept;
        mask = Some(all);
    }
    let fitted = in_memory::finish_fit(totals, mask.as_deref(), params);
    let mut out = Vec::new();
    for &s in &starts {
        let (ptr, vals) = piece(s);
        let mut values = data[vals].to_vec();
        let factors = &fitted.factors[span(s)];
        if dense {
            chunk::dense_apply(&mut values, n_vars, factors, params);
        } else {
            chunk::csr_apply(&ptr, &mut values, factors, params).map_err(err)?;
        }
        out.extend(values);
    }
    Ok((f32_bits(&out), f32_bits(&fitted.factors)))
}

/// The streaming engine's result in the drivers' terms.
fn streamed(r: &Result<Written, String>) -> Option<(Vec<u64>, Vec<u64>)> {
    r.as_ref().ok().map(|w| {
        let factors = w
            .obs_bits()
            .into_iter()
            .find(|(k, _)| k == "f")
            .map(|(_, b)| b)
            .unwrap_or_default();
        (w.data_bits(), factors)
    })
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
        let base = Params {
            target_sum: fixed.then_some(1e4),
            exclude_highly_expressed: exclude,
            max_fraction: 0.2,
            key_added: Some("f".into()),
            log1p,
            ..Params::default()
        };
        // Blocks of at most 97 values: most cases take many blocks.
        let small = Params { max_block_values: Some(97), threads: Some(2), ..base.clone() };
        let one_block = Params { memory: 1 << 30, threads: Some(1), ..base.clone() };
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
            let uns = if log1p {
                vec![("log1p".to_string(), uns_log1p(None))]
            } else {
                vec![]
            };
            prop_assert_eq!(&a.uns, &uns);
        }
        // Dense: same output whatever the blocks (dense log1p never refuses, as in scanpy).
        let d1 = run(&dense, &one_block);
        let d2 = run(&dense, &small);
        prop_assert_eq!(d1.data_bits(), d2.data_bits());
        prop_assert_eq!(d1.data_bits().len(), n_obs * n_vars);

        // Every other driver, on CSR and dense: the same bits, or an error where the
        // streaming engine refused.
        let d1 = Ok(d1);
        for (matrix, reference) in [(&csr, &a), (&dense, &d1)] {
            let want = streamed(reference);
            for threads in [1, 2] {
                let got = in_memory_run(matrix, &base, threads);
                prop_assert_eq!(got.as_ref().ok(), want.as_ref(), "in memory, {} threads: {:?}", threads, got.as_ref().err());
            }
            for rows in [1, 7, n_obs] {
                let got = chunked_run(matrix, &base, rows);
                prop_assert_eq!(got.as_ref().ok(), want.as_ref(), "chunks of {} rows: {:?}", rows, got.as_ref().err());
            }
        }
    }
}

#[test]
fn obs_factor_is_total_over_target() {
    // Two cells: totals 3 and 5, median 4 -> factors 0.75 and 1.25.
    let (csr, _, _) = layouts_of(2, 3, &[(0, 0, 1.0), (0, 2, 2.0), (1, 1, 5.0)]);
    let opts = Params {
        key_added: Some("f".into()),
        log1p: false,
        ..Params::default()
    };
    let w = run(&csr, &opts);
    assert_eq!(
        w.obs,
        vec![(
            "f".to_string(),
            atlasnorm_core::array::NumVec::F32(vec![0.75, 1.25])
        )]
    );
    assert_eq!(
        w.data,
        vec![atlasnorm_core::array::NumVec::F32(vec![
            1.0 / 0.75,
            2.0 / 0.75,
            4.0
        ])]
    );
}
