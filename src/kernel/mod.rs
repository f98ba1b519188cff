//! TEMPORARY naive kernels so the engine compiles; replaced by the kernel branch.
use crate::array::{DType, NumVec};

pub trait Real:
    Copy + Send + Sync + PartialOrd + PartialEq + std::fmt::Debug + Default + 'static
{
    const DTYPE: DType;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_numvec(v: NumVec) -> Vec<Self>;
    fn into_numvec(v: Vec<Self>) -> NumVec;
    fn is_nan(self) -> bool;
}
impl Real for f32 {
    const DTYPE: DType = DType::F32;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_numvec(v: NumVec) -> Vec<Self> {
        v.to_f32()
    }
    fn into_numvec(v: Vec<Self>) -> NumVec {
        NumVec::F32(v)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}
impl Real for f64 {
    const DTYPE: DType = DType::F64;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn from_numvec(v: NumVec) -> Vec<Self> {
        v.to_f64()
    }
    fn into_numvec(v: Vec<Self>) -> NumVec {
        NumVec::F64(v)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}
pub mod totals {
    use super::Real;
    pub fn csr_row_totals<T: Real>(data: &[T], offsets: &[usize], out: &mut [T]) {
        for (i, o) in out.iter_mut().enumerate() {
            let mut s = 0.0f64;
            for v in &data[offsets[i]..offsets[i + 1]] {
                s += v.to_f64();
            }
            *o = T::from_f64(s);
        }
    }
    pub fn csr_row_totals_kept<T: Real>(
        data: &[T],
        indices: &[u32],
        offsets: &[usize],
        excluded: &[bool],
        out: &mut [T],
    ) {
        for (i, o) in out.iter_mut().enumerate() {
            let mut s = 0.0f64;
            for j in offsets[i]..offsets[i + 1] {
                if !excluded[indices[j] as usize] {
                    s += data[j].to_f64();
                }
            }
            *o = T::from_f64(s);
        }
    }
    pub fn dense_row_totals<T: Real>(data: &[T], n_cols: usize, out: &mut [T]) {
        for (i, o) in out.iter_mut().enumerate() {
            let mut s = 0.0f64;
            for v in &data[i * n_cols..(i + 1) * n_cols] {
                s += v.to_f64();
            }
            *o = T::from_f64(s);
        }
    }
    pub fn dense_row_totals_kept<T: Real>(
        data: &[T],
        n_cols: usize,
        kept_cols: &[usize],
        _scratch: &mut Vec<T>,
        out: &mut [T],
    ) {
        for (i, o) in out.iter_mut().enumerate() {
            let mut s = 0.0f64;
            for &c in kept_cols {
                s += data[i * n_cols + c].to_f64();
            }
            *o = T::from_f64(s);
        }
    }
}
pub mod mask {
    use super::Real;
    pub fn csr_mark_highly_expressed<T: Real>(
        data: &[T],
        indices: &[u32],
        offsets: &[usize],
        totals: &[T],
        max_fraction: f64,
        excluded: &mut [bool],
    ) {
        for i in 0..totals.len() {
            for j in offsets[i]..offsets[i + 1] {
                if data[j].to_f64() > max_fraction * totals[i].to_f64() {
                    excluded[indices[j] as usize] = true;
                }
            }
        }
    }
    pub fn dense_mark_highly_expressed<T: Real>(
        data: &[T],
        n_cols: usize,
        totals: &[T],
        max_fraction: f64,
        excluded: &mut [bool],
    ) {
        for i in 0..totals.len() {
            for c in 0..n_cols {
                if data[i * n_cols + c].to_f64() > max_fraction * totals[i].to_f64() {
                    excluded[c] = true;
                }
            }
        }
    }
}
pub mod median {
    use super::Real;
    pub fn median_of_positive<T: Real>(totals: &[T]) -> T {
        let mut v: Vec<f64> = totals
            .iter()
            .map(|t| t.to_f64())
            .filter(|t| *t > 0.0)
            .collect();
        if v.is_empty() {
            return T::from_f64(f64::NAN);
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = v.len();
        if n % 2 == 1 {
            T::from_f64(v[n / 2])
        } else {
            T::from_f64(T::from_f64(v[n / 2 - 1] + v[n / 2]).to_f64() / 2.0)
        }
    }
}
pub mod scale {
    use super::{log1p::Log1p, Real};
    pub fn target_from_user<T: Real>(target_sum: f64) -> T {
        T::from_f64(target_sum)
    }
    pub fn factor<T: Real>(total: T, target: T) -> T {
        T::from_f64(total.to_f64() / target.to_f64())
    }
    pub fn divisor<T: Real>(factor: T) -> T {
        if factor == T::default() {
            T::from_f64(1.0)
        } else {
            factor
        }
    }
    pub fn normalize_csr_rows<T: Real>(
        data: &mut [T],
        offsets: &[usize],
        divisors: &[T],
        log1p: Option<&Log1p>,
    ) {
        for (i, d) in divisors.iter().enumerate() {
            for v in &mut data[offsets[i]..offsets[i + 1]] {
                *v = T::from_f64(v.to_f64() / d.to_f64());
                if let Some(l) = log1p {
                    *v = l.apply_one(*v);
                }
            }
        }
    }
    pub fn normalize_dense_rows<T: Real>(
        data: &mut [T],
        n_cols: usize,
        divisors: &[T],
        log1p: Option<&Log1p>,
    ) {
        let offsets: Vec<usize> = (0..=divisors.len()).map(|i| i * n_cols).collect();
        normalize_csr_rows(data, &offsets, divisors, log1p)
    }
}
pub mod log1p {
    use super::Real;
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Log1pKernel {
        NumpySvml,
        Libm,
    }
    impl Log1pKernel {
        pub fn numpy_default() -> Self {
            Log1pKernel::Libm
        }
        pub fn is_available(self) -> bool {
            true
        }
    }
    pub struct Log1p {
        base: Option<f64>,
    }
    impl Log1p {
        pub fn new(_kernel: Log1pKernel, base: Option<f64>) -> Self {
            Log1p { base }
        }
        pub fn apply<T: Real>(&self, xs: &mut [T]) {
            for x in xs {
                *x = self.apply_one(*x);
            }
        }
        pub fn apply_one<T: Real>(&self, x: T) -> T {
            let y = x.to_f64().ln_1p();
            match self.base {
                Some(b) => T::from_f64(y / b.ln()),
                None => T::from_f64(y),
            }
        }
    }
}
