//! Peak RSS of the binary against `--memory`, on inputs larger than the budget (h5ad and
//! zarr). A test binary of its own: Linux carries the parent's high-water mark into a
//! spawned child's `ru_maxrss` (at exec), so the parent must stay small — the other
//! integration tests, running in parallel in one process, would inflate it.

mod memory_bound;
mod zarr_memory_bound;
