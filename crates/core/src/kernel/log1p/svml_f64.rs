//! A bit-exact port of numpy's float64 `log1p` on AVX-512 CPUs: Intel SVML `__svml_log1p8_ha`
//! (vendored in numpy, `numpy/_core/src/umath/svml`), main path and rare-value callout.
//!
//! **Which kernel.** numpy 2.5.5's `DOUBLE_log1p_X86_V4` (`_multiarray_umath`, 0x75eca0) calls
//! `__svml_log1p8_ha` (the "high accuracy" variant, at 0x16af00), not `__svml_log1p8`
//! (0x16a4b0, a cheaper kernel that is also in the binary but unused by the float64 loop). Both
//! share the callout routine's code and table. It is called for contiguous or strided arrays
//! whose input and output either coincide or do not overlap (`np.log1p(x, out=x)`, as scanpy
//! does, and `np.log1p(x)`); 8 lanes at a time, the last partial vector zero-filled.
//!
//! **Main path** (one AVX-512 instruction per step, every one rounded to nearest; `fma` fused):
//! ```text
//! A = max(1, x); B = min(1, x); S = 1 + x; sign = x & 0x8000..
//! M = getmant(S) in [1, 2); E = getexp(S) (f64)
//! Lo = B - (S - A)                               # 1 + x = S + Lo exactly
//! Rc = roundscale(rcp14(M), 2^-5)                # 1/M to 5 fraction bits, in [1/2, 1]
//! if Rc < 0.75: E += 1                           # table entries for Rc < 3/4 hold -ln(2 Rc)
//! Rh = fma(Rc, M, -1); Rl = Rc * scalef(Lo, -E); R = Rh + Rl; Rlo = Rl - (R - Rh)
//! j = (bits(Rc) >> 48) & 15                      # 0 for Rc = 1 or 1/2, else 32 Rc - 16
//! H = fma(E, LN2_HI, TAB_HI[j]); Hs = H + R; Rerr = R - (Hs - H)
//! poly = fma(R2, fma(R4, fma(R2, c1c0 R + c200, c240 R + c280),
//!                    fma(R2, c2c0 R + c300, c340 R + c380)), Rerr)    # R2 = R*R, R4 = R2*R2
//! res = Hs + (poly + fma(E, LN2_LO, TAB_LO[j] + Rlo)); result = res | sign
//! ```
//! A lane whose `Rerr` is NaN (x NaN, x <= -1, x = +inf) is recomputed by the scalar routine
//! `__svml_dlog1p_ha_cout_rare_internal` ([`rare`], one SSE f64 operation per step).
//!
//! `rcp14` is the only approximate step. [`log1p_slice`] on an x86-64-v4 CPU runs the real
//! instructions (`_mm512_rcp14_pd` etc., [`slice_avx512`]), so it gives exactly what numpy gives on
//! the same CPU. The portable [`log1p`] emulates them: `rcp14` depends only on the top 16
//! significand bits (as in Intel's reference implementation, e.g. Bochs' `approximate_rcp14`),
//! and `Rc` is a monotone step function of those 16 bits with the 16 steps in [`RC_STEPS`],
//! measured exhaustively on this project's AMD EPYC (Zen 4) machine. Whether every AVX-512 CPU
//! (Intel's included) has the same 16 steps has not been checked; a CPU whose `rcp14` differed
//! would make numpy itself differ between machines.
//!
//! Constants: `__svml_dlog1p_ha_data_internal_avx512` (file offset 0x87d6c0, 64-byte broadcast
//! rows) and `__dlog1p_ha_CoutTab` (0x87dbc0) of numpy 2.5.5's `_multiarray_umath`.

/// `TAB_HI[j] + TAB_LO[j]` ~ `-ln(Rc)` (j >= 8, Rc = (16 + j)/32) or `-ln(2 Rc)` (j < 8); j = 0
/// also serves Rc = 1. Rows 0x00/0x40 (hi) and 0x80/0xc0 (lo) of the data table.
#[rustfmt::skip]
const TAB_HI: [u64; 16] = [
    0x0000000000000000, 0xbfaf0a30c0120000, 0xbfbe27076e2b0000, 0xbfc5ff3070a78000,
    0xbfcc8ff7c79a8000, 0xbfd1675cababc000, 0xbfd4618bc21c4000, 0xbfd739d7f6bbc000,
    0x3fd269621134c000, 0x3fcf991c6cb38000, 0x3fca93ed3c8b0000, 0x3fc5bf406b540000,
    0x3fc1178e82280000, 0x3fb9335e5d590000, 0x3fb08598b59e0000, 0x3fa0415d89e80000,
];
#[rustfmt::skip]
const TAB_LO: [u64; 16] = [
    0x0000000000000000, 0x3d53ab33d066d1d2, 0x3d2a342c2af0003c, 0xbd43d3c873e20a07,
    0xbd4a21ac25d81ef3, 0x3d59f1fc63382a8f, 0xbd5ec27d0b7b37b3, 0xbd50069ce24c53fb,
    0x3d5b92783beb7677, 0x3d59bcbecca0cdf3, 0xbd530e486a0ac42d, 0x3d5ed8fdc149767e,
    0xbd4b8421cc74be04, 0x3d52622b8757a8fb, 0x3d4d034451fecdfb, 0xbd577771fd187145,
];
/// Data table rows 0x100.. (each broadcast to 8 lanes there).
const ONE: u64 = 0x3ff0000000000000; // 0x100
const SIGN: u64 = 0x8000000000000000; // 0x140
const THREE_QUARTERS: u64 = 0x3fe8000000000000; // 0x180
const C1C0: u64 = 0x3fbc81cd309d7c70;
const C200: u64 = 0xbfc007357e93af62;
const C240: u64 = 0x3fc249229cee81ef;
const C280: u64 = 0xbfc55553fb28db06;
const C2C0: u64 = 0x3fc9999999cc9f5c;
const C300: u64 = 0xbfd00000000c05bd;
const C340: u64 = 0x3fd5555555555466;
const C380: u64 = 0xbfdfffffffffffc6;
const LN2_HI: u64 = 0x3fe62e42fefa0000; // 0x3c0
const LN2_LO: u64 = 0x3d7cf79abc9e0000; // 0x400

/// The 16 values of the top 16 significand bits of `M` at which `roundscale(rcp14(M), 2^-5)`
/// steps down by 1/32 (from 1 at `M = 1` to 1/2 from 1.939453125 on). Measured on this CPU's
/// `vrcp14pd` over all 2^16 prefixes (the low 36 bits do not change `rcp14`).
pub const RC_STEPS: [u16; 16] = [
    0x040f, 0x0c97, 0x15b4, 0x1f70, 0x29e6, 0x3523, 0x4143, 0x4e5f, 0x5c99, 0x6c15, 0x7d07, 0x8f9c,
    0xa41a, 0xbad0, 0xd41c, 0xf080,
];

#[inline(always)]
fn f(bits: u64) -> f64 {
    f64::from_bits(bits)
}

/// `roundscale(rcp14(m), 0x58)` for `m` in [1, 2), from [`RC_STEPS`]: `1 - steps/32`.
#[inline(always)]
fn rc_of(m: f64) -> f64 {
    let p = ((m.to_bits() >> 36) & 0xffff) as u16;
    let mut n = 0u32;
    for t in RC_STEPS {
        n += (p >= t) as u32;
    }
    1.0 - n as f64 * (1.0 / 32.0)
}

/// True when `x` leaves SVML's main path (its `Rerr` is NaN): x NaN, x <= -1, x = +inf.
#[inline(always)]
pub fn is_rare(x: f64) -> bool {
    !(x > -1.0 && x < f64::INFINITY)
}

/// The main path for one value (see the module docs). Only for `!is_rare(x)`: then `S = 1 + x`
/// is a positive normal number in [2^-53, `f64::MAX`], so getmant/getexp/scalef are bit fields and
/// a multiplication. Branch-free.
#[inline(always)]
pub fn main_path(x: f64) -> f64 {
    let a = if x < 1.0 { 1.0 } else { x };
    let b = if x > 1.0 { 1.0 } else { x };
    let sign = x.to_bits() & SIGN;
    let s = 1.0 + x;
    let sb = s.to_bits();
    let e_int = ((sb >> 52) & 0x7ff) as i64 - 1023; // in [-53, 1023]
    let m = f((sb & 0x000f_ffff_ffff_ffff) | ONE);
    let lo = b - (s - a);
    // scalef(Lo, -E) = Lo * 2^-E, one rounding; 2^-1023 is subnormal but exact.
    let two_neg_e = if e_int < 1023 {
        f(((1023 - e_int) as u64) << 52)
    } else {
        f(1 << 51)
    };
    let lo_s = lo * two_neg_e;
    let rc = rc_of(m);
    let mut e = e_int as f64;
    if rc < f(THREE_QUARTERS) {
        e += 1.0;
    }
    let rh = rc.mul_add(m, -1.0);
    let rl = rc * lo_s;
    let r = rh + rl;
    let r2 = r * r;
    let p3 = f(C1C0).mul_add(r, f(C200));
    let rlo = rl - (r - rh);
    let j = ((rc.to_bits() >> 48) & 0xf) as usize;
    let h = f(LN2_HI).mul_add(e, f(TAB_HI[j]));
    let tlo = f(TAB_LO[j]) + rlo;
    let p1 = f(C240).mul_add(r, f(C280));
    let p8 = f(C340).mul_add(r, f(C380));
    let hs = h + r;
    let p3 = r2.mul_add(p3, p1);
    let p12 = f(C2C0).mul_add(r, f(C300));
    let r4 = r2 * r2;
    let p12 = r2.mul_add(p12, p8);
    let hd = hs - h;
    let p3 = r4.mul_add(p3, p12);
    let rerr = r - hd;
    let p3 = r2.mul_add(p3, rerr);
    let z = f(LN2_LO).mul_add(e, tlo);
    let z = p3 + z;
    let res = hs + z;
    f(res.to_bits() | sign)
}

/// `__dlog1p_ha_CoutTab` of numpy 2.5.5 (same bytes as `__dlog1p_la_CoutTab`): for i in 0..=64,
/// (`rcp_i`, `log_hi_i`, `log_lo_i`) with `rcp_i` ~ 1/(1 + i/64) and `log_hi` + `log_lo` ~ -`ln(rcp_i)`.
#[rustfmt::skip]
const COUT_TAB: [[u64; 3]; 65] = [
    [0x3ff0000000000000, 0x0000000000000000, 0x0000000000000000],
    [0x3fef800000000000, 0x3f90205658a00000, 0xbd894f716c1b8bdf],
    [0x3fef080000000000, 0x3f9f7a9b16800000, 0xbd7f5ea936c720c1],
    [0x3fee900000000000, 0x3fa788595a380000, 0xbd74422c3420ece9],
    [0x3fee200000000000, 0x3faeea31c0080000, 0xbd647844f93f24ee],
    [0x3fedb00000000000, 0x3fb333d7f8180000, 0x3d4fa5b5255f91df],
    [0x3fed400000000000, 0x3fb700d30aea0000, 0x3d681c1e8da99ded],
    [0x3fecd80000000000, 0x3fba956d3eca0000, 0x3d6bcc6f29805896],
    [0x3fec700000000000, 0x3fbe3707ee300000, 0x3d521ed09ccecd58],
    [0x3fec100000000000, 0x3fc0ce7ecdcd0000, 0xbd5eb9ad25400abc],
    [0x3febac0000000000, 0x3fc299d30c608000, 0xbd41597fc311fb94],
    [0x3feb500000000000, 0x3fc4462b9dc98000, 0x3d59ede9d63b93e8],
    [0x3feaf40000000000, 0x3fc5f830a1a60000, 0xbd5ab765d9c00f91],
    [0x3fea980000000000, 0x3fc7b00916518000, 0xbd56b9d7f2c19f96],
    [0x3fea400000000000, 0x3fc95a5adcf70000, 0x3d07f22858a0ff6f],
    [0x3fe9ec0000000000, 0x3fcaf68956110000, 0xbd522905117ef527],
    [0x3fe9980000000000, 0x3fcc97f8079d8000, 0xbd5d89d3cae72327],
    [0x3fe9480000000000, 0x3fce2a877a6b0000, 0x3d5608e05de1c206],
    [0x3fe8f80000000000, 0x3fcfc218be620000, 0x3d34bba46f1cf6a0],
    [0x3fe8ac0000000000, 0x3fd0a504e97bc000, 0xbd47e7b58ccb79de],
    [0x3fe8600000000000, 0x3fd16b5ccbad0000, 0xbd323299042d74bf],
    [0x3fe8180000000000, 0x3fd22981fbef8000, 0xbd3a1421609580da],
    [0x3fe7d00000000000, 0x3fd2e9e2bce12000, 0x3d24300c128d1dc2],
    [0x3fe78c0000000000, 0x3fd3a1ac802f4000, 0xbd4338986332a139],
    [0x3fe7440000000000, 0x3fd4668bf41f0000, 0xbd39af1762c5a8f7],
    [0x3fe7040000000000, 0x3fd5178d9ab56000, 0xbd451f56780b4e27],
    [0x3fe6c00000000000, 0x3fd5d5bddf596000, 0xbd0a0b2a08a465dc],
    [0x3fe6800000000000, 0x3fd68ac83e9c6000, 0x3d442834c9d5bae8],
    [0x3fe6440000000000, 0x3fd736580f3ae000, 0x3d46caa59d367ecc],
    [0x3fe6040000000000, 0x3fd7ef5861cc6000, 0x3d4cef42353dde1f],
    [0x3fe5c80000000000, 0x3fd89eb3af432000, 0x3d40e8b030791139],
    [0x3fe5900000000000, 0x3fd9441434a04000, 0xbd4b4d1f8da8002f],
    [0x3fe5540000000000, 0x3fd9f7240cc0e000, 0x3d4b6291b174879d],
    [0x3fe51c0000000000, 0x3fdaa00cae22a000, 0x3d46245c1f2fadab],
    [0x3fe4e40000000000, 0x3fdb4ab7bdf08000, 0x3d3646398c3e8673],
    [0x3fe4b00000000000, 0x3fdbeacd9e272000, 0xbd34bac8923c3257],
    [0x3fe47c0000000000, 0x3fdc8c77e019c000, 0xbd44ff3bdbb1eb43],
    [0x3fe4480000000000, 0x3fdd2fbe93204000, 0xbd4671f55e1c3caa],
    [0x3fe4140000000000, 0x3fddd4aa04e1c000, 0x3d32d8512df01afd],
    [0x3fe3e40000000000, 0x3fde6e62a6da4000, 0x3d4ca9fbe3d32749],
    [0x3fe3b00000000000, 0x3fdf168f7fb06000, 0xbd2d6fb40a7c0c6e],
    [0x3fe3800000000000, 0x3fdfb358af7a4000, 0x3d41085fa3c16493],
    [0x3fe3540000000000, 0x3fe02232ccb34800, 0xbd2dc38bfa057734],
    [0x3fe3240000000000, 0x3fe0720e5c40e000, 0xbd1c762ffd3f0109],
    [0x3fe2f80000000000, 0x3fe0bbf2fd23e000, 0xbd35f8bfa94a1946],
    [0x3fe2c80000000000, 0x3fe10d53cbc08000, 0x3d1efc5cb54f6af7],
    [0x3fe2a00000000000, 0x3fe151c3f6f29800, 0xbd2edd97a293ae49],
    [0x3fe2740000000000, 0x3fe19db6ba0ba800, 0xbd324c53bd2daecc],
    [0x3fe2480000000000, 0x3fe1ea5f6e70e800, 0x3d3c1747eb80651c],
    [0x3fe2200000000000, 0x3fe230b0d8bec000, 0xbd3b40fe646de661],
    [0x3fe1f80000000000, 0x3fe2779e1ec94000, 0xbd235b991994c90f],
    [0x3fe1d00000000000, 0x3fe2bf29f9842000, 0xbd3e275c79e2c481],
    [0x3fe1a80000000000, 0x3fe30757344f1000, 0xbd2ec82f533a1f99],
    [0x3fe1800000000000, 0x3fe35028ad9d9000, 0xbd3bd1f01ab60655],
    [0x3fe15c0000000000, 0x3fe39240dde5d000, 0xbd26d8482a914e99],
    [0x3fe1340000000000, 0x3fe3dc5296586000, 0xbd262793c05bc7a1],
    [0x3fe1100000000000, 0x3fe41f8ff8472000, 0xbd34f7845166b2e1],
    [0x3fe0ec0000000000, 0x3fe4635bcf40e000, 0xbd318b9515f69aa9],
    [0x3fe0c80000000000, 0x3fe4a7b87bf1f800, 0x3d34123a4eb6653d],
    [0x3fe0a80000000000, 0x3fe4e4f832c56000, 0x3d1badbddcaf29d2],
    [0x3fe0840000000000, 0x3fe52a6d269bc800, 0xbd2ffbbb2e12ec6d],
    [0x3fe0640000000000, 0x3fe568aa0194f000, 0xbd3c89db8cae0304],
    [0x3fe0400000000000, 0x3fe5af405c364800, 0x3d2dfa63ac10c9fb],
    [0x3fe0200000000000, 0x3fe5ee82aa241800, 0x3d2202380cda46be],
    [0x3fe0000000000000, 0x3fe62e42fefa3800, 0x3d2ef35793c76730],
];

/// Scalar constants of the callout (`__dlog1p_ha_CoutTab` + 0x618 ..).
const CT_LN2_HI: u64 = 0x3fe62e42fefa3800; // +0x618
const CT_LN2_LO: u64 = 0x3d2ef35793c76730; // +0x620
const INDEX_SHIFTER: u64 = 0x42d0000000000040; // +0x628: 2^46 + 1, low 7 bits = round(64 (m - 1))
const SPLITTER: u64 = 0x4140000000000000; // +0x630: 2^21, m rounded to 2^-31
const SMALL: u64 = 0x3f84000000000000; // +0x638: |1+x-1| <= 0.009765625 -> plain polynomial
const TWO_POW_60: u64 = 0x43b0000000000000; // +0x640
const Q: [u64; 7] = [
    0xbfe0000000000000, // +0x658
    0x3fd5555555555613,
    0xbfd0000000000262,
    0x3fc9999997b36c81,
    0xbfc555555228b38f,
    0x3fc249c02481059d,
    0xbfc000b405a2836d, // +0x688
];
/// The x86 default NaN (`0.0 / 0.0` on SSE).
const DEFAULT_NAN: u64 = 0xfff8000000000000;

/// `((((((q7 d + q6) d + q5) d + q4) d + q3) d + q2) d + q1) d d` (unfused, as the callout does).
#[inline(always)]
fn cout_poly(d: f64) -> f64 {
    let mut p = f(Q[6]) * d;
    for c in [Q[5], Q[4], Q[3], Q[2], Q[1], Q[0]] {
        p += f(c);
        p *= d;
    }
    p * d
}

/// `__svml_dlog1p_ha_cout_rare_internal`: SVML's scalar routine for the lanes the main path
/// rejects. Those are all special values (x NaN, x <= -1, x = +inf), so from the kernel only its
/// first branches are reached; the rest is transcribed too and computes `ln(fl(1 + x))` (it
/// drops the rounding error of `1 + x`, so it is a good log1p only where `1 + x` is exact:
/// there it is within 1 ULP of glibc `log1p`, checked on 4·10^6 such inputs).
pub fn rare(x: f64) -> f64 {
    let mut s = x + 1.0;
    let sb = s.to_bits();
    if sb & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000 {
        // 1 + x is inf or NaN.
        if x.is_nan() {
            // SSE propagates the (quieted) NaN operand; s * s keeps it.
            return f(x.to_bits() | 0x0008_0000_0000_0000);
        }
        if sb & SIGN != 0 {
            return f(DEFAULT_NAN); // -inf: 0.0 / 0.0
        }
        return s * s; // +inf
    }
    let mut e_bias: i64 = 0;
    if sb & 0x7ff0_0000_0000_0000 == 0 {
        s *= f(TWO_POW_60);
        e_bias = -60;
    }
    if s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        if s == 0.0 {
            return f64::NEG_INFINITY; // x == -1: -1.0 / 0.0
        }
        return f(DEFAULT_NAN); // x < -1: 0.0 / 0.0
    }
    let d = s - 1.0;
    if d.abs() <= f(SMALL) {
        return cout_poly(d) + d;
    }
    let sbits = s.to_bits();
    let e = e_bias + ((sbits >> 52) & 0x7ff) as i64 - 1023;
    let ef = e as f64;
    // Mantissa of s in [1, 2).
    let m = f((sbits & 0x800f_ffff_ffff_ffff) | ONE);
    let i = ((m + f(INDEX_SHIFTER)).to_bits() & 0x7f) as usize;
    let [rcp, log_hi, log_lo] = COUT_TAB[i].map(f);
    let m_hi = (m + f(SPLITTER)) - f(SPLITTER);
    let m_lo = m - m_hi;
    let r_hi = m_hi * rcp - 1.0;
    let r_lo = rcp * m_lo;
    let hi = ef * f(CT_LN2_HI) + log_hi + r_hi;
    let lo = ef * f(CT_LN2_LO) + log_lo + r_lo;
    let r = r_hi + r_lo;
    let p = cout_poly(r) + lo;
    hi + p
}

/// numpy/SVML's float64 `log1p` of one value, portable (same bits as [`log1p_slice`] on the CPU
/// the [`RC_STEPS`] were measured on).
#[inline]
pub fn log1p(x: f64) -> f64 {
    if is_rare(x) {
        rare(x)
    } else {
        main_path(x)
    }
}

const LANES: usize = 8;

/// One 8-lane chunk of the portable port: the main path on every lane (rare lanes get a
/// harmless stand-in input), then the rare lanes fixed up.
#[inline(always)]
fn chunk_portable(c: &mut [f64; LANES]) {
    let mut out = [0.0f64; LANES];
    let mut any = false;
    for i in 0..LANES {
        let r = is_rare(c[i]);
        out[i] = main_path(if r { 0.0 } else { c[i] });
        any |= r;
    }
    if any {
        for i in 0..LANES {
            if is_rare(c[i]) {
                out[i] = rare(c[i]);
            }
        }
    }
    *c = out;
}

#[inline(always)]
fn slice_portable_body(xs: &mut [f64]) {
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        chunk_portable(c.try_into().expect("chunk of LANES"));
    }
    for x in chunks.into_remainder() {
        *x = log1p(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// SAFETY: callers must have detected AVX2 and FMA at run time (`simd_level`).
unsafe fn slice_portable_avx2(xs: &mut [f64]) {
    slice_portable_body(xs);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    const RN: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

    // SAFETY (every unsafe fn of this module): callable only where AVX-512 (x86-64-v4) was
    // detected at run time — from `slice`/`rare_mask`/`rc_steps`, which the callers outside
    // reach only after `simd_level() == Avx512`. Memory is touched only through the
    // unaligned/masked loads and stores of in-bounds slices and arrays.
    #[inline(always)]
    unsafe fn b(bits: u64) -> __m512d {
        _mm512_set1_pd(f64::from_bits(bits))
    }

    /// `__svml_log1p8_ha` main path, instruction for instruction; returns the result and the
    /// mask of lanes that need [`rare`].
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    // SAFETY: AVX-512 detected by the caller (see above).
    pub(super) unsafe fn kernel(x: __m512d) -> (__m512d, u8) {
        let one = b(ONE);
        let sign_mask = b(SIGN);
        let a = _mm512_max_round_pd::<_MM_FROUND_NO_EXC>(one, x);
        let bb = _mm512_min_round_pd::<_MM_FROUND_NO_EXC>(one, x);
        let s = _mm512_add_round_pd::<RN>(one, x);
        let sign = _mm512_and_pd(x, sign_mask);
        let m =
            _mm512_getmant_round_pd::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_NAN, _MM_FROUND_NO_EXC>(s);
        let e = _mm512_getexp_round_pd::<_MM_FROUND_NO_EXC>(s);
        let s_minus_a = _mm512_sub_round_pd::<RN>(s, a);
        let rcp = _mm512_rcp14_pd(m);
        let lo = _mm512_sub_round_pd::<RN>(bb, s_minus_a);
        let neg_e = _mm512_xor_pd(e, sign_mask);
        let rc = _mm512_roundscale_round_pd::<0x58, _MM_FROUND_NO_EXC>(rcp);
        let lo_s = _mm512_scalef_round_pd::<RN>(lo, neg_e);
        let k1 = _mm512_cmp_round_pd_mask::<_CMP_LT_OQ, _MM_FROUND_NO_EXC>(rc, b(THREE_QUARTERS));
        let rh = _mm512_fmsub_round_pd::<RN>(rc, m, one);
        let rl = _mm512_mul_round_pd::<RN>(rc, lo_s);
        let e = _mm512_mask_add_round_pd::<RN>(e, k1, e, one);
        let r = _mm512_add_round_pd::<RN>(rh, rl);
        let r2 = _mm512_mul_round_pd::<RN>(r, r);
        let p3 = _mm512_fmadd_round_pd::<RN>(b(C1C0), r, b(C200));
        let t = _mm512_sub_round_pd::<RN>(r, rh);
        let idx = _mm512_srli_epi64::<48>(_mm512_castpd_si512(rc));
        let rlo = _mm512_sub_round_pd::<RN>(rl, t);
        let tab_lo = _mm512_permutex2var_pd(
            _mm512_loadu_pd(TAB_LO.as_ptr().cast()),
            idx,
            _mm512_loadu_pd(TAB_LO[8..].as_ptr().cast()),
        );
        let tab_hi = _mm512_permutex2var_pd(
            _mm512_loadu_pd(TAB_HI.as_ptr().cast()),
            idx,
            _mm512_loadu_pd(TAB_HI[8..].as_ptr().cast()),
        );
        let h = _mm512_fmadd_round_pd::<RN>(b(LN2_HI), e, tab_hi);
        let tlo = _mm512_add_round_pd::<RN>(tab_lo, rlo);
        let p1 = _mm512_fmadd_round_pd::<RN>(b(C240), r, b(C280));
        let p8 = _mm512_fmadd_round_pd::<RN>(b(C340), r, b(C380));
        let hs = _mm512_add_round_pd::<RN>(h, r);
        let p3 = _mm512_fmadd_round_pd::<RN>(r2, p3, p1);
        let p12 = _mm512_fmadd_round_pd::<RN>(b(C2C0), r, b(C300));
        let r4 = _mm512_mul_round_pd::<RN>(r2, r2);
        let p12 = _mm512_fmadd_round_pd::<RN>(r2, p12, p8);
        let hd = _mm512_sub_round_pd::<RN>(hs, h);
        let p3 = _mm512_fmadd_round_pd::<RN>(r4, p3, p12);
        let rerr = _mm512_sub_round_pd::<RN>(r, hd);
        let p3 = _mm512_fmadd_round_pd::<RN>(r2, p3, rerr);
        let k0 = _mm512_cmp_round_pd_mask::<_CMP_NEQ_UQ, _MM_FROUND_NO_EXC>(rerr, rerr);
        let z = _mm512_fmadd_round_pd::<RN>(b(LN2_LO), e, tlo);
        let z = _mm512_add_round_pd::<RN>(p3, z);
        let res = _mm512_add_round_pd::<RN>(hs, z);
        (_mm512_or_pd(res, sign), k0)
    }

    #[target_feature(enable = "avx512f,avx512dq")]
    // SAFETY: AVX-512 detected by the caller (see above).
    pub(super) unsafe fn rare_mask(xs: &[f64; LANES]) -> u8 {
        kernel(_mm512_loadu_pd(xs.as_ptr())).1
    }

    /// See [`super::measure_rc_steps`]; each prefix is tried with all-zero and all-one low bits.
    #[target_feature(enable = "avx512f")]
    // SAFETY: AVX-512 detected by the caller (see above).
    pub(super) unsafe fn rc_steps() -> Vec<u16> {
        let rc = |m: u64| -> f64 {
            let v = _mm512_rcp14_pd(_mm512_set1_pd(f64::from_bits(m)));
            let r = _mm512_roundscale_round_pd::<0x58, _MM_FROUND_NO_EXC>(v);
            _mm512_cvtsd_f64(r)
        };
        let mut steps = Vec::new();
        let mut prev = 1.0f64;
        for p in 0u64..1 << 16 {
            let m = ONE | p << 36;
            let (a, z) = (rc(m), rc(m | ((1 << 36) - 1)));
            assert_eq!(
                a.to_bits(),
                z.to_bits(),
                "rcp14 depends on low bits at {p:#x}"
            );
            if a != prev {
                assert_eq!(a, prev - 1.0 / 32.0, "rcp14 step at {p:#x} is not 1/32");
                steps.push(p as u16);
                prev = a;
            }
        }
        steps
    }

    #[inline(always)]
    // SAFETY: AVX-512 detected by the caller (see above).
    unsafe fn fix_rare(x: __m512d, y: __m512d, k: u8) -> __m512d {
        let mut xs = [0.0f64; LANES];
        let mut ys = [0.0f64; LANES];
        _mm512_storeu_pd(xs.as_mut_ptr(), x);
        _mm512_storeu_pd(ys.as_mut_ptr(), y);
        for i in 0..LANES {
            if k >> i & 1 != 0 {
                ys[i] = rare(xs[i]);
            }
        }
        _mm512_loadu_pd(ys.as_ptr())
    }

    /// In place over a slice, 8 lanes at a time; the last partial vector is zero-filled as in
    /// numpy (padding lanes take the main path and are not stored).
    #[target_feature(enable = "avx512f,avx512cd,avx512vl,avx512bw,avx512dq,fma")]
    // SAFETY: AVX-512 detected by the caller (see above).
    pub(super) unsafe fn slice(xs: &mut [f64]) {
        let mut chunks = xs.chunks_exact_mut(LANES);
        for c in &mut chunks {
            let x = _mm512_loadu_pd(c.as_ptr());
            let (mut y, k) = kernel(x);
            if k != 0 {
                y = fix_rare(x, y, k);
            }
            _mm512_storeu_pd(c.as_mut_ptr(), y);
        }
        let rem = chunks.into_remainder();
        if !rem.is_empty() {
            let mask: u8 = ((1u32 << rem.len()) - 1) as u8;
            let x = _mm512_maskz_loadu_pd(mask, rem.as_ptr());
            let (mut y, k) = kernel(x);
            if k & mask != 0 {
                y = fix_rare(x, y, k & mask);
            }
            _mm512_mask_storeu_pd(rem.as_mut_ptr(), mask, y);
        }
    }
}

/// The lanes of `xs` (8 at a time) that SVML's own main path sends to the callout on this CPU
/// (its `Rerr` is NaN), or `None` without AVX-512. Tests check [`is_rare`] against it.
pub fn simd_rare_lanes(xs: &[f64]) -> Option<Vec<bool>> {
    #[cfg(target_arch = "x86_64")]
    if simd_level() == SimdLevel::Avx512 {
        let mut out = Vec::with_capacity(xs.len());
        for c in xs.chunks(LANES) {
            let mut buf = [0.0f64; LANES];
            buf[..c.len()].copy_from_slice(c);
            // SAFETY: AVX-512 was detected at run time.
            let k = unsafe { avx512::rare_mask(&buf) };
            out.extend((0..c.len()).map(|i| k >> i & 1 != 0));
        }
        return Some(out);
    }
    let _ = xs;
    None
}

/// The top-16-significand-bit values at which this CPU's `roundscale(rcp14(M), 2^-5)` steps
/// down, measured over all 2^16 prefixes of M in [1, 2) (`None` without AVX-512). The portable
/// port assumes [`RC_STEPS`]; tests check that they agree here.
pub fn measure_rc_steps() -> Option<Vec<u16>> {
    #[cfg(target_arch = "x86_64")]
    if simd_level() == SimdLevel::Avx512 {
        // SAFETY: AVX-512 was detected at run time.
        return Some(unsafe { avx512::rc_steps() });
    }
    None
}

pub use super::{simd_level, SimdLevel};

/// In-place numpy/SVML float64 log1p over a slice, with the fastest variant this CPU runs.
pub fn log1p_slice(xs: &mut [f64]) {
    log1p_slice_at(simd_level(), xs);
}

/// [`log1p_slice`] with a forced variant (tests and benches); a level the CPU lacks falls back
/// to [`SimdLevel::Scalar`].
pub fn log1p_slice_at(level: SimdLevel, xs: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        let have = simd_level();
        match (level, have) {
            // SAFETY: the features were detected at run time.
            (SimdLevel::Avx512, SimdLevel::Avx512) => return unsafe { avx512::slice(xs) },
            (SimdLevel::Avx2Fma, SimdLevel::Avx512 | SimdLevel::Avx2Fma) => {
                // SAFETY: AVX2 and FMA were detected at run time (x86-64-v4 includes them).
                return unsafe { slice_portable_avx2(xs) };
            }
            _ => {}
        }
    }
    let _ = level;
    slice_portable_body(xs);
}
