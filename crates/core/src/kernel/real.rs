//! The working dtype of a normalization run: `f32` or `f64`, exactly as scanpy keeps it.
//!
//! Every kernel is generic over [`Real`] so the f32 and f64 paths share one source. The
//! arithmetic operators are plain IEEE operations in the type itself (round to nearest), which
//! is what numpy and numba do for the dtype.

use std::ops::{Add, Div, Mul, Sub};

use crate::array::{DType, NumVec};

use super::log1p::Log1p;

/// `f32` or `f64`.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + PartialEq
    + std::fmt::Debug
    + Default
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    /// The numpy dtype this type stands for.
    const DTYPE: DType;
    /// `+0.0`.
    const ZERO: Self;
    /// `-0.0` (a distinct bit pattern that the kernels keep).
    const NEG_ZERO: Self;
    /// `1.0`.
    const ONE: Self;
    /// `2.0`.
    const TWO: Self;
    /// A quiet NaN.
    const NAN: Self;

    /// Rounds `x` to the type once (round to nearest, ties to even); identity for f64.
    fn from_f64(x: f64) -> Self;
    /// Exact widening.
    fn to_f64(self) -> f64;
    /// Stored values converted with numpy's `astype` rules ([`NumVec::to_f32`] / [`NumVec::to_f64`]).
    fn from_numvec(v: NumVec) -> Vec<Self>;
    /// Wraps values of this type in the matching [`NumVec`] variant, without conversion.
    fn into_numvec(v: Vec<Self>) -> NumVec;
    /// Whether `self` is a NaN (of any sign or payload).
    fn is_nan(self) -> bool;
    /// Raw bits, widened to u64 (for bit-exact comparisons in tests and diagnostics).
    fn to_bits_u64(self) -> u64;
    /// `self` as an array index if its bits are exactly those of one of `+0.0, 1.0, ..., n - 1`
    /// (`n` <= 2^24). Used by the per-row small-integer log1p table, so it must never round
    /// (1.5 is not 1) and `-0.0` is *not* 0 (its quotient and log1p keep the sign).
    fn small_index(self, n: u32) -> Option<usize>;
    /// In-place log1p (with the base of `l`) over a slice in this dtype.
    fn log1p_slice(l: &Log1p, xs: &mut [Self]);
    /// The f64 sum of `row` (at most 2^20 values) in any order, if every value is an integer
    /// small enough that each partial sum is exact; else `None`
    /// ([`integer_sum`](super::totals::integer_sum)).
    fn exact_integer_sum(row: &[Self]) -> Option<f64>;
}

impl Real for f32 {
    const DTYPE: DType = DType::F32;
    const ZERO: Self = 0.0;
    const NEG_ZERO: Self = -0.0;
    const ONE: Self = 1.0;
    const TWO: Self = 2.0;
    const NAN: Self = f32::NAN;

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_numvec(v: NumVec) -> Vec<Self> {
        v.to_f32()
    }
    fn into_numvec(v: Vec<Self>) -> NumVec {
        NumVec::F32(v)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    #[inline(always)]
    fn to_bits_u64(self) -> u64 {
        self.to_bits() as u64
    }
    #[inline(always)]
    fn small_index(self, n: u32) -> Option<usize> {
        // `as u32` saturates (negative -> 0, NaN -> 0); the bitwise round trip rejects those,
        // every non-integer and -0.0.
        let i = self as u32;
        (i < n && (i as f32).to_bits() == self.to_bits()).then_some(i as usize)
    }
    fn log1p_slice(l: &Log1p, xs: &mut [Self]) {
        l.apply_f32(xs);
    }
    #[inline(always)]
    fn exact_integer_sum(row: &[Self]) -> Option<f64> {
        super::totals::integer_sum_f32(row)
    }
}

impl Real for f64 {
    const DTYPE: DType = DType::F64;
    const ZERO: Self = 0.0;
    const NEG_ZERO: Self = -0.0;
    const ONE: Self = 1.0;
    const TWO: Self = 2.0;
    const NAN: Self = f64::NAN;

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    fn from_numvec(v: NumVec) -> Vec<Self> {
        v.to_f64()
    }
    fn into_numvec(v: Vec<Self>) -> NumVec {
        NumVec::F64(v)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    #[inline(always)]
    fn to_bits_u64(self) -> u64 {
        self.to_bits()
    }
    #[inline(always)]
    fn small_index(self, n: u32) -> Option<usize> {
        let i = self as u32;
        (i < n && (i as f64).to_bits() == self.to_bits()).then_some(i as usize)
    }
    fn log1p_slice(l: &Log1p, xs: &mut [Self]) {
        l.apply_f64(xs);
    }
    #[inline(always)]
    fn exact_integer_sum(row: &[Self]) -> Option<f64> {
        super::totals::integer_sum_f64(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_f64_rounds_once_to_nearest_even() {
        // 1 + 2^-24 is halfway between 1 and 1 + 2^-23: ties to even -> 1.
        assert_eq!(<f32 as Real>::from_f64(1.0 + 2f64.powi(-24)), 1.0);
        // Just above the halfway point rounds up.
        assert_eq!(
            <f32 as Real>::from_f64(1.0 + 2f64.powi(-24) + 2f64.powi(-40)),
            1.0 + f32::EPSILON
        );
    }

    #[test]
    fn small_index_is_exact() {
        assert_eq!(3.0f32.small_index(16), Some(3));
        assert_eq!(0.0f32.small_index(16), Some(0));
        assert_eq!((-0.0f32).small_index(16), None);
        assert_eq!(2.5f32.small_index(16), None);
        assert_eq!(16.0f32.small_index(16), None);
        assert_eq!((-1.0f32).small_index(16), None);
        assert_eq!(f32::NAN.small_index(16), None);
        assert_eq!(f32::INFINITY.small_index(16), None);
        assert_eq!(1e-45f32.small_index(16), None);
        assert_eq!(7.0f64.small_index(8), Some(7));
        assert_eq!(7.000000001f64.small_index(8), None);
    }

    #[test]
    fn numvec_round_trip_keeps_dtype() {
        let v = <f32 as Real>::from_numvec(NumVec::I32(vec![1, 16_777_217]));
        assert_eq!(v, vec![1.0, 16_777_216.0]);
        assert_eq!(<f32 as Real>::into_numvec(v).dtype(), DType::F32);
        assert_eq!(<f64 as Real>::into_numvec(vec![1.0]).dtype(), DType::F64);
    }
}
