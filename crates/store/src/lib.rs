//! atlasnorm-store: AnnData on disk for atlasnorm — `.h5ad` (HDF5) and `.zarr` (v2/v3, local
//! or `s3://`) backends of [`atlasnorm_core`]'s store traits, and the file-to-file job that
//! runs the engine between them.
//!
//! ```no_run
//! use atlasnorm_store::{normalize, Options, Params, Silent};
//! let options = Options {
//!     params: Params { target_sum: Some(1e4), ..Params::default() },
//!     ..Options::default()
//! };
//! let report = normalize("atlas.h5ad".as_ref(), "atlas.norm.h5ad".as_ref(), &options, &Silent)?;
//! println!("{report}");
//! # Ok::<(), atlasnorm_store::Error>(())
//! ```
//!
//! Modules: [`store`] (the backends and the AnnData tree copy), [`run`] (the file-to-file
//! job), [`inspect`], [`synth`] (synthetic count data), [`options`].

// The core's modules, at the paths this crate's code has always used.
pub use atlasnorm_core::{array, engine, error, kernel, params, report};

pub mod distributed;
pub mod inspect;
pub mod options;
pub mod run;
pub mod store;
pub mod synth;

pub use error::{Error, Result};
pub use options::Options;
pub use params::Params;
pub use report::{Progress, Report, Silent};
pub use run::normalize;
