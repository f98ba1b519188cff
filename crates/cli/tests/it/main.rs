//! The binary's integration tests, one binary: the real `atlasnorm` on real files (faults on
//! tmpfs, memory bounds, references read back by anndata, S3 against moto_server), and the
//! repository-wide `// SAFETY:` rule.

mod faults;
mod h5ad_refs;
mod memory_bound;
mod s3_e2e;
mod safety_comments;
mod zarr_memory_bound;
