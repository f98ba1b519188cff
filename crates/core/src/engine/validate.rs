//! Content checks on sparse structure, done as the data streams by.

use crate::array::NumVec;

/// Checks one piece of `indptr` (`piece[0]` is entry `at`): non-negative, non-decreasing,
/// continuing from the previous piece's last entry, and starting at 0.
pub fn check_indptr_piece(piece: &[i64], at: u64, previous: Option<i64>) -> Result<(), String> {
    if at == 0 {
        if let Some(&first) = piece.first() {
            if first != 0 {
                return Err(format!("indptr[0] is {first}, not 0"));
            }
        }
    }
    let mut last = previous.unwrap_or(0);
    for (k, &p) in piece.iter().enumerate() {
        if p < last {
            return Err(format!(
                "indptr is not monotone: indptr[{}] = {p} < indptr[{}] = {last}",
                at + k as u64,
                at + k as u64 - 1
            ));
        }
        last = p;
    }
    Ok(())
}

/// Converts stored indices to u32 positions, checking each is in `0..bound`.
/// `first` is the position of `indices[0]` in the whole array, for the message.
/// Converts in one step from the stored dtype (no wider temporary: blocks are large).
pub fn indices_in_range(indices: NumVec, bound: u64, first: u64) -> Result<Vec<u32>, String> {
    if bound > u64::from(u32::MAX) + 1 {
        return Err(format!(
            "{bound} positions along the indexed axis: more than 2^32 is not supported"
        ));
    }
    macro_rules! convert {
        ($v:expr) => {{
            let mut out = Vec::with_capacity($v.len());
            let mut bad = None;
            for (k, &i) in $v.iter().enumerate() {
                // i128 holds every stored integer type exactly.
                let wide = i as i128;
                if wide < 0 || wide >= bound as i128 {
                    bad.get_or_insert((k, wide));
                }
                out.push(wide as u32);
            }
            match bad {
                None => Ok(out),
                Some((k, i)) => Err(format!(
                    "index out of range: indices[{}] = {i}, but the matrix has {bound} along that axis",
                    first + k as u64
                )),
            }
        }};
    }
    match indices {
        NumVec::I8(v) => convert!(v),
        NumVec::I16(v) => convert!(v),
        NumVec::I32(v) => convert!(v),
        NumVec::I64(v) => convert!(v),
        NumVec::U8(v) => convert!(v),
        NumVec::U16(v) => convert!(v),
        NumVec::U32(v) => convert!(v),
        NumVec::U64(v) => convert!(v),
        NumVec::F32(_) | NumVec::F64(_) => Err("indices are not integers".to_string()),
    }
}

/// Checks that every stored index is in `0..bound` without converting: a branch-free
/// min/max over the block (vectorized), then, only if that fails, a search for the first
/// offender for the message. `first` is the position of `indices[0]` in the whole array.
pub fn check_indices(indices: &NumVec, bound: u64, first: u64) -> Result<(), String> {
    if bound > u64::from(u32::MAX) + 1 {
        return Err(format!(
            "{bound} positions along the indexed axis: more than 2^32 is not supported"
        ));
    }
    macro_rules! check {
        ($v:expr) => {{
            let v = $v;
            // min and max in i128 (exact for every stored integer type).
            let (mut lo, mut hi) = (0i128, -1i128);
            for c in v.chunks(1 << 14) {
                let cmin = c
                    .iter()
                    .copied()
                    .fold(c[0], |a, b| if b < a { b } else { a });
                let cmax = c
                    .iter()
                    .copied()
                    .fold(c[0], |a, b| if b > a { b } else { a });
                if hi < lo {
                    (lo, hi) = (cmin as i128, cmax as i128);
                } else {
                    lo = lo.min(cmin as i128);
                    hi = hi.max(cmax as i128);
                }
            }
            if v.is_empty() || (lo >= 0 && hi < bound as i128) {
                return Ok(());
            }
            let (k, &i) = v
                .iter()
                .enumerate()
                .find(|(_, &i)| (i as i128) < 0 || (i as i128) >= bound as i128)
                .expect("min or max is out of range");
            Err(format!(
                "index out of range: indices[{}] = {}, but the matrix has {bound} along that axis",
                first + k as u64,
                i as i128
            ))
        }};
    }
    match indices {
        NumVec::I8(v) => check!(v),
        NumVec::I16(v) => check!(v),
        NumVec::I32(v) => check!(v),
        NumVec::I64(v) => check!(v),
        NumVec::U8(v) => check!(v),
        NumVec::U16(v) => check!(v),
        NumVec::U32(v) => check!(v),
        NumVec::U64(v) => check!(v),
        NumVec::F32(_) | NumVec::F64(_) => Err("indices are not integers".to_string()),
    }
}

/// Checks scipy's canonical form: within each row (CSR) or column (CSC) the stored indices
/// strictly increase. For integer data scanpy first calls `astype(float32)`, and scipy's
/// `astype` puts a non-canonical matrix into that form (sorts each row's indices, sums the
/// duplicates in the stored integer type): the output then has another sparsity pattern than
/// the input, which atlasnorm copies. Refusing is better than a silently different matrix.
/// `offsets[k]..offsets[k + 1]` are slice `first_slice + k`'s positions in `indices`, which
/// starts at value `first_value` of the whole array; `slice` names a slice ("row", "column").
pub fn check_canonical(
    indices: &NumVec,
    offsets: &[usize],
    first_slice: u64,
    first_value: u64,
    slice: &str,
) -> Result<(), String> {
    match indices {
        NumVec::I8(v) => canonical(v, offsets, first_slice, first_value, slice),
        NumVec::I16(v) => canonical(v, offsets, first_slice, first_value, slice),
        NumVec::I32(v) => canonical(v, offsets, first_slice, first_value, slice),
        NumVec::I64(v) => canonical(v, offsets, first_slice, first_value, slice),
        NumVec::U8(v) => canonical(v, offsets, first_slice, first_value, slice),
        NumVec::U16(v) => canonical(v, offsets, first_slice, first_value, slice),
        NumVec::U32(v) => canonical(v, offsets, first_slice, first_value, slice),
        NumVec::U64(v) => canonical(v, offsets, first_slice, first_value, slice),
        NumVec::F32(_) | NumVec::F64(_) => Err("indices are not integers".to_string()),
    }
}

/// [`check_canonical`] over one index type (also used on already converted u32 indices).
pub fn canonical<I: Copy + Into<i128>>(
    v: &[I],
    offsets: &[usize],
    first_slice: u64,
    first_value: u64,
    slice: &str,
) -> Result<(), String> {
    for (k, w) in offsets.windows(2).enumerate() {
        let s = &v[w[0]..w[1]];
        if let Some(j) = s.windows(2).position(|p| p[0].into() >= p[1].into()) {
            let at = first_value + (w[0] + j) as u64;
            return Err(format!(
                "{slice} {} is not in canonical form: indices[{}] = {} is followed by {} \
                 (unsorted or duplicate indices); for integer data scanpy sorts and sums them \
                 (scipy's astype), which changes the matrix's structure, and atlasnorm does not: \
                 store it sorted without duplicates (scipy's sum_duplicates) or as floats",
                first_slice + k as u64,
                at,
                s[j].into(),
                s[j + 1].into()
            ));
        }
    }
    Ok(())
}

/// Checked indices (see [`check_indices`]) as u32 into a reused buffer.
pub fn indices_into_u32(indices: &NumVec, out: &mut Vec<u32>) {
    out.clear();
    macro_rules! conv {
        ($v:expr) => {
            out.extend($v.iter().map(|&i| i as u32))
        };
    }
    match indices {
        NumVec::I8(v) => conv!(v),
        NumVec::I16(v) => conv!(v),
        NumVec::I32(v) => conv!(v),
        NumVec::I64(v) => conv!(v),
        NumVec::U8(v) => conv!(v),
        NumVec::U16(v) => conv!(v),
        NumVec::U32(v) => conv!(v),
        NumVec::U64(v) => conv!(v),
        NumVec::F32(_) | NumVec::F64(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_checks_agree_with_the_converting_check() {
        let cases: Vec<(NumVec, u64)> = vec![
            (NumVec::I32(vec![0, 4, 2]), 5),
            (NumVec::I32(vec![0, 5, -1]), 5),
            (NumVec::I64(vec![-1]), 5),
            (NumVec::U16(vec![7, 1]), 5),
            (NumVec::U64(vec![u64::MAX]), 5),
            (NumVec::I8(vec![]), 5),
            (NumVec::I32((0..100_000).map(|i| i % 7).collect()), 7),
            (
                NumVec::I32(
                    (0..100_000)
                        .map(|i| if i == 77_777 { 9 } else { 1 })
                        .collect(),
                ),
                7,
            ),
        ];
        for (v, bound) in cases {
            let old = indices_in_range(v.clone(), bound, 10);
            let new = check_indices(&v, bound, 10);
            assert_eq!(old.as_ref().err(), new.as_ref().err(), "{v:?}");
            if let Ok(old) = old {
                let mut out = vec![99];
                indices_into_u32(&v, &mut out);
                assert_eq!(out, old);
            }
        }
    }

    #[test]
    fn canonical_form_is_strictly_increasing_indices_per_slice() {
        let v = NumVec::I32(vec![0, 3, 4, 1, 2, 2, 5]);
        // rows: [0, 3, 4] [1, 2] [2, 5]
        assert!(check_canonical(&v, &[0, 3, 5, 7], 0, 0, "row").is_ok());
        // [0, 3, 4, 1] is unsorted
        let err = check_canonical(&v, &[0, 4, 7], 10, 100, "row").unwrap_err();
        assert!(
            err.starts_with("row 10 is not in canonical form: indices[102] = 4 is followed by 1"),
            "{err}"
        );
        // [1, 2, 2] has a duplicate
        let err = check_canonical(&v, &[0, 3, 6, 7], 0, 0, "column").unwrap_err();
        assert!(
            err.starts_with("column 1 is not in canonical form: indices[4] = 2 is followed by 2"),
            "{err}"
        );
        assert!(check_canonical(&NumVec::U64(vec![]), &[0, 0], 0, 0, "row").is_ok());
    }

    #[test]
    fn indptr_must_start_at_zero_and_not_decrease() {
        assert!(check_indptr_piece(&[0, 1, 1, 4], 0, None).is_ok());
        assert!(check_indptr_piece(&[1, 2], 0, None).is_err());
        assert!(check_indptr_piece(&[0, 3, 2], 0, None).is_err());
        assert!(check_indptr_piece(&[5, 6], 10, Some(5)).is_ok());
        let err = check_indptr_piece(&[4, 6], 10, Some(5)).unwrap_err();
        assert!(err.contains("indptr[10] = 4"), "{err}");
    }

    #[test]
    fn indices_out_of_range_are_named() {
        assert_eq!(
            indices_in_range(NumVec::U16(vec![0, 4]), 5, 0).unwrap(),
            vec![0, 4]
        );
        let err = indices_in_range(NumVec::I32(vec![0, 5, -1]), 5, 100).unwrap_err();
        assert!(err.contains("indices[101] = 5"), "{err}");
        assert!(indices_in_range(NumVec::I64(vec![-1]), 5, 0).is_err());
    }
}
