//! A bit-exact port of numpy's float32 `log1p` on AVX-512 CPUs: Intel SVML `__svml_log1pf16`
//! (vendored in numpy, `numpy/_core/src/umath/svml`), main path and rare-value callout.
//!
//! The main path is SPEC-scanpy.md §2.1, step for step. Lanes it cannot handle (`1 + x` not a
//! normal number below 2^127: x <= -1, NaN, +inf, x >= ~2^127) go, in SVML, to the scalar routine
//! `__svml_slog1p_cout_rare_internal`; [`rare`] is a transcription of that routine as found in
//! numpy 2.5.5's `_multiarray_umath` (`objdump -d`, constants and the 65-entry table read from its
//! `.rodata`): every step is one SSE scalar f32 operation, so plain Rust f32 arithmetic matches it.
//!
//! Speed: [`log1p_slice`] runs a branch-free loop over 16-lane chunks that LLVM vectorizes; it is
//! compiled three times (AVX-512, AVX2+FMA, baseline) and picked at run time. Every variant gives
//! the same bits: `f32::mul_add` is a fused multiply-add everywhere (an instruction with the `fma`
//! feature, glibc's correctly rounded `fmaf` without it, just slower).

/// Polynomial coefficients c9..c2 of the main path (SVML data table, offsets 2496..2048).
const C9: u32 = 0x3e0d84ed;
const C8: u32 = 0xbe1ad9e3;
const C7: u32 = 0x3e0fcb12;
const C6: u32 = 0xbe28ad37;
const C5: u32 = 0x3e4ce190;
const C4: u32 = 0xbe80058e;
const C3: u32 = 0x3eaaaa94;
const C2: u32 = 0xbf000000;
/// ln 2 rounded to f32.
const LN2: u32 = 0x3f317218;
/// Bits of 2/3 (rounded up): the mantissa is reduced into [2/3, 4/3).
const TWO_THIRDS: i32 = 0x3f2aaaab;

#[inline(always)]
fn f(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// True when `x` leaves SVML's main path (then [`rare`] gives the result).
#[inline(always)]
pub fn is_rare(x: f32) -> bool {
    // vmaxps/vminps return the second operand (x) when unordered, so NaN reaches S.
    let a = if x < 1.0 { 1.0 } else { x };
    let b = if x > 1.0 { 1.0 } else { x };
    let s = (a + b).to_bits() as i32;
    s.wrapping_add(0x0100_0000) < 0x0180_0000
}

/// The main path for one value: `(result, rare)`. When `rare` is set the result is garbage and
/// must be replaced by [`rare`]`(x)`. Branch-free, so a loop over it vectorizes.
#[inline(always)]
pub fn main_path(x: f32) -> (f32, bool) {
    // 1 + x as a high part S and a low part Lo, S = fl(max(1,x) + min(1,x)).
    let a = if x < 1.0 { 1.0 } else { x };
    let b = if x > 1.0 { 1.0 } else { x };
    let sign = x.to_bits() & 0x8000_0000;
    let s = a + b;
    let sb = s.to_bits() as i32;
    let rare = sb.wrapping_add(0x0100_0000) < 0x0180_0000;
    let t = sb.wrapping_sub(TWO_THIRDS);
    let k = t >> 23;
    let lo = (a - s) + b;
    let scale = f((0x3f80_0000i32.wrapping_sub(k.wrapping_shl(23))) as u32);
    let m = f(((t & 0x007f_ffff) + TWO_THIRDS) as u32);
    let r = (m - 1.0) + lo * scale;
    let mut p = f(C9).mul_add(r, f(C8));
    p = r.mul_add(p, f(C7));
    p = r.mul_add(p, f(C6));
    p = r.mul_add(p, f(C5));
    p = r.mul_add(p, f(C4));
    p = r.mul_add(p, f(C3));
    p = r.mul_add(p, f(C2));
    let q = p * r;
    let q = r.mul_add(q, r);
    let res = f(LN2).mul_add(k as f32, q);
    (f(res.to_bits() | sign), rare)
}

/// `__slog1p_la_CoutTab` of numpy 2.5.5: for i in 0..=64, (`rcp_i`, `log_hi_i`, `log_lo_i`) with
/// `rcp_i` ~ 1/(1 + i/64) and `log_hi` + `log_lo` ~ -`ln(rcp_i)`.
#[rustfmt::skip]
const COUT_TAB: [[u32; 3]; 65] = [
    [0x3f800000, 0x00000000, 0x00000000], [0x3f7c0000, 0x3c810000, 0x35acb127],
    [0x3f780000, 0x3d020000, 0x372ec4f4], [0x3f740000, 0x3d44c000, 0xb7d57ad8],
    [0x3f700000, 0x3d843000, 0xb6ce94c4], [0x3f6e0000, 0x3d955000, 0x349488e3],
    [0x3f6a0000, 0x3db80000, 0x37530aeb], [0x3f660000, 0x3ddb5000, 0x37488dad],
    [0x3f640000, 0x3ded4000, 0xb7589c7c], [0x3f600000, 0x3e08bc00, 0x35e8227e],
    [0x3f5e0000, 0x3e11ec00, 0xb5ed5b64], [0x3f5a0000, 0x3e248800, 0x36f60ccf],
    [0x3f580000, 0x3e2dfc00, 0xb6fe52af], [0x3f540000, 0x3e412000, 0xb6fa6ab9],
    [0x3f520000, 0x3e4ad400, 0xb6948c24], [0x3f500000, 0x3e54a000, 0xb6161ba9],
    [0x3f4c0000, 0x3e688000, 0x36dfc995], [0x3f4a0000, 0x3e729800, 0x35effe71],
    [0x3f480000, 0x3e7cc800, 0x3663659e], [0x3f460000, 0x3e838a00, 0xb5f3f655],
    [0x3f440000, 0x3e88bc00, 0x3668227e], [0x3f400000, 0x3e934b00, 0x35044d37],
    [0x3f3e0000, 0x3e98a800, 0xb661e2ca], [0x3f3c0000, 0x3e9e1300, 0xb6588ccd],
    [0x3f3a0000, 0x3ea38c00, 0x365c271c], [0x3f380000, 0x3ea91500, 0x3660738a],
    [0x3f360000, 0x3eaeae00, 0xb50829a8], [0x3f340000, 0x3eb45600, 0x3603e9c7],
    [0x3f320000, 0x3eba0f00, 0xb5f12731], [0x3f300000, 0x3ebfd800, 0xb5b884fd],
    [0x3f2e0000, 0x3ec5b200, 0xb5caee9a], [0x3f2c0000, 0x3ecb9d00, 0x3550c4d6],
    [0x3f2a0000, 0x3ed19a00, 0x3580449f], [0x3f280000, 0x3ed7a900, 0x3615248d],
    [0x3f280000, 0x3ed7a900, 0x3615248d], [0x3f260000, 0x3eddcb00, 0x348dc071],
    [0x3f240000, 0x3ee40000, 0xb5c71755], [0x3f220000, 0x3eea4800, 0x3511b7bf],
    [0x3f200000, 0x3ef0a400, 0x3621a272], [0x3f200000, 0x3ef0a400, 0x3621a272],
    [0x3f1e0000, 0x3ef71500, 0x34ab5a0a], [0x3f1c0000, 0x3efd9b00, 0xb5ea10b7],
    [0x3f1a0000, 0x3f021b00, 0x34be7604], [0x3f1a0000, 0x3f021b00, 0x34be7604],
    [0x3f180000, 0x3f0573c0, 0xb50e97d6], [0x3f160000, 0x3f08d7c0, 0x338f1d6b],
    [0x3f140000, 0x3f0c4780, 0xb55f86e2], [0x3f140000, 0x3f0c4780, 0xb55f86e2],
    [0x3f120000, 0x3f0fc300, 0x35d7f186], [0x3f100000, 0x3f134b00, 0x35844d37],
    [0x3f100000, 0x3f134b00, 0x35844d37], [0x3f0e0000, 0x3f16dfc0, 0xb5aa13c8],
    [0x3f0e0000, 0x3f16dfc0, 0xb5aa13c8], [0x3f0c0000, 0x3f1a8140, 0x34ad9d8d],
    [0x3f0a0000, 0x3f1e3040, 0x32c36bfb], [0x3f0a0000, 0x3f1e3040, 0x32c36bfb],
    [0x3f080000, 0x3f21ed00, 0xb2d06dc4], [0x3f080000, 0x3f21ed00, 0xb2d06dc4],
    [0x3f060000, 0x3f25b800, 0xb5a41a3d], [0x3f060000, 0x3f25b800, 0xb5a41a3d],
    [0x3f040000, 0x3f299180, 0xb56cbcc4], [0x3f040000, 0x3f299180, 0xb56cbcc4],
    [0x3f020000, 0x3f2d7a00, 0x34386c94], [0x3f020000, 0x3f2d7a00, 0x34386c94],
    [0x3f000000, 0x3f317200, 0x35bfbe8e],
];

/// Scalar constants of the callout (`__slog1p_la_CoutTab` + 0x348 ..).
const TWO_POW_40: u32 = 0x53800000;
const SMALL: u32 = 0x3c200000; // 2^-6.678..: |1+x-1| <= this -> plain polynomial
const P1: u32 = 0xbf000000;
const P2: u32 = 0x3eaaaaab;
const P3: u32 = 0xbe800000;
const P4: u32 = 0x3e4ccccd;
const P5: u32 = 0xbe2aaaab;
const P6: u32 = 0x3e124e01;
const P7: u32 = 0xbe0005a0;
const LN2_FULL: u32 = 0x3f317218;
const LN2_HI: u32 = 0x3f317200;
const LN2_LO: u32 = 0x35bfbe8e;
const INDEX_SHIFTER: u32 = 0x48000040; // 2^17 + 1: low 7 mantissa bits = round(64 (m - 1))
const SPLITTER: u32 = 0x46000000; // 8192: m rounded to 2^-10

/// `d * (P1 + d * (P2 + ... + d * P7))` as the callout evaluates it (Horner, unfused, then `* d`).
#[inline(always)]
fn cout_poly(d: f32) -> f32 {
    let mut p = f(P7) * d;
    for c in [P6, P5, P4, P3, P2, P1] {
        p += f(c);
        p *= d;
    }
    p * d
}

/// `__svml_slog1p_cout_rare_internal`: SVML's scalar log1pf for the lanes the main path rejects.
/// Also correct (it is SVML's own accurate routine) for every other input, which the tests use.
pub fn rare(x: f32) -> f32 {
    let mut s = x + 1.0;
    let sb = s.to_bits();
    if sb & 0x7f80_0000 == 0x7f80_0000 {
        // 1 + x is inf or NaN.
        if x.is_nan() {
            // SSE propagates the (quieted) NaN operand.
            return f(x.to_bits() | 0x0040_0000);
        }
        if sb & 0x8000_0000 != 0 {
            // -inf: 0/0, the x86 default NaN.
            return f(0xffc0_0000);
        }
        return s * s; // +inf
    }
    let mut tiny = false;
    let mut e_bias: i32 = 0;
    if sb & 0x7f80_0000 == 0 {
        s *= f(TWO_POW_40);
        tiny = true;
        e_bias = -40;
    }
    if s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        if s == 0.0 {
            return f32::NEG_INFINITY; // x == -1: C / 0 with C = -1
        }
        return f(0xffc0_0000); // x < -1: 0/0, the x86 default NaN
    }
    let d = s - 1.0;
    if d.abs() <= f(SMALL) {
        return cout_poly(d) + d;
    }
    let e = e_bias + ((s.to_bits() >> 23) & 0xff) as i32 - 127;
    let ef = e as f32;
    let (e_hi, e_lo) = if tiny {
        (ef * f(LN2_FULL), 0.0f32)
    } else {
        (ef * f(LN2_HI), ef * f(LN2_LO))
    };
    // Mantissa of s in [1, 2).
    let m = f((s.to_bits() & 0x807f_ffff) | 0x3f80_0000);
    let i = ((m + f(INDEX_SHIFTER)).to_bits() & 0x7f) as usize;
    let [rcp, log_hi, log_lo] = COUT_TAB[i].map(f);
    let hi = e_hi + log_hi;
    let lo0 = e_lo + log_lo;
    let hi_err = log_hi - (hi - e_hi);
    let lo = hi_err + lo0;
    let m_hi = (f(SPLITTER) + m) - f(SPLITTER);
    let m_lo = m - m_hi;
    let r_hi = m_hi * rcp - 1.0;
    let r_lo = m_lo * rcp;
    let t15 = r_lo + lo;
    let t12 = r_hi + hi;
    let r = r_hi + r_lo;
    let c1 = t15 - lo;
    let sum = t12 + t15;
    let r_lo2 = r_lo - c1;
    let c2 = sum - t12;
    let tail = t15 - c2;
    let r_lo3 = r_lo2 + cout_poly(r);
    let tail = tail + r_lo3;
    tail + sum
}

/// numpy/SVML's float32 `log1p` of one value (scalar; same bits as [`log1p_slice`]).
#[inline]
pub fn log1pf(x: f32) -> f32 {
    let (y, r) = main_path(x);
    if r {
        rare(x)
    } else {
        y
    }
}

const LANES: usize = 16;

/// One 16-lane chunk: the main path on every lane (vectorized), then the rare lanes fixed up.
#[inline(always)]
fn chunk(c: &mut [f32; LANES]) {
    let mut out = [0.0f32; LANES];
    let mut any = 0u32;
    for i in 0..LANES {
        let (y, r) = main_path(c[i]);
        out[i] = y;
        any |= r as u32;
    }
    if any != 0 {
        for i in 0..LANES {
            if is_rare(c[i]) {
                out[i] = rare(c[i]);
            }
        }
    }
    *c = out;
}

#[inline(always)]
fn slice_body(xs: &mut [f32]) {
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        chunk(c.try_into().expect("chunk of LANES"));
    }
    let rem = chunks.into_remainder();
    if !rem.is_empty() {
        // Padding lanes hold 0.0, which takes the main path; their results are dropped.
        let mut buf = [0.0f32; LANES];
        buf[..rem.len()].copy_from_slice(rem);
        chunk(&mut buf);
        let n = rem.len();
        rem.copy_from_slice(&buf[..n]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512cd,avx512vl,avx512bw,avx512dq,fma")]
// SAFETY: callers must have detected x86-64-v4 AVX-512 and FMA at run time (`simd_level`).
unsafe fn slice_avx512(xs: &mut [f32]) {
    slice_body(xs);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// SAFETY: callers must have detected AVX2 and FMA at run time (`simd_level`).
unsafe fn slice_avx2(xs: &mut [f32]) {
    slice_body(xs);
}

pub use super::{simd_level, SimdLevel};

/// In-place numpy/SVML float32 log1p over a slice, with the fastest variant this CPU runs.
pub fn log1p_slice(xs: &mut [f32]) {
    log1p_slice_at(simd_level(), xs);
}

/// [`log1p_slice`] with a forced variant (tests and benches); a level the CPU lacks falls back
/// to [`SimdLevel::Scalar`].
pub fn log1p_slice_at(level: SimdLevel, xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let have = simd_level();
        match (level, have) {
            // SAFETY: the features were detected at run time.
            (SimdLevel::Avx512, SimdLevel::Avx512) => return unsafe { slice_avx512(xs) },
            (SimdLevel::Avx2Fma, SimdLevel::Avx512 | SimdLevel::Avx2Fma) => {
                // SAFETY: AVX2 and FMA were detected at run time (x86-64-v4 includes them).
                return unsafe { slice_avx2(xs) };
            }
            _ => {}
        }
    }
    let _ = level;
    slice_body(xs);
}
