//! atlasnorm: scanpy's `normalize_total` + `log1p` on AnnData matrices of any size,
//! bit-identical to scanpy, streamed out of core in bounded memory.
//!
//! ```no_run
//! use atlasnorm::{normalize, Options, Silent};
//! let report = normalize(
//!     "atlas.h5ad".as_ref(),
//!     "atlas.norm.h5ad".as_ref(),
//!     &Options { target_sum: Some(1e4), ..Options::default() },
//!     &Silent,
//! )?;
//! println!("{report}");
//! # Ok::<(), atlasnorm::Error>(())
//! ```
//!
//! Layers: [`kernel`] (pure numerics on slices), [`store`] (backends: AnnData on disk),
//! [`engine`] (row blocks, passes, the pipeline between them).

pub mod array;
pub mod engine;
pub mod error;
pub mod inspect;
pub mod kernel;
pub mod options;
pub mod report;
pub mod store;
pub mod synth;

pub use engine::normalize;
pub use error::{Error, Result};
pub use options::Options;
pub use report::{Progress, Report, Silent};
