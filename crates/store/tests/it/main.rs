//! The store crate's integration tests, one binary (each test binary links the static HDF5
//! build, so one link instead of ten): backends read and write real files, checked by real
//! anndata/h5py (the Python env of atlasnorm-testkit) and a real moto_server for S3.

mod h5ad_chunks;
mod h5ad_errors;
mod h5ad_inspect;
mod h5ad_output;
mod h5ad_read;
mod h5ad_writer;
mod s3_store;
mod source_conformance;
mod tree_copy;
mod zarr_read;
mod zarr_write;
