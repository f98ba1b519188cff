//! Names out of AnnData's string encodings, the same in every backend: a
//! `nullable-string-array` (values + mask) and a `categorical` (codes into categories).

/// `values` with masked entries shown as pandas shows them (`<NA>`); a mask of another length
/// is ignored.
pub(crate) fn masked(values: Vec<String>, mask: Option<Vec<bool>>) -> Vec<String> {
    match mask {
        Some(mask) if mask.len() == values.len() => values
            .into_iter()
            .zip(mask)
            .map(|(v, m)| if m { "<NA>".to_string() } else { v })
            .collect(),
        _ => values,
    }
}

/// The category of each code; a negative or out-of-range code (pandas' missing value) is `<NA>`.
pub(crate) fn decode_categorical(categories: &[String], codes: Vec<i64>) -> Vec<String> {
    codes
        .into_iter()
        .map(|c| {
            usize::try_from(c)
                .ok()
                .and_then(|c| categories.get(c).cloned())
                .unwrap_or_else(|| "<NA>".to_string())
        })
        .collect()
}
