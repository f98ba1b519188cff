//! numpy's and Python's text of a float: `repr(float)`, and `astype(str)` of float16, float32
//! and float64 arrays (what scanpy and anndata make of numeric names and metadata). Each is
//! the fewest digits that read back to the value (the closest such), laid out positionally
//! within a range of magnitudes that depends on the type, else in scientific notation.

/// Python's `repr` of a float (numpy's `str` of a float64, the same): the shortest digits that
/// read back to `x` (the closest such), positional for 1e-4 <= |x| < 1e16 (with `.0` on
/// integers), otherwise as `d.ddde±XX`.
pub fn python_float_repr(x: f64) -> String {
    if !x.is_finite() {
        return non_finite(x.is_nan(), x > 0.0);
    }
    let a = x.abs();
    shortest_layout(
        &closest_shortest(a),
        x.is_sign_negative(),
        (1e-4..1e16).contains(&a),
    )
}

/// numpy's `str` of a float32 (its `astype(str)`): as [`python_float_repr`] with the digits
/// of the float32, positional for 1e-4 <= |x| < 1e6 (`str(np.float32(1e6))` is `1e+06`, and
/// `np.float32(1e-4)`, just below 1e-4, is `1e-04`).
pub fn numpy_f32_str(x: f32) -> String {
    if !x.is_finite() {
        return non_finite(x.is_nan(), x > 0.0);
    }
    let a = x.abs();
    let positional = (1e-4..1e6).contains(&f64::from(a));
    shortest_layout(&closest_shortest(a), x.is_sign_negative(), positional)
}

/// numpy's `str` of a float16: the fewest digits that read back to the float16 (the closest
/// such), positional for 1e-4 <= |x| < 1e3 (`str(np.float16(1000))` is `1e+03`).
pub fn numpy_f16_str(x: half::f16) -> String {
    let v = f64::from(x.to_f32());
    if !v.is_finite() {
        return non_finite(v.is_nan(), v > 0.0);
    }
    let a = v.abs();
    // at most 5 significant digits tell float16s apart; a candidate reads back when parsing
    // it (to f64, then rounding to float16) gives x again
    let sci = (1..=5)
        .map(|n| format!("{a:.*e}", n - 1))
        .find(|c| {
            c.parse::<f64>()
                .is_ok_and(|y| half::f16::from_f64(y) == half::f16::from_f64(a))
        })
        .unwrap_or_else(|| format!("{a:e}"));
    shortest_layout(&sci, v.is_sign_negative(), (1e-4..1e3).contains(&a))
}

/// The fewest significant digits that read back to `a` (>= 0), the closest such, as `{:e}`
/// text. Rust's `{:e}` finds how many digits, but not always the closest of them (Python and
/// numpy write the closest): rewritten with that many digits, correctly rounded, when that
/// still reads back.
fn closest_shortest<T>(a: T) -> String
where
    T: std::fmt::LowerExp + std::str::FromStr + PartialEq + Copy,
{
    let shortest = format!("{a:e}");
    let closest = format!("{a:.*e}", significant_digits(&shortest) - 1);
    match closest.parse::<T>() {
        Ok(y) if y == a => closest,
        _ => shortest,
    }
}

fn non_finite(nan: bool, positive: bool) -> String {
    match (nan, positive) {
        (true, _) => "nan",
        (false, true) => "inf",
        (false, false) => "-inf",
    }
    .into()
}

/// The number of significant digits of Rust's `{:e}` text ("1.25e3" → 3).
fn significant_digits(sci: &str) -> usize {
    let mantissa = sci.split_once('e').map_or(sci, |(m, _)| m);
    mantissa.bytes().filter(u8::is_ascii_digit).count()
}

/// Python's and numpy's layout of the digits `sci` (Rust's `{:e}` of |x|): positional
/// (`0.000123`, `12.5`, `100.0`) or scientific (`1.25e-05`, `1e+16`).
fn shortest_layout(sci: &str, negative: bool, positional: bool) -> String {
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    let digits = match digits.trim_end_matches('0') {
        "" => "0".to_string(),
        d => d.to_string(),
    };
    let sign = if negative { "-" } else { "" };
    let point = exp + 1; // digits * 10^(point - len)
    let n = digits.len() as i32;
    let body = if !positional && digits != "0" {
        let tail = if n > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{}{tail}e{esign}{:02}", &digits[..1], exp.abs())
    } else if digits == "0" {
        "0.0".to_string()
    } else if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point < n {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    } else {
        format!("{digits}{}.0", "0".repeat((point - n) as usize))
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_as_python_writes_it() {
        for (x, r) in [
            (1.5, "1.5"),
            (2.0, "2.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (-1.5e300, "-1.5e+300"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::INFINITY, "inf"),
            // the closest of the shortest digits, not Rust's pick
            (918596433464537.2, "918596433464537.2"),
        ] {
            assert_eq!(python_float_repr(x), r, "{x:e}");
        }
        for (x, r) in [
            (4070934.2f32, "4.0709342e+06"),
            (343126.12, "343126.12"),
            (1e-4, "1e-04"),
            (1.1e-4, "0.00011"),
            (1e6, "1e+06"),
            (999999.94, "999999.94"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (16777216.0, "1.6777216e+07"),
        ] {
            assert_eq!(numpy_f32_str(x), r, "{x:e}");
        }
        for (x, r) in [
            (0.1f32, "0.1"),
            (1000.0, "1e+03"),
            (65504.0, "6.55e+04"),
            (2048.0, "2.048e+03"),
            (2052.0, "2.052e+03"),
            (1e-4, "0.0001"),
            (6e-8, "6e-08"),
            (0.333, "0.333"),
            (100.0, "100.0"),
        ] {
            assert_eq!(numpy_f16_str(half::f16::from_f32(x)), r, "{x:e}");
        }
    }
}
