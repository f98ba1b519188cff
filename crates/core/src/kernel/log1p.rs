//! `np.log1p` (then `np.divide(x, np.log(base))`) exactly as numpy computes it on the running CPU.
//!
//! numpy dispatches `log1p` at run time: on CPUs with the x86-64-v4 group (AVX512F, CD, VL, BW,
//! DQ — numpy's `X86_V4`, formerly `AVX512_SKX`) it runs Intel's SVML kernels, elsewhere the
//! system libm. [`Log1pKernel::NumpySvml`] reproduces the SVML kernels bit for bit: f32
//! `__svml_log1pf16` ([`svml_f32`]) and f64 `__svml_log1p8_ha` ([`svml_f64`]);
//! [`Log1pKernel::Libm`] is glibc's `log1pf`/`log1p` (Rust's `ln_1p`), which is what numpy gives
//! on other CPUs.

pub mod svml_f32;
pub mod svml_f64;

use super::real::Real;

/// Which log1p to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log1pKernel {
    /// numpy on an x86-64-v4 CPU: SVML `__svml_log1pf16` for f32, `__svml_log1p8_ha` for f64.
    /// f32 is bit-exact on every CPU (a portable build of the same port runs where AVX-512 is
    /// missing, only slower). f64 runs SVML's own instruction sequence on x86-64-v4 CPUs (so it
    /// equals numpy on the same CPU) and a portable emulation elsewhere, whose one approximate
    /// step (`vrcp14pd`) is tabulated from an AMD Zen 4 (see [`svml_f64`]).
    NumpySvml,
    /// numpy elsewhere: glibc `log1pf` / `log1p`.
    Libm,
}

/// numpy's `X86_V4` condition: AVX512F, AVX512CD, AVX512VL, AVX512BW and AVX512DQ, all enabled by
/// the OS (std's detection checks XCR0, as numpy does).
pub fn has_x86_64_v4() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f")
            && has!("avx512cd")
            && has!("avx512vl")
            && has!("avx512bw")
            && has!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Log1pKernel {
    /// What numpy 2.5 picks on this CPU: `NumpySvml` when the x86-64-v4 group is present
    /// (numpy's dispatch for `log1p` in `loops_umath_fp.dispatch`), `Libm` otherwise.
    pub fn numpy_default() -> Self {
        if has_x86_64_v4() {
            Log1pKernel::NumpySvml
        } else {
            Log1pKernel::Libm
        }
    }

    /// Both kernels run everywhere with the same bits; `NumpySvml` is fast only where
    /// [`Log1pKernel::is_accelerated`] holds.
    pub fn is_available(self) -> bool {
        true
    }

    /// `NumpySvml` runs vectorized (AVX-512, or AVX2 + FMA) rather than the slow scalar port.
    pub fn is_accelerated(self) -> bool {
        match self {
            Log1pKernel::NumpySvml => svml_f32::simd_level() != svml_f32::SimdLevel::Scalar,
            Log1pKernel::Libm => true,
        }
    }
}

/// A configured log1p: kernel plus optional base.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Log1p {
    kernel: Log1pKernel,
    base: Option<f64>,
    /// `ln(base)` in f64 (numpy: `np.log(base)`, a float64 scalar).
    ln_base: f64,
}

impl Log1p {
    /// `base = None` is the natural log. The divisor `ln(base)` is Rust's `f64::ln` (glibc
    /// `log`). numpy computes `np.log(base)` with its own AVX-512 f64 log, which agrees with
    /// glibc for 2, 10, e, 0.5, 3, 7.3 and the other bases in the tests but not for every
    /// double (~1 in 10^4 arguments differ by 1 ULP).
    pub fn new(kernel: Log1pKernel, base: Option<f64>) -> Self {
        Log1p {
            kernel,
            base,
            ln_base: base.map_or(1.0, f64::ln),
        }
    }

    /// As [`Log1p::new`] with the divisor given: the caller's `np.log(base)` (numpy's own f64
    /// log, which differs from glibc's for ~1 in 10^4 arguments), so the bits are numpy's.
    pub fn with_ln_base(kernel: Log1pKernel, base: f64, ln_base: f64) -> Self {
        Log1p {
            kernel,
            base: Some(base),
            ln_base,
        }
    }

    /// The kernel this log1p reproduces.
    pub fn kernel(&self) -> Log1pKernel {
        self.kernel
    }

    /// The logarithm's base; `None` for the natural log.
    pub fn base(&self) -> Option<f64> {
        self.base
    }

    /// The f64 divisor applied after log1p (1.0 without a base; unused then).
    pub fn ln_base(&self) -> f64 {
        self.ln_base
    }

    /// In place: `x = log1p(x)`, then, with a base, `x = fl_T(f64(x) / ln(base))`.
    pub fn apply<T: Real>(&self, xs: &mut [T]) {
        T::log1p_slice(self, xs);
    }

    /// [`Log1p::apply`] to a single value.
    pub fn apply_one<T: Real>(&self, x: T) -> T {
        let mut a = [x];
        self.apply(&mut a);
        a[0]
    }

    /// f32: numpy divides the f32 log1p by the f64 `np.log(base)` in f64 and rounds once
    /// (`np.divide(x, np.float64, out=x)` casts the loop to f64).
    pub(crate) fn apply_f32(&self, xs: &mut [f32]) {
        match self.kernel {
            Log1pKernel::NumpySvml => svml_f32::log1p_slice(xs),
            Log1pKernel::Libm => memo_log1p(xs, f32::to_bits, f32::ln_1p),
        }
        if self.base.is_some() {
            let l = self.ln_base;
            xs.iter_mut().for_each(|x| *x = (*x as f64 / l) as f32);
        }
    }

    /// f64: SVML `__svml_log1p8_ha` or glibc `log1p`, then `/ ln(base)` (`np.divide` in f64).
    pub(crate) fn apply_f64(&self, xs: &mut [f64]) {
        match self.kernel {
            Log1pKernel::NumpySvml => svml_f64::log1p_slice(xs),
            Log1pKernel::Libm => memo_log1p(xs, f64::to_bits, f64::ln_1p),
        }
        if self.base.is_some() {
            let l = self.ln_base;
            xs.iter_mut().for_each(|x| *x /= l);
        }
    }
}

/// Slots of [`memo_log1p`]'s cache (a power of two).
const MEMO_SLOTS: usize = 64;

/// `x = f(x)` for every value, remembering recent results by input bits: a scalar libm
/// log1p costs ~20 ns, and normalized counts repeat (each cell's values are `k / factor` for a
/// few small integers `k`), so most values are found in the cache. `f` is a pure function of
/// the bits, so a remembered result is the very value `f` would return: same bits as calling
/// it every time. Every slot starts as `0 -> f(+0.0)`, itself a true entry.
#[inline]
fn memo_log1p<F: Copy + Default, K: Copy + PartialEq + Into<u64>>(
    xs: &mut [F],
    bits: impl Fn(F) -> K,
    f: impl Fn(F) -> F,
) {
    let zero = F::default();
    let mut keys = [bits(zero); MEMO_SLOTS];
    let mut vals = [f(zero); MEMO_SLOTS];
    for x in xs.iter_mut() {
        let k = bits(*x);
        let h: u64 = k.into();
        let slot =
            (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - MEMO_SLOTS.trailing_zeros())) as usize;
        if keys[slot] == k {
            *x = vals[slot];
        } else {
            let v = f(*x);
            keys[slot] = k;
            vals[slot] = v;
            *x = v;
        }
    }
}

#[cfg(test)]
mod tests;

/// Which compiled variant the SVML ports use on this CPU (both precisions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    /// x86-64-v4: the SVML instruction sequence itself, numpy's bits on this very CPU.
    Avx512,
    /// The portable port compiled with AVX2 + FMA.
    Avx2Fma,
    /// The portable port; `mul_add` is glibc's `fma`/`fmaf` (same bits, several times slower).
    Scalar,
}

/// The fastest [`SimdLevel`] this CPU runs (std caches the detection, so this is cheap).
pub fn simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if has_x86_64_v4() && std::arch::is_x86_feature_detected!("fma") {
            return SimdLevel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return SimdLevel::Avx2Fma;
        }
    }
    SimdLevel::Scalar
}
