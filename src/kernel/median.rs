//! The default target: `np.median(totals[totals > 0])` (scanpy 1.12.4, SPEC-scanpy.md §1.3).

use super::real::Real;

/// Median of the totals that are > 0 (zero, negative and NaN excluded, +inf included), in T.
/// Odd count: the middle value. Even count: `fl(fl(a + b) / 2)` — `np.median` takes `np.mean`
/// of the two middle values, which sums them in T and divides by 2 in T (so two huge values
/// can overflow to +inf, as in numpy). No positive total: NaN.
pub fn median_of_positive<T: Real>(totals: &[T]) -> T {
    let mut pos: Vec<T> = totals.iter().copied().filter(|&t| t > T::ZERO).collect();
    let n = pos.len();
    if n == 0 {
        return T::NAN;
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
