//! log1p against numpy's own outputs (src/kernel/testdata, from `scripts/gen_kernel_vectors.py`).

use super::svml_f32::{self, SimdLevel};
use super::svml_f64;
use super::*;
use crate::kernel::testdata::log1p_f32::LOG1P_F32;
use crate::kernel::testdata::log1p_f64::{LN_BASE, LOG1P_F64};

fn column(c: usize) -> Vec<u32> {
    LOG1P_F32.iter().map(|r| r[c]).collect()
}

fn inputs() -> Vec<f32> {
    LOG1P_F32.iter().map(|r| f32::from_bits(r[0])).collect()
}

/// Compares bit patterns and reports the first few mismatches with their inputs.
fn assert_bits_eq(what: &str, xs: &[f32], got: &[f32], want: &[u32]) {
    let bad: Vec<String> = xs
        .iter()
        .zip(got)
        .zip(want)
        .filter(|((_, g), w)| g.to_bits() != **w)
        .take(5)
        .map(|((x, g), w)| {
            format!(
                "x={x:e} ({:#010x}) got {:#010x} want {w:#010x}",
                x.to_bits(),
                g.to_bits()
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} mismatches, e.g. {bad:?}",
        xs.iter()
            .zip(got)
            .zip(want)
            .filter(|((_, g), w)| g.to_bits() != **w)
            .count()
    );
}

#[test]
fn vectors_tell_svml_and_libm_apart() {
    // Guards the other tests: if numpy's two paths agreed on the inputs, an SVML port
    // that secretly called glibc would pass.
    let differ = LOG1P_F32.iter().filter(|r| r[1] != r[4]).count();
    assert!(
        differ > 1000,
        "only {differ} inputs where SVML and libm differ"
    );
    // ... and they include the callout region x >= 2^127, where SVML's scalar routine
    // differs from glibc.
    assert!(LOG1P_F32
        .iter()
        .any(|r| r[0] >= 0x7f00_0000 && r[0] < 0x7f80_0000 && r[1] != r[4]));
}

#[test]
fn svml_scalar_port_matches_numpy() {
    let xs = inputs();
    let got: Vec<f32> = xs.iter().map(|&x| svml_f32::log1pf(x)).collect();
    assert_bits_eq("scalar log1pf", &xs, &got, &column(1));
}

#[test]
fn svml_slice_matches_numpy_at_every_simd_level() {
    let xs = inputs();
    let want = column(1);
    for level in [SimdLevel::Avx512, SimdLevel::Avx2Fma, SimdLevel::Scalar] {
        let have = svml_f32::simd_level();
        let runs = matches!(
            (level, have),
            (SimdLevel::Avx512, SimdLevel::Avx512)
                | (SimdLevel::Avx2Fma, SimdLevel::Avx512 | SimdLevel::Avx2Fma)
                | (SimdLevel::Scalar, _)
        );
        if !runs {
            println!("SKIPPED svml {level:?}: this CPU lacks the features (has {have:?}); tested at lower levels only");
            continue;
        }
        // Several slice lengths so every lane position and the padded remainder are covered.
        for split in [1usize, 7, 16, 17, 33, 1000] {
            let mut got = xs.clone();
            for c in got.chunks_mut(split) {
                svml_f32::log1p_slice_at(level, c);
            }
            assert_bits_eq(&format!("{level:?} split {split}"), &xs, &got, &want);
        }
    }
}

#[test]
fn svml_rare_routine_matches_numpy_on_its_own_inputs() {
    let xs = inputs();
    for (x, w) in xs.iter().zip(column(1)) {
        if svml_f32::is_rare(*x) {
            assert_eq!(
                svml_f32::rare(*x).to_bits(),
                w,
                "rare path x={x:e} ({:#010x})",
                x.to_bits()
            );
        }
    }
    // The rare inputs present: -1, < -1, NaN, inf, >= 2^127.
    let n_rare = xs.iter().filter(|x| svml_f32::is_rare(**x)).count();
    assert!(n_rare >= 250, "only {n_rare} rare-path inputs");
}

#[test]
fn numpy_svml_kernel_with_bases() {
    let xs = inputs();
    for (base, col) in [(None, 1), (Some(2.0), 2), (Some(10.0), 3)] {
        let l = Log1p::new(Log1pKernel::NumpySvml, base);
        let mut got = xs.clone();
        l.apply(&mut got);
        assert_bits_eq(&format!("svml base {base:?}"), &xs, &got, &column(col));
        let one: Vec<f32> = xs.iter().map(|&x| l.apply_one(x)).collect();
        assert_bits_eq(
            &format!("svml apply_one base {base:?}"),
            &xs,
            &one,
            &column(col),
        );
    }
}

#[test]
fn libm_kernel_matches_numpy_without_avx512() {
    // Columns 4/5 come from numpy run with NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL".
    let xs = inputs();
    for (base, col) in [(None, 4), (Some(2.0), 5)] {
        let l = Log1p::new(Log1pKernel::Libm, base);
        let mut got = xs.clone();
        l.apply(&mut got);
        assert_bits_eq(&format!("libm base {base:?}"), &xs, &got, &column(col));
    }
}

fn f64_inputs() -> Vec<f64> {
    LOG1P_F64.iter().map(|r| f64::from_bits(r[0])).collect()
}

fn f64_column(c: usize) -> Vec<u64> {
    LOG1P_F64.iter().map(|r| r[c]).collect()
}

/// [`assert_bits_eq`] for f64.
fn assert_bits_eq_f64(what: &str, xs: &[f64], got: &[f64], want: &[u64]) {
    let bad: Vec<String> = xs
        .iter()
        .zip(got)
        .zip(want)
        .filter(|((_, g), w)| g.to_bits() != **w)
        .map(|((x, g), w)| {
            format!(
                "x={x:e} ({:#018x}) got {:#018x} want {w:#018x}",
                x.to_bits(),
                g.to_bits()
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} mismatches, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

#[test]
fn f64_vectors_tell_svml_and_libm_apart() {
    let differ = LOG1P_F64.iter().filter(|r| r[1] != r[3]).count();
    assert!(
        differ > 1000,
        "only {differ} inputs where SVML and libm differ"
    );
    let xs = f64_inputs();
    let n_rare = xs.iter().filter(|x| svml_f64::is_rare(**x)).count();
    assert!(n_rare >= 150, "only {n_rare} rare-lane inputs");
    // Signalling and negative NaNs, -1, -inf and x < -1 are all present.
    for b in [
        0x7ff0000000000001u64,
        0xfff8000000000000,
        0xbff0000000000000,
        0xfff0000000000000,
        0xc000000000000000,
    ] {
        assert!(LOG1P_F64.iter().any(|r| r[0] == b), "{b:#x} missing");
    }
}

#[test]
fn f64_svml_port_matches_numpy() {
    let xs = f64_inputs();
    let got: Vec<f64> = xs.iter().map(|&x| svml_f64::log1p(x)).collect();
    assert_bits_eq_f64("scalar svml_f64::log1p", &xs, &got, &f64_column(1));
    for (base, col) in [(None, 1), (Some(2.0), 2)] {
        let l = Log1p::new(Log1pKernel::NumpySvml, base);
        let mut got = xs.clone();
        l.apply(&mut got);
        assert_bits_eq_f64(
            &format!("svml f64 base {base:?}"),
            &xs,
            &got,
            &f64_column(col),
        );
        let one: Vec<f64> = xs.iter().map(|&x| l.apply_one(x)).collect();
        assert_bits_eq_f64(
            &format!("svml f64 apply_one base {base:?}"),
            &xs,
            &one,
            &f64_column(col),
        );
    }
}

#[test]
fn f64_svml_slice_matches_numpy_at_every_level() {
    let xs = f64_inputs();
    let want = f64_column(1);
    let have = svml_f64::simd_level();
    for level in [
        svml_f64::SimdLevel::Avx512,
        svml_f64::SimdLevel::Avx2Fma,
        svml_f64::SimdLevel::Scalar,
    ] {
        let runs = matches!(
            (level, have),
            (svml_f64::SimdLevel::Avx512, svml_f64::SimdLevel::Avx512)
                | (
                    svml_f64::SimdLevel::Avx2Fma,
                    svml_f64::SimdLevel::Avx512 | svml_f64::SimdLevel::Avx2Fma
                )
                | (svml_f64::SimdLevel::Scalar, _)
        );
        if !runs {
            println!("SKIPPED svml f64 {level:?}: this CPU lacks the features (has {have:?})");
            continue;
        }
        // Every lane position and the masked remainder.
        for split in [1usize, 3, 7, 8, 9, 17, 1000] {
            let mut got = xs.clone();
            for c in got.chunks_mut(split) {
                svml_f64::log1p_slice_at(level, c);
            }
            assert_bits_eq_f64(&format!("f64 {level:?} split {split}"), &xs, &got, &want);
        }
    }
}

#[test]
fn f64_rare_lanes_are_the_kernels_own() {
    let xs = f64_inputs();
    let want = f64_column(1);
    for (x, w) in xs.iter().zip(&want) {
        if svml_f64::is_rare(*x) {
            assert_eq!(
                svml_f64::rare(*x).to_bits(),
                *w,
                "rare path x={x:e} ({:#018x})",
                x.to_bits()
            );
        }
    }
    // The portable predicate is the lane mask SVML's instruction sequence computes.
    match svml_f64::simd_rare_lanes(&xs) {
        Some(mask) => {
            for (x, m) in xs.iter().zip(mask) {
                assert_eq!(svml_f64::is_rare(*x), m, "x={x:e} ({:#018x})", x.to_bits());
            }
        }
        None => println!("SKIPPED rare-lane mask check: no AVX-512"),
    }
}

#[test]
fn f64_rcp14_steps_are_this_cpus() {
    match svml_f64::measure_rc_steps() {
        Some(steps) => assert_eq!(steps, svml_f64::RC_STEPS, "this CPU's vrcp14pd differs"),
        None => println!("SKIPPED: no AVX-512; the portable port uses the tabulated steps"),
    }
}

#[test]
fn f64_libm_kernel_matches_numpy_without_avx512() {
    let xs = f64_inputs();
    let l = Log1p::new(Log1pKernel::Libm, None);
    let mut got = xs.clone();
    l.apply(&mut got);
    assert_bits_eq_f64("libm f64", &xs, &got, &f64_column(3));
}

/// Tens of millions of inputs against numpy, from files written by
/// `scripts/gen_kernel_vectors.py --f64-bulk DIR` (see its docstring). Run with
/// `ATLASNORM_F64_BULK=DIR cargo test --release --lib svml_f64_bulk -- --ignored --nocapture`.
#[test]
#[ignore = "needs ATLASNORM_F64_BULK (files from gen_kernel_vectors.py --f64-bulk)"]
fn svml_f64_bulk_against_numpy() {
    let dir = std::env::var("ATLASNORM_F64_BULK").expect("set ATLASNORM_F64_BULK");
    let read = |p: std::path::PathBuf| -> Vec<u64> {
        let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("bulk dir")
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_suffix(".x.bin").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no *.x.bin in {dir}");
    let have = svml_f64::simd_level();
    let (mut total, mut total_bad, mut total_rare, mut total_glibc) = (0, 0, 0, 0);
    for name in &names {
        let xb = read(std::path::Path::new(&dir).join(format!("{name}.x.bin")));
        let want = read(std::path::Path::new(&dir).join(format!("{name}.y.bin")));
        assert_eq!(xb.len(), want.len(), "{name}");
        let xs: Vec<f64> = xb.iter().map(|&b| f64::from_bits(b)).collect();
        let mut bad = [0usize; 3];
        let mut levels = vec![svml_f64::SimdLevel::Avx2Fma];
        if have == svml_f64::SimdLevel::Avx512 {
            levels.insert(0, svml_f64::SimdLevel::Avx512);
        }
        for (i, &level) in levels.iter().enumerate() {
            let mut got = xs.clone();
            svml_f64::log1p_slice_at(level, &mut got);
            bad[i] = got
                .iter()
                .zip(&want)
                .filter(|(g, w)| g.to_bits() != **w)
                .count();
        }
        let scalar_bad = xs
            .iter()
            .zip(&want)
            .filter(|(x, w)| svml_f64::log1p(**x).to_bits() != **w)
            .count();
        bad[2] = scalar_bad;
        let n_rare = xs.iter().filter(|x| svml_f64::is_rare(**x)).count();
        let glibc = xs
            .iter()
            .zip(&want)
            .filter(|(x, w)| x.ln_1p().to_bits() != **w)
            .count();
        println!(
            "{name:24} n={:9} rare lanes={:8} mismatches: {:?}={} portable(avx2+fma)={} \
             scalar log1p={} | glibc ln_1p differs on {glibc}",
            xs.len(),
            n_rare,
            levels[0],
            bad[0],
            if levels.len() > 1 { bad[1] } else { bad[0] },
            bad[2]
        );
        total += xs.len();
        total_bad += bad.iter().sum::<usize>();
        total_rare += n_rare;
        total_glibc += glibc;
    }
    println!(
        "TOTAL {total} inputs ({total_rare} rare lanes), {total_bad} mismatches; glibc differs on {total_glibc}"
    );
    assert_eq!(total_bad, 0);
}

#[test]
fn ln_base_equals_np_log() {
    for r in LN_BASE {
        let b = f64::from_bits(r[0]);
        let l = Log1p::new(Log1pKernel::NumpySvml, Some(b));
        assert_eq!(l.ln_base().to_bits(), r[1], "np.log({b})");
    }
}

#[test]
fn numpy_default_follows_the_cpu() {
    let k = Log1pKernel::numpy_default();
    assert_eq!(k == Log1pKernel::NumpySvml, has_x86_64_v4());
    assert!(Log1pKernel::NumpySvml.is_available() && Log1pKernel::Libm.is_available());
    println!(
        "numpy_default on this CPU: {k:?}, SVML variant {:?}",
        svml_f32::simd_level()
    );
}

/// Every f32 bit pattern: the vectorized loop (fastest variant on this CPU) against the scalar
/// port that the numpy vectors check. Run with
/// `cargo test --release --lib exhaustive -- --ignored` (~3.5 min; passed on AVX-512).
#[test]
#[ignore = "all 2^32 inputs; minutes"]
fn exhaustive_simd_loop_equals_scalar_port() {
    let have = svml_f32::simd_level();
    println!("exhaustive at {have:?}");
    let mut buf = vec![0f32; 1 << 16];
    for hi in 0u32..(1 << 16) {
        for (lo, v) in buf.iter_mut().enumerate() {
            *v = f32::from_bits(hi << 16 | lo as u32);
        }
        let mut got = buf.clone();
        svml_f32::log1p_slice(&mut got);
        for (x, g) in buf.iter().zip(&got) {
            let w = svml_f32::log1pf(*x);
            assert_eq!(g.to_bits(), w.to_bits(), "x bits {:#010x}", x.to_bits());
        }
    }
}

/// Throughput of the f64 kernels (min of 5 passes over 4M values of each kind). Run with
/// `cargo test --release --lib f64_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "timing"]
fn f64_throughput() {
    use std::time::Instant;
    let n = 1 << 22;
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let counts: Vec<f64> = (0..n)
        .map(|_| (next() % 40) as f64 * 1e4 / (500 + next() % 20000) as f64)
        .collect();
    let wide: Vec<f64> = (0..n)
        .map(|_| f64::from_bits(next() % 0x7ff0_0000_0000_0000))
        .collect();
    for (what, xs) in [("count ratios", &counts), ("positive bit patterns", &wide)] {
        let time = |f: &dyn Fn(&mut [f64])| {
            (0..5)
                .map(|_| {
                    let mut v = xs.clone();
                    let t = Instant::now();
                    f(&mut v);
                    std::hint::black_box(&v);
                    t.elapsed().as_secs_f64() * 1e9 / n as f64
                })
                .fold(f64::INFINITY, f64::min)
        };
        let glibc = time(&|v| v.iter_mut().for_each(|x| *x = x.ln_1p()));
        let svml = time(&|v| svml_f64::log1p_slice(v));
        let port = time(&|v| svml_f64::log1p_slice_at(svml_f64::SimdLevel::Avx2Fma, v));
        let scalar = time(&|v| v.iter_mut().for_each(|x| *x = svml_f64::log1p(*x)));
        println!(
            "{what:22}: f64::ln_1p {glibc:.2} ns/value | SVML port {:?} {svml:.2} | \
             portable avx2+fma {port:.2} | portable, no fma instr {scalar:.2}",
            svml_f64::simd_level()
        );
    }
}

/// The libm kernel's cache of recent results gives the bits of calling log1p on every value:
/// repeats, colliding slots, signed zeros, NaN payloads, negatives and huge values mixed.
#[test]
fn libm_memo_is_plain_log1p() {
    let mut xs32: Vec<f32> = Vec::new();
    for d in [1.0f32, 0.37, 3.3, 1e-3, 7e5] {
        for k in [0u32, 1, 2, 3, 1, 1, 2, 40, 3, 1, 900, 2] {
            xs32.push(k as f32 / d);
        }
    }
    xs32.extend([
        -0.0,
        0.0,
        -0.0,
        f32::NAN,
        f32::from_bits(0x7fc0_1234),
        -0.5,
        -0.5,
        1e30,
        f32::INFINITY,
    ]);
    xs32.extend((0..5000).map(|i| ((i * 7919) % 613) as f32 / 9.0));
    let mut got = xs32.clone();
    Log1p::new(Log1pKernel::Libm, None).apply(&mut got);
    for (x, g) in xs32.iter().zip(&got) {
        assert_eq!(g.to_bits(), x.ln_1p().to_bits(), "log1p({x:e})");
    }
    let xs64: Vec<f64> = xs32.iter().map(|&x| f64::from(x) * 1.000_000_1).collect();
    let mut got = xs64.clone();
    Log1p::new(Log1pKernel::Libm, Some(2.0)).apply(&mut got);
    for (x, g) in xs64.iter().zip(&got) {
        assert_eq!(
            g.to_bits(),
            (x.ln_1p() / 2f64.ln()).to_bits(),
            "log1p({x:e}) / ln 2"
        );
    }
}
