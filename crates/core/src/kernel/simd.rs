//! Run-time choice of SIMD width for the plain loops (totals, divisions). The crate is built
//! for baseline x86-64 (SSE2), so a hot loop is compiled again inside functions with the AVX2
//! and x86-64-v4 (AVX-512) features enabled and the widest one the CPU has is called. Each
//! copy performs the same IEEE operations in the same order per value (Rust never contracts
//! `a * b + c` into an FMA), so the bits never depend on the CPU; only the speed does.

/// Calls `body(args...)` compiled for the widest SIMD level this CPU runs. `body` must be
/// `#[inline(always)]` (and so must what it calls) to be compiled inside each variant.
macro_rules! dispatch {
    ($body:ident ( $($arg:expr),* $(,)? )) => {{
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: callers must have detected x86-64-v4 and FMA at run time (below).
            #[target_feature(enable = "avx512f,avx512cd,avx512vl,avx512bw,avx512dq,avx2,fma")]
            unsafe fn v4<F: FnOnce()>(f: F) {
                f();
            }
            // SAFETY: callers must have detected AVX2 and FMA at run time (below).
            #[target_feature(enable = "avx2,fma")]
            unsafe fn v3<F: FnOnce()>(f: F) {
                f();
            }
            match $crate::kernel::log1p::simd_level() {
                // SAFETY: `simd_level` detected the x86-64-v4 group and FMA at run time.
                $crate::kernel::log1p::SimdLevel::Avx512 => unsafe { v4(|| $body($($arg),*)) },
                // SAFETY: `simd_level` detected AVX2 and FMA at run time.
                $crate::kernel::log1p::SimdLevel::Avx2Fma => unsafe { v3(|| $body($($arg),*)) },
                $crate::kernel::log1p::SimdLevel::Scalar => $body($($arg),*),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body($($arg),*)
        }
    }};
}

pub(crate) use dispatch;
