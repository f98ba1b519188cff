//! Kernel throughput on UMI-like f32 CSR data (DESIGN.md §3): ~70% of stored values are 1, the
//! rest a heavy tail; 1M stored values, ~600 per row. Reported as elements (stored values)/s.
//!
//! `cargo bench --bench kernels -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use atlasnorm_core::kernel::log1p::svml_f32::{self, SimdLevel};
use atlasnorm_core::kernel::scale::{self, TablePolicy};
use atlasnorm_core::kernel::totals;
use atlasnorm_core::kernel::{Log1p, Log1pKernel};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const NNZ: usize = 1_000_000;
const PER_ROW: usize = 600;

struct Umi {
    data: Vec<f32>,
    offsets: Vec<usize>,
    divisors: Vec<f32>,
}

fn umi() -> Umi {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    let data: Vec<f32> = (0..NNZ)
        .map(|_| {
            if rng.gen::<f64>() < 0.7 {
                1.0
            } else {
                // Pareto-like tail starting at 2: most values 2..10, some in the hundreds.
                let u: f64 = rng.gen_range(1e-6..1.0);
                (2.0 * u.powf(-1.0 / 1.3)).floor().min(50_000.0) as f32
            }
        })
        .collect();
    let mut offsets = vec![0usize];
    while *offsets.last().unwrap() < NNZ {
        let len = rng.gen_range(PER_ROW / 2..PER_ROW * 3 / 2);
        offsets.push((offsets.last().unwrap() + len).min(NNZ));
    }
    let rows = offsets.len() - 1;
    let mut tot = vec![0f32; rows];
    totals::csr_row_totals(&data, &offsets, &mut tot);
    let target = atlasnorm_core::kernel::median::median_of_positive(&tot);
    let divisors = tot
        .iter()
        .map(|&t| scale::divisor(scale::factor(t, target)))
        .collect();
    let ones = data.iter().filter(|&&v| v == 1.0).count() as f64 / NNZ as f64;
    let small = data
        .iter()
        .filter(|&&v| v < scale::TABLE_LEN as f32)
        .count() as f64
        / NNZ as f64;
    eprintln!(
        "UMI-like data: {NNZ} values, {rows} rows, {:.1}% ones, {:.2}% below {}; SVML variant {:?}",
        ones * 100.0,
        small * 100.0,
        scale::TABLE_LEN,
        svml_f32::simd_level()
    );
    Umi {
        data,
        offsets,
        divisors,
    }
}

fn kernels(c: &mut Criterion) {
    let u = umi();
    let mut g = c.benchmark_group("umi_f32_csr");
    g.throughput(Throughput::Elements(NNZ as u64));

    let mut out = vec![0f32; u.divisors.len()];
    g.bench_function("csr_totals", |b| {
        b.iter(|| totals::csr_row_totals(black_box(&u.data), &u.offsets, &mut out));
    });
    g.bench_function("csr_totals_sequential_only", |b| {
        b.iter(|| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = totals::sequential_sum(black_box(&u.data[u.offsets[i]..u.offsets[i + 1]]))
                    as f32;
            }
        });
    });

    let mut buf = u.data.clone();
    let mut bench_norm = |name: &str, log: Option<Log1p>, policy: TablePolicy| {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || (),
                |_| {
                    buf.copy_from_slice(&u.data);
                    scale::normalize_csr_rows_with(
                        &mut buf,
                        &u.offsets,
                        &u.divisors,
                        log.as_ref(),
                        policy,
                    );
                },
                BatchSize::SmallInput,
            );
        });
    };
    // Every iteration below first restores the input (a 4 MB copy): see "copy 1M f32".
    let svml = Log1p::new(Log1pKernel::NumpySvml, None);
    let libm = Log1p::new(Log1pKernel::Libm, None);
    bench_norm("divide", None, TablePolicy::Never);
    bench_norm("divide+log1p svml plain", Some(svml), TablePolicy::Never);
    bench_norm("divide+log1p svml table", Some(svml), TablePolicy::Always);
    bench_norm("divide+log1p libm plain", Some(libm), TablePolicy::Never);
    bench_norm("divide+log1p libm table", Some(libm), TablePolicy::Always);

    let mut x = u.data.clone();
    for level in [SimdLevel::Avx512, SimdLevel::Avx2Fma, SimdLevel::Scalar] {
        g.bench_function(format!("log1p svml only {level:?}"), |b| {
            b.iter(|| {
                x.copy_from_slice(&u.data);
                svml_f32::log1p_slice_at(level, &mut x);
            });
        });
    }
    g.bench_function("copy 1M f32", |b| {
        b.iter(|| x.copy_from_slice(black_box(&u.data)));
    });
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
