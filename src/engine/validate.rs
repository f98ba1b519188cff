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

#[cfg(test)]
mod tests {
    use super::*;

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
