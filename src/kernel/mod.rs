//! Pure numerics on slices, exact to scanpy's bits. (Being written: see the kernel worktree.)
