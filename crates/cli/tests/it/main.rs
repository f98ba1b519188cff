//! The binary's integration tests, one binary: the real `atlasnorm` on real files (faults on
//! tmpfs, references read back by anndata, S3 against moto_server), and the repository-wide
//! `// SAFETY:` rule. The memory bounds have their own binary (`tests/memory/`).

mod faults;
mod h5ad_refs;
mod s3_e2e;
mod safety_comments;
mod zarr_determinism;
