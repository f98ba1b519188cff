//! Pure numerics on slices, exact to scanpy's bits (SPEC-scanpy.md §1–2).
//!
//! Every kernel is single-threaded and works on one block of rows; the engine runs blocks in
//! parallel. Results never depend on how rows are split into blocks.

pub mod log1p;
pub mod mask;
pub mod median;
pub mod real;
pub mod scale;
pub(crate) mod simd;
pub mod totals;

#[cfg(test)]
mod testdata;

pub use log1p::{Log1p, Log1pKernel};
pub use real::Real;
