//! atlasnorm-core: scanpy's `normalize_total` + `log1p`, bit for bit, over plain slices and
//! row blocks — no files, no I/O dependencies.
//!
//! * [`kernel`]: the exact numerics on one block of rows (totals in scanpy's sum order per
//!   layout, the highly-expressed mask, the median, factors and divisors, numpy's log1p).
//! * [`fit`] and [`apply`]: the two steps of a normalization over row blocks, with every
//!   scanpy rule public — the API the drivers share.
//! * [`engine`]: the drivers — the streaming engine that reads a [`store::MatrixSource`] in
//!   row blocks within a memory budget and writes a [`store::OutputStore`]
//!   ([`engine::normalize_stores`]), the in-memory driver over whole arrays, and its
//!   per-chunk steps for task schedulers ([`engine::in_memory`]). Their results are
//!   bit-identical (crates/core/tests/drivers.rs).
//! * [`store`]: the traits a backend implements; [`memory`]: the in-memory backend;
//!   [`params`]: what to compute.

pub mod apply;
pub mod array;
pub mod engine;
pub mod error;
pub mod fit;
pub mod kernel;
pub mod memory;
pub mod params;
pub mod report;
pub mod store;

pub use error::{Error, Result};
pub use params::Params;
pub use report::{Progress, Report, Silent};
