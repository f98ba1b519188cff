//! Plain numeric buffers as they come out of a store, before any normalization.
//!
//! Stores hand back whatever dtype the file holds; the engine converts to its working
//! dtype with [`NumVec::to_f32`] / [`NumVec::to_f64`], which round exactly like numpy's
//! `astype` (round to nearest, ties to even).

use std::fmt;

/// The element types of [`NumVec`]: numeric primitives without padding for which every bit
/// pattern is a valid value, so a `[T]` may be viewed as bytes and filled from bytes
/// ([`as_bytes`], [`as_bytes_mut`]). Generic byte-level code bounds on this trait instead of
/// `Copy`, which `bool` or a padded struct also satisfy.
///
/// # Safety
/// Implement only for types with no padding bytes, no invalid bit patterns and no interior
/// pointers (the integer and float primitives below).
// SAFETY: the contract above is what `as_bytes` / `as_bytes_mut` rely on.
pub unsafe trait Plain: Copy + Default + Send + Sync + 'static {}

// SAFETY: fixed-size integers and IEEE floats: no padding, every bit pattern a valid value.
unsafe impl Plain for i8 {}
// SAFETY: as above.
unsafe impl Plain for i16 {}
// SAFETY: as above.
unsafe impl Plain for i32 {}
// SAFETY: as above.
unsafe impl Plain for i64 {}
// SAFETY: as above.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: as above.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for f64 {}

/// The bytes of a slice of plain values (native endian).
pub fn as_bytes<T: Plain>(s: &[T]) -> &[u8] {
    // SAFETY: T: Plain has no padding, so all size_of_val(s) bytes are initialized; u8 has
    // alignment 1; the byte slice borrows `s` for its lifetime.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

/// The bytes of a mutable slice of plain values, to fill from a decoder or a file.
pub fn as_bytes_mut<T: Plain>(s: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; in addition every bit pattern written through the byte view
    // is a valid T (T: Plain), and the view borrows `s` mutably, so nothing else aliases it.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

/// Element type of a stored numeric array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 8-bit signed integer (numpy `int8`).
    I8,
    /// 16-bit signed integer (numpy `int16`).
    I16,
    /// 32-bit signed integer (numpy `int32`).
    I32,
    /// 64-bit signed integer (numpy `int64`).
    I64,
    /// 8-bit unsigned integer (numpy `uint8`).
    U8,
    /// 16-bit unsigned integer (numpy `uint16`).
    U16,
    /// 32-bit unsigned integer (numpy `uint32`).
    U32,
    /// 64-bit unsigned integer (numpy `uint64`).
    U64,
    /// IEEE 754 single precision (numpy `float32`).
    F32,
    /// IEEE 754 double precision (numpy `float64`).
    F64,
}

impl DType {
    /// Whether this is `float32` or `float64`.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Whether this is one of the signed or unsigned integer types (every non-float dtype).
    pub fn is_integer(self) -> bool {
        !self.is_float()
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// numpy's name for the type (`float32`, `int64`, ...), used in messages and `inspect`.
    pub fn numpy_name(self) -> &'static str {
        match self {
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.numpy_name())
    }
}

/// A numeric buffer in one of the stored dtypes.
#[derive(Clone, Debug, PartialEq)]
pub enum NumVec {
    /// Values stored as [`DType::I8`].
    I8(Vec<i8>),
    /// Values stored as [`DType::I16`].
    I16(Vec<i16>),
    /// Values stored as [`DType::I32`].
    I32(Vec<i32>),
    /// Values stored as [`DType::I64`].
    I64(Vec<i64>),
    /// Values stored as [`DType::U8`].
    U8(Vec<u8>),
    /// Values stored as [`DType::U16`].
    U16(Vec<u16>),
    /// Values stored as [`DType::U32`].
    U32(Vec<u32>),
    /// Values stored as [`DType::U64`].
    U64(Vec<u64>),
    /// Values stored as [`DType::F32`].
    F32(Vec<f32>),
    /// Values stored as [`DType::F64`].
    F64(Vec<f64>),
}

/// Applies one expression to the inner `Vec` of every variant.
macro_rules! each_variant {
    ($value:expr, $v:ident => $body:expr) => {
        match $value {
            NumVec::I8($v) => $body,
            NumVec::I16($v) => $body,
            NumVec::I32($v) => $body,
            NumVec::I64($v) => $body,
            NumVec::U8($v) => $body,
            NumVec::U16($v) => $body,
            NumVec::U32($v) => $body,
            NumVec::U64($v) => $body,
            NumVec::F32($v) => $body,
            NumVec::F64($v) => $body,
        }
    };
}

/// One expression per variant, with the same variant around its result.
macro_rules! map_variant {
    ($value:expr, $v:ident => $body:expr) => {
        match $value {
            NumVec::I8($v) => NumVec::I8($body),
            NumVec::I16($v) => NumVec::I16($body),
            NumVec::I32($v) => NumVec::I32($body),
            NumVec::I64($v) => NumVec::I64($body),
            NumVec::U8($v) => NumVec::U8($body),
            NumVec::U16($v) => NumVec::U16($body),
            NumVec::U32($v) => NumVec::U32($body),
            NumVec::U64($v) => NumVec::U64($body),
            NumVec::F32($v) => NumVec::F32($body),
            NumVec::F64($v) => NumVec::F64($body),
        }
    };
}

impl NumVec {
    /// The values' bytes, in native byte order (little endian on every supported target).
    pub fn as_bytes(&self) -> &[u8] {
        each_variant!(self, v => as_bytes(v))
    }

    /// A copy of the values at `range`, in the same dtype.
    ///
    /// # Panics
    /// When `range` is out of bounds.
    pub fn slice(&self, range: std::ops::Range<usize>) -> NumVec {
        map_variant!(self, v => v[range].to_vec())
    }

    /// The stored dtype of the values (the variant).
    pub fn dtype(&self) -> DType {
        match self {
            NumVec::I8(_) => DType::I8,
            NumVec::I16(_) => DType::I16,
            NumVec::I32(_) => DType::I32,
            NumVec::I64(_) => DType::I64,
            NumVec::U8(_) => DType::U8,
            NumVec::U16(_) => DType::U16,
            NumVec::U32(_) => DType::U32,
            NumVec::U64(_) => DType::U64,
            NumVec::F32(_) => DType::F32,
            NumVec::F64(_) => DType::F64,
        }
    }

    /// Number of values (elements, not bytes).
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// Whether the buffer holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values as float32, rounded like numpy's `astype(np.float32)`.
    #[allow(clippy::unnecessary_cast)] // the macro covers the identity case too
    pub fn to_f32(self) -> Vec<f32> {
        match self {
            NumVec::F32(v) => v,
            other => each_variant!(other, v => v.into_iter().map(|x| x as f32).collect()),
        }
    }

    #[allow(clippy::unnecessary_cast)]
    /// Values as float64 (exact for every stored type but 64-bit integers above 2^53).
    pub fn to_f64(self) -> Vec<f64> {
        match self {
            NumVec::F64(v) => v,
            other => each_variant!(other, v => v.into_iter().map(|x| x as f64).collect()),
        }
    }

    #[allow(clippy::unnecessary_cast)]
    /// Integer values as i64 (used for `indptr` and `indices`); `None` for float buffers
    /// or a u64 value above `i64::MAX`.
    pub fn to_i64(self) -> Option<Vec<i64>> {
        match self {
            NumVec::F32(_) | NumVec::F64(_) => None,
            NumVec::U64(v) => v.into_iter().map(|x| i64::try_from(x).ok()).collect(),
            NumVec::I64(v) => Some(v),
            other => each_variant!(other, v => Some(v.into_iter().map(|x| x as i64).collect())),
        }
    }
}

/// Calls the generic read `$f::<T>(args)` for the Rust type `T` of a stored [`DType`] and wraps
/// the vector it returns in the matching [`NumVec`] variant: one dispatch for every backend.
#[macro_export]
macro_rules! by_dtype {
    ($dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            $crate::array::DType::I8 => $f::<i8>($($arg),*).map($crate::array::NumVec::I8),
            $crate::array::DType::I16 => $f::<i16>($($arg),*).map($crate::array::NumVec::I16),
            $crate::array::DType::I32 => $f::<i32>($($arg),*).map($crate::array::NumVec::I32),
            $crate::array::DType::I64 => $f::<i64>($($arg),*).map($crate::array::NumVec::I64),
            $crate::array::DType::U8 => $f::<u8>($($arg),*).map($crate::array::NumVec::U8),
            $crate::array::DType::U16 => $f::<u16>($($arg),*).map($crate::array::NumVec::U16),
            $crate::array::DType::U32 => $f::<u32>($($arg),*).map($crate::array::NumVec::U32),
            $crate::array::DType::U64 => $f::<u64>($($arg),*).map($crate::array::NumVec::U64),
            $crate::array::DType::F32 => $f::<f32>($($arg),*).map($crate::array::NumVec::F32),
            $crate::array::DType::F64 => $f::<f64>($($arg),*).map($crate::array::NumVec::F64),
        }
    };
}
pub use crate::by_dtype;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_to_f32_rounds_to_nearest_even_like_numpy() {
        // 2^24 + 1 is halfway between 2^24 and 2^24 + 2: ties go to the even mantissa.
        let v = NumVec::I64(vec![16_777_217, 16_777_219, -16_777_217]);
        assert_eq!(v.to_f32(), vec![16_777_216.0, 16_777_220.0, -16_777_216.0]);
    }

    #[test]
    fn u64_above_i64_max_is_not_an_index() {
        assert_eq!(NumVec::U64(vec![u64::MAX]).to_i64(), None);
        assert_eq!(NumVec::U16(vec![7]).to_i64(), Some(vec![7]));
    }
}
