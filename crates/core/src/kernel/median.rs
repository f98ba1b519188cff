//! The default target: `np.median(totals[totals > 0])` (scanpy 1.12.4, SPEC-scanpy.md §1.3).

use super::real::Real;

/// Median of the totals that are > 0 (zero, negative and NaN excluded, +inf included), in T.
/// Odd count: the middle value. Even count: `fl(fl(a + b) / 2)` — `np.median` takes `np.mean`
/// of the two middle values, which sums them in T and divides by 2 in T (so two huge values
/// can overflow to +inf, as in numpy). No positive total: NaN (numpy's, sign bit set).
pub fn median_of_positive<T: Real>(totals: &[T]) -> T {
    let mut pos: Vec<T> = totals.iter().copied().filter(|&t| t > T::ZERO).collect();
    let n = pos.len();
    if n == 0 {
        // np.mean of an empty array is 0/0: the x86 default NaN, which is *negative*. Its sign
        // travels into the factors (total / NaN keeps the NaN operand), so it is matched too.
        return T::from_f64(f64::from_bits(0xfff8_0000_0000_0000));
    }
    // No NaN is left, so partial_cmp is total here.
    let cmp = |a: &T, b: &T| a.partial_cmp(b).expect("no NaN among positive totals");
    let (_, &mut hi, _) = pos.select_nth_unstable_by(n / 2, cmp);
    if n % 2 == 1 {
        return hi;
    }
    // The lower middle is the largest value below position n/2.
    let lo = pos[..n / 2]
        .iter()
        .copied()
        .fold(T::NEG_ZERO, |m, v| if v > m { v } else { m });
    (lo + hi) / T::TWO
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testdata::mask_median::{MEDIAN_F32, MEDIAN_F64};
    use crate::kernel::testdata::{f32s, f64s};

    #[test]
    fn matches_scanpy_compute_nnz_median() {
        // Cases: odd, even, zeros, NaN, +inf, none positive, empty, overflow of a + b, ties.
        for (totals, want) in MEDIAN_F32 {
            let t = f32s(totals);
            assert_eq!(median_of_positive(&t).to_bits(), *want, "{t:?}");
        }
        for (totals, want) in MEDIAN_F64 {
            let t = f64s(totals);
            assert_eq!(
                median_of_positive(&t).to_bits(),
                *want,
                "{} values",
                t.len()
            );
        }
    }

    #[test]
    fn even_count_rounds_the_sum_first() {
        // Provenance: the [3.4028235e38, 3.4028235e38] case above (numpy gives +inf because
        // a + b overflows in f32 before the halving); checked here against a naive midpoint.
        let t = [f32::MAX, f32::MAX];
        assert_eq!(median_of_positive(&t), f32::INFINITY);
        assert!(MEDIAN_F32.iter().any(|(v, m)| v.len() == 2
            && v[0] == f32::MAX.to_bits()
            && *m == f32::INFINITY.to_bits()));
    }
}
