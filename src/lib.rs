//! atlasnorm: scanpy's `normalize_total` + `log1p`, bit-identical, streamed out of core.

pub mod array;
pub mod error;
pub mod inspect;
pub mod kernel;
pub mod store;

pub use error::{Error, Result};
